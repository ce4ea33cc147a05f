"""The deferral checks are sound (llmrouter/lazy.py): for generated message lists, valid and subtly
invalid, whenever a parser defers the conversion, converting at once succeeds and gives what the
deferred conversion gives, wholly and in part (iter_text's window, last_user_text, the roles and
images looked at without converting, the texts read straight from the raw messages); a list it does
not defer gets the eager parse's outcome, error message included."""

from __future__ import annotations

import base64
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmrouter import lazy as lazy_module
from llmrouter.engine.capabilities import _has_image
from llmrouter.errors import InvalidRequest
from llmrouter.formats import CLIENT_FORMATS, anthropic_request, openai_request
from llmrouter.lazy import deferred, message_roles
from llmrouter.models import ChatRequest

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=6)
ODD = st.sampled_from([None, 5, 1.5, True, [], {}, [1], "x"])
"""Values of the wrong type (or the right one) where the converter expects something specific."""


def maybe(value: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] = ODD) -> st.SearchStrategy[Any]:
    """Mostly ``value``, sometimes a value of another type, sometimes absent (``MISSING``)."""
    return st.one_of(value, value, value, odd, st.just(MISSING))


MISSING = object()


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of ``fields`` without the ``MISSING`` ones, sometimes with an unknown extra key."""
    def build(values: dict[str, Any], extra: Any) -> dict[str, Any]:
        out = {k: v for k, v in values.items() if v is not MISSING}
        if extra is not MISSING:
            out["x_extra"] = extra
        return out

    return st.builds(build, st.fixed_dictionaries(fields), st.one_of(st.just(MISSING), st.just(MISSING), JSON))


def not_a_dict(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, value, value, value, value, value, ODD)


def exact(value: st.SearchStrategy[Any], odd: Any = None) -> st.SearchStrategy[Any]:
    """For well-formed lists: always ``value``."""
    return value


def all_dicts(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return value


# -- OpenAI Chat Completions -----------------------------------------------------------------------


def openai_messages(m: Any = maybe, nd: Any = not_a_dict) -> st.SearchStrategy[list[Any]]:
    """OpenAI message lists; ``m``/``nd`` = ``maybe``/``not_a_dict`` put oddities anywhere, ``exact``/
    ``all_dicts`` keep them well-formed (apart from what the value strategies themselves vary)."""
    text_part = obj(type=m(st.just("text"), st.sampled_from(["refusal", "image_url", None])), text=m(TEXT))
    data_url = st.sampled_from(["data:image/png;base64,AAAA", "data:;base64,AA", "http://img"]) if m is exact \
        else st.sampled_from(["data:image/png;base64,AAAA", "data:;base64,AA", "data:image/png,AAAA",
                              "data:image/png;base64", "http://img", ""])
    image_part = obj(type=st.just("image_url"), image_url=m(obj(url=m(data_url), detail=m(TEXT))))
    opaque_part = obj(type=st.sampled_from(["input_audio", "file"] if m is exact else ["input_audio", "file", "video"]),
                      data=JSON)
    parts = st.lists(nd(st.one_of(text_part, text_part, image_part, opaque_part)), max_size=3)
    texts = st.one_of(TEXT, st.lists(nd(text_part), max_size=3))
    arguments = st.one_of(st.sampled_from(['{"a": 1}', "{}", "", "  ", "not json", "[1]", '{"a": ']),
                          st.dictionaries(TEXT, JSON, max_size=2), *([] if m is exact else [ODD]))
    call = obj(id=m(st.sampled_from(["call_1", "call_2"] if m is exact else ["call_1", "call_2", ""])),
               type=m(st.just("function")),
               function=m(obj(name=m(st.sampled_from(["read", "write"] if m is exact else ["read", ""])),
                              arguments=m(arguments))))
    assistant_content = st.one_of(TEXT, st.none(), st.lists(nd(st.one_of(
        text_part, obj(type=st.just("refusal"), refusal=m(TEXT)))), max_size=2))
    message = st.one_of(
        obj(role=st.sampled_from(["system", "developer"]), content=m(texts), name=m(TEXT)),
        obj(role=st.just("user"), content=m(st.one_of(TEXT, parts)), name=m(TEXT)),
        obj(role=st.just("user"), content=m(st.one_of(TEXT, parts)), name=m(TEXT)),
        obj(role=st.just("assistant"), content=m(assistant_content), name=m(TEXT),
            tool_calls=m(st.lists(nd(call), max_size=2)), reasoning_content=m(TEXT)),
        obj(role=st.just("tool"), tool_call_id=m(TEXT), content=m(st.one_of(texts, st.none()))),
        obj(role=st.just("tool"), tool_call_id=m(TEXT), content=m(st.one_of(texts, st.none()))),
        *([] if m is exact else [obj(role=m(st.sampled_from(["critic", "function"])), content=TEXT)]),
    )
    return st.lists(nd(message), min_size=1, max_size=8)


# -- Anthropic Messages ----------------------------------------------------------------------------

PLAIN = base64.b64encode(b"plain text").decode()


def anthropic_messages(m: Any = maybe, nd: Any = not_a_dict) -> st.SearchStrategy[list[Any]]:
    """Anthropic message lists (``m``/``nd`` as for :func:`openai_messages`)."""
    text = obj(type=st.just("text"), text=m(TEXT), cache_control=m(JSON))
    image = obj(type=st.just("image"), source=m(st.one_of(
        obj(type=st.just("base64"), media_type=m(st.just("image/png")), data=m(st.just("AAAA"))),
        obj(type=m(st.just("url"), st.sampled_from(["file", None])), url=m(st.just("http://i"))))))
    document = obj(type=st.just("document"), title=m(TEXT), source=m(st.one_of(
        obj(type=st.just("text"), data=m(TEXT)),
        obj(type=st.just("base64"), media_type=st.sampled_from(["text/plain", "application/pdf", "text/plain; x"]),
            data=st.sampled_from([PLAIN, "%%%", "é", ""])),
        obj(type=st.just("content"), content=m(st.lists(nd(text), max_size=2))))))
    search = obj(type=st.just("search_result"), source=m(TEXT), title=m(TEXT),
                 content=m(st.lists(nd(text), max_size=2)))
    other = obj(type=m(st.sampled_from(["server_tool_use", "mcp_tool_use", "compaction"] if m is exact
                                       else ["server_tool_use", "tool_reference", "bogus", "mcp_tool_use"])),
                data=JSON)
    nested_other = obj(type=st.sampled_from(["tool_reference", "browser_state"]), data=JSON) if m is exact \
        else obj(type=st.just("tool_use"), id=TEXT, name=TEXT, input=st.just({}))
    nested = nd(st.one_of(text, image, document, search, nested_other))
    block = nd(st.one_of(
        text, text, image, document, search, other,
        obj(type=st.just("tool_use"), id=m(TEXT), name=m(TEXT), input=m(st.dictionaries(TEXT, JSON, max_size=2))),
        obj(type=st.just("tool_result"), tool_use_id=m(TEXT), is_error=m(st.booleans()),
            content=m(st.one_of(TEXT, st.lists(nested, max_size=3)))),
        obj(type=st.just("thinking"), thinking=m(TEXT), signature=m(TEXT)),
        obj(type=st.just("redacted_thinking"), data=m(TEXT)),
    ))
    message = obj(role=m(st.sampled_from(["user", "assistant", "system"]), st.sampled_from(["tool", None, 1])),
                  content=m(st.one_of(TEXT, st.lists(block, max_size=4))))
    return st.lists(nd(message), max_size=8)


@st.composite
def corrupted(draw: st.DrawFn, messages: st.SearchStrategy[list[Any]]) -> list[Any]:
    """A well-formed message list with one value somewhere in it replaced by an odd one, or one key
    removed: the subtly invalid requests a deferral check must not let through."""
    value = draw(messages)
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            slots.append((node, key))
            walk(child)

    walk(value)
    if slots:
        node, key = draw(st.sampled_from(slots))
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(ODD)
    return value


# -- the property ----------------------------------------------------------------------------------


def parse(fmt: str, messages: list[Any], *, lazy: bool, **top: Any) -> ChatRequest | str:
    """The parsed request, or the 400's message."""
    body = {"model": "m", "max_tokens": 10, "messages": messages, **top}
    try:
        if lazy:  # every conversation deferred when it can be, however short
            with mock.patch.object(lazy_module, "SMALL", 0):
                return CLIENT_FORMATS[fmt].parse_request(body, {})
        with mock.patch.object(openai_request, "deferrable", lambda *a: None), \
                mock.patch.object(anthropic_request, "deferrable", lambda *a: None), \
                mock.patch.object(openai_request, "_tool_ok", lambda *a: False), \
                mock.patch.object(anthropic_request, "_tool_ok", lambda *a: False):
            return CLIENT_FORMATS[fmt].parse_request(body, {})
    except InvalidRequest as exc:
        return exc.message


