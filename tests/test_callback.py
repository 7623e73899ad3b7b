"""litelens.Callback against real LiteLLM calling the fake provider over loopback HTTP.

Marked `litellm_compat`: these run again against the oldest supported LiteLLM release, so a change in
LiteLLM's logging payload shows up here rather than at users.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import litellm
import pytest
from packaging.version import Version

from litelens.callback import unregister
from litelens.testing import FakeProvider, Receiver
from router_helpers import CONVERSATION, conversation_router, run_conversation

pytestmark = pytest.mark.litellm_compat

KEY = "sk-test-PROVIDERKEY-0123456789abcdef"
SCHEMA = json.loads((Path(__file__).parents[1] / "docs" / "record-schema.json").read_text())
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "how are you today"}]
PROMPT_WORDS = 6  # the fake provider counts whitespace-separated words of the input


def one_record(receiver: Receiver, callback: Any, n: int = 1) -> Any:
    # LiteLLM runs sync success hooks on its own thread pool after the call returns: wait for arrival.
    assert receiver.wait_for(n, timeout=15), f"expected {n} records, got {len(receiver.records)}"
    assert callback.flush(timeout=10)
    records = list(receiver.records)
    assert len(records) == n, records
    for record in records:
        jsonschema.validate(record, SCHEMA)
    return records[0] if n == 1 else records


def call(provider: FakeProvider, **kwargs: Any) -> Any:
    kwargs.setdefault("model", "openai/gpt-4o-mini")
    kwargs.setdefault("messages", MESSAGES)
    return litellm.completion(api_base=provider.url, api_key=KEY, **kwargs)


def test_completion_record_carries_what_the_provider_said(provider, receiver, make_callback):
    callback = make_callback()
    response = call(
        provider,
        extra_headers={"x-fake-tokens": "5"},
        temperature=0.3,
        user="end-user-7",
        metadata={"tags": ["checkout"], "session_id": "sess-1", "user_id": "u-1", "order": {"id": 42}},
    )
    record = one_record(receiver, callback)
    assert record["call_id"] == response._hidden_params.get("litellm_call_id") or record["call_id"]
    assert record["status"] == "ok" and record["error"] is None
    assert record["call_type"] == "chat" and record["stream"] is False and record["is_async"] is False
    assert record["request_model"] == "gpt-4o-mini" and record["provider"] == "openai"
    assert record["usage"]["input_tokens"] == PROMPT_WORDS
    assert record["usage"]["output_tokens"] == 5
    assert record["usage"]["total_tokens"] == PROMPT_WORDS + 5
    assert record["cost_usd"] and record["cost_usd"] > 0
    assert record["tags"] == ["checkout"]
    assert (
        record["session_id"] == "sess-1" and record["user_id"] == "u-1" and record["end_user"] == "end-user-7"
    )
    assert record["metadata"] == {"order": {"id": 42}}
    assert record["request"]["messages"] == MESSAGES
    assert record["request"]["parameters"]["temperature"] == 0.3
    assert record["response"]["choices"][0]["message"]["content"] == response.choices[0].message.content
    assert record["finish_reasons"] == ["stop"]
    assert record["response_id"] == response.id
    assert len(record["trace_id"]) == 32 and len(record["span_id"]) == 16
    assert record["duration_ms"] > 0 and record["ttft_ms"] is None


def test_async_completion_and_session_ids(provider, receiver, make_callback):
    callback = make_callback()

    async def go() -> Any:
        response = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_base=provider.url,
            api_key=KEY,
            litellm_session_id="chat-42",
        )
        await asyncio.sleep(0.05)  # LiteLLM logs async success as a task on this loop
        return response

    asyncio.run(go())
    record = one_record(receiver, callback)
    assert record["is_async"] is True and record["litellm_call_type"] == "acompletion"
    assert record["session_id"] == "chat-42"
    assert record["usage"]["input_tokens"] == PROMPT_WORDS


def test_sync_stream_records_ttft_tokens_and_throughput(provider, receiver, make_callback):
    callback = make_callback()
    started = time.perf_counter()
    chunks = list(
        call(
            provider,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={
                "x-fake-tokens": "12",
                "x-fake-ttft-ms": "150",
                "x-fake-interval-ms": "5",
                "x-fake-reasoning": "3",
            },
        )
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    record = one_record(receiver, callback)
    assert len(chunks) >= 12
    assert record["stream"] is True and record["status"] == "ok"
    assert record["usage"]["output_tokens"] == 15 and record["usage"]["reasoning_tokens"] == 3
    assert 150 <= record["ttft_ms"] <= elapsed_ms
    assert record["ttft_ms"] < record["duration_ms"]
    assert record["output_tokens_per_s"] and record["output_tokens_per_s"] > 0
    # LiteLLM saw the caller's chunks plus the usage-only chunk the provider sent last.
    assert record["chunk_count"] in (len(chunks), len(chunks) + 1)
    assert record["response"]["choices"][0]["message"]["content"].split() == [
        w for c in chunks if c.choices for w in (c.choices[0].delta.content or "").split()
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_call_asking_for_several_choices_keeps_them_all(provider, receiver, make_callback, stream):
    callback = make_callback()
    response = call(provider, n=3, stream=stream, extra_headers={"x-fake-tokens": "4"})
    if stream:
        texts = ["", "", ""]
        for chunk in response:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
    else:
        texts = [choice.message.content for choice in response.choices]
    record = one_record(receiver, callback)
    choices = record["response"]["choices"]
    if stream and Version(version("litellm")) < Version("1.100"):
        # LiteLLM 1.80 joins the chunks of every choice into one choice and counts the tokens of that text
        # itself (docs/core.md, Streams): that is what it reports, with every choice's words in it.
        assert [c["index"] for c in choices] == [0]
        assert sorted(choices[0]["message"]["content"].replace(" ", "")) == sorted(
            "".join(texts).replace(" ", "")
        )
        assert record["usage"]["output_tokens"] > 0
        return
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert [c["message"]["content"] for c in choices] == texts and all(texts)
    assert record["finish_reasons"] == ["stop"] * 3
    # every choice's words are paid for, as OpenAI counts them
    assert record["usage"]["output_tokens"] == 3 * 4
    assert record["usage"] == {
        **record["usage"],
        **{"input_tokens": PROMPT_WORDS, "total_tokens": PROMPT_WORDS + 12},
    }


def test_async_stream(provider, receiver, make_callback):
    callback = make_callback()

    async def go() -> int:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_base=provider.url,
            api_key=KEY,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-fake-tokens": "7", "x-fake-ttft-ms": "80"},
        )
        n = 0
        async for _ in stream:
            n += 1
        await asyncio.sleep(0.05)  # LiteLLM logs async stream success as a task on this loop
        return n

    asyncio.run(go())
    record = one_record(receiver, callback)
    assert record["stream"] is True and record["is_async"] is True
    assert record["usage"]["output_tokens"] == 7
    assert record["ttft_ms"] >= 80
    assert record["chunk_count"] >= 7  # one word per chunk from the fake provider


def test_embeddings_sync_and_async(provider, receiver, make_callback):
    callback = make_callback()
    litellm.embedding(
        model="openai/text-embedding-3-small", input=["one two three"], api_base=provider.url, api_key=KEY
    )

    async def go() -> None:
        await litellm.aembedding(
            model="openai/text-embedding-3-small", input="four five", api_base=provider.url, api_key=KEY
        )
        await asyncio.sleep(0.05)

    asyncio.run(go())
    records = sorted(one_record(receiver, callback, 2), key=lambda r: r["is_async"])
    assert [r["call_type"] for r in records] == ["embedding", "embedding"]
    assert [r["usage"]["input_tokens"] for r in records] == [3, 2]
    assert records[0]["response"]["embeddings"] == 1
    # What the provider was sent (`input=`, a list or one string), not the chat messages LiteLLM's
    # payload wraps it in.
    assert [r["request"].get("input") for r in records] == [["one two three"], "four five"]
    assert "messages" not in records[0]["request"]
    assert "embedding" not in json.dumps(records[0]["response"]).replace(
        '"embeddings"', ""
    )  # no vectors shipped


@pytest.mark.parametrize(
    "is_async",
    [
        pytest.param(False, id="sync"),
        # (LiteLLM 1.80 reports the async one's end as a StopAsyncIteration failure before its success:
        # one record all the same, not a failed first attempt and the success as a second one.)
        pytest.param(True, id="async"),
    ],
)
def test_a_responses_api_stream_counts_its_events(provider, receiver, make_callback, is_async):
    """A Responses API stream's record says how many events came, as a chat stream's says its chunks."""
    callback = make_callback()
    kwargs = {"model": "openai/gpt-4o-mini", "input": "hi", "api_base": provider.url, "api_key": KEY}

    async def count_async() -> int:
        n = 0
        async for _ in await litellm.aresponses(stream=True, **kwargs):
            n += 1
        await asyncio.sleep(0.05)  # LiteLLM logs async stream success as a task on this loop
        return n

    events = (
        asyncio.run(count_async()) if is_async else sum(1 for _ in litellm.responses(stream=True, **kwargs))
    )
    record = one_record(receiver, callback)
    assert record["call_type"] == "responses" and record["stream"] is True
    assert events > 8 and record["chunk_count"] == events


def test_text_completion_image_and_responses(provider, receiver, make_callback):
    callback = make_callback()
    litellm.text_completion(
        model="openai/gpt-3.5-turbo-instruct", prompt="say three words", api_base=provider.url, api_key=KEY
    )
    litellm.image_generation(
        model="openai/dall-e-3", prompt="a red square", api_base=provider.url, api_key=KEY
    )
    litellm.responses(
        model="openai/gpt-4o-mini", input="what is two plus two", api_base=provider.url, api_key=KEY
    )
    records = {r["call_type"]: r for r in one_record(receiver, callback, 3)}
    assert set(records) == {"text_completion", "image_generation", "responses"}
    assert records["text_completion"]["usage"]["input_tokens"] == 3
    # LiteLLM takes its "text-completion-openai" route: OpenAI all the same, as the OTel layer says.
    assert {r["provider"] for r in records.values()} == {"openai"}
    assert {r["api_base"] for r in records.values()} == {provider.url}  # one server, one base
    assert records["responses"]["usage"]["input_tokens"] == 5
    assert all(r["status"] == "ok" for r in records.values())
    # Their prompts, as sent (LiteLLM's payload wraps them as chat messages).
    assert records["image_generation"]["request"]["input"] == "a red square"
    assert records["text_completion"]["request"]["input"] == "say three words"
    assert "messages" not in records["text_completion"]["request"]
    # Image bytes are summarized, never shipped.
    assert (
        "base64 chars" in json.dumps(records["image_generation"]["response"])
        or records["image_generation"]["response"]
    )


def test_other_text_completion_routes_are_named_by_their_provider(provider, receiver, make_callback):
    callback = make_callback()
    routes = {"text-completion-codestral/codestral-latest": "mistral", "azure_text/instruct": "azure"}
    for model in routes:  # the fake provider has neither endpoint: a failed call names its provider too
        # LiteLLM 1.110 answers a 404; 1.80 reaches other URLs of the fake provider and fails otherwise.
        with pytest.raises((litellm.NotFoundError, litellm.APIConnectionError, litellm.APIError)):
            litellm.text_completion(
                model=model, prompt="hi", api_base=provider.url, api_key=KEY, api_version="2024-02-01"
            )
    records = one_record(receiver, callback, 2)
    assert sorted((r["provider"], r["error"]["provider"]) for r in records) == [
        ("azure", "azure"),
        ("mistral", "mistral"),
    ]


def test_a_streamed_text_completion_has_its_text_where_an_unstreamed_one_has_it(
    provider, receiver, make_callback
):
    callback = make_callback()
    chunks = litellm.text_completion(
        model="openai/gpt-3.5-turbo-instruct",
        prompt="say three words",
        stream=True,
        api_base=provider.url,
        api_key=KEY,
    )
    text = "".join(c.choices[0].text or "" for c in chunks)
    record = one_record(receiver, callback)
    assert record["call_type"] == "text_completion" and record["stream"] is True
    assert record["response"]["choices"] == [{"index": 0, "finish_reason": "stop", "text": text}]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "fault",
    [{"x-fake-error": "500"}, {"x-fake-error": "401"}, {"x-fake-error": "429"}, {"x-fake-hang-ms": "2000"}],
    ids=["500", "401", "429", "timeout"],
)
def test_a_text_completion_stream_that_fails_before_its_first_chunk_is_recorded_once(
    provider, receiver, make_callback, is_async, fault
):
    """LiteLLM (1.80 to 1.110) reports no such failure: a streamed `text_completion` on OpenAI's
    text-completions route sends its request at the first chunk, after LiteLLM has handed the stream
    back and before its stream wrapper exists (docs/faq.md, "Some calls are missing"). litelens wraps
    that request and records it as LiteLLM records the same call unstreamed; the same stream broken
    after three chunks, which LiteLLM reports itself, is still recorded once."""
    callback = make_callback()

    def text_completion(headers: dict[str, str], streamed: bool = True, **extra: Any) -> None:
        kwargs = {
            "model": "openai/gpt-3.5-turbo-instruct",
            "prompt": "say three words",
            "stream": streamed,
            "api_base": provider.url,
            "api_key": KEY,
            "extra_headers": headers,
            "num_retries": 0,
            "max_retries": 0,
            **extra,
        }

        async def consume() -> None:
            answer = await litellm.atext_completion(**kwargs)
            if streamed:
                async for _ in answer:
                    pass

        if is_async:
            asyncio.run(consume())
        elif streamed:
            list(litellm.text_completion(**kwargs))
        else:
            litellm.text_completion(**kwargs)

    errors = (
        litellm.InternalServerError,
        litellm.AuthenticationError,
        litellm.RateLimitError,
        litellm.Timeout,
    )
    with pytest.raises(errors) as raised:
        text_completion(fault, timeout=0.5)
    streamed = one_record(receiver, callback)
    assert streamed["status"] == "error" and streamed["stream"] is True
    assert streamed["call_type"] == "text_completion" and streamed["is_async"] is is_async
    assert streamed["error"]["type"] == type(raised.value).__name__  # what the caller got
    assert streamed["request"]["input"] == "say three words"

    with pytest.raises(errors):
        text_completion(fault, streamed=False, timeout=0.5)
    unstreamed = one_record(receiver, callback, 2)[1]
    for key in ("provider", "request_model", "api_base", "call_type"):
        assert streamed[key] == unstreamed[key], key
    for key in ("type", "status_code", "provider"):
        assert streamed["error"][key] == unstreamed["error"][key], key

    # LiteLLM >= 1.100 maps the break to InternalServerError; 1.80 an async one to ServiceUnavailableError.
    with pytest.raises(
        (litellm.InternalServerError, litellm.ServiceUnavailableError, litellm.APIConnectionError)
    ):
        text_completion({"x-fake-drop-after": "3"})
    broken = one_record(receiver, callback, 3)[2]
    assert broken["status"] == "error" and broken["stream"] is True and broken["chunk_count"] == 3
    assert broken["call_type"] == "text_completion"


def test_recording_an_unstarted_stream_never_changes_the_callers_exception(
    provider, receiver, make_callback, monkeypatch
):
    """If LiteLLM's failure helper breaks, the caller still gets LiteLLM's own error, and litelens
    counts the miss where `litelens stats` shows it."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    callback = make_callback()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("failure helper broke")

    monkeypatch.setattr(Logging, "_failure_handler_helper_fn", broken)
    with pytest.raises(litellm.AuthenticationError):
        list(
            litellm.text_completion(
                model="openai/gpt-3.5-turbo-instruct",
                prompt="say three words",
                stream=True,
                api_base=provider.url,
                api_key=KEY,
                extra_headers={"x-fake-error": "401"},
                max_retries=0,
            )
        )
    assert callback.stats()["hook_errors"] == 1
    assert callback.flush(timeout=10) and receiver.records == []


