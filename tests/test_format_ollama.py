"""Tests for the Ollama upstream format: request building, reply parsing and NDJSON stream decoding."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from llmrouter.formats.ollama import OllamaFormat
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ImagePart,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    ResponseAccumulator,
    ResponseFormat,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
)

FMT = OllamaFormat()
PNG_B64 = base64.b64encode(b"\x89PNG fake image bytes").decode()


def user(*parts: Any) -> Message:
    """A user message from text strings and parts."""
    return Message(role="user", content=[TextPart(text=p) if isinstance(p, str) else p for p in parts])


def build(**kwargs: Any) -> dict[str, Any]:
    """Build an Ollama body for a request made of ``kwargs`` with model ``llama3.2``."""
    kwargs.setdefault("messages", [user("hi")])
    return FMT.build_request(ChatRequest(model="client-model", **kwargs), "llama3.2")


# ---------------------------------------------------------------------------------------------
# build_request
# ---------------------------------------------------------------------------------------------


def test_name_is_ollama() -> None:
    assert FMT.name == "ollama"


def test_build_plain_text() -> None:
    body = build()
    assert body == {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def test_build_stream_flag() -> None:
    assert build(stream=True)["stream"] is True


def test_build_system_blocks_become_leading_system_message() -> None:
    body = build(system=[TextPart(text="Be brief."), TextPart(text="Be kind.")])
    assert body["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert body["messages"][1] == {"role": "user", "content": "hi"}


def test_build_mid_conversation_system_message_becomes_user_text() -> None:
    messages = [
        user("one"),
        Message(role="assistant", content=[TextPart(text="two")]),
        Message(role="system", content=[TextPart(text="now be terse")]),
        user("three"),
    ]
    body = build(messages=messages)
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "one"), ("assistant", "two"),
        ("user", "<system-reminder>\nnow be terse\n</system-reminder>\n\nthree"),
    ]


def test_build_mid_conversation_system_message_stays_in_place_with_keep() -> None:
    messages = [user("one"), Message(role="assistant", content=[TextPart(text="two")]),
                Message(role="system", content=[TextPart(text="now be terse")]), user("three")]
    body = OllamaFormat(late_system="keep").build_request(ChatRequest(model="m", messages=messages), "llama3.2")
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "one"), ("assistant", "two"), ("system", "now be terse"), ("user", "three"),
    ]


def test_build_multiple_text_parts_are_joined() -> None:
    body = build(messages=[user("first", "second")])
    assert body["messages"][0]["content"] == "first\n\nsecond"


def test_build_base64_image_goes_to_images() -> None:
    body = build(messages=[user("what is this?", ImagePart(data=PNG_B64, media_type="image/png"))])
    message = body["messages"][0]
    assert message["content"] == "what is this?"
    assert message["images"] == [PNG_B64]


def test_build_data_url_image_is_decoded_to_base64() -> None:
    image = ImagePart(url=f"data:image/png;base64,{PNG_B64}")
    body = build(messages=[user(image)])
    assert body["messages"][0]["images"] == [PNG_B64]
    assert body["messages"][0]["content"] == ""


def test_build_http_image_becomes_text_note() -> None:
    image = ImagePart(url="https://example.com/cat.png")
    body = build(messages=[user("look", image)])
    message = body["messages"][0]
    assert "images" not in message
    assert message["content"].startswith("look")
    assert "https://example.com/cat.png" in message["content"]


def test_build_tools_and_assistant_tool_calls() -> None:
    tool = Tool(name="get_weather", description="Weather for a city",
                input_schema={"type": "object", "properties": {"city": {"type": "string"}}})
    messages = [
        user("weather in Paris?"),
        Message(role="assistant", content=[
            ThinkingPart(thinking="I should call the tool", signature="sig"),
            TextPart(text="Checking."),
            ToolUsePart(id="toolu_1", name="get_weather", input={"city": "Paris"}),
        ]),
        Message(role="user", content=[
            ToolResultPart(tool_use_id="toolu_1", content=[TextPart(text="18C, sunny")]),
        ]),
    ]
    body = build(messages=messages, tools=[tool])
    assert body["tools"] == [{
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather for a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }]
    assistant = body["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }
    assert body["messages"][2] == {"role": "tool", "content": "18C, sunny", "tool_name": "get_weather"}
    assert len(body["messages"]) == 3


def test_build_tool_call_with_raw_arguments() -> None:
    messages = [
        Message(role="assistant", content=[
            ToolUsePart(id="a", name="f", raw_arguments='{"x": 1}'),
            ToolUsePart(id="b", name="g", raw_arguments="not json"),
        ]),
    ]
    calls = build(messages=messages)["messages"][0]["tool_calls"]
    assert calls[0]["function"]["arguments"] == {"x": 1}
    assert calls[1]["function"]["arguments"] == {}


def test_build_tool_result_unknown_id_has_no_tool_name() -> None:
    messages = [Message(role="user", content=[ToolResultPart(tool_use_id="nope", content=[TextPart(text="r")])])]
    assert build(messages=messages)["messages"] == [{"role": "tool", "content": "r"}]


def test_build_tool_results_and_text_keep_order() -> None:
    messages = [
        Message(role="assistant", content=[
            ToolUsePart(id="t1", name="a", input={}), ToolUsePart(id="t2", name="b", input={}),
        ]),
        Message(role="user", content=[
            ToolResultPart(tool_use_id="t1", content=[TextPart(text="ra")]),
            ToolResultPart(tool_use_id="t2", content=[TextPart(text="rb")], is_error=True),
            TextPart(text="and now?"),
        ]),
    ]
    out = build(messages=messages)["messages"][1:]
    assert [m["role"] for m in out] == ["tool", "tool", "user"]
    assert out[0] == {"role": "tool", "content": "ra", "tool_name": "a"}
    assert out[1]["tool_name"] == "b" and "rb" in out[1]["content"] and "error" in out[1]["content"].lower()
    assert out[2] == {"role": "user", "content": "and now?"}


def test_build_tool_result_image_goes_to_images() -> None:
    messages = [Message(role="user", content=[
        ToolResultPart(tool_use_id="x", content=[TextPart(text="shot"), ImagePart(data=PNG_B64)]),
    ])]
    assert build(messages=messages)["messages"][0] == {"role": "tool", "content": "shot", "images": [PNG_B64]}


def test_build_format_json_object() -> None:
    assert build(response_format=ResponseFormat(type="json_object"))["format"] == "json"


def test_build_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = build(response_format=ResponseFormat(type="json_schema", name="thing", schema=schema))
    assert body["format"] == schema


def test_build_format_text_is_omitted() -> None:
    assert "format" not in build(response_format=ResponseFormat(type="text"))


def test_build_options() -> None:
    body = build(temperature=0.2, top_p=0.9, max_tokens=64, stop=["\n\n", "END"])
    assert body["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 64, "stop": ["\n\n", "END"]}


def test_build_options_omitted_when_unset() -> None:
    assert "options" not in build()


def test_build_think_when_thinking_enabled() -> None:
    assert build(thinking={"type": "enabled", "budget_tokens": 1024})["think"] is True
    assert "think" not in build(thinking={"type": "disabled"})
    assert "think" not in build()


def test_build_tool_choice_none_drops_tools() -> None:
    body = build(tools=[Tool(name="f")], tool_choice=ToolChoice(type="none"))
    assert "tools" not in body


def test_build_drops_extras_from_other_formats() -> None:
    req = ChatRequest(
        model="m",
        source_format="anthropic",
        extra={"metadata": {"user_id": "u"}, "context_management": {}},
        system=[TextPart(text="sys", extra={"cache_control": {"type": "ephemeral"}})],
        messages=[Message(role="user", content=[TextPart(text="hi", extra={"cache_control": {}})],
                          extra={"foo": 1})],
        tools=[Tool(name="f", extra={"cache_control": {}})],
    )
    body = FMT.build_request(req, "llama3.2")
    assert set(body) == {"model", "messages", "tools", "stream"}
    assert body["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]
    assert set(body["tools"][0]["function"]) == {"name", "parameters"}


def test_build_result_is_json_serialisable() -> None:
    body = build(messages=[user("x", ImagePart(data=PNG_B64))], tools=[Tool(name="f")], temperature=1.0)
    assert orjson.loads(orjson.dumps(body)) == body


# ---------------------------------------------------------------------------------------------
# parse_response
# ---------------------------------------------------------------------------------------------


def reply(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A non-streaming Ollama /api/chat reply."""
    body = {
        "model": "llama3.2", "created_at": "2025-01-01T00:00:00Z", "message": message,
        "done": True, "done_reason": "stop", "total_duration": 1, "prompt_eval_count": 12, "eval_count": 5,
    }
    body.update(extra)
    return body


