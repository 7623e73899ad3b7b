"""Real OTLP payloads for the tests: spans made by the OpenTelemetry SDK, encoded by the OTLP exporter's
own encoder, so the decoder is tested against what SDKs actually send rather than against our idea of it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def sdk_spans(build: Callable[[Tracer], None], resource: dict[str, Any] | None = None) -> list[ReadableSpan]:
    """The finished spans that `build` creates with a fresh SDK tracer."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "tests"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        build(provider.get_tracer("tests.peer", "1.2.3"))
    finally:
        provider.shutdown()
    return list(exporter.get_finished_spans())


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def _hex_ids(node: Any) -> Any:
    """protobuf's JSON writes bytes as base64; the OTLP JSON mapping wants trace and span ids in hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex()
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
            else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def json_body(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP JSON mapping of the same export: hex ids, enums as integers."""
    document = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    return json.dumps(_hex_ids(document)).encode()
