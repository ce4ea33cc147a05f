"""Unit tests for the ``moderation`` plugin."""

from __future__ import annotations

import pytest

from llmrouter.context import Flow
from llmrouter.errors import InvalidRequest
from llmrouter.models import ChatRequest, Message, TextPart, ToolResultPart
from llmrouter_plugins import moderation

CONFIG = {
    "rules": [
        {"tag": "pii", "action": "refuse", "message": "I can't handle personal data."},
        {"pattern": "(?i)pass(word)?", "action": "error"},
    ]
}


def _run(make_ctx, *, text="hello", tags=(), settings=None, config=None, request=None):
    config = CONFIG if config is None else config
    ctx = make_ctx(
        text=text,
        request=request,
        tags=list(tags),
        settings=config if settings is None else settings,
        config_settings=config,
        plugin_id="moderation",
    )
    return ctx, moderation.pre_request(ctx)


def test_clean_request_continues(make_ctx) -> None:
    ctx, flow = _run(make_ctx, text="what is the weather", tags=["chat"])
    assert flow is None
    assert ctx.response is None


def test_tag_rule_refuses_with_its_message(make_ctx) -> None:
    ctx, flow = _run(make_ctx, tags=["code", "pii"], request=ChatRequest(model="gpt-x", messages=[]))
    assert flow is Flow.STOP
    assert ctx.response.text() == "I can't handle personal data."
    assert ctx.response.stop_reason == "end_turn"
    assert ctx.response.model == "gpt-x"


def test_pattern_rule_errors_naming_the_rule(make_ctx) -> None:
    with pytest.raises(InvalidRequest, match=r"moderation rule pattern '\(\?i\)pass\(word\)\?'") as info:
        _run(make_ctx, text="my PASSWORD is hunter2")
    assert info.value.status == 400


def test_pattern_is_quoted_as_written(make_ctx) -> None:
    config = {"patterns": [r"\bsecret\b"], "action": "error"}
    with pytest.raises(InvalidRequest) as info:
        _run(make_ctx, text="a secret", config=config)
    assert info.value.message == r"request blocked by moderation rule pattern '\bsecret\b'"


def test_named_rule_is_named_in_the_error(make_ctx) -> None:
    config = {"rules": [{"name": "secrets", "pattern": "sk-[a-z0-9]{8}", "action": "error"}]}
    with pytest.raises(InvalidRequest, match="moderation rule 'secrets'"):
        _run(make_ctx, text="key sk-abcdef12", config=config)


def test_patterns_search_system_and_tool_results(make_ctx) -> None:
    req = ChatRequest(model="m", system=[TextPart(text="the password is x")], messages=[])
    with pytest.raises(InvalidRequest):
        _run(make_ctx, request=req)
    req = ChatRequest(model="m", messages=[Message(role="user", content=[
        ToolResultPart(tool_use_id="t", content=[TextPart(text="Pass: 1234")]),
    ])])
    with pytest.raises(InvalidRequest):
        _run(make_ctx, request=req)


def test_first_matching_rule_wins(make_ctx) -> None:
    ctx, flow = _run(make_ctx, text="password", tags=["pii"])
    assert flow is Flow.STOP


def test_rule_with_tag_and_pattern_needs_both(make_ctx) -> None:
    config = {"rules": [{"tag": "code", "pattern": "rm -rf", "action": "refuse"}]}
    assert _run(make_ctx, text="rm -rf /", config=config)[1] is None
    assert _run(make_ctx, text="ls", tags=["code"], config=config)[1] is None
    ctx, flow = _run(make_ctx, text="rm -rf /", tags=["code"], config=config)
    assert flow is Flow.STOP
    assert ctx.response.text() == moderation.DEFAULT_MESSAGE


def test_simple_form(make_ctx) -> None:
    config = {"block_tags": ["nsfw"], "patterns": ["(?i)bomb"], "action": "refuse", "message": "No."}
    ctx, flow = _run(make_ctx, tags=["nsfw"], config=config)
    assert (flow, ctx.response.text()) == (Flow.STOP, "No.")
    ctx, flow = _run(make_ctx, text="a BOMB", config=config)
    assert (flow, ctx.response.text()) == (Flow.STOP, "No.")
    with pytest.raises(InvalidRequest, match="tag 'nsfw'"):
        _run(make_ctx, tags=["nsfw"], config={**config, "action": "error"})


def test_stop_reason_can_be_refusal(make_ctx) -> None:
    ctx, _ = _run(make_ctx, tags=["pii"], config={**CONFIG, "stop_reason": "refusal"})
    assert ctx.response.stop_reason == "refusal"


def test_nothing_is_request_settable() -> None:
    from llmrouter.engine.plugin_settings import SettingsSpec

    assert SettingsSpec.of(moderation).settable == frozenset()


def test_patterns_shorthand(make_ctx) -> None:
    ctx, flow = _run(make_ctx, text="forbidden", config={"patterns": ["forbidden"]})
    assert flow is Flow.STOP


def test_no_rules_is_a_no_op(make_ctx) -> None:
    assert _run(make_ctx, text="password", config={}, settings={})[1] is None


def test_invalid_config_regex_is_a_clear_error(make_ctx) -> None:
    with pytest.raises(ValueError, match=r"moderation: rules\[0\].*invalid regular expression '\('") as info:
        _run(make_ctx, config={"rules": [{"pattern": "(", "action": "error"}]})
    assert not isinstance(info.value, InvalidRequest)


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "refuse"},
        {"tag": "x", "action": "warn"},
        {"tag": 3},
        {"tag": "x", "patern": "typo"},
        {"tag": "x", "message": 5},
    ],
)
def test_bad_rules_are_rejected(make_ctx, rule) -> None:
    with pytest.raises(ValueError, match=r"moderation|key 'rules\.0\."):
        _run(make_ctx, config={"rules": [rule]})


def test_regexes_are_compiled_once_at_load(make_ctx, monkeypatch) -> None:
    ctx = make_ctx(text="a unique-pattern-xyz", settings={"patterns": ["unique-pattern-xyz"]}, plugin_id="moderation")
    calls = []
    real = moderation.re.compile
    monkeypatch.setattr(moderation.re, "compile", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(5):
        ctx.response = None
        assert moderation.pre_request(ctx) is Flow.STOP
    assert calls == []