def test_parse_text() -> None:
    resp = FMT.parse_response(reply({"role": "assistant", "content": "Hello!"}))
    assert resp.model == "llama3.2"
    assert resp.id
    assert resp.content == [TextPart(text="Hello!")]
    assert resp.stop_reason == "end_turn"
    assert resp.usage == Usage(input_tokens=12, output_tokens=5)


def test_parse_length() -> None:
    resp = FMT.parse_response(reply({"role": "assistant", "content": "Hel"}, done_reason="length"))
    assert resp.stop_reason == "max_tokens"


def test_parse_tool_calls_without_ids() -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_time", "arguments": {}}},
    ]}
    resp = FMT.parse_response(reply(message))
    calls = resp.tool_calls()
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert all(c.id.startswith("call_") and len(c.id) > len("call_") for c in calls)
    assert calls[0].id != calls[1].id
    assert resp.content == calls  # no empty text part
    assert resp.stop_reason == "tool_use"


def test_parse_tool_call_keeps_given_id_and_string_arguments() -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_abc", "function": {"index": 0, "name": "f", "arguments": '{"a": 1}'}},
        {"function": {"name": "g", "arguments": "oops"}},
    ]}
    calls = FMT.parse_response(reply(message)).tool_calls()
    assert calls[0].id == "call_abc" and calls[0].input == {"a": 1}
    assert calls[1].input is None and calls[1].raw_arguments == "oops"


