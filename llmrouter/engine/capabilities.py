"""Capability-aware routing: what a request needs from a model, and whether a candidate has it.

A request needs ``vision`` when any message (or tool result) carries an image, ``tools`` when it
declares tools (and does not forbid their use with ``tool_choice = none``), ``thinking`` when it
asks for extended thinking (Anthropic's ``thinking`` set and not ``{"type": "disabled"}``, or
OpenAI's ``reasoning_effort`` set and not ``"none"``). A candidate whose model has no known
capabilities is allowed (unknown is permissive).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from llmrouter.context import Context, ProviderInfo, Route
from llmrouter.lazy import deferred
from llmrouter.models import ChatRequest, ImagePart, ToolResultPart

VISION, TOOLS, THINKING = "vision", "tools", "thinking"
WHY: dict[str, str] = {VISION: "the request has images", TOOLS: "the request declares tools",
                       THINKING: "the request asks for thinking"}


def request_needs(request: ChatRequest) -> tuple[str, ...]:
    """The capabilities ``request`` needs, in a stable order (possibly none)."""
    needs: list[str] = []
    if _has_image(request):
        needs.append(VISION)
    tools = deferred(request, "tools")  # a deferred tool list is never empty
    if (tools is not None or request.tools) and not (request.tool_choice is not None
                                                      and request.tool_choice.type == "none"):
        needs.append(TOOLS)
    thinking = request.thinking
    effort = request.extra.get("reasoning_effort") if request.extra else None
    if (thinking and thinking.get("type") != "disabled") or (isinstance(effort, str) and effort != "none"):
        needs.append(THINKING)
    return tuple(needs)


def _has_image(request: ChatRequest) -> bool:
    conversation = deferred(request)
    if conversation is not None:  # known without converting
        return conversation.images
    for message in request.messages:
        for part in message.content:
            if isinstance(part, ImagePart):
                return True
            if isinstance(part, ToolResultPart) and any(isinstance(p, ImagePart) for p in part.content):
                return True
    return False


def missing(info: ProviderInfo, model: str, needs: tuple[str, ...]) -> tuple[str, ...]:
    """The capabilities among ``needs`` that ``model`` on ``info`` is known to lack."""
    known = info.capabilities_of(model)
    if known is None:
        return ()
    return tuple(need for need in needs if need not in known)



def capability_message(model: str, lacking: list[tuple[str, str, tuple[str, ...]]]) -> str:
    """The 400 message when every candidate lacked a capability the request needs."""
    needed = list(dict.fromkeys(cap for _, _, caps in lacking for cap in caps))
    candidates = ", ".join(f"'{m}' on '{p}' lacks {', '.join(caps)}" for p, m, caps in dict.fromkeys(lacking))
    why = "; ".join(WHY.get(cap, f"the request needs {cap}") for cap in needed)
    return (f"no provider for model '{model}' has the capability this request needs: "
            f"{', '.join(needed)} ({why}; {candidates})")


class ModelGate(Protocol):
    """What a candidate check asks the reliability layer (see :class:`llmrouter.engine.chain.Gate`)."""

    def model_blocked(self, provider: str, model: str) -> bool:
        """Whether ``provider``'s upstream ``model`` must not be chosen now (its circuit is open)."""


Lacking = list[tuple[str, str, tuple[str, ...]]]
"""``(provider, model, missing capabilities)`` of each candidate passed over for capabilities."""


class CandidateCheck:
    """Why the chain must pass over a rule's choice: it is blocked (a provider in ``blocked``, open or
    already tried, or a model whose circuit ``gate`` reports open), or its model is known to lack
    what the request needs. One per walk; what the request needs is worked out only once a
    candidate's capabilities are known."""

    __slots__ = ("request", "blocked", "gate", "skipped", "lacking", "needs")

    def __init__(self, request: ChatRequest, blocked: frozenset[str], gate: ModelGate | None,
                 skipped: list[tuple[str, str]], lacking: Lacking | None) -> None:
        self.request = request
        self.blocked = blocked
        self.gate = gate
        self.skipped = skipped
        self.lacking = lacking
        self.needs: tuple[str, ...] | None = None

    def rejects(self, decision: Route, providers: Mapping[str, ProviderInfo]) -> bool:
        """Whether ``decision`` must be passed over (recording why)."""
        name = decision.provider
        model = decision.model or self.request.model
        gate = self.gate
        if name in self.blocked or (gate is not None and gate.model_blocked(name, model)):
            self.skipped.append((name, model))
            return True
        info = providers.get(name)
        if info is None or info.capabilities_of(model) is None:
            return False
        if self.needs is None:
            self.needs = request_needs(self.request)
        absent = missing(info, model, self.needs) if self.needs else ()
        if absent and self.lacking is not None:
            self.lacking.append((name, model, absent))
        return bool(absent)


def plainly_able(decision: Route, request: ChatRequest, providers: Mapping[str, ProviderInfo],
                 blocked: frozenset[str], gate: ModelGate | None) -> bool:
    """Whether :meth:`CandidateCheck.rejects` would accept ``decision`` with nothing to record
    because nothing is known against it: its provider is not blocked, its model's circuit is not
    open and nothing is known of the model's capabilities. False says only "ask the check"."""
    name = decision.provider
    if name in blocked:
        return False
    info = providers.get(name)
    if info is not None and (type(info) is not ProviderInfo or info.capabilities is not None
                             or info.model_capabilities):
        return False  # (capabilities known, or a subclass that may know them: the check decides)
    return gate is None or not gate.model_blocked(name, decision.model or request.model)


async def settle(ask: Callable[[Context], Awaitable[Route | None]], ctx: Context, rejected: Route,
                 check: CandidateCheck, limit: int) -> Route | None:
    """The rule's decision once its choice ``rejected`` (which ``check.rejects`` has just turned
    down: most choices are accepted, and that first look needs no coroutine) and every further
    rejected candidate have been hidden from ``ctx.providers`` (with the blocked providers) and the
    rule asked again (``ask``); ``None`` when the rule then passes or repeats a hidden one."""
    hidden: set[str] = set()
    visible = ctx.providers
    current = rejected
    try:
        while True:
            hidden.add(current.provider)
            if len(hidden) > limit:
                return None
            gone = hidden.union(check.blocked)
            ctx.providers = {n: i for n, i in visible.items() if n not in gone}
            answer = await ask(ctx)
            if answer is None or answer.provider in hidden:
                return None
            if not check.rejects(answer, visible):
                return answer
            current = answer
    finally:
        ctx.providers = visible
