"""Ingest throughput, "sent to queryable": records/s from the first POST until the last record is visible
through the query API, per endpoint (/v1/events, /v1/traces) and database (SQLite, PostgreSQL).

What runs where: `litelens serve` in its own process (`--no-auth`, loopback, a temp SQLite file, or a
throwaway PostgreSQL cluster from `litelens.testing.postgres` when the binaries are installed); senders
in other processes (`--senders`, each with `--connections` keep-alive connections) POST pre-built
bodies, so building and gzipping the payload is not counted. Records come from
`litelens.record.from_standard_logging` on LiteLLM-shaped payloads (~2.5 KB each, varied ids, models,
tags, users, sessions and times) and are cut into batches as the core transport cuts them (its record
and byte limits, gzip level 1); spans carry the same records as GenAI attributes
(`litelens.semconv.record_to_attributes`), encoded by the OTLP exporter's encoder, the same number per
request.

Each row prints records/s, the server's CPU time per record (user + system, from /proc: steadier than
the wall clock on a shared machine) and the senders' CPU as a share of one core (so a saturated sender
would show). Baselines measured in the same run, so the ratios say where the time goes:

  - `store.write()` called in-process on the same records (no HTTP, no parsing): the store's own ceiling;
    and, with a baseline ref, this tree's and the baseline's `store.write()` each in a fresh process,
    alternately (`--store-rounds`), so a change to the write path is measured against the code before it;
  - the group-commit writer thread's CPU per record (`measure_writer`: `write_prepared` of prepared
    batches, 4 at a time, on the thread clock), this tree's and the baseline's alternately
    (`--writer-rounds`): the one thread every ingest request waits for;
  - the server of another git ref (`--baseline-ref`, default `main`), exported with `git archive`;
  - the same server with `store.write` replaced by a no-op: what HTTP + decompression + JSON/protobuf
    parsing + validation cost without storage;
  - with `--floors` (SQLite, /v1/events): a store that writes each record durably under its primary key
    and nothing else (no indexes, tags, sessions or rollups; acknowledged, not queryable), the least a
    store that answers only after its commit can do; and the real store without its rollups;
  - Arize Phoenix's OTLP ingest of the same spans (its own venv under `.bench-envs/phoenix`), measured
    until its GraphQL API counts them all; skipped, with the reason printed, when it cannot be installed
    or started.

    python bench/ingest.py                      # 30,000 records per cell
    python bench/ingest.py --records 100000 --no-phoenix --baseline-ref ''
    python bench/ingest.py --only store --no-postgres --records 10000 --store-rounds 3
    python bench/ingest.py --only store --no-postgres --store-rounds 0 --writer-rounds 3
    python bench/ingest.py --only http --no-postgres --no-traces --no-phoenix --baseline-ref '' --floors
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import itertools
import json
import os
import pickle
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from litelens import semconv
from litelens.record import encode, from_standard_logging, scrub
from litelens.transport import TransportConfig

ROOT = Path(__file__).resolve().parent.parent
PHOENIX_ENV = ROOT / ".bench-envs" / "phoenix"

MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("claude-3-5-sonnet", "anthropic"),
    ("mistral-large", "mistral"),
    ("llama-3-70b", "groq"),
]
TAGS = ["prod", "staging", "batch", "chat", "rag", "eval", "beta"]
WORDS = [
    "the",
    "invoice",
    "total",
    "shipping",
    "order",
    "customer",
    "refund",
    "weather",
    "city",
    "paris",
    "summary",
    "please",
    "explain",
    "policy",
    "account",
    "password",
    "reset",
    "model",
    "answer",
    "question",
    "context",
    "document",
    "retrieval",
    "chunk",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_records(n: int, t0: float, rng: random.Random) -> list[dict[str, Any]]:
    """`n` call records as the core layer builds them, one per ~2 ms of simulated traffic from `t0`."""
    out = []
    for i in range(n):
        model, provider = rng.choice(MODELS)
        start = t0 + i * 0.002 + rng.random() * 0.001
        duration = rng.lognormvariate(6.3, 0.8) / 1000
        stream = rng.random() < 0.4
        failed = rng.random() < 0.03
        tokens_in, tokens_out = rng.randrange(20, 3000), rng.randrange(1, 800)
        call_id = str(uuid.UUID(int=rng.getrandbits(128)))
        slo = {
            "litellm_call_id": call_id,
            "id": f"chatcmpl-{rng.getrandbits(48):x}",
            "call_type": "acompletion",
            "stream": stream,
            "status": "failure" if failed else "success",
            "custom_llm_provider": provider,
            "model": model,
            "model_group": model,
            "api_base": f"https://api.{provider}.example/v1",
            "startTime": start,
            "endTime": start + duration,
            "completionStartTime": start + duration * 0.2 if stream else None,
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "response_cost": (tokens_in * 0.15 + tokens_out * 0.6) / 1e6,
            "request_tags": rng.sample(TAGS, rng.randrange(0, 3)),
            "messages": [
                {"role": "system", "content": "You are a helpful assistant. " + _text(rng, 25)},
                {"role": "user", "content": _text(rng, rng.randrange(40, 80))},
            ],
            "model_parameters": {"temperature": 0.2, "max_tokens": 512, "user": f"user-{rng.randrange(500)}"},
            "response": {
                "id": "chatcmpl-x",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": _text(rng, rng.randrange(25, 60))},
                    }
                ],
            },
            "metadata": {"user_api_key_alias": f"team-{rng.randrange(8)}", "user_api_key_hash": "abc"},
        }
        record = from_standard_logging(
            slo,
            user_metadata={
                "feature": rng.choice(["faq", "search", "summarize"]),
                "tenant": f"t{rng.randrange(40)}",
            },
            session_id=f"sess-{rng.randrange(5000)}" if rng.random() < 0.3 else None,
            exception_type="RateLimitError" if failed else None,
            error_status=429 if failed else None,
            service="bench-app",
            environment="prod",
        )
        out.append(scrub(record))
    return out


def transport_batches(records: list[dict[str, Any]], max_records: int | None = None) -> list[list[bytes]]:
    """The records encoded and cut into batches as the core transport cuts them (its default count and
    uncompressed-byte limits), so the server sees the batch sizes it sees in production."""
    config = TransportConfig()
    most = max_records or config.batch_max_records
    batches: list[list[bytes]] = [[]]
    size = 0
    for record in records:
        encoded = encode(record)[0].encode()
        if batches[-1] and (len(batches[-1]) >= most or size + len(encoded) + 1 > config.batch_max_bytes):
            batches.append([])
            size = 0
        batches[-1].append(encoded)
        size += len(encoded) + 1
    return batches


def events_bodies(batches: list[list[bytes]]) -> list[bytes]:
    """`litelens.batch/1` bodies, gzipped at the transport's level."""
    level = TransportConfig().gzip_level
    head, tail = b'{"schema":"litelens.batch/1","records":[', b"]}"
    return [gzip.compress(head + b",".join(parts) + tail, compresslevel=level) for parts in batches]


