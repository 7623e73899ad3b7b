"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, on a free loopback port.

Tests must not depend on a system service being configured, so they start their own server from the
installed binaries (Debian/Ubuntu keep them in /usr/lib/postgresql/<version>/bin, off PATH). PostgreSQL
refuses to run as root; when the tests run as root the cluster is owned by and run as the `postgres`
user (or `nobody`), which is why the directory lives under the world-traversable temp dir rather than in
pytest's private one.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any


def find_pg_bin() -> Path | None:
    """The directory holding `initdb` and `pg_ctl` (LITELENS_PG_BIN, PATH, then Debian's layout)."""
    explicit = os.environ.get("LITELENS_PG_BIN")
    if explicit and (Path(explicit) / "initdb").exists():
        return Path(explicit)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb") + glob.glob("/usr/local/pgsql/bin/initdb")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    return Path(max(found, key=version)).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """Start with `with TempPostgres() as pg:`; `pg.create_database()` gives a fresh database URL."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError("litelens: no PostgreSQL binaries (initdb) found; apt-get install postgresql")
        self.bin_dir = found
        self.dir = Path(tempfile.mkdtemp(prefix="litelens-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self._counter = itertools.count(1)
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    entry = pwd.getpwnam(name)
                    self._run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
                    os.chown(self.dir, entry.pw_uid, entry.pw_gid)
                    break
        os.chmod(self.dir, 0o700)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._run_as,
        )

    def start(self) -> TempPostgres:
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        if done.returncode:
            raise RuntimeError(f"litelens: initdb failed: {done.stderr[-2000:]}")
        last = ""
        for _ in range(5):  # another process may take the free port between probing and listening
            self.port = _free_port()
            failed = self._pg_ctl_start()
            if failed is None:
                return self
            last = failed
        raise RuntimeError(f"litelens: PostgreSQL did not start: {last}")

    def _pg_ctl_start(self) -> str | None:
        """Start the cluster on `self.port`; None once it accepts connections, else why not."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        if done.returncode == 0:
            return None
        log = self.dir / "log"
        return (done.stderr or "") + (log.read_text(errors="replace")[-2000:] if log.exists() else "")

    def pause(self, mode: str = "fast") -> None:
        """Stop the server and keep its data, as a maintenance restart or a failover does: `fast` ends
        each session with an error its client reads, `immediate` drops them as a crash would."""
        done = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        if done.returncode:
            raise RuntimeError(f"litelens: PostgreSQL did not stop: {done.stderr[-2000:]}")

    def resume(self) -> None:
        """Start a paused server again, on the same port, with the same data."""
        failed = self._pg_ctl_start()
        if failed is not None:
            raise RuntimeError(f"litelens: PostgreSQL did not start again: {failed}")

    def terminate_sessions(self, database: str) -> int:
        """End every session on `database` as an administrator (or a proxy dropping idle connections)
        would; returns how many there were."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
        return int(row[0]) if row else 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = name or f"t{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
