"""The overview (charts, breakdowns, top errors, slowest and costliest calls) and the calls table.

Every figure comes from the store: the charts from `aggregate` (rollups, as `/api/stats` serves them),
the breakdowns from `top_groups` (the same rollups, ranked in SQL), the tables from `list_calls`
(indexed keyset pages), `top_calls` (a walk down the latency or cost index) and `top_errors` (a partial
index). No page scans raw calls, so a page costs about the same with a thousand calls or a million.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from litelens.server.api import export_response, opened_export
from litelens.server.deps import BadCursor, store_call
from litelens.server.store.base import AGGREGATE_GROUPS
from litelens.server.ui import charts, query
from litelens.server.ui import params as checks
from litelens.server.ui.render import (
    SECURITY_HEADERS,
    fmt_bucket,
    fmt_cost,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fragment,
    page,
    refusal,
)
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
UIProject = Annotated[int, Depends(page_project)]

PAGE_SIZE = 50
# The live tail asks for the calls stored since its last poll (their arrival, `Store.latest_arrival`),
# not for those started since: a call is stored when it ends or when a spool delivers it, and its start
# is the client's clock, so asked by start a long stream, a late spool or a slow clock never showed.
# A page served before that asks by start (`_tail_by_start`), looking back this far (LiteLLM's default
# request timeout) from the newest start it shows.
TAIL_LOOKBACK_S = 600.0
TAIL_ROWS = 200
# When more calls arrive between two polls than a poll brings (TAIL_ROWS), the tail says how many it
# skipped, counted up to this many, and links to them: paging them all in costs the server a burst's
# worth of rows every 2 s per open tail, for a table that keeps 500 rows anyway.
TAIL_GAP_COUNT = 10_000
REFRESH_CHOICES = (0, 10, 30, 60)
BREAKDOWN_ROWS = 10
BREAKDOWN_TITLES = {
    "model": "Model",
    "provider": "Provider",
    "user": "User",
    "tag": "Tag",
    "key_alias": "Key alias",
}
# The calls-page filters a breakdown row links to, which list the calls the row counts ("user" is the end
# user, else the user id; "grouped_model" the response model, else the requested one). A model row also
# sets `model`, which every call it counts matches: the form's Model field then shows the name.
BREAKDOWN_FILTERS = {
    "model": ("model", "grouped_model"),
    "provider": ("provider",),
    "user": ("user",),
    "tag": ("tag",),
    "key_alias": ("key_alias",),
}
SORTABLE = (
    ("start_time", "Time"),
    ("duration_ms", "Latency"),
    ("total_tokens", "Tokens"),
    ("cost_usd", "Cost"),
    # The order the collector stored the calls (or last changed them), as `litelens tail` follows them.
    # No column shows it (an arrival is a position, not a time), so the page says so above the table.
    ("arrival", "Arrival"),
)


def _charts(w: Window, rows: list[dict[str, Any]]) -> list[Any]:
    """The overview's time charts, one point per bucket of the window (empty buckets included)."""
    by_bucket = {int(r["bucket"]): r for r in rows}
    buckets = w.buckets()
    labels = [fmt_bucket(b, w.bucket) for b in buckets]
    # A row of no calls (retention took them all out of its bucket) is an empty bucket.
    points = [r if (r := by_bucket.get(b)) and r["count"] else None for b in buckets]

    def values(name: str, when_empty: float | None = None) -> list[float | None]:
        return [when_empty if r is None else r[name] for r in points]

    counts = values("count", 0)
    errors = values("errors", 0)
    cancelled = values("cancelled", 0)
    # A call the caller abandoned did not succeed either: it gets its own part of the bar.
    ok = [(c or 0) - (e or 0) - (x or 0) for c, e, x in zip(counts, errors, cancelled, strict=True)]
    rate = [None if r is None else r["error_rate"] for r in points]
    S = charts.Series
    return [
        charts.bar_chart(
            "Requests",
            labels,
            [S("ok", ok, "s1"), S("errors", errors, "s-err"), S("cancelled", cancelled, "s-cancel")],
            fmt_num,
        ),
        charts.line_chart("Error rate", labels, [S("error rate", rate, "s-err")], fmt_pct),
        charts.line_chart(
            "Latency",
            labels,
            [
                S("p50", values("latency_p50_ms"), "s1"),
                S("p95", values("latency_p95_ms"), "s2"),
                S("p99", values("latency_p99_ms"), "s3"),
            ],
            fmt_ms,
        ),
        charts.line_chart(
            "Time to first token",
            labels,
            [S("p50", values("ttft_p50_ms"), "s1"), S("p95", values("ttft_p95_ms"), "s2")],
            fmt_ms,
        ),
        charts.line_chart(
            "Tokens",
            labels,
            [S("in", values("tokens_in", 0), "s1"), S("out", values("tokens_out", 0), "s2")],
            fmt_num,
        ),
        charts.line_chart(
            "Cost",
            labels,
            [S("cost", values("cost_usd", 0), "s2", [_priced_note(r) for r in points])],
            fmt_cost,
            gaps="calls without a price",
        ),
    ]


