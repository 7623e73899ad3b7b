"""OTLP/HTTP trace decoding: what real SDKs send decodes the same from protobuf and JSON; a bad span is
rejected alone, and a body that is no export raises OtlpDecodeError (a 400 with a reason), never anything
that would become a 500."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from litelens.server.otlp import (
    OtlpDecodeError,
    UnsupportedContentType,
    decode_traces,
    decode_traces_partial,
    encode_partial_success,
)
from otlp_helpers import JSON, PROTOBUF, json_body, protobuf_body, sdk_spans

# One attribute of every OTLP value type, including an int past 2**53 and every kind of array.
EVERY_ATTRIBUTE_TYPE = {
    "s": "text",
    "i": 42,
    "big": 2**62,
    "neg": -7,
    "f": 0.25,
    "b": False,
    "ss": ["a", "b"],
    "ii": [1, 2, 3],
    "ff": [0.5, 1.5],
    "bb": [True, False],
}


def _rich(tracer: Tracer) -> None:
    with (
        tracer.start_as_current_span("parent", kind=SpanKind.SERVER),
        tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes=EVERY_ATTRIBUTE_TYPE,
        ) as span,
    ):
        span.add_event("gen_ai.first_chunk", {"n": 1})
        span.set_status(Status(StatusCode.ERROR, "boom"))


@pytest.fixture(scope="module")
def rich_spans() -> Any:
    return sdk_spans(_rich, {"service.name": "billing", "deployment.environment.name": "prod"})


def test_protobuf_and_json_decode_to_identical_spans(rich_spans: Any) -> None:
    from_protobuf = decode_traces(protobuf_body(rich_spans), PROTOBUF)
    from_json = decode_traces(json_body(rich_spans), JSON)
    assert from_protobuf == from_json
    assert len(from_protobuf) == 2


def test_decoded_span_keeps_ids_times_status_values_events_and_resource(rich_spans: Any) -> None:
    by_name = {s.name: s for s in decode_traces(protobuf_body(rich_spans), PROTOBUF)}
    child, parent = by_name["chat gpt-4o-mini"], by_name["parent"]
    sdk_child = next(s for s in rich_spans if s.name == "chat gpt-4o-mini")
    assert child.trace_id == f"{sdk_child.context.trace_id:032x}" == parent.trace_id
    assert child.span_id == f"{sdk_child.context.span_id:016x}"
    assert child.parent_span_id == parent.span_id and parent.parent_span_id is None
    assert (child.start_ns, child.end_ns) == (sdk_child.start_time, sdk_child.end_time)
    assert (child.kind, parent.kind) == ("CLIENT", "SERVER")
    assert (child.status_code, child.status_message) == ("ERROR", "boom")
    assert child.attributes == EVERY_ATTRIBUTE_TYPE
    assert child.events == [
        {"name": "gen_ai.first_chunk", "time_ns": sdk_child.events[0].timestamp, "attributes": {"n": 1}}
    ]
    assert child.resource["service.name"] == "billing"
    assert child.resource["deployment.environment.name"] == "prod"
    assert (child.scope_name, child.scope_version) == ("tests.peer", "1.2.3")


def _json_export(span: dict[str, Any], resource_attrs: list[Any] | None = None) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": resource_attrs or []},
                    "scopeSpans": [{"scope": {"name": "x"}, "spans": [span]}],
                }
            ]
        }
    ).encode()


BASE_SPAN = {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "name": "s"}


def test_json_mapping_variants_that_hand_written_exporters_use() -> None:
    """intValue as number or string, enums by name, snake_case field names, kvlist and bytes values."""
    span = {
        **BASE_SPAN,
        "kind": "SPAN_KIND_CLIENT",
        "parentSpanId": "0000000000000000",  # a root, as some exporters write one
        "start_time_unix_nano": 1700000000000000000,
        "endTimeUnixNano": "1700000001000000000",
        "status": {"code": "STATUS_CODE_OK"},
        "attributes": [
            {"key": "n1", "value": {"intValue": 5}},
            {"key": "n2", "value": {"intValue": "-6"}},
            {"key": "d", "value": {"doubleValue": "NaN"}},
            {
                "key": "kv",
                "value": {
                    "kvlistValue": {
                        "values": [{"key": "k", "value": {"arrayValue": {"values": [{"boolValue": True}]}}}]
                    }
                },
            },
            {"key": "raw", "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()}},
            {"key": "empty", "value": {}},
        ],
        "unknownField": {"ignored": True},
    }
    (decoded,) = decode_traces(_json_export(span), "application/json; charset=utf-8")
    assert decoded.trace_id == "5b8efff798038103d269b633813fc60c"
    assert (decoded.kind, decoded.status_code, decoded.parent_span_id) == ("CLIENT", "OK", None)
    assert (decoded.start_ns, decoded.end_ns) == (1700000000000000000, 1700000001000000000)
    attrs = decoded.attributes
    assert (attrs["n1"], attrs["n2"], attrs["kv"], attrs["raw"], attrs["empty"]) == (
        5,
        -6,
        {"k": [True]},
        b"\x00\x01",
        None,
    )
    assert attrs["d"] != attrs["d"]  # NaN


def test_spans_with_bad_ids_are_counted_not_fatal() -> None:
    good = {**BASE_SPAN, "name": "good"}
    bad = {**BASE_SPAN, "spanId": "", "name": "bad"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}).encode()
    spans, rejected, reason = decode_traces_partial(body, JSON)
    assert [s.name for s in spans] == ["good"]
    assert rejected == 1 and "spanId" in reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be an object"),
        (b'{"resourceSpans": {}}', "must be an array"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}', "span must be an object"),
    ],
)
def test_malformed_json_says_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(OtlpDecodeError, match=reason):
        decode_traces(body, JSON)
    with pytest.raises(OtlpDecodeError):
        decode_traces(b"[" * 100_000, JSON)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    return value


def test_a_span_with_a_malformed_value_is_rejected_alone_in_either_encoding(rich_spans: Any) -> None:
    """One bad attribute value refused the whole export with a 400, which makes the exporter drop every
    span in it; per the OTLP spec's partial success only the bad span is rejected, counted, with why."""
    bad_spans = [
        {**BASE_SPAN, "spanId": "0000000000000001", "attributes": [{"key": "k", "value": {"intValue": "x"}}]},
        {**BASE_SPAN, "spanId": "0000000000000002", "kind": "SPAN_KIND_BOGUS"},
        {**BASE_SPAN, "spanId": "0000000000000003", "startTimeUnixNano": -1},
        {**BASE_SPAN, "spanId": "0000000000000004", "attributes": [{"key": "k", "value": _nested(200)}]},
        {**BASE_SPAN, "traceId": "W7f/95gDgQPSabYzgT/GDA=="},
    ]
    good = {**BASE_SPAN, "name": "good"}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [*bad_spans, good]}]}]}).encode()
    spans, rejected, reason = decode_traces_partial(body, JSON)
    assert [s.name for s in spans] == ["good"]
    assert rejected == 5 and reason.startswith("span 0000000000000001:") and "intValue" in reason, reason
    # A bad resource attribute costs the spans under it, not the export.
    bad_resource = {
        "resource": {"attributes": [{"key": "r", "value": _nested(40)}]},
        "scopeSpans": [{"spans": [good, good]}],
    }
    body = json.dumps({"resourceSpans": [bad_resource, {"scopeSpans": [{"spans": [good]}]}]}).encode()
    spans, rejected, reason = decode_traces_partial(body, JSON)
    assert (len(spans), rejected) == (1, 2) and "nested" in reason, reason
    # protobuf: a value 40 levels deep (protobuf itself parses up to ~50) in one span of a real export.
    request = ExportTraceServiceRequest.FromString(protobuf_body(rich_spans))
    first = request.resource_spans[0].scope_spans[0].spans[0]
    deep = AnyValue(string_value="leaf")
    for _ in range(40):
        deep = AnyValue(array_value=ArrayValue(values=[deep]))
    first.attributes.append(KeyValue(key="deep", value=deep))
    spans, rejected, reason = decode_traces_partial(request.SerializeToString(), PROTOBUF)
    assert (len(spans), rejected) == (
        len(rich_spans) - 1,
        1,
    ) and reason == f"span {first.span_id.hex()}: attribute value nested too deeply"


