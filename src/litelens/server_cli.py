"""`litelens serve | keys | export | doctor`: the commands around the collector.

`export` and `doctor` use only the standard library (they run where the core layer runs); `serve` and
`keys` need the `server` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from litelens.config import Settings, warn_unknown_variables
from litelens.credentials import endpoint_secrets, scrub_text, shown_url
from litelens.httpconn import Connection, Proxy, describe_connect_error, proxy_from_environment, tls_context
from litelens.transport import request_target, server_base, server_url

if TYPE_CHECKING:
    from litelens.server.store.base import Store


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from litelens.server.app import create_app
        from litelens.server.config import GC_THRESHOLDS, ServerSettings, parse_duration
    except ImportError as exc:
        print(
            f"litelens serve needs the server extra: pip install 'litelens[server]' ({exc})", file=sys.stderr
        )
        return 2
    try:
        settings = ServerSettings.from_env(
            host=args.host,
            port=args.port,
            db_url=args.db,
            no_auth=args.no_auth or None,
            retention_s=parse_duration(args.retention) if args.retention else None,
            db_wait_s=parse_duration(args.db_wait) if getattr(args, "db_wait", None) else None,
            tls=bool(getattr(args, "ssl_certfile", None)) or None,
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    certfile, keyfile = getattr(args, "ssl_certfile", None), getattr(args, "ssl_keyfile", None)
    if keyfile and not certfile:
        print("litelens serve: --ssl-keyfile needs --ssl-certfile", file=sys.stderr)
        return 2
    if certfile:
        # Checked before the store opens: uvicorn would otherwise fail on them with a bare traceback.
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            print(
                f"litelens serve: cannot use {certfile} / {keyfile} for TLS ({exc}); give --ssl-certfile"
                " a PEM certificate this user can read and --ssl-keyfile its private key",
                file=sys.stderr,
            )
            return 2
    sockets = _bind(settings.host, settings.port)
    if isinstance(sockets, str):
        print(sockets, file=sys.stderr)
        return 2
    _log_to_stderr(args.log_level)
    store = _open_migrated(settings.db_url, settings.db_wait_s)
    if store is None:
        _close_all(sockets)
        return 2
    gc.set_threshold(*GC_THRESHOLDS)
    app = create_app(settings, store)
    auth = "no auth (loopback only)" if settings.no_auth else "API keys required"
    scheme = "https" if certfile else "http"
    # With --port 0 the OS chose the port: the line must say which, or nobody can reach the server.
    port = sockets[0].getsockname()[1]
    # Listening from here on (the store is open, migrated), so the line below is true when it is read: a
    # connection made at once waits in the queue until uvicorn takes it, rather than being refused.
    # uvicorn listens again on these sockets, with its own backlog (the same number).
    for sock in sockets:
        sock.listen(LISTEN_BACKLOG)
    print(
        f"litelens serving on {scheme}://{settings.host}:{port} ({auth}); storage {_safe_url(settings.db_url)}",
        flush=True,
    )
    # uvicorn stops accepting on SIGTERM/SIGINT, lets in-flight requests (and their commits) finish,
    # then runs the app's shutdown, which closes the store.
    server = _server_class()(
        uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=30,
            # Annotated int by uvicorn, used as the delay of a `loop.call_later`, which takes seconds as float.
            timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
    )
    try:
        server.run(sockets=sockets)
    except SystemExit:
        # uvicorn's way out of a failed start (after its own log line): our one line says where.
        if server.started:
            raise
    finally:
        store.close()
        _close_all(sockets)
    if not server.started:
        print(f"litelens serve: could not start on {settings.host}:{port}", file=sys.stderr)
        return 3
    return 130 if signal.SIGINT in server.signals else 0


LISTEN_BACKLOG = 2048  # uvicorn's default


def _bind(host: str, port: int) -> list[socket.socket] | str:
    """Sockets bound to `host:port`, for uvicorn to listen on; or why it cannot be done, said so a
    newcomer knows what to do.

    Bound before the store opens and before "serving on" is printed: left to uvicorn, a host that is
    not this machine's or does not resolve was found only after that line, and said so in uvicorn's
    words (`[Errno 99] error while attempting to bind ...`, `[Errno -2] Name or service not known`).
    4318 is the OTLP/HTTP port, so an OpenTelemetry Collector (or an earlier `litelens serve`) often
    holds it already. Bound as asyncio's `create_server` binds (every address the host resolves to,
    SO_REUSEADDR, IPv6 sockets v6-only), so a port in TIME_WAIT is not taken for a busy one.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return (
            f"litelens serve: cannot find the host {host!r} ({exc.strerror}); give --host (or"
            " LITELENS_HOST) an address of this machine: 127.0.0.1 for this machine only, 0.0.0.0 for all"
        )
    except (OSError, UnicodeError) as exc:
        return f"litelens serve: cannot listen on {host}:{port} ({exc}); check --host and --port"
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:
            continue  # a family this machine lacks (asyncio skips it too)
        sockets.append(sock)
        try:
            if os.name == "posix":  # as asyncio does: on Windows the option lets a bind steal a port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and sockets[0] is not sock:
                # Port 0 lets the OS choose: one port for every address of the host (`localhost` is
                # ::1 and 127.0.0.1), not one each, so the port said on start reaches them all.
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
        except OSError as exc:
            _close_all(sockets)
            return _bind_failure(host, port, exc)
    if not sockets:
        return f"litelens serve: {host!r} has no address this machine can listen on; check --host"
    return sockets


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"litelens serve: {host}:{port} is already in use (another `litelens serve`, or an"
            " OpenTelemetry Collector, which listens on 4318 too?); stop it, or choose another"
            " port with --port (or LITELENS_PORT) and point LITELENS_ENDPOINT at it"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"litelens serve: {host} is not an address of this machine, so nothing can listen on it;"
            " give --host (or LITELENS_HOST) one of this machine's addresses: 127.0.0.1 for this machine"
            " only, 0.0.0.0 for all"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"litelens serve: not allowed to listen on {host}:{port} ({exc.strerror}; ports below 1024"
            " need privileges); choose a port from 1024 up with --port (or LITELENS_PORT)"
        )
    return f"litelens serve: cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port"


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the stop signal after the graceful shutdown.

        uvicorn re-raises SIGTERM once it has shut down, so the process dies *by* the signal (exit
        -15) even though every in-flight batch was committed and the store closed; service managers
        and `docker stop` then report a failure. A finished graceful stop is a clean exit: 0.
        """

        signals: list[int]

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            self.signals = []
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def on_signal(sig: int, frame: FrameType | None) -> None:
                self.signals.append(sig)
                self.handle_exit(sig, frame)

            original = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            ender = asyncio.ensure_future(self._end_tls_goodbyes()) if self.config.is_ssl else None
            try:
                await super().shutdown(sockets)
            finally:
                if ender is not None:
                    ender.cancel()

        async def _end_tls_goodbyes(self) -> None:
            """Close the TLS connections the server has said goodbye on, without waiting for the reply.

            A closed TLS connection lingers until the client answers the server's close_notify, or 30 s
            pass. An app's sender keeps its connection open between batches and reads nothing while
            idle, so it never answers: the graceful shutdown waited those 30 s, longer than `docker stop`
            waits before SIGKILL. The reply carries nothing; what the server still has buffered for a
            connection gets `_TLS_GOODBYE_S` to leave first.
            """
            loop = asyncio.get_running_loop()
            closing_since: dict[object, float] = {}
            while True:
                await asyncio.sleep(0.05)
                now = loop.time()
                for connection in list(self.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is None or not transport.is_closing():
                        continue
                    if now - closing_since.setdefault(connection, now) >= _TLS_GOODBYE_S:
                        transport.abort()

    return Server


# How long a TLS connection closed by the shutdown may still take to deliver what is buffered for it.
_TLS_GOODBYE_S = 1.0


def _log_to_stderr(level: str) -> None:
    """Our loggers' lines on stderr at `--log-level`, as uvicorn's own are.

    Without a handler Python shows only warnings, so a schema migration of a big database (minutes) went
    by without a line and looked like a hang.
    """
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("litelens: %(message)s"))
    ours = logging.getLogger("litelens")
    ours.addHandler(handler)
    # uvicorn's "trace" is below debug; the names it shares with `logging` mean the same.
    named = logging.DEBUG if level.lower() == "trace" else getattr(logging, level.upper(), logging.INFO)
    ours.setLevel(named if isinstance(named, int) else logging.INFO)
    ours.propagate = False


def _open_migrated(url: str, wait_s: float = 0.0) -> Store | None:
    """The store at `url`, migrated; or None, after saying in one line why it cannot be opened.

    Opened here rather than in the server's startup, where a bad `--db` (an unknown scheme, a file that
    is no database, a PostgreSQL that refuses) became a traceback followed by "could not start on
    HOST:PORT", which points at the wrong thing.

    `wait_s`: how long to keep trying a database that is not answering yet (`_not_up_yet`), as when an
    orchestrator starts the collector and PostgreSQL together; one line says it waits, one that it is up.
    A database that answers with a refusal (a password, a missing database) fails at once all the same.
    """
    from litelens.server.store.base import open_store

    began = time.monotonic()
    delay = 0.25
    waiting = False
    while True:
        store: Store | None = None
        try:
            _ensure_sqlite_dir(url)
            store = open_store(url)
            store.migrate()
        except Exception as exc:
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].removeprefix("litelens: ")
            waited = time.monotonic() - began
            if _not_up_yet(exc) and waited < wait_s:
                if not waiting:
                    print(
                        f"litelens: the database {_safe_url(url)} is not answering ({reason}); "
                        f"waiting up to {wait_s:g} s for it (--db-wait)",
                        file=sys.stderr,
                        flush=True,
                    )
                    waiting = True
                time.sleep(min(delay, wait_s - waited))  # the last try comes when the time is up
                delay = min(delay * 2, 2.0)
                continue
            after = f" (after waiting {waited:.0f} s)" if waiting else ""
            hint = "" if wait_s or not _not_up_yet(exc) else _WAIT_HINT
            print(
                f"litelens: cannot open the database {_safe_url(url)}{after}: {reason}{_db_advice(exc)}{hint}",
                file=sys.stderr,
            )
            return None
        if waiting:
            print(
                f"litelens: the database answered after {time.monotonic() - began:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return store


# Said when a database that was not answering yet made `serve` give up at once: in a container the
# database often starts with the collector.
_WAIT_HINT = "; to wait for it at start, set --db-wait (or LITELENS_DB_WAIT), e.g. 60s"

# What libpq says of a PostgreSQL that is not there or not ready yet, rather than one that refused us.
_NOT_UP_YET = (
    "connection refused",
    "timeout expired",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)


def _not_up_yet(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(words in text for words in _NOT_UP_YET)


def _db_advice(exc: BaseException) -> str:
    """What to do about a database that would not open, as the end of its one line ("" when the reason
    says it already). The reason alone (`password authentication failed`, `Connection refused`) said what
    went wrong but not where to change it."""
    text = str(exc).lower()
    if "password" in text or "authentication" in text or ("role" in text and "does not exist" in text):
        return "; check the user and password in --db (or LITELENS_DB)"
    if "connection refused" in text or "timeout expired" in text or "could not translate host" in text:
        return "; is PostgreSQL running there? Check the host and port in --db (or LITELENS_DB)"
    if "database" in text and "does not exist" in text:
        return "; create it (createdb NAME) or name an existing one in --db (or LITELENS_DB)"
    if "permission denied" in text and "schema" in text:
        return "; the user needs CREATE on that schema (GRANT CREATE ON SCHEMA public TO USER)"
    if isinstance(exc, OSError) or "unable to open" in text or "readonly" in text:
        return "; give --db (or LITELENS_DB) a path in a folder this user can write to"
    return ""


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        from pathlib import Path

        from litelens.server.store.sqlite import sqlite_path

        Path(sqlite_path(url).split("?")[0]).parent.mkdir(parents=True, exist_ok=True)


def _safe_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def keys(args: argparse.Namespace) -> int:
    from litelens.server.auth import create_key
    from litelens.server.config import default_db_url

    warn_unknown_variables()  # a misspelt LITELENS_DB would make the key in the default database
    # Only the database matters here: a bad LITELENS_RETENTION or LITELENS_PORT is serve's to refuse.
    store = _open_migrated(args.db or os.environ.get("LITELENS_DB") or default_db_url())
    if store is None:
        return 2
    try:
        if args.action == "create":
            name = "default" if args.project is None else args.project
            if not name.strip():
                print("litelens keys create: --project needs a name", file=sys.stderr)
                return 2
            key = create_key(store, name)
            print(key)
            print(f"project {name!r}: store this key now, it is not shown again", file=sys.stderr)
        elif args.action == "list":
            return _list_keys(store, args.project)
        else:
            if not args.key:
                print("litelens keys revoke KEY (or the prefix `litelens keys list` shows)", file=sys.stderr)
                return 2
            return _revoke(store, args.key, args.project)
    finally:
        store.close()
    return 0


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(epoch)))


def _projects(store: Store, name: str | None) -> list[dict[str, Any]] | None:
    """The project named `name`, or every project when no name is given; None for an unknown name."""
    if name is None:
        return store.list_projects()
    project = store.get_project(name)
    return None if project is None else [project]


def _list_keys(store: Store, project_name: str | None) -> int:
    """Each key's prefix, when it was made and last used: of one project, or of every project, each line
    then starting with the project's name (keys are made per project: `keys create --project shop` and
    then a bare `keys list` said "no project 'default'")."""
    projects = _projects(store, project_name)
    if projects is None:
        print(f"no project {project_name!r}", file=sys.stderr)
        return 1
    listed = 0
    for project in projects:
        for row in store.list_keys(int(project["id"])):
            last_used = _when(row["last_used"]) if row.get("last_used") else "never"
            line = f"{row['prefix']}…  created {_when(row['created'])}  last used {last_used}"
            print(line if project_name is not None else f"{project['name']}  {line}")
            listed += 1
    if not listed:
        where = f"project {project_name!r} has" if project_name is not None else "no project has"
        print(f"{where} no keys (`litelens keys create --project NAME` makes one)", file=sys.stderr)
    return 0


def _revoke(store: Store, key: str, project_name: str | None) -> int:
    """Revoke a key given whole, or by the prefix `keys list` shows: a lost key, the usual reason to
    revoke one, is only known by that prefix (looked for in `project_name`, or in every project)."""
    from litelens.server.auth import hash_key

    if store.revoke_key(hash_key(key)):
        print("revoked")
        return 0
    prefix = key.rstrip(".…")
    where = f"project {project_name!r}" if project_name is not None else "any project"
    matches = [
        (project, row)
        for project in (_projects(store, project_name) or [] if len(prefix) >= 6 else [])
        for row in store.list_keys(int(project["id"]))
        if row["prefix"].startswith(prefix)
    ]
    if len(matches) > 1:
        print(f"{len(matches)} keys of {where} start with {prefix!r}: give more", file=sys.stderr)
        return 1
    if not matches or not store.revoke_key(matches[0][1]["key_hash"]):
        print(f"no such key (nor a key prefix of {where})", file=sys.stderr)
        return 1
    project, row = matches[0]
    print(f"revoked {row['prefix']}… of project {project['name']!r}")
    return 0


# The names `GET /api/export` filters on (server/api.py's `call_filter`): checked here too, so a misspelt
# `--filter modle=gpt-4o` is refused before anything is asked (the server refuses it as well).
_EXPORT_FILTERS = [
    "end",
    "model",
    "grouped_model",
    "provider",
    "status",
    "error_type",
    "no_error_type",
    "call_type",
    "end_user",
    "user_id",
    "user",
    "session_id",
    "trace_id",
    "key_alias",
    "tag",
    "meta",
    "q",
    "arrived_after",
    "arrived_through",
]


def export(args: argparse.Namespace) -> int:
    from litelens.server.config import parse_duration

    try:
        settings = Settings.from_env(endpoint=args.endpoint, api_key=args.api_key, spool_dir="off")
        params: list[tuple[str, str]] = [
            ("format", args.format),
            ("start", str(time.time() - parse_duration(args.since))),
        ]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    given: dict[str, str] = {}
    for item in args.filter:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"--filter takes name=value, got {item!r}", file=sys.stderr)
            return 2
        if name not in _EXPORT_FILTERS:
            print(f"--filter: no filter {name!r}; use one of {', '.join(_EXPORT_FILTERS)}", file=sys.stderr)
            return 2
        # Each filter matches one value (`meta` one per key): `tag=x` and `tag=y` both given exported the
        # calls of `tag=y` alone, read as those of both. Refused here by name, as the server refuses it.
        once = f"meta {value.partition('=')[0]}" if name == "meta" else name
        if given.get(once, value) != value:
            print(f"litelens export: --filter {once} given twice; give it once", file=sys.stderr)
            return 2
        given[once] = value
        params.append((name, value))
    url = server_url(settings.endpoint, "/api/export", params)  # never printed: a token may be in it
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    # The transport's TLS settings (LITELENS_CA_BUNDLE, LITELENS_SSL_VERIFY) and its choice of proxy
    # (urllib's, except that this machine's server is never proxied): a server the callback and `doctor`
    # reach is one `export` reaches too.
    handlers: list[urllib.request.BaseHandler] = []
    if url.startswith("https://"):
        handlers.append(
            urllib.request.HTTPSHandler(context=tls_context(settings.ca_bundle, settings.ssl_verify))
        )
    if proxy_from_environment(url) is None:
        handlers.append(urllib.request.ProxyHandler({}))
    try:
        response = urllib.request.build_opener(*handlers).open(
            urllib.request.Request(url, headers=headers), timeout=60
        )
    except urllib.error.HTTPError as exc:
        print(
            f"litelens export: server answered {exc.code}: {_answer_text(exc.read()[:300], settings)}",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"litelens export: cannot reach {_shown(settings.endpoint, settings)} ({exc})", file=sys.stderr)
        return 1
    with response:
        if args.output == "-":
            return _copy_out(response, sys.stdout.buffer)
        return _copy_to_file(response, args.output)


def _shown(url: str, settings: Settings) -> str:
    """`url` as printed: without the endpoint's password or any value of its query, whatever its name
    (`scrub_url` knows `?token=`, not a gateway's `?code=`)."""
    return shown_url(url, endpoint_secrets(settings.endpoint, settings.api_key))


def _answer_text(body: bytes, settings: Settings) -> str:
    """An error answer's body as printed: a gateway in front of the server may echo the request, and
    with it the endpoint's query token, the key or a password, onto the user's terminal (and into the
    issue they paste it in)."""
    return scrub_text(body.decode(errors="replace"), endpoint_secrets(settings.endpoint, settings.api_key))


def _copy_out(response: Any, out: IO[bytes]) -> int:
    try:
        while chunk := response.read(65536):
            out.write(chunk)
        out.flush()
    except BrokenPipeError:
        # The reader left (`| head`): done, like any Unix filter; stdout is pointed away from the closed
        # pipe so that the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        print(f"litelens export: the download broke off ({exc})", file=sys.stderr)
        return 1
    return 0


def _copy_to_file(response: Any, output: str) -> int:
    """Into `output` only once the whole export is there: a refused key or a download that broke off
    leaves a previous export at that path as it was, not emptied or cut short."""
    partial = output + ".part"
    try:
        out = open(partial, "wb")  # noqa: SIM115
    except OSError as exc:
        print(f"litelens export: cannot write {output} ({exc.strerror})", file=sys.stderr)
        return 2
    with out:
        status = _copy_out(response, out)
    if status == 0:
        os.replace(partial, output)
    else:
        os.unlink(partial)
    return status


def _core_request(
    settings: Settings, proxy: Proxy | None, method: str, url: str, data: bytes | None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    context = tls_context(settings.ca_bundle, settings.ssl_verify) if https else None
    conn = Connection(
        parts.hostname or "127.0.0.1",
        parts.port or (443 if https else 80),
        timeout=min(settings.timeout_s, 10.0),
        ssl_context=context,
        proxy=proxy,
    )
    headers = {"User-Agent": "litelens-doctor", "Connection": "close"}
    if settings.api_key and data is not None:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, request_target(url), data or b"", headers)
        response = conn.getresponse()
    finally:
        conn.close()
    return response.status, response.body


def doctor(args: argparse.Namespace) -> int:
    """Walk the path a record takes and say, in plain words, where it breaks."""
    try:
        settings = Settings.from_env(endpoint=args.endpoint, api_key=args.api_key, spool_dir="off")
    except ValueError as exc:
        print(f"FAIL  {exc}")
        return 2
    # Shown without a password or token in it: doctor's output is what users paste into an issue.
    print(f"endpoint  {_shown(settings.endpoint, settings)}  (LITELENS_ENDPOINT)")
    base = server_base(settings.endpoint)  # as the callback and the span exporter take it
    shown = _shown(base, settings)
    print(
        f"api key   {'set (' + settings.api_key[:6] + '…)' if settings.api_key else 'not set'}  (LITELENS_API_KEY)"
    )
    proxy = proxy_from_environment(base)
    if proxy is not None:
        print(f"proxy     {proxy.url}  ({proxy.variable}; NO_PROXY exempts hosts)")
    if base.startswith("https://"):
        bundle = settings.ca_bundle or "system CAs" + (
            f" + SSL_CERT_FILE={os.environ['SSL_CERT_FILE']}" if os.environ.get("SSL_CERT_FILE") else ""
        )
        verify = (
            f"verified against {bundle}"
            if settings.ssl_verify
            else "NOT verified (LITELENS_SSL_VERIFY=false)"
        )
        print(f"tls       certificates {verify}")
    # The transport's own connection code, so the verdict holds for the records: its proxy handling and
    # its TLS settings (LITELENS_CA_BUNDLE, LITELENS_SSL_VERIFY), which urllib knows nothing of.
    try:
        status, _ = _core_request(settings, proxy, "GET", server_url(settings.endpoint, "/health"), None)
    except (OSError, http.client.HTTPException) as exc:
        kind, message = describe_connect_error(exc, shown, proxy)
        if kind == "connect":
            print(f"FAIL  cannot reach the server: {exc}. Is `litelens serve` running there?")
        else:
            print(f"FAIL  {message.removeprefix('litelens: ')}")
        return 1
    if status != 200:
        print(f"FAIL  {shown}/health answered {status}: is this a litelens server?")
        return 1
    print("ok    server reachable")
    probe = {
        "call_id": f"litelens-doctor-{int(time.time() * 1000)}",
        "start_time": time.time(),
        "end_time": time.time(),
        "call_type": "chat",
        "request_model": "litelens-doctor",
        "status": "ok",
        # It costs nothing, and says so: a call without a cost is an unpriced one, and the project's
        # overview would say "N of N+1 calls priced" ever after.
        "cost_usd": 0.0,
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        "metadata": {"litelens_doctor": True},
    }
    try:
        status, body = _core_request(
            settings,
            proxy,
            "POST",
            server_url(settings.endpoint, "/v1/events"),
            json.dumps({"records": [probe]}).encode(),
        )
    except (OSError, http.client.HTTPException) as exc:
        print(
            f"FAIL  sending a test record: {describe_connect_error(exc, shown, proxy)[1].removeprefix('litelens: ')}"
        )
        return 1
    if status == 401:
        print(
            "FAIL  the server refused the API key (401): set LITELENS_API_KEY to a key from `litelens keys create`"
        )
        return 1
    if status != 200:
        print(f"FAIL  sending a test record: {status} {_answer_text(body[:200], settings)}")
        return 1
    answer: dict[str, Any] = json.loads(body or b"{}")
    if answer.get("accepted") != 1:
        print(f"FAIL  the test record was rejected: {answer.get('rejected')}")
        return 1
    if settings.api_key:
        print("ok    key accepted, a test record was stored (model 'litelens-doctor')")
    else:  # no key was sent: only a server started with --no-auth takes that
        print(
            "ok    no key needed (the server runs with --no-auth), a test record was stored (model 'litelens-doctor')"
        )
    return 0