def _within_slowest(totals: dict[str, Any], slowest: list[dict[str, Any]]) -> dict[str, Any]:
    """The range's totals with no latency percentile above its slowest call, listed on the same page.

    The store ranks a range of more calls than it reads (`exact.EXACT_MAX_CALLS`) from its histogram,
    whose estimate of a percentile in the top bin can pass the slowest call (a day of 900 ms calls read
    p99 911 ms above a slowest call of 900 ms); the slowest call is exact and already read."""
    top = slowest[0].get("duration_ms") if slowest else None
    if not isinstance(top, (int, float)):
        return totals
    names = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    return {**totals, **{n: min(totals[n], top) for n in names if totals.get(n) is not None}}


def _priced_note(row: dict[str, Any] | None) -> str | None:
    """What a cost bucket's tooltip says about its price: nothing when every call had one (or there was
    no call: nothing was spent); unpriced when none had (the line leaves a gap: unknown, not $0); how
    many had when some had, since the others are missing from its sum."""
    if row is None:
        return None
    count, priced = int(row["count"]), int(row.get("priced_calls") or 0)
    if not priced:
        return f"unpriced ({count:,} call{'' if count == 1 else 's'})"
    return f"{priced:,} of {count:,} calls priced" if priced < count else None


# `refresh` is read as text: an edited link (`?refresh=off`) gets the page naming it, not a JSON 422.
@router.get("/")
async def overview(request: Request, project: UIProject, range: str = "24h", refresh: str = "30") -> Response:
    refused = checks.preset_range(request.query_params, "the overview", ("range", "refresh"))
    # Not the default in its place: `?refresh=abc` or `?refresh=5` reloaded every 30 s, and one who meant
    # to turn it off (or down) read the page as doing what the link said.
    why = checks.choice_refusal("refresh", refresh, [str(s) for s in REFRESH_CHOICES])
    if why is not None:
        refused.setdefault("refresh", f"{why} (seconds between refreshes; 0 turns it off)")
    if refused:
        return page(
            request,
            "overview.html",
            status=400,
            refused=refused,
            window=window(DEFAULT_RANGE, time.time()),
            ranges=RANGES,
            refresh=0,
            refresh_choices=REFRESH_CHOICES,
        )
    store = request.app.state.store
    w = window(range, time.time())
    # Everything from the range's start on (`OPEN_END`), as the calls table lists it. Independent reads,
    # run side by side on the thread pool (SQLite readers do not block each other).
    series, whole, errors, slowest, costliest, *groups = await asyncio.gather(
        store_call(store.aggregate, project, w.start, OPEN_END, w.bucket, None),
        store_call(store.aggregate, project, w.start, OPEN_END, WHOLE_RANGE_BUCKET, None),
        store_call(store.top_errors, project, w.start, OPEN_END, 10),
        store_call(store.top_calls, project, w.start, OPEN_END, "duration_ms", 5),
        store_call(store.top_calls, project, w.start, OPEN_END, "cost_usd", 5),
        *(
            store_call(store.top_groups, project, w.start, OPEN_END, g, BREAKDOWN_ROWS)
            for g in AGGREGATE_GROUPS
        ),
    )
    # The charts end with the bucket holding now. A call stamped ahead of the collector's clock (up to a
    # day, which ingest takes) is in the totals and the tables, but stretching the time axis to it drew
    # "last hour" as ~1,500 bars of a mostly empty future: such calls are counted in a note instead.
    ahead = sum(int(r["count"]) for r in series if int(r["bucket"]) >= w.end)
    breakdowns = []
    for dim, (rows, count) in zip(AGGREGATE_GROUPS, groups, strict=True):
        breakdowns.append(
            {
                "dim": dim,
                "title": BREAKDOWN_TITLES[dim],
                "filters": BREAKDOWN_FILTERS[dim],
                "rows": rows,
                "more": max(0, count - len(rows)),
            }
        )
    return page(
        request,
        "overview.html",
        window=w,
        ranges=RANGES,
        refresh=next((s for s in REFRESH_CHOICES if str(s) == refresh.strip()), 30),
        refresh_choices=REFRESH_CHOICES,
        totals=_within_slowest(whole[0], slowest) if whole else None,
        charts=_charts(w, series),
        ahead=ahead,
        breakdowns=breakdowns,
        errors=errors,
        slowest=slowest,
        # The walk down the cost index reads an unknown cost as $0, so a range of few priced calls filled
        # "Most expensive calls" with calls whose cost is unknown (a dash): only calls with a price are listed.
        costliest=[c for c in costliest if c.get("cost_usd") is not None],
    )


