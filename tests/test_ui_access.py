"""The dashboard's boundaries in a real browser and over HTTP: nothing is fetched from outside the server,
recorded content never runs, a key sees its own project only, the sign-in cookie, the keyboard, and the
open mode of `--no-auth`. Browser tests save screenshots under test-output/<test name>/."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable

import pytest

from server_helpers import Client, ServerProcess, make_record
from ui_helpers import Shots, Visit, post_records

XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


@pytest.mark.service
def test_pages_fetch_nothing_outside_the_server_and_never_run_recorded_content(
    project_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    trace = "9" * 32
    hostile = make_record(
        "hostile",
        request_model=f"gpt-4o{XSS}",
        trace_id=trace,
        session_id=f"sess{XSS}",
        end_user=XSS,
        tags=[XSS],
        metadata={XSS: XSS, "link": "javascript:window.__pwned=1"},
        error={"type": XSS, "message": XSS},
        status="error",
        request={
            "messages": [
                {"role": "system", "content": XSS},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"look at this {XSS}"},
                        {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.png"}},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                },
            ],
            "parameters": {"temperature": XSS},
        },
        response={
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"![x](https://example.com/t.gif) {XSS}"},
                }
            ]
        },
    )
    post_records(project_server.client(), [hostile, make_record("plain", trace_id=trace)])
    v = visit(project_server)
    dialogs: list[str] = []
    v.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in [
        "/",
        "/calls",
        "/calls?q=look",
        "/calls/hostile",
        f"/traces/{trace}",
        "/sessions",
        "/docs",
        f"/sessions/sess{XSS}".replace("<", "%3C")
        .replace(">", "%3E")
        .replace('"', "%22")
        .replace(" ", "%20"),
    ]:
        answer = v.go(path)
        assert answer.status == 200, path
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert v.page.evaluate("window.__pwned") is None, path
    v.go("/calls/hostile")
    for details in v.page.query_selector_all("details"):
        details.evaluate("d => d.open = true")
    assert v.page.evaluate("window.__pwned") is None
    assert XSS in v.page.inner_text("[data-testid=chat]"), "shown as text"
    placeholders = v.page.eval_on_selector_all(
        "[data-testid=image-placeholder]", "e => e.map(x => x.innerText)"
    )
    assert len(placeholders) == 2 and "images.example.com/cat.png" in placeholders[0]
    assert v.page.query_selector_all("main img") == []
    shots(v.page, "hostile-call")
    assert dialogs == []
    outside = [u for u in v.requests if not u.startswith(project_server.url) and not u.startswith("data:")]
    assert outside == [], outside
    assert any(u.endswith("/static/app.js") for u in v.requests), "the page's own script was loaded"


@pytest.mark.service
def test_a_bidi_override_in_a_recorded_name_does_not_reorder_the_page_around_it(
    project_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    """A right-to-left override (U+202E) in a recorded name, left open, reversed what the page put after
    it on the same line: the trace page read "chat gpt snekot 5→3 live" (counts swapped and the name
    split around them), the call's heading put its status badge inside the model's name, a call's second
    tag came first, and the time after a call id was reversed."""
    trace = "c" * 32
    spoof = "gpt\u202eevil"
    record = make_record(
        f"rlo{spoof}", request_model=spoof, trace_id=trace, status="error", tags=[spoof, "prod"]
    )
    record["usage"] = {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}
    post_records(project_server.client(), [record])
    v = visit(project_server)
    after_its_name = """([name, next]) => {
        const a = document.querySelector(name).getBoundingClientRect();
        const b = document.querySelector(next).getBoundingClientRect();
        return b.left >= a.right - 1;
    }"""
    v.go(f"/traces/{trace}")
    assert v.page.inner_text("[data-testid=span-tokens]") == "3→5 tokens"
    assert v.page.evaluate(after_its_name, ["a.span-name", "[data-testid=span-tokens]"])
    shots(v.page, "trace")
    v.go("/calls")
    tags = v.page.eval_on_selector_all("td .tag", "ts => ts.map(t => t.getBoundingClientRect().left)")
    assert len(tags) == 2 and tags[0] < tags[1], "the tags in the order recorded"
    v.go("/calls/rlo" + spoof)
    assert v.page.evaluate(after_its_name, ["[data-testid=call-id]", "[data-testid=call-time]"])
    assert spoof in v.page.inner_text("h1"), "the name itself is shown as recorded"
    name_then_badge = """(spoof) => {
        const h1 = document.querySelector("h1");
        const walk = document.createTreeWalker(h1, NodeFilter.SHOW_TEXT);
        let node = walk.nextNode();
        while (!node.nodeValue.includes(spoof)) node = walk.nextNode();
        const range = document.createRange();
        const at = node.nodeValue.indexOf(spoof);
        range.setStart(node, at);
        range.setEnd(node, at + spoof.length);
        return h1.querySelector(".badge").getBoundingClientRect().left >= range.getBoundingClientRect().right - 1;
    }"""
    assert v.page.evaluate(name_then_badge, spoof)
    shots(v.page, "call")


@pytest.mark.service
def test_signed_in_with_one_projects_key_nothing_of_another_project_is_reachable(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    key_b = sqlite_server.create_key("team-b")
    ours, theirs = sqlite_server.client(), sqlite_server.client(key_b)
    trace_b = "b" * 32
    post_records(
        ours, [make_record("a-call", request_model="model-of-a", session_id="sess-a", tags=["a-tag"])]
    )
    post_records(
        theirs,
        [
            make_record(
                "b-call",
                request_model="model-of-b",
                trace_id=trace_b,
                session_id="sess-b",
                tags=["b-tag"],
                request={"messages": [{"role": "user", "content": "secret of b"}]},
            )
        ],
    )
    v = visit(sqlite_server, key=None)
    page = v.page
    v.go("/calls/b-call")
    assert "/login?next=" in page.url, "signed out: every page asks for a key first"
    page.fill("#key", "ll_not-a-key")
    page.click("button[type=submit]")
    assert "unknown or revoked" in page.inner_text("[role=alert]")
    page.fill("#key", sqlite_server.key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile("/calls/b-call"))
    assert page.inner_text("h1") == "Not found"
    shots(page, "b-call-from-a")
    assert sqlite_server.key not in page.url
    cookie = next(c for c in v.context.cookies() if c["name"] == "litelens_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "scripts cannot read the key"
    for path in ["/calls/b-call", f"/traces/{trace_b}", "/sessions/sess-b"]:
        assert v.go(path).status == 404, path
    for path in ["/", "/calls?range=all", "/sessions", "/partials/calls?range=all"]:
        v.go(path)
        html = page.content()
        assert "b-call" not in html and "model-of-b" not in html and "sess-b" not in html, path
        assert "b-tag" not in html and "secret of b" not in html, path
    for path in [
        "/calls?q=secret&range=all",
        "/calls?model=model-of-b",
        f"/calls?trace_id={trace_b}&range=all",
    ]:
        v.go(path)
        assert v.call_ids() == [], path
    v.go("/calls?range=all")
    assert v.call_ids() == ["a-call"]
    assert page.inner_text("[data-testid=project]") == "default"

    # Signed in as B, the same URLs show B's data and not A's.
    other = visit(sqlite_server, key=key_b)
    assert other.go("/calls/b-call").status == 200
    assert "secret of b" in other.page.inner_text("[data-testid=chat]")
    assert other.go("/calls/a-call").status == 404
    assert other.page.inner_text("[data-testid=project]") == "team-b"
    # Signing out forgets the key.
    page.click("text=Sign out")
    page.wait_for_url(re.compile("/login"))
    assert [c for c in v.context.cookies() if c["name"] == "litelens_key"] == []
    v.go("/")
    assert "/login" in page.url


@pytest.mark.service
def test_the_pages_are_usable_with_the_keyboard(
    project_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    post_records(project_server.client(), [make_record(f"k-{i}") for i in range(3)])
    v = visit(project_server)
    page = v.page
    v.go("/?refresh=0")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focus is visible"
    focused = []
    for _ in range(4):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert focused[:4] == ["litelens", "Overview", "Calls", "Sessions"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # on "Calls"
    page.wait_for_url(re.compile("/calls$"))
    page.focus("input[name=model]")
    page.keyboard.type("gpt-4o-mini")
    page.keyboard.press("Enter")  # submits the filter form
    page.wait_for_url(re.compile("model=gpt-4o-mini"))
    assert len(v.call_ids()) == 3
    shots(page, "keyboard")


def test_without_a_key_pages_redirect_to_sign_in_and_the_cookie_is_httponly_strict(
    project_server: ServerProcess,
) -> None:
    client = Client(project_server.url)
    answer = client.get("/calls?model=x", key=None)
    assert answer.status == 303 and answer.headers["location"] == "/login?next=/calls%3Fmodel%3Dx"
    assert client.get("/partials/calls", key=None).status == 401
    assert client.get("/login", key=None).status == 200
    login = client.request(
        "POST",
        "/login",
        f"key={project_server.key}&next=//evil.example.com/".encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        key=None,
    )
    assert login.status == 303 and login.headers["location"] == "/", "no open redirect"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.get("/", key=None).status == 303, "the API's bearer header does not sign a page in"
    # The API does not take the dashboard's cookie: a page's script cannot use it against /api.
    answer = client.request(
        "GET", "/api/calls", headers={"Cookie": f"litelens_key={project_server.key}"}, key=None
    )
    assert answer.status == 401
    answer = client.request("GET", "/", headers={"Cookie": f"litelens_key={project_server.key}"}, key=None)
    assert answer.status == 200 and b"Requests" in answer.body


def test_sign_in_never_sends_the_browser_to_a_next_that_a_url_parser_reads_as_another_host(
    project_server: ServerProcess,
) -> None:
    """URL parsers (the WHATWG one of every browser, Python's urlsplit) drop tabs and line breaks, so
    `/<tab>/evil.example` is `//evil.example`, another host; sign-in took it for a path on this server."""
    client = Client(project_server.url)
    for sneaky in ("/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/"):
        form = client.get(f"/login?next={urllib.parse.quote(sneaky)}", key=None).body.decode()
        assert 'name="next" value="/"' in form, form
        login = client.request(
            "POST",
            "/login",
            f"key={project_server.key}&next={urllib.parse.quote(sneaky)}".encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
            key=None,
        )
        assert login.status == 303 and login.headers["location"] == "/", login.headers


@pytest.mark.service
def test_a_shared_link_followed_from_another_site_opens_the_page_for_a_signed_in_browser(
    project_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    """The sign-in cookie is SameSite=Strict, so it is not sent when a link is followed from another site
    (a chat, a ticket): a colleague's shared link asked a signed-in browser for its key again."""
    post_records(project_server.client(), [make_record("shared-1", request_model="gpt-4o")])
    shared = f"{project_server.url}/calls?model=gpt-4o&range=7d"
    link = f'<p>see <a id="shared" href="{shared}">this</a></p>'
    v = visit(project_server)
    page = v.page
    v.context.route("http://chat.example/", lambda route: route.fulfill(content_type="text/html", body=link))
    page.goto("http://chat.example/")
    page.click("#shared")
    # The page, or the sign-in form it asked for (the same URL is loaded twice on the way: wait for either).
    page.wait_for_selector("table[data-testid=calls], form[action='/login']")
    assert page.url == shared, page.url
    assert v.call_ids() == ["shared-1"] and page.input_value("input[name=model]") == "gpt-4o"
    shots(page, "shared-link")
    # Signed out, the same link leads to the sign-in form (once: no loop), and from there to the page.
    page.click("text=Sign out")
    page.goto("http://chat.example/")
    page.click("#shared")
    page.wait_for_url(re.compile(r"/login\?next="))
    page.fill("#key", project_server.key)
    page.click("button[type=submit]")
    page.wait_for_url(shared)
    assert v.call_ids() == ["shared-1"]


def test_with_no_auth_on_loopback_the_dashboard_is_open(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    server = server_factory(sqlite_url, args=("--no-auth",), key=False)
    client = Client(server.url)
    assert client.post_json("/v1/events", {"records": [make_record("open-1")]}, key=None).status == 200
    answer = client.get("/calls", key=None)
    assert answer.status == 200 and b"open-1" in answer.body and b"--no-auth" in answer.body
    assert client.get("/login", key=None).status == 303
    assert client.get("/calls/open-1", key=None).status == 200
    detail = client.get("/calls/missing", key=None)
    assert detail.status == 404 and detail.headers["content-type"].startswith("text/html")
    assert json.loads(client.get("/api/calls", key=None).body)["calls"][0]["call_id"] == "open-1"


@pytest.mark.service
def test_the_api_reference_page_lists_every_route_and_needs_no_internet(
    project_server: ServerProcess,
) -> None:
    """FastAPI's Swagger UI loads from a CDN; /docs is the dashboard's own page, open without a key."""
    import urllib.request

    with urllib.request.urlopen(f"{project_server.url}/openapi.json", timeout=10) as answer:
        document = json.load(answer)
    with urllib.request.urlopen(f"{project_server.url}/docs", timeout=10) as answer:
        assert answer.status == 200
        html = answer.read().decode()
    routes = [(m.upper(), path) for path, methods in document["paths"].items() for m in methods]
    assert len(routes) >= 10
    for method, path in routes:
        assert f"<code>{method} {path}</code>" in html, (method, path)
    assert "swagger" not in html.lower() and "cdn" not in html.lower()
    assert not re.search(r"""(src|href)=["']https?://""", html), "nothing linked from outside the server"
