"""Issue 9: conformance points a new user meets first (routing semantics, upstream failures mapped
to the right status and breaker, the same request checks on both endpoints).

Everything runs through the real aiohttp app with respx-mocked providers (or, for connection-level
failures, a real closed loopback port).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmrouter import Context, hookimpl
from llmrouter.jsonutil import loads
from llmrouter.testing import RouterClient, anthropic_message, openai_chat
from llmrouter.web.app import RELIABILITY
from tests.upstreams import openai_reply, openai_stream

A_URL, B_URL = "http://a.test/v1", "http://b.test/v1"
A_CHAT, B_CHAT = A_URL + "/chat/completions", B_URL + "/chat/completions"


def provider(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "format": "openai", "base_url": url, "discover": False, "max_retries": 0, **extra}


def ok(request: httpx.Request) -> httpx.Response:
    """An OpenAI reply naming the model it was asked for."""
    sent = loads(request.content)
    if sent.get("stream"):
        return httpx.Response(200, content=openai_stream({"model": sent["model"], "messages": []}),
                              headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=openai_reply({"model": sent["model"], "messages": []}))


def status(code: int, message: str | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": message or f"upstream said {code}"}}, headers=headers)


async def no_wait(client: RouterClient) -> None:
    """Backoff delays are recorded, not slept."""
    reliability = client.app[RELIABILITY]

    async def sleep(delay: float) -> None:
        return None

    reliability.sleep = sleep
    reliability.rand = lambda: 0.0


def sent_models(route: Any) -> list[str]:
    return [loads(call.request.content)["model"] for call in route.calls]


# -- routing semantics ----------------------------------------------------------------------------


async def test_prefix_without_rewrite_sends_the_requested_model_unchanged(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=ok)
    client = await router({"providers": [provider("a", A_URL)],
                           "routers": [{"type": "prefix", "model_prefix": "gpt-", "provider": "a"},
                                       {"type": "prefix", "model_prefix": "local/", "provider": "a",
                                        "strip_prefix": True}]})
    reply = await client.openai(openai_chat(model="gpt-4o-mini"))
    assert reply.status == 200 and reply.headers["X-Router-Model"] == "gpt-4o-mini"
    reply = await client.openai(openai_chat(model="local/qwen2.5:7b"))
    assert reply.status == 200 and reply.headers["X-Router-Model"] == "qwen2.5:7b"
    assert sent_models(a) == ["gpt-4o-mini", "qwen2.5:7b"]


@pytest.mark.parametrize("stream", [False, True])
async def test_each_failover_candidate_gets_the_model_its_own_rule_resolves(router: Any, mock_providers: Any,
                                                                             stream: bool) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(503))
    b = mock_providers.mock.post(B_CHAT).mock(return_value=status(503))
    c_url = "http://c.test/v1"
    c = mock_providers.mock.post(c_url + "/chat/completions").mock(side_effect=ok)
    config = {"providers": [provider("a", A_URL), provider("b", B_URL, quality=90), provider("c", c_url)],
              "routers": [{"type": "prefix", "model_prefix": "team/", "provider": "a", "rewrite_model": "model-a"},
                          {"type": "tag", "tag": "never", "provider": "c", "rewrite_model": "model-never"},
                          {"type": "fallback", "providers": ["b"]},
                          {"type": "fallback", "providers": ["c"], "rewrite_model": "model-c"}]}
    client = await router(config)
    await no_wait(client)
    body = openai_chat(model="team/x", stream=stream)
    reply = await client.openai(body)
    assert reply.status == 200 and reply.provider == "c"
    assert sent_models(a) == ["model-a"] and sent_models(b) == ["team/x"] and sent_models(c) == ["model-c"]
    assert reply.headers["X-Router-Model"] == "model-c"
    routed = [(e["provider"], e["model"]) for e in reply.events if e["type"] == "routed"]
    assert routed == [("a", "model-a"), ("b", "team/x"), ("c", "model-c")]
    assert [(x["provider"], x["model"]) for x in reply.log_line["attempts"]] == routed


async def test_failover_within_one_rule_uses_that_candidates_model(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    b = mock_providers.mock.post(B_CHAT).mock(side_effect=ok)
    client = await router({"providers": [provider("a", A_URL), provider("b", B_URL)],
                           "routers": [{"type": "random", "seed": 1, "candidates": [
                               {"provider": "a", "model": "model-a"}, {"provider": "b", "model": "model-b"}]}]})
    await no_wait(client)
    for _ in range(4):
        reply = await client.openai(openai_chat(model="any"))
        assert reply.status == 200 and reply.headers["X-Router-Model"] == "model-b"
    assert set(sent_models(a)) <= {"model-a"} and sent_models(b) == ["model-b"] * 4


# -- upstream status mapping ---------------------------------------------------------------------------

ONE_THEN_B = {"providers": [provider("a", A_URL, quality=90, max_retries=2), provider("b", B_URL, quality=50)],
              "routers": [{"type": "fallback", "providers": ["a", "b"], "quality_bias": 1}]}


@pytest.mark.parametrize("code, kind", [(400, "invalid_request_error"), (404, "not_found_error"),
                                        (413, "request_too_large"), (422, "invalid_request_error")])
async def test_client_fault_statuses_are_kept_never_retried_never_failed_over(
        router: Any, mock_providers: Any, code: int, kind: str) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(code, "model 'x' does not fit"))
    b = mock_providers.mock.post(B_CHAT).mock(side_effect=ok)
    client = await router(ONE_THEN_B)
    await no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == code and reply.body["error"]["message"] == f"provider 'a' returned {code}: model 'x' does not fit"
    assert reply.body["error"]["type"] == ("invalid_request_error" if code == 413 else kind)
    reply = await client.anthropic(anthropic_message())
    assert reply.status == code and reply.body["type"] == "error" and reply.body["error"]["type"] == kind
    assert "provider 'a'" in reply.body["error"]["message"]
    assert a.call_count == 2 and b.call_count == 0


@pytest.mark.parametrize("message", ["This model's maximum context length is 8192 tokens",
                                     "prompt is too long: 210000 tokens > 200000 maximum",
                                     "context_length_exceeded"])
async def test_context_length_exceeded_may_fail_over(router: Any, mock_providers: Any, message: str) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(400, message))
    mock_providers.mock.post(B_CHAT).mock(side_effect=ok)
    client = await router(ONE_THEN_B)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "b" and a.call_count == 1


async def test_429_after_retries_stays_429_with_retry_after(router: Any, mock_providers: Any) -> None:
    config = {**ONE_THEN_B, "routing": {"failover": False}}
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(429, "slow down", **{"Retry-After": "7"}))
    client = await router(config)
    await no_wait(client)
    reply = await client.anthropic(anthropic_message())
    assert reply.status == 429 and a.call_count == 3 and reply.headers["Retry-After"] == "7"
    assert reply.body["error"] == {"type": "rate_limit_error", "message": "provider 'a' returned 429: slow down"}
    a.return_value = status(429, "slow down")  # no Retry-After from upstream: the client still gets one
    reply = await client.openai(openai_chat())
    assert reply.status == 429 and int(reply.headers["Retry-After"]) >= 1
    assert reply.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("upstream", [status(401, "invalid x-api-key"), status(403, "forbidden"),
                                      status(500, "boom"), status(503, "overloaded"),
                                      httpx.Response(200, content=b"<html>proxy error</html>")])
async def test_router_side_faults_are_502_naming_the_provider(router: Any, mock_providers: Any,
                                                              upstream: httpx.Response) -> None:
    mock_providers.mock.post(A_CHAT).mock(return_value=upstream)
    client = await router({**ONE_THEN_B, "routing": {"failover": False}})
    await no_wait(client)
    for reply in (await client.openai(openai_chat()), await client.anthropic(anthropic_message())):
        assert reply.status == 502
        message = reply.body["error"]["message"]
        assert message.startswith("provider 'a' returned")
        if upstream.status_code != 200:
            assert loads(upstream.content)["error"]["message"] in message


async def test_a_read_timeout_is_504(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(side_effect=httpx.ReadTimeout("slow"))
    client = await router({**ONE_THEN_B, "routing": {"failover": False}})
    reply = await client.openai(openai_chat())
    assert reply.status == 504 and reply.body["error"]["message"].startswith("provider 'a' timed out")


def closed_port_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_connection_is_502_unreachable(router: Any, stream: bool) -> None:
    client = await router({"providers": [provider("a", closed_port_url(), max_retries=1)],
                           "routers": [{"type": "fallback"}]})
    await no_wait(client)
    reply = await client.openai(openai_chat(stream=stream))
    assert reply.status == 502, reply.text
    assert reply.body["error"]["message"].startswith("provider 'a' unreachable")
    assert [x["status"] for x in reply.log_line["attempts"]] == [None, None], "refused connections are retried"


async def cut_reply_server() -> tuple[Any, str]:
    """A loopback server that promises 1000 bytes of JSON, sends 20 and closes the connection."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                     b'{"id": "chatcmpl-1",')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def test_a_cut_reply_is_502_but_not_unreachable(router: Any) -> None:
    server, url = await cut_reply_server()
    async with server:
        client = await router({"providers": [provider("a", url)], "routers": [{"type": "fallback"}]})
        reply = await client.openai(openai_chat())
    assert reply.status == 502
    message = reply.body["error"]["message"]
    assert message.startswith("provider 'a'") and "unreachable" not in message and "timed out" not in message


