"""CPU that litelens adds to each LiteLLM call, against the same loop with a no-op CustomLogger.

    python bench/callback_overhead.py [--calls 300] [--rounds 3]

Each configuration runs in its own process (so LiteLLM's global callback state cannot leak between
them), in interleaved rounds; the figure is the median over rounds of (CPU per call with the
integration) - (CPU per call with a no-op logger). The fake provider and the receiving sink run in
other processes, so their CPU is not counted. Configurations:

- noop:         a CustomLogger whose four hooks do nothing (the baseline)
- litelens:     litelens.Callback sending to a loopback sink
- litellm_otel: LiteLLM's built-in "otel" callback exporting OTLP/HTTP to a loopback sink (needs
                opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http; skipped when missing)

Modes: sync, async, stream (sync, 20 chunks), astream, and failure (a 500: LiteLLM runs the failure
hook on the caller's thread, so its caller-thread CPU is reported separately).
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
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MODES = ["sync", "async", "stream", "astream", "failure"]
MESSAGES = [{"role": "user", "content": "benchmark question with a few words in it"}]


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


def worker(config: str, provider: str, sink: str, calls: int) -> dict[str, Any]:
    """Run every mode under one configuration; return CPU seconds per call."""
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    litellm.suppress_debug_info = True
    litelens_cb = None
    timer_cost = _timer_cost()
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
    hook_cpu = [0.0]
    if config == "noop":

        class Noop(CustomLogger):  # type: ignore[misc]
            def log_success_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                pass

            def log_failure_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                pass

            async def async_log_success_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                pass

            async def async_log_failure_event(
                self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
            ) -> None:
                pass

        litellm.callbacks = [Noop()]
    elif config == "litelens":
        import tempfile

        from litelens.callback import Callback

        litelens_cb = Callback(endpoint=sink, spool_dir=tempfile.mkdtemp())
        litellm.callbacks = [litelens_cb]
        # Direct attribution: CPU spent inside litelens' hooks, on whatever thread LiteLLM runs them.
        original_capture = litelens_cb._capture

        def timed_capture(*args: Any) -> None:
            t0 = time.thread_time()
            original_capture(*args)
            hook_cpu[0] += time.thread_time() - t0 - timer_cost

        litelens_cb._capture = timed_capture  # type: ignore[method-assign]
    elif config == "litellm_otel":
        os.environ["OTEL_EXPORTER"] = "otlp_http"
        os.environ["OTEL_ENDPOINT"] = sink + "/v1/traces"
        litellm.callbacks = ["otel"]
    else:
        raise ValueError(config)

    common = {
        "model": "openai/gpt-4o-mini",
        "api_base": provider,
        "api_key": "sk-bench",
        "num_retries": 0,
        "max_retries": 0,
    }
    stream_headers = {"x-fake-tokens": "20", "x-fake-interval-ms": "0", "x-fake-ttft-ms": "0"}

    def run_sync(mode: str) -> None:
        if mode == "sync":
            litellm.completion(messages=MESSAGES, **common)
        elif mode == "stream":
            for _ in litellm.completion(
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=stream_headers,
                **common,
            ):
                pass
        elif mode == "failure":
            with contextlib.suppress(Exception):
                litellm.completion(messages=MESSAGES, extra_headers={"x-fake-error": "500"}, **common)

    async def run_async(mode: str, n: int) -> None:
        for _ in range(n):
            if mode == "async":
                await litellm.acompletion(messages=MESSAGES, **common)
            else:
                stream = await litellm.acompletion(
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers=stream_headers,
                    **common,
                )
                async for _ in stream:
                    pass
        await asyncio.sleep(0.05)

    results: dict[str, Any] = {}
    for mode in MODES:
        # warm-up: first calls pay for imports and connection set-up
        if mode in ("async", "astream"):
            asyncio.run(run_async(mode, 20))
        else:
            for _ in range(20):
                run_sync(mode)
        time.sleep(0.3)
        sender = litelens_cb.transport._thread if litelens_cb is not None else None
        sender_before = _thread_cpu(getattr(sender, "ident", None))
        hook_cpu[0] = 0.0
        gc_cpu[0] = 0.0
        cpu0, caller0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        if mode in ("async", "astream"):
            asyncio.run(run_async(mode, calls))
        else:
            for _ in range(calls):
                run_sync(mode)
        caller1 = time.thread_time()
        if litelens_cb is not None:
            litelens_cb.flush(timeout=30)
        time.sleep(0.5)  # let LiteLLM's logging pool and exporters finish this mode's work
        cpu1, wall1 = time.process_time(), time.perf_counter()
        sender = litelens_cb.transport._thread if litelens_cb is not None else None
        results[mode] = {
            "cpu_per_call": (cpu1 - cpu0) / calls,
            "caller_per_call": (caller1 - caller0) / calls,
            "wall_per_call": (wall1 - wall0 - 0.5) / calls,
            "sender_per_call": (_thread_cpu(getattr(sender, "ident", None)) - sender_before) / calls
            if sender
            else None,
            "hook_per_call": hook_cpu[0] / calls if litelens_cb is not None else None,
            "gc_per_call": gc_cpu[0] / calls,
        }
    if litelens_cb is not None:
        import litelens

        results["stats"] = litelens_cb.stats()
        results["source"] = os.path.dirname(litelens.__file__)
        litelens_cb.shutdown(timeout=5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--compare",
        metavar="SRC",
        help="also run litelens from another source tree (e.g. a checkout's src/ of an earlier commit), "
        "interleaved with this one, to compare before and after in the same run",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--provider", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.provider, args.sink, args.calls)))
        return

    import _procs

    configs = ["noop", "litelens"]
    if args.compare:
        configs.append("litelens@compare")
    try:
        import opentelemetry.exporter.otlp.proto.http
        import opentelemetry.sdk  # noqa: F401

        configs.append("litellm_otel")
    except ImportError:
        print("litellm_otel: skipped (pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)")

    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    with (
        _procs.subprocess_url(
            [sys.executable, "-m", "litelens.testing.fake_provider", "--port", "0"]
        ) as provider,
        _procs.http_sink() as sink,
    ):
        for r in range(args.rounds):
            for config in configs:
                env = dict(os.environ)
                if config == "litelens@compare":
                    env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.compare, env.get("PYTHONPATH")]))
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        config.split("@")[0],
                        "--provider",
                        provider,
                        "--sink",
                        sink,
                        "--calls",
                        str(args.calls),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                )
                runs[config].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1}/{args.rounds} {config}: done", file=sys.stderr)

    def median(config: str, mode: str, key: str) -> float:
        values = [run[mode][key] for run in runs[config] if run[mode][key] is not None]
        return statistics.median(values) if values else float("nan")

    print(
        f"\nCPU per LiteLLM call, µs (median of {args.rounds} rounds x {args.calls} calls; 2 shared cores: expect ±20 µs noise)"
    )
    own = [c for c in configs if c.startswith("litelens")]
    header = (
        f"{'mode':<9}{'noop total':>12}"
        + "".join(f"{c + ' +total':>{max(20, len(c) + 9)}}" for c in configs[1:])
        + f"{'litelens +caller':>18}"
        + "".join(f"{c + ' ' + what:>{len(c) + 8}}" for c in own for what in ("hook", "sender", "sum", "+gc"))
    )
    print(header)
    for mode in MODES:
        base = median("noop", mode, "cpu_per_call")
        row = f"{mode:<9}{base * 1e6:>12.0f}"
        for config in configs[1:]:
            row += f"{(median(config, mode, 'cpu_per_call') - base) * 1e6:>{max(20, len(config) + 9)}.1f}"
        caller_added = median("litelens", mode, "caller_per_call") - median("noop", mode, "caller_per_call")
        row += f"{caller_added * 1e6:>18.1f}"
        for config in own:
            hook = median(config, mode, "hook_per_call")
            sender_cpu = median(config, mode, "sender_per_call")
            width = len(config) + 8
            gc_added = median(config, mode, "gc_per_call") - median("noop", mode, "gc_per_call")
            row += f"{hook * 1e6:>{width}.1f}{sender_cpu * 1e6:>{width}.1f}{(hook + sender_cpu) * 1e6:>{width}.1f}"
            row += f"{gc_added * 1e6:>{width}.1f}"
        print(row)
    if args.compare:
        print(f"litelens@compare: litelens imported from {runs['litelens@compare'][-1].get('source')}")
    stats = runs["litelens"][-1].get("stats", {})
    print(
        f"\nlitelens sender: sent={stats.get('sent')} spooled={stats.get('spooled')} dropped={stats.get('dropped')} failed={stats.get('failed')}"
    )
    print(
        "'+total': all threads, added over the noop logger. '+caller': on the calling thread (the failure hook runs there)."
    )
    print(
        "'hook': CPU inside litelens' hooks (the failure hook runs on the caller's thread); 'sender': CPU of"
    )
    print(
        "litelens' background thread, on that thread's clock. 'sum' (hook + sender) is litelens' own cost per"
    )
    print(
        "call: the figure that stays meaningful when the machine is too noisy for the differential columns."
    )
    print(
        "'+gc': CPU in the garbage collector (any thread) added over the noop logger: litelens holds LiteLLM's"
    )
    print("payload until its thread's next batch, so more of it is walked. Its own cost is sum + gc.")
    print(
        "Compare 'sum' with the 'litellm_otel +total' column: LiteLLM's own OpenTelemetry callback, same run."
    )


if __name__ == "__main__":
    main()
