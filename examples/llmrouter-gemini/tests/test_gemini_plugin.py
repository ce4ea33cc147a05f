"""The ``gemini`` plugin's route and command, and its registration through the entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from llmrouter.testing import installed_plugins

from llmrouter_gemini import plugin

CONFIG = {"providers": [{"name": "g", "format": "gemini", "base_url": "https://gemini.test", "discover": False,
                         "models": ["gemini-2.5-pro"]}, {"name": "echo", "format": "echo"}],
          "routers": [{"type": "fallback"}], "server": {"api_key_env": "ROUTER_KEY"}}


def test_entry_point_registers_all_three_hooks() -> None:
    record = installed_plugins().records["gemini"]
    assert record.loaded and record.distribution == "llmrouter-gemini"
    assert set(record.hooks) == {"register_provider_formats", "register_routes", "register_commands"}
    assert [f.name for f in plugin.register_provider_formats()] == ["gemini"]


async def test_route_lists_gemini_providers_behind_the_routers_key(router: Any) -> None:
    assert len(list(plugin.register_routes())) == 1
    client = await router(CONFIG, environ={"ROUTER_KEY": "inbound-key-1"})
    denied = await client.client.get("/gemini/providers")
    assert denied.status == 401  # the same auth as every route
    resp = await client.client.get("/gemini/providers", headers={"authorization": "Bearer inbound-key-1"})
    assert resp.status == 200
    assert await resp.json() == {"providers": [{"name": "g", "models": ["gemini-2.5-pro"], "healthy": True}]}


def llmrouter(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``llmrouter`` command, as a user runs it."""
    script = shutil.which("llmrouter", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "llmrouter.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def test_command_prints_the_body_the_format_sends() -> None:
    result = llmrouter("gemini-body", "hello", "--model", "gemini-2.5-pro", "--stream")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "POST {base_url}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    assert lines[1] == '{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}'
    assert "gemini-body" in llmrouter("--help").stdout
