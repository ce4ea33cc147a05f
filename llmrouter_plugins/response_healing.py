"""Plugin ``response-healing``: repairs malformed JSON in replies, never prose or valid JSON.

Models asked for JSON often wrap it in a Markdown code fence, add a sentence before or after it,
leave a trailing comma, or stop mid-string when they run out of tokens. This plugin finds such
replies in ``post_response`` and replaces each affected text part with the repaired JSON in compact
form, using the ``json-repair`` library. It records itself as having modified the reply.

A text part is touched only when all of these hold:

1. it is not already valid JSON;
2. JSON was evidently intended, which means either

   * the request asked for JSON (``response_format`` of type ``json_object`` or
     ``json_schema``): the payload is the first JSON-like fenced block, else the first JSON
     object (or, if there is none, array) in the text; prose around it is dropped; or
   * without such a request, the whole reply is a JSON attempt: after trimming whitespace it is
     one fenced block (labelled ``json`` or unlabelled) whose body starts like JSON, or it starts
     like a JSON object or array and nothing but whitespace follows where that structure closes
     (or the structure never closes, as in a truncated reply);

3. the repair yields a JSON object or array.

"Starts like JSON" means ``{`` followed by a quote or ``}``, or ``[`` followed by a value (a
quote, ``{``, ``[``, a digit, ``-``, ``true``, ``false``, ``null``) or ``]``. So ``[1] see
footnote``, ``{maybe}`` or an explanation containing an example JSON block are left alone unless
the client asked for JSON.

Tool calls whose arguments were not valid JSON (kept as raw text) are repaired too, when the
repair gives a JSON object.

Streams: when the request asked for JSON (``response_format`` ``json_object``/``json_schema``),
the plugin's ``stream_transformer`` holds the text of each text block and releases it, repaired
as above, in one delta when the block ends (the client sees the JSON arrive at once, not token by
token). Other streams are left alone at no cost. Tool-call arguments on streams are not repaired.
``post_response`` does nothing for a reply the client already has (``ctx.delivered``).

Settings (``[plugins.response-healing]``):

``repair_tool_arguments`` (default ``true``)
    Also repair malformed tool-call arguments.
``max_chars`` (default ``200000``)
    Text parts longer than this are left alone (the repair is pure Python).

Example::

    [plugins.response-healing]
    enabled = true
    repair_tool_arguments = true
"""

from __future__ import annotations

import re
from typing import Any

import json_repair
import orjson
from pydantic import Field, StrictBool

from llmrouter.context import Context
from llmrouter.hookspecs import hookimpl
from llmrouter.jsonutil import dumps_str
from llmrouter.models import TextPart, ToolUsePart
from llmrouter.settings import PluginSettings
from llmrouter_plugins._healing_stream import HealingTransformer

DEFAULT_MAX_CHARS = 200_000


class Settings(PluginSettings):
    """``[plugins.response-healing]``."""

    repair_tool_arguments: StrictBool = True
    max_chars: int = Field(default=DEFAULT_MAX_CHARS, ge=0)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_FENCE_LABELS = frozenset({"", "json", "json5", "jsonc"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})
_WORD_VALUES = ("true", "false", "null")


@hookimpl
def post_response(ctx: Context) -> None:
    """Repair malformed JSON text parts (and tool arguments) of ``ctx.response`` in place."""
    response = ctx.response
    if response is None or ctx.delivered:
        return
    settings: Settings = ctx.settings
    max_chars = settings.max_chars
    fix_tools = settings.repair_tool_arguments
    fmt = ctx.request.response_format
    json_requested = fmt is not None and fmt.type in _JSON_FORMATS
    changed = False
    for part in response.content:
        if isinstance(part, TextPart) and len(part.text) <= max_chars:
            healed = heal_text(part.text, json_requested=json_requested)
            if healed is not None:
                part.text = healed
                changed = True
        elif fix_tools and isinstance(part, ToolUsePart) and part.input is None and part.raw_arguments:
            if len(part.raw_arguments) <= max_chars:
                repaired = _repair(part.raw_arguments)
                if isinstance(repaired, dict):
                    part.input, part.raw_arguments = repaired, None
                    changed = True
    if changed:
        ctx.mark_modified()


