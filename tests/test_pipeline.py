"""litelens.pipeline: redaction leaves no planted personal data or secret behind and nothing else changed,
sampling keeps whole traces at the asked rate, a failing processor costs only its records, the
environment configures the proxy's processors, and the docs' examples run."""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import litellm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litelens import credentials
from litelens import pipeline as pl
from litelens.config import Settings
from litelens.pipeline import Pipeline, drop_content, drop_if, enrich, keep_if, redact, sample, truncate
from litelens.redaction.text import TextRedactor
from litelens.redaction.walk import Redactor
from litelens.testing import FakeProvider, Receiver

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-PROVIDERKEY-0123456789abcdef"

# Each planted value must be gone from the output, whatever field it was put in.
PLANTED = {
    "email": ["alice.smith+tag@mail.example.co.uk", "bob@corp.io", "carol@example.com", "dave@example.org"],
    "phone": ["+1 415 555 2671", "(415) 555-2671", "+442079460958", "020 7946 0958"],
    "card": ["4111 1111 1111 1111", "5500-0055-5555-5559", "378282246310005"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB29NWBK60161331926819"],
    "ip": ["192.168.17.42", "2001:db8::8a2e:370:7334"],
    "secret": [
        "sk-proj-Abc123def456ghi789",
        "abc.def.ghijklmnopq",  # the token of a Bearer header
        "zzzSECRETzzz123",  # a key in a URL query
        "hunter2-password",  # a value under a secret-named key
        "AKIAIOSFODNN7EXAMPLE",
    ],
}


def planted_record() -> dict[str, Any]:
    return {
        "schema": "litelens.call/1",
        "call_id": "c0ffee00-0000-4000-8000-000000000001",
        "trace_id": "c0ffee00000040008000000000000001",
        "span_id": "8000000000000001",
        "session_id": "chat-42",
        "tags": ["checkout", "v2"],
        "status": "error",
        "duration_ms": 812.5,
        "usage": {"input_tokens": 120, "output_tokens": 40, "total_tokens": 160},
        "cost_usd": 0.00042,
        "request_model": "gpt-4o-mini",
        "api_base": "https://api.openai.com/v1",
        "request": {
            "messages": [
                {"role": "system", "content": "You are a support agent for order 1234567890123456."},
                {
                    "role": "user",
                    "content": "I'm Alice (alice.smith+tag@mail.example.co.uk, +1 415 555 2671). "
                    "Refund to DE89 3704 0044 0532 0130 00 or card 4111 1111 1111 1111 please.",
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Also reachable at (415) 555-2671 from 192.168.17.42."},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://img.example.com/r.png?token=zzzSECRETzzz123"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "refund",
                                "arguments": json.dumps(
                                    {
                                        "email": "bob@corp.io",
                                        "card": "5500-0055-5555-5559",
                                        "amount": 129.5,
                                        "password": "hunter2-password",
                                    }
                                ),
                            },
                        }
                    ],
                },
            ],
            "tools": [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}],
            "parameters": {"temperature": 0.2, "max_tokens": 256},
        },
        "response": {
            "id": "resp-1",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Done; a copy went to carol@example.com."},
                }
            ],
        },
        "metadata": {
            "customer": {"email": "dave@example.org", "phones": ["+442079460958", "020 7946 0958"]},
            "callback": "https://hooks.example.com/x?api_key=zzzSECRETzzz123&ok=1",
            "client_ip": "2001:db8::8a2e:370:7334",
            "tier": "gold",
            "api_key": "AKIAIOSFODNN7EXAMPLE",
        },
        "error": {
            "type": "AuthenticationError",
            "message": "Incorrect API key sk-proj-Abc123def456ghi789 sent with Authorization: Bearer "
            "abc.def.ghijklmnopq; paid with GB29NWBK60161331926819 and 378282246310005",
            "status_code": 401,
        },
        "truncated": None,
    }


def test_planted_personal_data_and_secrets_are_gone_and_nothing_else_changed() -> None:
    original = planted_record()
    pristine = copy.deepcopy(original)
    out = redact()(original)
    text = json.dumps(out)
    leftover = [v for values in PLANTED.values() for v in values if v in text]
    assert leftover == []
    for kind in ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "SECRET"):
        assert f"[{kind}]" in text, kind

    # Everything outside the redacted fields is exactly as it was.
    for key in pristine.keys() - {"request", "response", "metadata", "error"}:
        assert out[key] == pristine[key], key
    req, old = out["request"], pristine["request"]
    assert req["parameters"] == old["parameters"] and req["tools"] == old["tools"]
    assert req["messages"][0] == old["messages"][0]  # an order number is not a card
    assert req["messages"][1]["content"] == (
        "I'm Alice ([EMAIL], [PHONE]). Refund to [IBAN] or card [CARD] please."
    )
    assert req["messages"][2]["content"][1]["image_url"]["url"] == (
        "https://img.example.com/r.png?token=[SECRET]"
    )
    args = json.loads(req["messages"][3]["tool_calls"][0]["function"]["arguments"])
    assert args == {"email": "[EMAIL]", "card": "[CARD]", "amount": 129.5, "password": "[SECRET]"}
    assert out["response"]["choices"][0]["finish_reason"] == "stop"
    assert out["response"]["choices"][0]["message"]["content"] == "Done; a copy went to [EMAIL]."
    assert out["metadata"]["tier"] == "gold"
    assert out["metadata"]["callback"] == "https://hooks.example.com/x?api_key=[SECRET]&ok=1"
    assert out["error"]["type"] == "AuthenticationError" and out["error"]["status_code"] == 401
    assert out["error"]["message"].startswith(
        "Incorrect API key [SECRET] sent with Authorization: Bearer [SECRET]"
    )
    # Copy-on-write: the nested objects the record referenced (LiteLLM's own lists) were not changed.
    assert pristine["request"]["messages"] == planted_record()["request"]["messages"]
    assert original["request"] is out["request"]  # the record itself is the pipeline's to change


