"""The C-speed gate is sound (llmrouter/formats/gate.py): for generated requests, valid and subtly
invalid, in both formats, whenever the gate accepts a body, the Python checks it stands in for
accept it too and every result is the same: the parse (the deferred conversation's spans, roles and
images, the deferred tools, the converted request, or the same 400), the same-format forward body
(to the byte), and the depth limit's verdict at every limit."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from llmrouter import lazy as lazy_module
from llmrouter.errors import InvalidRequest
from llmrouter.formats import CLIENT_FORMATS, gate, passthrough
from llmrouter.formats.gate import JSON_LEVELS, Gated
from llmrouter.formats.passthrough import ClientBody, forward_body
from llmrouter.lazy import deferred
from llmrouter.models import ChatRequest
from llmrouter.web.limits import check_limits
from tests.test_lazy_property import (
    JSON,
    MISSING,
    ODD,
    TEXT,
    all_dicts,
    anthropic_messages,
    corrupted,
    exact,
    openai_messages,
    tool_lists,
)


def fresh(value: Any) -> st.SearchStrategy[Any]:
    """``value``, a new copy each draw (corrupted() edits what it draws in place)."""
    return st.builds(copy.deepcopy, st.just(value))


def deep(levels: int) -> Any:
    """JSON nesting ``levels`` containers (an object outermost, then arrays and objects in turn)."""
    value: Any = "x"
    for i in range(levels, 0, -1):
        value = {"k": value, "n": 1} if i % 2 else [value, None]
    return value


DEEP = st.sampled_from([1, 1, 1, 2, 3, 5, 10, 11, 12, 20, 70]).map(deep)  # (fresh: corrupted() edits in place)
"""JSON of chosen depths around the gate's bound (JSON_LEVELS + 1 for an object) and the default limit."""
OPTIONAL = st.one_of(st.just(MISSING), TEXT)
"""An optional string field: absent or present."""
ARGUMENTS = st.sampled_from(['{"a": 1}', "{}", "", "  ", "\u00a0", " x ", "not json"])


class Odd:
    """Oddities at a rate: ``Odd(k)(value)`` is ``value`` about k times in k + 2, else a value of
    another type or absent; ``obj`` builds objects with an unknown key about once in k + 2."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, value: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] = ODD) -> st.SearchStrategy[Any]:
        return st.one_of(*[value] * self.k, odd, st.just(MISSING)) if self.k else value

    def obj(self, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        def build(values: dict[str, Any], extra: Any) -> dict[str, Any]:
            out = {k: v for k, v in values.items() if v is not MISSING}
            if extra is not MISSING:
                out["x_extra"] = extra
            return out

        extra = st.one_of(*[st.just(MISSING)] * (self.k + 1), DEEP) if self.k else st.just(MISSING)
        return st.builds(build, st.fixed_dictionaries(fields), extra)


RATES = st.sampled_from([Odd(0), Odd(0), Odd(60), Odd(20), Odd(4)])


# -- requests near the gate's shapes (what agents send, with oddities) -----------------------------


def openai_near(m: Odd) -> st.SearchStrategy[list[Any]]:
    """OpenAI messages mostly of the gate's shapes (string contents, function calls), with
    ``m``'s oddities: other types, missing fields, unknown keys, the roles it does not take."""
    call = m.obj(id=m(st.sampled_from(["call_1", ""])), type=m(st.sampled_from(["function", "custom"])),
               function=m(m.obj(name=m(st.sampled_from(["read", ""])), arguments=m(ARGUMENTS))))
    system = m.obj(role=m(st.sampled_from(["system", "system", "developer"])), content=m(TEXT),
                   name=st.sampled_from([MISSING, MISSING, MISSING, "n"]))
    message = st.one_of(
        m.obj(role=st.just("user"), content=m(TEXT), name=m(OPTIONAL)),
        m.obj(role=st.just("assistant"), content=m(st.one_of(TEXT, st.none(), st.just(""))), name=m(OPTIONAL),
            tool_calls=m(st.lists(call, min_size=1, max_size=2), st.just([]))),
        m.obj(role=st.just("tool"), tool_call_id=m(TEXT), content=m(TEXT)),
        m.obj(role=st.just("tool"), tool_call_id=m(TEXT), content=m(TEXT)),
        m.obj(role=m(st.just("user"), st.sampled_from(["system", "developer", "critic"])), content=TEXT),
    )
    return st.builds(lambda first, rest: first + rest, st.lists(system, max_size=1),
                     st.lists(message, min_size=1, max_size=10))


