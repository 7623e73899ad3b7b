"""Time-bucketed rollups: what one call adds to them, and percentiles read back from their histograms.

The overview charts must not scan raw calls, so every write also updates one rollup row per
(resolution, time bucket, dimension, value) at three resolutions: minute rows for fine charts and the
edges of a range, 5-minute rows so a day in 5-minute points is 288 rows per group, hour rows so a week is
a few hundred. Latency and TTFT go into a fixed log-scale histogram whose bins
grow by `RATIO` = 1.1; a percentile is reported as the geometric middle of the bin that holds the
nearest-rank value, so it is within ±4.9% of the exact nearest-rank percentile of the raw rows (values
under 1 ms share one bin and are reported as 0.5 ms). Where that estimate could pass the exact minimum or
maximum, and wherever reading the calls is cheap, `exact.refine` replaces it with the exact value.
Every row also keeps the least and the greatest duration and TTFT it counts (`Bounds`), and an estimate
is clamped into them: past what `exact.refine` may read, a p99 read from the middle of the top bin could
otherwise pass the slowest call by up to 4.9%.

Because each contribution is a pure function of the record, an upsert subtracts the old version's
contribution and adds the merged one's: a call counts once however often it arrives.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litelens import record as rec
from litelens.server import fastjson

RATIO = 1.1
_LOG_RATIO = math.log(RATIO)
PERCENTILE_RELATIVE_ERROR = math.sqrt(RATIO) - 1.0  # ≈ 0.0488
RESOLUTIONS = (60, 300, 3600)  # ascending; each divides the next

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


# `value_of_bin` of the bins that real durations fall in (up to ~10^9 ms), looked up instead of computed.
_BIN_VALUES = tuple(value_of_bin(b) for b in range(256))


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


def percentiles(hist: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """`[percentile(hist, q) for q in qs]` (qs ascending), with one sort of the bins (int keys: sorting
    (bin, count) pairs took three times as long) and the running totals summed in C."""
    return ranked(hist, qs)[0]


def ranked(hist: Mapping[int, int], qs: Sequence[float]) -> tuple[list[float | None], bool]:
    """`percentiles`, and whether one of them is read from the lowest or the highest bin that holds a
    value: only such a percentile can be reported beyond the exact minimum or maximum of the values
    (one 250 ms call read as 240 ms, the middle of its bin), which `exact.refine` corrects."""
    bins = sorted(hist)
    return _ranked(hist, bins, list(map(hist.__getitem__, bins)), qs)


def percentiles_of_texts(texts: Sequence[str | None], qs: Sequence[float]) -> list[float | None]:
    """`percentiles` of the sum of stored histograms."""
    return ranked_texts(texts, qs)[0]


def ranked_texts(texts: Sequence[str | None], qs: Sequence[float]) -> tuple[list[float | None], bool]:
    """`ranked` of the sum of stored histograms. One text written in bin order (as `dump` writes
    them), the usual case when reading (one stored row per bucket and group; a day in 5-minute buckets
    per model is 1,440 of them), is ranked straight from its list, without building a dict."""
    if len(texts) == 1 and texts[0]:
        flat = fastjson.loads(texts[0])
        bins, counts = flat[::2], flat[1::2]
        if bins == sorted(bins):  # sorting a sorted list is one pass in C
            return _ranked(None, bins, counts, qs)
    return ranked(hist_of(texts), qs)


def _ranked(
    hist: Mapping[int, int] | None, bins: Sequence[int], counts: Sequence[int], qs: Sequence[float]
) -> tuple[list[float | None], bool]:
    """The nearest-rank percentiles of sorted `bins` with their `counts` (`hist` is the same as a dict,
    or None to build it when needed), and whether one is read from an edge bin (see `ranked`)."""
    if not bins:
        return [None] * len(qs), False
    if min(counts) <= 0:  # empty bins, or not a real histogram (a residue of taken-back contributions)
        if hist is None:
            hist = {}
            for bin_, n in zip(bins, counts, strict=True):
                hist[bin_] = hist.get(bin_, 0) + n
        held = sorted(b for b, n in hist.items() if n > 0)
        values = [percentile(hist, q) for q in qs]
        edges = {value_of_bin(held[0]), value_of_bin(held[-1])} if held else set()
        return values, any(v is not None and v in edges for v in values)
    running = list(itertools.accumulate(counts))
    total = running[-1]
    # The first bin whose running total reaches the nearest rank.
    found = [bins[bisect.bisect_left(running, max(1, math.ceil(q * total)))] for q in qs]
    low, high = bins[0], bins[-1]
    edge = any(b in (low, high) for b in found)
    return [_BIN_VALUES[b] if 0 <= b < len(_BIN_VALUES) else value_of_bin(b) for b in found], edge


def dump_hist(hist: Mapping[int, int]) -> str:
    """A histogram as a flat JSON list `[bin, count, bin, count, ...]` (only non-empty bins).

    Flat integers parse straight into Python ints, which keeps reading thousands of rows cheap. Built by
    joining strings rather than by `json.dumps` (twice as fast): it runs for every rollup row a batch
    touches.
    """
    return "[" + ",".join([f"{b},{n}" for b, n in sorted(hist.items()) if n]) + "]"


def hist_of(texts: Sequence[str | None]) -> Hist:
    """The sum of stored histograms (their texts)."""
    hist: Hist = {}
    for text in texts:
        add_hist(hist, text)
    return hist


def load_hist(text: str | None) -> Counter[int]:
    hist: Counter[int] = Counter()
    if text:
        add_hist(hist, text)
    return hist


def add_hist(into: dict[int, int], text: str | None) -> None:
    """Add a stored histogram into `into` without building an intermediate object."""
    if not text:
        return
    flat = fastjson.loads(text)
    pairs = zip(flat[::2], flat[1::2], strict=True)
    if not into:
        # The usual case when reading (one stored row per bucket and group): filled in C. A stored
        # histogram has each bin once, so setting is adding. (dict.update: a Counter's own would count
        # the pairs.)
        dict.update(into, pairs)
        return
    get = into.get
    for b, n in pairs:
        into[b] = get(b, 0) + n


def plan(lo: int, hi: int, bucket_seconds: int) -> list[tuple[int, int, int]]:
    """The (resolution, start, end) ranges that cover [lo, hi) with the fewest rollup rows.

    The coarsest resolution that divides `bucket_seconds` serves the aligned middle; finer ones the
    edges. `lo` and `hi` are whole minutes.
    """
    usable = [r for r in RESOLUTIONS if bucket_seconds % r == 0]
    out: list[tuple[int, int, int]] = []

    def cover(a: int, b: int, idx: int) -> None:
        if a >= b:
            return
        r = usable[idx]
        if idx == 0:
            out.append((r, a, b))
            return
        ra, rb = -(-a // r) * r, (b // r) * r
        if ra >= rb:
            cover(a, b, idx - 1)
            return
        out.append((r, ra, rb))
        cover(a, ra, idx - 1)
        cover(rb, b, idx - 1)

    cover(lo, hi, len(usable) - 1)
    return out


@dataclass
class Delta:
    """A change to one rollup row (positive for a call added, negative for a version replaced), or the
    sum of rollup rows being read. Histograms are plain dicts (bin -> count): reading a day of 5-minute
    rows per model makes 1,440 of these."""

    count: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    priced: int = 0  # calls with a known cost: `cost` is their sum, and unknown (None) when there are none
    cancelled: int = 0  # calls the caller abandoned: neither ok nor failed
    latency: dict[int, int] = field(default_factory=dict)
    ttft: dict[int, int] = field(default_factory=dict)
    # The least and greatest latency and TTFT of the rows summed (`Bounds`; None: no value).
    bounds: list[float | None] = field(default_factory=lambda: [None, None, None, None])

    def add(self, other: Delta, sign: int = 1) -> None:
        self.count += sign * other.count
        self.errors += sign * other.errors
        self.tokens_in += sign * other.tokens_in
        self.tokens_out += sign * other.tokens_out
        self.cost += sign * other.cost
        self.priced += sign * other.priced
        self.cancelled += sign * other.cancelled
        for b, n in other.latency.items():
            self.latency[b] = self.latency.get(b, 0) + sign * n
        for b, n in other.ttft.items():
            self.ttft[b] = self.ttft.get(b, 0) + sign * n
        if sign > 0:  # a bound cannot be taken back (see `add_contribution`)
            widen(self.bounds, other.bounds)

    def widen(self, latency_min: Any, latency_max: Any, ttft_min: Any, ttft_max: Any) -> None:
        """Take in a stored row's bounds (its four columns, None where it has no value)."""
        widen(self.bounds, (latency_min, latency_max, ttft_min, ttft_max))


