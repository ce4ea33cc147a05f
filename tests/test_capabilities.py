"""Capability-aware routing: what discovery learns (Ollama ``/api/show``), what config declares,
and the rule chain skipping candidates that lack what a request needs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from llmrouter import ChatRequest, Message, ProviderInfo, TextPart
from llmrouter.config import ProviderConfig
from llmrouter.engine.capabilities import missing, request_needs
from llmrouter.models import ImagePart, Tool, ToolChoice, ToolResultPart
from llmrouter.testing import MockProviders, anthropic_message, make_config, openai_chat
from llmrouter.upstream.discovery import ModelDiscovery, discover_capabilities
from llmrouter.upstream.providers import build_providers
from llmrouter.web.app import DISCOVERY

OL, CLOUD, FREE = "http://ol.test", "http://cloud.test/v1", "http://free.test/v1"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


def ollama(name: str = "ol", **extra: Any) -> ProviderConfig:
    return ProviderConfig(name=name, format="ollama", base_url=OL, **extra)


# -- discovery ------------------------------------------------------------------------------------------


async def test_ollama_show_capabilities_are_learned_and_failures_stay_unknown() -> None:
    shown: list[str] = []

    def show(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        shown.append(model)
        if model == "llava":
            return httpx.Response(200, json={"capabilities": ["completion", "vision"]})
        if model == "odd":
            return httpx.Response(200, json={"details": {}})  # an old Ollama: no capabilities field
        return httpx.Response(404, json={"error": "not found"})

    with respx.mock(using="httpx") as mock:
        mock.post(f"{OL}/api/show").mock(side_effect=show)
        async with httpx.AsyncClient() as client:
            caps = await discover_capabilities(client, ollama(), None, ["llava", "odd", "gone"])
            assert await discover_capabilities(client, ProviderConfig(name="o", format="openai",
                                                                      base_url=CLOUD), None, ["x"]) == {}
    assert caps == {"llava": frozenset({"completion", "vision"})}
    assert sorted(shown) == ["gone", "llava", "odd"]


async def test_model_discovery_keeps_capabilities_beside_models() -> None:
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        MockProviders(mock).add_ollama(OL, capabilities={"qwen": ["completion", "tools"], "llava": ["vision"]})
        discovery = ModelDiscovery()
        async with httpx.AsyncClient() as client:
            await discovery.refresh(client, [(ollama(), None)])
    assert discovery.models == {"ol": ("qwen", "llava")}
    assert dict(discovery.capabilities["ol"]) == {"qwen": frozenset({"completion", "tools"}),
                                                  "llava": frozenset({"vision"})}


def test_provider_info_merges_configured_and_learned_capabilities() -> None:
    config = make_config({"providers": [{"name": "ol", "format": "ollama", "base_url": OL,
                                         "capabilities": ["completion"],
                                         "model_capabilities": {"qwen": ["completion", "vision"]}}]})
    provider = build_providers(config, {})["ol"]
    learned = {"qwen": frozenset({"completion"}), "llava": frozenset({"vision"})}
    info = provider.info(True, ("qwen", "llava"), learned)
    assert info.capabilities_of("qwen") == {"completion", "vision"}  # configured beats learned
    assert info.capabilities_of("llava") == {"vision"}
    assert info.capabilities_of("other") == {"completion"}  # the provider-wide list
    assert provider.info(True, ("qwen", "llava"), learned) is info  # cached while nothing changed
    assert ProviderInfo(name="x", format="openai").capabilities_of("m") is None  # unknown


# -- what a request needs --------------------------------------------------------------------------------


def test_request_needs() -> None:
    def req(*parts: Any, **extra: Any) -> ChatRequest:
        return ChatRequest(model="m", messages=[Message(role="user", content=list(parts) or [TextPart(text="hi")])],
                           **extra)

    assert request_needs(req()) == ()
    assert request_needs(req(TextPart(text="look"), ImagePart(url="https://x.test/a.png"))) == ("vision",)
    in_tool_result = ToolResultPart(tool_use_id="t", content=[ImagePart(data="QUJD", media_type="image/png")])
    assert request_needs(req(in_tool_result)) == ("vision",)
    tools = [Tool(name="f")]
    assert request_needs(req(tools=tools)) == ("tools",)
    assert request_needs(req(tools=tools, tool_choice=ToolChoice(type="none"))) == ()
    assert request_needs(req(thinking={"type": "enabled", "budget_tokens": 1024})) == ("thinking",)
    assert request_needs(req(thinking={"type": "disabled"})) == ()
    assert request_needs(req(extra={"reasoning_effort": "low"})) == ("thinking",)
    assert request_needs(req(extra={"reasoning_effort": "none"})) == ()
    info = ProviderInfo(name="p", format="ollama", model_capabilities={"m": frozenset({"tools"})})
    assert missing(info, "m", ("vision", "tools", "thinking")) == ("vision", "thinking")
    assert missing(info, "unknown-model", ("vision",)) == ()


# -- routing ------------------------------------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "providers": [
        {"name": "ol", "format": "ollama", "base_url": OL},
        {"name": "cloud", "format": "openai", "base_url": CLOUD, "discover": False,
         "capabilities": ["completion", "vision", "tools"]},
        {"name": "free", "format": "openai", "base_url": FREE, "discover": False},
    ],
    "routers": [
        {"type": "prefix", "model_prefix": "local/", "provider": "ol", "rewrite_model": "qwen"},
        {"type": "prefix", "model_prefix": "local/", "provider": "ol", "rewrite_model": "llava"},
        {"type": "prefix", "model_prefix": "local/", "provider": "cloud", "rewrite_model": "gpt-v"},
        {"type": "prefix", "model_prefix": "free/", "provider": "free"},
    ],
}


@pytest.fixture
async def client(router: Any, mock_providers: MockProviders) -> Any:
    mock_providers.add_ollama(OL, capabilities={"qwen": ["completion", "tools"], "llava": ["completion", "vision"]})
    mock_providers.add_openai(CLOUD)
    mock_providers.add_openai(FREE)
    client = await router(CONFIG)
    await client.app[DISCOVERY].wait_ready()
    return client


@pytest.mark.parametrize(("extra", "content", "expected"), [
    ({}, "describe", ("ol", "qwen")),
    ({"tools": TOOLS}, "call f", ("ol", "qwen")),
    ({}, [{"type": "text", "text": "what is this"}, IMAGE], ("ol", "llava")),
    ({"tools": TOOLS}, [{"type": "text", "text": "what is this"}, IMAGE], ("cloud", "gpt-v")),
])
async def test_the_chain_falls_through_to_a_capable_candidate(client: Any, extra: dict[str, Any], content: Any,
                                                               expected: tuple[str, str]) -> None:
    body = {"model": "local/x", "messages": [{"role": "user", "content": content}], **extra}
    reply = await client.openai(body)
    assert reply.status == 200, reply.text
    assert (reply.headers["X-Router-Provider"], reply.headers["X-Router-Model"]) == expected


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_no_capable_candidate_is_a_400_naming_the_capability(client: Any, fmt: str) -> None:
    if fmt == "openai":
        reply = await client.openai(openai_chat("think hard", model="local/x", reasoning_effort="high"))
    else:
        reply = await client.anthropic(anthropic_message("think hard", model="local/x",
                                                         thinking={"type": "enabled", "budget_tokens": 2048}))
    assert reply.status == 400, reply.text
    message = reply.body["error"]["message"]
    assert "thinking" in message and "'qwen' on 'ol' lacks thinking" in message
    assert message.startswith("no provider for model 'local/x' has the capability this request needs: thinking")
    if fmt == "anthropic":
        assert reply.body["type"] == "error" and reply.body["error"]["type"] == "invalid_request_error"
    # The server keeps serving.
    assert (await client.openai(openai_chat("hi", model="local/x"))).status == 200


async def test_unknown_capabilities_are_permissive(client: Any) -> None:
    reply = await client.anthropic(anthropic_message("think", model="free/m",
                                                     thinking={"type": "enabled", "budget_tokens": 2048}))
    assert reply.status == 200 and reply.provider == "free"


async def test_a_rule_choosing_among_providers_is_asked_again_without_the_incapable_one(
        router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai("http://a.test/v1")
    mock_providers.add_openai("http://b.test/v1")
    client = await router({
        "providers": [
            {"name": "a", "format": "openai", "base_url": "http://a.test/v1", "discover": False, "quality": 90,
             "capabilities": ["completion"]},
            {"name": "b", "format": "openai", "base_url": "http://b.test/v1", "discover": False, "quality": 50,
             "model_capabilities": {"m": ["completion", "vision"]}},
        ],
        "routers": [{"type": "fallback", "providers": ["a", "b"], "quality_bias": 1.0}],
    })
    assert (await client.openai(openai_chat("hi", model="m"))).provider == "a"
    image = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, IMAGE]}]}
    assert (await client.openai(image)).provider == "b"
    reply = await client.openai({**image, "model": "other"})  # b's vision is only known for model m
    assert reply.provider == "b"  # unknown for 'other' on b: allowed
