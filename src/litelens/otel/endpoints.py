"""What differs between LiteLLM's entry points, and how one call becomes a call record.

The wrappers are one engine for every entry point; this module holds the small per-endpoint facts
(which argument carries the content, what the record calls the operation) and turns a call's arguments
and LiteLLM's response into the same record shape the core callback builds. `litelens.semconv` then
maps that record to span attributes, so the OTel layer and the core layer can never disagree on a name.

Reads only what LiteLLM hands back (`_hidden_params`, `usage`, `id`, `model`, `choices`): no LiteLLM
import is needed here, which keeps building a record cheap and testable without a provider.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litelens.credentials import scrub_text, scrub_url, scrub_value
from litelens.record import (
    SCHEMA,
    Record,
    _response_content,
    audio_file_of,
    retries_before,
    speech_audio_of,
    tags_of,
    usage_of,
    user_metadata_of,
)


@dataclass(frozen=True)
class Endpoint:
    """One LiteLLM function the instrumentor wraps.

    `content_arg` names the argument that holds the request content (messages, input or prompt): it is
    recorded only when content capture is on.
    """

    name: str
    call_type: str
    is_async: bool
    content_arg: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("completion", "chat", False, "messages"),
    Endpoint("acompletion", "chat", True, "messages"),
    Endpoint("embedding", "embedding", False, "input"),
    Endpoint("aembedding", "embedding", True, "input"),
    Endpoint("text_completion", "text_completion", False, "prompt"),
    Endpoint("atext_completion", "text_completion", True, "prompt"),
    Endpoint("image_generation", "image_generation", False, "prompt"),
    Endpoint("aimage_generation", "image_generation", True, "prompt"),
    Endpoint("responses", "responses", False, "input"),
    Endpoint("aresponses", "responses", True, "input"),
    Endpoint("moderation", "moderation", False, "input"),
    Endpoint("amoderation", "moderation", True, "input"),
    Endpoint("transcription", "transcription", False, "file"),
    Endpoint("atranscription", "transcription", True, "file"),
    Endpoint("speech", "speech", False, "input"),
    Endpoint("aspeech", "speech", True, "input"),
    Endpoint("rerank", "rerank", False, "query"),
    Endpoint("arerank", "rerank", True, "query"),
)

# The provider of a call type whose LiteLLM function calls one provider only, when the model names none.
_ONLY_PROVIDER = {"moderation": "openai"}

# Model parameters worth keeping. An allow-list, not a deny-list: LiteLLM accepts credentials and
# clients as keyword arguments (api_key, aws_secret_access_key, client ...), and none may reach a span.
_PARAMETERS = frozenset(
    {
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "stop",
        "n",
        "encoding_format",
        "dimensions",
        "reasoning_effort",
        "tool_choice",
        "parallel_tool_calls",
        "size",
        "quality",
        "style",
        "response_format",
        "logprobs",
        "top_logprobs",
        "timeout",
        "num_retries",
        # rerank, speech and transcription
        "top_n",
        "return_documents",
        "rank_fields",
        "max_chunks_per_doc",
        "max_tokens_per_doc",
        "voice",
        "speed",
        "language",
        "timestamp_granularities",
    }
)
_SIMPLE = (str, int, float, bool)

# A process calls few API bases: scrub each once (`scrub_url` is pure).
_scrubbed_url = functools.lru_cache(maxsize=256)(scrub_url)

# Where LiteLLM (1.80 and 1.110 alike) sends a call that names its base twice. `completion` and
# `text_completion` send it to `base_url=` over `api_base=`; `embedding`, `image_generation`,
# `responses` and `moderation` accept `base_url=` and drop it (the call goes where it would without).
# The other entry points are left to `api_base=`, then `base_url=`: what they do was not checked.
_BASE_URL_FIRST = frozenset({"completion", "acompletion", "text_completion", "atext_completion"})
_BASE_URL_IGNORED = frozenset(
    {
        "embedding",
        "aembedding",
        "image_generation",
        "aimage_generation",
        "responses",
        "aresponses",
        "moderation",
        "amoderation",
    }
)

# Where LiteLLM sends a call whose arguments name no base, by (provider, call type): the first of
# these settings that is set (`litellm.api_base`, or an environment variable). Each order was watched
# on LiteLLM 1.80 and 1.110, with a server on loopback per setting, removing the one that got the
# request until none did. What LiteLLM reports (`_hidden_params["api_base"]`) is wrong or missing for
# these: OpenAI's own base (or nothing, on the `text-completion-openai` route) for an OpenAI call sent
# elsewhere, nothing for the other providers when `litellm.api_base` or a shared variable sent it.
# A provider's own variable (`HOSTED_VLLM_API_BASE`, `LITELLM_PROXY_API_BASE`) comes first, as LiteLLM
# reads it first (and reports it). Left out, so the span names only what LiteLLM reports: what the two
# versions do differently (1.80 alone sends `hosted_vllm/` chat and Responses calls to
# `OPENAI_BASE_URL`, `OPENAI_API_BASE`, its Responses calls to `litellm.api_base`, and its embeddings
# to `OPENAI_LIKE_API_BASE`), image generation and moderation (which do not follow these orders), and
# what was not watched.
_OPENAI_ORDER = ("litellm.api_base", "OPENAI_BASE_URL", "OPENAI_API_BASE")
_CONFIGURED_BASES: dict[tuple[str, str], tuple[str, ...]] = {
    **{
        (provider, call): _OPENAI_ORDER
        for provider in ("openai", "text-completion-openai")
        for call in ("chat", "embedding", "text_completion", "responses", "speech")
    },
    ("hosted_vllm", "chat"): ("HOSTED_VLLM_API_BASE", "litellm.api_base"),
    ("hosted_vllm", "embedding"): ("HOSTED_VLLM_API_BASE", "litellm.api_base"),
    ("hosted_vllm", "text_completion"): ("HOSTED_VLLM_API_BASE", *_OPENAI_ORDER),
    ("hosted_vllm", "responses"): ("HOSTED_VLLM_API_BASE",),
    **{
        ("litellm_proxy", call): ("LITELLM_PROXY_API_BASE", *_OPENAI_ORDER)
        for call in ("chat", "embedding", "text_completion")
    },
    ("litellm_proxy", "responses"): ("LITELLM_PROXY_API_BASE",),
    **{("custom_openai", call): _OPENAI_ORDER for call in ("chat", "text_completion", "responses")},
    ("openai_like", "embedding"): ("litellm.api_base", "OPENAI_LIKE_API_BASE"),
}


def _given_base(litellm_function: str, arguments: Mapping[str, Any]) -> str | None:
    """The API base the call's own arguments send it to, as LiteLLM reads them."""
    api_base = _str(arguments.get("api_base"))
    base_url = _str(arguments.get("base_url"))
    if litellm_function in _BASE_URL_FIRST:
        return base_url or api_base
    if litellm_function in _BASE_URL_IGNORED:
        return api_base
    return api_base or base_url


