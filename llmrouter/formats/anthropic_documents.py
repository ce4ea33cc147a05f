"""Plain text standing in for Anthropic document and search-result blocks at providers of other
formats (the request parser's ``OpaquePart.fallback_text``, and the text a classifier reads)."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["fallback_text"]


def fallback_text(block: dict[str, Any]) -> str | None:
    """Plain text standing in for a document or search result at providers of other formats:
    header lines (title; a search result's source), a blank line, then the text. ``None`` for
    blocks without a textual form (PDFs, images, server-tool blocks...)."""
    kind = block.get("type")
    if kind == "document":
        body = _document_text(block.get("source"))
        headers = [block.get("title")]
    elif kind == "search_result":
        body = _joined_text(block.get("content"))
        headers = [block.get("title"), block.get("source")]
    else:
        return None
    if body is None:
        return None
    header = "\n".join(h for h in headers if isinstance(h, str) and h)
    return f"{header}\n\n{body}" if header else body


def _document_text(source: Any) -> str | None:
    if not isinstance(source, dict):
        return None
    kind, data = source.get("type"), source.get("data")
    if kind == "text" and isinstance(data, str):
        return data
    if kind == "content":
        return _joined_text(source.get("content"))
    media_type = source.get("media_type")
    if kind == "base64" and isinstance(data, str) and isinstance(media_type, str) \
            and media_type.split(";")[0].strip() == "text/plain":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
        except ValueError:
            return None
    return None


def _joined_text(content: Any) -> str | None:
    """The text of a string or of a list of text blocks (non-text blocks skipped)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"
             and isinstance(b.get("text"), str)]
    return "\n".join(texts) if texts else None
