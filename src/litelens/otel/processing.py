"""Processors for every span, whichever instrumentation made it: redact, sample, enrich before export.

`LiteLLMInstrumentor(processors=[...])` vets what litelens itself puts on its LLM spans. Spans made by
other instrumentations in the same process -- an HTTP client's, a peer's LLM spans, your own
`tracer.start_as_current_span` -- never pass through it. An OpenTelemetry SDK span cannot be changed
once it has ended, and span processors see it only then, so the place to change it is between the
batch processor and the exporter: `RedactingSpanExporter` wraps any exporter and hands it processed
copies.

    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(OTLPSpanExporter())))

The processors are litelens' own (`litelens.pipeline`), run on a *span record*, a dict built per span:

    {"name", "trace_id", "span_id", "parent_span_id", "kind", "scope",
     "status" ("ok" | "error" | "cancelled"), "status_message", "duration_ms", "attributes",
     "events": [{"name", "attributes", "timestamp"}], "links": [{"attributes"}], "metadata"}

"status" is the call record's: `litelens.status` where a span declares it (a stream the caller stopped
reading is "cancelled", with span status OK, as the core layer records it), else "error" for a span
with status ERROR, else "ok" -- so `sample(rate, keep_errors=True)` keeps here what it keeps there.

so `sample(rate)` keeps or drops whole traces by the same hash of the trace id as for call records (a
call seen by both layers is kept or dropped in both), `keep_if`/`drop_if` and your own functions see
plain data, `enrich` adds attributes (what it puts in `metadata` becomes attributes; a record field
such as `environment` or `tags` becomes the attribute the core layer's spans carry it in), and
`drop_content` removes the attributes and event texts that hold prompts and answers.
`redact_spans()` is `redact()` pointed at the span's free text: its name, its string attributes, its
events' and links' attributes and its status message. Attributes that identify something (a key ending in `id`,
such as `gen_ai.response.id` or `litellm.call_id`) are kept out of the span record's `attributes`
and put back unchanged, like numbers, which are never redacted.

Only the name, attributes, events, links' attributes (in the order of the span's links, whose contexts
stay) and status message of a processed span record go back on the span; a span nothing changed is exported as the very same object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status, StatusCode

from litelens import semconv
from litelens.pipeline import KINDS, Pipeline, Processor, redact
from litelens.record import STATUSES, Record

__all__ = ["SPAN_FIELDS", "RedactingSpanExporter", "redact_spans", "span_record"]

SPAN_FIELDS = ("name", "attributes", "events", "links", "status_message")
"""The span record's fields that hold free text: what `redact_spans` walks."""


def redact_spans(
    kinds: str | Iterable[str] = KINDS,
    patterns: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    placeholder: str = "[{kind}]",
) -> Processor:
    """`litelens.pipeline.redact` for span records: the same kinds, patterns and placeholders, walking
    the span's name, attributes, events, links and status message. Values under secret-named attribute keys
    (`http.request.header.authorization`...) are replaced whole; JSON text in an attribute (such as
    `gen_ai.input.messages`) is parsed, redacted and encoded again."""
    processor = redact(kinds=kinds, fields=SPAN_FIELDS, patterns=patterns, placeholder=placeholder)
    processor.__name__ = processor.__qualname__ = "redact_spans"
    return processor


def _is_id_key(key: str) -> bool:
    """`gen_ai.response.id`, `litellm.call_id`, `session.id`: identities, which redaction must not touch
    (a long hexadecimal id can hold a run of digits that passes a card's checksum)."""
    last = key.rsplit(".", 1)[-1].lower()
    # `aws.access_key_id` ends like an id but names a key: its value is scanned (an `AKIA...` is a secret).
    return (last == "id" or last.endswith("_id")) and "key" not in last


def _without_ids(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if not _is_id_key(k)}


def span_record(span: ReadableSpan) -> Record:
    """The span as the dict the processors see (see the module docstring). Id-like attributes are left
    out of `attributes`; `RedactingSpanExporter` puts them back."""
    context, parent = span.context, span.parent
    start, end = span.start_time, span.end_time
    attributes = span.attributes or {}
    declared = attributes.get(semconv.LITELENS_STATUS)  # as `semconv.span_to_record` reads it
    if declared in STATUSES:
        status = declared
    else:
        status = "error" if span.status.status_code is StatusCode.ERROR else "ok"
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}" if context is not None else None,
        "span_id": f"{context.span_id:016x}" if context is not None else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": span.kind.name,
        "scope": span.instrumentation_scope.name if span.instrumentation_scope is not None else None,
        "status": status,
        "status_message": span.status.description,
        "duration_ms": (end - start) / 1e6 if start is not None and end is not None else None,
        "attributes": _without_ids(attributes),
        "events": [
            {"name": event.name, "attributes": dict(event.attributes or {}), "timestamp": event.timestamp}
            for event in span.events
        ],
        "links": [{"attributes": _without_ids(link.attributes or {})} for link in span.links],
        "metadata": {},
    }


