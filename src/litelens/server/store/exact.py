"""Exact percentiles read from the raw calls where that is cheap, in place of the rollups' estimates.

A rollup histogram reports a percentile as the middle of the bin that holds it, within ±4.9% of the exact
nearest-rank value (`rollup`). Beside exact figures that is visible: a single 250 ms call read as p50
240 ms while the slowest call said 250 ms, and a p99 could pass the slowest call. A reported percentile
can lie outside its calls' exact [min, max] only when it is read from the histogram's lowest or highest
bin, so those rows, and every row of a selection small enough to read whole, get their percentiles
from the calls themselves: exact nearest-rank values, which lie inside [min, max] by definition.

What is read is bounded by `EXACT_MAX_CALLS` calls per answer (the rollups count them before anything is
read): a selection of at most that many calls is exact throughout; past it, the chart buckets holding a
row with a percentile from an edge bin are read, fewest calls first, while the budget lasts, and the
other rows keep the histogram's estimate, which `rollup` holds within the bounds each rollup row keeps
(so in a large answer no estimate passes its calls' min or max).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from litelens.server.store import rollup

# What reading calls costs, in calls: one call's (start, duration, TTFT) is a few microseconds to read
# through the time index on either store, so the default keeps the reads of one answer to a few ms.
EXACT_MAX_CALLS = 300

# A selection's rows: (sql, params) -> rows, on the store's read connection.
Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def nearest_rank(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..1) of ascending `ordered`, as `rollup.percentile` ranks."""
    if not ordered:
        return None
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def chosen(slot_calls: dict[int, int], edge_slots: set[int], budget: int | None = None) -> list[int]:
    """The time slots to read, given how many calls each holds: all of them when they fit the budget
    (default `EXACT_MAX_CALLS`), else those with a row whose percentile is read from an edge bin,
    fewest calls first, while it lasts."""
    budget = EXACT_MAX_CALLS if budget is None else budget
    if sum(slot_calls.values()) <= budget:
        return sorted(slot_calls)
    out, spent = [], 0
    for slot in sorted(edge_slots, key=lambda s: (slot_calls.get(s, 0), s)):
        spent += slot_calls.get(slot, 0)
        if spent > budget:
            break
        out.append(slot)
    return sorted(out)


def _group_sql(dim: str, record_tags: str) -> tuple[str, str]:
    """(columns, join) that name each call's group of `dim` (`_groups_of`), as `rollup.dimension_values`
    counts them."""
    if dim == "model":
        return ", c.response_model, c.request_model, c.provider", ""
    if dim == "user":
        return ", c.end_user, c.user_id", ""
    if dim == "tag":
        if record_tags:
            return f", {record_tags}", ""
        return ", t.tag", " JOIN call_tags t ON t.project_id = c.project_id AND t.call_id = c.call_id"
    if dim in ("provider", "key_alias"):
        return f", c.{dim}", ""
    return "", ""


def _groups_of(dim: str, row: tuple[Any, ...], record_tags: str) -> Sequence[str]:
    if dim == "model":
        name = rollup.model_name({"response_model": row[3], "request_model": row[4], "provider": row[5]})
        return (name,) if name else ()
    if dim == "user":
        user = row[3] or row[4]
        return (user,) if user else ()
    if dim == "tag" and record_tags:
        return _tags_of(row[3])
    if dim in ("tag", "provider", "key_alias"):
        return (row[3],) if row[3] else ()
    return ("",)


