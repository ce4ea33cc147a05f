"""Anthropic Messages streaming (SSE) in both directions, plus the small wire helpers both the
streaming and the non-streaming halves of :mod:`llmrouter.formats.anthropic` share.

Renderer choices worth knowing:

* Output block indices are renumbered ``0, 1, 2...`` in start order: Anthropic clients (the
  official SDKs included) address blocks by list position, so gaps or out-of-order indices in
  the canonical stream would break them.
* Tool-call arguments are buffered per block and sent as one ``input_json_delta`` at the block's
  end. That lets the renderer check them: arguments that are not a JSON object (common with small
  local models) are sent as ``{"_raw_arguments": "<text>"}`` instead of crashing the client's
  JSON parser, matching what the non-streaming reply does.
* Blocks still open when ``message_delta`` or ``message_stop`` arrives are closed first, and a
  ``message_start`` is synthesised if the canonical stream lacks one.
* Anthropic streams one block at a time, but canonical blocks may overlap (an OpenAI upstream's
  parallel tool calls stay open together, see :mod:`llmrouter.formats.openai_stream`). Only the
  oldest open block is live; the events of later ones are held and replayed, in order, as soon as
  every block before them has stopped.

* Opaque Anthropic blocks (server tools, search results...) are sent as they came: their
  ``content_block_start`` carries the block, their deltas (``input_json_delta`` of a
  ``server_tool_use``...) are reproduced unbuffered, and so are opaque deltas on other blocks (a
  text block's ``citations_delta``). Opaque blocks and deltas of other formats are left out.

Decoder choices: blocks the canonical model cannot hold (``server_tool_use``,
``web_search_tool_result``, any block type newer than this module) become
:class:`~llmrouter.models.OpaquePart` and every delta they receive an opaque delta, as do delta
types without a canonical field (``citations_delta``...). Indices are kept as sent. When the
upstream closes without ``message_stop``, open blocks are closed and a ``MessageStop`` is
emitted, but only if the stream had started; no ``MessageDelta`` is invented, so the accumulated
reply keeps ``stop_reason=None`` and callers can tell it was cut short.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeGuard

from llmrouter.errors import ProviderError, RouterError
from llmrouter.formats.base import SSEStreamDecoder, StreamRenderer
from llmrouter.formats.checked import checked_text, checked_usage
from llmrouter.formats.fields import count, count_or_none
from llmrouter.jsonutil import dumps, dumps_str, loads, loads_object_or_none
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    Part,
    StopReason,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolUsePart,
    Usage,
)

RAW_ARGUMENTS_KEY = "_raw_arguments"
"""Key under which tool arguments that are not a JSON object are sent in a ``tool_use`` input."""

# ---------------------------------------------------------------------------------------------
# Shared wire helpers
# ---------------------------------------------------------------------------------------------

_CANONICAL_STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}
_STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ERROR_TYPES = set(_STATUS_ERROR_TYPES.values()) | {"api_error"}


def new_message_id() -> str:
    """A fresh Anthropic-style message id (``msg_`` and 24 alphanumerics)."""
    return "msg_" + uuid.uuid4().hex[:24]


def message_id_for(response_id: str) -> str:
    """``response_id`` when it already looks like an Anthropic message id, else a new one."""
    return response_id if response_id.startswith("msg_") else new_message_id()


def stop_reason_to_wire(reason: StopReason | None) -> str | None:
    """Canonical stop reason as Anthropic spells it; ``error`` has no Anthropic value and becomes
    ``end_turn`` (a mid-stream failure is reported separately as an ``error`` event)."""
    if reason == "error":
        return "end_turn"
    return reason


def stop_reason_from_wire(reason: Any) -> StopReason | None:
    """Anthropic stop reason to canonical (unknown values fall back to ``end_turn``)."""
    if reason is None:
        return None
    if reason in _CANONICAL_STOP_REASONS:
        return reason  # type: ignore[no-any-return]
    if reason == "model_context_window_exceeded":
        return "max_tokens"
    return "end_turn"


def usage_to_wire(usage: Usage) -> dict[str, int]:
    """A Message ``usage`` object; cache figures only when known."""
    wire = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    if usage.cache_creation_input_tokens is not None or usage.cache_read_input_tokens is not None:
        _add_cache_usage(wire, usage)
    return wire


def _add_cache_usage(wire: dict[str, int], usage: Usage) -> None:
    if usage.cache_creation_input_tokens is not None:
        wire["cache_creation_input_tokens"] = usage.cache_creation_input_tokens
    if usage.cache_read_input_tokens is not None:
        wire["cache_read_input_tokens"] = usage.cache_read_input_tokens


def usage_from_wire(usage: Any) -> Usage:
    """Read an Anthropic usage object (missing or null counts are zero / unknown)."""
    if not isinstance(usage, dict):
        return Usage()
    get = usage.get
    # (exactly int or absent, the usual values: no call; anything else as count()/count_or_none() read it)
    inputs, outputs = get("input_tokens"), get("output_tokens")
    read, created = get("cache_read_input_tokens"), get("cache_creation_input_tokens")
    return checked_usage(inputs if type(inputs) is int else count(inputs),
                         outputs if type(outputs) is int else count(outputs),
                         read if read is None or type(read) is int else count_or_none(read),
                         created if created is None or type(created) is int else count_or_none(created))


def error_type_for(error: RouterError) -> str:
    """The Anthropic error ``type`` for a router error.

    Provider rate limits (429) and overloads (529) keep their meaning so clients back off and retry
    as they would against Anthropic; otherwise a known ``kind`` is used as is and anything else is
    derived from the HTTP status.
    """
    if isinstance(error, ProviderError) and error.upstream_status in (429, 529):
        return _STATUS_ERROR_TYPES[error.upstream_status]
    if error.kind in _ERROR_TYPES:
        return error.kind
    if error.status in _STATUS_ERROR_TYPES:
        return _STATUS_ERROR_TYPES[error.status]
    return "invalid_request_error" if 400 <= error.status < 500 else "api_error"


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def tool_input(part: ToolUsePart) -> dict[str, Any]:
    """The ``input`` object for a tool call; unparseable arguments go under :data:`RAW_ARGUMENTS_KEY`."""
    if part.raw_arguments is None:
        return part.input or {}
    return tool_input_from_text(part.raw_arguments)


def tool_input_from_text(raw: str) -> dict[str, Any]:
    """Parse tool arguments text into an ``input`` object, keeping invalid text under the raw key."""
    if not raw.strip():
        return {}
    parsed = loads_object_or_none(raw)
    return parsed if parsed is not None else {RAW_ARGUMENTS_KEY: raw}


_TEXT_KEYS = frozenset({"type", "text"})
_TOOL_USE_KEYS = frozenset({"type", "id", "name", "input"})
_THINKING_KEYS = frozenset({"type", "thinking", "signature"})
_REDACTED_KEYS = frozenset({"type", "data"})


def _extra(block: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    if block.keys() <= known:  # the usual block: nothing extra (a C-level check, no loop)
        return {}
    return {k: v for k, v in block.items() if k not in known}


def response_block_to_part(block: Any) -> Part | None:
    """A content block of an Anthropic reply (or a stream's ``content_block_start``) as a canonical
    part. Block types without a canonical slot (server tools and their results, MCP blocks,
    container uploads, types newer than this module: the provider is the authority on what it
    sends) become an :class:`OpaquePart`; ``None`` only for something that is not a block at all."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if not isinstance(kind, str):
        return None
    if kind == "text":
        return checked_text(_as_str(block.get("text")), _extra(block, _TEXT_KEYS))
    if kind == "tool_use":
        raw_input = block.get("input")
        part = ToolUsePart(id=_as_str(block.get("id")), name=_as_str(block.get("name")),
                           extra=_extra(block, _TOOL_USE_KEYS))
        if isinstance(raw_input, dict):
            part.input = raw_input
        elif isinstance(raw_input, str) and raw_input.strip():
            parsed = loads_object_or_none(raw_input)
            part.input, part.raw_arguments = (parsed, None) if parsed is not None else (None, raw_input)
        else:
            part.input = {}
        return part
    if kind == "thinking":
        signature = block.get("signature")
        return ThinkingPart(thinking=_as_str(block.get("thinking")),
                            signature=signature if isinstance(signature, str) else None,
                            extra=_extra(block, _THINKING_KEYS))
    if kind == "redacted_thinking":
        return ThinkingPart(redacted=_as_str(block.get("data")), extra=_extra(block, _REDACTED_KEYS))
    return OpaquePart(format="anthropic", data=block)


def text_block(part: TextPart) -> dict[str, Any]:
    """A reply's ``text`` block for ``part``, with the ``citations`` an Anthropic provider gave it."""
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if "citations" in part.extra:
        block["citations"] = part.extra["citations"]
    return block


def is_anthropic_opaque(part: Any) -> TypeGuard[OpaquePart]:
    """Whether ``part`` is an opaque block in Anthropic's format (sent to Anthropic clients verbatim)."""
    return isinstance(part, OpaquePart) and part.format == "anthropic"


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _renders(part: Part) -> bool:
    """Whether a block of this part appears in an Anthropic client's stream (images and tool
    results never appear in assistant output; nor do opaque blocks of other formats)."""
    return isinstance(part, TextPart | ToolUsePart | ThinkingPart) or is_anthropic_opaque(part)


def sse_frame(event_type: str, data: dict[str, Any]) -> bytes:
    """One SSE frame: ``event: <type>`` and the JSON ``data`` line."""
    return b"event: " + event_type.encode() + b"\ndata: " + dumps(data) + b"\n\n"


# ---------------------------------------------------------------------------------------------
# Renderer: canonical events -> Anthropic SSE for clients
# ---------------------------------------------------------------------------------------------

_PING = sse_frame("ping", {"type": "ping"})


class AnthropicStreamRenderer(StreamRenderer):
    """Renders one canonical event stream as Anthropic Messages SSE (see module notes)."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._finished = False
        self._output_index: dict[int, int] = {}
        self._kinds: dict[int, str] = {}
        self._open: list[int] = []
        self._tool_json: dict[int, list[str]] = {}
        self._queue: list[int] = []  # canonical indices started and not yet stopped, oldest (live) first
        self._held: dict[int, list[StreamEvent]] = {}  # events of blocks waiting behind the live one
        self._output_tokens = 0

    def keepalive(self) -> bytes:
        """Anthropic's ``ping`` event."""
        return _PING

    def render_error(self, error: RouterError) -> bytes:
        """An ``error`` event; nothing is rendered after it."""
        self._finished = True
        return sse_frame("error", error_body(error_type_for(error), error.message))

    def render(self, event: StreamEvent) -> bytes:
        """SSE bytes for ``event`` (``b""`` for events that say nothing to an Anthropic client)."""
        if self._finished:
            return b""
        if isinstance(event, StreamError):
            self._finished = True
            return sse_frame("error", error_body(event.error_type, event.message))
        if isinstance(event, MessageStart):
            return b"" if self._started else self._message_start(event)
        prefix = b"" if self._started else self._message_start(MessageStart())
        if isinstance(event, BlockStart | BlockDelta | BlockStop):
            return prefix + self._block_event(event)
        if isinstance(event, MessageDelta):
            return prefix + self._close_all() + self._message_delta(event)
        if isinstance(event, MessageStop):
            self._finished = True
            return prefix + self._close_all() + sse_frame("message_stop", {"type": "message_stop"})
        return prefix

    def _message_start(self, event: MessageStart) -> bytes:
        self._started = True
        self._output_tokens = event.usage.output_tokens
        message = {
            "id": message_id_for(event.id), "type": "message", "role": "assistant",
            "model": event.model or self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage_to_wire(event.usage),
        }
        return sse_frame("message_start", {"type": "message_start", "message": message})

    def _block_event(self, event: BlockStart | BlockDelta | BlockStop) -> bytes:
        """Render the event if its block is live, else hold it until the blocks before it stop."""
        index = event.index
        if isinstance(event, BlockStart):
            if index in self._held or index in self._output_index or not _renders(event.part):
                return b""
            self._queue.append(index)
            self._held[index] = []
        if index not in self._held:
            return b""  # a block never started, already finished, or not shown to Anthropic clients
        if self._queue[0] != index:
            self._held[index].append(event)
            return b""
        out = self._live(event)
        if isinstance(event, BlockStop):
            out += self._advance()
        return out

    def _advance(self) -> bytes:
        """The live block stopped: retire it and replay what the blocks behind it sent meanwhile."""
        self._held.pop(self._queue.pop(0))
        out = b""
        while self._queue:
            index = self._queue[0]
            held, self._held[index] = self._held[index], []
            stopped = False
            for event in held:
                out += self._live(event)
                if isinstance(event, BlockStop):
                    stopped = True
                    break
            if not stopped:
                break  # this block is live now; its next events render directly
            self._held.pop(self._queue.pop(0))
        return out

    def _live(self, event: BlockStart | BlockDelta | BlockStop) -> bytes:
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, BlockDelta):
            return self._block_delta(event)
        return self._block_stop(event.index)

    def _block_start(self, event: BlockStart) -> bytes:
        index, part = event.index, event.part
        follow: list[BlockDelta] = []
        if isinstance(part, TextPart):
            kind, block = "text", text_block(TextPart(text="", extra=part.extra))
            if part.text:
                follow.append(BlockDelta(index=index, text=part.text))
        elif isinstance(part, ToolUsePart):
            kind, block = "tool_use", {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
            self._tool_json[index] = []
            if part.raw_arguments is not None or part.input:
                follow.append(BlockDelta(index=index, partial_json=part.arguments_json()))
        elif isinstance(part, ThinkingPart) and part.redacted is not None:
            kind, block = "redacted_thinking", {"type": "redacted_thinking", "data": part.redacted}
        elif isinstance(part, ThinkingPart):
            kind, block = "thinking", {"type": "thinking", "thinking": "", "signature": ""}
            if part.thinking:
                follow.append(BlockDelta(index=index, thinking=part.thinking))
            if part.signature:
                follow.append(BlockDelta(index=index, signature=part.signature))
        elif is_anthropic_opaque(part):
            kind, block = "opaque", part.data
        else:
            return b""  # images and tool results never appear in assistant output
        self._output_index[index] = len(self._output_index)
        self._kinds[index] = kind
        self._open.append(index)
        frame = sse_frame("content_block_start", {"type": "content_block_start",
                                                  "index": self._output_index[index], "content_block": block})
        return frame + b"".join(self._block_delta(delta) for delta in follow)

    def _block_delta(self, event: BlockDelta) -> bytes:
        index = event.index
        if index not in self._open:
            return b""
        kind = self._kinds[index]
        if event.opaque is not None:
            if event.opaque.format != "anthropic":
                return b""
            delta: dict[str, Any] = event.opaque.data
        elif kind == "text" and event.text is not None:
            delta = {"type": "text_delta", "text": event.text}
        elif kind == "tool_use" and event.partial_json is not None:
            self._tool_json[index].append(event.partial_json)
            return b""
        elif kind == "thinking" and event.thinking is not None:
            delta = {"type": "thinking_delta", "thinking": event.thinking}
        elif kind == "thinking" and event.signature is not None:
            delta = {"type": "signature_delta", "signature": event.signature}
        else:
            return b""
        return sse_frame("content_block_delta", {"type": "content_block_delta",
                                                 "index": self._output_index[index], "delta": delta})

    def _block_stop(self, index: int) -> bytes:
        if index not in self._open:
            return b""
        self._open.remove(index)
        out_index = self._output_index[index]
        frames = b""
        chunks = self._tool_json.pop(index, None)
        if chunks:
            raw = "".join(chunks)
            if raw.strip():
                # Valid JSON passes through verbatim; anything else is wrapped so clients can parse it.
                text = raw if loads_object_or_none(raw) is not None else dumps_str(tool_input_from_text(raw))
                frames = sse_frame("content_block_delta", {
                    "type": "content_block_delta", "index": out_index,
                    "delta": {"type": "input_json_delta", "partial_json": text}})
        return frames + sse_frame("content_block_stop", {"type": "content_block_stop", "index": out_index})

    def _close_all(self) -> bytes:
        out = b""
        while self._queue:
            out += self._block_event(BlockStop(index=self._queue[0]))
        return out

    def _message_delta(self, event: MessageDelta) -> bytes:
        usage: dict[str, int] = {}
        if event.usage is not None:
            if event.usage.input_tokens:
                usage["input_tokens"] = event.usage.input_tokens
            usage["output_tokens"] = event.usage.output_tokens or self._output_tokens
            _add_cache_usage(usage, event.usage)
        else:
            usage["output_tokens"] = self._output_tokens
        return sse_frame("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason_to_wire(event.stop_reason), "stop_sequence": event.stop_sequence},
            "usage": usage,
        })


