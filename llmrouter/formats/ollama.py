"""Placeholder: being written."""

from llmrouter.formats.base import UpstreamFormat


class OllamaFormat:
    name = "ollama"
