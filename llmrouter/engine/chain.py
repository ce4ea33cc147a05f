"""The router chain: ``[[routers]]`` rules in config order, each bound to its plugin's ``route``
hook and validated settings, walked until one picks a provider that is available and able."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, NoReturn, Protocol

from llmrouter.config import Config, ConfigError
from llmrouter.context import Context, Route
from llmrouter.engine.capabilities import CandidateCheck, Lacking, capability_message, plainly_able, settle
from llmrouter.engine.hooks import Hook, pending
from llmrouter.engine.plugin_settings import SettingsProblem, check_references
from llmrouter.engine.registry import PluginRegistry
from llmrouter.errors import NoRoute, PluginFailed, RouterError
from llmrouter.upstream.providers import Provider

_NONE_BLOCKED: frozenset[str] = frozenset()
_EMPTY: Mapping[str, Any] = MappingProxyType({})
Walked = tuple[Route | None, list[tuple[str, str]]]
"""A walk's decision and the blocked choices it passed over."""


class Gate(Protocol):
    """What routing asks the reliability layer (see :class:`llmrouter.upstream.reliability.Reliability`)."""

    health: dict[str, bool]

    def blocked(self) -> frozenset[str]:
        """Providers that must not be chosen now, whatever the model (their connection circuit is open)."""

    def model_blocked(self, provider: str, model: str) -> bool:
        """Whether ``provider``'s upstream ``model`` must not be chosen now (its circuit is open)."""

    def unavailable(self, choices: list[tuple[str, str]]) -> RouterError:
        """The error when every (provider, model) the chain chose was blocked."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[routers]]`` entry bound to its plugin's ``route`` implementation.

    ``settings`` is the validated settings (the table minus ``type``); ``table`` the entry as written.
    """

    index: int
    type: str
    function: Hook
    settings: Any
    table: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


