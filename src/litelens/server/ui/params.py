"""What a page does with a query parameter it cannot read: it names it in an error and shows no data.

The query API refuses such input with a 4xx that names the parameter (`api.refuse_unknown_query`,
`api.finite_times`). The pages put a default in its place instead: `?tag=x&tag=y` listed the calls tagged
x, `?since=1733100000` or `?since=yesterdya` the last 24 hours, with a form that looked as asked. Whoever
edited the URL read the table as filtered the way they wrote it. Here every such value becomes a
message, keyed by the parameter's name, which the page shows (status 400) in place of its data.

Empty values are not refused: a GET form sends every field, filled or not, and an empty one means "not
given", as on the pages before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime

from starlette.datastructures import QueryParams

from litelens.server.store.base import OPEN_END
from litelens.server.ui.timerange import RANGES

# The calendar's first and last seconds (0001-01-01T00:00:00Z, 9999-12-31T23:59:59Z): a time outside
# them has no date a form can show.
FIRST_EPOCH = -62135596800.0
LAST_EPOCH = OPEN_END - 1
_EPOCH = datetime(1970, 1, 1)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# As the API reads a boolean query parameter (pydantic), so `no_error_type=true` means what it does there.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
TIME_FORMATS = (
    "a UTC date and time as the From and To fields write it (2026-03-01T09:30, also with seconds, "
    "a Z or an offset) or epoch seconds, as the API's start and end take them"
)

Refusals = dict[str, str]

# Said of a custom time on a page of preset ranges (`?since=` on the overview gave the last 24 hours).
PRESET_ONLY = (
    " (this page shows one of its preset ranges; the calls page takes a From and To of your own: "
    "/calls?since=...&until=...)"
)
_TIME_NAMES = frozenset({"since", "until", "start", "end", "from", "to"})


def shown(value: str, limit: int = 80) -> str:
    """A value as an error quotes it: cut, and with control characters escaped by `repr`."""
    return repr(value[:limit] + ("…" if len(value) > limit else ""))


def unknown(params: QueryParams, known: Iterable[str], where: str, time_hint: str = "") -> Refusals:
    """Parameters the page does not read: `?model_name=` for `model=`, or a custom time on a page of
    preset ranges, did nothing, and the page looked answered as asked. `time_hint` is added to the
    message about a time parameter (`since`, `start`...)."""
    takes = f"it takes: {', '.join(sorted(known))}" if known else "it takes no parameters"
    return {
        name: f"{where} does not read {shown(name, 64)}"
        f"{time_hint if name.lower() in _TIME_NAMES else ''}; {takes}"
        for name in sorted(set(params.keys()) - set(known))
    }


def repeated(params: QueryParams, single: Iterable[str]) -> Refusals:
    """Single-value parameters given more than once with different values, as the API refuses them."""
    refused: Refusals = {}
    for name in single:
        given = list(dict.fromkeys(v.strip() for v in params.getlist(name) if v.strip()))
        if len(given) > 1:
            refused[name] = (
                f"{name} is given {len(given)} times with different values "
                f"({', '.join(shown(v, 40) for v in given[:3])}{', …' if len(given) > 3 else ''}); "
                f"it takes one: give it once"
            )
    return refused


def epoch(text: str) -> float | None:
    """Epoch seconds of a time as the pages take it (see `TIME_FORMATS`); None when it is none, or epoch
    seconds after the year 9999 (milliseconds, read as seconds), as the API refuses them.

    A time outside the years 1 to 9999 (year 1 at +01:00 is year 0 in UTC) is taken as the calendar's
    first or last second, the nearest time a form can show: no call falls in between."""
    text = text.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        value = float(text)
        if not math.isfinite(value) or value > OPEN_END:
            return None
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        # Naive arithmetic, then the offset: `astimezone` overflows (was a 500) past either calendar end.
        offset = moment.utcoffset()
        value = (moment.replace(tzinfo=None) - _EPOCH).total_seconds()
        value -= offset.total_seconds() if offset is not None else 0.0
    return min(max(value, FIRST_EPOCH), LAST_EPOCH)


def time_refusal(name: str, text: str) -> str | None:
    """Why a time parameter is refused, or None when it reads (or is empty)."""
    if not text.strip() or epoch(text) is not None:
        return None
    if _NUMBER.fullmatch(text.strip()) and math.isfinite(float(text)):
        # The API's guard for JavaScript's `Date.now()`: read as seconds it is past the year 10000.
        return f"{name}={shown(text)} is after the year 9999 as epoch seconds (milliseconds? divide by 1000)"
    return f"{name}={shown(text)} is not a time; give {TIME_FORMATS}"


def flag(text: str) -> bool | None:
    """A yes/no parameter as the API reads one; None when it is neither."""
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE or not word else None


def flag_refusal(name: str, text: str) -> str | None:
    if flag(text) is not None:
        return None
    return f"{name}={shown(text)} is neither yes nor no; give 1 or 0 (true or false)"


def choice_refusal(name: str, text: str, choices: Iterable[str]) -> str | None:
    """Why a value that must be one of `choices` is refused, or None (empty: not given)."""
    options = list(choices)
    if not text.strip() or text.strip() in options:
        return None
    return f"{name}={shown(text)} is not one of: {', '.join(options)}"


def number_refusal(name: str, text: str, what: str) -> str | None:
    """Why a parameter that must be a finite number is refused, or None (empty: not given). `what` says
    what the number is, as the message names it."""
    if not text.strip():
        return None
    if _NUMBER.fullmatch(text.strip()) and math.isfinite(float(text)):
        return None
    return f"{name}={shown(text)} is not a finite number; give {what}"


def only(params: QueryParams, known: tuple[str, ...], where: str) -> Refusals:
    """What a page whose parameters are free text (or none) cannot read: one it does not take, or one of
    its own given twice with different values."""
    refused = unknown(params, known, where)
    refused.update(repeated(params, known))
    return refused


def preset_range(
    params: QueryParams, where: str, known: tuple[str, ...], more_ranges: tuple[str, ...] = ()
) -> Refusals:
    """What a page of preset ranges (the overview, the sessions) cannot read in its URL: an unknown range
    gave the last 24 hours, and `since`/`until`, which only the calls page reads, did nothing."""
    refused = unknown(params, known, where, PRESET_ONLY)
    refused.update(repeated(params, known))
    why = choice_refusal("range", params.get("range", ""), (*RANGES, *more_ranges))
    if why is not None:
        refused.setdefault("range", why)
    return refused


def without(params: QueryParams, names: Iterable[str]) -> QueryParams:
    """The parameters but those refused: the form shows what the page could read, and nothing it could not."""
    drop = set(names)
    return QueryParams([(k, v) for k, v in params.multi_items() if k not in drop])
