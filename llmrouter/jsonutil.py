"""Fast JSON helpers built on orjson, used on the hot path instead of the standard library."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Serialise ``value`` to compact UTF-8 JSON bytes (non-str dict keys allowed)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def dumps_str(value: Any) -> str:
    """Serialise ``value`` to a compact JSON string."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raises :class:`orjson.JSONDecodeError` (a ``ValueError``) when invalid."""
    return orjson.loads(data)


def loads_object_or_none(text: str) -> dict[str, Any] | None:
    """Parse ``text`` as a JSON object, or return ``None`` if it is not valid JSON or not an object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
