"""Where litelens' sender thread spends its CPU: per batch (fixed) and per record, with a breakdown.

    python bench/sender_cost.py [--batches 300] [--sizes 1 10 20] [--rounds 3] [--compare SRC]
                                [--gap-ms 50] [--trash-mb 8]
    python bench/sender_cost.py --single [--batches N] [--profile]    # in-process, e.g. under valgrind
    python bench/sender_cost.py --single --step build|prepare [--batches N]   # one step alone
    python bench/sender_cost.py --build-ratio [--before REF] [--batches N] [--rounds R]

The records are real: each worker makes a few sync LiteLLM calls to the fake provider and keeps what
litelens' hook queued (LiteLLM's standard_logging_object and the rest, by reference), then replays them
through a real `Transport` with the callback's own `prepare`, to the same loopback sink as
`callback_overhead.py`, in another process: per batch, `size` submits and a `flush()` (what
`callback_overhead.py` does after each block of calls), the sender thread's CPU read on its own clock.
A line through the per-batch figures of the sizes gives the fixed cost of a batch and the cost of
each record in it.

Between batches the worker pauses `--gap-ms` and writes over `--trash-mb` MB, as LiteLLM's ten calls
between two of `callback_overhead.py`'s batches do: that bench's sender runs cold, and so does this
one. The gap matters twice: a thread woken after a pause runs slower for a while on this machine, and
Linux delays the ACKs of a connection whose requests follow its answers within ~40 ms; back to back
(`--gap-ms 0`), main's sender (before httpconn's TCP_QUICKACK) waited 40 ms for every answer of the
sink, which writes headers and body apart, and paid the cold wake-up on every batch.

The breakdown times each step alone on the main thread, after the same pause and cache writes (median
of repeats): `prepare` (the record built from LiteLLM's payload, the pipeline, scrubbing and JSON
encoding: per record), and per batch of `--block` records the body's framing and gzip, and the HTTP
exchange on a kept-alive connection. `rest` is the sender's per-batch figure minus those steps: the
thread's wake-ups, the flush token, the queue, the answer's bookkeeping, and each step's cold start
(the steps run one after another here, so only the first pays it).

With `--compare SRC` a second worker imports litelens from SRC (e.g. a checkout of main's src/), and
the two are asked in turn, round by round, so both see the same machine; the last column is the ratio
of this tree's figure to SRC's.

For instruction counts the machine's noise does not move, run `--single` under
`valgrind --tool=cachegrind` with two `--batches` values and divide the difference of the totals;
`--step build` or `--step prepare` runs only the callback's building of the record, or all of its
`prepare`, `--batches` x `--block` times on the main thread (no transport).
Instruction counts of the same records (2026-12-01, per record unless said; LiteLLM stubbed out):
prepare 325k (build 158k, JSON encoding 153k, scrub 8k), gzip of a batch 227k for 1 record and 325k
for 10 (zlib's set-up and Huffman trees are most of a small batch), the HTTP exchange 73k of user
space, the rest of the transport's loop ~170k per batch. Smaller zlib windows or memLevels, or
Z_FIXED, did not lower the sender's CPU (measured in the sender, cold); the plain JSON encoder made
once instead of per record saved 6k of the 325k. The build and scrub figures are stale since the
record is built with fewer helper calls: see below.

Building the record with fewer helper calls (2026-12-01; cachegrind, `--single --step ...` with
`--batches 10` and `210`, i.e. 2,000 records, against main's src at 21c7cbe, LiteLLM loaded, not
stubbed): build 154k -> 108k instructions per record (0.70), prepare 311k -> 261k (0.84), of which
the JSON encoding is ~148k in both and scrub 8.6k -> 6.2k; the sender thread (`--single`, `--batches
50` and `250`, 10 records a batch, each batch's gzip and HTTP exchange shared out) 488k -> 430k per
record. Of the 46k saved in the build, ~10k is the callback passing the builder's 18 arguments by
position (`record.from_payload`) instead of by name; the rest is the ~40 helper calls,
comprehensions and repeated look-ups per record that are gone (a Python call costs ~600-1,000
instructions here, a comprehension ~1,600). What is left is spread over the ~45 fields; the largest
items are the two ids (~6k each; a regular expression beat the other exact checks of 32 hex digits
that were tried), usage (~12k), the response's content (~9k) and `round` (~3k a call).
`--build-ratio` (the same 12 payloads through both versions in this process, in alternating rounds,
after checking that they give equal records): 15.6 µs against 20.8 (0.75) by name, 15.2 against
21.0 (0.73) as the callback calls it.

Where the JSON encoding goes (2026-12-01 evening; cachegrind, Python 3.11.7; the 20 records this bench
captures, ~1,310 bytes each, put through `record.encode` 2,000 times against 0, and `--step prepare`
with `--batches 10` and `210`: prepare 269k per record, encoding 143k of it). It is one call of the C
encoder per record: made once and shared, no `default` hook, no circular check, no fallback taken, no
second encoding (`_finish` measures the text it sends; the transport only turns it into UTF-8 bytes).
The 143k are CPython 3.11's C encoder itself: escaping the 77 strings (57 keys, 546 characters; 20
values, 350) 32k, as `py_encode_basestring` reads each character twice (~30 instructions a character,
~150 a string); the five floats 19k (the shortest repr's big-number arithmetic: ~8k for an epoch time
such as 1796153861.113162, ~4k for 233.463); joining the ~250 small strings it accumulates 14k; the
rest (each dict's items as a list of new tuples, list appends, allocations) ~75k over 70 values in 13
containers. What else was tried, all giving the same text: the top level in Python with the keys'
JSON kept from one record to the next, 159k; the values one by one through the C encoder with `map`,
222k; `ensure_ascii=True`, 147k (and longer text for non-ASCII content); `json.dumps` as is, 165k. So
nothing in the standard library encodes these records for less on 3.11, and the encoding is unchanged.

The transport's own part of a batch (2026-12-01 evening; cachegrind, `Transport` with a `prepare`
that returns the record's text, to the same sink, 220 batches against 20, no pause; main's src at
adef92a / this tree): 461k / 444k instructions for a batch of 1, 824k / 809k for a batch of 10. Of a
batch of 10: gzip 449k (an empty body alone 85k, 64k of it zlib clearing its 64 KB hash table, which
valgrind counts a byte at a time, so its real cost is far lower; crc32 ~4 a byte, 52k; level 1
deflate ~24 a byte), the HTTP exchange 78k of user space, reading the answer 25k -> 8k (`json.loads`
worked out the encoding of the bytes in Python first; now only an answer that is not one plain UTF-8
JSON value goes through it), the loop, wake-ups and flush token the rest. System calls per batch
(strace): one send and two receives (the sink writes its head and body apart), a `poll` before each
(CPython's sockets with a timeout), three `ioctl(FIONBIO)` from `settimeout` (0.4 us each, warm: left
as they are), one `TCP_QUICKACK`, and the futex wake-ups of the sender and the flushing thread. The
sender thread with LiteLLM's records (`--single`, `--batches 50` and `250`, 10 records a batch, the
main thread's writing over 8 MB included): 4.35M / 4.29M instructions per batch (cachegrind does not
replay the waits exactly, so this moves by more than the 17k the answer saves).

Last measured (2026-12-01, 2 shared cores; `--batches 100 --compare` main's src at 21c7cbe, i.e.
before the record was built with fewer helper calls; defaults: 50 ms gap, 8 MB, 3 rounds), µs, this
tree / main / ratio:

    sender/batch@1      497   533  0.93
    sender/batch@10     950  1093  0.87
    sender/batch@20    1431  1702  0.84
    fixed               440   484  0.91
    per record           50    62  0.81
    prepare/record       61    77  0.79
    gzip/batch@10        93    93  1.00
    http/batch          158   156  1.01
    rest/batch@10        93   100  0.93

The steps the change did not touch (gzip, HTTP) came out equal, so the run was a fair one; the
per-record figures fell by about what the instruction counts say. The run before this one compared
against 167d880 (before TCP_QUICKACK): back to back (`--gap-ms 0`), that main waited 40 ms for each
answer of the sink and ran every step cold after it (fixed 238 µs against 532).

With the answer read without `json.loads` (2026-12-01 evening, `--batches 100 --rounds 5 --compare`
main's src at adef92a; 2 shared cores, other sessions' work running, load ~3.5), µs, this tree / main /
ratio:

    sender/batch@1      564   599  0.94
    sender/batch@10    1065  1098  0.97
    sender/batch@20    1582  1576  1.00
    fixed               516   552  0.93
    per record           53    52  1.02
    prepare/record       69    67  1.03
    gzip/batch@10       102   100  1.02
    http/batch          167   167  1.00
    rest/batch@10        89   112  0.79

The change is 17k instructions a batch, a few µs: within this machine's noise, as the unchanged steps'
ratios (1.00-1.03) show. Two shorter runs just before, under a load of 7-8, gave 0.84 and 0.90 for
batches of 10, with the unchanged steps at 0.66-1.19: too noisy to say anything.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _procs  # bench/, put on the path above

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MESSAGES = [{"role": "user", "content": "benchmark question with a few words in it"}]


def _thread_cpu(ident: int | None) -> float:
    if ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


class _Collector:
    """Stands in for the callback's transport while the payloads are captured."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def submit(self, item: Any) -> None:
        self.items.append(item)

    def flush(self, timeout: float | None = None) -> bool:
        return True


