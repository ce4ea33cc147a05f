"""The OpenAI Responses API: the client format of ``POST /v1/responses`` (Codex speaks it) and the
upstream format ``openai-responses`` (``{base_url}/responses``).

Conversion choices worth knowing (markers: see :mod:`llmrouter.formats.responses_items`):

* ``instructions`` and the leading ``system``/``developer`` message items become
  ``request.system``; later ones stay in place as ``Message(role="system")``. A Responses
  provider gets them back as they came (instructions, then the items).
* Consecutive assistant-side items (``message`` with ``output_text``/``refusal``,
  ``function_call``, ``custom_tool_call``, ``reasoning``, hosted-tool calls) form one assistant
  message; ``function_call_output``/``custom_tool_call_output`` become tool results in a user
  message.
* ``reasoning`` items are kept verbatim (an :class:`~llmrouter.models.OpaquePart`) for Responses
  providers and dropped for others, never turned into text. A reasoning item the router made
  from another vendor's signed thinking comes back as that thinking block.
* Tools: ``function`` tools map one to one; the functions of a ``namespace`` tool are flattened
  to ``<namespace>__<name>`` and calls to them mapped back; a ``custom`` (free-form) tool is a
  function with one string ``input`` elsewhere; hosted tools (``web_search``...) reach Responses
  providers only and are dropped, with a logged warning, for the others.
* ``reasoning.effort`` (low/medium/high/xhigh) also becomes ``request.thinking`` with a token
  budget, so providers with extended thinking think too; ``text.format`` becomes the structured
  output ``response_format``; ``max_output_tokens`` is ``max_tokens``.
* Every other field (``store``, ``include``, ``prompt_cache_key``, ``client_metadata``...) goes to
  ``request.extra``: a Responses provider receives it untouched, other formats drop it.
* ``previous_response_id`` needs ``[responses] store = true``: the stored conversation is
  prepended (its ``instructions`` are not carried over, as with OpenAI); otherwise a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats.base import (
    ClientFormat,
    StreamDecoder,
    StreamRenderer,
    UpstreamFormat,
    apply_parallel_tool_calls,
)
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
from llmrouter.formats.openai_stream import error_body
from llmrouter.formats.responses_decode import ResponsesStreamDecoder
from llmrouter.formats.responses_input import _conversation
from llmrouter.formats.responses_items import (
    CUSTOM_TOOL_SCHEMA,
    FORMAT,
    HOSTED_TOOLS,
    ResponseStore,
    flat_name,
    new_id,
    now,
    reply_to_response,
)
from llmrouter.formats.responses_stream import ResponsesStreamRenderer
from llmrouter.formats.responses_upstream import build_responses_request, parse_responses_reply
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
)

_CANONICAL_FIELDS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "stream", "metadata", "plugins", "previous_response_id",
})
EFFORT_BUDGETS = {"low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
"""Thinking token budgets for ``reasoning.effort`` on providers that take a budget."""


# ---------------------------------------------------------------------------------------------
# Tools, choices, reasoning, text format
# ---------------------------------------------------------------------------------------------


def _function_tool(raw: dict[str, Any], path: str, namespace: dict[str, Any] | None) -> Tool:
    name = _string(_require(raw, "name", f"{path}.name"), f"{path}.name", non_empty=True)
    description = raw.get("description")
    if description is not None:
        _string(description, f"{path}.description")
    extra: dict[str, Any] = {}
    if raw.get("type") == "custom":
        schema = CUSTOM_TOOL_SCHEMA
        extra["_custom"] = raw.get("format")
        extra.update(_rest(raw, {"type", "name", "description", "format"}))
    else:
        params = raw.get("parameters")
        schema = {"type": "object", "properties": {}} if params is None else _object(params, f"{path}.parameters")
        extra.update(_rest(raw, {"type", "name", "description", "parameters"}))
    if namespace is not None:
        extra["_namespace"], extra["_name"] = namespace["name"], name
        if isinstance(namespace.get("description"), str):
            extra["_ns_description"] = namespace["description"]
        name = flat_name(namespace["name"], name)
    return Tool(name=name, description=description, input_schema=schema, extra=extra)


def _tools(raw_tools: Any, request: ChatRequest) -> None:
    tools: list[Tool] = []
    hosted: list[dict[str, Any]] = []
    for i, raw in enumerate(_array(raw_tools, "tools")):
        path = f"tools[{i}]"
        raw = _object(raw, path)
        kind = _string(_require(raw, "type", f"{path}.type"), f"{path}.type")
        if kind in ("function", "custom"):
            tools.append(_function_tool(raw, path, None))
        elif kind == "namespace":
            name = _string(_require(raw, "name", f"{path}.name"), f"{path}.name", non_empty=True)
            for j, inner in enumerate(_array(_require(raw, "tools", f"{path}.tools"), f"{path}.tools")):
                inner_path = f"{path}.tools[{j}]"
                inner = _object(inner, inner_path)
                if inner.get("type", "function") not in ("function", "custom"):
                    raise _fail(f"{inner_path}.type", "namespace tools may only hold function and custom tools")
                tools.append(_function_tool(inner, inner_path, {**raw, "name": name}))
        else:
            hosted.append(raw)
    request.tools = tools or None
    if hosted:
        request.extra[HOSTED_TOOLS] = hosted


def _tool_choice(raw: Any, request: ChatRequest) -> None:
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise _fail("tool_choice", f"expected 'auto', 'none', 'required' or an object, got {raw!r}")
        request.tool_choice = ToolChoice(type=raw)  # type: ignore[arg-type]
        return
    raw = _object(raw, "tool_choice")
    kind = raw.get("type")
    if kind in ("function", "custom") and isinstance(raw.get("name"), str):
        name = raw["name"]
        match = next((t.name for t in request.tools or [] if t.extra.get("_name", t.name) == name), name)
        request.tool_choice = ToolChoice(type="tool", name=match)
    else:  # allowed_tools, a hosted tool, mcp...: only a Responses provider understands these
        request.extra["tool_choice"] = raw


def _reasoning(raw: Any, request: ChatRequest) -> None:
    raw = _object(raw, "reasoning")
    request.extra["reasoning"] = raw
    effort = raw.get("effort")
    if effort is not None:
        effort = _string(effort, "reasoning.effort")
        if effort in EFFORT_BUDGETS:
            request.thinking = {"type": "enabled", "budget_tokens": EFFORT_BUDGETS[effort]}


def _text(raw: Any, request: ChatRequest) -> None:
    raw = _object(raw, "text")
    request.extra["text"] = raw
    fmt = raw.get("format")
    if fmt is None:
        return
    fmt = _object(fmt, "text.format")
    kind = _require(fmt, "type", "text.format.type")
    if kind == "text":
        return
    if kind == "json_object":
        request.response_format = ResponseFormat(type="json_object")
    elif kind == "json_schema":
        schema = _object(_require(fmt, "schema", "text.format.schema"), "text.format.schema")
        name, strict = fmt.get("name"), fmt.get("strict")
        request.response_format = ResponseFormat(
            type="json_schema", schema=schema,
            name=None if name is None else _string(name, "text.format.name"),
            strict=None if strict is None else _boolean(strict, "text.format.strict"))
    else:
        raise _fail("text.format.type", f"unknown text format type {kind!r}")


# ---------------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------------


def parse_responses_request(body: Any, store: ResponseStore | None = None) -> ChatRequest:
    """Validate a ``POST /v1/responses`` body and convert it to a :class:`ChatRequest`.

    :param store: the conversation store when ``[responses] store = true`` (else ``None``).
    :raises InvalidRequest: naming the offending field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {kind_of(body)}")
    model = _string(_require(body, "model", "model"), "model", non_empty=True)
    get = {k: v for k, v in body.items() if v is not None}.get
    system: list[TextPart] = []
    if get("instructions") is not None:
        system.append(TextPart(text=_string(get("instructions"), "instructions")))
    prior: list[Message] = []
    previous = get("previous_response_id")
    if previous is not None:
        previous = _string(previous, "previous_response_id", non_empty=True)
        if store is None:
            raise _fail("previous_response_id", "this router does not keep responses; send the whole "
                        "conversation in 'input' (or enable [responses] store = true)")
        stored = store.get(previous)
        if stored is None:
            raise _fail("previous_response_id", f"no stored response with id {previous!r} (it may have "
                        "expired: only the most recent responses are kept, in memory)")
        system.extend(stored.system)
        prior = stored.messages
    conversation = _conversation(body, system, prior)
    if not conversation.messages:
        raise _fail("input", "must contain at least one item")
    request = ChatRequest(model=model, system=conversation.system or None, messages=conversation.messages,
                          source_format=FORMAT, extra=_rest(body, _CANONICAL_FIELDS))
    if previous is not None:
        request.extra["_previous_response_id"] = previous
    if store is None:
        request.extra["_not_stored"] = True  # the reply's ``store`` must not promise a continuation
    if get("tools") is not None:
        _tools(get("tools"), request)
    if get("tool_choice") is not None:
        _tool_choice(get("tool_choice"), request)
    if get("parallel_tool_calls") is not None:
        apply_parallel_tool_calls(request, _boolean(get("parallel_tool_calls"), "parallel_tool_calls"))
    if get("max_output_tokens") is not None:
        request.max_tokens = _integer(get("max_output_tokens"), "max_output_tokens")
    if get("temperature") is not None:
        request.temperature = _number(get("temperature"), "temperature")
    if get("top_p") is not None:
        request.top_p = _number(get("top_p"), "top_p")
    if get("stream") is not None:
        request.stream = _boolean(get("stream"), "stream")
    if get("metadata") is not None:
        request.metadata = _object(get("metadata"), "metadata")
    if get("reasoning") is not None:
        _reasoning(get("reasoning"), request)
    if get("text") is not None:
        _text(get("text"), request)
    if get("plugins") is not None:
        request.plugins = [_object(p, f"plugins[{i}]") for i, p in enumerate(_array(get("plugins"), "plugins"))]
    return request