def test_a_record_with_nothing_to_redact_is_returned_untouched() -> None:
    record = planted_record()
    record["request"]["messages"] = [{"role": "user", "content": "What is 2 + 2? Order 1234567890123456."}]
    record.update(response=None, metadata={"tier": "gold"}, error=None)
    request = record["request"]
    assert redact()(record)["request"] is request


@pytest.mark.parametrize(
    "text",
    [
        "Order #1234567890123456 shipped",  # 16 digits, fails Luhn
        "order 4111111111111112",  # one digit off a test card
        "tracking 12345678901234567890",  # 20 digits: too long for a card, no partial match either
        "invoice INV-2024-000123-45, PO 2024/05/01",
        "transfer ref DE00 1234 5678 9012 3456 78",  # IBAN-shaped, fails mod 97
        "GB00NWBK60161331926819 is a typo",
        "shipped 2024-05-01, paid 15.01.2024, 1 000 000 units, version 1.110.2",
        "at 10:30:00 using std::vector",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "0000 0000 0000 0000",  # passes Luhn, is nobody's card
        # Timestamps, durations, prices and versions near the phone and secret shapes
        "released 2024-05-01T10:30:00Z, logged 2024-05-01 10:30:00.123456 and 01.05.2024 10:30",
        "took 00:01:23.456 (83 456 ms); price $1,299.00, 1 299,00 EUR or 0.99 USD",
        "version 1.110.2 build 0.0.1234567 rc 2024.05.01-1, population 1234567 in 2023",
        "max_tokens=256, input_tokens: 120, timeout=30, api_version=2024-05-01",
        # Year ranges and decimal numbers have the digits of a phone number
        "revenue grew over 2019-2023, data from 1990-2020 (FY2019-2023)",
        "price 1234.5678 USD at lat 37.7749, lon -122.4194; 1013.2500 hPa",
        # Addresses that name no one: loopback, "any", netmasks (a local api_base stays readable)
        "serve on 0.0.0.0:8000 and [::]:80; api_base http://127.0.0.1:4000 or [::1]:4000, mask 255.255.255.0",
        # Rows of small numbers, as in a table or a list, are no phone numbers
        "scores 12 34 56 78 90 11; 1 2 3 4 5 6 7 8 9 10 11 12; 10 20 30 40 50 60\n70 80 90",
        # A Git SSH remote names a service's Git user, not a person
        "git clone git@github.com:org/repo.git or ssh://git@gitlab.com/org/repo.git",
    ],
)
def test_checksums_and_shapes_keep_order_numbers_readable(text: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The printed form of IBANs whose bank code is letters (UK, NL, IE, MT...): the check digits are
        # followed by a space and letters, not by a run of digits.
        ("IBAN GB29 NWBK 6016 1331 9268 19 thanks", "IBAN [IBAN] thanks"),
        ("NL91 ABNA 0417 1643 00", "[IBAN]"),
        ("to MT84 MALT 0110 0001 2345 MTLC AST0 01S.", "to [IBAN]."),
        ("IE29 AIBK 9311 5212 3456 78, ref 7", "[IBAN], ref 7"),
        ("GB29NWBK60161331926819", "[IBAN]"),
        ("DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ],
)
def test_ibans_are_found_in_every_written_form(text: str, expected: str) -> None:
    assert redact(kinds=["iban"])({"error": {"message": text}})["error"]["message"] == expected
    out = redact()({"error": {"message": text}})["error"]["message"]
    assert out == expected


def test_every_secret_shape_is_found_past_the_fast_path() -> None:
    samples = [
        "sk-abcdefgh12345678",
        "rk-abcdefgh12345678",
        "pk-abcdefgh12345678",
        "Bearer abcdefgh12345678",
        "Basic dXNlcjpwYXNzd29yZA==",
        "AKIAIOSFODNN7EXAMPLE",
        "AIza" + "x" * 35,
        "ghp_" + "a" * 36,
        "gho_" + "a" * 36,
        "xoxb-1234567890-abcdef",
        "hf_" + "a" * 30,
        "ll_" + "a" * 20,
        "https://h.io/p?key=abcdef123",
        # JWT (header and claims are base64 of '{"...'), alone and as a JSON Web Token in a header
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        "github_pat_11ABCDEFG0" + "a" * 60,
        "sk_live_51H8abcdEFGH1234567890",
        "rk_live_51H8abcdEFGH1234567890",
        "sk_test_51H8abcdEFGH1234567890",
        "whsec_" + "a1" * 16,
        "xapp-1-A0123456789-1234567890123-abcdef0123456789",
        "glpat-abcdefghij1234567890",
        "npm_" + "a1" * 18,
    ]
    for secret in samples:
        out = redact(kinds=["secret"])({"metadata": {"note": f"x {secret} y"}})["metadata"]["note"]
        assert "[SECRET]" in out, secret
        value = secret.split()[-1].split("?key=")[-1]
        assert value not in out, secret


def test_user_patterns_fields_kinds_and_placeholder() -> None:
    proc = redact(
        kinds="email",
        fields=("metadata", "end_user"),
        patterns={"employee": r"EMP-\d{6}"},
        placeholder="<{kind}>",
    )
    out = proc(
        {
            "end_user": "eve@example.com",
            "metadata": {"who": "EMP-123456 eve@example.com +1 415 555 2671"},
            "error": {"message": "eve@example.com"},
        }
    )
    assert out["end_user"] == "<EMAIL>"
    assert out["metadata"]["who"] == "<EMPLOYEE> <EMAIL> +1 415 555 2671"  # phone not chosen
    assert out["error"]["message"] == "eve@example.com"  # field not chosen
    with pytest.raises(ValueError, match="unknown redaction kind"):
        redact(kinds="emial")


def test_redaction_through_real_litellm(
    provider: FakeProvider, receiver: Receiver, make_callback: Any
) -> None:
    def mark_in_place(record: dict[str, Any]) -> dict[str, Any]:
        # Changes nested values in place, as a processor may: the caller's own objects must not change.
        record["metadata"]["customer"]["seen"] = True
        record["request"]["tools"][0]["function"]["parameters"]["seen"] = True
        return record

    callback = make_callback(processors=[redact(), mark_in_place])
    customer = {"email": "dave@example.org", "iban": "DE89 3704 0044 0532 0130 00"}
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "from 192.168.17.42", "parameters": {}},
        }
    ]
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[
            {
                "role": "user",
                "content": "I'm alice@example.com, card 4111 1111 1111 1111, call +1 415 555 2671",
            }
        ],
        api_base=provider.url,
        api_key=KEY,
        metadata={"customer": customer},
        tools=tools,
    )
    assert receiver.wait_for(1, timeout=15) and callback.flush(timeout=10)
    assert customer == {"email": "dave@example.org", "iban": "DE89 3704 0044 0532 0130 00"}
    assert tools[0]["function"]["parameters"] == {}
    body = b"".join(b["body"] for b in receiver.bodies).decode()
    for planted in (
        "alice@example.com",
        "4111 1111 1111 1111",
        "+1 415 555 2671",
        "dave@example.org",
        "DE89 3704 0044 0532 0130 00",
        "192.168.17.42",
        KEY,
    ):
        assert planted not in body, planted
    (record,) = receiver.records
    assert record["request"]["messages"][0]["content"] == "I'm [EMAIL], card [CARD], call [PHONE]"
    assert record["metadata"]["customer"] == {"email": "[EMAIL]", "iban": "[IBAN]", "seen": True}
    assert record["usage"]["input_tokens"] > 0 and record["status"] == "ok"


