"""Records <-> GenAI span attributes: our own records survive the trip through span attributes, and what
each peer instrumentation emits (see /work/shared/notes/peer-span-attributes.md) becomes the call record
a user would expect, after travelling through the real SDK, the real OTLP encoder and our decoder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from litelens.record import Record, from_standard_logging
from litelens.semconv import (
    NeutralSpan,
    derived_call_id,
    record_to_attributes,
    resource_attributes,
    span_name,
    span_to_record,
)
from litelens.server.ingest import span_row
from litelens.server.otlp import decode_traces
from otlp_helpers import JSON, PROTOBUF, json_body, protobuf_body, sdk_spans

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "record-schema.json").read_text())
CONTENT_KEYS = {
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "litelens.request.input",
    "litelens.response",
}
T0 = 1_760_000_000.123456


def slo(**overrides: Any) -> dict[str, Any]:
    """A LiteLLM standard_logging_object for a streamed chat call with a tool round, as LiteLLM builds it."""
    tools = [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}},
        }
    ]
    payload: dict[str, Any] = {
        "litellm_call_id": "7f1c0a1e-3b52-4d7c-9a53-2e1f4c6b8d90",
        "id": "chatcmpl-123",
        "trace_id": "chat-42",
        "call_type": "acompletion",
        "stream": True,
        "status": "success",
        "custom_llm_provider": "azure",
        "model": "gpt-4o-mini",
        "model_group": "small",
        "model_id": "dep-1",
        "api_base": "https://example.openai.azure.com:8443/openai",
        "startTime": T0,
        "endTime": T0 + 1.5,
        "completionStartTime": T0 + 0.25,
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "response_cost": 0.00042,
        "cache_hit": False,
        "request_tags": ["prod", "beta"],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "model_parameters": {
            "temperature": 0.2,
            "max_tokens": 64,
            "stop": ["END"],
            "tools": tools,
            "user": "u-9",
            "stream_options": {"include_usage": True},
        },
        "response": {
            "id": "chatcmpl-123",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Sunny."}}
            ],
            "usage": {
                "prompt_tokens_details": {"cached_tokens": 100},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        },
        "metadata": {
            "user_api_key_alias": "team-key",
            "user_api_key_team_id": "t1",
            "user_api_key_hash": "abc",
        },
    }
    payload.update(overrides)
    return payload


def build(capture_content: bool = True, **overrides: Any) -> Record:
    failed = overrides.get("status") == "failure"
    return from_standard_logging(
        slo(**overrides),
        user_metadata={"feature": "weather", "session_id": "s-1", "user_id": "app-user", "tags": ["x"]},
        chunk_count=7,
        capture_content=capture_content,
        service="billing",
        environment="prod",
        exception_type="RateLimitError" if failed else None,
        error_status=429 if failed else None,
        retries=2 if failed else None,
    )


def as_span(record: Record, capture_content: bool = True) -> NeutralSpan:
    """The span the OTel layer would make for `record` (ids and times on the span, not in attributes)."""
    return NeutralSpan(
        trace_id=record["trace_id"],
        span_id=record["span_id"],
        parent_span_id=record["parent_span_id"],
        name=span_name(record),
        kind="CLIENT",
        start_ns=round(record["start_time"] * 10**9),
        end_ns=round(record["end_time"] * 10**9),
        status_code="ERROR" if record["status"] != "ok" else "UNSET",
        attributes=dict(record_to_attributes(record, capture_content)),
        resource=dict(resource_attributes(record)),
    )


def assert_valid(record: Record | None) -> Record:
    assert record is not None
    jsonschema.validate(record, SCHEMA)
    return record


# --------------------------------------------------------------------------------------------------
# our own records


@pytest.mark.parametrize("capture_content", [True, False])
def test_a_record_survives_the_round_trip_through_span_attributes(capture_content: bool) -> None:
    record = build(capture_content)
    back = assert_valid(span_to_record(as_span(record, capture_content)))
    assert back == record


def test_a_system_message_that_repeats_the_instructions_is_not_taken_for_them() -> None:
    """A conversation whose later system message says what the first one said keeps both, and so does a
    record sent as model "openai/gpt-4o-mini" (the proxy's deployment name) with LiteLLM's call id."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Again"},
    ]
    record = build(messages=messages, model="openai/gpt-4o-mini", custom_llm_provider="openai")
    record["request_model"] = "openai/gpt-4o-mini"
    back = assert_valid(span_to_record(as_span(record)))
    assert back["request"]["messages"] == messages
    assert (back["request_model"], back["provider"]) == ("openai/gpt-4o-mini", "openai")


