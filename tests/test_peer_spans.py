"""What the peers' LiteLLM instrumentations really send, posted to a real `litelens serve`: each call
is stored as the fake provider dictated it, except where the peer does not send the fact at all.

The OTLP bodies in tests/fixtures/peers/ were captured from the real libraries (versions in each file and
in the README there) by scripts/record_peer_spans.py, driving real LiteLLM calls against the fake
provider; this test needs none of those libraries installed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from server_helpers import Client, ServerProcess

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "peers"
PEERS = ("openinference", "openllmetry", "openlit", "litellm-otel")
LOOPBACK = "http://127.0.0.1:"
# The streams' first chunk came 300 ms after the provider got the request; a peer that starts its clock
# once the request is sent reads a little less (OpenLIT: 299.5 ms), which is still that delay.
TTFT_FLOOR_MS = 250
SCENARIOS = (
    "chat",
    "stream",
    "async_stream",
    "tool_call",
    "embedding",
    "error_429",
    "error_500",
    "in_a_session",
)

# What each peer does not send, so the stored call cannot have it: the value it has instead, per
# scenario ("*": all). Everything not listed here must be stored as the fake provider dictated it.
GAPS: dict[str, dict[str, dict[str, Any]]] = {
    "openinference": {
        # No response model or id attributes; a stream's first token is not marked.
        "*": {"response_model": None, "response_id": None},
        "stream": {"ttft": None},
        "async_stream": {"ttft": None},
    },
    "openllmetry": {
        # Reasoning tokens, the request's `user`, the API base and a stream's first token are not sent.
        # A session or user is stamped by traceloop-sdk's span processor, not by the instrumentation.
        "*": {"api_base": None},
        "chat": {"end_user": None, "usage.reasoning_tokens": None},
        "stream": {"ttft": None},
        # Its span does not say whether the call was async.
        "async_stream": {"ttft": None, "is_async": False},
        "in_a_session": {"session_id": None, "user_id": None},
    },
    "openlit": {
        # Only the API base's host and port (server.address, server.port), not its URL.
        "*": {"api_base": None},
        # Reasoning tokens are not sent; tool definitions only go to its log events, which a trace
        # endpoint does not get; a sync stream's time to first token falls short of the provider's delay
        # (it is measured from when LiteLLM returned the stream, it seems, not from the request).
        "chat": {"usage.reasoning_tokens": None},
        "stream": {"ttft": "far under it"},
        # Async streams get the provider's delay right; the span does not say whether it was async.
        "async_stream": {"is_async": False},
        "tool_call": {"tools": None},
        # A failed call's span has no attributes: its name (operation and model), status and exception
        # event are all there is.
        "error_429": {"messages": None},
        "error_500": {"messages": None},
        "in_a_session": {"session_id": None, "user_id": None},
    },
    "litellm-otel": {
        # The API base is only inside `hidden_params`, a JSON text that also holds response headers.
        "*": {"api_base": None},
        # Cached and reasoning tokens are only in the `raw_gen_ai_request` child, as Python's repr of the
        # usage object; a stream's first token is not sent; a tool call's id is not sent.
        "chat": {"usage.cached_input_tokens": None, "usage.reasoning_tokens": None},
        "stream": {"ttft": None},
        "async_stream": {"ttft": None},
        "tool_call": {"tool_calls.id": [None]},
        # LiteLLM names its call id as the response id of calls that had no response.
        "embedding": {"response_id": "litellm call id"},
        "error_429": {"response_id": "litellm call id"},
        "error_500": {"response_id": "litellm call id"},
    },
}


def fixture(peer: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / f"{peer}.json").read_text())
    return document


def post_bodies(client: Client, scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Post the scenario's OTLP bodies as the peer sent them; the stored calls, in full."""
    for body in scenario["bodies"]:
        headers = {"Content-Type": body["content_type"]}
        if body["content_encoding"]:
            headers["Content-Encoding"] = body["content_encoding"]
        answer = client.request("POST", "/v1/traces", base64.b64decode(body["base64"]), headers)
        assert answer.status == 200 and b"rejected" not in answer.body, answer
    calls = client.get_json("/api/calls?limit=100")["calls"]
    return [client.get_json(f"/api/calls/{call['call_id']}") for call in calls]


