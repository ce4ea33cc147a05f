"""Choosing the counter store for a config."""

from __future__ import annotations

from pathlib import Path

from llmrouter.config import Config
from llmrouter.keys.store import CounterStore

STORE_FILE = "keys.sqlite3"


def store_path(config: Config) -> Path:
    """Where the SQLite counters live: beside the request log."""
    return Path(config.logging.path).parent / STORE_FILE


def open_store(config: Config) -> CounterStore | None:
    """Redis when ``[cluster] redis_url`` is set, else SQLite under the log folder; None when no key
    has a limit to count."""
    if not any(key.limited for key in config.keys):
        return None
    if config.cluster.redis_url:
        from llmrouter.keys.redis_store import RedisStore

        return RedisStore(config.cluster.redis_url)
    from llmrouter.keys.sqlite_store import SQLiteStore

    return SQLiteStore(store_path(config))
