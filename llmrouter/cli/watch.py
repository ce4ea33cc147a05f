"""``llmrouter watch``: follow a running router's events from the terminal.

The event stream is ``GET /dashboard/events`` (SSE). :func:`follow` yields its events and
reconnects, with backoff, whenever the connection drops (for example while the router restarts);
:func:`format_event` turns one event into a readable line. The TUI reuses both.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import click

from llmrouter.formats.base import SSELineParser
from llmrouter.jsonutil import dumps_str, loads
from llmrouter.observe.printable import printable

DEFAULT_URL = "http://127.0.0.1:8090"
EXCERPT_CHARS = 60
RETRY_INITIAL_S = 0.25
RETRY_MAX_S = 5.0
# Keep-alives arrive every 15 s; a connection silent for much longer than that is dead.
READ_TIMEOUT_S = 60.0
# The human views (watch's lines, the TUI) show a request's last user message only, so they take
# a request over this many KB as a preview (as the dashboard page does); ``watch --json`` takes all.
PREVIEW_KB = 16

Event = dict[str, Any]


class WatchError(Exception):
    """A problem retrying cannot fix (wrong API key, dashboard disabled)."""


# -- reading the stream -----------------------------------------------------------------------------


def events_url(base_url: str, history: int = 0, request_kb: int | None = None) -> str:
    """The SSE endpoint of the router at ``base_url``; with ``request_kb``, requests over that many
    KB arrive as previews (their last messages, see docs/events-and-logs.md)."""
    url = base_url.rstrip("/") + "/dashboard/events"
    query = [f"history={history}"] if history else []
    if request_kb is not None:
        query.append(f"request_kb={request_kb}")
    return url + "?" + "&".join(query) if query else url


async def stream_events(session: Any, base_url: str, api_key: str | None = None, history: int = 0,
                        on_open: Callable[[], None] | None = None,
                        request_kb: int | None = None) -> AsyncIterator[Event]:
    """Yield events from one connection until it ends; ``on_open`` is called once it is established.

    :raises WatchError: on 401, 403 or 404. :raises aiohttp.ClientError: when the connection fails.
    """
    import aiohttp

    headers = {"Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT_S)
    async with session.get(events_url(base_url, history, request_kb), headers=headers, timeout=timeout) as resp:
        if resp.status == 401:
            if api_key:
                raise WatchError(f"{base_url}: the router refused the API key (check --api-key or ROUTER_API_KEY)")
            raise WatchError(f"{base_url}: the router wants an API key (use --api-key or ROUTER_API_KEY)")
        if resp.status == 403:  # a virtual key: the event stream needs the admin key
            raise WatchError(f"{base_url}: {await _error_message(resp)}")
        if resp.status == 404:
            raise WatchError(f"{base_url}: no event stream here (is [server] dashboard = false?)")
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, resp.history, status=resp.status,
                                              message=f"unexpected status {resp.status}")
        if on_open is not None:
            on_open()
        parser = SSELineParser()
        async for raw in resp.content:
            for kind, data in parser.feed(raw):
                try:
                    event = loads(data)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    event.setdefault("type", kind or "message")
                    yield event


async def _error_message(resp: Any) -> str:
    """The message of an error reply in either client shape, else its status."""
    try:
        body = loads(await resp.read())
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    except ValueError:
        pass
    return f"refused with status {resp.status}"


async def follow(base_url: str, api_key: str | None = None, *, history: int = 0,
                 on_status: Callable[[str, bool], None] | None = None,
                 request_kb: int | None = None) -> AsyncIterator[Event]:
    """Yield events forever, reconnecting with backoff when the connection drops.

    ``on_status(message, connected)`` hears about connects and disconnects. Only the first
    attempt asks for ``history``, so a reconnect does not repeat old events. ``request_kb`` asks
    for previews of bigger requests (for views that show only the last message).

    :raises WatchError: when retrying cannot help.
    """
    import aiohttp

    delay = RETRY_INITIAL_S
    status = on_status or (lambda message, connected: None)
    async with aiohttp.ClientSession() as session:
        last_reason: str | None = None

        def opened() -> None:
            nonlocal delay, last_reason
            delay, last_reason = RETRY_INITIAL_S, None
            status(f"connected to {base_url}", True)

        while True:
            try:
                async for event in stream_events(session, base_url, api_key, history, opened, request_kb):
                    yield event
                reason = "stream ended"
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            history = 0  # events the first connection replayed must not come again
            if reason != last_reason:  # one message per new kind of failure, not one per retry
                status(f"disconnected ({reason}); retrying", False)
            last_reason = reason
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)


# -- formatting -------------------------------------------------------------------------------------


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _parts_text(parts: Any) -> str:
    if isinstance(parts, str):  # wire-format content given as a plain string
        return parts
    out = []
    for part in parts or []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):  # canonical and wire parts; Responses parts
            out.append(str(part.get("text", "")))
        elif kind == "tool_use":
            out.append(f"[tool {part.get('name')}]")
        elif kind == "tool_result":
            out.append(_parts_text(part.get("content")))
        elif kind == "image":
            out.append("[image]")
    return " ".join(t for t in out if t)


def prompt_text(request: Any) -> str:
    """The last user message of a logged request (what the user just asked): its ``messages``, or
    a Responses request's ``input`` (a string, or items of which messages have a role)."""
    if not isinstance(request, dict):
        return ""
    conversation = request.get("messages") or request.get("input") or []
    if isinstance(conversation, str):
        return conversation
    if not isinstance(conversation, list):
        return ""
    for message in reversed(conversation):
        if isinstance(message, dict) and message.get("role") == "user":
            return _parts_text(message.get("content"))
    return ""


