"""``POST /v1/responses`` through the real aiohttp app (providers mocked with respx), every provider
format, streaming and not; and Chat/Anthropic clients reaching an ``openai-responses`` provider."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from llmrouter.testing import MockProviders, RouterClient, anthropic_message, openai_chat
from tests.codex_upstream import anthropic_stream as scripted_anthropic_stream
from tests.codex_upstream import openai_stream as scripted_openai_stream
from tests.codex_upstream import responses_stream as scripted_responses_stream

SAY_HI = {"model": "up", "messages": [{"role": "user", "content": "say hi"}],
          "input": [{"role": "user", "content": "say hi"}]}

OA_URL, AN_URL, OL_URL, RS_URL = "http://oa.test/v1", "http://an.test", "http://ol.test", "http://rs.test/v1"
CONFIG: dict[str, Any] = {
    "providers": [
        {"name": "oa", "format": "openai", "base_url": OA_URL, "discover": False},
        {"name": "an", "format": "anthropic", "base_url": AN_URL, "discover": False},
        {"name": "ol", "format": "ollama", "base_url": OL_URL, "discover": False},
        {"name": "rs", "format": "openai-responses", "base_url": RS_URL, "discover": False, "api_key_env": "RS_KEY"},
        {"name": "echo", "format": "echo"},
    ],
    "routers": [{"type": "prefix", "model_prefix": f"{p}/", "provider": p} for p in ("oa", "an", "ol", "rs", "echo")],
}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
         {"type": "web_search"}]


def events_of(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body, checking each ``event:`` name matches its ``type``."""
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        payload = json.loads(lines["data"])
        assert lines["event"] == payload["type"]
        out.append(payload)
    return out


def mock_all(mock_providers: MockProviders) -> dict[str, Any]:
    return {
        "oa": mock_providers.add_openai(OA_URL, "hi from openai", stream_body=scripted_openai_stream(SAY_HI)),
        "an": mock_providers.add_anthropic(AN_URL, "hi from anthropic", stream_body=scripted_anthropic_stream(SAY_HI)),
        "ol": mock_providers.add_ollama(OL_URL, "hi from ollama", stream_body=(
            b'{"model":"m","message":{"role":"assistant","content":"hi from "},"done":false}\n'
            b'{"model":"m","message":{"role":"assistant","content":"ollama"},"done":true,"done_reason":"stop",'
            b'"prompt_eval_count":3,"eval_count":2}\n')),
        "rs": mock_providers.add_responses(RS_URL, "hi from responses", stream_body=scripted_responses_stream(
            {"model": "up", "input": [{"role": "user", "content": "x"}]})),
    }


@pytest.mark.parametrize(("provider", "expected"), [
    ("oa", "hi from openai"), ("an", "hi from anthropic"), ("ol", "hi from ollama"),
    ("rs", "hi from responses"), ("echo", "what is up")])
async def test_non_streaming_every_provider(router: Any, mock_providers: MockProviders, provider: str,
                                            expected: str) -> None:
    routes = mock_all(mock_providers)
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "rs-secret"})
    reply = await client.responses({"model": f"{provider}/m", "instructions": "be nice",
                                    "input": [{"role": "user", "content": [{"type": "input_text",
                                                                            "text": "what is up"}]}],
                                    "tools": TOOLS, "store": False, "max_output_tokens": 50})
    assert reply.status == 200, reply.text
    body = reply.body
    assert body["object"] == "response" and body["status"] == "completed"
    texts = [c["text"] for i in body["output"] if i["type"] == "message" for c in i["content"]]
    if provider == "echo":
        assert expected in "".join(texts)
    else:
        assert "".join(texts) == expected
    assert reply.headers["X-Router-Provider"] == provider
    assert reply.log_line is not None and reply.log_line["endpoint"] == "/v1/responses"
    if provider == "rs":
        sent = mock_providers.sent_json(routes["rs"])
        assert sent["instructions"] == "be nice" and sent["store"] is False and sent["max_output_tokens"] == 50
        assert sent["tools"][1] == {"type": "web_search"}
        assert routes["rs"].calls[-1].request.headers["authorization"] == "Bearer rs-secret"
    elif provider in routes:
        assert "web_search" not in json.dumps(mock_providers.sent_json(routes[provider]))


@pytest.mark.parametrize("provider", ["oa", "an", "ol", "rs", "echo"])
async def test_streaming_every_provider(router: Any, mock_providers: MockProviders, provider: str) -> None:
    mock_all(mock_providers)
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    reply = await client.responses({"model": f"{provider}/m", "input": "x", "stream": True})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = events_of(reply.text)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert final["usage"] is not None and final["id"] == events[0]["response"]["id"]
    assert [c["text"] for i in final["output"] if i["type"] == "message" for c in i["content"]] == [deltas]
    assert reply.log_line is not None and reply.log_line["response"] is not None


