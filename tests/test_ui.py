"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a real `litelens serve`
seeded through its real ingest endpoints (core batches, OTLP spans, and real LiteLLM calls through the
core callback): the overview, the calls table, a call, a trace, a session. Each browser test saves
screenshots under test-output/<test name>/ (fixtures `browser`, `visit`, `shots` in conftest.py)."""

from __future__ import annotations

import csv
import html as htmllib
import io
import itertools
import json
import math
import re
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import litellm
import pytest
from fastapi.routing import APIRoute
from playwright.sync_api import expect

from litelens import semconv
from litelens.callback import Callback
from litelens.server.app import create_app
from litelens.server.config import ServerSettings
from litelens.server.store.rollup import bin_of
from litelens.server.ui.detail import SESSION_ROWS
from litelens.server.ui.render import EMPTY, fmt_bucket, fmt_ms
from litelens.server.ui.timerange import RANGES
from litelens.testing import FakeProvider
from server_helpers import Client, ServerProcess, free_port, make_record, otlp_json, otlp_json_span
from test_ui_charts import SVG, parse_svg
from ui_helpers import Shots, Visit, post_records, save_overview_screenshot, sign_in, workload

ROOT = Path(__file__).resolve().parent.parent


def in_window(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "count": len(records),
        "errors": sum(r["status"] == "error" for r in records),
        "tokens_in": sum(r["usage"]["input_tokens"] for r in records),
        "tokens_out": sum(r["usage"]["output_tokens"] for r in records),
        "cost": sum(r.get("cost_usd") or 0 for r in records),
    }


@pytest.fixture
def sqlite_server(project_server: ServerProcess) -> ServerProcess:
    """Here a project of its own on the module's collector (conftest's `project_server`), not a server
    started for each test: these tests are about what a project's pages show."""
    return project_server


# --------------------------------------------------------------------------------------------------
# Overview


