"""Claude Code to any backend, through the whole pipeline: Claude Code-shaped requests reach OpenAI and
Ollama providers whose (mocked) chat templates reject a system message that is not first; its
connection probe is answered."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmrouter.config import ConfigError
from llmrouter.testing import make_config

STRICT_ERROR = "System message must be at the beginning."
REMINDER = "<system-reminder>\n# Environment\nPrimary working directory: /tmp\n</system-reminder>"


def claude_code_body(model: str, *, stream: bool = False) -> dict[str, Any]:
    """The shape Claude Code 2.1 sends for a model it does not know (observed on the wire)."""
    return {
        "model": model, "max_tokens": 32000, "stream": stream,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332"},
                   {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>attribution</system-reminder>"},
                                         {"type": "text", "text": "say pong"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\nPrimary working directory: /tmp"}]},
        ],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}],
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "u"},
    }


def strict_template(messages: list[dict[str, Any]]) -> httpx.Response | None:
    """A 400 like llama.cpp's for a Qwen/Gemma template, or None when the messages pass."""
    if any(m.get("role") == "system" for m in messages[1:]):
        return httpx.Response(400, json={"error": {"code": 400, "message": STRICT_ERROR, "type": "invalid_request_error"}})
    return None


def openai_strict(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    refused = strict_template(body["messages"])
    if refused is not None:
        return refused
    if body.get("stream"):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        frames = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "PONG"}, "finish_reason": None}]},
                  {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                  {**chunk, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}]
        sse = "".join(f"data: {json.dumps(f)}\n\n" for f in frames) + "data: [DONE]\n\n"
        return httpx.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json={
        "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "PONG"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}})


def ollama_strict(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    refused = strict_template(body["messages"])
    if refused is not None:
        return httpx.Response(400, json={"error": STRICT_ERROR})
    return httpx.Response(200, json={"model": body["model"], "message": {"role": "assistant", "content": "PONG"},
                                     "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 1})


def config(**provider: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "oai", "format": "openai", "base_url": "http://oai.test/v1", "discover": False,
             "max_retries": 0, **provider},
            {"name": "oll", "format": "ollama", "base_url": "http://oll.test", "discover": False, "max_retries": 0,
             **provider},
            {"name": "ant", "format": "anthropic", "base_url": "http://ant.test", "discover": False,
             "max_retries": 0, **provider},
        ],
        "routers": [{"type": "prefix", "model_prefix": "oai/", "provider": "oai", "rewrite_model": "qwen3.6"},
                    {"type": "prefix", "model_prefix": "oll/", "provider": "oll", "rewrite_model": "gemma3"},
                    {"type": "prefix", "model_prefix": "ant/", "provider": "ant", "rewrite_model": "claude-x"}],
        "routing": {"failover": False},
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_code_request_passes_a_strict_openai_template(router: Any, mock_providers: Any,
                                                                   stream: bool) -> None:
    route = mock_providers.mock.post("http://oai.test/v1/chat/completions").mock(side_effect=openai_strict)
    client = await router(config())
    reply = await client.anthropic(claude_code_body("oai/qwen", stream=stream),
                                   {"anthropic-beta": "claude-code-20250219"})
    assert reply.status == 200, reply.text
    assert "PONG" in reply.text
    sent = mock_providers.sent_json(route)
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][0]["content"].endswith("You are Claude Code.")
    assert sent["messages"][1]["content"][-1] == {"type": "text", "text": REMINDER}
    assert "context_management" not in sent and "metadata" not in sent


async def test_claude_code_request_passes_a_strict_ollama_template(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post("http://oll.test/api/chat").mock(side_effect=ollama_strict)
    client = await router(config())
    reply = await client.anthropic(claude_code_body("oll/gemma"))
    assert reply.status == 200, reply.text
    assert reply.body["content"][0]["text"] == "PONG"
    sent = mock_providers.sent_json(route)
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][1]["content"].endswith(REMINDER)


async def test_keep_setting_sends_the_late_system_message_as_is(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post("http://oai.test/v1/chat/completions").mock(side_effect=openai_strict)
    client = await router(config(late_system="keep"))
    reply = await client.anthropic(claude_code_body("oai/qwen"))
    # The strict upstream refuses it, as it would without the conversion; its message reaches the client.
    assert reply.status >= 400
    assert reply.body["type"] == "error" and STRICT_ERROR in reply.body["error"]["message"]
    assert [m["role"] for m in mock_providers.sent_json(route)["messages"]] == ["system", "user", "system"]


async def test_anthropic_provider_gets_the_system_message_in_place(router: Any, mock_providers: Any) -> None:
    route = mock_providers.add_anthropic("http://ant.test")
    client = await router(config())
    reply = await client.anthropic(claude_code_body("ant/claude"), {"anthropic-beta": "claude-code-20250219"})
    assert reply.status == 200, reply.text
    sent = mock_providers.sent_json(route)
    assert [m["role"] for m in sent["messages"]] == ["user", "system"]
    assert sent["messages"][1]["content"] == "# Environment\nPrimary working directory: /tmp"
    assert sent["context_management"] == {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    assert route.calls[-1].request.headers["anthropic-beta"] == "claude-code-20250219"


async def test_openai_client_developer_messages(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post("http://oai.test/v1/chat/completions").mock(side_effect=openai_strict)
    client = await router(config())
    reply = await client.openai({"model": "oai/qwen", "messages": [
        {"role": "developer", "content": "one"}, {"role": "developer", "content": "two"},
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": "late"}, {"role": "user", "content": "again"}]})
    assert reply.status == 200, reply.text
    sent = mock_providers.sent_json(route)["messages"]
    assert sent[0] == {"role": "system", "content": "one\n\ntwo"}
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[3]["content"][0]["text"] == "<system-reminder>\nlate\n</system-reminder>"


def test_late_system_setting_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"providers": [{"name": "p", "format": "openai", "base_url": "http://x/v1", "late_system": "drop"}]})
    assert "late_system" in str(info.value) and "[[providers]] #1" in str(info.value)


async def test_claude_code_connection_probe_is_answered_without_a_key(router: Any) -> None:
    # Claude Code 2.1.332 sends HEAD /api/hello (no credentials) before its first request.
    client = await router({"server": {"api_key_env": "ROUTER_KEY"}, "providers": [{"name": "e", "format": "echo"}],
                           "routers": [{"type": "fallback"}]}, environ={"ROUTER_KEY": "router-key-123"})
    assert (await client.client.head("/api/hello")).status == 200
    assert (await client.client.get("/api/hello")).status == 200
    assert (await client.client.post("/api/hello")).status == 405
    assert (await client.client.get("/v1/models")).status == 401  # the rest still needs the key
