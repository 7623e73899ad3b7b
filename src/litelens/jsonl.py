"""JSON-lines files with size and age rotation, optionally gzipped, readable back exactly once.

`JsonlWriter` appends one line per record to `path`. When the file would pass `max_bytes`, or is older
than `max_age_s`, it is rotated:

1. the live file is closed and renamed to `<stem>.<UTC time>.<microseconds><suffix>` -- one atomic
   rename, so at every instant each line is in exactly one file. Readers order rotated files by name,
   so a name never sorts before an existing one's, even after the clock was stepped back;
2. with `gzip`, that file is compressed -- on a thread of its own, so records go on being written
   meanwhile -- to a hidden temporary name, fsynced, renamed to `... .gz` (atomic again), and only
   then is the plain rotated file removed. If compressing fails (a full disk), the temporary is
   removed at once and the plain file kept, for the next writer's `recover` to try again.

A crash between the two last steps leaves both the plain and the `.gz` file of one rotation;
`recover()` (run when a writer opens) deletes the plain one, since the `.gz` was only renamed into
place once complete, and compresses any plain rotated file that has no `.gz` yet. A line left unfinished
at the end of the live file (a writer killed mid-batch) is cut off before anything is appended. So
`read_records(path)` -- every rotated file, oldest first, then the live one -- yields each record
exactly once. Processes writing one path take turns through a lock on its folder (`flock`; see
`JsonlWriter._locked`); `{pid}` in the path, replaced by the process id, gives each its own file.

Rotated files are kept forever unless `keep_files` (the newest N rotations) or `keep_age_s` (rotations
younger than that, by the time in their names) says otherwise; then the oldest beyond the limits are
deleted after each rotation, when a writer opens and, for age, while the writer idles. With `{pid}` in
the file name the limits count the files of every process the path names, dead ones included (the
live file of a process that is gone, and left unwritten for a while, is rotated aside first), so
restarts cannot grow the folder past them. Deleting holds the folder's lock, and leaves a rotation
that is being compressed (a live writer's temporary is there) to the prune its compression runs once
done; that compression renames its copy into place under the same lock, and only while the plain
file is still there, so a rotation deleted in the instant before its compression began does not come
back as a `.gz`. What is kept is always the newest rotations, each in one file, whole.

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import calendar
import contextlib
import gzip
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
import zlib
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, Literal

from litelens.worker import BackgroundQueue

try:
    import fcntl
except ImportError:  # Windows: give each process its own path there (`{pid}`)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "JsonlWriter",
    "PartlyWritten",
    "Records",
    "file_family",
    "read_lines",
    "read_records",
    "rotated_files",
]

log = logging.getLogger("litelens.jsonl")

_TMP = ".tmp-"
# Files we create hold prompts and answers: readable by their owner only.
_FILE_MODE = 0o600
# How much of the live file's first line is read for its first record's time: a whole record as the
# size limits allow it (256 KiB of content, 16 KiB of metadata by default), and then some.
_MAX_FIRST_LINE = 8 << 20


def expand(path: str | os.PathLike[str]) -> Path:
    """`{pid}` in a path becomes the process id, so every worker of a proxy writes its own file."""
    return Path(os.fspath(path).replace("{pid}", str(os.getpid()))).expanduser()


def _split(path: Path) -> tuple[str, str]:
    """`calls.jsonl` -> (`calls`, `.jsonl`); a name without a suffix gets none."""
    return (path.stem, path.suffix) if path.suffix else (path.name, "")


def _pattern(path: Path) -> re.Pattern[str]:
    stem, suffix = _split(path)
    return re.compile(rf"^{re.escape(stem)}\.(\d{{8}}T\d{{6}}Z\.\d{{6}}){re.escape(suffix)}(\.gz)?$")


def _is_stream(path: Path) -> bool:
    """Whether `path` is, or links through, /dev or /proc (`/dev/stdout`, `/dev/fd/1`, a link to them):
    a stream the process was handed, whatever the shell redirected it to. Renaming the path would move
    the link and leave the stream, and the file behind it (the shell's, shared with the app's own
    output) is not ours to trim. /dev/shm holds ordinary files (a tmpfs)."""
    hop = os.fspath(path)
    for _ in range(40):
        if hop.startswith(("/dev/", "/proc/")) and not hop.startswith("/dev/shm/"):
            return True
        try:
            target = os.readlink(hop)
        except OSError:
            return False
        hop = os.path.join(os.path.dirname(hop), target)
    return True


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    if fcntl is None:  # Windows: one process per path (`{pid}`), nothing to take turns with
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not there (yet): the write makes it, or fails and is counted
        yield
        return
    try:
        with _flock(fd):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(fd: int) -> Iterator[None]:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without locks: as without fcntl
        locked = False
    else:
        locked = True
    try:
        yield
    finally:
        if locked:
            # Unlocked, not left to the close: a child forked meanwhile has a copy of the descriptor,
            # and the lock would last as long as the copy -- every writer waiting while that worker lives.
            fcntl.flock(fd, fcntl.LOCK_UN)


# A dead process's `{pid}` file is rotated aside only once it has not been written for this long: a
# process id that looks dead here may be a live writer elsewhere (another host on a shared folder,
# another PID namespace), and one that has written lately is not taken from it.
_ORPHAN_IDLE_S = 300.0

_TMP_OWNER = re.compile(r"\.(\d+)\.\d+\.gz$")


# The compression temporaries this process is writing now (their names).
_compressing: set[str] = set()


def _in_progress(tmp_name: str) -> bool:
    """Whether a compression temporary belongs to a process still running (another writer of the
    path, compressing now): only a dead writer's temporary is left over. One bearing our own pid is
    ours only if we are writing it: a program restarted in a container gets the same pid (often 1)
    as the run that was killed mid-compression, whose temporary would otherwise be kept, and its
    rotation spared by `keep_files`, for ever."""
    owner = _TMP_OWNER.search(tmp_name)
    if owner is None:
        return False
    pid = int(owner.group(1))
    return tmp_name in _compressing if pid == os.getpid() else _alive(pid)


def _alive(pid: int) -> bool:
    if fcntl is None:  # (on Windows, os.kill would end the process)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # there, under another user
        return True
    return True


def file_family(template: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Patterns for the rotated files (groups `stamp`, `gz`), and for the live files (group `pid`), of
    every process writing `template`: with `{pid}` in the file name, the workers of this run and of
    every earlier one (whose process ids are gone), so a retention limit bounds the folder however
    often the app restarts."""
    stem, suffix = _split(Path(template))
    name = re.escape(stem) + "\0" + re.escape(suffix)
    first, *rest = name.split(re.escape("{pid}"))
    name = first + "".join(("(?P=pid)" if i else "(?P<pid>\\d+)") + part for i, part in enumerate(rest))
    stem_re, _, suffix_re = name.partition("\0")
    return (
        re.compile(rf"^{stem_re}\.(?P<stamp>\d{{8}}T\d{{6}}Z\.\d{{6}}){suffix_re}(?P<gz>\.gz)?$"),
        re.compile(rf"^{stem_re}{suffix_re}$"),
    )


