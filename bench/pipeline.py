"""CPU per record of the default redaction + sampling chain, against baselines in the same run.

    python bench/pipeline.py [--records 2000] [--rounds 7] [--before REF]
    python bench/pipeline.py --check 20000 [--before REF]

`--check N` times nothing: it runs N generated records and 5N texts through this engine and the one at
REF and says how many came out different (an engine change must be exact; see `check_exact`).

Records are ~2 KB realistic chat calls (system prompt, a user turn with dates, amounts and order
numbers, a tool call with JSON arguments, an answer, metadata); one in four carries planted personal
data (an email, a phone number, a card, an IP). Every configuration processes a shallow copy of each
record (redaction replaces top-level fields in place), so the copy is in the baseline too. Figures are
CPU microseconds per record (process time), the median over interleaved rounds. Chains:

- noop:           a Pipeline of one processor that returns the record (the baseline)
- json.dumps:     encoding the record once, which the callback does anyway (a second baseline)
- redact:         redact() with every kind
- redact+sample1: sample(1.0) then redact() -- every record redacted: the worst case of the default chain
- sample0.1+redact: sample(0.1) then redact(), as LITELENS_SAMPLE_RATE=0.1 LITELENS_REDACT=all builds it
- before:redact...: the same chains with `litelens/pipeline.py` and the redaction engine
                    (`litelens/redaction/`) as they are at git REF (default `main`), loaded from git
                    into this process, so "before" and "after" share one run

Every round processes records it has not seen (each round gets its own), so a redactor that remembers
strings it has already seen gains only from what real records repeat: roles, tool names, ids. A last
line measures chat records, where each call resends the conversation so far.

Last measured (2026-12-02, 15:25 UTC, 2 shared cores, load 6-11): redact 26.0 µs/record against 26.3 µs
for main (a69caeb) in the same run, json.dumps 12.9 µs (2.0x); redact+sample1 26.3 against 25.9;
sample0.1+redact 4.5; chat records 18.8 against 18.3 µs (the load hides a 3% change; the instructions
show it). In instructions (cachegrind, `--cache-sim=no`; PYTHONHASHSEED=0; redact over 1,200 minus 200
records of one kind, the 1,200 made alike in both runs; a clean record, a planted one, the bench's mix,
chat records as `make_chat(120, 10)` makes them): 245.6 k per record against 253.7 k for main (-3.2%),
a clean record 207.9 k against 216.9 k (-4.1%), a planted one 358.4 k against 367.6 k (-2.5%), chat
records 201.2 k against 208.8 k (-3.6%). At this run's rate (0.106 µs per 1,000 instructions) the goal,
30 µs, is ~283 k: met, with ~13% to spare (the rate was 0.165 at 10:15, under other load).
What went: the credential marks' fixed costs on a text where they find nothing, as in most records.
`sub_secrets` set up a generator and sorted an empty set before learning there was no start: it now
returns the text when `_secret_starts` gives none. And every mark character the text holds (the "-" of
dates and ids, the "A" and "B" that start sentences) ran a `finditer` that built a scanner and an
iterator to yield nothing: now one `search`, and `finditer` only from its first hit. A clean record's
credential scan alone: 33.9 k -> 25.3 k (finding the starts 28.6 k -> 24.5 k). Output checked the same
as main's with `--check 20000` (21,000 records, 100,000 texts: 0 differ).
Tried and dropped this time (instructions per record):
- Checking dict keys once per record instead of once per dict in `collect` (collect lists the dicts,
  one `issuperset` over `chain.from_iterable` of them, a second, checking collect only when a
  secret-named key holds a value): -1.2 k a clean record, -1.4 k a chat record. The 13 `_keys_safe`
  tests of a record cost ~18 k (a collect with no key check: 76 k against 95 k), but appending each
  dict and the one check over all keys cost nearly as much. A first form that learnt only the keys
  holding a value, as collect does, failed the one check on every record (a choice's `"index": 0`):
  +16 k.
- Telling the changed strings in C (`map(ne)`, `compress`, `filterfalse(texts.__contains__)`) instead
  of the loop after the split: 31.9 k against 27.5 k for split and loop (the split alone ~9 k): making
  six iterators costs more than a loop over a record's 16 strings.
- `_collect_container` split into a dict and a list method, nested dicts and lists walked without the
  dispatch: -1.3 k of collect's ~99 k. Calling `credentials.sub_secrets` from `scan` directly instead
  of through `TextRedactor._secrets`: no change (+0.7 k).
- Not built, by the stage figures: all credential marks in one literal scan of a byte copy where A, B,
  J, "-" and "_" became one byte. Translating a record's text costs ~12 k (~9 instructions a
  character, as `_numbers`' copy does), about what the scans it would replace cost now.
Stage figures (a clean record's text, each alone): the number scan's encode 1.3 k and translate 12.2 k,
`_SPAN_ASCII.finditer` over the copy ~27 k, the span loop ~28 k for its ~5 spans; collect ~95 k. A
planted record after the scan: ~27 k to split the output and find the changed strings, ~12.5 k to
walk the tool call's parsed arguments and ~14 k to encode them again, ~43 k to put the strings back
into the request.

Before (2026-12-02, 10:15 UTC, 2 shared cores, load 3-4; engine as at 009ecd6): redact 41.9 µs/record against 46.2 µs
for main (d1a016d) in the same run (1.10x), json.dumps 18.3 µs (2.3x); redact+sample1 41.3 against 47.0;
sample0.1+redact 6.3; chat records 30.0 against 29.5 µs (noise: -1% in instructions). In instructions
(cachegrind as below; a clean record and a planted one measured over 1,200 records of their kind, chat
records as `make_chat(120, 10)` makes them): 254.4 k per record against 272.3 k for main (-6.6%), a clean
record 213.7 k against 232.9 k (-8.2%), a planted one 363.2 k against 382.3 k (-5.0%), chat records
208.4 k against 210.6 k. The goal, 30 µs, is not reached: at this run's rate it is ~182 k on average.
What went: the number scan's spans that `_span` keeps as they are, found by shape in one match
(`_PLAIN_NUMBER`: one run of up to 12 digits, a 1-4 digit group and a 5-8 digit run as in "2024-334083",
two runs of up to 3 digits as in "252.50"). The order number cost a cache miss, two byte counts (~360 ns
each: `count` with a start and an end parses its arguments the slow way) and a `_span` call (~23 k, its
`_PHONE.search` ~6.5 k); the amount, ticket and bare numbers the look-up and the counts. The match goes
after the cache look-up, so dates and the planted spans, found there, do not pay for it. Output checked
the same as main's on 21,000 records (bench records with their planted data, and records whose messages,
tool arguments, metadata and errors hold generated number shapes: runs of every length with every gap,
dash, dot and bracket, "+", "00", leading zeros, dates, IBAN-, card- and phone-like near misses; each
through redact() with all kinds and with single kinds) and 100,000 texts through both text redactors
(`--check 20000`, which caught both wrong variants tried on it: a first group starting "0", a second
run of 4).
Tried and dropped (instructions per record on average unless said):
- The same match before the cache look-up: 262.5 k (planted 379.7 k): every cached span (the date, the
  planted phone, card and address) then pays a failed match (~450-550 ns) before its look-up.
- The same shapes without possessive quantifiers: 257.1 k against 254.4 k (a failing alternative
  backtracks into its run of digits). Python 3.10 has none, so it gets these (the same spans match).
- Letting `_SPAN_ASCII` yield only spans with 7 "0"s or 3 dots (`0(?:(?:[ ().-]*0){6}[0 ().-]*|...)`,
  no look-ahead this time): finditer 5.1 µs against 2.3 µs over a clean record's text, more than the two
  spans a record it spares cost: a repeated group runs sre's general repeat machinery at every digit.
- Gating the credential scan in `redact` by `in` tests for what every shape of `SECRET_TEXT` needs ("_",
  "=", ":", "k-", "Bearer", "Basic", "AKIA", "AIza", "xox", "eyJ", "xapp-", "glpat-", "-----BEGIN"):
  a multi-character `in` costs 0.8-1.4 µs over a 1.3 KB text ("k-" the most), so the gate costs ~9 µs
  where `sub_secrets` costs 4.8 µs; one regex for all of them, 13.8 µs (it starts with a class).
Where a clean record's 214 k went then (each stage alone, with no string known clean): collecting its
strings ~103 k; the joined scan ~115 k: the credential marks ~44 k, the numbers ~69 k, of which the byte
copy, its translation and `_SPAN_ASCII.finditer` ~42 k. A record's text (~1,300 characters) holds ~55
characters a span may start with (digits of dates, amounts, ids, hex request ids) and yields ~5 spans,
so ~50 match attempts fail. Tried and dropped against that: mapping every span character to "0" (not
only the starts; capitals to "A") and finding the runs of 7 or more with the literal regex "0000000+",
the span being the run from its first digit, "+" or "(" if 7 or more characters remain, and the IBAN
branch's short spans ("GB29 NWBK") found apart with the literal "AA00" and checked in Python. The spans
came out the same as `_SPAN_ASCII`'s on 110,000 generated ASCII texts, but cost 10.6 µs a record's text
against 6.2 µs: in that copy every space is a "0", so sre's literal search stops every few characters
(2.2 µs against 1.7 µs for `_SPAN_ASCII` on a 1.1 KB text), and `b"AA00" in` costs 1.6 µs more.
Is 30 µs within reach in pure Python? Not with this design, by these figures. A clean record's floor:
a Python walk that only gathers strings costs ~5 µs (~40 k, measured below), an exact collect no less
than ~9.4 µs (~70 k); the credential marks ~44 k (their C searches are near their floor: a
multi-character `in` is no cheaper, see above); the numbers' byte copy and regex ~40 k (the literal
search above is no cheaper) and the span loop ~15 k for ~5 spans; joining, remembering ~10 k: ~180 k,
against 214 k now. A planted record adds ~150 k (emails, the replacements, splitting, the JSON
re-encoding, the put-back walk), ~37 k on average. That is ~215 k on average, ~35 µs at this run's rate
(0.165 µs per 1,000 instructions), against the goal's ~182 k: even a collect at its exact floor leaves
the goal out of reach unless the credential marks (`litelens.credentials`, outside this engine) or the
planted path's put-back get markedly cheaper too.

Before (2026-12-02, 04:00-04:25 UTC, 2 shared cores, load 8-10; engine as at 712ddae): redact
49.2 µs/record against 48.5 µs for main in the same run (the same engine: noise), json.dumps 19.1 µs
(2.6x); a second run as the load rose, 53.3 against 54.7 µs (2.8x json.dumps 19.0); chat records
31.5-33.6 µs. In instructions (cachegrind as below): 272 k per record on average, a clean record 232 k, a
planted one 383 k, chat records 211 k. Each stage alone, on the same records: collecting a clean record's
strings ~103 k (planted 106 k), the joined scan ~133 k (planted 183 k); the two overlap the whole a little,
as the strings a real run skips as known-clean are collected and scanned here. The goal (~165 k on
average) needs both roughly halved. No structural change tried reaches even 1.25x, so none was kept
(µs below: process time of the two variants interleaved in one run, on the same new records):
- Prove a record clean in C before any walk: no C pass can, as every bench record holds a date
  ("2024-05-03") and an order number ("2024-334083") that only the phone shapes and `_span`'s checks
  tell from a phone number. And the C text sources cost more than the walk they would save, or are
  unsound: `_dump` of the content fields 15 µs, `repr` 9-14 µs, against 13.7 µs for `collect`;
  `marshal.dumps` takes 3.9 µs and checks the types exactly (it refuses subclasses), but writes a type
  and length byte before each string (a length of 97 is an "a", which hides the `\\b` of the "sk-..."
  after it), and its bytes are no ASCII text, so `_numbers` takes the slow `_SPAN`: 50 µs to scan it.
- One regex for the spans that can be a phone, card, IPv4 or IBAN, instead of the span loop's Python:
  `_PHONE_SHAPES` with `[0-9]` as `[01]` and `[1-9]` as `1` (exact on a byte copy where 1-9 became "1"),
  or-ed with the card and IPv4 shapes (IPv4 without its look-behind: a span may follow a ".") and
  `[A-Z]{2}[01]{2}`: 45.7 µs per clean record (it starts with a character class) against 11.6 µs for
  the whole of `_numbers`, and it matched in all 3,000 clean records: the date has the shape of a
  national number, which `_span` turns away by a `_DATE.fullmatch` of the whole span, something a
  look-ahead at a match's start cannot say exactly. Over the zeros copy instead (a literal start), the
  trunk shape "0[1-9]..." matches any 4-digit group, dash and 6 digits: the order number.
- Collecting breadth-first with C iterators (per level `chain.from_iterable(map(dict.values, dicts))`,
  `map(type, ...)`, `compress` by type, `map(clean.__contains__, ...)`): 60 µs against 12.8 µs for
  `collect`. A record's containers hold 2-6 items, and making each map, compress and list (0.3-0.8 µs)
  costs more than the Python loop over those few items. (A plain recursive walk that only gathers the
  strings, without the clean set, JSON text and key checks, takes 5.2 µs: the floor of any Python walk;
  with the length, clean-set and JSON-text tests but still no key, depth or object checks, 9.4 µs against
  13.8 µs: a leaner exact `collect` could save ~4 µs a record at most, under 10%.)
- Caching more across records: a new bench record shares only its roles, tool name and call id with
  the last, which `_clean` already skips; what repeats in real traffic (system prompts, the conversation
  so far) `_clean` skips too, as the chat figure shows.

Before (2026-12-01, 23:30 UTC, 2 shared cores, busy): redact 48.8 µs/record against 51.0 µs for
main (2a3aa32) in the same run (1.05x; 2.6x json.dumps), redact+sample1 49.7 against 50.1 µs,
sample0.1+redact 7.5 µs, chat records 32.4 against 31.3 µs (noise: their instructions barely moved). In
instructions (`valgrind --tool=cachegrind`, which the load does not disturb; PYTHONHASHSEED=0, redact over
1,200 minus 200 records, the records made in both runs alike): 275 k per record on average against 282 k
for 2a3aa32 (-2.7%); a clean record 238 k against 245 k, one with planted data 388 k against 396 k; chat
records 212.5 k against 213 k. What went: `_span` counted a span's digits with a `count` call per other
character, ~1.4 k instructions each (their arguments are parsed the slow way): deleting those characters
from a byte copy costs about one (-5.8 k a clean record, whose order number "2024-334083" `_span` reads);
a bare number of up to 12 digits (the tool call's "A-163301824") is let go in the span loop, without two
calls and a cache entry (-2.4 k). Tried and dropped then: collecting with a stack of (container, kind,
depth) instead of a call per container (+7 k: in 3.11 a Python call costs less than building and
unpacking the tuple); finding the credential marks with `str.find` and trying the mark regex at each hit
(a `find` with a start and a `match` cost ~1.3 k each, more than the regex engine's ~8-11 instructions a
character saves unless hits are rare) or finding "AKIA", "AIza", "Bearer", "Basic" with `str.find`
(~3-4.5 k per word against ~11 k for the "A" mark's scan: -1.5 k, not worth the code); one regex for "7
zeros or 3 dots" instead of the two byte counts (+0.4 k). Left: the order number's `_PHONE.search`
(~6.5 k of its ~15 k) could be skipped by a check of its digit runs (no "+", "(" or run starting with
"0", no later run of 2-4 digits), exact but intricate. Before (21:10 UTC, against 0161ecd): 280 k
against 288 k; a clean record 240 k against 240 k, planted 390 k against 419 k; chat 211 k against 223 k.
What went: putting the changed strings back. The general walk re-checks every container for secret-named keys, depth and objects to dump, which collect
has already ruled out; when no field needs those checks, a walk that only looks the strings up in the
scan's table (JSON text replaced as a whole, its new text put in that table first) does the same, -30 k
a planted record. History: 429 k, 338 k (ec7f8ec), 333 k, 326 k, 325 k (ba14605), 301 k (measured 298 k
by this method), 287 k, 280 k, 275 k. Where a clean record's 240 k go: ~108 k to collect its strings (Python
bytecode, about 1 k instructions a node), ~93 k the numbers (bytes.translate ~13 k, the span regex
~26 k, ~6 k per span the loop looks at, ~23 k for an order number `_span` must read, ~4 k for a ticket
number), ~34 k the credential starts (the regex engine's literal search costs ~5.5 instructions a
character, a character class ~57; `in` 0.7). A planted record adds ~100 k after the scan: ~37 k to
walk its request (a Python call costs ~2 k here, and the walk makes one per container), ~25 k to redo
the tool call's JSON text (its walk ~10 k, the JSON encoder ~15 k), the rest to split the scan's output,
find the changed strings and remember the clean ones. Tried and dropped: making `_SPAN_ASCII` yield
only spans with 7 "0"s or 3 dots (lookaheads at every start cost more than the Python they saved: +6 k);
remembering where each string sits while collecting, so that the put-back touches only the containers
on its path (a tuple of container, first and end string per container costs ~760 instructions, +13 k a
clean record for 17 containers, while the most it could save is ~32 k a planted record, ~8 k on
average: the containers on the paths are copied anyway); finding the changed strings in C (`map(ne)`,
`compress`) and remembering the clean ones with set operations (-6.5 k a planted record, but when the
scan changes a string at one place and not at another, its clean-cache accounting differs from main's,
and with it which strings later records skip). The issue's goal, under 30 µs (roughly 255 k on
average), is not reached.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).parent))

import _procs  # bench/, put on the path above
from litelens.pipeline import KINDS, Pipeline, from_env, redact, sample
from litelens.redaction.text import TextRedactor

_TEXT = (
    "the customer asked about delivery times for the order and whether the refund was processed "
    "we checked the account history and found two shipments one of which arrived late because of "
    "weather please confirm the address and preferred contact method so we can schedule a pickup"
)
WORDS = _TEXT.split(" ")


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_record(i: int, rng: random.Random) -> dict[str, Any]:
    planted = i % 4 == 0
    user = (
        f"{_sentence(rng, 25)} My order 2024-{rng.randint(100000, 999999)} was placed on 2024-05-0{i % 9 + 1} "
        f"for $1,{rng.randint(100, 999)}.50 and I got 3 items instead of 4. {_sentence(rng, 30)}"
    )
    if planted:
        user += " Reach me at jane.doe@example.com or +1 415 555 2671, card 4111 1111 1111 1111."
    answer = f"{_sentence(rng, 40)} Your ticket number is {rng.randint(10_000, 99_999)}. {_sentence(rng, 35)}"
    args = {"order_id": f"A-{rng.randint(10**8, 10**9)}", "reason": _sentence(rng, 8), "items": [1, 2]}
    if planted:
        args["ip"] = "192.168.17.42"
    return {
        "schema": "litelens.call/1",
        "call_id": f"{rng.getrandbits(128):032x}",
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "status": "ok",
        "duration_ms": 812.4,
        "request_model": "gpt-4o-mini",
        "provider": "openai",
        "usage": {"input_tokens": 412, "output_tokens": 96, "total_tokens": 508},
        "cost_usd": 0.000123,
        "tags": ["support"],
        "metadata": {"tenant": "acme", "tier": "gold", "request_id": f"{rng.getrandbits(64):x}"},
        "request": {
            "messages": [
                {"role": "system", "content": "You are a helpful support agent. " + _sentence(rng, 20)},
                {"role": "user", "content": user},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": json.dumps(args)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": _sentence(rng, 15)},
            ],
            "parameters": {"temperature": 0.2, "max_tokens": 512},
        },
        "response": {
            "id": f"chatcmpl-{i}",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
            ],
        },
        "error": None,
    }


def make_chat(n: int, turns: int, rng: random.Random) -> list[dict[str, Any]]:
    """Records of `n` conversations of `turns` calls each: every call sends the whole conversation so
    far again, as chat clients do, so most of each record's text was in the record before it."""
    out: list[dict[str, Any]] = []
    for c in range(n):
        first = make_record(c, rng)
        history = list(first["request"]["messages"][:2])
        for t in range(turns):
            record = make_record(c * turns + t, rng)
            record["request"]["messages"] = [*history, {"role": "user", "content": _sentence(rng, 30)}]
            answer = record["response"]["choices"][0]["message"]
            history = [*record["request"]["messages"], answer]
            out.append(record)
    return out


