"""Plugin ``gemini``: adds the ``gemini`` provider format, a route and a command.

Everything here is contributed through the registration hooks, called once at start-up; the
plugin needs no config table. Use the format in a provider::

    [[providers]]
    name = "gemini"
    format = "gemini"
    base_url = "https://generativelanguage.googleapis.com"
    api_key_env = "GEMINI_API_KEY"

then ``GET /gemini/providers`` lists the Gemini providers (behind the router's inbound key, like
every route), and ``llmrouter gemini-body "a prompt"`` prints the body the format would send.
"""

from __future__ import annotations

from collections.abc import Iterable

import click
from aiohttp import web
from llmrouter import ChatRequest, Message, ProviderFormat, TextPart, hookimpl
from llmrouter.jsonutil import dumps_str
from llmrouter.plugin_http import provider_infos

from llmrouter_gemini.format import GeminiFormat

FORMAT = GeminiFormat()


@hookimpl
def register_provider_formats() -> Iterable[ProviderFormat]:
    """The ``gemini`` format."""
    return [FORMAT]


async def gemini_providers(request: web.Request) -> web.Response:
    """``GET /gemini/providers``: each provider speaking ``gemini``, with its known models."""
    infos = provider_infos(request)
    rows = [{"name": info.name, "models": list(info.models), "healthy": info.healthy}
            for info in infos.values() if info.format == FORMAT.name]
    return web.json_response({"providers": rows})


@hookimpl
def register_routes() -> Iterable[web.AbstractRouteDef]:
    """``GET /gemini/providers``."""
    return [web.get("/gemini/providers", gemini_providers)]


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``llmrouter gemini-body PROMPT [--model M] [--system S]``."""

    @cli.command("gemini-body")
    @click.argument("prompt")
    @click.option("--model", default="gemini-2.5-flash", show_default=True, help="The model named in the URL.")
    @click.option("--system", default=None, help="A system prompt.")
    @click.option("--stream", is_flag=True, help="Show the streaming URL.")
    def gemini_body(prompt: str, model: str, system: str | None, stream: bool) -> None:
        """Print the URL and JSON body the gemini format sends for PROMPT."""
        request = ChatRequest(model=model, messages=[Message(role="user", content=[TextPart(text=prompt)])],
                              system=[TextPart(text=system)] if system else None)
        click.echo("POST " + FORMAT.url("{base_url}", model, stream=stream))
        click.echo(dumps_str(FORMAT.body(request, model, stream=stream)))
