"""Every built-in classifier, router rule and plugin, through the real aiohttp app.

Each test shows a built-in changing where a request goes (which provider, which model is sent
upstream) or what the client gets back, with respx-mocked providers in their own wire formats
and the offline ``echo`` provider. Where the client format matters, both are exercised.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter.testing import MockProviders, Reply, RouterClient, anthropic_message, openai_chat
from llmrouter.web.app import DISCOVERY

OPENAI_URL = "http://openai.test/v1"
ANTHROPIC_URL = "http://anthropic.test"
OLLAMA_URL = "http://ollama.test"
CLIENT_FORMATS = ["openai", "anthropic"]


def provider(name: str, fmt: str, **extra: Any) -> dict[str, Any]:
    """A provider table; remote ones get their mock URL and no discovery unless asked."""
    urls = {"openai": OPENAI_URL, "anthropic": ANTHROPIC_URL, "ollama": OLLAMA_URL}
    table: dict[str, Any] = {"name": name, "format": fmt}
    if fmt in urls:
        table.update(base_url=urls[fmt], discover=False)
    return {**table, **extra}


async def send(client: RouterClient, fmt: str, text: str, model: str = "client-model", **extra: Any) -> Reply:
    """Send ``text`` as an OpenAI or Anthropic client would."""
    if fmt == "openai":
        return await client.openai(openai_chat(text, model=model, **extra))
    return await client.anthropic(anthropic_message(text, model=model, **extra))


def reply_text(reply: Reply, fmt: str) -> str:
    """The text the client got, read from its own wire format."""
    assert reply.status == 200, reply.text
    if fmt == "openai":
        return reply.body["choices"][0]["message"]["content"]
    return "".join(block["text"] for block in reply.body["content"] if block["type"] == "text")


def error_message(reply: Reply, fmt: str) -> str:
    """The error message in the client's own error shape."""
    if fmt == "openai":
        return reply.body["error"]["message"]
    assert reply.body["type"] == "error"
    return reply.body["error"]["message"]


# -- classifier `keyword` with the `tag` rule ----------------------------------------------------------


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
async def test_keyword_tag_sends_code_questions_to_the_coder(router: Any, mock_providers: MockProviders,
                                                             fmt: str) -> None:
    coder = mock_providers.add_anthropic(ANTHROPIC_URL, "coder answer")
    general = mock_providers.add_openai(OPENAI_URL, "general answer")
    client = await router({
        "providers": [provider("general", "openai"), provider("coder", "anthropic")],
        "classifiers": {"keyword": {"tags": {"code": ["stack trace", "def "], "vision": ["photo"]}}},
        "routers": [{"type": "tag", "tag": "code", "provider": "coder", "rewrite_model": "claude-coder"},
                    {"type": "fallback", "providers": ["general"]}],
    })

    reply = await send(client, fmt, "Here is a STACK TRACE from my photo app")
    assert reply_text(reply, fmt) == "coder answer"
    assert reply.provider == "coder"
    assert reply.headers["X-Router-Request-Tags"] == "code,vision"
    assert mock_providers.sent_json(coder)["model"] == "claude-coder"
    assert reply.log_line["tags"] == ["code", "vision"]

    reply = await send(client, fmt, "What is the capital of France?")
    assert reply_text(reply, fmt) == "general answer"
    assert "X-Router-Request-Tags" not in reply.headers
    assert (coder.call_count, general.call_count) == (1, 1)


async def test_keyword_matches_the_system_prompt(router: Any) -> None:
    client = await router({
        "providers": [provider("plain", "echo"), provider("seer", "echo")],
        "classifiers": {"keyword": {"tags": {"vision": ["describe photos"]}}},
        "routers": [{"type": "tag", "tag": "vision", "provider": "seer"}, {"type": "fallback"}],
    })
    reply = await client.anthropic(anthropic_message("what is this?", system="You DESCRIBE PHOTOS."))
    assert reply.provider == "seer"


# -- router rules ------------------------------------------------------------------------------------


