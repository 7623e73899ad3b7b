"""litelens.sinks: every sink gets each processed record (and nothing the redactor removed), a stuck sink
costs neither the LiteLLM caller nor the other sinks, JSONL rotation keeps every record exactly once,
and the environment picks sinks for a proxy with no code."""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import litellm
import pytest

import litelens
from litelens import jsonl
from litelens.callback import Callback, unregister
from litelens.config import Settings
from litelens.dispatch import Dispatcher
from litelens.jsonl import JsonlWriter, _folder_lock, _stamp_us, rotated_files
from litelens.pipeline import redact
from litelens.sinks import CallableSink, ConsoleSink, FanOut, HttpSink, JsonlSink, Sink, from_spec
from litelens.testing import FakeProvider, Receiver
from litelens.transport import Transport
from server_helpers import ServerProcess
from test_pipeline import PLANTED as PLANTED_BY_KIND
from test_pipeline import every_third_raises, planted_record


def read_records(path: str | os.PathLike[str]) -> jsonl.Records:
    """Strict: the files these tests write must hold no line that is not JSON, and one would fail them
    here (`read_records` itself skips such a line, and says so)."""
    return jsonl.read_records(path, errors="strict")


KEY = "sk-test-PROVIDERKEY-0123456789abcdef"

# test_pipeline's planted record gives the messages (content, content parts, a URL, tool-call arguments)
# and the metadata; a tool result, a tool definition, the URL path and the error message add more.
PLANTED = [
    *(value for values in PLANTED_BY_KIND.values() for value in values),
    "carol@example.com",
    "erin@example.net",
    "4111-1111-1111-1111",
    KEY,
]


def planted_calls(provider: FakeProvider) -> None:
    """One successful chat call and one failed call, both full of personal data and secrets."""
    record = planted_record()
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[
            *record["request"]["messages"],
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": "done with sk-proj-Abc123def456ghi789, Authorization: Bearer abc.def.ghijklmnopq",
            },
            {"role": "user", "content": "thanks [[fake tools=0]]"},
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "refund", "description": "copy to carol@example.com", "parameters": {}},
            }
        ],
        metadata=record["metadata"],
        api_base=provider.url,
        api_key=KEY,
    )
    # The fake provider's 404 names the path, so the error message (and the api_base) carry data too.
    with pytest.raises(litellm.NotFoundError):
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            api_base=f"{provider.url}/u/erin@example.net/4111-1111-1111-1111",
            api_key=KEY,
        )


def assert_clean(text: str, where: str) -> None:
    leftover = [value for value in PLANTED if value in text]
    assert leftover == [], f"{where} still holds {leftover}"
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[IP]", "[SECRET]"):
        assert placeholder in text, (where, placeholder)


def check_records(records: list[dict[str, Any]], where: str) -> None:
    """The rest of the record is intact: ids, usage, model, status, parameters, the error's type."""
    assert len(records) == 2, where
    ok = next(r for r in records if r["status"] == "ok")
    err = next(r for r in records if r["status"] == "error")
    assert ok["request_model"] == "gpt-4o-mini" and ok["provider"] == "openai", where
    assert ok["usage"]["input_tokens"] > 0 and ok["usage"]["output_tokens"] == 8, where
    assert ok["cost_usd"] and ok["cost_usd"] > 0, where
    assert ok["metadata"]["tier"] == "gold" and ok["metadata"]["customer"]["email"] == "[EMAIL]", where
    messages = ok["request"]["messages"]
    assert messages[0]["content"] == "You are a support agent for order 1234567890123456.", where
    assert messages[1]["content"] == "I'm Alice ([EMAIL], [PHONE]). Refund to [IBAN] or card [CARD] please."
    assert messages[2]["content"][0]["text"] == "Also reachable at [PHONE] from [IP].", where
    args = json.loads(messages[3]["tool_calls"][0]["function"]["arguments"])
    assert args == {"email": "[EMAIL]", "card": "[CARD]", "amount": 129.5, "password": "[SECRET]"}, where
    assert ok["response"]["choices"][0]["finish_reason"] == "stop", where
    assert err["error"]["type"] == "NotFoundError" and err["error"]["status_code"] == 404, where
    assert "/u/[EMAIL]/[CARD]/chat/completions" in err["error"]["message"], where


def test_planted_data_reaches_no_sink_and_the_rest_arrives_intact(
    provider: FakeProvider, sqlite_server: ServerProcess, tmp_path: Path
) -> None:
    got: list[dict[str, Any]] = []
    console = io.StringIO()
    jsonl = JsonlSink(str(tmp_path / "calls.jsonl"))
    callback = Callback(
        processors=[redact()],
        sinks=[
            HttpSink(sqlite_server.url, sqlite_server.key, spool_dir=str(tmp_path / "spool")),
            jsonl,
            ConsoleSink(console, full=True),
            CallableSink(got.extend),
        ],
    )
    litellm.callbacks.append(callback)
    try:
        planted_calls(provider)
        assert callback.flush(timeout=20)
    finally:
        unregister(callback)
        callback.shutdown(timeout=5)

    from_file = list(read_records(jsonl.path))
    assert_clean(jsonl.path.read_text(), "the JSONL file")
    check_records(from_file, "the JSONL file")
    assert_clean(json.dumps(got), "the callable sink")
    assert sorted(got, key=lambda r: r["status"]) == sorted(from_file, key=lambda r: r["status"])
    text = console.getvalue()
    assert_clean(text, "the console")
    assert (
        sum("gpt-4o-mini" in line and ("  ok  " in line or "  ERR " in line) for line in text.splitlines())
        == 2
    )

    client = sqlite_server.client()
    stored = [client.get_json(f"/api/calls/{r['call_id']}") for r in from_file]
    assert_clean(json.dumps(stored), "the server")
    check_records(stored, "the server")
    stats = callback.stats()
    assert stats["sink.http.sent"] == 2 and stats["sink.jsonl.written"] == 2
    assert stats["sink.console.written"] == 2 and stats["sink.extend.written"] == 2


def _latencies(provider: FakeProvider, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": f"call {i}"}],
            api_base=provider.url,
            api_key="sk-fake",
        )
        out.append(time.perf_counter() - started)
    return out


