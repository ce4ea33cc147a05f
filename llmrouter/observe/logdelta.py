"""Delta lines: a request body that repeats one logged a few lines earlier is stored as what changed.

An agent resends its whole conversation with every request, so a body is, byte for byte, mostly
the previous body of its session. The writer's :class:`~llmrouter.observe.logscan.BodyScanner`
already finds that earlier body and the prefix and suffix the two share. When the earlier body
lies in the same segment, at most :data:`WINDOW_LINES` lines and :data:`WINDOW_BYTES` decoded bytes
back, the line is written as a *delta line*: the entry as usual, except that its ``request`` is a
JSON string holding only the bytes between the shared prefix and suffix, and a first member
``"$delta"`` says where the rest is::

    {"$delta":[back,at,length,prefix,suffix,head,middle],"type":"complete",...,"request":"<middle>",...}

- ``back``: how many lines before this one the earlier line is (1: the line just before);
- ``at``, ``length``: where the earlier body lies in that line (its decoded form), in bytes;
- ``prefix``, ``suffix``: how many bytes of it begin and end this body;
- ``head``: the length in bytes of this line's decoded form up to the body (``...,"request":``);
- ``middle``: the length in bytes of the ``"<middle>"`` string as written.

The decoded line is ``head + earlier[:prefix] + middle + earlier[length - suffix:] + tail``: the
same bytes as the full line the writer would otherwise have written. Cuts fall on UTF-8 character
boundaries, so the middle is text. A delta line is still one JSON object (``jq .id`` works on it);
:func:`~llmrouter.observe.logfiles.read_lines` and everything built on it (``read_log``, ``replay``,
``llmrouter log cat``, the test kit) give back decoded lines only.

Why: the zstd stream would store the repeat as a back-reference anyway (the log's size barely
changes), but compressing a 260 KB body costs the writer thread ~0.1 ms per request even when all of
it is a repeat; a delta line costs a few microseconds. References never cross segments, so every
segment stays readable on its own, deleting old segments never breaks a kept one, and a ``kill -9``
(which truncates a segment after its last complete batch) cannot orphan a reference. Reader and
writer apply the same window rule (``_Window.usable``), so a reader keeps every line a later
delta line may name and no more.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import orjson

__all__ = ["MARKER", "WINDOW_BYTES", "WINDOW_LINES", "DeltaIndex", "Expander", "delta_line"]

MARKER = b'{"$delta":['
"""How a delta line begins (``"$delta"`` is reserved: an entry's own first key can never be it)."""
WINDOW_LINES = 256
"""A delta line names an earlier line at most this many lines back..."""
WINDOW_BYTES = 16 << 20
"""... with at most this many decoded bytes from the start of that line to this one."""


class _Window:
    """The lines of one segment so far: how many, how many decoded bytes, and which earlier lines a
    line written now may still name."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def usable(self, ordinal: int, start: int) -> bool:
        """Whether the line numbered ``ordinal`` (0-based), which began after ``start`` decoded bytes,
        may be named by the next line."""
        return self.count - ordinal <= WINDOW_LINES and self.total - start <= WINDOW_BYTES

    def advance(self, length: int) -> None:
        self.count += 1
        self.total += length


class _Place(NamedTuple):
    body: bytes  # held, so that its id() cannot be reused while the place is kept
    ordinal: int
    start: int
    at: int


class DeltaIndex:
    """The writer's side: where in the current segment each recent request body was written."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next line starts a new segment."""
        self._window = _Window()
        self._places: dict[int, _Place] = {}
        self._order: deque[_Place] = deque()

    def find(self, body: bytes) -> tuple[int, int] | None:
        """``(back, at)`` of ``body`` if the next line may name the line holding it, else ``None``."""
        place = self._places.get(id(body))
        if place is None or place.body is not body or not self._window.usable(place.ordinal, place.start):
            return None
        return self._window.count - place.ordinal, place.at

    def add_line(self, length: int, body: bytes | None = None, at: int = 0) -> None:
        """Count a line of ``length`` decoded bytes (newline excluded), holding ``body`` at byte ``at``."""
        window = self._window
        if body is not None:
            place = _Place(body, window.count, window.total, at)
            self._places[id(body)] = place
            self._order.append(place)
        window.advance(length)
        order, places = self._order, self._places
        while order and not window.usable(order[0].ordinal, order[0].start):
            old = order.popleft()
            if places.get(id(old.body)) is old:
                del places[id(old.body)]


def _char_start(data: bytes, index: int, step: int) -> int:
    """The nearest UTF-8 character boundary from ``index`` moving by ``step`` (-1 or +1)."""
    while 0 < index < len(data) and 0x80 <= data[index] < 0xC0:  # a continuation byte
        index += step
    return index


def delta_line(head: bytes, body: bytes, tail: bytes, back: int, at: int, ref_length: int, prefix: int,
               suffix: int) -> bytes | None:
    """The delta line for the decoded line ``head + body + tail`` whose ``body`` shares ``prefix``
    and ``suffix`` bytes with the body of ``ref_length`` bytes at ``at`` in the line ``back`` lines
    earlier, or ``None`` when ``body`` is not UTF-8 text at the cuts (the full line is written)."""
    n = len(body)
    start = _char_start(body, prefix, -1)
    end = _char_start(body, n - suffix, +1)
    try:
        middle = orjson.dumps(body[start:end].decode())
    except UnicodeDecodeError:
        return None
    header = orjson.dumps([back, at, ref_length, start, n - end, len(head), len(middle)])
    return b'{"$delta":' + header + b"," + head[1:] + middle + tail


class Expander:
    """The reader's side, one per segment: decodes its lines in order (see the module notes)."""

    def __init__(self) -> None:
        self._window = _Window()
        self._lines: deque[tuple[int, int, bytes]] = deque()  # (ordinal, start, decoded line)

    def expand(self, line: bytes) -> bytes | None:
        """The decoded form of the next ``line`` (itself unless it is a delta line), or ``None`` for a
        delta line that names a line this segment does not have or does not fit it."""
        decoded = self._decode(line) if line.startswith(MARKER) else line
        window, lines = self._window, self._lines
        lines.append((window.count, window.total, decoded if decoded is not None else b""))
        window.advance(len(decoded) if decoded is not None else 0)
        while lines and not window.usable(lines[0][0], lines[0][1]):
            lines.popleft()
        return decoded

    def _decode(self, line: bytes) -> bytes | None:
        close = line.find(b"]", len(MARKER))
        try:
            back, at, length, prefix, suffix, head, middle = orjson.loads(line[len(MARKER) - 1:close + 1])
        except (ValueError, TypeError):
            return None
        if not 1 <= back <= len(self._lines) or min(at, length, prefix, suffix, head, middle) < 0:
            return None
        ordinal, _, earlier = self._lines[-back]
        if ordinal != self._window.count - back or at + length > len(earlier) or prefix + suffix > length:
            return None
        rest = b"{" + line[close + 2:]
        try:
            text = orjson.loads(rest[head:head + middle])
        except ValueError:
            return None
        if not isinstance(text, str):
            return None
        ref = memoryview(earlier)[at:at + length]
        return b"".join((rest[:head], ref[:prefix], text.encode(), ref[length - suffix:], rest[head + middle:]))
