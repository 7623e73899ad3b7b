"""`BackgroundQueue`: a bounded queue drained in batches by one daemon thread of its own.

The sinks are built on it, and so is the callback's dispatcher when sinks are configured: every stage
that may be slow (a disk, a terminal, a user's function, a network) owns a queue and a thread, so that
one slow stage never holds up the caller or another stage. The rules are the transport's:

- `submit` is O(1), never blocks and never raises; when the queue is full the item is dropped and
  counted (`dropped`), and that is logged once.
- `flush(timeout)` waits until everything submitted before it has been handled (a marker travels
  through the queue), `shutdown(timeout)` flushes and then stops the thread; a thread stuck in its
  handler is abandoned (it is a daemon), never waited for past the timeout.
- A handler that raises costs the batch it was given (`failed`), is logged once, then only counted;
  one that raises `PartlyHandled` costs only the items it did not handle.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["BackgroundQueue", "PartlyHandled"]

log = logging.getLogger("litelens.worker")


class PartlyHandled(Exception):
    """Raised by a handler that failed after it had handled the first `handled` items of its batch (a
    file that took some lines before the disk filled): those are counted as handled, the rest as failed,
    so each item is counted once and as what became of it."""

    def __init__(self, handled: int) -> None:
        super().__init__(f"failed after the first {handled} items of the batch were handled")
        self.handled = handled


class _Marker:
    """A flush marker: set once everything queued before it has been handled."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


