"""One line in a LiteLLM proxy's config.yaml loads litelens: tested against a real `litellm --config`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from litelens.pipeline import Pipeline, from_env
from litelens.testing import FakeProvider, Receiver
from litelens.testing.fake_provider import expected_usage
from server_helpers import ServerProcess, free_port

pytestmark = pytest.mark.service

MASTER_KEY = "sk-master-proxy-test-7c1d9e0f2b3a4c5d"
PROVIDER_KEY = "sk-provider-behind-proxy-0123456789"

CONFIG = """\
model_list:
  - model_name: chat-small
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: {key}
  - model_name: embedder
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {base}
      api_key: {key}
  - model_name: broken
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {broken}
      api_key: {key}
  - model_name: painter
    litellm_params:
      model: openai/dall-e-3
      api_base: {base}
      api_key: {key}
    model_info:
      mode: image_generation
  - model_name: listener
    litellm_params:
      model: openai/whisper-1
      api_base: {base}
      api_key: {key}
  - model_name: broken-embedder
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {broken}
      api_key: {key}
    model_info:
      mode: embedding
router_settings:
  num_retries: 0
  fallbacks: [{{"broken": ["chat-small"]}}]
litellm_settings:
  callbacks: ["stream_hook.slow_logger", "litelens.handler", "stream_hook.instance"]
"""

# A proxy hook that breaks a stream after its first chunk when the prompt asks it to, as a guardrail
# that blocks mid-stream or a hook with a bug does. LiteLLM loads it from the config file's folder.
# With it, a logger that holds up LiteLLM's reports when the prompt asks it to, as a slow one
# (or a busy logging queue) does: listed before litelens, it is awaited before litelens hears.
STREAM_HOOK = """\
import asyncio

import litellm
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException


class SlowLogger(CustomLogger):
    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        if "[[slow log]]" in str(kwargs.get("messages")):
            await asyncio.sleep(2.5)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if "[[slow log]]" in str(kwargs.get("messages")):
            await asyncio.sleep(2.5)


slow_logger = SlowLogger()


class StreamHook(CustomLogger):
    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        said = str(request_data.get("messages"))
        async for chunk in response:
            yield chunk
            if "[[hook stop]]" in said:
                raise ValueError("stopped by a hook")
            if "[[hook block]]" in said:
                raise HTTPException(status_code=400, detail="blocked by a guardrail")
            if "[[hook proxy block]]" in said:
                raise ProxyException(message="blocked by a guardrail", type="guardrail", param=None, code=400)
            if "[[hook stop at usage]]" in said and getattr(chunk, "usage", None):
                raise ValueError("stopped by a hook at the end")  # as a guardrail that checks the whole answer
            if "[[hook refuse]]" in said:
                # One of LiteLLM's own exception classes, which LiteLLM raises for providers' errors too.
                raise litellm.BadRequestError("refused by a hook", model="gpt-4o-mini", llm_provider="openai")
        # An output guardrail that reads the whole answer, then refuses it.
        if "[[hook refuses the answer]]" in said:
            raise ValueError("the answer broke the output policy")


