"""The real collector for the tests: `litelens serve` as a child process on a free loopback port, keys made
with `litelens keys create` against the same database, and a small keep-alive HTTP client for it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "litelens.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `litelens ARGS...` and return what it did (never raises on a non-zero exit)."""
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class Client:
    """A keep-alive HTTP/1.1 client for one server (reconnects when the server closed the connection)."""

    def __init__(
        self, url: str, key: str | None = None, timeout: float = 30, cafile: Path | None = None
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.context = ssl.create_default_context(cafile=str(cafile)) if parts.scheme == "https" else None
        self.key = key
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        key: str | bool | None = True,
    ) -> Response:
        """`key=True` uses the client's key, a string another key, None/False no Authorization header."""
        sent = dict(headers or {})
        use = self.key if key is True else key
        if use:
            sent.setdefault("Authorization", f"Bearer {use}")
        for attempt in (0, 1):
            if self._conn is None and self.context is not None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            elif self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=sent)
                answer = self._conn.getresponse()
                data = answer.read()
            except (ConnectionError, http.client.BadStatusLine, http.client.CannotSendRequest):
                # The server may close an idle keep-alive connection, or one it answered with 413
                # before reading the body; one fresh connection is enough to tell.
                self.close()
                if attempt:
                    raise
                continue
            if answer.getheader("connection", "").lower() == "close":
                self.close()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        raise AssertionError("unreachable")

    def get(self, path: str, key: str | bool | None = True) -> Response:
        return self.request("GET", path, key=key)

    def get_json(self, path: str, key: str | bool | None = True) -> Any:
        answer = self.get(path, key=key)
        assert answer.status == 200, (path, answer)
        return answer.json()

    def post_json(self, path: str, document: Any, key: str | bool | None = True) -> Response:
        return self.request(
            "POST",
            path,
            json.dumps(document).encode(),
            {"Content-Type": "application/json"},
            key=key,
        )


class ServerProcess:
    """`litelens serve` on loopback. `start()` waits for /health; `stop()` sends SIGTERM and waits."""

    def __init__(
        self,
        db_url: str,
        log_dir: Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, its key, the CA that signed it): serve HTTPS with them."""
        self.db_url = db_url
        self.tls = tls
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = log_dir / f"server-{self.port}-{time.monotonic_ns()}.log"
        self.env = {"LITELENS_KEY_CACHE_TTL": "0.5", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, key or self.key, cafile=self.tls[2] if self.tls else None)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *CLI,
                    "serve",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--db",
                    self.db_url,
                    "--log-level",
                    "warning",
                    *(
                        ("--ssl-certfile", str(self.tls[0]), "--ssl-keyfile", str(self.tls[1]))
                        if self.tls
                        else ()
                    ),
                    *self.args,
                ],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"litelens serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
                )
            with contextlib.suppress(OSError):
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.tls[2]))
                    conn = http.client.HTTPSConnection(self.host, self.port, timeout=2, context=context)
                else:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                try:
                    conn.request("GET", "/health")
                    if conn.getresponse().status == 200:
                        return self
                finally:
                    conn.close()
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"litelens serve did not answer /health within {timeout}s:\n{self.log()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then wait; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                return None
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def create_key(self, project: str = "default") -> str:
        done = cli("keys", "create", "--project", project, "--db", self.db_url)
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip().splitlines()[-1]
        assert key.startswith("ll_"), done.stdout
        return key


def make_record(call_id: str, start: float | None = None, **over: Any) -> dict[str, Any]:
    """A small valid `litelens.call/1` record, as the core layer would send it."""
    start = time.time() if start is None else start
    record: dict[str, Any] = {
        "schema": "litelens.call/1",
        "call_id": call_id,
        "start_time": start,
        "end_time": start + 0.25,
        "call_type": "chat",
        "stream": False,
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "status": "ok",
        "usage": {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
        "tags": [],
        "metadata": {},
    }
    record.update(over)
    return record


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}


def otlp_json_span(
    trace_id: str,
    span_id: str,
    name: str,
    attributes: Mapping[str, Any],
    start_ns: int,
    end_ns: int,
    parent_span_id: str = "",
) -> dict[str, Any]:
    """One span in the OTLP JSON mapping (hex ids, attributes as key/value lists)."""
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent_span_id,
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(end_ns),
        "attributes": [{"key": k, "value": _otlp_value(v)} for k, v in attributes.items()],
    }


def otlp_json(spans: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "tests"}}]},
                    "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
                }
            ]
        }
    ).encode()


class TokenGateway:
    """A gateway in front of a collector, as a company puts one there: it answers only under `prefix` and
    only with `?token=TOKEN` in the query (403 otherwise), then forwards to the collector without them.
    `paths` holds every request target as it arrived, refused ones too."""

    def __init__(self, upstream: str, prefix: str, token: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.paths: list[str] = []
        target = urllib.parse.urlsplit(upstream)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                gateway.paths.append(self.path)
                parts = urllib.parse.urlsplit(self.path)
                pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not parts.path.startswith(prefix + "/") or ("token", token) not in pairs:
                    self._answer(403, {"content-type": "text/plain"}, b"gateway: no token, no entry")
                    return
                query = urllib.parse.urlencode([(k, v) for k, v in pairs if k != "token"])
                path = parts.path[len(prefix) :] + (f"?{query}" if query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    conn.request(self.command, path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    kept = {
                        k.lower(): v
                        for k, v in answer.getheaders()
                        if k.lower() in ("content-type", "content-encoding", "retry-after")
                    }
                    self._answer(answer.status, kept, data)
                finally:
                    conn.close()

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{prefix}?token={token}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class EchoingGateway:
    """A gateway on loopback whose error page echoes the request's path and query, as many do: every
    request but `GET /health` (answered 200) gets `status` and `Bad gateway: METHOD /path?query`."""

    def __init__(self, status: int = 502) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status = status
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                healthy = self.command == "GET" and self.path.partition("?")[0].endswith("/health")
                body = b"ok" if healthy else f"Bad gateway: {self.command} {self.path}".encode()
                self.send_response(200 if healthy else gateway.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