def test_a_model_named_with_a_slash_keeps_it_unless_litellm_named_it() -> None:
    """`openai/gpt-oss-20b` through OpenRouter is that model's own name; LiteLLM's instrumentations
    mean `<provider>/<model>` by it, and only their spans lose the prefix to the provider."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "openai/gpt-oss-20b",
    }
    span = NeutralSpan("ab" * 16, "cd" * 8, "chat openai/gpt-oss-20b", attributes=attributes)
    span.scope_name = "opentelemetry.instrumentation.openai_v2"
    assert assert_valid(span_to_record(span))["request_model"] == "openai/gpt-oss-20b"
    span.scope_name = "opentelemetry.instrumentation.litellm"
    assert assert_valid(span_to_record(span))["request_model"] == "gpt-oss-20b"


RESPONSES_REQUEST = {
    "instructions": "Be brief.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather in Paris?"},
                {"type": "input_image", "image_url": "https://example.com/paris.png"},
            ],
        },
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ],
}
RESPONSES_RESPONSE = {
    "id": "resp_1",
    "status": "completed",
    "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "It said sunny."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city": "Lyon"}'},
    ],
}


def test_a_responses_record_survives_the_round_trip_through_the_conventions_messages() -> None:
    """A server ingesting a Responses call's span gets the call's input, instructions and answer back
    as the Responses API has them, from the conventions' message attributes."""
    chat = build()
    record: Record = {
        **chat,
        "call_type": "responses",
        "litellm_call_type": "responses",
        "request": {**RESPONSES_REQUEST, "parameters": chat["request"]["parameters"]},
        "response": RESPONSES_RESPONSE,
        "finish_reasons": ["completed"],
        "response_id": "resp_1",
    }
    span = as_span(record)
    assert not {"litelens.request.input", "litelens.response"} & set(span.attributes)
    assert assert_valid(span_to_record(span)) == record
    one_text = {**record, "request": {"input": "hi", "parameters": {}}}
    assert assert_valid(span_to_record(as_span(one_text)))["request"] == {"input": "hi", "parameters": {}}


def test_a_peers_chat_span_of_openais_responses_api_is_a_responses_call() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "openai.api.type": "responses",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.output_tokens": 8,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "openai.api.type": "chat_completions",
                "gen_ai.request.model": "gpt-4o-mini",
            },
        ):
            pass

    assert [r and r["call_type"] for _, r in peer_records(make)] == ["responses", "chat"]


def test_a_responses_span_from_an_earlier_litelens_is_still_a_whole_call() -> None:
    """Earlier versions put a Responses call's input and answer in litelens's own attributes."""
    span = NeutralSpan(
        trace_id="1" * 32,
        span_id="1" * 16,
        name="responses gpt-4o-mini",
        attributes={
            "gen_ai.operation.name": "responses",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "litelens.request.input": json.dumps(RESPONSES_REQUEST["input"]),
            "litelens.response": json.dumps(RESPONSES_RESPONSE),
        },
    )
    record = assert_valid(span_to_record(span))
    assert record["request"] == {**RESPONSES_REQUEST, "parameters": {}}
    assert record["response"] == RESPONSES_RESPONSE


