"""OpenAI Chat Completions format: client parsing/rendering, upstream building/decoding, streams."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llmrouter.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PluginFailed,
    ProviderError,
    ProviderTimeout,
    RouterError,
)
from llmrouter.formats import openai as openai_format
from llmrouter.formats import openai_stream
from llmrouter.formats.base import response_to_events
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    ResponseAccumulator,
    ResponseFormat,
    StreamError,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
)

FMT = OpenAIFormat()
CREATED = 1700000000


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin ``created`` so rendered bodies and frames can be compared exactly."""
    monkeypatch.setattr(openai_stream, "now", lambda: CREATED)
    monkeypatch.setattr(openai_format, "now", lambda: CREATED)


def parse(body: dict[str, Any]) -> ChatRequest:
    return FMT.parse_request(body, {})


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def frames(data: bytes) -> list[Any]:
    """Split SSE bytes into decoded ``data:`` payloads (``"[DONE]"`` kept as a string)."""
    assert data.endswith(b"\n\n")
    out = []
    for frame in data.split(b"\n\n")[:-1]:
        assert frame.startswith(b"data: "), frame
        payload = frame[len(b"data: ") :]
        out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def render_all(request: ChatRequest, events: list[Any]) -> bytes:
    renderer = FMT.stream_renderer(request)
    return b"".join(renderer.render(e) for e in events)


def decode(data: bytes, chunk_size: int | None = None) -> list[Any]:
    decoder = FMT.stream_decoder()
    events: list[Any] = []
    step = chunk_size or len(data) or 1
    for start in range(0, len(data), step):
        events.extend(decoder.feed(data[start : start + step]))
    events.extend(decoder.close())
    return events


def accumulate(events: list[Any]) -> ChatResponse:
    acc = ResponseAccumulator()
    for event in events:
        acc.feed(event)
    return acc.result()


# =============================================================================================
# parse_request
# =============================================================================================


def test_parse_minimal_text_request() -> None:
    req = parse({"model": "gpt-4o", "messages": [user("hello")]})
    assert req.model == "gpt-4o"
    assert req.source_format == "openai"
    assert req.system is None
    assert req.messages == [Message(role="user", content=[TextPart(text="hello")])]
    assert req.stream is False and req.include_usage is False
    assert req.extra == {} and req.plugins == []


def test_parse_leading_system_and_developer_become_system_mid_ones_stay() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use tools"}]},
                user("hi"),
                {"role": "system", "content": "now be verbose"},
                {"role": "assistant", "content": "ok"},
            ],
        }
    )
    assert req.system == [TextPart(text="be brief"), TextPart(text="use tools")]
    assert [m.role for m in req.messages] == ["user", "system", "assistant"]
    assert req.messages[1].content == [TextPart(text="now be verbose")]


def test_parse_images_data_url_and_http_url() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://x.test/cat.png", "detail": "high"},
                        },
                    ],
                }
            ],
        }
    )
    parts = req.messages[0].content
    assert parts[0] == TextPart(text="what is this?")
    assert parts[1] == ImagePart(data="QUJD", media_type="image/jpeg")
    assert parts[2] == ImagePart(url="https://x.test/cat.png", extra={"detail": "high"})


def test_parse_assistant_tool_calls_reasoning_refusal_and_merged_tool_results() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                user("weather in Paris and Rome?"),
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "two cities",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": Rome'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
                user("thanks"),
            ],
        }
    )
    assistant = req.messages[1]
    assert assistant.role == "assistant"
    assert assistant.content == [
        ThinkingPart(thinking="two cities"),
        ToolUsePart(id="call_1", name="weather", input={"city": "Paris"}),
        ToolUsePart(id="call_2", name="weather", input=None, raw_arguments='{"city": Rome'),
    ]
    assert assistant.extra == {"refusal": None}
    assert len(req.messages) == 4
    assert req.messages[2] == Message(
        role="user",
        content=[
            ToolResultPart(tool_use_id="call_1", content=[TextPart(text="sunny")]),
            ToolResultPart(tool_use_id="call_2", content=[TextPart(text="rainy")]),
        ],
    )
    assert req.messages[3].content == [TextPart(text="thanks")]


