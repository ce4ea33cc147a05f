"""Client-controlled text (model names, prompts, replies, upstream errors) made safe for one
terminal line: the access log, ``watch`` and ``replay`` print it, and a newline in it would forge a
line while an escape sequence would reach the operator's terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every character that is not printable (line breaks, tabs, ESC and the other
    C0/C1 controls, Unicode line separators) replaced by ``?``."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "?" for ch in text)
