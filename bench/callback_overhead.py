"""CPU that litelens adds to each LiteLLM call, against the same loop with a no-op CustomLogger.

    python bench/callback_overhead.py [--calls 500] [--stream-calls 100] [--block 10] [--rounds 3]
                                      [--compare SRC] [--no-gc-freeze] [--only NAME ...] [--floors]

Integrations (each a row of the first table, measured against the no-op logger):

- litelens:     litelens.Callback sending to a loopback sink
- litellm_otel: LiteLLM's built-in "otel" callback exporting OTLP/HTTP to a loopback sink (needs
                opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http; skipped when missing)
- A/A:          the no-op logger against a second no-op logger: the method's own noise

Modes: sync, async, stream (sync, 20 chunks), astream, and failure (a 500: LiteLLM runs the failure
hook on the caller's thread, so its caller-thread CPU is reported separately).

How it measures: one worker process per integration, kept for the whole run; the driver asks each in
turn for one round of one mode, so drift between rounds hits every integration alike. The worker
registers either the no-op logger ("off") or the integration ("on"): `litelens.callback.unregister`
takes the one out of every list LiteLLM copied it into, and `litellm.callbacks = [other]` puts the
other in before the next call. LiteLLM turns the "otel" string into an OpenTelemetry logger on the
first call; that object is then switched the same way (with the "otel" name taken out of LiteLLM's
lists too, or LiteLLM would find its logger again). The worker asserts, block by block, that the off
side produced no record at all (litelens' `submitted` counter, the spans ended, the second no-op
logger's hook count) and the on side produced some.

Each round runs `--calls` calls per side (`--stream-calls` for the stream modes, which cost 5-8 times as
much CPU per call and stay noisy whatever one does) in blocks of `--block` calls, off and on in turn,
the first side alternating, so both sides share one heap, LiteLLM's caches and whatever the machine is
doing at the time. A block's window, read on the process CPU clock (all threads: LiteLLM's logging pool,
its async logging worker, litelens' sender thread and the OTel export thread count), covers the calls
and the finishing of the work they caused: LiteLLM's async logging worker flushed, its logging thread
pool drained, and the integration flushed (litelens `flush()`, the tracer provider's `force_flush()`).
The finishing is done the same way on both sides, so its own cost cancels out. The fake provider and the
receiving sink run in other processes, so their CPU is not counted.

`+total` is the median, over every pair of blocks of every round, of (CPU per call on) - (CPU per call
off); `±` is half the range of the per-round medians (from one run to the next the medians moved more
than that: see the A/A figures below). LiteLLM itself costs 3,500-35,000 µs per call here, and the
machine's speed wanders: the same sync call costs 3,000-6,000 µs of CPU, in stretches of seconds (two
neighbouring calls differ about a third as much as calls in general). So the two sides must be close
in time; with the old design (one process per configuration, means over whole runs) '+total' moved by
±500-1000 µs per call. Shorter blocks are quieter -- in a trace of 800 identical sync calls, the
median difference of neighbouring blocks had a standard error of about 10 µs for blocks of 1 call, 30
for 10 and 100 for 20 -- but each block ends with a flush, so litelens ships one batch per block, and
a batch costs its sender about 650 µs plus about 40 µs per record (sender CPU per call: 670 µs with
blocks of 1, 170 with 5, 105 with 10, 74 with 20). Blocks of 10 are the compromise: batches of 10
records are what a process making 20 calls a second sends (a batch leaves at most 0.5 s after its
first record). A median of block differences is not moved by the one block a full collection lands
in, so a rare cost that an integration causes -- more collections -- shows in the `+gc` column (a
mean) rather than in `+total`.

gc.freeze(): after warm-up every worker (the A/A one too) runs `gc.collect(); gc.freeze()`. LiteLLM's
heap is about 400,000 objects; a full collection walks them all in ~260 ms. Unfrozen, Python 3.11
rarely runs one (none in 1,500 calls here), but when it does it lands in one block: `+total`, a
median, shrugs it off, while `+gc`, a mean, would jump by ~900 µs per call for that round (260 ms over
300 calls). Frozen, full collections come every ~300 calls and cost 1-4 ms. On the A/A row the two
settings were within each other's noise (figures below; frozen was a little quieter on average), so
freezing is the default, for the steadier `+gc`; `--no-gc-freeze` measures without it. What freezing
changes: `+gc` then counts what an integration's longer-lived objects cost in collections of the
young heap, not in the rare full collections of an unfrozen process, which walk LiteLLM's whole heap.

The second table attributes litelens' own CPU directly, which stays meaningful when the machine is too
noisy for the differential rows: `hook` (CPU inside litelens' hooks, on whatever thread LiteLLM runs
them), `sender` (litelens' background thread, on its own clock), `sum` (hook + sender), `+gc` (CPU in
the garbage collector, any thread, on - off: litelens holds LiteLLM's payload until its thread's next
batch) and `+caller` (CPU added on the calling thread, where the failure hook runs and, for the async
modes, the event loop with LiteLLM's async logging worker).

Floors (`--floors`, 2026-12-02 04:07-04:26 UTC, `--only litelens --floors`, default counts; two shared
cores busy with other work, load 2-9): two more litelens workers, each with its records' preparation
replaced after the first of each kind (see `_floor`). `floor:transport` re-sends a record already
encoded: the hooks, the queue, batching, gzip and the HTTP exchange, nothing else. `floor:encode` also
encodes the record again with the project's encoder. Own CPU per call (hook + sender), µs:

    mode          litelens   floor:encode   floor:transport
    sync             131.4           87.4              62.8
    async            137.7           92.3              69.7
    failure          207.9          117.1              87.0

With no record built and none encoded, the hooks and the transport alone cost 63-87 µs per call in
batches of 10: over the issue's 50 µs before any of the record's work. bench/sender_cost.py (same
hour, `--batches 100 --rounds 1`) splits the sender: ~530 µs fixed per batch (HTTP exchange ~220,
gzip ~100, the loop's wake-ups and bookkeeping ~100, cold starts) plus ~56 µs per record.

Last measured for litelens (2026-12-01 evening, `--only litelens --compare <src of 21c7cbe>`, default
counts, 4.5 min; 2 shared cores, two other sessions' tests running; Python 3.11, litellm 1.110.2), µs per
call; "before" is the tree before the record was built with ~30% fewer instructions (154k -> 108k per
record, bench/sender_cost.py):

    mode                   sync        async        stream        astream       failure
    noop (absolute)        4277         4703         28415          20243         13231
    litelens +total     +91 ±33      +113 ±31      +126 ±308      +340 ±196       +87 ±13
    before +total      +120 ±13      +156 ±33      +173 ±85        +87 ±445      +121 ±25
    litelens hook         13           17            19             19             20
    litelens sender       90           93            96            101            100
    before hook           12           16            20             20             20
    before sender        100          112           108            130            113

The sender's own CPU per call fell by 10-20 µs in every mode, as the instruction counts said it would;
the non-stream +total rows moved by about as much (the stream modes stay too noisy to tell). The goal,
50 µs in all and 25 on the caller's thread, is still not reached: the hooks are within 25 µs, the sender
is not. Where the sender's CPU goes (bench/sender_cost.py, same records, same sink, batches 50 ms apart
with 8 MB written over in between, run cold as here; figures of the tree before this change): building,
processing and encoding the records 10 x 83 µs per batch of 10, gzip 109, the HTTP exchange 161, the rest
(wake-ups, flush token, the answer's bookkeeping) 72; a line through batches of 1, 10 and 20 records
gives ~484 µs fixed plus ~61 per record. The fixed part is mostly running cold: back to back, with the
same code, it is 238 µs. Under cachegrind (LiteLLM stubbed out), a record's prepare is now ~261k
instructions (building 108k, JSON encoding ~148k), gzip of a batch 227k for 1 record and 325k for 10
(zlib's set-up and Huffman trees), the HTTP exchange 73k, the transport's loop ~170k. The JSON
encoding, measured alone (2026-12-01 evening), is 143k: one call of the shared C encoder per record,
no hook, no second encoding; what costs is CPython 3.11's encoder itself (escaping 77 short strings,
five shortest-repr floats, ~250 pieces joined), and no standard-library way of writing the same JSON
was cheaper (bench/sender_cost.py has the breakdown). Reading the server's answer fell from 25k to 8k
instructions a batch (a few µs; under 1 µs a call, which this bench cannot resolve).

Measured with 167d880 (before TCP_QUICKACK and the JSON encoder made once, against the tree with them):
sync +150 ±51 / +163 ±83, sender 114 / 114 µs per call: those two changes did not move this bench, whose
batches are ~50 ms apart, far enough for Linux to acknowledge the sink's answers at once.

Measured before, with every integration (2026-11-30, 2 shared cores, the other one mostly busy with
someone else's work; Python 3.11, litellm 1.110.2; the default invocation, 5.6 min), µs per call:

    mode                   sync        async        stream        astream       failure
    noop (absolute)        4304         5457         28917          17999         11805
    litelens +total    +126 ±70     +109 ±105     +200 ±647      +528 ±721       +21 ±105
    litellm_otel +total +1128 ±176  +1054 ±85    +1289 ±1819     +935 ±185     +3676 ±448
    A/A +total          +88 ±58      -48 ±35      +502 ±2788     -161 ±170       +84 ±281
    litelens sum          103          105           119            121           121
    litelens +gc           18           14            -1             -1             4

For the non-stream modes the A/A row stays within ~100 µs of zero, and litelens' +total (110-125 µs
for sync and async) agrees, to within that, with its directly attributed sum plus +gc (~120 µs). The
stream modes are still too noisy for the differential (A/A ±650-2800 µs): read `sum` there. LiteLLM's
own "otel" callback costs about 1,000-1,300 µs per call, 3,700 on failures: ten times litelens. An
earlier run with 300 calls of every mode (8.0 min) gave litelens +120 ±62 sync, +118 ±228 async,
A/A -97 ±90 and -71 ±110. A/A with and without gc.freeze() (`--only A/A --calls 200`, every mode 200
calls per round; sync, async, stream, astream, failure; two runs each):

    frozen      +30 ±75   -76 ±68    +237 ±55    -92 ±112   -20 ±63      (mean ± 75)
                +187 ±37  +35 ±100   -487 ±535   -135 ±141  -91 ±112     (mean ± 185)
    unfrozen    -23 ±66   -91 ±159   +404 ±411   -87 ±26    -55 ±73      (mean ± 147)
                +38 ±110  +3 ±126    +105 ±323   +90 ±282   +71 ±108     (mean ± 190)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).parent))

import _procs  # bench/, put on the path above

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODES = ["sync", "async", "stream", "astream", "failure"]
MESSAGES = [{"role": "user", "content": "benchmark question with a few words in it"}]
STREAM_HEADERS = {"x-fake-tokens": "20", "x-fake-interval-ms": "0", "x-fake-ttft-ms": "0"}
INTEGRATIONS = ["litelens", "litellm_otel", "A/A"]
FLOORS = ["floor:transport", "floor:encode"]


def _thread_cpu(thread_ident: int | None) -> float:
    if thread_ident is None:
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread_ident))
    except (OSError, AttributeError):
        return 0.0


def _timer_cost() -> float:
    """CPU seconds one reading of the thread clock costs (a system call): a hook timing spans about one
    reading's worth of it, which is taken off so the hook column is the hook's own cost. Measured warm, so
    it errs on the side of taking off too little."""
    best = float("inf")
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(2000):
            time.thread_time()
            time.thread_time()
        best = min(best, (time.thread_time() - t0) / 4000)
    return best


# -- the worker: one process per integration, switching it on and off between blocks ----------------


def _make_noop() -> Any:
    """A CustomLogger whose four hooks only count: the baseline, and (a second one) the A/A 'on' side."""
    from litellm.integrations.custom_logger import CustomLogger

    class Noop(CustomLogger):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.seen = 0

        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.seen += 1

        def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            self.seen += 1

        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.seen += 1

        async def async_log_failure_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            self.seen += 1

    return Noop()


class _Calls:
    """The LiteLLM calls of each mode, run a block at a time; async ones on one event loop kept for the
    worker's life, so LiteLLM's async logging worker stays bound to it between blocks."""

    def __init__(self, provider: str) -> None:
        import litellm

        self.litellm = litellm
        self.loop = asyncio.new_event_loop()
        self.common = {
            "model": "openai/gpt-4o-mini",
            "messages": MESSAGES,
            "api_base": provider,
            "api_key": "sk-bench",
            "num_retries": 0,
            "max_retries": 0,
        }

    def run(self, mode: str, n: int) -> None:
        """n calls of one mode; for async modes, also wait until LiteLLM's async logging worker ran
        every hook they queued (sync calls queue nothing there)."""
        if mode in ("async", "astream"):
            self.loop.run_until_complete(self._run_async(mode, n))
            return
        for _ in range(n):
            if mode == "sync":
                self.litellm.completion(**self.common)
            elif mode == "stream":
                stream = self.litellm.completion(
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers=STREAM_HEADERS,
                    **self.common,
                )
                for _chunk in stream:
                    pass
            elif mode == "failure":
                with contextlib.suppress(Exception):
                    self.litellm.completion(extra_headers={"x-fake-error": "500"}, **self.common)
            else:
                raise ValueError(mode)

    async def _run_async(self, mode: str, n: int) -> None:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        for _ in range(n):
            if mode == "async":
                await self.litellm.acompletion(**self.common)
            else:
                stream = await self.litellm.acompletion(
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers=STREAM_HEADERS,
                    **self.common,
                )
                async for _chunk in stream:
                    pass
        await GLOBAL_LOGGING_WORKER.flush()


class _Sides:
    """The two loggers one worker switches between: the no-op logger (off) and the integration (on).

    `finish()` is the end of every block, on both sides alike: LiteLLM's logging thread pool drained,
    then the integration flushed (on the off side there is nothing to flush, but the call is the same).
    `records()` counts what the integration produced, to check that the off side really produces none.
    """

    def __init__(self, name: str, sink: str, calls: _Calls) -> None:
        import litellm

        from litelens.callback import unregister
        from litelens.pending import wait_for_litellm_pool

        self.litellm = litellm
        self.unregister = unregister
        self.wait_for_litellm = wait_for_litellm_pool
        self.name = name
        self.noop = _make_noop()
        self.litelens: Any = None
        self.tracer_provider: Any = None
        self.spans_ended = [0]
        self.hook_cpu = [0.0]
        if name == "litelens" or name in FLOORS:
            from litelens.callback import Callback

            self.litelens = Callback(endpoint=sink, spool_dir=tempfile.mkdtemp())
            if name in FLOORS:
                _floor(self.litelens, name.split(":")[1])
            self.logger = self.litelens
            self._time_hooks(_timer_cost())
        elif name == "litellm_otel":
            self.logger = self._otel_logger(sink, calls)
        elif name == "A/A":
            self.logger = _make_noop()
        else:
            raise ValueError(name)
        self.is_on = True
        self.use(False)

    def _time_hooks(self, timer_cost: float) -> None:
        """Direct attribution: CPU spent inside litelens' hooks, on whatever thread LiteLLM runs them."""
        original = self.litelens._capture
        hook_cpu = self.hook_cpu

        def timed_capture(*args: Any) -> None:
            t0 = time.thread_time()
            original(*args)
            hook_cpu[0] += time.thread_time() - t0 - timer_cost

        self.litelens._capture = timed_capture

    def _otel_logger(self, sink: str, calls: _Calls) -> Any:
        """LiteLLM's "otel" callback, set up the documented way; LiteLLM makes its logger on the first
        call, and that object is what gets switched. A span processor that only counts is added to
        its tracer provider, to check the off side (about 1 µs per span, on the on side only)."""
        from litellm.integrations.opentelemetry import OpenTelemetry
        from opentelemetry.sdk.trace import SpanProcessor

        os.environ["OTEL_EXPORTER"] = "otlp_http"
        os.environ["OTEL_ENDPOINT"] = sink + "/v1/traces"
        self.litellm.callbacks = ["otel"]
        calls.run("sync", 1)
        lists = (self.litellm.callbacks, self.litellm.success_callback, self.litellm._async_success_callback)
        logger = next(c for lst in lists for c in lst if isinstance(c, OpenTelemetry))
        spans_ended = self.spans_ended

        class CountEnded(SpanProcessor):  # type: ignore[misc]
            def on_end(self, span: Any) -> None:
                spans_ended[0] += 1

        self.tracer_provider = logger._tracer_provider
        self.tracer_provider.add_span_processor(CountEnded())
        return logger

    def use(self, on: bool) -> None:
        """Register one side's logger and take the other out of every LiteLLM list (between blocks)."""
        if on == self.is_on:
            return
        old, new = (self.noop, self.logger) if on else (self.logger, self.noop)
        self.unregister(old)
        if self.name == "litellm_otel" and not on:
            # The name too: LiteLLM would otherwise find its logger for "otel" again on the next call.
            for name in ("callbacks", "success_callback", "failure_callback", "_async_success_callback"):
                lst = getattr(self.litellm, name)
                lst[:] = [c for c in lst if c != "otel"]
        self.litellm.callbacks = [new]
        self.is_on = on

    def finish(self) -> None:
        if self.litelens is not None:
            self.litelens.flush(timeout=30)  # waits for LiteLLM's logging pool first, then the sender
        else:
            self.wait_for_litellm(time.monotonic() + 30)
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()

    def records(self) -> int:
        if self.litelens is not None:
            return int(self.litelens.stats()["submitted"])
        if self.tracer_provider is not None:
            return self.spans_ended[0]
        return int(self.logger.seen)

    def sender_cpu(self) -> float:
        thread = getattr(getattr(self.litelens, "transport", None), "_thread", None)
        return _thread_cpu(getattr(thread, "ident", None))


