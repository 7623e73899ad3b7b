#!/usr/bin/env bash
# Fresh machine -> the whole test suite. Creates the environments the tests use:
#   .venv        litelens with its dev tools and the newest supported LiteLLM
#   .venv-old    the same tests' LiteLLM half against a LiteLLM release more than six months older
#   .venv-proxy  a real LiteLLM proxy (`litellm --config`), kept apart because it is large
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1
LITELLM_NEW="1.110.2"
LITELLM_OLD="1.80.17"

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev,server,otel,postgres]' "litellm==$LITELLM_NEW"

[ -x .venv-old/bin/python ] || python3 -m venv .venv-old
.venv-old/bin/pip install -q -e '.[dev,server,otel]' "litellm==$LITELLM_OLD"

# The proxy's extra packages, as they install from this machine's registry: the `proxy` extra of the LiteLLM release, named one by one.
[ -x .venv-proxy/bin/litellm ] || {
  python3 -m venv .venv-proxy
  .venv-proxy/bin/pip install -q "litellm==$LITELLM_NEW" litellm-proxy-extras 'gunicorn>=23,<24' \
    'uvicorn>=0.33,<1' 'uvloop>=0.22.1' 'fastapi>=0.136.3,<1' 'starlette>=1.0.1,<2' 'backoff>=2.2.1' \
    'rq>=2.7.0' orjson apscheduler cryptography python-multipart email-validator pyjwt websockets semver \
    expression fastapi_sso mcp soundfile
}
.venv-proxy/bin/pip install -q --no-deps -e .

export LITELENS_TEST_PROXY_BIN="$PWD/.venv-proxy/bin/litellm"
export LITELENS_TEST_CORE_ONLY_PYTHON="$PWD/.venv-proxy/bin/python"

echo "== lint and types"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy

echo "== tests, LiteLLM $LITELLM_NEW"
# Three processes on two cores: most tests wait on servers, sockets and subprocesses, so the suite took
# 14 minutes in one (1,175 tests, CI of 2026-12-02 morning) and 9 in three. The slowest tests are listed,
# to keep it well under 15 minutes.
.venv/bin/python -m pytest -n 3 --durations=15 "$@"

echo "== LiteLLM-facing tests again, LiteLLM $LITELLM_OLD"
# Only the files that drive LiteLLM (the delivery test runs a real `litelens serve`, hence the server extra).
# None of them uses hypothesis, and its plugin would import it only for the end-of-run summary: under
# Python 3.11.7 that import's source rewriting met a garbage-collected aiohttp response of LiteLLM 1.80
# (whose finalizer complains that its event loop is closed) and crashed pytest with "SystemError: AST
# constructor recursion depth mismatch" after every test had passed.
.venv-old/bin/python -m pytest -n 3 -m litellm_compat -p no:cacheprovider -p no:hypothesispytest \
  tests/test_callback.py tests/test_delivery.py tests/test_otel.py
