"""The call record: one JSON object per LLM call, the shape every part of litelens agrees on.

A record is a plain `dict` (cheap to build, cheap to encode, easy for user processors to change) whose
keys are documented by `docs/record-schema.json`. This module builds records from LiteLLM's
`standard_logging_object`, strips credentials from them (by the rules of `litelens.credentials`), caps
their size and encodes them.

Nothing here imports anything outside the standard library: the collector and the OpenTelemetry layer
use these functions too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from litelens.config import Limits

# The credential rules (`litelens.credentials`) used to live in this module: their names stay reachable
# from here (`X as X`: re-exported) for code written against it, and for `bench/pipeline.py --before` an
# older ref.
from litelens.credentials import REDACTED as REDACTED
from litelens.credentials import SECRET_TEXT as SECRET_TEXT
from litelens.credentials import has_secret as has_secret
from litelens.credentials import is_secret_key as is_secret_key
from litelens.credentials import masked as masked
from litelens.credentials import scrub_text, scrub_url, scrub_value
from litelens.credentials import secret_replacement as secret_replacement
from litelens.credentials import sub_secrets as sub_secrets

SCHEMA = "litelens.call/1"

Record = dict[str, Any]

# LiteLLM's call_type names -> the record's call types. The async variants map to the same type;
# `is_async` keeps the difference.
_CALL_TYPES = {
    "completion": "chat",
    "acompletion": "chat",
    "anthropic_messages": "chat",
    "text_completion": "text_completion",
    "atext_completion": "text_completion",
    "embedding": "embedding",
    "aembedding": "embedding",
    "image_generation": "image_generation",
    "aimage_generation": "image_generation",
    "image_edit": "image_edit",
    "aimage_edit": "image_edit",
    "responses": "responses",
    "aresponses": "responses",
    "rerank": "rerank",
    "arerank": "rerank",
    "transcription": "transcription",
    "atranscription": "transcription",
    "speech": "speech",
    "aspeech": "speech",
    "moderation": "moderation",
    "amoderation": "moderation",
}

CALL_TYPES = tuple(sorted(set(_CALL_TYPES.values())))
STATUSES = ("ok", "error", "cancelled")


def call_type_of(litellm_call_type: str | None) -> tuple[str, bool]:
    """(record call type, is_async) for one of LiteLLM's call_type strings."""
    raw = litellm_call_type if isinstance(litellm_call_type, str) and litellm_call_type else "unknown"
    known = _CALL_TYPES.get(raw)
    if known is not None:
        return known, raw.startswith("a") and raw not in ("anthropic_messages",)
    return raw, raw.startswith("a") and raw[1:] in _CALL_TYPES


# `call_type_of` of each known name, looked up once per record instead of worked out.
_CALL_TYPE_OF = {name: call_type_of(name) for name in _CALL_TYPES}

# A LiteLLM proxy's health check modes (`model_info.mode`) -> the LiteLLM call each one makes.
_HEALTH_CHECK_CALLS = {
    "chat": "acompletion",
    "completion": "atext_completion",
    "embedding": "aembedding",
    "image_generation": "aimage_generation",
    "image_edit": "aimage_edit",
    "audio_speech": "aspeech",
    "audio_transcription": "atranscription",
    "rerank": "arerank",
    "responses": "aresponses",
    "anthropic_messages": "anthropic_messages",
}


def health_check_call_type(mode: Any, response: Any) -> str | None:
    """The LiteLLM call type a proxy's health check made, which its payload does not say.

    LiteLLM 1.110 builds every health check's logging object as an `acompletion`, then calls the
    deployment's own endpoint with it (`aembedding` for an embedding model...), so each check is
    reported as a chat completion. The check's mode is the deployment's `model_info.mode` when the
    config gives one (`mode`); else LiteLLM took it from its model map, and the answer's shape tells it.
    None when neither does (a chat check, or a failed one of an undeclared mode).
    """
    if isinstance(mode, str) and mode:
        return _HEALTH_CHECK_CALLS.get(mode, mode)
    if not isinstance(response, dict):
        return None
    kind = response.get("object")
    if kind == "text_completion":
        return "atext_completion"
    if kind == "response":
        return "aresponses"
    if kind == "binary":  # LiteLLM's summary of a speech answer's audio
        return "aspeech"
    if isinstance(response.get("results"), list):
        return "arerank"
    data = response.get("data")
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(first, dict):
        if "embedding" in first:
            return "aembedding"
        if "b64_json" in first or "url" in first:
            return "aimage_generation"
    if isinstance(response.get("text"), str) and "choices" not in response:
        return "atranscription"
    return None


# `\Z`, not `$`: `$` also matches before a final newline, and an id ending in one would pass as hex.
_HEX32 = re.compile(r"[0-9a-f]{32}\Z")
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")


def trace_id_of(value: str | None) -> str | None:
    """A W3C trace id (32 hex) for one of LiteLLM's trace ids.

    LiteLLM's ids are UUIDs unless the caller named a session or trace (`"chat-42"`); a UUID keeps its
    digits, any other string is hashed, so calls that share a name share a trace.
    """
    if not value:
        return None
    compact = value.replace("-", "").lower()
    if _HEX32.match(compact) and compact != "0" * 32:
        return compact
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def span_id_of(call_id: str) -> str:
    """A span id (16 hex) derived from the call id, so both layers name the same call the same way."""
    compact = call_id.replace("-", "").lower()
    if _HEX32.match(compact) and compact[16:] != "0" * 16:
        return compact[16:]
    return hashlib.sha256(call_id.encode("utf-8", "replace")).hexdigest()[:16]


def is_hex_id(value: object, length: int) -> bool:
    return isinstance(value, str) and bool((_HEX32 if length == 32 else _HEX16).match(value))


