"""Virtual keys as the official SDKs see them: their own auth, permission and rate-limit errors,
with ``Retry-After`` honoured, against a router on loopback."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from llmrouter.testing import make_config
from llmrouter.web.app import create_app

ALICE = "rk-alice-0123456789"
CONFIG = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}],
          "keys": [{"name": "alice", "key_env": "ALICE_KEY", "models": ["gpt-*", "claude-*"], "rpm": 2}]}


@pytest.fixture
async def url(aiohttp_server: Any, tmp_path: Any) -> str:
    app = create_app(make_config(CONFIG, tmp_path), environ={"ALICE_KEY": ALICE})
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


async def test_openai_sdk_gets_its_own_errors(url: str) -> None:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=ALICE, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="may not use model 'o3'"):
        await client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "hi"}])
    wrong = openai.AsyncOpenAI(base_url=url + "/v1", api_key="rk-nobody-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    for _ in range(2):
        reply = await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "hi"
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 429 and 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


async def test_anthropic_sdk_streaming_gets_its_own_errors(url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, auth_token=ALICE, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError, match="may not use model 'llama'"):
        await client.messages.create(model="llama", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                     stream=True)
    for _ in range(2):
        async with client.messages.stream(model="claude-x", max_tokens=10,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            assert await stream.get_final_text() == "hi"
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                     stream=True)
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
