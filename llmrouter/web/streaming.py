"""The stream relay: upstream events rendered to the client as they arrive, with keep-alives,
disconnect detection and exactly one log line per stream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from llmrouter.context import Context
from llmrouter.engine.pipeline import Pipeline
from llmrouter.engine.streams import PLUGIN_STREAM_ERROR, TRANSFORMED
from llmrouter.errors import ProviderError, RouterError
from llmrouter.formats import ClientFormat
from llmrouter.formats.base import StreamRenderer
from llmrouter.models import ResponseAccumulator, StreamError
from llmrouter.observe.metrics import TTFT_STATE
from llmrouter.web.replies import router_headers

log = logging.getLogger("llmrouter.web")

KEEPALIVE_S = 15.0
"""Seconds of client-side silence on a stream before a keep-alive is sent."""
DISCONNECT_POLL_S = 1.0
"""How often a stream waiting on a silent upstream checks whether its client has gone."""


async def relay_stream(request: web.Request, fmt: ClientFormat, pipeline: Pipeline, ctx: Context,
                       started: float) -> web.StreamResponse:
    """Relay a streamed reply; errors before the first byte propagate as ordinary error replies."""
    answered_by_plugin = ctx.response is not None
    if answered_by_plugin:
        await pipeline.finish(ctx)
    events = await pipeline.open_stream(ctx)
    renderer = fmt.stream_renderer(ctx.request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
        **router_headers(ctx.request_id, ctx),
    })
    accumulator = ResponseAccumulator()
    error: str | None = None
    status = 200
    iterator = events.__aiter__()
    watch = _Watch(request, response, renderer)
    first_byte = True
    try:
        await response.prepare(request)
        watch.start()
        while True:
            # aiohttp does not cancel handlers when clients leave (unless handler_cancellation is
            # on): look before asking the upstream for more; the watch looks during its silences.
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client disconnected")
            watch.waiting = True
            try:
                event = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except asyncio.CancelledError:
                watch.raise_if_ours()
                raise
            finally:
                watch.waiting = False
            accumulator.feed(event)
            if isinstance(event, StreamError):
                err = _stream_error(ctx, event)
                await response.write(renderer.render_error(err))
                error, status = err.message, err.status
                break
            data = renderer.render(event)
            if data:
                await response.write(data)
                watch.wrote()
                if first_byte:
                    first_byte = False
                    ctx.state[TTFT_STATE] = time.perf_counter() - started
    except RouterError as exc:
        error, status = exc.message, exc.status
        await _write_error(response, renderer, exc)
    except (ConnectionError, asyncio.CancelledError) as exc:
        error, status = "client disconnected", 499
        if isinstance(exc, asyncio.CancelledError):
            watch.stop()
            _finish_after_disconnect(pipeline, ctx, accumulator, answered_by_plugin, started, iterator, None)
            raise
    except Exception as exc:  # a bug mid-stream: the client still gets an error event and the log a line
        log.exception("unexpected error streaming request %s", ctx.request_id)
        internal = RouterError(f"internal error: {type(exc).__name__}: {exc}")
        error, status = internal.message, internal.status
        await _write_error(response, renderer, internal)
    finally:
        watch.stop()
        await _close_iterator(iterator)
    if not answered_by_plugin:
        ctx.response = accumulator.result()
        ctx.error = error
        ctx.delivered = True
        await pipeline.finish(ctx)
    elif ctx.state.get(TRANSFORMED):
        # The late hooks ran before the plugin's answer was streamed; the log records what the
        # transformers made of it.
        ctx.response, ctx.error, ctx.delivered = accumulator.result(), error, True
    pipeline.record(ctx=ctx, request_id=ctx.request_id, endpoint=ctx.endpoint, started=started,
                    status=status, error=error)
    try:
        await response.write_eof()
    except ConnectionError:
        pass
    return response


class _Watch:
    """Keep-alives and disconnect checks for one stream while its upstream is silent, on one timer.

    The relay awaits the upstream directly (no task or wait per event). While it waits (``waiting``),
    the timer, re-armed each time it fires, does what the relay cannot: after ``KEEPALIVE_S`` of
    silence towards the client it sends a keep-alive (following the client's silence, not the
    upstream's: a renderer may hold output back, such as Anthropic tool arguments, while the upstream
    is busy), and every ``DISCONNECT_POLL_S`` it checks the client's connection; a client that left
    (or a keep-alive that could not be written) cancels the relay's wait, which :meth:`raise_if_ours`
    turns back into the error the relay handles (``ConnectionResetError`` for a client that left).
    """

    __slots__ = ("_cancelled", "_failure", "_handle", "_keepalive", "_last_write", "_loop", "_relay",
                 "_renderer", "_request", "_response", "waiting")

    def __init__(self, request: web.Request, response: web.StreamResponse, renderer: StreamRenderer) -> None:
        self._request, self._response, self._renderer = request, response, renderer
        self._loop = asyncio.get_running_loop()
        self._last_write = self._loop.time()
        self._relay: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._cancelled = False
        self._failure: BaseException | None = None
        self.waiting = False

    def start(self) -> None:
        """Watch on behalf of the current task (the relay), from now."""
        self._relay = asyncio.current_task()
        self._last_write = self._loop.time()
        self._arm(min(KEEPALIVE_S, DISCONNECT_POLL_S))

    def wrote(self) -> None:
        """The relay just sent the client something."""
        self._last_write = self._loop.time()

    def raise_if_ours(self) -> None:
        """Called with the relay's ``CancelledError`` in hand: if this watch cancelled it, raise what
        the relay must handle instead; otherwise return (someone else cancelled the relay)."""
        if not self._cancelled or self._relay is None:
            return
        self._cancelled = False
        self._relay.uncancel()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        raise ConnectionResetError("client disconnected")

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._keepalive is not None and not self._keepalive.done():
            self._keepalive.cancel()
        self._keepalive = None
        self._relay = None

    def _arm(self, delay: float) -> None:
        self._handle = self._loop.call_later(max(delay, 0.0), self._tick)

    def _tick(self) -> None:
        self._handle = None
        if self._relay is None:
            return
        idle = self._loop.time() - self._last_write
        if self.waiting and self._keepalive is None:
            transport = self._request.transport
            if transport is None or transport.is_closing():
                self._interrupt(None)
                return
            if idle >= KEEPALIVE_S:
                self._keepalive = self._loop.create_task(self._send_keepalive())
                idle = 0.0
        self._arm(min(KEEPALIVE_S - idle if idle < KEEPALIVE_S else KEEPALIVE_S, DISCONNECT_POLL_S))

    async def _send_keepalive(self) -> None:
        try:
            if self.waiting and self._relay is not None:
                await self._response.write(self._renderer.keepalive())
                self._last_write = self._loop.time()
        except Exception as exc:  # as if the relay's own write had raised it
            self._interrupt(exc)
        finally:
            self._keepalive = None

    def _interrupt(self, failure: BaseException | None) -> None:
        """End the relay's wait: the client left (``failure`` None) or a keep-alive write failed."""
        if self._relay is None or not self.waiting or self._cancelled:
            return
        self._cancelled = True
        self._failure = failure
        self._relay.cancel()


