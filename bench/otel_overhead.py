"""CPU that litelens.otel and its peers add to each LiteLLM call, against the same loop uninstrumented.

    python bench/otel_overhead.py [--calls 200] [--stream-calls 40] [--rounds 7] [--only NAME ...]

Integrations: litelens.otel (this checkout), OpenLIT, openinference-instrumentation-litellm,
opentelemetry-instrumentation-litellm (OpenLLMetry) and LiteLLM's built-in `callbacks=["otel"]`. Each
peer runs in its own virtual environment, created on first use under `.bench-envs/` (git-ignored) with
the peer, litellm==1.110.2 and the opentelemetry-sdk this checkout uses (or, when the peer's pins
forbid that release, the nearest one pip accepts: the table names the SDK each ran with). A peer that
cannot be installed, or that does not trace this LiteLLM, is printed as skipped with the reason.

How it measures: for each integration, one worker process in its environment, with the same SDK
pipeline (a TracerProvider with a BatchSpanProcessor into an in-memory exporter, and a MeterProvider
with an in-memory reader, both also set as the global providers). The integration is switched on once,
the way its documentation says; then the worker switches it off and on again by swapping
what instrumenting changed (see `_Switch`), so both sides run in the same process, with the same heap
and caches. A round is `--calls` sync completions per side (or `--stream-calls` sync completions
streaming 50 chunks, read to the end) in blocks of `--block` calls (one stream) per side, bare and
traced in turn, the first side alternating -- so drift on a noisy machine hits both alike. Each block
ends with a short pause for LiteLLM's logging thread pool and a `force_flush` of the span processor,
all inside the measured window. CPU is the worker's process CPU time (all threads: LiteLLM's logging
pool and the span export thread count), so it is what the user's process really pays. The fake provider runs in its own process and is not counted. Figures are medians
over rounds: bare CPU per call, and (traced - bare) per call.

The `A/A` row runs the bare loop on both sides: how far apart two identical sides land, i.e. the
method's own noise floor. The `SDK alone (floor)` row (run with litelens.otel) is the OpenTelemetry SDK's
share: a bare wrapper around `litellm.completion` that starts a CLIENT span with our span's name and start
attributes, sets the rest when the call returns, ends it and records the same four metric measurements
with the same attribute sets -- what any SDK-based integration recording what we record pays, measured
like the integrations. (For streams it ends its span when the stream is returned, so it reads no chunk.)
The last lines split litelens.otel's figure into that floor and the rest, which is ours, and also give
the same SDK calls in a tight loop without LiteLLM: that costs far less than inside LiteLLM calls (warm
caches), so it understates the SDK's share of an integration's figure.

Content capture is each integration's default: off for litelens.otel (the conventions' default); on
for OpenLIT, openinference and OpenLLMetry; LiteLLM's callback puts messages on its span unless told
not to. The `litelens.otel +content` row is ours with `capture_content=True`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).parent))

import _procs  # bench/, put on the path above

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
LITELLM = "litellm==1.110.2"
MESSAGES = [{"role": "user", "content": "benchmark question with a few words in it"}]
STREAM_HEADERS = {"x-fake-tokens": "50", "x-fake-chunks": "50"}


@dataclass(frozen=True)
class Integration:
    """One column of the table: how to install it (None: this checkout's own environment)."""

    name: str
    requirements: tuple[str, ...] | None
    content: str
    note: str = ""


INTEGRATIONS = (
    Integration("litelens.otel", None, "off"),
    Integration("litelens.otel +content", None, "on"),
    Integration("openlit", ("openlit==1.45.0",), "on", "LiteLLM instrumentor only, events off"),
    Integration("openinference", ("openinference-instrumentation-litellm==0.1.51",), "on", "spans only"),
    Integration("openllmetry", ("opentelemetry-instrumentation-litellm==0.62.4",), "on"),
    Integration(
        "litellm otel",
        ("opentelemetry-exporter-otlp",),
        "on",
        'callbacks=["otel"] on the global providers, metrics on',
    ),
)
A_A = Integration("A/A (bare vs bare)", None, "-")
SDK_ALONE = Integration(
    "SDK alone (floor)",
    None,
    "off",
    "litelens.otel's span (name, kind, attributes) and 4 metric records, made by a bare wrapper",
)


# -- the worker: runs inside an integration's environment, imports nothing of litelens but its own ----


def _worker(name: str, url: str) -> int:
    """Serve measurement requests (JSON lines on stdin) for one integration, switched on or off per round."""
    # Our protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import litellm
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    litellm.suppress_debug_info = True
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    def measure(mode: str, calls: int, pause: float = 0.3) -> tuple[float, float]:
        tracer_provider.force_flush()
        exporter.clear()
        start = time.process_time()
        _run(litellm, url, mode, calls)
        time.sleep(pause)  # LiteLLM's logging pool finishes the success hooks (sleeping costs no CPU)
        tracer_provider.force_flush()
        return (time.process_time() - start) / calls, len(exporter.get_finished_spans()) / calls

    try:
        for mode in ("call", "stream"):
            _run(litellm, url, mode, 3)  # first-call costs are not per-call costs
        switch = _Switch(name, tracer_provider, meter_provider, lambda: _run(litellm, url, "call", 1))
        for mode in ("call", "stream"):
            _run(litellm, url, mode, 3)
        spans = measure("call", 3)[1]
        switch.off()
        stray = measure("call", 3)[1]
        if name != A_A.name and spans == 0:
            raise RuntimeError("produced no span for LiteLLM 1.110.2 calls")
        if stray:
            raise RuntimeError("cannot be switched off in-process: spans while off")
    except Exception as exc:  # reported as a skipped column, not a crash of the whole bench
        _send(out, {"error": f"{type(exc).__name__}: {exc}"[:300]})
        return 1
    _send(out, {"ready": True, "spans_per_call": spans, "sdk": _version("opentelemetry-sdk")})

    for line in sys.stdin:
        request = json.loads(line)
        if "sdk_floor" in request:
            switch.on()
            measure("call", 1)
            switch.off()
            _send(out, {"cpu": _sdk_floor(tracer_provider, meter_provider, exporter, request["sdk_floor"])})
            continue
        # One round: blocks of `block` calls, bare and traced in turn (which goes first alternates), so
        # the two sides are never more than a block apart in time. The A/A worker runs bare in both.
        cpu = {False: 0.0, True: 0.0}
        blocks = max(1, request["calls"] // request["block"])
        for index in range(blocks):
            for slot in (False, True) if index % 2 == 0 else (True, False):
                if slot and name != A_A.name:
                    switch.on()
                cpu[slot] += measure(request["mode"], request["block"], pause=0.02)[0]
                switch.off()
        _send(out, {"bare": cpu[False] / blocks, "traced": cpu[True] / blocks})
    return 0


class _Switch:
    """Turns one integration on once, the way its documentation says; then off and on again per round.

    Off and on swap what instrumenting changed: the functions it replaced in LiteLLM's modules (found
    by comparing the modules before and after, so it works for any integration that patches them,
    including OpenLIT, whose `uninstrument` does nothing), or, for LiteLLM's own callback, the logger
    in LiteLLM's callback lists. The same process runs both sides: same heap, same imports, same caches.
    """

    def __init__(self, name: str, tracer_provider: Any, meter_provider: Any, call: Callable[[], Any]) -> None:
        import litellm

        self.logger: Any = None
        before = _litellm_functions()
        if name == SDK_ALONE.name:
            _install_sdk_alone(tracer_provider, meter_provider, call)
        elif name != A_A.name:
            _instrument(name, tracer_provider, meter_provider)
        call()  # LiteLLM turns a callback's name into its logger on the first call
        if name == "litellm otel":
            from litellm.integrations.opentelemetry import OpenTelemetry

            lists = (litellm.callbacks, litellm.success_callback, litellm._async_success_callback)
            self.logger = next(c for lst in lists for c in lst if isinstance(c, OpenTelemetry))
        after = _litellm_functions()
        # Attributes that changed (new ones are modules LiteLLM imported meanwhile, not patches).
        self.patched = {
            key: (before[key], value)
            for key, value in after.items()
            if key in before and before[key] is not value
        }
        self.is_on = True

    def off(self) -> None:
        if self.is_on:
            self._set(0)

    def on(self) -> None:
        if not self.is_on:
            self._set(1)

    def _set(self, which: int) -> None:
        for (module, attribute), pair in self.patched.items():
            setattr(sys.modules[module], attribute, pair[which])
        if self.logger is not None:
            import litellm

            if which:
                litellm.callbacks.append(self.logger)
            else:
                litellm.logging_callback_manager.remove_callback_from_all_lists(self.logger)
                litellm.callbacks[:] = [c for c in litellm.callbacks if c != "otel"]
        self.is_on = bool(which)


def _litellm_functions() -> dict[tuple[str, str], Any]:
    """Every callable attribute of every imported LiteLLM module, by (module, attribute)."""
    found: dict[tuple[str, str], Any] = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "litellm" or module_name.startswith("litellm.")):
            continue
        for attribute, value in list(vars(module).items()):
            if callable(value) and not isinstance(value, type):
                found[(module_name, attribute)] = value
    return found


def _instrument(name: str, tracer_provider: Any, meter_provider: Any) -> Any:
    """Turn one integration on, the way its documentation says, against the given SDK providers."""
    if name.startswith("litelens.otel"):
        from litelens.otel import LiteLLMInstrumentor

        instrumentor = LiteLLMInstrumentor()
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=name.endswith("+content"),
        )
        return instrumentor
    if name == "openinference":
        from openinference.instrumentation.litellm import LiteLLMInstrumentor as OpenInference

        instrumentor = OpenInference()
        instrumentor.instrument(tracer_provider=tracer_provider)
        return instrumentor
    if name == "openllmetry":
        from opentelemetry.instrumentation.litellm import LiteLLMInstrumentor as OpenLLMetry

        instrumentor = OpenLLMetry()
        instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        return instrumentor
    if name == "openlit":
        import tempfile

        import openlit
        from openlit._instrumentors import MODULE_NAME_MAP

        # A local (empty) price list: openlit would otherwise fetch one from the internet at init.
        prices = Path(tempfile.mkdtemp()) / "pricing.json"
        prices.write_text("{}")
        openlit.init(
            disabled_instrumentors=[n for n in MODULE_NAME_MAP if n != "litellm"],
            disable_events=True,
            pricing_json=str(prices),
        )
        return openlit
    if name == "litellm otel":
        import litellm

        # No exporter of its own: with global SDK providers set, LiteLLM's OpenTelemetry logger uses them.
        os.environ.setdefault("OTEL_EXPORTER", "in_memory")
        os.environ.setdefault("LITELLM_OTEL_INTEGRATION_ENABLE_METRICS", "true")
        litellm.callbacks = ["otel"]
        return litellm.callbacks
    raise ValueError(f"unknown integration {name!r}")


