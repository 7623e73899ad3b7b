"""The dashboard served by `litelens serve` at `/`: server-rendered HTML, SVG charts drawn in Python, one
small script and one stylesheet shipped with the package. Nothing is fetched from outside the server and
nothing needs building, so it works offline right after `pip install 'litelens[server]'`.

`mount(app)` adds the pages to the collector's app; the pages call the same store functions as the
query API, scoped to the project of the signed-in key.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

from litelens.server.deps import Unavailable
from litelens.server.ui import detail, pages, reference, signin
from litelens.server.ui.params import shown
from litelens.server.ui.render import STATIC_DIR, page, refusal


def mount(app: FastAPI) -> None:
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(detail.router)
    app.include_router(reference.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def _sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, signin.SignInRequired)
        if request.url.path.startswith("/partials/"):
            return PlainTextResponse("sign in again", status_code=401)
        return signin.sign_in_redirect(exc, request)

    app.add_exception_handler(signin.SignInRequired, _sign_in)

    # A page read while the database is away: the app's answer is the API's JSON, which a browser shows
    # as raw text; a reader of the dashboard gets a page that says what is wrong and how to retry.
    answer_api = app.exception_handlers[Unavailable]

    async def _unavailable(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path.startswith(("/api/", "/v1/", "/partials/")):
            answer = answer_api(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        again = path + (f"?{request.url.query}" if request.url.query else "")
        # (Without the driver's words: they name the database's host, and the sign-in form shows this
        # page to anyone.)
        shown = page(request, "unavailable.html", status=503, again=again)
        shown.headers["Retry-After"] = "1"
        return shown

    app.add_exception_handler(Unavailable, _unavailable)

    # A page's parameter FastAPI could not read (one typed as a number, say): the API's JSON 422 is for
    # API clients; a reader of the dashboard gets the page's 400 naming it, as the pages name what they
    # read themselves (`params.py`). The pages read their parameters as text, so this is the net under
    # a route that does not.
    answer_invalid = app.exception_handlers[RequestValidationError]

    async def _invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith(("/api/", "/v1/")) or request.url.path == "/health":
            answer = answer_invalid(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return refusal(request, _refusals(exc), "Cannot read the address", "/", "The overview")

    app.add_exception_handler(RequestValidationError, _invalid)


def _refusals(exc: RequestValidationError) -> dict[str, str]:
    """Each parameter FastAPI refused, with the value given and what it takes (pydantic's words)."""
    refused: dict[str, str] = {}
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        name = where[-1] if where else "request"
        given = error.get("input")
        value = f"={shown(given)}" if isinstance(given, str) else ""
        refused.setdefault(name, f"{name}{value}: {error.get('msg', 'cannot be read')}")
    return refused or {"request": "the request cannot be read"}


__all__ = ["mount"]
