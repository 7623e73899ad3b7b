"""One engine for every wrapped LiteLLM function: sync, async, and the streams either returns.

`Engine.wrapper(endpoint)` gives the function `wrapt` installs. The sync and async variants are two
thin shells around the same `Call` object, which starts the span, makes it current while LiteLLM runs
(so HTTP client spans nest under it), and ends it from the response, from the exception, or -- for a
stream -- from the `TracedStream` proxy once the stream is over.

The rule that shapes everything here: the user's call behaves exactly as it would without us. Every
step of ours runs inside `Engine.guard`, which logs a failure once, counts the rest, and lets the call go
on untouched; the user's own exception is re-raised unchanged, with its original traceback.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import logging
import os
import random
import threading
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from litelens import semconv
from litelens.config import Limits
from litelens.credentials import has_secret, secret_values
from litelens.otel import endpoints
from litelens.otel.endpoints import Endpoint
from litelens.otel.metrics import Instruments
from litelens.record import OTEL_LINK_KEY, OTEL_LINK_READER, Record, cap, cap_strings

_log = logging.getLogger("litelens.otel")

Processor = Callable[[Record], "Record | None"]
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

# The traced LiteLLM call this context runs in. LiteLLM's entry points call each other (acompletion
# runs completion, text_completion and the responses bridge run completion): only the outermost gets a
# span. A context copied during a call outlives it -- LiteLLM runs the success callbacks in tasks and
# threads made from it -- and a call made there (a judge model in a callback) is a call of its own:
# so the mark is the Call, which says whether it still runs (`Call.encloses`).
_IN_CALL: ContextVar[Call | None] = ContextVar("litelens_otel_in_call", default=None)

# The first attempt of the LiteLLM Router request this context runs: its request's key
# (`Engine.router_request_of`), call id and span. A Router makes a request's attempts one after another
# in the context the request was made in (its task, or its thread), on every LiteLLM version here, and
# the mark set by one attempt stays there for the next; requests made together (`asyncio.gather`,
# threads) run in contexts of their own. So a retry finds its own request's first attempt here, even
# when the caller gave many requests one `litellm_trace_id` (one per conversation) -- which a table
# keyed by that id could not tell apart while they overlap.
_ROUTER_REQUEST: ContextVar[tuple[tuple[Any, ...], str, trace.SpanContext] | None] = ContextVar(
    "litelens_otel_router_request", default=None
)

_SPAN_STARTS_LIMIT = 1024
_MISSING = object()


class Engine:
    """Tracer, instruments and settings shared by every wrapper of one instrumentation."""

    def __init__(
        self,
        tracer: Tracer,
        instruments: Instruments,
        *,
        capture_content: bool,
        processors: Sequence[Processor],
        providers: frozenset[str],
        limits: Limits | None = None,
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.capture_content = capture_content
        # What a span carries is capped as in the core record (`record.cap`): the content when it is
        # captured, and with or without it the caller's metadata and tags, and the parameters. The check
        # is cheap (string lengths of the attributes, compared with the smallest limit, as the core
        # compares its encoded record); `cap` walks only a call that may be over a limit.
        self.limits = limits = limits or Limits()
        self.cap_above = min(limits.max_string_chars, limits.max_content_bytes, limits.max_metadata_bytes)
        self.processors = tuple(processors)
        self.providers = providers
        self.internal_errors = 0
        # False once uninstrumented: a name bound to a wrapper while instrumented (`from litellm import
        # completion`) keeps the wrapper, which must then call LiteLLM as if it were not there.
        self.active = True
        self._errors_lock = threading.Lock()
        self._span_starts: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}

    # -- failure containment --------------------------------------------------------------------

    def failed(self, where: str) -> None:
        """Count an exception raised inside the instrumentation; log the first one with its traceback."""
        with self._errors_lock:
            self.internal_errors += 1
            first = self.internal_errors == 1
        if first:
            _log.exception("litelens.otel: instrumentation failed in %s; the call was not affected", where)
        else:
            _log.debug("litelens.otel: instrumentation failed in %s", where, exc_info=True)

    # -- the wrappers ---------------------------------------------------------------------------

    def wrapper(self, endpoint: Endpoint, original: Callable[..., Any]) -> Wrapper:
        """The `wrapt` wrapper for one endpoint; `original` lends its signature for positional arguments."""
        positional = positional_names(original)

        if endpoint.is_async:

            async def run_async(
                wrapped: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> Any:
                call = self.begin(endpoint, positional, args, kwargs)
                if call is None:
                    return await wrapped(*args, **kwargs)
                return await _awaited(call, lambda: wrapped(*args, **call.kwargs))

            def traced_async(
                wrapped: Callable[..., Awaitable[Any]],
                instance: Any,
                args: tuple[Any, ...],
                kwargs: dict[str, Any],
            ) -> Any:
                # The coroutine the caller gets bears LiteLLM's name, as it would without us: Python's
                # "coroutine ... was never awaited" then names the function the user called.
                return _named_like(run_async(wrapped, args, kwargs), wrapped)

            return traced_async

        def traced(
            wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            call = self.begin(endpoint, positional, args, kwargs)
            if call is None:
                return wrapped(*args, **kwargs)
            tokens = call.enter()
            try:
                result = wrapped(*args, **call.kwargs)
            except BaseException as exc:
                call.exit(tokens)
                call.fail(exc)
                raise
            call.exit(tokens)
            if inspect.iscoroutine(result):
                # A sync entry point asked for a coroutine (`completion(..., acompletion=True)`,
                # `embedding(..., aembedding=True)`): an async call, whose span ends when it is awaited
                # and done. The async entry point LiteLLM runs inside it sees this call in its context
                # and gets no span of its own.
                call.record["is_async"] = True
                return _unless_dropped(call, result)
            return call.succeed(result)

        return traced

    def begin(
        self, endpoint: Endpoint, positional: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Call | None:
        """Start the span for a call, or None to run the call untraced (uninstrumented, nested, inside
        the SDK's `suppress_instrumentation()`, or we failed).

        Suppression is how an exporter, or code run by one, keeps its own work out of the telemetry: a
        span made there would be exported in turn, and an LLM call made while exporting would trace
        itself without end. Every OTel instrumentation stands aside there; so does this one.
        """
        outer = _IN_CALL.get()
        if not self.active or (outer is not None and outer.encloses()) or not is_instrumentation_enabled():
            return None
        try:
            arguments = dict(zip(positional, args, strict=False))
            arguments.update(kwargs)
            call_kwargs = kwargs
            call_id = kwargs.get("litellm_call_id")
            if not isinstance(call_id, str) or not call_id:
                # LiteLLM adopts a caller's call id, so the core callback and this span share it.
                call_id = new_call_id()
                call_kwargs = {**kwargs, "litellm_call_id": call_id}
            record = endpoints.request_record(
                endpoint, arguments, call_id, self.providers, self.capture_content
            )
            parent = trace.get_current_span().get_span_context()
            request, is_first = self.router_request_of(arguments, parent)
            first = _ROUTER_REQUEST.get() if request is not None and not is_first else None
            start_in = None
            first_attempt_id = None
            if first is not None and first[0] == request and first[1] != call_id:
                first_attempt_id = record["first_attempt_id"] = first[1]
                if not parent.is_valid:
                    # No span of the caller's holds the request's attempts together: each retry and
                    # fallback would root a trace of its own. They go under the first attempt instead.
                    parent = first[2]
                    start_in = trace.set_span_in_context(trace.NonRecordingSpan(parent))
            name, attributes = self.span_start(record)
            span = self.tracer.start_span(name, start_in, kind=SpanKind.CLIENT, attributes=attributes)
            if request is not None and is_first:
                # Set here, in the context the Router makes the next attempt in (not reset on return).
                _ROUTER_REQUEST.set((request, call_id, span.get_span_context()))
            if _core_layer_registered(kwargs):
                # The core's record names the first attempt the span names, once the span knows it.
                decided = request is not None and (is_first or first_attempt_id is not None)
                call_kwargs = _with_span_link(call_kwargs, span, parent, decided, first_attempt_id)
            return Call(self, record, span, call_kwargs, attributes)
        except Exception:
            self.failed("starting a span")
            return None

    def router_request_of(
        self, arguments: Mapping[str, Any], parent: Any
    ) -> tuple[tuple[Any, ...] | None, bool]:
        """For an attempt of a LiteLLM Router request, the key its request is remembered by (else None),
        and whether it is the request's first attempt.

        Each attempt is a call (and a span) of its own; what ties them is the Router's bookkeeping in
        the metadata it passes on: the request's `litellm_trace_id` on every attempt, `previous_models`
        on every one after the first. Neither tells apart requests that a caller gave one trace id:
        the context the attempts run in does (`_ROUTER_REQUEST`); the key only checks that the first
        attempt found there is of a request like this one (same trace id, same caller's span).
        """
        metadata = arguments.get("metadata")
        trace_id = arguments.get("litellm_trace_id")
        if (
            not isinstance(metadata, Mapping)
            or "model_group" not in metadata
            or not isinstance(trace_id, str)
        ):
            return None, False
        key = (trace_id, parent.span_id if parent.is_valid else None)
        return key, not metadata.get("previous_models")

    def span_start(self, record: Record) -> tuple[str, dict[str, Any]]:
        """The span's name and the attributes it starts with (see `_start_attributes`).

        Calls to one model through one API base differ only in their call id: the rest is built once
        and copied. Bounded like the metric attribute sets: past `_SPAN_STARTS_LIMIT` it starts afresh.
        """
        key = (record["litellm_call_type"], record["provider"], record["request_model"], record["api_base"])
        start = self._span_starts.get(key)
        if start is None:
            start = (semconv.span_name(record), _start_attributes(record, vetted=not self.processors))
            if len(self._span_starts) >= _SPAN_STARTS_LIMIT:
                self._span_starts.clear()
            self._span_starts[key] = start
        name, attributes = start
        return name, {**attributes, semconv.LITELLM_CALL_ID: record["call_id"]}


async def _awaited(
    call: Call, pending: Callable[[], Awaitable[Any]], finalizers: Sequence[weakref.finalize] = ()
) -> Any:
    """Await what `pending` gives with the call's span current; the span ends with the result or the
    exception. `pending` is called inside, so a call that fails before it is awaited ends the span too.
    Once running, the span is this coroutine's to end: the `finalizers` of `_unless_dropped` are off."""
    for finalizer in finalizers:
        finalizer.detach()
    tokens = call.enter()
    try:
        result = await pending()
    except BaseException as exc:
        call.exit(tokens)
        call.fail(exc)
        raise
    call.exit(tokens)
    return call.succeed(result)


def _named_like(coroutine: Coroutine[Any, Any, Any], like: Any) -> Coroutine[Any, Any, Any]:
    """`coroutine`, renamed after `like` (a LiteLLM function or coroutine), for the messages Python
    writes about it (never awaited, repr)."""
    named: Any = coroutine  # (typing's Coroutine does not declare the names a coroutine object has)
    try:
        named.__name__ = like.__name__
        named.__qualname__ = like.__qualname__
    except Exception:  # an object without names: ours stay
        pass
    return coroutine


class NeverAwaited(Exception):
    """What ends the span of a call whose coroutine was dropped unawaited: LiteLLM made no request."""


def _unless_dropped(call: Call, result: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any]:
    """A coroutine awaiting LiteLLM's `result` that ends the call's span (`_awaited`); if it is
    collected without ever running, the span ends then (status cancelled), rather than staying open
    and never being exported.

    It bears `result`'s name, and when it is dropped `result` is closed: Python then says once, as it
    would without us, that LiteLLM's coroutine (`acompletion`) was never awaited -- not `_awaited`,
    and not twice.

    The finalizer holds the call and `result`, not the coroutine, and only queues the span's work: the
    garbage collector may run it where the exporter's lock is held (see `streams._Reaper`).
    """
    from litelens.otel.streams import REAPER

    REAPER.start()
    finalizers: list[weakref.finalize] = []
    pending = _named_like(_awaited(call, lambda: result, finalizers), result)
    finalizer = weakref.finalize(pending, _dropped, call, os.getpid(), result)
    finalizer.atexit = False
    finalizers.append(finalizer)
    return _PendingCall(pending, call, result, finalizer)


class _PendingCall(collections.abc.Coroutine):
    """The coroutine `_unless_dropped` gives the caller, which also sees it end before its first step.

    A task cancelled before it starts throws the cancellation into a coroutine that never ran: none of
    `_awaited`'s code runs, so only the finalizer ended the span -- when the task was freed, however
    long the caller held it (a list of tasks, `gather`'s results), as never awaited and at that time.
    Here the throw (or a `close()`) of a coroutine not started ends the span there and then.

    A `collections.abc.Coroutine`, which asyncio takes wherever it takes a coroutine (`create_task`,
    `ensure_future`, `gather`, `run`); the rest (`cr_frame`, its name, ...) is the inner coroutine's.
    """

    __slots__ = ("_call", "_coroutine", "_finalizer", "_result")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, Any],
        call: Call,
        result: Coroutine[Any, Any, Any],
        finalizer: weakref.finalize,
    ) -> None:
        self._coroutine = coroutine
        self._call = call
        self._result = result
        self._finalizer = finalizer

    def send(self, value: Any) -> Any:
        return self._coroutine.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self._not_started():
            exc = typ if isinstance(typ, BaseException) else val
            if not isinstance(exc, BaseException):
                try:
                    exc = typ() if val is None else typ(val)
                except Exception:
                    exc = NeverAwaited("the coroutine ended before it started: no request was made")
            self._end(exc)
        if val is None and tb is None:
            return self._coroutine.throw(typ)
        return self._coroutine.throw(typ, val, tb)

    def close(self) -> None:
        if self._not_started():
            self._end(NeverAwaited("the coroutine was closed before it started: no request was made"))
        self._coroutine.close()

    def __await__(self) -> Any:
        return self._coroutine.__await__()

    def __getattr__(self, name: str) -> Any:
        if name in _PendingCall.__slots__:  # not set yet (a copy being made): not the inner's to answer
            raise AttributeError(name)
        return getattr(self._coroutine, name)

    def __repr__(self) -> str:
        return repr(self._coroutine)

    def _not_started(self) -> bool:
        with contextlib.suppress(Exception):
            return inspect.getcoroutinestate(self._coroutine) == inspect.CORO_CREATED
        return False

    def _end(self, exc: BaseException) -> None:
        """The call ends before it ran: LiteLLM's coroutine is closed (unstarted, so none of its code
        runs, and as without us Python says nothing of it), and the span ends now, as the call did."""
        self._finalizer.detach()
        with contextlib.suppress(Exception):
            self._result.close()
        self._call.fail(exc)