def _install_sdk_alone(tracer_provider: Any, meter_provider: Any, call: Callable[[], Any]) -> None:
    """Wrap `litellm.completion` with only the SDK calls litelens.otel makes: the floor of any SDK-based
    integration that records what ours records, measured the same way as the integrations.

    The span to imitate comes from one call through litelens.otel on a private provider: the wrapper
    starts a CLIENT span with its name and start attributes, sets the rest when the call returns, ends
    it, and records the same four metric measurements (instruments with the same names and buckets).
    """
    import litellm
    import wrapt
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from litelens import semconv
    from litelens.otel import LiteLLMInstrumentor
    from litelens.otel import metrics as ours

    private, spans = TracerProvider(), InMemorySpanExporter()
    private.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=private, meter_provider=MeterProvider())
    call()
    instrumentor.uninstrument()
    template = spans.get_finished_spans()[-1]
    name, attributes = template.name, dict(template.attributes or {})
    starts_with = (
        semconv.GEN_AI_OPERATION_NAME,
        semconv.GEN_AI_PROVIDER_NAME,
        semconv.LITELLM_PROVIDER,
        semconv.GEN_AI_REQUEST_MODEL,
        semconv.SERVER_ADDRESS,
        semconv.SERVER_PORT,
        semconv.LITELLM_CALL_ID,
        semconv.LITELLM_CALL_TYPE,
    )
    start = {k: v for k, v in attributes.items() if k in starts_with}
    end = {k: v for k, v in attributes.items() if k not in starts_with}
    metric_attributes = {k: attributes[k] for k in ours._METRIC_ATTRIBUTES if k in attributes}
    input_attributes = {**metric_attributes, "gen_ai.token.type": "input"}
    output_attributes = {**metric_attributes, "gen_ai.token.type": "output"}
    tracer = tracer_provider.get_tracer("bench.sdk_alone")
    instruments = ours.Instruments(meter_provider.get_meter("bench.sdk_alone"))

    def sdk_alone(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=start)
        try:
            return wrapped(*args, **kwargs)
        finally:
            span.set_attributes(end)
            span.end()
            instruments.duration.record(0.005, metric_attributes)
            instruments.tokens.record(9, input_attributes)
            instruments.tokens.record(12, output_attributes)
            instruments.cost.add(0.00001, metric_attributes)

    wrapt.wrap_function_wrapper(litellm, "completion", sdk_alone)


