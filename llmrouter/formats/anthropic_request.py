"""Anthropic Messages requests as a client sends them, parsed into a canonical
:class:`~llmrouter.models.ChatRequest` (every problem a 400 naming the field's path)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from multidict import CIMultiDictProxy

from llmrouter import lazy as lazy_module
from llmrouter.errors import InvalidRequest
from llmrouter.formats.anthropic_documents import fallback_text as _fallback_text
from llmrouter.formats.checked import checked_message, checked_request, checked_text
from llmrouter.formats.gate import Gated
from llmrouter.lazy import Convert, LazyConversation, LazyList, defer
from llmrouter.models import (
    ChatRequest,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
)

OPAQUE_BLOCK_TYPES = frozenset({
    "document", "search_result",
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
    "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "advisor_tool_result",
    "mcp_tool_use", "mcp_tool_result", "mcp_tool_listing",
    "container_upload", "compaction", "fallback", "tool_addition", "tool_removal",
})
"""Message content block types the Messages API (betas included) accepts that have no canonical
slot: carried as :class:`~llmrouter.models.OpaquePart` instead of being rejected."""

OPAQUE_TOOL_RESULT_BLOCK_TYPES = frozenset({"document", "search_result", "tool_reference", "browser_state"})
"""The same, for the ``content`` of a ``tool_result`` block (where ``text`` and ``image`` are canonical)."""

_FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")
_TOP_LEVEL_KEYS = frozenset({
    "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "temperature",
    "top_p", "stream", "metadata", "thinking", "output_config", "plugins",
})
_ROLES = ("user", "assistant", "system")
_TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}


# ---------------------------------------------------------------------------------------------
# Request parsing (client -> canonical)
# ---------------------------------------------------------------------------------------------


def _forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's headers an Anthropic provider is sent too, by lower-case name (the last of a repeated one)."""
    if type(headers) is CIMultiDictProxy:  # (a request's: case-insensitive lookups, no walk over every header)
        version = headers.getall("anthropic-version", None)
        beta = headers.getall("anthropic-beta", None)
        if beta is None:
            return {} if version is None else {"anthropic-version": version[-1]}
        if version is None:
            return {"anthropic-beta": beta[-1]}
        # (both: the walk below keeps the order in which the client sent them)
    forwarded = {}
    for key, value in headers.items():
        name = key.lower()
        if name in _FORWARDED_HEADERS:
            forwarded[name] = value
    return forwarded


def _fail(path: str, problem: str) -> NoReturn:
    raise InvalidRequest(f"{path}: {problem}")