def openai_tools(m: Odd) -> st.SearchStrategy[list[Any]]:
    function = m.obj(name=m(st.sampled_from(["read", ""])), description=m(TEXT), parameters=m(DEEP),
                   strict=m(st.booleans()))
    return st.lists(m.obj(type=m(st.sampled_from(["function", "custom"])), function=m(function)), max_size=3)


def anthropic_near(m: Odd) -> st.SearchStrategy[list[Any]]:
    """Anthropic messages mostly of the gate's shapes, with ``m``'s oddities."""
    cache = m(st.one_of(st.just(MISSING), fresh({"type": "ephemeral"}), fresh({"type": "ephemeral", "ttl": "1h"}),
                        fresh({"type": "other"}), JSON))
    text = m.obj(type=st.just("text"), text=m(TEXT), cache_control=cache)
    block = st.one_of(
        text, text,
        m.obj(type=st.just("tool_use"), id=m(TEXT), name=m(TEXT), input=m(st.one_of(DEEP, fresh({})))),
        m.obj(type=st.just("tool_result"), tool_use_id=m(TEXT), is_error=m(st.one_of(st.just(MISSING), st.booleans())),
            content=m(st.one_of(TEXT, st.lists(text, max_size=2))), cache_control=cache),
        m.obj(type=st.just("thinking"), thinking=m(TEXT), signature=m(st.sampled_from(["sig", ""]))),
        m.obj(type=st.just("redacted_thinking"), data=m(TEXT)),
        m(text, m.obj(type=st.just("image"), source=fresh({"type": "url", "url": "http://i"}))),
    )
    message = m.obj(role=m(st.sampled_from(["user", "assistant"]), st.sampled_from(["system", None, 1])),
                  content=m(st.one_of(TEXT, st.lists(block, min_size=1, max_size=3)), st.just([])))
    return st.builds(_alternate, st.lists(message, min_size=1, max_size=10), st.integers(0, 3))


def _alternate(messages: list[Any], how: int) -> list[Any]:
    """Mostly roles taking turns (the canonical path merges a run of one role), as agents send them."""
    if how:
        for i, message in enumerate(messages):
            if message.get("role") in ("user", "assistant"):
                message["role"] = ("user", "assistant")[(i + how) % 2]
    return messages


def anthropic_tools(m: Odd) -> st.SearchStrategy[list[Any]]:
    tool = m.obj(name=m(st.sampled_from(["read", ""])), description=m(TEXT), input_schema=m(DEEP),
               cache_control=m(fresh({"type": "ephemeral"})))
    return st.lists(tool, max_size=3)


def extras() -> st.SearchStrategy[dict[str, Any]]:
    """Top-level fields besides the messages: valid ones, wrong ones, unknown deep ones."""
    return st.fixed_dictionaries({}, optional={
        "temperature": st.sampled_from([0.2, "hot"]), "stream": st.booleans(), "x_deep": DEEP,
        "metadata": st.one_of(DEEP, fresh({"a": "b"})), "max_tokens": st.sampled_from([10, 0, -1, "x"]),
        "tool_choice": st.sampled_from(["auto", {"type": "auto"}]), "stop_sequences": st.just(["X"]),
    })


# -- the property ----------------------------------------------------------------------------------


def parse(fmt: str, body: dict[str, Any], gated: Gated | None) -> ChatRequest | str:
    """The request parsed with every conversation deferred when it can be, or the 400's message."""
    with mock.patch.object(lazy_module, "SMALL", 0):
        try:
            return CLIENT_FORMATS[fmt].parse_request(body, {}, gated)
        except InvalidRequest as exc:
            return exc.message


def depth_verdict(body: dict[str, Any], limit: int, gated: Gated | None) -> str | None:
    try:
        check_limits(body, limit, 10_000, gated)
    except InvalidRequest as exc:
        return exc.message
    return None


def forward(fmt: str, body: dict[str, Any], gated: Gated | None, stream: bool) -> bytes | None:
    forwarded = forward_body(ClientBody(fmt, body, b"", gated), "sent-model", stream)
    return None if forwarded is None else orjson.dumps(forwarded)


@pytest.fixture(autouse=True)
def every_body_is_gated() -> Iterator[None]:
    """However few its messages (the router leaves bodies of a few to the Python checks)."""
    with mock.patch.object(gate, "FEW", 0):
        yield


