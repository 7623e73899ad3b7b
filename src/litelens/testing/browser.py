"""Headless Chromium for the dashboard's tests and benchmarks, driven by Playwright.

Debian's Chromium (`apt-get install chromium`, at /usr/bin/chromium) rather than a browser build that
Playwright downloads: CI and developer machines cannot download one, and a distribution package is the
browser our users are likely to have anyway. The flags keep a headless run quiet and offline: without
the background-networking ones Chromium keeps trying to reach Google's update and sync services.

    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = launch(p)
"""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("LITELENS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def launch(playwright: Any) -> Any:
    """A headless Chromium `Browser` from a started `playwright.sync_api` (or async) instance."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
