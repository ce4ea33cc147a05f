"""Per-model prices: ``[[providers.prices]]`` globs decide ``cost_usd`` in events and the log (streams
included), with the flat ``cost_per_1m_tokens`` as the fallback."""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter.config import ConfigError
from llmrouter.keys.config import PriceConfig
from llmrouter.keys.pricing import Pricing
from llmrouter.models import Usage
from llmrouter.testing import anthropic_message, make_config, openai_chat

OPENAI_URL = "https://api.openai.test/v1"
ANTHROPIC_URL = "https://api.anthropic.test"


def test_first_matching_glob_prices_each_kind_of_token() -> None:
    pricing = Pricing([PriceConfig(model="gpt-4o-mini*", input=0.15, output=0.6),
                       PriceConfig(model="gpt-4o*", input=2.5, output=10, cache_read=1.25),
                       PriceConfig(model="claude-*", input=3, output=15, cache_read=0.3, cache_write=3.75)],
                      flat_per_1m=1.0)
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_input_tokens=200_000)
    assert pricing.cost_usd(usage, "gpt-4o-mini-2024") == pytest.approx(0.15 + 0.06 + 0.2 * 0.15)
    assert pricing.cost_usd(usage, "gpt-4o") == pytest.approx(2.5 + 1.0 + 0.25)
    cached = Usage(input_tokens=10, output_tokens=20, cache_read_input_tokens=1000, cache_creation_input_tokens=2000)
    assert pricing.cost_usd(cached, "claude-sonnet") == pytest.approx((30 + 300 + 300 + 7500) / 1e6)
    # no glob matches the sent model, but one matches the model the reply names
    assert pricing.cost_usd(usage, "alias", "gpt-4o") == pytest.approx(3.75)
    # nothing matches: flat rate over input + output, as before
    assert pricing.cost_usd(usage, "llama") == pytest.approx(1.1)
    assert Pricing([], None).cost_usd(usage, "llama") is None


def test_bad_price_names_the_table() -> None:
    with pytest.raises(ConfigError, match=r"\[\[providers\]\] #1 \(name = 'p'\) key 'prices.0.output'"):
        make_config({"providers": [{"name": "p", "format": "echo", "prices": [{"model": "*", "input": 1,
                                                                               "output": -1}]}]})


def _config() -> dict[str, Any]:
    return {"providers": [
        {"name": "oa", "format": "openai", "base_url": OPENAI_URL, "cost_per_1m_tokens": 100.0,
         "prices": [{"model": "gpt-4o*", "input": 2.5, "output": 10.0}]},
        {"name": "an", "format": "anthropic", "base_url": ANTHROPIC_URL,
         "prices": [{"model": "claude-*", "input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}]}],
        "routers": [{"type": "prefix", "model_prefix": "claude-", "provider": "an", "strip_prefix": False},
                    {"type": "fallback", "providers": ["oa"]}]}


async def test_cost_in_log_and_events_uses_the_model_price(router: Any, mock_providers: Any) -> None:
    mock_providers.add_openai(OPENAI_URL)  # 10 prompt + 5 completion tokens
    mock_providers.add_anthropic(ANTHROPIC_URL, body={
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": 1000,
                  "cache_creation_input_tokens": 200}})
    client = await router(_config())
    reply = await client.openai(openai_chat(model="gpt-4o"))
    expected = (10 * 2.5 + 5 * 10.0) / 1e6
    assert reply.log_line is not None and reply.log_line["cost_usd"] == pytest.approx(expected)
    complete = next(e for e in reply.events if e["type"] == "complete")
    assert complete["cost_usd"] == pytest.approx(expected)
    fallback = await client.openai(openai_chat(model="o3"))
    assert fallback.log_line["cost_usd"] == pytest.approx(15 * 100.0 / 1e6)  # type: ignore[index]
    claude = await client.anthropic(anthropic_message(model="claude-x"))
    assert claude.log_line["cost_usd"] == pytest.approx(  # type: ignore[index]
        (100 * 3.0 + 50 * 15.0 + 1000 * 0.3 + 200 * 3.75) / 1e6)


async def test_streamed_reply_is_priced_from_its_final_usage(router: Any, mock_providers: Any) -> None:
    chunks = [
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hey"}, "finish_reason": None}]},
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
         "usage": {"prompt_tokens": 1000, "completion_tokens": 400, "total_tokens": 1400,
                   "prompt_tokens_details": {"cached_tokens": 600}}},
    ]
    from llmrouter.jsonutil import dumps

    body = b"".join(b"data: " + dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    mock_providers.add_openai(OPENAI_URL, stream_body=body)
    cfg = _config()
    cfg["providers"][0]["prices"][0]["cache_read"] = 1.25
    client = await router(cfg)
    reply = await client.openai(openai_chat(model="gpt-4o", stream=True))
    assert reply.status == 200 and "hey" in reply.text
    assert reply.log_line["cost_usd"] == pytest.approx(  # type: ignore[index]
        (400 * 2.5 + 400 * 10.0 + 600 * 1.25) / 1e6)
