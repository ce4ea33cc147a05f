"""The ``openai-responses`` provider format: canonical request -> ``POST {base_url}/responses`` body,
and the provider's ``response`` object -> :class:`~llmrouter.models.ChatResponse`.

From a Responses client everything it sent is rebuilt (instructions, developer items, reasoning
items, namespaces, custom and hosted tools, unknown fields); thinking blocks of other vendors (an
Anthropic reply's signed thinking, carried through a Responses client) are not sent, OpenAI could
not verify them. From other clients: the system prompt is ``instructions``, later system messages
are ``developer`` items, ``stop`` has no Responses equivalent and is dropped, and ``store`` is false
(the router keeps no upstream state).
"""

from __future__ import annotations

from typing import Any

from llmrouter.formats.base import tool_call_part
from llmrouter.formats.responses_items import (
    FORMAT,
    ToolMap,
    call_item,
    flat_name,
    instructions_text,
    merge_wire,
    tool_choice_json,
    tools_json,
    usage_from_json,
)
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    StopReason,
    TextPart,
    ToolResultPart,
    ToolUsePart,
)

CONTENT_PART_TYPES = frozenset({"input_text", "input_image", "input_file", "input_audio"})
"""Opaque Responses blocks that live inside a message's content (the others are whole items)."""
_HANDLED = frozenset({"stream", "plugins", "text", "reasoning", "tool_choice", "metadata"})
_BUDGET_EFFORTS = ((4096, "low"), (12288, "medium"), (24576, "high"))


def _image_json(part: ImagePart, same: bool) -> dict[str, Any]:
    url = part.url if part.url is not None else f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"
    return merge_wire({"type": "input_image", "image_url": url, "detail": "auto"}, part.extra, same)


def _sendable(part: Part) -> Part | None:
    if isinstance(part, OpaquePart) and part.format != FORMAT:
        return part.as_text()
    return part


class _Items:
    """Builds the ``input`` array, one canonical message at a time."""

    def __init__(self, request: ChatRequest, same: bool) -> None:
        self.same = same
        self.tools = ToolMap(request.tools)
        self.items: list[dict[str, Any]] = []
        self._message: dict[str, Any] | None = None  # the message item text is being added to

    def _open(self, role: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "role": role, "content": []}
        if fields and self.same:
            merge_wire(item, fields, True)
        self.items.append(item)
        self._message = item
        return item

    def _close(self) -> None:
        self._message = None

    def system(self, parts: list[TextPart], default_role: str) -> None:
        """System parts as ``system``/``developer`` message items (one per original item)."""
        for part in parts:
            role = part.extra.get("_role") if self.same else None
            role = role if isinstance(role, str) else default_role
            fields = part.extra.get("_item")
            if self._message is None or self._message["role"] != role or isinstance(fields, dict):
                self._open(role, fields if isinstance(fields, dict) else None)
            assert self._message is not None
            self._message["content"].append(merge_wire({"type": "input_text", "text": part.text},
                                                       part.extra, self.same))
        self._close()

    def user(self, message: Message) -> None:
        """A user message: content parts in message items, tool results as output items."""
        for raw in message.content:
            part = _sendable(raw)
            if part is None:
                continue
            if isinstance(part, ToolResultPart):
                self._close()
                self.items.append(self._result(part))
            elif isinstance(part, OpaquePart) and part.kind not in CONTENT_PART_TYPES:
                self._close()
                self.items.append(dict(part.data))
            else:
                item = self._message or self._open("user", message.extra)
                item["content"].append(self._content(part))
        self._close()

    def _content(self, part: Part) -> dict[str, Any]:
        if isinstance(part, TextPart):
            return merge_wire({"type": "input_text", "text": part.text}, part.extra, self.same)
        if isinstance(part, ImagePart):
            return _image_json(part, self.same)
        assert isinstance(part, OpaquePart)
        return dict(part.data)

    def _result(self, part: ToolResultPart) -> dict[str, Any]:
        inner = [p for p in map(_sendable, part.content) if p is not None]
        output: str | list[dict[str, Any]]
        if all(isinstance(p, TextPart) for p in inner):
            output = "\n".join(p.text for p in inner if isinstance(p, TextPart))
        else:
            output = [self._content(p) for p in inner]
        kind = "custom_tool_call_output" if part.extra.get("_custom") else "function_call_output"
        return merge_wire({"type": kind, "call_id": part.tool_use_id, "output": output}, part.extra, self.same)

    def assistant(self, message: Message) -> None:
        """An assistant message: text in message items, calls, reasoning and hosted items in order."""
        for raw in message.content:
            part = _sendable(raw)
            if isinstance(part, TextPart):
                fields = part.extra.get("_item")
                if self._message is None or isinstance(fields, dict):
                    self._open("assistant", fields if isinstance(fields, dict) else message.extra)
                assert self._message is not None
                content = ({"type": "refusal", "refusal": part.text} if part.extra.get("_refusal")
                           else merge_wire({"type": "output_text", "text": part.text}, part.extra, self.same))
                self._message["content"].append(content)
                continue
            self._close()
            if isinstance(part, ToolUsePart):
                item = call_item(part, self.tools if self.same else ToolMap(None))
                if not self.same or "id" not in part.extra:
                    item.pop("id")
                item.pop("status")
                self.items.append(merge_wire(item, part.extra, self.same))
            elif isinstance(part, OpaquePart):  # thinking of other vendors is never sent: it cannot be verified
                self.items.append(dict(part.data))
        self._close()


