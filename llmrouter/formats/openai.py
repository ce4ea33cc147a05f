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

from typing import TYPE_CHECKING, Any

from llmrouter.errors import RouterError
from llmrouter.formats import gate
from llmrouter.formats.base import ClientFormat, StreamDecoder, StreamRenderer, UpstreamFormat
from llmrouter.formats.gate import Gated
from llmrouter.formats.openai_stream import (
    OpenAIStreamDecoder,
    OpenAIStreamRenderer,
    completion_id,
    error_body,
    finish_reason,
    now,
    usage_to_openai,
)
from llmrouter.formats.system_messages import LateSystem, fold_system_messages
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    TextPart,
    ThinkingPart,
    ToolUsePart,
)

if TYPE_CHECKING:
    from llmrouter.config import ProviderConfig

from llmrouter.formats.openai_request import OPAQUE_PART_TYPES, parse_chat_request
from llmrouter.formats.openai_upstream import build_chat_request, parse_chat_response, tool_call_json

__all__ = ["OPAQUE_PART_TYPES", "OpenAIFormat", "build_chat_request", "parse_chat_request",
           "parse_chat_response", "render_chat_response"]


# ---------------------------------------------------------------------------------------------
# ChatResponse -> client reply
# ---------------------------------------------------------------------------------------------


def render_chat_response(response: ChatResponse, request: ChatRequest) -> dict[str, Any]:
    """A ``chat.completion`` object for ``response``."""
    texts: list[str] = []
    calls: list[ToolUsePart] = []
    thinking: list[str] = []
    for part in response.content:  # (one pass: the texts, the tool calls and the thinking)
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolUsePart):
            calls.append(part)
        elif isinstance(part, ThinkingPart) and part.thinking:
            thinking.append(part.thinking)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = [tool_call_json(p) for p in calls]
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

    def gate(self, body: Any) -> Gated | None:
        """The C-speed gate's verdict on a Chat Completions ``body`` (see :func:`gate.openai`)."""
        return gate.openai(body)

    # Parse a client's Chat Completions body; raises ``InvalidRequest`` naming the field. (The
    # function itself, ``headers`` unused: no call of a method in between on every request.)
    parse_request = staticmethod(parse_chat_request)

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