instance = StreamHook()
"""


def write_config(folder: Path, base: str, broken: str) -> Path:
    (folder / "stream_hook.py").write_text(STREAM_HOOK)
    config = folder / "config.yaml"
    config.write_text(CONFIG.format(base=base, broken=broken, key=PROVIDER_KEY))
    return config


class Stack(NamedTuple):
    port: int
    receiver: Receiver
    provider: FakeProvider
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def proxy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = os.environ.get("LITELENS_TEST_PROXY_BIN")
    if not binary:
        pytest.skip("set LITELENS_TEST_PROXY_BIN to a `litellm` proxy binary with litelens installed")
    tmp = tmp_path_factory.mktemp("proxy")
    # `broken` is a deployment whose provider fails every call: the router falls back to chat-small.
    with FakeProvider() as provider, FakeProvider(error=500) as broken, Receiver() as receiver:
        config = write_config(tmp, provider.url, broken.url)
        port = free_port()
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELENS_ENDPOINT": receiver.url,
            "LITELENS_SPOOL_DIR": str(tmp / "spool"),
            "LITELENS_SERVICE": "proxy-under-test",
        }
        with running_proxy(binary, config, port, env, tmp) as process:
            yield Stack(port, receiver, provider, process)


@contextlib.contextmanager
def running_proxy(
    binary: str, config: Path, port: int, env: dict[str, str], tmp: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A `litellm --config` process, ready (its liveliness probe answers), stopped at the end."""
    log_path = tmp / f"proxy-{port}-{time.monotonic_ns()}.log"
    log = open(log_path, "w")  # noqa: SIM115 - open for the proxy's whole life, closed below
    process = subprocess.Popen(
        [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if process.poll() is not None:
                raise AssertionError("proxy exited:\n" + log_path.read_text()[-3000:])
            try:
                status, _ = request(port, "GET", "/health/liveliness")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("proxy did not start:\n" + log_path.read_text()[-3000:])
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def request(port: int, method: str, path: str, body: Any = None, stream: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def new_records(receiver: Receiver, before: int, n: int) -> list[dict[str, Any]]:
    """The `n` records that arrived after the first `before` (failing if they do not all arrive)."""
    assert receiver.wait_for(before + n, timeout=30), f"got {len(receiver.records) - before} of {n} records"
    time.sleep(0.3)  # one more would be a duplicate: give it the time to show up
    records = receiver.records[before:]
    assert len(records) == n, records
    return records


def test_proxy_records_chat_stream_and_embeddings(proxy_stack: Stack) -> None:
    port, receiver = proxy_stack.port, proxy_stack.receiver
    messages = [{"role": "user", "content": "hello from behind the proxy"}]
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "chat-small",
            "messages": messages,
            "metadata": {"tags": ["via-proxy"], "ticket": "T-1"},
            "user": "customer-9",
        },
    )
    assert status == 200, body
    call_id_plain = json.loads(body)["id"]
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "chat-small",
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert status == 200 and b"[DONE]" in body
    status, body = request(
        port, "POST", "/v1/embeddings", {"model": "embedder", "input": ["embed these four words"]}
    )
    assert status == 200, body

    assert receiver.wait_for(3, timeout=30), f"got {len(receiver.records)} records"
    records = {(r["call_type"], r["stream"]): r for r in receiver.records}
    assert set(records) == {("chat", False), ("chat", True), ("embedding", False)}
    chat = records[("chat", False)]
    assert chat["response_id"] == call_id_plain
    assert chat["usage"]["input_tokens"] == 5 and chat["usage"]["output_tokens"] > 0
    assert chat["model_group"] == "chat-small"
    assert chat["deployment_id"]
    assert chat["tags"] == ["via-proxy"]
    assert chat["metadata"] == {"ticket": "T-1"}  # the request's metadata, not the proxy's bookkeeping
    assert chat["end_user"] == "customer-9"
    assert chat["service"] == "proxy-under-test"
    assert chat["proxy"] and chat["proxy"].get("key_hash")
    assert records[("chat", True)]["ttft_ms"] is not None
    assert records[("embedding", False)]["usage"]["input_tokens"] == 4

    everything = "\n".join(b["body"].decode("utf-8", "replace") for b in receiver.bodies)
    assert MASTER_KEY not in everything
    assert PROVIDER_KEY not in everything
    assert "input_cost_per_token" not in everything


def test_proxy_fallback_records_each_attempt(proxy_stack: Stack, sqlite_server: ServerProcess) -> None:
    """The client gets one answer; the router made two attempts, and each is a record of its own. The
    call id the client got leads, on the server, to the attempt that answered it."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "broken", "messages": [{"role": "user", "content": "hi"}]}),
        {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    status, body, call_id = response.status, response.read(), response.getheader("x-litellm-call-id")
    conn.close()
    assert status == 200, body
    attempts = {r["model_group"]: r for r in new_records(receiver, before, 2)}
    assert attempts["broken"]["status"] == "error"
    assert attempts["broken"]["error"]["status_code"] == 500
    assert attempts["chat-small"]["status"] == "ok"
    assert attempts["chat-small"]["response_id"] == json.loads(body)["id"]
    assert attempts["broken"]["call_id"] != attempts["chat-small"]["call_id"]
    assert attempts["broken"]["trace_id"] == attempts["chat-small"]["trace_id"]
    # What the proxy sent, stored by a real server: the header's id is the failed attempt, and its
    # answer names the later ones, the last being the client's answer.
    client = sqlite_server.client()
    assert client.post_json("/v1/events", {"records": list(attempts.values())}).json()["accepted"] == 2
    looked_up = client.get_json(f"/api/calls/{call_id}")
    assert looked_up["status"] == "error"
    outcome = client.get_json(f"/api/calls/{looked_up['attempts'][-1]['call_id']}")
    assert outcome["response_id"] == json.loads(body)["id"]


def sse_chunks(body: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a server-sent-events body, without its `[DONE]`."""
    lines = body.decode().splitlines()
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_proxy_stream_counts_its_chunks(proxy_stack: Stack) -> None:
    """The proxy's router wraps every stream in one of its own: the record still counts the chunks the
    client got, and a stream the provider broke keeps what was said before the break."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "chat-small",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "count these [[fake tokens=6]]"}],
        },
    )
    assert status == 200, body
    chunks = sse_chunks(body)
    assert len(chunks) >= 6
    (record,) = new_records(receiver, before, 1)
    assert record["status"] == "ok" and record["usage"]["output_tokens"] == 6
    assert record["chunk_count"] in (len(chunks) - 1, len(chunks))  # with or without the usage chunk

    before = len(receiver.records)
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {
            "model": "chat-small",
            "stream": True,
            "messages": [{"role": "user", "content": "break [[fake tokens=8 drop_after=3]]"}],
        },
    )
    said = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(body) if c.get("choices")
    )
    assert said.split(), body  # the client got the first words before the break
    (broken,) = new_records(receiver, before, 1)
    assert broken["status"] == "error" and broken["stream"] is True
    assert broken["chunk_count"] == 3
    assert broken["response"]["choices"][0]["message"]["content"].split() == said.split()


def test_proxy_stream_broken_by_a_hook_is_recorded(proxy_stack: Stack, sqlite_server: ServerProcess) -> None:
    """A proxy hook that raises mid-stream (a guardrail blocking, a bug): the provider was called, the
    client got the first chunk and an error event, and LiteLLM tells its loggers nothing of the call.
    It has one record all the same, an error, with what the client was sent. No chunk said the usage:
    the record says it is not known, rather than 0 tokens and $0, and a server takes it as it is."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(
            {
                "model": "chat-small",
                "stream": True,
                "messages": [{"role": "user", "content": "go on [[hook stop]]"}],
            }
        ),
        {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body, call_id = response.read(), response.getheader("x-litellm-call-id")
    conn.close()
    assert b"stopped by a hook" in body
    said = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(body) if c.get("choices")
    )
    (record,) = new_records(receiver, before, 1)
    assert record["call_id"] == call_id
    assert record["status"] == "error" and record["stream"] is True
    assert record["error"]["type"] == "ValueError"
    assert record["error"]["message"] == "stopped by a hook"
    assert record["chunk_count"] == 1
    assert record["response"]["choices"][0]["message"]["content"] == said
    unknown = {"input_tokens": None, "output_tokens": None, "total_tokens": None}
    assert {k: record["usage"][k] for k in unknown} == unknown
    assert record["cost_usd"] is None and record["output_tokens_per_s"] is None
    client = sqlite_server.client()
    answer = client.post_json("/v1/events", {"records": [record]})
    assert answer.json().get("accepted") == 1, answer.json()
    stored = client.get_json(f"/api/calls/{call_id}")
    assert {k: stored["usage"][k] for k in unknown} == unknown and stored["cost_usd"] is None


