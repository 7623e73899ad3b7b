"""Charts as inline SVG, drawn here in plain Python: no chart library, no script needed to see them.

Each chart is a fixed 600x180 viewBox scaled by CSS, with one invisible column per time bucket carrying
the bucket's values in `data-tip` (shown by app.js next to the pointer) and in a `<title>` (the
browser's own tooltip when scripts are off). Colours come from CSS classes, so the page's light and
dark schemes apply to the charts too. Everything interpolated into the markup is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 22  # margins for the axis labels; LEFT is the least left margin
# Width of one character of an axis label in viewBox units (11px sans-serif, see app.css), with room to
# spare: the left margin grows to the longest label of the value axis, so "$0.000050" is not cut.
CHAR_WIDTH = 6.8
Format = Callable[[float], str]
EMPTY = "\u2013"  # an en dash: a bucket without a value


@dataclass(frozen=True)
class Series:
    """One line (or bar stack layer) of a chart; `None` is a bucket without a value (a gap)."""

    name: str
    values: Sequence[float | None]
    css: str  # class naming the colour, e.g. "s1"
    # Per bucket, what the tooltip and the table add about its value (None: nothing), or, for a bucket
    # without a value, said in place of the bare dash: why it has none ("unpriced").
    notes: Sequence[str | None] | None = None

    def text(self, index: int, fmt: Format) -> str:
        """Bucket `index`'s value as the tooltip and the table show it."""
        value = self.values[index]
        note = self.notes[index] if self.notes else None
        if value is None:
            return note or EMPTY
        return f"{fmt(value)} ({note})" if note else fmt(value)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`: a readable axis maximum."""
    if value <= 0:
        return 1.0
    power = 1.0
    while power * 10 <= value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _x(index: int, count: int, left: float) -> float:
    inner = WIDTH - left - RIGHT
    return left + inner * (index + 0.5) / max(count, 1)


def _y(value: float, top: float) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return TOP + inner * (1 - min(value, top) / top)


def _value_axis(top: float, fmt: Format, empty: bool) -> tuple[list[tuple[float, str]], float]:
    """The value axis's ticks (value, label) and the left margin that fits their labels. A chart with
    no value at all gets no value labels: its scale would be made up ("0 ms, 0 ms, 1 ms")."""
    ticks = [(top * fraction, "" if empty else fmt(top * fraction)) for fraction in (0.0, 0.5, 1.0)]
    longest = max(len(label) for _, label in ticks)
    return ticks, max(float(LEFT), round(longest * CHAR_WIDTH + 10, 1))


def _axes(top: float, ticks: list[tuple[float, str]], labels: Sequence[str], left: float) -> list[str]:
    parts = []
    for value, text in ticks:
        y = _y(value, top)
        parts.append(f'<line class="grid" x1="{left}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        if text:
            parts.append(
                f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(text)}</text>'
            )
    if not any(text for _, text in ticks):
        parts.append(
            f'<text class="axis" x="{(left + WIDTH - RIGHT) / 2:.1f}" y="{(TOP + HEIGHT - BOTTOM) / 2:.1f}" '
            'text-anchor="middle">no data in this range</text>'
        )
    count = len(labels)
    if count:
        for index, anchor in ((0, "start"), (count // 2, "middle"), (count - 1, "end")):
            x = (
                _x(index, count, left)
                if anchor == "middle"
                else (left if anchor == "start" else WIDTH - RIGHT)
            )
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(labels[index])}</text>"
            )
    return parts


def _hits(labels: Sequence[str], series: Sequence[Series], fmt: Format, left: float) -> list[str]:
    """Invisible full-height columns, one per bucket, that carry the bucket's values for the tooltip."""
    count = len(labels)
    inner = WIDTH - left - RIGHT
    width = inner / max(count, 1)
    parts = []
    for index, label in enumerate(labels):
        values = "; ".join(f"{s.name} {s.text(index, fmt)}" for s in series)
        tip = escape(f"{label} · {values}")
        parts.append(
            f'<rect class="hit" x="{left + index * width:.1f}" y="{TOP}" width="{width:.1f}" '
            f'height="{HEIGHT - TOP - BOTTOM}" data-tip="{tip}"><title>{tip}</title></rect>'
        )
    return parts


def _table(labels: Sequence[str], series: Sequence[Series], fmt: Format) -> str:
    """The chart's values as a table behind a disclosure: for keyboards and screen readers."""
    head = "".join(f'<th scope="col">{escape(s.name)}</th>' for s in series)
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        + "".join(f"<td>{escape(s.text(i, fmt))}</td>" for s in series)
        + "</tr>"
        for i, label in enumerate(labels)
    )
    return (
        '<details class="chart-table"><summary>Values</summary><table class="compact">'
        f'<thead><tr><th scope="col">Time (UTC)</th>{head}</tr></thead><tbody>{rows}</tbody></table></details>'
    )


def _wrap(
    title: str,
    body: list[str],
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Format,
    gaps: str | None = None,
) -> Markup:
    legend = "".join(
        f'<span class="key"><span class="swatch {escape(s.css)}"></span>{escape(s.name)}</span>'
        for s in series
    )
    if gaps:
        legend += f'<span class="key muted" data-testid="chart-gaps">gaps: {escape(gaps)}</span>'

    return Markup(
        f'<figure class="chart"><figcaption><span class="chart-title">{escape(title)}</span>'
        f'<span class="legend">{legend}</span></figcaption>'
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        + "".join(body)
        + "</svg>"
        + _table(labels, series, fmt)
        + "</figure>"
    )


def line_chart(
    title: str, labels: Sequence[str], series: Sequence[Series], fmt: Format, gaps: str | None = None
) -> Markup:
    """Lines over time buckets; a missing value breaks the line, a lone point is drawn as a dot.

    `gaps`: what a break in the line means, said in the legend when there is one (a bucket of calls
    without a price is unknown, not $0: a reader must not take the gap for a quiet hour)."""
    values = [v for s in series for v in s.values if v is not None]
    top = nice_ceiling(max(values, default=0.0))
    ticks, left = _value_axis(top, fmt, empty=not values)
    body = _axes(top, ticks, labels, left)
    count = len(labels)
    for s in series:
        path: list[str] = []
        pen_down = False
        for index, value in enumerate(s.values):
            if value is None:
                pen_down = False
                continue
            x, y = _x(index, count, left), _y(value, top)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
            alone = (index == 0 or s.values[index - 1] is None) and (
                index == count - 1 or s.values[index + 1] is None
            )
            if alone:
                body.append(f'<circle class="dot {escape(s.css)}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>')
            pen_down = True
        if path:
            body.append(f'<path class="line {escape(s.css)}" d="{" ".join(path)}"/>')
    body += _hits(labels, series, fmt, left)
    has_gap = any(v is None for s in series for v in s.values)
    return _wrap(title, body, labels, series, fmt, gaps if has_gap else None)


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], fmt: Format) -> Markup:
    """Stacked bars over time buckets (e.g. successful and failed requests)."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_ceiling(max(totals, default=0.0))
    # A bar chart's empty buckets are zeros (no requests), not unknowns: its axis is always labelled.
    ticks, left = _value_axis(top, fmt, empty=False)
    body = _axes(top, ticks, labels, left)
    count = len(labels)
    width = (WIDTH - left - RIGHT) / max(count, 1)
    for index in range(count):
        base = 0.0
        for s in series:
            value = s.values[index] or 0
            if value <= 0:
                continue
            y1, y0 = _y(base + value, top), _y(base, top)
            body.append(
                f'<rect class="bar {escape(s.css)}" x="{left + index * width + width * 0.1:.1f}" '
                f'y="{y1:.1f}" width="{width * 0.8:.1f}" height="{max(y0 - y1, 0.5):.1f}"/>'
            )
            base += value
    body += _hits(labels, series, fmt, left)
    return _wrap(title, body, labels, series, fmt)


def span_bar(start: float, end: float, lo: float, hi: float, css: str = "bar s1") -> Markup:
    """A horizontal bar for [start, end] on a [lo, hi] time axis (trace waterfall, timing bar)."""
    total = max(hi - lo, 1e-9)
    x = max(0.0, (start - lo) / total * 1000)
    width = max(2.0, (end - start) / total * 1000)
    return Markup(
        f'<svg class="span-svg" viewBox="0 0 1000 12" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect class="{escape(css)}" x="{x:.1f}" y="1" width="{min(width, 1000 - x):.1f}" height="10"/></svg>'
    )


def timing_bar(duration_ms: float | None, ttft_ms: float | None) -> Markup:
    """A call's duration as a bar, split at the first token for streams: waiting, then streaming."""
    total = max(float(duration_ms or 0), 1e-6)
    first = min(float(ttft_ms), total) if ttft_ms is not None else None
    body = ['<svg class="timing-svg" viewBox="0 0 1000 14" preserveAspectRatio="none" aria-hidden="true">']
    if first is None:
        body.append('<rect class="bar s1" x="0" y="1" width="1000" height="12"/>')
    else:
        cut = first / total * 1000
        body.append(f'<rect class="bar s3" x="0" y="1" width="{max(cut, 1):.1f}" height="12"/>')
        body.append(
            f'<rect class="bar s1" x="{cut:.1f}" y="1" width="{max(1000 - cut, 0):.1f}" height="12"/>'
        )
    body.append("</svg>")
    return Markup("".join(body))
