"""Providers: the upstream model servers, each speaking one wire format.

A :class:`Provider` knows its URL, credentials and format, and turns a canonical request into
one HTTP call (or, for ``echo``, into an offline answer). Errors become
:class:`~llmrouter.errors.ProviderError` (502) or :class:`~llmrouter.errors.ProviderTimeout` (504).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import httpx

from llmrouter.config import Config, ConfigError, ProviderConfig
from llmrouter.context import ProviderInfo
from llmrouter.errors import ProviderError, ProviderTimeout, ProviderUnreachable
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.base import iter_events, response_to_events
from llmrouter.formats.echo import echo_response, echo_stream_events  # noqa: F401  (re-exported)
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.formats.passthrough import forward_body
from llmrouter.formats.provider import ProviderFormat
from llmrouter.jsonutil import dumps, loads
from llmrouter.keys.pricing import Pricing
from llmrouter.models import (
    ChatRequest,
    ChatResponse,
    StreamError,
    StreamEvent,
    Usage,
)
from llmrouter.upstream.client import iter_chunks, post
from llmrouter.upstream.deadlines import deadline, deadline_at

log = logging.getLogger("llmrouter.upstream.providers")

ANTHROPIC_VERSION = "2023-06-01"
_ERROR_EXCERPT = 300
_REDACTED = "[redacted]"
_TRACE_HEADERS = ("traceparent", "tracestate")


class ProviderConnectTimeout(ProviderTimeout):
    """The provider could not be connected to in time (504, but retryable like a connect error)."""

    connection = True


class Provider:
    """One configured upstream. ``api_key`` is resolved from ``api_key_env`` at startup."""

    def __init__(self, config: ProviderConfig, api_key: str | None = None,
                 fmt: ProviderFormat | None = None) -> None:
        self.config = config
        self.name = config.name
        self.api_key = api_key
        self.format_name = config.format
        if fmt is None:
            fmt = builtin_formats()[config.format]
        fmt = fmt.for_provider(config)  # type: ignore[assignment]  # per-provider options (late_system)
        self.format: ProviderFormat = fmt
        self.wire: ProviderFormat | None = None if fmt.offline else fmt
        self._base = (config.base_url or "").rstrip("/")
        self.url = fmt.url(self._base, "", stream=False) if not fmt.offline else ""
        self._url = httpx.URL(self.url) if not fmt.offline else None
        self._host = self._url.netloc.decode("ascii") if self._url is not None else ""
        self._url_text = str(self._url) if self._url is not None else None
        self.timeout = httpx.Timeout(
            connect=config.timeout_connect_s,
            read=config.timeout_first_byte_s,
            write=config.timeout_connect_s,
            pool=config.timeout_connect_s,
        )
        self._timeout_ext = self.timeout.as_dict()
        self._headers = self._static_headers()
        self._info: tuple[bool, tuple[str, ...], Mapping[str, frozenset[str]] | None, ProviderInfo] | None = None
        self.pricing = Pricing(config.prices, config.cost_per_1m_tokens)
        # Formats with the default url() (path appended to base_url) get one URL object for all calls.
        self._fixed_url = type(fmt).url is ProviderFormat.url
        # Same-format passthrough only where the body is built by the built-in OpenAI or Anthropic
        # converter, which it reproduces (a format that builds its bodies otherwise never gets it).
        kind = type(fmt)
        self._passthrough = kind.body is ProviderFormat.body and (
            kind.build_request is OpenAIFormat.build_request or kind.build_request is AnthropicFormat.build_request)

    def _target(self, request: ChatRequest, model: str, stream: bool, url: httpx.URL | None,
                content: bytes) -> tuple[httpx.URL, dict[str, str]]:
        """The URL and headers of one call carrying ``content``."""
        if url is None:
            url = self._url if self._fixed_url else httpx.URL(self.format.url(self._base, model, stream=stream))
        # Host and Content-Length given up front: httpx would otherwise add each after a failed
        # (exception-raising) header lookup, a measurable cost per request.
        host = self._host if url is self._url else url.netloc.decode("ascii")
        extra = self._request_headers(request)
        # (what headers() gives, in one dict; forwarded headers the static ones already hold, as an
        # Anthropic client's anthropic-version usually is, change nothing: the same dict without them)
        if extra and not extra.items() <= self._headers.items():
            return url, {**self._headers, **extra, "host": host, "content-length": str(len(content))}
        return url, {**self._headers, "host": host, "content-length": str(len(content))}

    def _post(self, http: httpx.AsyncClient, body: dict[str, Any], request: ChatRequest, model: str,
              stream: bool, url: httpx.URL | None = None) -> Awaitable[Any]:
        """POST ``body`` (serialised) to the provider, with the headers of :meth:`_target`: an
        ``httpx.Response``, or a :class:`~llmrouter.upstream.client.BufferedReply` (same names for
        status, body and headers) for a reply read whole (see :func:`~llmrouter.upstream.client.post`)."""
        content = dumps(body)
        url, headers = self._target(request, model, stream, url, content)
        return post(http, url, content, headers, self._timeout_ext, stream=stream,
                    url_text=self._url_text if url is self._url else None)

    def info(self, healthy: bool = True, discovered: tuple[str, ...] = (),
             learned: Mapping[str, frozenset[str]] | None = None) -> ProviderInfo:
        """The read-only view plugins and routers get: configured plus ``discovered`` models, and
        the capabilities configured (``capabilities``, ``model_capabilities``) or ``learned`` by
        discovery (configured per-model entries win over learned ones).

        The same object is returned while ``healthy``, ``discovered`` and ``learned`` (by identity)
        are unchanged.
        """
        cached = self._info
        if cached is not None and cached[0] == healthy and cached[1] is discovered and cached[2] is learned:
            return cached[3]
        c = self.config
        models = tuple(dict.fromkeys([*c.models, *discovered]))
        per_model = dict(learned or {})
        per_model.update({m: frozenset(caps) for m, caps in c.model_capabilities.items()})
        info = ProviderInfo(
            name=c.name, format=c.format, cost=c.cost_per_1m_tokens, quality=c.quality,
            latency=c.latency_ms, throughput=c.throughput_tokens_per_sec, models=models, healthy=healthy,
            capabilities=frozenset(c.capabilities) if c.capabilities is not None else None,
            model_capabilities=MappingProxyType(per_model),
        )
        self._info = (healthy, discovered, learned, info)
        return info

    def _static_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.format.static_headers()}
        if self.api_key:
            headers.update(self.format.auth_headers(self.api_key))
        headers.update(self.config.headers)
        return headers

    def headers(self, request: ChatRequest) -> dict[str, str]:
        """Upstream headers: credentials in the format's convention, configured extras, whatever the
        format forwards for this request (Anthropic betas, for Anthropic clients), and the W3C trace
        context of the attempt when tracing put one in ``request.headers``."""
        extra = self._request_headers(request)
        return {**self._headers, **extra} if extra else self._headers

    def _request_headers(self, request: ChatRequest) -> dict[str, str] | None:
        """The headers of :meth:`headers` that depend on the request (None or empty: none)."""
        forwarded = request.headers
        if not forwarded:
            return None
        extra = self.format.request_headers(request, self.config.headers)
        if "traceparent" in forwarded:
            extra = {**{k: forwarded[k] for k in _TRACE_HEADERS if k in forwarded}, **extra}
        return extra

    def _build(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        """The upstream body; hosted tools this format cannot carry are dropped with a warning.

        A request the pipeline marked as unchanged, going to a provider of its client's format, is
        forwarded from the client's own JSON when that gives the same body (see
        :mod:`llmrouter.formats.passthrough`)."""
        assert self.wire is not None
        client = client_body(request)
        if client is not None and self._passthrough and client.format == self.format_name:
            body = forward_body(client, model, request.stream)
            if body is not None:
                body["stream"] = stream
                return body
        hosted = request.extra.get("_hosted_tools")
        if hosted and self.format_name != request.source_format:
            kinds = sorted({str(t.get("type")) for t in hosted if isinstance(t, dict)})
            log.warning("provider %r (format %s) cannot run hosted tools %s; they are dropped",
                        self.name, self.format_name, ", ".join(kinds))
        return self.wire.body(request, model, stream=stream)

    def cost_usd(self, usage: Usage, *models: str | None) -> float | None:
        """What ``usage`` cost: the first ``[[providers.prices]]`` entry matching one of ``models``
        (the model sent upstream first), else (input + output tokens) x ``cost_per_1m_tokens`` / 1e6;
        None when neither is configured."""
        return self.pricing.cost_usd(usage, *models)

    # -- calls ----------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, model: str, http: httpx.AsyncClient) -> ChatResponse:
        """Send a non-streaming request and return the parsed reply."""
        if self.wire is None:
            return self.format.offline_response(request, model)
        body = self._build(request, model, stream=False)
        try:
            with deadline(self.config.timeout_total_s):
                response = await self._post(http, body, request, model, False)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, response.headers)
        try:
            return self.wire.parse_response(loads(response.content))
        except ValueError as exc:
            raise ProviderError(self.name, f"provider '{self.name}' returned an unreadable reply: {exc}",
                                upstream_status=response.status_code) from None

    async def stream(self, request: ChatRequest, model: str, http: httpx.AsyncClient) -> AsyncIterator[StreamEvent]:
        """Open a streaming request; errors before the first byte raise, later ones become events.

        Returns an async iterator of canonical events. The upstream connection is closed when the
        iterator is closed (for example when the client disconnects).
        """
        if self.wire is None:
            return iter_events(self.format.offline_stream(request, model))
        body = self._build(request, model, stream=True)
        try:
            with deadline(self.config.timeout_first_byte_s):
                response = await self._post(http, body, request, model, True)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise self._status_error(response.status_code, content, response.headers)
        if _media_type(response.headers.get("content-type")) == "application/json":
            return await self._whole_reply(response)
        return self._decode(response)

    async def _whole_reply(self, response: httpx.Response) -> AsyncIterator[StreamEvent]:
        """A server that ignored ``stream: true`` sent one JSON reply: stream it as events, or raise
        (before anything reached the client) when it is no reply at all."""
        assert self.wire is not None
        try:
            with deadline(self.config.timeout_total_s):
                content = await response.aread()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        finally:
            await response.aclose()
        try:
            reply = self.wire.parse_response(loads(content))
        except ValueError as exc:
            raise ProviderError(self.name, self._redact(f"provider '{self.name}' returned an unreadable reply: {exc}"),
                                upstream_status=response.status_code) from None
        return iter_events(response_to_events(reply))

    async def _decode(self, response: httpx.Response) -> AsyncIterator[StreamEvent]:
        assert self.wire is not None
        decoder = self.wire.stream_decoder()
        # The total budget is applied read by read: a timeout context must not span a ``yield``,
        # because each event may be pulled by a different task (the server's relay does this), and
        # the expiring context would cancel whichever task happened to enter it.
        stop_at = asyncio.get_running_loop().time() + self.config.timeout_total_s
        chunks = iter_chunks(response).__aiter__()
        try:
            while True:
                try:
                    with deadline_at(stop_at):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                for event in decoder.feed(chunk):
                    if type(event) is StreamError:
                        event = self._redact_event(event)
                    yield event
            for event in decoder.close():
                if type(event) is StreamError:
                    event = self._redact_event(event)
                yield event
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"provider '{self.name}' stream broke: {self._redact(_describe(exc))}") from None
        finally:
            await response.aclose()

    async def count_tokens(self, body: dict[str, Any], request: ChatRequest,
                           http: httpx.AsyncClient) -> dict[str, Any] | None:
        """POST ``body`` to an Anthropic provider's ``/v1/messages/count_tokens`` and return its reply
        (``{"input_tokens": N, ...}``), or None when the upstream has no such endpoint (404/405).

        Credentials and the client's ``anthropic-version``/``anthropic-beta`` go along as for
        messages. Errors are raised as for :meth:`complete` (no retries).
        """
        if self.format_name != "anthropic" or self._url is None:
            raise ValueError(f"provider '{self.name}' ({self.format_name}) cannot count tokens")
        url = self._url.copy_with(path=self._url.path + "/count_tokens")
        try:
            with deadline(self.config.timeout_total_s):
                response = await self._post(http, body, request, request.model, False, url)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code in (404, 405):
            return None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, response.headers)
        try:
            reply = loads(response.content)
        except ValueError:
            reply = None
        count = reply.get("input_tokens") if isinstance(reply, dict) else None
        if not isinstance(count, int) or isinstance(count, bool):
            raise ProviderError(self.name, f"provider '{self.name}' returned an unreadable token count: "
                                f"{self._redact(_error_excerpt(response.content))}", upstream_status=response.status_code)
        return reply

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        """A failed exchange: 'unreachable' only when no connection was made; a connection that broke
        off (reset, closed mid-reply) is the provider's broken reply."""
        detail = self._redact(_describe(exc))
        if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol | httpx.ProxyError):
            return ProviderUnreachable(self.name, f"provider '{self.name}' unreachable: {detail}")
        return ProviderError(self.name, f"provider '{self.name}' broke off its reply: {detail}")

    def _timeout(self, exc: BaseException) -> ProviderTimeout:
        detail = _describe(exc) if not isinstance(exc, TimeoutError) else "no reply in time"
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return ProviderConnectTimeout(self.name, f"provider '{self.name}' timed out connecting: {detail}")
        return ProviderTimeout(self.name, f"provider '{self.name}' timed out: {detail}")

    def _redact(self, text: str) -> str:
        """``text`` with this provider's key and configured header values blanked out.

        Some upstreams echo the credentials they were sent in their error messages; those messages
        reach clients, logs and events.
        """
        return redact_secrets(text, (self.api_key, *self.config.headers.values()))

    def _redact_event(self, event: StreamError) -> StreamError:
        message = self._redact(event.message)
        return event if message == event.message else event.model_copy(update={"message": message})

    def _status_error(self, status: int, content: bytes, headers: httpx.Headers) -> ProviderError:
        excerpt = self._redact(_error_excerpt(content))
        retry_after = _retry_after(headers.get("retry-after"))
        return ProviderError(self.name, f"provider '{self.name}' returned {status}: {excerpt}",
                             upstream_status=status, retry_after=retry_after)


