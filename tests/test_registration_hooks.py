"""Registration hooks, called once at start-up: provider formats, routes and commands (issue 11, section 2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
import httpx
import pytest
from aiohttp import web
from click.testing import CliRunner

from llmrouter import (
    ChatRequest,
    ChatResponse,
    Context,
    ProviderFormat,
    SSEStreamDecoder,
    StreamEvent,
    TextPart,
    hookimpl,
    response_to_events,
)
from llmrouter.cli.main import PluginCommands
from llmrouter.config import ConfigError
from llmrouter.engine.registry import collect_provider_formats, load_entry_point_plugins
from llmrouter.jsonutil import loads
from llmrouter.testing import decode_stream, drive_provider_format, make_config, openai_chat
from llmrouter_plugins import formats


class ShoutDecoder(SSEStreamDecoder):
    """Each frame is ``{"said": "..."}``; the stream ends with ``[DONE]``."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        if payload != "[DONE]":
            self.text.append(loads(payload)["said"])

    def close(self) -> list[StreamEvent]:
        self._flush()
        return response_to_events(ChatResponse(model="shout", content=[TextPart(text="".join(self.text))]))


class ShoutFormat(ProviderFormat):
    """A toy wire format: ``POST {base}/shout/{model}`` with ``{"say": text}``; key in ``x-shout-key``."""

    name = "shout"

    def url(self, base_url: str, model: str, *, stream: bool) -> str:
        return f"{base_url}/shout/{model}" + ("?stream=1" if stream else "")

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-shout-key": api_key}

    def body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        return self.build_request(request, model)

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        return {"say": request.last_user_text()}

    def parse_response(self, body: Any) -> ChatResponse:
        if not isinstance(body, dict) or "said" not in body:
            raise ValueError("no 'said'")
        return ChatResponse(model="shout", content=[TextPart(text=body["said"])])

    def stream_decoder(self) -> ShoutDecoder:
        return ShoutDecoder()


class ShoutPlugin:
    """Adds the ``shout`` format, a ``/shout/stats`` route and a ``shout`` command."""

    def __init__(self) -> None:
        self.calls = {"formats": 0, "routes": 0}

    @hookimpl
    def register_provider_formats(self) -> Iterable[ProviderFormat]:
        self.calls["formats"] += 1
        return [ShoutFormat()]

    @hookimpl
    def register_routes(self) -> Iterable[web.AbstractRouteDef]:
        self.calls["routes"] += 1

        async def stats(request: web.Request) -> web.Response:
            return web.json_response({"shouting": True})

        return [web.get("/shout/stats", stats)]

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("shout")
        @click.argument("text")
        def shout(text: str) -> None:
            """Print TEXT loudly."""
            click.echo(text.upper())

        @cli.command("check")  # clashes with a built-in: must be skipped
        def not_check() -> None:
            click.echo("hijacked")


SHOUT_CONFIG = {"providers": [{"name": "loud", "format": "shout", "base_url": "http://shout.test",
                               "api_key_env": "SHOUT_KEY"}], "routers": [{"type": "fallback"}]}


async def test_a_plugin_format_is_served_end_to_end(router: Any, mock_providers: Any) -> None:
    plugin = ShoutPlugin()
    route = mock_providers.mock.post("http://shout.test/shout/m").respond(json={"said": "HELLO"})
    client = await router(SHOUT_CONFIG, plugins={"shout": plugin}, environ={"SHOUT_KEY": "shout-key-1"})
    reply = await client.openai(openai_chat("hello", model="m"))
    assert reply.status == 200, reply.text
    assert reply.body["choices"][0]["message"]["content"] == "HELLO"
    assert route.calls[0].request.headers["x-shout-key"] == "shout-key-1"
    assert loads(route.calls[0].request.content) == {"say": "hello"}
    health = await (await client.client.get("/health")).json()
    assert health["providers"]["loud"]["format"] == "shout"
    # The router owns errors and retries: a 500 is retried, then surfaces as 502 naming the provider.
    mock_providers.mock.post("http://shout.test/shout/down").respond(500, json={"error": "boom"})
    reply = await client.openai(openai_chat("hello", model="down"))
    assert reply.status == 502 and "provider 'loud' returned 500: boom" in reply.body["error"]["message"]
    assert plugin.calls == {"formats": 1, "routes": 1}  # once at start-up, not per request


async def test_the_testing_helpers_drive_a_format() -> None:
    run = await drive_provider_format(ShoutFormat(), ChatRequest(model="m", messages=[]), [b'data: {"said": "a"}\n',
                                      b'\ndata: {"said": "b"}\n\ndata: [DONE]\n\n'], stream=True)
    assert str(run.sent.url) == "http://upstream.test/shout/model?stream=1"
    assert "".join(e.text for e in run.events if e.type == "block_delta") == "ab"
    assert decode_stream(ShoutFormat(), [b'data: {"said": "x"}\n\n'])[2].text == "x"


