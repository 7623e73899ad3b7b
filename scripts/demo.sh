#!/usr/bin/env bash
# Fresh machine -> a running demo: a virtual environment with litelens and LiteLLM, then `litelens demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[litellm]'
exec .venv/bin/litelens demo "$@"
