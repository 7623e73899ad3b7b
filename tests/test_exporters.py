"""litelens.otel.exporters against a real `litelens serve` and real files: spans from the OTel layer reach
the server over OTLP/HTTP with the project key (spooled while it is away), JSONL span files hold one span
per line, and planted personal data is gone from every exported span when a redactor is configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
litellm = pytest.importorskip("litellm")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter  # noqa: E402

from litelens.jsonl import read_records, rotated_files  # noqa: E402
from litelens.otel import JsonlSpanExporter, LiteLensSpanExporter, LiteLLMInstrumentor  # noqa: E402
from litelens.pipeline import redact  # noqa: E402
from litelens.testing import FakeProvider  # noqa: E402
from server_helpers import ServerProcess  # noqa: E402
from test_sinks import PLANTED, planted_calls  # noqa: E402

pytestmark = pytest.mark.litellm_compat


@pytest.fixture
def instrument() -> Iterator[Callable[..., TracerProvider]]:
    """Factory: instrument LiteLLM with the given exporters (batched); uninstrumented afterwards."""
    made: list[tuple[LiteLLMInstrumentor, TracerProvider]] = []

    def make(*exporters: SpanExporter, batch: bool = True, **kwargs: Any) -> TracerProvider:
        provider = TracerProvider()
        for exporter in exporters:
            provider.add_span_processor(
                BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            )
        instrumentor = LiteLLMInstrumentor()
        instrumentor.instrument(tracer_provider=provider, **kwargs)
        made.append((instrumentor, provider))
        return provider

    yield make
    for instrumentor, provider in made:
        instrumentor.uninstrument()
        provider.shutdown()


def call(fake: FakeProvider, text: str = "tell me a story", **extra: Any) -> Any:
    return litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        api_base=fake.url,
        api_key="sk-fake",
        **extra,
    )


def stored_calls(server: ServerProcess, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    client = server.client()
    deadline = time.monotonic() + timeout
    calls: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        calls = client.get_json("/api/calls?limit=100")["calls"]
        if len(calls) >= n:
            break
        time.sleep(0.2)
    return calls


def test_spans_reach_the_server_with_the_key(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any
) -> None:
    exporter = LiteLensSpanExporter(project_server.url, project_server.key, spool_dir=str(tmp_path / "spool"))
    tracer_provider = instrument(exporter)
    for i in range(5):
        call(provider, f"call number {i} [[fake tokens=4]]")
    with pytest.raises(litellm.RateLimitError):
        call(provider, "hi [[fake error=429]]", max_retries=0)
    assert tracer_provider.force_flush(10_000)
    calls = stored_calls(project_server, 6)
    assert len(calls) == 6
    assert sorted(c["status"] for c in calls) == ["error"] + ["ok"] * 5
    ok = [c for c in calls if c["status"] == "ok"]
    assert all(c["output_tokens"] == 4 and c["request_model"] == "gpt-4o-mini" for c in ok)
    assert next(c for c in calls if c["status"] == "error")["error_type"] == "RateLimitError"
    # The batch processor's force_flush only hands spans to the exporter; the exporter's own waits for
    # the server's answers, which is when the counters move.
    assert exporter.force_flush(10_000)
    stats = exporter.stats()
    assert stats["sent"] == 6 and stats["spooled"] == 0 and stats["dropped"] == 0
    # The trace view has the span itself too.
    trace = project_server.client().get_json(f"/api/traces/{calls[0]['trace_id']}")
    assert "chat gpt-4o-mini" in json.dumps(trace)


def test_an_otlp_style_endpoint_with_its_path_reaches_the_server(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any
) -> None:
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is written with /v1/traces; pasted here, it once posted to
    # /v1/traces/v1/traces and every span went to the spool.
    exporter = LiteLensSpanExporter(
        project_server.url + "/v1/traces", project_server.key, spool_dir=str(tmp_path / "spool")
    )
    tracer_provider = instrument(exporter)
    call(provider, "hello [[fake tokens=3]]")
    assert tracer_provider.force_flush(10_000) and exporter.force_flush(10_000)
    assert exporter.stats()["sent"] == 1 and exporter.stats()["spooled"] == 0
    (stored,) = stored_calls(project_server, 1)
    assert stored["output_tokens"] == 3


def test_a_responses_call_reaches_the_server_as_a_whole_call(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any
) -> None:
    """Its span carries the content in the conventions' messages; the server makes the Responses call of
    them again: instructions, input and answer, as the dashboard shows and replays the call."""
    exporter = LiteLensSpanExporter(project_server.url, project_server.key, spool_dir=str(tmp_path / "spool"))
    tracer_provider = instrument(exporter, capture_content=True)
    answer = litellm.responses(
        model="openai/gpt-4o-mini",
        input="tell me a story",
        instructions="Answer in French.",
        api_base=provider.url,
        api_key="sk-fake",
    )
    assert tracer_provider.force_flush(10_000)
    (stored,) = stored_calls(project_server, 1)
    call = project_server.client().get_json(f"/api/calls/{stored['call_id']}")
    assert call["call_type"] == "responses" and call["finish_reasons"] == ["completed"]
    assert call["request"]["input"] == "tell me a story"
    assert call["request"]["instructions"] == "Answer in French."
    assert "messages" not in call["request"]
    (message,) = call["response"]["output"]
    assert message["content"] == [{"type": "output_text", "text": answer.output[0].content[0].text}]
    assert call["response"]["id"] == answer.id and call["response"]["status"] == "completed"


def test_spans_wait_in_the_spool_while_the_server_is_away(
    provider: FakeProvider,
    tmp_path: Path,
    server_factory: Callable[..., ServerProcess],
    sqlite_url: str,
    instrument: Any,
) -> None:
    away = ServerProcess(sqlite_url, tmp_path)
    key = away.create_key("default")
    exporter = LiteLensSpanExporter(f"http://127.0.0.1:{away.port}", key, spool_dir=str(tmp_path / "spool"))
    exporter.transport.config.max_retries = 1
    exporter.transport.config.backoff_max_s = 0.5
    tracer_provider = instrument(exporter)
    for i in range(3):
        call(provider, f"while away {i}")
    assert tracer_provider.force_flush(10_000)
    deadline = time.monotonic() + 20
    while exporter.stats()["spooled"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exporter.stats()["spooled"] == 3 and exporter.stats()["sent"] == 0
    assert list((tmp_path / "spool").glob("*/*.batch"))
    server = server_factory(sqlite_url, port=away.port, key=False)
    server.key = key
    assert len(stored_calls(server, 3, timeout=40)) == 3
    assert not list((tmp_path / "spool").glob("*/*.batch"))


def test_a_wrong_key_keeps_spans_in_the_spool(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any, caplog: Any
) -> None:
    exporter = LiteLensSpanExporter(project_server.url, "ll_wrong", spool_dir=str(tmp_path / "spool"))
    tracer_provider = instrument(exporter)
    call(provider)
    assert tracer_provider.force_flush(10_000)
    deadline = time.monotonic() + 10
    while exporter.stats()["spooled"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert exporter.stats()["spooled"] == 1
    assert any("refused the API key (401)" in m for m in caplog.messages)


def test_jsonl_span_exporter_writes_one_span_per_line_and_rotates(
    provider: FakeProvider, tmp_path: Path, instrument: Any
) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonlSpanExporter(path, max_bytes=4_000)
    tracer_provider = instrument(exporter, capture_content=False)
    for i in range(12):
        call(provider, f"span {i}")
    assert tracer_provider.force_flush(10_000)
    spans = list(read_records(path))
    assert len(spans) == 12 and rotated_files(path)
    assert {s["name"] for s in spans} == {"chat gpt-4o-mini"}
    assert all(s["attributes"]["gen_ai.usage.output_tokens"] == 8 for s in spans)
    assert len({s["context"]["span_id"] for s in spans}) == 12


def test_jsonl_span_exporter_keeps_only_the_newest_rotations(
    provider: FakeProvider, tmp_path: Path, instrument: Any
) -> None:
    """The span exporter shares the sink's writer: `keep_files` bounds its folder the same way."""
    path = tmp_path / "spans.jsonl"
    exporter = JsonlSpanExporter(path, max_bytes=2_000, keep_files=2)
    tracer_provider = instrument(exporter, capture_content=False)
    for i in range(12):
        call(provider, f"span {i}")
    assert tracer_provider.force_flush(10_000)
    tracer_provider.shutdown()
    stats = exporter.stats()
    assert stats["written"] == 12 and stats["rotations"] > 3
    assert len(rotated_files(path)) == 2 and stats["deleted"] == stats["rotations"] - 2
    assert sorted(os.listdir(tmp_path)) == sorted([f.name for f in rotated_files(path)] + [path.name])
    spans = list(read_records(path))
    assert 0 < len(spans) < 12 and len({s["context"]["span_id"] for s in spans}) == len(spans)


