"""`litelens demo`: a mixed LiteLLM workload against the fake provider, recorded by litelens.

Everything runs on loopback in this process: the fake provider answers as OpenAI would, real LiteLLM
makes real HTTP calls to it, `litelens.Callback` records them, and a receiver collects the records.
The summary printed at the end is computed from the records the receiver got, not from the workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CHAT_MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1-mini"]
EMBEDDING_MODEL = "openai/text-embedding-3-small"
USERS = ["ana", "bo", "chen", "dara"]
TAGS = ["checkout", "support", "search"]


def _progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} calls")
    sys.stderr.flush()


def _one_call(litellm: Any, base: str, rng: random.Random, i: int) -> None:
    user = rng.choice(USERS)
    common: dict[str, Any] = {
        "api_base": base,
        "api_key": "sk-demo-not-a-real-key",
        "num_retries": 0,
        "max_retries": 0,
        "metadata": {"tags": [rng.choice(TAGS)], "session_id": f"session-{user}-{i // 10}", "user_id": user},
    }
    kind = rng.random()
    words = " ".join(
        rng.choice(["tell", "me", "about", "the", "order", "status", "please"])
        for _ in range(rng.randint(3, 12))
    )
    try:
        if kind < 0.12:
            litellm.embedding(model=EMBEDDING_MODEL, input=[words], **common)
            return
        model = rng.choice(CHAT_MODELS)
        messages = [
            {"role": "system", "content": "You are a helpful shop assistant."},
            {"role": "user", "content": words},
        ]
        directives = f"[[fake tokens={rng.randint(4, 40)} latency_ms={rng.randint(1, 15)}]]"
        if kind < 0.17:
            directives = "[[fake error=429 retry_after=1]]"
        elif kind < 0.20:
            directives = "[[fake error=500]]"
        messages[-1]["content"] += " " + directives
        if kind < 0.45:
            stream = litellm.completion(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **common,
            )
            for _ in stream:
                pass
        else:
            litellm.completion(model=model, messages=messages, **common)
    except Exception:
        pass  # errors are part of the workload: litelens records them


async def _async_calls(litellm: Any, base: str, n: int) -> None:
    async def one(i: int) -> None:
        with contextlib.suppress(Exception):  # failures are recorded, not fatal to the demo
            await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": f"async question {i}"}],
                api_base=base,
                api_key="sk-demo-not-a-real-key",
                metadata={"tags": ["async"]},
            )

    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(0.2)  # LiteLLM logs async successes as tasks on this loop: let them run


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(records: list[dict[str, Any]]) -> str:
    """The summary table: calls, errors, latency, tokens and cost by model."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_model[str(record.get("request_model"))].append(record)
    header = f"{'model':<26}{'calls':>7}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'tok in':>9}{'tok out':>9}{'cost $':>11}"
    lines = [header, "-" * len(header)]
    for model, rows in sorted(by_model.items()):
        latencies = [r["duration_ms"] for r in rows]
        lines.append(
            f"{model:<26}{len(rows):>7}{sum(r['status'] != 'ok' for r in rows):>8}"
            f"{statistics.median(latencies):>9.1f}{_percentile(latencies, 0.95):>9.1f}"
            f"{sum(r['usage']['input_tokens'] for r in rows):>9}{sum(r['usage']['output_tokens'] for r in rows):>9}"
            f"{sum(r.get('cost_usd') or 0 for r in rows):>11.6f}"
        )
    return "\n".join(lines)


def run_demo(calls: int = 200, seed: int = 7) -> int:
    import litellm

    import litelens
    from litelens.testing import FakeProvider, Receiver

    litellm.suppress_debug_info = True  # its "Give Feedback" banner on every provider error
    rng = random.Random(seed)
    with FakeProvider() as provider, Receiver() as receiver, tempfile.TemporaryDirectory() as spool:
        callback = litelens.init(endpoint=receiver.url, spool_dir=spool)
        print(f"litelens demo: {calls} LiteLLM calls -> fake provider at {provider.url}")
        print(f"               records -> {receiver.url}/v1/events")
        started = time.perf_counter()
        sync_calls = calls - calls // 10
        for i in range(sync_calls):
            _one_call(litellm, provider.url, rng, i)
            if i % 5 == 0:
                _progress(i, calls)
        asyncio.run(_async_calls(litellm, provider.url, calls - sync_calls))
        _progress(calls, calls)
        sys.stderr.write("\n")
        callback.flush(timeout=30)
        receiver.wait_for(calls, timeout=30)
        elapsed = time.perf_counter() - started
        records = list(receiver.records)
        print()
        print(summarize(records))
        print()
        stats = callback.stats()
        print(
            f"{len(records)} records received for {calls} calls in {elapsed:.1f}s; "
            f"sent={stats.get('sent')} spooled={stats.get('spooled')} dropped={stats.get('dropped')}"
        )
        litelens.shutdown(timeout=5)
        litellm.callbacks = []
        return 0 if len(records) == calls else 1
