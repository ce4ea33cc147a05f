"""Ollama's native chat API (``POST {base_url}/api/chat``), spoken by the router to providers only.

Conversion choices worth knowing:

* Ollama messages carry one ``content`` string, so several text parts of a message are joined with a
  blank line, as system blocks are.
* A system message that is not first becomes user text in place, and leading ones merge into the
  one leading system message (see :mod:`llmrouter.formats.system_messages`), unless the provider
  sets ``late_system = "keep"``.
* Ollama accepts only inline base64 images. Data URLs are decoded into ``images``; an image given
  by an http(s) URL cannot be sent, so it is replaced by a short text note naming the URL instead
  of failing the whole request.
* Tool results become ``tool`` messages (with ``tool_name`` when the matching tool call is known);
  Ollama has no error flag, so a failed tool result is prefixed with ``Error:``.
* Thinking parts of earlier turns are not sent back; ``think: true`` is set when the request
  enables thinking. ``tool_choice = none`` is honoured by not sending tools; other tool choices
  have no Ollama equivalent and are ignored.
* No client speaks Ollama, so ``extra`` fields (from other formats) are always dropped, and so
  are opaque parts (PDF documents, server-tool blocks, audio...), except that one with a
  ``fallback_text`` (a plain-text document, a search result) is sent as that text.
* Ollama replies carry no message id: one is generated (``ollama-<hex>``), and tool calls without
  an ``id`` get ``call_<hex>``.
* A stream that ends without its ``done: true`` line is finished as if it had ended normally
  (open blocks closed, ``end_turn``, or ``tool_use`` if a tool was called); transport failures
  surface separately as errors from the HTTP client.
"""

from __future__ import annotations

import base64
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import orjson

from llmrouter.formats.base import StreamDecoder, UpstreamFormat, tool_call_part
from llmrouter.formats.system_messages import LateSystem, fold_system_messages
from llmrouter.jsonutil import loads_object_or_none
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
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
    ToolResultPart,
    ToolUsePart,
    Usage,
)

if TYPE_CHECKING:
    from llmrouter.config import ProviderConfig

_JOINER = "\n\n"


def _new_message_id() -> str:
    return f"ollama-{uuid.uuid4().hex[:24]}"


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def _image_base64(image: ImagePart) -> str | None:
    """The image as plain base64, or ``None`` when it is only reachable by a (non-data) URL."""
    if image.data:
        return image.data
    url = image.url or ""
    if not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    if header.endswith(";base64"):
        return payload
    return base64.b64encode(unquote_to_bytes(payload)).decode("ascii")


