"""llmrouter: a local-first LLM routing proxy.

Public API for plugin authors: every type a hook, a provider format or a test touches::

    from llmrouter import hookimpl, Flow, Route, Context, ChatRequest, ChatResponse

See docs/plugin-hooks.md (every hook), docs/writing-a-provider-format.md and docs/stability.md
(what may change, and how deprecations are announced).
"""

from llmrouter.context import Context, Flow, ProviderInfo, Route, StreamTransformer
from llmrouter.errors import (
    AuthenticationFailed,
    Forbidden,
    InvalidRequest,
    NoRoute,
    NotFound,
    PayloadTooLarge,
    PluginFailed,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
    RouterError,
)
from llmrouter.formats.base import SSELineParser, SSEStreamDecoder, StreamDecoder, response_to_events
from llmrouter.formats.provider import ProviderFormat
from llmrouter.hookspecs import hookimpl
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    Part,
    ResponseFormat,
    StopReason,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    Tool,
    ToolChoice,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from llmrouter.settings import PluginSettings, request_settable

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "BlockDelta",
    "BlockStart",
    "BlockStop",
    "ChatRequest",
    "ChatResponse",
    "Context",
    "Flow",
    "Forbidden",
    "ImagePart",
    "InvalidRequest",
    "Message",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "NoRoute",
    "NotFound",
    "OpaquePart",
    "Part",
    "PayloadTooLarge",
    "PluginFailed",
    "PluginSettings",
    "ProviderError",
    "ProviderFormat",
    "ProviderInfo",
    "ProviderTimeout",
    "ProviderUnreachable",
    "RateLimited",
    "ResponseFormat",
    "Route",
    "RouterError",
    "SSELineParser",
    "SSEStreamDecoder",
    "StopReason",
    "StreamDecoder",
    "StreamError",
    "StreamEvent",
    "StreamTransformer",
    "TextPart",
    "ThinkingPart",
    "Tool",
    "ToolChoice",
    "ToolResultPart",
    "ToolUsePart",
    "Usage",
    "hookimpl",
    "request_settable",
    "response_to_events",
]
