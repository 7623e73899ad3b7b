"""The HTTP sender: a bounded queue drained by one background thread that batches, gzips and POSTs.

The caller's thread only appends a dict to a deque (`submit`). Everything that can take time or fail --
running the processor pipeline, JSON encoding, compression, the network, the disk spool -- happens on one
daemon thread, so a slow or absent server can never slow down an LLM call. See ``docs/internals.md`` for
the wire contract (which responses are retried, spooled, split or dropped).

    transport = Transport(TransportConfig(api_key="...", spool_dir="/var/tmp/litelens"))
    transport.submit({"schema": "litelens.call/1", "call_id": "...", ...})
    transport.flush(2.0)

Delivery is at least once: a batch whose response was lost is sent again, and receivers deduplicate by
``call_id``.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import datetime
import email.utils
import http.client
import json
import logging
import os
import random
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from litelens.credentials import scrub_url
from litelens.httpconn import (
    Connection,
    HandshakeCut,
    Proxy,
    describe_connect_error,
    proxy_from_environment,
    tls_context,
)
from litelens.record import encode
from litelens.spool import REFUSED_ENDPOINT, REFUSED_KEY, Spool, SpoolEntry

__all__ = ["EVENTS", "Answer", "BatchFormat", "Transport", "TransportConfig"]

logger = logging.getLogger("litelens.transport")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("litelens")
    except Exception:
        return "0"


class Answer(NamedTuple):
    """What a 2xx answer says of a batch beyond "stored": records the server rejected, and records it
    stored with a field dropped (a negative time to first token, say), each with the first reason."""

    rejected: int = 0
    rejected_reason: str = ""
    warned: int = 0
    warning: str = ""


# The scanner `JSONDecoder.decode` itself calls (an instance attribute the type stubs do not list).
_scan_answer: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_ALL_STORED = Answer()


def read_events_answer(data: bytes) -> Answer:
    """`POST /v1/events`'s answer: JSON lists `rejected` and `warnings` of `{"index", "reason"}`."""
    # Read once per batch: `json.loads` first works out the bytes' encoding (UTF-8, -16 or -32, with or
    # without a BOM) and skips white space around the value, in Python code that costs twice the parse
    # itself. UTF-8 text that is one JSON value, alone, reads the same without it; anything else (or an
    # error) goes through `json.loads`, as before.
    try:
        text = data.decode()
        answer, end = _scan_answer(text, 0)
        whole = end == len(text)
    except (ValueError, StopIteration):
        whole = False
    if not whole:
        answer = json.loads(data)
    refused = answer.get("rejected") or []
    warnings = answer.get("warnings") or []
    if not refused and not warnings:
        return _ALL_STORED
    return Answer(
        len(refused),
        _reason(refused[0]) if refused else "",
        len(warnings),
        _reason(warnings[0]) if warnings else "",
    )


def _reason(item: Any) -> str:
    return str(item.get("reason") if isinstance(item, dict) else item)


@dataclass(frozen=True)
class BatchFormat:
    """Where batches go, how records are framed into one body (`head + sep.join(records) + tail`), and
    how the server's 2xx answer is read."""

    path: str
    content_type: str
    head: bytes
    sep: bytes
    tail: bytes
    read_answer: Callable[[bytes], Answer] = read_events_answer


EVENTS = BatchFormat(
    "/v1/events", "application/json", b'{"schema":"litelens.batch/1","records":[', b",", b"]}"
)
"""Call records, as `POST /v1/events` takes them. (`litelens.otel.exporters` has the OTLP format.)"""


def server_base(endpoint: str) -> str:
    """The server's base URL (with a reverse proxy's path prefix, if any) without a trailing ingest path:
    an endpoint copied from an OTLP setting (`.../v1/traces`), or the core's `.../v1/events` given to
    the span exporter, must not become `/v1/traces/v1/traces`.

    Every request path (`/v1/events`, `/health`, `/api/...`) is appended to it, so it ends in neither a
    slash nor a query: `http://host:port/?token=abc` gave `//v1/events` to the sender, and the doctor's
    `/?token=abc/health` asked for `/`. (The query was never sent.)"""
    try:
        parts = urllib.parse.urlsplit(endpoint)
    except ValueError:  # not a URL (a bad IPv6 literal): left to the caller to say so, as before
        return endpoint.rstrip("/")
    path = parts.path.rstrip("/")
    for ingest in ("/v1/events", "/v1/traces"):
        if path.endswith(ingest):
            path = path[: -len(ingest)].rstrip("/")
            break
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def server_url(endpoint: str, path: str, params: Sequence[tuple[str, str]] = ()) -> str:
    """The URL of `path` (`/v1/events`, `/health`, `/api/...`) on the server `endpoint` names.

    The endpoint's own query goes along on every request: a gateway in front of the collector may take
    its token there (`https://gw.example/litelens?token=abc`), and refused every request without it.
    `params` follow it; an endpoint parameter of the same name gives way to the request's own. Never
    log the result: the token is in it (`credentials.scrub_url` takes it out)."""
    try:
        query = urllib.parse.urlsplit(endpoint).query
    except ValueError:  # not a URL: server_base keeps it as it was, for the caller to refuse
        query = ""
    if params:
        own = {name for name, _ in params}
        kept = [p for p in query.split("&") if urllib.parse.unquote_plus(p.partition("=")[0]) not in own]
        query = "&".join(p for p in (*kept, urllib.parse.urlencode(params)) if p)
    return server_base(endpoint) + path + (f"?{query}" if query else "")


