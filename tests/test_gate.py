"""The C-speed gate through the real app (llmrouter/formats/gate.py): an agent request it accepts
skips the Python walks (depth, deferral, passthrough checks) and is forwarded, answered, logged and
published exactly as without the gate; every request it declines, and every invalid request it
accepts the messages of, gets today's status and error message."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest

from llmrouter.formats import anthropic_request, openai_request, passthrough
from llmrouter.formats import gate as gate_module
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.testing import MockProviders, RouterClient
from llmrouter.web import limits
from tests.benchmods import load_bench
from tests.test_passthrough import ANTHROPIC_SSE, OPENAI_SSE, _config

AGENT = load_bench("agent_workload")
FORMATS = {"openai": OpenAIFormat, "anthropic": AnthropicFormat}
PYTHON_WALKS = {
    "openai": [(limits, "json_depth_exceeds"), (openai_request, "deferrable"), (openai_request, "_tool_ok"),
               (passthrough, "_openai_messages_ok"), (passthrough, "_openai_tool_ok")],
    "anthropic": [(limits, "json_depth_exceeds"), (anthropic_request, "deferrable"), (anthropic_request, "_tool_ok"),
                  (passthrough, "_anthropic_messages_ok"), (passthrough, "_anthropic_tool_ok")],
}
CONFIG = _config(classifiers={"keyword": {"enabled": True, "tags": {"code": ["def "], "math": ["integral"]}}},
                 routers=[{"type": "tag", "tag": "math", "provider": "an"},
                          {"type": "prefix", "model_prefix": "claude-", "provider": "an", "strip_prefix": False},
                          {"type": "fallback", "providers": ["oa"]}])


@contextmanager
def gate(on: bool) -> Iterator[list[Any]]:
    """The gate (for bodies of any size) or one declining everything; yields the verdicts it gave."""
    verdicts: list[Any] = []
    patches = [mock.patch.object(gate_module, "FEW", 0)]
    for cls in FORMATS.values():
        real = cls.gate

        def spy(self: Any, body: Any, real: Any = real) -> Any:
            verdicts.append(real(self, body) if on else None)
            return verdicts[-1]

        patches.append(mock.patch.object(cls, "gate", spy))
    for p in patches:
        p.start()
    try:
        yield verdicts
    finally:
        for p in patches:
            p.stop()


@contextmanager
def counting(fmt: str) -> Iterator[dict[str, int]]:
    """Counts the calls of the Python walks the gate stands in for."""
    calls: dict[str, int] = {}
    patches = []
    for module, name in PYTHON_WALKS[fmt]:
        real = getattr(module, name)

        def spy(*args: Any, real: Any = real, name: str = name) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return real(*args)

        patches.append(mock.patch.object(module, name, spy))
    for p in patches:
        p.start()
    try:
        yield calls
    finally:
        for p in patches:
            p.stop()


VOLATILE = {"id", "ts_ms", "duration_ms", "created", "latency_ms", "elapsed_ms", "ttfb_ms"}


def stable(value: Any) -> Any:
    """``value`` without the fields that differ between two runs of one request (ids, times)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def sse(text: str) -> list[Any]:
    """A streamed reply's frames, their JSON without ids and times."""
    return [stable(orjson.loads(line[6:])) if line.startswith("data: {") else line for line in text.split("\n")]


async def exchange(client: RouterClient, route: Any, fmt: str, body: Any) -> dict[str, Any]:
    """One request's every visible outcome: status, reply, upstream bytes, log line, events."""
    before = len(route.calls)
    reply = await (client.openai(body) if fmt == "openai" else client.anthropic(body))
    sent = route.calls[-1].request.content if len(route.calls) > before else None
    return {"status": reply.status, "reply": stable(reply.body) if reply.body is not None else sse(reply.text),
            "sent": sent, "log": stable(reply.log_line), "events": stable(reply.events),
            "headers": {k: v for k, v in reply.headers.items() if k.lower().startswith("x-router-")
                        and k.lower() != "x-router-request-id"}}


def agent_body(fmt: str, stream: bool) -> dict[str, Any]:
    return AGENT.openai_body("gpt-client", stream) if fmt == "openai" else AGENT.anthropic_body("claude-client", stream)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_a_gated_agent_request_goes_out_and_is_logged_as_without_the_gate(
        router: Any, mock_providers: MockProviders, fmt: str, stream: bool) -> None:
    routes = {"openai": mock_providers.add_openai("http://oa.test/v1", stream_body=OPENAI_SSE),
              "anthropic": mock_providers.add_anthropic("http://an.test", stream_body=ANTHROPIC_SSE)}
    client = await router(CONFIG)
    body = agent_body(fmt, stream)
    outcomes = []
    for on in (True, False):
        with gate(on) as verdicts, counting(fmt) as calls:
            outcomes.append(await exchange(client, routes[fmt], fmt, copy.deepcopy(body)))
        assert len(verdicts) == 1 and (verdicts[0] is not None) == on
        if on:  # accepted whole: none of the Python walks ran
            assert verdicts[0].passthrough and verdicts[0].tools and calls == {}
        else:
            assert set(calls) == {name for _, name in PYTHON_WALKS[fmt]}
    gated, python = outcomes
    assert gated["status"] == 200 and gated["sent"] is not None
    assert gated["sent"] == python["sent"]  # the same bytes upstream
    assert gated == python  # the same reply, headers, log line and events


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"k": value}
    return value


