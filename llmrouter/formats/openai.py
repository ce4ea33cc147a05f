"""OpenAI Chat Completions, both as the client format of ``POST /v1/chat/completions`` and as the
upstream format of OpenAI-compatible providers (``{base_url}/chat/completions``).

Choices worth knowing:

* Leading ``system``/``developer`` messages become ``request.system``; later ones stay in place as
  ``Message(role="system")``. Building a request sends one leading ``system`` message (blocks
  joined with a blank line); later system messages become user text in place (see
  :mod:`llmrouter.formats.system_messages`), or stay ``system`` messages for a provider with
  ``late_system = "keep"``.
* ``max_tokens`` and ``max_completion_tokens`` both become ``request.max_tokens``. When the client
  used ``max_completion_tokens`` that key is also left in ``request.extra`` as a marker, so an
  OpenAI provider receives the key the client sent (never both); other sources send ``max_tokens``,
  which every OpenAI-compatible server accepts.
* Client fields with no canonical slot go to ``extra`` (top level, per message, per part;
  ``image_url.detail`` and ``function.strict`` land in the part's / tool's ``extra``) and are
  forwarded only to OpenAI-format providers. Other formats' extras are dropped here.
* Usage: canonical ``input_tokens`` excludes prompt-cache tokens (Anthropic's convention), so an
  upstream ``prompt_tokens`` is split into ``input_tokens`` + ``cache_read_input_tokens`` and the
  two are added back together when rendering.
* Error ``type`` by router error kind: ``invalid_request_error`` and ``request_too_large`` ->
  ``invalid_request_error`` (code ``request_too_large`` for the latter), ``authentication_error``,
  ``permission_error``, ``not_found_error``, ``rate_limit_error`` and ``timeout_error`` keep
  their names, ``api_error``/``overloaded_error`` -> ``server_error``; unknown kinds map to
  ``server_error`` for 5xx statuses, ``invalid_request_error`` otherwise. ``code`` is the
  error's own code (``provider_error`` for provider failures) or null.
* User content parts OpenAI documents but the canonical model has no slot for
  (:data:`OPAQUE_PART_TYPES`: ``input_audio``, ``file``) become
  :class:`~llmrouter.models.OpaquePart` and reach OpenAI providers verbatim and in place; other
  providers get nothing for them. Unknown part types are still rejected (400). Opaque parts of other
  formats are dropped here, or sent as a text part when they carry a ``fallback_text`` (an Anthropic
  plain-text document or search result), in user turns and in tool results alike.
* From a Responses API client, an explicit ``reasoning.effort`` is sent as ``reasoning_effort``.
* Tool results become one ``tool`` message each (text only, parts joined by newlines); their
  images follow in a ``user`` message. Thinking parts are not sent upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats.base import ROUTER_FIELDS, ClientFormat, StreamDecoder, StreamRenderer, UpstreamFormat
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
from llmrouter.formats.openai_stream import (
    OpenAIStreamDecoder,
    OpenAIStreamRenderer,
    completion_id,
    error_body,
    finish_reason,
    now,
    stop_reason,
    usage_from_openai,
    usage_to_openai,
)
from llmrouter.formats.system_messages import LateSystem, fold_system_messages
from llmrouter.jsonutil import loads_object_or_none
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
)

if TYPE_CHECKING:
    from llmrouter.config import ProviderConfig

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

# Never copied from ``extra``: the router's own fields, and the ones this format sets itself.
_NEVER_FORWARD = ROUTER_FIELDS | {"max_tokens", "max_completion_tokens", "stream", "stream_options"}
# Known keys of each wire object (module constants: a set literal in a call is rebuilt every time).
_TEXT_KEYS = frozenset({"type", "text"})
_URL_KEYS = frozenset({"url"})
_CALL_KEYS = frozenset({"id", "type", "function"})
_ASSISTANT_KEYS = frozenset({"role", "content", "tool_calls", "reasoning_content", "name"})
_TOOL_MESSAGE_KEYS = frozenset({"role", "tool_call_id", "content"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters"})


# ---------------------------------------------------------------------------------------------
# Client requests -> ChatRequest
# ---------------------------------------------------------------------------------------------


def _text_parts(content: Any, path: str) -> list[TextPart]:
    """System/tool content: a string or a list of text parts."""
    if isinstance(content, str):
        return [TextPart(text=content)]
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
    return TextPart(text=_string(_require(raw, "text", f"{path}.text"), f"{path}.text"),
                    extra=_rest(raw, _TEXT_KEYS))


def _image_part(raw: dict[str, Any], path: str) -> ImagePart:
    image = _object(_require(raw, "image_url", f"{path}.image_url"), f"{path}.image_url")
    url = _string(_require(image, "url", f"{path}.image_url.url"), f"{path}.image_url.url", non_empty=True)
    extra = _rest(image, _URL_KEYS)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise _fail(
                f"{path}.image_url.url", "data URLs must be base64 encoded (data:<type>;base64,<data>)"
            )
        return ImagePart(data=data, media_type=header[: -len(";base64")] or None, extra=extra)
    return ImagePart(url=url, extra=extra)


def _user_parts(content: Any, path: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    parts: list[Part] = []
    for i, raw in enumerate(_array(content, path)):
        part_path = f"{path}[{i}]"
        raw = _object(raw, part_path)
        kind = _require(raw, "type", f"{part_path}.type")
        if kind == "text":
            parts.append(_text_part(raw, part_path))
        elif kind == "image_url":
            parts.append(_image_part(raw, part_path))
        elif kind in OPAQUE_PART_TYPES:
            parts.append(OpaquePart(format="openai", data=raw))
        else:
            raise _fail(f"{part_path}.type", f"unknown content part type {kind!r}")
    return parts


def _tool_use(raw: Any, path: str) -> ToolUsePart:
    raw = _object(raw, path)
    call_id = _string(_require(raw, "id", f"{path}.id"), f"{path}.id", non_empty=True)
    kind = raw.get("type", "function")
    if kind != "function":
        raise _fail(f"{path}.type", f"unsupported tool call type {kind!r}")
    function = _object(_require(raw, "function", f"{path}.function"), f"{path}.function")
    name = _string(
        _require(function, "name", f"{path}.function.name"), f"{path}.function.name", non_empty=True
    )
    arguments = function.get("arguments", "")
    extra = _rest(raw, _CALL_KEYS)
    if isinstance(arguments, dict):
        return ToolUsePart(id=call_id, name=name, input=arguments, extra=extra)
    arguments = _string(arguments, f"{path}.function.arguments")
    if not arguments.strip():
        return ToolUsePart(id=call_id, name=name, input={}, extra=extra)
    parsed = loads_object_or_none(arguments)
    if parsed is None:
        return ToolUsePart(id=call_id, name=name, input=None, raw_arguments=arguments, extra=extra)
    return ToolUsePart(id=call_id, name=name, input=parsed, extra=extra)


def _assistant(raw: dict[str, Any], path: str) -> Message:
    parts: list[Part] = []
    extra = _rest(raw, _ASSISTANT_KEYS)
    reasoning = raw.get("reasoning_content")
    if reasoning is not None:
        parts.append(ThinkingPart(thinking=_string(reasoning, f"{path}.reasoning_content")))
    content = raw.get("content")
    if isinstance(content, str):
        if content:
            parts.append(TextPart(text=content))
    elif content is not None:
        for i, item in enumerate(_array(content, f"{path}.content")):
            part_path = f"{path}.content[{i}]"
            item = _object(item, part_path)
            kind = _require(item, "type", f"{part_path}.type")
            if kind == "text":
                text = _string(_require(item, "text", f"{part_path}.text"), f"{part_path}.text")
                parts.append(TextPart(text=text, extra=_rest(item, _TEXT_KEYS)))
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
    return Message(role="assistant", content=parts, name=_name(raw, path), extra=extra)


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


def _messages(raw_messages: Any) -> tuple[list[TextPart] | None, list[Message]]:
    raw_messages = _array(raw_messages, "messages")
    if not raw_messages:
        raise _fail("messages", "must contain at least one message")
    system: list[TextPart] = []
    messages: list[Message] = []
    previous_role = None
    for i, raw in enumerate(raw_messages):
        path = f"messages[{i}]"
        raw = _object(raw, path)
        role = _require(raw, "role", f"{path}.role")
        if role in ("system", "developer"):
            parts = _text_parts(_require(raw, "content", f"{path}.content"), f"{path}.content")
            if not messages:
                system.extend(parts)
            else:
                extra = _rest(raw, _MESSAGE_KEYS)
                messages.append(
                    Message(role="system", content=list(parts), name=_name(raw, path), extra=extra)
                )
        elif role == "user":
            parts = _user_parts(_require(raw, "content", f"{path}.content"), f"{path}.content")
            messages.append(
                Message(
                    role="user",
                    content=parts,
                    name=_name(raw, path),
                    extra=_rest(raw, _MESSAGE_KEYS),
                )
            )
        elif role == "assistant":
            messages.append(_assistant(raw, path))
        elif role == "tool":
            result = _tool_result(raw, path)
            if previous_role == "tool":
                messages[-1].content.append(result)
            else:
                messages.append(Message(role="user", content=[result]))
        else:
            raise _fail(f"{path}.role", f"unknown role {role!r}")
        previous_role = role
    return (system or None), messages


def _tools(raw_tools: Any) -> list[Tool]:
    tools = []
    for i, raw in enumerate(_array(raw_tools, "tools")):
        path = f"tools[{i}]"
        raw = _object(raw, path)
        kind = raw.get("type", "function")
        if kind != "function":
            raise _fail(f"{path}.type", f"unsupported tool type {kind!r}")
        function = _object(_require(raw, "function", f"{path}.function"), f"{path}.function")
        name = _string(
            _require(function, "name", f"{path}.function.name"), f"{path}.function.name", non_empty=True
        )
        description = function.get("description")
        if description is not None:
            _string(description, f"{path}.function.description")
        parameters = function.get("parameters")
        schema = (
            {"type": "object", "properties": {}}
            if parameters is None
            else _object(parameters, f"{path}.function.parameters")
        )
        if function.get("strict") is not None:
            _boolean(function["strict"], f"{path}.function.strict")
        tools.append(
            Tool(
                name=name,
                description=description,
                input_schema=schema,
                extra=_rest(function, _FUNCTION_KEYS),
            )
        )
    return tools


def _tool_choice(raw: Any) -> ToolChoice:
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise _fail(
                "tool_choice", f"expected 'auto', 'none', 'required' or a function object, got {raw!r}"
            )
        return ToolChoice(type=raw)  # type: ignore[arg-type]
    raw = _object(raw, "tool_choice")
    if raw.get("type") != "function":
        raise _fail("tool_choice.type", f"unsupported tool_choice type {raw.get('type')!r}")
    function = _object(_require(raw, "function", "tool_choice.function"), "tool_choice.function")
    name = _string(
        _require(function, "name", "tool_choice.function.name"), "tool_choice.function.name", non_empty=True
    )
    return ToolChoice(type="tool", name=name)


def _response_format(raw: Any) -> ResponseFormat | None:
    raw = _object(raw, "response_format")
    kind = _require(raw, "type", "response_format.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind != "json_schema":
        raise _fail("response_format.type", f"unknown response format type {kind!r}")
    spec = _object(_require(raw, "json_schema", "response_format.json_schema"), "response_format.json_schema")
    name = spec.get("name")
    schema = spec.get("schema")
    strict = spec.get("strict")
    return ResponseFormat(
        type="json_schema",
        name=None if name is None else _string(name, "response_format.json_schema.name"),
        schema=None if schema is None else _object(schema, "response_format.json_schema.schema"),
        strict=None if strict is None else _boolean(strict, "response_format.json_schema.strict"),
    )


def _stop(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    return [_string(item, f"stop[{i}]") for i, item in enumerate(_array(raw, "stop"))]


def _plugins(raw: Any) -> list[dict[str, Any]]:
    plugins = []
    for i, entry in enumerate(_array(raw, "plugins")):
        entry = _object(entry, f"plugins[{i}]")
        _string(_require(entry, "id", f"plugins[{i}].id"), f"plugins[{i}].id", non_empty=True)
        plugins.append(entry)
    return plugins


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate an OpenAI Chat Completions request body and convert it to a :class:`ChatRequest`.

    :raises InvalidRequest: naming the offending field path.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {kind_of(body)}")
    model = _string(_require(body, "model", "model"), "model", non_empty=True)
    system, messages = _messages(_require(body, "messages", "messages"))
    extra = _rest(body, _CANONICAL_FIELDS)
    request = ChatRequest(model=model, system=system, messages=messages, source_format="openai", extra=extra)

    get = {k: v for k, v in body.items() if v is not None}.get
    if get("n") is not None and _integer(get("n"), "n") != 1:
        # One canonical reply per request: silently answering with one of n choices would mislead.
        raise InvalidRequest("n: only n = 1 is supported (one choice per request)")
    if get("tools") is not None:
        request.tools = _tools(get("tools"))
    if get("tool_choice") is not None:
        request.tool_choice = _tool_choice(get("tool_choice"))
    if get("parallel_tool_calls") is not None:
        parallel = _boolean(get("parallel_tool_calls"), "parallel_tool_calls")
        if not parallel:
            request.tool_choice = request.tool_choice or ToolChoice(type="auto")
            request.tool_choice.disable_parallel = True
        elif request.tool_choice is not None:
            request.tool_choice.disable_parallel = False
    if get("max_completion_tokens") is not None:
        request.max_tokens = _integer(get("max_completion_tokens"), "max_completion_tokens")
        request.extra["max_completion_tokens"] = request.max_tokens  # marker: the client's key
    elif get("max_tokens") is not None:
        request.max_tokens = _integer(get("max_tokens"), "max_tokens")
    if get("temperature") is not None:
        request.temperature = _number(get("temperature"), "temperature")
    if get("top_p") is not None:
        request.top_p = _number(get("top_p"), "top_p")
    if get("stop") is not None:
        request.stop = _stop(get("stop"))
    if get("stream") is not None:
        request.stream = _boolean(get("stream"), "stream")
    if get("stream_options") is not None:
        options = _object(get("stream_options"), "stream_options")
        if options.get("include_usage") is not None:
            request.include_usage = _boolean(options["include_usage"], "stream_options.include_usage")
    if get("response_format") is not None:
        request.response_format = _response_format(get("response_format"))
    if get("metadata") is not None:
        request.metadata = _object(get("metadata"), "metadata")
    if get("plugins") is not None:
        request.plugins = _plugins(get("plugins"))
    return request


# ---------------------------------------------------------------------------------------------
# ChatResponse -> client reply
# ---------------------------------------------------------------------------------------------


def _tool_call_json(part: ToolUsePart) -> dict[str, Any]:
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": part.arguments_json()},
    }


def render_chat_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    """A ``chat.completion`` object for ``response``."""
    texts = [p.text for p in response.content if isinstance(p, TextPart)]
    calls = response.tool_calls()
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    thinking = [p.thinking for p in response.content if isinstance(p, ThinkingPart) and p.thinking]
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = [_tool_call_json(p) for p in calls]
    message["refusal"] = None
    body: dict[str, Any] = {
        "id": completion_id(response.id),
        "object": "chat.completion",
        "created": now(),
        "model": response.model or request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(response.stop_reason, bool(calls)),
            }
        ],
        "usage": usage_to_openai(response.usage),
    }
    for key in ("system_fingerprint", "service_tier"):
        if key in response.extra:
            body[key] = response.extra[key]
    return body


# ---------------------------------------------------------------------------------------------
# ChatRequest -> upstream body
# ---------------------------------------------------------------------------------------------


def _merge_extra(target: dict[str, Any], extra: dict[str, Any], same: bool) -> dict[str, Any]:
    """Add ``extra`` keys not already set, when the request came in this format."""
    if same:
        for key, value in extra.items():
            target.setdefault(key, value)
    return target


def _image_json(part: ImagePart, same: bool) -> dict[str, Any]:
    url = (
        part.url
        if part.url is not None
        else f"data:{part.media_type or 'image/png'};base64,{part.data or ''}"
    )
    return {"type": "image_url", "image_url": _merge_extra({"url": url}, part.extra, same)}


def _sendable(part: Part) -> Part | None:
    """``part`` as this format can send it: OpenAI opaque parts as they are, other formats' opaque
    parts as their fallback text (or ``None``, dropped)."""
    if isinstance(part, OpaquePart) and part.format != "openai":
        return part.as_text()
    return part


def _content_json(parts: list[Part], same: bool) -> str | list[dict[str, Any]]:
    """User content: a plain string for one text part, else a list of text/image/opaque parts."""
    if len(parts) == 1 and isinstance(parts[0], TextPart) and not (same and parts[0].extra):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append(_merge_extra({"type": "text", "text": part.text}, part.extra, same))
        elif isinstance(part, ImagePart):
            out.append(_image_json(part, same))
        elif isinstance(part, OpaquePart):
            out.append(dict(part.data))
    return out if out else ""


def _message_base(role: str, message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role}
    if message.name is not None:
        body["name"] = message.name
    return body


def _user_messages(message: Message, same: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rest: list[Part] = []
    result_images: list[Part] = []
    for part in message.content:
        if isinstance(part, ToolResultPart):
            inner = [p for p in map(_sendable, part.content) if p is not None]
            texts = [p.text for p in inner if isinstance(p, TextPart)]
            tool_msg = {"role": "tool", "tool_call_id": part.tool_use_id, "content": "\n".join(texts)}
            out.append(_merge_extra(tool_msg, part.extra, same))
            result_images.extend(p for p in inner if isinstance(p, ImagePart))
        elif isinstance(part, TextPart | ImagePart | OpaquePart):
            sendable = _sendable(part)
            if sendable is not None:
                rest.append(sendable)
    if result_images or rest or not out:
        user = _message_base("user", message)
        user["content"] = _content_json(result_images + rest, same)
        out.append(_merge_extra(user, message.extra, same))
    return out


def _assistant_message(message: Message, same: bool) -> dict[str, Any]:
    body = _message_base("assistant", message)
    texts = [p.text for p in message.content if isinstance(p, TextPart)]
    calls = [p for p in message.content if isinstance(p, ToolUsePart)]
    body["content"] = "".join(texts) if texts or not calls else None
    if calls:
        body["tool_calls"] = [_merge_extra(_tool_call_json(p), p.extra, same) for p in calls]
    return _merge_extra(body, message.extra, same)


def _build_messages(request: ChatRequest, same: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system_text()})
    for message in request.messages:
        if message.role == "system":
            body = _message_base("system", message)
            body["content"] = message.text()
            out.append(_merge_extra(body, message.extra, same))
        elif message.role == "assistant":
            out.append(_assistant_message(message, same))
        else:
            out.extend(_user_messages(message, same))
    return out


def _tool_json(tool: Tool, same: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.input_schema
    return {"type": "function", "function": _merge_extra(function, tool.extra, same)}


def _tool_choice_json(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name or ""}}
    return choice.type


def _response_format_json(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_ or {}}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def build_chat_request(request: ChatRequest, model: str) -> dict[str, Any]:
    """The body to POST to ``{base_url}/chat/completions`` for ``request``."""
    same = request.source_format == "openai"
    body: dict[str, Any] = {"model": model, "messages": _build_messages(request, same)}
    if request.tools:
        body["tools"] = [_tool_json(t, same) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = _tool_choice_json(request.tool_choice)
            if request.tool_choice.disable_parallel is not None:
                body["parallel_tool_calls"] = not request.tool_choice.disable_parallel
    if request.max_tokens is not None:
        key = "max_completion_tokens" if same and "max_completion_tokens" in request.extra else "max_tokens"
        body[key] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format is not None and request.response_format.type != "text":
        body["response_format"] = _response_format_json(request.response_format)
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if same:
        if request.metadata is not None:
            body["metadata"] = request.metadata
        for key, value in request.extra.items():
            if key not in _NEVER_FORWARD:
                body.setdefault(key, value)
    elif request.source_format == "openai-responses":
        # A Responses client's explicit reasoning.effort is Chat Completions' reasoning_effort.
        reasoning = request.extra.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        if isinstance(effort, str):
            body["reasoning_effort"] = effort
    return body


# ---------------------------------------------------------------------------------------------
# Upstream reply -> ChatResponse
# ---------------------------------------------------------------------------------------------


def _upstream_tool_call(raw: Any, position: int) -> ToolUsePart | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        return None
    function = raw["function"]
    call_id = str(raw.get("id") or f"call_{position}")
    name = str(function.get("name") or "")
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        return ToolUsePart(id=call_id, name=name, input=arguments)
    text = arguments if isinstance(arguments, str) else ""
    if not text.strip():
        return ToolUsePart(id=call_id, name=name, input={})
    parsed = loads_object_or_none(text)
    if parsed is None:
        return ToolUsePart(id=call_id, name=name, raw_arguments=text)
    return ToolUsePart(id=call_id, name=name, input=parsed)


def parse_chat_response(body: Any) -> ChatResponse:
    """Convert an upstream ``chat.completion`` into a :class:`ChatResponse`.

    :raises ValueError: when ``body`` is not a completion (an error body, no choices, ...).
    """
    if not isinstance(body, dict):
        raise ValueError("chat completion must be a JSON object")
    if "error" in body and "choices" not in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ValueError(f"upstream returned an error: {message}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("chat completion has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ValueError("chat completion choice has no message")
    content: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(ThinkingPart(thinking=reasoning))
    text = message.get("content")
    if isinstance(text, list):  # a few servers answer with content parts
        text = "".join(
            p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if isinstance(text, str) and text:
        content.append(TextPart(text=text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append(TextPart(text=refusal))
    raw_calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    if isinstance(message.get("function_call"), dict):
        raw_calls = [*raw_calls, {"function": message["function_call"]}]
    for position, raw in enumerate(raw_calls):
        call = _upstream_tool_call(raw, position)
        if call is not None:
            content.append(call)
    reason = stop_reason(choice.get("finish_reason"))
    if isinstance(refusal, str) and refusal and reason == "end_turn":
        reason = "refusal"
    extra = {k: body[k] for k in ("system_fingerprint", "service_tier") if body.get(k) is not None}
    return ChatResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        content=content,
        stop_reason=reason,
        usage=usage_from_openai(body.get("usage")),
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# The format object
# ---------------------------------------------------------------------------------------------


class OpenAIFormat(ClientFormat, UpstreamFormat):
    """OpenAI Chat Completions for clients (``/v1/chat/completions``) and for upstream providers."""

    name = "openai"

    def __init__(self, late_system: LateSystem = "user") -> None:
        self.late_system = late_system

    def for_provider(self, config: ProviderConfig) -> OpenAIFormat:
        """This format with the provider's ``late_system`` setting (itself when it matches)."""
        return self if config.late_system == self.late_system else type(self)(config.late_system)

    def parse_request(self, body: Any, headers: Mapping[str, str]) -> ChatRequest:
        """Parse a client's Chat Completions body; raises ``InvalidRequest`` naming the field."""
        return parse_chat_request(body)

    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
        """A ``chat.completion`` object for the client."""
        return render_chat_response(response, request)

    def render_error(self, error: RouterError) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}`` (types: see the module docstring)."""
        return error_body(error)

    def stream_renderer(self, request: ChatRequest) -> StreamRenderer:
        """A renderer of ``chat.completion.chunk`` SSE frames for one reply."""
        return OpenAIStreamRenderer(request)

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The body for an OpenAI-compatible provider's ``/chat/completions`` (late system messages
        folded into user turns unless ``late_system`` is ``keep``; see
        :mod:`llmrouter.formats.system_messages`)."""
        if self.late_system == "user":
            request = fold_system_messages(request)
        return build_chat_request(request, model)

    def parse_response(self, body: Any) -> ChatResponse:
        """Convert a provider's ``chat.completion``; raises ``ValueError`` for anything else."""
        return parse_chat_response(body)

    def stream_decoder(self) -> StreamDecoder:
        """A decoder of one provider's ``chat.completion.chunk`` stream."""
        return OpenAIStreamDecoder()


__all__ = [
    "OPAQUE_PART_TYPES",
    "OpenAIFormat",
    "build_chat_request",
    "parse_chat_request",
    "parse_chat_response",
    "render_chat_response",
]
