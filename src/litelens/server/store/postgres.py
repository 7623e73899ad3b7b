"""The PostgreSQL backend (psycopg 3): a small thread-safe connection pool and serialized writers.

Why writers are serialized: `write` looks up which calls are already stored, merges those, and adds
every new call to the rollup and session rows (and COPYs it, which cannot skip a conflict). Two
collectors doing that at once could both see "no stored version" and both add the call to the rollups.
A transaction-scoped advisory lock taken first in every write transaction makes those steps atomic
across connections and processes; under READ COMMITTED each statement after the lock sees what the
previous holder committed. Reads take no lock. The rows, JSON and rollup deltas are built before the
transaction starts, so the lock covers only the lookup and the SQL (~0.1-0.3 s per 1,000 calls).

Durability is PostgreSQL's: `write` returns after COMMIT, which (with the default `synchronous_commit`)
has flushed the WAL.
"""

from __future__ import annotations

import json
import queue
import select
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from litelens.server.store.base import CallFilter, Record, Row, StoreUnavailable
from litelens.server.store.rollup import RollupKey
from litelens.server.store.rows import STORED_CALL_COLUMNS
from litelens.server.store.sql import NO_JSON, SQLStore, cased_regex, like_pattern, metadata_json
from litelens.server.store.write import (
    SESSION_PART_COLUMNS,
    SESSIONS_BACKFILL,
    arrival_column,
    cancelled_backfill,
    chunks,
    latency_bounds_backfill,
    long_tag_priced_repair,
    priced_backfill,
    session_cancelled_backfill,
    session_users_table,
)

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "litelens: the PostgreSQL store needs psycopg; install it with pip install 'litelens[postgres]'"
    ) from exc

# (After the check above: it subclasses psycopg's connection.)
from litelens.server.store.pgwatch import (
    IDLE_IN_WRITE_FACTOR,
    Watchdog,
    WatchedConnection,
    answer_bound_s,
    bound_set_by_service,
    connect_options,
    first_line,
)

# Arbitrary constant naming litelens's write lock among the database's advisory locks.
_WRITE_LOCK = 0x6C6974656C656E73 & 0x7FFFFFFFFFFFFFFF

_V1 = [
    """CREATE TABLE projects (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        project_id BIGINT NOT NULL REFERENCES projects (id),
        prefix TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_used DOUBLE PRECISION
    )""",
    "CREATE INDEX api_keys_project ON api_keys (project_id)",
    """CREATE TABLE calls (
        project_id BIGINT NOT NULL,
        call_id TEXT NOT NULL,
        start_time DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        ttft_ms DOUBLE PRECISION,
        call_type TEXT NOT NULL,
        stream BOOLEAN NOT NULL,
        request_model TEXT,
        response_model TEXT,
        provider TEXT,
        status TEXT NOT NULL,
        error_type TEXT,
        end_user TEXT,
        user_id TEXT,
        session_id TEXT,
        trace_id TEXT,
        span_id TEXT,
        parent_span_id TEXT,
        key_alias TEXT,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        total_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION,
        record JSONB NOT NULL,
        PRIMARY KEY (project_id, call_id)
    )""",
    "CREATE INDEX calls_time ON calls (project_id, start_time, call_id)",
    "CREATE INDEX calls_trace ON calls (project_id, trace_id)",
    "CREATE INDEX calls_session ON calls (project_id, session_id, start_time)",
    """CREATE TABLE call_tags (
        project_id BIGINT NOT NULL,
        call_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (project_id, tag, call_id)
    )""",
    "CREATE INDEX call_tags_call ON call_tags (project_id, call_id)",
    """CREATE TABLE spans (
        project_id BIGINT NOT NULL,
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT,
        kind TEXT,
        start_time DOUBLE PRECISION NOT NULL,
        end_time DOUBLE PRECISION NOT NULL,
        status TEXT,
        attributes TEXT,
        resource TEXT,
        call_id TEXT,
        PRIMARY KEY (project_id, trace_id, span_id)
    )""",
    "CREATE INDEX spans_time ON spans (project_id, start_time)",
    """CREATE TABLE rollups (
        project_id BIGINT NOT NULL,
        resolution INTEGER NOT NULL,
        dim TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        value TEXT NOT NULL,
        count BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        tokens_in BIGINT NOT NULL,
        tokens_out BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        latency_hist TEXT NOT NULL,
        ttft_hist TEXT NOT NULL,
        PRIMARY KEY (project_id, resolution, dim, bucket, value)
    )""",
]