def _dropped(call: Call, pid: int, result: Coroutine[Any, Any, Any]) -> None:
    # Never started (so closing runs none of its code): the warning about it was given for `pending`.
    with contextlib.suppress(Exception):
        result.close()
    if pid == os.getpid():  # (not a forked child's copy of the parent's call)
        from litelens.otel.streams import REAPER

        REAPER.call(_never_awaited, call, time.perf_counter())


def _never_awaited(call: Call, dropped_at: float) -> None:
    exc = NeverAwaited("the coroutine was never awaited: no request was made")
    try:
        endpoints.apply_error(call.record, exc)
        call.end(exc, at=dropped_at)
    except Exception:
        call.engine.failed("ending the span of a coroutine never awaited")
        call.end_quietly()


class Call:
    """One traced LiteLLM call: its span, its record, and the single place the span ends."""

    __slots__ = (
        "_ended",
        "_lock",
        "engine",
        "kwargs",
        "record",
        "running",
        "span",
        "start_attributes",
        "started",
        "thread",
    )

    def __init__(
        self,
        engine: Engine,
        record: Record,
        span: trace.Span,
        kwargs: dict[str, Any],
        start_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.record = record
        self.span = span
        self.kwargs = kwargs
        # What the span started with: at the end only what changed is set again (the SDK validates and
        # copies every attribute it is given, so re-setting the unchanged ones is pure cost).
        self.start_attributes = start_attributes or {}
        self.started = time.perf_counter()
        self._ended = False
        self._lock = threading.Lock()
        self.running = False
        self.thread = 0

    def encloses(self) -> bool:
        """Whether a LiteLLM call made now, in a context copied from this call's, is part of it.

        While it runs, a sync call encloses only what runs on its own thread: LiteLLM runs a sync
        call's nested entry points inline, and its success callbacks on a pool thread. An async call
        hands its sync twin to an executor thread, so it encloses any thread while it runs; its async
        callbacks run as tasks once it has returned.
        """
        return self.running and (self.record["is_async"] or self.thread == threading.get_ident())

    def enter(self) -> tuple[Token[Call | None], Token[context.Context]]:
        """Make the span current and mark the context as inside a traced call; `exit` undoes both.

        A plain attach rather than `trace.use_span`, whose context manager adds a generator, its
        frames and exception plumbing to every call for options (record, set status, end) not used here.
        """
        self.running = True
        self.thread = threading.get_ident()
        return _IN_CALL.set(self), context.attach(trace.set_span_in_context(self.span))

    def exit(self, tokens: tuple[Token[Call | None], Token[context.Context]]) -> None:
        """Restore the context `enter` changed (the caller's span current, outside any traced call)."""
        self.running = False
        context.detach(tokens[1])
        _IN_CALL.reset(tokens[0])

    def succeed(self, result: Any) -> Any:
        """The call returned: end the span now, or hand it to a stream proxy that ends it later."""
        try:
            if self.record.get("stream") and (hasattr(result, "__next__") or hasattr(result, "__anext__")):
                from litelens.otel.streams import traced_stream

                return traced_stream(result, self)
            endpoints.apply_response(self.record, result, self.engine.capture_content)
            self.end()
        except Exception:
            self.engine.failed("recording a response")
            self.end_quietly()
        return result

    def secrets(self) -> list[str]:
        """This call's key values (api_key, credential headers), for scrubbing an error that echoes one."""
        kwargs = self.kwargs
        return secret_values(kwargs.get("api_key"), kwargs.get("extra_headers"), kwargs.get("headers"))

    def fail(self, exc: BaseException) -> None:
        """The call raised `exc`: mark the span failed and end it (the caller re-raises)."""
        try:
            endpoints.apply_error(self.record, exc, self.secrets(), self.kwargs)
            self.end(exc)
        except Exception:
            self.engine.failed("recording an error")
            self.end_quietly()

    def end(
        self,
        exc: BaseException | None = None,
        ttft_s: float | None = None,
        extra: Mapping[str, Any] | None = None,
        at: float | None = None,
        chunk_gaps: Iterable[float] = (),
    ) -> None:
        """Put the finished record on the span, record metrics, end the span. Runs at most once.

        `at` is the `perf_counter` time the call ended, when that was before now (a dropped stream is
        ended later, on another thread); `chunk_gaps` a stream's seconds between its output chunks.
        """
        with self._lock:
            if self._ended:
                return
            self._ended = True
        engine = self.engine
        span = self.span
        record = self.record
        now = time.perf_counter()
        ended = now if at is None else min(at, now)
        end_ns = time.time_ns() - int((now - ended) * 1e9)
        try:
            endpoints.finish_times(record, ended - self.started, ttft_s)
            processed = self._processed(record)
            if processed is None:
                processed, capture = _unvetted(record, engine), False
            else:
                capture = engine.capture_content
            attributes = semconv.record_to_attributes(processed, capture_content=capture)
            if _text_length(attributes) > engine.cap_above:
                # A copy: `cap` sets the record's top-level fields (request, tags, session id...).
                capped = cap({**processed}, engine.limits)
                # A tag is cut to 200 characters unmarked, as in the core record.
                cut = capped.get("truncated") != processed.get("truncated")
                if cut or capped["tags"] != processed.get("tags"):
                    attributes = semconv.record_to_attributes(capped, capture_content=capture)
            if extra:
                attributes.update(extra)
            started = self.start_attributes
            changed = {k: v for k, v in attributes.items() if started.get(k, _MISSING) != v}
            if changed:
                span.set_attributes(changed)
            if exc is not None and record.get("status") == "error":
                self._record_error(exc, record, processed)
        finally:
            # Whatever failed above, the span still ends: an open span is a leak the user pays for.
            span.end(end_time=end_ns)
        engine.instruments.record(record, attributes, chunk_gaps)

    def _record_error(self, exc: BaseException, record: Record, processed: Record | None) -> None:
        """The exception event and the span status -- with the processed message when processors run.

        Without processors, the SDK's own record_exception. With them (or with a credential in the
        exception's text), the raw `str(exc)` must not reach the span behind the redactor's back: the
        event's message and the status description are the processed record's error message, and the
        stack trace keeps only frames (file, line, code), which carry no message text. So too when the
        SDK's text would be over the string limit (a proxy's HTML error page, echoed in every exception
        of the chain): the record's message is already cut, and the stack trace is cut to the limit.
        """
        span = self.span
        limit = self.engine.limits.max_string_chars
        if not self.engine.processors:
            # As the SDK would -- unless the message or the chained ones hold a credential (a provider
            # echoing a key), which `error.message` has scrubbed, or are too long: then as below.
            text = "".join(traceback.format_exception(exc))
            if len(text) <= limit and not has_secret(text) and not any(s in text for s in self.secrets()):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
                return
            processed = record
        error = (processed or {}).get("error") or {}
        message = str(error.get("message") or "") if isinstance(error, Mapping) else ""
        message = cap_strings(message, limit, "error.message", [])
        frames = "".join(traceback.format_tb(exc.__traceback__))
        name = type(exc).__qualname__
        stack = f"Traceback (most recent call last):\n{frames}{name}: {message}".rstrip()
        stack = cap_strings(stack, limit, "error.stacktrace", [])
        span.record_exception(exc, {"exception.message": message, "exception.stacktrace": stack})
        span.set_status(Status(StatusCode.ERROR, (message or name)[:500]))

    def _processed(self, record: Record) -> Record | None:
        """The record after the user's processors (structlog-style callables: record -> record | None).

        A processor that returns None drops the record's content from the span -- not the span, which
        is already part of the trace. A processor that raises counts as an instrumentation failure, and
        the span gets no content either: a broken redactor must not leak what it was meant to remove.
        """
        if not self.engine.processors:
            return record
        # The record holds the caller's own objects (the messages list, tools, metadata values): the
        # processors get copies, so one that edits in place cannot rewrite the caller's conversation.
        try:
            current: Record | None = _owned(record)
            for processor in self.engine.processors:
                if current is None:
                    break
                current = processor(current)
        except Exception:
            self.engine.failed("a record processor")
            return None
        return current

    def end_quietly(self) -> None:
        """End the span after our own failure, so a bug of ours never leaves a span open."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        try:
            self.span.end()
        except Exception:
            self.engine.failed("ending a span")


def _text_length(attributes: Mapping[str, Any]) -> int:
    """The characters of a span's string attributes, in lists too (tags): a bound on what `cap` could
    find to cut."""
    total = 0
    for value in attributes.values():
        if type(value) is str:
            total += len(value)
        elif type(value) is list:
            total += sum(len(v) for v in value if type(v) is str)
    return total


def _owned(value: Any) -> Any:
    """A copy of the dicts and lists in `value`, all the way down (other objects are shared)."""
    if isinstance(value, dict):
        return {k: _owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_owned(v) for v in value]
    return value


def _start_attributes(record: Record, vetted: bool) -> dict[str, Any]:
    """The attributes a span starts with, its call id aside: what samplers may look at, as
    `record_to_attributes` names it.

    Only what the conventions ask for at span creation (operation, provider, request model, server
    address and port) and the call's identity; the rest goes on at the end, once, after the processors.
    Free text waits for the processors too (`vetted` is False when there are some): what a span starts
    with, a processor cannot take back -- so the API base and the address made of it wait as well.
    """
    operation = semconv.operation_name(str(record.get("call_type") or "chat"))
    attributes: dict[str, Any] = {semconv.GEN_AI_OPERATION_NAME: operation}
    provider = record.get("provider")
    if provider:
        attributes[semconv.GEN_AI_PROVIDER_NAME] = name = semconv.provider_name(provider)
        if name != provider:
            attributes[semconv.LITELLM_PROVIDER] = provider
    model = record.get("request_model")
    if model is not None:
        attributes[semconv.GEN_AI_REQUEST_MODEL] = model
    api_base = record.get("api_base")
    if vetted and api_base:
        address, port = semconv.address_of(api_base)
        if address is not None:
            attributes[semconv.SERVER_ADDRESS] = address
        if port is not None:
            attributes[semconv.SERVER_PORT] = port
    attributes[semconv.LITELLM_CALL_TYPE] = record["litellm_call_type"]
    return attributes


def _unvetted(record: Record, engine: Engine) -> Record:
    """What of a record may go on a span when its processors dropped it or failed on it.

    Without processors, the whole record (its content aside). With them, the free-text fields they
    were there to vet -- metadata, the error message, the API base URL -- stay off: a processor that
    failed may have been the redactor.
    """
    if not engine.processors:
        return record
    error = record.get("error")
    if isinstance(error, Mapping):
        error = {k: v for k, v in error.items() if k in ("type", "status_code", "code", "provider")}
    return {**record, "metadata": None, "api_base": None, "error": error}


_getrandbits = random.getrandbits
_UUID4_BITS = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant
_UUID4_MASK = ~((0xF << 76) | (0xC000 << 48)) & ((1 << 128) - 1)


def new_call_id() -> str:
    """A fresh call id in UUID-4 form, from the same generator the SDK draws trace ids from.

    `uuid.uuid4()` reads the OS's entropy source through a system call on every call; a call id needs
    uniqueness, not secrecy, and `random` (seeded from the OS at start and again after a fork) gives
    128 bits at a fraction of the cost.
    """
    digits = "%032x" % ((_getrandbits(128) & _UUID4_MASK) | _UUID4_BITS)
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def positional_names(function: Callable[..., Any]) -> tuple[str, ...]:
    """Names of the parameters a caller may pass positionally (`completion(model, messages)`)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in kinds)


