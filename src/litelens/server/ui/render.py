"""Templates, the small formatting filters they use, and the headers every page is served with.

Autoescaping is on for every template: prompts, responses, metadata and tags are whatever callers sent,
so nothing from a record reaches the page unescaped. The Content-Security-Policy allows scripts, styles,
fetches and images from this server only, which both blocks injected markup from running and keeps a
page from loading anything from the internet (the dashboard must work offline).
"""

from __future__ import annotations

import json
import unicodedata
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from litelens.display import format_cost
from litelens.server import fastjson

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

EMPTY = "\u2013"  # an en dash: what a missing value reads as

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show a project's private data
}


def _number(value: Any) -> float | None:
    """A record's number, or None for anything else (missing, null, a string where a number belongs)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt_time(epoch: Any) -> str:
    value = _number(epoch)
    if value is None:
        return EMPTY
    try:
        return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        # A time outside the calendar's years 1 to 9999 (a sender's bug): the number as sent, not a 500
        # for every page that lists the call.
        return f"{value:g} (epoch seconds)"


def fmt_bucket(epoch: float, bucket: int) -> str:
    """A chart bucket's label, as precise as the bucket: minutes for short buckets, days for long."""
    moment = datetime.fromtimestamp(float(epoch), timezone.utc)
    return moment.strftime("%b %d" if bucket >= 86400 else "%b %d %H:%M")


def fmt_ms(given: Any) -> str:
    value = _number(given)
    if value is None:
        return EMPTY
    # Past ten minutes (a session's time in calls, a batch job's call), seconds are hard to read. A value
    # that rounds up to the next unit's threshold is shown in that unit: 999.6 ms read "1000 ms" beside
    # "1.00 s", 599.99 s "600.0 s" beside "10.0 min".
    if value >= 3_600_000 or round(value / 60_000, 1) >= 60:
        return f"{value / 3_600_000:.1f} h"
    if value >= 600_000 or round(value / 1000, 1) >= 600:
        return f"{value / 60_000:.1f} min"
    if value >= 10_000 or round(value / 1000, 2) >= 10:
        return f"{value / 1000:.1f} s"
    if value >= 1000 or round(value) >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms"


def fmt_cost(given: Any) -> str:
    value = _number(given)
    return EMPTY if value is None else format_cost(value)


def fmt_num(given: Any) -> str:
    value = _number(given)
    if value is None:
        return EMPTY
    if abs(value) < 10_000:
        # Counts are whole; a fraction is a chart's axis tick (half of 1 or 5), which read "0" or "2".
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    # The unit that keeps the figure under 1000 as shown (999,999 is "1.0M", not "1000.0k"): a month of
    # a provider's tokens read "2500.0M" when millions were the largest unit.
    scaled, unit = value / 1000, 0
    while unit < len(_UNITS) - 1 and abs(round(scaled, 1)) >= 1000:
        scaled, unit = scaled / 1000, unit + 1
    return f"{scaled:.1f}{_UNITS[unit]}"


_UNITS = ("k", "M", "B", "T")


def fmt_int(given: Any) -> str:
    value = _number(given)
    return EMPTY if value is None else f"{int(value):,}"


def fmt_pct(given: Any) -> str:
    value = _number(given)
    return EMPTY if value is None else f"{value * 100:.1f}%"


def fmt_visible(text: Any) -> str:
    """Text with its control and format characters written as escapes (`\\x00`, `\\u202e`): an id from a
    URL may hold a NUL, a terminal escape or a right-to-left override, which must show as what they
    are, neither reach the page raw nor reorder the text around them."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else ascii(ch)[1:-1] for ch in str(text))


def fmt_path_id(ident: Any) -> str:
    """A call, session or trace id as one path segment of a link, its slashes escaped too.

    Ids are the callers' own strings: with `/` kept, a browser resolved the `..` of `a/../b` and opened
    another page. Escaped, `..` is part of one segment, and the server, which decodes the path, takes the
    id back whole (its routes read the id as `:path`).
    """
    return urllib.parse.quote(str(ident), safe="")


def fmt_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except RecursionError:
        # Nested deeper than the indenting (pure Python) encoder goes: compact, as the collector stored it.
        return fastjson.dumps(value)


def fmt_breakable(text: Any) -> Markup:
    """Escaped text with a line-break opportunity after each thousands comma: a big total that is wider
    than its tile ("12,345,678,901") wraps between digit groups, not in the middle of one."""
    return Markup(str(escape(str(text))).replace(",", ",<wbr>"))


def fmt_code_spans(text: Any) -> Markup:
    """Escaped text whose `backticked` parts are shown as code (the API's descriptions use them)."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as written
        return Markup(escape(str(text)))
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if i % 2 else escape(part) for i, part in enumerate(parts)
    )


def _make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Records are free-form: a field a record lacks renders as empty, not as an error.
        undefined=ChainableUndefined,
    )
    env.filters.update(
        time=fmt_time,
        ms=fmt_ms,
        cost=fmt_cost,
        num=fmt_num,
        int=fmt_int,
        pct=fmt_pct,
        json=fmt_json,
        path_id=fmt_path_id,
        code_spans=fmt_code_spans,
        breakable=fmt_breakable,
    )
    return env


ENV = _make_env()


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A full page: the template with what the layout needs (who is signed in, the current path)."""
    settings = request.app.state.settings
    context.setdefault("project_name", getattr(request.state, "project_name", None))
    context.setdefault("refresh", 0)
    html = render(
        name,
        request_path=request.url.path,
        open_mode=bool(settings.no_auth),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def fragment(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Part of a page (rows for the live tail), under the same headers as a page."""
    return HTMLResponse(render(name, **context), status_code=status, headers=SECURITY_HEADERS)


def refusal(
    request: Request,
    refused: dict[str, str],
    heading: str,
    back_href: str = "/calls",
    back_label: str = "Back to the calls",
) -> HTMLResponse:
    """The 400 a page without a form of its own answers to an address it cannot read (`params.py`): its
    heading, the note naming each parameter, and a way on. A fragment's route (`/partials/...`) gets
    the note alone, as HTML like the rows it would have sent."""
    if request.url.path.startswith("/partials/"):
        return fragment("refused_part.html", status=400, refused=refused)
    return page(
        request,
        "refused.html",
        status=400,
        refused=refused,
        heading=heading,
        back_href=back_href,
        back_label=back_label,
    )
