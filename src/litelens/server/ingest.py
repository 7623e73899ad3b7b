"""What arrives at the collector becomes records and spans: bodies read within limits, decompressed
within limits, validated record by record, and OTLP spans mapped to call records.

Pure functions, no web framework: `app.py` calls them and turns `IngestError` into a 4xx answer.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from litelens import credentials, semconv
from litelens import record as rec
from litelens.semconv import NeutralSpan
from litelens.server import fastjson
from litelens.server.store.rows import without_nul


class IngestError(Exception):
    """A request the collector refuses as a whole: `status` (400, 413, 415, 429) and a reason for the
    sender, with the headers the answer needs (429's `Retry-After`)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding; a decompression bomb stops at `limit` bytes (413)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise IngestError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    wbits = 47 if encoding != "deflate" else 15  # 47: zlib or gzip header, detected
    parts: list[bytes] = []
    size = 0
    while True:
        # A gzip body may be several members one after the other (RFC 1952, what a streaming compressor
        # that flushes writes); the body is all of them, not only the first.
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(body, limit + 1 - size)
        except zlib.error as exc:
            raise IngestError(400, f"body is not valid {encoding} ({exc})") from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise IngestError(413, f"decompressed body exceeds the {limit}-byte limit; send smaller batches")
        if not inflater.eof:
            raise IngestError(400, f"{encoding} body is truncated")
        parts.append(part)
        body = inflater.unused_data
        if not body:
            return parts[0] if len(parts) == 1 else b"".join(parts)


# --------------------------------------------------------------------------------------------------
# Core layer events


@dataclass
class Batch:
    records: list[dict[str, Any]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """What was not stored at all, each with its index (events) or span id (OTLP) and the reason."""
    texts: list[str] = field(default_factory=list)
    """Each record's JSON text, parallel to `records` when filled (events), for the store to reuse."""
    warnings: list[str] = field(default_factory=list)
    """What was dropped from records that were stored anyway (OTLP: a field a span got wrong)."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """The same for `/v1/events`: each with the record's index and what was dropped (its `warnings`)."""


_REQUIRED_STR = ("call_id",)
_NUMBERS = ("start_time", "end_time", "duration_ms", "ttft_ms", "output_tokens_per_s", "cost_usd")
# Measurements stored as null when negative (`drop_negative_measures`): no call has a negative one.
_MEASURED = ("ttft_ms", "output_tokens_per_s")
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
_OPT_STR = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "end_user",
    "user_id",
    "request_model",
    "response_model",
    "provider",
    "api_base",
    "model_group",
    "deployment_id",
    "service",
    "environment",
    "response_id",
    "litellm_trace_id",
    "litellm_call_type",
)


# No time, duration or cost is anywhere near this; past it a value stops fitting the store's columns
# (SQLite INTEGER, PostgreSQL double) or turns into infinity in `end - start`.
_NUMBER_BOUND = 1e15


def _finite(value: Any) -> bool:
    cls = value.__class__
    if cls is float or cls is int:  # the usual case; NaN and infinities fail the comparison
        return -_NUMBER_BOUND <= value <= _NUMBER_BOUND
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= _NUMBER_BOUND
    )


# Times no clock gives: before 2000, or more than a day ahead (a day covers any clock skew). One call
# stored in the year 33658 stopped the dashboard's live tail, which polls after the newest start shown.
EARLIEST_TIME = 946684800.0  # 2000-01-01T00:00:00Z
MAX_AHEAD_S = 86400.0
_TIME_WINDOW = "between 2000-01-01 and a day from now"


def latest_time() -> float:
    """The latest start or end time a batch arriving now may carry; taken once per batch."""
    return time.time() + MAX_AHEAD_S


def _time_problem(start: float, end: float | None, latest: float) -> str | None:
    if not EARLIEST_TIME <= start <= latest:
        return f"start_time must be {_TIME_WINDOW}"
    if end is not None and not EARLIEST_TIME <= end <= latest:
        return f"end_time must be {_TIME_WINDOW}"
    return None


