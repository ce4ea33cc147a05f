"""Auth, exposure and secrets. No secret ever leaves the router: plant a client key, provider keys, a configured credential header
and Authorization headers, drive traffic through upstreams that echo the credentials they receive
back in error messages, then grep everything observable for the planted values: the request log,
every bus event, every response (bodies and headers), the process's own log records, /health,
/v1/models and ``llmrouter check`` output.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from llmrouter.cli.main import main
from llmrouter.config import ConfigError, parse_config
from llmrouter.jsonutil import dumps
from llmrouter.observe import logfiles
from llmrouter.testing import anthropic_message, openai_chat
from llmrouter.web import runner as serve
from llmrouter.web.middleware import check_exposure, is_loopback

CLIENT_KEY = "rk-PLANTED-client-4d1f0a9c77"
OPENAI_KEY = "sk-PLANTED-openai-9f8e7d6c5b"
ANTHROPIC_KEY = "sk-ant-PLANTED-anthropic-3a2b1c"
OLLAMA_KEY = "ol-PLANTED-ollama-77aa66bb55"
HEADER_SECRET = "hdr-PLANTED-custom-0c0ffee123"
WRONG_KEY = "wrong-PLANTED-guess-5e5e5e5e"
SECRETS = [CLIENT_KEY, OPENAI_KEY, ANTHROPIC_KEY, OLLAMA_KEY, HEADER_SECRET, WRONG_KEY]
ENV = {"ROUTER_KEY": CLIENT_KEY, "OA_KEY": OPENAI_KEY, "AN_KEY": ANTHROPIC_KEY, "OL_KEY": OLLAMA_KEY}


def tattletale() -> web.Application:
    """An upstream speaking all three formats that echoes every credential it receives in its errors."""

    def creds(request: web.Request) -> str:
        return " ".join(f"{k}={v}" for k, v in request.headers.items()
                        if k.lower() in ("authorization", "x-api-key", "x-custom-auth"))

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model, leak = body.get("model", ""), creds(request)
        if model == "reject":
            return web.json_response({"error": {"message": f"Incorrect API key provided: {leak}"}}, status=401)
        if model == "crash":
            return web.Response(status=500, text=f"internal error while handling {leak}")
        if model == "midstream":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            if request.path == "/v1/messages":
                start = {"type": "message_start", "message": {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
                    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}
                error = {"type": "error", "error": {"type": "api_error", "message": f"lost {leak}"}}
                await response.write(f"event: message_start\ndata: {dumps(start).decode()}\n\n"
                                     f"event: error\ndata: {dumps(error).decode()}\n\n".encode())
            else:
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"},
                                      "finish_reason": None}]}
                error = {"error": {"message": f"lost {leak}", "type": "server_error"}}
                await response.write(f"data: {dumps(chunk).decode()}\n\ndata: {dumps(error).decode()}\n\n".encode())
            await response.write_eof()
            return response
        return web.json_response({"error": {"message": f"bad request from {leak}"}}, status=400)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"who are you? {creds(request)}"}}, status=401)

    app = web.Application()
    for path in ("/v1/chat/completions", "/v1/messages", "/api/chat"):
        app.router.add_post(path, chat)
    for path in ("/v1/models", "/api/tags"):
        app.router.add_get(path, models)
    return app


def config_for(base: str, log_path: Path | None = None) -> dict[str, Any]:
    return {
        "server": {"api_key_env": "ROUTER_KEY"},
        "logging": {"path": str(log_path)} if log_path else {},
        "providers": [
            {"name": "oa", "format": "openai", "base_url": f"{base}/v1", "api_key_env": "OA_KEY", "max_retries": 0,
             "headers": {"x-custom-auth": HEADER_SECRET}},
            {"name": "an", "format": "anthropic", "base_url": base, "api_key_env": "AN_KEY", "max_retries": 0},
            {"name": "ol", "format": "ollama", "base_url": base, "api_key_env": "OL_KEY", "max_retries": 0},
        ],
        "routers": [{"type": "prefix", "model_prefix": f"{p}/", "provider": p, "strip_prefix": True}
                    for p in ("an", "ol", "oa")],
        "routing": {"failover": False},
    }


def assert_clean(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} leaks {leaked}"


async def test_no_secret_in_log_events_responses_or_process_logs(router: Any, aiohttp_server: Any, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = await aiohttp_server(tattletale())
    client = await router(config_for(str(upstream.make_url("")).rstrip("/")), environ=ENV)
    await asyncio.sleep(0.2)  # let model discovery hit the tattletale too
    seen: list[str] = []
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}

    async def exchange(path: str, body: Any, headers: dict[str, str]) -> Any:
        reply = await client.post(path, body, {"anthropic-version": "2023-06-01", **headers})
        seen.append(f"{reply.status} {dict(reply.headers)} {reply.text}")
        return reply

    # Wrong and missing client keys, through each way of presenting one.
    for headers in ({"Authorization": f"Bearer {WRONG_KEY}"}, {"x-api-key": WRONG_KEY}, {}):
        assert (await exchange("/v1/chat/completions", openai_chat(), headers)).status == 401
    assert (await exchange(f"/v1/messages?api_key={WRONG_KEY}", anthropic_message(), {})).status == 401
    # Upstreams echoing their credentials, in every format, streaming or not, both client shapes.
    statuses = []
    for prefix in ("oa/", "an/", "ol/"):
        for model in ("reject", "crash", "bad"):
            for stream in (False, True):
                reply = await exchange("/v1/chat/completions", openai_chat(model=prefix + model, stream=stream), good)
                statuses.append(reply.status)
                reply = await exchange(f"/v1/messages?api_key={CLIENT_KEY}",
                                       anthropic_message(model=prefix + model, stream=stream), {})
                statuses.append(reply.status)
    for prefix in ("oa/", "an/"):
        for path, body in (("/v1/chat/completions", openai_chat(model=prefix + "midstream", stream=True)),
                           ("/v1/messages", anthropic_message(model=prefix + "midstream", stream=True))):
            reply = await exchange(path, body, {"x-api-key": CLIENT_KEY})
            assert reply.status == 200 and "lost " in reply.text, reply.text
    assert set(statuses) == {400, 502}  # "bad" is an upstream 400: the client's to fix, so it keeps its status
    for path in ("/health", f"/v1/models?api_key={CLIENT_KEY}"):
        resp = await client.client.get(path)
        seen.append(await resp.text())

    assert "Incorrect API key provided: " in "".join(seen), "the upstream's own message still comes through"
    assert "[redacted]" in "".join(seen)
    for i, text in enumerate(seen):
        assert_clean(f"response #{i}", text)
    client.drain_events()
    assert len(client.events) > 50
    for event in client.events:
        assert_clean(f"event {event.get('type')}", dumps(event).decode())
    log_text = b"\n".join(dumps(line) for line in client.log_lines()).decode()
    assert log_text.count('"type":"complete"') == len(seen) - 2  # all but /health and /v1/models; 401s too
    assert_clean("request log", logfiles.log_text(client.pipeline.request_log.path))
    # aiohttp.access is the test server's access log (``llmrouter serve`` turns it off; the shutdown
    # test checks the real server's output).
    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    process_log = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    assert "who are you?" in process_log, "discovery failures were logged"
    assert_clean("process log", process_log)


def test_check_output_has_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configured header value is in the file itself, but check must not print it."""
    path = tmp_path / "router.toml"
    path.write_text(f"""
[server]
api_key_env = "ROUTER_KEY"

[[providers]]
name = "oa"
format = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "OA_KEY"
headers = {{ x-custom-auth = "{HEADER_SECRET}" }}

[[providers]]
name = "an"
format = "anthropic"
base_url = "http://127.0.0.1:9"
api_key_env = "AN_KEY"

[[routers]]
type = "fallback"
""")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "oa [openai]" in result.output and "ROUTER_KEY" in result.output
    assert_clean("llmrouter check", result.output)


