"""The demo's summary, read back from the litelens server's query API (what the dashboard shows too)."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from typing import Any

COLUMNS = (
    ("model", "<", 28),
    ("calls", ">", 7),
    ("errors", ">", 8),
    ("p50 ms", ">", 9),
    ("p95 ms", ">", 9),
    ("tok in", ">", 9),
    ("tok out", ">", 9),
    ("cost $", ">", 11),
)


def get_json(base_url: str, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{base_url}{path}{'?' + query if query else ''}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def stored_calls(base_url: str, start: float) -> int:
    """How many calls the server has that started since `start` (from the rollups, like the charts)."""
    rows = aggregate(base_url, start, group_by=None)
    return sum(row["count"] for row in rows)


def wait_for_calls(base_url: str, start: float, expected: int, timeout: float = 60.0) -> int:
    """Poll until the server has `expected` calls (each call is stored once, whichever layers sent it)."""
    deadline = time.monotonic() + timeout
    seen = stored_calls(base_url, start)
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = stored_calls(base_url, start)
    return seen


def aggregate(base_url: str, start: float, group_by: str | None = "model") -> list[dict[str, Any]]:
    """One aggregate row per group for the calls since `start`, served by the server's rollups.

    The whole range is one bucket: the smallest whole-minute bucket that covers it and whose boundary
    (buckets are aligned to the epoch) does not fall inside it.
    """
    lo = math.floor(start / 60) * 60
    hi = math.ceil((time.time() + 1) / 60) * 60
    bucket = hi - lo
    while lo // bucket != (hi - 1) // bucket:
        bucket += 60
    data = get_json(base_url, "/api/stats", start=lo, end=hi, bucket=bucket, group_by=group_by)
    return sorted(data["rows"], key=lambda row: (-row["count"], str(row["group"])))


def table(base_url: str, start: float) -> str:
    """The summary table: calls, errors, latency, tokens and cost by model, and a line for all of them."""
    header = "".join(f"{name:{align}{width}}" for name, align, width in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in aggregate(base_url, start):
        lines.append(_line(str(row["group"]), row))
    lines.append("-" * len(header))
    for row in aggregate(base_url, start, group_by=None):
        lines.append(_line("all models", row))
    return "\n".join(lines)


def _line(name: str, row: dict[str, Any]) -> str:
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{name[:27]:<28}{row['count']:>7}{row['errors']:>8}"
        f"{ms(row.get('latency_p50_ms')):>9}{ms(row.get('latency_p95_ms')):>9}"
        f"{row['tokens_in']:>9}{row['tokens_out']:>9}{row['cost_usd']:>11.6f}"
    )
