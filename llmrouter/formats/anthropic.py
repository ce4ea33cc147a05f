"""Anthropic Messages (``POST /v1/messages``) as a client format and as an upstream format.

Client side: requests from Claude Code and the official SDKs are validated and parsed into a
:class:`ChatRequest`; every field without a canonical slot is kept (top-level fields in
``request.extra``, block fields such as ``cache_control`` in each part's ``extra``) so an
Anthropic-format provider receives them untouched. Replies, errors and streams are rendered back
in Anthropic's shapes.

Upstream side, choices worth knowing:

* Foreign extras are never forwarded: ``extra`` dicts and ``metadata`` are used only when the
  request came from an Anthropic client.
* Mid-conversation ``system`` messages stay in place for Anthropic clients (they sent them, with
  the matching beta header). From other formats they are appended to the top-level ``system``,
  because the stock Messages API rejects ``role: "system"`` turns.
* For other formats, empty text blocks and empty turns are dropped, consecutive same-role turns
  are merged and tool results are moved to the front of their user turn, as the API requires.
  Thinking blocks without a signature (e.g. another vendor's reasoning text) cannot be replayed
  and are dropped.
* Tool arguments that are not a JSON object (``ToolUsePart.raw_arguments``) are sent, rendered and
  streamed as ``{"_raw_arguments": "<text>"}``: ``input`` must be an object, and this keeps the
  model's text visible to the client, to its tool validation and to the model on the next turn.
* Block types the Messages API defines but the canonical model has no slot for (documents, search
  results, tool references, server-tool and MCP blocks, container uploads...; the full lists are
  :data:`OPAQUE_BLOCK_TYPES` and :data:`OPAQUE_TOOL_RESULT_BLOCK_TYPES`) become
  :class:`~llmrouter.models.OpaquePart` and reach Anthropic providers verbatim and in place (from
  any client format). Other providers get nothing for them, except documents with a plain-text
  source and search results: those carry a ``fallback_text`` (title, source, then the text) sent as
  a text part, so the model still reads them. Block types not in the lists are rejected (400), so
  typos and garbage still fail loudly. A text block's ``citations`` stay in its ``extra``.
* Structured output: a JSON schema becomes ``output_config.format``. Plain JSON mode (OpenAI
  ``json_object``, or ``json_schema`` without a schema) has no Anthropic form: structured outputs
  need a schema whose objects all close ``additionalProperties``, so "any object" cannot be said.
  It is dropped; the prompt already asks for JSON (OpenAI requires it to).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping
from typing import Any, NoReturn

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats.anthropic_stream import (
    RAW_ARGUMENTS_KEY,
    AnthropicStreamDecoder,
    AnthropicStreamRenderer,
    error_body,
    error_type_for,
    is_anthropic_opaque,
    message_id_for,
    response_block_to_part,
    stop_reason_from_wire,
    stop_reason_to_wire,
    text_block,
    tool_input,
    usage_from_wire,
    usage_to_wire,
)
from llmrouter.formats.base import ROUTER_FIELDS, ClientFormat, StreamDecoder, StreamRenderer, UpstreamFormat
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
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

__all__ = ["OPAQUE_BLOCK_TYPES", "OPAQUE_TOOL_RESULT_BLOCK_TYPES", "RAW_ARGUMENTS_KEY", "AnthropicFormat"]

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

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent upstream when the request has none (the Messages API requires it)."""

_FORWARDED_HEADERS = ("anthropic-beta", "anthropic-version")
_TOP_LEVEL_KEYS = frozenset({
    "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "temperature",
    "top_p", "stream", "metadata", "thinking", "output_config", "plugins",
})
_ROLES = ("user", "assistant", "system")
_TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
_TOOL_CHOICES_OUT = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}
_IMAGE_SIGNATURES = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
                     ("UklGR", "image/webp"))