def view(stored: dict[str, Any]) -> dict[str, Any]:
    """The facts of a stored call that the fake provider dictated, in the shape `dictated` has them."""
    response = stored.get("response") or {}
    message = ((response.get("choices") or [{}])[0]).get("message") or {}
    error = stored.get("error") or {}
    usage = stored["usage"]
    request = stored.get("request") or {}
    ttft = stored.get("ttft_ms")
    return {
        "call_type": stored["call_type"],
        "stream": stored["stream"],
        "is_async": stored["is_async"],
        "request_model": stored["request_model"],
        "provider": stored["provider"],
        "api_base": "the fake provider's"
        if (stored.get("api_base") or "").startswith(LOOPBACK)
        else stored.get("api_base"),
        "status": stored["status"],
        "response_model": stored["response_model"],
        "response_id": stored["response_id"],
        "finish_reasons": stored["finish_reasons"],
        "usage.input_tokens": usage["input_tokens"],
        "usage.output_tokens": usage["output_tokens"],
        "usage.total_tokens": usage["total_tokens"],
        # Zero and absent are one fact here: "none of the prompt came from the cache".
        "usage.cached_input_tokens": usage.get("cached_input_tokens") or None,
        "usage.reasoning_tokens": usage.get("reasoning_tokens") or None,
        "messages": request.get("messages"),
        "input": request.get("input"),
        "tools": request.get("tools"),
        # The stream flag has a field of its own.
        "parameters": {
            k: v
            for k, v in (request.get("parameters") or {}).items()
            if k not in ("stream", "stream_options")
        },
        "content": message.get("content"),
        "tool_calls.name": [c["function"]["name"] for c in message.get("tool_calls") or []],
        "tool_calls.arguments": [c["function"]["arguments"] for c in message.get("tool_calls") or []],
        "tool_calls.id": [c.get("id") for c in message.get("tool_calls") or []] or None,
        "error.type": error.get("type"),
        "error.status_code": error.get("status_code"),
        "end_user": stored.get("end_user"),
        "session_id": stored.get("session_id"),
        "user_id": stored.get("user_id"),
        "ttft": None if ttft is None else "the provider's delay" if ttft >= TTFT_FLOOR_MS else "far under it",
    }


def dictated_view(name: str, dictated: dict[str, Any]) -> dict[str, Any]:
    ok = dictated["status"] == "ok"
    usage = dictated.get("usage") or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    calls = dictated.get("tool_calls") or []
    return {
        "call_type": dictated["call_type"],
        "stream": dictated["stream"],
        "is_async": dictated.get("is_async", False),
        "request_model": dictated["request_model"],
        "provider": dictated["provider"],
        "api_base": "the fake provider's",
        "status": dictated["status"],
        "response_model": dictated.get("response_model"),
        "response_id": dictated.get("response_id"),
        "finish_reasons": [dictated["finish_reason"]] if dictated.get("finish_reason") else [],
        "usage.input_tokens": usage["input_tokens"],
        "usage.output_tokens": usage["output_tokens"],
        "usage.total_tokens": usage["total_tokens"],
        "usage.cached_input_tokens": usage.get("cached_input_tokens"),
        "usage.reasoning_tokens": usage.get("reasoning_tokens"),
        "messages": dictated.get("messages"),
        "input": dictated.get("input"),
        "tools": dictated.get("tools"),
        "parameters": dictated.get("parameters") or {},
        "content": dictated.get("content") if ok else None,
        "tool_calls.name": [c["name"] for c in calls],
        "tool_calls.arguments": [c["arguments"] for c in calls],
        "tool_calls.id": [c["id"] for c in calls] or None,
        "error.type": dictated.get("error_type"),
        "error.status_code": dictated.get("error_status_code"),
        "end_user": dictated.get("end_user"),
        "session_id": dictated.get("session_id"),
        "user_id": dictated.get("user_id"),
        "ttft": "the provider's delay" if dictated.get("ttft_ms_at_least") == 300 else None,
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("peer", PEERS)
def test_a_peers_real_otlp_is_stored_as_the_provider_dictated(
    project_server: ServerProcess, peer: str, scenario: str
) -> None:
    document = fixture(peer)
    recorded = document["scenarios"][scenario]
    dictated = recorded["dictated"]
    stored = post_bodies(project_server.client(), recorded)
    if peer == "litellm-otel" and scenario == "in_a_session":
        # Inside a caller's span LiteLLM puts the call's attributes on that span (ended by then, so
        # they are lost) and sends only its `raw_gen_ai_request` child: no call to store.
        assert stored == []
        return
    [call] = stored
    gaps = {**GAPS[peer].get("*", {}), **GAPS[peer].get(scenario, {})}
    if gaps.get("response_id") == "litellm call id":
        gaps["response_id"] = call["call_id"]
    assert view(call) == {**dictated_view(scenario, dictated), **gaps}
    if "parent_span_id" in dictated:
        assert (call["trace_id"], call["parent_span_id"]) == (
            dictated["trace_id"],
            dictated["parent_span_id"],
        )
        tree = project_server.client().get_json(f"/api/traces/{dictated['trace_id']}")
        assert dictated["parent_span_name"] in json.dumps(tree)
    else:
        assert call["parent_span_id"] is None
    assert call["service"] == "peer-fixtures"


def test_the_fixtures_say_which_library_made_them() -> None:
    readme = (FIXTURES / "README.md").read_text()
    for peer in PEERS:
        versions = fixture(peer)["versions"]
        assert versions["litellm"] and versions["opentelemetry-sdk"]
        for library, version in versions.items():
            assert f"{library} {version}" in readme, (peer, library)
        assert set(fixture(peer)["scenarios"]) == set(SCENARIOS)
