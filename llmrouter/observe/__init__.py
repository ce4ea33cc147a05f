"""Observability: the event bus and the request log."""
