"""Time-bucketed rollups: what one call adds to them, and percentiles read back from their histograms.

The overview charts must not scan raw calls, so every write also updates one rollup row per
(resolution, time bucket, dimension, value): minute rows for fine charts and edges of a range, hour rows
so a day or a week is a few hundred rows. Latency and TTFT go into a fixed log-scale histogram whose bins
grow by `RATIO` = 1.1; a percentile is reported as the geometric middle of the bin that holds the
nearest-rank value, so it is within ±4.9% of the exact nearest-rank percentile of the raw rows (values
under 1 ms share one bin and are reported as 0.5 ms).

Because each contribution is a pure function of the record, an upsert subtracts the old version's
contribution and adds the merged one's: a call counts once however often it arrives.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RATIO = 1.1
_LOG_RATIO = math.log(RATIO)
PERCENTILE_RELATIVE_ERROR = math.sqrt(RATIO) - 1.0  # ≈ 0.0488
RESOLUTIONS = (60, 3600)

# Dimensions kept in rollups; "all" has the single value "".
DIMENSIONS = ("all", "model", "provider", "user", "tag", "key_alias")


def bin_of(ms: float) -> int:
    """Histogram bin of a duration in ms: 0 below 1 ms, then 1 + floor(log_1.1(ms))."""
    if ms < 1.0:
        return 0
    return 1 + math.floor(math.log(ms) / _LOG_RATIO)


def value_of_bin(b: int) -> float:
    """The value reported for a bin: its geometric middle (error at most `PERCENTILE_RELATIVE_ERROR`)."""
    if b <= 0:
        return 0.5
    return math.exp((b - 1) * _LOG_RATIO) * math.sqrt(RATIO)


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of a histogram, or None when it is empty."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return value_of_bin(b)
    return value_of_bin(max(hist))


def dump_hist(hist: Counter[int]) -> str:
    return json.dumps({str(k): v for k, v in sorted(hist.items()) if v}, separators=(",", ":"))


def load_hist(text: str | None) -> Counter[int]:
    if not text:
        return Counter()
    return Counter({int(k): int(v) for k, v in json.loads(text).items()})


@dataclass
class Delta:
    """A change to one rollup row (positive for a call added, negative for a version replaced)."""

    count: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency: Counter[int] = field(default_factory=Counter)
    ttft: Counter[int] = field(default_factory=Counter)

    def add(self, other: Delta, sign: int = 1) -> None:
        self.count += sign * other.count
        self.errors += sign * other.errors
        self.tokens_in += sign * other.tokens_in
        self.tokens_out += sign * other.tokens_out
        self.cost += sign * other.cost
        for b, n in other.latency.items():
            self.latency[b] += sign * n
        for b, n in other.ttft.items():
            self.ttft[b] += sign * n


# (resolution, bucket start, dimension, value)
RollupKey = tuple[int, int, str, str]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def dimension_values(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (dimension, value) pairs a record counts under; a missing value is not a group."""
    proxy = record.get("proxy") or {}
    pairs = [("all", "")]
    model = record.get("response_model") or record.get("request_model")
    user = record.get("end_user") or record.get("user_id")
    for dim, value in (
        ("model", model),
        ("provider", record.get("provider")),
        ("user", user),
        ("key_alias", proxy.get("key_alias") if isinstance(proxy, Mapping) else None),
    ):
        if value:
            pairs.append((dim, str(value)))
    for tag in dict.fromkeys(record.get("tags") or []):
        pairs.append(("tag", str(tag)))
    return pairs


def contribution(record: Mapping[str, Any]) -> Delta:
    usage = record.get("usage") or {}
    delta = Delta(
        count=1,
        errors=1 if record.get("status") == "error" else 0,
        tokens_in=_int(usage.get("input_tokens")),
        tokens_out=_int(usage.get("output_tokens")),
        cost=_num(record.get("cost_usd")) or 0.0,
    )
    duration = _num(record.get("duration_ms"))
    if duration is not None:
        delta.latency[bin_of(duration)] += 1
    ttft = _num(record.get("ttft_ms"))
    if ttft is not None:
        delta.ttft[bin_of(ttft)] += 1
    return delta


def add_record(deltas: dict[RollupKey, Delta], record: Mapping[str, Any], sign: int = 1) -> None:
    """Add (sign=1) or remove (sign=-1) a record's contribution to every rollup row it belongs to."""
    start = _num(record.get("start_time")) or 0.0
    one = contribution(record)
    for resolution in RESOLUTIONS:
        bucket = int(start // resolution) * resolution
        for dim, value in dimension_values(record):
            key = (resolution, bucket, dim, value)
            target = deltas.get(key)
            if target is None:
                target = deltas[key] = Delta()
            target.add(one, sign)


def summarize(bucket: int, group: str | None, rows: Iterable[Delta]) -> dict[str, Any]:
    """One aggregate row out of the rollup rows that fall into it."""
    total = Delta()
    for row in rows:
        total.add(row)
    return {
        "bucket": bucket,
        "group": group,
        "count": total.count,
        "errors": total.errors,
        "error_rate": (total.errors / total.count) if total.count else 0.0,
        "latency_p50_ms": percentile(total.latency, 0.50),
        "latency_p95_ms": percentile(total.latency, 0.95),
        "latency_p99_ms": percentile(total.latency, 0.99),
        "ttft_p50_ms": percentile(total.ttft, 0.50),
        "ttft_p95_ms": percentile(total.ttft, 0.95),
        "tokens_in": total.tokens_in,
        "tokens_out": total.tokens_out,
        "cost_usd": total.cost,
    }