def test_error_and_cancelled_records_round_trip() -> None:
    failed = build(
        status="failure",
        error_information={
            "error_class": "RateLimitError",
            "error_code": "429",
            "error_message": "slow down",
            "llm_provider": "azure",
        },
        response=None,
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
    )
    assert failed["error"]["type"] == "RateLimitError"
    assert assert_valid(span_to_record(as_span(failed))) == failed
    cancelled = {**failed, "status": "cancelled", "error": {**failed["error"], "type": "CancelledError"}}
    assert span_to_record(as_span(cancelled)) == cancelled


def test_round_trip_survives_the_real_otlp_path() -> None:
    record = build()
    attrs = record_to_attributes(record, capture_content=True)

    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            span_name(record),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=round(record["start_time"] * 1e9),
        ) as span:
            span.end(end_time=round(record["end_time"] * 1e9))

    (span,) = decode_traces(protobuf_body(sdk_spans(make, dict(resource_attributes(record)))), PROTOBUF)
    back = assert_valid(span_to_record(span))
    ids = ("trace_id", "span_id", "parent_span_id", "start_time", "end_time", "duration_ms")
    assert {k: v for k, v in back.items() if k not in ids} == {
        k: v for k, v in record.items() if k not in ids
    }


def test_attributes_follow_the_current_conventions() -> None:
    record = build()
    attrs = record_to_attributes(record, capture_content=True)
    assert span_name(record) == "chat gpt-4o-mini"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai" and attrs["litellm.provider"] == "azure"
    assert (attrs["server.address"], attrs["server.port"]) == ("example.openai.azure.com", 8443)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 5
    assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.25)
    assert attrs["gen_ai.request.stop_sequences"] == ["END"]
    for n, count in ((1, None), (2, 2)):  # the choice count is set only when it is not 1
        parameters = {**record["request"]["parameters"], "n": n}
        with_n = {**record, "request": {**record["request"], "parameters": parameters}}
        assert record_to_attributes(with_n, capture_content=False).get("gen_ai.request.choice.count") == count
        assert span_to_record(as_span(with_n))["request"]["parameters"]["n"] == n
    assert attrs["gen_ai.conversation.id"] == "s-1"
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [{"type": "text", "content": "Be brief."}]
    messages = json.loads(str(attrs["gen_ai.input.messages"]))
    assert messages[1]["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'}
    ]
    assert messages[2] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}],
    }
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Sunny."}], "finish_reason": "stop"}
    ]
    assert json.loads(str(attrs["gen_ai.tool.definitions"]))[0]["name"] == "weather"
    assert not CONTENT_KEYS & set(record_to_attributes(record, capture_content=False))
    for value in attrs.values():
        assert isinstance(value, (str, bool, int, float)) or (
            isinstance(value, list) and len({type(v) for v in value}) == 1
        )


# --------------------------------------------------------------------------------------------------
# the peers, through SDK -> OTLP -> decode


def peer_records(
    build_spans: Callable[[Tracer], None],
    content_type: str = PROTOBUF,
    resource: dict[str, Any] | None = None,
) -> list[tuple[NeutralSpan, Record | None]]:
    spans = sdk_spans(build_spans, resource)
    body = protobuf_body(spans) if content_type == PROTOBUF else json_body(spans)
    decoded = decode_traces(body, content_type)
    return [(span, span_to_record(span)) for span in decoded]


