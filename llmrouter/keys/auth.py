"""Inbound authentication: which key (by name) a request presents.

Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against every configured
key without stopping at a match, so neither the secret nor which key matched leaks through timing.
The key itself is never kept when ``key_sha256`` is configured, and never logged: only its name is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from llmrouter.config import Config, ConfigError
from llmrouter.keys.config import ADMIN_NAME, KeyConfig


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request authenticated as: a virtual key (``key`` set) or the admin key."""

    name: str
    admin: bool
    key: KeyConfig | None = None


def digest(secret: str) -> bytes:
    """The SHA-256 digest of a presented or configured secret."""
    return hashlib.sha256(secret.encode()).digest()


def presented_key(request: web.Request) -> str | None:
    """The key a request carries: ``Authorization: Bearer``, ``x-api-key`` or ``?api_key=``."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key") or request.query.get("api_key")


class KeyRing:
    """The keys the router accepts: the ``[[keys]]`` entries plus the optional admin key.

    With no ``[[keys]]``, the admin key (``[server] api_key_env``) is the only key, as before.
    """

    def __init__(self, entries: list[tuple[bytes, Principal]], secrets: list[str] | None = None) -> None:
        self._entries = entries
        self.secrets = list(secrets or [])
        """Key values read from ``key_env``, held only so the request log can redact them."""
        self.by_name: dict[str, Principal] = {p.name: p for _, p in entries}

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str], admin_key: str | None) -> KeyRing:
        """Resolve every key's secret; raises :class:`ConfigError` for a ``key_env`` that is unset."""
        entries: list[tuple[bytes, Principal]] = []
        secrets: list[str] = []
        if admin_key:
            entries.append((digest(admin_key), Principal(ADMIN_NAME, admin=True)))
        for i, key in enumerate(config.keys):
            if key.key_env is not None:
                secret = environ.get(key.key_env)
                if not secret:
                    raise ConfigError(f"{config.source}: [[keys]] #{i + 1} (name = {key.name!r}) key 'key_env': "
                                      f"environment variable {key.key_env} is not set")
                value = digest(secret)
                secrets.append(secret)
            else:
                value = bytes.fromhex(key.key_sha256 or "")
            entries.append((value, Principal(key.name, admin=False, key=key)))
        return cls(entries, secrets)

    @property
    def enabled(self) -> bool:
        """Whether requests must present a key at all."""
        return bool(self._entries)

    @property
    def virtual(self) -> bool:
        """Whether ``[[keys]]`` are configured (names go to the log; admin routes need the admin key)."""
        return any(not p.admin for _, p in self._entries)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal whose key is ``presented``, or None. Constant time in the key's content."""
        wanted = digest(presented)
        found: Principal | None = None
        for value, principal in self._entries:
            if hmac.compare_digest(wanted, value) and found is None:
                found = principal
        return found
