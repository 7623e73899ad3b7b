"""The write path both SQL backends share: batches of records and spans become `calls`, `call_tags`,
`spans`, `sessions` and `rollups` rows in ONE transaction, with merges of calls already stored.

How it is shaped, and why (figures from `bench/ingest.py` on SQLite):

- Everything that does not depend on what is stored (each call's row and JSON, its tag rows, what it
  adds to its session, its rollup contributions at every resolution) is prepared *before* the write
  lock (`prepare_write`, which the server calls in each request's thread), so it overlaps another
  batch's commit. Under the lock one lookup per chunk of ids finds the few calls already stored; when
  there are none (the usual case) the prepared rows go to the statements as they are, else only those
  calls are read, merged and their prepared contribution corrected, in new objects: a prepared batch
  is never changed, because it is written again on its own when a shared transaction fails.
- Several requests' batches can go through one transaction (`write_prepared`): the server's group commit
  hands over whatever arrived while the previous commit ran. Rollup and session rows shared by those
  batches are then written once, and the commit is paid once.
- Rows go to the database many per statement (`VALUES (...), (...)`): SQLite runs a statement without
  the GIL, but `executemany` takes the GIL back between rows, and while another thread parses the next
  request each of those waits for a GIL switch (up to 5 ms): an `executemany` of 1,000 rows then took a
  second instead of 25 ms. PostgreSQL keeps psycopg's pipelined `executemany` and COPY.
- Rollup histograms are merged here, in Python, with the stored ones: read once per row (a cache keeps
  what this writer wrote last, for as long as no other connection has written), never through a SQL
  function called back per row.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from litelens.server import fastjson
from litelens.server.store.base import Record, Span, WriteBatch, merge_attributes, merge_records
from litelens.server.store.rollup import (
    BOUNDS,
    LATENCY,
    RESOLUTIONS,
    SCALARS,
    TTFT,
    Change,
    Hist,
    RollupKey,
    add_contribution,
    add_into,
    coarsen,
    dump,
    parsed,
    rows_to_widen,
    sum_changes,
)
from litelens.server.store.rows import (
    CALL_COLUMNS,
    ROW_COST,
    ROW_END,
    ROW_END_USER,
    ROW_SESSION,
    ROW_START,
    ROW_STATUS,
    ROW_TOTAL,
    ROW_USER_ID,
    SPAN_COLUMNS,
    STORED_CALL_COLUMNS,
    call_row,
    span_rows,
)

# A session's cancelled calls (streams the caller abandoned): neither ok nor failed, as the overview counts them.
_CANCELLED_SUM = "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END)"

# A session's summary row, recomputed from all its calls (found through calls_session): a pass over the
# whole session, so done only where sums cannot give the exact row (the call that ended last left it, by
# retention or by a merge: `_take_sessions`). `last_start` (the latest call's start) is no longer kept:
# nothing reads it since the list orders by `last_time`, so a new row holds 0 in it; the column stays
# (NOT NULL, and dropping it would rebuild the table). `priced` counts the calls with a known cost (`cost` is their sum): a session
# without one has an unknown cost, not $0.
_SESSION_REFRESH = (
    "INSERT INTO sessions (project_id, session_id, first_time, last_start, last_time, calls, tokens, cost, errors, "
    "priced, cancelled) "
    "SELECT project_id, session_id, MIN(start_time), 0, MAX(end_time), COUNT(*), "
    "SUM(total_tokens), SUM(COALESCE(cost_usd, 0)), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), "
    f"COUNT(cost_usd), {_CANCELLED_SUM} "
    "FROM calls WHERE project_id = ? AND session_id = ? GROUP BY project_id, session_id "
    "ON CONFLICT (project_id, session_id) DO UPDATE SET first_time = excluded.first_time, "
    "last_time = excluded.last_time, calls = excluded.calls, "
    "tokens = excluded.tokens, cost = excluded.cost, errors = excluded.errors, priced = excluded.priced, "
    "cancelled = excluded.cancelled"
)
SESSIONS_BACKFILL = (
    "INSERT INTO sessions (project_id, session_id, first_time, last_start, last_time, calls, tokens, cost, errors) "
    "SELECT project_id, session_id, MIN(start_time), MAX(start_time), MAX(end_time), COUNT(*), "
    "SUM(total_tokens), SUM(COALESCE(cost_usd, 0)), SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) "
    "FROM calls WHERE session_id IS NOT NULL GROUP BY project_id, session_id"
)


# The length `call_tags` cut a tag to before ingest cut tags (the record and the rollups kept it whole).
_V7_TAG_CUT = 200


def priced_backfill(minute: str, integer: str, record_tags: str) -> list[str]:
    """Statements that fill the `priced` columns of `sessions` and `rollups` (schema v8) from the calls
    already stored: in sessions, the session's calls with a cost; in a rollup row, the calls with a cost
    that started in its bucket and count in its group, found the way `rollup.dimension_values` finds
    them (a model without its provider's prefix, the end user else the user id, each tag).

    `minute` is the dialect's expression for a call's start minute (epoch seconds, rounded down),
    `integer` its integer type, and `record_tags` a FROM item that gives each tag of the record `r.record`
    as a text column `value` (none when `tags` is not a list).

    Releases before ingest cut tags kept a tag of over 200 characters whole in the record and in the
    rollups but cut in `call_tags`: such a tag, found by a `call_tags` tag of 200 characters, is read
    from the call's record, as the rollups counted it. A rollup row with a cost that no priced call is
    found for (calls and rollups that disagree) is taken as wholly priced, as it was shown.
    """
    return [
        f"ALTER TABLE sessions ADD COLUMN priced {integer} NOT NULL DEFAULT 0",
        "UPDATE sessions SET priced = (SELECT COUNT(c.cost_usd) FROM calls c "
        "WHERE c.project_id = sessions.project_id AND c.session_id = sessions.session_id)",
        *_rollup_count_backfill(
            "priced",
            "cost_usd IS NOT NULL",
            "litelens_v8",
            minute,
            integer,
            record_tags,
            # Rows with a cost but no priced call found: taken as wholly priced, as they were shown.
            "UPDATE rollups SET priced = count WHERE priced = 0 AND ABS(cost) > 1e-12",
        ),
    ]


def session_cancelled_backfill(integer: str) -> list[str]:
    """Statements that add and fill the `cancelled` column of `sessions` (schema v12 on SQLite, v13 on
    PostgreSQL) from the calls already stored: a session counted its abandoned streams as calls only, so
    its list row and page could not say how many of its calls got an answer."""
    return [
        f"ALTER TABLE sessions ADD COLUMN cancelled {integer} NOT NULL DEFAULT 0",
        "UPDATE sessions SET cancelled = (SELECT COUNT(*) FROM calls c WHERE c.project_id = sessions.project_id "
        "AND c.session_id = sessions.session_id AND c.status = 'cancelled')",
    ]


def long_tag_priced_repair(minute: str, integer: str, record_tags: str) -> list[str]:
    """Statements that count again the priced calls of the rollup rows of tags of 200 characters or more,
    from the calls' records (the arguments are `priced_backfill`'s).

    The v8 backfill first shipped counted a tag's priced calls through `call_tags`, which cut a tag of
    over 200 characters that the record and the rollups kept whole (before ingest cut tags): it found no
    priced call under such a tag, so its rows read as wholly priced when they had a cost, and as of
    unknown cost when their priced calls cost $0. `priced_backfill` counts them right since, but a
    database that release upgraded kept the wrong counts. Rows that were right are counted the same again.
    """
    calls, counts = "litelens_v13_calls", "litelens_v13_priced"
    long_tag = f"length(t.tag) >= {_V7_TAG_CUT}"
    return [
        f"CREATE TEMP TABLE {calls} AS SELECT c.project_id, c.call_id, {minute} AS bucket FROM calls c "
        "WHERE c.cost_usd IS NOT NULL AND EXISTS (SELECT 1 FROM call_tags t WHERE t.project_id = c.project_id "
        f"AND t.call_id = c.call_id AND {long_tag})",
        f"CREATE TEMP TABLE {counts} (project_id {integer}, resolution {integer}, bucket {integer}, "
        f"dim TEXT, value TEXT, n {integer}, PRIMARY KEY (project_id, resolution, dim, bucket, value))",
        # Once per call and tag however many times the record repeats it, as rollups count.
        f"INSERT INTO {counts} SELECT project_id, {RESOLUTIONS[0]}, bucket, 'tag', value, COUNT(*) FROM "
        f"(SELECT DISTINCT c.project_id, c.call_id, c.bucket, j.value FROM {calls} c "
        f"JOIN calls r ON r.project_id = c.project_id AND r.call_id = c.call_id, {record_tags} "
        f"WHERE length(j.value) >= {_V7_TAG_CUT}) g GROUP BY project_id, bucket, value",
        *(
            f"INSERT INTO {counts} SELECT project_id, {r}, (bucket / {r}) * {r}, dim, value, SUM(n) "
            f"FROM {counts} WHERE resolution = {RESOLUTIONS[0]} "
            f"GROUP BY project_id, (bucket / {r}) * {r}, dim, value"
            for r in RESOLUTIONS[1:]
        ),
        f"UPDATE rollups SET priced = COALESCE((SELECT p.n FROM {counts} p "
        "WHERE p.project_id = rollups.project_id AND p.resolution = rollups.resolution AND p.dim = rollups.dim "
        "AND p.bucket = rollups.bucket AND p.value = rollups.value), 0) "
        f"WHERE dim = 'tag' AND length(value) >= {_V7_TAG_CUT}",
        # As `priced_backfill`: a row with a cost that no priced call is found for is taken as wholly priced.
        "UPDATE rollups SET priced = count WHERE dim = 'tag' AND priced = 0 AND ABS(cost) > 1e-12 "
        f"AND length(value) >= {_V7_TAG_CUT}",
        f"DROP TABLE {counts}",
        f"DROP TABLE {calls}",
    ]


def cancelled_backfill(minute: str, integer: str, record_tags: str) -> list[str]:
    """Statements that add and fill the `cancelled` column of `rollups` (schema v10 on SQLite, v11 on
    PostgreSQL) from the calls already stored: in each rollup row, the cancelled calls that started in
    its bucket and count in its group. The arguments are `priced_backfill`'s."""
    return _rollup_count_backfill(
        "cancelled", "status = 'cancelled'", "litelens_v10", minute, integer, record_tags
    )


