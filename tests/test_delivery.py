"""End to end at volume: real LiteLLM calls of every kind -> litelens -> a receiver, and -> the real
collector, with the collector away for half the run and the process restarted in between."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import litellm
import pytest

from litelens.testing import FakeProvider, Receiver
from server_helpers import ServerProcess

pytestmark = pytest.mark.litellm_compat

KEY = "sk-delivery-test-key-000000000000"


def plan(n: int) -> list[dict[str, Any]]:
    """A deterministic mix: what each call is, and what the fake provider will therefore report."""
    kinds = ["sync", "async", "stream", "astream", "embedding", "sync", "stream", "e429", "e500", "sync"]
    calls = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if i % 50 == 49:
            kind = "timeout"
        words = 2 + i % 7
        calls.append(
            {
                "i": i,
                "kind": kind,
                "text": " ".join(["word"] * words),
                "tokens": 1 + i % 13,
                "ttft": 20 + (i % 4) * 10,
                "model": ["gpt-4o-mini", "gpt-4o"][i % 2]
                if kind != "embedding"
                else "text-embedding-3-small",
            }
        )
    return calls


def _kwargs(provider_url: str, c: dict[str, Any]) -> dict[str, Any]:
    headers = {"x-fake-tokens": str(c["tokens"]), "x-fake-ttft-ms": str(c["ttft"]), "x-fake-interval-ms": "1"}
    if c["kind"] == "e429":
        headers.update({"x-fake-error": "429", "x-fake-retry-after": "0"})
    elif c["kind"] == "e500":
        headers["x-fake-error"] = "500"
    elif c["kind"] == "timeout":
        headers["x-fake-hang-ms"] = "600"
    return {
        "model": "openai/" + c["model"],
        "api_base": provider_url,
        "api_key": KEY,
        "extra_headers": headers,
        "num_retries": 0,
        "max_retries": 0,
        "timeout": 0.2 if c["kind"] == "timeout" else 30,
        "metadata": {"i": c["i"]},
    }


def run_sync(provider_url: str, c: dict[str, Any]) -> None:
    kw = _kwargs(provider_url, c)
    try:
        if c["kind"] == "embedding":
            litellm.embedding(input=[c["text"]], **kw)
        elif c["kind"] == "stream":
            for _ in litellm.completion(
                messages=[{"role": "user", "content": c["text"]}],
                stream=True,
                stream_options={"include_usage": True},
                **kw,
            ):
                pass
        else:
            litellm.completion(messages=[{"role": "user", "content": c["text"]}], **kw)
    except (litellm.RateLimitError, litellm.InternalServerError, litellm.Timeout):
        assert c["kind"] in ("e429", "e500", "timeout")


async def run_async(provider_url: str, calls: list[dict[str, Any]]) -> None:
    gate = asyncio.Semaphore(8)

    async def one(c: dict[str, Any]) -> None:
        async with gate:
            kw = _kwargs(provider_url, c)
            if c["kind"] == "astream":
                stream = await litellm.acompletion(
                    messages=[{"role": "user", "content": c["text"]}],
                    stream=True,
                    stream_options={"include_usage": True},
                    **kw,
                )
                async for _ in stream:
                    pass
            else:
                await litellm.acompletion(messages=[{"role": "user", "content": c["text"]}], **kw)

    await asyncio.gather(*(one(c) for c in calls))
    await asyncio.sleep(0.2)  # async success hooks run as tasks on this loop


def test_a_thousand_mixed_calls_give_a_thousand_exact_records(
    provider: FakeProvider, receiver: Receiver, make_callback: Any
) -> None:
    # LiteLLM imports its streaming code on the first stream of a process; on a busy machine that first
    # TTFT alone can pass the tolerance. A warm-up stream (i = -1) is made before litelens is on; should
    # LiteLLM's logging pool hand it to the callback anyway, it is set aside below.
    run_sync(provider.url, {**plan(1)[0], "i": -1, "kind": "stream"})
    callback = make_callback()
    calls = plan(1000)
    async_calls = [c for c in calls if c["kind"] in ("async", "astream")]
    sync_calls = [c for c in calls if c not in async_calls]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: run_sync(provider.url, c), sync_calls))
    asyncio.run(run_async(provider.url, async_calls))
    assert callback.flush(timeout=60)
    assert receiver.wait_for(1000, timeout=60), len(receiver.records)

    records = [r for r in receiver.records if r["metadata"]["i"] != -1]
    assert len(records) == 1000
    by_i = {r["metadata"]["i"]: r for r in records}
    assert sorted(by_i) == list(range(1000)), "every call exactly once"
    for c in calls:
        r = by_i[c["i"]]
        kind = c["kind"]
        assert r["request_model"] == c["model"], (c, r["request_model"])
        if kind in ("e429", "e500", "timeout"):
            expected = {
                "e429": ("RateLimitError", 429),
                "e500": ("InternalServerError", 500),
                "timeout": ("Timeout", None),
            }[kind]
            assert r["status"] == "error"
            assert r["error"]["type"] == expected[0], r["error"]
            if expected[1]:
                assert r["error"]["status_code"] == expected[1]
            continue
        assert r["status"] == "ok", r["error"]
        words = len(c["text"].split())
        assert r["usage"]["input_tokens"] == words, (c, r["usage"])
        if kind == "embedding":
            assert r["call_type"] == "embedding"
            continue
        assert r["usage"]["output_tokens"] == c["tokens"], (c, r["usage"])
        assert r["is_async"] == (kind in ("async", "astream"))
        assert r["stream"] == (kind in ("stream", "astream"))
        if r["stream"]:
            assert c["ttft"] <= r["ttft_ms"] <= c["ttft"] + 1000, (c, r["ttft_ms"])
    assert Counter(r["status"] for r in records)["error"] == sum(
        c["kind"] in ("e429", "e500", "timeout") for c in calls
    )
    stats = callback.stats()
    assert stats["dropped"] == 0 and stats["failed"] == 0


CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm, litelens
    provider, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cb = litelens.init(batch_max_age_s=0.05, exit_flush_s=10)
    latencies = []
    for i in range(first, first + count):
        t = time.perf_counter()
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "call number " + str(i)}],
                           api_base=provider, api_key="sk-restart-test-key-0000000", metadata={"i": i},
                           extra_headers={"x-fake-tokens": "3"})
        latencies.append(time.perf_counter() - t)
    print(json.dumps({"latencies": latencies, "stats": cb.stats()}))
    """
)