# -- circuit breakers keyed by provider and upstream model ------------------------------------------------

BREAKER = {"providers": [provider("a", A_URL)], "routers": [{"type": "fallback"}],
           "routing": {"circuit_failures": 3, "circuit_cooldown_s": 60, "failover": False}}


async def test_one_failing_model_never_blocks_the_providers_other_models(router: Any, mock_providers: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return status(500, "model crashed") if loads(request.content)["model"] == "bad" else ok(request)

    mock_providers.mock.post(A_CHAT).mock(side_effect=answer)
    client = await router(BREAKER)
    good = []
    for _ in range(8):
        assert (await client.openai(openai_chat(model="bad"))).status in (502, 503)
        good.append((await client.openai(openai_chat(model="good"))).status)
    assert good == [200] * 8
    reply = await client.openai(openai_chat(model="bad"))
    assert reply.status == 503 and "Retry-After" in reply.headers
    health = await (await client.client.get("/health")).json()
    circuit = health["providers"]["a"]["circuit"]
    assert circuit["state"] == "closed" and health["providers"]["a"]["healthy"] is True
    assert circuit["models"]["bad"]["state"] == "open" and circuit["models"]["bad"]["key"] == "a/bad"
    assert "good" not in circuit["models"]
    client.drain_events()
    assert [(e["key"], e["state"]) for e in client.events if e["type"] == "circuit"] == [("a/bad", "open")]


async def test_connection_failures_open_the_breaker_for_every_model(router: Any) -> None:
    client = await router({**BREAKER, "providers": [provider("a", closed_port_url())]})
    for model in ("m1", "m2", "m3"):
        assert (await client.openai(openai_chat(model=model))).status == 502
    reply = await client.openai(openai_chat(model="never-tried"))
    assert reply.status == 503 and "circuit open" in reply.body["error"]["message"]
    client.drain_events()
    assert [(e["key"], e["state"]) for e in client.events if e["type"] == "circuit"] == [("a/*", "open")]


async def test_a_stream_that_breaks_after_its_first_byte_counts_as_a_failure(aiohttp_server: Any,
                                                                            router: Any) -> None:
    from tests.flaky_upstream import FlakyUpstream

    upstream = FlakyUpstream(["partial"] * 3)
    server = await aiohttp_server(upstream.app)
    client = await router({**BREAKER, "providers": [provider("a", str(server.make_url("/v1")))]})
    for _ in range(3):
        reply = await client.openai(openai_chat(model="m", stream=True))
        assert reply.status == 200 and "stream broke" in reply.text
    reply = await client.openai(openai_chat(model="m", stream=True))
    assert reply.status == 503 and upstream.calls == 3
    assert (await client.openai(openai_chat(model="other", stream=True))).status == 200


# -- the same request checks on every endpoint -----------------------------------------------------------


@pytest.mark.parametrize("endpoint, body, field", [
    ("anthropic", anthropic_message() | {"messages": []}, "messages"),
    ("openai", openai_chat() | {"messages": []}, "messages"),
    ("openai", openai_chat() | {"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
    ("anthropic", anthropic_message() | {"messages": [{"role": "system", "content": "be brief"}]}, "messages"),
    ("openai", openai_chat() | {"max_tokens": 0}, "max_tokens"),
    ("openai", openai_chat() | {"max_completion_tokens": -5}, "max_completion_tokens"),
    ("anthropic", anthropic_message() | {"max_tokens": 0}, "max_tokens"),
])
async def test_request_checks_apply_to_both_endpoints(router: Any, mock_providers: Any, endpoint: str,
                                                       body: dict[str, Any], field: str) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=ok)
    client = await router({"providers": [provider("a", A_URL)], "routers": [{"type": "fallback"}]})
    reply = await (client.anthropic(body) if endpoint == "anthropic" else client.openai(body))
    assert reply.status == 400 and a.call_count == 0, reply.text
    message = reply.body["error"]["message"]
    assert message.startswith(field) and "provider" not in message
    if endpoint == "anthropic":
        assert reply.body["type"] == "error" and reply.body["error"]["type"] == "invalid_request_error"


# -- plugin-facing types -------------------------------------------------------------------------------


class SystemPrompt:
    """on_start sets the system prompt the easy way; post_response replaces the reply with a string."""

    def __init__(self, value: Any) -> None:
        self.value = value

    @hookimpl
    def on_start(self, ctx: Context) -> None:
        ctx.request.system = self.value

    @hookimpl
    def post_response(self, ctx: Context) -> None:
        if ctx.settings.get("replace"):
            ctx.response.content = ctx.settings["replace"]  # type: ignore[union-attr]


@pytest.mark.parametrize("endpoint", ["openai", "anthropic"])
async def test_a_string_assigned_to_request_system_reaches_the_provider(router: Any, mock_providers: Any,
                                                                        endpoint: str) -> None:
    up = mock_providers.add_openai(A_URL)
    an = mock_providers.add_anthropic("http://an.test")
    client = await router({"providers": [provider("a", A_URL), {"name": "an", "format": "anthropic",
                                                                "base_url": "http://an.test", "discover": False}],
                           "routers": [{"type": "prefix", "model_prefix": "claude", "provider": "an"},
                                       {"type": "fallback", "providers": ["a"]}],
                           "plugins": {"sys": {"replace": "replaced"}}},
                          plugins={"sys": SystemPrompt("Answer in French.")})
    send = client.openai if endpoint == "openai" else client.anthropic
    reply = await send(openai_chat(model="gpt-x") if endpoint == "openai" else anthropic_message(model="gpt-x"))
    assert reply.status == 200, reply.text
    assert mock_providers.sent_json(up)["messages"][0] == {"role": "system", "content": "Answer in French."}
    text = reply.body["choices"][0]["message"]["content"] if endpoint == "openai" else reply.body["content"][0]["text"]
    assert text == "replaced"
    reply = await send(anthropic_message(model="claude-x") if endpoint == "anthropic" else openai_chat(model="claude-x"))
    assert reply.status == 200 and mock_providers.sent_json(an)["system"] in (
        "Answer in French.", [{"type": "text", "text": "Answer in French."}])


async def test_a_wrong_type_fails_at_assignment_naming_the_field(router: Any, mock_providers: Any) -> None:
    up = mock_providers.add_openai(A_URL)
    client = await router({"providers": [provider("a", A_URL)], "routers": [{"type": "fallback"}],
                           "plugins": {"sys": {}}}, plugins={"sys": SystemPrompt(42)})
    reply = await client.openai(openai_chat())
    assert reply.status == 500 and up.call_count == 0
    assert reply.body["error"]["message"] == (
        "plugin 'sys' failed: invalid ChatRequest.system: Input should be a valid list (got int)")


def test_plugin_hooks_doc_types_every_field_a_hook_may_change() -> None:
    from llmrouter.models import ChatRequest, ChatResponse, Message

    doc = (Path(__file__).resolve().parent.parent / "docs" / "plugin-hooks.md").read_text()
    section = doc.split("## Fields a hook may change", 1)[1].split("\n## ", 1)[0]
    for model in (ChatRequest, Message, ChatResponse):
        for name in model.model_fields:
            assert f"`{model.__name__}.{name}`" in section, f"{model.__name__}.{name} is not typed in the doc"
    assert "ctx.request.system = rules" in section


def test_the_system_prompt_example_in_the_doc_runs() -> None:
    from llmrouter.models import ChatRequest, Message, TextPart

    doc = (Path(__file__).resolve().parent.parent / "docs" / "plugin-hooks.md").read_text()
    section = doc.split("## Fields a hook may change", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "plugin-hooks.md", "exec"), namespace)
    for before, after in ((None, ["rules"]), ([TextPart(text="client")], ["rules", "client"]), ("", ["rules"])):
        request = ChatRequest(model="m", system=before, messages=[Message(role="user", content="hi")])
        ctx = Context(request=request, request_id="t", providers={}, settings={"rules": "rules"})
        namespace["on_start"](ctx)
        assert [p.text for p in ctx.request.system or []] == after


# -- docs -------------------------------------------------------------------------------------------------

MACHINE_SPECIFIC = re.compile(r"/work/|/root/|/opt/|/tmp/pytest|pypi-more|\bthis machine\b|\bthese (?:virtual )?machines\b",
                              re.IGNORECASE)
# llmrouter and the example plugin are not on a package index: installing them by bare name cannot
# work. (``pip install 'llmrouter[otel]'`` does, once llmrouter is installed: pip only adds the
# extra's dependencies.)
INDEX_INSTALL = re.compile(r"pip install (?:-U )?['\"]?llmrouter(?:-example-plugin)?['\"]?(?:\s|$)(?!@)")


def doc_pages() -> list[Path]:
    root = Path(__file__).resolve().parent.parent
    return [*sorted((root / "docs").glob("*.md")), root / "README.md",
            root / "examples" / "llmrouter-example-plugin" / "README.md"]


def test_docs_hold_no_machine_specific_text_and_install_from_a_checkout_or_git() -> None:
    for page in doc_pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not MACHINE_SPECIFIC.search(line), f"{page.name}:{number}: {line}"
            assert not INDEX_INSTALL.search(line), f"{page.name}:{number}: {line}"
    readme = doc_pages()[-2].read_text()
    assert "pip install ." in readme and "git+" in readme


def test_reliability_doc_agrees_with_config_doc_on_backoff() -> None:
    pages = {page.name: page.read_text() for page in doc_pages()}
    assert "not in the TOML config" not in pages["reliability.md"]
    for key in ("retry_backoff_base_s", "retry_backoff_max_s", "max_retry_after_s"):
        assert key in pages["reliability.md"] and key in pages["config.md"]


@pytest.mark.parametrize("code", [400, 404, 413, 422, 429, 502, 504])
async def test_replay_reproduces_a_logged_upstream_status(code: int) -> None:
    from llmrouter.cli.replay import replay
    from llmrouter.testing import make_config

    cfg = make_config({"providers": [provider("up", "http://127.0.0.1:9/v1")],
                       "routers": [{"type": "fallback", "providers": ["up"]}]})
    request = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    entry = {"type": "complete", "id": "r1", "provider": "up", "sent_model": "m", "tags": [], "status": code,
             "error": f"provider 'up' returned {code}: no", "response": None, "request": request}
    report = await replay([entry], cfg, environ={})
    assert [r.replayed.status for r in report.results] == [code] and report.differences == []


def test_watch_and_tui_show_the_circuit_key() -> None:
    from llmrouter.cli.tui import FeedState
    from llmrouter.cli.watch import format_event

    event = {"type": "circuit", "key": "a/gpt-x", "provider": "a", "model": "gpt-x", "state": "open",
             "consecutive_failures": 5}
    assert "a/gpt-x is now open (5 consecutive failures)" in format_event(event)
    state = FeedState()
    state.apply(event)
    state.apply({**event, "key": "a/*", "model": "*", "state": "half_open"})
    assert state.circuits == {"a/gpt-x": "open", "a/*": "half_open"}