def test_parse_thinking_comes_first() -> None:
    message = {"role": "assistant", "content": "42", "thinking": "Let me think."}
    resp = FMT.parse_response(reply(message))
    assert resp.content == [ThinkingPart(thinking="Let me think."), TextPart(text="42")]


def test_parse_missing_counts_default_to_zero() -> None:
    body = {"model": "m", "message": {"role": "assistant", "content": "x"}, "done": True}
    assert FMT.parse_response(body).usage == Usage()


@pytest.mark.parametrize("body", [{"error": "model 'x' not found"}, [], "text", {"model": "m"},
                                  {"message": "nope"}])
def test_parse_rejects_non_chat_bodies(body: Any) -> None:
    with pytest.raises(ValueError):
        FMT.parse_response(body)


def test_parse_error_message_is_carried() -> None:
    with pytest.raises(ValueError, match="model 'x' not found"):
        FMT.parse_response({"error": "model 'x' not found"})


# ---------------------------------------------------------------------------------------------
# stream_decoder
# ---------------------------------------------------------------------------------------------


def line(message: dict[str, Any] | None = None, **fields: Any) -> bytes:
    """One NDJSON line of an Ollama chat stream."""
    obj: dict[str, Any] = {"model": "llama3.2", "created_at": "2025-01-01T00:00:00Z"}
    if message is not None:
        obj["message"] = {"role": "assistant", **message}
    obj.setdefault("done", False)
    obj.update(fields)
    return orjson.dumps(obj) + b"\n"