# -- auth and exposure -----------------------------------------------------------------------------


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LocalHost", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.10", False), ("10.0.0.1", False),
    ("router.example.com", False), ("127.0.0.1.nip.io", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_exposure() -> None:
    config = parse_config({"providers": [{"name": "e", "format": "echo"}]})
    with pytest.raises(ConfigError, match=r"\[server\] key 'host': binding '0.0.0.0' exposes the router"):
        check_exposure(config, "0.0.0.0", None)
    check_exposure(config, "0.0.0.0", "a-key")
    check_exposure(config, "127.0.0.1", None)
    config.server.allow_unauthenticated = True
    check_exposure(config, "0.0.0.0", None)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the actual serving in llmrouter.web.runner with a recorder."""
    calls: list[Any] = []
    monkeypatch.setattr(serve, "_serve_one", lambda config, sock=None: calls.append(config))
    monkeypatch.delenv("ROUTER_KEY", raising=False)
    return calls


def test_serve_refuses_a_public_bind_without_a_key(served: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"server": {"host": "0.0.0.0"}, "providers": [{"name": "e", "format": "echo"}]})
    with pytest.raises(ConfigError, match="exposes the router"):
        serve.run(config)
    assert served == []
    config.server.api_key_env = "ROUTER_KEY"
    with pytest.raises(ConfigError, match="ROUTER_KEY is not set"):
        serve.run(config)
    monkeypatch.setenv("ROUTER_KEY", CLIENT_KEY)
    serve.run(config)
    config.server.api_key_env = None
    config.server.allow_unauthenticated = True
    serve.run(config)
    assert len(served) == 2


def test_cli_serve_refuses_a_public_bind_with_a_clear_message(served: list[Any]) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8999"])
    assert result.exit_code == 1 and "exposes the router" in result.output and "allow_unauthenticated" in result.output
    assert served == []
    result = CliRunner().invoke(main, ["serve", "--host", "127.0.0.1", "--port", "8999"])
    assert result.exit_code == 0 and len(served) == 1


async def test_every_route_but_health_and_root_needs_the_key(router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr("llmrouter.keys.auth.hmac.compare_digest", spy)
    client = await router({"server": {"api_key_env": "ROUTER_KEY"}, "providers": [{"name": "e", "format": "echo"}],
                           "routers": [{"type": "fallback"}]}, environ={"ROUTER_KEY": CLIENT_KEY})
    for path in ("/v1/models", "/dashboard", "/dashboard/events", "/v1/nothing"):
        resp = await client.client.get(path)
        assert resp.status == 401, path
        resp = await client.client.get(path, headers={"x-api-key": WRONG_KEY})
        assert resp.status == 401, path
        assert WRONG_KEY not in await resp.text()
    assert (await client.client.get("/v1/models", params={"api_key": CLIENT_KEY})).status == 200
    assert (await client.client.get("/health")).status == 200
    assert (await client.client.head("/")).status == 200
    assert hashlib.sha256(WRONG_KEY.encode()).digest() in compared, \
        "keys are compared as SHA-256 digests with hmac.compare_digest"
