"""Upstream faults: retries with backoff and Retry-After, circuit breakers, failover down the router chain.

Unit tests drive :mod:`llmrouter.upstream.reliability` directly; the rest go through the real app, with respx
mocks for exact sequences and real loopback servers (``tests/flaky_upstream.py``) for slow first
bytes, dropped connections and mid-stream disconnects.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import pytest

from llmrouter import Context, Route, hookimpl
from llmrouter.config import parse_config
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.jsonutil import loads
from llmrouter.observe.events import EventBus
from llmrouter.testing import RouterClient, anthropic_message, openai_chat
from llmrouter.upstream.providers import Provider, ProviderConnectTimeout
from llmrouter.upstream.reliability import (
    CircuitBreaker,
    CircuitState,
    Reliability,
    RetryPolicy,
    Ticket,
    is_provider_fault,
    is_retryable,
    should_fail_over,
)
from llmrouter.web.app import RELIABILITY
from tests.flaky_upstream import FlakyUpstream, anthropic_overloaded_stream
from tests.upstreams import anthropic_stream, openai_reply, openai_stream

A_URL, B_URL = "http://a.test/v1", "http://b.test/v1"
A_CHAT, B_CHAT = A_URL + "/chat/completions", B_URL + "/chat/completions"


def provider(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "format": "openai", "base_url": url, "discover": False, "max_retries": 2, **extra}


# "a" is preferred (higher quality); "b" is the fallback rule's second choice.
TWO = {"providers": [provider("a", A_URL, quality=90), provider("b", B_URL, quality=50)],
       "routers": [{"type": "fallback", "providers": ["a", "b"], "quality_bias": 1}]}
# A prefix rule for "a/" models, then a fallback rule that only knows "b".
CHAIN = {"providers": [provider("a", A_URL), provider("b", B_URL)],
         "routers": [{"type": "prefix", "model_prefix": "a/", "provider": "a"},
                     {"type": "fallback", "providers": ["b"]}]}


def ok(text: str = "fine", model: str = "m") -> httpx.Response:
    body = openai_reply({"model": model, "messages": [{"role": "user", "content": "x"}]})
    body["choices"][0]["message"]["content"] = text
    return httpx.Response(200, json=body)


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"error": {"message": f"upstream said {code}"}}, headers=headers)


def sse_ok(model: str = "m") -> httpx.Response:
    return httpx.Response(200, content=openai_stream({"model": model, "messages": [{"role": "user"}]}),
                          headers={"content-type": "text/event-stream"})


class Sleeps:
    """Stands in for asyncio.sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def no_wait(client: RouterClient) -> Sleeps:
    """Make the client's router record backoff delays instead of sleeping; jitter fixed at its minimum."""
    reliability = client.app[RELIABILITY]
    sleeps = Sleeps()
    reliability.sleep = sleeps
    reliability.rand = lambda: 0.0
    return sleeps


def statuses(reply: Any) -> list[tuple[str, int | None]]:
    return [(a["provider"], a["status"]) for a in reply.log_line["attempts"]]


# -- unit: classification and backoff ---------------------------------------------------------------


@pytest.mark.parametrize("error, retry, fault, failover", [
    (ProviderError("p", "unreachable"), True, True, True),
    (ProviderConnectTimeout("p", "connect timeout"), True, True, True),
    (ProviderTimeout("p", "read timeout"), False, True, True),
    (ProviderError("p", "429", upstream_status=429), True, True, True),
    (ProviderError("p", "500", upstream_status=500), True, True, True),
    (ProviderError("p", "503", upstream_status=503), True, True, True),
    (ProviderError("p", "529", upstream_status=529), True, True, True),
    (ProviderError("p", "400", upstream_status=400), False, False, False),
    (ProviderError("p", "422", upstream_status=422), False, False, False),
    (ProviderError("p", "401", upstream_status=401), False, False, True),
    (ProviderError("p", "404", upstream_status=404), False, False, False),
    (ProviderError("p", "maximum context length is 8192 tokens", upstream_status=400), False, False, True),
    (ProviderError("p", "unreadable", upstream_status=200), False, True, True),
])
def test_classification(error: ProviderError, retry: bool, fault: bool, failover: bool) -> None:
    assert (is_retryable(error), is_provider_fault(error), should_fail_over(error)) == (retry, fault, failover)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=8.0)
    assert [policy.delay(n, None, 0.0) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.delay(n, None, 0.999999) for n in range(6)] == pytest.approx([0.5, 1, 2, 4, 8, 8], rel=1e-5)
    assert 0.375 == policy.delay(0, None, 0.5)