def one_record(build_spans: Callable[[Tracer], None], **kwargs: Any) -> tuple[NeutralSpan, Record]:
    calls = [(s, r) for s, r in peer_records(build_spans, **kwargs) if r is not None]
    assert len(calls) == 1, calls
    return calls[0][0], assert_valid(calls[0][1])


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_openinference_completion_inside_a_caller_span(content_type: str) -> None:
    def make(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("handler"),
            tracer.start_as_current_span(
                "acompletion",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.invocation_parameters": json.dumps(
                        {"model": "gpt-4o-mini", "temperature": 0.1, "stream": True}
                    ),
                    "llm.input_messages.0.message.role": "system",
                    "llm.input_messages.0.message.content": "Be brief.",
                    "llm.input_messages.1.message.role": "user",
                    "llm.input_messages.1.message.content": "Hi",
                    # A message whose content is a list of parts: text, then an image, eleven in all.
                    "llm.input_messages.2.message.role": "user",
                    **{
                        f"llm.input_messages.2.message.contents.{i}.message_content.{key}": value
                        for i in range(10)
                        for key, value in (("type", "text"), ("text", f"part {i}"))
                    },
                    "llm.input_messages.2.message.contents.10.message_content.type": "image",
                    "llm.input_messages.2.message.contents.10.message_content.image.image.url": "https://x/y.png",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "Hello!",
                    "llm.finish_reason": "stop",
                    "llm.token_count.prompt": 12,
                    "llm.token_count.completion": 3,
                    "llm.token_count.total": 15,
                    "llm.token_count.completion_details.reasoning": 1,
                    "llm.cost.total": 0.0001,
                    "metadata": json.dumps({"feature": "search"}),  # using_metadata(...)
                    "tag.tags": ["beta"],
                    "input.value": "{}",
                    "output.value": "Hello!",
                },
            ),
        ):
            pass

    results = peer_records(make, content_type)
    handler = next(s for s, _ in results if s.name == "handler")
    span, found = next((s, r) for s, r in results if s.name == "acompletion")
    record = assert_valid(found)
    assert next(r for s, r in results if s.name == "handler") is None
    assert (record["request_model"], record["provider"], record["call_type"]) == (
        "gpt-4o-mini",
        "openai",
        "chat",
    )
    assert record["is_async"] is True and record["stream"] is True
    assert record["usage"] == {
        "input_tokens": 12,
        "output_tokens": 3,
        "total_tokens": 15,
        "cached_input_tokens": None,
        "cache_creation_input_tokens": None,
        "reasoning_tokens": 1,
    }
    assert record["cost_usd"] == 0.0001 and record["finish_reasons"] == ["stop"]
    assert record["request"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {
            "role": "user",
            "content": [
                *({"type": "text", "text": f"part {i}"} for i in range(10)),
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
    ]
    assert record["request"]["parameters"] == {"temperature": 0.1, "stream": True}
    assert record["response"]["choices"][0]["message"] == {"role": "assistant", "content": "Hello!"}
    assert record["trace_id"] == handler.trace_id and record["parent_span_id"] == handler.span_id
    assert record["call_id"] == derived_call_id(span.trace_id, span.span_id)
    assert record["service"] == "tests" and record["status"] == "ok"
    assert (record["metadata"], record["tags"]) == ({"feature": "search"}, ["beta"])


def test_openinference_embedding_and_tool_calls() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "CreateEmbeddings",
            attributes={
                "openinference.span.kind": "EMBEDDING",
                "embedding.model_name": "text-embedding-3-small",
                "llm.token_count.prompt": 8,
                "embedding.embeddings.0.embedding.text": "a",
                "embedding.embeddings.1.embedding.text": "it's b",
                "input.value": str(["a", "it's b"]),  # what OpenInference sends: Python's str()
            },
        ):
            pass
        with tracer.start_as_current_span(
            "completion",
            attributes={
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.provider": "aws",  # OpenInference's name for what LiteLLM calls bedrock
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_9",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "weather",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city":"Oslo"}',
                "llm.tools.0.tool.json_schema": json.dumps(
                    {"type": "function", "function": {"name": "weather"}}
                ),
            },
        ):
            pass
        with tracer.start_as_current_span(
            "retriever", attributes={"openinference.span.kind": "CHAIN", "llm.model_name": "x"}
        ):
            pass

    results = {s.name: r for s, r in peer_records(make)}
    assert results["retriever"] is None
    embedding = assert_valid(results["CreateEmbeddings"])
    assert (embedding["call_type"], embedding["request_model"], embedding["usage"]["input_tokens"]) == (
        "embedding",
        "text-embedding-3-small",
        8,
    )
    assert embedding["request"]["input"] == ["a", "it's b"]
    chat = assert_valid(results["completion"])
    assert chat["is_async"] is False and chat["provider"] == "bedrock"
    assert chat["response"]["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
    ]
    assert chat["request"]["tools"] == [{"type": "function", "function": {"name": "weather"}}]