def _rollup_count_backfill(
    column: str, where: str, temp: str, minute: str, integer: str, record_tags: str, *fixes: str
) -> list[str]:
    """Statements that add the count `column` to `rollups` and set it, in every row, to the number of
    stored calls matching `where` that count in that row (`priced_backfill` says how they are found);
    `fixes` run after, before the temporary tables `{temp}_calls` and `{temp}_counts` are dropped."""
    calls, counts = f"{temp}_calls", f"{temp}_priced" if column == "priced" else f"{temp}_counts"
    per_group = _groups_of_calls(calls, record_tags)
    return [
        f"ALTER TABLE rollups ADD COLUMN {column} {integer} NOT NULL DEFAULT 0",
        _calls_with_groups(calls, minute, where),
        # Every group's matching calls per rollup row (minute, 5-minute, hour), then one lookup by key
        # per row: a range lookup per row (minutes within the row's bucket) took minutes for 500k rows.
        f"CREATE TEMP TABLE {counts} (project_id {integer}, resolution {integer}, bucket {integer}, "
        f"dim TEXT, value TEXT, n {integer}, PRIMARY KEY (project_id, resolution, dim, bucket, value))",
        f"INSERT INTO {counts} SELECT project_id, {RESOLUTIONS[0]}, bucket, dim, value, COUNT(*) "
        f"FROM ({per_group}) g GROUP BY project_id, bucket, dim, value",
        *(
            f"INSERT INTO {counts} SELECT project_id, {r}, (bucket / {r}) * {r}, dim, value, SUM(n) "
            f"FROM {counts} WHERE resolution = {RESOLUTIONS[0]} "
            f"GROUP BY project_id, (bucket / {r}) * {r}, dim, value"
            for r in RESOLUTIONS[1:]
        ),
        f"UPDATE rollups SET {column} = COALESCE((SELECT p.n FROM {counts} p "
        "WHERE p.project_id = rollups.project_id AND p.resolution = rollups.resolution AND p.dim = rollups.dim "
        "AND p.bucket = rollups.bucket AND p.value = rollups.value), 0)",
        *fixes,
        f"DROP TABLE {counts}",
        f"DROP TABLE {calls}",
    ]


def _calls_with_groups(calls: str, minute: str, where: str, values: Sequence[str] = ()) -> str:
    """A statement that makes the temporary table `calls` of the stored calls matching `where`: each
    call's start minute (`bucket`), its `model`, `provider`, `end_user` and `key_alias` groups as the
    rollups name them (`rollup.dimension_values`), and its `values` columns."""
    model = "COALESCE(response_model, request_model)"
    prefix = "provider || '/'"
    bare = (
        f"CASE WHEN provider IS NOT NULL AND provider <> '' AND substr({model}, 1, length({prefix})) = {prefix} "
        f"AND length({model}) > length({prefix}) THEN substr({model}, length({prefix}) + 1) ELSE {model} END"
    )
    extra = "".join(f", {v}" for v in values)
    return (
        f"CREATE TEMP TABLE {calls} AS SELECT project_id, call_id, {minute} AS bucket, "
        f"{bare} AS model, provider, COALESCE(end_user, user_id) AS end_user, key_alias{extra} "
        f"FROM calls WHERE {where}"
    )


def _groups_of_calls(calls: str, record_tags: str, values: Sequence[str] = ()) -> str:
    """A query of (project_id, bucket, dim, value, *values): every rollup group that each call of the
    temporary table `calls` (`_calls_with_groups`) counts in, once per call and group."""
    extra = "".join(f", {v}" for v in values)
    of_c = "".join(f", c.{v}" for v in values)
    # The matching calls' groups, read in one pass over `calls` (whose rows hold the records: each pass
    # reads them all), then counted per group from this small table.
    head = "SELECT project_id, bucket"
    return " UNION ALL ".join(
        [
            f"{head}, 'all' AS dim, '' AS value{extra} FROM {calls}",
            f"{head}, 'model', model{extra} FROM {calls} WHERE model <> ''",
            f"{head}, 'provider', provider{extra} FROM {calls} WHERE provider <> ''",
            f"{head}, 'user', end_user{extra} FROM {calls} WHERE end_user <> ''",
            f"{head}, 'key_alias', key_alias{extra} FROM {calls} WHERE key_alias <> ''",
            f"SELECT c.project_id, c.bucket, 'tag', t.tag{of_c} FROM {calls} c "
            "JOIN call_tags t ON t.project_id = c.project_id AND t.call_id = c.call_id "
            f"WHERE t.tag <> '' AND length(t.tag) < {_V7_TAG_CUT}",
            # Once per call and tag however many of its tags were cut (or repeated), as rollups count.
            f"SELECT project_id, bucket, 'tag', value{extra} FROM (SELECT DISTINCT c.project_id, c.call_id, "
            f"c.bucket, j.value{of_c} FROM {calls} c "
            "JOIN call_tags t ON t.project_id = c.project_id AND t.call_id = c.call_id "
            f"JOIN calls r ON r.project_id = c.project_id AND r.call_id = c.call_id, {record_tags} "
            f"WHERE length(t.tag) >= {_V7_TAG_CUT} AND length(j.value) >= {_V7_TAG_CUT}) long_tags",
        ]
    )


# Bounds of a rollup row that counts values the calls stored do not show (calls and rollups that
# disagree): as wide as any duration, so they clamp nothing, as before they were kept.
_UNKNOWN_LOW, _UNKNOWN_HIGH = "0", "1e300"


