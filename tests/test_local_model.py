"""Opt-in: a real local model behind the router (see docs/providers.md, "A local model").

Runs only when ``LLMROUTER_LOCAL_MODEL_URL`` names an OpenAI-compatible server (for example
``http://127.0.0.1:8081/v1`` from ``python -m llama_cpp.server ... --model_alias gemma3-270m``);
``LLMROUTER_LOCAL_MODEL`` names its model (default ``gemma3-270m``). Skipped otherwise: CI has no
model. Both client formats, plain and streaming, go through a real router on loopback.
"""

from __future__ import annotations

import os
from typing import Any

import anthropic
import openai
import pytest

from llmrouter.testing import make_config
from llmrouter.web.app import create_app

URL = os.environ.get("LLMROUTER_LOCAL_MODEL_URL")
MODEL = os.environ.get("LLMROUTER_LOCAL_MODEL", "gemma3-270m")

pytestmark = pytest.mark.skipif(not URL, reason="set LLMROUTER_LOCAL_MODEL_URL to run against a real local model")


@pytest.fixture
async def router_url(aiohttp_server: Any, tmp_path: Any) -> str:
    config = make_config({
        "providers": [{"name": "local", "format": "openai", "base_url": URL, "models": [MODEL],
                       "timeout_first_byte_s": 120}],
        "routers": [{"type": "prefix", "model_prefix": "local/", "provider": "local", "rewrite_model": MODEL}],
    }, tmp_path)
    server = await aiohttp_server(create_app(config, environ={}))
    return f"http://127.0.0.1:{server.port}"


async def test_openai_client_plain_and_streaming(router_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{router_url}/v1", api_key="unused", max_retries=0)
    result = await client.chat.completions.create(
        model="local/any", messages=[{"role": "user", "content": "Say hello in one word."}], max_tokens=16)
    assert result.choices[0].message.content and result.usage.completion_tokens > 0
    stream = await client.chat.completions.create(
        model="local/any", messages=[{"role": "user", "content": "Count to three."}], max_tokens=24, stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text and usage is not None


async def test_anthropic_client_to_local_model(router_url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=router_url, api_key="unused", max_retries=0)
    result = await client.messages.create(model="local/any", max_tokens=16,
                                          messages=[{"role": "user", "content": "Say hello in one word."}])
    assert result.content[0].text
    async with client.messages.stream(model="local/any", max_tokens=24,
                                      messages=[{"role": "user", "content": "Count to three."}]) as stream:
        final = await stream.get_final_message()
    assert final.content and final.stop_reason in ("end_turn", "max_tokens")
