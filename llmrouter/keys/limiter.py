"""Enforcement of ``[[keys]]``: model and provider allow-lists, rpm, tpm and budgets.

The web layer calls :meth:`KeyLimiter.check_model` and :meth:`KeyLimiter.admit` before the
pipeline runs, the pipeline calls :meth:`KeyLimiter.check_provider` once a route is chosen (and
skips disallowed providers when failing over), and every finished request is debited through
:meth:`KeyLimiter.debit` with its actual usage and cost. Debits run in the background, off the
request's critical path; :meth:`KeyLimiter.drain` waits for them.

If the counter store fails (a Redis outage, a locked disk), requests are let through and the error
is logged: the limits are a policy on top of a working gateway, not a reason to stop serving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

from llmrouter.errors import Forbidden, RateLimited
from llmrouter.keys.auth import KeyRing, Principal
from llmrouter.keys.config import KeyConfig
from llmrouter.keys.store import WINDOW_S, CounterStore, Limits, Refusal, period_end, period_id
from llmrouter.models import Usage

log = logging.getLogger("llmrouter.keys")

TOTAL_BUDGET_RETRY_S = 86_400.0
"""Retry-After sent for an exhausted ``total`` budget, which never resets by itself."""


def tokens_of(usage: Usage) -> int:
    """Tokens a reply counts against ``tpm``: input (cache reads and writes included) plus output."""
    return (usage.input_tokens + usage.output_tokens + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0))


def model_allowed(key: KeyConfig, model: str) -> bool:
    """Whether one of the key's ``models`` globs matches ``model``."""
    return any(fnmatchcase(model, pattern) for pattern in key.models)