def test_proxy_stream_broken_by_a_hook_after_its_usage_keeps_the_usage(proxy_stack: Stack) -> None:
    """A hook that breaks a stream once the provider said its usage (a guardrail that checks the whole
    answer): the provider billed every token, and the record has them and their cost, not 0."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    content = "check all of it [[fake tokens=6]] [[hook stop at usage]]"
    body, call_id = stream_through_proxy(
        port,
        {"stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": content}]},
    )
    assert b"stopped by a hook at the end" in body, body
    (record,) = new_records(receiver, before, 1)
    assert record["call_id"] == call_id and record["status"] == "error"
    assert record["error"]["message"] == "stopped by a hook at the end"
    usage = expected_usage([{"role": "user", "content": content}], tokens=6)
    assert record["usage"]["input_tokens"] == usage["prompt_tokens"]
    assert record["usage"]["output_tokens"] == usage["completion_tokens"] == 6
    assert record["usage"]["total_tokens"] == usage["total_tokens"]
    assert record["cost_usd"] is not None and record["cost_usd"] > 0
    assert record["chunk_count"] >= 6


def stream_through_proxy(port: int, payload: dict[str, Any]) -> tuple[bytes, str | None]:
    """The body of a streamed chat completion and the call id the proxy's header gave it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "chat-small", "stream": True, **payload}),
        {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body, call_id = response.read(), response.getheader("x-litellm-call-id")
    conn.close()
    return body, call_id


def test_proxy_retried_stream_broken_by_a_hook_is_recorded(proxy_stack: Stack) -> None:
    """The router's first attempt got a 429 (LiteLLM reports it), its retry streamed and a proxy hook
    broke it mid-way. Both attempts were made, the second billed: each has its record, though the
    router gave both the request's one call id."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    key = f"retry-{time.monotonic_ns()}"
    body, call_id = stream_through_proxy(
        port,
        {
            "num_retries": 1,
            "messages": [
                {"role": "user", "content": f"again [[fake error=429 error_times=1 key={key}]] [[hook stop]]"}
            ],
        },
    )
    assert b"stopped by a hook" in body, body
    said = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_chunks(body) if c.get("choices")
    )
    records = {r["call_id"]: r for r in new_records(receiver, before, 2)}
    assert set(records) == {call_id, f"{call_id}:2"}, records
    limited, broken = records[call_id], records[f"{call_id}:2"]
    assert limited["status"] == "error" and limited["error"]["status_code"] == 429
    assert broken["status"] == "error" and broken["error"]["type"] == "ValueError"
    assert broken["chunk_count"] == 1
    assert broken["response"]["choices"][0]["message"]["content"] == said


def test_proxy_stream_broken_by_the_provider_is_recorded_once_when_reported_late(proxy_stack: Stack) -> None:
    """A stream the provider broke is LiteLLM's to report: when its report reaches litelens late (a slow
    logger before it), the call still has one record, not a second one as a phantom retry."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    started = time.monotonic()
    body, call_id = stream_through_proxy(
        port, {"messages": [{"role": "user", "content": "break [[fake tokens=8 drop_after=3]] [[slow log]]"}]}
    )
    assert sse_chunks(body), body  # the client got the first words before the break
    (record,) = new_records(receiver, before, 1)
    # The slow logger holds LiteLLM's report 2.5 s: a record litelens made itself would have come first.
    assert time.monotonic() - started >= 2.5
    time.sleep(1.5)  # a second record, sent as the first was, would be here by now
    assert receiver.records[before:] == [record]
    assert record["call_id"] == call_id
    assert record["status"] == "error" and record["chunk_count"] == 3


