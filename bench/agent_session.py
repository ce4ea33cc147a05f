"""A generated coding-agent session: the request bodies an agent sends, turn after turn.

Every request repeats the whole conversation so far, as agents do: a ~8 KB system prompt, 20
tools with JSON schemas, then for each earlier turn a user message (or tool results) of about
2 KB and an assistant reply of about 1 KB, some of them tool calls. The text is pseudo-random
words from a fixed vocabulary and code-like lines, seeded, so it compresses about as well as
real prose and code do and every run produces the same bytes.

``python bench/agent_session.py [TURNS]`` prints the size of each request.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from typing import Any

SYSTEM_BYTES = 8_000
TOOL_COUNT = 20
USER_BYTES = 2_000
ASSISTANT_BYTES = 1_000


class _Text:
    """Seeded prose and code of a chosen length."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(3000)]

    def prose(self, size: int) -> str:
        out: list[str] = []
        length = 0
        while length < size:
            word = self.words[min(int(self.rng.paretovariate(1.1)) - 1, len(self.words) - 1)
                              if self.rng.random() < 0.5 else self.rng.randrange(len(self.words))]
            out.append(word)
            length += len(word) + 1
        return " ".join(out)[:size]

    def code(self, size: int) -> str:
        lines: list[str] = []
        length = 0
        while length < size:
            name, arg = self.rng.choice(self.words), self.rng.choice(self.words)
            line = f"    {name} = {arg}({self.rng.randint(0, 9999)}, '{self.rng.choice(self.words)}')"
            lines.append(line)
            length += len(line) + 1
        return "\n".join(lines)[:size]


def _tools(text: _Text) -> list[dict[str, Any]]:
    tools = []
    for i in range(TOOL_COUNT):
        props = {text.rng.choice(text.words) + str(j): {"type": "string", "description": text.prose(80)}
                 for j in range(4)}
        tools.append({"type": "function", "function": {
            "name": f"tool_{i}_{text.rng.choice(text.words)}", "description": text.prose(200),
            "parameters": {"type": "object", "properties": props, "required": list(props)[:2]}}})
    return tools


def agent_session(turns: int = 80, seed: int = 10, model: str = "agent-model") -> Iterator[dict[str, Any]]:
    """The ``turns`` OpenAI Chat Completions bodies of one agent session, in order.

    Request ``k`` holds the system prompt, the tools and ``k`` earlier user/assistant exchanges
    followed by the new user message or tool results.
    """
    text = _Text(random.Random(seed))
    tools = _tools(text)
    messages: list[dict[str, Any]] = [{"role": "system", "content": text.prose(SYSTEM_BYTES)}]
    pending_call: str | None = None
    for turn in range(turns):
        if pending_call is not None:
            messages.append({"role": "tool", "tool_call_id": pending_call, "content": text.code(USER_BYTES)})
        else:
            messages.append({"role": "user", "content": text.prose(USER_BYTES)})
        yield {"model": model, "messages": list(messages), "tools": tools, "temperature": 0.2,
               "max_tokens": 4096}
        if turn % 3 == 1:
            pending_call = f"call_{turn}"
            args = json.dumps({"path": f"src/{text.rng.choice(text.words)}.py", "content": text.code(ASSISTANT_BYTES)})
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": pending_call, "type": "function",
                 "function": {"name": tools[turn % TOOL_COUNT]["function"]["name"], "arguments": args}}]})
        else:
            pending_call = None
            messages.append({"role": "assistant", "content": text.prose(ASSISTANT_BYTES)})


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 80
    sizes = [len(json.dumps(body, separators=(",", ":"))) for body in agent_session(count)]
    print(f"{count} requests, {sum(sizes):,} bytes; first {sizes[0]:,}, last {sizes[-1]:,}")
