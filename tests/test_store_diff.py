"""Differential test of the two stores: the same batches written to SQLite and to PostgreSQL must give the
same answer to every query, and the answer a small Python model of the documented rules gives.

Hand-written cases find what their authors thought of; here hypothesis generates batches of calls whose
names mix case, unicode, LIKE wildcards, quotes and empty strings, with ties in every sort key, NULL next
to 0, nested metadata and the same call sent twice with different fields. Each example goes into a new
project of one SQLite file and one PostgreSQL database (every table is keyed by project, so a project is
a fresh store at the cost of one row). The regressions that this test found stay below as explicit cases.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from litelens.server import fastjson
from litelens.server.ingest import parse_events
from litelens.server.store import AGGREGATE_GROUPS, SORT_KEYS, CallFilter, exact, merge_records, open_store
from litelens.server.store.base import WriteBatch
from litelens.server.store.rollup import dimension_values
from litelens.server.store.sql import SQLStore

pytestmark = pytest.mark.service

T0 = 1_790_000_000.0  # 2026-09-21, a whole hour: buckets are deterministic
# More examples to hunt for a difference (DIFF_EXAMPLES=1000); shrinking a failure to its smallest form
# can take minutes, so it is off unless DIFF_SHRINK=1.
EXAMPLES = int(os.environ.get("DIFF_EXAMPLES", "80"))
SHRINK = os.environ.get("DIFF_SHRINK") == "1"

# Names that sort, fold and match differently depending on who does it: case pairs, letters whose case
# mapping is not one-to-one (final sigma, Kelvin sign, dotted I, sharp s), LIKE wildcards, quotes,
# backslashes, a provider prefix and the empty string (stored as "no value").
NAMES = [
    "a", "A", "b", "ä", "Ä", "Köln", "KÖLN", "k", "\u212a", "ς", "Σ", "\u03c3", "ß", "\u1e9e", "İ", "i",
    "%", "_", "a_b", "a%b", "axb", "it's", 'say "hi"', "x\\y", "日本", "a b", "Z", "z", "0", "10", "9", "",
    "a\nb", "\t", "\x1f", "\u2028", "\U0001f600", "ǅ",
]  # fmt: skip
CALL_IDS = ["c1", "C1", "c-1", "c_1", "c%1", "é", "Z", "z", "call 1", "10", "9", "ä", "k", "\u212a"]
MODELS = ["gpt-4o", "openai/gpt-4o", "GPT-4o", "claude", "anthropic/claude", "m_x", "m%x", ""]
PROVIDERS = ["openai", "anthropic", "OpenAI", ""]
TRACES = [None, "A" * 32, "a" * 32, "0123456789abcdef" * 2, "not-hex"]
STARTS = [0.0, 0.0, 30.0, 59.5, 60.0, 299.9, 300.0, 3600.0, 3661.25, 86400.0]


def diff_settings(examples: int) -> Any:
    """hypothesis settings of the differential tests: no deadline (two databases per example), shrinking
    only with DIFF_SHRINK=1."""
    return settings(
        max_examples=examples,
        deadline=None,
        phases=None if SHRINK else [Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


names = st.sampled_from(NAMES)
maybe_name = st.none() | names
json_scalar = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 5, -3, 10**12])
    | st.sampled_from([0.0, 1.0, 0.5, 0.1, 1 / 3, 1e-7, 2.5e20, -0.0])
    | names
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(names, inner, max_size=2),
    max_leaves=4,
)


@st.composite
def raw_records(draw: st.DrawFn) -> dict[str, Any]:
    start = T0 + draw(st.sampled_from(STARTS))
    record: dict[str, Any] = {
        "schema": "litelens.call/1",
        "call_id": draw(st.sampled_from(CALL_IDS)),
        "start_time": start,
        "end_time": start + draw(st.sampled_from([0.0, 0.5, 2.0])),
    }
    optional: dict[str, Any] = {
        "duration_ms": st.none() | st.sampled_from([0.0, 0.5, 1.0, 100.0, 100.0, 2500.5]),
        "ttft_ms": st.none() | st.sampled_from([0.0, 50.0, 50.0, 1200.0]),
        "cost_usd": st.none() | st.sampled_from([0.0, 0.0, 0.001, 0.1, 1e-9, 2.5]),
        "status": st.sampled_from(["ok", "error", "error", "cancelled"]),
        "call_type": st.sampled_from(["chat", "embedding", "unknown"]),
        "stream": st.booleans(),
        "request_model": st.sampled_from(MODELS),
        "response_model": st.sampled_from(MODELS),
        "provider": st.sampled_from(PROVIDERS),
        "end_user": maybe_name,
        "user_id": maybe_name,
        "session_id": maybe_name,
        "trace_id": st.sampled_from(TRACES),
        "tags": st.lists(names, max_size=3),
        "metadata": st.dictionaries(names, json_value, max_size=3),
        "usage": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "input_tokens": st.sampled_from([0, 0, 3, 10]),
                "output_tokens": st.sampled_from([0, 5, 5]),
                "total_tokens": st.sampled_from([0, 15, 20]),
            },
        ),
        "error": st.none() | st.fixed_dictionaries({"type": maybe_name, "message": names}),
        "proxy": st.none() | st.fixed_dictionaries({"key_alias": maybe_name}),
        "request": st.fixed_dictionaries(
            {
                "messages": st.lists(
                    st.fixed_dictionaries({"role": st.just("user"), "content": names}), max_size=2
                )
            }
        ),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True))
    for key in chosen:
        record[key] = draw(optional[key])
    return record


SPAN_IDS = ["1" * 16, "2" * 16, "abcdef0123456789"]
spans = st.fixed_dictionaries(
    {
        "trace_id": st.sampled_from(["a" * 32, "0123456789abcdef" * 2]),
        "span_id": st.sampled_from(SPAN_IDS),
        "start_time": st.sampled_from(STARTS).map(lambda s: T0 + s),
    },
    optional={
        "parent_span_id": st.none() | st.sampled_from(SPAN_IDS),
        "name": maybe_name,
        "kind": st.sampled_from(["CLIENT", "INTERNAL"]),
        "end_time": st.none() | st.sampled_from(STARTS).map(lambda s: T0 + s + 1),
        "status": st.sampled_from([None, "UNSET", "OK", "ERROR"]),
        "status_message": maybe_name,
        "attributes": st.dictionaries(names, json_scalar, max_size=3),
        "resource": st.dictionaries(names, json_scalar, max_size=2),
        "events": st.lists(st.fixed_dictionaries({"name": names, "time": st.just(T0)}), max_size=2),
        "call_id": st.none() | st.sampled_from(CALL_IDS),
    },
)

# A scenario: batches of records and spans, each batch written by one write (a call id may recur within a
# batch and across batches: the richer fields win), or all of them by one `write_many` (group commit).
scenarios = st.tuples(
    st.lists(
        st.tuples(st.lists(raw_records(), min_size=1, max_size=6), st.lists(spans, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)


def ingested(batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The batch as the collector's `/v1/events` turns it into records and texts (the real ingest path)."""
    parsed = parse_events(json.dumps({"records": batch}).encode(), 10_000, 2**21)
    assert not parsed.rejected, parsed.rejected
    return parsed.records, parsed.texts


