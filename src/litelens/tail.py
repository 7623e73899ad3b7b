"""`litelens tail`: print calls as they happen, from a JSONL sink's files or from a litelens server.

    litelens tail --jsonl /var/log/litelens/calls.jsonl     # follows the file across rotations
    litelens tail --jsonl '/var/log/litelens/calls-{pid}.jsonl'   # every worker's file
    litelens tail --server http://127.0.0.1:4318 --api-key ll_...

One line per call (`litelens.display.format_call`): time, status, model, latency, time to first token,
tokens in and out, cost. Standard library only, like the core: it runs wherever the callback runs.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import ssl
import sys
import time
import urllib.parse
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any

from litelens.config import Settings
from litelens.credentials import endpoint_secrets, scrub_text, shown_url
from litelens.display import format_call
from litelens.httpconn import Connection, Response, proxy_from_environment, tls_context
from litelens.jsonl import (
    expand,
    file_family,
    identity,
    open_live,
    open_with_rotations,
    read_file,
    rotated_files,
)
from litelens.transport import parse_retry_after, request_target, server_base, server_url

__all__ = ["follow_jsonl", "follow_server", "run"]


# --------------------------------------------------------------------------------------------------
# JSONL files


def follow_jsonl(
    path: str | os.PathLike[str],
    *,
    from_start: bool = False,
    poll_s: float = 0.2,
    stop: Callable[[], bool] = lambda: False,
    on_skip: Callable[[bytes], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records appended to `path` from now on (or all of them, `from_start`), following rotations.

    A line that is no record (not JSON, or JSON but not an object) is skipped, and handed to `on_skip`.

    Like `tail -F`, the live file is kept open and read to its end; when the path names another file,
    ours was rotated away and what it still held is read from the open file. Rotated files we never
    had open (several rotations between two polls) are read whole, oldest first, before the new live
    file. Keeping the file open also keeps its inode from being reused by the next live file, which
    would otherwise look like the same file.

    `{pid}` in the file name (a sink of one file per process) follows every process's file, each as
    above: those there now, and those that appear later (a worker started since), from their first
    record. Records come as they are read, file after file, not sorted by time. A file deleted is let
    go once read. `{pid}` in a folder's name raises `ValueError`.
    """
    skip = on_skip or _ignore
    if "{pid}" in os.fspath(path):
        return _follow_processes(os.fspath(path), from_start, poll_s, stop, skip)
    # Not a generator itself: the live file is opened (and "now" fixed) when this is called, not at the
    # first next(); and opened before the rotated files are listed, so no rotation falls in between.
    live = expand(path)
    current, rotated = open_with_rotations(live)
    if current is not None and not from_start:
        current.seek(0, os.SEEK_END)  # "from now on": what the file holds already is not printed
    return _polled(_follow(live, rotated, current, from_start, stop, skip, set()), poll_s)


def _ignore(line: bytes) -> None:
    pass


def _polled(steps: Iterator[dict[str, Any] | None], poll_s: float) -> Iterator[dict[str, Any]]:
    """One file's records, waiting `poll_s` whenever it has none to give."""
    for step in steps:
        if step is None:
            time.sleep(poll_s)
        else:
            yield step


def _process_files(template: str | os.PathLike[str]) -> list[Path]:
    """The live files of every process a sink path with `{pid}` stands for (any number in its place, as
    the sink's retention limits count them), in name order."""
    template = Path(os.fspath(template)).expanduser()
    if "{pid}" in os.fspath(template.parent):
        raise ValueError(
            f"litelens tail: {{pid}} in a folder's name ({template}) is not followed; "
            "put it in the file name (calls-{pid}.jsonl), or give one process's path"
        )
    _, live = file_family(os.fspath(template))
    try:
        names = os.listdir(template.parent)
    except OSError:
        return []
    return sorted(template.parent / name for name in names if live.match(name))


def _process_ids(template: Path) -> set[str]:
    """The process ids of every file, live or rotated, of a sink path with `{pid}`."""
    rotated, live = file_family(os.fspath(template))
    try:
        names = os.listdir(template.parent)
    except OSError:
        return set()
    return {m["pid"] for m in (live.match(n) or rotated.match(n) for n in names) if m is not None}


# At most so many records of one file in a row, when it is written faster than it is read, before the
# other processes' files are read: one busy worker does not hide the others'.
_TURN = 500