def test_a_stream_failure_litelens_records_leaves_litellms_payload_as_it_was(
    provider, receiver, make_callback, monkeypatch
):
    """A proxy's failure hook names a stream its own code broke, and litelens records that failure with
    LiteLLM's failure helper. The helper writes into the call's payload in place, and the payload is
    still LiteLLM's: were it written into, a success report under way would tell every logger after
    litelens that the call failed and cost nothing. So the failure is built on a copy."""
    import litelens.callback

    monkeypatch.setattr(litelens.callback, "_UNREPORTED_WAIT_S", 0.05)
    callback = make_callback()

    async def broken_by_a_hook() -> dict[str, Any]:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "say five words"}],
            stream=True,
            api_base=provider.url,
            api_key=KEY,
        )
        await stream.__anext__()  # the client has its first chunk; then a hook raises, as on the proxy
        details = stream.logging_obj.model_call_details
        call_id = details["litellm_call_id"]
        await callback.async_post_call_failure_hook(
            {"litellm_call_id": call_id}, ValueError("stopped by a hook"), None
        )
        await asyncio.sleep(0.5)
        return details

    details = asyncio.run(broken_by_a_hook())
    record = one_record(receiver, callback)
    assert record["status"] == "error" and record["error"]["message"] == "stopped by a hook"
    assert record["chunk_count"] == 1
    assert "exception" not in details and details.get("log_event_type") != "failed_api_call"
    assert (details.get("standard_logging_object") or {}).get("status") != "failure"


