"""The shared counter store: Redis, when ``[cluster] redis_url`` is set.

Every instance pointing at the same Redis enforces the same limits together. Admission is one Lua
script (Redis runs scripts atomically), so two instances can never both take the last request of a
minute. Request and token windows are sorted sets scored by time; a key's three counters share a
hash tag so the script also works on Redis Cluster. Times come from the instances' clocks (keep
them NTP-synced), which lets every instance agree on budget periods without a Redis round trip.
"""

from __future__ import annotations

import secrets
from typing import Any

from llmrouter.keys.store import Limits, Refusal

PREFIX = "llmrouter:keys:"
MAX_CONNECTIONS = 32
TIMEOUT_S = 2.0

# KEYS: rpm zset, tpm zset, spend counter. ARGV: now, window, rpm, tpm, budget (-1: none), member.
# Returns {} when admitted, else {limit, retry_after, spent} as strings.
_ADMIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent >= budget then return {'budget', '0', tostring(spent)} end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  local rows = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local total = 0
  for i = 1, #rows, 2 do total = total + tonumber(string.match(rows[i], '^(%d+):')) end
  if total >= tpm then
    for i = 1, #rows, 2 do
      total = total - tonumber(string.match(rows[i], '^(%d+):'))
      if total < tpm then return {'tpm', tostring(tonumber(rows[i + 1]) + window - now), '0'} end
    end
    return {'tpm', tostring(window), '0'}
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'rpm', tostring(tonumber(oldest[2]) + window - now), '0'}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
end
return {}
"""


def _keys(name: str, period_id: str) -> list[str]:
    base = f"{PREFIX}{{{name}}}:"
    return [base + "rpm", base + "tpm", base + "spend:" + period_id]


class RedisStore:
    """Counters in the Redis at ``url`` (redis-py's asyncio client)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError("[cluster] redis_url needs the redis package: pip install 'llmrouter[redis]'") from None
        self.url = url
        if client is None:
            # A blocking pool queues callers for a free connection; the default pool raises "Too many
            # connections" under a burst, which would let the burst through unchecked.
            # Bounded socket timeouts: an unreachable Redis must fail (open) quickly, not hang requests.
            pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=10,
                                                            socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
            client = aioredis.Redis(connection_pool=pool)
        self.redis = client
        self._admit = self.redis.register_script(_ADMIT)

    async def admit(self, name: str, limits: Limits, now: float) -> Refusal | None:
        """See :meth:`llmrouter.keys.store.CounterStore.admit`."""
        budget = -1.0 if limits.budget_usd is None else limits.budget_usd
        member = f"{now!r}:{secrets.token_hex(6)}"
        result = await self._admit(keys=_keys(name, limits.period_id),
                                   args=[repr(now), repr(limits.window_s), limits.rpm or 0, limits.tpm or 0,
                                         repr(budget), member])
        if not result:
            return None
        limit, retry, spent = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        return Refusal(limit, max(float(retry), 0.0), float(spent))  # type: ignore[arg-type]

    async def debit(self, name: str, tokens: int, usd: float, limits: Limits, now: float) -> None:
        """See :meth:`llmrouter.keys.store.CounterStore.debit`."""
        _, tpm_key, spend_key = _keys(name, limits.period_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if limits.tpm is not None and tokens > 0:
                pipe.zadd(tpm_key, {f"{tokens}:{secrets.token_hex(6)}": now})
                pipe.pexpire(tpm_key, int(limits.window_s * 1000) + 1000)
            if limits.budget_usd is not None and usd > 0:
                pipe.incrbyfloat(spend_key, usd)
                if limits.period_id != "total":
                    pipe.expire(spend_key, 40 * 86400)  # a month and a bit: old periods clean themselves up
            await pipe.execute()

    async def spent(self, name: str, period_id: str) -> float:
        """See :meth:`llmrouter.keys.store.CounterStore.spent`."""
        value = await self.redis.get(_keys(name, period_id)[2])
        return float(value) if value is not None else 0.0

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()
