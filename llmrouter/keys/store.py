"""Counter stores: where request, token and spend counters live.

A store answers two calls per request. :meth:`CounterStore.admit` checks the key's budget and
tokens-per-minute and reserves one request of its requests-per-minute, in one atomic step (one
SQLite transaction, or one Redis script), so concurrent requests can never both take the last
slot. :meth:`CounterStore.debit` adds the reply's actual tokens and cost afterwards.

Request and token limits are sliding windows: at most ``rpm`` requests (``tpm`` tokens) in any
trailing :data:`WINDOW_S` seconds. Budgets are sums per period id (``2026-12-01``, ``2026-12`` or
``total``, in UTC), so they reset at the period's boundary.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """One key's limits, as a store needs them for one call."""

    rpm: int | None
    tpm: int | None
    budget_usd: float | None
    period_id: str
    window_s: float = WINDOW_S


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted: which limit, seconds until it admits again, and (for budgets)
    what was spent."""

    limit: Literal["rpm", "tpm", "budget"]
    retry_after: float = 0.0
    spent: float = 0.0


class CounterStore(Protocol):
    """Persistent counters shared by everything that enforces the same keys."""

    async def admit(self, name: str, limits: Limits, now: float) -> Refusal | None:
        """Check budget and tpm, then reserve one request of rpm, atomically; a refusal reserves nothing."""

    async def debit(self, name: str, tokens: int, usd: float, limits: Limits, now: float) -> None:
        """Count a finished reply's tokens (for tpm) and cost (for the budget)."""

    async def spent(self, name: str, period_id: str) -> float:
        """What key ``name`` has spent in period ``period_id``."""

    async def close(self) -> None:
        """Release connections and threads."""


def period_id(period: str, now: float) -> str:
    """The id of the budget period holding ``now`` (a Unix time), in UTC."""
    if period == "total":
        return "total"
    day = dt.datetime.fromtimestamp(now, dt.UTC)
    return day.strftime("%Y-%m-%d") if period == "day" else day.strftime("%Y-%m")


def period_end(period: str, now: float) -> float | None:
    """When the period holding ``now`` ends (a Unix time), or None for ``total``."""
    if period == "total":
        return None
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return (day + dt.timedelta(days=1)).timestamp()
    days = calendar.monthrange(day.year, day.month)[1]
    return (day.replace(day=1) + dt.timedelta(days=days)).timestamp()


def retry_after_tokens(entries: list[tuple[float, int]], limit: int, window_s: float, now: float) -> float:
    """Seconds until the tokens in the window (``(ts, tokens)`` oldest first) drop below ``limit``."""
    total = sum(n for _, n in entries)
    for ts, n in entries:
        total -= n
        if total < limit:
            return max(ts + window_s - now, 0.0)
    return window_s
