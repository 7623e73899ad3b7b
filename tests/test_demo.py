"""The README's first command ends in `litelens demo`: it must run to completion and account for every call."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_records_every_call() -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-m", "litelens.cli", "demo", "--calls", "40"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "40 records received for 40 calls" in out.stdout
    for model in ("gpt-4o-mini", "text-embedding-3-small"):
        assert model in out.stdout
