"""Replies built without pydantic's validation (llmrouter.formats.checked) are the validated objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from llmrouter.errors import InvalidRequest
from llmrouter.formats import (
    anthropic,
    anthropic_request,
    anthropic_stream,
    openai_request,
    openai_stream,
    openai_upstream,
)
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.checked import (
    _UNSET,
    checked_message,
    checked_request,
    checked_response,
    checked_text,
    checked_usage,
)
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.models import ChatRequest, ChatResponse, Message, TextPart, Usage
from tests.benchmods import load_bench
from tests.test_passthrough import ANTHROPIC_CORPUS, OPENAI_CORPUS

OPENAI_REPLIES: list[dict[str, Any]] = [
    {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello.", "refusal": None},
                  "logprobs": None, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 18, "completion_tokens": 225, "total_tokens": 243}, "system_fingerprint": "fp_x"},
    {"id": "chatcmpl-2", "model": "m", "service_tier": "default",
     "choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
         {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
         {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]},
         "finish_reason": "tool_calls"}],
     "usage": {"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 60}}},
    {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                              "reasoning_content": "thought", "refusal": "no"}, "finish_reason": "length"}]},
    {"id": None, "model": None, "choices": [{"message": {"function_call": {"name": "h", "arguments": "{}"}},
                                             "finish_reason": "function_call"}], "usage": None},
]

ANTHROPIC_REPLIES: list[dict[str, Any]] = [
    {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
     "content": [{"type": "text", "text": "Hello."}], "stop_reason": "end_turn", "stop_sequence": None,
     "usage": {"input_tokens": 18, "output_tokens": 225}},
    {"id": "msg_2", "type": "message", "model": "claude-sonnet-4",
     "content": [{"type": "thinking", "thinking": "t", "signature": "sig"},
                 {"type": "redacted_thinking", "data": "xyz"},
                 {"type": "text", "text": "x", "citations": [{"type": "char_location"}]},
                 {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1, 2]}},
                 {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}}],
     "stop_reason": "stop_sequence", "stop_sequence": "END",
     "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10,
               "cache_creation_input_tokens": 0}},
    {"content": [], "stop_reason": "model_context_window_exceeded", "usage": {"input_tokens": True}},
    {"content": [{"type": "text", "text": ""}], "stop_reason": None},
]


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not _UNSET}


VALIDATING = {
    "checked_request": lambda fields: ChatRequest(**fields),
    "checked_message": lambda role, content, name=_UNSET, extra=_UNSET: Message(
        **_given(role=role, content=content, name=name, extra=extra)),
    "checked_response": lambda id, model, content, stop_reason, usage, stop_sequence=_UNSET, extra=_UNSET: ChatResponse(
        **_given(id=id, model=model, content=content, stop_reason=stop_reason, usage=usage,
                 stop_sequence=stop_sequence, extra=extra)),
    "checked_text": lambda text, extra=_UNSET: TextPart(**_given(text=text, extra=extra)),
    "checked_usage": lambda i, o, r=_UNSET, c=_UNSET: Usage(
        **_given(input_tokens=i, output_tokens=o, cache_read_input_tokens=r, cache_creation_input_tokens=c)),
}
MODULES = [openai_request, anthropic_request, openai_upstream, openai_stream, anthropic, anthropic_stream]


def parsed_by_validating_constructors(parse: Callable[[], Any]) -> Any:
    """What ``parse()`` returns when the parsers build their models with pydantic's constructors."""
    with pytest.MonkeyPatch.context() as patch:
        for module in MODULES:
            for name, builder in VALIDATING.items():
                if hasattr(module, name):
                    patch.setattr(module, name, builder)
        return parse()


def validated(model: BaseModel) -> BaseModel:
    """The same object built by the model's validating constructor from the fields it has set."""
    values = {name: getattr(model, name) for name in model.model_fields_set}
    for name, value in values.items():
        if isinstance(value, BaseModel):
            values[name] = validated(value)
    return type(model)(**values)


