"""Same-format forwarding: the upstream body built from the client's own JSON, without a canonical
round trip, for a request no plugin changed that goes to a provider of the client's format.

Agents send 50-500 KB per request, almost all of it the conversation so far. Converting that to
canonical models and back costs more than everything else the router does, and for an OpenAI
client talking to an OpenAI-compatible provider (or Anthropic to Anthropic) the round trip gives
back what the client sent. :func:`forward_body` returns that body directly: the client's
``messages`` (and ``tools``, ``system``...) objects as they were parsed, with the top-level fields
set exactly as the canonical path sets them (the routed model, ``stream`` and
``stream_options.include_usage``, the client's max-tokens key, the router's own fields such as
``plugins`` removed, ``null`` fields dropped).

It returns ``None`` (the caller builds the body the canonical way) whenever the canonical path
would send something other than the client's objects. The checks are structural and cheap (no
text is copied): for OpenAI, more than one leading system/developer message, any later one (the
canonical path folds or merges them; see :mod:`llmrouter.formats.system_messages`), content given
as a list of parts, a ``null`` or empty value the canonical path would omit or fill in, tool calls
with object arguments, ``reasoning_content``, ``response_format``; for Anthropic, two consecutive
messages of one role (merged), a list holding a single plain text block (sent as a string),
thinking without a signature (dropped), ``is_error: false``, ``output_config.format`` and the like.
The one difference the fast path keeps on purpose: OpenAI tool-call ``arguments`` are forwarded as
the client wrote them, where the canonical path re-serialises the same JSON object compactly.

``tests/test_passthrough.py`` compares both paths' upstream JSON over a corpus of requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmrouter.formats.base import ROUTER_FIELDS
from llmrouter.formats.gate import Gated

__all__ = ["PASSTHROUGH_FORMATS", "ClientBody", "forward_body", "kept_as_sent"]

PASSTHROUGH_FORMATS = frozenset({"openai", "anthropic"})
"""Client formats whose parsed body can be forwarded to a provider of the same format, and whose
raw bytes are what the request log keeps (their parse needs nothing but the body)."""

_KEPT_AS_SENT = PASSTHROUGH_FORMATS | {"openai-responses"}


def kept_as_sent(format_name: str, extra: dict[str, Any]) -> bool:
    """Whether the log and the events keep a request of ``format_name`` as the client's own JSON
    (``extra`` is the parsed request's): the pass-through formats, and a Responses request unless
    it continues a stored one (``previous_response_id``): replay has no response store, so that one
    is logged in canonical form, the stored turns included."""
    if format_name == "openai-responses":
        return "_previous_response_id" not in extra
    return format_name in _KEPT_AS_SENT


@dataclass(frozen=True, slots=True)
class ClientBody:
    """A chat request as the client sent it: its wire ``format``, the parsed JSON ``body`` and the
    ``raw`` bytes it was parsed from, and what the C-speed gate proved about it (``gated``, see
    :mod:`llmrouter.formats.gate`). Never modified."""

    format: str
    body: dict[str, Any]
    raw: bytes
    gated: Gated | None = None


def forward_body(client: ClientBody, model: str, stream: bool) -> dict[str, Any] | None:
    """The upstream body for a provider of ``client.format`` sending ``model``, or ``None`` when the
    canonical path must build it (see the module notes). ``stream`` is the request's ``stream``."""
    if client.format == "openai":
        return _openai(client.body, model, stream, client.gated)
    if client.format == "anthropic":
        return _anthropic(client.body, model, stream, client.gated)
    return None


# -- OpenAI Chat Completions ---------------------------------------------------------------------

_OPENAI_TOP = frozenset({
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "stream", "stream_options", "response_format", "metadata", "plugins",
})
_OPENAI_NEVER = ROUTER_FIELDS | {"max_tokens", "max_completion_tokens", "stream", "stream_options"}


def _openai(body: dict[str, Any], model: str, stream: bool, gated: Gated | None = None) -> dict[str, Any] | None:
    messages = body["messages"]
    get = body.get
    if not (gated is not None and gated.passthrough or _openai_messages_ok(messages)) \
            or get("response_format") is not None:
        return None
    tools = get("tools")
    if tools is not None and not (gated is not None and gated.tools
                                  or tools and all(_openai_tool_ok(t) for t in tools)):
        return None
    out: dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        parallel = body.get("parallel_tool_calls")
        if choice is not None and not isinstance(choice, str):
            function = choice.get("function")
            if not (isinstance(function, dict) and choice == {"type": "function",
                                                              "function": {"name": function.get("name")}}):
                return None
        if parallel is False and choice is None:
            choice = "auto"  # the canonical path records parallel=false on an implied "auto" choice
        if choice is not None:
            out["tool_choice"] = choice
            if parallel is not None:
                out["parallel_tool_calls"] = parallel
    if (value := get("max_completion_tokens")) is not None:
        out["max_completion_tokens"] = value
    elif (value := get("max_tokens")) is not None:
        out["max_tokens"] = value
    if (value := get("temperature")) is not None:
        out["temperature"] = value
    if (value := get("top_p")) is not None:
        out["top_p"] = value
    stop = get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop:
        out["stop"] = stop
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if (value := get("metadata")) is not None:
        out["metadata"] = value
    if not body.keys() <= _OPENAI_TOP:  # (the usual body has no other keys: no loop)
        for key, value in body.items():
            if key not in _OPENAI_TOP and key not in _OPENAI_NEVER:
                out.setdefault(key, value)
    return out


def _openai_messages_ok(messages: list[Any]) -> bool:
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system" and i == 0:
            if message.keys() != {"role", "content"} or not isinstance(message["content"], str):
                return False
        elif role == "user":
            if not isinstance(message.get("content"), str) or ("name" in message and message["name"] is None):
                return False
        elif role == "assistant":
            if not _openai_assistant_ok(message):
                return False
        elif role == "tool":
            if not isinstance(message.get("content"), str):
                return False
        else:  # a second leading or a late system/developer message: merged or folded canonically
            return False
    return True


def _openai_assistant_ok(message: dict[str, Any]) -> bool:
    if "reasoning_content" in message or ("name" in message and message["name"] is None):
        return False
    if "content" not in message:
        return False  # the canonical path sends "content": null or ""
    content = message["content"]
    calls = message.get("tool_calls")
    if "tool_calls" in message:
        if not calls or not all(_openai_call_ok(c) for c in calls):
            return False
        return content is None or (isinstance(content, str) and content != "")
    return isinstance(content, str)


def _openai_call_ok(call: Any) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    if call.get("type") != "function" or not isinstance(function, dict):
        return False
    arguments = function.get("arguments")
    return function.keys() <= {"name", "arguments"} and isinstance(arguments, str) and bool(arguments.strip())


def _openai_tool_ok(tool: Any) -> bool:
    if not isinstance(tool, dict) or tool.keys() != {"type", "function"} or tool["type"] != "function":
        return False
    function = tool["function"]
    return (isinstance(function.get("parameters"), dict)
            and ("description" not in function or isinstance(function["description"], str)))


# -- Anthropic Messages --------------------------------------------------------------------------

_ANTHROPIC_TOP = frozenset({
    "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences", "temperature",
    "top_p", "stream", "metadata", "thinking", "output_config", "plugins",
})
_TEXT_ONLY = frozenset({"type", "text"})
_PLAIN_BLOCKS = frozenset({"text", "tool_use", "redacted_thinking"})
_CHOICE_KEYS = frozenset({"type", "name", "disable_parallel_tool_use"})


def _anthropic(body: dict[str, Any], model: str, stream: bool, gated: Gated | None = None) -> dict[str, Any] | None:
    output_config = body.get("output_config")
    if output_config is not None and ("format" in output_config or not output_config):
        return None
    tools = body.get("tools")
    if tools is not None and not (gated is not None and gated.tools or all(_anthropic_tool_ok(t) for t in tools)):
        return None
    choice = body.get("tool_choice")
    if choice is not None and not _anthropic_choice_ok(choice):
        return None
    if not (gated is not None and gated.passthrough or _anthropic_messages_ok(body["messages"])):
        return None
    out: dict[str, Any] = {"model": model, "max_tokens": body["max_tokens"]}
    system = body.get("system")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    if system:
        out["system"] = system
    out["messages"] = body["messages"]
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    get = body.get
    if (value := get("temperature")) is not None:
        out["temperature"] = value
    if (value := get("top_p")) is not None:
        out["top_p"] = value
    if get("stop_sequences"):
        out["stop_sequences"] = body["stop_sequences"]
    if stream:
        out["stream"] = True
    for key in ("thinking", "metadata", "output_config"):
        if (value := get(key)) is not None:
            out[key] = value
    if not body.keys() <= _ANTHROPIC_TOP:  # (the usual body has no other keys: no loop)
        for key, value in body.items():
            if key not in _ANTHROPIC_TOP and key not in ROUTER_FIELDS and key not in out:
                out[key] = value
    return out


def _anthropic_choice_ok(choice: dict[str, Any]) -> bool:
    if not choice.keys() <= _CHOICE_KEYS or ("name" in choice and (choice.get("type") != "tool"
                                                                   or not choice["name"])):
        return False
    return choice.get("disable_parallel_tool_use", False) is not None


def _anthropic_tool_ok(tool: Any) -> bool:
    if "description" in tool and tool["description"] is None:
        return False
    server_tool = tool.get("type") not in (None, "custom")
    # A custom tool without a schema gets an empty one canonically; a server tool never has one.
    return ("input_schema" in tool) != server_tool and tool.get("input_schema", {}) is not None


def _anthropic_messages_ok(messages: list[Any]) -> bool:
    previous = None
    for message in messages:
        role = message["role"]
        if role == previous:
            return False  # the canonical path merges consecutive messages of one role
        previous = role
        content = message["content"]
        if isinstance(content, str):
            continue
        if not content or (len(content) == 1 and _plain_text(content[0])):
            return False
        if not all(_anthropic_block_ok(block) for block in content):
            return False
    return True


def _plain_text(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and block.keys() == _TEXT_ONLY


def _anthropic_block_ok(block: dict[str, Any], nested: bool = False) -> bool:
    kind = block.get("type")
    if kind in _PLAIN_BLOCKS:
        return kind != "tool_use" or isinstance(block.get("input"), dict)
    if kind == "thinking":
        return bool(block.get("signature"))
    if kind == "image":
        source = block.get("source")
        if source.get("type") == "base64":
            return source.keys() == {"type", "media_type", "data"} and bool(source["media_type"]) \
                and bool(source["data"])
        url = source.get("url")
        return source.keys() == {"type", "url"} and bool(url) and not url.startswith("data:")
    if kind == "tool_result":
        if nested or ("is_error" in block and block["is_error"] is not True):
            return False
        content = block.get("content", "")
        if isinstance(content, str):
            return "content" not in block or content is not None
        if not content or (len(content) == 1 and _plain_text(content[0])):
            return False
        return all(_anthropic_block_ok(inner, nested=True) for inner in content)
    return kind is not None and kind not in ("text", "tool_use")  # opaque blocks are forwarded verbatim
