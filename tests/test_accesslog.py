"""The ``serve`` access log: one line per request on stdout, failovers and upstream errors shown,
off with ``--quiet`` or ``[server] access_log = false``. The router runs as a real subprocess
against loopback upstreams in the test process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmrouter.observe.accesslog import AccessLog, format_line
from llmrouter.observe.events import EventBus
from llmrouter.testing import anthropic_message, openai_chat
from tests.conftest import free_port
from tests.flaky_upstream import FlakyUpstream


def test_line_for_a_plain_request() -> None:
    line = format_line({"type": "complete", "ts_ms": 1_700_000_000_000, "endpoint": "/v1/chat/completions",
                        "requested_model": "gpt-4o", "provider": "openai", "sent_model": "gpt-4o-2024",
                        "status": 200, "duration_ms": 123.4, "usage": {"input_tokens": 10, "output_tokens": 5},
                        "error": None})
    assert line.endswith(" /v1/chat/completions gpt-4o -> openai/gpt-4o-2024 200 123 ms 10+5 tokens")
    assert time.strptime(line.split()[0], "%H:%M:%S")


def test_client_text_cannot_forge_lines_or_reach_the_terminal_raw() -> None:
    """A model name is the client's text: a newline in it must not start a forged access line, and
    an escape sequence must not reach the operator's terminal."""
    line = format_line({"type": "complete", "ts_ms": 1_700_000_000_000, "endpoint": "/v1/chat/completions",
                        "requested_model": "m\r\n10:00:00 /v1/chat/completions gpt -> x/y 200 1 ms\x1b]0;owned\x07",
                        "provider": "echo", "sent_model": "m\u2028\x9b31m", "status": 400, "duration_ms": 1.0,
                        "error": "bad \x1b[2J model"})
    assert len(line.splitlines()) == 1
    assert all(ch.isprintable() for ch in line), repr(line)


def test_line_for_a_failover_an_error_and_a_rejected_request() -> None:
    attempts = [{"provider": "a", "error": "provider 'a' returned 503: busy"},
                {"provider": "b", "error": None}]
    line = format_line({"ts_ms": 0, "endpoint": "/v1/messages", "requested_model": "m", "provider": "b",
                        "sent_model": "m", "status": 200, "duration_ms": 5, "usage": None, "attempts": attempts})
    assert line.endswith("/v1/messages m -> b/m 200 5 ms failover a -> b (provider 'a' returned 503: busy)")
    line = format_line({"ts_ms": 0, "endpoint": "/v1/messages", "requested_model": None, "provider": None,
                        "status": 400, "duration_ms": 1, "error": "messages: must contain\nat least one message"})
    assert line.endswith("/v1/messages ? -> - 400 1 ms error: messages: must contain at least one message")


