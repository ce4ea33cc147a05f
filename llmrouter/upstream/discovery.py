"""Model discovery: asking providers which models they serve, at startup and periodically.

``ollama`` providers are asked ``GET {base_url}/api/tags``, ``openai`` providers ``GET {base_url}/models``,
``anthropic`` providers ``GET {base_url}/v1/models`` (following pages); ``echo`` providers report their
configured ``models``. A failed query is logged as a warning and the provider keeps the list it had.

Capabilities: for ``ollama`` providers each discovered model is then asked ``POST {base_url}/api/show``
(``{"model": name}``), whose ``capabilities`` list (``completion``, ``vision``, ``tools``,
``thinking``, ...) is kept in :attr:`ModelDiscovery.capabilities`. A model whose ``show`` fails or has
no such list stays unknown, which routing treats as able to do anything. Other formats have no
such endpoint; their capabilities come from config (``capabilities`` / ``model_capabilities``).

:class:`ModelDiscovery` is independent of the server: the core creates it, calls :meth:`ModelDiscovery.start`
when the app starts and :meth:`ModelDiscovery.stop` on cleanup, and reads :attr:`ModelDiscovery.models`
when building :class:`~llmrouter.context.ProviderInfo`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from llmrouter.config import ProviderConfig
from llmrouter.jsonutil import loads
from llmrouter.upstream.providers import credential_headers, redact_secrets

if TYPE_CHECKING:
    from llmrouter.formats.provider import ProviderFormat

logger = logging.getLogger("llmrouter.upstream.discovery")

_ANTHROPIC_MAX_PAGES = 50
_TIMEOUT_S = 30.0
_SHOW_CONCURRENCY = 4
_SHOW_MAX_MODELS = 256
_SHARED_MAX_AGE_S = 300.0

ProviderWithKey = tuple[ProviderConfig, str | None]


class DiscoveryError(Exception):
    """A provider's model list could not be fetched or read; the message names provider and cause."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"model discovery for provider {provider!r} failed: {message}")
        self.provider = provider


def _unreadable(provider: str, url: str, why: str, method: str = "GET") -> DiscoveryError:
    return DiscoveryError(provider, f"{method} {url}: unreadable body ({why})")


