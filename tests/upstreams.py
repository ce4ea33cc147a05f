"""Hand-written fake providers served on loopback: replies typed out from the official API references
(not produced by llmrouter's own format code, so format bugs cannot cancel out)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

WEATHER_TOOL_ARGS = {"city": "Paris"}


def _wants_tool(body: dict[str, Any], fmt: str) -> bool:
    """Ask for the tool on the first turn when tools are offered; answer in text after a tool result."""
    if not body.get("tools"):
        return False
    last = body["messages"][-1]
    if fmt == "openai":
        return last.get("role") != "tool"
    if fmt == "anthropic":
        content = last.get("content")
        return not (isinstance(content, list) and any(b.get("type") == "tool_result" for b in content))
    return last.get("role") != "tool"


def _sse(frames: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for event, data in frames:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {event}\n" if event else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion: a tool call on the first turn with tools, else text."""
    if _wants_tool(body, "openai"):
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(WEATHER_TOOL_ARGS)}}]}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": "It is sunny in Paris."}, "stop"
    return {"id": "chatcmpl-up1", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}}


def openai_stream(body: dict[str, Any]) -> bytes:
    """chat.completion.chunk frames, then a usage chunk and [DONE]."""
    base = {"id": "chatcmpl-up2", "object": "chat.completion.chunk", "created": 1700000000, "model": body["model"]}
    frames: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    if _wants_tool(body, "openai"):
        frames.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
            "index": 0, "id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": None}]}))
        for piece in ['{"ci', 'ty": "Pa', 'ris"}']:
            frames.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
                "index": 0, "function": {"arguments": piece}}]}, "finish_reason": None}]}))
        finish = "tool_calls"
    else:
        for piece in ["It is ", "sunny ", "in Paris."]:
            frames.append((None, {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
        finish = "stop"
    frames.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    frames.append((None, {**base, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 7,
                                                             "total_tokens": 27}}))
    frames.append((None, "[DONE]"))
    return _sse(frames)


def anthropic_reply(body: dict[str, Any]) -> dict[str, Any]:
    """A Message: a tool_use on the first turn with tools, else text."""
    if _wants_tool(body, "anthropic"):
        content: list[dict[str, Any]] = [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": WEATHER_TOOL_ARGS}]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": "It is sunny in Paris."}], "end_turn"
    return {"id": "msg_up1", "type": "message", "role": "assistant", "model": body["model"], "content": content,
            "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 9}}


def anthropic_stream(body: dict[str, Any]) -> bytes:
    """The Messages streaming event sequence."""
    frames: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_up2", "type": "message", "role": "assistant", "model": body["model"], "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    if _wants_tool(body, "anthropic"):
        frames += [
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "Let me check."}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ]
        stop = "tool_use"
    else:
        for piece in ["It is ", "sunny ", "in Paris."]:
            frames.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": piece}}))
        frames.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        stop = "end_turn"
    frames += [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse(frames)


def ollama_reply(body: dict[str, Any]) -> dict[str, Any]:
    """An /api/chat reply."""
    if _wants_tool(body, "ollama"):
        message: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": WEATHER_TOOL_ARGS}}]}
    else:
        message = {"role": "assistant", "content": "It is sunny in Paris."}
    return {"model": body["model"], "created_at": "2026-11-22T00:00:00Z", "message": message, "done": True,
            "done_reason": "stop", "prompt_eval_count": 18, "eval_count": 6}


def ollama_stream(body: dict[str, Any]) -> bytes:
    """/api/chat NDJSON stream."""
    lines = []
    if _wants_tool(body, "ollama"):
        lines.append({"model": body["model"], "created_at": "t", "message": {"role": "assistant", "content": "",
                      "tool_calls": [{"function": {"name": "get_weather", "arguments": WEATHER_TOOL_ARGS}}]},
                      "done": False})
    else:
        for piece in ["It is ", "sunny ", "in Paris."]:
            lines.append({"model": body["model"], "created_at": "t",
                          "message": {"role": "assistant", "content": piece}, "done": False})
    lines.append({"model": body["model"], "created_at": "t", "message": {"role": "assistant", "content": ""},
                  "done": True, "done_reason": "stop", "prompt_eval_count": 18, "eval_count": 6})
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


class FakeUpstream:
    """An aiohttp app speaking all three provider formats, recording every request body and header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._handler("openai"))
        self.app.router.add_post("/v1/messages", self._handler("anthropic"))
        self.app.router.add_post("/api/chat", self._handler("ollama"))

    def _handler(self, fmt: str) -> Any:
        replies = {"openai": (openai_reply, openai_stream, "text/event-stream"),
                   "anthropic": (anthropic_reply, anthropic_stream, "text/event-stream"),
                   "ollama": (ollama_reply, ollama_stream, "application/x-ndjson")}

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.requests.append((fmt, body, dict(request.headers)))
            reply, stream, ctype = replies[fmt]
            if body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": ctype})
                await response.prepare(request)
                await response.write(stream(body))
                await response.write_eof()
                return response
            return web.json_response(reply(body))

        return handle

    def last(self, fmt: str) -> dict[str, Any]:
        """The last request body received in format ``fmt``."""
        return [body for f, body, _ in self.requests if f == fmt][-1]
