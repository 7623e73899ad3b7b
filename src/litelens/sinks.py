"""Where finished call records go: the litelens server, JSONL files, the console, your own function.

A sink receives each record once it went through the processors, as its encoded JSON line, and owns a
bounded queue and a thread (`litelens.worker.BackgroundQueue`; the HTTP sink's is the transport's own),
so a slow sink -- a full disk, a blocked terminal, a user function stuck on the network -- drops its own
records when its queue is full and never holds up the caller or the other sinks.

    import litelens
    from litelens.sinks import ConsoleSink, HttpSink, JsonlSink

    litelens.init(sinks=[HttpSink(), JsonlSink("/var/log/litelens/calls.jsonl"), ConsoleSink()])

or, with no code (a LiteLLM proxy): `LITELENS_SINKS=http,jsonl:/var/log/litelens/calls.jsonl,console`.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import IO, Any, Protocol, runtime_checkable

from litelens.config import Settings, parse_duration
from litelens.display import format_call
from litelens.jsonl import JsonlWriter, PartlyWritten
from litelens.transport import Transport, TransportConfig
from litelens.worker import BackgroundQueue, PartlyHandled

__all__ = [
    "CallableSink",
    "ConsoleSink",
    "FanOut",
    "HttpSink",
    "JsonlSink",
    "Sink",
    "from_spec",
    "from_specs",
    "transport_config",
]


@runtime_checkable
class Sink(Protocol):
    """What the callback needs of a sink. `submit` must return at once and never raise."""

    name: str

    def submit(self, line: str) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def shutdown(self, timeout: float | None = None) -> bool: ...
    def stats(self) -> dict[str, int]: ...


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


# --------------------------------------------------------------------------------------------------
# The server


def transport_config(settings: Settings) -> TransportConfig:
    """The HTTP transport's configuration from the core settings (endpoint, key, spool, queue...)."""
    s = settings
    return TransportConfig(
        endpoint=s.endpoint,
        api_key=s.api_key,
        max_queue=s.max_queue,
        batch_max_records=s.batch_max_records,
        batch_max_age_s=s.batch_max_age_s,
        timeout_s=s.timeout_s,
        spool_dir=s.spool_dir,
        # One folder per endpoint and key under the spool directory, whether it is the default or set:
        # a batch is only ever sent where it was recorded for (docs/core.md).
        spool_per_destination=True,
        spool_max_bytes=s.spool_max_bytes,
        exit_flush_s=s.exit_flush_s,
        ca_bundle=s.ca_bundle,
        ssl_verify=s.ssl_verify,
    )


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two endpoints are one server: a key given for one must never reach another, which could
    use it against the first."""
    return a.rstrip("/") == b.rstrip("/")


def _as_is(line: Any) -> Any:
    return line  # the line is already encoded: the transport sends a str as it is


class HttpSink:
    """The litelens server: the core transport (batching, gzip, retry with backoff, Retry-After, disk
    spool), fed with finished records. Arguments override the `LITELENS_*` variables, as for `Callback`
    (`spool_dir=None` is not given; `"off"` turns the spool off). Each endpoint and key spools into a
    folder of its own under `spool_dir`.

        HttpSink(endpoint="https://litelens.internal", api_key="ll_...", spool_dir="/var/tmp/litelens")

    Passed to a `Callback` (`litelens.init(endpoint=..., api_key=..., sinks=[HttpSink(), ...])`), what
    the sink was not given comes from the callback's settings rather than from the environment: a sink
    with no endpoint sends to the callback's endpoint with the callback's key. A sink that names its
    endpoint keeps its own key (its argument, else `LITELENS_API_KEY` unless the callback took that one
    too): the callback's key is never sent to another server, nor is it by an `http:URL` short form.
    A sink built with `settings=` is used as it is.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        *,
        spool_dir: str | None = None,
        settings: Settings | None = None,
        name: str = "http",
        **settings_overrides: Any,
    ) -> None:
        self.name = name
        self.settings = settings or Settings.from_env(
            endpoint=endpoint, api_key=api_key, spool_dir=spool_dir, **settings_overrides
        )
        given = {"endpoint": endpoint, "api_key": api_key, "spool_dir": spool_dir, **settings_overrides}
        # The settings named here, which a callback's do not replace (None: all of them, `settings=`).
        self._given = None if settings is not None else {k for k, v in given.items() if v is not None}
        self.transport = Transport(transport_config(self.settings), prepare=_as_is)

    def inherit(self, settings: Settings) -> None:
        """Take what this sink was not given from `settings` (its callback's); see the class docstring.

        A sink that already started sending keeps its settings: its batches may be on their way.
        """
        if self._given is None or self.transport._thread is not None:
            return
        keep = self._given | {"api_key"} if "endpoint" in self._given else self._given
        merged = replace(settings, **{name: getattr(self.settings, name) for name in keep})
        if (
            "api_key" not in self._given
            and merged.api_key == settings.api_key
            and not _same_endpoint(merged.endpoint, settings.endpoint)
        ):
            # It read LITELENS_API_KEY, which the callback took too: a key for the callback's server.
            merged = replace(merged, api_key=None)
        if merged != self.settings:
            self.settings = merged
            self.transport = Transport(transport_config(merged), prepare=_as_is)

    def submit(self, line: str) -> None:
        self.transport.submit(line)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start sending now, not at the first record: resends what an earlier process spooled."""
        self.transport.start()

    def flush(self, timeout: float | None = None) -> bool:
        return self.transport.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self.transport.shutdown(timeout)

    def stats(self) -> dict[str, int]:
        return self.transport.stats()


# --------------------------------------------------------------------------------------------------
# Sinks with a queue and a thread of their own


class QueuedSink:
    """Base of the sinks that write from a thread of their own: implement `write(lines)`.

    `max_queue` bounds what waits (past it, records are dropped and counted); `batch_max` bounds what
    one `write` gets; `linger_s` waits that long for a batch to fill.
    """

    def __init__(
        self, name: str, *, max_queue: int = 10_000, batch_max: int = 500, linger_s: float = 0.0
    ) -> None:
        self.name = name
        self._queue = BackgroundQueue(
            self.write,
            name=f"litelens-sink-{name}",
            max_queue=max_queue,
            batch_max=batch_max,
            linger_s=linger_s,
            tick=self.tick,
            close=self.close,
            stage=2,
        )

    def write(self, lines: list[str]) -> None:
        raise NotImplementedError

    def inherit(self, settings: Settings) -> None:
        """Take a callback's `exit_flush_s`: at exit the sink's records get the time the app gave."""
        self._queue.exit_flush_s = settings.exit_flush_s

    def tick(self) -> None:
        """Called about once a second while the sink is idle."""

    def close(self) -> None:
        """Called on the sink's thread when it stops."""

    def submit(self, line: str) -> None:
        self._queue.submit(line)

    def flush(self, timeout: float | None = None) -> bool:
        return self._queue.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self._queue.shutdown(timeout)

    def stats(self) -> dict[str, int]:
        """`submitted`, `written` (records the sink took), `dropped` (its queue was full), `failed`, `queued`."""
        out = self._queue.stats()
        out["written"] = out.pop("handled")
        return out


