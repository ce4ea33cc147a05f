"""The interfaces every wire format implements, and helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats.fields import invalid
from llmrouter.formats.gate import Gated
from llmrouter.jsonutil import loads_object_or_none
from llmrouter.lazy import message_roles
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolChoice,
    ToolUsePart,
    Usage,
)

if TYPE_CHECKING:
    from llmrouter.config import ProviderConfig


def tool_call_part(call_id: str, name: str, arguments: Any, extra: dict[str, Any] | None = None) -> ToolUsePart:
    """A tool call from wire ``arguments``: an object is the input, a string is parsed as a JSON
    object (blank: no arguments), and a string that is not one is kept as ``raw_arguments`` so it is
    passed on exactly as the model produced it. Anything else counts as no arguments."""
    extra = extra if extra is not None else {}
    if isinstance(arguments, dict):
        return ToolUsePart(id=call_id, name=name, input=arguments, extra=extra)
    if not isinstance(arguments, str) or not arguments.strip():
        return ToolUsePart(id=call_id, name=name, input={}, extra=extra)
    parsed = loads_object_or_none(arguments)
    if parsed is None:
        return ToolUsePart(id=call_id, name=name, raw_arguments=arguments, extra=extra)
    return ToolUsePart(id=call_id, name=name, input=parsed, extra=extra)



def image_part(url: str, path: str, extra: dict[str, Any]) -> ImagePart:
    """An image given by ``url`` (at ``path`` in the request): a base64 ``data:`` URL becomes inline
    data with its media type, any other URL stays a URL.

    :raises InvalidRequest: for a ``data:`` URL that is not base64 encoded.
    """
    if url.startswith("data:"):
        inline = _base64_data(url)
        if inline is None:
            raise invalid(path, "data URLs must be base64 encoded (data:<type>;base64,<data>)")
        media_type, data = inline
        return ImagePart(data=data, media_type=media_type or None, extra=extra)
    return ImagePart(url=url, extra=extra)


def image_url_ok(url: str) -> bool:
    """Whether :func:`image_part` takes ``url`` without raising (for checks that must not convert)."""
    return not url.startswith("data:") or _base64_data(url) is not None


def _base64_data(url: str) -> tuple[str, str] | None:
    """``(media type, data)`` of a base64 ``data:`` URL; ``None`` when it is not base64 encoded."""
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header[: -len(";base64")], data


def apply_parallel_tool_calls(request: ChatRequest, parallel: bool) -> None:
    """Record a client's ``parallel_tool_calls``: ``false`` disables parallel calls (on an implied
    ``auto`` choice when the client gave none); ``true`` clears that on a choice it gave."""
    if not parallel:
        request.tool_choice = request.tool_choice or ToolChoice(type="auto")
        request.tool_choice.disable_parallel = True
    elif request.tool_choice is not None:
        request.tool_choice.disable_parallel = False

ROUTER_FIELDS = frozenset({"plugins", "tags", "forced_provider", "headers", "source_format", "extra"})
"""Request fields the router owns: never copied from ``request.extra`` into an upstream body,
whatever a client sent or a plugin put there."""


class StreamRenderer(ABC):
    """Turns canonical stream events into the bytes a client of one format expects (SSE frames)."""

    @abstractmethod
    def render(self, event: StreamEvent) -> bytes:
        """Bytes to send for ``event`` (may be ``b""`` when the format has nothing to say)."""

    @abstractmethod
    def render_error(self, error: RouterError) -> bytes:
        """Bytes announcing a mid-stream failure in the client's format (the stream then closes)."""

    def keepalive(self) -> bytes:
        """Bytes sent on long upstream silences (Anthropic ``ping``; an SSE comment otherwise)."""
        return b": keep-alive\n\n"


class StreamDecoder(ABC):
    """Turns a provider's streamed bytes, fed in arbitrary chunks, into canonical stream events."""

    @abstractmethod
    def feed(self, data: bytes) -> list[StreamEvent]:
        """Consume the next chunk of bytes; return the events completed by it."""

    @abstractmethod
    def close(self) -> list[StreamEvent]:
        """The upstream stream ended; return any final events (e.g. closing open blocks)."""