def load_before(ref: str) -> ModuleType | None:
    """`litelens.pipeline` as it is at git `ref`, with the redaction engine (`litelens.redaction`) of that
    ref too, as separate modules beside the current ones; None without git or that ref.

    The engine's imports are renamed to point at the loaded copies; `litelens.record` and
    `litelens.config` come from the working tree.
    """
    module = None
    for path, name in (
        ("redaction/text.py", "before_redaction_text"),
        ("redaction/walk.py", "before_redaction_walk"),
        ("pipeline.py", "before_pipeline"),
    ):
        source = _procs.source_at(ref, path)
        if source is None:
            if path == "pipeline.py":
                return None
            continue  # an older ref, with the engine inside pipeline.py
        source = source.replace("litelens.redaction.text", "before_redaction_text")
        source = source.replace("litelens.redaction.walk", "before_redaction_walk")
        module = _procs.load_source(name, source)
    return module


# Number shapes for `check_exact`: near misses of phones, cards, IBANs and addresses, as prose holds them.
_GAPS = [
    " ",
    " ",
    "-",
    "-",
    ".",
    "\u00a0",
    "\u2011",
    "\u2013",
    "\u202f",
    "/",
    ", ",
    "(",
    ")",
    ") ",
    "+",
    "",
    "  ",
    ":",
]
_KNOWN = [
    *("jane.doe@example.com", "bob%40corp.io", "+1 415 555 2671", "(415) 555-2671", "020 7946 0958"),
    *("+442079460958", "030 1234567", "07700 900123", "+49 30 1234567", "(11) 91234-5678"),
    *("+33 (0)1 23 45 67 89", "0049 30 1234567", "01 23 45 67 89", "4111 1111 1111 1111", "378282246310005"),
    *(
        "5500-0055-5555-5559",
        "4111 1111 1111 1111 123",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
    ),
    *("GB29 NWBK 6016 1331 9268 19", "192.168.17.42", "10.0.0.1", "1.2.3.4", "255.255.255.0", "0.0.0.0"),
    *(
        "2001:db8::8a2e:370:7334",
        "sk-proj-Abc123def456ghi789",
        "Bearer abc.def.ghijklmnopq",
        "AKIAIOSFODNN7EXAMPLE",
    ),
    *("password=hunter2x9", "https://u:p4ss@host/x?api_key=zzz123456", "2024-05-01 10:30", "1 000 000"),
    "12 34 56 78 90 11",
]


