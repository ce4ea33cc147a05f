"""Typed, validated, read-only plugin settings and the per-request rules (issue 11, sections 1 and 6)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, Field

from llmrouter import Context, PluginSettings, Route, hookimpl, request_settable
from llmrouter.cli.main import main
from llmrouter.config import ConfigError, load_config
from llmrouter.engine.registry import load_entry_point_plugins
from llmrouter.engine.validate import validate_config
from llmrouter.settings import FrozenDict, FrozenList
from llmrouter.testing import load_settings, openai_chat

ECHO = [{"name": "echo", "format": "echo"}, {"name": "echo2", "format": "echo"}]
CHAIN = [{"type": "fallback"}]


class Mutator:
    """A plugin with typed settings that tries to change them on every request."""

    class Settings(PluginSettings):
        label: str = request_settable("config")
        words: list[str] = Field(default_factory=list)
        limits: dict[str, int] = Field(default_factory=dict)
        secret: str = "operator-only"

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[str, ...], str]] = []
        self.refusals: list[str] = []

    @hookimpl
    def pre_request(self, ctx: Context) -> None:
        settings = ctx.settings
        self.seen.append((settings.label, tuple(settings.words), settings.secret))
        for attempt in (lambda: setattr(settings, "label", "changed"), lambda: settings.words.append("x"),
                        lambda: settings.limits.update(a=1), lambda: settings.limits.__setitem__("b", 2)):
            try:
                attempt()
            except Exception as exc:  # every mutation must be refused
                self.refusals.append(type(exc).__name__)


async def test_settings_are_typed_read_only_and_never_leak_between_requests(router: Any) -> None:
    plugin = Mutator()
    config = {"providers": ECHO, "routers": CHAIN, "plugins": {"mutator": {"words": ["a"], "limits": {"n": 1}}}}
    client = await router(config, plugins={"mutator": plugin})
    for body in (openai_chat(), openai_chat(plugins=[{"id": "mutator", "label": "mine"}]), openai_chat()):
        reply = await client.openai(body)
        assert reply.status == 200, reply.text
    assert plugin.seen == [("config", ("a",), "operator-only"), ("mine", ("a",), "operator-only"),
                           ("config", ("a",), "operator-only")]
    assert len(plugin.refusals) == 12  # 4 attempts x 3 requests, all refused
    assert set(plugin.refusals) <= {"ValidationError", "TypeError"}


async def test_request_overlays_are_validated_and_limited_to_request_settable_keys(router: Any) -> None:
    plugin = Mutator()
    client = await router({"providers": ECHO, "routers": CHAIN, "plugins": {"mutator": {}}}, plugins={"mutator": plugin})
    reply = await client.openai(openai_chat(plugins=[{"id": "mutator", "secret": "client"}]))
    assert reply.status == 400
    assert reply.body["error"]["message"] == ("plugins[0].secret: setting 'secret' of plugin 'mutator' cannot be set "
                                              "per request (request-settable: label)")
    reply = await client.anthropic({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                                    "plugins": [{"id": "mutator", "label": ["not", "a", "string"]}]})
    assert reply.status == 400
    assert reply.body["error"]["message"] == ("plugins[0] (plugin 'mutator'): key 'label': "
                                              "Input should be a valid string")
    assert plugin.seen == []  # rejected before any hook ran
    assert (await client.openai(openai_chat())).status == 200  # the server keeps serving


async def test_only_request_plugins_can_be_switched_on_by_a_request(router: Any) -> None:
    calls: list[str] = []

    class Marker:
        @hookimpl
        def on_start(self, ctx: Context) -> None:
            calls.append(ctx.plugin_id or "")

    plugins = {"marker": Marker(), "other": Marker()}
    client = await router({"providers": ECHO, "routers": CHAIN, "server": {"request_plugins": ["marker"]}}, plugins=plugins)
    assert (await client.openai(openai_chat(plugins=[{"id": "marker"}]))).status == 200
    reply = await client.openai(openai_chat(plugins=[{"id": "other"}]))
    assert reply.status == 400
    assert reply.body["error"]["message"] == ("plugins[0].id: plugin 'other' cannot be enabled per request (it is "
                                              "not enabled in the config nor listed in [server] request_plugins)")
    assert calls == ["marker"]


def test_request_plugins_must_name_installed_plugins() -> None:
    from llmrouter.testing import make_config

    config = make_config({"providers": ECHO, "server": {"request_plugins": ["ghost"]}})
    with pytest.raises(ConfigError, match=r"\[server\] key 'request_plugins' \(entry #1\).*'ghost'"):
        validate_config(config, environ={})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.toml"
    path.write_text('[[providers]]\nname = "a"\nformat = "echo"\n' + text)
    return path


@pytest.mark.parametrize(("table", "expected"), [
    ('[[routers]]\ntype = "fallback"\n[[routers]]\ntype = "prefix"\nmodel_prefx = "x/"\nprovider = "a"\n',
     "[[routers]] #2 (type = 'prefix') key 'model_prefx': unknown key (known keys: model_prefix, provider, "
     "rewrite_model, strip_prefix); key 'model_prefix': required key is missing"),
    ('[[routers]]\ntype = "fallback"\nquality_bias = 3\n',
     "[[routers]] #1 (type = 'fallback') key 'quality_bias': Input should be less than or equal to 1"),
    ('[[routers]]\ntype = "random"\ncandidates = [{provider = "a"}, {provider = "ghost"}]\n',
     "[[routers]] #1 (type = 'random') key 'candidates': unknown provider 'ghost' (configured: ['a'])"),
    ('[classifiers.keyword]\ntags = ["code"]\n', "[classifiers.keyword] key 'tags': Input should be a valid dictionary"),
    ('[plugins.moderation]\nrules = [{pattern = "("}]\n', "[plugins.moderation] moderation: rules[0]: invalid regular "
     "expression '('"),
    ('[plugins.pareto-router]\ntiers = {low = ["nobody"]}\n', "[plugins.pareto-router] key 'tiers': unknown provider "
     "'nobody'"),
    ('[plugins.response-healing]\nmax_chars = "lots"\n', "[plugins.response-healing] key 'max_chars': Input should be "
     "a valid integer"),
])
def test_check_fails_naming_file_table_key_and_problem(tmp_path: Path, table: str, expected: str) -> None:
    path = write(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        validate_config(load_config(path), environ={})
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and expected in result.output


class ThirdPartyRule:
    """A rule from outside the project declaring what it refers to."""

    class Settings(BaseModel):  # a plain pydantic model: made frozen and strict by the router
        target: str
        model: str

        def referenced_providers(self) -> Iterable[str]:
            return [self.target]

        def referenced_models(self) -> Iterable[tuple[str, str | None]]:
            return [(self.model, self.target)]

    @hookimpl
    def route(self, ctx: Context) -> Route | None:
        return Route(ctx.settings.target, ctx.settings.model)


def test_third_party_rule_references_are_checked() -> None:
    from llmrouter.testing import make_config

    registry = load_entry_point_plugins()
    registry.register(ThirdPartyRule(), "acme")
    config = make_config({"providers": ECHO, "routers": [{"type": "acme", "target": "nowhere", "model": "m"}]})
    with pytest.raises(ConfigError, match=r"\[\[routers\]\] #1 \(type = 'acme'\) key 'target': unknown provider"):
        validate_config(config, registry, environ={})
    config = make_config({"providers": ECHO, "routers": [{"type": "acme", "target": "echo2", "model": "m", "x": 1}]})
    with pytest.raises(ConfigError, match=r"key 'x': unknown key \(known keys: target, model\)"):
        validate_config(config, registry, environ={})


async def test_models_endpoint_lists_what_third_party_rules_declare(router: Any) -> None:
    config = {"providers": ECHO, "routers": [{"type": "acme", "target": "echo2", "model": "acme-model"},
                                             {"type": "prefix", "model_prefix": "c/", "provider": "echo",
                                              "rewrite_model": "coder"}]}
    client = await router(config, plugins={"acme": ThirdPartyRule()})
    body = await (await client.client.get("/v1/models")).json()
    assert {(m["id"], m["owned_by"]) for m in body["data"]} >= {("acme-model", "echo2"), ("coder", "echo")}
    reply = await client.openai(openai_chat(model="anything"))
    assert (reply.provider, reply.headers["X-Router-Model"]) == ("echo2", "acme-model")


def test_settings_without_a_model_are_a_read_only_mapping() -> None:
    class Plain:
        @hookimpl
        def on_end(self, ctx: Context) -> None:
            return None

    settings = load_settings(Plain(), {"a": [1, {"b": 2}]})
    assert settings["a"] == [1, {"b": 2}] and isinstance(settings["a"], FrozenList)
    assert isinstance(settings["a"][1], FrozenDict)
    with pytest.raises(TypeError):
        settings["c"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        settings["a"].append(3)


def test_a_settings_attribute_that_is_not_a_model_is_a_load_error() -> None:
    class Broken:
        Settings = {"a": 1}

        @hookimpl
        def on_end(self, ctx: Context) -> None:
            return None

    record = load_entry_point_plugins().register(Broken(), "broken")
    assert not record.loaded and "'Settings' must be a pydantic model class" in (record.error or "")
