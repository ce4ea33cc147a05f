"""The ``signature`` plugin on streams: its ``stream_transformer`` adds the footer as the reply flows."""

from __future__ import annotations

import json
from typing import Any

from llmrouter import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    Context,
    MessageDelta,
    MessageStart,
    MessageStop,
)
from llmrouter.models import TextPart
from llmrouter.testing import load_settings, openai_chat, run_transformer

from llmrouter_example_plugin import signature

ECHO = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}]}


async def test_streamed_reply_gets_the_footer_from_the_stream_transformer(router: Any) -> None:
    client = await router({**ECHO, "plugins": {"signature": {}}})
    reply = await client.openai(openai_chat("hello", stream=True))
    assert reply.status == 200
    chunks = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == (
        "hello\n\n-- via echo")
    assert [p["text"] for p in reply.log_line["response"]["content"]] == ["hello", "\n\n-- via echo"]
    assert reply.log_line["plugins"] == ["signature"]


def test_the_stream_transformer_adds_one_block_before_the_end() -> None:
    request = ChatRequest(model="m", stream=True)
    settings = load_settings(signature, {"text": "-- {model}"})  # validated as the router does at load
    ctx = Context(request=request, request_id="t", providers={}, settings=settings)
    events = [MessageStart(), BlockStart(index=0, part=TextPart(text="")), BlockDelta(index=0, text="hi"),
              BlockStop(index=0), MessageDelta(stop_reason="end_turn"), MessageStop()]
    out = run_transformer(signature.stream_transformer(ctx), events)
    assert out[4:7] == [BlockStart(index=1, part=TextPart(text="")), BlockDelta(index=1, text="\n\n-- m"),
                        BlockStop(index=1)]
    json_request = ChatRequest(model="m", stream=True, response_format={"type": "json_object"})
    assert signature.stream_transformer(Context(request=json_request, request_id="t", providers={},
                                                settings=load_settings(signature))) is None
