"""OpenTelemetry traces, exported over OTLP/HTTP (the optional ``llmrouter[otel]`` extra).

This module is imported only when ``[tracing] enabled = true``: the application then runs
:class:`~llmrouter.engine.traced.TracedPipeline` and :class:`TracedReliability`, which wrap the
stages of the plain :class:`~llmrouter.engine.pipeline.Pipeline` and
:class:`~llmrouter.upstream.reliability.Reliability` in spans. With tracing off neither class nor
OpenTelemetry itself is loaded, and the pipeline does no span work at all.

One trace per request::

    chat <requested model>          SERVER, the whole request (continues the client's traceparent)
      on_start, classify, pre_request, route
      provider                      the provider stage, retries and failover included
        chat <upstream model>       CLIENT, one per upstream attempt; its context goes upstream
                                    as the W3C traceparent header
      post_response, on_end

Attributes follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``) plus a few
``llmrouter.*`` ones; the trace id is added to the ``complete`` event and the log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmrouter.config import TracingConfig
from llmrouter.context import Context
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.models import ChatRequest, ChatResponse
from llmrouter.observe.metrics import TTFT_STATE
from llmrouter.upstream.reliability import Call, Reliability

if TYPE_CHECKING:
    from llmrouter.upstream.providers import Provider

log = logging.getLogger("llmrouter.tracing")

TRACE_STATE = "_trace"
"""``ctx.state`` key of the request's :class:`RequestTrace`."""
OPERATION = "chat"
PROPAGATOR = TraceContextTextMapPropagator()
"""W3C ``traceparent``/``tracestate`` extraction and injection."""


class Tracing:
    """The per-application tracer provider, its exporter and tracer.

    :param config: the ``[tracing]`` table. ``exporter = "otlp"`` sends spans over OTLP/HTTP to
        ``otlp_endpoint`` (``/v1/traces`` is appended to a bare base URL) or, without one, where the
        standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables say
        (headers, timeout and compression from the other ``OTEL_EXPORTER_OTLP_*`` variables).
    """

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
            shutdown_on_exit=False,  # the app shuts it down (flushing spans) when it stops
        )
        if config.exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(config))))
        elif config.exporter == "console":
            self.provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        self.tracer = self.provider.get_tracer("llmrouter")

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocking: call it off the event loop)."""
        self.provider.shutdown()


def traces_url(config: TracingConfig) -> str | None:
    """The OTLP/HTTP traces URL from ``otlp_endpoint`` (None: the exporter reads the environment)."""
    endpoint = config.otlp_endpoint
    if not endpoint:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def system_name(format_name: str) -> str:
    """The ``gen_ai.system`` / ``gen_ai.provider.name`` value for a provider format."""
    return {"echo": "llmrouter.echo", "openai-responses": "openai"}.get(format_name, format_name)


class RequestTrace:
    """The spans of one request: the root, and the provider stage while it is open."""

    __slots__ = ("root", "context", "trace_id", "provider_span", "provider_context", "attempts")

    def __init__(self, root: Span) -> None:
        self.root = root
        self.context: OtelContext = trace.set_span_in_context(root)
        self.trace_id = format(root.get_span_context().trace_id, "032x")
        self.provider_span: Span | None = None
        self.provider_context: OtelContext | None = None
        self.attempts = 0

    def end_provider(self, response: ChatResponse | None) -> None:
        """End the provider span (a stream's ends when the stream does)."""
        span, self.provider_span = self.provider_span, None
        if span is None:
            return
        if response is not None:
            set_response_attributes(span, response)
        span.end()


def set_request_attributes(span: Span, request: ChatRequest) -> None:
    """``gen_ai.request.*`` attributes of ``request``."""
    span.set_attribute("gen_ai.operation.name", OPERATION)
    span.set_attribute("gen_ai.request.model", request.model)
    for name, value in (("gen_ai.request.max_tokens", request.max_tokens),
                        ("gen_ai.request.temperature", request.temperature),
                        ("gen_ai.request.top_p", request.top_p)):
        if value is not None:
            span.set_attribute(name, value)
    if request.stop:
        span.set_attribute("gen_ai.request.stop_sequences", list(request.stop))


def set_response_attributes(span: Span, response: ChatResponse) -> None:
    """``gen_ai.response.*`` and ``gen_ai.usage.*`` attributes of ``response``."""
    if response.model:
        span.set_attribute("gen_ai.response.model", response.model)
    if response.id:
        span.set_attribute("gen_ai.response.id", response.id)
    if response.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])
    usage = response.usage
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)


