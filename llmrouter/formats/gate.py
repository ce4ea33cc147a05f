"""A C-speed gate for the common shapes of a chat request's messages and tools.

An agent's request (~260 KB: 100 messages, 20 tools with JSON schemas) is walked in Python several
times before it is forwarded: the nesting-depth limit (``llmrouter.web.limits``), the parser's
deferral check (:mod:`llmrouter.lazy`) and the same-format forwarding check
(:mod:`llmrouter.formats.passthrough`). The gate validates ``messages`` (and ``tools``) against
``msgspec`` structs in one C call; when it accepts, those walks are skipped for what it typed.

Soundness: the structs accept only shapes the Python checks accept, with the same outcome.
Every struct forbids unknown fields (an unknown key could hold anything, deep JSON included);
strings that must not be empty, ids, literal types and nesting are all spelled out; free-form JSON
(tool schemas, Anthropic tool inputs) is typed as JSON of at most :data:`JSON_LEVELS` nested
containers, so the depth of everything the gate typed is bounded (:attr:`Gated.depth`). Shapes
whose Python rules the structs cannot express (images and their data-URL rules, ``developer``
messages, ``reasoning_content``, list contents in OpenAI messages, blocks the router carries
opaquely...) are simply not accepted: the Python path then runs as before, with its own errors.
Rules across fields or messages that only decide whether the client's body can be forwarded as
is (an OpenAI assistant's empty content, Anthropic roles in a row, a lone plain text block) are
checked on the converted structs and only clear :attr:`Gated.passthrough`.

Agents send the same tools with every request: a tool list whose JSON is that of one the gate
accepted lately is accepted again without converting it (:class:`_ToolsMemo`).

``tests/test_gate_property.py`` checks, for generated valid and invalid requests, that whenever
the gate accepts, the Python checks accept with identical results.
"""

from __future__ import annotations

from itertools import chain, compress
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from llmrouter.lazy import Convert, LazyConversation, Texts

__all__ = ["FEW", "JSON_LEVELS", "Gated", "anthropic", "openai"]

JSON_LEVELS = 10
"""How many containers deep the free-form JSON the gate accepts may nest (tool schemas, tool
inputs). Deeper JSON is not rejected by the router; the gate just leaves it to the Python path."""

_Json: Any = str | int | float | bool | None
for _ in range(JSON_LEVELS):
    _Json = str | int | float | bool | None | list[_Json] | dict[str, _Json]
_Object = dict[str, _Json]  # (an object of JSON_LEVELS + 1 levels at most)

FEW = 8
"""Bodies of at most this many messages and no tools are left to the Python checks, which cost
about what the gate does for them (read at call time: tests set it to 0)."""

_NonEmpty = Annotated[str, Meta(min_length=1)]


class Gated:
    """What the gate proved about a request body (read-only once made).

    ``typed``: the top-level keys whose whole value the gate typed, nested at most ``depth`` levels
    counting the body as 1; ``start``, ``starts`` and ``roles``: the deferred conversation's
    (:class:`~llmrouter.lazy.LazyConversation`, without images), for messages after ``start``
    leading system messages; ``passthrough``: the messages can be forwarded as the client sent
    them; ``tools``: the tool list converts without fail and can be forwarded as sent.
    """

    __slots__ = ("depth", "passthrough", "roles", "start", "starts", "tools", "typed")

    def __init__(self, typed: frozenset[str], depth: int, start: int, starts: list[int] | range,
                 roles: list[str], passthrough: bool, tools: bool) -> None:
        self.typed = typed
        self.depth = depth
        self.start = start
        self.starts = starts
        self.roles = roles
        self.passthrough = passthrough
        self.tools = tools

    def conversation(self, raw: list[Any], convert: Convert, texts: Texts) -> LazyConversation:
        """The messages after the leading system ones, deferred: what the parser's deferral check
        would give (the gate accepts no image)."""
        return LazyConversation(raw, self.starts, self.roles, convert, images=False, texts=texts)


class _Strict(Struct, forbid_unknown_fields=True, gc=False):
    """Base of the gate's structs: unknown keys are refused; no GC tracking (they are dropped at once)."""


# -- OpenAI Chat Completions -----------------------------------------------------------------------


class _Function(_Strict):
    name: _NonEmpty
    arguments: str  # (not blank: checked after the conversion, cheaper than a pattern for msgspec to run)


class _Call(_Strict):
    id: _NonEmpty
    type: Literal["function"]
    function: _Function


class _System(_Strict, tag_field="role", tag="system"):
    content: str


class _User(_Strict, tag_field="role", tag="user"):
    content: str
    name: str | UnsetType = UNSET


class _Assistant(_Strict, tag_field="role", tag="assistant"):
    content: str | None
    tool_calls: Annotated[list[_Call], Meta(min_length=1)] | UnsetType = UNSET
    name: str | UnsetType = UNSET


class _Tool(_Strict, tag_field="role", tag="tool"):
    tool_call_id: str
    content: str


