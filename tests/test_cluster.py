"""Shared state in a real Redis: several router apps in one test process, each its own cluster node.

Every node here is a full app (``create_app``) served on loopback through pytest-aiohttp; they share
one ``redis-server`` started by ``tests/conftest.py``. Providers are the offline ``echo`` format,
a loopback port nothing listens on (a provider that always fails), and a loopback upstream that
counts model-list queries. Processes (``llmrouter serve``, ``--workers 2``) are in
``tests/test_cluster_processes.py``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from llmrouter.config import ConfigError, parse_config
from llmrouter.observe.events import Event, Subscription
from llmrouter.testing import openai_chat
from llmrouter.web.app import BUS, CLUSTER, LIVE, create_app
from tests.conftest import RedisServer, free_port

Predicate = Callable[[], bool]


async def until(predicate: Predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def cluster_config(redis_url: str, dead_port: int, **cluster: Any) -> dict[str, Any]:
    return {
        "logging": {"enabled": False},
        "routing": {"circuit_failures": 1, "circuit_cooldown_s": 60, "failover": False},
        "cluster": {"redis_url": redis_url, "reconnect_max_s": 0.3, **cluster},
        "providers": [
            {"name": "echo", "format": "echo", "models": ["echo-1"]},
            {"name": "dead", "format": "openai", "base_url": f"http://127.0.0.1:{dead_port}/v1",
             "discover": False, "max_retries": 0},
        ],
        "routers": [{"type": "prefix", "model_prefix": "dead/", "provider": "dead"},
                    {"type": "fallback", "providers": ["echo"]}],
    }


Node = tuple[Any, web.Application]  # (test client, app)
MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
def make_node(aiohttp_client: Any, redis_url: str) -> MakeNode:
    dead_port = free_port()

    async def make(**cluster: Any) -> Node:
        app = create_app(parse_config(cluster_config(redis_url, dead_port, **cluster), "cluster.toml"))
        client = await aiohttp_client(app)
        await until(lambda: app[CLUSTER].node.connected, what="the node to join Redis")  # type: ignore[attr-defined]
        return client, app

    return make


def events_of(sub: Subscription, request_id: str) -> list[Event]:
    return [e for e in sub.pending() if e.get("id") == request_id]


async def collect(sub: Subscription, request_id: str, want: int, timeout_s: float = 10.0) -> list[Event]:
    """Events for ``request_id`` until ``want`` of them arrived."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"only {got} arrived for {request_id}")
        try:
            event = await asyncio.wait_for(sub.get(), remaining)
        except TimeoutError:
            continue
        if event.get("id") == request_id:
            got.append(event)
    return got


async def chat(client: Any, model: str = "echo-1", text: str = "hello") -> tuple[int, str]:
    resp = await client.post("/v1/chat/completions", json=openai_chat(text, model=model))
    await resp.read()
    return resp.status, resp.headers["X-Router-Request-Id"]


def test_cluster_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"\[cluster\] key 'redis_url'"):
        parse_config({"cluster": {"redis_url": "http://localhost:6379"}}, "bad.toml")
    assert parse_config({}).cluster.redis_url is None


def test_without_a_cluster_redis_is_never_imported() -> None:
    code = ("import sys; from llmrouter.web.app import create_app; from llmrouter.config import load_config; "
            "app = create_app(load_config()); assert 'redis' not in sys.modules, 'redis imported'; "
            "from llmrouter.web.app import CLUSTER; assert CLUSTER not in app")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_request_through_a_appears_on_b_in_order_and_once(make_node: MakeNode) -> None:
    (client_a, app_a), (_, app_b) = await make_node(), await make_node()
    sub_a, sub_b = app_a[BUS].subscribe(1000), app_b[BUS].subscribe(1000)
    status, rid = await chat(client_a)
    assert status == 200
    on_b = await collect(sub_b, rid, 4)
    assert [e["type"] for e in on_b] == ["start", "classified", "routed", "complete"]
    assert on_b[-1]["response"]["content"][0]["text"] == "hello"
    assert on_b[0]["node"] == app_a[CLUSTER].node.node_id  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)  # anything echoed back would have arrived by now
    assert events_of(sub_b, rid) == []
    assert [e["type"] for e in events_of(sub_a, rid)] == ["start", "classified", "routed", "complete"]