def request_target(url: str) -> str:
    """The path and query of `url`: what the request line names (the server is the connection's)."""
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass
class TransportConfig:
    """How and where the transport delivers records. Defaults suit a local ``litelens serve``."""

    endpoint: str = "http://127.0.0.1:4318"
    api_key: str | None = None
    max_queue: int = 10_000
    batch_max_records: int = 1000
    batch_max_bytes: int = 2_000_000
    """Upper bound on a batch's uncompressed body."""
    batch_max_age_s: float = 0.5
    gzip: bool = True
    gzip_level: int = 1
    """Level 1 compresses call records about as well as 6 for a fraction of the CPU (bench/)."""
    timeout_s: float = 5.0
    max_retries: int = 4
    backoff_base_s: float = 0.2
    backoff_max_s: float = 30.0
    spool_dir: str | None = None
    spool_per_destination: bool = False
    """False: `spool_dir` is the spool, used as given. True: `spool_dir` is a base shared by several
    destinations, and this transport's batches go to the folder of its endpoint and key under it
    (`Spool.for_destination`), where a batch refused for another key or endpoint may be taken over."""
    spool_max_bytes: int = 256 * 2**20
    """With `spool_per_destination`, a cap on the whole base, shared with the other destinations in it."""
    exit_flush_s: float = 5.0
    user_agent: str = field(default_factory=lambda: f"litelens/{_version()}")
    format: BatchFormat = EVENTS
    """Call records to `/v1/events` (the default), or OTLP protobuf spans to `/v1/traces`."""
    ca_bundle: str | None = None
    """A PEM file (or a directory of hashed certificates) of CAs trusted for an https endpoint, on top of
    the system's (which `SSL_CERT_FILE` / `SSL_CERT_DIR` replace, as OpenSSL reads them)."""
    ssl_verify: bool = True
    """False: accept any certificate from an https endpoint (development only: anyone on the path can
    then read the records and the API key)."""


_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_CONFIG_STATUSES = frozenset({401, 403, 404})

# Outcomes of one POST.
_OK, _RETRY, _CONFIG, _SPLIT, _FAIL = "ok", "retry", "config", "split", "fail"


