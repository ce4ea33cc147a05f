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
from typing import Any

from llmrouter.errors import RouterError
from llmrouter.formats import gate
from llmrouter.formats.anthropic_request import (
    OPAQUE_BLOCK_TYPES,
    OPAQUE_TOOL_RESULT_BLOCK_TYPES,
    MessagesRequestParser,
)
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
from llmrouter.formats.checked import checked_response, checked_text
from llmrouter.formats.gate import Gated
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
)

_TEXT_KEYS = frozenset({"type", "text"})

__all__ = ["OPAQUE_BLOCK_TYPES", "OPAQUE_TOOL_RESULT_BLOCK_TYPES", "RAW_ARGUMENTS_KEY", "AnthropicFormat"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent upstream when the request has none (the Messages API requires it)."""

_TOOL_CHOICES_OUT = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}
_IMAGE_SIGNATURES = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"),
                     ("UklGR", "image/webp"))


_PARSER = MessagesRequestParser()
"""The Messages request parser (it keeps nothing between requests)."""


class AnthropicFormat(ClientFormat, UpstreamFormat):
    """Anthropic Messages, both towards clients and towards providers."""

    name = "anthropic"

    # -- client side --------------------------------------------------------------------------

    def gate(self, body: Any) -> Gated | None:
        """The C-speed gate's verdict on a Messages ``body`` (see :func:`gate.anthropic`)."""
        return gate.anthropic(body)

    def parse_request(self, body: Any, headers: Mapping[str, str], gated: Gated | None = None) -> ChatRequest:
        """Validate and convert a Messages request body (see :class:`ClientFormat`)."""
        return _PARSER.parse(body, headers, gated)

    def parse_count_tokens_request(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        """Validate and convert a ``/v1/messages/count_tokens`` body: a Messages request without
        ``max_tokens``, which is then optional."""
        return MessagesRequestParser(require_max_tokens=False).parse(body, headers)

    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
        """A Messages ``Message`` object for ``response``."""
        content = []
        for part in response.content:
            if type(part) is TextPart and "citations" not in part.extra:
                content.append({"type": "text", "text": part.text})  # (text_block() for the usual part)
            else:
                block = _response_block(part)
                if block is not None:
                    content.append(block)
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
        parts: list[Part] = []
        for block in content:
            if type(block) is dict and block.get("type") == "text" and block.keys() <= _TEXT_KEYS:
                # The usual block, as response_block_to_part() converts it, without the call.
                text = block.get("text")
                parts.append(checked_text(text if isinstance(text, str) else "", {}))
            else:
                part = response_block_to_part(block)
                if part is not None:
                    parts.append(part)
        sequence = body.get("stop_sequence")
        reply_id, model = body.get("id"), body.get("model")
        return checked_response(
            reply_id if isinstance(reply_id, str) else "",
            model if isinstance(model, str) else "",
            parts,
            stop_reason_from_wire(body.get("stop_reason")),
            usage_from_wire(body.get("usage")),
            stop_sequence=sequence if isinstance(sequence, str) else None,
        )

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one Anthropic SSE reply."""
        return AnthropicStreamDecoder()


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
