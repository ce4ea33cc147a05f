"""A request whose conversation is converted lazily (llmrouter/lazy.py) behaves exactly like one
parsed eagerly, under every pydantic operation a plugin or the router may use."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from pydantic import BaseModel, ValidationError

from llmrouter import lazy
from llmrouter.errors import InvalidRequest
from llmrouter.formats import CLIENT_FORMATS, anthropic_request, openai_request
from llmrouter.lazy import deferred, message_roles
from llmrouter.models import ChatRequest, Message, TextPart, ToolResultPart

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.py"}'}}
OPENAI = {"model": "gpt", "temperature": 0.5, "tools": [
    {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}], "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
    {"role": "user", "content": "hello", "name": "ann"},
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL, TOOL_CALL | {"id": "call_2"}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "x = 1"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "y = 2"}]},
    {"role": "system", "content": "late"},
    {"role": "user", "content": [{"type": "text", "text": "look"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    {"role": "assistant", "content": "done", "reasoning_content": "hmm"},
    {"role": "user", "content": "thanks"}]}
ANTHROPIC = {"model": "claude", "max_tokens": 100, "system": "s", "tools": [
    {"name": "read", "description": "Read", "input_schema": {"type": "object"}, "cache_control": {"type": "x"}},
    {"name": "web_search", "type": "web_search_20250305"}], "messages": [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "sig"},
                                      {"type": "tool_use", "id": "t1", "name": "read", "input": {"p": 1}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "result"}, {"type": "image", "source": {"type": "url", "url": "http://i"}}]},
        {"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}]},
    {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "doc text"}}]},
    {"role": "assistant", "content": "ok"}]}
BODIES = {"openai": OPENAI, "anthropic": ANTHROPIC}


@contextmanager
def eager_parsing() -> Iterator[None]:
    """Parsers that never defer: the reference a lazy request must match."""
    with mock.patch.object(openai_request, "deferrable", lambda *a: None), \
            mock.patch.object(anthropic_request, "deferrable", lambda *a: None), \
            mock.patch.object(openai_request, "_tool_ok", lambda *a: False), \
            mock.patch.object(anthropic_request, "_tool_ok", lambda *a: False):
        yield


def parse(fmt: str, body: dict[str, Any] | None = None, *, lazy: bool = True) -> ChatRequest:
    body = copy.deepcopy(body or BODIES[fmt])
    if lazy:
        request = CLIENT_FORMATS[fmt].parse_request(body, {"anthropic-version": "2023-06-01"})
        assert deferred(request) is not None and deferred(request, "tools") is not None
        return request
    with eager_parsing():
        request = CLIENT_FORMATS[fmt].parse_request(body, {"anthropic-version": "2023-06-01"})
    assert deferred(request) is None and deferred(request, "tools") is None
    return request


@pytest.fixture(autouse=True)
def defer_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """These requests are short: defer them anyway (see test_short_conversations_are_converted_at_once)."""
    monkeypatch.setattr(lazy, "SMALL", 0)


@pytest.fixture(params=["openai", "anthropic"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_short_conversations_are_converted_at_once(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Deferring a conversation of a few messages would cost more than it saves."""
    monkeypatch.setattr(lazy, "SMALL", 8)
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(9)]
    system = [{"role": "system", "content": "s"}] if fmt == "openai" else []  # not part of the count
    short = CLIENT_FORMATS[fmt].parse_request({**BODIES[fmt], "messages": [*system, *turns[:8]]}, {})
    longer = CLIENT_FORMATS[fmt].parse_request({**BODIES[fmt], "messages": [*system, *turns]}, {})
    assert deferred(short) is None and len(short.messages) == 8
    assert deferred(longer) is not None and len(longer.messages) == 9


def test_reading_messages_converts_once_and_stores_an_ordinary_field(fmt: str) -> None:
    lazy, eager = parse(fmt), parse(fmt, lazy=False)
    placeholder = lazy.__dict__["messages"]
    assert placeholder == [] and deferred(lazy) is not None  # not converted yet
    messages = lazy.messages
    assert deferred(lazy) is None and messages is placeholder and lazy.messages is messages
    assert messages == eager.messages and all(type(m) is Message for m in messages)
    assert deferred(lazy, "tools") is not None and lazy.tools == eager.tools
    assert list(lazy.__dict__) == list(eager.__dict__)  # field order, as validation builds it


