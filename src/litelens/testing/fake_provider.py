"""A fake OpenAI-compatible LLM provider served over real HTTP on loopback.

LiteLLM (through the openai SDK and httpx) talks to it exactly as it talks to OpenAI, so tests,
benchmarks and the demo exercise the real client stack: connection pooling, SSE parsing, retries,
timeouts and error mapping. Only the standard library is used, so it runs wherever litelens runs.

    with FakeProvider(latency_ms=5) as provider:
        litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="sk-fake",
                           messages=[{"role": "user", "content": "hi [[fake tokens=3]]"}])

Endpoints (under ``/v1``; the prefix is optional): ``POST chat/completions``, ``POST completions``,
``POST embeddings``, ``POST images/generations``, ``POST responses``, ``POST moderations``,
``POST audio/transcriptions``, ``POST audio/speech``, ``POST rerank`` (also ``v2/rerank``, where
LiteLLM's ``cohere/`` rerank route sends it: ``{api_base}/v2/rerank``), ``GET models``; plus
``GET /health``. Anything else is a 404 with an OpenAI-style error body.

The calls that generate no text, each deterministic:

* **Moderations** (``input`` a string or a list): one result per input, nothing flagged unless the
  ``flag`` directive names categories (``[[fake flag=violence,self-harm/intent]]``, OpenAI's names);
  a flagged category scores 0.9, the others 0.001. An unknown category name is a 400.
* **Transcriptions** take a ``multipart/form-data`` upload (a ``file`` part and form fields), as the
  OpenAI API does. The transcript is ``tokens`` words; the audio lasts ``duration`` seconds, by
  default its size over 32,000 bytes a second (16 kHz 16-bit mono). ``response_format``: ``json``
  (the default: ``text`` and ``usage: {type: duration, seconds}``, seconds rounded up; with
  ``usage_type=tokens``, gpt-4o-transcribe's ``usage: {type: tokens, input_tokens, input_token_details,
  output_tokens, total_tokens}``: ten audio tokens a second, rounded up, plus the prompt's words in,
  the transcript's words out),
  ``verbose_json`` (``duration``, ``language``, one segment; what LiteLLM asks for whisper models, to
  price them by the second), ``text``, ``srt``, ``vtt``. Directives come from headers or from the
  ``prompt`` field, since LiteLLM does not send a transcription's extra headers. The request log
  names the upload (``{"filename", "content_type", "size"}``) rather than keeping its bytes.
* **Speech** answers audio bytes: 1,000 per input word (or ``audio_bytes``), with the
  ``response_format``'s content type (``mp3`` by default; a ``wav`` is a valid silent WAV file).
* **Rerank** (Cohere's shape, which LiteLLM's ``cohere/`` route reads): documents (strings or
  ``{"text": ...}``) are scored by the share of the query's words they contain, plus a hash-derived
  tie-breaker under 0.01, best first, cut to ``top_n``; ``document`` is echoed when
  ``return_documents`` is true; ``meta.tokens.input_tokens`` is the word count of query and documents,
  ``meta.billed_units.search_units`` 1.

The error knobs (``error``, ``retry_after``, ``error_times``, ``latency_ms``, ``hang_ms``) work on
every endpoint.

Deterministic usage -- tests assert exact numbers, so the rule is simple and public
(:func:`expected_usage` computes it):

* ``prompt_tokens`` is the number of whitespace-separated words in all input text: every message's
  ``content`` (a string, or the ``text`` of each list part), the completion ``prompt``, the embedding
  ``input``, the Responses ``input``. ``[[fake ...]]`` directive blocks are removed before counting.
  It is never below 1, because real providers always count something.
* The output is ``N`` words: the ``tokens`` directive (default 8), capped by the request's
  ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``; when capped the finish reason is
  ``"length"`` (Responses: status ``"incomplete"``).
* ``completion_tokens = N + reasoning``; ``total_tokens = prompt_tokens + completion_tokens``.
  A chat request with ``n`` > 1 gets ``n`` choices of the same ``N`` words, streamed interleaved
  (one chunk per choice in turn), and ``completion_tokens = n * N + reasoning``, as OpenAI counts
  every choice.
  ``reasoning`` goes to ``completion_tokens_details.reasoning_tokens`` and ``cached`` to
  ``prompt_tokens_details.cached_tokens`` (Responses: the ``input``/``output`` names).
  A tool-call answer has the same usage as a text answer would have.
* Embeddings report ``prompt_tokens == total_tokens`` = the input word count.

Streams are SSE over chunked transfer encoding, so the connection is reused afterwards and a
``drop_after`` cut is visible to the client as an incomplete body. The final usage chunk
(``choices: []``) is sent even when the request has no ``stream_options``: LiteLLM 1.110 only asks for
``include_usage`` itself when the api_base is OpenAI's, yet its logging callbacks use a usage chunk
whenever one arrives -- so exact stream usage through this provider needs nothing from the caller.
A caller that wants ``usage`` on the chunks *it* sees still passes
``stream_options={"include_usage": True}``.

Directives change one request's behaviour. They are read from, in increasing priority: the
constructor's keyword defaults; a ``[[fake key=value key=value]]`` block anywhere in the last user
message / prompt / input (a moderation's or speech's ``input``, a rerank's ``query``, a transcription's
``prompt``; it survives a LiteLLM proxy that does not forward headers); request headers
``x-fake-<key>: value`` (``extra_headers=`` in LiteLLM; ``-`` and ``_`` are interchangeable in keys).

==============  ===========================================================================
``latency_ms``  delay before answering a non-stream request (errors included)
``ttft_ms``     stream: delay before the first content chunk
``interval_ms`` stream: delay between later chunks
``chunks``      stream: number of content chunks (default: one word per chunk)
``tokens``      output words (default 8)
``reasoning``   reasoning tokens reported (default 0)
``cached``      cached prompt tokens reported (default 0)
``usage``       0 suppresses the final usage chunk of a stream (default 1: always sent)
``tools``       1 forces a tool call, 0 forbids it (default: call when the request has ``tools``
                and ``tool_choice`` is not ``"none"``)
``error``       HTTP status to fail with: 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504
``retry_after`` seconds, sent as ``Retry-After`` with the error
``error_times`` fail only the first K requests sharing the same ``key`` directive (``error``
                defaults to 500), then succeed -- for retry tests
``key``         groups requests for ``error_times``
``drop_after``  stream: send K events (content chunks first), then reset the connection mid-body
``hang_ms``     sleep before sending anything at all -- to trip the client's timeout
``dims``        embedding size (default 8; the request's ``dimensions`` wins)
``flag``        moderation: comma-separated categories to flag (default none)
``duration``    transcription: seconds of audio (default: upload size / 32,000)
``usage_type``  transcription: ``duration`` (whisper's usage, the default) or ``tokens`` (gpt-4o-transcribe's)
``audio_bytes`` speech: size of the audio answered (default 1,000 per input word)
``echo_key``    1: an error's message ends with the key the request carried (``api-key``, else
                ``x-api-key``, else ``Authorization``'s token), whole, as OpenAI's 401 once did and
                some gateways still do -- for tests that a key echoed back never leaves the process
==============  ===========================================================================
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import FrameType, TracebackType
from typing import Any

from litelens.testing._loopback import LoopbackServer

__all__ = ["FakeProvider", "ReceivedRequest", "expected_usage", "run_cli"]

_log = logging.getLogger(__name__)

_DIRECTIVE_RE = re.compile(r"\[\[fake((?:\s+[A-Za-z_][\w-]*=[^\s\]]*)*)\s*\]\]")
_INT_KEYS = frozenset(
    {
        "latency_ms",
        "ttft_ms",
        "interval_ms",
        "chunks",
        "tokens",
        "reasoning",
        "cached",
        "usage",
        "tools",
        "error",
        "retry_after",
        "error_times",
        "drop_after",
        "hang_ms",
        "dims",
        "audio_bytes",
        "echo_key",
    }
)
_DEFAULT_TOKENS = 8
# Received requests kept for `FakeProvider.requests`, newest last. A test looks at a handful; a provider
# left running (`litelens fake-provider`, a soak or a benchmark) kept every body it was ever sent, and
# grew by a few KB a call until the process was killed.
MAX_KEPT_REQUESTS = 10_000
_DEFAULT_DIMS = 8
# A fixed vocabulary keeps the output text deterministic and obviously fake.
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", "invalid_value", "Fake bad request"),
    401: ("invalid_request_error", "invalid_api_key", "Fake: incorrect API key provided"),
    403: ("permission_denied", "permission_denied", "Fake: permission denied"),
    404: ("invalid_request_error", "model_not_found", "Fake: the model does not exist"),
    408: ("timeout", "timeout", "Fake: request timed out"),
    409: ("conflict", "conflict", "Fake: conflict"),
    422: ("invalid_request_error", "unprocessable_entity", "Fake: unprocessable entity"),
    429: ("requests", "rate_limit_exceeded", "Fake: rate limit reached for requests"),
    500: ("server_error", None, "Fake: the server had an error while processing your request"),
    502: ("server_error", "bad_gateway", "Fake: bad gateway"),
    503: ("server_error", "service_unavailable", "Fake: the engine is currently overloaded"),
    504: ("server_error", "gateway_timeout", "Fake: gateway timeout"),
}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the provider saw it, for assertions such as "how many retries arrived"."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float = field(default_factory=time.monotonic)


# --------------------------------------------------------------------------------------------------
# Directives and the usage rule (shared by the server and expected_usage, so they cannot disagree)


def _parse_directive_text(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _DIRECTIVE_RE.finditer(text):
        for pair in match.group(1).split():
            key, _, value = pair.partition("=")
            found[key.replace("-", "_").lower()] = value
    return found


def _strip_directives(text: str) -> str:
    return _DIRECTIVE_RE.sub(" ", text)


def _count_words(texts: Iterable[str]) -> int:
    return sum(len(_strip_directives(t).split()) for t in texts)


def _content_texts(content: Any) -> Iterator[str]:
    """Text of a message ``content``: a string, or the ``text`` of each part of a list."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                yield part
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def _input_texts(value: Any) -> Iterator[str]:
    """All countable text of a messages list, a Responses ``input``, a prompt or an embedding input."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            # A pre-tokenised prompt: each id is one token, as a word would be.
            yield " ".join("t" for _ in value)
            return
        for item in value:
            if isinstance(item, Mapping):
                yield from _content_texts(item.get("content"))
                if item.get("type") in ("input_text", "output_text") and isinstance(item.get("text"), str):
                    yield item["text"]
            else:
                yield from _input_texts(item)


def _last_user_text(value: Any) -> str:
    """Where directives live: the last user message (or the last string of a prompt/input)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return ""
    for item in reversed(value):
        if isinstance(item, Mapping):
            if item.get("role", "user") == "user":
                return " ".join(_content_texts(item.get("content")))
        elif isinstance(item, str):
            return item
    return ""