def otlp_bodies(records: list[dict[str, Any]], sizes: list[int]) -> list[bytes]:
    """OTLP/protobuf export requests of `sizes` spans each, made by the SDK and the exporter's encoder."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(semconv.resource_attributes(records[0])))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("litelens.bench", "1")
    for record in records:
        span = tracer.start_span(
            semconv.span_name(record),
            kind=SpanKind.CLIENT,
            start_time=int(record["start_time"] * 1e9),
            attributes={k: v for k, v in semconv.record_to_attributes(record, True).items() if v is not None},
        )
        span.end(end_time=int(record["end_time"] * 1e9))
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    bodies, at = [], 0
    for size in sizes:
        bodies.append(encode_spans(spans[at : at + size]).SerializeToString())
        at += size
    return bodies


def last_call_id_of_span_bodies(bodies: list[bytes]) -> str:
    from litelens.server import ingest, otlp

    spans, _, _ = otlp.decode_traces_partial(bodies[-1], "application/x-protobuf")
    batch = ingest.from_spans(spans)
    return str(batch.records[-1]["call_id"])


# --------------------------------------------------------------------------------------------------
# Sender (its own process)


def send(url: str, path: str, headers: dict[str, str], bodies: list[bytes], concurrency: int) -> float:
    """POST every body over `concurrency` keep-alive connections; returns the wall-clock start."""
    parts = urllib.parse.urlsplit(url)
    todo = list(enumerate(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
        while True:
            with lock:
                if not todo or errors:
                    return
                _, body = todo.pop(0)
            for attempt in range(50):
                conn.request("POST", path, body=body, headers={**headers, "content-length": str(len(body))})
                response = conn.getresponse()
                answer = response.read()
                if response.status in (429, 503) and attempt < 49:
                    time.sleep(0.2)
                    continue
                if response.status >= 300:
                    errors.append(f"{response.status} {answer[:300]!r}")
                break

    began = time.time()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"sender: {errors[0]}")
    return began


def sender_main(spec_path: str) -> int:
    with open(spec_path, "rb") as f:
        spec = pickle.load(f)
    began = send(spec["url"], spec["path"], spec["headers"], spec["bodies"], spec["concurrency"])
    print(json.dumps({"began": began, "ended": time.time()}), flush=True)
    return 0


class Senders:
    """Where the sending went: wall-clock start, and the CPU seconds the sender processes used."""

    began: float = 0.0
    cpu_s: float = 0.0


def run_senders(
    url: str, path: str, headers: dict[str, str], bodies: list[bytes], processes: int, connections: int
) -> Senders:
    """Send the bodies from `processes` processes of `connections` keep-alive connections each (bodies
    dealt round-robin), all at once; returns when every one is answered."""
    specs = []
    for n in range(processes):
        with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
            pickle.dump(
                {"url": url, "path": path, "headers": headers, "bodies": bodies[n::processes],
                 "concurrency": connections},
                f,
            )  # fmt: skip
            specs.append(f.name)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        running = [
            subprocess.Popen(
                [sys.executable, __file__, "--_send", spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for spec in specs
        ]
        outputs = [p.communicate() for p in running]
    finally:
        for spec in specs:
            os.unlink(spec)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p, (_, err) in zip(running, outputs, strict=True):
        if p.returncode:
            raise RuntimeError(err.decode(errors="replace")[-2000:])
    out = Senders()
    out.began = min(float(json.loads(o.decode().strip().splitlines()[-1])["began"]) for o, _ in outputs)
    out.cpu_s = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return out


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


# The baselines with less storage: the real app and settings, and (argv[3]) `noop`: storage replaced by
# nothing; `floor` (SQLite): each record written durably under its primary key and nothing else, the least
# any store that acknowledges only what it committed must do; `norollups`: the real store without its
# rollup rows (neither their preparation nor their writes).
BASELINE_SERVER = r"""
import gc, json, sqlite3, sys, uvicorn
from litelens.server.app import create_app
from litelens.server.config import GC_THRESHOLDS, ServerSettings
gc.set_threshold(*GC_THRESHOLDS)  # as `litelens serve` does
from litelens.server.store import open_store
store = open_store(sys.argv[2])
mode = sys.argv[3]
if mode == "noop":
    store.write = store.write_many = store.write_prepared = lambda *args, **kwargs: None
    store.prepare_write = lambda batch: batch
