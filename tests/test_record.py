"""The record's own rules: ids, credential scrubbing, size caps and encoding that never fails."""

from __future__ import annotations

import json
import math

from litelens import credentials
from litelens import record as rec
from litelens.config import Limits
from litelens.pipeline import truncate


def test_trace_ids_keep_uuid_digits_and_hash_names():
    assert rec.trace_id_of("5c40cb55-c032-42c6-a5db-05e457fc555e") == "5c40cb55c03242c6a5db05e457fc555e"
    named = rec.trace_id_of("chat-42")
    assert named is not None and len(named) == 32 and named == rec.trace_id_of("chat-42")
    assert named != rec.trace_id_of("chat-43")
    assert rec.trace_id_of(None) is None and rec.trace_id_of("") is None


def test_span_id_is_stable_per_call_id():
    call_id = "3ab74f1b-8651-4d17-8e3f-c7cacf16d4de"
    assert rec.span_id_of(call_id) == "8e3fc7cacf16d4de"
    assert len(rec.span_id_of("not-a-uuid")) == 16


def test_urls_lose_user_info_and_keys():
    assert (
        credentials.scrub_url("https://user:pw@api.example.com/v1?api-key=abc&x=1")
        == "https://api.example.com/v1?api-key=%5BREDACTED%5D&x=1"
    )
    assert (
        credentials.scrub_url("https://x.openai.azure.com/openai?key=secret123")
        == "https://x.openai.azure.com/openai?key=%5BREDACTED%5D"
    )
    assert credentials.scrub_url("http://127.0.0.1:4000/v1") == "http://127.0.0.1:4000/v1"


def test_secret_shaped_text_is_redacted():
    text = "Incorrect API key provided: sk-proj-abcdefghijklmnop1234. Header: Bearer eyJhbGciOi.abc.def"
    out = credentials.scrub_text(text)
    assert "sk-proj" not in out and "eyJhbGciOi" not in out
    assert "Bearer [REDACTED]" in out
    assert credentials.scrub_text("nothing to see here") == "nothing to see here"
    assert (
        credentials.scrub_text("the value is hunter2hunter2", secrets=["hunter2hunter2"])
        == "the value is [REDACTED]"
    )


def test_secret_keys_are_removed_from_metadata_but_token_counts_are_not():
    value = {
        "headers": {"Authorization": "Bearer abc", "x-api-key": "k", "content-type": "json"},
        "prompt_tokens": 5,
        "password": "p",
        "nested": [{"client_secret": "s"}],
    }
    out = credentials.scrub_value(value)
    assert out["headers"] == {
        "Authorization": "[REDACTED]",
        "x-api-key": "[REDACTED]",
        "content-type": "json",
    }
    assert out["prompt_tokens"] == 5
    assert out["password"] == "[REDACTED]" and out["nested"][0]["client_secret"] == "[REDACTED]"


def test_encode_survives_what_json_cannot_take():
    class Odd:
        pass

    cyclic: list = []
    cyclic.append(cyclic)
    text, bad = rec.encode({"a": Odd(), "b": {1, 2}, "c": b"xyz", "d": 1.5})
    data = json.loads(text)
    assert data["a"] == "<unserializable Odd>" and bad == 1
    assert sorted(data["b"]) == [1, 2] and data["c"] == "<3 bytes>"
    text, bad = rec.encode({"loop": cyclic, "nan": math.nan, "ok": 1})
    data = json.loads(text)
    assert data["ok"] == 1 and data["nan"] is None and bad == 1


def test_cap_marks_what_it_cut():
    record = {
        "tags": [f"t{i}" for i in range(100)],
        "metadata": {"big": "x" * 50_000, "small": 1},
        "request": {"messages": [{"role": "user", "content": "y" * 1000} for _ in range(50)]},
        "response": {"choices": [{"message": {"content": "z" * 10}}]},
    }
    out = rec.cap(
        record, Limits(max_string_chars=500, max_content_bytes=5_000, max_metadata_bytes=1_000, max_tags=10)
    )
    assert len(out["tags"]) == 10
    assert out["metadata"]["small"] == 1 and out["metadata"]["big"].startswith("<")
    messages = out["request"]["messages"]
    assert messages[1]["role"] == "litelens" and "elided" in messages[1]["content"]
    assert len(json.dumps({"request": out["request"], "response": out["response"]})) <= 5_000
    assert {"tags", "metadata", "request.messages"} <= set(out["truncated"])
    assert any(path.startswith("request.messages[") for path in out["truncated"])


def test_a_tag_cut_to_the_tag_limit_is_named_in_truncated():
    """The core cuts a tag to the collector's limit before sending it, and says so, as for every cut."""
    out = rec.cap({"tags": ["t" * 230, "short"]}, Limits())
    assert out["tags"] == ["t" * rec.MAX_TAG_CHARS, "short"] and rec.MAX_TAG_CHARS == 200
    assert out["truncated"] == ["tags"]
    assert "truncated" not in rec.cap({"tags": ["t" * 200]}, Limits())


def test_a_string_cut_twice_says_how_much_was_cut_in_all():
    """A `truncate` processor's cut, then the size limit's: the marker counts every character dropped,
    and a record capped twice reads as it did after the first cap."""
    limits = Limits(max_string_chars=30)
    record = {"tags": [], "response": {"text": "x" * 200}}
    record = rec.cap(truncate(100, fields=("response",))(record), limits)
    assert record["response"]["text"] == "x" * 30 + "…[truncated 170 chars]"
    assert record["truncated"] == ["response.text", "response.text"]
    again = rec.cap({**record, "truncated": None}, limits)
    assert again["response"]["text"] == "x" * 30 + "…[truncated 170 chars]"
    assert again["truncated"] is None