def test_the_stream_recorder_is_installed_once_and_only_on_generators(make_callback, monkeypatch):
    from litellm.llms.openai.completion.handler import OpenAITextCompletion

    from litelens.recorders import _install_unstarted_stream_recorder

    make_callback()
    make_callback()
    _install_unstarted_stream_recorder()
    for name in ("streaming", "async_streaming"):
        wrapped = OpenAITextCompletion.__dict__[name]
        assert not hasattr(wrapped.__wrapped__, "__wrapped__"), name  # one layer, however many callbacks

    def streaming(self: Any, logging_obj: Any) -> list[Any]:  # a LiteLLM where it returns a list
        return []

    monkeypatch.setattr(OpenAITextCompletion, "streaming", streaming)
    monkeypatch.delattr(OpenAITextCompletion, "async_streaming")
    _install_unstarted_stream_recorder()
    assert OpenAITextCompletion.__dict__["streaming"] is streaming
    assert "async_streaming" not in OpenAITextCompletion.__dict__


def test_the_stream_recorder_behaves_as_the_generator_it_wraps():
    """Chunks, the return value and an early close() reach the wrapped generator as they would directly."""
    from litelens.recorders import _recording_async_stream, _recording_sync_stream

    closed: list[str] = []

    def streaming(self: Any, logging_obj: Any) -> Any:
        try:
            yield 1
            yield 2
            return "done"
        finally:
            closed.append("sync")

    async def async_streaming(self: Any, logging_obj: Any) -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append("async")

    wrapped = _recording_sync_stream(streaming, 1)(None, logging_obj=None)
    assert next(wrapped) == 1
    wrapped.close()
    assert closed == ["sync"]
    whole = _recording_sync_stream(streaming, 1)(None, None)
    assert list(whole) == [1, 2] and closed == ["sync", "sync"]
    gen = _recording_sync_stream(streaming, 1)(None, None)
    assert [next(gen), next(gen)] == [1, 2]
    with pytest.raises(StopIteration) as end:
        next(gen)
    assert end.value.value == "done"

    async def run() -> list[Any]:
        stream = _recording_async_stream(async_streaming, 1)(None, None)
        first = await stream.__anext__()
        await stream.aclose()
        return [first, *[c async for c in _recording_async_stream(async_streaming, 1)(None, None)]]

    assert asyncio.run(run()) == [1, 1, 2]
    assert closed[-2:] == ["async", "async"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_after_the_parent_called_records_its_own_sync_calls(provider, receiver, make_callback):
    """gunicorn --preload, or a multiprocessing pool, forks a process that has made calls already.
    LiteLLM reports a sync call from a thread pool whose threads the child does not inherit: the pool
    believed it had an idle one, started none, and every call of the child went unrecorded (and each
    flush waited out its whole timeout for the pool)."""
    callback = make_callback()
    call(provider, user="parent")
    one_record(receiver, callback)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child answers with its exit status
        code = 1
        try:
            call(provider, user="child")
            code = 0 if callback.flush(timeout=5) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    call(provider, user="parent-after")  # the parent's own pool still works
    assert receiver.wait_for(3, timeout=10), [r["end_user"] for r in receiver.records]
    assert callback.flush(timeout=10)
    assert sorted(r["end_user"] for r in receiver.records) == ["child", "parent", "parent-after"]
    assert len(receiver.unique_call_ids()) == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_after_async_calls_does_not_record_the_parents_calls_again(
    provider, receiver, make_callback
):
    """LiteLLM reports an async call from a queue that outlives `asyncio.run()`; a process forked then
    (a multiprocessing pool after an async warm-up) inherited a copy of that queue, and its flush (or
    its exit, or its first event loop) ran the parent's events: each call the parent had not reported
    yet was recorded again by every child."""
    callback = make_callback()

    async def calls() -> None:
        await asyncio.gather(
            *(
                litellm.acompletion(
                    model="openai/gpt-4o-mini",
                    messages=MESSAGES,
                    api_base=provider.url,
                    api_key=KEY,
                    user=f"parent-{i}",
                )
                for i in range(3)
            )
        )

    asyncio.run(calls())
    children = []
    for n in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child answers with its exit status
            code = 1
            try:
                call(provider, user=f"child-{n}")
                code = 0 if callback.flush(timeout=5) else 2
            finally:
                os._exit(code)
        children.append(pid)
    deadline = time.monotonic() + 30
    for pid in children:
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    assert callback.flush(timeout=10)  # the parent reports its own calls
    time.sleep(0.3)  # a duplicate would show up meanwhile
    users = sorted(r["end_user"] for r in receiver.records)
    assert users == ["child-0", "child-1", "parent-0", "parent-1", "parent-2"]


def test_a_call_litellm_cannot_price_has_no_cost_rather_than_zero(provider, receiver, make_callback):
    """A model missing from LiteLLM's price map is not free: the dashboard must not add it up as $0."""
    callback = make_callback()
    call(provider, model="openai/our-finetune-not-in-the-price-map")
    record = one_record(receiver, callback)
    assert record["status"] == "ok" and record["usage"]["output_tokens"] > 0
    assert record["cost_usd"] is None


def test_a_responses_input_given_as_items_is_recorded_as_given(provider, receiver, make_callback):
    callback = make_callback()
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "what is two plus two"}]},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": "and three plus three"},
    ]
    litellm.responses(model="openai/gpt-4o-mini", input=items, api_base=provider.url, api_key=KEY)
    record = one_record(receiver, callback)
    assert record["request"]["input"] == items and "messages" not in record["request"]


def test_parameters_litellm_leaves_out_of_its_payload_are_recorded_as_sent(provider, receiver, make_callback):
    """An image's size and quality (its price) and a Responses call's max_output_tokens (left out by
    LiteLLM 1.80) are what the provider was sent; the headers sent with them are not parameters."""
    callback = make_callback()
    headers = {"x-fake-latency-ms": "1"}
    kw = {"api_base": provider.url, "api_key": KEY, "extra_headers": headers}
    litellm.image_generation(
        model="openai/dall-e-3", prompt="a red square", size="1024x1024", quality="hd", **kw
    )
    image_sent = provider.requests[-1].json
    litellm.responses(model="openai/gpt-4o-mini", input="two plus two", max_output_tokens=20, **kw)
    responses_sent = provider.requests[-1].json
    records = {r["call_type"]: r for r in one_record(receiver, callback, 2)}
    image, responses = records["image_generation"]["request"], records["responses"]["request"]
    assert image["parameters"] == {"size": "1024x1024", "quality": "hd"}
    assert {k: image_sent[k] for k in ("size", "quality")} == image["parameters"]
    assert responses["parameters"] == {"max_output_tokens": responses_sent["max_output_tokens"]}