_SPLIT_EXPORT_CHILD = """
import json, resource, signal, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from litelens.otel import JsonlSpanExporter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("t")
for i in range(6):  # the fourth is too big for the disk on its own
    with tracer.start_as_current_span(f"s{i}") as span:
        span.set_attribute("text", "x" * (6000 if i == 3 else 100))
exporter = JsonlSpanExporter(sys.argv[1], max_bytes=2000, gzip=False)
resource.setrlimit(resource.RLIMIT_FSIZE, (5000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
result = exporter.export(memory.get_finished_spans())
print(json.dumps({"result": result.name, **exporter.stats()}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_span_batch_that_fails_after_a_rotation_counts_each_span_once(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _SPLIT_EXPORT_CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    # s0..s2 fill the file, which is rotated; s3 is refused by the disk, and s4 and s5 were to follow it
    # in the same write. The spans in the files were written; the others failed.
    names = [s["name"] for s in read_records(path)]
    assert names == ["s0", "s1", "s2"]
    assert stats["result"] == "FAILURE" and stats["written"] == 3 and stats["failed"] == 3, stats


def test_a_span_with_a_bytes_attribute_loses_no_span_of_its_batch(tmp_path: Path) -> None:
    """The SDK takes bytes as attribute values (a Kafka message key) that its JSON form cannot write: the
    span is written with them in base64, and the other spans of its batch are written too."""
    exporter = JsonlSpanExporter(tmp_path / "spans.jsonl")
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("app")
    for i in range(5):
        with tracer.start_as_current_span(f"work {i}") as span:
            if i == 2:
                span.set_attribute("messaging.kafka.message.key", b"order-17")
                span.add_event("sent", {"payload": [b"a", b"b"]})
    assert tracer_provider.force_flush(10_000)
    tracer_provider.shutdown()
    spans = list(read_records(tmp_path / "spans.jsonl"))
    assert [s["name"] for s in spans] == [f"work {i}" for i in range(5)]
    assert spans[2]["attributes"]["messaging.kafka.message.key"] == "b3JkZXItMTc="
    assert spans[2]["events"][0]["attributes"]["payload"] == ["YQ==", "Yg=="]
    assert exporter.stats()["failed"] == 0


def test_planted_data_is_gone_from_every_exported_span(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any
) -> None:
    server_exporter = LiteLensSpanExporter(
        project_server.url, project_server.key, spool_dir=str(tmp_path / "spool")
    )
    file_exporter = JsonlSpanExporter(tmp_path / "spans.jsonl")
    tracer_provider = instrument(server_exporter, file_exporter, capture_content=True, processors=[redact()])
    planted_calls(provider)
    assert tracer_provider.force_flush(10_000)

    spans = list(read_records(tmp_path / "spans.jsonl"))
    assert len(spans) == 2
    text = json.dumps(spans)
    leftover = [value for value in PLANTED if value in text]
    assert leftover == []
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[IP]", "[SECRET]"):
        assert placeholder in text, placeholder
    ok = next(s for s in spans if s["status"]["status_code"] == "UNSET")
    err = next(s for s in spans if s["status"]["status_code"] == "ERROR")
    assert ok["attributes"]["gen_ai.usage.output_tokens"] == 8 and ok["attributes"]["litellm.cost.total"] > 0
    assert "[EMAIL]" in ok["attributes"]["gen_ai.input.messages"]
    assert err["attributes"]["error.type"] == "NotFoundError"
    (event,) = [e for e in err["events"] if e["name"] == "exception"]
    assert "[EMAIL]" in event["attributes"]["exception.message"]
    assert "[CARD]" in err["status"]["description"]

    calls = stored_calls(project_server, 2)
    assert len(calls) == 2
    client = project_server.client()
    stored = [client.get_json(f"/api/calls/{c['call_id']}") for c in calls]
    stored += [client.get_json(f"/api/traces/{c['trace_id']}") for c in calls]
    text = json.dumps(stored)
    assert [value for value in PLANTED if value in text] == []
    assert "[EMAIL]" in text and "[CARD]" in text
    ok_record = next(r for r in stored[:2] if r["status"] == "ok")
    assert ok_record["usage"]["output_tokens"] == 8 and ok_record["request_model"] == "gpt-4o-mini"


def test_docs_examples_run(
    project_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/otel.md's code, with the server and the stock exporter's backend both a real `litelens serve`."""
    import re

    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("LITELENS_ENDPOINT", project_server.url)
    monkeypatch.setenv("LITELENS_API_KEY", project_server.key)
    monkeypatch.setenv("LITELENS_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{project_server.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"authorization=Bearer%20{project_server.key}")
    text = (Path(__file__).resolve().parents[1] / "docs" / "otel.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        exec(compile(block, "docs/otel.md", "exec"), {"__name__": "docs_otel"})
    calls = stored_calls(project_server, 2)
    assert len(calls) == 2  # one through LiteLensSpanExporter, one through the stock OTLP exporter
    client = project_server.client()
    stored = json.dumps([client.get_json(f"/api/calls/{c['call_id']}") for c in calls])
    assert "[EMAIL]" in stored and "[PHONE]" in stored
    assert "ann@example.com" not in stored and "415 555 2671" not in stored


def test_a_failing_redactor_leaks_nothing_onto_the_span(
    provider: FakeProvider, tmp_path: Path, instrument: Any
) -> None:
    def broken(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("redactor bug")

    file_exporter = JsonlSpanExporter(tmp_path / "spans.jsonl")
    tracer_provider = instrument(file_exporter, capture_content=True, processors=[broken])
    planted_calls(provider)
    assert tracer_provider.force_flush(10_000)
    spans = list(read_records(tmp_path / "spans.jsonl"))
    assert len(spans) == 2
    text = json.dumps(spans)
    assert [value for value in PLANTED if value in text] == []
    err = next(s for s in spans if s["status"]["status_code"] == "ERROR")
    assert err["attributes"]["error.type"] == "NotFoundError"  # the numbers and types stay
    ok = next(s for s in spans if s["status"]["status_code"] == "UNSET")
    assert ok["attributes"]["gen_ai.usage.output_tokens"] == 8


def test_spool_off_is_no_spool_not_a_folder_named_off() -> None:
    for off in ("off", None):
        exporter = LiteLensSpanExporter("http://127.0.0.1:9", "ll_key", spool_dir=off)
        assert exporter.transport.config.spool_dir is None
        exporter.shutdown()


def test_spans_the_server_refused_count_as_failed_not_sent_and_are_logged_once(
    project_server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server answers OTLP's partial success: a span it refused (here, one dated 1970) is not
    delivered, and its sender says so, as the core sender does for a rejected record."""
    exporter = LiteLensSpanExporter(project_server.url, project_server.key, spool_dir=str(tmp_path / "spool"))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    with caplog.at_level("WARNING", logger="litelens.transport"):
        tracer.start_span("fine").end()
        tracer.start_span("dated 1970", start_time=1_000_000_000).end(end_time=2_000_000_000)
        assert exporter.force_flush(10_000)
    stats = exporter.stats()
    assert (stats["sent"], stats["failed"]) == (1, 1)
    messages = [r.getMessage() for r in caplog.records if r.name == "litelens.transport"]
    assert len(messages) == 1 and "start_time must be" in messages[0], messages
    exporter.shutdown()


def test_a_router_requests_attempts_made_outside_any_span_are_listed_on_the_answers_page(
    provider: FakeProvider, project_server: ServerProcess, tmp_path: Path, instrument: Any
) -> None:
    """With the OTel layer alone and no span of the caller's, each attempt of a Router request rooted a
    trace of its own, and the server, which looks for a request's attempts in its trace, listed none on
    the page of the call that answered: the failures before it were nowhere to be found from it."""
    exporter = LiteLensSpanExporter(project_server.url, project_server.key, spool_dir=str(tmp_path / "spool"))
    tracer_provider = instrument(exporter)
    failing = {
        "model": "openai/gpt-4o-mini",
        "api_base": provider.url,
        "api_key": "sk-fake",
        "extra_headers": {"x-fake-error": "503"},
    }
    backup = {"model": "openai/gpt-4o", "api_base": provider.url, "api_key": "sk-fake"}
    router = litellm.Router(
        model_list=[
            {"model_name": "main", "litellm_params": failing},
            {"model_name": "backup", "litellm_params": backup},
        ],
        fallbacks=[{"main": ["backup"]}],
        num_retries=1,
        retry_after=0,
    )
    response = router.completion(model="main", messages=[{"role": "user", "content": "hi"}])
    answered = response._hidden_params["litellm_call_id"]
    assert tracer_provider.force_flush(10_000) and exporter.force_flush(10_000)
    assert len(stored_calls(project_server, 3)) == 3
    attempts = project_server.client().get_json(f"/api/calls/{answered}")["attempts"]
    assert [a["status"] for a in attempts] == ["error", "error", "ok"]
    assert attempts[-1]["call_id"] == answered
    retry = project_server.client().get_json(f"/api/calls/{attempts[1]['call_id']}")
    assert retry["error"]["retries"] == 1
