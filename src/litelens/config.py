"""The core layer's settings: one object, built from arguments, then the environment, then defaults.

Everything the callback and its transport read comes from here, so there is exactly one place that
knows the `LITELENS_*` variables and their defaults.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("litelens.config")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a boolean; use true or false")


def _parse_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("not a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _parse_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if not 0.0 < value < float("inf"):  # also refuses nan
        raise ValueError("must be a number of seconds above 0")
    return value


def _parse_list(raw: str) -> tuple[str, ...]:
    """A comma-separated list; what each item may be is checked by the module that owns it."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_redact(raw: str) -> tuple[str, ...]:
    """Kinds for `litelens.pipeline.redact` (which checks their names), or off; a yes, as the boolean
    settings take it (`true`, `1`, ...), means every kind."""
    value = raw.strip().lower()
    if value in _FALSE or value == "none":
        return ()
    return ("all",) if value in _TRUE else _parse_list(value)


def _parse_rate(raw: str) -> float:
    try:
        rate = float(raw.strip()) if raw.strip() else 1.0
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError("must be a number from 0 to 1 (0.1 keeps 10%)")
    return rate


def _parse_string_limit(raw: str) -> Limits:
    return replace(Limits(), max_string_chars=_parse_int(raw))


def default_spool_dir() -> str:
    """Where records wait while the server is away: the user's cache directory, per user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "litelens" / "spool")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in `30d`, `12h`, `90m`, `45s` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"litelens: {text!r} is not a duration; use e.g. 30d, 12h, 90m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True)
class Limits:
    """Caps on what one record may carry; a record that hits one says so in its `truncated` field."""

    max_string_chars: int = 32_768
    """Any single string in the request, response or error is cut to this many characters."""
    max_content_bytes: int = 262_144
    """Request plus response content, encoded; past it, middle messages are elided."""
    max_metadata_bytes: int = 16_384
    """User metadata, encoded; past it, the largest values are replaced by a marker."""
    max_tags: int = 64


_ENV_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    # variable: (Settings field, parser). A parser raises ValueError with what is wrong with the value.
    "LITELENS_ENDPOINT": ("endpoint", str.strip),
    "LITELENS_API_KEY": ("api_key", lambda raw: raw.strip() or None),
    "LITELENS_CAPTURE_CONTENT": ("capture_content", _parse_bool),
    "LITELENS_DISABLED": ("disabled", _parse_bool),
    # An explicit empty value or "off" turns the spool off (records are then dropped, counted).
    "LITELENS_SPOOL_DIR": ("spool_dir", str.strip),
    "LITELENS_SPOOL_MAX_BYTES": ("spool_max_bytes", _parse_int),
    "LITELENS_MAX_QUEUE": ("max_queue", _parse_int),
    "LITELENS_TIMEOUT": ("timeout_s", _parse_seconds),
    "LITELENS_MAX_STRING_CHARS": ("limits", _parse_string_limit),
    "LITELENS_REDACT": ("redact", _parse_redact),
    "LITELENS_SAMPLE_RATE": ("sample_rate", _parse_rate),
    "LITELENS_SAMPLE_KEEP_ERRORS": ("sample_keep_errors", _parse_bool),
    "LITELENS_DROP_CONTENT": ("drop_content", _parse_bool),
    "LITELENS_DROP_HEALTH_CHECKS": ("drop_health_checks", _parse_bool),
    "LITELENS_CA_BUNDLE": ("ca_bundle", str.strip),
    "LITELENS_SSL_VERIFY": ("ssl_verify", _parse_bool),
    # Sink forms are checked by litelens.sinks.from_spec, which owns them.
    "LITELENS_SINKS": ("sinks", _parse_list),
}


# The other LITELENS_* variables litelens reads: the collector's (`litelens serve`), the service and
# environment names, and the test suite's. Any other LITELENS_* name is most likely a typo.
_OTHER_VARIABLES = frozenset(
    {
        "LITELENS_SERVICE",
        "LITELENS_ENVIRONMENT",
        "LITELENS_HOST",
        "LITELENS_PORT",
        "LITELENS_DB",
        "LITELENS_DB_WAIT",
        "LITELENS_RETENTION",
        "LITELENS_RETENTION_EVERY",
        "LITELENS_KEY_CACHE_TTL",
        "LITELENS_KEEP_ALIVE",
        "LITELENS_MAX_BODY_BYTES",
        "LITELENS_MAX_RECORDS_PER_BATCH",
        "LITELENS_MAX_RECORD_BYTES",
        "LITELENS_MAX_SPANS_PER_REQUEST",
        "LITELENS_MAX_QUEUED_RECORDS",
        "LITELENS_CHROMIUM",
        "LITELENS_PG_BIN",
        "LITELENS_REQUIRE_SERVICES",
        "LITELENS_UPDATE_SCREENSHOTS",
    }
)
_warned_unknown: set[str] = set()


# Numeric settings an argument may set, with the least each may be, and whether that least is allowed:
# as their variables are checked, so `max_queue=-5` or `timeout_s=0` is an error, not a transport that
# drops every record or never waits for an answer.
_NUMBER_BOUNDS = {
    "spool_max_bytes": (0, True),
    "max_queue": (0, True),
    "batch_max_records": (1, True),
    "batch_max_age_s": (0, False),
    "timeout_s": (0, False),
    "exit_flush_s": (0, True),
}


def _check_numbers(settings: Settings) -> None:
    for name, (least, allowed) in _NUMBER_BOUNDS.items():
        value = getattr(settings, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value < float("inf")  # also refuses nan
            or value < least
            or (value == least and not allowed)
        ):
            bound = f"{least} or more" if allowed else f"above {least}"
            raise ValueError(f"litelens: {name}={value!r} must be a number {bound}")
    check_limits(settings.limits)


def check_limits(limits: Limits, layer: str = "litelens") -> None:
    """Refuse a cap that is not a whole number 0 or more (`ValueError` naming it), for every layer that
    takes a `Limits`: the core's settings and the OTel instrumentor's."""
    for limit in fields(Limits):
        value = getattr(limits, limit.name)
        # A negative cap slices from the end: `max_string_chars=-5` kept all but 5 characters of every
        # string and marked it truncated.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{layer}: limits.{limit.name}={value!r} must be a whole number 0 or more")


def warn_unknown_variables(env: Mapping[str, str] | None = None) -> None:
    """Say once which LITELENS_* variable is not one of ours: LITELENS_SAMPLERATE=0.1 would otherwise
    leave sampling (or LITELENS_REDCT=all, redaction; LITELENS_RETENTON=30d, retention) off without a
    word. Every command that reads the environment calls it, the collector's included."""
    env = os.environ if env is None else env
    known = _ENV_SETTINGS.keys() | _OTHER_VARIABLES
    for name in env:
        if (
            name.startswith("LITELENS_")
            and name not in known
            and not name.startswith("LITELENS_TEST_")
            and name not in _warned_unknown
        ):
            _warned_unknown.add(name)
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            log.warning("litelens: ignoring unknown variable %s%s", name, hint)


