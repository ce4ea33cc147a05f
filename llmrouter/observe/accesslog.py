"""The ``serve`` access log: one line per request on standard output.

Fed by the event bus (``complete`` events only: failovers are read from their ``attempts``), so it
costs the request path nothing: lines are written by a task of their own. A line reads::

    10:36:22 /v1/chat/completions gpt-4o -> openai/gpt-4o 200 123 ms 10+5 tokens
    10:36:23 /v1/messages claude-x -> b/claude-x 200 340 ms 12+6 tokens failover a -> b (provider 'a' returned 503: overloaded)
    10:36:24 /v1/chat/completions gpt-4o -> a/gpt-4o 502 12 ms error: provider 'a' returned 500: boom

Only the endpoint's path is printed (never a query string, which may hold ``?api_key=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, TextIO

from llmrouter.observe.events import EventBackend, Subscription, SubscriptionClosed
from llmrouter.observe.printable import printable

log = logging.getLogger("llmrouter.access")

QUEUE_SIZE = 10_000
BATCH_S = 0.005
"""After a write, lines gather for this long before the next one: under load one write (and one
wake-up of the writing task) carries many lines; the first line after a quiet spell goes out at once."""
_ERROR_CHARS = 200
_NUMBER = (int, float)


def format_line(event: dict[str, Any]) -> str:
    """The access line for one ``complete`` event."""
    ts = event.get("ts_ms")
    clock = _clock(ts) if isinstance(ts, _NUMBER) else "--:--:--"
    requested = event.get("requested_model") or "?"
    provider = event.get("provider")
    if provider:
        sent = event.get("sent_model")
        target = f"{provider}/{sent}" if sent else provider
    else:
        target = "-"
    duration = event.get("duration_ms")
    parts = [clock, str(event.get("endpoint") or "?"), f"{requested} -> {target}", str(event.get("status", "?")),
             f"{duration:.0f} ms" if isinstance(duration, _NUMBER) else "? ms"]
    usage = event.get("usage")
    if isinstance(usage, dict):
        parts.append(f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens")
    attempts = event.get("attempts")
    if isinstance(attempts, list) and len(attempts) > 1:  # one attempt (the usual) has no failover
        parts.extend(_failovers(attempts))
    error = event.get("error")
    if error:
        text = " ".join(str(error).split())
        parts.append("error: " + (text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."))
    return printable(" ".join(parts))


_last_clock: tuple[float, str] = (-1.0, "")


def _clock(ts_ms: float) -> str:
    """``HH:MM:SS`` local time of ``ts_ms``, formatted once per second of traffic."""
    global _last_clock
    second = ts_ms // 1000
    last = _last_clock
    if last[0] == second:
        return last[1]
    text = time.strftime("%H:%M:%S", time.localtime(second))
    _last_clock = (second, text)
    return text


def _failovers(attempts: Any) -> list[str]:
    """``failover a -> b (a's last error)`` for each change of provider in the attempts."""
    if not isinstance(attempts, list):
        return []
    hops = []
    for before, after in zip(attempts, attempts[1:], strict=False):
        if not (isinstance(before, dict) and isinstance(after, dict)):
            continue
        if before.get("provider") != after.get("provider"):
            reason = f" ({before['error']})" if before.get("error") else ""
            hops.append(f"failover {before.get('provider')} -> {after.get('provider')}{reason}")
    return hops


class AccessLog:
    """Writes :func:`format_line` for every ``complete`` event published on ``bus``."""

    def __init__(self, bus: EventBackend, stream: TextIO | None = None, *, batch_s: float = BATCH_S) -> None:
        self.bus = bus
        self.stream = stream
        self.batch_s = batch_s
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Subscribe and start writing lines."""
        self._subscription = self.bus.subscribe(QUEUE_SIZE).only("complete")
        self._task = asyncio.get_running_loop().create_task(self._run(self._subscription))

    async def stop(self) -> None:
        """Write the lines still queued, then stop."""
        subscription, task = self._subscription, self._task
        if subscription is None or task is None:
            return
        self._write(*subscription.pending())
        subscription.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self, subscription: Subscription) -> None:
        while True:
            try:
                events = [await subscription.get()]
            except SubscriptionClosed:
                return
            try:  # whatever else is queued goes out in the same write (one system call under load)
                while (event := subscription.poll()) is not None:
                    events.append(event)
            finally:
                self._write(*events)
            # Nothing is held while waiting here: stop() writes whatever queued up meanwhile.
            await asyncio.sleep(self.batch_s)

    def _write(self, *events: dict[str, Any]) -> None:
        lines = []
        for event in events:
            kind = event.get("type")
            if kind == "dropped":
                lines.append(f"({event.get('count')} access lines lost: the terminal was too slow)\n")
            elif kind == "complete":
                lines.append(format_line(event) + "\n")
        if not lines:
            return
        stream = self.stream or sys.stdout
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stdout must not stop the server
            log.debug("access line not written", exc_info=True)