def check(fmt: str, body: dict[str, Any], note: bool = True) -> None:
    try:
        body = orjson.loads(orjson.dumps(body))  # the JSON values a decoded body holds
    except TypeError:  # (an integer beyond 64 bits: no JSON body the router decodes holds one)
        assume(False)
    gated = CLIENT_FORMATS[fmt].gate(body)
    if note:
        event(f"{fmt}: {'accepted' if gated is not None else 'declined'}")
    if gated is None:
        return
    for limit in (1, 2, 5, 6, 7, 8, 14, 15, 16, 17, 20, 64):
        assert depth_verdict(body, limit, gated) == depth_verdict(body, limit, None), limit
    python = parse(fmt, body, None)
    fast = parse(fmt, body, gated)
    if not isinstance(python, ChatRequest):
        assert fast == python  # the same 400
        return
    assert isinstance(fast, ChatRequest), fast
    conversation, expected = deferred(fast), deferred(python)
    if expected is not None or conversation is not None:
        assert conversation is not None and expected is not None, "the gate and deferrable() disagree"
        assert list(conversation.starts) == list(expected.starts)
        assert list(conversation.roles) == list(expected.roles)
        assert conversation.images == expected.images
    if gated.tools:
        assert deferred(python, "tools") is not None, "gate accepted tools deferrable() refuses"
    if gated.passthrough:
        ok = passthrough._openai_messages_ok if fmt == "openai" else passthrough._anthropic_messages_ok
        assert ok(body["messages"]), "gate cleared messages the passthrough check refuses"
    for stream in (False, True):
        assert forward(fmt, body, gated, stream) == forward(fmt, body, None, stream)
    assert fast == python and fast.model_dump(mode="json") == python.model_dump(mode="json")


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEAR = {"openai": (openai_near, openai_tools), "anthropic": (anthropic_near, anthropic_tools)}
BROAD = {"openai": openai_messages, "anthropic": anthropic_messages}


def body_of(fmt: str, messages: list[Any], tools: Any, top: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "m", "messages": messages, **top}
    if fmt == "anthropic":
        body.setdefault("max_tokens", 10)
    if tools is not None:
        body["tools"] = tools
    return body


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_gate_is_sound_near_its_shapes(fmt: str, data: st.DataObject) -> None:
    """Lists of the gate's shapes with oddities anywhere (missing fields, wrong types, unknown keys,
    roles and blocks it does not take, deep JSON in tool inputs, schemas and extra fields)."""
    messages, tools = NEAR[fmt]
    m = data.draw(RATES)
    check(fmt, body_of(fmt, data.draw(messages(m)), data.draw(st.none() | tools(m) | ODD), data.draw(extras())))


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_gate_is_sound_for_one_oddity(fmt: str, data: st.DataObject) -> None:
    """Well-formed lists of the gate's shapes with one value replaced or one key removed."""
    messages, tools = NEAR[fmt]
    check(fmt, body_of(fmt, data.draw(corrupted(messages(Odd(0)))), data.draw(st.none() | tools(Odd(0))), {}))


ROLES = ["system", "developer", "user", "assistant", "tool", "critic", None]


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_gate_is_sound_for_one_role_changed(fmt: str, data: st.DataObject) -> None:
    """Well-formed lists of the gate's shapes with one message's role changed to any other."""
    messages = data.draw(NEAR[fmt][0](Odd(0)))
    messages[data.draw(st.integers(0, len(messages) - 1))]["role"] = data.draw(st.sampled_from(ROLES))
    check(fmt, body_of(fmt, messages, None, {}))


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_gate_is_sound_for_anything(fmt: str, data: st.DataObject) -> None:
    """The deferral property's broader message lists (list contents, images, documents...) and tools."""
    check(fmt, body_of(fmt, data.draw(BROAD[fmt](exact, all_dicts) | BROAD[fmt]()),
                       data.draw(st.none() | tool_lists(fmt)), {}))


