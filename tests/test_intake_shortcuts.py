"""The request intake's shortcuts for the usual request give what the general path gives.

Each shortcut (the Anthropic parser's case-insensitive look-up of the forwarded headers and its
plain messages, the OpenAI parser's skipping of fields a body does not have, the provider view
kept while its inputs are unchanged) applies to some requests only; these tests hold it to the
general path's result, on the requests it applies to and the ones it leaves to that path."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from llmrouter.errors import InvalidRequest
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.anthropic_request import MessagesRequestParser
from llmrouter.formats.openai_request import parse_chat_request
from llmrouter.testing import openai_chat

BODY = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
NAMES = ("anthropic-version", "anthropic-beta")


def walked(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """What the forwarded headers are by definition: the two names, lower-cased, the last value of
    a repeated one, in the order the client first sent each."""
    forwarded: dict[str, str] = {}
    for key, value in pairs:
        if key.lower() in NAMES:
            forwarded[key.lower()] = value
    return forwarded


HEADER_SETS = [
    [("Content-Type", "application/json")],
    [("anthropic-version", "2023-06-01"), ("X-Api-Key", "k")],
    [("Anthropic-Version", "v1"), ("anthropic-version", "v2")],
    [("ANTHROPIC-BETA", "b1")],
    [("anthropic-beta", "b1"), ("anthropic-version", "v1")],
    [("anthropic-version", "v1"), ("Anthropic-Beta", "b1"), ("anthropic-beta", "b2")],
    [("Anthropic-Beta", "b1"), ("x", "y"), ("anthropic-version", "v1"), ("anthropic-VERSION", "v2")],
]


@pytest.mark.parametrize("pairs", HEADER_SETS)
def test_forwarded_headers_from_a_request_are_those_of_the_walk(pairs: list[tuple[str, str]]) -> None:
    request_headers = CIMultiDictProxy(CIMultiDict(pairs))  # (what aiohttp gives a handler)
    expected = walked(pairs)
    for headers in (request_headers, dict(pairs)):
        got = AnthropicFormat().parse_request(BODY, headers).headers
        assert got == expected and list(got) == list(expected)  # the same values, in the same order


PLAIN = [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}, {"role": "system", "content": "s"}]
OTHERS = [{"role": "user", "content": [{"type": "text", "text": "t"}]}, {"role": "user", "content": "x", "k": 1},
          {"role": "assistant", "content": [{"type": "text", "text": "t", "cache_control": {"type": "ephemeral"}}]}]


@pytest.mark.parametrize("messages", [list(p) for p in itertools.permutations(PLAIN + OTHERS, 3)][:60])
def test_plain_anthropic_messages_convert_as_the_general_path_does(messages: list[Any]) -> None:
    parser = MessagesRequestParser()
    converted = parser._convert(messages, 0, len(messages))
    general = [parser._message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    assert converted == general
    assert [m.model_fields_set for m in converted] == [m.model_fields_set for m in general]
    assert [m.model_dump() for m in converted] == [m.model_dump() for m in general]


@pytest.mark.parametrize("message, error", [
    ({"role": "tool", "content": "x"}, "messages[1].role: must be one of 'user', 'assistant', 'system' (got 'tool')"),
    ({"role": ["user"], "content": "x"}, "messages[1].role: must be one of"),
    ({"role": "user", "content": 5}, "messages[1].content: must be a string or a list of content blocks"),
    ({"role": "user"}, "messages[1].content: field required"),
])
def test_messages_the_plain_path_leaves_get_the_general_errors(message: dict[str, Any], error: str) -> None:
    body = {**BODY, "messages": [{"role": "user", "content": "a"}, message]}
    with pytest.raises(InvalidRequest) as caught:
        AnthropicFormat().parse_request(body, {})
    assert str(caught.value.message).startswith(error)


@pytest.mark.parametrize("key, value, error", [
    ("n", 2, "n: only n = 1 is supported"),
    ("parallel_tool_calls", "yes", "parallel_tool_calls: expected a boolean"),
    ("stop", 5, "stop"),
    ("response_format", 5, "response_format"),
    ("metadata", [], "metadata: expected an object"),
    ("plugins", 5, "plugins"),
])
def test_fields_beyond_the_usual_ones_are_still_checked(key: str, value: Any, error: str) -> None:
    body = {**openai_chat(), "max_tokens": 5, "temperature": 0.5, key: value}
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body)
    assert caught.value.message.startswith(error)


@pytest.mark.parametrize("extra", [{}, {"stop": ["x"]}, {"metadata": {"a": "b"}}, {"parallel_tool_calls": False},
                                   {"n": 1}, {"user": "u"}])
def test_the_usual_fields_parse_the_same_beside_others(extra: dict[str, Any]) -> None:
    usual = {**openai_chat(), "max_tokens": 7, "temperature": 1, "top_p": 0.5, "stream": False}
    request = parse_chat_request({**usual, **extra})
    assert (request.max_tokens, request.temperature, request.top_p) == (7, 1.0, 0.5)
    assert type(request.temperature) is float
    if "stop" in extra:
        assert request.stop == ["x"]
    if "metadata" in extra:
        assert request.metadata == {"a": "b"}
    if "user" in extra or "n" in extra:
        assert request.extra == extra


async def test_the_provider_view_is_kept_until_health_or_discovery_changes_it(router: Any) -> None:
    client = await router({"providers": [{"name": "a", "format": "echo"}, {"name": "b", "format": "echo"}],
                           "routers": [{"type": "fallback"}]})
    pipeline = client.pipeline
    first = pipeline.provider_infos()
    assert pipeline.provider_infos() is first
    pipeline.health["b"] = False
    second = pipeline.provider_infos()
    assert second is not first and second["b"].healthy is False and second["a"] is first["a"]
    assert pipeline.provider_infos() is second
    pipeline.health["b"] = True
    assert pipeline.provider_infos()["b"].healthy is True
    pipeline.discovered = {"a": ("found-model",)}
    assert "found-model" in pipeline.provider_infos()["a"].models
