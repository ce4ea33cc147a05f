"""A conversation (and tool list) converted to canonical models only when something reads it.

Agents resend their whole conversation with every request (50-500 KB), and turning it into
canonical :class:`~llmrouter.models.Message` objects costs more than everything else the router
does for a request that goes, unchanged, to a provider of the client's own format (which forwards
the client's JSON; see :mod:`llmrouter.formats.passthrough`). So the OpenAI and Anthropic request
parsers may leave ``ChatRequest.messages`` unconverted: they keep the client's raw message list in
a :class:`LazyConversation`, and the first read of ``request.messages`` converts it with the
parser's own conversion code, stores the list and from then on it is an ordinary field.
Conversations of at most :data:`SMALL` messages are converted at once.

A parser defers only when a cheap check of the raw messages proves the conversion cannot fail
(otherwise it converts at once, raising its usual 400), so errors stay eager and identical. The
check also records where each canonical message starts in the raw list (OpenAI's consecutive
``tool`` messages become one canonical message), its role and whether any part is an image; with
that, bounded reads (``iter_text(last_messages=n)``, ``last_user_text()``), the roles
:func:`~llmrouter.formats.base.check_request` looks at and the images capability routing looks for
are answered without converting the whole conversation; the texts those bounded reads return are
read straight from the raw messages by the parser's own reader (:data:`Texts`), which gives up
(and the span is converted) at any shape it does not know. ``tools`` (20-40 JSON schemas in an
agent request) is deferred the same way, as a :class:`LazyList`.

How the deferral stays invisible: while deferred, the field's value in the instance ``__dict__`` is
a placeholder, the empty list its conversion will fill in place (so the field order, and the list's
identity, are those of an eager parse); :class:`DeferredField`, a data descriptor on the class,
converts it when the field is read; :class:`DeferredFields`, mixed into
:class:`~llmrouter.models.ChatRequest`, converts first in every pydantic operation that reads
``__dict__`` itself (dumps, through a wrap serializer in the model; copies, ``==``, ``repr``,
``dict()``, pickling). Assigning the field is pydantic's validated assignment as ever: it replaces
the placeholder, which makes the raw value stale (and dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrouter.models import ChatRequest, Message

__all__ = ["DEFERRABLE", "SMALL", "DeferredField", "DeferredFields", "LazyConversation", "LazyList", "Texts",
           "defer", "deferred", "message_roles"]

DEFERRABLE = ("messages", "tools")
"""The ``ChatRequest`` fields a parser may defer."""

SMALL = 8
"""Conversations of at most this many messages are converted at once: deferring costs a few
microseconds of bookkeeping, converting a short message about five, and a bounded reader such as
the keyword classifier (which reads the last 8) would convert them all anyway. Read at call time
(tests set it to 0 to defer everything)."""

Convert = Callable[[list[Any], int, int], "list[Message]"]
"""``convert(raw, start, stop)``: the canonical messages of ``raw[start:stop]``, where ``start`` is
where a canonical message begins and ``stop`` where one begins or ``len(raw)``."""

Texts = Callable[[list[Any], int, int, bool], "list[str] | None"]
"""``texts(raw, start, stop, nested)``, over the same spans as :data:`Convert`: the texts of the
canonical messages ``convert`` would give, read straight from the raw messages, in order. With
``nested``, what ``ChatRequest.iter_text`` reads in them (text parts, opaque blocks' fallback text,
the text inside tool results); without, their own text parts alone (what ``Message.text()`` joins).
``None`` when a message is not of a shape it knows (the caller then converts)."""


_role_of = attrgetter("role")


class LazyConversation:
    """The client's raw message list and what is needed to convert it, wholly or in part.

    ``starts[i]`` is the index in ``raw`` where canonical message ``i`` begins (the conversation
    runs from ``starts[0]`` to the end of ``raw``), ``roles[i]`` its canonical role and ``images``
    whether any message carries an image. ``target`` is the list object the conversion fills, made
    up front so that the list's identity is known before it exists (the pipeline's check that no
    stage replaced the conversation compares it). ``texts``, when given, reads the text of a span
    without converting it (bounded text reads need no models).
    """

    __slots__ = ("convert", "images", "raw", "roles", "starts", "target", "texts")

    def __init__(self, raw: list[Any], starts: Sequence[int], roles: Sequence[str], convert: Convert,
                 *, images: bool, texts: Texts | None = None) -> None:
        self.raw = raw
        self.starts = starts
        self.roles = roles
        self.convert = convert
        self.images = images
        self.texts = texts
        self.target: list[Message] = []

    @property
    def count(self) -> int:
        """How many canonical messages the conversation has."""
        return len(self.starts)

    def _bound(self, index: int) -> int:
        """Where canonical message ``index`` begins in ``raw`` (``len(raw)`` for ``index == count``)."""
        return self.starts[index] if index < len(self.starts) else len(self.raw)

    def _span(self, first: int, last: int) -> list[Message]:
        """Canonical messages ``first`` to ``last`` (exclusive), converted afresh."""
        if first >= last:
            return []
        return self.convert(self.raw, self.starts[first], self._bound(last))

    def _last_index(self, role: str) -> int | None:
        """The index of the last canonical message of ``role``, or ``None``."""
        roles = self.roles
        for index in range(len(roles) - 1, -1, -1):
            if roles[index] == role:
                return index
        return None

    def materialise(self) -> list[Message]:
        """Every message, converted into :attr:`target` (in place)."""
        self.target[:] = self._span(0, self.count)
        return self.target

    def tail(self, n: int) -> list[Message]:
        """The last ``n`` messages, converted afresh: equal to ``materialise()[-n:]`` (``n >= 1``)."""
        return self._span(max(0, self.count - n), self.count)

    def last_of_role(self, role: str) -> Message | None:
        """The last message of ``role``, converted afresh, or ``None``."""
        index = self._last_index(role)
        return self._span(index, index + 1)[0] if index is not None else None

    def tail_texts(self, n: int) -> list[str] | None:
        """What ``ChatRequest.iter_text`` reads in :meth:`tail` ``(n)`` (system prompt aside), read
        from the raw messages; ``None`` when :attr:`texts` cannot tell (convert the tail instead)."""
        first = max(0, self.count - n)
        if self.texts is None or first >= self.count:
            return None
        return self.texts(self.raw, self.starts[first], self._bound(self.count), True)

    def last_text(self, role: str) -> str:
        """``Message.text()`` of the last message of ``role`` (``""`` when there is none), read from
        the raw message when :attr:`texts` can, else converted."""
        index = self._last_index(role)
        if index is None:
            return ""
        texts = self.texts(self.raw, self.starts[index], self._bound(index + 1), False) if self.texts else None
        return "".join(texts) if texts is not None else self._span(index, index + 1)[0].text()


class LazyList:
    """A raw list (the client's ``tools``) and the conversion that turns it into canonical models;
    ``target`` as for :class:`LazyConversation`."""

    __slots__ = ("convert", "raw", "target")

    def __init__(self, raw: list[Any], convert: Callable[[list[Any]], list[Any]]) -> None:
        self.raw = raw
        self.convert = convert
        self.target: list[Any] = []

    @property
    def count(self) -> int:
        """How many items the converted list has."""
        return len(self.raw)

    def materialise(self) -> list[Any]:
        """Every item, converted into :attr:`target` (in place)."""
        self.target[:] = self.convert(self.raw)
        return self.target


Deferred = LazyConversation | LazyList


def deferred(request: ChatRequest, field: str = "messages") -> Any:
    """The deferred value of ``request``'s ``field`` (a :class:`LazyConversation` for ``messages``,
    a :class:`LazyList` for ``tools``) while it is not converted, else ``None``."""
    private = request.__pydantic_private__
    pending = private.get("_lazy") if private else None
    value = pending.get(field) if pending else None
    # An assignment replaced the placeholder: the raw value is stale.
    return value if value is not None and request.__dict__.get(field) is value.target else None


def defer(request: ChatRequest, field: str, value: Deferred) -> ChatRequest:
    """Make ``request.<field>`` the lazily converted ``value``; the request then behaves as if
    ``field`` had been set to the converted list (``model_fields_set`` included)."""
    assert field in DEFERRABLE
    request.__dict__[field] = value.target  # the placeholder, in its place in the field order
    request.__pydantic_fields_set__.add(field)
    private = request.__pydantic_private__
    assert private is not None
    private["_lazy"] = {**(private.get("_lazy") or {}), field: value}
    return request


def message_roles(request: ChatRequest) -> Sequence[str]:
    """The role of each of ``request``'s messages, without converting a deferred conversation."""
    private = request.__pydantic_private__
    if not (private and private.get("_lazy")):  # nothing deferred: the field's value is the list itself
        return list(map(_role_of, request.__dict__["messages"]))
    conversation = deferred(request)
    if conversation is not None:
        return conversation.roles  # type: ignore[no-any-return]
    return [message.role for message in request.messages]


