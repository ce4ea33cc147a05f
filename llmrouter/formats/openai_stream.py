"""OpenAI Chat Completions streaming: the client-side renderer and the upstream decoder.

Also holds the small mappings both directions share with :mod:`llmrouter.formats.openai`
(finish reasons, usage, error types, ids), so that module can import them without a cycle.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from llmrouter.errors import RouterError
from llmrouter.formats.base import SSEStreamDecoder, StreamRenderer
from llmrouter.formats.checked import checked_usage
from llmrouter.formats.fields import count
from llmrouter.jsonutil import dumps, loads
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    MessageDelta,
    MessageStart,
    MessageStop,
    StopReason,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolUsePart,
    Usage,
)

# ---------------------------------------------------------------------------------------------
# Shared mappings
# ---------------------------------------------------------------------------------------------

_FINISH_FROM_STOP: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "error": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STOP_FROM_FINISH: dict[str, StopReason] = {
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Router error kinds (Anthropic-flavoured, see llmrouter.errors) -> OpenAI error ``type``.
ERROR_TYPES: dict[str, str] = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "timeout_error": "timeout_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
}


def now() -> int:
    """Current Unix time in whole seconds (the ``created`` field); patched in tests."""
    return int(time.time())


def completion_id(candidate: str | None) -> str:
    """``candidate`` when it already looks like an OpenAI completion id, else a fresh one."""
    if candidate and candidate.startswith("chatcmpl-"):
        return candidate
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(stop_reason: str | None, has_tool_calls: bool = False) -> str:
    """Map a canonical stop reason to OpenAI's ``finish_reason``.

    A reply that made tool calls but says it simply ended (some local servers do this) is
    reported as ``tool_calls``, which is what OpenAI clients test for.
    """
    if has_tool_calls and stop_reason in (None, "end_turn"):
        return "tool_calls"
    return _FINISH_FROM_STOP.get(stop_reason or "end_turn", "stop")


def stop_reason(finish: str | None) -> StopReason:
    """Map OpenAI's ``finish_reason`` back to a canonical stop reason (unknown -> ``end_turn``)."""
    return _STOP_FROM_FINISH.get(finish or "", "end_turn")