def _follow_processes(
    pattern: str,
    from_start: bool,
    poll_s: float,
    stop: Callable[[], bool],
    on_skip: Callable[[bytes], None],
) -> Iterator[dict[str, Any]]:
    """`follow_jsonl` for a path with `{pid}`: every process's file, each followed by a `_follow` of its
    own, taking turns. Files are looked for again at every poll."""
    template = Path(pattern).expanduser()
    # Rotated files there are now, of every process, listed before the live files: one of a process
    # whose live file is only seen later (started since, or a process id used again by a new worker)
    # was rotated before tail started when it is listed here, and is not printed unless `from_start`.
    # Listed after, a worker starting in between could rotate a file of calls made since, never printed.
    # Shared by all the files: a rotated file's name holds its process id, so no two files have one.
    known: set[str] = set() if from_start else {_base(f) for f in _rotated_of(template)}
    found = _process_files(template)
    followers: dict[Path, Generator[dict[str, Any] | None, None, None]] = {}

    def add(live: Path, from_now: bool) -> None:
        current, rotated = open_with_rotations(live)
        if current is not None and from_now:
            current.seek(0, os.SEEK_END)
        followers[live] = _follow(live, rotated, current, not from_now, stop, on_skip, known, vanish=True)

    for live in found:
        add(live, from_now=not from_start)
    if from_start:
        # A process that is gone may have left only rotated files (its live file rotated aside by the
        # next writer that started): read them too, each process's oldest first.
        for pid in sorted(_process_ids(template) - {_pid_of(template, f) for f in found}, key=int):
            add(Path(os.fspath(template).replace("{pid}", pid)), from_now=False)
    return _take_turns(template, followers, add, poll_s, stop)


def _take_turns(
    template: Path,
    followers: dict[Path, Generator[dict[str, Any] | None, None, None]],
    add: Callable[[Path, bool], None],
    poll_s: float,
    stop: Callable[[], bool],
) -> Iterator[dict[str, Any]]:
    scanned = time.monotonic()
    try:
        while not stop():
            busy = False
            for live, steps in list(followers.items()):
                for taken, step in enumerate(steps, 1):
                    if step is None:
                        break
                    yield step
                    busy = True
                    if taken >= _TURN:
                        break
                else:
                    del followers[live]  # gone, and all it held read: a file there later is a new one
            if stop():
                break
            if busy and time.monotonic() - scanned < poll_s:
                continue  # a folder that holds years of rotated files is not listed at every read
            scanned = time.monotonic()
            # New files, whole: a process that started since (or since its last file was deleted).
            for live in _process_files(template):
                if live not in followers:
                    add(live, False)
                    busy = True
            if not busy:
                time.sleep(poll_s)
    finally:
        for steps in followers.values():
            steps.close()  # their open files closed now, not when collected


def _pid_of(template: Path, live: Path) -> str:
    match = file_family(os.fspath(template))[1].match(live.name)
    return match["pid"] if match else ""


def _rotated_of(template: Path) -> list[Path]:
    rotated, _ = file_family(os.fspath(template))
    try:
        names = os.listdir(template.parent)
    except OSError:
        return []
    return [template.parent / name for name in names if rotated.match(name)]