def assert_same(built: BaseModel, reference: BaseModel) -> None:
    assert built == reference
    assert built.model_fields_set == reference.model_fields_set
    assert list(built.__dict__) == list(type(built).model_fields)  # every field, in declaration order
    assert built.model_dump() == reference.model_dump()
    assert built.model_dump_json(exclude_unset=True) == reference.model_dump_json(exclude_unset=True)
    assert repr(built) == repr(reference)
    assert built.model_copy(deep=True) == reference


@pytest.mark.parametrize("body", OPENAI_REPLIES)
def test_an_openai_reply_is_the_validated_response(body: dict[str, Any]) -> None:
    reply = OpenAIFormat().parse_response(body)
    assert_same(reply, parsed_by_validating_constructors(lambda: OpenAIFormat().parse_response(body)))
    assert_same(reply, validated(reply))
    assert reply.model_fields_set == {"id", "model", "content", "stop_reason", "usage", "extra"}
    assert_same(reply.usage, validated(reply.usage))


@pytest.mark.parametrize("body", ANTHROPIC_REPLIES)
def test_an_anthropic_reply_is_the_validated_response(body: dict[str, Any]) -> None:
    reply = AnthropicFormat().parse_response(body)
    assert_same(reply, parsed_by_validating_constructors(lambda: AnthropicFormat().parse_response(body)))
    assert_same(reply, validated(reply))
    assert reply.model_fields_set == {"id", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert_same(reply.usage, validated(reply.usage))


def test_the_keywords_given_are_the_fields_set() -> None:
    usage = checked_usage(1, 2)
    assert usage.model_fields_set == {"input_tokens", "output_tokens"}
    assert_same(usage, Usage(input_tokens=1, output_tokens=2))
    full = checked_usage(1, 2, None, 7)
    assert_same(full, Usage(input_tokens=1, output_tokens=2, cache_read_input_tokens=None,
                            cache_creation_input_tokens=7))
    part = TextPart(text="x")
    assert_same(checked_text("x"), part)
    assert_same(checked_text("x", {"cache_control": {"type": "ephemeral"}}),
                TextPart(text="x", extra={"cache_control": {"type": "ephemeral"}}))
    assert checked_text("x").extra is not checked_text("x").extra  # fresh defaults
    assert_same(checked_response("i", "m", [part], "end_turn", usage),
                ChatResponse(id="i", model="m", content=[part], stop_reason="end_turn", usage=usage))
    assert_same(checked_response("i", "m", [part], None, usage, stop_sequence=None, extra={"k": 1}),
                ChatResponse(id="i", model="m", content=[part], stop_reason=None, usage=usage, stop_sequence=None,
                             extra={"k": 1}))


def test_assignments_to_a_built_reply_are_still_validated() -> None:
    reply = OpenAIFormat().parse_response(OPENAI_REPLIES[0])
    with pytest.raises(ValidationError):
        reply.stop_reason = "finished"  # type: ignore[assignment]
    reply.content = "plain"  # type: ignore[assignment]
    assert reply.content == [TextPart(text="plain")]
    reply.usage.output_tokens = 3  # (Usage does not validate assignments, built or not)
    assert "content" in reply.model_fields_set and reply.usage.total_tokens == 18 + 3


# -- requests and their messages (built by the client parsers) ----------------------------------------

LOADGEN = load_bench("loadgen")
REQUEST_HEADERS = {"anthropic-beta": "b1", "anthropic-version": "2023-06-01", "x-other": "o"}
EXTRA_OPENAI = [
    {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u", "name": "n"}],
     "temperature": 1, "top_p": 0, "max_completion_tokens": 5, "stream": True, "metadata": {"a": "b"}, "seed": 3},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "t"},
                                                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                                 "custom": 1}]},
    {"model": "m", "messages": [{"role": "developer", "content": [{"type": "text", "text": "d", "cache": 1}]},
                                {"role": "user", "content": "u"},
                                {"role": "assistant", "content": [{"type": "text", "text": "a"}], "reasoning_content": "r",
                                 "tool_calls": [{"id": "c1", "type": "function",
                                                 "function": {"name": "f", "arguments": "{}"}}]},
                                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                                {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "ok2"}]},
                                {"role": "system", "content": "late", "name": "s"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "x": 1}}],
     "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False,
     "max_tokens": 7, "stop": "END", "stream_options": {"include_usage": True},
     "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
     "plugins": [{"id": "p", "k": [1]}], "metadata": {}, "n": 1, "top_p": 0.5},
    {"model": "m", "messages": [{"role": "user", "content": "u"}], "tools": [],
     "response_format": {"type": "text"}, "parallel_tool_calls": True, "tool_choice": "none"},
    {"model": "m", "messages": [{"role": "user", "content": "u"}], "parallel_tool_calls": True, "tool_choice": "auto",
     "stop": ["a", "b"], "max_completion_tokens": 9, "max_tokens": 3, "temperature": None},
]
EXTRA_ANTHROPIC = [
    {"model": "c", "max_tokens": 3, "temperature": 1, "top_p": 1, "system": [{"type": "text", "text": "s"}],
     "messages": [{"role": "user", "content": "u", "custom": True}, {"role": "assistant", "content": "a"}]},
    {"model": "c", "max_tokens": 3, "system": "s", "messages": [{"role": "user", "content": [{"type": "text", "text": "t",
                                                                                          "cache_control": {}}]}],
     "tools": [], "tool_choice": {"type": "any"}, "stop_sequences": ["x"], "stream": False, "metadata": {"user_id": "u"},
     "thinking": {"type": "enabled", "budget_tokens": 10}, "plugins": [{"id": "p"}],
     "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"}},
    {"model": "c", "max_tokens": 3, "messages": [{"role": "user", "content": "u"}], "output_config": {"effort": "x"},
     "tools": [{"name": "f", "input_schema": {"type": "object"}}], "metadata": None},
]


