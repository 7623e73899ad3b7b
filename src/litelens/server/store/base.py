"""The storage interface the collector talks to, the types it speaks in, and `open_store(url)`.

Every method is synchronous and thread-safe: the server calls them from worker threads, so a backend
guards its own connections. Records are the plain dicts of `litelens.record`; query results are plain
dicts too, so the API layer can serialize them without knowing which backend produced them.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from litelens import record as rec

Record = dict[str, Any]
Span = dict[str, Any]
Row = dict[str, Any]

SortKey = Literal["start_time", "duration_ms", "total_tokens", "cost_usd", "arrival"]
SORT_KEYS: tuple[str, ...] = ("start_time", "duration_ms", "total_tokens", "cost_usd", "arrival")

GroupBy = Literal["model", "provider", "user", "tag", "key_alias"]
AGGREGATE_GROUPS: tuple[str, ...] = ("model", "provider", "user", "tag", "key_alias")

# The end of a time range that has none (a later moment than any call can have): the dashboard's preset
# ranges and the query API's default windows end here, so a call stamped ahead of the collector's clock
# is in them.
OPEN_END = 253402300800.0  # 10000-01-01T00:00:00Z


class WriteBatch(NamedTuple):
    """One request's worth of data for `Store.write_many`: the arguments of `Store.write`."""

    project_id: int
    records: list[Record]
    spans: list[Span]
    texts: Sequence[str | None] | None = None


class StoreUnavailable(Exception):
    """The database cannot be reached now (down, restarting, unreachable, or it ended the session): the
    fault of no request, and the same request may succeed later. The server answers 503, Retry-After."""


class InvalidCursor(ValueError):
    """A cursor that this store did not hand out, or one made for another sort order."""


@dataclass(frozen=True)
class CallFilter:
    """What `list_calls` and `export` narrow to. Every field that is set must match (AND).

    `start`/`end` bound the call's start time, in epoch seconds, as the half-open range [start, end).
    `model` matches the requested or the response model, also under the provider's `<provider>/` prefix
    (as the model breakdown counts it). `grouped_model` matches the one model the breakdown counts a call
    under (`rollup.model_name`: the response model, else the requested one), so a breakdown row lists
    exactly the calls it counts. `no_error_type` keeps the calls without an error class (with
    `status="error"`: the top errors' "(no class)" row). `metadata` matches top-level metadata keys by
    their value as text. `search` is a case-insensitive substring of the whole stored record (content
    included), which is a scan: combine it with a time range on large projects.
    """

    start: float | None = None
    end: float | None = None
    model: str | None = None
    grouped_model: str | None = None
    provider: str | None = None
    status: str | None = None
    error_type: str | None = None
    no_error_type: bool = False
    call_type: str | None = None
    end_user: str | None = None
    user_id: str | None = None
    user: str | None = None  # end_user, else user_id: the `user` group of the rollups
    session_id: str | None = None
    trace_id: str | None = None
    key_alias: str | None = None
    tag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    search: str | None = None
    arrived_after: int | None = None
    arrived_through: int | None = None


# --------------------------------------------------------------------------------------------------
# Cursors

# The longest cursor this store hands out, which the API and the pages take back. A cursor holds a call
# or session id of up to 256 characters (ingest's limit) as JSON, where a control character is written as
# six (`\u0001`): ~2,100 characters in base64 at most. 512, the limit before, was passed by an id of 100
# CJK characters, and the list stopped at its first page (a 422 from the API, "the link no longer
# applies" on the dashboard).
MAX_CURSOR_CHARS = 4096