@hookimpl
def stream_transformer(ctx: Context) -> HealingTransformer | None:
    """Hold and repair the streamed text when JSON was requested; ``None`` (no cost) otherwise."""
    fmt = ctx.request.response_format
    if fmt is None or fmt.type not in _JSON_FORMATS:
        return None
    max_chars = ctx.settings.max_chars
    return HealingTransformer(ctx, lambda text: heal_text(text, json_requested=True), max_chars)


def heal_text(text: str, *, json_requested: bool = False) -> str | None:
    """Return the repaired compact JSON for ``text``, or ``None`` when it must be left as it is."""
    if not json_requested and _MAY_BE_ATTEMPT.match(text) is None:
        return None  # prose: not a fence, object or array after the leading whitespace (the usual reply)
    if not text.strip() or _is_valid_json(text):
        return None
    payload = _find_payload(text, json_requested)
    if payload is None:
        return None
    repaired = _repair(payload)
    if not isinstance(repaired, dict | list):
        return None
    try:
        healed = dumps_str(repaired)
    except orjson.JSONEncodeError:
        return None
    return healed if healed != text else None


def _find_payload(text: str, json_requested: bool) -> str | None:
    """The part of ``text`` that was meant to be JSON, following the rules in the module docstring."""
    for fence in _FENCE.finditer(text):
        body = fence.group(2)
        if fence.group(1).lower() not in _FENCE_LABELS:
            continue
        start = _skip_space(body, 0)
        if not _starts_like_json(body, start):
            continue
        whole = not text[: fence.start()].strip() and not text[fence.end():].strip()
        return body if json_requested or whole else None
    if json_requested:
        start = _first_opener(text, "{")
        if start is None:
            start = _first_opener(text, "[")
        if start is None:
            return None
        return text[start:_structure_end(text, start)]
    start = _skip_space(text, 0)
    if not _starts_like_json(text, start):
        return None
    end = _structure_end(text, start)
    return text[start:end] if not text[end:].strip() else None


def _first_opener(text: str, opener: str) -> int | None:
    """Index of the first ``opener`` in ``text`` that starts like JSON."""
    index = text.find(opener)
    while index != -1:
        if _starts_like_json(text, index):
            return index
        index = text.find(opener, index + 1)
    return None


def _starts_like_json(text: str, index: int) -> bool:
    """Whether an object or array that looks like JSON begins at ``text[index]``."""
    if index >= len(text) or text[index] not in "{[":
        return False
    after = _skip_space(text, index + 1)
    if after >= len(text):
        return True  # cut off right after the opening bracket
    char = text[after]
    if text[index] == "{":
        return char in "\"'}"
    return char in "\"'{[]-" or char.isdigit() or text.startswith(_WORD_VALUES, after)


def _structure_end(text: str, start: int) -> int:
    """Index just past the bracket closing the structure opened at ``start`` (``len`` if unclosed)."""
    depth = 0
    in_string = escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _skip_space(text: str, index: int) -> int:
    """The first index at or after ``index`` that is not whitespace."""
    while index < len(text) and text[index].isspace():
        index += 1
    return index


_MAY_BE_ATTEMPT = re.compile(r"\s*[`{\[]")
r"""How a reply that is a JSON attempt as a whole begins (``\s`` is what ``str.strip`` removes): a
fenced block, an object or an array. Without a request for JSON nothing else is ever repaired."""

_MAY_BE_JSON = re.compile(r'[ \t\n\r]*[-{\["0-9tfn]')
"""How a JSON text can begin (after JSON's own whitespace): anything else, such as prose, is not
JSON, which this tells without a failed parse (an exception costs more than the whole test)."""


def _is_valid_json(text: str) -> bool:
    """Whether ``text`` parses as JSON as it is."""
    if _MAY_BE_JSON.match(text) is None:
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _repair(payload: str) -> Any:
    """Parse ``payload`` with ``json-repair``; ``None`` when it cannot make anything of it."""
    try:
        return json_repair.repair_json(payload, return_objects=True)
    except Exception:  # the library's failure modes are not part of its contract
        return None
