"""The ``llmrouter`` command line: serve, check, plugins, watch, tui, replay, log."""

from llmrouter.cli.main import main

__all__ = ["main"]
