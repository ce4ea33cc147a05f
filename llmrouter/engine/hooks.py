"""Calling plugin hook implementations: plain functions and coroutines alike (call the hook, then
await its result when :func:`pending` says so)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from llmrouter.context import Context, Flow, Route

Hook = Callable[[Context], Any]
"""A hook implementation: takes the request's :class:`~llmrouter.context.Context`."""

_PLAIN: frozenset[type] = frozenset({Route, Flow, list, tuple, str, bool})
"""What hooks return most often, none of it awaitable (told apart without the ABC check)."""


def pending(result: Any) -> bool:
    """Whether a hook's ``result`` must be awaited (a coroutine or another awaitable)."""
    if result is None or type(result) in _PLAIN:
        return False
    return type(result) is CoroutineType or inspect.isawaitable(result)
