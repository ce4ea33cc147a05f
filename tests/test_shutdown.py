"""Graceful shutdown of a real ``llmrouter serve`` process.

On SIGTERM or SIGINT the router stops accepting connections, lets in-flight requests (streams
included) finish within ``shutdown_grace_s``, ends dashboard streams, flushes the request log and
exits 0. The upstream is a slow streaming server on loopback in the test process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmrouter.observe.requestlog import read_log
from llmrouter.testing import openai_chat
from tests.flaky_upstream import FlakyUpstream

KEY = "rk-shutdown-test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A ``python -m llmrouter.cli serve`` subprocess on a free loopback port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def log_lines(self) -> list[dict[str, Any]]:
        try:
            return list(read_log(self.log_path))
        except FileNotFoundError:
            return []


async def start_router(tmp_path: Path, upstream_url: str, grace_s: float, *args: str) -> Served:
    port = free_port()
    log_path = tmp_path / "requests.jsonl"
    config = tmp_path / "router.toml"
    config.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
api_key_env = "ROUTER_KEY"
shutdown_grace_s = {grace_s}

[logging]
path = "{log_path}"

[[providers]]
name = "slow"
format = "openai"
base_url = "{upstream_url}"
discover = false
max_retries = 0

[[routers]]
type = "fallback"
""")
    env = {**os.environ, "ROUTER_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmrouter.cli", "serve", str(config), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    served = Served(proc, port, log_path)
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(served.url + "/health") as resp:
                    if resp.status == 200:
                        return served
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                _, err = await proc.communicate()
                raise AssertionError(f"router did not start: {err.decode()}")
            await asyncio.sleep(0.05)


async def stop(served: Served) -> tuple[int, str]:
    if served.proc.returncode is None:
        served.proc.kill()
    out, err = await served.proc.communicate()
    return served.proc.returncode or 0, (out + err).decode()


@pytest.fixture
async def slow_upstream(aiohttp_server: Any) -> Any:
    upstream = FlakyUpstream(chooser=lambda: "slow", frame_delay_s=0.15)
    server = await aiohttp_server(upstream.app)
    return upstream, str(server.make_url("/v1"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_in_flight_requests_finish_then_exits_0(slow_upstream: Any, tmp_path: Path,
                                                                  sig: signal.Signals) -> None:
    upstream, url = slow_upstream
    served = await start_router(tmp_path, url, grace_s=10)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
            dashboard = await session.get(f"{served.url}/dashboard/events?api_key={KEY}")
            assert dashboard.status == 200
            stream = await session.post(served.url + "/v1/chat/completions", json=openai_chat(stream=True))
            assert stream.status == 200
            first = await stream.content.readuntil(b"\n\n")
            upstream.chooser = lambda: "stall"  # the next (non-streaming) request is slow too
            plain = asyncio.ensure_future(session.post(served.url + "/v1/chat/completions", json=openai_chat()))
            while upstream.calls < 2:
                await asyncio.sleep(0.01)
            signalled = time.monotonic()
            served.proc.send_signal(sig)
            await asyncio.sleep(0.3)
            with pytest.raises(aiohttp.ClientConnectionError):  # no longer accepting
                async with aiohttp.ClientSession() as fresh:
                    await fresh.get(served.url + "/health")
            rest = await stream.read()
            reply = await plain
            assert reply.status == 200 and (await reply.json())["choices"][0]["message"]["content"]
            request_ids = {stream.headers["X-Router-Request-Id"], reply.headers["X-Router-Request-Id"]}
            dashboard_rest = await asyncio.wait_for(dashboard.read(), 5)  # ended by the shutdown
        text = (first + rest).decode()
        assert "It is " in text and "in Paris." in text and text.rstrip().endswith("data: [DONE]")
        code = await asyncio.wait_for(served.proc.wait(), 15)
        elapsed = time.monotonic() - signalled
        assert code == 0
        assert elapsed < 5, "the open dashboard stream must not hold the shutdown for the whole grace period"
        lines = served.log_lines()
        assert {line["id"] for line in lines} == request_ids
        assert all(line["status"] == 200 for line in lines)
        assert b"event: routed" in dashboard_rest, "the dashboard stream was live until the shutdown ended it"
    finally:
        code, output = await stop(served)
    assert "shutting down" in output and "stopped" in output, output
    assert KEY not in output, "no access log with ?api_key= in the server's output"


async def test_requests_still_running_when_the_grace_period_ends_are_cut_and_logged(slow_upstream: Any,
                                                                                    tmp_path: Path) -> None:
    upstream, url = slow_upstream
    upstream.frame_delay_s, upstream.stall_s = 0.8, 5.0
    served = await start_router(tmp_path, url, grace_s=0.5)
    try:
        async with aiohttp.ClientSession(headers={"x-api-key": KEY}) as session:
            stream = await session.post(served.url + "/v1/chat/completions", json=openai_chat(stream=True))
            await stream.content.readuntil(b"\n\n")
            request_id = stream.headers["X-Router-Request-Id"]
            upstream.chooser = lambda: "stall"
            plain = asyncio.ensure_future(session.post(served.url + "/v1/chat/completions", json=openai_chat()))
            while upstream.calls < 2:
                await asyncio.sleep(0.01)
            signalled = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            try:
                text = (await stream.read()).decode()
            except aiohttp.ClientPayloadError:
                text = ""
            with pytest.raises(aiohttp.ClientError):
                await plain
        assert "[DONE]" not in text
        code = await asyncio.wait_for(served.proc.wait(), 10)
        assert code == 0 and time.monotonic() - signalled < 3.5
        lines = served.log_lines()
        assert len(lines) == 2 and request_id in {line["id"] for line in lines}
        assert {(line["status"], line["stream"]) for line in lines} == {(499, True), (499, False)}
    finally:
        await stop(served)


async def test_workers_are_stopped_gracefully_through_the_parent(slow_upstream: Any, tmp_path: Path) -> None:
    _, url = slow_upstream
    served = await start_router(tmp_path, url, 10, "--workers", "2")
    try:
        async with aiohttp.ClientSession(headers={"x-api-key": KEY}) as session:
            stream = await session.post(served.url + "/v1/chat/completions", json=openai_chat(stream=True))
            await stream.content.readuntil(b"\n\n")
            served.proc.send_signal(signal.SIGTERM)
            text = (await stream.read()).decode()
        assert text.rstrip().endswith("data: [DONE]")
        assert await asyncio.wait_for(served.proc.wait(), 10) == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh:
                await fresh.get(served.url + "/health")
        assert [line["status"] for line in served.log_lines()] == [200]
    finally:
        _, output = await stop(served)
    assert "stopping 2 workers" in output and output.count("llmrouter stopped") == 2, output
