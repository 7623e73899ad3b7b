"""The store, against real SQLite files and a real throwaway PostgreSQL: what the server and its users
rely on — nothing acknowledged is lost, a call counts once, filters and pages return the right rows,
and charts agree with the raw data."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litelens.record import from_standard_logging
from litelens.server.store import CallFilter, InvalidCursor, Store, merge_records, open_store
from litelens.server.store.base import AGGREGATE_GROUPS, WriteBatch
from litelens.server.store.rollup import PERCENTILE_RELATIVE_ERROR, bin_of, model_name
from litelens.server.store.sql import MAX_EXPORT_SNAPSHOTS, SQLStore
from litelens.server.store.sqlite import SQLiteStore

T0 = 1_790_000_000.0  # a fixed epoch (2026-09-21), so buckets are deterministic
TRACE = "a" * 32


@pytest.fixture
def store_url(db_url: str) -> str:
    """The shared `db_url` fixture (conftest): a fresh SQLite file, or a new PostgreSQL database."""
    return db_url


@pytest.fixture
def store(store_url: str) -> Iterator[SQLStore]:
    s = open_store(store_url)
    assert isinstance(s, SQLStore)
    s.migrate()
    yield s
    s.close()


def slo(call_id: str, start: float, **over: Any) -> dict[str, Any]:
    """A hand-made `standard_logging_object` as LiteLLM builds it for a chat completion."""
    duration = over.pop("duration", 0.8)
    stream = over.pop("stream", False)
    model = over.pop("model", "gpt-4o-mini")
    payload: dict[str, Any] = {
        "id": call_id,
        "litellm_call_id": call_id,
        "call_type": "acompletion",
        "stream": stream,
        "startTime": start,
        "endTime": start + duration,
        "completionStartTime": start + duration / 4 if stream else start + duration,
        "model": model,
        "custom_llm_provider": over.pop("provider", "openai"),
        "prompt_tokens": over.pop("prompt_tokens", 12),
        "completion_tokens": over.pop("completion_tokens", 7),
        "total_tokens": None,
        "response_cost": over.pop("cost", 0.00042),
        "status": "success",
        "messages": [{"role": "user", "content": over.pop("prompt", "Say hello to the lighthouse keeper")}],
        "model_parameters": {"temperature": 0.2, "user": over.pop("end_user", "enduser-1")},
        "request_tags": over.pop("tags", ["prod"]),
        "metadata": {},
        "trace_id": over.pop("trace", TRACE),
        "response": {
            "id": f"chatcmpl-{call_id}",
            "model": f"{model}-2024-07-18",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        },
    }
    error = over.pop("error", None)
    if error:
        payload["status"] = "failure"
        payload["error_information"] = {
            "error_class": error,
            "error_code": "429",
            "error_message": "slow down",
        }
    payload.update(over)
    return payload


def make(
    call_id: str, start: float, *, metadata: dict[str, Any] | None = None, **over: Any
) -> dict[str, Any]:
    session = over.pop("session", None)
    user_meta = {"user_id": over.pop("user_id", "u-1"), **(metadata or {})}
    return from_standard_logging(slo(call_id, start, **over), user_metadata=user_meta, session_id=session)


def plain(call_id: str, start: float, duration_ms: float = 100.0, **over: Any) -> dict[str, Any]:
    """A small schema-conforming record for volume tests."""
    usage = over.pop("usage", {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
    record = {
        "schema": "litelens.call/1",
        "call_id": call_id,
        "trace_id": None,
        "call_type": "chat",
        "stream": False,
        "start_time": start,
        "end_time": start + duration_ms / 1000,
        "duration_ms": duration_ms,
        "ttft_ms": None,
        "usage": usage,
        "cost_usd": 0.001,
        "status": "ok",
        "tags": [],
        "metadata": {},
        "request_model": "m",
    }
    record.update(over)
    return record


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["call_id"] for r in rows}


def all_calls(
    store: Store, project: int, filters: CallFilter | None = None, **kw: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        rows, cursor = store.list_calls(project, filters, limit=7, cursor=cursor, **kw)
        out += rows
        if cursor is None:
            return out


# --------------------------------------------------------------------------------------------------


def test_round_trip_keeps_the_whole_record_and_summarizes_without_content(store: SQLStore) -> None:
    project = store.create_project("default")
    record = make("call-1", T0, stream=True, session="s-1", metadata={"feature": "faq"})
    failed = make("call-2", T0 + 5, error="RateLimitError")
    nul = make("call-nul", T0 - 5, prompt="a NUL \x00 from a binary paste")
    store.write(project, [record, failed, nul], [])
    stored_nul = store.get_call(project, "call-nul")
    assert (
        stored_nul is not None
        and stored_nul["request"]["messages"][0]["content"] == "a NUL  from a binary paste"
    )

    assert store.get_call(project, "call-1") == json.loads(json.dumps(record))
    assert store.get_call(project, "nope") is None
    rows, cursor = store.list_calls(project)
    assert cursor is None
    assert [r["call_id"] for r in rows] == ["call-2", "call-1", "call-nul"]
    first = rows[1]
    assert first["stream"] is True and first["ttft_ms"] == pytest.approx(200.0)
    assert first["request_model"] == "gpt-4o-mini" and first["response_model"] == "gpt-4o-mini-2024-07-18"
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (12, 7, 19)
    assert first["cost_usd"] == pytest.approx(0.00042) and first["tags"] == ["prod"]
    assert (
        first["session_id"] == "s-1" and first["trace_id"] == TRACE and first["span_id"] == record["span_id"]
    )
    assert "request" not in first and "record" not in first
    assert rows[0]["status"] == "error" and rows[0]["error_type"] == "RateLimitError"


def test_a_call_reads_back_with_its_fields_in_the_order_sent_on_every_store(store: SQLStore) -> None:
    # PostgreSQL's jsonb sorted the keys (shortest first), so the call page and the API showed a
    # record's fields and metadata in another order than sent, and than SQLite did.
    project = store.create_project("default")
    record = make("ordered", T0, metadata={"zeta": 1, "alpha": {"later": 2, "b": 3}, "mid": 4})
    record = {"zz_first": True, **record}
    store.write(project, [record, make("merged", T0, metadata={"zeta": 1, "a": 2})], [])
    store.write(project, [make("merged", T0, metadata={"zeta": 1, "a": 2}, session="s-late")], [])
    stored = store.get_call(project, "ordered")
    assert stored is not None and list(stored) == list(record)
    assert list(stored["metadata"]) == ["zeta", "alpha", "mid"]
    assert list(stored["metadata"]["alpha"]) == ["later", "b"]
    again = store.get_call(project, "merged")  # rewritten by a merge, in the same order
    assert again is not None and list(again["metadata"]) == ["zeta", "a"]
    [exported] = [r for r in store.export(project) if r["call_id"] == "ordered"]
    assert list(exported) == list(record)


def test_projects_and_keys(store: SQLStore) -> None:
    a = store.create_project("alpha")
    assert store.create_project("alpha") == a
    b = store.create_project("beta")
    assert a != b
    assert store.get_project("alpha") == {
        "id": a,
        "name": "alpha",
        "created": pytest.approx(time.time(), abs=60),
    }
    assert store.get_project("gamma") is None
    store.add_key(a, "hash-a", "ll_ab")
    store.add_key(b, "hash-b", "ll_cd")
    assert store.project_for_key_hash("hash-a") == a
    assert store.project_for_key_hash("hash-b") == b
    assert store.project_for_key_hash("unknown") is None
    keys = store.list_keys(a)
    assert [k["prefix"] for k in keys] == ["ll_ab"] and keys[0]["last_used"] is not None
    assert store.revoke_key("hash-a") is True
    assert store.revoke_key("hash-a") is False
    assert store.project_for_key_hash("hash-a") is None


def test_a_call_seen_twice_is_stored_once_with_the_richer_fields(store: SQLStore) -> None:
    project = store.create_project("default")
    core = make("dup", T0, tags=["core"])
    core["parent_span_id"] = None
    # The same call as the OTel layer reports it: no content, no usage numbers, but a parent span.
    otel = {
        **plain("dup", T0, duration_ms=core["duration_ms"]),
        "trace_id": core["trace_id"],
        "parent_span_id": "b" * 16,
        "request_model": "gpt-4o-mini",
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        "cost_usd": None,
        "tags": ["otel"],
        "request": None,
        "response": None,
    }
    store.write(project, [core], [])
    store.write(project, [core], [])  # a retried batch
    store.write(project, [otel], [])

    rows, _ = store.list_calls(project)
    assert len(rows) == 1
    merged = store.get_call(project, "dup")
    assert merged is not None
    assert merged["parent_span_id"] == "b" * 16
    assert merged["request"]["messages"][0]["content"] == "Say hello to the lighthouse keeper"
    assert merged["response"]["choices"][0]["message"]["content"] == "Hello!"
    assert merged["usage"]["input_tokens"] == 12 and merged["cost_usd"] == pytest.approx(0.00042)
    assert sorted(merged["tags"]) == ["core", "otel"]
    assert sorted(rows[0]["tags"]) == ["core", "otel"]
    assert rows[0]["parent_span_id"] == "b" * 16 and rows[0]["input_tokens"] == 12
    [agg] = store.aggregate(project, T0 - 60, T0 + 60, 60)
    assert agg["count"] == 1 and agg["tokens_in"] == 12
    by_tag = {r["group"]: r["count"] for r in store.aggregate(project, T0 - 60, T0 + 60, 60, "tag")}
    assert by_tag == {"core": 1, "otel": 1}


def test_merge_rules() -> None:
    old = {"a": 1, "b": None, "nested": {"x": 1, "y": "keep"}, "tags": ["t1"], "usage": {"input_tokens": 5}}
    new = {
        "a": 2,
        "b": "set",
        "nested": {"x": None, "z": 3},
        "tags": ["t2", "t1"],
        "usage": {"input_tokens": 0},
    }
    assert merge_records(old, new) == {
        "a": 2,
        "b": "set",
        "nested": {"x": 1, "y": "keep", "z": 3},
        "tags": ["t1", "t2"],
        "usage": {"input_tokens": 5},
    }


def test_every_filter_narrows_to_the_right_rows(store: SQLStore) -> None:
    project = store.create_project("default")
    other = store.create_project("other")
    records = [
        make("r0", T0 + 0, model="gpt-4o", provider="openai", tags=["a"], session="s1", user_id="u1"),
        make("r1", T0 + 10, model="claude-3", provider="anthropic", tags=["b"], end_user="eu2", session="s1"),
        make("r2", T0 + 20, model="gpt-4o", error="RateLimitError", tags=["a", "b"], trace="c" * 32),
        make(
            "r3", T0 + 30, model="mistral", provider="mistral", metadata={"feature": "search"}, user_id="u3"
        ),
        make("r4", T0 + 40, model="gpt-4o", prompt="Where is the Zanzibar archipelago?", tags=[]),
        make(
            "r5",
            T0 + 50,
            model="claude-3",
            provider="anthropic",
            error="APIError",
            metadata={"feature": "faq"},
        ),
    ]
    records[5]["proxy"] = {"key_alias": "team-red"}
    store.write(project, records, [])
    store.write(other, [make("x0", T0 + 5, model="gpt-4o")], [])

    cases: list[tuple[CallFilter, set[str]]] = [
        (CallFilter(), {"r0", "r1", "r2", "r3", "r4", "r5"}),
        (CallFilter(start=T0 + 10, end=T0 + 40), {"r1", "r2", "r3"}),
        (CallFilter(model="gpt-4o"), {"r0", "r2", "r4"}),
        (CallFilter(model="claude-3-2024-07-18"), {"r1", "r5"}),  # the response model matches too
        (CallFilter(provider="anthropic"), {"r1", "r5"}),
        (CallFilter(status="error"), {"r2", "r5"}),
        (CallFilter(error_type="APIError"), {"r5"}),
        (CallFilter(end_user="eu2"), {"r1"}),
        (CallFilter(user_id="u3"), {"r3"}),
        (CallFilter(session_id="s1"), {"r0", "r1"}),
        (CallFilter(trace_id="c" * 32), {"r2"}),
        (CallFilter(tag="b"), {"r1", "r2"}),
        (CallFilter(metadata={"feature": "faq"}), {"r5"}),
        (CallFilter(search="zanzibar"), {"r4"}),
        (CallFilter(search="100%_"), set()),  # LIKE wildcards are literal
        (CallFilter(key_alias="team-red"), {"r5"}),
        (CallFilter(call_type="chat", provider="openai", tag="a"), {"r0", "r2"}),
    ]
    for filters, expected in cases:
        assert ids(all_calls(store, project, filters)) == expected, filters


@pytest.mark.parametrize("sort", ["start_time", "duration_ms", "total_tokens", "cost_usd"])
def test_pages_visit_every_row_once_while_calls_arrive(store: SQLStore, sort: str) -> None:
    project = store.create_project("default")
    rng = random.Random(7)

    def batch(prefix: str, n: int) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            tokens = rng.choice([10, 20, 30])  # many ties: the call id must break them
            out.append(
                plain(
                    f"{prefix}{i:04d}",
                    T0 + rng.randrange(0, 600),
                    duration_ms=float(rng.choice([50, 100, 150])),
                    usage={"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
                    cost_usd=rng.choice([None, 0.5, 1.0]),
                )
            )
        return out

    before = batch("old", 240)
    store.write(project, before, [])
    stop = threading.Event()

    def arrive() -> None:
        n = 0
        while not stop.is_set() and n < 40:
            store.write(project, batch(f"new{n}-", 10), [])
            n += 1

    writer = threading.Thread(target=arrive)
    writer.start()
    try:
        seen: list[str] = []
        values: list[float] = []
        cursor = None
        while True:
            rows, cursor = store.list_calls(project, limit=13, cursor=cursor, sort=sort)  # type: ignore[arg-type]
            seen += [r["call_id"] for r in rows]
            values += [r[sort] or 0 for r in rows]
            time.sleep(0.001)
            if cursor is None:
                break
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a row was visited twice"
    assert ids(before) <= set(seen), "a row that existed before paging began was skipped"
    assert values == sorted(values, reverse=True)
    with pytest.raises(InvalidCursor):
        store.list_calls(project, cursor="garbage!")


@pytest.mark.parametrize("descending", [False, True])
def test_sorted_by_cost_the_calls_without_a_price_come_last_and_pages_stay_exact(
    store: SQLStore, descending: bool
) -> None:
    """A user sorting by cost upwards wants the cheapest priced calls first; the calls LiteLLM could not
    price read as $0 and came first. They now come after the priced ones in both directions (a free
    call, $0 priced, is not one of them), and pages walk across the boundary without a skip or a repeat."""
    project = store.create_project("default")
    rng = random.Random(12)
    records = [
        plain(f"cost{i:03d}", T0 + i, cost_usd=rng.choice([None, None, 0.0, 0.002, 0.002, 0.01]))
        for i in range(60)
    ]
    store.write(project, records, [])
    priced = sorted(
        (r for r in records if r["cost_usd"] is not None),
        key=lambda r: (r["cost_usd"], r["call_id"]),
        reverse=descending,
    )
    unknown = sorted((r["call_id"] for r in records if r["cost_usd"] is None), reverse=descending)
    want = [r["call_id"] for r in priced] + unknown
    for page_size in (1, 4, 7, len(priced), 100):
        seen: list[str] = []
        cursor = None
        while True:
            rows, cursor = store.list_calls(
                project, limit=page_size, cursor=cursor, sort="cost_usd", descending=descending
            )
            seen += [r["call_id"] for r in rows]
            if cursor is None:
                break
        assert seen == want, page_size
    # Upwards the list starts with the free calls, then the cheapest priced ones.
    first = store.list_calls(project, limit=3, sort="cost_usd", descending=False)[0]
    assert [r["cost_usd"] for r in first] == [0.0, 0.0, 0.0]
    # Filters apply to both parts; the costliest calls are the priced ones.
    rows, _ = store.list_calls(
        project, CallFilter(start=T0 + 50), limit=100, sort="cost_usd", descending=descending
    )
    assert [r["call_id"] for r in rows] == [c for c in want if c >= "cost050"]
    top = store.top_calls(project, T0, T0 + 60, "cost_usd", 3)
    assert [r["cost_usd"] for r in top] == [0.01] * 3


def test_a_page_sorted_by_cost_is_an_index_range_on_sqlite(sqlite_url: str) -> None:
    """Each part of a list sorted by cost (the priced calls, the unknown ones) walks the cost index in
    order rather than sorting the project's calls, in both directions and from any cursor."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    store.migrate()
    project = store.create_project("default")
    store.write(project, [plain(f"e{i}", T0 + i, cost_usd=[None, 0.1][i % 2]) for i in range(20)], [])
    statements: list[str] = []

    def noted(sql: str) -> str:  # every statement the store runs passes through `_q`
        statements.append(sql)
        return sql

    store._q = noted  # type: ignore[method-assign]
    for descending in (False, True):
        cursor = None
        while True:
            _, cursor = store.list_calls(
                project, limit=3, cursor=cursor, sort="cost_usd", descending=descending
            )
            if cursor is None:
                break
    pages = {s for s in statements if "FROM calls c" in s}
    # Upwards and downwards: the priced part from the start and from a cursor, the unknown part after
    # the priced one and from a cursor of its own.
    assert len(pages) == 8, pages
    with store._read() as cur:
        for sql in pages:
            cur.execute("EXPLAIN QUERY PLAN " + sql, [0] * sql.count("?"))
            plan = " / ".join(str(row[-1]) for row in cur.fetchall())
            assert "calls_cost" in plan and "TEMP B-TREE" not in plan, (sql, plan)
    store.close()


