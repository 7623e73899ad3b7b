"""A stored record as a conversation (system, user, assistant, tool calls, tool results) and as code
that makes the same call again (cURL, Python with LiteLLM).

Providers shape content differently (a plain string, OpenAI content parts, Anthropic blocks, the
Responses API's items), so this flattens each message into `Part`s the template knows how to show.
Images become placeholders naming their source, never `<img>` tags: a prompt's image URL is the
caller's data, and the dashboard must not fetch it (nor leak that someone looked at it).
"""

from __future__ import annotations

import contextlib
import json
import pprint
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Part:
    kind: str  # "text", "image", "tool_call", "tool_result", "data"
    text: str
    title: str = ""


@dataclass
class Turn:
    role: str  # system, user, assistant, tool, ...
    parts: list[Part] = field(default_factory=list)
    name: str = ""
    source: str = "request"  # "request" or "response"


def as_list(value: Any) -> list[Any]:
    """A list the record should hold, or none: the collector takes any JSON inside request and response,
    and a number where a list belongs must not fail the call's page with a 500."""
    return value if isinstance(value, list) else []


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# LiteLLM (1.7x and later) replaces a long base64 payload in what it logs with this, naming its size.
_LITELLM_BASE64_CUT = re.compile(r"\[base64_data truncated: ([^\]]{1,20})\]")
# The mark litelens' own size limits leave at the end of a cut string (`record.Limits`).
_CUT_MARK = re.compile(r"…\[truncated ([0-9]+) chars\]\Z")


def _inline_size(url: str) -> str:
    """The size of a data URL's image as the user knows it: its bytes, not the characters of its
    base64 text, nor those of the marker LiteLLM or litelens' limits left in its place."""
    payload = url.split(",", 1)[1] if "," in url else ""
    named = _LITELLM_BASE64_CUT.search(payload)
    if named:
        return named.group(1)
    if ";base64" not in url.split(",", 1)[0]:
        return f"{len(payload):,} characters"
    chars = len(payload.rstrip("="))
    cut = _CUT_MARK.search(payload)
    if cut:
        chars = cut.start() + int(cut.group(1))
    return f"{chars * 3 // 4:,} bytes"


def _image(source: Any) -> Part:
    url = source.get("url") if isinstance(source, Mapping) else source
    if isinstance(url, str) and url.startswith("data:"):
        mime = url[5:].split(",", 1)[0].split(";", 1)[0] or "inline"
        label = f"image ({mime}, {_inline_size(url)}, not shown)"
    elif isinstance(url, str) and url:
        label = f"image at {url[:300]} (not loaded)"
    else:
        label = "image (not shown)"
    return Part("image", label)


def _tool_call(call: Mapping[str, Any]) -> Part:
    nested = call.get("function")
    function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else call
    name = str(function.get("name") or call.get("name") or "tool")
    arguments = function.get("arguments", call.get("input", call.get("arguments")))
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # arguments a model left unfinished are shown as given
            arguments = json.loads(arguments)
    # A Responses item has its own `id` besides the `call_id` its output answers to: the call_id, then.
    ident = call.get("call_id") or call.get("id") or ""
    return Part("tool_call", _as_text(arguments if arguments is not None else {}), f"{name} {ident}".strip())


