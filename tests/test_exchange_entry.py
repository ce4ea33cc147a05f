"""The ``complete`` entry's reply, written out by hand for the usual reply, is pydantic's dump."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmrouter.engine.exchange import dumped_response
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.models import ChatResponse, OpaquePart, TextPart, ThinkingPart, ToolUsePart, Usage
from tests.test_checked_models import ANTHROPIC_REPLIES, OPENAI_REPLIES


class _Reply(ChatResponse):
    """A subclass: dumped by pydantic whatever it holds."""


def _replies() -> list[ChatResponse]:
    usual = ChatResponse(id="i", model="m", content=[TextPart(text="a"), TextPart(text="b")],
                         usage=Usage(input_tokens=1, output_tokens=2), extra={"system_fingerprint": "fp", "n": 1,
                                                                              "flag": True, "none": None})
    odd: list[ChatResponse] = [
        ChatResponse(),
        ChatResponse(content=[TextPart(text="x", extra={"citations": [{"a": (1, 2)}]})]),
        ChatResponse(content=[ThinkingPart(thinking="t"), TextPart(text="x")]),
        ChatResponse(content=[ToolUsePart(id="c", name="f", input={"k": 1})], stop_reason="tool_use"),
        ChatResponse(content=[OpaquePart(format="anthropic", data={"type": "document"})]),
        ChatResponse(extra={"score": math.inf}),  # a float: pydantic's JSON mode turns infinity into null
        ChatResponse(extra={"pair": (1, 2), "raw": b"x"}),
        ChatResponse(usage=Usage(input_tokens=1, output_tokens=2, cache_read_input_tokens=3,
                                 cache_creation_input_tokens=0), stop_reason=None, stop_sequence="END"),
        _Reply(content=[TextPart(text="x")]),
    ]
    changed = usual.model_copy(deep=True)
    changed.usage.output_tokens = 2.5  # type: ignore[assignment]  # (Usage does not validate assignments)
    odd.append(changed)
    part = usual.model_copy(deep=True)
    part.content[0].text = ["not", "text"]  # type: ignore[assignment]
    odd.append(part)
    parsed = [OpenAIFormat().parse_response(body) for body in OPENAI_REPLIES]
    parsed += [AnthropicFormat().parse_response(body) for body in ANTHROPIC_REPLIES]
    return [usual, *odd, *parsed]


@pytest.mark.filterwarnings("ignore::UserWarning")  # (pydantic warns about the values of the wrong type)
@pytest.mark.parametrize("index", range(len(_replies())))
def test_the_entry_reply_is_pydantics_json_dump(index: int) -> None:
    reply = _replies()[index]
    expected: Any = reply.model_dump(mode="json")
    dumped = dumped_response(reply)
    assert dumped == expected
    assert list(dumped) == list(expected)
    assert repr(dumped) == repr(expected)  # (same types too: 1 is not 1.0, None is not nan)


def test_the_usual_reply_is_written_out_without_sharing_its_dicts() -> None:
    reply = _replies()[0]
    dumped = dumped_response(reply)
    assert dumped["extra"] is not reply.extra and dumped["content"][0]["extra"] is not reply.content[0].extra
