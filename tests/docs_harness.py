"""Runs the code blocks of a markdown page, in order, the way a reader would.

Each page gets a fresh working folder, its own free ports standing in for 4318 and for the proxy's 4000
(the text's `4318` and `4000` are replaced by them, and `LITELENS_PORT`, `LITELENS_ENDPOINT` and
`OTEL_EXPORTER_OTLP_ENDPOINT` point there),
its own SQLite file, and a fake OpenAI-compatible provider as `OPENAI_API_BASE`, so the page's LiteLLM
calls stay on loopback.

- ```bash / ```shell / ```sh blocks run in bash (`set -euo pipefail`). Variables a block exports are
  kept for the page's later blocks. Three commands are stand-ins: `pip install` checks that what it
  names is installed here (the tests must not install from the internet); `litelens serve` and
  `litellm --config` start the real server / proxy in the background, wait until they answer, and stop
  them when the page ends.
- ```python blocks run each in a fresh interpreter, with the environment of the shell blocks before it.
- ```yaml / ```yml blocks must parse; a block titled `title="config.yaml"` is also written to that file
  in the working folder, and a LiteLLM proxy config's callbacks must import.
- ```json blocks must parse.
- A block right after a line `> **Not run by the docs tests:** <reason>` is skipped; the reason is
  required and visible to readers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARKER = re.compile(r"^>\s*\*\*Not run by the docs tests:\*\*\s*(\S.*)$")
FENCE = re.compile(r"^(```|~~~)\s*([\w+-]*)(.*)$")
TITLE = re.compile(r'title="([^"]+)"')
SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
YAML = {"yaml", "yml"}
# Languages that are prose-like or for other tools: kept out of execution on purpose.
INERT = {"", "text", "ini", "nginx", "dockerfile", "toml", "http", "jsonl", "csv", "sql", "systemd"}


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    title: str | None = None
    skip_reason: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, rest = match.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP_MARKER.match(previous.strip())
        title = TITLE.search(rest)
        found.append(
            Block(
                path,
                start + 1,
                lang.lower(),
                "\n".join(body) + "\n",
                title.group(1) if title else None,
                skip.group(1) if skip else None,
            )
        )
        i += 1
    return found


# --------------------------------------------------------------------------------------------------
# Links


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def broken_links(path: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            yield f"{path.relative_to(ROOT)}: {target} (no such file)"
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            yield f"{path.relative_to(ROOT)}: {target} (no such heading)"


# --------------------------------------------------------------------------------------------------
# Running a page


SHELL_PRELUDE = r"""
set -euo pipefail
_docs_wait() {  # url, name, pid: wait until it answers (120 s), or fail as soon as it exits
  local why="did not answer at $1 in 120 s"
  for _ in $(seq 1200); do
    if curl -fsSk -o /dev/null "$1" 2>/dev/null; then return 0; fi  # -k: a page's own test certificate
    if ! kill -0 "$3" 2>/dev/null; then why="exited before it answered at $1"; break; fi
    sleep 0.1
  done
  echo "docs harness: $2 $why" >&2; tail -n 30 "$DOCS_DIR"/*.log >&2 || true
  echo "$2 $why" >> "$DOCS_DIR/failed"; return 1
}
pip() {
  if [ "${1:-}" = install ]; then shift; "$DOCS_PYTHON" "$DOCS_HARNESS" check-installed "$@"; return; fi
  command pip "$@"
}
litelens() {
  if [ "${1:-}" = serve ]; then
    command litelens "$@" > "$DOCS_DIR/serve-$RANDOM.log" 2>&1 &
    local pid=$!
    echo $pid >> "$DOCS_DIR/pids"; disown $pid  # stopped when the page ends, not awaited by `wait`
    local scheme=http
    case " $* " in *" --ssl-certfile "*) scheme=https ;; esac
    _docs_wait "$scheme://127.0.0.1:$DOCS_PORT/health" "litelens serve" $pid
    return
  fi
  command litelens "$@"
}
litellm() {
  [ -n "${LITELENS_TEST_PROXY_BIN:-}" ] || { echo "docs harness: no LiteLLM proxy to run" >&2; return 1; }
  "$DOCS_PYTHON" "$DOCS_HARNESS" check-proxy-config "$@"
  local port=4000 prev=""
  for arg in "$@"; do [ "$prev" = --port ] && port="$arg"; prev="$arg"; done
  "$LITELENS_TEST_PROXY_BIN" "$@" > "$DOCS_DIR/proxy-$RANDOM.log" 2>&1 &
  local pid=$!
  echo $pid >> "$DOCS_DIR/pids"; disown $pid
  _docs_wait "http://127.0.0.1:$port/health/liveliness" "litellm --config" $pid
}
"""


@dataclass
class Page:
    """One page's run: its folder, port, environment, and the processes its blocks started."""

    path: Path
    workdir: Path
    port: int
    provider_url: str
    proxy_port: int = 4000
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DOCS_DIR": str(self.workdir),
            "DOCS_PORT": str(self.port),
            "DOCS_PYTHON": sys.executable,
            "DOCS_HARNESS": str(Path(__file__).resolve()),
            "XDG_DATA_HOME": str(self.workdir / "data"),
            "LITELENS_PORT": str(self.port),
            "LITELENS_DB": f"sqlite:///{self.workdir / 'litelens.db'}",
            "LITELENS_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "LITELENS_SPOOL_DIR": str(self.workdir / "spool"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "OPENAI_API_BASE": self.provider_url,
            "OPENAI_BASE_URL": self.provider_url,
            "OPENAI_API_KEY": "sk-docs-fake-provider",
        }
        for name in ("LITELENS_API_KEY", "OTEL_EXPORTER_OTLP_HEADERS", "LITELENS_DISABLED"):
            self.env.pop(name, None)

    @property
    def cwd(self) -> Path:
        """README's commands are run from the clone's root, as it says; the docs' from a fresh folder."""
        return ROOT if self.path == ROOT / "README.md" else self.workdir

    def localize(self, text: str) -> str:
        return text.replace("4318", str(self.port)).replace("4000", str(self.proxy_port))

    def run(self, block: Block) -> None:
        if block.title:
            (self.workdir / block.title).write_text(self.localize(block.text))
        if block.lang in SHELL:
            self._shell(block)
        elif block.lang in PYTHON:
            self._python(block)
        elif block.lang in YAML:
            check_yaml(block.text, block.title)
        elif block.lang == "json":
            json.loads(block.text)
        elif block.lang not in INERT:
            raise AssertionError(f"{block.where}: no way to check a ```{block.lang} block")

    def _shell(self, block: Block) -> None:
        state = self.workdir / "env.json"
        script = (
            SHELL_PRELUDE
            + self.localize(_strip_prompts(block.text))
            + "\nwait\n"  # for servers a block started with `&`: the stand-ins return once they answer
            + f'"$DOCS_PYTHON" -c "import json, os; json.dump(dict(os.environ), open({str(state)!r}, \'w\'))"\n'
        )
        out = self._execute(block, ["bash", "-c", script])
        failed = self.workdir / "failed"
        assert not failed.exists(), f"{block.where}: {failed.read_text()}{out.stderr[-3000:]}"
        if state.exists():
            self.env = json.loads(state.read_text())
            state.unlink()

    def _python(self, block: Block) -> None:
        self._execute(block, [sys.executable, "-c", self.localize(block.text)])

    def _execute(self, block: Block, argv: list[str]) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        assert out.returncode == 0, (
            f"{block.where} failed ({out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        )
        return out

    def stop(self) -> None:
        pids = self.workdir / "pids"
        if not pids.exists():
            return
        running = [int(pid) for pid in pids.read_text().split()]
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while running and time.monotonic() < deadline:
            running = [pid for pid in running if not _ended(pid)]
            time.sleep(0.02)


def _ended(pid: int) -> bool:
    """Whether a process the page started has exited. Its shell is gone, so it is nobody's child here: once
    exited it is a zombie until the machine's init reaps it (a second or more on some), and `kill -0`
    still finds it; but it has let go of its port and files, which is what the next page needs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:  # no /proc (macOS): `kill -0` is all there is
        return False


def _strip_prompts(text: str) -> str:
    """`$ command` lines (console style) lose their prompt; other console lines are output, dropped."""
    lines = text.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return text
    return "\n".join(line[2:] for line in lines if line.startswith("$ ")) + "\n"


# Callbacks this process has already seen import. The check runs a fresh interpreter with this process's
# environment, so its answer for a name cannot change within a run; each page naming the same callback
# (`litelens.handler` on four of them) would otherwise pay a LiteLLM import for it again.
_IMPORTED_CALLBACKS: set[str] = set()


def check_yaml(text: str, title: str | None) -> Any:
    import yaml

    document = yaml.safe_load(text)
    settings = document.get("litellm_settings") if isinstance(document, Mapping) else None
    if isinstance(settings, Mapping):
        for name in settings.get("callbacks") or []:
            # A custom callback: "module.attribute" must import, as the proxy does it.
            if "." in str(name) and str(name) not in _IMPORTED_CALLBACKS:
                module, _, attribute = str(name).rpartition(".")
                subprocess.run(
                    [sys.executable, "-c", f"import {module}; {module}.{attribute}"],
                    check=True,
                    capture_output=True,
                )
                _IMPORTED_CALLBACKS.add(str(name))
    return document


# --------------------------------------------------------------------------------------------------
# Stand-ins called from the shell prelude


def check_installed(arguments: list[str]) -> int:
    """`pip install X[extra] Y`: each named distribution (and litelens's extras) is installed here."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return 0
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for argument in arguments:
        if argument.startswith("-"):
            continue
        name, _, rest = argument.partition("[")
        name = re.split(r"[<>=!~ ]", name)[0]
        if name == "litelens":
            for extra in filter(None, rest.rstrip("]").split(",")):
                if extra not in extras:
                    print(f"pip install {argument}: litelens has no extra {extra!r}", file=sys.stderr)
                    return 1
            continue
        try:
            distribution(name)
        except PackageNotFoundError:
            print(f"pip install {argument}: {name} is not installed in the test environment", file=sys.stderr)
            return 1
    return 0


def check_proxy_config(arguments: list[str]) -> int:
    """The config parses. Its callbacks are not imported here first: the proxy imports them and exits if
    one does not import, which `_docs_wait` reports with the proxy's log; importing them here as well
    cost a LiteLLM import per proxy start."""
    if "--config" not in arguments:
        return 0
    import yaml

    yaml.safe_load(Path(arguments[arguments.index("--config") + 1]).read_text())
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "check-installed":
        sys.exit(check_installed(rest))
    if command == "check-proxy-config":
        sys.exit(check_proxy_config(rest))
    raise SystemExit(f"unknown command {shlex.quote(command)}")
