"""The stream proxy: a LiteLLM stream that ends its span however the caller stops reading it.

LiteLLM returns a stream object (`CustomStreamWrapper`, the Responses API iterators) whose life is the
caller's business: read to the end, closed half-way, dropped on the floor, or cut off by a cancelled
task. `TracedStream` is a `wrapt.ObjectProxy`, so the caller still holds "the same" object (attributes,
`isinstance`, methods), and it ends the call's span exactly once in each of those cases, setting
`litelens.stream.outcome` to `completed`, `closed`, `error` or `abandoned`. The proxy speaks the
iteration protocols the stream speaks, sync, async or both, and no other (`traced_stream` picks it).

The bookkeeping lives in `StreamState`, which the proxy and a `weakref.finalize` share. The finalizer
must not hold the proxy (it would never be collected); it holds the LiteLLM stream, which the proxy
keeps alive anyway, so that it can close a stream the caller dropped and give its connection back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import threading
import time
import weakref
from array import array
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import wrapt

from litelens.otel import endpoints
from litelens.otel.endpoints import field
from litelens.record import usage_of

if TYPE_CHECKING:
    from litelens.otel.wrappers import Call

STREAM_OUTCOME = "litelens.stream.outcome"

# Responses API events that carry the whole response (usage, id, status) at the end of a stream.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# ... and the first ones, which name it (its id and model) before any output.
_FIRST_EVENTS = frozenset({"response.created", "response.in_progress"})
# Characters of a streamed text kept past the size limit its span cuts it to: the record's processors
# run before that cut, and a redactor must see a secret that straddles it whole.
_KEPT_PAST_LIMIT = 1024


class StreamedText:
    """One streamed text (a choice's answer, a tool call's arguments), kept only as far as its span can
    show it: past `keep` characters the pieces are counted, not held, so a long stream holds a bounded
    amount of text. `text()` ends with the cut's marker, which `record.cap` counts in when it cuts the
    text to the limit: the span shows what it would show had the whole text been kept."""

    __slots__ = ("keep", "kept", "parts", "pieces", "total")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept = 0
        self.parts: list[str] = []
        self.pieces = 0
        self.total = 0

    def add(self, piece: str) -> None:
        self.pieces += 1
        self.total += len(piece)
        room = self.keep - self.kept
        if room > 0:
            if len(piece) > room:
                piece = piece[:room]
            self.parts.append(piece)
            self.kept += len(piece)

    def text(self) -> str:
        text = "".join(self.parts)
        dropped = self.total - self.kept
        return f"{text}…[truncated {dropped} chars]" if dropped else text


class StreamState:
    """What the chunks said so far, and the one `finish` that turns it into the span's end."""

    __slots__ = (
        "call",
        "capture",
        "chunks",
        "done",
        "events",
        "final",
        "first_chunk_s",
        "gaps",
        "last_chunk_at",
        "reasons",
        "response_id",
        "response_model",
        "text_limit",
        "texts",
        "tool_calls",
        "usage",
    )

    def __init__(self, call: Call) -> None:
        self.call = call
        self.chunks = 0
        self.done = False
        self.events = False
        self.final: Any = None
        self.first_chunk_s: float | None = None
        # Seconds from each output chunk after the first to the one before it, for the conventions'
        # time-per-output-chunk histogram: recorded when the span ends, with its final attributes.
        self.gaps = array("d")
        self.last_chunk_at = 0.0
        self.reasons: dict[int, str] = {}
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.capture = call.engine.capture_content
        self.texts: dict[int, StreamedText] = {}
        self.text_limit = call.engine.limits.max_string_chars + _KEPT_PAST_LIMIT
        # Per choice, per tool call index: the call's id, name and its arguments.
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.usage: Any = None

    def on_chunk(self, chunk: Any) -> None:
        """Accumulate one chunk: chat/text chunks carry id, model, finish reasons and (last) usage.

        Read with `endpoints.field`: plain `getattr` on a LiteLLM chunk raises and catches inside
        pydantic for every name the chunk lacks (`type`, and `usage` on all but the last), per chunk.
        """
        self.chunks += 1
        kind = field(chunk, "type")
        if kind is not None:
            self._on_event(str(getattr(kind, "value", kind)), chunk)
            return
        choices = field(chunk, "choices") or ()
        if self.first_chunk_s is None:
            self.last_chunk_at = time.perf_counter()
            self.first_chunk_s = self.last_chunk_at - self.call.started
        elif choices:  # an output chunk; not the usage chunk (no choices) that ends a stream
            self._output_chunk()
        if self.response_id is None:
            self.response_id = field(chunk, "id")
            self.response_model = field(chunk, "model")
        usage = field(chunk, "usage")
        if usage is not None:
            self.usage = usage
        for choice in choices:
            index = field(choice, "index") or 0
            reason = field(choice, "finish_reason")
            if reason:
                self.reasons[index] = str(reason)
            if self.capture:
                delta = field(choice, "delta")
                text = field(delta, "content") if delta is not None else field(choice, "text")
                if isinstance(text, str):
                    self._text(index).add(text)
                calls = field(delta, "tool_calls") if delta is not None else None
                if calls:
                    self._on_tool_calls(index, calls)

    def _on_event(self, kind: str, event: Any) -> None:
        """A Responses API event: the last holds the whole response; until it came, the first ones say
        which response this is, and the text deltas what it said so far (for a stream cut short).

        The first chunk is the first that carries output (a delta of text, arguments, reasoning...), or
        the last event if none did: the events that open a stream (`response.created`...) come as soon
        as the request is accepted, before the model said anything, and timed from them every stream's
        time to first chunk was a network round trip.
        """
        self.events = True
        if self.first_chunk_s is None:
            if kind.endswith(".delta") or kind in _FINAL_EVENTS:
                self.last_chunk_at = time.perf_counter()
                self.first_chunk_s = self.last_chunk_at - self.call.started
        elif kind.endswith(".delta"):
            self._output_chunk()
        if kind in _FINAL_EVENTS:
            self.final = field(event, "response")
        elif kind in _FIRST_EVENTS and self.response_id is None:
            response = field(event, "response")
            if response is not None:
                self.response_id = field(response, "id")
                self.response_model = field(response, "model")
        elif kind == "response.output_text.delta" and self.capture:
            delta = field(event, "delta")
            if isinstance(delta, str):
                self._text(0).add(delta)

    def _output_chunk(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last_chunk_at)
        self.last_chunk_at = now

    def _on_tool_calls(self, index: int, calls: Any) -> None:
        """Accumulate streamed tool calls: the first delta of each names it, later ones add arguments."""
        self._text(index)  # a choice that only calls tools is a choice too
        merged = self.tool_calls.setdefault(index, {})
        for position, call in enumerate(calls):
            at = field(call, "index")
            number = at if isinstance(at, int) else position
            slot = merged.get(number)
            if slot is None:
                slot = merged[number] = {"arguments": StreamedText(self.text_limit)}
            function = field(call, "function")
            for key, value in (
                ("id", field(call, "id")),
                ("type", field(call, "type")),
                ("name", field(function, "name") if function is not None else None),
            ):
                if value and not slot.get(key):
                    slot[key] = value
            arguments = field(function, "arguments") if function is not None else None
            if isinstance(arguments, str):
                slot["arguments"].add(arguments)

    def _text(self, index: int) -> StreamedText:
        """The answer of choice `index` so far."""
        text = self.texts.get(index)
        if text is None:
            text = self.texts[index] = StreamedText(self.text_limit)
        return text

    def finish(
        self, outcome: str, exc: BaseException | None = None, source: Any = None, at: float | None = None
    ) -> None:
        """End the span once. `source` is the LiteLLM stream; `at` the perf_counter time it ended."""
        if self.done:
            return
        self.done = True
        call = self.call
        try:
            record = call.record
            capture = call.engine.capture_content
            if self.final is not None:
                endpoints.apply_response(record, self.final, capture)
            else:
                record["response_id"] = self.response_id
                record["response_model"] = self.response_model
                record["finish_reasons"] = [self.reasons[i] for i in sorted(self.reasons)]
                usage = self.usage if self.usage is not None else _hidden_usage(source)
                if usage is not None:
                    record["usage"] = usage_of({"response": {"usage": usage}})
                if self.events:
                    if self.capture and self.texts:
                        record["response"] = self._partial_response()
                elif self.capture:
                    record["response"] = {
                        "id": self.response_id,
                        "choices": [
                            {
                                "index": i,
                                "finish_reason": self.reasons.get(i),
                                "message": self._message(i, text),
                            }
                            for i, text in sorted(self.texts.items())
                        ],
                    }
            hidden = field(source, "_hidden_params") if source is not None else None
            hidden = hidden if isinstance(hidden, dict) else {}
            if hidden.get("model_id"):
                # The deployment a Router picked (its response_cost there is not the stream's: 0 so far).
                record["deployment_id"] = str(hidden["model_id"])
            if not record.get("provider") and source is not None:
                # A model named without its provider prefix: the stream knows whom LiteLLM called.
                provider = field(source, "custom_llm_provider") or hidden.get("custom_llm_provider")
                if isinstance(provider, str) and provider:
                    record["provider"] = provider
            # As for a call's answer: a stream's base is named once its provider is known.
            endpoints.apply_api_base(record, hidden)
            record["chunk_count"] = self.chunks
            endpoints.apply_cache_hit(record, hidden)
            if record.get("cost_usd") is None and record.get("usage"):
                record["cost_usd"] = _cost(record)
            if exc is not None:
                endpoints.apply_error(record, exc, call.secrets())
            elif outcome != "completed" and not record["finish_reasons"]:
                # The caller stopped before the model did: the record calls that cancelled.
                record["status"] = "cancelled"
            call.end(exc, self.first_chunk_s, {STREAM_OUTCOME: outcome}, at, self.gaps)
        except Exception:
            call.engine.failed("ending a stream's span")
            call.end_quietly()

    def _partial_response(self) -> dict[str, Any]:
        """The text of a Responses API stream that ended before its last event, as its output."""
        text = self.texts[0].text()
        content = [{"type": "output_text", "text": text}]
        return {
            "id": self.response_id,
            "output": [{"type": "message", "role": "assistant", "content": content}],
        }

    def _message(self, index: int, text: StreamedText) -> dict[str, Any]:
        """The assistant message of one choice, as a non-stream response has it."""
        message: dict[str, Any] = {"role": "assistant"}
        calls = self.tool_calls.get(index)
        if text.pieces or not calls:
            message["content"] = text.text()
        if calls:
            message["tool_calls"] = [
                {
                    "id": slot.get("id"),
                    "type": slot.get("type") or "function",
                    "function": {"name": slot.get("name"), "arguments": slot["arguments"].text()},
                }
                for _, slot in sorted(calls.items())
            ]
        return message


