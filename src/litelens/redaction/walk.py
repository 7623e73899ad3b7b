"""Walking a record's fields for `redact`: one joined scan, then copy-on-write replacement.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from litelens import credentials
from litelens import record as rec
from litelens.redaction.text import SAME, TextRedactor

__all__ = ["Redactor"]

Record = rec.Record

_MAX_DEPTH = 48
# Joins the strings of a record for one scan. No built-in pattern matches "&" or NUL, so none crosses
# it, and on either side it looks like the end of a string: not a word character, digit, letter or
# dot, and not one of the "?&;" that may precede a URL parameter.
_SEP = "&\x00"
_CACHE_MAX_STRING = 16_384  # longer strings are not remembered
_CACHE_MAX_CHARS = 2_000_000  # characters of input remembered by one redact() processor, at most
_SCALARS = frozenset({int, float, bool, type(None)})
# Walked as lists: a set of strings in metadata is encoded as a JSON list, so its strings must be seen.
_SEQUENCES = (list, tuple, set, frozenset)


class Redactor:
    """Walks values copy-on-write: untouched containers are returned as they are.

    Copy-on-write matters beyond speed: a record's message list is LiteLLM's own list (the record
    references it, it does not copy it), so changing it in place would change what LiteLLM and other
    callbacks see.
    """

    def __init__(self, text: TextRedactor, secret_keys: bool) -> None:
        self.text = text
        self.min_len = text.min_len
        # User patterns may match across the separator of the joined scan: not with them.
        self.joined = not text.patterns
        self.secret_keys = secret_keys
        self.secret_ph = text.ph["secret"]
        self._key_cache: dict[Any, bool] = {}
        self._safe_keys: set[Any] = set()  # the keys of `_key_cache` that name no secret
        # Results by input string. Records repeat a lot of text: roles, tool names and ids, and above all
        # system prompts and the conversation so far, which every call of a chat sends again.
        self._cache: dict[str, str] = {}
        self._cache_chars = 0
        self._clean: set[str] = set()
        # JSON text (tool-call arguments) parsed by `collect`, by its text: a record with something to
        # redact walks it again, and parsing it twice costs more than a look-up. Reset per record.
        self._parsed: dict[str, Any] = {}
        self._clean_chars = 0
        # `self._safe_keys.issuperset(d)`: whether no key of dict `d` names a secret. Bound once: the
        # method call is cheaper than `d.keys() <= self._safe_keys`, which builds a view.
        self._keys_safe = self._safe_keys.issuperset

    def _is_secret_key(self, key: Any) -> bool:
        known = self._key_cache.get(key)
        if known is None:
            known = isinstance(key, str) and credentials.is_secret_key(key)
            if len(self._key_cache) < 4096:
                self._key_cache[key] = known
                if not known:
                    self._safe_keys.add(key)
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
        changed: list[int] = []  # indices in `leaves` of the strings the scan changed
        # Per field: where its strings end in `leaves`, and whether it must be walked anyway.
        spans: list[tuple[str, int, bool]] = []
        if self.joined:
            self._parsed = {}
            for field in fields:
                value = record.get(field)
                if value:
                    needs_walk = self.collect(value, leaves, 0)
                    flagged |= needs_walk
                    spans.append((field, len(leaves), needs_walk))
            if leaves:
                joined = _SEP.join(leaves)
                out = self.text.scan(joined)
                if out is joined:
                    # Nothing matched anywhere, a separator inside a string or not: a match never
                    # crosses one, wherever it comes from.
                    texts = {}
                    self._remember_clean(leaves, len(joined))
                else:
                    parts = out.split(_SEP)
                    # One part per string unless a string held the separator itself (then the parts
                    # cannot be told apart: the string-by-string walk below does the work instead).
                    if len(parts) == len(leaves):
                        # One loop says what changed and where (its index in `leaves`); the few
                        # changed strings are taken out of the clean ones after it.
                        texts = {}
                        for i, (old, new) in enumerate(zip(leaves, parts, strict=True)):
                            if new != old:
                                texts[old] = new
                                changed.append(i)
                        clean = [old for old in leaves if old not in texts]
                        self._remember_clean(clean, sum(map(len, clean)))
            else:
                texts = {}
            if texts == {} and not flagged:
                return
            if texts is not None:  # walk only the fields that hold a changed string or need the walk
                # `changed` is ascending, and so are the fields' ends: one merge of the two.
                chosen = []
                k = 0
                n = len(changed)
                for field, end, needs_walk in spans:
                    if k < n and changed[k] < end:
                        chosen.append(field)
                        while k < n and changed[k] < end:
                            k += 1
                    elif needs_walk:
                        chosen.append(field)
                fields = tuple(chosen)
            if texts and not flagged:
                self._put_back_fields(record, fields, texts)
                return
        for field in fields:
            value = record.get(field)
            if value:
                new = self.value(value, 0, texts)
                if new is not value:
                    record[field] = new

    def _put_back_fields(self, record: Record, fields: tuple[str, ...], texts: dict[str, str]) -> None:
        """Put the scan's changed strings back into `fields`, as `value` would, at less cost.

        `collect` found nothing in any field that needs `value`'s checks: no secret-named key with a
        value, nothing too deep, no object to dump. So a walk that only looks strings up in `texts`
        does the same (JSON text included, once its replacement is in `texts`), without `value`'s
        per-container checks, which cost more than the look-ups themselves.
        """
        get = texts.get
        parsed = self._parsed
        if parsed:
            # JSON text is replaced as a whole: its new text goes into `texts` beside the plain strings.
            # A JSON text inside another is shorter than it, so the shortest go first.
            for s in sorted(parsed, key=len) if len(parsed) > 1 else parsed:
                inner = parsed[s]
                new = self._put_back(inner, type(inner) is list, get, texts)
                if new is not inner:
                    texts[s] = _dump(new)
        for field in fields:
            value = record.get(field)
            t = type(value)
            if t is dict or t is list or t is tuple:
                new = self._put_back(value, t is not dict, get, texts)
            elif value:
                new = self.value(value, 0, texts)
            else:
                continue
            if new is not value:
                record[field] = new

    def _put_back(
        self, value: Any, is_list: bool, get: Callable[[str], str | None], texts: dict[str, str]
    ) -> Any:
        """`value` (a dict, list or tuple) as `value()` returns it for a field `_put_back_fields` may
        walk: changed containers are new (a list for a tuple, as there), untouched ones the same objects."""
        new: Any
        if is_list:
            copied: list[Any] | None = None
            for i, item in enumerate(value):
                t = type(item)
                if t is str:
                    new = get(item)
                    if new is None:
                        continue
                elif t is dict or t is list or t is tuple:
                    new = self._put_back(item, t is not dict, get, texts)
                    if new is item:
                        continue
                elif t in _SCALARS:
                    continue
                else:  # a set, a Mapping that is no dict, ...: the general walk (nothing is too deep here)
                    new = self.value(item, 1, texts)
                    if new is item:
                        continue
                if copied is None:
                    copied = list(value)
                copied[i] = new
            return value if copied is None else copied
        out: dict[Any, Any] | None = None
        for key, item in value.items():
            t = type(item)
            if t is str:
                new = get(item)
                if new is None:
                    continue
            elif t is dict or t is list or t is tuple:
                new = self._put_back(item, t is not dict, get, texts)
                if new is item:
                    continue
            elif t in _SCALARS:
                continue
            else:
                new = self.value(item, 1, texts)
                if new is item:
                    continue
            if out is None:
                out = dict(value)
            out[key] = new
        return value if out is None else out

    def _remember_clean(self, leaves: list[str], chars: int) -> None:
        """Strings found to hold nothing to redact are skipped when they come again: a chat sends its
        system prompt and the whole conversation so far with every call. `chars` is their total length."""
        if self._clean_chars + chars > _CACHE_MAX_CHARS:  # full: start over rather than track age
            self._clean.clear()
            self._clean_chars = 0
        if chars > _CACHE_MAX_STRING:  # some may be too long to be worth remembering
            leaves = [leaf for leaf in leaves if len(leaf) <= _CACHE_MAX_STRING]
            chars = sum(map(len, leaves))
        self._clean.update(leaves)
        self._clean_chars += chars

    def collect(self, value: Any, leaves: list[str], depth: int) -> bool:
        """Append the strings `value` holds (those inside JSON text too) to `leaves`. True when the value
        needs the walk whatever its text says: a secret-named key, too deep, an object to dump."""
        kind = type(value)
        # Exact types first: an isinstance() against an ABC costs more than the rest of a node.
        if kind is dict or kind is list:
            return self._collect_container(value, kind is list, leaves, depth)
        if kind is str:
            return self._collect_string(value, leaves, depth)
        if kind in _SCALARS:
            return False
        if kind is tuple or isinstance(value, _SEQUENCES):
            return self._collect_container(value, True, leaves, depth)
        if isinstance(value, Mapping):
            return self._collect_container(value, False, leaves, depth)
        return isinstance(value, str) or callable(getattr(value, "model_dump", None))

    def _collect_container(self, value: Any, is_list: bool, leaves: list[str], depth: int) -> bool:
        """`collect` for a dict or list: one loop, with strings, scalars and nested dicts and lists
        handled inline -- a record has a few dozen nodes, and a call per node is a large part of the
        cost of the whole scan."""
        if depth > _MAX_DEPTH:
            return True
        flagged = False
        if is_list or not self.secret_keys:
            items: Iterable[Any] = value if is_list else value.values()
        elif self._keys_safe(value):  # keys all known not to name a secret: one test in C
            items = value.values()
        else:
            items = []
            for key, item in value.items():
                if item and self._is_secret_key(key):
                    flagged = True
                else:
                    items.append(item)
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
            elif t is dict or t is list:
                flagged |= self._collect_container(item, t is list, leaves, depth + 1)
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
        self._parsed[s] = parsed
        return self.collect(parsed, leaves, depth)

    # -- the walk ----------------------------------------------------------------------------------

    def string(self, s: str, texts: Mapping[str, str] | None = None) -> str:
        if texts is not None:
            return self._string(s, texts)
        cached = self._cache.get(s)
        if cached is not None:
            return s if cached is SAME else cached
        out = self._string(s, None)
        size = len(s)
        if size <= _CACHE_MAX_STRING:
            if self._cache_chars + size > _CACHE_MAX_CHARS:  # full: start over rather than track age
                self._cache.clear()
                self._cache_chars = 0
            self._cache[s] = SAME if out is s else out
            self._cache_chars += size
        return out

    def _string(self, s: str, texts: Mapping[str, str] | None) -> str:
        # Tool-call arguments (and other JSON carried as text) are parsed, so a JSON escape can neither
        # hide a match nor be cut in half by a replacement, and secret-named keys inside are seen.
        parsed = None if texts is None else self._parsed.get(s)
        if parsed is None:
            parsed = _json_container(s)
        if parsed is not None:
            new = self.value(parsed, 1, texts)
            return s if new is parsed else _dump(new)
        if texts is not None:
            return texts.get(s, s)
        return self.text(s)

    def value(self, value: Any, depth: int = 0, texts: Mapping[str, str] | None = None) -> Any:
        """`value` with its strings redacted: by `self.text`, or as `texts` (from the joined scan) says."""
        kind = type(value)
        # Dicts and lists first: the walk calls this for containers only (it handles leaves inline).
        if kind is dict:
            is_list = False
        elif kind is list or kind is tuple:
            is_list = True
        elif kind is str:
            return self.string(value, texts)
        elif kind in _SCALARS:
            return value
        elif isinstance(value, str):
            return self.string(str(value), texts)
        else:
            is_list = not isinstance(value, Mapping)
        if depth > _MAX_DEPTH:
            return self.secret_ph  # too deep to look at: not looking must not mean leaking
        # The loops below handle string and scalar leaves inline: most nodes of a record are leaves,
        # and a call per leaf is a large part of the walk's cost. After the joined scan, a string that
        # cannot be JSON text is simply looked up in `texts`.
        lookup = texts.get if texts is not None else None
        new: Any
        if not is_list:
            out: dict[Any, Any] | None = None
            if not self.secret_keys or self._keys_safe(value):
                # No key names a secret (the usual case, one test in C): a loop over the values alone.
                for key, item in value.items():
                    t = type(item)
                    if t is str:
                        if lookup is None:
                            new = self.string(item, None)
                        elif len(item) < 2 or item[0] not in "{[":
                            new = lookup(item, item)
                        else:
                            new = self._string(item, texts)
                    elif t in _SCALARS:
                        continue
                    else:
                        new = self.value(item, depth + 1, texts)
                    if new is not item:
                        if out is None:
                            out = dict(value)
                        out[key] = new
                return value if out is None else out
            cache = self._key_cache
            for key, item in value.items():
                secret = cache.get(key)
                if secret is None:
                    secret = isinstance(key, str) and self._is_secret_key(key)
                t = type(item)
                if secret and item:
                    new = credentials.masked(item, self.secret_ph)
                elif t is str:
                    if lookup is None:
                        new = self.string(item, None)
                    elif len(item) < 2 or item[0] not in "{[":
                        new = lookup(item, item)
                    else:
                        new = self._string(item, texts)
                elif t in _SCALARS:
                    continue
                else:
                    new = self.value(item, depth + 1, texts)
                if new is not item:
                    if out is None:
                        out = dict(value)
                    out[key] = new
            return value if out is None else out
        if kind is list or kind is tuple or isinstance(value, _SEQUENCES):
            copied: list[Any] | None = None
            i = 0
            for item in value:
                t = type(item)
                if t is str:
                    if lookup is None:
                        new = self.string(item, None)
                    elif len(item) < 2 or item[0] not in "{[":
                        new = lookup(item, item)
                    else:
                        new = self._string(item, texts)
                elif t in _SCALARS:
                    i += 1
                    continue
                else:
                    new = self.value(item, depth + 1, texts)
                if new is not item:
                    if copied is None:
                        copied = list(value)
                    copied[i] = new
                i += 1
            return value if copied is None else copied
        dump = getattr(value, "model_dump", None)  # a pydantic object would be encoded as its fields
        if callable(dump):
            try:
                return self.value(dump(), depth + 1, None)
            except Exception:
                return self.secret_ph
        return value


_JSON = json.JSONDecoder()
# The decoder's C scanner, called directly: `raw_decode` is a Python method around it, and a call costs
# more than scanning a short tool-call argument. It raises StopIteration where `raw_decode` raises
# "Expecting value", and a JSONDecodeError (a ValueError) for the rest, as `raw_decode` does.
_scan: Callable[[str, int], tuple[Any, int]] = _JSON.scan_once  # type: ignore[attr-defined]
_ENCODER = json.JSONEncoder(ensure_ascii=False)
# What `_ENCODER.encode` runs for a dict or list, built once instead of per call (json.dumps even builds
# the encoder per call). No check for circular references: what is dumped was parsed from JSON text.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_encode = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None,
        _ENCODER.default,
        json.encoder.encode_basestring,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        False,
        False,
        True,
    )
)


def _dump(value: Any) -> str:
    if _encode is None:  # no C accelerator (not CPython)
        return _ENCODER.encode(value)
    return "".join(_encode(value, 0))


def _json_container(s: str) -> Any:
    """The dict or list a string holds as JSON text, else None (cheap for the strings that are not).

    What `json.loads` accepts, through the decoder's scanner: `json.loads` adds two whitespace regex
    matches and a few calls, which cost more than decoding a short tool-call argument itself.
    """
    if len(s) < 2 or s[0] not in "{[":
        return None
    try:
        parsed, end = _scan(s, 0)
    except (StopIteration, ValueError):
        return None
    if end != len(s) and s[end:].strip(" \t\n\r"):
        return None  # more after the value: json.loads would refuse it too ("Extra data")
    return parsed if isinstance(parsed, (dict, list)) else None
