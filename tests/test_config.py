"""The core settings: an argument wins over its variable, which wins over the default."""

from __future__ import annotations

import logging

import pytest

from litelens.config import _ENV_SETTINGS, DEFAULT_ENDPOINT, Limits, Settings


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
    with pytest.raises(ValueError, match="LITELENS_MAX_QUEUE='10k': not a whole number"):
        Settings.from_env({"LITELENS_MAX_QUEUE": "10k"})
    with pytest.raises(ValueError, match=r"LITELENS_SAMPLE_RATE='1\.5': must be a number from 0 to 1"):
        Settings.from_env({"LITELENS_SAMPLE_RATE": "1.5"})
    with pytest.raises(TypeError, match="unknown setting"):
        Settings.from_env({}, endpont="http://typo:1")
    with pytest.raises(ValueError, match="LITELENS_MAX_QUEUE='-5': must be 0 or more"):
        Settings.from_env({"LITELENS_MAX_QUEUE": "-5"})
    for timeout in ("-1", "0", "nan"):
        with pytest.raises(ValueError, match="LITELENS_TIMEOUT"):
            Settings.from_env({"LITELENS_TIMEOUT": timeout})
    # An argument is held to what its variable is: 1.5 does not silently mean "keep everything".
    for rate in (1.5, -0.1, "0.1"):
        with pytest.raises(ValueError, match="sample_rate"):
            Settings.from_env({}, sample_rate=rate)
    for name, value in (
        ("max_queue", -5),
        ("spool_max_bytes", -1),
        ("timeout_s", 0),
        ("timeout_s", float("nan")),
        ("batch_max_records", 0),
        ("exit_flush_s", "5"),
    ):
        with pytest.raises(ValueError, match=f"{name}="):
            Settings.from_env({}, **{name: value})
    assert Settings.from_env({}, max_queue=0, exit_flush_s=0, spool_max_bytes=10**6).max_queue == 0
    # The record's caps are numeric settings too: a negative one cut strings from their end.
    for name, value in (("max_string_chars", -5), ("max_content_bytes", -1), ("max_tags", 2.5)):
        with pytest.raises(ValueError, match=f"limits.{name}="):
            Settings.from_env({}, limits=Limits(**{name: value}))
    assert Settings.from_env({}, limits=Limits(max_string_chars=0)).limits.max_string_chars == 0


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_variable_is_unset_and_keeps_the_default(empty: str) -> None:
    # `LITELENS_SAMPLE_KEEP_ERRORS=${KEEP_ERRORS}` with KEEP_ERRORS unset must not drop the errors.
    variables = [v for v in _ENV_SETTINGS if v != "LITELENS_SPOOL_DIR"]
    settings = Settings.from_env(dict.fromkeys(variables, empty))
    assert settings == Settings.from_env({})
    assert settings.sample_keep_errors is True and settings.capture_content is True


def test_every_variable_sets_its_field() -> None:
    env = {
        "LITELENS_API_KEY": " ll-key ",
        "LITELENS_DISABLED": "yes",
        "LITELENS_SPOOL_MAX_BYTES": "1024",
        "LITELENS_TIMEOUT": "2.5",
        "LITELENS_MAX_STRING_CHARS": "100",
        "LITELENS_REDACT": "Email, phone",
        "LITELENS_SAMPLE_RATE": "0.25",
        "LITELENS_SAMPLE_KEEP_ERRORS": "off",
        "LITELENS_DROP_CONTENT": "1",
        "LITELENS_SINKS": "http, jsonl:/tmp/calls.jsonl",
        "OTEL_SERVICE_NAME": "billing",
    }
    settings = Settings.from_env(env)
    assert settings.api_key == "ll-key"
    assert settings.disabled is True
    assert settings.spool_max_bytes == 1024
    assert settings.timeout_s == 2.5
    assert settings.limits.max_string_chars == 100
    assert settings.redact == ("email", "phone")
    assert settings.sample_rate == 0.25
    assert settings.sample_keep_errors is False
    assert settings.drop_content is True
    assert settings.sinks == ("http", "jsonl:/tmp/calls.jsonl")
    assert settings.service == "billing"
    assert Settings.from_env({"LITELENS_REDACT": "off"}).redact == ()


@pytest.mark.parametrize("value", ["true", "1", "yes", "ON"])
def test_redact_switched_on_like_the_other_flags_redacts_every_kind(value: str) -> None:
    # LITELENS_REDACT=true reads as a yes, as LITELENS_DROP_CONTENT=true does; it was taken for a kind
    # named "true" and the callback refused to start.
    from litelens import pipeline

    assert Settings.from_env({"LITELENS_REDACT": value}).redact == ("all",)
    (redactor,) = pipeline.from_env({"LITELENS_REDACT": value})
    record = {"request": {"messages": [{"role": "user", "content": "mail jane.doe@example.com"}]}}
    assert "jane.doe" not in str(redactor(record))


def test_a_misspelt_variable_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # LITELENS_SAMPLERATE=0.1 leaves sampling off; the user must be told why.
    with caplog.at_level(logging.WARNING, logger="litelens"):
        settings = Settings.from_env({"LITELENS_SAMPLERATE": "0.1", "LITELENS_SAMPLE_RATE": "0.5"})
        Settings.from_env({"LITELENS_SAMPLERATE": "0.1"})  # said once, not per callback
    assert settings.sample_rate == 0.5
    assert caplog.messages == [
        "litelens: ignoring unknown variable LITELENS_SAMPLERATE; did you mean LITELENS_SAMPLE_RATE?"
    ]


@pytest.mark.parametrize(
    ("argument", "kinds"),
    [(True, ("all",)), (False, ()), ("email, phone", ("email", "phone")), (["card"], ("card",))],
)
def test_redact_takes_what_the_variable_takes(argument: object, kinds: tuple[str, ...]) -> None:
    """`Callback(redact=True)` redacts every kind, as LITELENS_REDACT=all does (it raised a TypeError)."""
    from litelens.pipeline import Pipeline, from_settings

    settings = Settings.from_env({}, redact=argument)
    assert settings.redact == kinds
    record = {"request": {"messages": [{"role": "user", "content": "card 4111 1111 1111 1111"}]}}
    out = Pipeline(from_settings(settings))(record)
    assert out is not None
    assert ("4111" in str(out["request"])) is (kinds in ((), ("email", "phone")))