U = {"role": "user", "content": "hello"}
A = {"role": "assistant", "content": "hi"}
TOOL_OAI = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
TOOL_ANT = {"name": "f", "input_schema": {"type": "object"}}

# Requests whose messages the gate accepts, wrong elsewhere; then requests it declines.
OPENAI_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"messages": [U]}, True),
    ({"model": "", "messages": [U]}, True),
    ({"model": "m", "messages": [U], "temperature": "hot"}, True),
    ({"model": "m", "messages": [U], "n": 2}, True),
    ({"model": "m", "messages": [U], "max_tokens": 0}, True),
    ({"model": "m", "messages": [{"role": "system", "content": "s"}]}, True),
    ({"model": "m", "messages": [U], "tools": [TOOL_OAI], "tool_choice": "sometimes"}, True),
    ({"model": "m", "messages": [U], "x_deep": deep(70)}, True),
    ({"model": "m", "messages": [U], "tools": [{"type": "function", "function": {"name": "f",
                                                                                "parameters": deep(70)}}]}, True),
    ({"model": "m", "messages": [U], "tools": [{"type": "function", "function": {"name": "f",
                                                                                "parameters": deep(14)}}]}, True),
    ({"model": "m", "messages": [U, A] * 6, "stop": 5}, True),
    ({"model": "m", "messages": [U, {"role": "critic", "content": "x"}]}, False),
    ({"model": "m", "messages": [U, {"role": "assistant"}]}, False),
    ({"model": "m", "messages": [U | {"name": 5}]}, False),
    ({"model": "m", "messages": [U, {"role": "tool", "content": "r"}]}, False),
    ({"model": "m", "messages": [U | {"x": deep(70)}]}, False),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png,AAAA"}}]}]}, False),
    ({"model": "m", "messages": []}, False),
    ({"model": "m", "messages": "hello"}, False),
    ([U], False),
]
ANTHROPIC_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"max_tokens": 5, "messages": [U]}, True),
    ({"model": "claude-x", "messages": [U]}, True),
    ({"model": "claude-x", "max_tokens": 0, "messages": [U]}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [U], "system": 5}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [U], "tools": [TOOL_ANT], "tool_choice": {"type": "x"}}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [U], "metadata": deep(70)}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [U], "tools": [{"name": "f", "input_schema": deep(70)}]}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [A]}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [U, U, A] * 4, "stream": "yes"}, True),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": deep(70)}]}]}, False),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]}, False),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "bogus"}]}]}, False),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, False),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": None}]}, False),
    ({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": []}]}, False),
]


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_every_request_gets_todays_answer_whatever_the_gate_says(
        router: Any, mock_providers: MockProviders, fmt: str) -> None:
    """Invalid requests whose messages pass the gate (errors elsewhere: model, fields, depth of an
    extra field or a tool schema) and requests it declines: the same status, error and log line as
    with the gate out of the way."""
    routes = {"openai": mock_providers.add_openai("http://oa.test/v1"),
              "anthropic": mock_providers.add_anthropic("http://an.test")}
    client = await router(CONFIG)
    statuses = set()
    for i, (body, accepted) in enumerate(OPENAI_CASES if fmt == "openai" else ANTHROPIC_CASES):
        outcomes = []
        for on in (True, False):
            with gate(on) as verdicts:
                outcomes.append(await exchange(client, routes[fmt], fmt, copy.deepcopy(body)))
            if on:
                assert (verdicts[0] is not None) == accepted, f"case {i}"
        assert outcomes[0] == outcomes[1], f"case {i}"
        statuses.add(outcomes[0]["status"])
    assert statuses == {200, 400}


async def test_a_body_of_a_few_messages_without_tools_is_left_to_python(
        router: Any, mock_providers: MockProviders) -> None:
    """The Python checks cost about what the gate does for a short conversation: it is not gated."""
    route = mock_providers.add_openai("http://oa.test/v1")
    client = await router(CONFIG)
    with counting("openai") as calls:
        outcome = await exchange(client, route, "openai", {"model": "m", "messages": [U, A] * 4})
    assert outcome["status"] == 200 and calls["json_depth_exceeds"] == 1
    assert OpenAIFormat().gate({"model": "m", "messages": [U, A] * 4}) is None
    assert OpenAIFormat().gate({"model": "m", "messages": [U, A] * 4 + [U]}) is not None
    assert OpenAIFormat().gate({"model": "m", "messages": [U], "tools": [TOOL_OAI]}) is not None


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_a_tight_depth_limit_is_enforced_on_gated_requests(
        router: Any, mock_providers: MockProviders, fmt: str) -> None:
    """Below the depth the gate bounds, the whole body is walked as before: the agent request is
    refused at a limit it exceeds and served at one it does not."""
    routes = {"openai": mock_providers.add_openai("http://oa.test/v1"),
              "anthropic": mock_providers.add_anthropic("http://an.test")}
    body = agent_body(fmt, False)
    for limit, status in ((5, 400), (64, 200)):
        client = await router({**CONFIG, "server": {**CONFIG["server"], "max_json_depth": limit}})
        with gate(True) as verdicts:
            outcome = await exchange(client, routes[fmt], fmt, body)
        assert verdicts[0] is not None and outcome["status"] == status
        if status == 400:
            assert f"nested deeper than the limit of {limit} levels" in str(outcome["reply"])
