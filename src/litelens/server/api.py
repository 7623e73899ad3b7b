"""The query API under `/api`: calls, one call, traces, sessions, time-bucketed stats and export.

Every route is scoped to the project of the caller's key; nothing another project stored is reachable.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import time
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from litelens.credentials import is_url_credential
from litelens.record import MAX_TAG_CHARS
from litelens.server import fastjson
from litelens.server.deps import Project, store_call
from litelens.server.ingest import MAX_NAME
from litelens.server.store.base import MAX_CURSOR_CHARS, OPEN_END, CallFilter, Store

# Per route: the query parameters it reads, and those of them that take one value only.
_KNOWN_QUERY: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def _query_names(dependant: Any) -> dict[str, bool]:
    """The query parameters a route reads, its dependencies' (the call filters) included, each with
    whether it takes several values (`meta`, a list)."""
    names = {param.alias: _takes_several(param.field_info.annotation) for param in dependant.query_params}
    for sub in dependant.dependencies:
        names.update(_query_names(sub))
    return names


def _takes_several(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(_takes_several(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def refuse_unknown_query(request: Request) -> None:
    """A misspelt filter (`?metadata=k=v` for `meta=`, `?model_name=` for `model=`) used to be ignored, and
    the answer, every call, read as the filtered one. It is refused by name, with the names it could be."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    cached = _KNOWN_QUERY.get(id(route))
    if cached is None:
        names = _query_names(dependant)
        cached = _KNOWN_QUERY[id(route)] = (
            frozenset(names),
            frozenset(name for name, several in names.items() if not several),
        )
    known, single = cached
    # A credential a gateway in front takes in the query (`?token=`) may reach us too: the sender and
    # the CLI keep the endpoint's query on every request. No filter is named so, so nothing misspelt
    # gets through.
    unknown = sorted(
        {name for name in request.query_params if name not in known and not is_url_credential(name)}
    )
    if unknown:
        takes = ", ".join(sorted(known)) or "no query parameters"
        raise HTTPException(
            422,
            f"unknown query parameter {', '.join(repr(u[:64]) for u in unknown[:5])}; this endpoint takes: {takes}",
        )
    # `?tag=x&tag=y` was answered for `tag=y` alone, and read as filtered by both. The store matches one
    # value of each of these, so a second one is refused by name rather than dropped.
    # (The same value twice loses nothing: taken.)
    values: dict[str, set[str]] = {}
    for name, value in request.query_params.multi_items():
        if name in single:
            values.setdefault(name, set()).add(value)
    repeated = sorted(name for name, given in values.items() if len(given) > 1)
    if repeated:
        raise HTTPException(
            400, f"{', '.join(repeated)} given more than once, with different values; give each once"
        )


router = APIRouter(tags=["query"], dependencies=[Depends(refuse_unknown_query)])

Sort = Literal["start_time", "duration_ms", "total_tokens", "cost_usd", "arrival"]
GroupBy = Literal["model", "provider", "user", "tag", "key_alias"]


def finite_times(**times: float | None) -> None:
    """NaN and infinity parse as numbers but are no time: refused by name instead of reaching the store
    (which matched nothing, or failed as "could not store the batch"). So is a time past the year 10000:
    milliseconds (JavaScript's `Date.now()`) read as seconds, which matched nothing as a start and, as
    an end, silently dropped the end."""
    for name, value in times.items():
        if value is not None and not math.isfinite(value):
            raise HTTPException(400, f"{name} must be a finite number of epoch seconds")
        if value is not None and value > OPEN_END:
            raise HTTPException(
                400,
                f"{name} must be epoch seconds: {value:.0f} is after the year 9999 "
                "(milliseconds? divide by 1000)",
            )


