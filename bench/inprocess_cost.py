"""CPU per agent-sized request with the router in-process: a quick A/B check between branches.

Serves the router on an aiohttp test server (echo provider, request log on, no dashboard, no
access log) and sends the bench's agent conversation, as a chat request or as the Responses
request Codex would send, 3 × 100 times; prints the best process CPU per request (router, its log
writer thread and the client together). Not a substitute for ``run.py``: no upstream, one process.

``python bench/inprocess_cost.py --shape responses`` (or ``--shape chat``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402  (a sibling script, not a package)

from llmrouter.config import parse_config  # noqa: E402
from llmrouter.web.app import create_app  # noqa: E402


def responses_body() -> dict[str, Any]:
    """The agent workload's conversation as a Responses request (instructions, input items, tools)."""
    chat = loadgen.request_body("openai", False, workload="agent")
    items: list[dict[str, Any]] = []
    instructions = None
    for message in chat["messages"]:
        role, content = message["role"], message.get("content")
        if role == "system":
            instructions = content
        elif role == "tool":
            output = content if isinstance(content, str) else orjson.dumps(content).decode()
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"], "output": output})
        else:
            if content:
                text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
                kind = "input_text" if role == "user" else "output_text"
                items.append({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
            for call in message.get("tool_calls") or []:
                items.append({"type": "function_call", "call_id": call["id"], "name": call["function"]["name"],
                              "arguments": call["function"]["arguments"]})
    tools = [{"type": "function", "name": t["function"]["name"], "description": t["function"].get("description", ""),
              "parameters": t["function"]["parameters"]} for t in chat["tools"]]
    return {"model": "m", "instructions": instructions, "input": items, "tools": tools, "store": False}


async def measure(shape: str) -> tuple[int, float]:
    """(body size, best CPU µs per request)."""
    workdir = tempfile.mkdtemp()
    config = parse_config({"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback"}],
                           "logging": {"enabled": True, "path": workdir + "/requests.jsonl"},
                           "server": {"access_log": False}})
    path = "/v1/chat/completions" if shape == "chat" else "/v1/responses"
    body = orjson.dumps(loadgen.request_body("openai", False, workload="agent") if shape == "chat"
                        else responses_body())
    headers = {"content-type": "application/json"}
    best = float("inf")
    async with TestClient(TestServer(create_app(config))) as client:
        for _ in range(30):  # warm-up
            resp = await client.post(path, data=body, headers=headers)
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"{path}: {resp.status} {await resp.text()}")
        for _ in range(3):
            started = time.process_time()
            for _ in range(100):
                resp = await client.post(path, data=body, headers=headers)
                await resp.read()
            best = min(best, (time.process_time() - started) / 100 * 1e6)
    return len(body), best


def main(argv: list[str] | None = None) -> int:
    """Measure and print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("chat", "responses"), default="responses")
    args = parser.parse_args(argv)
    size, cpu_us = asyncio.run(measure(args.shape))
    print(f"{args.shape}: {size} byte body, {cpu_us:.0f} us of process CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