def test_openinference_error_from_exception_event() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "completion",
            attributes={"openinference.span.kind": "LLM", "llm.model_name": "m"},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            span.add_event(
                "exception",
                {"exception.type": "litellm.exceptions.InternalServerError", "exception.message": "500 boom"},
            )
            span.set_status(Status(StatusCode.ERROR, "500 boom"))

    _, record = one_record(make)
    assert record["status"] == "error"
    # Named by class, as the core and litelens's own spans name it, so one filter finds it from every road.
    assert record["error"]["type"] == "InternalServerError"
    assert record["error"]["status_code"] == 500
    assert record["error"]["message"] == "500 boom"


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_openllmetry_stream_and_error(content_type: str) -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "litellm.chat",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.id": "chatcmpl-1",
                "gen_ai.request.temperature": 0.5,
                "gen_ai.request.max_tokens": 50,
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 4,
                "llm.usage.total_tokens": 14,
                "llm.is_streaming": True,
                "gen_ai.usage.cache_read_input_tokens": 3,  # OpenLLMetry's spelling
                "gen_ai.usage.cache_creation_input_tokens": 2,
                "traceloop.association.properties.session_id": "conv-7",
                "traceloop.association.properties.user_id": "u-42",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": "Yo"}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            },
        ):
            pass
        with tracer.start_as_current_span(
            "litellm.chat",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "llm.is_streaming": False,
                "error.type": "InternalServerError",
            },
        ) as span:
            span.set_status(Status(StatusCode.ERROR))

    records = [assert_valid(r) for _, r in peer_records(make, content_type)]
    ok, failed = records
    assert (ok["stream"], ok["usage"]["total_tokens"], ok["response_model"], ok["response_id"]) == (
        True,
        14,
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-1",
    )
    assert ok["request"]["parameters"] == {"temperature": 0.5, "max_tokens": 50}
    assert (ok["session_id"], ok["user_id"]) == ("conv-7", "u-42")
    assert (ok["usage"]["cached_input_tokens"], ok["usage"]["cache_creation_input_tokens"]) == (3, 2)
    assert ok["request"]["messages"] == [{"role": "user", "content": "Hi"}]
    assert ok["response"] == {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Yo"}}],
    }
    assert (failed["status"], failed["error"]["type"], failed["stream"]) == (
        "error",
        "InternalServerError",
        False,
    )
    assert failed["usage"]["total_tokens"] == 0


def test_openlit_cost_ttft_cache_and_environment() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat openai/gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "openai/gpt-4o-mini",
                "gen_ai.request.stream": True,
                "gen_ai.request.user": "end-7",
                "gen_ai.request.seed": 3,
                "gen_ai.usage.input_tokens": 20,
                "gen_ai.usage.output_tokens": 6,
                "gen_ai.usage.cache_read.input_tokens": 16,
                "gen_ai.usage.cache_creation.input_tokens": 0,
                "gen_ai.usage.cost": 0.002,
                "gen_ai.server.time_to_first_token": 0.31,
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
                "deployment.environment": "staging",
                "server.address": "127.0.0.1",
                "server.port": 8000,
            },
        ):
            pass

    _, record = one_record(make, resource={"service.name": "shop"})
    assert (record["cost_usd"], record["ttft_ms"], record["end_user"]) == (0.002, 310.0, "end-7")
    assert (record["usage"]["cached_input_tokens"], record["usage"]["cache_creation_input_tokens"]) == (16, 0)
    assert (record["service"], record["environment"], record["stream"]) == ("shop", "staging", True)
    assert record["request"]["messages"] == [{"role": "system", "content": "Be brief."}]
    assert record["request"]["parameters"] == {"seed": 3}