@pytest.mark.parametrize("directive", ["[[hook block]]", "[[hook proxy block]]"])
def test_proxy_stream_blocked_by_a_hook_with_an_http_error_is_recorded_once(
    proxy_stack: Stack, directive: str
) -> None:
    """A hook that blocks a stream with an HTTP error or LiteLLM's `ProxyException`, as guardrails do:
    LiteLLM's proxy reports that failure itself, and the call has that one record, not a second one
    from litelens."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    body, call_id = stream_through_proxy(port, {"messages": [{"role": "user", "content": f"go {directive}"}]})
    assert b"blocked by a guardrail" in body, body
    (record,) = new_records(receiver, before, 1)
    time.sleep(1.5)  # litelens would have recorded it a second after the hook ran
    assert receiver.records[before:] == [record]
    assert record["call_id"] == call_id
    assert record["status"] == "error" and record["error"]["status_code"] == 400


def test_proxy_stream_refused_by_a_hook_at_its_end_is_recorded_once_as_litellm_reports_it(
    proxy_stack: Stack,
) -> None:
    """An output guardrail that reads the whole answer, then refuses it: the client got every chunk and an
    error event, and LiteLLM reports the call, billed, as a success. A slow logger ahead of litelens
    holds that report up past the second litelens waits for it: the call still has that one record, with
    its usage and cost, not a failure of litelens's own making besides."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    started = time.monotonic()
    body, call_id = stream_through_proxy(
        port, {"messages": [{"role": "user", "content": "tell me [[hook refuses the answer]] [[slow log]]"}]}
    )
    assert b"broke the output policy" in body, body
    (record,) = new_records(receiver, before, 1)
    assert time.monotonic() - started >= 2.5  # the slow logger held LiteLLM's report
    time.sleep(1.5)  # a second record, sent as the first was, would be here by now
    assert receiver.records[before:] == [record]
    assert record["call_id"] == call_id
    assert record["status"] == "ok", record.get("error")
    assert record["usage"]["output_tokens"] > 0 and record["cost_usd"] > 0