@pytest.mark.parametrize("capture", [True, False])
def test_responses_instructions_are_the_requests_system_prompt(provider, receiver, make_callback, capture):
    """`litellm.responses(instructions=...)` is the system prompt: request content, not a parameter, so
    it is kept where the OTel layer keeps it and left out with the rest of the content when asked."""
    callback = make_callback(capture_content=capture)
    response = litellm.responses(
        model="openai/gpt-4o-mini",
        input="what is two plus two",
        instructions="Answer in French.",
        temperature=0.2,
        api_base=provider.url,
        api_key=KEY,
    )
    assert response.instructions == "Answer in French."  # what the fake provider echoed back
    record = one_record(receiver, callback)
    assert record["request"]["parameters"] == {"temperature": 0.2}
    if capture:
        assert record["request"]["instructions"] == "Answer in French."
        assert record["request"]["input"] == "what is two plus two"  # as sent, not wrapped as a message
    else:
        assert "Answer in French." not in json.dumps(record)


@pytest.mark.parametrize(
    ("directive", "error_type", "status"),
    [
        ("429", "RateLimitError", 429),
        ("500", "InternalServerError", 500),
        ("503", "ServiceUnavailableError", 503),
        ("401", "AuthenticationError", 401),
    ],
)
def test_failures_carry_class_status_and_provider(
    provider, receiver, make_callback, directive, error_type, status
):
    callback = make_callback()
    with pytest.raises(Exception) as raised:
        call(
            provider,
            extra_headers={"x-fake-error": directive, "x-fake-retry-after": "0"},
            num_retries=0,
            max_retries=0,
        )
    record = one_record(receiver, callback)
    assert record["status"] == "error"
    assert record["error"]["type"] == error_type == type(raised.value).__name__
    assert record["error"]["status_code"] == status
    assert record["error"]["provider"] == "openai"
    assert record["error"]["message"]
    assert record["usage"]["output_tokens"] == 0


def test_timeout_is_recorded(provider, receiver, make_callback):
    callback = make_callback()
    with pytest.raises(litellm.Timeout):
        call(provider, extra_headers={"x-fake-hang-ms": "2000"}, timeout=0.3, num_retries=0, max_retries=0)
    record = one_record(receiver, callback)
    assert record["status"] == "error" and record["error"]["type"] == "Timeout"


def test_async_failure_is_recorded(provider, receiver, make_callback):
    callback = make_callback()

    async def go() -> None:
        with pytest.raises(litellm.RateLimitError):
            await litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                api_base=provider.url,
                api_key=KEY,
                extra_headers={"x-fake-error": "429"},
                num_retries=0,
                max_retries=0,
            )

    asyncio.run(go())
    record = one_record(receiver, callback)
    assert record["error"]["type"] == "RateLimitError" and record["is_async"] is True


def test_the_same_call_reported_twice_is_recorded_once(provider, receiver, make_callback):
    callback = make_callback()
    seen: list[dict[str, Any]] = []

    class Spy(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.append(kwargs)

    spy = Spy()
    litellm.callbacks.append(spy)
    try:
        call(provider)
        deadline = time.time() + 5
        while not seen and time.time() < deadline:
            time.sleep(0.01)
        callback.log_success_event(seen[0], None, None, None)  # LiteLLM has fired success twice on some paths
    finally:
        unregister(spy)  # LiteLLM copied it into its other lists; a leftover silenced later tests' loggers
    one_record(receiver, callback)
    assert callback.stats()["duplicates"] == 1


def test_unserializable_metadata_costs_one_field(provider, receiver, make_callback):
    callback = make_callback()

    class Opaque:
        __slots__ = ()

    call(provider, metadata={"fine": "yes", "odd": Opaque()})
    record = one_record(receiver, callback)
    assert record["metadata"]["fine"] == "yes"
    assert record["metadata"]["odd"].startswith("<unserializable")
    assert callback.stats()["unserializable_values"] == 1


def test_a_failing_processor_costs_only_its_records(provider, receiver, make_callback, caplog):
    seen = {"n": 0}

    def flaky(record: dict[str, Any]) -> dict[str, Any]:
        seen["n"] += 1
        if seen["n"] % 3 == 0:
            raise RuntimeError("processor bug")
        record["metadata"]["processed"] = True
        return record

    callback = make_callback(processors=[flaky])
    with caplog.at_level(logging.WARNING, logger="litelens"):
        for _ in range(9):
            call(provider)
    assert callback.flush(timeout=10)
    assert receiver.wait_for(6, timeout=10)
    time.sleep(0.2)
    assert len(receiver.records) == 6
    assert all(r["metadata"]["processed"] for r in receiver.records)
    assert callback.stats()["processor_errors"] == 3
    assert sum("processor" in m for m in caplog.messages) == 1  # logged once, then counted


@pytest.mark.parametrize("how", ["capture_content=False", "drop_content()"])
def test_content_capture_off_keeps_numbers_not_words(provider, receiver, make_callback, how):
    from litelens.pipeline import drop_content

    callback = make_callback(
        **({"capture_content": False} if how == "capture_content=False" else {"processors": [drop_content()]})
    )
    call(
        provider,
        extra_headers={"x-fake-tokens": "4"},
        seed=3,
        # Content passed as parameters: tools by their legacy name, and a predicted output's text.
        functions=[{"name": "lookup_customer", "description": "find ann@x.io", "parameters": {}}],
        prediction={"type": "content", "content": "Dear Ann, your refund"},
    )
    record = one_record(receiver, callback)
    assert record["usage"]["output_tokens"] == 4
    assert "messages" not in (record["request"] or {}) and record["response"] is None
    assert record["request"]["parameters"]["seed"] == 3
    text = json.dumps(record)
    assert "how are you today" not in text and "ann@x.io" not in text and "Dear Ann" not in text


def test_long_content_is_capped_and_marked(provider, receiver, make_callback):
    from litelens.config import Limits

    callback = make_callback(limits=Limits(max_string_chars=100, max_content_bytes=4_000))
    long_history = [{"role": "user", "content": f"message {i} " + "word " * 200} for i in range(30)]
    call(provider, messages=long_history)
    record = one_record(receiver, callback)
    assert record["truncated"]
    assert all(len(m["content"]) < 200 for m in record["request"]["messages"])
    assert record["usage"]["input_tokens"] == sum(len(m["content"].split()) for m in long_history)


def test_a_huge_structured_output_schema_is_capped_and_marked(provider, receiver, make_callback):
    from litelens.config import Limits

    # A response_format schema of a few thousand small fields: no string is long, so only the content
    # budget can bound it; it sat in parameters, which the budget never touched, and the whole record
    # went out at the schema's size (the server then refuses records that big, losing the call).
    callback = make_callback(limits=Limits(max_content_bytes=20_000))
    properties = {f"field_{i}": {"type": "string", "description": f"the {i}th field"} for i in range(3_000)}
    schema = {"name": "form", "schema": {"type": "object", "properties": properties}}
    call(provider, response_format={"type": "json_schema", "json_schema": schema}, temperature=0.5)
    record = one_record(receiver, callback)
    assert len(json.dumps(record)) < 40_000
    assert "request.parameters" in record["truncated"]
    assert record["request"]["parameters"]["temperature"] == 0.5  # the small ones stay
    assert record["usage"]["output_tokens"] > 0 and record["status"] == "ok"


def test_huge_session_and_user_names_are_capped_and_marked(provider, receiver, make_callback):
    from litelens.config import Limits

    callback = make_callback(limits=Limits(max_string_chars=100))
    huge = "x" * 50_000
    call(provider, user=huge, metadata={"session_id": huge, "user_id": huge})
    record = one_record(receiver, callback)
    for key in ("session_id", "end_user", "user_id"):
        assert record[key].startswith("x" * 100) and len(record[key]) < 200, key
        assert key in record["truncated"]
    # LiteLLM 1.110 makes the session its trace id (so that is cut too); 1.80 gives a fresh UUID.
    trace = record["litellm_trace_id"]
    assert len(trace) < 200 and (not trace.startswith("x") or "litellm_trace_id" in record["truncated"])
    assert sum(len(b["body"]) for b in receiver.bodies) < 10_000


def test_no_secret_reaches_the_receiver(provider, receiver, make_callback):
    litelens_key = "ll_live_litelenskey_abcdefghijklmnop"
    receiver.api_key = litelens_key
    callback = make_callback(api_key=litelens_key)
    call(
        provider,
        metadata={"headers": {"Authorization": f"Bearer {KEY}"}, "x-api-key": KEY, "note": f"key={KEY}"},
    )
    with pytest.raises(litellm.AuthenticationError):
        call(provider, extra_headers={"x-fake-error": "401"}, num_retries=0, max_retries=0)
    one_record(receiver, callback, 2)
    everything = "\n".join(b["body"].decode("utf-8", "replace") for b in receiver.bodies)
    assert KEY not in everything
    assert litelens_key not in everything
    assert "PROVIDERKEY" not in everything
    assert "input_cost_per_token" not in everything  # LiteLLM's pricing table stays home
    assert "model_map_information" not in everything


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_header_key_the_provider_echoes_back_never_leaves(provider, receiver, make_callback, stream):
    """A gateway's key of no known shape, sent in `extra_headers` (as Azure's `api-key` or a company
    gateway's `Authorization` are), and echoed whole by the provider's 401 or 400: the record keeps the
    error but not the key."""
    callback = make_callback()
    keys = {"Authorization": "GatewayTok9x8c7v6b5n4m", "api-key": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}
    for name, key in keys.items():
        value = f"Bearer {key}" if name == "Authorization" else key
        for status in ("401", "400"):
            with pytest.raises((litellm.AuthenticationError, litellm.BadRequestError)):
                response = call(
                    provider,
                    extra_headers={name: value, "x-fake-error": status, "x-fake-echo-key": "1"},
                    stream=stream,
                    num_retries=0,
                    max_retries=0,
                )
                for _ in response:
                    pass
    records = one_record(receiver, callback, 4)
    messages = [r["error"]["message"] for r in records]
    assert all(
        m.endswith(("incorrect API key provided: [REDACTED]", "bad request: [REDACTED]")) for m in messages
    ), messages
    everything = "\n".join(b["body"].decode("utf-8", "replace") for b in receiver.bodies)
    for key in keys.values():
        assert key not in everything


@pytest.mark.litellm_compat
@pytest.mark.parametrize("gathered", [False, True], ids=["awaited", "gathered"])
def test_flush_after_asyncio_run_includes_the_calls_of_that_loop(provider, receiver, make_callback, gathered):
    """`asyncio.run(handler())` then `flush()` (an async serverless handler): LiteLLM holds the last
    calls' success events for the loop that just ended; flush() must send them, not leave them for exit.

    Inside `asyncio.gather()` the loop runs a step further before it ends: LiteLLM's worker has made
    the event a task, which `asyncio.run()` then cancels before its first step, and LiteLLM forgets it."""
    callback = make_callback()

    async def chat() -> None:
        await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url, api_key=KEY
        )

    async def embed() -> None:
        await litellm.aembedding(
            model="openai/text-embedding-3-small", input=["a"], api_base=provider.url, api_key=KEY
        )

    async def handler(work: Any, count: int) -> None:
        if gathered:
            await asyncio.gather(*(work() for _ in range(count)))
        else:
            for _ in range(count):
                await work()

    made = 0
    for work in (chat, embed, chat):
        for count in (1, 2):
            asyncio.run(handler(work, count))
            made += count
            assert callback.flush(10)
            assert len(receiver.records) == made, (
                f"{work.__name__} x{count}: {made - len(receiver.records)} lost"
            )
    assert len({r["call_id"] for r in receiver.records}) == made
    assert all(r["is_async"] for r in receiver.records)


