"""Unit tests for the built-ins' stream transformers (``response-healing``, ``moderation``),
moderation's output check on complete replies, and the ``refusal`` response classifier."""

from __future__ import annotations

import pytest

from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    ResponseFormat,
    StreamError,
    StreamEvent,
    TextPart,
    ToolUsePart,
)
from llmrouter.testing import run_transformer
from llmrouter_plugins import moderation, refusal_classifier, response_healing

FENCE = "```"


def stream_of(*pieces: str, index: int = 0) -> list[StreamEvent]:
    return [MessageStart(id="m", model="x"), BlockStart(index=index, part=TextPart(text="")),
            *(BlockDelta(index=index, text=p) for p in pieces), BlockStop(index=index),
            MessageDelta(stop_reason="end_turn"), MessageStop()]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, BlockDelta) and e.text)


def json_request(kind: str | None = "json_object") -> ChatRequest:
    request = ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="json please")])],
                          stream=True)
    if kind:
        request.response_format = ResponseFormat(type=kind)
    return request


# -- response-healing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_healing_holds_a_json_streams_text_and_releases_it_repaired(make_ctx, kind: str) -> None:
    ctx = make_ctx(request=json_request(kind), plugin_id="response-healing")
    transformer = response_healing.stream_transformer(ctx)
    assert transformer is not None
    assert transformer.feed(BlockStart(index=0, part=TextPart(text=""))) != []
    assert transformer.feed(BlockDelta(index=0, text=f"Sure:\n{FENCE}json\n{{\"a\": 1,")) == []  # held
    out = run_transformer(transformer, [BlockDelta(index=0, text=f' "b": [1, 2,]}}\n{FENCE}'), BlockStop(index=0)])
    assert [type(e).__name__ for e in out] == ["BlockDelta", "BlockStop"]
    assert text_of(out) == '{"a":1,"b":[1,2]}'
    assert ctx.modified_by == ["response-healing"]


def test_healing_leaves_valid_json_and_other_events_as_they_are(make_ctx) -> None:
    ctx = make_ctx(request=json_request(), plugin_id="response-healing")
    events = stream_of('{"a":', ' 1}')
    out = run_transformer(response_healing.stream_transformer(ctx), events)
    assert text_of(out) == '{"a": 1}'
    assert [type(e).__name__ for e in out] == ["MessageStart", "BlockStart", "BlockDelta", "BlockStop",
                                               "MessageDelta", "MessageStop"]
    assert ctx.modified_by == []
    # A tool call's arguments pass through untouched.
    tool = [BlockStart(index=1, part=ToolUsePart(id="t", name="f")), BlockDelta(index=1, partial_json='{"x":'),
            BlockDelta(index=1, partial_json="1}"), BlockStop(index=1)]
    assert run_transformer(response_healing.stream_transformer(ctx), tool) == tool


def test_healing_costs_nothing_unless_json_was_requested(make_ctx) -> None:
    assert response_healing.stream_transformer(make_ctx(plugin=response_healing, request=json_request(None))) is None
    assert response_healing.stream_transformer(make_ctx(plugin=response_healing, request=json_request("text"))) is None


def test_healing_releases_a_block_over_max_chars_as_it_is(make_ctx) -> None:
    ctx = make_ctx(request=json_request(), settings={"max_chars": 10}, plugin_id="response-healing")
    transformer = response_healing.stream_transformer(ctx)
    transformer.feed(BlockStart(index=0, part=TextPart(text="")))
    assert transformer.feed(BlockDelta(index=0, text='{"a": 1,')) == []
    assert transformer.feed(BlockDelta(index=0, text=' "b": 2,')) == [BlockDelta(index=0, text='{"a": 1, "b": 2,')]
    assert transformer.feed(BlockDelta(index=0, text="}")) == [BlockDelta(index=0, text="}")]  # passes now
    assert transformer.feed(BlockStop(index=0)) == [BlockStop(index=0)]


def test_healing_flushes_held_text_before_an_upstream_error_and_repairs_a_cut_stream(make_ctx) -> None:
    ctx = make_ctx(request=json_request(), plugin_id="response-healing")
    error = StreamError(message="boom")
    out = run_transformer(response_healing.stream_transformer(ctx),
                          [BlockStart(index=0, part=TextPart(text="")), BlockDelta(index=0, text='{"a": 1,'), error])
    assert out[-2:] == [BlockDelta(index=0, text='{"a": 1,'), error]
    cut = run_transformer(response_healing.stream_transformer(ctx),
                          [BlockStart(index=0, part=TextPart(text="")), BlockDelta(index=0, text='{"a": "tru')])
    assert text_of(cut) == '{"a":"tru"}'


def test_healing_post_response_leaves_a_delivered_reply_alone(make_ctx) -> None:
    ctx = make_ctx(request=json_request(), response=ChatResponse.from_text('{"a": 1,}'), plugin_id="response-healing")
    ctx.delivered = True
    response_healing.post_response(ctx)
    assert ctx.response.text() == '{"a": 1,}' and ctx.modified_by == []


