"""One call in full, one trace as a waterfall, and sessions: the pages a row of the calls table opens.

Ids are taken as the rest of the path (`:path`), because call and session ids are the callers' own
strings and may hold a slash. Each looks its subject up within the signed-in project only; an id from another project is answered
exactly like an id that does not exist (404), so a URL reveals nothing across projects.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from litelens.server.api import as_stored, attempts_of, build_tree, session_page
from litelens.server.deps import BadCursor, store_call
from litelens.server.store.base import MAX_CURSOR_CHARS
from litelens.server.ui import conversation, query
from litelens.server.ui import params as checks
from litelens.server.ui.charts import span_bar, timing_bar
from litelens.server.ui.render import fmt_visible, page, refusal
from litelens.server.ui.signin import page_project
from litelens.server.ui.timerange import (
    DEFAULT_RANGE,
    OPEN_END,
    RANGES,
    WHOLE_RANGE_BUCKET,
    Window,
    window,
)

router = APIRouter(include_in_schema=False)
# The calls a session's page lists at a time, in the order they ran. A longer session (an agent's
# thousands of steps) pages on, rather than growing one page without bound.
SESSION_ROWS = 200
UIProject = Annotated[int, Depends(page_project)]
# The deepest level of a trace's waterfall that gets an indent of its own (app.css has a class per level);
# rows further down share its indent and say their level, so deep nesting never reads as siblings.
MAX_INDENT = 12


def not_found(request: Request, kind: str, ident: str) -> Response:
    # An empty id (`/calls/`) names none: "no call in this project", not "no call  in" it.
    shown = fmt_visible(ident[:80]) if ident else ""
    return page(request, "missing.html", status=404, what=f"{kind} {shown}" if shown else kind)


@router.get("/calls/{call_id:path}")
async def call_detail(request: Request, project: UIProject, call_id: str) -> Response:
    # The address carries the calls view the call was opened from (for "← Calls"): a value of it the view
    # cannot read is named, as on the calls page, rather than a link back to a view other than the one
    # the address says.
    refused = query.refused(request.query_params, where="a call's page")
    if refused:
        view = query.parse(checks.without(request.query_params, refused))
        return refusal(request, refused, "Call", f"/calls?{view.query()}")
    record = await store_call(request.app.state.store.get_call, project, call_id)
    if record is None:
        return not_found(request, "call", call_id)
    request_part = record.get("request") or {}
    usage = _token_usage(record)
    duration = _duration_ms(record)
    ttft = record.get("ttft_ms") if isinstance(record.get("ttft_ms"), (int, float)) else None
    # A stream recorded without a rate (an OTel span, an older sender) has no `output_tokens_per_s` key.
    rate = record.get("output_tokens_per_s")
    store = request.app.state.store
    python_code, curl_code = _code(record)
    return page(
        request,
        "call.html",
        record=record,
        # A request a router retried or fell back: every attempt, so the id the client got (the proxy's
        # `x-litellm-call-id`, the first attempt's; an SDK Router's answer, the last one's) leads to the others.
        attempts=await store_call(attempts_of, store, project, call_id, record),
        usage=usage,
        turns=conversation.conversation(record),
        # Records are free-form inside `request`: parameters that are not an object (a sender's bug) are
        # left to the raw JSON rather than failing the whole page with a 500.
        parameters=_mapping(request_part.get("parameters")),
        tools=conversation.as_list(request_part.get("tools")),
        tokens_per_s=rate if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None,
        finish_reasons=[str(r) for r in conversation.as_list(record.get("finish_reasons"))],
        truncated=[str(t) for t in conversation.as_list(record.get("truncated"))],
        error=record.get("error") or None,
        duration_ms=duration,
        ttft_ms=ttft,
        streaming_ms=None if ttft is None or duration is None else max(duration - ttft, 0.0),
        timing=timing_bar(duration, ttft),
        copyable=conversation.can_copy(record),
        python_code=python_code,
        curl_code=curl_code,
        # The calls view the call was opened from (its link carries the view's query): "← Calls" goes
        # back to those filters, rebuilt from what they parse to, so the link can only lead to /calls.
        back=_calls_view(request),
    )


def _code(record: dict[str, Any]) -> tuple[str, str]:
    """The call as Python and as cURL, or neither: a call type the record cannot rebuild, or content
    nested hundreds deep (the collector stores up to ~900 levels), which ran pprint and the indenting
    JSON encoder out of recursion and answered the whole page with a 500."""
    if conversation.can_copy(record):
        with contextlib.suppress(RecursionError):
            return conversation.as_python(record), conversation.as_curl(record)
    return "", ""


def _calls_view(request: Request) -> str:
    if not request.query_params:
        return ""
    view = query.parse(request.query_params)
    return view.query(cursor=view.cursor)


def _token_usage(record: dict[str, Any]) -> dict[str, Any]:
    """The record's usage, or nothing when it counted no token at all (an image generation, a call that
    failed before any usage): its tiles then read as a missing value (not applicable) rather than 0 tokens."""
    usage = _mapping(record.get("usage"))
    counted = any(usage.get(key) for key in ("input_tokens", "output_tokens", "total_tokens"))
    return usage if counted else {}


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _duration_ms(record: dict[str, Any]) -> float | None:
    """The record's duration, or end minus start when a sender left it out."""
    given = record.get("duration_ms")
    if isinstance(given, (int, float)):
        return float(given)
    start, end = record.get("start_time"), record.get("end_time")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return max(0.0, (end - start) * 1000)
    return None


