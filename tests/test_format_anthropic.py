"""Tests for the Anthropic Messages wire format: request parsing/building, replies, errors and streams."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage

from llmrouter.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PluginFailed,
    ProviderError,
    ProviderTimeout,
    RouterError,
)
from llmrouter.formats.anthropic import RAW_ARGUMENTS_KEY, AnthropicFormat
from llmrouter.formats.base import response_to_events
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    ResponseAccumulator,
    ResponseFormat,
    StreamError,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
)

FMT = AnthropicFormat()
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

# A request shaped like what Claude Code 2.x sends (trimmed): every field must survive a same-format trip.
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a shell command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                             "required": ["command"]},
        },
        {
            "name": "Read",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "user_abc_account_def_session_123"},
    "top_k": 40,
    "temperature": 1,
    "stop_sequences": ["\n\nHuman:"],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": "List files", "cache_control": {"type": "ephemeral"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should run ls.", "signature": "sig-1"},
            {"type": "redacted_thinking", "data": "ENCRYPTED"},
            {"type": "text", "text": "Running ls."},
            {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "a.txt\nb.txt",
             "cache_control": {"type": "ephemeral"}},
        ]},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": True,
             "content": [{"type": "text", "text": "boom"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                      "data": PNG_B64}}]},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {"type": "text", "text": "What now?", "citations": None},
        ]},
    ],
}
CLAUDE_CODE_HEADERS = {
    "Anthropic-Version": "2023-06-01",
    "anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27",
    "x-app": "cli",
    "X-Claude-Code-Session-Id": "abc",
    "x-api-key": "secret",
}


def sse(*frames: tuple[str, dict[str, Any]]) -> bytes:
    """Build an SSE byte stream the way Anthropic frames it."""
    return b"".join(f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n".encode() for name, data in frames)


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split rendered SSE bytes into (event, data) pairs, checking the framing on the way."""
    frames = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk:
            continue
        event_line, data_line = chunk.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = orjson.loads(data_line[6:])
        assert data["type"] == event_line[7:]
        frames.append((event_line[7:], data))
    return frames


def render_all(events: list[Any], request: ChatRequest | None = None) -> bytes:
    renderer = FMT.stream_renderer(request or ChatRequest(model="claude-x", source_format="anthropic"))
    return b"".join(renderer.render(e) for e in events)


def decode_all(raw: bytes, chunk: int | None = None) -> list[Any]:
    decoder = FMT.stream_decoder()
    events: list[Any] = []
    if chunk is None:
        events.extend(decoder.feed(raw))
    else:
        for i in range(0, len(raw), chunk):
            events.extend(decoder.feed(raw[i:i + chunk]))
    events.extend(decoder.close())
    return events


# ---------------------------------------------------------------------------------------------
# parse_request
# ---------------------------------------------------------------------------------------------


