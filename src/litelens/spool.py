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
- A file is *claimed* by renaming it to ``<name>.claim.<pid>.<time_ns>``. ``rename`` is atomic, so when two
  processes race for the same file exactly one wins; the loser gets ``FileNotFoundError`` and moves on.
  A claim whose process is gone (or that is older than ``stale_claim_s``) is released when a spool opens
  and every minute after.
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

import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import time
import urllib.parse
import zlib
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
_CLAIM_RE = re.compile(r"^(?P<name>.+\.batch)\.claim\.(?P<pid>\d+)\.(?P<ts>\d+)$")
_TMP_RE = re.compile(r"^\.tmp-(?P<pid>\d+)-(?P<ts>\d{20})-")
_DEST_RE = re.compile(r"^(?P<kind>[a-z0-9]+)-(?P<endpoint>[0-9a-f]{12})-(?P<key>[0-9a-f]{12})$")
# Marker files: the server refused this folder's batches for its key (401/403) or its endpoint (404).
REFUSED_KEY = "refused-key"
REFUSED_ENDPOINT = "refused-endpoint"
_MARKERS = (REFUSED_KEY, REFUSED_ENDPOINT)
_RECOVER_EVERY_S = 60.0
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
    """Whether the process that made a claim or temporary file at ``time_ns`` has exited."""
    if pid == os.getpid():
        return time_ns < _STARTED_NS
    return not _pid_alive(pid)


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