def test_the_shared_encoder_and_the_careful_one_write_the_same_text():
    record = {"a": [1, 2.5, None, True], "b": {"c": 'é ✓ \u2028 "q"'}, "d": 10**20, "e": -0.0}
    text, bad = rec.encode(record)
    assert bad == 0 and text == json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    # One value JSON cannot take sends the whole record down the careful path: the rest is unchanged.
    text2, bad2 = rec.encode({**record, "z": {1, 2}})
    assert bad2 == 0 and text2 == text[:-1] + ',"z":[1,2]}'


def test_every_credential_shape_is_still_found_where_the_scan_starts():
    for secret in (
        "sk-abcdefgh12345678",
        "Bearer abcdefgh.ijk",
        "Basic dXNlcjpwYXNzd29yZA==",
        "AKIAABCDEFGHIJKLMNOP",
        "AIza" + "x" * 32,
        "ghp_" + "a" * 24,
        "xoxb-1234567890-abc",
        "hf_" + "a" * 24,
        "ll_" + "a" * 20,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
        "sk_live_" + "a" * 24,
        "github_pat_" + "a" * 30,
    ):
        assert secret not in credentials.scrub_text(f"error: {secret} was refused"), secret
    # The name of a URL parameter or of a name=value pair is kept: it says what was removed.
    assert credentials.scrub_text("https://h/x?token=abc&x=1") == "https://h/x?token=[REDACTED]&x=1"
    assert credentials.scrub_text("postgres://admin:s3cr3t@db:5432/x") == "postgres://[REDACTED]@db:5432/x"
    assert (
        credentials.scrub_text("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG")
        == "AWS_SECRET_ACCESS_KEY=[REDACTED]"
    )
    assert credentials.scrub_text("a plain message, nothing secret") == "a plain message, nothing secret"
    # A session cookie echoed in an error, and a key in a request body quoted inside JSON text
    assert credentials.scrub_text("401 with Cookie: session=abcdefgh") == "401 with Cookie: [REDACTED]"
    assert (
        credentials.scrub_text('{\\"api_key\\": \\"abcd1234efgh\\"}') == '{\\"api_key\\": \\"[REDACTED]\\"}'
    )


def test_plain_api_bases_pass_through_and_the_rest_is_still_normalised():
    assert credentials.scrub_url("http://127.0.0.1:4000/v1") == "http://127.0.0.1:4000/v1"
    assert credentials.scrub_url("HTTPS://api.example.com/v1") == "https://api.example.com/v1"
    assert credentials.scrub_url("https://api.example.com/v1#k") == "https://api.example.com/v1#k"
    assert credentials.scrub_url("https://u:p@api.example.com/v1") == "https://api.example.com/v1"


def test_an_id_with_a_trailing_newline_is_not_a_hex_id():
    """`$` also matches before a final newline: such an id was taken as hex, kept its newline, and the
    server stored a trace id no trace query or OTLP span could ever match."""
    hex32, hex16 = "5c40cb55c03242c6a5db05e457fc555e", "a5db05e457fc555e"
    assert not rec.is_hex_id(hex32 + "\n", 32) and not rec.is_hex_id(hex16 + "\n", 16)
    for value in (hex32 + "\n", "5c40cb55-c032-42c6-a5db-05e457fc555e\n"):
        trace_id = rec.trace_id_of(value)
        assert trace_id is not None and rec.is_hex_id(trace_id, 32), repr(trace_id)
        assert rec.is_hex_id(rec.span_id_of(value), 16), repr(rec.span_id_of(value))


def _payload(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "litellm_call_id": "7f1c0a1e-3b52-4d7c-9a53-2e1f4c6b8d90",
        "call_type": "completion",
        "status": "success",
        "custom_llm_provider": "openai",
        "model": "gpt-4o-mini",
        "startTime": 1_700_000_000.0,
        "endTime": 1_700_000_001.5,
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "response_cost": 0.0001,
        "messages": [{"role": "user", "content": "hi"}],
        "response": {"id": "r-1", "choices": [{"index": 0, "finish_reason": "stop"}]},
        "metadata": {},
    }
    payload.update(overrides)
    return payload


def test_an_odd_value_in_the_payload_costs_its_field_not_the_record():
    """Each of these raised out of the builder, and the record was dropped as a build error."""
    record = rec.from_standard_logging(_payload(prompt_tokens=math.inf))
    assert record["usage"]["input_tokens"] == 0 and record["usage"]["output_tokens"] == 3
    assert record["cost_usd"] == 0.0001 and record["request_model"] == "gpt-4o-mini"

    record = rec.from_standard_logging(_payload(call_type=5))
    assert record["call_type"] == "unknown" and record["usage"]["total_tokens"] == 15

    record = rec.from_standard_logging(_payload(hidden_params="not a dict", response=None))
    assert record["usage"]["total_tokens"] == 15 and record["status"] == "ok"

    failed = _payload(status="failure", error_information="not a dict", error_str="boom")
    record = rec.from_standard_logging(failed, exception_type="APIError", error_status=500)
    assert record["status"] == "error" and record["error"]["type"] == "APIError"
    assert record["error"]["message"] == "boom" and record["error"]["status_code"] == 500
