"""OpenAI Responses API streaming: the client-side renderer of ``response.*`` events and the
decoder of a Responses provider's stream.

The renderer sends what the real API sends, each event as ``event: <type>`` plus a JSON ``data``
carrying ``type`` and an increasing ``sequence_number``: ``response.created`` and
``response.in_progress`` first; per output item ``response.output_item.added``, its content
(``response.content_part.added``, ``response.output_text.delta``... ``.done``,
``response.content_part.done``; ``response.function_call_arguments.delta``/``.done``; reasoning
summary events), then ``response.output_item.done``; and ``response.completed`` (or
``response.incomplete`` when the output limit was hit) with the whole response and its usage. A
failure after the first byte is ``response.failed`` (or an ``error`` event when nothing was sent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmrouter.errors import RouterError
from llmrouter.formats.base import SSEStreamDecoder, StreamRenderer
from llmrouter.formats.openai_stream import error_type
from llmrouter.formats.responses_items import (
    FORMAT,
    ToolMap,
    call_item,
    custom_input,
    error_object,
    message_item,
    new_id,
    now,
    reasoning_item,
    reply_to_response,
    response_object,
    text_content,
    usage_from_json,
)
from llmrouter.formats.responses_upstream import call_part, message_parts, stop_reason_of
from llmrouter.jsonutil import dumps, loads
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    Part,
    ResponseAccumulator,
    StopReason,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolUsePart,
    Usage,
)

OnComplete = Callable[[str, ChatRequest, ChatResponse], None]


class _Block:
    """One open output item of the stream."""

    def __init__(self, output_index: int, item_id: str, part: Part) -> None:
        self.output_index = output_index
        self.item_id = item_id
        self.part = part
        self.text: list[str] = []
        self.signature: list[str] = []


class ResponsesStreamRenderer(StreamRenderer):
    """Renders canonical events as the Responses API's SSE events for one reply.

    Each canonical block is one output item (text -> ``message``, tool call -> ``function_call``
    or ``custom_tool_call``, thinking -> ``reasoning``, a Responses opaque block -> that item).
    ``on_complete(response_id, request, response)`` is called once the reply completed.
    """

    def __init__(self, request: ChatRequest, on_complete: OnComplete | None = None) -> None:
        self._request = request
        self._tools = ToolMap(request.tools)
        self._on_complete = on_complete
        self._id = new_id("resp")
        self._created = now()
        self._model = request.model
        self._seq = 0
        self._started = False
        self._done = False
        self._blocks: dict[int, _Block] = {}
        self._ids: dict[int, str] = {}
        self._indices: set[int] = set()  # every block index started, rendered or not
        self._next_output = 0
        self._stop: StopReason | None = None
        self._usage = Usage()
        self._accumulator = ResponseAccumulator()

    # -- framing ----------------------------------------------------------------------------

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        payload = {"type": kind, **data, "sequence_number": self._seq}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(payload) + b"\n\n"

    def _response(self, **fields: Any) -> dict[str, Any]:
        return response_object(self._request, self._id, self._created, model=self._model, **fields)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = self._response()
        return (self._event("response.created", {"response": snapshot})
                + self._event("response.in_progress", {"response": snapshot}))

    # -- events -----------------------------------------------------------------------------

    def render(self, event: StreamEvent) -> bytes:
        """The SSE events for one canonical event (``b""`` when there is nothing to say)."""
        if self._done:
            return b""
        self._accumulator.feed(event)
        if isinstance(event, MessageStart):
            self._model = event.model or self._model
            self._usage = self._usage.merged(event.usage)
            return self._start()
        if isinstance(event, StreamError):
            return self.render_error(RouterError(event.message, kind=event.error_type))
        out = self._start()
        if isinstance(event, BlockStart):
            self._indices.add(event.index)
            out += self._block_start(event)
        elif isinstance(event, BlockDelta):
            out += self._block_delta(event)
        elif isinstance(event, BlockStop):
            out += self._block_stop(event.index)
        elif isinstance(event, MessageDelta):
            self._usage = self._usage.merged(event.usage)
            if event.stop_reason is not None:
                self._stop = event.stop_reason
        elif isinstance(event, MessageStop):
            out += self._finish()
        return out

    def render_error(self, error: RouterError) -> bytes:
        """``response.failed`` once the response was announced, else an ``error`` event."""
        if self._done:
            return b""
        self._done = True
        if not self._started:
            return self._event("error", {"code": error.code or error_type(error.kind, error.status),
                                         "message": error.message, "param": None})
        failed = self._response(status="failed", error=error_object(error), usage=self._usage,
                                output=self._output())
        return self._event("response.failed", {"response": failed})

    def _block_start(self, event: BlockStart) -> bytes:
        part = event.part
        if isinstance(part, OpaquePart):
            if part.format != FORMAT:
                return b""
            output_index = self._claim(event.index, str(part.data.get("id") or new_id("item")))
            item = dict(part.data)
            return (self._event("response.output_item.added", {"output_index": output_index, "item": item})
                    + self._event("response.output_item.done", {"output_index": output_index, "item": item}))
        if isinstance(part, TextPart):
            fields = part.extra.get("_item") if isinstance(part.extra.get("_item"), dict) else {}
            block = self._open(event.index, part, str(fields.get("id") or new_id("msg")))
            item = {**message_item(part, block.item_id), "status": "in_progress"}
            empty = text_content(TextPart(text="", extra=part.extra))
            return (self._event("response.output_item.added", {"output_index": block.output_index, "item": item})
                    + self._event("response.content_part.added", {
                        "item_id": block.item_id, "output_index": block.output_index, "content_index": 0,
                        "part": empty}))
        if isinstance(part, ToolUsePart):
            block = self._open(event.index, part, str(part.extra.get("id") or new_id("fc")))
            item = call_item(part, self._tools, block.item_id)
            item["status"] = "in_progress"
            item["arguments" if item["type"] == "function_call" else "input"] = ""
            out = self._event("response.output_item.added", {"output_index": block.output_index, "item": item})
            if part.raw_arguments or part.input:  # complete arguments given in the start event
                out += self._arguments(block, part.arguments_json())
            return out
        if isinstance(part, ThinkingPart):
            block = self._open(event.index, part, new_id("rs"))
            item = {"id": block.item_id, "type": "reasoning", "summary": []}
            return self._event("response.output_item.added", {"output_index": block.output_index, "item": item})
        return b""

    def _claim(self, index: int, item_id: str) -> int:
        output_index = self._next_output
        self._next_output += 1
        self._ids[index] = item_id
        return output_index

    def _open(self, index: int, part: Part, item_id: str) -> _Block:
        block = _Block(self._claim(index, item_id), item_id, part)
        self._blocks[index] = block
        return block

    def _block_delta(self, event: BlockDelta) -> bytes:
        block = self._blocks.get(event.index)
        if block is None:
            return b""
        if event.text and isinstance(block.part, TextPart):
            block.text.append(event.text)
            kind = "response.refusal.delta" if block.part.extra.get("_refusal") else "response.output_text.delta"
            data: dict[str, Any] = {"item_id": block.item_id, "output_index": block.output_index,
                                    "content_index": 0, "delta": event.text}
            if kind == "response.output_text.delta":
                data["logprobs"] = []
            return self._event(kind, data)
        if event.partial_json and isinstance(block.part, ToolUsePart):
            return self._arguments(block, event.partial_json)
        if event.thinking and isinstance(block.part, ThinkingPart):
            out = b""
            if not block.text:
                out += self._event("response.reasoning_summary_part.added", {
                    "item_id": block.item_id, "output_index": block.output_index, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}})
            block.text.append(event.thinking)
            return out + self._event("response.reasoning_summary_text.delta", {
                "item_id": block.item_id, "output_index": block.output_index, "summary_index": 0,
                "delta": event.thinking})
        if event.signature and isinstance(block.part, ThinkingPart):
            block.signature.append(event.signature)
        return b""

    def _arguments(self, block: _Block, fragment: str) -> bytes:
        block.text.append(fragment)
        if self._tools.is_custom(block.part):  # type: ignore[arg-type]
            return b""  # a custom tool's input is only known whole, at the end
        return self._event("response.function_call_arguments.delta", {
            "item_id": block.item_id, "output_index": block.output_index, "delta": fragment})

    def _block_stop(self, index: int) -> bytes:
        block = self._blocks.pop(index, None)
        if block is None:
            return b""
        base = {"item_id": block.item_id, "output_index": block.output_index}
        part = block.part
        text = "".join(block.text)
        if isinstance(part, TextPart):
            full = TextPart(text=text, extra=part.extra)
            content = text_content(full)
            done_kind = "response.refusal.done" if part.extra.get("_refusal") else "response.output_text.done"
            done: dict[str, Any] = {**base, "content_index": 0}
            if done_kind == "response.refusal.done":
                done["refusal"] = text
            else:
                done.update(text=text, logprobs=[])
            item = message_item(full, block.item_id)
            item["content"] = [content]
            return (self._event(done_kind, done)
                    + self._event("response.content_part.done", {**base, "content_index": 0, "part": content})
                    + self._event("response.output_item.done", {"output_index": block.output_index, "item": item}))
        if isinstance(part, ToolUsePart):
            call = part.model_copy(update={"input": None, "raw_arguments": text or "{}"})
            if self._tools.is_custom(part):
                call = part.model_copy(update={"input": _custom_arguments(text), "raw_arguments": None})
            item = call_item(call, self._tools, block.item_id)
            out = b""
            if item["type"] == "function_call":
                out = self._event("response.function_call_arguments.done",
                                  {**base, "name": item["name"], "arguments": item["arguments"]})
            return out + self._event("response.output_item.done", {"output_index": block.output_index, "item": item})
        if isinstance(part, ThinkingPart):
            thinking = ThinkingPart(thinking=text, signature="".join(block.signature) or part.signature,
                                    redacted=part.redacted)
            out = b""
            if text:
                out += self._event("response.reasoning_summary_text.done", {**base, "summary_index": 0, "text": text})
                out += self._event("response.reasoning_summary_part.done", {
                    **base, "summary_index": 0, "part": {"type": "summary_text", "text": text}})
            item = reasoning_item(thinking, block.item_id)
            return out + self._event("response.output_item.done", {"output_index": block.output_index, "item": item})
        return b""

    def _item_ids(self) -> list[str | None]:
        """The announced item id of each accumulated part (in block order), ``None`` if unannounced."""
        return [self._ids.get(index) for index in sorted(self._indices)]

    def _output(self) -> list[dict[str, Any]]:
        reply = self._accumulator.result()
        return reply_to_response(reply, self._request, self._id, self._created, self._item_ids())["output"]

    def _finish(self) -> bytes:
        out = b""
        for index in sorted(self._blocks):  # blocks a producer left open
            out += self._block_stop(index)
        self._done = True
        reply = self._accumulator.result()
        reply.usage = self._usage
        if self._stop is not None:
            reply.stop_reason = self._stop
        final = reply_to_response(reply, self._request, self._id, self._created, self._item_ids())
        final["model"] = self._model
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        out += self._event(kind, {"response": final})
        if self._on_complete is not None:
            self._on_complete(self._id, self._request, reply)
        return out


def _custom_arguments(text: str) -> dict[str, Any]:
    parsed = loads_or_none(text)
    if isinstance(parsed, dict):
        return parsed
    return {"input": text}


def loads_or_none(text: str) -> Any:
    """``text`` parsed as JSON, or ``None`` when it is not JSON."""
    try:
        return loads(text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Upstream side: a Responses provider's event stream -> canonical events
# ---------------------------------------------------------------------------------------------


class ResponsesStreamDecoder(SSEStreamDecoder):
    """Decodes a Responses provider's ``response.*`` SSE stream into canonical events.

    Text content parts and function calls become blocks as they open; reasoning, hosted-tool and
    other items become one opaque block each when their ``output_item.done`` arrives (whole, as
    a Responses client needs them). A ``message`` or call item that only ever appears in
    ``output_item.done`` (no part or argument events) is emitted whole then. ``response.completed``
    / ``response.incomplete`` end the message; ``response.failed`` and ``error`` are stream errors.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._ended = False
        self._next = 0
        self._text_blocks: dict[tuple[int, int], int] = {}  # (output_index, content_index) -> block
        self._call_blocks: dict[int, int] = {}  # output_index -> block
        self._call_args: dict[int, bool] = {}  # output_index -> whether argument deltas came
        self._seen_parts: set[int] = set()  # output indices whose message content was streamed
        self._has_calls = False
        self._refused = False

    def close(self) -> list[StreamEvent]:
        """The upstream connection ended: finish the message, or report that nothing came."""
        events = self._flush()
        if not self._ended:
            if not self._started:
                self._ended = True
                events.append(StreamError(message="upstream stream ended without any data"))
            else:
                self._end(events, "end_turn", None)
        return events

    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        if self._ended or not payload.strip() or payload.strip() == "[DONE]":
            return
        try:
            data = loads(payload)
        except ValueError:
            self._fail(events, f"invalid JSON in upstream stream: {payload[:200]}")
            return
        if not isinstance(data, dict):
            self._fail(events, "unexpected frame in upstream stream")
            return
        kind = data.get("type") or name
        handler = _HANDLERS.get(str(kind))
        if handler is not None:
            handler(self, data, events)

    def _fail(self, events: list[StreamEvent], message: str, kind: str = "api_error") -> None:
        self._ended = True
        events.append(StreamError(message=message, error_type=kind))

    def _ensure_started(self, events: list[StreamEvent], response: Any = None) -> None:
        if not self._started:
            self._started = True
            response = response if isinstance(response, dict) else {}
            events.append(MessageStart(id=str(response.get("id") or ""), model=str(response.get("model") or "")))

    def _block(self, part: Part, events: list[StreamEvent]) -> int:
        index = self._next
        self._next += 1
        events.append(BlockStart(index=index, part=part))
        return index

    # -- handlers ---------------------------------------------------------------------------

    def _created(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        self._ensure_started(events, data.get("response"))

    def _item_added(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        self._ensure_started(events)
        item = data.get("item")
        if not isinstance(item, dict) or item.get("type") not in ("function_call", "custom_tool_call"):
            return
        output_index = _int(data.get("output_index"))
        self._has_calls = True
        part = call_part(item, arguments="")
        part.input = {}
        self._call_blocks[output_index] = self._block(part, events)
        self._call_args[output_index] = False

    def _part_added(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        self._ensure_started(events)
        part = data.get("part") if isinstance(data.get("part"), dict) else {}
        if part.get("type") not in ("output_text", "refusal"):
            return
        output_index, content_index = _int(data.get("output_index")), _int(data.get("content_index"))
        self._seen_parts.add(output_index)
        extra: dict[str, Any] = {"_refusal": True} if part.get("type") == "refusal" else {}
        if content_index == 0 and isinstance(data.get("item_id"), str):
            extra["_item"] = {"id": data["item_id"]}
        self._text_blocks[(output_index, content_index)] = self._block(TextPart(text="", extra=extra), events)

    def _text_delta(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        key = (_int(data.get("output_index")), _int(data.get("content_index")))
        delta = data.get("delta")
        if key in self._text_blocks and isinstance(delta, str) and delta:
            self._refused = self._refused or data.get("type") == "response.refusal.delta"
            events.append(BlockDelta(index=self._text_blocks[key], text=delta))

    def _part_done(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        index = self._text_blocks.pop((_int(data.get("output_index")), _int(data.get("content_index"))), None)
        if index is not None:
            events.append(BlockStop(index=index))

    def _arguments_delta(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        output_index = _int(data.get("output_index"))
        delta = data.get("delta")
        if output_index in self._call_blocks and isinstance(delta, str) and delta:
            self._call_args[output_index] = True
            events.append(BlockDelta(index=self._call_blocks[output_index], partial_json=delta))

    def _item_done(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        self._ensure_started(events)
        item = data.get("item")
        if not isinstance(item, dict):
            return
        output_index = _int(data.get("output_index"))
        kind = item.get("type")
        if kind in ("function_call", "custom_tool_call"):
            index = self._call_blocks.pop(output_index, None)
            if index is None:
                self._has_calls = True
                index = self._block(call_part(item, arguments="").model_copy(update={"input": {}}), events)
                self._call_args[output_index] = False
            if not self._call_args.pop(output_index, False):
                whole = call_part(item)
                arguments = (dumps({"input": custom_input(whole)}).decode() if kind == "custom_tool_call"
                             else whole.arguments_json())
                events.append(BlockDelta(index=index, partial_json=arguments))
            events.append(BlockStop(index=index))
        elif kind == "message":
            for key in [k for k in self._text_blocks if k[0] == output_index]:
                events.append(BlockStop(index=self._text_blocks.pop(key)))
            if output_index not in self._seen_parts:
                parts, refused = message_parts(item)
                self._refused = self._refused or refused
                for part in parts:
                    index = self._block(TextPart(text="", extra=part.extra), events)
                    if part.text:
                        events.append(BlockDelta(index=index, text=part.text))
                    events.append(BlockStop(index=index))
        else:
            index = self._block(OpaquePart(format=FORMAT, data=item), events)
            events.append(BlockStop(index=index))

    def _completed(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        response = data.get("response") if isinstance(data.get("response"), dict) else {}
        self._ensure_started(events, response)
        reason = stop_reason_of(response.get("status"), response.get("incomplete_details"), self._has_calls,
                                self._refused)
        if data.get("type") == "response.incomplete" and reason not in ("max_tokens", "refusal"):
            reason = "max_tokens"
        self._end(events, reason, usage_from_json(response.get("usage")) if response.get("usage") else None)

    def _failed(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        if data.get("type") == "error":
            message, code = data.get("message"), data.get("code")
        else:
            response = data.get("response") if isinstance(data.get("response"), dict) else {}
            error = response.get("error") if isinstance(response.get("error"), dict) else {}
            message, code = error.get("message"), error.get("code")
        kind = "rate_limit_error" if code == "rate_limit_exceeded" else "api_error"
        self._fail(events, str(message or code or "upstream response failed"), kind)

    def _end(self, events: list[StreamEvent], reason: StopReason, usage: Usage | None) -> None:
        for index in list(self._text_blocks.values()) + list(self._call_blocks.values()):
            events.append(BlockStop(index=index))
        self._text_blocks.clear()
        self._call_blocks.clear()
        self._ended = True
        events.append(MessageDelta(stop_reason=reason, usage=usage))
        events.append(MessageStop())


_HANDLERS: dict[str, Callable[[ResponsesStreamDecoder, dict[str, Any], list[StreamEvent]], None]] = {
    "response.created": ResponsesStreamDecoder._created,
    "response.in_progress": ResponsesStreamDecoder._created,
    "response.output_item.added": ResponsesStreamDecoder._item_added,
    "response.content_part.added": ResponsesStreamDecoder._part_added,
    "response.output_text.delta": ResponsesStreamDecoder._text_delta,
    "response.refusal.delta": ResponsesStreamDecoder._text_delta,
    "response.content_part.done": ResponsesStreamDecoder._part_done,
    "response.function_call_arguments.delta": ResponsesStreamDecoder._arguments_delta,
    "response.output_item.done": ResponsesStreamDecoder._item_done,
    "response.completed": ResponsesStreamDecoder._completed,
    "response.incomplete": ResponsesStreamDecoder._completed,
    "response.failed": ResponsesStreamDecoder._failed,
    "error": ResponsesStreamDecoder._failed,
}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
