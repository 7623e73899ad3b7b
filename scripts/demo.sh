#!/usr/bin/env bash
# Fresh machine -> the demo: a virtual environment with litelens (server, OTel layer) and LiteLLM, then
# `litelens demo`. In a terminal the demo's server stays up afterwards so the dashboard can be browsed
# (Ctrl-C stops it); arguments are passed on, e.g. `bash scripts/demo.sh --calls 1000`.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
# Installed once per version of pyproject.toml (the install is editable, so code changes need none):
# pip takes ~7 s to find that everything is already there.
stamp=.venv/.litelens-demo-installed
want=$(cksum < pyproject.toml)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q -e '.[demo]'
  echo "$want" > "$stamp"
fi
if [ -t 0 ] && [ -t 1 ]; then set -- --keep-running "$@"; fi
exec .venv/bin/litelens demo "$@"
