"""The SQL both backends share: queries, retention, migrations, projects and keys; the write path (upserts
with merge, rollup maintenance) is `write.BatchWriter`.

SQLite and PostgreSQL agree on enough (ON CONFLICT upserts, row-value comparisons, CASE, COALESCE) that
one implementation serves both; a backend supplies connections, its migration list, and the few
expressions that differ (JSON access, case-insensitive search). Statements are written with `?`
placeholders and a backend may rewrite them (psycopg wants `%s`); values always travel as parameters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from litelens.server.store import exact, rollup
from litelens.server.store.base import (
    AGGREGATE_GROUPS,
    SORT_KEYS,
    CallFilter,
    GroupBy,
    Record,
    Row,
    SortKey,
    Store,
    decode_cursor,
    decode_session_cursor,
    encode_cursor,
    encode_session_cursor,
)
from litelens.server.store.rows import CALL_COLUMNS
from litelens.server.store.rows import SPAN_COLUMNS as _SPAN_COLUMNS
from litelens.server.store.write import SESSION_PART_COLUMNS, BatchWriter
from litelens.server.store.write import chunks as _chunks

logger = logging.getLogger("litelens.server.store")

# Columns of `calls` that a summary row carries (everything but the project and the record itself), in
# table order: one list with the write path's.
SUMMARY_COLUMNS = (*CALL_COLUMNS[1:-1], "arrival")
_SUMMARY_SELECT = ", ".join(f"c.{name}" for name in SUMMARY_COLUMNS)

_SORT_EXPR = {
    "start_time": "c.start_time",
    "duration_ms": "c.duration_ms",
    "total_tokens": "c.total_tokens",
    # Calls without a known cost are no sort value: `_page` and `top_calls` list them after the priced
    # ones, in either direction.
    "cost_usd": "c.cost_usd",
    "arrival": "c.arrival",
}


# A session's first user and its number of users, for a query over `sessions s` (see `write.session_users_table`).
_SESSION_USER_COLUMNS = (
    "(SELECT u.user_name FROM session_users u WHERE u.project_id = s.project_id AND u.session_id = s.session_id "
    "ORDER BY u.first_time, u.user_name LIMIT 1), "
    "(SELECT COUNT(*) FROM session_users u WHERE u.project_id = s.project_id AND u.session_id = s.session_id)"
)

# A page sorted by another key than time walks that key's index once its time range holds this many
# calls (`_walks`): below, reading and sorting the range costs about as much as the walk at worst.
_WALK_FROM = 2000

# Behind a filter, a walk reads at most this many calls of the range per call of the page before it
# gives up and reads the range (`_page`): a filter keeping under 1 in 20 calls of the range (a model of
# few calls) costs what reading the range costs, and a little more.
_WALK_READS_PER_ROW = 20

# Retention aims for write transactions of about this long, so an ingest batch never waits much more.
_RETENTION_TARGET_S = 0.1
# At most this many characters of records are read per retention batch (to take the calls out of the
# rollups): 500 calls of 2 MiB, the most ingest takes, were a gigabyte in memory at once.
_RETENTION_BYTES = 16 * 2**20


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape `\\`) for `text` inside the stored record's JSON text.

    The record is searched as JSON, where quotes, backslashes and control characters in a value are
    escaped (`say \\"hi\\"`); the search text is escaped the same way, so `say "hi"` finds that value.
    """
    text = json.dumps(text, ensure_ascii=False)[1:-1]
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def cased_regex(text: str) -> str:
    """A regular expression finding `text` in the stored record's JSON text (escaped as `like_pattern`
    escapes it) whatever the case of each letter that has one lower- and one upper-case form, in a syntax
    PostgreSQL's and Python's regular expressions read alike (`[xX]` and `\\` + punctuation).

    The one rule of a search that is not ASCII, on both stores: the letter as typed, its lower and its
    upper form (`ς` finds `Σ`, the Kelvin sign finds `k`; `ß`, whose upper case is `SS`, finds only itself). Folding
    the record to lower case instead (as SQLite did) found other letters than PostgreSQL: `Σ` folds to
    the other small sigma, so `ς` missed it there.
    """
    parts = []
    for ch in json.dumps(text, ensure_ascii=False)[1:-1]:
        lower, upper = ch.lower(), ch.upper()
        if len(lower) == 1 and len(upper) == 1 and lower != upper:
            parts.append(f"[{''.join(dict.fromkeys(ch + lower + upper))}]")
        else:
            parts.append(ch if ch.isalnum() else "\\" + ch)
    return "".join(parts)


NO_JSON = object()


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def metadata_json(value: str) -> Any:
    """The JSON value a metadata filter's text spells besides the string itself (`5`, `true`, `null`,
    `{"a":1}`), or `NO_JSON` when it spells none: a filter's text finds a metadata value that is that
    string, or one equal to it as JSON (`5` finds 5, 5.0 and "5"; `{"a": 1}` finds {"a":1}).

    Compared as text instead, each database wrote a value its own way: SQLite `1.0e-07` for 1e-7 and
    `0.333333333333333` for 1/3, PostgreSQL's jsonb `{"a": 1}` with a space, so the same filter found
    different calls on each store. NaN and infinities are no JSON (PostgreSQL refuses them).
    """
    try:
        parsed = json.loads(value, parse_constant=_refuse_constant)
    except ValueError:
        return NO_JSON
    if isinstance(parsed, str) or (isinstance(parsed, float) and not math.isfinite(parsed)):
        return NO_JSON
    return parsed


# The most exports that each read through a snapshot of their own at once: each holds a connection outside
# the pools (PostgreSQL's connection slots are few). More exports read each page as of its own moment.
MAX_EXPORT_SNAPSHOTS = 8

# Per thread, the snapshot cursor each store is reading through (`SQLStore._snapshot`).
_snapshots = threading.local()


