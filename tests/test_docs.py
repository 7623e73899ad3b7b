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


def _calls_arrived(page: Page, n: int) -> list[dict[str, Any]]:
    """The calls stored, once there are `n` of them or 20 s have passed."""
    deadline = time.monotonic() + 20
    while True:
        calls: list[dict[str, Any]] = _get(page, "/api/calls?limit=100&start=0")["calls"]
        if len(calls) >= n or time.monotonic() > deadline:
            return calls
        time.sleep(0.1)


def _check_quickstart(page: Page) -> None:
    """What the quickstart promises you then see: the SDK, proxy, OTel and zero-code calls, one each."""
    calls = _calls_arrived(page, 4)  # the proxy's records are sent in the background
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
    calls = _calls_arrived(page, 3)
    assert len(calls) == 3, [(c["request_model"], c["tags"]) for c in calls]
    # (the proxy's call has tags too: LiteLLM's proxy tags each request with its User-Agent)
    (tagged,) = [c for c in calls if c["session_id"]]
    assert sorted(tagged["tags"]) == ["checkout", "support"]
    assert tagged["session_id"] == "ticket-1093" and tagged["end_user"] == "customer-42"
    assert _get(page, f"/api/calls/{tagged['call_id']}")["metadata"] == {"app_version": "2.3.1"}


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


def _check_modes_page(page: Page) -> None:
    """Both layers at once: the call is stored once, with the core record's content and the span's place
    in the application's trace."""
    deadline = time.monotonic() + 20  # the two records of the call may arrive one after the other
    while True:
        calls = _calls_arrived(page, 1)
        assert len(calls) == 1, calls
        call = _get(page, f"/api/calls/{calls[0]['call_id']}")
        merged = bool(call["parent_span_id"] and call["request"])
        if merged or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert call["request"]["messages"] == [{"role": "user", "content": "Where is my parcel?"}], call
    trace = _get(page, f"/api/traces/{call['trace_id']}")
    (root,) = trace["roots"]
    assert root["name"] == "handle-ticket", trace
    assert [child["call_id"] for child in root["children"]] == [call["call_id"]], trace


AFTER_PAGE: dict[str, Callable[[Page], None]] = {
    "docs/modes.md": _check_modes_page,
    "docs/quickstart.md": _check_quickstart,
    "docs/litellm/litelens_integration.md": _check_litellm_page,
    "docs/faq.md": _check_faq,
    "docs/otel.md": _check_otel_page,
}

# Pages whose examples send to the server at the default endpoint without starting one: they get one,
# as a reader following them would have. Against a dead endpoint their flushes waited out their retries
# (the serverless handler's `flush(timeout=2)`, the stock OTLP exporter's backoff: ~7 s a page), and what
# they say was sent was never seen to arrive.
SERVED_PAGES = {"docs/faq.md", "docs/modes.md", "docs/otel.md"}


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


def _command_options() -> list[tuple[str, str, Any]]:
    """(command, option, default) of every `litelens` command's options, `fake-provider`'s and
    `receiver`'s own parsers included, as argparse has them."""
    import argparse

    from litelens import cli
    from litelens.testing import fake_provider, receiver

    found: list[tuple[str, str, Any]] = []
    original = argparse.ArgumentParser.parse_known_args

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        parsers = [(self.prog.removeprefix("litelens").strip(), self)]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers = list(action.choices.items())
        for command, parser in parsers:
            found.extend(
                (command, option, action.default)
                for action in parser._actions
                for option in action.option_strings
                if option.startswith("--") and option != "--help"
            )
        raise SystemExit(0)

    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        for run in (cli.main, fake_provider.run_cli, receiver.run_cli):
            with pytest.raises(SystemExit):
                run(["--help"])
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]
    return found


