"""What a company network puts between an application and its litelens server, on loopback: certificates
from a private CA (made with the `openssl` command, so no `trustme` or `cryptography` is needed), and an
HTTP proxy that tunnels (`CONNECT`) and forwards (absolute-URI requests) as corporate proxies do.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

PROXIED_HOST = "litelens.invalid"
"""A name only the proxy knows (`.invalid` never resolves, RFC 2606): what is sent to it went through the
proxy, as on a network where only the proxy can reach the server."""


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


@dataclass(frozen=True)
class Pki:
    """A private CA (`ca`) and server certificates it signed: for 127.0.0.1 and localhost (`good`),
    for another host name (`wrong_host`); and a certificate from a CA nobody trusts (`untrusted`)."""

    directory: Path
    ca: Path

    def cert(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.pem", self.directory / f"{name}.key"

    def server_context(self, name: str = "good") -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certfile, keyfile = self.cert(name)
        context.load_cert_chain(certfile, keyfile)
        return context


def _ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "3", "-subj", f"/CN=litelens test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _server(directory: Path, name: str, ca: str, alt_names: str) -> None:
    (directory / f"{name}.ext").write_text(
        f"subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _server(directory, "good", "ca", f"IP:127.0.0.1,DNS:localhost,DNS:{PROXIED_HOST}")
    _server(directory, "wrong_host", "ca", "DNS:elsewhere.example")
    _server(directory, "untrusted", "other-ca", "IP:127.0.0.1,DNS:localhost")
    return Pki(directory, directory / "ca.pem")


def _read_head(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One HTTP message head from `sock` (what follows it stays in `buffer`); None when the peer left."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


def _read_body(sock: socket.socket, buffer: bytearray, head: bytes) -> bytes:
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return body


class Proxy:
    """An HTTP proxy on 127.0.0.1: `CONNECT` tunnels for https, absolute-URI forwarding for http.

    `hosts` maps the names it resolves (as a corporate proxy resolves what the client cannot) to ports on
    127.0.0.1. With `credentials` ("user:password") it answers 407 to requests without them. `tunnels`
    and `forwarded` list what it was asked for, in order.
    """

    def __init__(
        self,
        hosts: dict[str, int] | None = None,
        credentials: str | None = None,
        denied: frozenset[str] = frozenset(),
    ) -> None:
        self.hosts = dict(hosts or {})
        self.credentials = credentials
        self.denied = denied  # hosts its access rules forbid: answered 403 with an error page, as Squid does
        self.tunnels: list[str] = []
        self.forwarded: list[str] = []
        self.refused: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _upstream(self, authority: str) -> socket.socket:
        host, _, port = authority.rpartition(":")
        target = ("127.0.0.1", self.hosts[host]) if host in self.hosts else (host, int(port))
        sock = socket.create_connection(target, timeout=10)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _authorized(self, head: bytes) -> bool:
        if self.credentials is None:
            return True
        expected = b"basic " + base64.b64encode(self.credentials.encode())
        return any(
            line.lower().startswith(b"proxy-authorization:")
            and line.partition(b":")[2].strip().lower() == expected.lower()
            for line in head.split(b"\r\n")
        )

    def _serve(self, client: socket.socket) -> None:
        buffer = bytearray()
        upstream: socket.socket | None = None
        try:
            while (head := _read_head(client, buffer)) is not None:
                method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                if not self._authorized(head):
                    self.refused.append(target)
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
                    )
                    return
                if method == "CONNECT":
                    self.tunnels.append(target)
                    upstream = self._upstream(target)
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pipe(client, upstream, bytes(buffer))
                    return
                # Forwarding: an absolute URI in, the origin form out, answers relayed one by one.
                rest = target.split("://", 1)[1]
                authority, _, path = rest.partition("/")
                body = _read_body(client, buffer, head)
                if authority.rpartition(":")[0] in self.denied:
                    self.refused.append(target)
                    page = b"<html><body><h1>ERROR</h1><p>Access Denied: the access control rules forbid it.</p></body></html>"
                    client.sendall(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\n"
                        + f"Content-Length: {len(page)}\r\n\r\n".encode()
                        + page
                    )
                    continue
                self.forwarded.append(target)
                lines = [
                    line
                    for line in head.split(b"\r\n")[1:]
                    if not line.lower().startswith(b"proxy-authorization:")
                ]
                request = b"\r\n".join([f"{method} /{path} HTTP/1.1".encode(), *lines]) + b"\r\n\r\n"
                if upstream is None:
                    upstream = self._upstream(authority)
                upstream.sendall(request + body)
                answer_buffer = bytearray()
                answer = _read_head(upstream, answer_buffer)
                if answer is None:
                    return
                client.sendall(answer + b"\r\n\r\n" + _read_body(upstream, answer_buffer, answer))
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _pipe(self, client: socket.socket, upstream: socket.socket, early: bytes) -> None:
        if early:
            upstream.sendall(early)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(30)
