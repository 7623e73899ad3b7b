"""A disk spool of encoded batches, so nothing is lost while the server is away or the process restarts.

The spool is a plain directory. Each batch is one file whose *name* carries everything needed to order and
count it without opening it, and whose first line is a tiny header that lets a reader detect a damaged
file before sending it::

    <time_ns:020d>-<pid>-<counter:06d>-<records>-<g|p>.batch      (g = gzipped body, p = plain)

    litelens-spool/1 <records> <g|p> <body length> <crc32>\\n<body>

Why it is built this way:

- Names sort oldest first (wall-clock nanoseconds, then pid and a per-process counter), so several
  processes writing into one directory still produce one total order, and ``pending()`` needs no reads.
- A file is written under a temporary name, fsynced, then renamed: a crash leaves either a whole batch or
  a temporary file that is never sent (and is swept later), never half a batch.
- A file is *claimed* by renaming it to ``<name>.claim.<pid>.<time_ns>.l``. ``rename`` is atomic, so when
  two processes race for the same file exactly one wins; the loser gets ``FileNotFoundError`` and moves
  on. A claim whose process is gone (or that is older than ``stale_claim_s``) is released when a spool
  opens and every minute after. Whether it is gone is told by a ``flock`` the claimant holds on the file
  (``_made_by_gone``), not by its pid.
- A file that cannot be parsed is renamed to ``.bad`` and logged once: one damaged file must never block
  the queue behind it, and keeping it lets someone look at it -- until the spool needs the room: ``.bad``
  files are the first to be evicted. Their records are counted in ``damaged``.

One spool folder per destination (``Spool.for_destination``): a base directory holds one folder per
kind of batch, endpoint and API key, named ``<kind>-<sha256(endpoint)[:12]>-<sha256(key)[:12]>``, so a
process only ever sends what was recorded for the server and key it sends to -- the key itself is never in
a path. A folder whose batches the server refused as a configuration problem is marked with a file
(``refused-key`` after 401/403, ``refused-endpoint`` after 404); a process for the same endpoint with
another key (or the same key at another endpoint) moves the batches of such a folder into its own, so the
records arrive once the setting is fixed. Batches of a folder that is not marked (the server was down) stay
with their destination. ``max_bytes`` bounds the base as a whole, all its destination folders together,
so the disk a spool directory takes does not grow with the number of endpoints and keys.

Only the standard library is used; the transport's background thread is the only caller in a process.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import errno
import hashlib
import heapq
import logging
import os
import re
import threading
import time
import urllib.parse
import weakref
import zlib

try:
    import fcntl
except ImportError:  # Windows: files are judged by their process's pid
    fcntl = None  # type: ignore[assignment]
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Spool", "SpoolEntry", "destination_name"]

logger = logging.getLogger("litelens.spool")

_SUFFIX = ".batch"
_CLAIM = ".claim."
_BAD = ".bad"
_TMP_PREFIX = ".tmp-"
_MAGIC = b"litelens-spool/1"
_NAME_RE = re.compile(r"^(\d{20})-(\d+)-(\d+)-(\d+)-([gp])\.batch$")
# A claim or temporary file ending `.l` / starting `.tmp-<pid>-l-` is locked (`_made_by_gone`) by
# the process that made it; other ones (older versions, platforms without `fcntl`) are judged by pid.
_CLAIM_RE = re.compile(r"^(?P<name>.+\.batch)\.claim\.(?P<pid>\d+)\.(?P<ts>\d+)(?P<locked>\.l)?$")
_TMP_RE = re.compile(r"^\.tmp-(?P<pid>\d+)-(?P<locked>l-)?(?P<ts>\d{20})-")
# An unlocked, empty temporary file this young may be one whose lock is being taken, whatever its pid.
_LOCK_GRACE_NS = 10 * 10**9
_DEST_RE = re.compile(r"^(?P<kind>[a-z0-9]+)-(?P<endpoint>[0-9a-f]{12})-(?P<key>[0-9a-f]{12})$")
# Marker files: the server refused this folder's batches for its key (401/403) or its endpoint (404).
REFUSED_KEY = "refused-key"
REFUSED_ENDPOINT = "refused-endpoint"
_MARKERS = (REFUSED_KEY, REFUSED_ENDPOINT)
_RECOVER_EVERY_S = 60.0
# The folders are re-read when another process changed them (their mtime moved), but a re-read may take at
# most 1/_SCAN_SHARE of the time since the last one, and at the latest every _RESCAN_S seconds anyway.
_SCAN_SHARE = 20.0
_RESCAN_S = 5.0
# A folder read faster than this is re-read whenever it changed: exact, and still cheap.
_CHEAP_S = 0.001
# A claim or temporary file bearing our own pid but older than this process is a previous process's: in a
# container, a restarted program gets the same pid (often 1) and would otherwise think them its own.
_STARTED_NS = time.time_ns()


@dataclass(frozen=True)
class SpoolEntry:
    """A batch claimed from the spool: send ``body`` then call ``done``, or ``release`` on failure."""

    name: str
    """The file's unclaimed name (what ``release`` renames it back to)."""
    path: Path
    """Where the claimed file lives now."""
    count: int
    """How many records the body holds."""
    gzipped: bool
    """Whether ``body`` is gzip-compressed (send it with ``Content-Encoding: gzip``)."""
    body: bytes