def _trace(i: int) -> str:
    return f"{i:032x}"


def test_sampling_keeps_the_rate_whole_traces_and_every_error() -> None:
    keep = sample(0.1)
    kept_traces: set[str] = set()
    partial = 0
    errors_seen = errors_kept = 0
    for i in range(10_000):
        trace = _trace(i * 7919)
        calls = [{"trace_id": trace, "status": "ok", "duration_ms": 10.0} for _ in range(1 + i % 3)]
        if i % 50 == 0:
            calls.append({"trace_id": trace, "status": "error", "duration_ms": 10.0})
        results = [keep(dict(c)) is not None for c in calls]
        ok_results = [r for r, c in zip(results, calls, strict=True) if c["status"] == "ok"]
        if any(ok_results):
            kept_traces.add(trace)
            partial += not all(ok_results)
        for r, c in zip(results, calls, strict=True):
            if c["status"] == "error":
                errors_seen += 1
                errors_kept += r
    assert 0.085 <= len(kept_traces) / 10_000 <= 0.115, len(kept_traces)
    assert partial == 0
    assert errors_kept == errors_seen == 200
    # The same decision in any process: a pure function of the trace id.
    assert all(keep({"trace_id": t, "status": "ok"}) is not None for t in list(kept_traces)[:100])
    assert sample(0.1, keep_errors=False)({"trace_id": _trace(1), "status": "error"}) in (
        None,
        {"trace_id": _trace(1), "status": "error"},
    )
    assert (
        sample(0.0, keep_slow_ms=500)({"trace_id": _trace(3), "status": "ok", "duration_ms": 600}) is not None
    )
    assert sample(0.0)({"trace_id": _trace(3), "status": "ok", "duration_ms": 600}) is None
    with pytest.raises(ValueError):
        sample(1.5)


def every_third_raises() -> Any:
    """A processor with a bug that shows on every third record it sees."""
    seen = {"n": 0}

    def flaky(record: dict[str, Any]) -> dict[str, Any]:
        seen["n"] += 1
        if seen["n"] % 3 == 0:
            raise RuntimeError("processor bug")
        return record

    return flaky


def test_a_processor_raising_on_every_third_record_costs_only_those(caplog: pytest.LogCaptureFixture) -> None:
    flaky = every_third_raises()

    pipe = Pipeline([flaky, enrich({"environment": "prod"})])
    with caplog.at_level(logging.WARNING, logger="litelens"):
        out = [pipe({"call_id": str(i), "environment": None}) for i in range(30)]
    delivered = [r for r in out if r is not None]
    assert len(delivered) == 20 and all(r["environment"] == "prod" for r in delivered)
    assert pipe.stats() == {
        "flaky": {"dropped": 0, "errors": 10},
        "enrich": {"dropped": 0, "errors": 0},
        "total": {"dropped": 0, "errors": 10},
    }
    assert sum("flaky" in m for m in caplog.messages) == 1  # logged once, then counted


def test_a_failing_processor_through_the_callback(receiver: Receiver, make_callback: Any) -> None:
    flaky = every_third_raises()

    def copy_without_content(record: dict[str, Any]) -> Any:
        # A new dict, not the one it was given: what it returns is what must leave.
        if record["call_id"] == "no-return":
            return True  # forgot to return the record
        return {**record, "request": {"parameters": {}}, "metadata": {"copied": True}}

    callback = make_callback(
        processors=[flaky, drop_if(lambda r: r["call_id"] == "drop-me"), copy_without_content]
    )
    secret = {"messages": [{"role": "user", "content": "do not keep me"}]}
    for i in range(9):
        callback.transport.submit(
            {"schema": "litelens.call/1", "call_id": f"c{i}", "metadata": {}, "request": secret}
        )
    callback.transport.submit({"schema": "litelens.call/1", "call_id": "drop-me", "metadata": {}})
    callback.transport.submit({"schema": "litelens.call/1", "call_id": "no-return", "metadata": {}})
    assert callback.flush(timeout=10)
    assert receiver.wait_for(6, timeout=10)
    time.sleep(0.2)
    assert sorted(receiver.call_ids()) == ["c0", "c1", "c3", "c4", "c6", "c7"]
    assert all(
        r["request"] == {"parameters": {}} and r["metadata"] == {"copied": True} for r in receiver.records
    )
    stats = callback.stats()
    assert stats["processor_errors"] == 4 and stats["filtered"] == 1
    assert callback.pipeline.stats()["flaky"]["errors"] == 3
    assert callback.pipeline.stats()["copy_without_content"] == {"dropped": 0, "errors": 1}


