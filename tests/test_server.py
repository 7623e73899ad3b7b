"""The collector as users run it: `litelens serve` in its own process on loopback, fed by real LiteLLM
through the core callback and by a stock OpenTelemetry SDK, queried over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import http.client
import inspect
import io
import json
import math
import os
import random
import re
import signal
import socket
import sqlite3
import string
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import litellm
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind

from litelens import semconv
from litelens.callback import Callback, unregister
from litelens.server.config import ServerSettings
from litelens.server.store.rollup import bin_of
from litelens.testing import FakeProvider
from litelens.transport import Transport, TransportConfig
from otlp_helpers import json_body, protobuf_body, sdk_spans
from server_helpers import (
    CLI,
    Client,
    EchoingGateway,
    Response,
    ServerProcess,
    TokenGateway,
    cli,
    free_port,
    make_record,
    otlp_json,
    otlp_json_span,
)

FAKE_KEY = "sk-server-test-key-0000000000"


def delivered(callback: Callback, count: int, timeout: float = 30) -> dict[str, int]:
    """Wait until LiteLLM has handed `count` calls to the callback (its success hooks run on a worker
    thread, after the call returned) and the server acknowledged them; the callback's counters."""
    deadline = time.monotonic() + timeout
    while callback.stats()["submitted"] < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert callback.flush(timeout=max(1.0, deadline - time.monotonic()))
    stats = callback.stats()
    assert stats["sent"] == count, stats
    return stats


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
    db_project_server: ServerProcess, provider: FakeProvider, callback_to: Callable[..., Callback]
) -> None:
    callback = callback_to(db_project_server)
    common: dict[str, Any] = {
        "api_base": provider.url,
        "api_key": FAKE_KEY,
        "num_retries": 0,
        "max_retries": 0,
    }
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
    delivered(callback, 4)

    client = db_project_server.client()
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
    assert (emb["status"], emb["call_type"], emb["request_model"]) == (
        "ok",
        "embedding",
        "text-embedding-3-small",
    )
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
    # The failed call adds whatever input tokens its own record carries (LiteLLM may estimate them).
    assert sum(r["tokens_in"] for r in stats["rows"]) == 3 + 4 + 6 + (limited["usage"]["input_tokens"] or 0)
    assert sum(r["tokens_out"] for r in stats["rows"]) == 5 + 7
    by_model = client.get_json(
        f"/api/stats?start={time.time() - 3600}&end={time.time() + 60}&bucket=7200&group_by=model"
    )
    counts = {r["group"]: r["count"] for r in by_model["rows"]}
    assert counts == {"gpt-4o-mini": 2, "gpt-4o": 1, "text-embedding-3-small": 1}


# --------------------------------------------------------------------------------------------------
# 2. OpenTelemetry SDK -> real server


class PresetIds(RandomIdGenerator):
    """Span ids handed out in a given order first, so an SDK span can carry the core record's span id."""

    def __init__(self, span_ids: list[int]) -> None:
        self.span_ids = span_ids

    def generate_span_id(self) -> int:
        return self.span_ids.pop(0) if self.span_ids else super().generate_span_id()


# Fields that both the core record and a GenAI span carry, so both roads must agree on them.
SHARED_FIELDS = (
    "call_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "call_type",
    "stream",
    "is_async",
    "request_model",
    "response_model",
    "response_id",
    "provider",
    "status",
    "session_id",
    "end_user",
    "tags",
    "metadata",
    "cost_usd",
)


def shared(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in SHARED_FIELDS}
    out["usage"] = {k: v for k, v in (record.get("usage") or {}).items() if v}
    out["start_time"] = round(record["start_time"], 3)
    out["end_time"] = round(record["end_time"], 3)
    return out


def test_otel_sdk_spans_give_the_same_record_as_the_core_and_a_call_is_stored_once(
    db_project_server: ServerProcess, provider: FakeProvider, callback_to: Callable[..., Callback]
) -> None:
    built: list[dict[str, Any]] = []

    def keep(record: dict[str, Any]) -> dict[str, Any]:
        built.append(json.loads(json.dumps(record)))
        return record

    callback = callback_to(db_project_server, processors=[keep])
    protobuf_key = db_project_server.create_key("otel-protobuf")
    json_key = db_project_server.create_key("otel-json")
    gzip_json_key = db_project_server.create_key("otel-json-gzip")

    memory = InMemorySpanExporter()
    ids = PresetIds([])
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "agent"}), id_generator=ids)
    for key, compression in (
        (protobuf_key, Compression.NoCompression),
        (db_project_server.key, Compression.Gzip),
    ):
        tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(
                    endpoint=db_project_server.url + "/v1/traces",
                    headers={"Authorization": f"Bearer {key}"},
                    compression=compression,
                )
            )
        )
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tracer_provider.get_tracer("agent")

    with tracer.start_as_current_span("plan the answer") as parent:
        context = parent.get_span_context()
        trace_id, parent_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "what is seven times six"}],
            api_base=provider.url,
            api_key=FAKE_KEY,
            extra_headers={"x-fake-tokens": "4"},
            metadata={"trace_id": trace_id, "parent_span_id": parent_id, "session_id": "s-1", "tags": ["t1"]},
        )
        delivered(callback, 1)
        assert len(built) == 1
        record = built[0]
        assert record["trace_id"] == trace_id and record["parent_span_id"] == parent_id
        ids.span_ids.append(int(record["span_id"], 16))
        span = tracer.start_span(
            semconv.span_name(record),
            kind=SpanKind.CLIENT,
            attributes=semconv.record_to_attributes(record, capture_content=False),
            start_time=int(record["start_time"] * 1e9),
        )
        span.end(end_time=int(record["end_time"] * 1e9))
    assert tracer_provider.force_flush(30_000)

    spans = memory.get_finished_spans()
    assert len(spans) == 2
    client = db_project_server.client()
    for key, encoding in ((json_key, None), (gzip_json_key, "gzip")):
        body = json_body(spans)
        headers = {"Content-Type": "application/json"}
        if encoding:
            body = gzip.compress(body)
            headers["Content-Encoding"] = encoding
        request = urllib.request.Request(db_project_server.url + "/v1/traces", data=body, headers=headers)
        request.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.loads(answer.read() or b"{}").get("partialSuccess", {}).get("rejectedSpans", 0) == 0
    tracer_provider.shutdown()

    expected = shared(record)
    for key in (protobuf_key, json_key, gzip_json_key):
        calls = wait_for_calls(client.__class__(db_project_server.url, key), 1)
        assert [c["call_id"] for c in calls] == [record["call_id"]], key
        stored = client.get_json(f"/api/calls/{record['call_id']}", key=key)
        assert shared(stored) == expected
        assert "request" not in stored or not stored["request"].get("messages"), "OTel content is off"
        tree = client.get_json(f"/api/traces/{trace_id}", key=key)
        assert [root["name"] for root in tree["roots"]] == ["plan the answer"]
        [child] = tree["roots"][0]["children"]
        assert child["call"]["call_id"] == record["call_id"]

    # The default project saw the call from both roads: one call, the core's content kept.
    calls = wait_for_calls(client, 1)
    assert len(calls) == 1 and calls[0]["call_id"] == record["call_id"]
    stored = client.get_json(f"/api/calls/{record['call_id']}")
    assert shared(stored) == expected
    assert stored["request"]["messages"][0]["content"] == "what is seven times six"
    tree = client.get_json(f"/api/traces/{trace_id}")
    assert len(tree["spans"]) == 2 and len(tree["calls"]) == 1
    assert tree["roots"][0]["children"][0]["call"]["call_id"] == record["call_id"]


def test_litellm_otel_callback_spans_name_the_end_user_and_the_async_call(
    project_server: ServerProcess, provider: FakeProvider
) -> None:
    """LiteLLM's own `callbacks=["otel"]` (v1): the end user is in `llm.user`, the call type only in
    `llm.request.type`."""
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig

    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    config = OpenTelemetryConfig(exporter=memory, skip_set_global=True)
    saved = litellm.callbacks
    logger = OpenTelemetry(config=config, tracer_provider=tracer_provider)
    litellm.callbacks = [logger]

    async def call() -> None:
        await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            api_base=provider.url,
            api_key=FAKE_KEY,
            user="alice",
        )
        deadline = time.monotonic() + 10  # LiteLLM logs the success on a task of this loop
        while not any(s.name == "litellm_request" for s in memory.get_finished_spans()):
            assert time.monotonic() < deadline, "LiteLLM ended no span"
            await asyncio.sleep(0.02)

    try:
        asyncio.run(call())
    finally:
        litellm.callbacks = saved
        unregister(logger)  # LiteLLM copied it into its other lists, where it would trace later tests' calls
        tracer_provider.shutdown()
    [span] = [s for s in memory.get_finished_spans() if s.name == "litellm_request"]
    assert span.attributes["llm.user"] == "alice", "what LiteLLM sends"

    client = project_server.client()
    answer = post(client, "/v1/traces", protobuf_body(memory.get_finished_spans()), "application/x-protobuf")
    assert answer.status == 200, answer
    [call] = client.get_json("/api/calls")["calls"]
    assert call["call_id"] == span.attributes["litellm.call_id"]
    stored = client.get_json(f"/api/calls/{call['call_id']}")
    assert stored["end_user"] == "alice"
    assert (stored["litellm_call_type"], stored["is_async"]) == ("acompletion", True)
    assert stored["finish_reasons"] == ["stop"], "LiteLLM sends them as JSON text"
    assert [c["call_id"] for c in client.get_json("/api/calls?end_user=alice")["calls"]] == [call["call_id"]]


def test_moderation_transcription_speech_and_rerank_are_stored_from_both_roads(
    project_server: ServerProcess, provider: FakeProvider, callback_to: Callable[..., Callback]
) -> None:
    """The calls that generate no text pass ingest from the core callback and from OTel spans, and come
    back with what they were given and answered, as the records had them."""
    from litelens.otel import LiteLLMInstrumentor

    callback = callback_to(project_server)
    memory = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, capture_content=True)
    common: dict[str, Any] = {"api_base": provider.url, "api_key": FAKE_KEY}
    audio = b"RIFF" + bytes(64_000)
    try:
        litellm.moderation(model="omni-moderation-latest", input="hi [[fake flag=hate]]", **common)
        litellm.transcription(model="openai/whisper-1", file=("clip.wav", audio, "audio/wav"), **common)
        litellm.speech(model="openai/tts-1", input="say it", voice="alloy", **common)
        litellm.rerank(model="cohere/rerank-v3.5", query="red", documents=["blue", "red"], **common)
        with pytest.raises(litellm.InternalServerError):
            litellm.rerank(
                model="cohere/rerank-v3.5",
                query="x [[fake error=500]]",
                documents=["a"],
                num_retries=0,
                **common,
            )
    finally:
        instrumentor.uninstrument()
    delivered(callback, 5)
    spans = memory.get_finished_spans()
    assert len(spans) == 5

    def stored_by_kind(client: Client) -> dict[str, dict[str, Any]]:
        calls = wait_for_calls(client, 5)
        assert len(calls) == 5
        full = [client.get_json(f"/api/calls/{c['call_id']}") for c in calls]
        return {f"{r['call_type']}:{r['status']}": r for r in full}

    core = stored_by_kind(project_server.client())
    otel_client = Client(project_server.url, project_server.create_key("otel"))
    answer = post(otel_client, "/v1/traces", protobuf_body(spans), "application/x-protobuf")
    assert answer.status == 200 and b"rejected" not in answer.body, answer
    traced = stored_by_kind(otel_client)
    assert (
        set(core)
        == set(traced)
        == {
            "moderation:ok",
            "transcription:ok",
            "speech:ok",
            "rerank:ok",
            "rerank:error",
        }
    )
    # Each call has one id on both roads (sync moderation's too, which litelens records itself), so a
    # project fed by both stores it once.
    assert {k: r["call_id"] for k, r in core.items()} == {k: r["call_id"] for k, r in traced.items()}
    for road in (core, traced):
        assert road["moderation:ok"]["response"]["results"][0]["categories"] == ["hate"]
        assert road["transcription:ok"]["request"]["input"] == {
            "file": {"name": "clip.wav", "size_bytes": len(audio), "content_type": "audio/wav"}
        }
        assert road["transcription:ok"]["response"]["text"].startswith("lorem ipsum")
        assert road["speech:ok"]["request"]["input"] == "say it"
        assert road["speech:ok"]["response"] == {"content_type": "audio/mpeg", "size_bytes": 2000}
        assert road["rerank:ok"]["request"]["input"] == {"query": "red", "documents": ["blue", "red"]}
        assert [r["index"] for r in road["rerank:ok"]["response"]["results"]] == [1, 0]
        assert road["rerank:error"]["error"]["status_code"] == 500
        assert {r["provider"] for r in road.values()} == {"openai", "cohere"}
        assert "RIFF" not in json.dumps(road)


# --------------------------------------------------------------------------------------------------
# 3. Ingest limits and errors

LIMITS = {
    "LITELENS_MAX_BODY_BYTES": str(2**20),
    "LITELENS_MAX_RECORDS_PER_BATCH": "100",
    "LITELENS_MAX_RECORD_BYTES": str(2**16),
}


@pytest.fixture
def limited_server(server_factory: Callable[..., ServerProcess], sqlite_url: str) -> ServerProcess:
    """A collector with a 1 MiB body limit, at most 100 records a batch and 64 KiB a record."""
    return server_factory(sqlite_url, env=LIMITS)


def post(client: Client, path: str, body: bytes, content_type: str, encoding: str | None = None) -> Response:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    answer = client.request("POST", path, body, headers)
    assert answer.status < 500, answer
    return answer


def test_oversized_bodies_and_batches_are_refused_with_413(limited_server: ServerProcess) -> None:
    client = limited_server.client()
    big = json.dumps({"records": [make_record("big", metadata={"pad": "x" * 2**20})]}).encode()
    for path in ("/v1/events", "/v1/traces"):
        answer = post(client, path, big, "application/json")
        assert answer.status == 413 and "limit" in answer.json()["error"], answer
        # Without a Content-Length (chunked), the body is cut off once it passes the limit.
        chunked = client.request(
            "POST",
            path,
            iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
            {"Content-Type": "application/json"},  # http.client sends an iterable chunked
        )
        assert chunked.status == 413, chunked
        # A gzip bomb: 40 KiB on the wire, 40 MiB inflated.
        bomb = gzip.compress(b" " * (40 * 2**20), compresslevel=9)
        assert len(bomb) < 2**20
        answer = post(client, path, bomb, "application/json", "gzip")
        assert answer.status == 413 and "decompressed" in answer.json()["error"], answer
    too_many = {"records": [make_record(f"r{i}") for i in range(101)]}
    answer = post(client, "/v1/events", json.dumps(too_many).encode(), "application/json")
    assert answer.status == 413 and "101 records" in answer.json()["error"], answer
    assert client.get_json("/api/calls")["calls"] == [], "nothing of a refused batch is stored"
    # Exactly at the limit is fine.
    answer = post(
        client, "/v1/events", json.dumps({"records": too_many["records"][:100]}).encode(), "application/json"
    )
    assert answer.status == 200 and answer.json()["accepted"] == 100
    # A record past the per-record limit costs only itself, on either route.
    # The limit is in bytes as stored (UTF-8): 30,000 euro signs are 90,000 bytes.
    over = make_record("over-limit", metadata={"pad": "x" * 2**16})
    wide = make_record("wide", metadata={"pad": "\u20ac" * 30_000})
    answer = post(
        client, "/v1/events", json.dumps([over, make_record("beside"), wide]).encode(), "application/json"
    )
    assert answer.json() == {
        "accepted": 1,
        "rejected": [
            {"index": 0, "reason": "record larger than 65536 bytes"},
            {"index": 2, "reason": "record larger than 65536 bytes"},
        ],
    }
    now, trace = time.time_ns(), "0b" * 16
    spans = [
        otlp_json_span(
            trace, f"{i + 1:016x}", "chat", semconv.record_to_attributes(r, False), now, now + 10**8
        )
        for i, r in enumerate([over, make_record("otlp-beside"), wide])
    ]
    answer = post(client, "/v1/traces", otlp_json(spans), "application/json")
    partial = answer.json()["partialSuccess"]
    assert partial == {"rejectedSpans": "2", "errorMessage": "call record larger than 65536 bytes"}, answer
    assert {c["call_id"] for c in client.get_json(f"/api/calls?trace_id={trace}")["calls"]} == {"otlp-beside"}
    assert limited_server.alive()