class JsonlSink(QueuedSink):
    """One JSON record per line in `path`, rotated by size and age, rotated files gzipped.

    Reading every rotated file (oldest first, `.gz` or not) and then the live one gives every record
    exactly once (`litelens.jsonl.read_records(path)` does it); see `litelens.jsonl` for how a rotation
    stays atomic. Processes may share `path` (they take turns); `{pid}` in it is replaced by the
    process id, for a file per process.

    Rotated files are all kept unless `keep_files` (the newest N) or `keep_age_s` (rotated within that
    long) bound them; the oldest past either limit are deleted (`deleted` in `stats()`).

        JsonlSink("/var/log/litelens/calls-{pid}.jsonl", max_bytes=64 * 2**20, max_age_s=3600, keep_files=48)
    """

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int | None = 64 * 2**20,
        max_age_s: float | None = None,
        gzip: bool = True,
        fsync: bool = False,
        keep_files: int | None = None,
        keep_age_s: float | None = None,
        name: str = "jsonl",
        max_queue: int = 10_000,
    ) -> None:
        self.writer = JsonlWriter(
            path,
            max_bytes=max_bytes,
            max_age_s=max_age_s,
            gzip=gzip,
            fsync=fsync,
            keep_files=keep_files,
            keep_age_s=keep_age_s,
        )
        self.path = self.writer.path
        super().__init__(name, max_queue=max_queue)

    def write(self, lines: list[str]) -> None:
        try:
            self.writer.write([line.encode("utf-8", "replace") for line in lines])
        except PartlyWritten as exc:
            # The lines before the failure are in a file: counted as written, not with the failed ones.
            raise PartlyHandled(exc.written) from exc

    def tick(self) -> None:
        self.writer.tick()

    def close(self) -> None:
        self.writer.close()

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = deadline_of(timeout)
        if not super().shutdown(timeout):
            return False  # its thread may still be writing: the writer is that thread's alone
        # Its thread, if it ever ran, closed the writer; if it never did, what `recover` found to
        # compress when the sink was made is still waited for here (closing twice is harmless).
        return self.writer.close(remaining(deadline))

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out["rotations"] = self.writer.rotations
        out["compress_failed"] = self.writer.compress_failures
        out["deleted"] = self.writer.deleted
        out["delete_failed"] = self.writer.delete_failures
        return out


