"""OpenAI Chat Completions requests as a client sends them, parsed into a canonical
:class:`~llmrouter.models.ChatRequest` (every problem a 400 naming the field's path)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter import lazy as lazy_module
from llmrouter.errors import InvalidRequest
from llmrouter.formats.base import apply_parallel_tool_calls, image_part, image_url_ok, tool_call_part
from llmrouter.formats.checked import checked_message, checked_request, checked_text
from llmrouter.formats.fields import array as _array
from llmrouter.formats.fields import boolean as _boolean
from llmrouter.formats.fields import integer as _integer
from llmrouter.formats.fields import invalid as _fail
from llmrouter.formats.fields import kind_of
from llmrouter.formats.fields import number as _number
from llmrouter.formats.fields import obj as _object
from llmrouter.formats.fields import require as _require
from llmrouter.formats.fields import rest as _rest
from llmrouter.formats.fields import string as _string
from llmrouter.formats.gate import Gated
from llmrouter.formats.openai_options import function_of as _function_of
from llmrouter.formats.openai_options import parse_plugins as _plugins
from llmrouter.formats.openai_options import parse_response_format as _response_format
from llmrouter.formats.openai_options import parse_stop as _stop
from llmrouter.formats.openai_options import parse_tool_choice as _tool_choice
from llmrouter.formats.openai_options import parse_tools as _tools
from llmrouter.formats.openai_options import tool_ok as _tool_ok
from llmrouter.lazy import LazyConversation, LazyList, defer
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

# Top-level request fields that have a canonical slot (everything else goes to ``extra``).
_CANONICAL_FIELDS = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "response_format",
        "metadata",
        "plugins",
    }
)
OPAQUE_PART_TYPES = frozenset({"input_audio", "file"})
"""User content part types OpenAI documents that have no canonical slot: carried as
:class:`~llmrouter.models.OpaquePart` instead of being rejected."""

# Known keys of each wire object (module constants: a set literal in a call is rebuilt every time).
_TEXT_KEYS = frozenset({"type", "text"})
_URL_KEYS = frozenset({"url"})
_CALL_KEYS = frozenset({"id", "type", "function"})
_ASSISTANT_KEYS = frozenset({"role", "content", "tool_calls", "reasoning_content", "name"})
_TOOL_MESSAGE_KEYS = frozenset({"role", "tool_call_id", "content"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_SYSTEM_ROLES = ("system", "developer")
_PLAIN_ROLES = ("user", "assistant")
_NAME_TYPES = (str, type(None))


# ---------------------------------------------------------------------------------------------
# Client requests -> ChatRequest
# ---------------------------------------------------------------------------------------------


def _text_parts(content: Any, path: str) -> list[TextPart]:
    """System/tool content: a string or a list of text parts."""
    if isinstance(content, str):
        return [checked_text(content)]
    parts: list[TextPart] = []
    for i, raw in enumerate(_array(content, path)):
        part_path = f"{path}[{i}]"
        raw = _object(raw, part_path)
        kind = _require(raw, "type", f"{part_path}.type")
        if kind != "text":
            raise _fail(
                f"{part_path}.type", f"unsupported content part type {kind!r} (only 'text' is allowed here)"
            )
        parts.append(_text_part(raw, part_path))
    return parts


def _text_part(raw: dict[str, Any], path: str) -> TextPart:
    """One ``{"type": "text", "text": ...}`` content part; other keys are kept in ``extra``."""
    return checked_text(_string(_require(raw, "text", f"{path}.text"), f"{path}.text"), _rest(raw, _TEXT_KEYS))


def _image_part(raw: dict[str, Any], path: str) -> ImagePart:
    image = _object(_require(raw, "image_url", f"{path}.image_url"), f"{path}.image_url")
    url = _string(_require(image, "url", f"{path}.image_url.url"), f"{path}.image_url.url", non_empty=True)
    return image_part(url, f"{path}.image_url.url", _rest(image, _URL_KEYS))


def _user_parts(content: Any, path: str) -> list[Part]:
    if isinstance(content, str):
        return [checked_text(content)]
    parts: list[Part] = []
    for i, raw in enumerate(_array(content, path)):
        part_path = f"{path}[{i}]"
        raw = _object(raw, part_path)
        kind = _require(raw, "type", f"{part_path}.type")
        if kind == "text":
            parts.append(_text_part(raw, part_path))
        elif kind == "image_url":
            parts.append(_image_part(raw, part_path))
        elif isinstance(kind, str) and kind in OPAQUE_PART_TYPES:  # (a list is unhashable)
            parts.append(OpaquePart(format="openai", data=raw))
        else:
            raise _fail(f"{part_path}.type", f"unknown content part type {kind!r}")
    return parts


def _tool_use(raw: Any, path: str) -> ToolUsePart:
    raw = _object(raw, path)
    call_id = _string(_require(raw, "id", f"{path}.id"), f"{path}.id", non_empty=True)
    function, name = _function_of(raw, path, "tool call")
    arguments = function.get("arguments", "")
    extra = _rest(raw, _CALL_KEYS)
    if not isinstance(arguments, dict):
        arguments = _string(arguments, f"{path}.function.arguments")
    return tool_call_part(call_id, name, arguments, extra)


def _assistant(raw: dict[str, Any], path: str) -> Message:
    parts: list[Part] = []
    extra = _rest(raw, _ASSISTANT_KEYS)
    reasoning = raw.get("reasoning_content")
    if reasoning is not None:
        parts.append(ThinkingPart(thinking=_string(reasoning, f"{path}.reasoning_content")))
    content = raw.get("content")
    if isinstance(content, str):
        if content:
            parts.append(checked_text(content))
    elif content is not None:
        for i, item in enumerate(_array(content, f"{path}.content")):
            part_path = f"{path}.content[{i}]"
            item = _object(item, part_path)
            kind = _require(item, "type", f"{part_path}.type")
            if kind == "text":
                text = _string(_require(item, "text", f"{part_path}.text"), f"{part_path}.text")
                parts.append(checked_text(text, _rest(item, _TEXT_KEYS)))
            elif kind == "refusal":
                extra.setdefault(
                    "refusal",
                    _string(_require(item, "refusal", f"{part_path}.refusal"), f"{part_path}.refusal"),
                )
            else:
                raise _fail(f"{part_path}.type", f"unknown content part type {kind!r}")
    calls = raw.get("tool_calls")
    if calls is not None:
        parts.extend(
            _tool_use(call, f"{path}.tool_calls[{i}]")
            for i, call in enumerate(_array(calls, f"{path}.tool_calls"))
        )
    return checked_message("assistant", parts, _name(raw, path), extra)


def _name(raw: dict[str, Any], path: str) -> str | None:
    name = raw.get("name")
    return None if name is None else _string(name, f"{path}.name")


def _tool_result(raw: dict[str, Any], path: str) -> ToolResultPart:
    call_id = _string(_require(raw, "tool_call_id", f"{path}.tool_call_id"), f"{path}.tool_call_id")
    content = raw.get("content")
    parts = [] if content is None else _text_parts(content, f"{path}.content")
    return ToolResultPart(
        tool_use_id=call_id, content=parts, extra=_rest(raw, _TOOL_MESSAGE_KEYS)
    )


def _messages(raw_messages: Any, gated: Gated | None) -> tuple[list[TextPart] | None,
                                                               list[Message] | LazyConversation]:
    """The system prompt (the leading system/developer messages) and the conversation after it, deferred
    (:mod:`llmrouter.lazy`) when :func:`deferrable` or the gate (``gated``) proves it converts."""
    if type(raw_messages) is not list:
        raw_messages = _array(raw_messages, "messages")
    if not raw_messages:
        raise _fail("messages", "must contain at least one message")
    system: list[TextPart] = []
    start = 0
    for i, raw in enumerate(raw_messages):
        if type(raw) is dict:  # (the usual messages, without the field paths only an error message needs)
            role = raw.get("role", _MISSING)
            if role is not _MISSING and role not in _SYSTEM_ROLES:
                break
            if type(content := raw.get("content")) is str and role is not _MISSING:
                system.append(checked_text(content))  # (what the lines below make of it)
                start = i + 1
                continue
        path = f"messages[{i}]"
        raw = _object(raw, path)
        if _require(raw, "role", f"{path}.role") not in _SYSTEM_ROLES:
            break
        system.extend(_text_parts(_require(raw, "content", f"{path}.content"), f"{path}.content"))
        start = i + 1
    lazy = None
    if len(raw_messages) - start > lazy_module.SMALL:
        lazy = gated.conversation(raw_messages, _turns, _texts) if gated is not None and gated.start == start \
            else deferrable(raw_messages, start)
    return (system or None), lazy if lazy is not None else _turns(raw_messages, start, len(raw_messages))


def _turns(raw_messages: list[Any], start: int, stop: int) -> list[Message]:
    """The canonical messages of ``raw_messages[start:stop]`` (after the leading system messages):
    a later system/developer message stays in place, consecutive ``tool`` messages become one user
    message."""
    messages: list[Message] = []
    previous_role = None
    for i in range(start, stop):
        raw = raw_messages[i]
        if type(raw) is dict and type(content := raw.get("content")) is str and raw.keys() <= _MESSAGE_KEYS \
                and (role := raw.get("role")) in _PLAIN_ROLES and type(name := raw.get("name")) in _NAME_TYPES:
            # A plain user or assistant message (string content, no other keys): built as below, without
            # the field paths only an error message needs.
            plain: list[Part] = [checked_text(content)] if content or role == "user" else []
            messages.append(checked_message(role, plain, name, {}))
            previous_role = role
            continue
        path = f"messages[{i}]"
        raw = _object(raw, path)
        role = _require(raw, "role", f"{path}.role")
        if role in _SYSTEM_ROLES:
            parts = _text_parts(_require(raw, "content", f"{path}.content"), f"{path}.content")
            extra = _rest(raw, _MESSAGE_KEYS)
            messages.append(checked_message("system", list(parts), _name(raw, path), extra))
        elif role == "user":
            parts = _user_parts(_require(raw, "content", f"{path}.content"), f"{path}.content")
            messages.append(checked_message("user", parts, _name(raw, path), _rest(raw, _MESSAGE_KEYS)))
        elif role == "assistant":
            messages.append(_assistant(raw, path))
        elif role == "tool":
            result = _tool_result(raw, path)
            if previous_role == "tool":
                messages[-1].content.append(result)
            else:
                messages.append(checked_message("user", [result]))
        else:
            raise _fail(f"{path}.role", f"unknown role {role!r}")
        previous_role = role
    return messages


_ROLES = {"user": "user", "assistant": "assistant", "tool": "user", "system": "system", "developer": "system"}
_MISSING = object()


def deferrable(raw_messages: list[Any], start: int) -> LazyConversation | None:
    """``raw_messages[start:]`` as a :class:`~llmrouter.lazy.LazyConversation` when its conversion
    (:func:`_turns`) is certain to succeed, else ``None`` (convert at once, raising the usual 400).

    Conservative: plain type checks, over JSON values (a parsed body), of the shapes the converter
    accepts without complaint; an unusual but valid message merely means converting at once.
    """
    starts: list[int] = []
    roles: list[str] = []
    images = False
    previous = None
    for i in range(start, len(raw_messages)):
        raw = raw_messages[i]
        if type(raw) is not dict:
            return None
        role = raw.get("role")
        name = raw.get("name")
        if type(role) is not str or role not in _ROLES or not (name is None or type(name) is str):
            return None
        content = raw.get("content", _MISSING)
        if role == "user":
            if type(content) is not str:  # (the usual case needs no call)
                verdict = _user_content_ok(content)
                if verdict is None:
                    return None
                images = images or verdict
        elif role == "assistant":
            if not (type(content) is str and raw.get("tool_calls") is None
                    and raw.get("reasoning_content") is None) and not _assistant_ok(raw):
                return None
        elif role == "tool":
            if type(raw.get("tool_call_id")) is not str or not (content is None or content is _MISSING
                                                                  or _texts_ok(content)):
                return None
        elif not _texts_ok(content):  # a later system/developer message
            return None
        if not (role == "tool" and previous == "tool"):  # consecutive tool results share a message
            starts.append(i)
            roles.append(_ROLES[role])
        previous = role
    return LazyConversation(raw_messages, starts, roles, _turns, images=images, texts=_texts)


_NO_TEXT = {"user": OPAQUE_PART_TYPES | {"image_url"}, "assistant": frozenset({"refusal"})}
"""The parts without text each role may hold (any other role: text parts only)."""
_NONE: frozenset[str] = frozenset()


def _texts(raw_messages: list[Any], start: int, stop: int, nested: bool) -> list[str] | None:
    """The texts of ``raw_messages[start:stop]`` as :func:`_turns` would convert them (see
    :data:`llmrouter.lazy.Texts`): tool results (``nested`` only) and user/system text as written,
    an assistant's text unless empty; ``None`` at anything unexpected."""
    texts: list[str] = []
    add = texts.append
    for i in range(start, stop):
        raw = raw_messages[i]
        if type(raw) is not dict:
            return None
        role = raw.get("role")
        content = raw.get("content")
        if type(role) is not str or role not in _ROLES:
            return None
        if role == "tool" and (not nested or content is None):
            continue
        if type(content) is str:
            if content or role != "assistant":
                add(content)
            continue
        if content is None and role == "assistant":
            continue
        if type(content) is not list:
            return None
        skip = _NO_TEXT.get(role, _NONE)
        for part in content:
            kind = part.get("type") if type(part) is dict else None
            if kind == "text" and type(part.get("text")) is str:
                add(part["text"])
            elif type(kind) is not str or kind not in skip:
                return None
    return texts