def test_claude_code_request_parses_into_canonical_fields() -> None:
    body = copy.deepcopy(CLAUDE_CODE_BODY)
    body["plugins"] = [{"id": "moderation"}]
    req = FMT.parse_request(body, CLAUDE_CODE_HEADERS)

    assert req.source_format == "anthropic"
    assert req.model == "claude-sonnet-4-5" and req.max_tokens == 32000 and req.stream is True
    assert [p.text for p in req.system or []] == ["You are Claude Code.", "Be brief."]
    assert req.system and req.system[1].extra == {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert [t.name for t in req.tools or []] == ["Bash", "Read", "web_search"]
    assert req.tools and req.tools[1].extra == {"cache_control": {"type": "ephemeral"}}
    assert req.tools[2].extra == {"type": "web_search_20250305", "max_uses": 5}
    assert req.tool_choice == ToolChoice(type="auto", disable_parallel=False)
    assert req.thinking == {"type": "enabled", "budget_tokens": 31999}
    assert req.response_format is not None and req.response_format.schema_ == {"type": "object"}
    assert req.extra == {
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "top_k": 40,
    }
    assert req.metadata == {"user_id": "user_abc_account_def_session_123"}
    assert req.stop == ["\n\nHuman:"] and req.temperature == 1
    assert req.plugins == [{"id": "moderation"}]
    assert req.headers == {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27",
    }
    roles = [m.role for m in req.messages]
    assert roles == ["user", "assistant", "user", "system", "user"]
    assert req.messages[3].text() == "The user switched to plan mode."
    assistant = req.messages[1].content
    assert assistant[0] == ThinkingPart(thinking="I should run ls.", signature="sig-1")
    assert assistant[1] == ThinkingPart(redacted="ENCRYPTED")
    assert assistant[3] == ToolUsePart(id="toolu_01", name="Bash", input={"command": "ls"})
    result = req.messages[2].content[0]
    assert isinstance(result, ToolResultPart)
    assert result.text() == "a.txt\nb.txt" and result.extra == {"cache_control": {"type": "ephemeral"}}
    last = req.messages[4].content
    assert isinstance(last[0], ToolResultPart) and last[0].is_error
    assert last[0].content[1] == ImagePart(data=PNG_B64, media_type="image/png")
    assert last[1] == ImagePart(url="https://example.com/cat.png")
    assert last[2] == TextPart(text="What now?", extra={"citations": None})


def test_claude_code_request_rebuilds_same_format_with_every_field_intact() -> None:
    body = copy.deepcopy(CLAUDE_CODE_BODY)
    body["plugins"] = [{"id": "moderation"}]
    req = FMT.parse_request(body, CLAUDE_CODE_HEADERS)
    built = FMT.build_request(req, "claude-opus-4-1")

    expected = copy.deepcopy(CLAUDE_CODE_BODY)
    expected["model"] = "claude-opus-4-1"
    assert built == expected
    for forbidden in ("plugins", "tags", "forced_provider", "headers", "extra", "source_format"):
        assert forbidden not in built


def test_string_content_and_string_system() -> None:
    req = FMT.parse_request({"model": "m", "max_tokens": 10, "system": "Be nice.",
                             "messages": [{"role": "user", "content": "hi"}]}, {})
    assert req.system == [TextPart(text="Be nice.")]
    assert req.messages == [Message(role="user", content=[TextPart(text="hi")])]
    assert req.stream is False and req.extra == {} and req.headers == {}
    built = FMT.build_request(req, "m2")
    assert built == {"model": "m2", "max_tokens": 10, "system": [{"type": "text", "text": "Be nice."}],
                     "messages": [{"role": "user", "content": "hi"}]}


def test_any_tool_choice_maps_to_required_and_back() -> None:
    req = FMT.parse_request({"model": "m", "max_tokens": 5, "messages": [],
                             "tool_choice": {"type": "any", "disable_parallel_tool_use": True}}, {})
    assert req.tool_choice == ToolChoice(type="required", disable_parallel=True)
    req = FMT.parse_request({"model": "m", "max_tokens": 5, "messages": [],
                             "tool_choice": {"type": "tool", "name": "Bash"}}, {})
    assert req.tool_choice == ToolChoice(type="tool", name="Bash")


def test_null_output_format_is_kept_as_extra() -> None:
    req = FMT.parse_request({"model": "m", "max_tokens": 5, "messages": [],
                             "output_config": {"format": None, "effort": "low"}}, {})
    assert req.response_format is None
    assert FMT.build_request(req, "m")["output_config"] == {"format": None, "effort": "low"}


BASE: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DROP = object()


def _msg(*blocks: Any, role: str = "user") -> list[dict[str, Any]]:
    return [{"role": "user", "content": "hi"}, {"role": role, "content": list(blocks)}]


@pytest.mark.parametrize(("body", "expected"), [
    ([1, 2], "body: must be a JSON object"),
    (_with(model=_DROP), "model: field required"),
    (_with(model=""), "model: must be a non-empty string"),
    (_with(model=3), "model: must be a non-empty string"),
    (_with(max_tokens=_DROP), "max_tokens: field required"),
    (_with(max_tokens=0), "max_tokens: must be a positive integer"),
    (_with(max_tokens=True), "max_tokens: must be a positive integer"),
    (_with(max_tokens="10"), "max_tokens: must be a positive integer"),
    (_with(messages=_DROP), "messages: field required"),
    (_with(messages={"role": "user"}), "messages: must be a list"),
    (_with(messages=["hi"]), "messages[0]: must be an object"),
    (_with(messages=[{"role": "tool", "content": "x"}]), "messages[0].role: must be one of"),
    (_with(messages=[{"role": "user"}]), "messages[0].content: field required"),
    (_with(messages=[{"role": "user", "content": 5}]), "messages[0].content: must be a string or a list"),
    (_with(messages=_msg({"type": "foo"})), "messages[1].content[0].type: unknown content block type 'foo'"),
    (_with(messages=_msg("text")), "messages[1].content[0]: must be an object"),
    (_with(messages=_msg({"type": "text"})), "messages[1].content[0].text: field required"),
    (_with(messages=_msg({"type": "text", "text": 1})), "messages[1].content[0].text: must be a string"),
    (_with(messages=_msg({"type": "image", "source": {"type": "file", "file_id": "f"}})),
     "messages[1].content[0].source.type: unsupported image source type 'file'"),
    (_with(messages=_msg({"type": "image", "source": {"type": "base64", "data": "x"}})),
     "messages[1].content[0].source.media_type: field required"),
    (_with(messages=_msg({"type": "image"})), "messages[1].content[0].source: field required"),
    (_with(messages=_msg({"type": "tool_use", "id": "t", "name": "n", "input": []}, role="assistant")),
     "messages[1].content[0].input: must be an object"),
    (_with(messages=_msg({"type": "tool_use", "name": "n", "input": {}}, role="assistant")),
     "messages[1].content[0].id: field required"),
    (_with(messages=_msg({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "video"}]})),
     "messages[1].content[0].content[0].type: unknown content block type 'video'"),
    (_with(messages=_msg({"type": "tool_result", "content": "x"})),
     "messages[1].content[0].tool_use_id: field required"),
    (_with(messages=_msg({"type": "tool_result", "tool_use_id": "t", "is_error": "yes"})),
     "messages[1].content[0].is_error: must be a boolean"),
    (_with(messages=_msg({"type": "thinking", "thinking": 3}, role="assistant")),
     "messages[1].content[0].thinking: must be a string"),
    (_with(messages=_msg({"type": "redacted_thinking"}, role="assistant")),
     "messages[1].content[0].data: field required"),
    (_with(system=5), "system: must be a string or a list of text blocks"),
    (_with(system=[{"type": "image"}]), "system[0].type: system blocks must be of type 'text'"),
    (_with(tools={"name": "x"}), "tools: must be a list"),
    (_with(tools=[{"description": "x"}]), "tools[0].name: field required"),
    (_with(tools=[{"name": "x", "input_schema": "nope"}]), "tools[0].input_schema: must be an object"),
    (_with(tool_choice={"type": "some"}), "tool_choice.type: must be one of"),
    (_with(tool_choice={"type": "tool"}), "tool_choice.name: field required"),
    (_with(tool_choice="auto"), "tool_choice: must be an object"),
    (_with(stop_sequences="STOP"), "stop_sequences: must be a list of strings"),
    (_with(temperature="hot"), "temperature: must be a number"),
    (_with(top_p=True), "top_p: must be a number"),
    (_with(stream="yes"), "stream: must be a boolean"),
    (_with(metadata=[]), "metadata: must be an object"),
    (_with(thinking="on"), "thinking: must be an object"),
    (_with(output_config={"format": {"type": "xml"}}),
     "output_config.format.type: unsupported output format type 'xml'"),
    (_with(output_config={"format": {"type": "json_schema"}}), "output_config.format.schema: field required"),
    (_with(plugins={"id": "x"}), "plugins: must be a list of objects"),
])
def test_invalid_requests_name_the_field(body: Any, expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        FMT.parse_request(body, {})
    assert info.value.status == 400
    assert str(info.value).startswith(expected), str(info.value)


def test_null_optional_fields_count_as_absent() -> None:
    req = FMT.parse_request(_with(temperature=None, system=None, tools=None, stop_sequences=None), {})
    assert req.temperature is None and req.system is None and req.tools is None and req.stop is None


# ---------------------------------------------------------------------------------------------
# build_request across formats
# ---------------------------------------------------------------------------------------------


def _openai_request(**changes: Any) -> ChatRequest:
    fields: dict[str, Any] = {
        "model": "gpt-x",
        "source_format": "openai",
        "system": [TextPart(text="Sys", extra={"openai_only": 1})],
        "messages": [
            Message(role="user", content=[TextPart(text="Look", extra={"foo": 1}),
                                          ImagePart(url=f"data:image/png;base64,{PNG_B64}", extra={"detail": "high"}),
                                          ImagePart(url="https://example.com/a.jpg"),
                                          ImagePart(data=PNG_B64)],
                    name="alice", extra={"refusal": None}),
            Message(role="assistant", content=[
                ThinkingPart(thinking="no signature, cannot be replayed"),
                ThinkingPart(thinking="signed", signature="sig"),
                TextPart(text=""),
                ToolUsePart(id="call_1", name="get", input={"q": 1}),
                ToolUsePart(id="call_2", name="bad", raw_arguments='{"q": '),
            ]),
            Message(role="user", content=[ToolResultPart(tool_use_id="call_1", content=[TextPart(text="r1")])]),
            Message(role="user", content=[ToolResultPart(tool_use_id="call_2", content=[TextPart(text="r2")],
                                                         is_error=True)]),
            Message(role="system", content=[TextPart(text="Mid-conversation note")]),
            Message(role="user", content=[TextPart(text="thanks")]),
        ],
        "tools": [Tool(name="get", description="Get", input_schema={"type": "object"}, extra={"strict": True})],
        "tool_choice": ToolChoice(type="required", disable_parallel=True),
        "metadata": {"trace": "x"},
        "extra": {"parallel_tool_calls": True, "user": "bob", "seed": 7, "stream_options": {"include_usage": True}},
        "plugins": [{"id": "p"}],
        "tags": ["code"],
        "forced_provider": "x",
        "headers": {"anthropic-beta": "x"},
        "stream": True,
        "temperature": 0.2,
        "stop": ["END"],
    }
    fields.update(changes)
    return ChatRequest(**fields)


def test_cross_format_request_drops_foreign_extras_and_normalises() -> None:
    built = FMT.build_request(_openai_request(), "claude-haiku")
    assert built == {
        "model": "claude-haiku",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Sys"}, {"type": "text", "text": "Mid-conversation note"}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "signed", "signature": "sig"},
                {"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": 1}},
                {"type": "tool_use", "id": "call_2", "name": "bad", "input": {RAW_ARGUMENTS_KEY: '{"q": '}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "r1"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "r2", "is_error": True},
                {"type": "text", "text": "thanks"},
            ]},
        ],
        "tools": [{"name": "get", "description": "Get", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "stream": True,
    }


def test_anthropic_source_keeps_mid_conversation_system_in_place() -> None:
    req = ChatRequest(model="m", source_format="anthropic", max_tokens=10, messages=[
        Message(role="user", content=[TextPart(text="a")]),
        Message(role="system", content=[TextPart(text="note")], extra={"x_flag": 1}),
        Message(role="user", content=[TextPart(text="b")]),
    ])
    assert FMT.build_request(req, "m")["messages"] == [
        {"role": "user", "content": "a"}, {"role": "system", "content": "note", "x_flag": 1},
        {"role": "user", "content": "b"}]


def test_cross_format_tool_results_come_first_in_user_turn() -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="assistant", content=[ToolUsePart(id="t1", name="f", input={})]),
        Message(role="user", content=[TextPart(text="here"), ToolResultPart(tool_use_id="t1")]),
    ])
    assert FMT.build_request(req, "m")["messages"][1]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1"}, {"type": "text", "text": "here"}]