def _run(litellm: Any, url: str, mode: str, calls: int) -> None:
    arguments: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": url,
        "api_key": "sk-fake",
    }
    if mode == "stream":
        arguments.update(stream=True, extra_headers=STREAM_HEADERS)
        for _ in range(calls):
            for _chunk in litellm.completion(**arguments):
                pass
    else:
        for _ in range(calls):
            litellm.completion(**arguments)


def _sdk_floor(tracer_provider: Any, meter_provider: Any, exporter: Any, count: int) -> float:
    """CPU per call of the SDK alone: our last span's name, kind and attributes, and our metric records."""
    from opentelemetry.trace import SpanKind

    from litelens.otel import metrics as ours

    spans = exporter.get_finished_spans()
    if not spans:
        return float("nan")
    template = spans[-1]
    name, attributes = template.name, dict(template.attributes or {})
    metric_attributes = {k: attributes[k] for k in ours._METRIC_ATTRIBUTES if k in attributes}
    input_attributes = {**metric_attributes, "gen_ai.token.type": "input"}
    output_attributes = {**metric_attributes, "gen_ai.token.type": "output"}
    tracer = tracer_provider.get_tracer("bench.sdk_floor")
    meter = meter_provider.get_meter("bench.sdk_floor")
    duration = meter.create_histogram("floor.duration", unit="s")
    tokens = meter.create_histogram("floor.tokens", unit="{token}")
    cost = meter.create_counter("floor.cost", unit="USD")
    exporter.clear()
    start = time.process_time()
    for _ in range(count):
        tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes).end()
        duration.record(0.005, metric_attributes)
        tokens.record(9, input_attributes)
        tokens.record(12, output_attributes)
        cost.add(0.00001, metric_attributes)
    tracer_provider.force_flush()
    return (time.process_time() - start) / count


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