def test_a_sink_blocked_for_10s_delays_neither_the_caller_nor_the_other_sinks(
    provider: FakeProvider, receiver: Receiver, make_callback: Callable[..., Callback], tmp_path: Path
) -> None:
    _latencies(provider, 5)  # warm up LiteLLM and the connection pool
    baseline = _latencies(provider, 30)
    time.sleep(0.5)  # LiteLLM logs success on its pool shortly after return: let those pass first

    release = threading.Event()
    blocked = threading.Event()

    def stuck(batch: list[dict[str, Any]]) -> None:
        blocked.set()
        release.wait(10)  # a sink stuck for 10 s: a hung network share, a dead webhook

    fast: list[dict[str, Any]] = []
    jsonl = JsonlSink(str(tmp_path / "calls.jsonl"))
    callback = make_callback(
        sinks=[
            CallableSink(stuck, name="stuck", max_queue=10),
            "http",
            jsonl,
            CallableSink(fast.extend, name="fast"),
        ]
    )
    try:
        started = time.monotonic()
        # The caller did not notice: LiteLLM's own latency, within noise. A shared machine's load comes in
        # bursts that doubled a whole round's median (15 ms -> 31 ms) with nothing of ours in it, so up to
        # three rounds are measured: a stuck sink that slowed the caller would slow every one of them.
        limit = statistics.median(baseline) * 1.5 + 0.005
        rounds = [_latencies(provider, 30)]
        while statistics.median(rounds[-1]) >= limit and len(rounds) < 3:
            rounds.append(_latencies(provider, 30))
        calls = 30 * len(rounds)
        assert blocked.wait(5)
        deadline = time.monotonic() + 5
        while len(fast) < calls and time.monotonic() < deadline:
            time.sleep(0.02)
        # The other sinks have everything while the stuck one is still stuck.
        assert len(fast) == calls and receiver.wait_for(calls, timeout=5)
        assert len(list(read_records(jsonl.path))) == calls
        assert not release.is_set() and time.monotonic() - started < 10
        stats = callback.stats()
        assert stats["sink.stuck.written"] == 0 and stats["sink.stuck.dropped"] > 0, stats
        assert stats["sink.stuck.submitted"] == calls and stats["sink.fast.written"] == calls
        assert statistics.median(rounds[-1]) < limit, (rounds, baseline)
        assert max(max(r) for r in rounds) < 1.0, rounds
        # Shutting down with a sink still stuck takes the timeout given, not the sink's 10 s.
        before = time.monotonic()
        assert callback.shutdown(timeout=1.0) is False
        assert time.monotonic() - before < 3.0
        assert len(fast) == calls
    finally:
        release.set()


def test_a_raising_sink_and_a_raising_processor_cost_only_their_own_records(
    make_callback: Callable[..., Callback], receiver: Receiver
) -> None:
    flaky = every_third_raises()

    def broken(batch: list[dict[str, Any]]) -> None:
        raise ValueError("sink bug")

    got: list[dict[str, Any]] = []
    callback = make_callback(
        processors=[flaky],
        sinks=["http", CallableSink(broken, name="broken"), CallableSink(got.extend, name="ok")],
    )
    for i in range(30):
        callback.transport.submit({"schema": "litelens.call/1", "call_id": f"c{i}", "metadata": {}})
    assert callback.flush(timeout=10) and receiver.wait_for(20, timeout=10)
    assert sorted(r["call_id"] for r in got) == sorted(f"c{i}" for i in range(30) if (i + 1) % 3)
    stats = callback.stats()
    assert stats["processor_errors"] == 10
    assert (
        stats["sink.broken.failed"] == 20 and stats["sink.ok.written"] == 20 and stats["sink.http.sent"] == 20
    )


