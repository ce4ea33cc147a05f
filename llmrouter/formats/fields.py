"""Field checks for client request bodies: each returns the value with its type narrowed, or
raises :class:`InvalidRequest` naming the field's path (``messages[2].content``) and the problem."""

from __future__ import annotations

from typing import Any

from llmrouter.errors import InvalidRequest

_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
          dict: "an object"}


def invalid(path: str, message: str) -> InvalidRequest:
    """The error for the field at ``path`` (raise it)."""
    return InvalidRequest(f"{path}: {message}")


def kind_of(value: Any) -> str:
    """How a JSON value is named in an error message: ``a string``, ``an array``, ``null``..."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)


def require(obj: dict[str, Any], key: str, path: str) -> Any:
    """``obj[key]``; a missing key is ``field required`` at ``path``."""
    if key not in obj:
        raise invalid(path, "field required")
    return obj[key]


def string(value: Any, path: str, *, non_empty: bool = False) -> str:
    """A string (non-empty when asked)."""
    if not isinstance(value, str):
        raise invalid(path, f"expected a string, got {kind_of(value)}")
    if non_empty and not value:
        raise invalid(path, "must not be empty")
    return value


def obj(value: Any, path: str) -> dict[str, Any]:
    """A JSON object."""
    if not isinstance(value, dict):
        raise invalid(path, f"expected an object, got {kind_of(value)}")
    return value


def array(value: Any, path: str) -> list[Any]:
    """A JSON array."""
    if not isinstance(value, list):
        raise invalid(path, f"expected an array, got {kind_of(value)}")
    return value


def number(value: Any, path: str) -> float:
    """A number (booleans are not numbers here, unlike in Python)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(path, f"expected a number, got {kind_of(value)}")
    return float(value)


def integer(value: Any, path: str) -> int:
    """A whole number."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, f"expected an integer, got {kind_of(value)}")
    return value


def count_or_none(value: Any) -> int | None:
    """A count read leniently from a provider's reply: ``value`` if it is an integer (not a
    bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def count(value: Any) -> int:
    """A count read leniently from a provider's reply: ``value`` if it is an integer (not a
    bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def boolean(value: Any, path: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise invalid(path, f"expected a boolean, got {kind_of(value)}")
    return value


def rest(value: dict[str, Any], known: frozenset[str] | set[str]) -> dict[str, Any]:
    """The fields of ``value`` not in ``known`` (carried as ``extra`` to same-format providers)."""
    if value.keys() <= known:  # the usual case: nothing extra (a C-level check, no loop)
        return {}
    return {k: v for k, v in value.items() if k not in known}
