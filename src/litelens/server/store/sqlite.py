"""The SQLite backend: one file, WAL, one writer connection behind a lock, readers on their own.

Why this shape: SQLite allows one writer at a time anyway, so a single writer connection behind a lock
costs nothing and turns "database is locked" into an orderly queue; batching many records into one
transaction amortizes the commit. In WAL mode readers never block the writer nor wait for it, so the
dashboard's queries do not stall ingest; each reading thread borrows a connection from a small pool.

Durability: the writer runs with `synchronous=FULL`, so the WAL is fsynced at every commit and an
acknowledged batch survives a crash of the process *and* of the machine. (`synchronous=NORMAL` in WAL
mode would already survive SIGKILL of the process, since a committed transaction is in the WAL file in
the OS page cache, but not a power cut.) `?synchronous=normal` in the URL opts into the faster mode.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qsl

from litelens.server.store.sql import SQLStore, cased_regex, like_pattern, metadata_json
from litelens.server.store.write import (
    SESSIONS_BACKFILL,
    arrival_column,
    cancelled_backfill,
    latency_bounds_backfill,
    long_tag_priced_repair,
    priced_backfill,
    session_cancelled_backfill,
    session_users_table,
)

logger = logging.getLogger("litelens.server.store")

_V1 = [
    """CREATE TABLE projects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    )""",
    """CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects (id),
        prefix TEXT NOT NULL,
        created REAL NOT NULL,
        last_used REAL
    )""",
    "CREATE INDEX api_keys_project ON api_keys (project_id)",
    """CREATE TABLE calls (
        project_id INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        start_time REAL NOT NULL,
        end_time REAL NOT NULL,
        duration_ms REAL NOT NULL,
        ttft_ms REAL,
        call_type TEXT NOT NULL,
        stream INTEGER NOT NULL,
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
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        total_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        record TEXT NOT NULL,
        PRIMARY KEY (project_id, call_id)
    )""",
    "CREATE INDEX calls_time ON calls (project_id, start_time, call_id)",
    "CREATE INDEX calls_trace ON calls (project_id, trace_id)",
    "CREATE INDEX calls_session ON calls (project_id, session_id, start_time)",
    """CREATE TABLE call_tags (
        project_id INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (project_id, tag, call_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX call_tags_call ON call_tags (project_id, call_id)",
    """CREATE TABLE spans (
        project_id INTEGER NOT NULL,
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT,
        kind TEXT,
        start_time REAL NOT NULL,
        end_time REAL NOT NULL,
        status TEXT,
        attributes TEXT,
        resource TEXT,
        call_id TEXT,
        PRIMARY KEY (project_id, trace_id, span_id)
    )""",
    "CREATE INDEX spans_time ON spans (project_id, start_time)",
    """CREATE TABLE rollups (
        project_id INTEGER NOT NULL,
        resolution INTEGER NOT NULL,
        dim TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        value TEXT NOT NULL,
        count INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        cost REAL NOT NULL,
        latency_hist TEXT NOT NULL,
        ttft_hist TEXT NOT NULL,
        PRIMARY KEY (project_id, resolution, dim, bucket, value)
    ) WITHOUT ROWID""",
]

# v2: cache and reasoning tokens become filterable columns (backfilled from the stored records), and the
# list view's other sort orders get indexes so a page is a range scan, not a sort of the project.
_V2 = [
    "ALTER TABLE calls ADD COLUMN cached_input_tokens INTEGER",
    "ALTER TABLE calls ADD COLUMN reasoning_tokens INTEGER",
    """UPDATE calls SET
        cached_input_tokens = json_extract(record, '$.usage.cached_input_tokens'),
        reasoning_tokens = json_extract(record, '$.usage.reasoning_tokens')""",
    "CREATE INDEX calls_duration ON calls (project_id, duration_ms, call_id)",
    "CREATE INDEX calls_tokens ON calls (project_id, total_tokens, call_id)",
    "CREATE INDEX calls_cost ON calls (project_id, COALESCE(cost_usd, 0), call_id)",
]


# v3: a row per session, kept current by write(), so the sessions list is an index range scan instead of
# a GROUP BY over a day of calls (~250 ms at 1M calls). Backfilled from the calls already stored.
_V3 = [
    """CREATE TABLE sessions (
        project_id INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        first_time REAL NOT NULL,
        last_start REAL NOT NULL,
        last_time REAL NOT NULL,
        calls INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        errors INTEGER NOT NULL,
        PRIMARY KEY (project_id, session_id)
    )""",
    "CREATE INDEX sessions_recent ON sessions (project_id, last_start, session_id)",
    SESSIONS_BACKFILL,
]

# v4: the dashboard's "top errors" counts failed calls per error class over a time range; a partial index
# holding only failed calls makes that an index-only scan of a few thousand entries, not of every call.
_V4 = [
    "CREATE INDEX calls_errors ON calls (project_id, start_time, error_type) WHERE status = 'error'",
]


# v5: fewer index entries written per call, since each random-order index entry costs a page written to the
# WAL (bench/ingest.py). `call_tags` is keyed by call first: every query reaches it by call (the tag filter
# probes (call, tag), summaries and deletes look up a call's tags), so the key serves them all and the
# second index by call goes. The session index holds only calls that have a session (every query on it
# asks for one session). The failed-calls index gains `call_id`, so a list filtered to failed calls walks
# it in page order (`start_time, call_id`) instead of reading every call to find the failed ones.
_V5 = [
    """CREATE TABLE call_tags_v5 (
        project_id INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (project_id, call_id, tag)
    ) WITHOUT ROWID""",
    "INSERT INTO call_tags_v5 (project_id, call_id, tag) SELECT project_id, call_id, tag FROM call_tags",
    "DROP TABLE call_tags",
    "ALTER TABLE call_tags_v5 RENAME TO call_tags",
    "DROP INDEX calls_session",
    "CREATE INDEX calls_session ON calls (project_id, session_id, start_time) WHERE session_id IS NOT NULL",
    "DROP INDEX calls_errors",
    "CREATE INDEX calls_errors ON calls (project_id, start_time, call_id, error_type) WHERE status = 'error'",
]


# v6: a plain span (a tool call, an HTTP request next to the LLM call) keeps its status message and its
# events (an exception's type and message), so the trace view can say why it failed.
_V6 = [
    "ALTER TABLE spans ADD COLUMN status_message TEXT",
    "ALTER TABLE spans ADD COLUMN events TEXT",
]


# v7: sessions are listed by their last activity (the end of their latest call), which the list shows;
# ordered by the latest call's start instead, a session whose long stream ended last was listed below
# sessions it outlasted. The index follows the new order.
_V7 = [
    "DROP INDEX sessions_recent",
    "CREATE INDEX sessions_recent ON sessions (project_id, last_time, session_id)",
]


# v8: sessions and rollups count the calls that had a known cost. A call LiteLLM could not price has no
# cost (unknown is not free), but a session or a time bucket of such calls summed to $0: now a row without
# a priced call reads as unknown, and a row with some says how many. Filled from the calls stored.
_V8 = priced_backfill(
    "CAST(start_time / 60 AS INTEGER) * 60",
    "INTEGER",
    "json_each(CASE json_type(r.record, '$.tags') WHEN 'array' THEN json_extract(r.record, '$.tags') END) j",
)


# v9: a session says whose it is. Sessions list their first user and how many users they had, and the
# list filters by user: `session_users` holds each session's users, filled from the calls stored.
_V9 = session_users_table("INTEGER", "REAL", " WITHOUT ROWID")


# v10: rollups count the cancelled calls (a stream the caller abandoned, a proxy client that hung up),
# which the Requests chart counted as ok: only the failed ones were counted apart. Filled from the calls
# stored.
_V10 = cancelled_backfill(
    "CAST(start_time / 60 AS INTEGER) * 60",
    "INTEGER",
    "json_each(CASE json_type(r.record, '$.tags') WHEN 'array' THEN json_extract(r.record, '$.tags') END) j",
)


# v11: sorted by cost, the calls LiteLLM could not price come after the priced ones (both ways), not
# first upwards as the $0 that the old index's COALESCE(cost_usd, 0) made of them. The index holds the
# cost itself, whose NULLs SQLite keeps together at one end: each part of the list is one range of it.
_V11 = [
    "DROP INDEX calls_cost",
    "CREATE INDEX calls_cost ON calls (project_id, cost_usd, call_id)",
]


# v12: sessions count their cancelled calls (a stream the caller abandoned), as the overview does: the
# sessions list and a session's page showed them as calls only, neither ok nor failed nor cancelled.
_V12 = session_cancelled_backfill("INTEGER")


# v13: a database the first v8 backfill upgraded counts the priced calls of its long tags again
# (`long_tag_priced_repair`).
_V13 = long_tag_priced_repair(
    "CAST(start_time / 60 AS INTEGER) * 60",
    "INTEGER",
    "json_each(CASE json_type(r.record, '$.tags') WHEN 'array' THEN json_extract(r.record, '$.tags') END) j",
)


# v14: rollups keep the least and greatest latency and TTFT of the calls they count, so an estimated
# percentile is never reported past a group's slowest call or below its fastest (`rollup.Bounds`).
# Filled from the calls stored.
_V14 = latency_bounds_backfill(
    "CAST(start_time / 60 AS INTEGER) * 60",
    "INTEGER",
    "REAL",
    "json_each(CASE json_type(r.record, '$.tags') WHEN 'array' THEN json_extract(r.record, '$.tags') END) j",
)


# v15: the sort indexes carry each call's start time, so a page sorted by latency, tokens or cost within
# a time range walks the sort key's index and checks the range on the index entry, reading only the rows
# of calls in the range (`SQLStore._walks`); before, the page read and sorted every call in the range.
# Rebuilt in place of the old ones, not beside them: ingest maintains as many indexes as before.
_V15 = [
    "DROP INDEX calls_duration",
    "CREATE INDEX calls_duration ON calls (project_id, duration_ms, call_id, start_time)",
    "DROP INDEX calls_tokens",
    "CREATE INDEX calls_tokens ON calls (project_id, total_tokens, call_id, start_time)",
    "DROP INDEX calls_cost",
    "CREATE INDEX calls_cost ON calls (project_id, cost_usd, call_id, start_time)",
]


# v16: each call keeps the order in which it was stored or last changed (its arrival), so the live tails
# list what arrived since their last poll instead of what started since: a call from a client whose
# clock runs slow, a long stream or a spool delivered late started before what the tails asked for, and
# never showed. One more index entry per call, appended at the index's end.
_V16 = arrival_column(
    "INTEGER",
    "UPDATE calls SET arrival = (SELECT a.n FROM litelens_arrivals a "
    "WHERE a.project_id = calls.project_id AND a.call_id = calls.call_id)",
)


# Page cache per connection, in KiB. The writer's holds the index pages every batch rewrites (the calls'
# random-order keys, rollups, sessions), so ingest reads less of the file. A reader's cache is emptied
# whenever another connection committed since its last read (WAL mode), which under ingest is before
# nearly every query, so it only ever holds one query's pages: 8 MiB kept the dashboard's queries as fast
# as 64 MiB did (bench/query.py), while 64 MiB per reader let exports and scans leave up to 4 x 64 MiB
# behind in an idle server.
WRITER_CACHE_KIB = 65536
READER_CACHE_KIB = 8192


# The WAL a checkpoint waits for. What ingest writes per call as the database grows is every index page
# a commit dirtied (the writer's cache does not change it: 256 MiB of cache wrote the same KiB per call
# as 64, bench/query.py), then once more into the database file at each checkpoint; a checkpoint that
# comes after several commits copies a page they all rewrote once. The slice from 300,000 to 400,000
# calls wrote 79 KiB per call with 64 MiB, 55 with 256 MiB, 46 with 1 GiB; the CPU per call was the same.
# The price is the disk the WAL takes until a checkpoint: 1 GiB saved 9 KiB more per call for four
# times that disk, and a longer WAL for every reader to look pages up in.
WAL_CHECKPOINT_BYTES = 256 * 2**20


# The planner's statistics (sqlite_stat1). SQLite gathers them only when told (ANALYZE), and without
# them, or with some indexes left out, it misjudged what an index holds: a database analyzed once (by
# hand, or by bench/query.py) lost the statistics of the indexes a migration rebuilt (v15), and the calls
# list of a model then read the whole project through the cost index and sorted it (0.15 -> 922 ms at
# 100,000 calls); never analyzed, the top errors read the day's calls instead of the index of failed
# ones (0.1 -> 59 ms). So the writer runs `PRAGMA optimize` now and then, which analyzes the tables it
# wrote whose indexes have no statistics or that grew 25-fold since, and a migration of an analyzed
# database analyzes it again. ANALYZE reads about this many entries per index: 4000 took 40 ms at
# 100,000 calls, the whole index 600-850 ms; 1000 counted too few failed calls at 100,000 to keep the
# top errors on their index.
ANALYSIS_LIMIT = 4000
# The writer's first `PRAGMA optimize` after this long, then every OPTIMIZE_EVERY_S: SQLite's
# documentation recommends a long-lived connection to run it every few hours; on SQLite before 3.46 it
# considers only the tables this connection used, so it waits for some writing first.
OPTIMIZE_FIRST_S = 300.0
OPTIMIZE_EVERY_S = 3600.0


# A metadata value against a filter (`SQLiteStore._metadata_condition`); {type} and {value} are the value's
# JSON type and its SQL value (an object's or a list's is its JSON text; a missing key's is NULL). The
# parameters: the text, the number twice, whether true, false, null, and the object or list as JSON text.
_METADATA_MATCH = (
    "(CASE {type} WHEN 'text' THEN {value} = ? WHEN 'integer' THEN {value} = ? WHEN 'real' THEN {value} = ? "
    "WHEN 'true' THEN ? WHEN 'false' THEN ? WHEN 'null' THEN ? ELSE litelens_json_equal({value}, ?) END)"
)


def _json_equal(stored: Any, wanted: Any) -> bool:
    """Whether two JSON texts hold equal values (numbers by value, objects whatever their key order),
    as PostgreSQL's jsonb compares them."""
    if not isinstance(stored, str) or not isinstance(wanted, str):
        return False
    try:
        return bool(json.loads(stored) == json.loads(wanted))
    except ValueError:
        return False


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: Any, text: Any) -> bool:
    """`text REGEXP pattern` in SQL (`cased_regex` patterns, for searches that are not ASCII)."""
    return isinstance(text, str) and _compiled(str(pattern)).search(text) is not None


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///` URL (with its `?options`), `~` expanded.

    The docs give the default as `sqlite:///~/.local/share/litelens/litelens.db`; a URL copied from
    there was a folder named `~` at the root of the filesystem.
    """
    rest = url[len("sqlite://") :]
    if rest == "/:memory:" or rest.startswith("/:memory:?"):
        return rest[1:]
    if rest.startswith("/~"):
        rest = os.path.expanduser(rest[1:])
    if not rest.startswith("/"):
        raise ValueError(f"litelens: sqlite URL needs an absolute path (sqlite:///abs/file.db), got {url!r}")
    return rest


class SQLiteStore(SQLStore):
    """`Store` on a SQLite file (or a private in-memory database, for tests)."""

    MIGRATIONS = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12, _V13, _V14, _V15, _V16)
    # RETURNING came with SQLite 3.35 (2021): a Python linked with an older system SQLite (RHEL 8's
    # 3.26, Debian 11's 3.34) takes its arrival in two statements, as before, rather than failing.
    _RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)

    def __init__(self, path: str, *, synchronous: str = "FULL", readers: int = 4) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("litelens: sqlite synchronous must be full, normal or extra")
        self._memory = path == ":memory:"
        if not self._memory:
            # Owner-only: the database holds every project's prompts and answers, and the usual umask
            # 022 would make a new one world-readable; SQLite gives its WAL and shm files the database
            # file's mode. An existing database keeps the mode it has.
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._lock = threading.RLock()
        self._writer = self._connect(0)
        # A new database gets 8 KiB pages (SQLite ignores this on an existing one): a stored record is
        # ~2-3 KB, so with 4 KiB pages most leaf pages held one record and ~40% of each was empty, and
        # every byte of them went through the WAL and the checkpoint. 8 KiB pages took the write path
        # from ~80 to ~55 µs of CPU per record and the file from 4.6 to 3.3 KB per record (bench/ingest.py).
        self._writer.execute("PRAGMA page_size = 8192")
        self._writer.execute(f"PRAGMA synchronous = {self.synchronous}")
        # Only now that the page size is settled: SQLite turns a cache size in KiB into a number of pages
        # of the page size it has then, and keeps that number when a new database's page size changes.
        # Set before the line above, "64 MiB" was 16,000 pages of 4 KiB that then held 8 KiB each, and
        # the writer of a database created at start grew to 127 MB of cache.
        self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        # A checkpoint every 64 MiB of WAL rather than SQLite's 4 MiB: one ingest batch is 3-4 MiB of WAL,
        # so by default nearly every acknowledging commit also checkpointed (copied and fsynced the
        # database file); now a page rewritten by many batches (rollups, index pages) is copied once per
        # checkpoint. Commits took ~30% less time in bench/ingest.py. The WAL is fsynced at every commit
        # either way (synchronous=FULL), and truncated back to the limit after a checkpoint.
        # Then 256 MiB (WAL_CHECKPOINT_BYTES): past a few hundred thousand calls one batch rewrites a
        # page of each random-order index per call, ~80 MiB of WAL, so every commit checkpointed again;
        # with 256 MiB a checkpoint copies an index page once for several commits.
        page = int(self._writer.execute("PRAGMA page_size").fetchone()[0])
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_BYTES // page}")
        self._writer.execute("PRAGMA journal_size_limit = 67108864")
        if not self._memory:
            mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"litelens: could not put {path} in WAL mode (got {mode})")
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._max_readers = readers
        self._closed = False
        self._optimize_at = time.monotonic() + OPTIMIZE_FIRST_S

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """`sqlite:///abs/path.db[?synchronous=normal]`, `sqlite:///~/path.db` or `sqlite:///:memory:`."""
        path, _, query = sqlite_path(url).partition("?")
        kwargs: dict[str, Any] = dict(parse_qsl(query))
        kwargs.update(options)
        if "readers" in kwargs:
            kwargs["readers"] = int(kwargs["readers"])
        return cls(path, **kwargs)

    def _connect(self, cache_kib: int) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), never implicit.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.create_function("regexp", 2, _regexp, deterministic=True)
        conn.create_function("litelens_json_equal", 2, _json_equal, deterministic=True)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA temp_store = MEMORY")
        if cache_kib:
            conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            if self._closed:
                raise RuntimeError("litelens: store is closed")
            cur = self._writer.cursor()
            # IMMEDIATE takes the write lock now, so a second process's writer waits here instead of
            # failing at its first write after having read stale rows.
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self._writer.rollback()
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()
            if time.monotonic() >= self._optimize_at:
                self.optimize()

    def _writer_lock(self) -> AbstractContextManager[Any]:
        return self._lock

    def _data_version(self, cur: sqlite3.Cursor) -> int:
        # Changes when another connection (another store, another process) committed since this one's
        # last look; our own commits leave it alone. A private in-memory database has no other writer.
        return 0 if self._memory else int(cur.execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        snapshot = self._snapshot_cursor()
        if snapshot is not None:
            yield snapshot
            return
        with self._reader(snapshot=False) as cur:
            yield cur

    def _read_snapshot(self) -> AbstractContextManager[sqlite3.Cursor]:
        return self._reader(snapshot=True)

    @contextmanager
    def _reader(self, snapshot: bool) -> Iterator[sqlite3.Cursor]:
        """A cursor on a reader connection; with `snapshot`, inside one read transaction."""
        if self._memory:
            # A private in-memory database exists on one connection only, its writes under the same
            # lock: none lands while we hold it, so it is a snapshot too.
            with self._lock:
                cur = self._writer.cursor()
                try:
                    yield cur
                finally:
                    cur.close()
            return
        conn = self._borrow()
        cur = conn.cursor()
        if snapshot:
            # A deferred transaction: in WAL mode its first SELECT fixes what every later one sees.
            cur.execute("BEGIN")
        try:
            yield cur
        finally:
            cur.close()
            if not snapshot:
                self._readers.put(conn)
            else:
                try:
                    conn.rollback()  # read only: nothing to keep
                except sqlite3.Error:
                    conn.close()  # (not given back in a transaction: it would read the past from then on)
                    with self._lock:
                        self._all_readers.remove(conn)
                else:
                    self._readers.put(conn)

    @contextmanager
    def _export_snapshot(self) -> Iterator[sqlite3.Cursor | None]:
        # A private in-memory database has one connection, whose lock a snapshot would hold between
        # pages (taken and released by different threads): each page is read on its own there.
        if self._memory:
            yield None
            return
        if self._closed:
            raise RuntimeError("litelens: store is closed")
        # Not a pooled reader: an export holding one for minutes left the dashboard's queries the rest.
        # While it runs, the WAL is not restarted from its beginning (it may grow with what is written).
        conn = self._connect(READER_CACHE_KIB)
        try:
            conn.execute("PRAGMA query_only = ON")
            cur = conn.cursor()
            cur.execute("BEGIN")  # deferred: its first SELECT fixes what every page sees
            yield cur
        finally:
            conn.close()

    def _borrow(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("litelens: store is closed")
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all_readers) < self._max_readers:
                conn = self._connect(READER_CACHE_KIB)
                conn.execute("PRAGMA query_only = ON")
                self._all_readers.append(conn)
                return conn
        return self._readers.get(timeout=60)

    def _metadata_condition(self, key: str, value: str) -> tuple[str, list[Any]]:
        found = metadata_json(value)
        number = found if isinstance(found, (int, float)) and not isinstance(found, bool) else None
        if isinstance(number, int) and not -(2**63) <= number < 2**63:
            number = float(number)  # SQLite's integers are 64-bit; the stored value is a double then
        nested = json.dumps(found) if isinstance(found, (dict, list)) else None
        # One CASE over the value's JSON type, so the record is looked at for the type that it has:
        # a string by its text, a number by its value, true/false/null by their type, an object or a
        # list as JSON (in Python: SQLite compares JSON text, in which key order and spacing count).
        params = [
            value,
            number,
            number,
            1 if found is True else 0,
            1 if found is False else 0,
            1 if found is None else 0,
            nested,
        ]
        if json.dumps(key, ensure_ascii=False)[1:-1] != key:
            # A JSON path cannot quote `"` or `\`, and SQLite matches a path's key against the key as
            # the JSON text writes it, escaped (a tab as `\t`): such a key is found among the metadata's
            # own keys instead, a walk of one object per call.
            return (
                "EXISTS (SELECT 1 FROM json_each(c.record, '$.metadata') m WHERE m.key = ? AND "
                f"{_METADATA_MATCH.format(type='m.type', value='m.value')})",
                [key, *params],
            )
        path = f'$.metadata."{key}"'
        return (
            _METADATA_MATCH.format(type="json_type(c.record, ?)", value="json_extract(c.record, ?)"),
            [path, path, value, path, number, path, number, *params[3:6], path, nested],
        )

    def _record_tags(self) -> str:
        return "json_extract(c.record, '$.tags')"

    def _unindexed(self, expr: str) -> str:
        # SQLite's documented way to keep a term from using an index: a unary plus.
        return f"+{expr}"

    def _search_condition(self, text: str) -> tuple[str, str]:
        # LIKE is case-insensitive for ASCII only in SQLite, so "KÖLN" missed "Köln" and "ПРИВЕТ" missed
        # "привет". Such a search runs the regular expression PostgreSQL runs (a Python function per row:
        # slower, so only when the search text is not ASCII); the record is JSON text including content.
        if text.isascii():
            return "c.record LIKE ? ESCAPE '\\'", like_pattern(text)
        return "c.record REGEXP ?", cased_regex(text)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._all_readers:
                conn.close()
            self._writer.close()

    def analyze(self) -> None:
        """Refresh the planner's statistics from every entry of every index (after a bulk load: slow on a
        big database, where `optimize` reads a sample)."""
        with self._lock:
            self._writer.execute("PRAGMA analysis_limit = 0")
            self._writer.execute("ANALYZE")

    def optimize(self) -> None:
        """`PRAGMA optimize` on the writer, reading at most `ANALYSIS_LIMIT` entries per index: statistics
        for the tables it wrote that have none for an index, or that grew much since (see `ANALYSIS_LIMIT`).

        Never raises: it runs after a write was committed, whose batch is stored whatever happens here.
        """
        with self._lock:
            self._optimize_at = time.monotonic() + OPTIMIZE_EVERY_S
            if self._closed:
                return
            began = time.monotonic()
            try:
                self._writer.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
                self._writer.execute("PRAGMA optimize").fetchall()
            except sqlite3.Error:
                logger.warning(
                    "PRAGMA optimize failed; will try again in %.0f s", OPTIMIZE_EVERY_S, exc_info=True
                )
                return
            logger.debug("PRAGMA optimize took %.3f s", time.monotonic() - began)

    def _migrated(self, cur: Any) -> None:
        # A database analyzed before has no statistics for the indexes the steps rebuilt, while it has
        # them for the others: the planner then took a rebuilt index for a tiny one (`ANALYSIS_LIMIT`).
        cur.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cur.fetchone() is not None:
            cur.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            cur.execute("ANALYZE")