def configured_base(call_type: str, provider: str | None) -> str | None:
    """The base LiteLLM's settings give a call whose arguments name none, where LiteLLM's own report
    of it is known to be wrong or missing (see `_CONFIGURED_BASES`); None otherwise.

    Read when the call starts, as LiteLLM reads them (or, for a model named without its provider, once
    LiteLLM has named the provider): `litellm.api_base` and these variables are LiteLLM's settings, not
    litelens's, so they are read where LiteLLM reads them rather than in `OtelSettings`.
    """
    order = _CONFIGURED_BASES.get((provider or "", call_type))
    if order is None:
        return None
    for setting in order:
        if setting == "litellm.api_base":
            litellm = sys.modules.get("litellm")  # imported: the wrapped function is LiteLLM's
            base = _str(getattr(litellm, "api_base", None))
        else:
            base = _str(os.environ.get(setting))
        if base:
            return base
    return None


def apply_api_base(record: Record, hidden: Mapping[str, Any]) -> None:
    """The record's API base once LiteLLM has answered: the one the arguments or settings gave, else
    the one LiteLLM reports (its provider's default, or a base it found itself).

    LiteLLM's report is not preferred: it names `api_base=` where `base_url=` won, and OpenAI's default
    where `litellm.api_base` or the environment sent the call elsewhere.
    """
    if not record.get("api_base"):
        base = configured_base(str(record.get("call_type")), record.get("provider"))
        record["api_base"] = _scrubbed_url(base or _str(hidden.get("api_base")))


def _parameter_value(value: Any) -> Any:
    """A JSON-friendly parameter value, or None when the value is an object that must not be recorded."""
    if value is None or isinstance(value, _SIMPLE):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, _SIMPLE) for v in value):
        return list(value)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if isinstance(v, (*_SIMPLE, Mapping, list))}
    return None


def _split_model(
    model: str | None, provider: str | None, providers: frozenset[str]
) -> tuple[str | None, str | None]:
    """(model without LiteLLM's provider prefix, provider): the core record names models the same way."""
    if not model:
        return model, provider
    prefix, sep, rest = model.partition("/")
    if sep and prefix in providers and rest:
        return rest, provider or prefix
    return model, provider