def encode_cursor(sort: str, descending: bool, value: float | None, call_id: str) -> str:
    """An opaque cursor: the sort key and the last row's (sort value, call id), base64url'd JSON.

    Keyset pagination on an immutable (value, call id) pair, unlike OFFSET, neither skips nor repeats a
    row when calls are inserted while the user pages.
    """
    # Not ASCII-escaped: an id of CJK or accented letters is 2-3 bytes a character, not 6 (`\u65e5`).
    raw = json.dumps([sort, descending, value, call_id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, descending: bool) -> tuple[float | None, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        got_sort, got_desc, value, call_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor(f"litelens: invalid cursor {cursor[:40]!r}; start again without one") from exc
    if got_sort != sort or bool(got_desc) != descending:
        raise InvalidCursor(f"litelens: cursor was made for sort {got_sort!r}; start again without one")
    # No value: the last call listed had an unknown cost (listed after the priced ones).
    known = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (known or (value is None and sort == "cost_usd")) or not isinstance(call_id, str):
        raise InvalidCursor("litelens: invalid cursor contents; start again without one")
    return (float(value) if known else None), call_id


def encode_session_cursor(last_time: float, session_id: str) -> str:
    raw = json.dumps(["session", last_time, session_id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_session_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        tag, last_time, session_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if tag != "session":
            raise ValueError(tag)
        return float(last_time), str(session_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor(f"litelens: invalid session cursor {cursor[:40]!r}") from exc


# --------------------------------------------------------------------------------------------------
# Merging two versions of one call


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def merge_records(old: Mapping[str, Any], new: Mapping[str, Any]) -> Record:
    """One record from two versions of the same call: "the richer fields win".

    The same call reaches the store twice when a batch is retried, or when both the core callback and an
    OTel span describe it. Per field, the newer non-empty value wins and an empty one (None, "", [], {})
    never erases what the other version had; nested objects (usage, error, request, response, proxy,
    metadata) merge key by key, so content survives from whichever version carried it. Token counts of 0
    count as empty when the other version has real ones (a span without usage attributes says 0), and
    tags are the union of both.

    A trace or span id that the collector made up from the call id (`ingest.normalize`, for a record
    sent without one) is empty too when the other version has a real one: otherwise a core record that
    arrives after the call's OTel span would move the call out of its trace.
    """
    merged = _merge(old, new, zero_is_empty=False)
    call_id = str(new.get("call_id") or old.get("call_id") or "")
    for key, derived in (("trace_id", rec.trace_id_of(call_id)), ("span_id", rec.span_id_of(call_id))):
        if new.get(key) == derived and not _is_empty(old.get(key)):
            merged[key] = old[key]
    return merged


def merge_attributes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A span's attributes from two copies of it, by the rule of `merge_records`: per key the later
    non-empty value wins and an empty one (None, "", [], {}) never erases the earlier; keys keep the
    order in which they first came."""
    out = dict(old)
    for key, value in new.items():
        if key not in out or not _is_empty(value):
            out[key] = value
    return out


def _merge(old: Mapping[str, Any], new: Mapping[str, Any], *, zero_is_empty: bool) -> Record:
    out: Record = dict(old)
    for key, value in new.items():
        have = out.get(key)
        if key == "tags" and isinstance(value, list) and isinstance(have, list):
            out[key] = list(dict.fromkeys([*have, *value]))
        elif isinstance(value, Mapping) and isinstance(have, Mapping):
            out[key] = _merge(have, value, zero_is_empty=key == "usage")
        elif _is_empty(value) or (zero_is_empty and value == 0 and have):
            if key not in out:
                out[key] = value
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------
# The interface


class Store(ABC):
    """Where call records, spans, projects, API keys and rollups live.

    Implementations: `SQLiteStore` (the default, one file) and `PostgresStore`. `write` returns only once
    the batch is durable, because the server acknowledges a batch to the sender after it returns.
    """

    @abstractmethod
    def migrate(self) -> int:
        """Bring the schema to the latest version in place; returns that version."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection. The store is unusable afterwards."""

    # Projects and keys

    @abstractmethod
    def create_project(self, name: str) -> int:
        """The id of project `name`, created if it does not exist (idempotent)."""

    @abstractmethod
    def get_project(self, name: str) -> Row | None:
        """`{"id", "name", "created"}` or None."""

    @abstractmethod
    def add_key(self, project_id: int, key_hash: str, prefix: str) -> None:
        """Store an API key by its hash; `prefix` is the few leading characters shown to users."""

    @abstractmethod
    def project_for_key_hash(self, key_hash: str) -> int | None:
        """The project a key belongs to, or None for an unknown or revoked key."""

    @abstractmethod
    def list_keys(self, project_id: int) -> list[Row]:
        """`[{"key_hash", "prefix", "created", "last_used"}]`, newest first."""

    @abstractmethod
    def revoke_key(self, key_hash: str) -> bool:
        """Forget a key; True when it existed."""

    # Ingest

    @abstractmethod
    def write(
        self,
        project_id: int,
        records: list[Record],
        spans: list[Span],
        texts: Sequence[str | None] | None = None,
    ) -> None:
        """Upsert records and spans and update rollups in ONE transaction; returns after commit.

        `texts` (optional, parallel to `records`): each record's JSON text when the caller already
        serialized it, so the store need not serialize it again.
        """

    def write_many(self, batches: Sequence[WriteBatch]) -> None:
        """Several `write`s, durable when this returns; a backend may commit them in one transaction
        (the server's group commit does). A failure means none of them may be assumed stored."""
        for batch in batches:
            self.write(*batch)

    def prepare_write(self, batch: WriteBatch) -> Any:
        """Work for writing `batch` that needs no lock, done in the caller's thread; pass the result to
        `write_prepared`. The server prepares in its request threads so its one writer thread only
        writes. By default there is nothing to prepare."""
        return batch

    def write_prepared(self, prepared: Sequence[Any]) -> None:
        """`write_many` of prepared batches (`prepare_write`); each stays usable after a failure, to be
        written again on its own."""
        self.write_many(prepared)

    # Queries

    @abstractmethod
    def list_calls(
        self,
        project_id: int,
        filters: CallFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        sort: SortKey = "start_time",
        descending: bool = True,
    ) -> tuple[list[Row], str | None]:
        """A page of call summaries (no content) and the cursor of the next page (None at the end)."""

    @abstractmethod
    def latest_arrival(self, project_id: int) -> int:
        """The arrival of the project's call stored (or changed) last; 0 when it has none.

        Every write transaction that stores or changes calls gives them all one arrival, greater than
        any given before (`sort="arrival"` lists them in that order): calls listed with
        `arrived_after=latest_arrival(...)` are the ones stored since, whatever their start time says.
        That is what a live tail asks: a call's start time is the client's clock (which may run slow),
        and a call is stored when it ends or when a spool delivers it, long after its start.
        """

    @abstractmethod
    def count_calls(self, project_id: int, filters: CallFilter | None = None, limit: int = 10_000) -> int:
        """How many calls match, counted up to `limit` (a bound on the work: a live tail asks every
        poll, a burst can hold many)."""

    @abstractmethod
    def get_call(self, project_id: int, call_id: str) -> Record | None:
        """The full stored record."""

    @abstractmethod
    def get_trace(self, project_id: int, trace_id: str) -> dict[str, list[Row]]:
        """`{"spans": [...], "calls": [...summaries]}` of one trace, by start time."""

    @abstractmethod
    def list_sessions(
        self,
        project_id: int,
        start: float,
        end: float,
        limit: int = 50,
        cursor: str | None = None,
        user: str | None = None,
    ) -> tuple[list[Row], str | None]:
        """Sessions active in [start, end), most recently active first; with `user`, only those in which
        that user (end user, else user id) made a call. Each row names the session's first `user` and
        how many `users` it had."""

    @abstractmethod
    def session_totals(self, project_id: int, session_id: str) -> Row | None:
        """What the session's calls add up to: `{"user", "users", "calls", "errors", "cancelled", "input_tokens",
        "output_tokens", "cost_usd", "priced_calls", "duration_ms"}` (`user` and `users` as
        `list_sessions` has them), or None for a session without calls. `cost_usd` sums
        the `priced_calls` calls that had a cost, and is None when none had (unknown, not free). Its calls,
        in start order, are `list_calls` filtered to the session, ascending by start time (paged)."""

    def session_page(
        self, project_id: int, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[Row | None, tuple[list[Row], str | None]]:
        """A session's totals and one page of its calls (ascending by start time), read as of one
        moment, so they agree however calls are written meanwhile: `(None, ([], None))` for a session
        without calls. This default reads them one after the other; a store with transactions reads
        both in one snapshot."""
        totals = self.session_totals(project_id, session_id)
        if totals is None:
            return None, ([], None)
        return totals, self.list_calls(
            project_id, CallFilter(session_id=session_id), limit, cursor, "start_time", False
        )

    @abstractmethod
    def aggregate(
        self,
        project_id: int,
        start: float,
        end: float,
        bucket_seconds: int = 3600,
        group_by: GroupBy | None = None,
    ) -> list[Row]:
        """Per (bucket, group): count, errors, error_rate, latency/ttft percentiles, tokens, cost.

        `cost_usd` is the sum of the calls that had a cost (`priced_calls` of them), None when none had."""

    @abstractmethod
    def top_groups(
        self, project_id: int, start: float, end: float, group_by: GroupBy, limit: int = 10
    ) -> tuple[list[Row], int]:
        """The `limit` groups (models, users, ...) with the most calls in [start, end), most first, each
        an `aggregate` row for the whole range, and how many groups had calls in it."""

    @abstractmethod
    def top_errors(self, project_id: int, start: float, end: float, limit: int = 10) -> list[Row]:
        """Failed calls (status "error") started in [start, end), counted per error class, most first.

        `[{"error_type", "count", "last_time"}]`; calls that failed without a class count under None.
        """

    @abstractmethod
    def top_calls(
        self, project_id: int, start: float, end: float, sort: SortKey = "duration_ms", limit: int = 5
    ) -> list[Row]:
        """The call summaries started in [start, end) with the highest `sort` value, highest first
        (the overview's slowest and most expensive calls)."""

    @abstractmethod
    def list_projects(self) -> list[Row]:
        """`[{"id", "name", "created"}]` of every project, oldest first."""

    @abstractmethod
    def export(
        self, project_id: int, filters: CallFilter | None = None, page_size: int = 500
    ) -> Iterator[Record]:
        """Full records in start order, fetched a page at a time."""

    # Retention

    @abstractmethod
    def delete_older_than(self, cutoff_epoch: float, batch: int = 5000) -> int:
        """Delete calls (and their tags), spans and rollups older than the cutoff; returns calls deleted."""


def open_store(url: str, **options: Any) -> Store:
    """A store for a URL: `sqlite:///abs/path.db`, `sqlite:///:memory:`, or `postgresql://...`.

    The schema is not migrated here: call `migrate()` (the server does at start).
    """
    if url.startswith("sqlite://"):
        from litelens.server.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if url.startswith(("postgresql://", "postgres://")):
        from litelens.server.store.postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(
        f"litelens: unsupported database URL {url.split('://')[0]!r}; use sqlite:///path.db or postgresql://..."
    )
