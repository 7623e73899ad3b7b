"""`LiteLLMInstrumentor`: wires the engine's wrappers onto LiteLLM's entry points, and takes them off.

Thin on purpose, like the contrib GenAI instrumentors: settings are resolved here once, everything that
happens per call lives in `wrappers`, `streams` and `metrics`.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.semconv.schemas import Schemas
from wrapt import wrap_function_wrapper

from litelens import __version__
from litelens.config import Limits, Settings, check_limits
from litelens.otel.endpoints import ENDPOINTS, Endpoint
from litelens.otel.metrics import Instruments
from litelens.otel.wrappers import Engine, Processor, positional_names
from litelens.record import Record

_log = logging.getLogger("litelens.otel")

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Values the conventions' variable takes that mean "put content on spans" (newer releases name modes).
_CAPTURE_ON = frozenset({"true", "1", "yes", "span_only", "span_and_event"})
# ... and that mean "not on spans" (`event_only` puts content in events, which this layer does not emit).
_CAPTURE_OFF = frozenset({"false", "0", "no", "no_content", "event_only"})
_SCHEMA_URL = getattr(Schemas, "V1_37_0", getattr(Schemas, "V1_28_0", None))


@dataclass(frozen=True)
class OtelSettings:
    """The OTel layer's configuration: arguments first, then environment, then defaults."""

    capture_content: bool = False
    processors: tuple[Callable[[Record], Record | None], ...] = field(default_factory=tuple)
    limits: Limits = field(default_factory=Limits)
    """Size limits of the content put on spans: the core layer's (`litelens.Limits`)."""

    @classmethod
    def resolve(
        cls,
        capture_content: bool | str | None = None,
        processors: Sequence[Processor] | None = None,
        environ: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> OtelSettings:
        env = os.environ if environ is None else environ
        if capture_content is None:
            capture = env.get(CAPTURE_CONTENT_ENV, "").strip().lower() in _CAPTURE_ON
        else:
            capture = _capture_flag(capture_content)
        core = _core_settings(env)
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"litelens.otel: limits={limits!r} must be a litelens.Limits")
        if limits is not None:
            # As the core callback refuses them: a negative cap cut every string on the span from its end.
            check_limits(limits, "litelens.otel")
        return cls(
            capture_content=capture,
            processors=(*_content_processors(core), *(processors or ())),
            limits=core.limits if limits is None else limits,
        )