# ---------------------------------------------------------------------------------------------
# Decoder: Anthropic SSE from providers -> canonical events
# ---------------------------------------------------------------------------------------------


class AnthropicStreamDecoder(SSEStreamDecoder):
    """Decodes one Anthropic Messages SSE stream, fed in arbitrary byte chunks (see module notes)."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._done = False
        self._open: list[int] = []
        self._opaque: set[int] = set()  # indices of open blocks decoded as OpaquePart

    def close(self) -> list[StreamEvent]:
        """Flush the last frame; finish a stream that ended without ``message_stop``."""
        events = self._flush()
        if self._started and not self._done:
            self._finish(events)
        return events

    def _finish(self, events: list[StreamEvent]) -> None:
        events.extend(BlockStop(index=index) for index in self._open)
        self._open.clear()
        events.append(MessageStop())
        self._done = True

    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        if self._done or not payload.strip():
            return
        try:
            data = loads(payload)
        except ValueError:
            self._done = True
            events.append(StreamError(message=f"invalid JSON in upstream stream event {name or ''!r}".strip()))
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type") or name
        if kind == "message_start":
            message = data.get("message") if isinstance(data.get("message"), dict) else {}
            self._started = True
            events.append(MessageStart(id=_as_str(message.get("id")), model=_as_str(message.get("model")),
                                       usage=usage_from_wire(message.get("usage"))))
        elif kind == "content_block_start":
            self._block_start(data, events)
        elif kind == "content_block_delta":
            self._block_delta(data, events)
        elif kind == "content_block_stop":
            index = data.get("index")
            if index in self._open:
                self._open.remove(index)
                self._opaque.discard(index)
                events.append(BlockStop(index=index))
        elif kind == "message_delta":
            delta = data.get("delta") if isinstance(data.get("delta"), dict) else {}
            sequence = delta.get("stop_sequence")
            events.append(MessageDelta(
                stop_reason=stop_reason_from_wire(delta.get("stop_reason")),
                stop_sequence=sequence if isinstance(sequence, str) else None,
                usage=usage_from_wire(data["usage"]) if isinstance(data.get("usage"), dict) else None))
        elif kind == "message_stop":
            self._finish(events)
        elif kind == "error":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            self._done = True
            events.append(StreamError(message=_as_str(error.get("message")) or "upstream stream error",
                                      error_type=_as_str(error.get("type")) or "api_error"))

    def _block_start(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        index = data.get("index")
        if not isinstance(index, int) or index in self._open:
            return
        part = response_block_to_part(data.get("content_block"))
        if part is None:
            return
        self._started = True
        self._open.append(index)
        if isinstance(part, OpaquePart):
            self._opaque.add(index)
        else:
            self._opaque.discard(index)
        events.append(BlockStart(index=index, part=part))

    def _block_delta(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        index = data.get("index")
        delta = data.get("delta")
        if index not in self._open or not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if index in self._opaque:
            events.append(BlockDelta(index=index, opaque=OpaquePart(format="anthropic", data=delta)))
        elif kind == "text_delta":
            events.append(BlockDelta(index=index, text=_as_str(delta.get("text"))))
        elif kind == "input_json_delta":
            events.append(BlockDelta(index=index, partial_json=_as_str(delta.get("partial_json"))))
        elif kind == "thinking_delta":
            events.append(BlockDelta(index=index, thinking=_as_str(delta.get("thinking"))))
        elif kind == "signature_delta":
            events.append(BlockDelta(index=index, signature=_as_str(delta.get("signature"))))
        elif isinstance(kind, str):
            events.append(BlockDelta(index=index, opaque=OpaquePart(format="anthropic", data=delta)))
