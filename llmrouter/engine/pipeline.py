"""The request pipeline: on_start -> classify -> pre_request -> route -> provider -> post_response
-> on_end -> log, with plugins dispatched in config order.

The server calls :meth:`Pipeline.prepare` (everything before the provider), then either
:meth:`Pipeline.complete` (non-streaming) or :meth:`Pipeline.open_stream` followed by
:meth:`Pipeline.finish` (streaming), and finally :meth:`Pipeline.record`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx

from llmrouter.config import Config, ConfigError
from llmrouter.context import Context, ProviderInfo, Route
from llmrouter.engine.chain import Gate, RuleChain
from llmrouter.engine.exchange import CLIENT_BODY, DELIVERED, LOGGED_REQUEST, PLUGIN_PROVIDER, complete_entry
from llmrouter.engine.plugin_settings import SettingsProblem, check_references
from llmrouter.engine.registry import PluginRegistry
from llmrouter.engine.request_plugins import RequestPlugins
from llmrouter.engine.stages import Step, classify_request, collect_tags, run_flow_hooks
from llmrouter.engine.streams import transform
from llmrouter.errors import PluginFailed
from llmrouter.formats.base import iter_events, response_to_events
from llmrouter.formats.passthrough import ClientBody
from llmrouter.keys.limiter import KeyLimiter
from llmrouter.lazy import deferred
from llmrouter.models import ChatRequest, ChatResponse, StreamEvent
from llmrouter.observe.events import EventBackend, now_ms
from llmrouter.observe.requestlog import RawJSON, RequestLog
from llmrouter.upstream.providers import Provider

if TYPE_CHECKING:
    from llmrouter.observe.metrics import Metrics

log = logging.getLogger("llmrouter.engine.pipeline")

_SHAPE = "_request_shape"
_REQUEST_HOOKS = ("on_start", "pre_request", "post_response", "on_end")
_ENDED = "_ended"
_RECORDED = "_recorded"
"""``ctx.state`` markers: the request's late hooks have run / its log line is written."""