def test_proxy_stream_broken_by_a_hook_raising_a_litellm_error_is_recorded_once(proxy_stack: Stack) -> None:
    """A hook that breaks a stream with one of LiteLLM's own exception classes (as a hook that calls
    LiteLLM, or mimics its errors, does): LiteLLM's stream did not fail, so LiteLLM reports nothing;
    the call has one record all the same, from litelens."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    body, call_id = stream_through_proxy(
        port, {"messages": [{"role": "user", "content": "go [[hook refuse]]"}]}
    )
    assert b"refused by a hook" in body, body
    (record,) = new_records(receiver, before, 1)
    time.sleep(1.5)  # a second record, from LiteLLM, would be here by now
    assert receiver.records[before:] == [record]
    assert record["call_id"] == call_id
    assert record["status"] == "error" and record["stream"] is True
    assert record["error"]["type"] == "BadRequestError" and record["error"]["status_code"] == 400
    assert record["chunk_count"] == 1


def test_proxy_health_checks_are_recorded_as_such(proxy_stack: Stack) -> None:
    """A `/health` model check is a billed call to the provider: it is recorded, told from users' calls by
    its tag, and `LITELENS_DROP_HEALTH_CHECKS` keeps it out while users' calls stay."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    status, body = request(port, "GET", "/health?model=chat-small")
    assert status == 200 and json.loads(body)["healthy_count"] == 1, body
    (check,) = new_records(receiver, before, 1)
    assert check["status"] == "ok"
    assert check["tags"] == ["litellm-internal-health-check"]
    assert check["proxy"]["key_alias"] == "litellm-internal-health-check"

    before = len(receiver.records)
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200, body
    (call,) = new_records(receiver, before, 1)
    dropping = Pipeline(from_env({"LITELENS_DROP_HEALTH_CHECKS": "true"}))
    assert dropping(dict(check)) is None
    assert dropping(dict(call)) == call
    assert Pipeline(from_env({}))(dict(check)) == check


