"""What one spool operation costs as the spool fills: put + pending, and claim_oldest + done.

    python bench/spool.py [--files 100 20000] [--ops 200] [--dir /dev/shm]

A long outage leaves a day of batches in the spool (~170k files at two batches a second). The folder is
filled with valid batches written directly (fast), then the same `Spool` does `--ops` puts (each
followed by `pending()`, as the transport's `_refresh_pending` does) and `--ops` claims (each followed by
`done`). The last column is the ratio to the smallest `--files` figure, measured in the same run: it
stays near 1 when an operation's cost does not grow with the files waiting. `--dir` on a tmpfs keeps
fsync out of the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from litelens.spool import Spool


def _fill(folder: Path, files: int) -> None:
    Spool(folder).put(b"x" * 600, 1, False)
    (model,) = os.listdir(folder)
    data = (folder / model).read_bytes()
    for i in range(files - 1):
        (folder / f"{i + 1:020d}-1-{i % 1_000_000:06d}-1-p.batch").write_bytes(data)


def _measure(folder: Path, files: int, ops: int) -> tuple[float, float]:
    _fill(folder, files)
    spool = Spool(folder)
    spool.pending()  # the first use reads the folder
    started = time.perf_counter()
    for _ in range(ops):
        spool.put(b"y" * 600, 1, False)
        spool.pending()
    put = (time.perf_counter() - started) / ops
    started = time.perf_counter()
    for _ in range(ops):
        entry = spool.claim_oldest()
        assert entry is not None
        spool.done(entry)
    claim = (time.perf_counter() - started) / ops
    return put, claim


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, nargs="+", default=[100, 20_000])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="litelens-spool-bench-", dir=args.dir))
    try:
        rows = [(n, *_measure(base / str(n), n, args.ops)) for n in sorted(args.files)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _, put0, claim0 = rows[0]
    print(f"{'files':>8} {'put+pending ms':>15} {'ratio':>6} {'claim+done ms':>14} {'ratio':>6}")
    for n, put, claim in rows:
        print(f"{n:>8} {put * 1e3:>15.3f} {put / put0:>6.2f} {claim * 1e3:>14.3f} {claim / claim0:>6.2f}")


if __name__ == "__main__":
    main()
