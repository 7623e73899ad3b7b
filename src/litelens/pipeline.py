"""Record processors: plain callables `record -> record | None`, run in order before a record leaves.

A processor returns the (possibly changed) record, or None to drop it -- structlog's model, so a user's
own function is a processor without subclassing anything. The built-ins here are factories that return
such callables: `redact`, `drop_content`, `truncate`, `sample`, `enrich`, `keep_if`, `drop_if`. A
`Pipeline` runs a list of them and counts, per processor, the records it dropped and the errors it raised.

    >>> from litelens.pipeline import Pipeline, redact, sample
    >>> pipe = Pipeline([sample(0.25), redact()])
    >>> pipe({"trace_id": "0" * 31 + "1", "status": "error", "error": {"message": "mail bob@example.com"}})
    {'trace_id': '00000000000000000000000000000001', 'status': 'error', 'error': {'message': 'mail [EMAIL]'}}

Everything runs on a background thread (the transport's, or the sinks' dispatcher), never on the
caller's, but every microsecond here is still CPU taken from the host process: the redaction engine
(`litelens.redaction`) has fast paths because a Python regex scans text at several nanoseconds per
character, so a record must not be scanned once per kind, nor once per string.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from litelens import record as rec
from litelens import semconv
from litelens.config import Settings
from litelens.redaction.text import KINDS, TextRedactor
from litelens.redaction.walk import Redactor

__all__ = [
    "KINDS",
    "Pipeline",
    "Processor",
    "drop_content",
    "drop_health_checks",
    "drop_if",
    "enrich",
    "from_env",
    "from_settings",
    "keep_if",
    "redact",
    "sample",
    "truncate",
]

log = logging.getLogger("litelens.pipeline")

Record = rec.Record
Processor = Callable[[Record], "Record | None"]


CONTENT_FIELDS = ("request", "response", "metadata", "error")
REDACT_FIELDS = (*CONTENT_FIELDS, "api_base")
"""What `redact` walks by default: the content fields, plus the API base URL (a path may carry data)."""


def _named(fn: Processor, name: str) -> Processor:
    """Give a closure a readable name: `Pipeline.stats()` and log lines show it."""
    fn.__name__ = fn.__qualname__ = name
    return fn


# --------------------------------------------------------------------------------------------------
# Pipeline


class _Slot:
    __slots__ = ("dropped", "errors", "name", "processor", "warned")

    def __init__(self, processor: Processor, name: str) -> None:
        self.processor = processor
        self.name = name
        self.dropped = 0
        self.errors = 0
        self.warned = False


class Pipeline:
    """Processors run in order; itself a processor, so pipelines nest.

    A processor that returns None drops the record (later processors do not see it). One that raises,
    or returns something other than a dict, also drops it: the safe side, since the failing processor
    may have been the one that redacts. The
    first error of each processor is logged with its traceback, later ones are only counted, so a broken
    processor never floods the host's logs. `stats()` says which processor dropped or failed how often.

        >>> pipe = Pipeline([keep_if(lambda r: r["status"] == "error")])
        >>> pipe({"status": "ok"}) is None, pipe.stats()["keep_if"]
        (True, {'dropped': 1, 'errors': 0})
    """

    def __init__(self, processors: Iterable[Processor] = ()) -> None:
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()  # only taken on the drop and error paths, never per record
        for processor in processors:
            self.append(processor)

    def append(self, processor: Processor) -> None:
        """Add a processor at the end."""
        if not callable(processor):
            raise TypeError(
                f"litelens: a processor must be callable (record -> record | None), got {processor!r}"
            )
        base = getattr(processor, "__name__", None) or type(processor).__name__
        taken = {slot.name for slot in self._slots}
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}#{n}"
        self._slots.append(_Slot(processor, name))

    @property
    def processors(self) -> list[Processor]:
        return [slot.processor for slot in self._slots]

    def __iter__(self) -> Iterator[Processor]:
        return iter(self.processors)

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(slot.name for slot in self._slots)}])"

    def __call__(self, record: Record) -> Record | None:
        for slot in self._slots:
            try:
                result = slot.processor(record)
            except Exception:
                self._failed(slot, "raised", exc_info=True)
                return None
            if result is None:
                with self._lock:
                    slot.dropped += 1
                return None
            if not isinstance(result, dict):
                # A processor that forgot to return the record (`return True`, a JSON string...): the
                # record cannot go on, and the next processor would only fail on it less clearly.
                self._failed(slot, f"returned {type(result).__name__}, not the record (a dict) or None")
                return None
            record = result
        return record

    def _failed(self, slot: _Slot, what: str, exc_info: bool = False) -> None:
        """Count a processor's error; log its first one only, so a broken processor never floods logs."""
        with self._lock:
            slot.errors += 1
            first, slot.warned = not slot.warned, True
        if first:
            log.warning(
                "litelens: processor %s %s; that record was dropped "
                "(further errors of this processor are only counted; see stats())",
                slot.name,
                what,
                exc_info=exc_info,
            )

    def stats(self) -> dict[str, dict[str, int]]:
        """`{processor name: {"dropped": n, "errors": n}}`, plus `"total"` over all processors."""
        with self._lock:
            out = {slot.name: {"dropped": slot.dropped, "errors": slot.errors} for slot in self._slots}
        for slot in self._slots:
            if isinstance(slot.processor, Pipeline):
                # A nested pipeline returns None for a record it dropped and for one its processor
                # failed on alike: its own totals say which, so errors are not counted as filtering.
                out[slot.name] = slot.processor.stats()["total"]
        out["total"] = {
            "dropped": sum(v["dropped"] for v in out.values()),
            "errors": sum(v["errors"] for v in out.values()),
        }
        return out


