"""What a first retention pass over a backlog of old calls costs, and what it costs ingest meanwhile
(docs/deployment.md, "Retention and backups").

A store (a temp SQLite file, or `--db postgres`: a throwaway PostgreSQL cluster) is seeded through
`write()` with `--calls` calls of `bench/ingest.py`'s records (~3 KB each) from 40 days ago, a tenth of
them in one session that goes on past the cutoff (a few of its calls are recent). The real app then runs
in a child process (uvicorn, group commit, `--retention 30d`: its first pass comes 5 s after start) and
prints when that pass starts and ends. Meanwhile this process sends batches of 10 new calls to
`/v1/events` on one keep-alive connection, one every `--interval` seconds after the last was answered
(answered once stored), and times each.

Printed: the pass's duration, its thread's CPU time and the calls it deleted; the batches' latency (median, p99, most) while
the pass ran, and as the baseline in the same run, while it did not (before it, and for as long again
after it); and their ratio.

On 2 shared cores, SQLite: 200,000 calls deleted in 85 s, 40 s of the thread's CPU (0.2 ms a call), the
batches 42 ms median / 376 ms p99 meanwhile (10 / 40 ms outside); the code before (each deleted call's
record read to take it out of the rollups), measured just before on a busier machine: 286 s, 100 s of
CPU (0.5 ms a call), batches 62 / 568 ms (15 / 83 ms outside). PostgreSQL, 50,000 calls: 8 s and 4.4 s of
CPU, batches 38 ms median (15 outside); before, 47.5 s and 22.5 s, batches 41 ms (16).

    python bench/retention.py                       # 200,000 old calls, SQLite
    python bench/retention.py --db postgres --calls 200000
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RETENTION_S = 30 * 86400
SESSION = "backlog-session"


def seed(db_url: str, calls: int) -> None:
    """`calls` calls older than the retention, through `write()`; a tenth in one session that goes on."""
    sys.path.insert(0, str(BENCH))
    import ingest
    from litelens.server.store.base import open_store

    store = open_store(db_url)
    store.migrate()
    project = store.create_project("default")
    rng = random.Random(7)
    t0 = time.time() - 40 * 86400
    started = time.monotonic()
    for done in range(0, calls, 2_000):
        records = ingest.make_records(min(2_000, calls - done), t0 + done * 0.002, rng)
        for i, record in enumerate(records):
            if (done + i) % 10 == 0:
                record["session_id"] = SESSION
        store.write(project, records, [])
    recent = ingest.make_records(10, time.time() - 3600, rng)
    for record in recent:
        record["session_id"] = SESSION
    store.write(project, recent, [])
    store.close()
    print(f"seeded {calls:,} old calls in {time.monotonic() - started:.0f} s", flush=True)


def serve(db_url: str, port: int) -> int:
    """The collector under test (this child process), retention on; prints the first pass's start and end."""
    import gc

    import uvicorn

    from litelens.server.app import create_app
    from litelens.server.config import GC_THRESHOLDS, ServerSettings
    from litelens.server.store.base import open_store

    gc.set_threshold(*GC_THRESHOLDS)  # as `litelens serve` does
    store = open_store(db_url)
    store.migrate()
    delete = store.delete_older_than

    def timed(cutoff: float, *args: Any, **kwargs: Any) -> int:
        print(json.dumps({"pass_start": time.time()}), flush=True)
        cpu = time.thread_time()  # the retention thread's own: the pass's floor, whatever the load
        deleted = delete(cutoff, *args, **kwargs)
        cpu = time.thread_time() - cpu
        print(json.dumps({"pass_end": time.time(), "deleted": deleted, "pass_cpu": cpu}), flush=True)
        return deleted

    store.delete_older_than = timed  # type: ignore[method-assign]
    settings = ServerSettings.from_env(port=port, db_url=db_url, no_auth=True, retention_s=float(RETENTION_S))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port, log_level="warning")
    )
    server.run()
    store.close()
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(db_url: str, interval_s: float) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    import ingest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    child = subprocess.Popen(
        [sys.executable, __file__, "--_serve", db_url, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    events: dict[str, Any] = {}

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("{"):
                for name, value in json.loads(line).items():
                    events.setdefault(name, value)  # the first pass's; later ones find nothing to delete

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rng = random.Random(11)
    sent: list[tuple[float, float]] = []  # (when sent, seconds until stored)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            if "pass_end" in events and time.time() > 2 * events["pass_end"] - events["pass_start"]:
                break  # as long after the pass as it lasted: the baseline's second half
            (body,) = ingest.events_bodies(
                ingest.transport_batches(ingest.make_records(10, time.time(), rng))
            )
            began = time.time()
            conn.request("POST", "/v1/events", body, headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"/v1/events answered {answer.status}")
            sent.append((began, time.time() - began))
            time.sleep(interval_s)
        conn.close()
    finally:
        child.terminate()
        child.wait(60)
    if "pass_end" not in events:
        raise RuntimeError("the retention pass did not end within the hour")
    start, end = events["pass_start"], events["pass_end"]
    during = [s for t, s in sent if start <= t < end]
    outside = [s for t, s in sent if not start <= t < end]
    return {
        "pass_s": end - start,
        "pass_cpu": events["pass_cpu"],
        "deleted": events["deleted"],
        "during": during,
        "outside": outside,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between two batches of 10 calls")
    parser.add_argument("--_serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve:
        return serve(args._serve[0], int(args._serve[1]))

    with contextlib.ExitStack() as stack:
        if args.db == "postgres":
            from litelens.testing.postgres import TempPostgres

            db_url = stack.enter_context(TempPostgres()).create_database()
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="litelens-retention-"))
            db_url = f"sqlite:///{folder}/bench.db"
        seed(db_url, args.calls)
        result = measure(db_url, args.interval)
    store = "SQLite" if args.db == "sqlite" else "PostgreSQL"
    print(
        f"first retention pass, {store}: {result['deleted']:,} calls deleted in {result['pass_s']:.1f} s, "
        f"{result['pass_cpu']:.1f} s of the retention thread's CPU"
    )
    print(f"{'batches of 10 calls':30} {'n':>5} {'median ms':>10} {'p99 ms':>8} {'most ms':>8}")
    rows = (("while the pass ran", result["during"]), ("baseline: outside the pass", result["outside"]))
    for name, values in rows:
        if values:
            print(
                f"{name:30} {len(values):5} {statistics.median(values) * 1000:10.1f} "
                f"{_percentile(values, 0.99) * 1000:8.1f} {max(values) * 1000:8.1f}"
            )
    if result["during"] and result["outside"]:
        ratio = statistics.median(result["during"]) / statistics.median(result["outside"])
        print(f"\nratio of the medians, during / outside the pass: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