def _to_int(key: str, value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise ValueError(f"fake directive {key}={value!r} is not a number") from None


def _normalise(directives: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in directives.items():
        key = raw_key.replace("-", "_").lower()
        out[key] = _to_int(key, value) if key in _INT_KEYS else str(value)
    return out


def _output_budget(directives: Mapping[str, Any], cap: int | None) -> tuple[int, bool]:
    wanted = max(0, int(directives.get("tokens", _DEFAULT_TOKENS)))
    if cap is not None and cap < wanted:
        return max(0, cap), True
    return wanted, False


def _usage(
    prompt_tokens: int, output_words: int, directives: Mapping[str, Any], n: int = 1
) -> dict[str, Any]:
    reasoning = int(directives.get("reasoning", 0))
    completion = n * output_words + reasoning
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": int(directives.get("cached", 0)), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def expected_usage(
    messages_or_text: Any, max_tokens: int | None = None, *, n: int = 1, **directives: Any
) -> dict[str, Any]:
    """The exact chat-style ``usage`` the provider reports for this input.

    ``messages_or_text`` is a messages list, a Responses input, a prompt string or a list of strings.
    Directives found in it are honoured, and keyword ``directives`` override them as headers would;
    pass ``max_tokens`` when the request caps the output and ``n`` when it asks for several choices.
    Constructor defaults of a running provider are not known here -- use
    :meth:`FakeProvider.expected_usage` for those.
    """
    merged = _normalise(_parse_directive_text(_last_user_text(messages_or_text)))
    merged.update(_normalise(directives))
    prompt = max(1, _count_words(_input_texts(messages_or_text)))
    words, _ = _output_budget(merged, max_tokens)
    return _usage(prompt, words, merged, n)


def _output_words(n: int) -> list[str]:
    return [_WORDS[i % len(_WORDS)] for i in range(n)]


def _split_words(words: list[str], chunks: int | None) -> list[str]:
    """Pieces whose concatenation is exactly ``" ".join(words)`` -- the non-stream text."""
    if not words:
        return []
    count = len(words) if chunks is None or chunks <= 0 else min(chunks, len(words))
    pieces: list[str] = []
    start = 0
    for i in range(count):
        end = start + len(words) // count + (1 if i < len(words) % count else 0)
        piece = " ".join(words[start:end])
        pieces.append(piece if start == 0 else " " + piece)
        start = end
    return pieces


def _credential_of(headers: Mapping[str, str]) -> str:
    """The key a request carried, as a provider that echoes it would read it: Azure's `api-key` and
    Anthropic's `x-api-key` before `Authorization`, which the openai SDK always sends."""
    key = headers.get("api-key") or headers.get("x-api-key")
    return key or headers.get("authorization", "").split(" ", 1)[-1]


def _tool_arguments(parameters: Any) -> str:
    """Deterministic JSON arguments that fit the tool's JSON schema well enough for tests."""
    props = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if not isinstance(props, Mapping) or not props:
        return json.dumps({"query": "lorem"})
    samples: dict[str, Any] = {"string": "lorem", "integer": 1, "number": 1.5, "boolean": True}
    args: dict[str, Any] = {}
    for name, schema in props.items():
        kind = schema.get("type") if isinstance(schema, Mapping) else None
        if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list) and schema["enum"]:
            args[name] = schema["enum"][0]
        elif kind == "array":
            args[name] = []
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = samples.get(str(kind), "lorem")
    return json.dumps(args)


