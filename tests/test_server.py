"""HTTP surface: statuses and error shapes, headers, limits, auth, /v1/models, /health."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from llmrouter.config import ConfigError
from llmrouter.testing import anthropic_message, openai_chat

ECHO = {"providers": [{"name": "echo", "format": "echo", "models": ["echo-1"]}],
        "routers": [{"type": "fallback"}]}
UP = {"providers": [{"name": "up", "format": "openai", "base_url": "http://up.test/v1", "api_key_env": "UP_KEY",
                     "timeout_first_byte_s": 0.5, "max_retries": 0},
                    {"name": "claude", "format": "anthropic", "base_url": "http://claude.test",
                     "api_key_env": "CLAUDE_KEY", "max_retries": 0}],
      "routers": [{"type": "prefix", "model_prefix": "claude", "provider": "claude"},
                  {"type": "fallback", "providers": ["up"]}],
      "routing": {"failover": False}}
KEYS = {"UP_KEY": "sk-up-secret", "CLAUDE_KEY": "sk-ant-secret"}


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "request body is not valid JSON"),
    (b"", "request body is empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
    (b'{"model": "m"}', "messages"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', "temperature"),
])
async def test_malformed_openai_requests_get_400_naming_the_problem(router: Any, body: bytes, fragment: str) -> None:
    client = await router(ECHO)
    reply = await client.openai(body)
    assert reply.status == 400, reply.text
    error = reply.body["error"]
    assert fragment in error["message"]
    assert error["type"] == "invalid_request_error"
    assert (await client.openai(openai_chat("still serving"))).status == 200


@pytest.mark.parametrize("body, fragment", [
    (b"{oops", "request body is not valid JSON"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}',
     "hologram"),
])
async def test_malformed_anthropic_requests_get_400_in_anthropic_shape(router: Any, body: bytes, fragment: str) -> None:
    client = await router(ECHO)
    reply = await client.anthropic(body)
    assert reply.status == 400, reply.text
    assert reply.body["type"] == "error"
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert fragment in reply.body["error"]["message"]


async def test_malformed_requests_are_logged_and_evented(router: Any) -> None:
    client = await router(ECHO)
    reply = await client.openai(b"{broken")
    assert [e["type"] for e in reply.events] == ["start", "complete"]
    assert reply.log_line["status"] == 400 and "not valid JSON" in reply.log_line["error"]


async def test_body_over_limit_is_413(router: Any) -> None:
    client = await router({**ECHO, "server": {"max_body_mb": 0.001}})
    reply = await client.openai(openai_chat("x" * 5000))
    assert reply.status == 413
    assert "exceeds the limit" in reply.body["error"]["message"]
    reply = await client.anthropic(anthropic_message("y" * 5000))
    assert reply.status == 413 and reply.body["error"]["type"] == "request_too_large"
    assert (await client.openai(openai_chat("small"))).status == 200


async def test_router_headers(router: Any) -> None:
    client = await router({**ECHO, "classifiers": {"keyword": {"tags": {"code": ["def "]}}}})
    reply = await client.openai(openai_chat("def f(): pass"))
    assert reply.headers["X-Router-Provider"] == "echo"
    assert reply.headers["X-Router-Model"] == "gpt-test"
    assert reply.headers["X-Router-Request-Tags"] == "code"
    assert len(reply.request_id) == 32
    assert reply.events[0]["id"] == reply.request_id == reply.log_line["id"]
    reply = await client.openai(openai_chat("plain words"))
    assert "X-Router-Request-Tags" not in reply.headers


async def test_provider_error_is_502_naming_provider_and_status(router: Any, mock_providers: Any) -> None:
    mock_providers.add_openai("http://up.test/v1", status=500, body={"error": {"message": "upstream melted"}})
    client = await router(UP, environ=KEYS)
    reply = await client.openai(openai_chat())
    assert reply.status == 502
    assert reply.body["error"]["message"] == "provider 'up' returned 500: upstream melted"
    assert reply.log_line["provider"] == "up" and reply.log_line["status"] == 502


async def test_provider_error_in_anthropic_shape(router: Any, mock_providers: Any) -> None:
    mock_providers.add_anthropic("http://claude.test", status=429, body={"type": "error", "error": {
        "type": "rate_limit_error", "message": "slow down"}})
    client = await router(UP, environ=KEYS)
    reply = await client.anthropic(anthropic_message(model="claude-x"))
    assert reply.status == 429 and reply.body["error"]["type"] == "rate_limit_error"
    assert reply.body["type"] == "error"
    assert reply.body["error"]["message"] == "provider 'claude' returned 429: slow down"


async def test_provider_timeout_is_504(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post("http://up.test/v1/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    client = await router(UP, environ=KEYS)
    reply = await client.openai(openai_chat())
    assert reply.status == 504
    assert "provider 'up' timed out" in reply.body["error"]["message"]


async def test_provider_unreachable_is_502(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post("http://up.test/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    client = await router(UP, environ=KEYS)
    reply = await client.openai(openai_chat())
    assert reply.status == 502
    assert "provider 'up' unreachable" in reply.body["error"]["message"]


async def test_provider_unreadable_reply_is_502(router: Any, mock_providers: Any) -> None:
    mock_providers.add_openai("http://up.test/v1", body={"unexpected": True})
    client = await router(UP, environ=KEYS)
    reply = await client.openai(openai_chat())
    assert reply.status == 502
    assert "provider 'up' returned an unreadable reply" in reply.body["error"]["message"]


async def test_provider_credentials_are_sent_in_each_formats_convention(router: Any, mock_providers: Any) -> None:
    up = mock_providers.add_openai("http://up.test/v1")
    claude = mock_providers.add_anthropic("http://claude.test")
    client = await router(UP, environ=KEYS)
    await client.openai(openai_chat())
    await client.anthropic(anthropic_message(model="claude-x"), headers={"anthropic-beta": "tools-2024,other"})
    assert up.calls[0].request.headers["authorization"] == "Bearer sk-up-secret"
    sent = claude.calls[0].request.headers
    assert sent["x-api-key"] == "sk-ant-secret"
    assert sent["anthropic-version"] == "2023-06-01"
    assert sent["anthropic-beta"] == "tools-2024,other"


async def test_provider_with_unset_key_is_skipped_and_none_left_fails(router: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="no provider available"):
        await router(UP, environ={})
    assert "provider 'up' skipped: environment variable UP_KEY is not set" in caplog.text


async def test_inbound_auth(router: Any) -> None:
    config = {**ECHO, "server": {"api_key_env": "ROUTER_KEY"}}
    client = await router(config, environ={"ROUTER_KEY": "let-me-in"})
    assert (await client.openai(openai_chat())).status == 401
    reply = await client.anthropic(anthropic_message())
    assert reply.status == 401 and reply.body["error"]["type"] == "authentication_error"
    assert (await client.openai(openai_chat(), headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.openai(openai_chat(), headers={"Authorization": "Bearer let-me-in"})).status == 200
    assert (await client.anthropic(anthropic_message(), headers={"x-api-key": "let-me-in"})).status == 200
    resp = await client.client.get("/v1/models?api_key=let-me-in")
    assert resp.status == 200
    assert (await client.client.get("/health")).status == 200


async def test_inbound_auth_variable_must_be_set(router: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[server\] key 'api_key_env'.*ROUTER_KEY is not set"):
        await router({**ECHO, "server": {"api_key_env": "ROUTER_KEY"}}, environ={})


async def test_unknown_route_is_404_in_client_shape(router: Any) -> None:
    client = await router(ECHO)
    resp = await client.client.post("/v1/nothing", json={})
    assert resp.status == 404
    assert (await resp.json())["error"]["message"] == "no route for POST /v1/nothing"
    resp = await client.client.get("/v1/chat/completions")
    assert resp.status == 405


async def test_models_lists_routable_models(router: Any) -> None:
    config = {"providers": [{"name": "echo", "format": "echo", "models": ["echo-1"]}],
              "routers": [{"type": "prefix", "model_prefix": "x/", "provider": "echo", "rewrite_model": "echo-big"},
                          {"type": "fallback"}]}
    client = await router(config)
    body = await (await client.client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["echo-1", "echo-big"]
    assert body["data"][0]["owned_by"] == "echo"
    body = await (await client.client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})).json()
    assert [m["id"] for m in body["data"]] == ["echo-1", "echo-big"]
    assert body["data"][0]["type"] == "model" and body["has_more"] is False


async def test_health_and_root(router: Any) -> None:
    client = await router(ECHO)
    body = await (await client.client.get("/health")).json()
    assert body["status"] == "ok" and body["providers"]["echo"]["healthy"] is True
    resp = await client.client.head("/")
    assert resp.status == 200


async def test_query_string_on_endpoint_is_accepted(router: Any) -> None:
    client = await router(ECHO)
    reply = await client.post("/v1/messages?beta=true", anthropic_message("claude code says hi"),
                              {"anthropic-version": "2023-06-01"})
    assert reply.status == 200
    assert reply.body["content"][0]["text"] == "claude code says hi"


async def test_concurrent_requests_all_answered(router: Any) -> None:
    client = await router(ECHO)
    replies = await asyncio.gather(*(client.client.post("/v1/chat/completions", json=openai_chat(f"n{i}"))
                                     for i in range(50)))
    bodies = [await r.json() for r in replies]
    assert sorted(b["choices"][0]["message"]["content"] for b in bodies) == sorted(f"n{i}" for i in range(50))


async def test_refused_chat_requests_are_logged_without_secrets(router: Any) -> None:
    config = {**ECHO, "server": {"api_key_env": "ROUTER_KEY"}}
    client = await router(config, environ={"ROUTER_KEY": "let-me-in-please"})
    reply = await client.openai(openai_chat("secret prompt"), headers={"Authorization": "Bearer wrong-key-123456"})
    assert reply.status == 401
    assert [e["type"] for e in reply.events] == ["start", "complete"]
    assert reply.log_line["status"] == 401 and reply.log_line["error"] == "invalid API key"
    assert reply.log_line["request"] is None
    assert "wrong-key-123456" not in str(reply.log_line) and "let-me-in-please" not in str(reply.log_line)