def request_record(
    endpoint: Endpoint,
    arguments: Mapping[str, Any],
    call_id: str,
    providers: frozenset[str],
    capture_content: bool,
) -> Record:
    """The record as far as the call's arguments tell it: what was asked, of whom, with which settings."""
    model, provider = _split_model(
        _str(arguments.get("model")), _str(arguments.get("custom_llm_provider")), providers
    )
    parameters = {}
    for key, value in arguments.items():
        if key in _PARAMETERS:
            kept = _parameter_value(value)
            if kept is not None:
                parameters[key] = kept
    metadata = arguments.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    model_info = metadata.get("model_info")
    request: dict[str, Any] = {"parameters": parameters}
    if capture_content:
        content = arguments.get(endpoint.content_arg)
        if endpoint.call_type == "rerank":
            content = {"query": content, "documents": arguments.get("documents")}
        elif endpoint.call_type == "transcription":
            # The upload by name and size, as the core record names it: never the audio on a span.
            content = {"file": audio_file_of(content)}
            prompt = arguments.get("prompt")
            if isinstance(prompt, str) and prompt:
                content["prompt"] = prompt
        request["messages" if endpoint.content_arg == "messages" else "input"] = content
        tools = arguments.get("tools")
        if tools:
            request["tools"] = tools
        instructions = arguments.get("instructions")  # the Responses API's system prompt
        if isinstance(instructions, str) and instructions:
            request["instructions"] = instructions
    return {
        "schema": SCHEMA,
        "call_id": call_id,
        "session_id": _str(arguments.get("litellm_session_id")) or _str(metadata.get("session_id")),
        "end_user": _str(arguments.get("user")),
        "tags": tags_of(metadata.get("tags")),
        "metadata": _scrubbed_metadata(metadata, arguments.get("api_key")),
        "call_type": endpoint.call_type,
        "litellm_call_type": endpoint.name,
        "is_async": endpoint.is_async,
        "stream": bool(arguments.get("stream")),
        "request_model": model,
        "response_model": None,
        "provider": provider or _ONLY_PROVIDER.get(endpoint.call_type),
        "api_base": _scrubbed_url(
            _given_base(endpoint.name, arguments) or configured_base(endpoint.call_type, provider)
        ),
        # A Router names the model group it routed the call to in the metadata it passes on.
        "model_group": _str(metadata.get("model_group")),
        # The deployment it picked, named before the call: a failed attempt's answer names none.
        "deployment_id": _str(model_info.get("id")) if isinstance(model_info, Mapping) else None,
        "start_time": time.time(),
        "usage": None,
        "cost_usd": None,
        "status": "ok",
        "error": None,
        "finish_reasons": [],
        "response_id": None,
        "request": request,
        "response": None,
    }


def _scrubbed_metadata(metadata: Mapping[str, Any], api_key: Any) -> dict[str, Any]:
    """The caller's metadata without credentials, as the core record keeps it (`record.scrub`): values
    under secret-named keys, credential-shaped strings and the call's own API key are redacted."""
    picked = user_metadata_of(metadata)
    if not picked:
        return picked
    secrets = (api_key,) if isinstance(api_key, str) and len(api_key) >= 6 else ()
    scrubbed: dict[str, Any] = scrub_value(picked, secrets)
    return scrubbed


def apply_response(record: Record, response: Any, capture_content: bool) -> None:
    """Fill the record from a complete (non-stream) LiteLLM response object."""
    hidden = field(response, "_hidden_params")
    if hidden is not None and not isinstance(hidden, Mapping):
        hidden = _plain(hidden)  # text completions keep theirs in a pydantic HiddenParams
    if isinstance(hidden, Mapping):
        apply_hidden_params(record, hidden)
    record["response_id"] = _str(field(response, "id"))
    record["response_model"] = _str(field(response, "model"))
    usage = field(response, "usage")
    if usage is not None:
        record["usage"] = usage_of({"response": {"usage": fields_of(usage)}})
    reasons = [str(r) for r in (field(c, "finish_reason") for c in field(response, "choices") or []) if r]
    status = field(response, "status")
    if not reasons and status in ("completed", "incomplete"):
        reasons = [str(status)]
    record["finish_reasons"] = reasons
    if capture_content:
        if record["call_type"] == "speech":  # audio: its type and size, never the bytes
            record["response"] = speech_audio_of(response)
            return
        dump = getattr(response, "model_dump", None)
        if callable(dump):
            record["response"] = _response_content(record["call_type"], dump())


def field(obj: Any, name: str) -> Any:
    """`getattr(obj, name, None)`, for LiteLLM's pydantic objects without pydantic's `__getattr__`.

    LiteLLM keeps some values as extra or private attributes (`usage`, `_hidden_params`), and a chunk
    or response lacks others (`type`, `status`): attribute access then runs pydantic's `__getattr__`,
    a Python-level call that raises and catches AttributeError for a missing name -- per response, and
    per chunk of a stream. This reads the same dicts pydantic's lookup reads, in the same order:
    fields, then the class (properties and other class attributes), then private, then extra values.
    """
    values = getattr(obj, "__dict__", None)
    if values is not None and name in values:
        return values[name]
    cls = type(obj)
    if not hasattr(obj, "__pydantic_fields_set__") or _class_has(cls, name):
        return getattr(obj, name, None)
    private = getattr(obj, "__pydantic_private__", None)
    if private and name in private:
        return private[name]
    extra = getattr(obj, "__pydantic_extra__", None)
    return extra.get(name) if extra else None


