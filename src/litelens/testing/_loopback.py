"""The threaded HTTP server under the fake provider and the receiver.

Both serve keep-alive connections from a daemon thread, and both must be able to stop at any moment
and leave nothing behind: `stop()` closes the listening socket and then cuts every open connection, so
handler threads blocked on an idle keep-alive socket wake up and clients see the server gone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    # Tests stop and restart servers on fixed ports; SO_REUSEADDR avoids TIME_WAIT trouble.
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)
        # serve_forever() accepts once its poll says the listener is ready. A blocking accept() that then
        # finds nothing (the connection already gone elsewhere) held the thread until the next client,
        # and stop(), which waits for that thread, hung a test run's teardown for good. Non-blocking, such
        # an accept() fails at once and the loop polls again (and sees stop()).
        self.socket.setblocking(False)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setblocking(True)  # handlers read and write as usual; only the listener must not block
        # Small writes (SSE chunks, short answers) must leave at once, not wait for Nagle.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.sockets_lock:
            self.open_sockets.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def serve_in_thread(self, name: str) -> None:
        # A short poll interval keeps stop() fast; tests start and stop many servers.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listening socket, then cut every open connection."""
        self.shutdown()
        self.server_close()
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