def _kinds(kinds: str | Iterable[str]) -> frozenset[str]:
    names = [k.strip().lower() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)]
    names = [k for k in names if k]
    if "all" in names:
        return frozenset(KINDS)
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(
            f"litelens: unknown redaction kind(s) {unknown}; known: {', '.join(KINDS)} "
            "(LITELENS_REDACT takes a comma list of these, or all/off)"
        )
    return frozenset(names)


def redact(
    kinds: str | Iterable[str] = KINDS,
    fields: Iterable[str] = REDACT_FIELDS,
    patterns: Mapping[str, str | re.Pattern[str]] | Iterable[tuple[str, str | re.Pattern[str]]] = (),
    placeholder: str = "[{kind}]",
) -> Processor:
    """Replace personal data and secrets in a record's content with typed placeholders like `[EMAIL]`.

    Kinds: `email`; `phone` (international `+...`, or national numbers written in groups -- a bare run of
    digits is taken for an order number, not a phone); `card` (13-19 digits passing the Luhn check);
    `iban` (passing the mod-97 check); `ip` (IPv4 and IPv6); `secret` (the credential shapes
    `litelens.credentials` already scrubs from URLs and errors -- provider keys, bearer tokens, keys in URL
    queries -- plus values under secret-named keys such as `password`). Checksums are what keep order
    numbers, invoice ids and dates from being taken for cards and IBANs.

    `fields` are top-level record keys; each is walked through nested dicts and lists: message content
    strings and content parts, tool-call arguments (JSON strings are parsed, redacted and re-encoded),
    metadata values, the error message. `patterns` adds your own: `{"employee": r"EMP-\\d{6}"}` replaces
    matches with `[EMPLOYEE]`. Dict keys are not redacted, only values.

    Containers are copied only where something changed; untouched parts of the record stay the very
    same objects.

        >>> r = redact()({"request": {"messages": [{"role": "user", "content": "I am ann@corp.io"}]}})
        >>> r["request"]["messages"][0]["content"]
        'I am [EMAIL]'
    """
    chosen = _kinds(kinds)
    pairs = patterns.items() if isinstance(patterns, Mapping) else patterns
    compiled = [
        (re.compile(p) if isinstance(p, str) else p, placeholder.format(kind=str(name).upper()))
        for name, p in pairs
    ]
    walker = Redactor(TextRedactor(chosen, compiled, placeholder), secret_keys="secret" in chosen)
    targets = tuple(fields)

    def redact_(record: Record) -> Record:
        walker.redact_fields(record, targets)
        return record

    return _named(redact_, "redact")


# --------------------------------------------------------------------------------------------------
# Content, size


