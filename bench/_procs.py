"""Helpers for benchmarks: run the fake provider and an HTTP sink in their own processes, so their CPU is
not counted against the code being measured."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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