_PLUGIN_ERROR_STATUS = {"invalid_request_error": 400, "permission_error": 403, "not_found_error": 404,
                        "rate_limit_error": 429, "overloaded_error": 503, "timeout_error": 504}


def _stream_error(ctx: Context, event: StreamError) -> RouterError:
    """The error a mid-stream :class:`StreamError` stands for: a plugin's (a stream transformer
    ended the stream, its message as written) or the provider's."""
    if ctx.state.get(PLUGIN_STREAM_ERROR) is event:
        return RouterError(event.message, status=_PLUGIN_ERROR_STATUS.get(event.error_type, 500),
                           kind=event.error_type)
    err = ProviderError(ctx.provider or "?", f"provider '{ctx.provider}' stream error: {event.message}")
    err.kind = event.error_type  # e.g. overloaded_error: clients back off as they would upstream
    return err


async def _write_error(response: web.StreamResponse, renderer: StreamRenderer, error: RouterError) -> None:
    """Send the client an error event in its format, unless it is already gone."""
    try:
        await response.write(renderer.render_error(error))
    except (ConnectionError, RuntimeError):
        pass


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken upstream must never mask the real outcome
            log.debug("error closing upstream stream", exc_info=True)


def _finish_after_disconnect(pipeline: Pipeline, ctx: Context, accumulator: ResponseAccumulator,
                             answered_by_plugin: bool, started: float, iterator: AsyncIterator[Any],
                             pending: Any) -> None:
    """The handler was cancelled: log at once (the process may be shutting down); ``on_end`` and
    closing the upstream run in tasks of their own."""
    if not answered_by_plugin:
        ctx.response = accumulator.result()
        ctx.delivered = True  # as far as the client got: nothing done now can reach it
    pipeline.abandon(ctx, started=started, status=499, error="client disconnected")

    async def finish() -> None:
        if pending is not None and not pending.done():
            pending.cancel()
        await _close_iterator(iterator)

    task = asyncio.get_running_loop().create_task(finish())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[None]] = set()