def test_the_command_line_tables_give_each_options_default() -> None:
    """Where docs/configuration.md describes an option, it says the default the parser has: in the
    server's table its `default` column, in the command-line table the words after the option (`--calls
    200`, `--output FILE (default stdout)`). `fake-provider` and `receiver` left their `--host` default
    out."""
    import re

    page = (ROOT / "docs" / "configuration.md").read_text()
    tables = _tables(page)
    (serve_rows,) = [rows for header, rows in tables if header[:3] == ["option", "variable", "default"]]
    (command_rows,) = [rows for header, rows in tables if header[:2] == ["command", "options"]]
    serve = {re.findall(r"`(--[\w-]+)`", row[0])[0]: row[2] for row in serve_rows if row[0]}
    options = {" ".join(re.findall(r"`litelens ([\w-]+)", row[0])): row[1] for row in command_rows}
    problems = []
    options_seen = _command_options()
    assert {command for command, _, _ in options_seen} >= {"serve", "export", "tail", "fake-provider"}
    for command, option, default in options_seen:
        if default is None or default is False or default == [] or default == "==SUPPRESS==":
            continue  # nothing to say: the option is off or unset unless given
        if isinstance(default, float) and default.is_integer():
            default = int(default)
        shown = {"-": "stdout", 0: "a free one"}.get(default, str(default))
        if command == "serve":
            said = serve.get(option, "")
        else:
            cell = options.get(command, "")
            at = cell.find(f"`{option}")
            following = re.search(r"[,;] `-", cell[at + 1 :]) if at >= 0 else None
            said = "" if at < 0 else cell[at : at + 1 + following.start() if following else None]
        if not re.search(rf"(?<![\w.]){re.escape(shown)}(?![\w.])", said):
            problems.append(f"litelens {command} {option}: default {default!r}, documented as {said!r}")
    assert not problems, "\n".join(problems)


def test_the_core_page_names_every_counter_stats_returns() -> None:
    """docs/core.md lists `stats()`'s counters; three the transport added were missing from it."""
    import re

    from litelens.callback import Callback

    callback = Callback(endpoint="http://127.0.0.1:9", spool_dir="off")
    try:
        counters = set(callback.stats())
    finally:
        callback.shutdown(0.1)
    page = (ROOT / "docs" / "core.md").read_text()
    start = page.index("`stats()` returns counters:")
    listed = set(re.findall(r"`(\w+)`", page[start : page.index("(with sinks:", start)]))
    assert counters <= listed, f"docs/core.md does not name: {sorted(counters - listed)}"
    assert listed - {"stats"} <= counters, (
        f"docs/core.md names counters stats() lacks: {sorted(listed - counters)}"
    )


def test_api_reference_is_generated_from_the_current_openapi_document() -> None:
    from litelens.server.apidoc import render
    from litelens.server.app import create_app
    from litelens.server.config import ServerSettings

    document = create_app(ServerSettings(db_url="sqlite:///:memory:")).openapi()
    assert (ROOT / "docs" / "api.md").read_text() == render(document), (
        "docs/api.md is out of date: python -m litelens.server.apidoc > docs/api.md"
    )


