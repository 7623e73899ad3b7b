"""`litelens tail` as a real process: it follows a JSONL sink across rotations and a real server's query
API, printing each call once (model, status, latency, tokens, cost) as it happens."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litelens.display import format_call
from litelens.jsonl import JsonlWriter, read_records, rotated_files
from litelens.sinks import JsonlSink
from litelens.tail import follow_jsonl
from server_helpers import CLI, ServerProcess, make_record


class Tail:
    """`litelens tail ...` in a child process; its stdout lines arrive on a queue."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        env = {**{k: v for k, v in os.environ.items() if k not in ("LITELENS_API_KEY", "LITELENS_ENDPOINT")},
               "PYTHONUNBUFFERED": "1", **(env or {})}  # fmt: skip
        self.proc = subprocess.Popen(
            [*CLI, "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True).start()

    @staticmethod
    def _read(stream: Any, into: queue.Queue[str]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))

    def ready(self, timeout: float = 60) -> None:
        """Wait for the "following ..." line: from then on, every record written is printed."""
        line = self.errors.get(timeout=timeout)
        assert "litelens tail: following" in line, line

    def take(self, n: int, timeout: float = 30) -> list[str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    made: list[Tail] = []
    yield made
    for tail in made:
        tail.stop()


def record(i: int, **over: Any) -> dict[str, Any]:
    model = f"model-{i:04d}"
    return make_record(f"tail-{i:04d}", request_model=model, response_model=model, cost_usd=0.0001, **over)


def test_tail_follows_a_jsonl_sink_across_rotations(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=3_000)
    sink.submit(json.dumps(record(0)))  # written before tail starts: not printed without --from-start
    assert sink.flush(5)
    tail = Tail("--jsonl", str(path), "--interval", "0.05")
    tails.append(tail)
    tail.ready()
    for i in range(1, 301):
        sink.submit(json.dumps(record(i)))
        if i % 20 == 0:
            sink.flush(5)
            time.sleep(0.03)
    assert sink.shutdown(10)
    assert len(rotated_files(path)) > 10
    lines = tail.take(300)
    models = Counter(line.split()[2] for line in lines)
    assert sorted(models) == [f"model-{i:04d}" for i in range(1, 301)], f"{len(models)} of 300 printed"
    assert max(models.values()) == 1
    assert tail.take(1, timeout=1) == []  # nothing printed twice, later


_STEPPED_CLOCK_WRITER = """
import json, sys, time
from litelens.jsonl import JsonlWriter
writer = JsonlWriter(sys.argv[1])
lines = [line.encode() for line in sys.argv[2:]]
writer.write([lines[0]])
writer.rotate()
writer.write([lines[1]])
# NTP steps the clock back an hour (what the process sees of it: nothing else changes).
real, real_ns = time.time, time.time_ns
time.time, time.time_ns = (lambda: real() - 3600), (lambda: real_ns() - 3600 * 10**9)
writer.rotate()  # the second rotation, right after the first: one poll of tail sees both
writer.write([lines[2]])
writer.close()
"""


def test_tail_prints_each_record_once_in_order_when_the_clock_is_stepped_back(
    tmp_path: Path, tails: list[Tail]
) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps(record(0)) + "\n")  # tail has the live file open, and follows it from now
    tail = Tail("--jsonl", str(path), "--interval", "0.5")
    tails.append(tail)
    tail.ready()
    writer = subprocess.run(
        [sys.executable, "-c", _STEPPED_CLOCK_WRITER, str(path), *(json.dumps(record(i)) for i in (1, 2, 3))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert writer.returncode == 0, writer.stderr
    assert [line.split()[2] for line in tail.take(3)] == ["model-0001", "model-0002", "model-0003"]
    assert tail.take(1, timeout=1.5) == []  # nothing printed twice, later
    assert [r["request_model"] for r in read_records(path)] == [f"model-{i:04d}" for i in range(4)]


def test_tail_from_start_reads_rotated_files_first(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path), max_bytes=1_000)
    for i in range(40):
        sink.submit(json.dumps(record(i)))
    assert sink.shutdown(5)
    tail = Tail("--jsonl", str(path), "--from-start")
    tails.append(tail)
    lines = tail.take(40)
    assert [line.split()[2] for line in lines] == [f"model-{i:04d}" for i in range(40)]


def test_tail_names_the_day_of_calls_not_made_today(tmp_path: Path, tails: list[Tail]) -> None:
    """A line shows the time of day only: reading older calls (`--from-start`, `--since 2d`), calls two
    days apart looked alike. A line naming the day, and the zone the times are in, comes before each
    other day's calls; today's need none."""
    import datetime
    import zoneinfo

    zone = zoneinfo.ZoneInfo("Pacific/Chatham")
    now = time.time()
    starts = [now - 2 * 86400, now - 2 * 86400 + 1, now - 86400, now - 5, now - 4]
    path = tmp_path / "calls.jsonl"
    sink = JsonlSink(str(path))
    for i, start in enumerate(starts):
        sink.submit(json.dumps(record(i, start=start)))
    assert sink.shutdown(5)
    tail = Tail("--jsonl", str(path), "--from-start", env={"TZ": "Pacific/Chatham"})
    tails.append(tail)
    lines = tail.take(8)

    def day(epoch: float) -> str:
        local = datetime.datetime.fromtimestamp(epoch, zone)
        offset = local.strftime("%z")
        return f"-- {local:%Y-%m-%d} (UTC{offset[:3]}:{offset[3:]}) --"

    assert [line if line.startswith("--") else line.split()[2] for line in lines] == [
        day(starts[0]),
        "model-0000",
        "model-0001",
        day(starts[2]),
        "model-0002",
        day(now),
        "model-0003",
        "model-0004",
    ]
    assert lines[1].split()[0] == datetime.datetime.fromtimestamp(starts[0], zone).strftime("%H:%M:%S")


def test_reading_from_the_start_while_rotations_are_compressed_misses_nothing(tmp_path: Path) -> None:
    """What `tail --from-start` and `read_records` listed as plain rotated files may be gzipped (and the
    plain file removed) before they get to it, as a writer compresses in the background."""
    path = tmp_path / "calls.jsonl"
    writer = JsonlWriter(path, max_bytes=1_000, gzip=False)
    writer.write([json.dumps(record(i)).encode() for i in range(20)])
    writer.close()
    assert len(rotated_files(path)) > 3
    deadline = time.monotonic() + 1
    calls = follow_jsonl(path, from_start=True, poll_s=0.05, stop=lambda: time.monotonic() > deadline)
    records = read_records(path)
    first = next(records)
    JsonlWriter(path).close()  # a writer (re)starting with gzip on compresses the plain rotations
    expected = [f"model-{i:04d}" for i in range(20)]
    assert [call["request_model"] for call in calls] == expected
    assert [r["request_model"] for r in [first, *records]] == expected


def test_read_records_misses_nothing_when_the_live_file_rotates_as_it_reads(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    writer = JsonlWriter(path, max_bytes=1_000, gzip=False)
    writer.write([json.dumps(record(i)).encode() for i in range(20)])
    records = read_records(path)
    first = next(records)  # the rotated files are listed and being read
    writer.rotate()  # the live file goes aside, into a rotated file not listed
    writer.write([json.dumps(record(20)).encode()])
    writer.close()
    # What the files held when reading began, each once (the record written since is for the next read).
    assert [r["request_model"] for r in [first, *records]] == [f"model-{i:04d}" for i in range(20)]


def test_tail_skips_bad_lines_without_dying(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.jsonl"
    bad = ['{"call_id": "x", "start_time": 1e300}', '{"call_id": "y", "start_time": NaN}', "not json", "[1]"]
    path.write_text("\n".join([*bad, json.dumps(record(0))]) + "\n")
    tail = Tail("--jsonl", str(path), "--from-start")
    tails.append(tail)
    lines = tail.take(3)
    assert [line.split()[2] for line in lines] == ["?", "?", "model-0000"]
    assert lines[0].startswith("--:--:--")
    assert tail.proc.poll() is None


def test_tail_says_it_skipped_lines_that_are_not_call_records(tmp_path: Path, tails: list[Tail]) -> None:
    """A file with lines that are not records (not a sink's file, or one a crash damaged) printed
    nothing for them: the first is said on stderr, and how many there were when tail stops."""
    path = tmp_path / "calls.jsonl"
    path.write_text(
        "\n".join(["not json", json.dumps(record(0)), "[1]", '{"cut": "by a cra', json.dumps(record(1))])
        + "\n"
    )
    tail = Tail("--jsonl", str(path), "--from-start")
    tails.append(tail)
    tail.ready()
    assert [line.split()[2] for line in tail.take(2)] == ["model-0000", "model-0001"]
    said = tail.errors.get(timeout=10)
    assert said.startswith("litelens tail: skipped a line that is not a call record: b'not json'"), said
    tail.proc.send_signal(signal.SIGINT)
    assert tail.proc.wait(10) == 0
    deadline = time.monotonic() + 10
    while (
        "litelens tail: skipped 3 lines that are not call records" not in said and time.monotonic() < deadline
    ):
        with contextlib.suppress(queue.Empty):
            said = tail.errors.get(timeout=0.2)
    assert said == "litelens tail: skipped 3 lines that are not call records"


def test_tail_follows_a_file_emptied_in_place(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps(record(0)) + "\n")
    tail = Tail("--jsonl", str(path), "--from-start")
    tails.append(tail)
    assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
    path.write_text("")  # `: > calls.jsonl`, or logrotate's copytruncate
    time.sleep(0.5)  # a few polls see the empty file
    with path.open("a") as f:
        f.write(json.dumps(record(1)) + "\n")
    assert [line.split()[2] for line in tail.take(1, timeout=10)] == ["model-0001"]


def test_tail_reads_a_damaged_gzipped_rotation_up_to_the_damage(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.jsonl"
    lines = "".join(json.dumps(record(i)) + "\n" for i in range(100)).encode()
    whole = gzip.compress(lines)
    (tmp_path / "calls.20260101T000000Z.000000.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # a full disk
    (tmp_path / "calls.20260101T010000Z.000000.jsonl").write_text(json.dumps(record(100)) + "\n")
    path.write_text("")
    tail = Tail("--jsonl", str(path), "--from-start")
    tails.append(tail)
    intact = zlib.decompressobj(31).decompress(whole[: len(whole) // 2]).count(b"\n")
    assert 0 < intact < 100
    models = [line.split()[2] for line in tail.take(intact + 1)]
    assert models == [f"model-{i:04d}" for i in range(intact)] + ["model-0100"]
    assert tail.proc.poll() is None


def test_tail_follows_the_files_of_a_per_process_sink_path(tmp_path: Path, tails: list[Tail]) -> None:
    """`{pid}` in the sink's path is each writer's process id: tail follows every file it stands for
    (it exited, listing them, and before that followed a file of its own process id, which no one
    writes), and names them on stderr."""
    for pid in (101, 202):
        (tmp_path / f"calls-{pid}.jsonl").write_text(
            json.dumps(record(pid)) + "\n"
        )  # before tail: not printed
    old = gzip.compress((json.dumps(record(100)) + "\n").encode())
    (tmp_path / "calls-101.20260101T000000Z.000000.jsonl.gz").write_bytes(old)
    tail = Tail("--jsonl", str(tmp_path / "calls-{pid}.jsonl"), "--interval", "0.05")
    tails.append(tail)
    said = tail.errors.get(timeout=60)
    assert said.startswith(f"litelens tail: following {tmp_path}/calls-{{pid}}.jsonl"), said
    assert f"{tmp_path}/calls-101.jsonl, {tmp_path}/calls-202.jsonl" in said, said
    with (tmp_path / "calls-202.jsonl").open("a") as f:
        f.write(json.dumps(record(1)) + "\n")
    assert [line.split()[2] for line in tail.take(1)] == ["model-0001"]
    with (tmp_path / "calls-101.jsonl").open("a") as f:
        f.write(json.dumps(record(2)) + "\n")
    assert [line.split()[2] for line in tail.take(1)] == ["model-0002"]
    assert tail.take(1, timeout=1) == []
    assert tail.proc.poll() is None
    # A folder per process is not looked for: said, rather than a folder named "{pid}" waited for.
    out = subprocess.run(
        [*CLI, "tail", "--jsonl", str(tmp_path / "{pid}" / "calls.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "put it in the file name" in out.stderr, out


_PROCESS_WRITER = """
import json, sys, time
from litelens.sinks import JsonlSink
path, lines, first = sys.argv[1], open(sys.argv[2]).read().splitlines(), int(sys.argv[3])
sink = JsonlSink(path, max_bytes=3_000)
for line in lines[:first]:
    sink.submit(line)
assert sink.flush(10)
print("written", flush=True)
sys.stdin.readline()  # the test's go-ahead
for i, line in enumerate(lines[first:]):
    sink.submit(line)
    if i % 10 == 9:
        sink.flush(10)
        time.sleep(0.02)  # a stream of calls: rotations fall between tail's polls, and interleave
assert sink.shutdown(30)
"""


def test_tail_prints_every_process_file_of_a_pid_path_once_across_rotations(
    tmp_path: Path, tails: list[Tail]
) -> None:
    """A proxy's workers each write `calls-{pid}.jsonl` and rotate it (gzipped) on their own: tail
    prints each call of every worker once, those of a worker started after tail too, and nothing a
    worker wrote before tail started."""
    path = tmp_path / "calls-{pid}.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}

    def writer(n: int, first: int) -> subprocess.Popen[str]:
        lines = tmp_path / f"lines-{n}.txt"
        lines.write_text("".join(json.dumps(record(n * 1000 + i)) + "\n" for i in range(120)))
        return subprocess.Popen(
            [sys.executable, "-c", _PROCESS_WRITER, str(path), str(lines), str(first)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip

    early = writer(0, 30)  # running when tail starts: its first 30 calls are not printed
    assert early.stdout is not None and early.stdout.readline() == "written\n"
    tail = Tail("--jsonl", str(path), "--interval", "0.05")
    tails.append(tail)
    tail.ready()
    late = [writer(n, 0) for n in (1, 2)]  # workers (re)started after tail: files tail never saw
    for proc in [early, *late]:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    for proc in [early, *late]:
        assert proc.wait(60) == 0
    files = {f.name.split(".")[0] for f in tmp_path.iterdir() if f.name.startswith("calls-")}
    assert files == {f"calls-{p.pid}" for p in [early, *late]}
    assert all(len(rotated_files(tmp_path / f"calls-{p.pid}.jsonl")) > 3 for p in [early, *late])
    expected = [f"model-{i:04d}" for i in range(30, 120)]
    expected += [f"model-{n * 1000 + i:04d}" for n in (1, 2) for i in range(120)]
    models = Counter(line.split()[2] for line in tail.take(len(expected)))
    assert sorted(models) == sorted(expected), f"{len(models)} of {len(expected)} printed"
    assert max(models.values()) == 1
    assert tail.take(1, timeout=1) == []  # nothing printed twice, later


def test_tail_from_start_prints_every_process_file_of_a_pid_path(tmp_path: Path, tails: list[Tail]) -> None:
    """`--from-start` with `{pid}`: the rotated files (gzipped or not) and live file of every process,
    also of one that is gone and left only rotated files, each process's oldest first; and a line that
    is no record, in any of them, is skipped and counted."""
    (tmp_path / "calls-101.20260101T000000Z.000000.jsonl.gz").write_bytes(
        gzip.compress((json.dumps(record(0)) + "\n" + json.dumps(record(1)) + "\n").encode())
    )
    (tmp_path / "calls-101.20260101T010000Z.000000.jsonl").write_text(json.dumps(record(2)) + "\n")
    (tmp_path / "calls-101.jsonl").write_text(json.dumps(record(3)) + "\nnot json\n")
    (tmp_path / "calls-55.20251231T000000Z.000000.jsonl.gz").write_bytes(
        gzip.compress((json.dumps(record(10)) + "\n").encode())
    )
    late = json.dumps(record(21))  # being written when tail starts: half of it is in the file
    (tmp_path / "calls-202.jsonl").write_text("[1]\n" + json.dumps(record(20)) + "\n" + late[:40])
    (tmp_path / "calls.jsonl").write_text(json.dumps(record(99)) + "\n")  # not a process's file
    (tmp_path / "calls-x1.jsonl").write_text(json.dumps(record(98)) + "\n")
    tail = Tail("--jsonl", str(tmp_path / "calls-{pid}.jsonl"), "--from-start")
    tails.append(tail)
    tail.ready()
    lines = [line.split()[2] for line in tail.take(6)]
    assert sorted(lines) == [
        "model-0000",
        "model-0001",
        "model-0002",
        "model-0003",
        "model-0010",
        "model-0020",
    ]
    order = {model: n for n, model in enumerate(lines)}
    assert order["model-0000"] < order["model-0001"] < order["model-0002"] < order["model-0003"]
    assert tail.take(1, timeout=1) == []
    with (tmp_path / "calls-202.jsonl").open("a") as f:
        f.write(late[40:] + "\n")
    assert [line.split()[2] for line in tail.take(1)] == ["model-0021"]
    tail.proc.send_signal(signal.SIGINT)
    assert tail.proc.wait(10) == 0
    said = ""
    deadline = time.monotonic() + 10
    while "lines that are not call records" not in said and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            said = tail.errors.get(timeout=0.2)
    assert said == "litelens tail: skipped 2 lines that are not call records"


def test_follow_lets_go_of_a_process_file_that_was_deleted(tmp_path: Path) -> None:
    """A worker's file deleted (old logs cleared) is closed, so its space is freed; a file of that name
    written again later (the process id given to a new worker) is followed from its start."""
    stop = threading.Event()
    calls = follow_jsonl(tmp_path / "calls-{pid}.jsonl", poll_s=0.02, stop=stop.is_set)
    seen: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [seen.put(c["request_model"]) for c in calls], daemon=True)
    reader.start()
    live = tmp_path / "calls-4242.jsonl"
    try:
        live.write_text(json.dumps(record(0)) + "\n")
        assert seen.get(timeout=5) == "model-0000"
        live.unlink()

        def held() -> list[str]:
            fds = Path("/proc/self/fd")
            return [t for t in (os.readlink(fd) for fd in fds.iterdir() if fd.exists()) if "calls-4242" in t]

        deadline = time.monotonic() + 5
        while held() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held() == []
        live.write_text(json.dumps(record(1)) + "\n")
        assert seen.get(timeout=5) == "model-0001"
        time.sleep(0.2)
        assert seen.empty()
    finally:
        stop.set()
        reader.join(5)


# With the URL the callback is given, ingest path and all, it polled /v1/events/api/calls: 404.
@pytest.mark.parametrize("suffix", ["", "/v1/events/"])
def test_tail_polls_a_server(project_server: ServerProcess, tails: list[Tail], suffix: str) -> None:
    client = project_server.client()
    now = time.time()
    first = [record(i, start=now - 5 + i * 0.01) for i in range(3)]
    assert client.post_json("/v1/events", {"records": first}).status == 200
    tail = Tail("--server", project_server.url + suffix, "--api-key", project_server.key, "--interval", "0.2")
    tails.append(tail)
    lines = tail.take(3)
    assert [line.split()[2] for line in lines] == ["model-0000", "model-0001", "model-0002"]
    failed = record(
        3,
        start=time.time(),
        status="error",
        error={"type": "RateLimitError", "message": "slow down", "status_code": 429},
    )
    assert client.post_json("/v1/events", {"records": [failed, record(4, start=time.time())]}).status == 200
    later = tail.take(2)
    assert len(later) == 2
    err = next(line for line in later if "model-0003" in line)
    assert " ERR " in err and "RateLimitError" in err
    # Every line says what a terminal user wants to see: status, model, latency, tokens, cost.
    expected = format_call(client.get_json("/api/calls/tail-0000"))
    assert lines[0].split()[1:] == expected.split()[1:]
    assert " ms" in lines[0] and "tok" in lines[0] and "$" in lines[0]
    assert tail.take(1, timeout=1.5) == []


def test_tail_goes_on_printing_after_a_call_from_a_clock_running_hours_fast(
    project_server: ServerProcess, tails: list[Tail]
) -> None:
    # Ingest takes calls stamped up to a day ahead (a client whose clock runs fast). The tail looked
    # back from the newest start it had seen, so after such a call it asked only for calls starting
    # hours from now, and printed nothing more until the real clock got there.
    client = project_server.client()
    now = time.time()
    ahead = record(0, start=now + 2 * 3600)
    assert client.post_json("/v1/events", {"records": [record(1, start=now - 1), ahead]}).status == 200
    tail = Tail("--server", project_server.url, "--api-key", project_server.key, "--interval", "0.2")
    tails.append(tail)
    assert sorted(line.split()[2] for line in tail.take(2)) == ["model-0000", "model-0001"]
    time.sleep(0.6)  # a few polls after the one that saw the call from the future
    assert client.post_json("/v1/events", {"records": [record(2, start=time.time())]}).status == 200
    assert [line.split()[2] for line in tail.take(1, timeout=10)] == ["model-0002"]
    assert tail.take(1, timeout=1.0) == []  # and still each call once


@pytest.mark.parametrize("late", ["slow-clock", "stored-late"])
def test_tail_prints_a_call_stored_now_whatever_its_start_time(
    db_project_server: ServerProcess, tails: list[Tail], late: str
) -> None:
    # The tail asked for calls started after the newest start it had seen, less 5 minutes. A call from
    # a client whose clock runs 30 minutes slow, or a 20-minute stream spooled while the server was away
    # and delivered an hour after it started, lay behind that, and was never printed.
    key = db_project_server.create_key(f"tail-{late}")  # a project of its own
    client = db_project_server.client(key)
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time() - 1)]}).status == 200
    tail = Tail("--server", db_project_server.url, "--api-key", key, "--interval", "0.2")
    tails.append(tail)
    assert _calls(tail.take(1)) == ["model-0000"]
    if late == "slow-clock":
        call = record(1, start=time.time() - 1800)
    else:
        start = time.time() - 3600
        call = record(1, start=start, end_time=start + 1200, duration_ms=1_200_000.0, stream=True)
    assert client.post_json("/v1/events", {"records": [call]}).status == 200
    assert _calls(tail.take(2, timeout=10)) == ["model-0001"]  # (with its day's line, before midnight)
    # Each call once: the next polls ask after it.
    assert client.post_json("/v1/events", {"records": [record(2, start=time.time())]}).status == 200
    assert _calls(tail.take(1, timeout=10)) == ["model-0002"]
    assert tail.take(1, timeout=1.0) == []


def _calls(lines: list[str]) -> list[str]:
    """The models of the call lines among `lines` (not the lines naming a day)."""
    return [line.split()[2] for line in lines if not line.startswith("-- ")]


class OlderServer:
    """A litelens server as it answered before arrival order, in front of a real one: `/api/calls`
    refuses `sort=arrival` and the `arrived_*` parameters as it refused any it did not know (422), and
    its answer has no `arrived_through`, nor an `arrival` for each call."""

    def __init__(self, upstream: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if "arrival" in query.get("sort", []) or {"arrived_after", "arrived_through"} & set(query):
                    self.answer(422, b'{"detail": "unknown query parameter"}')
                    return
                headers = {"Authorization": self.headers.get("Authorization", "")}
                try:
                    with urllib.request.urlopen(
                        urllib.request.Request(upstream + self.path, headers=headers)
                    ) as r:
                        page = json.loads(r.read())
                except urllib.error.HTTPError as exc:
                    self.answer(exc.code, exc.read())
                    return
                page.pop("arrived_through", None)
                for call in page.get("calls") or []:
                    call.pop("arrival", None)
                self.answer(200, json.dumps(page).encode())

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_tail_follows_an_older_server_by_start_time(project_server: ServerProcess, tails: list[Tail]) -> None:
    # A CLI upgraded before its server refused to follow it ("upgrade that litelens server"): the
    # server's answer had no `arrived_through`. It still lists calls by start time, as tail followed.
    key = project_server.create_key("tail-older-server")  # a project of its own
    client = project_server.client(key)
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time() - 1)]}).status == 200
    older = OlderServer(project_server.url)
    try:
        tail = Tail("--server", older.url, "--api-key", key, "--interval", "0.2")
        tails.append(tail)
        assert _calls(tail.take(1)) == ["model-0000"], list(tail.errors.queue)
        warning = tail.errors.get(timeout=5)
        assert "older litelens server" in warning and "following by start time" in warning, warning
        now = time.time()
        calls = [record(1, start=now), record(2, start=now - 60)]  # a call that ended after a later one
        assert client.post_json("/v1/events", {"records": calls}).status == 200
        assert sorted(_calls(tail.take(2, timeout=10))) == ["model-0001", "model-0002"]
        assert tail.take(1, timeout=1.0) == []  # each call once
        assert tail.proc.poll() is None
        assert tail.errors.empty(), list(tail.errors.queue)  # the warning is said once
    finally:
        older.httpd.shutdown()
        older.httpd.server_close()


def test_tail_waits_for_a_restarting_server(sqlite_server: ServerProcess, tails: list[Tail]) -> None:
    client = sqlite_server.client()
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time())]}).status == 200
    tail = Tail("--server", sqlite_server.url, "--api-key", sqlite_server.key, "--interval", "0.2")
    tails.append(tail)
    assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
    key = sqlite_server.key
    assert sqlite_server.stop() == 0
    assert "lost" in tail.errors.get(timeout=10)
    sqlite_server.start()  # same port, same database
    sqlite_server.key = key
    assert (
        sqlite_server.client().post_json("/v1/events", {"records": [record(1, start=time.time())]}).status
        == 200
    )
    assert [line.split()[2] for line in tail.take(1)] == ["model-0001"]
    assert tail.proc.poll() is None


class FlakyProxy:
    """A reverse proxy on loopback in front of `upstream`: answers `status` (with `Retry-After`, if given)
    to the `failures` requests after the first, as nginx does while the server behind it restarts, then
    forwards again. `asked` holds the time of each request."""

    def __init__(self, upstream: str, status: int, failures: int, retry_after: str | None = None) -> None:
        proxy = self
        self.failed = 0
        self.asked: list[float] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.asked.append(time.monotonic())
                if proxy.served and proxy.failed < failures:
                    proxy.failed += 1
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                proxy.served = True
                headers = {"Authorization": self.headers.get("Authorization", "")}
                with urllib.request.urlopen(
                    urllib.request.Request(upstream + self.path, headers=headers)
                ) as r:
                    body = r.read()
                self.send_response(r.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.served = False
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.mark.parametrize(("status", "retry_after"), [(502, None), (503, "1"), (504, None)])
def test_tail_waits_while_a_proxy_says_the_server_is_away(
    project_server: ServerProcess, tails: list[Tail], status: int, retry_after: str | None
) -> None:
    client = project_server.client()
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time())]}).status == 200
    failures = 1 if retry_after else 3
    proxy = FlakyProxy(project_server.url, status, failures, retry_after)
    try:
        tail = Tail("--server", proxy.url, "--api-key", project_server.key, "--interval", "0.1")
        tails.append(tail)
        assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
        assert f"answered {status}; waiting" in tail.errors.get(timeout=10)
        assert client.post_json("/v1/events", {"records": [record(1, start=time.time())]}).status == 200
        assert [line.split()[2] for line in tail.take(1)] == ["model-0001"], tail.errors.queue
        assert "is back" in tail.errors.get(timeout=5)
        assert tail.proc.poll() is None
        # Not asked again every 0.1 s meanwhile: after the proxy's Retry-After, or waits that double
        # (0.2, 0.4, 0.8 s) after each "not now".
        gap = proxy.asked[failures + 1] - proxy.asked[failures]
        assert gap >= (1.0 if retry_after else 0.8) * 0.95, proxy.asked
    finally:
        proxy.httpd.shutdown()
        proxy.httpd.server_close()