def _spread(prefix: str, n: int, span: float, rng: random.Random) -> list[dict[str, Any]]:
    """`n` calls one after the other over `span` seconds from T0, with ties in every sort key, calls of
    unknown cost among them, and two models."""
    out = []
    for i in range(n):
        tokens = rng.choice([10, 20, 30])
        out.append(
            plain(
                f"{prefix}{i:05d}",
                T0 + span * i / n,
                duration_ms=float(rng.choice([50, 100, 150, 200])),
                usage={"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens},
                cost_usd=rng.choice([None, 0.5, 1.0, 2.0]),
                request_model=rng.choice(["ma", "mb"]),
                end_user=rng.choice(["ua", "ub", "uc"]),
            )
        )
    return out


def _write_arriving(store: SQLStore, project: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`records` stored in batches of 100 in time order, but every fifth batch late (a spool emptied
    after an outage): their arrivals follow time but for those. Returns the records with their arrival."""
    batches = [records[i : i + 100] for i in range(0, len(records), 100)]
    for batch in [b for n, b in enumerate(batches) if n % 5 != 1] + batches[1::5]:
        store.write(project, batch, [])
    arrival = {r["call_id"]: r["arrival"] for r in store.list_calls(project, limit=10_000)[0]}
    assert len(arrival) == len(records)
    return [dict(r, arrival=arrival[r["call_id"]]) for r in records]


def _expected_order(records: list[dict[str, Any]], sort: str, descending: bool) -> list[str]:
    """The documented order: by the sort value then the call id, the calls of unknown cost last."""
    if sort == "total_tokens":
        key = {r["call_id"]: r["usage"]["total_tokens"] for r in records}
    else:
        key = {r["call_id"]: r[sort] for r in records}
    known = sorted((c for c in key if key[c] is not None), key=lambda c: (key[c], c), reverse=descending)
    return known + sorted((c for c in key if key[c] is None), reverse=descending)


@pytest.mark.parametrize("sort", ["duration_ms", "total_tokens", "cost_usd", "arrival"])
def test_pages_sorted_by_another_key_within_a_time_range_list_every_call_of_the_range_once_in_order(
    store: SQLStore, sort: str
) -> None:
    """A range of more calls than `_WALK_FROM` is listed by walking the sort key's index and keeping the
    calls that started in the range (or, behind a narrow filter, by reading the range and sorting it): the
    pages list the range's calls (filtered too), in order, ties on the value by call id and unknown costs
    last, none twice and none skipped, in both directions."""
    project = store.create_project("default")
    records = _spread("w", 3000, 3000.0, random.Random(5))
    if sort == "arrival":
        records = _write_arriving(store, project, records)
    else:
        store.write(project, records, [])
    start, end = T0 + 400, T0 + 2900  # 2,500 calls, none at either end of the project's time
    # Walked without a filter and with a model; read and sorted for one user (a filter keeping few calls).
    for filters in (
        CallFilter(start=start, end=end),
        CallFilter(start=start, end=end, model="ma"),
        CallFilter(start=start, end=end, user="ub"),
    ):
        chosen = [
            r
            for r in records
            if start <= r["start_time"] < end
            and (not filters.model or r["request_model"] == filters.model)
            and (not filters.user or r["end_user"] == filters.user)
        ]
        for descending in (True, False):
            seen: list[str] = []
            cursor = None
            while True:
                rows, cursor = store.list_calls(
                    project,
                    filters,
                    limit=97,
                    cursor=cursor,
                    sort=sort,
                    descending=descending,  # type: ignore[arg-type]
                )
                seen += [r["call_id"] for r in rows]
                if cursor is None:
                    break
            assert seen == _expected_order(chosen, sort, descending), (filters, descending)


@pytest.mark.parametrize("sort", ["duration_ms", "total_tokens", "cost_usd", "arrival"])
def test_small_sorted_pages_behind_a_filter_of_many_few_or_no_calls_list_each_call_once_in_order(
    store: SQLStore, sort: str
) -> None:
    """Pages of 10 behind a filter are found by a walk of the sort index that gives up past 20 calls of
    the range per call of the page, then read the range (`_bounded_walk`): a common model fills its pages
    on the walk, a rare one (1 in 50) on some pages and not others, a model of no call never. Whichever
    way each page was found, the pages list the filter's calls of the range once each, in order, on
    every store."""
    project = store.create_project("default")
    rng = random.Random(8)
    records = [
        dict(
            c,
            call_id=f"{rng.getrandbits(64):016x}",
            request_model="rare" if rng.random() < 0.02 else c["request_model"],
        )
        for c in _spread("", 3000, 3000.0, rng)
    ]
    if sort == "arrival":
        records = _write_arriving(store, project, records)
    else:
        store.write(project, records, [])
    start, end = T0 + 200, T0 + 2900
    for model in ("ma", "rare", "none"):
        chosen = [r for r in records if start <= r["start_time"] < end and r["request_model"] == model]
        for descending in (True, False):
            seen: list[str] = []
            cursor = None
            while True:
                rows, cursor = store.list_calls(
                    project,
                    CallFilter(start=start, end=end, model=model),
                    10,
                    cursor,
                    sort,
                    descending,  # type: ignore[arg-type]
                )
                seen += [r["call_id"] for r in rows]
                if cursor is None:
                    break
            assert seen == _expected_order(chosen, sort, descending), (model, descending)


def test_a_page_sorted_by_another_key_within_a_time_range_reads_as_much_at_4x_the_calls_on_sqlite(
    sqlite_url: str,
) -> None:
    """The dashboard's call list sorted by latency, tokens or cost over the last day read every call of
    the day and sorted them: 70-250 ms for a week of 100,000 calls, against under 1 ms sorted by time.
    The first page and a later one now cost about the same whatever the number of calls in the range:
    counted in SQLite's virtual machine steps, not time, at N and 4N calls (the range is half of each)."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    store.migrate()
    rng = random.Random(9)
    small, large = store.create_project("small"), store.create_project("large")
    store.write(small, _spread("s", 5000, 2 * 86400, rng), [])
    for part in range(4):
        store.write(large, _spread(f"l{part}-", 5000, 2 * 86400, rng), [])
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    def cost(project: int, sort: str, descending: bool, pages: int) -> int:
        nonlocal steps
        filters = CallFilter(start=T0 + 86400, end=T0 + 2 * 86400)
        cursor = None
        for _ in range(pages - 1):
            cursor = store.list_calls(project, filters, 50, cursor, sort, descending)[1]  # type: ignore[arg-type]
        store.list_calls(project, filters, 50, cursor, sort, descending)  # type: ignore[arg-type]  # opens a reader
        for conn in store._all_readers:
            conn.set_progress_handler(tick, 100)
        steps = 0
        store.list_calls(project, filters, 50, cursor, sort, descending)  # type: ignore[arg-type]
        for conn in store._all_readers:
            conn.set_progress_handler(None, 0)
        return steps

    for sort in ("duration_ms", "total_tokens", "cost_usd"):
        for descending in (True, False):
            for pages in (1, 4):
                at_n, at_4n = (cost(p, sort, descending, pages) for p in (small, large))
                assert at_4n < 1.5 * at_n, (sort, descending, pages, at_n, at_4n)
    store.close()


def _vm_steps(store: SQLStore, read: Any) -> int:
    """SQLite virtual machine steps (in hundreds) that `read()` takes on the store's reader connections;
    `read` runs once before, so the connection it uses exists."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    read()
    for conn in store._all_readers:
        conn.set_progress_handler(tick, 100)
    try:
        read()
    finally:
        for conn in store._all_readers:
            conn.set_progress_handler(None, 0)
    return steps


def test_a_sorted_page_behind_a_filter_that_keeps_no_call_of_its_range_reads_as_much_at_4x_the_calls_on_sqlite(
    sqlite_url: str,
) -> None:
    """The dashboard's call list of the last day sorted by latency, filtered to a model that made no call
    that day (or few), walked the whole latency index looking for one, reading the row of every call of
    the day on the way, in latency order: 174 ms read and sorted became 388 ms walked for a week of
    100,000 calls. It now costs about what reading the range costs, however many calls the project holds
    outside the range: counted in SQLite's virtual machine steps at N and 4N calls in the project, the
    range holding the same calls (the last 1 and 2 days at 2,500 calls a day)."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    store.migrate()
    rng = random.Random(3)
    projects = {}
    for name, days in (("small", 4), ("large", 16)):
        projects[name] = store.create_project(name)
        for day in range(days):
            # Ids in no relation to time, as LiteLLM's are: the walk meets the range's calls anywhere.
            calls = [
                dict(c, call_id=f"{rng.getrandbits(64):016x}", start_time=c["start_time"] + day * 86400)
                for c in _spread("", 2500, 86400.0, rng)
            ]
            store.write(projects[name], calls, [])
    for sort in ("duration_ms", "cost_usd"):
        for days in (1, 2):
            for model in ("none", "ma"):
                cost = {}
                for name, total in (("small", 4), ("large", 16)):
                    end = T0 + total * 86400
                    filters = CallFilter(start=end - days * 86400, end=end, model=model)
                    read = functools.partial(store.list_calls, projects[name], filters, 50, None, sort)
                    rows, _ = read()
                    assert len(rows) == (0 if model == "none" else 50)
                    cost[name] = _vm_steps(store, read)
                assert cost["large"] < 1.6 * cost["small"], (sort, days, model, cost)
    store.close()


def test_a_page_in_arrival_order_within_a_time_range_reads_as_much_at_4x_the_calls_on_sqlite(
    sqlite_url: str,
) -> None:
    """The dashboard's call list in arrival order ("Arrival" in its sort bar) of the last hour or day,
    behind a model that made no call there, walked the whole arrival index, reading the row of every
    call in the project: 247 ms at 100,000 calls, against 0.4 ms sorted by time. Like the other sorts it
    now walks only a range of many calls, a bounded stretch, and reads the range past that; calls arrive
    about when they start, so upwards the range lies behind every older call and is read too. Counted in
    SQLite's virtual machine steps, each page costs about as much at N and 4N calls in the project, the
    range holding the same calls (the last 1 and 2 days at 2,500 calls a day, stored as they came)."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLiteStore)
    store.migrate()
    projects, stored = _days_of_calls(store, 2500)
    # With statistics, as the writer's `optimize` soon leaves a growing database, SQLite chose the walk.
    store.analyze()
    _arrival_pages_cost_alike(store, projects, stored, 50, functools.partial(_vm_steps, store), 20)
    store.close()


def _days_of_calls(store: SQLStore, per_day: int) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """Two projects of `per_day` calls a day from T0: "small" of 4 days, "large" of 16, each day written in
    batches in time order, as a collector receives them."""
    rng = random.Random(6)
    projects: dict[str, int] = {}
    stored: dict[str, list[dict[str, Any]]] = {}
    for name, days in (("small", 4), ("large", 16)):
        projects[name], stored[name] = store.create_project(name), []
        for day in range(days):
            calls = [
                dict(c, call_id=f"{rng.getrandbits(64):016x}", start_time=c["start_time"] + day * 86400)
                for c in _spread("", per_day, 86400.0, rng)
            ]
            for i in range(0, len(calls), 250):
                store.write(projects[name], calls[i : i + 250], [])
            stored[name] += calls
    return projects, stored


def _arrival_pages_cost_alike(
    store: SQLStore,
    projects: dict[str, int],
    stored: dict[str, list[dict[str, Any]]],
    limit: int,
    cost_of: Callable[[Callable[[], Any]], int],
    slack: int,
) -> None:
    """A first page in arrival order of the last hour, day and 2 days (from a moment on, as the
    dashboard's "last hour" asks), of no model, one model and a model of no call, either way, costs
    about as much in the 16 days' project as in the 4 days' (`cost_of` counts what a read costs)."""
    for hours in (1, 24, 48):
        for model in ("none", "ma", None):
            for descending in (True, False):
                cost = {}
                for name, total in (("small", 4), ("large", 16)):
                    end = T0 + total * 86400
                    filters = CallFilter(start=end - hours * 3600, model=model)
                    read = functools.partial(
                        store.list_calls, projects[name], filters, limit, None, "arrival", descending
                    )
                    chosen = [
                        c
                        for c in stored[name]
                        if c["start_time"] >= end - hours * 3600 and model in (None, c["request_model"])
                    ]
                    rows, _ = read()
                    assert len(rows) == min(limit, len(chosen))
                    cost[name] = cost_of(read)
                assert cost["large"] < 1.5 * cost["small"] + slack, (hours, model, descending, cost)


class _NotingCursor:
    """A store's cursor that notes each statement it runs with its parameters."""

    def __init__(self, cur: Any, ran: list[tuple[str, Any]]) -> None:
        self._cur, self._ran = cur, ran

    def execute(self, sql: str, params: Any = None) -> Any:
        self._ran.append((sql, params))
        return self._cur.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _pg_rows_read(store: SQLStore, read: Any) -> int:
    """The rows and index entries of `calls` that PostgreSQL reads (kept or filtered out) to run the
    statements `read()` runs, by EXPLAIN ANALYZE of each."""
    ran: list[tuple[str, Any]] = []
    real = store._read

    @contextlib.contextmanager
    def noting() -> Iterator[Any]:
        with real() as cur:
            yield _NotingCursor(cur, ran)

    store._read = noting  # type: ignore[method-assign]
    try:
        read()
    finally:
        del store._read
    total = 0

    def count(node: dict[str, Any]) -> None:
        nonlocal total
        if node.get("Relation Name") == "calls" or "calls_" in str(node.get("Index Name", "")):
            taken = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            total += taken * node.get("Actual Loops", 1)
        for child in node.get("Plans", []):
            count(child)

    with real() as cur:
        for sql, params in ran:
            if "FROM calls" in sql:
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                count(cur.fetchone()[0][0]["Plan"])
    return total


@pytest.mark.service
def test_a_page_in_arrival_order_within_a_time_range_reads_as_much_at_4x_the_calls_on_postgres(
    postgres_server: Any,
) -> None:
    """PostgreSQL takes the calls of a range to be spread evenly along the arrival index, which holds no
    start time, so a page of the last day in arrival order walked it past every call before the range
    (upwards) or behind a model of no call (all of them): 141 and 205 ms at 100,000 calls, against
    1-30 ms by time. Counted in rows and index entries read, each page now costs about as much at N and
    4N calls in the project, the range holding the same calls (the last hour, day and 2 days)."""
    store = open_store(postgres_server.create_database())
    assert isinstance(store, SQLStore)
    store.migrate()
    projects, stored = _days_of_calls(store, 1000)
    with store._write() as cur:
        cur.execute("ANALYZE calls")
    _arrival_pages_cost_alike(store, projects, stored, 10, functools.partial(_pg_rows_read, store), 100)
    store.close()


def test_the_overviews_slowest_and_costliest_calls_of_a_quiet_hour_cost_as_much_at_4x_the_calls_on_sqlite(
    sqlite_url: str,
) -> None:
    """The overview's slowest and costliest calls (`top_calls`) walked the latency and cost indexes from
    the top for calls of the range: for an hour with no call or few, the whole index (10 ms per 100,000
    calls in the project, twice per overview). Counted in SQLite's virtual machine steps, the quiet
    hour now costs the same at N and 4N calls in the project, and a busy day still walks."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    store.migrate()
    rng = random.Random(4)
    small, large = store.create_project("small"), store.create_project("large")
    store.write(small, _spread("s", 5000, 2 * 86400, rng), [])
    for part in range(4):
        store.write(large, _spread(f"l{part}-", 5000, 2 * 86400, rng), [])
    quiet = [plain("late", T0 + 3 * 86400 + 60, duration_ms=9000.0, cost_usd=None)]
    store.write(small, quiet, [])
    store.write(large, quiet, [])
    for sort in ("duration_ms", "cost_usd"):
        for lo, hi, expected in (
            (T0 + 3 * 86400, T0 + 3 * 86400 + 3600, ["late"]),  # an hour of one call
            (T0 + 4 * 86400, T0 + 4 * 86400 + 3600, []),  # an hour of none
            (T0 + 86400, T0 + 2 * 86400, None),  # the busy second day
        ):
            cost = {}
            for name, project in (("small", small), ("large", large)):
                read = functools.partial(store.top_calls, project, lo, hi, sort, 5)  # type: ignore[arg-type]
                top = read()
                if expected is not None:
                    assert [r["call_id"] for r in top] == expected
                else:
                    assert len(top) == 5 and all(lo <= r["start_time"] < hi for r in top)
                cost[name] = _vm_steps(store, read)
            assert cost["large"] < 1.5 * cost["small"] + 20, (sort, lo - T0, cost)
    store.close()


def _plans(store: SQLStore, read: Any) -> list[str]:
    """The query plan of every statement on `calls c` that `read()` runs on a SQLite store."""
    statements: list[str] = []

    def noted(sql: str) -> str:  # every statement the store runs passes through `_q`
        statements.append(sql)
        return sql

    store._q = noted  # type: ignore[method-assign]
    try:
        read()
    finally:
        del store._q
    plans = []
    with store._read() as cur:
        for sql in statements:
            if "FROM calls" in sql:
                cur.execute("EXPLAIN QUERY PLAN " + sql, [0] * sql.count("?"))
                plans.append(" / ".join(str(row[-1]) for row in cur.fetchall()))
    return plans


def test_an_analyzed_sqlite_database_keeps_its_plans_after_a_migration_rebuilt_indexes(
    sqlite_url: str,
) -> None:
    """A database analyzed once (by hand, or bench/query.py) had no statistics for the indexes v15 rebuilt
    and statistics for the others: the planner took the cost index for a tiny one, and the calls list of
    a model (no time range) read the whole project through it and sorted it: 0.15 -> 922 ms at 100,000
    calls. The migration analyzes such a database again: the list walks the time index."""
    old = open_store(sqlite_url)
    assert isinstance(old, SQLiteStore)
    old.migrate()
    project = old.create_project("default")
    old.write(project, _spread("a", 3000, 3000.0, random.Random(2)), [])
    # Back to v14, written with this release's write path (which needs the arrivals of v16): the sort
    # indexes as v14 had them.
    with old._write() as cur:
        _back_to_before_arrival(old, cur)
        for index, key in (
            ("calls_duration", "duration_ms"),
            ("calls_tokens", "total_tokens"),
            ("calls_cost", "cost_usd"),
        ):
            cur.execute(f"DROP INDEX {index}")
            cur.execute(f"CREATE INDEX {index} ON calls (project_id, {key}, call_id)")
        cur.execute("DELETE FROM schema_version WHERE version > 14")
    old.analyze()
    old.close()
    store = open_store(sqlite_url)
    assert isinstance(store, SQLiteStore)
    assert store.migrate() == store.latest_version
    for filters in (CallFilter(model="ma"), CallFilter()):
        rows, _ = store.list_calls(project, filters, 50)
        assert len(rows) == 50
        for plan in _plans(store, lambda: store.list_calls(project, filters, 50)):  # noqa: B023
            assert "calls_time" in plan and "TEMP B-TREE" not in plan, (filters, plan)
    store.close()


def test_a_long_running_sqlite_writer_gives_the_planner_statistics(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite plans without statistics until something runs ANALYZE, and the server never did: the
    overview's top errors read every call of the range instead of the index of failed calls (0.1 -> 59
    ms for a day of a 100,000-call week). A writer that has run a while runs `PRAGMA optimize`, which
    analyzes what it wrote; the top errors then read their index."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLiteStore)
    store.migrate()
    project = store.create_project("default")
    calls = _spread("a", 3000, 3000.0, random.Random(2))
    for i, call in enumerate(calls[::30]):
        call.update(status="error", error={"type": f"E{i % 3}", "message": "no"})
    store.write(project, calls[:1500], [])
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 2 * 3600)  # two hours later
    store.write(project, calls[1500:], [])
    monkeypatch.undo()
    errors = store.top_errors(project, T0, T0 + 3000)
    assert sum(e["count"] for e in errors) == 100
    (plan,) = _plans(store, lambda: store.top_errors(project, T0, T0 + 3000))
    assert "calls_errors" in plan, plan
    store.close()


def test_sqlite_ingest_copies_into_the_database_file_once_per_256_mib_of_wal(sqlite_url: str) -> None:
    """Batches go to the WAL; the checkpoint that copies them into the database file waits for 256 MiB
    of it. With SQLite's checkpoint every 64 MiB, a database past a few hundred thousand calls, whose
    every commit rewrites most index pages, copied each of them into the file again after each commit
    (bench/query.py: 79 KiB written per call at 400,000 calls, 55 with 256 MiB)."""
    store = open_store(sqlite_url)
    assert isinstance(store, SQLStore)
    store.migrate()
    project = store.create_project("default")
    path = sqlite_url[len("sqlite://") :]
    content = "".join(random.Random(1).choices("abcdefghij", k=1_000_000))
    for batch in range(5):  # ~100 MiB of WAL in 5 commits of ~20 MiB
        records = [
            plain(f"big-{batch}-{i}", T0 + batch * 100 + i, request={"messages": [{"content": content}]})
            for i in range(20)
        ]
        store.write(project, records, [])
    assert os.path.getsize(path) < 16 * 2**20, "the database file took a checkpoint before 256 MiB of WAL"
    assert os.path.getsize(path + "-wal") > 90 * 2**20
    assert store.get_call(project, "big-4-19") is not None
    store.close()
    # Closing checkpoints what the WAL holds: nothing is lost by waiting.
    again = open_store(sqlite_url)
    assert os.path.getsize(path) > 90 * 2**20
    assert again.get_call(project, "big-0-0") is not None
    again.close()


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_a_model_named_with_and_without_its_provider_prefix_is_one_group(store: SQLStore) -> None:
    """LiteLLM answers `cerebras/llama3.1-8b` for a plain call and `llama3.1-8b` for a stream."""
    project = store.create_project("default")
    store.write(
        project,
        [
            plain("m1", T0, provider="cerebras", response_model="cerebras/llama3.1-8b"),
            plain("m2", T0, provider="cerebras", response_model="llama3.1-8b", stream=True),
            plain("m3", T0, provider="openai", response_model="cerebras/llama3.1-8b"),
        ],
        [],
    )
    groups = {r["group"]: r["count"] for r in store.aggregate(project, T0 - 60, T0 + 60, 60, "model")}
    assert groups == {"llama3.1-8b": 2, "cerebras/llama3.1-8b": 1}


def test_aggregates_are_exact_and_percentiles_within_the_documented_error(store: SQLStore) -> None:
    project = store.create_project("default")
    rng = random.Random(11)
    models = ["gpt-4o", "claude-3", "mistral"]
    records = []
    for i in range(1500):
        model = rng.choice(models)
        stream = rng.random() < 0.5
        duration = rng.lognormvariate(6.0, 0.9) + 5
        records.append(
            plain(
                f"agg{i:05d}",
                T0 + 1800 + rng.uniform(0, 3 * 3600),  # starts mid-hour: mixes minute and hour rollups
                duration_ms=duration,
                request_model=model,
                stream=stream,
                ttft_ms=duration * rng.uniform(0.1, 0.5) if stream else None,
                usage={
                    "input_tokens": rng.randrange(1, 900),
                    "output_tokens": rng.randrange(0, 400),
                    "total_tokens": 0,
                },
                cost_usd=rng.choice([None, rng.uniform(0, 0.01)]),
                status="error" if rng.random() < 0.1 else "ok",
                provider="p-" + model[:3],
                tags=rng.sample(["a", "b", "c"], rng.randrange(0, 3)),
            )
        )
    for i in range(0, len(records), 250):
        store.write(project, records[i : i + 250], [])

    start, end = T0 + 1800 + 37, T0 + 1800 + 3 * 3600 - 61
    start_m, end_m = math.floor(start / 60) * 60, math.ceil(end / 60) * 60
    inside = [r for r in records if start_m <= r["start_time"] < end_m]
    for bucket_seconds, group_by in [(3600, None), (3600, "model"), (900, "provider"), (7200, "tag")]:
        expected: dict[tuple[int, str | None], list[dict[str, Any]]] = defaultdict(list)
        for r in inside:
            slot = int(r["start_time"] // 60 * 60) // bucket_seconds * bucket_seconds
            if group_by is None:
                expected[(slot, None)].append(r)
            elif group_by == "model":
                expected[(slot, r["request_model"])].append(r)
            elif group_by == "provider":
                expected[(slot, r["provider"])].append(r)
            else:
                for tag in r["tags"]:
                    expected[(slot, tag)].append(r)
        got = store.aggregate(project, start, end, bucket_seconds, group_by)  # type: ignore[arg-type]
        assert {(g["bucket"], g["group"]) for g in got} == set(expected)
        for g in got:
            rows = expected[(g["bucket"], g["group"])]
            assert g["count"] == len(rows)
            assert g["errors"] == sum(r["status"] == "error" for r in rows)
            assert g["tokens_in"] == sum(r["usage"]["input_tokens"] for r in rows)
            assert g["tokens_out"] == sum(r["usage"]["output_tokens"] for r in rows)
            # The priced calls' sum; unknown (None), not $0, where no call had a cost.
            priced = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
            assert g["priced_calls"] == len(priced)
            assert g["cost_usd"] == (pytest.approx(sum(priced), abs=1e-9) if priced else None)
            durations = [r["duration_ms"] for r in rows]
            ttfts = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
            checks = [("latency_p50_ms", durations, 0.5), ("latency_p95_ms", durations, 0.95)]
            checks += [
                ("latency_p99_ms", durations, 0.99),
                ("ttft_p50_ms", ttfts, 0.5),
                ("ttft_p95_ms", ttfts, 0.95),
            ]
            for name, values, q in checks:
                if not values:
                    assert g[name] is None
                    continue
                exact = _nearest_rank(values, q)
                assert abs(g[name] - exact) <= PERCENTILE_RELATIVE_ERROR * exact * 1.001, (
                    name,
                    g[name],
                    exact,
                )


WHOLE_RANGE = 3600 * 24 * 365 * 200  # one bucket for the whole range, as the overview's tiles ask


def _percentiles(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        row[f"{name}_ms"] for name in ("latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95")
    )


def test_a_small_selections_percentiles_are_its_calls_exact_nearest_rank_values(store: SQLStore) -> None:
    """Percentiles came from rollup histograms (within ±4.9%) while the dashboard shows exact durations
    beside them: one 250 ms call read as p50/p95/p99 240 ms, below the slowest call's 250 ms, and a p99
    could read above it. A selection small enough to read is ranked from its calls."""
    project = store.create_project("default")
    H0 = math.floor(T0 / 3600) * 3600  # an hour's start: minute buckets start at H0, H0 + 60...
    one = plain(
        "one", H0 + 10, 250.0, stream=True, ttft_ms=120.0, tags=["t"], provider="openai", end_user="ana"
    )
    store.write(project, [one], [])
    selections = [
        store.aggregate(project, H0, H0 + 3600, WHOLE_RANGE),
        store.aggregate(project, H0, H0 + 3600, 60),
        store.aggregate(project, H0, H0 + 3600, 3600, "model"),
        *(store.top_groups(project, H0, H0 + 3600, dim)[0] for dim in ("model", "provider", "user", "tag")),  # type: ignore[arg-type]
    ]
    for rows in selections:
        assert [_percentiles(r) for r in rows] == [(250.0, 250.0, 250.0, 120.0, 120.0)], rows

    # More calls, one of them under a millisecond (the histogram's lowest bin read it as 0.5 ms).
    durations = [12.3, 250.0, 251.0, 980.4, 0.4, 3100.0, 250.5]
    ttfts = [5.0, 90.0, None, 400.0, None, 1500.0, 91.0]
    store.write(
        project,
        [
            plain(f"c{i}", H0 + 70 + i, d, ttft_ms=t, stream=t is not None, tags=["t"], provider="openai")
            for i, (d, t) in enumerate(zip(durations, ttfts, strict=True))
        ],
        [],
    )
    minute = [d for d in durations]
    streams = [t for t in ttfts if t is not None]
    want = (
        _nearest_rank(minute, 0.5),
        _nearest_rank(minute, 0.95),
        _nearest_rank(minute, 0.99),
        _nearest_rank(streams, 0.5),
        _nearest_rank(streams, 0.95),
    )
    [second] = [r for r in store.aggregate(project, H0, H0 + 3600, 60) if r["bucket"] == H0 + 60]
    assert _percentiles(second) == want
    everything = [250.0, *durations]
    [tag] = store.top_groups(project, H0, H0 + 3600, "tag")[0]
    [tiles] = store.aggregate(project, H0, H0 + 3600, WHOLE_RANGE)
    for row in (tag, tiles):
        assert _percentiles(row)[:3] == tuple(_nearest_rank(everything, q) for q in (0.5, 0.95, 0.99))
        assert _percentiles(row)[3:] == tuple(_nearest_rank([120.0, *streams], q) for q in (0.5, 0.95))


def test_a_large_selections_percentiles_stay_inside_its_calls_min_and_max(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the calls an answer may read (`exact.EXACT_MAX_CALLS`, made small here), the rows whose
    estimate comes from their histogram's lowest or highest bin are still read exactly: a minute of
    identical 250 ms calls (one bin) said 240 ms. The others keep the histogram's estimate, which lies
    strictly between their fastest and slowest call."""
    from litelens.server.store import exact

    monkeypatch.setattr(exact, "EXACT_MAX_CALLS", 50)
    project = store.create_project("default")
    H0 = math.floor(T0 / 3600) * 3600
    rng = random.Random(3)
    same = [plain(f"same{i}", H0 + i, 250.0, ttft_ms=80.0, stream=True) for i in range(40)]
    spread = [plain(f"spread{i}", H0 + 60 + i / 6, rng.lognormvariate(6, 1.2)) for i in range(300)]
    store.write(project, same + spread, [])
    rows = store.aggregate(project, H0, H0 + 120, 60)
    assert [r["count"] for r in rows] == [40, 300]
    assert _percentiles(rows[0]) == (250.0, 250.0, 250.0, 80.0, 80.0)
    durations = [r["duration_ms"] for r in spread]
    for name, q in (("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)):
        got, exactly = rows[1][name], _nearest_rank(durations, q)
        assert min(durations) <= got <= max(durations), (name, got)
        assert abs(got - exactly) <= PERCENTILE_RELATIVE_ERROR * exactly * 1.001, (name, got, exactly)


def _low_edge(ms: float) -> float:
    """The lower edge of the rollup histogram's bin that holds `ms`."""
    return math.exp((bin_of(ms) - 1) * math.log(1.1))


def _past_the_bin(prefix: str, start: float, n: int = 350, **over: Any) -> list[dict[str, Any]]:
    """`n` streams of one model whose durations and TTFTs all lie in one histogram bin, just above its
    lower edge, the slowest too: the bin's middle, which the histogram reports, is ~4.8% past the
    slowest call and the latest first token. More calls than an answer reads (`exact.EXACT_MAX_CALLS`)."""
    latency, ttft = _low_edge(1000.0), _low_edge(200.0)
    out = []
    for i in range(n):
        step = 1.001 if i == n // 2 else 1 + 0.0001 * (i % 5)
        out.append(
            plain(
                f"{prefix}{i}",
                start + i * 5,
                latency * step,
                stream=True,
                ttft_ms=ttft * step,
                request_model="edge-model",
                provider="openai",
                tags=["edge"],
                **over,
            )
        )
    return out


def _outside_bounds(rows: list[dict[str, Any]], calls: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """The percentiles of `rows` that lie outside the least and greatest duration (or TTFT) of the
    calls their group counts (`calls`: by group)."""
    out = []
    for row in rows:
        mine = calls[row["group"] or ""]
        for name, field in (("latency", "duration_ms"), ("ttft", "ttft_ms")):
            values = [c[field] for c in mine if c.get(field) is not None]
            for key in [k for k in row if k.startswith(f"{name}_p")]:
                if row[key] is not None and not min(values) <= row[key] <= max(values):
                    out.append((row["group"], key, row[key], min(values), max(values)))
    return out


def test_a_large_groups_percentiles_never_pass_its_slowest_call_nor_its_fastest(store: SQLStore) -> None:
    """Past the calls an answer reads, a percentile is the middle of its histogram bin: 350 calls of
    about 956 ms, the slowest 956.6 ms, read p50/p95/p99 "1.00 s" in the model breakdown. Rollups keep
    each row's least and greatest duration and TTFT, and an estimate is kept between them; a merged
    version that makes calls slower widens them, so the p99 follows it."""
    project = store.create_project("default")
    H0 = math.floor(T0 / 3600) * 3600
    calls = _past_the_bin("e", H0 + 1)
    fast = [
        plain(f"f{i}", H0 + 2 + i * 7, 40.0 + i, request_model="fast-model", provider="openai")
        for i in range(60)
    ]
    store.write(project, calls + fast, [])

    def answers() -> list[list[dict[str, Any]]]:
        return [
            store.top_groups(project, H0, H0 + 3600, "model")[0],
            store.top_groups(project, H0, H0 + 3600, "tag")[0],
            store.aggregate(project, H0, H0 + 3600, 3600, "model"),
            store.aggregate(project, H0, H0 + 3600, 600, "model"),
        ]

    groups = {"edge-model": calls, "fast-model": fast, "edge": calls}
    for rows in answers():
        assert {r["group"] for r in rows} & {"edge-model", "edge"}
        assert _outside_bounds(rows, groups) == [], rows

    # A later version of ten calls (their OTel spans, say) that took ~8% longer, in the same bin: their
    # group's slowest call is now one of them, and its p99 too.
    slower = [
        {**c, "duration_ms": c["duration_ms"] * 1.09, "end_time": c["end_time"] + 0.09} for c in calls[:10]
    ]
    store.write(project, slower, [])
    calls = slower + calls[10:]
    groups = {"edge-model": calls, "fast-model": fast, "edge": calls}
    durations = [c["duration_ms"] for c in calls]
    for rows in answers()[:3]:
        [row] = [r for r in rows if r["group"] in ("edge-model", "edge")]
        exactly = _nearest_rank(durations, 0.99)
        assert abs(row["latency_p99_ms"] - exactly) <= PERCENTILE_RELATIVE_ERROR * exactly, (row, exactly)
        assert _outside_bounds(rows, groups) == [], rows


def test_cancelled_calls_are_counted_apart_from_the_ok_and_the_failed_ones(store: SQLStore) -> None:
    """A stream the caller abandoned got no answer: the aggregates count it as cancelled, so the
    overview does not show it as a successful request, and take it back when the call changes or
    retention deletes it."""
    project = store.create_project("default")
    statuses = ["ok"] * 5 + ["error"] * 2 + ["cancelled"] * 3
    records = [
        plain(f"st{i}", T0 + 10 + i * 50, status=status, request_model="m" if i % 2 else "n", tags=["t"])
        for i, status in enumerate(statuses)
    ]
    store.write(project, records[:4], [])
    store.write(project, records[4:], [])

    def figures(rows: list[dict[str, Any]]) -> list[tuple[Any, int, int, int]]:
        return sorted((r["group"], r["count"], r["errors"], r["cancelled"]) for r in rows)

    start, end = T0, T0 + 3600
    assert figures(store.aggregate(project, start, end, 3600)) == [(None, 10, 2, 3)]
    # Minute and 5-minute rows add up the same way.
    assert sum(r["cancelled"] for r in store.aggregate(project, start, end, 60)) == 3
    assert sum(r["cancelled"] for r in store.aggregate(project, start + 30, end, 300)) == 3
    by_model = {"m": [statuses[i] for i in range(1, 10, 2)], "n": [statuses[i] for i in range(0, 10, 2)]}
    want = [(m, len(v), v.count("error"), v.count("cancelled")) for m, v in sorted(by_model.items())]
    assert figures(store.aggregate(project, start, end, 3600, "model")) == want
    assert figures(store.top_groups(project, start, end, "model")[0]) == want
    assert figures(store.top_groups(project, start, end, "tag")[0]) == [("t", 10, 2, 3)]
    # A cancelled call reported again as finished counts as ok once, no longer as cancelled.
    store.write(project, [{**records[7], "status": "ok"}], [])
    assert figures(store.aggregate(project, start, end, 3600)) == [(None, 10, 2, 2)]
    # Retention takes the deleted calls out: of the cancelled ones, st9 (at T0 + 460) remains.
    store.delete_older_than(T0 + 10 + 9 * 50)
    assert figures(store.aggregate(project, start, end, 3600)) == [(None, 1, 0, 1)]


def test_rollups_count_an_upserted_call_once(store: SQLStore) -> None:
    project = store.create_project("default")
    first = [plain(f"u{i}", T0 + i, duration_ms=100.0, request_model="m1", tags=["x"]) for i in range(20)]
    store.write(project, first, [])
    store.write(project, first, [])
    # Later versions change what the rollups see: another model, tokens, status, even the start minute.
    later = [
        plain(
            f"u{i}",
            T0 + i + (120 if i % 2 else 0),
            duration_ms=400.0,
            response_model="m2",
            usage={"input_tokens": 100, "output_tokens": 50, "total_tokens": 150},
            status="error",
            tags=["y"],
        )
        for i in range(10)
    ]
    store.write(project, later, [])
    finals = {r["call_id"]: r for r in first}
    for r in later:
        finals[r["call_id"]] = merge_records(finals[r["call_id"]], r)

    [total] = store.aggregate(project, T0 - 3600, T0 + 3600, 7200)
    assert total["count"] == 20
    assert total["errors"] == 10
    assert total["tokens_in"] == sum(r["usage"]["input_tokens"] for r in finals.values())
    assert total["cost_usd"] == pytest.approx(20 * 0.001)
    by_model = {g["group"]: g["count"] for g in store.aggregate(project, T0 - 3600, T0 + 3600, 7200, "model")}
    assert by_model == {"m1": 10, "m2": 10}
    by_tag = {g["group"]: g["count"] for g in store.aggregate(project, T0 - 3600, T0 + 3600, 7200, "tag")}
    assert by_tag == {"x": 20, "y": 10}
    per_minute = {g["bucket"]: g["count"] for g in store.aggregate(project, T0 - 3600, T0 + 3600, 60)}
    expected: dict[int, int] = defaultdict(int)
    for r in finals.values():
        expected[int(r["start_time"] // 60 * 60)] += 1
    assert per_minute == expected


def test_a_batch_mixing_new_and_stored_calls_keeps_rollups_and_sessions_exact(store: SQLStore) -> None:
    """New calls take additive session/rollup upserts, stored ones the merge path; in one batch, across
    batches, with histograms merged into rows that already exist."""
    project = store.create_project("default")
    first = [plain(f"m{i}", T0 + i, duration_ms=10.0 * (i + 1), session_id=f"s{i % 2}") for i in range(20)]
    store.write(project, first[:10], [])
    store.write(project, first[10:15], [])
    # Five stored calls come back changed (status, tokens, session), next to five new ones.
    changed = [
        plain(
            f"m{i}",
            T0 + i,
            duration_ms=10.0 * (i + 1),
            session_id="s9",
            status="error",
            usage={"input_tokens": 100, "output_tokens": 1, "total_tokens": 101},
        )
        for i in range(5)
    ]
    store.write(project, changed + first[15:], [])
    finals = {r["call_id"]: r for r in first}
    for r in changed:
        finals[r["call_id"]] = merge_records(finals[r["call_id"]], r)

    [total] = store.aggregate(project, T0 - 3600, T0 + 3600, 7200)
    assert total["count"] == 20 and total["errors"] == 5
    assert total["tokens_in"] == sum(r["usage"]["input_tokens"] for r in finals.values())
    assert total["latency_p50_ms"] == pytest.approx(
        _nearest_rank([r["duration_ms"] for r in finals.values()], 0.5), rel=PERCENTILE_RELATIVE_ERROR
    )
    per_minute = {g["bucket"]: g["count"] for g in store.aggregate(project, T0 - 3600, T0 + 3600, 60)}
    expected: dict[int, int] = defaultdict(int)
    for r in finals.values():
        expected[int(r["start_time"] // 60 * 60)] += 1
    assert per_minute == expected
    sessions = {s["session_id"]: s for s in store.list_sessions(project, T0 - 10, T0 + 100, limit=10)[0]}
    assert {sid: s["calls"] for sid, s in sessions.items()} == {"s0": 7, "s1": 8, "s9": 5}
    assert sessions["s9"]["errors"] == 5 and sessions["s9"]["tokens"] == 5 * 101
    assert sessions["s0"]["first_time"] == T0 + 6 and sessions["s1"]["first_time"] == T0 + 5


def test_prepared_batches_written_together_equal_the_same_batches_written_one_by_one(store: SQLStore) -> None:
    """The server prepares each request's batch in its own thread and commits several in one transaction
    (`prepare_write`, `write_prepared`): calls shared between those batches, or already stored, must
    count once, and a prepared batch written a second time (a retry after a failed transaction) must
    not carry anything of the first attempt."""
    together, apart = store.create_project("together"), store.create_project("apart")

    def version(i: int, changed: bool = False) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "tags": ["t1"],
            "session_id": f"s{i % 3}",
            "stream": True,
            "ttft_ms": 20.0 + i,
        }
        if changed:
            extra.update(response_model="m2", status="error", tags=["t2"], session_id="s9", ttft_ms=None)
        return plain(f"c{i}", T0 + i * 7 + (90 if changed else 0), duration_ms=10.0 * (i + 1), **extra)

    stored = [version(i) for i in range(10, 13)]
    batches = [
        [version(i) for i in range(10)],
        [version(i, changed=True) for i in range(5, 15)],  # shares c5..c9 with the first, c10..c12 stored
        [version(0), version(1), version(1, changed=True)],  # a retry, and a call twice in one batch
    ]
    for project in (together, apart):
        store.write(project, stored, [])
    prepared = [store.prepare_write(WriteBatch(together, batch, [])) for batch in batches]
    store.write_prepared(prepared)
    store.write_prepared(prepared)  # written again: everything is stored by now
    for one in prepared:  # and each alone, twice
        store.write_prepared([one])
        store.write_prepared([one])
    for _ in range(2):
        for batch in batches:
            store.write(apart, batch, [])
    for batch in batches:
        store.write(apart, batch, [])
        store.write(apart, batch, [])

    def seen(project: int) -> Any:
        calls = store.list_calls(project, limit=100)[0]
        # Not the arrivals: each transaction gives its own, and the two projects were written in different
        # transactions (what a tail reads of them is the next test's).
        for call in calls:
            assert call.pop("arrival") > 0
        groups = [store.aggregate(project, T0 - 3600, T0 + 3600, 60, g) for g in (None, "model", "tag")]
        return calls, groups, store.list_sessions(project, T0 - 3600, T0 + 3600, limit=100)[0]

    assert seen(together) == seen(apart)
    assert len(seen(together)[0]) == 15


def test_a_shared_write_the_database_refuses_leaves_nothing_behind_in_the_rollups(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The group-commit writer merges each rollup row's histograms with those it remembers from its
    own last writes, and only then sends the rows. When the database refuses that transaction (here a
    trigger refuses one batch's rollup row) and the writer retries the good batch alone, the charts
    must count as if the refused attempt never ran: latency percentiles and counts equal those of a
    store that only ever saw the successful writes."""
    store = open_store(sqlite_url)
    reference = open_store(f"sqlite:///{tmp_path}/reference.db")
    assert isinstance(store, SQLStore) and isinstance(reference, SQLStore)
    for s in (store, reference):
        s.migrate()
    project = store.create_project("p")
    assert reference.create_project("p") == project
    first = [plain(f"a{i}", T0 + i, duration_ms=100.0 * (i + 1)) for i in range(20)]
    good = [plain(f"b{i}", T0 + 20 + i, duration_ms=5000.0) for i in range(20)]
    refused = [plain("x", T0 + 40, duration_ms=9000.0, tags=["refused"])]
    store.write(project, first, [])  # the rows' histograms are now remembered by the writer
    with store._write() as cur:  # its own connection, so what it remembers stays valid
        cur.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON rollups WHEN NEW.value = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    prepared = [store.prepare_write(WriteBatch(project, batch, [])) for batch in (good, refused)]
    with pytest.raises(sqlite3.Error, match="refused by the test"):
        store.write_prepared(prepared)
    store.write_prepared(prepared[:1])  # as the group commit retries each batch on its own
    reference.write(project, first, [])
    reference.write(project, good, [])

    def charts(s: SQLStore) -> Any:
        return [s.aggregate(project, T0 - 3600, T0 + 3600, b, g) for b in (60, 3600) for g in (None, "model")]

    assert charts(store) == charts(reference)
    assert charts(store)[0][0]["count"] == 40
    store.close()
    reference.close()


def test_write_stores_the_json_text_the_caller_already_has(store: SQLStore) -> None:
    project = store.create_project("default")
    records = [plain(f"t{i}", T0 + i, tags=["a"]) for i in range(3)] + [plain("t0", T0, status="error")]
    texts: list[str | None] = [json.dumps(r, separators=(",", ":")) for r in records]
    texts[1] = None
    store.write(project, records, [], texts)
    assert store.get_call(project, "t1") == records[1]
    assert store.get_call(project, "t2") == records[2]
    # A call repeated in the batch is merged, and serialized afresh rather than stored as either text.
    assert store.get_call(project, "t0") == merge_records(records[0], records[3])
    with pytest.raises(ValueError, match="parallel"):
        store.write(project, records, [], texts[:1])


def test_a_version_1_database_upgrades_in_place_with_its_data(store_url: str) -> None:
    old = open_store(store_url)
    assert isinstance(old, SQLStore)
    assert old.migrate(target=1) == 1
    assert old.schema_version() == 1
    # Rows as the v1 release wrote them (its columns only).
    record = make("v1-call", T0, model="gpt-4o", metadata={"feature": "legacy"})
    record["usage"]["cached_input_tokens"] = 4
    columns = (
        "project_id, call_id, start_time, end_time, duration_ms, call_type, stream, request_model, status, "
    )
    columns += "end_user, session_id, input_tokens, output_tokens, total_tokens, cost_usd, record"
    with old._write() as cur:
        cur.execute(old._q("INSERT INTO projects (name, created) VALUES (?, ?)"), ("legacy", T0))
        cur.execute(old._q("SELECT id FROM projects WHERE name = ?"), ("legacy",))
        pid = cur.fetchone()[0]
        cur.execute(
            old._q(
                f"INSERT INTO calls ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {old._json_param()})"
            ),
            (
                pid,
                "v1-call",
                T0,
                T0 + 0.8,
                800.0,
                "chat",
                False,
                "gpt-4o",
                "ok",
                "enduser-1",
                "s-old",
                12,
                7,
                19,
                0.1,
                json.dumps(record),
            ),
        )
        cur.execute(
            old._q("INSERT INTO call_tags (project_id, call_id, tag) VALUES (?, ?, ?)"),
            (pid, "v1-call", "prod"),
        )
        cur.execute(
            old._q(
                "INSERT INTO spans (project_id, trace_id, span_id, start_time, end_time) VALUES (?, ?, ?, ?, ?)"
            ),
            (pid, TRACE, "1" * 16, T0, T0 + 1),
        )
    old.close()

    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    assert new.migrate() == new.latest_version >= 2
    assert new.migrate() == new.latest_version  # idempotent
    pid = new.create_project("legacy")
    assert new.get_call(pid, "v1-call") == json.loads(json.dumps(record))
    [row] = new.list_calls(pid, CallFilter(tag="prod"))[0]
    assert row["cached_input_tokens"] == 4  # the v2 column was backfilled from the stored record
    # v7 on PostgreSQL: the metadata a filter reads is derived from the records already stored.
    assert ids(new.list_calls(pid, CallFilter(metadata={"feature": "legacy"}))[0]) == {"v1-call"}
    assert new.session_totals(pid, "s-old") == {
        "user": "enduser-1",  # the v9 session users were filled from the calls stored
        "users": 1,
        "calls": 1,
        "errors": 0,
        "cancelled": 0,
        "input_tokens": 12,
        "output_tokens": 7,
        "cost_usd": pytest.approx(0.1),
        "priced_calls": 1,
        "duration_ms": pytest.approx(800.0),
    }
    [session] = new.list_sessions(pid, T0 - 60, T0 + 60)[0]  # the v3 sessions table was backfilled
    assert (session["session_id"], session["calls"], session["tokens"]) == ("s-old", 1, 19)
    assert (session["user"], session["users"]) == ("enduser-1", 1)
    [span] = new.get_trace(pid, TRACE)["spans"]  # the v6 span columns (v5 on PostgreSQL) start empty
    assert (span["span_id"], span["status_message"], span["events"]) == ("1" * 16, None, [])
    new.write(pid, [make("v2-call", T0 + 1)], [])
    assert ids(all_calls(new, pid, sort="cost_usd")) == {"v1-call", "v2-call"}
    assert list(new.get_call(pid, "v2-call") or {}) == list(make("v2-call", T0 + 1))  # v7 on PostgreSQL
    new.close()


def _cancelled_version(store: SQLStore) -> int:
    """The schema version that made rollups count cancelled calls (10 on SQLite, 11 on PostgreSQL)."""
    return next(
        n for n, step in enumerate(store.MIGRATIONS, 1) if any("ADD COLUMN cancelled" in s for s in step)
    )


def _session_cancelled_version(store: SQLStore) -> int:
    """The schema version that made sessions count cancelled calls (12 on SQLite, 13 on PostgreSQL)."""
    return next(
        n
        for n, step in enumerate(store.MIGRATIONS, 1)
        if any("ALTER TABLE sessions ADD COLUMN cancelled" in s for s in step)
    )


def _bounds_version(store: SQLStore) -> int:
    """The schema version that made rollups keep their least and greatest latency and TTFT (14 on
    SQLite, 15 on PostgreSQL)."""
    return next(
        n for n, step in enumerate(store.MIGRATIONS, 1) if any("ADD COLUMN latency_min" in s for s in step)
    )


def _arrival_version(store: SQLStore) -> int:
    """The schema version that made calls keep their arrival (16 on SQLite, 17 on PostgreSQL)."""
    return next(
        n for n, step in enumerate(store.MIGRATIONS, 1) if any("ADD COLUMN arrival" in s for s in step)
    )


def _back_to_before_arrival(store: SQLStore, cur: Any) -> None:
    """The database as the release before `_arrival_version` left it: the same rows, without their
    arrival, its index and its counter."""
    cur.execute("DROP INDEX calls_arrival")
    cur.execute("ALTER TABLE calls DROP COLUMN arrival")
    cur.execute("DROP TABLE arrivals")
    cur.execute(store._q("DELETE FROM schema_version WHERE version >= ?"), (_arrival_version(store),))


def _back_to_before_bounds(store: SQLStore, cur: Any) -> None:
    """The database as the release before `_bounds_version` left it: the same rows, without the
    rollups' bounds."""
    _back_to_before_arrival(store, cur)
    for column in ("latency_min", "latency_max", "ttft_min", "ttft_max"):
        cur.execute(f"ALTER TABLE rollups DROP COLUMN {column}")
    cur.execute(store._q("DELETE FROM schema_version WHERE version >= ?"), (_bounds_version(store),))


def _back_to_before_session_cancelled(store: SQLStore, cur: Any) -> None:
    """The database as the release before `_session_cancelled_version` left it: the same rows, without
    the sessions' count of cancelled calls."""
    _back_to_before_bounds(store, cur)
    cur.execute("ALTER TABLE sessions DROP COLUMN cancelled")
    cur.execute(
        store._q("DELETE FROM schema_version WHERE version >= ?"), (_session_cancelled_version(store),)
    )


def _back_to_before_cancelled(store: SQLStore, cur: Any) -> None:
    """The database as the release before `_cancelled_version` left it: the same rows, without the
    rollups' count of cancelled calls."""
    _back_to_before_session_cancelled(store, cur)
    cur.execute("ALTER TABLE rollups DROP COLUMN cancelled")
    cur.execute(store._q("DELETE FROM schema_version WHERE version >= ?"), (_cancelled_version(store),))


def _back_to_v8(store: SQLStore, cur: Any) -> None:
    """The database as release v8 left it: the same rows, without the session users v9 adds."""
    _back_to_before_cancelled(store, cur)
    cur.execute("DROP TABLE session_users")
    cur.execute(store._q("DELETE FROM schema_version WHERE version > ?"), (8,))


def _back_to_v7(store: SQLStore, cur: Any) -> None:
    """The database as release v7 left it: the same rows, without the columns v8 adds."""
    _back_to_v8(store, cur)
    for table in ("sessions", "rollups"):
        cur.execute(f"ALTER TABLE {table} DROP COLUMN priced")
    cur.execute(store._q("DELETE FROM schema_version WHERE version > ?"), (7,))


def _rollup_answers(s: SQLStore, pid: int) -> list[Any]:
    """What the rollups answer around T0: aggregates at several buckets and groupings, and top groups; a
    migrated database must give the same as one that started new."""
    out: list[Any] = []
    for bucket, group_by in [(60, None), (300, "model"), (3600, "tag"), (900, "user"), (7200, "key_alias")]:
        out.append(s.aggregate(pid, T0 - 2 * 3600 - 77, T0 + 2 * 3600 + 5, bucket, group_by))  # type: ignore[arg-type]
    for group_by in ("model", "provider", "user", "tag", "key_alias"):
        out.append(s.top_groups(pid, T0 - 3 * 3600, T0 + 3 * 3600, group_by))  # type: ignore[arg-type]
    return out


def test_a_version_7_database_learns_which_sessions_and_buckets_had_no_price(store_url: str) -> None:
    """Schema v8 counts priced calls in sessions and rollups. A database written before it summed an
    unpriced call as $0; once upgraded it answers as if this release had written it: unknown (None) where
    no call had a price, the priced calls' sum where some had."""
    rng = random.Random(8)
    records = []
    for i in range(120):
        model = rng.choice(["gpt-x", "openai/gpt-x", "free-model", "openai/free-model"])
        records.append(
            plain(
                f"v7-{i:03d}",
                T0 + rng.uniform(-2 * 3600, 2 * 3600),  # hours, 5-minute and minute rows of both edges
                request_model=model,
                response_model=rng.choice([None, model]),
                provider=rng.choice(["openai", None]),
                cost_usd=None if "free" in model or rng.random() < 0.3 else rng.uniform(0, 0.01),
                end_user=rng.choice([None, "alice", "bob"]),
                user_id=rng.choice([None, "u-1"]),
                tags=rng.sample(["paid", "free", "misc"], rng.randrange(0, 3)),
                proxy={"key_alias": rng.choice(["team-a", "team-b"])},
                session_id=rng.choice([None, "s-free", "s-mixed"]),
            )
        )
    for r in records:  # a session of unpriced calls only
        if r["session_id"] == "s-free":
            r["cost_usd"] = None
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records[:60], [])
    new.write(pid, records[60:], [])

    def answers(s: SQLStore) -> list[Any]:
        out: list[Any] = [s.list_sessions(pid, T0 - 3 * 3600, T0 + 3 * 3600)[0]]
        out += [s.session_totals(pid, sid) for sid in ("s-free", "s-mixed")]
        return out + _rollup_answers(s, pid)

    expected = answers(new)
    sessions = {row["session_id"]: row for row in expected[0]}
    assert (sessions["s-free"]["cost_usd"], sessions["s-free"]["priced_calls"]) == (None, 0)
    assert sessions["s-mixed"]["cost_usd"] == pytest.approx(
        sum(r["cost_usd"] or 0 for r in records if r["session_id"] == "s-mixed")
    )
    models = {row["group"]: row for row in new.top_groups(pid, T0 - 3 * 3600, T0 + 3 * 3600, "model")[0]}
    assert (models["free-model"]["cost_usd"], models["free-model"]["priced_calls"]) == (None, 0)
    assert models["gpt-x"]["priced_calls"] == sum(
        1 for r in records if model_name(r) == "gpt-x" and r["cost_usd"] is not None
    )
    with new._write() as cur:
        _back_to_v7(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == 7
    assert upgraded.migrate() == upgraded.latest_version
    assert answers(upgraded) == expected
    # And it goes on counting: a priced call joins the unpriced session.
    upgraded.write(pid, [plain("v8-call", T0, session_id="s-free", cost_usd=0.25)], [])
    assert upgraded.session_totals(pid, "s-free")["cost_usd"] == pytest.approx(0.25)  # type: ignore[index]
    upgraded.close()


def test_a_version_7_database_with_tags_over_200_characters_counts_their_priced_calls(
    store_url: str,
) -> None:
    """Releases before the collector cut tags at ingest kept a tag whole in the record and in the
    rollups, but cut to 200 characters in `call_tags`. The v8 upgrade counted priced calls per tag
    through `call_tags`, found none under such a tag, and took its rollup rows as wholly priced when
    they had a cost (no "1 of 3 priced" mark) and as unpriced when their priced calls cost $0 (an
    unknown cost in place of $0). Counted from the calls' records, they read as this release writes."""
    rng = random.Random(9)
    stem = "".join(rng.choices("abcdefghij", k=200))
    mixed, free, twin = stem + "-mixed" * 5, stem + "-free" * 5, stem + "-twin" * 5  # one 200-char prefix
    records = [
        plain("m-priced", T0 + 1, tags=[mixed, "short"], cost_usd=0.01),
        plain("m-unpriced-1", T0 + 2, tags=[mixed, "short"], cost_usd=None),
        plain("m-unpriced-2", T0 + 400, tags=[mixed, twin], cost_usd=None),
        plain("f-1", T0 + 3, tags=[free], cost_usd=0.0),
        plain("f-2", T0 + 4000, tags=[free, mixed[:200]], cost_usd=0.0),
        plain("t-1", T0 + 5, tags=[twin, twin], cost_usd=0.02),
    ]
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records, [])

    def answers(s: SQLStore) -> list[Any]:
        out: list[Any] = []
        for bucket in (60, 300, 3600, 7200):
            out.append(s.aggregate(pid, T0 - 3600, T0 + 3 * 3600, bucket, "tag"))
        out.append(s.top_groups(pid, T0 - 3600, T0 + 3 * 3600, "tag"))
        return out

    expected = answers(new)
    tags = {row["group"]: row for row in expected[-1][0]}
    assert (tags[mixed]["priced_calls"], tags[mixed]["count"]) == (1, 3)
    assert (tags[free]["cost_usd"], tags[free]["priced_calls"]) == (0.0, 2)
    assert (tags[twin]["priced_calls"], tags[twin]["count"]) == (1, 2)
    # The database as such a release left it: tags cut to 200 characters in `call_tags` (whole in the
    # records and the rollups), and none of the columns v8 adds.
    with new._write() as cur:
        cur.execute(new._q("DELETE FROM call_tags WHERE project_id = ?"), (pid,))
        cut = {(r["call_id"], t[:200]) for r in records for t in r["tags"]}
        cur.executemany(
            new._q("INSERT INTO call_tags (project_id, call_id, tag) VALUES (?, ?, ?)"),
            [(pid, call_id, tag) for call_id, tag in sorted(cut)],
        )
        _back_to_v7(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.migrate() == upgraded.latest_version
    got = answers(upgraded)
    tags = {row["group"]: row for row in got[-1][0]}
    assert [(tags[t]["priced_calls"], tags[t]["cost_usd"]) for t in (mixed, free, twin)] == [
        (1, pytest.approx(0.01)),
        (2, 0.0),
        (1, pytest.approx(0.02)),
    ]
    assert got == expected
    upgraded.close()


def test_a_database_the_first_v8_upgrade_left_counts_its_long_tags_priced_calls_again(
    store_url: str,
) -> None:
    """The v8 upgrade first shipped found no priced call under a tag of over 200 characters (cut in
    `call_tags`, whole in the records and rollups of releases before ingest cut tags): the tag read as
    wholly priced when it had a cost, and as of unknown cost when its priced calls cost $0. The upgrade
    was fixed since, but a database it had already upgraded kept those counts: the next upgrade counts
    them again, and leaves every other row as it was."""
    stem = "".join(random.Random(12).choices("abcdefghij", k=200))
    mixed, free, exact = stem + "-mixed", stem + "-free", stem[:199] + "!"  # `exact`: 200 characters
    records = [
        plain("m-priced", T0 + 1, tags=[mixed, "short"], cost_usd=0.01),
        plain("m-unpriced", T0 + 400, tags=[mixed, exact], cost_usd=None),
        plain("f-1", T0 + 3, tags=[free, exact], cost_usd=0.0),
        plain("f-2", T0 + 4000, tags=[free, free], cost_usd=0.0),
        plain("e-unpriced", T0 + 5, tags=[exact], cost_usd=None),
    ]
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records, [])
    expected = _rollup_answers(new, pid)
    tags = {row["group"]: row for row in expected[8][0]}  # top groups by tag
    assert [(tags[t]["priced_calls"], tags[t]["count"]) for t in (mixed, free, exact)] == [
        (1, 2),
        (2, 2),
        (1, 3),
    ]
    # The step that counts them again (none before it was written: the database stays as it is).
    repair = next(
        (n for n, step in enumerate(new.MIGRATIONS, 1) if any("litelens_v13_calls" in s for s in step)),
        new.latest_version + 1,
    )
    # The database as a release upgraded by the first v8 backfill left it: long tags cut in `call_tags`,
    # and their rollup rows priced wholly when they had a cost, not at all when not.
    with new._write() as cur:
        cur.execute(new._q("DELETE FROM call_tags WHERE project_id = ?"), (pid,))
        cut = {(r["call_id"], t[:200]) for r in records for t in r["tags"]}
        cur.executemany(
            new._q("INSERT INTO call_tags (project_id, call_id, tag) VALUES (?, ?, ?)"),
            [(pid, call_id, tag) for call_id, tag in sorted(cut)],
        )
        cur.execute(
            "UPDATE rollups SET priced = CASE WHEN ABS(cost) > 1e-12 THEN count ELSE 0 END "
            "WHERE dim = 'tag' AND length(value) > 200"
        )
        cur.execute(new._q("DELETE FROM schema_version WHERE version >= ?"), (repair,))
    wrong = _rollup_answers(new, pid)
    tags = {row["group"]: row for row in wrong[8][0]}
    assert [(tags[t]["priced_calls"], tags[t]["cost_usd"]) for t in (mixed, free)] == [(2, 0.01), (0, None)]
    with new._write() as cur:  # (and without the later steps' columns, as that release left it)
        _back_to_before_bounds(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.migrate() == upgraded.latest_version
    got = _rollup_answers(upgraded, pid)
    tags = {row["group"]: row for row in got[8][0]}
    assert [(tags[t]["priced_calls"], tags[t]["cost_usd"]) for t in (mixed, free)] == [
        (1, pytest.approx(0.01)),
        (2, 0.0),
    ]
    assert got == expected
    upgraded.close()


def test_retention_deletes_only_old_rows(store: SQLStore) -> None:
    project = store.create_project("default")
    other = store.create_project("other")
    old = [plain(f"old{i}", T0 + i, tags=["t"], session_id="long" if i < 3 else None) for i in range(23)]
    new = [
        plain(f"new{i}", T0 + 7200 + i, tags=["t"], session_id="long" if i < 2 else None) for i in range(5)
    ]
    spans = [
        {
            "trace_id": TRACE,
            "span_id": f"{i:016x}",
            "name": "s",
            "start_time": T0 + i * 7200,
            "end_time": T0 + i * 7200 + 1,
        }
        for i in range(2)
    ]
    store.write(project, old + new, spans)
    store.write(other, [plain("other-old", T0)], [])
    cutoff = T0 + 3600
    assert store.delete_older_than(cutoff, batch=7) == 24
    assert ids(all_calls(store, project)) == ids(new)
    assert all_calls(store, other) == []
    assert [s["span_id"] for s in store.get_trace(project, TRACE)["spans"]] == [f"{1:016x}"]
    assert store.aggregate(project, T0 - 7200, cutoff, 60) == []
    assert sum(g["count"] for g in store.aggregate(project, cutoff, T0 + 10_000, 3600)) == 5
    assert sum(g["count"] for g in store.aggregate(project, cutoff, T0 + 10_000, 60, "tag")) == 5
    [session] = store.list_sessions(project, T0 - 7200, T0 + 10_000)[0]
    assert (session["session_id"], session["calls"], session["first_time"]) == ("long", 2, T0 + 7200)
    assert store.delete_older_than(cutoff) == 0


def test_retention_takes_deleted_calls_out_of_the_rollups_of_the_cutoff_bucket(store: SQLStore) -> None:
    # The cutoff falls mid-hour and mid-minute: the hour, 5-minute and minute rows holding it must count
    # only the calls that remain, at every bucket size, like the call list does.
    project = store.create_project("default")
    calls = [plain(f"c{i:03d}", T0 + i * 37.5, tags=["t"]) for i in range(200)]  # T0 .. T0 + 2 h
    store.write(project, calls, [])
    cutoff = T0 + 3600 + 1234.5
    store.delete_older_than(cutoff, batch=13)
    left = [c for c in calls if c["start_time"] >= cutoff]
    assert ids(all_calls(store, project)) == ids(left)
    for bucket in (60, 300, 3600, 86400):
        for group in (None, "tag"):
            rows = store.aggregate(project, T0, T0 + 3 * 3600, bucket, group)
            assert sum(r["count"] for r in rows) == len(left), (bucket, group)
            assert sum(r["tokens_in"] for r in rows) == 10 * len(left)
    [top], groups = store.top_groups(project, T0, T0 + 3 * 3600, "tag")
    assert (top["group"], top["count"], groups) == ("t", len(left), 1)
    # New calls after retention add to the corrected rows.
    store.write(project, [plain("late", cutoff + 1, tags=["t"])], [])
    assert sum(r["count"] for r in store.aggregate(project, T0, T0 + 3 * 3600, 3600)) == len(left) + 1


def _retention_scene(n: int, span: float, seed: int) -> list[dict[str, Any]]:
    """`n` calls over `span` seconds from T0 in the shapes retention has to take apart: several per
    minute (some at the same moment), ids in no relation to time, models, providers, users, tags, key
    aliases, failed, cancelled and unpriced calls, one long session of many users and short ones."""
    rng = random.Random(seed)
    out = []
    start = T0
    for i in range(n):
        if i % 13:  # else at the same moment as the one before
            start = T0 + round(span * i / n, 1)
        session = "long" if i % 10 == 0 else (f"s{rng.randrange(n // 8 + 1)}" if rng.random() < 0.3 else None)
        out.append(
            plain(
                f"{rng.getrandbits(64):016x}",
                start,
                duration_ms=float(rng.randrange(40, 9000)),
                usage={"input_tokens": rng.randrange(1, 900), "output_tokens": 5, "total_tokens": 0},
                cost_usd=rng.choice([None, 0.001, 0.25]),
                status=rng.choice(["ok"] * 8 + ["error", "cancelled"]),
                ttft_ms=rng.choice([None, 12.5, 300.0]),
                request_model=rng.choice(["ma", "mb", "mc"]),
                provider=rng.choice(["openai", "anthropic"]),
                end_user=f"u{rng.randrange(40)}",
                tags=rng.sample(["a", "b", "c", "d"], rng.randrange(3)),
                proxy={"key_alias": rng.choice(["k1", "k2"])},
                session_id=session,
            )
        )
    return out


def _dashboard(store: SQLStore, project: int, lo: float, hi: float) -> dict[str, Any]:
    """What the overview, the breakdowns and the sessions list show of [lo, hi): every count and sum at
    every bucket size (not the percentiles: a row keeps the bounds of calls that left it, `rollup.Bounds`)."""
    shown: dict[str, Any] = {}
    for bucket in (60, 300, 3600, 86400):
        for group in (None, *AGGREGATE_GROUPS):
            shown[f"aggregate {bucket} {group}"] = [
                (
                    r["bucket"], r["group"], r["count"], r["errors"], r["cancelled"], r["tokens_in"],
                    r["tokens_out"], r["priced_calls"], None if r["cost_usd"] is None else round(r["cost_usd"], 9),
                )
                for r in store.aggregate(project, lo, hi, bucket, group)  # type: ignore[arg-type]
            ]  # fmt: skip
    for group in AGGREGATE_GROUPS:
        rows, total = store.top_groups(project, lo, hi, group)  # type: ignore[arg-type]
        shown[f"top {group}"] = ([(r["group"], r["count"], r["errors"]) for r in rows], total)
    sessions, _ = store.list_sessions(project, lo, hi, limit=10_000)
    shown["sessions"] = sorted(
        (
            s["session_id"], s["first_time"], s["last_time"], s["calls"], s["tokens"], s["errors"],
            s["cancelled"], s["priced_calls"], None if s["cost_usd"] is None else round(s["cost_usd"], 9),
            s["user"], s["users"],
        )
        for s in sessions
    )  # fmt: skip
    shown["sessions of u3"] = sorted(
        s["session_id"] for s in store.list_sessions(project, lo, hi, user="u3")[0]
    )
    return shown


def test_retention_leaves_every_count_as_a_store_of_only_the_remaining_calls_shows(store: SQLStore) -> None:
    """The rollups are no longer taken apart call by call (a record read and parsed for each deleted
    call): minute rows go whole with their calls, and are taken out of the coarser rows that stay. Pass
    after pass (cutoffs mid-minute, on an hour, across one), with late calls delivered between passes
    into what a pass already deleted and into the minute it left half deleted, every chart, breakdown
    and session must show what a project holding only the remaining calls shows."""
    kept = store.create_project("kept")
    span = 5 * 3600.0
    calls = _retention_scene(1500, span, seed=21)
    late = [
        dict(calls[0], call_id="late-deleted", start_time=T0 + 30.0, end_time=T0 + 30.1),
        dict(
            calls[1],
            call_id="late-in-the-cutoff-hour",
            start_time=T0 + 2 * 3600 + 900.0,
            end_time=T0 + 7500.1,
        ),
        dict(calls[2], call_id="late-kept", start_time=T0 + 4 * 3600 + 7.0, end_time=T0 + 4 * 3600 + 7.1),
    ]
    store.write(kept, calls, [])
    cutoffs = (T0 + 2 * 3600 + 1234.5, T0 + 2 * 3600 + 1234.5 + 317.2, T0 + 3 * 3600, T0 + 3 * 3600 + 3661.25)
    # Batches that end at the end of a minute, and in its middle.
    for n, (cutoff, batch) in enumerate(zip(cutoffs, (5, 29, 4, 50), strict=True)):
        store.delete_older_than(cutoff, batch=batch)
        left = [c for c in calls if c["start_time"] >= cutoff]
        fresh = store.create_project(f"fresh-{n}")
        store.write(fresh, left, [])
        assert ids(all_calls(store, kept)) == ids(left)
        lo, hi = T0 - 86400, T0 + span + 86400
        assert _dashboard(store, kept, lo, hi) == _dashboard(store, fresh, lo, hi), cutoff
        if n == 0:
            store.write(kept, late, [])
            calls += late


@pytest.mark.parametrize("batch", [15, 30, 13])
def test_retention_whose_last_batch_is_exactly_full_leaves_the_coarser_rollups_exact(
    store: SQLStore, batch: int
) -> None:
    """When the old calls filled the last batch exactly, that batch did not know it was the last: it took
    the minute rows out of the coarser rows only up to its own last call, the next batch found nothing
    and stopped, and the minute rows from there to the cutoff were deleted later without being taken out.
    The 5-minute and hour charts then counted a deleted call until their whole hour went. (30 old calls;
    13 leaves a part-filled last batch, which was right before too.)"""
    kept = store.create_project("kept")
    calls = _retention_scene(60, 60 * 150.0, seed=5)
    for i, call in enumerate(calls):  # one call every 150 s: the last old one well before the cutoff's minute
        call["start_time"], call["end_time"] = T0 + 150.0 * i, T0 + 150.0 * i + 0.5
    store.write(kept, calls, [])
    cutoff = T0 + 4499.0
    store.delete_older_than(cutoff, batch=batch)
    left = [c for c in calls if c["start_time"] >= cutoff]
    assert len(left) == 30
    fresh = store.create_project("fresh")
    store.write(fresh, left, [])
    lo, hi = T0 - 86400, T0 + 86400
    assert _dashboard(store, kept, lo, hi) == _dashboard(store, fresh, lo, hi)


def test_retention_costs_the_same_little_work_per_deleted_call_at_4x_the_calls_on_sqlite(
    tmp_path: Path,
) -> None:
    """A first pass over a backlog of 200,000 calls took 83 s of CPU (0.4 ms a call): for each call it
    read and parsed the record to take it out of the rollups (a dozen rollup rows rewritten a call, the
    most of them to be deleted a moment later), and for each user of a long session it walked the
    session's calls twice. Counted in SQLite's virtual machine steps and in statements, not in time,
    deleting a call now costs a small bounded amount at N and at 4N old calls (as many recent ones
    stay), in batches of 50 (the size the old pass shrank to under its own weight)."""

    def cost(n: int) -> tuple[float, float]:
        store = open_store(f"sqlite:///{tmp_path}/retention-{n}.db")
        assert isinstance(store, SQLiteStore)
        store.migrate()
        project = store.create_project("default")
        span = n * 9.0  # a few calls a minute, over hours
        calls = _retention_scene(2 * n, 2 * span, seed=n)
        for lo in range(0, len(calls), 1000):
            store.write(project, calls[lo : lo + 1000], [])
        steps = statements = 0

        def tick() -> int:
            nonlocal steps
            steps += 1
            return 0

        def traced(_: str) -> None:
            nonlocal statements
            statements += 1

        store._writer.set_progress_handler(tick, 100)
        store._writer.set_trace_callback(traced)
        try:
            deleted = store.delete_older_than(T0 + span + 1234.5, batch=50)
        finally:
            store._writer.set_progress_handler(None, 0)
            store._writer.set_trace_callback(None)
        assert deleted == sum(c["start_time"] < T0 + span + 1234.5 for c in calls)
        store.close()
        return 100 * steps / deleted, statements / deleted

    (steps_n, statements_n), (steps_4n, statements_4n) = cost(1000), cost(4000)
    print(
        f"per deleted call: {steps_n:.0f} and {steps_4n:.0f} VM steps, {statements_n:.1f} and {statements_4n:.1f} statements"
    )
    # Two statements a call (its tags, its row), and a few a batch.
    assert statements_n < 4 and statements_4n < 4
    assert steps_n < 600 and steps_4n < 600
    assert steps_4n < 1.5 * steps_n


def test_retention_in_a_long_session_takes_as_long_as_elsewhere_and_keeps_the_session_exact(
    store: SQLStore,
) -> None:
    """Retention holds the writer one batch at a time, so ingest waits at most a batch. A batch that
    recomputed each touched session from all its calls took as long as the session was: with 20,000
    calls left in one session, 200,000 old calls took 470 s instead of 18 s to delete (ingest waited
    0.2-2 s a batch all along). Deleting old calls of a long session must cost what deleting others does,
    and the session must still show exactly what remains of it."""
    project = store.create_project("default")
    old, new = 2000, 30_000
    cutoff = T0 + 3600

    def fill(session: str | None, prefix: str) -> None:
        for lo in range(0, new, 5000):
            store.write(
                project,
                [
                    plain(f"{prefix}-new-{i}", cutoff + i * 0.01, session_id=session, end_user=f"u{i % 3}")
                    for i in range(lo, lo + 5000)
                ],
                [],
            )
        store.write(
            project,
            [plain(f"{prefix}-old-{i}", T0 + i, session_id="long", end_user=f"u{i % 5}") for i in range(old)],
            [],
        )

    def retention() -> float:
        began = time.perf_counter()
        assert store.delete_older_than(cutoff, batch=50) == old
        return time.perf_counter() - began

    fill(None, "a")  # the old calls' session ends with them
    elsewhere = retention()
    fill("long", "b")  # it goes on past the cutoff with 30,000 more calls
    in_long = retention()
    print(f"retention of {old} calls: {elsewhere:.2f} s, in a session of {old + new}: {in_long:.2f} s")
    assert in_long < 2 * elsewhere + 0.3
    [session] = store.list_sessions(project, T0 - 60, cutoff + 3600)[0]
    assert session == {
        "session_id": "long",
        "first_time": cutoff,
        "last_time": cutoff + (new - 1) * 0.01 + 0.1,
        "calls": new,
        "tokens": 15 * new,
        "cost_usd": pytest.approx(0.001 * new),
        "priced_calls": new,
        "errors": 0,
        "cancelled": 0,
        "user": "u0",
        "users": 3,  # u3 and u4 had only old calls
    }
    assert store.session_totals(project, "long")["calls"] == new  # type: ignore[index]


def _sessions_as_stored_and_recomputed(store: SQLStore, project: int) -> tuple[Any, Any]:
    """The project's session rows and session users as the writer kept them, then as `_refresh_sessions`
    (`_SESSION_REFRESH`: every session recomputed from all its calls) makes them."""

    def read() -> tuple[dict[str, tuple[Any, ...]], set[tuple[Any, ...]]]:
        with store._write() as cur:
            cur.execute(
                store._q(
                    "SELECT session_id, first_time, last_time, calls, tokens, cost, errors, priced, cancelled "
                    "FROM sessions WHERE project_id = ?"
                ),
                (project,),
            )
            rows = {
                r[0]: (float(r[1]), float(r[2]), *map(int, r[3:5]), float(r[5]), *map(int, r[6:]))
                for r in cur
            }
            cur.execute(
                store._q("SELECT session_id, user_name, first_time FROM session_users WHERE project_id = ?"),
                (project,),
            )
            return rows, {(r[0], r[1], float(r[2])) for r in cur}

    kept = read()
    with store._write() as cur:
        cur.execute(
            store._q("SELECT DISTINCT session_id FROM calls WHERE project_id = ? AND session_id IS NOT NULL"),
            (project,),
        )
        sessions = {r[0] for r in cur} | set(kept[0])
        store._refresh_sessions(cur, project, sessions)
    return kept, read()


def _assert_sessions_exact(store: SQLStore, project: int) -> None:
    (rows, users), (want_rows, want_users) = _sessions_as_stored_and_recomputed(store, project)
    assert set(rows) == set(want_rows)
    for sid, row in rows.items():
        want = want_rows[sid]
        assert row[:4] == want[:4] and row[5:] == want[5:], sid
        assert row[4] == pytest.approx(want[4], rel=1e-9, abs=1e-9), sid  # the cost: sums in another order
    assert users == want_users


def _otel_copy(record: dict[str, Any], i: int) -> dict[str, Any]:
    """The same call as the other road reports it: what the first copy lacked filled in, and now and
    then a field that changes what the call adds to its session."""
    copy = dict(record, response_model="m-2026-01", provider="openai")
    kind = i % 8
    if kind == 1:
        copy["status"] = "error"
    elif kind == 2:
        copy["end_user"] = "u-late"  # its user changes
    elif kind == 3:
        copy["cost_usd"] = 0.004
        copy["usage"] = {"input_tokens": 30, "output_tokens": 20, "total_tokens": 50}
    elif kind == 4:
        copy["end_time"] = record["end_time"] + 0.5  # a stream that went on
    elif kind == 5:
        copy["status"] = "cancelled"
    return copy


def test_calls_merged_in_a_long_session_cost_what_they_cost_elsewhere_and_keep_the_session_exact(
    store: SQLStore,
) -> None:
    """Every call reaches the store twice when the core callback and the OTel layer are both on (and
    when a batch is retried); the second copy is merged into the stored call. A merge recomputed each
    touched session from all its calls, so an agent session of 20,000 calls made every batch that
    merged one of its calls pay a pass over the whole session (and its users): ingest slowed down as
    sessions grew. Merging into a long session must cost what merging elsewhere does, and the
    session must still show exactly what its calls add up to."""
    project = store.create_project("default")
    size, resent, batch = 20_000, 480, 16

    def record(prefix: str, i: int, session: str | None) -> dict[str, Any]:
        return plain(f"{prefix}-{i}", T0 + i * 0.01, session_id=session, end_user=f"u{i % 3}")

    def run(prefix: str, session: str | None) -> list[float]:
        for lo in range(0, size, 5000):
            store.write(project, [record(prefix, i, session) for i in range(lo, lo + 5000)], [])
        times = []
        # The session's latest calls, each once more from the other road, in the sender's small batches.
        for lo in range(size - resent, size, batch):
            copies = [_otel_copy(record(prefix, i, session), i) for i in range(lo, lo + batch)]
            began = time.perf_counter()
            store.write(project, copies, [])
            times.append(time.perf_counter() - began)
        return times

    elsewhere = run("a", None)
    in_long = run("b", "long")
    per = {name: sorted(t)[len(t) // 2] * 1000 for name, t in (("elsewhere", elsewhere), ("long", in_long))}
    print(
        f"{len(in_long)} batches of {batch} merged calls: median {per['elsewhere']:.1f} ms a batch without a "
        f"session, {per['long']:.1f} ms in a session of {size} calls (total {sum(elsewhere):.2f} s vs "
        f"{sum(in_long):.2f} s)"
    )
    assert sum(in_long) < 2 * sum(elsewhere) + 0.3
    _assert_sessions_exact(store, project)
    [session] = store.list_sessions(project, T0 - 60, T0 + 3600)[0]
    assert (session["session_id"], session["calls"], session["users"]) == ("long", size, 4)
    late = [T0 + i * 0.01 + 0.1 + (0.5 if i % 8 == 4 else 0.0) for i in range(size - resent, size)]
    assert session["last_time"] == max(late)


def test_merged_calls_that_move_within_or_between_sessions_leave_every_session_exact(store: SQLStore) -> None:
    """A merged call's second copy can change what it adds to its session: the session itself, its
    user, its times, cost, status. Each session must show what its calls add up to afterwards: its
    first and last times, its users, and no session left behind by its only call."""
    project = store.create_project("default")
    first = [
        plain("a0", T0, session_id="s1", end_user="ann", cost_usd=None),  # unpriced, s1's first call
        plain("a1", T0 + 1, session_id="s1", end_user="bob"),
        plain("a2", T0 + 2, duration_ms=5000, session_id="s1", end_user="bob"),  # ends last in s1
        plain("a3", T0 + 3, session_id="s1", end_user="cy"),
        plain("b0", T0 + 10, session_id="s2", end_user="dee"),  # s2's only call
        plain("c0", T0 + 20, session_id="s3", status="cancelled"),
        plain("c1", T0 + 21, session_id="s3", user_id="eve"),
    ]
    store.write(project, first, [])
    second = [
        dict(first[0], cost_usd=0.002, start_time=T0 + 0.5),  # priced now, and s1's first start moves
        dict(first[2], end_time=T0 + 2.2, duration_ms=200.0),  # s1's latest end comes sooner
        dict(first[3], end_user="ann"),  # cy's only call was ann's
        dict(first[4], session_id="s3"),  # s2's only call belongs to s3
        dict(first[5], status="ok"),
        dict(first[6], status="error", session_id="s4", end_user="fay"),
        plain("n0", T0 + 30, session_id="s3"),
    ]
    for _ in range(2):  # the second time, a retried batch: nothing changes
        store.write(project, second, [])
        _assert_sessions_exact(store, project)
        sessions = {s["session_id"]: s for s in store.list_sessions(project, T0 - 60, T0 + 3600)[0]}
        assert set(sessions) == {"s1", "s3", "s4"}
        s1, s3, s4 = sessions["s1"], sessions["s3"], sessions["s4"]
        assert (s1["first_time"], s1["last_time"], s1["calls"], s1["priced_calls"]) == (
            T0 + 0.5,
            T0 + 3.1,
            4,
            4,
        )
        assert s1["cost_usd"] == pytest.approx(0.005)
        assert (s1["user"], s1["users"]) == ("ann", 2)
        assert (s3["first_time"], s3["last_time"], s3["calls"], s3["cancelled"]) == (T0 + 10, T0 + 30.1, 3, 0)
        assert (s3["user"], s3["users"]) == ("dee", 1)
        assert (s4["calls"], s4["errors"], s4["user"], s4["users"]) == (1, 1, "fay", 1)
        assert store.list_sessions(project, T0 - 60, T0 + 3600, user="eve")[0] == []


def test_retention_takes_a_deleted_cancelled_call_out_of_its_sessions_count(store: SQLStore) -> None:
    """Retention subtracts the calls it deletes from a session that goes on past the cutoff; the
    session's cancelled calls (abandoned streams) must go down with them, or the sessions list shows
    more cancelled calls than the session has."""
    project = store.create_project("default")
    cutoff = T0 + 3600
    old = [plain(f"old-{i}", T0 + i, session_id="s", status="cancelled" if i < 2 else "ok") for i in range(4)]
    new = [
        plain(f"new-{i}", cutoff + i, session_id="s", status="cancelled" if i == 0 else "ok")
        for i in range(3)
    ]
    store.write(project, old + new, [])
    [before] = store.list_sessions(project, T0 - 60, cutoff + 3600)[0]
    assert (before["calls"], before["cancelled"]) == (7, 3)
    assert store.delete_older_than(cutoff) == 4
    [after] = store.list_sessions(project, T0 - 60, cutoff + 3600)[0]
    assert (after["calls"], after["cancelled"]) == (3, 1)
    assert store.session_totals(project, "s")["cancelled"] == 1  # type: ignore[index]


def test_retention_holds_a_bounded_amount_of_records_in_memory_at_once(store: SQLStore) -> None:
    """Retention reads the calls it deletes to take them out of the rollups. It read up to 500 of them at
    once whatever their size: calls with large content (ingest takes records up to 2 MiB) made a
    collector's memory jump by a gigabyte at each pass."""
    project = store.create_project("default")
    pad = "x" * 256 * 1024
    for lo in range(0, 400, 50):
        store.write(
            project,
            [plain(f"big-{i}", T0 + i, tags=["t"], metadata={"pad": pad}) for i in range(lo, lo + 50)],
            [],
        )
    tracemalloc.start()
    try:
        assert store.delete_older_than(T0 + 3600) == 400
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"retention of 400 calls of 256 KiB: peak {peak / 2**20:.0f} MiB allocated")
    assert peak < 48 * 2**20  # the 100 MiB of records stored are never all in memory at once
    assert store.list_calls(project)[0] == []
    assert store.aggregate(project, T0 - 3600, T0 + 7200, 3600) == []


def test_search_finds_quotes_backslashes_and_newlines_and_metadata_booleans_match_as_text(
    store: SQLStore,
) -> None:
    project = store.create_project("default")
    text = 'say "hi" to C:\\temp\nnow 100%_done'
    store.write(
        project,
        [
            plain(
                "hit", T0, request={"messages": [{"role": "user", "content": text}]}, metadata={"beta": True}
            ),
            plain(
                "miss",
                T0 + 1,
                request={"messages": [{"role": "user", "content": "say hi"}]},
                metadata={"beta": False},
            ),
        ],
        [],
    )
    for needle in ('say "hi"', "C:\\temp", "temp\nnow", "100%_done", '"hi" to'):
        assert ids(all_calls(store, project, CallFilter(search=needle))) == {"hit"}, needle
    assert ids(all_calls(store, project, CallFilter(metadata={"beta": "true"}))) == {"hit"}
    assert ids(all_calls(store, project, CallFilter(metadata={"beta": "false"}))) == {"miss"}


def test_search_ignores_case_beyond_ascii(store: SQLStore) -> None:
    # SQLite's LIKE folds ASCII only: "KÖLN" missed "Köln", "ПРИВЕТ" missed "привет".
    project = store.create_project("default")
    text = "Grüße aus Köln, привет, Ärger"
    store.write(
        project,
        [
            plain("hit", T0, request={"messages": [{"role": "user", "content": text}]}),
            plain("miss", T0 + 1, request={"messages": [{"role": "user", "content": "hello"}]}),
        ],
        [],
    )
    for needle in ("KÖLN", "köln", "ПРИВЕТ", "Привет", "GRÜßE AUS", "ärger", "grüße aus köln, ПРИВЕТ"):
        assert ids(all_calls(store, project, CallFilter(search=needle))) == {"hit"}, needle
    assert ids(all_calls(store, project, CallFilter(search="KÖLNER"))) == set()


def test_search_finds_each_case_form_of_a_letter_alike_on_every_store(store: SQLStore) -> None:
    # Found by tests/test_store_diff.py: SQLite folded the record to lower case (Python's lower(), which
    # also writes a word's last Σ as ς), PostgreSQL matched each letter's case forms: a search for ς missed
    # a lone Σ on SQLite, and one for ΕΥΣ found "οδυσσευς" there, on PostgreSQL not.
    project = store.create_project("default")
    store.write(
        project,
        [
            plain("upper", T0, request={"messages": [{"role": "user", "content": "ΟΔΥΣΣΕΥΣ"}]}),
            plain("final", T0 + 1, request={"messages": [{"role": "user", "content": "οδυσσευς"}]}),
            plain("alone", T0 + 2, request={"messages": [{"role": "user", "content": "Σ 1"}]}),
        ],
        [],
    )
    assert ids(all_calls(store, project, CallFilter(search="ς"))) == {"upper", "final", "alone"}
    assert ids(all_calls(store, project, CallFilter(search="ΕΥΣ"))) == {"upper"}


def test_a_metadata_filter_finds_numbers_and_objects_as_the_record_shows_them_on_every_store(
    store: SQLStore,
) -> None:
    # Found by tests/test_store_diff.py: values were compared as text each database wrote its own way:
    # SQLite wrote 1/3 with 15 digits and 1e-7 as "1.0e-07", PostgreSQL's jsonb an object with spaces,
    # so the value copied from the call found it on one store only.
    project = store.create_project("default")
    metadata = {"third": 1 / 3, "tiny": 1e-7, "n": 5.0, "nested": {"a": None, "b": [1, 2]}, "s": "5"}
    store.write(project, [plain("hit", T0, metadata=metadata), plain("miss", T0 + 1)], [])
    shown = json.loads(json.dumps(store.get_call(project, "hit")["metadata"]))  # as the API answers
    for key, value in shown.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        assert ids(all_calls(store, project, CallFilter(metadata={key: text}))) == {"hit"}, (key, text)
    # A number by its value, an object whatever its spacing and key order; a string only by its text.
    for key, text in (("n", "5"), ("nested", '{"b": [1, 2], "a": null}'), ("s", "5")):
        assert ids(all_calls(store, project, CallFilter(metadata={key: text}))) == {"hit"}, (key, text)
    for key, text in (("third", "0.333333333333333"), ("s", "5.0"), ("nested", '{"a": null}')):
        assert ids(all_calls(store, project, CallFilter(metadata={key: text}))) == set(), (key, text)


@pytest.mark.service
def test_a_postgres_metadata_filter_sends_its_value_once_and_pages_along_calls_time(
    postgres_server: Any,
) -> None:
    """The filter sent the same JSON twice, as two parameters, when its text spells nothing but a string;
    one parameter, it must still find what it found, and a page must still walk the newest calls by
    `calls_time` (a plain `=` made PostgreSQL scan and sort all 20,000 calls here instead)."""
    store = open_store(postgres_server.create_database())
    assert isinstance(store, SQLStore)
    store.migrate()
    project = store.create_project("default")
    calls = [plain(f"c{i}", T0 + i, metadata={"team": f"t{i % 50}", "n": i % 7}) for i in range(20_000)]
    for i in range(0, len(calls), 5000):
        store.write(project, calls[i : i + 5000], [])
    with store._write() as cur:
        cur.execute("ANALYZE calls")
    for key, text, expected in (("team", "t3", 400), ("n", "3", 2857), ("team", "3", 0)):
        conds, params = store._where(project, CallFilter(metadata={key: text}))
        # The project, the key, and the JSON of what the text may be: each sent once.
        assert len(params) == 3 and params[1] == key, params
        rows, _ = store.list_calls(project, CallFilter(metadata={key: text}), limit=5000)
        assert len(rows) == expected, (key, text)
        sql = store._q(
            f"SELECT c.call_id FROM calls c WHERE {' AND '.join(conds)} "
            "ORDER BY c.start_time DESC, c.call_id DESC LIMIT 50"
        )
        with store._read() as cur:
            cur.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Index Scan Backward using calls_time" in plan and "Sort" not in plan, plan
    store.close()


def test_a_metadata_filter_finds_a_key_that_json_escapes_and_refuses_no_value_on_every_store(
    store: SQLStore,
) -> None:
    # Found by tests/test_store_diff.py: SQLite matched a JSON path's key against the key as the record's
    # JSON text escapes it, so a key with a tab or a newline was never found there (it was on PostgreSQL);
    # and a value with a NUL, sent to PostgreSQL as JSON, failed the query instead of finding nothing.
    project = store.create_project("default")
    metadata = {"a\tb": "tab", "line\nbreak": 5, "\x1f": True}
    store.write(project, [plain("hit", T0, metadata=metadata), plain("miss", T0 + 1)], [])
    for key, text in (("a\tb", "tab"), ("line\nbreak", "5"), ("\x1f", "true")):
        assert ids(all_calls(store, project, CallFilter(metadata={key: text}))) == {"hit"}, key
    assert ids(all_calls(store, project, CallFilter(metadata={"a\tb": "tab\x00"}))) == set()


def test_a_record_without_trace_ids_does_not_move_a_call_out_of_its_otel_trace(store: SQLStore) -> None:
    # The OTel span arrives first with the application's trace; the core record comes later without ids,
    # so the collector derives ids from the call id (ingest.normalize). The real ones must stay.
    from litelens.server.ingest import normalize

    project = store.create_project("default")
    trace, span = "ab" * 16, "cd" * 8
    from_span = plain("c-1", T0, trace_id=trace, span_id=span, cost_usd=None)
    store.write(
        project,
        [normalize(from_span)],
        [
            {
                "trace_id": trace,
                "span_id": span,
                "name": "chat",
                "start_time": T0,
                "end_time": T0 + 0.1,
                "call_id": "c-1",
            }
        ],
    )
    core = normalize(plain("c-1", T0, cost_usd=0.5, request={"messages": [{"role": "user", "content": "x"}]}))
    assert core["trace_id"] != trace
    store.write(project, [core], [])
    stored = store.get_call(project, "c-1")
    assert stored is not None
    assert (stored["trace_id"], stored["span_id"], stored["cost_usd"]) == (trace, span, 0.5)
    assert stored["request"]["messages"][0]["content"] == "x"
    assert [c["call_id"] for c in store.get_trace(project, trace)["calls"]] == ["c-1"]
    # Real ids still win over real ids: a newer version that names another trace moves the call.
    store.write(project, [dict(core, trace_id="ef" * 16, span_id="12" * 8)], [])
    assert store.get_trace(project, trace)["calls"] == []


def test_a_session_page_and_its_totals_agree_while_its_calls_are_written(
    store: SQLStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session page (`GET /api/sessions/{id}`, the dashboard's) shows totals and a page of calls.
    Read by two queries, a call stored in between -- a live session, the server's writer, another
    collector on the same database -- was on the page but not in the totals. Here that write is made
    to land exactly there: from another store (its own connection), right after the totals were read."""
    from types import SimpleNamespace

    from litelens.server.api import session_page

    project = store.create_project("default")
    store.write(project, [make("first", T0, session="live")], [])
    other = open_store(store_url)
    read_totals = store.session_totals

    def totals_then_a_write_lands(project_id: int, session_id: str) -> Any:
        totals = read_totals(project_id, session_id)
        other.write(project, [make("second", T0 + 1, session="live")], [])
        return totals

    monkeypatch.setattr(store, "session_totals", totals_then_a_write_lands)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(store=store)))
    try:
        totals, (calls, _) = asyncio.run(session_page(request, project, "live", 50, None))  # type: ignore[arg-type]
    finally:
        other.close()
    assert totals is not None and totals["calls"] == len(calls) == 1, (totals, calls)
    assert [c["call_id"] for c in calls] == ["first"]
    monkeypatch.undo()  # the next read sees both, agreeing again
    totals, (calls, _) = store.session_page(project, "live")
    assert totals is not None and totals["calls"] == len(calls) == 2


def test_a_page_of_calls_shows_each_call_with_its_tags_while_retention_deletes_them(
    store: SQLStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`list_calls` (the calls table, `/api/calls`, the live tail) reads a page of calls, then their
    tags. Read apart, retention (or another collector's) deleting calls in between left the page
    showing them without their tags. Here that delete lands exactly there: from another store (its
    own connection), right after the page was read."""
    project = store.create_project("default")
    store.write(project, [plain(f"old-{i}", T0 + i, tags=["billing", f"n{i}"]) for i in range(3)], [])
    other = open_store(store_url)
    read_page = store._page

    def page_then_retention_runs(*args: Any, **kwargs: Any) -> Any:
        page = read_page(*args, **kwargs)
        assert other.delete_older_than(T0 + 60) == 3
        return page

    monkeypatch.setattr(store, "_page", page_then_retention_runs)
    try:
        rows, _ = store.list_calls(project, CallFilter(tag="billing"))
    finally:
        other.close()
    # As of one moment: the calls as they were, each with its tags (they are gone only after).
    assert {c["call_id"]: c["tags"] for c in rows} == {f"old-{i}": ["billing", f"n{i}"] for i in range(3)}
    monkeypatch.undo()
    assert store.list_calls(project)[0] == []


def test_traces_and_sessions(store: SQLStore) -> None:
    project = store.create_project("default")
    calls = [make(f"s{i}", T0 + i * 10, session=f"sess-{i % 3}", trace=TRACE) for i in range(9)]
    calls[4] = make("s4", T0 + 40, session="sess-1", trace=TRACE, error="APIError")
    spans = [
        {"trace_id": TRACE, "span_id": "1" * 16, "name": "agent", "kind": "internal", "start_time": T0 - 1,
         "end_time": T0 + 100, "status": "ok", "attributes": {"step": 1, "tool": "search"}, "resource": {"service.name": "bot"},
         "status_message": "search timed out", "events": [{"name": "exception", "time": T0, "attributes": {"a": 1}}]},
        {"trace_id": TRACE, "span_id": calls[0]["span_id"], "parent_span_id": "1" * 16, "name": "chat gpt-4o-mini",
         "start_time": T0, "end_time": T0 + 1, "call_id": "s0"},
    ]  # fmt: skip
    store.write(project, calls, spans)
    # A later report of the same span fills a gap and blanks nothing.
    store.write(
        project,
        [],
        [{"trace_id": TRACE, "span_id": "1" * 16, "start_time": T0 - 1, "status": None, "kind": "server"}],
    )
    # A sender's updated copy (OTLP) with other attributes and neither end time nor status: its values
    # win per key, and it erases nothing the first copy had. A retried identical export changes nothing.
    update = {
        "trace_id": TRACE,
        "span_id": "1" * 16,
        "start_time": T0 - 1,
        "status": "UNSET",
        "attributes": {"step": 2},
    }
    store.write(project, [], [update])
    store.write(project, [], [update])
    trace = store.get_trace(project, TRACE)
    assert [s["name"] for s in trace["spans"]] == ["agent", "chat gpt-4o-mini"]
    assert (
        trace["spans"][0]["attributes"] == {"step": 2, "tool": "search"}
        and trace["spans"][0]["status"] == "ok"
    )
    assert trace["spans"][0]["end_time"] == T0 + 100
    assert trace["spans"][0]["status_message"] == "search timed out"
    assert trace["spans"][0]["events"] == [{"name": "exception", "time": T0, "attributes": {"a": 1}}]
    assert (trace["spans"][1]["status_message"], trace["spans"][1]["events"]) == (None, [])
    assert trace["spans"][0]["kind"] == "server" and trace["spans"][1]["call_id"] == "s0"
    assert [c["call_id"] for c in trace["calls"]] == [f"s{i}" for i in range(9)]
    assert store.get_trace(project, "f" * 32) == {"spans": [], "calls": []}

    sessions, cursor = store.list_sessions(project, T0, T0 + 1000, limit=2)
    assert [s["session_id"] for s in sessions] == ["sess-2", "sess-1"] and cursor is not None
    rest, cursor = store.list_sessions(project, T0, T0 + 1000, limit=2, cursor=cursor)
    assert [s["session_id"] for s in rest] == ["sess-0"] and cursor is None
    s1 = sessions[1]
    assert (s1["calls"], s1["errors"], s1["tokens"]) == (3, 1, 3 * 19)
    assert s1["first_time"] == T0 + 10 and s1["cost_usd"] == pytest.approx(3 * 0.00042)
    in_session = store.list_calls(project, CallFilter(session_id="sess-1"), descending=False)[0]
    assert [c["call_id"] for c in in_session] == ["s1", "s4", "s7"]
    totals = store.session_totals(project, "sess-1")
    assert totals is not None and (totals["calls"], totals["errors"]) == (3, 1)
    assert store.session_totals(project, "sess-none") is None
    # A later version of a call that names another session moves it; the emptied session disappears.
    moved = [make(f"s{i}", T0 + i * 10, session="sess-9", trace=TRACE) for i in (2, 5, 8)]
    store.write(project, moved, [])
    counts = {s["session_id"]: s["calls"] for s in store.list_sessions(project, T0, T0 + 1000, limit=10)[0]}
    assert counts == {"sess-0": 3, "sess-1": 3, "sess-9": 3}


def test_a_session_names_its_first_user_and_is_found_by_any_of_its_users(store: SQLStore) -> None:
    """A support engineer looks for the conversation user X had: the sessions list names each session's
    user (the end user, else the user id: the user the calls table shows), says how many users a shared
    session had, and filters to the sessions in which X made any call, not only those X started."""
    project = store.create_project("default")
    other = store.create_project("other")
    records = [
        # Stored out of order: the first user is the one of the earliest call, not of the first stored.
        plain("b1", T0 + 20, session_id="shared", end_user="bob"),
        plain("a1", T0 + 10, session_id="shared", end_user="alice"),
        plain("c1", T0 + 30, session_id="shared", user_id="carol"),  # no end user: the user id
        plain("a2", T0 + 40, session_id="shared", end_user="alice", user_id="u-9"),
        plain("n1", T0 + 5, session_id="shared"),  # no user at all: not a user of the session
        plain("d1", T0 + 50, session_id="solo", user_id="u-dave"),
        plain("x1", T0 + 60, session_id="anonymous"),
    ]
    store.write(project, records[:1], [])
    store.write(project, records[1:], [])
    store.write(other, [plain("o1", T0, session_id="theirs", end_user="alice")], [])

    def listed(**kw: Any) -> dict[str, tuple[Any, Any]]:
        rows = store.list_sessions(project, T0 - 60, T0 + 600, **kw)[0]
        return {r["session_id"]: (r["user"], r["users"]) for r in rows}

    assert listed() == {"shared": ("alice", 3), "solo": ("u-dave", 1), "anonymous": (None, 0)}
    assert listed(user="bob") == {"shared": ("alice", 3)}  # not its first user, still found
    assert listed(user="carol") == {"shared": ("alice", 3)}
    assert listed(user="u-dave") == {"solo": ("u-dave", 1)}
    assert listed(user="u-9") == {}  # a user id behind an end user is not the call's user
    assert listed(user="nobody") == {}
    totals = store.session_totals(project, "shared")
    assert totals is not None and (totals["user"], totals["users"]) == ("alice", 3)
    assert store.session_page(project, "solo")[0]["user"] == "u-dave"  # type: ignore[index]

    # Paged under the filter: every session of the user, each once.
    store.write(
        project, [plain(f"p{i}", T0 + 100 + i, session_id=f"p-{i}", end_user="bob") for i in range(5)], []
    )
    pages, cursor = [], None
    while True:
        rows, cursor = store.list_sessions(project, T0 - 60, T0 + 600, limit=2, cursor=cursor, user="bob")
        pages.append([r["session_id"] for r in rows])
        if cursor is None:
            break
    assert pages == [["p-4", "p-3"], ["p-2", "p-1"], ["p-0", "shared"]]

    # A later version of a call that names another user (the proxy's end user arrives with the span)
    # changes the session's users; so does retention, which leaves the session its later calls.
    store.write(project, [plain("a1", T0 + 10, session_id="shared", end_user="erin")], [])
    assert listed(user="erin") == {"shared": ("erin", 4)}
    assert store.delete_older_than(T0 + 15) == 3  # n1, a1 and the other project's o1
    assert listed(user="erin") == {}
    assert listed()["shared"] == ("bob", 3)


def test_a_version_8_database_learns_the_users_of_its_sessions(store_url: str) -> None:
    """Schema v9 keeps each session's users. A database written before it has the calls but not the
    users: once upgraded, its sessions name their first user, count their users and are found by any
    of them, as if this release had written them, and go on counting new calls."""
    rng = random.Random(9)
    records = [
        plain(
            f"v8-{i:03d}",
            T0 + rng.uniform(-3600, 3600),
            end_user=rng.choice([None, "", "alice", "bob"]),
            user_id=rng.choice([None, "u-1", "u-2"]),
            session_id=rng.choice([None, "s-a", "s-b", "s-c", f"s-{i}"]),
        )
        for i in range(150)
    ]
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records[:70], [])
    new.write(pid, records[70:], [])

    def answers(s: SQLStore) -> list[Any]:
        out: list[Any] = [s.list_sessions(pid, T0 - 7200, T0 + 7200, limit=1000)[0]]
        out += [s.list_sessions(pid, T0 - 7200, T0 + 7200, limit=1000, user=u)[0] for u in ("alice", "u-2")]
        out += [s.session_totals(pid, sid) for sid in ("s-a", "s-b", "s-c")]
        return out

    expected = answers(new)
    sessions = {row["session_id"]: row for row in expected[0]}
    firsts = sorted(
        (r for r in records if r["session_id"] == "s-a" and (r["end_user"] or r["user_id"])),
        key=lambda r: r["start_time"],
    )
    assert sessions["s-a"]["user"] == (firsts[0]["end_user"] or firsts[0]["user_id"])
    assert sessions["s-a"]["users"] == len({r["end_user"] or r["user_id"] for r in firsts}) > 1
    assert {row["session_id"] for row in expected[1]} == {
        str(r["session_id"]) for r in records if r["session_id"] and r["end_user"] == "alice"
    }
    with new._write() as cur:
        _back_to_v8(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == 8
    assert upgraded.migrate() == upgraded.latest_version
    assert answers(upgraded) == expected
    upgraded.write(pid, [plain("v9-call", T0 - 7000, session_id="s-a", end_user="zoe")], [])
    totals = upgraded.session_totals(pid, "s-a")
    assert totals is not None and (totals["user"], totals["users"]) == ("zoe", sessions["s-a"]["users"] + 1)
    upgraded.close()


def test_a_database_from_before_cancelled_calls_were_counted_learns_them(store_url: str) -> None:
    """Rollups count cancelled calls since schema v10 (SQLite; v11 on PostgreSQL). A database written
    before counted them as ok; once upgraded it answers as if this release had written it, per group
    and bucket at every resolution, and goes on counting."""
    rng = random.Random(10)
    long_tag = "x" * 250
    records = [
        plain(
            f"c-{i:03d}",
            T0 + rng.uniform(-2 * 3600, 2 * 3600),
            request_model=rng.choice(["gpt-x", "openai/gpt-x", "other"]),
            provider=rng.choice(["openai", None]),
            status=rng.choice(["ok", "ok", "error", "cancelled"]),
            end_user=rng.choice([None, "alice", "bob"]),
            user_id=rng.choice([None, "u-1"]),
            tags=rng.sample(["a", "b", long_tag], rng.randrange(0, 3)),
            proxy={"key_alias": rng.choice(["team-a", "team-b"])},
        )
        for i in range(150)
    ]
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records[:70], [])
    new.write(pid, records[70:], [])

    def answers(s: SQLStore) -> list[Any]:
        return _rollup_answers(s, pid)

    expected = answers(new)
    cancelled = sum(r["status"] == "cancelled" for r in records)
    assert sum(row["cancelled"] for row in expected[0]) == cancelled > 0
    tags = {row["group"]: row for row in expected[-2][0]}
    assert tags[long_tag]["cancelled"] == sum(
        r["status"] == "cancelled" for r in records if long_tag in r["tags"]
    )
    with new._write() as cur:
        _back_to_before_cancelled(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == _cancelled_version(upgraded) - 1
    assert upgraded.migrate() == upgraded.latest_version
    assert answers(upgraded) == expected
    upgraded.write(pid, [plain("c-new", T0, status="cancelled")], [])
    rows = upgraded.aggregate(pid, T0 - 3 * 3600, T0 + 3 * 3600, 86400)
    assert sum(row["cancelled"] for row in rows) == cancelled + 1
    upgraded.close()


def test_sessions_count_their_cancelled_calls_apart_and_an_older_database_learns_them(store_url: str) -> None:
    """A stream the caller abandoned is neither ok nor failed: the overview counts it apart, while a
    session counted it as a call only, so its list row and its totals could not say how many of its
    calls got an answer. Sessions written before (schema v11 on SQLite, v12 on PostgreSQL) learn theirs
    when the database is upgraded, and go on counting."""
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("default")
    statuses = ["ok", "cancelled", "error", "cancelled", "ok"]
    new.write(
        pid,
        [plain(f"s{i}", T0 + i, session_id="sess", status=st, cost_usd=0.25) for i, st in enumerate(statuses)]
        + [plain("other", T0 + 9, session_id="other")],
        [],
    )
    new.write(pid, [plain("s1", T0 + 1, session_id="sess", status="cancelled", cost_usd=0.25)], [])  # again

    def figures(s: SQLStore) -> list[tuple[Any, ...]]:
        listed = s.list_sessions(pid, T0 - 60, T0 + 60)[0]
        totals = s.session_totals(pid, "sess")
        assert totals is not None
        rows = sorted(
            (r["session_id"], r["calls"], r["errors"], r["cancelled"], r["tokens"], r["cost_usd"])
            for r in listed
        )
        return [
            *rows,
            (
                totals["calls"],
                totals["errors"],
                totals["cancelled"],
                totals["input_tokens"] + totals["output_tokens"],
            ),
        ]

    # As the overview counts the same calls: 5 calls, 1 failed, 2 cancelled, tokens and cost of all five.
    [overview] = new.aggregate(pid, T0 - 60, T0 + 60, 3600 * 24 * 365 * 200)
    assert (overview["count"] - 1, overview["errors"], overview["cancelled"]) == (5, 1, 2)
    expected = [("other", 1, 0, 0, 15, 0.001), ("sess", 5, 1, 2, 75, pytest.approx(1.25)), (5, 1, 2, 75)]
    assert figures(new) == expected
    with new._write() as cur:
        _back_to_before_session_cancelled(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == _session_cancelled_version(upgraded) - 1
    assert upgraded.migrate() == upgraded.latest_version
    assert figures(upgraded) == expected
    upgraded.write(pid, [plain("s9", T0 + 20, session_id="sess", status="cancelled")], [])
    assert figures(upgraded)[-1][:3] == (6, 1, 3)
    # Retention recomputes the session from the calls that remain.
    upgraded.delete_older_than(T0 + 2)
    assert figures(upgraded)[-1][:3] == (4, 1, 2)
    upgraded.close()


def _bounds_of_rollups(s: SQLStore, pid: int) -> list[tuple[Any, ...]]:
    with s._read() as cur:
        cur.execute(
            s._q(
                "SELECT resolution, dim, bucket, value, latency_min, latency_max, ttft_min, ttft_max "
                "FROM rollups WHERE project_id = ? ORDER BY resolution, dim, bucket, value"
            ),
            (pid,),
        )
        return [tuple(r) for r in cur.fetchall()]


def test_a_database_from_before_rollups_kept_their_bounds_learns_them(store_url: str) -> None:
    """Rollups keep each row's least and greatest latency and TTFT since schema v14 (SQLite; v15 on
    PostgreSQL). A database written before has the calls: once upgraded, every row at every resolution
    holds the bounds this release would have written, so a large group's percentiles stay between its
    fastest and slowest call, and new calls widen them."""
    rng = random.Random(14)
    long_tag = "y" * 250
    H0 = math.floor(T0 / 3600) * 3600
    records = _past_the_bin("edge", H0 + 3)
    for i in range(150):
        stream = rng.random() < 0.5
        records.append(
            plain(
                f"r-{i:03d}",
                T0 + rng.uniform(-2 * 3600, 2 * 3600),
                rng.lognormvariate(6, 1),
                stream=stream,
                ttft_ms=rng.uniform(20, 900) if stream else None,
                request_model=rng.choice(["gpt-x", "openai/gpt-x", "other"]),
                provider=rng.choice(["openai", None]),
                end_user=rng.choice([None, "alice", "bob"]),
                user_id=rng.choice([None, "u-1"]),
                tags=rng.sample(["a", "b", long_tag], rng.randrange(0, 3)),
                proxy={"key_alias": rng.choice(["team-a", "team-b"])},
            )
        )
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    new.write(pid, records[:200], [])
    new.write(pid, records[200:], [])
    expected, bounds = _rollup_answers(new, pid), _bounds_of_rollups(new, pid)
    alls = {r["call_id"]: r for r in records}
    assert [b[4:6] for b in bounds if b[:2] == (3600, "all")] == [
        (
            min(r["duration_ms"] for r in alls.values() if math.floor(r["start_time"] / 3600) * 3600 == hour),
            max(r["duration_ms"] for r in alls.values() if math.floor(r["start_time"] / 3600) * 3600 == hour),
        )
        for hour in sorted({b[2] for b in bounds if b[:2] == (3600, "all")})
    ]
    # Rollups that count a call the calls table no longer holds (calls and rollups that disagree): no
    # bounds can be read for them, and they must clamp nothing rather than read as "no value".
    lost = new.create_project("lost")
    new.write(lost, [plain("gone", T0, 321.0)], [])
    with new._write() as cur:
        cur.execute(new._q("DELETE FROM calls WHERE project_id = ?"), (lost,))
        _back_to_before_bounds(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == _bounds_version(upgraded) - 1
    assert upgraded.migrate() == upgraded.latest_version
    assert _bounds_of_rollups(upgraded, pid) == bounds
    assert {b[4:] for b in _bounds_of_rollups(upgraded, lost)} == {(0.0, 1e300, None, None)}
    assert [r["latency_p50_ms"] for r in upgraded.aggregate(lost, T0 - 60, T0 + 60, 60)] == [
        pytest.approx(321.0, rel=PERCENTILE_RELATIVE_ERROR)
    ]
    assert _rollup_answers(upgraded, pid) == expected
    edge = records[:350]
    [row] = [r for r in upgraded.top_groups(pid, H0, H0 + 3600, "model")[0] if r["group"] == "edge-model"]
    assert _outside_bounds([row], {"edge-model": edge}) == []
    # Ten new calls ~9% slower, in the same bin: the group's slowest calls now, and its p99.
    later = [
        plain(
            f"later{i}",
            H0 + 1800 + i,
            _low_edge(1000.0) * 1.09,
            request_model="edge-model",
            provider="openai",
        )
        for i in range(10)
    ]
    upgraded.write(pid, later, [])
    [row] = [r for r in upgraded.top_groups(pid, H0, H0 + 3600, "model")[0] if r["group"] == "edge-model"]
    exactly = _nearest_rank([r["duration_ms"] for r in edge + later], 0.99)
    assert row["count"] == 360 and exactly == later[0]["duration_ms"]
    assert abs(row["latency_p99_ms"] - exactly) <= PERCENTILE_RELATIVE_ERROR * exactly, row
    upgraded.close()


def test_a_resent_span_merges_its_attributes_alike_on_every_store(store: SQLStore) -> None:
    """A later copy's null never erases a value, keys keep their order, and an escaped NUL in the later
    copy merges like any other text (PostgreSQL's jsonb cannot hold one)."""
    project = store.create_project("default")
    span = {"trace_id": TRACE, "span_id": "2" * 16, "name": "tool", "start_time": T0, "end_time": T0 + 1}
    store.write(project, [], [{**span, "attributes": {"zeta": "first", "a": 1, "long.key.name": "x"}}])
    store.write(project, [], [{**span, "attributes": {"zeta": None, "a": 2, "b": "nul\x00here"}}])
    store.write(project, [], [{**span, "attributes": {"zeta": None, "a": 2, "b": "nul\x00here"}}])
    # Two copies of a new span in one batch merge the same way.
    other = {**span, "span_id": "3" * 16}
    store.write(project, [], [{**other, "attributes": {"k": "v"}}, {**other, "attributes": {"k": ""}}])
    spans = {s["span_id"]: s for s in store.get_trace(project, TRACE)["spans"]}
    attributes = spans["2" * 16]["attributes"]
    assert list(attributes.items()) == [
        ("zeta", "first"),
        ("a", 2),
        ("long.key.name", "x"),
        ("b", "nul\x00here"),
    ]
    assert spans["3" * 16]["attributes"] == {"k": "v"}


def test_top_errors_count_failed_calls_per_class_in_the_range_and_project(store: SQLStore) -> None:
    project = store.create_project("default")
    other = store.create_project("other")
    classes = ["RateLimitError"] * 5 + ["APIError"] * 3 + ["Timeout"] * 2
    records = [make(f"e{i}", T0 + i * 60, error=cls) for i, cls in enumerate(classes)]
    records += [make(f"ok{i}", T0 + i * 60) for i in range(6)]
    records.append(make("late", T0 + 7200, error="APIError"))
    store.write(project, records, [])
    store.write(other, [make("theirs", T0, error="Timeout")], [])
    top = store.top_errors(project, T0, T0 + 3600)
    assert [(r["error_type"], r["count"]) for r in top] == [
        ("RateLimitError", 5),
        ("APIError", 3),
        ("Timeout", 2),
    ]
    assert top[0]["last_time"] == T0 + 4 * 60
    assert [r["error_type"] for r in store.top_errors(project, T0, T0 + 3600, limit=2)] == [
        "RateLimitError",
        "APIError",
    ]
    assert sum(r["count"] for r in store.top_errors(project, T0, T0 + 9000)) == 11
    assert store.top_errors(other, T0 - 60, T0 + 60) == [
        {"error_type": "Timeout", "count": 1, "last_time": T0}
    ]
    assert store.top_errors(project, T0 + 9000, T0 + 9999) == []
    assert [p["name"] for p in store.list_projects()] == ["default", "other"]


def test_top_errors_list_a_class_before_the_failures_without_one_that_tie_with_it(store: SQLStore) -> None:
    # SQLite sorted the failures without a class (NULL) first, PostgreSQL last: a tie read differently.
    project = store.create_project("default")
    failed = [
        plain(f"f{i}", T0 + i, status="error", error={"type": "Timeout"} if i else {}) for i in range(2)
    ]
    store.write(project, failed, [])
    assert [r["error_type"] for r in store.top_errors(project, T0, T0 + 60)] == ["Timeout", None]


def test_top_groups_rank_like_the_whole_range_aggregate_and_count_every_group(store: SQLStore) -> None:
    project = store.create_project("default")
    rng = random.Random(3)
    records = [
        make(
            f"g{i:03d}",
            T0 - 1800 + rng.random() * 4 * 3600,  # ragged edges: minute, 5-minute and hour rows
            end_user=f"user-{min(int(rng.expovariate(0.5)), 9)}",
            model=rng.choice(["a", "b", "c"]),
            tags=rng.sample(["x", "y", "z", "w"], 2),
            duration=rng.uniform(0.1, 3),
            stream=rng.random() < 0.5,
            error="APIError" if rng.random() < 0.2 else None,
        )
        for i in range(300)
    ]
    store.write(project, records, [])
    start, end = T0 - 1234.5, T0 + 3 * 3600 + 77.7
    for group_by in ("user", "model", "tag", "provider"):
        whole = store.aggregate(project, start, end, 3600 * 24 * 365 * 200, group_by)  # type: ignore[arg-type]
        expected = sorted(whole, key=lambda r: (-r["count"], r["group"]))
        top, groups = store.top_groups(project, start, end, group_by, limit=3)  # type: ignore[arg-type]
        assert groups == len(expected), group_by
        assert [r["group"] for r in top] == [r["group"] for r in expected[:3]], group_by
        for got, want in zip(top, expected, strict=False):
            assert got["cost_usd"] == pytest.approx(want["cost_usd"])
            assert {k: v for k, v in got.items() if k not in ("bucket", "cost_usd")} == {
                k: v for k, v in want.items() if k not in ("bucket", "cost_usd")
            }
    assert store.top_groups(project, T0 + 86400, T0 + 90000, "model") == ([], 0)
    with pytest.raises(ValueError):
        store.top_groups(project, start, end, "record")  # type: ignore[arg-type]


def test_top_calls_are_the_slowest_and_costliest_in_the_range(store: SQLStore) -> None:
    project = store.create_project("default")
    other = store.create_project("other")
    records = [
        plain(f"t{i:02d}", T0 + i * 60, duration_ms=100.0 + (i * 37) % 50, cost_usd=i / 1000)
        for i in range(40)
    ]
    records.append(plain("before", T0 - 60, duration_ms=99_999.0, cost_usd=9.0))
    records.append(plain("after", T0 + 3600, duration_ms=99_999.0, cost_usd=9.0))
    store.write(project, records, [])
    store.write(other, [plain("theirs", T0, duration_ms=88_888.0)], [])
    in_range = [r for r in records if T0 <= r["start_time"] < T0 + 3600]
    slowest = store.top_calls(project, T0, T0 + 3600, "duration_ms", 5)
    expected = sorted(in_range, key=lambda r: (r["duration_ms"], r["call_id"]), reverse=True)[:5]
    assert [c["call_id"] for c in slowest] == [r["call_id"] for r in expected]
    costliest = store.top_calls(project, T0, T0 + 3600, "cost_usd", 3)
    assert [c["call_id"] for c in costliest] == ["t39", "t38", "t37"]
    assert "tags" in costliest[0] and costliest[0]["duration_ms"] > 0
    assert store.top_calls(project, T0 + 7200, T0 + 9000) == []
    with pytest.raises(ValueError):
        store.top_calls(project, T0, T0 + 1, "record")  # type: ignore[arg-type]


def test_export_streams_full_records_in_pages(store: SQLStore) -> None:
    project = store.create_project("default")
    records = [make(f"e{i:03d}", T0 + i, tags=["even" if i % 2 == 0 else "odd"]) for i in range(45)]
    store.write(project, records, [])
    stream = store.export(project, CallFilter(tag="even"), page_size=4)
    assert not isinstance(stream, list)
    got = list(stream)
    assert [r["call_id"] for r in got] == [f"e{i:03d}" for i in range(0, 45, 2)]
    assert got[0]["request"]["messages"][0]["role"] == "user"


def test_an_export_lists_the_calls_as_they_were_when_it_began_each_once(store: SQLStore) -> None:
    """A call stored again with another start time (its OTel span and its core record disagree by a few
    ms) while an export runs: moved past the export's position it was exported twice, moved before it
    not at all. The pages are asked for from whichever thread the server's response runs in."""
    project = store.create_project("default")
    store.write(project, [make(f"x{i:02d}", T0 + i) for i in range(12)], [])
    stream = store.export(project, page_size=3)
    pages = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    try:
        first = [pages.submit(next, stream).result()["call_id"] for _ in range(4)]
        assert first == ["x00", "x01", "x02", "x03"]
        # x01, exported, is moved to the end; x10, not yet exported, to the start; x12 is new.
        moved = [make("x01", T0 + 20), make("x10", T0 - 5), make("x12", T0 + 5.5)]
        store.write(project, moved, [])
        rest = [record["call_id"] for record in pages.submit(list, stream).result()]
    finally:
        pages.shutdown()
    assert first + rest == [f"x{i:02d}" for i in range(12)]
    assert [r["call_id"] for r in store.export(project)] == [
        "x10",
        *(f"x{i:02d}" for i in (0, 2, 3, 4, 5)),
        "x12",
        *(f"x{i:02d}" for i in (6, 7, 8, 9, 11)),
        "x01",
    ], "the next export sees what was written"


def test_exports_at_once_hold_a_bounded_number_of_connections_and_all_finish(
    store: SQLStore, store_url: str
) -> None:
    """Each export reads through a connection of its own, outside the pools: many downloads at once took
    as many database connections (PostgreSQL's `max_connections` is ~100, shared with ingest). Past
    `MAX_EXPORT_SNAPSHOTS` an export reads each page as of its own moment, and finishes all the same."""
    project = store.create_project("default")
    store.write(project, [make(f"b{i:02d}", T0 + i) for i in range(10)], [])

    def connections() -> int:
        if store_url.startswith("sqlite"):
            # A SQLite connection takes no server's slot (and SQLite keeps a closed one's file open
            # for the next, for its POSIX locks' sake): only the exports finishing is checked there.
            return 0
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else 0

    assert len(list(store.export(project, page_size=3))) == 10  # the pools have what they keep
    before = connections()
    exports = [store.export(project, page_size=3) for _ in range(MAX_EXPORT_SNAPSHOTS + 3)]
    firsts = [next(export)["call_id"] for export in exports]
    assert connections() - before <= MAX_EXPORT_SNAPSHOTS
    assert firsts == ["b00"] * len(exports)
    for export in exports:
        assert [r["call_id"] for r in export] == [f"b{i:02d}" for i in range(1, 10)]
    assert connections() == before


def test_two_stores_writing_interleaved_lose_and_duplicate_nothing(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    stores[0].migrate()
    stores[1].migrate()
    project = stores[0].create_project("shared")
    assert stores[1].create_project("shared") == project
    errors: list[BaseException] = []

    def run(s: Store, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for b in range(15):
                # Half the ids are shared by both writers: the same calls arriving through two collectors.
                batch = [plain(f"shared{b}-{i}", T0 + b + i / 100) for i in range(10)]
                batch += [plain(f"own{seed}-{b}-{i}", T0 + b) for i in range(10)]
                rng.shuffle(batch)
                s.write(project, batch, [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, n)) for n, s in enumerate(stores) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = all_calls(stores[0], project)
    assert len(rows) == len(ids(rows)) == 15 * 10 + 2 * 15 * 10
    [agg] = stores[1].aggregate(project, T0 - 60, T0 + 3600, 7200)
    assert agg["count"] == len(rows)
    for s in stores:
        s.close()


_KILL_CHILD = textwrap.dedent(
    """
    import sys
    from litelens.server.store import open_store

    store = open_store(sys.argv[1])
    project = store.create_project("kill")
    batch = 0
    while True:
        records = [
            {"schema": "litelens.call/1", "call_id": f"k{batch}-{i}", "call_type": "chat", "stream": False,
             "start_time": 1790000000.0 + batch, "end_time": 1790000001.0 + batch, "duration_ms": 1000.0,
             "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}, "status": "ok",
             "request": {"messages": [{"role": "user", "content": "x" * 2000}]}}
            for i in range(25)
        ]
        store.write(project, records, [])
        print(batch, flush=True)
        batch += 1
    """
)


def test_acknowledged_batches_survive_sigkill(store_url: str, tmp_path: Path) -> None:
    setup = open_store(store_url)
    setup.migrate()
    setup.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD, store_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    acked: list[int] = []
    try:
        for line in child.stdout:
            acked.append(int(line))
            if len(acked) >= 40:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait(timeout=30)
    acked += [int(x) for x in rest.split()]  # acknowledgements already in the pipe when it died
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 40

    after = open_store(store_url)
    project = after.create_project("kill")
    stored = {r["call_id"] for r in after.export(project)}
    missing = [f"k{b}-{i}" for b in acked for i in range(25) if f"k{b}-{i}" not in stored]
    assert not missing, f"acknowledged but lost: {missing[:5]}"
    [agg] = after.aggregate(project, 1_790_000_000 - 60, 1_790_000_000 + 3600, 7200)
    assert agg["count"] == len(stored)  # the rollups committed with the calls, never apart
    after.close()


def test_memory_store_and_bad_urls() -> None:
    s = open_store("sqlite:///:memory:")
    s.migrate()
    project = s.create_project("p")
    s.write(project, [plain("m1", T0)], [])
    assert ids(s.list_calls(project)[0]) == {"m1"}
    s.close()
    with pytest.raises(ValueError, match="absolute path"):
        open_store("sqlite://relative.db")
    with pytest.raises(ValueError, match="unsupported"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="call_id"):
        s2 = open_store("sqlite:///:memory:")
        s2.migrate()
        s2.write(s2.create_project("p"), [{"start_time": T0}], [])


_MEMORY_CHILD = textwrap.dedent(
    """
    import json, sys, threading, time, uuid
    from pathlib import Path
    from litelens.server.store import open_store

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    store = open_store(sys.argv[1])
    store.migrate()
    project = store.create_project("memory")
    text = "lorem ipsum " * 2700  # ~32 KB of content a call: 160 MB in all, more than any cache holds
    before = rss_mb()
    for batch in range(100):
        store.write(project, [
            {"schema": "litelens.call/1", "call_id": str(uuid.uuid4()), "call_type": "chat", "stream": False,
             "request_model": "m", "status": "ok", "start_time": 1_790_000_000.0 + batch,
             "end_time": 1_790_000_001.0 + batch, "duration_ms": 1000.0,
             "request": {"messages": [{"role": "user", "content": text}]}}
            for _ in range(50)
        ], [])
    written = rss_mb()
    # Four exports at once: each holds one of the four reader connections until it has read everything.
    threads = [threading.Thread(target=lambda: sum(1 for _ in store.export(project))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"before": before, "written": written, "exported": rss_mb()}))
    """
)


def test_a_sqlite_servers_page_caches_stay_within_their_budget(sqlite_url: str) -> None:
    """160 MB written into a new database, then exported four times at once: the process grows by about
    the writer's 64 MiB cache and the readers' 8 MiB each. The writer of a new database grew 127 MB
    (its cache counted in 4 KiB pages that became 8 KiB), and four exports left 4 x 64 MiB of reader
    caches (+397 MB) behind. Bounds are the budgets plus a margin for Python and malloc, relative to
    the same process's memory before, so they do not depend on the machine's speed."""
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, sqlite_url], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rss = json.loads(out.stdout)
    assert rss["written"] - rss["before"] < 64 + 32, rss
    assert rss["exported"] - rss["written"] < 4 * 8 + 96, rss


def test_count_calls_counts_the_filtered_calls_up_to_its_limit(store: SQLStore) -> None:
    """The live tail's count of the calls a burst had it skip: the same filters as the list, and no more
    work than the limit however many match."""
    project = store.create_project("default")
    other = store.create_project("other")
    store.write(
        project,
        [make(f"c-{i}", T0 + i, error="RateLimitError" if i % 3 == 0 else None) for i in range(30)],
        [],
    )
    store.write(other, [make("elsewhere", T0 + 1)], [])
    window = CallFilter(start=T0 + 10, end=T0 + 20)
    assert store.count_calls(project, window) == len(all_calls(store, project, window)) == 10
    failed = CallFilter(start=T0 + 10, end=T0 + 20, status="error")
    assert store.count_calls(project, failed) == len(all_calls(store, project, failed)) == 3
    assert store.count_calls(project) == 30 and store.count_calls(project, limit=7) == 7
    assert store.count_calls(other) == 1 and store.count_calls(project, CallFilter(start=T0 + 99)) == 0


# --------------------------------------------------------------------------------------------------
# Arrival: the order in which calls were stored, for the live tails


def _arrived_after(store: Store, pid: int, position: int) -> list[str]:
    """The call ids a live tail reads after `position`, in the order they were stored (paged by 7)."""
    return [
        r["call_id"]
        for r in all_calls(store, pid, CallFilter(arrived_after=position), sort="arrival", descending=False)
    ]


def test_calls_are_found_in_the_order_they_were_stored_whatever_their_start(store: SQLStore) -> None:
    """A live tail asks for the calls stored after the last it read. Asked by start time, a call from a
    client whose clock runs 30 minutes slow, or a long stream stored when it ended, lay behind what the
    tail asked for, and never showed."""
    pid = store.create_project("arrivals")
    assert store.latest_arrival(pid) == 0
    now = time.time()
    store.write(pid, [plain("first", now - 5), plain("second", now - 4)], [])
    position = store.latest_arrival(pid)
    assert position > 0 and _arrived_after(store, pid, 0) == ["first", "second"]
    # A slow clock, a late spool, a long stream: started long before what the tail has read.
    store.write(pid, [plain("slow-clock", now - 1800)], [])
    store.write(pid, [plain("spooled", now - 3600), plain("stream", now - 1200, duration_ms=1_200_000)], [])
    later = _arrived_after(store, pid, position)
    assert later == ["slow-clock", "spooled", "stream"]
    rows = all_calls(store, pid, CallFilter(arrived_after=position), sort="arrival", descending=False)
    assert rows[0]["arrival"] < rows[1]["arrival"] == rows[2]["arrival"] == store.latest_arrival(pid)
    assert ids(
        all_calls(store, pid, CallFilter(arrived_after=position, arrived_through=rows[0]["arrival"]))
    ) == {"slow-clock"}
    position = store.latest_arrival(pid)
    assert _arrived_after(store, pid, position) == []
    # An unchanged retry stores nothing and arrives nowhere; a later version merged into a call does.
    store.write(pid, [plain("first", now - 5)], [])
    assert store.latest_arrival(pid) == position and _arrived_after(store, pid, position) == []
    store.write(pid, [plain("first", now - 5, usage={"input_tokens": 99, "output_tokens": 1})], [])
    assert _arrived_after(store, pid, position) == ["first"]
    # Other projects' calls take arrivals too, but are not this project's.
    other = store.create_project("others")
    store.write(other, [plain("elsewhere", now)], [])
    assert _arrived_after(store, pid, store.latest_arrival(pid)) == []
    assert store.latest_arrival(other) > store.latest_arrival(pid)


def test_a_call_arrives_after_one_retention_deleted_at_the_latest_arrival(store: SQLStore) -> None:
    """The counter never goes back: a late call retention deletes at once (it started before the cutoff)
    held the latest arrival, and giving its number again would put the next call where a tail has
    already read."""
    pid = store.create_project("retention")
    store.write(pid, [plain("kept", T0 + 100)], [])
    store.write(pid, [plain("ancient", T0 - 10 * 86400)], [])
    read_through = store.latest_arrival(pid)
    assert store.delete_older_than(T0) == 1
    store.write(pid, [plain("next", T0 + 200)], [])
    assert _arrived_after(store, pid, read_through) == ["next"]


def test_arrivals_count_on_alike_where_sqlite_is_too_old_to_return_what_it_updated(tmp_path: Path) -> None:
    """SQLite before 3.35 (RHEL 8's 3.26, Debian 11's 3.34) has no `UPDATE ... RETURNING`: the store
    takes its arrival in two statements there, and both ways number calls alike in one database."""

    class OldSQLite(SQLiteStore):
        _RETURNING = False

    path = str(tmp_path / "arrivals.db")
    returning, older = SQLiteStore(path), OldSQLite(path)
    returning.migrate()
    pid = returning.create_project("arrivals")
    for i in range(4):
        (returning if i % 2 else older).write(pid, [plain(f"c{i}", T0 - i * 60)], [])
    assert _arrived_after(older, pid, 0) == ["c0", "c1", "c2", "c3"]
    assert [r["arrival"] for r in all_calls(returning, pid, sort="arrival", descending=False)] == [1, 2, 3, 4]
    assert older.latest_arrival(pid) == returning.latest_arrival(pid) == 4
    returning.close()
    older.close()


def test_a_database_from_before_arrivals_numbers_its_calls_in_start_order(store_url: str) -> None:
    """Schema v16 (SQLite; v17 on PostgreSQL) keeps each call's arrival. The calls stored before have
    theirs numbered in start order, all before any call stored after the upgrade, which a tail started
    then reads and no other."""
    new = open_store(store_url)
    assert isinstance(new, SQLStore)
    new.migrate()
    pid = new.create_project("legacy")
    other = new.create_project("other")
    new.write(pid, [plain("c-late", T0 + 30), plain("c-early", T0 - 30)], [])
    new.write(other, [plain("o-mid", T0)], [])
    new.write(pid, [plain("c-mid", T0 + 1)], [])
    expected = [r for r in all_calls(new, pid, sort="start_time") if r.pop("arrival")]
    with new._write() as cur:
        _back_to_before_arrival(new, cur)
    new.close()

    upgraded = open_store(store_url)
    assert isinstance(upgraded, SQLStore)
    assert upgraded.schema_version() == _arrival_version(upgraded) - 1
    assert upgraded.migrate() == upgraded.latest_version
    assert _arrived_after(upgraded, pid, 0) == ["c-early", "c-mid", "c-late"]
    assert _arrived_after(upgraded, other, 0) == ["o-mid"]
    # One numbering for the whole store, as the counter gives arrivals: c-early, o-mid, c-mid, c-late.
    assert upgraded.latest_arrival(pid) == 4 and upgraded.latest_arrival(other) == 2
    assert [r for r in all_calls(upgraded, pid, sort="start_time") if r.pop("arrival")] == expected
    position = upgraded.latest_arrival(pid)
    upgraded.write(pid, [plain("after-upgrade", T0 - 3600)], [])
    upgraded.write(other, [plain("o-after", T0)], [])
    assert _arrived_after(upgraded, pid, position) == ["after-upgrade"]
    assert upgraded.latest_arrival(pid) == 5 and upgraded.latest_arrival(other) == 6
    upgraded.close()


def test_a_tail_reading_while_writers_commit_concurrently_misses_no_call(store_url: str) -> None:
    """Several collectors (each its own store and connections) write at once while a tail reads what
    arrived after the greatest arrival it has read. An arrival taken before an earlier one commits
    (a sequence value taken outside the write lock) would be committed behind a later one the tail has
    passed already, and its calls never read."""
    writers = [open_store(store_url) for _ in range(3)]
    reader = open_store(store_url)
    assert isinstance(reader, SQLStore)
    reader.migrate()
    pid = reader.create_project("concurrent")
    written: set[str] = set()
    read: list[str] = []
    done = threading.Event()

    def write(n: int, store: Store) -> None:
        for b in range(25):
            batch = [plain(f"w{n}-b{b:02d}-{i}", T0 - b * 60 + i) for i in range(4)]
            store.write(pid, batch, [])
            written.update(r["call_id"] for r in batch)

    def poll(position: int) -> int:
        rows = all_calls(reader, pid, CallFilter(arrived_after=position), sort="arrival", descending=False)
        read.extend(r["call_id"] for r in rows)
        return max([position, *(r["arrival"] for r in rows)])

    def tail() -> None:
        position = 0
        while not done.is_set():
            position = poll(position)
        poll(position)  # once more after the last commit

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(writers)]
    follower = threading.Thread(target=tail)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join()
    for s in (*writers, reader):
        s.close()
    assert len(written) == 300
    assert sorted(read) == sorted(written)  # every call, each once
