"""Test helpers and pytest fixtures for llmrouter and its plugin authors.

Installed as a pytest plugin (``pytest11`` entry point), so these fixtures are available in any
project that has llmrouter installed:

``router``
    An async factory: ``client = await router(config_dict, plugins={"my-id": my_module})`` builds
    the real aiohttp app (through pytest-aiohttp's ``aiohttp_client``) and returns a
    :class:`RouterClient` with helpers to send OpenAI- or Anthropic-shaped requests and read the
    events and log lines each request produced.
``mock_providers``
    A :class:`MockProviders` backed by respx (``respx.mock(using="httpx")``) that answers as an
    OpenAI-, Anthropic- or Ollama-format provider would, and records what was sent.

Helpers that drive one plugin component outside the server: :func:`run_transformer` (a stream
transformer), :func:`load_settings` (a plugin's settings, validated as at load),
:func:`drive_provider_format` and :func:`decode_stream` (a provider format through the router's
real provider code).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmrouter.config import Config, ProviderConfig, parse_config
from llmrouter.context import StreamTransformer
from llmrouter.engine.plugin_settings import SettingsSpec
from llmrouter.engine.registry import PluginRegistry, load_entry_point_plugins
from llmrouter.formats.provider import ProviderFormat
from llmrouter.jsonutil import dumps, loads
from llmrouter.models import ChatRequest, ChatResponse, StreamEvent
from llmrouter.observe.events import Event
from llmrouter.observe.logfiles import read_log

__all__ = ["FormatRun", "MockProviders", "Reply", "RouterClient", "anthropic_message", "decode_stream",
           "drive_provider_format", "installed_plugins", "load_settings", "make_config", "openai_chat",
           "run_transformer"]


def installed_plugins() -> PluginRegistry:
    """Every plugin installed in this environment, loaded exactly as ``llmrouter serve`` loads them
    (a plugin's own tests use it to check that its entry points resolve)."""
    return load_entry_point_plugins()


def make_config(data: Mapping[str, Any], tmp_path: Path | None = None) -> Config:
    """Build a :class:`Config` from a dict, defaulting the log into ``tmp_path`` (or disabling it)."""
    data = dict(data)
    logging_table = dict(data.get("logging", {}))
    if tmp_path is not None:
        logging_table.setdefault("path", str(tmp_path / "requests.jsonl"))
    else:
        logging_table.setdefault("enabled", False)
    data["logging"] = logging_table
    return parse_config(data, "<test config>")


def openai_chat(text: str = "hello", model: str = "gpt-test", **extra: Any) -> dict[str, Any]:
    """A minimal OpenAI Chat Completions request body."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def anthropic_message(text: str = "hello", model: str = "claude-test", **extra: Any) -> dict[str, Any]:
    """A minimal Anthropic Messages request body."""
    return {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}], **extra}


def run_transformer(transformer: StreamTransformer | None, events: Iterable[StreamEvent]) -> list[StreamEvent]:
    """Drive a stream transformer as the router does: ``feed`` every event in order, then ``finish``
    once; returns everything it passed on, in order. ``None`` (a hook that declined the stream)
    passes the events through unchanged."""
    events = list(events)
    if transformer is None:
        return events
    out: list[StreamEvent] = []
    for event in events:
        out.extend(transformer.feed(event) or ())
    out.extend(transformer.finish() or ())
    return out


@dataclass
class Reply:
    """One exchange as a test sees it: status, headers, parsed body (or raw SSE text), events, log line."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str
    events: list[Event] = field(default_factory=list)
    log_line: dict[str, Any] | None = None

    @property
    def request_id(self) -> str | None:
        """The ``X-Router-Request-Id`` header."""
        return self.headers.get("X-Router-Request-Id")

    @property
    def provider(self) -> str | None:
        """The ``X-Router-Provider`` header."""
        return self.headers.get("X-Router-Provider")


class RouterClient:
    """Wraps pytest-aiohttp's client for a router app, collecting bus events."""

    def __init__(self, client: Any, config: Config) -> None:
        self.client = client
        self.config = config
        from llmrouter.web.app import BUS, PIPELINE

        self.app = client.server.app
        self.pipeline = self.app[PIPELINE]
        self.subscription = self.app[BUS].subscribe(100_000)
        self.events: list[Event] = []

    def drain_events(self) -> list[Event]:
        """Move every queued bus event into :attr:`events` and return the new ones."""
        new = self.subscription.pending()
        self.events.extend(new)
        return new

    def events_for(self, request_id: str | None) -> list[Event]:
        """Events published for one request id, in order."""
        self.drain_events()
        return [e for e in self.events if e.get("id") == request_id]

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of the request log (waits for the writer to catch up)."""
        rlog = self.pipeline.request_log
        if rlog is None:
            return []
        rlog.wait_idle()
        try:
            return list(read_log(rlog.path))
        except FileNotFoundError:  # nothing written yet
            return []

    async def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """POST ``body`` (a dict is sent as JSON; bytes/str as-is) and collect the outcome."""
        data = body if isinstance(body, bytes | str) else dumps(body)
        hdrs = {"content-type": "application/json", **(headers or {})}
        resp = await self.client.post(path, data=data, headers=hdrs)
        text = await resp.text()
        try:
            parsed = loads(text) if "json" in resp.headers.get("content-type", "") else None
        except ValueError:
            parsed = None
        await asyncio.sleep(0)
        rid = resp.headers.get("X-Router-Request-Id")
        events = self.events_for(rid) if rid else []
        log_line = None
        if rid and self.pipeline.request_log is not None:
            log_line = next((line for line in self.log_lines() if line.get("id") == rid), None)
        return Reply(resp.status, resp.headers, parsed, text, events, log_line)

    async def openai(self, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Send an OpenAI Chat Completions request."""
        return await self.post("/v1/chat/completions", body, headers)

    async def anthropic(self, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Send an Anthropic Messages request."""
        return await self.post("/v1/messages", body, {"anthropic-version": "2023-06-01", **(headers or {})})


    async def responses(self, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """Send an OpenAI Responses API request."""
        return await self.post("/v1/responses", body, headers)


class MockProviders:
    """respx-backed fake providers. Each ``add_*`` returns the respx route (``.calls`` records requests)."""

    def __init__(self, mock: Any) -> None:
        self.mock = mock

    def sent_json(self, route: Any, index: int = -1) -> Any:
        """The JSON body of a call the router made to ``route``."""
        return loads(route.calls[index].request.content)

    def add_openai(self, base_url: str, text: str = "hi from openai", *, model: str = "gpt-upstream",
                   tool_calls: list[dict[str, Any]] | None = None, status: int = 200,
                   body: Any = None, stream_body: bytes | None = None) -> Any:
        """An OpenAI-format provider at ``base_url`` (which includes ``/v1``)."""
        payload = body if body is not None else {
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop",
                         "message": {"role": "assistant", "content": None if tool_calls else text,
                                     **({"tool_calls": tool_calls} if tool_calls else {})}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        self.mock.get(base_url.rstrip("/") + "/models").respond(json={"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "mock"}]})
        return self._route(base_url.rstrip("/") + "/chat/completions", status, payload, stream_body)

    def add_anthropic(self, base_url: str, text: str = "hi from anthropic", *, model: str = "claude-upstream",
                      content: list[dict[str, Any]] | None = None, status: int = 200, body: Any = None,
                      stream_body: bytes | None = None) -> Any:
        """An Anthropic-format provider at ``base_url`` (the root; ``/v1/messages`` is appended)."""
        blocks = content if content is not None else [{"type": "text", "text": text}]
        payload = body if body is not None else {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": blocks,
            "stop_reason": "tool_use" if any(b.get("type") == "tool_use" for b in blocks) else "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 6},
        }
        self.mock.get(url__startswith=base_url.rstrip("/") + "/v1/models").respond(json={
            "data": [{"type": "model", "id": model, "display_name": model, "created_at": "2026-01-01T00:00:00Z"}],
            "has_more": False, "first_id": model, "last_id": model})
        return self._route(base_url.rstrip("/") + "/v1/messages", status, payload, stream_body)

    def add_ollama(self, base_url: str, text: str = "hi from ollama", *, model: str = "llama-upstream",
                   status: int = 200, body: Any = None, stream_body: bytes | None = None,
                   capabilities: Mapping[str, list[str]] | None = None) -> Any:
        """An Ollama provider at ``base_url`` (the root; ``/api/chat`` is appended).

        ``capabilities`` maps model names to what ``POST /api/show`` reports for them (``/api/tags``
        then lists those models); models not in it get a 404 from ``/api/show``.
        """
        payload = body if body is not None else {
            "model": model, "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text}, "done": True, "done_reason": "stop",
            "prompt_eval_count": 8, "eval_count": 4,
        }
        names = list(capabilities) if capabilities else [model]
        self.mock.get(base_url.rstrip("/") + "/api/tags").respond(
            json={"models": [{"name": name, "model": name} for name in names]})
        if capabilities is not None:
            def show(request: httpx.Request) -> httpx.Response:
                name = loads(request.content).get("model")
                if name not in capabilities:
                    return httpx.Response(404, json={"error": f"model '{name}' not found"})
                return httpx.Response(200, json={"modelfile": "", "details": {}, "capabilities": capabilities[name]})

            self.mock.post(base_url.rstrip("/") + "/api/show").mock(side_effect=show)
        return self._route(base_url.rstrip("/") + "/api/chat", status, payload, stream_body)

    def add_responses(self, base_url: str, text: str = "hi from responses", *, model: str = "gpt-responses",
                      output: list[dict[str, Any]] | None = None, status: int = 200, body: Any = None,
                      stream_body: bytes | None = None) -> Any:
        """An ``openai-responses`` provider at ``base_url`` (which includes ``/v1``)."""
        items = output if output is not None else [{
            "id": "msg_mock", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        payload = body if body is not None else {
            "id": "resp_mock", "object": "response", "created_at": 1, "status": "completed", "model": model,
            "output": items, "usage": {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
                                       "output_tokens": 7, "total_tokens": 18}}
        self.mock.get(base_url.rstrip("/") + "/models").respond(json={"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "mock"}]})
        return self._route(base_url.rstrip("/") + "/responses", status, payload, stream_body)

    def _route(self, url: str, status: int, payload: Any, stream_body: bytes | None) -> Any:
        def respond(request: httpx.Request) -> httpx.Response:
            sent = loads(request.content)
            if sent.get("stream") and stream_body is not None:
                ctype = "application/x-ndjson" if url.endswith("/api/chat") else "text/event-stream"
                return httpx.Response(status, content=stream_body, headers={"content-type": ctype})
            return httpx.Response(status, json=payload)

        return self.mock.post(url).mock(side_effect=respond)


@pytest.fixture
def mock_providers() -> Iterator[MockProviders]:
    """respx-backed mock providers; unmatched upstream URLs fail the request (never the network)."""
    import respx

    with respx.mock(using="httpx", assert_all_called=False, assert_all_mocked=True) as mock:
        yield MockProviders(mock)


@pytest.fixture
async def router(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RouterClient]]]:
    """Factory fixture: build the router app for a config dict and return a :class:`RouterClient`."""
    from llmrouter.web.app import create_app

    async def make(config: Mapping[str, Any] | Config, *, plugins: Mapping[str, Any] | None = None,
                   environ: Mapping[str, str] | None = None, log: bool = True) -> RouterClient:
        cfg = config if isinstance(config, Config) else make_config(config, tmp_path if log else None)
        registry: PluginRegistry = load_entry_point_plugins()
        for plugin_id, plugin in (plugins or {}).items():
            registry.register(plugin, plugin_id)
        app = create_app(cfg, registry=registry, environ=environ if environ is not None else {})
        client = await aiohttp_client(app)
        return RouterClient(client, cfg)

    yield make


# -- driving plugin components -------------------------------------------------------------------
# One helper per kind of component a plugin can contribute, each running the router's own code
# around it (run_transformer, for stream transformers, is above).


def load_settings(plugin: Any, table: Mapping[str, Any] | None = None) -> Any:
    """``table`` validated against ``plugin``'s ``Settings`` exactly as the router does at load:
    the frozen settings object (or a read-only mapping for a plugin without ``Settings``).

    :raises ValueError: (``SettingsProblem``) naming the key and the problem.
    """
    return SettingsSpec.of(plugin).load(table or {})


@dataclass
class FormatRun:
    """What :func:`drive_provider_format` saw: the HTTP request sent, and the decoded reply."""

    sent: httpx.Request
    response: ChatResponse | None = None
    events: list[StreamEvent] = field(default_factory=list)

    @property
    def sent_json(self) -> Any:
        """The JSON body that was sent."""
        return loads(self.sent.content)


async def drive_provider_format(fmt: ProviderFormat, request: ChatRequest, reply: Any, *, model: str = "model",
                                stream: bool = False, status: int = 200, base_url: str = "http://upstream.test",
                                api_key: str | None = "test-key", headers: Mapping[str, str] | None = None,
                                content_type: str | None = None) -> FormatRun:
    """Send ``request`` through a real router provider speaking ``fmt`` to a fake upstream.

    The upstream answers every call with ``reply``: a JSON-able object, ``bytes`` (e.g. an SSE body
    for ``stream=True``) or a list of ``bytes`` chunks (delivered one by one, to exercise the
    decoder's buffering). Errors come out as the router raises them (``ProviderError`` with the
    mapped status, ``ProviderTimeout``).
    """
    from llmrouter.upstream.providers import Provider

    sent: list[httpx.Request] = []

    def respond(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        ctype = content_type or ("text/event-stream" if stream else "application/json")
        if isinstance(reply, list) and all(isinstance(c, bytes) for c in reply):
            return httpx.Response(status, stream=_Chunks(reply), headers={"content-type": ctype})
        if isinstance(reply, bytes):
            return httpx.Response(status, content=reply, headers={"content-type": ctype})
        return httpx.Response(status, json=reply)

    config = ProviderConfig(name="under-test", format=fmt.name, base_url=base_url, headers=dict(headers or {}),
                            api_key_env="UNUSED" if api_key else None)
    provider = Provider(config, api_key, fmt)
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as http:
        if stream:
            events = [event async for event in await provider.stream(request, model, http)]
            return FormatRun(sent[0] if sent else _NOTHING_SENT, events=events)
        response = await provider.complete(request, model, http)
        return FormatRun(sent[0] if sent else _NOTHING_SENT, response=response)


def decode_stream(fmt: ProviderFormat, chunks: Iterable[bytes]) -> list[StreamEvent]:
    """Feed ``chunks`` to one of ``fmt``'s stream decoders, then close it; every event, in order."""
    decoder = fmt.stream_decoder()
    events: list[StreamEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


_NOTHING_SENT = httpx.Request("GET", "http://nothing.sent/")