@router.get("/calls")
async def calls(request: Request, project: UIProject) -> Response:
    refused = query.refused(request.query_params)
    if refused:
        # Nothing listed: the view the URL asked for is not one the page can show, and any other would
        # read as it. The form keeps what could be read.
        view = query.parse(checks.without(request.query_params, refused))
        return page(
            request,
            "calls.html",
            status=400,
            refused=refused,
            view=dataclasses.replace(view, cursor="", tail=False),
            rows=[],
            next_cursor=None,
            ranges=RANGES,
            statuses=query.STATUSES,
            sortable=SORTABLE,
        )
    view = query.parse(request.query_params)
    if view.tail:
        view = dataclasses.replace(view, sort="start_time", order="desc", cursor="")
    store = request.app.state.store
    filters = query.to_filter(view, time.time())
    stale = False
    # Where the tail's first poll starts, read before the rows: a call stored in between is in both,
    # and its row is updated in place rather than missed.
    arrival = await store_call(store.latest_arrival, project) if view.tail else 0
    try:
        rows, next_cursor = await store_call(
            store.list_calls,
            project,
            filters,
            PAGE_SIZE,
            view.cursor or None,
            view.sort,
            view.order == "desc",
        )
    except BadCursor:
        # A page link that no longer applies (edited, or made for another sort): the first page, said so,
        # rather than the API's JSON error in place of the page.
        view, stale = dataclasses.replace(view, cursor=""), True
        rows, next_cursor = await store_call(
            store.list_calls, project, filters, PAGE_SIZE, None, view.sort, view.order == "desc"
        )
    return page(
        request,
        "calls.html",
        stale_cursor=stale,
        # An empty table alone reads as "no calls then"; the range itself can match none.
        backwards=filters.start is not None and filters.end is not None and filters.end <= filters.start,
        view=view,
        rows=rows,
        next_cursor=next_cursor,
        ranges=RANGES,
        statuses=query.STATUSES,
        sortable=SORTABLE,
        arrival=arrival,
    )


# `after` is read as text, as `refresh` is: typed as a number, `?after=abc` was FastAPI's JSON 422.
@router.get("/partials/calls")
async def calls_tail(
    request: Request, project: UIProject, after: str = "", arrived_after: str = ""
) -> Response:
    """The calls of the view stored after `arrived_after` (the position the page or the last poll gave),
    newest start first, for its live tail (app.js adds new ones, updates shown ones); the position to ask
    from next comes in the `X-Litelens-Arrival` header."""
    refused = query.refused(request.query_params, ("after", "arrived_after"))
    why = checks.number_refusal("after", after, "epoch seconds: the newest start the table shows")
    if why is not None:
        refused.setdefault("after", why)
    position = int(arrived_after) if arrived_after.isascii() and arrived_after.isdigit() else None
    if arrived_after and (position is None or position > 2**62):
        refused.setdefault(
            "arrived_after",
            f"arrived_after={checks.shown(arrived_after)} is not a whole number from 0 to 2^62; "
            "give the arrival the page or its last poll gave",
        )
    if refused:
        # The dashboard's note, as HTML like the rows it stands for (the tail's script keeps polling).
        return fragment("refused_part.html", status=400, refused=refused)
    view = query.parse(request.query_params)
    if position is None:
        return await _tail_by_start(request, project, view, float(after or 0))
    filters = query.to_filter(view, time.time())
    store = request.app.state.store

    def read() -> tuple[int, list[dict[str, Any]], int, str]:
        # The position first: every call stored through it is committed (`BatchWriter._next_arrival`),
        # so the next poll asks after it and misses none stored meanwhile.
        through = store.latest_arrival(project)
        if position >= through:
            return through, [], 0, ""
        new = dataclasses.replace(filters, arrived_after=position, arrived_through=through)
        # The newest by start of those, as the table orders its rows.
        rows, _ = store.list_calls(project, new, TAIL_ROWS, None, "start_time", True)
        if len(rows) < TAIL_ROWS:
            return through, rows, 0, ""
        # More arrived than a poll brings: the ones it cannot bring, which started before the oldest row
        # brought, are counted and linked by the start times they span, not paged in (a burst's worth
        # of rows every 2 s per open tail, for a table that keeps 500).
        counted = store.count_calls(project, new, TAIL_GAP_COUNT + TAIL_ROWS)
        first, _ = store.list_calls(project, new, 1, None, "start_time", False)
        oldest = float(rows[-1]["start_time"])
        since = float(first[0]["start_time"]) if first else oldest
        gap = view.query(tail=False, since=_second(since), until=_second(oldest, up=True))
        return through, rows, counted, gap

    through, rows, counted, gap = await store_call(read)
    answer = fragment(
        "rows.html",
        rows=rows,
        view=view.query(tail=True),
        missed=max(0, counted - len(rows)),
        missed_more=counted >= TAIL_GAP_COUNT + TAIL_ROWS,
        gap_start=float(rows[-1]["start_time"]) if rows else 0.0,
        gap=gap,
    )
    answer.headers["X-Litelens-Arrival"] = str(through)
    return answer


