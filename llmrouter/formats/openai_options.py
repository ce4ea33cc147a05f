"""The options of an OpenAI Chat Completions request besides its messages, checked and converted to
their canonical values (tools, tool choice, response format, stop sequences, request plugins); every
problem a 400 naming the field's path."""

from __future__ import annotations

from typing import Any

from llmrouter.formats.fields import array as _array
from llmrouter.formats.fields import boolean as _boolean
from llmrouter.formats.fields import invalid as _fail
from llmrouter.formats.fields import obj as _object
from llmrouter.formats.fields import require as _require
from llmrouter.formats.fields import rest as _rest
from llmrouter.formats.fields import string as _string
from llmrouter.models import ResponseFormat, Tool, ToolChoice

_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})


def function_of(raw: dict[str, Any], path: str, what: str) -> tuple[dict[str, Any], str]:
    """The ``function`` object of the tool or tool call ``raw`` at ``path`` (``what`` names it in
    errors) and that function's non-empty ``name``; ``raw``'s ``type`` must be ``function`` (the
    default)."""
    kind = raw.get("type", "function")
    if kind != "function":
        raise _fail(f"{path}.type", f"unsupported {what} type {kind!r}")
    function = _object(_require(raw, "function", f"{path}.function"), f"{path}.function")
    name = _string(_require(function, "name", f"{path}.function.name"), f"{path}.function.name", non_empty=True)
    return function, name


def parse_tools(raw_tools: Any) -> list[Tool]:
    """The ``tools`` list as canonical tools."""
    tools = []
    for i, raw in enumerate(_array(raw_tools, "tools")):
        path = f"tools[{i}]"
        function, name = function_of(_object(raw, path), path, "tool")
        description = function.get("description")
        if description is not None:
            _string(description, f"{path}.function.description")
        parameters = function.get("parameters")
        schema = (
            {"type": "object", "properties": {}}
            if parameters is None
            else _object(parameters, f"{path}.function.parameters")
        )
        if function.get("strict") is not None:
            _boolean(function["strict"], f"{path}.function.strict")
        tools.append(
            Tool(
                name=name,
                description=description,
                input_schema=schema,
                extra=_rest(function, _FUNCTION_KEYS),
            )
        )
    return tools


def tool_ok(raw: Any) -> bool:
    """Whether :func:`_tools` converts ``raw`` without fail (plain type checks, as for messages)."""
    function = raw.get("function") if type(raw) is dict and raw.get("type", "function") == "function" else None
    if type(function) is not dict:
        return False
    name, description = function.get("name"), function.get("description")
    parameters, strict = function.get("parameters"), function.get("strict")
    return (type(name) is str and bool(name) and (description is None or type(description) is str)
            and (parameters is None or type(parameters) is dict) and (strict is None or type(strict) is bool))


def parse_tool_choice(raw: Any) -> ToolChoice:
    """``tool_choice`` as a canonical tool choice."""
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise _fail(
                "tool_choice", f"expected 'auto', 'none', 'required' or a function object, got {raw!r}"
            )
        return ToolChoice(type=raw)  # type: ignore[arg-type]
    raw = _object(raw, "tool_choice")
    if raw.get("type") != "function":
        raise _fail("tool_choice.type", f"unsupported tool_choice type {raw.get('type')!r}")
    function = _object(_require(raw, "function", "tool_choice.function"), "tool_choice.function")
    name = _string(
        _require(function, "name", "tool_choice.function.name"), "tool_choice.function.name", non_empty=True
    )
    return ToolChoice(type="tool", name=name)


def parse_response_format(raw: Any) -> ResponseFormat | None:
    """``response_format`` as a canonical response format (``None`` for plain text)."""
    raw = _object(raw, "response_format")
    kind = _require(raw, "type", "response_format.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind != "json_schema":
        raise _fail("response_format.type", f"unknown response format type {kind!r}")
    spec = _object(_require(raw, "json_schema", "response_format.json_schema"), "response_format.json_schema")
    name = spec.get("name")
    schema = spec.get("schema")
    strict = spec.get("strict")
    return ResponseFormat(
        type="json_schema",
        name=None if name is None else _string(name, "response_format.json_schema.name"),
        schema=None if schema is None else _object(schema, "response_format.json_schema.schema"),
        strict=None if strict is None else _boolean(strict, "response_format.json_schema.strict"),
    )


def parse_stop(raw: Any) -> list[str]:
    """``stop`` (a string or a list of strings) as a list."""
    if isinstance(raw, str):
        return [raw]
    return [_string(item, f"stop[{i}]") for i, item in enumerate(_array(raw, "stop"))]


def parse_plugins(raw: Any) -> list[dict[str, Any]]:
    """The ``plugins`` entries (objects with a string ``id``)."""
    plugins = []
    for i, entry in enumerate(_array(raw, "plugins")):
        entry = _object(entry, f"plugins[{i}]")
        _string(_require(entry, "id", f"plugins[{i}].id"), f"plugins[{i}].id", non_empty=True)
        plugins.append(entry)
    return plugins
