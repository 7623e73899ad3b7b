"""`create_app()`: the collector as an ASGI application (FastAPI on Starlette).

Explicit assembly, no globals: the store, the settings, the key cache and the group-commit writer live on
`app.state`. Store calls are synchronous and run in Starlette's thread pool, so the event loop keeps
accepting requests while a batch is being committed. Ingest goes through `writer.GroupCommit`, which
commits concurrent requests' batches together; a batch is acknowledged only after that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from litelens.server import ingest, otlp
from litelens.server.api import router as api_router
from litelens.server.auth import KeyCache
from litelens.server.config import ServerSettings, is_loopback
from litelens.server.deps import Project, Unavailable, store_call
from litelens.server.store.base import Store, StoreUnavailable, open_store
from litelens.server.writer import GroupCommit

log = logging.getLogger("litelens.server")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ingest.IngestError(413, f"body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ingest.IngestError(413, f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


# The first retention pass waits this long (or the interval, if shorter): after start-up, not a whole
# interval later, so old calls go soon after a (re)start and `--retention` can be checked at once.
_FIRST_RETENTION_PASS_S = 5.0


def _retention_loop(app: FastAPI, stop: threading.Event) -> None:
    settings: ServerSettings = app.state.settings
    store: Store = app.state.store
    wait = min(_FIRST_RETENTION_PASS_S, settings.retention_every_s)
    while not stop.wait(wait):
        wait = settings.retention_every_s
        try:
            deleted = store.delete_older_than(time.time() - float(settings.retention_s or 0))
            if deleted:
                log.info("retention: deleted %d calls older than %ss", deleted, settings.retention_s)
        except StoreUnavailable as exc:
            # The database is away, no fault of this pass: its traceback, the same each pass for as long
            # as the outage lasts, would bury the one line that says so.
            log.warning("retention pass skipped, storage unavailable (%s); will try again", exc)
        except Exception:
            log.exception("retention pass failed; will try again")


def create_app(settings: ServerSettings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or ServerSettings.from_env()
    settings.check()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        app.state.store = store or open_store(settings.db_url)
        await run_in_threadpool(app.state.store.migrate)
        app.state.default_project_id = await run_in_threadpool(
            app.state.store.create_project, settings.default_project
        )
        app.state.keys = KeyCache(app.state.store, ttl_s=settings.key_cache_ttl_s)
        app.state.writer = GroupCommit(app.state.store, max_queued=settings.max_queued_records)
        stop = threading.Event()
        retention = None
        if settings.retention_s:
            retention = threading.Thread(
                target=_retention_loop, args=(app, stop), name="litelens-retention", daemon=True
            )
            retention.start()
        try:
            yield
        finally:
            stop.set()
            if retention is not None:
                retention.join(timeout=5)
            await run_in_threadpool(app.state.writer.close)
            if own_store:
                await run_in_threadpool(app.state.store.close)

    app = _App(
        title="litelens",
        version=_version(),
        description="Collector and query API for LiteLLM call records.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load from a CDN; the dashboard serves the reference at /docs instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings

    @app.exception_handler(ingest.IngestError)
    async def _ingest_error(request: Request, exc: ingest.IngestError) -> Response:
        return _error(request, exc.status, exc.reason, exc.headers)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> Response:
        return _error(request, 503, f"storage unavailable, retry later ({exc})", {"Retry-After": "1"})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback and re-raises after this answer; the caller gets only the shape
        # every other failure has, never the exception's text (it may name tables, paths or values).
        return _error(request, 500, "internal server error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # The documented error shape, `{"error": reason}`, here too (FastAPI's own is `{"detail": [...]}`).
        return _error(request, 422, _validation_reason(exc))

    # Decompressing and parsing run in a worker thread, off the event loop, which meanwhile reads the
    # next requests' bodies.

    def events_of(body: bytes, encoding: str | None) -> ingest.Batch:
        body = ingest.decompress(body, encoding, settings.max_body_bytes)
        return ingest.parse_events(body, settings.max_records_per_batch, settings.max_record_bytes)

    def spans_of(body: bytes, encoding: str | None, content_type: str) -> tuple[ingest.Batch, int, str]:
        body = ingest.decompress(body, encoding, settings.max_body_bytes)
        try:
            spans, rejected, reason = otlp.decode_traces_partial(
                body, content_type, max_bytes=settings.max_body_bytes
            )
        except otlp.UnsupportedContentType as exc:
            raise ingest.IngestError(415, str(exc)) from None
        except otlp.OtlpDecodeError as exc:
            raise ingest.IngestError(400, str(exc)) from None
        if len(spans) > settings.max_spans_per_request:
            raise ingest.IngestError(
                413, f"{len(spans)} spans in one request; the limit is {settings.max_spans_per_request}"
            )
        return ingest.from_spans(spans, settings.max_record_bytes), rejected, reason

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/events",
        tags=["ingest"],
        summary="Ingest a batch of call records from the core layer",
        responses={
            400: {"description": "Not a batch (bad gzip or JSON, wrong shape)"},
            401: {"description": "Missing or bad key"},
            413: {"description": "Body or batch too large"},
            415: {"description": "Unsupported Content-Encoding"},
            429: {"description": "Too many records waiting to be written (Retry-After)"},
            503: {"description": "Storage unavailable (Retry-After)"},
        },
    )
    async def post_events(request: Request, project: Project) -> dict[str, Any]:
        body = await read_body(request, settings.max_body_bytes)
        batch = await asyncio.to_thread(events_of, body, request.headers.get("content-encoding"))
        if batch.records:
            await store_call(request.app.state.writer.write, project, batch.records, [], batch.texts)
        answer: dict[str, Any] = {"accepted": len(batch.records), "rejected": batch.rejected}
        if batch.dropped:  # only then: the answer stays what senders and their tests compare it to
            answer["warnings"] = batch.dropped
        return answer

    @app.post(
        "/v1/traces",
        tags=["ingest"],
        summary="OTLP/HTTP trace export (protobuf or JSON)",
        response_class=Response,
    )
    async def post_traces(request: Request, project: Project) -> Response:
        content_type = request.headers.get("content-type", "")
        answer_type = (
            "application/json"
            if otlp.media_type(content_type) == "application/json"
            else "application/x-protobuf"
        )
        body = await read_body(request, settings.max_body_bytes)
        batch, rejected, reason = await asyncio.to_thread(
            spans_of, body, request.headers.get("content-encoding"), content_type
        )
        if batch.records or batch.spans:
            await store_call(request.app.state.writer.write, project, batch.records, batch.spans, batch.texts)
        rejected += len(batch.rejected)
        if batch.rejected and not reason:
            reason = str(batch.rejected[0].get("reason"))
        if batch.warnings and not reason:
            reason = batch.warnings[0]  # a partial success with 0 rejected spans is the spec's warning
        return Response(otlp.encode_partial_success(rejected, reason, answer_type), media_type=answer_type)

    app.include_router(api_router, prefix="/api")
    _mount_dashboard(app)
    if settings.no_auth:
        app.add_middleware(_BrowsersOfThisHostOnly)
    return app


class _App(FastAPI):
    """FastAPI with `_SecurityHeaders` around everything, Starlette's own 500 answer included.

    Starlette puts its `ServerErrorMiddleware` outside every middleware added with `add_middleware`, so
    an unhandled exception's 500 went out without the headers the rest of the answers carry.
    """

    def build_middleware_stack(self) -> ASGIApp:
        settings: ServerSettings = self.state.settings
        return _SecurityHeaders(
            super().build_middleware_stack(), hsts=settings.tls and not is_loopback(settings.host)
        )


# A year, the usual HSTS lifetime; no includeSubDomains: other hosts under the collector's domain are
# not ours to pin to HTTPS.
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class _SecurityHeaders:
    """`X-Content-Type-Options: nosniff` on every answer, and HSTS when the server itself serves HTTPS.

    Without nosniff a browser may sniff a JSON answer or a static file as HTML or script, and a record's
    text (prompts, answers: anyone with a key writes them) could then run as the dashboard's origin.

    HSTS makes the browser use https for the host from then on, so a plain-http link or a typed address
    cannot expose the sign-in cookie. Never for a loopback name: a browser pins a host for all its ports,
    and https on localhost would break every other local web app's plain-http port. A server bound to
    all addresses still skips it for a request that names a loopback host.
    """

    def __init__(self, app: Any, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self.hsts and not _names_loopback(scope)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # The pages set nosniff themselves: once is enough.
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                if hsts:
                    headers.append(_HSTS)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _names_loopback(scope: Any) -> bool:
    for name, value in scope["headers"]:
        if name == b"host":
            return is_loopback(_host_name(value.decode("latin-1")))
    return False


class _BrowsersOfThisHostOnly:
    """With --no-auth: no request a web page of another site made through the user's browser.

    Loopback keeps other machines out, not the browser on this one: any site's page could post made-up
    calls (a `no-cors` text/plain POST needs no preflight), and by DNS rebinding -- its own name made to
    resolve to 127.0.0.1 -- read every call as same-origin. Such requests name that site in `Host` (a
    rebinding) or `Origin` (a cross-site request); local tools and SDKs send a loopback `Host` and no
    `Origin`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin")
            reason = None
            if host and not is_loopback(_host_name(host)):
                reason = (
                    f"this server runs with --no-auth and answers only requests addressed to a loopback "
                    f"name (127.0.0.1, localhost, [::1]), not {host!r}"
                )
            elif origin is not None and origin.decode("latin-1").partition("://")[2] != host:
                reason = (
                    f"this server runs with --no-auth and takes no requests from pages of another site "
                    f"({origin.decode('latin-1')!r})"
                )
            if reason is not None:
                await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """`[::1]:4318` -> `::1`, `localhost:4318` -> `localhost`."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host


def _error(request: Request, status: int, reason: Any, headers: dict[str, str] | None = None) -> Response:
    """A failure answer: `{"error": reason}`, or on the OTLP route the `google.rpc.Status` it must be."""
    if request.url.path.endswith("/v1/traces"):
        body, kind = otlp.encode_status(status, str(reason), request.headers.get("content-type", ""))
        return Response(body, status_code=status, media_type=kind, headers=headers)
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _validation_reason(exc: RequestValidationError) -> str:
    """`limit (query): Input should be greater than or equal to 1`, one clause per wrong parameter."""
    clauses = []
    for error in exc.errors()[:5]:
        where = [str(part) for part in error.get("loc", ())]
        name = f"{where[-1]} ({where[0]})" if len(where) > 1 else "".join(where) or "request"
        clauses.append(f"{name}: {error.get('msg', 'invalid')}")
    return "; ".join(clauses) or "invalid request"


def _mount_dashboard(app: FastAPI) -> None:
    """The dashboard at `/`; a collector installed without Jinja2 keeps working, headless."""
    try:
        from litelens.server.ui import mount
    except ImportError as exc:
        log.warning("dashboard disabled: %s (pip install 'litelens[server]')", exc)
        return
    mount(app)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("litelens")
    except Exception:
        return "0"
