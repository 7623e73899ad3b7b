"""Query latency of the store on a seeded database: what the dashboard's first screens cost.

Seeds N calls (default 1,000,000) through the normal `write` path in large batches, spread over
`--days` days ending now, then prints p50/p95 of:

  - the last-24h overview aggregate (hourly buckets), without and with group_by="model"
  - the same with 5-minute buckets (served from minute rollups)
  - a filtered `list_calls` page (model + last 24h), and a page behind a tag filter
  - `list_calls` pages of the last 24h and of the week sorted by latency and by cost (without a model,
    with one, with one that made no call), the first and the next, beside the 24h page sorted by time
  - `list_calls` pages in arrival order of the last hour and 24h (without a model, with one, with one
    that made no call), downwards and upwards, each beside the same page sorted by time
  - `top_calls`, the overview's slowest and costliest calls, of the last 24h and of an hour without calls
  - `get_trace` of a random trace, and a `list_sessions` page of the last 24h, of all users and of one

and, as the baseline measured in the same run, the 24h hourly overview computed from the raw `calls`
rows with GROUP BY (counts and sums only, no percentiles) — the ratio says what rollups buy.

While seeding it prints each 100,000-call slice's own rate, CPU time and KiB written per call, which
show ingest slowing as the database grows. On 2026-12-02 (2 shared cores under other load), 400,000
calls: 15, 40, 63, 79 KiB and 148, 203, 245, 272 µs of CPU per call with a checkpoint every 64 MiB of
WAL; 12, 31, 46, 55 KiB and 155, 204, 245, 293 µs with one every 256 MiB (the default since); a 256 MiB
writer cache wrote the same 79 KiB. Every query's p95 stayed under 75 ms at 400,000 calls.

Sorted by latency or cost, a page of the week of 100,000 calls read and sorted the whole range: p50 70-127
ms (11-17 ms for the last 24h), against 0.5 ms sorted by time. Walking the sort index (store v15/v16),
0.65-2.1 ms, first page or next, with or without a model (2026-12-02, SQLite).

The same day, on 2 shared cores under heavy load (the raw GROUP BY baseline 45-113 ms rather than ~20), a
model that made no call walked the whole index, reading every call of the range in sort order: 206-254 ms
for the 24h, 451-1,261 ms for the week. A walk behind a filter now gives up after 20 calls of the range per
call of the page and reads the range, as before v15: 54-67 and 325-439 ms (interleaved runs on one file:
37-60 ms against 84-333 for the 24h, 125-302 against 935-1,737 for the week; read and sorted, 36-62 and
219-238). A model of many calls still walks: 1.3-2.0 ms for the week (1.2-1.9 before). `top_calls` of an
hour without calls walked the whole index, 23-27 ms; it now counts the range first: 0.06-0.08 ms, and
0.28 ms for the 24h (0.10 before, the count).

In arrival order (2026-12-02, 100,000 calls, SQLite, one run of each on 2 shared cores, p50 ms, before ->
after, the page by time in the after run in brackets), the planner walked the arrival index, which holds
no start time, checking each call: behind a model of no call 165 -> 0.31 (0.30) for the last hour and 144
-> 20 (20) for the 24h; upwards, past every call that arrived before the range, 300 -> 0.69 (0.31) for the
hour and 120 -> 19 (0.32) for the 24h, which is now read and sorted. Downwards with calls to show, 0.3-0.6
became 0.6-1.0 (the range counted first, as for the other sorts).

    python bench/query.py --calls 100000
    python bench/query.py --url postgresql://... --calls 200000
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

from litelens.server.store import CallFilter, open_store
from litelens.server.store.base import OPEN_END, SortKey
from litelens.server.store.sql import SQLStore

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "mistral-large", "llama-3-70b"]
PROVIDERS = {"gpt-4o-mini": "openai", "gpt-4o": "openai", "claude-3-5-sonnet": "anthropic"}
TAGS = ["prod", "staging", "batch", "chat", "rag"]


def make_records(n: int, start: float, span: float, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        t = start + rng.random() * span
        model = rng.choice(MODELS)
        stream = rng.random() < 0.4
        duration = rng.lognormvariate(6.3, 0.8)
        tokens_in, tokens_out = rng.randrange(20, 3000), rng.randrange(1, 800)
        trace = uuid.UUID(int=rng.getrandbits(128)).hex[:30] + "00" if rng.random() < 0.5 else None
        failed = rng.random() < 0.03
        call_id = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append(
            {
                "schema": "litelens.call/1",
                "call_id": call_id,
                "trace_id": trace or call_id.replace("-", ""),
                "span_id": call_id.replace("-", "")[16:],
                "session_id": f"sess-{rng.randrange(20000)}" if rng.random() < 0.3 else None,
                "end_user": f"user-{rng.randrange(500)}",
                "user_id": None,
                "tags": rng.sample(TAGS, rng.randrange(0, 3)),
                "metadata": {"feature": rng.choice(["faq", "search", "summarize"])},
                "call_type": "chat",
                "stream": stream,
                "request_model": model,
                "response_model": model,
                "provider": PROVIDERS.get(model, "openai_compatible"),
                "start_time": t,
                "end_time": t + duration / 1000,
                "duration_ms": duration,
                "ttft_ms": duration * rng.uniform(0.1, 0.4) if stream else None,
                "usage": {
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
                "cost_usd": (tokens_in * 0.15 + tokens_out * 0.6) / 1e6,
                "status": "error" if failed else "ok",
                "error": {"type": "RateLimitError", "message": "slow down"} if failed else None,
                "request": {"messages": [{"role": "user", "content": f"question {rng.randrange(10**6)}"}]},
                "response": {
                    "choices": [{"message": {"role": "assistant", "content": "an answer of some length"}}]
                },
            }
        )
    return out


def seed(
    store: Any, project: int, calls: int, start: float, span: float, batch: int, rng: random.Random
) -> list[str]:
    """Write `calls` records spread over [start, start + span) through `store.write`, in batches, in
    time order as a collector receives them; returns a few trace ids to look up afterwards."""
    t0 = last_t = time.perf_counter()
    last_cpu = time.process_time()
    written = 0
    last_bytes = _bytes_written()
    traces: list[str] = []
    while written < calls:
        n = min(batch, calls - written)
        # Calls arrive in time order, as they do at a collector: each batch covers the next time slice.
        records = make_records(n, start + span * written / calls, span * n / calls, rng)
        traces += [r["trace_id"] for r in records[:5]]
        store.write(project, records, [])
        written += n
        if written % 100_000 < batch:
            # The last slice's own rate and bytes written to disk (WAL and checkpoints) per call: as the
            # indexes outgrow the writer's cache, each insert dirties its own leaf page in every index
            # whose key is not in time order, and the rate falls with the database's size.
            # The CPU time is this process's own, so it says more than the rate on a machine where other
            # work takes turns on the cores.
            now, done, cpu = time.perf_counter(), _bytes_written(), time.process_time()
            size = f", {(done - last_bytes) / 100_000 / 1024:,.0f} KiB written per call" if done else ""
            print(
                f"  seeded {written:,} calls ({written / (now - t0):,.0f}/s; the last 100,000 at "
                f"{100_000 / (now - last_t):,.0f}/s, {(cpu - last_cpu) / 100_000 * 1e6:,.0f} µs CPU per call"
                f"{size})",
                file=sys.stderr,
            )
            last_t, last_bytes, last_cpu = now, done, cpu
    return traces


def _bytes_written() -> int:
    """Bytes this process has had written to storage so far (Linux), or 0 where that is not known."""
    try:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("write_bytes:"))
    except (OSError, StopIteration, ValueError):
        return 0


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, max(0, round(0.95 * len(samples)) - 1))]
    return statistics.median(samples), p95


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="store URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.mkdtemp(prefix="litelens-bench-")
        url = f"sqlite:///{tmp}/bench.db"
    try:
        return run(args, url)
    finally:
        if tmp is not None:  # a million calls are ~1.6 GB on disk
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, url: str) -> int:
    store = open_store(url)
    assert isinstance(store, SQLStore)
    store.migrate()
    project = store.create_project(f"bench-{os.getpid()}")
    rng = random.Random(args.seed)
    now = time.time()
    span = args.days * 86400
    start = now - span

    t0 = time.perf_counter()
    traces = seed(store, project, args.calls, start, span, args.batch, rng)
    seed_s = time.perf_counter() - t0
    if hasattr(store, "analyze"):
        store.analyze()
    print(f"store: {url.split('?')[0].split('://')[0]}  calls: {args.calls:,} over {args.days:g} days")
    print(
        f"seed: {seed_s:.1f} s ({args.calls / seed_s:,.0f} calls/s through write(), batches of {args.batch})"
    )

    day_ago = now - 86400
    results: list[tuple[str, float, float]] = []

    def bench(name: str, fn: Callable[[], Any]) -> None:
        fn()  # warm
        p50, p95 = timed(fn, args.repeat)
        results.append((name, p50, p95))

    bench("overview 24h, 1h buckets", lambda: store.aggregate(project, day_ago, now, 3600))
    bench("overview 24h, 1h buckets, by model", lambda: store.aggregate(project, day_ago, now, 3600, "model"))
    bench("overview 24h, 5m buckets", lambda: store.aggregate(project, day_ago, now, 300))
    bench("overview 24h, 5m buckets, by model", lambda: store.aggregate(project, day_ago, now, 300, "model"))
    # The overview's tiles (one bucket for the whole range), its last-hour chart and a breakdown.
    whole = 3600 * 24 * 365 * 200
    bench("overview 24h, tiles (one bucket)", lambda: store.aggregate(project, day_ago, now, whole))
    bench("overview 1h, 1m buckets", lambda: store.aggregate(project, now - 3600, now, 60))
    bench("breakdown 24h by model (top_groups)", lambda: store.top_groups(project, day_ago, now, "model"))
    # A small project beside the large one: the dashboard of a few hundred calls a day.
    small = store.create_project(f"bench-small-{os.getpid()}")
    store.write(small, make_records(300, day_ago, 86400, rng), [])
    bench("small project (300 calls): 24h, 1h buckets", lambda: store.aggregate(small, day_ago, now, 3600))
    bench("small project: 24h tiles", lambda: store.aggregate(small, day_ago, now, whole))
    bench("small project: breakdown by tag", lambda: store.top_groups(small, day_ago, now, "tag"))
    bench(
        "list_calls page (model, 24h)",
        lambda: store.list_calls(project, CallFilter(model="gpt-4o", start=day_ago, end=now), limit=50),
    )
    bench(
        "list_calls page (tag + error)",
        lambda: store.list_calls(project, CallFilter(tag="rag", status="error"), limit=50),
    )
    cursor = store.list_calls(project, limit=50)[1]
    bench("list_calls page 2 (no filter)", lambda: store.list_calls(project, limit=50, cursor=cursor))
    # The dashboard's call list of the last 24 h (its default range) and of the whole week, sorted by a
    # column header other than time, downwards: the first page, and a later one from its cursor.
    sorts: tuple[SortKey, ...] = ("duration_ms", "cost_usd")
    for label, since in (("24h", day_ago), ("week", start)):
        for sort in sorts:
            # A model of many calls, and one of none: a filter that keeps nothing of the range.
            for model, note in ((None, ""), ("gpt-4o", ", model"), ("no-such-model", ", model of none")):
                page = CallFilter(start=since, end=now, model=model)
                later = store.list_calls(project, page, 50, sort=sort)[1]
                name = f"list_calls by {sort.split('_')[0]} ({label}{note})"
                bench(name, functools.partial(store.list_calls, project, page, 50, None, sort))
                if later is not None:
                    bench("  its page 2", functools.partial(store.list_calls, project, page, 50, later, sort))
    # The same page sorted by time, as the baseline a user compares it with.
    bench(
        "list_calls by time (24h)", lambda: store.list_calls(project, CallFilter(start=day_ago, end=now), 50)
    )
    # The call list in arrival order ("Arrival" in its sort bar), from a moment on as the dashboard asks
    # for the last hour or day, downwards and upwards, each beside the same page sorted by time.
    arrival_pages: list[tuple[str, int]] = []  # each page's name and its place in `results`
    for label, since in (("1h", now - 3600), ("24h", day_ago)):
        for model, note in ((None, ""), ("gpt-4o", ", model"), ("no-such-model", ", model of none")):
            for descending in (True, False):
                page = CallFilter(start=since, model=model)
                way = "" if descending else ", upwards"
                name = f"list_calls by arrival ({label}{note}{way})"
                arrival_pages.append((name, len(results)))
                bench(
                    name, functools.partial(store.list_calls, project, page, 50, None, "arrival", descending)
                )
                by_time = functools.partial(
                    store.list_calls, project, page, 50, None, "start_time", descending
                )
                bench(f"  by time{way}", by_time)  # its baseline, next in `results`
    # The overview's slowest and costliest calls, from the range's start on: of the last 24 h, and of an
    # hour in which no call came yet (the range past the last call).
    for sort in sorts:
        for label, since in (("24h", day_ago), ("quiet hour", now)):
            name = f"top_calls by {sort.split('_')[0]} ({label})"
            bench(name, functools.partial(store.top_calls, project, since, OPEN_END, sort, 5))
    bench("get_trace", lambda: store.get_trace(project, rng.choice(traces)))
    bench("list_sessions page (24h)", lambda: store.list_sessions(project, day_ago, now, 50))
    # One user of 500 is in few of the day's sessions: the page walks the day's sessions to find them.
    bench(
        "list_sessions page of one user (24h)",
        lambda: store.list_sessions(project, day_ago, now, 50, user=f"user-{rng.randrange(500)}"),
    )

    def raw_overview() -> Any:
        with store._read() as cur:
            cur.execute(
                store._q(
                    "SELECT CAST(start_time / 3600 AS INTEGER), COUNT(*), SUM(input_tokens), SUM(output_tokens), "
                    "SUM(COALESCE(cost_usd, 0)) FROM calls WHERE project_id = ? AND start_time >= ? "
                    "GROUP BY CAST(start_time / 3600 AS INTEGER)"
                ),
                (project, day_ago),
            )
            return cur.fetchall()

    base_p50, base_p95 = timed(raw_overview, max(3, args.repeat // 8))
    print(f"\n{'query':46} {'p50 ms':>9} {'p95 ms':>9}")
    for name, p50, p95 in results:
        print(f"{name:46} {p50:9.2f} {p95:9.2f}")
    print(f"{'baseline: raw GROUP BY over calls, 24h':46} {base_p50:9.2f} {base_p95:9.2f}")
    overview = results[0][1]
    print(f"\nratio raw-scan / rollup overview (p50): {base_p50 / overview:,.1f}x")
    p50 = {name: p for name, p, _ in results}
    by_time = p50["list_calls by time (24h)"]
    for name in (
        "list_calls by duration (24h)",
        "list_calls by duration (week)",
        "list_calls by cost (week)",
        "list_calls by duration (week, model of none)",
    ):
        print(f"ratio {name[11:]} / by time (24h) (p50): {p50[name] / by_time:,.1f}x")
    for name, n in arrival_pages:
        print(f"ratio {name[11:]} / the same page by time (p50): {results[n][1] / results[n + 1][1]:,.1f}x")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