class _FunctionSpec(_Strict):
    name: _NonEmpty
    parameters: _Object
    description: str | UnsetType = UNSET
    strict: bool | UnsetType = UNSET


class _ToolSpec(_Strict):
    type: Literal["function"]
    function: _FunctionSpec


class _OpenAIMessages(Struct, gc=False):
    """A body's messages (its other fields are ignored; a struct, not a bare ``list[...]``: msgspec
    caches a struct's type information, a generic alias costs microseconds a call to look at)."""

    messages: Annotated[list[_System | _User | _Assistant | _Tool], Meta(min_length=1)]


class _OpenAITools(Struct, gc=False):
    tools: Annotated[list[_ToolSpec], Meta(min_length=1)]


_OPENAI_DEPTH = 6  # body, messages, message, tool_calls, call, function
_OPENAI_TOOLS_DEPTH = 5 + JSON_LEVELS  # body, tools, tool, function, parameters, then the schema's JSON
_KIND = {_System: "s", _User: "u", _Assistant: "a", _Tool: "t"}
_CANONICAL_ROLE = {"u": "user", "a": "assistant", "t": "user"}
_content = attrgetter("content")
_role_of = attrgetter("role")


def openai(body: Any) -> Gated | None:
    """The gate for an OpenAI Chat Completions body, or ``None`` when its messages are not all of
    the common shapes: an optional first ``system`` message of string content, then ``user``
    (string content, optional name), ``assistant`` (string or null content, optional function
    tool calls with string arguments) and ``tool`` (string content) messages."""
    messages = body.get("messages") if type(body) is dict else None
    if type(messages) is list and len(messages) <= FEW and body.get("tools") is None:
        return None  # (few messages, no tools: see FEW)
    try:
        turns = msgspec.convert(body, _OpenAIMessages).messages
    except msgspec.ValidationError:
        return None
    kinds = "".join(map(_KIND.__getitem__, map(type, turns)))  # (one letter a message: C-speed scans)
    start = 1 if kinds[0] == "s" else 0
    if kinds.find("s", start) >= 0:
        return None  # (only a first system message is forwarded as is)
    starts: list[int] | range = range(start, len(kinds))
    roles = kinds[start:]
    if "tt" in roles:  # a tool result is a user message; a run of them is one
        starts = [i for i in starts if not (i > start and kinds[i] == "t" and kinds[i - 1] == "t")]
        roles = "".join([kinds[i] for i in starts])
    passthrough = _openai_assistants(turns, kinds)
    if passthrough is None:
        return None
    typed, depth, tools = _tools(body, _OpenAITools, _OPENAI_DEPTH, _OPENAI_TOOLS_DEPTH, _OPENAI_TOOLS_SEEN)
    return Gated(typed, depth, start, starts, list(map(_CANONICAL_ROLE.__getitem__, roles)), passthrough, tools)


def _openai_assistants(turns: list[Any], kinds: str) -> bool | None:
    """``None`` when a tool call's arguments are blank (the Python path decides about those), else
    whether accepted messages are forwarded as sent: no assistant message's content is one the
    canonical path fills in (``null`` without tool calls, ``""`` with them)."""
    passthrough = True
    for turn in compress(turns, map("a".__eq__, kinds)):
        calls = turn.tool_calls
        if calls is UNSET:
            if turn.content is None:
                passthrough = False
            continue
        if turn.content == "":
            passthrough = False
        for call in calls:
            arguments = call.function.arguments
            if not arguments or arguments.isspace():  # (str.isspace: what str.strip() strips)
                return None
    return passthrough


def _tools(body: dict[str, Any], schema: Any, depth: int, tools_depth: int,
           memo: _ToolsMemo) -> tuple[frozenset[str], int, bool]:
    """``(typed keys, their depth bound, tools accepted)`` once the messages are accepted."""
    tools = body.get("tools")
    if tools is None:
        return _MESSAGES, depth, False
    try:
        encoded: bytes | None = orjson.dumps(tools) if type(tools) is list else None
    except TypeError:  # (orjson's encode error: nesting beyond its limit; no such list is accepted)
        encoded = None
    if encoded is None or not memo.knows(encoded):
        try:
            msgspec.convert(body, schema)
        except msgspec.ValidationError:
            return _MESSAGES, depth, False
        if encoded is not None:
            memo.remember(encoded)
    return _MESSAGES_AND_TOOLS, max(depth, tools_depth), True


class _ToolsMemo:
    """The tool lists the gate accepted lately, as their JSON, the latest first (at most
    :data:`MEMO_TOOLS`).

    An agent sends the same tools, 20-40 JSON schemas, with every request. A list whose JSON
    (orjson's encoding: sequential writes, no allocation per value) is byte for byte that of a list
    accepted lately is accepted again without the conversion, which copies every schema. Equal
    bytes mean equal JSON values of equal types (``1``, ``1.0`` and ``true`` encode differently;
    keys in another order make another list, converted once), so the conversion would accept it."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: list[bytes] = []

    def knows(self, encoded: bytes) -> bool:
        """Whether ``encoded`` is the JSON of a tool list accepted lately."""
        seen = self._seen
        for i, known in enumerate(seen):
            if encoded == known:
                if i:
                    seen.insert(0, seen.pop(i))
                return True
        return False

    def remember(self, encoded: bytes) -> None:
        """Keep the JSON of an accepted list, the oldest forgotten past the bound."""
        self._seen.insert(0, encoded)
        del self._seen[MEMO_TOOLS:]


MEMO_TOOLS = 4
"""How many accepted tool lists each format's gate remembers."""
_OPENAI_TOOLS_SEEN = _ToolsMemo()


