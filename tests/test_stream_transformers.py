"""Plugins on streams: the ``stream_transformer`` hook, its chain, the hot path without it, and
``ctx.delivered`` / what the log records, through the real app with respx-mocked providers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import llmrouter.engine.streams as streams
from llmrouter import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatResponse,
    Context,
    Flow,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
    StreamEvent,
    StreamTransformer,
    TextPart,
    hookimpl,
)
from llmrouter.testing import MockProviders, anthropic_message, openai_chat, run_transformer
from tests.streamkit import (
    AN_URL,
    OA_URL,
    PROVIDERS,
    ROUTERS,
    anthropic_stream,
    client_error,
    client_text,
    frames,
    openai_stream,
)

CONFIG: dict[str, Any] = {"providers": PROVIDERS, "routers": ROUTERS}
FORMATS = ["openai", "anthropic"]


def events_of(*pieces: str) -> list[StreamEvent]:
    """A canonical text reply streamed as ``pieces``."""
    return [MessageStart(id="m", model="x"), BlockStart(index=0, part=TextPart(text="")),
            *(BlockDelta(index=0, text=p) for p in pieces), BlockStop(index=0),
            MessageDelta(stop_reason="end_turn"), MessageStop()]


def texts(events: Iterable[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, BlockDelta) and e.text)


class Upper:
    """Upper-cases text deltas."""

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, BlockDelta) and event.text:
            return [event.model_copy(update={"text": event.text.upper()})]
        return [event]

    def finish(self) -> list[StreamEvent]:
        return []


class Tail:
    """Holds the block stop, adds a delta with what it saw (so chaining order shows), then the stop."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen: list[str] = []
        self.stop: BlockStop | None = None

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, BlockDelta) and event.text:
            self.seen.append(event.text)
        if isinstance(event, BlockStop):
            self.ctx.mark_modified()
            return [BlockDelta(index=event.index, text=f" [seen: {'|'.join(self.seen)}]"), event]
        return [event]

    def finish(self) -> list[StreamEvent]:
        return []


class UpperPlugin:
    @hookimpl
    def stream_transformer(self, ctx: Context) -> StreamTransformer | None:
        ctx.mark_modified()
        return Upper()


class TailPlugin:
    @hookimpl
    def stream_transformer(self, ctx: Context) -> StreamTransformer | None:
        return Tail(ctx)


