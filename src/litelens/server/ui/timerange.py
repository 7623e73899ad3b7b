"""Time ranges the pages offer, snapped to whole chart buckets so every chart is served by rollup rows.

A range like "last 24 hours" ends at the end of the current bucket and starts at the start of the bucket
that holds the moment 24 hours ago, so it covers the whole range and up to one bucket more. Snapping
matters for speed: the store answers an aligned range from its coarsest rollup rows (hour rows for a
day), while an unaligned one also needs minute rows for both ragged edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Where a preset range's queries end: no call starts after it. A preset range runs from its start on, so a
# call stamped ahead of the collector's clock (a client whose clock runs fast; ingest takes up to a day
# ahead) is counted, charted and listed by every page: the calls table, whose range has no end, listed it
# while the overview and the sessions page, which stopped at the current bucket, left it out.
from litelens.server.store.base import OPEN_END as OPEN_END

# name -> (label, length in seconds, chart bucket in seconds). Buckets are multiples of the rollup
# resolutions (60, 300, 3600 s) so each chart point is a sum of whole rollup rows.
RANGES: dict[str, tuple[str, int, int]] = {
    "1h": ("Last hour", 3600, 60),
    "6h": ("Last 6 hours", 6 * 3600, 300),
    "24h": ("Last 24 hours", 86400, 3600),
    "7d": ("Last 7 days", 7 * 86400, 3 * 3600),
    "30d": ("Last 30 days", 30 * 86400, 86400),
}
DEFAULT_RANGE = "24h"

# One bucket wider than any range: `aggregate` with it returns one row per group for the whole range
# (every epoch second up to the year 2169 falls into bucket 0). A multiple of every rollup resolution.
WHOLE_RANGE_BUCKET = 3600 * 24 * 365 * 200


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    start: float
    end: float
    bucket: int

    def buckets(self) -> list[int]:
        """Start of every chart bucket in the window, oldest first (empty buckets included)."""
        first = int(self.start) // self.bucket * self.bucket
        return list(range(first, int(self.end), self.bucket))


def window(name: str | None, now: float) -> Window:
    """The snapped window of a preset range; an unknown name means the default range."""
    if name not in RANGES:
        name = DEFAULT_RANGE
    label, length, bucket = RANGES[name]
    end = math.ceil(now / bucket) * bucket
    if end == now:
        end += bucket  # the bucket holding `now` is always shown
    # Down to the bucket holding `now - length`: the whole range is in the window. Counting whole buckets
    # back from `end` left out up to a bucket of it (a call 23.5 hours old was not in "last 24 hours").
    start = math.floor((now - length) / bucket) * bucket
    return Window(name, label, float(start), float(end), bucket)