@pytest.mark.litellm_compat
def test_calls_of_several_asyncio_runs_before_one_flush_are_all_recorded(provider, receiver, make_callback):
    """A script that calls `asyncio.run()` once per task (a CLI command, a job runner) and flushes at the
    end: on LiteLLM 1.80 each new event loop's first log event threw away what the last loop had left in
    LiteLLM's queue, so only the last run's calls were recorded ("coroutine ... was never awaited" at
    exit). Each call is recorded once."""
    callback = make_callback()
    for i in range(3):
        asyncio.run(
            litellm.acompletion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": f"run {i}"}],
                api_base=provider.url,
                api_key=KEY,
            )
        )
    assert callback.flush(10)
    records = one_record(receiver, callback, 3)
    assert sorted(r["request"]["messages"][-1]["content"] for r in records) == ["run 0", "run 1", "run 2"]


@pytest.mark.parametrize("gathered", [False, True], ids=["awaited", "gathered"])
def test_a_flush_that_runs_out_of_time_leaves_the_last_call_to_the_next_flush(
    provider, receiver, make_callback, gathered
):
    """Another logger's slow async hook holds the leftover event past the first flush's timeout: that
    flush returns on time, the next one delivers the call, once, and no second runner thread starts."""
    import threading

    class Slow(litellm.integrations.custom_logger.CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            await asyncio.sleep(1.5)

    slow = Slow()
    litellm.callbacks.insert(0, slow)  # LiteLLM runs the loggers in order: litelens' hook waits behind it
    try:
        callback = make_callback()

        async def handler() -> None:
            call = litellm.acompletion(
                model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url, api_key=KEY
            )
            await (asyncio.gather(call) if gathered else call)

        asyncio.run(handler())
        began = time.monotonic()
        callback.flush(0.3)
        assert time.monotonic() - began < 1.2 and receiver.records == []
        callback.flush(0.3)  # also out of time: its leftovers queue behind the first flush's
        runners = [t for t in threading.enumerate() if t.name == "litelens-drain-litellm-logging"]
        assert len(runners) == 1, runners
        assert callback.flush(10)
        assert len(receiver.records) == 1
    finally:
        unregister(slow)


@pytest.mark.parametrize("gathered", [False, True], ids=["awaited", "gathered"])
def test_an_async_script_that_exits_at_once_still_delivers(provider, receiver, tmp_path, gathered):
    """`asyncio.run(main())` returning right after its call: LiteLLM only logs that call at exit, or,
    inside `asyncio.gather()`, never (its event is cancelled before it starts)."""
    import os
    import subprocess
    import sys

    call = (
        "litellm.acompletion(model='openai/gpt-4o-mini', messages=[{'role': 'user', 'content': 'bye now'}], "
        f"api_base='{provider.url}', api_key='sk-script-key-000000')"
    )
    script = tmp_path / "script.py"
    script.write_text(
        "import asyncio, litellm, litelens, sys\n"
        "litelens.init()\n"
        "async def main():\n"
        + (f"    await asyncio.gather({call})\n" if gathered else f"    await {call}\n")
        + "asyncio.run(main())\n"
    )
    env = {**os.environ, "LITELENS_ENDPOINT": receiver.url, "LITELENS_SPOOL_DIR": str(tmp_path / "spool")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert receiver.wait_for(1, timeout=10), out.stderr[-2000:]
    assert receiver.records[0]["usage"]["input_tokens"] == 2
    assert "never awaited" not in out.stderr


@pytest.mark.litellm_compat
@pytest.mark.parametrize("how", ["sync", "awaited", "gathered"])
def test_shutdown_right_after_the_last_call_delivers_it(provider, receiver, make_callback, how):
    """`shutdown()` is a flush too: the last call, which LiteLLM reports a moment after it returned (from
    its thread pool, or from the queue of a loop that just ended), is delivered before the sender stops."""
    callback = make_callback(spool_dir="off")  # nothing may be left for a later process to send
    if how == "sync":
        call(provider)
    else:

        async def handler() -> None:
            call = litellm.acompletion(
                model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url, api_key=KEY
            )
            await (asyncio.gather(call) if how == "gathered" else call)

        asyncio.run(handler())
    assert callback.shutdown(10)
    assert len(receiver.records) == 1 and callback.stats()["sent"] == 1


@pytest.mark.litellm_compat
@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_flush_right_after_a_call_includes_that_call(provider, receiver, make_callback, stream):
    """A serverless handler returns right after `flush()`: the call it just made must be in that flush,
    although LiteLLM reports it from its logging pool a moment after `completion()` returns."""
    callback = make_callback()
    for i in range(5):
        response = call(provider, stream=stream, metadata={"tags": [f"n{i}"]})
        if stream:
            list(response)
        assert callback.flush(timeout=10)
        assert len(receiver.records) == i + 1, f"call {i} was not delivered by the flush after it"


@pytest.mark.parametrize(
    "directive", [{"x-fake-drop-after": "3"}, {"x-fake-error": "429"}], ids=["mid", "start"]
)
def test_a_failed_stream_is_recorded_as_a_stream(provider, receiver, make_callback, directive):
    """LiteLLM leaves `stream` empty in a failed stream's payload; the record still says it was one."""
    callback = make_callback()
    # LiteLLM >= 1.100 raises MidStreamFallbackError for a stream cut mid-way; 1.80 an APIConnectionError.
    errors = (litellm.RateLimitError, litellm.exceptions.MidStreamFallbackError, litellm.APIConnectionError)
    with pytest.raises(errors):
        list(call(provider, stream=True, extra_headers=directive, num_retries=0, max_retries=0))
    record = one_record(receiver, callback)
    assert record["status"] == "error" and record["stream"] is True
    if "x-fake-error" in directive:
        assert record["ttft_ms"] is None  # no chunk came (a stream broken mid-way: the test below)


@pytest.mark.parametrize(
    "is_async",
    [
        pytest.param(False, id="sync"),
        pytest.param(
            True,
            id="async",
            marks=pytest.mark.skipif(
                Version(version("litellm")) < Version("1.100"),
                reason="LiteLLM 1.80.17 ends an async stream whose connection broke as if it had finished: "
                "no error, a success event (docs/core.md, Streams)",
            ),
        ),
    ],
)
def test_a_stream_broken_mid_way_keeps_its_first_chunks_time_and_the_text_received(
    provider, receiver, make_callback, is_async
):
    """Three chunks came, then the connection broke: the record has the stream's time to first token and
    the text the caller had already seen, not nothing."""
    callback = make_callback()
    kwargs = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": provider.url,
        "api_key": KEY,
        "stream": True,
        "extra_headers": {"x-fake-drop-after": "3", "x-fake-ttft-ms": "50", "x-fake-interval-ms": "100"},
        "num_retries": 0,
        "max_retries": 0,
    }
    seen: list[str] = []
    first_seen: list[float] = []

    def keep(chunk: Any) -> None:
        if not first_seen:
            first_seen.append(time.monotonic())
        seen.append(chunk.choices[0].delta.content or "")

    async def consume_async() -> None:
        async for chunk in await litellm.acompletion(**kwargs):
            keep(chunk)

    # LiteLLM >= 1.100 raises MidStreamFallbackError for a stream cut mid-way; 1.80 an APIConnectionError.
    started = time.monotonic()
    with pytest.raises((litellm.exceptions.MidStreamFallbackError, litellm.APIConnectionError)):
        if is_async:
            asyncio.run(consume_async())
        else:
            for chunk in litellm.completion(**kwargs):
                keep(chunk)
    record = one_record(receiver, callback)
    assert record["status"] == "error" and record["chunk_count"] == 3
    # The provider waited 50 ms before the first chunk, which the caller saw after LiteLLM timed it; the
    # break came later. (Not `duration - 200 ms`: a busy machine can deliver the three chunks at once.)
    assert (
        50 <= record["ttft_ms"] <= (first_seen[0] - started) * 1000
        and record["ttft_ms"] < record["duration_ms"]
    )
    [choice] = record["response"]["choices"]
    assert choice["message"]["content"] == "".join(seen) == "lorem ipsum dolor"
    assert choice["finish_reason"] is None


def test_secrets_inside_models_and_sets_in_metadata_are_removed(provider, receiver, make_callback):
    """Metadata values that are not plain JSON (a pydantic model, a set) are scrubbed like the rest."""
    from pydantic import BaseModel

    class Settings(BaseModel):
        api_key: str = "plain-looking-0123456789"
        note: str = "Bearer abcdefghijklmnopqrstuv"
        region: str = "eu"

    callback = make_callback()
    call(provider, metadata={"cfg": Settings(), "keys": {"sk-abcdefghijklmnop1234"}, "pw": frozenset({"x"})})
    record = one_record(receiver, callback)
    assert record["metadata"]["cfg"] == {"api_key": "[REDACTED]", "note": "Bearer [REDACTED]", "region": "eu"}
    assert record["metadata"]["keys"] == ["[REDACTED]"] and record["metadata"]["pw"] == ["x"]


def _failing_then_backup(
    provider: FakeProvider,
    error: str,
    num_retries: int,
    keys: tuple[str, str] = (KEY, KEY),
    ids: tuple[str, str] | None = None,
) -> Any:
    """A Router whose "main" deployment always answers `error`, retried `num_retries` times, then falls
    back to "backup", which answers."""
    deployments: list[dict[str, Any]] = [
        {
            "model_name": "main",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": provider.url,
                "api_key": keys[0],
                "extra_headers": {"x-fake-error": error},
            },
        },
        {
            "model_name": "backup",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": provider.url, "api_key": keys[1]},
        },
    ]
    for deployment, model_id in zip(deployments, ids or (), strict=False):
        deployment["model_info"] = {"id": model_id}
    return litellm.Router(
        model_list=deployments, fallbacks=[{"main": ["backup"]}], num_retries=num_retries, retry_after=0
    )


