"""Shared fixtures: the fake provider, a receiver standing in for the litelens server, a callback wired
between them through real LiteLLM, a throwaway PostgreSQL, and the real collector (`litelens serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import itertools
import os
import re
import shutil
import subprocess
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from litelens.testing import FakeProvider, Receiver
from server_helpers import ServerProcess
from ui_helpers import Shots, Visit

if TYPE_CHECKING:
    from litelens.callback import Callback

REQUIRE_SERVICES = os.environ.get("LITELENS_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    """In CI a test that needs a real service must run: its skip is turned into a failure."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and item.get_closest_marker("service") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"service test skipped in CI (LITELENS_REQUIRE_SERVICES=1): {reason}"


@pytest.fixture(autouse=True)
def _drain_litellm_async_logging() -> Iterator[None]:
    """Run what LiteLLM's async logging queue still holds at the end of the test that queued it.

    LiteLLM runs async success hooks later, from a queue bound to the caller's event loop. When a test's
    `asyncio.run()` ends first, the queue keeps them, and LiteLLM carries them onto the next event loop
    it sees: the next test's, where they would reach that test's callbacks as extra records.
    """
    yield
    # Events cancelled before they started (litelens.pending) belong to this test too: a later test's
    # flush would run them.
    pending = sys.modules.get("litelens.pending")
    for coroutine, _context in pending._take_cancelled() if pending is not None else ():
        coroutine.close()
    module = sys.modules.get("litellm.litellm_core_utils.logging_worker")
    worker = getattr(module, "GLOBAL_LOGGING_WORKER", None)
    queue = getattr(worker, "_queue", None)
    if worker is None or queue is None or queue.empty():
        return
    # A test that keeps an event loop running here (Playwright's sync API) made no LiteLLM calls.
    # `clear_queue()` runs each queued hook on this new loop. (`flush()` would do it on LiteLLM 1.110,
    # whose flush moves the queue onto the running loop first; 1.80's only joins the queue, which no
    # worker of this loop ever takes from, and so waited out its whole timeout after every async test.)
    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(worker.clear_queue(), timeout=10))


@pytest.fixture(autouse=True)
def _stop_senders_left_running() -> Iterator[None]:
    """Stop the transports and sink queues a test started and left running.

    A test that fails before its `shutdown()` (or never calls it) leaves a sender retrying a receiver
    that is gone; its "cannot reach server" lands in a later test's caplog, whose said-once check then
    counts two (a leaked transport's batch, sent after its receiver stopped, did exactly that). Stopped
    here, what a test started ends with it, failed or not; a passing test leaves none, so this costs
    nothing when all is well.
    """
    from litelens import transport, worker

    before = {id(s) for s in (*transport._live, *worker._live)}
    yield
    left = [
        s
        for s in (*transport._live, *worker._live)
        if id(s) not in before and s._thread is not None and s._thread.is_alive()
    ]
    for sender in left:
        with contextlib.suppress(Exception):
            sender.shutdown(1.0)


# Names of tests that may leave a sync stream unfinished in a reference cycle.
_ABANDONS_STREAMS = re.compile(r"stream|abandon|dropped|cancel|cut_short", re.I)


