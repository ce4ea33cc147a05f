"""The official ``openai`` SDK's Responses client (``client.responses.create`` and
``client.responses.stream``) against a live router on loopback, in front of a scripted model on
loopback speaking OpenAI chat, Anthropic Messages or the Responses API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from llmrouter.testing import make_config
from llmrouter.web.app import create_app
from tests.codex_upstream import MARKER, TOOL_PROMPT, AgentUpstream

TOOLS: list[Any] = [{"type": "function", "name": "exec_command", "description": "Run a shell command",
                     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}},
                                    "required": ["cmd"]}}]


@pytest.fixture
async def stack(aiohttp_server: Any, tmp_path: Path) -> tuple[AgentUpstream, openai.AsyncOpenAI]:
    """The scripted model, a router in front of it, and an SDK client of the router."""
    upstream = AgentUpstream()
    up = await aiohttp_server(upstream.app)
    base = f"http://127.0.0.1:{up.port}"
    config = make_config({
        "providers": [
            {"name": "oa", "format": "openai", "base_url": f"{base}/v1", "discover": False},
            {"name": "an", "format": "anthropic", "base_url": base, "discover": False},
            {"name": "rs", "format": "openai-responses", "base_url": f"{base}/v1", "discover": False},
        ],
        "routers": [{"type": "prefix", "model_prefix": f"{p}-", "provider": p} for p in ("oa", "an", "rs")],
        "responses": {"store": True},
    }, tmp_path)
    router = await aiohttp_server(create_app(config, environ={}))
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{router.port}/v1", api_key="k", max_retries=0)
    return upstream, client


@pytest.mark.parametrize(("model", "fmt"), [("oa-m", "openai"), ("rs-m", "responses")])
async def test_create_text_and_tool_round_trip(stack: tuple[AgentUpstream, openai.AsyncOpenAI], model: str,
                                               fmt: str) -> None:
    _, client = stack
    reply = await client.responses.create(model=model, input="say hi", instructions="be brief")
    assert reply.output_text == f"hello from {fmt}" and reply.status == "completed"
    assert reply.usage is not None and reply.usage.total_tokens == 38

    first = await client.responses.create(model=model, input=TOOL_PROMPT, tools=TOOLS)
    call = next(i for i in first.output if i.type == "function_call")
    assert call.name == "exec_command" and MARKER in call.arguments
    second = await client.responses.create(model=model, previous_response_id=first.id, tools=TOOLS, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": f"{MARKER}\n"}])
    assert second.output_text == f"tool said: {MARKER}"


@pytest.mark.parametrize(("model", "fmt"), [("oa-m", "openai"), ("an-m", "anthropic"), ("rs-m", "responses")])
async def test_stream_text_and_tool_call(stack: tuple[AgentUpstream, openai.AsyncOpenAI], model: str,
                                         fmt: str) -> None:
    _, client = stack
    deltas: list[str] = []
    async with client.responses.stream(model=model, input="say hi") as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == f"hello from {fmt}" == final.output_text
    assert final.usage is not None and final.usage.output_tokens == 8

    async with client.responses.stream(model=model, input=TOOL_PROMPT, tools=TOOLS) as stream:
        done = [e.item async for e in stream if e.type == "response.output_item.done"]
        final = await stream.get_final_response()
    calls = [i for i in done if i.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "exec_command" and MARKER in calls[0].arguments
    assert [i.id for i in final.output if i.type == "function_call"] == [calls[0].id]


async def test_sdk_sees_router_errors(stack: tuple[AgentUpstream, openai.AsyncOpenAI]) -> None:
    _, client = stack
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="nowhere", input="x")
    assert "no provider configured for model 'nowhere'" in str(info.value)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="oa-m", input="x", previous_response_id="resp_unknown")
    assert "resp_unknown" in str(info.value)
