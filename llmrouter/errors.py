"""Errors the router turns into HTTP responses in the client's own error shape."""

from __future__ import annotations


class RouterError(Exception):
    """An error with an HTTP status and a message meant for the client.

    ``kind`` is a format-neutral error kind; each client format maps it to its own ``type``
    (see :meth:`llmrouter.formats.base.ClientFormat.render_error`).
    """

    status: int = 500
    kind: str = "api_error"

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind
        self.code = code


class InvalidRequest(RouterError):
    """Malformed JSON, a missing field or a field of the wrong type (400)."""

    status = 400
    kind = "invalid_request_error"


class AuthenticationFailed(RouterError):
    """Missing or wrong inbound API key (401)."""

    status = 401
    kind = "authentication_error"


class Forbidden(RouterError):
    """An authenticated key asked for something it may not use (403)."""

    status = 403
    kind = "permission_error"


class RateLimited(RouterError):
    """A key is over its rate limit or budget (429); ``retry_after`` is in seconds."""

    status = 429
    kind = "rate_limit_error"

    def __init__(self, message: str, retry_after: float, *, code: str = "rate_limit_exceeded") -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class NotFound(RouterError):
    """Unknown route (404)."""

    status = 404
    kind = "not_found_error"


class PayloadTooLarge(RouterError):
    """Request body over ``[server] max_body_mb`` (413)."""

    status = 413
    kind = "request_too_large"


class NoRoute(RouterError):
    """No router rule matched and nothing forced a provider (400)."""

    status = 400
    kind = "invalid_request_error"


class PluginFailed(RouterError):
    """A plugin raised in ``on_start``/``pre_request``, or stopped without a response (500)."""

    status = 500
    kind = "api_error"


#: Upstream statuses the client gets as they are (its request is at fault and it can fix it), with
#: the error kind each maps to. Every other upstream failure is a 502 (429 stays 429).
CLIENT_FAULT_KINDS = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
                      422: "invalid_request_error", 429: "rate_limit_error"}


class ProviderError(RouterError):
    """The provider failed; the status the client gets follows the upstream's (see docs/pipeline.md).

    Upstream 400/404/413/422 keep their status, 429 stays 429, anything else (401/403, 5xx, an
    unreadable or cut reply, no answer at all) is a 502. ``connection`` marks failures to reach the
    provider at all (refused, DNS, connect timeout), which count against every model it serves.
    """

    status = 502
    kind = "api_error"
    connection = False

    def __init__(self, provider: str, message: str, *, upstream_status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code="provider_error")
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        kind = CLIENT_FAULT_KINDS.get(upstream_status) if upstream_status is not None else None
        if kind is not None and type(self).status == 502:
            self.status, self.kind = upstream_status, kind  # type: ignore[assignment]


class ProviderUnreachable(ProviderError):
    """The provider could not be reached: connection refused, name not resolved, network down (502)."""

    connection = True


class ProviderTimeout(ProviderError):
    """The provider did not answer in time (504)."""

    status = 504
    kind = "timeout_error"