def _hidden_usage(source: Any) -> Any:
    """Usage from LiteLLM's own chunk list: it keeps the provider's usage chunk even when it does not
    pass usage on to a caller who did not ask for `stream_options={"include_usage": True}`.

    text_completion's stream keeps no such list: without `include_usage` its span has no usage."""
    chunks = getattr(source, "chunks", None)
    if isinstance(chunks, list):
        for chunk in reversed(chunks[-3:]):
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                return usage
    # LiteLLM 1.80 drops the usage chunk from its list; its logging object keeps the assembled response.
    details = getattr(getattr(source, "logging_obj", None), "model_call_details", None)
    if isinstance(details, dict):
        complete = details.get("complete_streaming_response")
        return getattr(complete, "usage", None)
    return None


def _cost(record: dict[str, Any]) -> float | None:
    """A stream's cost, priced by LiteLLM from the usage (its chunks carry no cost of their own)."""
    usage = record.get("usage") or {}
    model = record.get("response_model") or record.get("request_model")
    if not model:
        return None
    try:
        import litellm

        prompt_cost, completion_cost = litellm.cost_per_token(
            model=str(model),
            custom_llm_provider=record.get("provider"),
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
        )
        return float(prompt_cost) + float(completion_cost)
    except Exception:
        # Unknown models have no price; that is not a failure of ours.
        return None


