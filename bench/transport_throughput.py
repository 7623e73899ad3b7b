"""How many ~2 KB call records per second one transport thread encodes, compresses and delivers.

The receiver runs in a subprocess so it does not compete with the sender for this process's GIL (it would
otherwise halve the figure and measure the receiver, not the transport). The baseline is plain
``json.dumps`` of the same records in this process: the ratio says what the transport costs on top of the
encoding any sender must do.

    PYTHONPATH=src python bench/transport_throughput.py [records]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from litelens.transport import Transport, TransportConfig

RECEIVER = """
import sys
from litelens.testing.receiver import Receiver
r = Receiver(keep=False).start()
print(r.port, flush=True)
sys.stdin.read()
"""


def make_record(i: int) -> dict:
    """A realistic chat-completion call record of about 2 KB."""
    question = f"Summarise ticket {i}: the customer reports that exports time out after the upgrade. " * 4
    answer = "The export job exceeded the 30 s gateway timeout; batching the query fixes it. " * 6
    return {
        "schema": "litelens.call/1",
        "call_id": str(uuid.uuid4()),
        "trace_id": uuid.uuid4().hex,
        "span_id": uuid.uuid4().hex[:16],
        "session_id": "sess-42",
        "end_user": "user-7",
        "tags": ["support", "prod"],
        "metadata": {"team": "support", "ticket": i},
        "call_type": "chat_completion",
        "stream": True,
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "api_base": "https://api.openai.com/v1",
        "start_time": 1_764_470_000.123 + i,
        "end_time": 1_764_470_001.456 + i,
        "duration_ms": 1333.0,
        "ttft_ms": 212.5,
        "output_tokens_per_s": 87.3,
        "chunks": 112,
        "usage": {"input_tokens": 412, "output_tokens": 116, "total_tokens": 528, "cached_input_tokens": 0},
        "cost_usd": 0.000131,
        "status": "ok",
        "request": {
            "messages": [
                {"role": "system", "content": "You are a concise support assistant."},
                {"role": "user", "content": question},
            ],
            "params": {"temperature": 0.2, "max_tokens": 256},
        },
        "response": {"text": answer, "finish_reasons": ["stop"], "id": f"chatcmpl-{i}"},
    }


def run(url: str, records: list[dict], **config: object) -> tuple[float, float, float]:
    """Return (records/s end to end, seconds the caller spent in submit, wire bytes per record)."""
    transport = Transport(TransportConfig(endpoint=url, max_queue=len(records) + 1, **config))  # type: ignore[arg-type]
    transport.start()
    time.sleep(0.1)
    started = time.perf_counter()
    for record in records:
        transport.submit(record)
    submitted = time.perf_counter()
    assert transport.flush(120), "flush timed out"
    elapsed = time.perf_counter() - started
    stats = transport.stats()
    transport.shutdown(5)
    assert stats["sent"] == len(records), stats
    sample = transport._build([transport._encode(r) or b"" for r in records[:1000]]).body
    return len(records) / elapsed, submitted - started, len(sample) / 1000


def cpu_only(records: list[dict], **config: object) -> tuple[float]:
    """Records/s the sender's own work (prepare-free encode, batch join, gzip) reaches with no network."""
    transport = Transport(TransportConfig(**config))  # type: ignore[arg-type]
    started = time.perf_counter()
    for i in range(0, len(records), 1000):
        transport._build([transport._encode(r) or b"" for r in records[i : i + 1000]])
    return (len(records) / (time.perf_counter() - started),)


def best(repeats: int, fn: Callable[[], tuple[float, ...]]) -> tuple[float, ...]:
    """The best of a few runs: on a shared machine the slow runs measure the neighbours, not us."""
    return max((fn() for _ in range(repeats)), key=lambda r: r[0])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    repeats = 3
    records = [make_record(i) for i in range(n)]
    size = sum(len(json.dumps(r).encode()) for r in records[:100]) / 100
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"

        def baseline_run() -> tuple[float]:
            started = time.perf_counter()
            for record in records:
                json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
            return (n / (time.perf_counter() - started),)

        (baseline,) = best(repeats, baseline_run)
        print(
            f"{n} records of ~{size:.0f} bytes, receiver in a subprocess, {os.cpu_count()} CPUs, best of {repeats}"
        )
        print(f"{'baseline json.dumps only':<24} {baseline:>8,.0f} records/s")
        for label, config in [
            ("gzip off", {"gzip": False}),
            ("gzip level 1 (default)", {"gzip": True, "gzip_level": 1}),
            ("gzip level 6", {"gzip": True, "gzip_level": 6}),
            ("gzip level 9", {"gzip": True, "gzip_level": 9}),
        ]:
            rate, submit_s, wire = best(repeats, lambda config=config: run(url, records, **config))  # type: ignore[misc]
            (cpu,) = best(repeats, lambda config=config: cpu_only(records, **config))  # type: ignore[misc]
            print(
                f"{label:<24} {rate:>8,.0f} records/s  {rate / baseline:4.2f}x baseline"
                f"  submit {submit_s / n * 1e6:4.2f} us/record  {wire:6.0f} wire bytes/record"
                f"  | sender CPU alone {cpu:>8,.0f} records/s"
            )
    finally:
        receiver.stdin.close()  # type: ignore[union-attr]
        receiver.wait(10)


if __name__ == "__main__":
    main()
