"""Observability: events, the request log, metrics and traces."""
