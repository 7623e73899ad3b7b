"""Signing in to the dashboard with a project API key, and which project a page request belongs to.

The sign-in form posts the key once; the server checks it the way the API checks a bearer key (through
the key cache, against the stored hash) and keeps it in an HttpOnly, SameSite=Strict cookie. The cookie
therefore holds nothing the server cannot verify on every request, scripts on the page cannot read it,
other sites cannot send it, and revoking the key signs the browser out within the key cache's TTL. The
key never appears in a URL (it would end up in logs and history). A link to a page followed from another
site loads the page again from this one (`sign_in_redirect`), so a shared link opens for a signed-in
browser as under SameSite=Lax, while other sites' forms, scripts and frames still never carry the cookie.
With `--no-auth` (loopback only) every page is open and shows the default project, as the API does.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from markupsafe import escape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from litelens.server.deps import lookup_key, store_call
from litelens.server.ui.params import only
from litelens.server.ui.render import SECURITY_HEADERS, page, refusal

COOKIE = "litelens_key"
COOKIE_MAX_AGE = 30 * 86400
MAX_FORM_BYTES = 4096

router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """Raised by `page_project` when the request carries no valid key; answered with a redirect."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def page_project(request: Request) -> int:
    """The project a dashboard request is for (the cookie's key), or SignInRequired."""
    state = request.app.state
    if state.settings.no_auth:
        project = int(state.default_project_id)
    else:
        key = request.cookies.get(COOKIE, "")
        found = await lookup_key(state.keys, key) if key else None
        if found is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        project = int(found)
    request.state.project_name = await store_call(_project_name, request, project)
    return project


def _project_name(request: Request, project: int) -> str:
    for row in request.app.state.store.list_projects():
        if int(row["id"]) == project:
            return str(row["name"])
    return f"project {project}"


def safe_next(target: str | None) -> str:
    """Only a path on this server: an open redirect would let a link send a signed-in user anywhere.

    URL parsers drop tabs and line breaks, so `/<tab>/evil.example` is read as `//evil.example`, another
    host: a target with any control character is refused too."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(c < " " or c == "\x7f" for c in target):
        return "/"
    return target


def sign_in_redirect(exc: SignInRequired, request: Request) -> Response:
    """The sign-in form, then back to the page asked for; or, for a link followed from another site, the
    same page again first.

    The cookie is SameSite=Strict, so a browser that is signed in does not send it when a link to a page
    is followed from another site (a chat, a ticket, a webmail): a shared link always asked for the key
    again. Asked again from this page (a same-site navigation), the page gets the cookie; without one,
    that request comes back here as same-site and gets the form, so the hop is made at most once.
    """
    headers = request.headers
    # Only a top-level page load (a link followed), never a subresource or a frame (which the pages'
    # `frame-ancestors 'none'` refuses anyway): pages are read-only, so this is what SameSite=Lax allows.
    if (
        request.method == "GET"
        and headers.get("sec-fetch-site") == "cross-site"
        and headers.get("sec-fetch-mode") == "navigate"
        and headers.get("sec-fetch-dest") == "document"
    ):
        target = escape(safe_next(exc.next_url))  # (the page reloads itself; the link is for no-refresh)
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0">'
            f'<title>Opening · litelens</title></head><body><p>Opening <a href="{target}">{target}</a>…</p>'
            "</body></html>",
            headers=SECURITY_HEADERS,
        )
    return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/')}", status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str = "/") -> Response:
    if request.app.state.settings.no_auth:
        return RedirectResponse(safe_next(next), status_code=303)
    # Two different pages to return to: neither is guessed (the sign-in would have led to one silently).
    refused = only(request.query_params, ("next",), "the sign-in page")
    if refused:
        return refusal(request, refused, "Sign in", "/login", "Sign in")
    return page(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    body = await request.body()
    form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    target = safe_next((form.get("next") or ["/"])[0])
    state = request.app.state
    found = await lookup_key(state.keys, key) if key else None
    if found is None:
        return page(
            request,
            "login.html",
            status=401,
            next=target,
            error="That key is unknown or revoked. Create one with: litelens keys create --project NAME",
        )
    answer = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    answer.set_cookie(
        COOKIE,
        key,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return answer


@router.post("/logout")
async def logout() -> Response:
    answer = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer
