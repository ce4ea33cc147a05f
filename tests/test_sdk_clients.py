"""The official openai and anthropic SDKs against a real router on loopback, which forwards to real
fake providers on loopback: same-format and cross-format, with tool calls, plain and streaming."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from llmrouter.testing import make_config
from llmrouter.web.app import create_app
from tests.upstreams import WEATHER_TOOL_ARGS, FakeUpstream

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                     "required": ["city"]}}]


@pytest.fixture
async def stack(aiohttp_server: Any, tmp_path: Any) -> Any:
    """A fake upstream and a router in front of it; models "oa-*" go to openai, "an-*" anthropic, "ol-*" ollama."""
    upstream = FakeUpstream()
    up_server = await aiohttp_server(upstream.app)
    base = f"http://127.0.0.1:{up_server.port}"
    config = make_config({
        "providers": [
            {"name": "oa", "format": "openai", "base_url": f"{base}/v1", "api_key_env": "OA_KEY", "discover": False},
            {"name": "an", "format": "anthropic", "base_url": base, "api_key_env": "AN_KEY", "discover": False},
            {"name": "ol", "format": "ollama", "base_url": base, "discover": False},
        ],
        "routers": [{"type": "prefix", "model_prefix": "oa-", "provider": "oa"},
                    {"type": "prefix", "model_prefix": "an-", "provider": "an"},
                    {"type": "prefix", "model_prefix": "ol-", "provider": "ol"}],
    }, tmp_path)
    app = create_app(config, environ={"OA_KEY": "k1", "AN_KEY": "k2"})
    router_server = await aiohttp_server(app)
    return upstream, f"http://127.0.0.1:{router_server.port}"


def oai(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="client-key", max_retries=0)


def ant(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="client-key", max_retries=0)


@pytest.mark.parametrize("model", ["oa-small", "an-small", "ol-small"])
async def test_openai_sdk_plain_text(stack: Any, model: str) -> None:
    upstream, url = stack
    result = await oai(url).chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}])
    assert result.choices[0].message.content == "It is sunny in Paris."
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["an-small", "oa-small", "ol-small"])
async def test_anthropic_sdk_plain_text(stack: Any, model: str) -> None:
    upstream, url = stack
    result = await ant(url).messages.create(model=model, max_tokens=100, system="Be brief.",
                                            messages=[{"role": "user", "content": "Weather?"}])
    assert result.content[0].text == "It is sunny in Paris."
    assert result.stop_reason == "end_turn"
    assert result.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["oa-small", "an-small", "ol-small"])
async def test_openai_sdk_tool_round_trip(stack: Any, model: str) -> None:
    upstream, url = stack
    client = oai(url)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    import json

    assert json.loads(call.function.arguments) == WEATHER_TOOL_ARGS
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "22C and sunny"}]
    second = await client.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
    assert second.choices[0].message.content == "It is sunny in Paris."
    if model.startswith("an-"):
        sent = upstream.last("anthropic")
        blocks = sent["messages"][-1]["content"]
        assert blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == call.id
        assert sent["tools"][0]["input_schema"]["required"] == ["city"]


@pytest.mark.parametrize("model", ["an-small", "oa-small", "ol-small"])
async def test_anthropic_sdk_tool_round_trip(stack: Any, model: str) -> None:
    upstream, url = stack
    client = ant(url)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.messages.create(model=model, max_tokens=200, messages=messages, tools=ANTHROPIC_TOOLS)
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == WEATHER_TOOL_ARGS
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                               "content": "22C and sunny"}]}]
    second = await client.messages.create(model=model, max_tokens=200, messages=messages, tools=ANTHROPIC_TOOLS)
    assert second.content[0].text == "It is sunny in Paris."
    if model.startswith("oa-"):
        sent = upstream.last("openai")
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": tool_use.id, "content": "22C and sunny"}
        assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("model", ["oa-small", "an-small", "ol-small"])
async def test_openai_sdk_streaming(stack: Any, model: str) -> None:
    upstream, url = stack
    stream = await oai(url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather?"}], stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert (text, finish) == ("It is sunny in Paris.", "stop")
    assert usage is not None and usage.total_tokens > 0


@pytest.mark.parametrize("model", ["oa-small", "an-small", "ol-small"])
async def test_openai_sdk_streaming_tool_call(stack: Any, model: str) -> None:
    upstream, url = stack
    stream = await oai(url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather?"}], tools=OPENAI_TOOLS, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function.name or "") if delta.function else ""
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    import json

    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == WEATHER_TOOL_ARGS
    assert calls[0]["id"]


@pytest.mark.parametrize("model", ["an-small", "oa-small", "ol-small"])
async def test_anthropic_sdk_stream_final_message(stack: Any, model: str) -> None:
    upstream, url = stack
    async with ant(url).messages.stream(model=model, max_tokens=100,
                                        messages=[{"role": "user", "content": "Weather?"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "It is sunny in Paris."
    assert final.content[0].text == "It is sunny in Paris."
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["an-small", "oa-small", "ol-small"])
async def test_anthropic_sdk_stream_tool_use(stack: Any, model: str) -> None:
    upstream, url = stack
    async with ant(url).messages.stream(model=model, max_tokens=100, tools=ANTHROPIC_TOOLS,
                                        messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = await stream.get_final_message()
    tool_use = next(b for b in final.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == WEATHER_TOOL_ARGS
    assert final.stop_reason == "tool_use"


async def test_claude_code_shaped_request_passes_unknown_fields_to_anthropic(stack: Any) -> None:
    upstream, url = stack
    client = ant(url)
    result = await client.messages.create(
        model="an-opus", max_tokens=64,
        system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}],
        metadata={"user_id": "u1"},
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "low"}},
        extra_headers={"anthropic-beta": "a-2025,b-2025", "x-app": "cli"},
        extra_query={"beta": "true"},
    )
    assert result.content[0].text == "It is sunny in Paris."
    sent = upstream.last("anthropic")
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["context_management"] == {"edits": []}
    assert sent["output_config"] == {"effort": "low"}
    assert sent["metadata"] == {"user_id": "u1"}
    headers = [h for f, _, h in upstream.requests if f == "anthropic"][-1]
    assert headers["anthropic-beta"] == "a-2025,b-2025"
    assert headers["x-api-key"] == "k2"


async def test_claude_code_fields_dropped_cleanly_for_openai_provider(stack: Any) -> None:
    upstream, url = stack
    result = await ant(url).messages.create(
        model="oa-mini", max_tokens=64,
        system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                  {"role": "system", "content": "mid-conversation note"}, {"role": "user", "content": "again"}],
        extra_body={"context_management": {"edits": []}},
    )
    assert result.content[0].text == "It is sunny in Paris."
    sent = upstream.last("openai")
    assert "context_management" not in sent and "metadata" not in sent
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code."}
    assert sent["messages"][3] == {"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\nmid-conversation note\n</system-reminder>"},
        {"type": "text", "text": "again"}]}
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["max_tokens"] == 64 or sent.get("max_completion_tokens") == 64


async def test_both_sdks_retrieve_one_model(aiohttp_server: Any, tmp_path: Any) -> None:
    """``GET /v1/models/{id}`` (``client.models.retrieve``) answers in each SDK's shape, ids with
    slashes included; an unknown id is a 404 in the SDK's error shape."""
    config = make_config({"providers": [{"name": "echo", "format": "echo", "models": ["echo-1", "org/echo-2"]}],
                          "routers": [{"type": "fallback"}]}, tmp_path)
    url = f"http://127.0.0.1:{(await aiohttp_server(create_app(config))).port}"
    model = await oai(url).models.retrieve("org/echo-2")
    assert model.id == "org/echo-2" and model.owned_by == "echo"
    info = await ant(url).models.retrieve("echo-1")
    assert info.id == "echo-1" and info.type == "model"
    with pytest.raises(openai.NotFoundError) as oerr:
        await oai(url).models.retrieve("nope")
    assert "'nope'" in oerr.value.body["message"]
    with pytest.raises(anthropic.NotFoundError) as aerr:
        await ant(url).models.retrieve("nope")
    assert aerr.value.body["error"]["type"] == "not_found_error"
