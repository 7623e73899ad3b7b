"""Record what the peers' LiteLLM instrumentations really send over OTLP, as test fixtures.

    python scripts/record_peer_spans.py                       # every peer, into tests/fixtures/peers/
    python scripts/record_peer_spans.py openlit --venvs /tmp/peers

For each peer (OpenInference, OpenLLMetry, OpenLIT, LiteLLM's own "otel" callback) this makes a
virtual environment under `--venvs` (default: a folder in the system temp dir, kept between runs), pip
installs the newest LiteLLM, the peer, the OpenTelemetry SDK and its OTLP/HTTP exporter into it (nothing of
this goes into the project's own environments, and CI never installs them), then runs itself inside it as
a worker. The worker turns the peer on the way its documentation says, drives real LiteLLM calls
(chat, stream, async stream, embedding, tool call, a 429 and a 500, a call inside the caller's own span) against
litelens' fake provider on loopback, and exports the spans with the SDK's OTLP/HTTP exporter to a small
receiver on loopback that keeps each request body exactly as it came.

What it writes, per peer, is `tests/fixtures/peers/<peer>.json`: the library versions, and per scenario
what the fake provider dictated (model, tokens, answer, tool call, error...) and the OTLP bodies the peer
sent (protobuf, base64). Long strings that no mapping reads (stack traces, LiteLLM's `hidden_params`...)
are cut to keep the files small; the body is then encoded again, and the scenario lists what was cut.
tests/test_peer_fixtures.py posts these bodies to a real `litelens serve` and checks the stored calls.

Pin versions with `--pin openlit==1.45.0` (repeatable) to record an older release. With
`--forward http://127.0.0.1:4318` every body also goes on to that `litelens serve --no-auth`, live, and
the peer's exporter gets the server's own answers.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "peers"
BASE = ("litellm", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
PEERS: dict[str, tuple[str, ...]] = {
    "openinference": ("openinference-instrumentation-litellm",),
    "openllmetry": ("opentelemetry-instrumentation-litellm",),
    "openlit": ("openlit",),
    "litellm-otel": (),
}
FAKE_KEY = "sk-fake"
SERVICE = "peer-fixtures"
# Strings longer than this are cut unless a mapping reads them (content is JSON we must keep whole).
TRIM_AT = 600
KEEP_WHOLE = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "llm.invocation_parameters",
    "embedding.invocation_parameters",
    "llm.tools.",
    "input.value",
    "output.value",
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


# -- the driver: one venv per peer, the worker inside it ---------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("peers", nargs="*", help=f"any of {', '.join(PEERS)} (default: all)")
    parser.add_argument("--venvs", type=Path, default=Path(tempfile.gettempdir()) / "litelens-peer-venvs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--pin", action="append", default=[], help="a requirement such as openlit==1.45.0")
    parser.add_argument(
        "--forward",
        metavar="URL",
        help="also pass each body on to this OTLP/HTTP server (a `litelens serve --no-auth`), whose answer "
        "the peer's exporter then gets",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.out, args.forward)
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(unknown)}")
    failed = 0
    for peer in args.peers or list(PEERS):
        python = _venv(args.venvs / peer, [*BASE, *PEERS[peer]], args.pin)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),  # for litelens.testing (standard library only)
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        done = subprocess.run(
            [
                str(python),
                __file__,
                "--worker",
                peer,
                "--out",
                str(args.out),
                *(("--forward", args.forward) if args.forward else ()),
            ],
            env=env,
            check=False,
        )
        print(f"{peer}: {'ok' if done.returncode == 0 else f'failed ({done.returncode})'}", file=sys.stderr)
        failed += done.returncode != 0
    return 1 if failed else 0


def _venv(folder: Path, wanted: list[str], pins: list[str]) -> Path:
    python = folder / "bin" / "python"
    pinned = {p.split("=")[0].split("<")[0].split(">")[0].strip().lower(): p for p in pins}
    requirements = [pinned.pop(name.lower(), name) for name in wanted]
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-U", *requirements, *pinned.values()], check=True
    )
    return python


# -- the worker --------------------------------------------------------------------------------------


class _Receiver:
    """An OTLP/HTTP endpoint on loopback that keeps every body as it arrived (and passes it on to
    `forward`, answering with that server's answer, when given)."""

    def __init__(self, forward: str | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type", ""),
                        "content_encoding": self.headers.get("Content-Encoding"),
                        "body": body,
                    }
                )
                status, content_type, answer = 200, "application/x-protobuf", b""
                if forward:
                    status, content_type, answer = _forward(
                        forward.rstrip("/") + self.path, body, self.headers
                    )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[dict[str, Any]]:
        taken, self.bodies = self.bodies, []
        return taken