def client_body(request: ChatRequest) -> Any:
    """``request._client_body``, read without pydantic's attribute fallback (a private attribute is
    found by ``__getattr__`` after a failed lookup: two caught ``AttributeError`` per read, ~1.5 µs)."""
    private = request.__pydantic_private__
    return private.get("_client_body") if private else None


def credential_headers(format_name: str, api_key: str | None) -> dict[str, str]:
    """The headers that identify the router to a provider of ``format_name``: Anthropic's version
    and ``x-api-key``, or a Bearer token for the OpenAI-style formats."""
    if format_name == "anthropic":
        return {"anthropic-version": ANTHROPIC_VERSION, **({"x-api-key": api_key} if api_key else {})}
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def redact_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret of eight characters or more replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_excerpt(content: bytes) -> str:
    """The upstream's own error message if its body has one, else the start of the body."""
    try:
        data: Any = loads(content)
    except ValueError:
        text = content.decode("utf-8", errors="replace").strip()
        return text[:_ERROR_EXCERPT] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:_ERROR_EXCERPT]
        if isinstance(err, str):
            return err[:_ERROR_EXCERPT]
        if isinstance(data.get("message"), str):
            return data["message"][:_ERROR_EXCERPT]
    return content.decode("utf-8", errors="replace")[:_ERROR_EXCERPT]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


