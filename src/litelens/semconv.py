"""Call records <-> OpenTelemetry GenAI span attributes, in both directions.

The OTel layer turns a record into span attributes with `record_to_attributes`; the server turns any
span that describes an LLM call back into a record with `span_to_record`. Both live here so the two
roads agree on every name, and so a call seen by the core callback and by an OTel exporter ends up as one
record (same `call_id`).

Written against the GenAI semantic conventions as the `opentelemetry-semantic-conventions` package
names them (0.66b: `gen_ai.provider.name`, `gen_ai.usage.cache_read.input_tokens`, message JSON in
`gen_ai.input.messages` ...). On the way in it also understands what the peers actually emit: older
GenAI names (`gen_ai.system`, `gen_ai.usage.prompt_tokens`, indexed `gen_ai.prompt.N.*`), LiteLLM's own
"otel" callback (v1 `litellm_request` spans and v2), OpenLIT, OpenInference and OpenLLMetry.

Standard library only: this module is part of the zero-dependency core, so the names are plain string
constants rather than imports from the semantic-conventions package.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from litelens.credentials import scrub_url
from litelens.record import (
    _CALL_TYPES,
    _PROVIDER_OF_ROUTE,
    _PROXY_FIELDS,
    SCHEMA,
    STATUSES,
    Record,
    user_metadata_of,
    without_provider,
)

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

# --------------------------------------------------------------------------------------------------
# Attribute names: current GenAI conventions
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_REQUEST_ENCODING_FORMATS = "gen_ai.request.encoding_formats"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
ERROR_MESSAGE = "error.message"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
OPENAI_API_TYPE = "openai.api.type"
SERVICE_NAME = "service.name"
DEPLOYMENT_ENVIRONMENT_NAME = "deployment.environment.name"

# Older or peer-specific names, read but never written
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_TOTAL_TOKENS = "gen_ai.usage.total_tokens"  # LiteLLM v1/v2
GEN_AI_USAGE_COST = "gen_ai.usage.cost"  # OpenLIT
# OpenLLMetry (opentelemetry-semantic-conventions-ai) and earlier drafts of the conventions
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OLD = "gen_ai.usage.cache_read_input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OLD = "gen_ai.usage.cache_creation_input_tokens"
# The GenAI conventions' repository renamed cache_creation so (not in a release yet); instrumentations
# that follow its main branch already write it.
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_COST_TOTAL_COST = "gen_ai.cost.total_cost"  # LiteLLM v1
GEN_AI_SERVER_TTFT = "gen_ai.server.time_to_first_token"  # OpenLIT, seconds
GEN_AI_REQUEST_USER = "gen_ai.request.user"  # OpenLIT
GEN_AI_PROMPT_PREFIX = "gen_ai.prompt."
GEN_AI_COMPLETION_PREFIX = "gen_ai.completion."
GEN_AI_PROMPT = "gen_ai.prompt"
GEN_AI_COMPLETION = "gen_ai.completion"
DEPLOYMENT_ENVIRONMENT = "deployment.environment"
LLM_REQUEST_TYPE = "llm.request.type"  # OpenLLMetry, LiteLLM v1
LLM_IS_STREAMING = "llm.is_streaming"
LLM_USER = "llm.user"  # LiteLLM v1 and OpenLLMetry: the request's `user`
LLM_USAGE_TOTAL_TOKENS = "llm.usage.total_tokens"
LLM_REQUEST_FUNCTIONS_PREFIX = "llm.request.functions."
LLM_OPENAI_ID = "llm.openai.id"
LITELLM_PROVIDER_MODEL = "litellm.provider.model"  # LiteLLM v1/v2: the model as the caller named it
OI_SPAN_KIND = "openinference.span.kind"  # OpenInference from here on
OI_MODEL_NAME = "llm.model_name"
OI_EMBEDDING_MODEL_NAME = "embedding.model_name"
OI_EMBEDDINGS_PREFIX = "embedding.embeddings."
OI_PROVIDER = "llm.provider"
OI_SYSTEM = "llm.system"
OI_TOKENS_PROMPT = "llm.token_count.prompt"
OI_TOKENS_COMPLETION = "llm.token_count.completion"
OI_TOKENS_TOTAL = "llm.token_count.total"
OI_TOKENS_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OI_TOKENS_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
OI_TOKENS_REASONING = "llm.token_count.completion_details.reasoning"
OI_INVOCATION_PARAMETERS = "llm.invocation_parameters"
OI_EMBEDDING_INVOCATION_PARAMETERS = "embedding.invocation_parameters"
OI_INPUT_MESSAGES_PREFIX = "llm.input_messages."
OI_OUTPUT_MESSAGES_PREFIX = "llm.output_messages."
OI_TOOLS_PREFIX = "llm.tools."
OI_FINISH_REASON = "llm.finish_reason"
OI_COST_TOTAL = "llm.cost.total"
OI_INPUT_VALUE = "input.value"
OI_OUTPUT_VALUE = "output.value"
OI_SESSION_ID = "session.id"
OI_USER_ID = "user.id"
# OpenLLMetry: what `Traceloop.set_association_properties({"session_id": ..., "user_id": ...})` stamps
TRACELOOP_SESSION_ID = "traceloop.association.properties.session_id"
TRACELOOP_USER_ID = "traceloop.association.properties.user_id"
OI_TAGS = "tag.tags"
OI_METADATA = "metadata"

# Where the vocabularies above put content (prompts, answers, tool definitions): what
# `litelens.pipeline.drop_content` removes from a span record.
CONTENT_ATTRIBUTES = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "input.value",
        "output.value",
        "litelens.request.input",
        "litelens.response",
    }
)
CONTENT_ATTRIBUTE_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.tools.",
    "llm.request.functions.",
)
CONTENT_EVENTS = frozenset(
    {
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.content.prompt",
        "gen_ai.content.completion",
    }
)
"""Events whose attributes are a message (`content`, `message`, `tool_calls`...)."""
CONTENT_EVENT_KEPT = frozenset({"gen_ai.system", "gen_ai.provider.name", "index", "finish_reason", "role"})
"""What of a content event is not content."""


def is_content_attribute(key: str) -> bool:
    """True for an attribute that holds a prompt, an answer or tool definitions, in any vocabulary."""
    return key in CONTENT_ATTRIBUTES or key.startswith(CONTENT_ATTRIBUTE_PREFIXES)


# LiteLLM's own names (its otel callbacks use the first few; we write all of them)
LITELLM_CALL_ID = "litellm.call_id"
LITELLM_CALL_TYPE = "litellm.call_type"
LITELLM_TRACE_ID = "litellm.trace_id"
LITELLM_PROVIDER = "litellm.provider"
LITELLM_API_BASE = "litellm.api_base"
LITELLM_COST_TOTAL = "litellm.cost.total"
LITELLM_COST_USD = "litellm.cost_usd"
LITELLM_CACHE_HIT = "litellm.cache_hit"
LITELLM_MODEL_GROUP = "litellm.model_group"
LITELLM_DEPLOYMENT_ID = "litellm.deployment_id"
LITELLM_SESSION_ID = "litellm.session_id"
LITELLM_END_USER = "litellm.end_user"
LITELLM_TAGS = "litellm.tags"
LITELLM_REQUEST_STREAMING = "litellm.request.streaming"
LITELLM_ERROR_CODE = "litellm.error.code"
LITELLM_ERROR_PROVIDER = "litellm.error.provider"
LITELLM_ERROR_NORMALIZED = "litellm.error.normalized"
LITELLM_ERROR_PROVIDER_REQUEST_ID = "litellm.error.provider_request_id"
LITELLM_ERROR_RETRIES = "litellm.error.retries"
LITELLM_PROXY_PREFIX = "litellm.proxy."
LITELLM_V2_ERROR_CODE = "litellm.provider.error.code"
LITELLM_V2_ERROR_PROVIDER = "litellm.provider.error.llm_provider"
LITELLM_V1_ERROR_CODE = "error.code"
LITELLM_V1_ERROR_PROVIDER = "error.llm_provider"
LITELLM_V1_METADATA_PREFIX = "metadata."

# litelens's own: what a record holds and no convention names
LITELENS_STATUS = "litelens.status"
LITELENS_STREAM = "litelens.stream"
LITELENS_IS_ASYNC = "litelens.is_async"
LITELENS_TTFT_MS = "litelens.ttft_ms"
LITELENS_CHUNK_COUNT = "litelens.chunk_count"
LITELENS_OUTPUT_TOKENS_PER_S = "litelens.output_tokens_per_s"
LITELENS_TOTAL_TOKENS = "litelens.usage.total_tokens"
LITELENS_METADATA = "litelens.metadata"
LITELENS_USER_ID = "litelens.user_id"
# A Router's retry or fallback: the call id of its request's first attempt (the record's `first_attempt_id`).
LITELENS_FIRST_ATTEMPT_ID = "litelens.first_attempt_id"
LITELENS_PARAMETERS = "litelens.request.parameters"
LITELENS_REQUEST_INPUT = "litelens.request.input"
LITELENS_RESPONSE = "litelens.response"
LITELENS_TRUNCATED = "litelens.truncated"

# gen_ai.request.* attributes <-> OpenAI-style parameter names (the record keeps the latter)
_PARAMETER_ATTRIBUTES = {
    "temperature": GEN_AI_REQUEST_TEMPERATURE,
    "max_tokens": GEN_AI_REQUEST_MAX_TOKENS,
    "top_p": GEN_AI_REQUEST_TOP_P,
    "top_k": GEN_AI_REQUEST_TOP_K,
    "frequency_penalty": GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": GEN_AI_REQUEST_PRESENCE_PENALTY,
    "seed": GEN_AI_REQUEST_SEED,
    "stop": GEN_AI_REQUEST_STOP_SEQUENCES,
    "n": GEN_AI_REQUEST_CHOICE_COUNT,
    "encoding_format": GEN_AI_REQUEST_ENCODING_FORMATS,
    "dimensions": GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
}
# Other names of the output limit: OpenAI's newer chat parameter, and the Responses API's.
_MAX_TOKENS_ALIASES = ("max_completion_tokens", "max_output_tokens")

# record call_type <-> gen_ai.operation.name, where the conventions have a name for it. A Responses API
# call is a chat: the conventions' OpenAI page has one inference span for both APIs, told apart by
# `openai.api.type` (ours keep `litellm.call_type` too, which the way back reads).
_OPERATION_OF = {
    "chat": "chat",
    "responses": "chat",
    "text_completion": "text_completion",
    "embedding": "embeddings",
}
_CALL_TYPE_OF_OPERATION = {
    "chat": "chat",
    "generate_content": "chat",
    "text_completion": "text_completion",
    "embeddings": "embedding",
    "embedding": "embedding",
    "completion": "chat",  # LiteLLM v1 and OpenLLMetry say "completion" for chat completions
}
# Operations that are GenAI but not a model call: the server keeps those as plain spans.
_NOT_MODEL_CALLS = frozenset({"execute_tool", "invoke_agent", "create_agent", "invoke_workflow", "retrieval"})

# LiteLLM provider <-> gen_ai.provider.name well-known value, where they differ
_PROVIDER_NAME_OF = {
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "watsonx": "ibm.watsonx.ai",
    "xai": "x_ai",
    "moonshot": "moonshot_ai",
}
_PROVIDER_OF_NAME = {v: k for k, v in _PROVIDER_NAME_OF.items()} | {
    "az.ai.openai": "azure",
    "xai": "xai",
    # OpenInference's llm.provider values where LiteLLM says otherwise ("google" is vertex_ai or gemini)
    "aws": "bedrock",
    "mistralai": "mistral",
}
# LiteLLM's names for a provider's text-completion route: the provider is the same, as the core record
# names it (one way only, so "openai" on the way back stays "openai").
_PROVIDER_NAME_OF |= {route: _PROVIDER_NAME_OF.get(name, name) for route, name in _PROVIDER_OF_ROUTE.items()}
# LiteLLM's other routes to a provider the conventions name, which the core record keeps as LiteLLM
# names them (the span keeps that name too, in `litellm.provider`): the conventions' value "MUST be
# used" where one applies, and a backend's provider filter would miss these calls otherwise.
_PROVIDER_NAME_OF |= {
    "cohere_chat": "cohere",
    "anthropic_text": "anthropic",
    "vertex_ai_beta": "gcp.vertex_ai",
    "watsonx_text": "ibm.watsonx.ai",
}

_CANCELLED_ERRORS = ("CancelledError", "GeneratorExit", "KeyboardInterrupt")

# LiteLLM's provider prefixes (`"<provider>/<model>"`) that are common enough to recognise in a model
# name when a span names no provider; the server cannot ask LiteLLM, which it does not import.
_LITELLM_PROVIDERS = frozenset(
    {
        "openai",
        "text-completion-openai",
        "azure",
        "azure_ai",
        "anthropic",
        "bedrock",
        "sagemaker",
        "vertex_ai",
        "gemini",
        "mistral",
        "codestral",
        "cohere",
        "cohere_chat",
        "groq",
        "ollama",
        "ollama_chat",
        "huggingface",
        "together_ai",
        "fireworks_ai",
        "deepseek",
        "xai",
        "openrouter",
        "perplexity",
        "deepinfra",
        "anyscale",
        "cerebras",
        "databricks",
        "watsonx",
        "nvidia_nim",
        "replicate",
        "ai21",
        "voyage",
        "hosted_vllm",
        "vllm",
        "lm_studio",
        "litellm_proxy",
        "dashscope",
        "moonshot",
        "sambanova",
    }
)


@dataclass
class NeutralSpan:
    """One span, independent of how it arrived (OTLP protobuf, OTLP JSON, an in-process SDK span).

    Attribute values are plain Python values (arrays are lists, kvlists dicts). Ids are lowercase hex;
    `parent_span_id` is None for a root span.
    """

    trace_id: str
    span_id: str
    name: str
    parent_span_id: str | None = None
    kind: str = "INTERNAL"
    start_ns: int = 0
    end_ns: int = 0
    status_code: str = "UNSET"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""


# --------------------------------------------------------------------------------------------------
# record -> attributes


def span_name(record: Record) -> str:
    """The span name the conventions ask for: `"{operation} {model}"` (just the operation without a model)."""
    operation = operation_name(str(record.get("call_type") or "chat"))
    model = record.get("request_model")
    return f"{operation} {model}" if model else operation


def operation_name(call_type: str) -> str:
    """`gen_ai.operation.name` for a record call type (its own name where the conventions have none)."""
    return _OPERATION_OF.get(call_type, call_type)


def provider_name(provider: str) -> str:
    """`gen_ai.provider.name` for a LiteLLM provider: the conventions' well-known value where one exists."""
    return _PROVIDER_NAME_OF.get(provider, provider)