class RuleChain:
    """The configured ``[[routers]]`` rules and the walk over them.

    ``gate`` is the reliability layer's view of open circuits (None: nothing is ever blocked).
    """

    def __init__(self, config: Config, registry: PluginRegistry, providers: Mapping[str, Provider],
                 gate: Gate | None) -> None:
        self.config = config
        self.registry = registry
        self.providers = providers
        self.gate = gate
        self.rules = self._rules()

    def _rules(self) -> list[Rule]:
        rules = []
        names = [p.name for p in self.config.providers]
        for index, table in enumerate(self.config.routers):
            rtype = table["type"]
            where = f"{self.config.source}: [[routers]] #{index + 1} key 'type'"
            try:
                function = self.registry.require(rtype, "route", where)
            except LookupError as exc:
                raise ConfigError(str(exc).replace("no installed plugin with id", "unknown rule type")) from None
            label = f"{self.config.source}: [[routers]] #{index + 1} (type = {rtype!r})"
            body = {k: v for k, v in table.items() if k != "type"}
            try:
                settings = self.registry.records[rtype].settings.load(body)
            except SettingsProblem as exc:
                raise ConfigError(f"{label} {exc}") from None
            check_references(label, settings, body, names)
            rules.append(Rule(index, rtype, function, settings, MappingProxyType(dict(table))))
        return rules

    async def ask(self, rule: Rule, ctx: Context) -> Route | None:
        """One rule's decision, or None when it passes or names an unknown provider."""
        decision = self._call(rule, ctx)
        if pending(decision):
            decision = await self._await(rule, ctx, decision)
        return self._checked(rule, decision)

    def _call(self, rule: Rule, ctx: Context) -> Any:
        """Call the rule's hook (an ``async def`` hook's body runs later, in :meth:`_await`)."""
        ctx.settings = ctx.config_settings = rule.settings
        ctx.plugin_id = rule.type
        try:
            return rule.function(ctx)
        except Exception as exc:
            _raise_failure(rule, exc)
        finally:
            ctx.plugin_id = None

    async def _await(self, rule: Rule, ctx: Context, result: Any) -> Any:
        ctx.plugin_id = rule.type
        try:
            return await result
        except Exception as exc:
            _raise_failure(rule, exc)
        finally:
            ctx.plugin_id = None

    def _checked(self, rule: Rule, decision: Any) -> Route | None:
        if decision is None:
            return None
        if not isinstance(decision, Route):
            raise PluginFailed(f"plugin '{rule.type}' failed: route hook returned {type(decision).__name__}, "
                               "expected Route or None")
        return decision if decision.provider in self.providers else None

    async def walk(self, ctx: Context, start: int, exclude: Iterable[str],
                    lacking: list[tuple[str, str, tuple[str, ...]]] | None = None
                    ) -> tuple[Route | None, list[tuple[str, str]]]:
        """Walk the chain from rule ``start``; returns the decision and the blocked choices passed over.

        A rule that picks a blocked provider or model (open circuit, or a provider in ``exclude``),
        or a model known to lack a capability the request needs, is asked again with that provider
        and the blocked ones hidden from ``ctx.providers``, so it can pick its next candidate; if it
        then passes, the chain continues. Candidates passed over for capabilities are appended to
        ``lacking`` as ``(provider, model, missing)``.
        """
        walked = self.walk_now(ctx, start, exclude, lacking)
        return walked if type(walked) is tuple else await walked  # type: ignore[misc]

    def walk_now(self, ctx: Context, start: int, exclude: Iterable[str], lacking: Lacking | None = None,
                 check: CandidateCheck | None = None) -> Walked | Awaitable[Walked]:
        """:meth:`walk` without a coroutine while every rule's hook answers at once with a plain
        :class:`Route` (or None) that is accepted: the usual case. Otherwise the awaitable that
        finishes the walk from that rule (``check``: the walk's own, when it continues)."""
        gate = self.gate
        request = ctx.request  # (the check, built when first needed, is the walk's: of this request)
        if check is None:
            blocked = gate.blocked() if gate is not None else _NONE_BLOCKED
            if exclude:
                blocked = blocked.union(exclude)
        else:
            blocked = check.blocked
        rules = self.rules
        providers = self.providers
        for index in range(start, len(rules)):
            rule = rules[index]
            # (_call() inlined: most route hooks are plain functions, most rules pass)
            ctx.settings = ctx.config_settings = rule.settings
            ctx.plugin_id = rule.type
            try:
                decision = rule.function(ctx)
            except Exception as exc:
                _raise_failure(rule, exc)
            finally:
                ctx.plugin_id = None
            if decision is None:
                continue
            if type(decision) is not Route:  # awaitable, or of another type
                check = check or CandidateCheck(request, blocked, gate, [], lacking)
                return self._walk_on(ctx, index, decision, check, False)
            if decision.provider not in providers:  # (what _checked() makes of an unknown provider)
                continue
            if not plainly_able(decision, request, ctx.providers, blocked, gate):
                check = check or CandidateCheck(request, blocked, gate, [], lacking)
                if check.rejects(decision, ctx.providers):  # open circuit, or lacking a capability
                    return self._walk_on(ctx, index, decision, check, True)
            ctx.state["_rule"] = rule.index
            return decision, check.skipped if check is not None else []
        return None, check.skipped if check is not None else []

    async def _walk_on(self, ctx: Context, index: int, decision: Any, check: CandidateCheck,
                       rejected: bool) -> Walked:
        """The walk from rule ``index``, whose hook returned ``decision``: an awaitable or a value not
        checked yet, or (``rejected``) a Route ``check`` has just turned down."""
        rule = self.rules[index]
        if not rejected:
            if pending(decision):
                decision = await self._await(rule, ctx, decision)
            decision = self._checked(rule, decision)
            rejected = decision is not None and check.rejects(decision, ctx.providers)
        if rejected:
            decision = await settle(partial(self.ask, rule), ctx, decision, check, len(self.providers))
        if decision is not None:
            ctx.state["_rule"] = rule.index
            return decision, check.skipped
        walked = self.walk_now(ctx, index + 1, (), check.lacking, check)
        return walked if type(walked) is tuple else await walked  # type: ignore[misc]

    def decide(self, ctx: Context) -> Route | Awaitable[Route]:
        """:meth:`route` without a coroutine when the walk needs none (see :meth:`walk_now`)."""
        if ctx.request.forced_provider:
            return self.route(ctx)
        lacking: Lacking = []
        walked = self.walk_now(ctx, 0, (), lacking)
        if type(walked) is not tuple:
            return self._decided(ctx, walked, lacking)  # type: ignore[arg-type]
        decision, skipped = walked
        return decision if decision is not None else self._no_route(ctx, skipped, lacking)

    async def _decided(self, ctx: Context, walking: Awaitable[Walked], lacking: Lacking) -> Route:
        decision, skipped = await walking
        return decision if decision is not None else self._no_route(ctx, skipped, lacking)

    async def route(self, ctx: Context) -> Route:
        """The route for ``ctx``: a forced provider, else the first rule's available, able choice.

        :raises NoRoute: when no rule matches (or none can serve what the request needs).
        :raises RouterError: the gate's error when every choice was blocked by an open circuit.
        """
        request = ctx.request
        if request.forced_provider:
            if request.forced_provider not in self.providers:
                raise NoRoute(f"forced provider '{request.forced_provider}' is not available")
            return Route(request.forced_provider)
        lacking: Lacking = []
        decision, skipped = await self.walk(ctx, 0, (), lacking)
        return decision if decision is not None else self._no_route(ctx, skipped, lacking)

    def _no_route(self, ctx: Context, skipped: list[tuple[str, str]], lacking: Lacking) -> Route:
        """Raise the error for a walk that found nothing."""
        if skipped and self.gate is not None:
            raise self.gate.unavailable(list(dict.fromkeys(skipped)))
        if lacking:
            raise NoRoute(capability_message(ctx.request.model, lacking))
        raise NoRoute(f"no provider configured for model '{ctx.request.model}'")


def _raise_failure(rule: Rule, exc: Exception) -> NoReturn:
    """Raise what a rule's hook raising ``exc`` means (called while it is being handled): a
    :class:`RouterError` as it is, anything else as :class:`PluginFailed` naming the rule."""
    if isinstance(exc, RouterError):
        raise exc
    raise PluginFailed(f"plugin '{rule.type}' failed: {exc}") from exc
