"""Thousands of malformed, truncated, oversized and wrongly typed requests against the real collector
process: it answers every one with a 4xx or a success, never a 5xx, stays up, and the calls stored
before are untouched afterwards."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, Tracer

from litelens import semconv
from otlp_helpers import json_body, protobuf_body, sdk_spans
from server_helpers import Client, ServerProcess, make_record

BODY_LIMIT = 64 * 1024
# Hypothesis examples; each body example is sent six ways, each query example once.
BODY_EXAMPLES = 1300
QUERY_EXAMPLES = 2400

RECORD_KEYS = [
    "schema", "call_id", "start_time", "end_time", "duration_ms", "ttft_ms", "status", "call_type", "stream",
    "usage", "tags", "metadata", "error", "request", "response", "trace_id", "span_id", "session_id",
    "request_model", "provider", "cost_usd", "is_async",
]  # fmt: skip
QUERY_NAMES = [
    "start", "end", "model", "provider", "status", "error_type", "call_type", "end_user", "user_id",
    "session_id", "trace_id", "key_alias", "tag", "meta", "q", "sort", "order", "limit", "cursor",
    "format", "bucket", "group_by", "x",
]  # fmt: skip
ROUTES = [
    "/api/calls", "/api/export", "/api/stats", "/api/sessions", "/api/me", "/api/calls/{}",
    "/api/traces/{}", "/api/sessions/{}",
]  # fmt: skip


def _valid_bodies() -> list[bytes]:
    record = make_record("fuzz-template", tags=["a"], metadata={"k": "v"}, session_id="s")

    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("agent"):
            span = tracer.start_span(
                "chat gpt-4o-mini",
                kind=SpanKind.CLIENT,
                attributes=semconv.record_to_attributes(record, capture_content=False),
            )
            span.end()

    spans = sdk_spans(build)
    return [json.dumps({"records": [record, record]}).encode(), protobuf_body(spans), json_body(spans)]


VALID = _valid_bodies()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
records = st.builds(
    lambda base, over: {**base, **over},
    st.builds(make_record, st.text(min_size=1, max_size=12)),
    st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, max_size=4),
)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from(VALID))
    return body[: draw(st.integers(0, len(body)))]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    return bytes(body)


def _dump(document: Any) -> bytes:
    return json.dumps(document).encode()  # NaN and Infinity come out as invalid JSON tokens: fine


bodies = st.one_of(
    st.binary(max_size=600),
    truncated(),
    mutated(),
    st.lists(records, max_size=5).map(lambda r: _dump({"schema": "litelens.batch/1", "records": r})),
    st.lists(records, max_size=3).map(_dump),
    json_values.map(_dump),
    st.dictionaries(st.sampled_from(["resourceSpans", "records"]), json_values, max_size=2).map(_dump),
    st.sampled_from([b"x" * (BODY_LIMIT + 1), b"[" * 50_000, b"{" * 30_000, b""]),
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One collector for the module: the reconnect test after the fuzz run needs no fresh one."""
    folder = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(
        f"sqlite:///{folder}/litelens.db", folder, env={"LITELENS_MAX_BODY_BYTES": str(BODY_LIMIT)}
    )
    server.key = server.create_key("default")
    yield server.start()
    server.stop()


def test_fuzzed_requests_never_get_a_5xx_and_stored_calls_survive(fuzz_server: ServerProcess) -> None:
    client = fuzz_server.client()
    seeded = [make_record(f"seed-{uuid.uuid4()}", tags=["seed"], metadata={"n": i}) for i in range(20)]
    assert client.post_json("/v1/events", {"records": seeded}).json()["accepted"] == 20
    before = [client.get_json(f"/api/calls/{r['call_id']}") for r in seeded]
    statuses: dict[int, int] = {}

    def send(
        method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        answer = client.request(method, path, body, headers)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status < 500, (method, path, body[:200] if body else None, headers, answer)

    def fuzz(examples: int) -> settings:
        return settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )

    @fuzz(BODY_EXAMPLES)
    @given(body=bodies, content_type=st.sampled_from(["", "application/json; charset=utf-8", "text/x"]))
    def post_bodies(body: bytes, content_type: str) -> None:
        packed = gzip.compress(body, compresslevel=1)
        for path, kind in (
            ("/v1/events", "application/json"),
            ("/v1/traces", "application/json"),
            ("/v1/traces", "application/x-protobuf"),
        ):
            send("POST", path, body, {"Content-Type": content_type or kind})
            send("POST", path, packed, {"Content-Type": kind, "Content-Encoding": "gzip"})

    @fuzz(QUERY_EXAMPLES)
    @given(
        route=st.sampled_from(ROUTES),
        part=st.text(min_size=1, max_size=40),
        params=st.lists(
            st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(st.text(max_size=30), st.integers().map(str))),
            max_size=5,
        ),
    )
    def query(route: str, part: str, params: list[tuple[str, str]]) -> None:
        from urllib.parse import quote, urlencode

        path = route.format(quote(part, safe=""))
        send("GET", path + ("?" + urlencode(params) if params else ""))

    post_bodies()
    query()
    total = sum(statuses.values())
    assert total >= 10_000, statuses
    assert fuzz_server.alive(), fuzz_server.log()[-3000:]
    assert statuses.get(200, 0) > 100 and statuses.get(400, 0) > 100, statuses  # both sides were reached
    after = [client.get_json(f"/api/calls/{r['call_id']}") for r in seeded]
    assert after == before
    assert "Traceback" not in fuzz_server.log(), fuzz_server.log()[-3000:]


def test_client_helper_reconnects(fuzz_server: ServerProcess) -> None:
    """The fuzz client keeps one connection; a server-closed connection must not look like a 5xx."""
    client = Client(fuzz_server.url, fuzz_server.key)
    assert client.get("/api/me").status == 200
    client.close()
    assert client.get("/api/me").status == 200
