"""`litelens demo`: the whole product on one machine, in about a minute.

It starts a real `litelens serve` on the embedded default (SQLite), the fake OpenAI-compatible provider on
loopback, and drives a mixed workload (`workload.py`) through real LiteLLM with both layers on: the core
callback sends every call to `/v1/events`, and the OpenTelemetry layer sends spans (the application's
agent runs and tools, with the LLM calls inside) to `/v1/traces`. The server stores each call once. The
summary is read back from the server's query API, and the dashboard URL is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from litelens.demo import report
from litelens.demo.workload import Workload

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def run_demo(
    calls: int = 200, seed: int = 7, keep_running: bool = False, db: str | None = None, port: int = 0
) -> int:
    import litellm

    import litelens
    from litelens.testing import FakeProvider

    if calls < 1:
        print("litelens demo: --calls must be at least 1", file=sys.stderr)
        return 2
    litellm.suppress_debug_info = True  # its "Give Feedback" banner on every provider error
    workdir = Path(tempfile.mkdtemp(prefix="litelens-demo-"))
    db = db or f"sqlite:///{workdir / 'demo.db'}"
    server = _Server(db, port or _free_port(), workdir / "server.log")
    try:
        server.start()
        with FakeProvider() as provider:
            print(f"litelens demo: {calls} LiteLLM calls to a fake provider at {provider.url}")
            print(f"  server    {server.url} (storage {db})")
            callback = litelens.init(endpoint=server.url, spool_dir=str(workdir / "spool"))
            tracing = _start_tracing(server.url)
            print(f"  layers    core callback -> /v1/events; {tracing.describe()}")
            started = time.time()
            workload = Workload(litellm, provider.url, seed, tracing.tracer, progress=_progress_bar(calls))
            workload.run(calls)
            callback.flush(timeout=30)
            tracing.flush()
            stored = report.wait_for_calls(server.url, started, calls)
            elapsed = time.time() - started
            print()
            print(report.table(server.url, started))
            print()
            print(
                f"{stored} calls stored for {calls} made in {elapsed:.1f}s "
                f"({workload.runs} agent runs as sessions and traces)"
            )
            # The last hour in one-minute buckets: the range in which a demo's few minutes show as a curve.
            print(f"dashboard: {server.url}/?range=1h")
            if not keep_running:
                # Outside a terminal scripts/demo.sh does not keep the server up: the link above is dead
                # by the time anyone opens it, unless this says why and how to keep it.
                gone = ", and its temporary data is deleted" if db.startswith(f"sqlite:///{workdir}") else ""
                print(
                    f"The server stops with the demo{gone}: `litelens demo --keep-running` keeps it up"
                    " to browse the dashboard (scripts/demo.sh does so when run in a terminal)."
                )
            if stored != calls:
                print(f"litelens demo: expected {calls} calls on the server, found {stored}", file=sys.stderr)
                return 1
            if keep_running:
                print("The server keeps running, with a call every ~2 s so the charts move; Ctrl-C stops it.")
                workload.progress = lambda done: None
                with _ctrl_c_sets() as stop:
                    workload.trickle(keep_going=lambda: server.running() and not stop.is_set())
                print(f"\n{workload.made - calls} more calls made while the server ran")
            litelens.shutdown(timeout=5)
            tracing.shutdown()
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
        if not keep_running and db.startswith(f"sqlite:///{workdir}"):
            shutil.rmtree(workdir, ignore_errors=True)
        elif db.startswith(f"sqlite:///{workdir}"):
            print(f"data kept in {workdir}; browse it again with: litelens serve --no-auth --db {db}")


class _Server:
    """`litelens serve --no-auth` on loopback, as a child process (the demo runs no auth: loopback only)."""

    def __init__(self, db: str, port: int, log_path: Path) -> None:
        self.db, self.port, self.log_path = db, port, log_path
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"litelens serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"litelens serve did not answer on {self.url} within {timeout:.0f}s")

    def _spawn(self, log: Any) -> None:
        command = [sys.executable, "-m", "litelens.cli", "serve", "--no-auth", "--db", self.db]
        command += ["--port", str(self.port), "--log-level", "warning"]
        # Its own session: Ctrl-C in the terminal reaches the demo, which flushes, then stops the server.
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Tracing:
    """The OpenTelemetry layer, when its extra is installed: spans go to the same server over OTLP."""

    def __init__(
        self, tracer: Any = None, provider: Any = None, instrumentor: Any = None, why: str = ""
    ) -> None:
        self.tracer, self.provider, self.instrumentor, self.why = tracer, provider, instrumentor, why

    def describe(self) -> str:
        return "OpenTelemetry layer -> /v1/traces" if self.tracer else f"OpenTelemetry layer off ({self.why})"

    def flush(self) -> None:
        if self.provider is not None:
            self.provider.force_flush(30_000)

    def shutdown(self) -> None:
        if self.instrumentor is not None:
            self.instrumentor.uninstrument()
        if self.provider is not None:
            self.provider.shutdown()


def _start_tracing(server_url: str) -> _Tracing:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from litelens.otel import LiteLLMInstrumentor
    except ImportError as exc:
        return _Tracing(
            why=f"pip install 'litelens[otel]' opentelemetry-exporter-otlp-proto-http: {exc.name}"
        )
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-assistant"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{server_url}/v1/traces")))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    return _Tracing(provider.get_tracer("shop-assistant"), provider, instrumentor)


@contextlib.contextmanager
def _ctrl_c_sets() -> Iterator[threading.Event]:
    """While inside, Ctrl-C sets the event instead of raising, so the call in flight ends whole."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_bar(total: int, stream: TextIO | None = None) -> Callable[[int], None]:
    """A bar redrawn in place in a terminal; elsewhere (a CI log, a pipe) one plain line per quarter,
    because carriage returns there pile every redraw onto one long line."""
    out = stream or sys.stderr
    live = out.isatty()
    marks = {max(1, round(total * q)) for q in (0.25, 0.5, 0.75)} | {total}

    def show(done: int) -> None:
        if live and (done == total or done % 5 == 0):
            width = 30
            filled = int(width * done / max(total, 1))
            out.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} calls")
            if done == total:
                out.write("\n")
            out.flush()
        elif not live and done in marks:
            out.write(f"  {done}/{total} calls made\n")
            out.flush()

    return show


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
