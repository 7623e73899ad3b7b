"""What a collector's memory is made of while it ingests N calls, and after the dashboard reads them.

The real app (`create_app`, uvicorn, group commit) runs in a child process on a temp SQLite file, or on
PostgreSQL (`--db postgres`: a throwaway cluster; `--db postgresql://...`: a new database on that server
for each run); a sender process builds `bench/ingest.py`'s records (~3 KB each, as the core layer sends
them) and POSTs them to `/v1/events` over 4 connections, a quarter of them at a time. The child then runs
10 rounds of dashboard queries (4 at a time) and two full exports, read as streamed, and prints after
each quarter and each step:

  - RSS (VmRSS; anonymous and file-backed);
  - glibc's heap (mallinfo2): in use, and free but kept by the allocator;
  - SQLite's own memory (sqlite3_status64), nearly all of it page caches;
  - on a throwaway PostgreSQL cluster, the RSS of its processes (shared buffers count in each one that
    touched them, so the sum overstates what the machine gives it).

Baseline measured in the same run: the server of another git ref (`--baseline-ref`, default `main`).
Set MALLOC_ARENA_MAX=2 in the environment to see what fewer malloc pools save.

    python bench/server_memory.py --calls 200000
    python bench/server_memory.py --calls 200000 --db postgres
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import gc
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def figures() -> dict[str, int]:
    """MB: RSS (all, anonymous, file), glibc heap in use and free, SQLite's memory."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    out = {
        k: int(status[v].split()[0]) // 1024
        for k, v in (("rss", "VmRSS"), ("anon", "RssAnon"), ("file", "RssFile"))
    }
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    out["heap_used"], out["heap_free"] = info.uordblks >> 20, info.fordblks >> 20
    import _sqlite3  # its own SQLite, linked in or loaded with it

    lib = ctypes.CDLL(_sqlite3.__file__)
    current, high = ctypes.c_int64(), ctypes.c_int64()
    lib.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(high), 0)  # SQLITE_STATUS_MEMORY_USED
    out["sqlite"] = current.value >> 20
    return out


