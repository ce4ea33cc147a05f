"""The benchmark's agent workload: one ~260 KB coding-agent request, in OpenAI and Anthropic shapes.

An agent resends its whole conversation with every request, so the typical request a router sees
from Claude Code or Codex is large: a system prompt of ~8 KB, 20 tools with JSON schemas and 100
user/assistant turns of ~2 KB (some of them tool calls and tool results). The text is seeded
pseudo-random prose and code-like lines (see :mod:`agent_session`), so every run sends the same
bytes and none of the bench router's classifier keywords occurs in it.

``python bench/agent_workload.py`` prints the size of each shape's body.
"""

from __future__ import annotations

import json
import random
import sys
from functools import lru_cache
from typing import Any

from agent_session import _Text, _tools

TURNS = 100  # user/assistant messages after the system prompt
SYSTEM_BYTES = 8_000
TURN_BYTES = 2_300
SEED = 260


@lru_cache(maxsize=4)
def _conversation() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """System prompt, OpenAI-shaped tools and messages (without the system message)."""
    text = _Text(random.Random(SEED))
    tools = _tools(text)
    system = text.prose(SYSTEM_BYTES)
    messages: list[dict[str, Any]] = []
    for i in range(TURNS // 2):
        if i % 4 == 3 and messages and messages[-1].get("tool_calls"):
            call_id = messages[-1]["tool_calls"][0]["id"]
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text.code(TURN_BYTES)})
        else:
            messages.append({"role": "user", "content": text.prose(TURN_BYTES)})
        if i % 4 == 2:
            args = json.dumps({"path": f"src/{text.rng.choice(text.words)}.py",
                               "content": text.code(TURN_BYTES - 200)})
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i:04d}", "type": "function",
                 "function": {"name": tools[i % len(tools)]["function"]["name"], "arguments": args}}]})
        else:
            messages.append({"role": "assistant", "content": text.prose(TURN_BYTES)})
    messages.append({"role": "user", "content": text.prose(TURN_BYTES)})
    return system, tools, messages


def openai_body(model: str, stream: bool) -> dict[str, Any]:
    """The agent request as an OpenAI Chat Completions body."""
    system, tools, messages = _conversation()
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, *messages],
        "tools": tools,
        "tool_choice": "auto",
        "max_tokens": 4096,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "tool":
            out.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": message["content"]}]})
        elif message.get("tool_calls"):
            call = message["tool_calls"][0]
            out.append({"role": "assistant", "content": [
                {"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                 "input": json.loads(call["function"]["arguments"])}]})
        else:
            out.append({"role": message["role"], "content": message["content"]})
    return out


def anthropic_body(model: str, stream: bool) -> dict[str, Any]:
    """The agent request as an Anthropic Messages body (system as a cached block, as Claude Code sends it)."""
    system, tools, messages = _conversation()
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 4096,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": _anthropic_messages(messages),
        "tools": [{"name": t["function"]["name"], "description": t["function"]["description"],
                   "input_schema": t["function"]["parameters"]} for t in tools],
        "tool_choice": {"type": "auto"},
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return body


def agent_body(shape: str, model: str, stream: bool) -> dict[str, Any]:
    """The agent request in ``shape`` (``openai`` or ``anthropic``)."""
    return openai_body(model, stream) if shape == "openai" else anthropic_body(model, stream)


if __name__ == "__main__":
    for shape in ("openai", "anthropic"):
        raw = json.dumps(agent_body(shape, "m", False), separators=(",", ":"))
        count = len(agent_body(shape, "m", False)["messages"])
        print(f"{shape}: {len(raw):,} bytes, {count} messages", file=sys.stdout)
