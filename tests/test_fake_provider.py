"""The fake provider, exercised through real LiteLLM calls where the client stack matters.

What LiteLLM 1.110 needs for exact stream usage: it injects ``stream_options={"include_usage": True}``
on its own only when the api_base is OpenAI's; for any other api_base (this provider included) it
sends no ``stream_options``. The provider therefore always sends the usage chunk, and LiteLLM's
logging callbacks pick it up without ``stream_options``; the *caller* only sees ``usage`` on a chunk
when it passes ``stream_options={"include_usage": True}`` itself. Without the usage chunk LiteLLM
falls back to its own tokenizer estimate (see ``test_stream_usage_reaches_callbacks_without_stream_options``).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litelens.testing.fake_provider import FakeProvider, expected_usage, run_cli

litellm = pytest.importorskip("litellm")
openai = pytest.importorskip("openai")

SRC = Path(__file__).resolve().parents[1] / "src"
MODEL = "openai/gpt-4o-mini"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    # One server for the module keeps the suite fast; tests that count requests call reset().
    with FakeProvider() as fake:
        yield fake


def call(provider: FakeProvider, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("messages", [{"role": "user", "content": "hello fake world"}])
    return litellm.completion(
        api_base=provider.url, api_key="sk-fake", num_retries=0, max_retries=0, **kwargs
    )


def usage_of(obj: Any) -> dict[str, int]:
    usage = obj.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "reasoning_tokens": usage.completion_tokens_details.reasoning_tokens,
        "cached_tokens": usage.prompt_tokens_details.cached_tokens,
    }


def flat(expected: dict[str, Any]) -> dict[str, int]:
    return {
        "prompt_tokens": expected["prompt_tokens"],
        "completion_tokens": expected["completion_tokens"],
        "total_tokens": expected["total_tokens"],
        "reasoning_tokens": expected["completion_tokens_details"]["reasoning_tokens"],
        "cached_tokens": expected["prompt_tokens_details"]["cached_tokens"],
    }


# -- usage rule ---------------------------------------------------------------------------------


def test_expected_usage_rule() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one two three"}, {"type": "image_url"}]},
        {"role": "user", "content": "four [[fake tokens=3 reasoning=2 cached=1]]"},
    ]
    usage = expected_usage(messages)
    assert usage["prompt_tokens"] == 6  # directive words are not counted
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == 11
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 2
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1
    assert expected_usage("")["prompt_tokens"] == 1
    assert expected_usage("a b", max_tokens=2)["completion_tokens"] == 2
    assert expected_usage("a b", tokens=20)["completion_tokens"] == 20
    assert FakeProvider(tokens=4).expected_usage("a")["completion_tokens"] == 4


# -- chat ---------------------------------------------------------------------------------------


def test_plain_chat_exact_usage(provider: FakeProvider) -> None:
    messages = [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": "count these five words [[fake tokens=5 reasoning=3 cached=2]]"},
    ]
    response = call(provider, messages=messages)
    assert usage_of(response) == flat(expected_usage(messages))
    assert response.choices[0].message.content == "lorem ipsum dolor sit amet"
    assert response.choices[0].finish_reason == "stop"
    assert response.model.endswith("gpt-4o-mini")
    assert response.id.startswith("chatcmpl-fake-")


def test_headers_override_text_directives_and_max_tokens_caps(provider: FakeProvider) -> None:
    messages = [{"role": "user", "content": "hi [[fake tokens=5]]"}]
    response = call(provider, messages=messages, extra_headers={"x-fake-tokens": "12"}, max_tokens=10)
    assert response.usage.completion_tokens == 10
    assert response.choices[0].finish_reason == "length"
    assert usage_of(response) == flat(expected_usage(messages, max_tokens=10, tokens=12))


def test_several_choices_are_answered_and_paid_for_and_a_bad_n_is_refused(provider: FakeProvider) -> None:
    messages = [{"role": "user", "content": "pick one [[fake tokens=3 reasoning=2]]"}]
    response = call(provider, messages=messages, n=2)
    assert [(c.index, c.message.content) for c in response.choices] == [
        (0, "lorem ipsum dolor"),
        (1, "lorem ipsum dolor"),
    ]
    assert usage_of(response) == flat(expected_usage(messages, n=2))
    assert response.usage.completion_tokens == 2 * 3 + 2
    for bad in (0, 129, "2", 1.5, True):
        with pytest.raises(litellm.BadRequestError, match="Invalid 'n'"):
            call(provider, messages=messages, n=bad)


def test_stream_chunks_and_exact_usage(provider: FakeProvider) -> None:
    messages = [{"role": "user", "content": "stream me please [[fake tokens=6 chunks=3 reasoning=1]]"}]
    stream = call(provider, messages=messages, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "lorem ipsum dolor sit amet consectetur"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 3
    with_usage = [c for c in chunks if getattr(c, "usage", None)]
    assert usage_of(with_usage[-1]) == flat(expected_usage(messages))
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    assert usage_of(built) == flat(expected_usage(messages))


def test_stream_usage_reaches_callbacks_without_stream_options(provider: FakeProvider) -> None:
    from litellm.integrations.custom_logger import CustomLogger

    messages = [{"role": "user", "content": "three little words [[fake tokens=4 reasoning=2]]"}]
    seen: list[tuple[int, int]] = []

    class Capture(CustomLogger):
        def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
            # Callbacks run on a background thread: earlier tests' events may still arrive here.
            if kwargs.get("messages") == messages:
                seen.append((response_obj.usage.prompt_tokens, response_obj.usage.completion_tokens))

    capture = Capture()
    litellm.callbacks.append(capture)
    try:
        provider.reset()
        list(call(provider, messages=messages, stream=True))
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        litellm.callbacks.remove(capture)
    assert "stream_options" not in provider.requests[-1].json  # LiteLLM did not ask for usage...
    want = expected_usage(messages)
    assert seen == [(want["prompt_tokens"], want["completion_tokens"])]  # ...yet got the exact numbers


def test_ttft_delays_first_chunk(provider: FakeProvider) -> None:
    def first_chunk_seconds(ttft_ms: int) -> float:
        started = time.perf_counter()
        stream = call(provider, stream=True, extra_headers={"x-fake-ttft-ms": str(ttft_ms)})
        next(iter(stream))
        elapsed = time.perf_counter() - started
        list(stream)
        return elapsed

    # Best of three: one noisy-neighbour stall must not inflate the baseline on a shared machine.
    baseline = min(first_chunk_seconds(0) for _ in range(3))
    delayed = first_chunk_seconds(300)
    assert delayed >= 0.3
    assert delayed - baseline >= 0.15


def test_async_stream_and_concurrent_calls(provider: FakeProvider) -> None:
    async def stream_text() -> str:
        stream = await litellm.acompletion(
            model=MODEL,
            api_base=provider.url,
            api_key="sk-fake",
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def burst() -> list[Any]:
        calls = [
            litellm.acompletion(
                model=MODEL,
                api_base=provider.url,
                api_key="sk-fake",
                messages=[{"role": "user", "content": f"n {i}"}],
            )
            for i in range(40)
        ]
        return await asyncio.gather(*calls)

    assert asyncio.run(stream_text()) == " ".join(
        ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]
    )
    provider.reset()
    responses = asyncio.run(burst())
    assert all(r.usage.prompt_tokens == 2 for r in responses)
    assert len(provider.requests) == 40


def test_tool_call_is_parsed(provider: FakeProvider) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                },
            },
        }
    ]
    response = call(provider, tools=tools)
    assert response.choices[0].finish_reason == "tool_calls"
    tool_call = response.choices[0].message.tool_calls[0]
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "lorem", "unit": "c"}

    chunks = list(call(provider, tools=tools, stream=True))
    built = litellm.stream_chunk_builder(chunks)
    streamed = built.choices[0].message.tool_calls[0]
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == {"city": "lorem", "unit": "c"}

    assert call(provider, tools=tools, tool_choice="none").choices[0].message.tool_calls is None


# -- other endpoints ----------------------------------------------------------------------------


def test_embeddings_sync_async_and_base64(provider: FakeProvider) -> None:
    response = litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["alpha beta", "gamma"],
        api_base=provider.url,
        api_key="sk-fake",
        dimensions=5,
    )
    vectors = [item["embedding"] for item in response.data]
    assert [len(v) for v in vectors] == [5, 5]
    assert response.usage.prompt_tokens == 3

    async def again() -> Any:
        return await litellm.aembedding(
            model="openai/text-embedding-3-small",
            input=["alpha beta", "gamma"],
            api_base=provider.url,
            api_key="sk-fake",
            dimensions=5,
        )

    assert [item["embedding"] for item in asyncio.run(again()).data] == vectors  # deterministic

    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    body = {"model": "m", "input": "alpha beta", "encoding_format": "base64"}
    conn.request("POST", "/v1/embeddings", json.dumps(body), {"Content-Type": "application/json"})
    encoded = json.loads(conn.getresponse().read())["data"][0]["embedding"]
    conn.close()
    decoded = list(struct.unpack("<8f", base64.b64decode(encoded)))  # dims directive default: 8
    assert len(decoded) == 8


def test_text_completion_plain_and_stream(provider: FakeProvider) -> None:
    provider.reset()
    prompt = "complete this sentence [[fake tokens=4]]"
    response = litellm.text_completion(
        model="text-completion-openai/gpt-3.5-turbo-instruct",
        prompt=prompt,
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert response.choices[0].text == "lorem ipsum dolor sit"
    assert response.usage.prompt_tokens == 3
    assert response.usage.completion_tokens == 4
    assert provider.requests[-1].path == "/v1/completions"

    chunks = list(
        litellm.text_completion(
            model="text-completion-openai/gpt-3.5-turbo-instruct",
            prompt=prompt,
            api_base=provider.url,
            api_key="sk-fake",
            stream=True,
        )
    )
    assert "".join(c.choices[0].text or "" for c in chunks if c.choices) == "lorem ipsum dolor sit"


def test_image_generation(provider: FakeProvider) -> None:
    response = litellm.image_generation(
        model="openai/dall-e-3", prompt="a cat", api_base=provider.url, api_key="sk-fake"
    )
    assert base64.b64decode(response.data[0].b64_json).startswith(b"\x89PNG")
    # LiteLLM 1.110 refuses response_format for openai/dall-e-3, so the url variant is checked raw.
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    body = json.dumps({"model": "dall-e-3", "prompt": "a cat", "response_format": "url", "n": 2})
    conn.request("POST", "/v1/images/generations", body, {"Content-Type": "application/json"})
    urls = [item["url"] for item in json.loads(conn.getresponse().read())["data"]]
    assert len(urls) == 2 and all(url.startswith(provider.url) for url in urls)
    conn.request("GET", urls[0].removeprefix(f"http://127.0.0.1:{provider.port}"))
    assert conn.getresponse().read().startswith(b"\x89PNG")
    conn.close()


def test_responses_api_plain_and_stream(provider: FakeProvider) -> None:
    text = "tell me something [[fake tokens=5 reasoning=2 cached=1]]"
    response = litellm.responses(model=MODEL, input=text, api_base=provider.url, api_key="sk-fake")
    want = expected_usage(text)
    assert response.usage.input_tokens == want["prompt_tokens"]
    assert response.usage.output_tokens == want["completion_tokens"]
    assert response.usage.total_tokens == want["total_tokens"]
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert response.output[0].content[0].text == "lorem ipsum dolor sit amet"

    events = list(
        litellm.responses(model=MODEL, input=text, api_base=provider.url, api_key="sk-fake", stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "lorem ipsum dolor sit amet"
    assert events[-1].response.usage.output_tokens == want["completion_tokens"]


# -- moderations, audio and rerank ------------------------------------------------------------------

WAV = b"RIFF" + bytes(31_996)  # 32,000 bytes: one second to the provider


def test_moderation_flags_the_categories_a_directive_names(provider: FakeProvider) -> None:
    clean = litellm.moderation(input="hello there", api_base=provider.url, api_key="sk-fake")
    assert clean.results[0].flagged is False
    flagged = litellm.moderation(
        input="hello [[fake flag=violence,self-harm/intent]]",
        model="omni-moderation-latest",
        api_base=provider.url,
        api_key="sk-fake",
    )
    result = flagged.results[0]
    assert result.flagged is True
    assert result.categories["violence"] is True and result.categories["self-harm/intent"] is True
    assert result.categories["hate"] is False
    assert result.category_scores["violence"] == 0.9 and result.category_scores["hate"] == 0.001
    assert flagged.model == "omni-moderation-latest" and flagged.id.startswith("modr-fake-")


def test_moderation_of_a_list_has_one_result_per_input_and_refuses_unknown_categories(
    provider: FakeProvider,
) -> None:
    response = litellm.moderation(input=["one", "two"], api_base=provider.url, api_key="sk-fake")
    assert len(response.results) == 2
    with pytest.raises(openai.BadRequestError, match="unknown moderation category"):
        litellm.moderation(input="x [[fake flag=rudeness]]", api_base=provider.url, api_key="sk-fake")


def test_transcription_takes_a_multipart_upload_and_answers_in_each_format(provider: FakeProvider) -> None:
    provider.reset()
    whisper = litellm.transcription(
        model="openai/whisper-1",
        file=("clip.wav", WAV, "audio/wav"),
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert whisper.text == "lorem ipsum dolor sit amet consectetur adipiscing elit"
    assert whisper.duration == 1.0  # LiteLLM asks for verbose_json for whisper, to price the seconds
    # The request log names the upload and never holds the audio.
    (request,) = provider.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.json["file"] == {"filename": "clip.wav", "content_type": "audio/wav", "size": len(WAV)}
    assert request.json["response_format"] == "verbose_json"

    client = openai.OpenAI(base_url=provider.url, api_key="sk-fake", max_retries=0)
    # Directives go in the prompt (a form field) or in headers; duration overrides the size rule.
    plain = client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", WAV), prompt="[[fake tokens=3 duration=4.5]]"
    )
    assert plain.text == "lorem ipsum dolor"
    assert plain.usage is not None and plain.usage.seconds == 5  # type: ignore[union-attr]
    # gpt-4o-transcribe's usage, in tokens: ten a second of audio (rounded up) and the prompt's words in,
    # the transcript's words out.
    billed = client.audio.transcriptions.create(
        model="gpt-4o-transcribe",
        file=("a.wav", WAV),
        prompt="names: Ann [[fake tokens=3 usage_type=tokens]]",
    )
    assert billed.usage is not None and billed.usage.model_dump() == {
        "type": "tokens",
        "input_tokens": 12,
        "input_token_details": {"text_tokens": 2, "audio_tokens": 10},
        "output_tokens": 3,
        "total_tokens": 15,
    }
    text = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV), response_format="text")
    assert text == "lorem ipsum dolor sit amet consectetur adipiscing elit"
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", WAV), response_format="srt", extra_headers={"x-fake-tokens": "2"}
    )
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\nlorem ipsum\n"


def test_speech_returns_audio_bytes_sized_by_the_input(provider: FakeProvider) -> None:
    mp3 = litellm.speech(
        model="openai/tts-1",
        input="three words here",
        voice="alloy",
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert len(mp3.content) == 3000 and mp3.response.headers["content-type"] == "audio/mpeg"
    wav = litellm.speech(
        model="openai/tts-1",
        input="hi [[fake audio_bytes=144]]",
        voice="alloy",
        response_format="wav",
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert len(wav.content) == 144 and wav.content.startswith(b"RIFF") and wav.content[8:12] == b"WAVE"
    assert struct.unpack("<I", wav.content[40:44])[0] == 100  # the data chunk's size
    assert wav.response.headers["content-type"] == "audio/wav"


def test_rerank_orders_documents_by_shared_words(provider: FakeProvider) -> None:
    provider.reset()
    documents = ["a green pear", "a red apple", "a red car"]
    response = litellm.rerank(
        model="cohere/rerank-v3.5",
        query="red apple",
        documents=documents,
        top_n=2,
        return_documents=True,
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert [r["index"] for r in response.results] == [1, 2]
    assert response.results[0]["document"] == {"text": "a red apple"}
    assert response.results[0]["relevance_score"] > response.results[1]["relevance_score"] > 0.49
    assert response.meta["billed_units"] == {"search_units": 1}
    assert response.meta["tokens"] == {"input_tokens": 11, "output_tokens": 0}
    # LiteLLM's cohere route appends /v2/rerank to the api_base; /rerank and /v1/rerank are served too.
    assert provider.requests[0].path == "/v1/v2/rerank"
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        body = json.dumps({"model": "m", "query": "red", "documents": [{"text": "red"}, "blue"]})
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        ranked = json.loads(conn.getresponse().read())["results"]
        assert [r["index"] for r in ranked] == [0, 1] and "document" not in ranked[0]
    conn.close()


@pytest.mark.parametrize("kind", ["moderation", "transcription", "speech", "rerank"])
def test_the_error_knobs_work_on_every_new_endpoint(provider: FakeProvider, kind: str) -> None:
    client = openai.OpenAI(base_url=provider.url, api_key="sk-fake", max_retries=0)
    headers = {"x-fake-error": "503", "x-fake-retry-after": "2"}
    with pytest.raises(openai.APIStatusError) as caught:
        if kind == "moderation":
            client.moderations.create(input="hi", extra_headers=headers)
        elif kind == "transcription":
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV), extra_headers=headers)
        elif kind == "speech":
            client.audio.speech.create(model="tts-1", input="hi", voice="alloy", extra_headers=headers)
        else:
            client.post(
                "/rerank",
                body={"model": "m", "query": "q", "documents": ["d"]},
                cast_to=object,
                options={"headers": headers},
            )
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "2"


def test_a_malformed_upload_is_a_400(provider: FakeProvider) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    conn.request("POST", "/v1/audio/transcriptions", b"--xyz\r\nnot a part\r\n--xyz--\r\n", headers)
    response = conn.getresponse()
    assert response.status == 400 and "file" in json.loads(response.read())["error"]["message"]
    conn.close()


# -- failures -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_rate_limit_error(provider: FakeProvider) -> None:
    provider.reset()
    with pytest.raises(litellm.RateLimitError) as caught:
        call(provider, extra_headers={"x-fake-error": "429", "x-fake-retry-after": "7"})
    assert caught.value.status_code == 429
    assert len(provider.requests) == 1  # no hidden retries


def test_error_body_and_retry_after_header(provider: FakeProvider) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "x [[fake error=429 retry_after=7]]"}]}
    )
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = json.loads(response.read())
    conn.close()
    assert response.status == 429
    assert response.getheader("Retry-After") == "7"
    assert payload["error"]["type"] == "requests"
    assert payload["error"]["code"] == "rate_limit_exceeded"


def test_500_is_internal_server_error(provider: FakeProvider) -> None:
    with pytest.raises(litellm.InternalServerError):
        call(provider, messages=[{"role": "user", "content": "boom [[fake error=500]]"}])


def test_drop_after_breaks_the_stream(provider: FakeProvider) -> None:
    stream = call(provider, stream=True, extra_headers={"x-fake-drop-after": "2", "x-fake-tokens": "10"})
    received = []
    # LiteLLM 1.110 raises MidStreamFallbackError; its base, openai.APIError, is the stable contract.
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) == 2


def test_hang_trips_client_timeout(provider: FakeProvider) -> None:
    with pytest.raises(litellm.Timeout):
        call(provider, timeout=0.3, extra_headers={"x-fake-hang-ms": "1500"})
    # The abandoned handler must not take the server down with it.
    assert call(provider).choices[0].message.content


def test_error_times_then_success(provider: FakeProvider) -> None:
    provider.reset()
    headers = {"x-fake-error-times": "1", "x-fake-error": "503", "x-fake-key": "retry-test"}
    with pytest.raises(litellm.ServiceUnavailableError):
        call(provider, extra_headers=headers)
    assert call(provider, extra_headers=headers).choices[0].message.content
    assert len(provider.requests) == 2


# -- HTTP behaviour -----------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(provider: FakeProvider) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    local_ports = set()
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    for path in ("/health", "/v1/models", "/v1/chat/completions", "/v1/nope"):
        method = "POST" if "chat" in path or "nope" in path else "GET"
        conn.request(method, path, body if method == "POST" else None, {"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read())
        assert conn.sock is not None
        local_ports.add(conn.sock.getsockname()[1])
        if path == "/v1/nope":
            assert response.status == 404
            assert set(payload["error"]) >= {"message", "type", "code"}
    conn.close()
    assert len(local_ports) == 1


def test_raw_stream_is_chunked_sse_and_connection_survives(provider: FakeProvider) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=5)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    lines = [line for line in response.read().decode().split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["choices"] == []
    first_sock = conn.sock
    conn.request("GET", "/health")
    assert conn.getresponse().read() and conn.sock is first_sock
    conn.close()


def test_requests_log_records_headers_and_body(provider: FakeProvider) -> None:
    provider.reset()
    call(provider, extra_headers={"X-Custom": "yes"})
    (request,) = provider.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["x-custom"] == "yes"
    assert request.json["model"] == "gpt-4o-mini"


# -- CLI and fixtures ---------------------------------------------------------------------------


def test_cli_serves_and_exits_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "litelens.testing.fake_provider", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_cli_rejects_bad_set() -> None:
    with pytest.raises(SystemExit):
        run_cli(["--set", "novalue"])


def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixture.py").write_text(
        "import http.client\n"
        "def test_it(fake_provider, fake_provider_session):\n"
        "    for p in (fake_provider, fake_provider_session):\n"
        "        conn = http.client.HTTPConnection('127.0.0.1', p.port, timeout=5)\n"
        "        conn.request('GET', '/health')\n"
        "        assert conn.getresponse().status == 200\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    # "no:litelens" blocks the installed entry point (if any) so -p cannot register it twice.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:litelens", "-p", "litelens.testing.pytest_plugin"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stop_is_prompt_with_idle_keep_alive_and_hanging_handler() -> None:
    fake = FakeProvider().start()
    idle = socket.create_connection(("127.0.0.1", fake.port))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.recv(1024)
    hanging = socket.create_connection(("127.0.0.1", fake.port))
    hanging.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-hang-ms: 30000\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    time.sleep(0.1)
    started = time.perf_counter()
    fake.stop()
    assert time.perf_counter() - started < 2
    idle.close()
    hanging.close()


def test_a_long_running_provider_keeps_only_the_newest_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider left running (`litelens fake-provider`, a soak, a benchmark) must not keep every body it
    was sent: its memory grew by a few KB a call, without end. Tests still see the latest requests."""
    from litelens.testing import fake_provider

    monkeypatch.setattr(fake_provider, "MAX_KEPT_REQUESTS", 5, raising=False)
    with FakeProvider() as fake:
        for i in range(12):
            conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
            body = json.dumps({"model": "m", "input": f"call {i}"})
            conn.request("POST", "/v1/embeddings", body, {"content-type": "application/json"})
            assert conn.getresponse().status == 200
            conn.close()
        kept = fake.requests
    assert [r.json["input"] for r in kept] == [f"call {i}" for i in range(7, 12)]


