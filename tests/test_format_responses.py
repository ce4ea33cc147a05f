"""Unit tests of the OpenAI Responses API converters (client and provider side, replies and streams)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats import CLIENT_FORMATS, UPSTREAM_FORMATS
from llmrouter.formats.base import response_to_events
from llmrouter.formats.responses import ResponsesFormat, parse_responses_request
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    MessageDelta,
    MessageStop,
    OpaquePart,
    ResponseAccumulator,
    StreamError,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from llmrouter.web.response_store import MemoryResponseStore

FMT = CLIENT_FORMATS["openai-responses"]
RESPONSES = UPSTREAM_FORMATS["openai-responses"]
OPENAI = UPSTREAM_FORMATS["openai"]
ANTHROPIC = UPSTREAM_FORMATS["anthropic"]
OLLAMA = UPSTREAM_FORMATS["ollama"]

EXEC_TOOL = {"type": "function", "name": "exec_command", "description": "Run a command", "strict": False,
             "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
NAMESPACE_TOOL = {"type": "namespace", "name": "agents", "description": "Sub-agents", "tools": [
    {"type": "function", "name": "spawn", "description": "Spawn one", "strict": False,
     "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]}
REASONING_ITEM = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "SECRET PLAN"}],
                  "encrypted_content": "gAAAA-upstream-blob"}


def codex_body(**extra: Any) -> dict[str, Any]:
    """A request shaped like Codex 0.171's (observed on the wire)."""
    return {
        "model": "gpt-test",
        "instructions": "You are Codex.",
        "input": [
            {"type": "message", "id": "msg_d1", "role": "developer",
             "content": [{"type": "input_text", "text": "Sandbox rules."}]},
            {"type": "message", "id": "msg_d2", "role": "developer",
             "content": [{"type": "input_text", "text": "Skills."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
            REASONING_ITEM,
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command",
             "arguments": '{"cmd":"ls"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
            {"type": "function_call", "call_id": "call_2", "name": "spawn", "namespace": "agents",
             "arguments": '{"task":"x"}'},
            {"type": "function_call_output", "call_id": "call_2", "output": "spawned"},
            {"type": "message", "role": "assistant", "id": "msg_a1",
             "content": [{"type": "output_text", "text": "Two files.", "annotations": []}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "thanks"}]},
        ],
        "tools": [EXEC_TOOL, NAMESPACE_TOOL, {"type": "web_search", "external_web_access": False}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "abc",
        "client_metadata": {"x-codex-installation-id": "i"},
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Client requests
# ---------------------------------------------------------------------------------------------


def test_string_input_is_one_user_message() -> None:
    req = parse_responses_request({"model": "m", "input": "hello", "instructions": "be brief"})
    assert req.source_format == "openai-responses"
    assert req.system_text() == "be brief"
    assert [(m.role, m.text()) for m in req.messages] == [("user", "hello")]


def test_codex_request_to_canonical() -> None:
    req = parse_responses_request(codex_body())
    assert req.system_text() == "You are Codex.\n\nSandbox rules.\n\nSkills."
    roles = [m.role for m in req.messages]
    assert roles == ["user", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assistant = req.messages[2]
    assert isinstance(assistant.content[0], OpaquePart) and assistant.content[0].data == REASONING_ITEM
    call = assistant.content[1]
    assert isinstance(call, ToolUsePart) and call.id == "call_1" and call.input == {"cmd": "ls"}
    result = req.messages[3].content[0]
    assert isinstance(result, ToolResultPart) and result.text() == "a.txt\nb.txt"
    ns_call = req.messages[4].content[0]
    assert isinstance(ns_call, ToolUsePart) and ns_call.name == "agents__spawn"
    assert [t.name for t in req.tools or []] == ["exec_command", "agents__spawn"]
    assert req.extra["_hosted_tools"] == [{"type": "web_search", "external_web_access": False}]
    assert req.thinking == {"type": "enabled", "budget_tokens": 16384}
    assert req.stream is True
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "reasoning"):
        assert key in req.extra


def test_same_format_round_trip_is_exact() -> None:
    body = codex_body()
    built = RESPONSES.build_request(parse_responses_request(body), "gpt-test")
    assert built == {**body, "model": "gpt-test"}


def test_unknown_fields_reach_a_responses_provider_only() -> None:
    req = parse_responses_request(codex_body(brand_new_field={"x": 1}))
    assert RESPONSES.build_request(req, "m")["brand_new_field"] == {"x": 1}
    assert "brand_new_field" not in OPENAI.build_request(req, "m")
    assert "brand_new_field" not in ANTHROPIC.build_request(req, "m")


def test_other_formats_get_flattened_tools_and_no_reasoning_text() -> None:
    req = parse_responses_request(codex_body())
    for wire in (OPENAI, ANTHROPIC, OLLAMA):
        body = wire.build_request(req, "m")
        text = json.dumps(body)
        assert "SECRET PLAN" not in text and "gAAAA" not in text, wire.name
        assert "web_search" not in text, wire.name
        assert "agents__spawn" in text, wire.name
    chat = OPENAI.build_request(req, "m")
    assert chat["messages"][0] == {"role": "system", "content": "You are Codex.\n\nSandbox rules.\n\nSkills."}
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec_command", "agents__spawn"]
    assert chat["reasoning_effort"] == "high"
    assert "reasoning_effort" not in OPENAI.build_request(parse_responses_request({"model": "m", "input": "x"}), "m")
    assert ANTHROPIC.build_request(req, "m")["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert OLLAMA.build_request(req, "m")["think"] is True


def test_mid_conversation_developer_message_stays_in_place() -> None:
    req = parse_responses_request({"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "input_text", "text": "late rule"}]},
        {"role": "user", "content": "again"}]})
    assert req.system is None
    assert [m.role for m in req.messages] == ["user", "system", "user"]
    built = RESPONSES.build_request(req, "m")
    assert [i["role"] for i in built["input"]] == ["user", "developer", "user"]


def test_content_parts_images_files_refusals() -> None:
    req = parse_responses_request({"model": "m", "input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "high"},
            {"type": "input_image", "image_url": "https://x/y.png"},
            {"type": "input_file", "file_id": "file_1"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": "ok"}]})
    parts = req.messages[0].content
    assert [type(p).__name__ for p in parts] == ["TextPart", "ImagePart", "ImagePart", "OpaquePart"]
    assert parts[1].data == "AAAA" and parts[1].media_type == "image/png"  # type: ignore[union-attr]
    chat = OPENAI.build_request(req, "m")
    assert chat["messages"][0]["content"][1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert "file_1" not in json.dumps(chat)
    same = RESPONSES.build_request(req, "m")
    assert same["input"][0]["content"][3] == {"type": "input_file", "file_id": "file_1"}
    assert same["input"][1]["content"] == [{"type": "refusal", "refusal": "no"}]


def test_custom_tools_are_string_functions_elsewhere() -> None:
    req = parse_responses_request({"model": "m", "input": [
        {"role": "user", "content": "patch it"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"}],
        "tools": [{"type": "custom", "name": "apply_patch", "description": "Patch files",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}}]})
    chat = OPENAI.build_request(req, "m")
    assert chat["tools"][0]["function"]["parameters"]["required"] == ["input"]
    assert json.loads(chat["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"input": "*** Begin Patch"}
    same = RESPONSES.build_request(req, "m")
    assert same["tools"][0]["type"] == "custom" and same["tools"][0]["format"]["syntax"] == "lark"
    assert same["input"][1] == {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch",
                                "input": "*** Begin Patch"}
    assert same["input"][2]["type"] == "custom_tool_call_output"
    # A chat provider calling the flattened function comes back to the client as a custom call.
    reply = ChatResponse(content=[ToolUsePart(id="c2", name="apply_patch", input={"input": "diff"})],
                         stop_reason="tool_use")
    item = FMT.render_response(reply, req)["output"][0]
    assert item["type"] == "custom_tool_call" and item["input"] == "diff"


def test_tool_choice_parallel_text_format_limits() -> None:
    req = parse_responses_request({
        "model": "m", "input": "x", "tools": [EXEC_TOOL], "tool_choice": {"type": "function", "name": "exec_command"},
        "parallel_tool_calls": False, "max_output_tokens": 99, "temperature": 0.2, "top_p": 0.9,
        "metadata": {"k": "v"}, "text": {"format": {"type": "json_schema", "name": "out", "strict": True,
                                                    "schema": {"type": "object"}}, "verbosity": "low"}})
    assert req.tool_choice is not None and req.tool_choice.type == "tool" and req.tool_choice.disable_parallel
    assert req.max_tokens == 99 and req.response_format is not None and req.response_format.name == "out"
    chat = OPENAI.build_request(req, "m")
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "exec_command"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"]["json_schema"]["schema"] == {"type": "object"}
    same = RESPONSES.build_request(req, "m")
    assert same["text"] == {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"},
                                       "strict": True}, "verbosity": "low"}
    assert same["max_output_tokens"] == 99 and same["parallel_tool_calls"] is False


@pytest.mark.parametrize(("body", "needle"), [
    ([], "request body must be a JSON object"),
    ({"input": "x"}, "model: field required"),
    ({"model": "m"}, "input: field required"),
    ({"model": "m", "input": 5}, "input: expected an array"),
    ({"model": "m", "input": []}, "input: must contain at least one item"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role: unknown role 'robot'"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
    ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id: field required"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name: field required"),
    ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens: expected an integer"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "[responses] store = true"),
])
def test_bad_requests_name_the_field(body: Any, needle: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_responses_request(body)
    assert needle in info.value.message


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


def test_render_reply_maps_namespaced_calls_back() -> None:
    req = parse_responses_request(codex_body(stream=False))
    reply = ChatResponse(id="x", model="up", content=[
        TextPart(text="Spawning."), ToolUsePart(id="call_9", name="agents__spawn", input={"task": "t"})],
        stop_reason="tool_use", usage=Usage(input_tokens=10, output_tokens=4, cache_read_input_tokens=6))
    body = FMT.render_response(reply, req)
    assert body["object"] == "response" and body["status"] == "completed" and body["id"].startswith("resp_")
    message, call = body["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == "Spawning."
    assert call == {"id": call["id"], "type": "function_call", "status": "completed", "arguments": '{"task":"t"}',
                    "call_id": "call_9", "name": "spawn", "namespace": "agents"}
    assert body["usage"]["input_tokens"] == 16 and body["usage"]["input_tokens_details"]["cached_tokens"] == 6
    assert body["usage"]["total_tokens"] == 20


def test_max_tokens_reply_is_incomplete() -> None:
    req = parse_responses_request({"model": "m", "input": "x"})
    body = FMT.render_response(ChatResponse(content=[TextPart(text="cut")], stop_reason="max_tokens"), req)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_signed_thinking_survives_the_client_round_trip() -> None:
    req = parse_responses_request({"model": "m", "input": "x"})
    thinking = ThinkingPart(thinking="hmm", signature="sig-123")
    body = FMT.render_response(ChatResponse(content=[thinking, TextPart(text="ok")]), req)
    item = body["output"][0]
    assert item["type"] == "reasoning" and item["summary"] == [{"type": "summary_text", "text": "hmm"}]
    back = parse_responses_request({"model": "m", "input": [
        {"role": "user", "content": "x"}, item, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "more"}]})
    part = back.messages[1].content[0]
    assert isinstance(part, ThinkingPart) and part.signature == "sig-123" and part.thinking == "hmm"
    assert ANTHROPIC.build_request(back, "m")["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": "hmm", "signature": "sig-123"}


def test_parse_provider_reply() -> None:
    reply = RESPONSES.parse_response({
        "id": "resp_up", "object": "response", "status": "completed", "model": "gpt-up",
        "output": [REASONING_ITEM,
                   {"type": "message", "id": "msg_1", "role": "assistant",
                    "content": [{"type": "output_text", "text": "hi", "annotations": []}]},
                   {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "spawn", "namespace": "agents",
                    "arguments": '{"task": "t"}'}],
        "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 5}, "output_tokens": 3}})
    assert reply.id == "resp_up" and reply.model == "gpt-up" and reply.stop_reason == "tool_use"
    assert isinstance(reply.content[0], OpaquePart) and reply.content[0].data == REASONING_ITEM
    assert reply.text() == "hi"
    assert reply.tool_calls()[0].name == "agents__spawn" and reply.tool_calls()[0].input == {"task": "t"}
    assert reply.usage == Usage(input_tokens=15, output_tokens=3, cache_read_input_tokens=5)
    # The reasoning item never reaches a Chat Completions client as text.
    from llmrouter.formats.openai import render_chat_response

    rendered = render_chat_response(reply, ChatRequest(model="m"))
    assert "SECRET PLAN" not in json.dumps(rendered)


@pytest.mark.parametrize("body", [
    {"error": {"message": "bad key"}}, {"status": "failed", "error": {"message": "boom"}, "output": []}, [1],
    {"id": "x"}])
def test_parse_provider_reply_rejects_non_responses(body: Any) -> None:
    with pytest.raises(ValueError):
        RESPONSES.parse_response(body)


def test_build_from_a_chat_client() -> None:
    from llmrouter.formats.openai import parse_chat_request

    chat = parse_chat_request({"model": "m", "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}], "stop": ["x"], "max_tokens": 5,
        "user": "someone"})
    body = RESPONSES.build_request(chat, "up")
    assert body == {"model": "up", "instructions": "sys", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "arguments": "{}", "call_id": "c1", "name": "f"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"}],
        "max_output_tokens": 5, "store": False}


# ---------------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------------


def _events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        name, data = frame.split("\n", 1)
        payload = json.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        out.append(payload)
    return out


def test_stream_renderer_sequence() -> None:
    req = parse_responses_request(codex_body())
    reply = ChatResponse(id="u", model="up", content=[
        TextPart(text="Running."), ToolUsePart(id="call_5", name="agents__spawn", input={"task": "t"})],
        stop_reason="tool_use", usage=Usage(input_tokens=9, output_tokens=2))
    renderer = FMT.stream_renderer(req)
    events = _events(b"".join(renderer.render(e) for e in response_to_events(reply)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    done_call = events[11]["item"]
    assert done_call["name"] == "spawn" and done_call["namespace"] == "agents"
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 2
    assert [i["id"] for i in completed["output"]] == [events[2]["item"]["id"], events[8]["item"]["id"]]
    assert completed["output"][0]["content"][0]["text"] == "Running."


def test_stream_renderer_errors() -> None:
    req = parse_responses_request({"model": "m", "input": "x", "stream": True})
    before = FMT.stream_renderer(req)
    first = _events(before.render_error(RouterError("upstream down", status=502)))
    assert first == [{"type": "error", "code": "server_error", "message": "upstream down", "param": None,
                      "sequence_number": 0}]
    after = FMT.stream_renderer(req)
    events = response_to_events(ChatResponse(content=[TextPart(text="par")]))
    out = b"".join(after.render(e) for e in events[:3])
    out += after.render(StreamError(message="connection reset"))
    tail = _events(out)[-1]
    assert tail["type"] == "response.failed"
    assert tail["response"]["error"]["message"] == "connection reset" and tail["response"]["status"] == "failed"


def _decode(chunks: list[bytes]) -> ChatResponse:
    decoder = RESPONSES.stream_decoder()
    acc = ResponseAccumulator()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            acc.feed(event)
    for event in decoder.close():
        acc.feed(event)
    assert acc.error is None, acc.error
    return acc.result()


def test_stream_decoder_round_trip_with_the_renderer() -> None:
    """The renderer's own bytes, cut into 7-byte chunks, decode back to the same reply."""
    req = parse_responses_request(codex_body())
    reply = ChatResponse(id="u", model="up", content=[
        TextPart(text="héllo"), ToolUsePart(id="c1", name="exec_command", input={"cmd": "ls -la"})],
        stop_reason="tool_use", usage=Usage(input_tokens=9, output_tokens=2))
    renderer = FMT.stream_renderer(req)
    raw = b"".join(renderer.render(e) for e in response_to_events(reply))
    decoded = _decode([raw[i:i + 7] for i in range(0, len(raw), 7)])
    assert decoded.text() == "héllo" and decoded.stop_reason == "tool_use"
    assert decoded.tool_calls()[0].input == {"cmd": "ls -la"} and decoded.tool_calls()[0].id == "c1"
    assert decoded.usage.input_tokens == 9 and decoded.usage.output_tokens == 2


def test_stream_decoder_items_only_on_done_and_reasoning() -> None:
    frames = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "up"}},
        {"type": "response.output_item.done", "output_index": 0, "item": REASONING_ITEM},
        {"type": "response.output_item.done", "output_index": 1, "item": {
            "type": "message", "id": "m1", "role": "assistant", "content": [{"type": "output_text", "text": "hey"}]}},
        {"type": "response.output_item.done", "output_index": 2, "item": {
            "type": "function_call", "id": "fc", "call_id": "c1", "name": "f", "arguments": '{"a":1}'}},
        {"type": "response.completed", "response": {"status": "completed", "usage": {"input_tokens": 3,
                                                                                        "output_tokens": 1}}}]
    raw = b"".join(f"event: {f['type']}\ndata: {json.dumps(f)}\n\n".encode() for f in frames)
    decoded = _decode([raw])
    assert isinstance(decoded.content[0], OpaquePart) and decoded.content[0].data == REASONING_ITEM
    assert decoded.text() == "hey" and decoded.tool_calls()[0].input == {"a": 1}
    assert decoded.stop_reason == "tool_use" and decoded.id == "resp_1"


@pytest.mark.parametrize(("frame", "message"), [
    ({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error",
                                                                           "message": "model crashed"}}},
     "model crashed"),
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, "slow down"),
])
def test_stream_decoder_failures(frame: dict[str, Any], message: str) -> None:
    decoder = RESPONSES.stream_decoder()
    events = decoder.feed(b'data: {"type":"response.created","response":{"id":"r"}}\n\n'
                          + f"data: {json.dumps(frame)}\n\n".encode())
    errors = [e for e in events if isinstance(e, StreamError)]
    assert errors and errors[0].message == message
    assert decoder.close() == []


def test_stream_decoder_truncated_stream_is_finished() -> None:
    decoder = RESPONSES.stream_decoder()
    events = decoder.feed(b'data: {"type":"response.created","response":{"id":"r"}}\n\n'
                          b'data: {"type":"response.content_part.added","output_index":0,"content_index":0,'
                          b'"item_id":"m","part":{"type":"output_text","text":""}}\n\n'
                          b'data: {"type":"response.output_text.delta","output_index":0,"content_index":0,'
                          b'"delta":"par"}\n\n')
    events += decoder.close()
    assert isinstance(events[-1], MessageStop) and isinstance(events[-2], MessageDelta)
    assert any(isinstance(e, BlockStop) for e in events) and any(isinstance(e, BlockStart) for e in events)
    assert [e.text for e in events if isinstance(e, BlockDelta)] == ["par"]
    empty = RESPONSES.stream_decoder()
    assert isinstance(empty.close()[0], StreamError)


# ---------------------------------------------------------------------------------------------
# The conversation store
# ---------------------------------------------------------------------------------------------


def test_store_chains_previous_response_id_and_evicts() -> None:
    store = MemoryResponseStore(max_stored=2)
    fmt = ResponsesFormat(store=store)
    first = fmt.parse_request({"model": "m", "instructions": "old rules", "input": [
        {"role": "developer", "content": "dev"}, {"role": "user", "content": "my name is Ada"}]}, {})
    body = fmt.render_response(ChatResponse(content=[TextPart(text="hi Ada")]), first)
    second = fmt.parse_request({"model": "m", "instructions": "new rules", "previous_response_id": body["id"],
                                "input": "what is my name?"}, {})
    assert second.system_text() == "new rules\n\ndev"  # old instructions are not carried over
    assert [(m.role, m.text()) for m in second.messages] == [
        ("user", "my name is Ada"), ("assistant", "hi Ada"), ("user", "what is my name?")]
    assert "previous_response_id" not in RESPONSES.build_request(second, "m")
    ids = [fmt.render_response(ChatResponse(content=[TextPart(text=str(i))]), second)["id"] for i in range(2)]
    assert len(store) == 2 and store.get(body["id"]) is None and store.get(ids[0]) is not None
    with pytest.raises(InvalidRequest, match="no stored response"):
        fmt.parse_request({"model": "m", "previous_response_id": body["id"], "input": "x"}, {})


def test_store_respects_store_false_and_copies() -> None:
    store = MemoryResponseStore(max_stored=5)
    fmt = ResponsesFormat(store=store)
    req = fmt.parse_request({"model": "m", "input": "x", "store": False}, {})
    fmt.render_response(ChatResponse(content=[TextPart(text="y")]), req)
    assert len(store) == 0
    store.put("r", [], [Message(role="user", content=[TextPart(text="a")])])
    got = store.get("r")
    assert got is not None
    got.messages[0].content.append(TextPart(text="mutated"))
    again = store.get("r")
    assert again is not None and again.messages[0].text() == "a"


def test_other_vendors_thinking_never_reaches_a_responses_provider() -> None:
    """A session that moves from an Anthropic to a Responses provider: the signed thinking the
    client carried (in a router-made reasoning item) is dropped, not sent as unverifiable data."""
    item = FMT.render_response(ChatResponse(content=[ThinkingPart(thinking="t", signature="s")]),
                               parse_responses_request({"model": "m", "input": "x"}))["output"][0]
    req = parse_responses_request({"model": "m", "input": [{"role": "user", "content": "x"}, item,
                                                            {"role": "user", "content": "y"}]})
    assert [i.get("type") for i in RESPONSES.build_request(req, "m")["input"]] == ["message", "message"]
