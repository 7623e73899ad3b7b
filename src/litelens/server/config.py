"""The collector's settings: arguments, then `LITELENS_*` environment variables, then defaults."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from litelens.config import parse_duration, warn_unknown_variables

__all__ = ["GC_THRESHOLDS", "ServerSettings", "default_db_url", "is_loopback", "parse_duration"]

# Thresholds of CPython's cyclic garbage collector for a `litelens serve` process. Ingest allocates ~15
# containers per record and frees nearly all of them when the request ends; with the default (700, 10,
# 10) the collector walked them, and everything long-lived, several times per batch: ~15% of the server's
# CPU per ingested record (bench/ingest.py). Fewer, larger collections find the same (rare) cycles.
GC_THRESHOLDS = (100_000, 50, 100)


def default_db_url() -> str:
    """A SQLite file in the user's data directory (XDG), created on first start."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'litelens' / 'litelens.db'}"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_LIMIT_VARIABLES = (
    ("LITELENS_MAX_BODY_BYTES", "max_body_bytes"),
    ("LITELENS_MAX_RECORDS_PER_BATCH", "max_records_per_batch"),
    ("LITELENS_MAX_RECORD_BYTES", "max_record_bytes"),
    ("LITELENS_MAX_SPANS_PER_REQUEST", "max_spans_per_request"),
    ("LITELENS_MAX_QUEUED_RECORDS", "max_queued_records"),
)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 4318
    db_url: str = ""
    no_auth: bool = False
    retention_s: float | None = None
    retention_every_s: float = 300.0
    """How often retention runs; the first pass comes a few seconds after start, not one interval."""
    max_body_bytes: int = 32 * 2**20
    """Largest request body, compressed or not, and largest body after decompression."""
    max_records_per_batch: int = 10_000
    max_record_bytes: int = 2 * 2**20
    max_spans_per_request: int = 50_000
    max_queued_records: int = 100_000
    """Records and spans waiting to be written past which ingest answers 429 (see `writer.GroupCommit`)."""
    default_project: str = "default"
    key_cache_ttl_s: float = 30.0
    """How long a key lookup is cached: a revoked key keeps working at most this long on each replica."""
    tls: bool = False
    """`litelens serve` itself serves HTTPS (`--ssl-certfile`): its answers then carry HSTS, unless on loopback."""
    keep_alive_s: float = 5.0
    """How long an idle HTTP connection is kept open. Behind a load balancer, longer than the balancer's own
    idle timeout: a connection the collector closes just as the balancer reuses it is a 502."""

    db_wait_s: float = 0.0
    """How long `serve` waits at start for a database that is not answering yet (refused, timed out,
    starting up): a container orchestrator starts the collector and its PostgreSQL together. 0 fails at
    once with one line, as a wrong `--db` typed at a terminal should."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServerSettings:
        env = os.environ if env is None else env
        warn_unknown_variables(env)
        values: dict[str, object] = {"db_url": env.get("LITELENS_DB") or default_db_url()}
        if env.get("LITELENS_HOST"):
            values["host"] = env["LITELENS_HOST"]
        if env.get("LITELENS_PORT"):
            try:
                values["port"] = int(env["LITELENS_PORT"])
            except ValueError:
                raise ValueError(
                    f"litelens: LITELENS_PORT must be a port number, got {env['LITELENS_PORT']!r}"
                ) from None
        if env.get("LITELENS_KEY_CACHE_TTL"):
            values["key_cache_ttl_s"] = parse_duration(env["LITELENS_KEY_CACHE_TTL"])
        for name, field_name in _LIMIT_VARIABLES:
            if env.get(name):
                try:
                    values[field_name] = int(env[name])
                except ValueError:
                    raise ValueError(f"litelens: {name} must be a whole number, got {env[name]!r}") from None
        if env.get("LITELENS_RETENTION"):
            values["retention_s"] = parse_duration(env["LITELENS_RETENTION"])
        if env.get("LITELENS_RETENTION_EVERY"):
            values["retention_every_s"] = parse_duration(env["LITELENS_RETENTION_EVERY"])
        if env.get("LITELENS_KEEP_ALIVE"):
            values["keep_alive_s"] = parse_duration(env["LITELENS_KEEP_ALIVE"])
        if env.get("LITELENS_DB_WAIT"):
            values["db_wait_s"] = parse_duration(env["LITELENS_DB_WAIT"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        # The socket layer takes the port modulo 65536: --port 99999 served on 34463 while saying 99999.
        if not 0 <= self.port <= 65535:
            raise ValueError(f"litelens: port {self.port} is out of range (0-65535)")
        if self.retention_s is not None and self.retention_s <= 0:
            # It read as "keep nothing" but kept everything (no retention runs at 0).
            raise ValueError("litelens: --retention must be longer than 0; leave it out to keep everything")
        if self.retention_every_s <= 0:
            raise ValueError("litelens: LITELENS_RETENTION_EVERY must be longer than 0")
        if self.keep_alive_s <= 0:
            raise ValueError("litelens: LITELENS_KEEP_ALIVE must be longer than 0")
        for name, field_name in _LIMIT_VARIABLES:
            # 0 or less was taken: every request then answered 413 (or 429) while the server looked healthy.
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"litelens: {name} must be a whole number above 0, got {value!r}")
        if self.no_auth and not is_loopback(self.host):
            raise ValueError(
                f"litelens: --no-auth is only allowed on a loopback address, not {self.host!r}; "
                "create a key with `litelens keys create --project NAME` instead"
            )
