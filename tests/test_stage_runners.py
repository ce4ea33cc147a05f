"""Stages run without a coroutine of their own while every hook answers at once (engine/stages.py,
RuleChain.walk_now): hooks that return awaitables, anywhere in a stage, still run in order with the
same ``ctx`` fields, results and failures as plain ones, through the real app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrouter import ChatResponse, Context, Flow, Route, hookimpl
from llmrouter.context import ProviderInfo
from llmrouter.engine.capabilities import CandidateCheck, plainly_able
from llmrouter.engine.stages import Step, collect_tags, run_flow_hooks
from llmrouter.models import ChatRequest
from llmrouter.testing import openai_chat

ECHO = {"providers": [{"name": "echo", "format": "echo"}, {"name": "echo2", "format": "echo"}],
        "routers": [{"type": "fallback", "providers": ["echo"]}]}
HOOKS = ("on_start", "pre_request", "post_response", "on_end")


def later(value: Any) -> Callable[[], Awaitable[Any]]:
    """An awaitable that really suspends before answering ``value`` (or raising it)."""
    async def wait() -> Any:
        await asyncio.sleep(0)
        if isinstance(value, BaseException):
            raise value
        return value
    return wait


class Hooks:
    """A plugin whose four flow hooks record what they see (plugin id, settings) and return
    ``results[hook]`` at once, or through an awaitable when ``awaiting``."""

    def __init__(self, name: str, seen: list[str], awaiting: bool, **results: Any) -> None:
        self.name, self.seen, self.awaiting, self.results = name, seen, awaiting, results

    def _hook(self, hook: str, ctx: Context) -> Any:
        self.seen.append(f"{self.name}.{hook} as {ctx.plugin_id} {dict(ctx.settings)}")
        result = self.results.get(hook)
        if callable(result) and not isinstance(result, BaseException):
            result = result(ctx)
        if self.awaiting:
            return later(result)()
        if isinstance(result, BaseException):
            raise result
        return result

    @hookimpl
    def on_start(self, ctx: Context) -> Any:
        return self._hook("on_start", ctx)

    @hookimpl
    def pre_request(self, ctx: Context) -> Any:
        return self._hook("pre_request", ctx)

    @hookimpl
    def post_response(self, ctx: Context) -> Any:
        return self._hook("post_response", ctx)

    @hookimpl
    def on_end(self, ctx: Context) -> Any:
        return self._hook("on_end", ctx)


def config(**extra: Any) -> dict[str, Any]:
    return {**ECHO, "plugins": {"a": {"enabled": True, "n": 1}, "b": {"enabled": True, "n": 2},
                                "c": {"enabled": True, "n": 3}}, **extra}


@pytest.mark.parametrize("awaiting", ["", "a", "b", "c", "abc"])
async def test_flow_hooks_run_in_order_whichever_of_them_await(router: Any, awaiting: str) -> None:
    seen: list[str] = []
    client = await router(config(), plugins={p: Hooks(p, seen, p in awaiting) for p in "abc"})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert seen == [f"{p}.{hook} as {p} {{'n': {n}}}" for hook in HOOKS for p, n in (("a", 1), ("b", 2), ("c", 3))]


def answer(ctx: Context) -> Flow:
    ctx.response = ChatResponse.from_text("from b")
    return Flow.STOP


@pytest.mark.parametrize("awaiting", ["", "b", "ab"])
async def test_a_stop_from_any_hook_ends_the_stage(router: Any, awaiting: str) -> None:
    seen: list[str] = []
    client = await router(config(), plugins={
        p: Hooks(p, seen, p in awaiting, **({"on_start": answer} if p == "b" else {})) for p in "abc"})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert reply.body["choices"][0]["message"]["content"] == "from b"
    assert reply.provider == "plugin"
    assert [s.split(" as ")[0] for s in seen] == ["a.on_start", "b.on_start", "a.post_response",
                                                  "b.post_response", "c.post_response", "a.on_end", "b.on_end",
                                                  "c.on_end"]
    assert reply.log_line["plugins"] == ["b"]


@pytest.mark.parametrize("awaiting", ["", "b", "ab"])
async def test_a_stop_in_post_response_skips_the_rest_and_on_end(router: Any, awaiting: str) -> None:
    seen: list[str] = []
    client = await router(config(), plugins={
        p: Hooks(p, seen, p in awaiting, **({"post_response": Flow.STOP} if p == "b" else {})) for p in "abc"})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert [s.split(" as ")[0] for s in seen][-3:] == ["c.pre_request", "a.post_response", "b.post_response"]


@pytest.mark.parametrize("awaiting", ["", "b"])
async def test_failures_are_the_same_whether_a_hook_awaits(router: Any, awaiting: str) -> None:
    seen: list[str] = []
    client = await router(config(), plugins={
        p: Hooks(p, seen, p in awaiting, **({"pre_request": RuntimeError("boom"), "post_response": ValueError("x"),
                                            "on_end": KeyError("y")} if p == "b" else {})) for p in "abc"})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 500
    assert reply.body["error"]["message"] == "plugin 'b' failed: boom"
    assert "c.pre_request" not in " ".join(seen)
    # on_end still runs for every plugin, a failing one logged and skipped
    assert [s.split(" as ")[0] for s in seen if ".on_end" in s] == ["a.on_end", "b.on_end", "c.on_end"]

    seen.clear()
    client = await router(config(), plugins={
        p: Hooks(p, seen, p in awaiting, **({"post_response": ValueError("x")} if p == "b" else {})) for p in "abc"})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert [s.split(" as ")[0] for s in seen if ".post_response" in s] == ["a.post_response", "b.post_response",
                                                                          "c.post_response"]


class Tags:
    def __init__(self, tags: Any, awaiting: bool) -> None:
        self.tags, self.awaiting = tags, awaiting

    @hookimpl
    def classify(self, ctx: Context) -> Any:
        return later(self.tags)() if self.awaiting else _raise_or(self.tags)


def _raise_or(value: Any) -> Any:
    if isinstance(value, BaseException):
        raise value
    return value


@pytest.mark.parametrize("awaiting", ["", "1", "2", "3", "123"])
async def test_classifier_tags_merge_in_order_whichever_of_them_await(router: Any, awaiting: str) -> None:
    cfg = {**ECHO, "classifiers": {"c1": {}, "c2": {}, "c3": {}, "c4": {}}}
    client = await router(cfg, plugins={"c1": Tags(["code", "long"], "1" in awaiting),
                                        "c2": Tags(ValueError("classifier bug"), "2" in awaiting),
                                        "c3": Tags("vision", "3" in awaiting),
                                        "c4": Tags(("long", "math"), False)})
    reply = await client.openai(openai_chat())
    assert reply.status == 200
    assert reply.events[1] == {**reply.events[1], "type": "classified", "tags": ["code", "long", "vision", "math"]}


class Rule:
    def __init__(self, answer: Any, awaiting: bool) -> None:
        self.answer, self.awaiting = answer, awaiting

    @hookimpl
    def route(self, ctx: Context) -> Any:
        return later(self.answer)() if self.awaiting else self.answer


class SubRoute(Route):
    """A Route subclass (handled by the general path)."""


@pytest.mark.parametrize("awaiting", ["", "p", "u", "r", "pur"])
@pytest.mark.parametrize("route_type", [Route, SubRoute])
async def test_rules_are_walked_in_order_whichever_of_them_await(router: Any, awaiting: str,
                                                                 route_type: type[Route]) -> None:
    cfg = {**ECHO, "routers": [{"type": "passes"}, {"type": "unknown-provider"}, {"type": "picks"},
                               {"type": "fallback"}]}
    client = await router(cfg, plugins={"passes": Rule(None, "p" in awaiting),
                                        "unknown-provider": Rule(route_type("nowhere"), "u" in awaiting),
                                        "picks": Rule(route_type("echo2", "m2"), "r" in awaiting)})
    reply = await client.openai(openai_chat())
    assert reply.status == 200
    assert (reply.provider, reply.headers["X-Router-Model"]) == ("echo2", "m2")


@pytest.mark.parametrize("awaiting", [False, True])
async def test_a_rule_answering_something_else_fails_the_same_way(router: Any, awaiting: bool) -> None:
    cfg = {**ECHO, "routers": [{"type": "odd"}, {"type": "fallback"}]}
    client = await router(cfg, plugins={"odd": Rule(42, awaiting)})
    reply = await client.openai(openai_chat())
    assert reply.status == 500
    assert reply.body["error"]["message"] == "plugin 'odd' failed: route hook returned int, expected Route or None"


# -- the runners themselves ---------------------------------------------------------------------------


def _ctx() -> Context:
    return Context(request=ChatRequest(model="m", messages=[]), request_id="r", providers={})


def _step(plugin_id: str, function: Callable[[Context], Any]) -> Step:
    return Step(plugin_id, function, {"id": plugin_id}, {"id": plugin_id})


def test_plain_hooks_give_their_answer_at_once() -> None:
    ctx = _ctx()
    assert run_flow_hooks(ctx, [_step("a", lambda c: None), _step("b", lambda c: Flow.CONTINUE)], True) is False
    assert run_flow_hooks(ctx, [_step("a", lambda c: Flow.STOP), _step("b", lambda c: None)], True) is True
    assert ctx.stopped_by == "a" and ctx.plugin_id is None
    assert collect_tags(ctx, [_step("a", lambda c: ["x"]), _step("b", lambda c: "y")], ["w", "x"], "c") == ["w", "x", "y"]


async def test_an_awaiting_hook_hands_the_rest_of_the_stage_to_a_coroutine() -> None:
    ctx = _ctx()
    seen: list[Any] = []

    def record(answer: Any, awaiting: bool) -> Callable[[Context], Any]:
        def hook(c: Context) -> Any:
            seen.append(c.plugin_id)
            return later(answer)() if awaiting else answer
        return hook

    ran = run_flow_hooks(ctx, [_step("a", record(None, False)), _step("b", record(None, True)),
                               _step("c", record(Flow.STOP, True)), _step("d", record(None, False))], True)
    assert not isinstance(ran, bool)
    assert await ran is True  # type: ignore[misc]
    assert seen == ["a", "b", "c"] and ctx.stopped_by == "c" and ctx.plugin_id is None
    tags = collect_tags(ctx, [_step("a", record(None, False)), _step("b", record(["x"], True)),
                              _step("c", record(["y", "x"], False))], [], "c")
    assert not isinstance(tags, list)
    assert await tags == ["x", "y"]  # type: ignore[misc]


def test_fallback_choice_is_remembered_only_for_the_same_providers() -> None:
    from llmrouter_plugins.rules import fallback

    settings = fallback.Settings(quality_bias=0.5)
    cheap = ProviderInfo("cheap", "openai", cost=1.0, quality=50.0)
    good = ProviderInfo("good", "openai", cost=2.0, quality=90.0)
    ctx = _ctx()
    ctx.settings = settings
    for providers, expected in [({"cheap": cheap, "good": good}, "good"),
                                ({"cheap": cheap, "good": good}, "good"),
                                ({"cheap": cheap}, "cheap"),
                                ({"cheap": cheap, "good": ProviderInfo("good", "openai", cost=2.0, quality=10.0)},
                                 "cheap"),
                                ({"good": good, "cheap": cheap}, "good"),
                                ({"good": cheap, "cheap": good}, "good"),  # (the infos name the provider)
                                ({}, None)]:
        ctx.providers = providers
        decision = fallback.route(ctx)
        assert (decision.provider if decision else None) == expected
        assert decision == fallback._choose(ctx, settings)


class _Gate:
    def __init__(self, open_models: set[tuple[str, str]]) -> None:
        self.open_models = open_models

    def model_blocked(self, provider: str, model: str) -> bool:
        return (provider, model) in self.open_models


class _Info(ProviderInfo):
    """A ProviderInfo subclass (its capabilities are the check's to read)."""


_INFOS = [None, ProviderInfo("p", "openai"), ProviderInfo("p", "openai", capabilities=frozenset({"tools"})),
          ProviderInfo("p", "openai", model_capabilities={"m": frozenset()}),
          ProviderInfo("p", "openai", model_capabilities={"other": frozenset({"vision"})}), _Info("p", "openai")]


@given(info=st.sampled_from(_INFOS), blocked=st.sets(st.sampled_from(["p", "q"])),
       open_models=st.sets(st.tuples(st.sampled_from(["p", "q"]), st.sampled_from(["m", "x"]))),
       model=st.sampled_from([None, "m", "x"]), tools=st.booleans(), gated=st.booleans())
def test_a_plainly_able_choice_is_one_the_candidate_check_accepts_silently(
        info: ProviderInfo | None, blocked: set[str], open_models: set[tuple[str, str]], model: str | None,
        tools: bool, gated: bool) -> None:
    request = ChatRequest(model="m", messages=[], tools=[{"name": "t", "input_schema": {}}] if tools else None)
    providers = {"p": info} if info is not None else {}
    gate = _Gate(open_models) if gated else None
    decision = Route("p", model)
    skipped: list[tuple[str, str]] = []
    lacking: list[tuple[str, str, tuple[str, ...]]] = []
    check = CandidateCheck(request, frozenset(blocked), gate, skipped, lacking)
    if plainly_able(decision, request, providers, frozenset(blocked), gate):
        assert not check.rejects(decision, providers) and not skipped and not lacking