def otel_link_of(meta: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """(trace id, span id, parent span id) of the OTel span that `litelens.otel` opened for this call.

    When both layers record a call, the server merges the two records by call id; without this link the
    core's ids (derived from LiteLLM's ids) and the span's (the application's trace context) would
    disagree, and whichever arrived last would decide where the call sits in the trace.
    """
    link = meta.get(OTEL_LINK_KEY)
    if not isinstance(link, Mapping):
        return None
    trace_id, span_id, parent = link.get("trace_id"), link.get("span_id"), link.get("parent_span_id")
    if not (is_hex_id(trace_id, 32) and is_hex_id(span_id, 16)):
        return None
    return str(trace_id), str(span_id), str(parent) if is_hex_id(parent, 16) else None


# --------------------------------------------------------------------------------------------------
# Building a record from LiteLLM's standard logging payload

# Keys LiteLLM itself puts into `litellm_params["metadata"]`: they are internals, not the user's metadata.
_INTERNAL_METADATA = frozenset(
    {
        "hidden_params",
        "llm_api_timing_windows",
        "model_info",
        "model_group",
        "model_group_size",
        "model_group_alias",
        "deployment",
        "api_base",
        "caching_groups",
        "previous_models",
        "headers",
        "endpoint",
        "proxy_server_request",
        "global_max_parallel_requests",
        "requester_metadata",
        "requester_ip_address",
        "requester_custom_headers",
        "user_agent",
        "applied_guardrails",
        "guardrails",
        "mcp_tool_call_metadata",
        "vector_store_request_metadata",
        "usage_object",
        "spend_logs_metadata",
        "cold_storage_object_key",
        "prompt_management_metadata",
        "routing_decision",
        "kubernetes_pod_routing",
        "user_api_end_user_max_budget",
        "used_client_oauth_token",
        "litellm_parent_otel_span",
        "tags",
        "trace_id",
        "session_id",
        "parent_span_id",
        "user_id",
        "end_user",
        "trace_user_id",
    }
)
_ROUTER_METADATA = frozenset(
    {
        "original_model_group",
        "attempted_fallbacks",
        "attempted_retries",
        "max_retries",
        "request_retry_count",
        "deployment_model_name",
    }
)
_INTERNAL_AND_ROUTER_METADATA = _INTERNAL_METADATA | _ROUTER_METADATA
_INTERNAL_PREFIXES = ("user_api_key", "litellm_", "team_", "organization_", "litelens_", "_")

# Metadata key under which `litelens.otel` hands its LLM span's ids to the core callback, so the call
# record from either layer names the same trace, span and parent (see `otel_link_of`).
OTEL_LINK_KEY = "litelens_span"
# Attribute, true on the core callback's class, that says a LiteLLM logger reads the link above:
# `litelens.otel` copies a call's metadata to add the link only while such a logger is registered.
OTEL_LINK_READER = "litelens_reads_otel_link"

# Keys of the proxy's key/team/user metadata -> record field under "proxy".
_PROXY_FIELDS = {
    "user_api_key_alias": "key_alias",
    "user_api_key_hash": "key_hash",
    "user_api_key_team_id": "team_id",
    "user_api_key_team_alias": "team_alias",
    "user_api_key_user_id": "user_id",
    "user_api_key_user_email": "user_email",
    "user_api_key_org_id": "org_id",
    "user_api_key_org_alias": "org_alias",
    "user_api_key_project_id": "project_id",
    "user_api_key_project_alias": "project_alias",
    "user_api_key_end_user_id": "end_user_id",
    "user_api_key_request_route": "request_route",
    "requester_ip_address": "requester_ip",
}


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        return None


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def retries_before(exc: BaseException | None, metadata: Any) -> int | None:
    """How many retries came before the call that raised `exc`, or None when nothing says.

    A Router sets `num_retries` only on the exception it finally gives its caller, after the attempts
    (their records and spans) have ended; each attempt's own exception has none. What an attempt knows is
    the Router's count in the metadata it passes on (`attempted_retries`, 0 for the first try of a model
    group; LiteLLM 1.110). LiteLLM 1.80 keeps no such count: its `previous_models` is one list for the
    whole Router, the last four failures of any request, so counting it gave a request's second attempt
    the failures of the requests before it (0, 4, 4 for 0, 1, 2)."""
    retries = getattr(exc, "num_retries", None)
    if type(retries) is int:
        return retries
    if not isinstance(metadata, Mapping) or "model_group" not in metadata:
        return None
    attempted = metadata.get("attempted_retries")
    return attempted if type(attempted) is int else None


def user_metadata_of(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's own `metadata=` entries, without the ones LiteLLM adds for itself."""
    if not metadata:
        return {}
    # A Router stamps its retry and fallback bookkeeping on each attempt's metadata, next to the
    # `model_group` it routed to; those names are common words, so they are dropped only then.
    internal = _INTERNAL_AND_ROUTER_METADATA if "model_group" in metadata else _INTERNAL_METADATA
    picked = {}  # a loop, not a comprehension: on the callback's hot path, and a comprehension is a call
    for k, v in metadata.items():
        if isinstance(k, str) and k not in internal and not k.startswith(_INTERNAL_PREFIXES):
            picked[k] = v
    return picked


def usage_of(slo: Mapping[str, Any]) -> dict[str, int | None]:
    """Token usage, with the cached, cache-creation and reasoning details LiteLLM keeps in the response."""
    return _usage_of(slo.get, slo.get("response"))


def _getter(obj: Any) -> Callable[[str], Any]:
    """`_get` bound to one object: its dict's own `get`, or attribute reads (a pydantic `Usage`)."""
    if isinstance(obj, dict):
        return obj.get
    return lambda key: getattr(obj, key, None)


def _usage_of(get: Callable[[str], Any], response: Any) -> dict[str, int | None]:
    """`usage_of` for the payload whose `get` and `"response"` the caller has already read.

    Counts are ints in LiteLLM's payloads, so an int (not a bool) is taken as it is and only anything
    else goes through `_int`, which would answer the same for an int."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if usage is None:
        hidden = get("hidden_params")
        metadata = get("metadata")
        usage = (hidden.get("usage_object") if isinstance(hidden, dict) else None) or (
            metadata.get("usage_object") if isinstance(metadata, dict) else None
        )
    value = get("prompt_tokens")
    input_tokens = (value if type(value) is int else _int(value)) or 0
    value = get("completion_tokens")
    output_tokens = (value if type(value) is int else _int(value)) or 0
    value = get("total_tokens")
    total = (value if type(value) is int else _int(value)) or (input_tokens + output_tokens)
    cached = cache_creation = reasoning = None
    if usage:
        usage_get = usage.get if type(usage) is dict else _getter(usage)
        # Chat completions name them *_tokens_details; the Responses API input_/output_tokens_details.
        prompt_details = usage_get("prompt_tokens_details") or usage_get("input_tokens_details")
        completion_details = usage_get("completion_tokens_details") or usage_get("output_tokens_details")
        prompt_get = None
        if prompt_details:
            prompt_get = prompt_details.get if type(prompt_details) is dict else _getter(prompt_details)
        if prompt_get is not None:
            value = prompt_get("cached_tokens")
            cached = value if type(value) is int else _int(value)
        if cached is None:
            value = usage_get("cache_read_input_tokens")
            cached = value if type(value) is int else _int(value)
        value = usage_get("cache_creation_input_tokens")
        cache_creation = value if type(value) is int else _int(value)
        if cache_creation is None and prompt_get is not None:
            value = prompt_get("cache_creation_tokens")
            cache_creation = value if type(value) is int else _int(value)
        if completion_details:
            if type(completion_details) is dict:
                value = completion_details.get("reasoning_tokens")
            else:
                value = _getter(completion_details)("reasoning_tokens")
            reasoning = value if type(value) is int else _int(value)
        if not input_tokens and not output_tokens:
            input_tokens = _int(usage_get("prompt_tokens") or usage_get("input_tokens")) or 0
            output_tokens = _int(usage_get("completion_tokens") or usage_get("output_tokens")) or 0
            total = _int(usage_get("total_tokens")) or input_tokens + output_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "cached_input_tokens": cached,
        "cache_creation_input_tokens": cache_creation,
        "reasoning_tokens": reasoning,
    }


def _response_content(call_type: str, response: Any) -> dict[str, Any] | None:
    """What the model answered, without the bulk that is not content (vectors, image bytes, usage)."""
    if not isinstance(response, dict) or not response:
        return None
    out: dict[str, Any] = {}
    response_id = response.get("id")
    if response_id:
        out["id"] = response_id
    choices = response.get("choices")
    if isinstance(choices, list):
        kept = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            item: dict[str, Any] = {
                "index": choice.get("index"),
                "finish_reason": choice.get("finish_reason"),
            }
            message = choice.get("message")
            if call_type == "text_completion" and "text" not in choice and isinstance(message, dict):
                # A streamed text completion comes back from LiteLLM in the chat shape: keep the text
                # where the same call, not streamed, has it.
                item["text"] = message.get("content")
            elif isinstance(message, dict):
                kept_message = {}  # a loop, not a comprehension (a call): every chat record comes here
                for k, v in message.items():
                    if v is not None and k != "provider_specific_fields":
                        kept_message[k] = v
                item["message"] = kept_message
            elif "text" in choice:
                item["text"] = choice.get("text")
            kept.append(item)
        out["choices"] = kept
    elif call_type == "embedding":
        data = response.get("data") or []
        first = data[0] if data and isinstance(data[0], dict) else {}
        vector = first.get("embedding") if first else None
        out["embeddings"] = len(data)
        out["dimensions"] = (
            len(vector) if isinstance(vector, (list, str)) and not isinstance(vector, str) else None
        )
    elif call_type in ("image_generation", "image_edit"):
        images = []
        for item in response.get("data") or []:
            if isinstance(item, dict):
                b64 = item.get("b64_json")
                images.append(
                    {
                        "url": scrub_url(item.get("url")) if item.get("url") else None,
                        "b64_json": f"<image: {len(b64)} base64 chars>" if b64 else None,
                        "revised_prompt": item.get("revised_prompt"),
                    }
                )
        out["images"] = images
    elif call_type == "responses":
        out["status"] = response.get("status")
        output = response.get("output")
        if output is not None:
            out["output"] = output
    elif call_type == "moderation":
        out["model"] = response.get("model")
        out["results"] = [_moderation_result(r) for r in response.get("results") or () if isinstance(r, dict)]
    elif call_type == "transcription":
        # The transcript and what it says about the audio; segments and words repeat the text with
        # timings, and can outweigh it many times over.
        out.update(
            {k: response.get(k) for k in ("text", "language", "duration") if response.get(k) is not None}
        )
        usage = response.get("usage")
        if "duration" not in out and isinstance(usage, dict) and usage.get("type") == "duration":
            # Only a verbose answer has `duration`; whisper's plain one says it in its usage alone (the
            # seconds it bills, rounded up), which LiteLLM neither counts nor prices.
            seconds = _num(usage.get("seconds"))
            if seconds is not None:
                out["duration"] = seconds
    elif call_type == "speech":
        out.update(audio_summary(response.get("content_type"), response.get("num_bytes")))
    elif call_type == "rerank":
        out["results"] = response.get("results")
    else:
        out.update({k: v for k, v in response.items() if k not in ("usage", "data", "_hidden_params")})
    return out


def _moderation_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """One moderation result: whether it was flagged, the flagged categories by the provider's names,
    and every category's score. LiteLLM adds a snake_case twin of each category whose name has a "/"
    or a "-" (`self_harm` beside `self-harm`): the twins are left out, so each category counts once."""
    categories = result.get("categories")
    scores = result.get("category_scores")
    names = list(categories) if isinstance(categories, Mapping) else []
    twins = {n.replace("/", "_").replace("-", "_") for n in names if "/" in n or "-" in n}
    kept = [n for n in names if n not in twins]
    out: dict[str, Any] = {
        "flagged": result.get("flagged"),
        "categories": [n for n in kept if isinstance(categories, Mapping) and categories.get(n) is True],
    }
    if isinstance(scores, Mapping):
        twins_of_scores = {n.replace("/", "_").replace("-", "_") for n in scores if "/" in n or "-" in n}
        out["category_scores"] = {n: v for n, v in scores.items() if n not in twins_of_scores}
    return out


def audio_summary(content_type: Any, size: Any) -> dict[str, Any]:
    """What a record keeps of generated audio: its format and size, never the bytes."""
    return {"content_type": _opt_str(content_type), "size_bytes": _int(size)}


def speech_audio_of(response: Any) -> dict[str, Any] | None:
    """`audio_summary` of a speech call's answer (LiteLLM's `HttpxBinaryResponseContent`: the bytes
    in `content`, the HTTP response in `response`); None for anything else."""
    content = getattr(response, "content", None)
    if not isinstance(content, (bytes, bytearray)):
        return None
    headers = getattr(getattr(response, "response", None), "headers", None)
    return audio_summary(headers.get("content-type") if headers is not None else None, len(content))


def audio_file_of(file: Any) -> dict[str, Any] | None:
    """The name and size of an audio upload as LiteLLM takes it -- a `(name, bytes[, type])` tuple,
    bytes, an open file or a path -- never its bytes. Reads no data: a file's size comes from its
    descriptor or buffer, a path's from the file system. None for anything else."""
    name: Any = None
    content_type: Any = None
    data: Any = file
    if isinstance(file, tuple) and file:
        name = file[0]
        data = file[1] if len(file) > 1 else None
        content_type = file[2] if len(file) > 2 else None
    size: int | None = None
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = len(data)
    elif isinstance(data, (str, os.PathLike)):
        name = name or os.path.basename(os.fspath(data))
        try:
            size = os.path.getsize(data)
        except (OSError, ValueError):
            size = None
    elif data is not None:
        name = name or getattr(data, "name", None)
        try:
            size = os.fstat(data.fileno()).st_size
        except Exception:
            try:
                size = data.getbuffer().nbytes
            except Exception:
                size = None
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if size is None and isinstance(name, str) and os.path.isabs(name):
        # A file the caller has closed since (LiteLLM logs a sync call after it returned): its path.
        try:
            size = os.path.getsize(name)
        except (OSError, ValueError):
            size = None
    name = os.path.basename(name) if isinstance(name, str) else None
    if name is None and size is None:
        return None
    out: dict[str, Any] = {"name": name, "size_bytes": size}
    if isinstance(content_type, str) and content_type:
        out["content_type"] = content_type
    return out


def stream_so_far(chunks: Iterable[Any]) -> dict[str, Any] | None:
    """The answer of a stream that broke mid-way, in the payload's response shape, from the chunks
    LiteLLM received before the break: each choice's text so far, with no finish reason."""
    texts: dict[int, list[str]] = {}
    response_id = None
    for chunk in chunks:
        response_id = response_id or getattr(chunk, "id", None)
        for choice in getattr(chunk, "choices", None) or ():
            content = getattr(getattr(choice, "delta", None), "content", None)
            if isinstance(content, str):
                texts.setdefault(getattr(choice, "index", None) or 0, []).append(content)
    if not texts:
        return None
    choices = [
        {"index": index, "finish_reason": None, "message": {"role": "assistant", "content": "".join(parts)}}
        for index, parts in sorted(texts.items())
    ]
    return {"id": response_id, "choices": choices}


def _finish_reasons(response: Any) -> list[str]:
    reasons: list[str] = []
    if isinstance(response, dict):
        for choice in response.get("choices") or []:
            reason = choice.get("finish_reason") if type(choice) is dict else _get(choice, "finish_reason")
            if reason:
                reasons.append(reason if type(reason) is str else str(reason))
        if not reasons and response.get("status") in ("completed", "incomplete"):
            reasons.append(str(response.get("status")))
    return reasons


def _request_content(
    call_type: str,
    slo: Mapping[str, Any],
    params: Mapping[str, Any],
    text_input: bool,
    audio_file: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    request: dict[str, Any] = {}
    messages = slo.get("messages")
    if call_type == "rerank":
        # LiteLLM's payload wraps the query as a user message and puts query and documents among the
        # parameters: the record keeps them as the call's input, and out of its parameters.
        query = params.get("query", _unwrapped(call_type, messages))
        request["input"] = {"query": query, "documents": params.get("documents")}
    elif call_type == "transcription":
        # The payload's "message" is a hash of the audio: the record names the file instead.
        request["input"] = {"file": dict(audio_file) if audio_file else None}
        prompt = params.get("prompt")
        if isinstance(prompt, str) and prompt:
            request["input"]["prompt"] = prompt
    elif call_type in _INPUT_CALLS:
        request["input"] = _unwrapped(call_type, messages, text_input)
    elif call_type == "chat" or isinstance(messages, list):
        request["messages"] = messages
    else:
        request["input"] = messages
    if not _CONTENT_PARAMETER_SET.isdisjoint(params):  # most calls have none of them
        for key in _CONTENT_PARAMETERS:
            if params.get(key):
                request[key] = params[key]
    return request


# Calls whose API takes no messages, though LiteLLM's payload wraps their content as user messages: an
# embedding's `input`, a text completion's or an image's `prompt` (one message per item of a list), a
# Responses call's `input` string, the text a moderation checks or a speech call speaks. The record keeps
# what the provider was sent, as `input`, as the OTel layer does (and the dashboard rebuilds the call from).
_INPUT_CALLS = ("embedding", "text_completion", "image_generation", "responses", "moderation", "speech")


def _unwrapped(call_type: str, messages: Any, text_input: bool = False) -> Any:
    """The input or prompt that LiteLLM wrapped as `[{"role": "user", "content": ...}, ...]`: a list for
    an embedding (the string, when `text_input` says the caller gave one), the one prompt (or the list
    of them) for the others. A Responses input that was a list of items already is kept as it is; only
    a string was wrapped. LiteLLM's payload and kwargs give a Responses input of one user message with
    text content exactly as they give a string: that one is taken for the string, the usual call."""
    if not isinstance(messages, list) or not all(
        type(m) is dict and m.get("role") == "user" and m.keys() <= {"role", "content"} for m in messages
    ):
        return messages  # not LiteLLM's wrapping: kept as it came
    contents = [m.get("content") for m in messages]
    if call_type == "responses":
        return contents[0] if len(contents) == 1 and isinstance(contents[0], str) else messages
    return contents[0] if (call_type != "embedding" or text_input) and len(contents) == 1 else contents


# Parameters that are content, kept under `request` beside the messages (and so left out when content
# is not captured, or dropped): tool definitions, the legacy `functions` (tools by their older name),
# a predicted output's text (`prediction={"type": "content", "content": ...}`), and the Responses API's
# system prompt (`instructions=`, where the OTel layer puts it too).
_CONTENT_PARAMETERS = ("tools", "functions", "prediction", "instructions")
_CONTENT_PARAMETER_SET = frozenset(_CONTENT_PARAMETERS)


# What LiteLLM's payload (or the request it sent) lists among a call's parameters and is not one: a
# rerank's query and documents (content), a transcription's prompt (content), its file (the audio) and
# its model (the record's request_model), a speech call's model and input (its content).
_NOT_PARAMETERS_OF_CALL = {
    "rerank": ("query", "documents"),
    "transcription": ("prompt", "file", "model"),
    "speech": ("model", "input"),
}


# The names above, with `user` and `metadata`, in one set per call type: one look-up for a parameter.
_NOT_PARAMETERS = frozenset((*_CONTENT_PARAMETERS, "user", "metadata"))
_NOT_PARAMETERS_BY_CALL = {
    call: _NOT_PARAMETERS.union(names) for call, names in _NOT_PARAMETERS_OF_CALL.items()
}


def _parameters(params: Mapping[str, Any], call_type: str = "") -> dict[str, Any]:
    # Content goes under request (above); `user` is the end user, kept on its own. `extra_headers`,
    # `extra_body` and `extra_query` are transport, not parameters (the headers may hold credentials).
    excluded = _NOT_PARAMETERS_BY_CALL.get(call_type, _NOT_PARAMETERS)
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        if type(k) is str:
            if k in excluded or k.startswith("extra_"):
                continue
        elif (  # a key that is no str: compared name by name, as ever (a set would hash it first)
            k in _CONTENT_PARAMETERS
            or k in _NOT_PARAMETERS_OF_CALL.get(call_type, ())
            or k in ("user", "metadata")
            or (isinstance(k, str) and k.startswith("extra_"))
        ):
            continue
        out[k] = v
    return out


# Calls whose parameters LiteLLM's payload gives only in part: an image's size and quality (which set
# its price) are missing, and LiteLLM 1.80 leaves out a Responses call's max_output_tokens and all of a
# speech call's (its speed, its audio format); no version's has a speech call's voice, nor any of a
# transcription's (its language, its response format). What it sent the provider fills the gaps.
_SPARSE_PARAMETER_CALLS = ("image_generation", "responses", "speech", "transcription")


def _parameters_sent(call_type: str, slo: Mapping[str, Any], sent: Any) -> Mapping[str, Any]:
    params = slo.get("model_parameters")
    params = params if isinstance(params, dict) else {}
    if call_type in _SPARSE_PARAMETER_CALLS and isinstance(sent, Mapping) and sent.keys() - params.keys():
        return {**sent, **params}
    return params


# LiteLLM's names for a provider's text-completion route (`text-completion-openai` is taken for
# `openai/gpt-3.5-turbo-instruct`, and for any text completion stream): the provider is the same, as the
# OTel layer says (Codestral's is Mistral's, `mistral_ai` there), so its calls are one population
# whichever route or road they came by.
_PROVIDER_OF_ROUTE = {
    "text-completion-openai": "openai",
    "azure_text": "azure",
    "text-completion-codestral": "mistral",
    "text-completion-inception": "inception",
}


def _provider_of(value: Any) -> str | None:
    name = _opt_str(value)
    return _PROVIDER_OF_ROUTE.get(name, name) if name else None


def _api_base_of(call_type: str, slo: Mapping[str, Any], hidden: Mapping[str, Any]) -> str | None:
    """The base URL the call went to. LiteLLM gives a Responses call's whole URL (`.../v1/responses`):
    its base is the one the caller gave, as for every other call type (and in the OTel layer's record)."""
    base = _opt_str(slo.get("api_base")) or _opt_str(hidden.get("api_base"))
    if base and call_type == "responses":
        path, sep, query = base.partition("?")
        if path.endswith("/responses"):
            base = path[: -len("/responses")] + sep + query
    return base


def without_provider(model: str, provider: Any) -> str:
    """`model` without a leading `<provider>/`, which LiteLLM adds on some routes only."""
    prefix = f"{provider}/" if isinstance(provider, str) and provider else None
    return model[len(prefix) :] if prefix and model.startswith(prefix) and len(model) > len(prefix) else model


def from_standard_logging(
    slo: Mapping[str, Any],
    *,
    call_id: str | None = None,
    user_metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    litellm_trace_id: str | None = None,
    instructions: Any = None,
    sent_parameters: Any = None,
    text_input: bool = False,
    error_status: int | None = None,
    retries: int | None = None,
    exception_type: str | None = None,
    chunk_count: int | None = None,
    partial_response: Mapping[str, Any] | None = None,
    audio_file: Mapping[str, Any] | None = None,
    capture_content: bool = True,
    service: str | None = None,
    environment: str | None = None,
    first_attempt_id: str | None = None,
) -> Record:
    """A call record from LiteLLM's `standard_logging_object` (and a few facts only kwargs hold).

    `user_metadata` is `kwargs["litellm_params"]["metadata"]`: LiteLLM keeps the caller's `metadata=`
    there, not in the payload. `instructions` (a Responses call's system prompt) comes from there too:
    LiteLLM 1.80 left it out of the payload's parameters. `sent_parameters` is what LiteLLM sent the
    provider: `kwargs["optional_params"]`, or the request it logged (see `_parameters_sent`). `text_input` says
    the caller's `kwargs["input"]` was one string (see `_unwrapped`). `partial_response` is what a
    stream that failed mid-way had answered (`stream_so_far`), which its payload leaves out. `audio_file` is
    a transcription's upload as `audio_file_of` summarises it (the payload holds only a hash), or a speech
    call's answer as `audio_summary` does (for releases whose payload has none). Credentials
    are not removed here; `scrub()` does that. `first_attempt_id` names, on a Router's retry or fallback, the call
    id of its request's first attempt.
    """
    return from_payload(
        slo,
        call_id,
        user_metadata,
        session_id,
        litellm_trace_id,
        instructions,
        sent_parameters,
        text_input,
        error_status,
        retries,
        exception_type,
        chunk_count,
        partial_response,
        audio_file,
        capture_content,
        service,
        environment,
        first_attempt_id,
    )


def from_payload(
    slo: Mapping[str, Any],
    call_id: str | None,
    user_metadata: Mapping[str, Any] | None,
    session_id: str | None,
    litellm_trace_id: str | None,
    instructions: Any,
    sent_parameters: Any,
    text_input: bool,
    error_status: int | None,
    retries: int | None,
    exception_type: str | None,
    chunk_count: int | None,
    partial_response: Mapping[str, Any] | None,
    audio_file: Mapping[str, Any] | None,
    capture_content: bool,
    service: str | None,
    environment: str | None,
    first_attempt_id: str | None,
    /,
) -> Record:
    """`from_standard_logging`, its arguments given by position in the same order.

    For the callback's sender thread, which builds a record per LLM call: binding eighteen arguments by
    name costs CPython about a tenth of building the record, by position next to nothing."""
    # The sender thread builds one of these per LLM call, so the common case is kept cheap: each field
    # is read once, `get`s are bound to locals, and a value of the usual type is taken as it is before
    # any helper is called (a call costs more than the rest of a field's work). `_opt_str(v)` is spelled
    # out as `v if v is None else (v or None) if type(v) is str else _opt_str(v)`, which answers the
    # same for every value.
    get = slo.get
    raw_call_type = get("call_type")
    known = _CALL_TYPE_OF.get(raw_call_type) if type(raw_call_type) is str else None
    call_type, is_async = known or call_type_of(raw_call_type)
    if not call_id:
        call_id = _opt_str(get("litellm_call_id")) or _opt_str(get("id")) or ""
    meta = user_metadata or {}
    meta_get = meta.get
    slo_meta = get("metadata") or {}
    if isinstance(slo_meta, dict):
        slo_meta_get = slo_meta.get
        requester = slo_meta_get("requester_metadata")
        on_proxy = bool(slo_meta_get("user_api_key_hash") or slo_meta_get("user_api_key_alias"))
        spend_meta = slo_meta_get("spend_logs_metadata")
    else:
        slo_meta_get = None
        requester = spend_meta = None
        on_proxy = False

    # The caller's metadata: the SDK's metadata= (minus LiteLLM internals) or, on the proxy, the request's
    # alone: the proxy fills the call's own metadata with its bookkeeping (agent ids, caller tags, queue
    # time, its OAuth flag), under names no list of internals can keep up with.
    picked = {} if on_proxy or not meta else user_metadata_of(meta)
    if isinstance(requester, dict):
        picked.update(user_metadata_of(requester))
        for key in ("trace_id", "session_id", "user_id", "tags", "parent_span_id"):
            if key in requester and key not in meta:
                meta = {**meta, key: requester[key]}
        meta_get = meta.get
    if isinstance(spend_meta, dict):
        picked.update(spend_meta)

    v = get("startTime")
    start = (v if type(v) is float else _num(v)) or 0.0
    v = get("endTime")
    end = (v if type(v) is float else _num(v)) or start
    v = get("completionStartTime")
    first = v if type(v) is float else _num(v)
    params = get("model_parameters")
    if type(params) is not dict or call_type in _SPARSE_PARAMETER_CALLS:
        params = _parameters_sent(call_type, slo, sent_parameters)
    # LiteLLM leaves `stream` empty in the payload of a stream that failed (at its start or mid-way);
    # the request's own parameters still say it was one.
    stream = bool(get("stream")) or params.get("stream") is True
    duration_ms = max(0.0, (end - start) * 1000.0)
    failed = get("status") == "failure"
    # A stream that failed before any chunk has the failure's time as completionStartTime; one that broke
    # mid-way has its first chunk's.
    if failed and not chunk_count:
        first = None
    ttft_ms = max(0.0, (first - start) * 1000.0) if stream and first else None

    payload_response = get("response")
    usage = _usage_of(get, payload_response)
    # A stream that broke after chunks came, whose usage nobody gave (no chunk said it, and LiteLLM
    # counted none: a proxy's hook broke it, or a LiteLLM before 1.110): the provider billed tokens that
    # no one counted, so they are not known rather than 0, and nor is their cost.
    usage_unknown = bool(
        failed
        and stream
        and chunk_count
        and not (usage["input_tokens"] or usage["output_tokens"] or usage["total_tokens"])
    )
    if usage_unknown:
        usage = {**usage, "input_tokens": None, "output_tokens": None, "total_tokens": None}
    output_tokens = usage["output_tokens"] or 0
    generation_s = (end - first) if stream and first else (end - start)
    tokens_per_s = round(output_tokens / generation_s, 3) if output_tokens and generation_s > 0 else None

    status = "error" if failed else "ok"
    if failed and exception_type in ("CancelledError", "GeneratorExit", "KeyboardInterrupt"):
        status = "cancelled"
    # The proxy reports a stream its client hung up on as a success, flagged in the call's metadata.
    disconnected = meta_get("client_disconnected") is True
    if disconnected:
        status = "cancelled"

    tags = get("request_tags") or meta_get("tags") or []
    if not isinstance(tags, list):
        tags = [tags]
    # An empty list (the usual) costs no comprehension, which is a call.
    tags = [t if type(t) is str else str(t) for t in tags] if tags or type(tags) is not list else []

    link = otel_link_of(meta) if meta_get(OTEL_LINK_KEY) is not None else None
    v = get("trace_id")
    slo_trace = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    v = meta_get("trace_id")
    trace_source = (
        (v if v is None else (v or None) if type(v) is str else _opt_str(v)) or litellm_trace_id or slo_trace
    )
    session = session_id
    if not session:
        v = meta_get("session_id")
        session = v if v is None else (v or None) if type(v) is str else _opt_str(v)
        if not session:
            v = get("session_id")
            session = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    v = get("end_user")
    end_user = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    if not end_user:
        v = slo_meta_get("user_api_key_end_user_id") if slo_meta_get is not None else None
        end_user = v if v is None else (v or None) if type(v) is str else _opt_str(v)
        if not end_user:
            v = params.get("user")
            end_user = v if v is None else (v or None) if type(v) is str else _opt_str(v)
            if not end_user:
                v = meta_get("end_user")
                end_user = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    v = meta_get("user_id")
    user_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    if not user_id:
        v = slo_meta_get("user_api_key_user_id") if slo_meta_get is not None else None
        user_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    trace_id: str | None
    span_id: str | None
    parent_span_id: str | None
    if link:
        trace_id, span_id, parent_span_id = link
    else:
        trace_id = trace_id_of(trace_source) or trace_id_of(call_id)
        span_id = span_id_of(call_id) if call_id else None
        v = meta_get("parent_span_id")
        parent_span_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    hidden = get("hidden_params")
    if not isinstance(hidden, dict):
        hidden = {}
    response = payload_response or (partial_response if failed else None)
    if isinstance(response, dict):
        v = response.get("model")
        response_model = v if v is None else (v or None) if type(v) is str else _opt_str(v)
        v = response.get("id")
        response_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    else:
        response_model = response_id = None

    raw_provider = get("custom_llm_provider")
    provider: str | None
    if type(raw_provider) is str and raw_provider:
        provider = _PROVIDER_OF_ROUTE.get(raw_provider, raw_provider)
    else:
        provider = _provider_of(raw_provider)
    # The requested model; for a plain SDK call without the provider prefix, as LiteLLM reports it
    # after splitting the prefix off. A cache hit is reported before that split ("openai/gpt-4o-mini"
    # where the call that filled the cache said "gpt-4o-mini"): split it the same way. An SDK Router's
    # deployment is split too: its "openai/gpt-4o-mini" is the model a plain call names "gpt-4o-mini",
    # and the OTel layer's span of the same call said so (the record the server merged from both took
    # whichever came last). The proxy's calls keep the deployment's name as LiteLLM gives it.
    v = get("model")
    request_model = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    if (
        request_model is not None
        and not on_proxy
        and isinstance(raw_provider, str)
        and raw_provider
        and request_model.startswith(raw_provider)  # else there is no prefix to lose: no call
    ):
        request_model = without_provider(request_model, raw_provider)
    v = get("api_base")
    api_base = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    if not api_base or call_type == "responses":
        api_base = _api_base_of(call_type, slo, hidden)
    v = get("model_group")
    model_group = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    v = get("model_id")
    deployment_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    if not deployment_id:
        v = hidden.get("model_id")
        deployment_id = v if v is None else (v or None) if type(v) is str else _opt_str(v)
    # The call's cost in USD; None when LiteLLM could not price it (a model missing from its price map),
    # for which its payload says 0.0 and gives the reason beside it: unknown is not free.
    v = get("response_cost")
    cost = v if type(v) is float else _num(v)
    if not cost and (usage_unknown or get("response_cost_failure_debug_info")):
        cost = None
    cache_hit = get("cache_hit")

    record: Record = {
        "schema": SCHEMA,
        "call_id": call_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "litellm_trace_id": slo_trace,
        "session_id": session,
        "end_user": end_user,
        "user_id": user_id,
        "tags": tags,
        "metadata": picked,
        "service": service,
        "environment": environment,
        "call_type": call_type,
        "litellm_call_type": raw_call_type,
        "is_async": is_async,
        "stream": stream,
        "request_model": request_model,
        "response_model": response_model,
        "provider": provider,
        "api_base": api_base,
        "model_group": model_group,
        "deployment_id": deployment_id,
        "start_time": start,
        "end_time": end,
        "duration_ms": round(duration_ms, 3),
        "ttft_ms": round(ttft_ms, 3) if ttft_ms is not None else None,
        "output_tokens_per_s": tokens_per_s,
        "chunk_count": chunk_count if stream else None,
        "usage": usage,
        "cost_usd": cost,
        "cache_hit": cache_hit if type(cache_hit) is bool else None,
        "status": status,
        "error": None,
        "finish_reasons": _finish_reasons(response),
        "response_id": response_id,
        "request": None,
        "response": None,
        "proxy": None,
        "truncated": None,
    }
    if first_attempt_id:
        # Only on a Router's later attempts: a record without it is its request's first (or only) one.
        record["first_attempt_id"] = first_attempt_id
    if on_proxy and slo_meta_get is not None:
        record["proxy"] = {
            field: _opt_str(slo_meta_get(key))
            for key, field in _PROXY_FIELDS.items()
            if slo_meta_get(key) not in (None, "")
        }
    if failed or disconnected:
        info = get("error_information") or meta_get("error_information")
        if not isinstance(info, dict):
            info = {}
        code = _opt_str(info.get("error_code"))
        status_code = (
            error_status if error_status is not None else (_int(code) if code and code.isdigit() else None)
        )
        record["error"] = {
            "type": _opt_str(info.get("error_class")) or exception_type,
            "message": _opt_str(info.get("error_message")) or _opt_str(get("error_str")),
            "status_code": status_code,
            "code": code,
            "provider": _provider_of(info.get("llm_provider")) or provider,
            "normalized": _opt_str(info.get("normalized_error")),
            "provider_request_id": _opt_str(info.get("error_provider_request_id")),
            "retries": retries,
        }
    if capture_content:
        request = _request_content(call_type, slo, params, text_input, audio_file)
        request["parameters"] = _parameters(params, call_type)
        record["request"] = request
        if call_type == "responses" and instructions and "instructions" not in request:
            request["instructions"] = instructions
        record["response"] = _response_content(call_type, response)
        if call_type == "speech" and audio_file and not failed and not record["response"]:
            record["response"] = dict(audio_file)  # LiteLLM 1.80's payload has no response for speech
    else:
        record["request"] = {"parameters": _parameters(params, call_type)}
    return record


# --------------------------------------------------------------------------------------------------
# Scrubbing, capping, encoding


def scrub(record: Record, secrets: Iterable[str] = ()) -> Record:
    """Remove credentials from the places LiteLLM and providers put them.

    Credentials reach a payload through URLs (`api_base` with a key in its query), proxy headers and
    metadata, and error messages that echo a key. `secrets` are exact values to remove from those places
    too. Content (messages) is left alone: shape-based redaction of content is the pipeline's `redact`.
    """
    # The callback gives none: no generator to run then (it costs more than the rest of the usual scrub).
    secrets = tuple(s for s in secrets if isinstance(s, str) and len(s) >= 6) if secrets else ()
    if record.get("api_base"):
        record["api_base"] = scrub_url(record["api_base"])
    if record.get("metadata"):
        record["metadata"] = scrub_value(record["metadata"], secrets)
    error = record.get("error")
    if error and error.get("message"):
        error["message"] = scrub_text(error["message"], secrets)
    return record


class _Encoder(json.JSONEncoder):
    """JSON encoding that never fails: an unserializable value becomes a short marker and is counted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unserializable = 0

    def default(self, o: Any) -> Any:
        for attr in ("model_dump", "dict"):  # pydantic objects (LiteLLM's responses) serialize as dicts
            method = getattr(o, attr, None)
            if callable(method):
                try:
                    return method()
                except Exception:
                    break
        if isinstance(o, (set, frozenset, tuple)):
            return list(o)
        if isinstance(o, bytes):
            return f"<{len(o)} bytes>"
        if hasattr(o, "isoformat"):
            try:
                return o.isoformat()
            except Exception:
                pass
        self.unserializable += 1
        return f"<unserializable {type(o).__name__}>"


# Without circular checks (a cycle ends in RecursionError, and the careful path names it) and without a
# `default`, so it is stateless and safe to share between threads.
_PLAIN_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False, allow_nan=False
)


def _plain_chunks() -> Callable[[Any, int], Any]:
    """The C encoder `_PLAIN_ENCODER.encode` makes on every call, made once: `encode` and `iterencode`
    are Python code that builds it anew for each record (about 5% of a call record's encoding). Same
    arguments, so the same text and the same errors."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        with contextlib.suppress(Exception):
            return make(
                None,
                _PLAIN_ENCODER.default,
                json.encoder.encode_basestring,
                None,
                ":",
                ",",
                False,
                False,
                False,
            )
    return lambda o, _level: (_PLAIN_ENCODER.encode(o),)  # a Python without the _json accelerator


_plain_encode = _plain_chunks()


def encode(record: Record) -> tuple[str, int]:
    """(JSON text, number of values that could not be serialized and were replaced by a marker).

    The one encoder of the project (the callback, the transport and the server use it): it never fails,
    and what it cannot encode costs only that value.
    """
    try:
        # The usual record holds only JSON types: one shared C encoder, no per-call set-up, no fallback.
        return "".join(_plain_encode(record, 0)), 0
    except (TypeError, ValueError, RecursionError):
        pass  # an object JSON cannot take as it is, NaN, a cycle: the careful encoders below
    encoder = _Encoder(separators=(",", ":"), ensure_ascii=False, check_circular=True, allow_nan=False)
    try:
        return encoder.encode(record), encoder.unserializable
    except (TypeError, ValueError, RecursionError):
        # Non-string keys, NaN/inf, a reference cycle or absurd nesting: encode a plain copy instead.
        markers = [0]
        plain = _plain(record, markers)
        encoder = _Encoder(separators=(",", ":"), ensure_ascii=False, check_circular=False, allow_nan=True)
        return encoder.encode(plain), markers[0] + encoder.unserializable


def _plain(value: Any, markers: list[int], _seen: frozenset[int] = frozenset(), _depth: int = 0) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if not isinstance(value, (Mapping, list, tuple)):
        return value
    if _depth > 40 or id(value) in _seen:
        markers[0] += 1
        return "<cycle>" if id(value) in _seen else "<too deep>"
    seen = _seen | {id(value)}
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if not (isinstance(key, (str, int, float, bool)) or key is None):
                markers[0] += 1
                key = f"<unserializable {type(key).__name__}>"
            out[key] = _plain(item, markers, seen, _depth + 1)
        return out
    return [_plain(item, markers, seen, _depth + 1) for item in value]


def tags_of(value: Any) -> list[str]:
    """Tags as the schema has them, a list of strings, whatever a processor set: a tag that is None is
    left out, any other value is written as text (the server refuses a record with other tags)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple, set, frozenset)):
        value = [value]
    return [t if isinstance(t, str) else str(t) for t in value if t is not None]


def detached(value: Any) -> Any:
    """A copy of the dicts and lists in `value` (the rest shared): changing it in place changes nothing
    the caller holds."""
    if isinstance(value, Mapping):
        return {k: detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [detached(v) for v in value]
    return value


_CAPPED_NAMES = ("session_id", "litellm_trace_id", "end_user", "user_id")

# The longest tag, in characters, that a record carries: the core cuts its own records' tags to it, the
# collector cuts any longer tag it is sent (and says so), stores and indexes the cut tag, and compares
# a `tag` filter by as many characters. One number for both layers (docs/server.md, docs/core.md).
MAX_TAG_CHARS = 200


def cap(record: Record, limits: Limits) -> Record:
    """Bound the record's size; every cut is named in `record["truncated"]`."""
    cuts: list[str] = []
    for key in ("request", "response", "error"):
        if record.get(key):
            record[key] = _cap_strings(record[key], limits.max_string_chars, key, cuts)
    # The caller's names for who and what conversation (LiteLLM's trace id is the session's name): one
    # huge value would reach the server whole (and, on a span, an attribute every backend indexes).
    for key in _CAPPED_NAMES:
        if isinstance(record.get(key), str):
            record[key] = _cap_strings(record[key], limits.max_string_chars, key, cuts)
    tags = tags_of(record.get("tags"))
    if len(tags) > limits.max_tags or any(len(t) > MAX_TAG_CHARS for t in tags):
        tags = [t[:MAX_TAG_CHARS] for t in tags[: limits.max_tags]]
        cuts.append("tags")
    record["tags"] = tags
    if record.get("metadata"):
        meta_text, _ = encode(record["metadata"])
        if len(meta_text.encode("utf-8")) > limits.max_metadata_bytes:
            record["metadata"] = _shrink_mapping(record["metadata"], limits.max_metadata_bytes)
            cuts.append("metadata")
    content = {"request": record.get("request"), "response": record.get("response")}
    text, _ = encode(content)
    if len(text.encode("utf-8")) > limits.max_content_bytes:
        _shrink_parameters(record, limits.max_content_bytes // 2, cuts)
        _elide_messages(record, limits.max_content_bytes, cuts)
    if cuts:
        # Added to, not replaced: a processor (`truncate`) may have named its own cuts already.
        record["truncated"] = [*(record.get("truncated") or []), *cuts]
    return record


def _cap_strings(value: Any, limit: int, path: str, cuts: list[str]) -> Any:
    if isinstance(value, str):
        if len(value) > limit:
            text, earlier = _earlier_cut(value)
            if earlier and len(text) <= limit:
                return value  # already cut, within the limit, by whoever named the cut
            cuts.append(path)
            return text[:limit] + f"…[truncated {len(text) - limit + earlier} chars]"
        return value
    if isinstance(value, Mapping):
        return {k: _cap_strings(v, limit, f"{path}.{k}", cuts) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cap_strings(v, limit, f"{path}[{i}]", cuts) for i, v in enumerate(value)]
    return value


def _earlier_cut(value: str) -> tuple[str, int]:
    """A string's text before the marker of an earlier cut, and how many characters that cut dropped.

    A string is cut more than once (by `truncate`, then by `cap`; the OTel layer keeps only the start
    of a streamed answer): the marker then counts every character dropped, and a cut within the limit
    is not cut again."""
    if value.endswith(" chars]"):
        at = value.rfind("…[truncated ")
        count = value[at + 12 : -7]
        if at >= 0 and count.isdigit():
            return value[:at], int(count)
    return value, 0


cap_strings = _cap_strings
"""A copy of a value with strings over `limit` cut and marked, each cut's path added to `cuts`
(`litelens.pipeline.truncate` applies the same cut at a size the user picks)."""


def _shrink_mapping(mapping: Mapping[str, Any], budget: int) -> dict[str, Any]:
    sized = sorted(((len(encode(v)[0]), k) for k, v in mapping.items()), reverse=True)
    out = dict(mapping)
    total = sum(size for size, _ in sized)
    for size, key in sized:
        if total <= budget:
            break
        out[key] = f"<{size} bytes removed>"
        total -= size
    return out


def _shrink_parameters(record: Record, budget: int, cuts: list[str]) -> None:
    """Replace the largest parameters (a structured-output schema, a long `logit_bias`) by a marker when
    they take more than `budget`: made of many short strings, no string cap bounds them, and the
    conversation is worth more than the schema it was asked to follow."""
    request = record.get("request")
    parameters = request.get("parameters") if isinstance(request, dict) else None
    if isinstance(parameters, dict) and parameters:
        text, _ = encode(parameters)
        if len(text.encode("utf-8")) > budget:
            record["request"] = {**request, "parameters": _shrink_mapping(parameters, budget)}  # type: ignore[dict-item]
            cuts.append("request.parameters")


def _elide_messages(record: Record, budget: int, cuts: list[str]) -> None:
    """Keep the first and the last messages of an over-long conversation; say how many were dropped."""
    request = record.get("request") or {}
    messages = request.get("messages")
    if isinstance(messages, list) and len(messages) > 2:

        def elided(tail: int) -> list[Any]:
            dropped = len(messages) - 1 - tail
            return [
                messages[0],
                {"role": "litelens", "content": f"[{dropped} messages elided]"},
                *messages[-tail:],
            ]

        kept = elided(1)
        for tail in range(2, len(messages) - 1):
            trial = elided(tail)
            text, _ = encode({"request": {**request, "messages": trial}, "response": record.get("response")})
            if len(text.encode("utf-8")) > budget:
                break
            kept = trial
        record["request"] = {**request, "messages": kept}
        cuts.append("request.messages")
    text, _ = encode({"request": record.get("request"), "response": record.get("response")})
    if len(text.encode("utf-8")) > budget:
        # Still too large (a single huge message or response): keep the shape, drop the text.
        record["request"] = {"parameters": (record.get("request") or {}).get("parameters"), "elided": True}
        record["response"] = {"elided": True, "id": (record.get("response") or {}).get("id")}
        cuts.append("content")