def _parts(content: Any) -> list[Part]:
    """A message's content (string, list of parts or blocks, or anything else) as parts."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [Part("text", content)]
    if not isinstance(content, list):
        return [Part("data", _as_text(content))]
    parts: list[Part] = []
    for block in content:
        if isinstance(block, str):
            parts.append(Part("text", block))
            continue
        if not isinstance(block, Mapping):
            parts.append(Part("data", _as_text(block)))
            continue
        kind = str(block.get("type") or "")
        if kind in ("text", "input_text", "output_text") or (not kind and "text" in block):
            parts.append(Part("text", str(block.get("text") or "")))
        elif kind in ("image_url", "input_image", "image"):
            parts.append(_image(block.get("image_url") or block.get("source") or block.get("url")))
        elif kind in ("tool_use", "function_call"):
            parts.append(_tool_call(block))
        elif kind in ("tool_result", "function_call_output"):
            answers = block.get("call_id") or block.get("tool_use_id") or ""
            output = _as_text(block.get("content", block.get("output")))
            parts.append(Part("tool_result", output, f"tool result {answers}".strip()))
        else:
            parts.append(Part("data", _as_text(block), kind))
    return parts


def _turn(message: Mapping[str, Any], source: str) -> Turn:
    role = str(message.get("role") or ("assistant" if source == "response" else "user"))
    parts = _parts(message.get("content"))
    if role in ("tool", "function"):
        parts = [Part("tool_result", p.text, p.title or "tool result") for p in parts] or [
            Part("tool_result", "", "tool result")
        ]
        name = str(message.get("tool_call_id") or message.get("name") or "")
    else:
        name = str(message.get("name") or "")
    for call in as_list(message.get("tool_calls")):
        if isinstance(call, Mapping):
            parts.append(_tool_call(call))
    return Turn(role, parts, name, source)


# Who a Responses input item without a role is from: a tool call (or reasoning) given back as input is
# the model's earlier turn, its output the tool's.
_ITEM_ROLES = {"function_call": "assistant", "reasoning": "assistant", "function_call_output": "tool"}


def conversation(record: Mapping[str, Any]) -> list[Turn]:
    """The request's messages (or input) then the response's answer(s), in order."""
    request = record.get("request") or {}
    response = record.get("response") or {}
    turns: list[Turn] = []
    if request.get("instructions"):  # a Responses call's system prompt, given apart from its input
        turns.append(Turn("system", _parts(request["instructions"])))
    messages = request.get("messages")
    if isinstance(messages, list):
        turns += [_turn(m, "request") for m in messages if isinstance(m, Mapping)]
    elif request.get("input") is not None:
        given = request["input"]
        items = given if isinstance(given, list) else [given]
        for item in items:
            if isinstance(item, Mapping) and ("role" in item or "content" in item):
                turns.append(_turn(item, "request"))
            elif isinstance(item, Mapping) and item.get("type"):
                turns.append(Turn(_ITEM_ROLES.get(str(item["type"]), "user"), _parts([item])))
            else:
                turns.append(Turn("user", _parts(item)))
    for choice in as_list(response.get("choices")):
        if not isinstance(choice, Mapping):
            continue
        if isinstance(choice.get("message"), Mapping):
            turns.append(_turn(choice["message"], "response"))
        elif "text" in choice:
            turns.append(Turn("assistant", _parts(choice.get("text")), source="response"))
    if isinstance(response.get("embeddings"), int):  # an embedding's answer: how many vectors, not them
        turns.append(Turn("assistant", [Part("text", _embeddings(response))], source="response"))
    images = [i for i in as_list(response.get("images")) if isinstance(i, Mapping)]
    if images:  # an image generation's answer: its images as placeholders (never loaded), revised prompts
        parts: list[Part] = []
        for image in images:
            if image.get("revised_prompt"):
                parts.append(Part("text", str(image["revised_prompt"])))
            if image.get("url"):
                parts.append(_image(image["url"]))
            elif image.get("b64_json"):
                parts.append(Part("image", f"image ({image['b64_json']}, not shown)"))
        turns.append(Turn("assistant", parts or [Part("image", "image (not shown)")], source="response"))
    for item in as_list(response.get("output")):
        if isinstance(item, Mapping) and item.get("type") == "message":
            turns.append(_turn({"role": "assistant", **item}, "response"))
        elif isinstance(item, Mapping):
            turns.append(Turn("assistant", _parts([item]), source="response"))
    answer = _other_answer(str(record.get("call_type") or ""), response)
    if answer:
        turns.append(Turn("assistant", answer, source="response"))
    return turns


def _other_answer(call_type: str, response: Mapping[str, Any]) -> list[Part]:
    """The answer of a call that generates no text (`docs/core.md`): a transcript, an audio placeholder,
    a moderation's verdict, a rerank's ranking."""
    if call_type == "transcription" and isinstance(response.get("text"), str):
        return [Part("text", response["text"])]
    if call_type == "speech" and (response.get("content_type") or response.get("size_bytes") is not None):
        size = response.get("size_bytes")
        of = f", {size} bytes" if isinstance(size, int) else ""
        return [Part("data", f"audio ({response.get('content_type') or 'unknown format'}{of}, not stored)")]
    if call_type == "moderation" and isinstance(response.get("results"), list):
        verdicts = []
        for result in response["results"]:
            if not isinstance(result, Mapping):
                continue
            flagged = [str(c) for c in as_list(result.get("categories"))]
            verdicts.append("flagged: " + ", ".join(flagged) if result.get("flagged") else "not flagged")
        return [Part("text", "\n".join(verdicts))] if verdicts else []
    if call_type == "rerank" and isinstance(response.get("results"), list):
        return [Part("data", _as_text(response["results"]))]
    return []


def _embeddings(response: Mapping[str, Any]) -> str:
    count, size = response["embeddings"], response.get("dimensions")
    of = f" of {size} dimensions" if isinstance(size, int) else ""
    return f"{count} embedding{'' if count == 1 else 's'}{of} (the vectors are not recorded)"


# --------------------------------------------------------------------------------------------------
# The same call as code

# The calls that can be rebuilt as code, and their OpenAI-compatible endpoints; LiteLLM's function for
# each has the call type's name (chat: `completion`).
_ENDPOINTS = {
    "chat": "chat/completions",
    "embedding": "embeddings",
    "text_completion": "completions",
    "responses": "responses",
    "image_generation": "images/generations",
}
# What a call type's content is called in the API (and in LiteLLM's function for it); chat: `messages`.
_CONTENT_NAME = {
    "embedding": "input",
    "responses": "input",
    "image_generation": "prompt",
    "text_completion": "prompt",
}
# Parameters the record keeps under `request` beside the content (see record.py), sent as they were.
_CONTENT_PARAMETERS = ("tools", "functions", "prediction", "instructions")
_SKIPPED_PARAMS = {"stream_options", "metadata", "api_key", "api_base", "extra_headers"}


def _litellm_model(record: Mapping[str, Any]) -> str:
    model = str(record.get("request_model") or record.get("response_model") or "MODEL")
    provider = record.get("provider")
    if provider and not model.startswith(f"{provider}/"):
        return f"{provider}/{model}"
    return model


def _params(record: Mapping[str, Any]) -> dict[str, Any]:
    given = (record.get("request") or {}).get("parameters")
    if not isinstance(given, Mapping):
        return {}
    return {
        k: v for k, v in given.items() if isinstance(k, str) and k.isidentifier() and k not in _SKIPPED_PARAMS
    }


def _payload(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(what the content is called in the API: messages, input or prompt; the request body minus the model)."""
    request = record.get("request") or {}
    body: dict[str, Any] = {}
    name = _CONTENT_NAME.get(str(record.get("call_type")), "messages")
    if request.get("messages") is not None:
        name = "messages"
        body["messages"] = request["messages"]
    elif request.get("input") is not None:
        # The record keeps every non-chat call's content as `input`; a text completion's or an image's
        # is its `prompt`.
        body["prompt" if name == "prompt" else "input"] = request["input"]
    else:
        body[name] = [] if name == "messages" else ""
    body.update({key: request[key] for key in _CONTENT_PARAMETERS if request.get(key)})
    body.update(_params(record))
    if record.get("stream"):
        body["stream"] = True
    return name, body


