"""The calls page's URL <-> filters: the whole view lives in the query string, so a link shares it.

Empty form fields are ignored (a GET form sends every field). A value the page cannot read is refused
by name (`refused`), and the page then lists nothing, rather than putting a default in its place;
`parse` reads the rest. The filter itself is built by the query API's own `call_filter`, so the page and
`/api/calls` narrow calls in exactly the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from litelens.server.api import call_filter
from litelens.server.store.base import MAX_CURSOR_CHARS, SORT_KEYS, CallFilter
from litelens.server.ui import params as checks
from litelens.server.ui.timerange import RANGES, window

# The filter's text fields, named as /api/calls names them (where `search` is `q`).
TEXT_FILTERS = tuple(
    "q" if f.name == "search" else f.name for f in dataclasses.fields(CallFilter) if f.type == "str | None"
)
STATUSES = ("ok", "error", "cancelled")
ALL_TIME = "all"
# What the calls view reads from its URL; `meta` alone takes several values (one a key).
VIEW_PARAMS = (
    *TEXT_FILTERS,
    "meta",
    "no_error_type",
    "range",
    "since",
    "until",
    "sort",
    "order",
    "cursor",
    "tail",
)
MAX_META = 20  # as many as `/api/calls` takes


@dataclass(frozen=True)
class CallsView:
    """Everything the calls table shows, as read from the URL."""

    filters: Mapping[str, str] = field(default_factory=dict)
    meta: tuple[str, ...] = ()
    no_error_type: bool = False
    range: str = "24h"
    since: str = ""  # datetime-local text (UTC), overrides the range's start
    until: str = ""
    sort: str = "start_time"
    order: str = "desc"
    cursor: str = ""
    tail: bool = False

    def query(self, **changes: object) -> str:
        """The URL query string of this view with some fields changed (pagination cursor dropped)."""
        view = dataclasses.replace(self, **{"cursor": "", **changes})  # type: ignore[arg-type]
        pairs: list[tuple[str, str]] = [(k, v) for k, v in view.filters.items() if v]
        pairs += [("meta", m) for m in view.meta]
        if view.no_error_type:
            pairs.append(("no_error_type", "1"))
        pairs.append(("range", view.range))
        if view.since:
            pairs.append(("since", view.since))
        if view.until:
            pairs.append(("until", view.until))
        if view.sort != "start_time" or view.order != "desc":
            pairs += [("sort", view.sort), ("order", view.order)]
        if view.cursor:
            pairs.append(("cursor", view.cursor))
        if view.tail:
            pairs.append(("tail", "1"))
        return urlencode(pairs)

    def next_order(self, sort: str) -> str:
        """Clicking a column sorts by it descending; clicking the sorted column flips the order."""
        if sort == self.sort:
            return "asc" if self.order == "desc" else "desc"
        return "desc"


def parse(params: QueryParams) -> CallsView:
    filters = {name: params.get(name, "").strip()[:256] for name in TEXT_FILTERS}
    if filters["status"] not in STATUSES:
        filters["status"] = ""
    meta = tuple(m for m in map(_meta, params.getlist("meta")) if m)
    sort = params.get("sort", "start_time")
    order = params.get("order", "desc")
    time_range = params.get("range", "24h")
    return CallsView(
        filters={k: v for k, v in filters.items() if v},
        meta=meta[:20],
        no_error_type=checks.flag(params.get("no_error_type", "")) is True,
        range=time_range if time_range in RANGES or time_range == ALL_TIME else "24h",
        since=as_input(params.get("since", "")[:40]),
        until=as_input(params.get("until", "")[:40]),
        sort=sort if sort in SORT_KEYS else "start_time",
        order=order if order in ("asc", "desc") else "desc",
        cursor=params.get("cursor", "")[:MAX_CURSOR_CHARS],
        tail=checks.flag(params.get("tail", "")) is True,
    )


def _meta(text: str) -> str:
    """A metadata filter as typed, `key=value` with the spaces around `=` dropped ("team = red" means
    team=red); "" when it has no key, which the API refuses with a 400 in place of the page."""
    key, sep, value = text[:256].partition("=")
    key, value = key.strip(), value.strip()
    return f"{key}={value}" if sep and key else ""


def refused(
    params: QueryParams, extra: tuple[str, ...] = (), where: str = "the calls page"
) -> checks.Refusals:
    """Each parameter of the calls view's URL that the page cannot read, with why (empty: all read).

    `extra`: the parameters a route reads beside the view's (the export's `format`, the tail's `after`);
    `where`: the page, as the message about a parameter it does not take names it."""
    known = (*VIEW_PARAMS, *extra)
    found = checks.unknown(params, known, where)
    found.update(checks.repeated(params, [name for name in known if name != "meta"]))
    single = {name: params.get(name, "") for name in known}
    why = {
        "since": checks.time_refusal("since", single["since"]),
        "until": checks.time_refusal("until", single["until"]),
        "range": checks.choice_refusal("range", single["range"], (*RANGES, ALL_TIME)),
        "status": checks.choice_refusal("status", single["status"], STATUSES),
        "sort": checks.choice_refusal("sort", single["sort"], SORT_KEYS),
        "order": checks.choice_refusal("order", single["order"], ("desc", "asc")),
        "no_error_type": checks.flag_refusal("no_error_type", single["no_error_type"]),
        "tail": checks.flag_refusal("tail", single["tail"]),
        "meta": _meta_refusal(params.getlist("meta")),
    }
    for name, reason in why.items():
        if reason is not None:
            found.setdefault(name, reason)
    return found


def _meta_refusal(given: list[str]) -> str | None:
    """Metadata filters the API would refuse: a `meta` with no key (it was dropped, and the table listed
    calls of any metadata), one key with two values (a JSON 400 in place of the page), too many."""
    typed = [m for m in given if m.strip()]
    for text in typed:
        if not _meta(text):
            return f"meta={checks.shown(text)} is not key=value"
    if len(typed) > MAX_META:
        return f"meta is given {len(typed)} times; up to {MAX_META} metadata filters are taken"
    values: dict[str, str] = {}
    for key, _, value in (_meta(text).partition("=") for text in typed):
        if values.setdefault(key, value) != value:
            return f"meta key {checks.shown(key)} is given twice with different values; a key holds one value"
    return None


def parse_utc(text: str) -> float | None:
    """Epoch seconds of a time from the URL (a `datetime-local` value read as UTC, an ISO time with a
    zone, or epoch seconds as the API takes them); None when empty or not a time."""
    return checks.epoch(text)


def as_input(text: str) -> str:
    """A time from the URL as the form's `datetime-local` field shows it (UTC, to the second), or "".

    The field shows nothing for a value it cannot read (`...Z`, an offset, a typo), so a link with such
    a time filtered the table while the form looked unfiltered, and the next "Apply" dropped the time.
    """
    epoch = parse_utc(text.strip())
    if epoch is None:
        return ""
    # isoformat, not strftime: "%Y" gives year 1 as "1", which the field cannot read.
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def to_filter(view: CallsView, now: float) -> CallFilter:
    start = parse_utc(view.since)
    if start is None and view.range in RANGES:
        # The overview's snapped window, so a breakdown or top-errors link lists the calls it counted.
        start = window(view.range, now).start
    end = parse_utc(view.until)
    return call_filter(
        start=start,
        end=end,
        meta=list(view.meta),
        no_error_type=view.no_error_type,
        **{name: view.filters.get(name) or None for name in TEXT_FILTERS},  # type: ignore[arg-type]
    )