def test_litellm_v1_request_span_and_its_raw_child() -> None:
    def make(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span(
                "litellm_request",
                attributes={
                    "litellm.call_id": "call-abc",
                    "gen_ai.system": "openai",
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "llm.request.type": "acompletion",
                    "llm.is_streaming": "False",
                    "litellm.cache_hit": "False",
                    "gen_ai.usage.prompt_tokens": 9,
                    "gen_ai.usage.completion_tokens": 2,
                    "gen_ai.usage.total_tokens": 11,
                    "gen_ai.cost.total_cost": 0.0003,
                    "gen_ai.response.finish_reasons": '["tool_calls"]',  # JSON text, as LiteLLM sends it
                    "gen_ai.completion.0.function_call.name": "weather",
                    "gen_ai.completion.0.function_call.arguments": "{}",
                    "llm.request.functions.0.name": "weather",
                    "llm.request.functions.0.parameters": '{"type": "object"}',
                    "metadata.user_api_key_alias": "team-key",
                    "metadata.user_api_key_end_user_id": "end-1",
                    "metadata.requester_metadata": json.dumps({"feature": "x", "user_api_key": "secret"}),
                },
            ),
            tracer.start_as_current_span(
                "raw_gen_ai_request",
                attributes={"llm.openai.model": "gpt-4o-mini", "gen_ai.system": "openai"},
            ),
        ):
            pass
        with tracer.start_as_current_span(
            "litellm_request",
            attributes={
                "litellm.call_id": "call-err",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "error.type": "InternalServerError",
                "error.message": "boom",
                "error.code": "500",
                "error.llm_provider": "openai",
            },
        ) as span:
            span.set_status(Status(StatusCode.ERROR))

    results = {r["call_id"] if r else s.name: r for s, r in peer_records(make)}
    assert results["raw_gen_ai_request"] is None
    ok = assert_valid(results["call-abc"])
    assert (ok["provider"], ok["cost_usd"], ok["cache_hit"], ok["stream"]) == ("openai", 0.0003, False, False)
    assert ok["usage"]["input_tokens"] == 9 and ok["usage"]["output_tokens"] == 2
    assert ok["finish_reasons"] == ["tool_calls"]
    assert ok["response"]["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": "{}",
    }
    assert ok["request"]["tools"] == [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    assert ok["proxy"] == {"key_alias": "team-key", "end_user_id": "end-1"} and ok["end_user"] == "end-1"
    assert ok["metadata"] == {"feature": "x"}
    failed = assert_valid(results["call-err"])
    assert failed["error"] == {
        "type": "InternalServerError",
        "message": "boom",
        "status_code": 500,
        "code": "500",
        "provider": "openai",
        "normalized": None,
        "provider_request_id": None,
        "retries": None,
    }


def test_litellm_v2_stream_with_time_to_first_chunk() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "litellm.call_id": "v2-call",
                "litellm.call_type": "acompletion",
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 5,
                "gen_ai.usage.output_tokens": 7,
                "gen_ai.usage.total_tokens": 12,
                "litellm.cost.total": 0.00001,
                "litellm.cache_hit": False,
                "gen_ai.response.time_to_first_chunk": 0.125,
                "litellm.request.streaming": True,
            },
        ):
            pass

    _, record = one_record(make)
    assert (record["call_id"], record["litellm_call_type"], record["is_async"]) == (
        "v2-call",
        "acompletion",
        True,
    )
    assert (record["ttft_ms"], record["stream"], record["cost_usd"]) == (125.0, True, 0.00001)


