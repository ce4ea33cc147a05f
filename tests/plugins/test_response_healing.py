"""Unit tests for the ``response-healing`` plugin."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    ToolUsePart,
)
from llmrouter_plugins import response_healing

FENCE = "```"


def _run(make_ctx, text: str, *, json_format: str | None = None):
    request = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="give me json")])])
    if json_format:
        request.response_format = ResponseFormat(type=json_format)
    ctx = make_ctx(request=request, response=ChatResponse.from_text(text), plugin_id="response-healing")
    result = response_healing.post_response(ctx)
    assert result is None
    return ctx


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'{FENCE}json\n{{"a": 1, "b": [1, 2]}}\n{FENCE}', {"a": 1, "b": [1, 2]}),
        (f'{FENCE}JSON\n{{"a": 1,}}\n{FENCE}\n', {"a": 1}),
        (f'{FENCE}\n[1, 2, 3]\n{FENCE}', [1, 2, 3]),
        (f'  {FENCE}json\n{{"a": "trunc', {"a": "trunc"}),
        ('{"a": 1, "b": 2,}', {"a": 1, "b": 2}),
        ('[1, 2, 3,]', [1, 2, 3]),
        ('{"a": {"b": [1, 2', {"a": {"b": [1, 2]}}),
        ('{"name": "Ada", "bio": "wrote the first progr', {"name": "Ada", "bio": "wrote the first progr"}),
        ("{'a': 1}", {"a": 1}),
        ('\n  {"a": 1,}  \n', {"a": 1}),
        ('{"a": "braces } inside a string", "b": 1,}', {"a": "braces } inside a string", "b": 1}),
    ],
)
def test_malformed_json_replies_are_repaired(make_ctx, text, expected) -> None:
    ctx = _run(make_ctx, text)
    healed = ctx.response.text()
    assert orjson.loads(healed) == expected
    assert healed == orjson.dumps(expected).decode()  # compact
    assert ctx.modified_by == ["response-healing"]


@pytest.mark.parametrize("fmt", ["json_object", "json_schema"])
def test_prose_around_json_is_removed_when_json_was_requested(make_ctx, fmt) -> None:
    ctx = _run(make_ctx, 'Sure! Here is the result: {"ok": true,} Let me know if you need more.', json_format=fmt)
    assert ctx.response.text() == '{"ok":true}'
    ctx = _run(make_ctx, f'Here you go:\n{FENCE}json\n{{"ok": true}}\n{FENCE}\nEnjoy!', json_format=fmt)
    assert ctx.response.text() == '{"ok":true}'
    assert ctx.modified_by == ["response-healing"]


def test_with_json_requested_bracketed_prose_before_the_payload_is_skipped(make_ctx) -> None:
    ctx = _run(make_ctx, 'Result [v2]: {"a": 1}', json_format="json_object")
    assert ctx.response.text() == '{"a":1}'


@pytest.mark.parametrize(
    "text",
    [
        "Hello there, how can I help?",
        "The answer is 42.",
        "I think {maybe} not.",
        "See reference [1] for details.",
        "[Note] this is prose in brackets",
        "[1] first footnote and more text",
        '{"a": 1} is how you write an object in JSON.',
        f'To enable it, use:\n{FENCE}json\n{{"debug": true,}}\n{FENCE}\nthen restart.',
        f"{FENCE}python\nprint({{'a': 1}})\n{FENCE}",
        "",
        "   ",
    ],
)
def test_prose_is_never_touched(make_ctx, text) -> None:
    ctx = _run(make_ctx, text)
    assert ctx.response.text() == text
    assert ctx.modified_by == []


@pytest.mark.parametrize("text", ['{"a": 1}', "[1, 2]", '  {"spaced" : [ 1 ]}\n', "42", '"a string"', "null"])
def test_valid_json_is_never_touched(make_ctx, text) -> None:
    ctx = _run(make_ctx, text, json_format="json_object")
    assert ctx.response.text() == text
    assert ctx.modified_by == []


def test_prose_without_any_payload_is_untouched_even_when_json_was_requested(make_ctx) -> None:
    ctx = _run(make_ctx, "Sorry, I cannot produce that.", json_format="json_object")
    assert ctx.response.text() == "Sorry, I cannot produce that."
    assert ctx.modified_by == []


def test_text_format_request_is_treated_like_no_format(make_ctx) -> None:
    ctx = _run(make_ctx, 'Here: {"a": 1,}', json_format="text")
    assert ctx.response.text() == 'Here: {"a": 1,}'


def test_only_text_parts_are_changed_and_other_parts_kept(make_ctx) -> None:
    response = ChatResponse(content=[
        ThinkingPart(thinking='{"not": "touched",'),
        TextPart(text='{"a": 1,}'),
        TextPart(text="plain words"),
        ToolUsePart(id="t1", name="f", input={"x": 1}),
    ])
    ctx = make_ctx(response=response, plugin_id="response-healing")
    response_healing.post_response(ctx)
    parts = ctx.response.content
    assert parts[0].thinking == '{"not": "touched",'
    assert parts[1].text == '{"a":1}'
    assert parts[2].text == "plain words"
    assert parts[3].input == {"x": 1}


def test_malformed_tool_arguments_are_repaired(make_ctx) -> None:
    response = ChatResponse(content=[ToolUsePart(id="t1", name="f", input=None, raw_arguments='{"city": "Paris",')])
    ctx = make_ctx(response=response, plugin_id="response-healing")
    response_healing.post_response(ctx)
    call = ctx.response.tool_calls()[0]
    assert call.input == {"city": "Paris"}
    assert call.raw_arguments is None
    assert ctx.modified_by == ["response-healing"]


def test_unrepairable_tool_arguments_are_kept(make_ctx) -> None:
    response = ChatResponse(content=[ToolUsePart(id="t1", name="f", input=None, raw_arguments="not json at all")])
    ctx = make_ctx(response=response, plugin_id="response-healing")
    response_healing.post_response(ctx)
    call = ctx.response.tool_calls()[0]
    assert call.input is None and call.raw_arguments == "not json at all"
    assert ctx.modified_by == []


def test_no_response_is_a_no_op(make_ctx) -> None:
    ctx = make_ctx(plugin_id="response-healing")
    assert response_healing.post_response(ctx) is None
    assert ctx.response is None


def test_settings_can_switch_off_tool_argument_repair(make_ctx) -> None:
    response = ChatResponse(content=[ToolUsePart(id="t1", name="f", input=None, raw_arguments='{"a": 1,')])
    ctx = make_ctx(response=response, settings={"repair_tool_arguments": False}, plugin_id="response-healing")
    response_healing.post_response(ctx)
    assert ctx.response.tool_calls()[0].raw_arguments == '{"a": 1,'


# Pieces replies are made of: whitespace of every kind str.strip removes, fences, brackets, prose.
_PIECES = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u2003", "\u3000", FENCE, FENCE + "json\n",
           "{", "}", "[", "]", '"a"', ":", "1", ",", "true", "null", "note", "Sure, here it is", "-", "'", "`"]


@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_the_prose_shortcut_gives_what_the_full_rules_give(text: str) -> None:
    """Without a request for JSON, a text whose first non-blank character is not a fence, ``{`` or
    ``[`` is answered at once (None): the full rules, shortcut disabled, must agree on every text."""
    got = response_healing.heal_text(text)
    real = response_healing._MAY_BE_ATTEMPT
    response_healing._MAY_BE_ATTEMPT = re.compile("")  # matches everything: the full rules decide
    try:
        assert got == response_healing.heal_text(text)
    finally:
        response_healing._MAY_BE_ATTEMPT = real