def error_type(kind: str, status: int = 500) -> str:
    """OpenAI error ``type`` for a router error kind (unknown kinds by status class)."""
    if kind in ERROR_TYPES:
        return ERROR_TYPES[kind]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(error: RouterError) -> dict[str, Any]:
    """The OpenAI error object for ``error``."""
    code = error.code
    if code is None and error.kind == "request_too_large":
        code = "request_too_large"
    return {
        "error": {
            "message": error.message,
            "type": error_type(error.kind, error.status),
            "param": None,
            "code": code,
        }
    }


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    """Canonical usage as an OpenAI ``usage`` object.

    Canonical ``input_tokens`` follows Anthropic and excludes prompt-cache tokens, whereas
    OpenAI's ``prompt_tokens`` includes them, so the cache figures are added back here.
    """
    cache_read = usage.cache_read_input_tokens or 0
    prompt = usage.input_tokens + cache_read + (usage.cache_creation_input_tokens or 0)
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
    }
    if usage.cache_read_input_tokens is not None:
        body["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return body


def usage_from_openai(data: Any) -> Usage:
    """An OpenAI ``usage`` object as canonical usage (cached tokens split out of the input)."""
    if not isinstance(data, dict):
        return Usage()
    prompt = data.get("prompt_tokens")
    if type(prompt) is not int:  # (exactly int, the usual value: no call; anything else as count() reads it)
        prompt = count(prompt)
    completion = data.get("completion_tokens")
    if type(completion) is not int:
        completion = count(completion)
    details = data.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return checked_usage(max(prompt - cached, 0), completion, cached or None)


def sse(payload: Any) -> bytes:
    """One ``data:`` SSE frame holding ``payload`` as JSON."""
    return b"data: " + dumps(payload) + b"\n\n"


DONE_FRAME = b"data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------
# Client side: canonical events -> chat.completion.chunk frames
# ---------------------------------------------------------------------------------------------


class OpenAIStreamRenderer(StreamRenderer):
    """Renders canonical events as the ``chat.completion.chunk`` SSE frames OpenAI sends.

    Every chunk shares one id, ``created`` and model. Tool calls are numbered by their order
    among tool calls (``index`` from 0), whatever the canonical block indices are. When the
    client asked for ``stream_options.include_usage`` every chunk carries ``"usage": null`` and
    a final chunk with no choices carries the usage, as OpenAI does.
    """

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._id: str | None = None  # the upstream's (MessageStart), else one made when first needed
        self._created = now()
        self._model = request.model
        self._started = False
        self._finished = False
        self._done = False
        self._usage = Usage()
        self._tool_ordinals: dict[int, int] = {}

    def _new_id(self) -> str:
        self._id = completion_id(None)
        return self._id

    def render(self, event: StreamEvent) -> bytes:
        """The frames for one canonical event (``b""`` when OpenAI has nothing to send)."""
        if self._done:
            return b""
        if isinstance(event, MessageStart):
            self._id = completion_id(event.id)
            self._model = event.model or self._model
            self._usage = self._usage.merged(event.usage)
            return self._start()
        if isinstance(event, StreamError):
            self._done = True
            return sse(
                {
                    "error": {
                        "message": event.message,
                        "type": error_type(event.error_type),
                        "param": None,
                        "code": None,
                    }
                }
            )
        out = self._start()
        if isinstance(event, BlockStart):
            out += self._block_start(event)
        elif isinstance(event, BlockDelta):
            out += self._block_delta(event)
        elif isinstance(event, MessageDelta):
            self._usage = self._usage.merged(event.usage)
            out += self._finish(event.stop_reason)
        elif isinstance(event, MessageStop):
            out += self._finish(None) + self._end()
        return out

    def render_error(self, error: RouterError) -> bytes:
        """An ``{"error": ...}`` frame; nothing is sent after it."""
        self._done = True
        return sse(error_body(error))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id or self._new_id(),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._request.include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, event: BlockStart) -> bytes:
        part = event.part
        if not isinstance(part, ToolUsePart):
            return b""
        ordinal = len(self._tool_ordinals)
        self._tool_ordinals[event.index] = ordinal
        call = {
            "index": ordinal,
            "id": part.id,
            "type": "function",
            "function": {"name": part.name, "arguments": ""},
        }
        out = self._chunk({"tool_calls": [call]})
        # A producer may deliver complete arguments in the start event instead of deltas.
        if part.raw_arguments or part.input:
            out += self._arguments(ordinal, part.arguments_json())
        return out

    def _block_delta(self, event: BlockDelta) -> bytes:
        if event.text:
            return self._chunk({"content": event.text})
        if event.thinking:
            return self._chunk({"reasoning_content": event.thinking})
        if event.partial_json and event.index in self._tool_ordinals:
            return self._arguments(self._tool_ordinals[event.index], event.partial_json)
        return b""

    def _arguments(self, ordinal: int, fragment: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": ordinal, "function": {"arguments": fragment}}]})

    def _finish(self, reason: StopReason | None) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        return self._chunk({}, finish_reason(reason, bool(self._tool_ordinals)))

    def _end(self) -> bytes:
        self._done = True
        out = b""
        if self._request.include_usage:
            out += sse(
                {
                    "id": self._id or self._new_id(),
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [],
                    "usage": usage_to_openai(self._usage),
                }
            )
        return out + DONE_FRAME


# ---------------------------------------------------------------------------------------------
# Upstream side: chat.completion.chunk frames -> canonical events
# ---------------------------------------------------------------------------------------------


class OpenAIStreamDecoder(SSEStreamDecoder):
    """Decodes an OpenAI-compatible SSE stream, fed in arbitrary byte chunks, into canonical events.

    Text and reasoning blocks are emitted one at a time: a new kind of content closes the block
    before it. Tool-call blocks stay open until the end of the message, because OpenAI-compatible
    servers may interleave the argument fragments of parallel calls (they are addressed by
    ``index``), and a fragment may come after any other delta; closing a call's block early would
    strand its late fragments. So tool blocks can overlap each other (and text that follows them);
    renderers that need one block at a time serialise them. ``[DONE]`` or :meth:`close` closes the
    open blocks and emits ``MessageDelta`` and ``MessageStop`` once. Only choice 0 is read.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._ended = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (key, block index); key is "text" or "thinking"
        self._open_tools: list[int] = []  # block indices of tool calls still open, in start order
        self._tool_blocks: dict[Any, int] = {}  # tool-call key (see _tool_key) -> block index
        self._key_by_id: dict[str, Any] = {}
        self._last_tool: Any = None
        self._finish: str | None = None
        self._refused = False
        self._usage: Usage | None = None

    def close(self) -> list[StreamEvent]:
        """The upstream connection ended: flush the parser and finish the message if needed."""
        events = self._flush()
        if not self._ended:
            if not self._started:
                self._ended = True
                events.append(StreamError(message="upstream stream ended without any data"))
            else:
                self._end(events)
        return events

    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        if self._ended or not payload.strip():
            return
        if payload.strip() == "[DONE]":
            self._end(events)
            return
        try:
            chunk = loads(payload)
        except ValueError:
            self._fail(events, f"invalid JSON in upstream stream: {payload[:200]}")
            return
        if not isinstance(chunk, dict):
            self._fail(events, "unexpected frame in upstream stream")
            return
        if "error" in chunk or name == "error":
            err = chunk.get("error", chunk)
            message = err.get("message") if isinstance(err, dict) else err
            kind = err.get("type") if isinstance(err, dict) else None
            self._fail(
                events, str(message or "upstream error"), kind if isinstance(kind, str) else "api_error"
            )
            return
        self._chunk(chunk, events)

    def _fail(self, events: list[StreamEvent], message: str, kind: str = "api_error") -> None:
        self._ended = True
        events.append(StreamError(message=message, error_type=kind))

    def _chunk(self, chunk: dict[str, Any], events: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            events.append(MessageStart(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or "")))
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_from_openai(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if choice is None:
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta, events)
        if choice.get("finish_reason"):
            self._finish = str(choice["finish_reason"])

    def _delta(self, delta: dict[str, Any], events: list[StreamEvent]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            index = self._switch("thinking", events)
            events.append(BlockDelta(index=index, thinking=reasoning))
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                self._refused = self._refused or key == "refusal"
                index = self._switch("text", events)
                events.append(BlockDelta(index=index, text=text))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._tool_call(call, events)

    def _tool_call(self, call: dict[str, Any], events: list[StreamEvent]) -> None:
        key = self._tool_key(call)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if key in self._tool_blocks:
            index = self._tool_blocks[key]
        else:
            part = ToolUsePart(
                id=str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
                name=str(function.get("name") or ""),
                input={},
            )
            self._close_open(events)
            index = self._new_block(part, events)
            self._tool_blocks[key] = index
            self._open_tools.append(index)
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = dumps(arguments).decode()
        if isinstance(arguments, str) and arguments:
            events.append(BlockDelta(index=index, partial_json=arguments))

    def _tool_key(self, call: dict[str, Any]) -> Any:
        """Which call a tool-call delta belongs to.

        Normally its ``index``; some servers omit the index or reuse index 0 for parallel calls,
        so an unseen ``id`` starts a new call and a delta without index or id continues the last.
        """
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        index = call.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        if call_id is not None and call_id in self._key_by_id:
            key = self._key_by_id[call_id]
        elif index is not None and (index not in self._tool_blocks or call_id is None):
            key = index
        elif index is None and call_id is None and self._last_tool is not None:
            key = self._last_tool
        else:
            key = f"extra-{len(self._tool_blocks)}"
        if call_id is not None:
            self._key_by_id.setdefault(call_id, key)
        self._last_tool = key
        return key

    def _switch(self, key: str, events: list[StreamEvent]) -> int:
        """Return the block index for ``key`` (``text`` or ``thinking``), closing the open text/reasoning
        block and starting one of this kind if needed."""
        if self._open is not None and self._open[0] == key:
            return self._open[1]
        self._close_open(events)
        index = self._new_block(TextPart(text="") if key == "text" else ThinkingPart(), events)
        self._open = (key, index)
        return index

    def _new_block(self, part: TextPart | ThinkingPart | ToolUsePart, events: list[StreamEvent]) -> int:
        index = self._next_index
        self._next_index += 1
        events.append(BlockStart(index=index, part=part))
        return index

    def _close_open(self, events: list[StreamEvent]) -> None:
        if self._open is not None:
            events.append(BlockStop(index=self._open[1]))
            self._open = None

    def _close_tools(self, events: list[StreamEvent]) -> None:
        events.extend(BlockStop(index=index) for index in self._open_tools)
        self._open_tools.clear()

    def _end(self, events: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            events.append(MessageStart())
        self._close_open(events)
        self._close_tools(events)
        self._ended = True
        reason = stop_reason(self._finish)
        if self._refused and reason == "end_turn":
            reason = "refusal"
        events.append(MessageDelta(stop_reason=reason, usage=self._usage))
        events.append(MessageStop())