def _follow(
    live: Path,
    rotated: list[Path],
    current: IO[bytes] | None,
    from_start: bool,
    stop: Callable[[], bool],
    on_skip: Callable[[bytes], None],
    known: set[str],
    vanish: bool = False,
) -> Generator[dict[str, Any] | None, None, None]:
    """The records of `live` and its rotations, and None whenever it has read all there is for now.
    `known`: the rotated files read (or not to be read), by base name. With `vanish`, it ends once the
    live file is gone and every rotated file read, holding no file open."""
    try:
        for file in rotated:
            if _base(file) in known:
                continue
            known.add(_base(file))
            if from_start:
                yield from _records(_lines(read_file(file))[0], on_skip)
        pending = b""
        head = _head(current)
        while not stop():
            if current is None:
                opened = open_live(live)
                # Rotations we never had open come first; listed after opening, and only kept if the file
                # we opened is still the live one (else it may be among them: start over).
                backlog = _read_fresh(live, known, ours=None)
                if opened is not None and identity(live) != identity(opened.fileno()):
                    opened.close()
                    continue
                known.update(backlog)
                yield from _records(_lines(b"\n".join(backlog.values()) + b"\n")[0], on_skip)
                if opened is None:
                    if vanish:
                        return
                    yield None
                    continue
                current, pending, head = opened, b"", _head(opened)
            if current.tell() and os.pread(current.fileno(), len(head), 0) != head:
                # Emptied and written again between two looks (copytruncate, then a burst of writes as
                # long as what we had read): the size never went below our position, but the file's first
                # bytes, which a writer that only appends never changes, are new. What it holds now is
                # all unread.
                current.seek(0)
                pending = b""
            if len(head) < _HEAD_BYTES and not head.endswith(b"\n"):
                head = _head(current)
            chunk = current.read()
            if chunk:
                data, pending = _lines(pending + chunk)
                yield from _records(data, on_skip)
                continue
            if identity(live) == identity(current.fileno()):
                if os.fstat(current.fileno()).st_size < current.tell():
                    # Emptied in place (`: > calls.jsonl`, logrotate's copytruncate): what comes next is
                    # written from its start, below our position, where reading on would never see it.
                    current.seek(0)
                    pending = b""
                    head = b""
                    continue
                yield None
                continue
            # Rotated away: the rest of ours from the open file; it is the oldest of the fresh rotated
            # files, unless a retention limit (`keep_files`) deleted it already.
            rest = current.read()
            ours = (os.fstat(current.fileno()).st_size, os.pread(current.fileno(), 4096, 0))
            current.close()
            current = None
            later = _read_fresh(live, known, ours=ours)
            known.update(later)
            yield from _records(
                _lines(pending + rest + b"\n" + b"\n".join(later.values()) + b"\n")[0], on_skip
            )
            pending = b""
    finally:
        if current is not None:
            current.close()


_HEAD_BYTES = 256  # enough to hold a record's call id and times: no two records start alike


def _head(current: IO[bytes] | None) -> bytes:
    """The open file's first line, or its first `_HEAD_BYTES`, to tell the file emptied and written again
    from the file appended to. Not past the first line: a writer may cut a half line a killed process
    left (`JsonlWriter`), which would change bytes after it."""
    if current is None:
        return b""
    first = os.pread(current.fileno(), _HEAD_BYTES, 0)
    end = first.find(b"\n")
    return first if end < 0 else first[: end + 1]


def _read_fresh(live: Path, known: set[str], ours: tuple[int, bytes] | None) -> dict[str, bytes]:
    """{base name: content} of the rotated files not in `known`, oldest first. The oldest is left empty
    when it is `ours` (the size and first bytes of the file we had open, and have read): recognised by
    its content, since it may be gzipped by now, or deleted by a retention limit -- and then the oldest
    fresh file is a later one, which must be read. A plain file compressed away while we read it is
    read again as its `.gz`."""
    for _ in range(100):
        fresh = [f for f in rotated_files(live) if _base(f) not in known]
        try:
            skip = ours is not None and bool(fresh) and _holds(fresh[0], *ours)
            return {
                _base(f): b"" if skip and i == 0 else read_file(f, missing_ok=False)
                for i, f in enumerate(fresh)
            }
        except FileNotFoundError:
            time.sleep(0.01)
    return {}


def _holds(file: Path, size: int, head: bytes) -> bool:
    """Whether `file` (plain or gzipped) holds `size` bytes starting with `head`, without reading it
    whole: a gzip file's last four bytes give its length (modulo 4 GiB)."""
    try:
        if file.name.endswith(".gz"):
            with open(file, "rb") as raw:
                raw.seek(-4, os.SEEK_END)
                if int.from_bytes(raw.read(4), "little") != size % 2**32:
                    return False
            with gzip.open(file, "rb") as unzipped:
                return unzipped.read(len(head)) == head
        if os.stat(file).st_size != size:
            return False
        with open(file, "rb") as plain:
            return plain.read(len(head)) == head
    except FileNotFoundError:
        raise  # compressed or deleted meanwhile: listed again
    except (OSError, EOFError, zlib.error):
        return False


def _base(file: Path) -> str:
    return file.name[:-3] if file.name.endswith(".gz") else file.name


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    *complete, rest = data.split(b"\n")
    return [line for line in complete if line.strip()], rest


