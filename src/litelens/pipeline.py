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
# Every built-in kind needs one of these characters, except the credential shapes that may be all
# letters after their prefix (checked with `in`). A character class lets the regex engine scan in C,
# so most short strings ("assistant", "stop") and digit-free prose leave after one cheap search.
_LOUD = re.compile(r"[0-9@:=_\-]")
_IP6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![\w:])")


# Where a match of `record.SECRET_TEXT` can start (keep in step with it; a test checks every shape):
# (mark, ((characters before the mark, the two letters found there), ...)) -- sk-, rk-, pk-, xox?-,
# hf_, ll_, gh?_ -- plus the words Bearer, Basic, AKIA, AIza, and the names of URL parameters.
_SECRET_MARKS = (
    ("-", ((2, frozenset({"sk", "rk", "pk"})), (4, frozenset({"xo"})))),
    ("_", ((2, frozenset({"hf", "ll"})), (3, frozenset({"gh"})))),
)
# The longest parameter name SECRET_TEXT knows in URL queries ("access_token").
_MAX_PARAM_NAME = 12


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
        self.phone = "phone" in kinds
        self.card = "card" in kinds
        # Nothing built in matches fewer characters ("1.1.1.1", "a@b.co"); user patterns may.
        self.min_len = 0 if patterns else 6
        self.gated = not patterns
        self._spans: dict[str, str] = {}

    def __call__(self, s: str) -> str:
        if len(s) < self.min_len:
            return s
        if (
            self.gated
            and _LOUD.search(s) is None
            and "Bearer" not in s
            and "Basic" not in s
            and "AKIA" not in s
            and "AIza" not in s
        ):
            return s
        return self.scan(s)

    def scan(self, s: str) -> str:
        """Every configured kind replaced in `s` (no short-cuts: the joined scan calls this directly)."""
        out = s
        for pattern, ph in self.patterns:
            out = pattern.sub(ph, out)
        if self.secret:
            out = self._secrets(out)
        if self.email and "@" in out:
            out = self._emails(out)
        if self.numeric:  # the span scan is itself the cheapest test for "has a digit"
            out = self._numbers(out)
        if self.ip and ":" in out and _IP6_HINT.search(out):
            out = _IP6.sub(self._ip6, out)
        return out

    def _secrets(self, s: str) -> str:
        """`SECRET_TEXT.sub`, tried only where a match can start.

        The credential regex is an alternation of `\\b`-anchored shapes, which the regex engine tries at
        every position (about 0.3 µs per character). Every match starts at a few letters before a `-`
        (`sk-`, `xoxb-`) or `_` (`ghp_`, `hf_`), at `Bearer`, `Basic`, `AKIA`, `AIza`, or right after the
        `?`/`&`/`;` before a `name=`. Single characters are found by `str.find` at memchr speed, so the
        text is scanned a few times in C and the regex is matched only at those starts. Leftmost-first,
        like `sub`, so the result is the same.
        """
        starts: list[int] = []
        for mark, rules in _SECRET_MARKS:
            i = s.find(mark)
            while i != -1:
                for back, prefixes in rules:
                    if i >= back and s[i - back : i - back + 2] in prefixes:
                        starts.append(i - back)
                        break
                i = s.find(mark, i + 1)
        for first, words in (("B", ("Bearer", "Basic")), ("A", ("AKIA", "AIza"))):
            i = s.find(first)  # a capital is rarer than most letters: find it, then compare the word
            while i != -1:
                if s.startswith(words, i):
                    starts.append(i)
                i = s.find(first, i + 1)
        i = s.find("=")
        while i != -1:
            lo = max(i - _MAX_PARAM_NAME - 1, 0)
            q = max(s.rfind("?", lo, i), s.rfind("&", lo, i), s.rfind(";", lo, i))
            if q != -1:
                starts.append(q + 1)
            i = s.find("=", i + 1)
        if not starts:
            return s
        parts: list[str] = []
        done = 0
        match = rec.SECRET_TEXT.match
        for start in sorted(set(starts)):
            if start < done:
                continue
            m = match(s, start)
            if m is not None:
                parts += (s[done:start], self._secret(m))
                done = m.end()
        if not parts:
            return s
        parts.append(s[done:])
        return "".join(parts)

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
            if iban and a >= 2 and "A" <= s[a - 1] <= "Z" and "A" <= s[a - 2] <= "Z":
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
        # Dates, amounts and the like recur from record to record: remember what each span became.
        cached = self._spans.get(text)
        if cached is not None:
            return text if cached is _SAME else cached
        out = self._span(text)
        if len(self._spans) >= 4096:
            self._spans.clear()
        self._spans[text] = _SAME if out is text else out
        return out

    def _span(self, text: str) -> str:
        # Most spans in prose are dates, amounts, order and ticket numbers: tell them apart by counting
        # before running a regex. The counts bound every match inside the span, so skipping is exact.
        core = text.rstrip(" ")
        out = text
        if self.ip and core.count(".") >= 3:
            out = _IPV4.sub(self._ipv4_match, out)
        digits = len(core) - sum(map(core.count, " ().+-"))
        if digits < 7:
            return text if out == text else out
        if self.card and digits >= 13 and _CARD.search(out):
            out = _CARD.sub(self._card_match, out)
        # A bare run of digits is no phone (see _PHONE), nor is a whole span that is a date or an amount.
        if (
            self.phone
            and not core.isdigit()
            and _PHONE.search(out)
            and not (_DATE.fullmatch(core) or _THOUSANDS.fullmatch(core))
        ):
            out = _PHONE.sub(self._phone_match, out)
        return text if out == text else out

    def _ipv4_match(self, m: re.Match[str]) -> str:
        return self.ph["ip"] if _ipv4_ok(m.group(0)) else m.group(0)

    def _card_match(self, m: re.Match[str]) -> str:
        found = m.group(0)
        return self.ph["card"] if luhn_ok(found.replace(" ", "").replace("-", "")) else found

    def _phone_match(self, m: re.Match[str]) -> str:
        return self.ph["phone"] if _phone_ok(m.group(0)) else m.group(0)

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
# Joins the strings of a record for one scan. No built-in pattern matches "&" or NUL, so none crosses
# it, and on either side it looks like the end of a string: not a word character, digit, letter or
# dot, and not one of the "?&;" that may precede a URL parameter.
_SEP = "&\x00"
_SAME = "\x00same"  # a cache entry meaning "nothing to redact": the input itself is returned
_CACHE_MAX_STRING = 16_384  # longer strings are not remembered
_CACHE_MAX_CHARS = 2_000_000  # characters of input remembered by one redact() processor, at most
_SCALARS = frozenset({int, float, bool, type(None)})