# --------------------------------------------------------------------------------------------------
# What the documented rules say, in Python


def reference_records(batches: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per call id, the record the store should hold: every version merged in the order written."""
    out: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for record in batch:
            have = out.get(record["call_id"])
            out[record["call_id"]] = dict(record) if have is None else merge_records(have, record)
    return out


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def matches(record: dict[str, Any], f: CallFilter) -> bool:
    """`CallFilter`'s documented meaning (search and metadata are left to the differential comparison)."""
    error = record.get("error") or {}
    proxy = record.get("proxy") or {}
    columns = {
        "provider": _text(record.get("provider")),
        "status": record.get("status") or "ok",
        "error_type": _text(error.get("type")),
        "call_type": _text(record.get("call_type")) or "unknown",
        "end_user": _text(record.get("end_user")),
        "user_id": _text(record.get("user_id")),
        "session_id": _text(record.get("session_id")),
        "trace_id": _text(record.get("trace_id")),
        "key_alias": _text(proxy.get("key_alias")),
    }
    start = record["start_time"]
    if f.start is not None and start < f.start:
        return False
    if f.end is not None and start >= f.end:
        return False
    for name, value in columns.items():
        wanted = getattr(f, name)
        if wanted and value != (wanted.lower() if name == "trace_id" else wanted):
            return False
    if f.no_error_type and columns["error_type"] is not None:
        return False
    if f.model:
        provider = columns["provider"]
        models = {_text(record.get("request_model")), _text(record.get("response_model"))} - {None}
        if f.model not in models and not (provider and f"{provider}/{f.model}" in models):
            return False
    if f.grouped_model:
        answered = _text(record.get("response_model")) or _text(record.get("request_model"))
        provider = columns["provider"]
        prefixed = f"{provider}/{f.grouped_model}" if provider else f.grouped_model
        if answered not in (f.grouped_model, prefixed):
            return False
    if f.user and (columns["end_user"] or columns["user_id"]) != f.user:
        return False
    return not (f.tag and f.tag not in (record.get("tags") or []))


def sort_value(record: dict[str, Any], sort: str) -> float:
    usage = record.get("usage") or {}
    if sort == "start_time":
        return float(record["start_time"])
    if sort == "duration_ms":
        return float(record["duration_ms"])
    if sort == "total_tokens":
        # A total of 0 next to real counts is the counts' sum, as the list shows it.
        return float(
            usage.get("total_tokens") or (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
        )
    return float(record.get("cost_usd") or 0)


# --------------------------------------------------------------------------------------------------
# Reading everything a user can read


def walk(store: SQLStore, project: int, f: CallFilter, sort: str, descending: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        rows, cursor = store.list_calls(project, f, limit=3, cursor=cursor, sort=sort, descending=descending)  # type: ignore[arg-type]
        out += rows
        if cursor is None:
            return out
        assert len(out) < 500, "the pages never end"


def filters_for(records: dict[str, dict[str, Any]]) -> list[CallFilter]:
    """Filters by every value the calls have (and a case variant of it), plus ones that match nothing."""
    seen: dict[str, set[str]] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, str) and value:
            seen.setdefault(name, set()).update({value, value.upper()})

    for r in records.values():
        for name in ("provider", "status", "call_type", "end_user", "user_id", "session_id", "trace_id"):
            add(name, r.get(name))
        add("user", r.get("end_user") or r.get("user_id"))
        add("model", r.get("request_model"))
        add("model", r.get("response_model"))
        add("model", "gpt-4o")
        add("grouped_model", r.get("response_model") or r.get("request_model"))
        add("grouped_model", "gpt-4o")
        add("error_type", (r.get("error") or {}).get("type"))
        add("key_alias", (r.get("proxy") or {}).get("key_alias"))
        for tag in r.get("tags") or []:
            add("tag", tag)
        for key, value in (r.get("metadata") or {}).items():
            if key:
                shown = value if isinstance(value, str) else json.dumps(value)
                seen.setdefault("metadata", set()).add(json.dumps([key, shown]))
                # Texts that are JSON, almost JSON, or JSON that neither database takes (NaN, 1e400).
                for text in (" 5", "5.0", "1e400", "NaN", "null", "[]", "{}", "true", "True", '"5"', "-0"):
                    seen["metadata"].add(json.dumps([key, text]))
    out = [CallFilter(), CallFilter(start=T0 + 30, end=T0 + 3600), CallFilter(no_error_type=True)]
    out.append(CallFilter(status="error", no_error_type=True))
    for name, values in sorted(seen.items()):
        for value in sorted(values):
            if name == "metadata":
                key, shown = json.loads(value)
                out.append(CallFilter(metadata={key: shown}))
            else:
                out.append(CallFilter(**{name: value}))
    for term in [
        "a",
        "A",
        "k",
        "K",
        "i",
        "%",
        "_",
        "it's",
        'say "hi"',
        "x\\y",
        "köln",
        "ς",
        "Σ",
        "ß",
        "\u212a",
        *("ä.*", "Ö[", "€", "日本", "ä\\", "Ä%", "ä_", "ǅ", "ǆ", "\n", "\x1f", "\u2028", "\U0001f600"),
    ]:
        out.append(CallFilter(search=term))
    # A NUL cannot be stored (ingest drops it), so a filter with one finds nothing on either store.
    for nul in (
        CallFilter(search="a\x00"),
        CallFilter(metadata={"a": "\x00"}),
        CallFilter(session_id="\x00"),
    ):
        out.append(nul)
    for start, end in ((T0 + 59.5, T0 + 300), (T0 + 299.9, T0 + 86400.0), (T0, T0)):
        out.append(CallFilter(start=start, end=end))
    out.append(CallFilter(status="error", provider="openai", tag="a"))
    return out


def _close(a: Any, b: Any) -> bool:
    # Sums of floats (a session's durations, a bucket's costs) may be added in another order by each
    # database: equal within 1e-9 relative. Every other value must be equal.
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and (type(a) is type(b) or {type(a), type(b)} <= {int, float})


def same(what: str, lite: Any, pg: Any) -> None:
    assert _close(lite, pg), f"{what}: SQLite and PostgreSQL differ\nsqlite:   {lite!r}\npostgres: {pg!r}"


# --------------------------------------------------------------------------------------------------


def _linguistic_database(server: Any) -> str:
    """A database that sorts and folds text by a language's rules (ICU's root locale), as one created
    under en_US.UTF-8 does, rather than the test cluster's C locale: answers must not depend on it."""
    import psycopg

    name = f"diff_icu_{next(_examples)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'")
    return str(server.url(name))


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: Any
) -> Iterator[tuple[SQLStore, SQLStore]]:
    folder: Path = tmp_path_factory.mktemp("store-diff")
    lite = open_store(f"sqlite:///{folder}/diff.db")
    pg = open_store(_linguistic_database(postgres_server))
    assert isinstance(lite, SQLStore) and isinstance(pg, SQLStore)
    lite.migrate()
    pg.migrate()
    yield lite, pg
    lite.close()
    pg.close()


