"""Content blocks the canonical model has no slot for (Anthropic documents, search results, tool
references, server-tool blocks, citations; OpenAI audio and file parts) travel as ``OpaquePart``:
verbatim to and from providers and clients of their own format, dropped cleanly (or sent as their
plain-text fallback) for the others."""

from __future__ import annotations

import base64
import copy
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage

from llmrouter.errors import InvalidRequest
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.base import response_to_events
from llmrouter.formats.ollama import OllamaFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    OpaquePart,
    ResponseAccumulator,
    TextPart,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from llmrouter.testing import MockProviders

ANT, OAI, OLL = AnthropicFormat(), OpenAIFormat(), OllamaFormat()

# ---------------------------------------------------------------------------------------------
# Wire fixtures
# ---------------------------------------------------------------------------------------------

PDF_DOC: dict[str, Any] = {
    "type": "document",
    "title": "spec.pdf",
    "cache_control": {"type": "ephemeral"},
    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQKJcfsj6IKMSAwIG9iago="},
}
TEXT_DOC: dict[str, Any] = {
    "type": "document",
    "title": "notes.txt",
    "citations": {"enabled": True},
    "source": {"type": "text", "media_type": "text/plain", "data": "Line one.\nLine two."},
}
B64_TEXT_DOC: dict[str, Any] = {
    "type": "document",
    "source": {
        "type": "base64",
        "media_type": "text/plain",
        "data": base64.b64encode("Plain ü.".encode()).decode(),
    },
}
SEARCH_RESULT: dict[str, Any] = {
    "type": "search_result",
    "source": "https://docs.example.com/a",
    "title": "Doc A",
    "content": [{"type": "text", "text": "Alpha beta."}],
    "citations": {"enabled": True},
}
TOOL_REFERENCE: dict[str, Any] = {"type": "tool_reference", "tool_name": "WebFetch"}
SERVER_TOOL_USE: dict[str, Any] = {
    "type": "server_tool_use",
    "id": "srvtoolu_01",
    "name": "web_search",
    "input": {"query": "claude shannon birth date"},
}
WEB_SEARCH_RESULT: dict[str, Any] = {
    "type": "web_search_tool_result",
    "tool_use_id": "srvtoolu_01",
    "content": [
        {
            "type": "web_search_result",
            "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
            "title": "Claude Shannon - Wikipedia",
            "encrypted_content": "EqgfCioIARgBIiQ3YTAw",
            "page_age": "April 30, 2025",
        }
    ],
}
CITATION: dict[str, Any] = {
    "type": "web_search_result_location",
    "url": "https://en.wikipedia.org/wiki/Claude_Shannon",
    "title": "Claude Shannon - Wikipedia",
    "encrypted_index": "Eo8BCioIAhgBIiQy",
    "cited_text": "Claude Elwood Shannon (April 30, 1916 - February 24, 2001)",
}
CITED_TEXT: dict[str, Any] = {
    "type": "text",
    "text": "Shannon was born on April 30, 1916.",
    "citations": [CITATION],
}
MCP_USE: dict[str, Any] = {
    "type": "mcp_tool_use",
    "id": "mcptoolu_1",
    "name": "echo",
    "server_name": "srv",
    "input": {"x": 1},
}
MCP_RESULT: dict[str, Any] = {
    "type": "mcp_tool_result",
    "tool_use_id": "mcptoolu_1",
    "is_error": False,
    "content": [{"type": "text", "text": "1"}],
}
CONTAINER_UPLOAD: dict[str, Any] = {"type": "container_upload", "file_id": "file_011"}

# A Claude-Code-shaped conversation holding every kind of block above.
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [
        {"role": "user", "content": [PDF_DOC, TEXT_DOC, {"type": "text", "text": "Summarise these."}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "ToolSearch", "input": {"query": "fetch"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [TOOL_REFERENCE]},
                SEARCH_RESULT,
                {"type": "text", "text": "Go on."},
            ],
        },
        {
            "role": "assistant",
            "content": [SERVER_TOOL_USE, WEB_SEARCH_RESULT, CITED_TEXT, MCP_USE, MCP_RESULT],
        },
        {"role": "user", "content": [CONTAINER_UPLOAD, {"type": "text", "text": "Thanks. More?"}]},
    ],
    "tools": [
        {
            "name": "ToolSearch",
            "description": "Find tools",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
        {
            "name": "WebFetch",
            "description": "Fetch a page",
            "input_schema": {"type": "object", "properties": {"url": {"type": "string"}}},
            "defer_loading": True,
        },
    ],
}