def _texts_ok(content: Any) -> bool:
    """A string or a list of well-formed text parts."""
    if type(content) is str:
        return True
    return type(content) is list and all(_text_ok(part) for part in content)


def _text_ok(part: Any) -> bool:
    return type(part) is dict and part.get("type") == "text" and type(part.get("text")) is str


def _user_content_ok(content: Any) -> bool | None:
    """Whether user ``content`` holds an image when it converts without fail, else ``None``."""
    if type(content) is str:
        return False
    if type(content) is not list:
        return None
    images = False
    for part in content:
        kind = part.get("type") if type(part) is dict else None
        if _text_ok(part) or (type(kind) is str and kind in OPAQUE_PART_TYPES):
            continue
        if kind != "image_url":
            return None
        image = part.get("image_url")
        url = image.get("url") if type(image) is dict else None
        if type(url) is not str or not url or not image_url_ok(url):
            return None
        images = True
    return images


def _assistant_ok(raw: dict[str, Any]) -> bool:
    reasoning = raw.get("reasoning_content")
    content = raw.get("content")
    if not (reasoning is None or type(reasoning) is str):
        return False
    if not (content is None or type(content) is str):
        if type(content) is not list:
            return False
        for part in content:
            if not (_text_ok(part) or (type(part) is dict and part.get("type") == "refusal"
                                       and type(part.get("refusal")) is str)):
                return False
    calls = raw.get("tool_calls")
    return calls is None or (type(calls) is list and all(_call_ok(call) for call in calls))