def resource_attributes(record: Record) -> dict[str, AttributeValue]:
    """Resource attributes for a record's service and environment (they live on the resource, not the span)."""
    out: dict[str, AttributeValue] = {}
    if record.get("service"):
        out[SERVICE_NAME] = str(record["service"])
    if record.get("environment"):
        out[DEPLOYMENT_ENVIRONMENT_NAME] = str(record["environment"])
    return out


def record_to_attributes(record: Record, capture_content: bool) -> dict[str, AttributeValue]:
    """Span attributes for a call record, per the GenAI conventions plus `litellm.*`/`litelens.*`.

    Content (messages, tools, response text) is only written when `capture_content` is true: the
    conventions keep it off by default because it may hold personal data. Ids and times are not
    attributes: the caller puts them on the span itself (trace/span id, start/end).
    """
    attrs: dict[str, Any] = {}
    call_type = str(record.get("call_type") or "chat")
    attrs[GEN_AI_OPERATION_NAME] = operation_name(call_type)
    provider = record.get("provider")
    if provider:
        attrs[GEN_AI_PROVIDER_NAME] = provider_name(provider)
        if provider_name(provider) != provider:
            attrs[LITELLM_PROVIDER] = provider
        if call_type == "responses" and attrs[GEN_AI_PROVIDER_NAME] == "openai":
            attrs[OPENAI_API_TYPE] = "responses"
    attrs[GEN_AI_REQUEST_MODEL] = record.get("request_model")
    attrs[GEN_AI_RESPONSE_MODEL] = record.get("response_model")
    attrs[GEN_AI_RESPONSE_ID] = record.get("response_id")
    if record.get("finish_reasons"):
        attrs[GEN_AI_RESPONSE_FINISH_REASONS] = [str(r) for r in record["finish_reasons"]]
    attrs[GEN_AI_REQUEST_STREAM] = bool(record.get("stream"))
    attrs[LITELENS_IS_ASYNC] = bool(record.get("is_async"))
    if record.get("ttft_ms") is not None:
        attrs[GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = record["ttft_ms"] / 1000.0
        attrs[LITELENS_TTFT_MS] = record["ttft_ms"]
    attrs[LITELENS_CHUNK_COUNT] = record.get("chunk_count")
    attrs[LITELENS_OUTPUT_TOKENS_PER_S] = record.get("output_tokens_per_s")

    usage = record.get("usage") or {}
    attrs[GEN_AI_USAGE_INPUT_TOKENS] = usage.get("input_tokens")
    if call_type != "embedding":  # an embedding has no output tokens: the conventions leave it unset
        attrs[GEN_AI_USAGE_OUTPUT_TOKENS] = usage.get("output_tokens")
    attrs[LITELENS_TOTAL_TOKENS] = usage.get("total_tokens")
    attrs[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.get("cached_input_tokens")
    attrs[GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.get("cache_creation_input_tokens")
    attrs[GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.get("reasoning_tokens")

    api_base = record.get("api_base")
    if api_base:
        attrs[LITELLM_API_BASE] = api_base
        address, port = address_of(api_base)
        attrs[SERVER_ADDRESS] = address
        attrs[SERVER_PORT] = port

    attrs[LITELLM_CALL_ID] = record.get("call_id")
    attrs[LITELLM_CALL_TYPE] = record.get("litellm_call_type")
    attrs[LITELLM_TRACE_ID] = record.get("litellm_trace_id")
    attrs[LITELLM_COST_TOTAL] = record.get("cost_usd")
    attrs[LITELLM_CACHE_HIT] = record.get("cache_hit")
    attrs[LITELLM_MODEL_GROUP] = record.get("model_group")
    attrs[LITELLM_DEPLOYMENT_ID] = record.get("deployment_id")
    if record.get("first_attempt_id"):
        attrs[LITELENS_FIRST_ATTEMPT_ID] = record["first_attempt_id"]
    if record.get("session_id"):
        attrs[GEN_AI_CONVERSATION_ID] = record["session_id"]
        attrs[LITELLM_SESSION_ID] = record["session_id"]
    attrs[LITELLM_END_USER] = record.get("end_user")
    attrs[LITELENS_USER_ID] = record.get("user_id")
    if record.get("tags"):
        attrs[LITELLM_TAGS] = [str(t) for t in record["tags"]]
    if record.get("metadata"):
        attrs[LITELENS_METADATA] = _json(record["metadata"])
    for name, value in (record.get("proxy") or {}).items():
        attrs[LITELLM_PROXY_PREFIX + name] = value
    if record.get("truncated"):
        attrs[LITELENS_TRUNCATED] = [str(t) for t in record["truncated"]]

    status = record.get("status")
    if status != "ok":
        attrs[LITELENS_STATUS] = status
    error = record.get("error") or {}
    if error:
        attrs[ERROR_TYPE] = error.get("type") or ("_OTHER" if status == "error" else None)
        # A cancellation's exception has no message: no attribute then, rather than an empty one.
        attrs[ERROR_MESSAGE] = error.get("message") or None
        attrs[HTTP_RESPONSE_STATUS_CODE] = error.get("status_code")
        attrs[LITELLM_ERROR_CODE] = error.get("code")
        attrs[LITELLM_ERROR_PROVIDER] = error.get("provider")
        attrs[LITELLM_ERROR_NORMALIZED] = error.get("normalized")
        attrs[LITELLM_ERROR_PROVIDER_REQUEST_ID] = error.get("provider_request_id")
        attrs[LITELLM_ERROR_RETRIES] = error.get("retries")

    request = record.get("request") or {}
    parameters = request.get("parameters")
    attrs[GEN_AI_OUTPUT_TYPE] = _output_type(call_type, parameters)
    if isinstance(parameters, Mapping) and parameters:
        for key, name in _PARAMETER_ATTRIBUTES.items():
            value = parameters.get(key)
            if key in ("stop", "encoding_format") and isinstance(value, str):
                value = [value]
            attrs[name] = _attribute_value(value)
        for key in _MAX_TOKENS_ALIASES:
            if attrs[GEN_AI_REQUEST_MAX_TOKENS] is None:
                attrs[GEN_AI_REQUEST_MAX_TOKENS] = _attribute_value(parameters.get(key))
        if attrs[GEN_AI_REQUEST_CHOICE_COUNT] == 1:
            del attrs[GEN_AI_REQUEST_CHOICE_COUNT]  # the conventions: set only when it is not 1
        # The whole dict too: the conventions name only a few parameters, and the record keeps them all.
        attrs[LITELENS_PARAMETERS] = _json(parameters)
    if capture_content:
        _content_attributes(record, attrs)
    return {k: v for k, v in attrs.items() if v is not None and v != []}


# `response_format={"type": ...}` -> `gen_ai.output.type`
_OUTPUT_TYPE_OF_FORMAT = {"json_object": "json", "json_schema": "json", "text": "text"}


def _output_type(call_type: str, parameters: Any) -> str | None:
    """`gen_ai.output.type`, which the conventions ask for when the request names an output format:
    an image generation's is an image, speech's speech, a chat's the type of its `response_format`."""
    if call_type in ("image_generation", "image_edit"):
        return "image"
    if call_type == "speech":
        return "speech"
    response_format = parameters.get("response_format") if isinstance(parameters, Mapping) else None
    if isinstance(response_format, Mapping):
        return _OUTPUT_TYPE_OF_FORMAT.get(str(response_format.get("type")))
    return None


def _content_attributes(record: Record, attrs: dict[str, Any]) -> None:
    request = record.get("request") or {}
    messages = request.get("messages")
    system: list[dict[str, Any]] = []
    instructions = request.get("instructions")  # the Responses API's `instructions=`
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "content": instructions})
    if isinstance(messages, list):
        rest = list(messages)
        # Leading system messages are the instructions; later ones stay in the history where they were.
        while (
            rest
            and isinstance(rest[0], Mapping)
            and rest[0].get("role") == "system"
            and isinstance(rest[0].get("content"), str)
        ):
            system.append({"type": "text", "content": rest.pop(0)["content"]})
        attrs[GEN_AI_INPUT_MESSAGES] = _json([to_otel_message(m) for m in rest])
    if system:
        attrs[GEN_AI_SYSTEM_INSTRUCTIONS] = _json(system)
    responses = record.get("call_type") == "responses"
    if request.get("input") is not None:
        if responses:  # the Responses API's input is the conversation so far, as chat's messages are
            attrs[GEN_AI_INPUT_MESSAGES] = _json(
                [to_otel_message(m) for m in _chat_messages(request["input"])]
            )
        else:
            attrs[LITELENS_REQUEST_INPUT] = _json(request["input"])
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        attrs[GEN_AI_TOOL_DEFINITIONS] = _json([_to_otel_tool(t) for t in tools])
    response = record.get("response")
    if isinstance(response, Mapping):
        choices = response.get("choices")
        status = str(record.get("status") or "ok")
        if set(response) <= {"id", "choices"} and isinstance(choices, list):
            attrs[GEN_AI_OUTPUT_MESSAGES] = _json(
                [_to_otel_output(c, status) for c in choices if isinstance(c, Mapping)]
            )
        elif (
            responses
            and set(response) <= {"id", "status", "output"}
            and isinstance(response.get("output"), list)
        ):
            reasons = record.get("finish_reasons") or []
            reason = str(reasons[0]) if reasons else _unfinished_reason(status)
            attrs[GEN_AI_OUTPUT_MESSAGES] = _json([_responses_output_message(response["output"], reason)])
        else:
            attrs[LITELENS_RESPONSE] = _json(response)


# The Responses API's text parts: a chat's `{"type": "text"}` part to `to_otel_message`
_TEXT_PARTS = ("input_text", "output_text")


def _chat_messages(given: Any) -> list[Any]:
    """A Responses API input (a string, or a list of messages and items) as chat messages: a function
    call is the assistant's tool call, its output the tool's answer, as in a chat's tool loop."""
    if not isinstance(given, list):
        return [{"role": "user", "content": given if isinstance(given, str) else _json(given)}]
    messages: list[Any] = []
    for item in given:
        item = _as_mapping(item)
        if not isinstance(item, Mapping):
            messages.append({"role": "user", "content": item if isinstance(item, str) else _json(item)})
            continue
        kind = item.get("type")
        if kind == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            call = {"id": item.get("call_id"), "type": "function", "function": function}
            messages.append({"role": "assistant", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            )
        elif "role" in item:
            messages.append({"role": item["role"], "content": _chat_content(item.get("content"))})
        else:  # another item (reasoning, a built-in tool's call): kept whole, as a part of its own type
            messages.append({"role": "assistant", "content": [item]})
    return messages


def _chat_content(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": part.get("text")})
        elif kind == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            parts.append(part)
    return parts


def _responses_output_message(output: list[Any], finish_reason: str) -> dict[str, Any]:
    """A Responses API answer (its `output` items) as the one output message it is: the text of its
    messages, its function calls and its reasoning summaries, as parts in their order."""
    parts: list[dict[str, Any]] = []
    for item in output:
        item = _as_mapping(item)
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "message":
            parts.extend(
                to_otel_message({"role": "assistant", "content": _chat_content(item.get("content"))})["parts"]
            )
        elif kind == "function_call":
            parts.append(
                {
                    "type": "tool_call",
                    "id": item.get("call_id"),
                    "name": item.get("name"),
                    "arguments": item.get("arguments"),
                }
            )
        elif kind == "reasoning" and isinstance(item.get("summary"), list):
            texts = [p.get("text") for p in item["summary"] if isinstance(p, Mapping)]
            parts.append({"type": "reasoning", "content": "\n".join(str(t) for t in texts if t)})
        else:
            parts.append({"type": str(kind or "data"), "content": item})
    return {"role": "assistant", "parts": parts, "finish_reason": finish_reason}


def to_otel_message(message: Any) -> dict[str, Any]:
    """An OpenAI-style chat message as a GenAI-conventions message (`{"role", "parts": [...]}`)."""
    message = _as_mapping(message)
    if not isinstance(message, Mapping):
        return {"role": "user", "parts": [{"type": "text", "content": str(message)}]}
    role = str(message.get("role") or "user")
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if role == "tool":
        parts.append({"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content})
    elif isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text")})
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, Mapping) else image
                parts.append({"type": "uri", "modality": "image", "uri": url})
            else:
                parts.append(
                    {"type": str(part.get("type")) if isinstance(part, Mapping) else "text", "content": part}
                )
    for call in message.get("tool_calls") or []:
        call = _as_mapping(call)
        if isinstance(call, Mapping):
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name") if isinstance(function, Mapping) else None,
                    "arguments": function.get("arguments") if isinstance(function, Mapping) else None,
                }
            )
    out: dict[str, Any] = {"role": role, "parts": parts}
    if message.get("name"):
        out["name"] = message["name"]
    return out


def _as_mapping(value: Any) -> Any:
    """A pydantic message or tool call as its fields: callers pass the `Message` a previous response
    returned back in `messages` (the tool-calling loop), and LiteLLM's objects are not mappings."""
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            fields = dump()
        except Exception:
            return value
        if isinstance(fields, Mapping):
            return fields
    return value


def _to_otel_output(choice: Mapping[str, Any], status: str) -> dict[str, Any]:
    message = choice.get("message")
    if not message and isinstance(choice.get("text"), str):
        # A text completion's choice holds its answer as `text`, not as a message.
        message = {"role": "assistant", "content": choice["text"]}
    out = to_otel_message(message or {"role": "assistant"})
    out["finish_reason"] = choice.get("finish_reason") or _unfinished_reason(status)
    return out


def _unfinished_reason(status: str) -> str:
    """The finish reason of an answer the model did not finish (a stream the caller closed or dropped,
    or one cut by an error). The conventions' output message requires one, as a string (their own
    values, or any other): the call's status says why it stopped ("error" is one of theirs), and an
    answer that ended well without naming a reason gets an empty one. `span_to_record` reads it back
    as no reason, as the record had it."""
    return status if status != "ok" else ""


def _to_otel_tool(tool: Any) -> Any:
    if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping):
        return {"type": tool.get("type", "function"), **tool["function"]}
    return tool


@functools.lru_cache(maxsize=256)
def address_of(url: str) -> tuple[str | None, int | None]:
    """(`server.address`, `server.port`) of a URL; cached, since one process calls few API bases."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None, None
    return parts.hostname, port


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _attribute_value(value: Any) -> Any:
    """`value` if OTel can carry it as an attribute (primitives, homogeneous lists), else None."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return list(value)
    return None


# --------------------------------------------------------------------------------------------------
# span -> record


def is_llm_span(span: NeutralSpan) -> bool:
    """True when the span describes one model call (by any of the vocabularies we understand).

    LiteLLM v1's `raw_gen_ai_request` child repeats its parent `litellm_request` span, so it is not a
    call of its own; GenAI spans for tools, agents and retrieval are not model calls either.
    """
    attrs = span.attributes
    if span.name == "raw_gen_ai_request":
        return False
    kind = attrs.get(OI_SPAN_KIND)
    if kind is not None:
        return str(kind).upper() in ("LLM", "EMBEDDING")
    operation = attrs.get(GEN_AI_OPERATION_NAME)
    if operation is not None and str(operation) in _NOT_MODEL_CALLS:
        return False
    if span.scope_name.startswith(_OPENLIT_LLM_SCOPES) and _model_of_name(span):
        # OpenLIT ends a failed call's span before it sets any attribute: its name, status and
        # exception event are all there is, and still a failed call the user wants to see.
        return True
    return any(
        key in attrs
        for key in (
            LITELLM_CALL_ID,
            GEN_AI_OPERATION_NAME,
            GEN_AI_REQUEST_MODEL,
            GEN_AI_SYSTEM,
            GEN_AI_PROVIDER_NAME,
            LLM_REQUEST_TYPE,
        )
    )


# Instrumentation scopes of the spans that LiteLLM's own callback and the peers' LiteLLM
# instrumentations make: their model names are LiteLLM's `"<provider>/<model>"`.
_LITELLM_SCOPES = frozenset(
    {
        "litellm",
        "openinference.instrumentation.litellm",
        "opentelemetry.instrumentation.litellm",
        "openlit.instrumentation.litellm",
    }
)
# OpenLIT's instrumentation scopes seen to end a failed LLM call's span bare (not its vector stores').
_OPENLIT_LLM_SCOPES = ("openlit.instrumentation.litellm",)


def derived_call_id(trace_id: str, span_id: str) -> str:
    """A call id for a span that carries none: stable, so a span sent twice is stored once."""
    return f"otel-{trace_id}-{span_id}"


def span_to_record(span: NeutralSpan) -> Record | None:
    """The call record a span describes, or None when the span is not an LLM call.

    Where several vocabularies name the same fact, ours (`litellm.*`/`litelens.*`) wins, then the
    current conventions, then the older and peer-specific names, so a record that went out through
    `record_to_attributes` comes back unchanged.
    """
    if not is_llm_span(span):
        return None
    attrs = _with_event_attributes(span)
    resource = span.resource

    call_type = _call_type(span, attrs)
    litellm_call_type = _str(attrs.get(LITELLM_CALL_TYPE))
    if litellm_call_type is None and LITELLM_CALL_ID in attrs:
        # LiteLLM v1 names its call type ("acompletion") in llm.request.type only; other producers use
        # that attribute for their own words ("chat"), hence only on LiteLLM's spans.
        named = _str(attrs.get(LLM_REQUEST_TYPE))
        litellm_call_type = named if named in _CALL_TYPES else None
    is_async = _bool(attrs.get(LITELENS_IS_ASYNC))
    if is_async is None:
        source = litellm_call_type or (span.name if span.name in _CALL_TYPES else None)
        is_async = bool(source) and source in _CALL_TYPES and _is_async_name(source)

    # A start of 0 is a span that left it out (hand-written exporters do), not a call made in 1970: one
    # that lasted 56 years topped every latency figure, and retention deleted it on its next pass.
    start_ns = span.start_ns or span.end_ns
    start = start_ns / 10**9
    end = max(span.end_ns, start_ns) / 10**9
    stream = _first_bool(
        attrs, GEN_AI_REQUEST_STREAM, LITELENS_STREAM, LITELLM_REQUEST_STREAMING, LLM_IS_STREAMING
    )
    invocation = _invocation(attrs)  # parsed once: OpenInference's JSON text, read for four fields
    parameters = _parameters(attrs, invocation)
    if stream is None:
        stream = _bool(parameters.get("stream")) if parameters else None
    # Time to first token is a stream's: OpenLIT sends one for calls it knows were not streamed too
    # (their whole duration), which would pass for a stream's figure in the latency charts.
    ttft_ms = None if stream is False else _ttft_ms(span, attrs)
    usage = _usage(attrs)
    tokens_per_s = _num(attrs.get(LITELENS_OUTPUT_TOKENS_PER_S))
    if tokens_per_s is None and usage["output_tokens"]:
        generation_s = end - start - (ttft_ms or 0.0) / 1000.0
        tokens_per_s = round(usage["output_tokens"] / generation_s, 3) if generation_s > 0 else None

    provider_attr = _first_str(
        attrs, LITELLM_PROVIDER, GEN_AI_PROVIDER_NAME, GEN_AI_SYSTEM, OI_PROVIDER, OI_SYSTEM
    )
    provider = _PROVIDER_OF_NAME.get(provider_attr, provider_attr) if provider_attr else None
    if attrs.get(LITELLM_PROVIDER) is not None:
        provider = _str(attrs[LITELLM_PROVIDER])
    request_model = _first_str(
        attrs, GEN_AI_REQUEST_MODEL, OI_MODEL_NAME, OI_EMBEDDING_MODEL_NAME
    ) or _model_of_name(span)
    if span.scope_name in _LITELLM_SCOPES:
        provider, request_model = _provider_and_model(attrs, invocation, provider, request_model)

    v1_meta = _v1_metadata(attrs)
    proxy = {
        key[len(LITELLM_PROXY_PREFIX) :]: _str(value)
        for key, value in attrs.items()
        if key.startswith(LITELLM_PROXY_PREFIX)
    }
    for key, name in _PROXY_FIELDS.items():
        if v1_meta.get(key) not in (None, "", "None") and name not in proxy:
            proxy[name] = _str(v1_meta[key])
    # OpenInference's `metadata` is the user's own (`using_metadata(...)`), as JSON text
    metadata = _json_object(attrs.get(LITELENS_METADATA)) or _json_object(attrs.get(OI_METADATA))
    if metadata is None:
        metadata = {}
        for key in ("requester_metadata", "spend_logs_metadata"):
            nested = _json_object(v1_meta.get(key))
            if nested:
                metadata.update(user_metadata_of(nested))

    tags = attrs.get(LITELLM_TAGS, attrs.get(OI_TAGS))
    if isinstance(tags, str):
        tags = _json_list(tags) or [tags]

    status, error = _outcome(span, attrs, provider)
    chunk_count = _int(attrs.get(LITELENS_CHUNK_COUNT)) if stream else None
    if status != "ok" and chunk_count and not any(usage[k] for k in _COUNTS):
        # A stream that broke after chunks came, with no count given: not known, as `record.from_payload`
        # says it (a span carries no attribute for a null count).
        usage = {**usage, **dict.fromkeys(_COUNTS)}
    request, response = _content(attrs, call_type, parameters)
    finish_reasons = attrs.get(GEN_AI_RESPONSE_FINISH_REASONS)
    if finish_reasons is None:
        finish_reasons = _finish_reasons_from_content(response, attrs)
    elif isinstance(finish_reasons, str):
        # LiteLLM's otel callback sends the list as JSON text ('["stop"]'); others a bare reason
        finish_reasons = _json_list(finish_reasons) or [finish_reasons]

    record: Record = {
        "schema": SCHEMA,
        "call_id": _str(attrs.get(LITELLM_CALL_ID)) or derived_call_id(span.trace_id, span.span_id),
        "trace_id": span.trace_id or None,
        "span_id": span.span_id or None,
        "parent_span_id": span.parent_span_id or None,
        "litellm_trace_id": _str(attrs.get(LITELLM_TRACE_ID)),
        "session_id": _first_str(
            attrs, LITELLM_SESSION_ID, GEN_AI_CONVERSATION_ID, OI_SESSION_ID, TRACELOOP_SESSION_ID
        ),
        "end_user": _first_str(attrs, LITELLM_END_USER, GEN_AI_REQUEST_USER, LLM_USER)
        or _str(v1_meta.get("user_api_key_end_user_id"))
        or _str(invocation.get("user")),
        "user_id": _first_str(attrs, LITELENS_USER_ID, OI_USER_ID, TRACELOOP_USER_ID)
        or _str(v1_meta.get("user_api_key_user_id")),
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "metadata": metadata,
        "service": _str(resource.get(SERVICE_NAME)) or _str(attrs.get(SERVICE_NAME)),
        "environment": _first_str(resource, DEPLOYMENT_ENVIRONMENT_NAME, DEPLOYMENT_ENVIRONMENT)
        or _first_str(attrs, DEPLOYMENT_ENVIRONMENT_NAME, DEPLOYMENT_ENVIRONMENT),
        "call_type": call_type,
        "litellm_call_type": litellm_call_type,
        "is_async": is_async,
        "stream": bool(stream),
        "request_model": request_model,
        "response_model": _str(attrs.get(GEN_AI_RESPONSE_MODEL)),
        "provider": provider,
        "api_base": _str(attrs.get(LITELLM_API_BASE)) or scrub_url(_str(invocation.get("api_base"))),
        "model_group": _str(attrs.get(LITELLM_MODEL_GROUP)),
        "deployment_id": _str(attrs.get(LITELLM_DEPLOYMENT_ID)),
        "start_time": start,
        "end_time": end,
        "duration_ms": round(max(0.0, (end - start) * 1000.0), 3),
        "ttft_ms": ttft_ms,
        "output_tokens_per_s": tokens_per_s,
        "chunk_count": chunk_count,
        "usage": usage,
        "cost_usd": _first_num(
            attrs,
            LITELLM_COST_TOTAL,
            LITELLM_COST_USD,
            GEN_AI_COST_TOTAL_COST,
            GEN_AI_USAGE_COST,
            OI_COST_TOTAL,
        ),
        "cache_hit": _bool(attrs.get(LITELLM_CACHE_HIT)),
        "status": status,
        "error": error,
        "finish_reasons": [_chat_reason(str(r)) for r in finish_reasons]
        if isinstance(finish_reasons, list)
        else [],
        "response_id": _first_str(attrs, GEN_AI_RESPONSE_ID, LLM_OPENAI_ID),
        "request": request,
        "response": response,
        "proxy": proxy or None,
        "truncated": [str(t) for t in attrs[LITELENS_TRUNCATED]]
        if isinstance(attrs.get(LITELENS_TRUNCATED), list)
        else None,
    }
    first_attempt_id = _str(attrs.get(LITELENS_FIRST_ATTEMPT_ID))
    if first_attempt_id:
        record["first_attempt_id"] = first_attempt_id
    return record


def _invocation(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """OpenInference's invocation parameters: LiteLLM's keyword arguments, less the API key."""
    return (
        _json_object(attrs.get(OI_INVOCATION_PARAMETERS))
        or _json_object(attrs.get(OI_EMBEDDING_INVOCATION_PARAMETERS))
        or {}
    )


def _model_of_name(span: NeutralSpan) -> str | None:
    """The model in a span named as the conventions ask (`"chat openai/gpt-4o-mini"`): all OpenLIT
    keeps of a failed call, whose span has no attributes at all."""
    operation, _, model = span.name.partition(" ")
    if operation not in _CALL_TYPE_OF_OPERATION:
        return None
    return model.strip() or None


def _provider_and_model(
    attrs: Mapping[str, Any], invocation: Mapping[str, Any], provider: str | None, model: str | None
) -> tuple[str | None, str | None]:
    """(provider, requested model) as the core record has them for the same LiteLLM call.

    Only for spans of LiteLLM instrumentations: there the model is LiteLLM's argument, whose prefix is
    LiteLLM's provider syntax, where for another client "openai/gpt-4o" may be the model's own name
    (OpenRouter's, say). The peers that wrap `litellm.completion` report it as the caller wrote it,
    `"openai/gpt-4o-mini"`, where LiteLLM's own logging (and so the core record, and LiteLLM's
    spans, which carry its call id) says `"gpt-4o-mini"` with provider `"openai"`: without the split the
    same model is two models in every chart. OpenLIT names the library (`"litellm"`) as the provider
    and OpenInference names none for an embedding, so there the model's prefix is the provider, when
    it is one LiteLLM knows.
    """
    named = [model, _str(attrs.get(LITELLM_PROVIDER_MODEL)), _str(invocation.get("model"))]
    if provider in (None, "", "litellm"):
        prefixes = [m.split("/", 1)[0] for m in named if m and "/" in m]
        provider = next((p for p in prefixes if p in _LITELLM_PROVIDERS), None)
    if model and provider and LITELLM_CALL_ID not in attrs:
        model = without_provider(model, provider)
    return provider, model


def _with_event_attributes(span: NeutralSpan) -> dict[str, Any]:
    """Span attributes, plus content that some producers put on events instead (never overriding)."""
    attrs = dict(span.attributes)
    for event in span.events:
        name = event.get("name")
        event_attrs = event.get("attributes") or {}
        if name == "gen_ai.client.inference.operation.details":
            for key, value in event_attrs.items():
                attrs.setdefault(key, value)
        elif name == "gen_ai.content.prompt" and GEN_AI_PROMPT in event_attrs:
            attrs.setdefault(GEN_AI_PROMPT, event_attrs[GEN_AI_PROMPT])
        elif name == "gen_ai.content.completion":
            value = event_attrs.get(GEN_AI_COMPLETION, event_attrs.get("message.content"))
            if value is not None:
                attrs.setdefault(GEN_AI_COMPLETION, value)
    return attrs


def _is_async_name(name: str) -> bool:
    return name.startswith("a") and name != "anthropic_messages"


def _call_type(span: NeutralSpan, attrs: Mapping[str, Any]) -> str:
    operation = _str(attrs.get(GEN_AI_OPERATION_NAME)) or _str(attrs.get(LLM_REQUEST_TYPE))
    if operation:
        if operation in _CALL_TYPE_OF_OPERATION:
            call_type = _CALL_TYPE_OF_OPERATION[operation]
            # A Responses API call is a chat in the conventions; LiteLLM's call type, or OpenAI's API
            # type, says which API it was.
            if call_type == "chat" and (
                _CALL_TYPES.get(str(attrs.get(LITELLM_CALL_TYPE))) == "responses"
                or attrs.get(OPENAI_API_TYPE) == "responses"
            ):
                return "responses"
            return call_type
        return _CALL_TYPES.get(operation, operation)
    kind = str(attrs.get(OI_SPAN_KIND) or "").upper()
    if kind == "EMBEDDING" or OI_EMBEDDING_MODEL_NAME in attrs or "embedding" in span.name.lower():
        return "embedding"
    return _CALL_TYPES.get(span.name, "chat")


def _ttft_ms(span: NeutralSpan, attrs: Mapping[str, Any]) -> float | None:
    ms = _num(attrs.get(LITELENS_TTFT_MS))
    if ms is not None:
        return ms
    seconds = _first_num(attrs, GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, GEN_AI_SERVER_TTFT)
    if seconds is not None:
        return round(seconds * 1000.0, 3)
    for event in span.events:
        name = str(event.get("name") or "").lower()
        first = "first" in name and ("token" in name or "chunk" in name)
        if first or name == "llm.content.completion.chunk":
            time_ns = event.get("time_ns")
            if isinstance(time_ns, int) and time_ns >= span.start_ns:
                return round((time_ns - span.start_ns) / 1e6, 3)
    return None


_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def _usage(attrs: Mapping[str, Any]) -> dict[str, int | None]:
    input_tokens = (
        _first_int(attrs, GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, OI_TOKENS_PROMPT) or 0
    )
    output_tokens = (
        _first_int(attrs, GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS, OI_TOKENS_COMPLETION)
        or 0
    )
    total = _first_int(
        attrs, LITELENS_TOTAL_TOKENS, GEN_AI_USAGE_TOTAL_TOKENS, LLM_USAGE_TOTAL_TOKENS, OI_TOKENS_TOTAL
    )
    return {
        "input_tokens": max(0, input_tokens),
        "output_tokens": max(0, output_tokens),
        "total_tokens": max(0, total) if total is not None else input_tokens + output_tokens,
        "cached_input_tokens": _first_int(
            attrs,
            GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
            OI_TOKENS_CACHE_READ,
            GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OLD,
        ),
        "cache_creation_input_tokens": _first_int(
            attrs,
            GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
            GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
            OI_TOKENS_CACHE_WRITE,
            GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OLD,
        ),
        "reasoning_tokens": _first_int(attrs, GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, OI_TOKENS_REASONING),
    }


def _v1_metadata(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """LiteLLM v1's flattened `metadata.*` attributes, as one dict."""
    prefix = LITELLM_V1_METADATA_PREFIX
    return {key[len(prefix) :]: value for key, value in attrs.items() if key.startswith(prefix)}


def _outcome(
    span: NeutralSpan, attrs: Mapping[str, Any], provider: str | None
) -> tuple[str, dict[str, Any] | None]:
    """(status, error) from span status, `error.*` attributes and an `exception` event."""
    exception: Mapping[str, Any] = {}
    for event in span.events:
        if event.get("name") == "exception":
            exception = event.get("attributes") or {}
            break
    raised = _str(exception.get("exception.type"))
    error_type = _str(attrs.get(ERROR_TYPE)) or raised
    if error_type and error_type.startswith("litellm."):
        # The peers name LiteLLM's exceptions with their module (`litellm.exceptions.RateLimitError`),
        # the core and our own spans by class: one error, one name, so one filter finds it from any road.
        error_type = error_type.rsplit(".", 1)[-1]
    declared = _str(attrs.get(LITELENS_STATUS))
    if declared in STATUSES:
        status = declared
    elif span.status_code == "ERROR" or attrs.get(ERROR_TYPE) is not None:
        status = "error"
    else:
        return "ok", None
    if status == "error" and error_type and error_type.rsplit(".", 1)[-1] in _CANCELLED_ERRORS:
        status = "cancelled"
    if status == "ok":
        return status, None
    code = _first_str(attrs, LITELLM_ERROR_CODE, LITELLM_V2_ERROR_CODE, LITELLM_V1_ERROR_CODE)
    status_code = _int(attrs.get(HTTP_RESPONSE_STATUS_CODE))
    if status_code is None and code and code.isdigit():
        status_code = int(code)
    if status_code is None and raised and raised.startswith("litellm."):
        # The peers that only saw the exception say no HTTP status; LiteLLM's exception classes each
        # stand for one, which they set whatever the provider answered.
        status_code = _STATUS_OF_LITELLM_ERROR.get(raised.rsplit(".", 1)[-1])
    message = (
        _str(attrs.get(ERROR_MESSAGE))
        or _str(exception.get("exception.message"))
        or _str(span.status_message or None)
    )
    return status, {
        "type": None if error_type == "_OTHER" else error_type,
        "message": message,
        "status_code": status_code,
        "code": code,
        "provider": _first_str(
            attrs, LITELLM_ERROR_PROVIDER, LITELLM_V2_ERROR_PROVIDER, LITELLM_V1_ERROR_PROVIDER
        )
        or provider,
        "normalized": _str(attrs.get(LITELLM_ERROR_NORMALIZED)),
        "provider_request_id": _str(attrs.get(LITELLM_ERROR_PROVIDER_REQUEST_ID)),
        "retries": _int(attrs.get(LITELLM_ERROR_RETRIES)),
    }


# The HTTP status each of LiteLLM's exception classes always carries (litellm/exceptions.py).
_STATUS_OF_LITELLM_ERROR = {
    "BadRequestError": 400,
    "ContextWindowExceededError": 400,
    "ContentPolicyViolationError": 400,
    "UnsupportedParamsError": 400,
    "AuthenticationError": 401,
    "PaymentRequiredError": 402,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "UnprocessableEntityError": 422,
    "RateLimitError": 429,
    "InternalServerError": 500,
    "BadGatewayError": 502,
    "ServiceUnavailableError": 503,
}


# Parameters that are not model parameters in the record's sense (content, routing, the end user).
_NOT_PARAMETERS = frozenset(
    {
        "messages",
        "input",
        "model",
        "tools",
        "functions",
        "user",
        "metadata",
        "extra_body",
        "prompt",
        "api_key",
        # LiteLLM's own arguments, which OpenInference's invocation parameters repeat: how to reach the
        # provider and how hard to try, not what the model was asked (the API base has its own field).
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "num_retries",
        "max_retries",
        "timeout",
        "request_timeout",
        "custom_llm_provider",
        "mock_response",
        "fallbacks",
        "caching",
        "litellm_call_id",
        "litellm_session_id",
        "litellm_trace_id",
    }
)
# What OpenLIT reports for a parameter the caller did not pass: the API's default, or an empty value.
_OPENLIT_UNSET = {
    "temperature": (1.0,),
    "top_p": (1.0,),
    "frequency_penalty": (0.0,),
    "presence_penalty": (0.0,),
    "max_tokens": (-1,),
    "seed": ("",),
    "stop": ((),),
    "encoding_format": (("float",),),
}


def _parameters(attrs: Mapping[str, Any], invocation: Mapping[str, Any]) -> dict[str, Any]:
    ours = _json_object(attrs.get(LITELENS_PARAMETERS))
    if ours is not None:
        return ours
    parameters: dict[str, Any] = {}
    if invocation:
        parameters.update({k: v for k, v in invocation.items() if k not in _NOT_PARAMETERS and v is not None})
    openlit = attrs.get("telemetry.sdk.name") == "openlit"
    for key, name in _PARAMETER_ATTRIBUTES.items():
        value = attrs.get(name)
        if value is None or key in parameters:
            continue
        if openlit and (tuple(value) if isinstance(value, list) else value) in _OPENLIT_UNSET.get(key, ()):
            continue
        parameters[key] = value
    return parameters


def _content(
    attrs: Mapping[str, Any], call_type: str, parameters: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(record request, record response) from whichever content vocabulary the span carries."""
    request: dict[str, Any] = {}
    responses = call_type == "responses"
    if responses:  # its instructions and input, as the Responses API takes them (see `_chat_messages`)
        request.update(_responses_request_in(attrs))
        messages = None
    else:
        messages = _messages_in(attrs)
    if call_type == "embedding" and LITELENS_REQUEST_INPUT not in attrs:
        # What an embedding embeds is its input, not a conversation, whatever the peer called it.
        embedded = _embedding_input(attrs, messages)
        if embedded is not None:
            request["input"] = embedded
            messages = None
    if messages is not None:
        request["messages"] = messages
    # Also where earlier versions put a Responses call's input (and its answer in LITELENS_RESPONSE).
    raw_input = attrs.get(LITELENS_REQUEST_INPUT)
    texts = [(e.get("embedding") or {}).get("text") for e in _indexed(attrs, OI_EMBEDDINGS_PREFIX)]
    if raw_input is not None:
        request["input"] = _json_value(raw_input)
    elif "input" in request:
        pass
    elif messages is None and any(isinstance(t, str) for t in texts):
        # OpenInference's input.value is Python's str() of the input list; the texts are exact.
        request["input"] = texts
    elif messages is None and attrs.get(OI_INPUT_VALUE) is not None and call_type != "chat":
        request["input"] = _json_value(attrs[OI_INPUT_VALUE])
    tools = _tools_in(attrs)
    if tools:
        request["tools"] = tools
    request["parameters"] = parameters

    response: dict[str, Any] | None = None
    ours = _json_object(attrs.get(LITELENS_RESPONSE))
    if ours is not None:
        response = ours
    elif responses and GEN_AI_OUTPUT_MESSAGES in attrs:
        response = _responses_response_in(attrs)
    else:
        choices = _choices_in(attrs)
        if choices is not None:
            response = {}
            response_id = _first_str(attrs, GEN_AI_RESPONSE_ID, LLM_OPENAI_ID)
            if response_id:
                response["id"] = response_id
            response["choices"] = choices
        elif attrs.get(OI_OUTPUT_VALUE) is not None:
            response = {"output": _json_value(attrs[OI_OUTPUT_VALUE])}
    return request, response


def _embedding_input(attrs: Mapping[str, Any], messages: list[Any] | None) -> list[Any] | None:
    """The texts an embedding call embedded, from the input messages a peer made of them.

    OpenLLMetry and LiteLLM's otel callback make each text a user message; OpenLIT sends Python's
    `str()` of the input list, which is read as a Python literal (literals only: nothing is run).
    """
    if messages:
        if all(isinstance(m, Mapping) and m.get("role") == "user" and "content" in m for m in messages):
            return [m["content"] for m in messages]
        return None
    raw = attrs.get(GEN_AI_INPUT_MESSAGES)
    if isinstance(raw, str) and raw[:1] == "[" and len(raw) <= _MAX_LITERAL_CHARS:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            return value
    return None


# A longer Python literal is not parsed (the parse costs memory in proportion).
_MAX_LITERAL_CHARS = 256 << 10


def _responses_request_in(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses call's `instructions` and `input` from the span's system instructions and input
    messages (an input that was one user text comes back as that string, as the API was given it)."""
    request: dict[str, Any] = {}
    system = _json_list(attrs.get(GEN_AI_SYSTEM_INSTRUCTIONS))
    if system:
        texts = [part.get("content") if isinstance(part, Mapping) else part for part in system]
        request["instructions"] = "\n".join(str(t) for t in texts if t is not None)
    messages = _json_list(attrs.get(GEN_AI_INPUT_MESSAGES))
    if messages is not None:
        chat = [from_otel_message(m) for m in messages]
        if (
            len(chat) == 1
            and chat[0].keys() == {"role", "content"}
            and chat[0]["role"] == "user"
            and isinstance(chat[0]["content"], str)
        ):
            return {**request, "input": chat[0]["content"]}
        request["input"] = [item for m in chat for item in _responses_items(m)]
    return request


def _responses_items(message: Mapping[str, Any]) -> list[Any]:
    """A chat message as Responses API input items (the inverse of `_chat_messages`)."""
    role = message.get("role")
    if role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.get("tool_call_id"),
                "output": message.get("content"),
            }
        ]
    items: list[Any] = []
    content = message.get("content")
    if isinstance(content, list) and len(content) == 1 and _kept_item(content[0]) is not None:
        items.append(_kept_item(content[0]))
    elif content is not None:
        items.append({"role": role, "content": _responses_content(content, role)})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "call_id": call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return items


def _kept_item(part: Any) -> Any:
    """The Responses item a part holds whole (`_chat_messages` keeps reasoning and the like so)."""
    kept = part.get("content") if isinstance(part, Mapping) else None
    if isinstance(kept, Mapping) and kept.get("type") == part.get("type"):
        return dict(kept)
    return None


def _responses_content(content: Any, role: Any) -> Any:
    if not isinstance(content, list):
        return content
    text_type = "output_text" if role == "assistant" else "input_text"
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"type": text_type, "text": part.get("text")})
        elif kind == "image_url":
            parts.append({"type": "input_image", "image_url": (part.get("image_url") or {}).get("url")})
        else:
            parts.append(_kept_item(part) or part)
    return parts


def _responses_response_in(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Responses call's answer (`id`, `status`, `output` items) from its output message."""
    output = _json_list(attrs.get(GEN_AI_OUTPUT_MESSAGES))
    if output is None:
        return None
    unfinished = _unfinished_reason(str(attrs.get(LITELENS_STATUS) or "ok"))
    response: dict[str, Any] = {}
    response_id = _str(attrs.get(GEN_AI_RESPONSE_ID))
    if response_id:
        response["id"] = response_id
    items: list[Any] = []
    for message in output:
        if not isinstance(message, Mapping):
            continue
        reason = _output_reason(message, unfinished)
        if reason and "status" not in response:
            response["status"] = reason
        texts: list[dict[str, Any]] = []
        for part in message.get("parts") or []:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append({"type": "output_text", "text": part.get("content")})
                continue
            if texts:
                items.append({"type": "message", "role": "assistant", "content": texts})
                texts = []
            if kind == "tool_call":
                items.append(
                    {
                        "type": "function_call",
                        "call_id": part.get("id"),
                        "name": part.get("name"),
                        "arguments": part.get("arguments"),
                    }
                )
            elif kind == "reasoning":
                items.append(
                    {"type": "reasoning", "summary": [{"type": "summary_text", "text": part.get("content")}]}
                )
            else:
                items.append(_kept_item(part) or part)
        if texts:
            items.append({"type": "message", "role": "assistant", "content": texts})
    response["output"] = items
    return response


def _messages_in(attrs: Mapping[str, Any]) -> list[Any] | None:
    system = _json_list(attrs.get(GEN_AI_SYSTEM_INSTRUCTIONS))
    messages = _json_list(attrs.get(GEN_AI_INPUT_MESSAGES))
    if messages is not None or system is not None:
        if system and messages and _repeats_instructions(system, messages):
            system = None
        out: list[Any] = [
            {"role": "system", "content": part.get("content") if isinstance(part, Mapping) else part}
            for part in system or []
        ]
        out.extend(from_otel_message(m) for m in messages or [])
        return out
    indexed = _indexed(attrs, GEN_AI_PROMPT_PREFIX)
    if indexed:
        return [_from_flat_message(m) for m in indexed]
    indexed = _indexed(attrs, OI_INPUT_MESSAGES_PREFIX)
    if indexed:
        return [_from_flat_message(m.get("message") or {}) for m in indexed]
    prompt = attrs.get(GEN_AI_PROMPT)
    if prompt is not None:
        parsed = _json_value(prompt)
        return parsed if isinstance(parsed, list) else [{"role": "user", "content": parsed}]
    return None


def _repeats_instructions(system: list[Any], messages: list[Any]) -> bool:
    """True when the input messages begin with the system instructions' own texts.

    OpenLIT sends the system message twice: in the input messages, where LiteLLM had it, and again as
    the system instructions; taken as both, the stored request had it twice. (Our own spans move the
    leading system messages out of the input messages, so theirs never begin with them.)
    """
    texts = [part.get("content") if isinstance(part, Mapping) else part for part in system]
    leading = []
    for message in messages[: len(texts)]:
        if not isinstance(message, Mapping) or message.get("role") != "system":
            return False
        leading.append(from_otel_message(message).get("content"))
    return leading == texts


def _choices_in(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    output = _json_list(attrs.get(GEN_AI_OUTPUT_MESSAGES))
    if output is not None:
        # The reason we write for an answer the model did not finish is the call's status, not the model's.
        unfinished = _unfinished_reason(str(attrs.get(LITELENS_STATUS) or "ok"))
        choices = [
            {
                "index": i,
                "finish_reason": _output_reason(m, unfinished),
                "message": from_otel_message(m),
            }
            for i, m in enumerate(output)
        ]
        # LiteLLM's otel callback leaves a tool-calling answer's parts empty and says the call in its
        # older indexed attributes (`gen_ai.completion.0.function_call.*`) only.
        for i, flat in enumerate(_indexed(attrs, GEN_AI_COMPLETION_PREFIX)):
            calls = _from_flat_message(flat).get("tool_calls")
            message = choices[i]["message"] if i < len(choices) else None
            if calls and isinstance(message, dict) and "tool_calls" not in message:
                message["tool_calls"] = calls
        return choices
    indexed = _indexed(attrs, GEN_AI_COMPLETION_PREFIX)
    if indexed:
        return [
            {
                "index": i,
                "finish_reason": m.get("finish_reason"),
                "message": _from_flat_message({"role": "assistant", **m}),
            }
            for i, m in enumerate(indexed)
        ]
    indexed = _indexed(attrs, OI_OUTPUT_MESSAGES_PREFIX)
    if indexed:
        reason = _str(attrs.get(OI_FINISH_REASON))
        return [
            {
                "index": i,
                "finish_reason": reason if i == 0 else None,
                "message": _from_flat_message(m.get("message") or {}),
            }
            for i, m in enumerate(indexed)
        ]
    completion = attrs.get(GEN_AI_COMPLETION)
    if completion is not None:
        return [
            {"index": 0, "finish_reason": None, "message": {"role": "assistant", "content": _str(completion)}}
        ]
    return None


def _output_reason(message: Any, unfinished: str) -> str | None:
    reason = _str(message.get("finish_reason")) if isinstance(message, Mapping) else None
    return None if reason is None or reason == unfinished else _chat_reason(reason)


def _chat_reason(reason: str) -> str:
    """A finish reason as the chat API and the core record say it: the conventions' `tool_call` (which
    OpenLLMetry sends) is OpenAI's `tool_calls`, so one filter finds the tool-calling answers of every road."""
    return "tool_calls" if reason == "tool_call" else reason


def _tools_in(attrs: Mapping[str, Any]) -> list[Any] | None:
    definitions = _json_list(attrs.get(GEN_AI_TOOL_DEFINITIONS))
    if definitions is not None:
        return [_from_otel_tool(t) for t in definitions]
    tools = []
    for item in _indexed(attrs, OI_TOOLS_PREFIX):
        schema = _json_value((item.get("tool") or {}).get("json_schema"))
        if schema is not None:
            tools.append(schema)
    for function in _indexed(attrs, LLM_REQUEST_FUNCTIONS_PREFIX):
        if function.get("parameters") is not None:
            function = {**function, "parameters": _json_value(function["parameters"])}
        tools.append({"type": "function", "function": function})
    return tools or None


def from_otel_message(message: Any) -> dict[str, Any]:
    """A GenAI-conventions message as an OpenAI-style chat message (the inverse of `to_otel_message`)."""
    if not isinstance(message, Mapping):
        return {"role": "user", "content": message}
    role = str(message.get("role") or "user")
    texts: list[Any] = []
    others: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    out: dict[str, Any] = {"role": role}
    for part in message.get("parts") or []:
        if not isinstance(part, Mapping):
            texts.append(part)
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(part.get("content"))
            others.append({"type": "text", "text": part.get("content")})
        elif kind == "tool_call":
            arguments = part.get("arguments")
            if arguments is not None and not isinstance(arguments, str):
                # The conventions let arguments be an object (OpenLLMetry sends one); the chat API, the
                # core record and whatever reads a stored call take them as JSON text.
                arguments = json.dumps(arguments, ensure_ascii=False)
            tool_calls.append(
                {
                    "id": part.get("id"),
                    "type": "function",
                    "function": {"name": part.get("name"), "arguments": arguments},
                }
            )
        elif kind == "tool_call_response":
            out["tool_call_id"] = part.get("id")
            texts.append(part.get("response"))
        elif kind == "uri":
            others.append({"type": "image_url", "image_url": {"url": part.get("uri")}})
        else:
            others.append(dict(part))
    if len(others) > len(texts):
        out["content"] = others
    elif len(texts) == 1:
        out["content"] = texts[0]
    elif texts:
        out["content"] = others
    if tool_calls:
        out["tool_calls"] = tool_calls
    if message.get("name"):
        out["name"] = message["name"]
    return out


def _from_otel_tool(tool: Any) -> Any:
    if isinstance(tool, Mapping) and "name" in tool and "function" not in tool:
        rest = {k: v for k, v in tool.items() if k != "type"}
        return {"type": tool.get("type", "function"), "function": rest}
    return tool


def _from_flat_message(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A message from indexed attributes (`role`, `content`, `tool_calls.N.*`, `function_call.*`)."""
    out: dict[str, Any] = {"role": _str(flat.get("role")) or "user"}
    if flat.get("content") is not None:
        out["content"] = flat["content"]
    else:
        parts = [_from_flat_part(c) for c in _in_index_order(flat.get("contents"))]
        if parts:
            out["content"] = parts
    calls = []
    for raw in _in_index_order(flat.get("tool_calls")):
        call: Mapping[str, Any] = raw.get("tool_call", raw) if isinstance(raw, Mapping) else {}
        nested = call.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
        calls.append(
            {
                "id": call.get("id"),
                "type": "function",
                "function": {"name": function.get("name"), "arguments": function.get("arguments")},
            }
        )
    function_call = flat.get("function_call")
    if isinstance(function_call, Mapping):
        calls.append({"id": None, "type": "function", "function": dict(function_call)})
    if calls:
        out["tool_calls"] = calls
    return out


def _from_flat_part(item: Any) -> dict[str, Any]:
    """An OpenAI-style content part from OpenInference's `message.contents.N.message_content.*`."""
    part = item.get("message_content", item) if isinstance(item, Mapping) else {}
    image = part.get("image")
    if isinstance(image, Mapping):
        url = (image.get("image") or {}).get("url") if isinstance(image.get("image"), Mapping) else None
        return {"type": "image_url", "image_url": {"url": url or image.get("url")}}
    if "text" in part or part.get("type") == "text":
        return {"type": "text", "text": part.get("text")}
    return dict(part)


def _in_index_order(node: Any) -> list[Any]:
    """The values of a nested `{"0": ..., "1": ..., "10": ...}` level of indexed attributes, by number."""
    if not isinstance(node, dict):
        return []
    return [node[key] for key in sorted((k for k in node if k.isdigit()), key=int)]


def _indexed(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """`prefix.0.a.b`, `prefix.1.a` ... as a list of nested dicts, in index order."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit() or not rest or len(index) > 6:
            continue
        node = found.setdefault(int(index), {})
        *path, leaf = rest.split(".")
        for step in path:
            child = node.get(step)
            if not isinstance(child, dict):
                child = node[step] = {}
            node = child
        node[leaf] = value
    return [found[i] for i in sorted(found)]


def _finish_reasons_from_content(response: Mapping[str, Any] | None, attrs: Mapping[str, Any]) -> list[str]:
    if response and isinstance(response.get("choices"), list):
        reasons = [
            str(c["finish_reason"])
            for c in response["choices"]
            if isinstance(c, Mapping) and c.get("finish_reason")
        ]
        if reasons:
            return reasons
    reason = attrs.get(OI_FINISH_REASON)
    return [str(reason)] if reason else []


# --------------------------------------------------------------------------------------------------
# Lenient readers: peers send numbers as strings, booleans as "True", JSON as text.


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    number = _num(value)
    return int(number) if number is not None and number.is_integer() else None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _first_str(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = _str(attrs.get(key))
        if value is not None:
            return value
    return None


def _first_num(attrs: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = _num(attrs.get(key))
        if value is not None:
            return value
    return None


def _first_int(attrs: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = _int(attrs.get(key))
        if value is not None:
            return value
    return None


def _first_bool(attrs: Mapping[str, Any], *keys: str) -> bool | None:
    for key in keys:
        value = _bool(attrs.get(key))
        if value is not None:
            return value
    return None


def _json_value(value: Any) -> Any:
    """Parsed JSON when `value` is JSON text, else `value` unchanged (peers send both)."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _json_object(value: Any) -> dict[str, Any] | None:
    parsed = _json_value(value)
    return dict(parsed) if isinstance(parsed, Mapping) else None


def _json_list(value: Any) -> list[Any] | None:
    parsed = _json_value(value)
    return parsed if isinstance(parsed, list) else None
