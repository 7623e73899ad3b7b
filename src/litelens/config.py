"""The core layer's settings: one object, built from arguments, then the environment, then defaults.

Everything the callback and its transport read comes from here, so there is exactly one place that
knows the `LITELENS_*` variables and their defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"litelens: {name}={raw!r} is not a boolean; use true or false")


def default_spool_dir() -> str:
    """Where records wait while the server is away: the user's cache directory, per user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "litelens" / "spool")


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
    sinks: tuple[str, ...] = ()
    """Where records go, as `litelens.sinks.from_spec` short forms (`http`, `jsonl:PATH`, `console`,
    `callable:MODULE:NAME`); () = the server only, through the plain transport."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `overrides`, then `env` (default `os.environ`), then defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "LITELENS_ENDPOINT" in env:
            values["endpoint"] = env["LITELENS_ENDPOINT"].strip()
        if "LITELENS_API_KEY" in env:
            values["api_key"] = env["LITELENS_API_KEY"].strip() or None
        if "LITELENS_CAPTURE_CONTENT" in env:
            values["capture_content"] = _parse_bool(
                "LITELENS_CAPTURE_CONTENT", env["LITELENS_CAPTURE_CONTENT"]
            )
        if "LITELENS_DISABLED" in env:
            values["disabled"] = _parse_bool("LITELENS_DISABLED", env["LITELENS_DISABLED"])
        if "LITELENS_SPOOL_DIR" in env:
            # An explicit empty value or "off" turns the spool off (records are then dropped, counted).
            values["spool_dir"] = env["LITELENS_SPOOL_DIR"].strip()
        if "LITELENS_SPOOL_MAX_BYTES" in env:
            values["spool_max_bytes"] = int(env["LITELENS_SPOOL_MAX_BYTES"])
        if "LITELENS_MAX_QUEUE" in env:
            values["max_queue"] = int(env["LITELENS_MAX_QUEUE"])
        if "LITELENS_TIMEOUT" in env:
            values["timeout_s"] = float(env["LITELENS_TIMEOUT"])
        service = env.get("LITELENS_SERVICE") or env.get("OTEL_SERVICE_NAME")
        if service:
            values["service"] = service
        if env.get("LITELENS_ENVIRONMENT"):
            values["environment"] = env["LITELENS_ENVIRONMENT"]
        if "LITELENS_MAX_STRING_CHARS" in env:
            values["limits"] = replace(Limits(), max_string_chars=int(env["LITELENS_MAX_STRING_CHARS"]))
        if "LITELENS_REDACT" in env:
            raw = env["LITELENS_REDACT"].strip().lower()
            # Kind names are checked by litelens.pipeline.redact, which owns them.
            off = raw in ("", "off", "none", "false", "0", "no")
            values["redact"] = () if off else tuple(k.strip() for k in raw.split(",") if k.strip())
        if "LITELENS_SAMPLE_RATE" in env:
            raw = env["LITELENS_SAMPLE_RATE"].strip()
            try:
                rate = float(raw) if raw else 1.0
            except ValueError:
                rate = -1.0
            if not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"litelens: LITELENS_SAMPLE_RATE={raw!r} must be a number from 0 to 1 (0.1 keeps 10%)"
                )
            values["sample_rate"] = rate
        if "LITELENS_SAMPLE_KEEP_ERRORS" in env:
            values["sample_keep_errors"] = _parse_bool(
                "LITELENS_SAMPLE_KEEP_ERRORS", env["LITELENS_SAMPLE_KEEP_ERRORS"]
            )
        if "LITELENS_DROP_CONTENT" in env:
            values["drop_content"] = _parse_bool("LITELENS_DROP_CONTENT", env["LITELENS_DROP_CONTENT"])
        if "LITELENS_SINKS" in env:
            # Sink forms are checked by litelens.sinks.from_spec, which owns them.
            values["sinks"] = tuple(p.strip() for p in env["LITELENS_SINKS"].split(",") if p.strip())
        known = {f.name for f in fields(cls) if f.init}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"litelens: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        spool = values.get("spool_dir")
        if isinstance(spool, str) and spool.strip().lower() in ("", "off", "none"):
            values["spool_dir"] = (
                None  # `spool_dir="off"` turns the spool off, as LITELENS_SPOOL_DIR=off does
            )
        settings = cls(**values)
        if not settings.endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"litelens: endpoint {settings.endpoint!r} must start with http:// or https:// "
                f"(set LITELENS_ENDPOINT, e.g. {DEFAULT_ENDPOINT})"
            )
        return settings
