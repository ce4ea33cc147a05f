"""A scripted model for agent CLIs, served on loopback in three provider formats (OpenAI chat,
Anthropic Messages, OpenAI Responses), written from the public API references.

Script: when the conversation's last user text contains ``run the marker command`` and no tool
result came back yet, the model asks for ``exec_command`` with ``cmd = "echo <MARKER>"``; once a
tool result is there it answers ``tool said: <the result's text>``; otherwise it answers
``hello from <format>``. Every reply streams when asked to (OpenAI and Responses also answer
without streaming).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

MARKER = "LLMROUTER_MARKER_7f3a"
TOOL_PROMPT = "run the marker command"
NAMESPACE_PROMPT = "wait for the agent"
NAMESPACED_CALL = ("multi_agent_v1__wait_agent", {"targets": ["no-such-agent"], "timeout_ms": 10})
"""A call the OpenAI-chat model makes to a function of Codex's ``multi_agent_v1`` namespace tool,
under the flattened name the router offers it by."""
FAIL_PROMPT = "fail halfway"
"""The OpenAI-chat model starts answering, then its stream reports an error."""
THINKING = "I should run the command."
SIGNATURE = "sig-agent-EqQBCgIYAhIM"
"""The Anthropic model thinks (signed) before its tool call, as extended thinking does."""


def _sse(frames: list[tuple[str | None, Any]]) -> bytes:
    out = []
    for event, data in frames:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {event}\n" if event else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


def _texts(value: Any) -> list[str]:
    """Every string under ``text``/``content``/``output`` keys (crude but format-independent)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("text", "content", "output") and isinstance(inner, str):
                found.append(inner)
            else:
                found.extend(_texts(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(_texts(inner))
    return found


def _tool_result(fmt: str, body: dict[str, Any]) -> str | None:
    """The text of the conversation's last tool result, if any."""
    if fmt == "openai":
        results = [m for m in body["messages"] if m.get("role") == "tool"]
        return "\n".join(_texts(results[-1])) if results else None
    if fmt == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m.get("content"), list)
                  for b in m["content"] if b.get("type") == "tool_result"]
        return "\n".join(_texts(blocks[-1])) if blocks else None
    items = [i for i in body["input"] if isinstance(i, dict) and i.get("type") == "function_call_output"]
    return "\n".join(_texts(items[-1])) if items else None


def decide(fmt: str, body: dict[str, Any]) -> tuple[str, str]:
    """``("tool", cmd)`` or ``("text", answer)`` for this request."""
    result = _tool_result(fmt, body)
    if result is not None:
        return "text", f"tool said: {result.strip()[-200:]}"
    convo = body.get("messages") if fmt != "responses" else body.get("input")
    if TOOL_PROMPT in json.dumps(convo):
        return "tool", f"echo {MARKER}"
    if NAMESPACE_PROMPT in json.dumps(convo) and fmt == "openai":
        return "namespaced", ""
    if FAIL_PROMPT in json.dumps(convo) and fmt == "openai":
        return "fail", "upstream GPU on fire"
    return "text", f"hello from {fmt}"


def openai_stream(body: dict[str, Any]) -> bytes:
    kind, value = decide("openai", body)
    base = {"id": "chatcmpl-agent", "object": "chat.completion.chunk", "created": 1700000000, "model": body["model"]}
    frames: list[tuple[str | None, Any]] = [
        (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    if kind in ("tool", "namespaced"):
        name, args = ("exec_command", json.dumps({"cmd": value})) if kind == "tool" else (
            NAMESPACED_CALL[0], json.dumps(NAMESPACED_CALL[1]))
        frames.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
            "index": 0, "id": "call_agent1", "type": "function",
            "function": {"name": name, "arguments": args[:10]}}]}, "finish_reason": None}]}))
        frames.append((None, {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{
            "index": 0, "function": {"arguments": args[10:]}}]}, "finish_reason": None}]}))
        finish = "tool_calls"
    elif kind == "fail":
        frames.append((None, {**base, "choices": [{"index": 0, "delta": {"content": "partial "},
                                                    "finish_reason": None}]}))
        frames.append((None, {"error": {"message": value, "type": "server_error"}}))
        return _sse(frames)
    else:
        frames.append((None, {**base, "choices": [{"index": 0, "delta": {"content": value}, "finish_reason": None}]}))
        finish = "stop"
    frames.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    frames.append((None, {**base, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 8,
                                                             "total_tokens": 38}}))
    frames.append((None, "[DONE]"))
    return _sse(frames)


def anthropic_stream(body: dict[str, Any]) -> bytes:
    kind, value = decide("anthropic", body)
    frames: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_agent", "type": "message", "role": "assistant", "model": body["model"], "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 1}}})]
    if kind == "tool":
        args = json.dumps({"cmd": value})
        frames += [
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "thinking_delta", "thinking": THINKING}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "signature_delta", "signature": SIGNATURE}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_agent1", "name": "exec_command", "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": args[:7]}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": args[7:]}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 1})]
        stop = "tool_use"
    else:
        frames += [
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": value}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0})]
        stop = "end_turn"
    frames += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": 8}}),
               ("message_stop", {"type": "message_stop"})]
    return _sse(frames)