async def test_invalid_body_gets_openai_error(router: Any) -> None:
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    reply = await client.responses({"model": "echo/m", "input": [{"role": "user", "content": [{"type": "nope"}]}]})
    assert reply.status == 400
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert "input[0].content[0].type" in reply.body["error"]["message"]
    reply = await client.responses({"model": "echo/m", "input": "x", "previous_response_id": "resp_1"})
    assert reply.status == 400 and "store = true" in reply.body["error"]["message"]
    reply = await client.post("/v1/responses", b"{not json")
    assert reply.status == 400 and reply.body["error"]["message"].startswith("request body is not valid JSON")
    ok = await client.responses({"model": "echo/m", "input": "still serving"})
    assert ok.status == 200


async def test_upstream_error_before_the_first_byte(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_responses(RS_URL, status=500, body={"error": {"message": "model exploded"}})
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    reply = await client.responses({"model": "rs/m", "input": "x", "stream": True})
    assert reply.status == 502 and "model exploded" in reply.body["error"]["message"]
    assert reply.body["error"]["type"] == "server_error"


async def test_mid_stream_failure_is_response_failed(router: Any, mock_providers: MockProviders) -> None:
    broken = (b'event: response.created\ndata: {"type":"response.created","response":{"id":"r","model":"u"}}\n\n'
              b'event: response.failed\ndata: {"type":"response.failed","response":{"status":"failed",'
              b'"error":{"code":"server_error","message":"GPU fell over"}}}\n\n')
    mock_providers.add_responses(RS_URL, stream_body=broken)
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    reply = await client.responses({"model": "rs/m", "input": "x", "stream": True})
    events = events_of(reply.text)
    assert events[-1]["type"] == "response.failed"
    assert "GPU fell over" in events[-1]["response"]["error"]["message"]
    # A chat client of the same provider gets its own error shape.
    chat = await client.openai(openai_chat("x", model="rs/m", stream=True))
    assert '"error"' in chat.text and "GPU fell over" in chat.text


async def test_chat_and_anthropic_clients_reach_a_responses_provider(router: Any,
                                                                   mock_providers: MockProviders) -> None:
    route = mock_providers.add_responses(RS_URL, output=[
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "PRIVATE"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'}], stream_body=scripted_responses_stream(
        {"model": "up", "input": [{"role": "user", "content": "say hi"}]}))
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chat = await client.openai(openai_chat("weather?", model="rs/m", tools=tools))
    assert chat.status == 200, chat.text
    message = chat.body["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert chat.body["choices"][0]["finish_reason"] == "tool_calls" and "PRIVATE" not in chat.text
    sent = mock_providers.sent_json(route)
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                             "text": "weather?"}]}]
    assert sent["tools"] == [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    anth = await client.anthropic(anthropic_message("hi", model="rs/m", stream=True))
    assert anth.status == 200 and "event: message_stop" in anth.text and "hello from responses" in anth.text
    chat_stream = await client.openai(openai_chat("hi", model="rs/m", stream=True))
    assert "hello from responses" in "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in chat_stream.text.splitlines()
        if line.startswith("data: {") and json.loads(line[6:]).get("choices"))