def rotated_files(path: str | os.PathLike[str]) -> list[Path]:
    """The rotated files of `path`, oldest first (their names sort by time); the live file not included."""
    live = expand(path)
    pattern = _pattern(live)
    try:
        names = os.listdir(live.parent)
    except OSError:
        return []
    # For a moment after a compression, a rotation exists both plain and gzipped (identical lines):
    # the .gz, complete once renamed into place, stands for both.
    by_stamp: dict[str, str] = {}
    for name in names:
        m = pattern.match(name)
        if m is not None and (m.group(2) or m.group(1) not in by_stamp):
            by_stamp[m.group(1)] = name
    return [live.parent / by_stamp[stamp] for stamp in sorted(by_stamp)]


def _stamp_us(stamp: str) -> int:
    """A rotated file's time (`20261130T061220Z.176259`) in microseconds since the epoch; -1 for one
    that is no date (a name made by hand)."""
    date, _, micros = stamp.partition(".")
    try:
        seconds = calendar.timegm(time.strptime(date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return -1
    return seconds * 1_000_000 + int(micros)


def _complete_end(path: Path, size: int) -> int:
    """Where the last whole line of the file's first `size` bytes ends (0 when there is none)."""
    end = size
    with open(path, "rb") as f:
        while end > 0:
            start = max(0, end - (1 << 16))
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline != -1:
                return start + newline + 1
            end = start
    return 0


def open_live(path: Path) -> IO[bytes] | None:
    """The live file opened for reading, or None when there is none yet."""
    try:
        return open(path, "rb")  # held open by the caller (across polls, like tail -F)
    except FileNotFoundError:
        return None


def open_with_rotations(live: Path) -> tuple[IO[bytes] | None, list[Path]]:
    """The live file, opened, and the rotated files, listed after it was opened: if it was rotated in
    between, both are taken again. Every rotation older than the open file is then in the list, and
    what it held until a later rotation is read from the open handle: no line is missed or read twice."""
    while True:
        current = open_live(live)
        rotated = rotated_files(live)
        if current is None or identity(live) == identity(current.fileno()):
            return current, rotated
        current.close()  # rotated while we listed: again


def read_file(file: Path, missing_ok: bool = True) -> bytes:
    """A rotated (or live) file's bytes. A plain rotated file compressed since it was listed is read
    from its `.gz` (renamed into place before the plain file went); a `.gz` is read up to any damage (cut
    short by a full disk, a crash mid-copy): one bad old file must not hide the lines before it."""
    try:
        if file.name.endswith(".gz"):
            return _gunzip(file)
        try:
            return file.read_bytes()
        except FileNotFoundError:
            return _gunzip(Path(f"{file}.gz"))
    except FileNotFoundError:
        if missing_ok:
            return b""  # removed since (old logs cleared)
        raise


def _gunzip(path: Path) -> bytes:
    chunks: list[bytes] = []
    with gzip.open(path, "rb") as f:
        try:
            while chunk := f.read1(1 << 16):  # read1: what one call decompressed is kept
                chunks.append(chunk)
        except (EOFError, gzip.BadGzipFile, zlib.error):
            pass
    return b"".join(chunks)


def identity(file: Path | int) -> tuple[int, int] | None:
    """(device, inode) of a path or an open descriptor; None for a path that is not there."""
    try:
        info = os.stat(file)
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino)


def read_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """Every line ever written to `path`: rotated files (gzipped or not) oldest first, then the live file.

    A last line without its newline (a write in progress) is left out.
    """
    for _, _, line in _numbered_lines(path):
        yield line


def _numbered_lines(path: str | os.PathLike[str]) -> Iterator[tuple[Path, int, bytes]]:
    """`read_lines`, each line with the file it is in and its number there (from 1), to say where a
    line that cannot be read is."""
    live = expand(path)
    current, rotated = open_with_rotations(live)
    try:
        for file in rotated:
            yield from _complete_lines(file, read_file(file))
        if current is not None:
            yield from _complete_lines(live, current.read())
    finally:
        if current is not None:
            current.close()


def _complete_lines(file: Path, data: bytes) -> Iterator[tuple[Path, int, bytes]]:
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        if line:
            yield file, number, line


Errors = Literal["warn", "ignore", "strict"]


def read_records(path: str | os.PathLike[str], *, errors: Errors = "warn") -> Records:
    """`json.loads` of every line `read_lines` yields, oldest first.

    A line that is not JSON (a foreign line, one a crash or a full disk cut short) is skipped, so one
    bad line does not cost the records after it: with `errors="warn"` (the default) the first is logged
    with its file and line number (warning, `litelens.jsonl`) and a total once reading is done;
    `"ignore"` skips them without a word; `"strict"` raises the `ValueError` (`json.JSONDecodeError`)
    at the first, as `read_records` did before it skipped them. Either way the result's `skipped`
    counts them.

    >>> records = read_records("/var/log/litelens/calls.jsonl")   # doctest: +SKIP
    >>> ids = [r["call_id"] for r in records]; records.skipped     # doctest: +SKIP
    0
    """
    if errors not in ("warn", "ignore", "strict"):
        raise ValueError(f"litelens: errors={errors!r} must be 'warn', 'ignore' or 'strict'")
    return Records(path, errors)


class Records(Iterator[Any]):
    """The records `read_records` yields, and how many lines it skipped so far (`skipped`), with where
    the first of them is (`first_skipped`: file and line number, or None)."""

    def __init__(self, path: str | os.PathLike[str], errors: Errors) -> None:
        self.skipped = 0
        self.first_skipped: tuple[Path, int] | None = None
        self._path = path
        self._errors = errors
        self._records = self._read()

    def __iter__(self) -> Records:
        return self

    def __next__(self) -> Any:
        return next(self._records)

    def close(self) -> None:
        """Stop reading: the live file, kept open while reading, is closed now (as for a generator)."""
        self._records.close()

    def _read(self) -> Generator[Any, None, None]:
        for file, number, line in _numbered_lines(self._path):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the stack
                if self._errors == "strict":
                    raise
                self._skip(file, number, exc)
                continue
            yield record
        if self.skipped > 1 and self._errors == "warn" and self.first_skipped is not None:
            file, number = self.first_skipped
            log.warning(
                "litelens: skipped %d lines of %s that are not JSON records (the first: line %d of %s)",
                self.skipped,
                expand(self._path),
                number,
                file,
            )

    def _skip(self, file: Path, number: int, exc: Exception) -> None:
        self.skipped += 1
        if self.first_skipped is not None:
            return
        self.first_skipped = (file, number)
        if self._errors == "warn":
            log.warning(
                "litelens: skipped line %d of %s, which is not a JSON record (%s); the other lines are "
                "read (further ones are counted: `skipped` of what read_records returned)",
                number,
                file,
                str(exc)[:200],
            )


class PartlyWritten(OSError):
    """`JsonlWriter.write` failed after its first `written` lines were in a file: the batch was split by
    a rotation, and what came before it was written (and rotated aside) before the failure. Those lines
    are read back; the others are not in any file."""

    def __init__(self, written: int, cause: OSError) -> None:
        super().__init__(cause.errno, f"{cause.strerror or cause} (after {written} lines were written)")
        self.written = written


class JsonlWriter:
    """Appends lines to one file and rotates it by size and age. Not thread-safe: one thread writes.

    >>> w = JsonlWriter("/tmp/litelens-doc/calls.jsonl", max_bytes=1_000_000)   # doctest: +SKIP
    >>> w.write([b'{"call_id": "a"}']); w.close()                                # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = 64 * 2**20,
        max_age_s: float | None = None,
        gzip: bool = True,
        fsync: bool = False,
        keep_files: int | None = None,
        keep_age_s: float | None = None,
    ) -> None:
        if keep_files is not None and (
            isinstance(keep_files, bool) or not isinstance(keep_files, int) or keep_files < 0
        ):
            raise ValueError(
                f"litelens: keep_files={keep_files!r} must be a whole number, 0 or more (or None)"
            )
        if keep_age_s is not None and (
            isinstance(keep_age_s, bool)
            or not isinstance(keep_age_s, (int, float))
            or not 0 < keep_age_s < float("inf")
        ):
            raise ValueError(
                f"litelens: keep_age_s={keep_age_s!r} must be a number of seconds above 0 (or None)"
            )
        # Absolute from the start: an app that changes its working directory later (a daemon, a test
        # runner) must not move its file, nor split it between two places.
        self._template = os.path.abspath(os.path.expanduser(os.fspath(path)))
        self._pid = os.getpid()
        self.path = expand(self._template)
        self._stream = _is_stream(self.path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.gzip = gzip
        self.fsync = fsync
        self.rotations = 0
        self.compress_failures = 0  # rotated files left uncompressed because gzipping them failed
        self._compress_warned = False
        self.keep_files = keep_files
        self.keep_age_s = keep_age_s
        self.deleted = 0  # rotations deleted by `keep_files` / `keep_age_s`
        self.delete_failures = 0  # rotations those limits wanted gone that could not be deleted
        self._delete_told = False
        self._delete_warned = False
        self._pruned_at = time.monotonic()
        self._file: IO[bytes] | None = None
        self._identity = (0, 0)  # device and inode of the open file
        self._owned = False  # a regular file of ours, to rotate and trim (not a pipe, nor /dev/stdout)
        self._size = 0
        self._opened = 0.0
        self._ready = False
        # Rotated files are gzipped on a thread of their own (made when there is one to compress): a
        # 64 MiB file takes seconds, which the thread writing the records must not wait for.
        self._gzipper: BackgroundQueue | None = None
        try:
            # Under the folder's lock as every later `recover` is (from `_write`): it deletes and
            # renames what other writers of the folder may be rotating or pruning at this moment.
            with contextlib.nullcontext() if self._stream else _folder_lock(self.path.parent):
                self._prepare()
        except OSError as exc:
            # Not fatal: the app starts (a proxy with LITELENS_SINKS=jsonl:...) and each write tries again,
            # its batch counted as failed while the folder cannot be made (a mount not there yet...).
            log.warning(
                "litelens: cannot use %s (%s); its records are counted as failed until it can", self.path, exc
            )

    def write(self, lines: list[bytes]) -> None:
        """Append `lines` (each without its newline), rotating first whenever a limit would be passed.

        The lines between two rotations go to the file in one write, whole or not at all: when the
        disk refuses them (full, a quota), what got in is cut off again before the error is raised, so
        lines counted as failed are not in the file, and no half line is left for the next to join.
        A failure after a rotation had split the batch raises `PartlyWritten`, which says how many of
        the first lines are in the file.
        """
        if self._pid != os.getpid():
            self._after_fork()
        with self._locked():
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        if self._file is not None and self._removed():
            self._close_file()
            # Its folder may be gone too: made again, and recovered, by `_prepare`. A file another
            # writer of the path rotated is only opened anew: `recover` would compress again what
            # that writer is compressing.
            self._ready = self.path.parent.is_dir()
        if self.max_age_s is not None:
            self._open()  # an existing file's age is known once it is open
        if self._due_by_age():
            self._rotate()
        if not lines:
            return
        f = self._open()
        if self._owned:  # what other processes writing this path appended counts too
            size = os.fstat(f.fileno()).st_size
            grown, self._size = size != self._size, size
            if grown and size:
                # Another writer of the path may have died mid-line since our last write (writers take
                # turns under the lock we hold, so none is writing now): our first line would be glued
                # to its half line, and both records lost to every reader.
                self._drop_unfinished_line(f)
        limit = self.max_bytes if self._owned else None
        run: list[bytes] = []
        pending = 0  # bytes of `run`, newlines included
        written = 0  # lines of earlier runs, in the file whatever happens next
        try:
            for line in lines:
                size = len(line) + 1
                filled = self._size + pending
                if limit is not None and filled and filled + size > limit:
                    self._append(run)
                    written += len(run)
                    run, pending = [], 0
                    self._rotate()
                run.append(line)
                pending += size
            self._append(run)
        except OSError as exc:
            if written:
                raise PartlyWritten(written, exc) from exc
            raise
        if self.fsync and self._file is not None:
            os.fsync(self._file.fileno())

    def _append(self, lines: list[bytes]) -> None:
        """Write `lines` at the end of the live file in one piece; if that fails, cut off what got in."""
        if not lines:
            return
        f = self._open()
        data = memoryview(b"\n".join([*lines, b""]))
        size = len(data)
        try:
            while data:
                data = data[f.write(data) :]
        except OSError:
            if self._owned:
                with contextlib.suppress(OSError):  # back to where this write began (the file's end)
                    f.truncate(f.tell() - (size - len(data)))
            raise
        self._size += size

    def tick(self) -> None:
        """Rotate an idle file that has grown old, and delete rotated files past `keep_age_s` (called
        periodically by the sink's thread)."""
        if self._due_by_age():
            with self._locked():
                self._rotate()  # which prunes too
        elif (
            not self._stream
            and self.keep_age_s is not None
            and time.monotonic() - self._pruned_at >= min(60.0, self.keep_age_s / 4)
        ):
            # An app that goes quiet still has its old files go when they pass the age; looked for
            # at most once a minute (sooner for a shorter age), each time a listing of the folder.
            with self._locked():
                self._prune()

    def _locked(self) -> AbstractContextManager[None]:
        """Hold the folder's lock (`flock`) while appending or rotating; a stream's (`/dev/stdout`), its own.

        Processes writing one path (a proxy's forked workers, given no `{pid}`) take turns through it:
        a rotation renames the file only between two writes, and each write first checks that the file
        it has open is still the one at the path, so no line goes into a file already renamed aside
        (and perhaps compressed and removed), nor is the file rotated twice. Without `fcntl` (Windows),
        or on a folder that cannot be locked, one process per path is assumed.
        """
        if fcntl is None:
            return contextlib.nullcontext()
        if self._stream:
            # Forked workers all writing to the container's stdout, one pipe: a write past the pipe's
            # buffer goes in pieces, between which another's may fall. They take turns on the pipe.
            return _flock(self._open().fileno())
        return _folder_lock(self.path.parent)

    def _due_by_age(self) -> bool:
        return (
            self.max_age_s is not None
            and self._owned
            and self._size > 0
            and time.monotonic() - self._opened >= self.max_age_s
        )

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._stream:
            self.recover()
        self._ready = True

    def _open(self) -> IO[bytes]:
        if self._file is None:
            if not self._ready:
                self._prepare()
            # Unbuffered: each write reaches the file whole or fails, with nothing left in a buffer
            # to land there later (see `write`).
            # Owner-only when we create it: it holds every prompt and answer, and the usual umask 022
            # would let any user of the host read them. A file that exists keeps the mode it has.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
            self._file = open(fd, "ab", buffering=0)  # noqa: SIM115 -- kept open across writes
            info = os.fstat(self._file.fileno())
            self._identity = (info.st_dev, info.st_ino)
            # A pipe or terminal (`/dev/stdout` in a container) has no size, nor a position to ask for;
            # /dev/stdout redirected to a file has both, but neither the file nor the name is ours.
            self._owned = stat.S_ISREG(info.st_mode) and not self._stream
            self._size = self._file.tell() if self._owned else 0
            if self._size:
                self._drop_unfinished_line(self._file)
            self._opened = time.monotonic() - (self._age_of_live() if self._size else 0.0)
        return self._file

    def _removed(self) -> bool:
        """Whether the open file is no longer at `path`: deleted, or its folder removed, by someone
        clearing logs (lines written on would go to a file no one can read, yet count as written), or
        rotated by another process writing the same path, which started the next file at once."""
        try:
            info = os.stat(self.path)
        except OSError:
            log.warning("litelens: %s was removed while open; starting it again", self.path)
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def _drop_unfinished_line(self, live: IO[bytes]) -> None:
        """Cut the live file back to its last complete line. A writer that died in the middle of a batch
        (killed, out of disk) left a line without its end; a line appended to it would make one line of
        two records that no reader can decode. The cut-off part was never a whole record."""
        end = _complete_end(self.path, self._size)
        if end < self._size:
            log.warning(
                "litelens: %s ended in an unfinished line (%d bytes, from a writer that stopped mid-write); "
                "it was cut off",
                self.path,
                self._size - end,
            )
            live.truncate(end)
            self._size = end

    def _age_of_live(self) -> float:
        """How long ago an existing live file was started, from its first record's `start_time`: a
        process restarted more often than `max_age_s` must not keep the same file forever."""
        try:
            with open(self.path, "rb") as f:
                first = json.loads(f.readline(_MAX_FIRST_LINE))
            started = float(first["start_time"])
        except (OSError, ValueError, TypeError, KeyError):
            return 0.0
        return min(max(time.time() - started, 0.0), 10 * 365 * 86400.0)

    def rotate(self) -> Path | None:
        """Close the live file and move it aside; return the rotated file. With `gzip`, it is compressed
        later, on the compression thread (`close` waits for that). Rotated files past `keep_files` or
        `keep_age_s` are deleted."""
        # The folder's lock, as `write` takes it; a stream is never rotated, and its lock is on the
        # file that `_rotate` closes.
        with contextlib.nullcontext() if self._stream else _folder_lock(self.path.parent):
            return self._rotate()

    def _rotate(self) -> Path | None:
        mine = self._identity if self._file is not None else None
        self._close_file()
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        if info.st_size == 0 or not stat.S_ISREG(info.st_mode) or self._stream:
            return None  # nothing to move aside, or nothing of ours (see `_is_stream`)
        if mine is not None and (info.st_dev, info.st_ino) != mine:
            return None  # another process writing this path rotated it already
        target = self._rotated_name()
        os.replace(self.path, target)
        self.rotations += 1
        # The next file at once: the path is missing only when someone removed it (see `_removed`).
        self._open()
        if self.gzip:
            self._compress_later(target)
        self._prune()
        return target

    def _rotated_name(self, live: Path | None = None, at_us: int | None = None) -> Path:
        """`<stem>.<UTC time of the rotation, to the microsecond><suffix>`, and always after the newest
        rotated file there is: readers order rotated files by name, so a clock stepped back (NTP, a VM
        resumed) must not give a later file a name that sorts before an earlier one. Such a file is
        named a microsecond after the newest instead, until the clock has caught up. Called with the
        folder's lock held, so every process writing the path sees the others' names. `live`: another
        file than this writer's (a dead process's, see `_adopt_orphans`), named for `at_us`, the time
        of its last write, rather than now."""
        live = live or self.path
        stem, suffix = _split(live)
        rotated = rotated_files(live)  # oldest first: the last is the newest
        last = _pattern(live).match(rotated[-1].name) if rotated else None
        newest = _stamp_us(last.group(1)) if last else -1
        at = max(time.time_ns() // 1000 if at_us is None else at_us, newest + 1)
        while True:
            seconds, micros = divmod(at, 1_000_000)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds)) + f".{micros:06d}"
            candidate = live.parent / f"{stem}.{stamp}{suffix}"
            if not candidate.exists() and not Path(f"{candidate}.gz").exists():
                return candidate
            at += 1

    def _compress_later(self, plain: Path) -> None:
        if self._gzipper is None:
            # No time of its own at exit (`exit_flush_s=0`): the sink's shutdown waits for it within the
            # sink's share, and a plain file left then is compressed by the next writer's `recover`.
            self._gzipper = BackgroundQueue(
                self._compress_all, name="litelens-jsonl-gzip", stage=3, exit_flush_s=0.0
            )
        self._gzipper.submit(plain)

    def _compress_all(self, plains: list[Path]) -> None:
        for plain in plains:
            try:
                self._compress(plain)
            except OSError as exc:
                # A full disk, a folder made read-only, a write error: the plain file stays (every
                # line still readable, and the next writer's `recover` tries again), the temporary is
                # already gone, and the next file in the batch is still tried.
                self.compress_failures += 1
                if not self._compress_warned:
                    self._compress_warned = True
                    log.warning(
                        "litelens: cannot compress %s (%s); it is kept uncompressed "
                        "(further failures are only counted: compress_failed in stats())",
                        plain,
                        exc,
                    )

    def _compress(self, plain: Path) -> None:
        """Gzip `plain` to `plain.gz`. Another writer of the path (a process starting, recovering) may
        compress the same file at once: each writes a temporary of its own, and either finished copy
        renamed into place is whole; a file already gone was done by the other. When the copy fails,
        its temporary is removed at once (it would take as much room as the file again, on a disk that
        is already full, until this process ends) and the error is raised with the plain file intact."""
        final = Path(f"{plain}.gz")
        tmp = plain.parent / f"{_TMP}{plain.name}.{os.getpid()}.{threading.get_ident()}.gz"
        _compressing.add(tmp.name)
        try:
            self._compress_to(plain, tmp, final)
        finally:
            _compressing.discard(tmp.name)

    def _compress_to(self, plain: Path, tmp: Path, final: Path) -> None:
        try:
            src = open(plain, "rb")  # noqa: SIM115 -- closed below
        except FileNotFoundError:
            return
        try:
            with src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE), "wb") as raw:
                with gzip.GzipFile(
                    filename=plain.name, mode="wb", fileobj=raw, compresslevel=6, mtime=0
                ) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
                raw.flush()
                os.fsync(raw.fileno())
            with _folder_lock(plain.parent):
                # Into place only while the plain file is there: `_prune` (under this lock) may have
                # deleted the rotation meanwhile, and its copy must not bring it back.
                if os.path.exists(plain):
                    os.replace(tmp, final)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(plain)
                    self._prune()  # it, or older ones, may be past the limits, left while compressing
                    return
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            os.unlink(tmp)

    def recover(self) -> None:
        """Finish what a crash interrupted: drop half-written temporaries, settle plain/gz pairs; with
        retention limits, rotate aside dead processes' `{pid}` files and delete what is past the limits.
        Called with the folder's lock held."""
        family, _ = file_family(self._template)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.path.parent):
                if not name.startswith(_TMP) or _in_progress(name):
                    continue
                # This path's, or (with `{pid}`) a dead worker's of the same path: no one else's.
                compressing = _TMP_OWNER.sub("", name[len(_TMP) :])
                if name.startswith(f"{_TMP}{_split(self.path)[0]}.") or family.match(compressing):
                    with contextlib.suppress(OSError):
                        os.unlink(self.path.parent / name)
        pattern = _pattern(self.path)
        try:
            names = sorted(os.listdir(self.path.parent))
        except OSError:
            names = []
        for name in names:
            match = pattern.match(name)
            if match is None or match.group(2):
                continue
            file = self.path.parent / name
            if Path(f"{file}.gz").exists():  # the .gz is complete (renamed into place): the plain is a copy
                with contextlib.suppress(OSError):
                    os.unlink(file)
            elif self.gzip:
                self._compress_later(file)
        if self.keep_files is not None or self.keep_age_s is not None:
            self._adopt_orphans()
            self._prune()

    def _adopt_orphans(self) -> None:
        """Rotate aside the live `{pid}` files of processes that are gone (an earlier run's workers, a
        crash): no one writes them again, and left live, no limit would ever count them -- every restart
        would leave files that stay. Each is named for its last write, so `keep_age_s` counts from its
        last record. A process id the system reused for another program only delays it; a file written
        in the last `_ORPHAN_IDLE_S` waits for a later start."""
        if "{pid}" not in Path(self._template).name:
            return
        _, live = file_family(self._template)
        folder = self.path.parent
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(folder)):
                match = live.match(name)
                if match is None or int(match["pid"]) == os.getpid() or _alive(int(match["pid"])):
                    continue
                orphan = folder / name
                with contextlib.suppress(OSError):
                    info = os.lstat(orphan)
                    if (
                        not stat.S_ISREG(info.st_mode)
                        or info.st_size == 0
                        or time.time() - info.st_mtime < _ORPHAN_IDLE_S
                    ):
                        continue  # a link is not ours to move; an empty file holds nothing to keep
                    # Its writer may have died mid-line: cut back to the last whole line, as the live
                    # file is on open, so the rotated files still concatenate line by line.
                    end = _complete_end(orphan, info.st_size)
                    if end < info.st_size:
                        os.truncate(orphan, end)
                    target = self._rotated_name(orphan, info.st_mtime_ns // 1000)
                    os.replace(orphan, target)
                    if self.gzip:
                        self._compress_later(target)

    def _prune(self) -> None:
        """Delete the rotations past `keep_files` (the oldest beyond the newest N) or older than
        `keep_age_s` (by the rotation time in their names), of every process writing the path (see
        `file_family`). Called with the folder's lock held: no other writer rotates, prunes, or renames a
        compressed copy into place meanwhile. Never raises: a rotation that cannot be deleted is
        counted (`delete_failures`) and logged once, and writing goes on."""
        if (self.keep_files is None and self.keep_age_s is None) or self._stream:
            return
        self._pruned_at = time.monotonic()
        pattern, _ = file_family(self._template)
        folder = self.path.parent
        try:
            names = os.listdir(folder)
        except OSError as exc:
            self._delete_failed(folder, exc)
            return
        # One rotation may be two files for a moment (plain, and its .gz renamed into place): one entry.
        rotations: dict[str, tuple[str, list[str]]] = {}
        compressing: set[str] = set()
        for name in names:
            match = pattern.match(name)
            if match is not None:
                base = name[: -len(".gz")] if match["gz"] else name
                rotations.setdefault(base, (match["stamp"], []))[1].append(name)
            elif name.startswith(_TMP) and _in_progress(name):
                compressing.add(_TMP_OWNER.sub("", name[len(_TMP) :]))
        order = sorted(rotations, key=lambda base: (rotations[base][0], base))  # oldest first
        doomed = set(order[: max(len(order) - self.keep_files, 0)] if self.keep_files is not None else ())
        if self.keep_age_s is not None:
            before = (time.time() - self.keep_age_s) * 1e6
            # A name that is no date (-1) was not made by a rotation: its age is unknown, it stays.
            doomed.update(base for base in order if 0 <= _stamp_us(rotations[base][0]) < before)
        for base in order:
            # One being compressed (here or by another writer) is left to the prune that follows its
            # compression; were it deleted now, the compression would drop its copy (see `_compress`).
            if base not in doomed or base in compressing:
                continue
            try:
                for name in sorted(rotations[base][1]):  # the plain first: the .gz alone is whole
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(folder / name)
            except OSError as exc:
                self._delete_failed(folder / base, exc)
                continue
            self.deleted += 1
            if not self._delete_told:
                self._delete_told = True
                log.info(
                    "litelens: deleted %s, past keep_files=%s / keep_age_s=%s (further deletions are only "
                    "counted: deleted in stats())",
                    folder / base,
                    self.keep_files,
                    self.keep_age_s,
                )

    def _delete_failed(self, file: Path, exc: OSError) -> None:
        self.delete_failures += 1
        if not self._delete_warned:
            self._delete_warned = True
            log.warning(
                "litelens: cannot delete %s (%s), past the JSONL retention limits; it is kept and tried "
                "again after the next rotation (further failures are only counted: delete_failed in stats())",
                file,
                exc,
            )

    def _after_fork(self) -> None:
        # A forked child (a proxy's worker) must not write into its parent's file: `{pid}` now names
        # its own. The inherited handle is closed (the file is unbuffered: nothing of the parent's
        # is written by closing it here).
        self._pid = os.getpid()
        if self._file is not None:
            self._file.close()
        self._file = None
        self._size = 0
        self.path = expand(self._template)
        self._stream = _is_stream(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def close(self, timeout: float | None = None) -> bool:
        """Close the live file and wait until the rotated files are compressed; False when `timeout`
        ran out first (the rest is compressed in the background, or by the next writer's `recover`)."""
        self._close_file()
        gzipper, self._gzipper = self._gzipper, None
        return gzipper is None or gzipper.shutdown(timeout)

    def _close_file(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            with contextlib.suppress(OSError):
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            f.close()
        self._size = 0