def test_parse_empty_tool_arguments_mean_no_input() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "now", "arguments": ""}}
                    ],
                },
            ],
        }
    )
    assert req.messages[0].content == [ToolUsePart(id="c", name="now", input={})]


def test_parse_tools_and_tool_choice_variants() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        }
    ]
    req = parse(
        {
            "model": "m",
            "messages": [user("x")],
            "tools": tools,
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert req.tools == [
        Tool(
            name="weather",
            description="Get weather",
            input_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            extra={"strict": True},
        )
    ]
    assert req.tool_choice == ToolChoice(type="required", disable_parallel=True)
    for raw, expected in [
        ("auto", ToolChoice(type="auto")),
        ("none", ToolChoice(type="none")),
        ({"type": "function", "function": {"name": "weather"}}, ToolChoice(type="tool", name="weather")),
    ]:
        assert (
            parse({"model": "m", "messages": [user("x")], "tools": tools, "tool_choice": raw}).tool_choice
            == expected
        )
    only_parallel = parse(
        {"model": "m", "messages": [user("x")], "tools": tools, "parallel_tool_calls": False}
    )
    assert only_parallel.tool_choice == ToolChoice(type="auto", disable_parallel=True)


def test_parse_sampling_fields_stream_options_response_format_and_extras() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [user("x")],
            "max_completion_tokens": 300,
            "temperature": 0,
            "top_p": 0.9,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
            },
            "metadata": {"session": "s1"},
            "plugins": [{"id": "response-healing"}],
            "user": "u-42",
            "seed": 7,
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0.5,
            "reasoning_effort": "low",
            "service_tier": "auto",
            "store": False,
        }
    )
    assert req.max_tokens == 300
    assert req.temperature == 0.0 and req.top_p == 0.9
    assert req.stop == ["END"]
    assert req.stream is True and req.include_usage is True
    assert req.response_format == ResponseFormat(
        type="json_schema", name="answer", schema={"type": "object"}, strict=True
    )
    assert req.metadata == {"session": "s1"}
    assert req.plugins == [{"id": "response-healing"}]
    assert req.extra == {
        "max_completion_tokens": 300,
        "user": "u-42",
        "seed": 7,
        "n": 1,
        "logprobs": False,
        "presence_penalty": 0.5,
        "reasoning_effort": "low",
        "service_tier": "auto",
        "store": False,
    }