def test_a_jsonl_folder_that_cannot_be_made_costs_only_its_records(
    make_callback: Callable[..., Callback], tmp_path: Path
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")  # as a mount that is not there yet
    got: list[dict[str, Any]] = []
    # Made from the environment's short form too (a proxy): the app starts, the other sink works.
    callback = make_callback(sinks=[f"jsonl:{blocker}/calls.jsonl", CallableSink(got.extend, name="ok")])
    callback.transport.submit({"schema": "litelens.call/1", "call_id": "before", "metadata": {}})
    callback.flush(timeout=10)
    assert [r["call_id"] for r in got] == ["before"]
    assert callback.stats()["sink.jsonl.failed"] == 1
    blocker.unlink()  # the folder can be made now: the sink picks up from there
    callback.transport.submit({"schema": "litelens.call/1", "call_id": "after", "metadata": {}})
    callback.flush(timeout=10)
    assert [r["call_id"] for r in read_records(blocker / "calls.jsonl")] == ["after"]


def test_jsonl_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """The files hold every prompt and answer: under the usual umask 022 they were world-readable, so
    any user of a shared host could read them."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "calls.jsonl"
        sink = JsonlSink(str(path), max_bytes=2_000, gzip=True)
        for i in range(40):
            sink.submit(json.dumps({"call_id": f"c{i}", "text": "my medical history " * 5}))
        assert sink.shutdown(timeout=30)
    finally:
        os.umask(old)
    files = [path, *rotated_files(path)]
    assert len(files) > 2 and any(f.name.endswith(".gz") for f in files)
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {oct(0o600)}


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_jsonl_rotation_keeps_every_record_exactly_once(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=8_000, gzip=compress, max_queue=100_000)
    records = [{"call_id": f"c{i:05d}", "text": "x" * (i % 300)} for i in range(5_000)]
    for record in records:
        sink.submit(json.dumps(record))
    assert sink.shutdown(timeout=30)
    files = rotated_files(path)
    assert len(files) > 50 and sink.stats()["rotations"] == len(files)
    assert all(f.name.endswith(".gz") == compress for f in files)
    # Concatenate by hand, gzip and plain alike: every record once, in order.
    lines: list[bytes] = []
    for f in [*files, path]:
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        lines += data.splitlines()
    assert [json.loads(line) for line in lines] == records
    assert all(os.path.getsize(f) <= 8_000 for f in files if not compress)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_jsonl_records_are_written_while_a_big_rotated_file_compresses(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    blob = os.urandom(8 << 20).hex()  # 16 MiB that gzip takes a while over, as a 64 MiB file does
    path.write_bytes(
        b"".join(b'{"text": "%s"}\n' % blob[i : i + 4000].encode() for i in range(0, len(blob), 4000))
    )
    sink = JsonlSink(str(path), max_bytes=len(blob) + 200_000)
    sink.submit(json.dumps({"call_id": "rotates", "text": "x" * 200_000}))
    sink.submit(json.dumps({"call_id": "next"}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):  # between the rename aside and the next write
            if b'"next"' in path.read_bytes():
                break
        time.sleep(0.001)
    # The record after the rotation is in the file before the rotated one is compressed: the sink's
    # thread did not stop writing for the compression.
    (rotated,) = rotated_files(path)
    assert not rotated.name.endswith(".gz")
    assert sink.shutdown(30)
    (rotated,) = rotated_files(path)
    assert rotated.name.endswith(".gz")
    assert [r.get("call_id") for r in read_records(path)][-3:] == [None, "rotates", "next"]
    # Nor does the app's thread wait, when it makes a sink, for what a crash left to compress.
    plain = Path(str(rotated)[: -len(".gz")])
    plain.write_bytes(gzip.decompress(rotated.read_bytes()))
    rotated.unlink()
    restarted = JsonlSink(str(path))
    assert rotated_files(path) == [plain]
    assert restarted.shutdown(30) and rotated_files(path) == [rotated]


def test_jsonl_recovers_a_rotation_a_crash_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writer = JsonlWriter(path, max_bytes=60)
    writer.write([json.dumps({"i": i}).encode() for i in range(40)])
    writer.close()
    rotated = rotated_files(path)
    assert len(rotated) >= 3
    # Crash 1: after the .gz was renamed into place, before the plain file was removed.
    first = rotated[0]
    Path(str(first)[:-3]).write_bytes(gzip.decompress(first.read_bytes()))
    # Crash 2: after the rename aside, before compression finished (a half temporary is left).
    second = rotated[1]
    plain = Path(str(second)[:-3])
    plain.write_bytes(gzip.decompress(second.read_bytes()))
    second.unlink()
    (tmp_path / f".tmp-{plain.name}.gz").write_bytes(b"\x1f\x8b half")
    JsonlWriter(path, max_bytes=60).close()
    assert [r["i"] for r in read_records(path)] == list(range(40))
    assert sorted(os.listdir(tmp_path)) == sorted([f.name for f in rotated] + [path.name])


def test_jsonl_a_restart_with_the_same_pid_clears_what_the_killed_run_was_compressing(tmp_path: Path) -> None:
    # In a container the program is often pid 1 in every life: the half-written temporary of a run
    # killed while compressing bears our pid, yet no one writes it any more. It used to be kept for
    # ever, and the rotation it was made from spared by keep_files for ever.
    path = tmp_path / "calls.jsonl"
    writer = JsonlWriter(path, max_bytes=20, gzip=False)
    writer.write([json.dumps({"i": i}).encode() for i in range(6)])
    writer.close()
    oldest, newest = rotated_files(path)
    (tmp_path / f".tmp-{oldest.name}.{os.getpid()}.140000000000001.gz").write_bytes(b"\x1f\x8b half")
    JsonlWriter(path, max_bytes=20, keep_files=1).close()  # the program restarted
    assert sorted(os.listdir(tmp_path)) == sorted([f"{newest.name}.gz", path.name])


def test_jsonl_rotations_read_in_order_after_the_clock_was_stepped_back(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    # Rotated while the clock ran an hour fast (then NTP stepped it back), by this version or an
    # earlier one: the name says an hour from now.
    ahead = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 3600))
    (tmp_path / f"calls.{ahead}.000000.jsonl").write_text('{"i": 0}\n')
    writer = JsonlWriter(path, max_bytes=20)
    writer.write([json.dumps({"i": i}).encode() for i in range(1, 6)])
    writer.close()
    rotated = rotated_files(path)
    assert len(rotated) == 3 and all(f.name.endswith(".gz") for f in rotated)
    # Every record once, in the order written; the files rotated since sort after the one from "later".
    assert [r["i"] for r in read_records(path)] == list(range(6))
    assert rotated[0].name == f"calls.{ahead}.000000.jsonl.gz"


def test_jsonl_after_a_writer_died_mid_line_every_line_reads(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    # What a process killed (or out of disk) in the middle of a batch leaves: a line without its end.
    path.write_bytes(b'{"call_id": "a"}\n{"call_id": "b", "usage": {"input_tok')
    sink = JsonlSink(str(path))  # the process restarted
    sink.submit(json.dumps({"call_id": "c"}))
    assert sink.shutdown(5) and sink.stats()["written"] == 1
    assert [r["call_id"] for r in read_records(path)] == ["a", "c"]


def test_jsonl_file_or_folder_removed_while_running_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "calls.jsonl"
    sink = JsonlSink(str(path))
    sink.submit(json.dumps({"call_id": "a"}))
    assert sink.flush(5)
    path.unlink()  # someone clearing the logs
    sink.submit(json.dumps({"call_id": "b"}))
    assert sink.flush(5)
    assert [r["call_id"] for r in read_records(path)] == ["b"]
    shutil.rmtree(path.parent)
    sink.submit(json.dumps({"call_id": "c"}))
    assert sink.shutdown(5)
    assert [r["call_id"] for r in read_records(path)] == ["c"]


def test_jsonl_to_standard_output_through_a_pipe() -> None:
    # LITELENS_SINKS=jsonl:/dev/stdout in a container, whose log collector reads the process's stdout.
    child = (
        "import json, sys; from litelens.sinks import JsonlSink\n"
        "sink = JsonlSink('/dev/stdout')\n"
        "for i in range(3): sink.submit(json.dumps({'i': i}))\n"
        "sink.shutdown(5); print(json.dumps(sink.stats()), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert [json.loads(line)["i"] for line in done.stdout.splitlines()] == [0, 1, 2], done.stderr
    assert json.loads(done.stderr.splitlines()[-1])["written"] == 3


_STDOUT_WORKER = """
import json, sys
from litelens.sinks import JsonlSink
sink = JsonlSink("/dev/stdout")
for i in range(30):
    sink.submit(json.dumps({"call_id": f"{sys.argv[1]}-{i}", "text": sys.argv[1] * 100_000}))
sink.shutdown(30)
"""


def test_workers_sharing_standard_output_write_whole_lines() -> None:
    # A proxy's workers in a container, all with LITELENS_SINKS=jsonl:/dev/stdout: one pipe, and records
    # longer than its buffer, which the kernel writes in pieces.
    read_end, write_end = os.pipe()
    workers = [
        subprocess.Popen([sys.executable, "-c", _STDOUT_WORKER, str(n)], stdout=write_end) for n in range(3)
    ]
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 16):  # a log collector, a little behind: the pipe fills
            chunks.append(chunk)
            time.sleep(0.001)
    lines = b"".join(chunks).splitlines()
    assert [worker.wait(30) for worker in workers] == [0, 0, 0]
    found = Counter(json.loads(line)["call_id"] for line in lines)  # every line whole
    assert sorted(found) == sorted(f"{n}-{i}" for n in range(3) for i in range(30))


def test_jsonl_to_standard_output_redirected_to_a_file_is_never_rotated(tmp_path: Path) -> None:
    # `app > out.log` with LITELENS_SINKS=jsonl:/dev/stdout (here through a link of ours to it, which is
    # what /dev/stdout is too): the file is the shell's; renaming the path would move the link, not it.
    link = tmp_path / "stdout.jsonl"
    link.symlink_to("/dev/stdout")
    child = (
        "import json, sys; from litelens.sinks import JsonlSink\n"
        "sink = JsonlSink(sys.argv[1], max_bytes=100, max_age_s=0.05)\n"
        "for i in range(20): sink.submit(json.dumps({'i': i})); sink.flush(5)\n"
        "sink.shutdown(5); print(json.dumps(sink.stats()), file=sys.stderr)\n"
    )
    out = tmp_path / "out.log"
    out.write_text("the app's own output\n")
    with open(out, "a") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", child, str(link)],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    stats = json.loads(done.stderr.splitlines()[-1])
    assert out.read_text().splitlines() == [
        "the app's own output",
        *(json.dumps({"i": i}) for i in range(20)),
    ]
    assert stats["written"] == 20 and stats["rotations"] == 0, stats
    assert sorted(os.listdir(tmp_path)) == ["out.log", "stdout.jsonl"] and link.is_symlink()
    # A regular file in /dev/shm (a tmpfs) is an ordinary sink file: it rotates.
    if os.path.isdir("/dev/shm"):
        shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
        try:
            writer = JsonlWriter(shm / "calls.jsonl", max_bytes=100)
            writer.write([json.dumps({"i": i}).encode() for i in range(20)])
            writer.close()
            assert writer.rotations > 0 and [r["i"] for r in read_records(shm / "calls.jsonl")] == list(
                range(20)
            )
        finally:
            shutil.rmtree(shm)


_FULL_DISK_CHILD = """
import json, resource, signal, sys
from litelens.sinks import JsonlSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
sink = JsonlSink(sys.argv[1], gzip=False)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, hard))
for i in range(20):
    sink.submit(json.dumps({"i": i, "text": "x" * 300}))
    sink.flush(5)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