def _openai_bodies() -> list[dict[str, Any]]:
    return ([body for body, _ in OPENAI_CORPUS] + EXTRA_OPENAI
            + [LOADGEN.request_body("openai", stream, workload=w) for stream in (False, True) for w in ("1kb", "agent")])


def _anthropic_bodies() -> list[dict[str, Any]]:
    return ([body for body, _ in ANTHROPIC_CORPUS] + EXTRA_ANTHROPIC
            + [LOADGEN.request_body("anthropic", stream, workload=w) for stream in (False, True) for w in ("1kb", "agent")])


def assert_same_request(request: ChatRequest, reference: ChatRequest) -> None:
    """``request`` is ``reference`` (both converted), down to each message."""
    assert len(request.messages) == len(reference.messages)
    for message, expected in zip(request.messages, reference.messages, strict=True):
        assert_same(message, expected)
        assert_same(message, validated(message))
    assert_same(request, reference)
    assert request.__pydantic_private__ == reference.__pydantic_private__
    assert request.temperature is None or type(request.temperature) is float
    assert request.top_p is None or type(request.top_p) is float


@pytest.mark.parametrize("index", range(len(_openai_bodies())))
def test_an_openai_request_is_the_validated_request(index: int) -> None:
    body = _openai_bodies()[index]
    request = OpenAIFormat().parse_request(body, {})
    assert {"model", "system", "messages", "source_format", "extra"} <= request.model_fields_set
    assert_same_request(request, parsed_by_validating_constructors(lambda: OpenAIFormat().parse_request(body, {})))


@pytest.mark.parametrize("index", range(len(_anthropic_bodies())))
def test_an_anthropic_request_is_the_validated_request(index: int) -> None:
    body = _anthropic_bodies()[index]
    request = AnthropicFormat().parse_request(body, REQUEST_HEADERS)
    assert {"model", "max_tokens", "messages", "system", "temperature", "top_p", "source_format", "extra",
            "headers"} <= request.model_fields_set
    assert request.headers == {"anthropic-beta": "b1", "anthropic-version": "2023-06-01"}
    assert_same_request(request, parsed_by_validating_constructors(
        lambda: AnthropicFormat().parse_request(body, REQUEST_HEADERS)))