class _Token:
    """A flush marker travelling through the queue: set once everything queued before it is settled."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


@dataclass
class _Batch:
    count: int
    body: bytes
    gzipped: bool
    parts: list[bytes] | None = None
    entry: SpoolEntry | None = None


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at ``cap``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            # An HTTP date is GMT even where it names no zone (the asctime form, "-0000"); read as
            # local time it was hours off wherever the machine's zone is not UTC.
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cap)


class Transport:
    """Delivers call records to a litelens server without ever blocking or failing the caller.

    ``prepare`` runs on the background thread for every record (the processor pipeline: redaction,
    sampling, size caps); it returns the record to send or ``None`` to drop it.
    """

    def __init__(
        self,
        config: TransportConfig | None = None,
        prepare: Callable[[Any], dict | str | bytes | None] | None = None,
    ) -> None:
        self.config = config or TransportConfig()
        self._prepare = prepare
        self._logged: set[str] = set()
        # The endpoint as messages name it: a collector behind basic auth or a signed URL has a password or
        # token in it, which must not reach the user's logs.
        self._shown_endpoint = scrub_url(self.config.endpoint) or ""
        url = urllib.parse.urlsplit(server_base(self.config.endpoint))
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        fmt = self.config.format
        self._path = url.path + fmt.path  # for messages: without the endpoint's query, which may be a token
        self._target = request_target(server_url(self.config.endpoint, fmt.path))
        self._headers = {"Content-Type": fmt.content_type, "User-Agent": self.config.user_agent}
        if self.config.api_key:
            key = self.config.api_key
            try:
                key.encode("latin-1")  # what HTTP headers carry
            except UnicodeEncodeError:  # e.g. a typographic quote pasted along with it
                self._log_once(
                    "key", "litelens: the API key has non-ASCII characters; check LITELENS_API_KEY"
                )
                key = key.encode("utf-8").decode("latin-1")  # sent as its UTF-8 bytes (the server says 401)
            self._headers["Authorization"] = f"Bearer {key}"
        self._gzip_headers = {**self._headers, "Content-Encoding": "gzip"}
        self._tls: ssl.SSLContext | None = None  # made on the first connection, on the sender thread
        self._proxy: Proxy | None = None
        self._proxy_read = False
        self._reset_state()
        _live.add(self)

    def _reset_state(self) -> None:
        """(Re)initialise everything per process: also what a forked child starts from."""
        cfg = self.config
        self._lock = threading.Lock()
        self._queue: collections.deque[dict | _Token] = collections.deque()
        self._overflow: collections.deque[dict] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle_mode = 0  # 0 busy, 1 waiting for any record, 2 waiting for a full batch or the age
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._conn: Connection | None = None
        self._reused = False
        self._inflight: _Batch | None = None
        self._settling: _Batch | None = None  # a fresh batch being retried (its records count as queued)
        self._parts: list[bytes] = []
        self._parts_bytes = 0
        self._batch_started = 0.0
        # While calls keep coming, the thread wakes on the batch-age timer alone (see `_sleep`); this is
        # when that timed wait began, so a batch taken after it is as old as the wait, at most.
        self._lingering = False
        self._linger_since: float | None = None
        self._tokens: list[_Token] = []
        self._down = False
        self._next_probe = 0.0
        self._probe_attempt = 0
        self._held: _Batch | None = None
        self._spool: Spool | None = None
        self._spool_nonempty = False
        self._spool_pending = 0
        self._spool_writable = True  # False after the spool refused a batch (disk full, read-only, no dir)
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "sent",
                "spooled",
                "dropped",
                "failed",
                "filtered",
                "retries",
                "batches_sent",
                "unserializable_fields",
                "warnings",
            ),
            0,
        )
        self._max_queue = cfg.max_queue
        # Written only under _lock by submitting threads; _counts is written only by the background thread.
        self._submitted = 0
        self._submit_dropped = 0
        self._tokens_queued = 0  # flush markers in _queue, which are not records

    # -- the caller's side -------------------------------------------------------------------------------

    def submit(self, record: dict) -> None:
        """Queue one record for delivery. O(1); never blocks on I/O and never raises."""
        try:
            with self._lock:
                self._submitted += 1
                if len(self._queue) < self._max_queue and not self._closed:
                    self._queue.append(record)
                elif not self._overflow_locked(record):
                    return
                if self._thread is None:
                    self._start_locked()
            # Waking a thread costs the caller a system call: only when it waits for any record (mode 1),
            # or for a full batch (mode 2) that this record completed. Otherwise the batch age timer wakes it.
            mode = self._idle_mode
            if mode and (mode == 1 or len(self._queue) >= self.config.batch_max_records):
                self._wake.set()
        except Exception:  # a failure here must never reach the user's LLM call
            self._submit_dropped += 1

    def _overflow_locked(self, record: dict) -> bool:
        """The rare paths of `submit`, kept out of its way: shut down, or the queue is full.

        True when the record went to the overflow queue (the background thread spools it)."""
        if self._closed:
            self._submit_dropped += 1
            return False
        if self.config.spool_dir is not None and len(self._overflow) < self._max_queue:
            self._overflow.append(record)
            return True
        self._submit_dropped += 1
        self._log_once("queue-full", "litelens: the send queue is full; records are being dropped")
        return False

    def start(self) -> None:
        """Start the background thread now (it otherwise starts on the first submit).

        Starting resends batches an earlier process left in the spool.
        """
        with self._lock:
            if self._thread is None and not self._closed:
                self._start_locked()

    def _start_locked(self) -> None:
        flush_at_multiprocessing_exit()
        thread = threading.Thread(target=self._run, name="litelens-transport", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down
            self._closed = True
            return
        self._thread = thread

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted before this call is delivered or spooled.

        Returns False when ``timeout`` (seconds) passes first. Records that were dropped, filtered or
        rejected count as settled.
        """
        thread = self._thread
        if thread is threading.current_thread():
            return False
        if thread is None:
            return not self._queue
        if not thread.is_alive():
            return not self._queue and not self._overflow and not self._parts
        token = _Token()
        with self._lock:
            self._tokens_queued += 1
        self._queue.append(token)
        self._wake.set()
        return token.event.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread. What is not delivered by ``timeout`` goes to the spool.

        Records submitted afterwards are dropped and counted. Returns True when everything was settled.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stopping = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return ok
        if not ok:
            self._abort_io()
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0) + 1.0
        thread.join(remaining)
        if thread.is_alive():
            self._rescue_queue(grace_s=1.0)
            return False
        return ok

    def _rescue_queue(self, grace_s: float) -> None:
        """The worker is stuck (a processor that never returns, say): spool what is still queued.

        The records still need ``prepare`` (it may redact secrets), which may be what hangs, so this runs on
        a helper thread joined for at most ``grace_s``: exiting on time beats saving every record.
        ``popleft`` is atomic, so no record is taken by both threads.
        """

        def rescue() -> None:
            pending: collections.deque[dict] = collections.deque()
            for source in (self._queue, self._overflow):
                while True:
                    try:
                        item = source.popleft()
                    except IndexError:
                        break
                    if not isinstance(item, _Token):
                        pending.append(item)
            self._spill(pending)

        helper = threading.Thread(target=rescue, name="litelens-rescue", daemon=True)
        try:
            helper.start()
        except RuntimeError:  # interpreter finalising: no new threads; only safe inline without a processor
            if self._prepare is None:
                rescue()
            return
        helper.join(grace_s)

    def stats(self) -> dict[str, int]:
        """Counters since this process started (see ``docs/internals.md``); cheap, no I/O."""
        out = dict(self._counts)
        out["submitted"] = self._submitted
        out["dropped"] += self._submit_dropped + (self._spool.damaged if self._spool is not None else 0)
        in_memory = len(self._queue) - self._tokens_queued + len(self._overflow) + len(self._parts)
        for batch in (self._held, self._inflight, self._settling):
            if batch is not None and batch.entry is None:  # (a spooled batch is counted in the spool)
                in_memory += batch.count
        out["queued"] = max(in_memory, 0)
        out["spool_pending"] = self._spool_pending
        return out

    # -- the background thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.config.spool_dir is not None and self._spool is None:
                # Opened here, not in submit(): even mkdir and a directory listing stay off the caller's thread.
                self._spool = self._open_spool(self.config.spool_dir)
                self._spool_nonempty = True
                self._refresh_pending()
            while not self._stopping:
                try:
                    self._iteration()
                except Exception as exc:  # a bug must not end delivery for the rest of the process
                    self._log_once("iteration", "litelens: unexpected error in the transport thread: %r", exc)
                    self._stop.wait(0.5)
        except BaseException as exc:  # keep the process healthy even if we are not
            self._log_once("thread", "litelens: transport thread stopped unexpectedly: %r", exc)
        finally:
            try:
                self._final_spill()
            finally:
                self._close_conn()
                for token in self._tokens:
                    token.event.set()

    def _open_spool(self, directory: str) -> Spool:
        cfg = self.config
        if not cfg.spool_per_destination:
            return Spool(directory, cfg.spool_max_bytes)
        kind = cfg.format.path.rstrip("/").rsplit("/", 1)[-1] or "events"  # /v1/events, /v1/traces
        return Spool.for_destination(directory, cfg.endpoint, cfg.api_key, cfg.spool_max_bytes, kind=kind)

    def _iteration(self) -> None:
        cfg = self.config
        flush_now = False
        taken = 0
        # Bounded, so that under a sustained flood the spool drain and probes below still get their turn.
        while self._queue and self._held is None and not self._stopping and taken < cfg.batch_max_records:
            item = self._queue.popleft()
            if isinstance(item, _Token):
                with self._lock:
                    self._tokens_queued -= 1
                self._tokens.append(item)
                flush_now = True
                break
            self._add(item)
            taken += 1
        self._linger_since = None
        now = time.monotonic()
        if self._parts and (flush_now or now - self._batch_started >= cfg.batch_max_age_s):
            self._ship(self._take_batch())
            self._lingering = True  # a batch went out on its age: more calls are likely to follow
        if self._overflow:
            self._spill(self._overflow)
        if self._tokens:
            self._finish_inflight()
        if self._tokens and not self._parts and self._held is None and not self._overflow:
            for token in self._tokens:
                token.event.set()
            self._tokens.clear()
        if self._spool is not None and self._spool_nonempty and not self._down and not self._stopping:
            self._drain_one()
        if self._down and time.monotonic() >= self._next_probe and not self._stopping:
            self._probe()
        self._sleep()

    def _sleep(self) -> None:
        if self._queue and self._held is None:
            return
        if self._spool_nonempty and not self._down:
            return
        if not self._lingering:
            # Nothing else to do before a long wait: read the answer now. While lingering, the thread is
            # back within one batch age and reads it then, from the socket's buffer, instead of blocking
            # for it now and taking the interpreter lock back from the caller once more per batch.
            self._finish_inflight()
        if self._queue and self._held is None:
            return
        now = time.monotonic()
        age = self.config.batch_max_age_s
        timeout = 5.0  # also a heartbeat that rechecks a shared spool
        # Mode 1 (waiting for any record) costs a wake-up when the next record arrives and another when
        # its batch is old enough. While calls keep coming, the thread instead lingers: it sleeps one
        # batch age without asking to be woken (mode 2), then sends whatever arrived meanwhile, none of it
        # older than the age. One wake-up per batch, and no wake-up call on the caller's thread.
        lingering = self._lingering and not self._parts
        if self._parts:
            timeout = max(self._batch_started + age - now, 0.0)
        elif lingering:
            timeout = age
        if self._down:
            timeout = min(timeout, max(self._next_probe - now, 0.0))
        self._wake.clear()
        self._idle_mode = 2 if self._parts or lingering else 1
        # `shutdown` sets _stopping before its wake-up, which the clear above may have swallowed.
        if (not self._queue or self._held is not None) and not self._stopping:
            self._wake.wait(timeout)
        self._idle_mode = 0
        if lingering:
            self._linger_since = now
            self._lingering = bool(self._queue)  # a whole age without a call: back to waiting for one
        if not self._down and self._spool is not None and time.monotonic() - now >= 5.0:
            self._spool_nonempty = True

    # -- encoding and batching -------------------------------------------------------------------------

    def _encode(self, record: dict) -> bytes | None:
        if self._prepare is not None:
            try:
                prepared = self._prepare(record)
            except Exception as exc:
                self._counts["failed"] += 1
                self._log_once(
                    "prepare", "litelens: a record processor raised %r; that record is skipped", exc
                )
                return None
            if prepared is None:
                self._counts["filtered"] += 1
                return None
            if isinstance(prepared, str):  # already encoded by the caller's prepare (the callback does)
                return prepared.encode("utf-8", "replace")
            if isinstance(prepared, bytes):
                return prepared
            record = prepared
        try:
            text, unserializable = encode(record)
        except Exception as exc:
            self._counts["failed"] += 1
            self._log_once("encode", "litelens: a record could not be encoded (%r); it is skipped", exc)
            return None
        self._counts["unserializable_fields"] += unserializable
        return text.encode("utf-8", "replace")

    def _add(self, record: dict) -> None:
        encoded = self._encode(record)
        if encoded is None:
            return
        cfg = self.config
        if self._parts and self._parts_bytes + len(encoded) + 1 > cfg.batch_max_bytes:
            self._ship(self._take_batch())
        if not self._parts:
            # After a lingering wait the record may have waited that long already (see `_sleep`).
            since = self._linger_since
            self._batch_started = since if since is not None else time.monotonic()
        self._parts.append(encoded)
        self._parts_bytes += len(encoded) + 1
        if len(self._parts) >= cfg.batch_max_records or self._parts_bytes >= cfg.batch_max_bytes:
            self._ship(self._take_batch())

    def _take_batch(self) -> _Batch:
        parts, self._parts, self._parts_bytes = self._parts, [], 0
        return self._build(parts)

    def _build(self, parts: list[bytes]) -> _Batch:
        fmt = self.config.format
        body = fmt.head + fmt.sep.join(parts) + fmt.tail
        if self.config.gzip:
            # One call, not compressobj().compress() + flush(): zlib lets go of the interpreter lock in
            # each call, and taking it back from a busy caller's thread costs more than the compression
            # of a small batch.
            body = _gzip(body, self.config.gzip_level)
        return _Batch(len(parts), body, self.config.gzip, parts)

    def _spill(self, records: collections.deque[dict]) -> None:
        """Encode records the queue could not hold and write them straight to the spool."""
        parts: list[bytes] = []
        size = 0
        while records:
            encoded = self._encode(records.popleft())
            if encoded is None:
                continue
            parts.append(encoded)
            size += len(encoded) + 1
            if len(parts) >= self.config.batch_max_records or size >= self.config.batch_max_bytes:
                self._to_spool(self._build(parts))
                parts, size = [], 0
        if parts:
            self._to_spool(self._build(parts))

    def _final_spill(self) -> None:
        """On stop: whatever is still in memory goes to the spool (or is counted as dropped)."""
        self._finish_inflight()
        if self._parts:
            self._to_spool(self._take_batch())
        if self._held is not None:
            held, self._held = self._held, None
            self._to_spool(held)
        pending: collections.deque[dict] = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Token):
                self._tokens.append(item)
            else:
                pending.append(item)
        pending.extend(self._overflow)
        self._overflow.clear()
        self._spill(pending)

    # -- where a batch goes ----------------------------------------------------------------------------

    def _ship(self, batch: _Batch) -> None:
        if self._stopping:
            self._to_spool(batch)
        elif not self._down:
            self._deliver(batch)
        elif self._held is None and (self._spool is None or not self._spool_writable):
            # Nowhere to keep it: it becomes the next probe, and the bounded queue buffers the rest meanwhile.
            # (Were it dropped instead, nothing would be left to probe with, and the server, once back,
            # would never be tried again.)
            self._held = batch
        else:
            self._to_spool(batch)

    def _to_spool(self, batch: _Batch) -> None:
        if batch.entry is not None:  # already on disk: give it back
            assert self._spool is not None
            self._spool.release(batch.entry)
            self._spool_nonempty = True
            return
        if self._spool is None:
            self._counts["dropped"] += batch.count
            self._log_once(
                "drop",
                "litelens: server at %s is unreachable and no spool is set; records dropped",
                self.config.endpoint,
            )
            return
        try:
            evicted = self._spool.put(batch.body, batch.count, batch.gzipped)
        except OSError as exc:  # `evicted`: older batches the spool deleted to make room before giving up
            self._counts["dropped"] += batch.count + getattr(exc, "evicted", 0)
            self._spool_writable = False
            return
        self._spool_writable = True
        self._counts["spooled"] += batch.count
        self._counts["dropped"] += evicted
        self._spool_nonempty = True
        self._refresh_pending()

    def _refresh_pending(self) -> None:
        if self._spool is not None:
            self._spool_pending = self._spool.pending()[1]

    def _deliver(self, batch: _Batch) -> None:
        """Start sending a fresh batch; its answer is read later, by ``_finish_inflight``.

        One request stays in flight while this thread encodes and compresses the next batch, so the
        server's work overlaps ours instead of adding to it (it roughly doubles throughput on loopback).
        """
        self._finish_inflight()
        if self._down:  # the previous batch just found the server down
            self._ship(batch)
            return
        if self._send(batch.body, batch.gzipped):
            self._inflight = batch
        else:
            self._settle(batch, _RETRY, None)

    def _finish_inflight(self) -> None:
        # A loop, not an if: settling a 413 sends the halves, which leaves a newer request in flight.
        while self._inflight is not None:
            batch, self._inflight = self._inflight, None
            outcome, retry_after = self._classify(batch, *self._receive(batch.body, batch.gzipped))
            self._settle(batch, outcome, retry_after)

    def _settle(self, batch: _Batch, outcome: str, retry_after: float | None) -> None:
        """Act on a fresh batch's first answer: retry with backoff, split, or spool and mark the server down."""
        self._settling = batch
        try:
            self._retry(batch, outcome, retry_after)
        finally:
            self._settling = None

    def _retry(self, batch: _Batch, outcome: str, retry_after: float | None) -> None:
        cfg = self.config
        attempt = 0
        while True:
            if attempt:
                outcome, retry_after = self._attempt(batch)
            if outcome in (_OK, _FAIL):
                return
            if outcome == _SPLIT:
                self._split(batch)
                return
            if outcome == _CONFIG or attempt >= cfg.max_retries or self._stopping:
                self._go_down(retry_after)
                if self._spool is None and outcome != _CONFIG:
                    self._counts["dropped"] += batch.count
                    self._log_once(
                        "drop",
                        "litelens: server at %s is unreachable and no spool is set; records dropped",
                        cfg.endpoint,
                    )
                    return
                self._to_spool(batch)
                return
            delay = random.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt))
            if retry_after is not None:
                delay = max(delay, retry_after)
            attempt += 1
            self._counts["retries"] += 1
            if self._stop.wait(delay):
                self._to_spool(batch)
                return

    def _split(self, batch: _Batch) -> None:
        parts = batch.parts if batch.parts is not None else self._decode_parts(batch)
        if batch.entry is not None and self._spool is not None:
            self._spool.done(batch.entry)
            self._refresh_pending()
        if parts is None or len(parts) <= 1:
            self._counts["failed"] += batch.count
            self._log_once(
                "413",
                "litelens: server at %s refused a record as too large (413); it is dropped",
                self.config.endpoint,
            )
            return
        half = len(parts) // 2
        for chunk in (parts[:half], parts[half:]):
            self._ship(self._build(chunk))

    def _decode_parts(self, batch: _Batch) -> list[bytes] | None:
        try:
            raw = zlib.decompress(batch.body, 47) if batch.gzipped else batch.body
            records = json.loads(raw)["records"]
            return [encode(r)[0].encode("utf-8", "replace") for r in records]
        except Exception:
            return None

    def _go_down(self, retry_after: float | None) -> None:
        if not self._down:
            self._down = True
            self._probe_attempt = 0
        self._schedule_probe(retry_after)

    def _schedule_probe(self, retry_after: float | None) -> None:
        cfg = self.config
        cap = min(cfg.backoff_max_s, cfg.backoff_base_s * 2**self._probe_attempt)
        self._probe_attempt = min(self._probe_attempt + 1, 32)
        delay = random.uniform(cap / 2, cap)
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._next_probe = time.monotonic() + delay

    def _probe(self) -> None:
        """While the server is down, try one batch (the oldest spooled, or the held one) without retries."""
        batch = self._held
        if batch is None and self._spool is not None:
            entry = self._spool.claim_oldest()
            if entry is None:
                # Nothing to probe with yet; the next batch goes to the spool (or is held) and is probed.
                # Rescheduled, or the thread would spin here until that batch comes.
                self._spool_nonempty = False
                self._schedule_probe(None)
                return
            batch = _Batch(entry.count, entry.body, entry.gzipped, None, entry)
        if batch is None:
            return
        outcome, retry_after = self._attempt(batch)
        if outcome in (_RETRY, _CONFIG):
            if batch.entry is not None:
                self._to_spool(batch)
            self._schedule_probe(retry_after)
            return
        self._held = None
        self._down = False
        if outcome == _SPLIT:
            self._split(batch)
        elif batch.entry is not None and self._spool is not None:
            self._spool.done(batch.entry)
            self._refresh_pending()

    def _drain_one(self) -> None:
        """Send the oldest spooled batch once; called between fresh batches so neither starves."""
        assert self._spool is not None
        self._finish_inflight()
        if self._down:
            return
        entry = self._spool.claim_oldest()
        if entry is None:
            self._spool_nonempty = False
            self._refresh_pending()
            return
        batch = _Batch(entry.count, entry.body, entry.gzipped, None, entry)
        outcome, retry_after = self._attempt(batch)
        if outcome in (_RETRY, _CONFIG):
            self._spool.release(entry)
            self._go_down(retry_after)
        elif outcome == _SPLIT:
            self._split(batch)
        else:
            self._spool.done(entry)
            self._refresh_pending()

    # -- HTTP ------------------------------------------------------------------------------------------

    def _attempt(self, batch: _Batch) -> tuple[str, float | None]:
        """POST a batch once, waiting for the answer, and classify it per the wire contract."""
        self._finish_inflight()
        if not self._send(batch.body, batch.gzipped):
            return _RETRY, None
        return self._classify(batch, *self._receive(batch.body, batch.gzipped))

    def _classify(
        self, batch: _Batch, status: int | None, retry_after: float | None, data: bytes
    ) -> tuple[str, float | None]:
        if status is None:
            return _RETRY, None
        if 200 <= status < 300:
            rejected = warned = 0
            with contextlib.suppress(Exception):  # an answer we cannot read still means stored
                rejected, warned = self._answered(data, batch.count)
            if self._spool is not None:
                self._spool.clear_refused()  # (no I/O unless the folder was marked)
            self._counts["sent"] += batch.count - rejected
            self._counts["failed"] += rejected
            self._counts["warnings"] += warned
            self._counts["batches_sent"] += 1
            return _OK, None
        if status in _RETRY_STATUSES or status >= 500:
            self._log_once(
                f"http-{status}",
                "litelens: server at %s answered %d; retrying with backoff",
                self.config.endpoint,
                status,
            )
            return _RETRY, retry_after
        if status == 407:
            # From a forwarding proxy (an http endpoint through HTTP_PROXY), not the server: the batch
            # was never seen by it, so it waits in the spool until the proxy's credentials are fixed.
            proxy = self._proxy
            where = f"proxy {proxy.url} ({proxy.variable})" if proxy else "a proxy"
            self._log_once(
                "http-407",
                "litelens: %s refused the request to %s (407 Proxy Authentication Required); put the "
                "proxy's user and password in its URL (http://user:password@host:port). Records are "
                "kept in the spool",
                where,
                self.config.endpoint,
            )
            return _CONFIG, retry_after
        if status in _CONFIG_STATUSES:
            if self._spool is not None:
                # So that a process with the fixed key or endpoint may send these batches.
                self._spool.mark_refused(REFUSED_ENDPOINT if status == 404 else REFUSED_KEY)
            if status == 404:
                msg = "litelens: server at %s has no %s (404); check LITELENS_ENDPOINT. Batches are kept in the spool"
                self._log_once("http-404", msg, self.config.endpoint, self._path)
            elif status == 403:
                # A litelens server answers a bad key with 401: a 403 comes from something in between
                # (a proxy's or a gateway's access rule), and its page says which rule.
                via = f" through proxy {self._proxy.url} ({self._proxy.variable})" if self._proxy else ""
                msg = (
                    "litelens: the request to %s%s was forbidden (403): a proxy or gateway on the way refused "
                    "it (a litelens server refuses a bad key with 401); it said: %s. Batches are kept in the spool"
                )
                answer = " ".join(data[:300].decode("utf-8", "replace").split())
                self._log_once("http-403", msg, self.config.endpoint, via, answer or "nothing")
            else:
                msg = "litelens: server at %s refused the API key (%d); set LITELENS_API_KEY. Batches are kept in the spool"
                self._log_once(f"http-{status}", msg, self.config.endpoint, status)
            return _CONFIG, retry_after
        if status == 413:
            return _SPLIT, None
        self._counts["failed"] += batch.count
        reason = data[:200].decode("utf-8", "replace")
        self._log_once(
            f"http-{status}",
            "litelens: server at %s rejected a batch (%d): %s",
            self.config.endpoint,
            status,
            reason,
        )
        if batch.entry is not None and self._spool is not None:
            self._spool.done(batch.entry)
            self._refresh_pending()
        return _FAIL, None

    def _answered(self, data: bytes, count: int) -> tuple[int, int]:
        """From a 2xx answer: how many of the batch's records the server rejected, and how many it stored
        with a field dropped; each kind is logged once, with the server's first reason."""
        answer = self.config.format.read_answer(data)
        if answer.rejected:
            self._log_once(
                "rejected",
                "litelens: server at %s rejected %d malformed records: %s",
                self.config.endpoint,
                answer.rejected,
                answer.rejected_reason[:200],
            )
        if answer.warning:
            self._log_once(
                "warnings",
                "litelens: server at %s stored records without a field it refused: %s",
                self.config.endpoint,
                answer.warning[:200],
            )
        return min(answer.rejected, count), min(answer.warned, count)

    def _send(self, body: bytes, gzipped: bool) -> bool:
        """Write one request on the keep-alive connection (opening it if needed); False if that failed."""
        headers = self._gzip_headers if gzipped else self._headers
        for _ in range(2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect()
                self._conn.request("POST", self._target, body, headers)
                self._reused = reused
                return True
            except Exception as exc:  # any failure to send is a failed attempt, never the thread's end
                self._close_conn()
                if reused and _stale(exc) and not self._stopping:
                    continue  # the server closed an idle keep-alive connection: reconnect once, at once
                self._log_connect(exc)
                return False
        return False

    def _receive(self, body: bytes, gzipped: bool) -> tuple[int | None, float | None, bytes]:
        """Read the answer to the request ``_send`` wrote: (status or None, Retry-After, body)."""
        conn = self._conn
        if conn is None:
            return None, None, b""
        try:
            resp = conn.getresponse()
        except Exception as exc:  # any failure to read the answer is no answer
            self._close_conn()
            if self._reused and _stale(exc) and not self._stopping and self._send(body, gzipped):
                return self._receive(body, gzipped)  # _send opened a fresh connection: this recurses once
            self._log_connect(exc)
            return None, None, b""
        if resp.will_close:
            self._close_conn()
        retry_after = parse_retry_after(resp.headers.get("retry-after"), self.config.backoff_max_s)
        return resp.status, retry_after, resp.body

    def _log_connect(self, exc: BaseException) -> None:
        # Only errors of the network and the protocol are shown: another one's text may hold the request.
        if not isinstance(exc, (OSError, http.client.HTTPException)):
            self._log_once(
                "connect",
                "litelens: cannot reach server at %s (%s); will retry",
                self.config.endpoint,
                type(exc).__name__,
            )
            return
        kind, message = describe_connect_error(exc, self._shown_endpoint, self._proxy)
        if isinstance(exc, HandshakeCut) and self._logged & {"tls-verify", "tls"}:
            return  # a TLS server that refused us once may cut the next try: the first verdict said it all
        kept = "kept in the spool" if self._spool is not None else "retried, then dropped (no spool is set)"
        self._log_once(kind, "%s. Records are %s", message, kept)

    def _connect(self) -> Connection:
        cfg = self.config
        if not self._proxy_read:
            self._proxy_read = True
            self._proxy = proxy_from_environment(cfg.endpoint)
        if self._https and self._tls is None:
            # Once per transport, not per connection: loading the system's CA bundle takes milliseconds.
            try:
                self._tls = tls_context(cfg.ca_bundle, cfg.ssl_verify)
            except (OSError, ValueError) as exc:  # a missing or unreadable bundle, or one with no PEM in it
                raise ssl.SSLError(f"cannot load the CA bundle {cfg.ca_bundle!r} ({exc})") from None
            if not cfg.ssl_verify:
                self._log_once(
                    "no-verify",
                    "litelens: TLS certificate checks are off for %s (LITELENS_SSL_VERIFY=false); "
                    "use this for development only",
                    cfg.endpoint,
                )
        return Connection(
            self._host, self._port, timeout=cfg.timeout_s, ssl_context=self._tls, proxy=self._proxy
        )

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _abort_io(self) -> None:
        """Unblock a send in progress (shutdown ran out of time): its batch then goes to the spool."""
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _log_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            endpoint = self.config.endpoint
            logger.warning(msg, *(self._shown_endpoint if a is endpoint else a for a in args))

    def _after_fork_child(self) -> None:
        # The parent still owns its queue, thread, socket and spool claims; the child starts empty so that no
        # record is sent twice and no socket is shared.
        conn = self._conn
        self._reset_state()
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.close()


def _gzip(body: bytes, level: int) -> bytes:
    """A gzip member holding `body`, made in one zlib call where Python allows it (3.11+)."""
    if sys.version_info >= (3, 11):
        return zlib.compress(body, level, wbits=31)
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def _stale(exc: BaseException) -> bool:
    """Whether an error means the server had closed an idle keep-alive connection before we used it."""
    return isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))


