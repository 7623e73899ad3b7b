"""`litelens.Callback`: the LiteLLM logger that turns each call into one call record.

LiteLLM runs failure hooks on the caller's thread (sync) or awaits them before the caller sees the
exception (async), and runs async success hooks on the caller's event loop. So a hook here only takes
references to what LiteLLM already built and puts them on the transport's queue; building the record,
scrubbing it, running processors, capping and encoding all happen on the transport's thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import FrameType
from typing import Any, NamedTuple

from litellm.integrations.custom_logger import CustomLogger

from litelens import credentials, pending, recorders
from litelens import record as rec
from litelens.config import Settings
from litelens.dispatch import Dispatcher
from litelens.pipeline import Pipeline, Processor, from_settings, is_health_check_tags
from litelens.recorders import CHUNKS_KEY, EVENTS_KEY
from litelens.sinks import Sink, from_specs, transport_config
from litelens.transport import Transport, run_before_exit

log = logging.getLogger("litelens.callback")

_DEDUPE_WINDOW = 20_000
# The dedupe table holds, per call id, `[failures so far, the last failure's marker]`, or
# `[_SUCCEEDED, None]` once a success was recorded. A failure's marker (`_failure_marker`) tells the same
# failure reported twice from another attempt's failure.
_SUCCEEDED = -1
_EMPTY: Mapping[str, Any] = {}
# How long a proxy's broken stream waits for LiteLLM's own report before litelens records it itself.
_UNREPORTED_WAIT_S = 1.0


class _Captured(NamedTuple):
    """What a hook takes from LiteLLM on the caller's thread: references only, no copying.

    The hook queues a plain tuple in this field order and the sender thread names it: the failure hook
    runs inline on the caller's thread, and there a plain tuple costs a fraction of a named one (the
    named one's constructor is Python code that is cold by the time the next call comes).

    A failure's exception is not kept: its traceback holds every frame of LiteLLM's call stack and
    their locals, which would stay alive (and be walked by the garbage collector) until the sender
    thread got to the record. The three facts the record needs are read from it in the hook instead.
    """

    slo: Mapping[str, Any] | None
    call_id: str | None
    failed: bool
    user_metadata: Mapping[str, Any] | None
    session_id: str | None
    litellm_trace_id: str | None
    instructions: Any  # the Responses API's system prompt, which LiteLLM 1.80 left out of the payload
    sent_parameters: Any  # what the payload's parameters leave out of some calls (`_sent_parameters`)
    text_input: bool  # an embedding's input was one string, which the payload wraps as a list of one
    # The call's api_key and the headers LiteLLM sent, `(api_key, headers)`: a gateway's key often
    # travels in `extra_headers` (Authorization, api-key), and a provider may echo it in its error.
    provider_key: Any
    error_status: Any  # the exception's status_code, as found: checked on the sender thread
    retries: int | None
    exception_type: str | None
    error_text: str | None  # str(exception), only when LiteLLM sent no standard_logging_object
    chunk_count: int | None
    partial_chunks: Any  # a failed stream's chunks so far (LiteLLM's own list): its answer until the break
    # A transcription's upload (`record.audio_file_of`), or a speech call's answer (`record.audio_summary`):
    # named and sized, never the audio itself.
    audio: Any
    kwargs: Mapping[str, Any] | None  # only kept when LiteLLM sent no standard_logging_object
    start_time: Any
    end_time: Any
    first_attempt_id: str | None  # a Router's later attempt: the call id of its request's first attempt
    model_info: Any  # a proxy deployment's model_info, whose mode says what its health check called


class Callback(CustomLogger):
    """Records every LiteLLM call and ships it to a litelens server.

    >>> import litellm, litelens
    >>> litellm.callbacks = [litelens.Callback()]   # doctest: +SKIP

    Arguments override the `LITELENS_*` environment variables (see `litelens.config.Settings`); one left
    at None is not given, so `spool_dir=None` keeps the default spool and `spool_dir="off"` turns it off.
    `processors` are callables `record -> record | None` run, in order, before a record leaves the
    process; returning None drops the record. The processors the environment asks for
    (`LITELENS_SAMPLE_RATE`, `LITELENS_DROP_CONTENT`, `LITELENS_REDACT`; see `litelens.pipeline`) run
    first, so a proxy gets them with no code and a user's processor never sees what they removed.

    `sinks` say where finished records go (`litelens.sinks`: `HttpSink`, `JsonlSink`, `ConsoleSink`,
    `CallableSink`, or short forms like `"jsonl:/path"`); default `LITELENS_SINKS`, else the server only.
    An `HttpSink()` given no endpoint sends to this callback's endpoint with its key, and takes the
    other settings it was not given (spool, queue, timeouts) from this callback too.
    """

    # record.OTEL_LINK_READER: this logger reads the OTel layer's span link from the call's metadata.
    litelens_reads_otel_link = True

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        capture_content: bool | None = None,
        spool_dir: str | None = None,
        processors: Iterable[Processor] = (),
        sinks: Iterable[Sink | str] | None = None,
        service: str | None = None,
        environment: str | None = None,
        disabled: bool | None = None,
        settings: Settings | None = None,
        **settings_overrides: Any,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings.from_env(
            endpoint=endpoint,
            api_key=api_key,
            capture_content=capture_content,
            spool_dir=spool_dir,
            service=service,
            environment=environment,
            disabled=disabled,
            **settings_overrides,
        )
        user_processors = list(processors)
        self.pipeline = Pipeline([*from_settings(self.settings), *user_processors])
        # A record's content and metadata are LiteLLM's references to the caller's own objects (its
        # metadata dict, its tools list). The built-in processors copy what they change; a user's
        # processor may change nested values in place, so it gets copies.
        self._detach = bool(user_processors)
        self._seen: dict[str, list[Any]] = {}
        # A Router request (its trace id, its first attempt's timing window) -> its first attempt's call id.
        self._router_requests: dict[Any, str] = {}
        self._seen_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._counts = {
            "duplicates": 0,
            "hook_errors": 0,
            "build_errors": 0,
            "unserializable_values": 0,
        }
        self._warned: set[str] = set()
        s = self.settings
        # Registered before any sink's thread starts, so at exit LiteLLM's queued events come first.
        run_before_exit(pending.drain_at_exit)
        pending.guard_litellm_worker()
        chosen = sinks if sinks is not None else s.sinks
        self.transport: Transport | Dispatcher
        if chosen:
            # Each sink has a queue and thread of its own; this front builds and processes each record once.
            self.transport = Dispatcher(
                from_specs(chosen, s), self._prepare, max_queue=s.max_queue, exit_flush_s=s.exit_flush_s
            )
        else:  # the default: the server only, the transport running the pipeline on its own thread
            self.transport = Transport(transport_config(s), prepare=self._prepare)
        recorders.install()
        self._draining = False  # set by a SIGTERM on the proxy: see flush_on_sigterm

    # ---- LiteLLM's hooks: all four, because sync and async entry points call different ones.

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._capture(kwargs, False, start_time, end_time, response_obj)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._capture(kwargs, True, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._capture(kwargs, False, start_time, end_time, response_obj)
        if self._draining:
            await self._deliver_before_exit()

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._capture(kwargs, True, start_time, end_time)
        if self._draining:
            await self._deliver_before_exit()

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        """A LiteLLM proxy's stream that its own code broke (a guardrail or hook raising mid-stream, the
        proxy failing to rewrite a chunk): the provider was called and billed, the client got an error
        event, and LiteLLM tells its loggers nothing of that call. It is recorded as an error here.

        A failure LiteLLM reports itself (`_reported_by_litellm`) is left to it, however late its
        report comes. Any other is recorded after `_UNREPORTED_WAIT_S` unless LiteLLM reported a failure
        of this call id meanwhile (what the call id had seen by now is compared, not whether it was seen
        at all, as a proxy's retries share the call id and an earlier attempt's failure was reported),
        or the stream had run to its end, which LiteLLM reports as a success. LiteLLM's own objects are
        left as they are: the failure is built on a copy (`recorders.copied_logging`).
        """
        try:
            call_id = request_data.get("litellm_call_id")
            if self.settings.disabled:
                return None
            stream = recorders.stream_of(call_id)
            if getattr(stream, "logging_obj", None) is None or _reported_by_litellm(
                original_exception, recorders.stream_reported_failure(stream)
            ):
                return None
            asyncio.get_running_loop().call_later(
                _UNREPORTED_WAIT_S,
                self._record_unreported,
                call_id,
                self._seen_state(call_id),
                stream,
                original_exception,
                traceback_str,
            )
        except Exception:
            self._count("hook_errors", "litelens: a logging hook failed; the call itself is unaffected")
        return None

    def _seen_state(self, call_id: Any) -> tuple[Any, ...] | None:
        # A copy: `_next_attempt` changes the entry in place.
        with self._seen_lock:
            entry = self._seen.get(call_id)
            return None if entry is None else tuple(entry)

    def _record_unreported(
        self,
        call_id: Any,
        seen_before: tuple[Any, ...] | None,
        stream: Any,
        exc: Exception,
        trace: str | None,
    ) -> None:
        if self._seen_state(call_id) != seen_before:
            return
        try:
            # The stream ran to its end before the hook raised (an output guardrail that reads the whole
            # answer): LiteLLM has assembled the answer and reports the call as a success, with its
            # usage and cost, however late a slow logger ahead of litelens lets that report come.
            details = stream.logging_obj.model_call_details
            if "async_complete_streaming_response" in details or "complete_streaming_response" in details:
                return
            recorders.report_stream_failure(self, stream, exc, trace)
        except Exception:
            self._count("hook_errors", "litelens: a logging hook failed; the call itself is unaffected")

    async def _deliver_before_exit(self) -> None:
        """Hold the hook (and so the proxy's shutdown, which waits for it) until the record is out.

        A flush that runs out of time means the server is not taking records: later hooks stop waiting.
        """
        if not await asyncio.to_thread(self.transport.flush, self.settings.exit_flush_s):
            self._draining = False

    # ---- the caller's side: references and a queue put, nothing else.

    def _capture(
        self, kwargs: Any, failed: bool, start_time: Any, end_time: Any, response_obj: Any = None
    ) -> None:
        try:
            if self.settings.disabled:
                return
            if type(kwargs) is not dict and not isinstance(kwargs, Mapping):
                return
            get = kwargs.get
            if failed and isinstance(get("exception"), (StopIteration, StopAsyncIteration)):
                # LiteLLM 1.80 reports an async Responses stream that ended well as this "failure" first,
                # then as the success it was: the end of a stream is no error.
                return
            slo = get("standard_logging_object")
            call_id = get("litellm_call_id") or (slo.get("litellm_call_id") if slo else None)
            if call_id:
                marker = _failure_marker(kwargs) if failed else None
                entry = [1 if failed else _SUCCEEDED, marker]  # a new object: setdefault says if it went in
                seen = self._seen
                if seen.setdefault(call_id, entry) is not entry:
                    call_id = self._next_attempt(call_id, failed, marker)
                    if call_id is None:
                        self._count("duplicates")
                        return
                if len(seen) > _DEDUPE_WINDOW:
                    self._trim_seen()
            params = get("litellm_params") or _EMPTY
            first_attempt_id = self._first_attempt_of(params, call_id) if call_id else None
            chunks = get(CHUNKS_KEY)
            if failed:
                exc = get("exception")
                status = getattr(exc, "status_code", None)
                retries = rec.retries_before(exc, params.get("metadata"))
                exc_type = type(exc).__name__ if exc is not None else None
                error_text = None if slo else _text_of(exc)
                partial = chunks or None
            else:
                status = retries = exc_type = error_text = partial = None
            self.transport.submit(
                (  # type: ignore[arg-type]  # the fields of _Captured, in order
                    slo,
                    call_id,
                    failed,
                    params.get("metadata"),
                    params.get("litellm_session_id"),
                    params.get("litellm_trace_id"),
                    params.get("instructions"),
                    _sent_parameters(kwargs),
                    type(get("input")) is str,
                    (get("api_key"), (get("additional_args") or _EMPTY).get("headers")),
                    status,
                    retries,
                    exc_type,
                    error_text,
                    len(chunks) if isinstance(chunks, list) else get(EVENTS_KEY),
                    partial,
                    _audio_of(kwargs, response_obj, failed),
                    None if slo else kwargs,
                    start_time,
                    end_time,
                    first_attempt_id,
                    params.get("model_info"),
                )
            )
        except Exception:
            self._count("hook_errors", "litelens: a logging hook failed; the call itself is unaffected")

    def _next_attempt(self, call_id: str, failed: bool, marker: Any = None) -> str | None:
        """The record id of another event for a call id already seen, or None for a duplicate.

        A proxy's router keeps the request's call id for every attempt it makes (a retry, a fallback
        to another deployment), and LiteLLM reports each attempt. So an event after failures is the
        next attempt, recorded as `<call id>:<attempt>` (the server keeps one record per id); an event
        after a success is LiteLLM reporting that success twice, and so is a failure with the last one's
        marker: LiteLLM 1.80 reports the failure of an async moderation, speech or rerank call to the
        sync hook and to the async hook both.
        """
        with self._seen_lock:
            entry = self._seen.get(call_id)
            if entry is None or entry[0] == _SUCCEEDED or (failed and entry[1] == marker):
                return None
            attempt = entry[0] + 1
            entry[0] = attempt if failed else _SUCCEEDED
            entry[1] = marker
        return f"{call_id}:{attempt}"

    def _first_attempt_of(self, params: Mapping[str, Any], call_id: str) -> str | None:
        """For a LiteLLM Router's retry or fallback, the call id of its request's first attempt.

        An SDK Router gives each attempt a call id of its own (the proxy's keeps the request's: see
        `_next_attempt`), so nothing in a record said that three calls were one request, and the call
        the caller got its answer from did not lead to the attempts that failed before it. What the
        attempts share is the Router's bookkeeping in their metadata: the request's trace id and, where
        LiteLLM keeps them (1.110, not 1.80), the timing windows of the attempts so far, whose first
        never changes; a later attempt lists the attempts before it in `previous_models`. The trace id
        alone does not tell requests apart: a caller may give many requests one (a conversation's), and
        their hooks run late and out of order (1.80 runs an async call's success hooks on the next
        event loop). Without timing windows, the request's metadata dict does: LiteLLM 1.80's Router
        passes one dict to all the attempts of a request, retries and fallbacks alike, and the hook's
        payload holds it, so its id is not another live dict's while an attempt waits to be recorded.

        With the OTel layer on, its span of the attempt has named the first attempt already, from the
        context the Router ran the request in: the record says the same. That tells apart requests
        that share a caller's trace id while they overlap, which this guess cannot: its hooks run
        after the attempts, and not in their order.
        """
        metadata = params.get("metadata")
        if type(metadata) is not dict or "model_group" not in metadata:
            return None
        link = metadata.get(rec.OTEL_LINK_KEY)
        if type(link) is dict and "first_attempt_id" in link:
            named = link["first_attempt_id"]
            return named if type(named) is str and named and named != call_id else None
        trace_id = params.get("litellm_trace_id")
        if trace_id is None:
            return None
        windows = metadata.get("llm_api_timing_windows")
        first_window = windows[0] if isinstance(windows, (list, tuple)) and windows else None
        try:
            hash(first_window)
        except TypeError:
            first_window = None
        key = (trace_id, id(metadata) if first_window is None else first_window)
        with self._seen_lock:
            if not metadata.get("previous_models"):
                self._router_requests[key] = call_id
                if len(self._router_requests) > _DEDUPE_WINDOW:
                    for old in list(self._router_requests)[: _DEDUPE_WINDOW // 2]:
                        self._router_requests.pop(old, None)
                return None
            first = self._router_requests.get(key)
        return first if first != call_id else None

    def _trim_seen(self) -> None:
        """Forget the oldest half of the call ids seen (dicts keep insertion order)."""
        with self._seen_lock:
            while len(self._seen) > _DEDUPE_WINDOW // 2:
                self._seen.pop(next(iter(self._seen)), None)

    # ---- the transport's thread: build, scrub, process, cap, encode.

    def _prepare(self, item: Any) -> str | None:
        if type(item) is tuple:  # what a hook captured
            item = _Captured._make(item)
        if not isinstance(item, _Captured):  # a record submitted directly (tests, user code)
            record = item
        else:
            try:
                record = self._build(item)
                if self._detach:
                    for key in ("request", "response", "metadata"):
                        if record.get(key):
                            record[key] = rec.detached(record[key])
            except Exception:
                self._count(
                    "build_errors", "litelens: could not build a record from LiteLLM's payload", exc_info=True
                )
                return None
        # The pipeline drops a record whose processor raised (the failing one may have been the one that
        # redacts), logs each processor's first error and counts the rest.
        # What leaves is what the processors returned: a processor may return a new dict, not the one
        # it was given (`{**record, "request": None}`), and the record it was given must not go out.
        result = self.pipeline(record)
        if result is None:
            return None
        return self._finish(result, item.provider_key if isinstance(item, _Captured) else None)

    def _build(self, item: _Captured) -> rec.Record:
        s = self.settings
        if item.slo is None:
            return _from_kwargs(item, s)
        slo = item.slo
        if slo.get("call_type") == "acompletion" and is_health_check_tags(slo.get("request_tags")):
            info = item.model_info
            mode = info.get("mode") if isinstance(info, Mapping) else None
            checked = rec.health_check_call_type(mode, slo.get("response"))
            if checked is not None:
                slo = {**slo, "call_type": checked}
        response = slo.get("response")
        if response is not None and type(response) is not dict:
            # A sync moderation's payload, which litelens makes itself (`recorders._report_moderation`),
            # holds LiteLLM's response object; LiteLLM's own payloads hold dicts.
            dump = getattr(response, "model_dump", None)
            if callable(dump):
                slo = {**slo, "response": dump()}
        sent = item.sent_parameters
        status = item.error_status
        # `rec.from_standard_logging`'s arguments, by position (cheaper than by name, per call).
        return rec.from_payload(
            slo,
            item.call_id,
            item.user_metadata,
            item.session_id,
            item.litellm_trace_id,
            item.instructions,
            _merged_parameters(sent) if type(sent) is tuple else sent,  # sent_parameters
            item.text_input,
            status if isinstance(status, int) else None,  # error_status
            item.retries,
            item.exception_type,
            item.chunk_count,
            rec.stream_so_far(item.partial_chunks) if item.partial_chunks else None,  # partial_response
            item.audio,  # audio_file
            s.capture_content,
            s.service,
            s.environment,
            item.first_attempt_id,
        )

    def _finish(self, record: rec.Record, provider_key: Any) -> str:
        record = rec.scrub(record)
        tags = record.get("tags")
        if tags and (type(tags) is not list or not all(type(t) is str for t in tags)):
            # A processor set tags the schema does not allow (`[*r["tags"], r["end_user"]]` with no end
            # user): the server would refuse the whole record.
            record["tags"] = rec.tags_of(tags)
        text, unserializable = rec.encode(record)
        if unserializable:
            self._count(
                "unserializable_values",
                "litelens: a value in a record could not be serialized; it was replaced by a marker",
            )
        limits = self.settings.limits
        # The usual record is small: one encode and no walk. Only a large one is walked and capped.
        if len(text) > min(limits.max_string_chars, limits.max_content_bytes, limits.max_metadata_bytes):
            text, _ = rec.encode(rec.cap(record, limits))
        # Known secret values (this call's provider key and credential headers, our own key) are removed
        # wherever they ended up. Keys are made of characters JSON does not escape, so replacing them in
        # the text is exact.
        for secret in (*_call_secrets(provider_key), self.settings.api_key):
            if isinstance(secret, str) and len(secret) >= 6 and secret in text:
                text = text.replace(secret, credentials.REDACTED)
        return text

    # ---- counters and lifecycle

    def _count(self, name: str, warning: str | None = None, exc_info: bool = False) -> None:
        with self._counts_lock:
            self._counts[name] += 1
            first = name not in self._warned
            self._warned.add(name)
        if warning and first:
            log.warning(
                "%s (further occurrences are only counted; see litelens stats)", warning, exc_info=exc_info
            )

    def stats(self) -> dict[str, int]:
        """Counters of this callback and its transport: queued, sent, spooled, dropped, failed, ..."""
        with self._counts_lock:
            counts = dict(self._counts)
        total = self.pipeline.stats()["total"]
        counts["processor_errors"] = total["errors"]
        counts["filtered"] = total["dropped"]
        return {**self.transport.stats(), **counts}

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every call made so far is delivered or spooled; False if `timeout` ran out first.

        LiteLLM reports a sync call's success from its logging thread pool a moment after the call
        returns, so a flush right after `completion()` first waits for that pool to run what it holds
        (a serverless handler's last call would be missed otherwise).
        """
        remaining = self._collect_reported(timeout)
        return self.transport.flush(remaining)

    def start(self) -> None:
        """Start sending now rather than at the first call: what an earlier process left in the spool
        (records of calls made while the server was away, before a restart) is resent at once.

        A restarted LiteLLM proxy may get no call for a long while (traffic moved to its peers, a
        quiet night), and until then those records were on no dashboard.
        """
        if not self.settings.disabled:
            self.transport.start()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread. Records not delivered in time go to the spool."""
        return self.transport.shutdown(self._collect_reported(timeout))

    def _collect_reported(self, timeout: float | None) -> float | None:
        """Have LiteLLM report the calls it has finished (see litelens.pending) within `timeout`; returns
        the time that is left of it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending.run_what_ended_loops_left(deadline)
        pending.wait_for_litellm_pool(deadline)
        return None if deadline is None else max(0.0, deadline - time.monotonic())


_TRANSCRIPTIONS = ("transcription", "atranscription")
_SPEECHES = ("speech", "aspeech")


def _call_secrets(provider_key: Any) -> list[Any]:
    """The exact secret values of one call: its api_key and its credential headers' values."""
    if type(provider_key) is not tuple:  # a record submitted directly comes with none
        return [provider_key]
    return credentials.secret_values(*provider_key)


def flush_on_sigterm(callback: Callback) -> None:
    """Make `callback` deliver its records during a graceful SIGTERM shutdown (the proxy's path).

    uvicorn, under LiteLLM's proxy, handles SIGTERM by shutting down gracefully -- LiteLLM then runs
    the log events it still holds -- and ends by raising SIGTERM again with the default handler
    restored: the process dies without running `atexit`, and the records of its last calls, handed
    over a moment before, would die with it. So the SIGTERM handler in place (a Python one, so a server
    that shuts down gracefully; with none, the signal kills at once and there is nothing to add) is
    chained: from the signal on, each async hook waits for its record to be delivered, and a flush of
    what came before is queued with LiteLLM's own log events -- LiteLLM's shutdown waits for those (up
    to its `GRACEFUL_SHUTDOWN_TIMEOUT`). Signals are set from the main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        callback._draining = True
        try:
            from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker

            loop = asyncio.get_running_loop()  # the handler runs on the main thread, in the proxy's loop
            loop.call_soon_threadsafe(worker.ensure_initialized_and_enqueue, callback._deliver_before_exit())
        except Exception:  # no loop, or LiteLLM changed shape: send now, while the process lives
            threading.Thread(
                target=callback.transport.flush,
                args=(callback.settings.exit_flush_s,),
                name="litelens-sigterm",
            ).start()
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def unregister(callback: CustomLogger) -> None:
    """Remove a logger from every list LiteLLM copied it into (reassigning litellm.callbacks does not)."""
    import litellm

    manager = getattr(litellm, "logging_callback_manager", None)
    remove = getattr(manager, "remove_callback_from_all_lists", None)
    if callable(remove):
        remove(callback)
    # Older LiteLLM releases have no such method: walk the lists it keeps.
    for name in (
        "callbacks",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "input_callback",
        "service_callback",
    ):
        lst = getattr(litellm, name, None)
        while isinstance(lst, list) and callback in lst:
            lst.remove(callback)


def _reported_by_litellm(exc: BaseException, stream_reported: bool | None) -> bool:
    """Whether LiteLLM reports to its loggers the failure of a proxy's stream that raised `exc`.

    Its proxy reports a failure hook's HTTP errors (fastapi's or starlette's `HTTPException`) and its
    own `ProxyException` and `GuardrailRaisedException`, subclasses included, as it checks them with
    isinstance. Its stream reports what broke the provider's stream, then raises it mapped to one of
    LiteLLM's exception classes; `stream_reported` (`recorders.stream_reported_failure`) says whether
    it did, as the class cannot: a proxy's hook may raise those classes too (a guardrail raising
    `BadRequestError`), and that failure reaches no logger. Only where LiteLLM does not say (None:
    before 1.110) is the class taken for the stream's report: a record lost there beats a double for
    every stream a provider broke.
    """
    from_litellm = False
    for cls in type(exc).__mro__:
        module = cls.__module__
        if module == "litellm" or module.startswith("litellm."):
            if cls.__name__ in ("ProxyException", "GuardrailRaisedException"):
                return True
            from_litellm = True
        elif cls.__name__ == "HTTPException" and module.startswith(("fastapi", "starlette")):
            return True
    return stream_reported if stream_reported is not None else from_litellm


def _failure_marker(kwargs: Mapping[str, Any]) -> tuple[int, int]:
    """What one failure report shares with a second report of the same failure, and with no other
    attempt's: LiteLLM's payload dict (one per attempt; a Router's retry gets a new one) and the
    exception in it. Both are alive while their hooks run, so their ids are not reused meanwhile."""
    return id(kwargs), id(kwargs.get("exception"))


def _audio_of(kwargs: Mapping[str, Any], response_obj: Any, failed: bool) -> dict[str, Any] | None:
    """What a record says of a call's audio, taken on the caller's thread (while the caller's file is
    open, and before the answer's bytes could be freed): a transcription's upload, a speech call's
    answer. LiteLLM 1.80 gives a speech call's payload no response at all, so its size comes from here."""
    call_type = kwargs.get("call_type")
    if call_type in _TRANSCRIPTIONS:
        return _audio_upload(kwargs)
    if call_type in _SPEECHES and not failed:
        return rec.speech_audio_of(response_obj)
    return None


def _sent_parameters(kwargs: Mapping[str, Any]) -> Any:
    """References to what a call sent beyond its payload's parameters (merged by `_merged_parameters` on
    the sender thread). A transcription's parameters are in no payload: the request it sent has them.
    A speech call's voice is in no payload either, nor in `optional_params`: LiteLLM 1.110 logs it in
    the request it sent, and 1.80 logs no request for it, but keeps its speed in `optional_params`."""
    call_type = kwargs.get("call_type")
    if call_type in _TRANSCRIPTIONS:
        return _sent_request(kwargs)
    if call_type in _SPEECHES:
        return (kwargs.get("optional_params"), _sent_request(kwargs))
    return kwargs.get("optional_params")


def _merged_parameters(sent: Any) -> Any:
    """`_sent_parameters`' answer as one mapping: a tuple's parts merged, the later ones winning."""
    if type(sent) is not tuple:
        return sent
    return {k: v for part in sent if isinstance(part, Mapping) for k, v in part.items()}


def _sent_request(kwargs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The request LiteLLM sent the provider, as it logs it (a reference: nothing is copied here).
    LiteLLM 1.80 to 1.110 keep it in `additional_args["complete_input_dict"]`."""
    sent = (kwargs.get("additional_args") or _EMPTY).get("complete_input_dict")
    return sent if isinstance(sent, Mapping) else None


def _audio_upload(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A transcription's upload, named and sized (`record.audio_file_of`).

    LiteLLM's `kwargs["input"]` is no help: `str()` of the caller's file, which for the usual
    `(name, bytes)` tuple is the repr of every byte of the audio. The file itself is in the request it
    sent (`_sent_request`).
    """
    sent = _sent_request(kwargs)
    file = sent.get("file") if sent is not None else None
    found = rec.audio_file_of(file) if file is not None else None
    if found is None:
        name = kwargs.get("input")
        if isinstance(name, str) and 0 < len(name) <= 1024:  # an open file's name, not a repr of bytes
            found = rec.audio_file_of(name)
    return found


def _text_of(exc: Any) -> str | None:
    """str(exception) for the rare record built without LiteLLM's payload; None if even that fails."""
    try:
        return str(exc)
    except Exception:
        return None


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _from_kwargs(item: _Captured, settings: Settings) -> rec.Record:
    """A reduced record for the rare path where LiteLLM sent no standard_logging_object."""
    kwargs = item.kwargs or {}
    start = _epoch(item.start_time) or _epoch(kwargs.get("start_time")) or 0.0
    end = _epoch(item.end_time) or _epoch(kwargs.get("end_time")) or start
    slo: dict[str, Any] = {
        "litellm_call_id": item.call_id,
        "call_type": kwargs.get("call_type"),
        "stream": kwargs.get("stream"),
        "status": "failure" if item.failed else "success",
        "model": kwargs.get("model"),
        "custom_llm_provider": kwargs.get("custom_llm_provider"),
        "startTime": start,
        "endTime": end,
        "completionStartTime": _epoch(kwargs.get("completion_start_time")) or end,
        # A transcription's input is the audio file: it is named by `audio_file`, never copied.
        "messages": None
        if kwargs.get("call_type") in _TRANSCRIPTIONS
        else kwargs.get("messages") or kwargs.get("input"),
        "response_cost": kwargs.get("response_cost"),
        "error_str": item.error_text if item.failed else None,
        "error_information": {"error_class": item.exception_type} if item.failed else None,
    }
    return rec.from_standard_logging(
        slo,
        call_id=item.call_id,
        user_metadata=item.user_metadata,
        error_status=item.error_status if isinstance(item.error_status, int) else None,
        exception_type=item.exception_type,
        audio_file=item.audio if kwargs.get("call_type") in _TRANSCRIPTIONS else None,
        capture_content=settings.capture_content,
        service=settings.service,
        environment=settings.environment,
    )