def _gone(pid: int, time_ns: int) -> bool:
    """Whether the process that made a claim or temporary file at ``time_ns`` has exited, by its pid: for
    files that carry no lock (made by older versions, or without ``fcntl``)."""
    if pid == os.getpid():
        return time_ns < _STARTED_NS
    return not _pid_alive(pid)


def _made_by_gone(path: Path, match: re.Match[str]) -> bool:
    """Whether the process that made the claim or temporary file at `path` (`_CLAIM_RE`, `_TMP_RE`) has
    exited.

    A pid said too little: a zombie's pid is alive to ``kill(pid, 0)``, pids are reused, and processes in
    containers that share a spool folder across PID namespaces see each other's pids as another process's
    or as no one's (so a live process's claims could be taken over, a dead one's never recovered). So a
    process holds an exclusive ``flock`` on each file it is writing or has claimed, on the file itself,
    for as long as it works on it; the kernel drops the lock when the process ends, however it ends and
    in whatever namespace it ran.
    """
    if not match.group("locked"):
        return _gone(int(match.group("pid")), int(match.group("ts")))
    if fcntl is None:
        return False  # cannot tell: `stale_claim_s` decides
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # gone meanwhile: nothing to recover
    try:
        # Read before the lock is tried: a writer writes only once it holds its lock, so a file that had
        # bytes before its lock was found free was locked once and let go.
        written = os.fstat(fd).st_size > 0
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False  # held: its process is alive
    finally:
        os.close(fd)
    if _CLAIM_RE.match(path.name) or written:
        return True
    # An empty temporary file may be one created an instant ago and about to be locked: it is a dead
    # writer's only once it is older than any such instant. Its pid cannot shorten that: a writer in
    # another PID namespace has a pid that is no process here (or another one), and is alive all the same.
    return time.time_ns() - int(match.group("ts")) > _LOCK_GRACE_NS


def _lock(fd: int) -> None:
    """Hold an exclusive lock on a file being written (see `_made_by_gone`). Waits: the only other holder
    can be a process checking, for an instant, whether the file's writer is alive."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a filesystem without locks: the file's age decides
            fcntl.flock(fd, fcntl.LOCK_EX)


# The spools of this process, so that a forked child lets go of the claims it inherited (`_after_fork`).
_SPOOLS: weakref.WeakSet[Spool] = weakref.WeakSet()


def _after_fork() -> None:
    # The child's copies of the descriptors share the parent's locks; closing them leaves those held
    # by the parent, whose claims they are, and lets them go when the parent ends.
    for spool in list(_SPOOLS):
        for fd in spool._claim_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        spool._claim_fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _digest(purpose: str, value: str) -> str:
    data = f"litelens-spool {purpose}\0{value}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:12]


def normalize_endpoint(endpoint: str) -> str:
    """The URL batches are posted under, spelt one way: ``HTTP://Host:80/x/`` is ``http://host:80/x``."""
    url = urllib.parse.urlsplit(endpoint.strip())
    scheme = url.scheme.lower()
    try:
        port = url.port
    except ValueError:
        port = None
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(url.hostname or '').lower()}:{port}{url.path.rstrip('/')}"


