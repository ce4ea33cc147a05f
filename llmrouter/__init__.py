"""llmrouter: a local-first LLM routing proxy.

Public API for plugin authors::

    from llmrouter import hookimpl, Flow, Route, Context, ChatRequest, ChatResponse
"""

from llmrouter.context import Context, Flow, ProviderInfo, Route
from llmrouter.hookspecs import hookimpl
from llmrouter.models import ChatRequest, ChatResponse, Message, TextPart, Usage

__version__ = "0.1.0"

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "Context",
    "Flow",
    "Message",
    "ProviderInfo",
    "Route",
    "TextPart",
    "Usage",
    "hookimpl",
]
