"""Test helpers that run on loopback: a fake OpenAI-compatible provider and an event receiver.

Both use only the standard library, so they work in any environment that has litelens, and they are
what litelens' own tests, benchmarks and demo run against.

    from litelens.testing import FakeProvider, Receiver

    with FakeProvider() as provider, Receiver() as receiver:
        litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="sk-fake", ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litelens.testing.fake_provider import FakeProvider
    from litelens.testing.receiver import Receiver

__all__ = ["FakeProvider", "Receiver"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import litelens.testing.receiver` does not start the provider's module.
    if name == "FakeProvider":
        from litelens.testing.fake_provider import FakeProvider

        return FakeProvider
    if name == "Receiver":
        from litelens.testing.receiver import Receiver

        return Receiver
    raise AttributeError(name)