class Bench:
    def __init__(
        self, provider: str, sink: str, calls: int = 20, trash_mb: int = 0, gap_ms: float = 0.0
    ) -> None:
        import litellm

        from litelens.callback import Callback
        from litelens.pending import wait_for_litellm_pool

        litellm.suppress_debug_info = True
        self.callback = Callback(endpoint=sink, spool_dir=tempfile.mkdtemp())
        self.transport = self.callback.transport
        collector = _Collector()
        self.callback.transport = collector  # type: ignore[assignment]
        litellm.callbacks = [self.callback]
        common = {
            "model": "openai/gpt-4o-mini",
            "messages": MESSAGES,
            "api_base": provider,
            "api_key": "sk-b",
        }
        for _ in range(calls):
            litellm.completion(**common)
        wait_for_litellm_pool(time.monotonic() + 30)
        litellm.callbacks = []
        self.callback.transport = self.transport
        self.items = collector.items
        if not self.items:
            raise RuntimeError("no payload captured")
        self.next = 0
        # LiteLLM's own work between two batches (~4,000 us of CPU per call) leaves the caches cold for
        # the sender; writing over a few MB before each batch does the same here.
        self.trash = bytearray(trash_mb << 20)
        self.gap_s = gap_ms / 1000
        self.ones = b"\x01" * len(self.trash[::64])

    def submit(self, n: int) -> None:
        items, transport = self.items, self.transport
        for _ in range(n):
            transport.submit(items[self.next % len(items)])
            self.next += 1

    def between_batches(self) -> None:
        if self.gap_s:
            time.sleep(self.gap_s)
        if self.trash:
            self.trash[::64] = self.ones

    def sender(self, size: int, batches: int) -> float:
        """Sender-thread CPU per batch of `size` records, each batch flushed (seconds)."""
        transport = self.transport
        self.submit(size)
        transport.flush(30)  # starts the thread, opens the connection
        ident = transport._thread.ident if transport._thread else None
        t0 = _thread_cpu(ident)
        for _ in range(batches):
            self.between_batches()
            self.submit(size)
            transport.flush(30)
        return (_thread_cpu(ident) - t0) / batches

    def steps(self, block: int, repeat: int) -> dict[str, float]:
        """Each step alone, on this thread (seconds; prepare per record, the others per batch)."""
        from litelens.httpconn import Connection
        from litelens.transport import EVENTS, _gzip

        prepare = self.callback._prepare
        items = self.items
        out: dict[str, list[float]] = {"prepare": [], "gzip": [], "http": []}
        parts = [prepare(items[i % len(items)]).encode() for i in range(block)]  # type: ignore[union-attr]
        body = EVENTS.head + EVENTS.sep.join(parts) + EVENTS.tail
        gz = _gzip(body, 1)
        t = self.transport
        conn = Connection(t._host, t._port, timeout=5.0)
        conn.request("POST", t._path, gz, t._gzip_headers)
        conn.getresponse()
        for _ in range(repeat):
            self.between_batches()
            t0 = time.thread_time()
            for i in range(block):
                prepare(items[i % len(items)])
            t1 = time.thread_time()
            _gzip(EVENTS.head + EVENTS.sep.join(parts) + EVENTS.tail, 1)
            t2 = time.thread_time()
            conn.request("POST", t._path, gz, t._gzip_headers)
            conn.getresponse()
            t3 = time.thread_time()
            out["prepare"].append((t1 - t0) / block)
            out["gzip"].append(t2 - t1)
            out["http"].append(t3 - t2)
        conn.close()
        return {k: statistics.median(v) for k, v in out.items()}


