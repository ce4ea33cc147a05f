"""Per-model prices: the one place a reply's ``cost_usd`` is computed.

Each provider may list ``[[providers.prices]]`` entries, matched in config order by shell-style glob
against the model sent upstream (then the model the reply names). A match prices input, output,
cache-read and cache-write tokens separately; without one, the provider's flat
``cost_per_1m_tokens`` applies to input + output tokens, as before.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from llmrouter.keys.config import PriceConfig
from llmrouter.models import Usage

PER_TOKEN = 1 / 1_000_000


class Pricing:
    """The price table of one provider."""

    def __init__(self, prices: list[PriceConfig], flat_per_1m: float | None) -> None:
        self.prices = list(prices)
        self.flat_per_1m = flat_per_1m

    def match(self, *models: str | None) -> PriceConfig | None:
        """The first price entry whose glob matches one of ``models`` (tried in order), or None."""
        for model in models:
            if not model:
                continue
            for price in self.prices:
                if fnmatchcase(model, price.model):
                    return price
        return None

    def cost_usd(self, usage: Usage, *models: str | None) -> float | None:
        """What ``usage`` cost in US dollars, or None when the provider has no price for it."""
        price = self.match(*models) if self.prices else None
        if price is None:
            if self.flat_per_1m is None:
                return None
            return usage.total_tokens * self.flat_per_1m * PER_TOKEN
        cache_read = price.input if price.cache_read is None else price.cache_read
        cache_write = price.input if price.cache_write is None else price.cache_write
        total = (usage.input_tokens * price.input + usage.output_tokens * price.output
                 + (usage.cache_read_input_tokens or 0) * cache_read
                 + (usage.cache_creation_input_tokens or 0) * cache_write)
        return total * PER_TOKEN
