"""The core settings: an argument wins over its variable, which wins over the default."""

from __future__ import annotations

import pytest

from litelens.config import DEFAULT_ENDPOINT, Settings


def test_argument_wins_over_environment_which_wins_over_default() -> None:
    env = {"LITELENS_ENDPOINT": "http://collector:4318", "LITELENS_CAPTURE_CONTENT": "false"}
    assert Settings.from_env({}).endpoint == DEFAULT_ENDPOINT
    assert Settings.from_env(env).endpoint == "http://collector:4318"
    assert Settings.from_env(env).capture_content is False
    assert Settings.from_env(env, endpoint="http://other:1").endpoint == "http://other:1"


@pytest.mark.parametrize("value", ["off", "OFF", "none", ""])
def test_spool_off_by_argument_or_variable(value: str) -> None:
    assert Settings.from_env({"LITELENS_SPOOL_DIR": value}).spool_dir is None
    assert Settings.from_env({}, spool_dir=value).spool_dir is None
    assert Settings.from_env({}, spool_dir="/var/spool/litelens").spool_dir == "/var/spool/litelens"


def test_bad_values_say_which_variable() -> None:
    with pytest.raises(ValueError, match="LITELENS_CAPTURE_CONTENT"):
        Settings.from_env({"LITELENS_CAPTURE_CONTENT": "maybe"})
    with pytest.raises(ValueError, match="LITELENS_ENDPOINT"):
        Settings.from_env({"LITELENS_ENDPOINT": "collector:4318"})
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, endpont="http://typo:1")