async def test_plugin_routes_sit_behind_the_routers_auth(router: Any) -> None:
    config = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}],
              "server": {"api_key_env": "RK"}}
    client = await router(config, plugins={"shout": ShoutPlugin()}, environ={"RK": "router-key-1"})
    assert (await client.client.get("/shout/stats")).status == 401
    resp = await client.client.get("/shout/stats", headers={"x-api-key": "router-key-1"})
    assert (resp.status, await resp.json()) == (200, {"shouting": True})


async def test_a_route_clashing_with_a_builtin_fails_startup(router: Any) -> None:
    class Clash:
        @hookimpl
        def register_routes(self) -> Iterable[web.AbstractRouteDef]:
            async def handler(request: web.Request) -> web.Response:
                return web.Response(text="mine")

            return [web.get("/health", handler)]

    with pytest.raises(ConfigError, match="plugin 'clash': register_routes failed"):
        await router({"providers": [{"name": "echo", "format": "echo"}]}, plugins={"clash": Clash()})


def test_formats_are_validated_and_duplicates_ignored() -> None:
    class Dup:
        @hookimpl
        def register_provider_formats(self) -> Iterable[ProviderFormat]:
            return [ShoutFormat(), formats.OpenAIProviderFormat()]

    class Bad:
        @hookimpl
        def register_provider_formats(self) -> Iterable[ProviderFormat]:
            return ["not a format"]  # type: ignore[list-item]

    registry = load_entry_point_plugins()
    registry.register(Dup(), "aaa-dup")  # sorts before the built-in "formats" plugin, which still wins
    registry.register(Bad(), "bad")
    found, problems = collect_provider_formats(registry)
    assert found["openai"] is formats.BUILTIN_FORMATS[0] and found["shout"].name == "shout"
    assert problems["aaa-dup"] == "format 'openai' is already registered by plugin 'formats'"
    assert problems["bad"].startswith("register_provider_formats failed: TypeError")
    config = make_config({"providers": [{"name": "x", "format": "bad-format", "base_url": "http://x"}]})
    from llmrouter.engine.validate import validate_config

    with pytest.raises(ConfigError, match=r"unknown format 'bad-format' \(registered: anthropic, echo, [a-z, -]*"
                                          r"openai-responses, shout\); plugin 'aaa-dup'.*plugin 'bad': register_provider"):
        validate_config(config, registry, environ={})


def test_builtin_formats_register_through_the_hook() -> None:
    names = [f.name for f in formats.register_provider_formats()]
    assert names == ["openai", "openai-responses", "anthropic", "ollama", "echo"]
    assert load_entry_point_plugins().records["formats"].hooks == ("register_provider_formats",)


def test_commands_are_added_without_replacing_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = ShoutPlugin()
    real = load_entry_point_plugins

    def with_shout(*args: Any, **kwargs: Any) -> Any:
        registry = real(*args, **kwargs)
        registry.register(plugin, "shout")
        return registry

    monkeypatch.setattr("llmrouter.engine.registry.load_entry_point_plugins", with_shout)
    from llmrouter.cli.main import check, plugins, serve

    group = PluginCommands(commands={"check": check, "plugins": plugins, "serve": serve})
    result = CliRunner().invoke(group, ["shout", "hey"])
    assert (result.exit_code, result.output) == (0, "HEY\n")
    assert group.commands["check"] is check  # the plugin's "check" was skipped
    assert {"check", "plugins", "serve", "shout"} <= set(group.list_commands(click.Context(group)))


async def test_provider_request_uses_format_url_per_model() -> None:
    import respx

    from llmrouter.config import ProviderConfig
    from llmrouter.upstream.providers import Provider

    provider = Provider(ProviderConfig(name="p", format="shout", base_url="http://s.test/"), "k", ShoutFormat())
    with respx.mock(using="httpx") as mock:
        route = mock.post(url__startswith="http://s.test/").respond(200, text="")
        async with httpx.AsyncClient() as http:
            response = await provider._post(http, {"say": "x"}, ChatRequest(model="a", messages=[]), "model-b", True)
            await response.aclose()
        req = route.calls.last.request
    assert str(req.url) == "http://s.test/shout/model-b?stream=1"
    assert req.headers["host"] == "s.test" and req.headers["x-shout-key"] == "k"
    assert isinstance(req, httpx.Request)


def test_context_is_untouched_by_registration_hooks() -> None:
    # Registration hooks take no ctx: the Context type stays the request-time contract.
    assert "ctx" not in ShoutPlugin.register_routes.__code__.co_varnames
    assert Context.__dataclass_fields__["settings"].name == "settings"
