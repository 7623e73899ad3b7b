"""Calls LiteLLM has finished but not yet reported to its loggers, and how flush() and exit get them.

LiteLLM tells its loggers of a call after the call has returned: a sync call from its logging thread
pool, an async call from its logging worker (a queue of coroutines that it runs as tasks on the
caller's event loop). A script's or a serverless handler's last calls are still there when it flushes
or exits, so `flush()` waits for the pool and runs what the worker holds for an event loop that has
ended, and the exit hook runs the rest.

All of this reads LiteLLM's private state, guarded: if LiteLLM changes shape, a flush sends what has
arrived, and LiteLLM's own exit hook runs what it still holds, as it would without litelens.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("litelens.callback")

# How long one rescued log event may run (LiteLLM gives its own callbacks the same order of time).
_EVENT_TIMEOUT_S = 10.0
# Log events handed over and not started yet; beyond this many, new ones go unguarded.
_MAX_WAITING = 100_000


def wait_for_litellm_pool(deadline: float | None) -> None:
    """Wait (until `deadline`) for LiteLLM's logging thread pool to finish the tasks it has queued.

    Reads the pool's private state, guarded: LiteLLM >= 1.100 counts queued-plus-running tasks in a
    semaphore; a plain ThreadPoolExecutor (older releases) says idle when its queue is empty and every
    worker thread is idle. Called from one of the pool's own threads it does not wait (it would wait
    for itself).
    """
    try:
        from litellm.litellm_core_utils.thread_pool_executor import executor
    except ImportError:
        return
    if threading.current_thread() in getattr(executor, "_threads", ()):
        return

    def idle() -> bool:
        slots, cap = getattr(executor, "_pending_slots", None), getattr(executor, "_max_pending_tasks", None)
        if slots is not None and isinstance(cap, int):
            return bool(getattr(slots, "_value", cap) >= cap)
        queue, spare = getattr(executor, "_work_queue", None), getattr(executor, "_idle_semaphore", None)
        if queue is None or spare is None:
            return True
        return bool(queue.empty() and getattr(spare, "_value", 0) >= len(getattr(executor, "_threads", ())))

    try:
        while not idle() and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.001)
    except Exception:  # LiteLLM changed shape: flush what has arrived
        return


# ---- Log events cancelled before they started.
#
# `asyncio.run()` cancels every task still pending when its main coroutine returns. If LiteLLM's worker
# has just taken a call's log event off its queue and made it a task, that task is cancelled before its
# first step: the coroutine is closed without having run, and LiteLLM forgets it (1.80 to 1.110). The
# script's last call, made inside `asyncio.gather()`, was never recorded. So each coroutine is handed
# to the worker inside a guard whose first step crosses it off `_waiting`. A guard that was closed
# before its first step leaves its coroutine here, unstarted, and flush() or the exit hook runs it.

_waiting: dict[int, tuple[Coroutine[Any, Any, Any], Coroutine[Any, Any, Any], contextvars.Context]] = {}
_GUARD_MARK = "_litelens_guards_handover"


def guard_litellm_worker() -> None:
    """Hand every coroutine given to LiteLLM's logging worker over in a guard, once per process."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker
    except ImportError:  # older LiteLLM: no worker, async hooks ran as plain tasks
        return
    original = getattr(worker, "enqueue", None)
    if not callable(original) or getattr(original, _GUARD_MARK, False):
        return

    def enqueue(coroutine: Any) -> None:
        if len(_waiting) < _MAX_WAITING and inspect.iscoroutine(coroutine):
            coroutine = _guarded(coroutine)
        original(coroutine)

    setattr(enqueue, _GUARD_MARK, True)
    worker.enqueue = enqueue  # type: ignore[method-assign]  # LiteLLM calls it as `self.enqueue(...)`, so the instance's wins
    _carry_over_on_loop_change(worker)


def _carry_over_on_loop_change(worker: Any) -> None:
    """Keep what an ended event loop left in LiteLLM's queue when the next loop starts logging.

    LiteLLM 1.80 binds its worker's queue to an event loop, and the first log event of a new loop made
    it a new, empty queue: the events the last loop had left (an `asyncio.run()` per task, flushed once
    at the end) were dropped, so only the last run's calls were recorded. Later releases carry them over
    themselves (`_drain_pending`); on those nothing is changed. Here they are put into the new queue, as
    those releases do, and run on the new loop.
    """
    original = getattr(worker, "_ensure_queue", None)
    if not callable(original) or hasattr(worker, "_drain_pending") or getattr(original, _GUARD_MARK, False):
        return

    def ensure_queue() -> None:
        left: list[Any] = []
        try:
            queue = worker._queue
            if queue is not None and worker._bound_loop is not asyncio.get_running_loop():
                while not queue.empty():
                    left.append(queue.get_nowait())
        except Exception:  # no running loop (LiteLLM does nothing then), or LiteLLM changed shape
            pass
        original()
        for task in left:
            try:
                worker._queue.put_nowait(task)
            except Exception:  # full: LiteLLM drops the newest of its own too
                log.debug("litelens: a LiteLLM log event of an ended event loop was dropped", exc_info=True)
                break

    setattr(ensure_queue, _GUARD_MARK, True)
    worker._ensure_queue = ensure_queue