# (class, name) -> whether the class itself has the attribute: few classes, and the few names read here.
_CLASS_HAS: dict[tuple[type, str], bool] = {}


def _class_has(cls: type, name: str) -> bool:
    """Whether `name` is an attribute of the class itself (a property, say), not of its instances."""
    key = (cls, name)
    found = _CLASS_HAS.get(key)
    if found is None:
        found = _CLASS_HAS[key] = any(name in vars(klass) for klass in cls.__mro__)
    return found


def fields_of(usage: Any) -> Any:
    """A pydantic usage object (and its token details) as plain dicts, for `usage_of` to read.

    Same values as reading the attributes -- fields and extra fields alike -- without pydantic's
    `__getattr__`, which raises (and is caught) for every key a usage object does not have.
    """
    if isinstance(usage, Mapping):
        return usage
    view = _plain(usage)
    if view is None:
        return usage
    for key in (
        "prompt_tokens_details",
        "completion_tokens_details",
        "input_tokens_details",
        "output_tokens_details",
    ):
        details = view.get(key)
        if details is not None and not isinstance(details, Mapping):
            view[key] = _plain(details) or details
    return view


def _plain(model: Any) -> dict[str, Any] | None:
    """A pydantic model's fields and extra fields as one dict (None if `model` is not a pydantic model)."""
    fields = getattr(model, "__dict__", None)
    if not isinstance(fields, dict) or not hasattr(model, "__pydantic_fields_set__"):
        return None
    view = dict(fields)
    extra = getattr(model, "__pydantic_extra__", None)
    if extra:
        view.update(extra)
    return view


def apply_hidden_params(record: Record, hidden: Mapping[str, Any]) -> None:
    """What LiteLLM resolved while serving the call: provider, api base, cost, its own call id."""
    record["call_id"] = _str(hidden.get("litellm_call_id")) or record["call_id"]
    record["provider"] = _str(hidden.get("custom_llm_provider")) or record["provider"]
    apply_api_base(record, hidden)
    record["deployment_id"] = _str(hidden.get("model_id")) or record.get("deployment_id")
    cost = hidden.get("response_cost")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        record["cost_usd"] = float(cost)
    apply_cache_hit(record, hidden)


def apply_cache_hit(record: Record, hidden: Mapping[str, Any]) -> None:
    """A response LiteLLM served from its cache cost nothing: the cost it carries is the original
    call's, which LiteLLM's own callbacks (and so the core record) count as 0 for the hit."""
    if hidden.get("cache_hit") is True:
        record["cache_hit"] = True
        record["cost_usd"] = 0.0


def apply_error(
    record: Record,
    exc: BaseException,
    secrets: Iterable[str] = (),
    arguments: Mapping[str, Any] | None = None,
) -> None:
    """The record of a call that raised: LiteLLM's exceptions carry the HTTP status and the provider.

    `secrets` are the call's own key values (`Call.secrets`), removed from the message whatever their
    shape: a provider may echo a rejected key whole. `arguments` are the call's keyword arguments: a
    Router's attempt says there how many retries came before it."""
    cancelled = type(exc).__name__ in ("CancelledError", "GeneratorExit", "KeyboardInterrupt", "NeverAwaited")
    status_code = getattr(exc, "status_code", None)
    record["status"] = "cancelled" if cancelled else "error"
    record["error"] = {
        "type": error_type(exc),
        "message": scrub_text(str(exc), secrets)[:2000],
        "status_code": status_code if isinstance(status_code, int) else None,
        "code": None,
        "provider": _str(getattr(exc, "llm_provider", None)) or record.get("provider"),
        "normalized": None,
        "provider_request_id": None,
        "retries": retries_before(exc, (arguments or {}).get("metadata")),
    }


def error_type(exc: BaseException) -> str:
    """`error.type` for an exception: its qualified class name, as the OTel conventions ask."""
    return type(exc).__qualname__


def finish_times(record: Record, duration_s: float, ttft_s: float | None) -> None:
    """End time, duration, time to first chunk and throughput, from monotonic measurements."""
    record["duration_ms"] = round(duration_s * 1000.0, 3)
    record["end_time"] = record["start_time"] + duration_s
    if ttft_s is not None:
        record["ttft_ms"] = round(ttft_s * 1000.0, 3)
    usage = record.get("usage") or {}
    output = usage.get("output_tokens") or 0
    generation_s = duration_s - (ttft_s or 0.0) if ttft_s is not None else duration_s
    if output and generation_s > 0:
        record["output_tokens_per_s"] = round(output / generation_s, 3)


def _str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)