class Declines:
    """Returns None for every stream, recording that it was asked and what it could see."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, dict[str, Any]]] = []
        self.delivered: list[tuple[str, bool]] = []

    @hookimpl
    def stream_transformer(self, ctx: Context) -> None:
        self.asked.append((ctx.provider, dict(ctx.settings)))

    @hookimpl
    def on_end(self, ctx: Context) -> None:
        self.delivered.append(("on_end", ctx.delivered))


class Broken:
    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl
    def stream_transformer(self, ctx: Context) -> StreamTransformer | None:
        if self.where == "hook":
            raise RuntimeError("no transformer today")
        return self

    def feed(self, event: StreamEvent) -> list[StreamEvent]:
        if self.where == "feed" and isinstance(event, BlockDelta):
            raise ValueError("feed broke")
        return [event]

    def finish(self) -> list[StreamEvent]:
        return []


def mock_both(mock_providers: MockProviders, pieces: list[str]) -> None:
    mock_providers.add_openai(OA_URL, stream_body=openai_stream(pieces))
    mock_providers.add_anthropic(AN_URL, stream_body=anthropic_stream(pieces))


async def stream(client: Any, fmt: str, provider: str, text: str = "hi", **extra: Any) -> Any:
    if fmt == "openai":
        return await client.openai(openai_chat(text, model=f"{provider}/m", stream=True, **extra))
    return await client.anthropic(anthropic_message(text, model=f"{provider}/m", stream=True, **extra))


# -- llmrouter.testing.run_transformer --------------------------------------------------------------


def test_run_transformer_feeds_every_event_then_finishes() -> None:
    class Holder:
        def __init__(self) -> None:
            self.held: list[StreamEvent] = []

        def feed(self, event: StreamEvent) -> list[StreamEvent]:
            if isinstance(event, BlockDelta):
                self.held.append(event)
                return []
            return [event]

        def finish(self) -> list[StreamEvent]:
            return self.held

    out = run_transformer(Holder(), events_of("a", "b"))
    assert [type(e).__name__ for e in out] == ["MessageStart", "BlockStart", "BlockStop", "MessageDelta",
                                               "MessageStop", "BlockDelta", "BlockDelta"]
    assert texts(run_transformer(Upper(), events_of("ab", "c"))) == "ABC"
    assert run_transformer(None, events_of("x")) == events_of("x")


# -- the hot path -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_without_transformers_the_relay_gets_the_providers_own_stream(
        router: Any, mock_providers: MockProviders, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    chained: list[Any] = []
    real_run_chain = streams.run_chain
    monkeypatch.setattr(streams, "run_chain", lambda *a: chained.append(a) or real_run_chain(*a))
    declines = Declines()

    plain = await router(CONFIG)
    assert plain.pipeline.transformers == []
    sentinel: Any = object()
    ctx = plain.pipeline.new_context(plain.pipeline.registry and _request(), "r1", "/v1/chat/completions")
    assert await plain.pipeline.transform_stream(ctx, sentinel) is sentinel  # no wrapper at all
    reply = await stream(plain, fmt, "oa")
    assert client_text(reply.text, fmt) == "hello"

    # A plugin whose hook returns None costs the stream nothing either: no chain is built.
    declining = await router({**CONFIG, "plugins": {"declines": {"level": 3}}}, plugins={"declines": declines})
    reply = await stream(declining, fmt, "an")
    assert client_text(reply.text, fmt) == "hello"
    assert declines.asked == [("an", {"level": 3})]
    assert chained == []
    assert reply.log_line["response"]["content"][0]["text"] == "hello"


def _request() -> Any:
    from llmrouter import ChatRequest

    return ChatRequest(model="oa/m", stream=True)


# -- the chain, end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("provider", ["oa", "an"])
async def test_transformers_chain_in_config_order_and_the_log_records_what_the_client_got(
        router: Any, mock_providers: MockProviders, fmt: str, provider: str) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    # Config order (tail first) decides, not registration order.
    client = await router({**CONFIG, "plugins": {"tail": {}, "upper": {}}},
                          plugins={"upper": UpperPlugin(), "tail": TailPlugin()})
    reply = await stream(client, fmt, provider)
    assert reply.status == 200
    assert client_text(reply.text, fmt) == "HELLO [SEEN: HEL|LO]"  # tail ran first, upper after it
    line = reply.log_line
    assert line["status"] == 200 and line["error"] is None
    assert [p["text"] for p in line["response"]["content"]] == ["HELLO [SEEN: HEL|LO]"]
    assert line["plugins"] == ["upper", "tail"]  # in the order they marked the reply

    reversed_order = await router({**CONFIG, "plugins": {"upper": {}, "tail": {}}},
                                  plugins={"upper": UpperPlugin(), "tail": TailPlugin()})
    reply = await stream(reversed_order, fmt, provider)
    assert client_text(reply.text, fmt) == "HELLO [seen: HEL|LO]"  # upper first: tail saw its output
    assert reply.log_line["response"]["content"][0]["text"] == "HELLO [seen: HEL|LO]"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_plugins_answer_streams_through_the_transformers_too(router: Any, fmt: str) -> None:
    class Answers:
        @hookimpl
        def pre_request(self, ctx: Context) -> Flow:
            ctx.response = ChatResponse.from_text("answered by plugin")
            return Flow.STOP

    config = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}]}
    client = await router({**config, "plugins": {"upper": {}}}, plugins={"upper": UpperPlugin()})
    reply = await stream(client, fmt, "echo", text="shout this")  # the echo provider's reply
    assert client_text(reply.text, fmt) == "SHOUT THIS"
    assert reply.log_line["response"]["content"][0]["text"] == "SHOUT THIS"
    answering = await router({**config, "plugins": {"answers": {}, "upper": {}}},
                             plugins={"upper": UpperPlugin(), "answers": Answers()})
    reply = await stream(answering, fmt, "echo")
    assert client_text(reply.text, fmt) == "ANSWERED BY PLUGIN"
    assert reply.log_line["provider"] == "plugin"
    assert reply.log_line["response"]["content"][0]["text"] == "ANSWERED BY PLUGIN"


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_transformer_raising_mid_stream_ends_it_with_an_error_naming_the_plugin(
        router: Any, mock_providers: MockProviders, fmt: str) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    client = await router({**CONFIG, "plugins": {"broken": {}}}, plugins={"broken": Broken("feed")})
    reply = await stream(client, fmt, "oa")
    error = client_error(reply.text, fmt)
    assert error is not None and error["message"] == "plugin 'broken' failed: feed broke"
    assert reply.log_line["status"] == 500 and reply.log_line["error"] == "plugin 'broken' failed: feed broke"
    # The server keeps serving.
    ok = await router(CONFIG)
    assert client_text((await stream(ok, fmt, "oa")).text, fmt) == "hello"


async def test_a_stream_transformer_hook_that_raises_is_skipped(router: Any, mock_providers: MockProviders) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    client = await router({**CONFIG, "plugins": {"broken": {}, "upper": {}}},
                          plugins={"broken": Broken("hook"), "upper": UpperPlugin()})
    reply = await stream(client, "openai", "oa")
    assert client_text(reply.text, "openai") == "HELLO"
    assert reply.log_line["status"] == 200


# -- ctx.delivered and late edits ------------------------------------------------------------------------


class LateEditor:
    def __init__(self) -> None:
        self.delivered: list[tuple[str, bool]] = []

    @hookimpl
    def post_response(self, ctx: Context) -> None:
        self.delivered.append(("post_response", ctx.delivered))
        assert ctx.response is not None
        ctx.response.content = [TextPart(text="rewritten after the fact")]
        ctx.mark_modified()

    @hookimpl
    def on_end(self, ctx: Context) -> None:
        self.delivered.append(("on_end", ctx.delivered))


@pytest.mark.parametrize("fmt", FORMATS)
async def test_delivered_tells_late_hooks_and_late_edits_never_reach_the_log_of_a_stream(
        router: Any, mock_providers: MockProviders, fmt: str) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    editor = LateEditor()
    client = await router({**CONFIG, "plugins": {"editor": {}}}, plugins={"editor": editor})
    reply = await stream(client, fmt, "oa")
    assert client_text(reply.text, fmt) == "hello"
    assert editor.delivered == [("post_response", True), ("on_end", True)]
    (complete,) = [e for e in reply.events if e["type"] == "complete"]
    for entry in (reply.log_line, complete):
        assert entry["response"]["content"][0]["text"] == "hello"
        assert entry["plugins"] == []

    # Not streamed: the edit is the reply, and the client gets it.
    editor.delivered.clear()
    body = openai_chat("hi", model="oa/m") if fmt == "openai" else anthropic_message("hi", model="oa/m")
    reply = await (client.openai(body) if fmt == "openai" else client.anthropic(body))
    assert "rewritten after the fact" in reply.text
    assert editor.delivered == [("post_response", False), ("on_end", False)]
    assert reply.log_line["response"]["content"][0]["text"] == "rewritten after the fact"
    assert reply.log_line["plugins"] == ["editor"]


# -- the chain driver itself -------------------------------------------------------------------------------


async def test_finish_output_of_one_transformer_is_fed_to_the_next() -> None:
    from llmrouter import ChatRequest

    class HoldAll:
        def __init__(self) -> None:
            self.held: list[StreamEvent] = []

        def feed(self, event: StreamEvent) -> list[StreamEvent]:
            self.held.append(event)
            return []

        def finish(self) -> list[StreamEvent]:
            return self.held

    async def source() -> Any:
        for event in events_of("ab"):
            yield event

    ctx = Context(request=ChatRequest(model="m"), request_id="r", providers={})
    out = [e async for e in streams.run_chain(ctx, source(), [streams.Link("hold", HoldAll()),
                                                              streams.Link("upper", Upper())])]
    assert texts(out) == "AB" and len(out) == len(events_of("ab"))


async def test_upstream_errors_pass_through_transformers_as_the_providers() -> None:
    from llmrouter import ChatRequest

    upstream_error = StreamError(message="overloaded", error_type="overloaded_error")

    async def source() -> Any:
        yield MessageStart(id="m", model="x")
        yield upstream_error

    ctx = Context(request=ChatRequest(model="m"), request_id="r", providers={})
    out = [e async for e in streams.run_chain(ctx, source(), [streams.Link("upper", Upper())])]
    assert out[-1] is upstream_error
    assert streams.PLUGIN_STREAM_ERROR not in ctx.state  # the relay reports it as the provider's


# -- the built-ins on streams, end to end ------------------------------------------------------------------


def json_asked(fmt: str) -> dict[str, Any]:
    if fmt == "openai":
        return {"response_format": {"type": "json_object"}}
    return {"output_config": {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}}}}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("provider", ["oa", "an"])
async def test_response_healing_repairs_a_streamed_json_reply(
        router: Any, mock_providers: MockProviders, fmt: str, provider: str) -> None:
    mock_both(mock_providers, ["```json\n", '{"a": 1', ",}\n```"])
    client = await router({**CONFIG, "plugins": {"response-healing": {}}})
    reply = await stream(client, fmt, provider, text="json please", **json_asked(fmt))
    assert reply.status == 200
    assert client_text(reply.text, fmt) == '{"a":1}'
    assert reply.log_line["response"]["content"][0]["text"] == '{"a":1}'
    assert reply.log_line["plugins"] == ["response-healing"]
    # Without a JSON request the stream is relayed as it came, token by token.
    reply = await stream(client, fmt, provider, text="chat")
    assert client_text(reply.text, fmt) == '```json\n{"a": 1,}\n```'
    assert reply.log_line["plugins"] == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("provider", ["oa", "an"])
async def test_moderation_ends_a_matching_stream_with_an_error_in_the_clients_format(
        router: Any, mock_providers: MockProviders, fmt: str, provider: str) -> None:
    mock_both(mock_providers, ["the key is ", "BEGIN RSA PRIV", "ATE KEY and more"])
    client = await router({**CONFIG, "plugins": {"moderation": {"output_patterns": ["BEGIN RSA PRIVATE KEY"]}}})
    reply = await stream(client, fmt, provider)
    assert reply.status == 200  # the stream had started
    message = "reply blocked by moderation output pattern 'BEGIN RSA PRIVATE KEY'"
    error = client_error(reply.text, fmt)
    assert error is not None and error["message"] == message
    assert error["type"] == "invalid_request_error"
    assert "ATE KEY" not in client_text(reply.text, fmt)
    line = reply.log_line
    assert (line["status"], line["error"]) == (400, message)
    assert line["response"]["content"][0]["text"] == client_text(reply.text, fmt)  # what the client got
    # A clean reply streams normally.
    mock_providers.mock.routes.clear()
    mock_both(mock_providers, ["all ", "fine"])
    reply = await stream(client, fmt, provider)
    assert client_text(reply.text, fmt) == "all fine" and client_error(reply.text, fmt) is None


async def test_moderation_output_pattern_on_a_complete_reply(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OA_URL, "here: BEGIN RSA PRIVATE KEY ...")
    client = await router({**CONFIG, "plugins": {"moderation": {"output_patterns": ["BEGIN RSA PRIVATE KEY"],
                                                                "output_message": "withheld by policy"}}})
    reply = await client.openai(openai_chat("key?", model="oa/m"))
    assert reply.status == 200
    assert reply.body["choices"][0]["message"]["content"] == "withheld by policy"
    assert reply.log_line["plugins"] == ["moderation"]


async def test_a_responses_api_stream_runs_through_the_transformers_too(
        router: Any, mock_providers: MockProviders) -> None:
    mock_both(mock_providers, ["hel", "lo"])
    client = await router({**CONFIG, "plugins": {"upper": {}}}, plugins={"upper": UpperPlugin()})
    reply = await client.post("/v1/responses", {"model": "oa/m", "input": "hi", "stream": True})
    assert reply.status == 200
    deltas = [data["delta"] for event, data in frames(reply.text)
              if isinstance(data, dict) and data.get("type") == "response.output_text.delta"]
    assert "".join(deltas) == "HELLO"
    assert reply.log_line["response"]["content"][0]["text"] == "HELLO"
