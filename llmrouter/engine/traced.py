"""The pipeline with OpenTelemetry spans: one per request, one per stage.

Loaded only with ``[tracing] enabled = true`` (see :mod:`llmrouter.observe.tracing` for the trace
layout, the attributes and the exporter); the plain :class:`~llmrouter.engine.pipeline.Pipeline`
does no span work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from llmrouter.context import Context, Route
from llmrouter.engine.pipeline import Pipeline, Step
from llmrouter.formats.passthrough import ClientBody
from llmrouter.models import ChatRequest, ChatResponse, StreamEvent
from llmrouter.observe.tracing import (
    OPERATION,
    PROPAGATOR,
    TRACE_STATE,
    RequestTrace,
    Tracing,
    end_root,
    fail_span,
    set_request_attributes,
)


class TracedPipeline(Pipeline):
    """A :class:`~llmrouter.engine.pipeline.Pipeline` that records each request as a trace."""

    def __init__(self, *args: Any, tracing: Tracing, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tracing = tracing

    def new_context(self, request: ChatRequest, request_id: str, endpoint: str,
                    inbound_headers: Mapping[str, str] | None = None,
                    client_body: ClientBody | None = None) -> Context:
        """A fresh context whose root span continues the client's ``traceparent``, if it sent one."""
        ctx = super().new_context(request, request_id, endpoint, inbound_headers, client_body)
        parent = PROPAGATOR.extract(inbound_headers) if inbound_headers else None
        root = self.tracing.tracer.start_span(f"{OPERATION} {request.model}", context=parent, kind=SpanKind.SERVER)
        if root.is_recording():
            set_request_attributes(root, request)
            root.set_attribute("llmrouter.request_id", request_id)
            root.set_attribute("llmrouter.endpoint", endpoint)
            root.set_attribute("llmrouter.stream", request.stream)
            root.set_attribute("http.request.method", "POST")
            root.set_attribute("url.path", endpoint)
        ctx.state[TRACE_STATE] = RequestTrace(root)
        return ctx

    @contextmanager
    def _stage(self, ctx: Context, name: str) -> Iterator[Span]:
        """A child span of the request for one stage, current while the stage runs (so spans that
        plugins start nest under it)."""
        request_trace: RequestTrace = ctx.state[TRACE_STATE]
        span = self.tracing.tracer.start_span(name, context=request_trace.context)
        with trace.use_span(span, end_on_exit=True):
            yield span

    async def _run_flow_hooks(self, ctx: Context, stage: str, steps: list[Step], *, fatal: bool) -> bool:
        """A flow stage (on_start, pre_request, post_response, on_end) in its own span."""
        with self._stage(ctx, stage) as span:
            span.set_attribute("llmrouter.plugins", [step.plugin_id for step in steps])
            stopped = await super()._run_flow_hooks(ctx, stage, steps, fatal=fatal)
            if stopped and ctx.stopped_by:
                span.set_attribute("llmrouter.stopped_by", ctx.stopped_by)
            return stopped

    async def _classify(self, ctx: Context, steps: list[Step]) -> None:
        """Classification in a ``classify`` span carrying the resulting tags."""
        with self._stage(ctx, "classify") as span:
            span.set_attribute("llmrouter.plugins", [step.plugin_id for step in steps])
            await super()._classify(ctx, steps)
            span.set_attribute("llmrouter.tags", list(ctx.request.tags))

    async def _route(self, ctx: Context) -> Route:
        """The router chain in a ``route`` span carrying its decision."""
        with self._stage(ctx, "route") as span:
            decision = await super()._route(ctx)
            span.set_attribute("llmrouter.provider", decision.provider)
            span.set_attribute("llmrouter.upstream_model", decision.model or ctx.request.model)
            return decision

    def _open_provider_span(self, ctx: Context) -> RequestTrace:
        request_trace: RequestTrace = ctx.state[TRACE_STATE]
        span = self.tracing.tracer.start_span("provider", context=request_trace.context)
        span.set_attribute("llmrouter.provider", ctx.provider or "")
        request_trace.provider_span = span
        request_trace.provider_context = trace.set_span_in_context(span)
        return request_trace

    async def call_provider(self, ctx: Context) -> ChatResponse:
        """The provider stage in a ``provider`` span; each attempt is a child of it."""
        request_trace = self._open_provider_span(ctx)
        try:
            response = await super().call_provider(ctx)
        except BaseException as exc:
            fail_span(request_trace.provider_span, exc)
            request_trace.end_provider(None)
            raise
        request_trace.end_provider(response)
        return response

    async def call_provider_stream(self, ctx: Context) -> AsyncIterator[StreamEvent]:
        """The provider stage of a stream: its span stays open until the stream has been relayed."""
        request_trace = self._open_provider_span(ctx)
        try:
            return await super().call_provider_stream(ctx)
        except BaseException as exc:
            fail_span(request_trace.provider_span, exc)
            request_trace.end_provider(None)
            raise

    async def finish(self, ctx: Context) -> None:
        """End a stream's provider span (marked failed if the stream broke), then run the late stages."""
        request_trace: RequestTrace | None = ctx.state.get(TRACE_STATE)
        if request_trace is not None:
            if ctx.error and request_trace.provider_span is not None:
                fail_span(request_trace.provider_span, RuntimeError(ctx.error))
            request_trace.end_provider(ctx.response)
        await super().finish(ctx)

    def emit(self, entry: dict[str, Any], ctx: Context | None) -> None:
        """End the request's spans and add its ``trace_id`` to the event and log line."""
        request_trace: RequestTrace | None = ctx.state.get(TRACE_STATE) if ctx is not None else None
        if request_trace is not None:
            entry["trace_id"] = request_trace.trace_id
            request_trace.end_provider(None)
            end_root(request_trace.root, entry, ctx, self.providers)
        super().emit(entry, ctx)