def flatten(roots: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The tree as (depth, node) rows in the order they ran: parents first, children by start time."""
    rows: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, node) for node in reversed(roots)]
    while stack:
        depth, node = stack.pop()
        rows.append((depth, node))
        stack += [(depth + 1, child) for child in reversed(node.get("children") or [])]
    return rows


@router.get("/traces/{trace_id:path}")
async def trace_detail(request: Request, project: UIProject, trace_id: str) -> Response:
    refused = checks.only(request.query_params, (), "a trace's page")
    if refused:
        return refusal(request, refused, "Trace")
    found = await store_call(request.app.state.store.get_trace, project, trace_id)
    if not found["spans"] and not found["calls"]:
        return not_found(request, "trace", trace_id)
    rows = flatten(build_tree(found["spans"], found["calls"]))
    starts = [n["start_time"] for _, n in rows if n.get("start_time") is not None]
    ends = [n.get("end_time") or n["start_time"] for _, n in rows if n.get("start_time") is not None]
    lo, hi = min(starts), max(ends)
    known = {node.get("span_id") for _, node in rows}
    waterfall = [
        {
            "depth": depth,
            "indent": min(depth, MAX_INDENT),
            # A root that names a parent this trace does not hold (its span went to another collector,
            # or has not arrived yet): said, so the tree does not pass for the whole trace.
            "missing_parent": (node.get("parent_span_id") or None)
            if depth == 0 and node.get("parent_span_id") not in known
            else None,
            "node": node,
            "duration_ms": ((node.get("end_time") or node["start_time"]) - node["start_time"]) * 1000,
            "offset_ms": (node["start_time"] - lo) * 1000,
            "bar": span_bar(
                node["start_time"],
                node.get("end_time") or node["start_time"],
                lo,
                hi,
                "bar s-err" if _failed(node) else ("bar s2" if node.get("call") else "bar s1"),
            ),
        }
        for depth, node in rows
        if node.get("start_time") is not None
    ]
    return page(
        request,
        "trace.html",
        trace_id=trace_id,
        waterfall=waterfall,
        total_ms=(hi - lo) * 1000,
        calls=found["calls"],
        spans=found["spans"],
    )


def _failed(node: dict[str, Any]) -> bool:
    call = node.get("call") or {}
    return call.get("status") == "error" or str(node.get("status") or "").lower() == "error"


@router.get("/sessions")
async def sessions(
    request: Request,
    project: UIProject,
    range: str = "24h",
    cursor: str = "",
    user: str = "",
) -> Response:
    # The cursor is cut rather than checked by length: an overlong one is a stale link, answered with the
    # first page and a notice like any other, not with a JSON 422 in place of the page.
    cursor = cursor[:MAX_CURSOR_CHARS]
    # As the calls page reads its filters (`query.parse`): trimmed, and cut as ingest cuts names.
    user = as_stored(user.strip()) or ""
    refused = checks.preset_range(
        request.query_params, "the sessions page", ("range", "cursor", "user"), (query.ALL_TIME,)
    )
    if refused:
        w = window(DEFAULT_RANGE, time.time())
        return page(
            request,
            "sessions.html",
            status=400,
            refused=refused,
            window=w,
            ranges=RANGES,
            user="" if "user" in refused else user,
            view="",
            rows=[],
            cursor="",
            next_cursor=None,
            stale_cursor=False,
        )
    w = _all_time() if range == query.ALL_TIME else window(range, time.time())
    store = request.app.state.store
    stale = False
    # From the range's start on, as the calls table and the overview read it (`OPEN_END`): a session of
    # calls stamped ahead of the collector's clock is listed too.
    try:
        rows, next_cursor = await store_call(
            store.list_sessions, project, w.start, OPEN_END, 50, cursor or None, user or None
        )
    except BadCursor:  # a page link that no longer applies: the first page, said so
        stale = True
        rows, next_cursor = await store_call(
            store.list_sessions, project, w.start, OPEN_END, 50, None, user or None
        )
    return page(
        request,
        "sessions.html",
        window=w,
        ranges=RANGES,
        user=user,
        view=_sessions_view(w.name, user),
        rows=rows,
        cursor="" if stale else cursor,
        next_cursor=next_cursor,
        stale_cursor=stale,
    )


def _all_time() -> Window:
    """Every session, as the calls page's "All time" lists every call (`range=all` gave the last 24 hours)."""
    return Window(query.ALL_TIME, "All time", checks.FIRST_EPOCH, OPEN_END, WHOLE_RANGE_BUCKET)


def _sessions_view(range_name: str, user: str) -> str:
    """The sessions list's query string: its range and user filter (a session's page links back to it)."""
    return urlencode([("range", range_name), *([("user", user)] if user else [])])


def _sessions_back(request: Request, range_name: str, user: str) -> str:
    """The sessions list a session's page was opened from, as "← Sessions" links back to it: its range
    and user filter, from this page's own paging links or else from the list's URL, which the browser
    sends as the Referer (same-origin). Without it the link led to the last 24 hours of everyone's
    sessions, where the session found under "Last 7 days" for its user was not listed. Rebuilt from what
    the parameters parse to, so the link can only lead to /sessions."""
    if not range_name:
        referer = urlsplit(request.headers.get("referer", ""))
        here = request.base_url
        if (referer.scheme, referer.netloc, referer.path) != (here.scheme, here.netloc, "/sessions"):
            return ""
        listed = parse_qs(referer.query)
        range_name, user = listed.get("range", [""])[0], listed.get("user", [""])[0]
    if range_name not in RANGES and range_name != query.ALL_TIME:
        return ""
    return _sessions_view(range_name, as_stored(user.strip()) or "")


@router.get("/sessions/{session_id:path}")
async def session_detail(
    request: Request, project: UIProject, session_id: str, cursor: str = "", range: str = "", user: str = ""
) -> Response:
    # `range` and `user` are the sessions list's, for "← Sessions": one it cannot read is named, as on the
    # list, rather than a link back to everyone's last 24 hours.
    refused = checks.only(request.query_params, ("cursor", "range", "user"), "a session's page")
    why = checks.choice_refusal("range", range, (*RANGES, query.ALL_TIME))
    if why is not None:
        refused.setdefault("range", why)
    if refused:
        return refusal(request, refused, "Session", "/sessions", "Back to the sessions")
    cursor = cursor[:MAX_CURSOR_CHARS]  # cut, not refused: as on the sessions list
    back = _sessions_back(request, range, user)
    stale = False
    try:
        totals, (rows, next_cursor) = await session_page(
            request, project, session_id, SESSION_ROWS, cursor or None
        )
    except BadCursor:  # a page link that no longer applies: the first page, said so
        stale = True
        totals, (rows, next_cursor) = await session_page(request, project, session_id, SESSION_ROWS, None)
    if totals is None:
        return not_found(request, "session", session_id)
    return page(
        request,
        "session.html",
        session_id=session_id,
        back=back,
        rows=rows,
        totals=totals,
        cursor="" if stale else cursor,
        next_cursor=next_cursor,
        stale_cursor=stale,
    )
