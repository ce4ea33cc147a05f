"""A tokenizer-free estimate of a request's input tokens (``POST /v1/messages/count_tokens`` for
providers that cannot count).

It is a heuristic, not a tokenizer: no vendor's vocabulary is shipped or downloaded. The rules:

* ASCII text counts one token per four characters (rounded up per text); every non-ASCII character
  counts as one token (about right for CJK, generous for accented Latin). English prose and code
  land within about a quarter of what real tokenizers report; over-counting is the safer error for
  a client deciding when its context is full.
* Each message adds :data:`MESSAGE_OVERHEAD` (role and turn markers); the request adds
  :data:`REQUEST_OVERHEAD`.
* Images count :data:`IMAGE_TOKENS` each (what Anthropic charges for an image of about 1.15
  megapixels, the size most clients scale to), whatever their size.
* Tools count their name, description and JSON schema as text, plus :data:`TOOLS_OVERHEAD` once
  when any tool is offered (the tool-use instructions a provider adds).
* Tool calls count their name and arguments; tool results their content; thinking only in the last
  message (earlier turns' thinking is not part of the context at Anthropic).
* Opaque blocks count their plain-text fallback when they have one; otherwise their JSON text, with
  each long base64 ``data`` payload counted as one image.
"""

from __future__ import annotations

from typing import Any

from llmrouter.jsonutil import dumps_str
from llmrouter.models import (
    ChatRequest,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
)

__all__ = ["IMAGE_TOKENS", "MESSAGE_OVERHEAD", "REQUEST_OVERHEAD", "TOOLS_OVERHEAD", "estimate_input_tokens",
           "estimate_text_tokens"]

IMAGE_TOKENS = 1600
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3
TOOLS_OVERHEAD = 350
_CHARS_PER_TOKEN = 4
_PAYLOAD_MIN_CHARS = 1000  # a ``data`` string this long is a base64 payload, not text


def estimate_text_tokens(text: str) -> int:
    """Tokens for one text: ASCII characters / 4 (rounded up) plus one per non-ASCII character."""
    if not text:
        return 0
    if text.isascii():
        return -(-len(text) // _CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // _CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def estimate_input_tokens(request: ChatRequest) -> int:
    """The estimated input tokens of ``request`` (system, messages, tools; see the module notes)."""
    total = REQUEST_OVERHEAD + sum(estimate_text_tokens(p.text) for p in request.system or [])
    last = len(request.messages) - 1
    for index, message in enumerate(request.messages):
        total += _message_tokens(message, last_message=index == last)
    if request.tools:
        total += TOOLS_OVERHEAD
        for tool in request.tools:
            total += estimate_text_tokens(tool.name) + estimate_text_tokens(tool.description or "")
            total += estimate_text_tokens(dumps_str(tool.input_schema))
            if tool.extra:
                total += estimate_text_tokens(dumps_str(tool.extra))
    return total


def _message_tokens(message: Message, *, last_message: bool) -> int:
    return MESSAGE_OVERHEAD + sum(_part_tokens(part, last_message) for part in message.content)


def _part_tokens(part: Part, last_message: bool) -> int:
    if isinstance(part, TextPart):
        return estimate_text_tokens(part.text)
    if isinstance(part, ImagePart):
        return IMAGE_TOKENS
    if isinstance(part, ToolUsePart):
        return estimate_text_tokens(part.name) + estimate_text_tokens(part.arguments_json())
    if isinstance(part, ToolResultPart):
        return sum(_part_tokens(inner, last_message) for inner in part.content)
    if isinstance(part, ThinkingPart):
        return estimate_text_tokens(part.thinking) if last_message else 0
    if isinstance(part, OpaquePart):
        if part.fallback_text is not None:
            return estimate_text_tokens(part.fallback_text)
        return _json_tokens(part.data)
    return 0


def _json_tokens(value: Any, key: str = "") -> int:
    """Tokens for a JSON value read as text, long base64 ``data`` strings counting as an image each."""
    if isinstance(value, str):
        if key == "data" and len(value) >= _PAYLOAD_MIN_CHARS:
            return IMAGE_TOKENS
        return estimate_text_tokens(value)
    if isinstance(value, dict):
        return sum(estimate_text_tokens(k) + _json_tokens(v, k) for k, v in value.items())
    if isinstance(value, list):
        return sum(_json_tokens(item) for item in value)
    return 1 if value is not None else 0