def latency_bounds_backfill(minute: str, integer: str, real: str, record_tags: str) -> list[str]:
    """Statements that add the bounds of `rollups` (`rollup.Bounds`: the least and greatest latency and
    TTFT each row counts; schema v14 on SQLite, v15 on PostgreSQL) and fill them from the calls stored,
    found per row as `priced_backfill` finds them (its arguments; `real` is the dialect's float type).

    Percentiles estimated from the histograms could pass a group's slowest call by up to 4.9% past what
    `exact.refine` reads; with the bounds an estimate is clamped into them. A row with values in a
    histogram and no call found for them gets bounds that clamp nothing (`_UNKNOWN_LOW`/`_HIGH`)."""
    calls, bounds = "litelens_v14_calls", "litelens_v14_bounds"
    columns = ("latency_min", "latency_max", "ttft_min", "ttft_max")
    minute_rows = (
        f"SELECT project_id, {RESOLUTIONS[0]}, bucket, dim, value, MIN(duration_ms), MAX(duration_ms), "
        f"MIN(ttft_ms), MAX(ttft_ms) FROM ({_groups_of_calls(calls, record_tags, ('duration_ms', 'ttft_ms'))}) g "
        "GROUP BY project_id, bucket, dim, value"
    )
    found = (
        f"(SELECT b.{{column}} FROM {bounds} b WHERE b.project_id = rollups.project_id AND "
        "b.resolution = rollups.resolution AND b.dim = rollups.dim AND b.bucket = rollups.bucket "
        "AND b.value = rollups.value)"
    )
    return [
        *(f"ALTER TABLE rollups ADD COLUMN {column} {real}" for column in columns),
        _calls_with_groups(calls, minute, "TRUE", ("duration_ms", "ttft_ms")),
        f"CREATE TEMP TABLE {bounds} (project_id {integer}, resolution {integer}, bucket {integer}, "
        f"dim TEXT, value TEXT, latency_min {real}, latency_max {real}, ttft_min {real}, ttft_max {real}, "
        "PRIMARY KEY (project_id, resolution, dim, bucket, value))",
        f"INSERT INTO {bounds} {minute_rows}",
        *(
            f"INSERT INTO {bounds} SELECT project_id, {r}, (bucket / {r}) * {r}, dim, value, MIN(latency_min), "
            f"MAX(latency_max), MIN(ttft_min), MAX(ttft_max) FROM {bounds} WHERE resolution = {RESOLUTIONS[0]} "
            f"GROUP BY project_id, (bucket / {r}) * {r}, dim, value"
            for r in RESOLUTIONS[1:]
        ),
        "UPDATE rollups SET " + ", ".join(f"{column} = {found.format(column=column)}" for column in columns),
        *(
            f"UPDATE rollups SET {low} = {_UNKNOWN_LOW}, {high} = {_UNKNOWN_HIGH} "
            f"WHERE {low} IS NULL AND {hist} NOT IN ('', '[]')"
            for hist, low, high in (
                ("latency_hist", "latency_min", "latency_max"),
                ("ttft_hist", "ttft_min", "ttft_max"),
            )
        ),
        f"DROP TABLE {bounds}",
        f"DROP TABLE {calls}",
    ]


# A session's users: one row per user with a call in the session (the end user, else the user id: the
# `user` that rollups group by and `/api/calls?user=` finds), with the start of that user's first call.
# The sessions list shows the first of them and how many there are, and its user filter finds a session
# by any of them. Kept apart from `sessions` because a session has any number of users; a write adds
# only the (session, user) pairs it brings, and a pair already there costs a key lookup, no page write.
SESSION_USER = "COALESCE(NULLIF(end_user, ''), NULLIF(user_id, ''))"
_SESSION_USERS_FILL = (
    "INSERT INTO session_users (project_id, session_id, user_name, first_time) "
    f"SELECT project_id, session_id, {SESSION_USER}, MIN(start_time) FROM calls "
    "WHERE {where} AND {user} IS NOT NULL GROUP BY project_id, session_id, {user}"
)
# Recomputed with the session's row (a merged call changed its user, retention deleted some calls).
_SESSION_USERS_CLEAR = "DELETE FROM session_users WHERE project_id = ? AND session_id = ?"
_SESSION_USERS_REFRESH = _SESSION_USERS_FILL.format(
    where="project_id = ? AND session_id = ?", user=SESSION_USER
)


def arrival_column(integer: str, update_from: str) -> list[str]:
    """The statements that give every stored call an arrival (`BatchWriter._next_arrival`), indexed for
    the live tails' "arrived after" (`CallFilter.arrived_after`), and start the counter after them.

    Calls stored before have none to recover: they are numbered in start order (then call id), all of
    them before any call stored from now on, which is what a tail that starts now needs. `update_from`
    is the dialect's UPDATE of `calls` from the numbered rows in `litelens_arrivals`.
    """
    return [
        f"ALTER TABLE calls ADD COLUMN arrival {integer}",
        "CREATE TEMP TABLE litelens_arrivals AS SELECT project_id, call_id, "
        "ROW_NUMBER() OVER (ORDER BY start_time, call_id) AS n FROM calls",
        "CREATE INDEX litelens_arrivals_key ON litelens_arrivals (project_id, call_id)",
        update_from,
        "DROP TABLE litelens_arrivals",
        f"CREATE TABLE arrivals (last {integer} NOT NULL)",
        "INSERT INTO arrivals (last) SELECT COALESCE(MAX(arrival), 0) FROM calls",
        "CREATE INDEX calls_arrival ON calls (project_id, arrival, call_id)",
    ]


def session_users_table(integer: str, real: str, without_rowid: str) -> list[str]:
    """Statements that create `session_users` (schema v9) and fill it from the calls already stored.

    Keyed by session first: a page of sessions looks up its rows' users, the user filter probes
    (session, user), and a refresh replaces one session's users.
    """
    return [
        f"""CREATE TABLE session_users (
        project_id {integer} NOT NULL,
        session_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        first_time {real} NOT NULL,
        PRIMARY KEY (project_id, session_id, user_name)
    ){without_rowid}""",
        _SESSION_USERS_FILL.format(where="session_id IS NOT NULL", user=SESSION_USER),
    ]


# The update of a session that keeps calls when some leave it (`_take_sessions`: deleted by retention, or
# merged with a copy that changes their part): their sums subtracted, the first start found again through
# `calls_session` (the last end is unchanged, or made exact by what the merge adds: the session's
# latest-ending call remains, or a later one comes). The first start is read as ORDER BY ... LIMIT 1, not MIN():
# PostgreSQL, its statistics taken before the session grew, aggregated the whole session instead of
# reading one index entry (17 ms a session of 15,000 calls, per user, per batch). A session left without priced calls has an unknown cost, exactly 0
# in the column rather than the rounding left of subtracting its calls' costs one by one.
_SESSION_TAKE = (
    "UPDATE sessions SET calls = calls - ?, tokens = tokens - ?, cost = CASE WHEN priced > ? THEN cost - ? "
    "ELSE 0 END, errors = errors - ?, priced = priced - ?, cancelled = cancelled - ?, first_time = COALESCE("
    "(SELECT c.start_time FROM calls c WHERE c.project_id = ? AND c.session_id = ? ORDER BY c.start_time "
    "LIMIT 1), first_time) "
    "WHERE project_id = ? AND session_id = ?"
)
# The columns of a stored call that make its part in its session (what `_take_sessions` takes out), in its order.
SESSION_PART_COLUMNS = "session_id, start_time, end_time, total_tokens, cost_usd, status, end_user, user_id"
_SESSION_CALL_OF_USER = (
    f"SELECT {{what}} FROM calls c WHERE c.project_id = ? AND c.session_id = ? AND {SESSION_USER} = ?"
)
_SESSION_USER_GONE = (
    "DELETE FROM session_users WHERE project_id = ? AND session_id = ? AND user_name = ? AND NOT EXISTS ("
    + _SESSION_CALL_OF_USER.format(what="1")
    + ")"
)
_SESSION_USER_FIRST = (
    "UPDATE session_users SET first_time = ("
    + _SESSION_CALL_OF_USER.format(what="c.start_time")
    + " ORDER BY c.start_time LIMIT 1) WHERE project_id = ? AND session_id = ? AND user_name = ?"
)

# A session's first calls with their users, oldest first (`_first_calls`), and the most it reads so.
_SESSION_FIRST_CALLS = (
    "SELECT u, MIN(start_time), MAX(start_time), COUNT(*) FROM ("
    f"SELECT {SESSION_USER} AS u, start_time FROM calls WHERE project_id = ? AND session_id = ? AND start_time >= ? "
    "ORDER BY start_time LIMIT ?) page GROUP BY u"
)
_FIRST_CALLS_READ = 8192

