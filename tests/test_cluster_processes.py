"""Two real ``llmrouter serve`` processes sharing one real Redis: A with ``--workers 2``, B with one.

A request through A appears on B's ``/dashboard/events``; a provider failing through A is open on
B; with Redis stopped mid-run both keep serving (with a warning) and rejoin when it is back; every
request is in the logs exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmrouter.jsonutil import loads
from llmrouter.observe.requestlog import read_log
from llmrouter.testing import openai_chat
from tests.conftest import RedisServer, free_port


class Instance:
    """One ``llmrouter serve`` subprocess."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log_path: Path) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://127.0.0.1:{port}"

    def log_ids(self) -> list[str]:
        """The id of every logged request, from every worker's segments."""
        return [entry["id"] for entry in read_log(self.log_path)]


async def start(tmp_path: Path, name: str, redis_url: str, dead_port: int, *args: str) -> Instance:
    port = free_port()
    log_path = tmp_path / f"{name}.jsonl"
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""
[server]
port = {port}
[logging]
path = "{log_path}"
[routing]
circuit_failures = 1
circuit_cooldown_s = 60
failover = false
[cluster]
redis_url = "{redis_url}"
reconnect_max_s = 0.3
[[providers]]
name = "echo"
format = "echo"
[[providers]]
name = "dead"
format = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
discover = false
max_retries = 0
[[routers]]
type = "prefix"
model_prefix = "dead/"
provider = "dead"
[[routers]]
type = "fallback"
providers = ["echo"]
""")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmrouter.cli", "serve", str(config), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Instance(proc, port, log_path)


async def health(session: aiohttp.ClientSession, instance: Instance) -> dict[str, Any] | None:
    try:
        async with session.get(instance.url + "/health") as resp:
            return await resp.json() if resp.status == 200 else None  # type: ignore[no-any-return]
    except aiohttp.ClientConnectionError:
        return None


async def until_all(session: aiohttp.ClientSession, instance: Instance, check: Any, what: str,
                    tries: int = 6, timeout_s: float = 20) -> dict[str, Any]:
    """Poll ``/health`` until ``tries`` answers in a row (new connections: every worker) pass ``check``."""
    deadline = time.monotonic() + timeout_s
    streak = 0
    while True:
        body = await health(session, instance)
        streak = streak + 1 if body is not None and check(body) else 0
        if streak >= tries:
            return body  # type: ignore[return-value]
        if time.monotonic() > deadline or instance.proc.returncode is not None:
            raise AssertionError(f"{instance.url}: timed out waiting for {what}; last /health: {body}")
        await asyncio.sleep(0.05)


async def sse_events(session: aiohttp.ClientSession, instance: Instance, into: list[dict[str, Any]]) -> None:
    """Append every event of ``/dashboard/events`` to ``into`` until cancelled."""
    async with session.get(instance.url + "/dashboard/events") as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: "):
                into.append(loads(line[6:]))


async def until_seen(events: list[dict[str, Any]], request_id: str, timeout_s: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while not any(e.get("id") == request_id and e["type"] == "complete" for e in events):
        assert time.monotonic() < deadline, f"request {request_id} never appeared"
        await asyncio.sleep(0.02)
    return [e["type"] for e in events if e.get("id") == request_id]


@pytest.fixture
async def instances(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Instance, Instance]]:
    dead_port = free_port()
    a = await start(tmp_path, "a", redis_url, dead_port, "--workers", "2")
    b = await start(tmp_path, "b", redis_url, dead_port)
    try:
        yield a, b
    finally:
        for inst in (a, b):
            if inst.proc.returncode is None:
                inst.proc.kill()
                await inst.proc.wait()


async def stop(instance: Instance) -> str:
    instance.proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.wait_for(instance.proc.communicate(), 20)
    except TimeoutError:
        instance.proc.kill()
        _, err = await instance.proc.communicate()
    return err.decode()


async def test_two_instances_share_events_breakers_and_survive_a_redis_outage(
        instances: tuple[Instance, Instance], redis_server: RedisServer) -> None:
    a, b = instances
    connected = lambda body: body["cluster"]["connected"]  # noqa: E731
    sent: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        await until_all(session, a, connected, "A's workers to join Redis")
        await until_all(session, b, connected, "B to join Redis", tries=1)
        on_b: list[dict[str, Any]] = []
        watcher = asyncio.create_task(sse_events(session, b, on_b))
        try:
            await asyncio.sleep(0.2)  # the SSE subscription is open

            async def chat(instance: Instance, model: str = "echo-1") -> tuple[int, str]:
                async with session.post(instance.url + "/v1/chat/completions",
                                        json=openai_chat("hi", model=model)) as resp:
                    await resp.read()
                    sent.append(resp.headers["X-Router-Request-Id"])
                    return resp.status, resp.headers.get("X-Router-Provider", "")

            # 1. A request through A (either worker) appears on B's event stream, in order.
            for _ in range(4):
                status, _ = await chat(a)
                assert status == 200
                assert await until_seen(on_b, sent[-1]) == ["start", "classified", "routed", "complete"]

            # 2. A provider failing through A is open on B.
            status, _ = await chat(a, "dead/x")
            assert status in (502, 504)
            await until_all(session, b, lambda body: body["providers"]["dead"]["circuit"]["state"] == "open",
                            "the circuit to open on B", tries=1)
            status, provider = await chat(b, "dead/x")
            assert status == 200 and provider == "echo"  # B routes around it without trying it

            # 3. Redis stops: both keep serving on local state.
            redis_server.stop()
            await until_all(session, b, lambda body: not body["cluster"]["connected"], "B to notice", tries=1)
            for _ in range(5):
                for instance in (a, b):
                    status, _ = await chat(instance)
                    assert status == 200
            # 4. Redis is back: both rejoin, and events cross again.
            redis_server.start()
            await until_all(session, a, connected, "A's workers to rejoin")
            await until_all(session, b, connected, "B to rejoin", tries=1)
            status, _ = await chat(a)
            assert status == 200
            assert await until_seen(on_b, sent[-1]) == ["start", "classified", "routed", "complete"]
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    err_a, err_b = await stop(a), await stop(b)
    for err in (err_a, err_b):
        assert "unreachable" in err and "serving on local state" in err, err
        assert "rejoined Redis" in err, err
    # 5. Every request is logged exactly once, by the instance that served it.
    logged = a.log_ids() + b.log_ids()
    assert sorted(logged) == sorted(sent) and len(set(sent)) == len(sent)
