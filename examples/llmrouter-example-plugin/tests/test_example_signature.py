"""The ``signature`` plugin: config settings, per-request overlay and per-request enabling."""

from __future__ import annotations

from typing import Any

import pytest
from llmrouter.config import ConfigError
from llmrouter.testing import anthropic_message, openai_chat

ECHO = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}]}


def with_signature(**settings: Any) -> dict[str, Any]:
    return {**ECHO, "plugins": {"signature": settings}}


async def test_footer_is_appended_in_both_client_formats(router: Any) -> None:
    client = await router(with_signature())
    reply = await client.openai(openai_chat("hello"))
    assert reply.body["choices"][0]["message"]["content"] == "hello\n\n-- via echo"
    assert reply.log_line["plugins"] == ["signature"]

    reply = await client.anthropic(anthropic_message("hello"))
    assert reply.body["content"] == [{"type": "text", "text": "hello\n\n-- via echo"}]


async def test_text_and_separator_from_config(router: Any) -> None:
    client = await router(with_signature(text="[{model} @ {provider}]", separator=" "))
    reply = await client.openai(openai_chat("hello", model="echo-1"))
    assert reply.body["choices"][0]["message"]["content"] == "hello [echo-1 @ echo]"


async def test_request_overlays_the_config_settings(router: Any) -> None:
    client = await router(with_signature(text="config footer", separator=" | "))
    reply = await client.openai(openai_chat("hello", plugins=[{"id": "signature", "text": "request footer"}]))
    # The request's text wins; the separator it did not send still comes from the config.
    assert reply.body["choices"][0]["message"]["content"] == "hello | request footer"

    reply = await client.openai(openai_chat("hello", plugins=[{"id": "signature", "text": ""}]))
    assert reply.body["choices"][0]["message"]["content"] == "hello"
    assert reply.log_line["plugins"] == []


async def test_request_can_enable_the_plugin_for_itself(router: Any) -> None:
    reply = await (await router(ECHO)).openai(openai_chat("hello", plugins=[{"id": "signature"}]))
    assert reply.status == 400  # only plugins the operator lists in [server] request_plugins
    client = await router({**ECHO, "server": {"request_plugins": ["signature"]}})
    reply = await client.openai(openai_chat("hello"))
    assert reply.body["choices"][0]["message"]["content"] == "hello"
    reply = await client.openai(openai_chat("hello", plugins=[{"id": "signature", "text": "-- just once"}]))
    assert reply.body["choices"][0]["message"]["content"] == "hello\n\n-- just once"


async def test_json_replies_are_left_alone(router: Any) -> None:
    client = await router(with_signature())
    reply = await client.openai(openai_chat('{"a": 1}', response_format={"type": "json_object"}))
    assert reply.body["choices"][0]["message"]["content"] == '{"a": 1}'


async def test_a_bad_setting_stops_startup_naming_the_key(router: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.signature\] key .text.: Input should be a valid str"):
        await router(with_signature(text=42))


async def test_a_bad_request_setting_is_a_400_naming_the_key(router: Any) -> None:
    client = await router(with_signature())
    reply = await client.openai(openai_chat("hello", plugins=[{"id": "signature", "separator": 3}]))
    assert reply.status == 400
    assert "key 'separator': Input should be a valid string" in reply.body["error"]["message"]
