"""Hot reload: ``POST /admin/reload`` through the real app, ``SIGHUP`` to a real ``llmrouter serve``.

New requests use the new config; in-flight ones (a stream held open by a gated loopback upstream)
finish on the old one; a config that does not load is refused with the reason, and the old one
keeps serving; ``/health`` shows the config's load time and hash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmrouter.config import load_config
from llmrouter.observe.requestlog import read_log
from llmrouter.testing import openai_chat
from llmrouter.web.app import create_app
from tests.conftest import free_port

KEY = "rk-reload-test-key-0123456789"


def write_config(path: Path, provider: str, *, extra_providers: str = "", server: str = "",
                 log_path: Path | None = None) -> None:
    """A config routing every model to the echo provider named ``provider``."""
    path.write_text(f"""
[server]
{server}
[logging]
enabled = {"true" if log_path else "false"}
path = "{log_path or 'unused.jsonl'}"

[[providers]]
name = "{provider}"
format = "echo"
{extra_providers}
[[routers]]
type = "fallback"
providers = ["{provider}"]
""")


async def health(client: Any) -> dict[str, Any]:
    resp = await client.get("/health")
    assert resp.status == 200
    return await resp.json()  # type: ignore[no-any-return]


async def test_reload_switches_new_requests_and_health_shows_hash_and_time(aiohttp_client: Any,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    write_config(path, "one")
    client = await aiohttp_client(create_app(load_config(path)))
    before = (await health(client))["config"]
    assert before["source"] == str(path) and len(before["hash"]) == 16 and before["reloads"] == 0
    assert before["loaded_at"].endswith("Z")
    resp = await client.post("/v1/chat/completions", json=openai_chat("hi"))
    assert resp.headers["X-Router-Provider"] == "one"

    resp = await client.post("/admin/reload")
    assert resp.status == 200 and (await resp.json())["status"] == "unchanged"

    await asyncio.sleep(0.01)  # a visibly later load time
    write_config(path, "two")
    resp = await client.post("/admin/reload")
    reply = await resp.json()
    assert resp.status == 200, reply
    assert reply["status"] == "reloaded" and reply["previous_hash"] == before["hash"]
    after = (await health(client))["config"]
    assert after["hash"] == reply["config"]["hash"] != before["hash"]
    assert after["loaded_at"] > before["loaded_at"] and after["reloads"] == 1
    resp = await client.post("/v1/chat/completions", json=openai_chat("hi"))
    assert resp.status == 200 and resp.headers["X-Router-Provider"] == "two"
    assert list((await health(client))["providers"]) == ["two"]


@pytest.mark.parametrize("bad, reason", [
    ("[[routers]]\ntype = 'prefix'\nmodel_prefix = 'x'\nprovider = 'nowhere'\n", "unknown provider 'nowhere'"),
    ("[server\n", "invalid TOML"),
    ("[[routers]]\ntype = 'no-such-rule'\n", "unknown rule type"),
])
async def test_an_invalid_config_is_refused_and_the_old_one_kept(aiohttp_client: Any, tmp_path: Path, bad: str,
                                                                 reason: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "router.toml"
    write_config(path, "one")
    client = await aiohttp_client(create_app(load_config(path)))
    before = (await health(client))["config"]
    path.write_text(path.read_text() + bad)
    with caplog.at_level(logging.ERROR, logger="llmrouter.reload"):
        resp = await client.post("/admin/reload")
    reply = await resp.json()
    assert resp.status == 400
    assert reply["error"]["code"] == "invalid_config" and reason in reply["error"]["message"]
    assert str(path) in reply["error"]["message"]
    assert reply["config"]["hash"] == before["hash"]
    assert any("refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    after = (await health(client))["config"]
    assert after["hash"] == before["hash"] and reason in after["last_error"]
    resp = await client.post("/v1/chat/completions", json=openai_chat("still here"))
    assert resp.status == 200 and resp.headers["X-Router-Provider"] == "one"


async def test_admin_reload_needs_the_inbound_key(aiohttp_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "router.toml"
    write_config(path, "one", server='api_key_env = "ROUTER_KEY"')
    client = await aiohttp_client(create_app(load_config(path), environ={**os.environ, "ROUTER_KEY": KEY}))
    resp = await client.post("/admin/reload")
    assert resp.status == 401 and (await resp.json())["error"]["message"] == "missing API key"
    resp = await client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status == 200


async def test_an_in_flight_stream_finishes_on_the_old_config(aiohttp_client: Any, aiohttp_server: Any,
                                                              tmp_path: Path) -> None:
    release = asyncio.Event()

    async def gated_stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        for text in ("old ", "config"):
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await release.wait()
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await resp.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        return resp

    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", gated_stream)
    server = await aiohttp_server(upstream)
    path, log_path = tmp_path / "router.toml", tmp_path / "requests.jsonl"
    path.write_text(f"""
