"""JSON on the collector's hot path: orjson when it is installed (the `server` extra brings it), else the
standard library, with the standard library's answer wherever the two would differ.

Why: parsing a 1,000-record batch and serializing each record again for the store were ~35 µs of the
collector's ~100 µs of Python per record with `json`; orjson does the same in ~11 µs (see
`bench/ingest.py`). What orjson refuses and `json` accepts (NaN and Infinity literals, lone surrogates,
non-string keys, integers past 64 bits when writing, objects that only `record.encode` knows how to
write) falls back to the standard library, so the collector accepts what it did without orjson. One
difference remains: orjson reads an integer past 64 bits as a float (`1e+30`), which only matters in free
metadata, since every count the collector checks must stay under 2**53 anyway.
"""

from __future__ import annotations

import json
import re
from typing import Any

from litelens.record import encode

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the server extra
    orjson = None  # type: ignore[assignment]

# Anything that is not plain JSON data goes to `record.encode` (which never fails) instead of being
# written in orjson's own way (dataclasses, datetimes and str/int subclasses).
_PLAIN_ONLY = (
    0
    if orjson is None
    else orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def loads(data: bytes | str) -> Any:
    """`json.loads`, faster. Raises `ValueError` (or `RecursionError`) on what `json.loads` refuses.

    A lone surrogate escape (`"\\ud83d"`: JavaScript's JSON.stringify writes one when text was cut
    between the halves of an emoji) comes back as U+FFFD: a string holding the bare half cannot be
    encoded as UTF-8, so no store could write the record that holds it.
    """
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # possibly valid for `json` (NaN, lone surrogates, huge integers): let it decide
    value = json.loads(data)
    # Only here, where orjson refused the body (or is missing), is a lone surrogate possible at all.
    if (
        SURROGATE_SOURCE.search(data)
        if isinstance(data, (bytes, bytearray))
        else _SURROGATE_ESCAPE_TEXT.search(data)
    ):
        value, _repaired = without_lone_surrogates(value)
    return value


# A JSON string escape of half a surrogate pair (JavaScript's JSON.stringify writes a lone one as such),
# or such a half written as UTF-8 bytes (ED A0-BF ..), which `json.loads` of bytes decodes to the half.
SURROGATE_SOURCE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")
# What such an escape decodes to when its other half is missing (a pair decodes to one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> tuple[Any, bool]:
    """(value with every lone surrogate in its strings and keys replaced by U+FFFD, whether any was).

    Escaped pairs decode to one character; a lone half stays a surrogate, which no store can write.
    """
    if isinstance(value, str):
        if value.isascii():
            return value, False
        text, count = _SURROGATE.subn("\ufffd", value)
        return text, count > 0
    if isinstance(value, list):
        pairs = [without_lone_surrogates(v) for v in value]
        return [v for v, _ in pairs], any(r for _, r in pairs)
    if isinstance(value, dict):
        out, repaired = {}, False
        for key, item in value.items():
            (key, bad_key), (item, bad_item) = without_lone_surrogates(key), without_lone_surrogates(item)
            out[key] = item
            repaired = repaired or bad_key or bad_item
        return out, repaired
    return value, False


def dumps(value: Any) -> str:
    """Compact JSON text of a JSON-like value, as `record.encode` writes it (never fails)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=_PLAIN_ONLY).decode()
        except TypeError:
            pass  # non-string keys, integers past 64 bits, cycles, odd objects: record.encode's rules
    return encode(value)[0]