for i in range(20, 23):
    sink.submit(json.dumps({"i": i}))
sink.shutdown(5)
print(json.dumps(sink.stats()))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_jsonl_on_a_full_disk_a_failed_record_is_not_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    found = [r["i"] for r in read_records(path)]  # every line whole: the reader does not fail
    assert stats["failed"] > 0 and stats["written"] + stats["failed"] == 23
    assert len(found) == stats["written"] and found == sorted(set(found))
    assert found[-3:] == [20, 21, 22]


_SPLIT_BATCH_CHILD = """
import json, os, resource, signal, sys, time
from litelens.jsonl import _folder_lock
from litelens.sinks import JsonlSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, hard))
sink = JsonlSink(sys.argv[1], max_bytes=2000, gzip=False)
small = lambda i: json.dumps({"i": i, "text": "x" * 300})
with _folder_lock(os.path.dirname(sys.argv[1])):  # the sink's thread waits for the folder's lock
    sink.submit(small(0))
    while sink._queue._queue:  # taken alone by the sink's thread, which waits: what follows is one batch
        time.sleep(0.01)
    for i in range(1, 5):
        sink.submit(small(i))
    sink.submit(json.dumps({"i": 5, "text": "x" * 4000}))  # past the file size limit on its own
    sink.submit(small(6))
    sink.submit(small(7))
assert sink.flush(10)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
sink.submit(small(8))
sink.shutdown(5)
print(json.dumps(sink.stats()))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_jsonl_a_batch_that_fails_after_a_rotation_counts_each_record_once(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", _SPLIT_BATCH_CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    # One batch of 1..7: 1..4 fill the file, which is rotated; 5 is too big for the disk, and 6 and 7
    # were to follow it in the same write. What is in the files was written, the rest failed.
    found = [r["i"] for r in read_records(path)]
    assert found == [0, 1, 2, 3, 4, 8]
    assert stats["written"] == len(found) and stats["failed"] == 3 and stats["dropped"] == 0, stats
    assert stats["rotations"] >= 1, stats


_COMPRESS_FAILS_CHILD = """
import base64, json, logging, os, resource, signal, sys
from litelens.sinks import JsonlSink
logging.basicConfig(stream=sys.stderr, format="%(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, hard))
# Both files' .gz would be bigger than the limit; the new live file stays below it.
sink = JsonlSink(sys.argv[1], max_bytes=100_000)
sink.submit(json.dumps({"i": "after"}))
assert sink.shutdown(30)  # the compressions were tried (and failed): the process still runs
print(json.dumps({"stats": sink.stats(), "files": sorted(os.listdir(os.path.dirname(sys.argv[1])))}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_jsonl_compression_that_fails_leaves_no_temporary_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    # Two files to compress: a live file that the first write rotates, and a rotation a crash left
    # plain; both of random text, which gzip shrinks to about 3/4 -- still past the disk's room.
    records = [{"i": i, "text": base64.b64encode(os.urandom(3000)).decode()} for i in range(100)]
    left = tmp_path / "calls.20261130T061220Z.176259.jsonl"
    left.write_text("".join(json.dumps(r) + "\n" for r in records[:50]))
    path.write_text("".join(json.dumps(r) + "\n" for r in records[50:]))
    done = subprocess.run(
        [sys.executable, "-c", _COMPRESS_FAILS_CHILD, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # While the process still ran, no temporary was left to fill the disk further; the rotated files
    # are kept plain; the failures were counted, and logged once.
    assert not [name for name in out["files"] if name.startswith(".tmp-")], out["files"]
    assert [name.endswith(".gz") for name in out["files"]] == [False, False, False], out["files"]
    assert out["stats"]["compress_failed"] == 2 and out["stats"]["written"] == 1, out["stats"]
    assert done.stderr.count("cannot compress") == 1, done.stderr
    # Nothing lost: every record reads, and the next writer with room compresses what was left.
    expected = [*(r["i"] for r in records), "after"]
    assert [r["i"] for r in read_records(path)] == expected
    JsonlWriter(path).close()
    assert all(f.name.endswith(".gz") for f in rotated_files(path)) and len(rotated_files(path)) == 2
    assert [r["i"] for r in read_records(path)] == expected


def test_jsonl_rotates_by_age_when_idle(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "calls.jsonl"), max_age_s=0.3)
    sink.submit('{"i": 1}')
    assert sink.flush(5)
    deadline = time.monotonic() + 5
    while not rotated_files(sink.path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["i"] for r in read_records(sink.path)] == [1] and len(rotated_files(sink.path)) == 1
    sink.shutdown(2)

    # A file started two hours ago by an earlier process is rotated by one that keeps hourly files,
    # however often the process restarts.
    live = tmp_path / "hourly.jsonl"
    live.write_text(json.dumps({"call_id": "old", "start_time": time.time() - 7200}) + "\n")
    writer = JsonlWriter(live, max_age_s=3600)
    writer.write([json.dumps({"call_id": "new", "start_time": time.time()}).encode()])
    writer.close()
    assert len(rotated_files(live)) == 1
    assert [r["call_id"] for r in read_records(live)] == ["old", "new"]
    assert [json.loads(line)["call_id"] for line in live.read_bytes().splitlines()] == ["new"]

    # So is one whose first record is a long chat (the size limits allow 256 KiB of content).
    big = tmp_path / "big.jsonl"
    first = {"call_id": "old", "start_time": time.time() - 7200, "request": {"messages": ["x" * 200_000]}}
    big.write_text(json.dumps(first) + "\n")
    writer = JsonlWriter(big, max_age_s=3600)
    writer.write([json.dumps({"call_id": "new", "start_time": time.time()}).encode()])
    writer.close()
    assert [json.loads(line)["call_id"] for line in big.read_bytes().splitlines()] == ["new"]


def test_sinks_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Receiver
) -> None:
    monkeypatch.setenv("LITELENS_SINKS", f"http, jsonl:{tmp_path}/calls-{{pid}}.jsonl, console")
    monkeypatch.setenv("LITELENS_ENDPOINT", receiver.url)
    monkeypatch.setenv("LITELENS_SPOOL_DIR", "off")
    callback = Callback()
    try:
        assert isinstance(callback.transport, Dispatcher)
        assert [s.name for s in callback.transport.sinks.sinks] == ["http", "jsonl", "console"]
        callback.transport.submit({"schema": "litelens.call/1", "call_id": "env-1", "status": "ok"})
        assert callback.flush(10) and receiver.wait_for(1)
        assert [r["call_id"] for r in read_records(tmp_path / f"calls-{os.getpid()}.jsonl")] == ["env-1"]
    finally:
        callback.shutdown(2)
    assert isinstance(from_spec("callable:json:dumps"), CallableSink)
    with pytest.raises(ValueError, match="LITELENS_SINKS"):
        from_spec("kafka:topic")


def test_the_default_callback_is_the_plain_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITELENS_SINKS", raising=False)
    callback = Callback(endpoint="http://127.0.0.1:9", spool_dir="off")
    try:
        assert type(callback.transport) is Transport and callback.transport._prepare is not None
        assert not any(key.startswith("sink.") for key in callback.stats())
    finally:
        callback.shutdown(0.5)
    with pytest.raises(TypeError, match="not a sink"):
        FanOut(object())  # type: ignore[arg-type]


def test_console_sink_prints_one_line_per_call(provider: FakeProvider, make_callback: Any) -> None:
    out = io.StringIO()
    callback = make_callback(sinks=[ConsoleSink(out)])
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        api_base=provider.url,
        api_key="sk-fake",
    )
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi [[fake error=429]]"}],
            api_base=provider.url,
            api_key="sk-fake",
            max_retries=0,
        )
    assert callback.flush(10)
    ok, err = out.getvalue().splitlines()
    assert (
        "  ok  " in ok and "gpt-4o-mini" in ok and " ms" in ok and "3 →     8 tok" in ok and "$0.0000" in ok
    )
    assert "  ERR " in err and "RateLimitError" in err


EXIT_SCRIPT = r"""
import atexit, os, sys, time
# Registered before litelens's own exit hook, so it runs after it: the time the exit flush took.
atexit.register(lambda: print(f"exit flush {time.monotonic() - done:.2f} s", flush=True))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm, litelens
from litelens.sinks import CallableSink, JsonlSink
stuck = lambda batch: time.sleep(60)
litelens.init(endpoint="http://127.0.0.1:9", spool_dir="off", exit_flush_s=1.0,
              sinks=[CallableSink(stuck, name="stuck"), CallableSink(stuck, name="hung"), JsonlSink(sys.argv[2])])
for i in range(3):
    litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                       api_base=sys.argv[1], api_key="sk-fake")
print("done", flush=True)
done = time.monotonic()
"""


def test_a_stuck_sink_does_not_hold_the_process_at_exit(provider: FakeProvider, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(EXIT_SCRIPT)
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr:
        app = subprocess.Popen(
            [sys.executable, str(script), provider.url, str(tmp_path / "calls.jsonl")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert app.stdout is not None
            first = app.stdout.readline()
            # Timed from the app's last line, not from its start: an interpreter importing LiteLLM on a
            # loaded machine took 25 s of the 40 before its exit had begun.
            done = time.monotonic()
            rest, _ = app.communicate(timeout=120)
            held = time.monotonic() - done
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
    assert app.returncode == 0 and first == "done\n", errors.read_text()[-2000:]
    # The exit flush waits exit_flush_s per stage at most, never the stuck sink's 60 s.
    assert held < 40
    assert len(list(read_records(tmp_path / "calls.jsonl"))) == 3
    # The callback's exit_flush_s holds for the sinks it was given, and the two stuck ones wait out one
    # second together: not the sinks' own default of 5 s each.
    took = float(rest.split("exit flush ")[1].split()[0])
    assert took < 1.8, rest


def test_init_passes_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litelens, "_default", None)
    got: list[dict[str, Any]] = []
    callback = litelens.init(endpoint="http://127.0.0.1:9", spool_dir="off", sinks=[CallableSink(got.extend)])
    try:
        callback.transport.submit({"schema": "litelens.call/1", "call_id": "i1"})
        assert litelens.flush(5) and [r["call_id"] for r in got] == ["i1"]
        assert litelens.stats()["sink.extend.written"] == 1
    finally:
        litelens.shutdown(2)
        unregister(callback)


def test_counter_names_are_unique_per_sink(tmp_path: Path) -> None:
    a, b = JsonlSink(str(tmp_path / "a.jsonl")), JsonlSink(str(tmp_path / "b.jsonl"))
    fan = FanOut(a, b)
    fan.submit('{"call_id": "x"}')
    assert fan.flush(5)
    assert Counter(k.split(".")[0] for k in fan.stats()) == {"jsonl": 9, "jsonl#2": 9}
    fan.shutdown(2)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_writes_its_own_file(tmp_path: Path) -> None:
    """A proxy's workers fork after litelens loaded: with `{pid}`, each writes a file of its own."""
    sink = JsonlSink(str(tmp_path / "calls-{pid}.jsonl"))
    sink.submit('{"call_id": "parent-1"}')
    assert sink.flush(5)
    pid = os.fork()
    if pid == 0:  # the child: write one record, flush, leave without running the parent's exit hooks
        code = 1
        try:
            sink.submit('{"call_id": "child-1"}')
            code = 0 if sink.flush(5) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink.submit('{"call_id": "parent-2"}')
    assert sink.shutdown(5)
    mine = [r["call_id"] for r in read_records(tmp_path / f"calls-{os.getpid()}.jsonl")]
    theirs = [r["call_id"] for r in read_records(tmp_path / f"calls-{pid}.jsonl")]
    assert mine == ["parent-1", "parent-2"] and theirs == ["child-1"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def _four_forked_workers_write_150_each(sink: JsonlSink) -> None:
    """Fork four workers that share `sink`'s path, each writing records w<n>-0..149 (flushing after each);
    then shut the parent's sink. Each worker must have written all its records, none failed."""
    pids = []
    for n in range(4):
        pid = os.fork()
        if pid == 0:  # a worker: write, flush, report, leave without the parent's exit hooks
            code = 1
            try:
                for i in range(150):
                    sink.submit(json.dumps({"call_id": f"w{n}-{i}", "text": "x" * (i % 50)}))
                    sink.flush(5)
                stats = sink.stats()
                code = 0 if sink.shutdown(10) and stats["written"] == 150 and stats["failed"] == 0 else 3
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert sink.shutdown(5)
    assert codes == [0, 0, 0, 0]


def test_processes_sharing_one_jsonl_path_keep_every_record_exactly_once(tmp_path: Path) -> None:
    """Workers of one proxy (`--num_workers`, gunicorn) given one path without `{pid}`: they append to
    and rotate the same file, and still every record is in exactly one file, every line whole, and no
    file is past `max_bytes`."""
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=2_000)
    sink.submit(json.dumps({"call_id": "parent"}))
    assert sink.flush(5)
    _four_forked_workers_write_150_each(sink)
    found = Counter(r["call_id"] for r in read_records(path))
    assert sorted(found) == sorted(["parent", *(f"w{n}-{i}" for n in range(4) for i in range(150))])
    assert max(found.values()) == 1
    assert all(len(gzip.decompress(f.read_bytes())) <= 2_000 for f in rotated_files(path))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


def test_a_process_sharing_the_jsonl_path_killed_mid_line_costs_no_other_record(tmp_path: Path) -> None:
    """A worker writing the same path is SIGKILLed in the middle of a line, while this one has the file
    open: the next line written here must not be glued to the half line (one undecodable line, two
    records lost, and `read_records` raising for everyone reading the file)."""
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), gzip=False)
    sink.submit(json.dumps({"call_id": "mine-0"}))
    assert sink.flush(5)
    worker = f"""
import os, signal
from litelens.jsonl import _folder_lock
with _folder_lock({str(tmp_path)!r}):  # as its sink's thread holds it for a write
    with open({str(path)!r}, "ab", buffering=0) as f:
        f.write(b'{{"call_id": "worker-0"}}\\n{{"call_id": "worker-1", "usage": {{"input_to')
        os.kill(os.getpid(), signal.SIGKILL)
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    killed = subprocess.run([sys.executable, "-c", worker], env=env, timeout=30)
    assert killed.returncode == -9
    sink.submit(json.dumps({"call_id": "mine-1"}))
    assert sink.shutdown(5) and sink.stats()["written"] == 2
    assert [r["call_id"] for r in read_records(path)] == ["mine-0", "worker-0", "mine-1"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_while_a_jsonl_sink_writes_does_not_hold_its_lock(tmp_path: Path) -> None:
    """A worker forked (or restarted by its master) at the moment the sink's thread holds the folder's
    lock must not keep a copy of it: every writer of the folder would wait for as long as it lives."""
    sink = JsonlSink(str(tmp_path / "calls.jsonl"))
    read_end, write_end = os.pipe()
    with _folder_lock(tmp_path):  # what the sink's thread holds for the length of a write
        pid = os.fork()
        if pid == 0:  # the worker lives on (until the parent lets it go)
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
    os.close(read_end)
    try:
        sink.submit('{"call_id": "after-the-fork"}')
        assert sink.flush(5)
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)
    assert sink.shutdown(5)
    assert [r["call_id"] for r in read_records(tmp_path / "calls.jsonl")] == ["after-the-fork"]


def test_a_second_server_gets_a_spool_of_its_own(tmp_path: Path) -> None:
    settings = Settings.from_env({}, spool_dir=str(tmp_path / "spool"))
    default, other = from_spec("http", settings), from_spec("http:http://10.0.0.9:4318", settings)
    assert isinstance(default, HttpSink) and isinstance(other, HttpSink)
    assert default.transport.config.spool_dir == str(tmp_path / "spool")
    assert other.transport.config.endpoint == "http://10.0.0.9:4318"
    assert other.transport.config.spool_dir not in (None, default.transport.config.spool_dir)


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "in-a-fanout"])
def test_an_http_sink_without_an_endpoint_sends_where_the_callback_was_told(
    provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nested: bool
) -> None:
    """`init(endpoint=X, api_key=K, sinks=[HttpSink(), ...])`: the sink that names no endpoint goes to X
    with K, not to LITELENS_ENDPOINT; one that names its own endpoint never gets K. The same within a
    `FanOut` given as one of the sinks."""
    monkeypatch.setenv("LITELENS_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("LITELENS_API_KEY", raising=False)
    with Receiver(api_key="ll_callbacks_key") as ours, Receiver() as other:
        sinks: list[Sink] = [HttpSink(), HttpSink(other.url, name="other")]
        callback = Callback(
            endpoint=ours.url,
            api_key="ll_callbacks_key",
            spool_dir=str(tmp_path / "spool"),
            sinks=[FanOut(*sinks)] if nested else sinks,
        )
        litellm.callbacks.append(callback)
        try:
            litellm.completion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                api_base=provider.url,
                api_key=KEY,
            )
            assert callback.flush(timeout=10)
        finally:
            unregister(callback)
            callback.shutdown(timeout=5)
        assert [r["request_model"] for r in ours.records] == ["gpt-4o-mini"]
        assert len(other.records) == 1
        assert "Authorization" not in other.bodies[0]["headers"]


@pytest.mark.parametrize("form", ["sinks-argument", "LITELENS_SINKS", "object"])
def test_a_sink_naming_another_server_never_gets_the_callbacks_key(
    provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """The callback's key is for its own server: `http:URL`, in `sinks=` or in LITELENS_SINKS, and an
    `HttpSink(URL)` that read the same LITELENS_API_KEY as the callback, send the other server none."""
    with Receiver(api_key="ll_callbacks_key") as ours, Receiver() as other:
        monkeypatch.setenv("LITELENS_ENDPOINT", ours.url)
        monkeypatch.setenv("LITELENS_API_KEY", "ll_callbacks_key")
        monkeypatch.setenv("LITELENS_SPOOL_DIR", str(tmp_path / "spool"))
        if form == "LITELENS_SINKS":
            monkeypatch.setenv("LITELENS_SINKS", f"http,http:{other.url}")
        sinks = {
            "sinks-argument": ["http", f"http:{other.url}"],
            "LITELENS_SINKS": None,
            "object": [HttpSink(), HttpSink(other.url, name="other")],
        }[form]
        callback = Callback(sinks=sinks)
        litellm.callbacks.append(callback)
        try:
            litellm.completion(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                api_base=provider.url,
                api_key=KEY,
            )
            assert callback.flush(timeout=10)
        finally:
            unregister(callback)
            callback.shutdown(timeout=5)
        assert len(ours.records) == 1 and len(other.records) == 1
        assert "Authorization" not in other.bodies[0]["headers"]


def test_a_relative_jsonl_path_stays_where_it_was_when_the_app_changes_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    writer = JsonlWriter("calls.jsonl", max_bytes=60)
    writer.write([b'{"call_id": "a"}'])
    monkeypatch.chdir(tmp_path / "elsewhere")  # a daemon's chdir("/"), a test runner's tmp dir
    writer.write([b'{"call_id": "b", "pad": "' + b"x" * 60 + b'"}'])  # past max_bytes: rotates first
    writer.close()
    assert not list((tmp_path / "elsewhere").iterdir())
    assert [r["call_id"] for r in read_records(tmp_path / "app" / "calls.jsonl")] == ["a", "b"]


# --------------------------------------------------------------------------------------------------
# JSONL retention: keep_files and keep_age_s


def _stamp(seconds_ago: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - seconds_ago)) + ".000000"


def _lines_by_hand(files: list[Path]) -> list[bytes]:
    """The files' lines, concatenated as `cat`/`zcat` would: no reader of ours in between."""
    lines: list[bytes] = []
    for f in files:
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        lines += data.splitlines()
    return lines


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_jsonl_keeps_the_newest_rotations_and_every_record_in_them_once(
    tmp_path: Path, compress: bool
) -> None:
    """A process that ran for months holds `keep_files` rotated files and the live one: the newest, and
    concatenated they are the last records written, each once, in order."""
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=4_000, gzip=compress, keep_files=3, max_queue=100_000)
    records = [{"call_id": f"c{i:05d}", "text": "x" * (i % 200)} for i in range(3_000)]
    for record in records:
        sink.submit(json.dumps(record))
    assert sink.shutdown(timeout=30)
    stats = sink.stats()
    assert stats["written"] == 3_000 and stats["rotations"] > 50
    files = rotated_files(path)
    assert len(files) == 3 and all(f.name.endswith(".gz") == compress for f in files)
    assert sorted(os.listdir(tmp_path)) == sorted([f.name for f in files] + [path.name])
    assert stats["deleted"] == stats["rotations"] - 3 and stats["delete_failed"] == 0
    kept = [json.loads(line) for line in _lines_by_hand([*files, path])]
    assert kept == records[-len(kept) :] and len(kept) > 3 * 4_000 // 300
    assert list(read_records(path)) == kept

    # keep_files=0: no rotated file stays, the live file does.
    nothing = JsonlSink(str(tmp_path / "only-live.jsonl"), max_bytes=200, keep_files=0)
    for i in range(50):
        nothing.submit(json.dumps({"i": i, "text": "x" * 50}))
    assert nothing.shutdown(10) and nothing.stats()["rotations"] > 5
    assert rotated_files(nothing.path) == [] and [r["i"] for r in read_records(nothing.path)][-1] == 49


