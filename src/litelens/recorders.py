"""The LiteLLM recorders: patches that let litelens record calls which reach no LiteLLM logger.

A LiteLLM logger hears of a call through the payload LiteLLM builds and the hooks it calls. A few
calls get no payload fact litelens needs, or no hook call at all, so `litelens.Callback` installs
these when it is made:

- **chunk counter** (`_install_chunk_counter`): a stream's `chunk_count`. `CustomStreamWrapper` keeps
  every chunk (it rebuilds usage from them) but tells loggers no count, and its per-chunk hooks are
  unreliable; a reference to its chunk list is put into the call's payload (`CHUNKS_KEY`), which also
  gives a failed stream its answer so far. LiteLLM 1.80 to 1.110. It also keeps each live stream by
  call id (`stream_of`): a proxy's failure hook gets only the call id of a stream its own code broke,
  which LiteLLM reports to no logger (`Callback.async_post_call_failure_hook`).
- **event counter** (`_install_event_counter`): a Responses API stream's `chunk_count`. Its iterator
  keeps no list of events, only the last one, whose `sequence_number` is the count less one
  (`EVENTS_KEY`). LiteLLM 1.80 to 1.110.
- **moderation recorder** (`_install_moderation_recorder`): sync `litellm.moderation()` calls the OpenAI
  client and returns without running any logger (`amoderation()` is logged), LiteLLM 1.80 to 1.110; the
  recorder hands litelens's callbacks the payload the async call would have given them.
- **unstarted stream recorder** (`_install_unstarted_stream_recorder`): a text-completion stream on
  OpenAI's route sends its request at the first chunk, after LiteLLM's `@client` wrapper returned and
  before the stream wrapper that reports a broken stream exists, so a failure there reaches no logger
  (LiteLLM 1.80 to 1.110); it is handed to litelens's callbacks only, built by LiteLLM's own failure
  helper.

How they stay safe: each is installed once per process (a mark on what it patched, however many
callbacks are made), and only if LiteLLM still has the shape it expects (the class or function is
there, a generator where a generator is expected, a `logging_obj` parameter); a LiteLLM that logs the
call itself (a `moderation` wrapped by its `@client`) is left alone. Their bookkeeping never raises
into the caller's call or changes its result or exception: a LiteLLM of another shape leaves
`chunk_count` null or the call unrecorded, as without litelens. The moderation and stream recorders
report to litelens's callbacks only, so other loggers see LiteLLM's own behaviour.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import time
import traceback
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from litelens import record as rec

if TYPE_CHECKING:
    from litelens.callback import Callback

# The integration's logger: a user's logging configuration names it, whichever module logs.
log = logging.getLogger("litelens.callback")


def install() -> None:
    """Install every recorder that is not installed yet (`litelens.Callback` calls this when made)."""
    _install_chunk_counter()
    _install_event_counter()
    _install_moderation_recorder()
    _install_unstarted_stream_recorder()


CHUNKS_KEY = "litelens_stream_chunks"
# Where LiteLLM's Router defines its stream wrappers: `litellm.router` (1.80's FallbackStreamWrapper),
# `litellm.router_rust.invoke.streaming` (1.110's FallbackAwareStreamWrapper).
_ROUTER_MODULES = ("litellm.router",)
# Each stream (LiteLLM's `CustomStreamWrapper`) by call id, while something (the proxy) holds it: a
# LiteLLM proxy tells its failure hooks the call id only (`stream_of`).
_STREAMS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def stream_of(call_id: Any) -> Any:
    """The stream (LiteLLM's `CustomStreamWrapper`) with LiteLLM call id `call_id` still in use, or None."""
    return _STREAMS.get(call_id) if isinstance(call_id, str) else None


def stream_reported_failure(stream: Any) -> bool | None:
    """Whether `stream` reported a failure of its own to the loggers (the provider broke it), or None
    where LiteLLM does not say (before 1.110).

    LiteLLM 1.110's stream keeps the task that reports its failure (`has_dispatched_failure_logging`):
    what broke a stream that did not report is what a proxy's own code raised, whatever its class.
    """
    reported = getattr(stream, "has_dispatched_failure_logging", None)
    return reported if type(reported) is bool else None


def report_stream_failure(callback: Callback, stream: Any, exc: BaseException, trace: str | None) -> None:
    """Hand `callback` a stream's failure that LiteLLM reported to no logger, built by LiteLLM's own
    failure helper as an unstreamed call's failure is, on a copy of the call's logging object
    (`copied_logging`).

    The provider billed what it sent before the break. When one of the chunks said the usage (a
    guardrail that breaks the stream once the usage chunk has come), LiteLLM's own accounting of a
    broken stream (`_record_partial_usage_for_failure`, 1.110) puts it and its cost into the payload,
    as it does when a provider breaks the stream. Otherwise the payload says 0 tokens, which the record
    reads as not known (`record.from_payload`): LiteLLM's estimate from the text is left out, as a
    count no provider gave.
    """
    logging_obj = copied_logging(stream.logging_obj)
    chunks = getattr(stream, "chunks", None)
    if isinstance(chunks, list) and any(getattr(c, "usage", None) for c in chunks):
        # The accounting writes into the stream's logging object: a copy of the stream holds ours.
        billing = copy.copy(stream)
        billing.logging_obj = logging_obj
        bill = getattr(billing, "_record_partial_usage_for_failure", None)
        if callable(bill):
            bill()
    start, end = logging_obj._failure_handler_helper_fn(exc, trace or "")
    callback._capture(logging_obj.model_call_details, True, start, end)


def copied_logging(logging_obj: Any) -> Any:
    """A copy of a call's LiteLLM logging object whose `model_call_details` is a copy too, for LiteLLM's
    helpers that write the call's failure (or a broken stream's usage) into it in place.

    That object is still LiteLLM's: a success report under way (a stream that ended before a hook
    raised, held up by a slow logger) would carry the failure to every logger after litelens, with its
    cost zeroed. The failure helper may also add an exception's headers to the call's metadata, so
    that is copied too.
    """
    details = dict(logging_obj.model_call_details)
    params = details.get("litellm_params")
    if isinstance(params, dict):
        details["litellm_params"] = params = dict(params)
        if isinstance(params.get("metadata"), dict):
            params["metadata"] = dict(params["metadata"])
    clone = copy.copy(logging_obj)
    clone.model_call_details = details
    return clone


def _install_chunk_counter() -> None:
    """Make each LiteLLM stream's chunk list reachable from its logging payload, once per process.

    LiteLLM keeps every chunk of a stream in `CustomStreamWrapper.chunks` (it rebuilds usage from them)
    but reports no count to loggers, and its per-chunk hooks are unreliable. Putting a reference to that
    list into the call's `model_call_details` (which is what hooks receive as kwargs) costs one dict
    store per stream and nothing per chunk. If LiteLLM changes shape, chunk_count is simply null.
    """
    try:
        from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    except ImportError:
        return
    if getattr(CustomStreamWrapper, "_litelens_counts_chunks", False):
        return
    original = CustomStreamWrapper.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        try:
            details = getattr(getattr(self, "logging_obj", None), "model_call_details", None)
            chunks = getattr(self, "chunks", None)
            # A LiteLLM Router (so every proxy) wraps each stream in a wrapper class of its own, made
            # with the same logging object, that only passes the inner stream's chunks on: its list
            # stays empty. The inner stream reads the provider's chunks and logs the call. Any other
            # new wrapper wins, as a later attempt's stream may share the logging object.
            if (
                isinstance(details, dict)
                and isinstance(chunks, list)
                and not type(self).__module__.startswith(_ROUTER_MODULES)
            ):
                details[CHUNKS_KEY] = chunks
                call_id = details.get("litellm_call_id")
                if isinstance(call_id, str):
                    _STREAMS[call_id] = self
        except Exception:  # never let bookkeeping break a stream
            pass

    CustomStreamWrapper.__init__ = __init__  # type: ignore[method-assign]
    CustomStreamWrapper._litelens_counts_chunks = True  # type: ignore[attr-defined]


EVENTS_KEY = "litelens_stream_events"


def _install_event_counter() -> None:
    """Put a Responses API stream's event count into its logging payload, once per process.

    LiteLLM keeps no list of these events, but it keeps the stream's last one (`completed_response` of
    its iterator, set before it logs the call), and every event carries the provider's `sequence_number`,
    counted from 0. Catching that one assignment costs one dict store per stream and nothing per event.
    A provider that numbers no events, or a stream that ends without its last event, leaves chunk_count
    null.
    """
    try:
        from litellm.responses.streaming_iterator import BaseResponsesAPIStreamingIterator as iterator
    except ImportError:
        return
    if getattr(iterator, "_litelens_counts_events", False):
        return

    def completed(self: Any) -> Any:
        return self.__dict__.get("_litelens_completed_response")

    def set_completed(self: Any, event: Any) -> None:
        self.__dict__["_litelens_completed_response"] = event
        try:
            number = getattr(event, "sequence_number", None)
            details = getattr(getattr(self, "logging_obj", None), "model_call_details", None)
            if type(number) is int and isinstance(details, dict):
                details[EVENTS_KEY] = number + 1
        except Exception:  # never let bookkeeping break a stream
            pass

    iterator.completed_response = property(completed, set_completed)  # type: ignore[assignment]
    iterator._litelens_counts_events = True  # type: ignore[attr-defined]


_MODERATION_MARK = "_litelens_records_moderation"
_LOGGER_LISTS = ("callbacks", "success_callback", "failure_callback", "_async_success_callback")


def _install_moderation_recorder() -> None:
    """Record LiteLLM's sync `moderation()`, which runs no logging hooks at all, once per process.

    Every other entry point goes through LiteLLM's `@client` decorator, which builds the logging payload
    and calls the loggers; sync `moderation()` (1.80 to 1.110) calls the OpenAI client and returns, so
    no logger ever hears of it, while `amoderation()` is logged. Wrapping it (as `litellm.moderation`
    and in `litellm.main`) gives litelens's callbacks the same payload the async call gives them. A
    LiteLLM that logs it itself (its function wrapped by `@client`, in `litellm/utils.py`) is left alone.
    """
    try:
        import litellm
        import litellm.main as litellm_main
    except ImportError:
        return
    for module in (litellm_main, litellm):
        original = getattr(module, "moderation", None)
        if not callable(original) or _marked_or_logged(original):
            continue
        module.moderation = _recording_moderation(original)  # type: ignore[attr-defined]


def _marked_or_logged(function: Any) -> bool:
    """True when `function` is (or wraps) our recorder, or LiteLLM's own logging wrapper."""
    seen = 0
    while function is not None and seen < 10:
        if getattr(function, _MODERATION_MARK, False):
            return True
        code = getattr(function, "__code__", None)
        filename = getattr(code, "co_filename", "").replace("\\", "/")
        if filename.endswith("litellm/utils.py"):
            return True
        function = getattr(function, "__wrapped__", None)
        seen += 1
    return False


def _recording_moderation(original: Any) -> Any:
    @functools.wraps(original)
    def moderation(*args: Any, **kwargs: Any) -> Any:
        loggers = _registered_callbacks()
        if not loggers:
            return original(*args, **kwargs)
        start = time.time()
        try:
            response = original(*args, **kwargs)
        except BaseException as exc:
            _report_moderation(loggers, args, kwargs, start, None, exc)
            raise
        _report_moderation(loggers, args, kwargs, start, response, None)
        return response

    setattr(moderation, _MODERATION_MARK, True)
    return moderation


def _registered_callbacks() -> list[Callback]:
    """The litelens callbacks registered with LiteLLM, each once."""
    import litellm

    from litelens.callback import Callback  # at call time: `litelens.callback` imports this module

    found: dict[int, Callback] = {}
    for name in _LOGGER_LISTS:
        for logger in getattr(litellm, name, None) or ():
            if isinstance(logger, Callback):
                found.setdefault(id(logger), logger)
    return list(found.values())


def _report_moderation(
    loggers: list[Callback],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    start: float,
    response: Any,
    exc: BaseException | None,
) -> None:
    """Hand a sync moderation to the loggers as LiteLLM hands an `amoderation()` to them."""
    try:
        from litelens.callback import _text_of as text_of

        end = time.time()
        given = args[0] if args else kwargs.get("input")
        model = args[1] if len(args) > 1 else kwargs.get("model")
        model = rec.without_provider(model, "openai") if isinstance(model, str) else model
        # The OTel layer hands its call id in (so both layers' records of the call are merged).
        given_id = kwargs.get("litellm_call_id")
        call_id = given_id if isinstance(given_id, str) and given_id else str(uuid.uuid4())
        metadata = kwargs.get("metadata")
        slo: dict[str, Any] = {
            "litellm_call_id": call_id,
            "call_type": "moderation",
            "status": "failure" if exc is not None else "success",
            "model": model,
            "custom_llm_provider": "openai",  # the only provider sync moderation() calls
            "api_base": kwargs.get("api_base"),
            "startTime": start,
            "endTime": end,
            "messages": given,
            # The response object as it is: `_build` dumps it on the sender thread, not the caller's.
            "response": response if response is not None else {},
            # What LiteLLM's cost map says of moderation models, and what it reports for amoderation().
            "response_cost": 0.0,
            "model_parameters": {},
            "hidden_params": {},
            "metadata": {},
        }
        if exc is not None:
            status = getattr(exc, "status_code", None)
            slo["error_information"] = {
                "error_class": type(exc).__name__,
                "error_message": text_of(exc),
                "error_code": str(status) if isinstance(status, int) else None,
                "llm_provider": "openai",
            }
        payload = {
            "standard_logging_object": slo,
            "litellm_call_id": call_id,
            "call_type": "moderation",
            "litellm_params": {
                "metadata": metadata if isinstance(metadata, Mapping) else None,
                "litellm_session_id": kwargs.get("litellm_session_id"),
                "litellm_trace_id": kwargs.get("litellm_trace_id"),
            },
            "exception": exc,
            "api_key": args[2] if len(args) > 2 else kwargs.get("api_key"),
        }
        for logger in loggers:
            logger._capture(payload, exc is not None, start, end)
    except Exception:  # never let bookkeeping break the caller's call
        log.debug("litelens: could not record a moderation call", exc_info=True)


_STREAM_MARK = "_litelens_records_unstarted_stream"


def _install_unstarted_stream_recorder() -> None:
    """Record a text-completion stream that fails before its first chunk, once per process.

    On OpenAI's text-completions route `OpenAITextCompletion.streaming` and `async_streaming` are
    generator functions: they send the request when the caller asks for the first chunk, after
    LiteLLM's `@client` wrapper has returned and before the stream wrapper (which reports a broken
    stream) exists, so an error answer or a timeout there reaches no logger (LiteLLM 1.80 to 1.110).
    Wrapping them hands such a failure to litelens's callbacks only (other loggers keep LiteLLM's
    behaviour), built by LiteLLM's own failure helper. A LiteLLM where the methods are missing or are
    no longer generators taking a `logging_obj` is left alone.
    """
    try:
        from litellm.llms.openai.completion.handler import OpenAITextCompletion
    except Exception:  # another layout: nothing to wrap
        return
    for name, is_shape in (
        ("streaming", inspect.isgeneratorfunction),
        ("async_streaming", inspect.isasyncgenfunction),
    ):
        original = OpenAITextCompletion.__dict__.get(name)
        if original is None or getattr(original, _STREAM_MARK, False) or not is_shape(original):
            continue
        try:
            position = list(inspect.signature(original).parameters).index("logging_obj")
        except (TypeError, ValueError):
            continue
        wrap = _recording_sync_stream if name == "streaming" else _recording_async_stream
        setattr(OpenAITextCompletion, name, wrap(original, position))


def _recording_sync_stream(original: Any, position: int) -> Any:
    @functools.wraps(original)
    def streaming(*args: Any, **kwargs: Any) -> Any:
        stream = original(*args, **kwargs)
        try:
            first = next(stream)
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            _report_unstarted_stream(args, kwargs, position, exc)
            raise
        # From the first chunk on the original generator runs as if called directly (`yield from`
        # hands it send, throw and close); closing early closes it at once, not at collection.
        try:
            yield first
            return (yield from stream)
        finally:
            stream.close()

    setattr(streaming, _STREAM_MARK, True)
    return streaming


def _recording_async_stream(original: Any, position: int) -> Any:
    @functools.wraps(original)
    async def async_streaming(*args: Any, **kwargs: Any) -> Any:
        stream = original(*args, **kwargs)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:  # a cancellation is no failure: LiteLLM reports none either
            _report_unstarted_stream(args, kwargs, position, exc)
            raise
        try:
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    setattr(async_streaming, _STREAM_MARK, True)
    return async_streaming


def _report_unstarted_stream(
    args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, exc: BaseException
) -> None:
    """Hand the failure to litelens's callbacks as LiteLLM hands a failed unstreamed call to them."""
    loggers: list[Callback] = []
    try:
        loggers = _registered_callbacks()
        if not loggers:
            return
        logging_obj = kwargs["logging_obj"] if "logging_obj" in kwargs else args[position]
        details = logging_obj.model_call_details
        # The caller gets the exception LiteLLM's stream wrapper maps this one to (an OpenAIError with a
        # 401 becomes AuthenticationError); the record names that one, as an unstreamed call's does.
        from litellm.litellm_core_utils.exception_mapping_utils import exception_type

        try:
            mapped = exception_type(
                model=details.get("model"),
                original_exception=exc,
                custom_llm_provider=details.get("custom_llm_provider"),
            )
        except Exception as raised:
            mapped = raised
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        logging_obj = copied_logging(logging_obj)
        start, end = logging_obj._failure_handler_helper_fn(mapped, trace)
        payload = logging_obj.model_call_details
        for logger in loggers:
            logger._capture(payload, True, start, end)
    except Exception:  # never let bookkeeping change the caller's exception
        log.debug("litelens: could not record a text-completion stream's failure", exc_info=True)
        for logger in loggers:
            logger._count("hook_errors", "litelens: a logging hook failed; the call itself is unaffected")