def test_retry_after_is_a_floor_and_too_long_a_wait_gives_up() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=8.0, max_retry_after_s=30.0)
    assert policy.delay(0, 3.0, 0.0) == 3.0
    assert policy.delay(3, 1.0, 0.0) == 2.0  # backoff is longer than Retry-After
    assert policy.delay(0, 30.0, 0.0) == 30.0
    assert policy.delay(0, 31.0, 0.0) is None


# -- unit: the breaker --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_success_resets_the_count() -> None:
    changes: list[str] = []
    breaker = CircuitBreaker("p", 3, 10.0, clock=Clock(), on_change=lambda b: changes.append(str(b.state)))
    for _ in range(2):
        breaker.failure(breaker.acquire())  # type: ignore[arg-type]
    breaker.success(breaker.acquire())  # type: ignore[arg-type]
    assert breaker.failures == 0 and breaker.state is CircuitState.CLOSED
    for _ in range(3):
        breaker.failure(breaker.acquire())  # type: ignore[arg-type]
    assert breaker.state is CircuitState.OPEN and changes == ["open"]
    assert breaker.acquire() is None and not breaker.ready()


def test_breaker_half_opens_for_one_probe_after_the_cooldown() -> None:
    clock = Clock()
    changes: list[str] = []
    breaker = CircuitBreaker("p", 1, 10.0, clock=clock, on_change=lambda b: changes.append(str(b.state)))
    breaker.failure(breaker.acquire())  # type: ignore[arg-type]
    clock.now += 9.9
    assert breaker.acquire() is None and breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.ready()
    probe = breaker.acquire()
    assert probe is Ticket.PROBE and breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() is None, "only one probe at a time"
    breaker.failure(probe)
    assert breaker.state is CircuitState.OPEN and breaker.acquire() is None
    clock.now += 10
    probe = breaker.acquire()
    breaker.abandon(probe)  # type: ignore[arg-type]  # the probing request was cancelled
    probe = breaker.acquire()
    assert probe is Ticket.PROBE
    breaker.success(probe)
    assert breaker.state is CircuitState.CLOSED and breaker.failures == 0
    assert changes == ["open", "half_open", "open", "half_open", "closed"]


def test_breaker_ignores_outcomes_of_attempts_started_before_it_opened() -> None:
    breaker = CircuitBreaker("p", 1, 10.0, clock=Clock())
    early = breaker.acquire()
    breaker.failure(breaker.acquire())  # type: ignore[arg-type]
    breaker.success(early)  # type: ignore[arg-type]
    assert breaker.state is CircuitState.OPEN


def test_reliability_publishes_circuit_events_and_health() -> None:
    config = parse_config({**TWO, "routing": {"circuit_failures": 1}})
    bus = EventBus()
    subscription = bus.subscribe()
    reliability = Reliability(config, {p.name: Provider(p) for p in config.providers}, bus)
    model = reliability.circuits.model_breaker("a", "m1")
    model.failure(model.acquire())  # type: ignore[arg-type]
    event = subscription.pending()[0]
    assert {k: event[k] for k in ("type", "key", "provider", "model", "state", "consecutive_failures")} == {
        "type": "circuit", "key": "a/m1", "provider": "a", "model": "m1", "state": "open",
        "consecutive_failures": 1}
    assert reliability.health == {} and reliability.blocked() == frozenset(), "other models of 'a' still go"
    assert reliability.model_blocked("a", "m1") and not reliability.model_blocked("a", "m2")
    assert reliability.snapshot()["a"]["models"]["m1"]["state"] == "open"
    connection = reliability.circuits.connections["a"]
    connection.failure(connection.acquire())  # type: ignore[arg-type]
    event = subscription.pending()[0]
    assert (event["key"], event["model"], event["state"]) == ("a/*", "*", "open")
    assert isinstance(event["ts_ms"], int)
    assert reliability.health == {"a": False}
    assert reliability.blocked() == {"a"}
    assert reliability.snapshot()["a"]["state"] == "open" and reliability.snapshot()["b"]["state"] == "closed"


