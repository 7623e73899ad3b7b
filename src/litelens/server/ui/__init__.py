"""The dashboard served by `litelens serve` at `/`: server-rendered HTML, SVG charts drawn in Python, one
small script and one stylesheet shipped with the package. Nothing is fetched from outside the server and
nothing needs building, so it works offline right after `pip install 'litelens[server]'`.

`mount(app)` adds the pages to the collector's app; the pages call the same store functions as the
query API, scoped to the project of the signed-in key.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

from litelens.server.ui import detail, pages, reference, signin
from litelens.server.ui.render import STATIC_DIR


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


__all__ = ["mount"]
