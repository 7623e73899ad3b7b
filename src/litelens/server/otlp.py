"""OTLP/HTTP trace payloads -> `NeutralSpan`s, and the OTLP response body.

Both encodings OTLP/HTTP allows arrive here: `application/x-protobuf` (an `ExportTraceServiceRequest`)
and `application/json` (the OTLP JSON mapping, which differs from protobuf's own JSON: ids are hex, not
base64, and enums may be integers). Both decode to the same `NeutralSpan`s, so `semconv.span_to_record`
never knows which one it got.

A body that cannot be read as an export raises `OtlpDecodeError` (a `ValueError`) with a short reason the
server can put in a 400 response; no other exception escapes, whatever the bytes. One bad span (unusable
ids, a malformed or too deeply nested attribute value, a field of the wrong type) is not a reason to drop
its neighbours: `decode_traces_partial` skips it and counts it, for the OTLP partial-success response (a
bad resource costs the spans under it).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from litelens.semconv import NeutralSpan
from litelens.server import fastjson

# A collector's body limit belongs to the server settings; this default only stops a runaway payload.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# Nested arrays/kvlists deeper than this are an attack or a bug, not telemetry.
MAX_VALUE_DEPTH = 32

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_CODES = ("UNSET", "OK", "ERROR")


class OtlpDecodeError(ValueError):
    """The request body is not a valid OTLP trace export; `str()` says why, in a few words."""


class UnsupportedContentType(OtlpDecodeError):
    """Neither protobuf nor JSON: the server answers 415."""


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_traces(body: bytes, content_type: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[NeutralSpan]:
    """The spans in an OTLP/HTTP trace export body (spans with invalid ids are skipped)."""
    spans, _rejected, _reason = decode_traces_partial(body, content_type, max_bytes=max_bytes)
    return spans


def decode_traces_partial(
    body: bytes, content_type: str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[NeutralSpan], int, str]:
    """(spans, number of spans rejected, reason for the first rejection) for an export body."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise OtlpDecodeError("body must be bytes")
    if len(body) > max_bytes:
        raise OtlpDecodeError(f"body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    kind = media_type(content_type)
    try:
        if kind == "application/x-protobuf":
            return _decode_protobuf(bytes(body))
        if kind == "application/json":
            return _decode_json(bytes(body))
    except OtlpDecodeError:
        raise
    except (RecursionError, MemoryError):
        raise OtlpDecodeError("payload nested too deeply") from None
    except Exception as exc:  # any decoding surprise is the payload's fault, never a 500
        raise OtlpDecodeError(f"malformed OTLP payload ({type(exc).__name__})") from None
    raise UnsupportedContentType(
        f"unsupported content type {kind or '(none)'!r}; use application/x-protobuf or application/json"
    )


def encode_partial_success(rejected: int, message: str, content_type: str) -> bytes:
    """The body of a successful OTLP/HTTP response, in the request's encoding.

    Per the OTLP spec, a fully accepted export answers with `partial_success` unset; it is set only
    when spans were rejected or there is a warning to pass back.
    """
    if media_type(content_type) == "application/json":
        if rejected <= 0 and not message:
            return b"{}"
        partial: dict[str, Any] = {"rejectedSpans": str(max(0, rejected))}
        if message:
            partial["errorMessage"] = message
        return json.dumps({"partialSuccess": partial}, separators=(",", ":")).encode()
    response = ExportTraceServiceResponse()
    if rejected > 0 or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=max(0, rejected), error_message=message)
        )
    return response.SerializeToString()


# google.rpc.Status codes for the HTTP statuses the collector fails with. The OTLP spec lets a server
# omit the code, and clients only log it; the message is what a user reads in the exporter's log.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 503: 14}