def drop_content() -> Processor:
    """Remove request messages, input, instructions and tools and the response content; keep every number.

    The record then has the shape it has with `capture_content=False`: request parameters, usage,
    cost, timing, status and error stay. Use it to keep content out of storage for some calls only.
    On a span record (`litelens.otel.RedactingSpanExporter`) it removes the attributes that hold
    prompts, answers and tool definitions in any of the vocabularies litelens reads (GenAI conventions,
    OpenInference, OpenLLMetry, LiteLLM's) and the text of message events.

        >>> strip = drop_content()
        >>> strip({"request": {"messages": [], "parameters": {"temperature": 0}}, "response": {"id": "x"}})
        {'request': {'parameters': {'temperature': 0}}, 'response': None}
    """

    def drop_content_(record: Record) -> Record:
        request = record.get("request")
        if request is not None:
            params = request.get("parameters") if isinstance(request, Mapping) else None
            record["request"] = {"parameters": params if params is not None else {}}
        if "response" in record:
            record["response"] = None
        if record.get("attributes"):  # a span record: its content is in attributes and events
            _drop_span_content(record)
        return record

    return _named(drop_content_, "drop_content")


def _drop_span_content(record: Record) -> None:
    attributes = record["attributes"]
    if isinstance(attributes, Mapping):
        record["attributes"] = {k: v for k, v in attributes.items() if not semconv.is_content_attribute(k)}
    events = record.get("events")
    if isinstance(events, list):
        kept: list[Any] = []
        for event in events:
            attrs = event.get("attributes") if isinstance(event, Mapping) else None
            if isinstance(attrs, Mapping) and attrs:
                if event.get("name") in semconv.CONTENT_EVENTS:
                    attrs = {k: v for k, v in attrs.items() if k in semconv.CONTENT_EVENT_KEPT}
                else:
                    attrs = {k: v for k, v in attrs.items() if not semconv.is_content_attribute(k)}
                event = {**event, "attributes": attrs}
            kept.append(event)
        record["events"] = kept


def truncate(max_chars: int, fields: Iterable[str] = CONTENT_FIELDS) -> Processor:
    """Cut every string in `fields` to `max_chars` characters; the record's `truncated` names the cuts.

    The same cut, marker and bookkeeping as the size limits (`litelens.Limits`), at a smaller size you
    choose, e.g. to keep only the first lines of long prompts. JSON text (tool-call arguments) is cut
    inside, so it stays JSON. On a span record it cuts the content attributes and message events (what
    `drop_content` removes there), JSON text inside too:

        >>> r = truncate(5)({"request": {"messages": [{"content": "abcdefgh"}]}, "truncated": None})
        >>> r["request"]["messages"][0]["content"], r["truncated"]
        ('abcde…[truncated 3 chars]', ['request.messages[0].content'])
    """
    if max_chars < 0:
        raise ValueError(f"litelens: truncate(max_chars={max_chars}) must be 0 or more")
    targets = tuple(fields)

    def truncate_(record: Record) -> Record:
        cuts: list[str] = []
        for key in targets:
            if record.get(key):
                record[key] = _cap(record[key], max_chars, key, cuts)
        if record.get("attributes"):  # a span record: its content is in attributes and events
            _truncate_span(record, max_chars, cuts)
        if cuts:
            record["truncated"] = [*(record.get("truncated") or []), *cuts]
        return record

    return _named(truncate_, "truncate")


def _cap(value: Any, max_chars: int, path: str, cuts: list[str]) -> Any:
    """`rec.cap_strings`, with JSON text cut inside (see `_cap_text`)."""
    if isinstance(value, str):
        return _cap_text(value, max_chars, path, cuts)
    if isinstance(value, Mapping):
        return {k: _cap(v, max_chars, f"{path}.{k}", cuts) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cap(v, max_chars, f"{path}[{i}]", cuts) for i, v in enumerate(value)]
    return value


def _cap_text(value: str, max_chars: int, path: str, cuts: list[str]) -> str:
    """A string cut to `max_chars`; JSON text (tool-call arguments, `gen_ai.input.messages`) is cut
    inside and encoded again, so it stays JSON a reader can parse."""
    if len(value) <= max_chars:
        return value
    if value[:1] in "[{":
        try:
            parsed = json.loads(value)
        except ValueError:
            pass
        else:
            before = len(cuts)
            capped = rec.cap_strings(parsed, max_chars, path, cuts)
            return json.dumps(capped, ensure_ascii=False) if len(cuts) > before else value
    return rec.cap_strings(value, max_chars, path, cuts)