class _Content:
    """Collects the text pieces and images of one Ollama message."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.images: list[str] = []

    def add(self, part: TextPart | ImagePart | OpaquePart) -> None:
        if isinstance(part, OpaquePart):
            if part.fallback_text is not None:
                self.texts.append(part.fallback_text)
            return
        if isinstance(part, TextPart):
            self.texts.append(part.text)
            return
        encoded = _image_base64(part)
        if encoded is None:
            self.texts.append(f"[image not sent: {part.url} (Ollama accepts only inline images)]")
        else:
            self.images.append(encoded)

    def __bool__(self) -> bool:
        return bool(self.texts or self.images)

    def message(self, role: str, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"role": role, "content": prefix + _JOINER.join(self.texts)}
        if self.images:
            out["images"] = self.images
        return out


def _tool_arguments(part: ToolUsePart) -> dict[str, Any]:
    """Ollama wants arguments as an object; invalid raw JSON cannot be expressed and becomes ``{}``."""
    if part.input is not None:
        return part.input
    if part.raw_arguments is not None:
        return loads_object_or_none(part.raw_arguments) or {}
    return {}


def _convert_message(message: Message, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    """One canonical message as one or more Ollama messages (tool results split out, in order)."""
    if message.role == "assistant":
        content = _Content()
        calls: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart | ImagePart):
                content.add(part)
            elif isinstance(part, ToolUsePart):
                tool_names[part.id] = part.name
                calls.append({"function": {"name": part.name, "arguments": _tool_arguments(part)}})
        out = content.message("assistant")
        if calls:
            out["tool_calls"] = calls
        return [out]

    result: list[dict[str, Any]] = []
    pending = _Content()
    for part in message.content:
        if isinstance(part, TextPart | ImagePart | OpaquePart):
            pending.add(part)
        elif isinstance(part, ToolResultPart):
            if pending:
                result.append(pending.message(message.role))
                pending = _Content()
            tool_content = _Content()
            for inner in part.content:
                tool_content.add(inner)
            tool_message = tool_content.message("tool", "Error: " if part.is_error else "")
            name = tool_names.get(part.tool_use_id)
            if name is not None:
                tool_message["tool_name"] = name
            result.append(tool_message)
    if pending or not result:
        result.append(pending.message(message.role))
    return result


def _thinking_enabled(thinking: dict[str, Any] | None) -> bool:
    return thinking is not None and bool(thinking) and thinking.get("type") != "disabled"


class OllamaFormat(UpstreamFormat):
    """Builds ``/api/chat`` requests and decodes Ollama's replies and NDJSON streams."""

    name = "ollama"

    def __init__(self, late_system: LateSystem = "user") -> None:
        self.late_system = late_system

    def for_provider(self, config: ProviderConfig) -> OllamaFormat:
        """This format with the provider's ``late_system`` setting (itself when it matches)."""
        return self if config.late_system == self.late_system else type(self)(config.late_system)

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The ``/api/chat`` body for ``request`` sent to ``model`` (see the module notes)."""
        if self.late_system == "user":
            request = fold_system_messages(request)
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system_text()})
        tool_names: dict[str, str] = {}
        for message in request.messages:
            messages.extend(_convert_message(message, tool_names))

        body: dict[str, Any] = {"model": model, "messages": messages}
        if request.tools and not (request.tool_choice and request.tool_choice.type == "none"):
            body["tools"] = [self._tool(tool.name, tool.description, tool.input_schema) for tool in request.tools]
        body["stream"] = request.stream

        response_format = request.response_format
        if response_format is not None:
            if response_format.type == "json_schema" and response_format.schema_:
                body["format"] = response_format.schema_
            elif response_format.type in ("json_object", "json_schema"):
                body["format"] = "json"

        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        if options:
            body["options"] = options
        if _thinking_enabled(request.thinking):
            body["think"] = True
        return body

    @staticmethod
    def _tool(name: str, description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
        function: dict[str, Any] = {"name": name}
        if description is not None:
            function["description"] = description
        function["parameters"] = schema
        return {"type": "function", "function": function}

    def parse_response(self, body: Any) -> ChatResponse:
        """Convert a non-streaming ``/api/chat`` reply; :class:`ValueError` for anything else."""
        message = _chat_message(body)
        content: list[Part] = []
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            content.append(ThinkingPart(thinking=thinking))
        text = message.get("content")
        if isinstance(text, str) and text:
            content.append(TextPart(text=text))
        calls = [_tool_use(call) for call in message.get("tool_calls") or []]
        content.extend(calls)
        return ChatResponse(
            id=_new_message_id(),
            model=str(body.get("model") or ""),
            content=content,
            stop_reason=_stop_reason(body.get("done_reason"), bool(calls)),
            usage=_usage(body),
        )

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one NDJSON ``/api/chat`` stream."""
        return OllamaStreamDecoder()


# ---------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------


def _chat_message(body: Any) -> dict[str, Any]:
    """The ``message`` object of a chat reply or stream line; :class:`ValueError` otherwise."""
    if not isinstance(body, dict):
        raise ValueError(f"not an Ollama chat reply: expected a JSON object, got {type(body).__name__}")
    if "error" in body:
        raise ValueError(f"Ollama error: {body['error']}")
    message = body.get("message")
    if not isinstance(message, dict):
        raise ValueError("not an Ollama chat reply: no 'message' object")
    return message