class BackgroundQueue:
    """Items in, batches out on a thread of its own.

    `handle(batch)` receives a list of at most `batch_max` items. With `linger_s`, the thread waits that
    long after the first item for more, so a handler that prefers batches (a user's bulk insert) gets
    fewer, fuller ones. `tick()` is called on the thread about every `tick_s` seconds when idle (time-based
    file rotation uses it). `stage` orders the shutdown at exit: lower stages are flushed first, since
    they feed the higher ones.

        >>> got = []
        >>> q = BackgroundQueue(got.extend, name="demo")
        >>> q.submit(1); q.submit(2); q.flush(5)
        True
        >>> got, q.stats()["handled"]
        ([1, 2], 2)
        >>> q.shutdown(1)
        True
    """

    def __init__(
        self,
        handle: Callable[[list[Any]], None],
        *,
        name: str = "litelens-queue",
        max_queue: int = 10_000,
        batch_max: int = 500,
        linger_s: float = 0.0,
        tick: Callable[[], None] | None = None,
        tick_s: float = 1.0,
        close: Callable[[], None] | None = None,
        stage: int = 1,
        exit_flush_s: float = 5.0,
    ) -> None:
        self.name = name
        self._handle = handle
        self._tick = tick
        self._tick_s = tick_s
        self._close = close
        self.max_queue = max_queue
        self.batch_max = max(1, batch_max)
        self.linger_s = linger_s
        self.stage = stage
        self.exit_flush_s = exit_flush_s
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Per-process state; also what a forked child starts from (the parent keeps its own items)."""
        self._lock = threading.Lock()
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = False
        self._warned: set[str] = set()
        self._markers = 0
        self._busy = 0  # items taken off the queue and not yet handled
        self._idle = True  # the thread waits (or has not started): a submit must wake it
        self.counts = {"submitted": 0, "handled": 0, "dropped": 0, "failed": 0}

    # -- the caller's side ---------------------------------------------------------------------------

    def submit(self, item: Any) -> bool:
        """Queue one item; False when it was dropped (queue full, or shut down). Never blocks or raises."""
        try:
            with self._lock:
                self.counts["submitted"] += 1
                if self._closed or len(self._queue) - self._markers >= self.max_queue:
                    self.counts["dropped"] += 1
                    full = not self._closed
                else:
                    self._queue.append(item)
                    if self._thread is None:
                        self._start_locked()
                    full = None
            if full is None:
                if self._idle:  # waking a busy thread costs the caller a lock for nothing
                    self._wake.set()
                return True
            if full:
                self._warn_once(
                    "full", "litelens: %s cannot keep up; its queue is full and items are dropped"
                )
            return False
        except Exception:  # nothing here may reach the user's LLM call
            return False

    def _start_locked(self) -> None:
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the interpreter is finalising
            self._closed = True
            return
        self._thread = thread
        _register_exit_hook()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted before this call was handled; False when `timeout` ran out."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return not self._queue
        if thread is threading.current_thread():
            return False
        marker = _Marker()
        with self._lock:
            self._markers += 1
            self._queue.append(marker)
        self._wake.set()
        return marker.event.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush (for at most `timeout` s), then stop the thread. Later submits are dropped and counted."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                return False  # stuck in its handler: a daemon, left behind rather than waited for
        return ok

    def stats(self) -> dict[str, int]:
        """`submitted`, `handled`, `dropped` (queue full or closed), `failed` (the handler raised), `queued`."""
        out = dict(self.counts)
        out["queued"] = max(len(self._queue) - self._markers + self._busy, 0)
        return out

    # -- the thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch, markers = self._take()
                if batch:
                    self._deliver(batch)
                for marker in markers:
                    marker.event.set()
                if self._stopping and not self._queue:
                    break
                if not batch and not markers:
                    # Order matters: say we are idle, then look at the queue, then wait. A submit that
                    # saw us busy appended before we looked; one that saw us idle sets the event.
                    self._wake.clear()
                    self._idle = True
                    idle = not self._queue and not self._stopping
                    if idle and not self._wake.wait(self._tick_s) and self._tick is not None:
                        self._guarded(self._tick, "tick")
                    self._idle = False
        finally:
            if self._close is not None:
                self._guarded(self._close, "close")
            for item in self._queue:
                if isinstance(item, _Marker):
                    item.event.set()

    def _take(self) -> tuple[list[Any], list[_Marker]]:
        if self.linger_s > 0 and self._queue and not self._stopping and len(self._queue) < self.batch_max:
            until = time.monotonic() + self.linger_s
            while len(self._queue) < self.batch_max and not self._stopping:
                if not isinstance(self._queue[-1], _Marker) and time.monotonic() < until:
                    time.sleep(min(0.01, self.linger_s))
                else:
                    break
        batch: list[Any] = []
        markers: list[_Marker] = []
        while self._queue and len(batch) < self.batch_max:
            item = self._queue.popleft()
            if isinstance(item, _Marker):
                with self._lock:
                    self._markers -= 1
                markers.append(item)
                break  # what came before the marker is handled before the marker is set
            batch.append(item)
        self._busy = len(batch)
        return batch, markers

    def _deliver(self, batch: list[Any]) -> None:
        try:
            self._handle(batch)
        except Exception as exc:
            done = min(max(exc.handled, 0), len(batch)) if isinstance(exc, PartlyHandled) else 0
            self.counts["handled"] += done
            self.counts["failed"] += len(batch) - done
            self._warn_once("handler", "litelens: %s failed on a batch; its items are lost", exc_info=True)
        else:
            self.counts["handled"] += len(batch)
        finally:
            self._busy = 0

    def _guarded(self, fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception:
            self._warn_once(what, f"litelens: %s failed in {what}", exc_info=True)

    def _warn_once(self, kind: str, msg: str, exc_info: bool = False) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                msg + " (further occurrences are only counted; see stats())", self.name, exc_info=exc_info
            )


_live: weakref.WeakSet[BackgroundQueue] = weakref.WeakSet()
_hook_registered = False


def _register_exit_hook() -> None:
    """Flush the queues at exit, lower stages first, before the HTTP transports' own final flush.

    Registered through the transport's hook list (lazily, when a first thread starts) so it runs after
    the callback's drain of LiteLLM's own async logging queue and before the HTTP sinks shut down.
    """
    global _hook_registered
    from litelens.transport import flush_at_multiprocessing_exit, run_before_exit

    flush_at_multiprocessing_exit()  # per process: a multiprocessing child skips atexit
    if _hook_registered:
        return
    _hook_registered = True
    run_before_exit(shutdown_all)


def shutdown_all() -> None:
    """Shut down every started queue, stage by stage, each within its `exit_flush_s`.

    A stage's queues drain at once, on their own threads, so each one's time counts from the start of
    its stage: two stuck sinks cost the exit one `exit_flush_s`, not one each.
    """
    stage, stage_start = None, 0.0
    for queue in sorted((q for q in list(_live) if q._thread is not None), key=lambda q: q.stage):
        if queue.stage != stage:
            stage, stage_start = queue.stage, time.monotonic()
        with contextlib.suppress(Exception):
            queue.shutdown(max(stage_start + queue.exit_flush_s - time.monotonic(), 0.0))


def _after_fork_in_child() -> None:
    for queue in list(_live):
        queue._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
