"""One keep-alive HTTP/1.1 connection that POSTs a body and reads the answer: what the transport needs.

`http.client` parses every response's headers with the `email` package and builds each request header by
header; on a busy host that was a few hundred microseconds of the sender thread's CPU per batch, which a
low call rate (a batch every `batch_max_age_s` with a handful of records in it) divides by few records.
This speaks the same protocol with one `sendall` per request and a buffered `readline` per response line.
It raises `http.client`'s exceptions (and `OSError`), so callers handle it exactly like `http.client`.

Like urllib, it goes through the proxy that `HTTPS_PROXY` / `HTTP_PROXY` name unless `NO_PROXY` exempts
the host (`proxy_from_environment`): a tunnel (`CONNECT`) for https endpoints, absolute-URI requests for
http ones. On networks whose only way out is that proxy, ignoring it would mean no record ever arrives.

`tls_context` builds the client TLS context (a private CA, or no checks for development) and
`describe_connect_error` turns a failure to connect into one line that says which setting to change.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Mapping
from typing import BinaryIO, NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = [
    "Connection",
    "Proxy",
    "ProxyError",
    "Response",
    "describe_connect_error",
    "proxy_from_environment",
    "tls_context",
]

_MAX_LINE = 65_536
_MAX_BODY = 1 << 20  # the server's answers are a few hundred bytes; a larger one is not one of them
_MAX_HEADERS = 100
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux


class Response:
    """A complete answer: `status`, `headers` (names lower-cased), `body`, and `will_close`."""

    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, will_close: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.will_close = will_close


class Proxy(NamedTuple):
    """An HTTP proxy to go through, as an environment variable names it."""

    url: str
    """The proxy's URL without its user and password, for messages."""
    variable: str
    """The variable it came from (`HTTPS_PROXY`, ...), for messages that say what to change."""
    host: str
    port: int
    authorization: str | None
    """`Proxy-Authorization` value, from a `user:password@` in the URL."""
    scheme: str


class ProxyError(OSError):
    """The proxy could not be used, or refused the tunnel; the message names the proxy and its answer."""


class HandshakeCut(ConnectionResetError):
    """The server hung up in the middle of the TLS handshake: reset the connection, or closed it with no
    alert. A plain-HTTP server does that as often as it answers the handshake with HTTP text (which is
    WRONG_VERSION_NUMBER), depending on whether its close or its answer arrives first."""


def _is_loopback(host: str) -> bool:
    host = host.lower().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only localhost's are known to be this machine without asking DNS
        return host == "localhost" or host.endswith(".localhost")