# -- environments ---------------------------------------------------------------------------------


def _environment(integration: Integration, envs: Path) -> tuple[str | None, str]:
    """(python of the integration's environment, '') -- or (None, why it is not available)."""
    if integration.requirements is None:
        return sys.executable, ""
    sdk = _version("opentelemetry-sdk")
    major_minor = ".".join(sdk.split(".")[:2])
    folder = envs / integration.name.replace(" ", "-")
    python = folder / "bin" / "python"
    marker = folder / ".litelens-bench"
    made = marker.read_text().strip() if marker.exists() else None
    # Same SDK release as ours first; the peer's own pins may rule it out, then the same minor series.
    candidates = [
        [*integration.requirements, LITELLM, sdk_pin]
        for sdk_pin in (f"opentelemetry-sdk=={sdk}", f"opentelemetry-sdk~={major_minor}.0")
    ]
    stamps = [hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16] for wanted in candidates]
    if made in stamps:
        return str(python), ""
    why = "pip failed"
    for wanted, stamp in zip(candidates, stamps, strict=True):
        print(f"  creating {folder.relative_to(ROOT)}: pip install {' '.join(wanted)}", file=sys.stderr)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted],
            capture_output=True,
            text=True,
        )
        if pip.returncode == 0:
            marker.write_text(stamp + "\n")
            return str(python), ""
        reason = [ln for ln in pip.stderr.splitlines() if ln.startswith("ERROR")] or ["pip failed"]
        why = reason[0][:160]
    return None, f"cannot be installed ({why})"


# -- the driver -----------------------------------------------------------------------------------


class Worker(_procs.LineWorker):
    @classmethod
    def start(cls, python: str, name: str, url: str) -> Worker:
        argv = [python, str(Path(__file__).resolve()), "--worker", name, "--url", url]
        env = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONHASHSEED": "0",
            "PYTHONPATH": str(ROOT / "src") if python == sys.executable else "",
        }
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        return cls(process)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.request(request) or {"error": "worker exited"}