def responses_stream(body: dict[str, Any]) -> bytes:
    kind, value = decide("responses", body)
    response = {"id": "resp_agent", "object": "response", "created_at": 1700000000, "status": "in_progress",
                "model": body["model"], "output": []}
    seq = iter(range(1000))
    frames: list[tuple[str | None, Any]] = []

    def add(kind_: str, data: dict[str, Any]) -> None:
        frames.append((kind_, {"type": kind_, **data, "sequence_number": next(seq)}))

    add("response.created", {"response": response})
    add("response.in_progress", {"response": response})
    reasoning = {"id": "rs_agent", "type": "reasoning", "summary": [], "encrypted_content": "opaque-upstream-blob"}
    add("response.output_item.added", {"output_index": 0, "item": {"id": "rs_agent", "type": "reasoning", "summary": []}})
    add("response.output_item.done", {"output_index": 0, "item": reasoning})
    if kind == "tool":
        args = json.dumps({"cmd": value})
        item = {"id": "fc_agent1", "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": "call_agent1", "name": "exec_command"}
        add("response.output_item.added", {"output_index": 1, "item": item})
        add("response.function_call_arguments.delta", {"item_id": "fc_agent1", "output_index": 1, "delta": args[:9]})
        add("response.function_call_arguments.delta", {"item_id": "fc_agent1", "output_index": 1, "delta": args[9:]})
        add("response.function_call_arguments.done", {"item_id": "fc_agent1", "output_index": 1, "arguments": args})
        done = {**item, "status": "completed", "arguments": args}
        add("response.output_item.done", {"output_index": 1, "item": done})
    else:
        item = {"id": "msg_agent", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        add("response.output_item.added", {"output_index": 1, "item": item})
        part = {"type": "output_text", "text": "", "annotations": []}
        add("response.content_part.added", {"item_id": "msg_agent", "output_index": 1, "content_index": 0, "part": part})
        add("response.output_text.delta", {"item_id": "msg_agent", "output_index": 1, "content_index": 0,
                                           "delta": value, "logprobs": []})
        add("response.output_text.done", {"item_id": "msg_agent", "output_index": 1, "content_index": 0,
                                          "text": value, "logprobs": []})
        full = {**part, "text": value}
        add("response.content_part.done", {"item_id": "msg_agent", "output_index": 1, "content_index": 0, "part": full})
        done = {**item, "status": "completed", "content": [full]}
        add("response.output_item.done", {"output_index": 1, "item": done})
    completed = {**response, "status": "completed", "output": [reasoning, done],
                 "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 8,
                           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 38}}
    add("response.completed", {"response": completed})
    return _sse(frames)


def openai_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The non-streaming chat.completion for this request."""
    kind, value = decide("openai", body)
    message: dict[str, Any] = {"role": "assistant", "content": value if kind == "text" else None}
    if kind == "tool":
        message["tool_calls"] = [{"id": "call_agent1", "type": "function", "function": {
            "name": "exec_command", "arguments": json.dumps({"cmd": value})}}]
    return {"id": "chatcmpl-agent", "object": "chat.completion", "created": 1700000000, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if kind == "tool" else "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}}


def responses_reply(body: dict[str, Any]) -> dict[str, Any]:
    """The non-streaming Responses ``response`` object for this request."""
    kind, value = decide("responses", body)
    if kind == "tool":
        item: dict[str, Any] = {"id": "fc_agent1", "type": "function_call", "status": "completed",
                                "arguments": json.dumps({"cmd": value}), "call_id": "call_agent1",
                                "name": "exec_command"}
    else:
        item = {"id": "msg_agent", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": value, "annotations": []}]}
    return {"id": "resp_agent", "object": "response", "created_at": 1700000000, "status": "completed",
            "model": body["model"], "output": [item],
            "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 8,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 38}}


class AgentUpstream:
    """The scripted model as an aiohttp app; ``requests`` records ``(format, body)`` of every call."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        for path, fmt in (("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"),
                          ("/v1/responses", "responses")):
            self.app.router.add_post(path, self._handler(fmt))

    def _handler(self, fmt: str) -> Any:
        streams = {"openai": openai_stream, "anthropic": anthropic_stream, "responses": responses_stream}

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            self.requests.append((fmt, body))
            if not body.get("stream"):
                replies = {"openai": openai_reply, "responses": responses_reply}
                if fmt not in replies:
                    raise web.HTTPBadRequest(text=f"this scripted model only streams in {fmt} format")
                return web.json_response(replies[fmt](body))
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(streams[fmt](body))
            await response.write_eof()
            return response

        return handle

    def bodies(self, fmt: str) -> list[dict[str, Any]]:
        """The request bodies received in format ``fmt``, in order."""
        return [body for f, body in self.requests if f == fmt]