@pytest.mark.parametrize(("fmt", "expected"), [
    (ResponseFormat(type="json_schema", name="x", schema={"type": "object", "properties": {"a": {}}}),
     {"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {}}}}}),
    # Plain JSON mode has no Anthropic form (a schema must close every object): it is dropped.
    (ResponseFormat(type="json_object"), None),
    (ResponseFormat(type="json_schema", name="x"), None),
])
def test_response_format_maps_to_output_config(fmt: ResponseFormat, expected: dict[str, Any] | None) -> None:
    built = FMT.build_request(ChatRequest(model="m", response_format=fmt), "m")
    assert built.get("output_config") == expected


def test_text_response_format_and_auto_tool_choice_without_tools() -> None:
    built = FMT.build_request(ChatRequest(model="m", response_format=ResponseFormat(type="text"),
                                          tool_choice=ToolChoice(type="auto")), "m")
    assert "output_config" not in built and "tool_choice" not in built


def test_thinking_budget_raises_default_max_tokens_and_redacted_thinking_is_kept() -> None:
    req = ChatRequest(model="m", thinking={"type": "enabled", "budget_tokens": 8000}, messages=[
        Message(role="user", content=[TextPart(text="q")]),
        Message(role="assistant", content=[ThinkingPart(redacted="XYZ"), TextPart(text="a")]),
    ])
    built = FMT.build_request(req, "m")
    assert built["thinking"] == {"type": "enabled", "budget_tokens": 8000}
    assert built["max_tokens"] > 8000
    assert built["messages"][1]["content"][0] == {"type": "redacted_thinking", "data": "XYZ"}


def test_metadata_only_from_anthropic_sources() -> None:
    req = ChatRequest(model="m", metadata={"user_id": "u"}, source_format="anthropic")
    assert FMT.build_request(req, "m")["metadata"] == {"user_id": "u"}
    assert "metadata" not in FMT.build_request(req.model_copy(update={"source_format": "ollama"}), "m")


def test_reserved_keys_in_extra_never_forwarded() -> None:
    req = ChatRequest(model="m", source_format="anthropic", max_tokens=3,
                      extra={"plugins": [{"id": "x"}], "model": "other", "top_k": 3})
    built = FMT.build_request(req, "real")
    assert built["model"] == "real" and built["top_k"] == 3 and "plugins" not in built


# ---------------------------------------------------------------------------------------------
# parse_response / render_response / render_error
# ---------------------------------------------------------------------------------------------

UPSTREAM_MESSAGE: dict[str, Any] = {
    "id": "msg_01abc",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "ENC"},
        {"type": "text", "text": "Hello", "citations": None},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 100,
              "cache_creation_input_tokens": 0, "service_tier": "standard"},
}


