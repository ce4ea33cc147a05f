"""Inbound limits and bad input: content types, nesting depth, message count, body size, and a
property-based test throwing arbitrary JSON and bytes at both chat endpoints of a live router.

Whatever arrives, the router answers promptly with a 200 or a well-formed error in the client's own
shape (never a 500), logs exactly one line per request, and keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrouter.observe.logfiles import read_lines
from llmrouter.testing import anthropic_message, make_config, openai_chat
from llmrouter.web.app import PIPELINE, create_app
from llmrouter.web.limits import json_depth_exceeds

ECHO = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}]}
OPENAI, ANTHROPIC = "/v1/chat/completions", "/v1/messages"
SAFELISTED = ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
              "multipart/form-data; boundary=x"]


def nested(depth: int) -> Any:
    """A JSON value ``depth`` containers deep."""
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def assert_error_shape(path: str, status: int, body: Any) -> None:
    """An error body as the official API would shape it."""
    if path.startswith(ANTHROPIC):
        assert body["type"] == "error", body
        error = body["error"]
        assert set(error) == {"type", "message"}
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert {"message", "type", "code"} <= set(error)
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["message"], str) and error["message"]


# -- deterministic limit tests ---------------------------------------------------------------------


@pytest.mark.parametrize("ctype", [*SAFELISTED, "text/html", "application/xml", "image/png"])
async def test_non_json_content_types_get_415_in_the_clients_shape(router: Any, ctype: str) -> None:
    client = await router(ECHO)
    for path, body in ((OPENAI, openai_chat()), (ANTHROPIC, anthropic_message())):
        reply = await client.post(path, body, {"content-type": ctype, "anthropic-version": "2023-06-01"})
        assert reply.status == 415, (ctype, reply.text)
        assert_error_shape(path, 415, reply.body)
        assert "unsupported content type" in reply.text and "application/json" in reply.text
        assert reply.log_line["status"] == 415
    assert (await client.openai(openai_chat())).status == 200


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                   "application/vnd.api+json", "application/octet-stream", None])
async def test_json_and_undeclared_bodies_are_accepted(router: Any, ctype: str | None) -> None:
    client = await router(ECHO)
    headers = {} if ctype is None else {"Content-Type": ctype}
    resp = await client.client.post(OPENAI, data=json.dumps(openai_chat("typed")).encode(), headers=headers,
                                    skip_auto_headers=["Content-Type"])
    assert resp.status == 200, await resp.text()
    assert (resp.request_info.headers.get("Content-Type")) == ctype


async def test_nesting_beyond_the_limit_is_400(router: Any) -> None:
    client = await router({**ECHO, "server": {"max_json_depth": 10}})
    ok = await client.anthropic(anthropic_message(x=nested(9)))  # the body object + 9 levels
    assert ok.status == 200, ok.text
    for path, body in ((OPENAI, openai_chat(metadata=nested(10))), (ANTHROPIC, anthropic_message(x=nested(10)))):
        reply = await client.post(path, body, {"anthropic-version": "2023-06-01"})
        assert reply.status == 400
        assert_error_shape(path, 400, reply.body)
        assert "nested deeper than the limit of 10 levels" in reply.text


async def test_nesting_beyond_the_json_parsers_own_limit_is_400(router: Any) -> None:
    client = await router({**ECHO, "server": {"max_json_depth": 5000}})
    reply = await client.openai(b"[" * 3000 + b"]" * 3000)
    assert reply.status == 400 and "not valid JSON" in reply.body["error"]["message"]


async def test_too_many_messages_is_400(router: Any) -> None:
    client = await router({**ECHO, "server": {"max_messages": 3}})
    messages = [{"role": "user", "content": f"m{i}"} for i in range(4)]
    reply = await client.anthropic({**anthropic_message(), "messages": messages})
    assert reply.status == 400 and reply.body["error"]["type"] == "invalid_request_error"
    assert reply.body["error"]["message"] == "messages: 4 messages exceed the limit of 3"
    assert (await client.openai({**openai_chat(), "messages": messages[:3]})).status == 200


async def test_oversized_chunked_body_is_413(router: Any) -> None:
    client = await router({**ECHO, "server": {"max_body_mb": 0.01}})

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 1024

    resp = await client.client.post(OPENAI, data=chunks(), headers={"content-type": "application/json"})
    assert resp.status == 413 and "exceeds the limit" in (await resp.json())["error"]["message"]


async def test_control_characters_in_the_model_cannot_break_or_inject_headers(router: Any) -> None:
    client = await router(ECHO)
    for stream in (False, True):
        reply = await client.openai(openai_chat(model="m\r\nX-Injected: 1\x00", stream=stream))
        assert reply.status == 200
        assert reply.headers["X-Router-Model"] == "m??X-Injected: 1?" and "X-Injected" not in reply.headers


def test_depth_measure() -> None:
    assert not json_depth_exceeds("x", 1) and json_depth_exceeds("x", 0)
    assert not json_depth_exceeds({}, 1) and json_depth_exceeds({"a": []}, 1)
    assert not json_depth_exceeds(nested(10), 10) and json_depth_exceeds(nested(11), 10)
    assert not json_depth_exceeds([[1, 2], {"a": [3]}], 3) and json_depth_exceeds([[1, 2], {"a": [[]]}], 3)


# -- property-based: a live router in a thread, hit over loopback with httpx ---------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A router on an ephemeral loopback port, served from its own event loop thread."""
    config = make_config({**ECHO, "server": {"max_json_depth": 12, "max_messages": 6, "max_body_mb": 0.02}},
                         tmp_path_factory.mktemp("fuzz"))
    app = create_app(config, environ={})
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app[PIPELINE]
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class Prober:
    """Sends one request, checks the answer, and counts requests for the log check."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=httpx.Timeout(5.0))
        self.sent = 0

    def check(self, path: str, content: bytes, ctype: str | None) -> None:
        headers = {"anthropic-version": "2023-06-01"}
        if ctype is not None:
            headers["content-type"] = ctype
        self.sent += 1
        resp = self.http.post(path, content=content, headers=headers)  # a hang raises a timeout
        assert resp.status_code < 500, (resp.status_code, resp.text, content[:200])
        assert resp.headers.get("X-Router-Request-Id")
        if resp.status_code == 200:
            if resp.headers["content-type"].startswith("text/event-stream"):
                assert resp.text.startswith(("data:", "event:")), resp.text[:200]
            else:
                body = resp.json()
                assert body.get("choices") if path.startswith(OPENAI) else body.get("type") == "message", body
            return
        assert resp.status_code in (400, 413, 415), (resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        assert_error_shape(path, resp.status_code, resp.json())


json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=25)
part_types = st.sampled_from(["text", "image", "image_url", "tool_use", "tool_result", "thinking", "document",
                              "input_audio", "redacted_thinking", "bogus"])
parts = st.lists(st.fixed_dictionaries({"type": part_types}, optional={
    "text": json_values, "image_url": json_values, "source": json_values, "id": json_values, "name": json_values,
    "input": json_values, "content": json_values, "tool_use_id": json_values, "cache_control": json_values}),
    max_size=3)
messages = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "function", "x"]) | json_values,
    "content": st.text(max_size=30) | parts | json_values}, optional={
    "tool_calls": json_values, "tool_call_id": json_values, "name": json_values}), max_size=8)
near_valid = st.fixed_dictionaries({"model": st.text(max_size=12) | json_values, "messages": messages}, optional={
    "stream": st.booleans() | json_values, "max_tokens": st.integers(-5, 10**20) | json_values,
    "temperature": json_values, "tools": json_values, "tool_choice": json_values, "system": json_values,
    "stop": json_values, "stop_sequences": json_values, "response_format": json_values, "plugins": json_values,
    "stream_options": json_values, "thinking": json_values, "metadata": json_values, "n": json_values})
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", None,
                                 "application/octet-stream", *SAFELISTED, "text/html"])
paths = st.sampled_from([OPENAI, ANTHROPIC, OPENAI + "?x=1", ANTHROPIC + "?beta=true"])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None,
                derandomize=True)


def log_lines(pipeline: Any) -> int:
    pipeline.request_log.wait_idle()
    try:
        return sum(1 for _ in read_lines(pipeline.request_log.path))
    except FileNotFoundError:  # nothing logged yet
        return 0


def test_fuzz_near_valid_requests(live: tuple[str, Any]) -> None:
    base, pipeline = live
    prober, before = Prober(base), log_lines(pipeline)

    @FUZZ
    @given(path=paths, body=near_valid)
    def run(path: str, body: dict[str, Any]) -> None:
        prober.check(path, json.dumps(body).encode(), "application/json")

    run()
    assert log_lines(pipeline) - before == prober.sent


def test_fuzz_arbitrary_json(live: tuple[str, Any]) -> None:
    base, pipeline = live
    prober, before = Prober(base), log_lines(pipeline)

    @FUZZ
    @given(path=paths, body=json_values, ctype=content_types)
    def run(path: str, body: Any, ctype: str | None) -> None:
        prober.check(path, json.dumps(body).encode(), ctype)

    run()
    assert log_lines(pipeline) - before == prober.sent


def test_fuzz_arbitrary_bytes(live: tuple[str, Any]) -> None:
    base, pipeline = live
    prober, before = Prober(base), log_lines(pipeline)

    @FUZZ
    @given(path=paths, content=st.binary(max_size=400) | st.text(max_size=200).map(str.encode), ctype=content_types)
    def run(path: str, content: bytes, ctype: str | None) -> None:
        prober.check(path, content, ctype)

    run()
    assert log_lines(pipeline) - before == prober.sent
    prober.check(OPENAI, json.dumps(openai_chat("still here")).encode(), None)


def test_fuzz_depth_and_size_edges(live: tuple[str, Any]) -> None:
    base, pipeline = live
    prober = Prober(base)

    @FUZZ
    @given(path=paths, depth=st.integers(0, 40), pad=st.integers(0, 30_000))
    def run(path: str, depth: int, pad: int) -> None:
        body = {**anthropic_message("edge"), "x": nested(depth), "y": "p" * pad}
        prober.check(path, json.dumps(body).encode(), "application/json")

    run()