@pytest.mark.service
def test_the_overview_shows_the_seeded_totals_charts_and_breakdowns(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    records = workload(400, hours=20)
    post_records(sqlite_server.client(), records)
    expected = in_window(records)
    v = visit(sqlite_server)
    v.go("/?range=24h&refresh=0")
    page = v.page
    text = page.inner_text
    assert text("[data-testid=total-requests]") == f"{expected['count']:,}"
    assert text("[data-testid=total-errors]") == f"{expected['errors']:,}"
    assert text("[data-testid=total-tokens-in]") == f"{expected['tokens_in']:,}"
    assert text("[data-testid=total-tokens-out]") == f"{expected['tokens_out']:,}"
    assert text("[data-testid=total-cost]") == f"${expected['cost']:.4f}"
    titles = page.eval_on_selector_all(".chart .chart-title", "e => e.map(x => x.textContent)")
    assert titles == ["Requests", "Error rate", "Latency", "Time to first token", "Tokens", "Cost"]
    # Per model, the breakdown counts what was sent.
    by_model = {
        row[0]: int(row[1].replace(",", ""))
        for row in page.eval_on_selector_all(
            "[data-testid=by-model] tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        )
    }
    assert by_model == {m: sum(r["request_model"] == m for r in records) for m in by_model}
    assert sum(by_model.values()) == expected["count"]
    errors = page.inner_text("[data-testid=top-errors]")
    assert "RateLimitError" in errors
    # A chart shows a bucket's values when hovered.
    hit = page.locator(".chart").first.locator("rect.hit").last
    hit.hover()
    tip = page.locator("#tip")
    expect(tip).to_be_visible()  # (retries: a loaded machine may run the hover's handler late)
    expect(tip).to_have_text(re.compile(r"ok \d+; errors \d+"))
    shots(page, "overview-light")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    shots(page, "overview-dark")
    assert all(url.startswith(sqlite_server.url) for url in v.requests), v.requests


@pytest.mark.service
def test_a_charts_tooltip_stays_in_the_window_when_the_chart_is_at_its_bottom(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # The tooltip was always drawn below the pointer: for a chart at the bottom of the window it fell
    # outside it, and hovering the chart showed nothing.
    post_records(sqlite_server.client(), [make_record(f"tip-{i}", time.time() - 60 * i) for i in range(5)])
    v = visit(sqlite_server)
    page = v.page
    v.go("/?range=1h&refresh=0")
    chart = page.locator(".chart").nth(4).locator("svg")
    box = chart.bounding_box()
    assert box
    # A window that ends where the chart does; then point at the bottom of its plot (the hover columns
    # end above the time axis, at 158/180 of the chart's height).
    page.set_viewport_size({"width": 1400, "height": int(box["y"] + box["height"])})
    box = chart.bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] * 0.86)
    tip = page.locator("#tip")
    expect(tip).to_be_visible()
    shown = tip.bounding_box()
    assert shown and shown["y"] >= 0 and shown["y"] + shown["height"] <= page.viewport_size["height"], shown


@pytest.mark.service
def test_the_overview_follows_the_chosen_range_and_refreshes_itself(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    client = sqlite_server.client()
    now = time.time()
    post_records(client, [make_record(f"recent-{i}", now - 600 - i * 60) for i in range(10)])
    post_records(client, [make_record(f"older-{i}", now - 3 * 86400 - i * 60) for i in range(5)])
    v = visit(sqlite_server)
    page = v.page
    page.clock.install()  # the page's timers run on a clock the test moves: no 10 s of waiting
    v.go("/?range=24h&refresh=0")
    assert page.inner_text("[data-testid=total-requests]") == "10"
    page.select_option("select[name=range]", "7d")
    page.select_option("select[name=refresh]", "10")
    page.click("text=Apply")
    page.wait_for_url(re.compile(r"range=7d"))
    assert page.inner_text("[data-testid=total-requests]") == "15"
    page.evaluate("window.__same_document = true")
    page.locator(".chart").nth(2).locator("summary").click()  # the latency chart's values, opened
    post_records(client, [make_record(f"late-{i}") for i in range(3)])
    page.clock.run_for(10_000)  # the refresh chosen passes
    expect(page.locator("[data-testid=total-requests]")).to_have_text("18", timeout=25_000)
    assert page.evaluate("window.__same_document") is True, "refreshed in place, not reloaded"
    opened = page.eval_on_selector_all("details", "ds => ds.map(d => d.open)")
    assert opened[2] and sum(opened) == 1, "what the reader opened stays open (it closed every refresh)"
    shots(page, "seven-days-refreshed")


@pytest.mark.service
def test_an_auto_refresh_under_a_still_pointer_shows_the_refreshed_values_in_the_tooltip(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # The refresh replaced the charts under the pointer, but the tooltip kept the old bucket's values
    # until the mouse moved: "ok 1" while the bar beneath it had grown to three.
    client = sqlite_server.client()
    now = time.time()
    post_records(client, [make_record("still-1", now - 60)])
    v = visit(sqlite_server)
    page = v.page
    page.clock.install()  # the refresh's timer runs on a clock the test moves
    v.go("/?range=30d&refresh=10")  # a day a bucket: the calls stay in the last one however long this takes
    hit = page.locator(".chart").first.locator("rect.hit").last
    hit.hover()
    tip = page.locator("#tip")
    expect(tip).to_have_text(re.compile(r" · ok 1; errors 0; cancelled 0$"))
    post_records(client, [make_record("still-2", now - 30), make_record("still-3", now - 20, status="error")])
    page.clock.run_for(10_000)
    expect(page.locator("[data-testid=total-requests]")).to_have_text("3", timeout=25_000)
    expect(tip).to_have_text(re.compile(r" · ok 2; errors 1; cancelled 0$"))
    expect(tip).to_be_visible()
    # A pointer that left the window leaves no tooltip behind for the next refresh to bring back.
    page.mouse.move(5, 5)
    page.dispatch_event("html", "mouseleave")
    expect(tip).to_be_hidden()
    page.clock.run_for(10_000)
    page.wait_for_timeout(500)
    expect(tip).to_be_hidden()


@pytest.mark.service
def test_overview_of_a_day_of_traffic(sqlite_server: ServerProcess, browser: Any, shots: Shots) -> None:
    """Seeds a day of a small shop's traffic and saves the overview; with LITELENS_UPDATE_SCREENSHOTS=1 it
    replaces docs/img/overview-day.png (the README's own image is the demo's: tests/test_demo.py)."""
    import os

    post_records(sqlite_server.client(), workload(2500, hours=23, seed=11))
    path = save_overview_screenshot(
        sqlite_server.url, shots.folder / "overview.png", sqlite_server.key, browser
    )
    assert path.stat().st_size > 20_000
    if os.environ.get("LITELENS_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, ROOT / "docs" / "img" / "overview-day.png")


# --------------------------------------------------------------------------------------------------
# Calls


def seed_calls(client: Client, count: int = 80) -> list[dict[str, Any]]:
    now = time.time()
    records = [
        make_record(
            f"call-{i:03d}",
            now - 3000 + i * 30,
            request_model=["gpt-4o", "gpt-4o-mini", "claude-3"][i % 3],
            provider="anthropic" if i % 3 == 2 else "openai",
            status="error" if i % 5 == 0 else "ok",
            error={"type": "RateLimitError" if i % 10 == 0 else "APIError", "message": "no"}
            if i % 5 == 0
            else None,
            duration_ms=100.0 + (i * 53) % 400,
            usage={"input_tokens": i, "output_tokens": 2 * i, "total_tokens": 3 * i},
            cost_usd=i / 10_000,
            tags=["even"] if i % 2 == 0 else ["odd"],
            end_user=f"user-{i % 4}",
            session_id=f"sess-{i % 6}",
            metadata={"team": "red" if i % 4 == 0 else "blue"},
            request={"messages": [{"role": "user", "content": "needle in a haystack" if i == 42 else "hay"}]},
        )
        for i in range(count)
    ]
    post_records(client, records)
    return records


@pytest.mark.service
def test_a_filter_narrows_the_calls_table_to_the_right_rows(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    records = seed_calls(sqlite_server.client())
    v = visit(sqlite_server)
    page = v.page
    v.go("/calls")
    newest_first = [r["call_id"] for r in reversed(records)]
    assert v.call_ids() == newest_first[:50], "newest first, one page of 50"
    page.fill("input[name=model]", "claude-3")
    page.select_option("select[name=status]", "error")
    page.click("text=Apply filters")
    page.wait_for_url(re.compile(r"status=error"))
    expected = [
        r["call_id"] for r in reversed(records) if r["request_model"] == "claude-3" and r["status"] == "error"
    ]
    assert expected and v.call_ids() == expected
    assert "model=claude-3" in page.url and "status=error" in page.url
    shots(page, "model-and-status")

    page.fill("input[name=model]", "")
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "needle")
    page.click("text=Apply filters")
    page.wait_for_url(re.compile(r"q=needle"))
    assert v.call_ids() == ["call-042"]
    page.fill("input[name=q]", "")
    page.fill("input[name=meta]", "team=red")
    page.fill("input[name=tag]", "even")
    page.click("text=Apply filters")
    page.wait_for_url(re.compile(r"meta=team"))
    assert v.call_ids() == [r["call_id"] for r in reversed(records) if r["metadata"]["team"] == "red"]

    # Sorted by latency, then by cost ascending; the second page continues where the first stopped.
    v.go("/calls?sort=duration_ms&order=desc")
    by_latency = sorted(records, key=lambda r: (r["duration_ms"], r["call_id"]), reverse=True)
    assert v.call_ids() == [r["call_id"] for r in by_latency[:50]]
    page.click("a[rel=next]")
    assert v.call_ids() == [r["call_id"] for r in by_latency[50:]]
    page.click("tr.sorts >> text=Cost")
    assert v.call_ids() == [
        r["call_id"] for r in sorted(records, key=lambda r: r["cost_usd"], reverse=True)[:50]
    ]
    page.click("tr.sorts >> text=Cost")
    assert "order=asc" in page.url
    assert v.call_ids() == [r["call_id"] for r in sorted(records, key=lambda r: r["cost_usd"])[:50]]
    shots(page, "sorted-by-cost")


@pytest.mark.service
def test_a_url_with_filters_reproduces_the_view_in_a_fresh_browser(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    records = seed_calls(sqlite_server.client())
    first = visit(sqlite_server)
    first.go("/calls")
    first.page.fill("input[name=end_user]", "user-2")
    first.page.fill("input[name=error_type]", "RateLimitError")
    first.page.fill("input[name=session_id]", "sess-2")
    first.page.click("text=Apply filters")
    first.page.wait_for_url(re.compile(r"end_user=user-2"))
    shown = first.call_ids()
    expected = [
        r["call_id"]
        for r in reversed(records)
        if r["end_user"] == "user-2"
        and (r.get("error") or {}).get("type") == "RateLimitError"
        and r["session_id"] == "sess-2"
    ]
    assert shown == expected and shown
    url = first.page.url
    assert sqlite_server.key not in url

    second = visit(sqlite_server)  # another browser context: no state shared but the URL and the sign-in
    second.page.goto(url)
    assert second.call_ids() == shown
    assert second.page.input_value("input[name=end_user]") == "user-2"
    assert second.page.input_value("input[name=error_type]") == "RateLimitError"
    shots(second.page, "reproduced")
    # A link that was made while signed out leads back to the same view after signing in.
    third = visit(sqlite_server, key=None)
    third.page.goto(url)
    assert "/login" in third.page.url
    third.page.fill("#key", sqlite_server.key)
    third.page.click("button[type=submit]")
    third.page.wait_for_url(re.compile(r"/calls\?"))
    assert third.call_ids() == shown


@pytest.mark.service
def test_picking_a_range_after_a_custom_from_lists_that_range(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # From and To override the range: after a custom From, "Last hour" kept listing the custom window.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [make_record("two-days-ago", now - 2 * 86400), make_record("just-now", now - 60)],
    )
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3 * 86400))
    v = visit(sqlite_server)
    page = v.page
    v.go(f"/calls?range=24h&since={since}")
    assert v.call_ids() == ["just-now", "two-days-ago"]
    page.select_option("select[name=range]", "1h")
    page.click("text=Apply filters")
    page.wait_for_url(re.compile(r"range=1h"))
    assert v.call_ids() == ["just-now"], page.url
    assert page.input_value("input[name=since]") == "" and not re.search(r"since=[^&]", page.url)


@pytest.mark.service
def test_live_tail_shows_new_calls_without_a_reload(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    client = sqlite_server.client()
    post_records(client, [make_record("old-1", time.time() - 60, tags=["live"])])
    v = visit(sqlite_server)
    v.page.clock.install()  # the tail polls every 2 s; the test moves the page's clock on instead
    v.go("/calls?tag=live&tail=1")
    assert v.call_ids() == ["old-1"]
    new = make_record("new-1", tags=["live"], status="error", error={"type": "APIConnectionError"})
    post_records(client, [new, make_record("other", tags=["quiet"])])
    v.page.clock.run_for(2_000)
    v.page.wait_for_selector("tr[data-call-id=new-1]", timeout=15_000)
    assert v.call_ids() == ["new-1", "old-1"]
    # A long call is stored when it ends: started before new-1, it arrives after it, and still shows.
    post_records(client, [make_record("long-1", time.time() - 30, tags=["live"])])
    v.page.clock.run_for(2_000)
    v.page.wait_for_selector("tr[data-call-id=long-1]", timeout=15_000)
    assert v.call_ids() == ["new-1", "long-1", "old-1"]
    # A row already shown follows its call: the retry's record merged into it shows in place.
    retried = {**new, "status": "ok", "error": None, "usage": {"input_tokens": 3, "output_tokens": 77}}
    post_records(client, [retried])
    v.page.clock.run_for(2_000)
    row = v.page.locator("tr[data-call-id=new-1]")
    expect(row).to_contain_text("3 / 77", timeout=15_000)
    expect(row.locator(".badge")).to_have_text("ok")
    assert v.call_ids() == ["new-1", "long-1", "old-1"]
    shots(v.page, "tail")


@pytest.mark.service
def test_live_tail_goes_on_showing_new_calls_after_one_from_a_clock_running_hours_fast(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # Ingest takes a call stamped up to a day ahead (a client whose clock runs fast). Shown at the top,
    # its start was what the tail asked "after", so the calls made meanwhile, stamped now, never showed
    # until the collector's clock got there, hours later.
    client = sqlite_server.client()
    post_records(client, [make_record("fast-clock", time.time() + 2 * 3600, tags=["skew"])])
    v = visit(sqlite_server)
    v.page.clock.install()
    v.go("/calls?tag=skew&tail=1")
    assert v.call_ids() == ["fast-clock"]
    post_records(client, [make_record("made-now", tags=["skew"])])
    v.page.clock.run_for(2_000)
    v.page.wait_for_selector("tr[data-call-id=made-now]", timeout=15_000)
    assert v.call_ids() == ["fast-clock", "made-now"]


@pytest.mark.service
@pytest.mark.parametrize("late", ["slow-clock", "stored-late"])
def test_live_tail_shows_a_call_stored_now_whatever_its_start_time(
    db_project_server: ServerProcess, visit: Callable[..., Visit], late: str
) -> None:
    # The tail asked for calls started after the newest start it showed, less 10 minutes. A call from a
    # client whose clock runs 30 minutes slow, or a 20-minute stream spooled while the server was away
    # and delivered an hour after it started, lay behind that: shown on a reload, never by the tail.
    client = db_project_server.client()
    tag = f"arrive-{late}"
    post_records(client, [make_record(f"{late}-shown", time.time() - 60, tags=[tag])])
    v = visit(db_project_server)
    v.page.clock.install()
    v.go(f"/calls?tag={tag}&tail=1")
    assert v.call_ids() == [f"{late}-shown"]
    if late == "slow-clock":
        call = make_record(f"{late}-new", time.time() - 1800, tags=[tag])
    else:
        start = time.time() - 3600
        call = make_record(
            f"{late}-new", start, end_time=start + 1200, duration_ms=1_200_000.0, stream=True, tags=[tag]
        )
    post_records(client, [call, make_record(f"{late}-other", time.time() - 1800, tags=["elsewhere"])])
    v.page.clock.run_for(2_000)
    v.page.wait_for_selector(f"tr[data-call-id={late}-new]", timeout=15_000)
    assert v.call_ids() == [f"{late}-shown", f"{late}-new"]  # placed by its start, below the newer one
    # And the next calls after it, each once.
    post_records(client, [make_record(f"{late}-next", tags=[tag])])
    v.page.clock.run_for(2_000)
    v.page.wait_for_selector(f"tr[data-call-id={late}-next]", timeout=15_000)
    v.page.clock.run_for(2_000)
    v.page.wait_for_timeout(300)
    assert v.call_ids() == [f"{late}-next", f"{late}-shown", f"{late}-new"]


@pytest.mark.service
def test_live_tail_says_how_many_calls_of_a_burst_it_skipped_and_links_to_them(
    project_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # A poll brings the newest 200 calls: 261 arriving between two polls showed the newest 200 and
    # nothing of the 61 before them, a gap the table did not show. Those it cannot bring are now said,
    # where they would be, and linked.
    client = project_server.client()
    base = math.floor(time.time()) - 400
    post_records(client, [make_record("old-1", base + 0.5, tags=["burst"])])
    v = visit(project_server)
    v.page.clock.install()
    v.go("/calls?tag=burst&tail=1")
    assert v.call_ids() == ["old-1"]
    burst = [make_record(f"burst-{i:03d}", base + 1.5 + i, tags=["burst"]) for i in range(261)]
    post_records(client, [*burst, make_record("other", base + 30.5, tags=["quiet"])])
    v.page.clock.run_for(2_000)
    gap = v.page.locator("[data-testid=tail-gap]")
    expect(gap).to_have_text("61 more calls arrived here than the live tail shows: list them", timeout=15_000)
    shown = [f"burst-{i:03d}" for i in range(260, 60, -1)]
    assert v.call_ids() == [*shown, None, "old-1"]  # the note sits where the skipped calls would be
    # The next poll brings nothing new: no second note, and the rows stay as they are.
    v.page.clock.run_for(2_000)
    v.page.wait_for_timeout(500)
    assert v.call_ids() == [*shown, None, "old-1"] and gap.count() == 1
    gap.locator("a").click()
    v.page.wait_for_url(re.compile(r"until="))
    listed = [f"burst-{i:03d}" for i in range(61, 11, -1)]  # from the oldest shown on
    assert v.call_ids() == listed, v.page.url
    assert "tail=1" not in v.page.url and "tag=burst" in v.page.url


# --------------------------------------------------------------------------------------------------
# Call detail, traces, sessions


@pytest.mark.service
def test_a_calls_detail_shows_its_messages_tool_calls_and_tokens(
    sqlite_server: ServerProcess,
    provider: FakeProvider,
    callback_to: Callable[[ServerProcess], Callback],
    visit: Callable[..., Visit],
    shots: Shots,
) -> None:
    callback = callback_to(sqlite_server)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "order_status",
                "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are the shop's assistant."},
        {"role": "user", "content": "Where is order 1042?"},
    ]
    common: dict[str, Any] = {"api_base": provider.url, "api_key": "sk-ui-test", "num_retries": 0}
    first = litellm.completion(
        model="openai/gpt-4o-mini", messages=messages, tools=tools, metadata={"case": "tool"}, **common
    )
    call = first.choices[0].message.tool_calls[0]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
    ]
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=messages,
        extra_headers={"x-fake-tokens": "9"},
        temperature=0.2,
        metadata={"case": "answer"},
        **common,
    )
    deadline = time.monotonic() + 30
    while callback.stats()["submitted"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert callback.flush(timeout=30)
    api = sqlite_server.client()
    calls = api.get_json("/api/calls")["calls"]
    record = next(
        r
        for r in (api.get_json(f"/api/calls/{c['call_id']}") for c in calls)
        if r["metadata"].get("case") == "answer"
    )

    v = visit(sqlite_server)
    v.go("/calls")
    v.page.click(f"tr[data-call-id='{record['call_id']}'] a >> nth=0")
    v.page.wait_for_url(re.compile("/calls/"))
    page = v.page
    roles = page.eval_on_selector_all("[data-testid=chat] > li", "e => e.map(x => x.dataset.role)")
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    chat = page.inner_text("[data-testid=chat]")
    assert "Where is order 1042?" in chat and "order_status" in chat and "shipped" in chat
    assert page.inner_text("[data-testid=input-tokens]") == f"{record['usage']['input_tokens']:,}"
    assert page.inner_text("[data-testid=output-tokens]") == "9"
    assert page.inner_text("[data-testid=total-tokens]") == f"{record['usage']['total_tokens']:,}"
    assert page.inner_text("[data-testid=call-id]") == record["call_id"]
    page.click("text=Copy as Python (LiteLLM)")
    python = page.inner_text("#python-code")
    assert (
        "litellm.completion(" in python and "'openai/gpt-4o-mini'" in python and "temperature=0.2" in python
    )
    compile(python, "copied.py", "exec")
    page.click("text=Copy as cURL")
    assert "chat/completions" in page.inner_text("#curl-code")
    shots(page, "detail")


def python_code(html: str) -> str:
    """The call page's "Copy as Python" code, as the reader copies it."""
    found = re.search(r'<pre id="python-code">(.*?)</pre>', html, re.S)
    assert found, html
    return htmllib.unescape(found.group(1))


@pytest.mark.service
def test_each_call_types_copied_python_makes_the_same_call_again_and_shows_its_system_prompt(
    sqlite_server: ServerProcess,
    provider: FakeProvider,
    callback_to: Callable[[ServerProcess], Callback],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callback = callback_to(sqlite_server)
    common: dict[str, Any] = {"api_base": provider.url, "api_key": "sk-ui-test", "num_retries": 0}
    calls: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        ("chat", litellm.completion, {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}),
        ("embedding", litellm.embedding, {"model": "openai/text-embedding-3-small", "input": ["a", "b"]}),
        ("text_completion", litellm.text_completion, {"prompt": "say three words", "max_tokens": 5}),
        (
            "image_generation",
            litellm.image_generation,
            {"model": "openai/dall-e-3", "prompt": "a red square"},
        ),
        ("responses", litellm.responses, {"input": "two plus two?", "instructions": "Answer in one word."}),
    ]
    sent = {}
    for call_type, function, arguments in calls:
        function(**{"model": "openai/gpt-4o-mini", **arguments, **common})
        sent[call_type] = provider.requests[-1]
    deadline = time.monotonic() + 30
    while callback.stats()["submitted"] < len(calls) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert callback.flush(timeout=30)
    listed = sqlite_server.client().get_json("/api/calls")["calls"]
    ids = {c["call_type"]: c["call_id"] for c in listed}
    assert set(ids) == set(sent)

    # The key is left to the environment, as the copied code says.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ui-test")
    for call_type, ident in ids.items():
        code = python_code(page_html(sqlite_server, f"/calls/{urllib.parse.quote(ident)}"))
        # Copied as `text_completion(input=...)` it failed: LiteLLM's text completion takes `prompt=`.
        exec(compile(code, f"{call_type}.py", "exec"), {})
        again = provider.requests[-1]
        assert (again.path, again.json) == (sent[call_type].path, sent[call_type].json), code

    # A Responses call's system prompt is its `instructions`: shown first, as the system message.
    html = page_html(sqlite_server, f"/calls/{urllib.parse.quote(ids['responses'])}")
    roles = re.findall(r'<li class="msg [^"]*" data-role="(\w+)"', html)
    assert roles[:2] == ["system", "user"], roles
    assert "Answer in one word." in html.split('data-role="system"', 1)[1].split("</li>", 1)[0]


@pytest.mark.service
def test_an_image_generation_reads_as_no_tokens_not_zero_tokens(
    sqlite_server: ServerProcess, provider: FakeProvider, callback_to: Callable[[ServerProcess], Callback]
) -> None:
    # The images endpoint counts no tokens: its call page, row and the overview said "0" tokens.
    callback = callback_to(sqlite_server)
    litellm.image_generation(
        model="openai/dall-e-3", prompt="a red square", api_base=provider.url, api_key="sk-ui-test"
    )
    assert callback.flush(timeout=30)
    (listed,) = sqlite_server.client().get_json("/api/calls")["calls"]
    assert (listed["call_type"], listed["input_tokens"], listed["output_tokens"]) == (
        "image_generation",
        0,
        0,
    )
    html = page_html(sqlite_server, f"/calls/{urllib.parse.quote(listed['call_id'])}")
    for tile in ("input-tokens", "output-tokens", "total-tokens"):
        assert f'data-testid="{tile}">{EMPTY}<' in html, tile
    row = page_html(sqlite_server, "/calls").split("<tbody>", 1)[1]
    assert "0 / 0" not in row, row
    overview = page_html(sqlite_server, "/?refresh=0")
    for tile in ("total-tokens-in", "total-tokens-out"):
        assert f'data-testid="{tile}">{EMPTY}<' in overview, tile


@pytest.mark.service
def test_a_session_of_image_generations_reads_as_no_tokens_not_zero_tokens(
    sqlite_server: ServerProcess,
) -> None:
    # Its page said "0 / 0" tokens and the sessions list "0", while each call's page said it was not applicable.
    now = time.time()
    images = [
        make_record(f"img-{i}", now - 10 + i, session_id="sess-img", call_type="image_generation", usage={})
        for i in range(2)
    ]
    post_records(sqlite_server.client(), images)
    html = page_html(sqlite_server, "/sessions/sess-img")
    assert f'data-testid="session-tokens">{EMPTY}<' in html
    listed = page_html(sqlite_server, "/sessions?range=all").split("<tbody>", 1)[1]
    # Nor had they a price (none is in the records): unknown, not $0.
    assert f'<td class="num">{EMPTY}</td><td class="num">{EMPTY}</td>' in listed, listed


@pytest.mark.service
def test_a_trace_shows_its_span_tree_and_links_to_its_calls(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    trace = "7" * 32
    now = time.time_ns() - 5 * 10**9
    ms = 10**6
    llm = make_record(
        "traced-call", now / 1e9 + 0.3, trace_id=trace, span_id="c" * 16, parent_span_id="b" * 16
    )
    llm["request"] = {"messages": [{"role": "user", "content": "plan the trip"}]}
    spans = [
        otlp_json_span(trace, "a" * 16, "agent run", {"app.step": "root"}, now, now + 900 * ms),
        otlp_json_span(trace, "b" * 16, "plan", {}, now + 100 * ms, now + 800 * ms, parent_span_id="a" * 16),
        otlp_json_span(
            trace,
            "c" * 16,
            "chat gpt-4o-mini",
            semconv.record_to_attributes(llm, capture_content=True),
            now + 300 * ms,
            now + 550 * ms,
            parent_span_id="b" * 16,
        ),
        {
            **otlp_json_span(
                trace, "d" * 16, "search the web", {}, now + 600 * ms, now + 780 * ms, parent_span_id="b" * 16
            ),
            "status": {"code": 2, "message": "search API timed out"},
        },
        otlp_json_span(
            trace, "e" * 16, "write answer", {}, now + 810 * ms, now + 890 * ms, parent_span_id="a" * 16
        ),
    ]
    client = sqlite_server.client()
    answer = client.request("POST", "/v1/traces", otlp_json(spans), {"Content-Type": "application/json"})
    assert answer.status == 200, answer
    # The core layer reports the same call too, with its call id: still one call in the tree.
    post_records(client, [llm])

    v = visit(sqlite_server)
    v.go(f"/traces/{trace}")
    page = v.page
    rows = page.eval_on_selector_all(
        "[data-testid=waterfall] tbody tr",
        "rows => rows.map(r => [Number(r.dataset.depth), r.querySelector('.span-name').textContent])",
    )
    assert rows == [
        [0, "agent run"],
        [1, "plan"],
        [2, "chat gpt-4o-mini"],
        [2, "search the web"],
        [1, "write answer"],
    ], "nested as they ran"
    indents = page.eval_on_selector_all(
        "[data-testid=waterfall] tbody td.name",
        "cells => cells.map(c => parseFloat(getComputedStyle(c).paddingLeft))",
    )
    assert indents[0] < indents[1] < indents[2] and indents[4] == indents[1], indents
    assert "250 ms" in page.inner_text("[data-span-id=cccccccccccccccc]")
    assert (
        page.inner_text("[data-span-id=dddddddddddddddd] [data-testid=span-status]") == "search API timed out"
    )
    shots(page, "waterfall")
    page.click("[data-span-id=cccccccccccccccc] a")
    page.wait_for_url(re.compile("/calls/traced-call"))
    assert "plan the trip" in page.inner_text("[data-testid=chat]")


@pytest.mark.service
def test_a_deeply_nested_trace_indents_every_level_and_a_call_without_tokens_shows_none(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    # An agent that recursed 16 steps deep: levels 7 to 12 shared one indent (they read as siblings),
    # and a call that counted no token read "0→0 tokens".
    trace = "5" * 32
    now = time.time_ns() - 5 * 10**9
    ms = 10**6
    spans = [
        otlp_json_span(
            trace,
            f"{d + 1:016x}",
            f"step-{d}",
            {},
            now + d * ms,
            now + (100 - d) * ms,
            f"{d:016x}" if d else "",
        )
        for d in range(16)
    ]
    client = sqlite_server.client()
    answer = client.request("POST", "/v1/traces", otlp_json(spans), {"Content-Type": "application/json"})
    assert answer.status == 200, answer
    tokenless = make_record(
        "tokenless-step",
        (now + 3 * ms) / 1e9,
        trace_id=trace,
        span_id="e" * 16,
        parent_span_id=f"{3:016x}",
        usage=None,
    )
    post_records(client, [tokenless])

    v = visit(sqlite_server)
    v.go(f"/traces/{trace}")
    steps = v.page.eval_on_selector_all(
        "[data-testid=waterfall] tbody tr:not([data-span-id=eeeeeeeeeeeeeeee])",
        """rows => rows.map(r => [Number(r.dataset.depth), r.querySelector('.span-name').textContent,
            parseFloat(getComputedStyle(r.querySelector('td.name')).paddingLeft),
            (r.querySelector('[data-testid=span-level]') || {}).textContent || ''])""",
    )
    assert [(depth, name) for depth, name, _, _ in steps] == [(d, f"step-{d}") for d in range(16)]
    indents = [indent for _, _, indent, _ in steps]
    assert all(a < b for a, b in itertools.pairwise(indents[:13])), indents
    # Below the deepest indent, a row says how deep it is rather than passing for its parent's sibling.
    assert [level for _, _, _, level in steps] == [""] * 13 + ["level 13", "level 14", "level 15"]
    call_row = v.page.locator("[data-span-id=eeeeeeeeeeeeeeee]")
    expect(call_row).to_have_attribute("data-depth", "3")
    assert "tokens" not in call_row.inner_text(), call_row.inner_text()
    shots(v.page, "deep-waterfall")


@pytest.mark.service
def test_a_trace_whose_root_names_a_parent_it_lacks_says_that_span_was_not_received(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # The service that called ours exported its span elsewhere: our top span names a parent the trace
    # does not hold, and the waterfall read as the whole trace.
    trace = "6" * 32
    now = time.time_ns() - 5 * 10**9
    ms = 10**6
    spans = [
        otlp_json_span(trace, "a" * 16, "handle request", {}, now, now + 300 * ms, parent_span_id="9" * 16),
        otlp_json_span(
            trace, "b" * 16, "retrieve", {}, now + 10 * ms, now + 90 * ms, parent_span_id="a" * 16
        ),
        otlp_json_span(trace, "c" * 16, "nightly job", {}, now + 400 * ms, now + 500 * ms),
    ]
    client = sqlite_server.client()
    answer = client.request("POST", "/v1/traces", otlp_json(spans), {"Content-Type": "application/json"})
    assert answer.status == 200, answer
    v = visit(sqlite_server)
    v.go(f"/traces/{trace}")
    notes = v.page.eval_on_selector_all(
        "[data-testid=waterfall] tbody tr",
        "rows => rows.map(r => [r.dataset.spanId, (r.querySelector('[data-testid=missing-parent]') || {}).textContent || ''])",
    )
    assert notes == [
        ["a" * 16, f"under span {'9' * 16}, not received"],
        ["b" * 16, ""],
        ["c" * 16, ""],
    ], notes


@pytest.mark.service
def test_a_session_lists_its_calls_in_order_with_totals(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    records = seed_calls(sqlite_server.client(), 30)
    mine = [r for r in records if r["session_id"] == "sess-1"]
    v = visit(sqlite_server)
    v.go("/sessions")
    v.page.click("text=sess-1")
    v.page.wait_for_url(re.compile("/sessions/sess-1"))
    assert v.call_ids() == [r["call_id"] for r in mine], "in the order they ran"
    assert v.page.inner_text("[data-testid=session-calls]") == str(len(mine))
    tokens_in = sum(r["usage"]["input_tokens"] for r in mine)
    tokens_out = sum(r["usage"]["output_tokens"] for r in mine)
    assert v.page.inner_text("[data-testid=session-tokens]") == f"{tokens_in:,} / {tokens_out:,}"
    shots(v.page, "session")


@pytest.mark.service
def test_the_sessions_list_says_whose_session_it_is_and_filters_by_user(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    """A support engineer looking for the conversation a user had could not tell sessions apart by user.
    The list names each session's user (its first; "+N more" when others made calls in it), a User
    filter finds every session the user made a call in (pages on keep it), and the user on a session's
    page leads to that user's sessions."""
    now = time.time()
    records = [
        make_record("s-1", now - 600, session_id="support-chat", end_user="ana@shop.example"),
        make_record("s-2", now - 590, session_id="support-chat", user_id="agent-7"),  # no end user
        make_record("o-1", now - 500, session_id="other-chat", end_user="bo@shop.example"),
        make_record("x-1", now - 400, session_id="no-user-chat"),
        *(
            make_record(f"p-{i}", now - 1800 + i, session_id=f"agent-task-{i:02d}", user_id="agent-7")
            for i in range(52)
        ),
    ]
    post_records(sqlite_server.client(), records)
    v = visit(sqlite_server)
    page = v.page

    def users_by_session() -> dict[str, str]:
        rows = page.eval_on_selector_all(
            "[data-testid=sessions] tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        )
        return {row[0]: row[1] for row in rows}

    v.go("/sessions?range=1h")
    listed = users_by_session()
    assert listed["support-chat"] == "ana@shop.example +1 more"
    assert (listed["other-chat"], listed["no-user-chat"]) == ("bo@shop.example", EMPTY)
    more = page.get_attribute("[data-testid=more-users]", "title") or ""
    assert "2 users" in more and "ana@shop.example" in more, more

    # agent-7 joined support-chat (not its first user) and ran 52 sessions of its own: 53, over two pages.
    page.fill("input[name=user]", " agent-7 ")
    page.click("text=Apply")
    page.wait_for_url(re.compile(r"user=\+agent-7\+"))  # sent as typed, trimmed by the page
    first = users_by_session()
    assert len(first) == 50 and "other-chat" not in first
    assert first.pop("support-chat") == "ana@shop.example +1 more"
    assert set(first.values()) == {"agent-7"}
    assert page.input_value("input[name=user]") == "agent-7", "the form keeps the filter"
    shots(page, "sessions-of-a-user")
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(r"cursor="))
    second = users_by_session()
    assert set(second.values()) == {"agent-7"}
    assert set(first) | set(second) == {f"agent-task-{i:02d}" for i in range(52)}

    v.go("/sessions/support-chat")
    assert page.inner_text("[data-testid=session-user]") == "User: ana@shop.example +1 more"
    page.click("[data-testid=session-user] >> text=ana@shop.example")
    page.wait_for_url(re.compile(r"/sessions\?range=all&user=ana%40shop.example$"))
    assert list(users_by_session()) == ["support-chat"]
    shots(page, "session-user")


@pytest.mark.service
def test_calls_without_a_price_make_an_unknown_cost_not_a_cost_of_zero(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    """LiteLLM could not price these calls (a local model): each call's page showed no cost (EMPTY), but
    their session, its row in the sessions list, the overview's total and its model's row said "$0"."""
    client = sqlite_server.client()
    now = time.time()
    local = [
        make_record(
            f"local-{i}",
            now - 60 + i,
            request_model="local-llm",
            response_model="local-llm",
            session_id="sess-local",
        )
        for i in range(3)
    ]
    post_records(client, local)
    v = visit(sqlite_server)
    page = v.page

    def last_cell(table: str, first: str) -> str:
        rows = page.eval_on_selector_all(
            f"[data-testid={table}] tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        )
        return next(row[-1] for row in rows if row[0] == first)

    v.go("/?range=24h&refresh=0")
    assert page.inner_text("[data-testid=total-cost]") == EMPTY
    assert last_cell("by-model", "local-llm") == EMPTY
    shots(page, "overview-unpriced")
    v.go("/sessions?range=24h")
    assert last_cell("sessions", "sess-local") == EMPTY
    v.go("/sessions/sess-local")
    assert page.inner_text("[data-testid=session-cost]") == EMPTY
    shots(page, "session-unpriced")

    # One priced call joins them: its cost is the sum, said to be of one call in four.
    post_records(client, [make_record("priced", now - 30, session_id="sess-local", cost_usd=0.004)])
    v.go("/sessions/sess-local")
    assert page.inner_text("[data-testid=session-cost]") == "$0.00400"
    assert page.inner_text("[data-testid=session-cost-priced]") == "1 of 4 calls priced"
    v.go("/sessions?range=24h")
    assert last_cell("sessions", "sess-local") == "$0.00400*"
    assert "1 of 4 calls had a price" in page.get_attribute(
        "[data-testid=sessions] [data-testid=cost-partial]", "title"
    )
    v.go("/?range=24h&refresh=0")
    assert page.inner_text("[data-testid=total-cost]") == "$0.00400"
    assert page.inner_text("[data-testid=total-cost-priced]") == "1 of 4 calls priced"
    assert last_cell("by-model", "local-llm") == EMPTY, "still none of that model's calls had a price"
    shots(page, "overview-partly-priced")


@pytest.mark.service
def test_a_range_without_calls_has_an_unknown_cost_and_free_priced_calls_cost_zero(
    sqlite_server: ServerProcess,
) -> None:
    """The cost tile of a range with no calls at all said "$0", as if calls had been made and cost
    nothing; the dashboard writes an unknown cost as an en dash. Calls priced at $0 still read "$0"."""

    def cost_tile() -> str:
        html = page_html(sqlite_server, "/?range=1h&refresh=0")
        found = re.search(r'data-testid="total-cost">([^<]*)<', html)
        assert found, html
        return htmllib.unescape(found.group(1))

    assert cost_tile() == EMPTY
    post_records(sqlite_server.client(), [make_record("free", time.time() - 60, cost_usd=0.0)])
    assert cost_tile() == "$0"


@pytest.mark.service
def test_the_overview_requests_chart_shows_cancelled_calls_apart_from_ok_ones(
    sqlite_server: ServerProcess,
) -> None:
    """A stream the caller abandoned, or a proxy call whose client hung up, got no answer: the Requests
    chart counted it as ok (only errors were told apart). It now has a part of the bar of its own."""
    now = time.time()
    bucket = RANGES["6h"][2]
    at = math.floor(now / bucket) * bucket - 2 * bucket + 1
    statuses = ["ok", "ok", "error", "cancelled", "cancelled", "cancelled"]
    post_records(
        sqlite_server.client(),
        [make_record(f"outcome-{i}", at + i, status=status) for i, status in enumerate(statuses)],
    )
    html = page_html(sqlite_server, "/?range=6h&refresh=0")
    chart = re.search(
        r'<figure class="chart"><figcaption><span class="chart-title">Requests</span>.*?</figure>', html
    )
    assert chart, html
    svg = parse_svg(chart.group(0))
    label = fmt_bucket(math.floor(at / bucket) * bucket, bucket)
    tips = [h.get("data-tip", "") for h in svg.iter(f"{SVG}rect") if h.get("class") == "hit"]
    assert [t for t in tips if t.startswith(label + " ")] == [f"{label} · ok 2; errors 1; cancelled 3"]
    # Three parts of one bar, and the legend names the third.
    assert sorted(r.get("class") for r in svg.iter(f"{SVG}rect") if "bar" in (r.get("class") or "")) == [
        "bar s-cancel",
        "bar s-err",
        "bar s1",
    ]
    assert '<span class="swatch s-cancel"></span>cancelled' in chart.group(0)


@pytest.mark.service
def test_the_cost_chart_says_which_buckets_had_no_price_instead_of_drawing_them_at_zero(
    sqlite_server: ServerProcess,
) -> None:
    """A time bucket whose calls LiteLLM could not price has an unknown cost: the chart leaves a gap
    there (never a point at $0), but its tooltip said only "cost" and an en dash, as for a bucket without
    any value; it now says the calls were unpriced, and a partly priced bucket says how many of its
    calls its cost holds."""
    now = time.time()
    bucket = RANGES["6h"][2]
    unpriced_at, priced_at, mixed_at = (
        math.floor(now / bucket) * bucket - k * bucket + 1 for k in (12, 8, 4)
    )
    post_records(
        sqlite_server.client(),
        [make_record(f"unpriced-{i}", unpriced_at + i) for i in range(3)]
        + [make_record("priced", priced_at, cost_usd=0.25)]
        + [make_record("mixed-priced", mixed_at, cost_usd=0.5), make_record("mixed-unpriced", mixed_at + 1)],
    )
    html = page_html(sqlite_server, "/?range=6h&refresh=0")
    chart = re.search(
        r'<figure class="chart"><figcaption><span class="chart-title">Cost</span>.*?</figure>', html
    )
    assert chart, html
    svg = parse_svg(chart.group(0))
    # Per bucket column: its tooltip and where it spans on the x axis.
    hits = {
        h.get("data-tip", ""): (float(h.get("x", 0)), float(h.get("width", 0)))
        for h in svg.iter(f"{SVG}rect")
        if h.get("class") == "hit"
    }
    tip = {}
    for when in (unpriced_at, priced_at, mixed_at):
        label = fmt_bucket(math.floor(when / bucket) * bucket, bucket)
        tip[when] = next(t for t in hits if t.startswith(label + " "))
        assert tip[when].startswith(f"{label} · cost ")
    assert tip[unpriced_at].endswith(" · cost unpriced (3 calls)")
    assert tip[priced_at].endswith(" · cost $0.2500")
    assert tip[mixed_at].endswith(" · cost $0.5000 (1 of 2 calls priced)")
    assert "calls without a price" in chart.group(0), "the legend says what a gap means"
    # The unpriced bucket is a gap in the line, not a point at $0; the others are points of it.
    [line] = svg.findall(f"{SVG}path")
    xs = [float(x) for x in re.findall(r"[ML]([\d.]+) ", line.get("d", ""))]

    def drawn(when: float) -> bool:
        left, width = hits[tip[when]]
        return any(left <= x < left + width for x in xs)

    assert not drawn(unpriced_at) and drawn(priced_at) and drawn(mixed_at), line.get("d")


# --------------------------------------------------------------------------------------------------
# Server-rendered answers, read over plain HTTP (no browser needed to see these)


def page_html(server: ServerProcess, path: str) -> str:
    """A dashboard page as the signed-in browser gets it (the key in the sign-in cookie)."""
    answer = server.client().request("GET", path, headers={"Cookie": f"litelens_key={server.key}"}, key=None)
    assert answer.status == 200, (path, answer)
    return answer.body.decode()


@pytest.mark.service
def test_a_sessions_user_link_lists_that_session_however_old_it_is(sqlite_server: ServerProcess) -> None:
    # A session two months old: "Sessions of this user" must list the session it was followed from.
    then = time.time() - 60 * 86400
    post_records(
        sqlite_server.client(),
        [
            make_record(f"old-{i}", then + i, session_id="sess-long-ago", user_id="old-timer")
            for i in range(2)
        ],
    )
    html = page_html(sqlite_server, "/sessions/sess-long-ago")
    link = re.search(r'<a href="(/sessions\?[^"]*)" title="Sessions of this user"', html)
    assert link is not None, html
    listed = page_html(sqlite_server, link.group(1).replace("&amp;", "&"))
    assert "sess-long-ago" in listed, link.group(1)


@pytest.mark.service
def test_a_session_with_a_cancelled_stream_counts_the_same_errors_in_the_list_and_on_its_page(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("s-ok", now - 30, session_id="sess-c"),
            make_record("s-cancelled", now - 20, session_id="sess-c", status="cancelled"),
            make_record(
                "s-failed", now - 10, session_id="sess-c", status="error", error={"type": "APIError"}
            ),
        ],
    )
    listed = sqlite_server.client().get_json("/api/sessions")["sessions"]
    assert [(s["session_id"], s["errors"]) for s in listed] == [("sess-c", 1)]
    assert sqlite_server.client().get_json("/api/sessions/sess-c")["totals"]["errors"] == 1
    html = page_html(sqlite_server, "/sessions/sess-c")
    assert re.search(r'Errors</span><span class="value">1<', html), "a cancelled stream is not an error"


def chart_tips(html: str, title: str) -> list[str]:
    """The tooltips of a chart's buckets, oldest first, as the server rendered them."""
    chart = re.search(
        rf'<figure class="chart"><figcaption><span class="chart-title">{title}</span>.*?</figure>', html
    )
    assert chart, html
    svg = parse_svg(chart.group(0))
    return [h.get("data-tip", "") for h in svg.iter(f"{SVG}rect") if h.get("class") == "hit"]


@pytest.mark.service
def test_one_calls_latency_tiles_and_chart_read_its_own_latency_not_a_histogram_estimate(
    sqlite_server: ServerProcess,
) -> None:
    # Percentiles came from the rollups' histograms (within 4.9%): one 250 ms stream read p50/p95/p99
    # "240 ms" beside the slowest call's "250 ms", and its first token at 123 ms for 120.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [make_record("only", now - 90, duration_ms=250.0, end_time=now - 89.75, stream=True, ttft_ms=120.0)],
    )
    html = page_html(sqlite_server, "/?range=1h&refresh=0")
    latency = re.search(
        r'Latency p50 / p95 / p99</span><span class="value">([^<]*)</span>\s*<span class="sub">([^<]*)</span>',
        html,
    )
    ttft = re.search(
        r'TTFT p50 / p95</span><span class="value">([^<]*)</span>\s*<span class="sub">([^<]*)</span>', html
    )
    assert latency and ttft, html
    assert latency.groups() == ("250 ms", "250 ms / 250 ms")
    assert ttft.groups() == ("120 ms", "120 ms")
    [point] = [t for t in chart_tips(html, "Latency") if f"p50 {EMPTY}" not in t]
    assert point.endswith(" · p50 250 ms; p95 250 ms; p99 250 ms"), point
    by_model = re.search(r'data-testid="by-model">.*?</table>', html, re.S)
    assert by_model and by_model.group(0).count(">250 ms<") == 2, "the breakdown's p50 and p95"


@pytest.mark.service
def test_the_latency_tiles_of_a_range_of_many_calls_never_pass_its_slowest_call(
    sqlite_server: ServerProcess,
) -> None:
    # A range of more calls than the store reads for exact percentiles is ranked from its histogram: an
    # hour of 900 ms calls read p50/p95/p99 "911 ms" above the slowest call's "900 ms".
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record(f"many-{i}", now - 30 - i * 9, duration_ms=900.0, end_time=now - 29.1 - i * 9)
            for i in range(320)
        ],
    )
    html = page_html(sqlite_server, "/?range=1h&refresh=0")
    latency = re.search(
        r'Latency p50 / p95 / p99</span><span class="value">([^<]*)</span>\s*<span class="sub">([^<]*)</span>',
        html,
    )
    assert latency and latency.groups() == ("900 ms", "900 ms / 900 ms"), latency and latency.groups()
    slowest = re.search(r"<h2>Slowest calls</h2>.*?</table>", html, re.S)
    assert slowest and ">900 ms<" in slowest.group(0)


@pytest.mark.service
def test_the_breakdowns_and_ttft_tiles_of_many_calls_never_pass_the_slowest_call(
    sqlite_server: ServerProcess,
) -> None:
    # Past the calls the store ranks exactly, a percentile is the middle of its histogram bin: 350 streams
    # of 956 ms (the slowest 956.6 ms) read p50 and p95 "1.00 s" in the model and tag breakdowns, and
    # their first tokens, all at 196-197 ms, read "206 ms" in the TTFT tiles.
    now = time.time()
    low = math.exp((bin_of(1000.0) - 1) * math.log(1.1))  # the lower edge of the bin holding 1 s
    low_ttft = math.exp((bin_of(200.0) - 1) * math.log(1.1))
    records = []
    for i in range(350):
        step = 1.001 if i == 175 else 1 + 0.0001 * (i % 5)
        start = now - 3300 + i * 9
        records.append(
            make_record(
                f"edge-{i}",
                start,
                duration_ms=low * step,
                end_time=start + low * step / 1000,
                stream=True,
                ttft_ms=low_ttft * step,
                request_model="edge-model",
                response_model="edge-model",
                tags=["edge"],
            )
        )
    post_records(sqlite_server.client(), records)
    html = page_html(sqlite_server, "/?range=1h&refresh=0")
    durations = {fmt_ms(r["duration_ms"]) for r in records}
    assert durations == {"956 ms", "957 ms"}
    for dim in ("model", "tag"):
        table = re.search(rf'data-testid="by-{dim}">.*?</table>', html, re.S)
        assert table, html
        cells = re.findall(r'<td class="num">([^<]*)</td>', table.group(0))
        calls, _errors, p50, p95 = cells[:4]
        assert calls == "350" and {p50, p95} <= durations, (dim, p50, p95)
    ttft = re.search(
        r'TTFT p50 / p95</span><span class="value">([^<]*)</span>\s*<span class="sub">([^<]*)</span>', html
    )
    assert ttft and set(ttft.groups()) <= {fmt_ms(r["ttft_ms"]) for r in records}, ttft and ttft.groups()
    # The charts' minutes: more calls in the range than the store reads, so some stay estimates.
    for title, shown in (
        ("Latency", durations),
        ("Time to first token", {fmt_ms(r["ttft_ms"]) for r in records}),
    ):
        tips = [t for t in chart_tips(html, title) if f"p50 {EMPTY}" not in t]
        assert tips, title
        for tip in tips:
            assert set(re.findall(r"p\d\d ([^;]+)", tip.split(" · ")[-1])) <= shown, (title, tip)


@pytest.mark.service
def test_a_call_stamped_ahead_of_the_collectors_clock_is_on_the_overview_the_calls_and_the_sessions(
    sqlite_server: ServerProcess,
) -> None:
    # A client whose clock runs fast stamps its calls in the collector's future. The calls table listed
    # such a call under "Last hour" (its range has no end) while the overview and the sessions page,
    # which stopped at the end of the current minute, left it out: three pages, two answers.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("on-time", now - 120, session_id="on-time-session"),
            make_record("ahead", now + 600, session_id="ahead-session", status="error"),
        ],
    )
    overview = page_html(sqlite_server, "/?range=1h&refresh=0")
    assert re.search(r'data-testid="total-requests">2<', overview)
    assert re.search(r'data-testid="total-errors">1<', overview)
    # The Requests chart ends with the current minute; its bars and the note of calls stamped later add
    # up to the total.
    tips = chart_tips(overview, "Requests")
    counted = [sum(int(n) for n in re.findall(r"(?:ok|errors|cancelled) (\d+)", t)) for t in tips]
    assert sum(counted) == 1, tips[-3:]
    assert tips[-1].startswith(fmt_bucket(math.floor(now / 60) * 60, 60) + " "), tips[-1]
    assert re.search(r'data-testid="calls-ahead">1 call stamped later than now', overview), overview
    calls = page_html(sqlite_server, "/calls?range=1h")
    assert re.findall(r'<tr data-call-id="([^"]+)"', calls) == ["ahead", "on-time"]
    sessions = page_html(sqlite_server, "/sessions?range=1h")
    assert re.findall(r'<a href="/sessions/([^"?]+)">', sessions) == ["ahead-session", "on-time-session"]


@pytest.mark.service
def test_a_call_stamped_a_day_ahead_leaves_the_last_hours_charts_an_hour_long_and_is_noted(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    # The charts ran on to the newest call's bucket: one call from a client whose clock ran almost a day
    # fast drew "Last hour" as ~1,400 one-minute bars, the real hour squeezed into a sliver at the left.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            *(make_record(f"hour-{i}", now - 60 * i - 30) for i in range(3)),
            make_record("a-day-ahead", now + 23 * 3600),
            make_record("hours-ahead", now + 5 * 3600, status="error"),
        ],
    )
    v = visit(sqlite_server)
    page = v.page
    v.go("/?range=1h&refresh=0")
    assert page.inner_text("[data-testid=total-requests]") == "5"  # still counted ...
    note = page.locator("[data-testid=calls-ahead]")
    expect(note).to_be_visible()
    assert note.inner_text().startswith("2 calls stamped later than now"), note.inner_text()
    note.get_by_role("link", name="Calls").click()  # ... and listed
    page.wait_for_url("**/calls?range=1h")
    assert v.call_ids()[:2] == ["a-day-ahead", "hours-ahead"]
    asked = time.time()
    v.go("/?range=1h&refresh=0")
    answered = time.time()
    # An hour of one-minute buckets: 60, plus the one holding now, plus the one the hour began in.
    columns = page.locator(".chart").first.locator("rect.hit")
    assert 60 <= columns.count() <= 62, columns.count()
    last = columns.last.get_attribute("data-tip") or ""
    # The bucket of the minute the page was drawn in (a minute may have turned while it loaded).
    drawn_in = {fmt_bucket(math.floor(t / 60) * 60, 60) + " " for t in (asked, answered)}
    assert any(last.startswith(minute) for minute in drawn_in), (last, drawn_in)
    bars = [
        sum(int(n) for n in re.findall(r"(?:ok|errors|cancelled) (\d+)", tip))
        for tip in columns.evaluate_all("rects => rects.map(r => r.dataset.tip)")
    ]
    assert sum(bars) == 3, bars
    # The note is a line of its own above the charts, not squeezed into a chart's grid cell.
    note_box, chart_box = note.bounding_box(), page.locator(".chart").first.bounding_box()
    assert note_box and chart_box and note_box["y"] + note_box["height"] <= chart_box["y"]
    assert note_box["width"] > chart_box["width"]
    shots(page, "overview-calls-ahead")
    assert not v.errors, v.errors


@pytest.mark.service
def test_a_sessions_cancelled_calls_are_counted_apart_on_the_list_and_its_page_as_on_the_overview(
    sqlite_server: ServerProcess,
) -> None:
    # A session counted an abandoned stream as a call only: neither its list row nor its page said that
    # one of its calls got no answer, which the overview's Requests chart shows apart.
    now = time.time()
    usage = {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}
    post_records(
        sqlite_server.client(),
        [
            make_record("x-ok", now - 50, session_id="mixed", usage=usage, cost_usd=0.5),
            make_record(
                "x-cancel", now - 40, session_id="mixed", status="cancelled", usage=usage, cost_usd=0.25
            ),
            make_record("x-fail", now - 30, session_id="mixed", status="error", usage=usage, cost_usd=None),
        ],
    )
    client = sqlite_server.client()
    [listed] = client.get_json("/api/sessions")["sessions"]
    assert (listed["calls"], listed["errors"], listed["cancelled"]) == (3, 1, 1)
    totals = client.get_json("/api/sessions/mixed")["totals"]
    assert (totals["calls"], totals["errors"], totals["cancelled"]) == (3, 1, 1)
    row = re.search(
        r'<tr><td><a href="/sessions/mixed">.*?</tr>', page_html(sqlite_server, "/sessions"), re.S
    )
    assert row, "the session is listed"
    cells = re.findall(r'<td class="num"[^>]*>([^<]*)', row.group(0))
    assert cells[:4] == ["3", "1", "1", "126"], cells
    page = page_html(sqlite_server, "/sessions/mixed")
    assert re.search(r'data-testid="session-cancelled">1<', page)
    assert re.search(r'data-testid="session-tokens">90 / 36<', page)
    # The overview counts the same calls, tokens and cost the same way.
    overview = page_html(sqlite_server, "/?range=1h&refresh=0")
    assert re.search(r'data-testid="total-requests">3<', overview)
    assert re.search(r'data-testid="total-tokens-in">90<', overview)
    assert re.search(r'data-testid="total-cost">\$0\.7500<', overview)
    assert re.search(r'data-testid="session-cost">\$0\.7500<', page)


@pytest.mark.service
def test_a_long_session_is_paged_on_its_page_and_in_the_api_and_its_totals_count_every_call(
    sqlite_server: ServerProcess,
) -> None:
    # A session of 100k calls was loaded whole for its totals, and /api/sessions/{id} answered all of them.
    now = time.time() - 3600
    post_records(
        sqlite_server.client(),
        [make_record(f"long-{i:04d}", now + i, session_id="long one") for i in range(SESSION_ROWS + 5)],
    )
    html = page_html(sqlite_server, "/sessions/long%20one")
    shown = re.findall(r'<tr data-call-id="([^"]+)"', html)
    assert shown == [f"long-{i:04d}" for i in range(SESSION_ROWS)], "the first calls, in the order they ran"
    assert re.search(rf'data-testid="session-calls">{SESSION_ROWS + 5:,}<', html), "totals count all"
    more = re.search(r'<a rel="next" data-testid="session-more" href="([^"]+)"', html)
    assert more, html
    rest = page_html(sqlite_server, htmllib.unescape(more.group(1)))
    assert re.findall(r'<tr data-call-id="([^"]+)"', rest) == [
        f"long-{i:04d}" for i in range(SESSION_ROWS, SESSION_ROWS + 5)
    ]
    assert 'data-testid="session-more"' not in rest and ">First calls</a>" in rest
    stale = page_html(sqlite_server, "/sessions/long%20one?cursor=edited")  # the first page, said so
    assert 'data-testid="stale-cursor"' in stale and re.findall(r'<tr data-call-id="([^"]+)"', stale) == shown

    client = sqlite_server.client()
    first = client.get_json("/api/sessions/long%20one?limit=150")
    assert (len(first["calls"]), first["totals"]["calls"]) == (150, SESSION_ROWS + 5)
    second = client.get_json(f"/api/sessions/long%20one?limit=150&cursor={first['next_cursor']}")
    assert second["next_cursor"] is None and second["totals"] == first["totals"]
    listed = [c["call_id"] for c in first["calls"] + second["calls"]]
    assert listed == [f"long-{i:04d}" for i in range(SESSION_ROWS + 5)]


@pytest.mark.service
def test_a_cancelled_calls_page_says_it_was_cancelled_not_that_it_failed(
    sqlite_server: ServerProcess,
) -> None:
    # The rest of the dashboard counts a cancelled call apart from the errors; its page said "Error".
    post_records(
        sqlite_server.client(),
        [
            make_record("c-task", status="cancelled", error={"type": "CancelledError", "message": "stopped"}),
            make_record("c-hung-up", status="cancelled"),  # the proxy's client hung up: no exception
        ],
    )
    for ident in ("c-task", "c-hung-up"):
        html = page_html(sqlite_server, f"/calls/{ident}")
        assert 'aria-label="Error"' not in html and "<h2>Error</h2>" not in html, ident
        box = re.search(r'<section class="cancel-box" aria-label="Cancelled">(.*?)</section>', html, re.S)
        assert box and "before it finished" in box.group(1), ident
    assert "CancelledError" in page_html(sqlite_server, "/calls/c-task")


@pytest.mark.service
def test_a_call_type_the_page_cannot_rebuild_offers_no_code_that_makes_another_call(
    sqlite_server: ServerProcess,
) -> None:
    # A rerank or a moderation was copied as `litellm.completion(messages=...)`: a chat call, not it.
    post_records(
        sqlite_server.client(),
        [
            make_record(f"other-{kind}", call_type=kind, request={"input": "cats"})
            for kind in ("rerank", "moderation")
        ],
    )
    for kind in ("rerank", "moderation"):
        html = page_html(sqlite_server, f"/calls/other-{kind}")
        assert "litellm.completion(" not in html and "chat/completions" not in html, kind
        assert 'id="python-code"' not in html and 'id="curl-code"' not in html, kind
        assert f"No copy as code for {kind} calls" in html, kind


@pytest.mark.service
def test_a_responses_call_reported_as_an_otel_span_shows_its_input_and_copies_as_a_responses_call(
    sqlite_server: ServerProcess,
) -> None:
    # Its instructions came back as a system message under `messages`: the page lost the input and
    # copied it as `litellm.responses(messages=...)`, which LiteLLM's Responses call does not take.
    now = time.time_ns() - 5 * 10**9
    call = make_record(
        "otel-responses",
        call_type="responses",
        request={"input": "two plus two?", "instructions": "Answer in one word."},
    )
    attributes = semconv.record_to_attributes(call, capture_content=True)
    span = otlp_json_span("8" * 32, "f" * 16, "responses gpt-4o-mini", attributes, now, now + 10**8)
    client = sqlite_server.client()
    answer = client.request("POST", "/v1/traces", otlp_json([span]), {"Content-Type": "application/json"})
    assert answer.status == 200, answer
    (listed,) = client.get_json("/api/calls")["calls"]
    html = page_html(sqlite_server, f"/calls/{listed['call_id']}")
    chat = re.search(r'data-testid="chat">(.*?)</ol>', html, re.S)
    assert chat, html
    turns = re.findall(r'data-role="(\w+)">.*?<div class="text">(.*?)</div>', chat.group(1), re.S)
    assert turns == [("system", "Answer in one word."), ("user", "two plus two?")]
    code = python_code(html)
    assert "input='two plus two?'" in code and "instructions='Answer in one word.'" in code, code
    assert "messages" not in code, code


@pytest.mark.service
def test_the_api_answers_a_call_and_a_session_whose_ids_hold_a_slash(sqlite_server: ServerProcess) -> None:
    post_records(sqlite_server.client(), [make_record("team/a/call-1", session_id="user/42")])
    client = sqlite_server.client()
    assert client.get_json("/api/calls/team/a/call-1")["call_id"] == "team/a/call-1"
    assert client.get_json("/api/calls/team%2Fa%2Fcall-1")["call_id"] == "team/a/call-1"
    assert [c["call_id"] for c in client.get_json("/api/sessions/user/42")["calls"]] == ["team/a/call-1"]
    # The dashboard's call page links the session page, which opens.
    assert "team/a/call-1" in page_html(sqlite_server, "/sessions/user%2F42")


@pytest.mark.service
def test_links_to_calls_and_sessions_whose_ids_hold_dots_and_slashes_open_them(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # The browser resolved the `..` of a link to /calls/team/../secret and opened /calls/secret.
    ids = ["team/../secret", "../up", "x/./y", "a%2Fb"]
    now = time.time()
    post_records(
        sqlite_server.client(),
        [make_record(ident, now - i, session_id=f"s/../{i}") for i, ident in enumerate(ids)],
    )
    client = sqlite_server.client()
    for ident in ids:
        assert client.get_json(f"/api/calls/{urllib.parse.quote(ident, safe='')}")["call_id"] == ident
    v = visit(sqlite_server)
    for ident in ids:
        v.go("/calls?range=all")
        v.page.locator(f'tr[data-call-id="{ident}"] td a').first.click()
        expect(v.page.locator("[data-testid=call-id]")).to_have_text(ident)
    v.page.click("text=s/../3")  # the last call's session, from its page
    expect(v.page.locator("h1 code")).to_have_text("s/../3")
    assert v.call_ids() == ["a%2Fb"]


@pytest.mark.service
def test_last_24_hours_holds_a_call_made_23_hours_59_minutes_ago_and_its_links_list_what_it_counts(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record(
                "edge-in", now - 86400 + 5, request_model="m-edge", response_model="m-edge"
            ),  # inside the last 24 h
            make_record(
                "edge-before", now - 86400 - 5, request_model="m-edge", response_model="m-edge"
            ),  # in the first hour bucket
        ],
    )
    overview = page_html(sqlite_server, "/?range=24h&refresh=0")
    assert re.search(r'data-testid="total-requests">2<', overview), "a call of the last 24 h is missing"
    link = re.search(r'<a href="(/calls\?model=m-edge[^"]*)">m-edge</a>', overview)
    assert link, "the model breakdown links its calls"
    listed = page_html(sqlite_server, link.group(1).replace("&amp;", "&"))
    assert sorted(re.findall(r'data-call-id="([^"]+)"', listed)) == ["edge-before", "edge-in"]


@pytest.mark.service
def test_a_user_breakdown_row_links_to_the_calls_it_counts_whether_end_user_or_user_id(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("by-app-user", now - 30, user_id="app-user-1"),  # no end user: grouped by user id
            make_record("by-end-user", now - 20, end_user="eu-1", user_id="app-user-1"),
        ],
    )
    overview = page_html(sqlite_server, "/?range=24h&refresh=0")
    by_user = overview[overview.index('data-testid="by-user"') :]
    links = dict(
        (name, href.replace("&amp;", "&"))
        for href, name in re.findall(r'<a href="(/calls\?[^"]*)">([^<]*)</a>', by_user.split("</table>")[0])
    )
    assert set(links) == {"app-user-1", "eu-1"}
    for name, expected in (("app-user-1", ["by-app-user"]), ("eu-1", ["by-end-user"])):
        listed = page_html(sqlite_server, links[name])
        assert re.findall(r'data-call-id="([^"]+)"', listed) == expected, name
        assert f'value="{name}"' in listed, "the form keeps the filter"


@pytest.mark.service
def test_a_page_link_whose_cursor_no_longer_applies_shows_the_first_page_not_a_json_error(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(), [make_record(f"p{i:02d}", now - i, session_id=f"s{i:02d}") for i in range(60)]
    )
    client = sqlite_server.client()
    cursor = client.get_json("/api/calls?limit=10")["next_cursor"]
    # The API says what is wrong with the cursor (it said "could not store the batch").
    answer = client.get(f"/api/calls?sort=cost_usd&cursor={cursor}")
    assert answer.status == 400 and "cursor" in answer.json()["error"]
    assert "batch" not in answer.json()["error"]
    # The pages: a cursor made for another sort, or edited, gives the first page with a notice.
    for path in (
        f"/calls?sort=cost_usd&cursor={cursor}",
        "/calls?cursor=garbage",
        "/sessions?cursor=garbage",
    ):
        html = page_html(sqlite_server, path)
        assert 'data-testid="stale-cursor"' in html, path
        assert (
            html.count("data-call-id=") == 50 if path.startswith("/calls") else 'href="/sessions/s00"' in html
        )
    assert 'data-testid="stale-cursor"' not in page_html(sqlite_server, f"/calls?cursor={cursor}")


@pytest.mark.service
def test_the_call_list_pages_past_calls_whose_ids_are_long_and_not_ascii(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    """The next page's link carries the last call's id; one of ~100 CJK letters made it longer than the
    page took back, so "Next page" showed the first page again, with a notice that the link was stale."""
    now = time.time()
    ids = [f"{i:02d}-" + "日本語" * 80 for i in range(60)]
    post_records(sqlite_server.client(), [make_record(call_id, now - i) for i, call_id in enumerate(ids)])
    v = visit(sqlite_server)
    page = v.page
    v.go("/calls?range=1h")
    assert v.call_ids() == ids[:50]
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(r"cursor="))
    assert page.locator("[data-testid=stale-cursor]").count() == 0
    assert v.call_ids() == ids[50:]


@pytest.mark.service
def test_a_call_cut_to_size_when_recorded_says_what_was_cut(sqlite_server: ServerProcess) -> None:
    # A dropped tag or a shortened message is otherwise visible only in the raw JSON.
    cut = make_record(
        "cut-1",
        request={"messages": [{"role": "user", "content": "x" * 50 + "…[truncated 9000 chars]"}]},
        tags=["t0"],
        truncated=["request.messages[0].content", "tags"],
    )
    post_records(sqlite_server.client(), [cut, make_record("whole-1")])
    html = page_html(sqlite_server, "/calls/cut-1")
    notice = re.search(r'data-testid="truncated">([^<]*)<', html)
    assert notice and "request.messages[0].content, tags" in notice.group(1)
    assert 'data-testid="truncated"' not in page_html(sqlite_server, "/calls/whole-1")


def test_a_calls_page_names_its_service_and_environment(sqlite_server: ServerProcess) -> None:
    """docs/best-practices.md has every app set LITELENS_SERVICE and LITELENS_ENVIRONMENT so staging and
    production can be told apart, but the call's page showed neither (only its raw JSON held them)."""
    post_records(sqlite_server.client(), [make_record("svc-1", service="checkout", environment="prod")])
    html = page_html(sqlite_server, "/calls/svc-1")
    assert re.search(r'data-testid="service">checkout<', html), html
    assert re.search(r'data-testid="environment">prod<', html), html


@pytest.mark.service
def test_long_unbroken_ids_and_names_wrap_instead_of_widening_the_page(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    long = "x" * 180
    post_records(
        sqlite_server.client(),
        [
            make_record(
                "long-names",
                request_model=f"m-{long}",
                response_model=f"m-{long}",
                session_id=f"s-{long}",
                end_user=f"u-{long}",
                tags=[f"t-{long}"],
                trace_id="d" * 32,
                span_id="e" * 16,
            )
        ],
    )
    v = visit(sqlite_server)
    for path in (
        f"/traces/{'d' * 32}",
        "/?refresh=0",
        f"/sessions/s-{long}",
        "/sessions",
        "/calls/long-names",
        "/calls",
    ):
        v.go(path)
        wide = v.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{path} is {wide}px wider than the window"
    shots(v.page, "long-names")


@pytest.mark.service
def test_big_totals_stay_inside_their_tiles_on_a_laptop_screen(
    sqlite_server: ServerProcess, browser: Any, shots: Shots
) -> None:
    # A month of a busy app's tokens ran out of the tokens tile over the cost tile next to it.
    half = 61_728_394_506
    usage = {"input_tokens": half, "output_tokens": half, "total_tokens": 2 * half}
    post_records(
        sqlite_server.client(),
        [
            make_record(
                f"big-{i}", time.time() - 60 * (i + 1), usage=usage, cost_usd=98_765.43, session_id="big"
            )
            for i in range(2)
        ],
    )
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    try:
        page = context.new_page()
        sign_in(page, sqlite_server.url, sqlite_server.key)
        for path, testid, shown in (
            ("/?range=1h&refresh=0", "total-tokens-in", f"{2 * half:,}"),
            ("/sessions/big", "session-tokens", f"{2 * half:,} / {2 * half:,}"),
            ("/calls/big-0", "total-tokens", f"{2 * half:,}"),
        ):
            page.goto(sqlite_server.url + path)
            assert page.inner_text(f"[data-testid={testid}]") == shown, "the whole number, as it was"
            spill = page.eval_on_selector_all(
                ".tile",
                # The text's own box: a tile's parts are stretched to its width whatever they hold.
                """tiles => tiles.flatMap(t => Array.from(t.children, c => {
                    const text = document.createRange();
                    text.selectNodeContents(c);
                    return [c.textContent, text.getBoundingClientRect().right - t.getBoundingClientRect().right];
                })).filter(([, over]) => over > 0.5)""",
            )
            assert not spill, f"{path}: out of their tiles by (text, px): {spill}"
        shots(page, "big-totals")
    finally:
        context.close()


@pytest.mark.service
def test_on_a_phone_the_pages_keep_the_screens_width_and_wide_tables_scroll_in_their_box(
    sqlite_server: ServerProcess, browser: Any, shots: Shots
) -> None:
    # On a 390px screen the charts' 420px columns and the calls' eleven columns made every page wider
    # than the screen: the header, filters and charts scrolled sideways with them.
    records = workload(40, hours=2, seed=3)
    post_records(sqlite_server.client(), records)
    session = records[0]["session_id"]
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, sqlite_server.url, sqlite_server.key)
        for path in (
            "/?range=24h&refresh=0",
            "/calls",
            f"/calls/{records[0]['call_id']}",
            "/sessions",
            f"/sessions/{session}",
            f"/traces/{records[0]['trace_id']}",
        ):
            page.goto(sqlite_server.url + path)
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{path} is {wide}px wider than the screen"
        page.goto(sqlite_server.url + "/?range=24h&refresh=0")
        rights = page.eval_on_selector_all(
            "svg.chart-svg", "cs => cs.map(c => c.getBoundingClientRect().right)"
        )
        assert rights and max(rights) <= 390, rights
        shots(page, "phone-overview")
        page.goto(sqlite_server.url + "/calls")
        box = page.eval_on_selector(
            "table[data-testid=calls]", "t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]"
        )
        assert box[0] > box[1], "the table scrolls in its box, every column reachable"
        shots(page, "phone-calls")
    finally:
        context.close()


@pytest.mark.service
def test_the_overviews_breakdowns_show_ordinary_model_and_provider_names_on_one_line(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    """Three breakdown tables side by side left their name column a few letters wide on a 1400px
    screen: "text-embedding-3-small" read as five broken lines ("text-", "embe", "dding", ...)."""
    names = {
        "text-embedding-3-small": "openai",
        "mistral-small-latest": "mistral",
        "deepseek-chat": "deepseek",
    }
    post_records(
        sqlite_server.client(),
        [
            make_record(
                f"one-line-{i}", request_model=model, response_model=model, provider=provider, cost_usd=1e-5
            )
            for i, (model, provider) in enumerate(names.items())
        ],
    )
    v = visit(sqlite_server)
    v.go("/?refresh=0")
    for table, shown in (("by-model", list(names)), ("by-provider", list(names.values()))):
        for name in shown:
            link = v.page.locator(f"[data-testid={table}] a", has_text=name).first
            lines = link.evaluate("a => a.getClientRects().length")
            assert lines == 1, f"{name!r} in {table} is broken over {lines} lines"
    shots(v.page, "breakdowns")
    # The charts of the same page: the cost axis of cheap calls reads "$0.000050", which the fixed left
    # margin cut to ").000050"; the time-to-first-token chart, with no stream among these calls, had an
    # invented scale "0 ms, 0 ms, 1 ms" instead of saying it has no data.
    charts = v.page.evaluate(
        """() => [...document.querySelectorAll('figure.chart')].map(f => ({
            title: f.querySelector('.chart-title').textContent,
            axis: [...f.querySelectorAll('svg text.axis[text-anchor=end]')]
                .filter(t => t.getAttribute('x') < 100)
                .map(t => ({text: t.textContent, left: t.getBBox().x})),
            says: [...f.querySelectorAll('svg text.axis')].map(t => t.textContent),
        }))"""
    )
    by_title = {c["title"]: c for c in charts}
    assert "$0.000050" in [a["text"] for a in by_title["Cost"]["axis"]]
    cut = [(c["title"], a["text"]) for c in charts for a in c["axis"] if a["left"] < 0]
    assert not cut, f"axis labels cut at the chart's left edge: {cut}"
    for chart in charts:
        values = [a["text"] for a in chart["axis"]]
        assert len(values) == len(set(values)), f"{chart['title']}: axis {values}"
    ttft = by_title["Time to first token"]
    assert ttft["axis"] == [] and "no data in this range" in ttft["says"]


@pytest.mark.service
def test_an_overview_link_with_an_unknown_refresh_still_shows_the_page(sqlite_server: ServerProcess) -> None:
    # Was a JSON 422; then the page refreshing every 30 s, which `off` never asked for: now the page
    # naming it, as it names any parameter it cannot read (`test_an_auto_refresh_the_overview_cannot_...`).
    assert set(refused_on(sqlite_server, "/?range=6h&refresh=off")) == {"refresh"}
    assert "data-refresh" not in page_html(sqlite_server, "/?refresh=0")
    assert 'data-refresh="10"' in page_html(sqlite_server, "/?refresh=10")


@pytest.mark.service
def test_a_custom_range_that_ends_before_it_starts_says_so(sqlite_server: ServerProcess) -> None:
    post_records(sqlite_server.client(), [make_record("in-range", time.time() - 60)])
    html = page_html(sqlite_server, "/calls?range=all&since=2026-03-02T00:00&until=2026-03-01T00:00")
    assert 'data-testid="backwards"' in html and "data-call-id" not in html
    assert 'data-testid="backwards"' not in page_html(
        sqlite_server, "/calls?range=all&since=2026-03-01T00:00"
    )


@pytest.mark.service
def test_a_query_the_api_cannot_read_is_answered_in_its_documented_error_shape(
    sqlite_server: ServerProcess,
) -> None:
    # The reference promises `{"error": "<reason>"}`; parameter checks answered FastAPI's `{"detail": [...]}`.
    answer = sqlite_server.client().get("/api/calls?limit=0&status=bogus")
    assert answer.status == 422
    reason = answer.json()["error"]
    assert "limit (query)" in reason and "status (query)" in reason, reason


@pytest.mark.service
def test_a_call_whose_content_has_unexpected_shapes_still_opens(sqlite_server: ServerProcess) -> None:
    # The collector accepts any JSON inside `request` and `response`; the page answered 500 for a record
    # with a number or a list where it expected an object or a list.
    hi = [{"role": "user", "content": "hi"}]
    odd = [
        make_record("odd-params", request={"messages": hi, "parameters": [1]}),
        make_record("odd-tools", request={"messages": hi, "tools": 1}, truncated=True),
        make_record(
            "odd-choices", request={"messages": hi}, response={"choices": 1, "output": 2, "images": 3}
        ),
        make_record("odd-tool-calls", request={"messages": [*hi, {"role": "assistant", "tool_calls": 1}]}),
        make_record("odd-finish", request={"messages": hi}, finish_reasons=1),
        # A stream sent without a rate (an OTel span, an older sender): no `output_tokens_per_s` key.
        make_record("stream-no-rate", request={"messages": hi}, stream=True, chunk_count=3),
    ]
    post_records(sqlite_server.client(), odd)
    for record in odd:
        html = page_html(sqlite_server, f"/calls/{record['call_id']}")
        assert 'data-testid="chat"' in html and "hi</div>" in html, record["call_id"]


@pytest.mark.service
def test_a_call_whose_content_is_nested_hundreds_deep_still_opens(sqlite_server: ServerProcess) -> None:
    # The collector stores JSON nested up to ~900 levels whole; its page answered 500 from 400 levels on
    # (printing the copy-as-Python code ran out of recursion), and the API's call from 300.
    body = json.dumps({"records": [make_record("deep", tags=["deep"], request={"messages": ["DEEP"]})]})
    body = body.replace('"DEEP"', "[" * 600 + '"bottom"' + "]" * 600)
    answer = sqlite_server.client().request("POST", "/v1/events", body.encode())
    assert answer.status == 200 and answer.json()["accepted"] == 1, answer
    html = page_html(sqlite_server, "/calls/deep")
    assert "bottom" in html.split('id="raw-json"', 1)[1], "the raw JSON is shown whole"
    assert "nested too deep to print" in html, "no copy as code, and why"
    assert json.dumps(sqlite_server.client().get_json("/api/calls/deep")["request"]).count("[") == 601


@pytest.mark.service
def test_an_error_message_that_is_an_object_is_stored_and_shown_not_a_500_for_the_batch(
    sqlite_server: ServerProcess,
) -> None:
    # A peer may send the provider's error object as the message; the whole batch was refused with 500.
    failed = make_record(
        "err-object",
        status="error",
        error={"type": "BadRequestError", "message": {"code": "context_length", "detail": "too long"}},
    )
    post_records(sqlite_server.client(), [failed, make_record("ok-beside")])
    html = page_html(sqlite_server, "/calls/err-object")
    assert "BadRequestError" in html and "&#34;code&#34;: &#34;context_length&#34;" in html  # as JSON


@pytest.mark.service
def test_a_failed_calls_error_box_shows_its_normalized_class_and_the_providers_request_id(
    sqlite_server: ServerProcess,
) -> None:
    # The record had both, but the error box showed neither: only the raw JSON at the bottom held them.
    failed = make_record(
        "err-ids",
        status="error",
        error={
            "type": "RateLimitError",
            "normalized": "rate_limit",
            "provider_request_id": "req_0a1b2c",
            "message": "slow down",
        },
    )
    post_records(sqlite_server.client(), [failed])
    html = page_html(sqlite_server, "/calls/err-ids")
    box = re.search(r'<section class="error-box" aria-label="Error">(.*?)</section>', html, re.S)
    assert box, html
    assert "rate_limit" in box.group(1) and "req_0a1b2c" in box.group(1), box.group(1)


@pytest.mark.service
def test_a_failed_call_recorded_without_error_details_says_so_in_its_error_box(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # A red "error" badge with no Error section under it read as a page that lost the error.
    post_records(
        sqlite_server.client(),
        [
            make_record("err-bare", status="error", error={}),
            make_record("err-none", status="error", error=None),
            make_record("err-typed", status="error", error={"type": "BadRequestError", "message": None}),
        ],
    )
    v = visit(sqlite_server)
    for call_id, said in (
        ("err-bare", "No error message was recorded, nor its class."),
        ("err-none", "No error message was recorded, nor its class."),
        ("err-typed", "No error message was recorded."),
    ):
        v.go(f"/calls/{call_id}")
        box = v.page.locator("section.error-box")
        expect(box).to_be_visible()
        expect(box.locator("[data-testid=error-no-message]")).to_have_text(said)
    expect(v.page.locator("[data-testid=error-type]")).to_have_text("BadRequestError")


@pytest.mark.service
def test_the_top_errors_no_class_link_lists_only_the_errors_without_a_class(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("classless", now - 30, status="error", error={"message": "boom"}),
            make_record("rate-limited", now - 20, status="error", error={"type": "RateLimitError"}),
            make_record("fine", now - 10),
        ],
    )
    overview = page_html(sqlite_server, "/?range=24h&refresh=0")
    link = re.search(r'<a href="(/calls\?[^"]*)">\(no class\)</a>', overview)
    assert link, "the top errors list the failed calls without a class"
    listed = page_html(sqlite_server, link.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-call-id="([^"]+)"', listed) == ["classless"]
    # The API narrows the same way.
    calls = sqlite_server.client().get_json("/api/calls?status=error&no_error_type=true")["calls"]
    assert [c["call_id"] for c in calls] == ["classless"]


@pytest.mark.service
def test_the_calls_page_exports_its_filtered_selection_as_jsonl_and_csv(sqlite_server: ServerProcess) -> None:
    records = seed_calls(sqlite_server.client(), 30)
    html = page_html(sqlite_server, "/calls?model=claude-3&status=error&meta=team%3Dred&range=all")
    links = {
        fmt: href.replace("&amp;", "&")
        for href, fmt in re.findall(r'<a href="(/[^"]*format=(jsonl|csv)[^"]*)"', html)
    }
    assert set(links) == {"jsonl", "csv"}, "the page offers both downloads"
    expected = [
        r["call_id"]
        for r in records
        if r["request_model"] == "claude-3" and r["status"] == "error" and r["metadata"]["team"] == "red"
    ]
    assert expected
    cookie = {"Cookie": f"litelens_key={sqlite_server.key}"}
    answer = sqlite_server.client().request("GET", links["jsonl"], headers=cookie, key=None)
    assert answer.status == 200 and "attachment" in answer.headers["content-disposition"]
    assert [json.loads(line)["call_id"] for line in answer.body.decode().splitlines()] == expected
    answer = sqlite_server.client().request("GET", links["csv"], headers=cookie, key=None)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert [r["call_id"] for r in rows] == expected
    # Signed out, the link asks for a key like every page (and gives nothing away).
    assert sqlite_server.client().request("GET", links["csv"], key=None).status == 303


@pytest.mark.service
def test_a_calls_back_link_returns_to_the_filtered_list_it_was_opened_from(
    sqlite_server: ServerProcess,
) -> None:
    seed_calls(sqlite_server.client(), 30)
    listing = "/calls?model=claude-3&meta=team%3Dblue&sort=cost_usd&order=asc&range=all"
    html = page_html(sqlite_server, listing)
    shown = re.findall(r'data-call-id="([^"]+)"', html)
    assert len(shown) > 2
    opened = re.search(rf'<a href="(/calls/{shown[1]}[^"]*)"', html)
    assert opened
    detail = page_html(sqlite_server, opened.group(1).replace("&amp;", "&"))
    back = re.search(r'<a href="([^"]*)">← Calls</a>', detail)
    assert back
    again = page_html(sqlite_server, back.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-call-id="([^"]+)"', again) == shown, "the same filtered, sorted list"
    assert 'value="claude-3"' in again and 'value="team=blue"' in again


@pytest.mark.service
def test_a_sessions_back_link_returns_to_the_range_and_user_it_was_opened_from(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # "← Sessions" led to the last 24 hours of everyone's sessions, where a session of three days ago,
    # found under "Last 7 days" for its user, was not listed at all.
    old = time.time() - 3 * 86400
    post_records(
        sqlite_server.client(),
        [
            *(make_record(f"old-{i}", old + i, session_id="refund-chat", end_user="ana") for i in range(3)),
            make_record("new-1", time.time() - 60, session_id="other-chat", end_user="bo"),
        ],
    )
    v = visit(sqlite_server)
    page = v.page
    v.go("/sessions?range=7d&user=ana")
    page.click("[data-testid=sessions] >> text=refund-chat")
    page.wait_for_url(re.compile(r"/sessions/refund-chat"))
    assert v.call_ids() == ["old-0", "old-1", "old-2"]
    page.click("text=← Sessions")
    page.wait_for_url(re.compile(r"/sessions(\?[^/]*)?$"))
    listed = page.eval_on_selector_all(
        "[data-testid=sessions] tbody tr td:first-child", "cs => cs.map(c => c.innerText)"
    )
    assert listed == ["refund-chat"], listed
    assert page.input_value("select[name=range]") == "7d" and page.input_value("input[name=user]") == "ana"
    # Opened from a shared or typed link, the back link is the plain list.
    v.go("/sessions/refund-chat")
    assert page.get_attribute("text=← Sessions", "href") == "/sessions"
    # The session's own paging links carry the list along (the list is then no longer the Referer).
    v.go("/sessions/refund-chat?range=7d&user=ana")
    assert page.get_attribute("text=← Sessions", "href") == "/sessions?range=7d&user=ana"


@pytest.mark.service
def test_right_to_left_names_and_messages_read_in_their_own_direction(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    # A Hebrew first user read "1+ משתמש more" in the sessions list, and an Arabic message was laid out
    # left to right, its full stop at the wrong end.
    now = time.time()
    question = "أين طلبي رقم 1042."
    post_records(
        sqlite_server.client(),
        [
            make_record(
                "rtl-1",
                now - 60,
                session_id="rtl-chat",
                end_user="משתמש",
                request={"messages": [{"role": "user", "content": question}]},
            ),
            make_record("rtl-2", now - 30, session_id="rtl-chat", end_user="bo"),
        ],
    )
    v = visit(sqlite_server)
    page = v.page

    def char_left(selector: str, index: int) -> float:
        """Where the `index`th character of the element's text (its first text node) is drawn."""
        return page.eval_on_selector(
            selector,
            """(element, index) => {
                const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
                const node = walker.nextNode();
                const range = document.createRange();
                range.setStart(node, index < 0 ? node.length + index : index);
                range.setEnd(node, (index < 0 ? node.length + index : index) + 1);
                return range.getBoundingClientRect().left;
            }""",
            index,
        )

    v.go("/sessions?range=1h")
    owner = "[data-testid=sessions] tbody tr:has-text('rtl-chat') [data-testid=session-user]"
    name_right = page.eval_on_selector(f"{owner} a", "a => a.getBoundingClientRect().right")
    assert char_left(f"{owner} [data-testid=more-users]", 0) >= name_right, "'+1 more' after the name"

    v.go("/calls/rtl-1")
    text = "[data-testid=chat] .text"
    assert page.inner_text(text) == question
    assert char_left(text, -1) < char_left(text, 0), "the full stop ends the sentence on the left"
    shots(page, "rtl-message")


@pytest.mark.service
def test_sessions_are_listed_by_their_last_activity_newest_first(sqlite_server: ServerProcess) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            # A long stream that began first and ended last: its session was active most recently.
            make_record("long", now - 100, end_time=now - 10, session_id="s-long"),
            make_record("short", now - 50, end_time=now - 49, session_id="s-short"),
            # Three sessions last active at the same moment: a fixed order, and no page repeats one.
            *(
                make_record(f"tie-{i}", now - 300, end_time=now - 200, session_id=f"s-tie-{i}")
                for i in range(3)
            ),
        ],
    )
    order = ["s-long", "s-short", "s-tie-2", "s-tie-1", "s-tie-0"]
    html = page_html(sqlite_server, "/sessions?range=24h")
    assert re.findall(r'<a href="/sessions/([^"]+)">', html) == order
    client, seen, cursor = sqlite_server.client(), [], ""
    while True:
        answer = client.get_json(f"/api/sessions?limit=2{cursor}")
        seen += [s["session_id"] for s in answer["sessions"]]
        if not answer["next_cursor"]:
            break
        cursor = f"&cursor={answer['next_cursor']}"
    assert seen == order


@pytest.mark.service
def test_an_id_with_control_characters_gets_a_404_that_shows_them_escaped(
    db_project_server: ServerProcess,
) -> None:
    post_records(db_project_server.client(), [make_record("c-1", session_id="s-1")])
    cookie = {"Cookie": f"litelens_key={db_project_server.key}"}
    for kind in ("calls", "traces", "sessions"):
        answer = db_project_server.client().request(
            "GET", f"/{kind}/c-1%00%1b[2J%e2%80%ae", headers=cookie, key=None
        )
        assert answer.status == 404, (kind, answer)  # PostgreSQL, which holds no NUL, answered 503
        text = answer.body.decode()
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e]", text), kind
        assert r"c-1\x00\x1b[2J\u202e" in text, kind
        assert db_project_server.client().get(f"/api/{kind}/c-1%00").status == 404, kind
        # No id at all: the page names no blank one ("no call  in this project").
        empty = db_project_server.client().request("GET", f"/{kind}/", headers=cookie, key=None)
        singular = kind[:-1]
        assert empty.status == 404 and f"There is no {singular} in this project." in empty.body.decode(), (
            kind,
            empty,
        )
    # A filter holding a NUL lists no call (PostgreSQL answered 503 here too).
    assert "data-call-id" not in page_html(db_project_server, "/calls?model=gpt%00&range=all")
    assert db_project_server.client().get_json("/api/calls?session_id=s-1%00")["calls"] == []
    assert db_project_server.client().get("/api/export?q=%00&model=%00").body == b""


