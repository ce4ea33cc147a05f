"""Shared helpers for the stream-transformer, response-classifier and capability tests: upstream
stream bodies typed out by hand and the text/error a client reads from its SSE frames."""

from __future__ import annotations

import json
from typing import Any

OA_URL, AN_URL = "http://oa.test/v1", "http://an.test"
PROVIDERS: list[dict[str, Any]] = [
    {"name": "oa", "format": "openai", "base_url": OA_URL, "discover": False},
    {"name": "an", "format": "anthropic", "base_url": AN_URL, "discover": False},
]
ROUTERS: list[dict[str, Any]] = [{"type": "prefix", "model_prefix": f"{p}/", "provider": p} for p in ("oa", "an")]


def openai_stream(pieces: list[str], *, finish: str = "stop") -> bytes:
    """An OpenAI Chat Completions SSE body sending ``pieces`` as content deltas."""
    def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> str:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-up",
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": piece}) for piece in pieces]
    frames.append(chunk({}, finish, usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
    frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


def anthropic_stream(pieces: list[str]) -> bytes:
    """An Anthropic Messages SSE body sending ``pieces`` as text deltas of one block."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": piece}}) for piece in pieces]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def frames(text: str) -> list[tuple[str | None, Any]]:
    """``(event, data)`` of each SSE frame (data parsed as JSON when it is JSON)."""
    out: list[tuple[str | None, Any]] = []
    for block in text.split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if not data:
            continue
        raw = "\n".join(data)
        try:
            out.append((event, json.loads(raw)))
        except ValueError:
            out.append((event, raw))
    return out


def client_text(text: str, fmt: str) -> str:
    """The reply text a client of ``fmt`` (``openai`` or ``anthropic``) reads from an SSE body."""
    parts = []
    for event, data in frames(text):
        if not isinstance(data, dict):
            continue
        if fmt == "openai":
            for choice in data.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    parts.append(content)
        elif event == "content_block_delta" and data["delta"].get("type") == "text_delta":
            parts.append(data["delta"]["text"])
    return "".join(parts)


def client_error(text: str, fmt: str) -> dict[str, Any] | None:
    """The error object a client of ``fmt`` got in the stream, if any."""
    for event, data in frames(text):
        if isinstance(data, dict) and "error" in data and (fmt == "openai" or event == "error"):
            return data["error"]
    return None