TEXT_DOC_FALLBACK = "notes.txt\n\nLine one.\nLine two."
SEARCH_FALLBACK = "Doc A\nhttps://docs.example.com/a\n\nAlpha beta."


def _parse(body: dict[str, Any]) -> ChatRequest:
    return ANT.parse_request(copy.deepcopy(body), {})


# ---------------------------------------------------------------------------------------------
# Anthropic requests
# ---------------------------------------------------------------------------------------------


def test_known_anthropic_blocks_parse_as_opaque_parts() -> None:
    req = _parse(CLAUDE_CODE_BODY)
    first, _, third, fourth, fifth = req.messages
    assert first.content[0] == OpaquePart(format="anthropic", data=PDF_DOC)
    assert first.content[1] == OpaquePart(format="anthropic", data=TEXT_DOC, fallback_text=TEXT_DOC_FALLBACK)
    result = third.content[0]
    assert isinstance(result, ToolResultPart)
    assert result.content == [OpaquePart(format="anthropic", data=TOOL_REFERENCE)]
    assert third.content[1] == OpaquePart(
        format="anthropic", data=SEARCH_RESULT, fallback_text=SEARCH_FALLBACK
    )
    assert [p.type for p in fourth.content] == ["opaque", "opaque", "text", "opaque", "opaque"]
    assert fourth.content[2] == TextPart(text=CITED_TEXT["text"], extra={"citations": [CITATION]})
    assert fifth.content[0] == OpaquePart(format="anthropic", data=CONTAINER_UPLOAD)


def test_base64_plain_text_document_gets_a_text_fallback() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [B64_TEXT_DOC]}]}
    part = _parse(body).messages[0].content[0]
    assert isinstance(part, OpaquePart) and part.fallback_text == "Plain ü."


def test_iter_text_includes_text_fallbacks_but_not_binary_documents() -> None:
    texts = _parse(CLAUDE_CODE_BODY).iter_text()
    assert TEXT_DOC_FALLBACK in texts and SEARCH_FALLBACK in texts
    assert not any("JVBERi0" in t for t in texts)


@pytest.mark.parametrize(
    "blocks, path",
    [
        ([{"type": "hologram"}], "messages[0].content[0].type: unknown content block type 'hologram'"),
        (
            [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "hologram"}]}],
            "messages[0].content[0].content[0].type: unknown content block type 'hologram'",
        ),
        ([{"type": "document_v2"}], "messages[0].content[0].type: unknown content block type 'document_v2'"),
    ],
)
def test_unknown_block_types_are_still_rejected(blocks: list[Any], path: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ANT.parse_request(
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}, {}
        )
    assert str(info.value).startswith(path)


def test_opaque_blocks_rebuild_byte_for_byte_for_an_anthropic_provider() -> None:
    built = ANT.build_request(_parse(CLAUDE_CODE_BODY), "claude-sonnet-4-5")
    assert orjson.dumps(built) == orjson.dumps(CLAUDE_CODE_BODY)


def test_anthropic_opaque_parts_are_sent_in_place_from_any_source() -> None:
    # A plugin may add an Anthropic block to an OpenAI client's request: it is still an Anthropic block.
    req = ChatRequest(
        model="m",
        source_format="openai",
        messages=[
            Message(
                role="user",
                content=[TextPart(text="Read this:"), OpaquePart(format="anthropic", data=PDF_DOC)],
            )
        ],
    )
    assert ANT.build_request(req, "m")["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Read this:"}, PDF_DOC]}
    ]


def test_opaque_blocks_for_an_openai_provider_are_dropped_or_sent_as_text() -> None:
    built = OAI.build_request(_parse(CLAUDE_CODE_BODY), "gpt-4o")
    assert built["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": TEXT_DOC_FALLBACK},
                {"type": "text", "text": "Summarise these."},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "ToolSearch", "arguments": '{"query":"fetch"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": ""},
        {
            "role": "user",
            "content": [{"type": "text", "text": SEARCH_FALLBACK}, {"type": "text", "text": "Go on."}],
        },
        {"role": "assistant", "content": CITED_TEXT["text"]},
        {"role": "user", "content": "Thanks. More?"},
    ]
    assert "JVBERi0" not in orjson.dumps(built).decode() and "srvtoolu" not in orjson.dumps(built).decode()


