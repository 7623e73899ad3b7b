"""Helpers for benchmarks: run the fake provider and an HTTP sink in their own processes, so their CPU is
not counted against the code being measured; load a module as it is at another git ref, so "before" and
"after" run in one process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def source_at(ref: str, path: str) -> str | None:
    """The text of `src/litelens/<path>` at git `ref`; None without git or that ref."""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:src/litelens/{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def load_source(name: str, source: str) -> ModuleType:
    """`source` imported as module `name` (registered in sys.modules, beside the working tree's modules)."""
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SINK = r"""
import sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b'{"accepted":0,"rejected":[]}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"http://127.0.0.1:{s.server_address[1]}", flush=True)
s.serve_forever()
"""


@contextmanager
def subprocess_url(argv: list[str]) -> Iterator[str]:
    """Start a process that prints its URL as its first line; yield the URL; stop it afterwards."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"{argv} did not print a URL: {url!r}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def fake_provider() -> Iterator[str]:
    return subprocess_url([sys.executable, "-m", "litelens.testing.fake_provider", "--port", "0"])


def http_sink() -> Iterator[str]:
    """Answers 200 to any POST: stands in for a litelens server or an OTLP collector."""
    return subprocess_url([sys.executable, "-c", SINK])


class LineWorker:
    """A worker process spoken to in JSON lines: it prints one line when ready, then answers each request
    line with one line; closing its stdin ends it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.hello: dict[str, Any] = {}

    def ready(self) -> dict[str, Any]:
        if not self.hello:
            self.hello = self._read() or {"error": "worker exited before it was ready"}
        return self.hello

    def request(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The worker's answer to `message`, or None when it exited instead."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def stop(self, timeout: float = 30) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