@pytest.mark.parametrize(
    ("model", "call_type", "status"),
    [
        ("embedder", "embedding", "ok"),  # its mode from LiteLLM's model map
        ("painter", "image_generation", "ok"),  # its mode from the config's model_info
        ("listener", "transcription", "ok"),
        ("broken-embedder", "embedding", "error"),
    ],
)
def test_proxy_health_checks_are_recorded_as_the_call_they_made(
    proxy_stack: Stack, model: str, call_type: str, status: str
) -> None:
    """A health check of an embedding, image or audio deployment calls the provider's embedding, image
    or audio endpoint, and LiteLLM reports every check as a chat completion: the record names the call
    it made, so it is not counted among the chat calls (nor its vectors kept as a chat answer)."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    answer, body = request(port, "GET", f"/health?model={model}")
    assert answer == (200 if status == "ok" else 503), body
    assert json.loads(body)["healthy_count" if status == "ok" else "unhealthy_count"] == 1, body
    (check,) = new_records(receiver, before, 1)
    assert check["tags"] == ["litellm-internal-health-check"]
    assert (check["call_type"], check["status"]) == (call_type, status)
    assert check["is_async"] is True


def test_proxy_abandoned_stream_is_cancelled(proxy_stack: Stack) -> None:
    """A client that hangs up mid-stream: LiteLLM's proxy reports it, and the record must not say ok."""
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    body = json.dumps(
        {
            "model": "chat-small",
            "stream": True,
            "messages": [{"role": "user", "content": "a long one [[fake tokens=200 interval_ms=20]]"}],
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(head + body)
        received = b""
        while b"data:" not in received:  # the first chunk, then hang up
            received += client.recv(4096)
    (record,) = new_records(receiver, before, 1)
    assert record["stream"] is True
    assert record["status"] == "cancelled"


def test_proxy_shutdown_flushes_last_records(proxy_stack: Stack) -> None:
    """Stopping the proxy (SIGTERM, as docker and Kubernetes do) must not lose the calls it just served,
    even when the server asks for the batch again a second later.

    Runs last: it stops the module's proxy.
    """
    port, receiver = proxy_stack.port, proxy_stack.receiver
    before = len(receiver.records)
    receiver.fail_next(503, retry_after=1)
    status, body = request(
        port,
        "POST",
        "/v1/chat/completions",
        {"model": "chat-small", "messages": [{"role": "user", "content": "bye"}]},
    )
    assert status == 200, body
    proxy_stack.process.terminate()
    proxy_stack.process.wait(timeout=30)
    (record,) = new_records(receiver, before, 1)
    assert record["response_id"] == json.loads(body)["id"]


def test_restarted_proxy_resends_what_it_spooled_before_any_call(tmp_path: Path) -> None:
    """Calls served while the litelens server was away wait in the spool. A proxy restarted once the
    server is back sends them at once, each once: not when (if ever) a new call comes in."""
    binary = os.environ.get("LITELENS_TEST_PROXY_BIN")
    if not binary:
        pytest.skip("set LITELENS_TEST_PROXY_BIN to a `litellm` proxy binary with litelens installed")
    with FakeProvider() as provider, Receiver() as receiver:
        receiver.stop()  # the server is away; it comes back on the same address
        config = write_config(tmp_path, provider.url, provider.url)
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELENS_ENDPOINT": receiver.url,
            "LITELENS_SPOOL_DIR": str(tmp_path / "spool"),
        }
        answered = []
        port = free_port()
        with running_proxy(binary, config, port, env, tmp_path):
            for word in ("one", "two"):
                status, body = request(
                    port,
                    "POST",
                    "/v1/chat/completions",
                    {"model": "chat-small", "messages": [{"role": "user", "content": word}]},
                )
                assert status == 200, body
                answered.append(json.loads(body)["id"])
        assert list((tmp_path / "spool").rglob("*.batch")), "the calls were not spooled"

        receiver.start()
        with running_proxy(binary, config, free_port(), env, tmp_path):
            records = new_records(receiver, 0, 2)
        assert sorted(r["response_id"] for r in records) == sorted(answered)
