"""The pipeline's Flow and error semantics, config order, per-request plugins and routing, through the
real aiohttp app with echo and respx-mocked providers."""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter import ChatResponse, Context, Flow, Route, hookimpl
from llmrouter.config import ConfigError
from llmrouter.testing import make_config, openai_chat

ECHO = {"providers": [{"name": "echo", "format": "echo"}, {"name": "echo2", "format": "echo"}],
        "routers": [{"type": "prefix", "model_prefix": "two/", "provider": "echo2"},
                    {"type": "fallback", "providers": ["echo"]}]}


class Recorder:
    """A plugin recording the hooks it sees; behaviour per hook is configurable."""

    def __init__(self, name: str, calls: list[str], **behaviour: Any) -> None:
        self.name, self.calls, self.behaviour = name, calls, behaviour

    def _act(self, hook: str, ctx: Context) -> Any:
        self.calls.append(f"{self.name}.{hook}")
        action = self.behaviour.get(hook)
        if callable(action):
            return action(ctx)
        return action

    @hookimpl
    def on_start(self, ctx: Context) -> Any:
        return self._act("on_start", ctx)

    @hookimpl
    def pre_request(self, ctx: Context) -> Any:
        return self._act("pre_request", ctx)

    @hookimpl
    def post_response(self, ctx: Context) -> Any:
        return self._act("post_response", ctx)

    @hookimpl
    def on_end(self, ctx: Context) -> Any:
        return self._act("on_end", ctx)


def answer(text: str, flow: Flow | None = Flow.STOP) -> Any:
    def act(ctx: Context) -> Flow | None:
        ctx.response = ChatResponse.from_text(text)
        return flow
    return act


def raise_(message: str) -> Any:
    def act(ctx: Context) -> None:
        raise RuntimeError(message)
    return act


def cfg(*plugin_ids: str, **extra: Any) -> dict[str, Any]:
    return {**ECHO, "plugins": {pid: {"enabled": True} for pid in plugin_ids}, **extra}