def test_search_results_inside_tool_results_reach_openai_as_text() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [SEARCH_RESULT, TOOL_REFERENCE]}
                ],
            }
        ],
    }
    built = OAI.build_request(_parse(body), "gpt")
    assert built["messages"] == [{"role": "tool", "tool_call_id": "t1", "content": SEARCH_FALLBACK}]
    assert OLL.build_request(_parse(body), "llama")["messages"] == [
        {"role": "tool", "content": SEARCH_FALLBACK}
    ]


def test_opaque_blocks_for_an_ollama_provider_are_dropped_or_sent_as_text() -> None:
    built = OLL.build_request(_parse(CLAUDE_CODE_BODY), "llama")
    assert built["messages"] == [
        {"role": "user", "content": TEXT_DOC_FALLBACK + "\n\nSummarise these."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "ToolSearch", "arguments": {"query": "fetch"}}}],
        },
        {"role": "tool", "content": "", "tool_name": "ToolSearch"},
        {"role": "user", "content": SEARCH_FALLBACK + "\n\nGo on."},
        {"role": "assistant", "content": CITED_TEXT["text"]},
        {"role": "user", "content": "Thanks. More?"},
    ]


# ---------------------------------------------------------------------------------------------
# OpenAI requests
# ---------------------------------------------------------------------------------------------

AUDIO_PART: dict[str, Any] = {"type": "input_audio", "input_audio": {"data": "UklGRiQ=", "format": "wav"}}
FILE_PART: dict[str, Any] = {
    "type": "file",
    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
}
OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Transcribe and summarise."}, AUDIO_PART, FILE_PART],
        }
    ],
}


def test_openai_audio_and_file_parts_parse_as_opaque_and_go_verbatim_to_openai() -> None:
    req = OAI.parse_request(copy.deepcopy(OPENAI_BODY), {})
    assert req.messages[0].content[1:] == [
        OpaquePart(format="openai", data=AUDIO_PART),
        OpaquePart(format="openai", data=FILE_PART),
    ]
    built = OAI.build_request(req, "gpt-4o")
    assert orjson.dumps(built["messages"]) == orjson.dumps(OPENAI_BODY["messages"])


def test_openai_opaque_parts_are_dropped_for_other_providers() -> None:
    req = OAI.parse_request(copy.deepcopy(OPENAI_BODY), {})
    assert ANT.build_request(req, "claude")["messages"] == [
        {"role": "user", "content": "Transcribe and summarise."}
    ]
    assert OLL.build_request(req, "llama")["messages"] == [
        {"role": "user", "content": "Transcribe and summarise."}
    ]


def test_unknown_openai_part_types_are_still_rejected() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.content\[0\]\.type: unknown content part type"):
        OAI.parse_request(body, {})


# ---------------------------------------------------------------------------------------------
# Anthropic replies: non-streaming
# ---------------------------------------------------------------------------------------------

REPLY: dict[str, Any] = {
    "id": "msg_01search",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Let me search."}, SERVER_TOOL_USE, WEB_SEARCH_RESULT, CITED_TEXT],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 34},
}


def test_server_tool_reply_parses_to_opaque_parts_and_renders_back_verbatim() -> None:
    resp = ANT.parse_response(copy.deepcopy(REPLY))
    assert resp.content == [
        TextPart(text="Let me search."),
        OpaquePart(format="anthropic", data=SERVER_TOOL_USE),
        OpaquePart(format="anthropic", data=WEB_SEARCH_RESULT),
        TextPart(text=CITED_TEXT["text"], extra={"citations": [CITATION]}),
    ]
    rendered = ANT.render_response(resp, ChatRequest(model="m", source_format="anthropic"))
    assert orjson.dumps(rendered) == orjson.dumps(REPLY)


def test_unknown_reply_block_types_are_carried_too() -> None:
    # The provider is the authority on what it sends: a block type newer than this router passes through.
    body = copy.deepcopy(REPLY)
    body["content"].append({"type": "future_block", "payload": [1]})
    resp = ANT.parse_response(body)
    assert resp.content[-1] == OpaquePart(format="anthropic", data={"type": "future_block", "payload": [1]})
    assert ANT.render_response(resp, ChatRequest(model="m"))["content"][-1] == {
        "type": "future_block",
        "payload": [1],
    }


