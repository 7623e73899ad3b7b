"""Shared fixtures: the fake provider, a receiver standing in for the litelens server, and a callback
wired between them through real LiteLLM."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litelens.testing import FakeProvider, Receiver

REQUIRE_SERVICES = os.environ.get("LITELENS_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """In CI a test that needs a real service must run: its skip is turned into a failure."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and item.get_closest_marker("service") is not None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"service test skipped in CI (LITELENS_REQUIRE_SERVICES=1): {reason}"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def make_callback(receiver: Receiver, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: a litelens.Callback registered with LiteLLM, sending to `receiver`; removed afterwards."""
    import litellm

    from litelens.callback import Callback

    made: list[Callback] = []

    def make(**kwargs: Any) -> Callback:
        kwargs.setdefault("endpoint", receiver.url)
        kwargs.setdefault("spool_dir", str(tmp_path / "spool"))
        callback = Callback(**kwargs)
        litellm.callbacks.append(callback)
        made.append(callback)
        return callback

    yield make
    for callback in made:
        callback.shutdown(timeout=5)
        litellm.logging_callback_manager.remove_callback_from_all_lists(callback)
        if callback in litellm.callbacks:
            litellm.callbacks.remove(callback)
