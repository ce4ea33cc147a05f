"""Same-format passthrough (llmrouter/formats/passthrough.py): an unchanged request going to a
provider of its client's format is forwarded from the client's JSON. It must send what the
canonical path sends: both paths' upstream JSON is compared over a corpus of requests, and through
the real app a request that a plugin changes (or might change) still takes the canonical path."""

from __future__ import annotations

import copy
import gzip
from typing import Any

import orjson
import pytest

from llmrouter.context import Context
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.formats.passthrough import ClientBody, forward_body
from llmrouter.hookspecs import hookimpl
from llmrouter.models import Message, TextPart
from llmrouter.observe.logfiles import logged_request, read_lines
from llmrouter.testing import MockProviders
from tests.benchmods import load_bench

AGENT = load_bench("agent_workload")
CALL_ARGS = '{"path": "a.py",  "content": "x = 1"}'  # spaced: the canonical path would compact it
TOOLS = [{"type": "function", "function": {"name": "read", "description": "Read a file",
                                            "parameters": {"type": "object", "properties": {}}}}]


def oai(*messages: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"model": "gpt-client", "messages": list(messages), **top}


def ant(*messages: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"model": "claude-client", "max_tokens": 512, "messages": list(messages), **top}


U = {"role": "user", "content": "hello"}
A = {"role": "assistant", "content": "hi"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": CALL_ARGS}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "x = 1"}

# (body, forwarded?) — True: the fast path must take it (and agree); False: it must decline.
OPENAI_CORPUS: list[tuple[dict[str, Any], bool]] = [
    (AGENT.openai_body("gpt-client", False), True),
    (oai(U), True),
    (oai({"role": "system", "content": "be brief"}, U, A, U), True),
    (oai({"role": "system", "content": ""}, U), True),
    (oai(U, CALL, RESULT, RESULT | {"tool_call_id": "call_2"}, U, tools=TOOLS), True),
    (oai(U, tools=TOOLS, tool_choice="required", parallel_tool_calls=False), True),
    (oai(U, tools=TOOLS, parallel_tool_calls=False), True),
    (oai(U, tools=TOOLS, parallel_tool_calls=True), True),
    (oai(U, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "read"}}), True),
    (oai(U, tool_choice="auto", parallel_tool_calls=True), True),
    (oai(U, max_completion_tokens=100, max_tokens=50, temperature=1, top_p=None, stop="END"), True),
    (oai(U, stop=[], n=1, user="u-1", seed=7, metadata={"a": "b"}, plugins=[{"id": "response-healing"}],
         tags=["mine"], stream_options={"include_usage": False}, logprobs=None), True),
    (oai(U | {"name": "ann", "x_custom": 1}, A | {"refusal": None}), True),
    (oai({"role": "assistant", "content": "", "tool_calls": CALL["tool_calls"]}, U), False),
    (oai({"role": "assistant", "tool_calls": CALL["tool_calls"]}, U), False),
    (oai({"role": "assistant", "content": None}, U), False),
    (oai(U, {"role": "assistant", "content": "x", "tool_calls": []}), False),
    (oai(U, {"role": "assistant", "content": "x", "reasoning_content": "hmm"}), False),
    (oai({"role": "system", "content": "a"}, {"role": "system", "content": "b"}, U), False),
    (oai({"role": "developer", "content": "a"}, U), False),
    (oai(U, A, {"role": "system", "content": "late"}, U), False),
    (oai({"role": "system", "content": "a", "name": "sys"}, U), False),
    (oai({"role": "user", "content": [{"type": "text", "text": "hi"}]}), False),
    (oai(U, {"role": "assistant", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}), False),
    (oai(U, {"role": "assistant", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": " "}}]}), False),
    (oai(U, response_format={"type": "json_object"}), False),
    (oai(U, tools=[]), False),
    (oai(U, tools=[{"type": "function", "function": {"name": "f"}}]), False),
    (oai({"role": "tool", "tool_call_id": "c", "content": None}), False),
]

BLOCK_TEXT = {"type": "text", "text": "see", "cache_control": {"type": "ephemeral"}}
TOOL_USE = {"type": "tool_use", "id": "tu_1", "name": "read", "input": {"path": "a.py"}}
ANT_TOOLS = [{"name": "read", "description": "Read", "input_schema": {"type": "object", "properties": {}}},
             {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
DOC = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Doc."}}

ANTHROPIC_CORPUS: list[tuple[dict[str, Any], bool]] = [
    (AGENT.anthropic_body("claude-client", False), True),
    (ant(U), True),
    (ant(U, system="be brief"), True),
    (ant(U, system=""), True),
    (ant(U, system=[BLOCK_TEXT]), True),
    (ant(U, system=[]), True),
    (ant({"role": "user", "content": [BLOCK_TEXT, DOC]}, {"role": "assistant", "content": [TOOL_USE]},
         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "ok"},
                                      {"type": "text", "text": "go on"}]},
         {"role": "system", "content": "late reminder"}, U, tools=ANT_TOOLS,
         tool_choice={"type": "auto", "disable_parallel_tool_use": True}), True),
    (ant(U, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "t", "signature": "sig"}, {"type": "text", "text": "a"}]}, U), True),
    (ant(U, temperature=0, top_p=None, stop_sequences=["X"], metadata={"user_id": "u"},
         thinking={"type": "enabled", "budget_tokens": 1024}, output_config={"effort": "high"},
         context_management={"edits": []}, plugins=[{"id": "response-healing"}], tags=["t"], stream=False), True),
    (ant({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r",
                                       "is_error": True}]}), True),
    (ant(U, U), False),
    (ant({"role": "user", "content": [{"type": "text", "text": "hi"}]}), False),
    (ant({"role": "user", "content": []}), False),
    (ant(U, {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"},
                                              {"type": "text", "text": "a"}]}, U), False),
    (ant({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r",
                                       "is_error": False}, BLOCK_TEXT]}), False),
    (ant({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                       "content": [{"type": "text", "text": "r"}]}, BLOCK_TEXT]}), False),
    (ant(U, output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}), False),
    (ant(U, tools=[{"name": "f"}]), False),
    (ant(U, tools=[{"name": "f", "description": None, "input_schema": {}}]), False),
    (ant(U, tool_choice={"type": "auto", "name": "f"}), False),
]


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with OpenAI tool-call arguments parsed (the one place the paths differ in text only)."""
    body = copy.deepcopy(body)
    for message in body.get("messages") or []:
        for call in message.get("tool_calls") or []:
            try:
                call["function"]["arguments"] = orjson.loads(call["function"]["arguments"])
            except orjson.JSONDecodeError:
                pass
    return body


def _arguments(body: dict[str, Any]) -> list[str]:
    return [c["function"]["arguments"] for m in body["messages"] for c in m.get("tool_calls") or []]


def _both(fmt: str, wire: Any, body: dict[str, Any], stream: bool) -> tuple[dict[str, Any], Any]:
    body = {**body, "stream": stream}
    request = CLIENT_FORMATS[fmt].parse_request(body, {})
    slow = wire.build_request(request, "sent-model")
    fast = forward_body(ClientBody(fmt, body, orjson.dumps(body)), "sent-model", request.stream)
    return slow, fast


@pytest.mark.parametrize("wire", [OpenAIFormat("user"), OpenAIFormat("keep")], ids=["fold", "keep"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_fast_path_sends_what_the_canonical_path_sends(wire: Any, stream: bool) -> None:
    for i, (body, forwarded) in enumerate(OPENAI_CORPUS):
        slow, fast = _both("openai", wire, body, stream)
        assert (fast is not None) == forwarded, f"corpus[{i}]"
        if fast is not None:
            assert _normalised(fast) == _normalised(slow), f"corpus[{i}]"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_fast_path_sends_what_the_canonical_path_sends(stream: bool) -> None:
    for i, (body, forwarded) in enumerate(ANTHROPIC_CORPUS):
        slow, fast = _both("anthropic", AnthropicFormat(), body, stream)
        assert (fast is not None) == forwarded, f"corpus[{i}]"
        if fast is not None:
            assert fast == slow, f"corpus[{i}]"


def test_fast_path_forwards_the_clients_objects_and_keeps_tool_arguments_verbatim() -> None:
    body = oai(U, CALL, RESULT, tools=TOOLS)
    fast = forward_body(ClientBody("openai", body, b""), "m", False)
    assert fast is not None and fast["messages"] is body["messages"] and fast["tools"] is body["tools"]
    assert fast["messages"][1]["tool_calls"][0]["function"]["arguments"] == CALL_ARGS
    assert body["model"] == "gpt-client"  # the client's body itself is never changed


# -- through the real app ------------------------------------------------------------------------


class Rewriter:
    """A pre_request plugin that changes the last user message."""

    @hookimpl
    def pre_request(self, ctx: Context) -> None:
        ctx.request.messages[-1].content = [TextPart(text="REWRITTEN")]


class Appender:
    """A misbehaving classifier: it adds a message instead of only returning tags."""

    @hookimpl
    def classify(self, ctx: Context) -> list[str]:
        ctx.request.messages.append(Message(role="user", content=[TextPart(text="SNUCK IN")]))
        return []


OPENAI_SSE = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},'
              b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
ANTHROPIC_SSE = b"".join(
    b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n" for kind, data in [
        ("message_start", {"message": {"id": "m", "type": "message", "role": "assistant", "model": "c",
                                       "content": [], "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        ("content_block_stop", {"index": 0}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
        ("message_stop", {})])


def _config(**extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "oa", "format": "openai", "base_url": "http://oa.test/v1", "discover": False},
                          {"name": "an", "format": "anthropic", "base_url": "http://an.test", "discover": False}],
            "routers": [{"type": "prefix", "model_prefix": "claude-", "provider": "an", "strip_prefix": False},
                        {"type": "fallback", "providers": ["oa"]}],
            "server": {"request_plugins": ["response-healing"]}, **extra}


async def test_app_fast_and_canonical_paths_send_the_same_upstream_json(
        router: Any, mock_providers: MockProviders) -> None:
    """The same requests through a router without request plugins (fast path) and one with a
    pre_request plugin that changes nothing (canonical path): the upstream JSON agrees."""
    oa = mock_providers.add_openai("http://oa.test/v1", stream_body=OPENAI_SSE)
    an = mock_providers.add_anthropic("http://an.test", stream_body=ANTHROPIC_SSE)
    fast = await router(_config())

    class Nothing:
        @hookimpl
        def pre_request(self, ctx: Context) -> None:
            return None

    slow = await router(_config(plugins={"nothing": {"enabled": True}}), plugins={"nothing": Nothing()})
    cases = [("openai", oa, body) for body, ok in OPENAI_CORPUS[:13] if ok] + \
            [("anthropic", an, body) for body, ok in ANTHROPIC_CORPUS[:10] if ok]
    for fmt, route, body in cases:
        for stream in (False, True):
            sent = []
            for client in (fast, slow):
                reply = await (client.openai if fmt == "openai" else client.anthropic)({**body, "stream": stream})
                assert reply.status == 200, reply.text
                sent.append(mock_providers.sent_json(route))
            assert _normalised(sent[0]) == _normalised(sent[1])
            if fmt == "openai" and CALL_ARGS in _arguments(body):
                # The fast path really was taken: the arguments text arrived as the client wrote it.
                assert CALL_ARGS in _arguments(sent[0]) and CALL_ARGS not in _arguments(sent[1])


async def test_app_plugin_changes_reach_the_upstream(router: Any, mock_providers: MockProviders) -> None:
    oa = mock_providers.add_openai("http://oa.test/v1")
    client = await router(_config(plugins={"rewriter": {"enabled": True}}), plugins={"rewriter": Rewriter()})
    assert (await client.openai(oai(U))).status == 200
    assert mock_providers.sent_json(oa)["messages"][-1]["content"] == "REWRITTEN"
    sneaky = await router(_config(classifiers={"appender": {"enabled": True}}), plugins={"appender": Appender()})
    assert (await sneaky.openai(oai(U))).status == 200
    assert mock_providers.sent_json(oa)["messages"][-1]["content"] == "SNUCK IN"


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_log_keeps_the_clients_raw_bytes(router: Any, mock_providers: MockProviders, fmt: str) -> None:
    """The log line holds the body byte for byte as the client sent it (even when a plugin changed
    the request), with request_format; the complete event carries the parsed body."""
    mock_providers.add_openai("http://oa.test/v1")
    mock_providers.add_anthropic("http://an.test")
    client = await router(_config(plugins={"rewriter": {"enabled": True}}), plugins={"rewriter": Rewriter()})
    body = oai(U, temperature=0.5) if fmt == "openai" else ant(U, system="s", temperature=0.5)
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)  # unusual spacing: kept as it was
    path = "/v1/chat/completions" if fmt == "openai" else "/v1/messages"
    reply = await client.post(path, raw)
    assert reply.status == 200 and reply.log_line is not None
    lines = [line for _, _, line in read_lines(client.pipeline.request_log.path)]
    assert len(lines) == 1 and raw.replace(b"\n", b" ") in lines[0]  # line breaks become spaces
    entry = reply.log_line
    assert entry["request_format"] == fmt and entry["request"] == body
    assert logged_request(entry).messages[-1].text() == "hello"
    event = next(e for e in reply.events if e["type"] == "complete")
    assert event["request"] == body and event["request_format"] == fmt


@pytest.mark.parametrize("arrival", ["pieces", "gzip", "gzip-pieces"])
async def test_a_body_arriving_in_pieces_or_compressed_is_read_whole(router: Any, mock_providers: MockProviders,
                                                                    arrival: str) -> None:
    """However the body arrives (chunked transfer in small pieces, gzip-compressed), the router
    reads all of it: the upstream gets the forwarded conversation and the log the client's bytes."""
    oa = mock_providers.add_openai("http://oa.test/v1")
    client = await router(_config())
    body = AGENT.openai_body("gpt-client", False)
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    data = gzip.compress(raw) if arrival.startswith("gzip") else raw

    async def pieces() -> Any:
        for start in range(0, len(data), 7_001):
            yield data[start:start + 7_001]

    headers = {"content-type": "application/json", **({"content-encoding": "gzip"} if "gzip" in arrival else {})}
    resp = await client.client.post("/v1/chat/completions", data=pieces() if "pieces" in arrival else data,
                                    headers=headers)
    assert resp.status == 200, await resp.text()
    assert mock_providers.sent_json(oa)["messages"] == body["messages"]
    client.pipeline.request_log.wait_idle()
    lines = [line for _, _, line in read_lines(client.pipeline.request_log.path)]
    assert len(lines) == 1 and raw.replace(b"\n", b" ") in lines[0]