@pytest.mark.parametrize("operation", [
    lambda r: r.model_dump(), lambda r: r.model_dump(mode="json", exclude={"headers"}),
    lambda r: r.model_dump_json(), lambda r: repr(r), lambda r: str(r), lambda r: dict(r),
    lambda r: list(dict(r)), lambda r: sorted(r.model_fields_set), lambda r: r.model_copy().model_dump(),
    lambda r: r.model_copy(deep=True).model_dump(), lambda r: copy.copy(r).model_dump(),
    lambda r: copy.deepcopy(r).model_dump(), lambda r: pickle.loads(pickle.dumps(r)).model_dump(),
    lambda r: r.model_copy(update={"model": "other"}, deep=True).model_dump(),
    lambda r: r.system_text(), lambda r: r.last_user_text(), lambda r: r.iter_text(),
    lambda r: r.iter_text(last_messages=0), lambda r: r.iter_text(last_messages=1),
    lambda r: r.iter_text(last_messages=3), lambda r: r.iter_text(last_messages=99),
    lambda r: r.iter_text(last_messages=-2), lambda r: list(message_roles(r)),
])
def test_every_read_gives_what_an_eager_request_gives(fmt: str, operation: Any) -> None:
    assert operation(parse(fmt)) == operation(parse(fmt, lazy=False))


def test_tools_are_converted_on_their_own(fmt: str) -> None:
    lazy, eager = parse(fmt), parse(fmt, lazy=False)
    tools = lazy.tools
    assert tools == eager.tools and tools is lazy.tools and deferred(lazy, "tools") is None
    assert deferred(lazy) is not None  # the conversation is still waiting
    assert lazy == eager and list(lazy.__dict__) == list(eager.__dict__)
    lazy = parse(fmt)
    lazy.tools = None
    assert deferred(lazy, "tools") is None and lazy.tools is None and deferred(lazy) is not None
    assert lazy.model_dump()["tools"] is None and lazy.model_dump()["messages"] == eager.model_dump()["messages"]


def test_bounded_reads_leave_the_conversation_unconverted(fmt: str) -> None:
    lazy = parse(fmt)
    lazy.iter_text(last_messages=2)
    lazy.last_user_text()
    message_roles(lazy)
    assert deferred(lazy) is not None


def _no_conversion(*args: Any) -> Any:
    raise AssertionError("converted")


@pytest.mark.parametrize("window", [1, 2, 3, 4])
def test_bounded_text_reads_build_no_models(fmt: str, window: int) -> None:
    """The classifier's window and the last user text are read from the client's own messages."""
    lazy, eager = parse(fmt), parse(fmt, lazy=False)
    deferred(lazy).convert = _no_conversion
    assert lazy.iter_text(last_messages=window) == eager.iter_text(last_messages=window)
    assert lazy.last_user_text() == eager.last_user_text()


@pytest.mark.parametrize("odd", [7, None, [{"type": "text", "text": 5}], [{"type": ["text"]}], [3],
                                 [{"type": "mystery", "text": "x"}]])
def test_bounded_text_reads_of_unknown_shapes_convert(fmt: str, odd: Any) -> None:
    """A message the raw reading does not know (here, one made invalid after the parse) is
    converted, as before: the reads fail as the conversion does."""
    lazy = parse(fmt)
    conversation = deferred(lazy)
    last_user = max(i for i, role in enumerate(conversation.roles) if role == "user")
    conversation.raw[conversation.starts[last_user]]["content"] = odd
    window = conversation.count - last_user
    assert conversation.tail_texts(window) is None

    def outcome(read: Any) -> str:
        with pytest.raises(InvalidRequest) as caught:
            read()
        return caught.value.message

    eager = outcome(lambda: CLIENT_FORMATS[fmt].parse_request({**BODIES[fmt], "messages": conversation.raw}, {}))
    assert outcome(lambda: lazy.iter_text(last_messages=window)) == eager
    assert outcome(lazy.last_user_text) == eager


def test_equality_either_way_round_and_between_lazy_requests(fmt: str) -> None:
    assert parse(fmt) == parse(fmt, lazy=False)
    assert parse(fmt, lazy=False) == parse(fmt)
    assert parse(fmt) == parse(fmt)
    other = parse(fmt)
    other.messages[-1].content = [TextPart(text="changed")]
    assert parse(fmt) != other and other != parse(fmt)


def test_copies_share_or_copy_the_messages_as_for_an_eager_request(fmt: str) -> None:
    lazy = parse(fmt)
    shallow = lazy.model_copy()
    assert shallow.messages is lazy.messages and deferred(shallow) is None
    deep = parse(fmt).model_copy(deep=True)
    assert deep.messages == parse(fmt, lazy=False).messages
    updated = parse(fmt).model_copy(update={"messages": [Message(role="user", content="new")]})
    assert [m.text() for m in updated.messages] == ["new"] and deferred(updated) is None


def test_assigning_messages_is_validated_and_drops_the_raw_conversation(fmt: str) -> None:
    lazy = parse(fmt)
    with pytest.raises(ValidationError):
        lazy.messages = 5  # type: ignore[assignment]
    assert deferred(lazy) is not None and lazy.messages == parse(fmt, lazy=False).messages  # unharmed
    lazy = parse(fmt)
    lazy.messages = [{"role": "user", "content": "plain"}]  # type: ignore[list-item]
    assert deferred(lazy) is None and isinstance(lazy.messages[0], Message)
    assert lazy.messages[0].content == [TextPart(text="plain")]
    assert lazy.model_dump()["messages"][0]["content"][0]["text"] == "plain"


