"""Helpers for the dashboard tests: a browser visit that records what the page fetched, screenshots, a
realistic workload to seed a real server with through ingest, signing in through the sign-in form, and
`save_overview_screenshot` for the README."""

from __future__ import annotations

import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

from litelens.testing.browser import launch
from server_helpers import Client, ServerProcess, make_record

MODELS = [
    ("gpt-4o-mini", "openai", 0.15, 0.6),
    ("gpt-4o", "openai", 2.5, 10.0),
    ("claude-3-5-sonnet", "anthropic", 3.0, 15.0),
    ("gemini-1.5-flash", "gemini", 0.075, 0.3),
]
USERS = ["ana", "bo", "chen", "dara", "eli", "fatima"]
TAGS = ["checkout", "support", "search", "batch"]
QUESTIONS = [
    "Where is my order #1042?",
    "Summarize this support ticket in two sentences.",
    "Which of these products ships to Norway?",
    "Translate the return policy to German.",
]


def workload(
    count: int, hours: float = 20.0, seed: int = 7, now: float | None = None
) -> list[dict[str, Any]]:
    """`count` call records spread over the last `hours`, shaped like a small shop's assistant: a few
    models and providers, streams with a first-token time, sessions and traces, tags, rate limits and
    provider errors, costs from list prices. Deterministic for a given seed."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    records = []
    for i in range(count):
        # More traffic in the later hours, as a service that is picking up.
        start = now - hours * 3600 * (1 - rng.random() ** 0.7) - 5
        model, provider, price_in, price_out = rng.choices(MODELS, weights=[6, 2, 2, 1])[0]
        stream = rng.random() < 0.45
        duration = rng.lognormvariate(6.4, 0.55) * (2.2 if model in ("gpt-4o", "claude-3-5-sonnet") else 1)
        tokens_in, tokens_out = rng.randrange(40, 1800), rng.randrange(5, 600)
        user = rng.choice(USERS)
        failed = rng.random() < 0.06
        error = None
        if failed:
            kind = rng.choice(
                ["RateLimitError", "RateLimitError", "APIConnectionError", "InternalServerError"]
            )
            code = {"RateLimitError": 429, "InternalServerError": 500}.get(kind)
            error = {"type": kind, "message": f"{provider}: {kind}", "status_code": code}
            tokens_out = 0
        question = rng.choice(QUESTIONS)
        records.append(
            make_record(
                f"demo-{seed}-{i:05d}",
                start,
                end_time=start + duration / 1000,
                duration_ms=duration,
                ttft_ms=duration * rng.uniform(0.15, 0.4) if stream and not failed else None,
                stream=stream,
                request_model=model,
                response_model=model,
                provider=provider,
                status="error" if failed else "ok",
                error=error,
                usage={
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
                cost_usd=None if failed else (tokens_in * price_in + tokens_out * price_out) / 1e6,
                end_user=user,
                session_id=f"chat-{user}-{i // 25}",
                trace_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                tags=[rng.choice(TAGS)],
                metadata={"feature": rng.choice(["faq", "orders", "returns"])},
                request={
                    "messages": [
                        {"role": "system", "content": "You are the shop's helpful assistant."},
                        {"role": "user", "content": question},
                    ],
                    "parameters": {"temperature": 0.3},
                },
                response=None
                if failed
                else {
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Here is what I found."},
                        }
                    ]
                },
            )
        )
    return records


def post_records(client: Client, records: list[dict[str, Any]], batch: int = 500) -> None:
    """Send records through the real ingest endpoint, in batches, and check every one was accepted."""
    for i in range(0, len(records), batch):
        answer = client.post_json("/v1/events", {"records": records[i : i + batch]})
        assert answer.status == 200, answer
        assert answer.json()["accepted"] == len(records[i : i + batch]), answer


def sign_in(page: Any, base_url: str, key: str) -> None:
    """Sign in through the form, as a person would (the key is typed, never put in a URL)."""
    page.goto(f"{base_url}/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


def save_overview_screenshot(
    base_url: str, path: str | Path, api_key: str | None = None, browser: Any = None, range_name: str = "24h"
) -> Path:
    """A full-page PNG of the overview (last 24 hours, auto-refresh off) of the server at `base_url`,
    signed in with `api_key` (none for a `--no-auth` server). Used for the README's screenshot.

    `browser`: a Playwright browser already running (tests share one per session); by default a
    headless Chromium is started for the shot and closed after it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            own = launch(playwright)
            try:
                return save_overview_screenshot(base_url, path, api_key, own, range_name)
            finally:
                own.close()
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="light")
    try:
        page = context.new_page()
        if api_key:
            sign_in(page, base_url, api_key)
        page.goto(f"{base_url}/?range={range_name}&refresh=0")
        page.wait_for_selector("svg.chart-svg")
        page.screenshot(path=str(path), full_page=True)
    finally:
        context.close()
    return path


class Shots:
    """`shots(page, name)` saves a full-page screenshot as test-output/<test name>/<name>.png."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, page: Any, name: str) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


class Visit:
    """A browser context on one server that records every URL the pages ask for."""

    def __init__(self, browser: Any, server: ServerProcess, key: str | None) -> None:
        self.server = server
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        if key:
            sign_in(self.page, server.url, key)

    def go(self, path: str) -> Any:
        answer = self.page.goto(self.server.url + path)
        return answer

    def call_ids(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "table[data-testid=calls] tbody tr", "rows => rows.map(r => r.dataset.callId)"
        )
