"""The ``gemini`` provider format: request building, replies and streams (Google's API mocked by respx)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from llmrouter import ChatRequest, Message, TextPart, Tool, ToolResultPart, ToolUsePart
from llmrouter.errors import ProviderError
from llmrouter.testing import decode_stream, drive_provider_format, openai_chat

from llmrouter_gemini.format import GeminiFormat

BASE = "https://gemini.test"
FMT = GeminiFormat()
REPLY = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello from Gemini"}]}, "finishReason": "STOP"}],
    "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 4, "totalTokenCount": 11},
    "modelVersion": "gemini-2.5-flash", "responseId": "resp-1",
}
STREAM = (b'data: {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}], '
          b'"modelVersion": "gemini-2.5-flash", "responseId": "r2"}\r\n\r\n'
          b'data: {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo!"}]}, "finishReason": "STOP"}],'
          b' "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}\r\n\r\n')


def chat(text: str = "hi", **extra: Any) -> ChatRequest:
    return ChatRequest(model="gemini-2.5-flash", messages=[Message(role="user", content=[TextPart(text=text)])],
                       **extra)


async def test_non_streaming_call_url_key_and_reply() -> None:
    run = await drive_provider_format(FMT, chat(system=[TextPart(text="be brief")], max_tokens=50), REPLY,
                                      model="gemini-2.5-flash", base_url=BASE, api_key="g-key-123456")
    assert str(run.sent.url) == f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"
    assert run.sent.headers["x-goog-api-key"] == "g-key-123456"
    assert "authorization" not in run.sent.headers
    assert run.sent_json == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                             "systemInstruction": {"parts": [{"text": "be brief"}]},
                             "generationConfig": {"maxOutputTokens": 50}}
    assert run.response.text() == "Hello from Gemini"
    assert (run.response.stop_reason, run.response.usage.input_tokens, run.response.usage.output_tokens) == (
        "end_turn", 7, 4)


async def test_streaming_call_in_split_chunks() -> None:
    chunks = [STREAM[i:i + 17] for i in range(0, len(STREAM), 17)]  # frames cut anywhere
    run = await drive_provider_format(FMT, chat(), chunks, model="gemini-2.5-flash", stream=True, base_url=BASE)
    assert str(run.sent.url) == f"{BASE}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "stream" not in run.sent_json  # the URL says it
    kinds = [e.type for e in run.events]
    assert kinds == ["message_start", "block_start", "block_delta", "block_delta", "block_stop", "message_delta",
                     "message_stop"]
    assert "".join(e.text for e in run.events if e.type == "block_delta") == "Hello!"
    assert run.events[-2].usage.output_tokens == 2


async def test_upstream_errors_keep_their_status_and_name_the_provider() -> None:
    body = {"error": {"code": 400, "message": "API key not valid", "status": "INVALID_ARGUMENT"}}
    with pytest.raises(ProviderError) as info:
        await drive_provider_format(FMT, chat(), body, status=400, base_url=BASE)
    assert info.value.upstream_status == 400
    assert "returned 400: API key not valid" in info.value.message


def test_tool_calls_and_results_round_trip() -> None:
    request = ChatRequest(model="g", tools=[Tool(name="weather", description="Weather",
                                                 input_schema={"type": "object", "properties": {}})],
                          messages=[Message(role="user", content=[TextPart(text="weather?")]),
                                    Message(role="assistant", content=[ToolUsePart(id="c1", name="weather",
                                                                                   input={"city": "Oslo"})]),
                                    Message(role="user", content=[ToolResultPart(tool_use_id="c1",
                                                                                 content=[TextPart(text="-3C")])])])
    body = FMT.build_request(request, "g")
    assert body["contents"][1] == {"role": "model", "parts": [{"functionCall": {"name": "weather",
                                                                                "args": {"city": "Oslo"}}}]}
    assert body["contents"][2]["parts"][0] == {"functionResponse": {"name": "weather",
                                                                    "response": {"content": "-3C"}}}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    reply = FMT.parse_response({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Bergen"}}}]}, "finishReason": "STOP"}]})
    assert reply.stop_reason == "tool_use"
    assert (reply.tool_calls()[0].name, reply.tool_calls()[0].input) == ("weather", {"city": "Bergen"})


def test_stream_decoder_handles_tool_calls_thinking_and_safety() -> None:
    frames = [
        b'data: {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": true}]}}]}\n\n',
        b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}}]}\n\n',
        b'data: {"candidates": [{"finishReason": "SAFETY"}]}\n\n',
    ]
    events = decode_stream(FMT, frames)
    assert [e.type for e in events] == ["message_start", "block_start", "block_delta", "block_stop", "block_start",
                                        "block_delta", "block_stop", "message_delta", "message_stop"]
    assert events[2].thinking == "hmm" and events[5].partial_json == '{"a":1}'
    assert events[-2].stop_reason == "refusal"
    assert decode_stream(FMT, [b""])[-1].type == "error"  # an empty stream is an error, not a silent reply


def test_json_output_and_models_listing() -> None:
    body = FMT.build_request(chat(response_format={"type": "json_schema", "schema": {"type": "object"}}), "g")
    assert body["generationConfig"] == {"responseMimeType": "application/json",
                                        "responseJsonSchema": {"type": "object"}}
    assert FMT.parse_models({"models": [{"name": "models/gemini-2.5-pro"}]}) == ["gemini-2.5-pro"]


PROVIDER = {"name": "g", "format": "gemini", "base_url": BASE, "api_key_env": "GEMINI_TEST_KEY",
            "models": ["gemini-2.5-flash"], "discover": False}
CONFIG = {"providers": [PROVIDER], "routers": [{"type": "fallback"}]}


async def test_the_router_serves_openai_and_anthropic_clients_from_gemini(router: Any, mock_providers: Any) -> None:
    url = f"{BASE}/v1beta/models/gemini-2.5-flash"
    generate = mock_providers.mock.post(f"{url}:generateContent").respond(json=REPLY)
    mock_providers.mock.post(f"{url}:streamGenerateContent", params={"alt": "sse"}).mock(
        return_value=httpx.Response(200, content=STREAM, headers={"content-type": "text/event-stream"}))
    client = await router(CONFIG, environ={"GEMINI_TEST_KEY": "g-key-123456"})

    reply = await client.openai(openai_chat("hi", model="gemini-2.5-flash"))
    assert reply.status == 200, reply.text
    assert reply.body["choices"][0]["message"]["content"] == "Hello from Gemini"
    assert reply.provider == "g"
    assert generate.calls[0].request.headers["x-goog-api-key"] == "g-key-123456"
    assert reply.log_line["usage"] == {"input_tokens": 7, "output_tokens": 4}

    reply = await client.anthropic({"model": "gemini-2.5-flash", "max_tokens": 20, "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status == 200
    assert '"text":"Hel"' in reply.text.replace(" ", "") and "message_stop" in reply.text


async def test_unknown_format_names_the_registered_ones(router: Any) -> None:
    from llmrouter.config import ConfigError

    with pytest.raises(ConfigError, match=r"unknown format 'gemeni' \(registered: anthropic, echo, gemini, ollama"):
        await router({"providers": [{**PROVIDER, "format": "gemeni"}], "routers": [{"type": "fallback"}]},
                     environ={"GEMINI_TEST_KEY": "k"})