# LiteLLM's lists of loggers: `callbacks` as the user set it, and the lists LiteLLM copies it into.
_LOGGER_LISTS = ("callbacks", "success_callback", "_async_success_callback", "failure_callback")


def _core_layer_registered(kwargs: Mapping[str, Any]) -> bool:
    """Whether a logger that reads the span link (the core callback) is registered, globally or per call.

    Without one, the link would be a metadata copy for nobody -- and LiteLLM does a little more work
    for every call whose metadata is not empty.
    """
    import litellm  # already imported: the wrapped function is LiteLLM's

    per_call = kwargs.get("callbacks")
    if isinstance(per_call, list) and _has_link_reader(per_call):
        return True
    return any(_has_link_reader(getattr(litellm, name, None)) for name in _LOGGER_LISTS)


def _has_link_reader(loggers: Any) -> bool:
    return isinstance(loggers, list) and any(getattr(lg, OTEL_LINK_READER, False) is True for lg in loggers)


def _with_span_link(
    kwargs: dict[str, Any],
    span: trace.Span,
    parent: trace.SpanContext,
    router_attempt: bool = False,
    first_attempt_id: str | None = None,
) -> dict[str, Any]:
    """The call's kwargs with the span's ids in `metadata`, for the core callback's record of this call.

    A Router's attempt (`router_attempt`) also carries the first attempt of its request as the span
    names it (None on the first): the core's record then says the same, where its own guess from the
    payload may not (its hooks run after the attempts, and not in their order).

    A copy: the caller's dict and metadata stay as they were. A span that is not recording (sampled out,
    no SDK) has nothing to link to.
    """
    context = span.get_span_context()
    if not context.is_valid or not span.is_recording():
        return kwargs
    meta = kwargs.get("metadata")
    link = {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent.is_valid else None,
    }
    if router_attempt:
        link["first_attempt_id"] = first_attempt_id
    return {**kwargs, "metadata": {**(meta if isinstance(meta, dict) else {}), OTEL_LINK_KEY: link}}