# v2: see sqlite._V2 (same change, PostgreSQL spelling).
_V2 = [
    "ALTER TABLE calls ADD COLUMN cached_input_tokens BIGINT",
    "ALTER TABLE calls ADD COLUMN reasoning_tokens BIGINT",
    """UPDATE calls SET
        cached_input_tokens = (record -> 'usage' ->> 'cached_input_tokens')::bigint,
        reasoning_tokens = (record -> 'usage' ->> 'reasoning_tokens')::bigint""",
    "CREATE INDEX calls_duration ON calls (project_id, duration_ms, call_id)",
    "CREATE INDEX calls_tokens ON calls (project_id, total_tokens, call_id)",
    "CREATE INDEX calls_cost ON calls (project_id, (COALESCE(cost_usd, 0)), call_id)",
]


# v3: see sqlite._V3.
_V3 = [
    """CREATE TABLE sessions (
        project_id BIGINT NOT NULL,
        session_id TEXT NOT NULL,
        first_time DOUBLE PRECISION NOT NULL,
        last_start DOUBLE PRECISION NOT NULL,
        last_time DOUBLE PRECISION NOT NULL,
        calls BIGINT NOT NULL,
        tokens BIGINT NOT NULL,
        cost DOUBLE PRECISION NOT NULL,
        errors BIGINT NOT NULL,
        PRIMARY KEY (project_id, session_id)
    )""",
    "CREATE INDEX sessions_recent ON sessions (project_id, last_start, session_id)",
    SESSIONS_BACKFILL,
]

# v4: see sqlite._V4.
_V4 = [
    "CREATE INDEX calls_errors ON calls (project_id, start_time, error_type) WHERE status = 'error'",
]

# v5: see sqlite._V6.
_V5 = [
    "ALTER TABLE spans ADD COLUMN status_message TEXT",
    "ALTER TABLE spans ADD COLUMN events TEXT",
]

# v6: see sqlite._V7.
_V6 = [
    "DROP INDEX sessions_recent",
    "CREATE INDEX sessions_recent ON sessions (project_id, last_time, session_id)",
]

# v7: a call's record is stored as json (its text, as written) rather than jsonb, which sorted the keys:
# a call read back had its fields and metadata in another order than sent, and than SQLite gave. Free-text
# search reads the text (twice as fast as printing jsonb), but json answers `->` by parsing the whole
# record, content included: a metadata filter took 6x as long (0.26 s for 20k calls of 4 kB). So the
# metadata is kept apart, as jsonb, by PostgreSQL itself (nothing changes in the write path). Rewrites
# the table once; records stored before keep jsonb's order (the order sent is gone).
_V7 = [
    "ALTER TABLE calls ALTER COLUMN record TYPE json USING record::json",
    "ALTER TABLE calls ADD COLUMN metadata jsonb GENERATED ALWAYS AS ((record -> 'metadata')::jsonb) STORED",
]


# v8: see sqlite._V8.
_V8 = priced_backfill(
    "CAST(FLOOR(start_time / 60) * 60 AS BIGINT)",
    "BIGINT",
    "json_array_elements_text(CASE WHEN json_typeof(r.record -> 'tags') = 'array' "
    "THEN r.record -> 'tags' END) AS j (value)",
)


# v9: see sqlite._V9.
_V9 = session_users_table("BIGINT", "DOUBLE PRECISION", "")


# v10: the names that answers are ordered by compare byte by byte (the "C" collation), as SQLite compares
# them, whatever the database's locale. Under en_US.UTF-8 or ICU, calls that tie on their sort value were
# listed in another order than on SQLite (`k` before `K` before `z`), and so were sessions, a call's tags,
# the top groups and the first user of a session. Equality was byte equality already; the indexes that
# hold these columns are rebuilt (the table is not rewritten).
_V10 = [
    'ALTER TABLE calls ALTER COLUMN call_id TYPE TEXT COLLATE "C"',
    'ALTER TABLE calls ALTER COLUMN error_type TYPE TEXT COLLATE "C"',
    'ALTER TABLE call_tags ALTER COLUMN tag TYPE TEXT COLLATE "C"',
    'ALTER TABLE sessions ALTER COLUMN session_id TYPE TEXT COLLATE "C"',
    'ALTER TABLE session_users ALTER COLUMN user_name TYPE TEXT COLLATE "C"',
    'ALTER TABLE rollups ALTER COLUMN value TYPE TEXT COLLATE "C"',
]