def _first_tool(body: Mapping[str, Any]) -> tuple[str, str] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or not isinstance(tools[0], Mapping):
        return None
    tool = tools[0]
    # Chat nests the definition under "function"; the Responses API keeps it flat.
    nested = tool.get("function")
    spec: Mapping[str, Any] = nested if isinstance(nested, Mapping) else tool
    return str(spec.get("name", "fake_tool")), _tool_arguments(spec.get("parameters"))


def _wants_tool(body: Mapping[str, Any], directives: Mapping[str, Any]) -> tuple[str, str] | None:
    if "tools" in directives:
        if not directives["tools"]:
            return None
        return _first_tool(body) or ("fake_tool", json.dumps({"query": "lorem"}))
    if body.get("tool_choice") == "none":
        return None
    return _first_tool(body)


def _embedding(text: str, dims: int) -> list[float]:
    """A unit vector derived from a hash of the text: same text, same vector, across runs."""
    raw = b""
    block = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [(v / 0xFFFFFFFF) * 2.0 - 1.0 for v in struct.unpack(f"<{dims}I", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Rounded through float32 so the float and base64 encodings carry the same numbers.
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in values))))


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x7f\x7f\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


_PNG = _tiny_png()

# OpenAI's moderation categories (omni-moderation), in its order.
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# Speech: bytes of audio per input word, and the Content-Type of each response_format.
_SPEECH_BYTES_PER_WORD = 1000
_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# Transcription: an upload's duration when no `duration` directive says otherwise, as if it were
# 16 kHz 16-bit mono PCM (32,000 bytes a second).
_AUDIO_BYTES_PER_SECOND = 32_000
# Transcription with token usage: audio tokens a second (round, so tests can count them by hand).
_AUDIO_TOKENS_PER_SECOND = 10


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any] | None:
    """A multipart/form-data body as a dict: text fields as strings, each file as a summary
    (``{"filename", "content_type", "size"}``) so that received requests never hold the audio itself.
    A field sent more than once (``timestamp_granularities[]``) becomes a list. None if unparseable."""
    import email.parser
    import email.policy

    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
        )
    except Exception:
        return None
    if not message.is_multipart():
        return None
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        value: Any
        if filename is not None:
            value = {"filename": filename, "content_type": part.get_content_type(), "size": len(data)}
        else:
            value = data.decode("utf-8", "replace")
        key = name[:-2] if name.endswith("[]") else name
        if key in fields:
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = [value] if name.endswith("[]") else value
    return fields