def test_router_attempts_are_recorded_each_without_router_bookkeeping(provider, receiver, make_callback):
    """A Router call that retries then falls back: one record per attempt, each naming its deployment,
    and the Router's own retry/fallback counters do not pass for the caller's metadata."""
    callback = make_callback()
    router = _failing_then_backup(provider, "500", 1, ids=("dep-failing", "dep-backup"))
    router.completion(model="main", messages=MESSAGES, metadata={"order": 7})
    records = sorted(one_record(receiver, callback, 3), key=lambda r: r["start_time"])
    assert len({r["call_id"] for r in records}) == 3
    assert [(r["status"], r["model_group"], r["deployment_id"]) for r in records] == [
        ("error", "main", "dep-failing"),
        ("error", "main", "dep-failing"),
        ("ok", "backup", "dep-backup"),
    ]
    assert [r["metadata"] for r in records] == [{"order": 7}] * 3


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_each_failed_router_attempt_says_how_many_retries_came_before_it(
    is_async, provider, receiver, make_callback
):
    """Each failed attempt's `error.retries` was null: a Router sets `num_retries` only on the exception
    it finally raises, after every attempt was recorded, so nothing told the first try from the second
    retry of the same deployment (the OTel layer's spans say it)."""
    callback = make_callback()
    router = _failing_then_backup(provider, "503", 2)
    for _ in range(2):  # a second request counts its own retries, not the first one's too
        if is_async:
            asyncio.run(router.acompletion(model="main", messages=MESSAGES))
        else:
            router.completion(model="main", messages=MESSAGES)
    assert callback.flush(timeout=10)  # the answer's record may still be with LiteLLM's logging worker
    records = sorted(one_record(receiver, callback, 8), key=lambda r: r["start_time"])
    # LiteLLM 1.80 counts no retries per request: unknown, never a wrong number.
    retries = [0, 1, 2] if Version(version("litellm")) >= Version("1.100") else [None, None, None]
    assert [r["error"]["retries"] if r["error"] else "ok" for r in records] == [*retries, "ok"] * 2


def test_router_streams_count_their_chunks(provider, receiver, make_callback):
    """A Router (LiteLLM 1.110) wraps each stream in one of its own, made with the call's logging object:
    the records still count the chunks the caller got, sync and async."""
    callback = make_callback()
    router = litellm.Router(
        model_list=[
            {
                "model_name": "main",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": provider.url, "api_key": KEY},
            }
        ]
    )
    got = [len(list(router.completion(model="main", messages=MESSAGES, stream=True)))]

    async def streamed() -> int:
        stream = await router.acompletion(model="main", messages=MESSAGES, stream=True)
        return len([chunk async for chunk in stream])

    got.append(asyncio.run(streamed()))
    records = sorted(one_record(receiver, callback, 2), key=lambda r: r["is_async"])
    for record, chunks in zip(records, got, strict=True):
        assert record["stream"] is True and record["status"] == "ok"
        assert record["chunk_count"] in (chunks, chunks + 1), (record["is_async"], chunks)


