"""The real Codex CLI (pinned in tests/agents/package.json) in ``codex exec`` mode against a live
router on loopback, which forwards to a scripted model (tests/codex_upstream.py) speaking OpenAI chat,
Anthropic Messages or the Responses API: plain text, and a full tool round trip in which the model
asks for ``exec_command``, Codex runs it and the model's answer quotes the command's output.

Skipped when node or the CLI is missing, except under ``CI`` where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmrouter.testing import make_config
from llmrouter.web.app import create_app
from tests.codex_upstream import (
    FAIL_PROMPT,
    MARKER,
    NAMESPACE_PROMPT,
    NAMESPACED_CALL,
    SIGNATURE,
    THINKING,
    TOOL_PROMPT,
    AgentUpstream,
)

CODEX = Path(__file__).parent / "agents" / "node_modules" / ".bin" / "codex"
RUN_TIMEOUT_S = 25.0


def _codex_or_skip() -> Path:
    if CODEX.exists() and shutil.which("node"):
        return CODEX
    if os.environ.get("CI"):
        pytest.fail(f"the Codex CLI is required under CI: run `npm install --prefix tests/agents` ({CODEX})")
    pytest.skip("Codex CLI not installed (npm install --prefix tests/agents)")


@pytest.fixture
async def stack(aiohttp_server: Any, tmp_path: Path) -> tuple[AgentUpstream, str]:
    """The scripted model and a router in front of it: models "oa-*" openai, "an-*" anthropic,
    "rs-*" openai-responses."""
    upstream = AgentUpstream()
    up = await aiohttp_server(upstream.app)
    base = f"http://127.0.0.1:{up.port}"
    config = make_config({
        "providers": [
            {"name": "oa", "format": "openai", "base_url": f"{base}/v1", "discover": False},
            {"name": "an", "format": "anthropic", "base_url": base, "discover": False},
            {"name": "rs", "format": "openai-responses", "base_url": f"{base}/v1", "discover": False},
        ],
        "routers": [{"type": "prefix", "model_prefix": "oa-", "provider": "oa"},
                    {"type": "prefix", "model_prefix": "an-", "provider": "an"},
                    {"type": "prefix", "model_prefix": "rs-", "provider": "rs"}],
    }, tmp_path)
    app = create_app(config, environ={"ROUTER_TEST_KEY": "unused"})
    router = await aiohttp_server(app)
    return upstream, f"http://127.0.0.1:{router.port}"


async def run_codex(router_url: str, model: str, prompt: str, home: Path) -> tuple[int, str, str]:
    """``codex exec`` against the router with a fresh CODEX_HOME; returns (exit code, stdout, stderr)."""
    codex = _codex_or_skip()
    codex_home = home / "codex-home"
    workdir = home / "work"
    codex_home.mkdir(exist_ok=True)
    workdir.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model_provider = "router"\n'
        "[model_providers.router]\n"
        'name = "llmrouter"\n'
        f'base_url = "{router_url}/v1"\n'
        'env_key = "ROUTER_TEST_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(codex_home), ROUTER_TEST_KEY="router-key", NO_COLOR="1")
    proc = await asyncio.create_subprocess_exec(
        str(codex), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
        "-C", str(workdir), "-m", model, prompt,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"codex exec did not finish within {RUN_TIMEOUT_S} s") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


FORMATS = [("oa-model", "openai"), ("an-model", "anthropic"), ("rs-model", "responses")]


@pytest.mark.parametrize(("model", "fmt"), FORMATS)
async def test_codex_plain_text(stack: tuple[AgentUpstream, str], tmp_path: Path, model: str, fmt: str) -> None:
    upstream, url = stack
    code, out, err = await run_codex(url, model, "say hi", tmp_path)
    assert code == 0, err[-3000:]
    assert f"hello from {fmt}" in out
    bodies = upstream.bodies(fmt)
    assert bodies and all(b["stream"] for b in bodies)


@pytest.mark.parametrize(("model", "fmt"), FORMATS)
async def test_codex_tool_round_trip(stack: tuple[AgentUpstream, str], tmp_path: Path, model: str, fmt: str) -> None:
    upstream, url = stack
    code, out, err = await run_codex(url, model, f"please {TOOL_PROMPT}", tmp_path)
    assert code == 0, err[-3000:]
    assert "tool said: " in out and MARKER in out.split("tool said: ", 1)[1], out[-2000:]
    bodies = upstream.bodies(fmt)
    assert len(bodies) >= 2
    first, second = bodies[0], bodies[-1]
    if fmt == "openai":
        assert first["messages"][0]["role"] == "system"
        assert any(t["function"]["name"] == "exec_command" for t in first["tools"])
        call = next(m for m in second["messages"] if m.get("tool_calls"))
        assert call["tool_calls"][0]["function"]["name"] == "exec_command"
        assert MARKER in next(m for m in second["messages"] if m["role"] == "tool")["content"]
    elif fmt == "anthropic":
        assert any(t["name"] == "exec_command" for t in first["tools"])
        assert not any(t.get("type") == "web_search" for t in first["tools"])  # hosted tool dropped
        # The signed thinking went to Codex as a reasoning item and came back as the same block.
        assistant = next(m for m in second["messages"] if m["role"] == "assistant")
        assert assistant["content"][0] == {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE}
        assert assistant["content"][1]["type"] == "tool_use"
    else:
        assert any(t.get("type") == "web_search" for t in first["tools"])  # hosted tool kept
        types = [i.get("type") for i in second["input"]]
        # The upstream's reasoning item went to Codex and came back verbatim.
        reasoning = next(i for i in second["input"] if i.get("type") == "reasoning")
        assert reasoning["encrypted_content"] == "opaque-upstream-blob"
        assert "function_call" in types and "function_call_output" in types


async def test_codex_namespaced_tool_call_from_a_chat_provider(stack: tuple[AgentUpstream, str],
                                                               tmp_path: Path) -> None:
    """Codex offers ``multi_agent_v1`` as a namespace tool; a chat model calls the flattened
    ``multi_agent_v1__wait_agent``; Codex must receive ``namespace`` + ``name`` and run its own
    tool (which rejects the made-up agent id: that error text is the proof it ran)."""
    upstream, url = stack
    code, out, err = await run_codex(url, "oa-model", f"please {NAMESPACE_PROMPT}", tmp_path)
    assert code == 0, err[-3000:]
    first, second = upstream.bodies("openai")[0], upstream.bodies("openai")[-1]
    assert NAMESPACED_CALL[0] in [t["function"]["name"] for t in first["tools"]]
    call = next(m for m in second["messages"] if m.get("tool_calls"))["tool_calls"][0]
    assert call["function"]["name"] == NAMESPACED_CALL[0]
    result = next(m for m in second["messages"] if m["role"] == "tool")["content"]
    assert "no-such-agent" in result and "unsupported" not in result.lower()
    assert "tool said: " in out


async def test_codex_sees_a_mid_stream_failure(stack: tuple[AgentUpstream, str], tmp_path: Path) -> None:
    """The upstream fails after the first bytes: Codex gets ``response.failed`` and reports it."""
    _, url = stack
    code, out, err = await run_codex(url, "oa-model", f"please {FAIL_PROMPT}", tmp_path)
    assert code != 0
    assert "upstream GPU on fire" in err