def _tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """The page's pipe tables, as (header, rows) with the cells stripped (`\\|` kept inside a cell)."""
    import re

    tables: list[tuple[list[str], list[list[str]]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            current.append(cells)
        elif current:
            tables.append((current[0], [row for row in current[2:]]))
            current = []
    return tables


def _documented_value(cell: str) -> Any:
    """What a table's default cell says, as a value: its first `code` span, else its words."""
    import re

    from litelens.server.config import parse_duration

    code = re.findall(r"`([^`]*)`", cell)
    text = code[0] if code else cell.strip()
    mib = re.fullmatch(r"(\d+) MiB", text)
    if mib:
        return int(mib.group(1)) * 2**20
    if text.lower() in ("", "none", "off", "keep everything", "the http sender only", "()"):
        return None  # nothing: None, () or off
    if text in ("true", "false"):
        return text == "true"
    for parse in (int, float, parse_duration):
        try:
            return parse(text)
        except ValueError:
            pass
    return os.path.expanduser(text) if text.startswith("~") else text


def _same(documented: Any, actual: Any) -> bool:
    if documented is None:
        return actual in (None, (), False)
    if isinstance(documented, str) and isinstance(actual, str) and "~" in documented:
        return actual == documented.replace("~", str(Path.home()))
    return bool(documented == actual)


# A valid value for each variable that differs from its default: setting it must change the setting the
# page says the variable is for.
_SAMPLES = {
    "LITELENS_ENDPOINT": "http://collector.example:4318",
    "LITELENS_API_KEY": "ll_sample",
    "LITELENS_SPOOL_DIR": "/tmp/litelens-sample-spool",
    "LITELENS_REDACT": "email",
    "LITELENS_SINKS": "console",
    "LITELENS_SERVICE": "sample-service",
    "OTEL_SERVICE_NAME": "sample-service",
    "LITELENS_ENVIRONMENT": "staging",
    "LITELENS_MAX_STRING_CHARS": "100",
    "LITELENS_SAMPLE_RATE": "0.5",
    "LITELENS_TIMEOUT": "2.5",
    "LITELENS_HOST": "127.0.0.2",
    "LITELENS_DB": "sqlite:////tmp/litelens-sample.db",
    "LITELENS_RETENTION": "7d",
    "LITELENS_RETENTION_EVERY": "1h",
    "LITELENS_KEY_CACHE_TTL": "45s",
    "LITELENS_CA_BUNDLE": __file__,  # a path that exists is all the setting checks before a connection
}


def test_configuration_tables_match_the_code(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """Both ways: each variable the code reads is in a table of docs/configuration.md and each variable
    the docs name anywhere is read by the code; each table row's variable sets the setting the row
    names, to the documented default when unset; and no documented variable is "unknown" to the
    warning that catches misspelt ones."""
    import dataclasses
    import inspect
    import logging
    import re

    import litelens.config
    from litelens import Callback
    from litelens.config import Limits, Settings
    from litelens.server.config import ServerSettings

    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    page = (ROOT / "docs" / "configuration.md").read_text()
    tables = _tables(page)
    variable = re.compile(r"`((?:LITELENS|OTEL)_[A-Z_]+)`")
    in_tables = {v for _, rows in tables for row in rows for cell in row for v in variable.findall(cell)}
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    read = {v for v in re.findall(r"\"(LITELENS_[A-Z_]+)\"", source) if not v.startswith("LITELENS_TEST_")}
    problems = [
        f"{v}: read by the code, in no table of docs/configuration.md" for v in sorted(read - in_tables)
    ]
    named_in_docs = {v for path in pages() for v in re.findall(r"\b(LITELENS_[A-Z_]+)\b", path.read_text())}
    problems += [
        f"{v}: named in the docs, read by no code"
        for v in sorted(named_in_docs - read)
        if not v.startswith("LITELENS_TEST_") and v != "LITELENS_SAMPLERATE"  # the misspelling example
    ]

    core = Settings.from_env({})
    server = ServerSettings.from_env({})
    callback_arguments = {
        name: p for name, p in inspect.signature(Callback).parameters.items() if p.kind == p.KEYWORD_ONLY
    }
    documented_arguments: set[str] = set()

    def changed(before: Any, after: Any) -> list[str]:
        return [
            f.name for f in dataclasses.fields(before) if getattr(before, f.name) != getattr(after, f.name)
        ]

    for header, rows in tables:
        if header[:3] == ["argument (`Settings` field)", "variable", "default"]:
            for row in rows:
                (field_name,) = re.findall(r"`([\w.]+)`", row[0])
                documented_arguments.add(field_name)
                owner, _, attribute = field_name.rpartition(".")
                if owner != "limits" and not hasattr(core, attribute):  # an argument of Callback() only
                    actual = callback_arguments[attribute].default
                else:
                    actual = getattr(core.limits if owner == "limits" else core, attribute)
                if not _same(_documented_value(row[2]), actual):
                    problems.append(f"{field_name}: documented default {row[2]}, the code's is {actual!r}")
                for name in variable.findall(row[1]):
                    try:
                        after = Settings.from_env({name: _SAMPLES.get(name) or _other(row[2])})
                    except ValueError as exc:
                        problems.append(f"{name}, documented as {field_name}: {exc}")
                        continue
                    if changed(core, after) != [owner or attribute]:
                        problems.append(f"{name} sets {changed(core, after)}, documented as {field_name}")
        elif header[:3] == ["option", "variable", "default"]:
            for row in rows:
                names = variable.findall(row[1])
                for name in names:
                    try:
                        sample = _SAMPLES.get(name) or _other(row[2])
                        fields = changed(server, ServerSettings.from_env({name: sample}))
                    except ValueError as exc:
                        problems.append(f"{name}: {exc}")
                        continue
                    if len(fields) != 1:
                        problems.append(f"{name} sets {fields}, not one setting")
                        continue
                    actual = getattr(server, fields[0])
                    documented = _documented_value(row[2])
                    if name == "LITELENS_DB":
                        documented = documented.replace("~", str(Path.home()))
                    if not _same(documented, actual):
                        problems.append(f"{name}: documented default {row[2]}, the code's is {actual!r}")

    problems += [
        f"Callback({name}=...) or Settings.{name}: no row in the table of Callback's arguments"
        for name in sorted(
            callback_arguments.keys() | {f.name for f in dataclasses.fields(Settings) if f.name != "limits"}
        )
        if name not in documented_arguments
    ]
    problems += [
        f"Limits.{f.name}: no row in the table of Callback's arguments"
        for f in dataclasses.fields(Limits)
        if f"limits.{f.name}" not in documented_arguments
    ]
    problems += [
        f"ServerSettings.{f.name}: not in docs/configuration.md"
        for f in dataclasses.fields(ServerSettings)
        if f"`{f.name}`" not in page
    ]

    # The other pages' tables of variables give the same defaults as this page.
    reference: dict[str, str] = {}  # the first row naming a variable: the core's before the OTel layer's
    for header, rows in tables:
        if header[1:3] == ["variable", "default"]:
            for row in rows:
                for name in variable.findall(row[1]):
                    reference.setdefault(name, row[2])
    for path in pages():
        if path.name == "configuration.md":
            continue
        for header, rows in _tables(path.read_text()):
            if "default" not in header or "variable" not in header[0]:
                continue
            column = header.index("default")
            for row in rows:
                names = variable.findall(row[0])
                values = re.findall(r"`[^`]*`", row[column]) if len(names) > 1 else []
                values = values or [row[column]]
                for name, cell in zip(
                    names, values * len(names) if len(values) == 1 else values, strict=True
                ):
                    if name in reference and not _same_default(cell, reference[name]):
                        problems.append(
                            f"{path.relative_to(ROOT)}: {name} defaults to {cell}; "
                            f"docs/configuration.md says {reference[name]}"
                        )

    # A documented variable must not be taken for a misspelt one ("ignoring unknown variable").
    monkeypatch.setattr(litelens.config, "_warned_unknown", set())
    with caplog.at_level(logging.WARNING, logger="litelens"):
        Settings.from_env(
            {name: _SAMPLES.get(name, "1") for name in in_tables if name.startswith("LITELENS_")}
        )
    problems += [m for m in caplog.messages if "unknown variable" in m]
    assert not problems, "\n".join(problems)


def test_the_jsonl_sink_table_matches_the_code(tmp_path: Path) -> None:
    """docs/configuration.md's JSONL table: every argument of JsonlSink (and of JsonlSpanExporter) with
    its default, and every short-form option, which from_spec takes and passes on to the sink."""
    import inspect
    import re

    from litelens import sinks
    from litelens.otel import JsonlSpanExporter

    (table,) = [
        rows
        for header, rows in _tables((ROOT / "docs" / "configuration.md").read_text())
        if header[:3] == ["argument", "short-form option", "default"]
    ]
    documented = {re.findall(r"`(\w+)`", row[0])[0]: row for row in table}
    problems = []
    for cls in (sinks.JsonlSink, JsonlSpanExporter):
        for name, parameter in inspect.signature(cls).parameters.items():
            if name not in documented:
                problems.append(f"{cls.__name__}({name}=...): no row")
            elif parameter.default is not inspect.Parameter.empty:
                cell = documented[name][2]
                value = None if cell.startswith("none") else _documented_value(cell)
                if not _same(value, parameter.default):
                    problems.append(
                        f"{name}: documented default {cell}, {cls.__name__}'s is {parameter.default!r}"
                    )
    options = {re.findall(r"`(\w+)`", row[1])[0] for row in table if row[1] and row[0] != "`path`"}
    if options != set(sinks._JSONL_OPTIONS):
        problems.append(
            f"short-form options: documented {sorted(options)}, taken {sorted(sinks._JSONL_OPTIONS)}"
        )
    samples = {"max_bytes": ("1000", 1000), "max_age_s": ("2h", 7200), "gzip": ("false", False)}
    samples |= {"fsync": ("true", True), "keep_files": ("3", 3), "keep_age_s": ("7d", 7 * 86400)}
    for option, (raw, value) in samples.items():
        sink = sinks.from_spec(f"jsonl:{tmp_path}/{option}.jsonl?{option}={raw}")
        assert isinstance(sink, sinks.JsonlSink)
        if getattr(sink.writer, option) != value:
            problems.append(f"jsonl:PATH?{option}={raw} set {getattr(sink.writer, option)!r}")
        sink.shutdown(1)
    assert not problems, "\n".join(problems)


def _same_default(cell: str, reference_cell: str) -> bool:
    documented, reference = _documented_value(cell), _documented_value(reference_cell)
    return documented == reference or (documented is None and reference in (None, False))


def _other(default_cell: str) -> str:
    """A valid value unlike the documented default: the other boolean, or a larger number."""
    value = _documented_value(default_cell)
    if isinstance(value, bool):
        return "false" if value else "true"
    if isinstance(value, (int, float)):
        return str(int(value) + 1)
    raise AssertionError(f"give a sample value for the variable with default {default_cell}")
