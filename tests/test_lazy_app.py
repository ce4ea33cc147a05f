"""The deferred conversation through the real app (llmrouter/lazy.py): an agent-sized request that
no plugin changes, routed by the benchmark's config (keyword classifier, tag/prefix/fallback rules,
response-healing) to a provider of its own format, is answered without its conversation ever
being converted; a plugin that reads ``ctx.request.messages`` gets the canonical messages and the
request takes the canonical path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from llmrouter.context import Context
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.hookspecs import hookimpl
from llmrouter.lazy import LazyConversation, LazyList, deferred
from llmrouter.models import Message
from llmrouter.testing import MockProviders
from tests.benchmods import BENCH_DIR as BENCH
from tests.benchmods import load_bench

AGENT = load_bench("agent_workload")
OPENAI_URL = "http://127.0.0.1:9101/v1"  # bench/router.toml's providers, answered by respx
ANTHROPIC_URL = "http://127.0.0.1:9101"
ENV = {"BENCH_UPSTREAM_KEY": "dummy"}


def bench_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """bench/router.toml as the rig runs it (the log in ``tmp_path``), plus ``extra`` tables."""
    config = tomllib.loads((BENCH / "router.toml").read_text(encoding="utf-8"))
    config["logging"]["path"] = str(tmp_path / "requests.jsonl")
    for table, value in extra.items():
        config.setdefault(table, {}).update(value)
    return config


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every deferred field converted (``messages``: LazyConversation, ``tools``: LazyList), with its size."""
    seen: list[str] = []
    for cls, field in ((LazyConversation, "messages"), (LazyList, "tools")):
        def counting(self: Any, original: Any = cls.materialise, field: str = field) -> list[Any]:
            seen.append(f"{field}:{self.count}")
            return original(self)  # type: ignore[no-any-return]

        monkeypatch.setattr(cls, "materialise", counting)
    return seen


SSE_OPENAI = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},'
              b'"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
SSE_ANTHROPIC = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message",'
                 b'"role":"assistant","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
                 b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


@pytest.mark.parametrize(("stream", "capabilities"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_bench_request_is_answered_without_converting_its_conversation(
        router: Any, mock_providers: MockProviders, tmp_path: Path, conversions: list[str],
        shape: str, stream: bool, capabilities: bool) -> None:
    """``capabilities``: the providers declare theirs, so routing works out what the request needs
    (tools, images) for each candidate."""
    oa = mock_providers.add_openai(OPENAI_URL, stream_body=SSE_OPENAI)
    an = mock_providers.add_anthropic(ANTHROPIC_URL, stream_body=SSE_ANTHROPIC)
    config = bench_config(tmp_path)
    if capabilities:
        for provider in config["providers"]:
            provider["capabilities"] = ["completion", "tools"]
    client = await router(config, environ=ENV)
    model = "gpt-4o-mini" if shape == "openai" else "claude-sonnet-4"
    body = AGENT.agent_body(shape, model, stream)
    parsed = CLIENT_FORMATS[shape].parse_request(body, {})
    assert deferred(parsed) is not None and deferred(parsed, "tools") is not None  # there is something to defer
    reply = await (client.openai if shape == "openai" else client.anthropic)(body)
    assert reply.status == 200, reply.text
    assert reply.provider == ("mock-openai" if shape == "openai" else "mock-anthropic")
    sent = mock_providers.sent_json(oa if shape == "openai" else an)
    assert sent["messages"] == body["messages"]  # forwarded from the client's own JSON
    assert reply.log_line is not None and reply.log_line["request"] == body
    assert conversions == []


class Reader:
    """A pre_request plugin that reads the conversation (and so needs it converted)."""

    def __init__(self) -> None:
        self.seen: list[list[Message]] = []

    @hookimpl
    def pre_request(self, ctx: Context) -> None:
        self.seen.append(list(ctx.request.messages))


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
async def test_a_plugin_reading_the_messages_gets_them_converted(
        router: Any, mock_providers: MockProviders, tmp_path: Path, conversions: list[str], shape: str) -> None:
    oa = mock_providers.add_openai(OPENAI_URL)
    an = mock_providers.add_anthropic(ANTHROPIC_URL)
    reader = Reader()
    client = await router(bench_config(tmp_path, plugins={"reader": {"enabled": True}}),
                          plugins={"reader": reader}, environ=ENV)
    model = "gpt-4o-mini" if shape == "openai" else "claude-sonnet-4"
    body = AGENT.agent_body(shape, model, False)
    reply = await (client.openai if shape == "openai" else client.anthropic)(body)
    assert reply.status == 200, reply.text
    raw = body["messages"][1:] if shape == "openai" else body["messages"]  # OpenAI: the system prompt aside
    assert conversions[0] == f"messages:{len(raw)}" and [len(m) for m in reader.seen] == [len(raw)]
    assert [m.role for m in reader.seen[0]] == [{"tool": "user"}.get(m["role"], m["role"]) for m in raw]
    sent = mock_providers.sent_json(oa if shape == "openai" else an)
    assert len(sent["messages"]) == len(body["messages"])
    assert reply.log_line is not None and reply.log_line["request"] == body


class Counter:
    """A classifier that reads the whole conversation (converting it) and changes nothing."""

    @hookimpl
    def classify(self, ctx: Context) -> list[str]:
        return [] if len(ctx.request.messages) else ["empty"]


async def test_a_classifier_reading_the_messages_keeps_the_fast_path(
        router: Any, mock_providers: MockProviders, tmp_path: Path, conversions: list[str]) -> None:
    """Converting is not changing: the request is still forwarded from the client's JSON (its tool
    arguments as the client spaced them, which the canonical path would compact)."""
    oa = mock_providers.add_openai(OPENAI_URL)
    client = await router(bench_config(tmp_path, classifiers={"counter": {"enabled": True}}),
                          plugins={"counter": Counter()}, environ=ENV)
    body = AGENT.agent_body("openai", "gpt-4o-mini", False)
    reply = await client.openai(body)
    assert reply.status == 200, reply.text
    assert conversions == [f"messages:{len(body['messages']) - 1}"]
    assert mock_providers.sent_json(oa)["messages"] == body["messages"]