def _tool_use(call: Any) -> ToolUsePart:
    """An Ollama tool call (whole, with an arguments object) as a :class:`ToolUsePart`."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise ValueError("Ollama tool call without a 'function' object")
    call_id = call.get("id") or _new_call_id()
    name = str(function.get("name") or "")
    return tool_call_part(call_id, name, function.get("arguments"))


def _stop_reason(done_reason: Any, tool_called: bool) -> StopReason:
    if done_reason == "length":
        return "max_tokens"
    return "tool_use" if tool_called else "end_turn"


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _usage(body: dict[str, Any]) -> Usage:
    return Usage(input_tokens=_count(body.get("prompt_eval_count")), output_tokens=_count(body.get("eval_count")))


class OllamaStreamDecoder(StreamDecoder):
    """Decodes Ollama's NDJSON chat stream, fed in arbitrary byte chunks, into canonical events.

    Text and thinking arrive as fragments and are streamed as block deltas; tool calls arrive whole,
    each becoming its own block with a single ``partial_json`` delta. Nothing is emitted after the
    ``done`` line or an error.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (kind, index) of the open text/thinking block
        self._tool_called = False

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Consume bytes; return the events of every line completed by them."""
        if self._finished:
            return []
        self._buffer += data
        events: list[StreamEvent] = []
        while not self._finished:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            raw = self._buffer[:newline]
            self._buffer = self._buffer[newline + 1 :]
            self._line(raw, events)
        return events

    def close(self) -> list[StreamEvent]:
        """Handle a last unterminated line, then finish a message whose ``done`` line never came."""
        events: list[StreamEvent] = []
        if not self._finished and self._buffer:
            raw, self._buffer = self._buffer, b""
            self._line(raw, events)
        if not self._finished and self._started:
            self._close_open(events)
            events.append(MessageDelta(stop_reason="tool_use" if self._tool_called else "end_turn"))
            events.append(MessageStop())
        self._finished = True
        return events

    def _line(self, raw: bytes, events: list[StreamEvent]) -> None:
        raw = raw.strip()
        if not raw:
            return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._fail(events, f"invalid JSON line in Ollama stream: {raw[:200].decode('utf-8', 'replace')}")
            return
        if not isinstance(obj, dict):
            self._fail(events, "invalid line in Ollama stream: not a JSON object")
            return
        if "error" in obj:
            self._fail(events, str(obj["error"]))
            return
        if not self._started:
            self._started = True
            events.append(MessageStart(id=_new_message_id(), model=str(obj.get("model") or "")))
        message = obj.get("message")
        if isinstance(message, dict):
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                self._delta("thinking", thinking, events)
            text = message.get("content")
            if isinstance(text, str) and text:
                self._delta("text", text, events)
            for call in message.get("tool_calls") or []:
                try:
                    part = _tool_use(call)
                except ValueError as exc:
                    self._fail(events, str(exc))
                    return
                self._tool(part, events)
        if obj.get("done"):
            self._close_open(events)
            events.append(MessageDelta(stop_reason=_stop_reason(obj.get("done_reason"), self._tool_called),
                                       usage=_usage(obj)))
            events.append(MessageStop())
            self._finished = True

    def _delta(self, kind: str, value: str, events: list[StreamEvent]) -> None:
        if self._open is None or self._open[0] != kind:
            self._close_open(events)
            index = self._next_index
            self._next_index += 1
            self._open = (kind, index)
            part: Part = TextPart(text="") if kind == "text" else ThinkingPart(thinking="")
            events.append(BlockStart(index=index, part=part))
        index = self._open[1]
        if kind == "text":
            events.append(BlockDelta(index=index, text=value))
        else:
            events.append(BlockDelta(index=index, thinking=value))

    def _tool(self, part: ToolUsePart, events: list[StreamEvent]) -> None:
        self._close_open(events)
        self._tool_called = True
        index = self._next_index
        self._next_index += 1
        events.append(BlockStart(index=index, part=ToolUsePart(id=part.id, name=part.name, input={})))
        events.append(BlockDelta(index=index, partial_json=part.arguments_json()))
        events.append(BlockStop(index=index))

    def _close_open(self, events: list[StreamEvent]) -> None:
        if self._open is not None:
            events.append(BlockStop(index=self._open[1]))
            self._open = None

    def _fail(self, events: list[StreamEvent], message: str) -> None:
        events.append(StreamError(message=message))
        self._finished = True