def _call_type(record: Mapping[str, Any]) -> str:
    return str(record.get("call_type") or "chat")  # a record without one (an OTel span's) is a chat


def can_copy(record: Mapping[str, Any]) -> bool:
    """Whether the call can be given as code: a rerank, a transcription and the like take other
    arguments than the record keeps, and copied as a chat call they would make a different call."""
    return _call_type(record) in _ENDPOINTS


def as_python(record: Mapping[str, Any]) -> str:
    """The call as a LiteLLM call (the API key left to the environment, as LiteLLM reads it)."""
    function = "completion" if _call_type(record) == "chat" else _call_type(record)
    _, body = _payload(record)
    lines = [
        "import litellm",
        "",
        f"response = litellm.{function}(",
        f"    model={_litellm_model(record)!r},",
    ]
    if record.get("api_base"):
        lines.append(f"    api_base={record['api_base']!r},")
    for key, value in body.items():
        text = pprint.pformat(value, indent=1, width=100, sort_dicts=False)
        lines.append(f"    {key}=" + text.replace("\n", "\n    ") + ",")
    lines.append(")")
    return "\n".join(lines)


def as_curl(record: Mapping[str, Any]) -> str:
    """The call as an OpenAI-compatible HTTP request; the key is read from $API_KEY, never stored."""
    base = str(record.get("api_base") or "https://api.openai.com/v1").rstrip("/")
    endpoint = _ENDPOINTS.get(_call_type(record), "chat/completions")
    if not base.endswith(endpoint):
        base = f"{base}/{endpoint}"
    _, body = _payload(record)
    document = {"model": record.get("request_model") or record.get("response_model"), **body}
    data = json.dumps(document, indent=2, ensure_ascii=False)
    return (
        f"curl {shlex.quote(base)} \\\n"
        '  -H "Authorization: Bearer $API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(data)}"
    )