def test_parse_response_format_json_object_and_text_and_stop_list() -> None:
    base = {"model": "m", "messages": [user("x")]}
    assert parse({**base, "response_format": {"type": "json_object"}}).response_format == ResponseFormat(
        type="json_object"
    )
    assert parse({**base, "response_format": {"type": "text"}}).response_format is None
    assert parse({**base, "stop": ["a", "b"], "max_tokens": 5}).stop == ["a", "b"]
    plain = parse({**base, "max_tokens": 5})
    assert plain.max_tokens == 5 and "max_completion_tokens" not in plain.extra


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "request body must be a JSON object"),
        ({"messages": [user("x")]}, "model: field required"),
        ({"model": "", "messages": [user("x")]}, "model: must not be empty"),
        ({"model": 3, "messages": [user("x")]}, "model: expected a string"),
        ({"model": "m"}, "messages: field required"),
        ({"model": "m", "messages": []}, "messages: must contain at least one message"),
        ({"model": "m", "messages": "hi"}, "messages: expected an array"),
        ({"model": "m", "messages": [user("x")], "temperature": "hot"}, "temperature: expected a number"),
        ({"model": "m", "messages": [user("x")], "top_p": True}, "top_p: expected a number"),
        ({"model": "m", "messages": [user("x")], "max_tokens": "10"}, "max_tokens: expected an integer"),
        ({"model": "m", "messages": [user("x")], "stream": "yes"}, "stream: expected a boolean"),
        ({"model": "m", "messages": [user("x")], "stop": [1]}, "stop[0]: expected a string"),
        (
            {
                "model": "m",
                "messages": [
                    user("x"),
                    {"role": "assistant", "content": "y"},
                    {"role": "user", "content": [{"type": "foo"}]},
                ],
            },
            "messages[2].content[0].type: unknown content part type 'foo'",
        ),
        (
            {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role: unknown role 'wizard'",
        ),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role: field required"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content: field required"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages[0].content[0].image_url.url: field required",
        ),
        (
            {
                "model": "m",
                "messages": [
                    user("x"),
                    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
                ],
            },
            "messages[1].tool_calls[0].function: field required",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id: field required",
        ),
        (
            {"model": "m", "messages": [user("x")], "tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name: field required",
        ),
        ({"model": "m", "messages": [user("x")], "tool_choice": "sometimes"}, "tool_choice: expected 'auto'"),
        (
            {"model": "m", "messages": [user("x")], "response_format": {"type": "xml"}},
            "response_format.type: unknown response format type 'xml'",
        ),
        (
            {"model": "m", "messages": [user("x")], "plugins": [{"tier": "low"}]},
            "plugins[0].id: field required",
        ),
    ],
)
def test_parse_errors_name_the_field(body: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(body)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.status == 400


def test_parse_accepts_what_the_openai_sdk_sends() -> None:
    """Capture a real SDK request body (no network: a mock transport) and parse it."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json=render_body_for_sdk())

    client = openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "developer", "content": "sys"}, {"role": "user", "content": "hi"}],
        max_completion_tokens=50,
        parallel_tool_calls=False,
        user="me",
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        response_format={"type": "json_object"},
    )
    req = parse(orjson.loads(seen[0]))
    assert req.system == [TextPart(text="sys")] and req.max_tokens == 50
    assert req.tool_choice == ToolChoice(type="auto", disable_parallel=True)
    assert req.extra["user"] == "me"


def render_body_for_sdk() -> dict[str, Any]:
    return FMT.render_response(ChatResponse.from_text("ok", model="gpt-4o"), ChatRequest(model="gpt-4o"))


# =============================================================================================
# render_response / render_error
# =============================================================================================


def test_render_text_response_golden() -> None:
    resp = ChatResponse(
        id="chatcmpl-abc",
        model="gpt-4o",
        content=[TextPart(text="Hello!")],
        stop_reason="end_turn",
        usage=Usage(input_tokens=9, output_tokens=3),
    )
    assert FMT.render_response(resp, ChatRequest(model="requested")) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def test_render_tool_calls_and_thinking_golden() -> None:
    resp = ChatResponse(
        id="msg_01",
        model="",
        stop_reason="tool_use",
        content=[
            ThinkingPart(thinking="need data", signature="sig"),
            ToolUsePart(id="call_a", name="weather", input={"city": "Paris"}),
            ToolUsePart(id="call_b", name="weather", raw_arguments='{"city": Rome'),
        ],
        usage=Usage(input_tokens=5, output_tokens=20, cache_read_input_tokens=100),
    )
    body = FMT.render_response(resp, ChatRequest(model="requested"))
    assert body["id"].startswith("chatcmpl-") and body["id"] != "chatcmpl-"
    assert body["model"] == "requested"
    assert body["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "reasoning_content": "need data",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": Rome'},
                    },
                ],
            },
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 105,
        "completion_tokens": 20,
        "total_tokens": 125,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_render_stop_reason_mapping(stop: Any, finish: str) -> None:
    resp = ChatResponse(content=[TextPart(text="x")], stop_reason=stop)
    assert FMT.render_response(resp, ChatRequest(model="m"))["choices"][0]["finish_reason"] == finish


def test_render_tool_calls_with_end_turn_reports_tool_calls() -> None:
    resp = ChatResponse(content=[ToolUsePart(id="c", name="f", input={})], stop_reason="end_turn")
    assert FMT.render_response(resp, ChatRequest(model="m"))["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error", None),
        (AuthenticationFailed("no key"), 401, "authentication_error", None),
        (NotFound("nope"), 404, "not_found_error", None),
        (PayloadTooLarge("big"), 413, "invalid_request_error", "request_too_large"),
        (PluginFailed("plugin 'x' failed: boom"), 500, "server_error", None),
        (ProviderError("local", "provider 'local' returned 503"), 502, "server_error", "provider_error"),
        (ProviderTimeout("local", "provider 'local' timed out"), 504, "timeout_error", "provider_error"),
        (RouterError("slow down", status=429, kind="rate_limit_error"), 429, "rate_limit_error", None),
        (RouterError("odd", status=418, kind="teapot"), 418, "invalid_request_error", None),
    ],
)
def test_render_error_shape(error: RouterError, status: int, kind: str, code: str | None) -> None:
    assert error.status == status
    assert FMT.render_error(error) == {
        "error": {"message": error.message, "type": kind, "param": None, "code": code}
    }


# =============================================================================================
# build_request
# =============================================================================================


def test_openai_to_openai_round_trip_carries_extras_and_the_clients_max_tokens_key() -> None:
    body = {
        "model": "client-model",
        "messages": [
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "hmm",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "content": "go on", "name": "bob"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "stop": ["X"],
        "user": "u1",
        "seed": 3,
        "metadata": {"k": "v"},
        "plugins": [{"id": "moderation"}],
        "response_format": {"type": "json_object"},
    }
    req = parse(body)
    req.tags = ["code"]
    req.forced_provider = "p"
    req.headers = {"x-test": "1"}
    assert FMT.build_request(req, "upstream-model") == {
        "model": "upstream-model",
        "messages": [
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "user", "name": "bob", "content": "go on"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 64,
        "temperature": 0.2,
        "stop": ["X"],
        "response_format": {"type": "json_object"},
        "metadata": {"k": "v"},
        "user": "u1",
        "seed": 3,
    }


def test_build_max_tokens_key_follows_client_and_is_never_doubled() -> None:
    plain = parse({"model": "m", "messages": [user("x")], "max_tokens": 10})
    built = FMT.build_request(plain, "m")
    assert built["max_tokens"] == 10 and "max_completion_tokens" not in built
    both = parse({"model": "m", "messages": [user("x")], "max_tokens": 10, "max_completion_tokens": 20})
    built = FMT.build_request(both, "m")
    assert built["max_completion_tokens"] == 20 and "max_tokens" not in built
    cross = ChatRequest(
        model="m",
        source_format="anthropic",
        max_tokens=30,
        messages=[Message(role="user", content=[TextPart(text="x")])],
    )
    built = FMT.build_request(cross, "m")
    assert built["max_tokens"] == 30 and "max_completion_tokens" not in built


def test_build_streaming_always_asks_for_usage() -> None:
    req = parse({"model": "m", "messages": [user("x")], "stream": True})
    built = FMT.build_request(req, "m")
    assert built["stream"] is True and built["stream_options"] == {"include_usage": True}
    assert "stream" not in FMT.build_request(parse({"model": "m", "messages": [user("x")]}), "m")


def test_build_from_anthropic_source_maps_content_and_drops_foreign_extras() -> None:
    cache = {"cache_control": {"type": "ephemeral"}}
    req = ChatRequest(
        model="claude-x",
        source_format="anthropic",
        system=[TextPart(text="You are helpful.", extra=cache), TextPart(text="Be brief.")],
        messages=[
            Message(
                role="user",
                content=[
                    TextPart(text="see", extra=cache),
                    ImagePart(data="QUJD", media_type="image/png", extra=cache),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(thinking="secret", signature="s"),
                    TextPart(text="Checking."),
                    ToolUsePart(id="toolu_1", name="read", input={"path": "a"}, extra=cache),
                    ToolUsePart(id="toolu_2", name="read", raw_arguments='{"path": b'),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResultPart(
                        tool_use_id="toolu_1",
                        content=[TextPart(text="line1"), TextPart(text="line2")],
                        extra=cache,
                    ),
                    ToolResultPart(
                        tool_use_id="toolu_2",
                        is_error=True,
                        content=[TextPart(text="no such file"), ImagePart(url="https://x.test/s.png")],
                    ),
                    TextPart(text="continue"),
                ],
            ),
            Message(role="system", content=[TextPart(text="mid-conversation rule")], extra={"x": 1}),
        ],
        tools=[Tool(name="read", description="Read a file", input_schema={"type": "object"}, extra=cache)],
        tool_choice=ToolChoice(type="required", disable_parallel=True),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}),
        max_tokens=1000,
        temperature=1.0,
        top_p=0.5,
        stop=["STOP"],
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "abc"},
        plugins=[{"id": "moderation"}],
        tags=["t"],
        forced_provider="p",
        headers={"anthropic-beta": "x"},
        extra={"context_management": {"edits": []}, "output_config": {}},
    )
    assert FMT.build_request(req, "gpt-4o") == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are helpful.\n\nBe brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "read", "arguments": '{"path":"a"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "read", "arguments": '{"path": b'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "line1\nline2"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "no such file"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://x.test/s.png"}},
                    {"type": "text", "text": "continue"},
                    {"type": "text", "text": "<system-reminder>\nmid-conversation rule\n</system-reminder>"},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "read", "description": "Read a file", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 1000,
        "temperature": 1.0,
        "top_p": 0.5,
        "stop": ["STOP"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_build_tool_choice_without_tools_is_not_sent() -> None:
    req = ChatRequest(
        model="m",
        messages=[Message(role="user", content=[TextPart(text="x")])],
        tool_choice=ToolChoice(type="none"),
    )
    assert "tool_choice" not in FMT.build_request(req, "m")


def test_build_never_forwards_router_fields_even_if_placed_in_extra() -> None:
    req = parse({"model": "m", "messages": [user("x")], "plugins": [{"id": "p"}]})
    req.extra.update({"tags": ["a"], "forced_provider": "x", "headers": {"a": "b"}, "plugins": [1]})
    built = FMT.build_request(req, "m")
    assert not {"plugins", "tags", "forced_provider", "headers"} & built.keys()


# =============================================================================================
# parse_response
# =============================================================================================


def completion(
    message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        "system_fingerprint": "fp_1",
    }


def test_parse_response_text_and_usage_with_cached_tokens() -> None:
    resp = FMT.parse_response(
        completion(
            {"role": "assistant", "content": "Hi there", "refusal": None},
            usage={
                "prompt_tokens": 120,
                "completion_tokens": 4,
                "total_tokens": 124,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
        )
    )
    assert resp == ChatResponse(
        id="chatcmpl-9",
        model="gpt-4o-2024",
        content=[TextPart(text="Hi there")],
        stop_reason="end_turn",
        usage=Usage(input_tokens=20, output_tokens=4, cache_read_input_tokens=100),
        extra={"system_fingerprint": "fp_1"},
    )
    # And rendering it back gives the client OpenAI's own figures.
    assert FMT.render_response(resp, ChatRequest(model="m"))["usage"]["prompt_tokens"] == 120


def test_parse_response_tool_calls_with_reasoning_first_and_invalid_arguments_kept() -> None:
    resp = FMT.parse_response(
        completion(
            {
                "role": "assistant",
                "content": "Let me check.",
                "reasoning_content": "think",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{oops"}},
                ],
            },
            finish="tool_calls",
        )
    )
    assert resp.content == [
        ThinkingPart(thinking="think"),
        TextPart(text="Let me check."),
        ToolUsePart(id="call_1", name="a", input={"x": 1}),
        ToolUsePart(id="call_2", name="b", raw_arguments="{oops"),
    ]
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=12, output_tokens=4)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
        ("eos", "end_turn"),
    ],
)
def test_parse_response_finish_reason_mapping(finish: str | None, stop: str) -> None:
    assert (
        FMT.parse_response(completion({"role": "assistant", "content": "x"}, finish=finish)).stop_reason
        == stop
    )


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "bad key", "type": "invalid_request_error"}},
        {"id": "x", "object": "chat.completion", "choices": []},
        {"object": "list", "data": []},
        "not json object",
        {"choices": [{"index": 0}]},
    ],
)
def test_parse_response_rejects_non_completions(body: Any) -> None:
    with pytest.raises(ValueError):
        FMT.parse_response(body)


# =============================================================================================
# stream renderer
# =============================================================================================

TEXT_EVENTS = [
    MessageStart(id="chatcmpl-1", model="gpt-4o", usage=Usage(input_tokens=3)),
    BlockStart(index=0, part=TextPart(text="")),
    BlockDelta(index=0, text="Hel"),
    BlockDelta(index=0, text="lo"),
    BlockStop(index=0),
    MessageDelta(stop_reason="end_turn", usage=Usage(output_tokens=2)),
    MessageStop(),
]


def test_stream_renderer_text_golden_bytes() -> None:
    head = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o",'
    assert render_all(ChatRequest(model="m", stream=True), TEXT_EVENTS) == (
        head
        + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        + b'"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'"choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'"choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}\n\n'
        + head
        + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
        + b"data: [DONE]\n\n"
    )


def chunk(
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    usage: bool = False,
    cid: str = "chatcmpl-1",
    model: str = "gpt-4o",
) -> dict[str, Any]:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = None
    return body


def test_stream_renderer_include_usage_golden() -> None:
    out = frames(render_all(ChatRequest(model="m", stream=True, include_usage=True), TEXT_EVENTS))
    assert out == [
        chunk({"role": "assistant", "content": ""}, usage=True),
        chunk({"content": "Hel"}, usage=True),
        chunk({"content": "lo"}, usage=True),
        chunk({}, "stop", usage=True),
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        "[DONE]",
    ]


def test_stream_renderer_tool_calls_with_sparse_block_indices_golden() -> None:
    events = [
        MessageStart(id="msg_abc", model="claude"),
        BlockStart(index=0, part=ThinkingPart()),
        BlockDelta(index=0, thinking="plan"),
        BlockDelta(index=0, signature="sig"),
        BlockStop(index=0),
        BlockStart(index=2, part=TextPart(text="")),
        BlockDelta(index=2, text="On it."),
        BlockStop(index=2),
        BlockStart(index=5, part=ToolUsePart(id="toolu_a", name="read", input={})),
        BlockDelta(index=5, partial_json='{"path":'),
        BlockDelta(index=5, partial_json='"a.txt"}'),
        BlockStop(index=5),
        BlockStart(index=9, part=ToolUsePart(id="toolu_b", name="ls", input={})),
        BlockDelta(index=9, partial_json="{}"),
        BlockStop(index=9),
        MessageDelta(stop_reason="tool_use"),
        MessageStop(),
    ]
    out = frames(render_all(ChatRequest(model="m", stream=True), events))
    cid = out[0]["id"]
    assert cid.startswith("chatcmpl-") and all(f["id"] == cid for f in out[:-1])

    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(delta, finish, cid=cid, model="claude")

    assert out == [
        c({"role": "assistant", "content": ""}),
        c({"reasoning_content": "plan"}),
        c({"content": "On it."}),
        c(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_a",
                        "type": "function",
                        "function": {"name": "read", "arguments": ""},
                    }
                ]
            }
        ),
        c({"tool_calls": [{"index": 0, "function": {"arguments": '{"path":'}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": '"a.txt"}'}}]}),
        c(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_b",
                        "type": "function",
                        "function": {"name": "ls", "arguments": ""},
                    }
                ]
            }
        ),
        c({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        c({}, "tool_calls"),
        "[DONE]",
    ]


def test_stream_renderer_error_mid_stream() -> None:
    renderer = FMT.stream_renderer(ChatRequest(model="m", stream=True))
    renderer.render(TEXT_EVENTS[0])
    out = renderer.render_error(ProviderTimeout("p", "provider 'p' timed out"))
    assert frames(out) == [
        {
            "error": {
                "message": "provider 'p' timed out",
                "type": "timeout_error",
                "param": None,
                "code": "provider_error",
            }
        }
    ]
    assert renderer.render(MessageStop()) == b""
    canonical = FMT.stream_renderer(ChatRequest(model="m")).render(StreamError(message="boom"))
    assert frames(canonical) == [
        {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    ]


def test_stream_renderer_output_is_accepted_by_the_openai_sdk() -> None:
    events = response_to_events(
        ChatResponse(
            id="chatcmpl-sdk",
            model="gpt-4o",
            stop_reason="tool_use",
            usage=Usage(input_tokens=7, output_tokens=9),
            content=[TextPart(text="Sure."), ToolUsePart(id="call_9", name="f", input={"q": "x"})],
        )
    )
    data = render_all(ChatRequest(model="m", stream=True, include_usage=True), events)
    for payload in frames(data)[:-1]:
        ChatCompletionChunk.model_validate(payload)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data, headers={"content-type": "text/event-stream"})

    client = openai.OpenAI(
        api_key="k",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Sure."
    assert message.tool_calls[0].function.arguments == '{"q":"x"}'
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 16


# =============================================================================================
# stream decoder
# =============================================================================================


def sse_bytes(*payloads: Any) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


UPSTREAM_TEXT = sse_bytes(
    chunk({"role": "assistant", "content": "", "refusal": None}, usage=True),
    chunk({"content": "Hel"}, usage=True),
    chunk({"content": "lo"}, usage=True),
    chunk({}, "stop", usage=True),
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 2,
            "total_tokens": 32,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    },
    b"[DONE]",
)

TEXT_DECODED = [
    MessageStart(id="chatcmpl-1", model="gpt-4o"),
    BlockStart(index=0, part=TextPart(text="")),
    BlockDelta(index=0, text="Hel"),
    BlockDelta(index=0, text="lo"),
    BlockStop(index=0),
    MessageDelta(
        stop_reason="end_turn", usage=Usage(input_tokens=20, output_tokens=2, cache_read_input_tokens=10)
    ),
    MessageStop(),
]


def test_decoder_text_with_usage_chunk_golden() -> None:
    assert decode(UPSTREAM_TEXT) == TEXT_DECODED


def test_decoder_one_byte_chunks_and_crlf() -> None:
    assert decode(UPSTREAM_TEXT, chunk_size=1) == TEXT_DECODED
    assert decode(UPSTREAM_TEXT.replace(b"\n", b"\r\n"), chunk_size=1) == TEXT_DECODED


def tool_delta(
    index: int, arguments: str, *, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index}
    if call_id:
        call.update({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    else:
        call["function"] = {"arguments": arguments}
    return {"tool_calls": [call]}


UPSTREAM_TOOLS = sse_bytes(
    chunk({"role": "assistant", "content": None}),
    chunk({"reasoning_content": "two"}),
    chunk({"reasoning_content": " calls"}),
    chunk({"content": "Checking."}),
    chunk(tool_delta(0, "", call_id="call_a", name="weather")),
    chunk(tool_delta(0, '{"city":')),
    chunk(tool_delta(0, '"Paris"}')),
    chunk(tool_delta(1, '{"city": Ro', call_id="call_b", name="weather")),
    chunk(tool_delta(1, "me")),
    chunk({}, "tool_calls"),
    b"[DONE]",
)


def test_decoder_parallel_tool_calls_golden() -> None:
    assert decode(UPSTREAM_TOOLS) == [
        MessageStart(id="chatcmpl-1", model="gpt-4o"),
        BlockStart(index=0, part=ThinkingPart()),
        BlockDelta(index=0, thinking="two"),
        BlockDelta(index=0, thinking=" calls"),
        BlockStop(index=0),
        BlockStart(index=1, part=TextPart(text="")),
        BlockDelta(index=1, text="Checking."),
        BlockStop(index=1),
        BlockStart(index=2, part=ToolUsePart(id="call_a", name="weather", input={})),
        BlockDelta(index=2, partial_json='{"city":'),
        BlockDelta(index=2, partial_json='"Paris"}'),
        BlockStart(index=3, part=ToolUsePart(id="call_b", name="weather", input={})),
        BlockDelta(index=3, partial_json='{"city": Ro'),
        BlockDelta(index=3, partial_json="me"),
        # Tool blocks stay open to the end: parallel calls' fragments may interleave.
        BlockStop(index=2),
        BlockStop(index=3),
        MessageDelta(stop_reason="tool_use", usage=None),
        MessageStop(),
    ]
    assert decode(UPSTREAM_TOOLS, chunk_size=1) == decode(UPSTREAM_TOOLS)


def test_decoder_output_accumulates_to_the_expected_response() -> None:
    assert accumulate(decode(UPSTREAM_TOOLS, chunk_size=7)) == ChatResponse(
        id="chatcmpl-1",
        model="gpt-4o",
        stop_reason="tool_use",
        content=[
            ThinkingPart(thinking="two calls"),
            TextPart(text="Checking."),
            ToolUsePart(id="call_a", name="weather", input={"city": "Paris"}),
            ToolUsePart(id="call_b", name="weather", raw_arguments='{"city": Rome'),
        ],
    )
    text = accumulate(decode(UPSTREAM_TEXT, chunk_size=1))
    assert text.text() == "Hello" and text.usage == Usage(
        input_tokens=20, output_tokens=2, cache_read_input_tokens=10
    )


def test_decoder_error_frame() -> None:
    data = sse_bytes(chunk({"content": "par"}), {"error": {"message": "overloaded", "type": "server_error"}})
    decoder = FMT.stream_decoder()
    events = [e for i in range(len(data)) for e in decoder.feed(data[i : i + 1])]
    assert events[-1] == StreamError(message="overloaded", error_type="server_error")
    assert decoder.close() == []
    assert decoder.feed(sse_bytes(chunk({"content": "more"}), b"[DONE]")) == []


def test_decoder_close_without_done_finishes_exactly_once() -> None:
    decoder = FMT.stream_decoder()
    events = decoder.feed(sse_bytes(chunk({"content": "cut"}), chunk({}, "length")))
    tail = decoder.close()
    assert tail == [BlockStop(index=0), MessageDelta(stop_reason="max_tokens"), MessageStop()]
    assert decoder.close() == []
    assert accumulate(events + tail).stop_reason == "max_tokens"
    done = FMT.stream_decoder()
    assert done.feed(sse_bytes(chunk({"content": "x"}), b"[DONE]"))[-1] == MessageStop()
    assert done.close() == []


def test_decoder_empty_stream_is_an_error() -> None:
    assert FMT.stream_decoder().close() == [StreamError(message="upstream stream ended without any data")]


def test_decoder_tool_call_without_index_and_reused_index() -> None:
    data = sse_bytes(
        chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": '{"k":'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        b"[DONE]",
    )
    assert accumulate(decode(data)).tool_calls() == [
        ToolUsePart(id="a", name="f", input={}),
        ToolUsePart(id="b", name="g", input={"k": 1}),
    ]


# =============================================================================================
# renderer -> decoder round trip
# =============================================================================================


@pytest.mark.parametrize("include_usage", [False, True])
def test_renderer_output_decodes_back_to_the_same_response(include_usage: bool) -> None:
    original = ChatResponse(
        id="chatcmpl-rt",
        model="gpt-4o",
        stop_reason="tool_use",
        usage=Usage(input_tokens=11, output_tokens=22) if include_usage else Usage(),
        content=[
            ThinkingPart(thinking="hmm"),
            TextPart(text="Calling two tools."),
            ToolUsePart(id="call_1", name="a", input={"x": [1, 2]}),
            ToolUsePart(id="call_2", name="b", raw_arguments="{bad"),
        ],
    )
    data = render_all(
        ChatRequest(model="m", stream=True, include_usage=include_usage), response_to_events(original)
    )
    assert accumulate(decode(data, chunk_size=3)) == original


def test_n_other_than_one_is_refused_by_name() -> None:
    import pytest

    from llmrouter.errors import InvalidRequest
    from llmrouter.formats.openai import OpenAIFormat

    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}
    with pytest.raises(InvalidRequest, match="n: only n = 1 is supported"):
        OpenAIFormat().parse_request(body, {})
    body["n"] = 1
    assert OpenAIFormat().parse_request(body, {}).extra["n"] == 1