def test_parse_response_reads_every_block_and_usage() -> None:
    resp = FMT.parse_response(copy.deepcopy(UPSTREAM_MESSAGE))
    assert resp.id == "msg_01abc" and resp.model == "claude-sonnet-4-5"
    assert resp.content == [
        ThinkingPart(thinking="hmm", signature="sig"),
        ThinkingPart(redacted="ENC"),
        TextPart(text="Hello", extra={"citations": None}),
        ToolUsePart(id="toolu_1", name="Bash", input={"command": "ls"}),
        OpaquePart(format="anthropic", data={"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                                             "input": {}}),
    ]
    assert resp.stop_reason == "tool_use" and resp.stop_sequence is None
    assert resp.usage == Usage(input_tokens=12, output_tokens=34, cache_read_input_tokens=100,
                               cache_creation_input_tokens=0)


def test_parse_response_maps_stop_reasons() -> None:
    body = copy.deepcopy(UPSTREAM_MESSAGE)
    body["stop_reason"], body["stop_sequence"] = "stop_sequence", "END"
    resp = FMT.parse_response(body)
    assert resp.stop_reason == "stop_sequence" and resp.stop_sequence == "END"
    body["stop_reason"] = "model_context_window_exceeded"
    assert FMT.parse_response(body).stop_reason == "max_tokens"
    body["stop_reason"] = None
    assert FMT.parse_response(body).stop_reason is None


@pytest.mark.parametrize("body", [
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    [1],
    "text",
    {"type": "message", "content": "not a list"},
    {"id": "x"},
])
def test_parse_response_rejects_non_messages(body: Any) -> None:
    with pytest.raises(ValueError):
        FMT.parse_response(body)


def test_render_response_is_a_valid_sdk_message() -> None:
    resp = ChatResponse(id="msg_keep", model="claude-x", stop_reason="tool_use",
                        content=[ThinkingPart(thinking="t", signature="s"), ThinkingPart(redacted="R"),
                                 TextPart(text="hi"), ToolUsePart(id="toolu_1", name="f", input={"a": 1})],
                        usage=Usage(input_tokens=3, output_tokens=4, cache_read_input_tokens=2))
    body = FMT.render_response(resp, ChatRequest(model="asked"))
    assert body == {
        "id": "msg_keep", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2},
    }
    SDKMessage.model_validate(body)


def test_render_response_generates_msg_id_and_falls_back_to_request_model() -> None:
    body = FMT.render_response(ChatResponse(id="chatcmpl-9", content=[TextPart(text="x")]),
                               ChatRequest(model="asked"))
    assert re.fullmatch(r"msg_[0-9A-Za-z]{24}", body["id"])
    assert body["model"] == "asked" and body["usage"] == {"input_tokens": 0, "output_tokens": 0}
    other = FMT.render_response(ChatResponse(content=[]), ChatRequest(model="asked"))
    assert other["id"] != body["id"]


def test_render_response_keeps_unparseable_tool_arguments() -> None:
    resp = ChatResponse(content=[ToolUsePart(id="t", name="f", raw_arguments="{oops")], stop_reason="tool_use")
    block = FMT.render_response(resp, ChatRequest(model="m"))["content"][0]
    assert block == {"type": "tool_use", "id": "t", "name": "f", "input": {RAW_ARGUMENTS_KEY: "{oops"}}
    # A client echoing the block back yields a request that still carries the text.
    req = FMT.parse_request({"model": "m", "max_tokens": 1, "messages": [{"role": "assistant", "content": [block]}]},
                            {})
    assert req.messages[0].content[0] == ToolUsePart(id="t", name="f", input={RAW_ARGUMENTS_KEY: "{oops"})


def test_render_response_maps_error_stop_reason_and_skips_empty_thinking_signature() -> None:
    body = FMT.render_response(ChatResponse(content=[ThinkingPart(thinking="x")], stop_reason="error"),
                               ChatRequest(model="m"))
    assert body["stop_reason"] == "end_turn"
    assert body["content"] == [{"type": "thinking", "thinking": "x", "signature": ""}]


@pytest.mark.parametrize(("error", "expected"), [
    (InvalidRequest("bad field"), "invalid_request_error"),
    (AuthenticationFailed("no key"), "authentication_error"),
    (NotFound("nope"), "not_found_error"),
    (PayloadTooLarge("big"), "request_too_large"),
    (PluginFailed("plugin 'x' failed: y"), "api_error"),
    (ProviderError("p", "provider 'p' returned 500"), "api_error"),
    (ProviderError("p", "provider 'p' returned 429", upstream_status=429), "rate_limit_error"),
    (ProviderError("p", "provider 'p' returned 529", upstream_status=529), "overloaded_error"),
    (ProviderTimeout("p", "provider 'p' timed out"), "timeout_error"),
    (RouterError("forbidden", status=403, kind="forbidden"), "permission_error"),
    (RouterError("slow down", status=429, kind="whatever"), "rate_limit_error"),
    (RouterError("teapot", status=418, kind="whatever"), "invalid_request_error"),
    (RouterError("odd", status=503, kind="whatever"), "api_error"),
    (RouterError("busy", status=529, kind="whatever"), "overloaded_error"),
])
def test_render_error_uses_anthropic_error_types(error: RouterError, expected: str) -> None:
    assert FMT.render_error(error) == {"type": "error", "error": {"type": expected, "message": error.message}}


# ---------------------------------------------------------------------------------------------
# stream renderer (golden SSE)
# ---------------------------------------------------------------------------------------------


def test_renderer_text_stream_golden() -> None:
    raw = render_all([
        MessageStart(id="msg_1", model="claude-x", usage=Usage(input_tokens=10)),
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, text="Hel"),
        BlockDelta(index=0, text="lo"),
        BlockStop(index=0),
        MessageDelta(stop_reason="end_turn", usage=Usage(input_tokens=10, output_tokens=5)),
        MessageStop(),
    ])
    assert raw == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":10,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hel"}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"lo"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"input_tokens":10,"output_tokens":5}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def test_renderer_tool_use_golden() -> None:
    frames = parse_sse(render_all([
        MessageStart(id="msg_2", model="m"),
        BlockStart(index=0, part=ToolUsePart(id="toolu_9", name="Bash", input={})),
        BlockDelta(index=0, partial_json='{"comm'),
        BlockDelta(index=0, partial_json='and": "ls"}'),
        BlockStop(index=0),
        MessageDelta(stop_reason="tool_use", usage=Usage(output_tokens=7)),
        MessageStop(),
    ]))
    assert frames[1:] == [
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": '{"command": "ls"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 7}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_renderer_replaces_invalid_tool_json_with_raw_arguments_object() -> None:
    frames = parse_sse(render_all([
        MessageStart(id="msg_2", model="m"),
        BlockStart(index=0, part=ToolUsePart(id="t", name="f", input={})),
        BlockDelta(index=0, partial_json='{"a": '),
        BlockStop(index=0),
        MessageStop(),
    ]))
    delta = frames[2][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert orjson.loads(delta["partial_json"]) == {RAW_ARGUMENTS_KEY: '{"a": '}


def test_renderer_thinking_then_text_golden() -> None:
    frames = parse_sse(render_all([
        MessageStart(id="msg_3", model="m", usage=Usage(input_tokens=1, cache_read_input_tokens=50)),
        BlockStart(index=0, part=ThinkingPart()),
        BlockDelta(index=0, thinking="Let me think"),
        BlockDelta(index=0, signature="SIG=="),
        BlockStop(index=0),
        BlockStart(index=1, part=ThinkingPart(redacted="ENC")),
        BlockStop(index=1),
        BlockStart(index=2, part=TextPart(text="")),
        BlockDelta(index=2, text="Answer"),
        BlockStop(index=2),
        MessageDelta(stop_reason="end_turn", usage=Usage(output_tokens=9)),
        MessageStop(),
    ]))
    assert frames == [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_3", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 0, "cache_read_input_tokens": 50}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "SIG=="}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "redacted_thinking", "data": "ENC"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "text_delta", "text": "Answer"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_renderer_renumbers_block_indices_contiguously() -> None:
    frames = parse_sse(render_all([
        MessageStart(id="msg_4", model="m"),
        BlockStart(index=3, part=TextPart(text="")),
        BlockDelta(index=3, text="a"),
        BlockStart(index=7, part=ToolUsePart(id="t", name="f", input={})),
        BlockDelta(index=7, partial_json="{}"),
        BlockStop(index=3),
        BlockStop(index=7),
        BlockDelta(index=99, text="ignored: never started"),
        MessageDelta(stop_reason="tool_use"),
        MessageStop(),
    ]))
    indexed = [(name, data["index"]) for name, data in frames if "index" in data]
    # Overlapping canonical blocks are serialised: block 1 starts once block 0 has stopped.
    assert indexed == [("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
                       ("content_block_start", 1), ("content_block_delta", 1), ("content_block_stop", 1)]


def test_renderer_synthesises_missing_start_and_closes_open_blocks() -> None:
    frames = parse_sse(render_all([
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, text="x"),
        MessageDelta(stop_reason="max_tokens", stop_sequence=None, usage=Usage(output_tokens=1)),
        MessageStop(),
        BlockDelta(index=0, text="after the end"),
        MessageStop(),
    ], ChatRequest(model="asked")))
    names = [name for name, _ in frames]
    assert names == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    message = frames[0][1]["message"]
    assert message["model"] == "asked" and re.fullmatch(r"msg_[0-9A-Za-z]{24}", message["id"])


def test_renderer_non_msg_id_is_replaced() -> None:
    frames = parse_sse(render_all([MessageStart(id="chatcmpl-1", model="m"), MessageStop()]))
    assert frames[0][1]["message"]["id"].startswith("msg_")
    assert [name for name, _ in frames] == ["message_start", "message_stop"]


def test_renderer_errors_and_keepalive() -> None:
    renderer = FMT.stream_renderer(ChatRequest(model="m"))
    assert renderer.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert renderer.render(StreamError(message="upstream died", error_type="overloaded_error")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"upstream died"}}\n\n')
    assert renderer.render_error(ProviderTimeout("p", "provider 'p' timed out")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"timeout_error",'
        b'"message":"provider \'p\' timed out"}}\n\n')


def test_rendered_stream_accumulates_in_the_official_sdk() -> None:
    resp = ChatResponse(id="msg_sdk", model="m", stop_reason="tool_use",
                        content=[ThinkingPart(thinking="t", signature="s"), TextPart(text="hi"),
                                 ToolUsePart(id="toolu_1", name="f", input={"a": [1, 2]})],
                        usage=Usage(input_tokens=5, output_tokens=6))
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in parse_sse(render_all(response_to_events(resp))):
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    final = SDKMessage.model_validate(snapshot.to_dict())
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 6 and final.usage.input_tokens == 5
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[2].input == {"a": [1, 2]}  # type: ignore[union-attr]
    assert final.content[0].signature == "s"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# stream decoder
# ---------------------------------------------------------------------------------------------

TEXT_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 7}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Héllo"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": " 世界!"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 15}}),
    ("message_stop", {"type": "message_stop"}),
)
TEXT_EVENTS = [
    MessageStart(id="msg_01", model="claude-x",
                 usage=Usage(input_tokens=25, output_tokens=1, cache_read_input_tokens=7)),
    BlockStart(index=0, part=TextPart(text="")),
    BlockDelta(index=0, text="Héllo"),
    BlockDelta(index=0, text=" 世界!"),
    BlockStop(index=0),
    MessageDelta(stop_reason="end_turn", usage=Usage(output_tokens=15)),
    MessageStop(),
]