def test_receiver_down_then_restart_loses_nothing(
    provider: FakeProvider, tmp_path: Path, server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """The real collector is away for the whole first half, then starts on the same port and database."""
    away = ServerProcess(sqlite_url, tmp_path)
    key = away.create_key("default")
    port = away.port
    env = {
        **os.environ,
        "LITELENS_ENDPOINT": f"http://127.0.0.1:{port}",
        "LITELENS_API_KEY": key,
        "LITELENS_SPOOL_DIR": str(tmp_path / "spool"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def child(first: int, count: int) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(script), provider.url, str(first), str(count)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    down = child(0, 1000)
    assert down["stats"]["sent"] == 0
    assert down["stats"]["dropped"] == 0
    server = server_factory(sqlite_url, port=port, key=False)
    server.key = key
    client = server.client()
    up = child(1000, 1000)
    assert up["stats"]["dropped"] == 0 and up["stats"]["failed"] == 0, up["stats"]
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(records) < 2000 and time.monotonic() < deadline:
        exported = client.get("/api/export?format=jsonl")
        assert exported.status == 200, exported
        records = [json.loads(line) for line in exported.body.splitlines()]
        time.sleep(0.2)
    ids = Counter(r["metadata"]["i"] for r in records)
    assert sorted(ids) == list(range(2000)), f"{len(ids)} of 2000 calls stored"
    assert max(ids.values()) == 1, "each call is stored exactly once"
    assert len(records) == 2000
    assert all(r["status"] == "ok" and r["usage"]["output_tokens"] == 3 for r in records)
    # The server being away must not show in the calls' latency: only the queue put is on the caller.
    median_down = statistics.median(down["latencies"])
    median_up = statistics.median(up["latencies"])
    worst_down = sorted(down["latencies"])[int(0.99 * len(down["latencies"]))]
    assert median_down < median_up * 1.5 + 0.002, (median_down, median_up)
    assert worst_down < 0.5, worst_down


def test_threads_and_an_event_loop_at_once_against_a_slow_server_lose_and_repeat_nothing(
    provider: FakeProvider, receiver: Receiver, make_callback: Any
) -> None:
    # Four threads and an asyncio loop call LiteLLM at the same time while the server is slow and the
    # queue tiny: records overflow to the spool and come back, and beyond the overflow queue's bound (as
    # documented) they are dropped and counted. No call is lost silently or arrives twice.
    receiver.delay_s = 0.1
    callback = make_callback(max_queue=20)
    calls = [{**c, "kind": "sync"} for c in plan(160)]
    async_calls = [{**c, "i": 1000 + c["i"], "kind": "async"} for c in plan(80)]
    errors: list[BaseException] = []

    def event_loop() -> None:
        try:
            asyncio.run(run_async(provider.url, async_calls))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    loop_thread = threading.Thread(target=event_loop)
    loop_thread.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: run_sync(provider.url, c), calls))
    loop_thread.join(60)
    assert not errors and not loop_thread.is_alive()
    receiver.delay_s = 0.0
    assert callback.flush(timeout=30)
    deadline = time.monotonic() + 30
    while (stats := callback.stats())["sent"] + stats["dropped"] < 240 and time.monotonic() < deadline:
        time.sleep(0.05)  # the spooled records go out after the flush
    assert stats["submitted"] == 240 and stats["spooled"] > 0
    ids = [r["metadata"]["i"] for r in receiver.records]
    assert len(ids) == len(set(ids)) == stats["sent"] == 240 - stats["dropped"]
    assert set(ids) <= {c["i"] for c in calls} | {c["i"] for c in async_calls}
    assert stats["failed"] == 0 and stats["hook_errors"] == 0 and stats["queued"] == 0