def test_a_built_request_is_checked_on_assignment_and_coerces_integers() -> None:
    request = checked_request({"model": "m", "temperature": 1, "top_p": 0})
    assert type(request.temperature) is float and type(request.top_p) is float
    assert_same(request, ChatRequest(model="m", temperature=1, top_p=0))
    with pytest.raises(ValidationError):
        request.max_tokens = "many"  # type: ignore[assignment]
    request.system = "plain"  # type: ignore[assignment]
    assert request.system == [TextPart(text="plain")]
    message = checked_message("user", [TextPart(text="x")])
    assert_same(message, Message(role="user", content=[TextPart(text="x")]))
    message.content = "y"  # type: ignore[assignment]
    assert message.content == [TextPart(text="y")]
    assert checked_request({"model": "m"}).messages is not checked_request({"model": "m"}).messages  # fresh defaults


# -- the checks' order: a body with two bad fields is refused for the first, as before ----------------

_USER = [{"role": "user", "content": "u"}]
FIRST_PROBLEM_OPENAI = [
    ({"messages": [{"content": "x"}]}, "messages[0].role: field required"),
    ({"messages": [{"role": None, "content": "x"}]}, "messages[0].role: unknown role None"),
    ({"messages": [{"role": "system", "content": 3}]}, "messages[0].content: expected an array, got a number"),
    ({"messages": [{"role": "system", "content": "s"}, "x"]}, "messages[1]: expected an object, got a string"),
    ({"messages": [{"role": "user", "content": "u", "name": 3}]}, "messages[0].name: expected a string, got a number"),
    ({"messages": _USER, "n": 2, "tools": 3}, "n: only n = 1 is supported (one choice per request)"),
    ({"messages": _USER, "tool_choice": "bad", "parallel_tool_calls": 1},
     "tool_choice: expected 'auto', 'none', 'required' or a function object, got 'bad'"),
    ({"messages": _USER, "parallel_tool_calls": 1, "max_tokens": "x"},
     "parallel_tool_calls: expected a boolean, got a number"),
    ({"messages": _USER, "max_completion_tokens": 1.5, "temperature": "x"},
     "max_completion_tokens: expected an integer, got a number"),
    ({"messages": _USER, "temperature": True, "top_p": "x"}, "temperature: expected a number, got a boolean"),
    ({"messages": _USER, "stop": [1], "stream": "yes"}, "stop[0]: expected a string, got a number"),
    ({"messages": _USER, "stream": 1, "stream_options": 3}, "stream: expected a boolean, got a number"),
    ({"messages": _USER, "response_format": {"type": "x"}, "metadata": 2},
     "response_format.type: unknown response format type 'x'"),
    ({"messages": _USER, "metadata": [], "plugins": [{}]}, "metadata: expected an object, got an array"),
]
FIRST_PROBLEM_ANTHROPIC = [
    ({"messages": _USER, "tools": 3, "tool_choice": 2}, "tools: must be a list"),
    ({"messages": _USER, "tool_choice": {"type": "x"}, "stop_sequences": [1]}, "tool_choice.type: must be one of"),
    ({"messages": _USER, "stop_sequences": [1], "stream": 1}, "stop_sequences: must be a list of strings"),
    ({"messages": _USER, "stream": 1, "metadata": 3}, "stream: must be a boolean"),
    ({"messages": _USER, "metadata": 3, "thinking": 3}, "metadata: must be an object"),
    ({"messages": _USER, "thinking": 3, "output_config": 3}, "thinking: must be an object"),
    ({"messages": _USER, "output_config": {"format": 3}, "plugins": 3}, "output_config.format: must be an object"),
    ({"messages": _USER, "system": 3, "temperature": "x"}, "system: must be a string or a list of text blocks"),
]


@pytest.mark.parametrize(("fields", "problem"), FIRST_PROBLEM_OPENAI)
def test_an_openai_request_is_refused_for_its_first_problem(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        OpenAIFormat().parse_request({"model": "m", **fields}, {})
    assert caught.value.message == problem


@pytest.mark.parametrize(("fields", "problem"), FIRST_PROBLEM_ANTHROPIC)
def test_an_anthropic_request_is_refused_for_its_first_problem(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        AnthropicFormat().parse_request({"model": "c", "max_tokens": 3, **fields}, {})
    assert caught.value.message.startswith(problem)