def test_tail_reads_a_retry_after_date_without_a_zone_as_gmt(
    project_server: ServerProcess, tails: list[Tail]
) -> None:
    # An HTTP date is GMT, also in the asctime form, which names no zone. Read as local time on a
    # machine at UTC-3:30, a wait of 2 s was one of 3.5 hours, and the tail stalled for its 60 s cap.
    client = project_server.client()
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time())]}).status == 200
    date = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(time.time() + 3))
    proxy = FlakyProxy(project_server.url, 503, 1, date)
    try:
        tail = Tail(
            "--server", proxy.url, "--api-key", project_server.key, "--interval", "0.1",
            env={"TZ": "America/St_Johns"},
        )  # fmt: skip
        tails.append(tail)
        assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
        assert "answered 503; waiting" in tail.errors.get(timeout=10)
        assert client.post_json("/v1/events", {"records": [record(1, start=time.time())]}).status == 200
        assert [line.split()[2] for line in tail.take(1, timeout=15)] == ["model-0001"], tail.errors.queue
        gap = proxy.asked[2] - proxy.asked[1]
        assert 0.5 <= gap <= 10, proxy.asked  # the date's wait: neither none nor the cap
    finally:
        proxy.httpd.shutdown()
        proxy.httpd.server_close()


def test_tail_takes_durations_like_export(
    project_server: ServerProcess, tails: list[Tail], tmp_path: Path
) -> None:
    client = project_server.client()
    assert client.post_json("/v1/events", {"records": [record(0, start=time.time() - 120)]}).status == 200
    tail = Tail(
        "--server", project_server.url, "--api-key", project_server.key, "--since", "5m", "--interval", "0.2"
    )
    tails.append(tail)
    assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
    # A path that is no file is one line, not a traceback.
    out = subprocess.run([*CLI, "tail", "--jsonl", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.strip().endswith("(Is a directory)"), out.stderr


def test_tail_says_what_is_wrong(project_server: ServerProcess, tails: list[Tail]) -> None:
    tail = Tail("--server", project_server.url, "--api-key", "ll_wrong")
    tails.append(tail)
    assert tail.proc.wait(30) == 1
    assert "refused the API key" in tail.errors.get(timeout=5)
    bare = {k: v for k, v in os.environ.items() if k != "LITELENS_ENDPOINT"}
    out = subprocess.run([*CLI, "tail"], capture_output=True, text=True, timeout=60, env=bare)
    assert out.returncode == 2 and "--jsonl" in out.stderr and "LITELENS_ENDPOINT" in out.stderr


@pytest.mark.parametrize("how", ["environment", "--endpoint"])
def test_tail_finds_the_server_where_the_callback_sends(
    project_server: ServerProcess, tails: list[Tail], how: str
) -> None:
    """`export` and `doctor` take --endpoint or LITELENS_ENDPOINT; a bare `tail` said "give --server"."""
    key = project_server.create_key(f"tail-{how}")  # a project of its own: no other test's calls in it
    assert project_server.client(key).post_json("/v1/events", {"records": [record(0)]}).status == 200
    config = {"LITELENS_API_KEY": key}
    if how == "environment":
        tail = Tail(
            "--interval", "0.2", env={**config, "LITELENS_ENDPOINT": project_server.url + "/v1/events"}
        )
    else:
        tail = Tail("--endpoint", project_server.url, "--interval", "0.2", env=config)
    tails.append(tail)
    assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]


def test_a_tiny_cost_reads_as_what_it_cost_not_as_nothing() -> None:
    """An embedding of 22 tokens costs $0.00000044: the line said "$0.000000", a call that cost nothing,
    where the dashboard says "$0.00000044"."""

    def cost(value: float | None) -> str:
        line = format_call({"status": "ok", "model": "m", "cost_usd": value, "call_type": "embedding"})
        return line.split()[-2]

    assert cost(4.4e-07) == "$0.00000044"
    assert cost(0.000123) == "$0.00012"
    assert cost(0.0042) == "$0.00420"
    assert cost(0.25) == "$0.2500"
    assert cost(1234.5) == "$1,234.50"
    assert cost(0) == "$0"
    assert cost(None) == "-"


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_follow_reads_every_rotation_when_keep_files_deleted_the_one_it_had_open(
    tmp_path: Path, compress: bool
) -> None:
    """With `keep_files=1`, two rotations between two polls: the file tail had open is deleted, and the
    oldest rotated file it has not seen is a later one, whose records it must still print."""
    path = tmp_path / "calls.jsonl"
    writer = JsonlWriter(path, max_bytes=None, keep_files=1, gzip=compress)
    writer.write([json.dumps(record(0)).encode()])
    deadline = time.monotonic() + 1.5
    calls = follow_jsonl(path, from_start=True, poll_s=0.02, stop=lambda: time.monotonic() > deadline)
    assert next(calls)["request_model"] == "model-0000"  # tail has the live file open
    writer.write([json.dumps(record(1)).encode()])
    writer.rotate()
    writer.write([json.dumps(record(2)).encode()])
    writer.rotate()  # the file tail has open is deleted: only the newest rotation stays
    writer.write([json.dumps(record(3)).encode()])
    assert writer.close(10) and writer.deleted == 1
    assert [call["request_model"] for call in calls] == [f"model-{i:04d}" for i in (1, 2, 3)]


def test_tail_follows_a_file_emptied_and_written_again_before_it_looked(
    tmp_path: Path, tails: list[Tail]
) -> None:
    """copytruncate, then a writer quick enough to write as much as tail had read before tail's next
    look: the size never drops below tail's position, and the new records must all be printed, from the
    first, not from the middle of one."""
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps(record(0)) + "\n")
    tail = Tail("--jsonl", str(path), "--from-start", "--interval", "2")
    tails.append(tail)
    assert [line.split()[2] for line in tail.take(1)] == ["model-0000"]
    # Emptied and refilled at once, with more than was there: never seen empty nor shorter.
    path.write_text(json.dumps(record(1)) + "\n" + json.dumps(record(2)) + "\n")
    assert [line.split()[2] for line in tail.take(2, timeout=15)] == ["model-0001", "model-0002"]


