"""The README's first command ends in `litelens demo`: it runs the whole product and its summary is true.

`bash scripts/demo.sh` (run once per session by conftest's `readme_demo`) starts a real server, makes 200
LiteLLM calls through both layers, and prints a table read from the server's rollups. This test then opens
the same database with its own server and checks the table against the raw calls the query API lists, and
that the agent runs became traces.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server_helpers import ServerProcess, free_port
from ui_helpers import Shots, save_overview_screenshot

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def all_calls(client: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get_json(
            "/api/calls?limit=1000&start=0" + (f"&cursor={cursor}" if cursor else ""), key=False
        )
        calls += page["calls"]
        cursor = page["next_cursor"]
        if not cursor:
            return calls


def parse_table(stdout: str) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    pattern = re.compile(r"^(\S.*?)\s+(\d+)\s+(\d+)\s+([\d.]+|-)\s+([\d.]+|-)\s+(\d+)\s+(\d+)\s+([\d.]+)$")
    for line in stdout.splitlines():
        match = pattern.match(line)
        if match and match.group(1) != "model":
            name, count, errors, p50, p95, t_in, t_out, cost = match.groups()
            rows[name.strip()] = {
                "count": int(count),
                "errors": int(errors),
                "p50": float(p50) if p50 != "-" else math.nan,
                "p95": float(p95) if p95 != "-" else math.nan,
                "tokens_in": int(t_in),
                "tokens_out": int(t_out),
                "cost": float(cost),
            }
    return rows


def rank(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


@dataclass
class DemoRun:
    stdout: str
    server: ServerProcess


@pytest.fixture(scope="module")
def demo(
    readme_demo: tuple[subprocess.CompletedProcess[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoRun]:
    """README's `bash scripts/demo.sh` (200 calls; run once per session by conftest's `readme_demo`),
    then its database behind a fresh `litelens serve --no-auth`."""
    out, db = readme_demo
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    server = ServerProcess(db, tmp_path_factory.mktemp("demo"), args=("--no-auth",)).start()
    try:
        yield DemoRun(out.stdout, server)
    finally:
        server.stop()


def test_demo_summary_matches_what_the_server_stored(demo: DemoRun) -> None:
    out = demo  # what `litelens demo` printed
    assert "200 calls stored for 200 made" in out.stdout
    assert "OpenTelemetry layer -> /v1/traces" in out.stdout
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/", out.stdout)
    table = parse_table(out.stdout)
    assert table["all models"]["count"] == 200

    server = demo.server
    client = server.client()
    calls = all_calls(client)
    assert len(calls) == 200 and len({c["call_id"] for c in calls}) == 200  # both layers, stored once

    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        model = call["response_model"] or call["request_model"]
        by_model[model.removeprefix(f"{call['provider']}/")].append(call)
    by_model["all models"] = calls
    assert set(table) == set(by_model)
    for model, rows in by_model.items():
        printed = table[model]
        assert printed["count"] == len(rows), model
        assert printed["errors"] == sum(r["status"] != "ok" for r in rows), model
        assert printed["tokens_in"] == sum(r["input_tokens"] for r in rows), model
        assert printed["tokens_out"] == sum(r["output_tokens"] for r in rows), model
        assert printed["cost"] == pytest.approx(sum(r["cost_usd"] or 0 for r in rows), abs=2e-6), model
        # Percentiles come from the rollups' histograms: within their documented ±4.9%, and a rank
        # either side for small groups.
        durations = [r["duration_ms"] for r in rows]
        assert rank(durations, 0.4) * 0.95 <= printed["p50"] <= rank(durations, 0.6) * 1.05, model
        assert rank(durations, 0.85) * 0.95 <= printed["p95"] <= max(durations) * 1.05, model

    # The workload's variety reached the store: providers, streams, embeddings, tools, errors, users.
    assert {c["provider"] for c in calls} >= {"openai", "deepseek", "mistral", "cerebras"}
    assert any(c["stream"] and c["ttft_ms"] for c in calls)
    assert any(c["call_type"] == "embedding" for c in calls)
    assert {c["status"] for c in calls} == {"ok", "error"}
    assert len({c["end_user"] for c in calls}) >= 4

    # An agent run is a session and a trace: the LLM calls and the tool span sit under `agent.run`.
    agent_call = next(c for c in calls if "agent" in c["tags"] and c["status"] == "ok")
    session = client.get_json(f"/api/sessions/{agent_call['session_id']}", key=False)
    assert len(session["calls"]) >= 2
    trace = client.get_json(f"/api/traces/{agent_call['trace_id']}", key=False)
    (root,) = trace["roots"]
    assert root["name"] == "agent.run"
    children = [child.get("name") for child in root["children"]]
    assert "tool.lookup_order" in children
    llm = [child for child in root["children"] if child.get("call")]
    assert len(llm) == len(session["calls"])
    assert all(child["call"]["session_id"] == agent_call["session_id"] for child in llm)


@pytest.mark.service
def test_progress_outside_a_terminal_is_plain_lines(
    readme_demo: tuple[subprocess.CompletedProcess[str], str],
) -> None:
    """In a CI log or a pipe the progress bar's carriage returns piled 40 redraws onto one line of
    several kilobytes; there it is one plain line per quarter of the calls."""
    out, _ = readme_demo
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # (text mode reads a carriage return as a line end, so the redraws show as bar lines here)
    assert "[####" not in out.stderr, out.stderr[-500:]
    progress = [line.strip() for line in out.stderr.splitlines() if "calls made" in line]
    assert progress == [f"{n}/200 calls made" for n in (50, 100, 150, 200)], out.stderr[-1000:]


def test_readme_screenshot_is_the_overview_of_the_demo(demo: DemoRun, shots: Shots) -> None:
    """The overview of the demo's data; with LITELENS_UPDATE_SCREENSHOTS=1 it replaces the README's image.

    It starts and stops its own browser rather than the session's `browser` fixture: Playwright's sync
    API keeps an event loop running in the main thread while it is up, and the tests of the modules after
    this one call `asyncio.run()`.
    """
    from litelens.testing.browser import have_chromium

    if not have_chromium():
        pytest.skip("no Chromium at /usr/bin/chromium; apt-get install chromium (.ci/run does)")
    path = save_overview_screenshot(demo.server.url, shots.folder / "overview.png", None, None, "1h")
    assert path.stat().st_size > 20_000
    if os.environ.get("LITELENS_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "img" / "overview.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def test_keep_running_sends_live_calls_until_ctrl_c(tmp_path: Path) -> None:
    """With --keep-running the demo keeps a trickle of calls going, so the charts move while a user
    watches; Ctrl-C (SIGINT to the demo) stops it cleanly and every live call is stored once."""
    import json
    import signal
    import time
    import urllib.request

    port = free_port()
    db = f"sqlite:///{tmp_path / 'live.db'}"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [sys.executable, "-m", "litelens.cli", "demo", "--calls", "10", "--db", db]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )

    def stored() -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/calls?limit=1000&start=0", timeout=5
            ) as r:
                return len(json.load(r)["calls"])
        except OSError:
            return 0

    try:
        deadline = time.monotonic() + 240
        while stored() < 13 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert stored() >= 13, "live calls after the first 10"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "/?range=1h" in out
    made = int(re.search(r"(\d+) more calls made while the server ran", out).group(1))  # type: ignore[union-attr]
    server = ServerProcess(db, tmp_path, args=("--no-auth",)).start()
    try:
        calls = all_calls(server.client())
    finally:
        server.stop()
    assert len(calls) == 10 + made and len({c["call_id"] for c in calls}) == len(calls)


def test_a_demo_that_ends_says_its_dashboard_link_dies_with_it(tmp_path: Path) -> None:
    """Run outside a terminal (an IDE's runner, `| tee`), the demo printed the dashboard's address and
    then stopped the server and deleted its data, saying nothing: the newcomer's first link was dead."""
    out = subprocess.run(
        [sys.executable, "-m", "litelens.cli", "demo", "--calls", "3"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TMPDIR": str(tmp_path)},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/", out.stdout)
    assert "The server stops with the demo, and its temporary data is deleted" in out.stdout, out.stdout
    assert "litelens demo --keep-running" in out.stdout
    assert not list(tmp_path.glob("litelens-demo-*")), "the temporary data is deleted, as it says"