@dataclass
class Column:
    integration: Integration
    worker: Worker | None = None
    skipped: str = ""
    sdk: str = ""
    spans_per_call: float = 0.0
    results: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="non-stream calls per round")
    parser.add_argument("--stream-calls", type=int, default=40, help="50-chunk streams per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=10, help="non-stream calls per side before switching")
    parser.add_argument("--only", nargs="*", help="integration names to run (default: all)")
    parser.add_argument("--envs", type=Path, default=ROOT / ".bench-envs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.worker, args.url)

    chosen = [i for i in INTEGRATIONS if not args.only or i.name in args.only]
    extra = (SDK_ALONE, A_A) if any(i.name == "litelens.otel" for i in chosen) else (A_A,)
    columns = [Column(i) for i in (*chosen, *extra)]
    args.envs.mkdir(exist_ok=True)
    with _procs.fake_provider() as url:
        for column in columns:
            python, why = _environment(column.integration, args.envs)
            if python is None:
                column.skipped = why
                continue
            column.worker = Worker.start(python, column.integration.name, url)
        for column in columns:
            if column.skipped or column.worker is None:
                continue
            hello = column.worker.ready()
            if "error" in hello:
                column.skipped = f"does not run here ({hello['error']})"
                continue
            column.sdk = hello.get("sdk", "?")
            column.spans_per_call = hello.get("spans_per_call", 0.0)

        live = [c for c in columns if not c.skipped]
        for round_ in range(args.rounds):
            for mode, calls in (("call", args.calls), ("stream", args.stream_calls)):
                for column in live:
                    assert column.worker is not None
                    block = args.block if mode == "call" else 1
                    answer = column.worker.ask({"mode": mode, "calls": calls, "block": block})
                    column.results.setdefault(mode, []).append((answer["bare"], answer["traced"]))
            print(f"  round {round_ + 1}/{args.rounds} done", file=sys.stderr)

        floor = float("nan")
        ours = next((c for c in live if c.integration.name == "litelens.otel"), None)
        if ours is not None and ours.worker is not None:
            floor = ours.worker.ask({"sdk_floor": 3000})["cpu"]
        for column in columns:
            if column.worker is not None:
                column.worker.stop()

    _print_table(columns, args, floor)
    return 0


def _print_table(columns: list[Column], args: argparse.Namespace, floor: float) -> None:
    added: dict[str, dict[str, float]] = {}
    print(
        f"CPU per sync LiteLLM call, µs (median of {args.rounds} rounds; {args.calls} calls / "
        f"{args.stream_calls} 50-chunk streams per round; BatchSpanProcessor into memory, SDK metrics)"
    )
    header = (
        f"{'integration':24s} {'sdk':7s} {'content':7s} {'spans':>5s}  "
        f"{'bare':>7s} {'added':>6s} {'ratio':>7s}  {'bare stream':>11s} {'added':>6s} {'ratio':>7s}"
    )
    print(header)
    print("-" * len(header))
    for column in columns:
        name = column.integration.name
        if column.skipped:
            print(f"{name:24s} skipped: {column.skipped}")
            continue
        cells = []
        for mode in ("call", "stream"):
            pairs = column.results.get(mode, [])
            base = statistics.median(b for b, _ in pairs)
            more = statistics.median(t - b for b, t in pairs)
            added.setdefault(name, {})[mode] = more
            cells.append(
                f"{base * 1e6:{7 if mode == 'call' else 11}.0f} {more * 1e6:+6.0f} {more / base:+7.1%}"
            )
        print(
            f"{name:24s} {column.sdk:7s} {column.integration.content:7s} {column.spans_per_call:5.1f}  "
            f"{cells[0]}  {cells[1]}"
        )
    notes = [f"  {c.integration.name}: {c.integration.note}" for c in columns if c.integration.note]
    if notes:
        print("notes:\n" + "\n".join(notes))
    ours = added.get("litelens.otel", {}).get("call")
    in_calls = added.get(SDK_ALONE.name, {}).get("call")
    peers = {n: a["call"] for n, a in added.items() if not n.startswith(("litelens", "A/A", SDK_ALONE.name))}
    if ours is not None:
        print(
            f"litelens.otel, non-stream: {ours * 1e6:.0f} µs added; the OpenTelemetry SDK alone (same span "
            f"and metric records) in a tight loop without LiteLLM {floor * 1e6:.0f} µs"
        )
        if in_calls is not None:
            print(
                f"  and wrapped around the same LiteLLM calls ({SDK_ALONE.name!r} row) {in_calls * 1e6:.0f} µs;"
                f" ours beyond that floor {(ours - in_calls) * 1e6:.0f} µs"
            )
        if peers:
            best, figure = min(peers.items(), key=lambda item: item[1])
            print(
                f"best peer, non-stream: {best} +{figure * 1e6:.0f} µs; litelens.otel / best peer = "
                f"{ours / figure:.2f} (goal <= 0.33 and <= 100 µs)"
            )


if __name__ == "__main__":
    sys.exit(main())