def final(**fields: Any) -> bytes:
    """The closing ``done: true`` line."""
    fields.setdefault("done_reason", "stop")
    return line({"content": ""}, done=True, prompt_eval_count=7, eval_count=3, **fields)


TEXT_STREAM = line({"content": "Hel"}) + line({"content": "lo"}) + line({"content": ""}) + final()


def decode(data: bytes, chunk: int | None = None) -> list[StreamEvent]:
    """Decode ``data`` fed in ``chunk``-byte pieces (all at once when ``None``), then close."""
    decoder = FMT.stream_decoder()
    events: list[StreamEvent] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        events.extend(decoder.feed(data[i : i + step]))
    events.extend(decoder.close())
    return events


def without_ids(events: list[StreamEvent]) -> list[StreamEvent]:
    """Events with generated message and tool ids blanked, for golden comparisons."""
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, MessageStart):
            event = event.model_copy(update={"id": ""})
        elif isinstance(event, BlockStart) and isinstance(event.part, ToolUsePart):
            event = event.model_copy(update={"part": event.part.model_copy(update={"id": ""})})
        out.append(event)
    return out


def test_stream_text_golden() -> None:
    events = decode(TEXT_STREAM)
    assert isinstance(events[0], MessageStart) and events[0].id
    assert without_ids(events) == [
        MessageStart(model="llama3.2"),
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, text="Hel"),
        BlockDelta(index=0, text="lo"),
        BlockStop(index=0),
        MessageDelta(stop_reason="end_turn", usage=Usage(input_tokens=7, output_tokens=3)),
        MessageStop(),
    ]


@pytest.mark.parametrize("chunk", [1, 2, 7, 50])
def test_stream_split_anywhere_gives_same_events(chunk: int) -> None:
    assert without_ids(decode(TEXT_STREAM, chunk)) == without_ids(decode(TEXT_STREAM))


def test_stream_multibyte_text_split_per_byte() -> None:
    data = line({"content": "héllo ☃ 😀"}) + final()
    events = decode(data, 1)
    assert [e.text for e in events if isinstance(e, BlockDelta)] == ["héllo ☃ 😀"]


def test_stream_crlf_and_blank_lines() -> None:
    data = line({"content": "a"}).replace(b"\n", b"\r\n") + b"\n\r\n" + final()
    assert [e.text for e in decode(data) if isinstance(e, BlockDelta)] == ["a"]


def test_stream_thinking_then_text_golden() -> None:
    data = (line({"content": "", "thinking": "Hmm"}) + line({"content": "", "thinking": "..."})
            + line({"content": "Yes"}) + final(done_reason="length"))
    assert without_ids(decode(data, 3)) == [
        MessageStart(model="llama3.2"),
        BlockStart(index=0, part=ThinkingPart(thinking="")),
        BlockDelta(index=0, thinking="Hmm"),
        BlockDelta(index=0, thinking="..."),
        BlockStop(index=0),
        BlockStart(index=1, part=TextPart(text="")),
        BlockDelta(index=1, text="Yes"),
        BlockStop(index=1),
        MessageDelta(stop_reason="max_tokens", usage=Usage(input_tokens=7, output_tokens=3)),
        MessageStop(),
    ]


def test_stream_tool_calls_golden() -> None:
    data = (line({"content": "Let me check."})
            + line({"content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_given", "function": {"name": "get_time", "arguments": {}}},
            ]})
            + final())
    events = decode(data, 5)
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert starts[1].part.id.startswith("call_")  # type: ignore[union-attr]
    assert starts[2].part.id == "call_given"  # type: ignore[union-attr]
    assert without_ids(events) == [
        MessageStart(model="llama3.2"),
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, text="Let me check."),
        BlockStop(index=0),
        BlockStart(index=1, part=ToolUsePart(id="", name="get_weather", input={})),
        BlockDelta(index=1, partial_json='{"city":"Paris"}'),
        BlockStop(index=1),
        BlockStart(index=2, part=ToolUsePart(id="", name="get_time", input={})),
        BlockDelta(index=2, partial_json="{}"),
        BlockStop(index=2),
        MessageDelta(stop_reason="tool_use", usage=Usage(input_tokens=7, output_tokens=3)),
        MessageStop(),
    ]