def _records(lines: list[bytes], on_skip: Callable[[bytes], None]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            yield record
        else:
            on_skip(line)


# --------------------------------------------------------------------------------------------------
# A server's query API


def follow_server(
    url: str,
    api_key: str | None,
    *,
    since_s: float = 60.0,
    poll_s: float = 1.0,
    lookback_s: float = 300.0,
    stop: Callable[[], bool] = lambda: False,
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[dict[str, Any]]:
    """Calls stored by the server at `url`, in the order it stored them (`GET /api/calls`).

    The first poll lists the calls started in the last `since_s` seconds; from then on each poll pages
    through `/api/calls?sort=arrival&arrived_after=P`: the calls the server stored after the last one
    read, whatever their start time. A start time is the client's clock, which may run slow, and a call
    is stored when it ends (a 20-minute stream) or when a spool delivers it (an hour after the server
    came back): asked by start time, such calls lay behind what the tail asked for and never showed.
    A call shows once, when it first arrives; a later version merged into it (a retried batch, the
    OTel span of a call the callback reported) arrives again and is not printed again.

    A server older than arrival order (its answer has no `arrived_through`) is followed by start time, as
    tail did before, said once on stderr: each poll lists the calls started since `lookback_s` before the
    newest start seen, so a call stored later than that after its start does not show.

    A server that cannot be reached at first is an error (a wrong URL); one that goes away later (a
    restart, a deploy) is waited for, like `tail -F` waits for a file, and said so once on stderr; so is
    a 502, 503 or 504, what a reverse proxy (or the server without its store) answers meanwhile. While it
    is away, the wait between polls doubles (up to `_MAX_BACKOFF_S`), and a `Retry-After` is honoured:
    a server that is starting is not asked again every `poll_s` by every tail.
    """
    parts = urllib.parse.urlsplit(server_base(url))  # the URL the callback was given works here too
    endpoint = url  # its query (a gateway's token) goes on every request; never printed
    # For what is printed: no password or token of the URL, whatever its name (a gateway's `?code=`),
    # nor the key, on the terminal, in the URL or in an answer that echoes the request.
    secrets = endpoint_secrets(endpoint, api_key)
    url = shown_url(url, secrets)
    https = parts.scheme == "https"
    # Through the proxy the environment names, as the callback goes (a CONNECT tunnel for https, the
    # whole URL asked of it for http, its `user:password@` sent along).
    proxy = proxy_from_environment(urllib.parse.urlunsplit(parts))

    def connect() -> Connection:
        return Connection(
            parts.hostname or "127.0.0.1",
            parts.port or (443 if https else 80),
            timeout=30,
            ssl_context=ssl_context if https else None,
            proxy=proxy,
            max_body=_MAX_PAGE,
        )

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    since = time.time() - since_s
    # The greatest arrival read whole (every call stored through it has been listed); None until the
    # first poll, which lists by start time, has read all its pages; it then goes on from `initial`, the
    # position the server answered its first page with (kept if the server goes away mid-way: a later
    # one would pass over calls stored meanwhile that started before `since`).
    position: int | None = None
    initial: int | None = None
    # Following an older server by start time: it lists no calls by arrival.
    by_start = False
    # Call ids printed, oldest first, so a merged call that arrives again is not printed twice; bounded,
    # since the ids are what remain of a tail that runs for weeks.
    seen: dict[str, None] = {}
    conn: Connection | None = None
    reached = lost = False
    away = 0  # polls in a row that found the server away
    while not stop():
        wait = poll_s
        cursor: str | None = None
        through = position
        newest = since
        complete = False
        while True:
            if position is None:
                query = {"order": "asc", "sort": "start_time", "limit": "200", "start": f"{since:.6f}"}
            else:
                query = {"order": "asc", "sort": "arrival", "limit": "200", "arrived_after": str(position)}
            if cursor:
                query["cursor"] = cursor
            path = request_target(server_url(endpoint, "/api/calls", list(query.items())))
            try:
                conn, answer, body = _get(conn, connect, path, headers)
            except (OSError, http.client.HTTPException) as exc:
                conn = None
                if not reached:
                    raise TailError(f"litelens tail: cannot reach {url} ({exc})") from None
                if not lost:
                    print(f"litelens tail: lost {url} ({exc}); waiting for it", file=sys.stderr, flush=True)
                    lost = True
                away += 1
                wait = _backoff(poll_s, away)
                break
            reached = True
            status = answer.status
            if status in _RESTARTING:
                # A reverse proxy (or the server itself) while the server restarts: wait, as for a lost
                # connection; the next poll asks again, from the same place.
                if not lost:
                    print(
                        f"litelens tail: {url} answered {status}; waiting for it", file=sys.stderr, flush=True
                    )
                    lost = True
                away += 1
                wait = max(_backoff(poll_s, away), _retry_after(answer.headers.get("retry-after")))
                break
            if lost:
                print(f"litelens tail: {url} is back", file=sys.stderr, flush=True)
                lost = False
            away = 0
            if status in (401, 403):
                raise TailError(f"litelens tail: {url} refused the API key ({status}); pass --api-key")
            if status != 200:
                shown = scrub_text(body[:200].decode(errors="replace"), secrets)
                raise TailError(f"litelens tail: {url} answered {status}: {shown!r}")
            try:
                page = json.loads(body)
            except ValueError:
                raise TailError(
                    f"litelens tail: {url} did not answer JSON; is it a litelens server?"
                ) from None
            if initial is None and not by_start:
                # Read before the first page: a call stored after it is listed again by arrival (and
                # not printed twice); one stored before it either started in the window or is old.
                initial = _arrival(page.get("arrived_through"))
                if initial is None:
                    # A CLI upgraded before its server: it still lists calls by start time, which is
                    # how tail followed before, so that is followed rather than nothing at all.
                    by_start = True
                    print(
                        f"litelens tail: {url} is an older litelens server that does not list calls in "
                        f"the order it stored them; following by start time (a call stored more than "
                        f"{lookback_s:g} s after it started may not show); upgrade that server to see every call",
                        file=sys.stderr,
                        flush=True,
                    )
            for call in page.get("calls") or []:
                start = call.get("start_time")
                if isinstance(start, (int, float)) and not isinstance(start, bool):
                    newest = max(newest, float(start))
                if through is not None:
                    arrival = _arrival(call.get("arrival"))
                    if arrival is not None and arrival > through:
                        through = arrival
                call_id = str(call.get("call_id"))
                if call_id not in seen:
                    seen[call_id] = None
                    if len(seen) > _MAX_SEEN:
                        del seen[next(iter(seen))]
                    yield call
            cursor = page.get("next_cursor")
            if not cursor:
                complete = True
                break
        # Moved on only past what was read whole: the calls of one arrival (one batch) may take several
        # pages, and asked after it, the rest of a batch cut short by a lost server would be skipped.
        if by_start:
            # Looked back from no later than this machine's clock: a call stamped ahead of it (a client
            # whose clock runs fast) would move the look-back hours on, past the calls made meanwhile.
            since = max(since, min(newest, time.time()) - lookback_s)
        elif complete:
            position = initial if through is None else through
        time.sleep(wait)


def _arrival(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# How many printed call ids tail remembers, so a call merged again later is not printed twice: a call
# arrives again within seconds (a retried batch) or minutes (the OTel span of a long call), not after
# this many others.
_MAX_SEEN = 100_000


# Answers that say "not now" rather than "no": bad gateway, unavailable, gateway timeout.
_RESTARTING = frozenset({502, 503, 504})
# The longest wait between polls of a server that is away, unless `poll_s` is longer: it is also how
# late tail may notice that the server is back.
_MAX_BACKOFF_S = 10.0
# The longest `Retry-After` taken at its word: a proxy's "come back in an hour" would look like a hang.
_MAX_RETRY_AFTER_S = 60.0


def _backoff(poll_s: float, away: int) -> float:
    """The wait before the next poll, after `away` polls in a row found the server away."""
    return min(poll_s * 2 ** min(away, 32), max(poll_s, _MAX_BACKOFF_S))


def _day(epoch: float) -> str | None:
    """A start time's local date and the zone the lines' times are in, e.g. `2026-12-01 (UTC+01:00)`;
    None for a time no clock can show."""
    try:
        moment = time.localtime(epoch)
    except (OverflowError, ValueError, OSError):
        return None
    offset = time.strftime("%z", moment)
    return time.strftime("%Y-%m-%d", moment) + f" (UTC{offset[:3]}:{offset[3:]})"


def _retry_after(value: str | None) -> float:
    """The seconds a `Retry-After` header asks for (a number of seconds or an HTTP date); 0 if none."""
    if not value:
        return 0.0
    return parse_retry_after(value, _MAX_RETRY_AFTER_S) or 0.0


# The largest page of calls tail takes: 200 list rows of ~0.6 KB, several KB with long names and tags.
_MAX_PAGE = 32 << 20


def _get(
    conn: Connection | None, connect: Callable[[], Connection], path: str, headers: dict[str, str]
) -> tuple[Connection, Response, bytes]:
    """GET `path` on the kept-alive connection, and once more on a new one if that fails: the server
    closes connections idle for a few seconds (uvicorn: 5 s), less than a slow `--interval`."""
    reused = conn is not None
    while True:
        if conn is None:
            conn = connect()
        try:
            conn.request("GET", path, b"", headers)
            answer = conn.getresponse()
            if answer.will_close:
                conn.close()  # the next request opens a new one
            return conn, answer, answer.body
        except (OSError, http.client.HTTPException):
            conn.close()
            if not reused:
                raise
            conn, reused = None, False


def _per_process(pattern: str) -> str:
    """What tail says it follows for a sink path holding `{pid}`: the files there now, by name, so a user
    sees at once whether it is the folder the workers write to."""
    found = ", ".join(str(f) for f in _process_files(pattern)) or "none yet"
    template = Path(pattern).expanduser()
    return (
        f"litelens tail: following {template}, every process's file ({found}), "
        "and each one that appears (Ctrl-C to stop)"
    )


class TailError(Exception):
    """What went wrong, in a sentence for the terminal."""


# --------------------------------------------------------------------------------------------------
# The command


def run(
    jsonl: str | None,
    server: str | None,
    api_key: str | None,
    *,
    from_start: bool = False,
    since_s: float = 60.0,
    poll_s: float | None = None,
    color: bool | None = None,
    out: IO[str] | None = None,
) -> int:
    """What `litelens tail` does; returns the exit status."""
    stream = out or sys.stdout
    use_color = color if color is not None else stream.isatty()
    if (jsonl is None) == (server is None):
        print(
            "litelens tail: give exactly one of --jsonl PATH or --server URL (or set LITELENS_ENDPOINT)",
            file=sys.stderr,
        )
        return 2
    calls: Iterator[dict[str, Any]]
    skipped = 0

    def skip(line: bytes) -> None:
        # Said at the first, so a file that is not a sink's (or a sink's damaged by a crash) does not
        # look like one with no calls; the rest only counted, said when tail stops.
        nonlocal skipped
        skipped += 1
        if skipped == 1:
            print(
                f"litelens tail: skipped a line that is not a call record: {line[:100]!r} "
                "(further ones are counted, and said when tail stops)",
                file=sys.stderr,
                flush=True,
            )

    try:
        if jsonl is not None:
            try:
                calls = follow_jsonl(jsonl, from_start=from_start, poll_s=poll_s or 0.2, on_skip=skip)
            except ValueError as exc:  # `{pid}` in a folder's name
                print(exc, file=sys.stderr)
                return 2
            following = (
                _per_process(jsonl)
                if "{pid}" in jsonl
                else f"litelens tail: following {expand(jsonl)} (Ctrl-C to stop)"
            )
            print(following, file=sys.stderr, flush=True)
        else:
            assert server is not None
            key = api_key or os.environ.get("LITELENS_API_KEY")
            # The callback's TLS settings (LITELENS_CA_BUNDLE, LITELENS_SSL_VERIFY) for the server it sends to.
            try:
                settings = Settings.from_env(spool_dir="off")
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return 2
            context = tls_context(settings.ca_bundle, settings.ssl_verify)
            calls = follow_server(server, key, since_s=since_s, poll_s=poll_s or 1.0, ssl_context=context)
        day = _day(time.time())  # today's calls need no date line
        for call in calls:
            start = call.get("start_time")
            when = _day(start) if isinstance(start, (int, float)) and not isinstance(start, bool) else None
            if when is not None and when != day:
                # A line shows the time of day only: calls from other days (`--since 2d`, `--from-start`
                # over old rotations, a live tail past midnight) come under a line naming their day.
                day = when
                stream.write(f"-- {when} --\n")
            stream.write(format_call(call, color=use_color) + "\n")
            stream.flush()
    except TailError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    except OSError as exc:  # the sink's file: a directory, not readable
        print(f"litelens tail: cannot read {jsonl} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    finally:
        if skipped > 1:
            print(f"litelens tail: skipped {skipped} lines that are not call records", file=sys.stderr)
    return 0