def test_well_formed_requests_of_its_shapes_are_accepted() -> None:
    """The gate is not vacuous: the agent workload's shapes pass it (and so skip the Python walks)."""
    oai = {"model": "m", "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u", "name": "n"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}, {"role": "tool", "tool_call_id": "d", "content": "r"},
        {"role": "assistant", "content": "a"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": deep(10), "strict": True}}]}
    gated = CLIENT_FORMATS["openai"].gate(oai)
    assert gated is not None and gated.passthrough and gated.tools and gated.starts == [1, 2, 3, 5]
    assert gated.roles == ["user", "assistant", "user", "assistant"]
    check("openai", oai, note=False)
    ant = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "t", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "s"},
                                          {"type": "tool_use", "id": "t", "name": "f", "input": deep(10)}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r", "is_error": True}]}],
        "tools": [{"name": "f", "input_schema": deep(10), "cache_control": {"type": "ephemeral"}}]}
    gated = CLIENT_FORMATS["anthropic"].gate(ant)
    assert gated is not None and gated.passthrough and gated.tools and gated.roles == ["user", "assistant", "user"]
    check("anthropic", ant, note=False)


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_depth_verdicts_agree_at_every_limit(fmt: str) -> None:
    """Free-form JSON of every depth around the gate's bound, in tool schemas, tool inputs and an
    extra field: with the gate's help or without, the same verdict at every limit."""
    for levels in range(0, 14):
        if fmt == "openai":
            body = {"model": "m", "messages": [{"role": "user", "content": "u"}],
                    "tools": [{"type": "function", "function": {"name": "f", "parameters": deep(levels)}}]}
        else:
            body = {"model": "m", "max_tokens": 1, "tools": [{"name": "f", "input_schema": deep(levels)}],
                    "messages": [{"role": "assistant", "content": [
                        {"type": "tool_use", "id": "t", "name": "f", "input": deep(levels)}]}]}
        for extra in (None, deep(levels)):
            if extra is not None:
                body["x_extra"] = extra
            gated = CLIENT_FORMATS[fmt].gate(body)
            # (an Anthropic tool input must be an object, of JSON_LEVELS + 1 levels at most)
            assert (gated is not None) == (fmt == "openai" or 1 <= levels <= JSON_LEVELS + 1)
            assert gated is None or gated.tools == (1 <= levels <= JSON_LEVELS + 1)
            for limit in range(1, 30):
                assert depth_verdict(body, limit, gated) == depth_verdict(body, limit, None), (levels, limit)


def test_the_gate_declines_what_it_does_not_model() -> None:
    """Shapes left to the Python path: roles, parts and keys the structs do not type, JSON deeper
    than they bound (the depth walk must see it)."""
    user = {"role": "user", "content": "u"}
    for messages in ([{"role": "developer", "content": "d"}, user], [user, {"role": "system", "content": "s"}],
                     [{"role": "user", "content": [{"type": "text", "text": "t"}]}], [user | {"x": deep(70)}],
                     [{"role": "assistant", "content": "a", "reasoning_content": "r"}], [user | {"name": None}]):
        assert CLIENT_FORMATS["openai"].gate({"model": "m", "messages": messages}) is None, messages
    for messages in ([{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}],
                     [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                         "input": deep(12)}]}],
                     [{"role": "system", "content": "s"}], [{"role": "user", "content": "u", "x": 1}]):
        assert CLIENT_FORMATS["anthropic"].gate({"model": "m", "max_tokens": 1, "messages": messages}) is None


# -- the memo of accepted tool lists ---------------------------------------------------------------


def twin(value: Any, rnd: Any) -> Any:
    """A JSON value ``==`` to ``value`` that a struct may still tell apart: booleans as 0/1 or
    0.0/1.0, integers as floats, objects with their keys in another order (new containers)."""
    if isinstance(value, bool):
        return rnd.choice([value, int(value), float(value)])
    if isinstance(value, int) and abs(value) < 2**53:
        return rnd.choice([value, float(value)])
    if isinstance(value, list):
        return [twin(item, rnd) for item in value]
    if isinstance(value, dict):
        keys = list(value)
        rnd.shuffle(keys)
        return {k: twin(value[k], rnd) for k in keys}
    return value


def verdict(gated: Gated | None) -> tuple[Any, ...] | None:
    return None if gated is None else (gated.typed, gated.depth, gated.start, list(gated.starts), list(gated.roles),
                                       gated.passthrough, gated.tools)


