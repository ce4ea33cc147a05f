"""Pieces of the OpenAI Responses API format shared by its request, reply and stream converters.

Markers the Responses converters leave in canonical ``extra`` dicts all start with ``_`` and are
never sent on the wire (see :func:`wire_extra`):

* ``Tool.extra["_namespace"]`` / ``["_name"]`` / ``["_ns_description"]``: a function of a
  ``namespace`` tool, flattened to the canonical name ``<namespace>__<name>`` so formats without
  namespaces can offer it; calls to it are mapped back to ``{"namespace", "name"}`` on the reply.
* ``Tool.extra["_custom"]`` (the tool's ``format``) and ``ToolUsePart.extra["_custom"]``: a
  free-form ``custom`` tool, offered elsewhere as a function taking one string ``input``.
* ``TextPart.extra["_role"]`` / ``["_item"]``: a system part that came from a ``system`` or
  ``developer`` input item (not from ``instructions``); ``_item`` holds that item's other fields
  on its first part. Assistant text parts carry ``_item`` the same way for their ``message`` item.
* ``TextPart.extra["_refusal"]``: the text is a refusal.
* ``request.extra["_hosted_tools"]``: hosted tools (``web_search``...), sent only to Responses
  providers.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from llmrouter.errors import RouterError
from llmrouter.formats.fields import count
from llmrouter.formats.openai_stream import error_type
from llmrouter.jsonutil import dumps, loads
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    Message,
    OpaquePart,
    Part,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolUsePart,
    Usage,
)

FORMAT = "openai-responses"
NAMESPACE_SEPARATOR = "__"
HOSTED_TOOLS = "_hosted_tools"
REASONING_PREFIX = "llmrouter.v1:"
"""Prefix of the ``encrypted_content`` the router gives reasoning items it made from another
vendor's signed thinking, so the signature survives a Responses client's round trip."""

CUSTOM_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The free-form input of the tool."}},
    "required": ["input"],
}


def new_id(prefix: str) -> str:
    """A fresh Responses-style id (``resp_...``, ``msg_...``, ``fc_...``, ``rs_...``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def now() -> int:
    """Current Unix time in whole seconds (``created_at``)."""
    return int(time.time())


def wire_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` without the router's ``_`` markers: what may go on the wire."""
    return {k: v for k, v in extra.items() if not k.startswith("_")}


def merge_wire(target: dict[str, Any], extra: dict[str, Any], same: bool) -> dict[str, Any]:
    """Add the wire keys of ``extra`` not already in ``target`` when the request came in this format."""
    if same:
        for key, value in extra.items():
            if not key.startswith("_"):
                target.setdefault(key, value)
    return target


@dataclass(frozen=True)
class StoredConversation:
    """One stored conversation: its system parts and messages (copies; callers may mutate them)."""

    system: list[TextPart]
    messages: list[Message]


class ResponseStore(Protocol):
    """Where finished Responses conversations are kept."""

    def get(self, response_id: str) -> StoredConversation | None:
        """The conversation that ended with ``response_id``, or ``None`` (unknown or evicted)."""

    def put(self, response_id: str, system: list[TextPart], messages: list[Message]) -> None:
        """Keep the conversation that ended with ``response_id``."""


# ---------------------------------------------------------------------------------------------
# Tool names, namespaces and custom tools
# ---------------------------------------------------------------------------------------------


def flat_name(namespace: str | None, name: str) -> str:
    """The canonical name of function ``name`` in ``namespace`` (``ns__name``)."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


class ToolMap:
    """What the request's tools say about a called name: its namespace and whether it is custom."""

    def __init__(self, tools: list[Tool] | None) -> None:
        self._tools = {t.name: t for t in tools or []}

    def split(self, part: ToolUsePart) -> tuple[str | None, str]:
        """``(namespace, name)`` for a call, from the call's own marker or the tool it names."""
        namespace = part.extra.get("_namespace")
        if isinstance(namespace, str) and namespace:
            prefix = namespace + NAMESPACE_SEPARATOR
            return namespace, part.name[len(prefix):] if part.name.startswith(prefix) else part.name
        tool = self._tools.get(part.name)
        if tool is not None and isinstance(tool.extra.get("_namespace"), str):
            return tool.extra["_namespace"], str(tool.extra.get("_name") or part.name)
        return None, part.name

    def is_custom(self, part: ToolUsePart) -> bool:
        """Whether the call is to a free-form ``custom`` tool."""
        if part.extra.get("_custom"):
            return True
        tool = self._tools.get(part.name)
        return tool is not None and "_custom" in tool.extra


def custom_input(part: ToolUsePart) -> str:
    """The free-form input of a custom tool call (its ``input`` argument)."""
    if isinstance(part.input, dict):
        value = part.input.get("input")
        if isinstance(value, str):
            return value
        return "" if not part.input else dumps(part.input).decode()
    return part.raw_arguments or ""


def call_item(part: ToolUsePart, tools: ToolMap, item_id: str | None = None) -> dict[str, Any]:
    """The ``function_call`` (or ``custom_tool_call``) output item of a canonical tool call."""
    namespace, name = tools.split(part)
    ident = item_id or _str(part.extra.get("id")) or new_id("fc" if not tools.is_custom(part) else "ctc")
    if tools.is_custom(part):
        item: dict[str, Any] = {"id": ident, "type": "custom_tool_call", "status": "completed",
                                "call_id": part.id, "name": name, "input": custom_input(part)}
    else:
        item = {"id": ident, "type": "function_call", "status": "completed", "arguments": part.arguments_json(),
                "call_id": part.id, "name": name}
    if namespace:
        item["namespace"] = namespace
    return item


def tools_json(request: ChatRequest, same: bool) -> list[dict[str, Any]]:
    """The request's tools as Responses tools: namespace functions regrouped, custom tools restored,
    hosted tools appended (``same``: the request came in this format, so its extras go too)."""
    out: list[dict[str, Any]] = []
    namespaces: dict[str, dict[str, Any]] = {}
    for tool in request.tools or []:
        namespace = tool.extra.get("_namespace") if same else None
        name = str(tool.extra.get("_name") or tool.name) if isinstance(namespace, str) else tool.name
        if same and "_custom" in tool.extra:
            entry: dict[str, Any] = {"type": "custom", "name": name}
            if tool.description is not None:
                entry["description"] = tool.description
            if tool.extra["_custom"] is not None:
                entry["format"] = tool.extra["_custom"]
        else:
            entry = {"type": "function", "name": name}
            if tool.description is not None:
                entry["description"] = tool.description
            entry["parameters"] = tool.input_schema
        merge_wire(entry, tool.extra, same)
        if isinstance(namespace, str):
            group = namespaces.get(namespace)
            if group is None:
                group = {"type": "namespace", "name": namespace}
                if isinstance(tool.extra.get("_ns_description"), str):
                    group["description"] = tool.extra["_ns_description"]
                group["tools"] = []
                namespaces[namespace] = group
                out.append(group)
            group["tools"].append(entry)
        else:
            out.append(entry)
    hosted = request.extra.get(HOSTED_TOOLS) if same else None
    if isinstance(hosted, list):
        out.extend(hosted)
    return out


def tool_choice_json(request: ChatRequest, same: bool) -> Any:
    """The Responses ``tool_choice`` for the request, or ``None`` when it has none."""
    if same and "tool_choice" in request.extra:
        return request.extra["tool_choice"]  # a choice with no canonical form (allowed_tools, hosted)
    choice = request.tool_choice
    if choice is None:
        return None
    if choice.type != "tool":
        return choice.type
    tool = next((t for t in request.tools or [] if t.name == choice.name), None)
    if tool is not None and same and "_custom" in tool.extra:
        return {"type": "custom", "name": str(tool.extra.get("_name") or tool.name)}
    if tool is not None and same and isinstance(tool.extra.get("_namespace"), str):
        return {"type": "function", "name": str(tool.extra.get("_name") or tool.name)}
    return {"type": "function", "name": choice.name or ""}


def instructions_text(request: ChatRequest) -> str | None:
    """The system text that came as ``instructions`` (parts not marked as input items)."""
    texts = [p.text for p in request.system or [] if "_role" not in p.extra]
    return "\n\n".join(texts) if texts else None


# ---------------------------------------------------------------------------------------------
# Reasoning
# ---------------------------------------------------------------------------------------------


def encode_thinking(part: ThinkingPart) -> str | None:
    """The ``encrypted_content`` carrying a signed (or redacted) thinking block, else ``None``."""
    if part.signature is None and part.redacted is None:
        return None
    payload = {"t": part.thinking, "s": part.signature, "r": part.redacted}
    return REASONING_PREFIX + base64.urlsafe_b64encode(dumps(payload)).decode("ascii")


def decode_thinking(item: dict[str, Any]) -> ThinkingPart | None:
    """The thinking block a reasoning item made by :func:`encode_thinking` carries, else ``None``."""
    content = item.get("encrypted_content")
    if not isinstance(content, str) or not content.startswith(REASONING_PREFIX):
        return None
    try:
        payload = loads(base64.urlsafe_b64decode(content[len(REASONING_PREFIX):].encode("ascii")))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict):
        return None
    return ThinkingPart(thinking=_str(payload.get("t")) or "", signature=_str(payload.get("s")),
                        redacted=_str(payload.get("r")))


def reasoning_item(part: ThinkingPart, item_id: str) -> dict[str, Any]:
    """A ``reasoning`` output item for a thinking part (its text as the summary)."""
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
    if part.thinking:
        item["summary"] = [{"type": "summary_text", "text": part.thinking}]
    encoded = encode_thinking(part)
    if encoded is not None:
        item["encrypted_content"] = encoded
    return item


# ---------------------------------------------------------------------------------------------
# Output items, usage, status
# ---------------------------------------------------------------------------------------------


def text_content(part: TextPart) -> dict[str, Any]:
    """One output content part (``output_text`` or ``refusal``) for a text part."""
    if part.extra.get("_refusal"):
        return {"type": "refusal", "refusal": part.text}
    content: dict[str, Any] = {"type": "output_text", "text": part.text, "annotations": [], "logprobs": []}
    for key in ("annotations", "logprobs"):
        if isinstance(part.extra.get(key), list):
            content[key] = part.extra[key]
    return content


def output_items(content: list[Part], tools: ToolMap, ids: list[str | None] | None = None) -> list[dict[str, Any]]:
    """The ``output`` array for reply parts: consecutive text parts share one message item.

    ``ids`` gives the item id of each part (streams use the ids they already announced).
    """
    items: list[dict[str, Any]] = []
    message: dict[str, Any] | None = None
    for position, part in enumerate(content):
        given = ids[position] if ids is not None and position < len(ids) else None
        if isinstance(part, TextPart):
            if message is None or given is not None or "_item" in part.extra:
                message = message_item(part, given)
                items.append(message)
            message["content"].append(text_content(part))
            continue
        message = None
        if isinstance(part, ToolUsePart):
            items.append(call_item(part, tools, given))
        elif isinstance(part, ThinkingPart):
            items.append(reasoning_item(part, given or new_id("rs")))
        elif isinstance(part, OpaquePart) and part.format == FORMAT:
            items.append(dict(part.data))
    return items


def message_item(part: TextPart, item_id: str | None) -> dict[str, Any]:
    """An empty completed assistant ``message`` item (fields kept from ``part``'s ``_item``)."""
    fields = part.extra.get("_item") if isinstance(part.extra.get("_item"), dict) else {}
    item: dict[str, Any] = {"id": item_id or _str(fields.get("id")) or new_id("msg"), "type": "message",
                            "status": "completed", "role": "assistant", "content": []}
    for key, value in fields.items():
        item.setdefault(key, value)
    return item


def usage_json(usage: Usage) -> dict[str, Any]:
    """Canonical usage as a Responses ``usage`` object (cached tokens counted in the input)."""
    cached = usage.cache_read_input_tokens or 0
    prompt = usage.input_tokens + cached + (usage.cache_creation_input_tokens or 0)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": usage.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + usage.output_tokens}


def usage_from_json(data: Any) -> Usage:
    """A Responses ``usage`` object as canonical usage (cached tokens split out of the input)."""
    if not isinstance(data, dict):
        return Usage()
    details = data.get("input_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(input_tokens=max(count(data.get("input_tokens")) - cached, 0),
                 output_tokens=count(data.get("output_tokens")), cache_read_input_tokens=cached or None)


def status_of(stop: StopReason | None) -> tuple[str, dict[str, Any] | None]:
    """``(status, incomplete_details)`` for a canonical stop reason."""
    if stop == "max_tokens":
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def response_object(request: ChatRequest, response_id: str, created: int, *, model: str | None = None,
                    status: str = "in_progress", output: list[dict[str, Any]] | None = None,
                    usage: Usage | None = None, error: dict[str, Any] | None = None,
                    incomplete: dict[str, Any] | None = None,
                    tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``response`` object the client sees (reply and stream events alike); ``tools`` is the
    request's tools as Responses JSON when the caller already built them."""
    extra = request.extra
    text: dict[str, Any] = {"format": {"type": "text"}}
    if isinstance(extra.get("text"), dict):
        text = dict(extra["text"])
    reasoning = extra.get("reasoning") if isinstance(extra.get("reasoning"), dict) else None
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": instructions_text(request),
        "max_output_tokens": request.max_tokens,
        "model": model or request.model,
        "output": output or [],
        "parallel_tool_calls": not (request.tool_choice and request.tool_choice.disable_parallel),
        "previous_response_id": extra.get("_previous_response_id"),
        "reasoning": reasoning or {"effort": None, "summary": None},
        "store": extra.get("store", True) is not False and not extra.get("_not_stored"),
        "temperature": request.temperature,
        "text": text,
        "tool_choice": tool_choice_json(request, same=True) or "auto",
        "tools": tools if tools is not None else tools_json(request, same=True),
        "top_p": request.top_p,
        "truncation": extra.get("truncation", "disabled"),
        "usage": usage_json(usage) if usage is not None else None,
        "metadata": request.metadata or {},
    }
    return body


def error_object(error: RouterError) -> dict[str, Any]:
    """The ``error`` of a failed response."""
    return {"code": error.code or error_type(error.kind, error.status), "message": error.message}


def reply_to_response(response: ChatResponse, request: ChatRequest, response_id: str, created: int,
                      ids: list[str | None] | None = None,
                      tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The complete ``response`` object for a finished reply."""
    status, incomplete = status_of(response.stop_reason)
    output = output_items(response.content, ToolMap(request.tools), ids)
    return response_object(request, response_id, created, model=response.model or request.model, status=status,
                           output=output, usage=response.usage, incomplete=incomplete, tools=tools)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


