"""Canonical models built from values a format's parser has already checked.

Every client request becomes a :class:`~llmrouter.models.ChatRequest` and every upstream reply a
:class:`~llmrouter.models.ChatResponse` with its :class:`~llmrouter.models.Usage`. The parsers check
each value's type themselves (a model name is a non-empty string, parts are part models, a stop
reason is one of the canonical names), so pydantic's validation of the finished objects repeats
work already done: about 2.5 µs per request and 3 µs per reply on a quiet core, more under load.
:func:`checked_request`, :func:`checked_response` and :func:`checked_usage` build the same objects
without it, as pydantic's ``model_construct`` does but without its per-field default lookup: equal
to the validated objects, with the same ``model_fields_set`` (the keywords given) and the same
dumps. Assignments to the results are still validated (the models' ``validate_assignment``).

Only for values of the declared types: anything else must go through the model's constructor.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llmrouter.models import ChatRequest, ChatResponse, Message, Part, Role, StopReason, TextPart, Usage

__all__ = ["checked_message", "checked_request", "checked_response", "checked_text", "checked_usage"]

_UNSET: Any = object()
_new = object.__new__
# The four slots every pydantic model instance has, set through their descriptors (what
# ``object.__setattr__`` ends up doing, without looking the name up each time).
_SLOTS = BaseModel.__dict__
_set_dict = _SLOTS["__dict__"].__set__
_set_fields_set = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra = _SLOTS["__pydantic_extra__"].__set__
_set_private = _SLOTS["__pydantic_private__"].__set__

for _model in (ChatResponse, Usage, Message, TextPart):  # (no private attributes or extras to initialise)
    assert not _model.__private_attributes__ and _model.model_config.get("extra") == "forbid"


def _built(cls: type[Any], values: dict[str, Any], fields_set: set[str],
           private: dict[str, Any] | None = None) -> Any:
    """An instance of ``cls`` holding ``values`` (every field, in declaration order)."""
    obj = _new(cls)
    _set_dict(obj, values)
    _set_fields_set(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, private)
    return obj


# ChatRequest's fields in declaration order with their plain defaults (None for those a factory makes).
_REQUEST_DEFAULTS = {name: None if field.default_factory is not None or field.is_required() else field.default
                     for name, field in ChatRequest.model_fields.items()}
# (made in checked_request line by line, not by a loop over the factories: this asserts they are these)
assert {name: field.default_factory for name, field in ChatRequest.model_fields.items()
        if field.default_factory is not None} == {"messages": list, "plugins": list, "tags": list, "extra": dict,
                                                  "headers": dict}
_REQUEST_PRIVATE = {name: attr.get_default() for name, attr in ChatRequest.__private_attributes__.items()}


def checked_request(fields: dict[str, Any]) -> ChatRequest:
    """``ChatRequest(**fields)`` for values of the canonical types (``system`` a list of text parts or
    ``None``, ``messages`` a list of messages...; an ``int`` ``temperature`` or ``top_p`` becomes a
    ``float``, as validation makes it). Lists and dicts given become the request's own."""
    values = {**_REQUEST_DEFAULTS, **fields}
    if "messages" not in fields:
        values["messages"] = []
    if "plugins" not in fields:
        values["plugins"] = []
    if "tags" not in fields:
        values["tags"] = []
    if "extra" not in fields:
        values["extra"] = {}
    if "headers" not in fields:
        values["headers"] = {}
    if type(values["temperature"]) is int:
        values["temperature"] = float(values["temperature"])
    if type(values["top_p"]) is int:
        values["top_p"] = float(values["top_p"])
    request = _new(ChatRequest)  # (_built, inlined)
    _set_dict(request, values)
    _set_fields_set(request, set(fields))
    _set_extra(request, None)
    _set_private(request, _REQUEST_PRIVATE.copy())
    return request  # type: ignore[no-any-return]


def checked_message(role: Role, content: list[Part], name: str | None = _UNSET,
                    extra: dict[str, Any] = _UNSET) -> Message:
    """``Message(role=..., content=..., ...)`` with these keywords (``name`` and ``extra`` count as
    set only when given), for a list of part models and a string name. ``content`` and ``extra``
    become the message's own."""
    if name is _UNSET:
        if extra is _UNSET:
            fields_set = {"role", "content"}
            extra = {}
        else:
            fields_set = {"role", "content", "extra"}
        name = None
    elif extra is _UNSET:
        fields_set = {"role", "content", "name"}
        extra = {}
    else:
        fields_set = {"role", "content", "name", "extra"}
    message = _new(Message)  # (_built, inlined: two parts and a message or more for every request)
    _set_dict(message, {"role": role, "content": content, "name": name, "extra": extra})
    _set_fields_set(message, fields_set)
    _set_extra(message, None)
    _set_private(message, None)
    return message  # type: ignore[no-any-return]


def checked_text(text: str, extra: dict[str, Any] = _UNSET) -> TextPart:
    """``TextPart(text=..., ...)`` for a string (``extra`` counts as set only when given, and becomes
    the part's own)."""
    part = _new(TextPart)  # (_built, inlined)
    if extra is _UNSET:
        _set_dict(part, {"type": "text", "text": text, "extra": {}})
        _set_fields_set(part, {"text"})
    else:
        _set_dict(part, {"type": "text", "text": text, "extra": extra})
        _set_fields_set(part, {"text", "extra"})
    _set_extra(part, None)
    _set_private(part, None)
    return part  # type: ignore[no-any-return]


def checked_response(id: str, model: str, content: list[Part], stop_reason: StopReason | None, usage: Usage,
                     stop_sequence: str | None = _UNSET, extra: dict[str, Any] = _UNSET) -> ChatResponse:
    """``ChatResponse(id=..., model=..., ...)`` with these keywords (``stop_sequence`` and ``extra``
    count as set only when given), for values of the declared types. ``content`` and ``extra``
    become the reply's own (not copied)."""
    fields_set = {"id", "model", "content", "stop_reason", "usage"}
    if stop_sequence is _UNSET:
        stop_sequence = None
    else:
        fields_set.add("stop_sequence")
    if extra is _UNSET:
        extra = {}
    else:
        fields_set.add("extra")
    values = {"id": id, "model": model, "content": content, "stop_reason": stop_reason,
              "stop_sequence": stop_sequence, "usage": usage, "extra": extra}
    response: ChatResponse = _built(ChatResponse, values, fields_set)
    return response


def checked_usage(input_tokens: int, output_tokens: int, cache_read_input_tokens: int | None = _UNSET,
                  cache_creation_input_tokens: int | None = _UNSET) -> Usage:
    """``Usage(...)`` with these keywords (the cache figures count as set only when given), for
    ``int`` counts (``None`` for an unknown cache figure)."""
    fields_set = {"input_tokens", "output_tokens"}
    if cache_read_input_tokens is _UNSET:
        cache_read_input_tokens = None
    else:
        fields_set.add("cache_read_input_tokens")
    if cache_creation_input_tokens is _UNSET:
        cache_creation_input_tokens = None
    else:
        fields_set.add("cache_creation_input_tokens")
    values = {"input_tokens": input_tokens, "output_tokens": output_tokens,
              "cache_read_input_tokens": cache_read_input_tokens,
              "cache_creation_input_tokens": cache_creation_input_tokens}
    usage: Usage = _built(Usage, values, fields_set)
    return usage
