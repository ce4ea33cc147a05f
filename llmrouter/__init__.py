"""llmrouter: a local-first LLM routing proxy.

Public API for plugin authors::

    from llmrouter import hookimpl, Flow, Route, Context, ChatRequest, ChatResponse
"""

from llmrouter.context import Context, Flow, ProviderInfo, Route, StreamTransformer
from llmrouter.hookspecs import hookimpl
from llmrouter.models import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
    StreamEvent,
    TextPart,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "BlockDelta",
    "BlockStart",
    "BlockStop",
    "ChatRequest",
    "ChatResponse",
    "Context",
    "Flow",
    "Message",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "ProviderInfo",
    "Route",
    "StreamError",
    "StreamEvent",
    "StreamTransformer",
    "TextPart",
    "Usage",
    "hookimpl",
]
