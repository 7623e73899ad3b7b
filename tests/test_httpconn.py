"""The transport's HTTP/1.1 connection against raw sockets that answer the ways servers do."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from litelens.httpconn import Connection


@contextmanager
def raw_server(answers: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """Accept one connection; for each request read, send the next canned answer (b"" closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for answer in answers:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                requests.append(data)
                if not answer:
                    return
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], requests
    finally:
        thread.join(5)
        listener.close()


def test_keep_alive_content_length_chunked_and_interim_answers() -> None:
    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\nX-A: 1\r\n\r\n{"accepted":1}',
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n4\r\nslow\r\n5;ext=1\r\n down\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    ]
    with raw_server(answers) as (port, requests):
        conn = Connection("127.0.0.1", port, timeout=5)
        headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}
        conn.request("POST", "/v1/events", b'{"a":1}', headers)
        first = conn.getresponse()
        assert (first.status, first.body, first.headers["x-a"], first.will_close) == (
            200,
            b'{"accepted":1}',
            "1",
            False,
        )
        conn.request("POST", "/v1/events", b"x" * 70_000, headers)  # head and body sent apart
        second = conn.getresponse()
        assert (second.status, second.body, second.headers["retry-after"]) == (429, b"slow down", "3")
        conn.request("POST", "/v1/events", b"", headers)
        assert conn.getresponse().body == b""
        conn.request("POST", "/v1/events", b"z", headers)
        last = conn.getresponse()
        assert (last.body, last.will_close) == (b"until close", True)
        conn.close()
    head = requests[0].decode()
    assert head.startswith("POST /v1/events HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n" in head and "Authorization: Bearer k\r\n" in head
    assert "Content-Length: 7\r\n" in head


@pytest.mark.parametrize(
    ("answer", "error"),
    [(b"", http.client.RemoteDisconnected), (b"garbage\r\n\r\n", http.client.BadStatusLine)],
)
def test_a_server_that_hung_up_or_spoke_garbage_raises_what_http_client_raises(
    answer: bytes, error: type[Exception]
) -> None:
    with raw_server([answer]) as (port, _):
        conn = Connection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/", b"{}", {})
        with pytest.raises(error):
            conn.getresponse()
        conn.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's delayed acknowledgements")
def test_an_answer_written_in_two_pieces_does_not_wait_for_a_delayed_ack() -> None:
    """A server that writes its headers and then its body (Python's http.server does, Nagle left on)
    holds the body back until the headers are acknowledged, and Linux delays that acknowledgement by
    40 ms: every batch, and so every flush(), took 40 ms longer, and the transport (one request in
    flight) delivered at most ~25 batches a second to such a server."""
    exchanges = 20
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(exchanges):
                data = b""
                while not data.endswith(b"{}"):
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n")
                conn.sendall(b'{"accepted":1}')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conn = Connection("127.0.0.1", listener.getsockname()[1], timeout=5)
    started = time.monotonic()
    for _ in range(exchanges):
        conn.request("POST", "/v1/events", b"{}", {})
        assert conn.getresponse().body == b'{"accepted":1}'
    took = time.monotonic() - started
    conn.close()
    thread.join(5)
    listener.close()
    # 20 loopback exchanges take a few ms; one 40 ms delayed ACK in each took 0.6-0.8 s.
    assert took < 0.4, f"{exchanges} exchanges took {took * 1000:.0f} ms"
