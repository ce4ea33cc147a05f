"""Validation helpers and the ``input`` items of a Responses API request -> canonical messages
(see :mod:`llmrouter.formats.responses` for the conversion rules)."""

from __future__ import annotations

from typing import Any

from llmrouter.formats.base import image_part, tool_call_part
from llmrouter.formats.fields import array as _array
from llmrouter.formats.fields import invalid as _fail
from llmrouter.formats.fields import obj as _object
from llmrouter.formats.fields import require as _require
from llmrouter.formats.fields import rest as _rest
from llmrouter.formats.fields import string as _string
from llmrouter.formats.responses_items import FORMAT, decode_thinking, flat_name
from llmrouter.models import ImagePart, Message, OpaquePart, Part, TextPart, ToolResultPart, ToolUsePart

_RESULT_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})


# ---------------------------------------------------------------------------------------------
# Input items -> system + messages
# ---------------------------------------------------------------------------------------------


def _image(raw: dict[str, Any], path: str) -> Part:
    url = raw.get("image_url")
    extra = _rest(raw, {"type", "image_url"})
    if url is None:  # a file_id image: only a Responses provider can resolve it
        return OpaquePart(format=FORMAT, data=raw)
    return image_part(_string(url, f"{path}.image_url", non_empty=True), f"{path}.image_url", extra)


def _content(content: Any, path: str, role: str) -> list[Part]:
    """A message item's content (a string or a list of parts)."""
    if isinstance(content, str):
        return [TextPart(text=content)]
    parts: list[Part] = []
    for i, raw in enumerate(_array(content, path)):
        part_path = f"{path}[{i}]"
        raw = _object(raw, part_path)
        kind = _string(_require(raw, "type", f"{part_path}.type"), f"{part_path}.type")
        if kind in ("input_text", "output_text", "text"):
            text = _string(_require(raw, "text", f"{part_path}.text"), f"{part_path}.text")
            parts.append(TextPart(text=text, extra=_rest(raw, {"type", "text"})))
        elif kind == "refusal":
            text = _string(_require(raw, "refusal", f"{part_path}.refusal"), f"{part_path}.refusal")
            parts.append(TextPart(text=text, extra={"_refusal": True}))
        elif kind == "input_image" and role != "assistant":
            parts.append(_image(raw, part_path))
        elif kind in ("input_file", "input_audio") and role != "assistant":
            parts.append(OpaquePart(format=FORMAT, data=raw))
        else:
            raise _fail(f"{part_path}.type", f"unknown content part type {kind!r} for role {role!r}")
    return parts


def _arguments(call_id: str, name: str, raw: Any, path: str, extra: dict[str, Any]) -> ToolUsePart:
    if not isinstance(raw, dict):
        raw = _string(raw if raw is not None else "", path)
    return tool_call_part(call_id, name, raw, extra)


def _call(raw: dict[str, Any], path: str) -> ToolUsePart:
    call_id = _string(_require(raw, "call_id", f"{path}.call_id"), f"{path}.call_id", non_empty=True)
    name = _string(_require(raw, "name", f"{path}.name"), f"{path}.name", non_empty=True)
    namespace = raw.get("namespace")
    if namespace is not None:
        namespace = _string(namespace, f"{path}.namespace")
    if raw["type"] == "custom_tool_call":
        text = _string(raw.get("input", ""), f"{path}.input")
        extra = {"_custom": True, **_rest(raw, {"type", "call_id", "name", "input", "namespace"})}
        if namespace:
            extra["_namespace"] = namespace
        return ToolUsePart(id=call_id, name=flat_name(namespace, name), input={"input": text}, extra=extra)
    extra = _rest(raw, {"type", "call_id", "name", "arguments", "namespace"})
    if namespace:
        extra["_namespace"] = namespace
    return _arguments(call_id, flat_name(namespace, name), raw.get("arguments"), f"{path}.arguments", extra)


