"""The demo's workload: what a small LLM application sends through LiteLLM in a few minutes.

Chat calls, streams and embeddings over several providers and models, tool-using agent runs grouped in
sessions (each run is one trace: an application span with its LLM calls and tool spans inside), users
and tags, and a few rate limits and server errors. Every call goes to the fake provider on loopback;
its behaviour (latency, answer length, errors) is asked for with `x-fake-*` headers, so the prompts
read like real ones in the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

# Provider/model names LiteLLM routes as OpenAI-compatible (so the fake provider can answer them) and
# prices from its bundled cost map.
CHAT_MODELS = {
    "openai/gpt-4o-mini": 5,
    "openai/gpt-4o": 2,
    "deepseek/deepseek-chat": 2,
    "mistral/mistral-small-latest": 2,
    "cerebras/llama3.1-8b": 2,
}
AGENT_MODEL = "openai/gpt-4o"
EMBEDDING_MODEL = "openai/text-embedding-3-small"
USERS = ["ana", "bo", "chen", "dara", "emeka"]
TAGS = ["checkout", "support", "search", "billing"]
QUESTIONS = [
    "Where is my order?",
    "Can I change the delivery address?",
    "Summarise the return policy in two sentences.",
    "Which plan includes priority support?",
    "Translate 'thank you for your patience' into French.",
    "Write a short apology for a late parcel.",
    "What does error code E42 on the scanner mean?",
    "Suggest three subject lines for the spring sale email.",
]
SYSTEM = "You are the assistant of a small online shop. Answer briefly and politely."
LOOKUP_ORDER = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Find an order and its delivery status by order number.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "order number, e.g. A-1042"}},
            "required": ["order_id"],
        },
    },
}
API_KEY = "sk-demo-not-a-real-key"  # the fake provider takes any key; litelens never records it


class Workload:
    """Makes exactly `calls` LiteLLM calls, reporting progress after each one.

    `tracer` is an OpenTelemetry tracer when the OTel layer is on: agent runs and tool executions then
    become application spans, and LiteLLM's calls nest inside them.
    """

    def __init__(
        self,
        litellm: Any,
        base_url: str,
        seed: int,
        tracer: Any = None,
        progress: Callable[[int], None] = lambda done: None,
    ) -> None:
        self.litellm = litellm
        self.base_url = base_url
        self.rng = random.Random(seed)
        self.tracer = tracer
        self.progress = progress
        self.made = 0
        self.runs = 0

    # ---- the mix

    def run(self, calls: int) -> None:
        async_share = calls // 10
        while self.made < calls - async_share:
            self.step(left=calls - async_share - self.made)
        asyncio.run(self.async_burst(calls - self.made))

    def step(self, left: int = 3) -> None:
        """One pick from the mix: an agent run (of at most `left` calls), a stream, an embedding, an
        error or a plain chat call."""
        roll = self.rng.random()
        if roll < 0.25 and left >= 2:
            self.agent_run(steps=min(left, self.rng.choice([2, 2, 3])))
        elif roll < 0.45:
            self.chat(stream=True)
        elif roll < 0.55:
            self.embedding()
        elif roll < 0.63:
            self.chat(error=self.rng.choice([429, 429, 500, 503, 401]))
        else:
            self.chat()

    def trickle(self, keep_going: Callable[[], bool], mean_interval_s: float = 2.0) -> None:
        """Live traffic: one pick from the mix every `mean_interval_s` on average, while `keep_going()`."""
        while keep_going():
            self.step()
            deadline = time.monotonic() + self.rng.uniform(0.5, 1.5) * mean_interval_s
            while keep_going() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _common(self, user: str, tags: list[str], session: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"tags": tags, "user_id": user, "app_version": "2.3.1"}
        if session:
            metadata["session_id"] = session
        return {
            "api_base": self.base_url,
            "api_key": API_KEY,
            "num_retries": 0,
            "max_retries": 0,
            "user": user,
            "metadata": metadata,
        }

    def _fake(self, **knobs: Any) -> dict[str, str]:
        return {f"x-fake-{k.replace('_', '-')}": str(v) for k, v in knobs.items()}

    def _done(self) -> None:
        self.made += 1
        self.progress(self.made)

    # ---- units of work

    def chat(self, stream: bool = False, error: int | None = None) -> None:
        user = self.rng.choice(USERS)
        model = self.rng.choices(list(CHAT_MODELS), weights=list(CHAT_MODELS.values()))[0]
        knobs: dict[str, Any] = {"tokens": self.rng.randint(8, 60)}
        if stream:
            knobs.update(ttft_ms=self.rng.randint(15, 90), interval_ms=self.rng.randint(0, 3))
        else:
            knobs["latency_ms"] = self.rng.randint(10, 120)
        if error:
            knobs = {"error": error, "latency_ms": self.rng.randint(5, 40)}
            if error == 429:
                knobs["retry_after"] = 2
        options: dict[str, Any] = {"temperature": round(self.rng.uniform(0, 1), 1), "max_tokens": 256}
        if stream:
            options.update(stream=True, stream_options={"include_usage": True})
        try:
            response = self.litellm.completion(
                model=model,
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": self.rng.choice(QUESTIONS)},
                ],
                extra_headers=self._fake(**knobs),
                **options,
                **self._common(user, [self.rng.choice(TAGS)]),
            )
            if stream:
                for _ in response:
                    pass
        except Exception:
            pass  # errors are part of the workload: litelens records them
        self._done()

    def embedding(self) -> None:
        user = self.rng.choice(USERS)
        with contextlib.suppress(Exception):
            self.litellm.embedding(
                model=EMBEDDING_MODEL,
                input=[self.rng.choice(QUESTIONS) for _ in range(self.rng.randint(1, 4))],
                extra_headers=self._fake(latency_ms=self.rng.randint(5, 30)),
                **self._common(user, ["search"]),
            )
        self._done()

    def agent_run(self, steps: int) -> None:
        """One session of a support agent: ask, call the order tool, answer (and maybe a follow-up)."""
        self.runs += 1
        budget_end = self.made + steps
        user = self.rng.choice(USERS)
        session = f"support-{user}-{self.runs:03d}"
        order = f"A-{self.rng.randint(1000, 9999)}"
        common = self._common(user, ["support", "agent"], session)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Hi, where is my order {order}?"},
        ]
        with self._span("agent.run", {"session.id": session, "enduser.id": user}):
            try:
                first = self._completion(
                    model=AGENT_MODEL,
                    messages=messages,
                    tools=[LOOKUP_ORDER],
                    extra_headers=self._fake(tools=1, latency_ms=self.rng.randint(30, 150)),
                    **common,
                )
                call = first.choices[0].message.tool_calls[0]
                with self._span("tool.lookup_order", {"order.id": order}):
                    time.sleep(self.rng.uniform(0.005, 0.03))  # the shop's order service
                    status = {"order_id": order, "status": "shipped", "eta_days": self.rng.randint(1, 4)}
                messages += [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {"name": "lookup_order", "arguments": call.function.arguments},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(status)},
                ]
                for step in range(1, steps):
                    answer = self._completion(
                        model=AGENT_MODEL,
                        messages=messages,
                        tools=[LOOKUP_ORDER],
                        stream=True,
                        stream_options={"include_usage": True},
                        extra_headers=self._fake(tools=0, tokens=self.rng.randint(15, 40), ttft_ms=40),
                        **common,
                    )
                    text = "".join(chunk.choices[0].delta.content or "" for chunk in answer if chunk.choices)
                    if step + 1 < steps:
                        messages += [
                            {"role": "assistant", "content": text},
                            {"role": "user", "content": "Thanks! Can I still change the address?"},
                        ]
            except Exception:
                # A failed step ends the run; the calls it did not make are made as plain chats.
                pass
        while self.made < budget_end:
            self.chat()

    def _completion(self, **arguments: Any) -> Any:
        """`litellm.completion`, counted as made whether it answers or raises."""
        try:
            return self.litellm.completion(**arguments)
        finally:
            self._done()

    async def async_burst(self, n: int) -> None:
        """The last tenth of the calls, concurrently through `acompletion`, as an async web app would."""

        async def one() -> None:
            user = self.rng.choice(USERS)
            with contextlib.suppress(Exception):
                await self.litellm.acompletion(
                    model="openai/gpt-4o-mini",
                    messages=[{"role": "user", "content": self.rng.choice(QUESTIONS)}],
                    extra_headers=self._fake(latency_ms=self.rng.randint(20, 80)),
                    **self._common(user, ["async"]),
                )
            self._done()

        await asyncio.gather(*(one() for _ in range(n)))
        await asyncio.sleep(0.2)  # LiteLLM logs async successes as tasks on this loop: let them run

    @contextlib.contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        with self.tracer.start_as_current_span(name, attributes=attributes):
            yield