# -- building the provider table ---------------------------------------------------------------


def builtin_formats() -> dict[str, ProviderFormat]:
    """The built-in provider formats by name (what ``llmrouter_plugins.formats`` registers)."""
    from llmrouter_plugins.formats import BUILTIN_FORMATS

    return {fmt.name: fmt for fmt in BUILTIN_FORMATS}


def check_formats(config: Config, formats: Mapping[str, ProviderFormat],
                  problems: Mapping[str, str] | None = None) -> None:
    """Every provider's ``format`` must be registered, and formats that need one must have a ``base_url``.

    :raises ConfigError: naming the entry, the key and the registered formats.
    """
    for i, pc in enumerate(config.providers):
        where = f"{config.source}: [[providers]] #{i + 1} (name = {pc.name!r})"
        fmt = formats.get(pc.format)
        if fmt is None:
            hint = "".join(f"; plugin {pid!r}: {why}" for pid, why in (problems or {}).items())
            raise ConfigError(f"{where} key 'format': unknown format {pc.format!r} "
                              f"(registered: {', '.join(sorted(formats))}){hint}")
        if fmt.requires_base_url and not pc.base_url:
            raise ConfigError(f"{where} key 'base_url': required for format {pc.format!r}")


def build_providers(config: Config, environ: Mapping[str, str] | None = None,
                    formats: Mapping[str, ProviderFormat] | None = None) -> dict[str, Provider]:
    """Create providers in config order; skip (with a warning) those whose key variable is unset.

    ``formats`` are the registered provider formats (default: the built-ins).

    :raises ConfigError: on an unknown format, a missing ``base_url``, or when no provider is left.
    """
    env = os.environ if environ is None else environ
    formats = builtin_formats() if formats is None else formats
    check_formats(config, formats)
    providers: dict[str, Provider] = {}
    for pc in config.providers:
        key: str | None = None
        if pc.api_key_env:
            key = env.get(pc.api_key_env)
            if not key:
                log.warning("provider %r skipped: environment variable %s is not set", pc.name, pc.api_key_env)
                continue
        providers[pc.name] = Provider(pc, key, formats[pc.format])
    if not providers:
        configured = ", ".join(p.name for p in config.providers) or "none"
        raise ConfigError(
            f"{config.source}: [[providers]]: no provider available (configured: {configured}; "
            "check their api_key_env variables)"
        )
    return providers
