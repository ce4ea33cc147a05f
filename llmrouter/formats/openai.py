"""Placeholder: being written."""

from llmrouter.formats.base import UpstreamFormat


class OpenAIFormat:
    name = "openai"
