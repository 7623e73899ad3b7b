"""Shared fixtures: a loopback receiver and transports that are always shut down after a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litelens.testing.receiver import Receiver
from litelens.transport import Transport, TransportConfig


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def make_transport(receiver: Receiver, tmp_path: Path) -> Iterator[Callable[..., Transport]]:
    """Build a Transport aimed at the receiver with fast retries; extra keyword arguments override."""
    made: list[Transport] = []

    def make(prepare: Callable[[dict], dict | None] | None = None, **overrides: Any) -> Transport:
        settings: dict[str, Any] = {
            "endpoint": receiver.url,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.2,
            "max_retries": 2,
            "timeout_s": 2.0,
        }
        settings.update(overrides)
        transport = Transport(TransportConfig(**settings), prepare)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.shutdown(2.0)