# -- retries (respx) ---------------------------------------------------------------------------------------


async def test_5xx_is_retried_with_backoff_then_succeeds(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post(A_CHAT).mock(side_effect=[status(503), status(502), ok("third time")])
    client = await router(TWO)
    sleeps = no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.body["choices"][0]["message"]["content"] == "third time"
    assert route.call_count == 3 and reply.provider == "a"
    assert sleeps.delays == [0.25, 0.5]
    assert statuses(reply) == [("a", 503), ("a", 502), ("a", 200)]
    attempts = reply.log_line["attempts"]
    assert attempts[0]["retry_in_ms"] == 250 and attempts[0]["error"] == "provider 'a' returned 503: upstream said 503"
    assert all(isinstance(a["duration_ms"], float) for a in attempts) and attempts[2]["error"] is None
    complete = [e for e in reply.events if e["type"] == "complete"][0]
    assert complete["attempts"] == attempts


async def test_connect_errors_and_connect_timeouts_are_retried(router: Any, mock_providers: Any) -> None:
    route = mock_providers.mock.post(A_CHAT).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.ConnectTimeout("slow handshake"), ok()])
    client = await router(TWO)
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and route.call_count == 3
    assert statuses(reply) == [("a", None), ("a", None), ("a", 200)]
    assert client.app[RELIABILITY].circuits.connections["a"].failures == 0, "the success reset the count"


@pytest.mark.parametrize("code", [400, 401, 404, 422])
async def test_4xx_is_never_retried(router: Any, mock_providers: Any, code: int) -> None:
    route = mock_providers.mock.post(A_CHAT).mock(side_effect=[status(code), ok()])
    mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router({**TWO, "routing": {"failover": False}})
    sleeps = no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == (502 if code == 401 else code) and route.call_count == 1 and sleeps.delays == []
    assert reply.body["error"]["message"] == f"provider 'a' returned {code}: upstream said {code}"