def _extra(block: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    if block.keys() <= known:  # the usual case: nothing extra (a C-level check, no loop)
        return {}
    return {k: v for k, v in block.items() if k not in known}


def _get_str(obj: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            _fail(f"{path}.{key}", "field required")
        return None
    if not isinstance(value, str):
        _fail(f"{path}.{key}", "must be a string")
    return value


def _get_object(obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        _fail(path, "must be an object")
    return value


def _get_number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(key, "must be a number")
    return float(value)


class MessagesRequestParser:
    """Validates one Messages request, raising :class:`InvalidRequest` naming the field path."""

    _TEXT = frozenset({"type", "text"})
    _IMAGE = frozenset({"type", "source"})
    _TOOL_USE = frozenset({"type", "id", "name", "input"})
    _TOOL_RESULT = frozenset({"type", "tool_use_id", "content", "is_error"})
    _THINKING = frozenset({"type", "thinking", "signature"})
    _REDACTED = frozenset({"type", "data"})
    _MESSAGE = frozenset({"role", "content"})
    _TOOL = frozenset({"name", "description", "input_schema"})

    def __init__(self, *, require_max_tokens: bool = True) -> None:
        self.require_max_tokens = require_max_tokens

    def parse(self, body: Any, headers: Mapping[str, str], gated: Gated | None = None) -> ChatRequest:
        """The canonical request; ``gated``: what :func:`llmrouter.formats.gate.anthropic` proved
        about ``body``, if it ran (its messages and tools then need no deferral check)."""
        if not isinstance(body, dict):
            _fail("body", "must be a JSON object")
        get = body.get
        model = get("model")
        if model is None:
            _fail("model", "field required")
        if not isinstance(model, str) or not model:
            _fail("model", "must be a non-empty string")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            if self.require_max_tokens:
                _fail("max_tokens", "field required")
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            _fail("max_tokens", "must be a positive integer")
        messages = body.get("messages")
        if messages is None:
            _fail("messages", "field required")
        if not isinstance(messages, list):
            _fail("messages", "must be a list")

        lazy = None
        if len(messages) > lazy_module.SMALL:
            lazy = deferrable(messages, self._convert) if gated is None else \
                gated.conversation(messages, self._convert, _texts)
        # Each field checked in turn (the order of the error messages), and the request built once
        # from them, as ChatRequest(...) would build it, rather than assigned field by field. (The
        # usual values are taken as they are; the checks run, with their messages, for the others.)
        system, temperature, top_p = get("system"), get("temperature"), get("top_p")
        fields: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": [] if lazy is not None else self._convert(messages, 0, len(messages)),
            "system": [checked_text(system)] if type(system) is str else self._system(system),
            "temperature": temperature if temperature is None or type(temperature) is float
            else _get_number(body, "temperature"),
            "top_p": top_p if top_p is None or type(top_p) is float else _get_number(body, "top_p"),
            "source_format": "anthropic",
            "extra": _extra(body, _TOP_LEVEL_KEYS),
            "headers": _forwarded(headers),
        }
        tools = body.get("tools")
        lazy_tools = None
        if tools is not None:
            if not isinstance(tools, list):
                _fail("tools", "must be a list")
            if (gated is not None and gated.tools) or (tools and all(map(_tool_ok, tools))):
                lazy_tools = LazyList(tools, self._tools)  # converted when read
            else:
                fields["tools"] = self._tools(tools)
        if get("tool_choice") is not None:
            fields["tool_choice"] = self._tool_choice(_get_object(body, "tool_choice", "tool_choice"))  # type: ignore[arg-type]
        stop = body.get("stop_sequences")
        if stop is not None:
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                _fail("stop_sequences", "must be a list of strings")
            fields["stop"] = list(stop)  # (the request's own, as validation copies it)
        stream = body.get("stream")
        if stream is not None:
            if not isinstance(stream, bool):
                _fail("stream", "must be a boolean")
            fields["stream"] = stream
        fields["metadata"] = None if get("metadata") is None else dict(_get_object(body, "metadata", "metadata"))  # type: ignore[arg-type]
        fields["thinking"] = None if get("thinking") is None else dict(_get_object(body, "thinking", "thinking"))  # type: ignore[arg-type]
        request = checked_request(fields)
        if lazy is not None:
            defer(request, "messages", lazy)
        if lazy_tools is not None:
            defer(request, "tools", lazy_tools)
        if get("output_config") is not None:
            self._output_config(_get_object(body, "output_config", "output_config"), request)  # type: ignore[arg-type]
        plugins = get("plugins")
        if plugins is not None:
            if not isinstance(plugins, list) or not all(isinstance(p, dict) for p in plugins):
                _fail("plugins", "must be a list of objects")
            request.plugins = plugins
        return request

    def _convert(self, messages: list[Any], start: int, stop: int) -> list[Message]:
        """The canonical messages of ``messages[start:stop]``, one per wire message."""
        converted = []
        add = converted.append
        plain_keys = self._MESSAGE
        for i in range(start, stop):
            message = messages[i]
            if type(message) is dict and type(content := message.get("content")) is str \
                    and message.keys() <= plain_keys and (role := message.get("role")) in _ROLES:
                # A message of string content and no other keys: what _message makes of it, without
                # the field path only an error message needs.
                add(checked_message(role, [checked_text(content)], extra={}))
            else:
                add(self._message(message, f"messages[{i}]"))
        return converted

    def _system(self, system: Any) -> list[TextPart] | None:
        if system is None:
            return None
        if isinstance(system, str):
            return [checked_text(system)]
        if not isinstance(system, list):
            _fail("system", "must be a string or a list of text blocks")
        parts = []
        for i, block in enumerate(system):
            path = f"system[{i}]"
            if not isinstance(block, dict):
                _fail(path, "must be an object")
            if block.get("type") != "text":
                _fail(f"{path}.type", "system blocks must be of type 'text'")
            parts.append(self._text(block, path))
        return parts

    def _message(self, message: Any, path: str) -> Message:
        if not isinstance(message, dict):
            _fail(path, "must be an object")
        role = message.get("role")
        if role not in _ROLES:
            _fail(f"{path}.role", f"must be one of {', '.join(map(repr, _ROLES))} (got {role!r})")
        content = message.get("content")
        if content is None:
            _fail(f"{path}.content", "field required")
        if isinstance(content, str):
            parts: list[Part] = [checked_text(content)]
        elif isinstance(content, list):
            parts = [self._block(b, f"{path}.content[{i}]") for i, b in enumerate(content)]
        else:
            _fail(f"{path}.content", "must be a string or a list of content blocks")
        return checked_message(role, parts, extra=_extra(message, self._MESSAGE))

    def _block(self, block: Any, path: str, *, nested: bool = False) -> Part:
        if not isinstance(block, dict):
            _fail(path, "must be an object")
        kind = block.get("type")
        if kind == "text":
            return self._text(block, path)
        if kind == "image":
            return self._image(block, path)
        if isinstance(kind, str) and kind in (OPAQUE_TOOL_RESULT_BLOCK_TYPES if nested else OPAQUE_BLOCK_TYPES):
            return OpaquePart(format="anthropic", data=block, fallback_text=_fallback_text(block))
        if not nested:
            if kind == "tool_use":
                return self._tool_use(block, path)
            if kind == "tool_result":
                return self._tool_result(block, path)
            if kind == "thinking":
                signature = _get_str(block, "signature", path, required=False)
                return ThinkingPart(thinking=_get_str(block, "thinking", path) or "", signature=signature,
                                    extra=_extra(block, self._THINKING))
            if kind == "redacted_thinking":
                return ThinkingPart(redacted=_get_str(block, "data", path), extra=_extra(block, self._REDACTED))
        _fail(f"{path}.type", f"unknown content block type {kind!r}")

    def _text(self, block: dict[str, Any], path: str) -> TextPart:
        return checked_text(_get_str(block, "text", path) or "", _extra(block, self._TEXT))

    def _image(self, block: dict[str, Any], path: str) -> ImagePart:
        source = block.get("source")
        if source is None:
            _fail(f"{path}.source", "field required")
        if not isinstance(source, dict):
            _fail(f"{path}.source", "must be an object")
        kind = source.get("type")
        extra = _extra(block, self._IMAGE)
        if kind == "base64":
            return ImagePart(media_type=_get_str(source, "media_type", f"{path}.source"),
                             data=_get_str(source, "data", f"{path}.source"), extra=extra)
        if kind == "url":
            return ImagePart(url=_get_str(source, "url", f"{path}.source"), extra=extra)
        _fail(f"{path}.source.type", f"unsupported image source type {kind!r}")

    def _tool_use(self, block: dict[str, Any], path: str) -> ToolUsePart:
        tool_id = _get_str(block, "id", path) or ""
        name = _get_str(block, "name", path) or ""
        arguments = block.get("input", {})
        if not isinstance(arguments, dict):
            _fail(f"{path}.input", "must be an object")
        return ToolUsePart(id=tool_id, name=name, input=arguments, extra=_extra(block, self._TOOL_USE))

    def _tool_result(self, block: dict[str, Any], path: str) -> ToolResultPart:
        tool_use_id = _get_str(block, "tool_use_id", path) or ""
        content = block.get("content")
        if content is None:
            parts: list[Any] = []
        elif isinstance(content, str):
            parts = [TextPart(text=content)]
        elif isinstance(content, list):
            parts = [self._block(b, f"{path}.content[{i}]", nested=True) for i, b in enumerate(content)]
        else:
            _fail(f"{path}.content", "must be a string or a list of content blocks")
        is_error = block.get("is_error", False)
        if is_error is None:
            is_error = False
        if not isinstance(is_error, bool):
            _fail(f"{path}.is_error", "must be a boolean")
        return ToolResultPart(tool_use_id=tool_use_id, content=parts, is_error=is_error,
                              extra=_extra(block, self._TOOL_RESULT))

    def _tools(self, tools: list[Any]) -> list[Tool]:
        return [self._tool(t, f"tools[{i}]") for i, t in enumerate(tools)]

    def _tool(self, tool: Any, path: str) -> Tool:
        if not isinstance(tool, dict):
            _fail(path, "must be an object")
        name = _get_str(tool, "name", path)
        if not name:
            _fail(f"{path}.name", "must be a non-empty string")
        parsed = Tool(name=name, description=_get_str(tool, "description", path, required=False),
                      extra=_extra(tool, self._TOOL))
        schema = tool.get("input_schema")
        if schema is not None:
            if not isinstance(schema, dict):
                _fail(f"{path}.input_schema", "must be an object")
            parsed.input_schema = schema
        return parsed

    def _tool_choice(self, choice: dict[str, Any]) -> ToolChoice:
        kind = choice.get("type")
        if kind not in _TOOL_CHOICES:
            _fail("tool_choice.type", f"must be one of {', '.join(map(repr, _TOOL_CHOICES))} (got {kind!r})")
        name = _get_str(choice, "name", "tool_choice", required=kind == "tool")
        disable = choice.get("disable_parallel_tool_use")
        if disable is not None and not isinstance(disable, bool):
            _fail("tool_choice.disable_parallel_tool_use", "must be a boolean")
        return ToolChoice(type=_TOOL_CHOICES[kind], name=name, disable_parallel=disable)  # type: ignore[arg-type]

    def _output_config(self, config: dict[str, Any], request: ChatRequest) -> None:
        fmt = config.get("format")
        if fmt is None:
            request.extra["output_config"] = config
            return
        if not isinstance(fmt, dict):
            _fail("output_config.format", "must be an object")
        if fmt.get("type") != "json_schema":
            _fail("output_config.format.type", f"unsupported output format type {fmt.get('type')!r}")
        schema = fmt.get("schema")
        if schema is None:
            _fail("output_config.format.schema", "field required")
        if not isinstance(schema, dict):
            _fail("output_config.format.schema", "must be an object")
        request.response_format = ResponseFormat(type="json_schema", schema=schema)
        rest = {k: v for k, v in config.items() if k != "format"}
        if rest:
            request.extra["output_config"] = rest


# ---------------------------------------------------------------------------------------------
# Deferred conversion (see llmrouter.lazy)
# ---------------------------------------------------------------------------------------------


def deferrable(messages: list[Any], convert: Convert) -> LazyConversation | None:
    """``messages`` as a :class:`~llmrouter.lazy.LazyConversation` (one canonical message per wire
    message) when converting them (:meth:`MessagesRequestParser._message`) is certain to succeed,
    else ``None`` (convert at once, raising the usual 400).

    Conservative: plain type checks, over JSON values (a parsed body), of the shapes the converter
    accepts without complaint; an unusual but valid block merely means converting at once.
    """
    roles: list[str] = []
    images = False
    for message in messages:
        if type(message) is not dict:
            return None
        role = message.get("role")
        content = message.get("content")
        if type(role) is not str or role not in _ROLES:
            return None
        if type(content) is list:
            for block in content:
                verdict = _block_ok(block, nested=False)
                if verdict is None:
                    return None
                images = images or verdict
        elif type(content) is not str:
            return None
        roles.append(role)
    return LazyConversation(messages, range(len(messages)), roles, convert, images=images, texts=_texts)


_NO_TEXT = frozenset({"image", "tool_use", "thinking", "redacted_thinking"})
"""Top-level blocks without text (tool results, documents and search results may hold some)."""


def _texts(messages: list[Any], start: int, stop: int, nested: bool) -> list[str] | None:
    """The texts of ``messages[start:stop]`` as :meth:`MessagesRequestParser._message` would
    convert them (see :data:`llmrouter.lazy.Texts`); ``None`` at anything unexpected."""
    texts: list[str] = []
    add = texts.append
    for i in range(start, stop):
        message = messages[i]
        content = message.get("content") if type(message) is dict else None
        if type(content) is str:
            add(content)
            continue
        if type(content) is not list:
            return None
        for block in content:
            kind = block.get("type") if type(block) is dict else None
            if kind == "text" and type(block.get("text")) is str:
                add(block["text"])
            elif type(kind) is not str:
                return None
            elif kind in _NO_TEXT:
                continue
            elif kind == "tool_result":
                if nested and not _result_texts(block.get("content"), add):
                    return None
            elif kind in OPAQUE_BLOCK_TYPES:
                text = _fallback_text(block) if nested else None
                if text is not None:
                    add(text)
            else:
                return None
    return texts


def _result_texts(content: Any, add: Callable[[str], None]) -> bool:
    """Add the texts of a tool result's ``content``; ``False`` at anything unexpected."""
    if type(content) is str:
        add(content)
    elif type(content) is list:
        for block in content:
            kind = block.get("type") if type(block) is dict else None
            if kind == "text" and type(block.get("text")) is str:
                add(block["text"])
            elif type(kind) is not str:
                return False
            elif kind in OPAQUE_TOOL_RESULT_BLOCK_TYPES:
                text = _fallback_text(block)
                if text is not None:
                    add(text)
            elif kind != "image":
                return False
    return content is None or type(content) in (str, list)


def _block_ok(block: Any, *, nested: bool) -> bool | None:
    """Whether a content block that converts without fail is or holds an image, else ``None``."""
    kind = block.get("type") if type(block) is dict else None
    if type(kind) is not str:
        return None
    if kind == "text":
        return False if type(block.get("text")) is str else None
    if kind == "image":
        source = block.get("source")
        kind = source.get("type") if type(source) is dict else None
        if kind == "base64":
            ok = type(source.get("media_type")) is str and type(source.get("data")) is str  # type: ignore[union-attr]
        else:
            ok = kind == "url" and type(source.get("url")) is str  # type: ignore[union-attr]
        return True if ok else None
    if kind in (OPAQUE_TOOL_RESULT_BLOCK_TYPES if nested else OPAQUE_BLOCK_TYPES):
        return False
    if nested:
        return None
    if kind == "tool_use":
        arguments = block.get("input", {})
        ok = type(block.get("id")) is str and type(block.get("name")) is str and type(arguments) is dict
    elif kind == "tool_result":
        return _tool_result_ok(block)
    elif kind == "thinking":
        signature = block.get("signature")
        ok = type(block.get("thinking")) is str and (signature is None or type(signature) is str)
    else:
        ok = kind == "redacted_thinking" and type(block.get("data")) is str
    return False if ok else None


def _tool_ok(tool: Any) -> bool:
    """Whether :meth:`MessagesRequestParser._tool` converts ``tool`` without fail."""
    if type(tool) is not dict:
        return False
    name, description, schema = tool.get("name"), tool.get("description"), tool.get("input_schema")
    return (type(name) is str and bool(name) and (description is None or type(description) is str)
            and (schema is None or type(schema) is dict))


def _tool_result_ok(block: dict[str, Any]) -> bool | None:
    is_error = block.get("is_error")
    content = block.get("content")
    if type(block.get("tool_use_id")) is not str or not (is_error is None or type(is_error) is bool):
        return None
    if content is None or type(content) is str:
        return False
    if type(content) is not list:
        return None
    images = False
    for inner in content:
        verdict = _block_ok(inner, nested=True)
        if verdict is None:
            return None
        images = images or verdict
    return images