def test_stop_is_prompt_when_the_listener_woke_for_a_connection_taken_elsewhere() -> None:
    """The server's loop accepts once its poll says the listener is ready; an accept() that then found
    nothing blocked its thread until the next client, and stop() waited for that thread forever (a
    test_network run sat 12 minutes in a provider's teardown, its thread in accept() with nothing
    pending). Here the connection the loop woke for is taken by another acceptor before its accept()."""
    fake = FakeProvider().start()
    server = fake._server
    assert server is not None
    woke, taken = threading.Event(), threading.Event()
    accept = server.get_request

    def late_accept() -> tuple[socket.socket, Any]:
        woke.set()
        taken.wait(5)
        return accept()

    def take() -> None:
        woke.wait(5)
        conn, _ = server.socket.accept()
        conn.close()
        taken.set()

    server.get_request = late_accept  # type: ignore[method-assign]
    threading.Thread(target=take, daemon=True).start()
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5):
        assert taken.wait(5)
    time.sleep(0.2)  # the loop is past its accept() now, or stuck in it
    stopper = threading.Thread(target=fake.stop, daemon=True)
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "stop() waited on a thread blocked in accept()"
    # And the provider starts again on its port and answers, as after any stop.
    fake.start()
    try:
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(64).startswith(b"HTTP/1.")
    finally:
        fake.stop()