class SQLStore(BatchWriter, Store):
    """A `Store` over a DB-API connection; subclasses provide connections and dialect pieces."""

    #: Per version, the statements that bring the schema from the previous version to it.
    MIGRATIONS: Sequence[Sequence[str]] = ()

    # ---- what a backend provides

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        """A cursor for queries, on a connection that does not block (and is not blocked by) the writer."""

    @abstractmethod
    def _read_snapshot(self) -> AbstractContextManager[Any]:
        """A cursor inside one read-only transaction that sees the database as of its first query,
        whatever is committed meanwhile (see `_snapshot`)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A cursor inside one write transaction, serialized with every other writer; commits on exit."""

    def _q(self, sql: str) -> str:
        """The statement in the driver's placeholder style."""
        return sql

    def _export_snapshot(self) -> AbstractContextManager[Any | None]:
        """A cursor inside one read-only transaction for a whole export, on a connection of its own
        (an export can take minutes, and would hold a pooled connection that long), or None where
        there is none to open: the export then reads each page as of its own moment."""
        return contextlib.nullcontext()

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Every `_read()` of this store on this thread, until the block ends, is served by one cursor
        of `_read_snapshot`: reads that make one answer (a session's totals and its page of calls, a
        page and its calls' tags) all see the same moment, not each its own."""
        held: dict[int, Any] = _snapshots.__dict__.setdefault("held", {})
        if id(self) in held:  # already in one: the outer snapshot serves
            yield
            return
        with self._read_snapshot() as cur, self._reading_through(cur):
            yield

    @contextmanager
    def _reading_through(self, cur: Any | None) -> Iterator[None]:
        """Every `_read()` of this store on this thread, until the block ends, is served by `cur` (a
        snapshot's cursor; None: by the backend's own, as outside the block)."""
        held: dict[int, Any] = _snapshots.__dict__.setdefault("held", {})
        if cur is None:
            yield
            return
        held[id(self)] = cur
        try:
            yield
        finally:
            del held[id(self)]

    def _snapshot_cursor(self) -> Any | None:
        """The cursor of the `_snapshot` this thread is in, if any (for the backends' `_read`)."""
        held: dict[int, Any] | None = getattr(_snapshots, "held", None)
        return None if held is None else held.get(id(self))

    def _json_param(self) -> str:
        """The placeholder for a JSON text parameter stored in a JSON column."""
        return "?"

    def _load_json(self, value: Any) -> Any:
        if value is None or isinstance(value, (dict, list)):
            return value
        return json.loads(value)

    @abstractmethod
    def _metadata_condition(self, key: str, value: str) -> tuple[str, list[Any]]:
        """SQL matching the calls whose top-level metadata `key` is `value` (`metadata_forms`), and its
        parameters."""

    @abstractmethod
    def _search_condition(self, text: str) -> tuple[str, str]:
        """SQL matching the record text case-insensitively against a `?` LIKE pattern (escape `\\`),
        and that pattern for `text` (`like_pattern(text)`, or a form of it the SQL expects)."""

    # ---- migrations

    @property
    def latest_version(self) -> int:
        return len(self.MIGRATIONS)

    def migrate(self, target: int | None = None) -> int:
        """Apply every migration step newer than the database's version, in one transaction.

        `target` stops at an older version; tests use it to build a database as an old release left it.
        """
        target = self.latest_version if target is None else target
        with self._write() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cur.execute("SELECT MAX(version) FROM schema_version")
            current = cur.fetchone()[0] or 0
            if current > self.latest_version:
                raise RuntimeError(
                    f"litelens: database schema version {current} is newer than this litelens "
                    f"({self.latest_version}); upgrade litelens"
                )
            if current and target > current:
                # Said before the first step: on a big database a step can take minutes, and a server
                # that printed nothing meanwhile looked hung.
                logger.info(
                    "migrating store schema from version %d to %d; a big database can take minutes",
                    current,
                    target,
                )
            began = time.monotonic()
            for version in range(current + 1, target + 1):
                step_began = time.monotonic()
                for statement in self.MIGRATIONS[version - 1]:
                    cur.execute(statement)
                cur.execute(
                    self._q("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)"),
                    (version, time.time()),
                )
                # A new database's steps run on empty tables: one line for them all, not one each.
                logger.log(
                    logging.INFO if current else logging.DEBUG,
                    "migrated store schema to version %d in %.1f s",
                    version,
                    time.monotonic() - step_began,
                )
            if not current and target:
                logger.info("created store schema version %d in %.1f s", target, time.monotonic() - began)
            if current and target > current:
                self._migrated(cur)
        return max(current, target)

    def _migrated(self, cur: Any) -> None:
        """Called inside the migration's transaction once steps brought an existing database up to date."""

    def schema_version(self) -> int:
        with self._read() as cur:
            cur.execute("SELECT MAX(version) FROM schema_version")
            return int(cur.fetchone()[0] or 0)

    # ---- projects and keys

    def create_project(self, name: str) -> int:
        with self._write() as cur:
            cur.execute(
                self._q("INSERT INTO projects (name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"),
                (name, time.time()),
            )
            cur.execute(self._q("SELECT id FROM projects WHERE name = ?"), (name,))
            return int(cur.fetchone()[0])

    def get_project(self, name: str) -> Row | None:
        with self._read() as cur:
            cur.execute(self._q("SELECT id, name, created FROM projects WHERE name = ?"), (name,))
            row = cur.fetchone()
        return None if row is None else {"id": int(row[0]), "name": row[1], "created": row[2]}

    def list_projects(self) -> list[Row]:
        with self._read() as cur:
            cur.execute("SELECT id, name, created FROM projects ORDER BY id")
            return [{"id": int(r[0]), "name": r[1], "created": r[2]} for r in cur.fetchall()]

    def add_key(self, project_id: int, key_hash: str, prefix: str) -> None:
        with self._write() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO api_keys (key_hash, project_id, prefix, created) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key_hash) DO NOTHING"
                ),
                (key_hash, project_id, prefix, time.time()),
            )

    def project_for_key_hash(self, key_hash: str) -> int | None:
        with self._read() as cur:
            cur.execute(self._q("SELECT project_id, last_used FROM api_keys WHERE key_hash = ?"), (key_hash,))
            row = cur.fetchone()
        if row is None:
            return None
        now = time.time()
        # last_used is for display: refreshing it at most once a minute keeps auth off the write path.
        if row[1] is None or now - float(row[1]) > 60:
            with self._write() as cur:
                cur.execute(self._q("UPDATE api_keys SET last_used = ? WHERE key_hash = ?"), (now, key_hash))
        return int(row[0])

    def list_keys(self, project_id: int) -> list[Row]:
        with self._read() as cur:
            cur.execute(
                self._q(
                    "SELECT key_hash, prefix, created, last_used FROM api_keys WHERE project_id = ? "
                    "ORDER BY created DESC, key_hash"
                ),
                (project_id,),
            )
            return [
                {"key_hash": r[0], "prefix": r[1], "created": r[2], "last_used": r[3]} for r in cur.fetchall()
            ]

    def revoke_key(self, key_hash: str) -> bool:
        with self._write() as cur:
            cur.execute(self._q("DELETE FROM api_keys WHERE key_hash = ?"), (key_hash,))
            return bool(cur.rowcount)

    # ---- queries

    def _where(
        self, project_id: int, filters: CallFilter | None, walk: bool = False
    ) -> tuple[list[str], list[Any]]:
        """The conditions and parameters of `filters`; with `walk`, the time range is kept from the
        planner's choice of index, so a page sorted by another key walks that key's index (see `_walks`)."""
        conds = ["c.project_id = ?"]
        params: list[Any] = [project_id]
        f = filters or CallFilter()
        # Calls arrived after a position are few (those of a tail's last poll) and the arrival index
        # finds them; the time range, checked on each, must not lead SQLite to read a day of calls.
        walk = walk or f.arrived_after is not None
        when = self._unindexed("c.start_time") if walk else "c.start_time"
        if f.arrived_after is not None:
            conds.append("c.arrival > ?")
            params.append(int(f.arrived_after))
        if f.arrived_through is not None:
            conds.append("c.arrival <= ?")
            params.append(int(f.arrived_through))
        if f.start is not None:
            conds.append(f"{when} >= ?")
            params.append(float(f.start))
        if f.end is not None:
            conds.append(f"{when} < ?")
            params.append(float(f.end))
        if f.model:
            # Also under its provider's `<provider>/` prefix, which LiteLLM adds on some routes only: the
            # model breakdown counts a call under the name without it (`rollup.model_name`).
            conds.append(
                "(c.request_model = ? OR c.response_model = ? OR c.request_model = c.provider || '/' || ? "
                "OR c.response_model = c.provider || '/' || ?)"
            )
            params += [f.model] * 4
        if f.grouped_model:
            # `rollup.model_name`: the answering model, else the requested one (a failure has no answer),
            # with or without its provider's prefix. `model` matched a request for gpt-4o-mini answered by
            # gpt-4o-mini-2024-07-18 too, so the breakdown's gpt-4o-mini row (its failures) listed them all.
            answered = "COALESCE(NULLIF(c.response_model, ''), c.request_model)"
            conds.append(f"({answered} = ? OR {answered} = c.provider || '/' || ?)")
            params += [f.grouped_model] * 2
        for column in (
            "provider",
            "status",
            "error_type",
            "call_type",
            "end_user",
            "user_id",
            "session_id",
            "trace_id",
            "key_alias",
        ):
            value = getattr(f, column)
            if column == "status" and value == "error":
                # A literal, not a parameter: only then may the planner use the partial index of failed
                # calls (`calls_errors`), which a page of failed calls then walks instead of every call.
                conds.append("c.status = 'error'")
            elif value:
                conds.append(f"c.{column} = ?")
                # Trace ids are hex, stored lower-case: either case finds the trace.
                params.append(value.lower() if column == "trace_id" else value)
        if f.no_error_type:
            conds.append("c.error_type IS NULL")
        if f.user:
            conds.append("(c.end_user = ? OR (c.end_user IS NULL AND c.user_id = ?))")
            params += [f.user, f.user]
        if f.tag:
            conds.append(
                "EXISTS (SELECT 1 FROM call_tags t WHERE t.project_id = c.project_id AND t.call_id = c.call_id "
                "AND t.tag = ?)"
            )
            params.append(f.tag)
        for key, value in f.metadata.items():
            sql, extra = self._metadata_condition(str(key), str(value))
            conds.append(sql)
            params += extra
        if f.search:
            condition, pattern = self._search_condition(f.search)
            conds.append(condition)
            params.append(pattern)
        return conds, params

    def _page(
        self,
        project_id: int,
        filters: CallFilter | None,
        limit: int,
        cursor: str | None,
        sort: str,
        descending: bool,
        select: str,
    ) -> tuple[list[tuple[Any, ...]], str | None]:
        if sort not in SORT_KEYS:
            raise ValueError(f"litelens: cannot sort by {sort!r}; use one of {', '.join(SORT_KEYS)}")
        limit = max(1, min(int(limit), 10_000))
        f = filters or CallFilter()
        # Behind a filter the walk checks each call of the range it passes against the filter, which
        # needs the call's row: for a model of no call in the week of 100,000 that was every row of the
        # range, in sort order (388 ms), where reading the range in time order took 174 ms. So such a
        # walk is bounded (`_bounded_walk`), and a part of the list it cannot fill is read and sorted.
        # Its bound is a share of the range, so it reads a share of the index: it walks only a range
        # holding at least 4 times as many calls as it may read. A walk in arrival order is bounded even
        # unfiltered: calls arrive about when they start, so a range of past calls lies behind every
        # call that arrived since, not spread along the index (see `_bounded_walk`).
        bounded = self._filtered(f) or sort == "arrival"
        least = 4 * _WALK_READS_PER_ROW * (limit + 1) if bounded else _WALK_FROM
        walk = self._walks(project_id, filters, sort, least)
        bounded = bounded and walk
        rows: list[tuple[Any, ...]] = []
        # Several parts are read as of one moment, so a call priced meanwhile is neither skipped nor
        # repeated; so are a bounded walk and the read of the range that may follow it.
        with self._snapshot() if sort == "cost_usd" or bounded else contextlib.nullcontext():
            for n in range(len(self._parts(sort, _SORT_EXPR[sort], cursor, descending))):
                wanted = limit + 1 - len(rows)
                got = None
                if bounded:
                    got = self._bounded_walk(project_id, f, sort, cursor, descending, n, select, wanted)
                    walk = got is not None
                if got is None:
                    got = self._read_part(project_id, f, sort, cursor, descending, n, select, wanted, walk)
                # Added once the connection is back in the pool: added inside its block, four exports at
                # once (pages of 500 calls of 32 KB) left the process ~25 MB larger, every run (the RSS
                # bound of test_store's page-cache test; 173-175 MB against 195-206). Measured, not
                # understood: glibc's per-thread arenas keep what a different order of frees leaves.
                rows += got
                if len(rows) > limit:
                    break
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            key = None if last[-1] is None else float(last[-1])
            next_cursor = encode_cursor(sort, descending, key, str(last[0]))
        return rows, next_cursor

    def _parts(
        self, sort: str, expr: str, cursor: str | None, descending: bool
    ) -> list[tuple[list[str], list[Any], list[str]]]:
        """(conditions, parameters, key columns) of each part of a list sorted by `sort` (written `expr`),
        read one after the other from `cursor`; each part is in the order of its key columns."""
        after = "<" if descending else ">"
        value, call_id = decode_cursor(cursor, sort, descending) if cursor else (None, None)
        if sort == "arrival" and value is not None:
            # An integer column: compared with a float, PostgreSQL would not use its index.
            value = int(value)
        parts: list[tuple[list[str], list[Any], list[str]]] = []
        if sort != "cost_usd":
            keyset = [f"({expr}, c.call_id) {after} (?, ?)"] if cursor else []
            parts.append((keyset, [value, call_id] if cursor else [], [expr, "c.call_id"]))
        else:
            # The priced calls in cost order, then the unknown ones (LiteLLM could not price them) by call
            # id, in either direction: one range of the index (project, cost, call id) each, which holds
            # NULL costs apart at one end. Ordered as one key, unknown read as $0 and came first upwards.
            if value is not None or not cursor:
                keyset = [f"({expr}, c.call_id) {after} (?, ?)"] if cursor else []
                parts.append(
                    (
                        ["c.cost_usd IS NOT NULL", *keyset],
                        [value, call_id] if cursor else [],
                        [expr, "c.call_id"],
                    )
                )
            keyset = [f"c.call_id {after} ?"] if value is None and cursor else []
            parts.append((["c.cost_usd IS NULL", *keyset], [call_id] if keyset else [], ["c.call_id"]))
        return parts

    def _read_part(
        self,
        project_id: int,
        f: CallFilter,
        sort: str,
        cursor: str | None,
        descending: bool,
        n: int,
        select: str,
        wanted: int,
        walk: bool,
    ) -> list[tuple[Any, ...]]:
        """The first `wanted` calls of part `n` of the list (`_parts`): walked down the sort key's index,
        or (not `walk`) read from the time range and sorted."""
        conds, params = self._where(project_id, f, walk)
        expr = _SORT_EXPR[sort]
        if f.arrived_after is not None:
            if sort != "arrival":
                # The few calls arrived since a position (a live tail's poll), found by the arrival index
                # and sorted: walking the sort key's index instead reads the project until a page matches.
                expr = self._unindexed(expr)
        elif not walk and sort != "start_time" and (f.start is not None or f.end is not None):
            # Not walked: read the range and sort it, as `_walks` decided. SQLite, given statistics,
            # otherwise walked the sort index itself (now that it holds the start time) past a range of
            # a few calls, reading the whole index; and the arrival index (no start time in it) past the
            # last hour of a model of no call, reading the row of every call in the project (126-247 ms
            # at 100,000 calls, against 0.3 ms read and sorted).
            expr = self._unindexed(expr)
        extra, extra_params, key = self._parts(sort, expr, cursor, descending)[n]
        sql = (
            f"SELECT {select}, {expr} FROM calls c WHERE {' AND '.join(conds + extra)} "
            f"ORDER BY {_order(key, descending)} LIMIT ?"
        )
        with self._read() as cur:
            cur.execute(self._q(sql), (*params, *extra_params, wanted))
            return list(cur.fetchall())

    def _bounded_walk(
        self,
        project_id: int,
        f: CallFilter,
        sort: str,
        cursor: str | None,
        descending: bool,
        n: int,
        select: str,
        wanted: int,
    ) -> list[tuple[Any, ...]] | None:
        """The first `wanted` calls of part `n` of the list that pass the filters, found among the next
        `_WALK_READS_PER_ROW` x `wanted` calls of the range down the sort key's index; None when those
        hold too few (the part is then read and sorted: the filter keeps few calls of the range).

        The walk goes in stretches: the end of the next stretch of calls in the range is found on the
        index alone (it holds the start time), then the filtered walk stops there, so it reads the rows
        of at most that many calls; a filter keeping most calls ends within the first stretch.

        The arrival index holds no start time, and arrival follows time: a range of past calls lies
        behind all those that arrived since, so counting the range's calls along it read the row of each
        of those. Its stretches are counted in calls of the project instead, on the index alone: the walk
        reads at most its budget of rows wherever the range lies, and a range it does not reach is read
        and sorted.
        """
        expr = _SORT_EXPR[sort]
        if sort == "arrival":
            range_conds, range_params = ["c.project_id = ?"], [project_id]
        else:
            range_conds, range_params = self._where(project_id, CallFilter(start=f.start, end=f.end), True)
        conds, params = self._where(project_id, f, True)
        last = len(self._parts(sort, expr, cursor, descending)) - 1
        budget = _WALK_READS_PER_ROW * wanted
        stretch = min(budget, 8 * wanted)
        got: list[tuple[Any, ...]] = []
        with self._read() as cur:
            while True:
                # From a cursor inside the unknown-cost part the list has that part alone.
                parts = self._parts(sort, expr, cursor, descending)
                extra, extra_params, key = parts[n if n < last else -1]
                cur.execute(
                    self._q(
                        f"SELECT {', '.join(key)} FROM calls c WHERE {' AND '.join(range_conds + extra)} "
                        f"ORDER BY {_order(key, descending)} LIMIT 1 OFFSET ?"
                    ),
                    (*range_params, *extra_params, stretch - 1),
                )
                end = cur.fetchone()
                until: list[str] = []
                if end is not None:  # up to and including the stretch's last call
                    marks = ", ".join("?" * len(key))
                    until = [f"({', '.join(key)}) {'>=' if descending else '<='} ({marks})"]
                cur.execute(
                    self._q(
                        f"SELECT {select}, {expr} FROM calls c WHERE {' AND '.join(conds + extra + until)} "
                        f"ORDER BY {_order(key, descending)} LIMIT ?"
                    ),
                    (*params, *extra_params, *(end or ()), wanted - len(got)),
                )
                got += cur.fetchall()
                if len(got) >= wanted or end is None:
                    return got  # a page, or every call the range holds past the cursor
                budget -= stretch
                if budget <= 0:
                    return None
                stretch = min(budget, 2 * stretch)
                value = float(end[0]) if len(end) == 2 else None
                cursor = encode_cursor(sort, descending, value, str(end[-1]))

    @staticmethod
    def _filtered(f: CallFilter) -> bool:
        """Whether `f` narrows the calls of its time range."""
        return f != CallFilter(start=f.start, end=f.end)

    def _walks(self, project_id: int, filters: CallFilter | None, sort: str, least: int = _WALK_FROM) -> bool:
        """Whether a page sorted by `sort` walks the sort key's index, checking each entry's start time
        (the index holds it), rather than reading every call in the time range and sorting them.

        Given the range, the planner walked the time index and sorted the whole range: a page of the
        week of 100,000 calls by latency read all 100,000 rows (70-250 ms warm, seconds cold), a page by
        time under 1 ms. The walk reads about page size x (calls in the project / calls in the range)
        entries, and rows only for the entries in the range. It is chosen when the range holds at least
        `_WALK_FROM` calls (an index-only count that stops there): a range of fewer is read and sorted
        as before, at most `_WALK_FROM` rows, while the walk past a nearly empty range would read the
        whole index. Failed calls keep their partial index (`calls_errors`), which holds only them.
        `least` raises that count (a walk behind a filter, or in arrival order, `_page`): the arrival
        index holds no start time, and its walk is always bounded (`_bounded_walk`).
        """
        f = filters or CallFilter()
        if sort == "start_time" or (f.start is None and f.end is None) or f.status == "error":
            return False
        if f.arrived_after is not None:
            return False  # the arrival index finds the few calls (`_read_part`)
        # The walk reads rows until it has a page of matches, so a filter keeping few calls of the range
        # (one user, a session, a search, a tag, metadata) makes it read the whole range out of order:
        # at 100,000 calls a user's page of the day took 68 ms walked, 17 ms read and sorted. Only
        # filters on a column of a few values (model, provider, call type, status) keep walking.
        narrow = (f.error_type, f.no_error_type, f.end_user, f.user_id, f.user, f.session_id, f.trace_id)
        if any(narrow) or f.key_alias or f.tag or f.metadata or f.search:
            return False
        in_range = CallFilter(start=f.start, end=f.end)
        least = max(least, _WALK_FROM)
        return self.count_calls(project_id, in_range, least) >= least

    def _summaries(self, project_id: int, rows: Sequence[Sequence[Any]]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            item = dict(zip(SUMMARY_COLUMNS, row, strict=False))
            item["stream"] = bool(item["stream"])
            item["tags"] = []
            out.append(item)
        if out:
            by_id = {item["call_id"]: item for item in out}
            with self._read() as cur:
                for chunk in _chunks(list(by_id)):
                    marks = ", ".join("?" * len(chunk))
                    cur.execute(
                        self._q(
                            f"SELECT call_id, tag FROM call_tags WHERE project_id = ? AND call_id IN ({marks}) "
                            "ORDER BY tag"
                        ),
                        (project_id, *chunk),
                    )
                    for call_id, tag in cur.fetchall():
                        by_id[call_id]["tags"].append(tag)
        return out

    def list_calls(
        self,
        project_id: int,
        filters: CallFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        sort: SortKey = "start_time",
        descending: bool = True,
    ) -> tuple[list[Row], str | None]:
        # The page and its calls' tags in one snapshot: read apart, a call deleted in between (retention,
        # another collector's) was listed without its tags.
        with self._snapshot():
            rows, next_cursor = self._page(
                project_id, filters, limit, cursor, sort, descending, _SUMMARY_SELECT
            )
            return self._summaries(project_id, rows), next_cursor

    def latest_arrival(self, project_id: int) -> int:
        with self._read() as cur:
            cur.execute(self._q("SELECT MAX(arrival) FROM calls WHERE project_id = ?"), (project_id,))
            row = cur.fetchone()
        return int(row[0] or 0) if row else 0

    def count_calls(self, project_id: int, filters: CallFilter | None = None, limit: int = 10_000) -> int:
        conds, params = self._where(project_id, filters)
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM calls c WHERE {' AND '.join(conds)} LIMIT ?) capped"
        with self._read() as cur:
            cur.execute(self._q(sql), (*params, max(0, int(limit))))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def get_call(self, project_id: int, call_id: str) -> Record | None:
        with self._read() as cur:
            cur.execute(
                self._q("SELECT record FROM calls WHERE project_id = ? AND call_id = ?"),
                (project_id, call_id),
            )
            row = cur.fetchone()
        return None if row is None else dict(self._load_json(row[0]))

    def export(
        self, project_id: int, filters: CallFilter | None = None, page_size: int = 500
    ) -> Iterator[Record]:
        # Every page as of the moment the export began. Read each as of its own moment, a call whose
        # start time a later version moved (its OTel span and its core record disagree by a few ms)
        # crossed the export's position: listed twice when moved past it, left out when moved before.
        # The pages are read in whichever thread the response asks for the next one, so the snapshot
        # is handed to each page's reads rather than entered once by one thread.
        slots: threading.BoundedSemaphore = self.__dict__.setdefault(
            "_export_slots", threading.BoundedSemaphore(MAX_EXPORT_SNAPSHOTS)
        )
        slot = slots.acquire(blocking=False)
        try:
            with self._export_snapshot() if slot else contextlib.nullcontext() as snapshot:
                yield from self._export_pages(project_id, filters, page_size, snapshot)
        finally:
            if slot:
                slots.release()

    def _export_pages(
        self, project_id: int, filters: CallFilter | None, page_size: int, snapshot: Any | None
    ) -> Iterator[Record]:
        cursor: str | None = None
        while True:
            with self._reading_through(snapshot):
                rows, cursor = self._page(
                    project_id, filters, page_size, cursor, "start_time", False, "c.call_id, c.record"
                )
            for row in rows:
                yield dict(self._load_json(row[1]))
            if cursor is None:
                return

    def get_trace(self, project_id: int, trace_id: str) -> dict[str, list[Row]]:
        trace_id = trace_id.lower()  # hex, stored lower-case: either case finds the trace
        # Spans, calls and the calls' tags as of one moment (see `list_calls`).
        with self._snapshot():
            with self._read() as cur:
                cur.execute(
                    self._q(
                        f"SELECT {', '.join(_SPAN_COLUMNS)} FROM spans WHERE project_id = ? AND trace_id = ? "
                        "ORDER BY start_time, span_id"
                    ),
                    (project_id, trace_id),
                )
                span_rows = cur.fetchall()
                cur.execute(
                    self._q(
                        f"SELECT {_SUMMARY_SELECT} FROM calls c WHERE c.project_id = ? AND c.trace_id = ? "
                        "ORDER BY c.start_time, c.call_id"
                    ),
                    (project_id, trace_id),
                )
                call_rows = cur.fetchall()
            calls = self._summaries(project_id, call_rows)
        spans = []
        for row in span_rows:
            span = dict(zip(_SPAN_COLUMNS, row, strict=False))
            span["attributes"] = self._load_json(span["attributes"]) or {}
            span["resource"] = self._load_json(span["resource"]) or {}
            span["events"] = self._load_json(span["events"]) or []
            spans.append(span)
        return {"spans": spans, "calls": calls}

    def list_sessions(
        self,
        project_id: int,
        start: float,
        end: float,
        limit: int = 50,
        cursor: str | None = None,
        user: str | None = None,
    ) -> tuple[list[Row], str | None]:
        """Sessions active in [start, end) (a call started before `end`, one ended at or after `start`),
        by last activity (the end of their latest call, as listed), most recent first, ties by id.

        Served from the `sessions` table that `write` keeps current, so it is an index range scan; the
        figures (calls, tokens, cost, errors, cancelled calls, first/last time) are the whole session's. The cost is the sum
        of the calls that had one (`priced_calls` of them), None when none had: unknown, not free.
        `user` is the session's first user (the end user, else the user id, of its earliest call that
        has one; None when no call has), `users` how many users its calls had. The `user` filter keeps
        the sessions in which that user made any call.
        """
        limit = max(1, min(int(limit), 10_000))
        conds = "s.project_id = ? AND s.last_time >= ? AND s.first_time < ?"
        params: list[Any] = [project_id, float(start), float(end)]
        if cursor:
            last_time, session_id = decode_session_cursor(cursor)
            conds += " AND (s.last_time, s.session_id) < (?, ?)"
            params += [last_time, session_id]
        if user:
            conds += (
                " AND EXISTS (SELECT 1 FROM session_users u WHERE u.project_id = s.project_id "
                "AND u.session_id = s.session_id AND u.user_name = ?)"
            )
            params.append(user)
        sql = (
            "SELECT s.session_id, s.first_time, s.last_time, s.calls, s.tokens, s.cost, s.errors, s.priced, "
            f"{_SESSION_USER_COLUMNS}, s.cancelled FROM sessions s "
            f"WHERE {conds} ORDER BY s.last_time DESC, s.session_id DESC LIMIT ?"
        )
        with self._read() as cur:
            cur.execute(self._q(sql), (*params, limit + 1))
            rows = cur.fetchall()
        out = [
            {
                "session_id": r[0],
                "first_time": r[1],
                "last_time": r[2],
                "calls": int(r[3]),
                "tokens": int(r[4] or 0),
                "cost_usd": float(r[5] or 0) if r[7] else None,
                "priced_calls": int(r[7] or 0),
                "errors": int(r[6] or 0),
                # Abandoned by their caller: neither ok nor failed (`calls - errors - cancelled` succeeded).
                "cancelled": int(r[10] or 0),
                "user": r[8],
                "users": int(r[9] or 0),
            }
            for r in rows
        ]
        next_cursor = None
        if len(out) > limit:
            out = out[:limit]
            next_cursor = encode_session_cursor(float(out[-1]["last_time"]), out[-1]["session_id"])
        return out, next_cursor

    def session_page(
        self, project_id: int, session_id: str, limit: int = 50, cursor: str | None = None
    ) -> tuple[Row | None, tuple[list[Row], str | None]]:
        # One read transaction: a call written between the totals and the page (a live session) is in
        # both or in neither, so the page never shows more calls than the totals count, nor fewer.
        with self._snapshot():
            return super().session_page(project_id, session_id, limit, cursor)

    def session_totals(self, project_id: int, session_id: str) -> Row | None:
        """One SQL aggregate over the session's calls (found through `calls_session`), so a session of
        100k calls costs one row to answer rather than 100k summaries."""
        with self._read() as cur:
            cur.execute(
                self._q(
                    "SELECT COUNT(*), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), SUM(input_tokens), "
                    "SUM(output_tokens), SUM(cost_usd), COUNT(cost_usd), SUM(duration_ms), "
                    "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) "
                    "FROM calls WHERE project_id = ? AND session_id = ?"
                ),
                (project_id, session_id),
            )
            count, errors, tokens_in, tokens_out, cost, priced, duration, cancelled = cur.fetchone()
            if not count:
                return None
            # As the sessions list has them (and in the same snapshot as the sums, in `session_page`).
            cur.execute(
                self._q(
                    f"SELECT {_SESSION_USER_COLUMNS} FROM sessions s WHERE s.project_id = ? AND s.session_id = ?"
                ),
                (project_id, session_id),
            )
            user, users = cur.fetchone() or (None, 0)
        return {
            "user": user,
            "users": int(users or 0),
            "calls": int(count),
            "errors": int(errors or 0),  # a cancelled stream is no error
            "cancelled": int(cancelled or 0),
            "input_tokens": int(tokens_in or 0),
            "output_tokens": int(tokens_out or 0),
            # The sum of the calls that had a cost; None (unknown, not free) when none had.
            "cost_usd": float(cost or 0) if priced else None,
            "priced_calls": int(priced or 0),
            "duration_ms": float(duration or 0),
        }

    def aggregate(
        self,
        project_id: int,
        start: float,
        end: float,
        bucket_seconds: int = 3600,
        group_by: GroupBy | None = None,
    ) -> list[Row]:
        """Rollup-served aggregates per (bucket, group), ordered by bucket then group.

        Calls count by their start minute: `start` is rounded down and `end` up to whole minutes. The
        coarsest rollup resolution (1 h, 5 min, 1 min) that divides `bucket_seconds` serves the aligned
        middle of the range and finer ones its edges (`rollup.plan`). Buckets without calls are absent.
        Percentiles are exact where `exact.refine` reads them from the calls (a selection of up to
        `exact.EXACT_MAX_CALLS` calls, and rows whose estimate could pass their calls' min or max), else
        within ±4.9% (see `rollup`).
        """
        if bucket_seconds <= 0 or bucket_seconds % 60:
            raise ValueError("litelens: bucket_seconds must be a positive multiple of 60")
        if group_by is not None and group_by not in AGGREGATE_GROUPS:
            raise ValueError(
                f"litelens: cannot group by {group_by!r}; use one of {', '.join(AGGREGATE_GROUPS)}"
            )
        dim = group_by or "all"
        lo = math.floor(start / 60) * 60
        hi = math.ceil(end / 60) * 60
        # Per (slot, group): the summed scalars, then the histogram texts, parsed once per slot at the end
        # (a slot is usually one stored row, whose text then becomes its histogram directly).
        groups: dict[tuple[int, str], list[Any]] = {}
        with self._read() as cur:
            for resolution, a, b in rollup.plan(lo, hi, bucket_seconds):
                cur.execute(
                    self._q(
                        "SELECT bucket, value, count, errors, tokens_in, tokens_out, cost, priced, cancelled, "
                        "latency_hist, ttft_hist, latency_min, latency_max, ttft_min, ttft_max "
                        "FROM rollups WHERE project_id = ? AND resolution = ? AND dim = ? AND bucket >= ? "
                        "AND bucket < ?"
                    ),
                    (project_id, resolution, dim, a, b),
                )
                for (
                    bucket,
                    value,
                    count,
                    errors,
                    t_in,
                    t_out,
                    cost,
                    priced,
                    cancelled,
                    lat,
                    ttft,
                    *bounds,
                ) in cur.fetchall():
                    slot = (int(bucket) // bucket_seconds) * bucket_seconds
                    total = groups.get((slot, value))
                    if total is None:
                        groups[(slot, value)] = [
                            int(count),
                            int(errors),
                            int(t_in),
                            int(t_out),
                            float(cost),
                            int(priced),
                            int(cancelled),
                            [lat],
                            [ttft],
                            bounds,
                        ]
                        continue
                    total[0] += int(count)
                    total[1] += int(errors)
                    total[2] += int(t_in)
                    total[3] += int(t_out)
                    total[4] += float(cost)
                    total[5] += int(priced)
                    total[6] += int(cancelled)
                    total[7].append(lat)
                    total[8].append(ttft)
                    rollup.widen(total[9], bounds)
        summed = [
            rollup.summarize_texts(
                slot,
                value if group_by else None,
                rollup.Delta(t[0], t[1], t[2], t[3], t[4], t[5], t[6], bounds=t[9]),
                t[7],
                t[8],
            )
            for (slot, value), t in sorted(groups.items())
        ]
        return exact.refine(
            self._fetch,
            project_id,
            dim,
            [r for r, _ in summed],
            [e for _, e in summed],
            lo,
            hi,
            bucket_seconds,
            None if dim == "all" else lambda: self._slot_calls(project_id, lo, hi, bucket_seconds),
            self._record_tags(),
        )

    def _slot_calls(self, project_id: int, lo: int, hi: int, bucket_seconds: int) -> dict[int, int]:
        """How many calls each `bucket_seconds` slot of [lo, hi) holds (0: one slot for the whole range,
        keyed `lo`), from the rollups of all calls: what reading a slot's calls costs."""
        out: dict[int, int] = {}
        with self._read() as cur:
            for resolution, a, b in rollup.plan(lo, hi, bucket_seconds or rollup.RESOLUTIONS[-1]):
                cur.execute(
                    self._q(
                        "SELECT bucket, count FROM rollups WHERE project_id = ? AND resolution = ? "
                        "AND dim = 'all' AND bucket >= ? AND bucket < ?"
                    ),
                    (project_id, resolution, a, b),
                )
                for bucket, count in cur.fetchall():
                    slot = int(bucket) // bucket_seconds * bucket_seconds if bucket_seconds else lo
                    out[slot] = out.get(slot, 0) + int(count)
        return out

    def _record_tags(self) -> str:
        """SQL for the `tags` of a call's record (`calls c`) as JSON, text or parsed (see `exact.refine`)."""
        return ""

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read() as cur:
            cur.execute(self._q(sql), tuple(params))
            return list(cur.fetchall())

    def top_groups(
        self, project_id: int, start: float, end: float, group_by: GroupBy, limit: int = 10
    ) -> tuple[list[Row], int]:
        """Ranks the groups in SQL from the rollups' counts, then merges histograms for the top ones only.

        `aggregate(..., group_by)` over a long range parses two histograms per rollup row of every group:
        a week of 500 users is 84,000 hour rows and half a second. Summing counts, tokens and cost is
        cheap in SQL, and only `limit` groups need their percentiles. Same range rounding as `aggregate`.
        """
        if group_by not in AGGREGATE_GROUPS:
            raise ValueError(
                f"litelens: cannot group by {group_by!r}; use one of {', '.join(AGGREGATE_GROUPS)}"
            )
        lo = math.floor(start / 60) * 60
        hi = math.ceil(end / 60) * 60
        ranges = rollup.plan(lo, hi, rollup.RESOLUTIONS[-1])
        if not ranges:
            return [], 0
        where = " OR ".join(["(resolution = ? AND bucket >= ? AND bucket < ?)"] * len(ranges))
        base = f"FROM rollups WHERE project_id = ? AND dim = ? AND ({where})"
        params = [project_id, group_by, *(p for r in ranges for p in r)]
        with self._read() as cur:
            # COUNT(*) OVER () runs after GROUP BY and before LIMIT: the number of groups, in the same pass.
            cur.execute(
                self._q(
                    f"SELECT value, SUM(count), SUM(errors), SUM(tokens_in), SUM(tokens_out), SUM(cost), "
                    f"SUM(priced), SUM(cancelled), COUNT(*) OVER () {base} GROUP BY value HAVING SUM(count) > 0 "
                    "ORDER BY SUM(count) DESC, value LIMIT ?"
                ),
                (*params, max(1, min(int(limit), 1000))),
            )
            rows = cur.fetchall()
            totals: dict[str, rollup.Delta] = {}
            for value, count, errors, t_in, t_out, cost, priced, cancelled, _ in rows:
                totals[value] = rollup.Delta(
                    int(count), int(errors), int(t_in), int(t_out), float(cost), int(priced), int(cancelled)
                )
            groups = int(rows[0][8]) if rows else 0
            if totals:
                marks = ", ".join("?" * len(totals))
                cur.execute(
                    self._q(
                        "SELECT value, latency_hist, ttft_hist, latency_min, latency_max, ttft_min, ttft_max "
                        f"{base} AND value IN ({marks})"
                    ),
                    (*params, *totals),
                )
                for value, latency, ttft, *bounds in cur.fetchall():
                    rollup.add_hist(totals[value].latency, latency)
                    rollup.add_hist(totals[value].ttft, ttft)
                    totals[value].widen(*bounds)
        summed = [rollup.summarize(lo, value, total) for value, total in totals.items()]
        refined = exact.refine(
            self._fetch,
            project_id,
            group_by,
            [r for r, _ in summed],
            [e for _, e in summed],
            lo,
            hi,
            0,
            lambda: self._slot_calls(project_id, lo, hi, 0),
            self._record_tags(),
        )
        return refined, groups

    def _unindexed(self, expr: str) -> str:
        """`expr` written so the planner does not pick an index for it (default: unchanged)."""
        return expr

    def top_calls(
        self, project_id: int, start: float, end: float, sort: SortKey = "duration_ms", limit: int = 5
    ) -> list[Row]:
        """Walks the sort key's index from the top, keeping the calls that started in the range, once
        the range holds `_WALK_FROM` calls (`_walks`, as `list_calls` decides); a range of fewer is read
        and sorted.

        Left to itself, SQLite prefers the time index and sorts the range (200 ms for a day of a 1M-call
        week, 1.4 s for the week). The walk instead reads about limit x (calls in the project / calls in
        the range) index entries: well under 1 ms for a day or the week. Past a range of a few calls
        that is the whole index: an hour without calls took 10 ms per 100,000 calls in the project.
        """
        if sort not in SORT_KEYS:
            raise ValueError(f"litelens: cannot sort by {sort!r}; use one of {', '.join(SORT_KEYS)}")
        # Not down the arrival index, which `_page` walks bounded only: arrival follows time, so the
        # calls of a past range lie behind every call that arrived since.
        walk = sort not in ("start_time", "arrival") and self._walks(
            project_id, CallFilter(start=start, end=end), sort
        )
        expr = _SORT_EXPR[sort]
        if not walk and sort != "start_time":
            expr = self._unindexed(expr)
        when = self._unindexed("c.start_time") if walk else "c.start_time"
        base = f"SELECT {_SUMMARY_SELECT} FROM calls c WHERE c.project_id = ? AND {when} >= ? AND {when} < ?"
        # As `_page` lists them: the priced calls, then those of unknown cost.
        parts = (
            [
                f"AND c.cost_usd IS NOT NULL ORDER BY {expr} DESC, c.call_id DESC",
                f"AND c.cost_usd IS NULL ORDER BY {'c.call_id' if walk else self._unindexed('c.call_id')} DESC",
            ]
            if sort == "cost_usd"
            else [f"ORDER BY {expr} DESC, c.call_id DESC"]
        )
        limit = max(1, min(int(limit), 1000))
        rows: list[tuple[Any, ...]] = []
        with self._snapshot():  # the calls and their tags as of one moment (see `list_calls`)
            for part in parts:
                with self._read() as cur:
                    cur.execute(
                        self._q(f"{base} {part} LIMIT ?"),
                        (project_id, float(start), float(end), limit - len(rows)),
                    )
                    rows += cur.fetchall()
                if len(rows) >= limit:
                    break
            return self._summaries(project_id, rows)

    def top_errors(self, project_id: int, start: float, end: float, limit: int = 10) -> list[Row]:
        """Served by the partial index `calls_errors` (failed calls only), so it reads no call rows."""
        limit = max(1, min(int(limit), 1000))
        with self._read() as cur:
            cur.execute(
                self._q(
                    "SELECT error_type, COUNT(*), MAX(start_time) FROM calls WHERE project_id = ? "
                    "AND status = 'error' AND start_time >= ? AND start_time < ? GROUP BY error_type "
                    # Failures without a class after the classes they tie with: SQLite sorts NULL first,
                    # PostgreSQL last, so the two listed a tie in opposite orders.
                    "ORDER BY COUNT(*) DESC, error_type IS NULL, error_type LIMIT ?"
                ),
                (project_id, float(start), float(end), limit),
            )
            rows = cur.fetchall()
        return [{"error_type": r[0], "count": int(r[1]), "last_time": float(r[2])} for r in rows]

    # ---- retention

    def delete_older_than(self, cutoff_epoch: float, batch: int = 5000) -> int:
        """Delete data older than the cutoff in short transactions so ingest waits briefly.

        Calls and their tags go oldest first, a batch per transaction (`_delete_calls`), taken out of
        their sessions' rows and of the rollups in the same transaction; then spans by start time, and
        any rollup row left whose whole bucket is before the cutoff. `batch` is the most calls per transaction,
        and a batch reads at most `_RETENTION_BYTES` of records; the batch shrinks while a transaction
        takes longer than ~0.1 s (slow disk, busy machine) and grows back after, so a concurrent `write`
        waits about that long at worst.
        """
        cutoff = float(cutoff_epoch)
        deleted = 0
        for project in self.list_projects():
            pid = project["id"]
            size = min(batch, 500)
            since = None
            while True:
                began = time.perf_counter()
                with self._write() as cur:
                    taken, done, since = self._delete_calls(cur, pid, cutoff, size, since)
                deleted += taken
                if done:
                    break
                size = _next_size(size, batch, time.perf_counter() - began)
            self._delete_batched(
                "spans",
                "(project_id, trace_id, span_id)",
                "project_id = ? AND start_time < ?",
                (pid, cutoff),
                batch,
            )
            # Rows of whole buckets before the cutoff that hold no call (the batches above took those
            # of the calls they deleted).
            for resolution in rollup.RESOLUTIONS:
                for dim in rollup.DIMENSIONS:
                    self._delete_batched(
                        "rollups",
                        "(project_id, resolution, dim, bucket, value)",
                        "project_id = ? AND resolution = ? AND dim = ? AND bucket <= ?",
                        (pid, resolution, dim, cutoff - resolution),
                        batch,
                    )
        if deleted:
            # Debug: the server's retention loop says it at info, and `serve` shows info lines now.
            logger.debug("retention deleted %d calls older than %s", deleted, cutoff)
        return deleted

    def _delete_calls(
        self, cur: Any, pid: int, cutoff: float, size: int, since: float | None
    ) -> tuple[int, bool, float | None]:
        """Delete the oldest calls of a project that started before the cutoff, at most `size`, with their
        tags, out of their sessions and out of the rollups; returns how many, whether none is left, and
        the start before which no call is left (`since` for the next batch: what this one returned).

        The rollups follow without reading the deleted calls' records, but for those of the minute
        holding the cutoff, whose row stays: reading, parsing and taking out each record was most of a
        pass over a backlog (~0.4 ms a call). A coarser row is the sum of its minute rows, so a minute
        row goes whole once every call it counts is gone, taken out of the 5-minute and hour rows holding
        the cutoff (`rollup.minutes_out`), and any row whose whole bucket is before the oldest call left
        goes. Until the pass ends, the rows holding the oldest call left may still count calls deleted
        before it: rows the pass deletes whole later, or rows holding the cutoff, corrected once the
        minute of that call goes.
        """
        first_minute = rollup.RESOLUTIONS[0]
        edge = cutoff // first_minute * first_minute
        cur.execute(
            self._q(
                "SELECT call_id, CASE WHEN start_time >= ? THEN length(CAST(record AS TEXT)) END, start_time, "
                f"{SESSION_PART_COLUMNS} FROM calls WHERE project_id = ? AND start_time < ? "
                "ORDER BY start_time LIMIT ?"
            ),
            (edge, pid, cutoff, size + 1),
        )
        # One more than the batch, to know whether this batch is the last: a last batch exactly full took
        # the minute rows out of the coarser ones only up to its own last call, the next found nothing,
        # and the minute rows from there to the cutoff went later without being taken out.
        listed = cur.fetchall()
        done = len(listed) <= size
        listed = listed[:size]
        found = _within_bytes(listed, _RETENTION_BYTES)
        done = done and len(found) == len(listed)
        if not found:
            return 0, done, since
        # Every call that started before this is gone once the transaction commits.
        gone = cutoff if done else float(found[-1][2])
        # The rows of the minute holding the last batch's end may be left without calls, but not before.
        oldest = float(found[0][2]) if since is None else min(since, float(found[0][2]))
        minute: dict[rollup.RollupKey, rollup.Change] = {}
        for chunk in _chunks([r[0] for r in found if r[2] >= edge]):
            marks = ", ".join("?" * len(chunk))
            cur.execute(
                self._q(f"SELECT record FROM calls WHERE project_id = ? AND call_id IN ({marks})"),
                (pid, *chunk),
            )
            for (text,) in cur.fetchall():
                rollup.add_contribution(minute, self._load_json(text), -1, (first_minute,))
        changes = rollup.coarsen(minute)
        # Rows that go in this transaction: whole buckets from the oldest call's to the oldest call left.
        spans = [(r, oldest // r * r, gone - r) for r in rollup.RESOLUTIONS]
        hour = cutoff // rollup.RESOLUTIONS[-1] * rollup.RESOLUTIONS[-1]
        _, low, high = spans[0]
        if high >= hour:  # minute rows in the hour holding the cutoff go: out of the rows that stay
            for dim in rollup.DIMENSIONS:
                cur.execute(
                    self._q(
                        "SELECT dim, bucket, value, count, errors, tokens_in, tokens_out, cost, priced, "
                        "cancelled, latency_hist, ttft_hist FROM rollups WHERE project_id = ? AND resolution = ? "
                        "AND dim = ? AND bucket >= ? AND bucket <= ?"
                    ),
                    (pid, first_minute, dim, max(low, hour), high),
                )
                for key, change in rollup.minutes_out(cur.fetchall(), cutoff).items():
                    rollup.add_change(changes, key, change)
        self.forget_rollups()  # inside the transaction: no write sees the cache in between
        if changes:
            self._apply_rollups(cur, pid, changes)
        for resolution, low, high in spans:
            if low <= high:
                for dim in rollup.DIMENSIONS:
                    cur.execute(
                        self._q(
                            "DELETE FROM rollups WHERE project_id = ? AND resolution = ? AND dim = ? "
                            "AND bucket >= ? AND bucket <= ?"
                        ),
                        (pid, resolution, dim, low, high),
                    )
        ids = [(pid, r[0]) for r in found]
        cur.executemany(self._q("DELETE FROM call_tags WHERE project_id = ? AND call_id = ?"), ids)
        cur.executemany(self._q("DELETE FROM calls WHERE project_id = ? AND call_id = ?"), ids)
        self._take_from_sessions(cur, pid, [r[3:] for r in found])
        return len(found), done, gone

    def _delete_batched(self, table: str, key: str, where: str, params: tuple[Any, ...], batch: int) -> None:
        size = min(batch, 500)
        while True:
            began = time.perf_counter()
            with self._write() as cur:
                if table == "rollups":
                    self.forget_rollups()  # inside the transaction, so no write sees the cache in between
                cur.execute(
                    self._q(
                        f"DELETE FROM {table} WHERE {key} IN (SELECT {key[1:-1]} FROM {table} WHERE {where} LIMIT ?)"
                    ),
                    (*params, size),
                )
                done = cur.rowcount
            if done < size:
                return
            size = _next_size(size, batch, time.perf_counter() - began)


def _order(key: list[str], descending: bool) -> str:
    """ORDER BY of a part of a list (`SQLStore._parts`) whose key columns are `key`."""
    direction = "DESC" if descending else "ASC"
    return ", ".join(f"{column} {direction}" for column in key)


def _within_bytes(rows: list[Any], budget: int) -> list[Any]:
    """The first of `rows` (call id, record length, ...) whose records add up to at most `budget`
    characters, and at least one row."""
    total = 0
    for n, row in enumerate(rows):
        total += int(row[1] or 0)
        if total > budget and n:
            return rows[:n]
    return rows


def _next_size(size: int, most: int, took: float) -> int:
    """The next retention batch: halve while transactions run long, double back up to `most`."""
    if took > _RETENTION_TARGET_S:
        return max(50, size // 2)
    if took < _RETENTION_TARGET_S / 4:
        return min(most, size * 2)
    return size