async def test_hosted_tools_dropped_with_a_warning(router: Any, mock_providers: MockProviders,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    route = mock_providers.add_openai(OA_URL)
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    with caplog.at_level(logging.WARNING, logger="llmrouter.upstream.providers"):
        reply = await client.responses({"model": "oa/m", "input": "x", "tools": TOOLS})
    assert reply.status == 200
    assert any("web_search" in r.getMessage() and "'oa'" in r.getMessage() for r in caplog.records)
    assert [t["function"]["name"] for t in mock_providers.sent_json(route)["tools"]] == ["get_weather"]


async def test_previous_response_id_with_the_store(router: Any, mock_providers: MockProviders) -> None:
    route = mock_providers.add_openai(OA_URL, "Your name is Ada.", stream_body=scripted_openai_stream(SAY_HI))
    client: RouterClient = await router({**CONFIG, "responses": {"store": True, "max_stored": 10}})
    first = await client.responses({"model": "oa/m", "input": "I am Ada", "instructions": "short answers"})
    assert first.status == 200
    second = await client.responses({"model": "oa/m", "input": "who am I?", "previous_response_id": first.body["id"],
                                     "stream": True})
    assert second.status == 200
    events = events_of(second.text)
    sent = mock_providers.sent_json(route)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"] == "Your name is Ada."
    third = await client.responses({"model": "oa/m", "input": "and now?",
                                    "previous_response_id": events[-1]["response"]["id"]})
    assert third.status == 200
    sent = mock_providers.sent_json(route)["messages"]
    assert len(sent) == 5 and sent[3] == {"role": "assistant", "content": "hello from openai"}  # streamed reply kept
    missing = await client.responses({"model": "oa/m", "input": "x", "previous_response_id": "resp_nope"})
    assert missing.status == 400 and "resp_nope" in missing.body["error"]["message"]


async def test_the_reply_says_whether_it_was_stored(router: Any) -> None:
    """``store`` in the response object is true only when the router actually kept the reply."""
    stateless: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    reply = await stateless.responses({"model": "echo/m", "input": "hi"})
    assert reply.status == 200 and reply.body["store"] is False
    streamed = await stateless.responses({"model": "echo/m", "input": "hi", "stream": True})
    assert events_of(streamed.text)[-1]["response"]["store"] is False
    storing: RouterClient = await router({**CONFIG, "responses": {"store": True}}, environ={"RS_KEY": "k"})
    assert (await storing.responses({"model": "echo/m", "input": "hi"})).body["store"] is True
    assert (await storing.responses({"model": "echo/m", "input": "hi", "store": False})).body["store"] is False


def test_responses_config_errors_name_the_key() -> None:
    from llmrouter.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"\[responses\] key 'max_stored'"):
        parse_config({"responses": {"max_stored": 0}}, "r.toml")
    with pytest.raises(ConfigError, match=r"\[responses\] key 'stor'"):
        parse_config({"responses": {"stor": True}}, "r.toml")
    assert parse_config({}, "r.toml").responses.store is False


async def test_auth_and_limits_apply_to_responses(router: Any) -> None:
    client: RouterClient = await router({**CONFIG, "server": {"api_key_env": "ROUTER_KEY", "max_messages": 3}},
                                        environ={"ROUTER_KEY": "secret"})
    refused = await client.responses({"model": "echo/m", "input": "x"}, {"authorization": "Bearer wrong"})
    assert refused.status == 401 and refused.body["error"]["type"] == "authentication_error"
    assert refused.log_line is not None and refused.log_line["endpoint"] == "/v1/responses"
    auth = {"authorization": "Bearer secret"}
    too_many = await client.responses({"model": "echo/m", "input": [{"role": "user", "content": "x"}] * 4}, auth)
    assert too_many.status == 400 and too_many.body["error"]["message"].startswith("input: 4 messages exceed")
    ok = await client.responses({"model": "echo/m", "input": "fine"}, auth)
    assert ok.status == 200 and ok.headers["X-Router-Provider"] == "echo"


async def test_logged_responses_requests_replay_without_differences(router: Any, mock_providers: MockProviders) -> None:
    from llmrouter.cli.replay import replay

    mock_providers.add_responses(RS_URL)
    mock_providers.add_openai(OA_URL)
    client: RouterClient = await router(CONFIG, environ={"RS_KEY": "k"})
    for model in ("rs/m", "oa/m", "echo/m"):
        reply = await client.responses({"model": model, "input": [{"role": "developer", "content": "rules"},
                                                                  {"role": "user", "content": "hi"}],
                                        "tools": TOOLS, "reasoning": {"effort": "low"}})
        assert reply.status == 200
    entries = client.log_lines()
    # Logged as the client sent them (Codex's resent conversations stay cheap to log and to show).
    assert [e["request_format"] for e in entries] == ["openai-responses"] * 3
    assert entries[0]["request"]["input"][1] == {"role": "user", "content": "hi"}
    report = await replay(entries, client.config, environ={})
    assert report.differences == [] and [r.replayed.status for r in report.results] == [200, 200, 200]


async def test_a_request_continuing_a_stored_one_is_logged_in_canonical_form(router: Any) -> None:
    """Replay has no response store, so such a request is logged with its stored turns filled in."""
    from llmrouter.observe.logfiles import logged_request

    client: RouterClient = await router({**CONFIG, "responses": {"store": True}}, environ={"RS_KEY": "k"})
    first = await client.responses({"model": "echo/m", "input": "remember 42"})
    assert first.status == 200
    second = await client.responses({"model": "echo/m", "input": "what number?",
                                     "previous_response_id": first.body["id"]})
    assert second.status == 200
    entries = client.log_lines()
    assert entries[0]["request_format"] == "openai-responses" and entries[0]["request"]["input"] == "remember 42"
    assert "request_format" not in entries[1]
    texts = [m.text() for m in logged_request(entries[1]).messages]
    assert texts == ["remember 42", "remember 42", "what number?"]