# A filter by a name (session, user, model...) or a tag is compared as ingest stored it: cut to its first
# `MAX_NAME` (a tag, `MAX_TAG_CHARS`) characters, so the value an app sent, however long, finds its calls.
# Only a value no app sends is refused (a 422 naming the parameter): longer than this many characters.
MAX_FILTER_CHARS = 8192

# A range given without an end has none, as the dashboard's preset ranges: a call stamped ahead of the
# collector's clock (a client whose clock runs fast) is in it. Stopping at "now" left such a call out of
# the API's answer while the dashboard, for the same range, counted it.
_NO_END = "none: every call from `start` on, including calls stamped ahead of the collector's clock"
_AS_STORED = f"compared by its first {MAX_NAME} characters, as a longer name is stored cut to them"


def call_filter(
    start: Annotated[float | None, Query(description="Calls started at or after (epoch seconds)")] = None,
    end: Annotated[float | None, Query(description="Calls started before (epoch seconds, exclusive)")] = None,
    model: Annotated[
        str | None,
        Query(
            description=f"the requested or the response model, also as `<provider>/<model>`; {_AS_STORED}",
            max_length=MAX_FILTER_CHARS,
        ),
    ] = None,
    grouped_model: Annotated[
        str | None,
        Query(
            description="the one model `group_by=model` counts a call under: the response model, else the "
            f"requested one (a failure has no response model), also as `<provider>/<model>`; {_AS_STORED}",
            max_length=MAX_FILTER_CHARS,
        ),
    ] = None,
    provider: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    status: Annotated[Literal["ok", "error", "cancelled"] | None, Query()] = None,
    error_type: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    no_error_type: Annotated[
        bool,
        Query(
            description="only calls without an error class (`error.type`); with `status=error`, "
            "the failures that have none"
        ),
    ] = False,
    call_type: Annotated[str | None, Query(max_length=64)] = None,
    end_user: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    user_id: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    user: Annotated[
        str | None,
        Query(
            description=f"the end user, else the user id (the user `group_by=user` counts); {_AS_STORED}",
            max_length=MAX_FILTER_CHARS,
        ),
    ] = None,
    session_id: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    trace_id: Annotated[str | None, Query(max_length=64, description="32 hex digits, either case")] = None,
    key_alias: Annotated[str | None, Query(description=_AS_STORED, max_length=MAX_FILTER_CHARS)] = None,
    tag: Annotated[
        str | None,
        Query(
            description=f"compared by its first {MAX_TAG_CHARS} characters: a longer tag is stored cut to them",
            max_length=MAX_FILTER_CHARS,
        ),
    ] = None,
    meta: Annotated[
        list[str] | None,
        Query(
            description="metadata filter key=value, repeatable with different keys (all must match; one key with two "
            "values is refused): a top-level value that is the string "
            '`value` or equals it as JSON (`5` finds 5, 5.0 and "5"; `true`, `null`, objects, lists)',
            max_length=20,
        ),
    ] = None,
    q: Annotated[
        str | None, Query(description="free text in the record, content included", max_length=256)
    ] = None,
    arrived_after: Annotated[
        int | None,
        Query(
            ge=0,
            le=2**62,
            description="calls stored or changed after this arrival (the `arrived_through` of an earlier "
            "answer, or a call's `arrival`), whatever their start time: what a live tail asks",
        ),
    ] = None,
    arrived_through: Annotated[
        int | None, Query(ge=0, le=2**62, description="calls stored or changed at or before this arrival")
    ] = None,
) -> CallFilter:
    finite_times(start=start, end=end)
    metadata: dict[str, str] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(400, f"meta must be key=value, got {item[:80]!r}")
        if key in metadata and metadata[key] != value:
            # A key holds one value: `team=a` and `team=b` together match nothing, and keeping the last
            # answered for `team=b` alone.
            raise HTTPException(400, f"meta key {key[:80]!r} given twice; give it once")
        metadata[key] = value
    return CallFilter(
        start=start,
        end=end,
        model=as_stored(model),
        grouped_model=as_stored(grouped_model),
        provider=as_stored(provider),
        status=status,
        error_type=as_stored(error_type),
        no_error_type=no_error_type,
        call_type=call_type,
        end_user=as_stored(end_user),
        user_id=as_stored(user_id),
        user=as_stored(user),
        session_id=as_stored(session_id),
        trace_id=trace_id,
        key_alias=as_stored(key_alias),
        tag=as_stored(tag, MAX_TAG_CHARS),
        metadata=metadata,
        search=q,
        arrived_after=arrived_after,
        arrived_through=arrived_through,
    )