def test_env_configuration() -> None:
    assert pl.from_env({}) == []
    names = [
        p.__name__
        for p in pl.from_env(
            {
                "LITELENS_SAMPLE_RATE": "0.25",
                "LITELENS_DROP_CONTENT": "true",
                "LITELENS_REDACT": "email, phone",
            }
        )
    ]
    assert names == ["sample(0.25)", "drop_content", "redact"]
    assert pl.from_env({"LITELENS_REDACT": "off", "LITELENS_SAMPLE_RATE": "1"}) == []
    assert Settings.from_env({"LITELENS_REDACT": "all"}).redact == ("all",)
    assert Settings.from_env({"LITELENS_SAMPLE_KEEP_ERRORS": "false"}).sample_keep_errors is False
    with pytest.raises(ValueError, match="LITELENS_SAMPLE_RATE"):
        Settings.from_env({"LITELENS_SAMPLE_RATE": "10%"})
    with pytest.raises(ValueError, match="LITELENS_SAMPLE_KEEP_ERRORS"):
        Settings.from_env({"LITELENS_SAMPLE_KEEP_ERRORS": "maybe"})
    with pytest.raises(ValueError, match="unknown redaction kind"):
        pl.from_env({"LITELENS_REDACT": "emails"})

    # Only emails: a phone stays, and keep_errors=false lets a sampled-out error go.
    (only_email,) = pl.from_env({"LITELENS_REDACT": "email"})
    out = only_email({"error": {"message": "a@b.io +1 415 555 2671"}})
    assert out is not None and out["error"]["message"] == "[EMAIL] +1 415 555 2671"
    (strict,) = pl.from_env({"LITELENS_SAMPLE_RATE": "0", "LITELENS_SAMPLE_KEEP_ERRORS": "false"})
    assert strict({"trace_id": _trace(5), "status": "error"}) is None


def test_env_processors_run_in_the_callback_before_the_users(
    receiver: Receiver, make_callback: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELENS_REDACT", "all")
    monkeypatch.setenv("LITELENS_SAMPLE_RATE", "0")
    monkeypatch.setenv("LITELENS_DROP_CONTENT", "1")
    seen: list[dict[str, Any]] = []

    def user(record: dict[str, Any]) -> dict[str, Any]:
        seen.append(copy.deepcopy(record))
        return record

    callback = make_callback(processors=[user])
    assert [p.__name__ for p in callback.pipeline] == ["sample(0)", "drop_content", "redact", "user"]
    base = {"schema": "litelens.call/1", "trace_id": _trace(9), "request": {"messages": [{"content": "hi"}]}}
    callback.transport.submit({**base, "call_id": "ok", "status": "ok"})
    callback.transport.submit(
        {
            **base,
            "call_id": "err",
            "status": "error",
            "error": {"message": "key sk-abcdefgh12345678 from 10.0.0.1"},
        }
    )
    assert callback.flush(timeout=10) and receiver.wait_for(1, timeout=10)
    time.sleep(0.2)
    (record,) = receiver.records
    assert record["call_id"] == "err"  # sampled to 0, errors kept
    assert record["request"] == {"parameters": {}}  # content dropped
    assert record["error"]["message"] == "key [SECRET] from [IP]"
    assert seen == [record]  # the user's processor saw the already-processed record
    assert callback.stats()["filtered"] == 1


def test_drop_content_truncate_enrich_keep_if() -> None:
    record = planted_record()
    out = drop_content()(copy.deepcopy(record))
    assert out is not None
    assert out["request"] == {"parameters": record["request"]["parameters"]} and out["response"] is None
    assert out["usage"] == record["usage"] and out["cost_usd"] == record["cost_usd"]
    assert out["error"] == record["error"]  # an error message is not content

    cut = truncate(10)(copy.deepcopy(record))
    assert cut is not None
    assert cut["request"]["messages"][0]["content"] == "You are a …[truncated 41 chars]"
    assert "request.messages[0].content" in cut["truncated"] and cut["usage"] == record["usage"]
    # Tool-call arguments are cut inside and stay JSON a reader (the dashboard) can parse.
    args = json.loads(cut["request"]["messages"][3]["tool_calls"][0]["function"]["arguments"])
    assert args["email"] == "bob@corp.i…[truncated 1 chars]" and args["amount"] == 129.5
    assert "request.messages[3].tool_calls[0].function.arguments.email" in cut["truncated"]

    rich = enrich({"environment": "prod", "region": "eu"}, fn=lambda r: {"tags": [*r["tags"], "rich"]})
    out = rich(copy.deepcopy(record))
    assert out is not None
    assert out["environment"] == "prod" and out["tags"] == ["checkout", "v2", "rich"]
    assert out["metadata"]["region"] == "eu" and out["metadata"]["tier"] == "gold"

    assert keep_if(lambda r: r["status"] == "error")(record) is record
    assert keep_if(lambda r: r["status"] == "ok")(record) is None
    assert drop_if(lambda r: r["status"] == "error")(record) is None
    nested = Pipeline([Pipeline([drop_if(lambda r: True)])])
    assert nested(record) is None and nested.stats()["total"] == {"dropped": 1, "errors": 0}
    failing = Pipeline([Pipeline([lambda r: 1 / 0])])  # an error inside is an error, not a filtered record
    assert failing(record) is None and failing.stats()["total"] == {"dropped": 0, "errors": 1}


def test_truncate_cuts_stay_named_when_the_size_limits_cut_too(
    receiver: Receiver, make_callback: Any
) -> None:
    callback = make_callback(processors=[truncate(5, fields=("request",))])
    callback.transport.submit(
        {
            "schema": "litelens.call/1",
            "call_id": "big",
            "tags": [],
            "request": {"messages": [{"role": "user", "content": "abcdefghij"}]},
            "response": {"text": "x" * 40_000},  # past max_string_chars: the size limits cut it
        }
    )
    assert callback.flush(timeout=10) and receiver.wait_for(1, timeout=10)
    (record,) = receiver.records
    assert record["request"]["messages"][0]["content"].startswith("abcde…")
    assert record["truncated"] == ["request.messages[0].content", "response.text"]


@pytest.mark.parametrize("size", [10, 40_000])  # 40 000: past the size limits, so the record is capped
def test_tags_a_processor_set_arrive_as_strings(receiver: Receiver, make_callback: Any, size: int) -> None:
    # The server refuses a record whose tags are not strings; an end user that is None is common.
    callback = make_callback(processors=[enrich(fn=lambda r: {"tags": [*r["tags"], r["end_user"], 7]})])
    callback.transport.submit(
        {
            "schema": "litelens.call/1",
            "call_id": "tagged",
            "tags": ["a"],
            "end_user": None,
            "request": {"messages": [{"role": "user", "content": "x" * size}]},
        }
    )
    assert callback.flush(timeout=10) and receiver.wait_for(1, timeout=10)
    (record,) = receiver.records
    assert record["tags"] == ["a", "7"]


def test_docs_examples_run() -> None:
    text = (ROOT / "docs" / "pipeline.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/pipeline.md", "exec"), {"__name__": "docs_pipeline"})