def check_record(record: Any, latest: float) -> str | None:
    """Why a record cannot be stored, or None. Checks what the store and the queries rely on; `latest`
    is `latest_time()`."""
    if not isinstance(record, dict):
        return "record is not a JSON object"
    schema = record.get("schema")
    if schema is not None and (not isinstance(schema, str) or not schema.startswith("litelens.call/")):
        return f"unknown schema {schema!r}; expected litelens.call/1"
    call_id = record.get("call_id")
    if not isinstance(call_id, str) or not call_id or len(call_id) > 256:
        return "call_id must be a non-empty string of at most 256 characters"
    for key in ("start_time", "end_time"):
        if not _finite(record.get(key)):
            return f"{key} must be a number (seconds since the epoch, at most {_NUMBER_BOUND:.0e})"
    problem = _time_problem(record["start_time"], record["end_time"], latest)
    if problem is not None:
        return problem
    for key in _NUMBERS[2:]:  # start_time and end_time passed above
        value = record.get(key)
        if value is not None and not _finite(value):
            return f"{key} must be a finite number (at most {_NUMBER_BOUND:.0e} in size) or null"
    for key in _OPT_STR:
        value = record.get(key)
        if value is not None and value.__class__ is not str and not isinstance(value, str):
            return f"{key} must be a string or null"
    status = record.get("status", "ok")
    if status not in rec.STATUSES:
        return f"status must be one of {', '.join(rec.STATUSES)}"
    usage = record.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            return "usage must be an object"
        for key in _TOKENS:
            value = usage.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**53
            ):
                return f"usage.{key} must be a non-negative integer or null"
    tags = record.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        return "tags must be a list of strings"
    for key in ("metadata", "error", "request", "response", "proxy"):
        value = record.get(key)
        if value is not None and not isinstance(value, dict):
            return f"{key} must be an object or null"
    for key in ("stream", "is_async"):
        value = record.get(key)
        if value is not None and not isinstance(value, bool):
            return f"{key} must be a boolean"
    return None


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults a sender may leave out, and scrub credentials once more on the server side."""
    record.setdefault("schema", rec.SCHEMA)
    record.setdefault("status", "ok")
    record.setdefault("call_type", "unknown")
    record.setdefault("stream", False)
    record.setdefault("tags", [])
    record.setdefault("metadata", {})
    usage = record.get("usage") or {}
    usage.setdefault("input_tokens", 0)
    usage.setdefault("output_tokens", 0)
    if "total_tokens" not in usage:
        # A count the sender did not know (null, as `check_record` allows) leaves the total unknown too.
        tokens_in, tokens_out = usage["input_tokens"], usage["output_tokens"]
        usage["total_tokens"] = None if tokens_in is None or tokens_out is None else tokens_in + tokens_out
    record["usage"] = usage
    if record["end_time"] < record["start_time"]:
        # A clock that stepped back during the call (NTP): it took no time we can know of.
        record["end_time"] = record["start_time"]
    duration = record.get("duration_ms")
    if duration is None or duration < 0:
        record["duration_ms"] = (record["end_time"] - record["start_time"]) * 1000.0
    if not rec.is_hex_id(record.get("trace_id"), 32):
        record["trace_id"] = rec.trace_id_of(record.get("trace_id") or record["call_id"])
    span_id = record.get("span_id")
    if not rec.is_hex_id(span_id, 16):
        # Hex ids are case-insensitive and stored lower-case (as OTLP's are), so both layers' ids match.
        lowered = span_id.lower() if isinstance(span_id, str) else None
        record["span_id"] = lowered if rec.is_hex_id(lowered, 16) else rec.span_id_of(record["call_id"])
    parent = record.get("parent_span_id")
    if parent and not rec.is_hex_id(parent, 16) and rec.is_hex_id(parent.lower(), 16):
        record["parent_span_id"] = parent.lower()
    return _scrub(record)


def drop_negative_measures(record: dict[str, Any]) -> str | None:
    """Clear a negative `ttft_ms` or `output_tokens_per_s` of a checked record; why, when one was.

    No measurement (a stepped clock, a sender's -1 for "unknown"): a negative TTFT pulled the percentiles
    below zero. The rest of the record is good, so only the field goes, and the sender is told so.
    """
    dropped = [key for key in _MEASURED if (record.get(key) or 0) < 0]
    for key in dropped:
        record[key] = None
    return f"{' and '.join(dropped)} cannot be negative: stored as null" if dropped else None


# The names the store indexes and groups by, at most as long as the query API's filters take (256
# characters, as a call id): on PostgreSQL an index row holds about 2.7 kB, and a longer name failed the
# whole batch. Tags are cut to the record's own limit, the one the core cuts to (`MAX_TAG_CHARS`); this
# is the one place the collector cuts them: the store keeps what it is given. (`check_record` made these
# strings or null.)
MAX_NAME = 256
MAX_TAG = rec.MAX_TAG_CHARS
_NAMES = ("session_id", "end_user", "user_id", "request_model", "response_model", "provider")
_NESTED_NAMES = (("error", "type"), ("proxy", "key_alias"))


def cut_long_names(record: dict[str, Any]) -> str | None:
    """Cut a checked record's names (session, users, models, provider, error class, key alias, tags)
    longer than the store can index; which, when one was. The call is kept: a name that long is a
    sender's slip. Runs for every record, so the common case is a few length checks."""
    get = record.get
    cut: list[str] = []
    for key in _NAMES:
        if len(get(key) or "") > MAX_NAME:
            record[key] = record[key][:MAX_NAME]
            cut.append(key)
    for key, inner in _NESTED_NAMES:
        holder = get(key)
        if holder:
            value = holder.get(inner)
            if value.__class__ is str and len(value) > MAX_NAME:
                holder[inner] = value[:MAX_NAME]
                cut.append(f"{key}.{inner}")
    said = [f"{', '.join(cut)} longer than {MAX_NAME} characters"] if cut else []
    tags = get("tags")
    if tags and max(map(len, tags)) > MAX_TAG:
        record["tags"] = [tag[:MAX_TAG] for tag in tags]
        said.append(f"a tag longer than {MAX_TAG} characters")
    return f"{' and '.join(said)}: cut to that length" if said else None


def repair(record: dict[str, Any]) -> str | None:
    """Make a checked record storable where only a field is wrong; what the sender is told, if anything."""
    said = [reason for reason in (drop_negative_measures(record), cut_long_names(record)) if reason]
    return "; ".join(said) or None


# A collector sees the same few api_base URLs over and over (`credentials.is_secret_key` keeps its own cache).
_scrub_url = functools.lru_cache(maxsize=1024)(credentials.scrub_url)


def _scrub(record: dict[str, Any]) -> dict[str, Any]:
    """`record.scrub(record)`, with cached URL and key checks, and flat metadata that holds nothing to
    redact left as it is instead of copied."""
    if record.get("api_base"):
        record["api_base"] = _scrub_url(record["api_base"])
    metadata = record.get("metadata")
    if metadata and not _nothing_to_scrub(metadata):
        record["metadata"] = credentials.scrub_value(metadata)
    error = record.get("error")
    if error and error.get("message"):
        # A message is text from the core, but a peer may send the provider's error object: scrubbed as a
        # value (text is scrubbed as before), not refused with a 500 that lost the whole batch.
        error["message"] = credentials.scrub_value(error["message"])
    request = record.get("request")
    # Parameters mapped from a peer's span (OpenInference's `llm.invocation_parameters` is the call's
    # keyword arguments) can hold `extra_headers` with an Authorization header or a provider credential.
    if isinstance(request, dict):
        parameters = request.get("parameters")
        if parameters and isinstance(parameters, dict) and not _nothing_to_scrub(parameters):
            request["parameters"] = credentials.scrub_value(parameters)
    return record


def _nothing_to_scrub(values: dict[str, Any]) -> bool:
    """True when `credentials.scrub_value` would return an equal copy: no credential-named key, and no
    credential-shaped text in its strings or its flat lists of them (anything nested is left to it).

    One search over all the texts, a line apart: no credential shape spans a line break, and a search
    per value was a quarter of a span's ingest.
    """
    texts: list[str] = []
    for key, value in values.items():
        if credentials.is_secret_key(key):
            return False
        kind = value.__class__
        if kind is str:
            texts.append(value)
        elif kind is list or kind is tuple:
            for item in value:
                if item.__class__ is str:
                    texts.append(item)
                elif isinstance(item, (dict, list, tuple)):
                    return False
        elif isinstance(value, (dict, list, tuple)):
            return False
    return not credentials.has_secret("\n".join(texts))


def larger_than(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes as stored (UTF-8), as the limits are documented.

    A character takes up to 4 bytes: text that is short enough even so, or ASCII (`isascii` reads a flag
    of the string, it does not scan it), is answered without encoding it; only long non-ASCII text is.
    """
    length = len(text)
    if length > limit:
        return True
    if length * 4 <= limit or text.isascii():
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _without_nul(record: dict[str, Any], latest: float) -> tuple[dict[str, Any], str, str | None]:
    """(the record without NUL characters, its JSON text, why it cannot be stored or None).

    PostgreSQL's text columns cannot hold NUL: a model name, tag or session id with one failed the whole
    batch there, answered 503 (storage unavailable), so the sender retried the same batch forever. Both
    stores keep the same text: the NUL goes, as it goes from the stored content already.
    """
    record = without_nul(record)
    return record, fastjson.dumps(record), check_record(record, latest)


def parse_events(body: bytes, max_records: int, max_record_bytes: int) -> Batch:
    """A `litelens.batch/1` body (or a bare JSON list of records) -> records to store and rejections."""
    try:
        data = fastjson.loads(body)
    except (ValueError, RecursionError) as exc:
        raise IngestError(400, f"body is not valid JSON ({str(exc)[:120]})") from None
    if isinstance(data, dict):
        records = data.get("records")
        if not isinstance(records, list):
            raise IngestError(400, 'body must be {"records": [...]} or a JSON list of records')
    elif isinstance(data, list):
        records = data
    else:
        raise IngestError(400, 'body must be {"records": [...]} or a JSON list of records')
    if len(records) > max_records:
        raise IngestError(413, f"{len(records)} records in one batch; the limit is {max_records}")
    batch = Batch()
    latest = latest_time()
    for index, record in enumerate(records):
        reason = check_record(record, latest)
        if reason is not None:
            batch.rejected.append({"index": index, "reason": reason})
            continue
        dropped = repair(record)
        record = normalize(record)
        # Encoded once: the size check and the store (which would otherwise encode it again) share it.
        text = fastjson.dumps(record)
        if "\\u0000" in text:
            record, text, reason = _without_nul(record, latest)
            if reason is not None:
                batch.rejected.append({"index": index, "reason": reason})
                continue
        if larger_than(text, max_record_bytes):
            batch.rejected.append({"index": index, "reason": f"record larger than {max_record_bytes} bytes"})
            continue
        if dropped is not None:
            batch.dropped.append({"index": index, "reason": dropped})
        batch.records.append(record)
        batch.texts.append(text)
    return batch


# --------------------------------------------------------------------------------------------------
# OTLP spans


def _drop_bad_fields(record: dict[str, Any]) -> bool:
    """Clear the optional numbers of a mapped record that `check_record` refuses; True if any was."""
    dropped = False
    for key in _NUMBERS[2:]:
        value = record.get(key)
        if value is not None and not _finite(value):
            record[key], dropped = None, True
    usage = record.get("usage")
    if not isinstance(usage, dict):
        return dropped
    for key in _TOKENS:
        value = usage.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 2**53
        ):
            usage[key], dropped = (0 if key in ("input_tokens", "output_tokens") else None), True
    if dropped and usage.get("total_tokens") is None:
        usage["total_tokens"] = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
    return dropped


def span_row(span: NeutralSpan, call_id: str | None) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": without_nul(_short_name(span.name)),
        "kind": without_nul(span.kind),
        # As semconv.span_to_record takes them: an end before the start is a clock that stepped back.
        "start_time": (span.start_ns or span.end_ns) / 1e9,
        "end_time": max(span.end_ns, span.start_ns) / 1e9 if span.end_ns else None,
        "status": span.status_code,
        # A call's span is bounded by its record's limit (its attributes are the record's content);
        # any other span's by these caps, as the core caps a call's content.
        "attributes": _scrub_attributes(
            _bounded(_jsonable(span.attributes), "attributes")
            if call_id is None
            else _jsonable(span.attributes)
        ),
        "resource": _scrub_attributes(_bounded(_jsonable(span.resource), "resource")),
        "call_id": call_id,
        # Why a tool or HTTP span failed: its status message and events (an exception's type, message
        # and stack), capped, since every span of a trace is kept. A call's span has its error in the
        # call record, and its events often hold the call's content, which the record holds already.
        "status_message": without_nul(credentials.scrub_text(span.status_message[:MAX_STATUS_MESSAGE]))
        if span.status_message
        else None,
        "events": _events(span.events) if span.events and call_id is None else None,
    }


MAX_STATUS_MESSAGE = 4096
MAX_SPAN_EVENTS = 32
MAX_SPAN_EVENTS_BYTES = 16 * 1024
MAX_SPAN_NAME = 1024
MAX_SPAN_STRING_CHARS = 32_768  # the core's cut of a string in a call's content
MAX_SPAN_ATTRIBUTES_BYTES = 64 * 1024


def _short_name(name: str) -> str:
    """A span name within `MAX_SPAN_NAME` characters, a longer one cut and marked as the core marks a cut."""
    if len(name) <= MAX_SPAN_NAME:
        return name
    return f"{name[:MAX_SPAN_NAME]}…[truncated {len(name) - MAX_SPAN_NAME} chars]"


def _bounded(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Span attributes (or a resource) within `MAX_SPAN_ATTRIBUTES_BYTES` as JSON: strings past
    `MAX_SPAN_STRING_CHARS` cut and marked, then, if that was not enough, the entries that do not fit
    left out. What was cut is named under `litelens.truncated`, as a call's span names its cuts.

    Every span of a trace is kept, and one tool span with a megabyte of output took a megabyte of
    storage. Nearly every span is far within the limit: one encoding tells, and only a larger one is cut.
    """
    if not values or not larger_than(fastjson.dumps(values), MAX_SPAN_ATTRIBUTES_BYTES):
        return values
    cuts: list[str] = []
    values = rec.cap_strings(values, MAX_SPAN_STRING_CHARS, where, cuts)
    budget = MAX_SPAN_ATTRIBUTES_BYTES - 4096  # room for the list of cuts
    if larger_than(fastjson.dumps(values), budget):
        kept: dict[str, Any] = {}
        size = 2
        for key, value in values.items():
            entry = len(fastjson.dumps({key: value}).encode("utf-8", "surrogatepass"))
            if size + entry <= budget:
                kept[key] = value
                size += entry
        cuts.insert(0, f"{where}: {len(values) - len(kept)} of {len(values)} entries left out")
        values = kept
    named = [cut[:100] for cut in cuts[:20]]
    values[semconv.LITELENS_TRUNCATED] = [*named, f"and {len(cuts) - 20} more"] if len(cuts) > 20 else named
    return values


def _events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A span's first events that fit `MAX_SPAN_EVENTS` and `MAX_SPAN_EVENTS_BYTES`, without credentials."""
    out: list[dict[str, Any]] = []
    size = 0
    for event in events[:MAX_SPAN_EVENTS]:
        item = {
            "name": event.get("name") or "",
            "time": (event.get("time_ns") or 0) / 1e9,
            "attributes": _scrub_attributes(_jsonable(event.get("attributes") or {})),
        }
        text = fastjson.dumps(item)
        size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_SPAN_EVENTS_BYTES:
            break
        out.append(item)
    return out


def _scrub_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Span or resource attributes without credentials, as the trace view shows them.

    Any span is kept, not only LLM calls, and HTTP client spans carry exactly what must not be stored:
    captured request headers (`http.request.header.authorization`) and URLs with a key in the query
    (Gemini's `?key=`). Values are scrubbed as metadata is; attributes with nothing to scrub are
    returned as they are.
    """
    return attributes if _nothing_to_scrub(attributes) else credentials.scrub_value(attributes)


# Leaves that are JSON as they are: most values, and no call into `_jsonable` for them (it was a third of
# a span's mapping time when every string of the content went through it).
_PLAIN = frozenset((str, int, bool, type(None)))


def _jsonable(value: Any) -> Any:
    if value.__class__ is dict:  # the usual containers first, by exact class
        out = {}
        for k, v in value.items():
            out[k if k.__class__ is str else str(k)] = v if v.__class__ in _PLAIN else _jsonable(v)
        return out
    if value.__class__ is list:
        return [v if v.__class__ in _PLAIN else _jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): v if v.__class__ in _PLAIN else _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if v.__class__ in _PLAIN else _jsonable(v) for v in value]
    return value


_NO_RECORD = "kept in its trace without a call record"


def from_spans(spans: Iterable[NeutralSpan], max_record_bytes: int | None = None) -> Batch:
    """LLM spans become call records (and stay in the trace as spans); all others stay plain spans.

    A call record larger than `max_record_bytes` is refused as `/v1/events` refuses it, and its span with
    it (the span's attributes are the record's content).
    """
    batch = Batch()
    latest = latest_time()
    for span in spans:
        start_ns = span.start_ns or span.end_ns  # as semconv.span_to_record takes it
        problem = _time_problem(start_ns / 1e9, span.end_ns / 1e9 if span.end_ns else None, latest)
        if problem is not None:
            batch.rejected.append({"span_id": span.span_id, "reason": problem})
            continue
        try:
            record = semconv.span_to_record(span)
        except Exception as exc:  # one odd span must not cost the request
            batch.warnings.append(
                f"span {span.span_id}: {_NO_RECORD} (could not map it: {type(exc).__name__})"
            )
            record = None
        if record is not None:
            record = _jsonable(record)
            reason = check_record(record, latest)
            if reason is not None and _drop_bad_fields(record):
                # One implausible attribute (a -1 for "unknown", a cost past any bound) must not cost
                # the call its record: the field goes, the call stays, the sender gets a warning.
                batch.warnings.append(f"span {span.span_id}: dropped what failed the check ({reason})")
                reason = check_record(record, latest)
            if reason is None:
                dropped = repair(record)
                record = normalize(record)
                # Encoded once, as for /v1/events: the size check and the store share the text.
                text = fastjson.dumps(record)
                if "\\u0000" in text:
                    record, text, reason = _without_nul(record, latest)
            if reason is None:
                if max_record_bytes is not None and larger_than(text, max_record_bytes):
                    batch.rejected.append(
                        {
                            "span_id": span.span_id,
                            "reason": f"call record larger than {max_record_bytes} bytes",
                        }
                    )
                    continue
                if dropped is not None:
                    batch.warnings.append(f"span {span.span_id}: {dropped}")
                batch.records.append(record)
                batch.texts.append(text)
                batch.spans.append(span_row(span, record["call_id"]))
                continue
            # The span is still stored below, so it is not a rejected span: the sender gets a warning.
            batch.warnings.append(f"span {span.span_id}: {_NO_RECORD} ({reason})")
        batch.spans.append(span_row(span, None))
    return batch