def test_a_store_slower_than_the_senders_gets_429_with_retry_after_and_loses_nothing(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """Batches waiting for the writer were held without bound: a store slower than its senders took the
    collector's whole memory. Past LITELENS_MAX_QUEUED_RECORDS the answer is 429 with Retry-After, which
    senders retry; every batch answered 200 is stored."""
    server = server_factory(sqlite_url, env={"LITELENS_MAX_QUEUED_RECORDS": "1"})
    answers: dict[str, Any] = {}

    def send(call_id: str) -> None:
        answers[call_id] = server.client().post_json("/v1/events", [make_record(call_id)])

    send("warm")  # the key is checked and cached
    lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the writer now waits, as it would for a slow disk
    threads: list[threading.Thread] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(a.status == 429 for a in answers.values()):
            threads.append(threading.Thread(target=send, args=(f"queued-{len(threads)}",)))
            threads[-1].start()
            time.sleep(0.1)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    for thread in threads:
        thread.join(60)
    refused = [a for a in answers.values() if a.status == 429]
    assert refused, answers
    assert "busy" in refused[0].json()["error"] and refused[0].headers.get("retry-after") == "1"
    stored = {c["call_id"] for c in server.client().get_json("/api/calls?limit=100")["calls"]}
    assert stored == {c for c, a in answers.items() if a.status == 200} and len(stored) >= 2


def test_a_malformed_record_is_rejected_by_index_and_the_rest_of_the_batch_is_stored(
    project_server: ServerProcess,
) -> None:
    client = project_server.client()
    batch = [
        make_record("good-0"),
        {**make_record("bad-call-id"), "call_id": ""},
        make_record("good-2"),
        make_record("bad-tokens", usage={"input_tokens": -4}),
        "not an object",
        make_record("bad-status", status="fine"),
        # Hex ids in upper case are the same ids (stored lower-case, as OTLP's are).
        make_record("good-6", trace_id="AB" * 16, span_id="CD" * 8, parent_span_id="EF" * 8),
    ]
    body = gzip.compress(json.dumps({"schema": "litelens.batch/1", "records": batch}).encode())
    answer = post(client, "/v1/events", body, "application/json", "gzip")
    assert answer.status == 200, answer
    result = answer.json()
    assert result["accepted"] == 3
    reasons = {r["index"]: r["reason"] for r in result["rejected"]}
    assert sorted(reasons) == [1, 3, 4, 5]
    assert "call_id" in reasons[1] and "usage.input_tokens" in reasons[3]
    assert "object" in reasons[4] and "status" in reasons[5]
    stored = {c["call_id"] for c in client.get_json("/api/calls")["calls"]}
    assert stored == {"good-0", "good-2", "good-6"}
    ids = client.get_json("/api/calls/good-6")
    assert (ids["trace_id"], ids["span_id"], ids["parent_span_id"]) == ("ab" * 16, "cd" * 8, "ef" * 8)
    for trace in ("ab" * 16, "AB" * 16, "aB" * 16):
        assert [c["call_id"] for c in client.get_json(f"/api/calls?trace_id={trace}")["calls"]] == ["good-6"]
        assert [n["call"]["call_id"] for n in client.get_json(f"/api/traces/{trace}")["roots"]] == ["good-6"]
    for body, why in ((b"{not json", "not valid JSON"), (b'{"records": 3}', "records"), (b'"x"', "records")):
        answer = post(client, "/v1/events", body, "application/json")
        assert answer.status == 400 and why in answer.json()["error"], answer
    answer = post(client, "/v1/events", b"\x1f\x8b not gzip", "application/json", "gzip")
    assert answer.status == 400, answer


def test_a_record_whose_token_counts_are_not_known_is_stored_with_them_unknown(
    project_server: ServerProcess,
) -> None:
    """A stream a proxy's hook broke has token counts no one gave: its record says null, which the
    schema allows. The server stores such a record as it is, total given or left out, and answers no 500."""
    client = project_server.client()
    unknown = {"input_tokens": None, "output_tokens": None, "total_tokens": None}
    batch = [
        make_record("unknown-usage", status="error", stream=True, usage=unknown, cost_usd=None),
        make_record("unknown-total", status="error", stream=True, usage={"input_tokens": None}),
    ]
    answer = client.post_json("/v1/events", {"records": batch})
    assert answer.status == 200 and answer.json()["accepted"] == 2, answer
    for call_id in ("unknown-usage", "unknown-total"):
        stored = client.get_json(f"/api/calls/{call_id}")
        assert stored["usage"]["input_tokens"] is None and stored["usage"]["total_tokens"] is None, stored


def test_a_nul_in_any_field_costs_neither_the_call_nor_its_batch(db_project_server: ServerProcess) -> None:
    """PostgreSQL cannot store NUL in text: a model name or tag with one answered 503, which the sender
    retries forever. The NUL goes, on both stores alike, and the rest stays."""
    client = db_project_server.client()
    nul = make_record(
        "nul\x00call", request_model="gpt\x00x", session_id="s\x00", tags=["t\x00"], call_type="chat\x00"
    )
    answer = client.post_json("/v1/events", [nul, make_record("beside-nul"), make_record("\x00")])
    assert answer.status == 200, answer
    assert answer.json()["accepted"] == 2 and [r["index"] for r in answer.json()["rejected"]] == [2]
    stored = client.get_json("/api/calls/nulcall")
    assert (stored["request_model"], stored["session_id"], stored["tags"]) == ("gptx", "s", ["t"])
    now, trace = time.time_ns(), "0c" * 16
    span = otlp_json_span(trace, "1" * 16, "tool\x00step", {}, now, now + 10**6)
    answer = post(client, "/v1/traces", otlp_json([span]), "application/json")
    assert answer.status == 200, answer
    assert [r["name"] for r in client.get_json(f"/api/traces/{trace}")["roots"]] == ["toolstep"]


def test_a_spans_events_are_capped_in_bytes_not_characters(project_server: ServerProcess) -> None:
    """A tool span keeps its first events up to 16 KiB of JSON; text in Greek or Chinese took up
    to three times that when the cap counted characters."""
    client = project_server.client()
    now, trace = time.time_ns(), "0e" * 16
    span = otlp_json_span(trace, "1" * 16, "tool", {}, now, now + 10**6)
    message = {"key": "exception.message", "value": {"stringValue": "\u20ac" * 1000}}
    span["events"] = [{"name": "exception", "timeUnixNano": str(now), "attributes": [message]}] * 10
    assert post(client, "/v1/traces", otlp_json([span]), "application/json").status == 200
    [root] = client.get_json(f"/api/traces/{trace}")["roots"]
    assert 0 < len(root["events"]) < 10
    assert len(json.dumps(root["events"], ensure_ascii=False).encode()) <= 16 * 1024


def test_otlp_unknown_content_type_is_415_and_bad_spans_are_a_partial_success(
    project_server: ServerProcess,
) -> None:
    client = project_server.client()
    answer = post(client, "/v1/traces", b"hello", "text/plain")
    assert answer.status == 415 and "application/x-protobuf" in answer.json()["error"], answer
    # Failures answer with a google.rpc.Status in the request's encoding (OTLP spec, "Failures"), which
    # is what an exporter decodes to log the reason.
    answer = post(client, "/v1/traces", b"hello", "application/x-protobuf", "br")
    assert answer.status == 415 and answer.headers["content-type"] == "application/x-protobuf", answer
    assert "Content-Encoding" in status_pb2.Status.FromString(answer.body).message
    refused = client.request("POST", "/v1/traces", b"", {"Content-Type": "application/x-protobuf"}, key=None)
    assert refused.status == 401 and "key" in status_pb2.Status.FromString(refused.body).message, refused
    answer = post(client, "/v1/traces", b"{", "application/json")
    assert answer.status == 400 and answer.json()["message"] == answer.json()["error"], answer

    now = time.time_ns()
    record = make_record("otlp-good")
    attrs = semconv.record_to_attributes(record, capture_content=False)
    good = otlp_json_span("ab" * 16, "cd" * 8, "chat gpt-4o-mini", attrs, now, now + 10**8)
    bad_ids = {**good, "spanId": "", "name": "no span id"}
    bad_trace = {**good, "traceId": "", "spanId": "ef" * 8}
    # A call id no store takes costs the span its call record, not its place in the trace: not rejected.
    no_call = {
        **good,
        "spanId": "1e" * 8,
        "attributes": [*good["attributes"], {"key": "litellm.call_id", "value": {"stringValue": "x" * 300}}],
    }
    answer = post(client, "/v1/traces", otlp_json([good, bad_ids, bad_trace, no_call]), "application/json")
    assert answer.status == 200, answer
    partial = answer.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2 and partial["errorMessage"], partial
    assert [c["call_id"] for c in client.get_json("/api/calls")["calls"]] == ["otlp-good"]
    assert {s["span_id"] for s in client.get_json(f"/api/traces/{'ab' * 16}")["spans"]} == {
        "cd" * 8,
        "1e" * 8,
    }
    # One implausible attribute (-1 for "unknown") costs the call that field, not its record: the
    # sender gets the spec's warning, a partial success with no span rejected.
    odd = otlp_json_span(
        "ab" * 16,
        "0d" * 8,
        "chat gpt-4o-mini",
        {**attrs, "litellm.call_id": "otlp-odd", semconv.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: -1},
        now,
        now + 10**8,
    )
    answer = post(client, "/v1/traces", otlp_json([odd]), "application/json")
    assert answer.status == 200, answer
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "0" and "cached_input_tokens" in partial["errorMessage"], partial
    stored = client.get_json("/api/calls/otlp-odd")
    assert stored["usage"]["cached_input_tokens"] is None
    assert stored["usage"]["input_tokens"] == record["usage"]["input_tokens"] > 0
    # A truncated protobuf export is refused as a whole with a reason.
    answer = post(client, "/v1/traces", b"\x0a\x02\x0a", "application/x-protobuf")
    assert answer.status == 400, answer
    assert "protobuf" in status_pb2.Status.FromString(answer.body).message


def test_otlp_spans_are_stored_without_credentials(project_server: ServerProcess) -> None:
    """Every span is kept for the trace tree, and HTTP spans next to the LLM call carry captured headers and
    URLs with keys; OpenInference's invocation parameters are the call's keyword arguments."""
    client = project_server.client()
    now, trace = time.time_ns(), "5e" * 16
    google_key = "AIzaSyA1234567890abcdefghijklmnopqrstu"
    http = otlp_json_span(
        trace,
        "1" * 16,
        "POST",
        {
            "url.full": f"https://generativelanguage.googleapis.com/v1beta/models/g:generateContent?key={google_key}",
            "http.request.header.authorization": ["Bearer sk-live-abcdefghijklmnop"],
            "http.request.header.x-api-key": ["0a1b2c3d4e5f60718293"],
            "http.response.status_code": 200,
        },
        now,
        now + 10**8,
        parent_span_id="2" * 16,
    )
    # Why it failed is kept, as scrubbed as the rest.
    http["status"] = {"code": 2, "message": "401 for Bearer sk-live-abcdefghijklmnop"}
    http["events"] = [
        {"name": "exception", "timeUnixNano": str(now + 5), "attributes": [
            {"key": "exception.type", "value": {"stringValue": "HTTPStatusError"}},
            {"key": "exception.message", "value": {"stringValue": "key=AIzaSyA1234567890abcdefghijklmnopqrstu"}},
        ]}
    ]  # fmt: skip
    params = {"temperature": 0.5, "extra_headers": {"Authorization": "Bearer sk-proj-abcdefghijklmnop"}}
    llm = otlp_json_span(
        trace,
        "2" * 16,
        "completion",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.invocation_parameters": json.dumps(params),
        },
        now,
        now + 2 * 10**8,
    )
    answer = post(client, "/v1/traces", otlp_json([http, llm]), "application/json")
    assert answer.status == 200 and answer.json() == {}, answer

    tree = client.get_json(f"/api/traces/{trace}")
    shown = json.dumps(tree)
    for secret in (
        google_key,
        "sk-live-abcdefghijklmnop",
        "0a1b2c3d4e5f60718293",
        "sk-proj-abcdefghijklmnop",
    ):
        assert secret not in shown, secret
    [root] = tree["roots"]
    [child] = root["children"]
    assert child["attributes"]["url.full"].endswith("?key=[REDACTED]")
    # A header is an array attribute (the conventions' form): it stays one, its values replaced.
    assert child["attributes"]["http.request.header.authorization"] == ["[REDACTED]"]
    assert child["attributes"]["http.response.status_code"] == 200, "the rest of the span is kept"
    assert child["status_message"] == "401 for Bearer [REDACTED]"
    [event] = child["events"]
    assert (event["name"], event["attributes"]["exception.type"]) == ("exception", "HTTPStatusError")
    call = client.get_json(f"/api/calls/{root['call']['call_id']}")
    assert call["request"]["parameters"]["temperature"] == 0.5
    assert call["request"]["parameters"]["extra_headers"] == {"Authorization": "[REDACTED]"}
    assert "sk-proj" not in client.get("/api/export?format=jsonl").body.decode()


