"""One keep-alive HTTP/1.1 connection that POSTs a body and reads the answer: what the transport needs.

`http.client` parses every response's headers with the `email` package and builds each request header by
header; on a busy host that was a few hundred microseconds of the sender thread's CPU per batch, which a
low call rate (a batch every `batch_max_age_s` with a handful of records in it) divides by few records.
This speaks the same protocol with one `sendall` per request and a buffered `readline` per response line.
It raises `http.client`'s exceptions (and `OSError`), so callers handle it exactly like `http.client`.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from collections.abc import Mapping
from typing import BinaryIO

__all__ = ["Connection", "Response"]

_MAX_LINE = 65_536
_MAX_BODY = 1 << 20  # the server's answers are a few hundred bytes; a larger one is not one of them
_MAX_HEADERS = 100


class Response:
    """A complete answer: `status`, `headers` (names lower-cased), `body`, and `will_close`."""

    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, will_close: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.will_close = will_close


class _SocketReader(io.RawIOBase):
    """The socket as a raw stream whose reads share one deadline.

    A socket timeout bounds each read alone, so a server that trickles its answer a byte at a time (each
    within the timeout) would hold the sender thread for as long as it likes; with a deadline the whole
    answer must come within `timeout` of starting to wait for it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out reading the response")
            self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class Connection:
    """A lazily opened keep-alive connection to one host; `request` then `getresponse`, in turn."""

    def __init__(
        self, host: str, port: int, *, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl = ssl_context
        default_port = 443 if ssl_context is not None else 80
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if port == default_port else f"{name}:{port}"
        self.sock: socket.socket | None = None
        self._raw: _SocketReader | None = None
        self._reader: BinaryIO | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._raw = _SocketReader(sock)
        self._reader = io.BufferedReader(self._raw)

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Write one request (opening the connection first if needed)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.settimeout(self.timeout)  # the last answer's deadline may have shortened it
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "\r\n".join(lines).encode("latin-1")
        if len(body) <= 65_536:
            self.sock.sendall(head + body)  # one syscall; the copy is cheaper than a second send
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)

    def getresponse(self) -> Response:
        """Read the answer to the last request, body included; 1xx interim answers are skipped."""
        reader = self._reader
        if reader is None or self._raw is None:
            raise http.client.ResponseNotReady("no request was sent")
        self._raw.deadline = time.monotonic() + self.timeout
        while True:
            line = reader.readline(_MAX_LINE + 1)
            if not line:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            parts = line.decode("latin-1").split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise http.client.BadStatusLine(line.decode("latin-1", "replace").rstrip())
            version, status = parts[0], int(parts[1])
            headers = self._read_headers(reader)
            if status >= 200 or status < 100:
                break
        connection = headers.get("connection", "").lower()
        will_close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise http.client.HTTPException("bad Content-Length") from None
            if length > _MAX_BODY:  # reading it would first allocate it all: a MemoryError, or worse
                raise http.client.HTTPException(f"answer of {length} bytes is too large")
            body = reader.read(length) if length > 0 else b""
            if len(body) < length:
                raise http.client.IncompleteRead(body, length - len(body))
        else:
            body = reader.read(_MAX_BODY + 1)  # delimited by the end of the connection
            if len(body) > _MAX_BODY:
                raise http.client.HTTPException("answer is too large")
            will_close = True
        return Response(status, headers, body, will_close)

    @staticmethod
    def _read_headers(reader: BinaryIO) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = reader.readline(_MAX_LINE + 1)
            if not line:
                raise http.client.RemoteDisconnected("Remote end closed connection in the headers")
            if line in (b"\r\n", b"\n"):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")

    @staticmethod
    def _read_chunked(reader: BinaryIO) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = reader.readline(_MAX_LINE + 1)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise http.client.HTTPException("bad chunk size") from None
            total += size
            if total > _MAX_BODY:
                raise http.client.HTTPException("answer is too large")
            if size == 0:
                while reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = reader.read(size)
            if len(chunk) < size:
                raise http.client.IncompleteRead(b"".join(chunks) + chunk, size - len(chunk))
            chunks.append(chunk)
            reader.readline(_MAX_LINE + 1)  # the CRLF after the chunk

    def close(self) -> None:
        reader, self._reader, self._raw = self._reader, None, None
        sock, self.sock = self.sock, None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()