def test_server_tool_reply_renders_cleanly_for_openai_clients() -> None:
    rendered = OAI.render_response(ANT.parse_response(copy.deepcopy(REPLY)), ChatRequest(model="m"))
    message = rendered["choices"][0]["message"]
    assert message["content"] == "Let me search." + CITED_TEXT["text"]
    assert "tool_calls" not in message and rendered["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------------------------------------
# Anthropic replies: streaming
# ---------------------------------------------------------------------------------------------


def _frame(event: str, **data: Any) -> tuple[str, dict[str, Any]]:
    return event, {"type": event, **data}


UPSTREAM_FRAMES: list[tuple[str, dict[str, Any]]] = [
    _frame(
        "message_start",
        message={
            "id": "msg_01search",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    ),
    _frame("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    _frame("content_block_delta", index=0, delta={"type": "text_delta", "text": "Let me search."}),
    _frame("content_block_stop", index=0),
    _frame("content_block_start", index=1, content_block={**SERVER_TOOL_USE, "input": {}}),
    _frame("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": ""}),
    _frame(
        "content_block_delta",
        index=1,
        delta={"type": "input_json_delta", "partial_json": '{"query": "claude '},
    ),
    _frame(
        "content_block_delta",
        index=1,
        delta={"type": "input_json_delta", "partial_json": 'shannon birth date"}'},
    ),
    _frame("content_block_stop", index=1),
    _frame("content_block_start", index=2, content_block=WEB_SEARCH_RESULT),
    _frame("content_block_stop", index=2),
    _frame("content_block_start", index=3, content_block={"type": "text", "text": ""}),
    _frame("content_block_delta", index=3, delta={"type": "citations_delta", "citation": CITATION}),
    _frame("content_block_delta", index=3, delta={"type": "text_delta", "text": CITED_TEXT["text"]}),
    _frame("content_block_stop", index=3),
    _frame(
        "message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": 34}
    ),
    _frame("message_stop"),
]


def sse(frames: list[tuple[str, dict[str, Any]]]) -> bytes:
    """Anthropic SSE bytes for ``frames``."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in frames
    )


def parse_sse(raw: bytes | str) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` frames of an Anthropic SSE body (pings left out)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    frames = []
    for chunk in text.split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.split("\n"))
        if lines["event"] != "ping":
            frames.append((lines["event"], orjson.loads(lines["data"])))
    return frames


UPSTREAM_STREAM = sse(UPSTREAM_FRAMES)


def _decode(raw: bytes, chunk: int) -> list[Any]:
    decoder = ANT.stream_decoder()
    events: list[Any] = []
    for i in range(0, len(raw), chunk):
        events.extend(decoder.feed(raw[i : i + chunk]))
    return events + decoder.close()


def test_decoder_carries_server_tool_blocks_and_their_deltas() -> None:
    events = _decode(UPSTREAM_STREAM, 5)
    block_events = [e for e in events if isinstance(e, BlockStart | BlockDelta | BlockStop)]
    assert block_events[3] == BlockStart(
        index=1, part=OpaquePart(format="anthropic", data={**SERVER_TOOL_USE, "input": {}})
    )
    assert block_events[5] == BlockDelta(
        index=1,
        opaque=OpaquePart(
            format="anthropic", data={"type": "input_json_delta", "partial_json": '{"query": "claude '}
        ),
    )
    assert block_events[8] == BlockStart(index=2, part=OpaquePart(format="anthropic", data=WEB_SEARCH_RESULT))
    assert block_events[11] == BlockDelta(
        index=3, opaque=OpaquePart(format="anthropic", data={"type": "citations_delta", "citation": CITATION})
    )


def test_accumulated_stream_equals_the_non_streaming_reply() -> None:
    acc = ResponseAccumulator()
    for event in _decode(UPSTREAM_STREAM, 64):
        acc.feed(event)
    assert acc.result() == ANT.parse_response(copy.deepcopy(REPLY))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_anthropic_client_gets_the_upstream_stream_verbatim(chunk: int) -> None:
    renderer = ANT.stream_renderer(ChatRequest(model="m", source_format="anthropic"))
    out = b"".join(renderer.render(e) for e in _decode(UPSTREAM_STREAM, chunk))
    assert parse_sse(out) == UPSTREAM_FRAMES


def test_response_to_events_emits_opaque_blocks_whole_and_the_sdk_accumulates_them() -> None:
    resp = ANT.parse_response(copy.deepcopy(REPLY))
    events = response_to_events(resp)
    assert BlockStart(index=1, part=OpaquePart(format="anthropic", data=SERVER_TOOL_USE)) in events
    assert not [e for e in events if isinstance(e, BlockDelta) and e.index in (1, 2)]
    renderer = ANT.stream_renderer(ChatRequest(model="m", source_format="anthropic"))
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in parse_sse(b"".join(renderer.render(e) for e in events)):
        snapshot = accumulate_event(
            event=data,  # type: ignore[arg-type]
            current_snapshot=snapshot,
            json_bufs=json_bufs,
        )
    assert snapshot is not None
    final = SDKMessage.model_validate(snapshot.to_dict())
    assert final.model_dump(exclude_none=True)["content"] == REPLY["content"]
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    assert acc.result().content == resp.content


def test_openai_renderer_skips_opaque_blocks() -> None:
    renderer = OAI.stream_renderer(ChatRequest(model="m"))
    out = b"".join(renderer.render(e) for e in _decode(UPSTREAM_STREAM, 64)).decode()
    assert "srvtoolu" not in out and "citation" not in out and out.endswith("data: [DONE]\n\n")


def test_opaque_delta_for_a_block_of_another_format_is_not_rendered() -> None:
    renderer = ANT.stream_renderer(ChatRequest(model="m"))
    events = [
        BlockStart(index=0, part=TextPart(text="")),
        BlockDelta(index=0, opaque=OpaquePart(format="openai", data={"type": "annotation"})),
        BlockStart(index=1, part=OpaquePart(format="openai", data={"type": "input_audio"})),
        BlockStop(index=1),
        BlockStop(index=0),
    ]
    frames = parse_sse(b"".join(renderer.render(e) for e in events))
    assert [name for name, _ in frames] == ["message_start", "content_block_start", "content_block_stop"]


def test_unparseable_server_tool_input_leaves_the_started_input() -> None:
    acc = ResponseAccumulator()
    acc.feed(BlockStart(index=0, part=OpaquePart(format="anthropic", data={**SERVER_TOOL_USE, "input": {}})))
    acc.feed(
        BlockDelta(
            index=0,
            opaque=OpaquePart(
                format="anthropic", data={"type": "input_json_delta", "partial_json": '{"query": '}
            ),
        )
    )
    part = acc.result().content[0]
    assert isinstance(part, OpaquePart) and part.data["input"] == {} and part.fallback_text is None


# ---------------------------------------------------------------------------------------------
# Through the real app
# ---------------------------------------------------------------------------------------------

OA_URL, AN_URL, OL_URL = "http://oa.test/v1", "http://an.test", "http://ol.test"
CONFIG: dict[str, Any] = {
    "providers": [
        {"name": "oa", "format": "openai", "base_url": OA_URL, "discover": False},
        {"name": "an", "format": "anthropic", "base_url": AN_URL, "discover": False},
        {"name": "ol", "format": "ollama", "base_url": OL_URL, "discover": False},
    ],
    "routers": [{"type": "prefix", "model_prefix": f"{p}/", "provider": p, "strip_prefix": True}
                for p in ("oa", "an", "ol")],
}


async def test_claude_code_request_reaches_an_anthropic_provider_verbatim(
    router: Any, mock_providers: MockProviders
) -> None:
    route = mock_providers.add_anthropic(AN_URL)
    client = await router(CONFIG)
    body = {**copy.deepcopy(CLAUDE_CODE_BODY), "model": "an/claude-sonnet-4-5"}
    reply = await client.anthropic(body, {"anthropic-beta": "files-api-2025-04-14"})
    assert reply.status == 200, reply.text
    sent = orjson.loads(route.calls[-1].request.content)
    assert sent.pop("stream", False) is False  # the provider layer always says whether it streams
    assert sent == {**CLAUDE_CODE_BODY, "model": "claude-sonnet-4-5"}
    assert orjson.dumps(sent["messages"]) == orjson.dumps(CLAUDE_CODE_BODY["messages"])


@pytest.mark.parametrize("provider", ["oa", "ol"])
async def test_claude_code_request_reaches_other_providers_without_the_blocks(
    router: Any, mock_providers: MockProviders, provider: str
) -> None:
    route = mock_providers.add_openai(OA_URL) if provider == "oa" else mock_providers.add_ollama(OL_URL)
    client = await router(CONFIG)
    reply = await client.anthropic({**copy.deepcopy(CLAUDE_CODE_BODY), "model": f"{provider}/m"})
    assert reply.status == 200, reply.text
    sent = orjson.dumps(mock_providers.sent_json(route)).decode()
    assert "JVBERi0" not in sent and "srvtoolu" not in sent and "tool_reference" not in sent
    assert "Line one.\\nLine two." in sent and "Alpha beta." in sent


async def test_openai_audio_reaches_an_openai_provider_verbatim(
    router: Any, mock_providers: MockProviders
) -> None:
    route = mock_providers.add_openai(OA_URL)
    client = await router(CONFIG)
    reply = await client.openai({**copy.deepcopy(OPENAI_BODY), "model": "oa/gpt-4o"})
    assert reply.status == 200, reply.text
    assert mock_providers.sent_json(route)["messages"] == OPENAI_BODY["messages"]


async def test_server_tool_reply_reaches_clients(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_anthropic(AN_URL, body=copy.deepcopy(REPLY))
    client = await router(CONFIG)
    reply = await client.anthropic(
        {
            "model": "an/m",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "When was Shannon born?"}],
        }
    )
    assert reply.status == 200, reply.text
    assert orjson.dumps(reply.body["content"]) == orjson.dumps(REPLY["content"])
    reply = await client.openai({"model": "an/m", "messages": [{"role": "user", "content": "When?"}]})
    assert reply.status == 200, reply.text
    assert reply.body["choices"][0]["message"]["content"] == "Let me search." + CITED_TEXT["text"]


async def test_server_tool_stream_reaches_anthropic_clients_verbatim(
    router: Any, mock_providers: MockProviders
) -> None:
    mock_providers.add_anthropic(AN_URL, stream_body=UPSTREAM_STREAM)
    client = await router(CONFIG)
    reply = await client.anthropic(
        {
            "model": "an/m",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "When was Shannon born?"}],
        }
    )
    assert reply.status == 200, reply.text
    frames = parse_sse(reply.text)
    assert frames[1:] == UPSTREAM_FRAMES[1:]
    assert [d["index"] for name, d in frames if name == "content_block_start"] == [0, 1, 2, 3]
    assert reply.log_line is None or reply.log_line["status"] == 200


async def test_server_tool_stream_reaches_openai_clients_cleanly(
    router: Any, mock_providers: MockProviders
) -> None:
    mock_providers.add_anthropic(AN_URL, stream_body=UPSTREAM_STREAM)
    client = await router(CONFIG)
    reply = await client.openai(
        {"model": "an/m", "stream": True, "messages": [{"role": "user", "content": "When was Shannon born?"}]}
    )
    assert reply.status == 200, reply.text
    chunks = [orjson.loads(line[6:]) for line in reply.text.split("\n") if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Let me search." + CITED_TEXT["text"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks if c["choices"])
    assert reply.text.endswith("data: [DONE]\n\n")


async def test_anthropic_sdk_accumulates_a_server_tool_stream(
    router: Any, mock_providers: MockProviders
) -> None:
    import anthropic

    mock_providers.mock.route(host="127.0.0.1").pass_through()
    mock_providers.add_anthropic(AN_URL, stream_body=UPSTREAM_STREAM)
    client = await router(CONFIG)
    sdk = anthropic.AsyncAnthropic(
        base_url=str(client.client.make_url("")).rstrip("/"), api_key="k", max_retries=0
    )
    async with sdk.messages.stream(
        model="an/m", max_tokens=64, messages=[{"role": "user", "content": "When was Shannon born?"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.model_dump(exclude_none=True)["content"] == REPLY["content"]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 34


def test_opaque_part_in_a_plugin_answer_round_trips_through_the_accumulator() -> None:
    resp = ChatResponse(
        id="msg_x",
        model="m",
        content=[
            TextPart(text="a", extra={"citations": [CITATION]}),
            OpaquePart(format="anthropic", data=WEB_SEARCH_RESULT),
            ToolUsePart(id="toolu_1", name="f", input={"a": 1}),
        ],
        usage=Usage(input_tokens=1, output_tokens=2),
    )
    acc = ResponseAccumulator()
    for event in response_to_events(resp):
        acc.feed(event)
    assert acc.result() == resp
