"""One end-of-life path per request: ``on_end`` once and exactly one log line on every path, with
the status the client was sent."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from llmrouter import Context, hookimpl
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.testing import openai_chat

BASE = "http://up.test/v1"
CONFIG: dict[str, Any] = {
    "providers": [{"name": "up", "format": "openai", "base_url": BASE, "discover": False, "max_retries": 0}],
    "routers": [{"type": "prefix", "model_prefix": "gpt", "provider": "up"}],
    "plugins": {"ender": {}},
}


class Ender:
    """Counts ``on_end`` calls per request and remembers the error each one saw."""

    def __init__(self, cancel_in_on_start: bool = False) -> None:
        self.ended: list[tuple[str, str | None]] = []
        self.cancel_in_on_start = cancel_in_on_start

    @hookimpl
    async def on_start(self, ctx: Context) -> None:
        if self.cancel_in_on_start:  # what a client leaving or a shutdown does to the handler task
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)

    @hookimpl
    def on_end(self, ctx: Context) -> None:
        self.ended.append((ctx.request_id, ctx.error))


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    """Poll ``condition()`` until true (background work finishing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_success_ends_once(router: Any, mock_providers: Any) -> None:
    mock_providers.add_openai(BASE)
    ender = Ender()
    client = await router(CONFIG, plugins={"ender": ender})
    reply = await client.openai(openai_chat(model="gpt-x"))
    assert reply.status == 200
    assert ender.ended == [(reply.request_id, None)]
    assert [line["status"] for line in client.log_lines()] == [200]


async def test_a_router_error_ends_once(router: Any, mock_providers: Any) -> None:
    ender = Ender()
    client = await router(CONFIG, plugins={"ender": ender})
    reply = await client.openai(openai_chat(model="other"))
    assert reply.status == 400
    assert len(ender.ended) == 1 and ender.ended[0][1] is not None
    assert [line["status"] for line in client.log_lines()] == [400]


async def test_an_unexpected_error_ends_once_and_logs_500(router: Any, mock_providers: Any) -> None:
    ender = Ender()
    client = await router(CONFIG, plugins={"ender": ender})

    async def broken(pipeline: Any, ctx: Context) -> Any:
        raise ValueError("a bug")

    client.pipeline._provider_call = broken
    reply = await client.openai(openai_chat(model="gpt-x"))
    assert reply.status == 500
    assert len(ender.ended) == 1 and "a bug" in (ender.ended[0][1] or "")
    assert [(line["status"], "a bug" in line["error"]) for line in client.log_lines()] == [(500, True)]


async def test_a_reply_that_fails_to_render_logs_the_500_it_sent(router: Any, mock_providers: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mock_providers.add_openai(BASE)
    ender = Ender()
    client = await router(CONFIG, plugins={"ender": ender})

    def broken_render(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("render bug")

    monkeypatch.setattr(CLIENT_FORMATS["openai"], "render_response", broken_render)
    reply = await client.openai(openai_chat(model="gpt-x"))
    assert reply.status == 500
    assert len(ender.ended) == 1
    assert [line["status"] for line in client.log_lines()] == [500]


async def test_a_cancelled_request_ends_once_with_one_499_line(router: Any, mock_providers: Any) -> None:
    ender = Ender(cancel_in_on_start=True)
    client = await router(CONFIG, plugins={"ender": ender})
    with pytest.raises(aiohttp.ClientError):
        await client.openai(openai_chat(model="gpt-x"))
    await wait_for(lambda: len(ender.ended) == 1)
    await asyncio.sleep(0.05)
    assert len(ender.ended) == 1 and ender.ended[0][1] == "request cancelled"
    assert [line["status"] for line in client.log_lines()] == [499]
