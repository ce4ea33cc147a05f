"""The ``shouting`` classifier, unit-level and through the router with a ``tag`` rule."""

from __future__ import annotations

from typing import Any

import pytest
from llmrouter.testing import anthropic_message, openai_chat

from llmrouter_example_plugin.shouting import is_shouting

CONFIG = {
    "providers": [{"name": "calm", "format": "echo"}, {"name": "loud", "format": "echo"}],
    "classifiers": {"shouting": {}},
    "routers": [{"type": "tag", "tag": "shouting", "provider": "loud"},
                {"type": "fallback", "providers": ["calm"]}],
}


@pytest.mark.parametrize(("text", "expected"), [
    ("WHY IS MY BUILD BROKEN", True),
    ("WHY IS MY BUILD BROKEN?!! 404", True),
    ("Why is my build broken", False),
    ("OK", False),  # too few letters to be shouting
    ("NASA FTW", False),  # seven letters, below the default of eight
    ("", False),
    ("1234567890 !!!", False),  # no letters at all
])
def test_is_shouting(text: str, expected: bool) -> None:
    assert is_shouting(text) is expected


def test_min_letters_lowers_the_bar() -> None:
    assert is_shouting("NASA", min_letters=4)
    assert not is_shouting("NASa", min_letters=4)


async def test_shouting_prompt_is_tagged_and_routed(router: Any) -> None:
    client = await router(CONFIG)
    reply = await client.openai(openai_chat("PLEASE FIX MY CODE NOW"))
    assert reply.status == 200
    assert reply.headers["X-Router-Request-Tags"] == "shouting"
    assert reply.provider == "loud"
    assert reply.log_line["tags"] == ["shouting"]

    reply = await client.anthropic(anthropic_message("please fix my code now"))
    assert "X-Router-Request-Tags" not in reply.headers
    assert reply.provider == "calm"


async def test_only_the_last_user_message_counts(router: Any) -> None:
    client = await router(CONFIG)
    body = {"model": "m", "messages": [
        {"role": "user", "content": "I SAID HELLO ALREADY"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "thanks, that is all"}]}
    reply = await client.openai(body)
    assert reply.provider == "calm"


async def test_settings_from_config(router: Any) -> None:
    config = {**CONFIG, "classifiers": {"shouting": {"tag": "caps", "min_letters": 3}},
              "routers": [{"type": "tag", "tag": "caps", "provider": "loud"}, {"type": "fallback"}]}
    client = await router(config)
    reply = await client.openai(openai_chat("WHY"))
    assert reply.headers["X-Router-Request-Tags"] == "caps"
    assert reply.provider == "loud"


async def test_bad_setting_skips_the_classifier_but_not_the_request(router: Any) -> None:
    client = await router({**CONFIG, "classifiers": {"shouting": {"min_letters": "eight"}}})
    reply = await client.openai(openai_chat("PLEASE FIX MY CODE NOW"))
    assert reply.status == 200
    assert reply.provider == "calm"


async def test_request_can_enable_the_classifier_for_itself(router: Any) -> None:
    client = await router({**CONFIG, "classifiers": {}, "server": {"request_plugins": ["shouting"]}})
    reply = await client.openai(openai_chat("PLEASE FIX MY CODE NOW"))
    assert reply.provider == "calm"
    reply = await client.openai(openai_chat("PLEASE FIX MY CODE NOW", plugins=[{"id": "shouting"}]))
    assert reply.provider == "loud"