def test_decoder_text_golden() -> None:
    assert decode_all(TEXT_STREAM) == TEXT_EVENTS


@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_decoder_handles_any_split(chunk: int) -> None:
    assert decode_all(TEXT_STREAM, chunk=chunk) == TEXT_EVENTS
    assert decode_all(TEXT_STREAM.replace(b"\n", b"\r\n"), chunk=chunk) == TEXT_EVENTS


TOOL_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_02", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 40, "output_tokens": 2}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Checking."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": '{"location": "Par'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": 'is"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 30}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_decoder_tool_use_golden() -> None:
    events = decode_all(TOOL_STREAM)
    assert events[4:9] == [
        BlockStart(index=1, part=ToolUsePart(id="toolu_7", name="get_weather", input={})),
        BlockDelta(index=1, partial_json=""),
        BlockDelta(index=1, partial_json='{"location": "Par'),
        BlockDelta(index=1, partial_json='is"}'),
        BlockStop(index=1),
    ]
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    resp = acc.result()
    assert resp.id == "msg_02" and resp.stop_reason == "tool_use"
    assert resp.content == [TextPart(text="Checking."),
                            ToolUsePart(id="toolu_7", name="get_weather", input={"location": "Paris"})]
    assert resp.usage == Usage(input_tokens=40, output_tokens=30)


