"""Golden tests: the exact SSE frames a streaming client receives through the real app, for every
pairing of client format (OpenAI, Anthropic) and provider format (OpenAI, Anthropic, Ollama, echo).

Upstream streams are typed out by hand from the official API references (respx serves them), so
a bug in a decoder cannot be cancelled out by the matching bug in a renderer. Each client frame
is checked: event type, order, indices, ids, names, argument fragments, stop reasons and usage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmrouter import ChatResponse, Context, Flow, hookimpl
from llmrouter.models import TextPart
from llmrouter.testing import MockProviders, Reply, RouterClient, anthropic_message, openai_chat

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

OA_URL, AN_URL, OL_URL = "http://oa.test/v1", "http://an.test", "http://ol.test"
CONFIG: dict[str, Any] = {
    "providers": [
        {"name": "oa", "format": "openai", "base_url": OA_URL, "discover": False, "cost_per_1m_tokens": 2.0},
        {"name": "an", "format": "anthropic", "base_url": AN_URL, "discover": False},
        {"name": "ol", "format": "ollama", "base_url": OL_URL, "discover": False},
        {"name": "echo", "format": "echo"},
    ],
    "routers": [{"type": "prefix", "model_prefix": f"{p}/", "provider": p, "strip_prefix": True} for p in ("oa", "an", "ol", "echo")],
}


class Prefixed:
    """Equal to any string starting with ``prefix`` (for ids the router or Ollama generate)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(self.prefix)

    def __repr__(self) -> str:
        return f"Prefixed({self.prefix!r})"