# -- moderation on output ---------------------------------------------------------------------------------


def test_moderation_stream_transformer_only_with_output_patterns(make_ctx) -> None:
    assert moderation.stream_transformer(make_ctx(plugin=moderation, settings={"rules": [{"tag": "x"}]})) is None


def test_moderation_ends_a_stream_whose_text_matches_even_across_deltas(make_ctx) -> None:
    ctx = make_ctx(plugin=moderation, settings={"output_patterns": ["secret-\\d+"]}, plugin_id="moderation")
    out = run_transformer(moderation.stream_transformer(ctx), stream_of("the code is sec", "ret-", "42 ok", "more"))
    assert text_of(out) == "the code is secret-"  # the delta completing the match is withheld
    assert out[-1] == StreamError(message="reply blocked by moderation output pattern 'secret-\\d+'",
                                  error_type="invalid_request_error")
    assert not any(isinstance(e, BlockStop | MessageStop) for e in out)  # nothing after the error
    clean = run_transformer(moderation.stream_transformer(ctx), stream_of("all ", "good"))
    assert clean == stream_of("all ", "good")


def test_moderation_output_window_bounds_cross_delta_matches(make_ctx) -> None:
    ctx = make_ctx(plugin=moderation, settings={"output_patterns": ["abcdef"], "output_window_chars": 2})
    out = run_transformer(moderation.stream_transformer(ctx), stream_of("abc", "def"))
    assert text_of(out) == "abcdef"  # "abc" is longer than the window: documented limit
    with pytest.raises(ValueError, match="key 'output_window_chars'"):  # checked when settings load
        make_ctx(plugin=moderation, settings={"output_patterns": ["x"], "output_window_chars": -1})


def test_moderation_replaces_a_complete_reply_that_matches(make_ctx) -> None:
    settings = {"output_patterns": ["(?i)private key"], "output_message": "withheld"}
    ctx = make_ctx(plugin=moderation, settings=settings, response=ChatResponse.from_text("here is my PRIVATE KEY"), plugin_id="moderation")
    moderation.post_response(ctx)
    assert ctx.response.text() == "withheld" and ctx.response.stop_reason == "refusal"
    assert ctx.modified_by == ["moderation"]
    fine = make_ctx(plugin=moderation, settings=settings, response=ChatResponse.from_text("nothing to see"))
    moderation.post_response(fine)
    assert fine.response.text() == "nothing to see"
    delivered = make_ctx(plugin=moderation, settings=settings, response=ChatResponse.from_text("PRIVATE KEY"))
    delivered.delivered = True
    moderation.post_response(delivered)
    assert delivered.response.text() == "PRIVATE KEY"


def test_moderation_rejects_a_bad_output_pattern_when_settings_load(make_ctx) -> None:
    with pytest.raises(ValueError, match=r"output_patterns\[1\]: invalid regular expression"):
        make_ctx(plugin=moderation, settings={"output_patterns": ["ok", "("]})
    with pytest.raises(ValueError, match="key 'output_patterns'"):
        make_ctx(plugin=moderation, settings={"output_patterns": "not a list"})


# -- refusal ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["I can't help with that.", "Sorry — I CANNOT ASSIST with this request.",
                                  "I can\u2019t help with that, but here is why."])
def test_refusal_tags_default_phrases_case_and_apostrophe_insensitively(make_ctx, text: str) -> None:
    assert refusal_classifier.classify_response(make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text(text))) == ["refusal"]


def test_refusal_leaves_ordinary_replies_and_respects_settings(make_ctx) -> None:
    assert refusal_classifier.classify_response(make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("Here you go."))) is None
    assert refusal_classifier.classify_response(make_ctx(plugin=refusal_classifier, response=None)) is None
    custom = make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("Nope, not doing that"), settings={"phrases": ["nope"],
                                                                                          "tag": "declined"})
    assert refusal_classifier.classify_response(custom) == ["declined"]
    replaced = make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("I cannot assist"), settings={"phrases": ["nope"]})
    assert refusal_classifier.classify_response(replaced) is None  # phrases replace the defaults
    late = make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("x" * 50 + " I cannot assist"), settings={"max_chars": 20})
    assert refusal_classifier.classify_response(late) is None
    stop = make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("...", stop_reason="refusal"))
    assert refusal_classifier.classify_response(stop) == ["refusal"]


def test_refusal_settings_are_typed(make_ctx) -> None:
    from pydantic import ValidationError

    settings = refusal_classifier.Settings(phrases=("nope",), tag="declined")
    ctx = make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("NOPE."), settings={})
    ctx.settings = settings  # what the router hands over once it validates tables at load
    assert refusal_classifier.classify_response(ctx) == ["declined"]
    for bad in ({"phrase": ["typo"]}, {"phrases": 3}, {"max_chars": 0}):
        with pytest.raises((ValidationError, ValueError)):
            make_ctx(plugin=refusal_classifier, response=ChatResponse.from_text("x"), settings=bad)