@pytest.fixture(autouse=True)
def _collect_abandoned_streams(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect the garbage of a test that may leave a stream unfinished, before the next test runs.

    An openai `Stream` left in a reference cycle is closed by the garbage collector, wherever it runs.
    When that was inside httpcore's connection pool, while a later test's request held the pool's lock,
    closing the stream waited for that same lock: the 1.80 pass hung in CI (py-spy showed
    `Stream.__stream__` -> `PoolByteStream.close` under `ConnectionPool._assign_requests_to_connections`).
    Collected here, the stream is closed while no request is under way.
    """
    yield
    if _ABANDONS_STREAMS.search(request.node.name):
        gc.collect()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class RegisteredCallbacks:
    """litelens.Callbacks registered with LiteLLM for one test; `close()` shuts them down and removes them."""

    def __init__(self) -> None:
        self.made: list[Callback] = []

    def add(self, **kwargs: Any) -> Callback:
        import litellm

        from litelens.callback import Callback

        callback = Callback(**kwargs)
        litellm.callbacks.append(callback)
        self.made.append(callback)
        return callback

    def close(self) -> None:
        from litelens.callback import unregister

        for callback in self.made:
            callback.shutdown(timeout=5)
            unregister(callback)


@pytest.fixture
def make_callback(receiver: Receiver, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: a litelens.Callback registered with LiteLLM, sending to `receiver`; removed afterwards."""
    registered = RegisteredCallbacks()

    def make(**kwargs: Any) -> Callback:
        kwargs.setdefault("endpoint", receiver.url)
        kwargs.setdefault("spool_dir", str(tmp_path / "spool"))
        return registered.add(**kwargs)

    yield make
    registered.close()


@pytest.fixture
def make_transport(receiver: Receiver, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build a Transport aimed at the receiver with fast retries; extra keyword arguments override."""
    from litelens.transport import Transport, TransportConfig

    made: list[Transport] = []

    def make(prepare: Callable[[dict], dict | None] | None = None, **overrides: Any) -> Transport:
        settings: dict[str, Any] = {
            "endpoint": receiver.url,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.2,
            "max_retries": 2,
            "timeout_s": 2.0,
        }
        settings.update(overrides)
        transport = Transport(TransportConfig(**settings), prepare)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.shutdown(2.0)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (skips when no PostgreSQL binaries are installed)."""
    from litelens.testing.postgres import TempPostgres, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip(
            "no PostgreSQL binaries (initdb) found; apt-get install postgresql or set LITELENS_PG_BIN"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed; pip install 'litelens[postgres]'")
    with TempPostgres() as pg:
        yield pg


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.service),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database in the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/litelens.db"
    pg = request.getfixturevalue("postgres_server")
    return str(pg.create_database())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/litelens.db"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: `make(db_url, port=None, env=None, args=(), key=True, tls=None)` starts `litelens serve`; a default
    project key (made with `litelens keys create`) is on `.key`. Every server is stopped afterwards."""
    made: list[ServerProcess] = []

    def make(
        db_url: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        key: bool = True,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> ServerProcess:
        server = ServerProcess(db_url, tmp_path, port=port, env=env, args=args, tls=tls)
        made.append(server)
        if key:
            server.key = server.create_key("default")
        return server.start()

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess], db_url: str) -> ServerProcess:
    """The real collector on a free loopback port, against SQLite and (service-marked) PostgreSQL."""
    return server_factory(db_url)


@pytest.fixture
def sqlite_server(server_factory: Callable[..., ServerProcess], sqlite_url: str) -> ServerProcess:
    """The real collector on SQLite only, for tests about the HTTP layer rather than the database."""
    return server_factory(sqlite_url)


class Collector:
    """A real `litelens serve` shared by a module's tests, each on a project of its own.

    Every table of the store is keyed by project, so a test on a new project sees an empty collector, as
    on a server started for it, without paying a server's start and stop (about 2 s) each time. Its key
    is made in the server's database through the same `create_key` that `litelens keys create` calls,
    minus that command's interpreter start.
    """

    def __init__(self, db_url: str, folder: Path) -> None:
        from litelens.server.store.base import open_store

        self.server = ServerProcess(db_url, folder).start()  # the server migrates the database
        self.store = open_store(db_url)

    def new_project(self) -> ServerProcess:
        from litelens.server.auth import create_key

        own = copy.copy(self.server)
        own.key = create_key(self.store, f"test-project-{next(_projects)}")
        return own

    def close(self) -> None:
        self.store.close()
        self.server.stop()


_projects = itertools.count()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One real collector on SQLite for a test module; tests reach it through `project_server`."""
    folder = tmp_path_factory.mktemp("collector")
    shared = Collector(f"sqlite:///{folder}/litelens.db", folder)
    yield shared
    shared.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.service),
    ],
)
def db_collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    """One real collector per test module on SQLite, and one on the session's PostgreSQL (service-marked);
    tests reach them through `db_project_server`."""
    folder = tmp_path_factory.mktemp("collector")
    if request.param == "sqlite":
        url = f"sqlite:///{folder}/litelens.db"
    else:
        url = str(request.getfixturevalue("postgres_server").create_database())
    shared = Collector(url, folder)
    yield shared
    shared.close()


@pytest.fixture
def project_server(collector: Collector) -> ServerProcess:
    """The module's collector, with the key of a project made for this test: for tests about what a
    project sees through the API and the pages, not about keys, the database file, the server's
    settings, log or lifetime (those start a server of their own)."""
    return collector.new_project()


@pytest.fixture
def db_project_server(db_collector: Collector) -> ServerProcess:
    """`project_server` on SQLite and on PostgreSQL: in place of `server` for the same kind of test."""
    return db_collector.new_project()


@pytest.fixture
def callback_to(tmp_path: Path) -> Iterator[Callable[..., Callback]]:
    """Factory: a litelens.Callback registered with LiteLLM and sending to a real server."""
    registered = RegisteredCallbacks()

    def make(server: ServerProcess, **kwargs: Any) -> Callback:
        kwargs.setdefault("spool_dir", str(tmp_path / f"spool-{len(registered.made)}"))
        return registered.add(endpoint=server.url, api_key=server.key, batch_max_age_s=0.05, **kwargs)

    yield make
    registered.close()


# --------------------------------------------------------------------------------------------------
# The dashboard in a browser (tests/test_ui*.py)

TEST_OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], str]:
    """README's first command, `bash scripts/demo.sh`, run once for the session (it takes about a minute):
    the docs test of README.md checks it ran, tests/test_demo.py checks what it stored. The one
    argument added, `--db`, is one the script passes on to `litelens demo`, so the database can be read
    afterwards. (stdin is not a terminal, so the demo ends after its 200 calls instead of staying up.)"""
    db = f"sqlite:///{tmp_path_factory.mktemp('readme-demo') / 'demo.db'}"
    out = subprocess.run(
        ["bash", "scripts/demo.sh", "--db", db],
        cwd=Path(__file__).resolve().parent.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        timeout=600,
        check=False,
    )
    return out, db


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium for a test module (skips where /usr/bin/chromium is missing; CI installs it).

    Per module, not per session: while Playwright's sync API is up, an event loop runs in the main thread
    and any later test's `asyncio.run()` fails.
    """
    from litelens.testing.browser import have_chromium, launch

    if not have_chromium():
        pytest.skip("no Chromium at /usr/bin/chromium; apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """The test's own output folder (git-ignored), emptied first so it holds this run's images only."""
    folder = TEST_OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Shots(folder)


@pytest.fixture
def visit(browser: Any) -> Iterator[Callable[..., Visit]]:
    """Factory: `visit(server)` opens a browser context signed in with the server's key (`key=None`: not
    signed in); closed afterwards, and a script error on any of its pages fails the test."""
    made: list[Visit] = []

    def make(server: ServerProcess, key: str | None = "") -> Visit:
        v = Visit(browser, server, server.key if key == "" else key)
        made.append(v)
        return v

    yield make
    for v in made:
        assert v.errors == [], f"script errors on the page: {v.errors}"
        v.context.close()