def test_stream_text_after_tool_call_opens_new_block() -> None:
    data = (line({"content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]})
            + line({"content": "done"}) + final())
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in decode(data)]
    assert kinds[1:7] == [("BlockStart", 0), ("BlockDelta", 0), ("BlockStop", 0),
                          ("BlockStart", 1), ("BlockDelta", 1), ("BlockStop", 1)]


def test_stream_error_line() -> None:
    data = line({"content": "par"}) + b'{"error":"model runner crashed"}\n' + line({"content": "ignored"})
    events = decode(data, 4)
    assert without_ids(events[:3]) == [
        MessageStart(model="llama3.2"), BlockStart(index=0, part=TextPart(text="")), BlockDelta(index=0, text="par"),
    ]
    assert events[3] == StreamError(message="model runner crashed")
    assert len(events) == 4  # nothing after the error, not even on close()


def test_stream_error_as_first_line() -> None:
    assert decode(b'{"error":"model \\"x\\" not found"}\n') == [StreamError(message='model "x" not found')]


def test_stream_invalid_json_line_is_an_error() -> None:
    events = decode(line({"content": "a"}) + b"{not json\n")
    assert isinstance(events[-1], StreamError)
    assert "ollama" in events[-1].message.lower()


def test_stream_final_line_without_trailing_newline() -> None:
    data = TEXT_STREAM.rstrip(b"\n")
    assert without_ids(decode(data)) == without_ids(decode(TEXT_STREAM))


def test_stream_close_without_done_finishes_message() -> None:
    events = decode(line({"content": "cut"}))
    assert without_ids(events) == [
        MessageStart(model="llama3.2"),
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, text="cut"),
        BlockStop(index=0),
        MessageDelta(stop_reason="end_turn"),
        MessageStop(),
    ]


def test_stream_close_without_anything_is_empty() -> None:
    assert decode(b"") == []


def test_stream_nothing_after_done() -> None:
    decoder = FMT.stream_decoder()
    events = decoder.feed(TEXT_STREAM)
    assert isinstance(events[-1], MessageStop)
    assert decoder.feed(line({"content": "late"})) == []
    assert decoder.close() == []


def test_stream_through_accumulator() -> None:
    data = (line({"content": "", "thinking": "plan"}) + line({"content": "Calling."})
            + line({"content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"q": [1, 2]}}}]})
            + final())
    accumulator = ResponseAccumulator()
    for event in decode(data, 1):
        accumulator.feed(event)
    resp = accumulator.result()
    assert resp.model == "llama3.2" and resp.id
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=7, output_tokens=3)
    assert resp.content[0] == ThinkingPart(thinking="plan")
    assert resp.content[1] == TextPart(text="Calling.")
    tool = resp.content[2]
    assert isinstance(tool, ToolUsePart) and tool.name == "f" and tool.input == {"q": [1, 2]}


def test_stream_matches_non_streaming_parse() -> None:
    """Streaming and non-streaming decode of the same reply give the same content and stop reason."""
    parsed = FMT.parse_response(reply({"role": "assistant", "content": "Hello"}, prompt_eval_count=7, eval_count=3))
    accumulator = ResponseAccumulator()
    for event in decode(line({"content": "Hel"}) + line({"content": "lo"}) + final()):
        accumulator.feed(event)
    streamed = accumulator.result()
    assert (streamed.content, streamed.stop_reason, streamed.usage) == (parsed.content, parsed.stop_reason,
                                                                        parsed.usage)