# --------------------------------------------------------------------------------------------------
# The fast paths give exactly what the plain string-by-string scan gives.

FRAGMENTS = [
    *(v for values in PLANTED.values() for v in values),
    "?token=abc12345",
    "&api_key=zz9",
    ";sig=q",
    "key=plain",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "xoxb-",
    "ghp_",
    "hf_",
    "ll_",
    "sk-",
    "AKIA",
    "AIza",
    "eyJhbGciOiJIUzI1NiJ9",
    ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.",
    "github_pat_",
    "jane%40x.io",
    "%40",
    "o'neil@x.io",
    "API_KEY",
    "password",
    "Token",
    "x-auth-token",
    ": ",
    " = ",
    "s3cr3t99",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "https://",
    "u:p4ss@",
    "?refresh_token=",
    "&X-Amz-Signature=",
    "sk_live_",
    "rk_test_",
    "whsec_",
    "xapp-1-",
    "glpat-",
    "npm_",
    "a" * 20,
    "2024-05-01",
    "1 000 000",
    "4111",
    " 1111",
    "(1.2.3.4)",
    "+",
    "-",
    "_",
    "=",
    "&",
    "\x00",
    "&\x00",
    '"',
    "'",
    "\n",
    ":",
    "::1",
    "@",
    "a@b.co",
    "josé@bücher.de",
    "\u00a0",  # a no-break space, as between the groups of a number
    "4111\u00a01111",
    "555\u20112671",  # a non-breaking hyphen
    " ",
    ".",
    "GB",
    "DE89",
    "word",
    "A",
    "B",
    "{",
    '{"password": "x1", "n": "bob@corp.io"}',
    "[1, 2]",
    # JSON text: its strings are redacted, its numbers stay as they are.
    '{"n": "bob@corp.io", "card": 4111111111111111}',
    '["4111 1111 1111 1111", 10.0]',
    '{"e": "a\\u0040b.co", "ip": "10.0.0.1"}',  # an escape hides the address from a plain scan
    '{"apiKey": "v123456"}',  # a secret-named key inside JSON text
    "Cookie",
    "sid=a1",
    "; ",
    '\\"',  # an escaped quote, as in JSON text inside JSON text
]

texts = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)
values = st.recursive(
    texts | st.integers() | st.none(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["content", "text", "password", "url", "x", "api_key"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


def _walker() -> Any:
    return Redactor(TextRedactor(frozenset(pl.KINDS), [], "[{kind}]"), secret_keys=True)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(list(pl.REDACT_FIELDS)), values, max_size=5))
def test_the_joined_scan_agrees_with_the_string_by_string_scan(fields: dict[str, Any]) -> None:
    joined = dict(fields)
    fast = _walker()
    fast.redact_fields(joined, pl.REDACT_FIELDS)
    slow = _walker()
    one_by_one = {key: slow.value(value) if value else value for key, value in fields.items()}
    assert joined == one_by_one
    again = dict(fields)
    fast.redact_fields(again, pl.REDACT_FIELDS)  # the second time, strings found clean are skipped
    assert again == one_by_one


@settings(max_examples=600, deadline=None)
@given(texts)
def test_the_credential_starts_agree_with_the_regex(text: str) -> None:
    redactor = TextRedactor(frozenset({"secret"}), [], "[{kind}]")
    assert redactor._secrets(text) == credentials.SECRET_TEXT.sub(
        lambda m: credentials.secret_replacement(m, "[SECRET]"), text
    )
    assert credentials.has_secret(text) == bool(credentials.SECRET_TEXT.search(text))


def test_a_url_ending_in_a_colon_keeps_the_next_fields_text() -> None:
    # The strings of a record are scanned joined by "&" and NUL; the user:password@ shape ran from one
    # string's "https://:" across that separator into the next one's address. When that string held
    # the separator itself, the parts still matched the strings in number, and the address's domain
    # landed in the other field while its own was emptied.
    out = redact()({"request": ["https://:"], "response": "ann.smith+tag@mail.example.co.uk&\x00"})
    assert out == {"request": ["https://:"], "response": "[EMAIL]&\x00"}


def test_fast_paths_keep_the_edge_cases() -> None:
    red = redact()
    out = red(
        {
            "request": {"messages": [{"role": "user", "content": "ping (10.0.0.1) and 10.0.0.2, key=abc"}]},
            "metadata": {"u": "https://x.io/?a=1&token=abcdef", "sep": "a&\x00b bob@corp.io", "p": "x&\x00"},
            "error": {"message": "Bearer\tabcdefgh12345678 then AKIAIOSFODNN7EXAMPLE"},
        }
    )
    assert out["request"]["messages"][0]["content"] == "ping ([IP]) and [IP], key=abc"
    assert out["metadata"] == {
        "u": "https://x.io/?a=1&token=[SECRET]",
        "sep": "a&\x00b [EMAIL]",
        "p": "x&\x00",
    }
    assert out["error"]["message"] == "Bearer [SECRET] then [SECRET]"
    # The same strings a second time (remembered as clean or not) give the same result.
    assert red({"metadata": {"u": "https://x.io/?a=1&token=abcdef"}})["metadata"]["u"].endswith("=[SECRET]")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        # What is found is replaced inside the strings; numbers stay, and the JSON stays valid.
        ('{"n": "bob@corp.io", "card": 4111111111111111}', {"n": "[EMAIL]", "card": 4111111111111111}),
        ('{"ip": "10.0.0.1", "q": 3}', {"ip": "[IP]", "q": 3}),
        # An escape would hide these from a scan of the text as it stands.
        ('{"e": "a\\u0040b.co", "n": 1}', {"e": "[EMAIL]", "n": 1}),
        ('{"q": "call +1\\u0020415 555 2671"}', {"q": "call [PHONE]"}),
        # A secret-named key shows only once the text is parsed.
        ('{"apiKey": "v123456", "n": 1}', {"apiKey": "[SECRET]", "n": 1}),
        ('{"user": {"Password": "hunter2"}}', {"user": {"Password": "[SECRET]"}}),
    ],
)
def test_json_text_in_strings_is_redacted_inside(arguments: str, expected: Any) -> None:
    def record() -> dict[str, Any]:
        call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return {"request": {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}}

    for walker in (_walker(), None):  # the joined scan, and string by string as a reference
        if walker is None:
            out = {"request": _walker().value(record()["request"])}
        else:
            out = record()
            walker.redact_fields(out, pl.REDACT_FIELDS)
        got = out["request"]["messages"][0]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(got) == expected