class _Redactor:
    """Walks values copy-on-write: untouched containers are returned as they are.

    Copy-on-write matters beyond speed: a record's message list is LiteLLM's own list (the record
    references it, it does not copy it), so changing it in place would change what LiteLLM and other
    callbacks see.
    """

    def __init__(self, text: _TextRedactor, secret_keys: bool) -> None:
        self.text = text
        self.min_len = text.min_len
        # User patterns may match across the separator of the joined scan: not with them.
        self.joined = not text.patterns
        self.secret_keys = secret_keys
        self.secret_ph = text.ph["secret"]
        self._key_cache: dict[str, bool] = {}
        # Results by input string. Records repeat a lot of text: roles, tool names and ids, and above all
        # system prompts and the conversation so far, which every call of a chat sends again.
        self._cache: dict[str, str] = {}
        self._cache_chars = 0
        self._clean: dict[str, None] = {}
        self._clean_chars = 0

    def _is_secret_key(self, key: str) -> bool:
        known = self._key_cache.get(key)
        if known is None:
            known = rec.is_secret_key(key)
            if len(self._key_cache) < 4096:
                self._key_cache[key] = known
        return known

    # -- the fast path: one scan over all the text of a record ---------------------------------------

    def redact_fields(self, record: Record, fields: tuple[str, ...]) -> None:
        """Redact `record[field]` for each field, in place at the top level, copy-on-write below.

        Scanning each string on its own costs a dozen calls per string (a record has dozens, most of
        them short), so the string leaves of all the fields are joined with a separator no pattern can
        cross and scanned once. Most records have nothing to redact, and are done then. Otherwise the
        joined result, cut back at the separators, says what each changed string becomes, and a walk
        puts those in place. A separator inside a string (or user patterns, which could cross it)
        sends the record down the string-by-string path.
        """
        leaves: list[str] = []
        flagged = False
        texts: dict[str, str] | None = None
        # Per field: where its strings end in `leaves`, and whether it must be walked anyway.
        spans: list[tuple[str, int, bool]] = []
        if self.joined:
            for field in fields:
                value = record.get(field)
                if value:
                    needs_walk = self.collect(value, leaves, 0)
                    flagged |= needs_walk
                    spans.append((field, len(leaves), needs_walk))
            if leaves:
                joined = _SEP.join(leaves)
                if joined.count(_SEP) == len(leaves) - 1:
                    out = self.text.scan(joined)
                    if out is joined:
                        texts = {}
                        self._remember_clean(leaves)
                    else:
                        parts = out.split(_SEP)
                        if len(parts) == len(leaves):
                            texts = {old: new for old, new in zip(leaves, parts, strict=True) if new != old}
                            self._remember_clean([old for old in leaves if old not in texts])
            else:
                texts = {}
            if texts == {} and not flagged:
                return
            if texts is not None:  # walk only the fields that hold a changed string or need the walk
                start, chosen = 0, []
                for field, end, needs_walk in spans:
                    if needs_walk or any(leaf in texts for leaf in leaves[start:end]):
                        chosen.append(field)
                    start = end
                fields = tuple(chosen)
        for field in fields:
            value = record.get(field)
            if value:
                new = self.value(value, 0, texts)
                if new is not value:
                    record[field] = new

    def _remember_clean(self, leaves: list[str]) -> None:
        """Strings found to hold nothing to redact are skipped when they come again: a chat sends its
        system prompt and the whole conversation so far with every call."""
        clean = self._clean
        for leaf in leaves:
            size = len(leaf)
            if size > _CACHE_MAX_STRING:
                continue
            if self._clean_chars + size > _CACHE_MAX_CHARS:  # full: start over rather than track age
                clean.clear()
                self._clean_chars = 0
            clean[leaf] = None
            self._clean_chars += size

    def collect(self, value: Any, leaves: list[str], depth: int) -> bool:
        """Append the strings `value` holds (those inside JSON text too) to `leaves`. True when the value
        needs the walk whatever its text says: a secret-named key, too deep, an object to dump."""
        kind = type(value)
        if kind is str:
            return self._collect_string(value, leaves, depth)
        if kind in _SCALARS:
            return False
        if depth > _MAX_DEPTH:
            return True
        # Exact types first: an isinstance() against an ABC costs more than the rest of a node.
        is_list = kind is list or kind is tuple
        if not is_list and (kind is dict or isinstance(value, Mapping)):
            if not self.secret_keys:
                return self._collect_items(value.values(), leaves, depth)
            flagged = False
            items: list[Any] = []
            cache = self._key_cache
            for key, item in value.items():
                if item:
                    secret = cache.get(key)
                    if secret is None:
                        secret = isinstance(key, str) and self._is_secret_key(key)
                    if secret:
                        flagged = True
                        continue
                items.append(item)
            return self._collect_items(items, leaves, depth) or flagged
        if is_list or isinstance(value, (list, tuple)):
            return self._collect_items(value, leaves, depth)
        return isinstance(value, str) or callable(getattr(value, "model_dump", None))

    def _collect_items(self, items: Iterable[Any], leaves: list[str], depth: int) -> bool:
        flagged = False
        min_len = self.min_len
        clean = self._clean
        for item in items:
            t = type(item)
            if t is str:
                if len(item) >= min_len and item not in clean:
                    if item[0] in "{[":
                        flagged |= self._collect_string(item, leaves, depth + 1)
                    else:
                        leaves.append(item)
            elif t not in _SCALARS:
                flagged |= self.collect(item, leaves, depth + 1)
        return flagged

    def _collect_string(self, s: str, leaves: list[str], depth: int) -> bool:
        if len(s) < self.min_len:
            return False
        parsed = _json_container(s)
        if parsed is None:
            leaves.append(s)
            return False
        return self.collect(parsed, leaves, depth)

    # -- the walk ----------------------------------------------------------------------------------

    def string(self, s: str, texts: Mapping[str, str] | None = None) -> str:
        if texts is not None:
            return self._string(s, texts)
        cached = self._cache.get(s)
        if cached is not None:
            return s if cached is _SAME else cached
        out = self._string(s, None)
        size = len(s)
        if size <= _CACHE_MAX_STRING:
            if self._cache_chars + size > _CACHE_MAX_CHARS:  # full: start over rather than track age
                self._cache.clear()
                self._cache_chars = 0
            self._cache[s] = _SAME if out is s else out
            self._cache_chars += size
        return out

    def _string(self, s: str, texts: Mapping[str, str] | None) -> str:
        # Tool-call arguments (and other JSON carried as text) are parsed, so a JSON escape can neither
        # hide a match nor be cut in half by a replacement, and secret-named keys inside are seen.
        parsed = _json_container(s)
        if parsed is not None:
            new = self.value(parsed, 1, texts)
            return s if new is parsed else json.dumps(new, ensure_ascii=False)
        if texts is not None:
            return texts.get(s, s)
        return self.text(s)

    def value(self, value: Any, depth: int = 0, texts: Mapping[str, str] | None = None) -> Any:
        """`value` with its strings redacted: by `self.text`, or as `texts` (from the joined scan) says."""
        kind = type(value)
        if kind is str:
            return self.string(value, texts)
        if kind in _SCALARS:
            return value
        if isinstance(value, str):
            return self.string(str(value), texts)
        if depth > _MAX_DEPTH:
            return self.secret_ph  # too deep to look at: not looking must not mean leaking
        # The loops below handle string and scalar leaves inline: most nodes of a record are leaves,
        # and a call per leaf is a large part of the walk's cost.
        string = self.string
        is_list = kind is list or kind is tuple
        if not is_list and (kind is dict or isinstance(value, Mapping)):
            out: dict[Any, Any] | None = None
            cache = self._key_cache
            secret_keys = self.secret_keys
            for key, item in value.items():
                secret = cache.get(key) if secret_keys else False
                if secret is None:
                    secret = isinstance(key, str) and self._is_secret_key(key)
                t = type(item)
                if secret and item:
                    new: Any = self.secret_ph
                elif t is str:
                    new = string(item, texts)
                elif t in _SCALARS:
                    continue
                else:
                    new = self.value(item, depth + 1, texts)
                if new is not item:
                    if out is None:
                        out = dict(value)
                    out[key] = new
            return value if out is None else out
        if is_list or isinstance(value, (list, tuple)):
            copied: list[Any] | None = None
            for i, item in enumerate(value):
                t = type(item)
                if t is str:
                    new = string(item, texts)
                elif t in _SCALARS:
                    continue
                else:
                    new = self.value(item, depth + 1, texts)
                if new is not item:
                    if copied is None:
                        copied = list(value)
                    copied[i] = new
            return value if copied is None else copied
        dump = getattr(value, "model_dump", None)  # a pydantic object would be encoded as its fields
        if callable(dump):
            try:
                return self.value(dump(), depth + 1, None)
            except Exception:
                return self.secret_ph
        return value


def _json_container(s: str) -> Any:
    """The dict or list a string holds as JSON text, else None (cheap for the strings that are not)."""
    if len(s) < 2 or s[0] not in "{[":
        return None
    try:
        parsed = json.loads(s)
    except ValueError:
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


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
        walker.redact_fields(record, targets)
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