# (resolution, bucket start, dimension, value): the rollup row a change belongs to.
RollupKey = tuple[int, int, str, str]
# What a batch changes in one rollup row, as the write path sums it:
# [count, errors, tokens_in, tokens_out, cost, priced calls, cancelled calls, latency bins, ttft bins,
#  least latency, greatest latency, least TTFT, greatest TTFT].
Change = list[Any]
# How many of a `Change`'s leading items are numbers that add up; the two histograms follow them, then
# the four bounds (None: no value added), which widen rather than add.
SCALARS = 7
LATENCY = 7
TTFT = 8
BOUNDS = 9
# A row's least and greatest latency and TTFT in ms: [latency min, latency max, ttft min, ttft max].
#
# A minimum or maximum cannot be taken back: when a call leaves a row (retention deletes it, a merged
# version replaces it or moves it to another group) the row keeps the bounds it had, which still hold
# every value it counts, only maybe a wider range than they now span. A stale bound is never narrower
# than the truth, so clamping into it never moves a percentile away from the exact value, and it is no
# worse than no clamp at all; recomputing the bounds exactly would cost a pass over each touched row's
# calls per write (for retention, up to an hour of calls read inside the write transaction that ingest
# waits on), while the rows left stale are few: those holding the retention cutoff, the oldest edge of
# the data, which a later pass deletes whole, and those of a call whose later version changed its
# duration or group. A row whose histogram empties forgets its bounds (`write._apply_rollups`).
Bounds = list[Any]