@pytest.mark.service
def test_in_the_live_tail_the_next_page_and_sort_links_leave_the_tail_and_work(
    sqlite_server: ServerProcess,
) -> None:
    records = seed_calls(sqlite_server.client(), 60)
    html = page_html(sqlite_server, "/calls?tail=1&range=all")
    newest_first = [r["call_id"] for r in reversed(records)]
    assert re.findall(r'data-call-id="([^"]+)"', html) == newest_first[:50]
    following = re.search(r'<a href="(/calls\?[^"]*)" rel="next">', html)
    assert following, "a next page"
    # It reloaded the tail's first page: the tail shows the newest calls, whatever the cursor.
    second = page_html(sqlite_server, following.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-call-id="([^"]+)"', second) == newest_first[50:]
    by_cost = re.search(r'<a href="(/calls\?[^"]*sort=cost_usd[^"]*)"', html)
    assert by_cost
    sorted_page = page_html(sqlite_server, by_cost.group(1).replace("&amp;", "&"))
    expected = [r["call_id"] for r in sorted(records, key=lambda r: r["cost_usd"], reverse=True)[:50]]
    assert re.findall(r'data-call-id="([^"]+)"', sorted_page) == expected


@pytest.mark.service
def test_calls_listed_in_arrival_order_say_so_and_the_sort_bar_marks_it(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    # `sort=arrival` (the order the collector stored the calls, which `litelens tail` follows) listed
    # them under a sort bar that marked no column, by a Time column out of order: an order that matched
    # nothing on the page.
    now = time.time()
    client = sqlite_server.client()
    # Stored in this order, one batch each; started in another: the middle one is a call a spool
    # delivered late, or a long stream stored when it ended.
    for call_id, start in (
        ("stored-first", now - 60),
        ("stored-late", now - 3000),
        ("stored-last", now - 120),
    ):
        post_records(client, [make_record(call_id, start)])
    v = visit(sqlite_server)
    v.go("/calls?range=all")
    assert v.call_ids() == ["stored-first", "stored-last", "stored-late"], "by start time"
    assert v.page.locator("[data-testid=sort-note]").count() == 0
    v.page.click("tr.sorts a:text-is('Arrival')")
    v.page.wait_for_url(re.compile(r"sort=arrival"))
    shots(v.page, "arrival-order")
    assert v.call_ids() == ["stored-last", "stored-late", "stored-first"]
    sorted_by = v.page.locator("tr.sorts a[aria-current=true]")
    expect(sorted_by).to_have_text("Arrival ↓")
    note = v.page.locator("[data-testid=sort-note]")
    expect(note).to_be_visible()
    expect(note).to_contain_text("in the order the collector stored them, the last stored first")
    expect(note).to_contain_text("not by their Time")
    # Clicked again, the other way round, and said so.
    sorted_by.click()
    v.page.wait_for_url(re.compile(r"order=asc"))
    assert v.call_ids() == ["stored-first", "stored-late", "stored-last"]
    expect(v.page.locator("tr.sorts a[aria-current=true]")).to_have_text("Arrival ↑")
    expect(note).to_contain_text("the first stored first")
    # Another sort, and the note goes.
    v.page.click("tr.sorts a:text-is('Cost')")
    v.page.wait_for_url(re.compile(r"sort=cost_usd"))
    assert v.page.locator("[data-testid=sort-note]").count() == 0


@pytest.mark.service
def test_a_call_whose_time_is_no_calendar_date_still_lists_and_opens(
    server_factory: Callable[..., ServerProcess], sqlite_url: str
) -> None:
    sqlite_server = server_factory(sqlite_url)  # its own: the test writes to the database directly
    # An older collector took any number as a start time, and its database keeps them; a date past
    # the year 9999 failed every page showing the call (the whole calls list included) with a 500.
    post_records(
        sqlite_server.client(),
        [make_record(call_id, session_id="s-odd") for call_id in ("far-future", "far-past", "plain")],
    )
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as db:
        for call_id, when in (("far-future", 1e12), ("far-past", -1e12)):
            db.execute(
                "UPDATE calls SET start_time = ?, end_time = ?,"
                " record = json_set(record, '$.start_time', ?, '$.end_time', ?) WHERE call_id = ?",
                (when, when, when, when, call_id),
            )
    listed = page_html(sqlite_server, "/calls?range=all")
    assert re.findall(r'data-call-id="([^"]+)"', listed) == ["far-future", "plain", "far-past"]
    assert "1e+12" in page_html(sqlite_server, "/calls/far-future")
    assert "-1e+12" in page_html(sqlite_server, "/calls/far-past")
    assert "far-future" in page_html(sqlite_server, "/sessions/s-odd")


@pytest.mark.service
def test_a_time_that_is_not_a_finite_number_is_refused_by_name(sqlite_server: ServerProcess) -> None:
    client = sqlite_server.client()
    # `start=nan` reached the store: /api/stats said "could not store the batch", the others matched nothing.
    for path in (
        "/api/stats?start=nan",
        "/api/calls?end=inf",
        "/api/sessions?start=-inf",
        "/api/export?start=nan",
    ):
        answer = client.get(path)
        assert answer.status == 400, (path, answer)
        assert "finite" in answer.json()["error"] and "batch" not in answer.json()["error"], path


@pytest.mark.service
def test_a_model_breakdown_row_links_to_every_call_it_counts_prefixed_names_included(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            # A routed call that failed: only the deployment's name, with its provider's prefix.
            make_record(
                "routed-failed",
                now - 30,
                request_model="openai/gpt-4o",
                response_model=None,
                status="error",
                error={"type": "APIError"},
            ),
            make_record("answered", now - 20, request_model="gpt-4o", response_model="gpt-4o"),
        ],
    )
    overview = page_html(sqlite_server, "/?range=24h&refresh=0")
    by_model = overview[overview.index('data-testid="by-model"') :].split("</table>")[0]
    link = re.search(r'<a href="(/calls\?[^"]*)">gpt-4o</a>', by_model)
    assert link and re.search(r'gpt-4o</a></td>\s*<td class="num">2<', by_model), "both count as gpt-4o"
    listed = page_html(sqlite_server, link.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-call-id="([^"]+)"', listed) == ["answered", "routed-failed"]