def _capture_flag(value: object) -> bool:
    """`capture_content=` as given: a boolean, or a string as the environment variable takes it (a
    value read from a config file). `bool("false")` is True, so a string is never taken for its truth."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _CAPTURE_ON:
            return True
        if text in _CAPTURE_OFF:
            return False
    raise ValueError(
        f"litelens.otel: capture_content={value!r} is not a boolean; "
        f"use True or False, or one of {sorted(_CAPTURE_ON | _CAPTURE_OFF)}"
    )


def _core_settings(env: Mapping[str, str]) -> Settings:
    """The core layer's settings this layer honours: LITELENS_DROP_CONTENT, LITELENS_REDACT and the
    size limit LITELENS_MAX_STRING_CHARS, parsed (and refused when malformed) as the core parses them."""
    names = ("LITELENS_DROP_CONTENT", "LITELENS_REDACT", "LITELENS_MAX_STRING_CHARS")
    return Settings.from_env({k: env[k] for k in names if k in env})


def _content_processors(settings: Settings) -> list[Processor]:
    """What LITELENS_DROP_CONTENT and LITELENS_REDACT ask for, run before the caller's processors as in
    the core callback: `opentelemetry-instrument` runs with no code, and a redaction asked for in the
    environment must not leave prompts on spans. Sampling (LITELENS_SAMPLE_RATE) is the OTel SDK
    sampler's job here (OTEL_TRACES_SAMPLER): a processor can drop a span's content, not the span."""
    from litelens.pipeline import drop_content, redact

    chosen: list[Processor] = []
    if settings.drop_content:
        chosen.append(drop_content())
    if settings.redact:
        chosen.append(redact(settings.redact))
    return chosen


class LiteLLMInstrumentor(BaseInstrumentor):
    """OpenTelemetry instrumentation for LiteLLM: a CLIENT span and GenAI metrics per LLM call.

        from litelens.otel import LiteLLMInstrumentor
        LiteLLMInstrumentor().instrument(tracer_provider=provider, capture_content=False)

    Keyword arguments of `instrument()`: `tracer_provider`, `meter_provider`, `capture_content`
    (default: `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`, else off), `processors`
    (callables `record -> record | None` run on the call record before it is put on the span) and
    `limits` (a `litelens.Limits` for the content on spans; default: the core layer's, with
    `LITELENS_MAX_STRING_CHARS`).

    The functions are patched as attributes of `litellm` and of the modules that define them, so a
    name bound before instrumenting (`from litellm import completion` run earlier) keeps pointing at
    the unpatched function: instrument first, or call `litellm.completion(...)` through the module.
    """

    _engine: Engine | None = None
    _patched: list[tuple[Any, str]] = []

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("litellm >= 1.80",)

    @property
    def internal_errors(self) -> int:
        """How many times the instrumentation itself failed (each time the user's call was unaffected)."""
        return self._engine.internal_errors if self._engine is not None else 0

    def _instrument(self, **kwargs: Any) -> None:
        import litellm

        settings = OtelSettings.resolve(
            kwargs.get("capture_content"), kwargs.get("processors"), limits=kwargs.get("limits")
        )
        schema = _SCHEMA_URL.value if _SCHEMA_URL is not None else None
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"), schema_url=schema)
        meter = metrics.get_meter(__name__, __version__, kwargs.get("meter_provider"), schema_url=schema)
        providers = frozenset(str(getattr(p, "value", p)) for p in getattr(litellm, "provider_list", ()))
        engine = Engine(
            tracer,
            Instruments(meter),
            capture_content=settings.capture_content,
            processors=settings.processors,
            providers=providers,
            limits=settings.limits,
        )
        patched: list[tuple[Any, str]] = []
        for endpoint in ENDPOINTS:
            original = getattr(litellm, endpoint.name, None)
            if original is None:
                _log.debug("litelens.otel: litellm has no %s; not traced", endpoint.name)
                continue
            wrapper = engine.wrapper(endpoint, _signature_source(litellm, endpoint, original))
            for module in _modules_defining(litellm, endpoint.name, original):
                wrap_function_wrapper(module, endpoint.name, wrapper)
                patched.append((module, endpoint.name))
        self._engine = engine
        self._patched = patched
        _swap_batch_litellm(instrument=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, name in self._patched:
            unwrap(module, name)
        self._patched = []
        _swap_batch_litellm(instrument=False)
        if self._engine is not None:
            self._engine.active = False
        self._engine = None


# LiteLLM's batch functions (`batch_completion`, `batch_completion_models`,
# `batch_completion_models_all_responses`) run each call on a pool thread of their own.
_BATCH_MODULE = "litellm.batch_completion.main"


class _BatchLiteLLM:
    """`litellm` as the batch functions' module sees it while instrumented: its `completion` runs in the
    context of the thread that looked it up.

    A pool thread starts with an empty context: the calls of a batch made under the caller's span were
    root spans of traces of their own. Each batch function hands `litellm.completion` to its pool,
    looked up on the caller's thread, so that lookup is where the caller's context is taken. Rebinding
    the module's name covers them all, whichever pool each makes (`batch_completion_models_all_responses`
    imports its own inside the function); the rest of `litellm` is passed through.
    """

    __slots__ = ("_module",)

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if name == "completion":
            return functools.partial(contextvars.copy_context().run, value)
        return value


def _swap_batch_litellm(instrument: bool) -> None:
    """Rebind the batch module's `litellm` to the context-carrying view, or back (left alone if it is
    neither ours nor LiteLLM: someone else's patch)."""
    module: Any = sys.modules.get(_BATCH_MODULE) or _import(_BATCH_MODULE)
    if module is None:
        return
    bound = getattr(module, "litellm", None)
    litellm = sys.modules["litellm"]
    if instrument and bound is litellm:
        module.litellm = _BatchLiteLLM(litellm)
    elif not instrument and isinstance(bound, _BatchLiteLLM):
        module.litellm = litellm


def _signature_source(litellm: Any, endpoint: Endpoint, original: Any) -> Any:
    """The function whose parameters name a call's positional arguments: `original`, unless it takes
    only `*args, **kwargs` and hands them to its sync twin (`aembedding`, `atext_completion`), whose
    signature then says what `aembedding("openai/text-embedding-3-small", ["hi"])` passed."""
    if endpoint.is_async and not positional_names(original):
        twin = getattr(litellm, endpoint.name[1:], None)
        if twin is not None and positional_names(twin):
            return twin
    return original


def _modules_defining(litellm: Any, name: str, original: Any) -> list[Any]:
    """`litellm` itself, the module the function comes from, and `litellm.main` (older releases define
    everything there; newer ones keep the Python implementation there behind a dispatch module)."""
    modules = [litellm]
    for module_name in (getattr(original, "__module__", None), "litellm.main"):
        if not module_name:
            continue
        module = sys.modules.get(module_name) or _import(module_name)
        if module is not None and module not in modules and callable(getattr(module, name, None)):
            modules.append(module)
    return modules


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