def test_jsonl_a_rotation_is_not_deleted_while_it_compresses(tmp_path: Path) -> None:
    """keep_files=1, and the next rotation comes while the one before is still being gzipped on its
    thread: that one is left to its compression, deleted right after it, and the newest alone stays."""
    path = tmp_path / "calls.jsonl"
    blob = os.urandom(8 << 20).hex()  # 16 MiB: gzip takes a while over it
    writer = JsonlWriter(path, max_bytes=None, keep_files=1)
    writer.write([b'{"text": "%s"}' % blob[i : i + 4000].encode() for i in range(0, len(blob), 4000)])
    first = writer.rotate()
    assert first is not None
    deadline = time.monotonic() + 10
    while not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] and time.monotonic() < deadline:
        time.sleep(0.001)  # until the compression has the file open and is writing its copy
    writer.write([b'{"call_id": "last"}'])
    second = writer.rotate()
    assert second is not None
    with _folder_lock(tmp_path):  # the compression cannot finish meanwhile
        if [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]:  # (a fast machine: done already)
            assert first.exists() and writer.deleted == 0  # not pulled from under the compression
    assert writer.close(30)
    assert writer.deleted == 1 and writer.delete_failures == 0
    assert rotated_files(path) == [Path(f"{second}.gz")]
    assert sorted(os.listdir(tmp_path)) == [f"{second.name}.gz", path.name]
    assert [r.get("call_id") for r in read_records(path)] == ["last"]


