"""``llmrouter tui``: the feed/stats model, and the Textual app driven by Pilot against a live router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from textual.widgets import DataTable, Input, Static

from llmrouter import Context, hookimpl
from llmrouter.cli.tui import FeedState, RouterTUI
from llmrouter.engine.registry import load_entry_point_plugins
from llmrouter.jsonutil import dumps
from llmrouter.testing import make_config, openai_chat
from llmrouter.web.app import create_app

CONFIG = {
    "providers": [{"name": "echo", "format": "echo", "models": ["echo-1"]},
                  {"name": "echo-code", "format": "echo", "models": ["code/coder"]}],
    "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "]}}},
    "routers": [{"type": "prefix", "model_prefix": "code/", "provider": "echo-code", "rewrite_model": "coder-1"},
                {"type": "fallback", "providers": ["echo"]}],
    "plugins": {"gate": {"enabled": True}},
}


class Gate:
    """Holds requests whose prompt says "wait" after routing, until released."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    @hookimpl
    async def post_response(self, ctx: Context) -> None:
        if "wait" in ctx.request.last_user_text():
            await self.open.wait()


# -- the model behind the screen ---------------------------------------------------------------------


def test_feed_state_tracks_pending_and_stats() -> None:
    state = FeedState()
    state.apply({"type": "start", "id": "a", "model": "m"})
    state.apply({"type": "classified", "id": "a", "tags": ["code"]})
    state.apply({"type": "routed", "id": "a", "provider": "p", "model": "m2"})
    assert state.pending["a"].stage == "routed" and state.pending["a"].provider == "p"
    state.apply({"type": "start", "id": "b", "model": "m"})
    state.apply({"type": "complete", "id": "a", "provider": "p", "tags": ["code"], "duration_ms": 10.0, "error": None})
    state.apply({"type": "complete", "id": "b", "provider": None, "tags": [], "duration_ms": 30.0, "error": "bad"})
    state.apply({"type": "dropped", "count": 3})
    state.apply({"type": "circuit", "provider": "p", "state": "open"})
    assert state.pending == {} and state.requests == 2 and state.errors == 1
    assert state.avg_latency_ms == 20.0
    assert state.by_provider == {"p": 1, "(none)": 1} and state.by_tag == {"code": 1}
    text = state.stats_text()
    assert "requests   2" in text and "errors     1" in text and "avg        20 ms" in text
    assert "dropped    3 events" in text and "p              open" in text


# -- the app against a live server --------------------------------------------------------------------


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[str, Gate]]:
    gate = Gate()
    registry = load_entry_point_plugins()
    registry.register(gate, "gate")
    runner = web.AppRunner(create_app(make_config(CONFIG, tmp_path), registry=registry, environ={}),
                           shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", gate
    gate.open.set()
    await runner.cleanup()


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await pilot.pause(0.02)


async def post(url: str, text: str, model: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/chat/completions", data=dumps(openai_chat(text, model=model)),
                                headers={"content-type": "application/json"}) as resp:
            assert resp.status == 200
            return resp.headers["X-Router-Request-Id"]


def cells(table: DataTable[Any], row: int) -> list[str]:
    return [str(value) for value in table.get_row_at(row)]


async def test_feed_shows_pending_requests_then_completions_and_stats(live: tuple[str, Gate]) -> None:
    url, gate = live
    app = RouterTUI(url)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.state.connected)
        pending = app.query_one("#pending", DataTable)
        recent = app.query_one("#recent", DataTable)

        held = asyncio.create_task(post(url, "wait: def f()", "code/x"))
        await until(pilot, lambda: pending.row_count == 1 and "echo-code" in cells(pending, 0))
        row = cells(pending, 0)
        assert row[2] == "code/x → coder-1" and row[3] == "code" and row[5] == "routed"
        assert "in flight  1" in str(app.query_one("#stats", Static).render())

        gate.open.set()
        rid = await held
        await until(pilot, lambda: recent.row_count == 1 and pending.row_count == 0)
        done = cells(recent, 0)
        assert done[2] == rid[:8] and done[4] == "echo-code" and done[5] == "code" and done[8] == "ok"

        await post(url, "plain question", "small")
        await until(pilot, lambda: recent.row_count == 2)
        assert cells(recent, 0)[4] == "echo"  # newest on top
        stats = str(app.query_one("#stats", Static).render())
        assert "requests   2" in stats and "errors     0" in stats and "in flight  0" in stats
        assert "echo-code      1" in stats and "echo           1" in stats and "code           1" in stats


async def test_chat_box_sends_prompts_with_a_switchable_model(live: tuple[str, Gate]) -> None:
    url, _ = live
    app = RouterTUI(url)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.state.connected and bool(app.models))
        model_box = app.query_one("#model", Input)
        assert model_box.value == "echo-1"  # first model from /v1/models

        await pilot.click("#prompt")
        await pilot.press(*"hi", "enter")  # typed like a user would
        await until(pilot, lambda: any(line.startswith("assistant") for line in app.transcript))
        assert app.transcript[0] == "you (echo-1): hi"
        assert app.transcript[1] == "assistant [echo/echo-1]: hi"

        await pilot.press("ctrl+n")  # next model from the list
        assert model_box.value == app.models[1]
        model_box.value = "code/anything"  # or type any model
        app.query_one("#prompt", Input).value = "def go(): pass"
        await pilot.click("#prompt")
        await pilot.press("enter")
        await until(pilot, lambda: len([x for x in app.transcript if x.startswith("assistant")]) == 2)
        assert app.transcript[-1] == "assistant [echo-code/coder-1 #code]: def go(): pass"
        assert len(app.conversation) == 4  # the conversation continues across model switches

        recent = app.query_one("#recent", DataTable)
        await until(pilot, lambda: recent.row_count == 2)  # the chat's own requests show in the feed


async def test_client_text_with_markup_is_shown_as_written(live: tuple[str, Gate]) -> None:
    """Model names and prompts are the clients' text: Rich markup in them (an unbalanced ``[/bold]``
    would crash the table's renderer) is shown literally."""
    url, _ = live
    app = RouterTUI(url)
    async with app.run_test(size=(200, 48)) as pilot:
        await until(pilot, lambda: app.state.connected)
        recent = app.query_one("#recent", DataTable)
        await post(url, "see [link=http://x]this[/link] [/]", "[/bold]odd[red]")
        await until(pilot, lambda: recent.row_count == 1)
        await pilot.pause(0.2)  # let the table render the row
        screen = app.export_screenshot()
        assert "[/bold]odd[red]" in screen.replace("&#160;", " ")
    assert app.return_code in (0, None)