class _Reaper:
    """Ends the spans of dropped streams, and closes those streams, on a daemon thread.

    A finalizer runs wherever the garbage collector happens to run: possibly inside httpcore's pool
    or an exporter while they hold a non-reentrant lock. Closing the stream there (which takes the pool
    lock) or ending the span (which takes the exporter's) can deadlock the caller's thread -- observed
    with LiteLLM 1.80. So the finalizer only does a `SimpleQueue.put`, which is safe in finalizers, and
    this thread does the rest.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """A forked child has no reaper thread (only the forking one survives a fork): start afresh,
        without the parent's queued streams, which are the parent's to end."""
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="litelens-otel-streams", daemon=True)
                self._thread.start()

    def submit(self, state: StreamState, stream: Any, pid: int) -> None:
        if pid != os.getpid():
            return  # a forked child's copy of a parent's stream: its span and connection are the parent's
        self._queue.put((state, stream, time.perf_counter()))

    def call(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function(*args)` on this thread: for a finalizer other than a stream's (see `submit`)."""
        self._queue.put(functools.partial(function, *args))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every dropped stream submitted so far is handled (for tests and shutdown)."""
        self.start()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            if isinstance(item, functools.partial):
                item()
                del item
                continue
            state, stream, dropped_at = item
            _abandoned(state, stream, dropped_at)
            del item, state, stream


REAPER = _Reaper()


def _abandoned(state: StreamState, stream: Any, dropped_at: float) -> None:
    """The caller dropped the stream unfinished: end the span, then close the stream nobody can reach.

    Closing is what returns the HTTP connection to LiteLLM's pool. Without it a dropped sync stream keeps
    its connection checked out until the pool runs dry and the next call blocks (measured on LiteLLM
    1.110 with no instrumentation at all: a few dozen dropped streams).
    """
    state.finish("abandoned", None, stream, dropped_at)
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            state.call.engine.failed("closing an abandoned stream")


def _outcome_of(exc: BaseException) -> str:
    return (
        "abandoned"
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt))
        else "error"
    )


def traced_stream(stream: Any, call: Call) -> TracedStream:
    """`stream` behind the proxy class that speaks the protocols it speaks, and no other: a proxy of a
    sync-only stream that had `__aiter__` would pass `isinstance(s, AsyncIterable)` and send code that
    checks it down the async path (and the other way round)."""
    kind = type(stream)
    return _PROXY_CLASSES[hasattr(kind, "__next__"), hasattr(kind, "__anext__")](stream, call)


class TracedStream(wrapt.ObjectProxy):
    """A transparent proxy of a LiteLLM stream that ends the call's span when the stream is over.

    The base of the proxies `traced_stream` picks from: one for sync streams, one for async ones, one
    for streams that are both (LiteLLM's `CustomStreamWrapper`).
    """

    def __init__(self, wrapped: Any, call: Call) -> None:
        super().__init__(wrapped)
        state = StreamState(call)
        self._self_state = state
        # Runs if the proxy is collected before the stream ended (the caller dropped it). Not at exit:
        # the exporters may be gone by then, and a half-read stream's span says nothing useful.
        REAPER.start()
        self._self_finalizer = weakref.finalize(self, REAPER.submit, state, wrapped, os.getpid())
        self._self_finalizer.atexit = False

    def _self_finish(self, outcome: str, exc: BaseException | None = None) -> None:
        self._self_finalizer.detach()
        self._self_state.finish(outcome, exc, self.__wrapped__)

    def _self_chunk(self, chunk: Any) -> None:
        try:
            self._self_state.on_chunk(chunk)
        except Exception:
            self._self_state.call.engine.failed("reading a chunk")


class _SyncTracedStream(TracedStream):
    """The proxy of a stream read with `for` (sync Responses API streams, and LiteLLM's chat streams)."""

    def __iter__(self) -> _SyncTracedStream:
        return self

    def __next__(self) -> Any:
        try:
            chunk = self.__wrapped__.__next__()
        except StopIteration:
            self._self_finish("completed")
            raise
        except BaseException as exc:
            self._self_finish(_outcome_of(exc), exc)
            raise
        self._self_chunk(chunk)
        return chunk

    def close(self) -> Any:
        self._self_finish("closed")
        closer = getattr(self.__wrapped__, "close", None)
        return closer() if closer is not None else None

    def __enter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__enter__", None)
        result = enter() if enter is not None else self.__wrapped__
        return self if result is self.__wrapped__ else result

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        self._self_finish("closed")
        exit_ = getattr(self.__wrapped__, "__exit__", None)
        return exit_(exc_type, exc, tb) if exit_ is not None else None


class _AsyncTracedStream(TracedStream):
    """The proxy of a stream read with `async for`."""

    # `wrapt.ObjectProxy` forwards `__iter__`: None says "not iterable" to `iter()` and to
    # `collections.abc.Iterable`, as for the async-only stream itself.
    __iter__ = None  # type: ignore[assignment]

    def __aiter__(self) -> _AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_finish("completed")
            raise
        except BaseException as exc:
            self._self_finish(_outcome_of(exc), exc)
            raise
        self._self_chunk(chunk)
        return chunk

    async def aclose(self) -> Any:
        self._self_finish("closed")
        closer = getattr(self.__wrapped__, "aclose", None)
        return await closer() if closer is not None else None

    async def __aenter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        result = await enter() if enter is not None else self.__wrapped__
        return self if result is self.__wrapped__ else result

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        self._self_finish("closed")
        exit_ = getattr(self.__wrapped__, "__aexit__", None)
        return await exit_(exc_type, exc, tb) if exit_ is not None else None


class _DualTracedStream(_SyncTracedStream, _AsyncTracedStream):  # type: ignore[misc]
    """The proxy of a stream that is both sync and async (LiteLLM's `CustomStreamWrapper`); its
    `__iter__` is the sync proxy's, first in the MRO (the `type: ignore` is for the async one's None)."""


# (has __next__, has __anext__) -> the proxy class. A stream with neither is not one we are handed
# (`Call.succeed` checks), so it gets the sync proxy, which fails as the stream itself would.
_PROXY_CLASSES: dict[tuple[bool, bool], type[TracedStream]] = {
    (True, False): _SyncTracedStream,
    (False, True): _AsyncTracedStream,
    (True, True): _DualTracedStream,
    (False, False): _SyncTracedStream,
}