def _guarded(coroutine: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
    key = id(coroutine)  # unique while the entry holds the coroutine

    async def guard() -> Any:
        _waiting.pop(key, None)
        return await coroutine

    wrapper = guard()
    # LiteLLM names a timed-out callback by its coroutine's name.
    wrapper.__qualname__ = getattr(coroutine, "__qualname__", wrapper.__qualname__)  # type: ignore[attr-defined]
    _waiting[key] = (wrapper, coroutine, contextvars.copy_context())
    return wrapper


def _take_cancelled() -> list[tuple[Coroutine[Any, Any, Any], contextvars.Context]]:
    """The coroutines whose guard was closed before it started, removed from `_waiting`."""
    taken = []
    for key, (wrapper, coroutine, context) in list(_waiting.items()):
        # Popped, not deleted: two threads flushing at once must not both take (or both fail on) one.
        if inspect.getcoroutinestate(wrapper) == inspect.CORO_CLOSED and _waiting.pop(key, None) is not None:
            taken.append((coroutine, context))
    return taken


def _run_each(events: list[tuple[Coroutine[Any, Any, Any], contextvars.Context]]) -> None:
    """Run log events to their end on an event loop of this thread's own, each in its caller's context."""
    if not events:
        return
    loop = asyncio.new_event_loop()
    try:
        for coroutine, context in events:
            try:
                context.run(loop.run_until_complete, asyncio.wait_for(coroutine, _EVENT_TIMEOUT_S))
            except BaseException:  # one event's failure is that event's; the others still run
                log.debug("litelens: a LiteLLM log event failed when run late", exc_info=True)
    finally:
        loop.close()


# ---- flush() and exit.
#
# Running a log event sets and closes an event loop, which must not become the caller's: the events
# run on one thread of litelens' own, in the order they were handed to it. A flush that runs out of
# time leaves its events to that thread, and the next flush's events queue behind them.

_jobs: list[Callable[[], None]] = []
_jobs_lock = threading.Lock()
_runner: threading.Thread | None = None


def _submit(jobs: list[Callable[[], None]]) -> threading.Event:
    """Queue `jobs` for the runner thread (started if none runs); the event is set once they are done."""
    global _runner
    done = threading.Event()
    with _jobs_lock:
        _jobs.extend(jobs)
        _jobs.append(done.set)
        if _runner is None:
            _runner = threading.Thread(target=_run_jobs, name="litelens-drain-litellm-logging", daemon=True)
            _runner.start()
    return done


def _run_inline(jobs: list[Callable[[], None]]) -> None:
    for job in jobs:
        try:
            job()
        except BaseException:  # LiteLLM's drain failing is LiteLLM's; the next job still runs
            log.debug("litelens: running LiteLLM's leftover log events failed", exc_info=True)


def _run_jobs() -> None:
    global _runner
    while True:
        with _jobs_lock:
            if not _jobs:
                _runner = None
                return
            job = _jobs.pop(0)
        _run_inline([job])


def _leftovers() -> list[Callable[[], None]]:
    """What is left to run of the event loops that have ended: LiteLLM's queue, if its loop was closed,
    then the events cancelled before they started."""
    jobs: list[Callable[[], None]] = []
    drain = _worker_drain_for_ended_loop()
    if drain is not None:
        jobs.append(drain)
    cancelled = _take_cancelled()
    if cancelled:
        jobs.append(lambda: _run_each(cancelled))
    return jobs


def run_what_ended_loops_left(deadline: float | None) -> None:
    """Run the log events LiteLLM still holds for event loops that have ended, until `deadline`.

    `asyncio.run(handler())` then `flush()`: the worker's queue keeps the last calls' events, which
    LiteLLM would run at exit only, and events cancelled before they started (see above) would never
    run. Nothing is done for a loop still open: that loop runs its own events.
    """
    jobs = _leftovers()
    with _jobs_lock:
        busy = _runner is not None  # still running what an earlier flush, out of time, left to it
    if jobs or busy:
        _submit(jobs).wait(None if deadline is None else max(0.0, deadline - time.monotonic()))


def _worker_drain_for_ended_loop() -> Callable[[], None] | None:
    """LiteLLM's own exit drain, when its worker holds events for a loop that has been closed."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker
    except ImportError:  # older LiteLLM: no worker, async hooks ran as plain tasks
        return None
    try:
        queue, loop, drain = worker._queue, worker._bound_loop, worker._flush_on_exit
        if queue is None or loop is None or not loop.is_closed() or not callable(drain):
            return None
        pending = getattr(worker, "pending_count", None)
        if not (pending if isinstance(pending, int) else queue.qsize()):
            return None
    except Exception:  # LiteLLM changed shape: what it holds is run at exit, as before
        return None
    return drain


def drain_at_exit() -> None:
    """Let LiteLLM run the async log events still queued at exit (an `asyncio.run()` script's last
    calls), then run those cancelled before they started. LiteLLM's drain is called whatever its loop:
    at exit no loop will run them any more."""
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
    except ImportError:  # older LiteLLM: no worker, async hooks ran as plain tasks
        return
    jobs: list[Callable[[], None]] = []
    flush = getattr(GLOBAL_LOGGING_WORKER, "_flush_on_exit", None)
    if callable(flush):
        jobs.append(flush)
    jobs.append(lambda: _run_each(_take_cancelled()))
    # Behind what a flush left running (each event has a time limit: LiteLLM's, and _EVENT_TIMEOUT_S
    # here), then on this thread: a thread started at exit may be refused.
    with _jobs_lock:
        runner = _runner
    if runner is not None:
        runner.join()
    _run_inline(jobs)


# ---- A forked child (gunicorn --preload, a multiprocessing pool).
#
# LiteLLM reports a sync call from a thread pool made at import. A child forked after the parent used it
# inherits the pool's bookkeeping but none of its threads: the pool counts the parent's threads as its
# own (and one idle), starts none, and the child's log events wait in its queue for ever -- the child's
# calls were never recorded, and each flush waited its whole timeout for the pool. So the child gets the
# pool as it was at import: no threads, an empty queue (what the parent queued is the parent's to run),
# fresh locks. Likewise the runner of leftover events here, which is the parent's thread.


def _fresh_litellm_pool() -> None:
    module = sys.modules.get("litellm.litellm_core_utils.thread_pool_executor")
    executor = getattr(module, "executor", None)
    if not isinstance(executor, ThreadPoolExecutor):
        return
    try:
        ThreadPoolExecutor.__init__(
            executor,
            max_workers=executor._max_workers,
            thread_name_prefix=executor._thread_name_prefix or "",
            initializer=executor._initializer,
            initargs=executor._initargs,
        )
        # LiteLLM >= 1.100 caps queued-plus-running tasks; the slots the parent's tasks held are free here.
        cap = getattr(executor, "_max_pending_tasks", None)
        if isinstance(cap, int) and hasattr(executor, "_pending_slots"):
            executor._pending_slots = threading.Semaphore(cap)
        if hasattr(executor, "_drop_lock"):
            executor._drop_lock = threading.Lock()
    except Exception:  # LiteLLM changed shape: left as it is, as without litelens
        log.debug("litelens: could not renew LiteLLM's logging pool after fork", exc_info=True)


def _forget_parents_log_events() -> None:
    """Drop the async log events the parent had queued: they are the parent's calls, which the parent
    reports. Left in the child, LiteLLM carried them onto the child's first event loop, or a flush or
    the exit ran them here, and every call the parent had not reported yet was recorded once more by
    each child."""
    unstarted: list[Any] = []
    for wrapper, coroutine, _context in _waiting.values():
        unstarted += (wrapper, coroutine)
    _waiting.clear()
    module = sys.modules.get("litellm.litellm_core_utils.logging_worker")
    worker = getattr(module, "GLOBAL_LOGGING_WORKER", None)
    try:
        queue = getattr(worker, "_queue", None)
        items = list(getattr(queue, "_queue", ()))  # the asyncio.Queue's own deque: no loop needed
        for name in ("_dequeued_tasks", "_pending_enqueues"):
            items += list(getattr(worker, name, {}).values())
        unstarted += (item.get("coroutine") if isinstance(item, dict) else item for item in items)
        if queue is not None:
            worker._queue = None  # type: ignore[union-attr]  # made anew on the child's first event loop
            worker._bound_loop = None  # type: ignore[union-attr]
            worker._sem = None  # type: ignore[union-attr]
            worker._worker_task = None  # type: ignore[union-attr]
        for name in ("_running_tasks", "_overflow_tasks", "_dequeued_tasks", "_pending_enqueues"):
            held = getattr(worker, name, None)
            if isinstance(held, (set, dict)):
                held.clear()
    except Exception:  # LiteLLM changed shape: left as it is, as without litelens
        log.debug("litelens: could not clear LiteLLM's logging queue after fork", exc_info=True)
    for coroutine in unstarted:
        # Closed unstarted, so none runs nor warns that it was never awaited; one the parent had begun
        # is left alone (closing it would run its cleanup here).
        if inspect.iscoroutine(coroutine) and inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
            coroutine.close()


def _after_fork_in_child() -> None:
    global _jobs_lock, _runner
    _jobs_lock = threading.Lock()
    _runner = None
    _jobs.clear()
    _fresh_litellm_pool()
    _forget_parents_log_events()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
