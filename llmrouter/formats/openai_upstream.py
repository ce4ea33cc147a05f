"""OpenAI Chat Completions as an upstream speaks it: the request body built from a canonical
request, and the upstream's reply parsed back into a :class:`~llmrouter.models.ChatResponse`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmrouter.formats.base import ROUTER_FIELDS, tool_call_part
from llmrouter.formats.checked import checked_response, checked_text
from llmrouter.formats.openai_stream import (
    stop_reason,
    usage_from_openai,
)
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
    pass

# Never copied from ``extra``: the router's own fields, and the ones this format sets itself.
_NEVER_FORWARD = ROUTER_FIELDS | {"max_tokens", "max_completion_tokens", "stream", "stream_options"}


def tool_call_json(part: ToolUsePart) -> dict[str, Any]:
    """A tool call in OpenAI's ``tool_calls`` shape (arguments as a JSON string), for replies and
    upstream bodies alike."""
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": part.arguments_json()},
    }


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
        body["tool_calls"] = [_merge_extra(tool_call_json(p), p.extra, same) for p in calls]
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
    return tool_call_part(call_id, name, function.get("arguments"))


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
    get = message.get
    reasoning = get("reasoning_content") or get("reasoning")
    if reasoning and isinstance(reasoning, str):
        content.append(ThinkingPart(thinking=reasoning))
    text = get("content")
    if isinstance(text, list):  # a few servers answer with content parts
        text = "".join(
            p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if text and isinstance(text, str):
        content.append(checked_text(text))
    refusal = get("refusal")
    if refusal and isinstance(refusal, str):
        content.append(checked_text(refusal))
    else:
        refusal = None
    raw_calls = get("tool_calls")
    if raw_calls is not None or "function_call" in message:  # (the usual text reply has neither)
        if not isinstance(raw_calls, list):
            raw_calls = []
        if isinstance(get("function_call"), dict):
            raw_calls = [*raw_calls, {"function": message["function_call"]}]
        for position, raw in enumerate(raw_calls):
            call = _upstream_tool_call(raw, position)
            if call is not None:
                content.append(call)
    reason = stop_reason(choice.get("finish_reason"))
    if refusal is not None and reason == "end_turn":
        reason = "refusal"
    extra = {}
    if (fingerprint := body.get("system_fingerprint")) is not None:
        extra["system_fingerprint"] = fingerprint
    if (tier := body.get("service_tier")) is not None:
        extra["service_tier"] = tier
    reply_id, model = body.get("id"), body.get("model")
    return checked_response(reply_id if type(reply_id) is str else str(reply_id or ""),
                            model if type(model) is str else str(model or ""), content, reason,
                            usage_from_openai(body.get("usage")), extra=extra)