# v11: see sqlite._V10.
_V11 = cancelled_backfill(
    "CAST(FLOOR(start_time / 60) * 60 AS BIGINT)",
    "BIGINT",
    "json_array_elements_text(CASE WHEN json_typeof(r.record -> 'tags') = 'array' "
    "THEN r.record -> 'tags' END) AS j (value)",
)


# v12: see sqlite._V11 (PostgreSQL keeps NULLs together at one end of a b-tree too).
_V12 = [
    "DROP INDEX calls_cost",
    "CREATE INDEX calls_cost ON calls (project_id, cost_usd, call_id)",
]


# v13: see sqlite._V12.
_V13 = session_cancelled_backfill("BIGINT")


# v14: see sqlite._V13.
_V14 = long_tag_priced_repair(
    "CAST(FLOOR(start_time / 60) * 60 AS BIGINT)",
    "BIGINT",
    "json_array_elements_text(CASE WHEN json_typeof(r.record -> 'tags') = 'array' "
    "THEN r.record -> 'tags' END) AS j (value)",
)


# v15: see sqlite._V14.
_V15 = latency_bounds_backfill(
    "CAST(FLOOR(start_time / 60) * 60 AS BIGINT)",
    "BIGINT",
    "DOUBLE PRECISION",
    "json_array_elements_text(CASE WHEN json_typeof(r.record -> 'tags') = 'array' "
    "THEN r.record -> 'tags' END) AS j (value)",
)


# v16: see sqlite._V15.
_V16 = [
    "DROP INDEX calls_duration",
    "CREATE INDEX calls_duration ON calls (project_id, duration_ms, call_id, start_time)",
    "DROP INDEX calls_tokens",
    "CREATE INDEX calls_tokens ON calls (project_id, total_tokens, call_id, start_time)",
    "DROP INDEX calls_cost",
    "CREATE INDEX calls_cost ON calls (project_id, cost_usd, call_id, start_time)",
]


# v17: see sqlite._V16. A join rather than SQLite's lookup per row, and NOT NULL once filled (SQLite
# cannot add the constraint to a column; every write there gives an arrival all the same).
_V17 = [
    *arrival_column(
        "BIGINT",
        "UPDATE calls c SET arrival = a.n FROM litelens_arrivals a "
        "WHERE a.project_id = c.project_id AND a.call_id = c.call_id",
    ),
    "ALTER TABLE calls ALTER COLUMN arrival SET NOT NULL",
]


class _Pool:
    """At most `size` connections, handed out one thread at a time; broken ones are replaced."""

    def __init__(self, url: str, size: int) -> None:
        self._url = url
        self._size = size
        self._idle: queue.LifoQueue[WatchedConnection] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()
        self._closed = False
        self._all: list[WatchedConnection] = []
        self._options = connect_options(url)
        self._stale_before = 0.0
        # A service file's tcp_user_timeout is known once a connection is open (`_learn_bound`).
        self._bound_known = not bound_set_by_service(url)
        bound = answer_bound_s(url) if self._bound_known else None
        self.watchdog = None if bound is None else Watchdog(url, bound, self._drop_idle)

    @contextmanager
    def connection(self) -> Iterator[WatchedConnection]:
        conn = self._get()
        try:
            yield conn
        finally:
            self._put(conn)

    def _get(self) -> WatchedConnection:
        while True:
            if self._closed:
                raise RuntimeError("litelens: store is closed")
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                fresh = self._open()
                if fresh is not None:
                    return fresh
                conn = self._idle.get(timeout=60)
            # Only a connection that sat idle is checked: a fresh one has just answered. One opened before
            # a path went silent may have been given back just after `_drop_idle` emptied the pool.
            if conn.opened >= self._stale_before and _usable(conn):
                return conn
            self._discard(conn)

    def _open(self) -> WatchedConnection | None:
        """A new connection, or None when the pool has all it may open."""
        with self._lock:
            if self._opened >= self._size:
                return None
            self._opened += 1
            try:
                conn = _connect(self._url, self.watchdog, **self._options)
                conn.opened = time.monotonic()
                if not self._bound_known:
                    self._learn_bound(conn)
            except Exception:
                self._opened -= 1
                raise
            self._all.append(conn)
            return conn

    def _learn_bound(self, conn: WatchedConnection) -> None:
        """Watch as the service file says: the URL leaves `tcp_user_timeout` to it, so acting at our
        default would override a DBA's choice (0, or a longer bound for long statements)."""
        self._bound_known = True
        bound = answer_bound_s(self._url, conn.info.get_parameters())
        if bound is not None:
            self.watchdog = Watchdog(self._url, bound, self._drop_idle)
            _watch(conn, self.watchdog)

    def _put(self, conn: WatchedConnection) -> None:
        if conn.closed or conn.broken or self._closed or conn.opened < self._stale_before:
            self._discard(conn)
            return
        self._idle.put(conn)

    def _discard(self, conn: WatchedConnection) -> None:
        with self._lock:
            self._opened -= 1
            if conn in self._all:
                self._all.remove(conn)
        if not conn.closed:
            conn.close()

    def _drop_idle(self) -> None:
        """Close the idle connections: one found on a path gone silent says its siblings most likely are
        too (a failover moves them all), and each would cost the request that drew it the wait again.
        Those in use are closed when given back."""
        self._stale_before = time.monotonic()
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(conn)

    def close(self) -> None:
        if self.watchdog is not None:
            self.watchdog.close()
        with self._lock:
            self._closed = True
            for conn in self._all:
                conn.close()
            self._all.clear()


