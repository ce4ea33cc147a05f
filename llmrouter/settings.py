"""Typed, read-only plugin settings.

A plugin module (or object) may define ``Settings``, a pydantic model. Its config table
(``[plugins.<id>]``, ``[classifiers.<id>]`` or one ``[[routers]]`` entry minus ``type``) is
validated against it once, at load, and ``ctx.settings`` is then that instance, frozen all the way
down: assigning an attribute raises, and lists and dicts inside it are read-only
(:class:`FrozenList`, :class:`FrozenDict`). A plugin without ``Settings`` gets a read-only mapping.

Subclass :class:`PluginSettings` for the conventional behaviour (unknown keys rejected, frozen),
mark the fields a request may overlay with :func:`request_settable`, and, for router rules, say
which providers and models the rule refers to (:meth:`PluginSettings.referenced_providers`,
:meth:`PluginSettings.referenced_models`) so ``llmrouter check`` and ``/v1/models`` know them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field

REQUEST_SETTABLE = "request_settable"

__all__ = ["FrozenDict", "FrozenList", "PluginSettings", "freeze", "request_settable"]


def _read_only(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"plugin settings are read-only ({type(self).__name__})")


class FrozenList(list):  # type: ignore[type-arg]
    """A list that refuses every change (a ``list`` still, so pydantic serialises it as one)."""

    __slots__ = ()
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that refuses every change (a ``dict`` still, so pydantic serialises it as one)."""

    __slots__ = ()
    pop = popitem = clear = update = setdefault = _read_only
    __setitem__ = __delitem__ = __ior__ = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))


def freeze(value: Any) -> Any:
    """``value`` made read-only all the way down: lists, tuples, sets and dicts are replaced by frozen
    copies, and pydantic models have their fields frozen in place (they must be frozen models)."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            current = value.__dict__.get(name)
            frozen = freeze(current)
            if frozen is not current:
                value.__dict__[name] = frozen  # bypasses the frozen model's __setattr__, once, at load
        return value
    if isinstance(value, FrozenList | FrozenDict | MappingProxyType):
        return value
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    return value


def read_only_mapping(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """The settings of a plugin without ``Settings``: a read-only view of frozen values."""
    return MappingProxyType({key: freeze(value) for key, value in table.items()})


def request_settable(default: Any = ..., **kwargs: Any) -> Any:
    """A pydantic ``Field`` that a request's ``plugins`` entry may overlay.

    ``tier: str | None = request_settable(None, description="...")`` is ``Field(None, ...)`` marked
    with ``json_schema_extra={"request_settable": True}``; fields without the mark are config-only.
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[REQUEST_SETTABLE] = True
    return Field(default, json_schema_extra=extra, **kwargs)


class PluginSettings(BaseModel):
    """Base class for a plugin's ``Settings``: unknown keys are errors and instances are frozen.

    Router rules override :meth:`referenced_providers` and :meth:`referenced_models`; the defaults
    say the settings refer to nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def referenced_providers(self) -> Iterable[str]:
        """Provider names these settings name; ``llmrouter check`` fails on any that is not configured."""
        return ()

    def referenced_models(self) -> Iterable[tuple[str, str | None]]:
        """``(model, provider or None)`` pairs these settings may send upstream, listed by ``/v1/models``."""
        return ()
