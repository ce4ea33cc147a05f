"""Streams that go wrong, through the real app and real loopback upstreams (timing matters here):
upstream errors before and after the first byte, upstream error frames, client disconnects and
keep-alives on silences."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

import llmrouter.web.streaming
from llmrouter.observe.requestlog import read_log
from llmrouter.testing import RouterClient, anthropic_message, make_config, openai_chat
from llmrouter.web.app import PIPELINE, create_app
from tests.test_streaming_e2e import (
    ANTHROPIC_TEXT,
    OLLAMA_TEXT,
    OPENAI_TEXT,
    ROLE,
    TEXT_BLOCK,
    _an,
    _an_start,
    _oa_chunk,
    _ol,
    anthropic_view,
    block_start,
    content,
    finish,
    message_end,
    message_start,
    ndjson,
    openai_view,
    parse_sse,
    sse,
    text_delta,
)

Step = tuple[Any, ...]
CONTENT_TYPES = {"oa": "text/event-stream", "an": "text/event-stream", "ol": "application/x-ndjson"}
PATHS = {"oa": "/v1/chat/completions", "an": "/v1/messages", "ol": "/api/chat"}
KEEPALIVE = 0.04  # seconds; patched over llmrouter.web.streaming.KEEPALIVE_S (15 s) so silences are short


class ScriptedUpstream:
    """A loopback provider speaking all three formats, following a script of steps per request:

    ``("status", code, json_body)`` answer with an error status; ``("write", bytes)``;
    ``("sleep", seconds)`` (watching for the router closing the connection meanwhile);
    ``("drip", [bytes...], interval)``; ``("abort",)`` drop the connection mid-body; ``("delay",
    seconds)`` first, before the response headers.
    ``closed`` is set when the router hangs up on a stream that had more to send.
    """

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.closed = asyncio.Event()
        self.bodies: list[dict[str, Any]] = []
        self.app = web.Application()
        for provider, path in PATHS.items():
            self.app.router.add_post(path, self._handler(provider))

    def _handler(self, provider: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.bodies.append(await request.json())
            steps = list(self.script)
            if steps and steps[0][0] == "status":
                return web.json_response(steps[0][2], status=steps[0][1])
            if steps and steps[0][0] == "delay":
                await asyncio.sleep(steps.pop(0)[1])
            response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[provider]})
            await response.prepare(request)
            try:
                for step in steps:
                    await self._step(request, response, step)
            except (ConnectionError, asyncio.CancelledError):
                self.closed.set()
                raise
            await response.write_eof()
            return response

        return handle

    async def _step(self, request: web.Request, response: web.StreamResponse, step: Step) -> None:
        kind = step[0]
        if kind == "write":
            await response.write(step[1])
        elif kind == "drip":
            for piece in step[1]:
                await response.write(piece)
                await asyncio.sleep(step[2])
        elif kind == "sleep":
            deadline = time.monotonic() + step[1]
            while time.monotonic() < deadline:
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("router closed the connection")
                await asyncio.sleep(0.01)
        elif kind == "abort":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError


@pytest.fixture
async def stack(router: Any, aiohttp_server: Any) -> tuple[ScriptedUpstream, RouterClient]:
    """A scripted upstream and a router in front of it: models ``oa/*``, ``an/*``, ``ol/*``."""
    upstream = ScriptedUpstream()
    server = await aiohttp_server(upstream.app)
    base = f"http://127.0.0.1:{server.port}"
    urls = {"oa": f"{base}/v1", "an": base, "ol": base, "slow": f"{base}/v1"}
    formats = {"oa": "openai", "an": "anthropic", "ol": "ollama", "slow": "openai"}
    names = ("oa", "an", "ol", "slow")
    client = await router({
        "providers": [{"name": p, "format": formats[p], "base_url": urls[p], "discover": False, "max_retries": 0,
                       "timeout_first_byte_s": 0.2 if p == "slow" else 2, "timeout_total_s": 10} for p in names],
        "routers": [{"type": "prefix", "model_prefix": f"{p}/", "provider": p} for p in names],
        "routing": {"failover": False},
    })
    return upstream, client


async def send(client: RouterClient, client_format: str, model: str, **extra: Any) -> Any:
    """Send a streaming request in ``client_format``; returns the router's reply."""
    if client_format == "openai":
        return await client.openai(openai_chat("hi", model=model, stream=True, **extra))
    return await client.anthropic(anthropic_message("hi", model=model, stream=True, **extra))


async def log_line_for(client: RouterClient, request_id: str, timeout: float = 3.0) -> dict[str, Any]:
    """The request's log line, waiting for it (the server may finish after the client has gone)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in client.log_lines() if line["id"] == request_id]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        await asyncio.sleep(0.02)


def without_keepalives(frames: list[tuple[str | None, Any]]) -> list[tuple[str | None, Any]]:
    return [f for f in frames if f[0] not in (":", "ping")]


# ---------------------------------------------------------------------------------------------
# Before the first byte: an ordinary error reply
# ---------------------------------------------------------------------------------------------

ERROR_STATUS = {
    "oa": (500, {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
           "provider 'oa' returned 500: boom"),
    "an": (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
           "provider 'an' returned 529: Overloaded"),
    "ol": (404, {"error": "model 'm1' not found"}, "provider 'ol' returned 404: model 'm1' not found"),
}


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
@pytest.mark.parametrize("client_format", ["openai", "anthropic"])
async def test_error_status_before_first_byte_is_a_plain_error_reply(stack: Any, provider: str,
                                                                      client_format: str) -> None:
    upstream, client = stack
    status, body, message = ERROR_STATUS[provider]
    upstream.script = [("status", status, body)]
    reply = await send(client, client_format, f"{provider}/m1")
    expected = 404 if status == 404 else 502  # an upstream 404 is the client's to fix: it keeps its status
    assert reply.status == expected
    assert reply.headers["content-type"].startswith("application/json")
    if client_format == "openai":
        assert reply.body["error"]["message"] == message
        assert reply.body["error"]["type"] == ("not_found_error" if status == 404 else "server_error")
    else:
        assert reply.body["type"] == "error" and reply.body["error"]["message"] == message
        assert reply.body["error"]["type"] == {"an": "overloaded_error", "ol": "not_found_error"}.get(provider, "api_error")
    assert reply.log_line["status"] == expected and reply.log_line["error"] == message
    assert upstream.bodies[-1]["stream"] is True


PLAIN_REPLIES = {
    "oa": {"id": "c1", "object": "chat.completion", "created": 1, "model": "m1",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole reply"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    "an": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m1",
           "content": [{"type": "text", "text": "whole reply"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 3, "output_tokens": 2}},
}


@pytest.mark.parametrize("provider", ["oa", "an"])
@pytest.mark.parametrize("client_format", ["openai", "anthropic"])
async def test_a_plain_json_reply_to_a_stream_request(stack: Any, provider: str, client_format: str) -> None:
    """Some servers ignore ``stream: true`` and answer with one JSON reply: it is streamed to the
    client; a JSON body that is no reply (an error object with status 200) is an unreadable reply."""
    upstream, client = stack
    upstream.script = [("status", 200, PLAIN_REPLIES[provider])]
    reply = await send(client, client_format, f"{provider}/m1")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert "whole reply" in reply.text
    assert reply.log_line["status"] == 200 and reply.log_line["usage"] == {"input_tokens": 3, "output_tokens": 2}

    upstream.script = [("status", 200, {"error": {"message": "streaming is not supported"}})]
    reply = await send(client, client_format, f"{provider}/m1")
    assert reply.status == 502
    message = reply.body["error"]["message"]
    assert message.startswith(f"provider '{provider}' returned an unreadable reply")


async def test_upstream_too_slow_to_answer_is_a_504_reply(stack: Any) -> None:
    upstream, client = stack
    upstream.script = [("delay", 0.5), ("write", OPENAI_TEXT)]
    reply = await send(client, "anthropic", "slow/m1")
    assert reply.status == 504 and reply.body["error"]["type"] == "timeout_error"
    assert "provider 'slow' timed out" in reply.body["error"]["message"]
    assert reply.log_line["status"] == 504


# ---------------------------------------------------------------------------------------------
# After the first byte: an error event in the client's format, then the stream closes
# ---------------------------------------------------------------------------------------------

HEADS = {
    "oa": sse([_oa_chunk({"role": "assistant", "content": ""}), _oa_chunk({"content": "Hel"})]),
    "an": sse([_an_start(), _an("content_block_start", index=0, content_block=TEXT_BLOCK),
               _an("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"})]),
    "ol": ndjson([_ol({"content": "Hel"})]),
}
ERROR_FRAMES = {
    "oa": (sse([(None, {"error": {"message": "rate limited", "type": "rate_limit_error", "param": None,
                                  "code": None}})]), "rate limited", "rate_limit_error"),
    "an": (sse([_an("error", error={"type": "overloaded_error", "message": "Overloaded"})]), "Overloaded",
           "overloaded_error"),
    "ol": (ndjson([{"error": "out of memory"}]), "out of memory", "api_error"),
}
MODELS = {"oa": "gpt-up", "an": "claude-up", "ol": "llama-up"}


def assert_openai_error_tail(text: str, fragment: str, error_type: str) -> None:
    frames = parse_sse(text)
    assert "[DONE]" not in text
    chunks = [(d["choices"][0]["delta"], d["choices"][0]["finish_reason"]) for _, d in frames[:-1]]
    assert chunks == [ROLE, content("Hel")]
    (_, last) = frames[-1]
    assert set(last) == {"error"} and fragment in last["error"]["message"]
    assert last["error"]["type"] == error_type


def assert_anthropic_error_tail(text: str, model: str, fragment: str, error_type: str) -> None:
    view = anthropic_view(text)
    assert view[:3] == [message_start(model, *((25, 1) if model == "claude-up" else (0, 0))),
                        block_start(0, TEXT_BLOCK), text_delta(0, "Hel")]
    assert [e for e, _ in view[3:]] == ["error"], "the stream closes right after the error event"
    error = view[3][1]["error"]
    assert fragment in error["message"] and error["type"] == error_type


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
@pytest.mark.parametrize("client_format", ["openai", "anthropic"])
async def test_upstream_breaking_mid_stream_ends_with_an_error_event(stack: Any, provider: str,
                                                                     client_format: str) -> None:
    upstream, client = stack
    upstream.script = [("write", HEADS[provider]), ("sleep", 0.05), ("abort",)]
    reply = await send(client, client_format, f"{provider}/m1")
    assert reply.status == 200
    fragment = f"provider '{provider}' stream broke"
    if client_format == "openai":
        assert_openai_error_tail(reply.text, fragment, "server_error")
    else:
        assert_anthropic_error_tail(reply.text, MODELS[provider], fragment, "api_error")
    line = reply.log_line
    assert line["status"] == 502 and fragment in line["error"]
    assert line["response"]["content"] == [{"type": "text", "text": "Hel", "extra": {}}]


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
@pytest.mark.parametrize("client_format", ["openai", "anthropic"])
async def test_upstream_error_frame_mid_stream_ends_with_an_error_event(stack: Any, provider: str,
                                                                        client_format: str) -> None:
    upstream, client = stack
    frame, message, kind = ERROR_FRAMES[provider]
    upstream.script = [("write", HEADS[provider]), ("write", frame), ("sleep", 0.05)]
    reply = await send(client, client_format, f"{provider}/m1")
    fragment = f"provider '{provider}' stream error: {message}"
    if client_format == "openai":
        openai_type = {"rate_limit_error": "rate_limit_error"}.get(kind, "server_error")
        assert_openai_error_tail(reply.text, fragment, openai_type)
    else:
        assert_anthropic_error_tail(reply.text, MODELS[provider], fragment, kind)
    assert reply.log_line["status"] == 502 and reply.log_line["error"] == fragment
    assert reply.log_line["response"]["content"][0]["text"] == "Hel"


@pytest.mark.parametrize("client_format", ["openai", "anthropic"])
async def test_total_timeout_mid_stream_ends_with_a_timeout_error_event(stack: Any, client_format: str) -> None:
    upstream, client = stack
    client.pipeline.providers["an"].config.timeout_total_s = 0.3
    upstream.script = [("write", HEADS["an"]), ("sleep", 3)]
    reply = await send(client, client_format, "an/m1")
    fragment = "provider 'an' timed out"
    if client_format == "openai":
        assert_openai_error_tail(reply.text, fragment, "timeout_error")
    else:
        assert_anthropic_error_tail(reply.text, "claude-up", fragment, "timeout_error")
    assert reply.log_line["status"] == 504 and fragment in reply.log_line["error"]


# ---------------------------------------------------------------------------------------------
# Client disconnects
# ---------------------------------------------------------------------------------------------

DRIPS = {
    "oa": [sse([_oa_chunk({"content": "."})])] * 200,
    "an": [sse([_an("content_block_delta", index=0, delta={"type": "text_delta", "text": "."})])] * 200,
    "ol": [ndjson([_ol({"content": "."})])] * 200,
}


@pytest.mark.parametrize("provider, client_format", [("oa", "openai"), ("an", "anthropic"), ("ol", "anthropic"),
                                                     ("an", "openai")])
async def test_client_disconnect_cancels_the_upstream_request(stack: Any, provider: str, client_format: str) -> None:
    upstream, client = stack
    upstream.script = [("write", HEADS[provider]), ("drip", DRIPS[provider], 0.02)]
    path = "/v1/chat/completions" if client_format == "openai" else "/v1/messages"
    body = openai_chat("hi", model=f"{provider}/m1", stream=True) if client_format == "openai" else \
        anthropic_message("hi", model=f"{provider}/m1", stream=True)
    resp = await client.client.post(path, json=body, headers={"anthropic-version": "2023-06-01"})
    await resp.content.readuntil(b"\n\n")
    request_id = resp.headers["X-Router-Request-Id"]
    resp.close()
    await asyncio.wait_for(upstream.closed.wait(), 3)
    line = await log_line_for(client, request_id)
    assert line["status"] == 499 and line["error"] == "client disconnected"
    # The partial reply is logged (how much of it depends on where the disconnect caught the relay).
    (part,) = line["response"]["content"]
    assert ("Hel" + "." * 200).startswith(part["text"]) and line["response"]["stop_reason"] is None


async def test_client_disconnect_during_upstream_silence_is_noticed_by_the_keepalive(
        stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", KEEPALIVE)
    upstream, client = stack
    upstream.script = [("write", HEADS["an"]), ("sleep", 5)]
    resp = await client.client.post("/v1/messages", json=anthropic_message("hi", model="an/m1", stream=True),
                                    headers={"anthropic-version": "2023-06-01"})
    await resp.content.readuntil(b"\n\n")
    request_id = resp.headers["X-Router-Request-Id"]
    resp.close()
    await asyncio.wait_for(upstream.closed.wait(), 3)
    line = await log_line_for(client, request_id)
    assert (line["status"], line["error"]) == (499, "client disconnected")


@pytest.fixture
async def served(aiohttp_server: Any, tmp_path: Any) -> Any:
    """A scripted upstream and a router served as ``llmrouter serve`` serves it: aiohttp's default
    runner, which does not cancel a handler when its client goes away (the test server does)."""
    upstream = ScriptedUpstream()
    up = await aiohttp_server(upstream.app)
    config = make_config({
        "providers": [{"name": "an", "format": "anthropic", "base_url": f"http://127.0.0.1:{up.port}",
                       "discover": False, "max_retries": 0}],
        "routers": [{"type": "prefix", "model_prefix": "an/", "provider": "an"}],
    }, tmp_path)
    app = create_app(config, environ={})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield upstream, f"http://127.0.0.1:{port}", app[PIPELINE]
    await runner.cleanup()


@pytest.mark.parametrize("script", ["drip", "silence"])
async def test_client_disconnect_is_noticed_without_handler_cancellation(
        served: Any, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", 30.0)  # the keep-alive must not be what notices
    monkeypatch.setattr(llmrouter.web.streaming, "DISCONNECT_POLL_S", KEEPALIVE)
    upstream, url, pipeline = served
    upstream.script = [("write", HEADS["an"]),
                       ("drip", DRIPS["an"], 0.02) if script == "drip" else ("sleep", 5)]
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{url}/v1/messages", json=anthropic_message("hi", model="an/m1", stream=True))
        for _ in range(3):  # message_start, content_block_start, the "Hel" delta: the router is then idle
            await resp.content.readuntil(b"\n\n")
        await asyncio.sleep(0.1)
        request_id = resp.headers["X-Router-Request-Id"]
        resp.close()
    await asyncio.wait_for(upstream.closed.wait(), 3)
    deadline = time.monotonic() + 3
    while True:
        pipeline.request_log.wait_idle()
        try:
            lines = list(read_log(pipeline.request_log.path))
        except FileNotFoundError:  # nothing written yet
            lines = []
        if any(line["id"] == request_id for line in lines):
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    (line,) = [line for line in lines if line["id"] == request_id]
    assert (line["status"], line["error"]) == (499, "client disconnected")


# ---------------------------------------------------------------------------------------------
# Keep-alives
# ---------------------------------------------------------------------------------------------

PAUSED = {
    "oa": OPENAI_TEXT.split(b"\n\n", 2),
    "an": ANTHROPIC_TEXT.split(b"\n\n", 2),
    "ol": OLLAMA_TEXT.split(b"\n", 1),
}


def paused_script(provider: str, pause: float) -> list[Step]:
    """The provider's text stream with a silence of ``pause`` seconds after its first frames."""
    sep = b"\n" if provider == "ol" else b"\n\n"
    pieces = PAUSED[provider]
    head, tail = sep.join(pieces[:-1]) + sep, pieces[-1]
    return [("write", head), ("sleep", pause), ("write", tail)]


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
async def test_silence_sends_pings_to_anthropic_clients(stack: Any, monkeypatch: pytest.MonkeyPatch,
                                                        provider: str) -> None:
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", KEEPALIVE)
    upstream, client = stack
    upstream.script = paused_script(provider, 0.2)
    reply = await send(client, "anthropic", f"{provider}/m1")
    view = anthropic_view(reply.text)
    pings = [i for i, (event, data) in enumerate(view) if event == "ping"]
    assert len(pings) >= 2 and all(view[i][1] == {} for i in pings)
    assert pings[0] > 0, "pings follow message_start, as Anthropic sends them"
    assert [f for f in view if f[0] != "ping"][-2:] == message_end(
        "end_turn", {"oa": {"input_tokens": 5, "output_tokens": 2}, "an": {"output_tokens": 9},
                     "ol": {"input_tokens": 18, "output_tokens": 6}}[provider])


@pytest.mark.parametrize("provider", ["oa", "an", "ol"])
async def test_silence_sends_sse_comments_to_openai_clients(stack: Any, monkeypatch: pytest.MonkeyPatch,
                                                            provider: str) -> None:
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", KEEPALIVE)
    upstream, client = stack
    upstream.script = paused_script(provider, 0.2)
    reply = await send(client, "openai", f"{provider}/m1")
    frames = parse_sse(reply.text)
    assert sum(1 for f in frames if f[0] == ":") >= 2
    kept = "".join(f"data: {json.dumps(d) if d != '[DONE]' else d}\n\n" for _, d in without_keepalives(frames))
    assert openai_view(kept) == [ROLE, content("Hel"), content("lo"), finish("stop"), "[DONE]"]


async def test_keepalive_also_covers_output_the_renderer_holds_back(stack: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Anthropic clients get a tool call's arguments in one piece at its end; while an upstream
    drips the fragments the client hears nothing, so pings must flow then too."""
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", KEEPALIVE)
    upstream, client = stack
    start = sse([_oa_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "write_file", "arguments": ""}}]})])
    pieces = ['{"text": "'] + ["x"] * 6 + ['"}']
    fragments = [sse([_oa_chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})]) for p in pieces]
    upstream.script = [("write", start), ("drip", fragments, 0.025),
                       ("write", sse([_oa_chunk({}, "tool_calls"), (None, "[DONE]")]))]
    reply = await send(client, "anthropic", "oa/m1")
    events = [e for e, _ in anthropic_view(reply.text)]
    assert events[:2] == ["message_start", "content_block_start"]
    between = events[2:events.index("content_block_delta")]
    assert between and set(between) == {"ping"}


async def test_official_sdks_ignore_keepalives(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llmrouter.web.streaming, "KEEPALIVE_S", KEEPALIVE)
    upstream, client = stack
    base = str(client.client.make_url("")).rstrip("/")
    upstream.script = paused_script("an", 0.15)
    async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0).messages.stream(
            model="an/m1", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Hello" and final.stop_reason == "end_turn"
    upstream.script = paused_script("oa", 0.15)
    chunks = await openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0).chat.completions.create(
        model="oa/m1", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]) == "Hello"
