"""Noticing that the path to PostgreSQL went silent, for the PostgreSQL store.

A path that drops packets without a word (a firewall that lost its state, a virtual IP moved by a
failover, a dead host) leaves a connection that waits for an answer with nothing to wake it: libpq
waits as long as the kernel does, which by Linux's defaults is 15 minutes for data sent and never for an
answer to a query that was delivered. The store's writer writes for every sender, so one such wait
stalled ingest for all of them. Two things bound it:

- libpq's TCP settings (`connect_options`): keepalives find a dead peer on an idle connection and one
  waiting for a query's answer (and a `tcp_user_timeout` the URL sets, one that no longer acknowledges
  what is sent). They cost nothing, and they are what a DBA looks for in a connection string. The kernel
  alone cannot see a path that goes silent behind a proxy that still acknowledges everything (pgbouncer,
  a cloud SQL proxy, a load balancer whose backend died).
- `Watchdog`: a statement that has waited as long as `tcp_user_timeout` for its answer, with not a byte
  crossing the path meanwhile (a big answer on a slow link is slow, not silent), makes it ask the
  database, on a new connection, whether the session is still working on it. A session that is not (it is
  idle, or waits for input the client sent), or a database that cannot be reached, means the answer is
  not coming: the connection's socket is shut, the statement fails at once as a broken connection, and
  the store answers 503 as for any outage. A long statement the database is still running is left alone,
  however long it takes (a migration, a chart over months of calls). So is one whose session cannot be
  found (behind pgbouncer the process id the driver has is the pooler's) while the database answers, and
  any statement while the database refuses the check (its connection slots are full): it is there. But
  only for so long: a database that refuses every check (`REFUSED_CHECKS_MAX` in a row) tells no more
  about the statement than one that cannot be reached, and its refusals can last as long as the outage
  (the stopped session itself may hold the slot the check needs). The statement is then given up.

The watchdog warns once per outage (once for each kind of warning), then counts: a path gone silent
under a full pool, and again under the senders' retries, gave up connection after connection with a
warning each, burying the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

log = logging.getLogger("litelens.server")

# libpq waits for ever for a server that took the connection and never answers (a wrong port, a proxy,
# a host that drops packets): `serve` then hung at start, and a request for a connection later.
CONNECT_TIMEOUT_S = 10

# A dead path is found in about 30 s whichever way it died: an idle connection (or one waiting for a
# long query) after 10 s of silence and 4 unanswered probes 5 s apart; a statement whose request or
# answer stops crossing the path for 30 s (`tcp_user_timeout`) by the watchdog. Short for TCP, long for a
# collector, whose statements take milliseconds.
TCP_DEFAULTS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 4,
    "tcp_user_timeout": 30_000,
}

# Our default `tcp_user_timeout` is the watchdog's bound only, not the kernel's: Linux also ends a
# connection whose peer acknowledges everything but reads slowly (a proxy relaying to a slow link, a
# server busy while the rest of a pipeline waits), as it counts its window staying shut as data left
# unacknowledged, so a big write over a slow uplink failed with "Connection timed out". The watchdog tells
# slow from silent. One the URL sets goes to both, as the DBA asked.
_WATCHDOG_ONLY = frozenset({"tcp_user_timeout"})

# The statement is the transaction's last word for this long: a write transaction waits on nothing but
# its own client between statements (its rows are built before it starts), so one left idle this long
# lost its client, and its write lock would keep every other writer waiting until the database's own
# TCP noticed (two hours by Linux's defaults). Twice the answer bound, so it is never the one to act first.
IDLE_IN_WRITE_FACTOR = 2

# A statement whose checks the database refused this many times in a row is given up as if it could not
# be reached: after four bounds, two minutes by default. A refusal says nothing about the statement, and
# refusals can last as long as the outage (the stopped session holds the connection slot the check needs,
# a changed password): without a limit a statement on a dead path waited for ever. The price: a statement
# the database is still running is cut too if it ran that long while every check was refused.
REFUSED_CHECKS_MAX = 4

# The outage is over for the log once nothing was given up or refused for this many bounds: the next
# warning is a new outage's. A silent path gives up its connections within one bound of each other.
QUIET_FACTOR = 2

RV = TypeVar("RV")


def _given(url: str) -> dict[str, Any]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        return {}  # a URL libpq cannot read: its connect says why


def _names_service(given: dict[str, Any]) -> bool:
    return "service" in given or bool(os.environ.get("PGSERVICE"))


def connect_options(url: str) -> dict[str, Any]:
    """The parameters litelens adds to the URL's: what the URL (or the environment) sets is left alone.

    A URL that names a service (`service=` or PGSERVICE) gets no TCP defaults: libpq lets a parameter
    given to connect beat the service file, so ours would silently replace what a DBA put there.
    """
    given = _given(url)
    options: dict[str, Any] = {}
    if "connect_timeout" not in given and not os.environ.get("PGCONNECT_TIMEOUT"):
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    if not _names_service(given):
        options.update({k: v for k, v in TCP_DEFAULTS.items() if k not in given and k not in _WATCHDOG_ONLY})
    return options


def bound_set_by_service(url: str) -> bool:
    """Whether the service file, not the URL or litelens, decides `tcp_user_timeout`: only a connection
    opened with the URL then tells the bound (`answer_bound_s(url, conn.info.get_parameters())`)."""
    given = _given(url)
    return _names_service(given) and "tcp_user_timeout" not in given


def answer_bound_s(url: str, opened: dict[str, str] | None = None) -> float | None:
    """How long a statement may wait for its answer before the database is asked about it: the URL's
    `tcp_user_timeout` (milliseconds, as libpq reads it) or ours; None when it is 0 (the kernel's
    default), which turns the check off.

    When the service file decides (`bound_set_by_service`), `opened` is the parameters of a connection
    opened with the URL, which hold the service file's: unset there is the kernel's default too, and
    so no check (as is not knowing them yet).
    """
    if bound_set_by_service(url):
        given = (opened or {}).get("tcp_user_timeout")
    else:
        given = _given(url).get("tcp_user_timeout", TCP_DEFAULTS["tcp_user_timeout"])
    try:
        millis = int(given or 0)
    except ValueError:
        return None  # libpq refuses the URL at connect, and says why
    return millis / 1000 if millis > 0 else None


class WatchedConnection(psycopg.Connection[Any]):
    """A psycopg connection that tells its `watchdog` while it waits for the database."""

    watchdog: Watchdog | None = None
    session: tuple[int, Any] | None = None
    """(pid, backend_start) of the server session, when the pid libpq was given is the session's own
    (behind pgbouncer it is the pooler's): what lets the watchdog end that session and no other."""
    opened = 0.0
    """When the pool opened it (`time.monotonic()`)."""
    given_up_after: float | None = None
    """Set when the watchdog shut the connection: how long its statement had waited."""

    def watch(self, watchdog: Watchdog | None) -> None:
        if watchdog is None:
            return
        row = self.execute(
            "SELECT pg_backend_pid(), backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
        if row is not None and row[0] == self.info.backend_pid:
            self.session = (int(row[0]), row[1])
        self.watchdog = watchdog

    def wait(self, gen: PQGen[RV], *args: Any, **kwargs: Any) -> RV:
        # Every exchange with the server (a query, a fetch, COPY, a pipeline, a commit) waits here.
        watchdog = self.watchdog
        if watchdog is None:
            return super().wait(gen, *args, **kwargs)
        watchdog.waiting(self)
        try:
            return super().wait(gen, *args, **kwargs)
        finally:
            watchdog.answered(self)


class _Wait:
    __slots__ = ("began", "conn", "fd", "moved", "pid", "refused", "since")

    def __init__(self, conn: WatchedConnection) -> None:
        self.conn = conn
        self.began = self.since = time.monotonic()
        self.refused = 0
        """How many checks in a row the database refused."""
        # Read here, in the thread that owns the connection, not later from the watchdog's.
        self.pid = conn.info.backend_pid
        self.fd = conn.pgconn.socket
        self.moved: int | None = None
        """The bytes that had crossed the path at the watchdog's last look (`_bytes_moved`)."""

    def look(self, now: float) -> bool:
        """Whether bytes crossed the path since the last look, which then restarts the wait's clock: an
        answer (or a request) that takes longer than the bound to cross a slow link is slow, not silent.
        Call under the watchdog's lock (the descriptor is the connection's only until it is answered)."""
        moved = _bytes_moved(self.fd)
        if moved is None or moved == self.moved:
            return False
        first, self.moved = self.moved is None, moved
        if first:
            return False  # what moved before the first look may be the statement's own request
        self.since = now
        self.refused = 0  # the path is alive: refused checks before count for nothing now
        return True


# A session that works on its statement (not one waiting for input from its client, which is lost), or
# one whose state the database does not track (`track_activities = off` shows 'disabled'; NULL to a role
# not allowed to see it): what it does cannot be told, so it is left alone while the database answers,
# as one behind a pooler is.
_WORKING = (
    "(state = 'active' AND wait_event_type IS DISTINCT FROM 'Client' OR state IS NULL OR state = 'disabled')"
)


class Watchdog:
    """Gives up on a connection whose statement waits for an answer the database is not going to send."""

    def __init__(self, url: str, after_s: float, on_give_up: Callable[[], None] = lambda: None) -> None:
        self.after_s = after_s
        self._url = url
        self._options = connect_options(url)
        self._on_give_up = on_give_up
        self._waits: dict[int, _Wait] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = _OutageLog(after_s * QUIET_FACTOR)

    def waiting(self, conn: WatchedConnection) -> None:
        wait = _Wait(conn)
        with self._lock:
            self._waits[id(conn)] = wait
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._run, name="litelens-pg-watchdog", daemon=True)
                self._thread.start()

    def answered(self, conn: WatchedConnection) -> None:
        with self._lock:
            self._waits.pop(id(conn), None)

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        tick = min(1.0, self.after_s / 4)
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._lock:
                for wait in self._waits.values():
                    wait.look(now)
                due = [w for w in self._waits.values() if now - w.since >= self.after_s]
            if due:
                self._check(due)
            else:  # not over while statements wait past the bound (a check may have hung meanwhile)
                self._outage.tick()
        self._outage.over()

    def _check(self, due: list[_Wait]) -> None:
        # Behind a pooler the pid libpq was given is not the session's: asking about it says nothing.
        pids = [w.pid for w in due if w.conn.session is not None]
        why = "cannot be reached"
        try:
            rows = self._ask(f"SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND {_WORKING}", (pids,))
        except _Refused as refused:
            # The database answered, with a refusal (its connection slots are full, a pooler's limit,
            # the check's own statement_timeout): it is there, and may well be working on every one of
            # them. Nothing is given up on one refusal; they are asked about again after as long.
            self._outage.say(
                "refused",
                "PostgreSQL refused the check on %d statement(s) waiting over %.0f s (%s): asking again later",
                len(due),
                self.after_s,
                refused,
            )
            due = self._postpone(due)
            if not due:
                return
            rows = None  # refused too often: no more known than if it could not be reached
            why = f"refused {REFUSED_CHECKS_MAX} checks in a row ({refused})"
        working = {int(r[0]) for r in rows or ()}
        given_up: list[_Wait] = []
        for wait in due:
            with self._lock:
                if self._waits.get(id(wait.conn)) is not wait:
                    continue  # answered meanwhile
                if wait.look(time.monotonic()):
                    continue  # bytes crossed while the database was asked: the path is back, or was slow
                if rows is not None and (wait.conn.session is None or wait.pid in working):
                    # A long statement, or one whose session cannot be told apart from the pooler's
                    # others while the database answers: ask again after as long.
                    wait.since = time.monotonic()
                    wait.refused = 0
                    continue
                del self._waits[id(wait.conn)]
                waited = time.monotonic() - wait.began
                wait.conn.given_up_after = waited
                # Under the lock: until `answered` returns the connection is not closed, so the
                # descriptor is still its own and not a number since reused by another socket.
                _shut(wait.fd)
            self._outage.say(
                "given up",
                "PostgreSQL sent no answer for %.0f s and %s: giving up the connection",
                waited,
                why if rows is None else "is not working on the statement",
            )
            given_up.append(wait)
        if not given_up:
            return
        self._on_give_up()
        sessions = [w.conn.session for w in given_up if w.conn.session is not None]
        if rows is not None and sessions:
            # The server has not noticed (its TCP may not for two hours, or ever behind a proxy): a session
            # stopped inside a write transaction keeps the write lock, and every other writer waits on it.
            with contextlib.suppress(_Refused):
                self._ask(
                    "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a "
                    "JOIN unnest(%s::int[], %s::timestamptz[]) AS s (pid, started) "
                    f"ON a.pid = s.pid AND a.backend_start = s.started WHERE NOT ({_WORKING})",
                    ([p for p, _ in sessions], [t for _, t in sessions]),
                )

    def _postpone(self, due: list[_Wait]) -> list[_Wait]:
        """Ask about `due` again after another bound, the database having refused the check; returns
        those it has refused too often to wait on any longer."""
        refused_too_often: list[_Wait] = []
        with self._lock:
            for wait in due:
                if self._waits.get(id(wait.conn)) is not wait:
                    continue  # answered meanwhile
                wait.refused += 1
                if wait.refused >= REFUSED_CHECKS_MAX:
                    refused_too_often.append(wait)
                else:
                    wait.since = time.monotonic()
        return refused_too_often

    def _ask(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        """The rows of `sql` on a new connection; None when the database does not answer within a
        connect timeout and the bound (the answer would come on the same path, or on one as dead).
        Raises `_Refused` when the database answered with an error: it can be reached."""
        found: list[list[tuple[Any, ...]]] = []
        refused: list[psycopg.Error] = []
        probes: list[psycopg.Connection[Any]] = []

        def ask() -> None:
            try:
                with psycopg.connect(self._url, autocommit=True, **self._options) as probe:
                    probes.append(probe)
                    found.append(probe.execute(sql, params).fetchall())
            except psycopg.Error as exc:
                if _from_server(exc):
                    refused.append(exc)
                log.debug("asking PostgreSQL about silent connections failed: %s", exc)
            except Exception as exc:
                log.debug("asking PostgreSQL about silent connections failed: %s", exc)

        asking = threading.Thread(target=ask, name="litelens-pg-probe", daemon=True)
        asking.start()
        asking.join(float(self._options.get("connect_timeout", CONNECT_TIMEOUT_S)) + self.after_s)
        if found:
            return found[0]
        if refused:
            raise _Refused(first_line(refused[0]))
        for probe in probes:  # connected, then went as silent as the rest
            with contextlib.suppress(Exception):
                _shut(probe.pgconn.socket)
        return None


class _OutageLog:
    """The watchdog's warnings, one of each kind per outage and then a count, as the server says
    "storage unavailable" once: a silent path under a full pool gave up each connection with a line of
    its own, and each retry after it another. Used by the watchdog's thread only."""

    _COUNTED = {"given up": "connection(s) given up", "refused": "check(s) refused"}

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._more: dict[str, int] = {}  # kind -> how many since its warning; empty: no outage
        self._began = self._last = 0.0

    def say(self, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if not self._more:
            self._began = now
        self._last = now
        if kind in self._more:
            self._more[kind] += 1
            log.debug(message, *args)
        else:
            self._more[kind] = 0
            log.warning(message, *args)

    def tick(self) -> None:
        if self._more and time.monotonic() - self._last >= self.quiet_s:
            self.over()

    def over(self) -> None:
        """The outage ended (or the store closed): count what was not said."""
        counted = [f"{n} more {self._COUNTED[kind]}" for kind, n in self._more.items() if n]
        if counted:
            log.warning(
                "PostgreSQL watchdog: %s in the %.0f s after its first warning",
                " and ".join(counted),
                self._last - self._began,
            )
        self._more.clear()


class _Refused(Exception):
    """The database answered the watchdog's check with an error."""


# libpq writes an error the server sent during connection start-up as "SEVERITY:  message" (two spaces,
# whatever the language), which none of its own (a timeout, a refused or unroutable address) has.
_SERVER_SAID = re.compile(r"failed: [^:\n]+:  ")


def _from_server(exc: psycopg.Error) -> bool:
    """Whether the database itself sent `exc`: it can be reached, even when it refuses."""
    if exc.sqlstate is not None:  # a statement's error carries the server's SQLSTATE
        return True
    # A refused connection does not (psycopg has no result to read it from): only libpq's words tell.
    return _SERVER_SAID.search(str(exc)) is not None


def first_line(exc: BaseException) -> str:
    """An error's first line: libpq adds a second line of advice ("Is the server running on that
    host...") meant for a terminal."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# Linux's struct tcp_info (linux/tcp.h) holds, since 4.1, how many bytes of ours the peer acknowledged
# and how many of its we received: two 64-bit counters at these offsets.
_TCP_INFO_BYTES = struct.Struct("=QQ")
_TCP_INFO_BYTES_AT = 120


def _bytes_moved(fd: int) -> int | None:
    """How many bytes crossed the TCP connection under `fd`, both ways, by the kernel's count: it grows
    while a transfer moves, however slowly, and stops when the path goes silent (a proxy that still
    acknowledges stops too, once its buffers are full). None where the system does not say (not Linux,
    a Unix socket): the database's word alone then decides."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    size = _TCP_INFO_BYTES_AT + _TCP_INFO_BYTES.size
    try:
        copy = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=copy)
    except OSError:
        os.close(copy)  # not a socket after all: the copy is ours to close
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, size)
    except OSError:
        return None
    finally:
        sock.close()
    if len(info) < size:
        return None
    acked, received = _TCP_INFO_BYTES.unpack_from(info, _TCP_INFO_BYTES_AT)
    return int(acked + received)


def _shut(fd: int) -> None:
    """End the TCP connection under a descriptor another thread waits on: its wait wakes to a closed
    socket and libpq reports the connection broken. (Closing the descriptor would not wake it, and the
    number could be reused under it.)"""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