elif mode == "floor":
    conn = sqlite3.connect(sys.argv[2].removeprefix("sqlite:///") + ".floor", isolation_level=None,
                           check_same_thread=False)
    for pragma in ("page_size = 8192", "journal_mode = WAL", "synchronous = FULL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE calls (project_id INTEGER, call_id TEXT, record TEXT, PRIMARY KEY (project_id, call_id))")

    def prepare(batch):
        texts = batch.texts or [None] * len(batch.records)
        return [(batch.project_id, r["call_id"], t or json.dumps(r)) for r, t in zip(batch.records, texts)]

    def write_prepared(prepared):
        conn.execute("BEGIN IMMEDIATE")
        for rows in prepared:
            for i in range(0, len(rows), 300):
                part = rows[i : i + 300]
                conn.execute("INSERT OR REPLACE INTO calls VALUES " + ", ".join(["(?, ?, ?)"] * len(part)),
                             [value for row in part for value in row])
        conn.execute("COMMIT")

    store.prepare_write, store.write_prepared = prepare, write_prepared
elif mode == "norollups":
    import litelens.server.store.write as write
    write.add_contribution = lambda *args, **kwargs: None
    write.BatchWriter._apply_rollups = lambda self, cur, project_id, deltas: {}
settings = ServerSettings.from_env(host="127.0.0.1", port=int(sys.argv[1]), db_url=sys.argv[2], no_auth=True)
uvicorn.run(create_app(settings, store=store), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


@contextlib.contextmanager
def litelens_server(
    db_url: str, baseline: str | None = None, source: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """`litelens serve` (or a baseline of `BASELINE_SERVER`) on a free port; `source`: a `src` directory to
    run the server from instead of the installed litelens (the main-branch baseline)."""
    port = free_port()
    if baseline:
        argv = [sys.executable, "-c", BASELINE_SERVER, str(port), db_url, baseline]
    else:
        argv = [sys.executable, "-c", "import sys; from litelens.cli import main; sys.exit(main())", "serve", "--no-auth", "--port", str(port), "--db", db_url,
                "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": source} if source else None
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", 60, process)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def git_source(ref: str) -> Iterator[str | None]:
    """The `src` directory of `ref` of this repository, exported to a temporary directory (None, with
    the reason printed, when git or the ref is not there)."""
    tmp = tempfile.mkdtemp(prefix="litelens-baseline-")
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True, timeout=60
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, timeout=60)
        yield str(Path(tmp) / "src")
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"  baseline {ref}: skipped ({str(exc)[:200]})", file=sys.stderr)
        yield None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def call_visible(url: str, call_id: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/calls/{call_id}", timeout=30) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


class Figure:
    """One measured cell: records/s sent to queryable, server CPU per record, sender CPU share."""

    def __init__(self, n: int, seconds: float, server_cpu_s: float, sender_cpu_s: float) -> None:
        self.rate = n / seconds
        self.server_us = server_cpu_s / n * 1e6
        self.sender_share = sender_cpu_s / seconds

    def __str__(self) -> str:
        cpu = f"{self.server_us:6.0f} µs" if self.server_us else "      -  "
        return f"{self.rate:9,.0f}   {cpu}   {self.sender_share:5.0%}"


def measure_litelens(
    url: str,
    process: subprocess.Popen[Any],
    path: str,
    bodies: list[bytes],
    n: int,
    last_call_id: str | None,
    senders: tuple[int, int],
) -> Figure:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    if path == "/v1/traces":
        headers = {"content-type": "application/x-protobuf"}
    cpu0 = process_cpu_s(process.pid)
    sent = run_senders(url, path, headers, bodies, *senders)
    if last_call_id is not None:
        deadline = time.monotonic() + 120
        while not call_visible(url, last_call_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{last_call_id} never became visible")
            time.sleep(0.01)
    return Figure(n, time.time() - sent.began, process_cpu_s(process.pid) - cpu0, sent.cpu_s)


# --------------------------------------------------------------------------------------------------
# Arize Phoenix


def phoenix_python(install_timeout: float) -> Path:
    python = PHOENIX_ENV / "bin" / "python"
    probe = [str(python), "-c", "import phoenix.server.main"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    print(f"  installing arize-phoenix into {PHOENIX_ENV} (once) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PHOENIX_ENV)], check=True, timeout=120)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "arize-phoenix"],
        check=True,
        timeout=install_timeout,
        capture_output=True,
    )
    subprocess.run(probe, check=True, capture_output=True, timeout=120)
    return python


@contextlib.contextmanager
def phoenix_server(python: Path, start_timeout: float) -> Iterator[str]:
    work = tempfile.mkdtemp(prefix="litelens-phoenix-")
    port, grpc = free_port(), free_port()
    env = {
        **os.environ,
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_WORKING_DIR": work,
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = open(Path(work) / "phoenix.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(python), "-m", "phoenix.server.main", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(url + "/healthz", start_timeout, process)
        except Exception as exc:
            tail = (Path(work) / "phoenix.log").read_bytes()[-800:].decode(errors="replace")
            raise RuntimeError(f"{exc}; log tail: {tail}") from None
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def phoenix_span_count(url: str) -> int:
    query = json.dumps({"query": "{ projects { edges { node { name recordCount } } } }"}).encode()
    request = urllib.request.Request(
        url + "/graphql", data=query, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.loads(response.read())
    if data.get("errors"):
        raise RuntimeError(f"phoenix graphql: {data['errors'][0].get('message')}")
    return sum(int(e["node"]["recordCount"]) for e in data["data"]["projects"]["edges"])


def measure_phoenix(url: str, bodies: list[bytes], n: int, senders: tuple[int, int]) -> Figure:
    sent = run_senders(url, "/v1/traces", {"content-type": "application/x-protobuf"}, bodies, *senders)
    # Phoenix answers the POSTs at once and ingests from a queue: the figure is until its API counts all.
    print(f"  phoenix accepted {n:,} spans in {time.time() - sent.began:.2f} s", file=sys.stderr)
    deadline = time.monotonic() + 600
    while phoenix_span_count(url) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("phoenix did not show every span within 10 minutes")
        time.sleep(0.05)
    return Figure(n, time.time() - sent.began, 0.0, sent.cpu_s)


# --------------------------------------------------------------------------------------------------
# Store level, in-process


def _backend_cpu(store: Any) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving the store's database (0 elsewhere)."""
    if not hasattr(store, "_read") or not type(store).__name__.startswith("Postgres"):
        return 0.0
    with store._read() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [row[0] for row in cur.fetchall()]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure_store(db_url: str, records: list[dict[str, Any]], sizes: list[int]) -> tuple[float, ...]:
    """Of `store.write()` alone, records/s over the run, its first fifth and its last fifth, then records
    per CPU-second (this process plus, on PostgreSQL, the database backends): the machine is shared, so
    CPU time tells the cost of the code more steadily than the wall clock."""
    from litelens.server.store import open_store

    store = open_store(db_url)
    store.migrate()
    project = store.create_project("bench")
    times: list[float] = []
    cpu0, backend0 = time.process_time(), _backend_cpu(store)
    t0 = time.perf_counter()
    at = 0
    for size in sizes:
        began = time.perf_counter()
        store.write(project, records[at : at + size], [])
        times.append(time.perf_counter() - began)
        at += size
    total = time.perf_counter() - t0
    cpu = time.process_time() - cpu0 + _backend_cpu(store) - backend0
    store.close()
    fifth = max(1, len(times) // 5)
    per = len(records) / len(times)
    return (
        len(records) / total,
        per * fifth / sum(times[:fifth]),
        per * fifth / sum(times[-fifth:]),
        len(records) / cpu,
    )


def measure_writer(
    db_url: str, records: list[dict[str, Any]], sizes: list[int], group: int = 4
) -> tuple[float, ...]:
    """The group-commit writer thread's share of ingest: `store.write_prepared` alone, on its own thread
    clock (`time.thread_time()`), over the batches prepared beforehand (`prepare_write`, which the
    server's request threads do, not counted) and handed over `group` at a time as the server's writer
    takes what queued during the previous commit. Returns the writer's CPU µs per record over the run,
    over its first fifth and its last fifth of transactions, and the wall µs per record (which adds the
    commit's fsync and anything else the machine ran meanwhile).

    Why this figure: under `bench/ingest.py`'s HTTP load the one writer thread was busy ~81% of the wall
    time (py-spy), so its CPU per record bounds what the collector can take.

    The figure includes SQLite's own work on that thread (it runs the statements and the commit): main's
    writer, timed statement by statement (~51 µs per record, the timing adding its own), spent ~20 µs
    inserting `calls` rows, ~10 in BEGIN/COMMIT, ~6 in the other statements and ~16 in Python.
    Seen on the shared 2-core machine (SQLite, 30,000 records in batches of 869, 4 per transaction, 3
    rounds alternating with main, 3 runs): this tree 41.7-42.6 µs per record, main 46.4-47.7 (0.88-0.90);
    the writer's Python alone went from ~16 to ~12 µs per record. The last fifth costs about twice the
    first in both (the `calls` table and its indexes growing under random call ids: SQLite's share).
    """
    from litelens.server.store import open_store
    from litelens.server.store.base import WriteBatch

    store = open_store(db_url)
    store.migrate()
    project = store.create_project("bench")

    prepared = []
    at = 0
    for size in sizes:
        prepared.append(store.prepare_write(WriteBatch(project, records[at : at + size], [])))
        at += size
    cpu: list[float] = []
    counts: list[int] = []
    wall0 = time.perf_counter()
    for i in range(0, len(prepared), group):
        began = time.thread_time()
        store.write_prepared(prepared[i : i + group])
        cpu.append(time.thread_time() - began)
        counts.append(sum(sizes[i : i + group]))
    wall = time.perf_counter() - wall0
    store.close()
    fifth = max(1, len(cpu) // 5)
    return (
        sum(cpu) / len(records) * 1e6,
        sum(cpu[:fifth]) / sum(counts[:fifth]) * 1e6,
        sum(cpu[-fifth:]) / sum(counts[-fifth:]) * 1e6,
        wall / len(records) * 1e6,
    )


def writer_figure(figure: tuple[float, ...]) -> str:
    overall, first, last, wall = figure
    return (
        f"{overall:6.1f} µs/rec writer CPU (first fifth {first:.1f}, last {last:.1f}; wall {wall:.1f} µs/rec)"
    )


def store_main(spec_path: str) -> int:
    """`measure_store` in a process of its own (`--_store`), on the litelens its PYTHONPATH gives."""
    with open(spec_path, "rb") as f:
        spec = pickle.load(f)
    measure = measure_writer if spec.get("writer") else measure_store
    print(json.dumps(measure(spec["db_url"], spec["records"], spec["sizes"])), flush=True)
    return 0


def measure_store_of(
    source: str, db_url: str, records: list[dict[str, Any]], sizes: list[int], writer: bool = False
) -> tuple[float, ...]:
    """`measure_store` (or with `writer`, `measure_writer`) with the litelens of `source` (a `src`
    directory), in a fresh process: the same records and batches as this tree's, so two trees' write
    paths compare on equal terms."""
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump({"db_url": db_url, "records": records, "sizes": sizes, "writer": writer}, f)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--_store", f.name],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": source},
            check=False,
            timeout=3600,
        )
    finally:
        os.unlink(f.name)
    if done.returncode:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])
    return tuple(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def store_figure(figure: tuple[float, ...]) -> str:
    overall, first, last, per_cpu = figure
    return f"{overall:9,.0f}   (first fifth {first:,.0f}, last {last:,.0f}; {per_cpu:,.0f} per CPU-second)"


@contextlib.contextmanager
def databases(want_postgres: bool) -> Iterator[list[tuple[str, Any]]]:
    """[(name, factory of a fresh empty database URL)]: SQLite files always, PostgreSQL when available."""
    tmp = tempfile.mkdtemp(prefix="litelens-bench-")
    counter = iter(range(1_000_000))
    dbs: list[tuple[str, Any]] = [("sqlite", lambda: f"sqlite:///{tmp}/db{next(counter)}.db")]
    with contextlib.ExitStack() as stack:
        if want_postgres:
            try:
                from litelens.testing.postgres import TempPostgres

                pg = stack.enter_context(TempPostgres())
                dbs.append(("postgres", pg.create_database))
            except Exception as exc:  # no binaries, no psycopg, or it did not start
                print(f"  postgres: skipped ({str(exc)[:200]})", file=sys.stderr)
        try:
            yield dbs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument(
        "--batch", type=int, help="records per batch at most (default: as the core transport cuts them)"
    )
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--connections", type=int, default=2, help="keep-alive connections per sender")
    parser.add_argument("--baseline-ref", default="main", help="git ref to measure too ('' to skip)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-phoenix", action="store_true")
    parser.add_argument("--no-traces", action="store_true", help="skip /v1/traces")
    parser.add_argument("--only", choices=["store", "http"], help="run only one part")
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also measure SQLite /v1/events with a store that keeps only each record under its primary key, "
        "and with the real store minus its rollups",
    )
    parser.add_argument("--phoenix-install-timeout", type=float, default=300)
    parser.add_argument(
        "--phoenix-records", type=int, default=5000, help="spans sent to Phoenix (it ingests far slower)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--store-rounds",
        type=int,
        default=1,
        help="with a baseline ref: how many times to measure store.write() of this tree and of the "
        "baseline, alternately, each in a fresh process and database",
    )
    parser.add_argument(
        "--writer-rounds",
        type=int,
        default=1,
        help="with a baseline ref: how many times to measure the group-commit writer thread's CPU per "
        "record (`write_prepared` of 4 prepared batches at a time) of this tree and of the baseline, "
        "alternately, each in a fresh process and database",
    )
    parser.add_argument("--_send", help=argparse.SUPPRESS)
    parser.add_argument("--_store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._send:
        return sender_main(args._send)
    if args._store:
        return store_main(args._store)

    rng = random.Random(args.seed)
    t0 = time.time() - 3600
    print(f"building {args.records:,} records and their bodies ...", file=sys.stderr)
    records = make_records(args.records, t0, rng)
    batches = transport_batches(records, args.batch)
    sizes = [len(b) for b in batches]
    size = sum(len(part) for part in batches[0]) / len(batches[0])
    ev_bodies = events_bodies(batches)
    # The spans describe other calls than the events (fresh ids), so both can go to one database.
    span_records = make_records(args.records, t0, rng)
    tr_bodies = otlp_bodies(span_records, sizes)
    last_span_call = last_call_id_of_span_bodies(tr_bodies)
    senders = (args.senders, args.connections)
    print(
        f"records: {args.records:,} of ~{size:,.0f} B JSON, in batches of {sizes[0]:,} records "
        f"(as the core transport cuts them: at most {TransportConfig().batch_max_records:,} records and "
        f"{TransportConfig().batch_max_bytes / 1e6:.0f} MB uncompressed); events body "
        f"~{sum(map(len, ev_bodies)) / len(ev_bodies) / 1024:,.0f} KiB gzipped, OTLP body "
        f"~{sum(map(len, tr_bodies)) / len(tr_bodies) / 1024:,.0f} KiB protobuf; senders: {args.senders} "
        f"processes x {args.connections} connections; cpus: {os.cpu_count()}"
    )
    rows: list[tuple[str, str, str]] = []

    def report(what: str, db: str, figure: object) -> None:
        rows.append((what, db, str(figure)))
        print(rows[-1], file=sys.stderr)

    paths = [("/v1/events", ev_bodies, records[-1]["call_id"])]
    if not args.no_traces:
        paths.append(("/v1/traces", tr_bodies, last_span_call))
    with (
        databases(not args.no_postgres) as dbs,
        git_source(args.baseline_ref) if args.baseline_ref else (contextlib.nullcontext(None)) as baseline,
    ):
        if args.only in (None, "store"):
            for name, fresh in dbs:
                report(
                    "store.write() in-process",
                    name,
                    store_figure(measure_store(fresh(), [dict(r) for r in records], sizes)),
                )
                # This tree's and the baseline's write path on the same records, each in a process of its
                # own (the one above shares its heap with the bodies built for the HTTP rows), alternately
                # so the machine's other load weighs on both alike.
                for _ in range(args.store_rounds if baseline else 0):
                    for label, source in (("store.write() this tree", str(ROOT / "src")), (
                            f"  baseline: {args.baseline_ref} store.write()", baseline)):  # fmt: skip
                        report(label, name, store_figure(measure_store_of(source, fresh(), records, sizes)))
                for _ in range(args.writer_rounds if baseline else 0):
                    for label, source in (("writer thread this tree", str(ROOT / "src")), (
                            f"  baseline: {args.baseline_ref} writer thread", baseline)):  # fmt: skip
                        figure = measure_store_of(source, fresh(), records, sizes, writer=True)
                        report(label, name, writer_figure(figure))
        if args.only in (None, "http"):
            for name, fresh in dbs:
                for path, bodies, last_id in paths:
                    # Interleaved, so the machine's other load weighs on each about equally.
                    with litelens_server(fresh()) as (url, process):
                        report(f"litelens serve {path}", name, measure_litelens(
                            url, process, path, bodies, args.records, last_id, senders))  # fmt: skip
                    if baseline:
                        with litelens_server(fresh(), source=baseline) as (url, process):
                            report(f"  baseline: {args.baseline_ref} {path}", name, measure_litelens(
                                url, process, path, bodies, args.records, last_id, senders))  # fmt: skip
                    with litelens_server(fresh(), baseline="noop") as (url, process):
                        report(f"  baseline: write() no-op {path}", name, measure_litelens(
                            url, process, path, bodies, args.records, None, senders))  # fmt: skip
                    if args.floors and name == "sqlite" and path == "/v1/events":
                        # The floor is acknowledged, not queryable (no query API reads its table); the
                        # store without rollups is measured to queryable, as the real one.
                        with litelens_server(fresh(), baseline="floor") as (url, process):
                            report(f"  baseline: key + record only {path}", name, measure_litelens(
                                url, process, path, bodies, args.records, None, senders))  # fmt: skip
                        with litelens_server(fresh(), baseline="norollups") as (url, process):
                            report(f"  baseline: store without rollups {path}", name, measure_litelens(
                                url, process, path, bodies, args.records, last_id, senders))  # fmt: skip

    if args.only in (None, "http") and not args.no_phoenix:
        try:
            python = phoenix_python(args.phoenix_install_timeout)
            with phoenix_server(python, 180) as url:
                want = min(args.records, args.phoenix_records)
                totals = list(itertools.accumulate(sizes))
                n_bodies = next((i for i, n in enumerate(totals, 1) if n >= want), len(totals))
                count = totals[n_bodies - 1]
                report(
                    f"Arize Phoenix /v1/traces ({count:,} spans)",
                    "sqlite",
                    measure_phoenix(url, tr_bodies[:n_bodies], count, senders),
                )
        except Exception as exc:
            print(f"Arize Phoenix: skipped ({type(exc).__name__}: {str(exc)[:400]})")

    print(f"\n{'sent to queryable':44} {'db':9} {'records/s':>9}   {'server CPU/rec':>8}   {'sender CPU':>5}")
    for what, db, figure in rows:
        print(f"{what:44} {db:9} {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