SCHEMAS = st.one_of(st.sampled_from([1, 2, 3, 10, 11]).map(deep), st.dictionaries(TEXT, JSON, max_size=3))
"""Tool schemas within the gate's bound, as a remembered list holds them."""
NAME = st.sampled_from(["read", "write", "x"])
ACCEPTED_TOOLS = {
    "openai": st.lists(Odd(0).obj(type=st.just("function"), function=Odd(0).obj(
        name=NAME, parameters=SCHEMAS, description=OPTIONAL, strict=st.one_of(st.just(MISSING), st.booleans()))),
        min_size=1, max_size=3),
    "anthropic": st.lists(Odd(0).obj(name=NAME, input_schema=SCHEMAS, description=OPTIONAL,
                                     cache_control=st.one_of(st.just(MISSING), fresh({"type": "ephemeral"}))),
                          min_size=1, max_size=3),
}
"""Tool lists the gate accepts."""


@contextmanager
def fresh_memos() -> Iterator[None]:
    with mock.patch.object(gate, "_OPENAI_TOOLS_SEEN", gate._ToolsMemo()), \
            mock.patch.object(gate, "_ANTHROPIC_TOOLS_SEEN", gate._ToolsMemo()):
        yield


@PROPERTY
@given(st.sampled_from(["openai", "anthropic"]), st.data())
def test_a_remembered_tool_list_changes_no_verdict(fmt: str, data: st.DataObject) -> None:
    """A body whose tools are a list the gate accepted before, or ``==`` to it with other types or key
    order, or differ from it a little, gets the verdict a gate that never saw that list gives, and
    the Python checks agree with it."""
    messages, tools = NEAR[fmt]
    conversation = data.draw(st.just([{"role": "user", "content": "u"}]) | messages(Odd(0)))
    first = body_of(fmt, conversation, data.draw(st.one_of(*[ACCEPTED_TOOLS[fmt]] * 3, tools(data.draw(RATES)))), {})
    try:
        first = orjson.loads(orjson.dumps(first))
    except TypeError:  # (an integer beyond 64 bits: no JSON body the router decodes holds one)
        assume(False)
    rnd = data.draw(st.randoms(use_true_random=False))
    how = data.draw(st.sampled_from(["same", "same", "twin", "corrupted"]))
    tools = first["tools"] if how == "same" else twin(first["tools"], rnd) if how == "twin" \
        else data.draw(corrupted(st.just(twin(first["tools"], rnd))))
    second = orjson.loads(orjson.dumps({**first, "tools": tools}))  # (new objects, as each request brings)
    with fresh_memos():
        expected = verdict(CLIENT_FORMATS[fmt].gate(second))
    with fresh_memos():
        CLIENT_FORMATS[fmt].gate(first)
        memo = gate._OPENAI_TOOLS_SEEN if fmt == "openai" else gate._ANTHROPIC_TOOLS_SEEN
        event(f"{fmt}: second list {'found' if memo.knows(orjson.dumps(second['tools'])) else 'not found'} in the memo")
        assert verdict(CLIENT_FORMATS[fmt].gate(second)) == expected
        check(fmt, second, note=False)


def test_the_memo_keeps_the_json_of_the_latest_lists() -> None:
    """At most MEMO_TOOLS lists, the latest (or latest found) first, kept as JSON: editing a client's
    body afterwards changes nothing; an equal list with a ``bool`` field given as a number is not
    taken for the remembered one."""
    def body(name: str, strict: Any = True) -> dict[str, Any]:
        return {"model": "m", "messages": [{"role": "user", "content": "u"}], "tools": [
            {"type": "function", "function": {"name": name, "parameters": {"type": "object"}, "strict": strict}}]}

    def known(body: dict[str, Any]) -> bool:
        return gate._OPENAI_TOOLS_SEEN.knows(orjson.dumps(body["tools"]))

    with fresh_memos():
        first = body("t0")
        assert gate.openai(first).tools
        first["tools"][0]["function"]["parameters"]["deep"] = deep(40)  # (after the gate: not what it saw)
        assert known(body("t0")) and not known(first)
        assert not gate.openai(first).tools  # converted again: too deep for the gate
        for strict in (1, 1.0):
            assert body("t0", strict) == body("t0")  # (== would take it for the remembered list)
            assert not known(body("t0", strict)) and not gate.openai(body("t0", strict)).tools
        for i in range(1, gate.MEMO_TOOLS + 1):
            assert gate.openai(body(f"t{i}")).tools
        assert not known(body("t0"))  # the oldest, forgotten
        assert known(body("t1"))
        assert gate.openai(body("t5")).tools
        assert known(body("t1")) and not known(body("t2"))  # t1 was found: kept
