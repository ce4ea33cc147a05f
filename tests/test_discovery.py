"""Tests for provider model discovery: the per-format queries and the periodic refresher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx_aiohttp
import pytest
import respx

from llmrouter.config import ProviderConfig
from llmrouter.upstream.discovery import DiscoveryError, ModelDiscovery, discover_models


def provider(name: str = "p", fmt: str = "openai", base_url: str | None = "http://up.test/v1",
             **kwargs: Any) -> ProviderConfig:
    """A provider config with test defaults."""
    return ProviderConfig(name=name, format=fmt, base_url=base_url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client, closed after the test."""
    async with httpx.AsyncClient() as c:
        yield c


# ---------------------------------------------------------------------------------------------
# discover_models
# ---------------------------------------------------------------------------------------------


async def test_ollama_tags(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        route = mock.get("http://ollama.test:11434/api/tags").respond(json={"models": [
            {"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 1},
            {"model": "qwen3:0.6b"},
            {"name": "llama3.2:latest"},
        ]})
        models = await discover_models(client, provider(fmt="ollama", base_url="http://ollama.test:11434/"), None)
    assert models == ["llama3.2:latest", "qwen3:0.6b"]
    assert "authorization" not in route.calls.last.request.headers


async def test_openai_models_with_bearer_key(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        route = mock.get("http://up.test/v1/models").respond(json={"object": "list", "data": [
            {"id": "gpt-4o", "object": "model"}, {"id": "gpt-4o-mini", "object": "model"},
        ]})
        models = await discover_models(client, provider(headers={"X-Extra": "1"}), "sk-test")
    assert models == ["gpt-4o", "gpt-4o-mini"]
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-extra"] == "1"


async def test_openai_without_key_sends_no_auth(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        route = mock.get("http://up.test/v1/models").respond(json={"data": []})
        assert await discover_models(client, provider(), None) == []
    assert "authorization" not in route.calls.last.request.headers


async def test_anthropic_models_headers_and_pages(client: httpx.AsyncClient) -> None:
    pages = {
        None: {"data": [{"type": "model", "id": "claude-a"}], "has_more": True, "last_id": "claude-a"},
        "claude-a": {"data": [{"type": "model", "id": "claude-b"}], "has_more": False, "last_id": "claude-b"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("after_id")])

    with respx.mock(using="httpx") as mock:
        route = mock.get(url__startswith="https://api.anthropic.test/v1/models").mock(side_effect=answer)
        models = await discover_models(
            client, provider(fmt="anthropic", base_url="https://api.anthropic.test"), "sk-ant")
    assert models == ["claude-a", "claude-b"]
    request = route.calls.last.request
    assert request.headers["x-api-key"] == "sk-ant"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers


async def test_echo_returns_configured_models(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        models = await discover_models(client, provider(fmt="echo", base_url=None, models=["echo-1"]), None)
        assert not mock.calls
    assert models == ["echo-1"]


async def test_error_status_raises_naming_status(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        mock.get("http://up.test/v1/models").respond(401, json={"error": {"message": "bad key"}})
        with pytest.raises(DiscoveryError, match="401") as info:
            await discover_models(client, provider(name="cloud"), "k")
    assert "cloud" in str(info.value)
    assert "bad key" in str(info.value)


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"models": "x"}', b"[1, 2]", b'{"data": [{"x": 1}]}'])
async def test_unreadable_body_raises(client: httpx.AsyncClient, body: bytes) -> None:
    fmt, url = ("openai", "http://up.test/v1/models") if b"data" in body else ("ollama", "http://up.test/api/tags")
    base = "http://up.test/v1" if fmt == "openai" else "http://up.test"
    with respx.mock(using="httpx") as mock:
        mock.get(url).respond(200, content=body)
        with pytest.raises(DiscoveryError, match="unreadable"):
            await discover_models(client, provider(fmt=fmt, base_url=base), None)


async def test_connection_error_raises(client: httpx.AsyncClient) -> None:
    with respx.mock(using="httpx") as mock:
        mock.get("http://up.test/v1/models").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(DiscoveryError, match="refused"):
            await discover_models(client, provider(), None)


async def test_mock_intercepts_aiohttp_transport() -> None:
    """The production client uses httpx_aiohttp's transport; respx must still intercept it."""
    async with httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport()) as aio_client:
        with respx.mock(using="httpx") as mock:
            route = mock.get("http://ollama.test/api/tags").respond(json={"models": [{"name": "m1"}]})
            models = await discover_models(aio_client, provider(fmt="ollama", base_url="http://ollama.test"), None)
    assert models == ["m1"]
    assert route.called


# ---------------------------------------------------------------------------------------------
# ModelDiscovery
# ---------------------------------------------------------------------------------------------


async def test_refresh_queries_enabled_providers_concurrently(client: httpx.AsyncClient) -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json={"data": [{"id": request.url.host}]})

    providers = [
        (provider("a", base_url="http://a.test/v1"), None),
        (provider("b", base_url="http://b.test/v1"), "key"),
        (provider("off", base_url="http://off.test/v1", discover=False), None),
        (provider("e", fmt="echo", base_url=None, models=["echo-1"]), None),
    ]
    discovery = ModelDiscovery()
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        mock.get(url__regex=r"http://(a|b)\.test/v1/models").mock(side_effect=slow)
        off = mock.get("http://off.test/v1/models").respond(json={"data": [{"id": "x"}]})
        await discovery.refresh(client, providers)
    assert discovery.models == {"a": ("a.test",), "b": ("b.test",), "e": ("echo-1",)}
    assert peak == 2
    assert not off.called


async def test_failure_keeps_previous_list_and_warns(client: httpx.AsyncClient,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    providers = [(provider("flaky"), None), (provider("fine", base_url="http://fine.test/v1"), None)]
    discovery = ModelDiscovery()
    with respx.mock(using="httpx") as mock:
        flaky = mock.get("http://up.test/v1/models")
        flaky.respond(json={"data": [{"id": "m1"}]})
        mock.get("http://fine.test/v1/models").respond(json={"data": [{"id": "f1"}]})
        await discovery.refresh(client, providers)
        assert discovery.models["flaky"] == ("m1",)

        flaky.respond(503, text="overloaded")
        mock.get("http://fine.test/v1/models").respond(json={"data": [{"id": "f2"}]})
        with caplog.at_level(logging.WARNING, logger="llmrouter.upstream.discovery"):
            await discovery.refresh(client, providers)
    assert discovery.models == {"flaky": ("m1",), "fine": ("f2",)}
    warnings = [r for r in caplog.records if r.name == "llmrouter.upstream.discovery" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "flaky" in warnings[0].getMessage() and "503" in warnings[0].getMessage()


async def test_failure_without_previous_list_leaves_provider_absent(client: httpx.AsyncClient) -> None:
    discovery = ModelDiscovery()
    with respx.mock(using="httpx") as mock:
        mock.get("http://up.test/v1/models").mock(side_effect=httpx.ConnectError("down"))
        await discovery.refresh(client, [(provider("down"), None)])
    assert discovery.models == {}


async def wait_for_calls(route: respx.Route, count: int) -> None:
    """Wait (bounded) until ``route`` has been called ``count`` times."""
    async def poll() -> None:
        while route.call_count < count:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout=5)


async def test_periodic_refresh_and_clean_stop(client: httpx.AsyncClient) -> None:
    discovery = ModelDiscovery()
    answers = iter(range(1000))

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": f"m{next(answers)}"}]})

    with respx.mock(using="httpx") as mock:
        fast = mock.get("http://up.test/v1/models").mock(side_effect=answer)
        once = mock.get("http://once.test/v1/models").respond(json={"data": [{"id": "o"}]})
        discovery.start(client, [
            (provider("fast", discover_interval_s=0.01), None),
            (provider("once", base_url="http://once.test/v1", discover_interval_s=0), None),
        ])
        await discovery.wait_ready()
        assert set(discovery.models) == {"fast", "once"}
        await wait_for_calls(fast, 3)
        await discovery.stop()
        calls_at_stop = fast.call_count
        await asyncio.sleep(0.05)
    assert fast.call_count == calls_at_stop
    assert once.call_count == 1
    assert calls_at_stop >= 3
    # The last query may have been cancelled after it was answered but before it was stored.
    assert discovery.models["fast"] in {(f"m{calls_at_stop - 1}",), (f"m{calls_at_stop - 2}",)}
    assert discovery.models["once"] == ("o",)


async def test_stop_cancels_a_hanging_query(client: httpx.AsyncClient) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        return httpx.Response(200, json={"data": []})

    discovery = ModelDiscovery()
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        mock.get("http://up.test/v1/models").mock(side_effect=hang)
        discovery.start(client, [(provider("slow"), None)])
        await asyncio.wait_for(started.wait(), timeout=5)
        await asyncio.wait_for(discovery.stop(), timeout=1)
    assert discovery.models == {}


async def test_stop_without_start_and_twice_is_harmless(client: httpx.AsyncClient) -> None:
    discovery = ModelDiscovery()
    await discovery.stop()
    with respx.mock(using="httpx") as mock:
        mock.get("http://up.test/v1/models").respond(json={"data": [{"id": "a"}]})
        discovery.start(client, [(provider(discover_interval_s=0), None)])
        await discovery.wait_ready()
        await discovery.stop()
        await discovery.stop()
    assert discovery.models == {"p": ("a",)}


async def test_start_twice_is_an_error(client: httpx.AsyncClient) -> None:
    discovery = ModelDiscovery()
    discovery.start(client, [])
    try:
        with pytest.raises(RuntimeError):
            discovery.start(client, [])
    finally:
        await discovery.stop()


async def test_wait_ready_after_failures(client: httpx.AsyncClient) -> None:
    discovery = ModelDiscovery()
    with respx.mock(using="httpx") as mock:
        mock.get("http://up.test/v1/models").respond(500)
        discovery.start(client, [(provider(discover_interval_s=0), None)])
        await asyncio.wait_for(discovery.wait_ready(), timeout=5)
        await discovery.stop()
    assert discovery.models == {}
