"""System and developer messages that are not first in the conversation, for upstreams whose chat
templates reject them.

Open-model chat templates (Qwen 3.5/3.6, Gemma; served by llama.cpp, vLLM, Ollama) answer a system
message anywhere but first with a 400 ``System message must be at the beginning``. Claude Code sends
such messages (``role: "system"`` entries mid-conversation), and Codex sends several developer
messages up front. :func:`fold_system_messages` rewrites a canonical request so it has at most one
system prompt, first:

* Leading system messages (before the first user or assistant turn) are appended to
  ``request.system``, which formats send as the one leading system message.
* Any later system message becomes user text in place, wrapped as
  ``<system-reminder>\\n...\\n</system-reminder>`` (the shape Claude Code itself uses for reminders
  inside user turns, so the model can still tell it from what the user typed; text that already
  starts with ``<system-reminder>`` is not wrapped twice). It is merged with a neighbouring user turn
  so roles keep alternating: appended to the user turn just before it (and a user turn right after
  it joins that same turn, since removing the system message made the two adjacent), else put at
  the start of the user turn just after it (after any tool results, which must directly follow the
  assistant's tool call), else it becomes a user turn of its own.

The OpenAI and Ollama upstream formats apply it unless the provider sets ``late_system = "keep"``
(for upstreams that accept late system messages). Anthropic providers are not affected.
"""

from __future__ import annotations

from typing import Literal

from llmrouter.models import ChatRequest, ImagePart, Message, OpaquePart, Part, TextPart, ToolResultPart

LateSystem = Literal["user", "keep"]
"""Per-provider handling of late system messages: ``user`` (fold, the default) or ``keep`` (send in place)."""

REMINDER_OPEN = "<system-reminder>\n"
REMINDER_CLOSE = "\n</system-reminder>"

__all__ = ["REMINDER_CLOSE", "REMINDER_OPEN", "LateSystem", "fold_system_messages"]


def fold_system_messages(request: ChatRequest) -> ChatRequest:
    """``request`` with leading system messages merged into its system prompt and later ones turned
    into user text (see the module notes). Returns ``request`` itself when it has no system messages;
    otherwise a copy (the given request, its messages and parts are never modified)."""
    messages = request.messages
    if not any(message.role == "system" for message in messages):
        return request
    system = list(request.system or [])
    start = 0
    while start < len(messages) and messages[start].role == "system":
        system.extend(p for p in messages[start].content if isinstance(p, TextPart) and p.text)
        start += 1
    out: list[Message] = []
    pending: list[Part] = []  # converted text waiting for the next turn
    joined = False  # the last user turn took in a system message: a user turn right after joins it
    for message in messages[start:]:
        if message.role == "system":
            parts = _as_user_parts(message)
            if out and out[-1].role == "user" and not pending:
                out[-1] = out[-1].model_copy(update={"content": [*out[-1].content, *parts]})
                joined = True
            else:
                pending.extend(parts)
            continue
        if joined and message.role == "user":
            out[-1] = out[-1].model_copy(update={"content": [*out[-1].content, *message.content]})
            joined = False
            continue
        joined = False
        if pending:
            if message.role == "user":
                message = message.model_copy(update={"content": _after_tool_results(message.content, pending)})
            else:
                out.append(Message(role="user", content=pending))
            pending = []
        out.append(message)
    if pending:
        out.append(Message(role="user", content=pending))
    return request.model_copy(update={"system": system or None, "messages": out})


def _as_user_parts(message: Message) -> list[Part]:
    """A late system message as user content: its text wrapped once, then its images and opaque blocks
    (tool calls, tool results and thinking have no meaning in a system message and are dropped)."""
    text = "\n\n".join(p.text for p in message.content if isinstance(p, TextPart) and p.text)
    parts: list[Part] = []
    if text:
        if not text.lstrip().startswith(REMINDER_OPEN.rstrip()):
            text = f"{REMINDER_OPEN}{text}{REMINDER_CLOSE}"
        parts.append(TextPart(text=text))
    parts.extend(p for p in message.content if isinstance(p, ImagePart | OpaquePart))
    return parts


def _after_tool_results(content: list[Part], inserted: list[Part]) -> list[Part]:
    """``content`` with ``inserted`` placed after its leading tool results."""
    split = 0
    while split < len(content) and isinstance(content[split], ToolResultPart):
        split += 1
    return [*content[:split], *inserted, *content[split:]]
