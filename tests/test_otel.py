"""litelens.otel against real LiteLLM and the loopback fake provider, exported to the SDK's in-memory
span exporter and metric reader: what a user of `LiteLLMInstrumentor` sees in their backend."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
import types
import warnings
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pytest
from packaging.version import Version

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytest.importorskip("opentelemetry.sdk")
litellm = pytest.importorskip("litellm")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from litelens import Limits, semconv  # noqa: E402
from litelens.otel import STREAM_OUTCOME, LiteLLMInstrumentor, OtelSettings  # noqa: E402
from litelens.otel.metrics import DURATION_BUCKETS, TOKEN_BUCKETS  # noqa: E402
from litelens.otel.streams import REAPER  # noqa: E402
from litelens.record import OTEL_LINK_KEY  # noqa: E402
from litelens.testing import FakeProvider  # noqa: E402
from router_helpers import CONVERSATION, conversation_router, run_conversation  # noqa: E402

pytestmark = pytest.mark.litellm_compat

MESSAGES = [{"role": "user", "content": "tell me a short story"}]


@dataclass
class Otel:
    """One instrumentation with its own SDK providers, torn down after the test."""

    instrumentor: LiteLLMInstrumentor
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def only_span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def make_otel() -> Iterator[Any]:
    """Factory: instrument LiteLLM with in-memory exporters; always uninstrumented afterwards."""
    made: list[Otel] = []

    def make(**kwargs: Any) -> Otel:
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        instrumentor = LiteLLMInstrumentor()
        instrumentor.instrument(
            tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]), **kwargs
        )
        otel = Otel(instrumentor, tracer_provider, exporter, reader)
        made.append(otel)
        return otel

    yield make
    for otel in made:
        otel.instrumentor.uninstrument()


@pytest.fixture
def otel(make_otel: Any) -> Otel:
    return make_otel()


def kw(fake: FakeProvider, **extra: Any) -> dict[str, Any]:
    return {"api_base": fake.url, "api_key": "sk-fake", **extra}


# --------------------------------------------------------------------------------------------------
# One span per call, for each entry point


CALLS = {
    # name: (model, content argument, content, operation)
    "completion": ("gpt-4o-mini", "messages", MESSAGES, "chat"),
    "embedding": ("text-embedding-3-small", "input", ["one two three"], "embeddings"),
    "text_completion": ("gpt-3.5-turbo-instruct", "prompt", "once upon a time", "text_completion"),
    "image_generation": ("dall-e-3", "prompt", "a red square", "image_generation"),
    # The conventions' OpenAI page: a Responses API call is a chat, with openai.api.type "responses".
    "responses": ("gpt-4o-mini", "input", "tell me a short story", "chat"),
}


def _invoke(name: str, fake: FakeProvider, is_async: bool, **extra: Any) -> Any:
    model, arg, content, _ = CALLS[name]
    arguments = {"model": f"openai/{model}", arg: content, **kw(fake, **extra)}
    if is_async:
        return asyncio.run(getattr(litellm, "a" + name)(**arguments))
    return getattr(litellm, name)(**arguments)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", list(CALLS))
def test_each_call_type_gets_a_client_span_under_the_callers_span(
    name: str, is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    model, _, content, operation = CALLS[name]
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request handler") as parent:
        response = _invoke(name, fake, is_async)
    span = next(s for s in otel.spans() if s.name != "request handler")

    assert span.name == f"{operation} {model}"
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.status.status_code is StatusCode.UNSET
    attrs = span.attributes or {}
    assert attrs[semconv.GEN_AI_OPERATION_NAME] == operation
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == model
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[semconv.LITELENS_IS_ASYNC] is is_async
    assert attrs[semconv.LITELLM_CALL_ID] == response._hidden_params["litellm_call_id"]
    assert semconv.GEN_AI_INPUT_MESSAGES not in attrs  # content is off by default
    if name != "image_generation":  # the images endpoint reports no usage (LiteLLM cannot price it)
        assert isinstance(attrs[semconv.LITELLM_COST_TOTAL], float) and attrs[semconv.LITELLM_COST_TOTAL] > 0
        expected = fake.expected_usage(content)
        assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == expected["prompt_tokens"]
        if name != "embedding":
            assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == expected["completion_tokens"]
            assert attrs[semconv.GEN_AI_RESPONSE_ID] == response.id
        else:  # no output tokens: neither a 0 on the span nor an output point in the token histogram
            assert semconv.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs
            tokens = otel.points("gen_ai.client.token.usage")
            assert [p.attributes["gen_ai.token.type"] for p in tokens] == ["input"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_responses_call_is_a_chat_of_openais_responses_api_as_the_conventions_say(
    is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    _invoke("completion", fake, is_async)
    _invoke("responses", fake, is_async)
    chat, responses = otel.spans()
    attrs = dict(responses.attributes or {})
    assert (responses.name, attrs[semconv.GEN_AI_OPERATION_NAME]) == ("chat gpt-4o-mini", "chat")
    assert attrs[semconv.OPENAI_API_TYPE] == "responses"
    assert attrs[semconv.LITELLM_CALL_TYPE] == ("aresponses" if is_async else "responses")
    assert semconv.OPENAI_API_TYPE not in (chat.attributes or {})
    # One population with the chat completion of the same model, as a GenAI dashboard groups them.
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 2 and duration.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
    # ... and still a Responses API call once the server has it.
    record = semconv.span_to_record(semconv.NeutralSpan("1" * 32, "1" * 16, responses.name, attributes=attrs))
    assert record is not None and record["call_type"] == "responses"


def test_every_spelling_of_the_output_limit_is_the_spans_max_tokens(otel: Otel, fake: FakeProvider) -> None:
    """OpenAI's newer chat parameter and the Responses API's name the limit differently from
    `max_tokens`; the conventions have one attribute for it. And an embedding's `dimensions` is the
    conventions' `gen_ai.embeddings.dimension.count`."""
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, max_completion_tokens=5, **kw(fake))
    litellm.responses(model="openai/gpt-4o-mini", input="hi", max_output_tokens=6, **kw(fake))
    litellm.embedding(model="openai/text-embedding-3-small", input=["hi"], dimensions=4, **kw(fake))
    chat, responses, embedding = (s.attributes or {} for s in otel.spans())
    assert chat[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 5
    assert responses[semconv.GEN_AI_REQUEST_MAX_TOKENS] == 6
    assert embedding["gen_ai.embeddings.dimension.count"] == 4


def test_the_requested_output_format_is_the_spans_output_type(otel: Otel, fake: FakeProvider) -> None:
    json_object = {"type": "json_object"}
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, response_format=json_object, **kw(fake))
    litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, response_format={"type": "text"}, **kw(fake)
    )
    litellm.image_generation(model="openai/dall-e-3", prompt="a red square", **kw(fake))
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    types = [(s.attributes or {}).get("gen_ai.output.type") for s in otel.spans()]
    assert types == ["json", "text", "image", None]  # None: the request asked for no format


def test_a_speech_calls_output_type_is_speech(otel: Otel, fake: FakeProvider) -> None:
    litellm.speech(model="openai/tts-1", input="read this aloud", voice="alloy", **kw(fake))
    assert (otel.only_span().attributes or {}).get("gen_ai.output.type") == "speech"


def test_a_model_passed_positionally_names_the_span_sync_and_async(otel: Otel, fake: FakeProvider) -> None:
    expected = []
    for name in ("completion", "embedding", "text_completion"):
        model, _, content, operation = CALLS[name]
        # text_completion takes the prompt first; aembedding and atext_completion take (*args, **kwargs).
        args = (content, f"openai/{model}") if name == "text_completion" else (f"openai/{model}", content)
        getattr(litellm, name)(*args, **kw(fake))
        asyncio.run(getattr(litellm, "a" + name)(*args, **kw(fake)))
        expected += [f"{operation} {model}"] * 2
    assert [s.name for s in otel.spans()] == expected


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_streamed_completion_span_ends_when_the_stream_is_exhausted(
    is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    arguments = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        **kw(fake),
    }

    async def consume_async() -> list[Any]:
        stream = await litellm.acompletion(**arguments)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(consume_async()) if is_async else list(litellm.completion(**arguments))
    span = otel.only_span()
    attrs = span.attributes or {}
    expected = fake.expected_usage(MESSAGES)
    assert span.name == "chat gpt-4o-mini"
    assert attrs[STREAM_OUTCOME] == "completed"
    assert attrs[semconv.GEN_AI_REQUEST_STREAM] is True
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == expected["prompt_tokens"]
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == expected["completion_tokens"]
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == chunks[0].id
    assert attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[semconv.LITELENS_CHUNK_COUNT] == len(chunks)
    assert chunks[-1].usage is not None
    ttfc = attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert isinstance(ttfc, float) and ttfc > 0


def test_a_stream_of_a_model_named_without_provider_names_the_provider(
    otel: Otel, fake: FakeProvider
) -> None:
    litellm.completion(model="gpt-4o-mini", messages=MESSAGES, **kw(fake))
    list(litellm.completion(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kw(fake)))
    list(litellm.responses(model="gpt-4o-mini", input="tell me a short story", stream=True, **kw(fake)))
    # LiteLLM streams this one through its "text-completion-openai" route: OpenAI all the same.
    list(litellm.text_completion(model="gpt-3.5-turbo-instruct", prompt="once", stream=True, **kw(fake)))
    assert [(s.attributes or {}).get(semconv.GEN_AI_PROVIDER_NAME) for s in otel.spans()] == ["openai"] * 4
    # ... so the call and the stream are one population in the metrics.
    durations = otel.points("gen_ai.client.operation.duration")
    assert {p.attributes[semconv.GEN_AI_PROVIDER_NAME] for p in durations} == {"openai"}
    assert sorted(p.count for p in durations) == [1, 3]  # chat (call, stream and Responses), text


def test_other_text_completion_routes_name_their_provider(otel: Otel, fake: FakeProvider) -> None:
    # The fake provider has neither endpoint: a failed call's span names its provider too.
    for model in ("azure_text/instruct", "text-completion-codestral/codestral-latest"):
        # LiteLLM 1.110 answers a 404; 1.80 reaches other URLs of the fake provider and fails otherwise.
        with pytest.raises((litellm.NotFoundError, litellm.APIConnectionError, litellm.APIError)):
            litellm.text_completion(model=model, prompt="hi", api_version="2024-02-01", **kw(fake))
    names = [(s.attributes or {}).get(semconv.GEN_AI_PROVIDER_NAME) for s in otel.spans()]
    assert names == ["azure.ai.openai", "mistral_ai"]  # as the core record's azure and mistral are named


def test_a_moonshot_call_names_the_conventions_provider(otel: Otel, fake: FakeProvider) -> None:
    litellm.completion(model="moonshot/kimi-k2-0711-preview", messages=MESSAGES, **kw(fake))
    attrs = otel.only_span().attributes or {}
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == "moonshot_ai"  # the conventions' well-known value
    assert attrs[semconv.LITELLM_PROVIDER] == "moonshot"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes[semconv.GEN_AI_PROVIDER_NAME] == "moonshot_ai"