def destination_name(endpoint: str, api_key: str | None, kind: str = "events") -> str:
    """The spool folder of one destination: ``<kind>-<hash of endpoint>-<hash of key>``.

    Hashes, so the key never appears in a path or a log line; `kind` keeps batches of different formats
    (call records, OTLP spans) apart even in one base directory.
    """
    return f"{kind}-{_digest('endpoint', normalize_endpoint(endpoint))}-{_digest('key', api_key or '')}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _make_folder(path: Path) -> None:
    """Make `path` and its missing parents owner-only (0700); a folder that exists keeps its mode.

    The batch files are 0600, but the folders' listings name a spool's destinations and show how much
    waits; `Path.mkdir(parents=True)` makes the parents with the umask's mode (0755), whatever `mode` says.
    """
    try:
        path.mkdir(mode=0o700)
    except FileNotFoundError:
        if path.parent == path:
            raise
        _make_folder(path.parent)
        _make_folder(path)
    except OSError:
        # Made meanwhile by another process sharing the spool, or there already: either way not ours to
        # change.
        if not path.is_dir():
            raise


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class _Folder:
    """One spool folder as this process last read it, kept current with this process's own changes.

    Reading a folder costs a ``stat`` per file; keeping what was read lets a put, a claim and ``pending``
    cost the same with ten files or a day of outage in the folder.
    """

    __slots__ = (
        "bad",
        "batches",
        "bytes",
        "cost",
        "doubt",
        "mtime",
        "odd",
        "other",
        "path",
        "read_at",
        "records",
        "sizes",
        "stale",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: collections.deque[str] = collections.deque()  # oldest first
        self.sizes: dict[str, int] = {}  # of the batches, .bad files and unrecognised names
        self.odd: list[str] = []  # `.batch` names that do not parse: set aside when claiming
        self.bad: list[str] = []
        self.records = 0
        self.bytes = 0  # of the batches
        self.other = 0  # of everything else: claims, temporary files, markers, .bad files, odd names
        self.mtime: int | None = None
        self.read_at = float("-inf")  # not read yet
        self.cost = 0.0
        self.doubt = False  # another process changed the folder; not read yet to stay within the budget
        self.stale = True  # must be read before it is used

    def read(self) -> None:
        started = time.monotonic()
        # Taken before reading, so that a change made while we read shows up as a change next time.
        self.mtime = _mtime(self.path)
        names: list[str] = []
        self.sizes, self.odd, self.bad = {}, [], []
        self.records = self.bytes = self.other = 0
        try:
            with os.scandir(self.path) as it:
                for de in it:
                    try:
                        size = de.stat().st_size
                    except OSError:
                        continue
                    name = de.name
                    if name.endswith(_SUFFIX) and not name.startswith("."):
                        self.sizes[name] = size
                        if _NAME_RE.match(name):
                            names.append(name)
                            self.bytes += size
                            self.records += _count_of(name)
                        else:
                            self.odd.append(name)
                            self.other += size
                    elif name.endswith(_BAD):
                        self.sizes[name] = size
                        self.bad.append(name)
                        self.other += size
                    else:
                        self.other += size
        except OSError:
            pass
        names.sort()
        self.bad.sort()
        self.batches = collections.deque(names)
        self.read_at = time.monotonic()
        self.cost = self.read_at - started
        self.doubt = self.stale = False

    def add(self, name: str, size: int) -> None:
        """A batch appeared: this process wrote it or gave back its claim."""
        if name in self.sizes:
            return
        self.sizes[name] = size
        self.bytes += size
        self.records += _count_of(name)
        # Our own new names are the newest, and a released claim was the oldest: both ends are O(1).
        if not self.batches or name > self.batches[-1]:
            self.batches.append(name)
        elif name < self.batches[0]:
            self.batches.appendleft(name)
        else:
            self.batches.insert(bisect.bisect(self.batches, name), name)

    def drop(self, name: str) -> int:
        """A batch left (claimed, evicted, or gone to another process); return its size."""
        size = self.sizes.pop(name, None)
        if size is None:
            return 0
        if self.batches and self.batches[0] == name:
            self.batches.popleft()
        else:
            with contextlib.suppress(ValueError):
                self.batches.remove(name)
        self.bytes -= size
        self.records -= _count_of(name)
        return size

    def add_bad(self, name: str, size: int) -> None:
        self.sizes[name] = size
        self.other += size
        bisect.insort(self.bad, name)

    def drop_bad(self, name: str) -> int:
        size = self.sizes.pop(name, 0)
        with contextlib.suppress(ValueError):
            self.bad.remove(name)
        self.other -= size
        return size

    def before(self) -> None:
        """This process is about to change the folder: note first whether another process did."""
        if not self.doubt and _mtime(self.path) != self.mtime:
            self.doubt = True

    def mine(self) -> None:
        """This process just changed the folder: its new mtime is not another process's doing.

        Not while a change of another process is still unread: it must be read when the budget allows.
        """
        if not self.doubt:
            self.mtime = _mtime(self.path)


class Spool:
    """A bounded, multi-process-safe directory of encoded batches, oldest first.

    A spool reads its folders (names and sizes) once and then applies its own puts, claims and evictions
    to what it read, so ``put``, ``claim_oldest`` and ``pending`` cost the same with ten files waiting or
    with the 170k of a day-long outage; only what is deleted costs. It reads a folder again when the
    folder's mtime says another process changed it -- at once if reading it takes under a millisecond,
    else once ``_SCAN_SHARE`` (20) times that long has passed since the last read, so re-reading takes at
    most 1/20 of the time -- and at the latest after max(5 s, 20 x the read's duration), which also
    catches changes the mtime missed (made in the same clock tick as one of this process's).

    How far ``max_bytes`` may be exceeded when several processes share the folders: a put evicts until
    the bytes *this process knows of* fit, so the spool may hold ``max_bytes`` plus what the other
    processes wrote since this process last read the folders (with the budget above: at most what they
    write in max(5 s, 20 x a read)), plus the batches they held claimed at that moment (one each while
    sending). The next read sees everything again and the next put evicts down to ``max_bytes``. A
    process alone in its base keeps it within ``max_bytes`` exactly.

    >>> spool = Spool("/tmp/litelens-spool")                      # doctest: +SKIP
    >>> spool.put(body, count=100, gzipped=True)                  # doctest: +SKIP
    0
    >>> entry = spool.claim_oldest()                              # doctest: +SKIP
    >>> send(entry.body) and spool.done(entry) or spool.release(entry)  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 256 * 2**20,
        *,
        stale_claim_s: float = 600.0,
        destination: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.stale_claim_s = stale_claim_s
        self._lock = threading.RLock()
        self._index: dict[Path, _Folder] = {}
        self._base_mtime: int | None = None
        self._claimed: dict[Path, int] = {}  # our claims' sizes, still on disk until done
        self._claim_fds: dict[Path, int] = {}  # our claims' locked descriptors (`_made_by_gone`)
        self._counter = 0
        self._logged: set[str] = set()
        self._next_recover = 0.0
        # Set when `directory` is one destination's folder in a shared base (see `for_destination`).
        self._dest = _DEST_RE.match(self.directory.name) if destination else None
        self._marks: set[str] = set()
        self.damaged = 0
        """Records in files this spool found damaged and set aside (lost; the caller counts them)."""
        try:
            _make_folder(self.directory)
        except OSError as exc:
            self._log_once("mkdir", "litelens: cannot create spool directory %s: %s", self.directory, exc)
        _SPOOLS.add(self)
        self.recover()

    @classmethod
    def for_destination(
        cls,
        base: str | os.PathLike[str],
        endpoint: str,
        api_key: str | None,
        max_bytes: int = 256 * 2**20,
        *,
        kind: str = "events",
        stale_claim_s: float = 600.0,
    ) -> Spool:
        """The spool of one destination: its own folder under `base`, shared by its processes only.

        Opening it (and every minute after) moves in the batches of sibling folders the server refused
        as a configuration problem that this destination fixes: same endpoint but a refused key, or same
        key but an endpoint that answered 404.
        """
        name = destination_name(endpoint, api_key, kind)
        return cls(Path(base) / name, max_bytes, stale_claim_s=stale_claim_s, destination=True)

    # -- writing ---------------------------------------------------------------------------------------

    def put(self, body: bytes, count: int, gzipped: bool) -> int:
        """Store one batch durably; return how many records of older batches were evicted to make room.

        Raises ``OSError`` when *this* batch could not be stored (larger than the whole spool, or the disk
        refused the write), so the caller can count it as lost rather than spooled; it is logged once here.
        When the disk is full, the oldest batches are evicted to make room, as when ``max_bytes`` is
        reached; if the write fails even so, the exception's ``evicted`` says how many records that cost.
        """
        header = b"%s %d %s %d %d\n" % (_MAGIC, count, b"g" if gzipped else b"p", len(body), zlib.crc32(body))
        size = len(header) + len(body)
        if size > self.max_bytes:
            self._log_once(
                "too-big", "litelens: a batch of %d bytes exceeds the spool's limit; dropped", size
            )
            raise OSError(errno.EFBIG, "batch larger than the spool's max_bytes")
        with self._lock:
            self._counter += 1
            flag = "g" if gzipped else "p"
            name = (
                f"{time.time_ns():020d}-{os.getpid()}-{self._counter % 1_000_000:06d}-{count}-{flag}{_SUFFIX}"
            )
            # Before writing: our own write must not look like another process's change of the folder.
            self._fresh()
        locked = "l-" if fcntl is not None else ""
        tmp = self.directory / f"{_TMP_PREFIX}{os.getpid()}-{locked}{name}"
        lost = 0
        remade = False
        while True:
            try:
                with self._lock:
                    self._own().before()
                # Our temporary file moves the mtime too: taken as ours at once, so that another process's
                # change during the fsync is still seen as one.
                self._write(tmp, header, body, created=self._mine, final=self.directory / name)
                break
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                # A disk smaller than max_bytes is full: make room as if max_bytes were reached, oldest
                # first, rather than losing the newest batches while keeping the oldest. Room made from
                # `.bad` files alone costs no record, and is room all the same.
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    evicted, freed = self._evict_oldest(size)
                    if freed:
                        lost += evicted
                        continue
                # The folder was removed under a running process (a temp cleaner, an operator emptying
                # the spool): made again, or every batch would be lost until the process restarts.
                if exc.errno == errno.ENOENT and not remade and self._remake():
                    remade = True
                    self._own().stale = True
                    continue
                self._log_once(
                    "write",
                    "litelens: cannot write to spool %s (%s); batches are dropped",
                    self.directory,
                    exc,
                )
                if lost:
                    exc.evicted = lost  # type: ignore[attr-defined]
                raise
        with self._lock:
            own = self._own()
            if own.stale:  # the folder was made again: what was read of it is gone
                own = self._fresh()[self.directory]
            own.add(name, size)
            own.mine()
            return lost + self._evict(keep=name)

    def _remake(self) -> bool:
        """Make the spool's folder again if it is gone; True when it was."""
        if self.directory.is_dir():
            return False
        try:
            _make_folder(self.directory)
        except OSError:
            return False
        return True

    def _mine(self) -> None:
        with self._lock:
            self._own().mine()

    def _write(
        self,
        path: Path,
        header: bytes,
        body: bytes,
        created: Callable[[], None] | None = None,
        final: Path | None = None,
    ) -> None:
        """Write `path` durably, then rename it to `final` while still holding it locked."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _lock(fd)
            if created is not None:
                created()
            os.write(fd, header)
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            if final is not None:
                with self._lock:
                    self._own().before()
                os.replace(path, final)
        finally:
            os.close(fd)

    def _evict_oldest(self, size: int) -> tuple[int, int]:
        """Delete the oldest unclaimed batches holding at least ``size`` bytes; return the records lost
        and the bytes freed.

        The ``.bad`` files go first (kept only for someone to look at), then batches, oldest first. Rare
        (only when the disk is full), and walked in place: it costs what it deletes, not the whole queue.
        """
        lost = freed = 0
        with self._lock:
            own = self._fresh()[self.directory]
            own.before()
            queues = ((own.bad, own.drop_bad, False), (own.batches, own.drop, True))
            for names, drop, is_batch in queues:
                kept = 0  # names at the head that could not be deleted: they stay, in their place
                while freed < size and kept < len(names):
                    name = names[kept]
                    try:
                        os.unlink(own.path / name)
                    except FileNotFoundError:  # claimed or evicted by another process meanwhile
                        drop(name)
                        if kept < len(names) and names[kept] == name:
                            kept += 1  # not in the index's sizes: step over it rather than spin on it
                        continue
                    except OSError:
                        kept += 1
                        continue
                    freed += drop(name)
                    if is_batch:
                        lost += _count_of(name)
            own.mine()
        if lost:
            self._log_once(
                "evict-disk",
                "litelens: the disk of spool %s is full; evicting the oldest batches",
                self.directory,
            )
        return lost, freed

    def _evict(self, keep: str) -> int:
        """Delete the oldest unclaimed files until the spool fits ``max_bytes``; return records lost.

        A destination's folder shares the cap with every destination folder under its base: the cap
        bounds the disk that ``spool_dir`` takes, however many endpoints and keys spool into it. Names
        begin with the time they were written, so the oldest go first whichever folder holds them.
        Works on the folders as last read (see `Spool`), so it costs what it deletes, not what is kept.
        """
        folders = list(self._index.values())
        total = sum(f.bytes + f.other for f in folders)
        if total <= self.max_bytes:
            return 0
        lost = 0
        touched: set[Path] = set()
        for folder in folders:
            folder.before()
        for name, folder in sorted(((n, f) for f in folders for n in f.bad), key=lambda nf: nf[0]):
            if total <= self.max_bytes:
                break
            try:
                os.unlink(folder.path / name)
            except FileNotFoundError:  # another process evicted it meanwhile
                pass
            except OSError:
                continue
            total -= folder.drop_bad(name)
            touched.add(folder.path)
        skip: set[tuple[Path, str]] = {(self.directory, keep)}
        while total > self.max_bytes:
            # Chosen before deleting, as the folders' queues cannot change while they are walked.
            victims: list[tuple[str, _Folder]] = []
            projected = total
            oldest = heapq.merge(*(_queue(f) for f in folders), key=lambda nf: nf[0])
            for name, folder in oldest:
                if projected <= self.max_bytes:
                    break
                if (folder.path, name) in skip:
                    continue
                victims.append((name, folder))
                projected -= folder.sizes[name]
            if not victims:
                break
            for name, folder in victims:
                try:
                    os.unlink(folder.path / name)
                except FileNotFoundError:  # claimed or evicted by another process meanwhile: not ours
                    total -= folder.drop(name)
                    continue
                except OSError:
                    skip.add((folder.path, name))
                    continue
                total -= folder.drop(name)
                touched.add(folder.path)
                lost += _count_of(name)
        for folder in folders:
            if folder.path in touched:
                folder.mine()
        if lost:
            self._log_once(
                "evict",
                "litelens: spool %s is full (%d bytes); evicting the oldest batches",
                self.directory.parent if self._dest is not None else self.directory,
                self.max_bytes,
            )
        return lost

    def _folders(self) -> list[Path]:
        """This spool's folder, and for a destination's folder the other destinations' under its base."""
        if self._dest is None:
            return [self.directory]
        base = self.directory.parent
        try:
            siblings = [base / n for n in os.listdir(base) if n != self.directory.name and _DEST_RE.match(n)]
        except OSError:
            siblings = []
        return [self.directory, *siblings]

    # -- reading ---------------------------------------------------------------------------------------

    def _fresh(self) -> dict[Path, _Folder]:
        """The folders as last read, re-reading those another process changed, within the budget.

        A folder is re-read when its mtime moved for another reason than this process's own change, but
        only once the time since its last read is `_SCAN_SHARE` times what that read took (unless it was
        cheap); and at the latest after max(`_RESCAN_S`, that time), which also catches changes made
        within the same mtime tick as one of ours.
        """
        if self._dest is not None:
            base = self.directory.parent
            mtime = _mtime(base)
            if mtime is None or mtime != self._base_mtime or not self._index:
                # A destination folder was added or removed under the base: cheap, one entry per folder.
                self._base_mtime = mtime
                self._index = {p: self._index.get(p) or _Folder(p) for p in self._folders()}
        elif not self._index:
            self._index = {self.directory: _Folder(self.directory)}
        now = time.monotonic()
        for folder in self._index.values():
            age = now - folder.read_at
            budget = _SCAN_SHARE * folder.cost if folder.cost > _CHEAP_S else 0.0
            if folder.stale or age >= max(_RESCAN_S, budget):
                folder.read()
            elif folder.doubt or folder.mtime != _mtime(folder.path):
                if age >= budget:
                    folder.read()
                else:
                    folder.doubt = True
        return self._index

    def _own(self) -> _Folder:
        folder = self._index.get(self.directory)
        if folder is None:
            folder = self._fresh()[self.directory]
        return folder

    def claim_oldest(self) -> SpoolEntry | None:
        """Claim the oldest batch for sending, or return None when the spool is empty.

        Claiming is a rename, so a batch claimed here is invisible to every other process until it is
        ``done`` (deleted) or ``release``\\ d (renamed back). Now and then it first runs ``recover``, so
        the claims of a process that died are released without waiting for a process to start.
        """
        if time.monotonic() >= self._next_recover:
            self.recover()
        with self._lock:
            own = self._fresh()[self.directory]
            if not own.batches and not own.odd:
                # Cheap when empty, and another process of this destination may have spooled meanwhile
                # within the same mtime tick as a change of ours.
                own.read()
            try:
                return self._claim(own)
            finally:
                own.mine()

    def _claim(self, own: _Folder) -> SpoolEntry | None:
        for name in own.odd:
            size = own.sizes.pop(name, 0)
            own.other -= size
            self._set_aside(own.path / name, "unrecognised name", size)
        own.odd.clear()
        skipped: list[tuple[str, int]] = []  # could not be claimed or read: kept, in their place
        try:
            while own.batches:
                name = own.batches[0]
                size = own.drop(name)
                match = _NAME_RE.match(name)
                assert match is not None  # (only such names are queued)
                # Locked before it is renamed, so no other process ever sees our claim unlocked.
                try:
                    fd: int | None = os.open(self.directory / name, os.O_RDONLY)
                except FileNotFoundError:  # another process got it first
                    continue
                except OSError:
                    fd = None
                if fd is not None and fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        # Held: by a process claiming it this instant (the rename decides between us),
                        # or by a hung one whose claim went stale and was released (it would hold it
                        # for ever). Or a filesystem without locks. The claim then names our pid alone.
                        os.close(fd)
                        fd = None
                elif fd is not None:
                    os.close(fd)
                    fd = None
                locked = ".l" if fd is not None else ""
                claimed = self.directory / f"{name}{_CLAIM}{os.getpid()}.{time.time_ns()}{locked}"
                own.before()
                try:
                    os.rename(self.directory / name, claimed)
                except FileNotFoundError:  # another process got it first
                    if fd is not None:
                        os.close(fd)
                    continue
                except OSError:
                    if fd is not None:
                        os.close(fd)
                    skipped.append((name, size))
                    continue
                if fd is not None:
                    self._claim_fds[claimed] = fd
                try:
                    data = claimed.read_bytes()
                except OSError:
                    if self._unclaim(claimed, name):
                        skipped.append((name, size))
                    else:
                        own.other += size
                    continue
                own.other += len(data)
                body = _parse(data, int(match.group(4)), match.group(5) == "g")
                if body is None:
                    own.other -= len(data)
                    self._set_aside(claimed, "damaged content", len(data))
                    continue
                self._claimed[claimed] = len(data)
                return SpoolEntry(name, claimed, int(match.group(4)), match.group(5) == "g", body)
            return None
        finally:
            for name, size in skipped:
                own.add(name, size)

    def done(self, entry: SpoolEntry) -> None:
        """Delete a claimed batch: it was delivered (or definitively rejected)."""
        with self._lock:
            size = self._claimed.pop(entry.path, None)
            if (own := self._index.get(self.directory)) is not None:
                own.before()
            try:
                entry.path.unlink()
            except OSError:
                return
            finally:
                self._let_go(entry.path)
            if own is not None and size is not None:
                own.other -= size
                own.mine()

    def release(self, entry: SpoolEntry) -> None:
        """Give a claimed batch back (its send failed), keeping its place in the order."""
        self.release_path(entry.path, entry.name)

    def release_path(self, claimed: Path, name: str) -> None:
        with self._lock:
            size = self._claimed.pop(claimed, None)
            own = self._index.get(self.directory)
            if own is not None:
                own.before()
            if not self._unclaim(claimed, name):
                return
            if own is None:
                return
            if size is None:  # a claim this process did not make (a dead one's): read it with the rest
                own.stale = True
                return
            own.other -= size
            own.add(name, size)
            own.mine()

    def _unclaim(self, claimed: Path, name: str) -> bool:
        try:
            os.rename(claimed, self.directory / name)
        except OSError:
            return False
        finally:
            self._let_go(claimed)
        return True

    def _let_go(self, claimed: Path) -> None:
        """Unlock a claim of ours, once it is renamed or deleted: never while it still says it is ours."""
        fd = self._claim_fds.pop(claimed, None)
        if fd is not None:
            os.close(fd)

    def pending(self) -> tuple[int, int, int]:
        """Return ``(files, records, bytes)`` waiting in the spool (claimed files not included)."""
        with self._lock:
            own = self._fresh()[self.directory]
            return len(own.batches), own.records, own.bytes

    # -- housekeeping ----------------------------------------------------------------------------------

    def recover(self) -> int:
        """Release stale claims and remove abandoned temporary files; return the claims released.

        A claim is stale when the process that made it no longer exists, or when it is older than
        ``stale_claim_s`` (a process that hung mid-send should not hold a batch forever; the cost of
        being wrong is a duplicate, which receivers remove by ``call_id``).
        """
        self._next_recover = time.monotonic() + _RECOVER_EVERY_S
        released = 0
        now = time.time_ns()
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        if self._dest is not None:
            # Another process of this destination may have marked or cleared the folder meanwhile.
            self._marks = {m for m in _MARKERS if m in names}
            self._adopt()
        for name in names:
            claim = _CLAIM_RE.match(name)
            if claim is not None:
                age_s = (now - int(claim.group("ts"))) / 1e9
                if age_s > self.stale_claim_s or _made_by_gone(self.directory / name, claim):
                    self.release_path(self.directory / name, claim.group("name"))
                    released += 1
                continue
            tmp = _TMP_RE.match(name)
            if tmp is not None and _made_by_gone(self.directory / name, tmp):
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / name)
                    self._invalidate(self.directory)
        if released:
            self._invalidate(self.directory)
        return released

    def _invalidate(self, folder: Path) -> None:
        """Read `folder` again before using it: this process changed it in a way it did not track."""
        with self._lock:
            if (known := self._index.get(folder)) is not None:
                known.stale = True

    # -- destinations ----------------------------------------------------------------------------------

    def mark_refused(self, marker: str) -> None:
        """Say the server refused this folder's batches for its key (`REFUSED_KEY`: 401, 403) or its
        endpoint (`REFUSED_ENDPOINT`: 404), so a process whose setting fixes that may take them over."""
        if self._dest is None or marker in self._marks:
            return
        self._marks.add(marker)
        try:
            (self.directory / marker).touch()
        except OSError as exc:
            self._log_once("mark", "litelens: cannot mark spool %s: %s", self.directory, exc)

    def clear_refused(self) -> None:
        """The server took a batch of this destination: its batches are its own again, not to be adopted."""
        if not self._marks:
            return
        for marker in self._marks:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / marker)
        self._marks.clear()

    def _adopt(self) -> None:
        """Move in the batches of sibling folders that were refused for what this destination fixes."""
        assert self._dest is not None
        own = self._dest
        base = self.directory.parent
        try:
            siblings = os.listdir(base)
        except OSError:
            return
        legacy = 0
        for name in siblings:
            if _NAME_RE.match(name):
                legacy += _count_of(name)
                continue
            other = _DEST_RE.match(name)
            if other is None or name == self.directory.name or other["kind"] != own["kind"]:
                continue
            # A folder refused for the same reason as this one's is no better off here: leave it.
            if other["endpoint"] == own["endpoint"] and REFUSED_KEY not in self._marks:
                marker = REFUSED_KEY
            elif other["key"] == own["key"] and REFUSED_ENDPOINT not in self._marks:
                marker = REFUSED_ENDPOINT
            else:
                continue
            if os.path.exists(base / name / marker) and (adopted := self._take_from(base / name)):
                self._invalidate(self.directory)
                self._invalidate(base / name)
                logger.warning(
                    "litelens: spool %s takes over %d records from %s, which the server refused for its %s",
                    self.directory,
                    adopted,
                    name,
                    "API key" if marker == REFUSED_KEY else "endpoint",
                )
        if legacy:
            self._log_once(
                "legacy",
                "litelens: %d records in %s were spooled by an older litelens that did not say where they "
                "were going; they are not sent. Move their .batch files into the folder of their "
                "destination (this process uses %s) to send them, or delete them",
                legacy,
                base,
                self.directory,
            )

    def _take_from(self, folder: Path) -> int:
        """Move a folder's batches (and the claims of processes that are gone) into this one; return records."""
        try:
            names = os.listdir(folder)
        except OSError:
            return 0
        records = 0
        for name in names:
            claim = _CLAIM_RE.match(name)
            if claim is not None and _made_by_gone(folder / name, claim):
                target = claim.group("name")
            elif _NAME_RE.match(name):
                target = name
            else:  # claimed by a live process, temporary, damaged, a marker: not ours to move
                continue
            try:
                os.rename(folder / name, self.directory / target)
            except OSError:  # taken by another process meanwhile
                continue
            records += _count_of(target)
        return records

    def _set_aside(self, path: Path, why: str, size: int) -> None:
        base = path.name.split(_CLAIM)[0]
        try:
            os.replace(path, self.directory / f"{base}{_BAD}")
        except OSError:
            pass
        else:
            self._own().add_bad(f"{base}{_BAD}", size)
        finally:
            self._let_go(path)
        self.damaged += _count_of(base)
        self._log_once("bad", "litelens: spool file %s is unreadable (%s); moved aside as .bad", base, why)

    def _log_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(msg, *args)


def _queue(folder: _Folder) -> Iterator[tuple[str, _Folder]]:
    return ((name, folder) for name in folder.batches)


def _count_of(name: str) -> int:
    match = _NAME_RE.match(name)
    return int(match.group(4)) if match else 0


def _parse(data: bytes, count: int, gzipped: bool) -> bytes | None:
    """Return the body of a spool file, or None when the header does not vouch for it."""
    newline = data.find(b"\n", 0, 128)
    if newline < 0:
        return None
    parts = data[:newline].split(b" ")
    if len(parts) != 5 or parts[0] != _MAGIC:
        return None
    try:
        n, flag, length, crc = int(parts[1]), parts[2], int(parts[3]), int(parts[4])
    except ValueError:
        return None
    body = data[newline + 1 :]
    if n != count or flag != (b"g" if gzipped else b"p") or len(body) != length or zlib.crc32(body) != crc:
        return None
    return body