def _forward(url: str, body: bytes, headers: Any) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request

    sent = {k: v for k, v in headers.items() if k.lower() in ("content-type", "content-encoding")}
    request = urllib.request.Request(url, data=body, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as refused:
        print(f"  {url} answered {refused.code}", file=sys.stderr)
        return refused.code, refused.headers.get("Content-Type", ""), refused.read()


def _worker(peer: str, out: Path, forward: str | None = None) -> int:
    import litellm
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from litelens.testing import FakeProvider

    litellm.suppress_debug_info = True
    receiver = _Receiver(forward)
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.url + "/v1/traces"))
    )
    trace.set_tracer_provider(tracer_provider)
    _instrument(peer, tracer_provider)
    tracer = tracer_provider.get_tracer("peer-fixtures.caller")

    scenarios: dict[str, Any] = {}
    with FakeProvider() as provider:
        common = {"api_base": provider.url, "api_key": FAKE_KEY, "num_retries": 0, "max_retries": 0}
        for name, run in _SCENARIOS.items():
            dictated = run(litellm, common, tracer, peer)
            time.sleep(1.0)  # LiteLLM's logging thread ends its callbacks' spans after the call returns
            tracer_provider.force_flush()
            bodies = [_trimmed(b) for b in receiver.take() if b["path"].endswith("/v1/traces")]
            scenarios[name] = {"dictated": dictated, "bodies": bodies}
            print(f"  {peer} {name}: {len(bodies)} bodies", file=sys.stderr)
    tracer_provider.shutdown()

    versions = {
        name: importlib.metadata.version(name) for name in (*BASE, *PEERS[peer], "openai") if _installed(name)
    }
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "peer": peer,
        "versions": versions,
        "recorded_with": "scripts/record_peer_spans.py",
        "scenarios": scenarios,
    }
    (out / f"{peer}.json").write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    return 0


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _instrument(peer: str, tracer_provider: Any) -> None:
    """Turn the peer on as its documentation says, content capture on (the default of all four)."""
    if peer == "openinference":
        from openinference.instrumentation.litellm import LiteLLMInstrumentor

        LiteLLMInstrumentor().instrument(tracer_provider=tracer_provider)
    elif peer == "openllmetry":
        from opentelemetry.instrumentation.litellm import LiteLLMInstrumentor

        LiteLLMInstrumentor().instrument(tracer_provider=tracer_provider)
    elif peer == "openlit":
        import openlit
        from openlit._instrumentors import MODULE_NAME_MAP

        # It traces into the global provider set above. A local (empty) price list: openlit would otherwise fetch one from the internet at init.
        prices = Path(tempfile.mkdtemp()) / "pricing.json"
        prices.write_text("{}")
        openlit.init(
            application_name=SERVICE,
            environment="fixtures",
            disabled_instrumentors=[n for n in MODULE_NAME_MAP if n != "litellm"],
            disable_metrics=True,
            disable_events=True,
            pricing_json=str(prices),
        )
    elif peer == "litellm-otel":
        import litellm

        # No exporter of its own: with a global SDK provider set, LiteLLM's logger adds its spans there.
        os.environ.setdefault("OTEL_EXPORTER", "in_memory")
        litellm.callbacks = ["otel"]
    else:
        raise ValueError(f"unknown peer {peer!r}")


def _trimmed(captured: dict[str, Any]) -> dict[str, Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    body = captured["body"]
    cut: set[str] = set()
    if captured["content_encoding"] is None and "protobuf" in captured["content_type"]:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    for holder in [span, *span.events]:
                        for attribute in holder.attributes:
                            value = attribute.value
                            if (
                                value.HasField("string_value")
                                and len(value.string_value) > TRIM_AT
                                and not attribute.key.startswith(KEEP_WHOLE)
                            ):
                                value.string_value = value.string_value[:TRIM_AT] + " [cut]"
                                cut.add(attribute.key)
        if cut:
            body = request.SerializeToString()
    return {
        "content_type": captured["content_type"],
        "content_encoding": captured["content_encoding"],
        "cut": sorted(cut),
        "base64": base64.b64encode(body).decode(),
    }


# -- the scenarios: each makes its calls and returns what the fake provider dictated ----------------


def _usage_of(usage: Any) -> dict[str, Any]:
    details_in = getattr(usage, "prompt_tokens_details", None)
    details_out = getattr(usage, "completion_tokens_details", None)
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cached_input_tokens": getattr(details_in, "cached_tokens", None) or None,
        "reasoning_tokens": getattr(details_out, "reasoning_tokens", None) or None,
    }