def test_a_failed_then_a_successful_assignment_and_object_setattr(fmt: str) -> None:
    lazy = parse(fmt)
    with pytest.raises(ValidationError):
        lazy.tools = "many"  # type: ignore[assignment]
    assert deferred(lazy, "tools") is not None and lazy.tools == parse(fmt, lazy=False).tools
    lazy = parse(fmt)
    object.__setattr__(lazy, "messages", [])  # bypassing validation, as model_construct-style code may
    assert deferred(lazy) is None and lazy.messages == [] and lazy.model_dump()["messages"] == []
    assert not hasattr(ChatRequest, "messages") and not hasattr(ChatRequest, "tools")  # as for any field
    del lazy.messages
    with pytest.raises(AttributeError):
        lazy.messages  # noqa: B018


def test_assigning_other_fields_keeps_the_conversation_deferred(fmt: str) -> None:
    lazy, eager = parse(fmt), parse(fmt, lazy=False)
    for request in (lazy, eager):
        request.tags = ["a", "b"]
        request.system = "new system"
        request.temperature = 1
    assert deferred(lazy) is not None
    assert lazy == eager and lazy.model_dump() == eager.model_dump()
    with pytest.raises(ValidationError):
        lazy.max_tokens = "many"  # type: ignore[assignment]


def test_mutating_the_read_messages_is_seen_everywhere(fmt: str) -> None:
    lazy = parse(fmt)
    lazy.messages.append(Message(role="user", content="appended"))
    assert lazy.model_dump()["messages"][-1]["content"][0]["text"] == "appended"
    assert lazy.last_user_text() == "appended" and lazy.iter_text(last_messages=1) == [
        *[p.text for p in lazy.system or []], "appended"]


def test_dumped_inside_another_model(fmt: str) -> None:
    class Wrapper(BaseModel):
        request: ChatRequest

    assert Wrapper(request=parse(fmt)).model_dump() == Wrapper(request=parse(fmt, lazy=False)).model_dump()
    assert Wrapper(request=parse(fmt)).model_dump_json() == Wrapper(request=parse(fmt, lazy=False)).model_dump_json()


def test_deprecated_pydantic_v1_methods(fmt: str) -> None:
    assert parse(fmt).dict() == parse(fmt, lazy=False).dict()
    assert parse(fmt).copy().model_dump() == parse(fmt, lazy=False).copy().model_dump()


def test_the_validated_request_from_a_dump_matches(fmt: str) -> None:
    dumped = parse(fmt).model_dump()
    assert ChatRequest.model_validate(dumped) == parse(fmt, lazy=False)


def test_openai_tool_results_in_a_row_are_one_message() -> None:
    lazy = parse("openai")
    conversation = deferred(lazy)
    assert conversation is not None
    assert list(conversation.roles) == ["user", "assistant", "user", "system", "user", "assistant", "user"]
    assert conversation.images
    results = lazy.messages[2].content
    assert [type(p) for p in results] == [ToolResultPart, ToolResultPart]


@pytest.mark.parametrize(("body", "error"), [
    ({"model": "gpt", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": 5}]},
     "messages[1].content: expected an array, got a number"),
    ({"model": "gpt", "messages": [{"role": "user", "content": "hi"}, {"role": "critic", "content": "x"}]},
     "messages[1].role: unknown role 'critic'"),
    ({"model": "gpt", "messages": [{"role": "system", "content": "only"}]},
     "messages: must contain at least one message"),
])
def test_openai_errors_are_raised_at_parse_time(body: dict[str, Any], error: str) -> None:
    from llmrouter.errors import InvalidRequest
    from llmrouter.formats.base import check_request

    with pytest.raises(InvalidRequest) as caught:
        check_request(CLIENT_FORMATS["openai"].parse_request(body, {}))
    assert str(caught.value.message) == error


@pytest.mark.parametrize(("fmt", "error"), [
    ("openai", "messages[0].content[0].type: unknown content part type []"),
    ("anthropic", "messages[0].content[0].type: unknown content block type []"),
])
async def test_an_unhashable_part_type_is_a_400_not_a_crash(router: Any, fmt: str, error: str) -> None:
    """Found by the property test: a list as a part's ``type`` used to raise TypeError (a 500)."""
    client = await router({"providers": [{"name": "e", "format": "echo"}],
                           "routers": [{"type": "fallback", "providers": ["e"]}]}, log=False)
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": [], "text": "x"}]}]}
    reply = await (client.openai if fmt == "openai" else client.anthropic)(body)
    assert reply.status == 400
    assert error in reply.text