@pytest.mark.service
def test_each_model_breakdown_row_lists_the_calls_it_counts_when_the_answer_names_a_dated_model(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # A request for gpt-4o-mini is answered by gpt-4o-mini-2024-07-18 and counted under that name; its
    # failures have no answer and count under gpt-4o-mini. That row said 2 calls and listed all 5.
    now = time.time()
    answered = [
        make_record(
            f"ok-{i}", now - 300 + i, request_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18"
        )
        for i in range(3)
    ]
    failed = [
        make_record(
            f"failed-{i}",
            now - 200 + i,
            request_model="gpt-4o-mini",
            response_model=None,
            status="error",
            error={"type": "RateLimitError"},
        )
        for i in range(2)
    ]
    post_records(sqlite_server.client(), answered + failed)
    v = visit(sqlite_server)
    v.go("/?range=1h&refresh=0")
    rows = v.page.eval_on_selector_all(
        "[data-testid=by-model] tbody tr",
        "rows => rows.map(r => [r.cells[0].innerText, Number(r.cells[1].innerText), r.querySelector('a').href])",
    )
    assert sorted((name, count) for name, count, _ in rows) == [
        ("gpt-4o-mini", 2),
        ("gpt-4o-mini-2024-07-18", 3),
    ]
    for name, count, link in sorted(rows):
        v.page.goto(link)
        listed = v.call_ids()
        assert len(listed) == count, (name, listed)
        expected = [r["call_id"] for r in (failed if name == "gpt-4o-mini" else answered)]
        assert sorted(listed) == sorted(expected)
        # The filter shows in the form, so applying another filter keeps it.
        assert v.page.input_value("input[name=grouped_model]") == name
    # The API narrows the same way, and `model` still finds every call that asked for or got the name.
    client = sqlite_server.client()
    assert len(client.get_json("/api/calls?grouped_model=gpt-4o-mini")["calls"]) == 2
    assert len(client.get_json("/api/calls?model=gpt-4o-mini")["calls"]) == 5


@pytest.mark.service
def test_a_time_filter_at_the_calendars_edge_shows_the_page(sqlite_server: ServerProcess) -> None:
    post_records(sqlite_server.client(), [make_record("now-1")])
    # Year 1 at +01:00 is year 0 in UTC, year 9999 at -01:00 is year 10000: both were a 500.
    for since in ("0001-01-01T00:00%2B01:00", "9999-12-31T23:59:59-01:00"):
        assert "<h1>Calls</h1>" in page_html(sqlite_server, f"/calls?range=all&since={since}")
    html = page_html(sqlite_server, "/calls?range=all&since=0001-01-01T00:00")
    assert 'name="since" value="0001-01-01T00:00:00"' in html, "the form shows the time it filters by"
    assert re.findall(r'data-call-id="([^"]+)"', html) == ["now-1"]


@pytest.mark.service
def test_a_sessions_page_link_with_an_overlong_cursor_shows_the_first_page(
    sqlite_server: ServerProcess,
) -> None:
    post_records(sqlite_server.client(), [make_record("c-1", session_id="s-1")])
    html = page_html(sqlite_server, "/sessions?cursor=" + "x" * 600)  # was FastAPI's JSON 422
    assert 'data-testid="stale-cursor"' in html and 'href="/sessions/s-1"' in html


@pytest.mark.service
def test_a_traced_call_without_a_requested_model_is_named_by_what_it_has(
    sqlite_server: ServerProcess,
) -> None:
    trace = "5" * 32
    post_records(
        sqlite_server.client(),
        [
            make_record("no-request-model", trace_id=trace, request_model=None, response_model="m-answered"),
            make_record(
                "no-model", trace_id=trace, request_model=None, response_model=None, call_type="embedding"
            ),
        ],
    )
    html = page_html(sqlite_server, f"/traces/{trace}")
    names = re.findall(r'class="span-name"[^>]*>([^<]*)<', html)
    assert sorted(names) == ["chat m-answered", "embedding"], names  # were "chat None", "embedding None"


@pytest.mark.service
def test_the_overviews_slowest_and_costliest_calls_name_a_model_the_call_has(
    sqlite_server: ServerProcess,
) -> None:
    post_records(
        sqlite_server.client(),
        [make_record("answered-only", request_model=None, response_model="m-answered", cost_usd=1.0)],
    )
    overview = page_html(sqlite_server, "/?range=24h&refresh=0")
    rows = re.findall(r'<td><a href="/calls/answered-only">[^<]*</a></td><td>([^<]*)</td>', overview)
    assert rows == ["m-answered", "m-answered"], rows  # slowest, then costliest: was a dash


@pytest.mark.service
def test_the_most_expensive_calls_are_calls_with_a_price(
    sqlite_server: ServerProcess, visit: Callable[..., Visit]
) -> None:
    # The cost index reads an unknown cost as $0: with one priced call, four calls whose cost is
    # unknown (a dash) filled the list of the most expensive ones.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("priced", now - 3 * 3600, cost_usd=0.002),
            *(make_record(f"unpriced-{i}", now - 600 + i) for i in range(4)),
        ],
    )
    v = visit(sqlite_server)

    def most_expensive() -> list[str]:
        table = v.page.locator("h2:has-text('Most expensive calls') + div table tbody")
        return table.evaluate("body => Array.from(body.rows, r => r.cells[r.cells.length - 1].innerText)")

    v.go("/?range=6h&refresh=0")
    assert most_expensive() == ["$0.00200"]
    # A range whose calls have no price at all says so, rather than "no calls" or a list of dashes.
    v.go("/?range=1h&refresh=0")
    assert most_expensive() == ["No priced calls in this range."]


