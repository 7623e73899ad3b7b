"""Pytest fixtures for the fake provider, registered as the ``litelens`` pytest11 entry point.

Installing litelens makes ``fake_provider`` available to any test suite without a conftest, which is
the point: users test their own LiteLLM code against real HTTP without reaching a real provider.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litelens.testing.fake_provider import FakeProvider


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fresh provider per test, so request logs and ``error_times`` counters never leak between tests."""
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(scope="session")
def fake_provider_session() -> Iterator[FakeProvider]:
    """One provider for the whole session, for suites that make many calls; call ``reset()`` as needed."""
    with FakeProvider() as provider:
        yield provider
