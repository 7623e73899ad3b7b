"""A call record or a span as the row the write path stores: the filterable columns, then the JSON.

Shared by both SQL backends (`write.BatchWriter`, and PostgreSQL's COPY, which names `CALL_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from litelens.server import fastjson
from litelens.server.store.base import Span

# The columns of a `calls` row as `call_row` builds it: the filterable ones, then the record as JSON.
CALL_COLUMNS = (
    "project_id",
    "call_id",
    "start_time",
    "end_time",
    "duration_ms",
    "ttft_ms",
    "call_type",
    "stream",
    "request_model",
    "response_model",
    "provider",
    "status",
    "error_type",
    "end_user",
    "user_id",
    "session_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "key_alias",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "cached_input_tokens",
    "reasoning_tokens",
    "record",
)
# The columns the write path stores: a `call_row`, then the arrival the writing transaction gives every
# call it stores or changes (`BatchWriter._next_arrival`), known only under the write lock.
STORED_CALL_COLUMNS = (*CALL_COLUMNS, "arrival")
# Positions in a `call_row` tuple that the session upserts read.
ROW_START, ROW_END, ROW_STATUS, ROW_SESSION, ROW_TOTAL, ROW_COST = 2, 3, 11, 15, 22, 23
ROW_END_USER, ROW_USER_ID = 13, 14

SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_time",
    "end_time",
    "status",
    "attributes",
    "resource",
    "call_id",
    "status_message",
    "events",
)


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if value.__class__ is str else str(value)


def opt_num(value: Any) -> float | None:
    cls = value.__class__
    if cls is float:
        return value
    if cls is bool or not isinstance(value, (int, float)):
        return None
    return float(value)


def _opt_int(value: Any) -> int | None:
    if value.__class__ is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def without_nul(value: Any) -> Any:
    """`value` with every NUL character taken out of its strings and keys: PostgreSQL cannot store one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", ""): without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nul(v) for v in value]
    return value


def call_row(project_id: int, record: Mapping[str, Any], text: str | None = None) -> tuple[Any, ...]:
    """The `calls` row of a record (`CALL_COLUMNS`): the filterable columns, then the record as JSON text.

    `text`, when given, is that JSON already (the caller serialized the record and vouches for it).
    """
    get = record.get
    usage = get("usage") or {}
    error = get("error") or {}
    proxy = get("proxy") or {}
    start = opt_num(get("start_time")) or 0.0
    end = opt_num(get("end_time"))
    duration = opt_num(get("duration_ms"))
    if duration is None:
        duration = max(0.0, ((end if end is not None else start) - start) * 1000.0)
    tokens_in = _opt_int(usage.get("input_tokens")) or 0
    tokens_out = _opt_int(usage.get("output_tokens")) or 0
    if text is None:
        text = fastjson.dumps(dict(record))
    if "\\u0000" in text:
        # PostgreSQL's JSONB (and text) cannot hold NUL; a stray one in content must not fail the batch.
        text = fastjson.dumps(without_nul(record))
    return (
        project_id,
        str(record["call_id"]),
        start,
        end if end is not None else start,
        duration,
        opt_num(get("ttft_ms")),
        _opt_str(get("call_type")) or "unknown",
        bool(get("stream")),
        _opt_str(get("request_model")),
        _opt_str(get("response_model")),
        _opt_str(get("provider")),
        _opt_str(get("status")) or "ok",
        _opt_str(error.get("type")) if isinstance(error, Mapping) else None,
        _opt_str(get("end_user")),
        _opt_str(get("user_id")),
        _opt_str(get("session_id")),
        _opt_str(get("trace_id")),
        _opt_str(get("span_id")),
        _opt_str(get("parent_span_id")),
        _opt_str(proxy.get("key_alias")) if isinstance(proxy, Mapping) else None,
        tokens_in,
        tokens_out,
        _opt_int(usage.get("total_tokens")) or (tokens_in + tokens_out),
        opt_num(get("cost_usd")),
        _opt_int(usage.get("cached_input_tokens")),
        _opt_int(usage.get("reasoning_tokens")),
        text,
    )


def span_rows(project_id: int, spans: Iterable[Span]) -> list[tuple[Any, ...]]:
    """The `spans` rows of a batch's spans (project, then `SPAN_COLUMNS`)."""
    rows = []
    for span in spans:
        trace_id, span_id = span.get("trace_id"), span.get("span_id")
        if not trace_id or not span_id:
            raise ValueError("litelens: a span without trace_id and span_id cannot be stored")
        start = opt_num(span.get("start_time")) or 0.0
        end = opt_num(span.get("end_time"))
        attributes = span.get("attributes")
        resource = span.get("resource")
        events = span.get("events")
        rows.append(
            (
                project_id,
                str(trace_id),
                str(span_id),
                _opt_str(span.get("parent_span_id")),
                _opt_str(span.get("name")),
                _opt_str(span.get("kind")),
                start,
                end if end is not None else start,
                _opt_str(span.get("status")),
                fastjson.dumps(dict(attributes)) if attributes else None,
                fastjson.dumps(dict(resource)) if resource else None,
                _opt_str(span.get("call_id")),
                _opt_str(span.get("status_message")),
                fastjson.dumps(list(events)) if events else None,
            )
        )
    return rows