def _result(raw: dict[str, Any], path: str) -> ToolResultPart:
    call_id = _string(_require(raw, "call_id", f"{path}.call_id"), f"{path}.call_id", non_empty=True)
    output = raw.get("output", "")
    content: list[TextPart | ImagePart | OpaquePart] = []
    if isinstance(output, str):
        content = [TextPart(text=output)]
    else:
        for part in _content(output, f"{path}.output", "tool"):
            if isinstance(part, TextPart | ImagePart | OpaquePart):
                content.append(part)
    extra = _rest(raw, {"type", "call_id", "output"})
    if raw["type"] == "custom_tool_call_output":
        extra["_custom"] = True
    return ToolResultPart(tool_use_id=call_id, content=content, extra=extra)


class _Conversation:
    """Accumulates input items into a system prompt and canonical messages."""

    def __init__(self, system: list[TextPart]) -> None:
        self.system = system
        self.messages: list[Message] = []

    def _tail(self, role: str) -> Message:
        if not self.messages or self.messages[-1].role != role or self.messages[-1].extra.get("_closed"):
            self.messages.append(Message(role=role))  # type: ignore[arg-type]
        return self.messages[-1]

    def item(self, raw: Any, path: str) -> None:
        raw = _object(raw, path)
        kind = raw.get("type", "message" if "role" in raw else None)
        if kind is None:
            raise _fail(f"{path}.type", "field required")
        kind = _string(kind, f"{path}.type")
        if kind == "message":
            self._message(raw, path)
        elif kind in ("function_call", "custom_tool_call"):
            self._tail("assistant").content.append(_call(raw, path))
        elif kind in _RESULT_ITEMS:
            self._tail("user").content.append(_result(raw, path))
        elif kind == "reasoning":
            thinking = decode_thinking(raw)
            self._tail("assistant").content.append(thinking or OpaquePart(format=FORMAT, data=raw))
        elif kind.endswith("_output") or kind == "item_reference":
            self._tail("user").content.append(OpaquePart(format=FORMAT, data=raw))
        else:  # hosted-tool calls and newer item kinds: kept for Responses providers
            self._tail("assistant").content.append(OpaquePart(format=FORMAT, data=raw))

    def _message(self, raw: dict[str, Any], path: str) -> None:
        role = _string(_require(raw, "role", f"{path}.role"), f"{path}.role")
        if role not in ("user", "assistant", "system", "developer"):
            raise _fail(f"{path}.role", f"unknown role {role!r}")
        parts = _content(_require(raw, "content", f"{path}.content"), f"{path}.content", role)
        fields = _rest(raw, {"type", "role", "content"})
        if role in ("system", "developer"):
            texts = [p for p in parts if isinstance(p, TextPart)]
            if len(texts) != len(parts):
                raise _fail(f"{path}.content", f"{role} messages may only hold text")
            for position, part in enumerate(texts):
                part.extra["_role"] = role
                if position == 0:
                    part.extra["_item"] = fields
            if not self.messages:
                self.system.extend(texts)
            else:
                self.messages.append(Message(role="system", content=list(texts), extra={"_closed": True}))
            return
        if role == "assistant":
            if parts and isinstance(parts[0], TextPart):
                parts[0].extra["_item"] = fields
            self._tail("assistant").content.extend(parts)
            return
        self.messages.append(Message(role="user", content=parts, extra={**fields, "_closed": True}))


def _conversation(body: dict[str, Any], system: list[TextPart], prior: list[Message]) -> _Conversation:
    conversation = _Conversation(system)
    conversation.messages.extend(prior)
    raw_input = _require(body, "input", "input") if not prior else body.get("input", [])
    if isinstance(raw_input, str):
        conversation.messages.append(Message(role="user", content=[TextPart(text=raw_input)]))
    else:
        for i, item in enumerate(_array(raw_input, "input")):
            conversation.item(item, f"input[{i}]")
    for message in conversation.messages:
        message.extra.pop("_closed", None)
    return conversation