def test_oversized_body_and_wrong_content_type_are_refused(rich_spans: Any) -> None:
    body = protobuf_body(rich_spans)
    with pytest.raises(OtlpDecodeError, match="limit"):
        decode_traces(body, PROTOBUF, max_bytes=len(body) - 1)
    with pytest.raises(UnsupportedContentType, match="application/x-protobuf"):
        decode_traces(body, "text/plain")


def test_every_truncation_of_a_real_export_decodes_or_raises_only_decode_error(rich_spans: Any) -> None:
    for body, content_type in ((protobuf_body(rich_spans), PROTOBUF), (json_body(rich_spans), JSON)):
        for cut in range(len(body)):
            with contextlib.suppress(OtlpDecodeError):
                decode_traces(body[:cut], content_type)


def test_empty_export_is_valid() -> None:
    assert decode_traces(b"", PROTOBUF) == []
    assert decode_traces(b"{}", JSON) == []


# --------------------------------------------------------------------------------------------------
# fuzzing: a few thousand examples in all, a few seconds

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_refuse(body: bytes, content_type: str) -> None:
    with contextlib.suppress(OtlpDecodeError):
        decode_traces(body, content_type)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([PROTOBUF, JSON]))
def test_random_bytes_never_raise_anything_but_decode_error(body: bytes, content_type: str) -> None:
    _decode_or_refuse(body, content_type)