def test_an_sdk_router_requests_attempts_lead_to_each_other_on_the_server(
    provider, project_server, callback_to
):
    """An SDK Router gives each attempt a call id of its own, and the caller holds the one that answered
    (`_hidden_params["litellm_call_id"]`). Its page led nowhere: the 429s before it and the fallback's
    model group looked like unrelated calls. Stored by a real server, any attempt lists all of them, in
    order, with no provider key anywhere."""
    callback = callback_to(project_server)
    deployment_key, backup_key = "sk-router-deployment-0123456789", "sk-router-backup-9876543210"
    router = _failing_then_backup(provider, "429", 1, keys=(deployment_key, backup_key))
    answer = router.completion(model="main", messages=MESSAGES)
    router.completion(model="backup", messages=MESSAGES)  # another request: none of the attempts
    answered_id = answer._hidden_params["litellm_call_id"]
    assert callback.flush(timeout=10)
    client = project_server.client()
    for _ in range(100):
        if len(client.get_json("/api/calls?limit=10")["calls"]) == 4:
            break
        time.sleep(0.05)
    attempts = client.get_json(f"/api/calls/{answered_id}")["attempts"]
    assert [a["status"] for a in attempts] == ["error", "error", "ok"]
    assert attempts[-1]["call_id"] == answered_id
    records = [client.get_json(f"/api/calls/{a['call_id']}") for a in attempts]
    assert [(r["model_group"], r["cost_usd"] or 0) for r in records][:2] == [("main", 0), ("main", 0)]
    assert records[2]["model_group"] == "backup" and records[2]["cost_usd"] > 0
    assert records[0]["error"]["type"] == "RateLimitError"
    # The deployment's model as a plain call names it (and the OTel layer's span of the call does).
    assert [r["request_model"] for r in records] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    assert all(r["attempts"] == attempts for r in records)
    html = client.request(
        "GET",
        f"/calls/{attempts[0]['call_id']}",
        headers={"Cookie": f"litelens_key={project_server.key}"},
        key=None,
    ).body.decode()
    assert "Attempt <strong>1</strong> of 3" in html and f'href="/calls/{answered_id}"' in html
    for record in records:
        text = json.dumps(record)
        assert deployment_key not in text and backup_key not in text


@pytest.mark.parametrize("how", ["in_a_row", "tasks", "threads"])
def test_router_requests_sharing_the_callers_trace_id_name_their_own_first_attempts(
    how, provider, receiver, make_callback
):
    """Without the OTel layer too: a caller may give many Router requests one `litellm_trace_id`; each
    retry's and fallback's record names its own request's first attempt, never another request's (the
    server would list it among that request's attempts)."""
    callback = make_callback()
    sends = run_conversation(conversation_router(provider.url, KEY), how)
    assert callback.flush(timeout=10)  # the answers' records may still be with LiteLLM's logging worker
    records = one_record(receiver, callback, sends * sum(f + 1 for f in CONVERSATION.values()))
    by_request: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["start_time"]):
        by_request.setdefault(record["metadata"]["request"], []).append(record)
    for name, attempts in by_request.items():
        first, *later = attempts
        assert [r["status"] for r in attempts] == ["error"] * CONVERSATION[name[0]] + ["ok"], name
        assert "first_attempt_id" not in first, name
        assert [r.get("first_attempt_id") for r in later] == [first["call_id"]] * len(later), name


def test_a_cache_hit_is_one_free_record_naming_the_model_as_the_miss_did(
    provider, receiver, make_callback, monkeypatch
):
    import sys
    import types

    # LiteLLM 1.110's cache-hit path imports `soundfile` (a proxy dependency) and does not use it here.
    monkeypatch.setitem(
        sys.modules, "soundfile", sys.modules.get("soundfile") or types.ModuleType("soundfile")
    )
    callback = make_callback()
    litellm.cache = litellm.Cache(type="local")
    try:
        call(provider, caching=True)
        call(provider, caching=True)
    finally:
        litellm.cache = None
    miss, hit = sorted(one_record(receiver, callback, 2), key=lambda r: r["start_time"])
    assert len(provider.requests) == 1
    # The cost is LiteLLM's: 1.110 charges nothing for a hit, 1.80 the miss's price again.
    assert hit["cache_hit"] is True and miss["cost_usd"] > 0 and hit["cost_usd"] in (0, miss["cost_usd"])
    assert miss["request_model"] == "gpt-4o-mini"
    if hit["provider"] is not None:
        assert hit["request_model"] == "gpt-4o-mini"
    else:  # LiteLLM 1.80 reports a hit with no provider, so its name cannot be told from "org/model"
        assert hit["request_model"] == "openai/gpt-4o-mini"


# ---- moderation, transcription, speech and rerank: the calls that generate no text

AUDIO = b"RIFF" + bytes(64_000)  # 64,004 bytes: two seconds to the fake provider (32,000 bytes a second)


def run(name: str, is_async: bool, **kwargs: Any) -> Any:
    """`litellm.<name>(...)`, or `await litellm.a<name>(...)` on a loop of its own."""
    if not is_async:
        return getattr(litellm, name)(**kwargs)

    async def go() -> Any:
        return await getattr(litellm, f"a{name}")(**kwargs)

    return asyncio.run(go())


def only_record(receiver: Receiver, callback: Any) -> Any:
    # flush() first: it runs what LiteLLM still holds for an async call's loop that has ended.
    assert callback.flush(timeout=10)
    record = one_record(receiver, callback)
    # Whatever the call sent or got back, the record holds no audio: a few kilobytes at most.
    text = json.dumps(record)
    assert len(text) < 8_000 and "RIFF" not in text and "\\u0000" not in text
    return record


sync_and_async = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


@sync_and_async
def test_a_moderation_is_one_record_with_its_flags(provider, receiver, make_callback, is_async):
    callback = make_callback()
    response = run(
        "moderation",
        is_async,
        model="omni-moderation-latest",
        input="I will hurt you [[fake flag=violence,harassment]]",
        api_base=provider.url,
        api_key=KEY,
    )
    assert response.results[0].flagged is True
    record = only_record(receiver, callback)
    assert record["call_type"] == "moderation" and record["is_async"] is is_async
    assert record["litellm_call_type"] == ("amoderation" if is_async else "moderation")
    assert record["request_model"] == "omni-moderation-latest" and record["provider"] == "openai"
    assert record["status"] == "ok" and record["error"] is None and record["duration_ms"] > 0
    assert record["api_base"] == provider.url
    assert record["cost_usd"] == 0.0  # what LiteLLM's price map says of moderation models
    assert record["request"]["input"] == "I will hurt you [[fake flag=violence,harassment]]"
    (result,) = record["response"]["results"]
    assert result["flagged"] is True
    # The provider's category names, each once (LiteLLM adds a snake_case twin of some of them).
    assert sorted(result["categories"]) == ["harassment", "violence"]
    assert result["category_scores"]["violence"] == 0.9 and "self_harm" not in result["category_scores"]
    assert len(result["category_scores"]) == 13
    assert record["response_id"] == response.id


@sync_and_async
def test_a_transcription_names_its_file_and_keeps_the_transcript(provider, receiver, make_callback, is_async):
    callback = make_callback()
    response = run(
        "transcription",
        is_async,
        model="openai/whisper-1",
        file=("clip.wav", AUDIO, "audio/wav"),
        language="en",
        prompt="names: Ann, Bob",
        api_base=provider.url,
        api_key=KEY,
    )
    record = only_record(receiver, callback)
    assert record["call_type"] == "transcription" and record["is_async"] is is_async
    assert record["request_model"] == "whisper-1" and record["provider"] == "openai"
    assert record["status"] == "ok" and record["duration_ms"] > 0
    # The file by its name and size: never its bytes (LiteLLM's own payload holds their repr).
    assert record["request"]["input"] == {
        "file": {"name": "clip.wav", "size_bytes": len(AUDIO), "content_type": "audio/wav"},
        "prompt": "names: Ann, Bob",
    }
    # The parameters it was sent with (LiteLLM's payload has none of them; it asks for verbose_json).
    assert record["request"]["parameters"] == {"language": "en", "response_format": "verbose_json"}
    assert record["response"] == {"text": response.text, "language": "en", "duration": 2.0}
    # LiteLLM prices whisper by the second: two seconds.
    assert record["cost_usd"] == pytest.approx(2 * litellm.model_cost["whisper-1"]["input_cost_per_second"])


