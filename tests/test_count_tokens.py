"""``POST /v1/messages/count_tokens``: passed through to Anthropic providers (routed like /v1/messages),
a tokenizer-free estimate for every other provider, errors in the Anthropic shape."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import pytest

from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.token_estimate import IMAGE_TOKENS, estimate_input_tokens, estimate_text_tokens
from llmrouter.testing import make_config
from llmrouter.web.app import create_app
from tests.agent_upstream import COUNT_TOKENS, AgentUpstream

PATH = "/v1/messages/count_tokens"
ANT = AnthropicFormat()
PROSE = ("The quick brown fox jumps over the lazy dog while the router counts its tokens. " * 50).strip()
PNG = "iVBORw0KGgo" + "A" * 2000


def config(**extra: Any) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "ant", "format": "anthropic", "base_url": "http://ant.test", "api_key_env": "ANT_KEY",
             "discover": False},
            {"name": "oai", "format": "openai", "base_url": "http://oai.test/v1", "discover": False},
        ],
        "routers": [{"type": "prefix", "model_prefix": "claude", "provider": "ant", "rewrite_model": "claude-real"},
                    {"type": "prefix", "model_prefix": "local/", "provider": "oai"}],
        **extra,
    }


def body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROSE}], **extra}


def parsed(data: dict[str, Any]) -> Any:
    return ANT.parse_count_tokens_request(data, {})


# -- the estimate ---------------------------------------------------------------------------------


def test_text_estimate_is_about_four_characters_a_token() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd") == 1 and estimate_text_tokens("abcde") == 2
    # ~4,000 characters of English: real tokenizers say ~850-1,000 tokens.
    assert 800 <= estimate_text_tokens(PROSE) <= 1100
    assert estimate_text_tokens("日本語のテキスト") == 8  # one per non-ASCII character


def test_estimate_counts_system_tools_images_and_tool_traffic() -> None:
    base = estimate_input_tokens(parsed(body("m")))
    assert estimate_input_tokens(parsed(body("m", system="Be brief. " * 40))) > base + 90
    tools = [{"name": "Bash", "description": "Run a shell command", "input_schema": {
        "type": "object", "properties": {"command": {"type": "string"}}}}]
    assert estimate_input_tokens(parsed(body("m", tools=tools))) > base + 350
    image = {"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": PNG}}, {"type": "text", "text": "what?"}]}
    with_image = parsed({"model": "m", "messages": [image]})
    assert estimate_input_tokens(with_image) >= IMAGE_TOKENS
    conversation = body("m")["messages"] + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash",
                                           "input": {"command": "ls " + "x" * 400}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "y" * 800}]}]
    assert estimate_input_tokens(parsed({"model": "m", "messages": conversation})) > base + 300


# -- through the router ---------------------------------------------------------------------------


async def test_anthropic_provider_counts(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post("http://ant.test/v1/messages/count_tokens").respond(
        json={"input_tokens": 1234, "context_management": {"original_input_tokens": 1300}})
    client = await router(config(), environ={"ANT_KEY": "sk-ant-secret"})
    system = [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
    reply = await client.post(PATH + "?beta=true", body("claude-sonnet", system=system, plugins=[]), {
        "anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01,claude-code-20250219"})
    assert reply.status == 200, reply.text
    assert reply.body == {"input_tokens": 1234, "context_management": {"original_input_tokens": 1300}}
    assert reply.headers["X-Router-Provider"] == "ant" and reply.headers["X-Router-Model"] == "claude-real"
    assert reply.headers["X-Router-Token-Count"] == "upstream"
    sent = route.calls[-1].request
    assert mock_providers.sent_json(route) == {"model": "claude-real", "system": system,
                                               "messages": body("m")["messages"]}
    assert sent.headers["x-api-key"] == "sk-ant-secret"
    assert sent.headers["anthropic-beta"] == "token-counting-2024-11-01,claude-code-20250219"
    assert sent.headers["anthropic-version"] == "2023-06-01"


async def test_other_providers_get_an_estimate_without_an_upstream_call(router: Any, mock_providers: Any) -> None:
    chat = mock_providers.add_openai("http://oai.test/v1")
    client = await router(config())
    reply = await client.post(PATH, body("local/qwen"))
    assert reply.status == 200, reply.text
    assert reply.headers["X-Router-Token-Count"] == "estimate" and reply.headers["X-Router-Provider"] == "oai"
    assert reply.body == {"input_tokens": estimate_input_tokens(parsed(body("local/qwen")))}
    assert 800 <= reply.body["input_tokens"] <= 1200
    assert not chat.calls
    assert client.log_lines() == []  # not a chat exchange


async def test_anthropic_upstream_without_the_endpoint_falls_back_to_the_estimate(router: Any,
                                                                                mock_providers: Any) -> None:
    mock_providers.mock.post("http://ant.test/v1/messages/count_tokens").respond(404, json={"error": "not found"})
    client = await router(config(), environ={"ANT_KEY": "k" * 10})
    reply = await client.post(PATH, body("claude-x"))
    assert reply.status == 200 and reply.headers["X-Router-Token-Count"] == "estimate"
    assert reply.body["input_tokens"] > 800


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"{not json", 400, "not valid JSON"),
    ({"messages": []}, 400, "model: field required"),
    ({"model": "claude-x", "messages": "hi"}, 400, "messages: must be a list"),
    ({"model": "claude-x", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
    (body("gpt-nothing"), 400, "no provider configured for model 'gpt-nothing'"),
])
async def test_bad_requests_get_anthropic_errors(router: Any, mock_providers: Any, data: Any, status: int,
                                                 words: str) -> None:
    client = await router(config(), environ={"ANT_KEY": "k" * 10})
    reply = await client.post(PATH, data)
    assert reply.status == status
    assert reply.body["type"] == "error" and reply.body["error"]["type"] == "invalid_request_error"
    assert words in reply.body["error"]["message"]
    assert (await client.post(PATH, body("local/q"))).status == 200  # still serving


async def test_upstream_failures_name_the_provider(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post("http://ant.test/v1/messages/count_tokens")
    client = await router(config(), environ={"ANT_KEY": "k" * 10})
    route.respond(500, json={"type": "error", "error": {"type": "api_error", "message": "boom"}})
    reply = await client.post(PATH, body("claude-x"))
    assert reply.status == 502 and reply.body["type"] == "error"
    assert "provider 'ant' returned 500: boom" in reply.body["error"]["message"]
    route.respond(200, json={"tokens": "many"})
    reply = await client.post(PATH, body("claude-x"))
    assert reply.status == 502 and "unreadable token count" in reply.body["error"]["message"]
    route.mock(side_effect=httpx.ConnectError("refused"))
    reply = await client.post(PATH, body("claude-x"))
    assert reply.status == 502 and "provider 'ant' unreachable" in reply.body["error"]["message"]


async def test_inbound_auth_applies(router: Any, mock_providers: Any) -> None:
    client = await router(config(server={"api_key_env": "ROUTER_KEY"}), environ={"ROUTER_KEY": "inbound-key-1"})
    reply = await client.post(PATH, body("local/q"))
    assert reply.status == 401 and reply.body["error"]["type"] == "authentication_error"
    assert (await client.post(PATH, body("local/q"), {"x-api-key": "inbound-key-1"})).status == 200


# -- the official SDK against a real router and a real upstream on loopback -------------------------


async def test_anthropic_sdk_count_tokens_both_ways(aiohttp_server: Any, tmp_path: Any) -> None:
    upstream = AgentUpstream()
    up = await aiohttp_server(upstream.app)
    cfg = make_config({
        "providers": [
            {"name": "ant", "format": "anthropic", "base_url": f"http://127.0.0.1:{up.port}", "discover": False},
            {"name": "oai", "format": "openai", "base_url": f"http://127.0.0.1:{up.port}/v1", "discover": False},
        ],
        "routers": [{"type": "prefix", "model_prefix": "claude", "provider": "ant", "strip_prefix": False},
                    {"type": "prefix", "model_prefix": "local/", "provider": "oai"}],
    }, tmp_path)
    router_server = await aiohttp_server(create_app(cfg, environ={}))
    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{router_server.port}", api_key="k", max_retries=0)
    messages: Any = [{"role": "user", "content": PROSE}]
    counted = await client.messages.count_tokens(model="claude-sonnet-4-5", messages=messages, system="Be brief.")
    assert counted.input_tokens == COUNT_TOKENS
    [seen] = upstream.posts(PATH)
    assert seen.body["system"] == "Be brief." and seen.body["model"] == "claude-sonnet-4-5"
    estimated = await client.beta.messages.count_tokens(model="local/qwen", messages=messages)
    assert 800 <= estimated.input_tokens <= 1200
    assert len(upstream.posts(PATH)) == 1 and not upstream.posts("/v1/chat/completions")
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.count_tokens(model="nowhere", messages=messages)
    assert "no provider configured for model 'nowhere'" in str(info.value)