async def test_prefix_strips_or_rewrites_the_model(router: Any, mock_providers: MockProviders) -> None:
    ollama = mock_providers.add_ollama(OLLAMA_URL, "local answer")
    client = await router({
        "providers": [provider("cloud", "echo"), provider("local", "ollama")],
        "routers": [{"type": "prefix", "model_prefix": "local/", "provider": "local", "strip_prefix": True},
                    {"type": "prefix", "model_prefix": "tiny", "provider": "local", "rewrite_model": "qwen3:0.6b"},
                    {"type": "fallback", "providers": ["cloud"]}],
    })
    reply = await send(client, "openai", "hi", model="local/llama3.2:3b")
    assert reply_text(reply, "openai") == "local answer"
    assert mock_providers.sent_json(ollama)["model"] == "llama3.2:3b"
    assert reply.headers["X-Router-Model"] == "llama3.2:3b"

    reply = await send(client, "anthropic", "hi", model="tiny-please")
    assert reply_text(reply, "anthropic") == "local answer"
    assert mock_providers.sent_json(ollama)["model"] == "qwen3:0.6b"

    reply = await send(client, "openai", "hi", model="gpt-4o")
    assert reply.provider == "cloud"
    assert ollama.call_count == 2


METRICS = [
    provider("slow-cheap", "echo", cost_per_1m_tokens=0.1, latency_ms=2000, throughput_tokens_per_sec=10,
             quality=20),
    provider("mid", "echo", cost_per_1m_tokens=1.0, latency_ms=500, throughput_tokens_per_sec=80, quality=60),
    provider("fast-dear", "echo", cost_per_1m_tokens=15.0, latency_ms=200, throughput_tokens_per_sec=40,
             quality=95),
    provider("unmeasured", "echo"),
    provider("last-resort", "echo"),
]


@pytest.mark.parametrize(("rule", "expected"), [
    ({"type": "price"}, "slow-cheap"),
    ({"type": "price", "providers": ["fast-dear", "mid"]}, "mid"),
    ({"type": "price", "providers": ["fast-dear"], "max_cost_per_1m_tokens": 5}, "last-resort"),
    ({"type": "latency"}, "fast-dear"),
    ({"type": "latency", "providers": ["slow-cheap", "mid"], "max_latency_ms": 1000}, "mid"),
    ({"type": "latency", "providers": ["slow-cheap"], "max_latency_ms": 1000}, "last-resort"),
    ({"type": "throughput"}, "mid"),
    ({"type": "throughput", "providers": ["slow-cheap", "fast-dear"]}, "fast-dear"),
    ({"type": "throughput", "min_tokens_per_sec": 100}, "last-resort"),
    ({"type": "fallback", "providers": ["slow-cheap", "mid", "fast-dear"], "quality_bias": 1.0}, "fast-dear"),
    ({"type": "fallback", "providers": ["fast-dear", "mid", "slow-cheap"], "quality_bias": 0.0}, "slow-cheap"),
    ({"type": "fallback", "providers": ["slow-cheap", "mid", "fast-dear"], "quality_bias": 0.1}, "mid"),
])
async def test_metric_rules_pick_by_their_metric(router: Any, rule: dict[str, Any], expected: str) -> None:
    client = await router({"providers": METRICS,
                           "routers": [rule, {"type": "fallback", "providers": ["last-resort"]}]})
    reply = await send(client, "openai", "hello", model="any-model")
    assert reply.status == 200, reply.text
    assert reply.provider == expected
    assert reply.events[2]["type"] == "routed" and reply.events[2]["provider"] == expected


async def test_metric_rule_rewrites_the_model_sent_upstream(router: Any, mock_providers: MockProviders) -> None:
    upstream = mock_providers.add_openai(OPENAI_URL)
    client = await router({
        "providers": [provider("dear", "echo", cost_per_1m_tokens=10.0),
                      provider("cheap", "openai", cost_per_1m_tokens=0.5)],
        "routers": [{"type": "price", "rewrite_model": "gpt-4o-mini"}],
    })
    reply = await send(client, "anthropic", "hi", model="claude-sonnet")
    assert reply.provider == "cheap"
    assert mock_providers.sent_json(upstream)["model"] == "gpt-4o-mini"