def widen(into: list[Any], other: Sequence[Any], at: int = 0) -> None:
    """Widen the bounds at `into[at:at + 4]` to hold those at `other[at:at + 4]` too (None: no value)."""
    for i in (at, at + 2):
        low, high = other[i], other[i + 1]
        if low is not None and (into[i] is None or low < into[i]):
            into[i] = low
        if high is not None and (into[i + 1] is None or high > into[i + 1]):
            into[i + 1] = high


def clamp(value: float | None, low: float | None, high: float | None) -> float | None:
    """`value` moved into [low, high] (a None bound does not limit it)."""
    if value is None:
        return None
    if high is not None and value > high:
        value = high
    if low is not None and value < low:
        value = low
    return value


# A latency or TTFT histogram: {bin: count}.
Hist = dict[int, int]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def model_name(record: Mapping[str, Any]) -> str | None:
    """The model a record counts under: the answering model, without its provider's prefix.

    LiteLLM names one model both ways depending on the route (`cerebras/llama3.1-8b` from a plain call,
    `llama3.1-8b` from a stream), and the provider is a dimension of its own.
    """
    model = record.get("response_model") or record.get("request_model")
    if not model:
        return None
    return rec.without_provider(str(model), record.get("provider"))


def dimension_values(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (dimension, value) pairs a record counts under; a missing value is not a group."""
    proxy = record.get("proxy") or {}
    pairs = [("all", "")]
    model = model_name(record)
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


def add_contribution(
    deltas: dict[RollupKey, Change], record: Mapping[str, Any], sign: int, resolutions: Sequence[int]
) -> None:
    """Add (sign=1) or take back (sign=-1) a record's contribution to the rollup rows it counts in.

    This runs for every call ingested, so it works on plain lists and dicts. A batch writer passes
    `resolutions=(60,)` and derives the coarser rows from the minute rows with `coarsen`, which touches
    each record's 6-7 rows once instead of 18-21 times.
    """
    get = record.get
    usage = get("usage") or {}
    status = get("status")
    errors = sign if status == "error" else 0
    # A stream the caller abandoned (or a proxy client that hung up) got no answer: counted apart, it
    # does not pass for a successful call in the overview's Requests chart.
    cancelled = sign if status == "cancelled" else 0
    tokens_in = sign * _int(usage.get("input_tokens"))
    tokens_out = sign * _int(usage.get("output_tokens"))
    known = _num(get("cost_usd"))
    # A call LiteLLM could not price adds nothing to the cost and is not counted as priced: a group
    # without a priced call has an unknown cost, not a cost of $0.
    cost = 0.0 if known is None else sign * known
    priced = 0 if known is None else sign
    duration = _num(get("duration_ms"))
    ttft = _num(get("ttft_ms"))
    lat_bin = bin_of(duration) if duration is not None else None
    ttft_bin = bin_of(ttft) if ttft is not None else None
    # Bounds only widen (see `Bounds`): a contribution taken back leaves them as they are.
    lat_bound = duration if sign > 0 else None
    ttft_bound = ttft if sign > 0 else None
    start = _num(get("start_time")) or 0.0
    pairs = dimension_values(record)
    for resolution in resolutions:
        bucket = int(start // resolution) * resolution
        for dim, value in pairs:
            key = (resolution, bucket, dim, value)
            d = deltas.get(key)
            if d is None:
                deltas[key] = [
                    sign, errors, tokens_in, tokens_out, cost, priced, cancelled,
                    {} if lat_bin is None else {lat_bin: sign},
                    {} if ttft_bin is None else {ttft_bin: sign},
                    lat_bound, lat_bound, ttft_bound, ttft_bound,
                ]  # fmt: skip
                continue
            d[0] += sign
            d[1] += errors
            d[2] += tokens_in
            d[3] += tokens_out
            d[4] += cost
            d[5] += priced
            d[6] += cancelled
            if lat_bin is not None:
                hist = d[LATENCY]
                hist[lat_bin] = hist.get(lat_bin, 0) + sign
            if ttft_bin is not None:
                hist = d[TTFT]
                hist[ttft_bin] = hist.get(ttft_bin, 0) + sign
            if lat_bound is not None:
                if d[9] is None or lat_bound < d[9]:
                    d[9] = lat_bound
                if d[10] is None or lat_bound > d[10]:
                    d[10] = lat_bound
            if ttft_bound is not None:
                if d[11] is None or ttft_bound < d[11]:
                    d[11] = ttft_bound
                if d[12] is None or ttft_bound > d[12]:
                    d[12] = ttft_bound


def rows_to_widen(old: Mapping[str, Any], merged: Mapping[str, Any]) -> set[RollupKey]:
    """The rollup rows whose bounds a call's merged version may need to widen although the row's sums
    do not change: where it counts another latency or TTFT than the stored version did, and the rows
    the stored version leaves (where a new call of the same batch may make up for the one that left).

    Anywhere else the sums change (the row counts one more call), or the stored version's own values,
    which the row's bounds already hold, are counted again: a retried batch, or a copy that only adds
    content, writes no row for its bounds."""
    same_values = _num(old.get("duration_ms")) == _num(merged.get("duration_ms")) and _num(
        old.get("ttft_ms")
    ) == _num(merged.get("ttft_ms"))
    start_old = _num(old.get("start_time")) or 0.0
    start_new = _num(merged.get("start_time")) or 0.0
    pairs_old, pairs_new = dimension_values(old), dimension_values(merged)
    if same_values and start_old // 60 == start_new // 60 and pairs_old == pairs_new:
        return set()
    new = {(r, int(start_new // r) * r, dim, value) for r in RESOLUTIONS for dim, value in pairs_new}
    left = {(r, int(start_old // r) * r, dim, value) for r in RESOLUTIONS for dim, value in pairs_old} - new
    return left if same_values else left | new


def _add_hist(into: dict[int, int], other: Mapping[int, int]) -> None:
    get = into.get
    for b, n in other.items():
        into[b] = get(b, 0) + n


def add_change(into: dict[RollupKey, Change], key: RollupKey, delta: Change) -> None:
    """Add `delta` to `into[key]`; a key not there yet gets a copy (`delta` itself never changes)."""
    total = into.get(key)
    if total is None:
        into[key] = [*delta[:SCALARS], dict(delta[LATENCY]), dict(delta[TTFT]), *delta[BOUNDS:]]
        return
    for i in range(SCALARS):
        total[i] += delta[i]
    _add_hist(total[LATENCY], delta[LATENCY])
    _add_hist(total[TTFT], delta[TTFT])
    widen(total, delta, BOUNDS)


def coarsen(minute: Mapping[RollupKey, Change]) -> dict[RollupKey, Change]:
    """Minute deltas plus the 5-minute and hour deltas they add up to (each minute lies in one of each)."""
    out: dict[RollupKey, Change] = {}
    for key, delta in minute.items():
        add_change(out, key, delta)
    for (_, bucket, dim, value), delta in minute.items():
        for resolution in RESOLUTIONS[1:]:
            add_change(out, (resolution, bucket // resolution * resolution, dim, value), delta)
    return out


def sum_changes(parts: Sequence[Mapping[RollupKey, Change]]) -> dict[RollupKey, Change]:
    """The sum of several sets of changes, none of which changes: a row that only one of them touches
    keeps that one's list (shared, not copied), a row several touch gets a new list.

    Sharing is what makes this cheap: prepared batches are summed by the group-commit writer, and most
    of their rows (a minute's users, a batch's own minutes) are in one batch only. The result must then
    be read, never changed in place.
    """
    if not parts:
        return {}
    out = dict(parts[0])
    owned: set[RollupKey] = set()
    for part in parts[1:]:
        get = out.get
        for key, delta in part.items():
            total = get(key)
            if total is None:
                out[key] = delta
            elif key in owned:
                for i in range(SCALARS):
                    total[i] += delta[i]
                _add_hist(total[LATENCY], delta[LATENCY])
                _add_hist(total[TTFT], delta[TTFT])
                widen(total, delta, BOUNDS)
            else:
                out[key] = summed = [
                    total[0] + delta[0], total[1] + delta[1], total[2] + delta[2], total[3] + delta[3],
                    total[4] + delta[4], total[5] + delta[5], total[6] + delta[6],
                    _hist_sum(total[LATENCY], delta[LATENCY]), _hist_sum(total[TTFT], delta[TTFT]),
                    *total[BOUNDS:],
                ]  # fmt: skip
                widen(summed, delta, BOUNDS)
                owned.add(key)
    return out


def _hist_sum(a: Hist, b: Hist) -> Hist:
    out = dict(a)
    _add_hist(out, b)
    return out


def add_into(hist: Hist, delta: Hist) -> None:
    """Add `delta` into `hist`, dropping the bins that fall to zero (`delta` does not change)."""
    get = hist.get
    for b, n in delta.items():
        total = get(b, 0) + n
        if total:
            hist[b] = total
        else:
            hist.pop(b, None)


def dump(hist: Hist) -> str:
    """A histogram without empty bins (as `add_into` leaves it) in `dump_hist`'s format, for the write path.

    Each write rewrites every rollup row its batch touches (1.5 rows per call in bench/ingest.py, with
    10-40 bins in an hour row), so this is written for speed: the int keys sorted (readers rank a
    sorted text without building a dict), pairs flattened in C and written by `fastjson` (orjson),
    about twice as fast as formatting and joining strings.
    """
    if len(hist) == 1:
        for b, n in hist.items():
            return f"[{b},{n}]"
    bins = sorted(hist)
    return fastjson.dumps(
        list(itertools.chain.from_iterable(zip(bins, map(hist.__getitem__, bins), strict=True)))
    )


def parsed(text: str | None) -> Hist:
    hist: Hist = {}
    add_hist(hist, text)
    return hist


LATENCY_QS = (0.50, 0.95, 0.99)
TTFT_QS = (0.50, 0.95)


def summarize(bucket: int, group: str | None, total: Delta) -> tuple[dict[str, Any], bool]:
    """One aggregate row out of the sum of the rollup rows that fall into it, and whether one of its
    percentiles is read from an edge bin of its histogram (see `ranked`)."""
    return _row(bucket, group, total, ranked(total.latency, LATENCY_QS), ranked(total.ttft, TTFT_QS))


def summarize_texts(
    bucket: int,
    group: str | None,
    total: Delta,
    latency_texts: Sequence[str | None],
    ttft_texts: Sequence[str | None],
) -> tuple[dict[str, Any], bool]:
    """`summarize`, with the histograms given as the stored texts of the rows summed into `total`."""
    return _row(
        bucket,
        group,
        total,
        ranked_texts(latency_texts, LATENCY_QS),
        ranked_texts(ttft_texts, TTFT_QS),
    )


def _row(
    bucket: int,
    group: str | None,
    total: Delta,
    ranked_latency: tuple[list[float | None], bool],
    ranked_ttft: tuple[list[float | None], bool],
) -> tuple[dict[str, Any], bool]:
    (latency, latency_edge), (ttft, ttft_edge) = ranked_latency, ranked_ttft
    # An estimate is the middle of its bin: kept inside the least and greatest value the rows hold.
    lat_min, lat_max, ttft_min, ttft_max = total.bounds
    latency = [clamp(v, lat_min, lat_max) for v in latency]
    ttft = [clamp(v, ttft_min, ttft_max) for v in ttft]
    return {
        "bucket": bucket,
        "group": group,
        "count": total.count,
        "errors": total.errors,
        # Abandoned by the caller: neither ok nor an error (`count - errors - cancelled` succeeded).
        "cancelled": total.cancelled,
        "error_rate": (total.errors / total.count) if total.count else 0.0,
        "latency_p50_ms": latency[0],
        "latency_p95_ms": latency[1],
        "latency_p99_ms": latency[2],
        "ttft_p50_ms": ttft[0],
        "ttft_p95_ms": ttft[1],
        "tokens_in": total.tokens_in,
        "tokens_out": total.tokens_out,
        # Unknown, not free, when no call in the row had a price; else the sum of the priced ones.
        "cost_usd": total.cost if total.priced > 0 else None,
        "priced_calls": total.priced,
    }, latency_edge or ttft_edge


def minutes_out(rows: Sequence[Sequence[Any]], keep_after: float) -> dict[RollupKey, Change]:
    """What leaves the coarser rollup rows when minute rows go whole, with every call they count.

    `rows` are stored minute rows as (dim, bucket, value, count, errors, tokens_in, tokens_out, cost,
    priced, cancelled, latency histogram text, TTFT histogram text). A coarser row is the sum of the
    minute rows it holds, so each minute row is taken out of the 5-minute and hour rows holding it, but
    only of those that end after `keep_after`: the others go whole too. Bounds are left as they are
    (see `Bounds`).
    """
    out: dict[RollupKey, Change] = {}
    for dim, bucket, value, count, errors, tokens_in, tokens_out, cost, priced, cancelled, lat, ttft in rows:
        change: Change = [
            -count, -errors, -tokens_in, -tokens_out, -cost, -priced, -cancelled,
            {b: -n for b, n in parsed(lat).items()}, {b: -n for b, n in parsed(ttft).items()},
            None, None, None, None,
        ]  # fmt: skip
        for resolution in RESOLUTIONS[1:]:
            start = int(bucket) // resolution * resolution
            if start + resolution > keep_after:
                add_change(out, (resolution, start, str(dim), str(value)), change)
    return out
