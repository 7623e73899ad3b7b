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
    """`json.loads`, faster. Raises `ValueError` (or `RecursionError`) on what `json.loads` refuses."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # possibly valid for `json` (NaN, lone surrogates, huge integers): let it decide
    return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text of a JSON-like value, as `record.encode` writes it (never fails)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=_PLAIN_ONLY).decode()
        except TypeError:
            pass  # non-string keys, integers past 64 bits, cycles, odd objects: record.encode's rules
    return encode(value)[0]
