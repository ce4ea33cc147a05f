"""The real Claude Code CLI (pinned in tests/agents/package.json) in print mode against the router, which
forwards to a mock upstream on loopback: same-format (an Anthropic provider) and cross-format (an
OpenAI-compatible provider whose chat template refuses a system message that is not first), plain
text and a tool round trip in which Claude Code really runs ``Bash``.

Skipped when the CLI is not installed (``npm install --prefix tests/agents``), except under ``CI``,
where a missing CLI fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmrouter.observe.requestlog import read_log
from llmrouter.testing import make_config
from llmrouter.web.app import create_app
from tests.agent_upstream import STRICT_ERROR, TOOL_COMMAND, TOOL_OUTPUT, AgentUpstream

CLAUDE = Path(__file__).parent / "agents" / "node_modules" / ".bin" / "claude"
ROUTER_KEY = "cc-router-key-0123456789"
RUN_TIMEOUT_S = 60.0

if not (CLAUDE.exists() and os.access(CLAUDE, os.X_OK)):
    if os.environ.get("CI"):
        pytest.fail(f"Claude Code CLI missing at {CLAUDE}: run npm install --prefix tests/agents",
                    pytrace=False)
    pytest.skip("Claude Code CLI not installed (npm install --prefix tests/agents)", allow_module_level=True)


class Stack:
    """The mock upstream, the router in front of it, and a sandbox home for Claude Code."""

    def __init__(self, upstream: AgentUpstream, router_url: str, home: Path, log_path: Path) -> None:
        self.upstream = upstream
        self.router_url = router_url
        self.home = home
        self.log_path = log_path

    def env(self, auth: str) -> dict[str, str]:
        """A clean environment: no inherited keys, telemetry, updates or non-essential traffic.
        ``auth`` names the variable carrying the router key (``ANTHROPIC_AUTH_TOKEN`` is sent as a
        Bearer token, ``ANTHROPIC_API_KEY`` as ``x-api-key``)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "CLAUDE_CONFIG_DIR": str(self.home / ".claude"),
            "ANTHROPIC_BASE_URL": self.router_url,
            auth: ROUTER_KEY,
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_SKIP_PROMPT_HISTORY": "1",
            "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "API_TIMEOUT_MS": "30000",
            "NO_COLOR": "1",
        }

    async def claude(self, prompt: str, model: str, auth: str = "ANTHROPIC_AUTH_TOKEN") -> dict[str, Any]:
        """Run ``claude -p PROMPT --model MODEL --output-format json``; its JSON result."""
        proc = await asyncio.create_subprocess_exec(
            str(CLAUDE), "-p", prompt, "--model", model, "--output-format", "json",
            "--allowedTools", "Bash(echo:*)",
            cwd=self.home, env=self.env(auth), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"claude -p did not finish in {RUN_TIMEOUT_S:.0f} s") from None
        assert out.strip(), f"no output (exit {proc.returncode}); stderr: {err.decode(errors='replace')[-2000:]}"
        result: dict[str, Any] = json.loads(out)
        result["_stderr"] = err.decode(errors="replace")
        return result

    def log_lines(self) -> list[dict[str, Any]]:
        """The router's request log."""
        try:
            return list(read_log(self.log_path))
        except FileNotFoundError:
            return []


async def _stack(aiohttp_server: Any, tmp_path: Path, late_system: str) -> Stack:
    upstream = AgentUpstream()
    up = await aiohttp_server(upstream.app)
    base = f"http://127.0.0.1:{up.port}"
    log_path = tmp_path / "requests.jsonl"
    config = make_config({
        "server": {"api_key_env": "ROUTER_KEY"},
        "logging": {"path": str(log_path)},
        "routing": {"failover": False},
        "providers": [
            {"name": "anthropic-up", "format": "anthropic", "base_url": base, "discover": False, "max_retries": 0},
            {"name": "qwen-up", "format": "openai", "base_url": f"{base}/v1", "discover": False, "max_retries": 0,
             "late_system": late_system},
        ],
        "routers": [
            {"type": "prefix", "model_prefix": "anth-", "provider": "anthropic-up", "strip_prefix": False},
            {"type": "prefix", "model_prefix": "qwen-", "provider": "qwen-up", "rewrite_model": "qwen3.6-35b-a3b"},
        ],
    }, tmp_path)
    router = await aiohttp_server(create_app(config, environ={"ROUTER_KEY": ROUTER_KEY}))
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    return Stack(upstream, f"http://127.0.0.1:{router.port}", home, log_path)