async def test_large_bodies_cross_the_cluster_without_request_and_response(make_node: MakeNode) -> None:
    (client_a, _), (_, app_b) = await make_node(event_body_limit_kb=4), await make_node()
    sub_b = app_b[BUS].subscribe(1000)
    status, rid = await chat(client_a, text="x" * 10_000)
    assert status == 200
    complete = (await collect(sub_b, rid, 4))[-1]
    assert complete["bodies_omitted"] is True and "request" not in complete and "response" not in complete
    assert complete["status"] == 200 and complete["provider"] == "echo"


async def test_another_nodes_request_is_fetched_whole_only_if_its_body_crossed(make_node: MakeNode) -> None:
    (client_a, _), (client_b, app_b) = await make_node(event_body_limit_kb=4), await make_node()
    sub_b = app_b[BUS].subscribe(1000)
    _, small = await chat(client_a, text="small one")
    _, big = await chat(client_a, text="x" * 10_000)
    await collect(sub_b, big, 4)
    got = await client_b.get(f"/dashboard/requests/{small}")
    assert got.status == 200 and (await got.json())["messages"][-1]["content"] == "small one"
    missing = await client_b.get(f"/dashboard/requests/{big}")
    assert missing.status == 404 and "another node" in (await missing.json())["error"]["message"]


async def test_a_provider_failing_through_a_is_open_on_b(make_node: MakeNode) -> None:
    (client_a, _), (client_b, _) = await make_node(), await make_node()
    status, _ = await chat(client_a, model="dead/x")
    assert status in (502, 504)  # refused or timed out: a provider fault either way

    async def circuit_on_b() -> dict[str, Any]:
        resp = await client_b.get("/health")
        return (await resp.json())["providers"]["dead"]["circuit"]

    deadline = time.monotonic() + 10
    while (circuit := await circuit_on_b())["state"] != "open":
        assert time.monotonic() < deadline, circuit
        await asyncio.sleep(0.05)
    assert 50 < circuit["retry_in_s"] <= 60
    # B routes around it without trying it: the chain falls through to the next rule.
    resp = await client_b.post("/v1/chat/completions", json=openai_chat("hi", model="dead/x"))
    assert resp.status == 200 and resp.headers["X-Router-Provider"] == "echo"
    # A node joining later starts from the shared state.
    client_c, _ = await make_node()
    resp = await client_c.get("/health")
    assert (await resp.json())["providers"]["dead"]["circuit"]["state"] == "open"


async def test_a_node_joining_later_sees_recent_traffic(make_node: MakeNode) -> None:
    client_a, _ = await make_node()
    _, rid = await chat(client_a, text="earlier")
    await asyncio.sleep(0.3)  # the complete event reaches Redis's history list
    _, app_b = await make_node()
    assert rid in [e["id"] for e in app_b[BUS].recent(50)]


async def test_discovered_models_are_shared(aiohttp_client: Any, aiohttp_server: Any, redis_url: str) -> None:
    queries: list[str] = []

    async def tags(request: web.Request) -> web.Response:
        queries.append(request.path)
        return web.json_response({"models": [{"name": "m-1", "model": "m-1"}]})

    async def show(request: web.Request) -> web.Response:
        queries.append(request.path)
        return web.json_response({"capabilities": ["completion", "tools"]})

    upstream = web.Application()
    upstream.router.add_get("/api/tags", tags)
    upstream.router.add_post("/api/show", show)
    server = await aiohttp_server(upstream)
    config = {"logging": {"enabled": False}, "cluster": {"redis_url": redis_url},
              "providers": [{"name": "up", "format": "ollama", "base_url": f"http://127.0.0.1:{server.port}",
                             "discover_interval_s": 300}],
              "routers": [{"type": "discover", "provider": "up"}]}
    apps = []
    for _ in range(3):
        app = create_app(parse_config(config, "models.toml"))
        client = await aiohttp_client(app)
        apps.append((client, app))
        await until(lambda app=app: "up" in app[LIVE].current.discovery.models, what="models discovered")
    # The 2nd and 3rd node used the fresh list (and capabilities) the 1st shared.
    assert queries == ["/api/tags", "/api/show"]
    for client, app in apps:
        resp = await client.get("/health")
        assert (await resp.json())["providers"]["up"]["models"] == ["m-1"]
        assert app[LIVE].current.discovery.capabilities["up"] == {"m-1": frozenset({"completion", "tools"})}


