"""OpenAI Responses API streaming, client side: canonical events -> ``response.*`` SSE events
(the provider side is :mod:`llmrouter.formats.responses_decode`).

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
from llmrouter.formats.base import StreamRenderer
from llmrouter.formats.openai_stream import error_type
from llmrouter.formats.responses_items import (
    FORMAT,
    ToolMap,
    call_item,
    error_object,
    message_item,
    new_id,
    now,
    reasoning_item,
    reply_to_response,
    response_object,
    text_content,
    tools_json,
)
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
        self._tools_json = tools_json(request, same=True)  # echoed in three response snapshots
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
        return response_object(self._request, self._id, self._created, model=self._model, tools=self._tools_json,
                               **fields)

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
        return reply_to_response(reply, self._request, self._id, self._created, self._item_ids(),
                                 self._tools_json)["output"]

    def _finish(self) -> bytes:
        out = b""
        for index in sorted(self._blocks):  # blocks a producer left open
            out += self._block_stop(index)
        self._done = True
        reply = self._accumulator.result()
        reply.usage = self._usage
        if self._stop is not None:
            reply.stop_reason = self._stop
        final = reply_to_response(reply, self._request, self._id, self._created, self._item_ids(),
                                 self._tools_json)
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