def test_streamed_acompletion_with_reasoning_carries_all_token_counts(otel: Otel, fake: FakeProvider) -> None:
    async def run() -> list[Any]:
        stream = await litellm.acompletion(
            model="openai/o3-mini",
            messages=MESSAGES,
            stream=True,
            reasoning_effort="low",
            stream_options={"include_usage": True},
            extra_headers={"x-fake-reasoning": "5", "x-fake-tokens": "12"},
            **kw(fake),
        )
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert chunks[-1].usage is not None  # the usage really arrived in the final chunk
    attrs = otel.only_span().attributes or {}
    expected = fake.expected_usage(MESSAGES, reasoning=5, tokens=12)
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "o3-mini"
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == chunks[0].id
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == expected["prompt_tokens"]
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == expected["completion_tokens"] == 17
    assert attrs[semconv.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 5
    assert json.loads(str(attrs[semconv.LITELENS_PARAMETERS]))["reasoning_effort"] == "low"


def test_callers_parent_span_is_left_to_the_caller(otel: Otel, fake: FakeProvider) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    parent = tracer.start_span("caller")
    from opentelemetry import trace

    with trace.use_span(parent, end_on_exit=False):
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        list(litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **kw(fake)))
    assert parent.is_recording()
    assert [s.name for s in otel.spans()] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
    parent.end()
    assert [s.name for s in otel.spans()][-1] == "caller"


# --------------------------------------------------------------------------------------------------
# Streams the caller does not finish


def _long_stream(fake: FakeProvider, **extra: Any) -> Any:
    return litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-fake-tokens": "50", "x-fake-chunks": "50"},
        **kw(fake, **extra),
    )


def test_stream_closed_after_two_of_fifty_chunks_ends_its_span(otel: Otel, fake: FakeProvider) -> None:
    stream = _long_stream(fake)
    for protocol in (Iterable, AsyncIterable):  # LiteLLM's chat stream is both, and so is its proxy
        assert isinstance(stream, protocol) is isinstance(stream.__wrapped__, protocol), protocol
    next(stream)
    next(stream)
    assert otel.spans() == []
    stream.close()
    attrs = otel.only_span().attributes or {}
    assert attrs[STREAM_OUTCOME] == "closed"
    assert attrs[semconv.LITELENS_CHUNK_COUNT] == 2
    assert attrs[semconv.LITELENS_STATUS] == "cancelled"
    stream.close()  # a second close ends nothing more
    assert len(otel.spans()) == 1


def test_a_stream_cut_short_has_a_finish_reason_the_conventions_allow(
    make_otel: Any, fake: FakeProvider
) -> None:
    """The conventions' output message requires a finish reason, a string: the model gave none, so the
    span names why the answer stopped -- and a server reading the span back finds no model reason."""
    otel = make_otel(capture_content=True)
    stream = _long_stream(fake)
    next(stream)
    next(stream)
    stream.close()
    attrs = dict(otel.only_span().attributes or {})
    (output,) = json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert output["finish_reason"] == "cancelled"
    assert output["parts"][0]["type"] == "text"
    record = semconv.span_to_record(semconv.NeutralSpan("1" * 32, "1" * 16, "chat", attributes=attrs))
    assert record is not None
    assert record["finish_reasons"] == [] and record["status"] == "cancelled"
    assert record["response"]["choices"][0]["finish_reason"] is None


def test_span_side_sampling_keeps_an_unfinished_stream_as_the_core_keeps_its_record(
    otel: Otel, fake: FakeProvider
) -> None:
    """`sample(keep_errors=True)` keeps cancelled call records; on spans it must decide the same, though
    a stream the caller stopped reading ends with span status OK (it is no error of the call's)."""
    from litelens.otel import RedactingSpanExporter
    from litelens.otel.processing import span_record
    from litelens.pipeline import sample

    keep_failures = sample(0.0, keep_errors=True)  # keeps nothing but errors and cancellations
    stream = _long_stream(fake)
    next(stream)
    stream.close()
    list(litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **kw(fake)))
    stopped, completed = otel.spans()
    assert stopped.status.status_code is not StatusCode.ERROR
    kept = InMemorySpanExporter()
    RedactingSpanExporter(kept, [keep_failures]).export([stopped, completed])
    assert kept.get_finished_spans() == (stopped,)
    # The core layer's record of such a call, through the same processor: the same status, the same decision.
    status = span_record(stopped)["status"]
    assert status == (stopped.attributes or {})[semconv.LITELENS_STATUS] == "cancelled"
    assert keep_failures({"trace_id": format(stopped.context.trace_id, "032x"), "status": status})
    assert span_record(completed)["status"] == "ok"


def test_stream_used_as_context_manager_ends_its_span_on_exit(otel: Otel, fake: FakeProvider) -> None:
    with _long_stream(fake) as stream:
        next(stream)
    assert (otel.only_span().attributes or {})[STREAM_OUTCOME] == "closed"


def test_stream_dropped_after_two_chunks_ends_its_span_when_collected(otel: Otel, fake: FakeProvider) -> None:
    stream = _long_stream(fake)
    next(stream)
    next(stream)
    del stream
    gc.collect()
    assert REAPER.flush()  # dropped streams are ended off the collecting thread
    span = otel.only_span()
    assert (span.attributes or {})[STREAM_OUTCOME] == "abandoned"
    assert span.end_time is not None


def test_cancelled_consumer_task_ends_the_stream_span(otel: Otel, fake: FakeProvider) -> None:
    async def run() -> None:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-fake-chunks": "20", "x-fake-tokens": "20", "x-fake-interval-ms": "200"},
            **kw(fake),
        )
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    span = otel.only_span()
    attrs = span.attributes or {}
    assert attrs[STREAM_OUTCOME] == "abandoned"
    assert attrs[semconv.LITELENS_STATUS] == "cancelled"
    assert span.status.status_code is not StatusCode.ERROR


def test_a_forked_child_ends_the_streams_it_drops(otel: Otel, fake: FakeProvider) -> None:
    """Only the forking thread survives a fork: the child needs a reaper thread of its own, or every
    stream it drops keeps its span open and its connection checked out (gunicorn, multiprocessing)."""
    import select
    import signal

    _long_stream(fake).close()  # the parent has used a stream (and started its reaper) before forking
    otel.exporter.clear()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            stream = _long_stream(fake)
            next(stream)
            next(stream)
            del stream  # no cycle holds the proxy: dropping the last reference finalizes it
            handled = REAPER.flush(timeout=5)
            outcomes = [(s.attributes or {}).get(STREAM_OUTCOME) for s in otel.spans()]
            os.write(write, json.dumps([handled, outcomes]).encode())
        finally:
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 30)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    report = os.read(read, 4096).decode() if ready else "null"
    os.close(read)
    os.waitpid(pid, 0)
    assert json.loads(report) == [True, ["abandoned"]]
    assert otel.spans() == []  # the parent's exporter saw nothing of the child's


ABANDONED = int(os.environ.get("LITELENS_TEST_ABANDONED_STREAMS", "2000"))


@pytest.mark.skipif(
    Version(version("litellm")) < Version("1.100"),
    reason="LiteLLM 1.80.17 deadlocks on dropped sync streams without any instrumentation: the garbage "
    "collector finalizes openai's stream generator inside httpcore's pool lock, and closing needs it",
)
def test_thousands_of_abandoned_streams_leave_no_open_span(otel: Otel, fake: FakeProvider) -> None:
    """Each dropped stream must end its span and give its HTTP connection back, or a long-running
    service leaks spans and, eventually, the ability to make calls at all. (Without instrumentation,
    LiteLLM 1.110 blocks after a few dozen dropped sync streams: the proxy closes what it drops.)"""

    def abandon() -> None:
        stream = _long_stream(fake)
        next(stream)
        next(stream)

    for _ in range(ABANDONED):
        abandon()
    gc.collect()
    assert REAPER.flush(timeout=60)
    spans = otel.spans()
    assert len(spans) == ABANDONED
    assert {(s.attributes or {})[STREAM_OUTCOME] for s in spans} == {"abandoned"}
    assert all(s.end_time is not None for s in spans)
    # ... and the process can still make calls, sync and async.
    otel.exporter.clear()
    response = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert response.choices[0].message.content
    asyncio.run(litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake)))
    assert len(otel.spans()) == 2


# --------------------------------------------------------------------------------------------------
# Errors: the user's and ours


def _rate_limited_completion(fake: FakeProvider) -> Any:
    """A completion the fake provider answers with 429, without the client's retries."""
    return litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"x-fake-error": "429"},
        num_retries=0,
        max_retries=0,
        **kw(fake),
    )


def test_provider_error_marks_the_span_and_reaches_the_caller_unchanged(
    otel: Otel, fake: FakeProvider
) -> None:
    with pytest.raises(litellm.RateLimitError) as raised:
        _rate_limited_completion(fake)
    span = otel.only_span()
    assert span.status.status_code is StatusCode.ERROR
    attrs = span.attributes or {}
    assert attrs[semconv.ERROR_TYPE] == "RateLimitError"
    assert attrs[semconv.HTTP_RESPONSE_STATUS_CODE] == 429
    assert [e.name for e in span.events] == ["exception"]
    assert "rate limit" in str(raised.value).lower()


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_text_completion_stream_failing_before_its_first_chunk_is_an_error_span(
    otel: Otel, fake: FakeProvider, is_async: bool
) -> None:
    """LiteLLM reports this failure to no logger (docs/faq.md; the core layer wraps LiteLLM's stream
    method to record it): the span, which wraps the stream itself, shows it on its own."""
    kwargs = kw(
        fake,
        model="openai/gpt-3.5-turbo-instruct",
        prompt="say three words",
        stream=True,
        extra_headers={"x-fake-error": "500"},
        num_retries=0,
        max_retries=0,
    )

    async def consume() -> None:
        async for _ in await litellm.atext_completion(**kwargs):
            pass

    with pytest.raises(litellm.InternalServerError):
        if is_async:
            asyncio.run(consume())
        else:
            list(litellm.text_completion(**kwargs))
    span = otel.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})[semconv.ERROR_TYPE] == "InternalServerError"


def test_a_key_echoed_in_an_error_reaches_no_part_of_the_span(otel: Otel, fake: FakeProvider) -> None:
    echoed = Exception("upstream said: bad key sk-live-abcdefghijkl123")
    with pytest.raises(
        litellm.InternalServerError, match="sk-live-abcdefghijkl123"
    ):  # the caller's is intact
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response=echoed, **kw(fake))
    span = otel.only_span()
    assert span.status.status_code is StatusCode.ERROR and "[REDACTED]" in str(span.status.description)
    (event,) = span.events
    assert "[REDACTED]" in str(event.attributes)
    assert "sk-live" not in json.dumps([dict(span.attributes or {}), dict(event.attributes or {})])
    assert "sk-live" not in str(span.status.description)


