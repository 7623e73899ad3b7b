"""The callback's front when sinks are configured: one queue and thread that build and process each
record once, then hand the encoded line to every sink's own queue.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from litelens.sinks import FanOut, Sink, deadline_of, remaining
from litelens.worker import BackgroundQueue

__all__ = ["Dispatcher"]


class Dispatcher:
    """The callback's front when sinks are set: its queue and thread run `prepare` (build the record,
    run the processors, encode) once per call, then hand the line to every sink's own queue.

    It has the transport's interface (`submit`, `flush`, `shutdown`, `stats`), so `Callback.transport`
    is either the plain transport (the default: the server only, exactly as without sinks) or this.
    """

    def __init__(
        self,
        sinks: Iterable[Sink],
        prepare: Callable[[Any], str | None],
        *,
        max_queue: int = 10_000,
        exit_flush_s: float = 5.0,
    ) -> None:
        self.sinks = FanOut(*sinks)
        self._prepare = prepare
        self._failed = 0
        self._queue = BackgroundQueue(
            self._handle,
            name="litelens-dispatch",
            max_queue=max_queue,
            stage=1,
            exit_flush_s=exit_flush_s,
        )

    def _handle(self, items: list[Any]) -> None:
        for item in items:
            try:
                line = self._prepare(item)
            except Exception:
                self._failed += 1
                continue
            if line is not None:
                self.sinks.submit(line)

    def submit(self, item: Any) -> None:
        self._queue.submit(item)

    def start(self) -> None:
        """Start the sinks that send to a server, so they resend what an earlier process spooled."""
        self.sinks.start()

    def flush(self, timeout: float | None = None) -> bool:
        deadline = deadline_of(timeout)
        ok = self._queue.flush(timeout)
        return self.sinks.flush(remaining(deadline)) and ok

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = deadline_of(timeout)
        ok = self._queue.shutdown(timeout)
        return self.sinks.shutdown(remaining(deadline)) and ok

    def stats(self) -> dict[str, int]:
        """The front's `submitted`, `queued`, `dropped`, `failed`, then `sink.<name>.<counter>` per sink."""
        own = self._queue.stats()
        out = {
            "submitted": own["submitted"],
            "queued": own["queued"],
            "dropped": own["dropped"],
            "failed": own["failed"] + self._failed,
        }
        out.update({f"sink.{key}": value for key, value in self.sinks.stats().items()})
        return out
