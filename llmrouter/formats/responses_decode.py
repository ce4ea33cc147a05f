"""Decoding a Responses provider's ``response.*`` SSE stream into canonical stream events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmrouter.formats.base import SSEStreamDecoder
from llmrouter.formats.fields import count
from llmrouter.formats.responses_items import FORMAT, custom_input, usage_from_json
from llmrouter.formats.responses_upstream import call_part, message_parts, stop_reason_of
from llmrouter.jsonutil import dumps, loads
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
    Usage,
)


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
        output_index = count(data.get("output_index"))
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
        output_index, content_index = count(data.get("output_index")), count(data.get("content_index"))
        self._seen_parts.add(output_index)
        extra: dict[str, Any] = {"_refusal": True} if part.get("type") == "refusal" else {}
        if content_index == 0 and isinstance(data.get("item_id"), str):
            extra["_item"] = {"id": data["item_id"]}
        self._text_blocks[(output_index, content_index)] = self._block(TextPart(text="", extra=extra), events)

    def _text_delta(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        key = (count(data.get("output_index")), count(data.get("content_index")))
        delta = data.get("delta")
        if key in self._text_blocks and isinstance(delta, str) and delta:
            self._refused = self._refused or data.get("type") == "response.refusal.delta"
            events.append(BlockDelta(index=self._text_blocks[key], text=delta))

    def _part_done(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        index = self._text_blocks.pop((count(data.get("output_index")), count(data.get("content_index"))), None)
        if index is not None:
            events.append(BlockStop(index=index))

    def _arguments_delta(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        output_index = count(data.get("output_index"))
        delta = data.get("delta")
        if output_index in self._call_blocks and isinstance(delta, str) and delta:
            self._call_args[output_index] = True
            events.append(BlockDelta(index=self._call_blocks[output_index], partial_json=delta))

    def _item_done(self, data: dict[str, Any], events: list[StreamEvent]) -> None:
        self._ensure_started(events)
        item = data.get("item")
        if not isinstance(item, dict):
            return
        output_index = count(data.get("output_index"))
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


