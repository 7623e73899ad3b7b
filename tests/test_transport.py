"""The HTTP sender against a real loopback receiver: what arrives, when, and what happens when it can't."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from litelens import spool as spool_module
from litelens.config import Settings
from litelens.sinks import HttpSink
from litelens.spool import Spool
from litelens.testing.receiver import Receiver
from litelens.transport import Transport, TransportConfig, parse_retry_after

MakeTransport = Callable[..., Transport]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _record(i: int, pad: int = 0) -> dict:
    return {"schema": "litelens.call/1", "call_id": f"call-{i}", "model": "gpt-4o-mini", "pad": "x" * pad}


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_EXITING = "litelens-test: exiting"


def _time_exit(code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `code` as `_run_python` does, and time the interpreter's exit from the code's last line.

    That is the wait a user sees at the end of a script. The interpreter's start and the code's own work
    are left out: a loaded machine stretches them by seconds, and they are not what an exit bound is about.
    """
    script = textwrap.dedent(code) + f"\nprint({_EXITING!r}, flush=True)\n"
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            [sys.executable, "-c", script],
            env=dict(os.environ, PYTHONPATH=SRC),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert child.stdout is not None
            head = ""
            for line in iter(child.stdout.readline, ""):  # to the marker, or to the end if it never came
                head += line
                if line == _EXITING + "\n":
                    break
            began = time.monotonic()
            rest, _ = child.communicate(timeout=timeout)
            took = time.monotonic() - began
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        errors.seek(0)
        return subprocess.CompletedProcess(child.args, child.returncode, head + rest, errors.read()), took


