"""A loopback stand-in for the litelens server's ``POST /v1/events``, for tests, benchmarks and the demo.

It speaks the wire contract in ``docs/internals.md`` (gzip or plain bodies, Bearer key, batch shape) and
has knobs to misbehave on purpose -- fail the next requests, answer slowly, refuse large bodies -- so the
transport's retry, spool and split paths can be exercised against a real socket.

    with Receiver(api_key="k") as receiver:
        transport = Transport(TransportConfig(endpoint=receiver.url, api_key="k"))
        ...
        assert receiver.wait_for(10, timeout=5)
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from litelens.testing._loopback import LoopbackServer

__all__ = ["Receiver"]


class _Server(LoopbackServer):
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-request are part of the tests, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real server
    server: _Server

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if receiver.delay_s:
            receiver._stopped.wait(receiver.delay_s)
        if self.path.split("?")[0] != "/v1/events":
            self._answer(404, {"error": f"no route {self.path}"})
            return
        fault = receiver._take_fault()
        if fault is not None:
            status, retry_after = fault
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            self._answer(status, {"error": "injected fault"}, headers)
            return
        if receiver.api_key is not None and self.headers.get("Authorization") != f"Bearer {receiver.api_key}":
            self._answer(401, {"error": "missing or wrong API key"})
            return
        if receiver.max_body is not None and length > receiver.max_body:
            self._answer(413, {"error": f"body of {length} bytes exceeds {receiver.max_body}"})
            return
        try:
            body = zlib.decompress(raw, 47) if self.headers.get("Content-Encoding") == "gzip" else raw
            batch = json.loads(body)
        except (zlib.error, ValueError) as exc:
            self._answer(400, {"error": f"body is not (gzipped) JSON: {exc}"})
            return
        if not isinstance(batch, dict) or batch.get("schema") != "litelens.batch/1":
            self._answer(400, {"error": 'expected {"schema": "litelens.batch/1", ...}'})
            return
        records = batch.get("records")
        if not isinstance(records, list):
            self._answer(400, {"error": "records must be a list"})
            return
        rejected = [
            {"index": i, "reason": "not an object"} for i, r in enumerate(records) if not isinstance(r, dict)
        ]
        good = [r for r in records if isinstance(r, dict)]
        receiver._store(good, body, dict(self.headers.items()))
        self._answer(200, {"accepted": len(good), "rejected": rejected})


class Receiver:
    """Collects batches POSTed to ``/v1/events`` on loopback; ``records`` holds what arrived, in order."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        keep: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        """A server-side context: the receiver then speaks HTTPS (to test a client's TLS settings)."""
        self.keep = keep
        """False: validate and count records but keep none (benchmarks, where millions would pile up)."""
        self.received = 0
        """Records accepted so far, kept or not."""
        self.port = port
        self.api_key = api_key
        self.delay_s = 0.0
        """Seconds every request waits before it is answered (a slow server)."""
        self.max_body: int | None = None
        """Bodies larger than this many bytes on the wire get 413."""
        self.records: list[dict[str, Any]] = []
        self.on_records: Callable[[list[dict[str, Any]]], None] | None = None
        """Called with each stored batch's records, on the receiving thread (the CLI prints them)."""
        self.bodies: list[dict[str, Any]] = []
        """One ``{"headers": {...}, "body": bytes}`` per stored request, body decompressed."""
        self.requests = 0
        self._cond = threading.Condition()
        self._faults: list[tuple[int, float | None]] = []
        self._server: _Server | None = None
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> Receiver:
        """Listen (again) on ``port``; the first start on port 0 picks a free port and keeps it."""
        if self._server is not None:
            return self
        self._stopped.clear()
        server = _Server((self.host, self.port), _Handler)
        server.receiver = self
        if self.ssl_context is not None:
            # The handshake runs in accept(): one that fails (a client that distrusts the certificate)
            # is an OSError there, which the server's loop drops before the next accept.
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        server.serve_in_thread(f"receiver:{self.port}")
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection, so clients see the server gone."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped.set()
        server.stop()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault knobs -----------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and a ``Retry-After`` header if given)."""
        with self._cond:
            self._faults.extend([(status, retry_after)] * times)

    def _take_fault(self) -> tuple[int, float | None] | None:
        with self._cond:
            self.requests += 1
            return self._faults.pop(0) if self._faults else None

    # -- what arrived ----------------------------------------------------------------------------------

    def _store(self, records: list[dict[str, Any]], body: bytes, headers: dict[str, str]) -> None:
        with self._cond:
            self.received += len(records)
            if self.on_records is not None:
                self.on_records(records)
            if self.keep:
                self.records.extend(records)
                self.bodies.append({"headers": headers, "body": body})
            self._cond.notify_all()

    def call_ids(self) -> list[Any]:
        """Every record's ``call_id`` in arrival order (duplicates included)."""
        with self._cond:
            return [r.get("call_id") for r in self.records]

    def unique_call_ids(self) -> set[Any]:
        with self._cond:
            return {r.get("call_id") for r in self.records}

    def wait_for(self, n_records: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n_records`` have arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.received >= n_records, timeout)


def describe(record: dict[str, Any]) -> str:
    """One terminal line for a call record: when, model, status, latency, tokens, cost."""
    from litelens.display import format_call

    return format_call(record)


def run_cli(argv: list[str] | None = None) -> int:
    """`litelens receiver`: accept records on loopback and print one line per call until interrupted."""
    import argparse
    import os
    import signal
    import sys

    parser = argparse.ArgumentParser(
        prog="litelens receiver",
        description="Print the call records a callback sends (LITELENS_ENDPOINT=its URL), without a server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4318, help="port (default 4318)")
    parser.add_argument("--api-key", default=None, help="answer 401 to any other key (default: take any)")
    args = parser.parse_args(argv)
    receiver = Receiver(args.host, args.port, args.api_key, keep=False)
    lock = threading.Lock()
    stop = threading.Event()

    def show(records: list[dict[str, Any]]) -> None:
        with lock:
            try:
                for record in records:
                    sys.stdout.write(describe(record) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                # The reader left (`litelens receiver | head`): stop, quietly, like any Unix filter, rather
                # than hang up on every batch after (which the sender retries forever). stdout is pointed
                # away from the closed pipe so that the interpreter's last flush is quiet too.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                stop.set()

    receiver.on_records = show
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    receiver.start()
    print(f"litelens receiver listening on {receiver.url}/v1/events", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0