class DeferredField:
    """The class attribute that makes reading a deferred field convert it (a data descriptor, so it
    is consulted before the instance ``__dict__``, where the field's placeholder sits). Assignment
    is pydantic's as for any field (validated; it replaces the placeholder, which makes the raw
    value stale)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:  # as for any pydantic field: no class attribute
            raise AttributeError(f"type object {owner.__name__!r} has no attribute {self.name!r}")
        try:
            value = instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(f"{type(instance).__name__!r} object has no attribute {self.name!r}") from None
        private = instance.__pydantic_private__
        pending = private.get("_lazy") if private else None
        if pending and self.name in pending:
            instance._materialise(self.name)
        return value

    def __set__(self, instance: Any, value: Any) -> None:  # object.__setattr__; pydantic sets __dict__
        instance.__dict__[self.name] = value

    def __delete__(self, instance: Any) -> None:
        try:
            del instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


class DeferredFields:
    """Mixed into :class:`~llmrouter.models.ChatRequest` (before ``BaseModel``), whose deferrable
    fields are :class:`DeferredField` class attributes: while a field is deferred, its ``__dict__``
    value is the (empty) list its conversion will fill; reading the field converts it, and every
    pydantic operation that walks ``__dict__`` (dumps, copies, ``==``, ``repr``, ``dict()``,
    pickling) converts every deferred field first."""

    __slots__ = ()

    def _materialise(self, field: str | None = None) -> None:
        """Convert ``field`` (every deferred field when ``None``) in place, into its placeholder."""
        private = self.__pydantic_private__  # type: ignore[attr-defined]
        pending = private.get("_lazy") if private else None
        if not pending:
            return
        values = self.__dict__
        rest = {}
        for name, value in pending.items():
            if field is None or name == field:
                if values.get(name) is value.target:  # else an assignment replaced it: stale
                    value.materialise()
            else:
                rest[name] = value
        if rest:
            private["_lazy"] = rest
        else:  # gone, as from an eagerly parsed request (the private values take part in ==)
            del private["_lazy"]

    def __eq__(self, other: Any) -> bool:
        self._materialise()
        if isinstance(other, DeferredFields):
            other._materialise()
        return super().__eq__(other)  # type: ignore[no-any-return]

    __hash__ = None  # type: ignore[assignment]  # as for any pydantic model that defines __eq__

    def __copy__(self) -> Any:
        self._materialise()
        return super().__copy__()  # type: ignore[misc]

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        self._materialise()
        return super().__deepcopy__(memo)  # type: ignore[misc]

    def __getstate__(self) -> dict[Any, Any]:
        self._materialise()
        return super().__getstate__()  # type: ignore[misc, no-any-return]

    def __iter__(self) -> Any:
        self._materialise()
        return super().__iter__()  # type: ignore[misc]

    def __repr_args__(self) -> Any:
        self._materialise()
        return super().__repr_args__()  # type: ignore[misc]

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        """Pydantic's deprecated ``copy`` (which reads ``__dict__`` directly), after converting."""
        self._materialise()
        return super().copy(*args, **kwargs)  # type: ignore[misc]
