"""The ``llmrouter`` command line: serve, check, plugins, watch, tui, replay."""

from llmrouter.cli.main import main

__all__ = ["main"]