async def serve(tmp_path: Path, upstreams: list[str], *args: str, access_log: bool = True
                ) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    providers = "".join(f'[[providers]]\nname = "{name}"\nformat = "openai"\nbase_url = "{url}"\n'
                        f"discover = false\nmax_retries = 0\nquality = {90 - i * 40}\n"
                        for i, (name, url) in enumerate(zip("ab", upstreams, strict=False)))
    config = tmp_path / "router.toml"
    config.write_text(f'[server]\nport = {port}\naccess_log = {str(access_log).lower()}\n'
                      f'[logging]\nenabled = false\n{providers}'
                      '[[routers]]\ntype = "fallback"\nquality_bias = 1\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmrouter.cli", "--log-level", "WARNING", "serve", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/health") as resp:
                    if resp.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("router did not start")


async def stop(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr
    return stdout.decode(), stderr.decode()


async def post(url: str, path: str, body: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body,
                                                                headers={"anthropic-version": "2023-06-01"}) as resp:
        await resp.read()
        return resp.status


async def test_serve_prints_one_line_per_request_with_failovers_and_errors(aiohttp_server: Any,
                                                                         tmp_path: Path) -> None:
    a, b = FlakyUpstream([("status", 503), ("status", 400)]), FlakyUpstream()
    servers = [await aiohttp_server(up.app) for up in (a, b)]
    proc, url = await serve(tmp_path, [str(s.make_url("/v1")) for s in servers])
    try:
        assert await post(url, "/v1/chat/completions", openai_chat(model="m1")) == 200
        assert await post(url, "/v1/messages", anthropic_message(model="m2")) == 400
        assert await post(url, "/v1/chat/completions", openai_chat(model="m3", stream=True)) == 200
        assert await post(url, "/v1/messages", {"model": "m4", "max_tokens": 5, "messages": []}) == 400
    finally:
        stdout, stderr = await stop(proc)
    lines = stdout.splitlines()
    assert len(lines) == 4, stdout
    assert lines[0].split(" ", 1)[1].startswith("/v1/chat/completions m1 -> b/m1 200 ")
    assert lines[0].endswith("failover a -> b (provider 'a' returned 503: scripted 503)")
    assert "tokens" in lines[0]
    assert lines[1].split(" ", 1)[1].startswith("/v1/messages m2 -> a/m2 400 ")
    assert lines[1].endswith("error: provider 'a' returned 400: scripted 400")
    assert lines[2].split(" ", 1)[1].startswith("/v1/chat/completions m3 -> a/m3 200 ")
    assert lines[3].split(" ", 1)[1].startswith("/v1/messages m4 -> - 400 ")
    assert "Traceback" not in stderr


class Writes:
    """A stream that records each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass


async def test_lines_queued_together_go_out_in_one_write_and_only_completes_wake_it() -> None:
    bus = EventBus()
    out = Writes()
    access = AccessLog(bus, out)
    access.start()
    assert access._subscription is not None and access._subscription.types == {"complete"}
    for kind in ("start", "classified", "routed"):
        bus.publish({"type": kind, "id": "0"})
    assert access._subscription.pending() == []  # other types are never queued
    for i in range(3):
        bus.publish({"type": "complete", "endpoint": "/v1/messages", "requested_model": f"m{i}", "status": 200})
    await asyncio.sleep(0.05)
    assert len(out.writes) == 1 and out.writes[0].count("\n") == 3
    assert [line.split(" ")[2] for line in out.writes[0].splitlines()] == ["m0", "m1", "m2"]
    bus.publish({"type": "complete", "endpoint": "/v1/messages", "requested_model": "late", "status": 200})
    await access.stop()
    assert len(out.writes) == 2 and " late " in out.writes[1]


@pytest.mark.parametrize("how", ["--quiet", "config"])
async def test_quiet_or_access_log_false_prints_nothing(aiohttp_server: Any, tmp_path: Path, how: str) -> None:
    server = await aiohttp_server(FlakyUpstream().app)
    args = ("--quiet",) if how == "--quiet" else ()
    proc, url = await serve(tmp_path, [str(server.make_url("/v1"))], *args, access_log=how != "config")
    try:
        assert await post(url, "/v1/chat/completions", openai_chat()) == 200
    finally:
        stdout, _ = await stop(proc)
    assert stdout == ""


async def test_a_line_after_a_quiet_spell_goes_out_at_once_and_a_burst_gathers_into_one_write() -> None:
    bus = EventBus()
    out = Writes()
    access = AccessLog(bus, out, batch_s=0.3)
    access.start()

    def complete(model: str) -> None:
        bus.publish({"type": "complete", "endpoint": "/v1/messages", "requested_model": model, "status": 200})

    complete("first")
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(out.writes) == 1 and " first " in out.writes[0]  # not held back for the batch window
    for i in range(3):
        complete(f"burst{i}")
        await asyncio.sleep(0.01)
    assert len(out.writes) == 1  # the burst waits for the window after the last write...
    await asyncio.sleep(0.4)
    assert len(out.writes) == 2 and out.writes[1].count("\n") == 3  # ...and then goes out in one write
    complete("last")
    await access.stop()  # stopping writes what is queued, in order, without waiting
    assert [line.split(" ")[2] for text in out.writes for line in text.splitlines()] == [
        "first", "burst0", "burst1", "burst2", "last"]