Filters = Annotated[CallFilter, Depends(call_filter)]


def as_stored(name: str | None, limit: int = MAX_NAME) -> str | None:
    """A name or tag as ingest stores it (`ingest.cut_long_names`): its first `limit` characters."""
    return name[:limit] if name else name


@router.get("/calls", summary="List calls, newest first, with filters and cursor pagination")
async def list_calls(
    request: Request,
    project: Project,
    filters: Filters,
    sort: Sort = "start_time",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
) -> dict[str, Any]:
    """Sorted by `cost_usd`, the calls without a known cost (`null`: LiteLLM could not price them) come
    after the priced ones in either order, as NULLS LAST; a free call ($0) is priced.

    Each call has an `arrival`: the position in which the server stored it, or last changed it (a later
    record or span of the same call merged into it), greater than any before. `sort=arrival` lists calls
    in that order, and `arrived_after` only those stored since a position. The answer's
    `arrived_through` is the greatest arrival of the project when the page was read: a live tail passes
    it as `arrived_after` next time (then the greatest `arrival` it has read), and sees every call
    stored meanwhile, however long ago it started by its client's clock."""
    store = request.app.state.store

    def read() -> tuple[int, tuple[list[dict[str, Any]], str | None]]:
        # The position before the page: a call stored in between is on the page and after the position
        # both, listed twice rather than never.
        through = store.latest_arrival(project)
        return through, store.list_calls(project, filters, limit, cursor, sort, order == "desc")

    through, (rows, next_cursor) = await store_call(read)
    return {"calls": rows, "next_cursor": next_cursor, "arrived_through": through}