# --------------------------------------------------------------------------------------------------
# Forms found by probing: each failed before its fix.


def test_values_under_secret_named_keys_in_every_naming_style() -> None:
    secret_named = [
        "AWS_SECRET_ACCESS_KEY",
        "Ocp-Apim-Subscription-Key",
        "github_token",
        "HF_TOKEN",
        "x-amz-security-token",
        "dbPassword",
        "secretAccessKey",
        "DB_PASS",
        "passphrase",
        "master_key",
        "signing_key",
    ]
    meta = {"env": {name: "v4lue-1234" for name in secret_named}}
    args = json.dumps({"config": {"HF_TOKEN": "v4lue-1234", "dbPassword": "v4lue-1234"}})
    out = redact()({"metadata": meta, "request": {"tools": [{"arguments": args}]}})
    assert out["metadata"]["env"] == {name: "[SECRET]" for name in secret_named}
    assert "v4lue-1234" not in out["request"]["tools"][0]["arguments"]
    # Names that only look like them keep their values: logprobs list each `token` of an answer.
    plain = {"token": "Hello", "max_tokens": 256, "tokens": "x", "password_hint": "pet", "bypass": "on"}
    assert redact()({"response": {"lp": plain}})["response"]["lp"] == plain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Passwords in the user info of a URL (a database URL in an error, a proxy setting)
        ("postgres://admin:s3cr3tP4ss@10.0.0.5:5432/db", "postgres://[SECRET]@[IP]:5432/db"),
        ("see https://user:hunter2pass@db.example.com/x.", "see https://[SECRET]@db.example.com/x."),
        ("redis://:p4ss=w0rd@cache:6379/0", "redis://[SECRET]@cache:6379/0"),
        ("https://host.io:8443/a@b", "https://host.io:8443/a@b"),  # a port, then a path
        # Key names in queries beyond key/token/sig, in any case, and signed S3 / GCS URLs
        ("https://x.io/?client_secret=abc123&a=1", "https://x.io/?client_secret=[SECRET]&a=1"),
        ("https://x.io/cb?refresh_token=abc123#top", "https://x.io/cb?refresh_token=[SECRET]#top"),
        ("https://x.io/?ACCESS-TOKEN=abc123", "https://x.io/?ACCESS-TOKEN=[SECRET]"),
        ("https://x.io/?a=1&pwd=abc123", "https://x.io/?a=1&pwd=[SECRET]"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=IQo123&X-Amz-Signature=4f2a9c&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=[SECRET]&X-Amz-Signature=[SECRET]"
            "&X-Amz-Expires=60",
        ),
        ("https://x.io/?max_tokens=5&keyword=abc", "https://x.io/?max_tokens=5&keyword=abc"),
    ],
)
def test_credentials_in_urls(text: str, expected: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == expected
    walker = _walker()
    assert walker.value({"u": text}) == {"u": expected}  # string by string too


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A secret-named key and its value in text: .env lines, config files, headers echoed in errors
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=[SECRET]"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfi", "aws_secret_access_key = [SECRET]"),
        ("401: header api-key: 0123456789abcdef0123456789abcdef", "401: header api-key: [SECRET]"),
        ("Ocp-Apim-Subscription-Key: 0a1b2c3d4e5f", "Ocp-Apim-Subscription-Key: [SECRET]"),
        ("curl -H 'x-api-key: abcdef1234567890' https://x.io", "curl -H 'x-api-key: [SECRET]' https://x.io"),
        ("headers={'X-Auth-Token': 'tok3n-abcdef'}", "headers={'X-Auth-Token': '[SECRET]'}"),
        ("db_password=hunter2pass; user=app", "db_password=[SECRET]; user=app"),
        ("Server=db;Uid=sa;Pwd=s3cr3t!x;", "Server=db;Uid=sa;Pwd=[SECRET];"),
        ("authorization: bearer abc123def456ghi", "authorization: bearer [SECRET]"),
        ('{"clientSecret": "abc123def456"} as text', '{"clientSecret": "[SECRET]"} as text'),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- ok",
            "[SECRET] ok",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA", "[SECRET]"),
        # Cookies: a session, however few digits it has, and every pair of the header
        ("sent Cookie: session=abcdefghijkl; theme=dark", "sent Cookie: [SECRET]"),
        ("Set-Cookie: sid=abc123def456ghi; Path=/; HttpOnly\nVary: x", "Set-Cookie: [SECRET]\nVary: x"),
        ('headers: {"cookie": "sid=abcdefghij"}, "x"', 'headers: {"cookie": "[SECRET]"}, "x"'),
        # JSON quoted inside JSON text: an error message echoing a request body, escaped
        ('body: {\\"api_key\\": \\"abcd1234efgh5678ijkl\\"}', 'body: {\\"api_key\\": \\"[SECRET]\\"}'),
        ('"{\\"password\\":\\"hunter2-pass\\",\\"n\\":1}"', '"{\\"password\\":\\"[SECRET]\\",\\"n\\":1}"'),
        # A quoted value after a quoted name is a string, digits or not
        ('body {"password": "correct horse", "n": 1}', 'body {"password": "[SECRET]", "n": 1}'),
        (
            "{'api_key': 'abcdefghij'} and {\\\"secret\\\": \\\"opensesame\\\"}",
            "{'api_key': '[SECRET]'} and {\\\"secret\\\": \\\"[SECRET]\\\"}",
        ),
    ],
)
def test_secret_named_keys_and_private_keys_in_text(text: str, expected: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == expected
    assert _walker().value({"u": text}) == {"u": expected}


@pytest.mark.parametrize(
    "text",
    [
        # Code and prose that name a secret without holding one: no digit in the value, or brackets.
        "def f(api_key: str = None, password: Optional[str] = None) -> None:",
        'client = OpenAI(api_key=os.environ["OPENAI_API_KEY"], secret=settings.SECRET)',
        "max_tokens=256, input_tokens: 120, token_count=17; sort key: date",
        "Password: at least 8 characters; Hotkey: Ctrl+S; Turkey: 12 lbs",
        "-----BEGIN PUBLIC KEY-----",
    ],
)
def test_secret_names_without_secrets_stay_readable(text: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == text


def test_strings_in_sets_in_metadata_are_redacted(
    provider: FakeProvider, receiver: Receiver, make_callback: Any
) -> None:
    # A set reaches the record as the caller's metadata holds it, and is sent as a JSON list.
    callback = make_callback(processors=[redact()])
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        metadata={"to": {"ann@example.com"}, "cc": frozenset({"+1 415 555 2671"}), "n": {7}},
        api_base=provider.url,
        api_key=KEY,
    )
    assert receiver.wait_for(1, timeout=15) and callback.flush(timeout=10)
    (record,) = receiver.records
    meta = record["metadata"]
    assert (meta["to"], meta["cc"], meta["n"]) == (["[EMAIL]"], ["[PHONE]"], [7])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://x.io/u?email=jane.doe%40example.com&a=1", "GET https://x.io/u?email=[EMAIL]&a=1"),
        ("to=jane%2Bnews%40mail.example.co.uk", "to=[EMAIL]"),
        ("from Sean O'Neil <sean.o'neil@example.ie>", "from Sean O'Neil <[EMAIL]>"),
        ("email='jane@x.io', name='Jane'", "email='[EMAIL]', name='Jane'"),
        ("discount 100%40 off, 50%40x", "discount 100%40 off, 50%40x"),
        # Image files for high-density screens are named like addresses
        ('<img src="logo@2x.png" srcset="bg@1.5x.webp">', '<img src="logo@2x.png" srcset="bg@1.5x.webp">'),
        # Letters beyond ASCII, in the name or the domain (IDN)
        ("José: josé.garcía@correo.es, müller@bücher.de", "José: [EMAIL], [EMAIL]"),
        ("пишите иван@пример.рф", "пишите [EMAIL]"),
        ("我的邮箱是wang@example.cn", "我的邮箱是[EMAIL]"),  # no space before it: the words stay
        # Only the `git` user of an SSH remote stays: a person's login on a host, or an address, does not
        (
            "scp jane@host.example.com:/home/jane; mail git@corp.io: ok",
            "scp [EMAIL]:/home/jane; mail [EMAIL]: ok",
        ),
    ],
)
def test_emails_url_encoded_or_with_an_apostrophe(text: str, expected: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == expected
    assert _walker().value({"u": text}) == {"u": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Groups longer than 4 digits after a country code or a trunk "0"
        ("Ruf an: +49 30 1234567.", "Ruf an: [PHONE]."),
        ("Tel. 030 1234567 oder 0049 30 1234567", "Tel. [PHONE] oder [PHONE]"),
        ("+49 (0)30 1234567", "[PHONE]"),
        ("mobile 07700 900123, office (089) 1234567", "mobile [PHONE], office [PHONE]"),
        ("WhatsApp +91 98765 43210", "WhatsApp [PHONE]"),
        # The trunk "0" in brackets before a one-digit area code: the whole number, not its tail
        ("appelez le +33 (0)1 23 45 67 89", "appelez le [PHONE]"),
        ("01 23 45 67 89 / 01.23.45.67.89", "[PHONE] / [PHONE]"),
        # The country code apart, the national number in one run: how most mobiles are written
        ("WhatsApp +91 9876543210 or 0091 9876543210", "WhatsApp [PHONE] or [PHONE]"),
        ("call +44 7911123456, +1-4155552671, +44(0)2079460958", "call [PHONE], [PHONE], [PHONE]"),
        # A mobile's five-digit first group after a bracketed area code (Brazil)
        ("celular (11) 91234-5678 ou (11) 912345678", "celular [PHONE] ou [PHONE]"),
        # Two numbers after one another are two phones, not a row of numbers
        ("01 23 45 67 89 01 98 76 54 32", "[PHONE] [PHONE]"),
        # A phone followed or preceded by a figure is still a phone (a row is of one- or two-digit cells)
        (
            "call 415 555 2671 5 days a week, 415-555-2671 2 times, or room 3 415 555 2672",
            "call [PHONE] 5 days a week, [PHONE] 2 times, or room [PHONE]",
        ),
    ],
)
def test_phone_numbers_in_national_and_international_forms(text: str, expected: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == expected
    assert _walker().value({"u": text}) == {"u": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Grouped with the no-break spaces (U+00A0, U+202F) and thin space (U+2009) that word processors
        # and French or German typography put between digit groups.
        ("card 4111\u00a01111\u00a01111\u00a01111 exp", "card [CARD] exp"),
        ("card 4111\u20091111\u20091111\u20091111", "card [CARD]"),
        ("tél. +33\u00a01\u00a023\u00a045\u00a067\u00a089", "tél. [PHONE]"),
        ("Tel. +49\u202f30\u202f1234567", "Tel. [PHONE]"),
        ("IBAN DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000.", "IBAN [IBAN]."),
        ("IBAN GB29\u00a0NWBK\u00a06016\u00a01331\u00a09268\u00a019", "IBAN [IBAN]"),
        # Dashes other than "-": the non-breaking hyphen (U+2011) models write, the en dash (U+2013)
        ("call +1\u2011415\u2011555\u20112671 or (415) 555\u20112671", "call [PHONE] or [PHONE]"),
        ("card 4111\u20131111\u20131111\u20131111", "card [CARD]"),
        # ... and amounts, timestamps, dates and ranges of years written that way stay
        ("total 1\u202f234\u202f567,89\u00a0€ le 01.05.2024\u00a010:30", None),
        ("from 2024\u201105\u201101 over 2019\u20132023", None),
    ],
)
def test_numbers_grouped_with_no_break_spaces_or_other_dashes(text: str, expected: str | None) -> None:
    out = redact()({"error": {"message": text}})["error"]["message"]
    assert out == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The expiry date or security code right after the number, as people write their card down
        ("card 4111 1111 1111 1111 123", "card [CARD] 123"),
        ("card 4111 1111 1111 1111 12/25 cvv 123", "card [CARD] 12/25 cvv 123"),
        ("4111-1111-1111-1111 05 27", "[CARD] 05 27"),
        ("4111111111111111 123", "[CARD] 123"),
        ("amex 3782 822463 10005 1234", "amex [CARD] 1234"),
        # ... or a quantity before it
        ("order 12 4111 1111 1111 1111", "order 12 [CARD]"),
        # ... before a card printed in three groups, which raised IndexError: the record was dropped
        ("order 12 3782 822463 10005", "order 12 [CARD]"),
    ],
)
def test_a_card_number_next_to_other_numbers(text: str, expected: str) -> None:
    assert redact()({"error": {"message": text}})["error"]["message"] == expected


