"""The disk spool: ordering, atomic writes, bounds, claims shared between processes, damaged files."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from litelens import spool as spool_module
from litelens.spool import REFUSED_ENDPOINT, REFUSED_KEY, Spool


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_batches_come_back_oldest_first_and_done_removes_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        assert spool.put(b"body-%d" % i, count=i + 1, gzipped=i % 2 == 0) == 0
    assert spool.pending() == (5, 15, spool.pending()[2])
    seen = []
    while (entry := spool.claim_oldest()) is not None:
        seen.append((entry.body, entry.count, entry.gzipped))
        spool.done(entry)
    assert seen == [(b"body-%d" % i, i + 1, i % 2 == 0) for i in range(5)]
    assert spool.pending() == (0, 0, 0)
    assert os.listdir(tmp_path) == []


def test_released_batch_keeps_its_place_and_claimed_one_is_invisible(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(b"first", 1, False)
    spool.put(b"second", 1, False)
    first = spool.claim_oldest()
    assert first is not None and first.body == b"first"
    other = Spool(tmp_path)  # another process's view of the same directory
    second = other.claim_oldest()
    assert second is not None and second.body == b"second"
    assert other.claim_oldest() is None
    spool.release(first)
    other.release(second)
    again = other.claim_oldest()
    assert again is not None and again.body == b"first"


def test_write_is_atomic_leftover_temp_files_are_never_sent(tmp_path: Path) -> None:
    # What a crash mid-write leaves behind: a temporary file of a process that no longer exists.
    leftover = tmp_path / f".tmp-{_dead_pid()}-00000000000000000001-1-1-1-p.batch"
    leftover.write_bytes(b"half a bat")
    spool = Spool(tmp_path)
    assert not leftover.exists()
    assert spool.claim_oldest() is None
    spool.put(b"x" * 1000, 3, False)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp")] == []


def test_over_max_bytes_the_oldest_are_evicted_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    evicted = 0
    for i in range(30):
        evicted += spool.put(bytes([i]) * 1000, count=10, gzipped=False)
    files, records, size = spool.pending()
    assert size <= 10_000
    assert evicted == 300 - records
    assert evicted > 0
    entry = spool.claim_oldest()
    assert entry is not None
    assert entry.body == bytes([30 - files]) * 1000  # the newest survived, the oldest went


def test_batch_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    with pytest.raises(OSError):
        spool.put(b"x" * 1000, 1, False)
    assert spool.pending() == (0, 0, 0)


def test_stale_claims_of_dead_or_hung_processes_are_released_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(b"a", 1, False)
    spool.put(b"b", 1, False)
    a = spool.claim_oldest()
    b = spool.claim_oldest()
    assert a is not None and b is not None
    a.path.rename(tmp_path / f"{a.name}.claim.{_dead_pid()}.{time.time_ns()}")
    b.path.rename(tmp_path / f"{b.name}.claim.{os.getpid()}.{time.time_ns() - 3600 * 10**9}")
    fresh_claim = Spool(tmp_path)
    assert fresh_claim.pending()[0] == 2
    spool.put(b"c", 1, False)
    c = spool.claim_oldest()  # a live, recent claim must survive a reopen
    assert c is not None
    assert Spool(tmp_path).pending()[0] == 2


def test_damaged_file_is_set_aside_once_and_does_not_block_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path)
    spool.put(b"good-1", 1, False)
    spool.put(b"good-2", 1, False)
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".batch"))
    (tmp_path / names[0]).write_bytes(b"litelens-spool/1 1 p 6 12345\ngarbag")  # wrong checksum
    (tmp_path / "00000000000000000000-1-1-1-p.batch").write_bytes(b"\x00\xff not a spool file")
    with caplog.at_level(logging.WARNING, logger="litelens.spool"):
        entry = spool.claim_oldest()
    assert entry is not None and entry.body == b"good-2"
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".bad")) == sorted(
        [names[0].removesuffix(".batch") + ".batch.bad", "00000000000000000000-1-1-1-p.batch.bad"]
    )
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1


# -- probes: the disk under the spool -------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root): a disk much smaller than the spool's max_bytes."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode
    ):
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_evicts_the_oldest_batches_not_the_newest(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool")  # max_bytes 256 MiB: the disk fills long before
    evicted = 0
    for i in range(60):
        evicted += spool.put(bytes([i]) * 50_000, count=10, gzipped=False)  # every put succeeds
    files, records, _ = spool.pending()
    assert evicted > 0 and evicted + records == 600
    bodies = []
    while (entry := spool.claim_oldest()) is not None:
        bodies.append(entry.body[0])
        spool.done(entry)
    assert bodies == list(range(60 - files, 60))  # the newest survived, in order
    assert [n for n in os.listdir(tiny_disk / "spool") if n.startswith(".tmp")] == []


def test_a_full_disk_makes_room_from_damaged_files_first_and_stores_the_batch(tiny_disk: Path) -> None:
    """Room made only by deleting `.bad` files (no batch lost) is room all the same: the put that made
    it used to fail, and its batch was dropped, because no records had been evicted for it."""
    spool = Spool(tiny_disk / "spool")
    spool.put(b"x" * 60_000, count=7, gzipped=False)  # room enough for any batch below
    (oldest,) = os.listdir(tiny_disk / "spool")
    damaged = bytearray((tiny_disk / "spool" / oldest).read_bytes())
    damaged[-1] ^= 0xFF  # its checksum no longer matches
    (tiny_disk / "spool" / oldest).write_bytes(bytes(damaged))
    assert spool.claim_oldest() is None and spool.damaged == 7  # set aside as .bad
    evicted = 0
    failed = []
    for i in range(40):  # more than the disk holds
        try:
            evicted += spool.put(bytes([i]) * 50_000, count=10, gzipped=False)
        except OSError:
            failed.append(i)
        if evicted:
            break
    assert failed == []  # every put stored its batch...
    assert not (tiny_disk / "spool" / f"{oldest}.bad").exists()  # ... the .bad file's room first,
    _, records, _ = spool.pending()  # ... then the oldest batches'
    assert records + evicted == 10 * (i + 1)
    bodies = []
    while (entry := spool.claim_oldest()) is not None:
        bodies.append(entry.body[0])
        spool.done(entry)
    assert bodies == list(range(i + 1 - len(bodies), i + 1))  # the newest, none missing


def test_a_read_only_spool_refuses_writes_and_sends_nothing_it_cannot_delete(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk)
    spool.put(b"kept", 1, False)
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        with pytest.raises(OSError):
            spool.put(b"new", 1, False)
        assert spool.claim_oldest() is None  # claiming is a rename: a batch that cannot be removed after
        assert Spool(tiny_disk).pending()[1] == 1  # sending would be sent again and again
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    entry = spool.claim_oldest()
    assert entry is not None and entry.body == b"kept"


def test_a_spool_folder_removed_while_the_process_runs_is_made_again(tmp_path: Path) -> None:
    # A temp cleaner or an operator emptying the spool: the server is still down, batches keep coming.
    spool = Spool.for_destination(tmp_path / "spool", "http://127.0.0.1:4318", "k")
    spool.put(b"before", 1, False)
    shutil.rmtree(tmp_path / "spool")
    assert spool.put(b"after", 2, False) == 0
    entry = spool.claim_oldest()
    assert entry is not None and (entry.body, entry.count) == (b"after", 2)


def test_the_folders_a_spool_makes_are_owner_only_and_existing_ones_keep_their_mode(tmp_path: Path) -> None:
    """The spool's files were 0600 but its folders 0755: any user on the machine could list which servers
    a user's spool was for and how much waited, under the user's own cache dir by default."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)  # a folder the user gave as LITELENS_SPOOL_DIR: the user's to set, not ours
    old_umask = os.umask(0o022)
    try:
        made = Spool.for_destination(tmp_path / "cache" / "litelens" / "spool", "http://127.0.0.1:4318", "k")
        given = Spool.for_destination(shared, "http://127.0.0.1:4318", "k")
        made.put(b"x", 1, False)
        shutil.rmtree(made.directory)  # a temp cleaner: the folder made again is owner-only too
        made.put(b"y", 1, False)
    finally:
        os.umask(old_umask)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    for folder in (
        tmp_path / "cache",
        tmp_path / "cache" / "litelens",
        made.directory.parent,
        made.directory,
    ):
        assert mode(folder) == 0o700, folder
    assert (mode(shared), mode(given.directory)) == (0o755, 0o700)