def _fit(points: dict[int, float]) -> tuple[float, float]:
    """(fixed, per record) of the least-squares line through (size, CPU per batch)."""
    xs, ys = list(points), list(points.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def _measure(bench: Bench, sizes: list[int], batches: int, block: int) -> dict[str, float]:
    result: dict[str, float] = {}
    for size in sizes:
        result[f"sender/batch@{size}"] = bench.sender(size, max(batches * 10 // (size + 9), 20))
    fixed, per = _fit({s: result[f"sender/batch@{s}"] for s in sizes})
    result["fixed"], result["per record"] = fixed, per
    steps = bench.steps(block, max(batches // 10, 10))
    result["prepare/record"] = steps["prepare"]
    result[f"gzip/batch@{block}"] = steps["gzip"]
    result["http/batch"] = steps["http"]
    if f"sender/batch@{block}" in result:
        result[f"rest/batch@{block}"] = (
            result[f"sender/batch@{block}"] - block * steps["prepare"] - steps["gzip"] - steps["http"]
        )
    return result


def _worker(provider: str, sink: str, freeze: bool, trash_mb: int, gap_ms: float) -> int:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    bench = Bench(provider, sink, trash_mb=trash_mb, gap_ms=gap_ms)
    bench.sender(10, 20)  # warm-up
    if freeze:
        gc.collect()
        gc.freeze()
    import litelens

    out.write(json.dumps({"ready": True, "source": os.path.dirname(litelens.__file__)}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        figures = _measure(bench, request["sizes"], request["batches"], request["block"])
        out.write(json.dumps(figures) + "\n")
    bench.transport.shutdown(5)
    return 0


def _single(args: argparse.Namespace) -> int:
    """One process, no driver: for cachegrind (instructions of --batches N minus --batches 0) or cProfile."""
    with _procs.fake_provider() as provider, _procs.http_sink() as sink:
        bench = Bench(provider, sink, trash_mb=args.trash_mb, gap_ms=args.gap_ms)
        bench.sender(args.block, 5)
        if args.step != "sender":
            from litelens.callback import _Captured

            # One step alone, `--batches` x `--block` records, on this thread: no transport, no gzip.
            step = bench.callback._build if args.step == "build" else bench.callback._prepare
            captured = (
                [_Captured._make(item) for item in bench.items] if args.step == "build" else bench.items
            )
            for i in range(args.batches * args.block):
                step(captured[i % len(captured)])
        elif args.profile:
            import cProfile
            import pstats
            import threading

            profiler = cProfile.Profile(time.thread_time)  # CPU, not the waits for answers
            thread = bench.transport._thread
            assert thread is not None
            # The sender thread's work, profiled on it: its loop is wrapped by the profiler's hook.
            threading.setprofile(None)
            sys.setprofile(None)
            original = bench.transport._iteration

            def profiled() -> None:
                profiler.enable()
                try:
                    original()
                finally:
                    profiler.disable()

            bench.transport._iteration = profiled  # type: ignore[method-assign]
            bench.sender(args.block, args.batches)
            bench.transport._iteration = original  # type: ignore[method-assign]
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(35)
            stats.sort_stats("cumulative").print_stats(40)
        else:
            bench.sender(args.block, args.batches)
        bench.transport.shutdown(5)
    return 0


def _load_record(ref: str) -> ModuleType | None:
    """`litelens.record` as it is at git `ref`, as a separate module beside the current one (its own
    imports, `litelens.config` and `litelens.credentials`, come from this tree); None without git or
    that ref."""
    source = _procs.source_at(ref, "record.py")
    return None if source is None else _procs.load_source("before_record", source)


def _payloads(provider: str) -> list[tuple[Any, dict[str, Any]]]:
    """(payload, keyword arguments) of `record.from_standard_logging`, as the callback's `_build` passes
    them, for real LiteLLM calls to the fake provider: plain, streamed and failed chat completions."""
    import litellm

    from litelens import record
    from litelens.callback import Callback, _Captured
    from litelens.pending import wait_for_litellm_pool

    litellm.suppress_debug_info = True
    callback = Callback(endpoint="http://127.0.0.1:9", spool_dir="off")
    collector = _Collector()
    callback.transport = collector  # type: ignore[assignment]
    litellm.callbacks = [callback]
    common = {"model": "openai/gpt-4o-mini", "api_base": provider, "api_key": "sk-b", "num_retries": 0}
    for i in range(12):
        if i % 4 == 3:
            messages = [{"role": "user", "content": "[[fake error=429]] a question"}]
            with contextlib.suppress(Exception):
                litellm.completion(messages=messages, **common)
        elif i % 4 == 2:
            for _ in litellm.completion(messages=MESSAGES, stream=True, **common):
                pass
        else:
            litellm.completion(messages=MESSAGES, temperature=0.2, max_tokens=50, **common)
    wait_for_litellm_pool(time.monotonic() + 30)
    litellm.callbacks = []
    out: list[tuple[Any, dict[str, Any]]] = []
    # `_build` passes `from_standard_logging`'s arguments by position to `record.from_payload`.
    names = list(inspect.signature(record.from_standard_logging).parameters)[1:]
    original = record.from_payload

    def grab(slo: Any, *args: Any) -> dict[str, Any]:
        out.append((slo, dict(zip(names, args, strict=True))))
        return {}

    record.from_payload = grab
    try:
        for item in collector.items:
            callback._build(_Captured._make(item))
    finally:
        record.from_payload = original
    return out


def _build_ratio(args: argparse.Namespace) -> int:
    """µs per record of `from_standard_logging`, this tree's and --before's, interleaved in rounds."""
    from litelens import record

    before = _load_record(args.before)
    if before is None:
        print(f"cannot load src/litelens/record.py at {args.before!r}", file=sys.stderr)
        return 1
    with _procs.fake_provider() as provider:
        payloads = _payloads(provider)
    if not payloads:
        print("no payload captured", file=sys.stderr)
        return 1
    for slo, kwargs in payloads:  # the same record from both, or the comparison means nothing
        if before.from_standard_logging(slo, **kwargs) != record.from_standard_logging(slo, **kwargs):
            print("the two versions build different records", file=sys.stderr)
            return 1

    def by_name(module: ModuleType) -> Callable[[Any, dict[str, Any]], Any]:
        build = module.from_standard_logging
        return lambda slo, kwargs: build(slo, **kwargs)

    def as_callback(module: ModuleType) -> Callable[[Any, dict[str, Any]], Any]:
        # The callback's `_build`: arguments by position to `from_payload` where there is one.
        build = getattr(module, "from_payload", None)
        return by_name(module) if build is None else lambda slo, kwargs: build(slo, *kwargs.values())

    print(f"{len(payloads)} payloads (plain, streamed, failed chat completions), µs per record")
    for title, call in (("from_standard_logging", by_name), ("as the callback calls it", as_callback)):
        builds = {"this": call(record), args.before: call(before)}
        times: dict[str, list[float]] = {label: [] for label in builds}
        repeat = max(args.batches, 10)
        for round_ in range(args.rounds * 2):
            for label in list(builds)[:: 1 if round_ % 2 == 0 else -1]:
                build = builds[label]
                t0 = time.thread_time()
                for _ in range(repeat):
                    for slo, kwargs in payloads:
                        build(slo, kwargs)
                times[label].append((time.thread_time() - t0) / (repeat * len(payloads)))
        this, base = (statistics.median(times[label]) * 1e6 for label in builds)
        print(
            f"{title:<26} this {this:6.1f}   {args.before} {base:6.1f}   this/{args.before} {this / base:.2f}"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches of 10 records (scaled per size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--block", type=int, default=10, help="batch size of the breakdown")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", metavar="SRC", help="also run litelens from SRC, interleaved")
    parser.add_argument("--single", action="store_true", help="one process: for valgrind or --profile")
    parser.add_argument("--profile", action="store_true", help="with --single: cProfile the sender thread")
    parser.add_argument(
        "--step",
        choices=["sender", "prepare", "build"],
        default="sender",
        help="with --single: run only the callback's prepare (or its build of the record) on this thread",
    )
    parser.add_argument(
        "--build-ratio",
        action="store_true",
        help="time record.from_standard_logging against its version at --before, in this process",
    )
    parser.add_argument("--before", default="main", help="with --build-ratio: git ref of the baseline")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false")
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=50.0,
        help="pause before each batch; callback_overhead.py's blocks of 10 calls are ~50 ms apart "
        "(0: back to back, where Linux delays ACKs on the sender's connection)",
    )
    parser.add_argument(
        "--trash-mb",
        type=int,
        default=8,
        help="MB written over before each batch, as LiteLLM's calls between two batches do (0: warm)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--provider", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.provider, args.sink, args.gc_freeze, args.trash_mb, args.gap_ms)
    if args.single:
        return _single(args)
    if args.build_ratio:
        return _build_ratio(args)

    labels = ["this"] + (["compare"] if args.compare else [])
    results: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    with _procs.fake_provider() as provider, _procs.http_sink() as sink:
        workers: dict[str, _procs.LineWorker] = {}
        for label in labels:
            env = dict(os.environ)
            if label == "compare":
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")]))
            argv = [sys.executable, __file__, "--worker", "--provider", provider, "--sink", sink]
            argv += [] if args.gc_freeze else ["--no-gc-freeze"]
            argv += ["--trash-mb", str(args.trash_mb), "--gap-ms", str(args.gap_ms)]
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
            workers[label] = _procs.LineWorker(process)
            workers[label].ready()
        try:
            for round_ in range(args.rounds):
                order = labels if round_ % 2 == 0 else labels[::-1]
                for label in order:
                    request = {"sizes": args.sizes, "batches": args.batches, "block": args.block}
                    answer = workers[label].request(request)
                    if answer is None:
                        raise RuntimeError(f"worker {label} exited")
                    results[label].append(answer)
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for worker in workers.values():
                worker.stop()
    for label in labels:
        print(f"{label}: litelens from {workers[label].hello['source']}")
    keys = list(results["this"][0])
    header = f"{'µs (median over rounds)':<24}" + "".join(f"{label:>12}" for label in labels)
    print(header + ("     this/compare" if args.compare else ""))
    for key in keys:
        cells = [statistics.median(r[key] for r in results[label]) * 1e6 for label in labels]
        row = f"{key:<24}" + "".join(f"{c:>12.1f}" for c in cells)
        if args.compare and cells[1]:
            row += f"{cells[0] / cells[1]:>17.2f}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