def _connect(url: str, watchdog: Watchdog | None, **options: Any) -> WatchedConnection:
    try:
        conn = WatchedConnection.connect(url, autocommit=True, **options)
    except psycopg.OperationalError as exc:  # refused, timed out, unknown host, a refusal by the server
        raise StoreUnavailable(first_line(exc)) from exc
    _watch(conn, watchdog)
    return conn


def _watch(conn: WatchedConnection, watchdog: Watchdog | None) -> None:
    try:
        conn.watch(watchdog)
    except psycopg.OperationalError as exc:
        conn.close()
        raise StoreUnavailable(first_line(exc)) from exc


@contextmanager
def _lost(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A failure that broke the connection is the database's absence, not the statement's fault."""
    try:
        yield
    except psycopg.Error as exc:
        if conn.broken:
            silent = getattr(conn, "given_up_after", None)
            if silent is not None:
                raise StoreUnavailable(f"no answer from the database for {silent:.0f} s") from exc
            raise StoreUnavailable(first_line(exc)) from exc
        raise


def _usable(conn: psycopg.Connection[Any]) -> bool:
    """False for an idle connection the server has ended since it was last used.

    A session ended while idle (a PostgreSQL restart or failover, `pg_terminate_backend`, a proxy or
    pgbouncer closing idle clients) looks open until it is used: the first query on it failed, so the
    request that drew it was answered 503 although the database was up again. The server's goodbye (its
    FATAL message, or the socket's end) is already waiting on the socket, and nothing else arrives on an
    idle connection that has nothing to LISTEN for, so a readable socket is a dead one; seeing that costs
    no round trip. (A connection wrongly taken for dead is only replaced.)
    """
    if conn.closed or conn.broken:
        return False
    try:
        fd = conn.fileno()
        if hasattr(select, "poll"):  # select() refuses descriptors past 1023, which a busy server has
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return False
    return not readable


class PostgresStore(SQLStore):
    """`Store` on PostgreSQL, for deployments with several collectors or more data than one file."""

    MIGRATIONS = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14, _V15, _V16, _V17)
    _LEAST = "LEAST"
    _GREATEST = "GREATEST"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self._pool = _Pool(url, pool_size)

    def _lock_sql(self) -> str:
        # Read after the pool opened a connection: with a service file, only then is the bound known.
        watchdog = self._pool.watchdog
        if watchdog is None:
            return "SELECT pg_advisory_xact_lock(%s)"
        # (set_config's third argument makes it SET LOCAL: the transaction's alone.)
        return (
            "SELECT pg_advisory_xact_lock(%s), set_config('idle_in_transaction_session_timeout', "
            f"'{int(watchdog.after_s * IDLE_IN_WRITE_FACTOR * 1000)}ms', true)"
        )

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _json_param(self) -> str:
        return "CAST(? AS json)"

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._pool.connection() as conn, _lost(conn), conn.transaction(), conn.cursor() as cur:
            cur.execute(self._lock_sql(), (_WRITE_LOCK,))
            yield cur

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor[Any]]:
        snapshot = self._snapshot_cursor()
        if snapshot is not None:
            yield snapshot
            return
        with self._pool.connection() as conn, _lost(conn), conn.cursor() as cur:
            yield cur

    @contextmanager
    def _read_snapshot(self) -> Iterator[psycopg.Cursor[Any]]:
        # The pool's connections are in autocommit, each statement its own snapshot (READ COMMITTED);
        # REPEATABLE READ takes one at the transaction's first query and keeps it.
        with self._pool.connection() as conn, _lost(conn), conn.cursor() as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield cur
            finally:
                try:
                    cur.execute("ROLLBACK")  # read only: nothing to keep
                except psycopg.Error:
                    conn.close()  # (not given back in a transaction: the pool drops a closed one)

    @contextmanager
    def _export_snapshot(self) -> Iterator[psycopg.Cursor[Any]]:
        # Not a pooled connection: ingest writes through the pool, and a few long exports held it all.
        with (
            _connect(self.url, self._pool.watchdog, **connect_options(self.url)) as conn,
            _lost(conn),
            conn.cursor() as cur,
        ):
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur

    # PostgreSQL text holds no NUL, so no stored id or value has one (ingest drops it from records), and
    # one sent as a parameter fails the query: an id or filter with a NUL from a URL matches nothing
    # (the page's 404, an empty list) rather than a 503 "storage unavailable".

    def _where(
        self, project_id: int, filters: CallFilter | None, walk: bool = False
    ) -> tuple[list[str], list[Any]]:
        conds, params = super()._where(project_id, filters, walk)
        # (A metadata value travels as JSON, in which a NUL is the escape that jsonb refuses.)
        values = filters.metadata.values() if filters is not None else ()
        if any(isinstance(p, str) and "\x00" in p for p in (*params, *values)):
            return ["c.project_id = ?", "FALSE"], [project_id]
        return conds, params

    def _walks(self, project_id: int, filters: CallFilter | None, sort: str, least: int = 0) -> bool:
        # PostgreSQL weighs walking the sort index against reading the range from its statistics and,
        # the range checked on the index entry (v16), walks it by itself when that reads less: a day of a
        # 100,000-call week 0.4 ms. Kept from the time index as SQLite needs, a page of one model of the
        # day was a parallel scan of the table (48 ms).
        if sort == "arrival":
            # Except in arrival order: that index holds no start time, and the planner takes a range's
            # calls to be spread evenly along it where they arrive about when they start. So it walked
            # the index past every call before the range (the last day upwards: 85,543 rows, 141 ms) or
            # behind a filter keeping none (all 100,000 rows, 205 ms). Decided as on SQLite instead,
            # the walk bounded (`_page`).
            return super()._walks(project_id, filters, sort, least)
        return False

    def _unindexed(self, expr: str) -> str:
        # Only arrival (see `_walks`): the planner chooses well for the other sort keys and the time.
        return "(c.arrival + 0)" if expr == "c.arrival" else expr

    def get_call(self, project_id: int, call_id: str) -> Record | None:
        return None if "\x00" in call_id else super().get_call(project_id, call_id)

    def get_trace(self, project_id: int, trace_id: str) -> dict[str, list[Row]]:
        if "\x00" in trace_id:
            return {"spans": [], "calls": []}
        return super().get_trace(project_id, trace_id)

    def list_sessions(
        self,
        project_id: int,
        start: float,
        end: float,
        limit: int = 50,
        cursor: str | None = None,
        user: str | None = None,
    ) -> tuple[list[Row], str | None]:
        if user and "\x00" in user:
            return [], None
        return super().list_sessions(project_id, start, end, limit, cursor, user)

    def session_totals(self, project_id: int, session_id: str) -> Row | None:
        return None if "\x00" in session_id else super().session_totals(project_id, session_id)

    def _stored_calls(
        self, cur: psycopg.Cursor[Any], project_id: int, call_ids: list[str]
    ) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        # A join with the id array, not `call_id IN (...)`: on a table that grew since autovacuum last
        # analyzed it the planner chose a sequential scan for the IN list, and each batch's lookup grew
        # with the table (a third of write() at 20k calls). unnest is a nested loop over the primary key.
        found: dict[str, Any] = {}
        for chunk in chunks(call_ids, 2000):
            cur.execute(
                f"SELECT c.call_id, c.record, {SESSION_PART_COLUMNS} FROM unnest(%s::text[]) AS k (call_id) "
                "JOIN calls c ON c.project_id = %s AND c.call_id = k.call_id",
                (list(chunk), project_id),
            )
            for call_id, record, *columns in cur.fetchall():
                found[call_id] = (self._load_json(record), tuple(columns))
        return found

    def _stored_attributes(
        self, cur: psycopg.Cursor[Any], keys: Sequence[tuple[int, str, str]]
    ) -> dict[tuple[int, str, str], str]:
        # A join with the key arrays, as `_stored_calls` does: a nested loop over the primary key.
        found: dict[tuple[int, str, str], str] = {}
        for chunk in chunks(keys, 2000):
            cur.execute(
                "SELECT s.project_id, s.trace_id, s.span_id, s.attributes "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS k (project_id, trace_id, span_id) "
                "JOIN spans s ON s.project_id = k.project_id AND s.trace_id = k.trace_id "
                "AND s.span_id = k.span_id WHERE s.attributes IS NOT NULL",
                ([k[0] for k in chunk], [k[1] for k in chunk], [k[2] for k in chunk]),
            )
            for pid, trace_id, span_id, text in cur.fetchall():
                found[(pid, trace_id, span_id)] = text
        return found

    def _insert_calls(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        # COPY: these calls are known absent (looked up under the advisory lock), so nothing can conflict,
        # and COPY loads rows several times faster than an INSERT per row, even pipelined.
        with cur.copy(f"COPY calls ({', '.join(STORED_CALL_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _insert_tags(self, cur: psycopg.Cursor[Any], tag_rows: list[tuple[Any, ...]]) -> None:
        # One statement over arrays instead of a statement per tag.
        cur.execute(
            "INSERT INTO call_tags (project_id, call_id, tag) "
            "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
            ([r[0] for r in tag_rows], [r[1] for r in tag_rows], [r[2] for r in tag_rows]),
        )

    def _insert_values(
        self, cur: psycopg.Cursor[Any], head: str, marks: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
    ) -> None:
        # psycopg pipelines `executemany`: the rows go out without a round trip each.
        cur.executemany(self._q(f"{head} VALUES {marks} {tail}"), rows)

    def _stored_hists(
        self, cur: psycopg.Cursor[Any], project_id: int, keys: Sequence[RollupKey]
    ) -> dict[RollupKey, tuple[str, str]]:
        # A join with arrays of the keys (see _stored_calls for why not IN lists).
        found: dict[RollupKey, tuple[str, str]] = {}
        for chunk in chunks(keys, 2000):
            cur.execute(
                "SELECT r.resolution, r.bucket, r.dim, r.value, r.latency_hist, r.ttft_hist FROM rollups r "
                "JOIN unnest(%s::int[], %s::bigint[], %s::text[], %s::text[]) AS k (resolution, bucket, dim, value) "
                "ON r.project_id = %s AND r.resolution = k.resolution AND r.dim = k.dim AND r.bucket = k.bucket "
                "AND r.value = k.value",
                (
                    [k[0] for k in chunk],
                    [k[1] for k in chunk],
                    [k[2] for k in chunk],
                    [k[3] for k in chunk],
                    project_id,
                ),
            )
            for resolution, bucket, dim, value, latency, ttft in cur.fetchall():
                found[(int(resolution), int(bucket), dim, value)] = (latency, ttft)
        return found

    def _metadata_condition(self, key: str, value: str) -> tuple[str, list[Any]]:
        # jsonb equality: numbers by value (1 = 1.0), objects whatever their key order, as Python's.
        # The forms the text may take travel as one JSON array (the string alone was sent twice). Unpacked
        # in a subquery, their number is unknown when the plan is made, so PostgreSQL guesses the filter
        # keeps many calls and a page walks `calls_time` from the newest, as it did with two forms; with
        # a bare `= CAST(? AS jsonb)` it guessed half as many and, at 20k calls, scanned and sorted them
        # all instead (8 ms rather than 1).
        found = metadata_json(value)
        forms = [value] if found is NO_JSON else [value, found]
        return (
            "(c.metadata -> CAST(? AS text)) = ANY(ARRAY(SELECT jsonb_array_elements(CAST(? AS jsonb))))",
            [
                key,
                json.dumps(forms),
            ],
        )

    def _record_tags(self) -> str:
        return "c.record -> 'tags'"

    def _search_condition(self, text: str) -> tuple[str, str]:
        if text.isascii():
            # Under "C" ILIKE folds ASCII letters only, as SQLite's LIKE does; under a linguistic locale
            # it also folded the Kelvin sign to k, so `k` found it on PostgreSQL alone.
            return "(c.record::text COLLATE \"C\") ILIKE ? ESCAPE '\\'", like_pattern(text)
        # ILIKE folds case by the database's locale, ASCII only under "C" (a common server default), so
        # "KÖLN" missed "Köln": a regular expression spells each cased letter as [lower upper].
        return "c.record::text ~ ?", cased_regex(text)

    def close(self) -> None:
        self._pool.close()