def test_records_arrive_gzipped_with_the_key_in_a_batch(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    receiver.api_key = "sk-litelens-test"
    transport = make_transport(api_key="sk-litelens-test")
    for i in range(3):
        transport.submit(_record(i))
    assert transport.flush(5)
    assert receiver.call_ids() == ["call-0", "call-1", "call-2"]
    headers = receiver.bodies[0]["headers"]
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Authorization"] == "Bearer sk-litelens-test"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("litelens/")
    body = json.loads(receiver.bodies[0]["body"])
    assert body["schema"] == "litelens.batch/1"
    assert body["records"][0] == _record(0)
    assert transport.stats()["sent"] == 3


@pytest.mark.parametrize(
    "suffix", ["/v1/events", "/v1/events/", "/v1/traces", "/", "/?token=abc", "/v1/events?token=abc"]
)
def test_an_endpoint_given_with_an_ingest_path_is_not_doubled(
    receiver: Receiver, make_transport: MakeTransport, suffix: str
) -> None:
    # An endpoint copied with its path (as OTLP settings are written, or the core's given to the span
    # exporter) once became `/v1/events/v1/events`: 404, and every record waited in the spool. So did an
    # endpoint ending in a slash before a query (`http://host:port/?token=abc`): `//v1/events`.
    transport = make_transport(endpoint=receiver.url + suffix)
    transport.submit(_record(1))
    assert transport.flush(5)
    assert receiver.call_ids() == ["call-1"]
    assert transport.stats()["sent"] == 1


def test_plain_body_when_gzip_is_off(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(gzip=False)
    transport.submit(_record(1))
    assert transport.flush(5)
    assert "Content-Encoding" not in receiver.bodies[0]["headers"]
    assert receiver.call_ids() == ["call-1"]


def test_batches_are_cut_by_record_count(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(batch_max_records=10)
    for i in range(35):
        transport.submit(_record(i))
    assert transport.flush(5)
    sizes = [len(json.loads(b["body"])["records"]) for b in receiver.bodies]
    assert sizes == [10, 10, 10, 5]


def test_batches_are_cut_by_uncompressed_bytes(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(batch_max_bytes=4000)
    for i in range(40):
        transport.submit(_record(i, pad=300))
    assert transport.flush(5)
    assert len(receiver.bodies) > 3
    assert all(len(b["body"]) <= 4000 + 100 for b in receiver.bodies)
    assert len(receiver.unique_call_ids()) == 40


def test_a_lone_record_is_sent_after_the_batch_age_without_flush(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    transport = make_transport(batch_max_age_s=0.3)
    started = time.monotonic()
    transport.submit(_record(0))
    assert receiver.wait_for(1, timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.25  # it waited for companions, then went on its own


@pytest.mark.parametrize("with_spool", [False, True])
def test_submit_never_blocks_when_the_server_stalls_and_the_queue_is_full(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path, with_spool: bool
) -> None:
    receiver.delay_s = 30
    transport = make_transport(max_queue=100, timeout_s=30, spool_dir=str(tmp_path) if with_spool else None)
    transport.submit(_record(-1))
    time.sleep(0.6)  # the first batch is now stuck in a request the receiver sits on
    started = time.monotonic()
    for i in range(10_000):
        transport.submit(_record(i))
    elapsed = time.monotonic() - started
    assert elapsed < 1.0  # ~10 ms when healthy; a blocking put would take the 30 s stall
    stats = transport.stats()
    assert stats["submitted"] == 10_001
    assert stats["dropped"] >= 10_000 - (200 if with_spool else 100)
    receiver.stop()  # lets the stuck request go, so the transport's teardown need not wait it out


def test_429_retry_after_is_waited_out(receiver: Receiver, make_transport: MakeTransport) -> None:
    receiver.fail_next(429, times=1, retry_after=1.0)
    transport = make_transport(backoff_max_s=5.0)
    started = time.monotonic()
    transport.submit(_record(0))
    assert transport.flush(10)
    assert time.monotonic() - started >= 1.0
    assert receiver.requests == 2
    assert receiver.call_ids() == ["call-0"]
    assert transport.stats()["retries"] == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("2", cap=30) == 2.0
    assert parse_retry_after("120", cap=30) == 30
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    delay = parse_retry_after(date, cap=30)
    assert delay is not None and 8 <= delay <= 10
    assert parse_retry_after("soon", cap=30) is None


@pytest.mark.parametrize("zone", ["Pacific/Chatham", "America/St_Johns"])
def test_a_retry_after_date_without_a_zone_is_read_as_gmt_whatever_the_local_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HTTP dates are GMT, also in the asctime form that names no zone (RFC 9110 has clients accept it)
    # and with the "-0000" zone. Read in the machine's zone, a wait of a minute was none at all ahead of
    # UTC (the server asked again at once) and hours behind it (capped: the sender stalled for the cap).
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        when = time.gmtime(time.time() + 60)
        for date in (
            time.strftime("%a %b %d %H:%M:%S %Y", when),
            time.strftime("%a, %d %b %Y %H:%M:%S -0000", when),
        ):
            delay = parse_retry_after(date, cap=3600)
            assert delay is not None and 55 <= delay <= 60, (date, delay)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_server_errors_are_retried_and_delivered_once(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    receiver.fail_next(500, times=1)
    receiver.fail_next(503, times=1)
    transport = make_transport(max_retries=3)
    for i in range(20):
        transport.submit(_record(i))
    assert transport.flush(10)
    assert receiver.call_ids() == [f"call-{i}" for i in range(20)]
    assert transport.stats()["retries"] == 2


def test_server_down_spools_then_everything_arrives_once_oldest_first(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    receiver.stop()
    transport = make_transport(spool_dir=str(tmp_path), batch_max_records=10, max_retries=1)
    for i in range(50):
        transport.submit(_record(i))
    assert transport.flush(10)  # spooled counts as settled
    stats = transport.stats()
    assert stats["spooled"] == 50 and stats["spool_pending"] == 50 and stats["sent"] == 0
    receiver.start()
    assert receiver.wait_for(50, timeout=20)
    time.sleep(0.2)
    assert receiver.call_ids() == [f"call-{i}" for i in range(50)]
    assert Spool(tmp_path).pending() == (0, 0, 0)


def test_records_left_by_an_exiting_process_are_sent_by_the_next(receiver: Receiver, tmp_path: Path) -> None:
    receiver.stop()
    first = _run_python(
        f"""
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r},
                                      max_retries=1, backoff_base_s=0.01, exit_flush_s=5))
        for i in range(200):
            t.submit({{"call_id": f"call-{{i}}"}})
        """
    )
    assert first.returncode == 0, first.stderr
    assert Spool(tmp_path).pending()[1] == 200  # the atexit hook spooled what it could not send
    receiver.start()
    second = _run_python(
        f"""
        import time
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r}))
        t.start()
        deadline = time.monotonic() + 30
        while t.stats()["sent"] < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        """
    )
    assert second.returncode == 0, second.stderr
    assert sorted(receiver.call_ids()) == sorted(f"call-{i}" for i in range(200))


def test_two_processes_sharing_a_spool_never_send_a_batch_twice(receiver: Receiver, tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for b in range(40):
        records = ",".join(json.dumps({"call_id": f"call-{b}-{i}"}) for i in range(25))
        spool.put(('{"schema":"litelens.batch/1","records":[' + records + "]}").encode(), 25, False)
    receiver.delay_s = 0.005
    code = f"""
        import time
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r}))
        t.start()
        deadline = time.monotonic() + 30
        time.sleep(0.1)  # let the thread open the spool and count what is pending
        while t.stats()["spool_pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        t.shutdown(30)  # finishes the batch it may be sending
        print(t.stats()["sent"])
        """
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    sent = [int(p.communicate(timeout=60)[0].strip() or 0) for p in procs]
    assert receiver.wait_for(1000, timeout=30), (len(receiver.call_ids()), sent)
    ids = receiver.call_ids()
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert sum(sent) == 1000


def test_an_unserializable_value_costs_only_that_field(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    transport = make_transport()
    record = _record(0)
    record["response"] = object()
    record["meta"] = {("tuple", "key"): 1, "fine": [1, 2]}
    transport.submit(record)
    assert transport.flush(5)
    got = receiver.records[0]
    assert got["response"] == "<unserializable object>"
    assert got["model"] == "gpt-4o-mini"
    assert got["meta"]["fine"] == [1, 2]
    assert transport.stats()["unserializable_fields"] == 2


def test_a_failing_processor_loses_only_its_records(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    seen = 0

    def prepare(record: dict) -> dict | None:
        nonlocal seen
        seen += 1
        if seen % 3 == 0:
            raise RuntimeError("boom")
        if record["call_id"] == "call-1":
            return None
        return {**record, "scrubbed": True}

    transport = make_transport(prepare)
    for i in range(30):
        transport.submit(_record(i))
    assert transport.flush(5)
    stats = transport.stats()
    assert stats["failed"] == 10 and stats["filtered"] == 1 and stats["sent"] == 19
    assert len(receiver.records) == 19 and all(r["scrubbed"] for r in receiver.records)


def test_413_splits_the_batch_and_drops_only_the_oversized_record(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    receiver.max_body = 1500
    transport = make_transport(gzip=False)
    for i in range(16):
        transport.submit(_record(i, pad=200))
    transport.submit(_record(99, pad=3000))
    assert transport.flush(10)
    assert sorted(receiver.call_ids()) == sorted(f"call-{i}" for i in range(16))
    assert transport.stats()["failed"] == 1


def test_wrong_key_is_logged_once_clearly_and_batches_wait_in_the_spool(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.api_key = "right"
    transport = make_transport(api_key="wrong", spool_dir=str(tmp_path), batch_max_records=5)
    with caplog.at_level(logging.WARNING, logger="litelens.transport"):
        for i in range(20):
            transport.submit(_record(i))
        assert transport.flush(10)
    messages = [r.getMessage() for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(messages) == 1
    assert f"server at {receiver.url} refused the API key (401); set LITELENS_API_KEY" in messages[0]
    assert transport.stats()["spooled"] == 20 and receiver.records == []
    receiver.api_key = "wrong"  # the operator fixes the server side: the spooled batches go through
    assert receiver.wait_for(20, timeout=20)


@pytest.mark.parametrize("status", [None, 401, 404, 500])
def test_credentials_in_the_endpoint_url_never_reach_the_log(
    receiver: Receiver, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture, status: int | None
) -> None:
    """A collector behind a proxy's basic auth or a signed URL (`https://user:password@host`,
    `?token=...`): every message about it named the endpoint as configured, password and token included."""
    port = receiver.url.rsplit(":", 1)[1] if status else "1"  # None: nothing listens on port 1
    if status:
        receiver.fail_next(status, times=10)
    endpoint = f"http://ops:Pa55word-9x7@127.0.0.1:{port}/?token=Tok3n-8c6v"
    with caplog.at_level(logging.WARNING, logger="litelens"):
        transport = make_transport(endpoint=endpoint, max_retries=0)
        transport.submit(_record(0))
        transport.flush(3)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in logged, "the message still says which server"
    assert "Pa55word" not in logged and "Tok3n" not in logged, logged


def test_flush_reports_delivery_and_timeouts(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(batch_max_age_s=10)
    transport.submit(_record(0))
    assert transport.flush(5)
    assert receiver.call_ids() == ["call-0"]  # flush did not wait for the 10 s batch age
    receiver.delay_s = 3
    transport.submit(_record(1))
    assert transport.flush(0.3) is False
    receiver.stop()  # lets the slow request go, so the transport's teardown need not wait it out


def test_shutdown_spools_what_the_server_did_not_take(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    receiver.delay_s = 30
    transport = make_transport(spool_dir=str(tmp_path), timeout_s=30)
    for i in range(10):
        transport.submit(_record(i))
    started = time.monotonic()
    assert transport.shutdown(0.5) is False
    assert time.monotonic() - started < 10
    assert Spool(tmp_path).pending()[1] == 10
    transport.submit(_record(11))
    assert transport.stats()["dropped"] == 1


def test_many_threads_submitting_at_once(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(batch_max_records=100)

    def work(t: int) -> None:
        for i in range(500):
            transport.submit(_record(t * 1000 + i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert transport.flush(10)
    ids = receiver.call_ids()
    assert len(ids) == 4000 and len(set(ids)) == 4000
    assert transport.stats()["submitted"] == 4000


def test_submit_from_asyncio_does_not_stall_the_loop(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    receiver.delay_s = 0.5  # a slow server must not show up as loop latency
    transport = make_transport(batch_max_records=50)

    async def main() -> float:
        worst = 0.0

        async def producer(p: int) -> None:
            for i in range(50):
                transport.submit(_record(p * 100 + i))
                await asyncio.sleep(0)

        async def ticker() -> None:
            nonlocal worst
            for _ in range(20):
                before = time.monotonic()
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - before)

        await asyncio.gather(ticker(), *(producer(p) for p in range(4)))
        return worst

    worst = asyncio.run(main())
    assert worst < 0.4  # far under the server's 0.5 s per request
    assert transport.flush(30)
    assert len(receiver.unique_call_ids()) == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_records_and_not_the_parents(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    transport = make_transport(batch_max_age_s=5)
    transport.submit(_record(0))  # still waiting for its batch age when we fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        transport.submit(_record(1))
        os._exit(0 if transport.flush(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert transport.flush(5)
    assert sorted(receiver.call_ids()) == ["call-0", "call-1"]


def test_a_full_spool_evicts_the_oldest_batches_and_counts_them(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    receiver.stop()
    transport = make_transport(
        spool_dir=str(tmp_path), spool_max_bytes=20_000, gzip=False, batch_max_records=10, max_retries=0
    )
    for i in range(200):
        transport.submit(_record(i, pad=200))
    assert transport.flush(10)
    stats = transport.stats()
    assert stats["dropped"] > 0
    assert stats["dropped"] + stats["spool_pending"] == 200
    kept = stats["spool_pending"]
    receiver.start()
    assert receiver.wait_for(kept, timeout=20)
    assert receiver.call_ids() == [f"call-{i}" for i in range(200 - kept, 200)]  # the newest survived


def test_fresh_records_are_not_starved_while_a_backlog_drains(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    for b in range(40):
        records = ",".join(json.dumps({"call_id": f"old-{b}-{i}"}) for i in range(10))
        spool.put(('{"schema":"litelens.batch/1","records":[' + records + "]}").encode(), 10, False)
    receiver.delay_s = 0.05  # the backlog takes >= 2 s to drain
    transport = make_transport(spool_dir=str(tmp_path))
    transport.start()
    assert receiver.wait_for(10, timeout=10)
    transport.submit(_record(0))
    assert transport.flush(10)
    assert "call-0" in receiver.call_ids()
    assert len(receiver.records) < 400 + 1  # the fresh record did not wait for the whole backlog
    assert Spool(tmp_path).pending()[0] > 0


def test_shutdown_saves_the_queue_even_when_the_thread_is_stuck(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    release = threading.Event()

    def stuck(record: dict) -> dict:
        if record["call_id"] == "call-0":
            release.wait(30)
        return record

    transport = make_transport(stuck, spool_dir=str(tmp_path))
    for i in range(5):
        transport.submit(_record(i))
    time.sleep(0.2)
    assert transport.shutdown(0.3) is False
    assert Spool(tmp_path).pending()[1] == 4  # all but the record inside the stuck processor
    release.set()


def test_without_a_spool_an_outage_costs_only_the_batch_that_ran_out_of_retries(
    receiver: Receiver, make_transport: MakeTransport
) -> None:
    receiver.stop()
    transport = make_transport(batch_max_records=10, max_retries=1)
    for i in range(30):
        transport.submit(_record(i))
    assert transport.flush(1.0) is False  # nothing can be settled: no server, nowhere to keep it
    stats = transport.stats()
    assert stats["dropped"] == 10 and stats["queued"] == 20
    receiver.start()
    assert transport.flush(10)
    assert receiver.call_ids() == [f"call-{i}" for i in range(10, 30)]


def test_exit_delivers_unflushed_records_when_the_server_is_up(receiver: Receiver) -> None:
    child = _run_python(
        f"""
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, batch_max_age_s=30))
        for i in range(100):
            t.submit({{"call_id": f"call-{{i}}"}})
        """
    )
    assert child.returncode == 0, child.stderr
    assert sorted(receiver.call_ids()) == sorted(f"call-{i}" for i in range(100))


def test_exit_is_bounded_when_the_server_hangs_and_the_rest_is_spooled(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.delay_s = 60
    child, exit_s = _time_exit(
        f"""
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r},
                                      timeout_s=60, exit_flush_s=1))
        for i in range(100):
            t.submit({{"call_id": f"call-{{i}}"}})
        """
    )
    assert child.returncode == 0, child.stderr
    assert exit_s < 20  # exit_flush_s + grace, not the server's 60 s
    assert Spool(tmp_path).pending()[1] == 100


# -- probes: a spool that cannot take batches, a server that comes back ---------------------------------


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_an_unusable_spool_does_not_stop_delivery_once_the_server_is_back(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    # A spool_dir that can never be created (its parent is a regular file) behaves as no spool: the batch
    # that runs out of retries is lost and counted, the next one is held as the probe, and once the server
    # answers again everything after it arrives. (It used to drop every later batch, forever.)
    (tmp_path / "file").write_text("")
    receiver.stop()
    transport = make_transport(
        spool_dir=str(tmp_path / "file" / "spool"), batch_max_records=10, max_retries=1
    )
    for i in range(30):
        transport.submit(_record(i))
    assert _wait_until(lambda: transport.stats()["dropped"] == 10)
    receiver.start()
    for i in range(30, 40):
        transport.submit(_record(i))
    assert transport.flush(20)
    stats = transport.stats()
    assert receiver.call_ids() == [f"call-{i}" for i in range(10, 40)]
    assert stats["sent"] == 30 and stats["dropped"] == 10 and stats["queued"] == 0


def test_the_thread_sleeps_while_the_server_is_down_and_the_spool_is_empty(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    # Down, and nothing to probe with (another process took the spooled batch): the thread must wait for
    # the next probe time, not spin on the CPU (it did, at 100% of a core, until the next record).
    receiver.stop()
    transport = make_transport(spool_dir=str(tmp_path), max_retries=0, backoff_max_s=1.0)
    transport.submit(_record(0))
    assert transport.flush(10) and transport.stats()["spooled"] == 1
    taken = Spool(tmp_path).claim_oldest()  # another worker sharing the spool claims it
    assert taken is not None
    time.sleep(0.3)  # let the thread find the spool empty
    before = time.process_time()
    time.sleep(1.5)
    assert time.process_time() - before < 0.5
    receiver.start()
    transport.submit(_record(1))
    assert receiver.wait_for(1, timeout=20)
    assert transport.flush(10) and receiver.call_ids() == ["call-1"]


# -- probes: servers that misbehave at the socket level -------------------------------------------------


class _RawServer:
    """A loopback TCP server whose every connection is handed to ``handle(conn, server)`` on a thread."""

    def __init__(self, handle: Callable[[socket.socket, _RawServer], None]) -> None:
        self.handle = handle
        self.call_ids: list[str] = []
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handle(conn, self)

    def read_request(self, conn: socket.socket) -> bool:
        """Read one POST and note its call ids; False when the client closed the connection."""
        reader = conn.makefile("rb")
        headers = {}
        line = reader.readline()
        if not line:
            return False
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers["content-length"]))
        if headers.get("content-encoding") == "gzip":
            body = zlib.decompress(body, 47)
        self.requests += 1
        self.call_ids.extend(r["call_id"] for r in json.loads(body)["records"])
        return True

    def close(self) -> None:
        self._closed.set()
        self._sock.close()


_OK_BODY = b'{"accepted":10,"rejected":[]}'
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_OK_BODY), _OK_BODY)


def test_a_server_that_trickles_its_answer_is_given_up_on_after_the_timeout(
    make_transport: MakeTransport, tmp_path: Path
) -> None:
    # Slow loris: every byte comes within the socket timeout, the answer never ends. The timeout must
    # bound the whole answer, or the sender thread is held for as long as the server likes.
    stop = threading.Event()

    def trickle(conn: socket.socket, server: _RawServer) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.wait(0.05):
            conn.sendall(b"X")

    server = _RawServer(trickle)
    try:
        transport = make_transport(endpoint=server.url, spool_dir=str(tmp_path), timeout_s=0.5, max_retries=1)
        transport.submit(_record(0))
        started = time.monotonic()
        assert transport.flush(10)
        assert time.monotonic() - started < 8
        assert transport.stats()["spooled"] == 1
        # Read the spool once the thread is stopped: until then its next probe may hold the batch claimed
        # (a rename that pending() does not count), as it did when a loaded machine delayed this line.
        assert transport.shutdown(10)
        assert Spool(tmp_path).pending()[1] == 1
    finally:
        stop.set()
        server.close()


def test_a_server_that_never_answers_costs_the_timeout_then_the_batch_is_spooled(
    make_transport: MakeTransport, tmp_path: Path
) -> None:
    stop = threading.Event()

    def silent(conn: socket.socket, server: _RawServer) -> None:
        server.read_request(conn)
        stop.wait(30)

    server = _RawServer(silent)
    try:
        transport = make_transport(endpoint=server.url, spool_dir=str(tmp_path), timeout_s=0.3, max_retries=1)
        for i in range(5):
            transport.submit(_record(i))
        started = time.monotonic()
        assert transport.flush(10)
        assert time.monotonic() - started < 8
        stats = transport.stats()
        assert stats["spooled"] == 5 and stats["sent"] == 0 and stats["queued"] == 0
    finally:
        stop.set()
        server.close()


def test_a_connection_closed_mid_answer_is_retried_and_counted_once(make_transport: MakeTransport) -> None:
    # The server stored the batch but the connection broke before the answer was complete: the batch is
    # sent again (at least once; receivers deduplicate by call_id), and `sent` counts it once.
    def flaky(conn: socket.socket, server: _RawServer) -> None:
        while server.read_request(conn):
            if server.requests <= 2:
                conn.sendall(OK_ANSWER[:-10])
                return
            conn.sendall(OK_ANSWER)

    server = _RawServer(flaky)
    try:
        transport = make_transport(endpoint=server.url, batch_max_records=10)
        for i in range(10):
            transport.submit(_record(i))
        assert transport.flush(10)
        assert set(server.call_ids) == {f"call-{i}" for i in range(10)}
        stats = transport.stats()
        assert stats["sent"] == 10 and stats["batches_sent"] == 1 and stats["dropped"] == 0
    finally:
        server.close()


# -- probes: what each answer does to the records and the counters --------------------------------------


def _accounted(stats: dict[str, int]) -> int:
    """Where every submitted record is now; equals `submitted` when the counters are honest."""
    keys = ("queued", "sent", "failed", "dropped", "filtered", "spool_pending")
    return sum(stats[k] for k in keys)


@pytest.mark.parametrize(
    ("faults", "min_wait"),
    [
        ([(429, 0.6)], 0.6),  # Retry-After is a lower bound on the wait
        ([(429, None)] * 2, 0.0),
        ([(500, None), (503, None), (500, None)], 0.0),  # flapping, within the retries
        ([(503, 0.3), (502, None)], 0.3),
    ],
)
def test_retried_answers_deliver_every_record_exactly_once(
    receiver: Receiver,
    make_transport: MakeTransport,
    tmp_path: Path,
    faults: list[tuple[int, float | None]],
    min_wait: float,
) -> None:
    transport = make_transport(
        spool_dir=str(tmp_path), batch_max_records=10, max_retries=4, backoff_max_s=1.0
    )
    for status, retry_after in faults:
        receiver.fail_next(status, retry_after=retry_after)
    started = time.monotonic()
    for i in range(10):
        transport.submit(_record(i))
    assert transport.flush(20)
    assert time.monotonic() - started >= min_wait
    assert receiver.call_ids() == [f"call-{i}" for i in range(10)]
    stats = transport.stats()
    assert stats["sent"] == 10 and stats["retries"] == len(faults) and stats["spooled"] == 0
    assert _accounted(stats) == stats["submitted"] == 10


def test_a_flapping_server_loses_and_repeats_nothing(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    # 500/503 on and off, more than the retries can absorb: batches go to the spool and come back.
    transport = make_transport(spool_dir=str(tmp_path), batch_max_records=5, max_retries=1, backoff_max_s=0.2)
    for round_ in range(6):
        receiver.fail_next(500 if round_ % 2 else 503, times=3)
        for i in range(round_ * 20, round_ * 20 + 20):
            transport.submit(_record(i))
        time.sleep(0.05)
    assert _wait_until(lambda: receiver.received >= 120 and transport.stats()["spool_pending"] == 0, 30)
    assert transport.flush(10)
    ids = receiver.call_ids()
    assert sorted(ids) == sorted(f"call-{i}" for i in range(120)) and len(ids) == 120
    stats = transport.stats()
    assert stats["sent"] == 120 and stats["dropped"] == 0 and _accounted(stats) == 120


def test_400_for_a_batch_fails_only_that_batch(receiver: Receiver, make_transport: MakeTransport) -> None:
    transport = make_transport(batch_max_records=5)
    receiver.fail_next(400)
    for i in range(10):
        transport.submit(_record(i))
    assert transport.flush(10)
    assert receiver.call_ids() == [f"call-{i}" for i in range(5, 10)]
    stats = transport.stats()
    assert stats["failed"] == 5 and stats["sent"] == 5 and stats["retries"] == 0
    assert _accounted(stats) == 10


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_without_a_spool_drops_and_counts_then_recovers(
    receiver: Receiver, make_transport: MakeTransport, status: int
) -> None:
    # Documented: 401/403 keep batches in the spool; without one the refused batch is dropped, counted.
    transport = make_transport(batch_max_records=5, backoff_max_s=0.2)
    receiver.fail_next(status)
    for i in range(5):
        transport.submit(_record(i))
    assert transport.flush(10)
    for i in range(5, 10):
        transport.submit(_record(i))
    assert transport.flush(10)
    assert receiver.call_ids() == [f"call-{i}" for i in range(5, 10)]
    stats = transport.stats()
    assert stats["dropped"] == 5 and stats["sent"] == 5 and _accounted(stats) == 10


def test_413_on_a_spooled_batch_splits_it_and_loses_nothing(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    records = ",".join(json.dumps(_record(i, pad=300)) for i in range(16))
    spool.put(('{"schema":"litelens.batch/1","records":[' + records + "]}").encode(), 16, False)
    receiver.max_body = 2_000  # about four records
    transport = make_transport(spool_dir=str(tmp_path))
    transport.start()
    assert receiver.wait_for(16, timeout=20)
    assert _wait_until(lambda: Spool(tmp_path).pending() == (0, 0, 0))
    assert sorted(receiver.call_ids()) == sorted(f"call-{i}" for i in range(16))
    assert len(receiver.call_ids()) == 16


def test_records_in_a_request_or_waiting_for_a_retry_count_as_queued(make_transport: MakeTransport) -> None:
    # Between submit and settling, a record is somewhere: `queued` covers the batch waiting out a
    # Retry-After and the batch on the wire, or `stats()` tells the operator 10 records vanished meanwhile.
    on_wire, answer = threading.Event(), threading.Event()

    def server(conn: socket.socket, raw: _RawServer) -> None:
        while raw.read_request(conn):
            if raw.requests == 1:
                conn.sendall(b"HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
                continue
            on_wire.set()
            answer.wait(10)
            conn.sendall(OK_ANSWER)

    raw = _RawServer(server)
    try:
        transport = make_transport(endpoint=raw.url, backoff_max_s=5.0, timeout_s=10)
        for i in range(10):
            transport.submit(_record(i))
        assert _wait_until(lambda: transport.stats()["retries"] == 1)  # waiting out the Retry-After
        stats = transport.stats()
        assert stats["queued"] == 10 and _accounted(stats) == 10
        assert on_wire.wait(10)  # the retry, sent and not answered yet
        stats = transport.stats()
        assert stats["queued"] == 10 and _accounted(stats) == 10
        answer.set()
        assert transport.flush(10)
        stats = transport.stats()
        assert stats["queued"] == 0 and stats["sent"] == 10
    finally:
        answer.set()
        raw.close()


# -- probes: processes ----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_records_of_multiprocessing_workers_are_flushed_when_they_end(receiver: Receiver) -> None:
    # A multiprocessing child ends with os._exit(), skipping atexit: what it logged in its last batch age
    # was silently lost (and counted nowhere) until the exit flush was registered with multiprocessing too.
    child = _run_python(
        f"""
        import multiprocessing
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, batch_max_age_s=30))

        def work(i):
            t.submit({{"call_id": f"child-{{i}}"}})

        if __name__ == "__main__":
            ctx = multiprocessing.get_context("fork")
            t.submit({{"call_id": "parent"}})
            p = ctx.Process(target=work, args=(0,))
            p.start()
            p.join()
            pool = ctx.Pool(2)
            pool.map(work, range(1, 5))
            pool.close()
            pool.join()
        """
    )
    assert child.returncode == 0, child.stderr
    ids = receiver.call_ids()
    assert sorted(ids) == ["child-0", "child-1", "child-2", "child-3", "child-4", "parent"]


def test_a_process_killed_while_spooling_leaves_only_whole_batches(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGKILL lands while the child is writing its backlog to the spool (big batches, written all the time):
    # the next process sends every whole batch exactly once and never a half-written one.
    # A temporary file killed before its first byte is empty and unlocked, like a live writer's about to
    # take its lock (whose pid may mean nothing here: another PID namespace), so it is swept only after
    # the lock grace: 1 s here instead of 10.
    monkeypatch.setattr(spool_module, "_LOCK_GRACE_NS", 10**9)
    receiver.stop()
    code = f"""
        import itertools
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r}, gzip=False,
                                      batch_max_records=100, max_retries=0, max_queue=100_000))
        for i in itertools.count():
            t.submit({{"call_id": f"call-{{i}}", "pad": "x" * 20_000}})
        """
    env = dict(os.environ, PYTHONPATH=SRC)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env)

    def writing() -> bool:  # a few batches are whole, and the next one is being written
        names = os.listdir(tmp_path)
        return len(names) > 3 and any(n.startswith(".tmp-") for n in names)

    try:
        assert _wait_until(lambda: len(os.listdir(tmp_path)) > 3, timeout=30)
        _wait_until(writing, timeout=5)  # usually; killing between two writes is a fine probe too
    finally:
        child.kill()
        child.wait()
    time.sleep(1.2)  # the lock grace, for a temporary file the child made an instant before it died
    whole = Spool(tmp_path).pending()[1]  # (opening it also sweeps the dead child's temporary file)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".") or not n.endswith(".batch")] == []
    receiver.start()
    transport = make_transport(spool_dir=str(tmp_path))
    transport.start()
    assert receiver.wait_for(whole, timeout=30)
    assert _wait_until(lambda: transport.stats()["sent"] == whole)
    ids = receiver.call_ids()
    assert len(ids) == len(set(ids)) == whole
    assert os.listdir(tmp_path) == []


def test_damaged_spool_files_do_not_block_the_rest_and_count_as_dropped(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    for b in range(4):
        records = ",".join(json.dumps(_record(b * 5 + i)) for i in range(5))
        spool.put(('{"schema":"litelens.batch/1","records":[' + records + "]}").encode(), 5, False)
    names = sorted(os.listdir(tmp_path))
    (tmp_path / names[0]).write_bytes(b"")  # zero bytes
    (tmp_path / names[2]).write_bytes((tmp_path / names[2]).read_bytes()[:-40])  # cut short
    (tmp_path / "00000000000000000000-1-000001-7-g.batch").write_bytes(os.urandom(300))  # garbage
    transport = make_transport(spool_dir=str(tmp_path))
    transport.start()
    assert _wait_until(lambda: transport.stats()["sent"] == 10)
    assert receiver.call_ids() == [f"call-{i}" for i in (5, 6, 7, 8, 9, 15, 16, 17, 18, 19)]
    assert _wait_until(lambda: transport.stats()["dropped"] == 17)  # 5 + 5 + the garbage's 7


def test_two_processes_spooling_and_draining_one_spool_deliver_each_record_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    # A proxy with several workers and one spool_dir: both spool during an outage, then both drain the
    # shared backlog while sending fresh records. Claims are renames, so each batch goes out once.
    receiver.stop()
    spool_dir, go = tmp_path / "spool", tmp_path / "go"
    code = f"""
        import json, os, sys, time
        from litelens.transport import Transport, TransportConfig
        tag = sys.argv[1]
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(spool_dir)!r}, max_retries=0,
                                      backoff_base_s=0.05, backoff_max_s=0.3, batch_max_records=20))
        for i in range(300):
            t.submit({{"call_id": f"{{tag}}-{{i}}"}})
        assert t.flush(20)
        print("spooled", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
        for i in range(300, 400):
            t.submit({{"call_id": f"{{tag}}-{{i}}"}})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (os.listdir({str(spool_dir)!r}) or t.stats()["queued"]):
            time.sleep(0.05)
        t.shutdown(10)
        print(json.dumps(t.stats()), flush=True)
        """
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), tag], env=env, stdout=subprocess.PIPE, text=True
        )
        for tag in ("a", "b")
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "spooled"
        receiver.start()
        go.touch()
        stats = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            p.kill()
    ids = receiver.call_ids()
    assert len(ids) == len(set(ids)) == 800
    assert sum(s["sent"] for s in stats) == 800 and sum(s["dropped"] for s in stats) == 0
    assert os.listdir(spool_dir) == []


def test_exit_with_thousands_queued_and_the_server_down_is_bounded_and_spools_all(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stop()
    child, exit_s = _time_exit(
        f"""
        import json
        from litelens.transport import Transport, TransportConfig
        t = Transport(TransportConfig(endpoint={receiver.url!r}, spool_dir={str(tmp_path)!r}, exit_flush_s=2))
        for i in range(15_000):  # more than max_queue: the rest waits in the overflow queue
            t.submit({{"call_id": f"call-{{i}}", "pad": "x" * 200}})
        """
    )
    assert child.returncode == 0, child.stderr
    assert exit_s < 15  # exit_flush_s, the final spill and the interpreter
    assert Spool(tmp_path).pending()[1] == 15_000
    receiver.start()
    transport = Transport(TransportConfig(endpoint=receiver.url, spool_dir=str(tmp_path)))
    try:
        transport.start()
        assert receiver.wait_for(15_000, timeout=30)
        ids = receiver.call_ids()
        assert len(ids) == len(set(ids)) == 15_000
    finally:
        transport.shutdown(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_in_the_middle_of_draining_the_spool_sends_nothing_twice(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    spool = Spool(tmp_path)
    for b in range(20):
        records = ",".join(json.dumps({"call_id": f"old-{b}-{i}"}) for i in range(5))
        spool.put(('{"schema":"litelens.batch/1","records":[' + records + "]}").encode(), 5, False)
    receiver.delay_s = 0.02
    transport = make_transport(spool_dir=str(tmp_path), batch_max_age_s=5)
    transport.submit(_record(0))  # queued in the parent, not yet sent, when it forks
    assert receiver.wait_for(5, timeout=10)  # the parent is draining the backlog
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: drains the same spool alongside the parent
        transport.submit(_record(1))
        ok = transport.flush(10) and _wait_until(lambda: Spool(tmp_path).pending()[0] == 0, 20)
        os._exit(0 if transport.shutdown(10) and ok else 1)  # (os._exit skips the exit flush)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert transport.flush(10)
    assert _wait_until(lambda: receiver.received >= 102 and not os.listdir(tmp_path), 20)
    ids = receiver.call_ids()
    assert len(ids) == len(set(ids)) == 102
    assert {"call-0", "call-1"} <= set(ids)


def test_an_api_key_with_a_pasted_quote_neither_stops_delivery_nor_reaches_the_log(
    receiver: Receiver, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    # HTTP headers are Latin-1: encoding this one raised inside the sender thread, which died (the record
    # vanished, counted nowhere, and so did every later one), and the error it logged held the key.
    with caplog.at_level(logging.WARNING, logger="litelens.transport"):
        transport = make_transport(api_key="sk-\u2018very-secret\u2019")
        transport.submit(_record(0))
        assert transport.flush(10)
        transport.submit(_record(1))
        assert transport.flush(10)
    assert receiver.call_ids() == ["call-0", "call-1"]  # this receiver checks no key
    assert not any("very-secret" in r.getMessage() for r in caplog.records)
    assert any("non-ASCII" in r.getMessage() for r in caplog.records)


def test_an_answer_announcing_a_huge_body_is_a_failed_attempt_not_the_end_of_the_sender(
    make_transport: MakeTransport,
) -> None:
    # Reading a body of the announced length first allocates it: a MemoryError killed the sender thread,
    # losing the batch in flight without a count and everything after it.
    def huge_then_fine(conn: socket.socket, server: _RawServer) -> None:
        while server.read_request(conn):
            if server.requests == 1:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000000\r\n\r\n{}")
                return
            conn.sendall(OK_ANSWER)

    server = _RawServer(huge_then_fine)
    try:
        transport = make_transport(endpoint=server.url)
        transport.submit(_record(0))
        assert transport.flush(10)
        transport.submit(_record(1))
        assert transport.flush(10)
        assert server.call_ids == ["call-0", "call-0", "call-1"]  # the first answer was not one: resent
        assert transport.stats()["sent"] == 2
    finally:
        server.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_multiprocessing_worker_flushes_its_sink_queues_too(tmp_path: Path) -> None:
    # Sinks run on queues of their own (litelens.worker); a worker process with only a file sink starts
    # no transport, and its queue must be flushed at its end all the same.
    child = _run_python(
        f"""
        import multiprocessing, os
        from litelens.sinks import JsonlSink
        sink = JsonlSink({str(tmp_path / "calls-{pid}.jsonl")!r})

        def work():
            for i in range(200):
                sink.submit('{{"call_id": "%d-%d"}}' % (os.getpid(), i))

        if __name__ == "__main__":
            p = multiprocessing.get_context("fork").Process(target=work)
            p.start()
            p.join()
            print(p.pid)
        """
    )
    assert child.returncode == 0, child.stderr
    worker = int(child.stdout.split()[-1])
    lines = (tmp_path / f"calls-{worker}.jsonl").read_text().splitlines()
    assert len(lines) == 200


# -- one spool folder per destination (endpoint and key) -----------------------------------------------


def _sink(endpoint: str, key: str | None, **settings: Any) -> HttpSink:
    """The server sink as `Callback()` builds it: from settings, spool in a folder per destination."""
    sink = HttpSink(settings=Settings.from_env({}, endpoint=endpoint, api_key=key, **settings))
    config = sink.transport.config
    config.max_retries, config.backoff_base_s, config.backoff_max_s = 0, 0.01, 0.2
    sink.transport.start()
    return sink


def _send(sink: HttpSink, prefix: str, n: int) -> None:
    for i in range(n):
        sink.submit(json.dumps({"schema": "litelens.call/1", "call_id": f"{prefix}-{i}"}))
    assert sink.flush(10)


def _drained(sink: HttpSink) -> None:
    """Wait until the sink has sent whatever its spool holds (what an old shared spool would leak)."""
    deadline = time.monotonic() + 10
    while sink.transport.stats()["spool_pending"] and time.monotonic() < deadline:
        time.sleep(0.02)


def test_two_destinations_sharing_the_default_spool_never_get_each_others_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the default base, for every process
    with Receiver(api_key="key-a") as server_a, Receiver(api_key="key-b") as server_b:
        server_a.stop()
        first = _run_python(
            f"""
            import json
            from litelens.config import Settings
            from litelens.sinks import HttpSink
            sink = HttpSink(settings=Settings.from_env({{}}, endpoint={server_a.url!r}, api_key="key-a"))
            sink.transport.config.max_retries = 0
            for i in range(50):
                sink.submit(json.dumps({{"call_id": f"a-{{i}}"}}))
            assert sink.flush(10) and sink.transport.stats()["spooled"] == 50, sink.transport.stats()
            """
        )
        assert first.returncode == 0, first.stderr
        to_b = _sink(server_b.url, "key-b")
        _send(to_b, "b", 5)
        _drained(to_b)
        to_b.shutdown(5)
        assert sorted(server_b.call_ids()) == [f"b-{i}" for i in range(5)]
        server_a.start()  # A is back; a restarted process of A's sends what the first one spooled
        to_a = _sink(server_a.url, "key-a")
        assert server_a.wait_for(50, timeout=10)
        to_a.shutdown(5)
        assert sorted(server_a.call_ids()) == sorted(f"a-{i}" for i in range(50))
        assert sorted(server_b.call_ids()) == [f"b-{i}" for i in range(5)]
    assert not [p for p in (tmp_path / "cache").rglob("*") if "key-" in str(p)]


def test_a_batch_spooled_while_the_server_was_down_is_not_sent_with_another_key(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.stop()
    project_1 = _sink(receiver.url, "key-1", spool_dir=str(tmp_path))
    _send(project_1, "p1", 10)
    assert project_1.transport.stats()["spooled"] == 10
    project_1.shutdown(2)
    receiver.start()
    project_2 = _sink(receiver.url, "key-2", spool_dir=str(tmp_path))
    _send(project_2, "p2", 1)
    _drained(project_2)
    project_2.shutdown(5)
    assert receiver.call_ids() == ["p2-0"]
    project_1 = _sink(receiver.url, "key-1", spool_dir=str(tmp_path))
    assert receiver.wait_for(11, timeout=10)
    project_1.shutdown(5)
    keys = {b["headers"]["Authorization"]: [] for b in receiver.bodies}
    for body in receiver.bodies:
        keys[body["headers"]["Authorization"]] += [r["call_id"] for r in json.loads(body["body"])["records"]]
    assert keys == {"Bearer key-2": ["p2-0"], "Bearer key-1": [f"p1-{i}" for i in range(10)]}


def test_a_batch_refused_for_a_wrong_key_is_delivered_once_the_key_is_fixed(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.api_key = "right"
    wrong = _sink(receiver.url, "wrong", spool_dir=str(tmp_path))
    _send(wrong, "early", 20)
    assert wrong.transport.stats()["spooled"] == 20 and receiver.records == []
    wrong.shutdown(2)
    fixed = _sink(receiver.url, "right", spool_dir=str(tmp_path))  # the user sets LITELENS_API_KEY right
    _send(fixed, "late", 1)
    assert receiver.wait_for(21, timeout=10)
    fixed.shutdown(5)
    assert sorted(receiver.call_ids()) == sorted([f"early-{i}" for i in range(20)] + ["late-0"])


def test_a_batch_refused_for_a_wrong_endpoint_is_delivered_once_the_endpoint_is_fixed(
    receiver: Receiver, tmp_path: Path
) -> None:
    typo = _sink(f"{receiver.url}/litelens", "key", spool_dir=str(tmp_path))  # 404: no such route
    _send(typo, "early", 5)
    assert typo.transport.stats()["spooled"] == 5 and receiver.records == []
    typo.shutdown(2)
    fixed = _sink(receiver.url, "key", spool_dir=str(tmp_path))
    assert receiver.wait_for(5, timeout=10)
    fixed.shutdown(5)
    assert sorted(receiver.call_ids()) == [f"early-{i}" for i in range(5)]


def test_shutdown_right_after_the_spool_drained_does_not_wait_for_the_idle_heartbeat(
    receiver: Receiver, make_transport: MakeTransport, tmp_path: Path
) -> None:
    # The thread clears its wake-up event before an idle wait of 5 s; a shutdown landing just before
    # that clear used to be missed, and the process's exit waited out the 5 s.
    spool = Spool(tmp_path)
    for i in range(10):
        spool.put(b'{"schema":"litelens.batch/1","records":[{"call_id":"c-%d"}]}' % i, 1, False)
        transport = make_transport(spool_dir=str(tmp_path))
        transport.start()
        assert receiver.wait_for(i + 1, timeout=5)
        started = time.monotonic()
        assert transport.shutdown(10)
        assert time.monotonic() - started < 1.0


def test_fields_the_server_dropped_from_stored_records_are_counted_and_logged_once(
    sqlite_server: Any, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stores a record with a negative time to first token, that field nulled, and says so in
    `warnings`: the sender's user learns it from the counters and the log, as for a rejected record."""
    from server_helpers import make_record

    transport = make_transport(endpoint=sqlite_server.url, api_key=sqlite_server.key)
    with caplog.at_level(logging.WARNING, logger="litelens.transport"):
        transport.submit(make_record("warned-1", ttft_ms=-5.0))
        transport.submit(make_record("fine", ttft_ms=5.0))
        assert transport.flush(10)
        transport.submit(make_record("warned-2", ttft_ms=-1.0))
        assert transport.flush(10)
    stats = transport.stats()
    assert (stats["sent"], stats["failed"], stats["warnings"]) == (3, 0, 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "litelens.transport"]
    assert len(messages) == 1 and "ttft_ms cannot be negative" in messages[0], messages


@pytest.mark.parametrize(
    "body",
    [
        b'{"accepted":10,"rejected":[]}',
        b'{"accepted":1,"rejected":[{"index":0,"reason":"call_id is missing"}]}',
        b'{"accepted":2,"rejected":[],"warnings":[{"index":1,"reason":"ttft_ms cannot be negative"}]}',
        b'{"rejected":["no reason given"],"warnings":null}',
        b' \n{"accepted":0,"rejected":[{"index":0,"reason":"bad"}]}\r\n',  # white space around it
        b'\xef\xbb\xbf{"rejected":[{"reason":"after a BOM"}]}',
        '{"rejected":[{"reason":"UTF-16, é"}]}'.encode("utf-16"),
        '{"rejected":[{"reason":"UTF-32 without a BOM"}]}'.encode("utf-32-le"),
        '{"rejected":[{"reason":"non-ASCII \u00e9\u4e2d"}]}'.encode(),
        b'{"rejected":[{"reason":"\\ud800 a lone surrogate, escaped"}]}',
        b"{}",
    ],
)
def test_the_servers_answer_reads_as_json_loads_reads_it(body: bytes) -> None:
    """The answer to a batch is read without `json.loads` when it is plain UTF-8 JSON (the usual answer,
    read once per batch): whatever the server sends, the rejected and warned counts and reasons that
    reach the counters and the log are what `json.loads` makes of it."""
    from litelens.transport import Answer, read_events_answer

    answer = json.loads(body)
    refused, warnings = answer.get("rejected") or [], answer.get("warnings") or []

    def reason(item: Any) -> str:
        return str(item.get("reason") if isinstance(item, dict) else item)

    expected = Answer(
        len(refused),
        reason(refused[0]) if refused else "",
        len(warnings),
        reason(warnings[0]) if warnings else "",
    )
    assert read_events_answer(body) == expected


@pytest.mark.parametrize("body", [b"", b"not json", b'{"rejected":[]} trailing', b"[1, 2]", b"\xff\xfe\x00"])
def test_an_answer_that_is_not_a_json_object_still_raises(body: bytes) -> None:
    """`_classify` counts a batch whose 2xx answer cannot be read as stored: reading must raise, not
    return a made-up answer."""
    from litelens.transport import read_events_answer

    with pytest.raises((ValueError, AttributeError)):
        read_events_answer(body)
