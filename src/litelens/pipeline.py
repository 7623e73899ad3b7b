"""Record processors: plain callables `record -> record | None`, run in order before a record leaves.

A processor returns the (possibly changed) record, or None to drop it -- structlog's model, so a user's
own function is a processor without subclassing anything. The built-ins here are factories that return
such callables: `redact`, `drop_content`, `truncate`, `sample`, `enrich`, `keep_if`, `drop_if`. A
`Pipeline` runs a list of them and counts, per processor, the records it dropped and the errors it raised.

    >>> from litelens.pipeline import Pipeline, redact, sample
    >>> pipe = Pipeline([sample(0.25), redact()])
    >>> pipe({"trace_id": "0" * 31 + "1", "status": "error", "error": {"message": "mail bob@example.com"}})
    {'trace_id': '00000000000000000000000000000001', 'status': 'error', 'error': {'message': 'mail [EMAIL]'}}

Everything runs on the transport's background thread, never on the caller's, but every microsecond here
is still CPU taken from the host process: the redaction fast paths below exist because a Python regex
scans text at several nanoseconds per character, so a record must not be scanned once per kind.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from litelens import record as rec
from litelens.config import Settings

__all__ = [
    "KINDS",
    "Pipeline",
    "Processor",
    "drop_content",
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

KINDS = ("email", "phone", "card", "iban", "ip", "secret")
"""The built-in kinds `redact` knows. `LITELENS_REDACT=all` means all of them."""

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

    A processor that returns None drops the record (later processors do not see it). One that raises
    also drops it: the safe side, since the failing processor may have been the one that redacts. The
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
                with self._lock:
                    slot.errors += 1
                    first, slot.warned = not slot.warned, True
                if first:
                    log.warning(
                        "litelens: processor %s raised; that record was dropped "
                        "(further errors of this processor are only counted; see stats())",
                        slot.name,
                        exc_info=True,
                    )
                return None
            if result is None:
                with self._lock:
                    slot.dropped += 1
                return None
            record = result
        return record

    def stats(self) -> dict[str, dict[str, int]]:
        """`{processor name: {"dropped": n, "errors": n}}`, plus `"total"` over all processors."""
        with self._lock:
            out = {slot.name: {"dropped": slot.dropped, "errors": slot.errors} for slot in self._slots}
        out["total"] = {
            "dropped": sum(v["dropped"] for v in out.values()),
            "errors": sum(v["errors"] for v in out.values()),
        }
        return out


# --------------------------------------------------------------------------------------------------
# redact: the text side

# Every regex here is only ever run on text that a cheap `in` check or a short span has already
# qualified, so most strings are never scanned by a regex at all.
_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}"
)
# A run of the characters phone numbers, card numbers and IPv4 addresses are made of, starting where one
# could start. The first item is a character class, which lets the regex engine skip ahead in C.
# Short runs ("3 items") are rejected inside the regex engine, not in Python; the second branch keeps
# the compact IBAN "GB29NWBK..." whose digit run is cut short by letters.
_SPAN = re.compile(r"[+(0-9](?:[0-9 ().+\-]{6,}|(?<=[A-Z]{2}[0-9])[0-9](?=[A-Z]))")
_IPV4 = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])")
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")
_PHONE = re.compile(
    r"(?<![0-9+])(?:"
    r"\+[0-9]{7,15}"  # E.164, compact
    r"|(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{1,4}\)[ .\-]?|[0-9]{1,4}[ .\-])(?:[0-9]{2,4}[ .\-]){0,3}[0-9]{2,4}"
    r")(?![0-9])"
)
_DATE = re.compile(r"[0-9]{4}[\-.][0-9]{1,2}[\-.][0-9]{1,2}|[0-9]{1,2}[\-.][0-9]{1,2}[\-.][0-9]{2,4}")
_THOUSANDS = re.compile(r"[0-9]{1,3}(?:([ .])[0-9]{3})(?:\1[0-9]{3})*")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}")
_IP6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IP6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![\w:])")


def _may_hold_secret(s: str) -> bool:
    """A cheaper superset of `record.SECRET_TEXT_HINTS`: eight `in` tests instead of sixteen.

    "k-" covers sk-/rk-/pk-, "_" covers gh?_/hf_/ll_; the test in test_pipeline checks every shape of
    the secret regex still gets past this gate.
    """
    return (
        "k-" in s
        or "_" in s
        or "=" in s
        or "xox" in s
        or "AKIA" in s
        or "AIza" in s
        or "Bearer" in s
        or "Basic" in s
    )


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (and 9 in 10 random numbers do not)."""
    if len(set(digits)) == 1:  # 0000 0000 0000 0000 passes Luhn but is nobody's card
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check: a random 15-34 character string passes it about once in 97 tries."""
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ipv4_ok(text: str) -> bool:
    return all(int(part) <= 255 for part in text.split("."))


def _phone_ok(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15:
        return False
    if text[0] == "+":
        return True
    # Dates and grouped amounts are shaped like phone numbers; they are far more common in prompts.
    return not (_DATE.fullmatch(text) or _THOUSANDS.fullmatch(text))


class _TextRedactor:
    """Finds and replaces the configured kinds in one string; returns the same object when nothing matched."""

    def __init__(
        self, kinds: frozenset[str], patterns: list[tuple[re.Pattern[str], str]], placeholder: str
    ) -> None:
        self.kinds = kinds
        self.patterns = patterns
        self.ph = {kind: placeholder.format(kind=kind.upper()) for kind in KINDS}
        self.email = "email" in kinds
        self.secret = "secret" in kinds
        self.ip = "ip" in kinds
        self.numeric = bool(kinds & {"phone", "card", "ip", "iban"})
        # Nothing built in matches fewer characters ("1.1.1.1", "a@b.co"); user patterns may.
        self.min_len = 0 if patterns else 6

    def __call__(self, s: str) -> str:
        if len(s) < self.min_len:
            return s
        out = s
        for pattern, ph in self.patterns:
            out = pattern.sub(ph, out)
        if self.secret and _may_hold_secret(out):
            out = rec.SECRET_TEXT.sub(self._secret, out)
        if self.email and "@" in out:
            out = self._emails(out)
        if self.numeric:  # the span scan is itself the cheapest test for "has a digit"
            out = self._numbers(out)
        if self.ip and ":" in out and _IP6_HINT.search(out):
            out = _IP6.sub(self._ip6, out)
        return out

    def _secret(self, match: re.Match[str]) -> str:
        found = match.group(0)
        ph = self.ph["secret"]
        if found.startswith(("Bearer", "Basic")):  # keep the scheme: it says what kind of credential it was
            return found.split()[0] + " " + ph
        eq = found.find("=")
        return found[: eq + 1] + ph if eq > 0 else ph

    def _emails(self, s: str) -> str:
        # An unanchored email regex tries every position of the string; start near each '@' instead.
        parts: list[str] = []
        done = 0
        at = s.find("@")
        while at != -1:
            m = _EMAIL.search(s, max(done, at - 128), at + 256)
            if m is not None and m.start() <= at < m.end():
                parts += (s[done : m.start()], self.ph["email"])
                done = m.end()
            at = s.find("@", max(at + 1, done))
        if not parts:
            return s
        parts.append(s[done:])
        return "".join(parts)

    def _numbers(self, s: str) -> str:
        parts: list[str] = []
        done = 0
        iban = "iban" in self.kinds
        for span in _SPAN.finditer(s):
            a, b = span.span()
            if a < done:
                continue
            # An IBAN starts with two capital letters right before its check digits.
            if iban and a >= 2 and s[a - 2 : a].isupper() and s[a - 2 : a].isalpha():
                m = _IBAN.match(s, a - 2)
                if m is not None and not (a >= 3 and s[a - 3].isalnum()):
                    cut = self._iban_cut(m.group(0))
                    if cut:
                        parts += (s[done : a - 2], self.ph["iban"])
                        done = a - 2 + cut
                        continue
            if b - a < 7:
                continue
            text = span.group(0)
            new = self._in_span(text)
            if new is not text:
                parts += (s[done:a], new)
                done = b
        if not parts:
            return s
        parts.append(s[done:])
        return "".join(parts)

    def _iban_cut(self, text: str) -> int:
        """Length of the longest prefix of `text`, ending at a group boundary, that is a valid IBAN."""
        ends = [len(text)] + [i for i in range(len(text) - 1, 14, -1) if text[i] == " "]
        for end in ends:
            if iban_ok(text[:end]):
                return end
        return 0

    def _in_span(self, text: str) -> str:
        kinds = self.kinds
        out = text
        if "ip" in kinds and "." in out:
            out = _IPV4.sub(lambda m: self.ph["ip"] if _ipv4_ok(m.group(0)) else m.group(0), out)
        if "card" in kinds:
            out = _CARD.sub(
                lambda m: self.ph["card"] if luhn_ok(re.sub(r"[ \-]", "", m.group(0))) else m.group(0), out
            )
        if "phone" in kinds:
            out = _PHONE.sub(lambda m: self.ph["phone"] if _phone_ok(m.group(0)) else m.group(0), out)
        return text if out == text else out

    def _ip6(self, match: re.Match[str]) -> str:
        found = match.group(0)
        try:
            ipaddress.IPv6Address(found.split("%", 1)[0])
        except ValueError:
            return found
        return self.ph["ip"]


# --------------------------------------------------------------------------------------------------
# redact: the structure side

_MAX_DEPTH = 48
_SCALARS = frozenset({int, float, bool, type(None)})


class _Redactor:
    """Walks values copy-on-write: untouched containers are returned as they are.

    Copy-on-write matters beyond speed: a record's message list is LiteLLM's own list (the record
    references it, it does not copy it), so changing it in place would change what LiteLLM and other
    callbacks see.
    """

    def __init__(self, text: _TextRedactor, secret_keys: bool) -> None:
        self.text = text
        self.secret_keys = secret_keys
        self.secret_ph = text.ph["secret"]
        self._key_cache: dict[str, bool] = {}

    def _is_secret_key(self, key: str) -> bool:
        known = self._key_cache.get(key)
        if known is None:
            known = rec.is_secret_key(key)
            if len(self._key_cache) < 4096:
                self._key_cache[key] = known
        return known

    def string(self, s: str) -> str:
        # Tool-call arguments (and other JSON carried as text) are parsed, so a JSON escape can neither
        # hide a match nor be cut in half by a replacement, and secret-named keys inside are seen.
        if s[:1] in ("{", "[") and len(s) >= 2:
            try:
                parsed = json.loads(s)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                new = self.value(parsed, 1)
                return s if new is parsed else json.dumps(new, ensure_ascii=False)
        return self.text(s)

    def value(self, value: Any, depth: int = 0) -> Any:
        kind = type(value)
        if kind is str:
            return self.string(value)
        if kind in _SCALARS:
            return value
        if isinstance(value, str):
            return self.string(value)
        if depth > _MAX_DEPTH:
            return self.secret_ph  # too deep to look at: not looking must not mean leaking
        if kind is dict or isinstance(value, Mapping):
            out: dict[Any, Any] | None = None
            cache = self._key_cache
            for key, item in value.items():
                secret = cache.get(key) if self.secret_keys else False
                if secret is None:
                    secret = isinstance(key, str) and self._is_secret_key(key)
                if secret and item:
                    new: Any = self.secret_ph
                else:
                    new = self.value(item, depth + 1)
                if new is not item:
                    if out is None:
                        out = dict(value)
                    out[key] = new
            return value if out is None else out
        if kind is list or isinstance(value, (list, tuple)):
            copied: list[Any] | None = None
            for i, item in enumerate(value):
                new = self.value(item, depth + 1)
                if new is not item:
                    if copied is None:
                        copied = list(value)
                    copied[i] = new
            return value if copied is None else copied
        dump = getattr(value, "model_dump", None)  # a pydantic object would be encoded as its fields
        if callable(dump):
            try:
                return self.value(dump(), depth + 1)
            except Exception:
                return self.secret_ph
        return value


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
    `litelens.record` already scrubs from URLs and errors -- provider keys, bearer tokens, keys in URL
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
    walker = _Redactor(_TextRedactor(chosen, compiled, placeholder), secret_keys="secret" in chosen)
    targets = tuple(fields)

    def redact_(record: Record) -> Record:
        for key in targets:
            value = record.get(key)
            if value:
                new = walker.value(value)
                if new is not value:
                    record[key] = new
        return record

    return _named(redact_, "redact")


# --------------------------------------------------------------------------------------------------
# Content, size


def drop_content() -> Processor:
    """Remove request messages, input and tools and the response content; keep every number.

    The record then has the shape it has with `capture_content=False`: request parameters, usage,
    cost, timing, status and error stay. Use it to keep content out of storage for some calls only:

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
        return record

    return _named(drop_content_, "drop_content")


def truncate(max_chars: int, fields: Iterable[str] = CONTENT_FIELDS) -> Processor:
    """Cut every string in `fields` to `max_chars` characters; the record's `truncated` names the cuts.

    The same cut, marker and bookkeeping as the size limits (`litelens.Limits`), at a smaller size you
    choose, e.g. to keep only the first lines of long prompts:

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
                record[key] = rec.cap_strings(record[key], max_chars, key, cuts)
        if cuts:
            record["truncated"] = [*(record.get("truncated") or []), *cuts]
        return record

    return _named(truncate_, "truncate")


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


def from_settings(settings: Settings) -> list[Processor]:
    """The processors the settings ask for (`LITELENS_SAMPLE_RATE`, `LITELENS_DROP_CONTENT`,
    `LITELENS_REDACT`), in the order that costs least: sampling first, so dropped records are never
    redacted."""
    processors: list[Processor] = []
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