def _answer_of(response: Any) -> dict[str, Any]:
    choice = response.choices[0]
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in (choice.message.tool_calls or [])
    ]
    return {
        "status": "ok",
        "response_id": response.id,
        "response_model": response.model,
        "finish_reason": choice.finish_reason,
        "content": choice.message.content,
        "tool_calls": calls,
        "usage": _usage_of(response.usage),
    }


def chat(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France? [[fake tokens=5 reasoning=2 cached=3]]"},
    ]
    response = litellm.completion(
        model="openai/gpt-4o-mini", messages=messages, temperature=0.2, max_tokens=50, user="alice", **common
    )
    return {
        "call_type": "chat",
        "stream": False,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "end_user": "alice",
        "parameters": {"temperature": 0.2, "max_tokens": 50},
        "messages": messages,
        **_answer_of(response),
    }


def stream(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Count slowly [[fake tokens=6 ttft_ms=300 interval_ms=5]]"}]
    chunks = list(
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **common,
        )
    )
    response = litellm.stream_chunk_builder(chunks, messages=messages)
    return {
        "call_type": "chat",
        "stream": True,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "ttft_ms_at_least": 300,
        "messages": messages,
        **_answer_of(response),
    }


def async_stream(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    import asyncio

    messages = [{"role": "user", "content": "Count asynchronously [[fake tokens=4 ttft_ms=300]]"}]

    async def call() -> list[Any]:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **common,
        )
        chunks = [chunk async for chunk in stream]
        await asyncio.sleep(1.0)  # LiteLLM logs an async call on a task of this loop
        return chunks

    response = litellm.stream_chunk_builder(asyncio.run(call()), messages=messages)
    return {
        "call_type": "chat",
        "stream": True,
        "is_async": True,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "ttft_ms_at_least": 300,
        "messages": messages,
        **_answer_of(response),
    }


def tool_call(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=TOOLS, **common)
    return {
        "call_type": "chat",
        "stream": False,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "messages": messages,
        "tools": TOOLS,
        **_answer_of(response),
    }


def embedding(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    texts = ["first text", "second text here [[fake dims=2]]"]
    response = litellm.embedding(model="openai/text-embedding-3-small", input=texts, **common)
    return {
        "call_type": "embedding",
        "stream": False,
        "request_model": "text-embedding-3-small",
        "provider": "openai",
        "status": "ok",
        "input": texts,
        "response_model": response.model,
        "usage": {
            "input_tokens": response.usage.prompt_tokens,
            "output_tokens": 0,
            "total_tokens": response.usage.total_tokens,
        },
    }


def _failing(status: int) -> Any:
    def run(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": f"Fail please [[fake error={status}]]"}]
        try:
            litellm.completion(model="openai/gpt-4o-mini", messages=messages, **common)
        except Exception as exc:
            return {
                "call_type": "chat",
                "stream": False,
                "request_model": "gpt-4o-mini",
                "provider": "openai",
                "messages": messages,
                "status": "error",
                "error_type": type(exc).__name__,
                "error_status_code": getattr(exc, "status_code", None),
            }
        raise AssertionError(f"the fake provider's {status} did not fail the call")

    return run


def in_a_session(litellm: Any, common: dict[str, Any], tracer: Any, peer: str) -> dict[str, Any]:
    """A chat call inside the caller's own span, with a session and a user where the peer carries them."""
    messages = [{"role": "user", "content": "Hello inside a request [[fake tokens=3]]"}]
    scope: Any = contextlib.nullcontext()
    extra: dict[str, Any] = {}
    if peer == "openinference":
        from openinference.instrumentation import using_attributes

        scope = using_attributes(session_id="session-7", user_id="user-7")
    elif peer == "litellm-otel":
        # What LiteLLM documents for grouping a conversation; the caller's span is LiteLLM's parent too.
        extra = {
            "litellm_session_id": "session-7",
            "metadata": {"session_id": "session-7", "user_id": "user-7"},
        }
    with tracer.start_as_current_span("handle-request") as parent, scope:
        response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, **common, **extra)
        context = parent.get_span_context()
    return {
        "call_type": "chat",
        "stream": False,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "parent_span_name": "handle-request",
        "parent_span_id": format(context.span_id, "016x"),
        "trace_id": format(context.trace_id, "032x"),
        "session_id": "session-7",
        "user_id": "user-7",
        "messages": messages,
        **_answer_of(response),
    }


_SCENARIOS = {
    "chat": chat,
    "stream": stream,
    "async_stream": async_stream,
    "tool_call": tool_call,
    "embedding": embedding,
    "error_429": _failing(429),
    "error_500": _failing(500),
    "in_a_session": in_a_session,
}


if __name__ == "__main__":
    sys.exit(main())
