"""The core layer's promise: it adds no package and imports nothing beyond the standard library and
LiteLLM's own dependency tree, so it loads into a stock LiteLLM proxy image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys
import litellm  # what LiteLLM imports is LiteLLM's business; measure what litelens adds on top
before = set(sys.modules)
import litelens
cb = litelens.Callback(endpoint="http://127.0.0.1:9", spool_dir="off")
cb.transport.submit({"schema": "litelens.call/1", "call_id": "x"})  # starts the sender thread too
cb.shutdown(timeout=0.5)
import tempfile, litelens.tail  # the sinks, `litelens tail`: core too
folder = tempfile.mkdtemp()
cb = litelens.Callback(endpoint="http://127.0.0.1:9", spool_dir="off",
                       sinks=["http", f"jsonl:{folder}/calls.jsonl", "console"])
cb.transport.submit({"schema": "litelens.call/1", "call_id": "y"})
cb.shutdown(timeout=0.5)
added = sorted(set(sys.modules) - before)
from importlib.metadata import packages_distributions
dists = packages_distributions()
print(json.dumps({"added": added, "dists": {m: dists.get(m.split(".")[0], []) for m in added}}))
"""


def dependency_closure(python: str) -> set[str]:
    """Names of the distributions LiteLLM requires (without extras), transitively, in that environment."""
    script = r"""
import json, re
from importlib.metadata import distribution, PackageNotFoundError
from packaging.requirements import Requirement
seen, todo = set(), ["litellm"]
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in seen:
        continue
    seen.add(name)
    try:
        reqs = distribution(name).requires or []
    except PackageNotFoundError:
        continue
    for raw in reqs:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(req.name)
print(json.dumps(sorted(seen)))
"""
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def check_imports(python: str) -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    allowed = dependency_closure(python) | {"litelens"}
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for module, dists in result["dists"].items():
        top = module.split(".")[0]
        if top in stdlib or top.startswith("_") or top == "litelens":
            continue
        normalized = {d.lower().replace("_", "-") for d in dists}
        if not normalized & allowed:
            offenders.append((module, dists))
    assert not offenders, f"litelens imported modules outside stdlib and LiteLLM's tree: {offenders}"
    assert any(m.startswith("litelens") for m in result["added"])


def test_pip_install_adds_no_package(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert names == ["litelens"]


def test_every_package_data_pattern_names_files_that_ship() -> None:
    """pyproject.toml declared `schema/*.json`, a folder the package never had: a reader looked in the
    installed package for the record's JSON Schema, which lives in docs/record-schema.json."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "src" / "litelens"
    for pattern in patterns["litelens"]:
        assert list(package.glob(pattern)), f"package data {pattern!r} matches no file under src/litelens"


def test_core_imports_only_stdlib_and_litellm_tree() -> None:
    check_imports(sys.executable)


@pytest.mark.service
def test_core_imports_in_the_proxy_environment() -> None:
    """The proxy's environment is the one that matters: it holds LiteLLM and its proxy extras only."""
    python = os.environ.get("LITELENS_TEST_CORE_ONLY_PYTHON")
    if not python:
        pytest.skip(
            "set LITELENS_TEST_CORE_ONLY_PYTHON to a Python with LiteLLM and litelens (no-deps) installed"
        )
    check_imports(python)
