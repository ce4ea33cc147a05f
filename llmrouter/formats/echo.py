"""The ``echo`` answers: the offline provider replies with the last user message (no I/O at all)."""

from __future__ import annotations

import uuid

from llmrouter.formats.base import response_to_events
from llmrouter.models import BlockDelta, ChatRequest, ChatResponse, StreamEvent, TextPart, Usage


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def echo_response(request: ChatRequest, model: str) -> ChatResponse:
    """Answer with the last user message, with token counts estimated at four characters a token."""
    text = request.last_user_text()
    prompt = "".join(request.iter_text())
    return ChatResponse(
        id=f"echo-{uuid.uuid4().hex[:24]}",
        model=model,
        content=[TextPart(text=text)],
        stop_reason="end_turn",
        usage=Usage(input_tokens=_estimate_tokens(prompt), output_tokens=_estimate_tokens(text)),
    )


def echo_stream_events(request: ChatRequest, model: str) -> list[StreamEvent]:
    """The echo answer as a stream, one text delta per word so streaming is visible."""
    events = response_to_events(echo_response(request, model))
    out: list[StreamEvent] = []
    for event in events:
        if isinstance(event, BlockDelta) and event.text:
            words = event.text.split(" ")
            for i, word in enumerate(words):
                out.append(BlockDelta(index=event.index, text=word if i == 0 else " " + word))
        else:
            out.append(event)
    return out
