"""Config models for ``[[keys]]`` and ``[[providers.prices]]`` (validated with the rest of the file)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
ADMIN_NAME = "admin"
"""The name the ``[server] api_key_env`` key is logged under when ``[[keys]]`` exist."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceConfig(_Table):
    """One ``[[providers.prices]]`` entry: US dollars per 1M tokens for models matching ``model``.

    ``cache_read`` and ``cache_write`` default to ``input`` (a conservative estimate) when unset.
    """

    model: str = Field(min_length=1)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class KeyConfig(_Table):
    """One ``[[keys]]`` entry: a virtual key, what it may use and how much.

    The secret is given as ``key_env`` (an environment variable holding it) or ``key_sha256`` (its
    hex SHA-256 digest), never in the file itself.
    """

    name: str = Field(min_length=1, max_length=100)
    key_env: str | None = None
    key_sha256: str | None = None
    models: list[str] = Field(default_factory=lambda: ["*"])
    providers: list[str] | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, ge=0)
    budget_period: Literal["day", "month", "total"] = "month"

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or value != value.strip():
            raise ValueError("must be printable text without surrounding spaces")
        if value == ADMIN_NAME:
            raise ValueError(f"{ADMIN_NAME!r} is reserved for the [server] api_key_env key")
        return value

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.fullmatch(value):
            raise ValueError("must be a SHA-256 digest: 64 hexadecimal digits")
        return value.lower() if value is not None else None

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("set exactly one of key_env or key_sha256")
        return self

    @property
    def limited(self) -> bool:
        """Whether the key has a counter to keep (rpm, tpm or a budget)."""
        return self.rpm is not None or self.tpm is not None or self.budget_usd is not None