_live: weakref.WeakSet[Transport] = weakref.WeakSet()


_exit_hooks: list[Callable[[], None]] = []


def run_before_exit(hook: Callable[[], None]) -> None:
    """Run `hook` at interpreter exit just before the transports' final flush.

    The callback uses it to drain LiteLLM's own async logging queue first: LiteLLM registered its exit
    handler before ours, so it would otherwise run after our last flush and its records would be lost.
    """
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def _shutdown_all() -> None:
    for hook in _exit_hooks:
        with contextlib.suppress(Exception):
            hook()
    for transport in list(_live):
        if transport._thread is not None:
            with contextlib.suppress(Exception):
                transport.shutdown(transport.config.exit_flush_s)


_mp_exit_pid = 0


def flush_at_multiprocessing_exit() -> None:
    """Have a multiprocessing child run the exit flush too: it ends in ``os._exit()``, which skips atexit.

    A child's own finalizers run at its end (and are cleared when it starts, so this is per process);
    without this, what a worker process (``Process``, ``Pool``, ``ProcessPoolExecutor``) logged in its
    last ``batch_max_age_s`` was silently lost.
    """
    global _mp_exit_pid
    util = sys.modules.get("multiprocessing.util")
    if util is not None and _mp_exit_pid != os.getpid():
        _mp_exit_pid = os.getpid()
        with contextlib.suppress(Exception):
            util.Finalize(None, _shutdown_all, exitpriority=0)


def _after_fork_in_child() -> None:
    for transport in list(_live):
        transport._after_fork_child()


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
