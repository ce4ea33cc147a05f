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
    from llmrouter.context import Context, Flow, Route

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
