"""The keyword classifier remembers the tags of texts it matched lately (agents resend them), with
the same answers as matching the joined window, and within its bounds."""

from __future__ import annotations

from typing import Any

from llmrouter.testing import load_settings, openai_chat
from llmrouter_plugins import keyword_classifier
from llmrouter_plugins.keyword_classifier import Settings

TAGS = {"code": ["def ", "Class"], "german": ["straße"], "late": ["zzz"]}


def test_remembered_tags_are_the_tags_of_the_text() -> None:
    settings: Settings = load_settings(keyword_classifier, {"tags": TAGS})
    for text, tags in (("plain words", set()), ("a DEF here", {"code"}), ("STRASSE und class", {"code", "german"})):
        assert settings.tags_of(text) == tags
        assert settings.tags_of(str(text)) == tags  # remembered: the same answer
    assert len(settings.seen) == 3


def test_long_texts_are_told_apart_whole(monkeypatch: Any) -> None:
    """A long text is looked up by its length and ends, and then compared whole: texts that share
    those get their own tags, each time; one found again in a new string object is not matched again."""
    settings: Settings = load_settings(keyword_classifier, {"tags": TAGS})
    ends = "x" * 200
    plain, coded = ends + " plain words " + ends, ends + " has a def   " + ends
    assert len(plain) == len(coded)
    for _ in range(2):
        assert settings.tags_of(plain) == set()
        assert settings.tags_of(coded) == {"code"}
    assert len(settings.seen) == 1  # (the same probe: the later text replaced the earlier)
    matched: list[str] = []
    real = Settings.match
    monkeypatch.setattr(Settings, "match", lambda self, haystack: matched.append(haystack) or real(self, haystack))
    assert settings.tags_of(coded.encode().decode()) == {"code"} and matched == []  # (a new object: remembered)
    assert settings.tags_of(plain.encode().decode()) == set() and len(matched) == 1


def test_memory_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(keyword_classifier, "MAX_REMEMBERED", 4)
    monkeypatch.setattr(keyword_classifier, "MAX_REMEMBERED_CHARS", 10)
    settings: Settings = load_settings(keyword_classifier, {"tags": TAGS})
    for i in range(10):
        settings.tags_of(f"text {i}")
    assert list(settings.seen) == ["text 6", "text 7", "text 8", "text 9"]
    assert settings.tags_of("a long text with def in it") == {"code"}
    assert "a long text with def in it" not in settings.seen


def test_a_keyword_holding_the_separator_still_matches_the_joined_window() -> None:
    settings: Settings = load_settings(keyword_classifier, {"tags": {"x": ["a\x00b"]}})
    assert not settings.per_text


async def test_repeated_requests_get_the_same_tags(router: Any) -> None:
    client = await router({"providers": [{"name": "echo", "format": "echo"}],
                           "classifiers": {"keyword": {"enabled": True, "tags": TAGS}},
                           "routers": [{"type": "fallback", "providers": ["echo"]}]})
    body = openai_chat("Straße")
    body["messages"] = [{"role": "system", "content": "you write def statements"}, *body["messages"]]
    for _ in range(3):
        reply = await client.openai(body)
        assert reply.status == 200
        assert reply.events[1]["tags"] == ["code", "german"]  # table order, whatever the text order
    body["messages"][-1]["content"] = "zzz then"
    reply = await client.openai(body)
    assert reply.events[1]["tags"] == ["code", "late"]
