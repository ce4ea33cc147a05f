"""Upstream I/O: providers, the shared HTTP client, retries and breakers, model discovery."""
