"""Classifier ``keyword``: tags a request when any of a tag's keywords appears in its text.

Settings (``[classifiers.keyword]``):

``tags``
    A table mapping each tag to a list of keywords (a single string is one keyword). A tag is
    added when any of its keywords occurs, as a case-insensitive substring, in the system prompt,
    in any text part of any message (user or assistant) or in the text of a tool result. Image
    data, image URLs and tool-call arguments are never searched, and a keyword never matches across
    two parts. Empty keywords are ignored.

Tags are returned in the order of the ``tags`` table, whatever order they appear in the text, so
the same request always gets the same tags.

Example::

    [classifiers.keyword]
    enabled = true
    [classifiers.keyword.tags]
    code = ["function", "class ", "def ", "stack trace", "```"]
    vision = ["image", "picture", "photo"]
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from llmrouter.context import Context
from llmrouter.hookspecs import hookimpl
from llmrouter.jsonutil import dumps_str, loads

# Joins the texts of a request; no sensible keyword contains it, so matches stay within one part.
_SEPARATOR = "\x00"


@hookimpl
def classify(ctx: Context) -> list[str]:
    """Return the configured tags whose keywords occur in the request's text, in config order."""
    table = _compile(dumps_str(ctx.settings.get("tags") or {}))
    if not table:
        return []
    haystack = _SEPARATOR.join(ctx.request.iter_text()).casefold()
    return [tag for tag, keywords in table if any(k in haystack for k in keywords)]


@lru_cache(maxsize=64)
def _compile(tags_json: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Validate and case-fold the ``tags`` table (given as JSON so it can be a cache key)."""
    tags: Any = loads(tags_json)
    if not isinstance(tags, dict):
        raise ValueError("keyword classifier: 'tags' must be a table of tag = [keywords]")
    compiled = []
    for tag, keywords in tags.items():
        if isinstance(keywords, str):
            keywords = [keywords]
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise ValueError(f"keyword classifier: tags.{tag} must be a list of strings")
        folded = tuple(k.casefold() for k in keywords if k.strip())
        compiled.append((tag, folded))
    return tuple(compiled)