def test_putting_changed_strings_back_copies_only_their_containers() -> None:
    # The joined scan puts the changed strings back with a walk of its own (no secret-named key,
    # nothing deep): it must copy what the general walk copies and nothing else.
    inner = json.dumps({"note": "mail bob@corp.io", "n": 1})
    system = {"role": "system", "content": "You are helpful."}
    user = {"role": "user", "content": "call +1 415 555 2671", "extra": ("a tuple", "bob@corp.io")}
    tool = {"role": "tool", "content": json.dumps({"payload": inner, "ok": True})}
    params = {"temperature": 0.2, "stop": ("END",)}
    record = {"request": {"messages": [system, user, tool], "parameters": params}, "metadata": {"t": "x"}}
    before = copy.deepcopy(record)
    original = record["request"]
    out = redact()(dict(record))
    assert record == before and record["request"] is original  # the input was not changed
    messages = out["request"]["messages"]
    assert messages[0] is system and out["request"]["parameters"] is params
    assert out["metadata"] is record["metadata"]
    assert messages[1] == {"role": "user", "content": "call [PHONE]", "extra": ["a tuple", "[EMAIL]"]}
    assert json.loads(json.loads(messages[2]["content"])["payload"]) == {"note": "mail [EMAIL]", "n": 1}
    # The same as the general walk, string by string.
    assert out["request"] == _walker().value(before["request"])