def test_a_restarted_process_with_the_same_pid_takes_back_its_predecessors_claims(tmp_path: Path) -> None:
    # In a container the program is often pid 1 in every life: a claim or temporary file bearing our pid
    # but made before this process started is a dead predecessor's, not ours. (Its claim used to be held
    # for stale_claim_s, and its temporary file kept, uncounted, for ever.)
    before_us = spool_module._STARTED_NS - 10**6
    Spool(tmp_path).put(b"claimed by my predecessor", 1, False)
    (name,) = os.listdir(tmp_path)
    os.rename(tmp_path / name, tmp_path / f"{name}.claim.{os.getpid()}.{before_us}")
    leftover = tmp_path / f".tmp-{os.getpid()}-{before_us:020d}-{os.getpid()}-000001-1-p.batch"
    leftover.write_bytes(b"half")
    spool = Spool(tmp_path)
    assert not leftover.exists()
    entry = spool.claim_oldest()
    assert entry is not None and entry.body == b"claimed by my predecessor"


def test_claims_of_a_process_that_died_are_released_while_the_spool_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_RECOVER_EVERY_S", 0.0)  # every minute, in production
    spool = Spool(tmp_path)
    spool.put(b"a", 1, False)
    entry = spool.claim_oldest()
    assert entry is not None
    entry.path.rename(tmp_path / f"{entry.name}.claim.{_dead_pid()}.{time.time_ns()}")  # its worker died
    again = spool.claim_oldest()
    assert again is not None and again.body == b"a"


