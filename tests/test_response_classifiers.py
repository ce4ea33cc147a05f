"""Response classifiers: the ``classify_response`` hook and the built-in ``refusal`` classifier,
through the real app (response tags in headers, the ``complete`` event and the log; token headers)."""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter import Context, hookimpl
from llmrouter.testing import MockProviders, anthropic_message, openai_chat
from tests.streamkit import AN_URL, OA_URL, PROVIDERS, ROUTERS, anthropic_stream, openai_stream

CONFIG: dict[str, Any] = {"providers": PROVIDERS, "routers": ROUTERS}
REFUSAL = "I'm sorry, but I can't help with that."


class Length:
    """Tags replies ``long`` or ``short``."""

    @hookimpl
    def classify_response(self, ctx: Context) -> list[str]:
        assert ctx.response is not None
        return ["long" if len(ctx.response.text()) > int(ctx.settings.get("limit", 20)) else "short"]


class Watcher:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    @hookimpl
    def on_end(self, ctx: Context) -> None:
        self.seen.append(list(ctx.response_tags))


class Explodes:
    @hookimpl
    def classify_response(self, ctx: Context) -> list[str]:
        raise RuntimeError("classifier bug")


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_refusal_tags_a_reply_in_headers_event_and_log(router: Any, mock_providers: MockProviders,
                                                              fmt: str) -> None:
    mock_providers.add_openai(OA_URL, REFUSAL)
    mock_providers.add_anthropic(AN_URL, "Paris is the capital of France.")
    client = await router({**CONFIG, "response_classifiers": {"refusal": {}}})
    send = client.openai if fmt == "openai" else client.anthropic
    build = openai_chat if fmt == "openai" else anthropic_message

    reply = await send(build("how do I pick a lock", model="oa/m"))
    assert reply.status == 200
    assert reply.headers["X-Router-Response-Tags"] == "refusal"
    assert (reply.headers["X-Router-Input-Tokens"], reply.headers["X-Router-Output-Tokens"]) == ("10", "5")
    (complete,) = [e for e in reply.events if e["type"] == "complete"]
    assert complete["response_tags"] == reply.log_line["response_tags"] == ["refusal"]

    reply = await send(build("capital of France?", model="an/m"))
    assert "X-Router-Response-Tags" not in reply.headers
    assert (reply.headers["X-Router-Input-Tokens"], reply.headers["X-Router-Output-Tokens"]) == ("12", "6")
    assert reply.log_line["response_tags"] == []


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
async def test_a_streamed_refusal_is_tagged_in_the_event_and_log(router: Any, mock_providers: MockProviders,
                                                                  fmt: str) -> None:
    mock_providers.add_openai(OA_URL, stream_body=openai_stream(["I cannot ", "assist with that."]))
    mock_providers.add_anthropic(AN_URL, stream_body=anthropic_stream(["I cannot ", "assist with that."]))
    client = await router({**CONFIG, "response_classifiers": {"refusal": {}}})
    for provider in ("oa", "an"):
        if fmt == "openai":
            reply = await client.openai(openai_chat("x", model=f"{provider}/m", stream=True))
        else:
            reply = await client.anthropic(anthropic_message("x", model=f"{provider}/m", stream=True))
        assert "X-Router-Response-Tags" not in reply.headers  # headers left before the reply existed
        (complete,) = [e for e in reply.events if e["type"] == "complete"]
        assert complete["response_tags"] == reply.log_line["response_tags"] == ["refusal"]


async def test_classifiers_merge_in_config_order_skip_failures_and_on_end_sees_the_tags(
        router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OA_URL, REFUSAL)
    watcher = Watcher()
    client = await router(
        {**CONFIG, "response_classifiers": {"length": {"limit": 5}, "explodes": {}, "refusal": {},
                                            "off": {"enabled": False}},
         "plugins": {"watcher": {}}},
        plugins={"length": Length(), "explodes": Explodes(), "watcher": watcher, "off": Length()})
    reply = await client.openai(openai_chat("x", model="oa/m"))
    assert reply.status == 200
    assert reply.headers["X-Router-Response-Tags"] == "long,refusal"
    assert reply.log_line["response_tags"] == ["long", "refusal"]
    assert watcher.seen == [["long", "refusal"]]


async def test_failed_requests_have_no_response_tags(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai(OA_URL, status=500, body={"error": {"message": "down"}})
    client = await router({**CONFIG, "routing": {"failover": False},
                           "providers": [{**PROVIDERS[0], "max_retries": 0}, PROVIDERS[1]],
                           "response_classifiers": {"refusal": {}}})
    reply = await client.openai(openai_chat("x", model="oa/m"))
    assert reply.status == 502
    assert reply.log_line["response_tags"] == []
    assert "X-Router-Input-Tokens" not in reply.headers


async def test_an_unknown_response_classifier_stops_startup(router: Any) -> None:
    from llmrouter.config import ConfigError

    with pytest.raises(ConfigError, match=r"\[response_classifiers.nope\].*no installed plugin with id 'nope'"):
        await router({**CONFIG, "response_classifiers": {"nope": {}}})


def test_check_lists_response_classifiers(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from llmrouter.cli.main import main

    config = tmp_path / "router.toml"
    config.write_text('[[providers]]\nname = "e"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n'
                      '[response_classifiers.refusal]\nphrases = ["nope"]\n')
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "response classifiers:\n  - refusal\n" in result.output