def _floor(callback: Any, kind: str) -> None:
    """Turn a litelens Callback into a floor (`--floors`): its hooks, queue, batches, gzip and HTTP as
    they are, but each record's preparation replaced by the cheapest stand-in.

    The first record of each kind of call (success or failure, streamed or not) is prepared for real
    and kept. After that, "transport" hands the sender that record's JSON text again (no building,
    processing or encoding: what the hooks and the transport cost by themselves), and "encode" encodes
    the kept record dict again with the project's encoder (the transport plus the one step no design
    that ships JSON can skip). Same records, same sizes, same sink as the real row.
    """
    from litelens import record as rec

    prepare = callback._prepare
    made: dict[Any, tuple[str, dict[str, Any]]] = {}

    def floor_prepare(item: Any) -> str | None:
        key = (item[2], item[14] is not None) if type(item) is tuple else None  # failed, chunk count
        got = made.get(key)
        if got is None:
            text = prepare(item)
            if text is None:
                return None
            made[key] = got = (text, json.loads(text))
        return got[0] if kind == "transport" else rec.encode(got[1])[0]

    callback.transport._prepare = floor_prepare


def _worker(name: str, provider: str, sink: str, freeze: bool) -> int:
    """Serve measurement requests (JSON lines on stdin) for one integration until stdin closes."""
    # Our protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import litellm

    litellm.suppress_debug_info = True
    calls = _Calls(provider)
    try:
        sides = _Sides(name, sink, calls)
        # Warm-up, both sides: first calls pay for imports, connection set-up and LiteLLM's caches.
        for on in (False, True, False):
            sides.use(on)
            for mode in MODES:
                calls.run(mode, 10)
            sides.finish()
    except Exception as exc:  # reported as a skipped column, not a crash of the whole bench
        _send(out, {"error": f"{type(exc).__name__}: {exc}"[:300]})
        return 1
    if freeze:
        gc.collect()
        gc.freeze()

    # CPU spent in the cyclic garbage collector, on whatever thread it ran: an integration that keeps
    # LiteLLM's objects alive for a while makes the collector run more often and walk more.
    gc_cpu = [0.0]
    gc_started: dict[int, float] = {}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[threading.get_ident()] = time.thread_time()
        else:
            gc_cpu[0] += time.thread_time() - gc_started.pop(threading.get_ident(), time.thread_time())

    gc.callbacks.append(on_gc)
    source = ""
    if name == "litelens" or name in FLOORS:
        import litelens

        source = os.path.dirname(litelens.__file__)
    _send(out, {"ready": True, "source": source})

    def block(mode: str, on: bool, n: int) -> dict[str, float]:
        """One block of n calls on one side, the work it caused finished: per-call figures."""
        sides.use(on)
        records0 = sides.records()
        sides.hook_cpu[0] = gc_cpu[0] = 0.0
        sender0 = sides.sender_cpu()
        cpu0, caller0 = time.process_time(), time.thread_time()
        calls.run(mode, n)
        sides.finish()
        cpu1, caller1 = time.process_time(), time.thread_time()
        made = sides.records() - records0
        if on and made <= 0:
            raise RuntimeError(f"{name} produced no record in an 'on' block of {mode}")
        if not on and made != 0:
            raise RuntimeError(f"{name} produced {made} records in an 'off' block of {mode}: switch failed")
        return {
            "cpu": (cpu1 - cpu0) / n,
            "caller": (caller1 - caller0) / n,
            "gc": gc_cpu[0] / n,
            "hook": sides.hook_cpu[0] / n,
            "sender": (sides.sender_cpu() - sender0) / n,
        }

    for line in sys.stdin:
        request = json.loads(line)
        mode, n = request["mode"], request["block"]
        # Blocks of n calls, off and on in turn; which goes first alternates, and starts with the
        # other side in odd rounds, so neither side is always the one right after a switch.
        pairs = []
        for index in range(max(1, request["calls"] // n)):
            on_first = (index + request["round"]) % 2 == 1
            first = block(mode, on_first, n)
            second = block(mode, not on_first, n)
            pairs.append((second, first) if on_first else (first, second))
        _send(out, {"pairs": pairs, "stats": sides.litelens.stats() if sides.litelens else None})
    if sides.litelens is not None:
        sides.litelens.shutdown(timeout=5)
    return 0


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


# -- the driver -----------------------------------------------------------------------------------


class Worker(_procs.LineWorker):
    """One worker process, asked for one round of one mode at a time over its stdin/stdout."""

    def __init__(self, label: str, args: argparse.Namespace, provider: str, sink: str) -> None:
        self.label = label
        env = dict(os.environ)
        if label == "litelens@compare":
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")]))
        argv = [sys.executable, __file__, "--worker", label.split("@")[0], "--provider", provider]
        argv += ["--sink", sink] + ([] if args.gc_freeze else ["--no-gc-freeze"])
        super().__init__(
            subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        )
        self.pairs: dict[str, list[list[tuple[dict[str, float], dict[str, float]]]]] = {m: [] for m in MODES}
        self.stats: dict[str, Any] = {}

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.request(request)
        if answer is None:
            raise RuntimeError(f"{self.label} worker exited (see its stderr above)")
        return answer

    def added(self, mode: str, key: str) -> tuple[float, float]:
        """(median over all block pairs of on - off, half the range of the per-round medians)."""
        rounds = [[on[key] - off[key] for off, on in pairs] for pairs in self.pairs[mode]]
        per_round = [statistics.median(r) for r in rounds]
        every = [d for r in rounds for d in r]
        return statistics.median(every), (max(per_round) - min(per_round)) / 2

    def own(self, mode: str, key: str) -> float:
        """Median over rounds of an on-side figure (hook, sender) averaged over the round's blocks."""
        return statistics.median(statistics.fmean(on[key] for _, on in pairs) for pairs in self.pairs[mode])

    def gc_added(self, mode: str) -> float:
        """Median over rounds of the mean garbage-collector CPU per call, on - off."""
        return statistics.median(
            statistics.fmean(on["gc"] - off["gc"] for off, on in pairs) for pairs in self.pairs[mode]
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per side per round, non-stream modes")
    parser.add_argument(
        "--stream-calls", type=int, default=100, help="calls per side per round, stream modes"
    )
    parser.add_argument("--block", type=int, default=10, help="calls per side before switching")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also run litelens from another source tree (e.g. a checkout's src/ of an earlier commit), "
        "interleaved with this one, to compare before and after in the same run",
    )
    parser.add_argument(
        "--no-gc-freeze", dest="gc_freeze", action="store_false", help="do not gc.freeze() after warm-up"
    )
    parser.add_argument("--only", nargs="*", help=f"integrations to run (default: all of {INTEGRATIONS})")
    parser.add_argument(
        "--floors",
        action="store_true",
        help=f"also run litelens' floors ({', '.join(FLOORS)}): what is left of its cost with the records' "
        "preparation replaced by re-sending, or re-encoding, a record prepared once",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--provider", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.worker, args.provider, args.sink, args.gc_freeze)

    labels = [i for i in INTEGRATIONS if not args.only or i in args.only]
    if args.floors:
        labels += FLOORS
    if args.compare:
        labels.insert(labels.index("litelens") + 1 if "litelens" in labels else 0, "litelens@compare")
    skipped: dict[str, str] = {}
    if "litellm_otel" in labels:
        try:
            import opentelemetry.exporter.otlp.proto.http
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            labels.remove("litellm_otel")
            skipped["litellm_otel"] = "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"

    started = time.monotonic()
    with (
        _procs.fake_provider() as provider,
        _procs.http_sink() as sink,
    ):
        workers = [Worker(label, args, provider, sink) for label in labels]
        for worker in workers:
            hello = worker.ready()
            if "error" in hello:
                skipped[worker.label] = hello["error"]
                worker.stop()
        workers = [w for w in workers if w.label not in skipped]
        try:
            for round_ in range(args.rounds):
                for mode in MODES:
                    for worker in workers:
                        calls = args.stream_calls if "stream" in mode else args.calls
                        request = {"mode": mode, "calls": calls, "block": args.block, "round": round_}
                        answer = worker.ask(request)
                        worker.pairs[mode].append(answer["pairs"])
                        worker.stats = answer["stats"] or {}
                print(
                    f"round {round_ + 1}/{args.rounds} done ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                )
        finally:
            for worker in workers:
                worker.stop()
    _print_tables(workers, skipped, args)
    return 0


def _print_tables(workers: list[Worker], skipped: dict[str, str], args: argparse.Namespace) -> None:
    by_label = {w.label: w for w in workers}
    freeze = "gc.freeze() after warm-up" if args.gc_freeze else "no gc.freeze()"
    print(
        f"\nCPU per LiteLLM call added over a no-op logger, µs, all threads (one process per integration "
        f"switched on/off every {args.block} calls; median over {args.rounds} rounds x "
        f"{args.calls // args.block} block pairs (stream modes: {args.stream_calls // args.block}); "
        f"± half the range of the per-round medians; {freeze})"
    )
    label_width = max([18] + [len(w.label) + 8 for w in workers])
    print(f"{'':<{label_width}}" + "".join(f"{mode:>16}" for mode in MODES))
    base = by_label.get("litelens") or (workers[0] if workers else None)
    if base is not None:
        cells = [statistics.median(off["cpu"] for p in base.pairs[m] for off, _ in p) for m in MODES]
        print(f"{'noop (absolute)':<{label_width}}" + "".join(f"{c * 1e6:>16.0f}" for c in cells))
    for worker in workers:
        row = f"{worker.label + ' +total':<{label_width}}"
        for mode in MODES:
            added, spread = worker.added(mode, "cpu")
            row += f"{added * 1e6:>+10.1f} ±{spread * 1e6:<5.0f}"
        print(row)
    for label, why in skipped.items():
        print(f"{label}: skipped ({why})")

    own = [w for w in workers if w.label.startswith("litelens") or w.label in FLOORS]
    if own:
        print(
            "\nlitelens' own CPU per call, µs (direct attribution; +caller and +gc are on - off like +total)"
        )
        header = f"{'mode':<9}"
        for worker in own:
            header += "".join(
                f"{worker.label + ' ' + what:>{len(worker.label) + 9}}"
                for what in ("+caller", "hook", "sender", "sum", "+gc")
            )
        print(header)
        for mode in MODES:
            row = f"{mode:<9}"
            for worker in own:
                width = len(worker.label) + 9
                hook, sender = worker.own(mode, "hook"), worker.own(mode, "sender")
                row += f"{worker.added(mode, 'caller')[0] * 1e6:>{width}.1f}"
                row += (
                    f"{hook * 1e6:>{width}.1f}{sender * 1e6:>{width}.1f}{(hook + sender) * 1e6:>{width}.1f}"
                )
                row += f"{worker.gc_added(mode) * 1e6:>{width}.1f}"
            print(row)
        if "litelens@compare" in by_label:
            print(f"litelens@compare: litelens imported from {by_label['litelens@compare'].hello['source']}")
        stats = own[0].stats
        print(
            f"\nlitelens sender: sent={stats.get('sent')} spooled={stats.get('spooled')} "
            f"dropped={stats.get('dropped')} failed={stats.get('failed')}"
        )
    print(
        "'+total': process CPU (all threads) per call with the integration minus with the no-op logger;"
        " the A/A row is\nthe no-op logger against a second one: how far apart two identical sides land."
    )
    print(
        "'+caller': on the calling thread (the failure hook runs there; async modes: the event loop)."
        " 'hook': CPU inside\nlitelens' hooks; 'sender': CPU of litelens' background thread, on that"
        " thread's clock. 'sum' (hook + sender) is\nlitelens' own cost per call. '+gc': CPU in the garbage"
        " collector (any thread) added over the no-op logger\n(a mean, so rare collections count):"
        " litelens holds LiteLLM's payload until its thread's next batch.\nCompare 'sum' with the"
        " 'litellm_otel +total' row: LiteLLM's own OpenTelemetry callback, same run."
    )


if __name__ == "__main__":
    sys.exit(main())