def _digits(rng: random.Random, n: int, lead: str | None) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(n))
    return lead + digits[1:] if lead is not None and n else digits


def _shape(rng: random.Random) -> str:
    k = rng.random()
    if k < 0.15:
        return rng.choice(_KNOWN)
    if k < 0.25:  # an order number's shape: a group, a gap, a run
        first = _digits(rng, rng.randint(1, 6), rng.choice([None, "0", "1", "2"]))
        return first + rng.choice(_GAPS) + _digits(rng, rng.randint(1, 13), rng.choice([None, "0"]))
    if k < 0.3:
        return (
            rng.choice(["INV", "A", "ORD", "GB", "DE", "NL", "x"])
            + rng.choice(["-", "", " "])
            + _digits(rng, rng.randint(2, 12), None)
        )
    if k < 0.35:
        date = f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}"
        return date + rng.choice(["", " 10:30", "T08", " "])
    parts = [rng.choice(["", "+", "00", "(", "0", "+1 ", "GB"])]
    for _ in range(rng.randint(1, 6)):
        parts += (_digits(rng, rng.randint(1, 9), rng.choice([None, None, "0", "1"])), rng.choice(_GAPS))
    return "".join(parts)


def _text(rng: random.Random) -> str:
    out: list[str] = []
    for _ in range(rng.randint(0, 6)):
        out += (" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6))), _shape(rng))
    return rng.choice(["", " ", ". ", "\n"]).join(out) if rng.random() < 0.5 else " ".join(out)


def _near_miss_record(i: int, rng: random.Random) -> dict[str, Any]:
    record = make_record(i, rng)
    if i % 5 == 0:
        return record
    messages = record["request"]["messages"]
    messages[1]["content"] = _text(rng)
    if rng.random() < 0.5:
        messages[0]["content"] = _text(rng)
    args = {"order_id": _shape(rng), "reason": _text(rng), "n": [rng.randint(0, 10**9), _shape(rng)]}
    messages[2]["tool_calls"][0]["function"]["arguments"] = (
        json.dumps(args) if rng.random() < 0.8 else _text(rng)
    )
    record["response"]["choices"][0]["message"]["content"] = _text(rng)
    record["metadata"]["note"] = _shape(rng)
    if rng.random() < 0.2:
        record["error"] = {"message": _text(rng)}
    if rng.random() < 0.1:
        record["api_base"] = "https://api.example.com/" + _shape(rng).replace(" ", "")
    return record


def check_exact(before: ModuleType, n: int) -> int:
    """How many of `n` generated records (bench records with their planted data, and records whose
    fields hold number shapes and near misses), bench chat records and `5 * n` texts come out of this
    engine differently than out of `before`'s. Records go through one redact() per engine, as a real
    run does (so what each remembers counts too), with all kinds and, for every third, single kinds."""
    rng = random.Random(25)
    kind_sets = [None, "phone", "card", "ip", "iban", "phone,card", "email,secret"]
    pairs = {k: (redact(k) if k else redact(), before.redact(k) if k else before.redact()) for k in kind_sets}
    records = [_near_miss_record(i, rng) for i in range(n)] + make_chat(100, 10, rng)
    differ = 0
    for i, record in enumerate(records):
        for kinds, (new, old) in pairs.items():
            if kinds is None or i % 3 == 0:
                ours, theirs = new(copy.deepcopy(record)), old(copy.deepcopy(record))
                if ours != theirs:
                    differ += 1
                    if differ <= 3:
                        print(f"differs ({kinds or 'all'}): {json.dumps(record, ensure_ascii=False)[:1500]}")
    ours_text = TextRedactor(frozenset(KINDS), [], "[{kind}]")
    theirs_text = before.TextRedactor(frozenset(before.KINDS), [], "[{kind}]")
    for _ in range(5 * n):
        text = _text(rng)
        if ours_text.scan(text) != theirs_text.scan(text):
            differ += 1
            if differ <= 3:
                print(f"differs: {text!r}")
    print(f"{len(records)} records, {5 * n} texts: {differ} differ")
    return differ


def run(chain: Callable[[dict[str, Any]], Any], records: list[dict[str, Any]]) -> float:
    start = time.process_time()
    for record in records:
        chain(dict(record))
    return (time.process_time() - start) / len(records) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", default="main", help="git ref of the 'before' pipeline ('' to skip)")
    parser.add_argument(
        "--check", type=int, default=0, help="N: compare the output with --before's, no timing"
    )
    args = parser.parse_args()
    if args.check:
        reference = load_before(args.before)
        if reference is None:
            sys.exit(f"no pipeline at git ref {args.before!r}")
        sys.exit(1 if check_exact(reference, args.check) else 0)
    rng = random.Random(7)
    batches = [[make_record(i, rng) for i in range(args.records)] for _ in range(args.rounds)]
    records = batches[0]
    sizes = [len(json.dumps(r)) for r in records]
    print(f"{len(records)} records, {statistics.mean(sizes):.0f} bytes each on average (JSON)")

    red = redact()
    chains: dict[str, Callable[[dict[str, Any]], Any]] = {
        "noop": Pipeline([lambda r: r]),
        "json.dumps": json.dumps,
        "redact": Pipeline([red]),
        "redact+sample1": Pipeline([sample(1.0), redact()]),  # its own: no strings remembered from "redact"
        "sample0.1+redact": Pipeline(from_env({"LITELENS_SAMPLE_RATE": "0.1", "LITELENS_REDACT": "all"})),
    }
    before = load_before(args.before) if args.before else None
    if before is not None:
        old = before.redact()
        chains[f"before:redact ({args.before})"] = before.Pipeline([old])
        # Its own processor, as "redact+sample1" has: one that saw the batch already skips its strings.
        chains[f"before:redact+sample1 ({args.before})"] = before.Pipeline(
            [before.sample(1.0), before.redact()]
        )
    # The redaction must have found what was planted, or the figure means nothing.
    out = redact()(dict(records[0]))
    assert "jane.doe@example.com" not in json.dumps(out) and "[CARD]" in json.dumps(out)

    results: dict[str, list[float]] = {name: [] for name in chains}
    for batch in batches:
        for name, chain in chains.items():
            results[name].append(run(chain, batch))
    base = statistics.median(results["noop"])
    dumps = statistics.median(results["json.dumps"])
    print(f"{'chain':<30} {'CPU µs/record':>14} {'- noop':>8} {'x json.dumps':>13}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<30} {med:>14.1f} {med - base:>8.1f} {med / dumps:>13.2f}")
    if before is not None:
        new, old_med = (
            statistics.median(results["redact"]),
            statistics.median(results[f"before:redact ({args.before})"]),
        )
        print(
            f"redact: {old_med:.1f} -> {new:.1f} µs/record ({old_med / new:.2f}x faster than {args.before})"
        )
        # Chats: each record repeats the conversation so far; both redactors see the same records.
        chats = [make_chat(20, 10, rng) for _ in range(args.rounds)]
        size = statistics.mean(len(json.dumps(r)) for r in chats[0])
        pair = {"redact": Pipeline([redact()]), "before": before.Pipeline([before.redact()])}
        timed: dict[str, list[float]] = {name: [] for name in pair}
        for batch in chats:
            for name, chain in pair.items():
                timed[name].append(run(chain, batch))
        new, old_med = statistics.median(timed["redact"]), statistics.median(timed["before"])
        print(
            f"chat records ({size:.0f} bytes, 10 calls per conversation): redact {old_med:.1f} -> "
            f"{new:.1f} µs/record ({old_med / new:.2f}x)"
        )


if __name__ == "__main__":
    main()
