"""Inbound auth and error-shape middleware, and the start-up checks on who may reach the router."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from llmrouter.config import Config, ConfigError
from llmrouter.errors import AuthenticationFailed, Forbidden, NotFound, RouterError
from llmrouter.keys.auth import presented_key
from llmrouter.web.appkeys import KEYRING, LIVE, OPEN_PATHS, PRINCIPAL
from llmrouter.web.replies import error_response, format_for_path, new_request_id

_CHAT_PATHS = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/responses"})
OPEN_BY_DEFAULT = frozenset({"/health", "/", "/api/hello"})
"""Paths that never need the inbound key (``/api/hello`` is Claude Code's credential-less probe)."""
_ADMIN_PREFIXES = ("/admin", "/dashboard", "/metrics")


def resolve_api_key(config: Config, environ: Mapping[str, str]) -> str | None:
    """The inbound API key, or None when auth is off.

    :raises ConfigError: when ``api_key_env`` names an unset variable, or a non-loopback bind
        has no key and ``allow_unauthenticated`` is not set.
    """
    server = config.server
    if server.api_key_env:
        key = environ.get(server.api_key_env)
        if not key:
            raise ConfigError(f"{config.source}: [server] key 'api_key_env': environment variable "
                              f"{server.api_key_env} is not set")
        return key
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only listens on this machine; names other
    than ``localhost``, the empty host and wildcard addresses count as exposed."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_exposure(config: Config, host: str, api_key: str | None) -> None:
    """Refuse a non-loopback bind without inbound auth (an admin key or ``[[keys]]``) unless explicitly
    allowed."""
    if not is_loopback(host) and api_key is None and not config.keys and not config.server.allow_unauthenticated:
        raise ConfigError(
            f"{config.source}: [server] key 'host': binding {host!r} exposes the router; set api_key_env "
            "(or allow_unauthenticated = true to accept the risk)"
        )


def _refuse(request: web.Request, error: RouterError) -> web.Response:
    """An auth refusal in the client's shape; refused chat requests still get events and a log line."""
    headers = None
    if request.method == "POST" and request.path in _CHAT_PATHS:
        pipeline, request_id = request.app[LIVE].current.pipeline, new_request_id()
        pipeline.publish_start(request_id, None, request.path)
        pipeline.record(ctx=None, request_id=request_id, endpoint=request.path,
                        started=time.perf_counter(), status=error.status, error=error.message)
        headers = {"X-Router-Request-Id": request_id}
    return error_response(format_for_path(request.path), error, headers)


def authenticate(request: web.Request) -> web.Response | None:
    """Require a known key on every route except ``/health``, ``/``, ``/api/hello``
    (and ``/metrics`` when ``[metrics] public = true``); with
    ``[[keys]]``, the admin routes (``/admin``, ``/dashboard``) require the admin key. The principal
    is left on the request; a refusal is returned (None: the request may go on)."""
    keyring = request.app.get(KEYRING)
    if keyring is None or not keyring.enabled or request.path in request.app.get(OPEN_PATHS, OPEN_BY_DEFAULT):
        return None
    presented = presented_key(request)
    principal = keyring.authenticate(presented) if presented is not None else None
    if principal is None:
        return _refuse(request, AuthenticationFailed("missing API key" if presented is None else "invalid API key"))
    if not principal.admin and request.path.startswith(_ADMIN_PREFIXES):
        return _refuse(request, Forbidden(f"key '{principal.name}' may not use {request.path}: it needs the admin key"))
    request[PRINCIPAL] = principal
    return None


@web.middleware
async def inbound_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    """:func:`authenticate`, then the handler, with aiohttp's own HTTP errors (404, 405) rendered in
    the client's error shape. (One middleware rather than two: each level is a coroutine that every
    request enters and that every resumption of the handler passes through.)"""
    try:
        refusal = authenticate(request)
        if refusal is not None:
            return refusal
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/dashboard"):
            raise
        fmt = format_for_path(request.path)
        if exc.status == 404:
            err: RouterError = NotFound(f"no route for {request.method} {request.path}")
        else:
            err = RouterError(f"{exc.reason} for {request.method} {request.path}", status=exc.status,
                              kind="invalid_request_error")
        return error_response(fmt, err)