THINKING_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_03", "type": "message", "role": "assistant", "content": [], "model": "claude-x",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 0}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "2+2 is "}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "4."}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM=="}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
                             "content_block": {"type": "redacted_thinking", "data": "ENC=="}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2,
                             "content_block": {"type": "server_tool_use", "id": "srv", "name": "web_search",
                                               "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ("content_block_start", {"type": "content_block_start", "index": 3, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 3,
                             "delta": {"type": "text_delta", "text": "4"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 3}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"input_tokens": 9, "output_tokens": 20, "cache_creation_input_tokens": 3}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_decoder_thinking_with_signature_and_carries_server_tool_blocks() -> None:
    events = decode_all(THINKING_STREAM)
    assert events == [
        MessageStart(id="msg_03", model="claude-x", usage=Usage(input_tokens=9)),
        BlockStart(index=0, part=ThinkingPart(thinking="", signature="")),
        BlockDelta(index=0, thinking="2+2 is "),
        BlockDelta(index=0, thinking="4."),
        BlockDelta(index=0, signature="EqQBCgIYAhIM=="),
        BlockStop(index=0),
        BlockStart(index=1, part=ThinkingPart(redacted="ENC==")),
        BlockStop(index=1),
        BlockStart(index=2, part=OpaquePart(format="anthropic", data={
            "type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}})),
        BlockDelta(index=2, opaque=OpaquePart(format="anthropic", data={
            "type": "input_json_delta", "partial_json": "{}"})),
        BlockStop(index=2),
        BlockStart(index=3, part=TextPart(text="")),
        BlockDelta(index=3, text="4"),
        BlockStop(index=3),
        MessageDelta(stop_reason="end_turn",
                     usage=Usage(input_tokens=9, output_tokens=20, cache_creation_input_tokens=3)),
        MessageStop(),
    ]
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    assert acc.result().content == [
        ThinkingPart(thinking="2+2 is 4.", signature="EqQBCgIYAhIM=="), ThinkingPart(redacted="ENC=="),
        OpaquePart(format="anthropic", data={"type": "server_tool_use", "id": "srv", "name": "web_search",
                                             "input": {}}),
        TextPart(text="4")]


def test_decoder_error_event() -> None:
    raw = TEXT_STREAM.split(b"event: content_block_stop")[0] + sse(
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    events = decode_all(raw, chunk=1)
    assert events[-1] == StreamError(message="Overloaded", error_type="overloaded_error")
    assert not any(isinstance(e, MessageStop) for e in events)


def test_decoder_invalid_json_is_a_stream_error() -> None:
    events = decode_all(b"event: message_start\ndata: {not json\n\n")
    assert len(events) == 1 and isinstance(events[0], StreamError)


def test_decoder_close_without_message_stop_closes_open_blocks() -> None:
    truncated = TOOL_STREAM.split(b"event: content_block_stop")[0]
    events = decode_all(truncated)
    assert events[-2:] == [BlockStop(index=0), MessageStop()]
    # Nothing started: nothing to close.
    assert decode_all(b"") == []
    assert decode_all(b": comment\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n") == []


def test_decoder_final_frame_without_blank_line_is_flushed() -> None:
    raw = TEXT_STREAM.rstrip(b"\n")
    assert decode_all(raw) == TEXT_EVENTS


def test_decoder_uses_data_type_when_event_line_missing() -> None:
    raw = b"".join(line for line in TEXT_STREAM.splitlines(keepends=True) if not line.startswith(b"event:"))
    assert decode_all(raw) == TEXT_EVENTS


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_renderer_to_decoder_round_trip() -> None:
    resp = ChatResponse(id="msg_rt", model="claude-x", stop_reason="tool_use",
                        content=[ThinkingPart(thinking="plan", signature="sig"), ThinkingPart(redacted="R"),
                                 TextPart(text="Calling a tool."),
                                 ToolUsePart(id="toolu_1", name="f", input={"path": "/tmp", "n": [1, 2]})],
                        usage=Usage(input_tokens=11, output_tokens=22, cache_read_input_tokens=3))
    raw = render_all(response_to_events(resp))
    for chunk in (None, 1):
        acc = ResponseAccumulator()
        for event in decode_all(raw, chunk=chunk):
            acc.feed(event)
        assert acc.result() == resp


def test_upstream_reply_renders_back_to_the_same_message() -> None:
    body = copy.deepcopy(UPSTREAM_MESSAGE)  # server tool blocks and citations included
    body["usage"].pop("service_tier")
    rendered = FMT.render_response(FMT.parse_response(copy.deepcopy(body)), ChatRequest(model="m"))
    assert rendered == body