@pytest.fixture
async def stack(aiohttp_server: Any, tmp_path: Path) -> Stack:
    return await _stack(aiohttp_server, tmp_path, "user")


def _roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


@pytest.mark.parametrize("auth", ["ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY"])
async def test_text_through_an_anthropic_provider(stack: Stack, auth: str) -> None:
    result = await stack.claude("Reply with pong.", "anth-test-model", auth)
    assert result["is_error"] is False, result
    assert result["result"] == "PONG from anthropic"
    [sent] = stack.upstream.posts("/v1/messages")
    assert sent.body["model"] == "anth-test-model" and sent.body["stream"] is True
    # Claude Code's own fields and betas reach an Anthropic provider untouched.
    assert "claude-code-20250219" in sent.headers["anthropic-beta"].split(",")
    assert {"thinking", "context_management", "metadata"} <= sent.body.keys()
    assert any(block.get("cache_control") for block in sent.body["system"])
    assert "system" in _roles(sent.body)  # its mid-conversation system message, kept in place
    [line] = stack.log_lines()
    assert line["endpoint"] == "/v1/messages" and line["provider"] == "anthropic-up" and line["status"] == 200


async def test_text_through_a_strict_openai_provider(stack: Stack) -> None:
    result = await stack.claude("Reply with pong.", "qwen-local")
    assert result["is_error"] is False, result
    assert result["result"] == "PONG from openai"
    [sent] = stack.upstream.posts("/v1/chat/completions")
    assert sent.body["model"] == "qwen3.6-35b-a3b" and sent.body["stream"] is True
    assert _roles(sent.body)[0] == "system" and "system" not in _roles(sent.body)[1:]
    assert "context_management" not in sent.body and "anthropic-beta" not in sent.headers
    [line] = stack.log_lines()
    # What Claude Code sent: a system message after the first user turn, which the template would refuse.
    assert "system" in [m["role"] for m in line["request"]["messages"]]


@pytest.mark.parametrize(("model", "path"), [("anth-test-model", "/v1/messages"),
                                             ("qwen-local", "/v1/chat/completions")])
async def test_tool_round_trip(stack: Stack, model: str, path: str) -> None:
    result = await stack.claude("RUN-TOOL: print the marker with Bash.", model)
    assert result["is_error"] is False, result
    assert result["result"] == f"Tool output: {TOOL_OUTPUT}"
    assert result["num_turns"] == 2
    first, second = stack.upstream.posts(path)
    if path == "/v1/messages":
        tool_use = second.body["messages"][-2]["content"][0]
        assert tool_use["name"] == "Bash" and tool_use["input"]["command"] == TOOL_COMMAND
        tool_result = second.body["messages"][-1]["content"][0]
        assert tool_result["type"] == "tool_result" and TOOL_OUTPUT in json.dumps(tool_result["content"])
    else:
        assert "system" not in _roles(second.body)[1:]
        call = second.body["messages"][-2]["tool_calls"][0]
        assert call["function"]["name"] == "Bash" and json.loads(call["function"]["arguments"])["command"] == TOOL_COMMAND
        assert second.body["messages"][-1]["role"] == "tool" and TOOL_OUTPUT in second.body["messages"][-1]["content"]


async def test_keep_setting_meets_the_strict_template(aiohttp_server: Any, tmp_path: Path) -> None:
    stack = await _stack(aiohttp_server, tmp_path, "keep")
    result = await stack.claude("Reply with pong.", "qwen-local")
    assert result["is_error"] is True
    assert STRICT_ERROR in json.dumps(result)
    refused = stack.upstream.posts("/v1/chat/completions")
    assert refused and "system" in _roles(refused[0].body)[1:]


def test_cli_is_the_pinned_version() -> None:
    pinned = json.loads((Path(__file__).parent / "agents" / "package.json").read_text())
    version = pinned["dependencies"]["@anthropic-ai/claude-code"]
    installed = json.loads((CLAUDE.parent.parent / "@anthropic-ai" / "claude-code" / "package.json").read_text())
    assert installed["version"] == version
    assert shutil.which(str(CLAUDE))