class Pipeline:
    """Runs requests through the configured plugins, router chain and providers."""

    def __init__(self, config: Config, registry: PluginRegistry, providers: dict[str, Provider],
                 bus: EventBackend, request_log: RequestLog | None = None,
                 http: httpx.AsyncClient | None = None, provider_call: Any = None,
                 discovered: Mapping[str, tuple[str, ...]] | None = None, stream_call: Any = None,
                 gate: Gate | None = None,
                 capabilities: Mapping[str, Mapping[str, frozenset[str]]] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.providers = providers
        self.bus = bus
        # Events nobody would receive are not built (a backend without listening() gets them all).
        self._listening: Any = getattr(bus, "listening", None) or _always
        self.request_log = request_log
        self._background: set[asyncio.Task[None]] = set()
        self.http = http
        self.in_flight = 0
        self._settings_cache: dict[tuple[str, str], Any] = {}
        self.plugin_ids = frozenset(pid for pid, _ in config.enabled("plugins"))
        self.classifier_ids = frozenset(pid for pid, _ in config.enabled("classifiers"))
        self.classifiers = self._steps("classifiers", "classify")
        self.response_classifier_ids = frozenset(pid for pid, _ in config.enabled("response_classifiers"))
        self.response_classifiers = self._steps("response_classifiers", "classify_response")
        self.transformers = self._steps("plugins", "stream_transformer")
        self.hooks: dict[str, list[Step]] = {name: self._steps("plugins", name) for name in _REQUEST_HOOKS}
        self.chain = RuleChain(config, registry, providers, gate)
        self.rules = self.chain.rules
        self.request_side = RequestPlugins(self.config, self.registry, {
            "plugins": self.plugin_ids, "classifiers": self.classifier_ids,
            "response_classifiers": self.response_classifier_ids})
        self._infos: Mapping[str, ProviderInfo] | None = None
        self._infos_from: list[tuple[str, bool, tuple[str, ...], Any]] = []  # (what _infos was made from)
        self._pre_hooks = bool(self.hooks["on_start"] or self.hooks["pre_request"])
        # A stage without hooks has nothing to run, unless a subclass (tracing) does more per stage.
        self._skip_empty_stages = type(self)._run_flow_hooks is Pipeline._run_flow_hooks
        # Without such a subclass, stages run without a coroutine of their own (see engine/stages.py).
        self._plain_stages = type(self)._classify is Pipeline._classify and type(self)._route is Pipeline._route
        self._plain_finish = type(self).finish is Pipeline.finish
        self.gate = gate
        self.health: dict[str, bool] = gate.health if gate is not None else {}
        self.discovered: Mapping[str, tuple[str, ...]] = discovered if discovered is not None else {}
        self.learned: Mapping[str, Mapping[str, frozenset[str]]] = capabilities if capabilities is not None else {}
        self._provider_call = provider_call or default_provider_call
        self._stream_call = stream_call or default_stream_call
        self.keys: KeyLimiter | None = None
        self.metrics: Metrics | None = None

    # -- setup ------------------------------------------------------------------------------------

    def _bound(self, section: str, plugin_id: str, table: Mapping[str, Any]) -> Any:
        """The validated settings of one enabled plugin (validated once per plugin and section)."""
        key = (section, plugin_id)
        if key not in self._settings_cache:
            spec = self.registry.records[plugin_id].settings
            label = f"{self.config.source}: [{section}.{plugin_id}]"
            try:
                self._settings_cache[key] = spec.load(table)
            except SettingsProblem as exc:
                raise ConfigError(f"{label} {exc}") from None
            check_references(label, self._settings_cache[key], table, [p.name for p in self.config.providers])
        return self._settings_cache[key]

    def _steps(self, section: str, hook_name: str) -> list[Step]:
        """Bind the enabled plugins of a config section to one hook, in config order."""
        steps = []
        for plugin_id, table in self.config.enabled(section):  # type: ignore[arg-type]
            where = f"{self.config.source}: [{section}.{plugin_id}]"
            try:
                if section != "plugins":
                    function = self.registry.require(plugin_id, hook_name, where)
                else:
                    record = self.registry.records.get(plugin_id)
                    if record is None or not record.loaded:
                        self.registry.require(plugin_id, hook_name, where)  # raises the clear message
                    function = self.registry.impl(plugin_id, hook_name)  # type: ignore[assignment]
            except LookupError as exc:
                raise ConfigError(str(exc)) from None
            settings = self._bound(section, plugin_id, table)
            if function is not None:
                steps.append(Step(plugin_id, function, settings, settings, MappingProxyType(table)))
        return steps

    def provider_infos(self) -> Mapping[str, ProviderInfo]:
        """The providers as plugins see them, in config order (a read-only mapping).

        Rebuilt only when a provider's health or discovered models changed since the last call.
        """
        health, discovered, learned = self.health, self.discovered, self.learned
        cached = self._infos
        if cached is not None:  # (Provider.info gives the same object for the same inputs: compare those)
            for name, healthy, found, known in self._infos_from:
                if health.get(name, True) != healthy or discovered.get(name, ()) is not found \
                        or learned.get(name) is not known:
                    break
            else:
                return cached
        inputs = [(name, health.get(name, True), discovered.get(name, ()), learned.get(name)) for name in self.providers]
        infos = [self.providers[name].info(healthy, found, known) for name, healthy, found, known in inputs]
        self._infos_from = inputs
        cached = self._infos = MappingProxyType({info.name: info for info in infos})
        return cached

    def new_context(self, request: ChatRequest, request_id: str, endpoint: str,
                    inbound_headers: Mapping[str, str] | None = None,
                    client_body: ClientBody | None = None) -> Context:
        """A fresh context for one request (``inbound_headers``: the client's HTTP headers, which a
        tracing pipeline reads ``traceparent`` from; ``client_body``: the body ``request`` was
        parsed from, given when the log keeps it as sent (see
        :func:`~llmrouter.formats.passthrough.kept_as_sent`), which a provider of the client's
        format may forward when no plugin changes the request)."""
        ctx = Context(request=request, request_id=request_id, providers=self.provider_infos(),
                      http=self.http, endpoint=endpoint)
        if client_body is not None:
            ctx.state[CLIENT_BODY] = client_body
            ctx.state[_SHAPE] = _shape(request)
        # The log keeps the request as the client sent it, so replay re-runs it. Only on_start and
        # pre_request plugins can change it before that point; without any, the dump waits until
        # the request is logged (one dump per request instead of two on the hot path).
        elif self._pre_hooks or request.plugins:
            ctx.state[LOGGED_REQUEST] = request.model_dump(mode="json", exclude={"headers"})
        return ctx

    # -- per-request plugin selection ----------------------------------------------------------------

    def _request_overrides(self, request: ChatRequest) -> dict[str, Any]:
        """The request's ``plugins`` entries, checked and validated (see :class:`RequestPlugins`)."""
        return self.request_side.overrides(request)

    def _select(self, base: list[Step], hook_name: str, overrides: Mapping[str, Any],
                section_ids: frozenset[str]) -> list[Step]:
        """Config steps with request settings overlaid, then request-only plugins in request order."""
        if not overrides:
            return base
        steps = [
            Step(s.plugin_id, s.function, overrides[s.plugin_id], s.config_settings, s.table)
            if s.plugin_id in overrides else s
            for s in base
        ]
        for plugin_id, settings in overrides.items():
            if plugin_id in section_ids:
                continue
            function = self.registry.impl(plugin_id, hook_name)
            if function is not None:
                steps.append(Step(plugin_id, function, settings, settings))
        return steps

    # -- stages -----------------------------------------------------------------------------------

    async def _run_flow_hooks(self, ctx: Context, stage: str, steps: list[Step], *, fatal: bool) -> bool:
        """Run the flow hooks of ``stage`` in order; return True if one returned STOP.

        ``fatal`` hooks (on_start, pre_request) fail the request on exceptions; the others log a
        warning and continue.
        """
        stopped = run_flow_hooks(ctx, steps, fatal)
        return stopped if type(stopped) is bool else await stopped  # type: ignore[misc]

    def _flow(self, ctx: Context, stage: str, steps: list[Step], fatal: bool) -> bool | Awaitable[bool]:
        """:meth:`_run_flow_hooks`, without a coroutine unless a subclass wraps it or a hook needs one."""
        if self._skip_empty_stages:
            return run_flow_hooks(ctx, steps, fatal)
        return self._run_flow_hooks(ctx, stage, steps, fatal=fatal)

    async def _classify(self, ctx: Context, steps: list[Step]) -> None:
        classifying = classify_request(ctx, steps)
        if classifying is not None:
            await classifying

    async def _route(self, ctx: Context) -> Route:
        return await self.chain.route(ctx)

    async def reroute(self, ctx: Context, tried: Iterable[str]) -> Route | None:
        """The next route after the routed provider failed: the chain continues from the rule that
        chose it, without the providers in ``tried`` or with open circuits. None when nothing is left
        (or the provider was forced)."""
        start = ctx.state.get("_rule")
        if ctx.request.forced_provider or start is None:
            return None
        if self.keys is not None:
            tried = [*tried, *self.keys.denied_providers(ctx.key_name)]
        decision, _ = await self.chain.walk(ctx, start, tried)
        return decision

    async def resolve_route(self, ctx: Context) -> Route:
        """Classify and walk the router chain for ``ctx``, as :meth:`prepare` does, without the flow
        hooks (``on_start``, ``pre_request``) and without events: for requests that are not chat
        exchanges, such as ``/v1/messages/count_tokens``. Sets ``ctx.provider`` and ``ctx.sent_model``.
        """
        overrides = self._request_overrides(ctx.request)
        await self._classify(ctx, self._select(self.classifiers, "classify", overrides, self.classifier_ids))
        decision = await self._route(ctx)
        ctx.provider = decision.provider
        ctx.sent_model = decision.model or ctx.request.model
        return decision

    async def prepare(self, ctx: Context) -> None:
        """Everything before the provider: on_start, classify, pre_request and route.

        On return either ``ctx.response`` is set (a plugin answered) or ``ctx.provider`` and
        ``ctx.sent_model`` say where to send the request.
        """
        request = ctx.request
        overrides = self._request_overrides(request) if request.plugins else {}
        ctx.state["_overrides"] = overrides
        if overrides:
            plugin_ids = self.plugin_ids
            on_start = self._select(self.hooks["on_start"], "on_start", overrides, plugin_ids)
            pre_request = self._select(self.hooks["pre_request"], "pre_request", overrides, plugin_ids)
            classifiers = self._select(self.classifiers, "classify", overrides, self.classifier_ids)
        else:  # (the usual case: the config's steps as they are)
            on_start, pre_request, classifiers = self.hooks["on_start"], self.hooks["pre_request"], self.classifiers
        skip_empty = self._skip_empty_stages
        stopped = False if skip_empty and not on_start else self._flow(ctx, "on_start", on_start, True)
        if type(stopped) is not bool:
            stopped = await stopped
        if not stopped:
            if self._plain_stages:  # (no coroutine unless a classifier needs one)
                classifying = classify_request(ctx, classifiers)
                if classifying is not None:
                    await classifying
            else:
                await self._classify(ctx, classifiers)
            if self._listening("classified"):
                self.bus.publish({"type": "classified", "id": ctx.request_id, "ts_ms": now_ms(),
                                  "tags": list(ctx.request.tags)})
            stopped = False if skip_empty and not pre_request else self._flow(ctx, "pre_request", pre_request, True)
            if type(stopped) is not bool:
                stopped = await stopped
        if stopped and ctx.response is None:
            raise PluginFailed("pipeline stopped without producing a response")
        if ctx.response is not None:
            ctx.provider = PLUGIN_PROVIDER
            ctx.sent_model = None
            if not ctx.response.model:
                ctx.response.model = ctx.request.model
            return
        decision = self.chain.decide(ctx) if self._plain_stages else self._route(ctx)
        if not isinstance(decision, Route):
            decision = await decision
        ctx.provider = decision.provider
        ctx.sent_model = decision.model or ctx.request.model
        client_body = ctx.state.get(CLIENT_BODY)
        if client_body is not None and not on_start and not pre_request \
                and _shape(ctx.request) == ctx.state[_SHAPE]:
            # Unchanged: only classifiers and routers ran, which read the request and return tags
            # and routes; the shape check catches one that replaced or resized it anyway.
            ctx.request.__pydantic_private__["_client_body"] = client_body  # (what pydantic's setattr does)
        if self._listening("routed"):
            self.bus.publish({"type": "routed", "id": ctx.request_id, "ts_ms": now_ms(),
                              "provider": ctx.provider, "model": ctx.sent_model})
        if self.keys is not None:
            self.keys.check_provider(ctx.key_name, ctx.provider, ctx.request.model)

    async def complete(self, ctx: Context) -> ChatResponse:
        """Non-streaming: call the provider if no plugin answered, then run the late hooks."""
        if ctx.response is None:
            assert ctx.provider is not None and ctx.sent_model is not None
            ctx.response = await self.call_provider(ctx)
        ending = self._finish_now(ctx) if self._plain_finish else self.finish(ctx)
        if ending is not None:
            await ending
        return ctx.response

    def call_provider(self, ctx: Context) -> Awaitable[ChatResponse]:
        """The provider stage of a non-streaming request (retries and failover included)."""
        result: Awaitable[ChatResponse] = self._provider_call(self, ctx)
        return result

    async def open_stream(self, ctx: Context) -> AsyncIterator[StreamEvent]:
        """Streaming: the canonical event stream of the provider, or of a plugin's answer, run
        through the plugins' stream transformers (the stream itself when there are none)."""
        if ctx.response is not None:
            events = iter_events(response_to_events(ctx.response))
        else:
            assert ctx.provider is not None and ctx.sent_model is not None
            events = await self.call_provider_stream(ctx)
        return await self.transform_stream(ctx, events)

    def call_provider_stream(self, ctx: Context) -> Awaitable[AsyncIterator[StreamEvent]]:
        """The provider stage of a stream, up to its first event (retries and failover included)."""
        result: Awaitable[AsyncIterator[StreamEvent]] = self._stream_call(self, ctx)
        return result

    async def transform_stream(self, ctx: Context, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        """``events`` through the stream transformers the enabled plugins return for this stream;
        ``events`` itself (same object, no wrapper) when none is enabled or all return ``None``."""
        steps = self.transformers
        overrides = ctx.state.get("_overrides")
        if overrides:
            steps = self._select(steps, "stream_transformer", overrides, self.plugin_ids)
        return await transform(ctx, steps, events) if steps else events

    async def finish(self, ctx: Context) -> None:
        """post_response then on_end (skipped when a post_response hook returns STOP). Runs at most
        once per request: a request ends once, whichever path it takes."""
        ending = self._finish_now(ctx)
        if ending is not None:
            await ending

    def _finish_now(self, ctx: Context) -> Awaitable[Any] | None:
        """:meth:`finish` without a coroutine in the usual case (no response classifier, no request
        plugins, no subclass wrapping the stages, late hooks that answer at once); else the
        awaitable of what is left to do."""
        state = ctx.state
        if state.get(_ENDED):
            return None
        if self.response_classifiers or state.get("_overrides") or not self._skip_empty_stages:
            return self._finish(ctx)
        state[_ENDED] = True
        if ctx.response is not None:
            post = self.hooks["post_response"]
            if ctx.delivered and (post or self.hooks["on_end"]):
                _keep_delivered(ctx)
            stopped = run_flow_hooks(ctx, post, False)
            if type(stopped) is not bool:
                return self._end_after(ctx, stopped)  # type: ignore[arg-type]
            if stopped:
                return None
        on_end = self.hooks["on_end"]
        ended = run_flow_hooks(ctx, on_end, False) if on_end else False
        return None if type(ended) is bool else ended  # type: ignore[return-value]

    async def _end_after(self, ctx: Context, post: Awaitable[bool]) -> None:
        """on_end once the post_response hooks (``post``) are done, unless one returned STOP."""
        if not await post:
            ended = run_flow_hooks(ctx, self.hooks["on_end"], False)
            if type(ended) is not bool:
                await ended  # type: ignore[misc]

    async def _finish(self, ctx: Context) -> None:
        """:meth:`finish` in general."""
        if ctx.state.get(_ENDED):
            return
        ctx.state[_ENDED] = True
        overrides = ctx.state.get("_overrides", {})
        plugin_ids = self.plugin_ids
        if ctx.response is not None:
            post = self.hooks["post_response"]
            if overrides:
                post = self._select(post, "post_response", overrides, plugin_ids)
            classify = bool(self.response_classifiers or overrides)
            if ctx.delivered:
                # Classify what the client got; late edits must not reach the log either.
                if classify:
                    await self._classify_response(ctx, overrides)
                if post or self.hooks["on_end"] or overrides:
                    _keep_delivered(ctx)
            stopped = self._flow(ctx, "post_response", post, False)
            if type(stopped) is not bool:
                stopped = await stopped
            if not ctx.delivered and classify:
                await self._classify_response(ctx, overrides)
            if stopped:
                return
        on_end = self.hooks["on_end"]
        if overrides:
            on_end = self._select(on_end, "on_end", overrides, plugin_ids)
        if on_end or not self._skip_empty_stages:
            ended = self._flow(ctx, "on_end", on_end, False)
            if type(ended) is not bool:
                await ended

    async def _classify_response(self, ctx: Context, overrides: Mapping[str, dict[str, Any]]) -> None:
        """Run the response classifiers over ``ctx.response`` into ``ctx.response_tags``."""
        steps = self._select(self.response_classifiers, "classify_response", overrides, self.response_classifier_ids)
        if steps and ctx.response is not None:
            tags = collect_tags(ctx, steps, ctx.response_tags, "response classifier")
            ctx.response_tags = tags if type(tags) is list else await tags  # type: ignore[assignment,misc]

    async def fail(self, ctx: Context, error: str) -> None:
        """A request failed after its context existed: run ``on_end`` with ``ctx.error`` set.

        ``post_response`` does not run (there is no reply); ``on_end`` always does, so plugins that
        count or meter requests see failures too. Does nothing if the request already ended.
        """
        if ctx.state.get(_ENDED):
            return
        ctx.state[_ENDED] = True
        ctx.error = error
        overrides = ctx.state.get("_overrides", {})
        await self._run_flow_hooks(ctx, "on_end",
                                   self._select(self.hooks["on_end"], "on_end", overrides, self.plugin_ids),
                                   fatal=False)

    def abandon(self, ctx: Context, *, started: float, status: int, error: str) -> None:
        """A request whose task is being cancelled (client gone, shutdown): log it at once, since
        the process may be about to exit, then run ``on_end`` in a task of its own."""
        self.record(ctx=ctx, request_id=ctx.request_id, endpoint=ctx.endpoint, started=started,
                    status=status, error=error)
        if ctx.state.get(_ENDED):
            return
        task = asyncio.get_running_loop().create_task(self.fail(ctx, error))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- events and log -----------------------------------------------------------------------------

    def publish_start(self, request_id: str, model: str | None, endpoint: str, key: str | None = None) -> None:
        """Publish ``start`` and count the request as in flight; ``key`` is the virtual key's name."""
        self.in_flight += 1
        if self.metrics is not None:
            self.metrics.started()
        if self._listening("start"):
            self.bus.publish({"type": "start", "id": request_id, "ts_ms": now_ms(), "model": model,
                              "endpoint": endpoint, "in_flight": self.in_flight, "key": key})

    def record(self, *, ctx: Context | None, request_id: str, endpoint: str, started: float,
               status: int, error: str | None, request_model: str | None = None,
               key: str | None = None) -> dict[str, Any] | None:
        """Publish ``complete`` and append it to the request log; returns the entry. A request is
        recorded once: later calls for the same context return ``None``.

        ``key`` names the virtual key when there is no context yet (else ``ctx.key_name`` is used);
        the key's tpm and budget are debited with the reply's usage and cost."""
        if ctx is not None:
            if ctx.state.get(_RECORDED):
                return None
            ctx.state[_RECORDED] = True
        self.in_flight = max(0, self.in_flight - 1)
        entry, usage = complete_entry(ctx, self.providers, request_id=request_id, endpoint=endpoint,
                                      started=started, status=status, error=error,
                                      request_model=request_model, key=key)
        cost = entry["cost_usd"]
        if self.keys is not None and entry["key"] is not None:
            self.keys.debit(entry["key"], usage, cost)
        self.emit(entry, ctx)
        return entry

    def emit(self, entry: dict[str, Any], ctx: Context | None) -> None:
        """Count ``entry`` in the metrics, publish it and append it to the request log."""
        if self.metrics is not None:
            self.metrics.finished(entry, ctx.state if ctx is not None else None)
        self.bus.publish(entry)
        if self.request_log is not None:
            client_body = ctx.state.get(CLIENT_BODY) if ctx is not None else None
            # The client's bytes go to the file verbatim: no re-serialising of an agent-sized body, and
            # its credential-like keys are looked for in the parsed body rather than in the bytes.
            self.request_log.write(entry if client_body is None else
                                   {**entry, "request": RawJSON(client_body.raw, client_body.body)})


async def default_provider_call(pipeline: Pipeline, ctx: Context) -> ChatResponse:
    """Call the routed provider once (the reliability layer replaces this with retries/failover)."""
    provider = pipeline.providers[ctx.provider]  # type: ignore[index]
    return await provider.complete(ctx.request, ctx.sent_model, pipeline.http)  # type: ignore[arg-type]


async def default_stream_call(pipeline: Pipeline, ctx: Context) -> AsyncIterator[StreamEvent]:
    """Open the routed provider's stream once (the reliability layer replaces this)."""
    provider = pipeline.providers[ctx.provider]  # type: ignore[index]
    return await provider.stream(ctx.request, ctx.sent_model, pipeline.http)  # type: ignore[arg-type]


def _always(kind: str) -> bool:
    return True


def _keep_delivered(ctx: Context) -> None:
    """Keep the reply the client got (and who changed it) for the log, and give the late hooks a
    copy: their edits must not reach the log."""
    assert ctx.response is not None
    ctx.state[DELIVERED] = (ctx.response, list(ctx.modified_by))
    ctx.response = ctx.response.model_copy(deep=True)


def _shape(request: ChatRequest) -> tuple[Any, ...]:
    """A cheap fingerprint of what a read-only stage must leave alone (object identities, the
    model, the message count): a stage that replaced or resized the request changes it.

    A conversation (or tool list) not converted yet is not converted for this: its identity is the
    list its conversion will fill (so reading it in a classifier changes nothing), its count known."""
    private = request.__pydantic_private__
    if private and private.get("_lazy"):
        conversation = deferred(request)
        messages = conversation.target if conversation is not None else request.messages
        count = conversation.count if conversation is not None else len(messages)
    else:  # nothing deferred: the field's value is the list itself
        messages = request.__dict__["messages"]
        count = len(messages)
    # A deferred tool list's placeholder is the list it will be converted into: no need to convert.
    return (id(request), request.model, id(messages), count, id(request.system),
            id(request.__dict__.get("tools")), request.stream)