@pytest.mark.parametrize(
    "where",
    [
        {"api_key": "ArgKeyQ1w2e3r4t5y6u7"},
        {"api_key": "placeholder-1", "extra_headers": {"Authorization": "Bearer GatewayTok9x8c7v6b5n4m"}},
        {"api_key": "placeholder-1", "extra_headers": {"api-key": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}},
    ],
    ids=["api_key", "authorization", "azure-api-key"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_key_of_no_known_shape_echoed_by_the_provider_reaches_no_part_of_the_span(
    otel: Otel, fake: FakeProvider, where: dict[str, Any], stream: bool
) -> None:
    """A rejected key the provider echoes whole ("incorrect API key provided: ..."), whose shape no rule
    knows (a gateway's token, an Azure key's hex): the span says the key was refused, never the key."""
    key = where.get("extra_headers", where)
    secret = next(iter(key.values())).split()[-1]
    headers = {**where.get("extra_headers", {}), "x-fake-error": "401", "x-fake-echo-key": "1"}
    arguments = {**where, "extra_headers": headers}
    with pytest.raises(litellm.AuthenticationError, match=secret):  # the caller's is intact
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_base=fake.url,
            stream=stream,
            max_retries=0,
            **arguments,
        )
    span = otel.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert str(span.status.description).endswith("incorrect API key provided: [REDACTED]")
    assert secret not in span.to_json()


def test_a_huge_error_page_is_cut_on_the_exception_event_too(otel: Otel, fake: FakeProvider) -> None:
    """A proxy's 100 kB HTML error page, echoed by every exception of LiteLLM's chain, must not make a
    span of megabytes: its event holds no string over the limit the docs promise for errors."""
    page = "<html>" + "x" * 100_000 + "</html>"
    with pytest.raises(litellm.InternalServerError, match="x" * 1000):  # the caller's is intact
        litellm.completion(
            model="openai/gpt-4o-mini", messages=MESSAGES, mock_response=Exception(page), **kw(fake)
        )
    span = otel.only_span()
    (event,) = span.events
    limit = Limits().max_string_chars + len("…[truncated 1000000 chars]")
    assert event.attributes is not None and event.attributes["exception.message"].startswith("litellm.")
    assert {k: len(str(v)) for k, v in event.attributes.items() if len(str(v)) > limit} == {}
    assert len(span.to_json()) < 2 * limit


def test_a_raising_processor_does_not_change_the_calls_result(make_otel: Any, fake: FakeProvider) -> None:
    def broken(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("processor bug")

    otel = make_otel(processors=[broken], capture_content=True)
    response = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert response.choices[0].message.content == "lorem ipsum dolor sit amet consectetur adipiscing elit"
    assert otel.instrumentor.internal_errors == 1
    attrs = otel.only_span().attributes or {}
    assert semconv.GEN_AI_INPUT_MESSAGES not in attrs  # the content the processor was to vet stays off
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == 8


def test_processors_see_the_record_before_its_content_reaches_the_span(
    make_otel: Any, fake: FakeProvider
) -> None:
    def redact(record: dict[str, Any]) -> dict[str, Any]:
        for message in record["request"]["messages"]:  # in place, as a structlog processor would
            message["content"] = "[redacted]"
        return record

    otel = make_otel(processors=[redact], capture_content=True)
    messages = [dict(m) for m in MESSAGES]
    litellm.completion(model="openai/gpt-4o-mini", messages=messages, **kw(fake))
    assert messages == MESSAGES  # the caller's conversation is the caller's: only the span's copy changed
    attrs = otel.only_span().attributes or {}
    assert "[redacted]" in str(attrs[semconv.GEN_AI_INPUT_MESSAGES])
    assert "short story" not in str(attrs[semconv.GEN_AI_INPUT_MESSAGES])
    assert "lorem ipsum" in str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES])


def test_a_streamed_tool_call_is_in_the_output_messages_as_in_a_calls(
    make_otel: Any, fake: FakeProvider
) -> None:
    otel = make_otel(capture_content=True)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    call = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, tools=tools, **kw(fake))
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True, **kw(fake)
        )
    )
    assert len(chunks) > 2  # the call's arguments really came in pieces
    call_output, stream_output = (
        json.loads(str((s.attributes or {})[semconv.GEN_AI_OUTPUT_MESSAGES])) for s in otel.spans()
    )
    # The same message as the call's (the tool call's id aside: each answer has its own).
    (part,) = stream_output[0]["parts"]
    assert part["type"] == "tool_call" and part["name"] == "get_weather" and part["id"]
    assert part["arguments"] == call.choices[0].message.tool_calls[0].function.arguments
    call_output[0]["parts"][0]["id"] = part["id"]
    assert stream_output == call_output


def test_an_answer_passed_back_as_a_message_object_is_the_assistants_turn(
    make_otel: Any, fake: FakeProvider
) -> None:
    """The tool-calling loop: the `Message` a response returned goes back into `messages` as it is."""
    otel = make_otel(capture_content=True)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    first = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, tools=tools, **kw(fake))
    answer = first.choices[0].message
    call = answer.tool_calls[0]
    followup = [*MESSAGES, answer, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    litellm.completion(
        model="openai/gpt-4o-mini", messages=followup, tools=tools, tool_choice="none", **kw(fake)
    )
    sent = json.loads(str((otel.spans()[-1].attributes or {})[semconv.GEN_AI_INPUT_MESSAGES]))
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["parts"] == [
        {"type": "tool_call", "id": call.id, "name": "get_weather", "arguments": call.function.arguments}
    ]


def test_a_text_completions_answer_is_in_its_output_messages(make_otel: Any, fake: FakeProvider) -> None:
    otel = make_otel(capture_content=True)
    arguments = {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "once upon a time", **kw(fake)}
    response = litellm.text_completion(**arguments)
    list(litellm.text_completion(**arguments, stream=True))
    expected = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": response.choices[0].text}],
            "finish_reason": "stop",
        }
    ]
    for span in otel.spans():  # the call's and the stream's
        assert json.loads(str((span.attributes or {})[semconv.GEN_AI_OUTPUT_MESSAGES])) == expected


def test_responses_instructions_are_the_spans_system_instructions_when_content_is_captured(
    make_otel: Any, fake: FakeProvider
) -> None:
    arguments = {
        "model": "openai/gpt-4o-mini",
        "input": "hi",
        "instructions": "Answer in French.",
        **kw(fake),
    }
    for capture in (True, False):
        otel = make_otel(capture_content=capture)
        litellm.responses(**arguments)
        attrs = otel.only_span().attributes or {}
        if capture:
            instructions = json.loads(str(attrs[semconv.GEN_AI_SYSTEM_INSTRUCTIONS]))
            assert instructions == [{"type": "text", "content": "Answer in French."}]
        else:
            assert semconv.GEN_AI_SYSTEM_INSTRUCTIONS not in attrs
        otel.instrumentor.uninstrument()


def test_a_responses_calls_content_is_in_the_conventions_messages(make_otel: Any, fake: FakeProvider) -> None:
    """Input, instructions and answer of a Responses call where the conventions put a chat's, in their
    message format -- not in litelens's own attributes, which GenAI backends do not show."""
    otel = make_otel(capture_content=True)
    answer = litellm.responses(
        model="openai/gpt-4o-mini", input="hi", instructions="Answer in French.", **kw(fake)
    )
    attrs = otel.only_span().attributes or {}
    assert semconv.LITELENS_REQUEST_INPUT not in attrs and semconv.LITELENS_RESPONSE not in attrs
    assert json.loads(str(attrs[semconv.GEN_AI_INPUT_MESSAGES])) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    ]
    assert json.loads(str(attrs[semconv.GEN_AI_SYSTEM_INSTRUCTIONS])) == [
        {"type": "text", "content": "Answer in French."}
    ]
    assert json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer.output[0].content[0].text}],
            "finish_reason": "completed",
        }
    ]


def test_content_on_spans_is_cut_to_the_core_layers_size_limits(
    make_otel: Any, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litelens import Limits

    long = "tell me a story about " + "x" * 100
    messages = [{"role": "user", "content": long}]
    for limits, env in ((Limits(max_string_chars=30), None), (None, "30")):
        if env is not None:  # the core layer's variable, as the core callback reads it
            monkeypatch.setenv("LITELENS_MAX_STRING_CHARS", env)
        otel = make_otel(capture_content=True, limits=limits)
        answer = litellm.completion(model="openai/gpt-4o-mini", messages=messages, **kw(fake))
        answer = answer.choices[0].message.content
        attrs = otel.only_span().attributes or {}
        (sent,) = json.loads(str(attrs[semconv.GEN_AI_INPUT_MESSAGES]))
        assert sent["parts"][0]["content"] == long[:30] + f"…[truncated {len(long) - 30} chars]"
        (output,) = json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES]))
        assert output["parts"][0]["content"] == answer[:30] + f"…[truncated {len(answer) - 30} chars]"
        assert attrs[semconv.LITELENS_TRUNCATED] == (
            "request.messages[0].content",
            "response.choices[0].message.content",
        )
        otel.instrumentor.uninstrument()
    assert messages == [{"role": "user", "content": long}]  # the caller's own list is untouched


def test_a_negative_size_limit_is_refused_as_the_core_refuses_it(make_otel: Any, fake: FakeProvider) -> None:
    # `Callback(limits=...)` refuses a negative cap; the instrumentor took it, and `max_string_chars=-5`
    # cut every string on the span from its end (all but its last 5 characters kept, marked truncated).
    from litelens import Limits

    for name, value in (("max_string_chars", -5), ("max_content_bytes", -1), ("max_tags", 2.5)):
        with pytest.raises(
            ValueError, match=rf"^litelens.otel: limits\.{name}=.* must be a whole number 0 or more"
        ):
            make_otel(capture_content=True, limits=Limits(**{name: value}))
    # The refused calls left nothing half instrumented: one with a valid cap traces each call once.
    otel = make_otel(capture_content=True, limits=Limits(max_string_chars=0))
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert len(otel.spans()) == 1


def test_a_huge_session_id_or_end_user_is_cut_to_the_core_layers_string_limit(
    make_otel: Any, fake: FakeProvider
) -> None:
    from litelens import Limits

    otel = make_otel(limits=Limits(max_string_chars=30))
    session, user = "s" * 100_000, "u" * 100_000
    litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, user=user, litellm_session_id=session, **kw(fake)
    )
    attrs = otel.only_span().attributes or {}
    for name, value in (
        (semconv.GEN_AI_CONVERSATION_ID, session),
        (semconv.LITELLM_SESSION_ID, session),
        (semconv.LITELLM_END_USER, user),
    ):
        assert attrs[name] == value[:30] + "…[truncated 99970 chars]", name
    assert attrs[semconv.LITELENS_TRUNCATED] == ("session_id", "end_user")