class ConsoleSink(QueuedSink):
    """One line per call (time, status, model, latency, TTFT, tokens, cost, error), for development.

    Writes to `stream` (default: the current `sys.stderr`), in colour when it is a terminal. With
    `full=True`, the whole record follows each line, indented.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        color: bool | None = None,
        full: bool = False,
        name: str = "console",
    ) -> None:
        self.stream = stream
        self.color = color
        self.full = full
        super().__init__(name, max_queue=1_000)

    def write(self, lines: list[str]) -> None:
        stream = self.stream or sys.stderr
        color = self.color if self.color is not None else bool(getattr(stream, "isatty", lambda: False)())
        out: list[str] = []
        for line in lines:
            record = json.loads(line)
            out.append(format_call(record, color=color) + "\n")
            if self.full:
                out.append(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        stream.write("".join(out))
        stream.flush()


class CallableSink(QueuedSink):
    """Your function, called with a list of records (dicts) from the sink's own thread.

    Each call gets its own decoded copies, so the function may change them. If it raises, that batch is
    counted as `failed` and the next batch is tried; if it blocks, records queue up to `max_queue` and are
    then dropped -- the caller and the other sinks go on.

        CallableSink(lambda batch: my_warehouse.insert_many(batch), batch_max=200, linger_s=1.0)
    """

    def __init__(
        self,
        fn: Callable[[list[dict[str, Any]]], Any],
        *,
        name: str | None = None,
        max_queue: int = 10_000,
        batch_max: int = 500,
        linger_s: float = 0.0,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"litelens: CallableSink needs a callable taking a list of records, got {fn!r}")
        self.fn = fn
        super().__init__(
            name or getattr(fn, "__name__", "callable").strip("<>"),
            max_queue=max_queue,
            batch_max=batch_max,
            linger_s=linger_s,
        )

    def write(self, lines: list[str]) -> None:
        self.fn([json.loads(line) for line in lines])


# --------------------------------------------------------------------------------------------------
# Several at once


class FanOut:
    """Every record to every sink. Each keeps its own queue, so the slowest one sets nobody's pace.

    `stats()` prefixes each sink's counters with its name (`jsonl.written`, `http.sent`); names are
    made unique (`jsonl`, `jsonl#2`).
    """

    def __init__(self, *sinks: Sink, name: str = "fanout") -> None:
        self.name = name
        self.sinks: list[Sink] = []
        taken: set[str] = set()
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise TypeError(f"litelens: {sink!r} is not a sink (submit, flush, shutdown, stats)")
            base = getattr(sink, "name", None) or type(sink).__name__
            unique, n = base, 1
            while unique in taken:
                n += 1
                unique = f"{base}#{n}"
            taken.add(unique)
            if unique != base:
                sink.name = unique
            self.sinks.append(sink)

    def inherit(self, settings: Settings) -> None:
        """Pass a callback's settings on to the sinks that take them (`HttpSink.inherit`,
        `QueuedSink.inherit`), as if each had been given to the callback itself."""
        _pass_on(self.sinks, settings)

    def start(self) -> None:
        """Start the sinks that send to a server (`HttpSink.start`); the others start on a record."""
        for sink in self.sinks:
            if isinstance(sink, (HttpSink, FanOut)):
                sink.start()

    def submit(self, line: str) -> None:
        for sink in self.sinks:
            with contextlib.suppress(Exception):  # a third-party sink that breaks its promise costs itself
                sink.submit(line)

    def flush(self, timeout: float | None = None) -> bool:
        deadline = deadline_of(timeout)
        return all([sink.flush(remaining(deadline)) for sink in self.sinks])

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = deadline_of(timeout)
        # Flush all first, so one stuck sink's wait does not eat the others' whole share of the time.
        self.flush(timeout)
        return all([sink.shutdown(remaining(deadline)) for sink in self.sinks])

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for sink in self.sinks:
            for key, value in sink.stats().items():
                out[f"{sink.name}.{key}"] = value
        return out


# --------------------------------------------------------------------------------------------------
# From strings: LITELENS_SINKS=http,jsonl:/path,console,callable:pkg.module:function


def from_spec(spec: str, settings: Settings | None = None) -> Sink:
    """One sink from its short form: `http`, `http:URL`, `jsonl:PATH`, `console`, `callable:MODULE:NAME`.

    `jsonl:PATH?option=value&...` sets JsonlSink's `max_bytes`, `max_age_s`, `gzip`, `fsync`,
    `keep_files` and `keep_age_s` (durations as `3600`, `90m`, `12h` or `7d`; `none` for no limit)."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    settings = settings or Settings.from_env()
    if kind == "http":
        if not arg:
            return HttpSink(settings=settings)
        # A base of its own, as before spool folders per destination (which alone keep its batches apart).
        spool = settings.spool_dir and f"{settings.spool_dir}-{hashlib.sha1(arg.encode()).hexdigest()[:8]}"
        # A short form has no key of its own, and the callback's is only for the callback's server.
        key = settings.api_key if _same_endpoint(arg, settings.endpoint) else None
        return HttpSink(settings=replace(settings, endpoint=arg, api_key=key, spool_dir=spool or None))
    if kind == "jsonl" and arg:
        path, _, options = arg.partition("?")
        return JsonlSink(path, **_jsonl_options(spec, options))
    if kind == "console" and not arg:
        return ConsoleSink()
    if kind == "callable" and ":" in arg:
        module, _, attr = arg.rpartition(":")
        return CallableSink(getattr(importlib.import_module(module), attr))
    raise ValueError(
        f"litelens: cannot make a sink of {spec!r}; use http, http:URL, jsonl:PATH, console or "
        "callable:MODULE:FUNCTION (LITELENS_SINKS takes a comma list of these)"
    )