def _no_conversion(*args: Any) -> Any:
    raise AssertionError("converted")


def check(fmt: str, messages: list[Any], *, raw_texts: bool = False) -> None:
    """Deferred or not, the lazy parse matches the eager one; with ``raw_texts``, the bounded text
    reads of a deferred conversation must come from the raw messages (no conversion)."""
    eager = parse(fmt, messages, lazy=False)
    lazy = parse(fmt, messages, lazy=True)
    conversation = deferred(lazy) if isinstance(lazy, ChatRequest) else None
    event(f"{fmt}: {'deferred' if conversation is not None else 'eager'}")
    if conversation is None:
        assert lazy == eager  # same request, or same error
        return
    assert isinstance(eager, ChatRequest), f"deferred, yet converting at once fails: {eager}"
    expected = eager.messages
    assert list(message_roles(lazy)) == [m.role for m in expected]
    assert conversation.images == _has_image(eager)
    if raw_texts:
        convert, conversation.convert = conversation.convert, _no_conversion
        assert lazy.last_user_text() == eager.last_user_text()
        for n in range(len(expected)):
            assert lazy.iter_text(last_messages=n) == eager.iter_text(last_messages=n)
        conversation.convert = convert
    assert lazy.last_user_text() == eager.last_user_text()
    for n in range(len(expected)):
        assert lazy.iter_text(last_messages=n) == eager.iter_text(last_messages=n)
        assert conversation.tail(n) == expected[-n:] if n else True
    assert deferred(lazy) is conversation  # none of that converted the whole conversation
    for n in (len(expected), len(expected) + 1):  # a window over everything: converted (and kept)
        assert lazy.iter_text(last_messages=n) == eager.iter_text(last_messages=n)
    assert lazy.messages == expected and lazy == eager
    assert lazy.model_dump(mode="json") == eager.model_dump(mode="json")


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = {"openai": openai_messages, "anthropic": anthropic_messages}


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_deferral_is_sound_for_anything(fmt: str, data: st.DataObject) -> None:
    """Oddities anywhere (most of these lists are converted at once)."""
    check(fmt, data.draw(SHAPES[fmt]()))


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_deferral_is_sound_for_subtly_invalid_lists(fmt: str, data: st.DataObject) -> None:
    """Well-formed lists with one value replaced or one key removed."""
    check(fmt, data.draw(corrupted(SHAPES[fmt](exact, all_dicts))))


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_well_formed_lists_are_deferred(fmt: str, data: st.DataObject) -> None:
    """Every shape the converters accept is deferred (tool results in a row and leading system
    messages included), the deferral is sound, and bounded text reads convert nothing."""
    messages = data.draw(SHAPES[fmt](exact, all_dicts))
    if all(m["role"] in ("system", "developer") for m in messages):
        messages.append({"role": "user", "content": "hi"})  # else no conversation to defer
    request = parse(fmt, messages, lazy=True)
    assert isinstance(request, ChatRequest) and deferred(request) is not None
    check(fmt, messages, raw_texts=True)


