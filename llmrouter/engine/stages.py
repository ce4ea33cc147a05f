"""Running one stage's plugin hooks in order: the flow hooks (``on_start``, ``pre_request``,
``post_response``, ``on_end``) and the tag-returning classifiers.

Each runner is a plain function that calls the hooks one after another and returns the stage's
result at once while every hook answers at once (the usual case: most hooks are plain functions),
so the pipeline creates no coroutine per stage. The first hook that returns an awaitable hands the
rest of the stage to a coroutine, which the runner returns instead; the caller awaits it. Either
way the hooks run in the same order, see the same ``ctx`` fields and fail the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from llmrouter.context import Context, Flow
from llmrouter.engine.hooks import Hook, pending
from llmrouter.errors import PluginFailed, RouterError

log = logging.getLogger("llmrouter.engine.pipeline")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Step:
    """One plugin's implementation of one hook, with its validated settings and raw config table."""

    plugin_id: str
    function: Hook
    settings: Any
    config_settings: Any
    table: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


def run_flow_hooks(ctx: Context, steps: list[Step], fatal: bool, start: int = 0) -> bool | Awaitable[bool]:
    """Run the flow hooks ``steps[start:]`` in order; True if one returned STOP (or the awaitable of
    that answer, once a hook has returned an awaitable).

    ``fatal`` hooks (on_start, pre_request) fail the request on exceptions; the others log a
    warning and continue.
    """
    for index in range(start, len(steps)):
        step = steps[index]
        ctx.plugin_id, ctx.settings, ctx.config_settings = step.plugin_id, step.settings, step.config_settings
        had_response = ctx.response is not None
        try:
            result = step.function(ctx)
            if result is not None and pending(result):  # (most flow hooks return None)
                return _run_flow_rest(ctx, steps, fatal, index, result, had_response)
            if not had_response and ctx.response is not None:
                ctx.mark_modified(step.plugin_id)
        except Exception as exc:
            _hook_failed(step, exc, fatal)
            continue
        finally:
            ctx.plugin_id = None
        if result is Flow.STOP:
            ctx.stopped_by = step.plugin_id
            return True
    return False


async def _run_flow_rest(ctx: Context, steps: list[Step], fatal: bool, index: int, result: Any,
                         had_response: bool) -> bool:
    """:func:`run_flow_hooks` from ``steps[index]``, whose hook returned the awaitable ``result``."""
    step = steps[index]
    ctx.plugin_id, ctx.settings, ctx.config_settings = step.plugin_id, step.settings, step.config_settings
    try:
        result = await result
        if not had_response and ctx.response is not None:
            ctx.mark_modified(step.plugin_id)
    except Exception as exc:
        _hook_failed(step, exc, fatal)
        result = None
    finally:
        ctx.plugin_id = None
    if result is Flow.STOP:
        ctx.stopped_by = step.plugin_id
        return True
    rest = run_flow_hooks(ctx, steps, fatal, index + 1)
    return rest if type(rest) is bool else await rest


def _hook_failed(step: Step, exc: Exception, fatal: bool) -> None:
    """A flow hook raised ``exc`` (called while it is being handled): for a ``fatal`` stage the
    request fails (a :class:`RouterError` as it is, anything else as :class:`PluginFailed`); for the
    others a warning is logged and the stage goes on."""
    if isinstance(exc, RouterError):
        if fatal:
            raise exc
        log.warning("plugin %r raised in a late hook; continuing", step.plugin_id, exc_info=True)
        return
    if fatal:
        raise PluginFailed(f"plugin '{step.plugin_id}' failed: {describe_failure(exc)}") from exc
    log.warning("plugin %r failed: %s; continuing", step.plugin_id, exc, exc_info=True)


def collect_tags(ctx: Context, steps: list[Step], initial: list[str], what: str) -> list[str] | Awaitable[list[str]]:
    """Tags from tag-returning hooks (classifiers) after ``initial``, merged in order and
    de-duplicated (a new list); a hook that raises is logged and skipped. The awaitable of that
    list once a hook has returned an awaitable."""
    tags: list[str] | None = None  # (built once a hook returns tags)
    for index, step in enumerate(steps):
        ctx.plugin_id, ctx.settings, ctx.config_settings = step.plugin_id, step.settings, step.config_settings
        try:
            result = step.function(ctx)
            if type(result) is not list and pending(result):  # (most classifiers return a list)
                return _collect_rest(ctx, steps, index, result, list(initial) if tags is None else tags, what)
            if result:
                if tags is None:
                    tags = list(initial)
                tags.extend([result] if isinstance(result, str) else (str(tag) for tag in result))
        except Exception as exc:
            log.warning("%s %r failed: %s; skipped", what, step.plugin_id, exc)
        finally:
            ctx.plugin_id = None
    if tags is None:
        return list(dict.fromkeys(initial)) if initial else []
    return list(dict.fromkeys(tags))


def classify_request(ctx: Context, steps: list[Step]) -> Awaitable[None] | None:
    """The classify stage: the request's tags with those of the classifiers ``steps`` added. None
    once done, or the awaitable that finishes it when a classifier answers through one."""
    tags = collect_tags(ctx, steps, ctx.request.tags, "classifier")
    if type(tags) is not list:
        return _set_tags_after(ctx, tags)  # type: ignore[arg-type]
    _set_tags(ctx, tags)
    return None


async def _set_tags_after(ctx: Context, tags: Awaitable[list[str]]) -> None:
    _set_tags(ctx, await tags)


def _set_tags(ctx: Context, tags: list[str]) -> None:
    if tags != ctx.request.tags:  # (an assignment re-validates the list: skipped when nothing changes)
        ctx.request.tags = tags


async def _collect_rest(ctx: Context, steps: list[Step], index: int, result: Any, tags: list[str],
                        what: str) -> list[str]:
    """:func:`collect_tags` from ``steps[index]``, whose hook returned the awaitable ``result``."""
    step = steps[index]
    ctx.plugin_id, ctx.settings, ctx.config_settings = step.plugin_id, step.settings, step.config_settings
    try:
        result = await result
        if result:
            tags.extend([result] if isinstance(result, str) else (str(tag) for tag in result))
    except Exception as exc:
        log.warning("%s %r failed: %s; skipped", what, step.plugin_id, exc)
    finally:
        ctx.plugin_id = None
    rest = collect_tags(ctx, steps[index + 1:], tags, what)
    return rest if type(rest) is list else await rest  # type: ignore[misc]


def describe_failure(exc: Exception) -> str:
    """A plugin's exception in one line; a rejected assignment names the model and field, e.g.
    ``invalid ChatRequest.system: Input should be a valid list (got int)``."""
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            got = type(error["input"]).__name__
            problems.append(f"invalid {exc.title}.{where}: {error['msg']} (got {got})")
        return "; ".join(problems)
    return str(exc)