_NONE = ("none", "off")


def _whole(raw: str) -> int | None:
    if raw in _NONE:
        return None
    if not raw.isdigit():
        raise ValueError("not a whole number, 0 or more")
    return int(raw)


def _seconds(raw: str) -> float | None:
    if raw in _NONE:
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError("not a duration above 0 (3600, 90m, 12h, 7d)")
    return seconds


def _flag(raw: str) -> bool:
    if raw not in ("true", "false"):
        raise ValueError("not true or false")
    return raw == "true"


# JsonlSink's arguments a short form sets: `jsonl:/var/log/calls.jsonl?keep_files=48&keep_age_s=7d`.
_JSONL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "max_bytes": _whole,
    "max_age_s": _seconds,
    "gzip": _flag,
    "fsync": _flag,
    "keep_files": _whole,
    "keep_age_s": _seconds,
}


def _jsonl_options(spec: str, options: str) -> dict[str, Any]:
    """`keep_files=48&keep_age_s=7d` as JsonlSink's arguments; a mistake is a ValueError that says which."""
    out: dict[str, Any] = {}
    for option in filter(None, options.split("&")):
        key, _, raw = option.partition("=")
        key = key.strip()
        if key not in _JSONL_OPTIONS:
            raise ValueError(
                f"litelens: {spec!r}: unknown option {key!r}; a jsonl sink takes {', '.join(_JSONL_OPTIONS)}"
            )
        try:
            out[key] = _JSONL_OPTIONS[key](raw.strip().lower())
        except ValueError as exc:
            raise ValueError(f"litelens: {spec!r}: {key}={raw!r} is {exc}") from None
    return out


def from_specs(specs: Iterable[Sink | str], settings: Settings | None = None) -> list[Sink]:
    """Sinks from a mix of sink objects and short forms (see `from_spec`); an `HttpSink` object takes
    what it was not given from `settings` (`HttpSink.inherit`), a queued sink its `exit_flush_s`
    (`QueuedSink.inherit`), within a `FanOut` too."""
    sinks = [from_spec(s, settings) if isinstance(s, str) else s for s in specs]
    if settings is not None:
        _pass_on(sinks, settings)
    return sinks


def _pass_on(sinks: Iterable[Sink], settings: Settings) -> None:
    """A callback's settings to each of `sinks` that takes them: one list of the sinks that do, so a
    sink class given `inherit` is reached from `sinks=` and from inside a `FanOut` alike."""
    for sink in sinks:
        if isinstance(sink, (HttpSink, QueuedSink, FanOut)):
            sink.inherit(settings)