_SESSION_DROP_EMPTY = (
    "DELETE FROM sessions WHERE project_id = ? AND session_id = ? AND NOT EXISTS "
    "(SELECT 1 FROM calls WHERE calls.project_id = ? AND calls.session_id = ?)"
)


@functools.lru_cache(maxsize=4)
def _bounds_update(least: str, greatest: str) -> str:
    """The SET clause of a rollup upsert for the row's bounds (`rollup.Bounds`): widened to hold the
    batch's, or forgotten when the histogram they bound is left empty (`excluded`'s histogram is the
    row's whole new one). SQLite's two-argument MIN and MAX give NULL when either is NULL, PostgreSQL's
    LEAST and GREATEST ignore it: each side falls back on the other, so both read NULL as no value."""
    parts = []
    for hist, low, high in (
        ("latency_hist", "latency_min", "latency_max"),
        ("ttft_hist", "ttft_min", "ttft_max"),
    ):
        for column, pick in ((low, least), (high, greatest)):
            parts.append(
                f"{column} = CASE WHEN excluded.{hist} IN ('', '[]') THEN NULL ELSE {pick}("
                f"COALESCE(rollups.{column}, excluded.{column}), COALESCE(excluded.{column}, rollups.{column})) END"
            )
    return ", ".join(parts)


# Where a span row (`span_rows`: project, then `SPAN_COLUMNS`) holds its attributes' JSON text.
_ROW_ATTRIBUTES = 1 + SPAN_COLUMNS.index("attributes")

# Keep IN (...) lists well under SQLite's parameter limit.
CHUNK = 400

# Rows per multi-row statement, largest first: a batch is cut greedily into these sizes, so each table
# needs only a handful of distinct statements (SQLite caches them prepared) and 1,000 rows take ~13.
_VALUES_SIZES = (512, 64, 8, 1)

# A rollup row's histograms as stored: (latency, TTFT) parsed, then the same as the text in the row.
StoredHists = tuple[Hist, Hist, str, str]

# Rollup rows whose histograms this writer remembers (~1 KB each, parsed and as text); past it the oldest half goes.
_HIST_CACHE_MAX = 50_000


_VALUES_SQL: dict[tuple[Any, ...], str] = {}


def _values_sql(dialect: type, q: Callable[[str], str], head: str, marks: str, rows: int, tail: str) -> str:
    """The text of a `rows`-row `VALUES` statement, made once: a 512-row `calls` insert is 40 KB of
    text, which the writer thread built (and SQLite's statement cache hashed and compared) for every
    chunk. The same string object each time is a hash already computed and an identity compare.
    `dialect` (the store's class, whose `q` adapts the text) keys it, not the store: stores come and go."""
    key = (dialect, head, marks, rows, tail)
    sql = _VALUES_SQL.get(key)
    if sql is None:
        sql = _VALUES_SQL.setdefault(key, q(f"{head} VALUES {', '.join([marks] * rows)} {tail}"))
    return sql


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _value_chunks(rows: Sequence[Any]) -> Iterator[Sequence[Any]]:
    i, n = 0, len(rows)
    for size in _VALUES_SIZES:
        while n - i >= size:
            yield rows[i : i + size]
            i += size


# --------------------------------------------------------------------------------------------------
# The transaction


class _NewCalls:
    """What a plan's calls write if none of them is stored yet (the usual case): their `calls` rows, tag
    rows, and what they add to their sessions (`_add_to_session`). Built when the plan is prepared, so a
    writer that finds no call already stored only hands these to the statements."""

    __slots__ = ("rows", "sessions", "tags", "users")

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.tags: list[tuple[Any, ...]] = []
        self.sessions: dict[tuple[int, str], list[Any]] = {}
        self.users: dict[tuple[int, str, str], float] = {}

    @classmethod
    def of(
        cls, incoming: Mapping[tuple[int, str], Record], rows: Mapping[tuple[int, str], tuple[Any, ...]]
    ) -> _NewCalls:
        out = cls()
        out.rows = list(rows.values())
        tags = out.tags
        for (pid, call_id), record in incoming.items():
            # Tags as ingest checked and cut them (`ingest.cut_long_names`): stored as the call's record
            # has them, so a tag is found by the value its call shows.
            record_tags = record.get("tags")
            if record_tags:
                tags += [(pid, call_id, str(tag)) for tag in dict.fromkeys(record_tags)]
        for row in out.rows:
            if row[ROW_SESSION] is not None:
                _add_to_session(out.sessions, out.users, row[0], row)
        return out

    @classmethod
    def joined(cls, parts: Sequence[_NewCalls]) -> _NewCalls:
        """The parts of plans without a call in common, as one (the parts do not change)."""
        out = cls()
        sessions, users = out.sessions, out.users
        for part in parts:
            out.rows += part.rows
            out.tags += part.tags
            for key, agg in part.sessions.items():
                have = sessions.get(key)
                if have is None:
                    sessions[key] = list(agg)
                    continue
                have[0] = min(have[0], agg[0])
                have[1] = max(have[1], agg[1])
                for i in range(2, 8):
                    have[i] += agg[i]
            for user_key, first in part.users.items():
                known = users.get(user_key)
                if known is None or first < known:
                    users[user_key] = first
        return out


class _Plan:
    """A set of batches prepared as if every call were new: what does not need the write lock."""

    def __init__(self, batches: Sequence[WriteBatch]) -> None:
        self.incoming: dict[tuple[int, str], Record] = {}
        self.rows: dict[tuple[int, str], tuple[Any, ...]] = {}
        self.spans: list[tuple[Any, ...]] = []
        given: dict[tuple[int, str], str | None] = {}
        for batch in batches:
            texts = batch.texts
            if texts is not None and len(texts) != len(batch.records):
                raise ValueError("litelens: texts must be parallel to records")
            pid = batch.project_id
            for index, record in enumerate(batch.records):
                call_id = record.get("call_id")
                if not isinstance(call_id, str) or not call_id:
                    raise ValueError(
                        "litelens: a record without call_id cannot be stored; validate it at ingest"
                    )
                key = (pid, call_id)
                if key in self.incoming:
                    self.incoming[key] = merge_records(self.incoming[key], record)
                    given[key] = None
                else:
                    self.incoming[key] = record  # never changed: merges build new dicts
                    given[key] = texts[index] if texts is not None else None
            if batch.spans:
                self.spans += span_rows(pid, batch.spans)
        minute: dict[int, dict[RollupKey, Change]] = {}
        for key, record in self.incoming.items():
            deltas = minute.get(key[0])
            if deltas is None:
                deltas = minute[key[0]] = {}
            add_contribution(deltas, record, 1, (60,))
            self.rows[key] = call_row(key[0], record, given[key])
        # Every resolution's rows, here in the request's thread rather than in the writer's: the writer
        # only sums plans (`sum_changes`, which shares the rows only one plan touches).
        self.rollups: dict[int, dict[RollupKey, Change]] = {pid: coarsen(d) for pid, d in minute.items()}
        self.new = _NewCalls.of(self.incoming, self.rows)

    @property
    def empty(self) -> bool:
        return not self.incoming and not self.spans

    @classmethod
    def combined(cls, plans: Sequence[_Plan]) -> _Plan:
        """One plan for several prepared ones, as if their batches had been prepared together.

        A call that two of them carry is merged, and the contributions prepared for each version are
        replaced by the merged record's. The plans themselves are left as they were (what they hold is
        shared, never changed): a shared transaction that fails is retried plan by plan.
        """
        if len(plans) == 1:
            return plans[0]
        out = cls([])
        fix: dict[int, dict[RollupKey, Change]] = {}
        for plan in plans:
            out.spans += plan.spans
            for key, record in plan.incoming.items():
                old = out.incoming.get(key)
                if old is None:
                    out.incoming[key] = record
                    out.rows[key] = plan.rows[key]
                    continue
                merged = merge_records(old, record)
                deltas = fix.setdefault(key[0], {})
                add_contribution(deltas, old, -1, RESOLUTIONS)
                add_contribution(deltas, record, -1, RESOLUTIONS)
                add_contribution(deltas, merged, 1, RESOLUTIONS)
                out.incoming[key] = merged
                out.rows[key] = call_row(key[0], merged)
        for pid in dict.fromkeys(pid for plan in plans for pid in plan.rollups):
            parts = [plan.rollups[pid] for plan in plans if pid in plan.rollups]
            if pid in fix:
                parts.append(fix[pid])
            out.rollups[pid] = sum_changes(parts)
        out.new = _NewCalls.of(out.incoming, out.rows) if fix else _NewCalls.joined([p.new for p in plans])
        return out