def test_jsonl_deletes_rotations_past_their_age(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """keep_age_s: rotations from last week (an earlier run's, a crash's plain-and-gz pair) go when a
    writer opens, and a quiet app's own rotations go once they pass the age, with no write to wait for."""
    path = tmp_path / "calls.jsonl"
    week, hour = _stamp(7 * 86400), _stamp(3600)
    (tmp_path / f"calls.{week}.jsonl.gz").write_bytes(gzip.compress(b'{"i": "week"}\n'))
    (tmp_path / f"calls.{week}.jsonl").write_bytes(b'{"i": "week"}\n')  # a crash between .gz and unlink
    (tmp_path / f"calls.{hour}.jsonl.gz").write_bytes(gzip.compress(b'{"i": "hour"}\n'))
    (tmp_path / f"other.{week}.jsonl.gz").write_bytes(gzip.compress(b'{"i": "other"}\n'))  # not ours
    JsonlSink(str(path), keep_age_s=2 * 86400).shutdown(5)  # two days: the hour-old file stays
    assert sorted(os.listdir(tmp_path)) == [f"calls.{hour}.jsonl.gz", f"other.{week}.jsonl.gz"]
    assert [r["i"] for r in read_records(path)] == ["hour"]
    with caplog.at_level(logging.INFO, logger="litelens"):
        sink = JsonlSink(str(path), max_bytes=60, keep_age_s=3.0)
        assert rotated_files(path) == []
        for i in range(6):
            sink.submit(json.dumps({"i": i, "text": "x" * 30}))
        assert sink.flush(5)
    assert sink.stats()["rotations"] >= 3 and len(rotated_files(path)) >= 3
    deadline = time.monotonic() + 10
    while rotated_files(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rotated_files(path) == [] and path.exists()
    stats = sink.stats()
    assert sink.shutdown(5)
    assert stats["deleted"] == 1 + stats["rotations"] and stats["delete_failed"] == 0
    assert [r["i"] for r in read_records(path)] == [5]
    assert sorted(os.listdir(tmp_path)) == [path.name, f"other.{week}.jsonl.gz"]
    # Logged once, then counted.
    assert len([m for m in caplog.messages if "deleted" in m and "keep_age_s" in m]) == 1


def test_jsonl_a_rotation_that_cannot_be_deleted_never_stops_the_writing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.jsonl"
    # Something that cannot be unlinked under a rotated file's name (a folder someone made there).
    stuck = tmp_path / f"calls.{_stamp(86400)}.jsonl"
    stuck.mkdir()
    (stuck / "x").write_text("x")
    with caplog.at_level(logging.WARNING, logger="litelens"):
        sink = JsonlSink(str(path), max_bytes=200, keep_files=2)
        for i in range(100):
            sink.submit(json.dumps({"i": i, "text": "x" * 50}))
        assert sink.shutdown(10)
    stats = sink.stats()
    assert stats["written"] == 100 and stats["failed"] == 0 and stats["rotations"] > 10
    assert stats["delete_failed"] > 1 and stats["deleted"] == stats["rotations"] - 2
    assert len([m for m in caplog.messages if "cannot delete" in m]) == 1
    assert rotated_files(path)[0].name == stuck.name and len(rotated_files(path)) == 3
    shutil.rmtree(stuck)
    assert [r["i"] for r in read_records(path)][-1] == 99


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_sharing_one_jsonl_path_keep_the_newest_rotations(tmp_path: Path) -> None:
    """Workers of one proxy rotating and pruning one path: `keep_files` rotated files are left, every
    record in them once, and what each worker wrote that is left is its last records, none missing
    between them."""
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=2_000, keep_files=4)
    sink.submit(json.dumps({"call_id": "parent"}))
    assert sink.flush(5)
    _four_forked_workers_write_150_each(sink)
    files = rotated_files(path)
    assert len(files) == 4 and all(f.name.endswith(".gz") for f in files)
    assert sorted(os.listdir(tmp_path)) == sorted([f.name for f in files] + [path.name])
    found = [r["call_id"] for r in read_records(path)]
    assert found == [json.loads(line)["call_id"] for line in _lines_by_hand([*files, path])]
    assert max(Counter(found).values()) == 1 and len(found) > 4 * 2_000 // 120
    for n in range(4):
        mine = [int(c.split("-")[1]) for c in found if c.startswith(f"w{n}-")]
        assert mine == list(range(150 - len(mine), 150))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_jsonl_keep_files_with_pid_counts_the_files_of_processes_that_are_gone(tmp_path: Path) -> None:
    """`calls-{pid}.jsonl`: each restart of a proxy brings new process ids. The limits count every
    process's rotated files, and the live file a dead worker left (cut mid-line by its crash) is
    rotated aside, compressed and counted too -- else restarts would grow the folder without end."""
    template = str(tmp_path / "calls-{pid}.jsonl")
    dead = []
    for n in range(3):  # three earlier runs' workers, each gone
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                earlier = JsonlSink(template, max_bytes=100)
                for i in range(30):
                    earlier.submit(json.dumps({"call_id": f"run{n}-{i}"}))
                    earlier.flush(5)
                code = 0 if earlier.shutdown(10) else 3
                with open(earlier.path, "ab") as f:
                    f.write(b'{"call_id": "cut sh')  # what a kill in the middle of a write leaves
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        dead.append(pid)
    for pid in dead:  # runs of earlier days: their files were last written a while ago
        os.utime(tmp_path / f"calls-{pid}.jsonl", (time.time() - 600, time.time() - 600))
    rotations = len(os.listdir(tmp_path)) - 3  # each run's rotated files, and its live one
    assert rotations > 3 * 5
    # A worker killed while it compressed left half a copy.
    (tmp_path / f".tmp-calls-{dead[0]}.{_stamp(60)}.jsonl.{dead[0]}.1.gz").write_bytes(b"\x1f\x8b half")
    sink = JsonlSink(template, max_bytes=100, keep_files=5)
    sink.submit(json.dumps({"call_id": "now"}))
    assert sink.shutdown(10)
    names = sorted(os.listdir(tmp_path))
    # Five rotated files in all, the newest: the last run's live file (rotated aside when this writer
    # started) among them; this process's live file; no live file of a dead process, nor its temporary.
    assert len(names) == 6 and f"calls-{os.getpid()}.jsonl" in names
    assert not [n for n in names if n in {f"calls-{p}.jsonl" for p in dead}]
    assert sink.stats()["deleted"] == rotations + 3 - 5
    last = dead[-1]
    rotated = rotated_files(tmp_path / f"calls-{last}.jsonl")
    assert rotated and all(f.name.endswith(".gz") for f in rotated)
    left = [json.loads(line)["call_id"] for line in _lines_by_hand(rotated)]
    assert left == [f"run2-{i}" for i in range(30 - len(left), 30)]
    assert [r["call_id"] for r in read_records(tmp_path / f"calls-{last}.jsonl")] == left


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_jsonl_keep_age_counts_a_dead_process_file_from_its_last_record(tmp_path: Path) -> None:
    """`calls-{pid}.jsonl` of workers long gone: one last written ten days ago goes with keep_age_s=7d,
    one of an hour ago is kept, rotated aside; one a worker wrote a moment ago is left alone (the id may
    be a live writer's elsewhere, on a folder other hosts share)."""
    dead = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        dead.append(pid)
    for pid, ago in zip(dead, (10 * 86400, 3600, 5), strict=True):
        file = tmp_path / f"calls-{pid}.jsonl"
        file.write_text(json.dumps({"call_id": f"from-{ago}"}) + "\n")
        os.utime(file, (time.time() - ago, time.time() - ago))
    sink = JsonlSink(str(tmp_path / "calls-{pid}.jsonl"), keep_age_s=7 * 86400)
    assert sink.shutdown(5) and sink.stats()["deleted"] == 1
    assert (
        not (tmp_path / f"calls-{dead[0]}.jsonl").exists()
        and rotated_files(tmp_path / f"calls-{dead[0]}.jsonl") == []
    )
    (kept,) = rotated_files(tmp_path / f"calls-{dead[1]}.jsonl")
    _, day, micros, *_ = kept.name.split(".")
    assert abs(_stamp_us(f"{day}.{micros}") / 1e6 - (time.time() - 3600)) < 60 and kept.name.endswith(".gz")
    assert [r["call_id"] for r in read_records(tmp_path / f"calls-{dead[1]}.jsonl")] == ["from-3600"]
    assert [r["call_id"] for r in read_records(tmp_path / f"calls-{dead[2]}.jsonl")] == ["from-5"]
    assert (tmp_path / f"calls-{dead[2]}.jsonl").exists()


def test_jsonl_retention_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A proxy with no code: the short form in LITELENS_SINKS takes the sink's options."""
    monkeypatch.setenv(
        "LITELENS_SINKS", f"jsonl:{tmp_path}/calls.jsonl?max_bytes=200&keep_files=2&keep_age_s=7d"
    )
    monkeypatch.setenv("LITELENS_SPOOL_DIR", "off")
    callback = Callback()
    try:
        for i in range(40):
            callback.transport.submit({"schema": "litelens.call/1", "call_id": f"env-{i}", "status": "ok"})
        assert callback.flush(10)
    finally:
        callback.shutdown(5)
    assert len(rotated_files(tmp_path / "calls.jsonl")) == 2
    assert [r["call_id"] for r in read_records(tmp_path / "calls.jsonl")][-1] == "env-39"
    assert callback.stats()["sink.jsonl.deleted"] > 0

    sink = from_spec(f"jsonl:{tmp_path}/a.jsonl?keep_age_s=12h&max_age_s=3600&gzip=false&max_bytes=none")
    assert isinstance(sink, JsonlSink)
    writer = sink.writer
    assert (writer.keep_age_s, writer.max_age_s, writer.gzip, writer.max_bytes, writer.keep_files) == (
        43200,
        3600,
        False,
        None,
        None,
    )
    sink.shutdown(2)
    for bad, said in [
        ("keep=3", "unknown option 'keep'"),
        ("keep_files=-1", "keep_files='-1'"),
        ("keep_age_s=soon", "keep_age_s='soon'"),
        ("gzip=maybe", "gzip='maybe'"),
    ]:
        with pytest.raises(ValueError, match=said):
            from_spec(f"jsonl:{tmp_path}/b.jsonl?{bad}")
    with pytest.raises(ValueError, match="keep_files"):
        JsonlSink(str(tmp_path / "c.jsonl"), keep_files=-2)


def _files_with_bad_lines(path: Path) -> None:
    """A rotated file (gzipped) and the live file, each with a line that is not JSON: a foreign one in
    the middle of the rotation, and one a crash cut short, followed by the lines written after it."""
    writer = JsonlWriter(path, max_bytes=None)
    writer.write([json.dumps({"i": i}).encode() for i in range(3)])
    writer.close()
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:1], b"a line someone else wrote", *lines[1:]]))
    writer = JsonlWriter(path, max_bytes=None)
    writer.rotate()
    writer.write([json.dumps({"i": 3}).encode(), b'{"i": 4, "usage": {"inp', json.dumps({"i": 5}).encode()])
    assert writer.close(10)
    assert [f.name.endswith(".gz") for f in rotated_files(path)] == [True]