class AnthropicFormat(ClientFormat, UpstreamFormat):
    """Anthropic Messages, both towards clients and towards providers."""

    name = "anthropic"

    # -- client side --------------------------------------------------------------------------

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        """Validate and convert a Messages request body (see :class:`ClientFormat`)."""
        return _RequestParser().parse(body, headers)

    def parse_count_tokens_request(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        """Validate and convert a ``/v1/messages/count_tokens`` body: a Messages request without
        ``max_tokens``, which is then optional."""
        return _RequestParser(require_max_tokens=False).parse(body, headers)

    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
        """A Messages ``Message`` object for ``response``."""
        content = [block for block in map(_response_block, response.content) if block is not None]
        return {
            "id": message_id_for(response.id),
            "type": "message",
            "role": "assistant",
            "model": response.model or request.model,
            "content": content,
            "stop_reason": stop_reason_to_wire(response.stop_reason),
            "stop_sequence": response.stop_sequence,
            "usage": usage_to_wire(response.usage),
        }

    def render_error(self, error: RouterError) -> dict[str, Any]:
        """``{"type": "error", "error": {"type", "message"}}`` with Anthropic's error types."""
        return error_body(error_type_for(error), error.message)

    def stream_renderer(self, request: ChatRequest) -> StreamRenderer:
        """An SSE renderer for one streamed reply to ``request``."""
        return AnthropicStreamRenderer(request.model)

    # -- upstream side ------------------------------------------------------------------------

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """A ``/v1/messages`` body for ``request`` (see module notes for the choices made)."""
        same = request.source_format == self.name
        system = list(request.system or [])
        if not same:
            for message in request.messages:
                if message.role == "system":
                    system.extend(p for p in message.content if isinstance(p, TextPart))
        body: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(request)}
        system_blocks = [_with_extra({"type": "text", "text": p.text}, p.extra, same)
                         for p in system if same or p.text]
        if system_blocks:
            body["system"] = system_blocks
        body["messages"] = _build_messages(request.messages, same)
        if request.tools:
            body["tools"] = [_build_tool(tool, same) for tool in request.tools]
        if request.tool_choice is not None and (request.tools or same):
            body["tool_choice"] = _build_tool_choice(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.stream:
            body["stream"] = True
        if request.thinking is not None:
            body["thinking"] = request.thinking
        if same and request.metadata is not None:
            body["metadata"] = request.metadata
        output_config = _build_output_config(request, same)
        if output_config is not None:
            body["output_config"] = output_config
        if same:
            for key, value in request.extra.items():
                if key not in body and key not in ROUTER_FIELDS:
                    body[key] = value
        return body

    def parse_response(self, body: Any) -> ChatResponse:
        """A Messages ``Message`` as a :class:`ChatResponse`.

        :raises ValueError: for anything that is not a message (an error body, a list...).
        """
        if not isinstance(body, dict):
            raise ValueError("Anthropic reply is not a JSON object")
        kind = body.get("type")
        if kind is not None and kind != "message":
            raise ValueError(f"Anthropic reply is not a message (type {kind!r})")
        content = body.get("content")
        if not isinstance(content, list):
            raise ValueError("Anthropic reply has no content list")
        sequence = body.get("stop_sequence")
        return ChatResponse(
            id=body.get("id") if isinstance(body.get("id"), str) else "",
            model=body.get("model") if isinstance(body.get("model"), str) else "",
            content=[part for part in map(response_block_to_part, content) if part is not None],
            stop_reason=stop_reason_from_wire(body.get("stop_reason")),
            stop_sequence=sequence if isinstance(sequence, str) else None,
            usage=usage_from_wire(body.get("usage")),
        )

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one Anthropic SSE reply."""
        return AnthropicStreamDecoder()


# ---------------------------------------------------------------------------------------------
# Request parsing (client -> canonical)
# ---------------------------------------------------------------------------------------------


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


class _RequestParser:
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

    def parse(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        if not isinstance(body, dict):
            _fail("body", "must be a JSON object")
        model = body.get("model")
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

        request = ChatRequest(
            model=model,
            max_tokens=max_tokens,
            messages=[self._message(m, f"messages[{i}]") for i, m in enumerate(messages)],
            system=self._system(body.get("system")),
            temperature=_get_number(body, "temperature"),
            top_p=_get_number(body, "top_p"),
            source_format="anthropic",
            extra={k: v for k, v in body.items() if k not in _TOP_LEVEL_KEYS},
            headers={k.lower(): v for k, v in headers.items() if k.lower() in _FORWARDED_HEADERS},
        )
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                _fail("tools", "must be a list")
            request.tools = [self._tool(t, f"tools[{i}]") for i, t in enumerate(tools)]
        choice = _get_object(body, "tool_choice", "tool_choice")
        if choice is not None:
            request.tool_choice = self._tool_choice(choice)
        stop = body.get("stop_sequences")
        if stop is not None:
            if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
                _fail("stop_sequences", "must be a list of strings")
            request.stop = stop
        stream = body.get("stream")
        if stream is not None:
            if not isinstance(stream, bool):
                _fail("stream", "must be a boolean")
            request.stream = stream
        request.metadata = _get_object(body, "metadata", "metadata")
        request.thinking = _get_object(body, "thinking", "thinking")
        output_config = _get_object(body, "output_config", "output_config")
        if output_config is not None:
            self._output_config(output_config, request)
        plugins = body.get("plugins")
        if plugins is not None:
            if not isinstance(plugins, list) or not all(isinstance(p, dict) for p in plugins):
                _fail("plugins", "must be a list of objects")
            request.plugins = plugins
        return request

    def _system(self, system: Any) -> list[TextPart] | None:
        if system is None:
            return None
        if isinstance(system, str):
            return [TextPart(text=system)]
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
            parts: list[Part] = [TextPart(text=content)]
        elif isinstance(content, list):
            parts = [self._block(b, f"{path}.content[{i}]") for i, b in enumerate(content)]
        else:
            _fail(f"{path}.content", "must be a string or a list of content blocks")
        return Message(role=role, content=parts, extra=_extra(message, self._MESSAGE))

    def _block(self, block: Any, path: str, *, nested: bool = False) -> Part:
        if not isinstance(block, dict):
            _fail(path, "must be an object")
        kind = block.get("type")
        if kind == "text":
            return self._text(block, path)
        if kind == "image":
            return self._image(block, path)
        if kind in (OPAQUE_TOOL_RESULT_BLOCK_TYPES if nested else OPAQUE_BLOCK_TYPES):
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
        return TextPart(text=_get_str(block, "text", path) or "", extra=_extra(block, self._TEXT))

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


def _fallback_text(block: dict[str, Any]) -> str | None:
    """Plain text standing in for a document or search result at providers of other formats:
    header lines (title; a search result's source), a blank line, then the text. ``None`` for
    blocks without a textual form (PDFs, images, server-tool blocks...)."""
    kind = block.get("type")
    if kind == "document":
        body = _document_text(block.get("source"))
        headers = [block.get("title")]
    elif kind == "search_result":
        body = _joined_text(block.get("content"))
        headers = [block.get("title"), block.get("source")]
    else:
        return None
    if body is None:
        return None
    header = "\n".join(h for h in headers if isinstance(h, str) and h)
    return f"{header}\n\n{body}" if header else body


def _document_text(source: Any) -> str | None:
    if not isinstance(source, dict):
        return None
    kind, data = source.get("type"), source.get("data")
    if kind == "text" and isinstance(data, str):
        return data
    if kind == "content":
        return _joined_text(source.get("content"))
    media_type = source.get("media_type")
    if kind == "base64" and isinstance(data, str) and isinstance(media_type, str) \
            and media_type.split(";")[0].strip() == "text/plain":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
        except ValueError:
            return None
    return None


def _joined_text(content: Any) -> str | None:
    """The text of a string or of a list of text blocks (non-text blocks skipped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"
             and isinstance(b.get("text"), str)]
    return "\n".join(texts) if texts else None


# ---------------------------------------------------------------------------------------------
# Request building (canonical -> provider)
# ---------------------------------------------------------------------------------------------


def _with_extra(block: dict[str, Any], extra: dict[str, Any], same: bool) -> dict[str, Any]:
    if same:
        for key, value in extra.items():
            block.setdefault(key, value)
    return block


def _max_tokens(request: ChatRequest) -> int:
    if request.max_tokens is not None:
        return request.max_tokens
    budget = (request.thinking or {}).get("budget_tokens")
    # Anthropic requires max_tokens > thinking budget; leave room for the answer itself.
    if isinstance(budget, int) and budget >= DEFAULT_MAX_TOKENS:
        return budget + DEFAULT_MAX_TOKENS
    return DEFAULT_MAX_TOKENS


def _build_messages(messages: list[Message], same: bool) -> list[dict[str, Any]]:
    built: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system" and not same:
            continue  # moved into the top-level system by the caller
        blocks = [b for b in (_request_block(p, same) for p in message.content) if b is not None]
        if not same and not blocks:
            continue
        if built and built[-1]["role"] == message.role:
            built[-1]["content"].extend(blocks)
            if same:
                _with_extra(built[-1], message.extra, same)
            continue
        built.append(_with_extra({"role": message.role, "content": blocks}, message.extra, same))
    for entry in built:
        content = entry["content"]
        if not same and entry["role"] == "user":
            content.sort(key=lambda block: block.get("type") != "tool_result")
        if len(content) == 1 and content[0].get("type") == "text" and content[0].keys() == {"type", "text"}:
            entry["content"] = content[0]["text"]
    return built


def _request_block(part: Part, same: bool) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        if not same and not part.text:
            return None
        return _with_extra({"type": "text", "text": part.text}, part.extra, same)
    if isinstance(part, ImagePart):
        source = _image_source(part)
        if source is None:
            return None
        return _with_extra({"type": "image", "source": source}, part.extra, same)
    if isinstance(part, ToolUsePart):
        block = {"type": "tool_use", "id": part.id, "name": part.name, "input": tool_input(part)}
        return _with_extra(block, part.extra, same)
    if isinstance(part, ToolResultPart):
        return _tool_result_block(part, same)
    if isinstance(part, ThinkingPart):
        if part.redacted is not None:
            return _with_extra({"type": "redacted_thinking", "data": part.redacted}, part.extra, same)
        if part.signature:
            block = {"type": "thinking", "thinking": part.thinking, "signature": part.signature}
            return _with_extra(block, part.extra, same)
    if isinstance(part, OpaquePart):
        if part.format == "anthropic":
            return dict(part.data)  # an Anthropic block wherever it came from: sent as it was
        text = part.as_text()
        return None if text is None else _request_block(text, same)
    return None


def _tool_result_block(part: ToolResultPart, same: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_use_id}
    inner = [b for b in (_request_block(p, same) for p in part.content) if b is not None]
    if len(inner) == 1 and inner[0].get("type") == "text" and inner[0].keys() == {"type", "text"}:
        block["content"] = inner[0]["text"]
    elif inner:
        block["content"] = inner
    if part.is_error:
        block["is_error"] = True
    return _with_extra(block, part.extra, same)


def _image_source(part: ImagePart) -> dict[str, Any] | None:
    if part.data:
        media_type = part.media_type or _sniff_media_type(part.data)
        return {"type": "base64", "media_type": media_type, "data": part.data}
    if not part.url:
        return None
    if part.url.startswith("data:"):
        header, _, payload = part.url[5:].partition(",")
        media_type, *params = header.split(";")
        if "base64" not in params:
            payload = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
        return {"type": "base64", "media_type": media_type or _sniff_media_type(payload), "data": payload}
    return {"type": "url", "url": part.url}


def _sniff_media_type(data: str) -> str:
    for prefix, media_type in _IMAGE_SIGNATURES:
        if data.startswith(prefix):
            return media_type
    return "image/png"


def _build_tool(tool: Tool, same: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        block["description"] = tool.description
    # Server tools (web_search_...) carry a versioned ``type`` and take no input_schema.
    if not (same and tool.extra.get("type") not in (None, "custom")):
        block["input_schema"] = tool.input_schema
    return _with_extra(block, tool.extra, same)


def _build_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    built: dict[str, Any] = {"type": _TOOL_CHOICES_OUT[choice.type]}
    if choice.type == "tool" and choice.name:
        built["name"] = choice.name
    if choice.disable_parallel is not None:
        built["disable_parallel_tool_use"] = choice.disable_parallel
    return built


def _build_output_config(request: ChatRequest, same: bool) -> dict[str, Any] | None:
    config: dict[str, Any] = {}
    if same and isinstance(request.extra.get("output_config"), dict):
        config.update(request.extra["output_config"])
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.schema_:
        config["format"] = {"type": "json_schema", "schema": fmt.schema_}
    return config or None


# ---------------------------------------------------------------------------------------------
# Reply rendering (canonical -> client)
# ---------------------------------------------------------------------------------------------


def _response_block(part: Part) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return text_block(part)
    if is_anthropic_opaque(part):
        return part.data
    if isinstance(part, ToolUsePart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": tool_input(part)}
    if isinstance(part, ThinkingPart):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        return {"type": "thinking", "thinking": part.thinking, "signature": part.signature or ""}
    return None  # images, tool results and other formats' opaque blocks never appear in a reply