_SHARED_WRITER = """
import json, sys, time
from litelens.sinks import JsonlSink
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sink = JsonlSink(path, max_bytes=20_000)
for i in range(n):
    sink.submit(json.dumps({"schema": "litelens.call/1", "call_id": f"{tag}-{i}", "pad": "x" * (i % 200)}))
    if i % 100 == 99:
        time.sleep(0.01)  # a stream of calls, not one burst: rotations fall between tail's polls
assert sink.shutdown(30)
"""


def test_follow_sees_each_record_once_while_several_processes_rotate_one_path(tmp_path: Path) -> None:
    """The workers of a proxy sharing one sink path rotate it in turn, each when its own write would pass
    `max_bytes`: a file tail has open is moved aside by another process than the one tail saw write it,
    often two rotations fall between two polls, and gzip replaces rotated files meanwhile."""
    path = tmp_path / "calls.jsonl"
    stop = threading.Event()
    calls = follow_jsonl(path, poll_s=0.02, stop=stop.is_set)
    seen: Counter[str] = Counter()
    reader = threading.Thread(target=lambda: seen.update(c["call_id"] for c in calls), daemon=True)
    reader.start()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    writers = [
        subprocess.Popen([sys.executable, "-c", _SHARED_WRITER, str(path), f"w{n}", "1500"], env=env)
        for n in range(3)
    ]
    for writer in writers:
        assert writer.wait(60) == 0
    deadline = time.monotonic() + 10
    while len(seen) < 4500 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # a record read twice would show up meanwhile
    stop.set()
    reader.join(5)
    assert len(rotated_files(path)) > 10  # many rotations, by all three
    assert seen == Counter({f"w{n}-{i}": 1 for n in range(3) for i in range(1500)})


def test_follow_prints_only_new_calls_of_a_process_id_used_again(tmp_path: Path) -> None:
    """A new worker may get the process id of one from an earlier run, whose rotated files are still
    there: tail prints what the new worker writes (and rotates), not the old run's calls."""
    old = gzip.compress((json.dumps(record(0)) + "\n").encode())
    (tmp_path / "calls-77.20260101T000000Z.000000.jsonl.gz").write_bytes(old)
    stop = threading.Event()
    calls = follow_jsonl(tmp_path / "calls-{pid}.jsonl", poll_s=0.02, stop=stop.is_set)
    seen: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [seen.put(c["request_model"]) for c in calls], daemon=True)
    reader.start()
    try:
        writer = JsonlWriter(tmp_path / "calls-77.jsonl", gzip=False)
        writer.write([json.dumps(record(1)).encode()])
        writer.rotate()  # maybe before tail saw the live file: the rotation is new, and read
        writer.write([json.dumps(record(2)).encode()])
        writer.close()
        assert [seen.get(timeout=5), seen.get(timeout=5)] == ["model-0001", "model-0002"]
        time.sleep(0.3)
        assert seen.empty()
    finally:
        stop.set()
        reader.join(5)