def _chars_held(value: Any) -> int:
    """The characters of the strings in `value`: in its dicts, lists and slotted objects, recursively."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(map(_chars_held, value.values()))
    if isinstance(value, (list, tuple)):
        return sum(map(_chars_held, value))
    slots = getattr(type(value), "__slots__", ())
    return sum(_chars_held(getattr(value, name)) for name in slots if hasattr(value, name))


def test_a_long_streamed_answer_is_cut_as_a_calls_without_being_held_whole(
    make_otel: Any, fake: FakeProvider
) -> None:
    from litelens import Limits

    otel = make_otel(capture_content=True, limits=Limits(max_string_chars=30))
    stream = litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-fake-tokens": "4000", "x-fake-chunks": "400"},
        **kw(fake),
    )
    pieces, held = [], 0
    for chunk in stream:
        pieces.append(chunk.choices[0].delta.content or "")
        held = max(held, _chars_held(stream._self_state.texts))
    answer = "".join(pieces)
    assert len(answer) > 10_000
    assert held < 2_000  # what the span can show, and some room past it for the processors
    attrs = otel.only_span().attributes or {}
    (output,) = json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert output["parts"][0]["content"] == answer[:30] + f"…[truncated {len(answer) - 30} chars]"
    assert attrs[semconv.LITELENS_TRUNCATED] == ("response.choices[0].message.content",)
    assert attrs[semconv.LITELENS_CHUNK_COUNT] == len(pieces)
    assert attrs[semconv.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_content_capture_follows_the_conventions_environment_variable(
    make_otel: Any, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    otel = make_otel()
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert "short story" in str((otel.only_span().attributes or {})[semconv.GEN_AI_INPUT_MESSAGES])

    # With no code (opentelemetry-instrument), LITELENS_REDACT and LITELENS_DROP_CONTENT hold here too.
    otel.instrumentor.uninstrument()
    monkeypatch.setenv("LITELENS_REDACT", "email")
    otel = make_otel()
    litellm.completion(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "I am ann@x.io"}], **kw(fake)
    )
    assert "I am [EMAIL]" in str((otel.only_span().attributes or {})[semconv.GEN_AI_INPUT_MESSAGES])
    otel.instrumentor.uninstrument()
    monkeypatch.setenv("LITELENS_DROP_CONTENT", "true")
    otel = make_otel()
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert semconv.GEN_AI_INPUT_MESSAGES not in (otel.only_span().attributes or {})


def test_capture_content_given_as_a_string_means_what_the_variable_would(
    make_otel: Any, fake: FakeProvider
) -> None:
    """A value passed through from a config file: "false" must not turn capture on (`bool("false")`)."""
    for value, captured in (("false", False), ("TRUE", True)):
        otel = make_otel(capture_content=value)
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        assert (semconv.GEN_AI_INPUT_MESSAGES in (otel.only_span().attributes or {})) is captured, value
        otel.instrumentor.uninstrument()
    for value, captured in ((" No ", False), ("0", False), ("yes", True), ("1", True), (False, False)):
        assert OtelSettings.resolve(value, environ={}).capture_content is captured, value
    original = litellm.completion
    with pytest.raises(ValueError, match="capture_content='maybe'"):
        LiteLLMInstrumentor().instrument(tracer_provider=TracerProvider(), capture_content="maybe")
    assert litellm.completion is original  # nothing was instrumented


# --------------------------------------------------------------------------------------------------
# Call ids, instrument/uninstrument


def test_a_response_from_litellms_cache_costs_nothing(
    otel: Otel, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit carries the cost of the call that was cached: counted again, spend doubled."""
    from litellm.caching.caching import Cache

    # LiteLLM 1.110's cache-hit path imports `soundfile` (a proxy dependency) and does not use it here.
    monkeypatch.setitem(
        sys.modules, "soundfile", sys.modules.get("soundfile") or types.ModuleType("soundfile")
    )

    monkeypatch.setattr(litellm, "cache", Cache(type="local"))
    arguments = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "caching": True, **kw(fake)}
    first, hit = litellm.completion(**arguments), litellm.completion(**arguments)
    assert hit._hidden_params.get("cache_hit") is True and hit.id == first.id
    list(litellm.completion(**arguments, stream=True))
    list(litellm.completion(**arguments, stream=True))
    paid, cached, paid_stream, cached_stream = (s.attributes or {} for s in otel.spans())
    assert paid[semconv.LITELLM_COST_TOTAL] > 0 and semconv.LITELLM_CACHE_HIT not in paid
    for attrs in (cached, cached_stream):
        assert attrs[semconv.LITELLM_CACHE_HIT] is True
        assert attrs[semconv.LITELLM_COST_TOTAL] == 0.0
    (cost,) = otel.points("litellm.cost")
    assert cost.value == paid[semconv.LITELLM_COST_TOTAL] + paid_stream.get(semconv.LITELLM_COST_TOTAL, 0.0)
    # Nor did it use the provider's tokens: the token histogram counts the paid calls only (the spans
    # keep the cached answer's usage, as the core record does, beside litellm.cache_hit).
    for attribute, token_type in (
        (semconv.GEN_AI_USAGE_INPUT_TOKENS, "input"),
        (semconv.GEN_AI_USAGE_OUTPUT_TOKENS, "output"),
    ):
        points = otel.points("gen_ai.client.token.usage")
        counted = [p for p in points if p.attributes["gen_ai.token.type"] == token_type]
        paid_tokens = [attrs[attribute] for attrs in (paid, paid_stream) if attribute in attrs]
        assert (sum(p.count for p in counted), sum(p.sum for p in counted)) == (
            len(paid_tokens),
            sum(paid_tokens),
        )
        assert cached[attribute] == paid[attribute]


def test_a_callers_litellm_call_id_is_kept(otel: Otel, fake: FakeProvider) -> None:
    response = litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, litellm_call_id="call-from-app", **kw(fake)
    )
    assert response._hidden_params["litellm_call_id"] == "call-from-app"
    assert (otel.only_span().attributes or {})[semconv.LITELLM_CALL_ID] == "call-from-app"


def test_metadata_reaches_the_span_without_credentials(otel: Otel, fake: FakeProvider) -> None:
    metadata = {
        "order": "A-17",
        "openai_api_key": "plain-value-123",
        "note": "key sk-proj-abcdefghijklmnop",
        "copied": "sk-fake",  # the call's own api_key
    }
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, metadata=metadata, **kw(fake))
    shown = json.loads(str((otel.only_span().attributes or {})[semconv.LITELENS_METADATA]))
    assert shown["order"] == "A-17"
    assert "plain-value-123" not in str(shown) and "sk-proj" not in str(shown) and "sk-fake" not in str(shown)
    assert metadata["openai_api_key"] == "plain-value-123"  # the caller's dict is left as it was


def test_metadata_on_spans_is_cut_to_the_core_layers_size_limits_with_content_off(
    otel: Otel, fake: FakeProvider
) -> None:
    """A large value in `metadata=` (a whole document passed along) must not make a huge span: it is
    replaced by a marker, as in the core record, and `litelens.truncated` says so."""
    tags = [f"tag-{i}" for i in range(100)]
    metadata = {"order": "A-17", "document": "x" * 100_000, "tags": tags}
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, metadata=metadata, **kw(fake))
    attrs = otel.only_span().attributes or {}
    shown = json.loads(str(attrs[semconv.LITELENS_METADATA]))
    assert shown["order"] == "A-17"
    assert shown["document"].endswith("bytes removed>")
    assert attrs[semconv.LITELLM_TAGS] == tuple(tags[:64])
    assert attrs[semconv.LITELENS_TRUNCATED] == ("tags", "metadata")
    assert sum(len(str(v)) for v in attrs.values()) < 20_000
    assert len(metadata["document"]) == 100_000 and len(metadata["tags"]) == 100  # the caller's, as they were


def test_a_single_tag_given_as_a_string_is_the_spans_tag(otel: Otel, fake: FakeProvider) -> None:
    """`metadata={"tags": "checkout"}`: one tag, as the core record reads it, not none."""
    litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, metadata={"tags": "checkout"}, **kw(fake)
    )
    assert (otel.only_span().attributes or {})[semconv.LITELLM_TAGS] == ("checkout",)


def test_a_router_call_names_its_model_group_and_deployment(otel: Otel, fake: FakeProvider) -> None:
    deployment = {"model": "openai/gpt-4o-mini", **kw(fake)}
    router = litellm.Router(model_list=[{"model_name": "cheap", "litellm_params": deployment}])
    router.completion(model="cheap", messages=MESSAGES, metadata={"order": "A-17"})
    list(router.completion(model="cheap", messages=MESSAGES, metadata={"order": "A-17"}, stream=True))
    for span in otel.spans():  # the call's and the stream's
        attrs = span.attributes or {}
        assert attrs[semconv.LITELLM_MODEL_GROUP] == "cheap"
        assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert attrs[semconv.LITELLM_DEPLOYMENT_ID] == router.get_model_list()[0]["model_info"]["id"]
        assert json.loads(str(attrs[semconv.LITELENS_METADATA])) == {"order": "A-17"}  # not the Router's


# LiteLLM's answer names OpenAI's own API base for a call that its settings sent elsewhere.
BASE_SETTINGS = ["litellm.api_base", "OPENAI_BASE_URL", "OPENAI_API_BASE"]
BASE_CALLS = {
    "completion": lambda **a: litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **a),
    "stream": lambda **a: list(
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **a)
    ),
    "unprefixed": lambda **a: litellm.completion(model="gpt-4o-mini", messages=MESSAGES, **a),
    "acompletion": lambda **a: asyncio.run(
        litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES, **a)
    ),
    "embedding": lambda **a: litellm.embedding(model="openai/text-embedding-3-small", input=["one"], **a),
    "text_completion": lambda **a: litellm.text_completion(
        model="openai/gpt-3.5-turbo-instruct", prompt="a", **a
    ),
    "text-completion-openai": lambda **a: litellm.completion(
        model="text-completion-openai/gpt-3.5-turbo-instruct", messages=MESSAGES, **a
    ),
    "responses": lambda **a: litellm.responses(model="openai/gpt-4o-mini", input="hi", **a),
    "router": lambda **a: litellm.Router(
        model_list=[{"model_name": "cheap", "litellm_params": {"model": "openai/gpt-4o-mini", **a}}]
    ).completion(model="cheap", messages=MESSAGES),
}


@pytest.mark.parametrize("setting", BASE_SETTINGS)
@pytest.mark.parametrize("call", list(BASE_CALLS))
def test_a_call_sent_by_litellms_settings_names_the_base_it_went_to(
    call: str, setting: str, otel: Otel, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    if setting == "litellm.api_base":
        monkeypatch.setattr(litellm, "api_base", fake.url)
    else:
        monkeypatch.setenv(setting, fake.url)
    sent = len(fake.requests)
    BASE_CALLS[call](api_key="sk-fake")
    assert len(fake.requests) == sent + 1  # the call went to the configured base...
    attrs = otel.only_span().attributes or {}
    # ... and its span says so, not api.openai.com:443
    assert (attrs.get(semconv.SERVER_ADDRESS), attrs.get(semconv.SERVER_PORT)) == ("127.0.0.1", fake.port)
    assert attrs.get(semconv.LITELLM_API_BASE) == fake.url


def test_the_base_litellms_settings_give_comes_after_the_calls_own_and_in_litellms_order(
    otel: Otel, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.reset()
    with FakeProvider() as other:
        monkeypatch.setenv("OPENAI_API_BASE", other.url)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)  # LiteLLM reads it first
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_key="sk-fake")
        monkeypatch.setattr(litellm, "api_base", other.url)  # ... and litellm.api_base before both
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_key="sk-fake")
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))  # the call's own first
        assert [len(fake.requests), len(other.requests)] == [2, 1]
    bases = [(s.attributes or {}).get(semconv.LITELLM_API_BASE) for s in otel.spans()]
    assert bases == [fake.url, other.url, fake.url]


