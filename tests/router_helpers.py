"""A conversation of LiteLLM Router requests that share one caller-given `litellm_trace_id` (a
conversation's, a user session's): request "A" is answered by its retry, "B" by the fallback after its
retry failed too, "C" at once. Used by the core callback's and the OTel layer's tests, which check that
each retry and fallback names its own request's first attempt."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import time
from typing import Any

CONVERSATION = {"A": 1, "B": 2, "C": 0}
"""Each request's failing attempts before its answer."""


def conversation_router(base: str, key: str) -> Any:
    """A Router whose "main" deployment falls back to "backup", with one retry, both on `base`."""
    import litellm

    return litellm.Router(
        model_list=[
            {"model_name": n, "litellm_params": {"model": m, "api_base": base, "api_key": key}}
            for n, m in (("main", "openai/gpt-4o-mini"), ("backup", "openai/gpt-4o"))
        ],
        fallbacks=[{"main": ["backup"]}],
        num_retries=1,
        retry_after=0,
    )


def conversation_request(name: str, run: str) -> dict[str, Any]:
    """The arguments of one request of the conversation ("A2": request A, sent a second time); its
    first attempts fail as `CONVERSATION` says. Every attempt takes a while, so requests sent together
    overlap. Each request has a metadata dict of its own: LiteLLM's Router writes into the one it gets."""
    failures = CONVERSATION[name[0]]
    directive = f"[[fake latency_ms=150 error_times={failures} error=503 key={run}-{name}]]"
    return {
        "model": "main",
        "messages": [{"role": "user", "content": f"request {name} {directive}"}],
        "litellm_trace_id": "conversation-7",
        "metadata": {"request": name},
    }


def run_conversation(router: Any, how: str, parent: Any = None) -> int:
    """Send the conversation's requests one after another (twice: sync, then async) or together (tasks,
    threads), each in a context with the OTel span `parent` current (None: no span); returns how many
    times each request was sent."""
    run = f"{how}-{os.getpid()}-{time.monotonic_ns()}"
    requests = [conversation_request(f"{name}1", run) for name in CONVERSATION]
    token = None
    if parent is not None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        token = otel_context.attach(otel_trace.set_span_in_context(parent))
    try:
        if how == "in_a_row":
            for request in requests:
                router.completion(**request)
            for name in CONVERSATION:
                asyncio.run(router.acompletion(**conversation_request(f"{name}2", run)))
            return 2
        if how == "tasks":

            async def together() -> None:
                await asyncio.gather(*(router.acompletion(**request) for request in requests))

            asyncio.run(together())
            return 1
        with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, router.completion, **request)
                for request in requests
            ]
            for future in futures:
                future.result()
        return 1
    finally:
        if token is not None:
            otel_context.detach(token)