SCHEMA = st.dictionaries(TEXT, JSON, max_size=2)


def tool_lists(fmt: str, m: Any = maybe, nd: Any = not_a_dict) -> st.SearchStrategy[list[Any]]:
    """Tool lists (``m``/``nd`` as for :func:`openai_messages`)."""
    if fmt == "openai":
        tool = obj(type=m(st.just("function"), st.sampled_from(["custom", None])),
                   function=m(obj(name=m(st.sampled_from(["read", "write"])), description=m(TEXT),
                                  parameters=m(SCHEMA), strict=m(st.booleans()))))
    else:
        tool = obj(name=m(st.sampled_from(["read", "write"])), description=m(TEXT), input_schema=m(SCHEMA),
                   type=m(st.sampled_from(["custom", "web_search_20250305"])), cache_control=m(JSON))
    return st.lists(nd(tool), min_size=1, max_size=4)


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.integers(0, 2), st.data())
def test_tool_deferral_is_sound(fmt: str, kind: int, data: st.DataObject) -> None:
    """Deferred tool lists (oddities anywhere, one oddity, none) convert without fail into what
    converting at once gives; the others get the eager parse's outcome."""
    tools = data.draw([st.one_of(tool_lists(fmt), ODD), corrupted(tool_lists(fmt, exact, all_dicts)),
                       tool_lists(fmt, exact, all_dicts)][kind])
    messages = [{"role": "user", "content": "hi"}]
    eager, lazy = parse(fmt, messages, lazy=False, tools=tools), parse(fmt, messages, lazy=True, tools=tools)
    pending = deferred(lazy, "tools") if isinstance(lazy, ChatRequest) else None
    event(f"{fmt}: {'deferred' if pending is not None else 'eager'}")
    if kind == 2:
        assert pending is not None  # well-formed: deferred
    if pending is None:
        assert lazy == eager
        return
    assert isinstance(eager, ChatRequest), f"deferred, yet converting at once fails: {eager}"
    assert pending.count == len(eager.tools or [])
    assert lazy.tools == eager.tools and lazy == eager and lazy.model_dump() == eager.model_dump()