def sse(frames: list[tuple[str | None, Any]]) -> bytes:
    """SSE bytes for ``(event, data)`` frames; ``data`` is JSON-encoded unless it is a string."""
    out = []
    for event, data in frames:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {event}\n" if event else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    """Ollama's newline-delimited JSON."""
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """The ``(event, data)`` frames of an SSE body; comment-only frames are returned as ``(":", text)``."""
    frames: list[tuple[str | None, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data, comments = None, [], []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if not data and event is None:
            frames.append((":", " ".join(comments)))
            continue
        raw = "\n".join(data)
        frames.append((event, raw if raw == "[DONE]" else json.loads(raw)))
    return frames


def openai_view(text: str, *, include_usage: bool = False) -> list[Any]:
    """Reduce an OpenAI client stream to ``(delta, finish_reason)`` per chunk, ``("usage", {...})`` and
    ``"[DONE]"``, after checking the fields every chunk must share."""
    frames = parse_sse(text)
    view: list[Any] = []
    ids, created, models = set(), set(), set()
    for event, data in frames:
        assert event is None, f"OpenAI streams carry no event names, got {event!r}"
        if data == "[DONE]":
            view.append("[DONE]")
            continue
        assert data["object"] == "chat.completion.chunk"
        ids.add(data["id"])
        created.add(data["created"])
        models.add(data["model"])
        if include_usage:
            assert "usage" in data, "with include_usage every chunk carries a usage key"
        else:
            assert "usage" not in data
        if not data["choices"]:
            view.append(("usage", data["usage"]))
            continue
        assert include_usage is False or data["usage"] is None
        (choice,) = data["choices"]
        assert choice["index"] == 0
        view.append((choice["delta"], choice["finish_reason"]))
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-"), ids
    assert len(created) == 1 and len(models) == 1
    assert view and view[-1] == "[DONE]" and view.count("[DONE]") == 1
    return view


def anthropic_view(text: str) -> list[tuple[str, dict[str, Any]]]:
    """An Anthropic client stream as ``(event, data)`` with ``data["type"] == event`` checked and the
    message id checked and removed; pings are kept."""
    frames = parse_sse(text)
    view = []
    for event, data in frames:
        assert isinstance(event, str) and event != ":", f"unexpected frame {event!r}"
        assert data["type"] == event
        data = dict(data)
        data.pop("type")
        if event == "message_start":
            message = dict(data["message"])
            assert message.pop("id").startswith("msg_")
            data["message"] = message
        view.append((event, data))
    return view


def check_anthropic_indices(view: list[tuple[str, dict[str, Any]]]) -> None:
    """Blocks open 0, 1, 2... one at a time, and every delta targets the open block."""
    expected, open_index = 0, None
    for event, data in view:
        if event == "content_block_start":
            assert open_index is None and data["index"] == expected
            open_index = data["index"]
            expected += 1
        elif event == "content_block_delta":
            assert data["index"] == open_index
        elif event == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None


def message_start(model: str, input_tokens: int = 0, output_tokens: int = 0) -> tuple[str, dict[str, Any]]:
    """The expected ``message_start`` frame (id removed)."""
    return ("message_start", {"message": {
        "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}})


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_start", {"index": index, "content_block": block})


def text_delta(index: int, text: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": text}})


def json_delta(index: int, partial: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": partial}})


def thinking_delta(index: int, thinking: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": thinking}})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"index": index})


def message_end(stop_reason: str, usage: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """The expected ``message_delta`` and ``message_stop`` frames."""
    return [("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}),
            ("message_stop", {})]


ROLE = ({"role": "assistant", "content": ""}, None)
TEXT_BLOCK = {"type": "text", "text": ""}


def content(text: str) -> tuple[dict[str, Any], None]:
    return ({"content": text}, None)


def reasoning(text: str) -> tuple[dict[str, Any], None]:
    return ({"reasoning_content": text}, None)


def call_start(index: int, call_id: Any, name: str) -> tuple[dict[str, Any], None]:
    return ({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                             "function": {"name": name, "arguments": ""}}]}, None)


def call_args(index: int, fragment: str) -> tuple[dict[str, Any], None]:
    return ({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, None)


def finish(reason: str) -> tuple[dict[str, Any], str]:
    return ({}, reason)


def reassemble_tool_calls(view: list[Any]) -> dict[int, dict[str, Any]]:
    """Rebuild OpenAI tool calls from streamed deltas the way SDKs do (by index)."""
    calls: dict[int, dict[str, Any]] = {}
    for item in view:
        if not isinstance(item, tuple) or item[0] == "usage":
            continue
        for delta in item[0].get("tool_calls", []):
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id") or ""
            call["name"] += delta.get("function", {}).get("name") or ""
            call["arguments"] += delta.get("function", {}).get("arguments") or ""
    return {i: {**c, "arguments": json.loads(c["arguments"])} for i, c in calls.items()}


# ---------------------------------------------------------------------------------------------
# Upstream streams, as each official API sends them
# ---------------------------------------------------------------------------------------------

_OA = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-up",
       "system_fingerprint": "fp_1"}


def _oa_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> tuple[None, dict[str, Any]]:
    return (None, {**_OA, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                       "finish_reason": finish_reason}], "usage": None})


_OA_USAGE = (None, {**_OA, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})

OPENAI_TEXT = sse([
    _oa_chunk({"role": "assistant", "content": "", "refusal": None}),
    _oa_chunk({"content": "Hel"}),
    _oa_chunk({"content": "lo"}),
    _oa_chunk({}, "stop"),
    _OA_USAGE,
    (None, "[DONE]"),
])

OPENAI_TOOLS = sse([
    _oa_chunk({"role": "assistant", "content": "Checking.", "refusal": None}),
    _oa_chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _oa_chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                               "function": {"name": "get_time", "arguments": ""}}]}),
    _oa_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"CET"}'}}]}),
    _oa_chunk({}, "tool_calls"),
    _OA_USAGE,
    (None, "[DONE]"),
])

OPENAI_REASONING = sse([
    _oa_chunk({"role": "assistant", "content": ""}),
    _oa_chunk({"reasoning_content": "Let me "}),
    _oa_chunk({"reasoning_content": "think."}),
    _oa_chunk({"content": "Answer."}),
    _oa_chunk({}, "stop"),
    _OA_USAGE,
    (None, "[DONE]"),
])


def _an_start(input_tokens: int = 25) -> tuple[str, dict[str, Any]]:
    return ("message_start", {"type": "message_start", "message": {
        "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-up", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})


def _an(event: str, **data: Any) -> tuple[str, dict[str, Any]]:
    return (event, {"type": event, **data})


def _an_end(stop_reason: str) -> list[tuple[str, dict[str, Any]]]:
    return [_an("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": None},
                usage={"output_tokens": 9}), _an("message_stop")]


ANTHROPIC_TEXT = sse([
    _an_start(),
    _an("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _an("ping"),
    _an("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"}),
    _an("content_block_delta", index=0, delta={"type": "text_delta", "text": "lo"}),
    _an("content_block_stop", index=0),
    *_an_end("end_turn"),
])

ANTHROPIC_TOOLS = sse([
    _an_start(),
    _an("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _an("content_block_delta", index=0, delta={"type": "text_delta", "text": "Checking."}),
    _an("content_block_stop", index=0),
    _an("content_block_start", index=1,
        content_block={"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}),
    _an("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
    _an("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"city":'}),
    _an("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ' "Paris"}'}),
    _an("content_block_stop", index=1),
    _an("content_block_start", index=2,
        content_block={"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}),
    _an("content_block_delta", index=2, delta={"type": "input_json_delta", "partial_json": '{"tz": "CET"}'}),
    _an("content_block_stop", index=2),
    *_an_end("tool_use"),
])

ANTHROPIC_THINKING = sse([
    _an_start(),
    _an("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
    _an("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Let me "}),
    _an("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "think."}),
    _an("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
    _an("content_block_stop", index=0),
    _an("content_block_start", index=1, content_block={"type": "redacted_thinking", "data": "EmwKAhgBEgy"}),
    _an("content_block_stop", index=1),
    _an("content_block_start", index=2, content_block={"type": "text", "text": ""}),
    _an("content_block_delta", index=2, delta={"type": "text_delta", "text": "Answer."}),
    _an("content_block_stop", index=2),
    *_an_end("end_turn"),
])

ANTHROPIC_SERVER_TOOL = sse([
    _an_start(),
    _an("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _an("content_block_delta", index=0, delta={"type": "text_delta", "text": "Searching."}),
    _an("content_block_stop", index=0),
    _an("content_block_start", index=1, content_block={"type": "server_tool_use", "id": "srvtoolu_1",
                                                       "name": "web_search", "input": {}}),
    _an("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
    _an("content_block_stop", index=1),
    _an("content_block_start", index=2, content_block={"type": "web_search_tool_result",
                                                       "tool_use_id": "srvtoolu_1", "content": []}),
    _an("content_block_stop", index=2),
    _an("content_block_start", index=3, content_block={"type": "text", "text": ""}),
    _an("content_block_delta", index=3, delta={"type": "text_delta", "text": "Found."}),
    _an("content_block_stop", index=3),
    *_an_end("end_turn"),
])


def _ol(message: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"model": "llama-up", "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "", **message}, "done": False, **rest}


_OL_DONE = _ol({}, done=True, done_reason="stop", total_duration=1, prompt_eval_count=18, eval_count=6)

OLLAMA_TEXT = ndjson([_ol({"content": "Hel"}), _ol({"content": "lo"}), _OL_DONE])
OLLAMA_TOOLS = ndjson([
    _ol({"content": "Checking."}),
    _ol({"tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                        {"function": {"name": "get_time", "arguments": {"tz": "CET"}}}]}),
    _OL_DONE,
])
OLLAMA_THINKING = ndjson([_ol({"thinking": "Let me "}), _ol({"thinking": "think."}), _ol({"content": "Answer."}),
                          _OL_DONE])


def upstream(mock: MockProviders, provider: str, body: bytes) -> Any:
    """Register the provider ``provider`` answering streams with ``body``; returns the respx route."""
    if provider == "oa":
        return mock.add_openai(OA_URL, stream_body=body)
    if provider == "an":
        return mock.add_anthropic(AN_URL, stream_body=body)
    return mock.add_ollama(OL_URL, stream_body=body)


async def stream_openai(client: RouterClient, model: str, *, include_usage: bool = False, **extra: Any) -> Reply:
    body = openai_chat("Hello there world", model=model, stream=True, **extra)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    reply = await client.openai(body)
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return reply


async def stream_anthropic(client: RouterClient, model: str, **extra: Any) -> Reply:
    reply = await client.anthropic(anthropic_message("Hello there world", model=model, stream=True, **extra))
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    return reply


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

TEXT_CASES = {
    # provider: (upstream body, model in chunks, OpenAI usage, Anthropic message_start usage, message_delta usage)
    "oa": (OPENAI_TEXT, "gpt-up", {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
           (0, 0), {"input_tokens": 5, "output_tokens": 2}),
    "an": (ANTHROPIC_TEXT, "claude-up", {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34},
           (25, 1), {"output_tokens": 9}),
    "ol": (OLLAMA_TEXT, "llama-up", {"prompt_tokens": 18, "completion_tokens": 6, "total_tokens": 24},
           (0, 0), {"input_tokens": 18, "output_tokens": 6}),
}


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
@pytest.mark.parametrize("include_usage", [True, False])
async def test_openai_client_text(router: Any, mock_providers: MockProviders, provider: str,
                                  include_usage: bool) -> None:
    body, model, usage, _, _ = TEXT_CASES[provider]
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_openai(client, f"{provider}/m1", include_usage=include_usage)
    expected: list[Any] = [ROLE, content("Hel"), content("lo"), finish("stop")]
    if include_usage:
        expected.append(("usage", usage))
    assert openai_view(reply.text, include_usage=include_usage) == [*expected, "[DONE]"]
    assert parse_sse(reply.text)[0][1]["model"] == model


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
async def test_anthropic_client_text(router: Any, mock_providers: MockProviders, provider: str) -> None:
    body, model, _, start_usage, delta_usage = TEXT_CASES[provider]
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_anthropic(client, f"{provider}/m1")
    assert anthropic_view(reply.text) == [
        message_start(model, *start_usage),
        block_start(0, TEXT_BLOCK), text_delta(0, "Hel"), text_delta(0, "lo"), block_stop(0),
        *message_end("end_turn", delta_usage),
    ]


async def test_openai_client_echo(router: Any) -> None:
    client = await router(CONFIG)
    reply = await stream_openai(client, "echo/m1", include_usage=True)
    assert openai_view(reply.text, include_usage=True) == [
        ROLE, content("Hello"), content(" there"), content(" world"), finish("stop"),
        ("usage", {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}), "[DONE]"]


async def test_anthropic_client_echo(router: Any) -> None:
    client = await router(CONFIG)
    reply = await stream_anthropic(client, "echo/m1")
    assert anthropic_view(reply.text) == [
        message_start("m1", 4, 0),
        block_start(0, TEXT_BLOCK), text_delta(0, "Hello"), text_delta(0, " there"), text_delta(0, " world"),
        block_stop(0),
        *message_end("end_turn", {"input_tokens": 4, "output_tokens": 4}),
    ]


# ---------------------------------------------------------------------------------------------
# Tool calls (parallel: two calls in one reply, after some text)
# ---------------------------------------------------------------------------------------------

OA_TOOL_DEFS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
                for n in ("get_weather", "get_time")]
AN_TOOL_DEFS = [{"name": n, "input_schema": {"type": "object"}} for n in ("get_weather", "get_time")]

TOOL_CASES = {
    # provider: (upstream body, call ids, argument fragments per call as the upstream sent them)
    "oa": (OPENAI_TOOLS, ("call_1", "call_2"), (['{"city":', '"Paris"}'], ['{"tz":"CET"}'])),
    "an": (ANTHROPIC_TOOLS, ("toolu_1", "toolu_2"), (['{"city":', ' "Paris"}'], ['{"tz": "CET"}'])),
    "ol": (OLLAMA_TOOLS, (Prefixed("call_"), Prefixed("call_")), (['{"city":"Paris"}'], ['{"tz":"CET"}'])),
}


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
async def test_openai_client_parallel_tool_calls(router: Any, mock_providers: MockProviders, provider: str) -> None:
    body, ids, fragments = TOOL_CASES[provider]
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_openai(client, f"{provider}/m1", tools=OA_TOOL_DEFS, tool_choice="auto")
    view = openai_view(reply.text)
    assert view == [
        ROLE, content("Checking."),
        call_start(0, ids[0], "get_weather"), *(call_args(0, f) for f in fragments[0]),
        call_start(1, ids[1], "get_time"), *(call_args(1, f) for f in fragments[1]),
        finish("tool_calls"), "[DONE]",
    ]
    calls = reassemble_tool_calls(view)
    assert [(c["name"], c["arguments"]) for c in calls.values()] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
async def test_anthropic_client_parallel_tool_calls(router: Any, mock_providers: MockProviders,
                                                    provider: str) -> None:
    body, ids, fragments = TOOL_CASES[provider]
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_anthropic(client, f"{provider}/m1", tools=AN_TOOL_DEFS)
    _, model, _, start_usage, delta_usage = TEXT_CASES[provider]
    view = anthropic_view(reply.text)
    assert view == [
        message_start(model, *start_usage),
        block_start(0, TEXT_BLOCK), text_delta(0, "Checking."), block_stop(0),
        block_start(1, {"type": "tool_use", "id": ids[0], "name": "get_weather", "input": {}}),
        json_delta(1, "".join(fragments[0])), block_stop(1),
        block_start(2, {"type": "tool_use", "id": ids[1], "name": "get_time", "input": {}}),
        json_delta(2, "".join(fragments[1])), block_stop(2),
        *message_end("tool_use", delta_usage),
    ]
    check_anthropic_indices(view)
    assert view[4][1]["content_block"]["id"] != view[7][1]["content_block"]["id"]


# ---------------------------------------------------------------------------------------------
# Thinking / reasoning
# ---------------------------------------------------------------------------------------------

THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}


async def test_anthropic_thinking_passes_through_to_anthropic_client(router: Any,
                                                                     mock_providers: MockProviders) -> None:
    upstream(mock_providers, "an", ANTHROPIC_THINKING)
    client = await router(CONFIG)
    reply = await stream_anthropic(client, "an/m1", thinking={"type": "enabled", "budget_tokens": 1024})
    view = anthropic_view(reply.text)
    assert view == [
        message_start("claude-up", 25, 1),
        block_start(0, THINKING_BLOCK), thinking_delta(0, "Let me "), thinking_delta(0, "think."),
        ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
        block_stop(0),
        block_start(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy"}), block_stop(1),
        block_start(2, TEXT_BLOCK), text_delta(2, "Answer."), block_stop(2),
        *message_end("end_turn", {"output_tokens": 9}),
    ]
    check_anthropic_indices(view)
    assert mock_providers.sent_json(mock_providers.mock.routes[-1])["thinking"] == {
        "type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize("provider, body", [("an", ANTHROPIC_THINKING), ("oa", OPENAI_REASONING),
                                            ("ol", OLLAMA_THINKING)])
async def test_thinking_becomes_reasoning_content_for_openai_clients(router: Any, mock_providers: MockProviders,
                                                                    provider: str, body: bytes) -> None:
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_openai(client, f"{provider}/m1")
    # Signatures and redacted thinking have no OpenAI form: they are left out, nothing else is.
    assert openai_view(reply.text) == [ROLE, reasoning("Let me "), reasoning("think."), content("Answer."),
                                       finish("stop"), "[DONE]"]


@pytest.mark.parametrize("provider, body", [("oa", OPENAI_REASONING), ("ol", OLLAMA_THINKING)])
async def test_reasoning_becomes_unsigned_thinking_for_anthropic_clients(router: Any, mock_providers: MockProviders,
                                                                        provider: str, body: bytes) -> None:
    upstream(mock_providers, provider, body)
    client = await router(CONFIG)
    reply = await stream_anthropic(client, f"{provider}/m1")
    _, model, _, start_usage, delta_usage = TEXT_CASES[provider]
    assert anthropic_view(reply.text) == [
        message_start(model, *start_usage),
        block_start(0, THINKING_BLOCK), thinking_delta(0, "Let me "), thinking_delta(0, "think."), block_stop(0),
        block_start(1, TEXT_BLOCK), text_delta(1, "Answer."), block_stop(1),
        *message_end("end_turn", delta_usage),
    ]


def _history_with_thinking() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "They want weather.", "signature": "EqQBCgIYAhIM"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ]


async def test_thinking_history_is_kept_for_anthropic_and_dropped_for_openai(router: Any,
                                                                            mock_providers: MockProviders) -> None:
    an_route = upstream(mock_providers, "an", ANTHROPIC_TEXT)
    oa_route = upstream(mock_providers, "oa", OPENAI_TEXT)
    client = await router(CONFIG)
    for model in ("an/m1", "oa/m1"):
        await stream_anthropic(client, model, messages=_history_with_thinking(), tools=AN_TOOL_DEFS,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    sent_an = mock_providers.sent_json(an_route)
    assert sent_an["messages"][1]["content"][:2] == [
        {"type": "thinking", "thinking": "They want weather.", "signature": "EqQBCgIYAhIM"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy"}]
    sent_oa = mock_providers.sent_json(oa_route)
    assert "thinking" not in sent_oa
    assistant = sent_oa["messages"][1]
    assert assistant["role"] == "assistant" and "They want weather" not in json.dumps(sent_oa)
    assert assistant["tool_calls"][0]["id"] == "toolu_1"
    assert sent_oa["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}


# ---------------------------------------------------------------------------------------------
# Index hygiene and odd tool arguments
# ---------------------------------------------------------------------------------------------


async def test_server_tool_blocks_reach_anthropic_clients_and_skip_openai_clients(
        router: Any, mock_providers: MockProviders) -> None:
    upstream(mock_providers, "an", ANTHROPIC_SERVER_TOOL)
    client = await router(CONFIG)
    view = anthropic_view((await stream_anthropic(client, "an/m1")).text)
    check_anthropic_indices(view)
    assert view == [
        message_start("claude-up", 25, 1),
        block_start(0, TEXT_BLOCK), text_delta(0, "Searching."), block_stop(0),
        block_start(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        json_delta(1, '{"query": "x"}'), block_stop(1),
        block_start(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        block_stop(2),
        block_start(3, TEXT_BLOCK), text_delta(3, "Found."), block_stop(3),
        *message_end("end_turn", {"output_tokens": 9}),
    ]
    oa_view = openai_view((await stream_openai(client, "an/m1")).text)
    assert oa_view == [ROLE, content("Searching."), content("Found."), finish("stop"), "[DONE]"]


OPENAI_BAD_ARGUMENTS = sse([
    _oa_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "Paris"}}]}),
    _oa_chunk({}, "tool_calls"),
    (None, "[DONE]"),
])


async def test_invalid_tool_arguments_are_passed_on_not_dropped(router: Any, mock_providers: MockProviders) -> None:
    upstream(mock_providers, "oa", OPENAI_BAD_ARGUMENTS)
    client = await router(CONFIG)
    oa_view = openai_view((await stream_openai(client, "oa/m1", tools=OA_TOOL_DEFS)).text)
    assert oa_view == [ROLE, call_start(0, "call_1", "get_weather"), call_args(0, '{"city": '),
                       call_args(0, "Paris"), finish("tool_calls"), "[DONE]"]
    reply = await stream_anthropic(client, "oa/m1", tools=AN_TOOL_DEFS)
    view = anthropic_view(reply.text)
    assert view[1:4] == [
        block_start(0, {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}),
        json_delta(0, json.dumps({"_raw_arguments": '{"city": Paris'}, separators=(",", ":"))),
        block_stop(0)]
    (part,) = reply.log_line["response"]["content"]
    assert part["input"] is None and part["raw_arguments"] == '{"city": Paris'


OPENAI_INTERLEAVED_TOOLS = sse([
    _oa_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _oa_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":'}}]}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _oa_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '"CET"}'}}]}),
    _oa_chunk({}, "tool_calls"),
    (None, "[DONE]"),
])


async def test_interleaved_parallel_tool_arguments_reassemble_by_index(router: Any,
                                                                      mock_providers: MockProviders) -> None:
    upstream(mock_providers, "oa", OPENAI_INTERLEAVED_TOOLS)
    client = await router(CONFIG)
    oa_reply = await stream_openai(client, "oa/m1", tools=OA_TOOL_DEFS)
    calls = reassemble_tool_calls(openai_view(oa_reply.text))
    assert [(c["id"], c["name"], c["arguments"]) for c in calls.values()] == [
        ("call_1", "get_weather", {"city": "Paris"}), ("call_2", "get_time", {"tz": "CET"})]
    reply = await stream_anthropic(client, "oa/m1", tools=AN_TOOL_DEFS)
    view = anthropic_view(reply.text)
    check_anthropic_indices(view)
    inputs = [json.loads(d["delta"]["partial_json"]) for e, d in view if e == "content_block_delta"]
    assert inputs == [{"city": "Paris"}, {"tz": "CET"}]
    assert [p["input"] for p in reply.log_line["response"]["content"]] == [{"city": "Paris"}, {"tz": "CET"}]


OPENAI_TEXT_AFTER_TOOL = sse([
    _oa_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}]}),
    _oa_chunk({"content": "Calling it."}),
    _oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
    _oa_chunk({}, "tool_calls"),
    (None, "[DONE]"),
])


async def test_text_arriving_inside_a_tool_call_waits_its_turn_for_anthropic_clients(
        router: Any, mock_providers: MockProviders) -> None:
    upstream(mock_providers, "oa", OPENAI_TEXT_AFTER_TOOL)
    client = await router(CONFIG)
    view = anthropic_view((await stream_anthropic(client, "oa/m1", tools=AN_TOOL_DEFS)).text)
    assert view[1:-2] == [
        block_start(0, {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}),
        json_delta(0, '{"city":"Paris"}'), block_stop(0),
        block_start(1, TEXT_BLOCK), text_delta(1, "Calling it."), block_stop(1),
    ]


# ---------------------------------------------------------------------------------------------
# The pipeline around a stream
# ---------------------------------------------------------------------------------------------


class Probe:
    """A plugin recording what the late hooks see, and when; its post_response edits the reply."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[str, Any]], int]] = []
        self.delivered: list[bool] = []

    @hookimpl
    def post_response(self, ctx: Context) -> None:
        self._record("post_response", ctx)
        assert ctx.response is not None
        self.delivered.append(ctx.delivered)
        ctx.response.content.append(TextPart(text=" [checked]"))

    @hookimpl
    def on_end(self, ctx: Context) -> None:
        self._record("on_end", ctx)

    def _record(self, hook: str, ctx: Context) -> None:
        response = ctx.response
        assert response is not None
        calls = [(c.name, c.input) for c in response.tool_calls()]
        self.seen.append((hook, response.text(), calls, response.usage.output_tokens))


def gated(body: bytes, gate: asyncio.Event) -> Any:
    """A respx side effect streaming the first SSE frame of ``body``, then the rest once ``gate`` is set."""
    head, _, tail = body.partition(b"\n\n")

    async def chunks() -> AsyncIterator[bytes]:
        yield head + b"\n\n"
        await gate.wait()
        yield tail

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(), headers={"content-type": "text/event-stream"})

    return respond


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/messages"])
async def test_routing_precedes_first_byte_and_late_hooks_see_the_whole_reply(
        router: Any, mock_providers: MockProviders, endpoint: str) -> None:
    gate = asyncio.Event()
    mock_providers.mock.post(f"{OA_URL}/chat/completions").mock(side_effect=gated(OPENAI_TOOLS, gate))
    probe = Probe()
    config = {**CONFIG, "classifiers": {"keyword": {"tags": {"weather": ["weather"]}}}, "plugins": {"probe": {}}}
    client = await router(config, plugins={"probe": probe})
    if endpoint == "/v1/messages":
        body = anthropic_message("weather in Paris?", model="oa/m1", stream=True, tools=AN_TOOL_DEFS)
    else:
        body = openai_chat("weather in Paris?", model="oa/m1", stream=True, tools=OA_TOOL_DEFS)
    resp = await client.client.post(endpoint, json=body, headers={"anthropic-version": "2023-06-01"})
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"event: message_start" if endpoint == "/v1/messages" else b"data: {")
    rid = resp.headers["X-Router-Request-Id"]
    assert (resp.headers["X-Router-Provider"], resp.headers["X-Router-Model"]) == ("oa", "m1")
    assert resp.headers["X-Router-Request-Tags"] == "weather"
    # When the first frame reaches the client, tags and routing are published and no late hook has run.
    early = client.events_for(rid)
    assert [e["type"] for e in early] == ["start", "classified", "routed"]
    assert early[1]["tags"] == ["weather"] and (early[2]["provider"], early[2]["model"]) == ("oa", "m1")
    assert probe.seen == []

    gate.set()
    rest = (await resp.read()).decode()
    assert "[checked]" not in rest  # the client already had its bytes
    calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert probe.seen == [("post_response", "Checking.", calls, 2), ("on_end", "Checking. [checked]", calls, 2)]
    assert probe.delivered == [True]

    await asyncio.sleep(0)
    (complete,) = [e for e in client.events_for(rid) if e["type"] == "complete"]
    (line,) = [entry for entry in client.log_lines() if entry["id"] == rid]
    for entry in (complete, line):
        assert entry["status"] == 200 and entry["error"] is None and entry["stream"] is True
        assert entry["usage"] == {"input_tokens": 5, "output_tokens": 2}
        assert entry["cost_usd"] == pytest.approx(7 * 2.0 / 1_000_000)
        response = entry["response"]
        assert response["stop_reason"] == "tool_use"
        # The log records what the client received, not the edit made after delivery.
        assert [(p["type"], p.get("text"), p.get("name"), p.get("input")) for p in response["content"]] == [
            ("text", "Checking.", None, None),
            ("tool_use", None, "get_weather", {"city": "Paris"}),
            ("tool_use", None, "get_time", {"tz": "CET"}),
        ]
        assert entry["tags"] == ["weather"] and entry["provider"] == "oa" and entry["sent_model"] == "m1"


class Answerer:
    """Answers every request itself in pre_request."""

    @hookimpl
    def pre_request(self, ctx: Context) -> Flow:
        ctx.response = ChatResponse.from_text("answered by plugin")
        return Flow.STOP

    @hookimpl
    def post_response(self, ctx: Context) -> None:
        assert ctx.response is not None
        ctx.response.content[0] = TextPart(text="answered by plugin, edited")


async def test_plugin_answer_is_streamed_after_its_late_hooks(router: Any) -> None:
    client = await router({**CONFIG, "plugins": {"answerer": {}}}, plugins={"answerer": Answerer()})
    reply = await stream_anthropic(client, "whatever")
    assert reply.headers["X-Router-Provider"] == "plugin"
    view = anthropic_view(reply.text)
    assert view[1:4] == [block_start(0, TEXT_BLOCK), text_delta(0, "answered by plugin, edited"), block_stop(0)]
    assert [e["type"] for e in reply.events] == ["start", "classified", "complete"]
    assert reply.log_line["response"]["content"][0]["text"] == "answered by plugin, edited"
    oa = openai_view((await stream_openai(client, "whatever")).text)
    assert oa[1] == content("answered by plugin, edited")


# ---------------------------------------------------------------------------------------------
# Images in both directions (streaming requests, as coding agents send them)
# ---------------------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PNG_URL = f"data:image/png;base64,{PNG}"
CAT_URL = "https://example.com/cat.jpg"
OPENAI_IMAGE_MESSAGE = {"role": "user", "content": [
    {"type": "text", "text": "Compare"},
    {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
    {"type": "image_url", "image_url": {"url": CAT_URL}},
]}
ANTHROPIC_IMAGE_MESSAGE = {"role": "user", "content": [
    {"type": "text", "text": "Compare"},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    {"type": "image", "source": {"type": "url", "url": CAT_URL}, "cache_control": {"type": "ephemeral"}},
]}
OLLAMA_IMAGE_MESSAGE = {"role": "user", "images": [PNG],
                        "content": f"Compare\n\n[image not sent: {CAT_URL} (Ollama accepts only inline images)]"}

IMAGE_CASES = [
    ("openai", "oa", OPENAI_IMAGE_MESSAGE),
    ("openai", "an", {"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": CAT_URL}}]}),
    ("openai", "ol", OLLAMA_IMAGE_MESSAGE),
    ("anthropic", "an", ANTHROPIC_IMAGE_MESSAGE),
    ("anthropic", "oa", {"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
        {"type": "image_url", "image_url": {"url": CAT_URL}}]}),
    ("anthropic", "ol", OLLAMA_IMAGE_MESSAGE),
]


@pytest.mark.parametrize("client_format, provider, expected", IMAGE_CASES)
async def test_images_reach_each_provider_in_its_form(router: Any, mock_providers: MockProviders, client_format: str,
                                                      provider: str, expected: dict[str, Any]) -> None:
    route = upstream(mock_providers, provider, {"oa": OPENAI_TEXT, "an": ANTHROPIC_TEXT, "ol": OLLAMA_TEXT}[provider])
    client = await router(CONFIG)
    if client_format == "openai":
        await stream_openai(client, f"{provider}/m1", messages=[OPENAI_IMAGE_MESSAGE])
    else:
        await stream_anthropic(client, f"{provider}/m1", messages=[ANTHROPIC_IMAGE_MESSAGE])
    sent = mock_providers.sent_json(route)
    assert sent["messages"][-1] == expected


async def test_images_in_anthropic_tool_results_reach_an_openai_provider(router: Any,
                                                                         mock_providers: MockProviders) -> None:
    route = upstream(mock_providers, "oa", OPENAI_TEXT)
    client = await router(CONFIG)
    messages = [
        {"role": "user", "content": "Take a screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "screenshot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": [
            {"type": "text", "text": "captured"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]},
    ]
    await stream_anthropic(client, "oa/m1", messages=messages, tools=[{"name": "screenshot", "input_schema": {}}])
    sent = mock_providers.sent_json(route)["messages"]
    # OpenAI tool messages carry text only, so the image follows in a user message.
    assert sent[-2:] == [{"role": "tool", "tool_call_id": "toolu_9", "content": "captured"},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}]}]


# ---------------------------------------------------------------------------------------------
# Tool definitions, tool_choice and tool results in the next turn (streaming requests)
# ---------------------------------------------------------------------------------------------

TOOL_CHOICES = [
    # (OpenAI tool_choice, Anthropic tool_choice) meaning the same thing
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
]


@pytest.mark.parametrize("oa_choice, an_choice", TOOL_CHOICES)
async def test_tool_choice_is_carried_between_formats(router: Any, mock_providers: MockProviders, oa_choice: Any,
                                                      an_choice: dict[str, Any]) -> None:
    an_route = upstream(mock_providers, "an", ANTHROPIC_TEXT)
    oa_route = upstream(mock_providers, "oa", OPENAI_TEXT)
    ol_route = upstream(mock_providers, "ol", OLLAMA_TEXT)
    client = await router(CONFIG)
    await stream_openai(client, "an/m1", tools=OA_TOOL_DEFS, tool_choice=oa_choice, parallel_tool_calls=False)
    sent = mock_providers.sent_json(an_route)
    assert sent["tool_choice"] == {**an_choice, "disable_parallel_tool_use": True}
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
    await stream_anthropic(client, "oa/m1", tools=AN_TOOL_DEFS, tool_choice=an_choice)
    sent = mock_providers.sent_json(oa_route)
    assert sent["tool_choice"] == oa_choice
    assert sent["tools"][1] == {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    await stream_openai(client, "ol/m1", tools=OA_TOOL_DEFS, tool_choice=oa_choice)
    sent = mock_providers.sent_json(ol_route)
    # Ollama has no tool_choice: "none" is honoured by not offering the tools, the rest are best effort.
    assert ("tools" in sent) is (oa_choice != "none") and "tool_choice" not in sent


async def test_tool_results_in_the_next_turn_reach_every_provider(router: Any, mock_providers: MockProviders) -> None:
    routes = {p: upstream(mock_providers, p, body) for p, body in
              (("oa", OPENAI_TEXT), ("an", ANTHROPIC_TEXT), ("ol", OLLAMA_TEXT))}
    client = await router(CONFIG)
    history = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
    ]
    for provider in routes:
        await stream_openai(client, f"{provider}/m1", messages=history, tools=OA_TOOL_DEFS)
    assert mock_providers.sent_json(routes["oa"])["messages"][1:] == history[1:]
    an_messages = mock_providers.sent_json(routes["an"])["messages"]
    assert an_messages[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {"tz": "CET"}}]
    assert an_messages[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "12:00"}]}
    ol_messages = mock_providers.sent_json(routes["ol"])["messages"]
    assert ol_messages[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                                            {"function": {"name": "get_time", "arguments": {"tz": "CET"}}}]
    assert ol_messages[2:] == [{"role": "tool", "content": "Sunny", "tool_name": "get_weather"},
                               {"role": "tool", "content": "12:00", "tool_name": "get_time"}]


# ---------------------------------------------------------------------------------------------
# The official SDKs accumulate these streams
# ---------------------------------------------------------------------------------------------


async def test_anthropic_sdk_accumulates_interleaved_tool_calls_and_reasoning(router: Any,
                                                                             mock_providers: MockProviders) -> None:
    import anthropic

    mock_providers.mock.route(host="127.0.0.1").pass_through()
    oa_route = mock_providers.add_openai(OA_URL, stream_body=OPENAI_INTERLEAVED_TOOLS)
    client = await router(CONFIG)
    sdk = anthropic.AsyncAnthropic(base_url=str(client.client.make_url("")).rstrip("/"), api_key="k", max_retries=0)
    async with sdk.messages.stream(model="oa/m1", max_tokens=64, tools=AN_TOOL_DEFS,
                                   messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    assert [(b.type, b.id, b.name, b.input) for b in final.content] == [
        ("tool_use", "call_1", "get_weather", {"city": "Paris"}), ("tool_use", "call_2", "get_time", {"tz": "CET"})]
    assert final.stop_reason == "tool_use"
    oa_route.side_effect = None
    oa_route.respond(200, content=OPENAI_REASONING, headers={"content-type": "text/event-stream"})
    async with sdk.messages.stream(model="oa/m1", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in final.content] == [
        ("thinking", "Let me think."), ("text", "Answer.")]


async def test_openai_sdk_sees_reasoning_and_parallel_calls(router: Any, mock_providers: MockProviders) -> None:
    import openai

    mock_providers.mock.route(host="127.0.0.1").pass_through()
    upstream(mock_providers, "an", ANTHROPIC_THINKING)
    upstream(mock_providers, "ol", OLLAMA_TOOLS)
    client = await router(CONFIG)
    sdk = openai.AsyncOpenAI(base_url=str(client.client.make_url("/v1")), api_key="k", max_retries=0)
    stream = await sdk.chat.completions.create(model="an/m1", messages=[{"role": "user", "content": "hi"}],
                                               stream=True)
    reasoning, text = "", ""
    async for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        text += delta.content or ""
    assert (reasoning, text) == ("Let me think.", "Answer.")
    stream = await sdk.chat.completions.create(model="ol/m1", messages=[{"role": "user", "content": "hi"}],
                                               tools=OA_TOOL_DEFS, stream=True)
    calls: dict[int, list[str]] = {}
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            calls.setdefault(call.index, []).append((call.function.name or "") + (call.function.arguments or ""))
    assert {i: "".join(parts) for i, parts in calls.items()} == {
        0: 'get_weather{"city":"Paris"}', 1: 'get_time{"tz":"CET"}'}