async def test_bad_request_does_not_fail_over_but_a_bad_key_does(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(side_effect=[status(400), status(401)])
    b = mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(TWO)
    no_wait(client)
    assert (await client.openai(openai_chat())).status == 400 and b.call_count == 0
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "b" and statuses(reply) == [("a", 401), ("b", 200)]


async def test_read_timeout_is_not_retried_but_fails_over(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=httpx.ReadTimeout("slow"))
    mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(TWO)
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "b" and a.call_count == 1
    assert statuses(reply) == [("a", None), ("b", 200)]
    assert "timed out" in reply.log_line["attempts"][0]["error"]


async def test_429_honours_retry_after_seconds_and_http_dates(router: Any, mock_providers: Any) -> None:
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    mock_providers.mock.post(A_CHAT).mock(side_effect=[status(429, **{"Retry-After": "3"}),
                                                       status(429, **{"Retry-After": soon}), ok()])
    client = await router(TWO)
    sleeps = no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and statuses(reply) == [("a", 429), ("a", 429), ("a", 200)]
    assert sleeps.delays[0] == 3.0
    assert 3.5 < sleeps.delays[1] <= 5.0


async def test_too_long_a_retry_after_is_not_waited_for(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(429, **{"Retry-After": "3600"}))
    mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(TWO)
    sleeps = no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "b" and a.call_count == 1 and sleeps.delays == []


async def test_max_retries_bounds_the_attempts(router: Any, mock_providers: Any) -> None:
    config = {**TWO, "providers": [provider("a", A_URL, quality=90, max_retries=4), provider("b", B_URL)],
              "routing": {"failover": False, "circuit_failures": 100}}
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    client = await router(config)
    sleeps = no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 502 and a.call_count == 5 and len(sleeps.delays) == 4
    assert reply.body["error"]["message"] == "provider 'a' returned 500: upstream said 500"


# -- failover ---------------------------------------------------------------------------------------


async def test_fails_over_to_the_rules_next_candidate_after_retries(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    b = mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(TWO)
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.body["choices"][0]["message"]["content"] == "from b"
    assert reply.provider == "b" and reply.log_line["provider"] == "b"
    assert a.call_count == 3 and b.call_count == 1
    assert statuses(reply) == [("a", 500), ("a", 500), ("a", 500), ("b", 200)]
    routed = [e for e in reply.events if e["type"] == "routed"]
    assert [(e["provider"], e.get("failover_from")) for e in routed] == [("a", None), ("b", "a")]


async def test_failover_continues_the_chain_after_the_matching_rule(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(return_value=status(503))
    b = mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(CHAIN)
    no_wait(client)
    reply = await client.anthropic(anthropic_message(model="a/small"))
    assert reply.status == 200 and reply.provider == "b"
    assert [(a["provider"], a["model"]) for a in reply.log_line["attempts"]][::3] == [("a", "a/small"), ("b", "a/small")]
    assert loads(b.calls[0].request.content)["model"] == "a/small"


async def test_failover_off_returns_the_providers_error(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    b = mock_providers.mock.post(B_CHAT).mock(return_value=ok())
    client = await router({**TWO, "routing": {"failover": False}})
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 502 and reply.provider == "a" and b.call_count == 0


async def test_when_every_provider_fails_the_last_error_is_returned(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    mock_providers.mock.post(B_CHAT).mock(side_effect=httpx.ReadTimeout("slow"))
    client = await router(TWO)
    no_wait(client)
    reply = await client.anthropic(anthropic_message())
    assert reply.status == 504 and reply.provider == "b"
    assert reply.body["error"]["type"] == "timeout_error"
    assert statuses(reply) == [("a", 500)] * 3 + [("b", None)]
    assert reply.log_line["status"] == 504


async def test_a_forced_provider_does_not_fail_over(router: Any, mock_providers: Any) -> None:
    class Force:
        @hookimpl
        def pre_request(self, ctx: Context) -> None:
            ctx.request.forced_provider = "a"

    mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    b = mock_providers.mock.post(B_CHAT).mock(return_value=ok())
    client = await router({**TWO, "plugins": {"force": {}}}, plugins={"force": Force()})
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 502 and b.call_count == 0


# -- circuit breaker through the app ---------------------------------------------------------------------


class HealthSpy:
    """A router rule that records what it sees of provider health, then passes."""

    def __init__(self) -> None:
        self.seen: list[dict[str, bool]] = []

    @hookimpl
    def route(self, ctx: Context) -> Route | None:
        self.seen.append({name: info.healthy for name, info in ctx.providers.items()})
        return None


async def test_open_circuit_skips_the_provider_and_shows_in_health_and_events(router: Any,
                                                                             mock_providers: Any) -> None:
    spy = HealthSpy()
    config = {**TWO, "routers": [{"type": "spy"}, *TWO["routers"]],
              "providers": [provider("a", A_URL, quality=90, max_retries=0), provider("b", B_URL)],
              "routing": {"circuit_failures": 2, "circuit_cooldown_s": 60}}
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=httpx.ConnectError("refused"))
    mock_providers.mock.post(B_CHAT).mock(return_value=ok("from b"))
    client = await router(config, plugins={"spy": spy})
    for _ in range(2):
        assert (await client.openai(openai_chat())).provider == "b"
    assert a.call_count == 2
    reply = await client.openai(openai_chat(model="another-model"))
    assert reply.status == 200 and reply.provider == "b" and a.call_count == 2, "open circuit: 'a' is skipped"
    assert statuses(reply) == [("b", 200)]
    assert spy.seen[0] == {"a": True, "b": True} and spy.seen[-1] == {"a": False, "b": True}
    health = await (await client.client.get("/health")).json()
    circuit = health["providers"]["a"]["circuit"]
    assert circuit["state"] == "open" and circuit["consecutive_failures"] == 2 and 0 < circuit["retry_in_s"] <= 60
    assert circuit["key"] == "a/*"
    assert health["providers"]["a"]["healthy"] is False
    assert health["providers"]["b"]["circuit"] == {"key": "b/*", "model": "*", "state": "closed",
                                                   "consecutive_failures": 0, "models": {}}
    client.drain_events()
    circuits = [e for e in client.events if e["type"] == "circuit"]
    assert [(e["key"], e["state"]) for e in circuits] == [("a/*", "open")]


async def test_all_circuits_open_is_a_503_with_retry_after(router: Any, mock_providers: Any) -> None:
    config = {"providers": [provider("a", A_URL, max_retries=0)], "routers": [{"type": "fallback"}],
              "routing": {"circuit_failures": 1, "circuit_cooldown_s": 30}}
    a = mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    client = await router(config)
    assert (await client.openai(openai_chat())).status == 502
    reply = await client.openai(openai_chat())
    assert reply.status == 503 and a.call_count == 1
    assert "circuit open" in reply.body["error"]["message"] and reply.body["error"]["code"] == "circuit_open"
    assert 29 <= int(reply.headers["Retry-After"]) <= 30
    reply = await client.anthropic(anthropic_message(model="gpt-test"))
    assert reply.status == 503 and reply.body["error"]["type"] == "overloaded_error"
    assert reply.log_line["status"] == 503
    a.return_value = ok()
    reply = await client.anthropic(anthropic_message(model="claude-test"))
    assert reply.status == 200, "the circuit is the model's: another model of 'a' is still served"


@pytest.mark.parametrize("probe_ok, states", [(True, ["open", "half_open", "closed"]),
                                              (False, ["open", "half_open", "open"])])
async def test_half_open_probe_after_cooldown(router: Any, mock_providers: Any, probe_ok: bool,
                                              states: list[str]) -> None:
    config = {"providers": [provider("a", A_URL, max_retries=3)], "routers": [{"type": "fallback"}],
              "routing": {"circuit_failures": 1, "circuit_cooldown_s": 0.2}}
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=[status(500), ok() if probe_ok else status(500)])
    client = await router(config)
    no_wait(client)
    assert (await client.openai(openai_chat())).status == 502 and a.call_count == 1, "circuit open: no retry"
    assert (await client.openai(openai_chat())).status == 503, "still cooling down"
    await asyncio.sleep(0.25)
    reply = await client.openai(openai_chat())
    assert reply.status == (200 if probe_ok else 502) and a.call_count == 2, "one probe, not retried"
    client.drain_events()
    assert [e["state"] for e in client.events if e["type"] == "circuit"] == states


# -- streams -------------------------------------------------------------------------------------------


async def test_stream_retried_before_the_first_byte(router: Any, mock_providers: Any) -> None:
    a = mock_providers.mock.post(A_CHAT).mock(side_effect=[status(503), httpx.ConnectError("refused"), sse_ok()])
    client = await router(TWO)
    no_wait(client)
    reply = await client.openai(openai_chat(stream=True))
    assert reply.status == 200 and a.call_count == 3 and reply.provider == "a"
    assert "It is sunny in Paris." == "".join(
        loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in reply.text.splitlines() if line.startswith("data: {") and loads(line[6:])["choices"])
    assert statuses(reply) == [("a", 503), ("a", None), ("a", 200)]


async def test_stream_fails_over_and_names_the_provider_that_answered(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(A_CHAT).mock(return_value=status(500))
    mock_providers.mock.post(B_CHAT).mock(return_value=sse_ok())
    client = await router(TWO)
    no_wait(client)
    reply = await client.anthropic(anthropic_message(stream=True))
    assert reply.status == 200 and reply.provider == "b" and "event: message_stop" in reply.text
    assert reply.log_line["provider"] == "b"


async def test_error_event_in_place_of_the_first_event_is_retried(router: Any, mock_providers: Any) -> None:
    url = "http://claude.test/v1/messages"
    body = {"model": "c", "messages": [{"role": "user", "content": "x"}]}
    route = mock_providers.mock.post(url).mock(side_effect=[
        httpx.Response(200, content=anthropic_overloaded_stream(), headers={"content-type": "text/event-stream"}),
        httpx.Response(200, content=anthropic_stream(body), headers={"content-type": "text/event-stream"})])
    config = {"providers": [{"name": "c", "format": "anthropic", "base_url": "http://claude.test", "discover": False}],
              "routers": [{"type": "fallback"}]}
    client = await router(config)
    no_wait(client)
    reply = await client.anthropic(anthropic_message(stream=True))
    assert reply.status == 200 and route.call_count == 2 and "sunny" in reply.text
    assert statuses(reply) == [("c", 529), ("c", 200)]


# -- real loopback servers that misbehave ----------------------------------------------------------------


async def flaky_pair(aiohttp_server: Any, router: Any, a: FlakyUpstream, b: FlakyUpstream,
                     **provider_extra: Any) -> RouterClient:
    servers = [await aiohttp_server(up.app) for up in (a, b)]
    config = {"providers": [provider(name, str(server.make_url("/v1")), quality=q, **provider_extra)
                            for name, server, q in zip("ab", servers, (90, 50), strict=True)],
              "routers": TWO["routers"]}
    return await router(config)


async def test_slow_first_byte_fails_over(aiohttp_server: Any, router: Any) -> None:
    a, b = FlakyUpstream(["stall_stream", "stall"], stall_s=2.0), FlakyUpstream()
    client = await flaky_pair(aiohttp_server, router, a, b, timeout_first_byte_s=0.2)
    started = time.perf_counter()
    reply = await client.openai(openai_chat(stream=True))
    assert reply.status == 200 and reply.provider == "b" and "sunny" in reply.text
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "b"
    assert a.calls == 2 and time.perf_counter() - started < 1.5, "timeouts are not retried on the same provider"
    assert reply.log_line["attempts"][0]["error"].startswith("provider 'a' timed out")


async def test_503_burst_then_recovery(aiohttp_server: Any, router: Any) -> None:
    a, b = FlakyUpstream([("status", 503), ("status", 503), "ok"]), FlakyUpstream()
    client = await flaky_pair(aiohttp_server, router, a, b)
    no_wait(client)
    reply = await client.openai(openai_chat())
    assert reply.status == 200 and reply.provider == "a" and a.calls == 3 and b.calls == 0


async def test_429_retry_after_is_waited_for_in_real_time(aiohttp_server: Any, router: Any) -> None:
    a, b = FlakyUpstream([("status", 429, {"Retry-After": "1"}), "ok"]), FlakyUpstream()
    client = await flaky_pair(aiohttp_server, router, a, b)
    client.app[RELIABILITY].policy = RetryPolicy(base_s=0.01)
    started = time.perf_counter()
    reply = await client.openai(openai_chat())
    elapsed = time.perf_counter() - started
    assert reply.status == 200 and reply.provider == "a" and a.calls == 2
    assert 1.0 <= elapsed < 2.5


async def test_dropped_connection_is_retried(aiohttp_server: Any, router: Any) -> None:
    a, b = FlakyUpstream(["drop", "drop", "ok"]), FlakyUpstream()
    client = await flaky_pair(aiohttp_server, router, a, b)
    no_wait(client)
    reply = await client.openai(openai_chat(stream=True))
    assert reply.status == 200 and reply.provider == "a" and a.calls == 3 and "sunny" in reply.text


async def test_no_retry_once_the_stream_has_started(aiohttp_server: Any, router: Any) -> None:
    a, b = FlakyUpstream(["partial", "ok"]), FlakyUpstream()
    client = await flaky_pair(aiohttp_server, router, a, b)
    no_wait(client)
    reply = await client.openai(openai_chat(stream=True))
    assert reply.status == 200 and reply.provider == "a"
    assert a.calls == 1 and b.calls == 0, "bytes reached the client: no retry, no failover"
    assert "It is " in reply.text and "stream broke" in reply.text and "[DONE]" not in reply.text
    assert reply.log_line["status"] == 502 and statuses(reply) == [("a", 200)]


def test_retry_policy_comes_from_routing_config() -> None:
    from llmrouter.config import parse_config
    from llmrouter.observe.events import EventBus
    from llmrouter.upstream.providers import build_providers
    from llmrouter.upstream.reliability import Reliability

    config = parse_config({"providers": [{"name": "e", "format": "echo"}],
                           "routing": {"retry_backoff_base_s": 0.1, "retry_backoff_max_s": 0.4,
                                       "max_retry_after_s": 2}})
    policy = Reliability(config, build_providers(config, {}), EventBus()).policy
    assert (policy.base_s, policy.max_s, policy.max_retry_after_s) == (0.1, 0.4, 2)
    assert policy.delay(5, None, 0.999) <= 0.4
    assert policy.delay(0, 3.0, 0.0) is None
