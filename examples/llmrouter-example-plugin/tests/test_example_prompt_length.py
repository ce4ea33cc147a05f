"""The ``prompt-length`` router rule, through the router with respx-mocked providers."""

from __future__ import annotations

from typing import Any

from llmrouter.testing import anthropic_message, openai_chat

BIG_URL = "http://big.test/v1"


def config(**rule: Any) -> dict[str, Any]:
    return {
        "providers": [{"name": "small", "format": "echo"},
                      {"name": "big", "format": "openai", "base_url": BIG_URL, "discover": False}],
        "routers": [{"type": "prompt-length", "provider": "big", "min_chars": 100, **rule},
                    {"type": "fallback", "providers": ["small"]}],
    }


async def test_long_prompts_go_to_the_big_provider(router: Any, mock_providers: Any) -> None:
    big = mock_providers.add_openai(BIG_URL, "a long answer")
    client = await router(config(rewrite_model="big-context-1"))

    reply = await client.openai(openai_chat("x" * 100, model="any"))
    assert reply.provider == "big"
    assert reply.headers["X-Router-Model"] == "big-context-1"
    assert reply.body["choices"][0]["message"]["content"] == "a long answer"
    assert mock_providers.sent_json(big)["model"] == "big-context-1"

    reply = await client.anthropic(anthropic_message("x" * 99, model="any"))
    assert reply.provider == "small"
    assert big.call_count == 1


async def test_system_prompt_counts_towards_the_length(router: Any, mock_providers: Any) -> None:
    mock_providers.add_openai(BIG_URL)
    client = await router(config())
    reply = await client.anthropic(anthropic_message("short", system="s" * 95))
    assert reply.provider == "big"
    assert reply.headers["X-Router-Model"] == "claude-test"  # no rewrite_model: sent unchanged


async def test_unloaded_provider_passes_to_the_next_rule(router: Any) -> None:
    cfg = config()
    cfg["providers"][1]["api_key_env"] = "EXAMPLE_PLUGIN_UNSET_KEY"
    client = await router(cfg, environ={})
    reply = await client.openai(openai_chat("x" * 500))
    assert reply.status == 200
    assert reply.provider == "small"


async def test_bad_rule_table_fails_the_request_naming_the_key(router: Any) -> None:
    client = await router(config(min_chars="lots"))
    reply = await client.openai(openai_chat("hello"))
    assert reply.status == 500
    assert "plugin 'prompt-length' failed" in reply.body["error"]["message"]
    assert "'min_chars'" in reply.body["error"]["message"]
