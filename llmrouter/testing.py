"""Test helpers and pytest fixtures for llmrouter and its plugin authors (a ``pytest11`` plugin)."""