def test_a_stream_names_the_base_litellm_reports_as_its_call_would(
    otel: Otel, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hosted_vllm/` takes its base from HOSTED_VLLM_API_BASE and LiteLLM reports it, for a stream too."""
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", fake.url)
    litellm.completion(model="hosted_vllm/m1", messages=MESSAGES, api_key="sk-fake")
    list(litellm.completion(model="hosted_vllm/m1", messages=MESSAGES, api_key="sk-fake", stream=True))
    for span in otel.spans():
        attrs = span.attributes or {}
        assert (attrs.get(semconv.SERVER_ADDRESS), attrs.get(semconv.SERVER_PORT)) == ("127.0.0.1", fake.port)
    assert len(otel.spans()) == 2


def test_a_base_url_names_the_base_where_litellm_sends_the_call_to_it(otel: Otel, fake: FakeProvider) -> None:
    """`completion` and `text_completion` go to `base_url=` over `api_base=`; `embedding` drops it."""
    unused = "http://127.0.0.1:9/v1"  # (the discard port: a request sent there would fail)
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_key="sk-fake", base_url=fake.url)
    litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_key="sk-fake", api_base=unused, base_url=fake.url
    )
    litellm.text_completion(
        model="openai/gpt-3.5-turbo-instruct",
        prompt="a",
        api_key="sk-fake",
        api_base=unused,
        base_url=fake.url,
    )
    litellm.embedding(model="openai/text-embedding-3-small", input=["one"], base_url=unused, **kw(fake))
    for span in otel.spans():
        attrs = span.attributes or {}
        assert (attrs.get(semconv.SERVER_ADDRESS), attrs.get(semconv.SERVER_PORT)) == ("127.0.0.1", fake.port)
        assert attrs.get(semconv.LITELLM_API_BASE) == fake.url
    assert len(otel.spans()) == 4


# Where LiteLLM (1.80 and 1.110 alike) sends a call of these providers whose arguments name no base:
# the first of these settings that is set. LiteLLM reports a provider's own variable, and nothing for
# the others.
PROVIDER_BASE_ORDERS = {
    "hosted_vllm chat": ("hosted_vllm/m1", "completion", ["HOSTED_VLLM_API_BASE", "litellm.api_base"]),
    "hosted_vllm stream": ("hosted_vllm/m1", "stream", ["HOSTED_VLLM_API_BASE", "litellm.api_base"]),
    "hosted_vllm embedding": ("hosted_vllm/m1", "embedding", ["HOSTED_VLLM_API_BASE", "litellm.api_base"]),
    "hosted_vllm text_completion": (
        "hosted_vllm/m1",
        "text_completion",
        ["HOSTED_VLLM_API_BASE", "litellm.api_base", "OPENAI_BASE_URL", "OPENAI_API_BASE"],
    ),
    **{
        f"litellm_proxy {call}": (
            "litellm_proxy/m1",
            call,
            ["LITELLM_PROXY_API_BASE", "litellm.api_base", "OPENAI_BASE_URL", "OPENAI_API_BASE"],
        )
        for call in ("completion", "stream", "embedding", "text_completion")
    },
    **{
        f"custom_openai {call}": (
            "custom_openai/m1",
            call,
            ["litellm.api_base", "OPENAI_BASE_URL", "OPENAI_API_BASE"],
        )
        for call in ("completion", "stream", "text_completion", "responses")
    },
    "openai_like embedding": ("openai_like/m1", "embedding", ["litellm.api_base", "OPENAI_LIKE_API_BASE"]),
}
PROVIDER_CALLS = {
    "completion": lambda model: litellm.completion(model=model, messages=MESSAGES, api_key="sk-fake"),
    "stream": lambda model: list(
        litellm.completion(model=model, messages=MESSAGES, api_key="sk-fake", stream=True)
    ),
    "embedding": lambda model: litellm.embedding(model=model, input=["one"], api_key="sk-fake"),
    "text_completion": lambda model: litellm.text_completion(model=model, prompt="a", api_key="sk-fake"),
    "responses": lambda model: litellm.responses(model=model, input="hi", api_key="sk-fake"),
}


@pytest.mark.parametrize("case", list(PROVIDER_BASE_ORDERS))
def test_a_call_of_another_provider_sent_by_litellms_settings_names_the_base_it_went_to(
    case: str, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`litellm.api_base`, a provider's own variable or a shared one sends a `hosted_vllm/`,
    `litellm_proxy/`, `custom_openai/` or `openai_like/` call, and LiteLLM reports no base for it:
    each setting names its own server, and the one that got the request is the one on the span."""
    model, call, order = PROVIDER_BASE_ORDERS[case]
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(FakeProvider()) for _ in order]
        settings = dict(zip(order, servers, strict=True))
        while settings:
            for name in (
                "HOSTED_VLLM_API_BASE",
                "LITELLM_PROXY_API_BASE",
                "OPENAI_LIKE_API_BASE",
                *BASE_SETTINGS[1:],
            ):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setattr(litellm, "api_base", None)
            for setting, server in settings.items():
                if setting == "litellm.api_base":
                    monkeypatch.setattr(litellm, "api_base", server.url)
                else:
                    monkeypatch.setenv(setting, server.url)
            otel.exporter.clear()
            sent = [len(server.requests) for server in servers]
            PROVIDER_CALLS[call](model)
            first, server = next(iter(settings.items()))
            got = [s for s, n in zip(servers, sent, strict=True) if len(s.requests) > n]
            assert got == [server], f"{first} should win over {list(settings)[1:]}"  # LiteLLM's order...
            attrs = otel.only_span().attributes or {}
            # ... and the span names that server, not nothing
            assert (attrs.get(semconv.SERVER_ADDRESS), attrs.get(semconv.SERVER_PORT)) == (
                "127.0.0.1",
                server.port,
            ), first
            assert attrs.get(semconv.LITELLM_API_BASE) == server.url
            del settings[first]


def test_a_router_requests_failed_attempt_names_its_deployment_and_its_fallback_the_first_attempt(
    otel: Otel, fake: FakeProvider
) -> None:
    """Each attempt of a Router request is a span of its own: a failed one named no deployment (only an
    answer did), and nothing tied a retry or the fallback that answered to the attempts before it."""
    failing = {"model": "openai/gpt-4o-mini", **kw(fake), "extra_headers": {"x-fake-error": "503"}}
    router = litellm.Router(
        model_list=[
            {"model_name": "main", "litellm_params": failing, "model_info": {"id": "dep-main"}},
            {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", **kw(fake)}},
        ],
        fallbacks=[{"main": ["backup"]}],
        num_retries=0,
        retry_after=0,
    )
    tracer = otel.tracer_provider.get_tracer("app")
    for _ in range(2):  # two requests from one handler span: each names its own first attempt
        with tracer.start_as_current_span("handler"):
            router.completion(model="main", messages=MESSAGES)
    spans = sorted((s for s in otel.spans() if s.name != "handler"), key=lambda s: s.start_time or 0)
    records = [
        semconv.span_to_record(
            semconv.NeutralSpan(
                f"{s.context.trace_id:032x}",
                f"{s.context.span_id:016x}",
                s.name,
                attributes=dict(s.attributes or {}),
            )
        )
        for s in spans
    ]
    assert [(r["status"], r["model_group"]) for r in records] == [("error", "main"), ("ok", "backup")] * 2
    assert records[0]["deployment_id"] == records[2]["deployment_id"] == "dep-main"
    for first, fallback in (records[:2], records[2:]):
        assert "first_attempt_id" not in first
        assert fallback["first_attempt_id"] == first["call_id"]


def _retrying_router(fake: FakeProvider, num_retries: int) -> Any:
    failing = {"model": "openai/gpt-4o-mini", **kw(fake), "extra_headers": {"x-fake-error": "503"}}
    return litellm.Router(
        model_list=[
            {"model_name": "main", "litellm_params": failing},
            {"model_name": "backup", "litellm_params": {"model": "openai/gpt-4o", **kw(fake)}},
        ],
        fallbacks=[{"main": ["backup"]}],
        num_retries=num_retries,
        retry_after=0,
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_each_failed_attempt_of_a_router_request_says_how_many_retries_came_before_it(
    is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    """Each failed attempt's `litellm.error.retries` was missing: nothing on a span told the first try
    from the Router's second retry of the same deployment."""
    router = _retrying_router(fake, num_retries=2)
    for _ in range(2):  # a second request counts its own retries, not the first one's too
        if is_async:
            asyncio.run(router.acompletion(model="main", messages=MESSAGES))
        else:
            router.completion(model="main", messages=MESSAGES)
    spans = sorted(otel.spans(), key=lambda s: s.start_time or 0)
    failed = [s.attributes or {} for s in spans if s.status.status_code is StatusCode.ERROR]
    # LiteLLM 1.80 counts no retries per request: unknown (no attribute), never a wrong number.
    retries = [0, 1, 2] if Version(version("litellm")) >= Version("1.100") else [None, None, None]
    assert [a.get(semconv.LITELLM_ERROR_RETRIES) for a in failed] == retries * 2
    assert [s.status.status_code for s in spans].count(StatusCode.UNSET) == 2  # each fallback answered


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_router_requests_attempts_share_one_trace_without_a_callers_span(
    is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    """Outside any application span, each attempt of one Router request (its retries, the fallback that
    answered) was the root of a trace of its own: a backend showed three unrelated failures and an
    unrelated success. Two requests stay two traces."""
    router = _retrying_router(fake, num_retries=1)
    for _ in range(2):
        if is_async:
            asyncio.run(router.acompletion(model="main", messages=MESSAGES))
        else:
            router.completion(model="main", messages=MESSAGES)
    spans = sorted(otel.spans(), key=lambda s: s.start_time or 0)
    assert len(spans) == 6
    for request in (spans[:3], spans[3:]):
        first, *later = request
        assert first.parent is None
        assert {s.context.trace_id for s in request} == {first.context.trace_id}
        for span in later:
            assert span.parent is not None and span.parent.span_id == first.context.span_id
    assert spans[0].context.trace_id != spans[3].context.trace_id


@pytest.mark.parametrize("in_a_span", [False, True], ids=["no_span", "one_span"])
@pytest.mark.parametrize("how", ["in_a_row", "tasks", "threads"])
def test_router_requests_sharing_the_callers_trace_id_keep_their_own_attempts(
    how: str, in_a_span: bool, otel: Otel, fake: FakeProvider, receiver: Any, make_callback: Any
) -> None:
    """A caller may give many Router requests one `litellm_trace_id` (one per conversation). Each
    request's retry and fallback name that request's first attempt -- never another request's, which
    would list them among its own attempts on the server -- and sit under it (or under the caller's
    span); the core callback's records say the same as the spans."""
    callback = make_callback()
    router = conversation_router(fake.url, "sk-fake")
    tracer = otel.tracer_provider.get_tracer("app")
    if in_a_span:
        with tracer.start_as_current_span("conversation") as parent:
            sends = run_conversation(router, how, parent)
    else:
        sends = run_conversation(router, how)

    spans = [s for s in otel.spans() if s.name != "conversation"]
    app = [s for s in otel.spans() if s.name == "conversation"]
    assert len(spans) == sends * sum(failures + 1 for failures in CONVERSATION.values())
    requests: dict[str, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        name = json.loads(str((span.attributes or {})[semconv.LITELENS_METADATA]))["request"]
        requests.setdefault(name, []).append(span)
    assert len(requests) == sends * len(CONVERSATION)
    span_first_attempt: dict[str, str | None] = {}
    for name, attempts in requests.items():
        first, *later = attempts
        first_id = str((first.attributes or {})[semconv.LITELLM_CALL_ID])
        failed = [StatusCode.ERROR] * CONVERSATION[name[0]]
        assert [s.status.status_code for s in attempts] == [*failed, StatusCode.UNSET], name
        assert semconv.LITELENS_FIRST_ATTEMPT_ID not in (first.attributes or {}), name
        for span in later:
            assert (span.attributes or {}).get(semconv.LITELENS_FIRST_ATTEMPT_ID) == first_id, name
        for span in attempts:
            span_first_attempt[str((span.attributes or {})[semconv.LITELLM_CALL_ID])] = (
                None if span is first else first_id
            )
        if in_a_span:
            assert all(s.parent is not None and s.parent.span_id == app[0].context.span_id for s in attempts)
        else:
            assert first.parent is None, name
            assert all(s.parent is not None and s.parent.span_id == first.context.span_id for s in later), (
                name
            )
            assert {s.context.trace_id for s in attempts} == {first.context.trace_id}, name

    # The core callback's records agree with the spans, attempt by attempt.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        callback.flush(timeout=1)
        records = {r["call_id"]: r for r in receiver.records if r["call_id"] in span_first_attempt}
        if len(records) == len(span_first_attempt):
            break
        time.sleep(0.05)
    assert {c: r.get("first_attempt_id") for c, r in records.items()} == span_first_attempt


def test_uninstrument_restores_the_original_functions(fake: FakeProvider) -> None:
    import litellm.main

    names = ["completion", "acompletion", "embedding", "responses", "aimage_generation"]
    before = {(m.__name__, n): getattr(m, n) for m in (litellm, litellm.main) for n in names if hasattr(m, n)}
    batches = "litellm.batch_completion.main"  # `litellm.batch_completion` is the function
    before[(batches, "litellm")] = sys.modules[batches].litellm
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    assert litellm.completion is not before[("litellm", "completion")]
    from litellm import completion as bound_while_instrumented

    instrumentor.uninstrument()
    for (module, name), function in before.items():
        assert getattr(sys.modules[module], name) is function, (module, name)
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    # A name bound while instrumented still holds the wrapper, which now stays out of the way.
    bound_while_instrumented(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert exporter.get_finished_spans() == ()


def test_instrumenting_twice_does_nothing_the_second_time(otel: Otel, fake: FakeProvider) -> None:
    wrapped = litellm.completion
    LiteLLMInstrumentor().instrument(tracer_provider=TracerProvider())
    assert litellm.completion is wrapped
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    assert len(otel.spans()) == 1


def test_a_name_bound_before_instrumenting_is_not_traced(fake: FakeProvider) -> None:
    """The documented limit of attribute patching: instrument before `from litellm import completion`."""
    from litellm import completion as early_completion

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        early_completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        assert exporter.get_finished_spans() == ()
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        assert len(exporter.get_finished_spans()) == 1
    finally:
        instrumentor.uninstrument()


def test_otel_layer_does_not_import_the_server_or_the_callback() -> None:
    code = (
        "import sys, litelens.otel; "
        "bad = [m for m in sys.modules if m.startswith(('litelens.server', 'litelens.callback'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------------
# Metrics


def test_metrics_follow_the_genai_conventions(otel: Otel, fake: FakeProvider) -> None:
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    list(
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            **kw(fake),
        )
    )
    expected = fake.expected_usage(MESSAGES)

    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 2
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert duration.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert duration.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"

    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == 2 * expected["prompt_tokens"]
    assert tokens["output"].sum == 2 * expected["completion_tokens"]
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS

    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    (cost,) = otel.points("litellm.cost")
    assert cost.value > 0  # gpt-4o-mini is in LiteLLM's local price map


def test_a_stream_records_the_time_between_its_chunks_as_the_conventions_ask(
    otel: Otel, fake: FakeProvider
) -> None:
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    received = []
    for _ in litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-fake-chunks": "4", "x-fake-interval-ms": "40"},
        **kw(fake),
    ):
        received.append(time.perf_counter())

    (per_chunk,) = otel.points("gen_ai.client.operation.time_per_output_chunk")
    # One measurement for each chunk after the first, none for the call that did not stream.
    assert per_chunk.count == len(received) - 1 >= 4
    assert tuple(per_chunk.explicit_bounds) == DURATION_BUCKETS
    assert per_chunk.attributes[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert per_chunk.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    # The provider waited 40 ms before each later chunk: the gaps add up to what the caller saw.
    assert per_chunk.sum == pytest.approx(received[-1] - received[0], abs=0.03)
    assert per_chunk.sum >= 0.1


def test_a_stream_failing_after_its_first_chunk_splits_no_streaming_metric_by_error(
    otel: Otel, fake: FakeProvider
) -> None:
    # LiteLLM >= 1.100 raises MidStreamFallbackError for a stream cut mid-way; 1.80 an APIConnectionError.
    with pytest.raises((litellm.exceptions.MidStreamFallbackError, litellm.APIConnectionError)):
        list(
            litellm.completion(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-fake-drop-after": "3"},
                max_retries=0,
                **kw(fake),
            )
        )

    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes[semconv.ERROR_TYPE]
    # The conventions give the time to first chunk and per chunk no error.type: the chunks that came,
    # came as fast whether or not a later one failed, and a dashboard sees one series for both.
    for name in (
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    ):
        (point,) = otel.points(name)
        assert semconv.ERROR_TYPE not in point.attributes, name
        assert point.attributes[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"


# --------------------------------------------------------------------------------------------------
# Nesting under the LLM span


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_http_client_spans_nest_under_the_llm_span(
    is_async: bool, otel: Otel, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The span is current while LiteLLM runs, so the HTTP request it makes is its child."""
    # LiteLLM's async default is an aiohttp transport, which the httpx instrumentation cannot see.
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", True)
    httpx_instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    instrumentor = httpx_instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        # A fresh client: LiteLLM caches its httpx clients, and only clients made after instrument() are traced.
        litellm.in_memory_llm_clients_cache.flush_cache()
        _invoke("completion", fake, is_async)
    finally:
        instrumentor.uninstrument()
        litellm.in_memory_llm_clients_cache.flush_cache()
    spans = otel.spans()
    llm = next(s for s in spans if s.name == "chat gpt-4o-mini")
    http = [s for s in spans if s is not llm]
    assert http, [s.name for s in spans]
    assert all(s.parent is not None and s.parent.span_id == llm.context.span_id for s in http)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_streamed_responses_take_usage_from_the_completed_event(
    is_async: bool, otel: Otel, fake: FakeProvider
) -> None:
    arguments = {"model": "openai/gpt-4o-mini", "input": "tell me a short story", "stream": True, **kw(fake)}

    def speaks_as_the_stream(stream: Any) -> None:
        # Sync-only and async-only streams: code that checks which one it got takes the right path.
        for protocol in (Iterable, AsyncIterable):
            assert isinstance(stream, protocol) is isinstance(stream.__wrapped__, protocol), protocol
        assert isinstance(stream, AsyncIterable) is is_async and isinstance(stream, Iterable) is not is_async

    async def consume_async() -> list[Any]:
        stream = await litellm.aresponses(**arguments)
        speaks_as_the_stream(stream)
        async with stream as entered:
            return [event async for event in entered]

    def consume() -> list[Any]:
        stream = litellm.responses(**arguments)
        speaks_as_the_stream(stream)
        return list(stream)

    events = asyncio.run(consume_async()) if is_async else consume()
    completed = events[-1].response
    span = otel.only_span()
    attrs = span.attributes or {}
    expected = fake.expected_usage("tell me a short story")
    assert span.name == "chat gpt-4o-mini"
    assert attrs[STREAM_OUTCOME] == "completed"
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == completed.id
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == expected["prompt_tokens"]
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == expected["completion_tokens"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_responses_streams_time_to_first_chunk_is_its_first_output(
    otel: Otel, fake: FakeProvider, is_async: bool
) -> None:
    """The events that open a Responses stream come before the model says anything: the time to first
    chunk waits for the first text, as a chat stream's does."""
    arguments = {"model": "openai/gpt-4o-mini", "input": "hi [[fake ttft_ms=400]]", "stream": True}

    async def consume_async() -> None:
        async for _ in await litellm.aresponses(**arguments, **kw(fake)):
            pass

    if is_async:
        asyncio.run(consume_async())
    else:
        for _ in litellm.responses(**arguments, **kw(fake)):
            pass
    attrs = otel.only_span().attributes or {}
    assert attrs[semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0.4
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.min >= 0.4


def test_a_responses_stream_closed_early_names_its_response_and_what_it_said(
    make_otel: Any, fake: FakeProvider
) -> None:
    """No completed event: the span still has the id and model the first events gave, and the text
    received so far as its output message."""
    otel = make_otel(capture_content=True)
    stream = litellm.responses(
        model="openai/gpt-4o-mini",
        input="tell me a short story",
        stream=True,
        extra_headers={"x-fake-tokens": "30"},
        **kw(fake),
    )
    events = []
    while not events or events[-1].type != "response.output_text.delta":
        events.append(next(stream))
    stream.close()
    attrs = otel.only_span().attributes or {}
    assert attrs[STREAM_OUTCOME] == "closed"
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == events[0].response.id
    assert attrs[semconv.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini"
    (output,) = json.loads(str(attrs[semconv.GEN_AI_OUTPUT_MESSAGES]))
    assert output == {
        "role": "assistant",
        "parts": [{"type": "text", "content": events[-1].delta}],
        "finish_reason": "cancelled",
    }


def test_a_failure_inside_the_instrumentation_leaves_the_call_alone(otel: Otel, fake: FakeProvider) -> None:
    engine = otel.instrumentor._engine
    assert engine is not None

    def broken_start_span(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer bug")

    engine.tracer.start_span = broken_start_span  # type: ignore[method-assign]
    response = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    stream = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **kw(fake))
    assert response.choices[0].message.content
    assert "".join(c.choices[0].delta.content or "" for c in stream) == response.choices[0].message.content
    assert otel.instrumentor.internal_errors == 2
    assert otel.spans() == []


def test_async_provider_error_is_reraised_unchanged_and_counted_in_metrics(
    otel: Otel, fake: FakeProvider
) -> None:
    async def run() -> None:
        await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-fake-error": "400"},
            **kw(fake),
        )

    with pytest.raises(litellm.BadRequestError):
        asyncio.run(run())
    span = otel.only_span()
    assert span.status.status_code is StatusCode.ERROR
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes[semconv.ERROR_TYPE] == "BadRequestError"


def test_a_cancelled_call_names_its_error_type_without_an_empty_message(
    otel: Otel, fake: FakeProvider
) -> None:
    """A cancelled task's CancelledError has no message: the span says so by leaving error.message out,
    not with an empty attribute a backend would show as a blank error."""

    async def run() -> None:
        call = asyncio.create_task(
            litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                extra_headers={"x-fake-latency-ms": "5000"},
                **kw(fake),
            )
        )
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(run())
    attrs = otel.only_span().attributes or {}
    assert attrs[semconv.ERROR_TYPE] == "CancelledError"
    assert attrs[semconv.LITELENS_STATUS] == "cancelled"
    assert semconv.ERROR_MESSAGE not in attrs


def test_async_stream_aclose_ends_its_span(otel: Otel, fake: FakeProvider) -> None:
    async def run() -> None:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-fake-tokens": "50", "x-fake-chunks": "50"},
            **kw(fake),
        )
        await stream.__anext__()
        await stream.aclose()

    asyncio.run(run())
    attrs = otel.only_span().attributes or {}
    assert attrs[STREAM_OUTCOME] == "closed"
    assert attrs[semconv.LITELENS_CHUNK_COUNT] == 1


@pytest.mark.skipif(
    Version(version("litellm")) < Version("1.100"),
    reason="LiteLLM 1.80's completion(acompletion=True) and embedding(aembedding=True) fail without any "
    "instrumentation (their logging object is None)",
)
def test_a_sync_entry_point_asked_for_a_coroutine_gets_one_span_ending_when_awaited(
    otel: Otel, fake: FakeProvider
) -> None:
    chat = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, **kw(fake)}
    tracer = otel.tracer_provider.get_tracer("app")

    async def run() -> None:
        with tracer.start_as_current_span("request handler"):
            pending = litellm.completion(**chat, acompletion=True)
        # LiteLLM has only returned the coroutine: the call has not run, its span is still open.
        assert [s.name for s in otel.spans()] == ["request handler"]
        await pending
        stream = await litellm.completion(**chat, acompletion=True, stream=True)
        assert [c async for c in stream]
        await litellm.embedding(
            model="openai/text-embedding-3-small", input=["hi"], aembedding=True, **kw(fake)
        )
        await litellm.responses(model="openai/gpt-4o-mini", input="hi", aresponses=True, **kw(fake))

    asyncio.run(run())
    handler, call, stream, embedding, responses = otel.spans()
    assert [s.name for s in (call, stream, embedding, responses)] == [
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "embeddings text-embedding-3-small",
        "chat gpt-4o-mini",
    ]
    assert call.parent is not None and call.parent.span_id == handler.context.span_id
    assert call.end_time is not None and handler.end_time is not None and call.end_time > handler.end_time
    for span in (call, stream, embedding, responses):
        attrs = span.attributes or {}
        assert attrs[semconv.LITELENS_IS_ASYNC] is True
        assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert (stream.attributes or {})[STREAM_OUTCOME] == "completed"


@pytest.mark.skipif(
    Version(version("litellm")) < Version("1.100"),
    reason="LiteLLM 1.80's completion(acompletion=True) fails without any instrumentation",
)
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_a_coroutine_never_awaited_ends_its_span_as_a_call_not_made(otel: Otel, fake: FakeProvider) -> None:
    """The span starts when `completion(..., acompletion=True)` returns its coroutine; one dropped
    without being awaited made no request, and its span still ends (it was never exported)."""
    fake.reset()
    pending = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, acompletion=True, **kw(fake))
    del pending
    gc.collect()
    assert REAPER.flush()
    attrs = otel.only_span().attributes or {}
    assert attrs[semconv.LITELENS_STATUS] == "cancelled"
    assert attrs[semconv.ERROR_TYPE] == "NeverAwaited"
    assert fake.requests == []


@pytest.mark.skipif(
    Version(version("litellm")) < Version("1.100"),
    reason="LiteLLM 1.80's completion(acompletion=True) fails without any instrumentation",
)
def test_a_task_cancelled_before_it_started_ends_its_span_when_cancelled(
    otel: Otel, fake: FakeProvider
) -> None:
    """A task of `completion(..., acompletion=True)` cancelled before its first step made no request; its
    span stayed open for as long as anything held the task (here, the caller's list), to be ended --
    late, as never awaited -- only when the task was freed."""
    fake.reset()

    async def run() -> list[asyncio.Task[Any]]:
        tasks = [
            asyncio.ensure_future(
                litellm.completion(
                    model="openai/gpt-4o-mini", messages=MESSAGES, acompletion=True, **kw(fake)
                )
            )
            for _ in range(3)
        ]
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(o) for o in outcomes] == [asyncio.CancelledError] * 3
        return tasks

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of it is "never awaited": the task ran it, to cancel it
        tasks = asyncio.run(run())
        spans = otel.spans()
        assert len(spans) == 3
        for span in spans:
            attrs = span.attributes or {}
            assert attrs[semconv.LITELENS_STATUS] == "cancelled"
            assert attrs[semconv.ERROR_TYPE] == "CancelledError"
        del tasks
        gc.collect()
        assert REAPER.flush()
    assert len(otel.spans()) == 3
    assert fake.requests == []


def never_awaited_warnings(drop: Callable[[], None]) -> list[str]:
    """What Python says about the coroutines `drop` leaves unawaited."""
    said: list[str] = []
    gc.collect()  # what earlier tests left for the collector is said now, not counted as ours
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        drop()
        for _ in range(3):  # a recorded warning keeps its coroutine, and what that holds, until cleared
            gc.collect()
            said += [str(w.message) for w in got if "never awaited" in str(w.message)]
            got.clear()
    return said


@pytest.mark.parametrize(
    "entry",
    [
        "acompletion",
        pytest.param(
            "completion",
            marks=pytest.mark.skipif(
                Version(version("litellm")) < Version("1.100"),
                reason="LiteLLM 1.80's completion(acompletion=True) fails without any instrumentation",
            ),
        ),
    ],
    ids=["acompletion()", "completion(acompletion=True)"],
)
def test_a_coroutine_never_awaited_is_named_as_without_instrumentation(
    entry: str, make_otel: Any, fake: FakeProvider
) -> None:
    """Python's warning about a dropped coroutine names LiteLLM's function, once, as it does without
    instrumentation -- not a wrapper of ours the user never heard of."""

    def drop() -> None:
        if entry == "acompletion":
            litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        else:
            litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, acompletion=True, **kw(fake))

    fake.reset()
    without = never_awaited_warnings(drop)
    otel = make_otel()
    assert never_awaited_warnings(drop) == without == ["coroutine 'acompletion' was never awaited"]
    assert fake.requests == []
    assert REAPER.flush()
    if entry == "completion":  # its span began when the coroutine was returned: it ends as not made
        attrs = otel.only_span().attributes or {}
        assert attrs[semconv.LITELENS_STATUS] == "cancelled"
        assert attrs[semconv.ERROR_TYPE] == "NeverAwaited"
    else:
        assert otel.spans() == []


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_core_callback_and_span_name_the_same_call(
    stream: bool, otel: Otel, fake: FakeProvider, receiver: Any, make_callback: Any
) -> None:
    """With both layers on, the store sees one call: the record and the span share LiteLLM's call id
    and agree on what was called and what it used."""
    callback = make_callback()
    options = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    metadata = {"tags": ["checkout"], "order": "A-17"}
    fake.reset()
    with otel.tracer_provider.get_tracer("app").start_as_current_span("agent.run") as parent:
        response = litellm.completion(
            model="openai/gpt-4o-mini", messages=MESSAGES, metadata=metadata, **options, **kw(fake)
        )
        if stream:
            list(response)
    span = next(s for s in otel.exporter.get_finished_spans() if s.name != "agent.run")
    attrs = span.attributes or {}
    # LiteLLM 1.80 holds the async log events of calls made under an earlier, ended event loop (an
    # earlier test's asyncio.run) and hands them to the callback registered now, so the first record to
    # arrive may be another call's; and it reports a finished stream from a thread of its own, which a
    # flush does not wait for: wait for this call's record.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        callback.flush(timeout=1)
        mine = [r for r in receiver.records if r["call_id"] == attrs[semconv.LITELLM_CALL_ID]]
        if mine:
            break
        time.sleep(0.05)
    (record,) = mine
    # Both name the call's place in the application's trace the same way, whichever reaches the server last.
    assert record["trace_id"] == format(span.context.trace_id, "032x")
    assert record["span_id"] == format(span.context.span_id, "016x")
    assert record["parent_span_id"] == format(parent.get_span_context().span_id, "016x")
    # The link travels in a copy of the metadata: the caller's dict, the record's metadata and the provider
    # request are as they would be without it.
    assert metadata == {"tags": ["checkout"], "order": "A-17"}
    assert record["metadata"] == {"order": "A-17"}
    assert "litelens" not in json.dumps(fake.requests[-1].json)
    assert attrs[semconv.LITELLM_CALL_ID] == record["call_id"]
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == record["request_model"]
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == record["usage"]["input_tokens"]
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == record["usage"]["output_tokens"]
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == record["response_id"]


def test_without_the_core_callback_litellm_gets_the_callers_metadata_as_it_is(
    otel: Otel, fake: FakeProvider
) -> None:
    """The span link is for the core callback: with only the OTel layer on, LiteLLM's loggers see the
    caller's metadata unchanged (and a call without metadata gets none)."""
    from litellm.integrations.custom_logger import CustomLogger

    from litelens.callback import unregister

    seen: list[Any] = []

    class Spy(CustomLogger):
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            seen.append((kwargs.get("litellm_params") or {}).get("metadata"))

    spy = Spy()
    litellm.callbacks.append(spy)
    try:
        litellm.completion(
            model="openai/gpt-4o-mini", messages=MESSAGES, metadata={"order": "A-17"}, **kw(fake)
        )
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        deadline = time.monotonic() + 30  # LiteLLM's logging pool, on a loaded machine
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        unregister(spy)
    assert len(seen) == 2
    assert all(OTEL_LINK_KEY not in (meta or {}) for meta in seen)
    # (LiteLLM's logging pool may run the two calls' hooks in either order)
    assert [(meta or {}).get("order") for meta in seen].count("A-17") == 1
    assert len(otel.spans()) == 2


def test_a_call_made_from_a_litellm_callback_gets_its_own_span(otel: Otel, fake: FakeProvider) -> None:
    """A judge model called from a success callback: LiteLLM runs the callback in a context copied
    from the call's, after the call -- a call of its own, not a call nested in the first."""
    from litellm.integrations.custom_logger import CustomLogger

    from litelens.callback import unregister

    judged: list[str] = []

    def is_judge(kwargs: Any) -> bool:
        return bool(((kwargs.get("litellm_params") or {}).get("metadata") or {}).get("judge"))

    class Judge(CustomLogger):
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            if not is_judge(kwargs):
                litellm.completion(
                    model="openai/gpt-4o", messages=MESSAGES, metadata={"judge": 1}, **kw(fake)
                )
                judged.append("sync")

        async def async_log_success_event(
            self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
        ) -> None:
            if not is_judge(kwargs):
                await litellm.acompletion(
                    model="openai/gpt-4o", messages=MESSAGES, metadata={"judge": 1}, **kw(fake)
                )
                judged.append("async")

    async def call_and_wait() -> None:
        await litellm.acompletion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        deadline = time.monotonic() + 30  # the judge calls run after the call, in LiteLLM's logging
        while len(judged) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    judge = Judge()
    litellm.callbacks.append(judge)
    try:
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        deadline = time.monotonic() + 30
        while not judged and time.monotonic() < deadline:
            time.sleep(0.02)
        asyncio.run(call_and_wait())
    finally:
        unregister(judge)
    assert sorted(judged) == ["async", "sync"]
    assert sorted(s.name for s in otel.spans()) == ["chat gpt-4o"] * 2 + ["chat gpt-4o-mini"] * 2


@pytest.mark.skipif(
    Version(version("litellm")) < Version("1.100"),
    reason="LiteLLM 1.80 keeps a stream's usage from the caller unless include_usage is asked for",
)
def test_stream_span_has_usage_even_when_the_caller_did_not_ask_for_it(
    otel: Otel, fake: FakeProvider
) -> None:
    chunks = list(litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **kw(fake)))
    assert all(getattr(c, "usage", None) is None for c in chunks)  # the caller saw no usage ...
    attrs = otel.only_span().attributes or {}
    expected = fake.expected_usage(MESSAGES)
    assert attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS] == expected["prompt_tokens"]  # ... the span has it
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == expected["completion_tokens"]


# --------------------------------------------------------------------------------------------------
# What a span starts with, and what it ends with


class _StartAttributes(SimpleSpanProcessor):
    """Keeps the attributes each span had when it started: what a sampler or an on_start hook sees."""

    def __init__(self) -> None:
        super().__init__(InMemorySpanExporter())
        self.started: list[dict[str, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(dict(span.attributes or {}))


def test_a_span_starts_with_what_samplers_need_and_ends_with_the_whole_record(
    otel: Otel, fake: FakeProvider
) -> None:
    starts = _StartAttributes()
    otel.tracer_provider.add_span_processor(starts)
    response = litellm.completion(
        model="openai/gpt-4o-mini", messages=MESSAGES, temperature=0.2, n=1, **kw(fake)
    )
    (started,) = starts.started
    assert started[semconv.GEN_AI_OPERATION_NAME] == "chat"
    assert started[semconv.GEN_AI_PROVIDER_NAME] == "openai"
    assert started[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert started[semconv.SERVER_ADDRESS] == "127.0.0.1"
    assert started[semconv.SERVER_PORT] == fake.port
    assert started[semconv.LITELLM_CALL_ID] == response._hidden_params["litellm_call_id"]
    attrs = otel.only_span().attributes or {}
    assert {k: attrs[k] for k in started} == started  # nothing of the start is lost or changed at the end
    assert attrs[semconv.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert semconv.GEN_AI_REQUEST_CHOICE_COUNT not in attrs  # n=1: the conventions set it only when not 1
    assert attrs[semconv.GEN_AI_RESPONSE_ID] == response.id
    assert attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS] == response.usage.completion_tokens


def test_with_processors_no_free_text_is_on_the_span_before_they_ran(
    make_otel: Any, fake: FakeProvider
) -> None:
    def forget_the_user(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "end_user": None, "api_base": None}

    otel = make_otel(processors=[forget_the_user])
    starts = _StartAttributes()
    otel.tracer_provider.add_span_processor(starts)
    litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, user="ann@example.com", **kw(fake))
    (started,) = starts.started
    assert semconv.SERVER_ADDRESS not in started and semconv.LITELLM_API_BASE not in started
    attrs = otel.only_span().attributes or {}
    # What the processor removed never reached the span, not even for the span's first microseconds.
    assert "ann@example.com" not in json.dumps(dict(attrs))
    assert semconv.LITELLM_API_BASE not in attrs
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"


def test_an_llm_call_made_while_exporting_is_not_traced(fake: FakeProvider) -> None:
    """The SDK exports under `suppress_instrumentation()`: an exporter that asks a model about each span
    (a summary, a judge) must not get spans of its own calls to export, one more per export."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    exported: list[ReadableSpan] = []

    class JudgingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            exported.extend(spans)
            if len(exported) < 5:  # without suppression, each judge call is one more span to judge
                litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(JudgingExporter()))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    try:
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
    finally:
        instrumentor.uninstrument()
    assert [s.name for s in exported] == ["chat gpt-4o-mini"]


def test_the_calls_of_a_batch_completion_are_children_of_the_callers_span(
    otel: Otel, fake: FakeProvider
) -> None:
    """LiteLLM runs each call of a batch on a pool thread: they belong to the caller's trace all the
    same, not to traces of their own."""
    with otel.tracer_provider.get_tracer("app").start_as_current_span("agent.run") as parent:
        answers = litellm.batch_completion(
            model="openai/gpt-4o-mini", messages=[MESSAGES, [{"role": "user", "content": "hi"}]], **kw(fake)
        )
    assert len(answers) == 2
    calls = [s for s in otel.spans() if s.name == "chat gpt-4o-mini"]
    assert len(calls) == 2
    assert all(s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in calls)


@pytest.mark.parametrize("name", ["batch_completion_models", "batch_completion_models_all_responses"])
def test_the_calls_to_several_models_are_children_of_the_callers_span(
    name: str, otel: Otel, fake: FakeProvider
) -> None:
    with otel.tracer_provider.get_tracer("app").start_as_current_span("agent.run") as parent:
        answer = getattr(litellm, name)(
            models=["openai/gpt-4o-mini", "openai/gpt-4o"], messages=MESSAGES, **kw(fake)
        )
    assert answer
    calls = [s for s in otel.spans() if s.name != "agent.run"]
    assert sorted(s.name for s in calls) == ["chat gpt-4o", "chat gpt-4o-mini"]
    assert all(s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in calls)


def test_the_callers_context_is_restored_after_each_call(otel: Otel, fake: FakeProvider) -> None:
    from opentelemetry import trace

    fake.reset()
    with otel.tracer_provider.get_tracer("app").start_as_current_span("agent.run") as parent:
        with pytest.raises(litellm.RateLimitError):
            _rate_limited_completion(fake)
        assert trace.get_current_span() is parent
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, **kw(fake))
        assert trace.get_current_span() is parent
    llm_spans = [s for s in otel.spans() if s.name != "agent.run"]
    # Both calls got their own span under the caller's: the first left no "inside a call" mark behind.
    assert len(llm_spans) == 2
    assert all(
        s.parent is not None and s.parent.span_id == parent.get_span_context().span_id for s in llm_spans
    )


def test_metrics_keep_one_series_per_model(otel: Otel, fake: FakeProvider) -> None:
    for model in ("openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4o-mini"):
        litellm.completion(model=model, messages=MESSAGES, **kw(fake))
    durations = {
        p.attributes[semconv.GEN_AI_REQUEST_MODEL]: p.count
        for p in otel.points("gen_ai.client.operation.duration")
    }
    assert durations == {"gpt-4o-mini": 2, "gpt-4o": 1}
    tokens = {
        (p.attributes[semconv.GEN_AI_REQUEST_MODEL], p.attributes["gen_ai.token.type"])
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert tokens == {(m, t) for m in ("gpt-4o-mini", "gpt-4o") for t in ("input", "output")}


def test_usage_read_from_plain_fields_matches_usage_read_from_attributes() -> None:
    from litellm.types.utils import CompletionTokensDetailsWrapper, PromptTokensDetailsWrapper, Usage

    from litelens.otel.endpoints import fields_of
    from litelens.record import usage_of

    for usage in (
        Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12),
        Usage(
            prompt_tokens=5,
            completion_tokens=7,
            total_tokens=12,
            prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=3),
            completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=4),
        ),
        Usage(prompt_tokens=5, completion_tokens=7, total_tokens=12, cache_creation_input_tokens=2),
    ):
        assert usage_of({"response": {"usage": fields_of(usage)}}) == usage_of({"response": {"usage": usage}})


def test_call_ids_are_distinct_uuid4_strings_also_in_a_forked_child() -> None:
    import uuid

    from litelens.otel.wrappers import new_call_id

    ids = {new_call_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's generator is reseeded: it does not repeat the parent's next ids
        os.write(write, new_call_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child not in ids and child != new_call_id()


# --------------------------------------------------------------------------------------------------
# Moderation, transcription, speech and rerank: one span each, and never a byte of audio on it

AUDIO = b"RIFF" + bytes(64_000)
KINDS = {
    # name: (model as given, model on the span, provider, arguments, what the span's input says)
    "moderation": ("omni-moderation-latest", "omni-moderation-latest", "openai", {"input": "is this ok"}),
    "transcription": (
        "openai/whisper-1",
        "whisper-1",
        "openai",
        {"file": ("clip.wav", AUDIO, "audio/wav")},
    ),
    "speech": ("openai/tts-1", "tts-1", "openai", {"input": "read this aloud", "voice": "alloy"}),
    "rerank": (
        "cohere/rerank-v3.5",
        "rerank-v3.5",
        "cohere",
        {"query": "red apple", "documents": ["a green pear", "a red apple"], "top_n": 1},
    ),
}
INPUTS = {
    "moderation": "is this ok",
    "transcription": {"file": {"name": "clip.wav", "size_bytes": len(AUDIO), "content_type": "audio/wav"}},
    "speech": "read this aloud",
    "rerank": {"query": "red apple", "documents": ["a green pear", "a red apple"]},
}


def _run_kind(name: str, fake: FakeProvider, is_async: bool, **extra: Any) -> Any:
    model, _, _, arguments = KINDS[name]
    call_kwargs = {"model": model, **arguments, **kw(fake, **extra)}
    if is_async:
        return asyncio.run(getattr(litellm, "a" + name)(**call_kwargs))
    return getattr(litellm, name)(**call_kwargs)


def _no_audio_on(span: ReadableSpan) -> None:
    values = [*(span.attributes or {}).values()] + [
        v for e in span.events for v in (e.attributes or {}).values()
    ]
    text = json.dumps([str(v) for v in values])
    assert len(text) < 8_000 and "RIFF" not in text and "\\\\x00" not in text


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", list(KINDS))
def test_each_call_that_generates_no_text_gets_one_span_without_binary_content(
    name: str, is_async: bool, make_otel: Any, fake: FakeProvider
) -> None:
    otel = make_otel(capture_content=True)
    _run_kind(name, fake, is_async)
    span = otel.only_span()
    _, model, provider, _ = KINDS[name]
    attrs = span.attributes or {}
    assert span.name == f"{name} {model}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs[semconv.GEN_AI_OPERATION_NAME] == name
    assert attrs[semconv.GEN_AI_REQUEST_MODEL] == model
    assert attrs[semconv.GEN_AI_PROVIDER_NAME] == provider
    assert attrs[semconv.LITELENS_IS_ASYNC] is is_async
    assert json.loads(str(attrs[semconv.LITELENS_REQUEST_INPUT])) == INPUTS[name]
    response = json.loads(str(attrs[semconv.LITELENS_RESPONSE]))
    if name == "moderation":
        assert response["results"][0]["flagged"] is False and response["results"][0]["categories"] == []
    elif name == "transcription":
        assert response == {
            "text": "lorem ipsum dolor sit amet consectetur adipiscing elit",
            "language": "english",
            "duration": 2.0,
        }
    elif name == "speech":
        assert response == {"content_type": "audio/mpeg", "size_bytes": 3000}
    else:
        assert [r["index"] for r in response["results"]] == [1]
    if name != "moderation":  # priced by the second, the character, the query
        assert attrs[semconv.LITELLM_COST_TOTAL] > 0
    _no_audio_on(span)


def test_a_transcriptions_tokens_or_seconds_are_on_its_span(make_otel: Any, fake: FakeProvider) -> None:
    otel = make_otel(capture_content=True)
    audio = {"file": ("clip.wav", AUDIO, "audio/wav")}
    litellm.transcription(
        model="openai/gpt-4o-transcribe", prompt="names: Ann [[fake usage_type=tokens]]", **audio, **kw(fake)
    )
    litellm.transcription(
        model="openai/whisper-1", response_format="json", prompt="[[fake duration=61.5]]", **audio, **kw(fake)
    )
    tokens, seconds = sorted(otel.spans(), key=lambda span: span.start_time or 0)
    attrs = tokens.attributes or {}
    # 20 audio tokens (two seconds) and the prompt's two words in, the transcript's eight words out.
    assert (attrs[semconv.GEN_AI_USAGE_INPUT_TOKENS], attrs[semconv.GEN_AI_USAGE_OUTPUT_TOKENS]) == (22, 8)
    # A plain whisper answer says how long the audio was in its usage alone (LiteLLM 1.80 asks for the
    # verbose answer, whose `duration` is exact, whatever the caller said).
    duration = 62.0 if fake.requests[-1].json["response_format"] == "json" else 61.5
    assert json.loads(str((seconds.attributes or {})[semconv.LITELENS_RESPONSE]))["duration"] == duration


@pytest.mark.parametrize("name", list(KINDS))
def test_a_failed_call_that_generates_no_text_is_an_error_span(
    name: str, otel: Otel, fake: FakeProvider
) -> None:
    # Sync moderation() retries a 500 in the openai client whatever max_retries says: a 422 is not retried.
    status = 422 if name == "moderation" else 500
    directive = f"[[fake error={status}]]"
    extra = {"prompt": directive} if name == "transcription" else {}
    if name in ("moderation", "speech"):
        extra["input"] = f"hi {directive}"
    elif name == "rerank":
        extra["query"] = f"hi {directive}"
    with pytest.raises(Exception) as raised:
        _run_kind(name, fake, False, max_retries=0, num_retries=0, **extra)
    span = otel.only_span()
    attrs = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert attrs[semconv.GEN_AI_OPERATION_NAME] == name
    assert attrs[semconv.ERROR_TYPE] == type(raised.value).__qualname__
    assert attrs[semconv.HTTP_RESPONSE_STATUS_CODE] == status
    _no_audio_on(span)