@sync_and_async
def test_a_transcription_billed_in_tokens_has_them_in_its_usage(provider, receiver, make_callback, is_async):
    callback = make_callback()
    response = run(
        "transcription",
        is_async,
        model="openai/gpt-4o-transcribe",
        file=("clip.wav", AUDIO, "audio/wav"),
        prompt="names: Ann [[fake usage_type=tokens]]",
        api_base=provider.url,
        api_key=KEY,
    )
    record = only_record(receiver, callback)
    # 20 audio tokens (two seconds) and the prompt's two words in, the transcript's eight words out.
    assert response.usage.input_tokens == 22
    usage = record["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (22, 8, 30)
    assert record["cost_usd"] and record["cost_usd"] > 0


def test_a_plain_whisper_answer_keeps_the_duration_its_usage_gives(provider, receiver, make_callback):
    callback = make_callback()
    litellm.transcription(
        model="openai/whisper-1",
        file=("clip.wav", AUDIO, "audio/wav"),
        response_format="json",
        prompt="[[fake duration=61.5]]",
        api_base=provider.url,
        api_key=KEY,
    )
    record = only_record(receiver, callback)
    # LiteLLM 1.110 asks for the plain answer, whose usage alone says how long the audio was (the
    # seconds billed, rounded up); LiteLLM 1.80 asks for the verbose one whatever the caller said.
    (sent,) = provider.requests
    duration = 62.0 if sent.json["response_format"] == "json" else 61.5
    assert record["response"]["text"] == "lorem ipsum dolor sit amet consectetur adipiscing elit"
    assert record["response"]["duration"] == duration
    assert record["usage"]["input_tokens"] == 0 and record["usage"]["output_tokens"] == 0


def test_a_transcription_of_an_open_file_names_the_file(provider, receiver, make_callback, tmp_path):
    callback = make_callback()
    path = tmp_path / "meeting.wav"
    path.write_bytes(AUDIO)
    with path.open("rb") as audio:
        litellm.transcription(model="openai/whisper-1", file=audio, api_base=provider.url, api_key=KEY)
    record = only_record(receiver, callback)
    assert record["request"]["input"] == {"file": {"name": "meeting.wav", "size_bytes": len(AUDIO)}}


@sync_and_async
def test_speech_keeps_its_text_and_the_size_of_the_audio(provider, receiver, make_callback, is_async):
    callback = make_callback()
    response = run(
        "speech",
        is_async,
        model="openai/tts-1",
        input="read this aloud please",
        voice="alloy",
        speed=1.5,
        api_base=provider.url,
        api_key=KEY,
    )
    assert len(response.content) == 4000  # 1,000 bytes a word
    record = only_record(receiver, callback)
    assert record["call_type"] == "speech" and record["is_async"] is is_async
    assert record["request_model"] == "tts-1" and record["provider"] == "openai" and record["status"] == "ok"
    assert record["request"]["input"] == "read this aloud please"
    assert record["request"]["parameters"]["speed"] == 1.5
    assert record["response"] == {"content_type": "audio/mpeg", "size_bytes": 4000}
    assert record["cost_usd"] and record["cost_usd"] > 0  # tts-1 is priced by the character


@sync_and_async
def test_speech_keeps_every_parameter_it_was_sent_with(provider, receiver, make_callback, is_async):
    callback = make_callback()
    run(
        "speech",
        is_async,
        model="openai/tts-1",
        input="read this aloud please",
        voice="nova",
        speed=1.25,
        response_format="wav",
        api_base=provider.url,
        api_key=KEY,
    )
    record = only_record(receiver, callback)
    parameters = record["request"]["parameters"]
    # LiteLLM 1.80 logs no speech request, and no voice anywhere a logger can read it.
    if Version(version("litellm")) >= Version("1.100"):
        assert parameters == {"voice": "nova", "speed": 1.25, "response_format": "wav"}
    else:
        assert parameters == {"speed": 1.25, "response_format": "wav"}
    assert record["response"] == {"content_type": "audio/wav", "size_bytes": 4000}


@sync_and_async
def test_a_rerank_keeps_query_documents_and_ranking(provider, receiver, make_callback, is_async):
    callback = make_callback()
    documents = ["a green pear", "a red apple", "a red car"]
    response = run(
        "rerank",
        is_async,
        model="cohere/rerank-v3.5",
        query="red apple",
        documents=documents,
        top_n=2,
        api_base=provider.url,
        api_key=KEY,
    )
    record = only_record(receiver, callback)
    assert record["call_type"] == "rerank" and record["is_async"] is is_async
    assert record["request_model"] == "rerank-v3.5" and record["provider"] == "cohere"
    assert record["status"] == "ok" and record["duration_ms"] > 0
    assert record["request"]["input"] == {"query": "red apple", "documents": documents}
    # Query and documents are content: LiteLLM lists them among the parameters, the record does not.
    parameters = record["request"]["parameters"]
    assert parameters["top_n"] == 2 and not {"query", "documents"} & set(parameters)
    assert (
        [r["index"] for r in record["response"]["results"]]
        == [r["index"] for r in response.results]
        == [1, 2]
    )
    assert record["response_id"] == response.id
    assert record["cost_usd"] == pytest.approx(litellm.model_cost["rerank-v3.5"]["input_cost_per_query"])
    if Version(version("litellm")) >= Version("1.100"):  # 1.80 reports no tokens for a rerank
        assert record["usage"]["input_tokens"] == 11  # the words of the query and the documents


def test_content_capture_off_leaves_no_query_documents_or_text(provider, receiver, make_callback):
    callback = make_callback(capture_content=False)
    litellm.rerank(
        model="cohere/rerank-v3.5",
        query="secret plan",
        documents=["secret plan one", "other"],
        top_n=1,
        api_base=provider.url,
        api_key=KEY,
    )
    litellm.speech(
        model="openai/tts-1", input="secret plan", voice="alloy", api_base=provider.url, api_key=KEY
    )
    litellm.moderation(
        model="omni-moderation-latest", input="secret plan", api_base=provider.url, api_key=KEY
    )
    records = one_record(receiver, callback, 3)
    assert "secret" not in json.dumps(records)
    rerank = next(r for r in records if r["call_type"] == "rerank")
    assert set(rerank["request"]) == {"parameters"} and rerank["request"]["parameters"]["top_n"] == 1


KINDS = {
    "moderation": {"model": "omni-moderation-latest", "input": "hello [[fake error={status}]]"},
    "transcription": {
        "model": "openai/whisper-1",
        "file": ("clip.wav", AUDIO, "audio/wav"),
        # LiteLLM does not send a transcription's extra headers: the directive goes in its prompt.
        "prompt": "[[fake error={status}]]",
    },
    "speech": {"model": "openai/tts-1", "input": "hello [[fake error={status}]]", "voice": "alloy"},
    "rerank": {"model": "cohere/rerank-v3.5", "query": "hello [[fake error={status}]]", "documents": ["a"]},
}


@pytest.mark.parametrize("kind", list(KINDS))
@sync_and_async
def test_a_failed_call_of_each_kind_is_one_error_record(provider, receiver, make_callback, kind, is_async):
    callback = make_callback()
    # The openai client retries a 500 itself, and sync moderation() does not pass max_retries on: a 422 is
    # not retried.
    status = 422 if (kind, is_async) == ("moderation", False) else 500
    kwargs = {k: v.format(status=status) if isinstance(v, str) else v for k, v in KINDS[kind].items()}
    with pytest.raises(Exception) as raised:
        run(kind, is_async, api_base=provider.url, api_key=KEY, max_retries=0, num_retries=0, **kwargs)
    record = only_record(receiver, callback)
    assert record["call_type"] == kind and record["status"] == "error"
    assert record["error"]["type"] == type(raised.value).__name__
    assert record["error"]["status_code"] == status
    assert record["error"]["provider"] == ("cohere" if kind == "rerank" else "openai")
    assert record["error"]["message"] and record["response"] is None