def _audio_bytes(size: int, fmt: str) -> bytes:
    """``size`` bytes of deterministic fake audio; a ``wav`` is a valid (silent) WAV file."""
    if fmt == "wav" and size >= 44:
        frames = size - 44
        header = b"RIFF" + struct.pack("<I", 36 + frames) + b"WAVE"
        header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
        header += b"data" + struct.pack("<I", frames)
        return header + b"\x00" * frames
    return bytes(i % 251 for i in range(size))


def _rerank_score(query: str, document: str) -> float:
    """Share of the query's distinct words found in the document (case-insensitive), plus a small
    hash-derived tie-breaker below 0.01, so documents come back in a fixed, explainable order."""
    words = set(_strip_directives(query).lower().split())
    found = set(_strip_directives(document).lower().split())
    share = len(words & found) / len(words) if words else 0.0
    tie = int(hashlib.sha256(document.encode()).hexdigest()[:6], 16) / 0xFFFFFF / 100
    return round(min(1.0, share * 0.99 + tie), 6)


def _document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, Mapping):
        text = document.get("text")
        return text if isinstance(text, str) else json.dumps(document, sort_keys=True)
    return str(document)


# --------------------------------------------------------------------------------------------------
# HTTP server


class _ClientGone(Exception):
    """The client closed the connection (or the provider is stopping): stop writing, quietly."""