def test_an_address_after_a_git_remote_is_redacted() -> None:
    red = redact()
    # A Git remote's `git@host` stays; an address after it with no space between stayed too.
    out = red({"metadata": {"a": "clone git@github.com:org/repo.git,jane@corp.io"}})
    assert out["metadata"]["a"] == "clone git@github.com:org/repo.git,[EMAIL]"
    # The strings of a record are scanned joined: a remote in one string hid the address starting the
    # next, which was then remembered as clean, so later records kept it as well.
    out = red({"metadata": ["see git@github.com:org/repo.git::1\n", "josé@bücher.de"]})
    assert out["metadata"] == ["see git@github.com:org/repo.git::1\n", "[EMAIL]"]
    assert red({"metadata": ["josé@bücher.de"]})["metadata"] == ["[EMAIL]"]


# Spans as the number scan finds them: a digit, "+" or "(" first, then digits, gaps, dots, dashes and
# brackets; runs of digits of every length, so that order numbers, amounts and phones all come up.
_SPAN_PIECES = [*"0123456789+().- \u00a0\u2011", "00", "1234", "55501", "2024"]
spans = st.builds(
    lambda first, rest: first + "".join(rest),
    st.sampled_from([*"0123456789+("]),
    st.lists(st.sampled_from(_SPAN_PIECES), max_size=10),
)


@settings(max_examples=3000, deadline=None)
@given(spans)
def test_numbers_let_go_without_the_span_checks_are_kept_by_them(text: str) -> None:
    # The number scan lets order and ticket numbers and amounts go after one match, without `_span`'s
    # checks: only spans those checks keep as they are may be let go so.
    from litelens.redaction import text as engine

    if engine._PLAIN_NUMBER.fullmatch(text) is not None:
        assert TextRedactor(frozenset(pl.KINDS), [], "[{kind}]")._span(text) is text


def test_order_and_ticket_numbers_and_amounts_cost_no_span_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # One in every prompt about an order: each new one cost a `_span` call (a date, a phone, a card and
    # an address check) ten times the price of telling it apart, for nothing to redact.
    red = TextRedactor(frozenset(pl.KINDS), [], "[{kind}]")
    checked: list[str] = []
    real = red._in_span
    monkeypatch.setattr(red, "_in_span", lambda text: checked.append(text) or real(text))
    text = "order 2024-334083 of 2024-05-03, $1,252.50, ticket 13528. ref A-163301824 or 12\u00a0345678."
    assert red.scan(text) == text
    assert checked == ["2024-05-03"]  # the date only, which `_span` tells from a phone
    assert red.scan("call 020 7946 0958 or 2024-334083") == "call [PHONE] or 2024-334083"
