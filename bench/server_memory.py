"""What a SQLite collector's memory is made of after N ingested calls, and after the dashboard reads them.

The real app (`create_app`, uvicorn, group commit) runs in a child process on a temp SQLite file; a sender
process builds `bench/ingest.py`'s records (~3 KB each, as the core layer sends them) and POSTs them to
`/v1/events` over 4 connections. The child then runs 10 rounds of dashboard queries (4 at a time) and two
full exports, read as streamed, and prints at each step:

  - RSS (VmRSS; anonymous and file-backed);
  - glibc's heap (mallinfo2): in use, and free but kept by the allocator;
  - SQLite's own memory (sqlite3_status64), nearly all of it page caches.

Baseline measured in the same run: the server of another git ref (`--baseline-ref`, default `main`).
Set MALLOC_ARENA_MAX=2 in the environment to see what fewer malloc pools save.

    python bench/server_memory.py --calls 200000
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
import urllib.request
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


def child(calls: int) -> int:
    """The server under test (this process), the sender in another; prints one JSON line per step."""
    import uvicorn

    from litelens.server.app import create_app
    from litelens.server.config import GC_THRESHOLDS, ServerSettings

    gc.set_threshold(*GC_THRESHOLDS)  # as `litelens serve` does
    tmp = tempfile.mkdtemp(prefix="litelens-memory-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServerSettings.from_env(port=port, db_url=f"sqlite:///{tmp}/bench.db", no_auth=True)
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
        print(json.dumps({"step": name, **figures()}), flush=True)

    step("start")
    subprocess.run([sys.executable, __file__, "--_send", url, str(calls)], check=True)
    step("after ingest")

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


def sender(url: str, calls: int) -> int:
    sys.path.insert(0, str(BENCH))
    import ingest

    rng = random.Random(1)
    t0 = time.time() - 6 * 86400
    done = 0
    while done < calls:
        n = min(20_000, calls - done)
        records = ingest.make_records(n, t0 + done * 2.6, rng)
        bodies = ingest.events_bodies(ingest.transport_batches(records))
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        ingest.send(url, "/v1/events", headers, bodies, 4)
        done += n
    return 0


def measure(source: str | None, calls: int) -> list[dict[str, Any]]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    if source:
        env["PYTHONPATH"] = source
    out = subprocess.run(
        [sys.executable, __file__, "--_child", str(calls)],
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
    parser.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_send", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child is not None:
        return child(args._child)
    if args._send:
        return sender(args._send[0], int(args._send[1]))

    sys.path.insert(0, str(BENCH))
    import ingest

    runs: list[tuple[str, list[dict[str, Any]]]] = []
    if args.baseline_ref:
        with ingest.git_source(args.baseline_ref) as source:
            if source:
                runs.append((args.baseline_ref, measure(source, args.calls)))
    runs.append(("this tree", measure(str(BENCH.parent / "src"), args.calls)))
    arenas = os.environ.get("MALLOC_ARENA_MAX", "default")
    print(f"{args.calls:,} calls to /v1/events, SQLite, MALLOC_ARENA_MAX={arenas}; MB")
    print(
        f"{'server':12} {'step':24} {'RSS':>6} {'anon':>6} {'heap used':>10} {'heap free':>10} {'SQLite':>7}"
    )
    for name, steps in runs:
        for s in steps:
            print(
                f"{name:12} {s['step']:24} {s['rss']:6} {s['anon']:6} {s['heap_used']:10} "
                f"{s['heap_free']:10} {s['sqlite']:7}"
            )
    if len(runs) == 2:
        print(
            f"\nratio RSS at the end, this tree / {args.baseline_ref}: {runs[1][1][-1]['rss'] / runs[0][1][-1]['rss']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