async def _tail_by_start(request: Request, project: int, view: query.CallsView, after: float) -> Response:
    """The tail as pages served before arrivals poll it, by start (`after`: the newest start shown):
    a tab opened before the server was upgraded runs that script until it is reloaded."""
    now = time.time()
    filters = query.to_filter(view, now)
    # Back from no later than now: `after` is the newest start shown, and a call stamped ahead of the
    # collector's clock (a client whose clock runs fast) put it hours on, past every call made meanwhile.
    start = max(filters.start or 0.0, min(after, now) - TAIL_LOOKBACK_S)
    filters = dataclasses.replace(filters, start=start)
    store = request.app.state.store
    rows, _ = await store_call(store.list_calls, project, filters, TAIL_ROWS, None)
    missed, counted, gap = 0, 0, ""
    oldest = float(rows[-1]["start_time"]) if len(rows) == TAIL_ROWS else 0.0
    if oldest > after:
        # Every row brought is newer than the newest shown, so the calls between `after` and the oldest
        # row brought were never shown: a gap the user would not see. (Those that started exactly at
        # `oldest` and did not fit are counted too; the ones brought are taken off.)
        between = dataclasses.replace(
            filters,
            start=max(filters.start or 0.0, math.nextafter(after, math.inf)),
            end=min(filters.end or math.inf, math.nextafter(oldest, math.inf)),
        )
        counted = await store_call(store.count_calls, project, between, TAIL_GAP_COUNT)
        missed = counted - sum(1 for r in rows if float(r["start_time"]) == oldest)
        gap = view.query(tail=False, since=_second(after), until=_second(oldest, up=True))
    return fragment(
        "rows.html",
        rows=rows,
        view=view.query(tail=True),
        missed=missed,
        missed_more=counted >= TAIL_GAP_COUNT,
        gap_start=oldest,
        gap=gap,
    )


def _second(epoch: float, up: bool = False) -> str:
    """A time as the calls form's From and To take it: UTC to the second, rounded down (or up)."""
    # Within the calendar: the newest start shown (`after`) is the client's word, and a call's start can be
    # any number a sender stored; past either end this answered 500.
    epoch = min(max(epoch, checks.FIRST_EPOCH), checks.LAST_EPOCH)
    whole = math.ceil(epoch) if up else math.floor(epoch)
    return datetime.fromtimestamp(whole, timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


# Not under /calls/, where a call whose id is "export" lives.
@router.get("/export")
async def export(request: Request, project: UIProject, format: str = "jsonl") -> Response:
    """The calls view's filtered selection, every page of it, as a download (the API's export, signed in
    with the dashboard's cookie: the API takes only a bearer key, which a link cannot send)."""
    refused = query.refused(request.query_params, ("format",))
    why = checks.choice_refusal("format", format, ("jsonl", "csv"))
    if why is not None:
        refused.setdefault("format", why)
    if refused:
        # Not a download of other calls than asked for (the first of two tags, the last 24 hours for a
        # mistyped time): the page that says why, with the calls view of what could be read.
        view = query.parse(checks.without(request.query_params, refused))
        return refusal(request, refused, "Export", f"/calls?{view.query()}")
    filters = query.to_filter(query.parse(request.query_params), time.time())
    records = await opened_export(request.app.state.store, project, filters)
    answer = export_response(records, "csv" if format == "csv" else "jsonl")
    answer.headers.update(SECURITY_HEADERS)
    return answer