def test_reading_jsonl_records_back_skips_a_line_that_is_not_json_and_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad line -- a file cut short by a crash, a line someone else wrote -- used to raise at that
    line: every record after it was lost to whoever read the file back."""
    path = tmp_path / "calls.jsonl"
    _files_with_bad_lines(path)
    with caplog.at_level(logging.WARNING, logger="litelens"):
        records = jsonl.read_records(path)
        assert [r["i"] for r in records] == [0, 1, 2, 3, 5]
    assert records.skipped == 2
    (rotation,) = rotated_files(path)
    assert records.first_skipped == (rotation, 2)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned  # the first, where it is; then the total
    assert f"line 2 of {rotation}" in warned[0]
    assert f"skipped 2 lines of {path}" in warned[1]


def test_reading_jsonl_records_back_strictly_or_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.jsonl"
    _files_with_bad_lines(path)
    with caplog.at_level(logging.DEBUG, logger="litelens"):
        quiet = jsonl.read_records(path, errors="ignore")
        assert [r["i"] for r in quiet] == [0, 1, 2, 3, 5] and quiet.skipped == 2
    assert not caplog.records
    strict = jsonl.read_records(path, errors="strict")
    assert next(strict) == {"i": 0}
    with pytest.raises(json.JSONDecodeError):
        next(strict)
    with pytest.raises(ValueError, match="errors="):
        jsonl.read_records(path, errors="skip")  # type: ignore[arg-type]