def encode_status(http_status: int, message: str, content_type: str) -> tuple[bytes, str]:
    """(body, content type) of a failed OTLP/HTTP response: a `google.rpc.Status` in the request's
    encoding, as the OTLP spec requires for every 4xx and 5xx answer. A protobuf body read as JSON (or
    the reverse) is garbage to an exporter, which then reports the status code without the reason.

    The JSON form also carries the reason under `error`, as the collector's other routes do.
    """
    code = _RPC_CODES.get(http_status, 2)  # 2: UNKNOWN
    if media_type(content_type) == "application/x-protobuf":
        return Status(code=code, message=message).SerializeToString(), "application/x-protobuf"
    document = {"code": code, "message": message, "error": message}
    return json.dumps(document, separators=(",", ":")).encode(), "application/json"


# --------------------------------------------------------------------------------------------------
# protobuf


def _decode_protobuf(body: bytes) -> tuple[list[NeutralSpan], int, str]:
    request = ExportTraceServiceRequest()
    warning = ""
    try:
        request.ParseFromString(body)
    except DecodeError:
        repaired = _with_valid_utf8(body)
        if repaired is None:
            raise OtlpDecodeError("body is not a protobuf ExportTraceServiceRequest") from None
        request.ParseFromString(repaired)
        warning = _INVALID_UTF8
    spans: list[NeutralSpan] = []
    rejected, reason = 0, ""
    for resource_spans in request.resource_spans:
        try:
            resource = _pb_attributes(resource_spans.resource.attributes)
        except OtlpDecodeError as exc:
            rejected += sum(len(scope_spans.spans) for scope_spans in resource_spans.scope_spans)
            reason = reason or f"resource: {exc}"
            continue
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
                problem = _id_problem(trace_id, span_id)
                if problem:
                    rejected += 1
                    reason = reason or _span_reason(span_id, problem)
                    continue
                try:
                    decoded = NeutralSpan(
                        trace_id=trace_id,
                        span_id=span_id,
                        parent_span_id=_parent_id(span.parent_span_id.hex()),
                        name=span.name,
                        kind=_enum_name(_KINDS, span.kind, "UNSPECIFIED"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=_enum_name(_STATUS_CODES, span.status.code, "UNSET"),
                        status_message=span.status.message,
                        attributes=_pb_attributes(span.attributes),
                        events=[
                            {
                                "name": e.name,
                                "time_ns": e.time_unix_nano,
                                "attributes": _pb_attributes(e.attributes),
                            }
                            for e in span.events
                        ],
                        resource=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                    )
                except OtlpDecodeError as exc:
                    rejected += 1
                    reason = reason or _span_reason(span_id, exc)
                    continue
                spans.append(decoded)
    return spans, rejected, reason or warning


_PB_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value", "bytes_value"))

# Senders that protobuf itself does not check do send strings that are not UTF-8: JavaScript cuts text
# between the two halves of an emoji, Go strings are bytes. The Collector passes them on; protobuf here
# refused the whole export for one such string, and a 400 makes the exporter drop the batch.
_INVALID_UTF8 = (
    "strings that were not valid UTF-8 were stored with one U+FFFD per bad sequence or surrogate half"
)


def _one_replacement_per_sequence(exc: UnicodeError) -> tuple[str, int]:
    """The decoding error handler `litelens-utf8`: one U+FFFD per ill-formed sequence, as `replace`
    gives, except that a surrogate half encoded as UTF-8 (ED A0-BF 80-BF, what protobufjs writes for a
    JavaScript string cut mid-emoji) is ONE U+FFFD, not three: the same text sent as JSON (`"\\ud83d"`)
    gets one, so both routes store the same string."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    data, start = exc.object, exc.start
    half = data[start : start + 3]
    if len(half) == 3 and half[0] == 0xED and 0xA0 <= half[1] <= 0xBF and 0x80 <= half[2] <= 0xBF:
        return "\ufffd", start + 3
    return "\ufffd", exc.end


_UTF8_ERRORS = "litelens-utf8"
codecs.register_error(_UTF8_ERRORS, _one_replacement_per_sequence)


def _with_valid_utf8(body: bytes) -> bytes | None:
    """The export re-encoded with every invalid UTF-8 string repaired, or None when the body is not an
    export for another reason. Parsed with a copy of the schema whose strings are bytes (the same wire
    format, without the UTF-8 check)."""
    lenient = _lenient_request_class()()
    try:
        lenient.ParseFromString(body)
    except DecodeError:
        return None
    _repair_strings(lenient, ExportTraceServiceRequest.DESCRIPTOR)
    return bytes(lenient.SerializeToString())


@functools.lru_cache(maxsize=1)
def _lenient_request_class() -> Any:
    files: list[Any] = []

    def add(file: Any) -> None:
        for dependency in file.dependencies:
            add(dependency)
        if file not in files:
            files.append(file)

    add(ExportTraceServiceRequest.DESCRIPTOR.file)
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pending = list(proto.message_type)
        while pending:
            message = pending.pop()
            pending.extend(message.nested_type)
            for item in message.field:
                if item.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
                    item.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
        pool.Add(proto)
    name = ExportTraceServiceRequest.DESCRIPTOR.full_name
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def _repair_strings(message: Any, strict: Any) -> None:
    """Decode, with replacement, the bytes of every field that `strict` (the real schema) says is a string."""
    for item, value in message.ListFields():
        field = strict.fields_by_name[item.name]
        # `is_repeated` since protobuf 5.29 (`label` is gone in 7); older releases have only `label`
        repeated = getattr(item, "is_repeated", None)
        if repeated is None:
            repeated = item.label == item.LABEL_REPEATED
        if field.type == field.TYPE_STRING:
            if repeated:
                value[:] = [v.decode("utf-8", _UTF8_ERRORS).encode() for v in value]
            else:
                setattr(message, item.name, value.decode("utf-8", _UTF8_ERRORS).encode())
        elif field.type == field.TYPE_MESSAGE:
            for child in value if repeated else (value,):
                _repair_strings(child, field.message_type)


def _pb_attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, KeyValue):
            # Scalars (nearly every attribute) inline: a call per attribute was most of the decoding.
            value = item.value
            which = value.WhichOneof("value")
            out[item.key] = getattr(value, which) if which in _PB_SCALARS else _pb_value(value, 0)
    return out


def _pb_value(value: AnyValue, depth: int) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise OtlpDecodeError("attribute value nested too deeply")
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_pb_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return getattr(value, which)


# --------------------------------------------------------------------------------------------------
# JSON (the OTLP JSON mapping)


def _decode_json(body: bytes) -> tuple[list[NeutralSpan], int, str]:
    warning = ""
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        try:
            document = json.loads(body.decode("utf-8", _UTF8_ERRORS))
        except ValueError:
            raise OtlpDecodeError("body is not valid JSON") from None
        warning = _INVALID_UTF8
    except ValueError:
        raise OtlpDecodeError("body is not valid JSON") from None
    if fastjson.SURROGATE_SOURCE.search(body):
        # Escaped pairs decode to one character; a lone half stays a surrogate no store can write.
        document, repaired = fastjson.without_lone_surrogates(document)
        warning = warning or (_INVALID_UTF8 if repaired else "")
    spans, rejected, reason = _json_spans(document)
    return spans, rejected, reason or warning


def _json_spans(document: Any) -> tuple[list[NeutralSpan], int, str]:
    root = _obj(document, "request")
    spans: list[NeutralSpan] = []
    rejected, reason = 0, ""
    for resource_spans in _list(_field(root, "resourceSpans", "resource_spans"), "resourceSpans"):
        resource_spans = _obj(resource_spans, "resourceSpans[]")
        all_scope_spans = [
            _obj(scope_spans, "scopeSpans[]")
            for scope_spans in _list(_field(resource_spans, "scopeSpans", "scope_spans"), "scopeSpans")
        ]
        try:
            resource = _json_attributes(_obj(_field(resource_spans, "resource") or {}, "resource"))
        except OtlpDecodeError as exc:
            rejected += sum(len(_list(_field(s, "spans"), "spans")) for s in all_scope_spans)
            reason = reason or f"resource: {exc}"
            continue
        for scope_spans in all_scope_spans:
            scope = _obj(_field(scope_spans, "scope") or {}, "scope")
            scope_name = _string(_field(scope, "name"), "scope.name")
            scope_version = _string(_field(scope, "version"), "scope.version")
            for span in _list(_field(scope_spans, "spans"), "spans"):
                span = _obj(span, "span")
                try:
                    decoded = _json_span(span, resource, scope_name, scope_version)
                except OtlpDecodeError as exc:
                    rejected += 1
                    reason = reason or _span_reason(_field(span, "spanId", "span_id"), exc)
                    continue
                spans.append(decoded)
    return spans, rejected, reason


def _json_span(
    span: Mapping[str, Any], resource: dict[str, Any], scope_name: str, scope_version: str
) -> NeutralSpan:
    trace_id = _hex_id(_field(span, "traceId", "trace_id"), "traceId")
    span_id = _hex_id(_field(span, "spanId", "span_id"), "spanId")
    problem = _id_problem(trace_id, span_id)
    if problem:
        raise OtlpDecodeError(problem)
    status = _obj(_field(span, "status") or {}, "status")
    return NeutralSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=_parent_id(_hex_id(_field(span, "parentSpanId", "parent_span_id"), "parentSpanId")),
        name=_string(_field(span, "name"), "name"),
        kind=_json_enum(_field(span, "kind"), _KINDS, "SPAN_KIND_", "kind"),
        start_ns=_uint64(_field(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
        end_ns=_uint64(_field(span, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
        status_code=_json_enum(_field(status, "code"), _STATUS_CODES, "STATUS_CODE_", "status.code"),
        status_message=_string(_field(status, "message"), "status.message"),
        attributes=_json_attributes(span),
        events=[_json_event(e) for e in _list(_field(span, "events"), "events")],
        resource=resource,
        scope_name=scope_name,
        scope_version=scope_version,
    )


def _field(obj: Mapping[str, Any], *names: str) -> Any:
    """A field by its lowerCamelCase name or its proto name (receivers must accept both)."""
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise OtlpDecodeError(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{where} must be an array")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OtlpDecodeError(f"{where} must be a string")
    return value


def _uint64(value: Any, where: str) -> int:
    """A 64-bit unsigned integer, given as a JSON number or (per the protobuf JSON mapping) a string."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise OtlpDecodeError(f"{where} must be an integer")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20
    ):
        number = int(value)
    else:
        raise OtlpDecodeError(f"{where} must be an integer")
    if not 0 <= number < 2**64:
        raise OtlpDecodeError(f"{where} out of range")
    return number