def proxy_from_environment(url: str) -> Proxy | None:
    """The proxy the environment names for `url`, or None: `https_proxy` / `HTTPS_PROXY` for https,
    `http_proxy` / `HTTP_PROXY` for http, else `all_proxy`, unless `no_proxy` / `NO_PROXY` lists the
    host -- urllib's own reading of these variables, so litelens goes where `urllib` and `requests` go.

    A loopback host is never proxied: a proxy elsewhere cannot reach this machine's 127.0.0.1, and
    the default endpoint (a local `litelens serve`) must keep working where a proxy is set for the rest.
    """
    import urllib.request  # here, not at import: it is a heavy import and only needed once

    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or _is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    scheme = parts.scheme
    key = scheme if scheme in proxies else "all"
    raw = proxies.get(key)
    if not raw:
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    # (in urllib.request since Python 3.0, though missing from its type stubs)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if proxies.get("no") and bypass(f"{host}:{port}", proxies):
        return None
    variable = f"{key.upper()}_PROXY"
    if "://" not in raw:
        raw = "http://" + raw  # `HTTPS_PROXY=proxy:3128`, as curl and urllib take it
    proxy = urlsplit(raw)
    authorization = None
    if proxy.username is not None:
        user = unquote(proxy.username)
        password = unquote(proxy.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    proxy_host = proxy.hostname or ""
    try:
        proxy_port = proxy.port or (443 if proxy.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        proxy_port = 0
    shown = f"{proxy.scheme}://{proxy_host}" + (f":{proxy_port}" if proxy_port else "")
    return Proxy(shown, variable, proxy_host, proxy_port, authorization, proxy.scheme)


class _SocketReader(io.RawIOBase):
    """The socket as a raw stream whose reads share one deadline.

    A socket timeout bounds each read alone, so a server that trickles its answer a byte at a time (each
    within the timeout) would hold the sender thread for as long as it likes; with a deadline the whole
    answer must come within `timeout` of starting to wait for it.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None
        self.waiting_more = False  # a read of the current answer was made already

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        sock = self._sock
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out reading the response")
            sock.settimeout(left)
        if self.waiting_more and _QUICKACK is not None:
            # Acknowledge what came so far now, not up to 40 ms later (Linux delays the ACKs of a
            # connection whose requests follow its answers closely): a server that writes its headers
            # and then its body with Nagle on (Python's http.server does) holds the body back until
            # that ACK: each batch, and each flush(), waited 40 ms, and one connection carried at most
            # ~25 batches a second. Setting it sends the pending ACK at once; only a second read of
            # one answer needs it, so the usual answer, read in one piece, costs no extra system call.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self.waiting_more = True
        return sock.recv_into(buffer)


class Connection:
    """A lazily opened keep-alive connection to one host; `request` then `getresponse`, in turn."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
        max_body: int = _MAX_BODY,
    ) -> None:
        self.host = host
        self.max_body = max_body  # a larger answer is refused before it is read
        self.port = port
        self.timeout = timeout
        self._ssl = ssl_context
        self.proxy = proxy
        default_port = 443 if ssl_context is not None else 80
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if port == default_port else f"{name}:{port}"
        self._authority = f"{name}:{port}"
        # Through a proxy, a plain-HTTP request names the whole URL (RFC 9112 3.2.2); a TLS one is
        # tunnelled and looks as it would without the proxy.
        self._forward = proxy is not None and ssl_context is None
        self._target_prefix = f"http://{self._host_header}" if self._forward else ""
        self.sock: socket.socket | None = None
        self._raw: _SocketReader | None = None
        self._reader: BinaryIO | None = None

    def connect(self) -> None:
        proxy = self.proxy
        if proxy is not None and (proxy.scheme != "http" or not proxy.host or not proxy.port):
            raise ProxyError(
                f"{proxy.variable}={proxy.url} is not a proxy litelens can use: it needs an http:// proxy "
                "URL (http://host:port); exempt this host with NO_PROXY to connect directly"
            )
        address = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
        sock = socket.create_connection(address, self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None and self._ssl is not None:
                self._tunnel(sock, proxy)
            if self._ssl is not None:
                try:
                    sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
                except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                    raise HandshakeCut(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._raw = _SocketReader(sock)
        self._reader = io.BufferedReader(self._raw)

    def _tunnel(self, sock: socket.socket, proxy: Proxy) -> None:
        """Ask the proxy for a tunnel to the server (`CONNECT`), and read its answer.

        The answer is read byte by byte up to its blank line: after a 200 the next bytes are the server's
        TLS handshake, which must be left on the socket for `wrap_socket`.
        """
        lines = [f"CONNECT {self._authority} HTTP/1.1", f"Host: {self._authority}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        deadline = time.monotonic() + self.timeout
        head = bytearray()
        while not head.endswith(b"\r\n\r\n") and not head.endswith(b"\n\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProxyError(f"proxy {proxy.url} ({proxy.variable}) did not answer CONNECT in time")
            sock.settimeout(left)
            byte = sock.recv(1)
            if not byte or len(head) > _MAX_LINE:
                raise ProxyError(
                    f"proxy {proxy.url} ({proxy.variable}) did not open a tunnel to {self._authority} "
                    "(it hung up, or its answer never ended)"
                )
            head += byte
        sock.settimeout(self.timeout)
        status_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].startswith("2"):
            hint = ""
            if parts[1:2] == ["407"]:
                hint = "; put the proxy's user and password in its URL (http://user:password@host:port)"
            raise ProxyError(
                f"proxy {proxy.url} ({proxy.variable}) refused a tunnel to {self._authority}: "
                f"{status_line}{hint}"
            )

    def request(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> None:
        """Write one request (opening the connection first if needed)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.settimeout(self.timeout)  # the last answer's deadline may have shortened it
        lines = [f"{method} {self._target_prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self._forward and self.proxy is not None and self.proxy.authorization:
            lines.append(f"Proxy-Authorization: {self.proxy.authorization}")
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
        self._raw.waiting_more = False
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
            body = self._read_chunked(reader, self.max_body)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise http.client.HTTPException("bad Content-Length") from None
            if length > self.max_body:  # reading it would first allocate it all: a MemoryError, or worse
                raise http.client.HTTPException(f"answer of {length} bytes is too large")
            body = reader.read(length) if length > 0 else b""
            if len(body) < length:
                raise http.client.IncompleteRead(body, length - len(body))
        else:
            body = reader.read(self.max_body + 1)  # delimited by the end of the connection
            if len(body) > self.max_body:
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
    def _read_chunked(reader: BinaryIO, max_body: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = reader.readline(_MAX_LINE + 1)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise http.client.HTTPException("bad chunk size") from None
            total += size
            if total > max_body:
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


def tls_context(ca_bundle: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """The client TLS context for an https endpoint: the system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    honoured) plus `ca_bundle`, or, with `verify` False, no checks at all."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_bundle:
        if os.path.isdir(ca_bundle):
            context.load_verify_locations(capath=ca_bundle)
        else:
            context.load_verify_locations(cafile=ca_bundle)
    return context


def describe_connect_error(exc: BaseException, endpoint: str, proxy: Proxy | None = None) -> tuple[str, str]:
    """(kind, message) for a failure to reach `endpoint`: what went wrong, and what setting fixes it.

    TLS and proxy failures are configuration, not a server that is down, and the raw OpenSSL text
    (`[SSL: CERTIFICATE_VERIFY_FAILED] ... (_ssl.c:1006)`) does not say which setting to change.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            hint = "the certificate was issued for another name: use that name in LITELENS_ENDPOINT"
        elif exc.verify_code in (10,):  # X509_V_ERR_CERT_HAS_EXPIRED
            hint = "renew the server's certificate"
        else:
            hint = (
                "if the server's certificate comes from a private CA, set LITELENS_CA_BUNDLE "
                "(or SSL_CERT_FILE) to a PEM file with that CA"
            )
        return "tls-verify", f"litelens: certificate verify failed for {endpoint} ({why}); {hint}"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if reason in (
            "WRONG_VERSION_NUMBER",
            "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG",
            "HTTP_REQUEST",
        ):
            return "tls-plain", (
                f"litelens: server at {endpoint} does not speak TLS ({exc.reason}); if it serves plain "
                "HTTP, use http:// in LITELENS_ENDPOINT"
            )
        return "tls", f"litelens: TLS with {endpoint} failed ({exc})"
    if isinstance(exc, HandshakeCut):
        # Said under the same kind as WRONG_VERSION_NUMBER: against a plain-HTTP server either comes first.
        return "tls-plain", (
            f"litelens: server at {endpoint} hung up during the TLS handshake ({exc}); if it serves plain "
            "HTTP, use http:// in LITELENS_ENDPOINT"
        )
    if isinstance(exc, ProxyError):
        return "proxy", f"litelens: cannot reach {endpoint}: {exc}"
    if isinstance(exc, OSError) and proxy is not None:
        return "proxy", (
            f"litelens: cannot reach {endpoint} through proxy {proxy.url} ({proxy.variable}): {exc}; "
            "check that variable, or add the host to NO_PROXY"
        )
    if endpoint.startswith("http://") and isinstance(
        exc, (ConnectionResetError, http.client.RemoteDisconnected, http.client.BadStatusLine)
    ):
        # A TLS server hangs up on (or answers with a TLS alert) a plain request: the likely cause
        # when a fresh connection is cut before any answer, e.g. http://host:443.
        return "connect", (
            f"litelens: server at {endpoint} hung up without an HTTP answer ({exc!r}); if it serves "
            "HTTPS, use https:// in LITELENS_ENDPOINT"
        )
    return "connect", f"litelens: cannot reach server at {endpoint} ({exc})"