def end_root(root: Span, entry: Mapping[str, Any], ctx: Context | None, providers: Mapping[str, Provider]) -> None:
    """Set the request span's outcome attributes from its ``complete`` entry, and end it."""
    if root.is_recording():
        status = entry.get("status")
        root.set_attribute("http.response.status_code", status)
        provider_name = entry.get("provider")
        if provider_name:
            root.set_attribute("llmrouter.provider", provider_name)
            provider = providers.get(provider_name)
            if provider is not None:
                root.set_attribute("gen_ai.system", system_name(provider.format_name))
                root.set_attribute("gen_ai.provider.name", system_name(provider.format_name))
        if entry.get("sent_model"):
            root.set_attribute("llmrouter.upstream_model", entry["sent_model"])
        if entry.get("tags"):
            root.set_attribute("llmrouter.tags", list(entry["tags"]))
        if entry.get("cost_usd") is not None:
            root.set_attribute("llmrouter.cost_usd", entry["cost_usd"])
        if ctx is not None:
            if ctx.response is not None:
                set_response_attributes(root, ctx.response)
            ttft = ctx.state.get(TTFT_STATE)
            if ttft is not None:
                root.set_attribute("llmrouter.time_to_first_token_s", ttft)
        if isinstance(status, int) and status >= 400:
            root.set_attribute("error.type", str(status))
            if status >= 500 or status == 499:
                root.set_status(Status(StatusCode.ERROR, entry.get("error") or None))
    root.end()


def fail_span(span: Span | None, exc: BaseException) -> None:
    if span is None or not span.is_recording():
        return
    span.set_attribute("error.type", _error_type(exc))
    span.set_status(Status(StatusCode.ERROR, getattr(exc, "message", None) or str(exc) or type(exc).__name__))


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, ProviderError) and exc.upstream_status is not None:
        return str(exc.upstream_status)
    return type(exc).__name__


class TracedReliability(Reliability):
    """:class:`~llmrouter.upstream.reliability.Reliability` with a CLIENT span per upstream attempt, whose
    context is sent upstream as ``traceparent`` (and ``tracestate``)."""

    def __init__(self, *args: Any, tracing: Tracing, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracing = tracing
        self._servers: dict[str, tuple[str, int | None]] = {}

    async def attempt(self, call: Call, provider: Provider, ctx: Context, model: str,
                      http: httpx.AsyncClient) -> Any:
        """One upstream attempt in its own span."""
        request_trace: RequestTrace | None = ctx.state.get(TRACE_STATE)
        if request_trace is None:
            return await call(provider, ctx.request, model, http)
        request_trace.attempts += 1
        span = self.tracing.tracer.start_span(
            f"{OPERATION} {model}", context=request_trace.provider_context or request_trace.context,
            kind=SpanKind.CLIENT)
        if span.is_recording():
            system = system_name(provider.format_name)
            set_request_attributes(span, ctx.request)
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("gen_ai.system", system)
            span.set_attribute("gen_ai.provider.name", system)
            span.set_attribute("llmrouter.provider", provider.name)
            span.set_attribute("llmrouter.attempt", request_trace.attempts)
            host, port = self._server(provider)
            if host:
                span.set_attribute("server.address", host)
                if port is not None:
                    span.set_attribute("server.port", port)
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        ctx.request.headers.update(carrier)
        try:
            result = await call(provider, ctx.request, model, http)
        except ProviderError as exc:
            if exc.upstream_status is not None:
                span.set_attribute("http.response.status_code", exc.upstream_status)
            fail_span(span, exc)
            span.end()
            raise
        except BaseException as exc:
            fail_span(span, exc)
            span.end()
            raise
        if span.is_recording():
            if isinstance(result, ChatResponse):
                set_response_attributes(span, result)
            if provider.format_name != "echo":
                span.set_attribute("http.response.status_code", 200)
        span.end()
        return result

    def _server(self, provider: Provider) -> tuple[str, int | None]:
        server = self._servers.get(provider.name)
        if server is None:
            url = httpx.URL(provider.url) if provider.url else None
            server = (url.host, url.port) if url is not None else ("", None)
            self._servers[provider.name] = server
        return server
