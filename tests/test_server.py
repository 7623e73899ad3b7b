"""The collector as users run it: `litelens serve` in its own process on loopback, fed by real LiteLLM
through the core callback and by a stock OpenTelemetry SDK, queried over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
from server_helpers import Client, ServerProcess

from litelens.callback import Callback, unregister
from litelens.testing import FakeProvider

FAKE_KEY = "sk-server-test-key-0000000000"


@pytest.fixture
def callback_to(tmp_path: Path) -> Iterator[Callable[[ServerProcess], Callback]]:
    """Factory: a litelens.Callback registered with LiteLLM and sending to a real server."""
    made: list[Callback] = []

    def make(server: ServerProcess, **kwargs: Any) -> Callback:
        kwargs.setdefault("spool_dir", str(tmp_path / f"spool-{len(made)}"))
        callback = Callback(endpoint=server.url, api_key=server.key, batch_max_age_s=0.05, **kwargs)
        litellm.callbacks.append(callback)
        made.append(callback)
        return callback

    yield make
    for callback in made:
        callback.shutdown(timeout=5)
        unregister(callback)


def wait_for_calls(client: Client, count: int, query: str = "", timeout: float = 30) -> list[dict[str, Any]]:
    """The project's calls once `count` of them are visible (the sender batches in the background)."""
    deadline = time.monotonic() + timeout
    calls: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        calls = client.get_json(f"/api/calls?limit=1000{query}")["calls"]
        if len(calls) >= count:
            return calls
        time.sleep(0.05)
    raise AssertionError(f"{len(calls)} calls visible, expected {count}")


# --------------------------------------------------------------------------------------------------
# 1. Core layer -> real server


def test_litellm_calls_reach_the_server_with_exact_tokens_status_and_model(
    server: ServerProcess, provider: FakeProvider, callback_to: Callable[..., Callback]
) -> None:
    callback = callback_to(server)
    common: dict[str, Any] = {"api_base": provider.url, "api_key": FAKE_KEY, "num_retries": 0, "max_retries": 0}
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        extra_headers={"x-fake-tokens": "5"},
        metadata={"case": "sync"},
        **common,
    )
    for _ in litellm.completion(
        model="openai/gpt-4o",
        messages=[{"role": "user", "content": "four five six seven"}],
        stream=True,
        extra_headers={"x-fake-tokens": "7", "x-fake-interval-ms": "1"},
        metadata={"case": "stream"},
        **common,
    ):
        pass
    litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["a b c d e f"],
        metadata={"case": "embedding"},
        **common,
    )
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "too many"}],
            extra_headers={"x-fake-error": "429", "x-fake-retry-after": "0"},
            metadata={"case": "429"},
            **common,
        )
    assert callback.flush(timeout=30)
    assert callback.stats()["sent"] == 4, callback.stats()

    client = server.client()
    calls = wait_for_calls(client, 4)
    assert len(calls) == 4
    full = {c["call_id"]: client.get_json(f"/api/calls/{c['call_id']}") for c in calls}
    by_case = {r["metadata"]["case"]: r for r in full.values()}
    summary = {c["call_id"]: c for c in calls}

    sync, stream, emb, limited = by_case["sync"], by_case["stream"], by_case["embedding"], by_case["429"]
    assert (sync["status"], sync["request_model"], sync["stream"]) == ("ok", "gpt-4o-mini", False)
    assert sync["usage"]["input_tokens"] == 3 and sync["usage"]["output_tokens"] == 5
    assert sync["usage"]["total_tokens"] == 8
    assert (stream["status"], stream["request_model"], stream["stream"]) == ("ok", "gpt-4o", True)
    assert stream["usage"]["input_tokens"] == 4 and stream["usage"]["output_tokens"] == 7
    assert stream["ttft_ms"] is not None
    assert (emb["status"], emb["call_type"], emb["request_model"]) == ("ok", "embedding", "text-embedding-3-small")
    assert emb["usage"]["input_tokens"] == 6
    assert limited["status"] == "error"
    assert limited["error"]["type"] == "RateLimitError" and limited["error"]["status_code"] == 429
    # The list's summary rows say the same as the full records.
    for call_id, record in full.items():
        row = summary[call_id]
        assert row["status"] == record["status"] and row["request_model"] == record["request_model"]
        assert row["input_tokens"] == record["usage"]["input_tokens"]
        assert row["output_tokens"] == record["usage"]["output_tokens"]

    stats = client.get_json(f"/api/stats?start={time.time() - 3600}&end={time.time() + 60}&bucket=7200")
    assert sum(r["count"] for r in stats["rows"]) == 4
    assert sum(r["errors"] for r in stats["rows"]) == 1
    assert sum(r["tokens_in"] for r in stats["rows"]) == 3 + 4 + 6 + sum(
        [limited["usage"]["input_tokens"] or 0]
    )
    assert sum(r["tokens_out"] for r in stats["rows"]) == 5 + 7
    by_model = client.get_json(
        f"/api/stats?start={time.time() - 3600}&end={time.time() + 60}&bucket=7200&group_by=model"
    )
    counts = {r["group"]: r["count"] for r in by_model["rows"]}
    assert counts == {"gpt-4o-mini": 2, "gpt-4o": 1, "text-embedding-3-small": 1}