def _truncate_span(record: Record, max_chars: int, cuts: list[str]) -> None:
    """Cut the strings of a span record's content attributes and message events; JSON text (such as
    `gen_ai.input.messages`) is cut inside and encoded again, so it stays JSON a reader can parse."""
    own: list[str] = []

    def cut(attrs: Mapping[str, Any], keep: Callable[[str], bool], path: str) -> dict[str, Any]:
        out = dict(attrs)
        for key, value in attrs.items():
            if not keep(key) and isinstance(value, str):
                out[key] = _cap_text(value, max_chars, f"{path}{key}", own)
        return out

    attributes = record["attributes"]
    if isinstance(attributes, Mapping):
        record["attributes"] = cut(attributes, lambda k: not semconv.is_content_attribute(k), "")
    events = record.get("events")
    if isinstance(events, list):
        for i, event in enumerate(events):
            attrs = event.get("attributes") if isinstance(event, Mapping) else None
            if isinstance(attrs, Mapping) and attrs:
                if event.get("name") in semconv.CONTENT_EVENTS:  # a message: all but its few labels
                    attrs = cut(attrs, semconv.CONTENT_EVENT_KEPT.__contains__, f"events[{i}].")
                else:
                    attrs = cut(attrs, lambda k: not semconv.is_content_attribute(k), f"events[{i}].")
                events[i] = {**event, "attributes": attrs}
    if own:
        cuts.extend(own)
        if isinstance(record.get("attributes"), dict):
            record["attributes"][semconv.LITELENS_TRUNCATED] = list(own)


# --------------------------------------------------------------------------------------------------
# Sampling and filtering


