"""Every code block in README.md and docs/ runs (or is validated), and every relative link resolves.

How each kind of block is run is in `docs_harness.py`. A page whose blocks start a LiteLLM proxy needs
one (`LITELENS_TEST_PROXY_BIN`); in CI its skip is a failure like any other service test.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docs_harness import ROOT, Page, blocks, broken_links, pages
from litelens.testing import FakeProvider
from server_helpers import ServerProcess, free_port

pytestmark = pytest.mark.timeout(900)


def _get(page: Page, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{page.port}{path}")
    key = page.env.get("LITELENS_API_KEY")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _check_quickstart(page: Page) -> None:
    """What the quickstart promises you then see: the SDK, proxy, OTel and zero-code calls, one each."""
    deadline = time.monotonic() + 20  # the proxy's records are sent in the background
    calls: list[dict[str, Any]] = []
    while len(calls) < 4 and time.monotonic() < deadline:
        calls = _get(page, "/api/calls?limit=100&start=0")["calls"]
        time.sleep(0.2)
    assert len(calls) == 4, [(c["request_model"], c["service"]) for c in calls]
    # The proxy names the model with its provider (see docs/core.md); the others as the caller did.
    assert sorted(c["request_model"] for c in calls) == ["gpt-4o-mini"] * 3 + ["openai/gpt-4o-mini"]
    assert {c["status"] for c in calls} == {"ok"}
    traced = [c for c in calls if c["parent_span_id"]]
    assert len(traced) == 1  # the call made inside the application's own span
    trace = _get(page, f"/api/traces/{traced[0]['trace_id']}")
    assert [root["name"] for root in trace["roots"]] == ["answer-question"]
    assert any(_get(page, f"/api/calls/{c['call_id']}")["service"] == "my-app" for c in calls)


def _check_litellm_page(page: Page) -> None:
    """The LiteLLM docs page's SDK, proxy and metadata examples each reached the server, fields mapped."""
    deadline = time.monotonic() + 20
    calls: list[dict[str, Any]] = []
    while len(calls) < 3 and time.monotonic() < deadline:
        calls = _get(page, "/api/calls?limit=100&start=0")["calls"]
        time.sleep(0.2)
    assert len(calls) == 3, [(c["request_model"], c["tags"]) for c in calls]
    # (the proxy's call has tags too: LiteLLM's proxy tags each request with its User-Agent)
    (tagged,) = [c for c in calls if c["session_id"]]
    assert sorted(tagged["tags"]) == ["checkout", "support"]
    assert tagged["session_id"] == "ticket-1093" and tagged["end_user"] == "customer-42"
    assert _get(page, f"/api/calls/{tagged['call_id']}")["metadata"] == {"app_version": "2.3.1"}