class BatchWriter:
    """The write path of `SQLStore` (a mixin): `write` and `write_many`, and the statements they run."""

    #: The two-argument minimum and maximum functions of the dialect.
    _LEAST = "MIN"
    _GREATEST = "MAX"
    #: Whether the database reads back what an UPDATE wrote (`RETURNING`): PostgreSQL, SQLite >= 3.35.
    _RETURNING = True

    # Rollup histograms as last written by this store: {(project, resolution, bucket, dim, value):
    # (latency, ttft, latency text, ttft text)}, trusted while `_data_version` says no other connection wrote since.
    _hists: dict[tuple[Any, ...], StoredHists]
    _hists_version: Any = None

    # ---- what the backend provides (SQLStore declares them)

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql

    def _json_param(self) -> str:
        return "?"

    def _load_json(self, value: Any) -> Any:
        raise NotImplementedError

    def _writer_lock(self) -> AbstractContextManager[Any]:
        """Held across a write transaction and the cache update after it (re-entrant with `_write`)."""
        return contextlib.nullcontext()

    def _data_version(self, cur: Any) -> Any:
        """A value that changes whenever another connection commits, or None when there is none
        (then nothing is cached between transactions)."""
        return None

    # ---- the public write path

    def write(
        self,
        project_id: int,
        records: list[Record],
        spans: list[Span],
        texts: Sequence[str | None] | None = None,
    ) -> None:
        """Upsert a batch in one transaction: merge with stored versions, keep tags and rollups exact.

        A record already stored is merged with the incoming one (`merge_records`); its old contribution
        to the rollups is subtracted and the merged one's added, so a retried batch or a call reported by
        two layers counts once. An unchanged retry writes nothing. `texts`, optional and parallel to
        `records`, is each record's JSON text when the caller already has it: a new call stores that
        text instead of serializing the record again (a merged call is serialized afresh).
        """
        self.write_many([WriteBatch(project_id, records, spans, texts)])

    def write_many(self, batches: Sequence[WriteBatch]) -> None:
        """Several batches (of any projects) in ONE transaction, as if written one after the other."""
        self.write_prepared([_Plan(batches)])

    def prepare_write(self, batch: WriteBatch) -> Any:
        """What `write_prepared` needs of a batch and can be built without the write lock: each call's
        row and JSON, its tags, session and rollup contributions as if it were new.

        The server's request threads call this, so the single writer thread spends its time on the
        transaction alone (bench/ingest.py: ~17 us of Python per call moved off the writer; then the
        coarser rollup rows, tag rows and session sums: the writer's Python from ~16 to ~12 us per call,
        `measure_writer`)."""
        return _Plan([batch])

    def write_prepared(self, prepared: Sequence[Any]) -> None:
        """Prepared batches (`prepare_write`) in ONE transaction; each may be written again after a failure."""
        plan = _Plan.combined(prepared)
        if plan.empty:
            return
        # The cache is updated after COMMIT and before another writer of this store may start (the
        # writer lock is held across both), so it never holds what a rolled-back transaction wrote.
        with self._writer_lock():
            with self._write() as cur:
                remembered = self._apply(cur, plan)
            if self._hists_version is not None:
                self._hists.update(remembered)
                if len(self._hists) > _HIST_CACHE_MAX:
                    for key in list(itertools.islice(self._hists, len(self._hists) // 2)):
                        del self._hists[key]

    def forget_rollups(self) -> None:
        """Drop the cached rollup histograms: call it inside any other transaction that changes rollups."""
        self._hists = {}
        self._hists_version = None

    # ---- inside the transaction

    def _apply(self, cur: Any, plan: _Plan) -> dict[tuple[Any, ...], StoredHists]:
        version = self._data_version(cur)
        if version is None or version != self._hists_version:
            self._hists = {}
        self._hists_version = version
        stored: dict[tuple[int, str], tuple[Record, tuple[Any, ...]]] = {}
        by_project: dict[int, list[str]] = {}
        for pid, call_id in plan.incoming:
            by_project.setdefault(pid, []).append(call_id)
        for pid, ids in by_project.items():
            for call_id, stored_call in self._stored_calls(cur, pid, ids).items():
                stored[(pid, call_id)] = stored_call
        replaced: list[tuple[int, str]] = []
        # Per project, the stored parts in their sessions of the merged calls whose part changed.
        taken: dict[int, list[tuple[Any, ...]]] = {}
        merged_rows: list[tuple[Any, ...]] = []
        # Per project, the rollup rows where a stored call's new version counts a new value or moved
        # (`_apply_rollups`).
        moved: dict[int, set[RollupKey]] = {}
        if not stored:
            # Every call is new: what the plan prepared is what gets written.
            new = plan.new
            rows, tag_rows = new.rows, new.tags
            added, users = new.sessions, new.users
            rollups = plan.rollups
        else:
            rows, tag_rows = [], []
            added, users = {}, {}
            # The corrections for the calls found stored, in dicts of their own: the plan may be written
            # again if this transaction fails, so it must not change.
            fix: dict[int, dict[RollupKey, Change]] = {}
            for key, record in plan.incoming.items():
                pid, call_id = key
                found = stored.get(key)
                if found is None:
                    row = plan.rows[key]
                    rows.append(row)
                    if row[ROW_SESSION] is not None:
                        _add_to_session(added, users, pid, row)
                    merged = record
                else:
                    old, part = found
                    deltas = fix.setdefault(pid, {})
                    # Take back the contribution prepared as if the call were new.
                    add_contribution(deltas, record, -1, RESOLUTIONS)
                    merged = merge_records(old, record)
                    if merged == old:
                        continue
                    widened = rows_to_widen(old, merged)
                    if widened:
                        moved.setdefault(pid, set()).update(widened)
                    add_contribution(deltas, old, -1, RESOLUTIONS)
                    add_contribution(deltas, merged, 1, RESOLUTIONS)
                    row = call_row(pid, merged)
                    merged_rows.append(row)
                    replaced.append(key)
                    _move_in_sessions(taken, added, users, pid, part, row)
                # Tags as ingest checked and cut them (`ingest.cut_long_names`): stored as the call's
                # record has them, so a tag is found by the value its call shows.
                for tag in dict.fromkeys(merged.get("tags") or []):
                    tag_rows.append((pid, call_id, str(tag)))
            rollups = {
                pid: sum_changes([deltas, fix[pid]]) if pid in fix else deltas
                for pid, deltas in plan.rollups.items()
            }
        if rows or merged_rows:
            # One arrival for every call this transaction stores or changes, so a live tail that asks
            # for the calls arrived after the last it saw finds them whatever their start time says (a
            # slow client clock, a long stream, a spool delivered an hour late). A merged call gets it
            # too: it changed, and a tail may show the change (the dashboard's updates the row in place;
            # `litelens tail` prints a call once, when it first arrives). An unchanged retry, skipped
            # above, keeps its arrival and shows nowhere again.
            arrival = self._next_arrival(cur)
            if rows:
                self._insert_calls(cur, [(*row, arrival) for row in rows])
            if merged_rows:
                self._upsert_calls(cur, [(*row, arrival) for row in merged_rows])
        if replaced:
            cur.executemany(self._q("DELETE FROM call_tags WHERE project_id = ? AND call_id = ?"), replaced)
        if tag_rows:
            self._insert_tags(cur, tag_rows)
        if plan.spans:
            self._upsert_spans(cur, self._with_stored_attributes(cur, plan.spans))
        # Merged calls' old parts out of their sessions first (with the calls now as merged, so what is
        # found again through `calls_session` is exact), then every new part in.
        refresh = {
            pid: self._take_sessions(
                cur, pid, parts, {sid: agg[1] for (p, sid), agg in added.items() if p == pid}
            )
            for pid, parts in sorted(taken.items())
        }
        if added:
            self._add_sessions(cur, added)
        if users:
            self._add_session_users(cur, users)
        for pid, sids in refresh.items():
            if sids:
                # After the additive upserts: a recomputed row is exact whatever they did to it.
                self._refresh_sessions(cur, pid, sids)
        remembered: dict[tuple[Any, ...], StoredHists] = {}
        for pid, deltas in rollups.items():
            remembered.update(
                self._apply_rollups(cur, pid, deltas, moved.get(pid, set()) if stored else None)
            )
        return remembered

    def _apply_rollups(
        self,
        cur: Any,
        project_id: int,
        deltas: Mapping[RollupKey, Change],
        moved: set[RollupKey] | None = None,
    ) -> dict[tuple[Any, ...], StoredHists]:
        """Add a batch's rollup deltas to the rollup rows; returns the histograms now stored.

        `moved`, when some of the batch's calls were stored already, holds the rows whose bounds their
        merged versions may widen (`rollup.rows_to_widen`): a row whose sums do not change is written
        for its bounds only if it is among them.

        Scalars add up in the statement (`count = rollups.count + excluded.count`); histograms are
        merged here with the stored ones (from the cache, or read for all missing rows at once by
        `_stored_hists`) and written whole. A row whose count falls to zero (a merged call moved to another group) is
        deleted afterwards. Safe because `_write` serializes writers.
        """
        live = {
            key: d
            for key, d in deltas.items()
            if d[0]
            or d[1]
            or d[2]
            or d[3]
            or abs(d[4]) > 1e-12
            or d[5]
            or d[6]
            or any(d[LATENCY].values())
            or any(d[TTFT].values())
            # (A merged version in the same bins as the one it replaces, at another duration.)
            or ((d[BOUNDS] is not None or d[BOUNDS + 2] is not None) and (moved is None or key in moved))
        }
        if not live:
            return {}
        cache = self._hists
        missing = [key for key in live if (project_id, *key) not in cache]
        fetched = self._stored_hists(cur, project_id, missing) if missing else {}
        upserts: list[tuple[Any, ...]] = []
        emptied: list[tuple[Any, ...]] = []
        remembered: dict[tuple[Any, ...], StoredHists] = {}
        for key, d in live.items():
            cache_key = (project_id, *key)
            # Taken out, because its histograms are now changed in place (`_merged`): the cache must not
            # hold them if this transaction rolls back. `write_prepared` puts back what it commits.
            old = cache.pop(cache_key, None)
            if old is None:
                texts = fetched.get(key)
                if texts is not None:
                    old = (parsed(texts[0]), parsed(texts[1]), texts[0], texts[1])
            latency, latency_text = (
                _merged(old[0], old[2], d[LATENCY]) if old else _merged(None, "", d[LATENCY])
            )
            ttft, ttft_text = _merged(old[1], old[3], d[TTFT]) if old else _merged(None, "", d[TTFT])
            resolution, bucket, dim, value = key
            upserts.append(
                (
                    project_id, resolution, dim, bucket, value, *d[:SCALARS], latency_text, ttft_text,
                    *d[BOUNDS : BOUNDS + 4],
                )
            )  # fmt: skip
            if d[0] <= 0:
                # A merged call left this group (or float residue of a taken-back contribution): the row
                # goes if nothing counts in it any more, so its histograms are not remembered.
                emptied.append((project_id, resolution, dim, bucket, value))
            else:
                remembered[cache_key] = (latency, ttft, latency_text, ttft_text)
        self._insert_values(
            cur,
            "INSERT INTO rollups (project_id, resolution, dim, bucket, value, count, errors, tokens_in, "
            "tokens_out, cost, priced, cancelled, latency_hist, ttft_hist, latency_min, latency_max, ttft_min, "
            "ttft_max)",
            "(" + ", ".join("?" * 18) + ")",
            upserts,
            "ON CONFLICT (project_id, resolution, dim, bucket, value) DO UPDATE SET "
            "count = rollups.count + excluded.count, errors = rollups.errors + excluded.errors, "
            "tokens_in = rollups.tokens_in + excluded.tokens_in, "
            "tokens_out = rollups.tokens_out + excluded.tokens_out, cost = rollups.cost + excluded.cost, "
            "priced = rollups.priced + excluded.priced, cancelled = rollups.cancelled + excluded.cancelled, "
            "latency_hist = excluded.latency_hist, "
            f"ttft_hist = excluded.ttft_hist, {_bounds_update(self._LEAST, self._GREATEST)}",
        )
        if emptied:
            cur.executemany(
                self._q(
                    "DELETE FROM rollups WHERE project_id = ? AND resolution = ? AND dim = ? AND bucket = ? "
                    "AND value = ? AND count <= 0"
                ),
                emptied,
            )
        return remembered

    # ---- statements a backend may do its own way

    def _insert_values(
        self, cur: Any, head: str, marks: str, rows: Sequence[tuple[Any, ...]], tail: str = ""
    ) -> None:
        """`{head} VALUES {marks}, {marks}, ... {tail}` over `rows`, up to 512 rows a statement."""
        for part in _value_chunks(rows):
            cur.execute(
                _values_sql(type(self), self._q, head, marks, len(part), tail),
                list(itertools.chain.from_iterable(part)),
            )

    def _with_stored_attributes(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """`rows` with each span's attributes merged (`merge_attributes`) into those already stored for it,
        or given by an earlier row of the same span.

        In Python, not in SQL: SQLite's json_patch deleted a key that the later copy set to null, and
        PostgreSQL's jsonb reordered the keys and could not hold an escaped NUL (the later copy then
        replaced the earlier whole), so the two stores kept different attributes for the same copies.
        """
        wanted = {row[:3] for row in rows if row[_ROW_ATTRIBUTES] is not None}
        if not wanted:
            return rows
        known = self._stored_attributes(cur, sorted(wanted))
        out = []
        for row in rows:
            text = row[_ROW_ATTRIBUTES]
            if text is not None:
                have = known.get(row[:3])
                if have is not None and have != text:
                    merged = merge_attributes(fastjson.loads(have), fastjson.loads(text))
                    text = fastjson.dumps(merged)
                    row = (*row[:_ROW_ATTRIBUTES], text, *row[_ROW_ATTRIBUTES + 1 :])
                known[row[:3]] = text
            out.append(row)
        return out

    def _stored_attributes(
        self, cur: Any, keys: Sequence[tuple[int, str, str]]
    ) -> dict[tuple[int, str, str], str]:
        """The stored attributes text of the spans among `keys` (project, trace id, span id) that have some."""
        found: dict[tuple[int, str, str], str] = {}
        for chunk in chunks(keys, CHUNK // 3):
            marks = ", ".join(["(?, ?, ?)"] * len(chunk))
            # A join that walks the keys and seeks each in the primary key (`(...) IN (VALUES ...)`
            # scanned the whole table).
            cur.execute(
                self._q(
                    f"WITH k (project_id, trace_id, span_id) AS (VALUES {marks}) "
                    "SELECT s.project_id, s.trace_id, s.span_id, s.attributes FROM k CROSS JOIN spans s "
                    "ON s.project_id = k.project_id AND s.trace_id = k.trace_id AND s.span_id = k.span_id "
                    "WHERE s.attributes IS NOT NULL"
                ),
                [value for key in chunk for value in key],
            )
            for pid, trace_id, span_id, text in cur.fetchall():
                found[(pid, trace_id, span_id)] = text
        return found

    def _stored_calls(
        self, cur: Any, project_id: int, call_ids: list[str]
    ) -> dict[str, tuple[Record, tuple[Any, ...]]]:
        """The stored record of each call among `call_ids` that is stored, with its `SESSION_PART_COLUMNS`:
        the part in its session that a merge takes out is what the row added, not what its record says now."""
        found: dict[str, tuple[Record, tuple[Any, ...]]] = {}
        for chunk in chunks(call_ids):
            marks = ", ".join("?" * len(chunk))
            cur.execute(
                self._q(
                    f"SELECT call_id, record, {SESSION_PART_COLUMNS} FROM calls "
                    f"WHERE project_id = ? AND call_id IN ({marks})"
                ),
                (project_id, *chunk),
            )
            for call_id, text, *columns in cur.fetchall():
                found[call_id] = (self._load_json(text), tuple(columns))
        return found

    def _stored_hists(
        self, cur: Any, project_id: int, keys: Sequence[RollupKey]
    ) -> dict[RollupKey, tuple[str, str]]:
        """The stored histograms of the rollup rows that exist among `keys`.

        The keys go into a temporary table that is joined with `rollups` (CROSS JOIN: SQLite then walks
        the keys and seeks each in the primary key), so the lookup is three statements however the keys
        spread: calls spread over days (a backfill, a spool replayed after an outage) touch a different
        bucket per row, and grouping them into IN lists made it a statement per row.
        """
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS litelens_rollup_keys "
            "(resolution INTEGER, bucket INTEGER, dim TEXT, value TEXT)"
        )
        self._insert_values(cur, "INSERT INTO temp.litelens_rollup_keys", "(?, ?, ?, ?)", keys)
        cur.execute(
            "SELECT k.resolution, k.bucket, k.dim, k.value, r.latency_hist, r.ttft_hist "
            "FROM temp.litelens_rollup_keys k CROSS JOIN rollups r ON r.project_id = ? "
            "AND r.resolution = k.resolution AND r.dim = k.dim AND r.bucket = k.bucket AND r.value = k.value",
            (project_id,),
        )
        found = {(int(r[0]), int(r[1]), r[2], r[3]): (r[4], r[5]) for r in cur.fetchall()}
        cur.execute("DELETE FROM temp.litelens_rollup_keys")
        return found

    def _next_arrival(self, cur: Any) -> int:
        """The arrival of the calls the current write transaction stores or changes.

        A counter of its own rather than the greatest arrival stored plus one: retention may delete the
        call holding that (one that started before the cutoff, delivered late), and its number given
        again would be one a live tail has already passed.

        Arrivals are taken in commit order, which a tail relies on: it asks for the calls arrived
        after the greatest it has read, so one committed later with a smaller arrival would be missed.
        SQLite has one writer at a time (BEGIN IMMEDIATE, across processes). On PostgreSQL every write
        transaction first takes the advisory write lock (`PostgresStore._write`), and the counter's row
        lock too; both are released only once the commit is visible to new snapshots. So a transaction
        takes its arrival after every transaction with a smaller one is visible, and a reader that sees
        an arrival sees every smaller one.
        """
        if self._RETURNING:
            # One statement rather than an UPDATE and a SELECT: one round trip less to PostgreSQL.
            # fetchall: SQLite's statement is stepped to its end and reset, not left open in the cursor.
            cur.execute("UPDATE arrivals SET last = last + 1 RETURNING last")
            return int(cur.fetchall()[0][0])
        cur.execute("UPDATE arrivals SET last = last + 1")
        cur.execute("SELECT last FROM arrivals")
        return int(cur.fetchone()[0])

    def _insert_calls(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert `calls` rows (`STORED_CALL_COLUMNS`) the writer found absent under its lock (a backend
        may bulk-load them)."""
        marks = "(" + ", ".join(["?"] * (len(CALL_COLUMNS) - 1) + [self._json_param(), "?"]) + ")"
        self._insert_values(cur, f"INSERT INTO calls ({', '.join(STORED_CALL_COLUMNS)})", marks, rows)

    def _upsert_calls(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        marks = "(" + ", ".join(["?"] * (len(CALL_COLUMNS) - 1) + [self._json_param(), "?"]) + ")"
        updates = ", ".join(f"{name} = excluded.{name}" for name in STORED_CALL_COLUMNS[2:])
        self._insert_values(
            cur,
            f"INSERT INTO calls ({', '.join(STORED_CALL_COLUMNS)})",
            marks,
            rows,
            f"ON CONFLICT (project_id, call_id) DO UPDATE SET {updates}",
        )

    def _insert_tags(self, cur: Any, tag_rows: list[tuple[Any, ...]]) -> None:
        self._insert_values(
            cur,
            "INSERT INTO call_tags (project_id, call_id, tag)",
            "(?, ?, ?)",
            tag_rows,
            "ON CONFLICT DO NOTHING",
        )

    def _upsert_spans(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        columns = ("project_id", *SPAN_COLUMNS)
        # A later report of a span (a retried export, a sender's updated copy) fills in what an earlier
        # one lacked and never blanks a field: attributes come merged (`_with_stored_attributes`);
        # an end time (stored as the start time when a copy has none) and a status (OTLP's UNSET says
        # none) set by either copy stay. Only a conflict pays for this.
        special = {
            "end_time": f"{self._GREATEST}(excluded.end_time, spans.end_time)",
            "status": "CASE WHEN excluded.status IS NULL OR excluded.status = 'UNSET' "
            "THEN COALESCE(spans.status, excluded.status) ELSE excluded.status END",
        }
        updates = ", ".join(
            f"{name} = {special.get(name) or f'COALESCE(excluded.{name}, spans.{name})'}"
            for name in SPAN_COLUMNS[2:]
        )
        self._insert_values(
            cur,
            f"INSERT INTO spans ({', '.join(columns)})",
            "(" + ", ".join("?" * len(columns)) + ")",
            rows,
            f"ON CONFLICT (project_id, trace_id, span_id) DO UPDATE SET {updates}",
        )

    def _add_sessions(self, cur: Any, added: dict[tuple[int, str], list[Any]]) -> None:
        """Add new calls to their sessions' rows (exact for calls not stored before: nothing to undo)."""
        least, greatest = self._LEAST, self._GREATEST
        self._insert_values(
            cur,
            "INSERT INTO sessions (project_id, session_id, first_time, last_start, last_time, calls, tokens, "
            "cost, errors, priced, cancelled)",
            "(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)",
            [(pid, sid, *agg) for (pid, sid), agg in sorted(added.items())],
            "ON CONFLICT (project_id, session_id) DO UPDATE SET "
            f"first_time = {least}(sessions.first_time, excluded.first_time), "
            f"last_time = {greatest}(sessions.last_time, excluded.last_time), "
            "calls = sessions.calls + excluded.calls, tokens = sessions.tokens + excluded.tokens, "
            "cost = sessions.cost + excluded.cost, errors = sessions.errors + excluded.errors, "
            "priced = sessions.priced + excluded.priced, cancelled = sessions.cancelled + excluded.cancelled",
        )

    def _add_session_users(self, cur: Any, users: dict[tuple[int, str, str], float]) -> None:
        """Add the (session, user) pairs of new calls; a pair already stored keeps its first time unless
        this call started earlier (the WHERE: an unchanged row is not written again)."""
        self._insert_values(
            cur,
            "INSERT INTO session_users (project_id, session_id, user_name, first_time)",
            "(?, ?, ?, ?)",
            [(*key, first) for key, first in sorted(users.items())],
            "ON CONFLICT (project_id, session_id, user_name) DO UPDATE SET first_time = excluded.first_time "
            "WHERE excluded.first_time < session_users.first_time",
        )

    def _refresh_sessions(self, cur: Any, project_id: int, sessions: set[str]) -> None:
        ordered = sorted(sessions)
        cur.executemany(self._q(_SESSION_REFRESH), [(project_id, sid) for sid in ordered])
        cur.executemany(self._q(_SESSION_USERS_CLEAR), [(project_id, sid) for sid in ordered])
        cur.executemany(self._q(_SESSION_USERS_REFRESH), [(project_id, sid) for sid in ordered])
        cur.executemany(self._q(_SESSION_DROP_EMPTY), [(project_id, sid, project_id, sid) for sid in ordered])

    def _take_from_sessions(self, cur: Any, project_id: int, deleted: Sequence[Sequence[Any]]) -> None:
        """Take calls that retention deleted out of their sessions' rows (`deleted`: `SESSION_PART_COLUMNS`).

        Recomputing a session from its calls costs a pass over every call left in it, once per retention
        batch: a long-lived session of 20,000 calls made each batch of a 200,000-call backlog take
        ~0.3 s, shrank the batches to 50 calls, and held the writer for minutes (ingest waited 0.2-2 s a
        batch). Subtracting the deleted calls and finding the new first start through `calls_session`
        costs a few index probes instead. A session whose latest-ending call went is recomputed: the
        latest end among the others needs a pass (retention deletes old calls, so such a session has
        few left, usually none).
        """
        recompute = self._take_sessions(cur, project_id, deleted, {})
        if recompute:
            self._refresh_sessions(cur, project_id, recompute)

    def _take_sessions(
        self, cur: Any, project_id: int, parts: Sequence[Sequence[Any]], later: Mapping[str, float]
    ) -> set[str]:
        """Take calls' parts (`SESSION_PART_COLUMNS`) out of their sessions' rows and users, with the
        calls table already as it will be committed; returns the sessions that need `_refresh_sessions`
        instead (after whatever is added to them), which are left as they were.

        That is a session whose row is missing, or whose latest-ending call is taken out and whose new
        latest end is not known without a pass over its calls: `later` holds the latest end that the
        transaction adds to each session (a merged call's new part), which is the new latest end when it
        is at least the one taken out.
        """
        taken: dict[str, list[Any]] = {}
        users: dict[str, set[str]] = {}
        for sid, _start, end, tokens, cost, status, end_user, user_id in parts:
            if not sid:
                continue
            agg = taken.setdefault(sid, [0, 0, 0.0, 0, 0, end, 0])
            agg[0] += 1
            agg[1] += int(tokens or 0)
            agg[2] += float(cost or 0.0)
            agg[3] += 1 if status == "error" else 0
            agg[4] += 0 if cost is None else 1
            agg[5] = max(agg[5], end)
            agg[6] += 1 if status == "cancelled" else 0
            user = end_user or user_id
            if user:
                users.setdefault(sid, set()).add(user)
        if not taken:
            return set()
        ordered = sorted(taken)
        last: dict[str, float] = {}
        # ORDER BY the key, or SQLite without statistics read every session of the project through the
        # covering `sessions_recent` (5,000 sessions for each batch of a retention pass) rather than
        # look the few up by key.
        for chunk in chunks(ordered):
            marks = ", ".join("?" * len(chunk))
            cur.execute(
                self._q(
                    f"SELECT session_id, last_time FROM sessions WHERE project_id = ? AND session_id IN ({marks}) "
                    "ORDER BY session_id"
                ),
                (project_id, *chunk),
            )
            last.update((str(sid), float(t)) for sid, t in cur.fetchall())
        recompute = {
            sid
            for sid in ordered
            if sid not in last or (taken[sid][5] >= last[sid] and later.get(sid, -math.inf) < taken[sid][5])
        }
        kept = [sid for sid in ordered if sid not in recompute]
        if not kept:
            return recompute
        cur.executemany(
            self._q(_SESSION_TAKE),
            [
                (n, tokens, priced, cost, errors, priced, cancelled, project_id, sid, project_id, sid)
                for sid in kept
                for n, tokens, cost, errors, priced, _, cancelled in [taken[sid]]
            ],
        )
        self._first_calls(cur, project_id, {sid: users[sid] for sid in kept if sid in users})
        return recompute

    def _first_calls(self, cur: Any, project_id: int, users: Mapping[str, set[str]]) -> None:
        """Set each session's `users` to the start of their first call left in it (`session_users`),
        or delete those that have none left.

        One read of the session's calls from its first finds most of them, and the database groups
        what it reads by user. A statement per user walked the session's calls until it met that
        user's, twice (is one left, which is first): a retention batch in a session of 500 users read
        its first ~500 calls twice for each user it touched, a fifth of the pass. Past
        `_FIRST_CALLS_READ` calls read, the users not found yet are looked up one by one as before (a
        user whose calls are all gone has the rest of the session read either way).
        """
        first: list[tuple[Any, ...]] = []
        gone: list[tuple[Any, ...]] = []
        rest: list[tuple[Any, ...]] = []
        for sid in sorted(users):
            wanted = users[sid]
            found: dict[str, float] = {}
            # Page after page from the last start read (the calls at that start are read again, which
            # cannot change what is found); a page of one start throughout could not move on.
            since, limit, read = -math.inf, 256, 0
            while True:
                cur.execute(self._q(_SESSION_FIRST_CALLS), (project_id, sid, since, limit))
                rows = cur.fetchall()
                page = sum(int(n) for *_, n in rows)
                read += page
                for user, start, _, _ in rows:
                    if user in wanted and user not in found:
                        found[user] = float(start)
                whole = page < limit
                last = max(r[2] for r in rows) if rows else since
                if whole or len(found) == len(wanted) or read >= _FIRST_CALLS_READ or last == since:
                    break
                since, limit = last, limit * 2
            for user in sorted(wanted):
                if user in found:
                    first.append((found[user], project_id, sid, user))
                else:
                    (gone if whole else rest).append((project_id, sid, user))
        cur.executemany(
            self._q(
                "UPDATE session_users SET first_time = ? WHERE project_id = ? AND session_id = ? AND user_name = ?"
            ),
            first,
        )
        cur.executemany(
            self._q("DELETE FROM session_users WHERE project_id = ? AND session_id = ? AND user_name = ?"),
            gone,
        )
        cur.executemany(self._q(_SESSION_USER_GONE), [(*pair, *pair) for pair in rest])
        cur.executemany(self._q(_SESSION_USER_FIRST), [(*pair, *pair) for pair in rest])


def _merged(stored: Hist | None, stored_text: str, delta: Hist) -> tuple[Hist, str]:
    """A stored histogram plus a delta, and its text. `stored` is the writer's own (taken out of its
    cache, or parsed from the row just read) and is changed in place: copying it first cost as much as
    the addition. A delta without bins (most rows' TTFT: calls that did not stream) leaves the stored
    text as it is instead of writing it again."""
    if stored is None:
        stored = {}
    elif not delta:
        return stored, stored_text
    add_into(stored, delta)
    return stored, dump(stored)


def _move_in_sessions(
    taken: dict[int, list[tuple[Any, ...]]],
    added: dict[tuple[int, str], list[Any]],
    users: dict[tuple[int, str, str], float],
    project_id: int,
    part: tuple[Any, ...],
    row: tuple[Any, ...],
) -> None:
    """Note a merged call's move in the sessions: its stored `part` (`SESSION_PART_COLUMNS`) out, its
    new `calls` row in. A merge that leaves the part as it was (the usual one: the other road's copy
    adds ids, models, content) moves nothing."""
    sid, start, end, tokens, cost, status, end_user, user_id = part
    user = end_user or user_id
    new_user = row[ROW_END_USER] or row[ROW_USER_ID]
    same_place = sid == row[ROW_SESSION] and user == new_user
    if (
        same_place
        and start == row[ROW_START]
        and end == row[ROW_END]
        and tokens == row[ROW_TOTAL]
        and cost == row[ROW_COST]
        and (status or "ok") == row[ROW_STATUS]
    ):
        return
    if sid is not None:
        if same_place and row[ROW_START] <= start:
            # The user stays, and its first time in the session can only move earlier, which adding
            # the new part does: no need to look for the user's other calls.
            part = (sid, start, end, tokens, cost, status, None, None)
        taken.setdefault(project_id, []).append(part)
    if row[ROW_SESSION] is not None:
        _add_to_session(added, users, project_id, row)


def _add_to_session(
    added: dict[tuple[int, str], list[Any]],
    users: dict[tuple[int, str, str], float],
    project_id: int,
    row: tuple[Any, ...],
) -> None:
    """Fold a new call's `calls` row into its session's aggregate (the `sessions` columns) and its
    user's first time in the session (`session_users`)."""
    user = row[ROW_END_USER] or row[ROW_USER_ID]
    if user is not None:
        user_key = (project_id, row[ROW_SESSION], user)
        first = users.get(user_key)
        if first is None or row[ROW_START] < first:
            users[user_key] = row[ROW_START]
    known = row[ROW_COST]
    cost = known or 0.0
    priced = 0 if known is None else 1
    error = 1 if row[ROW_STATUS] == "error" else 0
    cancelled = 1 if row[ROW_STATUS] == "cancelled" else 0
    key = (project_id, row[ROW_SESSION])
    agg = added.get(key)
    if agg is None:
        added[key] = [row[ROW_START], row[ROW_END], 1, row[ROW_TOTAL], cost, error, priced, cancelled]
        return
    agg[0] = min(agg[0], row[ROW_START])
    agg[1] = max(agg[1], row[ROW_END])
    agg[2] += 1
    agg[3] += row[ROW_TOTAL]
    agg[4] += cost
    agg[5] += error
    agg[6] += priced
    agg[7] += cancelled