class Spool:
    """A bounded, multi-process-safe directory of encoded batches, oldest first.

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
        self._lock = threading.Lock()
        self._counter = 0
        self._logged: set[str] = set()
        self._next_recover = 0.0
        # Set when `directory` is one destination's folder in a shared base (see `for_destination`).
        self._dest = _DEST_RE.match(self.directory.name) if destination else None
        self._marks: set[str] = set()
        self.damaged = 0
        """Records in files this spool found damaged and set aside (lost; the caller counts them)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._log_once("mkdir", "litelens: cannot create spool directory %s: %s", self.directory, exc)
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
        tmp = self.directory / f"{_TMP_PREFIX}{os.getpid()}-{name}"
        lost = 0
        remade = False
        while True:
            try:
                self._write(tmp, header, body)
                os.replace(tmp, self.directory / name)
                break
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                # A disk smaller than max_bytes is full: make room as if max_bytes were reached, oldest
                # first, rather than losing the newest batches while keeping the oldest.
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and (freed := self._evict_oldest(size)):
                    lost += freed
                    continue
                # The folder was removed under a running process (a temp cleaner, an operator emptying
                # the spool): made again, or every batch would be lost until the process restarts.
                if exc.errno == errno.ENOENT and not remade and self._remake():
                    remade = True
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
        return lost + self._evict(keep=name)

    def _remake(self) -> bool:
        """Make the spool's folder again if it is gone; True when it was."""
        if self.directory.is_dir():
            return False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return True

    @staticmethod
    def _write(path: Path, header: bytes, body: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, header)
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _evict_oldest(self, size: int) -> int:
        """Delete the oldest unclaimed batches holding at least ``size`` bytes; return the records lost."""
        lost = freed = 0
        try:
            bad = sorted(n for n in os.listdir(self.directory) if n.endswith(_BAD))
        except OSError:
            bad = []
        for name in bad + self._names():
            if freed >= size:
                break
            path = self.directory / name
            try:
                length = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            freed += length
            lost += _count_of(name)
        if lost:
            self._log_once(
                "evict-disk",
                "litelens: the disk of spool %s is full; evicting the oldest batches",
                self.directory,
            )
        return lost

    def _evict(self, keep: str) -> int:
        """Delete the oldest unclaimed files until the spool fits ``max_bytes``; return records lost.

        A destination's folder shares the cap with every destination folder under its base: the cap
        bounds the disk that ``spool_dir`` takes, however many endpoints and keys spool into it. Names
        begin with the time they were written, so the oldest go first whichever folder holds them.
        """
        files: list[tuple[str, Path, int]] = []
        total = 0
        for folder in self._folders():
            try:
                with os.scandir(folder) as it:
                    for de in it:
                        try:
                            size = de.stat().st_size
                        except OSError:
                            continue
                        total += size
                        if _NAME_RE.match(de.name) or de.name.endswith(_BAD):
                            files.append((de.name, folder, size))
            except OSError:
                continue
        if total <= self.max_bytes:
            return 0
        lost = 0
        for name, folder, size in sorted(files, key=lambda f: (not f[0].endswith(_BAD), f[0])):  # .bad first
            if total <= self.max_bytes:
                break
            if name == keep and folder == self.directory:
                continue
            try:
                os.unlink(folder / name)
            except OSError:  # claimed or evicted by another process meanwhile
                continue
            total -= size
            lost += _count_of(name)
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

    def _names(self) -> list[str]:
        try:
            return sorted(
                n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and not n.startswith(".")
            )
        except OSError:
            return []

    def claim_oldest(self) -> SpoolEntry | None:
        """Claim the oldest batch for sending, or return None when the spool is empty.

        Claiming is a rename, so a batch claimed here is invisible to every other process until it is
        ``done`` (deleted) or ``release``\\ d (renamed back). Now and then it first runs ``recover``, so
        the claims of a process that died are released without waiting for a process to start.
        """
        if time.monotonic() >= self._next_recover:
            self.recover()
        for name in self._names():
            match = _NAME_RE.match(name)
            if match is None:
                self._set_aside(self.directory / name, "unrecognised name")
                continue
            claimed = self.directory / f"{name}{_CLAIM}{os.getpid()}.{time.time_ns()}"
            try:
                os.rename(self.directory / name, claimed)
            except FileNotFoundError:  # another process got it first
                continue
            except OSError:
                continue
            try:
                data = claimed.read_bytes()
            except OSError:
                self.release_path(claimed, name)
                continue
            body = _parse(data, int(match.group(4)), match.group(5) == "g")
            if body is None:
                self._set_aside(claimed, "damaged content")
                continue
            return SpoolEntry(name, claimed, int(match.group(4)), match.group(5) == "g", body)
        return None

    def done(self, entry: SpoolEntry) -> None:
        """Delete a claimed batch: it was delivered (or definitively rejected)."""
        with contextlib.suppress(OSError):
            entry.path.unlink()

    def release(self, entry: SpoolEntry) -> None:
        """Give a claimed batch back (its send failed), keeping its place in the order."""
        self.release_path(entry.path, entry.name)

    def release_path(self, claimed: Path, name: str) -> None:
        with contextlib.suppress(OSError):
            os.rename(claimed, self.directory / name)

    def pending(self) -> tuple[int, int, int]:
        """Return ``(files, records, bytes)`` waiting in the spool (claimed files not included)."""
        files = records = size = 0
        try:
            with os.scandir(self.directory) as it:
                for de in it:
                    match = _NAME_RE.match(de.name)
                    if match is None:
                        continue
                    try:
                        size += de.stat().st_size
                    except OSError:
                        continue
                    files += 1
                    records += int(match.group(4))
        except OSError:
            pass
        return files, records, size

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
                if _gone(int(claim.group("pid")), int(claim.group("ts"))) or age_s > self.stale_claim_s:
                    self.release_path(self.directory / name, claim.group("name"))
                    released += 1
                continue
            tmp = _TMP_RE.match(name)
            if tmp is not None and _gone(int(tmp.group("pid")), int(tmp.group("ts"))):
                with contextlib.suppress(OSError):
                    os.unlink(self.directory / name)
        return released

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
            if claim is not None and _gone(int(claim.group("pid")), int(claim.group("ts"))):
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

    def _set_aside(self, path: Path, why: str) -> None:
        base = path.name.split(_CLAIM)[0]
        with contextlib.suppress(OSError):
            os.replace(path, self.directory / f"{base}{_BAD}")
        self.damaged += _count_of(base)
        self._log_once("bad", "litelens: spool file %s is unreadable (%s); moved aside as .bad", base, why)

    def _log_once(self, kind: str, msg: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(msg, *args)


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