def _calls_arrived(page: Page, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    calls: list[dict[str, Any]] = []
    while len(calls) < n and time.monotonic() < deadline:
        calls = _get(page, "/api/calls?limit=100&start=0")["calls"]
        time.sleep(0.2)
    return calls


def _check_faq(page: Page) -> None:
    """The serverless handler's call reached the server by the handler's own `flush()`."""
    calls = _calls_arrived(page, 1)
    assert [(c["request_model"], c["status"]) for c in calls] == [("gpt-4o-mini", "ok")], calls


def _check_otel_page(page: Page) -> None:
    """The spans sent by `LiteLensSpanExporter` and by the stock OTLP exporter both reached the server,
    redacted before any exporter saw them."""
    calls = _calls_arrived(page, 2)
    assert len(calls) == 2 and {c["request_model"] for c in calls} == {"gpt-4o-mini"}, calls
    stored = json.dumps([_get(page, f"/api/calls/{c['call_id']}") for c in calls])
    assert "ann@example.com" not in stored and "415 555 2671" not in stored
    assert "[EMAIL]" in stored and "[PHONE]" in stored


AFTER_PAGE: dict[str, Callable[[Page], None]] = {
    "docs/quickstart.md": _check_quickstart,
    "docs/litellm/litelens_integration.md": _check_litellm_page,
    "docs/faq.md": _check_faq,
    "docs/otel.md": _check_otel_page,
}

# Pages whose examples send to the server at the default endpoint without starting one: they get one,
# as a reader following them would have. Against a dead endpoint their flushes waited out their retries
# (the serverless handler's `flush(timeout=2)`, the stock OTLP exporter's backoff: ~7 s a page), and what
# they say was sent was never seen to arrive.
SERVED_PAGES = {"docs/faq.md", "docs/otel.md"}


def _page_params() -> Iterator[object]:
    for path in pages():
        name = str(path.relative_to(ROOT))
        needs_proxy = any("litellm --config" in b.text for b in blocks(path) if not b.skip_reason)
        marks = [pytest.mark.service] if needs_proxy else []
        yield pytest.param(path, id=name, marks=marks)


# README's demo command takes about a minute; it runs once per session (conftest's `readme_demo`), and
# tests/test_demo.py checks what it stored.
DEMO_COMMAND = "bash scripts/demo.sh"


@pytest.mark.parametrize("path", list(_page_params()))
def test_code_blocks_run(path: Path, request: pytest.FixtureRequest) -> None:
    page_blocks = [b for b in blocks(path) if not b.skip_reason]
    if any("litellm --config" in b.text for b in page_blocks) and not os.environ.get(
        "LITELENS_TEST_PROXY_BIN"
    ):
        pytest.skip("needs a LiteLLM proxy: set LITELENS_TEST_PROXY_BIN (scripts/test.sh does)")
    with FakeProvider() as provider, tempfile.TemporaryDirectory(prefix="litelens-docs-") as workdir:
        page = Page(path, Path(workdir), free_port(), provider.url, free_port())
        server = None
        if str(path.relative_to(ROOT)) in SERVED_PAGES:
            server = ServerProcess(page.env["LITELENS_DB"], Path(workdir), page.port, args=("--no-auth",))
            server.start()
        try:
            for block in page_blocks:
                if path == ROOT / "README.md" and block.text.strip() == DEMO_COMMAND:
                    out, _ = request.getfixturevalue("readme_demo")
                    assert out.returncode == 0, f"{block.where}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
                    continue
                page.run(block)
            check = AFTER_PAGE.get(str(path.relative_to(ROOT)))
            if check is not None:
                check(page)
        finally:
            page.stop()
            if server is not None:
                server.stop()


def test_relative_links_resolve() -> None:
    broken = [problem for path in pages() for problem in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_skipped_blocks_say_why() -> None:
    """The only way out of the docs tests is a visible marker with a reason; list them for review."""
    skipped = [b for path in pages() for b in blocks(path) if b.skip_reason is not None]
    for block in skipped:
        assert len(block.skip_reason or "") >= 10, f"{block.where}: give a real reason"


def test_the_harness_catches_a_broken_block(tmp_path: Path) -> None:
    """A page with a failing block of each kind fails: the docs test can fail."""
    bad = tmp_path / "bad.md"
    for text in (
        "```python\nimport litelens\nlitelens.no_such_function()\n```\n",
        "```bash\nlitelens no-such-command\n```\n",
        "```yaml\nlitellm_settings:\n  callbacks: [litelens.no_such_handler]\n```\n",
        "```bash\npip install 'litelens[no-such-extra]'\n```\n",
    ):
        bad.write_text(text)
        (block,) = blocks(bad)
        block.path = ROOT / "README.md"  # for `where`
        page = Page(bad, tmp_path, free_port(), "http://127.0.0.1:9")
        with pytest.raises(Exception):  # noqa: B017 (any failure will do: AssertionError, CalledProcessError)
            page.run(block)


def test_configuration_reference_names_every_setting() -> None:
    """Every variable the code reads, every settings field and every command-line option is documented."""
    import argparse
    import dataclasses
    import re

    from litelens import cli
    from litelens.config import Limits, Settings
    from litelens.server.config import ServerSettings

    page = (ROOT / "docs" / "configuration.md").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    missing = [
        v for v in sorted(set(re.findall(r"\"((?:LITELENS|OTEL)_[A-Z_]+)\"", source))) if v not in page
    ]
    for settings in (Settings, Limits, ServerSettings):
        missing += [
            f.name for f in dataclasses.fields(settings) if f"`{f.name}`" not in page and f.name not in page
        ]

    parser_options: list[str] = []
    original = argparse.ArgumentParser.parse_known_args

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    parser_options.append(f"litelens {name}")
                    parser_options.extend(
                        o for a in sub._actions for o in a.option_strings if o.startswith("--")
                    )
        raise SystemExit(0)

    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(SystemExit):
            cli.main(["--help"])
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]
    assert parser_options, "no options found: the test no longer sees the command line"
    missing += [o for o in parser_options if o != "--help" and f"`{o}" not in page and o not in page]
    assert not missing, f"docs/configuration.md does not mention: {missing}"


def test_api_reference_is_generated_from_the_current_openapi_document() -> None:
    from litelens.server.apidoc import render
    from litelens.server.app import create_app
    from litelens.server.config import ServerSettings

    document = create_app(ServerSettings(db_url="sqlite:///:memory:")).openapi()
    assert (ROOT / "docs" / "api.md").read_text() == render(document), (
        "docs/api.md is out of date: python -m litelens.server.apidoc > docs/api.md"
    )
