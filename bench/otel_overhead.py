"""CPU that litelens.otel adds to each LiteLLM call, against the same loop uninstrumented.

    python bench/otel_overhead.py [--calls 200] [--rounds 5]

One process, interleaved rounds: each round runs the loop uninstrumented, then instrumented
(`LiteLLMInstrumentor` with a `BatchSpanProcessor` into an in-memory exporter and an SDK meter
provider), then uninstruments again -- so drift on a noisy machine hits both sides alike. CPU is the
process's CPU time (`time.process_time`), which includes the BatchSpanProcessor's export thread: what
the user's process really pays. The fake provider runs in its own process, so its CPU is not counted.
The figure is the median over rounds of (CPU per call instrumented) - (CPU per call bare).

Modes: `call` (sync non-stream completion) and `stream` (sync completion streaming 50 chunks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MESSAGES = [{"role": "user", "content": "benchmark question with a few words in it"}]


def _loop(litellm: Any, url: str, mode: str, calls: int) -> float:
    """CPU seconds per call for `calls` calls of `mode`."""
    arguments: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": url,
        "api_key": "sk-fake",
    }
    if mode == "stream":
        arguments.update(stream=True, extra_headers={"x-fake-tokens": "50", "x-fake-chunks": "50"})
    start = time.process_time()
    for _ in range(calls):
        if mode == "stream":
            for _chunk in litellm.completion(**arguments):
                pass
        else:
            litellm.completion(**arguments)
    return (time.process_time() - start) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import litellm
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from _procs import fake_provider
    from litelens.otel import LiteLLMInstrumentor

    litellm.suppress_debug_info = True
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = LiteLLMInstrumentor()

    with fake_provider() as url:
        for mode in ("call", "stream"):
            _loop(litellm, url, mode, 5)  # warm up: first-call costs are not per-call costs
            bare: list[float] = []
            traced: list[float] = []
            for _ in range(args.rounds):
                bare.append(_loop(litellm, url, mode, args.calls))
                instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
                traced.append(_loop(litellm, url, mode, args.calls))
                tracer_provider.force_flush()
                instrumentor.uninstrument()
                exporter.clear()
            added = statistics.median(t - b for t, b in zip(traced, bare, strict=True))
            base = statistics.median(bare)
            print(
                f"{mode:6s}  bare {base * 1e6:8.0f} µs/call  litelens.otel adds {added * 1e6:6.0f} µs/call "
                f"({added / base:+.1%})  [{args.rounds} rounds x {args.calls} calls]"
            )
    tracer_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