def _call_ok(call: Any) -> bool:
    if type(call) is not dict or call.get("type", "function") != "function":
        return False
    call_id = call.get("id")
    function = call.get("function")
    if type(call_id) is not str or not call_id or type(function) is not dict:
        return False
    name = function.get("name")
    arguments = function.get("arguments", "")
    return type(name) is str and bool(name) and type(arguments) in (str, dict)


_SCALAR_FIELDS = (("temperature", _number), ("top_p", _number), ("stop", lambda value, key: _stop(value)),
                  ("stream", _boolean))
"""Top-level fields checked by one function each, in the order of their checks."""
_USUAL_FIELDS = frozenset({"model", "messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens",
                           "temperature", "top_p", "stream", "stream_options"})
"""The fields most requests are made of: a body of no others skips the checks of the rest (``n``,
``parallel_tool_calls``, ``stop``, ``response_format``, ``metadata``, ``plugins``), absent."""
_USUAL_SCALAR_FIELDS = tuple((key, check) for key, check in _SCALAR_FIELDS if key in _USUAL_FIELDS)


def parse_chat_request(body: Any, headers: Mapping[str, str] | None = None, gated: Gated | None = None) -> ChatRequest:
    """Validate an OpenAI Chat Completions request body and convert it to a :class:`ChatRequest`
    (``gated``: what :func:`llmrouter.formats.gate.openai` proved about ``body``, if it ran;
    ``headers``, the client's, are not read: the signature is :meth:`ClientFormat.parse_request`'s).

    :raises InvalidRequest: naming the offending field path.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {kind_of(body)}")
    get = body.get
    model = get("model")
    if type(model) is not str or not model:  # (the checks with their messages only when they fail)
        model = _string(_require(body, "model", "model"), "model", non_empty=True)
    system, messages = _messages(body["messages"] if "messages" in body else _require(body, "messages", "messages"),
                                 gated)
    extra = {} if body.keys() <= _CANONICAL_FIELDS else _rest(body, _CANONICAL_FIELDS)
    rare = not body.keys() <= _USUAL_FIELDS  # (else the checks of the other fields have nothing to check)
    lazy = messages if isinstance(messages, LazyConversation) else None
    # Every field is checked here, in the order of the checks' error messages, and the request built
    # once from them (as ChatRequest(...) would build it), not assigned field by field afterwards.
    fields: dict[str, Any] = {"model": model, "system": system, "messages": [] if lazy is not None else messages,
                              "source_format": "openai", "extra": extra}
    if rare and (n := get("n")) is not None and _integer(n, "n") != 1:
        # One canonical reply per request: silently answering with one of n choices would mislead.
        raise InvalidRequest("n: only n = 1 is supported (one choice per request)")
    raw_tools = get("tools")
    lazy_tools = None
    if raw_tools is not None:
        if (gated is not None and gated.tools) or (type(raw_tools) is list and raw_tools
                                                    and all(map(_tool_ok, raw_tools))):
            lazy_tools = LazyList(raw_tools, _tools)  # converted when read
        else:
            fields["tools"] = _tools(raw_tools)
    if (value := get("tool_choice")) is not None:
        fields["tool_choice"] = _tool_choice(value)
    parallel = get("parallel_tool_calls") if rare else None
    if parallel is not None:
        parallel = _boolean(parallel, "parallel_tool_calls")
    if (value := get("max_completion_tokens")) is not None:  # (extra keeps the client's key as a marker)
        fields["max_tokens"] = extra["max_completion_tokens"] = _integer(value, "max_completion_tokens")
    elif (value := get("max_tokens")) is not None:
        fields["max_tokens"] = value if type(value) is int else _integer(value, "max_tokens")
    for key, check in _SCALAR_FIELDS if rare else _USUAL_SCALAR_FIELDS:
        if (value := get(key)) is not None:
            fields[key] = value if type(value) is float and check is _number else check(value, key)
    if (value := get("stream_options")) is not None:
        options = _object(value, "stream_options")
        if options.get("include_usage") is not None:
            fields["include_usage"] = _boolean(options["include_usage"], "stream_options.include_usage")
    if rare and (value := get("response_format")) is not None:
        fields["response_format"] = _response_format(value)
    if rare and (value := get("metadata")) is not None:
        fields["metadata"] = dict(_object(value, "metadata"))  # (the request's own, as validation copies it)
    if rare and (value := get("plugins")) is not None:
        fields["plugins"] = [dict(entry) for entry in _plugins(value)]
    request = checked_request(fields)
    if lazy is not None:
        defer(request, "messages", lazy)
    if lazy_tools is not None:
        defer(request, "tools", lazy_tools)
    if parallel is not None:
        apply_parallel_tool_calls(request, parallel)
    return request
