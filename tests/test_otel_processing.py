"""litelens.otel.processing: spans from any instrumentation -- here a plain `tracer.start_as_current_span`
-- reach the real exporter with personal data gone from attributes, events and the status message,
and everything else as it was; sampling keeps whole traces, a failing processor costs only its span."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from litelens.otel import RedactingSpanExporter, redact_spans
from litelens.pipeline import drop_content, enrich, sample, truncate
from test_pipeline import every_third_raises

EMAIL = "ann.lee@example.com"
CARD = "4111 1111 1111 1111"


def spans_through(*processors: Any, default: bool = False) -> tuple[Any, InMemorySpanExporter, Any]:
    """A real TracerProvider whose spans go through a RedactingSpanExporter into an in-memory one."""
    memory = InMemorySpanExporter()
    exporter = RedactingSpanExporter(memory) if default else RedactingSpanExporter(memory, list(processors))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("someone.elses.instrumentation"), memory, exporter


def emit(tracer: Any) -> None:
    with tracer.start_as_current_span("POST /v1/chat", attributes={"http.request.method": "POST"}) as span:
        span.set_attribute("user.note", f"write to {EMAIL} about card {CARD}")
        span.set_attribute(
            "gen_ai.input.messages", json.dumps([{"role": "user", "content": f"I am {EMAIL}"}])
        )
        span.set_attribute("gen_ai.response.id", "chatcmpl-4111111111111111")
        span.set_attribute("litellm.call_id", "c0ffee00-0000-4000-8000-000000000001")
        span.set_attribute("gen_ai.usage.input_tokens", 412)
        span.set_attribute("http.request.header.authorization", ("Bearer abcdefgh12345678",))
        span.set_attribute("aws.access_key_id", "AKIAIOSFODNN7EXAMPLE")  # an "_id" that is a credential
        span.set_attribute("tags", ("support", f"from {EMAIL}"))
        span.add_event("gen_ai.user.message", {"content": f"mail {EMAIL} please", "index": 0})
        span.add_event("retry", {"attempt": 2})
        span.set_status(Status(StatusCode.ERROR, f"bounced: {EMAIL}"))


def test_a_plain_span_with_an_email_in_attributes_and_events_comes_out_redacted() -> None:
    tracer, memory, _ = spans_through(default=True)
    emit(tracer)
    (span,) = memory.get_finished_spans()
    assert EMAIL not in span.to_json() and CARD not in span.to_json()
    attrs = span.attributes or {}
    assert attrs["user.note"] == "write to [EMAIL] about card [CARD]"
    assert json.loads(attrs["gen_ai.input.messages"]) == [{"role": "user", "content": "I am [EMAIL]"}]
    assert attrs["http.request.header.authorization"] == ("[SECRET]",)  # still an array of strings
    assert attrs["aws.access_key_id"] == "[SECRET]"  # ids are kept as they are, keys are not
    assert attrs["tags"] == ("support", "from [EMAIL]")
    assert span.events[0].attributes == {"content": "mail [EMAIL] please", "index": 0}
    assert span.status.status_code is StatusCode.ERROR and span.status.description == "bounced: [EMAIL]"

    # Everything else is what the unwrapped exporter gets.
    plain_tracer, plain, _ = spans_through()  # no processors: the spans pass through untouched
    emit(plain_tracer)
    (original,) = plain.get_finished_spans()
    assert (original.attributes or {})["user.note"].startswith(f"write to {EMAIL}")
    for key in ("http.request.method", "gen_ai.response.id", "litellm.call_id", "gen_ai.usage.input_tokens"):
        assert attrs[key] == (original.attributes or {})[key], key  # ids and numbers kept as they were
    assert span.name == original.name and span.kind == original.kind
    assert span.instrumentation_scope == original.instrumentation_scope
    assert [e.name for e in span.events] == [e.name for e in original.events]
    assert span.events[1].attributes == original.events[1].attributes
    assert span.events[0].timestamp is not None and span.end_time is not None and span.start_time is not None


def test_span_links_come_out_redacted_with_their_contexts_and_ids() -> None:
    tracer, memory, _ = spans_through(default=True)
    with tracer.start_as_current_span("upstream") as upstream:
        pass
    link = Link(
        upstream.get_span_context(),
        {"note": f"asked by {EMAIL}", "litellm.call_id": "c0ffee00-4111111111111111", "n": 3},
    )
    with tracer.start_as_current_span("batch", links=[link]):
        pass
    _, batch = memory.get_finished_spans()
    (out,) = batch.links
    assert EMAIL not in batch.to_json()
    assert out.context == upstream.get_span_context()
    assert dict(out.attributes or {}) == {
        "note": "asked by [EMAIL]",
        "litellm.call_id": "c0ffee00-4111111111111111",
        "n": 3,
    }


def test_a_span_with_nothing_to_redact_is_exported_as_the_same_object() -> None:
    tracer, source, _ = spans_through()
    with tracer.start_as_current_span("GET /health", attributes={"http.response.status_code": 200}):
        pass
    with tracer.start_as_current_span(f"GET /users/{EMAIL}"):
        pass
    clean, dirty = source.get_finished_spans()
    memory = InMemorySpanExporter()
    RedactingSpanExporter(memory, [redact_spans(kinds="email")]).export([clean, dirty])
    out_clean, out_dirty = memory.get_finished_spans()
    assert out_clean is clean  # nothing changed: no copy
    assert out_dirty is not dirty and out_dirty.name == "GET /users/[EMAIL]"
    assert out_dirty.context == dirty.context and out_dirty.parent == dirty.parent


def test_sampling_enrichment_and_a_failing_processor() -> None:
    sampled, failing = InMemorySpanExporter(), InMemorySpanExporter()
    by_trace = RedactingSpanExporter(sampled, [sample(0.5), enrich({"deployment.environment": "prod"})])
    flaky = RedactingSpanExporter(failing, [every_third_raises(), redact_spans()])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(by_trace))
    provider.add_span_processor(SimpleSpanProcessor(flaky))
    tracer = provider.get_tracer("t")
    for i in range(300):
        with tracer.start_as_current_span(f"op {i}") as root:
            with tracer.start_as_current_span("child"):
                pass
            if i % 10 == 0:
                root.set_status(Status(StatusCode.ERROR, "boom"))

    spans = sampled.get_finished_spans()
    per_trace: dict[int, int] = {}
    for span in spans:
        assert span.context is not None
        per_trace[span.context.trace_id] = per_trace.get(span.context.trace_id, 0) + 1
        assert (span.attributes or {})["deployment.environment"] == "prod"
    errors = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert len(errors) == 30  # every error kept, whatever the sampling
    whole = [n for n in per_trace.values() if n == 2]
    assert 0.35 < len(whole) / 300 < 0.65  # about half of the traces, kept whole
    assert by_trace.stats()["sample(0.5)"]["dropped"] == 600 - len(spans)

    # A processor that raises on every third span costs those spans only.
    assert len(failing.get_finished_spans()) == 400
    assert flaky.stats()["flaky"] == {"dropped": 0, "errors": 200}


def test_drop_content_and_enrich_do_on_spans_what_they_do_on_call_records() -> None:
    tracer, memory, exporter = spans_through(
        drop_content(), enrich({"environment": "prod", "tags": ["search"], "region": "eu"})
    )
    emit(tracer)
    with tracer.start_as_current_span("openinference") as span:
        span.set_attribute("llm.input_messages.0.message.content", f"I am {EMAIL}")
        span.set_attribute("input.value", f"I am {EMAIL}")
        span.set_attribute("llm.token_count.prompt", 7)
    first, second = memory.get_finished_spans()
    text = first.to_json() + second.to_json()
    # No prompt left, in any vocabulary; the error (status message) and other attributes stay, as on records.
    assert f"I am {EMAIL}" not in text and f"mail {EMAIL} please" not in text
    assert first.status.description == f"bounced: {EMAIL}" and "user.note" in (first.attributes or {})
    attrs = first.attributes or {}
    assert "gen_ai.input.messages" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 412 and attrs["litellm.call_id"].startswith("c0ffee00")
    assert [(e.name, dict(e.attributes or {})) for e in first.events] == [
        ("gen_ai.user.message", {"index": 0}),
        ("retry", {"attempt": 2}),
    ]
    assert (second.attributes or {})["llm.token_count.prompt"] == 7
    # A record field set by enrich lands where the core layer's spans carry it, not nowhere.
    assert attrs["deployment.environment.name"] == "prod" and attrs["litellm.tags"] == ("search",)
    assert attrs["region"] == "eu"
    assert exporter.stats()["total"] == {"dropped": 0, "errors": 0}


def test_truncate_cuts_span_content_and_keeps_its_json_readable() -> None:
    tracer, memory, _ = spans_through(truncate(5))
    long = "abcdefghij" * 10
    with tracer.start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.input.messages", json.dumps([{"role": "user", "content": long}]))
        span.set_attribute("gen_ai.completion.0.content", long)
        span.set_attribute("http.url", "https://example.com/" + long)  # not content: as it was
        span.add_event("gen_ai.choice", {"message": long, "finish_reason": "stop"})
    (out,) = memory.get_finished_spans()
    attrs = out.attributes or {}
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "content": "abcde…[truncated 95 chars]"}
    ]
    assert attrs["gen_ai.completion.0.content"] == "abcde…[truncated 95 chars]"
    assert attrs["http.url"].endswith(long)
    assert dict(out.events[0].attributes or {}) == {
        "message": "abcde…[truncated 95 chars]",
        "finish_reason": "stop",
    }
    assert attrs["litelens.truncated"] == (
        "gen_ai.input.messages[0].content",
        "gen_ai.completion.0.content",
        "events[0].message",
    )
