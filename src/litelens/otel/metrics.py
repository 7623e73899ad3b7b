"""The metric instruments of the OTel layer, with the GenAI conventions' names, units and buckets.

Instrument names come from the `opentelemetry-semantic-conventions` package; attribute names from
`litelens.semconv`. The conventions advise explicit bucket boundaries because the SDK's default buckets
(made for milliseconds) put every LLM call, measured in seconds, into the first two buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_TOKEN_TYPE
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

from litelens import semconv
from litelens.record import Record

# The conventions' advice for gen_ai.client.operation.duration (and time to first chunk), in seconds.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
# ... and for gen_ai.client.token.usage, in tokens.
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
# Older packages lack the streaming metrics' names; the strings are the conventions' own.
TIME_TO_FIRST_CHUNK = getattr(
    gen_ai_metrics,
    "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK",
    "gen_ai.client.operation.time_to_first_chunk",
)
TIME_PER_OUTPUT_CHUNK = getattr(
    gen_ai_metrics,
    "GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK",
    "gen_ai.client.operation.time_per_output_chunk",
)
COST = "litellm.cost"

# Record attributes that identify a call's population without exploding cardinality.
_METRIC_ATTRIBUTES = (
    semconv.GEN_AI_OPERATION_NAME,
    semconv.GEN_AI_PROVIDER_NAME,
    semconv.GEN_AI_REQUEST_MODEL,
    semconv.GEN_AI_RESPONSE_MODEL,
    semconv.SERVER_ADDRESS,
    semconv.SERVER_PORT,
    semconv.ERROR_TYPE,
)

_CACHE_LIMIT = 1024
_Attributes = dict[str, Any]
# The attribute sets `Instruments` builds once per population: the call's, the same with each token
# type, and the streaming metrics' (the conventions give those no `error.type`: a stream that failed
# after its first chunk still received that chunk as fast as one that did not).
_AttributeSets = tuple[_Attributes, _Attributes, _Attributes, _Attributes]


class Instruments:
    """The histograms and the cost counter, created once per instrumentation."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_per_output_chunk = meter.create_histogram(
            TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time between two chunks of a streamed response, for each chunk after the first.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(
            COST, unit="USD", description="Cost of LLM calls as LiteLLM prices them."
        )
        self._sets: dict[tuple[Any, ...], _AttributeSets] = {}

    def record(
        self, record: Record, span_attributes: Mapping[str, Any], chunk_gaps: Iterable[float] = ()
    ) -> None:
        """Record one finished call; `span_attributes` are the attributes already computed for its span.

        `chunk_gaps` are a stream's seconds between each output chunk after the first and the one before.
        """
        attributes, input_attributes, output_attributes, stream_attributes = self._attribute_sets(
            span_attributes
        )
        duration_ms = record.get("duration_ms")
        if duration_ms is not None:
            self.duration.record(duration_ms / 1000.0, attributes)
        ttft_ms = record.get("ttft_ms")
        if ttft_ms is not None:
            self.time_to_first_chunk.record(ttft_ms / 1000.0, stream_attributes)
        per_chunk = self.time_per_output_chunk.record
        for gap in chunk_gaps:
            per_chunk(gap, stream_attributes)
        # An answer from LiteLLM's cache used none of the provider's tokens, as it cost nothing (the span
        # and the record keep its usage, with `cache_hit`, for what the answer held).
        usage = (record.get("usage") if record.get("cache_hit") is not True else None) or {}
        value = usage.get("input_tokens")
        if isinstance(value, int):
            self.tokens.record(value, input_attributes)
        value = usage.get("output_tokens")
        # An embedding has no output tokens: the conventions record its input only, not an output of 0.
        if isinstance(value, int) and record.get("call_type") != "embedding":
            self.tokens.record(value, output_attributes)
        cost = record.get("cost_usd")
        if isinstance(cost, float) and cost > 0:
            self.cost.add(cost, attributes)

    def _attribute_sets(self, span_attributes: Mapping[str, Any]) -> _AttributeSets:
        """The call's metric attributes, the same with the input and the output token type, and the
        streaming metrics' (without `error.type`).

        Calls of one population share them, so they are built once per population and reused: the SDK
        copies what it is given, so a shared dict is never changed behind our back. The cache is
        bounded by the metrics' own cardinality; past `_CACHE_LIMIT` populations it starts afresh.
        """
        key = tuple(map(span_attributes.get, _METRIC_ATTRIBUTES))
        sets = self._sets.get(key)
        if sets is None:
            attributes = {k: v for k, v in zip(_METRIC_ATTRIBUTES, key, strict=True) if v is not None}
            sets = (
                attributes,
                {**attributes, GEN_AI_TOKEN_TYPE: "input"},
                {**attributes, GEN_AI_TOKEN_TYPE: "output"},
                {k: v for k, v in attributes.items() if k != semconv.ERROR_TYPE},
            )
            if len(self._sets) >= _CACHE_LIMIT:
                self._sets.clear()
            self._sets[key] = sets
        return sets
