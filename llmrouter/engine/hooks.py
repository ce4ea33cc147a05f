"""Calling plugin hook implementations: plain functions and coroutines alike."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from llmrouter.context import Context

Hook = Callable[[Context], Any]
"""A hook implementation: takes the request's :class:`~llmrouter.context.Context`."""


async def call_hook(function: Hook, ctx: Context) -> Any:
    """Call a hook implementation, awaiting the result when it is awaitable."""
    result = function(ctx)
    if result is None:  # most hooks, most of the time: no awaitable check needed
        return None
    if type(result) is CoroutineType or inspect.isawaitable(result):
        result = await result
    return result