def reply_text(response: Any) -> str:
    """The text (and tool calls) of a logged response."""
    return _parts_text(response.get("content")) if isinstance(response, dict) else ""


def _clock(ts_ms: Any) -> str:
    if not isinstance(ts_ms, int | float):
        return "--:--:--.---"
    moment = datetime.fromtimestamp(ts_ms / 1000)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def short_id(request_id: Any) -> str:
    """The first 8 characters of a request id (enough to tell requests apart on screen)."""
    return str(request_id)[:8] if request_id else "-" * 8


def _models(event: Event) -> str:
    asked = event.get("requested_model") or "?"
    sent = event.get("sent_model")
    provider = event.get("provider")
    target = f"{provider}/{sent}" if provider and sent else provider or ""
    return f"{asked} -> {target}" if target else asked


def _tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    return f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tok"


def format_event(event: Event, colour: bool = False) -> str:
    """One readable line: time, short request id, event type and what matters about it.

    ``colour`` styles the event type with ANSI colours (``click.echo`` strips them off a terminal).
    """
    kind = str(event.get("type", "?"))
    head = f"{_clock(event.get('ts_ms'))} {short_id(event.get('id'))} "
    if kind == "start":
        label = "start"
        detail = f"{event.get('model') or '?'}  {event.get('endpoint', '')}  in flight: {event.get('in_flight', '?')}"
    elif kind == "classified":
        label = "classified"
        detail = "tags: " + (", ".join(event.get("tags") or []) or "(none)")
    elif kind == "routed":
        label = "routed"
        detail = f"-> {event.get('provider')}  model {event.get('model')}"
        if event.get("failover_from"):
            detail += f"  (failover from {event['failover_from']})"
    elif kind == "complete":
        error = event.get("error")
        label = "error" if error else "done"
        bits = [_models(event)]
        if event.get("tags"):
            bits.append("[" + ",".join(event["tags"]) + "]")
        if event.get("plugins"):
            bits.append("plugins: " + ",".join(event["plugins"]))
        if isinstance(event.get("duration_ms"), int | float):
            bits.append(f"{event['duration_ms']:.0f} ms")
        if event.get("usage"):
            bits.append(_tokens(event.get("usage")))
        if isinstance(event.get("cost_usd"), int | float) and event["cost_usd"]:
            bits.append(f"${event['cost_usd']:.6f}")
        attempts = event.get("attempts")
        if isinstance(attempts, list) and len(attempts) > 1:
            bits.append(f"{len(attempts)} attempts")
        if error:
            bits.append(f"{event.get('status', '')} {excerpt(error, 120)}".strip())
        prompt = excerpt(prompt_text(event.get("request")))
        reply = excerpt(reply_text(event.get("response")))
        talk = f'"{prompt}"' + (f' => "{reply}"' if reply else "")
        detail = "  ".join(bits) + ("  " + talk if prompt or reply else "")
    elif kind == "circuit":
        label = "circuit"
        # ``key`` is provider/model ("a/*": the provider's connection breaker, every model).
        target = event.get("key") or f"provider {event.get('provider')}"
        detail = (f"{target} is now {event.get('state')} "
                  f"({event.get('consecutive_failures', '?')} consecutive failures)")
    elif kind == "dropped":
        label = "dropped"
        detail = f"{event.get('count')} events lost (this watcher fell behind)"
    else:
        label = kind
        detail = dumps_str(event)
    tag = printable(f"{label:<10}")
    if colour:
        tag = click.style(tag, fg=_COLOURS.get(label), bold=label == "error")
    return printable(head) + tag + " " + printable(detail)


_COLOURS = {"start": "cyan", "classified": "blue", "routed": "magenta", "done": "green", "error": "red",
            "dropped": "yellow", "circuit": "yellow"}


# -- the command ------------------------------------------------------------------------------------


async def _watch(url: str, api_key: str | None, as_json: bool, history: int) -> None:
    def status(message: str, connected: bool) -> None:
        click.echo(f"[watch] {message}", err=True)

    # One line per event shows only the last user message: a preview of a big request holds it.
    async for event in follow(url, api_key, history=history, on_status=status,
                              request_kb=None if as_json else PREVIEW_KB):
        click.echo(dumps_str(event) if as_json else format_event(event, colour=True))


@click.command("watch")
@click.argument("url", default=DEFAULT_URL)
@click.option("--json", "as_json", is_flag=True, help="Print raw events as JSON lines.")
@click.option("--api-key", envvar="ROUTER_API_KEY", default=None,
              help="The router's inbound API key (default: $ROUTER_API_KEY).")
@click.option("--history", default=0, show_default=True, type=click.IntRange(0, 500),
              help="First show this many recent completed requests.")
def watch(url: str, as_json: bool, api_key: str | None, history: int) -> None:
    """Print the router's events as they happen: one line per event (URL: the router's base URL).

    Reconnects by itself when the router restarts. Status messages go to stderr.
    """
    try:
        asyncio.run(_watch(url, api_key, as_json, history))
    except WatchError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        sys.exit(0)