async def _get_json(client: httpx.AsyncClient, provider: ProviderConfig, url: str,
                    headers: dict[str, str], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET ``url`` and return its JSON object body, or raise :class:`DiscoveryError`."""
    return await _request_json(client, provider, "GET", url, headers, params=params)


async def _request_json(client: httpx.AsyncClient, provider: ProviderConfig, method: str, url: str,
                        headers: dict[str, str], *, params: dict[str, Any] | None = None,
                        body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send ``method`` to ``url`` (``body`` as JSON) and return the JSON object reply, or raise
    :class:`DiscoveryError` naming the provider, the call and what went wrong."""
    timeout = httpx.Timeout(min(_TIMEOUT_S, provider.timeout_total_s), connect=provider.timeout_connect_s)
    try:
        response = await client.request(method, url, headers=headers, params=params, json=body, timeout=timeout)
        raw = await response.aread()
    except httpx.HTTPError as exc:
        raise DiscoveryError(provider.name, f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        snippet = raw[:300].decode("utf-8", errors="replace").strip()
        raise DiscoveryError(provider.name, f"{method} {url}: HTTP {response.status_code}: {snippet}")
    try:
        data = loads(raw)
    except ValueError:
        raise _unreadable(provider.name, url, "not JSON", method) from None
    if not isinstance(data, dict):
        raise _unreadable(provider.name, url, "not a JSON object", method)
    return data


def _names(provider: str, url: str, data: dict[str, Any], list_key: str, name_keys: Sequence[str]) -> list[str]:
    """The model names in ``data[list_key][*][name_key]``, de-duplicated, in order."""
    entries = data.get(list_key)
    if not isinstance(entries, list):
        raise _unreadable(provider, url, f"no {list_key!r} list")
    names: list[str] = []
    for entry in entries:
        name = None
        if isinstance(entry, dict):
            name = next((entry[k] for k in name_keys if isinstance(entry.get(k), str) and entry[k]), None)
        if name is None:
            raise _unreadable(provider, url, f"an entry of {list_key!r} has no {' or '.join(name_keys)}")
        if name not in names:
            names.append(name)
    return names


_BUILTIN = frozenset({"echo", "anthropic", "ollama", "openai", "openai-responses"})


async def discover_models(client: httpx.AsyncClient, provider: ProviderConfig, api_key: str | None,
                          fmt: ProviderFormat | None = None) -> list[str]:
    """Ask ``provider`` which models it serves.

    A plugin format (``fmt``, not one of the built-ins) is asked for its :meth:`models_url`; without
    one the provider reports its configured ``models``.

    :raises DiscoveryError: on a transport failure, an error status or a body that is not a model list.
    """
    if fmt is not None and provider.format not in _BUILTIN:
        url = fmt.models_url((provider.base_url or "").rstrip("/"))
        if url is None:
            return list(provider.models)
        headers = {**fmt.static_headers(), **(fmt.auth_headers(api_key) if api_key else {}), **provider.headers}
        try:
            names = fmt.parse_models(await _get_json(client, provider, url, headers))
        except DiscoveryError:
            raise
        except Exception as exc:
            raise _unreadable(provider.name, url, f"{type(exc).__name__}: {exc}") from None
        return list(dict.fromkeys([*provider.models, *names]))
    if provider.format == "echo":
        return list(provider.models)
    base = (provider.base_url or "").rstrip("/")
    headers = {**credential_headers(provider.format, api_key), **provider.headers}
    if provider.format == "anthropic":
        return await _anthropic_models(client, provider, f"{base}/v1/models", headers)
    if provider.format == "ollama":
        url = f"{base}/api/tags"
        return _names(provider.name, url, await _get_json(client, provider, url, headers), "models", ("name", "model"))
    url = f"{base}/models"
    return _names(provider.name, url, await _get_json(client, provider, url, headers), "data", ("id",))


async def discover_capabilities(client: httpx.AsyncClient, provider: ProviderConfig, api_key: str | None,
                                models: Sequence[str]) -> dict[str, frozenset[str]]:
    """What each of ``models`` can do, for providers that can say (Ollama's ``/api/show``).

    Models whose answer fails or lacks a ``capabilities`` list are left out (unknown). Never raises
    for one model's failure; the failures are logged at debug level.
    """
    if provider.format != "ollama" or not models:
        return {}
    url = f"{(provider.base_url or '').rstrip('/')}/api/show"
    headers = {**credential_headers(provider.format, api_key), **provider.headers}
    gate = asyncio.Semaphore(_SHOW_CONCURRENCY)

    async def show(model: str) -> tuple[str, frozenset[str] | None]:
        async with gate:
            try:
                data = await _request_json(client, provider, "POST", url, headers, body={"model": model})
            except Exception as exc:  # one model's failure leaves only that model unknown
                logger.debug("capabilities of %r on %r unknown: %s", model, provider.name, exc)
                return model, None
        caps = data.get("capabilities")
        if not isinstance(caps, list):
            return model, None
        return model, frozenset(c for c in caps if isinstance(c, str) and c)

    results = await asyncio.gather(*(show(m) for m in list(models)[:_SHOW_MAX_MODELS]))
    return {model: caps for model, caps in results if caps is not None}


async def _anthropic_models(client: httpx.AsyncClient, provider: ProviderConfig, url: str,
                            headers: dict[str, str]) -> list[str]:
    """All pages of Anthropic's model list."""
    names: list[str] = []
    params: dict[str, Any] = {"limit": 1000}
    for _ in range(_ANTHROPIC_MAX_PAGES):
        data = await _get_json(client, provider, url, headers, params)
        names.extend(n for n in _names(provider.name, url, data, "data", ("id",)) if n not in names)
        last_id = data.get("last_id")
        if not data.get("has_more") or not isinstance(last_id, str):
            break
        params = {"limit": 1000, "after_id": last_id}
    return names


Discovered = tuple[tuple[str, ...], dict[str, frozenset[str]]]
"""A provider's discovered models and, for those whose capabilities are known, what each can do."""


class SharedModelStore(Protocol):
    """Where instances of a cluster share discovered models (see :mod:`llmrouter.cluster.state`)."""

    async def fresh(self, provider: ProviderConfig, max_age_s: float) -> Discovered | None:
        """What another instance discovered within ``max_age_s``, or None."""

    async def latest(self, provider: ProviderConfig) -> Discovered | None:
        """The last good discovery any instance made, or None."""

    def put(self, provider: ProviderConfig, models: tuple[str, ...], capabilities: Mapping[str, frozenset[str]]) -> None:
        """Share what this instance discovered."""


class ModelDiscovery:
    """Keeps each provider's discovered models up to date.

    ``models`` maps provider names to the models last discovered; a provider whose query fails keeps
    its previous list (and is absent until a first query succeeds). ``capabilities`` maps provider
    names to what each discovered model can do (only models whose capabilities are known, see
    :func:`discover_capabilities`). Only providers with ``discover = true`` are queried.

    With a ``shared`` store (a cluster), a list another instance discovered within the provider's
    interval (and its capabilities) is used instead of a query, a successful query is shared, and a
    failed one falls back to the cluster's last good list.
    """

    def __init__(self, shared: SharedModelStore | None = None,
                 formats: Mapping[str, ProviderFormat] | None = None) -> None:
        self.formats: Mapping[str, ProviderFormat] = formats or {}
        self.models: dict[str, tuple[str, ...]] = {}
        self.capabilities: dict[str, Mapping[str, frozenset[str]]] = {}
        self.providers: dict[str, ProviderConfig] = {}
        self.shared = shared
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: asyncio.Event | None = None
        self._pending_first = 0

    async def refresh(self, client: httpx.AsyncClient, providers: Sequence[ProviderWithKey]) -> None:
        """Query every discoverable provider once, concurrently."""
        await asyncio.gather(*(self._refresh_one(client, p, key) for p, key in providers if p.discover))

    async def _refresh_one(self, client: httpx.AsyncClient, provider: ProviderConfig, api_key: str | None) -> None:
        shared = self.shared
        if shared is not None:
            cached = await shared.fresh(provider, provider.discover_interval_s or _SHARED_MAX_AGE_S)
            if cached is not None:
                self.adopt(provider.name, cached)
                return
        try:
            models = await discover_models(client, provider, api_key, self.formats.get(provider.format))
        except Exception as exc:  # a discovery problem must never take the router down
            error = exc if isinstance(exc, DiscoveryError) else DiscoveryError(provider.name, f"{type(exc).__name__}: {exc}")
            # Upstreams may echo the credentials they were sent in their error bodies.
            logger.warning("%s", redact_secrets(str(error), (api_key, *provider.headers.values())))
            if shared is not None and (cached := await shared.latest(provider)) is not None:
                self.adopt(provider.name, cached)
            return
        caps = await discover_capabilities(client, provider, api_key, models)
        if caps or provider.name in self.capabilities:
            self.capabilities[provider.name] = MappingProxyType(caps)
        self.models[provider.name] = tuple(models)
        if shared is not None:
            shared.put(provider, self.models[provider.name], caps)
        logger.debug("provider %r serves %d models (%d with known capabilities)", provider.name, len(models),
                     len(caps))

    def adopt(self, name: str, found: Discovered) -> None:
        """Take a discovery another instance made for provider ``name``."""
        models, caps = found
        if caps or name in self.capabilities:
            self.capabilities[name] = MappingProxyType(dict(caps))
        self.models[name] = models

    def start(self, client: httpx.AsyncClient, providers: Sequence[ProviderWithKey]) -> None:
        """Start background discovery: one query per provider now, then every ``discover_interval_s``
        (``0`` means only once). Must be called with a running event loop."""
        if self._tasks or self._ready is not None:
            raise RuntimeError("model discovery already started")
        enabled = [(p, key) for p, key in providers if p.discover]
        self.providers = {p.name: p for p, _ in providers}
        self._ready = asyncio.Event()
        self._pending_first = len(enabled)
        if not enabled:
            self._ready.set()
        self._tasks = [
            asyncio.create_task(self._run(client, p, key), name=f"llmrouter-discovery-{p.name}")
            for p, key in enabled
        ]

    async def _run(self, client: httpx.AsyncClient, provider: ProviderConfig, api_key: str | None) -> None:
        try:
            await self._refresh_one(client, provider, api_key)
        finally:
            self._first_done()
        while provider.discover_interval_s > 0:
            await asyncio.sleep(provider.discover_interval_s)
            await self._refresh_one(client, provider, api_key)

    def _first_done(self) -> None:
        self._pending_first -= 1
        if self._pending_first <= 0 and self._ready is not None:
            self._ready.set()

    async def wait_ready(self) -> None:
        """Wait until every provider's first query since :meth:`start` has finished (or failed)."""
        if self._ready is not None:
            await self._ready.wait()

    async def stop(self) -> None:
        """Cancel background discovery and wait for it to end. Safe to call more than once."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._ready is not None:
            self._ready.set()
        self._ready = None