@pytest.mark.service
def test_a_later_sessions_page_links_back_to_the_first(sqlite_server: ServerProcess) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(), [make_record(f"c{i:02d}", now - i, session_id=f"s{i:02d}") for i in range(55)]
    )
    first = page_html(sqlite_server, "/sessions?range=6h")
    assert "First page" not in first
    following = re.search(r'<a rel="next" href="([^"]+)">', first)
    assert following
    second = page_html(sqlite_server, following.group(1).replace("&amp;", "&"))
    assert re.findall(r'<a href="/sessions/([^"]+)">', second) == [f"s{i:02d}" for i in range(50, 55)]
    back = re.search(r'<a href="([^"]+)">First page</a>', second)
    assert back and "range=6h" in back.group(1), "a way back without the browser's history"
    again = page_html(sqlite_server, back.group(1).replace("&amp;", "&"))
    assert re.findall(r'<a href="/sessions/([^"]+)">', again)[:2] == ["s00", "s01"]


@pytest.mark.service
def test_a_metadata_filter_on_a_key_with_a_quote_or_backslash_lists_its_calls(
    db_project_server: ServerProcess,
) -> None:
    post_records(
        db_project_server.client(),
        [
            make_record("quoted", metadata={'say "hi"': "yes", "dir\\name": "x"}),
            make_record("other", metadata={"say hi": "yes"}),
        ],
    )
    # SQLite's JSON paths cannot quote these: the page was a JSON 400 "could not store the batch".
    for meta in ('say "hi"=yes', "dir\\name=x"):
        html = page_html(db_project_server, "/calls?range=all&meta=" + urllib.parse.quote(meta))
        assert re.findall(r'data-call-id="([^"]+)"', html) == ["quoted"], meta


