"""What merging a call's second copy costs as its session grows, per database (SQLite, PostgreSQL).

With the core callback and the OTel layer both on, every call reaches the collector twice (docs/modes.md):
the core record, then the span's copy, which the store merges into the stored call. Here calls arrive in
batches of `--batch`, each batch once as core records and once as the OTel copy (the same call with the
ids and response model the span adds). The merge batches are timed, by quarter of the run, for calls that
all belong to one session (an agent session of `--calls` calls) and, as the baseline measured in the same
run, for the same calls without a session. The ratio says what the session adds; it should stay near 1
however long the session is.

    python bench/session_merge.py [--calls 20000] [--batch 50] [--no-postgres]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from litelens.server.store import open_store

T0 = 1_790_000_000.0


def core_record(i: int, session: str | None) -> dict[str, Any]:
    start = T0 + i * 0.5
    return {
        "schema": "litelens.call/1",
        "call_id": f"call-{i}",
        "call_type": "chat",
        "stream": False,
        "start_time": start,
        "end_time": start + 0.4,
        "duration_ms": 400.0,
        "usage": {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120},
        "cost_usd": 0.0002,
        "status": "ok",
        "request_model": "gpt-4o-mini",
        "session_id": session,
        "end_user": f"user-{i % 4}",
        "tags": ["agent"],
        "metadata": {},
    }


def otel_copy(record: dict[str, Any], i: int) -> dict[str, Any]:
    return dict(
        record,
        trace_id=f"{i + 1:032x}",
        span_id=f"{i + 1:016x}",
        response_model="gpt-4o-mini-2024-07-18",
        provider="openai",
    )


def run(url: str, calls: int, batch: int, session: str | None) -> list[float]:
    store = open_store(url)
    store.migrate()
    project = store.create_project("bench")
    times = []
    try:
        for lo in range(0, calls, batch):
            core = [core_record(i, session) for i in range(lo, min(lo + batch, calls))]
            store.write(project, core, [])
            copies = [otel_copy(r, lo + k) for k, r in enumerate(core)]
            began = time.perf_counter()
            store.write(project, copies, [])
            times.append(time.perf_counter() - began)
    finally:
        store.close()
    return times


@contextmanager
def databases(postgres: bool) -> Iterator[list[tuple[str, Callable[[], str]]]]:
    with tempfile.TemporaryDirectory() as tmp:
        files = itertools.count()
        made = [("sqlite", lambda: f"sqlite:///{tmp}/merge-{next(files)}.db")]
        if not postgres:
            yield made
            return
        from litelens.testing.postgres import TempPostgres, find_pg_bin

        if find_pg_bin() is None:
            print("no PostgreSQL binaries found: SQLite only")
            yield made
            return
        with TempPostgres() as pg:
            yield [*made, ("postgres", lambda: str(pg.create_database()))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls in the session")
    parser.add_argument("--batch", type=int, default=50, help="calls per batch (each sent twice)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with databases(not args.no_postgres) as dbs:
        for name, new_url in dbs:
            elsewhere = run(new_url(), args.calls, args.batch, None)
            in_session = run(new_url(), args.calls, args.batch, "agent-1")
            quarter = max(1, len(elsewhere) // 4)
            print(f"{name}: merge batch of {args.batch} calls, median ms, by quarter of {args.calls} calls")
            for q in range(0, len(elsewhere), quarter):
                base = statistics.median(elsewhere[q : q + quarter]) * 1000
                long = statistics.median(in_session[q : q + quarter]) * 1000
                upto = min(args.calls, (q + quarter) * args.batch)
                print(
                    f"  calls up to {upto:>7,}: {base:7.1f} ms without a session, "
                    f"{long:7.1f} ms in one session  (x{long / base:.1f})"
                )
            total = sum(in_session) / sum(elsewhere)
            print(f"  all merge batches: {sum(elsewhere):.2f} s vs {sum(in_session):.2f} s (x{total:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
