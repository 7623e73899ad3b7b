"""Span exporters: to a litelens server over OTLP/HTTP, and to JSON-lines files.

Use them behind a `BatchSpanProcessor`, which exports on a thread of its own, away from the LLM caller.

- `LiteLensSpanExporter` encodes spans with OpenTelemetry's own OTLP protobuf encoder and gives the
  bytes to the core layer's transport, so spans get the same delivery as call records: batching, gzip,
  retries with backoff honouring `Retry-After`, and a disk spool while the server is away (a spool of
  its own, since its batches go to `/v1/traces`, not `/v1/events`).
- `JsonlSpanExporter` writes one span per line (the SDK's JSON form of a span) through the same
  rotating writer as `litelens.sinks.JsonlSink`, on the span processor's thread.

For any other backend, use the stock `OTLPSpanExporter` (docs/otel.md shows how).
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link

from litelens.config import Settings
from litelens.jsonl import JsonlWriter, PartlyWritten
from litelens.sinks import transport_config
from litelens.transport import Answer, BatchFormat, Transport

__all__ = ["JsonlSpanExporter", "LiteLensSpanExporter"]

_UNSET: Any = object()


def _read_partial_success(data: bytes) -> Answer:
    """An OTLP/HTTP protobuf answer's partial success: the spans rejected, with the server's message; a
    message with none rejected is the specification's warning (logged, not counted: it names no span)."""
    partial = ExportTraceServiceResponse.FromString(data).partial_success
    rejected, message = partial.rejected_spans, partial.error_message
    return Answer(rejected, message if rejected else "", 0, "" if rejected else message)


OTLP_PROTOBUF = BatchFormat(
    "/v1/traces", "application/x-protobuf", b"", b"", b"", read_answer=_read_partial_success
)
"""Serialized `ExportTraceServiceRequest`s. Concatenated protobuf messages parse as one message whose
repeated fields hold all of them, so the plain concatenation of exports is a valid export."""


def _as_is(item: Any) -> Any:
    return item  # already encoded: bytes are sent as they are


class LiteLensSpanExporter(SpanExporter):
    """OTLP/HTTP (protobuf) to a litelens server, `Authorization: Bearer <api_key>`.

        provider.add_span_processor(BatchSpanProcessor(LiteLensSpanExporter(api_key="ll_...")))

    `endpoint` and `api_key` default to `LITELENS_ENDPOINT` and `LITELENS_API_KEY`, as for the core
    callback. `spool_dir` defaults to `LITELENS_SPOOL_DIR` (or the user's cache) with `-traces` added,
    and holds a folder per endpoint and key, as the callback's does; `None` or `"off"` turns the spool
    off (spans that cannot be delivered are then dropped and counted).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        *,
        spool_dir: str | None = _UNSET,
        settings: Settings | None = None,
        **settings_overrides: Any,
    ) -> None:
        base = settings or Settings.from_env(endpoint=endpoint, api_key=api_key, **settings_overrides)
        config = transport_config(base)
        if spool_dir is _UNSET:
            spool_dir = f"{base.spool_dir}-traces" if base.spool_dir else None
        elif isinstance(spool_dir, str) and spool_dir.strip().lower() in ("", "off", "none"):
            spool_dir = None  # as `Callback(spool_dir="off")`, not a folder named "off"
        config.spool_dir = spool_dir
        config.format = OTLP_PROTOBUF
        self.settings = base
        self.transport = Transport(config, prepare=_as_is)
        self._shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut:
            return SpanExportResult.FAILURE
        try:
            # One export request per span: the transport then counts, batches and splits spans, and the
            # concatenation of serialized requests is itself a valid request.
            for span in spans:
                self.transport.submit(encode_spans([span]).SerializeToString())
        except Exception:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every span exported so far is delivered or spooled.

        `export` only queues (the transport delivers), so a `BatchSpanProcessor`'s `force_flush` -- which
        does not call its exporter's -- returns once the spans are queued; call this one to wait for them.
        """
        return self.transport.flush(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        self._shut = True
        self.transport.shutdown(self.settings.exit_flush_s)

    def stats(self) -> dict[str, int]:
        """The transport's counters, in spans: `sent`, `spooled`, `dropped`, `failed`, `retries`, ..."""
        return self.transport.stats()


class JsonlSpanExporter(SpanExporter):
    """One JSON span per line in `path` (the SDK's JSON form of a span), rotated by size and age,
    gzipped, and old rotations deleted past `keep_files` / `keep_age_s`, by the same writer as
    `litelens.sinks.JsonlSink`.

        provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter("/var/log/app/spans.jsonl")))

    Lines are written in `export`, which a `BatchSpanProcessor` already runs on its own thread: when
    the processor's `force_flush()` returns, the spans are in the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = 64 * 2**20,
        max_age_s: float | None = None,
        gzip: bool = True,
        keep_files: int | None = None,
        keep_age_s: float | None = None,
    ) -> None:
        # No thread of its own to look at ages while idle: old rotations go when the next one is made.
        self.writer = JsonlWriter(
            path,
            max_bytes=max_bytes,
            max_age_s=max_age_s,
            gzip=gzip,
            keep_files=keep_files,
            keep_age_s=keep_age_s,
        )
        self.path: Path = self.writer.path
        self._lock = threading.Lock()
        self._shut = False
        self.written = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut:
            return SpanExportResult.FAILURE
        lines = []
        for span in spans:
            try:
                lines.append(_json_line(span))
            except Exception:
                self.failed += 1  # this span only: the rest of the batch is written
        try:
            with self._lock:
                self.writer.write(lines)
                self.written += len(lines)
        except PartlyWritten as exc:
            # The spans before the failure are in a file: they count as written, only the rest failed.
            self.written += exc.written
            self.failed += len(lines) - exc.written
            return SpanExportResult.FAILURE
        except Exception:
            self.failed += len(lines)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if len(lines) == len(spans) else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is written before it returns

    def shutdown(self) -> None:
        self._shut = True
        with self._lock:
            self.writer.close()

    def stats(self) -> dict[str, int]:
        return {
            "written": self.written,
            "failed": self.failed,
            "rotations": self.writer.rotations,
            "compress_failed": self.writer.compress_failures,
            "deleted": self.writer.deleted,
            "delete_failed": self.writer.delete_failures,
        }


def _json_line(span: ReadableSpan) -> bytes:
    """The span's line: the SDK's JSON form, which cannot write the bytes values the SDK takes as
    attributes (a Kafka message key): those are written in base64, as OTLP/JSON writes bytes."""
    try:
        text = span.to_json(indent=None)
    except TypeError:
        text = _bytes_as_base64(span).to_json(indent=None)
    return text.encode("utf-8", "replace")


def _bytes_as_base64(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` whose attributes, event and link attributes hold base64 text for bytes."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_text_attributes(span.attributes),
        events=[Event(e.name, _text_attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _text_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _text_attributes(attributes: Any) -> BoundedAttributes:
    return BoundedAttributes(
        maxlen=None, attributes={k: _text(v) for k, v in (attributes or {}).items()}, immutable=True
    )


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return value
