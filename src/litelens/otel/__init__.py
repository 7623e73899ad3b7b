"""OpenTelemetry instrumentation for LiteLLM (the `otel` extra).

    from litelens.otel import LiteLLMInstrumentor
    LiteLLMInstrumentor().instrument()

Every `litellm.completion`/`acompletion`, `embedding`/`aembedding`, `text_completion`/`atext_completion`,
`image_generation`/`aimage_generation` and `responses`/`aresponses` call gets a CLIENT span named
`"{operation} {model}"` with GenAI-convention attributes (the mapping is `litelens.semconv`'s, shared with
the collector), plus `gen_ai.client.*` metrics and a `litellm.cost` counter. The span carries
`litellm.call_id`, the id LiteLLM's own callbacks see, so a call recorded by both this layer and the core
callback is stored once.

Instrument before binding names: `from litellm import completion` executed *before* `instrument()`
keeps the original function (module attribute patching cannot reach a name bound elsewhere).

Span exporters: `LiteLensSpanExporter` (OTLP/HTTP to a litelens server, through the core transport's
retries and spool) and `JsonlSpanExporter` (rotating JSON-lines files), in `litelens.otel.exporters`.
`RedactingSpanExporter` (in `litelens.otel.processing`) wraps any exporter and runs litelens'
processors -- redaction, sampling, enrichment -- on every span, whichever instrumentation made it.

This package never imports `litelens.server` or `litelens.callback`.
"""

from __future__ import annotations

from litelens.otel.instrumentor import LiteLLMInstrumentor, OtelSettings
from litelens.otel.streams import STREAM_OUTCOME, TracedStream

__all__ = [
    "STREAM_OUTCOME",
    "JsonlSpanExporter",
    "LiteLLMInstrumentor",
    "LiteLensSpanExporter",
    "OtelSettings",
    "RedactingSpanExporter",
    "TracedStream",
    "redact_spans",
]


def __getattr__(name: str) -> object:
    # The exporters load the OTLP protobuf encoder: only when someone asks for them.
    if name in ("LiteLensSpanExporter", "JsonlSpanExporter"):
        from litelens.otel import exporters

        return getattr(exporters, name)
    if name in ("RedactingSpanExporter", "redact_spans"):
        from litelens.otel import processing

        return getattr(processing, name)
    raise AttributeError(f"module 'litelens.otel' has no attribute {name!r}")
