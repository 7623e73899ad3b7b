"""`/docs`: the API reference as a dashboard page, built from the app's own OpenAPI document.

It replaces FastAPI's Swagger UI, which loads its script and styles from a CDN and so shows a blank
page on a collector without internet access. The page needs no key: it describes the API, it shows no
project's data.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from litelens.server.apidoc import operations
from litelens.server.ui.params import only
from litelens.server.ui.render import page, refusal

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def api_reference(request: Request) -> Response:
    # The page has no search or anchor parameter: `?q=calls` did nothing and looked like an answer.
    refused = only(request.query_params, (), "the API reference")
    if refused:
        return refusal(request, refused, "API reference", "/docs", "The whole API reference")
    return page(request, "reference.html", operations=operations(request.app.openapi()))
