"""``llmrouter tui``: a terminal dashboard built with Textual.

Three areas: the live feed (requests in flight on top, updating as ``classified`` and ``routed``
arrive; completed requests below, newest first), a stats pane (requests, errors, average latency,
counts per provider and per tag), and a chat box that sends prompts through the router with a
model you can switch (type it, or cycle through ``/v1/models`` with Ctrl+N).

:class:`FeedState` holds everything the screen shows and is independent of Textual; the app only
renders it.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import click
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widgets import DataTable, Footer, Header, Input, Label, RichLog, Static

from llmrouter.cli.watch import (
    DEFAULT_URL,
    PREVIEW_KB,
    WatchError,
    excerpt,
    follow,
    prompt_text,
    reply_text,
    short_id,
)
from llmrouter.jsonutil import dumps, loads

RECENT_ROWS = 200
HISTORY = 50
CHAT_TIMEOUT_S = 600


@dataclass
class Pending:
    """A request that has started but not completed."""

    id: str
    started: float
    model: str = "?"
    endpoint: str = ""
    tags: list[str] = field(default_factory=list)
    provider: str = ""
    sent_model: str = ""
    stage: str = "started"


class FeedState:
    """What the TUI knows: in-flight requests, recent completions and running statistics."""

    def __init__(self, recent: int = RECENT_ROWS) -> None:
        self.pending: dict[str, Pending] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self.requests = 0
        self.errors = 0
        self.dropped = 0
        self.latency_total_ms = 0.0
        self.by_provider: Counter[str] = Counter()
        self.by_tag: Counter[str] = Counter()
        self.circuits: dict[str, str] = {}
        self.connected = False

    def apply(self, event: dict[str, Any]) -> None:
        """Update the state with one bus event."""
        kind, rid = event.get("type"), str(event.get("id") or "")
        if kind == "start":
            self.pending[rid] = Pending(rid, time.monotonic(), event.get("model") or "?", event.get("endpoint") or "")
        elif kind == "classified" and rid in self.pending:
            self.pending[rid].tags = list(event.get("tags") or [])
            self.pending[rid].stage = "classified"
        elif kind == "routed" and rid in self.pending:
            item = self.pending[rid]
            item.provider, item.sent_model, item.stage = event.get("provider") or "", event.get("model") or "", "routed"
        elif kind == "complete":
            self.pending.pop(rid, None)
            self.recent.appendleft(event)
            self.requests += 1
            if event.get("error"):
                self.errors += 1
            if isinstance(event.get("duration_ms"), int | float):
                self.latency_total_ms += event["duration_ms"]
            self.by_provider[event.get("provider") or "(none)"] += 1
            self.by_tag.update(event.get("tags") or [])
        elif kind == "dropped":
            self.dropped += int(event.get("count") or 0)
        elif kind == "circuit":
            self.circuits[str(event.get("key") or event.get("provider"))] = str(event.get("state"))

    @property
    def avg_latency_ms(self) -> float | None:
        """Mean duration of completed requests."""
        return self.latency_total_ms / self.requests if self.requests else None

    def stats_text(self) -> str:
        """The stats pane."""
        avg = f"{self.avg_latency_ms:.0f} ms" if self.avg_latency_ms is not None else "-"
        lines = [
            f"{'connected' if self.connected else 'disconnected'}",
            "",
            f"requests   {self.requests}",
            f"errors     {self.errors}",
            f"in flight  {len(self.pending)}",
            f"avg        {avg}",
        ]
        if self.dropped:
            lines.append(f"dropped    {self.dropped} events")
        lines += ["", "providers"] + [f"  {name:<14} {n}" for name, n in self.by_provider.most_common()]
        lines += ["", "tags"] + ([f"  {tag:<14} {n}" for tag, n in self.by_tag.most_common()] or ["  (none yet)"])
        if self.circuits:
            lines += ["", "circuits"] + [f"  {name:<14} {state}" for name, state in self.circuits.items()]
        return "\n".join(lines)


def _clock(ts_ms: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts_ms / 1000)) if isinstance(ts_ms, int | float) else ""


def _plain(value: Any) -> Text:
    """A table cell shown as written: clients choose model names and prompts, and a plain ``str``
    cell would be parsed as Rich markup (an unbalanced ``[/bold]`` crashes the renderer)."""
    return Text("" if value is None else str(value))


def _recent_row(event: dict[str, Any]) -> tuple[str, ...]:
    asked, sent = event.get("requested_model") or "?", event.get("sent_model")
    models = f"{asked} → {sent}" if sent and sent != asked else asked
    usage = event.get("usage") or {}
    tokens = f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)}" if usage else ""
    duration = f"{event['duration_ms']:.0f}" if isinstance(event.get("duration_ms"), int | float) else ""
    outcome = f"{event.get('status', 'error')} {excerpt(event['error'], 40)}" if event.get("error") else "ok"
    talk = excerpt(prompt_text(event.get("request")), 40)
    reply = excerpt(reply_text(event.get("response")), 40)
    return (_clock(event.get("ts_ms")), short_id(event.get("id")), models, event.get("provider") or "",
            ",".join(event.get("tags") or []), duration, tokens, outcome, f"{talk} ⇒ {reply}" if reply else talk)


class RouterTUI(App[None]):
    """The terminal dashboard for the router at ``url``."""

    TITLE = "llmrouter"
    CSS = """
    #main { height: 2fr; }
    #feed { width: 3fr; }
    #stats { width: 28; border: round $primary; padding: 0 1; }
    .title { text-style: bold; padding: 0 1; }
    #pending { height: auto; max-height: 10; }
    #recent { height: 1fr; }
    #chat-pane { height: 1fr; border-top: solid $primary; }
    #chat { height: 1fr; }
    #chat-input { height: 3; }
    #model { width: 30; }
    #prompt { width: 1fr; }
    """
    BINDINGS = [("ctrl+q", "quit", "Quit"), ("ctrl+n", "next_model", "Next model"),
                ("ctrl+l", "clear_chat", "Clear chat")]

    def __init__(self, url: str = DEFAULT_URL, api_key: str | None = None, model: str | None = None) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.state = FeedState()
        self.models: list[str] = []
        self.initial_model = model
        self.conversation: list[dict[str, str]] = []
        self.transcript: list[str] = []
        self.fatal: str | None = None
        self._session: Any = None
        self._seq = 0

    def compose(self) -> ComposeResult:
        """Feed and stats on top, chat below."""
        yield Header()
        with Horizontal(id="main"):
            with Vertical(id="feed"):
                yield Label("In flight", classes="title")
                yield DataTable(id="pending", cursor_type="none", zebra_stripes=True)
                yield Label("Recent", classes="title")
                yield DataTable(id="recent", cursor_type="row", zebra_stripes=True)
            yield Static(self.state.stats_text(), id="stats", markup=False)
        with Vertical(id="chat-pane"):
            yield RichLog(id="chat", wrap=True, markup=False, highlight=False)
            with Horizontal(id="chat-input"):
                yield Input(self.initial_model or "", placeholder="model", id="model")
                yield Input(placeholder="Ask something and press Enter", id="prompt")
        yield Footer()

    async def on_mount(self) -> None:
        """Set up the tables, connect to the event stream and fetch the model list."""
        import aiohttp

        self.sub_title = self.url
        pending = self.query_one("#pending", DataTable)
        for key, label in [("id", "id"), ("age", "age"), ("model", "model"), ("tags", "tags"),
                           ("provider", "provider"), ("stage", "stage")]:
            pending.add_column(label, key=key)
        recent = self.query_one("#recent", DataTable)
        for key in ("#", "time", "id", "model", "provider", "tags", "ms", "tokens", "outcome", "prompt ⇒ reply"):
            recent.add_column(key, key=key)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHAT_TIMEOUT_S))
        self.set_interval(1.0, self._tick)
        self.follow_events()
        self.load_models()
        self.query_one("#prompt", Input).focus()

    async def on_unmount(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    # -- the feed ---------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    @work(exclusive=True, group="events")
    async def follow_events(self) -> None:
        """Apply every event from the router as it arrives (reconnecting as needed)."""
        try:
            async for event in follow(self.url, self.api_key, history=HISTORY, on_status=self._status,
                                      request_kb=PREVIEW_KB):
                self.handle_event(event)
        except WatchError as exc:
            self.fatal = str(exc)
            self._status(str(exc), False)
            self.notify(str(exc), severity="error", timeout=30)

    def _status(self, message: str, connected: bool) -> None:
        self.state.connected = connected
        self.sub_title = f"{self.url} — {'live' if connected else message}"
        self.query_one("#stats", Static).update(self.state.stats_text())

    def handle_event(self, event: dict[str, Any]) -> None:
        """Update state and the widgets it affects."""
        self.state.apply(event)
        kind, rid = event.get("type"), str(event.get("id") or "")
        pending = self.query_one("#pending", DataTable)
        if kind == "start" and rid in self.state.pending:
            item = self.state.pending[rid]
            pending.add_row(*map(_plain, (short_id(rid), "0.0s", item.model, "", "", item.stage)), key=rid)
        elif kind in ("classified", "routed") and rid in self.state.pending and rid in pending.rows:
            item = self.state.pending[rid]
            pending.update_cell(rid, "tags", _plain(",".join(item.tags)))
            models = f"{item.model} → {item.sent_model}" if item.sent_model and item.sent_model != item.model \
                else item.model
            pending.update_cell(rid, "model", _plain(models), update_width=True)
            pending.update_cell(rid, "provider", _plain(item.provider), update_width=True)
            pending.update_cell(rid, "stage", _plain(item.stage))
        elif kind == "complete":
            if rid in pending.rows:
                pending.remove_row(rid)
            self._add_recent(event)
        self.query_one("#stats", Static).update(self.state.stats_text())

    def _add_recent(self, event: dict[str, Any]) -> None:
        recent = self.query_one("#recent", DataTable)
        rid = str(event.get("id") or "")
        if rid in recent.rows:  # the same completion replayed after a reconnect
            return
        self._seq += 1
        recent.add_row(self._seq, *map(_plain, _recent_row(event)), key=rid)
        recent.sort("#", reverse=True)  # rows can only be appended: sorting puts the newest on top
        while recent.row_count > RECENT_ROWS:
            recent.remove_row(recent.coordinate_to_cell_key((recent.row_count - 1, 0)).row_key)

    def _tick(self) -> None:
        pending = self.query_one("#pending", DataTable)
        now = time.monotonic()
        for rid, item in self.state.pending.items():
            if rid in pending.rows:
                pending.update_cell(rid, "age", f"{now - item.started:.1f}s")

    # -- the chat -----------------------------------------------------------------------------------

    @work(exclusive=True, group="models")
    async def load_models(self) -> None:
        """Fetch ``/v1/models`` for suggestions and Ctrl+N; default the model to the first one."""
        try:
            async with self._session.get(self.url + "/v1/models", headers=self._headers()) as resp:
                body = loads(await resp.read()) if resp.status == 200 else {}
        except Exception:  # no list is fine: any model can still be typed
            body = {}
        self.models = [m["id"] for m in body.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]
        box = self.query_one("#model", Input)
        box.suggester = SuggestFromList(self.models, case_sensitive=False)
        if not box.value and self.models:
            box.value = self.models[0]

    def action_next_model(self) -> None:
        """Switch to the next model from ``/v1/models``."""
        if not self.models:
            return
        box = self.query_one("#model", Input)
        index = self.models.index(box.value) + 1 if box.value in self.models else 0
        box.value = self.models[index % len(self.models)]
        self._say(f"-- model: {box.value}")

    def action_clear_chat(self) -> None:
        """Start a new conversation."""
        self.conversation.clear()
        self.query_one("#chat", RichLog).clear()
        self._say("-- new conversation")

    def _say(self, line: str) -> None:
        self.transcript.append(line)
        self.query_one("#chat", RichLog).write(line)

    async def on_input_submitted(self, message: Input.Submitted) -> None:
        """Enter in the prompt box sends the prompt; in the model box it moves to the prompt."""
        if message.input.id == "model":
            self.query_one("#prompt", Input).focus()
            return
        text = message.value.strip()
        if not text:
            return
        message.input.value = ""
        model = self.query_one("#model", Input).value.strip() or (self.models[0] if self.models else "default")
        self.conversation.append({"role": "user", "content": text})
        self._say(f"you ({model}): {text}")
        self.send_chat(model, list(self.conversation))

    @work(exclusive=False, group="chat")
    async def send_chat(self, model: str, messages: list[dict[str, str]]) -> None:
        """Send the conversation through the router and show the reply with where it went."""
        body = {"model": model, "messages": messages}
        try:
            async with self._session.post(self.url + "/v1/chat/completions", data=dumps(body),
                                          headers=self._headers()) as resp:
                data = loads(await resp.read())
                where = resp.headers.get("X-Router-Provider", "?") + "/" + resp.headers.get("X-Router-Model", "?")
                tags = resp.headers.get("X-Router-Request-Tags", "")
                if resp.status != 200:
                    error = data.get("error", {}) if isinstance(data, dict) else {}
                    detail = error.get("message") if isinstance(error, dict) else error
                    self._say(f"error {resp.status}: {detail}")
                    self.conversation.pop()
                    return
        except Exception as exc:
            self._say(f"error: {type(exc).__name__}: {exc}")
            self.conversation.pop()
            return
        reply = (data.get("choices") or [{}])[0].get("message", {}).get("content") or ""
        self.conversation.append({"role": "assistant", "content": reply})
        self._say(f"assistant [{where}{' #' + tags if tags else ''}]: {reply}")


def run_tui(url: str, api_key: str | None, model: str | None) -> None:
    """Run the TUI until the user quits; raises ClickException on a fatal connection error."""
    app = RouterTUI(url, api_key, model)
    app.run()
    if app.fatal:
        raise click.ClickException(app.fatal)