def test_trace_tree_holds_every_span_once_however_deep_or_looped(project_server: ServerProcess) -> None:
    """An agent that recursed 200 times, and two spans a broken sender parented to each other."""
    client = project_server.client()
    now, trace = time.time_ns(), "7a" * 16
    chain = [
        otlp_json_span(trace, f"{i:016x}", f"step {i}", {"depth": i}, now + i, now + 10**9, f"{i - 1:016x}")
        for i in range(1, 201)
    ]
    chain[0]["parentSpanId"] = ""
    loop = [
        otlp_json_span(trace, "a" * 16, "A", {}, now + 500, now + 600, "b" * 16),
        otlp_json_span(trace, "b" * 16, "B", {}, now + 501, now + 600, "a" * 16),
    ]
    assert post(client, "/v1/traces", otlp_json(chain + loop), "application/json").status == 200

    answer = client.get(f"/api/traces/{trace.upper()}")  # hex ids: either case is the same trace
    assert answer.status == 200, answer
    tree = answer.json()
    seen: list[tuple[int, dict[str, Any]]] = []
    stack = [(1, root) for root in tree["roots"]]
    while stack:
        depth, node = stack.pop()
        seen.append((depth, node))
        stack += [(depth + 1, child) for child in node["children"]]
    assert sorted(n["span_id"] for _, n in seen) == sorted(s["span_id"] for s in tree["spans"])
    assert len(seen) == 202
    assert [n["name"] for n in tree["roots"]] == ["step 1", "A"]
    assert [c["name"] for c in tree["roots"][1]["children"]] == ["B"]
    assert max(depth for depth, _ in seen) <= 65
    deepest = next(n for _, n in seen if n["name"] == "step 200")
    assert deepest["parent_span_id"] == f"{199:016x}", "a node keeps its real parent id"


def test_a_gzip_body_of_several_members_is_stored_whole(project_server: ServerProcess) -> None:
    """A gzip body may be several members back to back (a streaming compressor that flushes); only the
    first was read, so the spans of the others were acknowledged and lost."""
    client = project_server.client()

    def build(tracer: Any) -> None:
        with tracer.start_as_current_span("agent"):
            for step in range(3):
                with tracer.start_as_current_span(f"step {step}"):
                    pass

    spans = sdk_spans(build)
    # Two exports back to back are one export of all their spans (protobuf concatenates repeated fields).
    body = gzip.compress(protobuf_body(spans[:2])) + gzip.compress(protobuf_body(spans[2:]))
    answer = post(client, "/v1/traces", body, "application/x-protobuf", "gzip")
    assert answer.status == 200, answer
    tree = client.get_json(f"/api/traces/{spans[0].context.trace_id:032x}")
    assert [r["name"] for r in tree["roots"]] == ["agent"], tree
    assert sorted(c["name"] for c in tree["roots"][0]["children"]) == ["step 0", "step 1", "step 2"]
    # Whatever follows a member must be another member.
    answer = post(
        client, "/v1/traces", gzip.compress(protobuf_body(spans)) + b"junk", "application/x-protobuf", "gzip"
    )
    assert answer.status == 400, answer


def test_strings_that_are_not_utf8_cost_the_sender_nothing_but_those_characters(
    project_server: ServerProcess,
) -> None:
    """JavaScript cuts LLM text between the halves of an emoji (JSON.stringify then writes a lone
    `\\ud83d`, protobufjs bytes that are not UTF-8), and Go strings are bytes; a 400 makes the exporter
    drop the whole batch."""
    client = project_server.client()

    def build(tracer: Any) -> None:
        with (
            tracer.start_as_current_span("agent"),
            tracer.start_as_current_span("chat m", attributes={"gen_ai.request.model": "m", "cut": "hi CUT"}),
        ):
            pass

    spans = sdk_spans(build)
    bodies = {
        # a lone surrogate as protobufjs writes it, as many bytes as "CUT" so the lengths stay right
        "application/x-protobuf": protobuf_body(spans).replace(b"CUT", b"\xed\xa0\xbd"),
        "application/json": json_body(spans).replace(b"CUT", b"\\ud83d"),
        # the same bytes inside a JSON body
        "application/json; charset=utf-8": json_body(spans).replace(b"CUT", b"\xed\xa0\xbd"),
    }
    for content_type, body in bodies.items():
        answer = post(client, "/v1/traces", body, content_type)
        assert answer.status == 200, (content_type, answer)
        if content_type.startswith("application/json"):
            warning = answer.json()["partialSuccess"]
            assert warning["rejectedSpans"] == "0" and "UTF-8" in warning["errorMessage"]
        trace = f"{spans[0].context.trace_id:032x}"
        tree = client.get_json(f"/api/traces/{trace}")
        assert [r["name"] for r in tree["roots"]] == ["agent"], content_type
        [child] = tree["roots"][0]["children"]
        # One rule on every route: one U+FFFD per cut surrogate half, however it was written.
        assert child["attributes"]["cut"] == "hi \ufffd", content_type
        assert child["call"]["request_model"] == "m"
    # The core layer's batches too: a record cut mid-emoji keeps its neighbours and the rest of its text.
    cut = make_record("cut-mid-emoji", end_user="hi CUT", metadata={"CUT": "CUT"})
    body = json.dumps({"records": [make_record("before-cut"), cut]}).encode().replace(b"CUT", b"\\ud83d")
    answer = post(client, "/v1/events", body, "application/json")
    assert answer.status == 200 and answer.json() == {"accepted": 2, "rejected": []}, answer
    stored = client.get_json("/api/calls/cut-mid-emoji")
    assert (stored["end_user"], stored["metadata"]) == ("hi \ufffd", {"\ufffd": "\ufffd"})
    # The same half as UTF-8 bytes (a sender that does not check its strings) is stored alike.
    raw = json.dumps([make_record("cut-raw", end_user="raw CUT")]).encode().replace(b"CUT", b"\xed\xa0\xbd")
    answer = post(client, "/v1/events", raw, "application/json")
    assert answer.status == 200 and answer.json() == {"accepted": 1, "rejected": []}, answer
    assert client.get_json("/api/calls/cut-raw")["end_user"] == "raw \ufffd"
    assert [c["call_id"] for c in client.get_json("/api/calls?end_user=hi%20%EF%BF%BD")["calls"]] == [
        "cut-mid-emoji"
    ]


# --------------------------------------------------------------------------------------------------
# 4. Auth


def every_route(client: Client) -> list[tuple[str, str]]:
    """(method, path) of every route in the OpenAPI document, path parameters filled in."""
    document = client.get_json("/openapi.json", key=None)
    routes = []
    for path, operations in document["paths"].items():
        for method in operations:
            routes.append((method.upper(), path.replace("{call_id}", "c").replace("{trace_id}", "a" * 32)))
    return [(m, p.replace("{session_id}", "s")) for m, p in routes]


def test_requests_without_a_valid_key_are_refused_on_every_route(project_server: ServerProcess) -> None:
    client = project_server.client()
    routes = every_route(client)
    paths = {p for _, p in routes}
    assert {"/v1/events", "/v1/traces", "/api/calls", "/api/calls/c", "/api/export", "/api/stats"} <= paths
    assert {"/api/sessions", "/api/sessions/s", f"/api/traces/{'a' * 32}", "/api/me"} <= paths
    revoked = project_server.create_key("gone")
    done = cli("keys", "revoke", revoked, "--db", project_server.db_url)
    assert done.returncode == 0 and "revoked" in done.stdout, done
    refusals = {
        "no key": {},
        "wrong key": {"Authorization": "Bearer ll_not-a-key-anyone-made"},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong scheme": {"Authorization": f"Basic {project_server.key}"},
        "revoked key": {"Authorization": f"Bearer {revoked}"},
    }
    body = json.dumps({"records": [make_record("sneaky")]}).encode()
    for method, path in routes:
        for why, headers in refusals.items():
            answer = client.request(
                method,
                path,
                body if method == "POST" else None,
                {"Content-Type": "application/json", **headers},
                key=None,
            )
            assert answer.status == 401, (method, path, why, answer)
            assert "key" in answer.json()["error"]
    assert client.get_json("/api/calls")["calls"] == [], "nothing was stored by a refused request"
    assert client.post_json("/v1/events", {"records": [make_record("allowed")]}).status == 200