def postgres_rss(data_dir: str) -> int:
    """MB: the summed RSS of a PostgreSQL cluster's processes (the postmaster and its children)."""
    try:
        postmaster = int(Path(data_dir, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if int(proc.name) != postmaster and ppid != postmaster:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total // 1024


def child(calls: int, db_url: str | None, pg_data: str | None) -> int:
    """The server under test (this process), the sender in another; prints one JSON line per step."""
    import uvicorn

    from litelens.server.app import create_app
    from litelens.server.config import GC_THRESHOLDS, ServerSettings

    gc.set_threshold(*GC_THRESHOLDS)  # as `litelens serve` does
    tmp = tempfile.mkdtemp(prefix="litelens-memory-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServerSettings.from_env(port=port, db_url=db_url or f"sqlite:///{tmp}/bench.db", no_auth=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.1)

    def step(name: str) -> None:
        gc.collect()
        extra = {"postgres": postgres_rss(pg_data)} if pg_data else {}
        print(json.dumps({"step": name, **figures(), **extra}), flush=True)

    step("start")
    # In quarters, so the figures show whether memory levels off under steady ingest or keeps growing.
    sent = 0
    for quarter in range(1, 5):
        n = calls * quarter // 4 - sent
        subprocess.run([sys.executable, __file__, "--_send", url, str(n), str(sent)], check=True)
        sent += n
        step(f"after {sent:,} calls")

    def get(path: str) -> int:
        size = 0
        with urllib.request.urlopen(url + path, timeout=600) as response:
            while chunk := response.read(1 << 16):
                size += len(chunk)
        return size

    now = time.time()
    queries = [
        "/api/stats",
        "/api/stats?group_by=model",
        f"/api/stats?start={now - 86400:.0f}&end={now:.0f}&group_by=model&bucket=300",
        f"/api/stats?start={now - 7 * 86400:.0f}&group_by=model",
        "/api/calls?limit=50",
        "/api/calls?model=gpt-4o&limit=50",
        "/api/calls?tag=rag&status=error",
        "/api/calls?sort=duration_ms&limit=50",
        "/api/calls?q=invoice&limit=50",
        "/api/sessions?limit=50",
    ]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(10):
            list(pool.map(get, queries))
    step("after 10 query rounds")
    for _ in range(2):
        get("/api/export?format=jsonl")
    step("after 2 exports")
    server.should_exit = True
    thread.join(60)
    shutil.rmtree(tmp, ignore_errors=True)  # ~700 MB at 200,000 calls
    return 0


def sender(url: str, calls: int, first: int) -> int:
    sys.path.insert(0, str(BENCH))
    import ingest

    rng = random.Random(1 + first)
    t0 = time.time() - 6 * 86400
    done = first
    while done < first + calls:
        n = min(20_000, first + calls - done)
        records = ingest.make_records(n, t0 + done * 2.6, rng)
        bodies = ingest.events_bodies(ingest.transport_batches(records))
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        ingest.send(url, "/v1/events", headers, bodies, 4)
        done += n
    return 0


def measure(source: str | None, calls: int, db_url: str | None, pg_data: str | None) -> list[dict[str, Any]]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    if source:
        env["PYTHONPATH"] = source
    db = ["--_db", db_url] if db_url else []
    data = ["--_pg-data", pg_data] if pg_data else []
    out = subprocess.run(
        [sys.executable, __file__, "--_child", str(calls), *db, *data],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--baseline-ref", default="main", help="git ref to measure too ('' to skip)")
    parser.add_argument(
        "--db",
        default="sqlite",
        help="sqlite (a temp file), postgres (a throwaway cluster) or a postgresql:// server URL, on "
        "which each run gets a new database",
    )
    parser.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_db", help=argparse.SUPPRESS)
    parser.add_argument("--_pg-data", dest="pg_data", help=argparse.SUPPRESS)
    parser.add_argument("--_send", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child is not None:
        return child(args._child, args._db, args.pg_data)
    if args._send:
        return sender(args._send[0], int(args._send[1]), int(args._send[2]))

    sys.path.insert(0, str(BENCH))
    import ingest

    with contextlib.ExitStack() as stack:
        new_db: Callable[[], tuple[str | None, str | None]] = lambda: (None, None)  # noqa: E731
        if args.db == "postgres":
            from litelens.testing.postgres import TempPostgres

            cluster = stack.enter_context(TempPostgres())
            new_db = lambda: (cluster.create_database(), str(cluster.data))  # noqa: E731
        elif args.db.startswith(("postgresql:", "postgres:")):
            new_db = lambda: (_new_database(args.db), None)  # noqa: E731
        elif args.db != "sqlite":
            parser.error("--db is sqlite, postgres or a postgresql:// URL")
        runs: list[tuple[str, list[dict[str, Any]]]] = []
        if args.baseline_ref:
            with ingest.git_source(args.baseline_ref) as source:
                if source:
                    runs.append((args.baseline_ref, measure(source, args.calls, *new_db())))
        runs.append(("this tree", measure(str(BENCH.parent / "src"), args.calls, *new_db())))
    arenas = os.environ.get("MALLOC_ARENA_MAX", "default")
    store = "SQLite" if args.db == "sqlite" else "PostgreSQL"
    print(f"{args.calls:,} calls to /v1/events, {store}, MALLOC_ARENA_MAX={arenas}; MB")
    pg = args.db == "postgres"
    print(
        f"{'server':12} {'step':24} {'RSS':>6} {'anon':>6} {'heap used':>10} {'heap free':>10} {'SQLite':>7}"
        + (f" {'PostgreSQL RSS':>15}" if pg else "")
    )
    for name, steps in runs:
        for s in steps:
            print(
                f"{name:12} {s['step']:24} {s['rss']:6} {s['anon']:6} {s['heap_used']:10} "
                f"{s['heap_free']:10} {s['sqlite']:7}" + (f" {s.get('postgres', 0):15}" if pg else "")
            )
    if len(runs) == 2:
        print(
            f"\nratio RSS at the end, this tree / {args.baseline_ref}: {runs[1][1][-1]['rss'] / runs[0][1][-1]['rss']:.2f}"
        )
    return 0


def _new_database(server_url: str) -> str:
    """A new, empty database on the PostgreSQL server at `server_url`; its URL."""
    import psycopg

    name = f"litelens_memory_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


if __name__ == "__main__":
    raise SystemExit(main())
