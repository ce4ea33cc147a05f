"""Hook specifications: the contract between llmrouter and its plugins.

Every request-time hook takes one argument, ``ctx`` (a :class:`llmrouter.Context`), so that new
context fields never break existing plugins. The registration hooks (``register_*``) are called
once at start-up instead, and take no context. Implementations may be plain functions or coroutines; the router
awaits whatever is awaitable. Request-time hooks are dispatched by the router itself, in config
order (see ``docs/pipeline.md``); pluggy checks implementations against these specs and documents
them, while ``llmrouter.engine.registry`` loads plugins from the ``llmrouter`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    from aiohttp.web import AbstractRouteDef

    from llmrouter.context import Context, Flow, Route, StreamTransformer
    from llmrouter.formats.provider import ProviderFormat

hookspec = pluggy.HookspecMarker("llmrouter")
hookimpl = pluggy.HookimplMarker("llmrouter")


@hookspec
def on_start(ctx: Context) -> Flow | None:
    """Called first, with ``ctx.request`` exactly as the client sent it (already canonical).

    May mutate ``ctx.request`` or answer by setting ``ctx.response``.

    :return: ``Flow.STOP`` to skip classification, ``pre_request``, routing and the provider (then
        ``ctx.response`` must be set, else the request fails with 500), or ``Flow.CONTINUE``/``None``.
        A response set here, even with CONTINUE, also skips routing and the provider.
    :raises: any exception fails the request with 500 ``plugin '<id>' failed: <message>``.
    """


@hookspec
def classify(ctx: Context) -> Iterable[str] | None:
    """Return tags for the request (e.g. ``["code", "vision"]``) or ``None``.

    Called for classifiers enabled in ``[classifiers.<id>]`` (or named in the request's
    ``plugins``). Tags from all classifiers are merged in config order, de-duplicated, into
    ``ctx.request.tags``. A classifier that raises is logged and skipped; it never fails a request.
    """


@hookspec
def pre_request(ctx: Context) -> Flow | None:
    """Called after classification, before routing.

    May mutate ``ctx.request``, set ``ctx.request.forced_provider`` to bypass the router chain, or
    answer by setting ``ctx.response``.

    :return: ``Flow.STOP``/``Flow.CONTINUE``/``None`` with the same meaning as for :func:`on_start`.
    :raises: any exception fails the request with 500 ``plugin '<id>' failed: <message>``.
    """


@hookspec
def route(ctx: Context) -> Route | None:
    """Pick a provider for the request, or pass.

    Called once for each ``[[routers]]`` rule whose ``type`` is this plugin's id, in chain order,
    with ``ctx.settings`` set to that rule's table. The first rule returning a :class:`Route` wins.

    :return: ``Route(provider, model=None)`` (``model`` rewrites the model sent upstream) or
        ``None`` to pass to the next rule.
    """


@hookspec
def post_response(ctx: Context) -> Flow | None:
    """Called once ``ctx.response`` exists (from a provider or a plugin). May replace or edit it.

    Plugins that change the reply should call ``ctx.mark_modified()`` so the log records it.

    :return: ``Flow.STOP`` skips the remaining ``post_response`` hooks and all ``on_end`` hooks;
        ``Flow.CONTINUE``/``None`` continues. An exception is logged as a warning and treated as
        CONTINUE.
    """


@hookspec
def on_end(ctx: Context) -> Flow | None:
    """Called last, before the exchange is logged; ``ctx.response`` or ``ctx.error`` is set.

    :return: ``Flow.STOP`` skips the remaining ``on_end`` hooks; ``Flow.CONTINUE``/``None``
        continues. An exception is logged as a warning and treated as CONTINUE.
    """


@hookspec
def classify_response(ctx: Context) -> Iterable[str] | None:
    """Return tags for the reply (e.g. ``["refusal"]``) or ``None``.

    Called for response classifiers enabled in ``[response_classifiers.<id>]``, once
    ``ctx.response`` holds the reply as the client receives it: after ``post_response`` for a
    non-streaming reply, after the last byte (and before ``post_response``) for a streamed one.
    Tags from all response classifiers are merged in config order, de-duplicated, into
    ``ctx.response_tags``; they reach the ``complete`` event and the log as ``response_tags`` and
    non-streaming replies as the ``X-Router-Response-Tags`` header. ``on_end`` sees them. A
    response classifier that raises is logged and skipped; it never fails a request.
    """


@hookspec
def stream_transformer(ctx: Context) -> StreamTransformer | None:
    """Return an object transforming this streamed reply, or ``None`` to leave it alone.

    Called once per streamed reply, for enabled plugins in config order, before the first event
    reaches the client. The object (see :class:`llmrouter.StreamTransformer`) gets every canonical
    stream event through ``feed(event)`` and returns the events to pass on (the same event, a
    replacement, several, or none to hold or drop it); ``finish()`` is called once after the last
    event and returns any events still held. Transformers chain: what the first returns is fed to
    the second. Returning ``None`` costs the stream nothing. An exception here is logged and the
    plugin is skipped for this stream; an exception in ``feed``/``finish`` ends the stream with an
    error event ``plugin '<id>' failed: <message>``.
    """


@hookspec
def register_provider_formats() -> Iterable[ProviderFormat]:
    """Add provider wire formats, usable as ``format = "<name>"`` in ``[[providers]]``.

    Called once at start-up for every loaded plugin (the built-in ``formats`` plugin first).

    :return: an iterable of :class:`llmrouter.ProviderFormat` instances, each with a unique ``name``,
        or ``None``. A name already registered is ignored with a warning; an exception (or something
        that is not a named ``ProviderFormat``) drops this plugin's formats, and a provider configured
        with one of them fails startup with ``unknown format`` naming the plugin's problem.
    """


@hookspec
def register_routes() -> Iterable[AbstractRouteDef]:
    """Add HTTP endpoints to the router's aiohttp application.

    Called once when the app is built, for every loaded plugin. The routes sit behind the same
    middlewares as the built-in ones (inbound API key, error shape) and the same body-size limit.

    :return: an iterable of aiohttp route definitions (``aiohttp.web.get("/path", handler)``, ...),
        or ``None``. An exception, or a route clashing with an existing one, fails startup naming the
        plugin.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``llmrouter`` command line (click), e.g. ``@cli.command()``.

    Called once, the first time the CLI resolves a command, for every loaded plugin. ``cli`` is a
    staging group: its commands are added to ``llmrouter`` unless a command of that name exists
    (then skipped with a warning).

    :return: nothing (``None``). An exception is logged as a warning and the plugin's commands are skipped.
    """