@pytest.mark.service
def test_a_retried_proxy_requests_page_leads_to_its_other_attempts(sqlite_server: ServerProcess) -> None:
    # The id the proxy's client gets (x-litellm-call-id) is the first attempt's: after a fallback that one
    # failed, and its page said nothing of the attempt that answered (`<id>:2`).
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("req-7", now - 5, status="error", error={"type": "RateLimitError"}),
            make_record("req-7:2", now - 4),
            make_record("alone", now - 3),
        ],
    )
    html = page_html(sqlite_server, "/calls/req-7")
    attempts = re.search(r'<p data-testid="attempts">(.*?)</p>', html, re.S)
    assert attempts, html
    assert "Attempt <strong>1</strong> of 2" in attempts.group(1)
    (link,) = re.findall(r'<a href="([^"]+)">2 · ok</a>', attempts.group(1))
    assert 'data-testid="call-id">req-7:2<' in page_html(sqlite_server, link)
    assert 'data-testid="attempts"' not in page_html(sqlite_server, "/calls/alone")


# --------------------------------------------------------------------------------------------------
# Addresses the pages cannot read


def refused_on(server: ServerProcess, path: str) -> dict[str, str]:
    """What a page says it cannot read in its address, by parameter: it must answer 400, list no call,
    and name each such parameter (never a 500, never a default in its place)."""
    answer = server.client().request("GET", path, headers={"Cookie": f"litelens_key={server.key}"}, key=None)
    html = answer.body.decode()
    assert answer.status == 400, (path, answer.status, html[:300])
    assert 'data-testid="refused"' in html and "data-call-id" not in html, path
    return {
        urllib.parse.unquote(htmllib.unescape(name)): htmllib.unescape(why)
        for name, why in re.findall(r'<li data-param="([^"]+)">([^<]*)</li>', html)
    }


