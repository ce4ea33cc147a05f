"""Model circuits count failures in the order outcomes arrive, through the real app and a loopback upstream.

An attempt that began before its model had a breaker (the model was healthy) and ends after other
attempts' failures created one must still reset the count when it succeeds; otherwise, with many
attempts in flight, failures that were never consecutive add up to an open circuit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmrouter.testing import openai_chat
from tests.flaky_upstream import FlakyUpstream


@pytest.mark.parametrize("stream", [False, True])
async def test_a_success_that_began_before_the_failures_resets_the_count(router: Any, aiohttp_server: Any,
                                                                        stream: bool) -> None:
    # The long attempt: a reply held back (non-streaming), or a stream whose frames come slowly (a
    # stream's outcome counts when it ends).
    slow = "slow" if stream else "stall"
    upstream = FlakyUpstream([slow, ("status", 500), ("status", 500), ("status", 500), ("status", 500), "ok"],
                             stall_s=0.5, frame_delay_s=0.1, keep_bodies=False)
    server = await aiohttp_server(upstream.app)
    client = await router({
        "providers": [{"name": "a", "format": "openai", "base_url": str(server.make_url("/v1")),
                       "discover": False, "max_retries": 0, "timeout_first_byte_s": 5}],
        "routers": [{"type": "fallback"}],
        "routing": {"circuit_failures": 3, "circuit_cooldown_s": 60},
    })
    long = asyncio.create_task(client.openai(openai_chat("the long one", stream=stream)))
    while upstream.calls < 1:
        await asyncio.sleep(0.005)
    for _ in range(2):  # the model's breaker is created with 2 failures while the long attempt runs
        assert (await client.openai(openai_chat("fails"))).status == 502
    assert not long.done()
    reply = await long
    assert reply.status == 200 and reply.log_line["status"] == 200, "the long attempt succeeded: count reset"
    for _ in range(2):  # 2 consecutive failures: under the threshold of 3
        assert (await client.openai(openai_chat("fails"))).status == 502
    reply = await client.openai(openai_chat("after"))
    assert reply.status == 200, reply.body
    assert upstream.calls == 6
    health = await (await client.client.get("/health")).json()
    assert health["providers"]["a"]["circuit"]["models"] == {}, "a closed circuit without failures is dropped"
