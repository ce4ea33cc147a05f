"""A bounded load test on loopback: thousands of requests at concurrency 64 through the real app, against
two upstreams that randomly fail (5xx, 429), stall past the first-byte timeout, drop connections
and cut streams. Every request gets an answer, the log has exactly one intact line per request,
memory stays flat, nothing is left in flight, and the router still serves afterwards.

The figures it prints (run with ``-s``) are the ones quoted in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections import Counter
from typing import Any

import aiohttp

from llmrouter.jsonutil import dumps, loads
from llmrouter.observe.requestlog import read_log
from llmrouter.testing import RouterClient, anthropic_message, openai_chat
from llmrouter.upstream.reliability import RetryPolicy
from llmrouter.web.app import RELIABILITY
from tests.flaky_upstream import Action, FlakyUpstream

REQUESTS = 2000
WARMUP = 400
CONCURRENCY = 64
RSS_GROWTH_LIMIT_MB = 15
RSS_SECOND_HALF_LIMIT_MB = 5
FAULTS: list[tuple[Action, float]] = [
    ("ok", 0.62), (("status", 503), 0.10), (("status", 500), 0.04), (("status", 429, {"Retry-After": "0"}), 0.04),
    ("stall", 0.06), ("stall_stream", 0.04), ("drop", 0.06), ("partial", 0.04),
]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def request_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks other than connection handlers (idle keep-alive connections each hold one)."""
    return [t for t in asyncio.all_tasks() if "RequestHandler.start" not in repr(t.get_coro())]


def chooser(rng: random.Random) -> Any:
    actions = [a for a, _ in FAULTS]
    weights = [w for _, w in FAULTS]
    return lambda: rng.choices(actions, weights)[0]


async def fire(client: RouterClient, count: int, rng: random.Random) -> list[tuple[int, str]]:
    """``count`` requests, ``CONCURRENCY`` at a time: a mix of endpoints, streaming and not.

    Returns each request's status and id, having checked that every error reply names its error.
    """
    gate = asyncio.Semaphore(CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=15)
    # A session of our own: the test client keeps every response it ever returned.
    session = aiohttp.ClientSession(timeout=timeout)

    async def one(i: int) -> tuple[int, str]:
        stream = rng.random() < 0.3
        if rng.random() < 0.5:
            path, body = "/v1/chat/completions", openai_chat(f"request {i}", stream=stream)
        else:
            path, body = "/v1/messages", anthropic_message(f"request {i}", stream=stream)
        async with gate:
            async with session.post(client.client.make_url(path), data=dumps(body), headers={
                    "content-type": "application/json", "anthropic-version": "2023-06-01"}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    assert loads(body)["error"]["message"]
                elif stream:
                    assert body.startswith((b"data: ", b"event: ")), body[:100]
                return resp.status, resp.headers["X-Router-Request-Id"]

    async with session:
        return await asyncio.gather(*(one(i) for i in range(count)))


async def test_load_with_flaky_upstreams(router: Any, aiohttp_server: Any) -> None:
    rng = random.Random(20261122)
    upstreams = [FlakyUpstream(chooser=chooser(rng), stall_s=0.4, keep_bodies=False) for _ in range(2)]
    servers = [await aiohttp_server(up.app) for up in upstreams]
    config = {
        "providers": [{"name": name, "format": "openai", "base_url": str(server.make_url("/v1")), "discover": False,
                       "quality": quality, "timeout_first_byte_s": 0.15, "max_retries": 1}
                      for name, server, quality in zip(("a", "b"), servers, (90, 50), strict=True)],
        "routers": [{"type": "fallback", "quality_bias": 1}],
        "routing": {"circuit_failures": 8, "circuit_cooldown_s": 0.2},
    }
    client = await router(config)
    client.app[RELIABILITY].policy = RetryPolicy(base_s=0.005, max_s=0.02)
    client.subscription.close()  # the test client's own event queue would hold every event
    tasks_before = len(request_tasks())

    # pytest keeps every log record (with its traceback and everything that references) for its
    # report; that would be the test's memory growth, not the router's.
    logging.disable(logging.CRITICAL)
    try:
        warm = await fire(client, WARMUP, rng)
        gc.collect()
        rss = [rss_mb()]
        started = time.perf_counter()
        results = []
        for _ in range(2):  # two halves, to tell a plateau from a leak
            results += await fire(client, REQUESTS // 2, rng)
            gc.collect()
            rss.append(rss_mb())
        elapsed = time.perf_counter() - started
    finally:
        logging.disable(logging.NOTSET)

    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {200, 429, 502, 503, 504}, statuses  # 429: the last provider rate-limited
    assert statuses[200] > 0.8 * REQUESTS, statuses

    # Exactly one intact log line per request, nothing else.
    problems: list[str] = []
    lines = list(read_log(client.pipeline.request_log.path, problems)) \
        if client.pipeline.request_log.wait_idle(10) else []
    assert problems == []
    ids = [rid for _, rid in warm + results]
    assert len(lines) == len(ids) and sorted(line["id"] for line in lines) == sorted(ids)
    by_id = {line["id"]: line for line in lines}
    for status, rid in results:
        line = by_id[rid]
        # A stream cut after its first byte is a 200 to the client, logged with the provider's error.
        assert line["status"] == status or (status == 200 and line["status"] in (502, 504) and line["stream"])
        if status != 503:
            assert line["attempts"], line
    attempts = Counter(len(line.get("attempts", [])) for line in lines)

    # Nothing left behind but idle keep-alive connections (bounded by the pools); memory flat.
    for _ in range(50):
        if len(request_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.02)
    assert client.pipeline.in_flight == 0
    assert len(request_tasks()) <= tasks_before, request_tasks()
    assert len(asyncio.all_tasks()) - len(request_tasks()) <= 4 * CONCURRENCY
    assert rss[2] - rss[0] < RSS_GROWTH_LIMIT_MB, f"RSS {rss} MB over {REQUESTS} requests"
    assert rss[2] - rss[1] < RSS_SECOND_HALF_LIMIT_MB, f"RSS still growing in the second half: {rss} MB"

    # Still serving once the upstreams behave.
    for up in upstreams:
        up.chooser = lambda: "ok"
    await asyncio.sleep(0.25)
    for stream in (False, True):
        reply = await client.openai(openai_chat("after the storm", stream=stream))
        assert reply.status == 200, reply.text

    faults = Counter(str(a) for up in upstreams for a in up.actions)
    print(f"\nload: {REQUESTS} requests at c={CONCURRENCY} in {elapsed:.1f} s ({REQUESTS / elapsed:.0f} req/s); "
          f"statuses {dict(statuses)}; attempts per request {dict(sorted(attempts.items()))}; "
          f"upstream calls {sum(up.calls for up in upstreams)}; faults {dict(faults)}; "
          f"RSS after warm-up, half, end: {' / '.join(f'{x:.0f}' for x in rss)} MB")
