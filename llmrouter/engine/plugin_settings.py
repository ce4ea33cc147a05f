"""Binding plugin settings: validation at load, per-request overlays, request-settable keys.

Each loaded plugin gets a :class:`SettingsSpec` from its optional ``Settings`` model (see
:mod:`llmrouter.settings`). Config tables are validated once when the pipeline is built (errors are
:class:`~llmrouter.config.ConfigError` naming file, table and key); a request's ``plugins`` entry
is validated the same way when it arrives (:class:`~llmrouter.errors.InvalidRequest`, 400, naming
the key), and may only touch the keys the plugin marks request-settable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llmrouter.settings import REQUEST_SETTABLE, freeze, read_only_mapping


class SettingsProblem(ValueError):
    """Settings failed validation; ``str()`` is ``key 'x': problem`` (or just the problem)."""


def _frozen_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` itself when it is frozen and strict about keys, else a subclass that is."""
    config = model.model_config
    overrides: dict[str, Any] = {}
    if config.get("frozen") is not True:
        overrides["frozen"] = True
    if "extra" not in config:
        overrides["extra"] = "forbid"  # a typo in a config key must not pass silently
    if not overrides:
        return model
    return type(model.__name__, (model,), {"model_config": ConfigDict(**overrides),  # type: ignore[typeddict-item]
                                            "__module__": model.__module__, "__doc__": model.__doc__})


def _settable_fields(model: type[BaseModel]) -> set[str]:
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(REQUEST_SETTABLE):
            names.add(info.alias or name)
    return names


def _describe(exc: ValidationError, known: list[str]) -> str:
    """One line per problem: ``key 'a.b': message``."""
    problems = []
    # Unknown keys first: a typo usually also makes the key it misspells look missing.
    for err in sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            message = f"unknown key (known keys: {', '.join(known) or 'none'})"
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append(f"key {key!r}: {message}" if key else message)
    return "; ".join(problems)


@dataclass(frozen=True, slots=True)
class SettingsSpec:
    """How one plugin's settings are validated and which keys a request may overlay."""

    model: type[BaseModel] | None
    settable: frozenset[str]

    @classmethod
    def of(cls, plugin: Any) -> SettingsSpec:
        """The spec of ``plugin`` (a module or object), from its ``Settings`` and ``REQUEST_SETTABLE``.

        :raises TypeError: when ``Settings`` is not a pydantic model class.
        """
        model = getattr(plugin, "Settings", None)
        settable = set(getattr(plugin, "REQUEST_SETTABLE", ()) or ())
        if model is None:
            return cls(None, frozenset(settable))
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"'Settings' must be a pydantic model class, got {model!r}")
        return cls(_frozen_model(model), frozenset(settable | _settable_fields(model)))

    def known_keys(self) -> list[str]:
        """The keys the settings accept (empty when any key is accepted)."""
        if self.model is None:
            return []
        return [info.alias or name for name, info in self.model.model_fields.items()]

    def load(self, table: Mapping[str, Any]) -> Any:
        """Validate ``table``; return the frozen settings object (or a read-only mapping).

        :raises SettingsProblem: naming the key and the problem.
        """
        if self.model is None:
            return read_only_mapping(table)
        try:
            return freeze(self.model.model_validate(dict(table)))
        except ValidationError as exc:
            raise SettingsProblem(_describe(exc, self.known_keys())) from None

    def not_settable(self, overlay: Mapping[str, Any]) -> list[str]:
        """Keys of ``overlay`` a request is not allowed to set."""
        return [key for key in overlay if key not in self.settable]


def referenced_providers(settings: Any) -> list[str]:
    """The provider names a rule's settings declare (none for settings without the method)."""
    method = getattr(settings, "referenced_providers", None)
    return list(method()) if callable(method) else []


def referenced_models(settings: Any) -> list[tuple[str, str | None]]:
    """The ``(model, provider or None)`` pairs a rule's settings declare."""
    method = getattr(settings, "referenced_models", None)
    return [(m, p) for m, p in method()] if callable(method) else []


def _contains(value: Any, name: str) -> bool:
    if value == name:
        return True
    if isinstance(value, Mapping):
        return any(_contains(v, name) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_contains(v, name) for v in value)
    return False


def _key_holding(table: Mapping[str, Any], name: str) -> str | None:
    """The top-level key of ``table`` whose value is (or contains) ``name``, for error messages."""
    return next((key for key, value in table.items() if _contains(value, name)), None)


def check_references(label: str, settings: Any, table: Mapping[str, Any], configured: list[str]) -> None:
    """Fail when a rule refers to a provider that is not configured.

    :raises ConfigError: ``<label> key 'provider': unknown provider 'x' (configured: [...])``.
    """
    from llmrouter.config import ConfigError

    for name in referenced_providers(settings):
        if name not in configured:
            key = _key_holding(table, name)
            where = f"{label} key {key!r}" if key else label
            raise ConfigError(f"{where}: unknown provider {name!r} (configured: {sorted(configured)})")
