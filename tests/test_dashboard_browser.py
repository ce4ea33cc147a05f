"""The dashboard page in a real headless Chromium, driven over the DevTools protocol.

Needs Debian's ``chromium`` package (or ``LLMROUTER_CHROMIUM`` naming a binary). Without it the test
is skipped, except in CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmrouter import Context, hookimpl
from llmrouter.jsonutil import dumps, loads
from llmrouter.testing import openai_chat
from llmrouter.web.app import BUS

CONFIG = {
    "server": {"api_key_env": "ROUTER_API_KEY"},
    "providers": [{"name": "echo", "format": "echo"}, {"name": "echo-code", "format": "echo"}],
    "classifiers": {"keyword": {"enabled": True, "tags": {"code": ["def "], "vision": ["image"]}}},
    "routers": [{"type": "prefix", "model_prefix": "code/", "provider": "echo-code", "rewrite_model": "coder-1"},
                {"type": "fallback", "providers": ["echo"]}],
    "plugins": {"gate": {"enabled": True}},
}
KEY = "browser-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900", "--remote-debugging-port=0"]

CARDS_JS = """JSON.stringify([...document.querySelectorAll('.card')].map(c => ({
  id: c.dataset.id, provider: c.dataset.provider, hidden: c.hidden, cls: c.className,
  tags: [...c.querySelectorAll('.tag')].map(t => t.textContent),
  models: c.querySelector('.models').textContent,
  reply: c.querySelector('.reply pre').textContent})))"""
STATS_JS = """JSON.stringify(Object.fromEntries(['inflight', 'rpm', 'errors', 'total'].map(
  k => [k, document.getElementById('stat-' + k).textContent])))"""


class Gate:
    """Holds requests whose prompt says "wait" after routing, until released."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    @hookimpl
    async def post_response(self, ctx: Context) -> None:
        if "wait" in ctx.request.last_user_text():
            await self.open.wait()


def chromium_binary() -> str:
    found = os.environ.get("LLMROUTER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); set CI=true to require it")
    return found


