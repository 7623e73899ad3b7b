"""The dashboard's pure-Python parts without a browser: SVG charts, time windows, the calls URL, and a
record turned into a conversation and into code that repeats the call."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from starlette.datastructures import QueryParams

import litelens.server.ui as ui_package
from litelens.server.ui import charts, conversation, query
from litelens.server.ui.render import EMPTY, fmt_cost, fmt_ms, fmt_num, fmt_pct
from litelens.server.ui.timerange import RANGES, WHOLE_RANGE_BUCKET, window

SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(markup: str) -> ET.Element:
    svg = re.search(r"<svg.*</svg>", str(markup), re.S)
    assert svg, markup
    return ET.fromstring(svg.group(0).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def test_a_line_chart_has_a_hover_column_per_bucket_gaps_for_missing_values_and_escaped_text() -> None:
    labels = ["10:00", "11:00", "12:00", "<13:00>"]
    markup = charts.line_chart(
        'Latency "<b>"',
        labels,
        [
            charts.Series("p50", [100.0, None, 300.0, 250.0], "s1"),
            charts.Series("p95", [1.0, 2.0, 3.0, 4.0], "s2"),
        ],
        fmt_ms,
    )
    assert "<b>" not in markup and "&lt;13:00&gt;" in markup
    # The same values, as a table for keyboards and screen readers.
    assert markup.count('<th scope="row">') == 4 and "<td>300 ms</td>" in markup
    svg = parse_svg(markup)
    hits = svg.findall(f"{SVG}rect[@class='hit']")
    assert len(hits) == 4
    assert hits[1].get("data-tip") == "11:00 · p50 \u2013; p95 2 ms"
    assert hits[3].find(f"{SVG}title").text == "<13:00> · p50 250 ms; p95 4 ms"  # type: ignore[union-attr]
    [p50, p95] = svg.findall(f"{SVG}path")
    # The missing value splits p50 into a lone first point (a dot) and a segment.
    assert p50.get("d", "").count("M") == 2 and p95.get("d", "").count("M") == 1
    assert len(svg.findall(f"{SVG}circle")) == 1
    axis = [t.text for t in svg.findall(f"{SVG}text")]
    assert "500 ms" in axis and "10:00" in axis  # 300 ms rounds the axis up to 500


def test_bars_stack_and_scale_to_a_readable_maximum() -> None:
    svg = parse_svg(
        charts.bar_chart(
            "Requests",
            ["a", "b"],
            [charts.Series("ok", [60, 0], "s1"), charts.Series("errors", [20, 0], "s-err")],
            fmt_num,
        )
    )
    bars = svg.findall(f"{SVG}rect[@class]")
    drawn = [b for b in bars if "bar" in (b.get("class") or "")]
    assert len(drawn) == 2  # nothing is drawn for an empty bucket
    ok, err = drawn
    assert float(err.get("y", 0)) < float(ok.get("y", 0)), "errors stack on top"
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 7, 80, 101, 2500)] == [1, 0.5, 10, 100, 200, 5000]


def test_a_count_axis_of_few_calls_labels_its_middle_tick_as_it_is() -> None:
    # Three requests make an axis of 0 to 5: its middle tick, 2.5, read "2" (and 0.5, of one call, "0").
    for most, middle in ((3, "2.5"), (1, "0.5"), (40, "25")):
        svg = parse_svg(charts.bar_chart("Requests", ["a"], [charts.Series("ok", [most], "s1")], fmt_num))
        axis = [t.text for t in svg.findall(f"{SVG}text")]
        assert axis[:3] == ["0", middle, str(int(charts.nice_ceiling(most)))], axis


def test_windows_snap_to_whole_buckets_and_cover_now() -> None:
    now = 1_790_000_123.0
    for name, (_, length, bucket) in RANGES.items():
        w = window(name, now)
        assert w.start % bucket == 0 and w.end % bucket == 0, name
        assert now - length - bucket < w.start <= now - length and w.end > now, name  # the whole range
        assert len(w.buckets()) == (w.end - w.start) // bucket
    assert window("nonsense", now).name == "24h"
    assert WHOLE_RANGE_BUCKET % 3600 == 0 and WHOLE_RANGE_BUCKET > 4_000_000_000


def test_the_calls_url_round_trips_ignores_empty_fields_and_builds_the_apis_filter() -> None:
    params = QueryParams(
        "model=gpt-4o&status=&provider=&status=bogus&tag=x&meta=team%3Dred&meta=bad&q=hi&range=7d&sort=cost_usd&order=asc"
    )
    view = query.parse(params)
    assert dict(view.filters) == {"model": "gpt-4o", "tag": "x", "q": "hi"}
    assert view.meta == ("team=red",) and (view.sort, view.order, view.range) == ("cost_usd", "asc", "7d")
    assert query.parse(QueryParams(view.query())) == view
    assert "cursor" not in view.query() and "cursor=abc" in view.query(cursor="abc")
    assert view.next_order("cost_usd") == "desc" and view.next_order("duration_ms") == "desc"
    built = query.to_filter(view, now=1000.0 + 7 * 86400)
    assert (built.model, built.tag, built.search, dict(built.metadata)) == (
        "gpt-4o",
        "x",
        "hi",
        {"team": "red"},
    )
    assert (
        built.start == window("7d", 1000.0 + 7 * 86400).start == 0.0 and built.end is None
    )  # the overview's window
    timed = query.to_filter(
        query.parse(QueryParams("since=2026-01-02T03:04&until=2026-01-02T05:00:00&range=all")), 0
    )
    assert timed.start == 1767323040.0 and timed.end == 1767330000.0
    assert query.to_filter(query.parse(QueryParams("range=all&since=garbage")), 0).start is None
    assert query.parse(QueryParams("sort=record&order=sideways")).sort == "start_time"


def test_a_linked_time_shows_in_the_form_so_applying_other_filters_keeps_it() -> None:
    # A `datetime-local` field shows nothing for `...Z`, an offset or a typo: the table was filtered by a
    # time the form did not show, and the next "Apply filters" silently dropped it.
    for given in ("2026-01-02T03:04:05Z", "2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05"):
        view = query.parse(QueryParams({"since": given, "until": given}))
        assert (view.since, view.until) == ("2026-01-02T03:04:05", "2026-01-02T03:04:05"), given
        assert query.to_filter(view, 0).start == 1767323045.0
    shown = query.parse(QueryParams({"since": "2026-01-02T03:04"}))
    assert shown.since == "2026-01-02T03:04:00" and query.parse(QueryParams(shown.query())) == shown
    # A value that is no time filters nothing, and the form shows it is not set.
    assert query.parse(QueryParams({"since": "yesterday"})).since == ""


def test_a_metadata_filter_as_typed_is_read_as_key_equals_value() -> None:
    # " =x" passed the check and reached the API without a key: a JSON 400 in place of the calls page;
    # "team = red" looked for the key "team " and found nothing.
    given = QueryParams([("meta", " =x"), ("meta", "team = red"), ("meta", "url=a=b c"), ("meta", "k")])
    view = query.parse(given)
    assert view.meta == ("team=red", "url=a=b c")
    assert dict(query.to_filter(view, 0).metadata) == {"team": "red", "url": "a=b c"}


def test_formats() -> None:
    assert [fmt_ms(v) for v in (None, 3.4, 999, 1500, 12_345)] == [
        EMPTY,
        "3 ms",
        "999 ms",
        "1.50 s",
        "12.3 s",
    ]
    assert [fmt_cost(v) for v in (None, 0, 0.00042, 0.5, 1234.5)] == [
        EMPTY,
        "$0",
        "$0.00042",
        "$0.5000",
        "$1,234.50",
    ]
    assert [fmt_num(v) for v in (12, 12_345, 2_500_000, "x")] == ["12", "12.3k", "2.5M", EMPTY]
    assert fmt_pct(0.0625) == "6.2%"


def test_big_counts_and_long_durations_read_in_a_unit_that_fits_them() -> None:
    # A month of a provider's tokens read "2500.0M" and a session's hour in calls "3600.0 s".
    assert [fmt_num(v) for v in (999_999, 2_500_000_000, -3e9, 2e12, 5e15)] == [
        "1.0M",
        "2.5B",
        "-3.0B",
        "2.0T",
        "5000.0T",
    ]
    assert [fmt_ms(v) for v in (599_000, 600_000, 2_700_000, 3_600_000, 1e9)] == [
        "599.0 s",
        "10.0 min",
        "45.0 min",
        "1.0 h",
        "277.8 h",
    ]


def test_a_duration_that_rounds_up_to_the_next_unit_is_shown_in_that_unit() -> None:
    # A call of 999.6 ms read "1000 ms" in a breakdown beside another's "1.00 s", 9.9996 s "10.00 s"
    # beside "10.0 s", and 599.99 s "600.0 s".
    assert [fmt_ms(v) for v in (999.4, 999.6, 9_999.4, 9_999.6, 599_949, 599_990, 3_599_990)] == [
        "999 ms",
        "1.00 s",
        "10.0 s",
        "10.0 s",
        "599.9 s",
        "10.0 min",
        "1.0 h",
    ]


def test_a_tiny_cost_keeps_two_significant_digits() -> None:
    # A few embedding tokens cost about a millionth of a dollar; "$0.00000" read as a call that cost nothing.
    assert [fmt_cost(v) for v in (1.2e-06, 0.000012345, 0.0042, 5e-09)] == [
        "$0.0000012",
        "$0.000012",
        "$0.00420",
        "$0.0000000050",
    ]


RECORD = {
    "call_id": "c1",
    "call_type": "chat",
    "provider": "anthropic",
    "request_model": "claude-3-5-sonnet",
    "api_base": "https://api.anthropic.com/v1",
    "stream": True,
    "request": {
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what's in it's picture?"},
                    {"type": "image", "source": {"type": "base64", "data": "..."}},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "tu1", "name": "zoom", "input": {"x": 1}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "zoomed"}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "42"},
        ],
        "tools": [{"name": "zoom"}],
        "parameters": {"temperature": 0.5, "max_tokens": 100, "metadata": {"x": 1}, "stream_options": {}},
    },
    "response": {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "A cat.",
                    "tool_calls": [
                        {"id": "call_1", "function": {"name": "lookup", "arguments": '{"q": "cat"}'}}
                    ],
                }
            }
        ]
    },
}


def test_a_record_reads_as_a_conversation_with_tool_calls_results_and_image_placeholders() -> None:
    turns = conversation.conversation(RECORD)
    assert [(t.role, t.source) for t in turns] == [
        ("system", "request"),
        ("user", "request"),
        ("assistant", "request"),
        ("user", "request"),
        ("tool", "request"),
        ("assistant", "response"),
    ]
    user = turns[1].parts
    assert [p.kind for p in user] == ["text", "image", "image"]
    assert "not shown" in user[1].text and "image/jpeg" in user[2].text
    assert turns[2].parts[0].kind == "tool_call" and turns[2].parts[0].title == "zoom tu1"
    assert json.loads(turns[2].parts[0].text) == {"x": 1}
    assert (turns[3].parts[0].kind, turns[3].parts[0].text) == ("tool_result", "zoomed")
    assert (turns[4].name, turns[4].parts[0].text) == ("call_9", "42")
    answer = turns[5].parts
    assert answer[0].text == "A cat." and answer[1].title == "lookup call_1"
    assert json.loads(answer[1].text) == {"q": "cat"}
    embedding = conversation.conversation({"call_type": "embedding", "request": {"input": ["a", "b"]}})
    assert [p.text for t in embedding for p in t.parts] == ["a", "b"]
    assert conversation.conversation({}) == []


def test_calls_that_generate_no_text_read_with_their_answers() -> None:
    def answer(call_type: str, response: dict[str, object]) -> list[tuple[str, str]]:
        turns = conversation.conversation(
            {"call_type": call_type, "request": {"input": "x"}, "response": response}
        )
        assert turns[-1].role == "assistant" and turns[-1].source == "response"
        return [(p.kind, p.text) for p in turns[-1].parts]

    assert answer("transcription", {"text": "hello there", "duration": 2.0}) == [("text", "hello there")]
    assert answer("speech", {"content_type": "audio/mpeg", "size_bytes": 3000}) == [
        ("data", "audio (audio/mpeg, 3000 bytes, not stored)")
    ]
    results = [{"flagged": True, "categories": ["hate", "violence"]}, {"flagged": False, "categories": []}]
    assert answer("moderation", {"results": results}) == [("text", "flagged: hate, violence\nnot flagged")]
    (ranking,) = answer("rerank", {"id": "r1", "results": [{"index": 1, "relevance_score": 0.9}]})
    assert ranking[0] == "data" and json.loads(ranking[1]) == [{"index": 1, "relevance_score": 0.9}]


def test_copy_as_python_and_curl_repeat_the_call_without_credentials() -> None:
    python = conversation.as_python(RECORD)
    compile(python, "copied.py", "exec")
    assert "litellm.completion(" in python and "model='anthropic/claude-3-5-sonnet'" in python
    assert "temperature=0.5" in python and "stream=True" in python
    assert "metadata" not in python and "stream_options" not in python
    curl = conversation.as_curl(RECORD)
    words = shlex.split(curl.replace("\\\n", " "))
    assert words[1] == "https://api.anthropic.com/v1/chat/completions"
    body = json.loads(words[words.index("-d") + 1])
    assert body["model"] == "claude-3-5-sonnet" and body["messages"] == RECORD["request"]["messages"]  # type: ignore[index]
    assert "$API_KEY" in curl
    embed = conversation.as_python(
        {"call_type": "embedding", "request_model": "text-embedding-3-small", "request": {"input": ["x"]}}
    )
    assert "litellm.embedding(" in embed and "input=['x']" in embed
    compile(embed, "embed.py", "exec")


IMAGE_CALL = {
    "call_type": "image_generation",
    "provider": "openai",
    "request_model": "dall-e-3",
    "request": {"input": "a cat on a mat"},
    "response": {
        "images": [
            {"url": "https://files.example/cat.png", "b64_json": None, "revised_prompt": "a tabby cat"},
            {"url": None, "b64_json": "<image: 1024 base64 chars>", "revised_prompt": None},
        ]
    },
}


def test_an_image_generation_shows_its_images_as_placeholders_and_copies_as_an_image_call() -> None:
    # The answer of an image call was missing from the conversation: only the prompt showed.
    turns = conversation.conversation(IMAGE_CALL)
    assert [(t.role, t.source) for t in turns] == [("user", "request"), ("assistant", "response")]
    answer = turns[1].parts
    assert [p.kind for p in answer] == ["text", "image", "image"] and answer[0].text == "a tabby cat"
    assert "https://files.example/cat.png" in answer[1].text and "not loaded" in answer[1].text
    assert "1024 base64 chars" in answer[2].text
    # Copied as code, it was `litellm.completion(input=...)`, a call that fails.
    python = conversation.as_python(IMAGE_CALL)
    compile(python, "image.py", "exec")
    assert "litellm.image_generation(" in python and "prompt='a cat on a mat'" in python
    words = shlex.split(conversation.as_curl(IMAGE_CALL).replace("\\\n", " "))
    assert words[1] == "https://api.openai.com/v1/images/generations"
    assert json.loads(words[words.index("-d") + 1]) == {"model": "dall-e-3", "prompt": "a cat on a mat"}


def test_every_template_and_static_file_ships_in_the_package() -> None:
    """The dashboard must work from `pip install`: each file it serves is declared as package data."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    ui_dir = Path(ui_package.__file__).parent
    package_dir = ui_dir.parent.parent  # src/litelens
    pyproject = tomllib.loads((package_dir.parent.parent / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["litelens"]
    served = [p for p in ui_dir.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert len(served) >= 5
    for path in served:
        relative = path.relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_an_embeddings_answer_and_a_responses_tool_call_read_as_the_call_returned_them() -> None:
    # An embedding's answer (the record keeps how many vectors, not the vectors) was not shown at all.
    embedding = {
        "call_type": "embedding",
        "request": {"input": ["hello world", "second"]},
        "response": {"embeddings": 2, "dimensions": 8},
    }
    answer = conversation.conversation(embedding)[-1]
    assert (answer.role, answer.source) == ("assistant", "response")
    assert [p.text for p in answer.parts] == ["2 embeddings of 8 dimensions (the vectors are not recorded)"]
    # A Responses tool call was named by its item id (fc_...), while the tool's output that answers it
    # (the next call's `function_call_output`) names its `call_id`: the two could not be matched up.
    responses = {
        "call_type": "responses",
        "request": {
            "input": [
                {
                    "type": "function_call",
                    "id": "fc_6",
                    "call_id": "call_7",
                    "name": "weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "call_7", "output": "12 degrees"},
            ]
        },
        "response": {
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_7",
                    "call_id": "call_8",
                    "name": "weather",
                    "arguments": "{}",
                }
            ]
        },
    }
    turns = conversation.conversation(responses)
    # An earlier tool call given back as input is the model's, and its output the tool's: not the user's.
    assert [(t.role, t.source) for t in turns] == [
        ("assistant", "request"),
        ("tool", "request"),
        ("assistant", "response"),
    ]
    earlier, result, call = (t.parts[0] for t in turns)
    assert earlier.title == "weather call_7"
    assert (result.kind, result.title, result.text) == ("tool_result", "tool result call_7", "12 degrees")
    assert (call.kind, call.title) == ("tool_call", "weather call_8")


def test_an_inline_image_is_named_by_its_size_in_bytes_not_by_the_characters_of_what_was_stored() -> None:
    """LiteLLM logs a long base64 image as "data:image/png;base64,[base64_data truncated: 4.0KB]", and the
    page said "52 characters" for a 4 KB image; a whole or size-capped data URL was counted in characters
    of base64 text, a third more than the image's bytes."""

    def label(url: str) -> str:
        message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
        [turn] = conversation.conversation({"request": {"messages": [message]}})
        [part] = turn.parts
        assert part.kind == "image"
        return part.text

    assert (
        label("data:image/png;base64,[base64_data truncated: 4.0KB]") == "image (image/png, 4.0KB, not shown)"
    )
    assert label("data:image/jpeg;base64," + "QUJD" * 300) == "image (image/jpeg, 900 bytes, not shown)"
    assert label("data:image/png;base64,QUI=") == "image (image/png, 2 bytes, not shown)"
    # Cut by litelens' content limit: the characters kept plus those the mark says were cut.
    capped = "data:image/webp;base64," + "QUJD" * 10 + "…[truncated 1160 chars]"
    assert label(capped) == "image (image/webp, 900 bytes, not shown)"
    assert label("data:text/plain,hello") == "image (text/plain, 5 characters, not shown)"