@router.get("/export", summary="Export the filtered calls as JSON lines or CSV (streamed)")
async def export(
    request: Request,
    project: Project,
    filters: Filters,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    return export_response(await opened_export(request.app.state.store, project, filters), format)


async def opened_export(store: Store, project: int, filters: CallFilter | None) -> Iterator[dict[str, Any]]:
    """The store's export with its first record already read, so that a store that cannot be read is
    the 503 every other read answers. Read only once the download had begun, its failure came after
    the 200 and cut the download short: `litelens export` died with a traceback, and a browser kept an
    empty or partial file."""
    records = store.export(project, filters)
    first = await store_call(next, records, _END)
    return _Opened(first, records)


_END: Any = object()


class _Opened(Iterator[dict[str, Any]]):
    """`first`, then the rest of `records`; `close()` closes `records` even before the first is read
    (a generator wrapped around them would not: closing one that never started skips its `finally`)."""

    def __init__(self, first: Any, records: Iterator[dict[str, Any]]) -> None:
        self._first = first
        self._records = records

    def __next__(self) -> dict[str, Any]:
        if self._first is not _END:
            item, self._first = self._first, _END
            return typing.cast("dict[str, Any]", item)
        return next(self._records)

    def close(self) -> None:
        self._first = _END
        close = getattr(self._records, "close", None)
        if close is not None:
            close()


def export_response(records: Iterator[dict[str, Any]], format: Literal["jsonl", "csv"]) -> StreamingResponse:
    """Records streamed as a download (the API's export and the dashboard's export links)."""
    if format == "jsonl":
        body: Iterator[str] = (
            json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records
        )
        media = "application/x-ndjson"
    else:
        body = _csv_lines(records)
        media = "text/csv"
    name = f"litelens-calls-{int(time.time())}.{format}"
    return _Download(
        body, records, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


class _Download(StreamingResponse):
    """A streamed export that closes its records however the download ends.

    The store's export reads in one transaction on a connection of its own until its records are
    closed; when the client hung up mid-download, Starlette left them suspended, and the connection
    stayed in its transaction (PostgreSQL: "idle in transaction") until garbage collection found it.
    """

    def __init__(self, body: Iterator[str], records: Iterator[Any], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._sources = (body, records)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Not running in a worker thread now: the one that read the last page has returned.
            for source in self._sources:
                close = getattr(source, "close", None)
                if close is not None:
                    # ValueError, "generator already executing": never here, but harmless.
                    with contextlib.suppress(ValueError):
                        close()


CSV_COLUMNS = [
    "call_id",
    "start_time",
    "duration_ms",
    "ttft_ms",
    "status",
    "call_type",
    "stream",
    "request_model",
    "response_model",
    "provider",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "error_type",
    "end_user",
    "user_id",
    "session_id",
    "trace_id",
    "tags",
]


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); model names, user
# ids, tags and error classes come from whoever called the model, so such text gets a leading `'`.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Excel where the list separator is `;` (much of Europe) splits a comma-separated line at every `;`,
# quoted or not, so text after a `;` starts a cell too (the second of two tags, joined with `;`): a `'`
# goes right after such a `;` when spaces or quotes and then a formula character follow it.
_FORMULA_AFTER_SEMICOLON = re.compile(r";(?=[\s\"']*[=+\-@\t\r])")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        if ";" in value:
            value = _FORMULA_AFTER_SEMICOLON.sub(";'", value)
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value


def _csv_lines(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        usage = record.get("usage") or {}
        error = record.get("error") or {}
        flat = {
            **record,
            **usage,
            "error_type": error.get("type"),
            "tags": ";".join(record.get("tags") or []),
        }
        writer.writerow([_csv_cell(flat.get(c)) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


# `:path`: call and session ids are the callers' own strings and may hold a slash (the dashboard's pages
# take them so too); a plain parameter answered such an id with a bare 404.
@router.get("/calls/{call_id:path}", summary="One call record in full", response_model=dict[str, Any])
async def get_call(request: Request, project: Project, call_id: str) -> Response:
    record = await store_call(request.app.state.store.get_call, project, call_id)
    if record is None:
        raise HTTPException(404, f"no call {call_id[:80]!r} in this project")
    answer = dict(record)
    attempts = await store_call(attempts_of, request.app.state.store, project, call_id, record)
    if attempts:
        answer["attempts"] = attempts
    # Encoded as the collector stored it, not by FastAPI's encoder, which walks the record in Python and
    # ran out of recursion (a 500) on content nested a few hundred levels deep, as stored.
    return Response(fastjson.dumps(answer), media_type="application/json")


# A call has no more attempts than this (a router's retries times its fallbacks stay well below).
MAX_ATTEMPTS = 32
_LATER_ATTEMPT = re.compile(r"(.+):([2-9]|[1-9][0-9]+)")  # `<call id>:<attempt>`, as callback.py names it


def attempts_of(store: Store, project_id: int, call_id: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every attempt of the request that call `call_id` (stored as `record`) belongs to, in order, when
    there was more than one.

    A proxy's router keeps the request's call id (the `x-litellm-call-id` header) for its retries and
    fallbacks; the core layer records the first attempt under it and the next ones as `<id>:2`,
    `<id>:3`... (see callback.py). Looking up the header's id found the failed first attempt only; this
    list leads from any attempt to the others, the last being what the client got. Attempts are numbered
    without gaps, so the walk stops at the first one missing.
    """
    later = _LATER_ATTEMPT.fullmatch(call_id)
    base = later[1] if later else call_id
    attempts: list[dict[str, Any]] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        attempt_id = base if attempt == 1 else f"{base}:{attempt}"
        found = record if attempt_id == call_id else store.get_call(project_id, attempt_id)
        if found is not None:
            attempts.append({"call_id": attempt_id, "status": found.get("status")})
        elif attempt > 1:  # the first may be missing (a user's own id that ends in `:2`)
            break
    if len(attempts) > 1:
        return attempts
    return _sdk_router_attempts(store, project_id, call_id, record)


# The most calls of a trace an SDK Router call's page reads to find its request's other attempts.
MAX_ATTEMPT_CANDIDATES = 200
# The longest a Router request's attempts are looked for after its first began (LiteLLM's default
# timeout is 600 s a call; retries wait seconds between attempts).
MAX_REQUEST_S = 3600.0


def _sdk_router_attempts(
    store: Store, project_id: int, call_id: str, record: dict[str, Any]
) -> list[dict[str, Any]]:
    """The attempts of an SDK Router's request, which (unlike the proxy's) each have a call id of their
    own: a retry or fallback names its request's first attempt in `first_attempt_id`, and all of them
    share the request's trace. The caller holds the id of the attempt that answered (LiteLLM's
    `_hidden_params["litellm_call_id"]`); the failed attempts before it were unrelated calls on its page."""
    first_id = record.get("first_attempt_id")
    first: dict[str, Any] | None
    if not isinstance(first_id, str) or not first_id:
        if not record.get("model_group"):
            return []
        first_id, first = call_id, record
    else:
        first = store.get_call(project_id, first_id)
    trace_id = (first or record).get("trace_id")
    start = first.get("start_time") if first is not None else None
    if not isinstance(trace_id, str) or not trace_id:
        return []
    # A trace can be a whole session's: only the calls that started in the request's time are read.
    earliest, latest = (
        (start, start + MAX_REQUEST_S) if isinstance(start, (int, float)) else (-math.inf, math.inf)
    )
    found = [(earliest, first_id, first.get("status"))] if first is not None else []
    read = 0
    for summary in store.get_trace(project_id, trace_id)["calls"]:
        other = summary.get("call_id")
        when = summary.get("start_time")
        if other == first_id or not isinstance(when, (int, float)) or not earliest <= when <= latest:
            continue
        read += 1
        if read > MAX_ATTEMPT_CANDIDATES or len(found) >= MAX_ATTEMPTS:
            break
        full = record if other == call_id else store.get_call(project_id, str(other))
        if full is not None and full.get("first_attempt_id") == first_id:
            found.append((when, str(other), full.get("status")))
    found.sort(key=lambda item: item[0])
    return [{"call_id": i, "status": status} for _, i, status in found] if len(found) > 1 else []


# Nesting deeper than this is shown flat under the node at this depth. JSON encoders stop at a fixed depth
# (FastAPI's pydantic at ~255 levels, two per tree level plus the attributes' own), so a trace of ~125
# nested spans (an agent that recursed, or a sender's bug) made `/api/traces/{id}` answer 500.
MAX_TREE_DEPTH = 64


def build_tree(
    spans: list[dict[str, Any]], calls: list[dict[str, Any]], max_depth: int = MAX_TREE_DEPTH
) -> list[dict[str, Any]]:
    """Spans and calls nested by parent id; a call without its own span becomes a node of its own.

    Every node is in the tree once: where parent ids loop (a sender that reused ids), the loop is cut
    and the node where it closed becomes a root; nodes more than `max_depth` levels down are children of
    their ancestor at that level. Either way a node keeps its own `parent_span_id`.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for span in spans:
        nodes[span["span_id"]] = {"type": "span", **span, "children": []}
    for call in calls:
        span_id = call.get("span_id")
        if span_id in nodes:
            nodes[span_id]["call"] = call
        elif span_id:
            nodes[span_id] = {
                "type": "call",
                "span_id": span_id,
                "parent_span_id": call.get("parent_span_id"),
                "name": _call_name(call),
                "start_time": call.get("start_time"),
                "end_time": call.get("end_time"),
                "call": call,
                "children": [],
            }
    parents: dict[str, str | None] = {}
    for span_id, node in nodes.items():
        parent = node.get("parent_span_id") or ""
        parents[span_id] = parent if parent in nodes and parent != span_id else None
    placed: set[str] = set()  # nodes whose chain of parents is known to end at a root
    for span_id in nodes:
        path: set[str] = set()
        current: str | None = span_id
        while current is not None and current not in placed:
            if current in path:
                parents[current] = None
                break
            path.add(current)
            current = parents[current]
        placed |= path
    roots: list[dict[str, Any]] = []
    for span_id, node in nodes.items():
        parent_id = parents[span_id]
        (nodes[parent_id]["children"] if parent_id is not None else roots).append(node)
    stack = [(root, 1) for root in roots]
    while stack:
        node, depth = stack.pop()
        if depth < max_depth:
            stack += [(child, depth + 1) for child in node["children"]]
            continue
        below, pending = [], list(node["children"])
        while pending:
            child = pending.pop()
            pending += child["children"]
            child["children"] = []
            below.append(child)
        node["children"] = below
    for node in nodes.values():
        node["children"].sort(key=lambda n: n.get("start_time") or 0)
    return sorted(roots, key=lambda n: n.get("start_time") or 0)


def _call_name(call: dict[str, Any]) -> str:
    """A call's node name, "<call type> <model>", from what the call has (not "chat None")."""
    model = call.get("request_model") or call.get("response_model")
    return " ".join(str(part) for part in (call.get("call_type"), model) if part) or "call"


@router.get("/traces/{trace_id}", summary="One trace as a tree of spans and calls")
async def get_trace(
    request: Request,
    project: Project,
    trace_id: Annotated[str, Path(description="32 hex digits, either case")],
) -> dict[str, Any]:
    found = await store_call(request.app.state.store.get_trace, project, trace_id)
    if not found["spans"] and not found["calls"]:
        raise HTTPException(404, f"no trace {trace_id[:80]!r} in this project")
    return {"trace_id": trace_id.lower(), "roots": build_tree(found["spans"], found["calls"]), **found}


@router.get("/sessions", summary="Sessions active in a time range, most recently active first")
async def list_sessions(
    request: Request,
    project: Project,
    start: Annotated[
        float | None, Query(description="epoch seconds; default: 7 days before `end`, or before now")
    ] = None,
    end: Annotated[float | None, Query(description=f"epoch seconds; default: {_NO_END}")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
    user: Annotated[
        str | None,
        Query(
            description="only the sessions in which this user (the end user, else the user id, as "
            f"`/api/calls?user=` finds calls) made a call, whether or not they started it; {_AS_STORED}",
            max_length=MAX_FILTER_CHARS,
        ),
    ] = None,
) -> dict[str, Any]:
    """Each session's whole figures: `calls`, of which `errors` failed and `cancelled` were abandoned by
    their caller (the others succeeded), `tokens`, first and last activity, and
    `cost_usd`, the sum of the `priced_calls` calls that had a known cost: `null` when none had (LiteLLM
    could not price them; unknown is not free), so `priced_calls < calls` means a partial sum. `user` is
    whose session it is: the user (end user, else user id) of its earliest call that names one, `null`
    when none does; `users` is how many users its calls named (more than 1: others joined)."""
    finite_times(start=start, end=end)
    start = start if start is not None else (end if end is not None else time.time()) - 7 * 86400
    end = end if end is not None else OPEN_END
    rows, next_cursor = await store_call(
        request.app.state.store.list_sessions, project, start, end, limit, cursor, as_stored(user)
    )
    return {"sessions": rows, "next_cursor": next_cursor}


@router.get(
    "/sessions/{session_id:path}",
    summary="One session's totals and a page of its calls in the order they ran (cursor pagination)",
)
async def get_session(
    request: Request,
    project: Project,
    session_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
) -> dict[str, Any]:
    """`totals` counts every call of the session (`errors` failed, `cancelled` were abandoned by their
    caller, the others succeeded); its `cost_usd` is the sum of the `priced_calls` calls
    that had a known cost, `null` when none had. `totals.user` and `totals.users` are the session's first
    user and its number of users, as `/api/sessions` lists them."""
    totals, (calls, next_cursor) = await session_page(request, project, session_id, limit, cursor)
    if totals is None:
        raise HTTPException(404, f"no session {session_id[:80]!r} in this project")
    return {"session_id": session_id, "calls": calls, "totals": totals, "next_cursor": next_cursor}


async def session_page(
    request: Request, project: int, session_id: str, limit: int, cursor: str | None
) -> tuple[dict[str, Any] | None, tuple[list[dict[str, Any]], str | None]]:
    """A session's totals (one aggregate) and one page of its calls, oldest first (the API's and the
    dashboard's session page): a session of 100k calls is never loaded whole."""
    # One store call, read as of one moment (`Store.session_page`): read apart, a call stored in
    # between was listed on the page but not counted in the totals.
    result: tuple[dict[str, Any] | None, tuple[list[dict[str, Any]], str | None]] = await store_call(
        request.app.state.store.session_page, project, as_stored(session_id), limit, cursor
    )
    return result


@router.get(
    "/stats",
    summary="Aggregates per time bucket: count, error rate, latency and TTFT percentiles, tokens, cost",
)
async def stats(
    request: Request,
    project: Project,
    start: Annotated[
        float | None,
        Query(
            description="rounded down to a whole minute (epoch seconds; default: 1 day before `end`, or before now)"
        ),
    ] = None,
    end: Annotated[
        float | None,
        Query(
            description=f"rounded up to a whole minute (epoch seconds; default: {_NO_END}; the answer's "
            "`end` is then the end of the latest bucket with calls, or now when that is earlier)"
        ),
    ] = None,
    bucket: Annotated[
        int,
        Query(
            ge=60,
            le=86400 * 31,
            description="bucket size in seconds, a multiple of 60; buckets start at multiples of it since "
            "the epoch, so days are UTC days",
        ),
    ] = 3600,
    group_by: GroupBy | None = None,
) -> dict[str, Any]:
    """One row per bucket (and group) that had calls. `cost_usd` is the sum of the row's `priced_calls`
    calls that had a known cost, `null` when none had (unknown, not free); `priced_calls < count` means
    some calls are missing from the sum. Of the `count` calls, `errors` failed and `cancelled` were
    abandoned by their caller (a stream closed early, a proxy client that hung up); the others
    succeeded."""
    if bucket % 60:
        raise HTTPException(400, "bucket must be a multiple of 60 seconds")
    finite_times(start=start, end=end)
    open_end = end is None
    now = time.time()
    start = start if start is not None else (now if end is None else end) - 86400
    end = max(now, start + bucket) if end is None else end
    if end <= start:
        raise HTTPException(400, "end must be after start")
    # With no end, calls ahead of the clock add at most a day of buckets (ingest refuses later ones).
    if (end - start) / bucket > 5000:
        raise HTTPException(400, "too many buckets: use a larger bucket or a shorter range")
    rows = await store_call(
        request.app.state.store.aggregate, project, start, OPEN_END if open_end else end, bucket, group_by
    )
    if open_end and rows:
        end = max(end, max(float(r["bucket"]) for r in rows) + bucket)
    return {"start": start, "end": end, "bucket": bucket, "group_by": group_by, "rows": rows}


@router.get("/me", summary="The project the key belongs to")
async def me(request: Request, project: Project) -> dict[str, Any]:
    return {"project_id": project}