class DevTools:
    """A minimal DevTools protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        await self.ws.send_str(dumps({"id": call_id, "method": method, "params": params}).decode())
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 10)
            assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
            data = loads(msg.data)
            if data.get("id") == call_id:
                assert "error" not in data, data["error"]
                return data["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if predicate(value):
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting; last value: {value!r}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def launch(binary: str, profile: Path, url: str) -> AsyncIterator[DevTools]:
    """Start Chromium on ``url`` and yield a DevTools client for its page; always stops the browser."""
    with open(profile.parent / "chromium.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", url,
            stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().splitlines()) >= 2:
                break
            if proc.returncode is not None:
                raise AssertionError(f"chromium exited with {proc.returncode}; see chromium.log")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as session:
            targets: list[dict[str, Any]] = []
            for _ in range(100):
                async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if targets:
                    break
                await asyncio.sleep(0.05)
            async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


@pytest.fixture
def chromium() -> str:
    return chromium_binary()


async def test_dashboard_shows_live_cards_in_chromium(router: Any, chromium: str, tmp_path: Path) -> None:
    gate = Gate()
    client = await router(CONFIG, environ={"ROUTER_API_KEY": KEY}, plugins={"gate": gate})
    url = str(client.client.make_url("/dashboard")) + f"?api_key={KEY}"
    profile = tmp_path / "profile"
    profile.mkdir()
    async with launch(chromium, profile, url) as devtools:
        await devtools.wait_for("document.body && document.body.dataset.connected", lambda v: v == "1")

        # A card appears while the request is still in flight, already showing where it was routed.
        held = asyncio.create_task(client.openai(openai_chat("wait for it: def f()", model="code/x"), AUTH))
        pending = loads(await devtools.wait_for(CARDS_JS, lambda v: v and "echo-code" in v))
        assert len(pending) == 1 and "pending" in pending[0]["cls"] and pending[0]["tags"] == ["code"]
        assert loads(await devtools.evaluate(STATS_JS))["inflight"] == "1"
        gate.open.set()
        held_reply = await held
        await devtools.wait_for(CARDS_JS, lambda v: "pending" not in v)
        assert pending[0]["id"] == held_reply.request_id

        code = await client.openai(openai_chat("def add(a, b): return a + b", model="code/any"), AUTH)
        plain = await client.openai(openai_chat("hello there", model="small"), AUTH)
        vision = await client.openai(openai_chat("describe this image", model="small", stream=True), AUTH)
        broken = await client.openai(b"{oops", AUTH)
        assert [r.status for r in (code, plain, vision, broken)] == [200, 200, 200, 400]

        def all_done(raw: str | None) -> bool:
            cards = loads(raw or "[]")
            return len(cards) == 5 and all("pending" not in c["cls"] for c in cards)

        cards = {c["id"]: c for c in loads(await devtools.wait_for(CARDS_JS, all_done))}
        assert cards[code.request_id]["provider"] == "echo-code"
        assert cards[code.request_id]["tags"] == ["code"]
        assert cards[code.request_id]["models"] == "code/any → coder-1"
        assert cards[code.request_id]["reply"] == "def add(a, b): return a + b"
        assert cards[plain.request_id]["provider"] == "echo" and cards[plain.request_id]["tags"] == []
        assert cards[vision.request_id]["provider"] == "echo" and cards[vision.request_id]["tags"] == ["vision"]
        assert "error" in cards[broken.request_id]["cls"]
        stats = loads(await devtools.evaluate(STATS_JS))
        assert stats == {"inflight": "0", "rpm": "5", "errors": "1", "total": "5"}

        # Circuit changes (from the reliability layer) show as notices.
        client.app[BUS].publish({"type": "circuit", "provider": "echo", "state": "open", "consecutive_failures": 5,
                                 "ts_ms": 0})
        notice = await devtools.wait_for("[...document.querySelectorAll('.notice')].map(n => n.textContent).join()",
                                         lambda v: bool(v))
        assert "circuit for provider echo is now open (5 consecutive failures)" in notice

        # Kept for a human to look at: every card, unfiltered.
        shot = await devtools.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG")
        (tmp_path / "dashboard.png").write_bytes(png)

        # Filtering by provider hides the other cards.
        await devtools.evaluate("const s = document.getElementById('filter-provider'); s.value = 'echo-code';"
                                "s.dispatchEvent(new Event('change'));")
        visible = [c["id"] for c in loads(await devtools.evaluate(CARDS_JS)) if not c["hidden"]]
        assert visible == [code.request_id, held_reply.request_id]

        async def visible_after(script: str) -> list[str]:
            await devtools.evaluate("document.getElementById('filter-clear').click(); {" + script + "}")
            return [c["id"] for c in loads(await devtools.evaluate(CARDS_JS)) if not c["hidden"]]

        by_tag = await visible_after("const t = document.getElementById('filter-tag'); t.value = 'vision';"
                                     "t.dispatchEvent(new Event('change'));")
        assert by_tag == [vision.request_id]
        by_text = await visible_after("const f = document.getElementById('filter-text'); f.value = 'HELLO th';"
                                      "f.dispatchEvent(new Event('input'));")
        assert by_text == [plain.request_id]
        assert len(await visible_after("")) == 5



SPEND_JS = """JSON.stringify({hidden: document.getElementById('keys').hidden,
  rows: [...document.querySelectorAll('#keys-body tr')].map(r => [...r.children].map(td => td.textContent))})"""


async def test_dashboard_shows_spend_per_key_in_chromium(router: Any, chromium: str, tmp_path: Path) -> None:
    config = {"server": {"api_key_env": "ROUTER_API_KEY"},
              "providers": [{"name": "echo", "format": "echo", "cost_per_1m_tokens": 1000.0}],
              "routers": [{"type": "fallback"}],
              "keys": [{"name": "alice", "key_env": "ALICE_KEY", "budget_usd": 5.0, "budget_period": "day"},
                       {"name": "bob", "key_env": "BOB_KEY"}]}
    client = await router(config, environ={"ROUTER_API_KEY": KEY, "ALICE_KEY": "alice-key-123", "BOB_KEY": "bob-key-4567"})
    alice, bob = {"x-api-key": "alice-key-123"}, {"x-api-key": "bob-key-4567"}
    before = await client.openai(openai_chat("a" * 400), alice)  # in the log before the page opens
    assert before.status == 200
    url = str(client.client.make_url("/dashboard")) + f"?api_key={KEY}"
    profile = tmp_path / "profile"
    profile.mkdir()
    async with launch(chromium, profile, url) as devtools:
        await devtools.wait_for("document.body && document.body.dataset.connected", lambda v: v == "1")
        first = loads(await devtools.wait_for(SPEND_JS, lambda v: v and '"alice"' in v))
        assert first["hidden"] is False
        row = first["rows"][0]
        assert row[0] == "alice" and row[1] == "1" and row[3] == f"${before.log_line['cost_usd']:.4f}"  # type: ignore[index]
        assert row[4].endswith("/ $5.00 per day")
        # live: a request after the page loaded is added once, not twice (history and live)
        assert (await client.openai(openai_chat("b" * 40), bob)).status == 200
        assert (await client.openai(openai_chat("c" * 40), alice)).status == 200
        rows = loads(await devtools.wait_for(SPEND_JS, lambda v: v and '"bob"' in v and '"2"' in v))["rows"]
        by_key = {r[0]: r for r in rows}
        assert by_key["alice"][1] == "2" and by_key["bob"][1] == "1"
        cards = loads(await devtools.evaluate("JSON.stringify([...document.querySelectorAll('.card .metrics')]"
                                              ".map(m => m.textContent))"))
        assert any("key bob" in c for c in cards) and any("key alice" in c for c in cards)


PROMPT_JS = """JSON.stringify([...document.querySelectorAll('.card')].map(c => ({
  prompt: c.querySelector('.prompt pre').textContent, excerpt: c.querySelector('.excerpt').textContent,
  more: !c.querySelector('button.more').hidden})))"""


async def test_a_big_request_shows_as_a_preview_until_loaded_in_chromium(router: Any, chromium: str,
                                                                          tmp_path: Path) -> None:
    client = await router(CONFIG, environ={"ROUTER_API_KEY": KEY}, plugins={"gate": Gate()})
    messages = [{"role": "system", "content": "FIRST-SYSTEM-PROMPT " + "rules " * 4000}]
    for i in range(20):
        messages += [{"role": "user", "content": f"old question {i} " + "q" * 500},
                     {"role": "assistant", "content": f"old answer {i} " + "a" * 500}]
    messages.append({"role": "user", "content": "the latest question"})
    url = str(client.client.make_url("/dashboard")) + f"?api_key={KEY}"
    profile = tmp_path / "profile"
    profile.mkdir()
    async with launch(chromium, profile, url) as devtools:
        await devtools.wait_for("document.body && document.body.dataset.connected", lambda v: v == "1")
        big = await client.openai({"model": "small", "messages": messages}, AUTH)
        assert big.status == 200
        (card,) = loads(await devtools.wait_for(PROMPT_JS, lambda v: v and "latest" in v))
        assert card["more"] is True
        assert card["excerpt"].startswith("the latest question")
        assert "38 earlier items" in card["prompt"] and "old answer 19" in card["prompt"]
        assert "FIRST-SYSTEM-PROMPT" not in card["prompt"]
        await devtools.evaluate("document.querySelector('button.more').click()")
        (loaded,) = loads(await devtools.wait_for(PROMPT_JS, lambda v: v and "FIRST-SYSTEM-PROMPT" in v))
        assert loaded["more"] is False and "old question 0" in loaded["prompt"]
        # The text filter finds what only the whole request holds, once loaded.
        await devtools.evaluate("const f = document.getElementById('filter-text'); f.value = 'old question 3 ';"
                                "f.dispatchEvent(new Event('input'));")
        hidden = await devtools.evaluate("document.querySelector('.card').hidden")
        assert hidden is False


async def test_a_codex_request_shows_its_input_in_chromium(router: Any, chromium: str, tmp_path: Path) -> None:
    client = await router(CONFIG, environ={"ROUTER_API_KEY": KEY}, plugins={"gate": Gate()})
    body = {"model": "small", "instructions": "CODEX-INSTRUCTIONS",
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be terse"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
                      {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
                      {"role": "user", "content": "now read a.txt"}]}
    url = str(client.client.make_url("/dashboard")) + f"?api_key={KEY}"
    profile = tmp_path / "profile"
    profile.mkdir()
    async with launch(chromium, profile, url) as devtools:
        await devtools.wait_for("document.body && document.body.dataset.connected", lambda v: v == "1")
        assert (await client.responses(body, AUTH)).status == 200
        (card,) = loads(await devtools.wait_for(PROMPT_JS, lambda v: v and "read a.txt" in v))
        assert card["excerpt"].startswith("now read a.txt")
        assert "instructions: CODEX-INSTRUCTIONS" in card["prompt"]
        assert 'assistant: → exec_command({"cmd":"ls"})' in card["prompt"]
        assert "tool: [tool result] a.txt" in card["prompt"] and "user: list files" in card["prompt"]