def test_ttft_from_a_first_chunk_event_and_content_from_legacy_events() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "gen", attributes={"gen_ai.request.model": "m"}, start_time=1_000_000_000
        ) as span:
            span.add_event(
                "gen_ai.content.prompt",
                {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Q"}])},
                timestamp=1_000_000_001,
            )
            span.add_event("First Token Stream Event", timestamp=1_050_000_000)
            span.add_event(
                "gen_ai.content.completion",
                {"message.content": "A", "finish_reason": "stop"},
                timestamp=1_100_000_000,
            )
            span.end(end_time=1_200_000_000)

    _, record = one_record(make)
    assert (record["ttft_ms"], record["duration_ms"]) == (50.0, 200.0)
    assert record["request"]["messages"] == [{"role": "user", "content": "Q"}]
    assert record["response"]["choices"][0]["message"]["content"] == "A"


@pytest.mark.parametrize(
    ("litellm_provider", "conventions_name"),
    [
        ("moonshot", "moonshot_ai"),
        ("cohere_chat", "cohere"),
        ("anthropic_text", "anthropic"),
        ("vertex_ai_beta", "gcp.vertex_ai"),
        ("watsonx_text", "ibm.watsonx.ai"),
    ],
)
def test_a_provider_the_conventions_name_has_their_name_on_the_span(
    litellm_provider: str, conventions_name: str
) -> None:
    record = build(custom_llm_provider=litellm_provider)
    attrs = record_to_attributes(record, capture_content=False)
    assert attrs["gen_ai.provider.name"] == conventions_name
    assert attrs["litellm.provider"] == litellm_provider
    assert assert_valid(span_to_record(as_span(record)))["provider"] == litellm_provider


def test_a_peers_span_naming_moonshot_ai_is_a_call_to_litellms_moonshot() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat kimi-k2",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "moonshot_ai",
                "gen_ai.request.model": "kimi-k2",
            },
        ):
            pass

    _, record = one_record(make)
    assert record["provider"] == "moonshot"


def test_cache_writes_named_as_the_conventions_repository_now_names_them_are_counted() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "chat claude-sonnet-4",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 40,
                "gen_ai.usage.cache_read.input_tokens": 100,
                "gen_ai.usage.cache_write.input_tokens": 1000,
            },
        ):
            pass

    usage = one_record(make)[1]["usage"]
    assert (usage["cached_input_tokens"], usage["cache_creation_input_tokens"]) == (100, 1000)


def test_spans_that_are_not_llm_calls_map_to_none() -> None:
    def make(tracer: Tracer) -> None:
        with tracer.start_as_current_span(
            "POST",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "server.address": "api.openai.com"},
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool weather",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather"},
        ):
            pass
        with tracer.start_as_current_span("GET /health"):
            pass

    assert [r for _, r in peer_records(make)] == [None, None, None]


def test_a_span_sent_twice_gets_the_same_call_id() -> None:
    span = NeutralSpan(
        trace_id="ab" * 16, span_id="cd" * 8, name="chat m", attributes={"gen_ai.request.model": "m"}
    )
    first, second = span_to_record(span), span_to_record(span)
    assert first is not None and second is not None and first["call_id"] == second["call_id"]


def test_a_span_without_a_start_time_is_a_call_at_its_end_not_in_1970() -> None:
    end_ns = 1_700_000_000_000_000_000
    span = NeutralSpan(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        name="chat m",
        attributes={"gen_ai.request.model": "m", "gen_ai.usage.output_tokens": 5},
        start_ns=0,
        end_ns=end_ns,
    )
    record = assert_valid(span_to_record(span))
    assert record["start_time"] == record["end_time"] == end_ns / 1e9
    assert record["duration_ms"] == 0 and record["output_tokens_per_s"] is None
    assert span_row(span, record["call_id"])["start_time"] == end_ns / 1e9, "the span in the trace too"