def test_files_damaged_by_a_crash_are_set_aside_counted_and_evicted_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2_600)
    spool.put(b"a" * 500, 2, False)
    spool.put(b"b" * 500, 3, False)
    spool.put(b"c" * 500, 4, False)
    first, second, _ = sorted(os.listdir(tmp_path))
    (tmp_path / first).write_bytes(b"")  # zero bytes: the data never reached the disk
    data = (tmp_path / second).read_bytes()
    (tmp_path / second).write_bytes(data[:300])  # cut short
    entry = spool.claim_oldest()
    assert entry is not None and entry.body == b"c" * 500 and spool.damaged == 5
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".bad")) == [first + ".bad", second + ".bad"]
    spool.done(entry)
    spool.put(b"d" * 1_200, 1, False)
    assert spool.put(b"e" * 1_200, 1, False) == 0  # room made from the .bad files, not from batches
    assert [n for n in os.listdir(tmp_path) if n.endswith(".bad")] == []
    assert spool.pending()[1] == 2


def test_files_of_a_live_process_still_writing_or_sending_are_left_alone(tmp_path: Path) -> None:
    # Another worker sharing the spool is alive: its temporary file (a write in progress) and its claim
    # (a send in progress) must survive this process opening the spool and recovering.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = time.time_ns()
        writing = tmp_path / f".tmp-{other.pid}-{now:020d}-{other.pid}-000001-1-p.batch"
        writing.write_bytes(b"half of a batch")
        Spool(tmp_path).put(b"being sent", 1, False)
        (name,) = (n for n in os.listdir(tmp_path) if n.endswith(".batch") and not n.startswith("."))
        claimed = tmp_path / f"{name}.claim.{other.pid}.{now}"
        os.rename(tmp_path / name, claimed)
        spool = Spool(tmp_path)
        assert spool.recover() == 0
        assert writing.exists() and claimed.exists()
        assert spool.claim_oldest() is None and spool.pending() == (0, 0, 0)
    finally:
        other.kill()
        other.wait()
    assert Spool(tmp_path).pending()[1] == 1  # once it is gone, its claim comes back
    assert not writing.exists()


# -- who owns a claim: a lock its process holds, not its pid -------------------------------------------

# A process that claims the oldest batch of a spool folder and keeps working on it (as a sender whose
# server answers slowly), saying when it has.
_OWNER = """
import sys, time
from litelens.spool import Spool
entry = Spool(sys.argv[1]).claim_oldest()
print("claimed" if entry is not None else "nothing", flush=True)
time.sleep(120)
"""