@pytest.mark.service
def test_a_filter_given_twice_is_named_on_the_calls_page_which_then_lists_nothing(
    sqlite_server: ServerProcess, visit: Callable[..., Visit], shots: Shots
) -> None:
    # The API refuses `?tag=x&tag=y` by name; the page listed the calls tagged x, its form showed x, and
    # whoever edited the link read the table as filtered by both.
    now = time.time()
    post_records(
        sqlite_server.client(),
        [make_record("tagged-x", now - 20, tags=["x"]), make_record("tagged-y", now - 10, tags=["y"])],
    )
    v = visit(sqlite_server)
    answer = v.go("/calls?tag=x&tag=y&range=all")
    shots(v.page, "tag-twice")
    assert answer.status == 400
    note = v.page.locator("[data-testid=refused]")
    expect(note).to_be_visible()
    expect(note).to_contain_text("tag is given 2 times with different values ('x', 'y')")
    assert v.call_ids() == [], "no call is listed as if filtered"
    assert v.page.input_value("input[name=tag]") == "", "the form does not show one of the two as applied"
    assert v.page.locator("[data-testid=no-calls]").count() == 0, "not 'no calls match': nothing was matched"
    # The same link's export and live tail refuse it too, rather than serve the first tag's calls.
    assert set(refused_on(sqlite_server, "/export?tag=x&tag=y&format=csv")) == {"tag"}
    tail = sqlite_server.client().request(
        "GET", "/partials/calls?tag=x&tag=y&after=0", headers={"Cookie": f"litelens_key={sqlite_server.key}"}
    )
    assert tail.status == 400 and b"tag is given 2 times" in tail.body
    # The same value twice loses nothing: listed, as the API takes it.
    assert re.findall(r'data-call-id="([^"]+)"', page_html(sqlite_server, "/calls?tag=x&tag=x")) == [
        "tagged-x"
    ]
    # Fixed in the form, the table lists the calls.
    v.page.fill("input[name=tag]", "y")
    v.page.click("text=Apply filters")
    v.page.wait_for_url(re.compile(r"tag=y"))
    assert v.call_ids() == ["tagged-y"]