def usd(amount: float) -> str:
    """A budget in dollars: cents when that is exact (``$20.00``), else every digit (``$0.125``)."""
    return f"${amount:.2f}" if round(amount, 2) == amount else f"${amount:g}"


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyLimiter:
    """Applies each virtual key's policy, keeping its counters in ``store``."""

    def __init__(self, keyring: KeyRing, store: CounterStore | None, providers: Iterable[str],
                 clock: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self.store = store
        self.providers = tuple(providers)
        self.clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def key(self, name: str | None) -> KeyConfig | None:
        """The ``[[keys]]`` entry named ``name`` (None for the admin key or no key)."""
        principal = self.keyring.by_name.get(name) if name else None
        return principal.key if principal is not None else None

    def limits(self, key: KeyConfig, now: float) -> Limits:
        """The key's limits for a store call at ``now``."""
        return Limits(key.rpm, key.tpm, key.budget_usd, period_id(key.budget_period, now))

    # -- checks -----------------------------------------------------------------------------------

    def check_model(self, principal: Principal | None, model: str) -> None:
        """:raises Forbidden: when the key's ``models`` globs do not match ``model``."""
        key = principal.key if principal is not None else None
        if key is not None and not model_allowed(key, model):
            raise Forbidden(f"key '{key.name}' may not use model '{model}' (allowed: {', '.join(key.models)})",
                            code="model_not_allowed")

    def denied_providers(self, name: str | None) -> frozenset[str]:
        """Providers key ``name`` may not use (none without an allow-list)."""
        key = self.key(name)
        if key is None or key.providers is None:
            return frozenset()
        return frozenset(p for p in self.providers if p not in key.providers)

    def check_provider(self, name: str | None, provider: str, model: str) -> None:
        """:raises Forbidden: when routing chose a provider outside the key's ``providers``."""
        key = self.key(name)
        if key is not None and key.providers is not None and provider not in key.providers:
            raise Forbidden(f"key '{key.name}' may not use model '{model}' on provider '{provider}' "
                            f"(allowed providers: {', '.join(key.providers) or 'none'})", code="provider_not_allowed")

    async def admit(self, principal: Principal | None) -> None:
        """Reserve one request for the key, or refuse.

        :raises RateLimited: over ``rpm``/``tpm`` (``Retry-After`` until a slot frees) or over budget
            (naming the budget and when it resets).
        """
        key = principal.key if principal is not None else None
        if key is None or not key.limited or self.store is None:
            return
        now = self.clock()
        try:
            refusal = await self.store.admit(key.name, self.limits(key, now), now)
        except Exception as exc:  # see the module docstring: fail open, loudly
            log.error("key counters unavailable (%s: %s); admitting request for key %r unchecked",
                      type(exc).__name__, exc, key.name)
            return
        if refusal is not None:
            raise self._refused(key, refusal, now)

    def _refused(self, key: KeyConfig, refusal: Refusal, now: float) -> RateLimited:
        # Concurrent requests read the clock before reaching the store, so the oldest entry can be a
        # hair newer than "now": never ask for more than one window.
        wait = min(max(refusal.retry_after, 1.0), WINDOW_S)
        if refusal.limit == "rpm":
            return RateLimited(f"key '{key.name}' is over its limit of {key.rpm} requests per minute; "
                               f"retry in {wait:.0f} s", wait)
        if refusal.limit == "tpm":
            return RateLimited(f"key '{key.name}' is over its limit of {key.tpm} tokens per minute; "
                               f"retry in {wait:.0f} s", wait)
        budget = f"{key.budget_period} budget of {usd(key.budget_usd or 0.0)}"
        spent = f"${refusal.spent:.4f} spent"
        end = period_end(key.budget_period, now)
        if end is None:
            return RateLimited(f"key '{key.name}' has used up its {budget} ({spent}); it does not reset "
                               "(raise budget_usd to allow more)", TOTAL_BUDGET_RETRY_S, code="budget_exceeded")
        return RateLimited(f"key '{key.name}' has used up its {budget} ({spent}); it resets at {_utc(end)}",
                           max(end - now, 1.0), code="budget_exceeded")

    # -- accounting -------------------------------------------------------------------------------

    def debit(self, name: str | None, usage: Usage | None, cost_usd: float | None) -> None:
        """Count a finished request's actual tokens and cost, in the background."""
        key = self.key(name)
        if key is None or self.store is None or (key.tpm is None and key.budget_usd is None):
            return
        tokens = tokens_of(usage) if usage is not None else 0
        usd = cost_usd or 0.0
        if tokens <= 0 and usd <= 0:
            return
        now = self.clock()
        task = asyncio.get_running_loop().create_task(self._debit(key, tokens, usd, now))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _debit(self, key: KeyConfig, tokens: int, usd: float, now: float) -> None:
        assert self.store is not None
        try:
            await self.store.debit(key.name, tokens, usd, self.limits(key, now), now)
        except Exception as exc:
            log.error("cannot debit key %r (%d tokens, $%.6f): %s: %s", key.name, tokens, usd,
                      type(exc).__name__, exc)

    async def drain(self) -> None:
        """Wait until every debit queued so far is stored."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def budgets(self) -> dict[str, dict[str, Any]]:
        """Each budgeted key's current period: budget, spent, period id and reset time (after this
        instance's pending debits are stored)."""
        await self.drain()
        now = self.clock()
        report: dict[str, dict[str, Any]] = {}
        for principal in self.keyring.by_name.values():
            key = principal.key
            if key is None or key.budget_usd is None or self.store is None:
                continue
            pid = period_id(key.budget_period, now)
            end = period_end(key.budget_period, now)
            entry: dict[str, Any] = {"budget_usd": key.budget_usd, "period": key.budget_period, "period_id": pid,
                                     "spent_usd": None, "resets_at": _utc(end) if end is not None else None}
            try:
                entry["spent_usd"] = await self.store.spent(key.name, pid)
            except Exception as exc:  # the report still answers while the store is down
                entry["error"] = f"counters unavailable: {type(exc).__name__}: {exc}"
            report[key.name] = entry
        return report

    async def close(self) -> None:
        """Finish pending debits and close the store."""
        await self.drain()
        if self.store is not None:
            await self.store.close()