def refine(
    read: Read,
    project_id: int,
    dim: str,
    rows: list[dict[str, Any]],
    edges: Sequence[bool],
    lo: int,
    hi: int,
    bucket: int,
    slot_calls: Callable[[], dict[int, int]] | None = None,
    record_tags: str = "",
) -> list[dict[str, Any]]:
    """`rows` (aggregate rows of [lo, hi) per `bucket`, or of the whole range when `bucket` is 0; `edges`
    as `rollup.summarize` flags them) with exact percentiles in the slots `chosen` picks.

    `slot_calls` says how many calls each slot holds (what reading it costs) when the rows are groups;
    rows of all calls say it themselves. A row keeps its estimate when the calls read are not the calls
    it counts (one written in between; a tag that an old release cut in `call_tags`, read again from the
    records through `record_tags`, the backend's SQL for a call's `tags` as JSON)."""
    if not rows:
        return rows
    slot_of_row = [int(r["bucket"]) for r in rows]
    edge_slots = {slot for slot, edge in zip(slot_of_row, edges, strict=True) if edge}
    calls: dict[int, int] = {}
    if slot_calls is None:
        for slot, row in zip(slot_of_row, rows, strict=True):
            calls[slot] = calls.get(slot, 0) + int(row["count"])
    elif edge_slots or sum(int(r["count"]) for r in rows) <= EXACT_MAX_CALLS * 4:
        # (A selection of groups that count far more calls than could be read, none from an edge bin,
        # has nothing to read: no need to count its slots' calls.)
        shown = set(slot_of_row)
        calls = {slot: n for slot, n in slot_calls().items() if slot in shown}
    slots = chosen(calls, edge_slots)
    if not slots:
        return rows
    read_slots = set(slots)
    keys = {i: (slot, rows[i]["group"] or "") for i, slot in enumerate(slot_of_row) if slot in read_slots}
    wanted = _read_values(read, project_id, dim, set(keys.values()), slots, lo, hi, bucket, "")
    missed = {keys[i] for i in keys if len(wanted[keys[i]][0]) != rows[i]["count"]}
    if missed and dim == "tag" and record_tags:
        again = sorted({slot for slot, _ in missed})
        wanted.update(_read_values(read, project_id, dim, missed, again, lo, hi, bucket, record_tags))
    out = list(rows)
    for i, key in keys.items():
        latency, ttft = wanted[key]
        if len(latency) != rows[i]["count"]:
            continue
        latency.sort()
        ttft.sort()
        out[i] = {
            **rows[i],
            "latency_p50_ms": nearest_rank(latency, 0.50),
            "latency_p95_ms": nearest_rank(latency, 0.95),
            "latency_p99_ms": nearest_rank(latency, 0.99),
            "ttft_p50_ms": nearest_rank(ttft, 0.50),
            "ttft_p95_ms": nearest_rank(ttft, 0.95),
        }
    return out


def _read_values(
    read: Read,
    project_id: int,
    dim: str,
    keys: set[tuple[int, str]],
    slots: Sequence[int],
    lo: int,
    hi: int,
    bucket: int,
    record_tags: str,
) -> dict[tuple[int, str], tuple[list[float], list[float]]]:
    """The durations and TTFTs of the calls that each (slot, group) of `keys` counts, read from `slots`
    (ascending); with `record_tags`, a call's tags are read from its record, not from `call_tags`."""
    wanted: dict[tuple[int, str], tuple[list[float], list[float]]] = {key: ([], []) for key in keys}
    # Adjacent chart buckets are read as one range.
    ranges: list[list[int]] = []
    for slot in slots:
        a, b = (lo, hi) if not bucket else (max(slot, lo), min(slot + bucket, hi))
        if ranges and ranges[-1][1] == a:
            ranges[-1][1] = b
        else:
            ranges.append([a, b])
    columns, join = _group_sql(dim, record_tags)
    for a, b in ranges:
        found = read(
            f"SELECT c.start_time, c.duration_ms, c.ttft_ms{columns} FROM calls c{join} "
            "WHERE c.project_id = ? AND c.start_time >= ? AND c.start_time < ?",
            [project_id, a, b],
        )
        for row in found:
            # The slot the rollups count the call in: its start minute's bucket.
            slot = lo if not bucket else int(row[0] // 60) * 60 // bucket * bucket
            for group in _groups_of(dim, row, record_tags):
                values = wanted.get((slot, group))
                if values is None:
                    continue
                if row[1] is not None:
                    values[0].append(float(row[1]))
                if row[2] is not None:
                    values[1].append(float(row[2]))
    return wanted


def _tags_of(value: Any) -> list[str]:
    """A record's tags as the rollups count them, from its `tags` read as JSON (text or parsed)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list(dict.fromkeys(str(tag) for tag in value)) if isinstance(value, list) else []
