"""Hook specifications: the contract between llmrouter and its plugins.

Every hook takes one argument, ``ctx`` (a :class:`llmrouter.Context`), so that new context fields
never break existing plugins. Implementations may be plain functions or coroutines; the router
awaits whatever is awaitable. Request-time hooks are dispatched by the router itself, in config
order (see ``docs/pipeline.md``); pluggy checks implementations against these specs and documents
them, while ``llmrouter.engine.registry`` loads plugins from the ``llmrouter`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from llmrouter.context import Context, Flow, Route, StreamTransformer

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