_examples = itertools.count()


def compare(
    stores: tuple[SQLStore, SQLStore],
    raw: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    together: bool,
) -> None:
    """Write the batches to both stores, in a new project of each, and compare every answer."""
    lite, pg = stores
    name = f"diff-{next(_examples)}"
    batches = [(*ingested(records), batch_spans) for records, batch_spans in raw]
    ids = [store.create_project(name) for store in (lite, pg)]
    for store, pid in zip((lite, pg), ids, strict=True):
        # Each store gets its own copies: a store must not see what the other did to a record.
        mine = json.loads(json.dumps(batches))
        writes = [WriteBatch(pid, records, batch_spans, texts) for records, texts, batch_spans in mine]
        if together:
            store.write_many(writes)
        else:
            for write in writes:
                store.write(*write)
    expected = reference_records([records for records, _, _ in batches])
    check(lite, pg, ids, expected)


def check(lite: SQLStore, pg: SQLStore, ids: list[int], expected: dict[str, dict[str, Any]]) -> None:
    both = list(zip((lite, pg), ids, strict=True))

    def ask(what: str, method: str, *args: Any, **kw: Any) -> Any:
        answers = [getattr(store, method)(pid, *args, **kw) for store, pid in both]
        same(what, *answers)
        return answers[0]

    # One call, in full: as the reference merged it.
    for call_id, record in expected.items():
        got = ask(f"get_call {call_id!r}", "get_call", call_id)
        assert got == json.loads(fastjson.dumps(record)), f"get_call {call_id!r} is not the merged record"
    assert ask("get_call missing", "get_call", "no-such-call") is None

    # Lists: every filter, every sort and order, walked to the end in pages of 3.
    for n, f in enumerate(filters_for(expected)):
        combos = (
            list(itertools.product(SORT_KEYS, (True, False))) if n == 0 else [(SORT_KEYS[n % 4], n % 2 == 0)]
        )
        for sort, descending in combos:
            rows = [walk(store, pid, f, sort, descending) for store, pid in both]
            same(f"list_calls {f} sort={sort} desc={descending}", *rows)
            got = [r["call_id"] for r in rows[0]]
            if f.search is None and not f.metadata and sort == "arrival":
                # The order the store stored the calls in, which the reference does not keep: the calls
                # it finds, ordered by the arrivals they carry (which `same` found equal on both).
                assert sorted(got) == sorted(r["call_id"] for r in expected.values() if matches(r, f))
                keys = [(r["arrival"], r["call_id"]) for r in rows[0]]
                assert keys == sorted(keys, reverse=descending), f"list_calls {f} sort=arrival"
            elif f.search is None and not f.metadata:
                found = [r for r in expected.values() if matches(r, f)]
                # Calls of unknown cost come after the priced ones whichever the direction.
                unknown = [r for r in found if sort == "cost_usd" and r.get("cost_usd") is None]
                want = sorted(
                    (r for r in found if r not in unknown),
                    key=lambda r: (sort_value(r, sort), r["call_id"]),
                    reverse=descending,
                ) + sorted(unknown, key=lambda r: r["call_id"], reverse=descending)
                assert got == [r["call_id"] for r in want], f"list_calls {f} sort={sort} desc={descending}"
        if n % 3 == 0:
            exported = [list(store.export(pid, f, page_size=2)) for store, pid in both]
            same(f"export {f}", *exported)

    # What a live tail reads: the calls stored after a position, the same on both.
    latest = ask("latest_arrival", "latest_arrival")
    assert latest == max(
        (r["arrival"] for r in walk(lite, ids[0], CallFilter(), "arrival", False)), default=0
    )
    for position in (0, latest - 1, latest):
        tail = [walk(store, pid, CallFilter(arrived_after=position), "arrival", False) for store, pid in both]
        same(f"arrived after {position}", *tail)
        assert all(r["arrival"] > position for r in tail[0])

    # Traces, sessions.
    for trace_id in {r.get("trace_id") for r in expected.values()} | {"f" * 32, "a" * 32, "A" * 32}:
        ask(f"get_trace {trace_id}", "get_trace", str(trace_id))
    sessions = sorted({str(r["session_id"]) for r in expected.values() if r.get("session_id")})
    users = sorted({str(r.get("end_user") or r.get("user_id")) for r in expected.values()} | {"nobody"})
    for user in [None, *users]:
        pages = []
        for store, pid in both:
            out, cursor = [], None
            while True:
                rows, cursor = store.list_sessions(
                    pid, T0 - 10, T0 + 90000, limit=2, cursor=cursor, user=user
                )
                out += rows
                if cursor is None:
                    break
            pages.append(out)
        same(f"list_sessions user={user!r}", *pages)
        if user is None:
            assert {s["session_id"] for s in pages[0]} == set(sessions)
    ask("list_sessions partly", "list_sessions", T0 + 100, T0 + 3650)
    for session in [*sessions, "no-such-session"]:
        totals = ask(f"session_totals {session!r}", "session_totals", session)
        calls = [r for r in expected.values() if r.get("session_id") == session]
        assert (totals or {}).get("calls", 0) == len(calls), session
        for store, pid in both:
            out, cursor = [], None
            while True:
                _, (rows, cursor) = store.session_page(pid, session, 2, cursor)
                out += [r["call_id"] for r in rows]
                if cursor is None:
                    break
            assert out == [r["call_id"] for r in sorted(calls, key=lambda r: (r["start_time"], r["call_id"]))]
    order = sorted(expected.values(), key=lambda r: (r["start_time"], r["call_id"]))
    for store, pid in both:
        assert [r["call_id"] for r in store.export(pid, None, page_size=3)] == [r["call_id"] for r in order]

    # Aggregates by every dimension and several bucket sizes, over the whole range and an offset one.
    for lo, hi in ((T0 - 3600, T0 + 90000), (T0 + 45.5, T0 + 3600.5)):
        for bucket in (60, 300, 900, 3600, 86400):
            for group in (None, *AGGREGATE_GROUPS):
                rows = ask(
                    f"aggregate {lo}-{hi} bucket={bucket} group={group}", "aggregate", lo, hi, bucket, group
                )
                want: dict[tuple[int, str | None], int] = {}
                # Per row, the calls by outcome (ok, error, cancelled): a cancelled call is neither.
                outcomes: dict[tuple[int, str | None], Counter[str]] = {}
                for r in expected.values():
                    start = math.floor(r["start_time"] / 60) * 60
                    if not math.floor(lo / 60) * 60 <= start < math.ceil(hi / 60) * 60:
                        continue
                    slot = int(start // bucket) * bucket
                    for dim, value in dimension_values(r):
                        if dim == (group or "all"):
                            key = (slot, value if group else None)
                            want[key] = want.get(key, 0) + 1
                            outcomes.setdefault(key, Counter())[r.get("status")] += 1
                assert {(row["bucket"], row["group"]): row["count"] for row in rows} == want
                assert {(row["bucket"], row["group"]): (row["errors"], row["cancelled"]) for row in rows} == {
                    key: (n["error"], n["cancelled"]) for key, n in outcomes.items()
                }
        # As ranked from the histograms alone (no calls read), estimates kept within each row's bounds.
        with mock.patch.object(exact, "EXACT_MAX_CALLS", 0):
            for group in (None, *AGGREGATE_GROUPS):
                ask(f"estimated aggregate {lo}-{hi} group={group}", "aggregate", lo, hi, 3600, group)
                ask(f"estimated top_groups {lo}-{hi} {group}", "top_groups", lo, hi, group or "model", 3)
        ask(f"top_errors {lo}-{hi}", "top_errors", lo, hi)
        for group in AGGREGATE_GROUPS:
            ask(f"top_groups {lo}-{hi} {group}", "top_groups", lo, hi, group, 3)
        for sort in SORT_KEYS:
            top = ask(f"top_calls {lo}-{hi} {sort}", "top_calls", lo, hi, sort, 4)
            if sort == "cost_usd":  # the costliest: the priced calls, then (to fill up) the unknown ones
                inside = [r for r in expected.values() if lo <= r["start_time"] < hi]
                unknown = [r for r in inside if r.get("cost_usd") is None]
                costliest = sorted(
                    (r for r in inside if r not in unknown),
                    key=lambda r: (sort_value(r, sort), r["call_id"]),
                    reverse=True,
                ) + sorted(unknown, key=lambda r: r["call_id"], reverse=True)
                assert [r["call_id"] for r in top] == [r["call_id"] for r in costliest[:4]]

    # Each rollup row's bounds: the same on both stores, and holding every value of the calls it counts
    # (bounds only widen, so a call merged or deleted may leave them wider, never narrower).
    bounds = [_rollup_bounds(store, pid) for store, pid in both]
    same("rollup bounds", *bounds)
    for resolution, dim, bucket, value, *held in bounds[0]:
        counted = [
            r
            for r in expected.values()
            if int(r["start_time"] // 60 * 60) // resolution * resolution == bucket
            and (dim, value) in dimension_values(r)
        ]
        for (low, high), field in zip(
            ((held[0], held[1]), (held[2], held[3])), ("duration_ms", "ttft_ms"), strict=True
        ):
            values = [float(r[field]) for r in counted if r.get(field) is not None]
            if values:
                assert low <= min(values) and high >= max(values), (
                    resolution,
                    dim,
                    bucket,
                    value,
                    field,
                    held,
                )


def _rollup_bounds(store: SQLStore, pid: int) -> list[tuple[Any, ...]]:
    """Every rollup row's key and bounds (`rollup.Bounds`), in key order."""
    with store._read() as cur:
        cur.execute(
            store._q(
                "SELECT resolution, dim, bucket, value, latency_min, latency_max, ttft_min, ttft_max "
                "FROM rollups WHERE project_id = ? ORDER BY resolution, dim, bucket, value"
            ),
            (pid,),
        )
        return [tuple(r) for r in cur.fetchall()]


@diff_settings(EXAMPLES)
@given(scenario=scenarios)
def test_both_stores_answer_every_query_alike_and_as_documented(
    stores: tuple[SQLStore, SQLStore], scenario: tuple[list[Any], bool]
) -> None:
    compare(stores, *scenario)


# --------------------------------------------------------------------------------------------------
# What this test found, kept as explicit cases (PostgreSQL in a linguistic locale against SQLite)


def _written(stores: tuple[SQLStore, SQLStore], records: list[dict[str, Any]]) -> list[int]:
    name = f"case-{next(_examples)}"
    ids = []
    for store in stores:
        pid = store.create_project(name)
        recs, texts = ingested(json.loads(json.dumps(records)))
        store.write(pid, recs, [], texts)
        ids.append(pid)
    return ids


def test_ties_are_listed_in_the_same_order_on_both_stores_whatever_the_postgresql_locale(
    stores: tuple[SQLStore, SQLStore],
) -> None:
    # Under a linguistic collation PostgreSQL ordered `k` before `K` before `z`, SQLite by code point
    # (`K`, `Z`, `k`, `z`): calls that tie on their sort value, a call's tags, sessions that tie on their
    # last activity, top groups that tie on their count and a session's first user came out differently.
    names = ["k", "K", "z", "Z", "a", "ä", "B"]
    records = [
        {
            "call_id": name,
            "start_time": T0,
            "end_time": T0 + 1,
            "session_id": f"s-{name}",
            "end_user": name,
            "tags": list(reversed(names)),
        }
        for name in names
    ]
    records += [{"call_id": f"late-{n}", "start_time": T0 + 0.5, "end_time": T0 + 0.5, "session_id": "shared",
                 "end_user": n} for n in names]  # fmt: skip
    lite, pg = stores
    ids = _written(stores, records)
    both = list(zip(stores, ids, strict=True))
    by_code_point = sorted(names)
    for store, pid in both:
        rows = walk(store, pid, CallFilter(start=T0, end=T0 + 0.1), "start_time", False)
        assert [r["call_id"] for r in rows] == by_code_point, store
        assert rows[0]["tags"] == by_code_point, store
        sessions = store.list_sessions(pid, T0, T0 + 10, limit=100)[0]
        assert [s["session_id"] for s in sessions] == [f"s-{n}" for n in reversed(by_code_point)] + ["shared"]
        assert store.session_totals(pid, "shared")["user"] == by_code_point[0], store  # type: ignore[index]
        top, _ = store.top_groups(pid, T0, T0 + 60, "user", 3)
        assert [g["group"] for g in top] == by_code_point[:3], store
    check(lite, pg, ids, reference_records([ingested(records)[0]]))


def test_an_ascii_search_folds_ascii_letters_only_on_both_stores_whatever_the_postgresql_locale(
    stores: tuple[SQLStore, SQLStore],
) -> None:
    # PostgreSQL's ILIKE folded by the database's locale: under a linguistic one `k` also found the Kelvin
    # sign (which SQLite's LIKE, folding ASCII only, does not), so `q=k` found more calls there.
    kelvin = "\u212a"
    records = [
        {"call_id": "kelvin", "start_time": T0, "end_time": T0, "metadata": {"unit": f"0 {kelvin}"}},
        {"call_id": "upper", "start_time": T0, "end_time": T0, "metadata": {"unit": "0 K"}},
    ]
    ids = _written(stores, records)
    for store, pid in zip(stores, ids, strict=True):
        found = {r["call_id"] for r in walk(store, pid, CallFilter(search="0 k"), "start_time", True)}
        assert found == {"upper"}, store
        found = {r["call_id"] for r in walk(store, pid, CallFilter(search=f"0 {kelvin}"), "start_time", True)}
        assert found == {"kelvin"}, store


@diff_settings(max(5, EXAMPLES // 4))
@given(scenario=scenarios, cutoff=st.sampled_from(STARTS[1:]))
def test_both_stores_answer_alike_after_retention(
    stores: tuple[SQLStore, SQLStore], scenario: tuple[list[Any], bool], cutoff: float
) -> None:
    """Retention deletes the calls that started before the cutoff on each store, takes them out of the
    rollups and sessions, and both answer every query as if only the remaining calls had been written.
    (It deletes in every project of the store: the projects of earlier examples are not read again.)"""
    lite, pg = stores
    name = f"retention-{next(_examples)}"
    raw, _ = scenario
    batches = [(*ingested(records), batch_spans) for records, batch_spans in raw]
    ids = [store.create_project(name) for store in stores]
    for store, pid in zip(stores, ids, strict=True):
        mine = json.loads(json.dumps(batches))
        store.write_many(
            [WriteBatch(pid, records, batch_spans, texts) for records, texts, batch_spans in mine]
        )
    expected = reference_records([records for records, _, _ in batches])
    deleted = [store.delete_older_than(T0 + cutoff, batch=2) for store in stores]
    assert deleted[0] == deleted[1]
    left = {call_id: r for call_id, r in expected.items() if r["start_time"] >= T0 + cutoff}
    check(lite, pg, ids, left)