class _Server(LoopbackServer):
    provider: FakeProvider

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, _ClientGone, TimeoutError)):
            return
        _log.exception("fake provider: unhandled error serving %s", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "litelens-fake-provider/1"
    sys_version = ""
    # Idle keep-alive connections are dropped after this long, so abandoned clients don't pin threads.
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by design: request logs on stderr drown test output and cost time under load.
        return

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def provider(self) -> FakeProvider:
        return self.server.provider

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _sleep(self, ms: float) -> None:
        if ms > 0 and self.provider.stopping.wait(ms / 1000.0):
            raise _ClientGone("provider stopping")

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            self.close_connection = True
            raise _ClientGone(str(exc)) from exc

    def _send_json(self, status: int, payload: Any, extra: Mapping[str, str] | None = None) -> None:
        self._send_body(
            status, json.dumps(payload, separators=(",", ":")).encode(), "application/json", extra
        )

    def _send_body(
        self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            self.close_connection = True
            raise _ClientGone(str(exc)) from exc
        self._write(body)

    def _send_error(self, status: int, message: str, directives: Mapping[str, Any] | None = None) -> None:
        kind, code, _ = _ERRORS.get(status, ("server_error", None, message))
        extra: dict[str, str] = {}
        if directives and "retry_after" in directives:
            extra["Retry-After"] = str(directives["retry_after"])
        payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._send_json(status, payload, extra)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        # Chunked framing (not close-delimited) so the connection is reusable and an abrupt drop is
        # detectable by the client as an incomplete body rather than a normal end.
        self.send_header("Transfer-Encoding", "chunked")
        try:
            self.end_headers()
        except OSError as exc:
            self.close_connection = True
            raise _ClientGone(str(exc)) from exc

    def _send_chunk(self, data: bytes) -> None:
        self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_event(self, payload: Any, event: str | None = None) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        prefix = f"event: {event}\n" if event else ""
        self._send_chunk(f"{prefix}data: {text}\n\n".encode())

    def _end_stream(self) -> None:
        self._write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Reset the connection mid-body, as a crashed upstream or a cut network would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            # Linger 0 turns close() into a RST instead of an orderly FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        raise _ClientGone("dropped on purpose")

    # -- dispatch ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        try:
            self._handle(method)
        except _ClientGone:
            self.close_connection = True

    def _handle(self, method: str) -> None:
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        body: Any = None
        if raw and headers.get("content-type", "").lower().startswith("multipart/form-data"):
            body = _parse_multipart(headers["content-type"], raw)
            if body is None:
                self.provider._record(ReceivedRequest(method, path, headers, None))
                self._send_error(400, "Fake: request body is not valid multipart/form-data")
                return
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self.provider._record(ReceivedRequest(method, path, headers, None))
                self._send_error(400, "Fake: request body is not valid JSON")
                return
        self.provider._record(ReceivedRequest(method, path, headers, body))

        route = path[3:] if path.startswith("/v1/") else path
        if method == "GET" and route in ("/health", "/health/liveliness", "/health/readiness"):
            self._send_json(200, {"status": "ok"})
            return
        if method == "GET" and route.startswith("/fake-images/"):
            self._send_png()
            return
        if method == "GET" and route == "/models":
            self._send_json(200, self._models())
            return
        handlers = {
            "/chat/completions": self._chat,
            "/completions": self._completions,
            "/embeddings": self._embeddings,
            "/images/generations": self._images,
            "/responses": self._responses,
            "/moderations": self._moderations,
            "/audio/transcriptions": self._transcriptions,
            "/audio/speech": self._speech,
            "/rerank": self._rerank,
            "/v2/rerank": self._rerank,
        }
        handler = handlers.get(route)
        if method != "POST" or handler is None:
            self._send_error(404, f"Fake: unknown endpoint {method} {path}")
            return
        if not isinstance(body, dict):
            self._send_error(400, "Fake: expected a JSON object body")
            return
        try:
            directives = self.provider._directives(body, headers, route)
        except ValueError as exc:
            self._send_error(400, str(exc))
            return

        self._sleep(directives.get("hang_ms", 0))
        stream = bool(body.get("stream"))
        status = self.provider._error_status(directives)
        if status is not None:
            if not stream:
                self._sleep(directives.get("latency_ms", 0))
            _, _, message = _ERRORS.get(status, ("", None, f"Fake error {status}"))
            if directives.get("echo_key") == 1:
                message += f": {_credential_of(headers)}"
            self._send_error(status, message, directives)
            return
        if not stream:
            self._sleep(directives.get("latency_ms", 0))
        handler(body, directives)

    def _send_png(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(_PNG)))
        self.end_headers()
        self._write(_PNG)

    def _models(self) -> dict[str, Any]:
        names = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small", "dall-e-3")
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 1700000000, "owned_by": "fake"} for n in names],
        }

    # -- chat completions ------------------------------------------------------------------------

    def _chat(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        model = str(body.get("model", "fake-model"))
        cap = body.get("max_completion_tokens", body.get("max_tokens"))
        words, capped = _output_budget(directives, cap if isinstance(cap, int) else None)
        prompt = max(1, _count_words(_input_texts(body.get("messages"))))
        n = body.get("n")
        # OpenAI answers n (1-128) choices; anything else it refuses, and so does this provider.
        n = 1 if n is None else n
        if type(n) is not int or not 1 <= n <= 128:
            self._send_error(400, f"Invalid 'n': {body.get('n')!r}; expected an integer from 1 to 128.")
            return
        usage = _usage(prompt, words, directives, n)
        tool = _wants_tool(body, directives)
        rid = self.provider._next_id("chatcmpl-fake")
        created = int(time.time())
        finish = "length" if capped else ("tool_calls" if tool else "stop")
        text = " ".join(_output_words(words))
        call_id = rid.replace("chatcmpl", "call")

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            if tool:
                message["content"] = None
                message["tool_calls"] = [
                    {"id": call_id, "type": "function", "function": {"name": tool[0], "arguments": tool[1]}}
                ]
            self._send_json(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                        for i in range(n)
                    ],
                    "usage": usage,
                },
            )
            return

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }

        deltas: list[dict[str, Any]]
        if tool:
            arg_pieces = _split_text(tool[1], directives.get("chunks"))
            deltas = [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": tool[0], "arguments": ""},
                        }
                    ],
                }
            ]
            deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in arg_pieces]
        else:
            pieces = _split_words(_output_words(words), directives.get("chunks")) or [""]
            deltas = [{"content": p} for p in pieces]
            deltas[0] = {"role": "assistant", **deltas[0]}
        events = [chunk(d, None, i) for d in deltas for i in range(n)]
        events += [chunk({}, finish, i) for i in range(n)]
        final = None
        if directives.get("usage", 1):
            final = {**chunk({}), "choices": [], "usage": usage}
        self._stream_events(events, final, directives, done=True)

    def _stream_events(
        self,
        events: list[Any],
        final: Any | None,
        directives: Mapping[str, Any],
        done: bool,
        event_names: list[str] | None = None,
    ) -> None:
        """Send SSE events with the directive timing: ttft before the first, interval between the rest."""
        drop_after = directives.get("drop_after")
        self._start_stream()
        for i, payload in enumerate(events):
            if drop_after is not None and i >= drop_after:
                self._drop()
            self._sleep(directives.get("ttft_ms", 0) if i == 0 else directives.get("interval_ms", 0))
            self._send_event(payload, event_names[i] if event_names else None)
        if drop_after is not None:
            self._drop()
        if final is not None:
            self._send_event(final)
        if done:
            self._send_chunk(b"data: [DONE]\n\n")
        self._end_stream()

    # -- text completions ------------------------------------------------------------------------

    def _completions(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        model = str(body.get("model", "fake-model"))
        cap = body.get("max_tokens")
        words, capped = _output_budget(directives, cap if isinstance(cap, int) else None)
        usage = _usage(max(1, _count_words(_input_texts(body.get("prompt")))), words, directives)
        for details in ("prompt_tokens_details", "completion_tokens_details"):
            usage.pop(details)
        rid = self.provider._next_id("cmpl-fake")
        created = int(time.time())
        finish = "length" if capped else "stop"

        def obj(text: str, finish_reason: str | None) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
            }

        if not body.get("stream"):
            self._send_json(200, {**obj(" ".join(_output_words(words)), finish), "usage": usage})
            return
        pieces = _split_words(_output_words(words), directives.get("chunks")) or [""]
        events = [obj(p, None) for p in pieces] + [obj("", finish)]
        final = {**obj("", None), "choices": [], "usage": usage} if directives.get("usage", 1) else None
        self._stream_events(events, final, directives, done=True)

    # -- embeddings ------------------------------------------------------------------------------

    def _embeddings(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        raw = body.get("input", "")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            inputs: list[Any] = [raw]
        else:
            inputs = list(raw) if isinstance(raw, list) else [str(raw)]
        dims = body.get("dimensions")
        if not isinstance(dims, int) or dims <= 0:
            dims = max(1, int(directives.get("dims", _DEFAULT_DIMS)))
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            vector = _embedding(_strip_directives(text).strip(), dims)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        prompt = max(1, _count_words(_input_texts(inputs)))
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model", "fake-embedding")),
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            },
        )

    # -- images ----------------------------------------------------------------------------------

    def _images(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        n = body.get("n") if isinstance(body.get("n"), int) else 1
        data: list[dict[str, Any]] = []
        for _ in range(max(1, n or 1)):
            image_id = self.provider._next_id("img")
            if body.get("response_format") == "url":
                data.append(
                    {"url": f"{self.provider.url}/fake-images/{image_id}.png", "revised_prompt": None}
                )
            else:
                data.append({"b64_json": base64.b64encode(_PNG).decode(), "revised_prompt": None})
        self._send_json(200, {"created": int(time.time()), "data": data})

    # -- responses API ---------------------------------------------------------------------------

    def _responses(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        model = str(body.get("model", "fake-model"))
        cap = body.get("max_output_tokens")
        words, capped = _output_budget(directives, cap if isinstance(cap, int) else None)
        chat_usage = _usage(max(1, _count_words(_input_texts(body.get("input")))), words, directives)
        usage = {
            "input_tokens": chat_usage["prompt_tokens"],
            "input_tokens_details": {
                "cached_tokens": chat_usage["prompt_tokens_details"]["cached_tokens"],
                "cache_write_tokens": 0,
            },
            "output_tokens": chat_usage["completion_tokens"],
            "output_tokens_details": {
                "reasoning_tokens": chat_usage["completion_tokens_details"]["reasoning_tokens"]
            },
            "total_tokens": chat_usage["total_tokens"],
        }
        rid = self.provider._next_id("resp_fake")
        item_id = rid.replace("resp_", "msg_")
        tool = _wants_tool(body, directives)
        text = " ".join(_output_words(words))
        status = "incomplete" if capped else "completed"

        def response(state: str, output: list[Any], with_usage: bool) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": int(time.time()),
                "status": state,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if capped and with_usage else None,
                "instructions": body.get("instructions"),
                "max_output_tokens": cap if isinstance(cap, int) else None,
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "temperature": body.get("temperature", 1.0),
                "text": {"format": {"type": "text"}},
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools", []),
                "top_p": body.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": usage if with_usage else None,
                "user": None,
                "metadata": body.get("metadata") or {},
            }

        if tool:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": item_id.replace("msg_", "fc_"),
                "call_id": item_id.replace("msg_", "call_"),
                "name": tool[0],
                "arguments": tool[1],
                "status": "completed",
            }
        else:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item = {
                "type": "message",
                "id": item_id,
                "status": status,
                "role": "assistant",
                "content": [part],
            }

        if not body.get("stream"):
            self._send_json(200, response(status, [item], with_usage=True))
            return

        # The full OpenAI event sequence, so clients that track items and parts see what they expect.
        seq = itertools.count()
        names: list[str] = []
        events: list[dict[str, Any]] = []

        def add(kind: str, **fields: Any) -> None:
            names.append(kind)
            events.append({"type": kind, "sequence_number": next(seq), **fields})

        add("response.created", response=response("in_progress", [], with_usage=False))
        add("response.in_progress", response=response("in_progress", [], with_usage=False))
        if tool:
            add(
                "response.output_item.added",
                output_index=0,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            for piece in _split_text(tool[1], directives.get("chunks")):
                add("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=piece)
            add(
                "response.function_call_arguments.done", item_id=item["id"], output_index=0, arguments=tool[1]
            )
        else:
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            add(
                "response.output_item.added",
                output_index=0,
                item={**item, "status": "in_progress", "content": []},
            )
            add("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=empty)
            for piece in _split_words(_output_words(words), directives.get("chunks")):
                add(
                    "response.output_text.delta",
                    item_id=item_id,
                    output_index=0,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            add(
                "response.output_text.done",
                item_id=item_id,
                output_index=0,
                content_index=0,
                text=text,
                logprobs=[],
            )
            add("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)
        add("response.output_item.done", output_index=0, item=item)
        final_kind = "response.incomplete" if capped else "response.completed"
        add(final_kind, response=response(status, [item], with_usage=True))
        if not directives.get("usage", 1):
            events[-1]["response"]["usage"] = None
        # ttft applies to the first *content* event; the lifecycle events before it go out at once.
        first_content = next(i for i, n in enumerate(names) if n.endswith(".delta") or n == final_kind)
        self._start_stream()
        drop_after = directives.get("drop_after")
        for i, payload in enumerate(events):
            if drop_after is not None and i >= drop_after:
                self._drop()
            if i == first_content:
                self._sleep(directives.get("ttft_ms", 0))
            elif i > first_content:
                self._sleep(directives.get("interval_ms", 0))
            self._send_event(payload, names[i])
        self._end_stream()

    # -- moderations ----------------------------------------------------------------------------

    def _moderations(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        raw = body.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        flagged = {c.strip() for c in str(directives.get("flag", "")).split(",") if c.strip()}
        unknown = flagged - set(_MODERATION_CATEGORIES)
        if unknown:
            self._send_error(400, f"Fake: unknown moderation category {sorted(unknown)[0]!r}")
            return
        results = []
        for item in inputs:
            text_only = isinstance(item, str) or (isinstance(item, Mapping) and item.get("type") == "text")
            kinds = ["text"] if text_only else ["image"]
            results.append(
                {
                    "flagged": bool(flagged),
                    "categories": {c: c in flagged for c in _MODERATION_CATEGORIES},
                    "category_scores": {c: 0.9 if c in flagged else 0.001 for c in _MODERATION_CATEGORIES},
                    "category_applied_input_types": {c: kinds for c in _MODERATION_CATEGORIES},
                }
            )
        self._send_json(
            200,
            {
                "id": self.provider._next_id("modr-fake"),
                "model": str(body.get("model") or "omni-moderation-latest"),
                "results": results,
            },
        )

    # -- audio -----------------------------------------------------------------------------------

    def _transcriptions(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        upload = body.get("file")
        if not isinstance(upload, Mapping):
            self._send_error(400, "Fake: expected a multipart upload with a 'file' field")
            return
        try:
            duration = float(directives.get("duration", upload["size"] / _AUDIO_BYTES_PER_SECOND))
        except ValueError:
            self._send_error(400, f"Fake: duration={directives['duration']!r} is not a number")
            return
        duration = round(max(0.0, duration), 3)
        text = " ".join(_output_words(max(0, int(directives.get("tokens", _DEFAULT_TOKENS)))))
        kind = str(directives.get("usage_type", "duration"))
        if kind == "tokens":
            # gpt-4o-transcribe's shape: it bills tokens of audio and prompt in, transcript words out.
            audio_tokens = math.ceil(duration * _AUDIO_TOKENS_PER_SECOND)
            text_tokens = _count_words(_input_texts(body.get("prompt")))
            words = len(text.split())
            usage: dict[str, Any] = {
                "type": "tokens",
                "input_tokens": audio_tokens + text_tokens,
                "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
                "output_tokens": words,
                "total_tokens": audio_tokens + text_tokens + words,
            }
        elif kind == "duration":
            usage = {"type": "duration", "seconds": math.ceil(duration)}
        else:
            self._send_error(400, f"Fake: usage_type={kind!r} is neither 'duration' nor 'tokens'")
            return
        fmt = str(body.get("response_format") or "json")
        if fmt == "text":
            self._send_body(200, text.encode(), "text/plain; charset=utf-8")
        elif fmt in ("srt", "vtt"):

            def stamp(seconds: float, sep: str) -> str:
                whole = int(seconds)
                millis = round((seconds - whole) * 1000)
                return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}{sep}{millis:03d}"

            if fmt == "srt":
                cue = f"1\n{stamp(0, ',')} --> {stamp(duration, ',')}\n{text}\n"
            else:
                cue = f"WEBVTT\n\n{stamp(0, '.')} --> {stamp(duration, '.')}\n{text}\n"
            self._send_body(200, cue.encode(), "text/plain; charset=utf-8")
        elif fmt == "verbose_json":
            segment = {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": duration,
                "text": text,
                "tokens": list(range(len(text.split()))),
                "temperature": 0.0,
                "avg_logprob": -0.1,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            self._send_json(
                200,
                {
                    "task": "transcribe",
                    "language": str(body.get("language") or "english"),
                    "duration": duration,
                    "text": text,
                    "segments": [segment],
                    "usage": usage,
                },
            )
        else:
            self._send_json(200, {"text": text, "usage": usage})

    def _speech(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        fmt = str(body.get("response_format") or "mp3")
        if fmt not in _AUDIO_TYPES:
            self._send_error(400, f"Fake: unsupported response_format {fmt!r}")
            return
        words = max(1, _count_words(_input_texts(body.get("input"))))
        size = int(directives.get("audio_bytes", words * _SPEECH_BYTES_PER_WORD))
        self._send_body(200, _audio_bytes(max(0, size), fmt), _AUDIO_TYPES[fmt])

    # -- rerank ----------------------------------------------------------------------------------

    def _rerank(self, body: dict[str, Any], directives: dict[str, Any]) -> None:
        query = body.get("query")
        documents = body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list):
            self._send_error(400, "Fake: rerank needs a string 'query' and a list of 'documents'")
            return
        texts = [_document_text(d) for d in documents]
        order = sorted(range(len(texts)), key=lambda i: (-_rerank_score(query, texts[i]), i))
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            order = order[:top_n]
        with_documents = bool(body.get("return_documents"))
        results = []
        for i in order:
            result: dict[str, Any] = {"index": i, "relevance_score": _rerank_score(query, texts[i])}
            if with_documents:
                result["document"] = {"text": texts[i]}
            results.append(result)
        input_tokens = max(1, _count_words([query, *texts]))
        self._send_json(
            200,
            {
                "id": self.provider._next_id("rerank-fake"),
                "results": results,
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"search_units": 1},
                    "tokens": {"input_tokens": input_tokens, "output_tokens": 0},
                },
            },
        )


def _split_text(text: str, chunks: int | None) -> list[str]:
    """Split a string (tool arguments) into ``chunks`` pieces; default a handful, like real streams."""
    count = chunks if chunks and chunks > 0 else 4
    count = max(1, min(count, len(text)))
    size = math.ceil(len(text) / count)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --------------------------------------------------------------------------------------------------
# Public class


class FakeProvider:
    """A loopback OpenAI-compatible server with scriptable behaviour; see the module docstring.

    ``defaults`` are directive defaults for every request, e.g. ``FakeProvider(latency_ms=5)``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **defaults: Any) -> None:
        self.host = host
        self._requested_port = port
        self.defaults: dict[str, Any] = _normalise(defaults)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: collections.deque[ReceivedRequest] = collections.deque(maxlen=MAX_KEPT_REQUESTS)
        self._error_counts: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self.port = port

    @property
    def url(self) -> str:
        """The ``api_base`` to give LiteLLM / the openai SDK."""
        return f"http://{self._url_host()}:{self.port}/v1"

    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self) -> FakeProvider:
        """Bind and serve on a background thread; the socket is listening when this returns."""
        if self._server is not None:
            return self
        self.stopping.clear()
        server_cls = _Server6 if ":" in self.host else _Server
        self._server = server_cls((self.host, self._requested_port), self)
        self.port = int(self._server.server_address[1])
        self._server.serve_in_thread(f"fake-provider:{self.port}")
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close idle keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, oldest first: the last `MAX_KEPT_REQUESTS` of them."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget received requests and ``error_times`` counters (the id counter keeps going)."""
        with self._lock:
            self._requests.clear()
            self._error_counts.clear()

    def expected_usage(
        self, messages_or_text: Any, max_tokens: int | None = None, *, n: int = 1, **directives: Any
    ) -> dict[str, Any]:
        """Like the module's :func:`expected_usage`, with this provider's constructor defaults applied."""
        text_directives = _normalise(_parse_directive_text(_last_user_text(messages_or_text)))
        return expected_usage(
            messages_or_text, max_tokens, n=n, **{**self.defaults, **text_directives, **directives}
        )

    # -- used by the handler ---------------------------------------------------------------------

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}-{next(self._ids)}"

    def _directives(self, body: Mapping[str, Any], headers: Mapping[str, str], route: str) -> dict[str, Any]:
        merged = dict(self.defaults)
        source = {
            "/chat/completions": body.get("messages"),
            "/completions": body.get("prompt"),
            "/embeddings": body.get("input"),
            "/images/generations": body.get("prompt"),
            "/responses": body.get("input"),
            "/moderations": body.get("input"),
            "/audio/transcriptions": body.get("prompt"),
            "/audio/speech": body.get("input"),
            "/rerank": body.get("query"),
            "/v2/rerank": body.get("query"),
        }.get(route)
        merged.update(_normalise(_parse_directive_text(_last_user_text(source))))
        merged.update(_normalise({k[7:]: v for k, v in headers.items() if k.startswith("x-fake-")}))
        return merged

    def _error_status(self, directives: Mapping[str, Any]) -> int | None:
        status = directives.get("error")
        if "error_times" not in directives:
            return int(status) if status else None
        key = str(directives.get("key", ""))
        with self._lock:
            seen = self._error_counts.get(key, 0) + 1
            self._error_counts[key] = seen
        if seen > int(directives["error_times"]):
            return None
        return int(status) if status else 500


# --------------------------------------------------------------------------------------------------
# CLI


def run_cli(argv: list[str] | None = None) -> int:
    """``litelens fake-provider``: serve until SIGINT/SIGTERM, printing the URL once listening."""
    parser = argparse.ArgumentParser(
        prog="litelens fake-provider",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="It prints its URL: give LiteLLM that as api_base (or OPENAI_API_BASE) with any api key. "
        "The directives --set takes are in the docstring of litelens.testing.fake_provider.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (the default)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a directive default for every request, e.g. --set latency_ms=20 (repeatable)",
    )
    args = parser.parse_args(argv)
    defaults: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        defaults[key] = value

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with FakeProvider(args.host, args.port, **defaults) as provider:
            # The one print in this module: scripts read the URL from the first stdout line.
            print(provider.url, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli())
