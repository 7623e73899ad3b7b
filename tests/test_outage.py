"""`litelens serve` on PostgreSQL while the database goes away and comes back: a maintenance restart or a
failover, sessions a proxy ended while idle, a collector started before its database. A cluster of this
module's own, which these tests stop and start (the session's is shared with every other test)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from litelens.transport import Transport, TransportConfig
from server_helpers import ServerProcess, make_record

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A PostgreSQL cluster these tests may stop (skips where there are no PostgreSQL binaries)."""
    from litelens.testing.postgres import TempPostgres, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip(
            "no PostgreSQL binaries (initdb) found; apt-get install postgresql or set LITELENS_PG_BIN"
        )
    pytest.importorskip("psycopg")
    with TempPostgres() as pg:
        yield pg


@pytest.fixture
def database(cluster: Any) -> Iterator[str]:
    """A new database on `cluster`; the cluster is running again after the test, whatever it did."""
    yield str(cluster.create_database())
    if not _accepts(cluster):
        cluster.resume()


def _accepts(cluster: Any) -> bool:
    import psycopg

    try:
        psycopg.connect(cluster.url(), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _stored(url: str) -> tuple[int, int]:
    """(rows in calls, distinct call ids) read straight from the database."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT call_id) FROM calls").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _page(server: ServerProcess, path: str) -> Any:
    return server.client().request("GET", path, headers={"Cookie": f"litelens_key={server.key}"}, key=None)


def test_sessions_postgresql_ended_while_idle_cost_no_request_an_error(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str
) -> None:
    """A proxy, pgbouncer or an administrator ends idle sessions (here `pg_terminate_backend`): the pooled
    connections still looked open, so the next ingest and the next read drew a dead one each and were
    answered 500 while the database was up all along."""
    server = server_factory(database)
    client = server.client()
    assert client.post_json("/v1/events", {"records": [make_record("before")]}).status == 200
    # Concurrent reads leave several connections in the pool, each of which will be dead.
    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(lambda _: server.client().get("/api/calls").status, range(12))) == {200}
    assert cluster.terminate_sessions(database.rsplit("/", 1)[1]) >= 2
    time.sleep(0.6)  # past the key cache's 0.5 s: the key is looked up in the database again
    after = client.post_json("/v1/events", {"records": [make_record("after")]})
    assert after.status == 200, after
    listed = client.get("/api/calls")
    assert listed.status == 200, listed
    assert {c["call_id"] for c in listed.json()["calls"]} == {"before", "after"}
    page = _page(server, "/calls")
    assert page.status == 200 and b"after" in page.body, page
    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(lambda _: server.client().get("/api/calls").status, range(12))) == {200}
    assert _stored(database) == (2, 2)
    assert "Traceback" not in server.log(), server.log()[-3000:]


@contextlib.contextmanager
def _steady_ingest(
    server: ServerProcess, spool: Path, *, max_retries: int, timeout_s: float
) -> Iterator[tuple[Transport, list[str]]]:
    """The core sender sending a record every 10 ms to `server` until the block ends; the list holds the
    call ids it was given. The caller flushes and shuts the sender down."""
    transport = Transport(
        TransportConfig(
            endpoint=server.url,
            api_key=server.key,
            batch_max_age_s=0.05,
            backoff_base_s=0.05,
            backoff_max_s=0.5,
            max_retries=max_retries,
            timeout_s=timeout_s,
            spool_dir=str(spool),
        )
    )
    sent: list[str] = []
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            call_id = f"steady-{len(sent)}"
            transport.submit(make_record(call_id))
            sent.append(call_id)
            time.sleep(0.01)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield transport, sent
    finally:
        stop.set()
        sender.join()


def test_postgresql_restarted_under_steady_ingest_loses_and_duplicates_nothing(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str, tmp_path: Path
) -> None:
    """PostgreSQL stopped for a few seconds while the core sender sends all along: meanwhile ingest
    answers 503 with Retry-After (never 2xx for a batch it did not commit), the API and the dashboard say
    the storage is unavailable (the key lookup before each of them answered 500), and the server stays up;
    once PostgreSQL is back the same process stores every record the sender had, each once."""
    server = server_factory(database)
    with _steady_ingest(server, tmp_path / "spool", max_retries=2, timeout_s=5.0) as (transport, sent):
        time.sleep(1.0)
        cluster.pause()
        time.sleep(0.6)  # past the key cache's 0.5 s
        client = server.client()
        refused = client.post_json("/v1/events", {"records": [make_record("while-down")]})
        assert refused.status == 503, refused
        assert refused.headers.get("retry-after") == "1", refused.headers
        assert "storage unavailable" in refused.json()["error"], refused
        # Anyone may knock, key or not: the driver's words (the database's address) stay in the log.
        stranger = client.request(
            "GET", "/api/calls", headers={"Authorization": "Bearer ll_not-a-key"}, key=None
        )
        assert stranger.status == 503 and f":{cluster.port}" not in stranger.body.decode(), stranger
        assert f"port {cluster.port}" not in stranger.body.decode(), stranger
        read = client.get("/api/calls")
        assert read.status == 503 and "storage unavailable" in read.json()["error"], read
        page = _page(server, "/")
        assert page.status == 503, page
        assert page.headers["content-type"].startswith("text/html"), page.headers
        assert b"Storage unavailable" in page.body and b"Traceback" not in page.body, page
        assert client.get("/health").status == 200
        time.sleep(1.0)
        assert server.alive()
        cluster.resume()
        time.sleep(1.0)
    assert transport.flush(15)
    deadline = time.monotonic() + 15
    while _stored(database)[0] < len(sent) and time.monotonic() < deadline:
        time.sleep(0.1)
    transport.shutdown(5)
    assert _stored(database) == (len(sent), len(sent)), (len(sent), transport.stats())
    assert transport.stats()["spool_pending"] == 0
    stats = server.client().get_json(
        f"/api/stats?start={time.time() - 600}&end={time.time() + 60}&bucket=3600"
    )
    assert sum(r["count"] for r in stats["rows"]) == len(sent)  # the rollups counted each call once too
    assert server.alive()
    said = server.log()
    assert "storage unavailable, answering 503 until it is back" in said and "Traceback" not in said, said


def test_an_export_asked_for_while_postgresql_is_down_is_a_503_not_a_download_cut_short(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str
) -> None:
    """With the key still cached (30 s by default) an export reached the store only once its 200 had
    gone out: the download ended at once, `litelens export` died with a traceback and a browser saved
    an empty file, as if there were no calls."""
    from server_helpers import cli

    server = server_factory(database, env={"LITELENS_KEY_CACHE_TTL": "60"})
    client = server.client()
    assert client.post_json("/v1/events", {"records": [make_record("kept")]}).status == 200
    assert client.get("/api/export").body.count(b"\n") == 1  # and the key is cached from here on
    assert _page(server, "/calls").status == 200
    cluster.pause()
    answer = server.client().get("/api/export")
    assert answer.status == 503 and "storage unavailable" in answer.json()["error"], answer
    download = _page(server, "/export?format=csv")
    assert download.status == 503 and b"Storage unavailable" in download.body, download
    done = cli("export", "--endpoint", server.url, "--api-key", server.key, "--since", "1h", timeout=30)
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr and "503" in done.stderr, done.stderr
    cluster.resume()
    assert server.client().get("/api/export").body.count(b"\n") == 1


def test_retention_while_postgresql_is_down_says_so_in_one_line_per_pass(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str
) -> None:
    """Each retention pass that found the database down logged a full traceback (psycopg's and the
    pool's), the same every pass for as long as the outage lasted, burying the one line that mattered."""
    server = server_factory(database, args=("--retention", "1d"), env={"LITELENS_RETENTION_EVERY": "1s"})
    assert server.client().post_json("/v1/events", {"records": [make_record("kept")]}).status == 200
    cluster.pause()
    try:
        deadline = time.monotonic() + 30
        while server.log().count("retention pass skipped") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        said = server.log()
    finally:
        cluster.resume()
    assert said.count("retention pass skipped") >= 2, said[-3000:]
    assert "storage unavailable" in said and "Traceback" not in said, said[-3000:]
    # Back once the database is: the next pass runs, the server answers as before.
    assert server.client().post_json("/v1/events", {"records": [make_record("after")]}).status == 200
    assert _stored(database) == (2, 2)


def test_serve_started_before_postgresql_waits_for_it_when_told_to(
    cluster: Any, database: str, tmp_path: Path
) -> None:
    """An orchestrator starts the collector and its PostgreSQL together: `serve` gave up at once with
    "Connection refused", so the collector lost that race and stayed down. With --db-wait it says it
    waits, migrates once the database answers, and serves."""
    server = ServerProcess(database, tmp_path, env={"LITELENS_DB_WAIT": "30s"})
    server.key = server.create_key()
    cluster.pause()
    started = threading.Thread(target=server.start)
    started.start()
    try:
        deadline = time.monotonic() + 15
        while "waiting up to 30 s" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.alive(), server.log()
        said = server.log()
        assert "is not answering (connection failed" in said and "Connection refused" in said, said
        cluster.resume()
        started.join(30)
        answer = server.client().post_json("/v1/events", {"records": [make_record("first")]})
        assert answer.status == 200, (answer, server.log())
        assert "the database answered after" in server.log() and "Traceback" not in server.log()
    finally:
        started.join(30)
        server.stop()
    assert _stored(database) == (1, 1)


def test_serve_waits_for_postgresql_only_as_long_as_told_and_not_for_a_refusal(
    cluster: Any, database: str, tmp_path: Path
) -> None:
    """The wait is bounded, ends in the one line that says what to check, and is only for a database
    that is not up yet: a missing database (or a wrong password) is not going to change by waiting."""
    from server_helpers import CLI, free_port

    def serve(url: str, wait: str) -> tuple[subprocess.CompletedProcess[str], float]:
        began = time.monotonic()
        done = subprocess.run(
            [*CLI, "serve", "--port", str(free_port()), "--db", url, "--db-wait", wait],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done, time.monotonic() - began

    missing = database.rsplit("/", 1)[0] + "/no_such_database"
    done, took = serve(missing, "30s")
    assert done.returncode == 2 and took < 15, (took, done)
    assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr, done.stderr
    cluster.pause()
    done, took = serve(database, "2s")
    assert done.returncode == 2 and 2 <= took < 15, (took, done)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "waiting up to 2 s" in lines[0], done.stderr
    assert "cannot open the database" in lines[1] and "(after waiting 2 s)" in lines[1], done.stderr
    assert "is PostgreSQL running there?" in lines[1] and "Traceback" not in done.stderr, done.stderr
    # Without a wait it fails at once, and says how to wait.
    done, took = serve(database, "0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done
    assert "set --db-wait (or LITELENS_DB_WAIT)" in done.stderr, done.stderr


class _Link:
    """A TCP path to PostgreSQL that can go silent: it then takes connections and never answers, as a
    network partition or a firewall that drops packets does (a stopped server refuses at once)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.silent = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.silent.is_set():
                continue  # held open, never read
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        for held in self._sockets:
            held.close()


def test_batches_written_together_fail_together_when_postgresql_is_unreachable(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str
) -> None:
    """Batches that arrive together share one write; when it failed they were written again one by one
    to find the batch at fault. With the database unreachable (a partition: connections time out) each
    of those waited out its own connect timeout in turn, so the last sender heard its 503 after several
    timeouts, long past its own. They now fail together; the writer keeps writing once the database is
    reachable again, and the log says the storage is unavailable instead of a traceback per request."""
    link = _Link(cluster.port)
    try:
        name = database.rsplit("/", 1)[1]
        server = server_factory(
            f"postgresql://postgres@127.0.0.1:{link.port}/{name}?connect_timeout=2",
            env={"LITELENS_KEY_CACHE_TTL": "60"},
        )
        assert server.client().post_json("/v1/events", {"records": [make_record("before")]}).status == 200
        link.silent.set()
        assert cluster.terminate_sessions(name) >= 1
        time.sleep(0.3)

        def send(i: int) -> tuple[Any, float]:
            began = time.monotonic()
            answer = server.client().post_json("/v1/events", {"records": [make_record(f"lost-{i}")]})
            return answer, time.monotonic() - began

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(send, range(4)))
        assert all(a.status == 503 and a.headers.get("retry-after") == "1" for a, _ in answers), answers
        assert max(took for _, took in answers) < 6, [took for _, took in answers]
        link.silent.clear()
        assert server.client().post_json("/v1/events", {"records": [make_record("after")]}).status == 200
        assert _stored(database) == (2, 2)
        said = server.log()
        assert "storage unavailable, answering 503 until it is back" in said, said[-3000:]
        assert "Traceback" not in said, said[-3000:]
    finally:
        link.close()


def test_a_pooled_connection_is_reused_in_a_process_with_many_files_open(database: str) -> None:
    """The check that an idle connection is still alive must hold for a server with over a thousand
    sockets open (select() refuses a descriptor past 1023): taken for dead, every connection would be
    replaced on every request."""
    import resource

    from litelens.server.store.postgres import PostgresStore

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    store = PostgresStore(database, pool_size=1)
    try:

        def backend() -> int:
            with store._read() as cur:
                cur.execute("SELECT pg_backend_pid()")
                return int(cur.fetchone()[0])

        first = backend()
        assert [backend() for _ in range(3)] == [first] * 3
    finally:
        store.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class _Relay:
    """A TCP path to PostgreSQL that can go silent without a word. `blackhole()` stops it forwarding
    anything, either way, on every connection it carries, and keeps both ends of each open, as a firewall
    that lost its state, a moved virtual IP or a dead host does (no RST, no FIN). This end's kernel still
    acknowledges what the collector sends, as a proxy in between (pgbouncer, a cloud SQL proxy) would:
    the collector's TCP sees nothing wrong. Connections made afterwards pass, as after a failover."""

    def __init__(self, port: int) -> None:
        self.target = port
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            silent = threading.Event()
            self._pairs.append((client, upstream, silent))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, silent), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, silent: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if silent.is_set():
                    return  # dropped, and nothing more is read: it waits in the kernel's buffers
                sink.sendall(data)
        if not silent.is_set():
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def blackhole(self) -> int:
        """Silence every connection open now; returns how many there are."""
        for _, _, silent in self._pairs:
            silent.set()
        return len(self._pairs)

    def close(self) -> None:
        self._listener.close()
        for client, upstream, _ in self._pairs:
            client.close()
            upstream.close()


class _SlowLink(_Relay):
    """A path to PostgreSQL that is slow one way (`rate` bytes a second at most, toward the database or
    toward the collector) but never silent, as a congested or distant link is: the side that sends
    waits for this one to take its bytes, a few kilobytes at a time."""

    def __init__(self, port: int, rate: int, *, toward_database: bool) -> None:
        self.rate = rate
        self.toward_database = toward_database
        super().__init__(port)

    def _pump(self, source: socket.socket, sink: socket.socket, silent: threading.Event) -> None:
        if (source.getsockname()[1] == self.port) != self.toward_database:
            _Relay._pump(source, sink, silent)
            return
        source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        with contextlib.suppress(OSError):
            while data := source.recv(8192):
                sink.sendall(data)
                time.sleep(len(data) / self.rate)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_an_answer_slower_to_cross_the_link_than_the_bound_is_read_to_its_end(
    cluster: Any, database: str
) -> None:
    """A big answer (an export, a chart's rows) that took longer than the bound to cross a slow link was
    given up with a 503 while its bytes were arriving all along: the session, writing to its client
    ('ClientWrite') or done and idle, was taken for one not working on the statement."""
    from litelens.server.store.postgres import PostgresStore

    link = _SlowLink(cluster.port, 500_000, toward_database=False)
    name = database.rsplit("/", 1)[1]
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{link.port}/{name}?tcp_user_timeout=1000", pool_size=1
    )
    try:
        began = time.monotonic()
        with store._read() as cur:
            cur.execute("SELECT repeat('x', 600000)")
            assert len(cur.fetchone()[0]) == 600_000
        assert time.monotonic() - began >= 2  # the answer took twice the bound and more
    finally:
        store.close()
        link.close()


def test_a_big_write_over_a_slow_uplink_is_stored_with_the_default_settings(
    cluster: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch sent over a slow uplink: the database reads the request as it comes ('ClientRead'),
    which the watchdog took for a session waiting on a lost client, so the write was given up, as a 503
    repeated for as long as the sender retried. Here litelens's default bound is 1 s, not 30 s, so that
    the write takes several bounds; the URL sets none, so the kernel's own `tcp_user_timeout` (which
    also ends a connection whose peer takes its bytes slowly) is not in play either."""
    from litelens.server.store import pgwatch
    from litelens.server.store.postgres import PostgresStore

    monkeypatch.setitem(pgwatch.TCP_DEFAULTS, "tcp_user_timeout", 1000)
    link = _SlowLink(cluster.port, 600_000, toward_database=True)
    name = database.rsplit("/", 1)[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{link.port}/{name}", pool_size=1)
    try:
        store.migrate()
        project = store.create_project("p")
        said = {"role": "user", "content": "x" * 4000}
        calls = [make_record(f"big-{i}", request={"messages": [said]}) for i in range(400)]
        began = time.monotonic()
        store.write(project, calls, [])
        assert time.monotonic() - began >= 2  # the request took twice the bound and more
        assert _stored(database) == (400, 400)
    finally:
        store.close()
        link.close()


def test_a_database_that_does_not_track_activity_runs_long_statements_to_their_end(database: str) -> None:
    """With `track_activities = off` PostgreSQL never shows a session as 'active' ('disabled' instead), so
    the watchdog found none working on its statement and gave up every one that ran past the bound, on a
    database that was fine. What it cannot see it now leaves alone while the database answers."""
    import psycopg

    from litelens.server.store.postgres import PostgresStore

    name = database.rsplit("/", 1)[1]
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET track_activities = off')
    store = PostgresStore(f"{database}?tcp_user_timeout=1000", pool_size=1)
    try:
        began = time.monotonic()
        with store._read() as cur:
            cur.execute("SHOW track_activities")
            assert cur.fetchone() == ("off",)
            cur.execute("SELECT pg_sleep(3), 'done'")
            assert cur.fetchone() == ("", "done")
        assert time.monotonic() - began >= 3
    finally:
        store.close()


def test_a_path_to_postgresql_gone_silent_costs_a_few_seconds_not_a_hung_collector(
    server_factory: Callable[..., ServerProcess], cluster: Any, database: str, tmp_path: Path
) -> None:
    """The path to PostgreSQL goes silent under steady ingest (a firewall dropped its state, a virtual IP
    moved): a query sent on a pooled connection waited for an answer that never came, for as long as the
    kernel saw nothing wrong (here, for ever), so the writer hung and with it ingest for every sender, and
    each API request that drew such a connection hung too. With `tcp_user_timeout=3000` in the URL a
    statement left unanswered for 3 s is taken for lost: the requests are answered within seconds (503
    while it is sorted out), connections made afterwards serve, and every record is stored once."""
    from server_helpers import Client

    relay = _Relay(cluster.port)
    transport: Transport | None = None
    try:
        name = database.rsplit("/", 1)[1]
        server = server_factory(f"postgresql://postgres@127.0.0.1:{relay.port}/{name}?tcp_user_timeout=3000")
        with _steady_ingest(server, tmp_path / "spool", max_retries=50, timeout_s=30.0) as (transport, sent):
            time.sleep(1.0)
            # Concurrent reads leave several connections in the pool, each of which will go silent.
            with ThreadPoolExecutor(4) as pool:
                assert set(pool.map(lambda _: server.client().get("/api/calls").status, range(8))) == {200}
            assert relay.blackhole() >= 2

            def timed(request: Callable[[Client], Any]) -> tuple[Any, float]:
                began = time.monotonic()
                answer = request(Client(server.url, server.key, timeout=60))
                return answer, time.monotonic() - began

            with ThreadPoolExecutor(2) as pool:
                ingest = pool.submit(
                    timed, lambda c: c.post_json("/v1/events", {"records": [make_record("during")]})
                )
                read = pool.submit(timed, lambda c: c.get("/api/calls"))
                answers = [ingest.result(), read.result()]
            for answer, took in answers:
                assert took < 20, answers
                assert answer.status in (200, 503), answers
                if answer.status == 503:
                    assert answer.headers.get("retry-after") == "1", answer.headers
                    assert "storage unavailable" in answer.json()["error"], answer
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                after = server.client().post_json("/v1/events", {"records": [make_record("after")]})
                if after.status == 200:
                    break
                time.sleep(0.2)
            assert after.status == 200, after
            if answers[0][0].status != 200:  # as a sender does with a 503
                again = server.client().post_json("/v1/events", {"records": [make_record("during")]})
                assert again.status == 200, again
            assert server.client().get("/api/calls").status == 200
            time.sleep(1.0)
        assert transport.flush(30), transport.stats()
        expected = len(sent) + 2
        deadline = time.monotonic() + 15
        while _stored(database)[0] < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _stored(database) == (expected, expected), (expected, transport.stats())
        stats = server.client().get_json(
            f"/api/stats?start={time.time() - 600}&end={time.time() + 60}&bucket=3600"
        )
        assert sum(r["count"] for r in stats["rows"]) == expected  # the rollups counted each call once too
        said = server.log()
        assert "Traceback" not in said, said[-3000:]
    finally:
        if transport is not None:
            transport.shutdown(5)
        relay.close()


def _silenced_mid_statement(
    relay: Any, opened: Callable[[], Any], wait_s: float
) -> tuple[list[BaseException | None], float]:
    """Open a cursor with `opened` (a store's `_read` or `_write`), make the relay go silent, and run a
    statement, on a thread waited for `wait_s`: what it raised (None if nothing; empty if it still hangs)
    and how long it took."""
    outcome: list[BaseException | None] = []

    def cut_off() -> None:
        try:
            with opened() as cur:
                relay.blackhole()
                cur.execute("SELECT 1")
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    began = time.monotonic()
    stopped = threading.Thread(target=cut_off, daemon=True)
    stopped.start()
    stopped.join(wait_s)
    return outcome, time.monotonic() - began


def test_a_write_stopped_by_a_silent_path_leaves_no_write_lock_behind(cluster: Any, database: str) -> None:
    """A write transaction holds the write lock. Its session, stopped mid-way by a path gone silent, kept
    it (the database had not noticed, and behind a proxy it never does), so every later write waited for
    it, however healthy the new connections were: ingest stayed down after the path was back."""
    from litelens.server.store.base import StoreUnavailable
    from litelens.server.store.postgres import PostgresStore

    relay = _Relay(cluster.port)
    name = database.rsplit("/", 1)[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{relay.port}/{name}?tcp_user_timeout=2000")
    try:
        store.migrate()
        project = store.create_project("p")
        # The write lock is held from the start of `_write`.
        outcome, took = _silenced_mid_statement(relay, store._write, wait_s=30)
        assert outcome and isinstance(outcome[0], StoreUnavailable), outcome
        assert str(outcome[0]) == "no answer from the database for 2 s", outcome
        assert took < 10
        written: list[bool] = []
        after = threading.Thread(
            target=lambda: written.append(store.write(project, [make_record("next")], []) is None),
            daemon=True,
        )
        after.start()
        after.join(30)
        assert written, "the next write still waits for the write lock"
        assert _stored(database) == (1, 1)
    finally:
        store.close()
        relay.close()


def test_connections_to_postgresql_keep_alive_as_the_url_says_or_by_default(database: str) -> None:
    """libpq left TCP's timings as the system has them: a first keepalive probe after two hours of
    silence, and data unacknowledged for 15 minutes before the kernel gives up, so a path gone silent hung
    whatever waited on it. litelens asks for a dead path to be found in about 30 s, unless the URL says
    otherwise: a DBA's own settings win."""
    from litelens.server.store.postgres import PostgresStore

    def tcp(url: str) -> tuple[int, ...]:
        store = PostgresStore(url, pool_size=1)
        try:
            with store._read() as cur:
                sock = socket.socket(fileno=os.dup(cur.connection.pgconn.socket))
                try:
                    return (
                        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
                    )
                finally:
                    sock.close()
        finally:
            store.close()

    # litelens's tcp_user_timeout bounds its watchdog, not the kernel, which would also end a connection
    # whose peer takes its bytes slowly (0: the kernel's default).
    assert tcp(database) == (1, 10, 5, 4, 0)
    assert tcp(f"{database}?keepalives_idle=120&tcp_user_timeout=7000") == (1, 120, 5, 4, 7000)
    host, port = database.split("@", 1)[1].split("/", 1)[0].split(":")
    name = database.rsplit("/", 1)[1]
    assert tcp(f"host={host} port={port} user=postgres dbname={name} keepalives=0")[0] == 0


def test_a_statement_postgresql_is_still_running_is_not_taken_for_a_silent_path(database: str) -> None:
    """The bound on waiting for an answer is about silence, not a time limit on statements: a query the
    database is still working on (a migration, a chart over months of calls), or a write waiting for
    another collector's, runs to its end however long past the bound it takes."""
    from litelens.server.store.postgres import PostgresStore

    store = PostgresStore(f"{database}?tcp_user_timeout=1000", pool_size=2)
    try:
        began = time.monotonic()
        with store._read() as cur:
            cur.execute("SELECT pg_sleep(3.5), 'done'")
            assert cur.fetchone() == ("", "done")
        assert time.monotonic() - began >= 3.5
        with store._write() as cur:  # holds the write lock while another write waits for it
            waited: list[float] = []

            def write() -> None:
                started = time.monotonic()
                with store._write() as other:
                    other.execute("SELECT 1")
                waited.append(time.monotonic() - started)

            other = threading.Thread(target=write, daemon=True)
            other.start()
            cur.execute("SELECT pg_sleep(3)")
        other.join(30)
        assert waited and waited[0] >= 2.5, waited
    finally:
        store.close()


def test_a_database_refusing_the_check_connection_is_not_taken_for_unreachable(
    cluster: Any, database: str
) -> None:
    """A database with every connection slot taken ("too many connections", a pooler's limit) refused the
    watchdog's check connection, which was read as "cannot be reached": every statement that had run past
    the bound was given up with a 503, on a database that was up and working on them."""
    from litelens.server.store.postgres import PostgresStore

    host = database.split("@", 1)[1]
    store = PostgresStore(f"postgresql://{_capped_role(database)}@{host}?tcp_user_timeout=1000", pool_size=1)
    try:
        began = time.monotonic()
        with store._read() as cur:
            cur.execute("SELECT pg_sleep(3.5), 'done'")
            assert cur.fetchone() == ("", "done")
        assert time.monotonic() - began >= 3.5
    finally:
        store.close()


def _capped_role(database: str) -> str:
    """A role allowed one connection: the store's own; any other (the watchdog's check) the database
    refuses ("too many connections for role", 53300), as it does with every slot taken."""
    import psycopg

    role = f"capped_{database.rsplit('/', 1)[1]}"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
    return role


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    """The server's warnings logged while the block runs (a handler of its own: a `serve` run in this
    process stops litelens's loggers propagating to pytest's)."""
    said: list[str] = []

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    handler = Said(logging.WARNING)
    logger = logging.getLogger("litelens.server")
    logger.addHandler(handler)
    try:
        yield said
    finally:
        logger.removeHandler(handler)


def test_a_silent_path_is_given_up_even_while_postgresql_refuses_every_check(
    cluster: Any, database: str
) -> None:
    """The path goes silent while the database refuses the watchdog's check connection (here the role's
    one slot is held by the stopped session itself, which the database has not seen go; a pooler's limit
    or a changed password do the same): each refusal put the check off again, so the statement waited
    for ever, and every request behind it. A few refusals in a row now count as a database that cannot be
    reached: the statement fails, as in any outage, and the log says why."""
    from litelens.server.store.base import StoreUnavailable
    from litelens.server.store.postgres import PostgresStore

    relay = _Relay(cluster.port)
    name = database.rsplit("/", 1)[1]
    role = _capped_role(database)
    store = PostgresStore(
        f"postgresql://{role}@127.0.0.1:{relay.port}/{name}?tcp_user_timeout=1000", pool_size=1
    )
    try:
        with _warnings() as said:
            outcome, took = _silenced_mid_statement(relay, store._read, wait_s=20)
        assert outcome and isinstance(outcome[0], StoreUnavailable), (outcome, said)
        assert str(outcome[0]).startswith("no answer from the database for"), outcome
        assert took < 10, took
        assert [line for line in said if "refused the check" in line][:1] == said[:1], said
        assert sum("giving up the connection" in line for line in said) == 1, said
        assert "refused 4 checks in a row" in said[-1], said
    finally:
        store.close()
        relay.close()


def test_a_full_pool_on_a_silent_path_logs_one_warning_then_a_count(cluster: Any, database: str) -> None:
    """Each connection the watchdog gave up had a warning of its own: a path gone silent under a full
    pool, and again under the retries that followed, wrote a line per connection, burying the first.
    One line now for the outage, and once it is over one that counts the rest."""
    from litelens.server.store.base import StoreUnavailable
    from litelens.server.store.postgres import PostgresStore

    relay = _Relay(cluster.port)
    name = database.rsplit("/", 1)[1]
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{relay.port}/{name}?tcp_user_timeout=2000", pool_size=3
    )
    silenced = threading.Barrier(3, action=relay.blackhole)  # once all three hold a connection

    def statement() -> BaseException | None:
        try:
            with store._read() as cur:
                silenced.wait(10)
                cur.execute("SELECT 1")
        except BaseException as exc:
            return exc
        return None

    try:
        with _warnings() as said:
            for _ in range(2):  # the outage, then every sender's retry into it
                silenced.reset()
                with ThreadPoolExecutor(3) as pool:
                    failed = list(pool.map(lambda _: statement(), range(3)))
                assert all(isinstance(exc, StoreUnavailable) for exc in failed), failed
            assert sum("giving up the connection" in line for line in said) == 1, said
            deadline = time.monotonic() + 15
            while not any("more connection" in line for line in said) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert len(said) == 2 and "5 more connection(s) given up" in said[1], said
        with store._read() as cur:  # the path is back for connections made since
            cur.execute("SELECT 1")
    finally:
        store.close()
        relay.close()


class _Pooler(_Relay):
    """A relay that, like pgbouncer, gives its clients a process id of its own (in BackendKeyData), not
    the id of the server session that runs their statements."""

    FAKE_PID = 4_000_000  # above Linux's pid_max: no session has it

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            silent = threading.Event()
            self._pairs.append((client, upstream, silent))
            threading.Thread(target=self._pump, args=(client, upstream, silent), daemon=True).start()
            threading.Thread(target=self._rewrite, args=(upstream, client), daemon=True).start()

    def _rewrite(self, source: socket.socket, sink: socket.socket) -> None:
        pending = b""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                pending += data
                while len(pending) >= 5:  # whole messages only: type byte, then length
                    size = 1 + int.from_bytes(pending[1:5], "big")
                    if len(pending) < size:
                        break
                    message, pending = pending[:size], pending[size:]
                    if message[:1] == b"K":
                        message = message[:5] + self.FAKE_PID.to_bytes(4, "big") + message[9:]
                    sink.sendall(message)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_a_long_statement_behind_a_pooler_runs_to_its_end(cluster: Any, database: str) -> None:
    """Behind pgbouncer the process id the driver is given is the pooler's, so the watchdog never found
    the session working and gave up every statement that ran past the bound: each chart over a long
    range, and any migration longer than 30 s, was answered 503 on a database that was fine."""
    from litelens.server.store.postgres import PostgresStore

    pooler = _Pooler(cluster.port)
    name = database.rsplit("/", 1)[1]
    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{pooler.port}/{name}?sslmode=disable&gssencmode=disable"
        "&tcp_user_timeout=1000",
        pool_size=1,
    )
    try:
        began = time.monotonic()
        with store._read() as cur:
            assert cur.connection.info.backend_pid == _Pooler.FAKE_PID  # as behind pgbouncer
            cur.execute("SELECT pg_sleep(3.5), 'done'")
            assert cur.fetchone() == ("", "done")
        assert time.monotonic() - began >= 3.5
    finally:
        store.close()
        pooler.close()


def test_a_service_files_tcp_user_timeout_is_the_bound_on_waiting_for_an_answer(
    cluster: Any, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL that names a service leaves the TCP settings to the service file, yet the watchdog acted at
    litelens's 30 s whatever the DBA set there: a path gone silent still cost 30 s with 2 s in the file,
    and `tcp_user_timeout=0` (off) did not turn it off."""
    from litelens.server.store.base import StoreUnavailable
    from litelens.server.store.postgres import PostgresStore

    relay = _Relay(cluster.port)
    name = database.rsplit("/", 1)[1]
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[silent]\nhost=127.0.0.1\nport={relay.port}\nuser=postgres\ndbname={name}\ntcp_user_timeout=2000\n"
        f"[off]\nhost=127.0.0.1\nport={cluster.port}\nuser=postgres\ndbname={name}\ntcp_user_timeout=0\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    store = PostgresStore("postgresql://?service=silent", pool_size=1)
    off = PostgresStore("postgresql://?service=off", pool_size=1)
    try:
        outcome, took = _silenced_mid_statement(relay, store._read, wait_s=15)
        assert outcome and isinstance(outcome[0], StoreUnavailable), outcome
        assert str(outcome[0]) == "no answer from the database for 2 s", outcome
        assert took < 10
        # Off in the service file: a write transaction's own idle limit (twice the bound) is off too.
        with off._write() as cur:
            cur.execute("SHOW idle_in_transaction_session_timeout")
            assert cur.fetchone() == ("0",)
    finally:
        store.close()
        off.close()
        relay.close()
