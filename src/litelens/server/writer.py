"""Group commit: concurrent ingest requests share one write transaction, and each still waits for it.

Why: a commit costs the same whether it carries one batch or five, and batches that arrive together
share rollup and session rows (the same minutes, models, users), which are then written once. One
writer thread takes every batch queued while the previous transaction ran (up to `max_records`), writes
them with `Store.write_prepared`, and only then releases their requests, so a request is still answered
2xx only after its own data is committed. With one request in flight it is just a write.

If a shared transaction fails, each of its batches is written again on its own, so one batch the store
refuses (a value out of range: a 400 for that request) does not fail its neighbours.

Each batch is prepared (`Store.prepare_write`: rows, JSON, rollup contributions) in the calling request's
thread before it is queued, so that Python work runs while the writer thread is inside SQLite or waiting
for a commit's fsync, and the writer, the one part that cannot run twice at once, only writes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from litelens.server.ingest import IngestError
from litelens.server.store.base import Record, Span, Store, StoreUnavailable, WriteBatch

log = logging.getLogger("litelens.server")


class _Pending:
    __slots__ = ("count", "done", "error", "prepared", "weight")

    def __init__(self, prepared: Any, count: int, weight: int) -> None:
        self.prepared = prepared
        self.count = count
        self.weight = weight
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """`write()` with the signature of `Store.write`, committed together with concurrent callers'."""

    def __init__(self, store: Store, max_records: int = 20_000, max_queued: int = 100_000) -> None:
        self.store = store
        self.max_records = max_records
        self.max_queued = max_queued
        """Records and spans waiting for the writer past which a request is refused with 429: each waits
        in memory with its request, and without a bound a store slower than the senders took the whole
        memory of the process."""
        self._queued = 0
        self._queue: deque[_Pending] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="litelens-writer", daemon=True)
        self._thread.start()

    def write(
        self,
        project_id: int,
        records: list[Record],
        spans: list[Span],
        texts: Sequence[str | None] | None = None,
    ) -> None:
        """Blocks until the batch is committed; raises what the store raised for it."""
        weight = len(records) + len(spans)
        self._check_room(weight)
        prepared = self.store.prepare_write(WriteBatch(project_id, records, spans, texts))
        pending = _Pending(prepared, len(records), weight)
        with self._wake:
            if self._closed:
                raise RuntimeError("litelens: the writer is closed")
            self._check_room(weight)
            self._queue.append(pending)
            self._queued += weight
            self._wake.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def _check_room(self, weight: int) -> None:
        """429 when the queue is not empty and this batch would take it past `max_queued` (a batch
        larger than the bound alone still goes through once the queue is empty)."""
        queued = self._queued
        if queued and queued + weight > self.max_queued:
            raise IngestError(
                429,
                f"the collector is busy: {queued} records and spans are waiting to be written "
                f"(LITELENS_MAX_QUEUED_RECORDS={self.max_queued}); retry later",
                {"Retry-After": "1"},
            )

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout)

    def _take(self) -> list[_Pending]:
        with self._wake:
            while not self._queue:
                if self._closed:
                    return []
                self._wake.wait()
            taken = [self._queue.popleft()]
            count = taken[0].count
            while self._queue and count + self._queue[0].count <= self.max_records:
                item = self._queue.popleft()
                count += item.count
                taken.append(item)
            self._queued -= sum(p.weight for p in taken)
            return taken

    def _run(self) -> None:
        while taken := self._take():
            try:
                self.store.write_prepared([p.prepared for p in taken])
            except BaseException as exc:
                if len(taken) == 1:
                    taken[0].error = exc
                elif isinstance(exc, StoreUnavailable):
                    # Not written again one by one, as below: no batch is at fault, and each would in
                    # turn wait for the database to fail it (a connect timeout each, when unreachable).
                    for pending in taken:
                        pending.error = StoreUnavailable(*exc.args)  # (each raised in its own thread)
                else:
                    log.debug("shared write failed (%s); writing its %d batches one by one", exc, len(taken))
                    for pending in taken:
                        try:
                            self.store.write_prepared([pending.prepared])
                        except BaseException as one:
                            pending.error = one
            for pending in taken:
                pending.done.set()