[logging]
path = "{log_path}"
[[providers]]
name = "slow"
format = "openai"
base_url = "http://127.0.0.1:{server.port}/v1"
discover = false
[[routers]]
type = "fallback"
""")
    app = create_app(load_config(path))
    client = await aiohttp_client(app)
    try:
        await _reload_during_stream(client, path, log_path, release)
    finally:
        release.set()


async def _reload_during_stream(client: Any, path: Path, log_path: Path, release: asyncio.Event) -> None:
    stream = await client.post("/v1/chat/completions", json=openai_chat("tell me", stream=True))
    assert stream.status == 200 and stream.headers["X-Router-Provider"] == "slow"
    received = b""
    while b"old " not in received:
        received += await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)

    write_config(path, "fresh", log_path=log_path)  # "slow" is gone from the new config
    resp = await client.post("/admin/reload")
    assert (await resp.json())["status"] == "reloaded"
    assert (await health(client))["in_flight"] == 1  # the stream, counted on its old config
    resp = await client.post("/v1/chat/completions", json=openai_chat("new"))
    assert resp.status == 200 and resp.headers["X-Router-Provider"] == "fresh"

    release.set()
    rest = await stream.read()
    assert b"config" in rest and b"[DONE]" in rest
    await client.close()  # flushes the request log
    lines = list(read_log(log_path))
    by_provider = {line["provider"]: line for line in lines}
    assert set(by_provider) == {"slow", "fresh"}
    assert by_provider["slow"]["status"] == 200 and by_provider["slow"]["stream"] is True
    assert by_provider["slow"]["response"]["content"][0]["text"] == "old config"


async def _wait_health(url: str, proc: asyncio.subprocess.Process, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "/health") as resp:
                    if resp.status == 200:
                        return await resp.json()  # type: ignore[no-any-return]
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError("router did not answer /health")
            await asyncio.sleep(0.05)


async def _until_every_worker(session: aiohttp.ClientSession, url: str, workers: int, deadline: float,
                              done: Any) -> list[dict[str, Any]]:
    """Poll /health on new connections (the kernel spreads them over the workers) until ``workers``
    distinct processes have answered with a config for which ``done(config)`` holds; their configs."""
    finished: dict[int, dict[str, Any]] = {}
    while len(finished) < workers:
        assert time.monotonic() < deadline, f"only {len(finished)} of {workers} workers got there"
        async with session.get(url + "/health") as resp:
            body = await resp.json()
        if done(body["config"]):
            finished[body["pid"]] = body["config"]
        await asyncio.sleep(0.02)
    return list(finished.values())


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_reloads_a_running_server(tmp_path: Path, workers: int) -> None:
    port = free_port()
    path = tmp_path / "router.toml"
    server = f'port = {port}'
    write_config(path, "one", server=server)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmrouter.cli", "serve", str(path), "--workers", str(workers),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        first = (await _wait_health(url, proc))["config"]
        write_config(path, "two", server=server)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        # A new connection per request, so the kernel spreads them over the workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            # Every worker (told apart by /health's pid) answers with the new config.
            await _until_every_worker(session, url, workers, deadline,
                                      lambda config: config["hash"] != first["hash"])
            async with session.post(url + "/v1/chat/completions", json=openai_chat("hi")) as resp:
                assert resp.status == 200 and resp.headers["X-Router-Provider"] == "two"
            current = (await _wait_health(url, proc))["config"]["hash"]
            path.write_text("[[providers]]\nname = 'broken'\n")  # no format: refused
            proc.send_signal(signal.SIGHUP)
            # Every worker refuses it and keeps serving the config it had.
            configs = await _until_every_worker(session, url, workers, time.monotonic() + 20,
                                                lambda config: "format" in (config.get("last_error") or ""))
            assert {config["hash"] for config in configs} == {current}
            async with session.post(url + "/v1/chat/completions", json=openai_chat("hi")) as resp:
                assert resp.status == 200 and resp.headers["X-Router-Provider"] == "two"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            proc.kill()
            _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "config reload (SIGHUP)" in text and "refused" in text and "key 'format'" in text


async def test_a_reloaded_pipeline_keeps_metrics_tracing_and_keys(aiohttp_client: Any, tmp_path: Path) -> None:
    from llmrouter.web.app import LIVE, METRICS

    path = tmp_path / "router.toml"
    tracing = '[tracing]\nenabled = true\nexporter = "none"\n'
    write_config(path, "one")
    path.write_text(path.read_text() + tracing)
    app = create_app(load_config(path))
    client = await aiohttp_client(app)
    before = app[LIVE].current.pipeline
    write_config(path, "two")
    path.write_text(path.read_text() + tracing)
    resp = await client.post("/admin/reload")
    assert (await resp.json())["status"] == "reloaded"
    after = app[LIVE].current.pipeline
    assert after is not before and type(after) is type(before) and type(after).__name__ == "TracedPipeline"
    assert after.metrics is app[METRICS] and after.keys is before.keys and after.http is before.http
    resp = await client.post("/v1/chat/completions", json=openai_chat("hi"))
    assert resp.status == 200 and resp.headers["X-Router-Provider"] == "two"
    metrics = await (await client.get("/metrics")).text()
    assert 'provider="two"' in metrics


async def test_a_reload_keeps_the_command_lines_quiet(aiohttp_client: Any, tmp_path: Path) -> None:
    """``serve --quiet`` turns the access log off at start-up; reloading the unchanged file keeps it
    off and is no change (the CLI override is not the file's to undo)."""
    path = tmp_path / "router.toml"
    write_config(path, "one")
    config = load_config(path)
    config.server.access_log = False  # what --quiet does
    client = await aiohttp_client(create_app(config))
    resp = await client.post("/admin/reload")
    assert resp.status == 200 and (await resp.json())["status"] == "unchanged"