class RedactingSpanExporter(SpanExporter):
    """Wraps a span exporter: each span goes through `processors` first, and the exporter gets the
    processed copies (or nothing, for a span a processor dropped).

        exporter = RedactingSpanExporter(OTLPSpanExporter(), processors=[sample(0.2), redact_spans()])
        provider.add_span_processor(BatchSpanProcessor(exporter))

    `processors` defaults to `[redact_spans()]`: every kind, in every span. As for call records, a
    processor that raises drops that span (it may have been the redactor), is logged once and then
    counted: `stats()`. Put it under the `BatchSpanProcessor`, so the work runs on the batch's thread.
    """

    def __init__(self, exporter: SpanExporter, processors: Iterable[Processor] | None = None) -> None:
        self.exporter = exporter
        self.pipeline = Pipeline([redact_spans()] if processors is None else processors)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        kept: list[ReadableSpan] = []
        for span in spans:
            processed = self.pipeline(span_record(span))
            if processed is not None:
                kept.append(_apply(span, processed))
        if not kept:
            return SpanExportResult.SUCCESS
        return self.exporter.export(kept)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def stats(self) -> dict[str, dict[str, int]]:
        """Per processor, the spans it dropped and the errors it raised (`Pipeline.stats()`)."""
        return self.pipeline.stats()


# The call record's own descriptive fields, which `enrich` sets on a span record too, as the attributes
# the core layer's spans carry them in (`litelens.semconv.record_to_attributes`).
_FIELD_ATTRIBUTES = {
    "service": (semconv.SERVICE_NAME,),
    "environment": (semconv.DEPLOYMENT_ENVIRONMENT_NAME,),
    "session_id": (semconv.GEN_AI_CONVERSATION_ID, semconv.LITELLM_SESSION_ID),
    "end_user": (semconv.LITELLM_END_USER,),
    "user_id": (semconv.LITELENS_USER_ID,),
    "tags": (semconv.LITELLM_TAGS,),
    "model_group": (semconv.LITELLM_MODEL_GROUP,),
    "deployment_id": (semconv.LITELLM_DEPLOYMENT_ID,),
}


def _apply(span: ReadableSpan, processed: Record) -> ReadableSpan:
    """`span` with the processed name, attributes, events and status message; `span` itself if they are
    what it already has."""
    original = span.attributes or {}
    attributes = {k: v for k, v in original.items() if _is_id_key(k)}
    attributes.update(processed.get("attributes") or {})
    attributes.update(processed.get("metadata") or {})
    for field, names in _FIELD_ATTRIBUTES.items():
        # Set by a processor (`enrich({"environment": "prod"})`): span records come without these fields.
        value = processed.get(field)
        if value is not None:
            if isinstance(value, (list, tuple)):
                value = [str(v) for v in value]
            attributes.update(dict.fromkeys(names, value))
    events = processed.get("events") or []
    name = processed.get("name") or span.name
    message = processed.get("status_message")
    same_events = len(events) == len(span.events) and all(
        new.get("name") == old.name
        and new.get("attributes") == dict(old.attributes or {})
        and new.get("timestamp") == old.timestamp
        for new, old in zip(events, span.events, strict=True)
    )
    links = _links(span, processed.get("links"))
    if (
        attributes == dict(original)
        and same_events
        and links is span.links
        and name == span.name
        and message == span.status.description
    ):
        return span
    bounded = BoundedAttributes(maxlen=None, attributes=attributes, immutable=True)
    bounded.dropped = span.dropped_attributes
    status = span.status
    if message != status.description and status.status_code is StatusCode.ERROR:
        status = Status(StatusCode.ERROR, message)  # a description is kept only with ERROR
    if same_events:
        new_events: Sequence[Event] = span.events
    else:
        new_events = [
            Event(str(event.get("name") or ""), _attributes(event.get("attributes")), event.get("timestamp"))
            for event in events
        ]
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=bounded,
        events=new_events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _links(span: ReadableSpan, processed: Any) -> Sequence[Link]:
    """The span's links with the processed attributes, id-like ones put back; `span.links` itself if
    the attributes are what they were, or if the span record's links are gone (a processor of its own
    that rebuilt the record without them)."""
    if processed is None or all(
        new.get("attributes") == _without_ids(old.attributes or {})
        for new, old in zip(processed, span.links, strict=False)
    ):
        return span.links
    links = []
    for new, old in zip(processed, span.links, strict=False):
        original = old.attributes or {}
        attributes = {k: v for k, v in original.items() if _is_id_key(k)}
        attributes.update(new.get("attributes") or {})
        links.append(Link(old.context, _attributes(attributes)))
    return links


def _attributes(value: Any) -> BoundedAttributes:
    return BoundedAttributes(maxlen=None, attributes=dict(value or {}), immutable=True)
