"""What `litelens.pending`'s guard adds to each async call's log event (docs/internals.md).

`guard_litellm_worker()` hands every coroutine LiteLLM gives its logging worker over inside a guard
coroutine, so that one `asyncio.run()` cancelled before it started can be run later. The guard costs an
extra coroutine, a table entry and a copy of the caller's context per event. This awaits N log-event
coroutines bare and N guarded, alternately, on the thread CPU clock, and prints the difference per event
and the ratio of the two, each round.

    python bench/pending_guard.py
    python bench/pending_guard.py --events 500000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from litelens import pending


async def _log_event() -> int:
    return 1


def _await_all(events: int, guarded: bool) -> float:
    """Thread CPU seconds to make and await `events` log events, bare or each in a guard."""

    async def loop() -> float:
        started = time.thread_time()
        for _ in range(events):
            event: Coroutine[Any, Any, int] = _log_event()
            await (pending._guarded(event) if guarded else event)
        return time.thread_time() - started

    return asyncio.run(loop())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.events:,} log events per cell, thread CPU time")
    print(f"{'round':>5}  {'bare µs/event':>14}  {'guarded µs/event':>17}  {'added µs':>9}  {'ratio':>6}")
    for round_ in range(1, args.rounds + 1):
        bare = _await_all(args.events, guarded=False) / args.events * 1e6
        guarded = _await_all(args.events, guarded=True) / args.events * 1e6
        print(f"{round_:>5}  {bare:>14.2f}  {guarded:>17.2f}  {guarded - bare:>9.2f}  {guarded / bare:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