class SSEStreamDecoder(StreamDecoder):
    """A decoder for SSE upstreams: subclasses turn each ``(event, data)`` frame into events."""

    def __init__(self) -> None:
        self._sse = SSELineParser()

    @abstractmethod
    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        """Append the canonical events of one SSE frame to ``events``."""

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Consume the next bytes; return the events they complete."""
        events: list[StreamEvent] = []
        for name, payload in self._sse.feed(data):
            self._frame(name, payload, events)
        return events

    def _flush(self) -> list[StreamEvent]:
        """The events of a last frame that lacked its terminating blank line (for ``close``)."""
        events: list[StreamEvent] = []
        for name, payload in self._sse.close():
            self._frame(name, payload, events)
        return events


def check_request(request: ChatRequest) -> None:
    """Checks every client format's requests get, whatever endpoint they came through.

    :raises InvalidRequest: naming the field: no conversation to answer (no message, or only
        system messages), or a ``max_tokens`` below 1.
    """
    roles = message_roles(request)  # a deferred conversation stays unconverted
    if roles.count("system") == len(roles):  # (no user or assistant message)
        what = "must contain at least one message" if not roles else \
            "must contain at least one user or assistant message besides system messages"
        raise InvalidRequest(f"messages: {what}")
    if request.max_tokens is not None and request.max_tokens < 1:
        key = "max_completion_tokens" if "max_completion_tokens" in request.extra else "max_tokens"
        raise InvalidRequest(f"{key}: must be a positive integer, got {request.max_tokens}")


class ClientFormat(ABC):
    """A format clients speak to the router (``/v1/chat/completions`` or ``/v1/messages``)."""

    name: str

    def gate(self, body: Any) -> Gated | None:
        """What the C-speed gate (:mod:`llmrouter.formats.gate`) proves about a decoded ``body``,
        or ``None`` (nothing proven: every check runs in Python). The default proves nothing."""
        return None

    @abstractmethod
    def parse_request(self, body: Any, headers: Mapping[str, str], gated: Gated | None = None) -> ChatRequest:
        """Convert a decoded JSON body into a :class:`ChatRequest`; ``gated``: what :meth:`gate`
        proved about ``body`` (the parse then skips those checks, with the same result).

        :raises llmrouter.errors.InvalidRequest: with a message naming the offending field
            (e.g. ``messages[2].content[0].type: unknown content type 'foo'``).
        """

    @abstractmethod
    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of a non-streaming reply."""

    @abstractmethod
    def render_error(self, error: RouterError) -> dict[str, Any]:
        """The JSON body of an error reply, in this format's error shape."""

    @abstractmethod
    def stream_renderer(self, request: ChatRequest) -> StreamRenderer:
        """A renderer for one streamed reply to ``request``."""


class UpstreamFormat(ABC):
    """A format the router speaks to providers."""

    name: str

    @abstractmethod
    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The JSON body to send upstream for ``request`` with ``model`` as the model name.

        Fields in ``request.extra`` (and per-message/per-part ``extra``) are included only when
        ``request.source_format == self.name``.
        """

    @abstractmethod
    def parse_response(self, body: Any) -> ChatResponse:
        """Convert a provider's non-streaming JSON reply into a :class:`ChatResponse`.

        :raises ValueError: when the body is not a reply of this format.
        """

    @abstractmethod
    def stream_decoder(self) -> StreamDecoder:
        """A decoder for one streamed reply."""

    def for_provider(self, config: ProviderConfig) -> UpstreamFormat:
        """This format as the provider configured by ``config`` uses it.

        Formats with per-provider options (``late_system`` for OpenAI and Ollama) return a copy set
        up for ``config``; the default is the format itself.
        """
        return self


class SSELineParser:
    """Incremental Server-Sent-Events parser yielding ``(event, data)`` pairs.

    Handles frames split across chunks, ``\\r\\n`` line endings, comments and multi-line data.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[str | None, str]]:
        """Consume bytes and yield each complete ``(event, data)`` frame."""
        self._buffer += chunk
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line = self._buffer[:newline].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[newline + 1 :]
            frame = self._line(line)
            if frame is not None:
                yield frame

    def close(self) -> Iterator[tuple[str | None, str]]:
        """Flush a final frame that lacked its terminating blank line."""
        if self._buffer:
            frame = self._line(self._buffer.rstrip(b"\r").decode("utf-8", errors="replace"))
            self._buffer = b""
            if frame is not None:
                yield frame
        frame = self._line("")
        if frame is not None:
            yield frame

    def _line(self, line: str) -> tuple[str | None, str] | None:
        if line == "":
            if not self._data and self._event is None:
                return None
            frame = (self._event, "\n".join(self._data))
            self._event, self._data = None, []
            return frame
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


def response_to_events(response: ChatResponse) -> list[StreamEvent]:
    """Express a complete response as a canonical event sequence (for plugin answers and echo).

    Opaque parts are emitted whole in their ``BlockStart``, followed directly by ``BlockStop``.
    """
    events: list[StreamEvent] = [
        MessageStart(id=response.id, model=response.model,
                     usage=Usage(input_tokens=response.usage.input_tokens))
    ]
    for index, part in enumerate(response.content):
        if isinstance(part, TextPart):
            events.append(BlockStart(index=index, part=TextPart(text="", extra=part.extra)))
            if part.text:
                events.append(BlockDelta(index=index, text=part.text))
        elif isinstance(part, ToolUsePart):
            events.append(BlockStart(index=index, part=ToolUsePart(id=part.id, name=part.name, input={})))
            events.append(BlockDelta(index=index, partial_json=part.arguments_json()))
        elif isinstance(part, ThinkingPart):
            events.append(BlockStart(index=index, part=ThinkingPart(thinking="", redacted=part.redacted)))
            if part.thinking:
                events.append(BlockDelta(index=index, thinking=part.thinking))
            if part.signature:
                events.append(BlockDelta(index=index, signature=part.signature))
        elif isinstance(part, OpaquePart):
            # Whole in the start event, no deltas: renderers of its format send it as one block.
            events.append(BlockStart(index=index, part=part.model_copy(deep=True)))
        else:
            continue
        events.append(BlockStop(index=index))
    events.append(MessageDelta(stop_reason=response.stop_reason, stop_sequence=response.stop_sequence,
                               usage=response.usage.model_copy()))
    events.append(MessageStop())
    return events


async def iter_events(events: Iterable[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """An async iterator over already-known events (plugin answers, the echo provider)."""
    for event in events:
        yield event