def _int64(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise OtlpDecodeError(f"{where} must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 21:
        try:
            number = int(value)
        except ValueError:
            raise OtlpDecodeError(f"{where} must be an integer") from None
    else:
        raise OtlpDecodeError(f"{where} must be an integer")
    if not -(2**63) <= number < 2**63:
        raise OtlpDecodeError(f"{where} out of range")
    return number


def _double(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise OtlpDecodeError(f"{where} must be a number")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise OtlpDecodeError(f"{where} out of range") from None
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.lower().replace("infinity", "inf"))
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise OtlpDecodeError(f"{where} must be a number")


def _hex_id(value: Any, where: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise OtlpDecodeError(f"{where} must be a hex string")
    text = value.lower()
    if any(c not in "0123456789abcdef" for c in text):
        raise OtlpDecodeError(f"{where} must be hex (the OTLP JSON mapping does not use base64 ids)")
    return text


def _json_enum(value: Any, names: tuple[str, ...], prefix: str, where: str) -> str:
    if value is None:
        return names[0]
    if isinstance(value, int) and not isinstance(value, bool):
        return _enum_name(names, value, names[0])
    if isinstance(value, str):
        name = value.upper().removeprefix(prefix)
        if name in names:
            return name
    raise OtlpDecodeError(f"{where} is not a known enum value")


def _json_attributes(obj: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _list(_field(obj, "attributes"), "attributes"):
        item = _obj(item, "attribute")
        key = _string(_field(item, "key"), "attribute key")
        value = _field(item, "value")
        out[key] = None if value is None else _json_value(value, 0)
    return out


def _json_value(value: Any, depth: int) -> Any:
    """An OTLP JSON AnyValue as a plain Python value."""
    if depth > MAX_VALUE_DEPTH:
        raise OtlpDecodeError("attribute value nested too deeply")
    value = _obj(value, "AnyValue")
    if "stringValue" in value or "string_value" in value:
        return _string(_field(value, "stringValue", "string_value"), "stringValue")
    if "boolValue" in value or "bool_value" in value:
        flag = _field(value, "boolValue", "bool_value")
        if not isinstance(flag, bool):
            raise OtlpDecodeError("boolValue must be true or false")
        return flag
    if "intValue" in value or "int_value" in value:
        return _int64(_field(value, "intValue", "int_value"), "intValue")
    if "doubleValue" in value or "double_value" in value:
        return _double(_field(value, "doubleValue", "double_value"), "doubleValue")
    if "arrayValue" in value or "array_value" in value:
        array = _obj(_field(value, "arrayValue", "array_value") or {}, "arrayValue")
        return [_json_value(v, depth + 1) for v in _list(_field(array, "values"), "arrayValue.values")]
    if "kvlistValue" in value or "kvlist_value" in value:
        kvlist = _obj(_field(value, "kvlistValue", "kvlist_value") or {}, "kvlistValue")
        out: dict[str, Any] = {}
        for item in _list(_field(kvlist, "values"), "kvlistValue.values"):
            item = _obj(item, "kvlistValue entry")
            inner = _field(item, "value")
            out[_string(_field(item, "key"), "kvlistValue key")] = (
                None if inner is None else _json_value(inner, depth + 1)
            )
        return out
    if "bytesValue" in value or "bytes_value" in value:
        raw = _string(_field(value, "bytesValue", "bytes_value"), "bytesValue")
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            try:
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            except (binascii.Error, ValueError):
                raise OtlpDecodeError("bytesValue must be base64") from None
    return None  # an empty AnyValue


def _json_event(value: Any) -> dict[str, Any]:
    event = _obj(value, "event")
    return {
        "name": _string(_field(event, "name"), "event.name"),
        "time_ns": _uint64(_field(event, "timeUnixNano", "time_unix_nano"), "event.timeUnixNano"),
        "attributes": _json_attributes(event),
    }


# --------------------------------------------------------------------------------------------------
# shared


def _enum_name(names: tuple[str, ...], number: int, default: str) -> str:
    return names[number] if 0 <= number < len(names) else default


def _parent_id(hex_id: str) -> str | None:
    """None for a root span. Zeros are "no parent" in OTLP as an empty id is (SDKs and the Collector
    treat an all-zero id as invalid), so a root sent with them stays a root, not a child of nothing."""
    return hex_id if len(hex_id) == 16 and hex_id != "0" * 16 else None


def _id_problem(trace_id: str, span_id: str) -> str:
    if len(trace_id) != 32 or trace_id == "0" * 32:
        return "invalid traceId (need 16 non-zero bytes)"
    if len(span_id) != 16 or span_id == "0" * 16:
        return "invalid spanId (need 8 non-zero bytes)"
    return ""


def _span_reason(span_id: Any, problem: object) -> str:
    """Why a span was rejected, naming it by its id as sent when that is one, for the exporter's log."""
    named = isinstance(span_id, str) and 0 < len(span_id) <= 32
    return f"span {span_id if named else '(no usable id)'}: {problem}"