_MESSAGES = frozenset({"messages"})
_MESSAGES_AND_TOOLS = frozenset({"messages", "tools"})


# -- Anthropic Messages ----------------------------------------------------------------------------


class _CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: str | UnsetType = UNSET


class _Text(_Strict, tag_field="type", tag="text"):
    text: str
    cache_control: _CacheControl | UnsetType = UNSET


class _NestedText(_Strict):
    type: Literal["text"]  # (a field, not a tag: msgspec checks a tag only where a union needs it)
    text: str
    cache_control: _CacheControl | UnsetType = UNSET


class _ToolUse(_Strict, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: _Object
    cache_control: _CacheControl | UnsetType = UNSET


class _ToolResult(_Strict, tag_field="type", tag="tool_result"):
    tool_use_id: str
    content: str | Annotated[list[_NestedText], Meta(min_length=1)] | UnsetType = UNSET
    is_error: bool | UnsetType = UNSET
    cache_control: _CacheControl | UnsetType = UNSET


class _Thinking(_Strict, tag_field="type", tag="thinking"):
    thinking: str
    signature: _NonEmpty


class _RedactedThinking(_Strict, tag_field="type", tag="redacted_thinking"):
    data: str


_Blocks = Annotated[list[_Text | _ToolUse | _ToolResult | _Thinking | _RedactedThinking], Meta(min_length=1)]


class _AnthropicMessage(_Strict):
    role: Literal["user", "assistant"]
    content: str | _Blocks


class _AnthropicToolSpec(_Strict):
    name: _NonEmpty
    input_schema: _Object
    description: str | UnsetType = UNSET
    cache_control: _CacheControl | UnsetType = UNSET


class _AnthropicMessages(Struct, gc=False):
    messages: Annotated[list[_AnthropicMessage], Meta(min_length=1)]


class _AnthropicTools(Struct, gc=False):
    tools: Annotated[list[_AnthropicToolSpec], Meta(min_length=1)]


_ANTHROPIC_TOOLS_SEEN = _ToolsMemo()
_ANTHROPIC_DEPTH = 6 + JSON_LEVELS  # body, messages, message, content, block, input, then its JSON
_ANTHROPIC_TOOLS_DEPTH = 4 + JSON_LEVELS  # body, tools, tool, input_schema, then its JSON


def anthropic(body: Any) -> Gated | None:
    """The gate for an Anthropic Messages body, or ``None`` when its messages are not all of the
    common shapes: ``user`` and ``assistant`` messages of string content or of ``text``,
    ``tool_use``, ``tool_result`` (string or text content), signed ``thinking`` and
    ``redacted_thinking`` blocks (``cache_control`` of type ``ephemeral`` allowed)."""
    messages = body.get("messages") if type(body) is dict else None
    if type(messages) is list and len(messages) <= FEW and body.get("tools") is None:
        return None  # (few messages, no tools: see FEW)
    try:
        turns = msgspec.convert(body, _AnthropicMessages).messages
    except msgspec.ValidationError:
        return None
    roles = list(map(_role_of, turns))  # (msgspec's own strings for the literal: compared by identity)
    typed, depth, tools = _tools(body, _AnthropicTools, _ANTHROPIC_DEPTH, _ANTHROPIC_TOOLS_DEPTH,
                                 _ANTHROPIC_TOOLS_SEEN)
    return Gated(typed, depth, 0, range(len(roles)), roles, _anthropic_passthrough(turns, roles), tools)


def _anthropic_passthrough(turns: list[Any], roles: list[str]) -> bool:
    """Whether accepted messages are forwarded as sent: roles alternate (the canonical path merges
    a run of one role), no content list is a lone plain text block (sent as a string) and no tool
    result says ``is_error: false`` (dropped)."""
    evens, odds = roles[0::2], roles[1::2]
    if evens.count(roles[0]) != len(evens) or (odds and (odds[0] == roles[0] or odds.count(odds[0]) != len(odds))):
        return False
    contents = list(filter(list.__instancecheck__, map(_content, turns)))  # (the others are strings)
    for content in contents:
        if len(content) == 1 and _lone_plain_text(content):
            return False
    for block in filter(_ToolResult.__instancecheck__, chain.from_iterable(contents)):
        if block.is_error is False or _lone_plain_text(block.content):
            return False
    return True


def _lone_plain_text(content: Any) -> bool:
    return type(content) is list and len(content) == 1 and type(content[0]) in (_Text, _NestedText) \
        and content[0].cache_control is UNSET
