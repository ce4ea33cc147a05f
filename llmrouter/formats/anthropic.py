"""Placeholder: being written."""

from llmrouter.formats.base import UpstreamFormat


class AnthropicFormat:
    name = "anthropic"
