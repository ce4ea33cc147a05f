"""The shared-timer deadlines the upstream calls use behave like ``asyncio.timeout``."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.upstream.deadlines import Deadline, deadline, deadline_at


async def test_a_block_that_ends_in_time_is_left_alone() -> None:
    async with deadline(5) as block:
        await asyncio.sleep(0)
    assert not block.expired()
    await asyncio.sleep(0)  # no cancellation is left pending on the task


async def test_an_overdue_block_raises_timeout_error_at_its_deadline() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with deadline(0.05) as block:
            await asyncio.sleep(5)
    assert block.expired()
    assert 0.04 <= time.perf_counter() - started < 1.0
    await asyncio.sleep(0)  # the task is usable again


async def test_a_deadline_in_the_past_expires_at_the_next_await() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with deadline_at(loop.time() - 1):
            await asyncio.sleep(1)


async def test_an_earlier_deadline_entered_later_fires_first() -> None:
    """The shared timer is re-armed when a new block's deadline is the earliest."""
    outcomes: list[str] = []

    async def block(delay: float, name: str) -> None:
        try:
            async with deadline(delay):
                await asyncio.sleep(5)
        except TimeoutError:
            outcomes.append(name)

    slow = asyncio.ensure_future(block(0.3, "slow"))
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await block(0.05, "fast")
    assert outcomes == ["fast"] and time.perf_counter() - started < 0.25
    await slow
    assert outcomes == ["fast", "slow"]


async def test_many_blocks_expire_together_and_ended_ones_do_not() -> None:
    async def overdue() -> bool:
        try:
            async with deadline(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return True
        return False

    async def quick() -> bool:
        async with deadline(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)  # past the deadline, outside the block: no cancellation
        return False

    results = await asyncio.gather(*(overdue() for _ in range(20)), *(quick() for _ in range(20)))
    assert results == [True] * 20 + [False] * 20


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    async def worker() -> None:
        async with deadline(5):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(worker())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_blocks_raise_out_of_the_one_that_expired() -> None:
    with pytest.raises(TimeoutError):
        async with deadline(5) as outer:
            async with deadline(0.02) as inner:
                await asyncio.sleep(5)
    assert inner.expired() and not outer.expired()


async def test_the_outer_of_two_nested_blocks_converts_its_own_expiry() -> None:
    with pytest.raises(TimeoutError):
        async with deadline(0.02) as outer:
            async with deadline(5) as inner:
                await asyncio.sleep(5)
    assert outer.expired() and not inner.expired()


# The upstream calls use the plain ``with`` form (no coroutines to enter and leave): same behaviour.


async def test_a_plain_with_block_that_ends_in_time_is_left_alone() -> None:
    with deadline(5) as block:
        await asyncio.sleep(0)
    assert not block.expired()
    await asyncio.sleep(0)


async def test_an_overdue_plain_with_block_raises_timeout_error() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        with deadline(0.05) as block:
            await asyncio.sleep(5)
    assert block.expired() and 0.04 <= time.perf_counter() - started < 1.0
    await asyncio.sleep(0)


async def test_an_outside_cancellation_of_a_plain_with_block_stays_a_cancellation() -> None:
    async def worker() -> None:
        with deadline(5):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(worker())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_plain_with_blocks_raise_out_of_the_one_that_expired() -> None:
    with pytest.raises(TimeoutError):
        with deadline(5) as outer, deadline_at(asyncio.get_running_loop().time() + 0.02) as inner:
            await asyncio.sleep(5)
    assert inner.expired() and not outer.expired()


def test_a_plain_with_block_outside_a_task_is_refused() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="inside a task"):
            with Deadline(0.0, loop):
                pass
    finally:
        loop.close()