@pytest.mark.service
def test_a_time_in_the_address_is_read_as_the_api_reads_it_or_named_never_the_default_range(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    three_days_ago = now - 3 * 86400
    post_records(
        sqlite_server.client(),
        [
            make_record("old", three_days_ago, session_id="old-chat"),
            make_record("new", now - 60, session_id="new-chat"),
        ],
    )
    # Epoch seconds, as the API's `start` takes them: they gave the last 24 hours (only "new").
    since = int(three_days_ago - 3600)
    html = page_html(sqlite_server, f"/calls?since={since}")
    assert re.findall(r'data-call-id="([^"]+)"', html) == ["new", "old"]
    shown = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
    assert f'name="since" value="{shown}"' in html, "the form shows the time it filters by"
    html = page_html(sqlite_server, f"/calls?range=all&until={since + 7200}")
    assert re.findall(r'data-call-id="([^"]+)"', html) == ["old"]
    # Milliseconds (JavaScript's Date.now()) and typos are named, with what is taken instead.
    why = refused_on(sqlite_server, f"/calls?since={since * 1000}")
    assert set(why) == {"since"} and "milliseconds? divide by 1000" in why["since"], why
    why = refused_on(sqlite_server, "/calls?since=yesterdya&until=2026-03-01T09:30")
    assert set(why) == {"since"} and "'yesterdya' is not a time" in why["since"], why
    assert "epoch seconds" in why["since"] and "2026-03-01T09:30" in why["since"]
    # The overview and the sessions page show preset ranges: a custom time there did nothing at all.
    for path in (f"/?since={since}", f"/sessions?until={since}", f"/sessions?range=7d&since={since}"):
        why = refused_on(sqlite_server, path)
        name = "since" if "since" in path else "until"
        assert set(why) == {name} and "/calls?since=" in why[name], (path, why)
    for path in ("/?range=2d", "/sessions?range=yesterday", "/calls?range=2d", "/?range=1h&range=7d"):
        assert set(refused_on(sqlite_server, path)) == {"range"}, path
    # "All time" is a range of the calls page, and now of the sessions page too (it was the last 24 hours).
    listed = page_html(sqlite_server, "/sessions?range=all")
    assert 'href="/sessions/old-chat"' in listed and 'href="/sessions/new-chat"' in listed
    assert 'value="all" selected' in listed


@pytest.mark.service
def test_every_parameter_a_page_cannot_read_is_named_not_replaced_by_a_default(
    sqlite_server: ServerProcess,
) -> None:
    post_records(sqlite_server.client(), [make_record("any")])
    odd = urllib.parse.quote("\u202e\x00é" * 50)
    for path, name in (
        ("/calls?status=bogus", "status"),  # listed every status
        ("/calls?meta=team", "meta"),  # dropped: calls of any metadata
        ("/calls?meta=team%3Da&meta=team%3Db", "meta"),  # a JSON 400 in place of the page
        ("/calls?" + "&".join(f"meta=k{i}%3D1" for i in range(21)), "meta"),  # the 21st was dropped
        ("/calls?sort=latency", "sort"),
        ("/calls?order=up", "order"),
        ("/calls?no_error_type=maybe", "no_error_type"),
        ("/calls?tail=1&tail=0", "tail"),
        ("/calls?model_name=gpt-4o", "model_name"),  # a misspelt filter: every call, read as filtered
        (f"/calls?{odd}=1", urllib.parse.unquote(odd)),
        (f"/calls?since={odd}", "since"),
        ("/calls?since=nan", "since"),
        ("/calls?until=1e400", "until"),
        ("/calls?since=-", "since"),
        ("/sessions?user=ana&user=bo", "user"),
        ("/sessions?cursor=a&cursor=b", "cursor"),
        ("/export?format=xml", "format"),  # a JSON-lines download
        ("/export?since=garbage", "since"),  # every call of the last 24 hours
    ):
        why = refused_on(sqlite_server, path)
        assert set(why) == {name}, (path, why)
        assert "\x00" not in why[name] and "\u202e" not in why[name], "control characters are escaped"


def dashboard_routes() -> list[tuple[str, APIRoute]]:
    """Every page and fragment of the dashboard as (path, route), taken from the app as `litelens serve`
    assembles it (all its GET routes but the API's, ingest's and /health): a new page is walked without
    being listed here."""
    app = create_app(ServerSettings(db_url="sqlite:///:memory:"))
    try:  # FastAPI 0.165 keeps an included router's routes behind one entry of `app.routes`
        from fastapi.routing import iter_route_contexts

        found = [(c.path_format, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:
        found = [(getattr(r, "path_format", ""), r) for r in app.routes]
    return [
        (path, route)
        for path, route in found
        if isinstance(route, APIRoute)
        and "GET" in route.methods
        and not path.startswith(("/api/", "/v1/"))
        and path != "/health"
    ]


# Parameters whose value is the user's own text (a name, an id, a search, a page link): any value reads.
# Every other parameter has values it cannot read, and `bogus` is one of them.
FREE_TEXT = frozenset(
    {
        *("model", "grouped_model", "provider", "error_type", "call_type", "end_user", "user_id", "user"),
        *("session_id", "trace_id", "key_alias", "tag", "q", "cursor", "next"),
    }
)
# As sent in the query string: `%ff` is no UTF-8; the last one is long, with control characters.
ODD_VALUES = ("bogus", "nan", "1e999", "-1", "%ff", urllib.parse.quote("\u202e\x00" + "é" * 300, safe=""))


@pytest.mark.service
@pytest.mark.parametrize(("route_path", "route"), dashboard_routes(), ids=[p for p, _ in dashboard_routes()])
def test_every_dashboard_route_answers_an_address_it_cannot_read_with_a_400_page_naming_the_parameter(
    sqlite_server: ServerProcess, route_path: str, route: APIRoute
) -> None:
    # `/partials/calls?after=abc` answered FastAPI's JSON 422, and `/traces/...?x=1` or
    # `/sessions/...?range=bogus` the page as if the address said nothing of it. Each parameter a route
    # takes, and one it does not, is given values it may not read: each is read (200) or named in the
    # dashboard's HTML 400, never a JSON 422, never a 500.
    trace = "ab" * 16
    post_records(
        sqlite_server.client(),
        [make_record("probe-call", time.time() - 30, session_id="probe-session", trace_id=trace)],
    )
    path = route_path.format(call_id="probe-call", trace_id=trace, session_id="probe-session")
    client = sqlite_server.client()

    def get(query: str) -> Any:
        answer = client.request(
            "GET", f"{path}?{query}", headers={"Cookie": f"litelens_key={sqlite_server.key}"}, key=None
        )
        assert answer.status in (200, 400), (path, query, answer.status, answer.body[:300])
        return answer

    def named(answer: Any, name: str) -> str:
        """What the 400 says of `name`: it is the dashboard's HTML, shows no call, and names it."""
        html = answer.body.decode()
        assert answer.status == 400 and answer.headers["content-type"].startswith("text/html"), (path, html)
        assert 'data-testid="refused"' in html and "data-call-id" not in html, (path, html[:300])
        why = {
            urllib.parse.unquote(htmllib.unescape(n)): htmllib.unescape(w)
            for n, w in re.findall(r'<li data-param="([^"]+)">([^<]*)</li>', html)
        }
        assert name in why and name in why[name], (path, name, why)
        assert "\x00" not in why[name] and "\u202e" not in why[name], "control characters are escaped"
        return why[name]

    assert get("").status == 200, "the address its links give is read"
    # One it does not take is named, with the ones it takes; FastAPI's own are among them.
    takes_text = named(get("no_such_parameter=1"), "no_such_parameter").partition("it takes")[2]
    takes = set() if takes_text == " no parameters" else set(takes_text.removeprefix(": ").split(", "))
    assert {p.alias for p in route.dependant.query_params} <= takes, (path, takes)
    for name in sorted(takes):
        if name != "meta":  # the one that takes several values
            assert "given 2 times" in named(get(f"{name}=1&{name}=2"), name)
        for value in ODD_VALUES:
            answer = get(f"{name}={value}")
            if answer.status == 400:
                named(answer, name)
            if value == "bogus":  # the user's own text reads; anything else has values it cannot
                assert (answer.status == 200) == (name in FREE_TEXT), (path, name, answer.status)


@pytest.mark.service
def test_a_page_parameter_fastapi_cannot_read_is_named_in_the_dashboards_400_not_a_json_422(
    tmp_path: Path,
) -> None:
    # The pages read their parameters as text; a page added with one typed as a number (as the live
    # tail's `after` was) answered `?n=abc` with the API's JSON 422. The dashboard's handler answers it
    # with the page naming the parameter, while the API keeps its documented JSON error.
    import uvicorn
    from fastapi import APIRouter

    app = create_app(ServerSettings(db_url=f"sqlite:///{tmp_path}/litelens.db", no_auth=True))
    typed = APIRouter(include_in_schema=False)

    @typed.get("/typed-page")
    async def typed_page(n: int = 1) -> dict[str, int]:
        return {"n": n}

    app.include_router(typed)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        client = Client(f"http://127.0.0.1:{port}")
        answer = client.get("/typed-page?n=abc", key=None)
        html = answer.body.decode()
        assert answer.status == 400 and answer.headers["content-type"].startswith("text/html"), answer
        assert re.findall(r'<li data-param="([^"]+)">([^<]*)</li>', html) == [
            ("n", "n=&#39;abc&#39;: Input should be a valid integer, unable to parse string as an integer")
        ]
        assert client.get("/typed-page?n=2", key=None).json() == {"n": 2}
        api = client.get("/api/calls?limit=abc", key=None)
        assert api.status == 422 and "limit (query)" in api.json()["error"], api
        client.close()
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.service
def test_an_auto_refresh_the_overview_cannot_read_is_named_not_replaced_by_30_seconds(
    sqlite_server: ServerProcess,
) -> None:
    # `?refresh=abc` (or a value the menu does not offer) refreshed every 30 s, while the other
    # parameters the page cannot read get the page naming them.
    post_records(sqlite_server.client(), [make_record("any")])
    for given in ("abc", "off", "15", "-1"):
        why = refused_on(sqlite_server, f"/?range=24h&refresh={given}")
        assert set(why) == {"refresh"}, (given, why)
        assert f"refresh='{given}' is not one of: 0, 10, 30, 60" in why["refresh"], why
    assert 'data-refresh="' not in page_html_status(sqlite_server, "/?refresh=abc", 400), "nor reloads"
    # What the menu offers still reads, and an empty value (not given) is the default.
    assert 'data-refresh="10"' in page_html(sqlite_server, "/?range=24h&refresh=10")
    assert 'data-refresh="' not in page_html(sqlite_server, "/?range=24h&refresh=0")
    assert 'data-refresh="30"' in page_html(sqlite_server, "/?range=24h&refresh=")


def page_html_status(server: ServerProcess, path: str, status: int) -> str:
    answer = server.client().request("GET", path, headers={"Cookie": f"litelens_key={server.key}"}, key=None)
    assert answer.status == status, (path, answer)
    return answer.body.decode()


@pytest.mark.service
def test_a_yes_no_filter_reads_true_as_the_api_does(sqlite_server: ServerProcess) -> None:
    now = time.time()
    post_records(
        sqlite_server.client(),
        [
            make_record("classless", now - 30, status="error", error={"message": "boom"}),
            make_record("rate-limited", now - 20, status="error", error={"type": "RateLimitError"}),
        ],
    )
    # `/api/calls?no_error_type=true` is the documented spelling; the page took only `1`, and listed
    # every failure, with an error class or not, for `true`.
    html = page_html(sqlite_server, "/calls?status=error&no_error_type=true&range=all")
    assert re.findall(r'data-call-id="([^"]+)"', html) == ["classless"]
    assert 'name="no_error_type" value="1" checked' in html


@pytest.mark.service
def test_the_live_tail_takes_a_newest_start_past_the_calendar_without_a_500(
    sqlite_server: ServerProcess,
) -> None:
    now = time.time()
    post_records(sqlite_server.client(), [make_record(f"tail-{i:03d}", now - 300 + i) for i in range(201)])
    # The live tail's `after` is the newest start the browser shows; past the calendar it answered 500.
    cookie = {"Cookie": f"litelens_key={sqlite_server.key}"}
    for after in ("-1e300", "-inf", "nan", "1e300"):
        answer = sqlite_server.client().request(
            "GET", f"/partials/calls?range=all&after={after}", headers=cookie
        )
        assert answer.status in (200, 400), (after, answer.status)
    # Every row brought is newer than `after`: the gap note links to the calls it skipped.
    answer = sqlite_server.client().request("GET", "/partials/calls?range=all&after=-1e300", headers=cookie)
    assert answer.status == 200 and b'data-testid="tail-gap"' in answer.body, answer
