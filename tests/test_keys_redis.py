"""Virtual-key counters in a real Redis: two router apps sharing one Redis enforce one rpm together,
budgets and tpm are shared, and a Redis outage fails open without taking the router down."""

from __future__ import annotations

import asyncio
from typing import Any

from llmrouter.keys.redis_store import RedisStore
from llmrouter.keys.store import Limits
from llmrouter.testing import openai_chat
from llmrouter.web.appkeys import LIMITER

ALICE = "rk-alice-0123456789"
ADMIN = "rk-admin-0123456789"
ENV = {"ALICE_KEY": ALICE, "ADMIN_KEY": ADMIN}
AUTH = {"authorization": f"Bearer {ALICE}"}


def config(redis_url: str, **alice: Any) -> dict[str, Any]:
    return {
        "server": {"api_key_env": "ADMIN_KEY"},
        "providers": [{"name": "echo", "format": "echo", "cost_per_1m_tokens": 1000.0}],
        "routers": [{"type": "fallback"}],
        "keys": [{"name": "alice", "key_env": "ALICE_KEY", **alice}],
        "cluster": {"redis_url": redis_url},
    }


async def test_two_routers_share_one_rpm(router: Any, redis_url: str) -> None:
    one = await router(config(redis_url, rpm=10), environ=ENV)
    two = await router(config(redis_url, rpm=10), environ=ENV)
    assert type(one.app[LIMITER].store) is RedisStore
    replies = await asyncio.gather(*(client.openai(openai_chat(), AUTH)
                                     for _ in range(50) for client in (one, two)))
    statuses = [r.status for r in replies]
    assert statuses.count(200) == 10 and statuses.count(429) == 90
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in replies if r.status == 429)


async def test_budget_spent_on_one_router_refuses_on_the_other(router: Any, redis_url: str) -> None:
    one = await router(config(redis_url, budget_usd=0.01, budget_period="month"), environ=ENV)
    two = await router(config(redis_url, budget_usd=0.01, budget_period="month"), environ=ENV)
    assert (await one.openai(openai_chat("z" * 200), AUTH)).status == 200
    await one.app[LIMITER].drain()
    refused = await two.openai(openai_chat(), AUTH)
    assert refused.status == 429 and "month budget of $0.01" in refused.body["error"]["message"]
    assert "resets at" in refused.body["error"]["message"]
    assert (await two.client.get("/admin/spend")).status == 401
    spend = await (await two.client.get("/admin/spend", headers={"x-api-key": ADMIN})).json()
    assert spend["budgets"]["alice"]["spent_usd"] > 0.01


async def test_tpm_window_in_redis(redis_url: str) -> None:
    store = RedisStore(redis_url)
    limits = Limits(rpm=None, tpm=100, budget_usd=None, period_id="total")
    try:
        assert await store.admit("k", limits, 1000.0) is None
        await store.debit("k", 70, 0.0, limits, 1000.0)
        await store.debit("k", 40, 0.0, limits, 1010.0)
        refusal = await store.admit("k", limits, 1020.0)
        assert refusal is not None and refusal.limit == "tpm" and refusal.retry_after == 40.0
        assert await store.admit("k", limits, 1060.5) is None  # the 70 left the window
    finally:
        await store.close()


async def test_redis_outage_fails_open(router: Any, redis_server: Any, redis_url: str) -> None:
    client = await router(config(redis_url, rpm=1), environ=ENV)
    assert (await client.openai(openai_chat(), AUTH)).status == 200
    assert (await client.openai(openai_chat(), AUTH)).status == 429
    redis_server.stop()
    try:
        assert (await client.openai(openai_chat(), AUTH)).status == 200
    finally:
        redis_server.start()


async def test_a_silent_redis_fails_open_within_the_socket_timeout(router: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers; ends when the client gives up

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = await router(config(f"redis://127.0.0.1:{port}/0", rpm=1), environ=ENV)
        started = asyncio.get_running_loop().time()
        reply = await asyncio.wait_for(client.openai(openai_chat(), AUTH), 10)
        assert reply.status == 200
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        server.close()