async def test_redis_outage_keeps_serving_then_rejoins(make_node: MakeNode, redis_server: RedisServer,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmrouter.cluster")
    (client_a, app_a), (client_b, app_b) = await make_node(), await make_node()
    node_a, node_b = app_a[CLUSTER].node, app_b[CLUSTER].node  # type: ignore[attr-defined]
    sub_b = app_b[BUS].subscribe(1000)
    redis_server.stop()
    await until(lambda: not node_a.connected and not node_b.connected, what="both nodes to notice")
    during = []
    for i in range(5):
        for client in (client_a, client_b):
            status, rid = await chat(client, text=f"during {i}")
            assert status == 200
            during.append(rid)
    assert any("unreachable" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    redis_server.start()
    await until(lambda: node_a.connected and node_b.connected, timeout_s=15, what="both nodes to rejoin")
    assert any("rejoined" in r.getMessage() for r in caplog.records)
    status, after = await chat(client_a, text="after")
    received: list[Event] = []
    await until(lambda: received.extend(sub_b.pending()) or any(  # type: ignore[func-returns-value]
        e["id"] == after and e["type"] == "complete" for e in received), what="A's next request on B")
    assert [e["type"] for e in received if e.get("id") == after] == ["start", "classified", "routed", "complete"]
    # A's requests made during the outage were queued and reach B after the rejoin, each once, in order.
    completes = [e["id"] for e in received if e.get("type") == "complete" and e.get("node") == node_a.node_id]
    assert completes == [*during[0::2], after]
    # What waited in the outbox went without bodies, so an outage cannot fill a node's memory.
    by_id = {e["id"]: e for e in received if e.get("type") == "complete"}
    assert all(by_id[i]["bodies_omitted"] and "request" not in by_id[i] for i in during[0::2])
    assert "bodies_omitted" not in by_id[after] and by_id[after]["response"]["content"][0]["text"] == "after"


async def test_round_trips_per_request(make_node: MakeNode, redis_server: RedisServer) -> None:
    """Counts what one request costs in Redis; docs/scaling.md quotes these numbers."""
    (client_a, app_a), (_, app_b) = await make_node(), await make_node()
    node = app_a[CLUSTER].node  # type: ignore[attr-defined]
    watching = app_b[BUS].subscribe(10_000)  # B follows the events stream, as with a dashboard open
    await asyncio.sleep(0.3)
    before = dict(node.stats)
    commands_before = _commands(redis_server)
    n = 50
    for i in range(n):
        await chat(client_a, text=f"r{i}")
    await until(lambda: node.snapshot()["queued"] == 0, what="the outbox to drain")
    flushes = (node.stats["flushes"] - before["flushes"]) / n
    sent = (node.stats["sent"] - before["sent"]) / n
    commands = (_commands(redis_server) - commands_before) / n
    print(f"\nper request, sequential, 2 nodes: {flushes:.2f} write round trips, {sent:.2f} commands sent, "
          f"{commands:.2f} commands seen by Redis (A's writes, B's reads as a dashboard watches B)")
    # Each flush sends one XADD (every event queued since the last, packed in one entry), plus one
    # LPUSH and one LTRIM when a complete event was among them: at most 3 commands a round trip.
    assert 0 < flushes <= 4 and sent <= 3 * flushes + 1e-9 and sent <= 6
    # Redis also sees B's XREADs (at most one per entry A wrote), idle XREADs and this test's INFO calls.
    assert commands <= sent + flushes + 2
    assert len([e for e in watching.pending() if e["type"] == "complete"]) == n

    # Concurrent requests share round trips and commands: the writer packs whatever queued meanwhile.
    before = dict(node.stats)
    m = 100

    async def worker(k: int) -> None:
        for i in range(m // 10):
            await chat(client_a, text=f"c{k}-{i}")

    await asyncio.gather(*(worker(k) for k in range(10)))
    await until(lambda: node.snapshot()["queued"] == 0, what="the outbox to drain")
    c_flushes = (node.stats["flushes"] - before["flushes"]) / m
    c_sent = (node.stats["sent"] - before["sent"]) / m
    print(f"per request, 10 concurrent clients: {c_flushes:.2f} write round trips, {c_sent:.2f} commands sent")
    assert c_flushes <= flushes + 0.5 and c_sent <= 3 * c_flushes + 1e-9


def _commands(server: RedisServer) -> int:
    out = subprocess.run(["redis-cli", "-p", str(server.port), "INFO", "stats"], check=True,
                         capture_output=True, text=True).stdout
    return next(int(line.split(":")[1]) for line in out.splitlines() if line.startswith("total_commands_processed"))


def test_check_shows_the_cluster_without_its_password(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from llmrouter.cli import main
    from llmrouter.cluster.node import safe_url

    assert safe_url("redis://user:s3cret-pw@redis.internal:6379/0") == "redis://***@redis.internal:6379/0"
    config = tmp_path / "c.toml"
    config.write_text('[cluster]\nredis_url = "redis://:s3cret-pw@10.0.0.5:6379/0"\nshare_events = false\n'
                      '[[providers]]\nname = "echo"\nformat = "echo"\n')
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "cluster: redis://***@10.0.0.5:6379/0 (prefix 'llmrouter', events local)" in result.output
    assert "s3cret" not in result.output


def test_a_breaker_adopts_what_another_instance_decided() -> None:
    from llmrouter.upstream.circuits import CircuitBreaker, CircuitState

    now = [100.0]
    breaker = CircuitBreaker("p", threshold=3, cooldown_s=30, clock=lambda: now[0])
    assert breaker.adopt(CircuitState.OPEN, retry_in_s=10, failures=3)
    assert breaker.state is CircuitState.OPEN and breaker.retry_in() == 10 and not breaker.ready()
    now[0] += 10
    assert breaker.ready()  # its own probe once the shared cooldown is over
    assert not breaker.adopt(CircuitState.HALF_OPEN, retry_in_s=0, failures=3)
    assert breaker.adopt(CircuitState.CLOSED, retry_in_s=0, failures=0)
    assert breaker.state is CircuitState.CLOSED and breaker.failures == 0


def test_adopted_changes_are_not_published_again() -> None:
    from llmrouter.config import parse_config
    from llmrouter.observe.events import EventBus
    from llmrouter.upstream.providers import build_providers
    from llmrouter.upstream.reliability import Reliability, Ticket

    config = parse_config({"routing": {"circuit_failures": 1},
                           "providers": [{"name": "p", "format": "echo"}]})
    bus = EventBus()
    events = bus.subscribe(100)
    reliability = Reliability(config, build_providers(config, {}), bus)
    shared: list[str] = []
    reliability.shared = lambda breaker: shared.append(str(breaker.state))
    reliability.adopt("p", "open", 5.0, 1, provider="p", model=None)
    reliability.adopt("unknown-key", "open", 5.0, 1)  # ignored
    assert reliability.blocked() == frozenset({"p"}) and reliability.health["p"] is False
    assert shared == [] and events.pending() == []
    reliability.adopt("p", "closed", 0.0, 0)
    # Per-model breakers: the key is opaque, provider and model say which breaker it is.
    reliability.adopt("p/m-1", "open", 5.0, 1, provider="p", model="m-1")
    assert reliability.model_blocked("p", "m-1") and not reliability.model_blocked("p", "m-2")
    reliability.adopt("p/m-1", "closed", 0.0, 0, provider="p", model="m-1")
    assert not reliability.model_blocked("p", "m-1") and ("p", "m-1") not in reliability.circuits.models
    assert shared == [] and events.pending() == []
    reliability.circuits.connections["p"].failure(Ticket.NORMAL)  # a local decision: shared and published
    assert shared == ["open"] and [e["type"] for e in events.pending()] == ["circuit"]