@dataclass(frozen=True)
class Settings:
    """Configuration of `litelens.Callback` and `litelens.init()`.

    Build it with `Settings.from_env(**overrides)`: an argument wins over its `LITELENS_*` variable,
    which wins over the default.
    """

    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = None
    capture_content: bool = True
    disabled: bool = False
    spool_dir: str | None = field(default_factory=default_spool_dir)
    spool_max_bytes: int = 256 * 2**20
    """The most disk `spool_dir` takes, all its destinations' folders together; oldest batches go first."""
    max_queue: int = 10_000
    batch_max_records: int = 1_000
    batch_max_age_s: float = 0.5
    timeout_s: float = 5.0
    exit_flush_s: float = 5.0
    service: str | None = None
    environment: str | None = None
    limits: Limits = field(default_factory=Limits)
    redact: tuple[str, ...] = ()
    """Kinds for the built-in `litelens.pipeline.redact` processor ("all" = every kind); () = off."""
    sample_rate: float = 1.0
    """Fraction of traces kept by the built-in `litelens.pipeline.sample` processor; 1.0 = off."""
    sample_keep_errors: bool = True
    drop_content: bool = False
    """Run `litelens.pipeline.drop_content` on every record (numbers kept, messages and output not)."""
    drop_health_checks: bool = False
    """Drop the records of a LiteLLM proxy's own health checks (`litelens.pipeline.drop_health_checks`)."""
    ca_bundle: str | None = None
    """PEM file (or directory) of extra CAs to trust for an https endpoint; default `REQUESTS_CA_BUNDLE`
    when that is set. The system's CAs, or `SSL_CERT_FILE` / `SSL_CERT_DIR`, stay trusted too."""
    ssl_verify: bool = True
    """False turns certificate checks off for an https endpoint: for development only."""
    sinks: tuple[str, ...] = ()
    """Where records go, as `litelens.sinks.from_spec` short forms (`http`, `jsonl:PATH`, `console`,
    `callable:MODULE:NAME`); () = the server only, through the plain transport."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `overrides`, then `env` (default `os.environ`), then defaults."""
        env = os.environ if env is None else env
        warn_unknown_variables(env)
        values: dict[str, Any] = {}
        for variable, (name, parse) in _ENV_SETTINGS.items():
            # Empty is unset (`VAR=${UNSET_VAR}` in compose files and CI), so it never turns a default-on
            # setting such as LITELENS_SAMPLE_KEEP_ERRORS off -- except for the spool, where an explicit
            # empty value is the documented way to turn it off.
            if variable not in env or (not env[variable].strip() and variable != "LITELENS_SPOOL_DIR"):
                continue
            try:
                values[name] = parse(env[variable])
            except ValueError as exc:
                raise ValueError(f"litelens: {variable}={env[variable]!r}: {exc}") from None
        service = env.get("LITELENS_SERVICE") or env.get("OTEL_SERVICE_NAME")
        if service:
            values["service"] = service
        if env.get("LITELENS_ENVIRONMENT"):
            values["environment"] = env["LITELENS_ENVIRONMENT"]
        requests_bundle = env.get("REQUESTS_CA_BUNDLE", "").strip()
        if "ca_bundle" not in values and requests_bundle and os.path.exists(requests_bundle):
            # Set on hosts behind a TLS-inspecting proxy for requests and pip; its CAs are added to the
            # system's, never in place of them, so honouring it cannot break a public endpoint.
            values["ca_bundle"] = requests_bundle
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"litelens: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        redact = values.get("redact")
        if isinstance(redact, (bool, str)):  # `redact=True` / `redact="email,phone"`, as LITELENS_REDACT
            values["redact"] = _parse_redact("all" if redact is True else str(redact))
        elif redact is not None and not isinstance(redact, tuple):
            values["redact"] = tuple(redact)
        spool = values.get("spool_dir")
        if isinstance(spool, str) and spool.strip().lower() in ("", "off", "none"):
            values["spool_dir"] = (
                None  # `spool_dir="off"` turns the spool off, as LITELENS_SPOOL_DIR=off does
            )
        settings = cls(**values)
        rate = settings.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            # As LITELENS_SAMPLE_RATE is checked: `sample_rate=1.5` (a percentage meant?) must not
            # silently keep everything.
            raise ValueError(f"litelens: sample_rate={rate!r} must be a number from 0 to 1 (0.1 keeps 10%)")
        _check_numbers(settings)
        if not settings.endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"litelens: endpoint {settings.endpoint!r} must start with http:// or https:// "
                f"(set LITELENS_ENDPOINT, e.g. {DEFAULT_ENDPOINT})"
            )
        if settings.ca_bundle and not os.path.exists(settings.ca_bundle):
            raise ValueError(
                f"litelens: ca_bundle {settings.ca_bundle!r} does not exist (LITELENS_CA_BUNDLE: a PEM file "
                "with the CA that signed the server's certificate)"
            )
        return settings
