"""``llmrouter watch``: line formatting, SSE parsing, and the real command against a live server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmrouter.cli.watch import excerpt, format_event
from llmrouter.formats.base import SSELineParser
from llmrouter.jsonutil import dumps, loads
from llmrouter.observe.logfiles import logged_request
from llmrouter.testing import make_config, openai_chat
from llmrouter.web.app import create_app

CONFIG = {
    "providers": [{"name": "echo", "format": "echo", "cost_per_1m_tokens": 3.0},
                  {"name": "echo-code", "format": "echo"}],
    "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "]}}},
    "routers": [{"type": "prefix", "model_prefix": "code/", "provider": "echo-code", "rewrite_model": "coder-1"},
                {"type": "fallback", "providers": ["echo"]}],
}
COMPLETE = {
    "type": "complete", "id": "abcdef0123456789", "ts_ms": 1_700_000_000_123, "duration_ms": 12.4,
    "endpoint": "/v1/chat/completions", "status": 200, "provider": "echo-code", "requested_model": "code/x",
    "sent_model": "coder-1", "tags": ["code"], "plugins": ["response-healing"], "stream": False,
    "request": {"model": "code/x", "messages": [{"role": "user", "content": [{"type": "text", "text": "def  f():\n pass"}]}]},
    "response": {"content": [{"type": "text", "text": "ok " * 40}]}, "error": None,
    "usage": {"input_tokens": 15, "output_tokens": 5}, "cost_usd": 0.00006,
}


# -- formatting and parsing --------------------------------------------------------------------------


def test_complete_line_has_everything_that_matters() -> None:
    line = format_event(COMPLETE)
    assert line.startswith(format_event({"ts_ms": COMPLETE["ts_ms"]})[:13])  # local HH:MM:SS.mmm
    assert ".123 abcdef01 done" in line
    assert "code/x -> echo-code/coder-1" in line and "[code]" in line and "plugins: response-healing" in line
    assert "12 ms" in line and "15+5 tok" in line and "$0.000060" in line
    assert '"def f(): pass"' in line  # whitespace collapsed
    assert '=> "ok ok' in line and "…" in line and "\n" not in line


def test_client_and_model_text_reaches_the_terminal_printable() -> None:
    hostile = {**COMPLETE, "requested_model": "x\nforged line\x1b]0;owned\x07",
               "request": {"model": "x", "messages": [{"role": "user", "content": [
                   {"type": "text", "text": "hi \x1b[2J\x1b[31mred"}]}]},
               "response": {"content": [{"type": "text", "text": "ok\x9b1m\u2028more"}]}}
    for event in (hostile, {"type": "start", "id": "abc", "ts_ms": 1, "model": "m\r\nx\x1b[1m", "endpoint": "/v1/messages"},
                  {"type": "routed", "id": "abc", "ts_ms": 1, "provider": "p", "model": "m\x1b[1m"}):
        line = format_event(event)
        assert len(line.splitlines()) == 1 and all(ch.isprintable() for ch in line), repr(line)
    coloured = format_event(hostile, colour=True)
    assert "\x1b]0" not in coloured and "\x1b[2J" not in coloured  # only the router's own colour codes


def test_other_event_lines() -> None:
    assert "start" in format_event({"type": "start", "id": "1234567890", "model": "m", "endpoint": "/v1/messages",
                                    "in_flight": 3, "ts_ms": 0})
    assert "tags: a, b" in format_event({"type": "classified", "id": "x", "tags": ["a", "b"]})
    assert "tags: (none)" in format_event({"type": "classified", "id": "x", "tags": []})
    assert "-> up  model gpt" in format_event({"type": "routed", "id": "x", "provider": "up", "model": "gpt"})
    failed = format_event({**COMPLETE, "error": "provider 'up' returned 500: boom", "status": 502, "response": None,
                           "usage": None})
    assert " error " in failed and "502 provider 'up' returned 500: boom" in failed and "=>" not in failed
    assert "7 events lost" in format_event({"type": "dropped", "count": 7})
    assert "(failover from a)" in format_event({"type": "routed", "id": "x", "provider": "b", "model": "m",
                                                "failover_from": "a"})
    circuit = format_event({"type": "circuit", "provider": "up", "state": "open", "consecutive_failures": 5})
    assert "-------- circuit" in circuit and "provider up is now open (5 consecutive failures)" in circuit
    assert "3 attempts" in format_event({**COMPLETE, "attempts": [{}, {}, {}]})
    rejected = format_event({"type": "complete", "id": "r", "requested_model": None, "provider": None, "request": None,
                             "response": None, "error": "bad json", "status": 400})
    assert "? " in rejected and "400 bad json" in rejected


def test_excerpt() -> None:
    assert excerpt(" a \n b ") == "a b"
    assert excerpt("x" * 100, 10) == "x" * 9 + "…"
    assert excerpt(None) == ""


def test_the_dashboard_stream_parses_with_the_formats_sse_parser() -> None:
    """watch reads /dashboard/events with the same SSE parser the provider formats use."""
    parser = SSELineParser()
    body = b'retry: 2000\n: connected\n\nevent: start\ndata: {"a":\ndata: 1}\n\ndata: x\n\n'
    out = [frame for chunk in (body[:17], body[17:40], body[40:]) for frame in parser.feed(chunk)]
    assert out == [("start", '{"a":\n1}'), (None, "x")]


# -- the command against a live server --------------------------------------------------------------


class LiveServer:
    """A real router on a loopback port that can be stopped and started again on the same port."""

    def __init__(self, tmp_path: Path, server: dict[str, Any] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        self.config = make_config({**CONFIG, "server": server or {}}, tmp_path)
        self.environ = environ or {}
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.config, environ=self.environ), shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def chat(self, text: str, model: str = "m", headers: dict[str, str] | None = None) -> str:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url + "/v1/chat/completions", data=dumps(openai_chat(text, model=model)),
                                    headers={"content-type": "application/json", **(headers or {})}) as resp:
                assert resp.status == 200
                return resp.headers["X-Router-Request-Id"]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    server = LiveServer(tmp_path)
    await server.start()
    yield server
    if server.runner is not None and server.runner.server is not None:
        await server.stop()


async def run_watch(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmrouter.cli", "watch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", **(env or {})})


async def read_until(stream: asyncio.StreamReader, needle: str, timeout: float = 10.0) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await stream.readline()
            assert raw, f"stream ended before {needle!r}; got {lines}"
            lines.append(raw.decode().rstrip("\n"))
            if needle in lines[-1]:
                return lines


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 5)


async def test_watch_prints_events_and_survives_a_restart(live: LiveServer) -> None:
    proc = await run_watch(live.url)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await read_until(proc.stderr, "connected to")
        rid = await live.chat("def shout(): pass", model="code/x")
        lines = await read_until(proc.stdout, f"{rid[:8]} done")
        mine = [line for line in lines if rid[:8] in line]
        assert [line.split()[2] for line in mine] == ["start", "classified", "routed", "done"]
        done = mine[-1]
        assert "code/x -> echo-code/coder-1" in done and "[code]" in done and "tok" in done
        assert '"def shout(): pass" => "def shout(): pass"' in done

        await live.stop()
        await read_until(proc.stderr, "disconnected")
        await live.start()  # same port
        await read_until(proc.stderr, "connected to")
        rid2 = await live.chat("after the restart")
        lines = await read_until(proc.stdout, f"{rid2[:8]} done")
        assert '"after the restart"' in lines[-1] and "m -> echo/m" in lines[-1]
    finally:
        await stop(proc)


async def test_watch_json_prints_raw_events(live: LiveServer) -> None:
    proc = await run_watch(live.url, "--json")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await read_until(proc.stderr, "connected to")
        rid = await live.chat("hello")
        lines = await read_until(proc.stdout, '"type":"complete"')
        events = [loads(line) for line in lines]
        assert [e["type"] for e in events] == ["start", "classified", "routed", "complete"]
        assert all(e["id"] == rid for e in events)
        assert events[-1]["response"]["content"][0]["text"] == "hello"
    finally:
        await stop(proc)


async def test_watch_behind_auth(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"api_key_env": "ROUTER_API_KEY"}, {"ROUTER_API_KEY": "k3y"})
    await server.start()
    try:
        denied = await run_watch(server.url, env={"ROUTER_API_KEY": ""})
        _, err = await asyncio.wait_for(denied.communicate(), 10)
        assert denied.returncode == 1 and b"API key" in err

        proc = await run_watch(server.url, "--api-key", "k3y")
        assert proc.stdout is not None and proc.stderr is not None
        try:
            await read_until(proc.stderr, "connected to")
            rid = await server.chat("hi", headers={"Authorization": "Bearer k3y"})
            await read_until(proc.stdout, f"{rid[:8]} done")
        finally:
            await stop(proc)
    finally:
        await server.stop()


async def test_watch_names_a_refused_key_and_gives_up_on_a_non_admin_key(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"api_key_env": "ROUTER_API_KEY"}, {"ROUTER_API_KEY": "k3y", "BOB_KEY": "b0b"})
    server.config = make_config({**CONFIG, "server": {"api_key_env": "ROUTER_API_KEY"},
                                 "keys": [{"name": "bob", "key_env": "BOB_KEY"}]}, tmp_path)
    await server.start()
    try:
        wrong = await run_watch(server.url, "--api-key", "nope")
        _, err = await asyncio.wait_for(wrong.communicate(), 10)
        assert wrong.returncode == 1 and b"refused" in err and b"wants an API key" not in err

        # a virtual key may not read the event stream (403): retrying cannot help
        bob = await run_watch(server.url, "--api-key", "b0b")
        _, err = await asyncio.wait_for(bob.communicate(), 10)
        assert bob.returncode == 1 and b"admin key" in err
    finally:
        await server.stop()


async def test_watch_reports_a_disabled_dashboard(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, {"dashboard": False})
    await server.start()
    try:
        proc = await run_watch(server.url)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 1 and b"dashboard = false" in err
    finally:
        await server.stop()


def agent_body(turns: int, words: int) -> dict[str, Any]:
    """A long conversation: a system prompt, then ``turns`` alternating user/assistant messages."""
    return {"model": "m", "messages": [{"role": "system", "content": "be brief " * 1000}]
            + [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "words " * words}
               for i in range(turns)]}


async def post_chat(session: aiohttp.ClientSession, live: LiveServer, body: dict[str, Any]) -> str:
    """Send ``body`` to the live router's Chat Completions endpoint; its request id."""
    async with session.post(live.url + "/v1/chat/completions", data=dumps(body),
                            headers={"content-type": "application/json"}) as resp:
        assert resp.status == 200
        return resp.headers["X-Router-Request-Id"]