def _in_own_pid_namespace(command: list[str]) -> list[str]:
    """`command` as a container runs it: in a PID namespace of its own, where pids start again and the
    command's pid is one no process of ours has (the next after `free`)."""
    free = next(
        n for n in range(31_000, 20_000, -1) if not any(Path(f"/proc/{m}").exists() for m in (n, n + 1))
    )
    return [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        f"echo {free} > /proc/sys/kernel/ns_last_pid && {shlex.join(command)}",
    ]


def _start_owner(folder: Path, *, own_pid_namespace: bool = False) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", _OWNER, str(folder)]
    if own_pid_namespace:
        command = _in_own_pid_namespace(command)
    owner = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert owner.stdout is not None and owner.stdout.readline().strip() == "claimed"
    return owner


def _pid_namespaces_available() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _claims(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if ".claim." in n]


def test_a_live_owners_claim_is_never_taken_even_from_another_pid_namespace(tmp_path: Path) -> None:
    """Ownership was the pid in the claim's name: a process in another container's PID namespace has a
    pid that here is no process (or another one), so its claim, still being sent, was taken over."""
    Spool(tmp_path).put(b"being sent", 1, False)
    namespaced = _pid_namespaces_available()  # (creating one needs root)
    owner = _start_owner(tmp_path, own_pid_namespace=namespaced)
    try:
        (claim,) = _claims(tmp_path)
        if namespaced:
            claim_pid = int(claim.split(".claim.")[1].split(".")[0])
            assert not Path(f"/proc/{claim_pid}").exists(), "the owner's pid means nothing here"
        for _ in range(3):
            other = Spool(tmp_path)
            assert other.recover() == 0 and other.claim_oldest() is None
        assert _claims(tmp_path) == [claim]
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait()
    # Once it is gone, its batch is recovered by exactly one of the processes that look at once. Each
    # keeps its claim (and so stays its owner) until all have looked: one that ended first would leave
    # its own claim to be recovered by the next, as it must.
    finders = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from litelens.spool import Spool; e = Spool(sys.argv[1])"
                ".claim_oldest(); print(e.body.decode() if e else '', flush=True); sys.stdin.read()",
                str(tmp_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        found = [finder.stdout.readline().strip() for finder in finders]  # type: ignore[union-attr]
    finally:
        for finder in finders:
            finder.communicate(timeout=60)
    assert sorted(found) == ["", "", "", "being sent"], found


def test_the_claim_of_a_zombie_owner_is_recovered(tmp_path: Path) -> None:
    """A process that died but was not yet reaped by its parent is a zombie, whose pid `kill(pid, 0)`
    finds: its claim was held for `stale_claim_s` (10 minutes), and for ever if the parent never reaps."""
    Spool(tmp_path).put(b"claimed by the dead", 1, False)
    owner = _start_owner(tmp_path)
    try:
        owner.kill()  # not waited for: a zombie until `wait`
        deadline = time.monotonic() + 10
        while Path(f"/proc/{owner.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        spool = Spool(tmp_path)
        assert spool.pending()[:2] == (1, 1)
        entry = spool.claim_oldest()
        assert entry is not None and entry.body == b"claimed by the dead"
        spool.done(entry)
        assert os.listdir(tmp_path) == []
    finally:
        owner.wait()


# A writer that spools one batch and is held between creating its temporary file and locking it (two
# system calls apart), saying when it is. Without PID namespaces, its files bear a pid that is no process
# here (argv[2]), as another container's pid would.
_PAUSED_WRITER = """
import os, sys
from litelens import spool
if sys.argv[2] != "0":
    os.getpid = lambda: int(sys.argv[2])
lock = spool._lock
def paused(fd):
    print("created", flush=True)
    sys.stdin.readline()
    lock(fd)
spool._lock = paused
try:
    spool.Spool(sys.argv[1]).put(b"written from another namespace", 1, False)
except OSError as exc:
    print(f"lost: {exc!r}", flush=True)
else:
    print("written", flush=True)
"""


def _start_paused_writer(folder: Path) -> tuple[subprocess.Popen[str], Path]:
    """A writer held in that window, and its temporary file (whose pid is no process here)."""
    namespaced = _pid_namespaces_available()  # (creating one needs root)
    command = [sys.executable, "-c", _PAUSED_WRITER, str(folder), "0" if namespaced else str(_dead_pid())]
    if namespaced:
        command = _in_own_pid_namespace(command)
    writer = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "created"
    (temporary,) = (folder / n for n in os.listdir(folder) if n.startswith(".tmp-"))
    name = spool_module._TMP_RE.match(temporary.name)
    assert name is not None and name["locked"], "a writer that locks its files"
    assert not Path(f"/proc/{name['pid']}").exists(), "the writer's pid means nothing here"
    return writer, temporary


def test_a_writer_in_another_pid_namespace_is_not_swept_before_it_locks_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer creates its temporary file, then locks it. Caught between the two, a writer whose pid
    means nothing here (another container's) had its file removed at once as a dead writer's, and its
    batch was lost: an unlocked temporary file gets the grace alone, whatever its pid."""
    writer, temporary = _start_paused_writer(tmp_path)
    try:
        for _ in range(3):
            other = Spool(tmp_path)
            assert other.recover() == 0 and other.claim_oldest() is None
        assert temporary.exists()
        writer.stdin.write("\n")  # type: ignore[union-attr]
        writer.stdin.flush()  # type: ignore[union-attr]
        assert writer.stdout.readline().strip() == "written"  # type: ignore[union-attr]
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()
    entry = Spool(tmp_path).claim_oldest()
    assert entry is not None and entry.body == b"written from another namespace"

    # A writer that died in that window leaves its file unlocked for good: removed once the grace is over.
    monkeypatch.setattr(spool_module, "_LOCK_GRACE_NS", 3 * 10**9)  # 10 s, in production
    writer, temporary = _start_paused_writer(tmp_path)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()
    Spool(tmp_path).recover()
    assert temporary.exists()
    made_ns = int(spool_module._TMP_RE.match(temporary.name)["ts"])  # type: ignore[index]
    time.sleep(max(0.0, (made_ns + spool_module._LOCK_GRACE_NS - time.time_ns()) / 1e9) + 0.1)
    Spool(tmp_path).recover()
    assert not temporary.exists()


# -- one folder per destination ------------------------------------------------------------------------


def test_each_destination_has_its_own_folder_named_without_the_key(tmp_path: Path) -> None:
    a = Spool.for_destination(tmp_path, "http://collector:4318", "ll_secret_a")
    b = Spool.for_destination(tmp_path, "http://collector:4318", "ll_secret_b")
    elsewhere = Spool.for_destination(tmp_path, "http://other:4318", "ll_secret_a")
    assert len({a.directory, b.directory, elsewhere.directory}) == 3
    # The same URL spelt another way is the same destination (its processes share the folder).
    same = Spool.for_destination(tmp_path, "HTTP://Collector:4318/", "ll_secret_a")
    assert same.directory == a.directory
    a.put(b"a", 2, False)
    assert b.claim_oldest() is None and elsewhere.claim_oldest() is None
    entry = same.claim_oldest()
    assert entry is not None and entry.body == b"a"
    assert "secret" not in " ".join(str(p) for p in tmp_path.rglob("*"))


def test_spool_max_bytes_caps_the_whole_spool_dir_however_many_destinations_use_it(tmp_path: Path) -> None:
    """Three keys spooling into one `spool_dir` with a 10 kB cap take 10 kB of disk, not 30 kB; the
    oldest batches go first, whichever destination they were for."""
    spools = [
        Spool.for_destination(tmp_path, "http://collector:4318", f"ll_key_{i}", 10_000) for i in range(3)
    ]
    evicted = 0
    for round_ in range(10):
        for i, spool in enumerate(spools):
            evicted += spool.put(bytes([10 * i + round_]) * 1000, count=10, gzipped=False)
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert on_disk <= 10_000
    pending = [spool.pending()[1] for spool in spools]
    assert evicted == 300 - sum(pending) and all(pending)  # each destination keeps its newest
    entry = spools[0].claim_oldest()
    assert entry is not None and entry.body[0] >= 6  # its rounds 0-5 made room for the others


def test_a_folder_is_taken_over_only_while_it_is_marked_refused(tmp_path: Path) -> None:
    endpoint = "http://collector:4318"
    wrong = Spool.for_destination(tmp_path, endpoint, "wrong")
    wrong.put(b"spooled while the server was down", 3, False)
    right = Spool.for_destination(tmp_path, endpoint, "right")
    assert right.pending()[1] == 0  # not refused: the batch stays with its destination
    wrong.mark_refused(REFUSED_KEY)
    # A refused key is fixed by another key at the same endpoint, not by the same key elsewhere.
    assert Spool.for_destination(tmp_path, "http://other:4318", "wrong").pending()[1] == 0
    assert Spool.for_destination(tmp_path, "http://other:4318", "right").pending()[1] == 0
    right.recover()
    assert right.pending()[1] == 3 and wrong.pending()[1] == 0
    # Once the server takes one of its batches, the folder is its own again.
    wrong.clear_refused()
    wrong.put(b"down again", 2, False)
    right.recover()
    assert right.pending()[1] == 3 and wrong.pending()[1] == 2


def test_a_folder_refused_for_its_endpoint_is_taken_over_by_the_same_key_elsewhere(tmp_path: Path) -> None:
    typo = Spool.for_destination(tmp_path, "http://collector:4318/litelens", "key")
    typo.put(b"x", 4, False)
    typo.mark_refused(REFUSED_ENDPOINT)
    assert Spool.for_destination(tmp_path, "http://collector:4318", "another key").pending()[1] == 0
    fixed = Spool.for_destination(tmp_path, "http://collector:4318", "key")
    entry = fixed.claim_oldest()
    assert entry is not None and entry.body == b"x" and entry.count == 4


def test_a_folder_takes_over_the_claims_of_a_dead_process_but_not_of_a_live_one(tmp_path: Path) -> None:
    wrong = Spool.for_destination(tmp_path, "http://collector:4318", "wrong")
    wrong.put(b"claimed by the living", 1, False)
    wrong.put(b"claimed by the dead", 1, False)
    live, dead = sorted(n for n in os.listdir(wrong.directory) if n.endswith(".batch"))
    os.rename(wrong.directory / live, wrong.directory / f"{live}.claim.{os.getpid()}.{time.time_ns()}")
    os.rename(wrong.directory / dead, wrong.directory / f"{dead}.claim.{_dead_pid()}.{time.time_ns()}")
    wrong.mark_refused(REFUSED_KEY)
    right = Spool.for_destination(tmp_path, "http://collector:4318", "right")
    assert sorted(os.listdir(right.directory)) == [dead]


def test_batches_of_the_old_shared_layout_are_not_sent_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Spool(tmp_path).put(b"whose?", 7, False)  # an older litelens wrote straight into the base
    with caplog.at_level(logging.WARNING, logger="litelens.spool"):
        spool = Spool.for_destination(tmp_path, "http://collector:4318", "key")
        spool.recover()
    assert spool.claim_oldest() is None
    assert Spool(tmp_path).pending()[1] == 7
    said = [r.getMessage() for r in caplog.records if "older litelens" in r.getMessage()]
    assert len(said) == 1 and "7 records" in said[0]


# -- cost ----------------------------------------------------------------------------------------------


def _fill(folder: Path, files: int) -> None:
    """`files` valid batches older than any the test writes, made without the spool (fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    Spool(folder).put(b"x" * 500, 1, False)
    (model,) = os.listdir(folder)
    data = (folder / model).read_bytes()
    for i in range(files - 1):
        (folder / f"{i + 1:020d}-1-{i % 1_000_000:06d}-1-p.batch").write_bytes(data)


def _entries_read_per_cycle(folder: Path, files: int, cycles: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Directory entries the spool reads per put + pending + claim + done, with `files` waiting."""
    _fill(folder, files)
    spool = Spool(folder)
    spool.put(b"warm", 1, False)  # the first use reads the folder once
    read = 0
    real_scandir, real_listdir = os.scandir, os.listdir

    class Counting:
        def __init__(self, path: str | os.PathLike[str]) -> None:
            self.it = real_scandir(path)

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.it.close()

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            nonlocal read
            for entry in self.it:
                read += 1
                yield entry

    def listdir(path: str | os.PathLike[str]) -> list[str]:
        nonlocal read
        names = real_listdir(path)
        read += len(names)
        return names

    with monkeypatch.context() as patch:
        patch.setattr(os, "scandir", Counting)
        patch.setattr(os, "listdir", listdir)
        for i in range(cycles):
            spool.put(b"batch %d" % i, 1, False)
            assert spool.pending()[0] == files + 2  # (the warm-up batch and this one)
            entry = spool.claim_oldest()
            assert entry is not None
            spool.done(entry)
    return read / cycles


def test_a_put_and_a_claim_cost_the_same_with_2000_files_waiting_as_with_100(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of outage leaves ~170k files: a put that re-read them all would take a second of the sender
    thread (holding the GIL) and draining would be quadratic. The spool reads each folder once and then
    keeps its own changes, so what one operation reads does not grow with what waits."""
    # No periodic re-read (by design every few seconds) in the middle: a slow machine would have more.
    monkeypatch.setattr(spool_module, "_RESCAN_S", 3600.0)
    few = _entries_read_per_cycle(tmp_path / "few", 100, 40, monkeypatch)
    many = _entries_read_per_cycle(tmp_path / "many", 2_000, 40, monkeypatch)
    # (Slack for a periodic re-read or two during the run: each adds 2000 / 40 = 50 per cycle.)
    assert many <= 2 * few + 120, (few, many)


def test_processes_sharing_a_spool_exceed_max_bytes_at_most_by_what_the_others_wrote_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound `Spool` documents: between two reads of the folders, a process does not see what other
    processes wrote, so the spool may hold max_bytes plus that; the next read brings it back under."""
    monkeypatch.setattr(spool_module, "_RESCAN_S", 3600.0)  # no periodic re-read in this test
    monkeypatch.setattr(spool_module, "_SCAN_SHARE", 1e9)  # and none when another process wrote
    monkeypatch.setattr(spool_module, "_CHEAP_S", 0.0)
    cap = 10_000
    a, b = Spool(tmp_path, max_bytes=cap), Spool(tmp_path, max_bytes=cap)
    unread_by = {"a": 0, "b": 0}  # what the other wrote since this one last read the folder
    highest = 0

    def on_disk() -> int:
        return sum(f.stat().st_size for f in tmp_path.iterdir())

    for round_ in range(30):
        for me, other, spool in (("a", "b", a), ("b", "a", b)):
            body = bytes([round_]) * 1_000
            spool.put(body, 10, False)
            unread_by[other] += len(b"litelens-spool/1 10 p 1000 %d\n" % zlib.crc32(body)) + len(body)
            assert on_disk() <= cap + unread_by[me]
            highest = max(highest, on_disk())
    assert highest > cap  # (the bound is not vacuous: unread writes did overshoot)
    # A re-read (every few seconds, or when another process's change is seen within the budget) sees
    # everything again: the next put brings the spool within max_bytes.
    monkeypatch.setattr(spool_module, "_RESCAN_S", 0.0)
    monkeypatch.setattr(spool_module, "_SCAN_SHARE", 20.0)
    a.put(b"after a re-read", 1, False)
    assert on_disk() <= cap
    # Nothing was lost twice over: what is left is the newest, oldest first.
    entry = a.claim_oldest()
    assert entry is not None and entry.body[0] >= 20


def test_a_batch_another_process_spools_while_this_one_writes_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our own write moves the folder's mtime too; another process's batch written during our fsync
    must not pass for part of it, or `pending()` (the `spool_pending` stat) misses it for seconds."""
    a, b = Spool(tmp_path), Spool(tmp_path)
    a.put(b"first", 1, False)
    b.pending()
    real_fsync = os.fsync
    during: list[int] = []

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if not during:  # (b's own put fsyncs too)
            during.append(fd)
            b.put(b"written meanwhile by another process", 5, False)

    monkeypatch.setattr(os, "fsync", fsync)
    a.put(b"second", 2, False)
    assert a.pending()[1] == 1 + 2 + 5