_json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_otlp_keys = st.sampled_from(
    [
        "resourceSpans", "scopeSpans", "spans", "resource", "scope", "attributes", "key", "value", "traceId", "spanId",
        "parentSpanId", "name", "kind", "status", "code", "events", "timeUnixNano", "startTimeUnixNano",
        "stringValue", "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue", "values",
    ]
)  # fmt: skip
# JSON that is shaped like OTLP (the right keys, wrong values), to get past the first checks.
_otlp_shaped = st.recursive(
    _json_leaves | st.just("5b8efff798038103d269b633813fc60c") | st.just("eee19b7ec3c1b174"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_otlp_keys, inner, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(_json_values | _otlp_shaped)
def test_random_json_never_raises_anything_but_decode_error(document: Any) -> None:
    _decode_or_refuse(json.dumps(document).encode(), JSON)


@FUZZ
@given(st.data())
def test_mutated_real_protobuf_never_raises_anything_but_decode_error(
    rich_spans: Any, data: st.DataObject
) -> None:
    body = bytearray(protobuf_body(rich_spans))
    for _ in range(data.draw(st.integers(1, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_refuse(bytes(body), PROTOBUF)


# --------------------------------------------------------------------------------------------------
# response bodies


def test_full_success_leaves_partial_success_unset() -> None:
    assert (
        ExportTraceServiceResponse.FromString(encode_partial_success(0, "", PROTOBUF)).HasField(
            "partial_success"
        )
        is False
    )
    assert json.loads(encode_partial_success(0, "", JSON)) == {}


def test_partial_success_reports_rejected_spans_in_either_encoding() -> None:
    response = ExportTraceServiceResponse.FromString(
        encode_partial_success(3, "3 spans had no traceId", PROTOBUF)
    )
    assert (response.partial_success.rejected_spans, response.partial_success.error_message) == (
        3,
        "3 spans had no traceId",
    )
    assert json.loads(encode_partial_success(3, "bad ids", "application/json; charset=utf-8")) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "bad ids"}
    }