def trace_fraction(trace_id: str) -> float:
    """A trace id's fixed place in [0, 1): every process that samples at rate r keeps the same traces.

    The id is hashed rather than read as a number because LiteLLM's trace ids are UUIDs, whose fixed
    version and variant bits would skew a fraction read straight from the digits.
    """
    digest = hashlib.blake2b(trace_id.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


def sample(rate: float, keep_errors: bool = True, keep_slow_ms: float | None = None) -> Processor:
    """Keep a fraction `rate` of traces, whole: the decision is a hash of the trace id, not a coin.

    All calls of a trace (an agent run, a conversation) are kept or dropped together, in this process and
    in any other sampling at the same rate. With `keep_errors` every record whose status is not ok (error
    or cancelled) is kept as well, and with `keep_slow_ms` every call that took at least that long --
    these are kept on their own, as the rest of their trace may already have been dropped.

        >>> keep = sample(0.1, keep_slow_ms=5000)
        >>> keep({"trace_id": "a" * 32, "status": "ok", "duration_ms": 9000.0}) is not None
        True
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"litelens: sample rate {rate!r} must be between 0 and 1")

    def sample_(record: Record) -> Record | None:
        if rate >= 1.0:
            return record
        if keep_errors and record.get("status") not in ("ok", None):
            return record
        if keep_slow_ms is not None and (record.get("duration_ms") or 0.0) >= keep_slow_ms:
            return record
        key = record.get("trace_id") or record.get("call_id")
        if not key:
            return record  # nothing to decide on consistently: keeping is the safe side
        return record if trace_fraction(str(key)) < rate else None

    return _named(sample_, f"sample({rate:g})")


def keep_if(predicate: Callable[[Record], bool]) -> Processor:
    """Keep only the records for which `predicate(record)` is true.

    >>> only_prod = keep_if(lambda r: r.get("environment") == "prod")
    >>> only_prod({"environment": "dev"}) is None
    True
    """

    def keep_if_(record: Record) -> Record | None:
        return record if predicate(record) else None

    return _named(keep_if_, "keep_if")


def drop_if(predicate: Callable[[Record], bool]) -> Processor:
    """Drop the records for which `predicate(record)` is true (health checks, a noisy model...).

    >>> no_embeddings = drop_if(lambda r: r.get("call_type") == "embedding")
    >>> no_embeddings({"call_type": "embedding"}) is None
    True
    """

    def drop_if_(record: Record) -> Record | None:
        return None if predicate(record) else record

    return _named(drop_if_, "drop_if")


_RECORD_FIELDS = frozenset(
    {
        "session_id",
        "end_user",
        "user_id",
        "tags",
        "service",
        "environment",
        "model_group",
        "deployment_id",
        "parent_span_id",
    }
)


def enrich(
    fields: Mapping[str, Any] | None = None, fn: Callable[[Record], Mapping[str, Any] | None] | None = None
) -> Processor:
    """Add fields to every record: fixed ones (`fields`) and computed ones (`fn(record)`).

    A key naming one of the record's own descriptive fields (`service`, `environment`, `tags`,
    `session_id`, `user_id`, `end_user`, ...) sets that field; any other key goes into `metadata`, so
    the record keeps its schema. Later values win: `fn`'s over `fields`', both over what was there.

        >>> add = enrich({"environment": "prod", "region": "eu-west-1"},
        ...              fn=lambda r: {"expensive": (r.get("cost_usd") or 0) > 0.01})
        >>> add({"environment": None, "metadata": {}, "cost_usd": 0.02})
        {'environment': 'prod', 'metadata': {'region': 'eu-west-1', 'expensive': True}, 'cost_usd': 0.02}
    """
    fixed = dict(fields or {})

    def enrich_(record: Record) -> Record:
        extra = {**fixed, **(fn(record) or {})} if fn is not None else fixed
        meta: dict[str, Any] | None = None
        for key, value in extra.items():
            if key in _RECORD_FIELDS:
                record[key] = value
            else:
                if meta is None:
                    meta = dict(record.get("metadata") or {})
                meta[key] = value
        if meta is not None:
            record["metadata"] = meta
        return record

    return _named(enrich_, "enrich")


# --------------------------------------------------------------------------------------------------
# Configuration from the environment


# The tag a LiteLLM proxy puts on the calls of its health checks (`/health`, the background checks).
HEALTH_CHECK_TAG = "litellm-internal-health-check"


def is_health_check_tags(tags: Any) -> bool:
    """Whether a call's tags (a record's `tags`, a LiteLLM payload's `request_tags`) mark it as one of a
    LiteLLM proxy's own health checks."""
    return isinstance(tags, list) and HEALTH_CHECK_TAG in tags


def _is_health_check(record: Record) -> bool:
    return is_health_check_tags(record.get("tags"))


def drop_health_checks() -> Processor:
    """Drop the records of a LiteLLM proxy's own health checks, which no user made.

    They are real provider calls, billed, and a failing one says a deployment is down, so they are
    recorded unless this runs (`LITELENS_DROP_HEALTH_CHECKS=true`); the proxy tags them
    `litellm-internal-health-check`.

    >>> drop_health_checks()({"tags": ["litellm-internal-health-check"]}) is None
    True
    """
    return _named(drop_if(_is_health_check), "drop_health_checks")


def from_settings(settings: Settings) -> list[Processor]:
    """The processors the settings ask for (`LITELENS_DROP_HEALTH_CHECKS`, `LITELENS_SAMPLE_RATE`,
    `LITELENS_DROP_CONTENT`, `LITELENS_REDACT`), in the order that costs least: dropping and sampling
    first, so dropped records are never redacted."""
    processors: list[Processor] = []
    if settings.drop_health_checks:
        processors.append(drop_health_checks())
    if settings.sample_rate < 1.0:
        processors.append(sample(settings.sample_rate, keep_errors=settings.sample_keep_errors))
    if settings.drop_content:
        processors.append(drop_content())
    if settings.redact:
        processors.append(redact(settings.redact))
    return processors


def from_env(env: Mapping[str, str] | None = None) -> list[Processor]:
    """`from_settings(Settings.from_env(env))`: what a LiteLLM proxy gets with no code.

    >>> [p.__name__ for p in from_env({"LITELENS_SAMPLE_RATE": "0.2", "LITELENS_REDACT": "all"})]
    ['sample(0.2)', 'redact']
    """
    return from_settings(Settings.from_env(env))