# ---------------------------------------------------------------------------------------------
# The format object
# ---------------------------------------------------------------------------------------------


class ResponsesFormat(ClientFormat, UpstreamFormat):
    """The OpenAI Responses API for clients (``/v1/responses``) and for upstream providers.

    ``store`` (set by the app when ``[responses] store = true``) keeps finished conversations for
    ``previous_response_id``.
    """

    name = FORMAT

    def __init__(self, store: ResponseStore | None = None) -> None:
        self.store = store

    def parse_request(self, body: Any, headers: Mapping[str, str], gated: Gated | None = None) -> ChatRequest:
        """Parse a client's Responses body; raises ``InvalidRequest`` naming the field."""
        return parse_responses_request(body, self.store)

    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
        """A ``response`` object for the client (kept in the store when it is on)."""
        response_id = new_id("resp")
        body = reply_to_response(response, request, response_id, now())
        self.remember(response_id, request, response)
        return body

    def remember(self, response_id: str, request: ChatRequest, response: ChatResponse) -> None:
        """Keep the conversation ending with ``response`` for ``previous_response_id`` (when on)."""
        if self.store is None or request.extra.get("store") is False:
            return
        system = [p for p in request.system or [] if "_role" in p.extra]
        reply = [p for p in response.content if not isinstance(p, ThinkingPart) or p.signature or p.redacted]
        messages = [*request.messages, Message(role="assistant", content=reply)]
        self.store.put(response_id, system, messages)

    def render_error(self, error: RouterError) -> dict[str, Any]:
        """OpenAI's ``{"error": {...}}`` shape."""
        return error_body(error)

    def stream_renderer(self, request: ChatRequest) -> StreamRenderer:
        """A renderer of ``response.*`` SSE events for one reply."""
        return ResponsesStreamRenderer(request, on_complete=self.remember)

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The body for a Responses provider's ``/responses``."""
        return build_responses_request(request, model)

    def parse_response(self, body: Any) -> ChatResponse:
        """Convert a provider's ``response`` object; raises ``ValueError`` for anything else."""
        return parse_responses_reply(body)

    def stream_decoder(self) -> StreamDecoder:
        """A decoder of one provider's ``response.*`` event stream."""
        return ResponsesStreamDecoder()


__all__ = ["EFFORT_BUDGETS", "ResponsesFormat", "parse_responses_request"]
