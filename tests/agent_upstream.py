"""A loopback mock upstream for coding-agent tests, speaking Anthropic Messages (with count_tokens) and
OpenAI Chat Completions, streaming or not, with a scripted model.

The OpenAI side enforces what open-model chat templates (Qwen 3.5/3.6, Gemma under llama.cpp or vLLM)
enforce: a ``system`` message anywhere but first is refused with a 400 ``System message must be at
the beginning.``. Every request (method, path with query, headers, body) is recorded, whatever the
path, so a test can see what a real client sent.

The scripted model: when the conversation has a tool result, it answers ``Tool output: <result>``;
when the user asked for ``RUN-TOOL`` and the ``Bash`` tool is offered, it calls Bash with
``echo marker-$((6*7))`` (``marker-42`` appears only if a shell really ran it); otherwise it answers
``PONG from <format>``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

STRICT_ERROR = "System message must be at the beginning."
TOOL_COMMAND = "echo marker-$((6*7))"
TOOL_OUTPUT = "marker-42"
COUNT_TOKENS = 4242
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _sse(frames: list[tuple[str | None, Any]]) -> bytes:
    return "".join((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                   for name, data in frames).encode()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(b.get("content")) if b.get("type") == "tool_result" else str(b.get("text", ""))
                         for b in content if isinstance(b, dict))
    return ""


class AgentUpstream:
    """The aiohttp app and what it has seen."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/messages", self._anthropic)
        self.app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self.app.router.add_post("/v1/chat/completions", self._openai)
        self.app.router.add_route("*", "/{tail:.*}", self._other)

    def posts(self, path: str) -> list[Seen]:
        """The POSTs received on ``path`` (query string ignored)."""
        return [s for s in self.seen if s.method == "POST" and s.path.split("?")[0] == path]

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        return body

    async def _other(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"error": {"message": f"no route {request.path}"}}, status=404)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"input_tokens": COUNT_TOKENS})

    # -- the scripted model -------------------------------------------------------------------

    @staticmethod
    def _decide(turns: list[tuple[str, str]], tool_result: str | None, has_bash: bool, fmt: str) -> tuple[str, str]:
        """``("tool", command)`` or ``("text", answer)``."""
        if tool_result is not None:
            return "text", f"Tool output: {_REMINDER.sub('', tool_result).strip()}"
        if has_bash and any(role == "user" and "RUN-TOOL" in text for role, text in turns):
            return "tool", TOOL_COMMAND
        return "text", f"PONG from {fmt}"

    # -- Anthropic -------------------------------------------------------------------------------

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        messages = body["messages"]
        result = next((_text_of(b.get("content")) for m in reversed(messages) if isinstance(m["content"], list)
                       for b in m["content"] if b.get("type") == "tool_result"), None)
        kind, value = self._decide([(m["role"], _text_of(m["content"])) for m in messages], result,
                                   any(t.get("name") == "Bash" for t in body.get("tools", [])), "anthropic")
        if kind == "tool":
            block = {"type": "tool_use", "id": "toolu_mock1", "name": "Bash",
                     "input": {"command": value, "description": "Print a marker"}}
        else:
            block = {"type": "text", "text": value}
        stop = "tool_use" if kind == "tool" else "end_turn"
        message = {"id": "msg_mock", "type": "message", "role": "assistant", "model": body["model"],
                   "stop_reason": stop, "stop_sequence": None}
        if not body.get("stream"):
            return web.json_response({**message, "content": [block],
                                      "usage": {"input_tokens": 50, "output_tokens": 10}})
        start = {**block, "input": {}} if kind == "tool" else {**block, "text": ""}
        delta = ({"type": "input_json_delta", "partial_json": json.dumps(block["input"])} if kind == "tool"
                 else {"type": "text_delta", "text": value})
        frames = [
            ("message_start", {"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None, "usage": {"input_tokens": 50, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                               "usage": {"output_tokens": 10}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        return web.Response(body=_sse(frames), content_type="text/event-stream")

    # -- OpenAI (strict template) ----------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        messages = body["messages"]
        if any(m.get("role") == "system" for m in messages[1:]):
            return web.json_response({"error": {"code": 400, "message": STRICT_ERROR,
                                                "type": "invalid_request_error"}}, status=400)
        result = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "tool"), None)
        tools = [t.get("function", {}).get("name") for t in body.get("tools", [])]
        kind, value = self._decide([(m["role"], _text_of(m.get("content"))) for m in messages], result,
                                   "Bash" in tools, "openai")
        if kind == "tool":
            arguments = json.dumps({"command": value, "description": "Print a marker"})
            call = {"id": "call_mock1", "type": "function", "function": {"name": "Bash", "arguments": arguments}}
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": value}, "stop"
        usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        base = {"id": "chatcmpl-mock", "created": 1700000000, "model": body["model"]}
        if not body.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": finish}]})
        chunk = {**base, "object": "chat.completion.chunk"}
        if kind == "tool":
            first = {"role": "assistant", "tool_calls": [{"index": 0, "id": "call_mock1", "type": "function",
                                                          "function": {"name": "Bash", "arguments": ""}}]}
            second: dict[str, Any] = {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}
        else:
            first, second = {"role": "assistant", "content": ""}, {"content": value}
        frames: list[tuple[str | None, Any]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": first, "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": second, "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            (None, {**chunk, "choices": [], "usage": usage}),
        ]
        return web.Response(body=_sse(frames) + b"data: [DONE]\n\n", content_type="text/event-stream")