async def test_discover_routes_models_a_provider_reports(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_ollama(OLLAMA_URL, "from ollama", model="llama3.2:latest")
    mock_providers.add_openai(OPENAI_URL, "from vllm", model="Qwen/Qwen2.5-7B")
    client = await router({
        "providers": [provider("echo", "echo"),
                      provider("vllm", "openai", discover=True),
                      provider("ollama", "ollama", discover=True)],
        "routers": [{"type": "discover", "providers": ["vllm", "ollama"]},
                    {"type": "fallback", "providers": ["echo"]}],
    })
    await client.app[DISCOVERY].wait_ready()

    reply = await send(client, "openai", "hi", model="llama3.2")  # matches llama3.2:latest
    assert (reply.provider, reply_text(reply, "openai")) == ("ollama", "from ollama")
    reply = await send(client, "anthropic", "hi", model="Qwen/Qwen2.5-7B")
    assert (reply.provider, reply_text(reply, "anthropic")) == ("vllm", "from vllm")
    reply = await send(client, "openai", "hi", model="gpt-4o")
    assert reply.provider == "echo"


async def test_discover_passes_when_discovery_failed(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.mock.get(OPENAI_URL + "/models").respond(500, json={"error": {"message": "down"}})
    client = await router({
        "providers": [provider("echo", "echo"), provider("vllm", "openai", discover=True)],
        "routers": [{"type": "discover", "provider": "vllm"}, {"type": "fallback", "providers": ["echo"]}],
    })
    await client.app[DISCOVERY].wait_ready()
    reply = await send(client, "openai", "hi", model="Qwen/Qwen2.5-7B")
    assert reply.provider == "echo"


async def test_random_candidates_with_seed_are_reproducible(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OPENAI_URL)
    mock_providers.add_anthropic(ANTHROPIC_URL)
    candidates = [{"provider": "oa", "model": "gpt-4o-mini"}, {"provider": "an", "model": "claude-haiku"},
                  {"provider": "keyed", "model": "never"}]
    client = await router({
        "providers": [provider("oa", "openai"), provider("an", "anthropic"),
                      provider("keyed", "echo", api_key_env="E2E_UNSET_KEY")],
        "routers": [{"type": "random", "candidates": candidates, "seed": 7}],
    }, environ={})
    picks = set()
    for _ in range(3):
        reply = await send(client, "openai", "hi")
        assert reply.status == 200, reply.text
        picks.add((reply.provider, reply.headers["X-Router-Model"]))
    assert len(picks) == 1  # the same seed gives every request the same pick
    assert picks <= {("oa", "gpt-4o-mini"), ("an", "claude-haiku")}  # never the unloaded provider


async def test_random_spreads_over_providers(router: Any) -> None:
    client = await router({"providers": [provider(f"p{i}", "echo") for i in range(3)],
                           "routers": [{"type": "random"}]})
    seen = {(await send(client, "openai", "hi")).provider for _ in range(40)}
    assert seen == {"p0", "p1", "p2"}  # 3 * (2/3)**40 < 1e-6: a flake is not a realistic worry


# -- response-healing ----------------------------------------------------------------------------------

BROKEN_JSON = '```json\n{"name": "Ada", "langs": ["en", "fr",],}\n```'


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
async def test_response_healing_repairs_json_replies(router: Any, mock_providers: MockProviders, fmt: str) -> None:
    mock_providers.add_openai(OPENAI_URL, BROKEN_JSON)
    base = {"providers": [provider("up", "openai")], "routers": [{"type": "fallback"}]}

    plain = await router(base)
    reply = await send(plain, fmt, "give me JSON")
    assert reply_text(reply, fmt) == BROKEN_JSON  # without the plugin, the client gets it as sent
    assert reply.log_line["plugins"] == []

    healed = await router({**base, "plugins": {"response-healing": {}}})
    reply = await send(healed, fmt, "give me JSON")
    assert reply_text(reply, fmt) == '{"name":"Ada","langs":["en","fr"]}'
    assert reply.log_line["plugins"] == ["response-healing"]


async def test_response_healing_extracts_json_from_prose_when_json_was_asked_for(
        router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_anthropic(ANTHROPIC_URL, 'Sure! Here it is: {"ok": true,} Anything else?')
    client = await router({"providers": [provider("up", "anthropic")], "routers": [{"type": "fallback"}],
                           "plugins": {"response-healing": {}}})
    reply = await send(client, "openai", "hi")
    assert reply_text(reply, "openai") == 'Sure! Here it is: {"ok": true,} Anything else?'  # prose: untouched
    reply = await send(client, "openai", "hi", response_format={"type": "json_object"})
    assert reply_text(reply, "openai") == '{"ok":true}'


async def test_response_healing_per_request(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OPENAI_URL, '{"a": [1, 2')
    config = {"providers": [provider("up", "openai")], "routers": [{"type": "fallback"}]}
    client = await router(config)
    reply = await send(client, "anthropic", "hi", plugins=[{"id": "response-healing"}])
    assert reply.status == 400  # not listed in [server] request_plugins
    assert "plugin 'response-healing' cannot be enabled per request" in error_message(reply, "anthropic")
    client = await router({**config, "server": {"request_plugins": ["response-healing"]}})
    reply = await send(client, "anthropic", "hi", plugins=[{"id": "response-healing"}])
    assert reply_text(reply, "anthropic") == '{"a":[1,2]}'


# -- moderation ------------------------------------------------------------------------------------------

MODERATED = {
    "providers": [provider("up", "openai")],
    "classifiers": {"keyword": {"tags": {"pii": ["passport number"]}}},
    "routers": [{"type": "fallback"}],
    "plugins": {"moderation": {"rules": [
        {"tag": "pii", "action": "refuse", "message": "Please remove personal data."},
        {"name": "secrets", "pattern": r"(?i)password\s*[:=]", "action": "error"},
    ]}},
}


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
async def test_moderation_refuses_without_calling_a_provider(router: Any, mock_providers: MockProviders,
                                                             fmt: str) -> None:
    upstream = mock_providers.add_openai(OPENAI_URL, "provider answer")
    client = await router(MODERATED)

    reply = await send(client, fmt, "My passport number is X123")
    assert reply_text(reply, fmt) == "Please remove personal data."
    assert reply.provider == "plugin"
    assert reply.log_line["provider"] == "plugin"
    assert reply.log_line["plugins"] == ["moderation"]
    if fmt == "openai":
        assert reply.body["choices"][0]["finish_reason"] == "stop"
    else:
        assert reply.body["stop_reason"] == "end_turn"
    assert upstream.call_count == 0

    reply = await send(client, fmt, "What is a passport?")
    assert reply_text(reply, fmt) == "provider answer"
    assert upstream.call_count == 1


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
async def test_moderation_error_is_a_400_naming_the_rule(router: Any, mock_providers: MockProviders,
                                                         fmt: str) -> None:
    upstream = mock_providers.add_openai(OPENAI_URL)
    client = await router(MODERATED)
    reply = await send(client, fmt, "my Password: hunter2")
    assert reply.status == 400
    assert error_message(reply, fmt) == "request blocked by moderation rule 'secrets'"
    assert upstream.call_count == 0
    assert reply.log_line["status"] == 400


async def test_moderation_refusal_streams_to_an_anthropic_client(router: Any, mock_providers: MockProviders) -> None:
    upstream = mock_providers.add_openai(OPENAI_URL)
    client = await router(MODERATED)
    reply = await send(client, "anthropic", "passport number: X123", stream=True)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert "event: message_start" in reply.text and "event: message_stop" in reply.text
    assert "Please remove personal data." in reply.text
    assert upstream.call_count == 0


async def test_a_request_cannot_weaken_configured_moderation(router: Any, mock_providers: MockProviders) -> None:
    upstream = mock_providers.add_openai(OPENAI_URL)
    client = await router(MODERATED)
    weaken = [{"id": "moderation", "rules": [], "action": "refuse", "message": "fine"}]
    reply = await send(client, "openai", "password = hunter2", plugins=weaken)
    assert reply.status == 400
    assert error_message(reply, "openai") == ("plugins[0].rules: setting 'rules' of plugin 'moderation' cannot be "
                                              "set per request (request-settable: none)")
    reply = await send(client, "openai", "password = hunter2", plugins=[{"id": "moderation", "enabled": False}])
    assert reply.status == 400
    # Not even stricter rules: a client-supplied regular expression could hog a shared router's CPU.
    stricter = [{"id": "moderation", "patterns": ["(a+)+$"]}]
    reply = await send(client, "openai", "what is the weather", plugins=stricter)
    assert reply.status == 400 and "'patterns'" in error_message(reply, "openai")
    assert upstream.call_count == 0


# -- pareto-router -------------------------------------------------------------------------------------

PARETO = {
    "providers": [provider("local", "echo"), provider("mid", "openai"), provider("best", "anthropic")],
    "routers": [{"type": "fallback", "providers": ["mid"]}],
    "plugins": {"pareto-router": {"default_tier": "low",
                                  "tiers": {"low": ["local"], "medium": ["mid"], "high": ["best", "mid"]}}},
}


async def test_pareto_router_default_and_requested_tiers(router: Any, mock_providers: MockProviders) -> None:
    mid = mock_providers.add_openai(OPENAI_URL, "medium answer")
    best = mock_providers.add_anthropic(ANTHROPIC_URL, "best answer")
    client = await router(PARETO)

    reply = await send(client, "openai", "hello")  # default tier low, despite the chain naming "mid"
    assert (reply.provider, reply_text(reply, "openai")) == ("local", "hello")

    reply = await send(client, "openai", "hi", model="gpt-4o", plugins=[{"id": "pareto-router", "tier": "high"}])
    assert (reply.provider, reply_text(reply, "openai")) == ("best", "best answer")
    assert mock_providers.sent_json(best)["model"] == "gpt-4o"  # the requested model is sent unchanged

    reply = await send(client, "anthropic", "hi", plugins=[{"id": "pareto-router", "tier": "medium"}])
    assert (reply.provider, reply_text(reply, "anthropic")) == ("mid", "medium answer")
    assert (mid.call_count, best.call_count) == (1, 1)


async def test_pareto_router_skips_unloaded_providers_of_a_tier(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OPENAI_URL, "medium answer")
    config = {**PARETO, "providers": [provider("local", "echo"), provider("mid", "openai"),
                                      provider("best", "anthropic", api_key_env="E2E_UNSET_KEY")]}
    client = await router(config, environ={})
    reply = await send(client, "openai", "hi", plugins=[{"id": "pareto-router", "tier": "high"}])
    assert reply.provider == "mid"


@pytest.mark.parametrize("fmt", CLIENT_FORMATS)
async def test_pareto_router_unknown_tier_is_a_400_listing_tiers(router: Any, fmt: str) -> None:
    client = await router(PARETO)
    reply = await send(client, fmt, "hi", plugins=[{"id": "pareto-router", "tier": "ultra"}])
    assert reply.status == 400
    assert error_message(reply, fmt) == "pareto-router: unknown tier 'ultra'; known tiers: low, medium, high"


async def test_pareto_router_per_request_is_limited_to_request_plugins_and_tier(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_anthropic(ANTHROPIC_URL, "best answer")
    mock_providers.add_openai(OPENAI_URL, "medium answer")
    config = {key: value for key, value in PARETO.items() if key != "plugins"}
    tiers = {"low": ["local"], "high": ["best"]}
    client = await router(config)
    reply = await send(client, "openai", "hi", plugins=[{"id": "pareto-router", "tier": "high"}])
    assert reply.status == 400  # a plugin not in [server] request_plugins cannot be switched on by a client
    assert "plugin 'pareto-router' cannot be enabled per request" in error_message(reply, "openai")
    client = await router({**config, "server": {"request_plugins": ["pareto-router"]}})
    reply = await send(client, "openai", "hi", plugins=[{"id": "pareto-router", "tiers": tiers, "tier": "high"}])
    assert reply.status == 400  # tiers are the operator's: only `tier` is request-settable
    assert error_message(reply, "openai").startswith("plugins[0].tiers: setting 'tiers' of plugin 'pareto-router'")
    reply = await send(client, "openai", "hi", plugins=[{"id": "pareto-router", "tier": 7}])
    assert reply.status == 400
    assert "key 'tier': Input should be a valid string" in error_message(reply, "openai")
    reply = await send(client, "openai", "hi", plugins=[{"id": "pareto-router"}])
    assert reply.provider == "mid"  # switched on with no tiers: a no-op, the chain decides


async def test_keyword_scans_the_system_prompt_and_the_latest_messages_only(router: Any) -> None:
    """The classifier's window: the system prompt and the last 8 messages (see docs/classifiers.md)."""
    client = await router({
        "providers": [provider("plain", "echo"), provider("old", "echo"), provider("new", "echo")],
        "classifiers": {"keyword": {"tags": {"old": ["ancient words"], "new": ["fresh words"]}}},
        "routers": [{"type": "tag", "tag": "old", "provider": "old"},
                    {"type": "tag", "tag": "new", "provider": "new"}, {"type": "fallback"}],
    })
    turns: list[dict[str, Any]] = [{"role": "system", "content": "house rules"},
                                   {"role": "user", "content": "ancient words here"}]
    for i in range(8):
        turns.append({"role": "assistant" if i % 2 == 0 else "user", "content": f"turn {i}"})
    reply = await client.openai({"model": "m", "messages": [*turns, {"role": "user", "content": "fresh words"}]})
    assert reply.provider == "new"
    reply = await client.openai({"model": "m", "messages": turns[:4]})
    assert reply.provider == "old"
    turns[0]["content"] = "ancient words in the system prompt"
    reply = await client.openai({"model": "m", "messages": turns})
    assert reply.provider == "old"