async def test_history_brings_back_an_agent_sized_request_in_full(live: LiveServer) -> None:
    """``watch --history N`` (and the dashboard) get whole requests, however large, from the server."""
    from llmrouter.cli.watch import stream_events
    from llmrouter.formats.openai import parse_chat_request

    body = agent_body(turns=101, words=500)
    async with aiohttp.ClientSession() as session:
        rid = await post_chat(session, live, body)
        assert len(dumps(body)) > 300_000
        async with asyncio.timeout(10):
            event = await anext(stream_events(session, live.url, history=1))
    assert event["type"] == "complete" and event["id"] == rid
    assert logged_request(event) == parse_chat_request(body)


def test_events_url_asks_for_history_and_previews() -> None:
    from llmrouter.cli.watch import events_url

    assert events_url("http://h:1/") == "http://h:1/dashboard/events"
    assert events_url("http://h:1", 5) == "http://h:1/dashboard/events?history=5"
    assert events_url("http://h:1", 5, 16) == "http://h:1/dashboard/events?history=5&request_kb=16"
    assert events_url("http://h:1", request_kb=0) == "http://h:1/dashboard/events?request_kb=0"


async def test_a_preview_still_carries_the_last_user_message_watch_shows(live: LiveServer) -> None:
    """The human views take big requests as previews; the line they print is the same."""
    from llmrouter.cli.watch import PREVIEW_KB, prompt_text, stream_events

    body = agent_body(turns=41, words=100)
    async with aiohttp.ClientSession() as session:
        await post_chat(session, live, body)
        async with asyncio.timeout(10):
            event = await anext(stream_events(session, live.url, history=1, request_kb=PREVIEW_KB))
    assert event["request_omitted"]["items"] > 30
    assert prompt_text(event["request"]) == prompt_text(body) == "turn 40 " + "words " * 100


def test_prompt_text_reads_a_responses_request_as_sent() -> None:
    from llmrouter.cli.watch import prompt_text

    assert prompt_text({"model": "m", "input": "just a string"}) == "just a string"
    items = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]},
             {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
             {"role": "user", "content": "the latest"}]
    assert prompt_text({"model": "m", "input": items}) == "the latest"
    assert prompt_text({"model": "m", "input": items[:2]}) == "first"
    assert prompt_text({"model": "m", "input": 7}) == ""