def test_every_answer_tells_browsers_not_to_sniff_its_type(
    project_server: ServerProcess, server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """Only the dashboard's HTML pages said `nosniff`: a JSON answer (which holds the prompts and answers
    anyone with a key stored) or a static file could be sniffed by a browser as something else."""
    client = project_server.client()
    answers = {
        "health": client.get("/health", key=None),
        "openapi": client.get("/openapi.json", key=None),
        "stylesheet": client.get("/static/app.css", key=None),
        "script": client.get("/static/app.js", key=None),
        "missing static file": client.get("/static/nothing.js", key=None),
        "ingest": client.post_json("/v1/events", {"records": [make_record("sniffed")]}),
        "ingest refused": client.post_json("/v1/events", {"records": "none"}),
        "otlp refused": client.request("POST", "/v1/traces", b"x", {"Content-Type": "text/plain"}),
        "query": client.get("/api/calls"),
        "export": client.get("/api/export"),
        "not found": client.get("/api/calls/no-such-call"),
        "no key": client.get("/api/stats", key=None),
        "bad parameter": client.get("/api/stats?bucket=61"),
        "page": client.get("/login", key=None),
    }
    open_server = server_factory(sqlite_url, args=("--no-auth",), key=False)
    answers["refused page of another site"] = open_server.client().request(
        "GET", "/api/calls", headers={"Origin": "http://evil.example"}
    )
    for what, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", (what, answer, answer.headers)
    assert answers["ingest"].status == 200 and answers["refused page of another site"].status == 403


def test_an_unexpected_failure_is_a_500_that_still_says_nosniff_and_shows_no_traceback(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """Starlette answers an unhandled exception from outside the app's middleware, so that one 500 was
    the only answer without `nosniff`. The key lookup runs outside the store's error mapping: a keys table
    gone from the database file fails it unexpectedly."""
    server = server_factory(sqlite_url)
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        db.execute("ALTER TABLE api_keys RENAME TO api_keys_gone")
        db.commit()
    client = server.client()
    answer = client.get("/api/calls", key="ll_a-key-no-cache-has-seen-yet")
    assert answer.status == 500, answer
    assert answer.headers.get("x-content-type-options") == "nosniff", answer.headers
    assert b"Traceback" not in answer.body and b"api_keys" not in answer.body, answer.body
    assert "server's log" in answer.json()["error"]
    deadline = time.monotonic() + 10  # the traceback is logged after the answer went out
    while "no such table: api_keys" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no such table: api_keys" in server.log(), "the operator still finds out what failed"
    assert client.get("/health", key=None).status == 200, "the server keeps answering"


def test_a_project_never_sees_another_projects_calls(project_server: ServerProcess) -> None:
    ours = project_server.client()
    theirs = project_server.client(project_server.create_key("other-team"))
    trace = "f" * 32
    secret = make_record(
        "ours-1", trace_id=trace, session_id="sess-ours", tags=["private"], metadata={"k": "v"}
    )
    assert ours.post_json("/v1/events", {"records": [secret]}).json()["accepted"] == 1
    assert theirs.post_json("/v1/events", {"records": [make_record("theirs-1")]}).json()["accepted"] == 1
    assert ours.get_json("/api/me") != theirs.get_json("/api/me")

    assert [c["call_id"] for c in theirs.get_json("/api/calls")["calls"]] == ["theirs-1"]
    assert [c["call_id"] for c in ours.get_json("/api/calls")["calls"]] == ["ours-1"]
    assert theirs.get_json("/api/calls?q=ours-1&tag=private")["calls"] == []
    assert theirs.get("/api/calls/ours-1").status == 404
    assert theirs.get(f"/api/traces/{trace}").status == 404
    assert theirs.get("/api/sessions/sess-ours").status == 404
    assert [s["session_id"] for s in theirs.get_json("/api/sessions")["sessions"]] == []
    assert ours.get_json("/api/sessions/sess-ours")["totals"]["calls"] == 1
    window = f"start={time.time() - 3600}&end={time.time() + 60}&bucket=7200"
    assert sum(r["count"] for r in theirs.get_json(f"/api/stats?{window}")["rows"]) == 1
    assert sum(r["count"] for r in ours.get_json(f"/api/stats?{window}")["rows"]) == 1
    exported = theirs.get("/api/export?format=jsonl").body.decode()
    assert "ours-1" not in exported and "theirs-1" in exported
    assert "ours-1" not in theirs.get("/api/export?format=csv").body.decode()
    # Sending the same call id does not overwrite (or reveal) the other project's call.
    assert (
        theirs.post_json("/v1/events", {"records": [make_record("ours-1", request_model="x")]}).status == 200
    )
    assert ours.get_json("/api/calls/ours-1")["request_model"] == "gpt-4o-mini"
    assert ours.get_json("/api/calls/ours-1")["metadata"] == {"k": "v"}


def test_keys_are_stored_hashed(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    client = sqlite_server.client()
    assert client.post_json("/v1/events", {"records": [make_record("k1")]}).status == 200
    db = Path(sqlite_server.db_url[len("sqlite:///") - 1 :])
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert files
    stored = b"".join(p.read_bytes() for p in files)
    assert b"k1" in stored, "the database file is the one the server writes"
    secret_part = sqlite_server.key[10:].encode()  # the first 10 characters are kept to tell keys apart
    assert secret_part not in stored


def test_no_auth_is_refused_off_loopback_and_works_on_loopback(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    done = cli(
        "serve", "--no-auth", "--host", "0.0.0.0", "--port", str(free_port()), "--db", sqlite_url, timeout=30
    )
    assert done.returncode == 2, done
    assert "--no-auth" in done.stderr and "loopback" in done.stderr and "keys create" in done.stderr
    open_server = server_factory(sqlite_url, args=("--no-auth",), key=False)
    client = open_server.client()
    assert client.post_json("/v1/events", {"records": [make_record("open")]}, key=None).status == 200
    assert [c["call_id"] for c in client.get_json("/api/calls", key=None)["calls"]] == ["open"]
    # The doctor, given no key, said "key accepted" of a key it never sent.
    done = cli("doctor", env={"LITELENS_ENDPOINT": open_server.url, "LITELENS_API_KEY": ""})
    assert done.returncode == 0 and "no key needed (the server runs with --no-auth)" in done.stdout, done


def test_with_no_auth_web_pages_of_other_sites_can_neither_write_nor_read(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """An open (--no-auth) server on loopback is reachable from the user's browser: a page of any site
    could post made-up calls into it (a `no-cors` text/plain POST needs no preflight, and Firefox sends
    it), and by DNS rebinding (the site's own name re-resolved to 127.0.0.1) read every recorded prompt
    as same-origin. Browsers name the site in `Origin` and `Host`; local tools send neither."""
    server = server_factory(sqlite_url, args=("--no-auth",), key=False)
    client = Client(server.url)
    forged = json.dumps({"records": [make_record("forged-1")]}).encode()
    answer = client.request(
        "POST",
        "/v1/events",
        forged,
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
        key=None,
    )
    assert answer.status == 403 and b"evil.example" in answer.body
    assert client.post_json("/v1/events", {"records": [make_record("own-1")]}, key=None).status == 200
    assert [c["call_id"] for c in client.get_json("/api/calls", key=None)["calls"]] == ["own-1"]
    rebound = client.request("GET", "/api/calls", headers={"Host": f"evil.example:{server.port}"}, key=None)
    assert rebound.status == 403 and b"own-1" not in rebound.body
    assert b"loopback" in rebound.body, "the answer says why"
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}"):
        same_origin = {"Host": host, "Origin": f"http://{host}"}
        assert client.request("GET", "/calls", headers=same_origin, key=None).status == 200


def test_a_new_sqlite_database_is_readable_by_its_owner_only(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The database holds every prompt and answer of every project: under the usual umask 022 a new one
    (and its WAL) was world-readable, so any user of a shared host could read them."""
    db = tmp_path / "data" / "calls.db"
    old = os.umask(0o022)
    try:
        server = server_factory(f"sqlite:///{db}")
    finally:
        os.umask(old)
    assert server.client().post_json("/v1/events", {"records": [make_record("private-1")]}).status == 200
    files = [db, Path(f"{db}-wal")]
    assert all(f.exists() for f in files)
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o600)}


def test_a_bad_database_url_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("not a database\n")
    for url in ("mysql://db/litelens", f"sqlite:///{not_a_db}"):
        for command in (("serve", "--port", str(free_port())), ("keys", "list")):
            done = cli(*command, "--db", url, timeout=30)
            assert done.returncode == 2, done
            assert "Traceback" not in done.stderr and "could not start" not in done.stderr, done.stderr
            assert f"cannot open the database {url}" in done.stderr, done.stderr


def test_a_sqlite_url_with_a_tilde_is_under_the_home_folder(tmp_path: Path) -> None:
    """The docs give the default database as `sqlite:///~/.local/share/litelens/litelens.db`: a URL
    written that way made a folder named `~` at the root of the filesystem (or failed, as a user)."""
    url = "sqlite:///~/litelens-data/litelens.db"
    env = {"HOME": str(tmp_path)}
    created = cli("keys", "create", "--project", "shop", "--db", url, env=env)
    assert created.returncode == 0, created
    assert (tmp_path / "litelens-data" / "litelens.db").is_file()
    listed = cli("keys", "list", "--project", "shop", "--db", url, env=env)
    assert listed.returncode == 0 and listed.stdout.startswith(created.stdout[:8]), listed


def test_serve_refuses_a_port_or_retention_it_cannot_honour(sqlite_url: str) -> None:
    done = cli("serve", "--port", "99999", "--db", sqlite_url, timeout=20)  # was served on 99999 % 65536
    assert done.returncode == 2 and "out of range" in done.stderr, done
    for retention in ("--retention=0", "--retention=0d"):
        done = cli("serve", "--port", str(free_port()), retention, "--db", sqlite_url, timeout=20)
        assert done.returncode == 2 and "--retention must be longer than 0" in done.stderr, done
    done = cli(
        "serve", "--retention=1d", "--db", sqlite_url, env={"LITELENS_RETENTION_EVERY": "0"}, timeout=20
    )
    assert done.returncode == 2 and "LITELENS_RETENTION_EVERY must be longer than 0" in done.stderr, done
    done = cli("serve", "--db", sqlite_url, env={"LITELENS_PORT": "http"}, timeout=20)
    assert done.returncode == 2 and "LITELENS_PORT must be a port number" in done.stderr, done
    # `keys` needs only the database: the server's other settings are no reason to fail.
    done = cli(
        "keys", "create", "--db", sqlite_url, env={"LITELENS_PORT": "http", "LITELENS_RETENTION": "1y"}
    )
    assert done.returncode == 0 and done.stdout.startswith("ll_"), done


def test_serve_refuses_a_size_or_count_limit_of_0_or_less(sqlite_url: str) -> None:
    """LITELENS_MAX_BODY_BYTES=0 (or -1, or any of the other limits at 0) was taken: the server started,
    answered /health, and refused every batch with a 413 (or 429)."""
    for name in (
        "LITELENS_MAX_BODY_BYTES",
        "LITELENS_MAX_RECORDS_PER_BATCH",
        "LITELENS_MAX_RECORD_BYTES",
        "LITELENS_MAX_SPANS_PER_REQUEST",
        "LITELENS_MAX_QUEUED_RECORDS",
    ):
        for value in ("0", "-1"):
            done = cli("serve", "--port", str(free_port()), "--db", sqlite_url, env={name: value}, timeout=20)
            _one_clear_line(done, f"{name} must be a whole number above 0, got {value}")
    with pytest.raises(ValueError, match="LITELENS_MAX_BODY_BYTES must be a whole number above 0"):
        ServerSettings.from_env({}, max_body_bytes=-1)


def test_serve_on_a_port_already_taken_says_so_and_what_to_do(sqlite_url: str) -> None:
    """4318 is also an OpenTelemetry Collector's (and a second `litelens serve`'s) port: serve printed
    "litelens serving on http://127.0.0.1:4318", then uvicorn's bare bind error, and exited."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--port", str(port), "--db", sqlite_url, timeout=30)
    assert done.returncode == 2, done
    assert "serving on" not in done.stdout, done.stdout
    assert f"127.0.0.1:{port} is already in use" in done.stderr, done.stderr
    assert "--port" in done.stderr and "Traceback" not in done.stderr, done.stderr


def _one_clear_line(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 2, done
    assert "serving on" not in done.stdout and "Traceback" not in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for words in says:
        assert words in done.stderr, (words, done.stderr)


def test_serve_that_cannot_start_says_why_and_what_to_do_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    """A host not on this machine, or one that does not resolve, was found by uvicorn after "serving on"
    had been printed, and said in its words (`[Errno 99] error while attempting to bind`); a database or
    TLS file that would not open said what failed, but not what to change."""
    port = str(free_port())
    started = time.monotonic()
    done = cli("serve", "--host", "10.255.255.1", "--port", port, "--db", sqlite_url, timeout=30)
    _one_clear_line(done, "10.255.255.1 is not an address of this machine", "--host", "127.0.0.1")
    done = cli("serve", "--host", "no-such-host.invalid", "--port", port, "--db", sqlite_url, timeout=30)
    _one_clear_line(done, "cannot find the host 'no-such-host.invalid'", "--host")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    done = cli("serve", "--port", port, "--db", f"sqlite:///{not_a_folder}/litelens.db", timeout=30)
    _one_clear_line(done, "cannot open the database", "a folder this user can write to")
    done = cli(
        "serve", "--port", port, "--db", f"postgresql://litelens@127.0.0.1:{free_port()}/x", timeout=30
    )
    _one_clear_line(done, "Connection refused", "is PostgreSQL running there?", "--db")
    missing = tmp_path / "missing.pem"
    done = cli("serve", "--port", port, "--db", sqlite_url, "--ssl-certfile", str(missing), timeout=30)
    _one_clear_line(done, f"cannot use {missing}", "--ssl-certfile")
    done = cli("serve", "--port", port, "--db", sqlite_url, "--retention", "soon", timeout=30)
    _one_clear_line(done, "'soon' is not a duration", "30d")
    # Each gave up before anything listened, and soon: no server was left half started.
    assert time.monotonic() - started < 60
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", int(port)))


def test_serve_and_keys_name_a_misspelt_variable(sqlite_url: str, tmp_path: Path) -> None:
    """docs/configuration.md: any other LITELENS_* variable is ignored with a warning naming the closest
    known one. The core callback said so, but `serve` kept everything for LITELENS_RETENTON=30d, and
    `keys create` put the key in the default database for LITELENS_DBB=..., without a word."""
    done = cli("serve", "--port", "99999", "--db", sqlite_url, env={"LITELENS_RETENTON": "30d"}, timeout=20)
    assert done.returncode == 2 and "out of range" in done.stderr, done  # stopped before it started
    assert "unknown variable LITELENS_RETENTON; did you mean LITELENS_RETENTION?" in done.stderr, done
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "LITELENS_DBB": sqlite_url}
    done = cli("keys", "list", env=env)
    assert done.returncode == 0, done
    assert "unknown variable LITELENS_DBB; did you mean LITELENS_DB?" in done.stderr, done.stderr


def test_serve_refuses_a_log_level_it_does_not_know_before_it_starts(sqlite_url: str) -> None:
    """docs/configuration.md names the levels; any other was taken, the store opened, "serving on"
    printed, and then uvicorn failed on it with a KeyError traceback."""
    done = cli("serve", "--port", str(free_port()), "--db", sqlite_url, "--log-level", "verbose", timeout=30)
    assert done.returncode == 2, done
    assert "serving on" not in done.stdout and "Traceback" not in done.stderr, done
    assert "--log-level: invalid choice: 'verbose'" in done.stderr and "debug" in done.stderr, done.stderr


def _serve_until_listening(db_url: str) -> str:
    """`litelens serve` at its default log level, stopped once it listens; what it said on stderr."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(free_port()), "--db", db_url, "--no-auth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "serving on" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    return stderr


def test_serve_on_port_0_says_the_port_it_listens_on(sqlite_url: str) -> None:
    """`--port 0` lets the OS choose a free port (scripts and tests start servers so): serve printed
    "serving on http://127.0.0.1:0", a URL nothing can reach, and the chosen port was said nowhere."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--db", sqlite_url, "--no-auth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line)
        assert found and found.group(1) != "0", line
        # Not the test of a connection made at once (the next test is): this one is about the port.
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/health", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_serve_accepts_a_connection_the_moment_it_says_serving_on(sqlite_url: str) -> None:
    """A script (a container's readiness check, a test) that connects once it reads "serving on" got
    "connection refused": the line came before uvicorn listened on the sockets bound for it."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--db", sqlite_url, "--no-auth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line)
        assert found, line
        # One try, at once: the connection waits in the listen queue until the server takes it.
        with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/health", timeout=30) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_serve_says_each_schema_migration_step_and_nothing_when_there_is_none(sqlite_url: str) -> None:
    """Upgrading a big database can take minutes: serve printed nothing meanwhile, even with
    `--log-level info`, and looked hung."""
    from litelens.server.store.base import open_store

    old = open_store(sqlite_url)
    assert old.migrate(target=1) == 1  # as the first release left it
    latest = old.latest_version
    old.close()
    said = _serve_until_listening(sqlite_url)
    assert f"migrating store schema from version 1 to {latest}" in said, said
    steps = re.findall(r"migrated store schema to version (\d+) in \d+\.\d s", said)
    assert steps == [str(v) for v in range(2, latest + 1)], said
    # Started again on the upgraded database: no migration, no line about one.
    assert "schema" not in _serve_until_listening(sqlite_url)


def test_serve_against_a_server_that_never_answers_gives_up_and_says_so() -> None:
    """A PostgreSQL URL whose port takes the connection and never answers (a wrong port, a proxy, a
    firewall that drops packets): libpq waits for ever unless told otherwise, so `serve` hung at start
    with nothing said."""
    from litelens.server.store.pgwatch import CONNECT_TIMEOUT_S

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"postgresql://litelens@127.0.0.1:{silent.getsockname()[1]}/x"
        env = {k: v for k, v in os.environ.items() if k != "PGCONNECT_TIMEOUT"}
        started = time.monotonic()
        try:
            done = subprocess.run(
                [*CLI, "serve", "--port", str(free_port()), "--db", url],
                env=env,
                capture_output=True,
                text=True,
                timeout=CONNECT_TIMEOUT_S + 50,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("serve still waiting for the database after a minute")
    assert time.monotonic() - started >= CONNECT_TIMEOUT_S - 1, "it gave the server its time"
    _one_clear_line(done, "timeout expired", "is PostgreSQL running there?", "--db")


@pytest.mark.service
def test_serve_refused_by_postgresql_says_to_check_the_password(postgres_server: Any) -> None:
    import psycopg

    url = postgres_server.create_database()
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE litelens_pw LOGIN PASSWORD 'right'")
        # The test cluster trusts every local connection; this role alone must give its password.
        hba = postgres_server.data / "pg_hba.conf"
        hba.write_text("host all litelens_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    wrong = url.replace("postgres@", "litelens_pw:wrong@")
    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous
        done = cli("serve", "--port", str(free_port()), "--db", wrong, timeout=30)
        if "password" in done.stderr or time.monotonic() > deadline:
            break
    _one_clear_line(done, "password authentication failed", "check the user and password in --db")
    assert "wrong" not in done.stderr, "the password is not printed"


def test_retention_runs_soon_after_start_and_as_often_as_configured(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """The first pass came a whole interval (5 minutes) after start, and the interval could not be set:
    `--retention` could not be checked without waiting."""
    server = server_factory(sqlite_url, env={"LITELENS_RETENTION_EVERY": "1s"}, args=("--retention", "1d"))
    client = server.client()
    old = time.time() - 10 * 86400
    for name in ("old-1", "old-2"):  # the second one is for a later pass than the first
        records = [make_record(name, start=old), make_record(f"new-{name}")]
        assert client.post_json("/v1/events", {"records": records}).status == 200
        deadline = time.monotonic() + 15
        while client.get(f"/api/calls/{name}").status == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/api/calls/{name}").status == 404, f"{name} outlived the retention"
        assert client.get(f"/api/calls/new-{name}").status == 200


def test_a_revoked_key_stops_working_within_the_cache_ttl(sqlite_server: ServerProcess) -> None:
    client = sqlite_server.client()
    assert client.post_json("/v1/events", {"records": [make_record("before")]}).status == 200
    done = cli("keys", "revoke", sqlite_server.key, "--db", sqlite_server.db_url)
    assert done.returncode == 0, done
    deadline = time.monotonic() + 10  # the server was started with LITELENS_KEY_CACHE_TTL=0.5
    while client.get("/api/calls").status == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("/api/calls").status == 401
    assert client.post_json("/v1/events", {"records": [make_record("after")]}).status == 401
    assert cli("keys", "revoke", sqlite_server.key, "--db", sqlite_server.db_url).returncode == 1


def test_a_flood_of_made_up_keys_does_not_send_the_real_keys_back_to_the_database(sqlite_url: str) -> None:
    """Keys that exist and made-up ones shared one cache, emptied whenever it was full: a client trying
    random keys emptied it every 10,000 requests, and each real key's next request queried the database
    again. The made-up keys now fill only their own table."""
    from litelens.server.auth import KeyCache, create_key
    from litelens.server.store.base import open_store

    store = open_store(sqlite_url)
    try:
        store.migrate()
        key = create_key(store, "shop")
        lookups: list[str] = []
        lookup = store.project_for_key_hash

        def counted(digest: str) -> int | None:
            lookups.append(digest)
            return lookup(digest)

        store.project_for_key_hash = counted  # type: ignore[method-assign]
        cache = KeyCache(store, ttl_s=300, max_entries=100)
        project = cache.project_for(key)
        assert project is not None and len(lookups) == 1
        for i in range(250):
            assert cache.project_for(f"ll_made-up-{i}") is None
        assert len(lookups) == 251
        assert cache.project_for(key) == project
        assert len(lookups) == 251, "the real key was still cached"
        assert cache.project_for("ll_made-up-249") is None and len(lookups) == 251, "misses are cached too"
    finally:
        store.close()


def _idle_connection_closed_after(server: ServerProcess, idle_s: float) -> bool:
    """Whether the server closed a kept-alive connection that stayed idle for `idle_s` after an answer."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head
        time.sleep(idle_s)
        sock.settimeout(0.2)
        try:
            return sock.recv(65536) == b""
        except TimeoutError:
            return False  # still open: nothing came, not even the close


def test_how_long_an_idle_connection_is_kept_is_a_setting(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    """A load balancer reuses its idle connections to the collector for up to its own idle timeout (60 s
    on common ones); a collector that closes them first makes the balancer answer 502 now and then. The
    collector's keep-alive was fixed at uvicorn's 5 s: now `LITELENS_KEEP_ALIVE` sets it."""
    server = server_factory(sqlite_url, env={"LITELENS_KEEP_ALIVE": "1s"}, key=False)
    assert not _idle_connection_closed_after(server, 0.3)
    assert _idle_connection_closed_after(server, 2.0)
    for bad, says in (("0", "must be longer than 0"), ("soon", "is not a duration")):
        with pytest.raises(ValueError, match=says):
            ServerSettings.from_env({"LITELENS_KEEP_ALIVE": bad})
    assert ServerSettings.from_env({"LITELENS_KEEP_ALIVE": "75s"}).keep_alive_s == 75


def test_a_lost_key_is_revoked_by_the_prefix_keys_list_shows(sqlite_server: ServerProcess) -> None:
    db = ("--db", sqlite_server.db_url)
    listed = cli("keys", "list", "--project", "default", *db)
    assert listed.returncode == 0, listed
    prefix, when = re.fullmatch(r"(\S+)  created (.+)  last used .+", listed.stdout.strip()).groups()  # type: ignore[union-attr]
    assert sqlite_server.key.startswith(prefix.rstrip("…"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when), "a date, not epoch seconds"
    done = cli("keys", "revoke", prefix, *db)
    assert done.returncode == 0 and "revoked" in done.stdout, done
    listed = cli("keys", "list", "--project", "default", *db)
    assert listed.stdout == "" and "no keys" in listed.stderr, listed


def test_keys_list_shows_every_projects_keys_and_revoke_finds_a_prefix_in_any(sqlite_url: str) -> None:
    """Keys are made per project (`keys create --project shop`, as the quickstart does); a bare `keys
    list` then said "no project 'default'", and a prefix it cannot show could be revoked only with
    `--project`."""
    db = ("--db", sqlite_url)
    made = {name: cli("keys", "create", "--project", name, *db).stdout.strip() for name in ("shop", "blog")}
    listed = cli("keys", "list", *db)
    assert listed.returncode == 0, listed
    lines = dict(line.split("  ", 1) for line in listed.stdout.splitlines())
    assert set(lines) == {"shop", "blog"}
    for name, key in made.items():
        assert key.startswith(lines[name].split("…")[0]), (name, lines[name])
    only = cli("keys", "list", "--project", "blog", *db)
    assert only.stdout.count("\n") == 1 and made["blog"].startswith(only.stdout.split("…")[0]), only
    prefix = lines["blog"].split("  ")[0]
    done = cli("keys", "revoke", prefix, *db)
    assert done.returncode == 0 and "of project 'blog'" in done.stdout, done
    assert set(dict(line.split("  ", 1) for line in cli("keys", "list", *db).stdout.splitlines())) == {"shop"}
    assert cli("keys", "list", "--project", "nope", *db).returncode == 1


# --------------------------------------------------------------------------------------------------
# 5. Query API


def seed(client: Client, count: int = 60) -> list[dict[str, Any]]:
    t0 = time.time() - 600
    records = [
        make_record(
            f"q-{i:03d}",
            t0 + i,
            request_model=["gpt-4o", "gpt-4o-mini", "claude-3"][i % 3],
            status="error" if i % 5 == 0 else "ok",
            error={"type": "RateLimitError", "status_code": 429} if i % 5 == 0 else None,
            tags=["even"] if i % 2 == 0 else ["odd"],
            session_id=f"s{i % 4}",
            metadata={"team": "red" if i % 3 == 0 else "blue"},
            request={"messages": [{"role": "user", "content": f"needle-{i}" if i == 42 else "hay"}]},
        )
        for i in range(count)
    ]
    answer = client.post_json("/v1/events", {"records": records})
    assert answer.status == 200 and answer.json()["accepted"] == count, answer
    return records


def test_stats_of_a_large_group_never_read_a_percentile_past_its_slowest_call(
    db_project_server: ServerProcess,
) -> None:
    """Past the 300 calls an answer ranks exactly, a percentile is the middle of its histogram bin: a
    model's 350 streams of about 956 ms, the slowest 956.6 ms, answered p50/p95/p99 1002 ms (and their
    first tokens ~4.8% past the latest one), by model, by tag and in the whole range's one row."""
    client = db_project_server.client()
    hour = (int(time.time()) // 3600 - 1) * 3600  # the last whole hour
    low = math.exp((bin_of(1000.0) - 1) * math.log(1.1))  # the lower edge of the bin holding 1 s
    low_ttft = math.exp((bin_of(200.0) - 1) * math.log(1.1))
    records = []
    for i in range(350):
        step = 1.001 if i == 175 else 1 + 0.0001 * (i % 5)
        records.append(
            make_record(
                f"edge-{i}",
                hour + 5 + i * 10,
                duration_ms=low * step,
                end_time=hour + 5 + i * 10 + low * step / 1000,
                stream=True,
                ttft_ms=low_ttft * step,
                request_model="edge-model",
                response_model="edge-model",
                tags=["edge"],
            )
        )
    answer = client.post_json("/v1/events", {"records": records})
    assert answer.status == 200 and answer.json()["accepted"] == len(records), answer
    durations = [r["duration_ms"] for r in records]
    ttfts = [r["ttft_ms"] for r in records]
    for query in ("", "&group_by=model", "&group_by=tag", "&group_by=provider"):
        stats = client.get_json(f"/api/stats?start={hour}&end={hour + 3600}&bucket=3600{query}")
        [row] = stats["rows"]
        assert row["count"] == 350
        for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
            assert min(durations) <= row[name] <= max(durations), (query, name, row[name], max(durations))
        for name in ("ttft_p50_ms", "ttft_p95_ms"):
            assert min(ttfts) <= row[name] <= max(ttfts), (query, name, row[name], max(ttfts))


def test_sessions_and_stats_of_unpriced_calls_have_no_cost_rather_than_a_cost_of_zero(
    db_project_server: ServerProcess,
) -> None:
    """A call LiteLLM could not price has `cost_usd` null; a session or a bucket of such calls answered
    cost 0, as if they had been free. Now: null where no call had a price, the priced calls' sum (and how
    many) where some had, also when a later report of a call brings the price it lacked."""
    client = db_project_server.client()
    hour = (int(time.time()) // 10800 - 1) * 10800  # three whole hours, one 3-hour bucket, before now

    def call(call_id: str, start: float, model: str = "gpt-4o-mini", **over: Any) -> dict[str, Any]:
        return make_record(call_id, start, request_model=model, response_model=model, **over)

    free = [
        call(f"free-{i}", hour + 60 + i, model="local-llm", session_id="s-free", tags=["free"])
        for i in range(3)
    ]
    mixed = [
        call("mixed-0", hour + 3600 + 60, session_id="s-mixed", cost_usd=0.002),
        call("mixed-1", hour + 3600 + 70, session_id="s-mixed", cost_usd=0.003),
        call("mixed-2", hour + 3600 + 80, session_id="s-mixed", model="local-llm"),
    ]
    late = call("late", hour + 7200 + 60, session_id="s-late", model="later-priced")
    for batch in (free, mixed, [late], [dict(late, cost_usd=0.01)]):  # the price comes with a later copy
        answer = client.post_json("/v1/events", {"records": batch})
        assert answer.status == 200 and answer.json()["accepted"] == len(batch), answer

    window = f"start={hour}&end={hour + 3 * 3600}"
    sessions = {
        s["session_id"]: (s["calls"], s["cost_usd"], s["priced_calls"])
        for s in client.get_json(f"/api/sessions?{window}")["sessions"]
    }
    assert sessions == {
        "s-free": (3, None, 0),
        "s-mixed": (3, pytest.approx(0.005), 2),
        "s-late": (1, pytest.approx(0.01), 1),
    }
    for session_id, cost, priced in [("s-free", None, 0), ("s-mixed", pytest.approx(0.005), 2)]:
        totals = client.get_json(f"/api/sessions/{session_id}")["totals"]
        assert (totals["calls"], totals["cost_usd"], totals["priced_calls"]) == (3, cost, priced)

    rows = client.get_json(f"/api/stats?{window}&bucket=3600")["rows"]
    assert [(r["bucket"], r["count"], r["cost_usd"], r["priced_calls"]) for r in rows] == [
        (hour, 3, None, 0),
        (hour + 3600, 3, pytest.approx(0.005), 2),
        (hour + 7200, 1, pytest.approx(0.01), 1),
    ]
    [whole] = client.get_json(f"/api/stats?{window}&bucket={3 * 3600}")["rows"]
    assert (whole["count"], whole["cost_usd"], whole["priced_calls"]) == (7, pytest.approx(0.015), 3)
    by_model = {
        r["group"]: (r["count"], r["cost_usd"], r["priced_calls"])
        for r in client.get_json(f"/api/stats?{window}&bucket={3 * 3600}&group_by=model")["rows"]
    }
    assert by_model == {
        "local-llm": (4, None, 0),
        "gpt-4o-mini": (2, pytest.approx(0.005), 2),
        "later-priced": (1, pytest.approx(0.01), 1),
    }
    [tag] = client.get_json(f"/api/stats?{window}&bucket=3600&group_by=tag")["rows"]
    assert (tag["group"], tag["cost_usd"], tag["priced_calls"]) == ("free", None, 0)


def test_the_apis_default_windows_hold_a_call_stamped_ahead_of_the_collectors_clock(
    project_server: ServerProcess,
) -> None:
    """The dashboard's ranges have no end, so a call from a client whose clock runs fast is counted and
    listed there; `/api/stats` stopped at now and `/api/sessions` at now + 60 s, so for the same range
    the API left that call out."""
    client = project_server.client()
    now = time.time()
    records = [
        make_record("on-time", now - 60, session_id="on-time-session"),
        make_record("ahead", now + 2 * 3600, session_id="ahead-session", status="error"),
    ]
    answer = client.post_json("/v1/events", {"records": records})
    assert answer.status == 200 and answer.json()["accepted"] == 2, answer

    sessions = client.get_json("/api/sessions")["sessions"]
    assert [s["session_id"] for s in sessions] == ["ahead-session", "on-time-session"]
    stats = client.get_json("/api/stats?bucket=3600")
    assert (sum(r["count"] for r in stats["rows"]), sum(r["errors"] for r in stats["rows"])) == (2, 1)
    assert stats["end"] >= now + 2 * 3600  # the answer's window holds the rows it gives
    # An end given still ends the window; a start given alone runs on from it.
    assert sum(r["count"] for r in client.get_json(f"/api/stats?end={now}")["rows"]) == 1
    assert sum(r["count"] for r in client.get_json(f"/api/stats?start={now - 600}")["rows"]) == 2
    assert [s["session_id"] for s in client.get_json(f"/api/sessions?end={now}")["sessions"]] == [
        "on-time-session"
    ]


def test_sessions_say_whose_they_are_and_are_found_by_user_over_http(
    db_project_server: ServerProcess,
) -> None:
    """The sessions list named no user, so "the conversation user X had this morning" could not be found
    from it. Each session now says its user (its earliest call's end user, else user id) and how many
    users it had; `?user=` finds the sessions in which that user made any call, by the name as the app
    sent it (cut as stored), and a misspelt `?username=` is refused rather than ignored."""
    client = db_project_server.client()
    now = time.time()
    rng = random.Random(13)
    long_user = "".join(rng.choices(string.ascii_letters, k=300))
    records = [
        make_record("m-1", now - 300, session_id="morning", end_user="alice@example.com"),
        make_record("m-2", now - 250, session_id="morning", user_id="support-bot"),
        make_record("m-3", now - 200, session_id="morning", end_user="alice@example.com"),
        make_record("e-1", now - 100, session_id="evening", user_id="bob"),
        make_record("l-1", now - 50, session_id="long", end_user=long_user),
        make_record("n-1", now - 10, session_id="nobody"),
    ]
    answer = client.post_json("/v1/events", {"records": records})
    assert answer.status == 200 and answer.json()["accepted"] == len(records), answer

    listed = {s["session_id"]: (s["user"], s["users"]) for s in client.get_json("/api/sessions")["sessions"]}
    assert listed == {
        "morning": ("alice@example.com", 2),
        "evening": ("bob", 1),
        "long": (long_user[:256], 1),
        "nobody": (None, 0),
    }
    for user, expected in [
        ("alice@example.com", ["morning"]),
        ("support-bot", ["morning"]),  # joined the session, did not start it
        ("bob", ["evening"]),
        (long_user, ["long"]),  # as the app sent it: compared cut, as stored
        ("carol", []),
    ]:
        got = client.get_json(f"/api/sessions?user={urllib.parse.quote(user)}")["sessions"]
        assert [s["session_id"] for s in got] == expected, user[:20]
    totals = client.get_json("/api/sessions/morning")["totals"]
    assert (totals["user"], totals["users"], totals["calls"]) == ("alice@example.com", 2, 3)

    # PostgreSQL text holds no NUL: such a user matches nothing rather than failing the query (a 503).
    assert client.get_json("/api/sessions?user=alice%00")["sessions"] == []
    absurd = client.get(f"/api/sessions?user={'x' * 9000}")
    assert absurd.status == 422 and "user (query)" in absurd.json()["error"], absurd
    misspelt = client.get("/api/sessions?username=bob")
    assert misspelt.status == 422 and "'username'" in misspelt.json()["error"], misspelt


def test_filters_and_cursor_pages_over_http(project_server: ServerProcess) -> None:
    client = project_server.client()
    records = seed(client)

    def ids(query: str) -> set[str]:
        return {c["call_id"] for c in client.get_json(f"/api/calls?limit=1000&{query}")["calls"]}

    def expect(pred: Callable[[int], bool]) -> set[str]:
        return {r["call_id"] for i, r in enumerate(records) if pred(i)}

    assert ids("model=gpt-4o") == expect(lambda i: i % 3 == 0)
    assert ids("status=error") == expect(lambda i: i % 5 == 0)
    assert ids("tag=even") == expect(lambda i: i % 2 == 0)
    assert ids("session_id=s1") == expect(lambda i: i % 4 == 1)
    assert ids("meta=team%3Dred") == expect(lambda i: i % 3 == 0)
    assert ids("q=needle-42") == {"q-042"}
    assert ids("model=claude-3&status=error&tag=even") == expect(lambda i: i % 3 == 2 and i % 10 == 0)
    assert client.get("/api/calls?status=bogus").status == 422
    assert client.get("/api/calls?meta=novalue").status == 400

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=7&model=gpt-4o-mini" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = client.get_json(f"/api/calls?{query}")
        seen += [c["call_id"] for c in page["calls"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(expect(lambda i: i % 3 == 1), reverse=True), "newest first, each call once"
    assert pages == 3
    assert client.get("/api/calls?cursor=garbage").status == 400


def test_calls_and_sessions_with_long_ids_of_any_script_page_to_the_end(
    db_project_server: ServerProcess,
) -> None:
    """Ingest takes call and session ids of up to 256 characters, of any script; the next page's cursor
    carries the last id, and with one of ~100 CJK or accented letters it was longer than the API took
    back: the list stopped at its first page with a 422."""
    client = db_project_server.client()
    now = time.time()
    session = "会話" * 128  # 256 characters: as long as ingest keeps
    ids = [f"{i:02d}-" + ("日本語" * 90)[:250] for i in range(5)] + [
        f"{i:02d}-" + "é\\"[i % 2] * 250 for i in range(5, 9)
    ]
    records = [
        make_record(call_id, now, session_id=session if i < 3 else call_id) for i, call_id in enumerate(ids)
    ]
    assert client.post_json("/v1/events", {"records": records}).json()["accepted"] == len(ids)

    def walk(path: str, rows: str, key: str, **params: Any) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            query = urllib.parse.urlencode({**params, **({"cursor": cursor} if cursor else {})})
            answer = client.get(f"{path}?{query}")
            assert answer.status == 200, answer
            seen += [row[key] for row in answer.json()[rows]]
            cursor = answer.json()["next_cursor"]
            if not cursor:
                return seen

    for sort in ("start_time", "duration_ms", "cost_usd"):
        assert walk("/api/calls", "calls", "call_id", limit=2, sort=sort, order="asc") == sorted(ids), sort
    sessions = walk("/api/sessions", "sessions", "session_id", limit=1)
    assert sorted(sessions) == sorted([session, *ids[3:]])
    assert walk(f"/api/sessions/{urllib.parse.quote(session)}", "calls", "call_id", limit=1) == sorted(
        ids[:3]
    )


def test_a_proxy_requests_call_id_leads_to_its_later_attempts(project_server: ServerProcess) -> None:
    """After a proxy's fallback, the call id the client got (`x-litellm-call-id`) is the failed first
    attempt's; the answer for it lists every attempt, so the one that answered the client is a click away
    (the core layer records later attempts as `<id>:2`, `<id>:3`)."""
    client = project_server.client()
    now = time.time()
    records = [
        make_record("fb-1", now, status="error", error={"type": "InternalServerError", "status_code": 500}),
        make_record("fb-1:2", now + 0.1),
        make_record("order:2", now),  # a caller's own id that only looks like a later attempt
    ]
    assert client.post_json("/v1/events", {"records": records}).json()["accepted"] == 3
    expected = [{"call_id": "fb-1", "status": "error"}, {"call_id": "fb-1:2", "status": "ok"}]
    assert client.get_json("/api/calls/fb-1")["attempts"] == expected
    assert client.get_json("/api/calls/fb-1:2")["attempts"] == expected
    assert "attempts" not in client.get_json("/api/calls/order:2")
    assert "attempts" not in client.get_json(f"/api/calls/{seed(client, 1)[0]['call_id']}")


def test_an_sdk_router_requests_attempts_are_found_in_its_trace(project_server: ServerProcess) -> None:
    """An SDK Router's attempts have call ids of their own; a retry names the first in `first_attempt_id`.
    Any of them lists the request's attempts, and no other Router call of the trace (a session's)."""
    client = project_server.client()
    now = time.time()
    trace = "ab" * 16
    routed = {"trace_id": trace, "model_group": "main"}
    records = [
        make_record("r-1", now, status="error", **routed),
        make_record("other", now + 0.05, **routed),  # the session's next request, answered at once
        make_record("r-2", now + 0.1, status="error", first_attempt_id="r-1", **routed),
        make_record("r-3", now + 0.2, first_attempt_id="r-1", **{**routed, "model_group": "backup"}),
        make_record("s-2", now + 0.3, first_attempt_id="s-1", **routed),  # its first attempt was not kept
    ]
    assert client.post_json("/v1/events", {"records": records}).json()["accepted"] == 5
    expected = [
        {"call_id": "r-1", "status": "error"},
        {"call_id": "r-2", "status": "error"},
        {"call_id": "r-3", "status": "ok"},
    ]
    for call_id in ("r-1", "r-2", "r-3"):
        assert client.get_json(f"/api/calls/{call_id}")["attempts"] == expected
    assert "attempts" not in client.get_json("/api/calls/other")
    assert "attempts" not in client.get_json("/api/calls/s-2")


def test_export_streams_every_filtered_call_and_openapi_lists_the_routes(
    project_server: ServerProcess,
) -> None:
    client = project_server.client()
    records = seed(client, 1200)  # more than one store page
    answer = client.get("/api/export?format=jsonl&tag=even")
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answer.body.splitlines()]
    assert [r["call_id"] for r in lines] == [r["call_id"] for r in records if "even" in r["tags"]]
    assert lines[0]["request"]["messages"] == records[0]["request"]["messages"], "full records"
    answer = client.get("/api/export?format=csv&status=error")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert [r["call_id"] for r in rows] == [r["call_id"] for r in records if r["status"] == "error"]
    assert {r["error_type"] for r in rows} == {"RateLimitError"}
    assert rows[0]["input_tokens"] == "3" and rows[0]["tags"] == "even"

    document = client.get_json("/openapi.json", key=None)
    assert document["openapi"].startswith("3.")
    assert {
        "/v1/events",
        "/v1/traces",
        "/api/calls",
        "/api/calls/{call_id}",
        "/api/export",
        "/api/stats",
    } <= set(document["paths"])
    assert {"/api/traces/{trace_id}", "/api/sessions", "/api/sessions/{session_id}"} <= set(document["paths"])


def test_an_export_during_ingest_has_every_call_of_its_start_once(db_project_server: ServerProcess) -> None:
    """Calls stored again with another start time while an export streams (a call's OTel span and its
    core record disagree by a few ms): one moved past the export's position was in the file twice, one
    moved before it was missing. The export is the calls as they were when it began, each once."""
    client = db_project_server.client()
    now = time.time() - 3600
    pad = {"pad": "x" * 20_000}  # 50 MB in all: far more than the socket buffers hold ahead of the reader
    records = [make_record(f"e{i:04d}", now + i * 0.001, metadata=pad) for i in range(2500)]
    for i in range(0, len(records), 100):
        assert client.post_json("/v1/events", {"records": records[i : i + 100]}).status == 200
    conn = http.client.HTTPConnection(db_project_server.host, db_project_server.port, timeout=60)
    try:
        conn.request(
            "GET", "/api/export?format=jsonl", headers={"Authorization": f"Bearer {db_project_server.key}"}
        )
        answer = conn.getresponse()
        assert answer.status == 200
        exported = [json.loads(answer.readline())["call_id"]]
        moved = [
            make_record("e0000", now + 10, metadata=pad),  # exported, now the latest call
            make_record("e2499", now - 10, metadata=pad),  # not yet exported, now the earliest
            make_record("new-1", now + 1, metadata=pad),  # stored after the export began
        ]
        assert client.post_json("/v1/events", {"records": moved}).status == 200
        exported += [json.loads(line)["call_id"] for line in answer.read().splitlines()]
    finally:
        conn.close()
    assert exported == [r["call_id"] for r in records]


def test_exports_the_client_abandons_give_their_database_connections_back(
    db_project_server: ServerProcess,
) -> None:
    """An export reads in one transaction on a connection of its own; a client that hung up mid-download
    left it open (on PostgreSQL "idle in transaction", holding a connection slot and vacuum back), one
    more with every abandoned download."""
    server = db_project_server
    client = server.client()
    pad = {"pad": "x" * 5_000}
    records = [make_record(f"a{i:04d}", time.time() - 3600 + i, metadata=pad) for i in range(2000)]
    for i in range(0, len(records), 250):
        assert client.post_json("/v1/events", {"records": records[i : i + 250]}).status == 200

    def held() -> int:
        """Read transactions the server holds open (on SQLite: 1 when one blocks a checkpoint)."""
        if server.db_url.startswith("sqlite"):
            # A read transaction left open keeps the WAL from being checkpointed to its end (and
            # truncated): the checkpoint says it was blocked.
            with contextlib.closing(sqlite3.connect(server.db_url.removeprefix("sqlite://"))) as db:
                return int(db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
        import psycopg

        with psycopg.connect(server.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction'"
            ).fetchone()
            return int(row[0]) if row else 0

    # The server's pools opened as many connections as they keep (a full export, several reads at once).
    assert len(client.get("/api/export").body.splitlines()) == len(records)
    threads = [
        threading.Thread(target=server.client().get, args=("/api/calls?limit=1000",)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    before = held()
    for _ in range(3):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", "/api/export?format=csv", headers={"Authorization": f"Bearer {server.key}"})
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read(10_000)
        conn.close()
    deadline = time.monotonic() + 5
    while held() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held() == before
    assert len(client.get("/api/export").body.splitlines()) == len(records), "exports still work"


def test_csv_export_defuses_spreadsheet_formulas_and_keeps_quotes_newlines_and_unicode(
    project_server: ServerProcess,
) -> None:
    client = project_server.client()
    t0 = time.time() - 60
    records = [
        make_record(
            "f-1",
            t0,
            end_user='=HYPERLINK("http://x")',
            user_id="+1 555",
            status="error",
            error={"type": "-Boom\nline two", "message": "m"},
            tags=["@ops", "a,b"],
        ),
        make_record("f-2", t0 + 1, end_user='José "J" Ünal', request_model="@model", session_id="-s"),
    ]
    assert client.post_json("/v1/events", {"records": records}).status == 200
    answer = client.get("/api/export?format=csv")
    assert answer.status == 200
    rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert [r["call_id"] for r in rows] == ["f-1", "f-2"]
    assert rows[0]["end_user"] == '\'=HYPERLINK("http://x")'
    assert rows[0]["user_id"] == "'+1 555"
    assert rows[0]["error_type"] == "'-Boom\nline two"
    assert rows[0]["tags"] == "'@ops;a,b"
    assert rows[1]["end_user"] == 'José "J" Ünal'
    assert (rows[1]["request_model"], rows[1]["session_id"]) == ("'@model", "'-s")
    assert rows[0]["start_time"] == str(t0), "numbers are written as they are"
    # The JSON lines export is the data as stored, with no such prefix.
    lines = [json.loads(line) for line in client.get("/api/export?format=jsonl").body.splitlines()]
    assert lines[0]["end_user"] == records[0]["end_user"]


def test_csv_export_defuses_a_formula_after_a_semicolon_for_spreadsheets_that_split_there(
    project_server: ServerProcess,
) -> None:
    """Excel in much of Europe opens a .csv with `;` as its separator: a comma-separated line is split
    at each `;`, quotes or not, and a cell starting there with `=` ran as a formula. Tags are joined with
    `;`, so a second tag `=HYPERLINK(...)` was such a cell."""
    client = project_server.client()
    record = make_record(
        "semi-1",
        tags=["ok", '=HYPERLINK("http://evil.example","x")'],
        end_user="ann; +1 555",
        request_model='m;"@SUM(A1)"',
    )
    assert client.post_json("/v1/events", {"records": [record]}).status == 200
    body = client.get("/api/export?format=csv").body.decode()
    for line in body.splitlines():
        for cell in next(csv.reader([line], delimiter=";")):
            assert not cell.lstrip(' "').startswith(("=", "+", "-", "@", "\t", "\r")), (cell, line)
    (row,) = csv.DictReader(io.StringIO(body))  # the comma-separated reading keeps every text
    assert row["tags"] == 'ok;\'=HYPERLINK("http://evil.example","x")'
    assert (row["end_user"], row["request_model"]) == ("ann;' +1 555", 'm;\'"@SUM(A1)"')
    lines = [json.loads(line) for line in client.get("/api/export?format=jsonl").body.splitlines()]
    assert (lines[0]["tags"], lines[0]["end_user"]) == (record["tags"], record["end_user"])


# --------------------------------------------------------------------------------------------------
# 9. The CLI against the real server


def test_doctor_export_and_tail_never_print_a_password_or_token_of_the_endpoint(
    sqlite_server: ServerProcess,
) -> None:
    """Doctor's output is what users paste into an issue: an endpoint behind basic auth or with a token
    in its query was printed as configured, password included (and by export and tail too)."""
    port = sqlite_server.url.rsplit(":", 1)[1]
    env = {"LITELENS_API_KEY": sqlite_server.key}
    for where in (port, str(free_port())):  # a server that answers, then one that is not there
        endpoint = f"http://ops:Pa55word-9x7@127.0.0.1:{where}/?token=Tok3n-8c6v"
        commands = [("doctor", "--endpoint", endpoint), ("export", "--since", "1m", "--endpoint", endpoint)]
        if where != port:  # (tail follows a server that answers until stopped)
            commands.append(("tail", "--server", endpoint))
        for command in commands:
            done = cli(*command, env=env)
            printed = done.stdout + done.stderr
            if command[0] != "export":
                assert "127.0.0.1" in printed, printed
            assert "Pa55word" not in printed and "Tok3n" not in printed, (command, printed)


def test_doctor_export_and_tail_join_their_paths_to_an_endpoint_with_a_slash_and_a_query(
    sqlite_server: ServerProcess,
) -> None:
    """`http://host:port/?token=abc`: the doctor asked for `/?token=abc/health` (the dashboard's `/`) and
    then posted to `//v1/events`, which no server has (404), as did the callback; export asked for
    `/?token=abc/api/export?...`."""
    env = {"LITELENS_API_KEY": sqlite_server.key}
    for endpoint in (f"{sqlite_server.url}/?token=abc", f"{sqlite_server.url}/v1/events/?token=abc"):
        done = cli("doctor", "--endpoint", endpoint, env=env)
        assert done.returncode == 0 and "test record was stored" in done.stdout, done
        assert "//" not in done.stdout.replace("://", ""), done.stdout
        done = cli("export", "--since", "1m", env={**env, "LITELENS_ENDPOINT": endpoint})
        assert done.returncode == 0 and done.stdout.count("litelens-doctor") >= 1, done
    tail = subprocess.Popen(
        [*CLI, "tail", "--server", f"{sqlite_server.url}/?token=abc", "--since", "1m"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        assert "litelens-doctor" in tail.stdout.readline()
    finally:
        tail.terminate()
        tail.communicate(timeout=30)


def test_a_token_in_the_endpoints_query_goes_on_every_request_and_is_never_printed(
    sqlite_server: ServerProcess, tmp_path: Path
) -> None:
    """`LITELENS_ENDPOINT=https://gw.example/litelens?token=...` for a gateway that checks a query token:
    the sender posted to `/litelens/v1/events` without it, as doctor, export and tail asked without it,
    and the gateway refused them all."""
    token = "Tok3n-gw-7f"
    gateway = TokenGateway(sqlite_server.url, "/litelens", token)
    env = {"LITELENS_API_KEY": sqlite_server.key, "LITELENS_ENDPOINT": gateway.url}
    tail: subprocess.Popen[str] | None = None
    try:
        transport = Transport(
            TransportConfig(
                endpoint=gateway.url, api_key=sqlite_server.key, spool_dir=str(tmp_path / "spool")
            )
        )
        transport.submit(
            make_record("through-the-gateway", request_model="sent-model", response_model="sent-model")
        )
        assert transport.flush(10) and transport.stats()["sent"] == 1, transport.stats()
        assert transport.shutdown(5)
        doctor = cli("doctor", env=env)
        assert doctor.returncode == 0 and "test record was stored" in doctor.stdout, doctor
        # `--filter` and the export's own parameters go along with the token: only the sender's call.
        export = cli("export", "--since", "1h", "--filter", "model=sent-model", env=env)
        assert export.returncode == 0, export
        assert [json.loads(line)["call_id"] for line in export.stdout.splitlines()] == ["through-the-gateway"]
        tail = subprocess.Popen(
            [*CLI, "tail", "--server", gateway.url, "--since", "1h"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert tail.stdout is not None
        assert "sent-model" in tail.stdout.readline() + tail.stdout.readline()
    finally:
        if tail is not None:
            tail.terminate()
            tail.communicate(timeout=30)
        gateway.close()
    routes = {urllib.parse.urlsplit(path).path for path in gateway.paths}
    assert routes == {f"/litelens{r}" for r in ("/v1/events", "/health", "/api/export", "/api/calls")}
    refused = [path for path in gateway.paths if f"token={token}" not in path]
    assert not refused, refused
    for done in (doctor, export):
        assert token not in done.stdout + done.stderr, done


def test_doctor_and_export_commands(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    env = {"LITELENS_ENDPOINT": sqlite_server.url, "LITELENS_API_KEY": sqlite_server.key}
    done = cli("doctor", env=env)
    assert done.returncode == 0, done
    assert "ok    server reachable" in done.stdout and "test record was stored" in done.stdout
    done = cli("doctor", env={**env, "LITELENS_API_KEY": "ll_wrong"})
    assert done.returncode == 1 and "refused the API key (401)" in done.stdout, done
    done = cli("doctor", "--endpoint", f"http://127.0.0.1:{free_port()}", env=env)
    assert done.returncode == 1 and "cannot reach the server" in done.stdout, done
    # The endpoint as the callback takes it, with its ingest path (as OTLP settings are written): the
    # doctor asked {endpoint}/health, got 404 and blamed the server; export asked .../v1/events/api/export.
    with_path = {**env, "LITELENS_ENDPOINT": sqlite_server.url + "/v1/events"}
    done = cli("doctor", env=with_path)
    assert done.returncode == 0 and "test record was stored" in done.stdout, done
    done = cli("export", "--since", "1m", env=with_path)
    assert done.returncode == 0 and done.stdout.count("\n") == 2, done
    # The test call costs nothing, and says so: with no cost it was an unpriced call, and every overview
    # of a project the doctor had checked said "N of N+1 calls priced".
    probes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(p.get("status"), p.get("cost_usd")) for p in probes] == [("ok", 0.0)] * 2, probes
    window = f"start={time.time() - 3600}&end={time.time() + 60}&bucket=7200&group_by=model"
    rows = sqlite_server.client().get_json(f"/api/stats?{window}")["rows"]
    (doctor,) = [r for r in rows if r["group"] == "litelens-doctor"]
    assert (doctor["count"], doctor["priced_calls"], doctor["cost_usd"]) == (2, 2, 0.0), doctor

    client = sqlite_server.client()
    seed(client, 30)
    done = cli("export", "--filter", "tag=even", env=env)
    assert done.returncode == 0, done
    exported = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(exported) == 15 and all(r["tags"] == ["even"] for r in exported)
    out = tmp_path / "calls.csv"
    done = cli("export", "--format", "csv", "--filter", "model=claude-3", "-o", str(out), env=env)
    assert done.returncode == 0, done
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 and {r["request_model"] for r in rows} == {"claude-3"}
    done = cli("export", "--since", "1m", env=env)
    assert done.returncode == 0 and done.stdout.count("\n") == 2, "only the doctor's probes are that recent"
    done = cli("export", env={**env, "LITELENS_API_KEY": "ll_wrong"})
    assert done.returncode == 1 and "401" in done.stderr, done
    done = cli("export", "--filter", "nonsense", env=env)
    assert done.returncode == 2 and "name=value" in done.stderr


def test_export_and_doctor_say_what_is_wrong(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    from litelens import server_cli
    from litelens.server.api import call_filter

    assert {*server_cli._EXPORT_FILTERS, "start"} == set(inspect.signature(call_filter).parameters)
    env = {"LITELENS_ENDPOINT": sqlite_server.url, "LITELENS_API_KEY": sqlite_server.key}
    client = sqlite_server.client()
    assert (
        client.post_json("/v1/events", {"records": [make_record(f"e-{i}") for i in range(2000)]}).status
        == 200
    )
    # A misspelt filter name exported every call; now it is refused.
    done = cli("export", "--filter", "modle=gpt-4o", env=env)
    assert (done.returncode, done.stdout) == (2, ""), done
    assert "'modle'" in done.stderr and "model" in done.stderr
    for args in (("export", "--since", "lately"), ("export", "-o", str(tmp_path / "no" / "x.jsonl"))):
        done = cli(*args, env=env)
        assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr, done
    # A refused export leaves yesterday's file at that path as it was (it was emptied).
    previous = tmp_path / "calls.jsonl"
    previous.write_text("yesterday\n")
    done = cli("export", "-o", str(previous), env={**env, "LITELENS_API_KEY": "ll_wrong"})
    assert done.returncode == 1 and "401" in done.stderr, done
    assert previous.read_text() == "yesterday\n" and not list(tmp_path.glob("*.part"))
    assert cli("export", "-o", str(previous), env=env).returncode == 0
    assert len(previous.read_text().splitlines()) == 2000
    done = cli("doctor", "--endpoint", sqlite_server.url.removeprefix("http://"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "http://" in done.stdout, done
    # `litelens export | head -1`: the reader leaving is no error.
    with subprocess.Popen(
        [*CLI, "export"], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as export:
        assert export.stdout is not None and export.stderr is not None
        assert export.stdout.readline().startswith(b"{")
        export.stdout.close()
        assert export.wait(30) == 0 and export.stderr.read() == b""


def test_export_doctor_and_tail_print_no_credential_a_gateway_echoes_in_its_error_page() -> None:
    """A gateway that echoes the request URL in its error page put the endpoint's query token (sent on
    every request) on the terminal: `export` printed 300 bytes of the answer, `doctor` and `tail` 200.
    What they print of it now has the endpoint's credentials taken out: a credential-named parameter's
    and any other value of the endpoint's query (a gateway may name its token as it likes), the key;
    so has the endpoint they name, which showed a token not named like one (`?code=`)."""
    token, code, key = "gw-T0ken-4471", "Zq9x8Y7w6vU5", "gatewaykey-90210"
    gateway = EchoingGateway(502)
    try:
        env = {"LITELENS_ENDPOINT": f"{gateway.url}/gw?token={token}&code={code}", "LITELENS_API_KEY": key}
        export = cli("export", env=env)
        doctor = cli("doctor", env=env)
        gateway.status = 500  # tail waits out a 502, and prints the answer of a server that failed
        tail = cli("tail", "--interval", "0.1", env=env, timeout=30)
    finally:
        gateway.close()
    for done, printed, says in (
        (export, export.stderr, "server answered 502: Bad gateway: GET /gw/api/export?"),
        (doctor, doctor.stdout, "FAIL  sending a test record: 502 Bad gateway: POST /gw/v1/events?"),
        (tail, tail.stderr, "answered 500: 'Bad gateway: GET /gw/api/calls?"),
    ):
        assert done.returncode == 1 and says in printed, done
        (answer,) = [line for line in printed.splitlines() if "Bad gateway" in line]
        assert "token=[REDACTED]" in answer and "code=[REDACTED]" in answer, answer
        # Nor anywhere else it prints (the endpoint it names, too).
        assert all(s not in done.stdout + done.stderr for s in (token, code, key)), done


def test_printing_commands_end_quietly_when_the_reader_has_left(sqlite_server: ServerProcess) -> None:
    """`litelens keys list | head -1`: a reader that closed the pipe is no error, as for `export`, whichever
    command printed (one guard covers them all; `demo`, which printed a traceback, is left out for its
    time)."""
    env = {**os.environ, "LITELENS_ENDPOINT": sqlite_server.url, "LITELENS_API_KEY": sqlite_server.key}
    commands = [
        ("keys", "list", "--db", sqlite_server.db_url),
        ("keys", "create", "--project", "piped", "--db", sqlite_server.db_url),
        ("doctor",),
        ("fake-provider",),
    ]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        running = [
            subprocess.Popen([*CLI, *args], env=env, stdout=write_end, stderr=subprocess.PIPE)
            for args in commands
        ]
    finally:
        os.close(write_end)
    for args, proc in zip(commands, running, strict=True):
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err.decode()) == (0, ""), args


def test_fake_provider_and_receiver_help_shows_every_option_they_take() -> None:
    """`litelens fake-provider --help` showed only --host and --port, from a copy of its options in the
    top-level parser: the --set it takes (a latency or an error for every request) was hidden, and so
    was the receiver's --api-key."""
    fake = cli("fake-provider", "--help")
    assert fake.returncode == 0 and "--set KEY=VALUE" in fake.stdout and "api_base" in fake.stdout, fake
    receiver = cli("receiver", "--help")
    assert receiver.returncode == 0 and "--api-key" in receiver.stdout, receiver
    # doctor's options said nothing of the variables they stand in for, nor export's --since its default.
    doctor = cli("doctor", "--help")
    assert "LITELENS_ENDPOINT" in doctor.stdout and "LITELENS_API_KEY" in doctor.stdout, doctor
    assert "default 24h" in cli("export", "--help").stdout
    port = free_port()
    with subprocess.Popen(
        [*CLI, "fake-provider", "--port", str(port), "--set", "latency_ms=1"],
        stdout=subprocess.PIPE,
        text=True,
    ) as served:
        assert served.stdout is not None
        try:
            assert served.stdout.readline().strip() == f"http://127.0.0.1:{port}/v1"
        finally:
            served.terminate()
        assert served.wait(30) == 0


def test_receiver_stops_quietly_when_the_reader_has_left() -> None:
    """`litelens receiver | head -3`: once the reader is gone, the receiver ends (status 0), quietly; it
    went on running and hung up on every batch after, which the sender retried forever."""
    port = free_port()
    with subprocess.Popen(
        [*CLI, "receiver", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as receiver:
        assert receiver.stdout is not None and receiver.stderr is not None
        assert b"listening" in receiver.stdout.readline()
        receiver.stdout.close()
        for i in range(2):
            batch = {"schema": "litelens.batch/1", "records": [make_record(f"piped-{i}")]}
            body = json.dumps(batch).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/events", body, {"Content-Type": "application/json"}
            )
            with contextlib.suppress(OSError):  # the second may find it gone already
                urllib.request.urlopen(request, timeout=10).close()
        try:
            status = receiver.wait(15)
        finally:
            if receiver.poll() is None:
                receiver.kill()
        assert (status, receiver.stderr.read().decode()) == (0, "")


# --------------------------------------------------------------------------------------------------
# 7 and 10. Signals: what was acknowledged survives SIGKILL, and SIGTERM is a clean exit


class Sender(threading.Thread):
    """Streams batches of fresh records until the server goes away; notes every acknowledged call id."""

    def __init__(self, server: ServerProcess, prefix: str, batch: int = 40) -> None:
        super().__init__(daemon=True)
        self.client = Client(server.url, server.key, timeout=10)
        self.prefix = prefix
        self.batch = batch
        self.acked: set[str] = set()
        self.batches = 0
        self.refused: list[Response] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            records = [make_record(f"{self.prefix}-{n + i}") for i in range(self.batch)]
            n += self.batch
            try:
                answer = self.client.post_json("/v1/events", {"records": records})
            except OSError:
                return  # the server is gone: those records were never acknowledged
            if answer.status != 200:
                self.refused.append(answer)
                return
            assert answer.json()["accepted"] == self.batch
            self.acked.update(r["call_id"] for r in records)
            self.batches += 1

    def wait_for(self, batches: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.batches < batches and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.batches >= batches, f"only {self.batches} batches acknowledged"


def stored_ids(server: ServerProcess) -> list[str]:
    answer = server.client().get("/api/export?format=jsonl")
    assert answer.status == 200, answer
    return [json.loads(line)["call_id"] for line in answer.body.splitlines()]


def test_every_acknowledged_batch_survives_sigkill(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    server = server_factory(sqlite_url)
    senders = [Sender(server, f"w{i}") for i in range(2)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.wait_for(10)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)  # mid-stream: both senders have requests in flight
    server.proc.wait(10)
    for sender in senders:
        sender.join(15)
        assert not sender.is_alive()
    acked = set().union(*(s.acked for s in senders))

    again = server_factory(sqlite_url, port=server.port, key=False)
    again.key = server.key
    stored = stored_ids(again)
    assert len(stored) == len(set(stored))
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged calls lost, e.g. {sorted(missing)[:3]}"


def test_sigterm_exits_cleanly_while_a_client_is_sending(
    server_factory: Callable[..., ServerProcess], db_url: str
) -> None:
    server = server_factory(db_url)
    sender = Sender(server, "term")
    sender.start()
    sender.wait_for(10)
    code = server.stop(timeout=30)
    assert code == 0, f"litelens serve exited with {code}:\n{server.log()[-2000:]}"
    sender.stop.set()
    sender.join(15)
    assert all(r.status == 503 for r in sender.refused), sender.refused  # never a 500 on the way down
    again = server_factory(db_url, port=server.port, key=False)
    again.key = server.key
    stored = set(stored_ids(again))
    assert sender.acked and sender.acked <= stored, len(sender.acked - stored)
    assert "Traceback" not in server.log(), server.log()[-3000:]


# --------------------------------------------------------------------------------------------------
# 8. Two collectors, one PostgreSQL


@pytest.mark.service
def test_two_servers_on_one_postgres_take_interleaved_ingest_without_loss_or_duplicates(
    server_factory: Callable[..., ServerProcess], postgres_server: Any
) -> None:
    url = postgres_server.create_database()
    first = server_factory(url)
    second = server_factory(url, key=False)
    second.key = first.key  # keys live in the shared database
    sent: list[set[str]] = [set(), set()]
    errors: list[Any] = []

    def client(n: int) -> None:
        clients = [first.client(), second.client()]
        for k in range(25):
            # Batches overlap their neighbours, the other client's batches, and go to both servers.
            ids = [f"shared-{i}" for i in range(k * 20, k * 20 + 30)]
            records = [make_record(i, metadata={"writer": n}) for i in ids]
            answer = clients[(k + n) % 2].post_json("/v1/events", {"records": records})
            if answer.status != 200 or answer.json()["accepted"] != 30:
                errors.append(answer)
                return
            sent[n].update(ids)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    expected = sent[0] | sent[1]
    assert len(expected) == 25 * 20 + 10
    for server in (first, second):
        stored = stored_ids(server)
        assert len(stored) == len(set(stored)), "no call stored twice"
        assert set(stored) == expected
        window = f"start={time.time() - 3600}&end={time.time() + 60}&bucket=7200"
        rows = server.client().get_json(f"/api/stats?{window}")["rows"]
        assert sum(r["count"] for r in rows) == len(expected), "charts count each call once"


def test_a_number_too_large_for_the_database_is_a_rejected_record_not_a_retry_forever(
    db_project_server: ServerProcess,
) -> None:
    """Found by the fuzz test: one huge integer made the whole batch a 503, which the sender retries
    forever, so the good records with it were never stored."""
    client = db_project_server.client()
    batch = [
        make_record("fine"),
        make_record("huge", start_time=10**30),
        make_record("huge-2", cost_usd=-(2**70)),
    ]
    answer = client.post_json("/v1/events", {"records": batch})
    assert answer.status == 200, answer
    assert [r["index"] for r in answer.json()["rejected"]] == [1, 2]
    assert [c["call_id"] for c in client.get_json("/api/calls")["calls"]] == ["fine"]


def test_a_name_too_long_for_an_index_is_cut_and_stored_not_a_retry_forever(
    db_project_server: ServerProcess,
) -> None:
    """On PostgreSQL a session id, user, provider, model, error class, key alias or tag of some kilobytes
    did not fit an index row: the whole batch was a 503, which the sender retries forever, so its good
    records were never stored either. Each is cut to what the API's filters take, and the sender told."""
    client = db_project_server.client()
    long = "".join(random.Random(7).choices(string.ascii_letters, k=9000))  # incompressible
    record = make_record(
        "long-names",
        session_id=long,
        end_user=long,
        provider=long,
        response_model=long,
        status="error",
        error={"type": long},
        proxy={"key_alias": long},
        tags=[long, "short"],
    )
    answer = client.post_json("/v1/events", {"records": [make_record("fine"), record]})
    assert answer.status == 200 and not answer.json()["rejected"], answer
    [warning] = answer.json()["warnings"]
    assert warning["index"] == 1 and "session_id" in warning["reason"], warning
    stored = client.get_json("/api/calls/long-names")
    assert stored["session_id"] == long[:256] and stored["error"]["type"] == long[:256], stored
    assert stored["tags"] == [long[:200], "short"], stored
    # The cut values are the ones the API filters and the session page find the call by.
    [listed] = client.get_json(f"/api/calls?session_id={long[:256]}&tag={long[:200]}")["calls"]
    assert listed["call_id"] == "long-names"
    assert client.get_json(f"/api/sessions/{long[:256]}")["totals"]["calls"] == 1
    assert {c["call_id"] for c in client.get_json("/api/calls")["calls"]} == {"fine", "long-names"}


def test_a_tag_longer_than_the_tag_limit_is_stored_found_and_counted_as_the_warning_says(
    db_project_server: ServerProcess,
) -> None:
    """A tag of 230 characters -- under the 256 that names are cut to, over the 200 that tags are: the
    sender is told it was cut to 200 characters, and that is the tag the call shows, is found by, and
    is counted under; a filter by the tag as the app sends it finds the call too."""
    client = db_project_server.client()
    tag = "".join(random.Random(11).choices(string.ascii_letters, k=230))
    answer = client.post_json("/v1/events", {"records": [make_record("long-tag", tags=[tag, "short"])]})
    assert answer.status == 200 and not answer.json()["rejected"], answer
    [warning] = answer.json()["warnings"]
    assert warning["index"] == 0 and "a tag longer than 200 characters" in warning["reason"], warning
    assert "256" not in warning["reason"], warning  # no other name was cut
    assert client.get_json("/api/calls/long-tag")["tags"] == [tag[:200], "short"]
    for asked in (tag[:200], tag):
        listed = client.get_json(f"/api/calls?tag={asked}")["calls"]
        assert [c["call_id"] for c in listed] == ["long-tag"], len(asked)
    stats = client.get_json(
        f"/api/stats?start={time.time() - 3600}&end={time.time() + 60}&bucket=7200&group_by=tag"
    )
    assert {r["group"]: r["count"] for r in stats["rows"]} == {tag[:200]: 1, "short": 1}


def test_filters_by_a_name_or_tag_as_the_app_sent_it_find_the_call_stored_cut(
    db_project_server: ServerProcess,
) -> None:
    """Ingest cuts names to 256 characters and tags to 200 and stores the call; a filter by the value as
    the app sent it (300 characters) was a 422 ("at most 256 characters"), so the call could only be
    found by a value the user never sent. Filters are cut as ingest cuts; only an absurd length (more
    than a URL can sensibly carry) is still refused, by name."""
    client = db_project_server.client()
    rng = random.Random(12)
    sent = {k: "".join(rng.choices(string.ascii_letters, k=300)) for k in ("session", "user", "model", "tag")}
    record = make_record(
        "long-sent",
        session_id=sent["session"],
        end_user=sent["user"],
        request_model=sent["model"],
        response_model=None,
        tags=[sent["tag"]],
        proxy={"key_alias": sent["user"]},
        status="error",
        error={"type": sent["model"]},
    )
    answer = client.post_json("/v1/events", {"records": [make_record("other"), record]})
    assert answer.status == 200 and not answer.json()["rejected"], answer
    for query in (
        f"session_id={sent['session']}",
        f"end_user={sent['user']}",
        f"user={sent['user']}",
        f"key_alias={sent['user']}",
        f"model={sent['model']}",
        f"error_type={sent['model']}",
        f"tag={sent['tag']}",
    ):
        answer = client.get(f"/api/calls?{query}")
        assert answer.status == 200, (query[:20], answer)
        assert [c["call_id"] for c in answer.json()["calls"]] == ["long-sent"], query[:20]
    assert client.get_json(f"/api/sessions/{sent['session']}")["totals"]["calls"] == 1
    absurd = client.get(f"/api/calls?session_id={'x' * 9000}")
    assert absurd.status == 422 and "session_id (query)" in absurd.json()["error"], absurd


def test_a_query_time_in_milliseconds_is_refused_with_the_reason(project_server: ServerProcess) -> None:
    """`start=Date.now()` (JavaScript's milliseconds) read as seconds is a time 50,000 years on: the API
    answered an empty list, as if there were no calls since, or (`end`) every call, the end dropped."""
    client = project_server.client()
    now = time.time()
    assert client.post_json("/v1/events", {"records": [make_record("made-now", now)]}).status == 200
    millis = int(now * 1000)
    for path in (
        f"/api/calls?start={millis - 60_000}",
        f"/api/calls?start={now - 60:.0f}&end={millis}",
        f"/api/stats?start={millis - 3_600_000}",
        f"/api/sessions?start={millis - 60_000}",
        f"/api/export?start={millis - 60_000}",
    ):
        answer = client.get(path)
        assert answer.status == 400, (path, answer)
        assert "milliseconds" in answer.json()["error"], (path, answer)
    # Seconds, and the latest time the dashboard's ranges end at, are still times.
    listed = client.get_json(f"/api/calls?start={now - 60:.3f}&end=253402300800")
    assert [c["call_id"] for c in listed["calls"]] == ["made-now"]


def test_a_time_no_clock_gives_is_rejected_and_the_live_tail_keeps_showing_new_calls(
    project_server: ServerProcess,
) -> None:
    """A start time in the year 33658 was stored: the dashboard's live tail polls from the newest start it
    shows, so after that one call it never showed a new one. Times before 2000 or more than a day ahead
    are rejected by index (by span on /v1/traces); an end before the start is a clock that stepped back,
    kept as a call that took no time."""
    client = project_server.client()
    now = time.time()
    batch = [
        make_record("year-33658", 1e12),
        make_record("negative", -5.0),
        make_record("ends-in-33658", now, end_time=1e12),
        make_record("stepped-back", now - 1, end_time=now - 3, duration_ms=-2000.0),
    ]
    answer = client.post_json("/v1/events", {"records": batch})
    assert answer.status == 200, answer
    reasons = {r["index"]: r["reason"] for r in answer.json()["rejected"]}
    assert sorted(reasons) == [0, 1, 2] and "start_time" in reasons[0] and "end_time" in reasons[2], reasons
    stepped = client.get_json("/api/calls/stepped-back")
    assert stepped["end_time"] == stepped["start_time"] and stepped["duration_ms"] == 0, stepped
    trace, now_ns = "3a" * 16, time.time_ns()
    spans = [
        otlp_json_span(trace, "1" * 16, "tool", {}, 10**19, 10**19 + 1),
        otlp_json_span(trace, "2" * 16, "tool", {}, 0, 0),
        otlp_json_span(trace, "3" * 16, "tool", {}, now_ns, now_ns - 10**9),
    ]
    answer = post(client, "/v1/traces", otlp_json(spans), "application/json")
    assert answer.status == 200, answer
    assert answer.json()["partialSuccess"]["rejectedSpans"] == "2", answer
    [kept] = client.get_json(f"/api/traces/{trace}")["roots"]
    assert kept["span_id"] == "3" * 16 and kept["end_time"] == kept["start_time"], kept
    # The newest call is the one that arrived last, so the tail polling after it finds the next.
    client.post_json("/v1/events", [make_record("arrives-later")])
    assert client.get_json("/api/calls")["calls"][0]["call_id"] == "arrives-later"


def test_a_negative_ttft_or_throughput_is_stored_as_no_measurement_and_the_sender_is_told(
    project_server: ServerProcess,
) -> None:
    """A negative TTFT or tokens per second was stored as sent, and pulled the TTFT percentiles below 0;
    then it was dropped without a word, where the ingest names every other field it drops."""
    client = project_server.client()
    record = make_record("negative-ttft", ttft_ms=-40.0, output_tokens_per_s=-3.5, cost_usd=0.002)
    answer = client.post_json("/v1/events", {"records": [make_record("fine"), record]})
    assert answer.status == 200 and not answer.json()["rejected"], answer
    [warning] = answer.json()["warnings"]
    assert warning["index"] == 1 and "ttft_ms and output_tokens_per_s" in warning["reason"], warning
    stored = client.get_json("/api/calls/negative-ttft")
    assert (stored["ttft_ms"], stored["output_tokens_per_s"]) == (None, None), stored
    assert stored["cost_usd"] == 0.002 and stored["usage"]["output_tokens"] == 5, stored
    stats = client.get_json(f"/api/stats?start={time.time() - 3600}&end={time.time() + 60}&bucket=7200")
    assert [(r["count"], r["ttft_p50_ms"]) for r in stats["rows"]] == [(2, None)], stats
    # An OTLP span's: the call is kept without it, and the export's partial success says why.
    now = time.time_ns()
    attrs = semconv.record_to_attributes(
        make_record("otlp-negative-ttft", stream=True), capture_content=False
    )
    attrs[semconv.LITELENS_TTFT_MS] = -40.0
    span = otlp_json_span("ab" * 16, "cd" * 8, "chat gpt-4o-mini", attrs, now, now + 10**8)
    answer = post(client, "/v1/traces", otlp_json([span]), "application/json")
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "0" and "ttft_ms" in partial["errorMessage"], partial
    assert client.get_json("/api/calls/otlp-negative-ttft")["ttft_ms"] is None


def test_a_huge_plain_span_is_capped_and_says_what_was_cut(project_server: ServerProcess) -> None:
    """A span that is not an LLM call had no size limit but the body's: one tool span with a megabyte
    output, thousands of attributes or a huge name took megabytes of storage, repeated per retry."""
    client = project_server.client()
    now, trace = time.time_ns(), "4c" * 16
    attributes: dict[str, Any] = {"tool.name": "search", "tool.output": "x" * 1_000_000}
    huge = otlp_json_span(trace, "1" * 16, "n" * 100_000, attributes, now, now + 10**6)
    many = otlp_json_span(
        trace, "2" * 16, "many", {f"a{i}": "v" * 10 for i in range(20_000)}, now, now + 10**6
    )
    export = json.loads(otlp_json([huge, many]))
    blob = {"key": "blob", "value": {"stringValue": "r" * 1_000_000}}
    export["resourceSpans"][0]["resource"]["attributes"].append(blob)
    answer = post(client, "/v1/traces", json.dumps(export).encode(), "application/json")
    assert answer.status == 200, answer
    spans = {s["span_id"]: s for s in client.get_json(f"/api/traces/{trace}")["spans"]}
    for span in spans.values():
        for field in ("attributes", "resource"):
            assert len(json.dumps(span[field]).encode()) <= 70 * 1024, (span["span_id"], field)
            assert span[field]["litelens.truncated"], (span["span_id"], field)
    capped = spans["1" * 16]
    assert capped["attributes"]["tool.name"] == "search"
    assert capped["attributes"]["tool.output"].endswith(f"…[truncated {1_000_000 - 32_768} chars]")
    assert len(capped["name"]) < 1100 and capped["name"].endswith(f"[truncated {100_000 - 1024} chars]")


def test_a_filter_given_twice_is_refused_by_name_not_cut_to_its_last_value(
    project_server: ServerProcess,
) -> None:
    """`?tag=even&tag=odd` and `export --filter tag=even --filter tag=odd` answered the calls of
    `tag=odd` alone, read as filtered by both. Each filter matches one value (`meta` one per key), so a
    second value is refused, naming the filter; several `meta` keys still apply together."""
    client = project_server.client()
    seed(client, 12)
    odd = {f"q-{i:03d}" for i in range(1, 12, 2)}
    assert {c["call_id"] for c in client.get_json("/api/calls?tag=odd&limit=100")["calls"]} == odd
    for path in (
        "/api/calls?tag=even&tag=odd",
        "/api/export?tag=even&tag=odd",
        "/api/calls?model=gpt-4o&tag=even&model=claude-3",
        "/api/calls?meta=team%3Dred&meta=team%3Dblue",
        "/api/export?start=0&start=1",
        "/api/calls?limit=5&limit=6",
        "/api/stats?start=0&end=1&bucket=60&group_by=model&group_by=tag",
    ):
        answer = client.get(path)
        assert answer.status == 400, (path, answer)
        reason = answer.json()["error"]
        name = urllib.parse.parse_qsl(path.partition("?")[2])[-1][0]
        assert name in reason and "once" in reason, (path, reason)
    # One value twice is one filter; several meta keys narrow together.
    twice = client.get_json("/api/calls?tag=odd&tag=odd&limit=100")["calls"]
    assert {c["call_id"] for c in twice} == odd
    both = client.get_json("/api/calls?meta=team%3Dred&meta=request_model%3Dx&limit=100")["calls"]
    assert both == []

    env = {"LITELENS_ENDPOINT": project_server.url, "LITELENS_API_KEY": project_server.key}
    for filters in (("tag=even", "tag=odd"), ("meta=team=red", "meta=team=blue")):
        done = cli("export", *(arg for f in filters for arg in ("--filter", f)), env=env)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert f"{filters[0].rpartition('=')[0].replace('=', ' ')} given twice" in done.stderr, done
    done = cli("export", "--filter", "tag=odd", "--filter", "status=ok", env=env)
    exported = {json.loads(line)["call_id"] for line in done.stdout.splitlines()}
    assert done.returncode == 0 and exported == odd - {"q-005"}, done


def test_a_misspelt_query_parameter_is_refused_by_name_not_ignored(project_server: ServerProcess) -> None:
    """`?metadata=k=v` (the filter is `meta`) answered every call as if filtered; now a 422 names it."""
    client = project_server.client()
    records = [make_record("typo-a", metadata={"team": "a"}), make_record("typo-b", metadata={"team": "b"})]
    assert client.post_json("/v1/events", {"records": records}).status == 200
    (only,) = client.get_json("/api/calls?meta=team%3Da")["calls"]
    assert only["call_id"] == "typo-a"
    for path in (
        "/api/calls?metadata=team%3Da",
        "/api/stats?groupby=model",
        "/api/export?format=csv&modle=x",
    ):
        answer = client.get(path)
        assert answer.status == 422, path
        reason = answer.json()["error"]
        assert "unknown query parameter" in reason and "takes:" in reason, reason
    assert "'metadata'" in client.get("/api/calls?metadata=x").json()["error"]
    assert "meta" in client.get("/api/calls?metadata=x").json()["error"].split("takes:")[1]