async def test_plugins_run_in_config_order_not_registration_order(router: Any) -> None:
    calls: list[str] = []
    client = await router(cfg("b", "a"), plugins={"a": Recorder("a", calls), "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert calls == ["b.on_start", "a.on_start", "b.pre_request", "a.pre_request",
                     "b.post_response", "a.post_response", "b.on_end", "a.on_end"]


async def test_stop_in_on_start_answers_and_skips_provider(router: Any) -> None:
    calls: list[str] = []
    client = await router(cfg("a", "b"), plugins={
        "a": Recorder("a", calls, on_start=answer("from plugin")), "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200
    assert reply.body["choices"][0]["message"]["content"] == "from plugin"
    assert reply.provider == "plugin"
    # The rest of on_start and all of pre_request are skipped; post_response and on_end run.
    assert calls == ["a.on_start", "a.post_response", "b.post_response", "a.on_end", "b.on_end"]
    assert [e["type"] for e in reply.events] == ["start", "complete"]
    assert reply.log_line["plugins"] == ["a"]


async def test_stop_without_response_is_500(router: Any) -> None:
    client = await router(cfg("a"), plugins={"a": Recorder("a", [], pre_request=Flow.STOP)})
    reply = await client.openai(openai_chat())
    assert reply.status == 500
    assert reply.body["error"]["message"] == "pipeline stopped without producing a response"


async def test_response_with_continue_skips_routing_but_runs_remaining_hooks(router: Any) -> None:
    calls: list[str] = []
    client = await router(cfg("a", "b"), plugins={
        "a": Recorder("a", calls, on_start=answer("early", Flow.CONTINUE)), "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat("hi"))
    assert reply.body["choices"][0]["message"]["content"] == "early"
    assert reply.provider == "plugin"
    assert calls[:4] == ["a.on_start", "b.on_start", "a.pre_request", "b.pre_request"]
    assert "routed" not in [e["type"] for e in reply.events]


async def test_exception_in_pre_request_is_500_naming_plugin(router: Any) -> None:
    client = await router(cfg("bad"), plugins={"bad": Recorder("bad", [], pre_request=raise_("boom"))})
    reply = await client.openai(openai_chat())
    assert reply.status == 500
    assert reply.body["error"]["message"] == "plugin 'bad' failed: boom"
    assert reply.log_line["error"] == "plugin 'bad' failed: boom"
    # The server keeps serving.
    client2_reply = await client.openai(openai_chat())
    assert client2_reply.status == 500


async def test_exception_in_on_start_is_500(router: Any) -> None:
    client = await router(cfg("bad"), plugins={"bad": Recorder("bad", [], on_start=raise_("kaput"))})
    reply = await client.anthropic({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert reply.status == 500
    assert reply.body == {"type": "error", "error": {"type": "api_error", "message": "plugin 'bad' failed: kaput"}}


async def test_stop_in_post_response_skips_on_end(router: Any) -> None:
    calls: list[str] = []
    client = await router(cfg("a", "b"), plugins={
        "a": Recorder("a", calls, post_response=Flow.STOP), "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat())
    assert reply.status == 200
    assert calls[-1] == "a.post_response"
    assert not [c for c in calls if c.endswith("on_end")]


async def test_exceptions_in_late_hooks_are_warnings(router: Any, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    client = await router(cfg("a", "b"), plugins={
        "a": Recorder("a", calls, post_response=raise_("late"), on_end=raise_("later")),
        "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat("still fine"))
    assert reply.status == 200
    assert reply.body["choices"][0]["message"]["content"] == "still fine"
    assert "b.post_response" in calls and "b.on_end" in calls
    assert "late" in caplog.text


async def test_async_hooks_are_awaited(router: Any) -> None:
    class AsyncPlugin:
        @hookimpl
        async def pre_request(self, ctx: Context) -> Flow:
            ctx.response = ChatResponse.from_text("async answer")
            return Flow.STOP

    client = await router(cfg("x"), plugins={"x": AsyncPlugin()})
    reply = await client.openai(openai_chat())
    assert reply.body["choices"][0]["message"]["content"] == "async answer"


async def test_post_response_can_edit_reply_and_is_recorded(router: Any) -> None:
    class Shout:
        @hookimpl
        def post_response(self, ctx: Context) -> None:
            ctx.response.content[0].text = ctx.response.text().upper()
            ctx.mark_modified()

    client = await router(cfg("shout"), plugins={"shout": Shout()})
    reply = await client.openai(openai_chat("quiet"))
    assert reply.body["choices"][0]["message"]["content"] == "QUIET"
    assert reply.log_line["plugins"] == ["shout"]


async def test_settings_from_config_overlaid_by_request(router: Any) -> None:
    seen: list[dict[str, Any]] = []

    class Settings:
        REQUEST_SETTABLE = ("level",)  # a plugin without a Settings model marks settable keys here

        @hookimpl
        def pre_request(self, ctx: Context) -> None:
            seen.append(dict(ctx.settings))

    config = cfg()
    config["plugins"] = {"s": {"enabled": True, "level": 1, "keep": "yes"}}
    client = await router(config, plugins={"s": Settings()})
    await client.openai(openai_chat())
    await client.openai(openai_chat(plugins=[{"id": "s", "level": 2}]))
    assert seen == [{"level": 1, "keep": "yes"}, {"level": 2, "keep": "yes"}]


async def test_request_can_enable_a_plugin_for_one_request(router: Any, mock_providers: Any) -> None:
    class Marker:
        @hookimpl
        def pre_request(self, ctx: Context) -> None:
            ctx.request.messages[0].content[0].text += " [marked]"

    config = {"providers": [{"name": "up", "format": "openai", "base_url": "http://up.test/v1"}],
              "routers": [{"type": "fallback"}], "server": {"request_plugins": ["marker"]}}
    route = mock_providers.add_openai("http://up.test/v1")
    client = await router(config, plugins={"marker": Marker()})
    await client.openai(openai_chat("one"))
    await client.openai(openai_chat("two", plugins=[{"id": "marker"}]))
    first, second = mock_providers.sent_json(route, 0), mock_providers.sent_json(route, 1)
    assert first["messages"][-1]["content"] == "one"
    assert second["messages"][-1]["content"] == "two [marked]"
    assert "plugins" not in second  # stripped before forwarding


async def test_unknown_request_plugin_is_400(router: Any) -> None:
    client = await router(cfg())
    reply = await client.openai(openai_chat(plugins=[{"id": "nope"}]))
    assert reply.status == 400
    assert "unknown plugin 'nope'" in reply.body["error"]["message"]


async def test_enabled_but_missing_plugin_fails_startup(router: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.ghost\].*no installed plugin with id 'ghost'"):
        await router(cfg("ghost"))


async def test_unknown_rule_type_fails_startup(router: Any) -> None:
    config = {**ECHO, "routers": [{"type": "astrology"}]}
    with pytest.raises(ConfigError, match=r"\[\[routers\]\] #1 key 'type'.*unknown rule type 'astrology'"):
        await router(config)


async def test_classifier_tags_merge_in_order_and_failures_are_skipped(router: Any) -> None:
    class Tags:
        def __init__(self, tags: list[str] | None, fail: bool = False) -> None:
            self.tags, self.fail = tags, fail

        @hookimpl
        def classify(self, ctx: Context) -> list[str] | None:
            if self.fail:
                raise ValueError("classifier bug")
            return self.tags

    config = {**ECHO, "classifiers": {"c1": {}, "bad": {}, "c2": {}}}
    client = await router(config, plugins={"c1": Tags(["code", "long"]), "bad": Tags(None, fail=True),
                                           "c2": Tags(["long", "vision"])})
    reply = await client.openai(openai_chat())
    assert reply.status == 200
    assert reply.headers["X-Router-Request-Tags"] == "code,long,vision"
    assert [e["type"] for e in reply.events] == ["start", "classified", "routed", "complete"]
    assert reply.events[1]["tags"] == ["code", "long", "vision"]


async def test_routing_chain_first_match_and_rewrite(router: Any) -> None:
    client = await router(cfg())
    reply = await client.openai(openai_chat("x", model="two/anything"))
    assert reply.provider == "echo2"
    reply = await client.openai(openai_chat("x", model="plain"))
    assert reply.provider == "echo"
    assert reply.headers["X-Router-Model"] == "plain"


async def test_forced_provider_skips_chain(router: Any) -> None:
    class Force:
        REQUEST_SETTABLE = ("to",)

        @hookimpl
        def pre_request(self, ctx: Context) -> None:
            ctx.request.forced_provider = ctx.settings.get("to", "echo2")

    client = await router(cfg("force"), plugins={"force": Force()})
    reply = await client.openai(openai_chat(model="plain"))
    assert reply.provider == "echo2"
    reply = await client.openai(openai_chat(model="plain", plugins=[{"id": "force", "to": "nowhere"}]))
    assert reply.status == 400
    assert "forced provider 'nowhere' is not available" in reply.body["error"]["message"]


async def test_no_route_is_400(router: Any) -> None:
    config = {**ECHO, "routers": [{"type": "prefix", "model_prefix": "two/", "provider": "echo2"}]}
    client = await router(config)
    reply = await client.openai(openai_chat(model="lonely"))
    assert reply.status == 400
    assert reply.body["error"]["message"] == "no provider configured for model 'lonely'"
    reply = await client.anthropic({"model": "lonely", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert reply.status == 400
    assert reply.body["error"] == {"type": "invalid_request_error", "message": "no provider configured for model 'lonely'"}


async def test_route_to_unloaded_provider_passes_to_next_rule(router: Any) -> None:
    config = {"providers": [{"name": "keyed", "format": "openai", "base_url": "http://k.test/v1",
                             "api_key_env": "UNSET_KEY_FOR_TEST"},
                            {"name": "echo", "format": "echo"}],
              "routers": [{"type": "prefix", "model_prefix": "gpt", "provider": "keyed"},
                          {"type": "fallback"}]}
    client = await router(config)
    reply = await client.openai(openai_chat())
    assert reply.provider == "echo"


async def test_route_hook_returning_route_object(router: Any) -> None:
    class Pick:
        @hookimpl
        def route(self, ctx: Context) -> Route | None:
            if ctx.request.model == ctx.settings["when"]:
                return Route("echo2", model="picked-model")
            return None

    config = {**ECHO, "routers": [{"type": "pick", "when": "special"}, {"type": "fallback", "providers": ["echo"]}]}
    client = await router(config, plugins={"pick": Pick()})
    reply = await client.openai(openai_chat(model="special"))
    assert (reply.provider, reply.headers["X-Router-Model"]) == ("echo2", "picked-model")
    assert reply.events[2] == {**reply.events[2], "type": "routed", "provider": "echo2", "model": "picked-model"}
    reply = await client.openai(openai_chat(model="ordinary"))
    assert reply.provider == "echo"


def test_make_config_helper_disables_log_without_tmp_path() -> None:
    assert make_config(ECHO).logging.enabled is False


async def test_on_end_runs_on_failures_with_error_set(router: Any, mock_providers: Any) -> None:
    seen: list[tuple[str | None, bool]] = []

    class Meter:
        @hookimpl
        def post_response(self, ctx: Context) -> None:
            seen.append(("post_response", True))

        @hookimpl
        def on_end(self, ctx: Context) -> None:
            seen.append((ctx.error, ctx.response is None))

    config = {"providers": [{"name": "up", "format": "openai", "base_url": "http://up.test/v1", "max_retries": 0}],
              "routers": [{"type": "fallback"}], "plugins": {"meter": {}}}
    mock_providers.add_openai("http://up.test/v1", status=500, body={"error": {"message": "down"}})
    client = await router(config, plugins={"meter": Meter()})
    reply = await client.openai(openai_chat())
    assert reply.status == 502
    assert seen == [("provider 'up' returned 500: down", True)]


async def test_request_cannot_disable_a_config_enabled_plugin(router: Any) -> None:
    calls: list[str] = []
    client = await router(cfg("a"), plugins={"a": Recorder("a", calls), "b": Recorder("b", calls)})
    reply = await client.openai(openai_chat(plugins=[{"id": "a", "enabled": False}]))
    assert reply.status == 400
    assert "cannot disable plugin 'a'" in reply.body["error"]["message"]
    calls.clear()
    reply = await client.openai(openai_chat(plugins=[{"id": "b", "enabled": False}]))
    assert reply.status == 200
    assert not [c for c in calls if c.startswith("b.")]
