"""How long the dashboard takes to show its pages in a real browser, with 1,000,000 calls in SQLite.

Seeds N calls (default 1,000,000, over 7 days ending now) into a SQLite file with the seeding of
bench/query.py, starts a real `litelens serve` on it, signs in through the form in headless
Chromium (Debian's, /usr/bin/chromium) and loads each page several times. A load is timed from
`page.goto` until the page is fully rendered: the load event fired and the page's content is there
(all six overview charts; the calls table's rows). Prints p50/p95 per page, and as the baseline measured
in the same run, the same pages for an empty project on the same server: the ratio is what a million
stored calls cost a page.

    python bench/ui.py                          # seeds 1M calls into a temp file first (~5 min)
    python bench/ui.py --db /tmp/ui.db          # keeps the file; a second run reuses it
    python bench/ui.py --calls 100000 --loads 10
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from litelens.server.auth import create_key
from litelens.server.store import open_store
from litelens.server.ui.timerange import WHOLE_RANGE_BUCKET
from litelens.testing.browser import have_chromium, launch
from query import seed

PROJECT = "bench-ui"
# (name, path, what must be on the page when it is rendered)
PAGES = [
    ("overview, last 24 h", "/?range=24h&refresh=0", "figure.chart:nth-of-type(6) svg"),
    ("calls, last 24 h", "/calls", "table[data-testid=calls] tbody tr"),
    ("calls, model + errors", "/calls?model=gpt-4o&status=error", "table[data-testid=calls] tbody tr"),
    ("overview, last 7 days", "/?range=7d&refresh=0", "figure.chart:nth-of-type(6) svg"),
]
EMPTY_READY = {
    "/calls": "table[data-testid=calls]",
    "/calls?model=gpt-4o&status=error": "table[data-testid=calls]",
}


def seeded_store(db: Path, calls: int, days: float, batch: int) -> tuple[str, str]:
    """The store URL and a key of the seeded project (seeding only if the file does not have it yet)."""
    url = f"sqlite:///{db}"
    store = open_store(url + "?synchronous=normal")
    try:
        store.migrate()
        found = store.get_project(PROJECT)
        now = time.time()
        stored = 0
        if found:
            rows = store.aggregate(found["id"], 0, now + 60, WHOLE_RANGE_BUCKET)
            stored = sum(r["count"] for r in rows)
        if stored < calls:
            project = store.create_project(PROJECT)
            print(f"seeding {calls - stored:,} calls into {db} ...", file=sys.stderr)
            t0 = time.perf_counter()
            span = days * 86400
            seed(store, project, calls - stored, now - span, span, batch, random.Random(1))
            print(f"seeded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            store.analyze()  # type: ignore[attr-defined]
        key = create_key(store, PROJECT)
        empty_key = create_key(store, "bench-ui-empty")
    finally:
        store.close()
    return key, empty_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "litelens.cli", "serve", "--db", f"sqlite:///{db}", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen([*argv, "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"litelens serve did not start; see {log}")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95


def time_pages(browser: Any, base: str, key: str, loads: int, empty: bool) -> dict[str, tuple[float, float]]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    results = {}
    for name, path, ready in PAGES:
        ready = EMPTY_READY.get(path, ready) if empty else ready
        samples = []
        for attempt in range(loads + 1):
            t0 = time.perf_counter()
            page.goto(base + path, wait_until="load")
            page.wait_for_selector(ready, state="attached")
            if attempt:  # the first load warms caches (page cache, prepared statements, templates)
                samples.append((time.perf_counter() - t0) * 1000)
        results[name] = percentiles(samples)
    context.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, help="SQLite file to seed or reuse (default: a temp file)")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--loads", type=int, default=15)
    args = parser.parse_args()
    if not have_chromium():
        print("bench/ui.py needs Chromium at /usr/bin/chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    workdir = Path(tempfile.mkdtemp(prefix="litelens-bench-ui-"))
    db = args.db or workdir / "ui.db"
    key, empty_key = seeded_store(db, args.calls, args.days, args.batch)
    port = free_port()
    server = start_server(db, port, workdir / "server.log")
    base = f"http://127.0.0.1:{port}"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            seeded = time_pages(browser, base, key, args.loads, empty=False)
            baseline = time_pages(browser, base, empty_key, args.loads, empty=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"store: SQLite  calls: {args.calls:,} over {args.days:g} days  loads per page: {args.loads}")
    print("time from navigation to fully rendered (load event + content), headless Chromium\n")
    print(f"{'page':26} {'p50 ms':>8} {'p95 ms':>8} {'empty p50':>10} {'ratio':>7}")
    for name, (p50, p95) in seeded.items():
        base_p50 = baseline[name][0]
        print(f"{name:26} {p50:8.0f} {p95:8.0f} {base_p50:10.0f} {p50 / base_p50:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