def _effort(thinking: dict[str, Any] | None) -> str | None:
    if not thinking or thinking.get("type") == "disabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return next((effort for limit, effort in _BUDGET_EFFORTS if budget <= limit), "high")


def build_responses_request(request: ChatRequest, model: str) -> dict[str, Any]:
    """The body to POST to ``{base_url}/responses`` for ``request``."""
    same = request.source_format == FORMAT
    items = _Items(request, same)
    body: dict[str, Any] = {"model": model}
    if same:
        instructions = instructions_text(request)
        items.system([p for p in request.system or [] if "_role" in p.extra], "developer")
    else:
        instructions = request.system_text() or None
    if instructions is not None:
        body["instructions"] = instructions
    for message in request.messages:
        if message.role == "system":
            items.system([p for p in message.content if isinstance(p, TextPart)], "developer")
        elif message.role == "assistant":
            items.assistant(message)
        else:
            items.user(message)
    body["input"] = items.items
    tools = tools_json(request, same)
    if tools:
        body["tools"] = tools
        choice = tool_choice_json(request, same)
        if choice is not None:
            body["tool_choice"] = choice
        if request.tool_choice is not None and request.tool_choice.disable_parallel is not None:
            body["parallel_tool_calls"] = not request.tool_choice.disable_parallel
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    text = _text_json(request, same)
    if text:
        body["text"] = text
    if same and isinstance(request.extra.get("reasoning"), dict):
        body["reasoning"] = request.extra["reasoning"]
    elif _effort(request.thinking) is not None:
        body["reasoning"] = {"effort": _effort(request.thinking)}
    if request.stream:
        body["stream"] = True
    if same:
        if request.metadata is not None:
            body["metadata"] = request.metadata
        for key, value in request.extra.items():
            if not key.startswith("_") and key not in _HANDLED:
                body.setdefault(key, value)
    else:
        body["store"] = False
    return body


def _text_json(request: ChatRequest, same: bool) -> dict[str, Any]:
    text: dict[str, Any] = {}
    if same and isinstance(request.extra.get("text"), dict):
        text = {k: v for k, v in request.extra["text"].items() if k != "format"}
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        text["format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        spec: dict[str, Any] = {"type": "json_schema", "name": fmt.name or "response", "schema": fmt.schema_ or {}}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        text["format"] = spec
    return text


# ---------------------------------------------------------------------------------------------
# The provider's reply
# ---------------------------------------------------------------------------------------------


def call_part(item: dict[str, Any], arguments: str | None = None) -> ToolUsePart:
    """A ``function_call``/``custom_tool_call`` output item as a canonical tool call."""
    call_id = str(item.get("call_id") or item.get("id") or "")
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    name = flat_name(namespace, str(item.get("name") or ""))
    extra: dict[str, Any] = {"id": item["id"]} if isinstance(item.get("id"), str) else {}
    if namespace:
        extra["_namespace"] = namespace
    if item.get("type") == "custom_tool_call":
        extra["_custom"] = True
        return ToolUsePart(id=call_id, name=name, input={"input": str(item.get("input") or "")}, extra=extra)
    return tool_call_part(call_id, name, arguments if arguments is not None else item.get("arguments"), extra)


def message_parts(item: dict[str, Any]) -> tuple[list[TextPart], bool]:
    """The text parts of an output ``message`` item, and whether one is a refusal."""
    parts: list[TextPart] = []
    refused = False
    fields = {k: v for k, v in item.items() if k in ("id", "phase")}
    for content in item.get("content") or []:
        if not isinstance(content, dict):
            continue
        if content.get("type") == "refusal":
            refused = True
            parts.append(TextPart(text=str(content.get("refusal") or ""), extra={"_refusal": True}))
        elif isinstance(content.get("text"), str):
            extra = {k: content[k] for k in ("annotations",) if content.get(k)}
            parts.append(TextPart(text=content["text"], extra=extra))
    if parts:
        parts[0].extra["_item"] = fields
    return parts, refused


def stop_reason_of(status: Any, incomplete: Any, has_calls: bool, refused: bool) -> StopReason:
    """The canonical stop reason of a finished Responses reply."""
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return "refusal" if reason == "content_filter" else "max_tokens"
    if has_calls:
        return "tool_use"
    return "refusal" if refused else "end_turn"


def parse_responses_reply(body: Any) -> ChatResponse:
    """Convert a provider's ``response`` object into a :class:`ChatResponse`.

    :raises ValueError: when ``body`` is not a response (an error body, a failed response...).
    """
    if not isinstance(body, dict):
        raise ValueError("response must be a JSON object")
    if body.get("status") == "failed" or ("error" in body and body.get("error") and "output" not in body):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        raise ValueError(f"upstream returned an error: {message}")
    output = body.get("output")
    if not isinstance(output, list):
        raise ValueError("response has no output array")
    content: list[Part] = []
    refused = False
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            parts, refusal = message_parts(item)
            refused = refused or refusal
            content.extend(parts)
        elif kind in ("function_call", "custom_tool_call"):
            content.append(call_part(item))
        else:  # reasoning, hosted-tool calls...: verbatim for Responses clients, dropped by others
            content.append(OpaquePart(format=FORMAT, data=item))
    has_calls = any(isinstance(p, ToolUsePart) for p in content)
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=stop_reason_of(body.get("status"), body.get("incomplete_details"), has_calls, refused),
        usage=usage_from_json(body.get("usage")),
    )
