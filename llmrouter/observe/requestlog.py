"""The request log: one JSON line per request, zstd-compressed with a long window, written off the
request's critical path.

The request handler only queues the ``complete`` entry (a dict); one background thread serialises
entries and appends them to this process's current segment (see :mod:`llmrouter.observe.logfiles`
for names and reading). Agents resend the whole conversation with every request, so consecutive
lines of a session repeat each other almost entirely; one zstd stream per segment whose window
(16 MB by default) spans many earlier requests stores each repeat as a back-reference, and the log
grows with the new content of each request instead of with its full size.

Each batch of complete lines is compressed, flushed to a zstd block boundary and written with a
single ``write``, so a reader decodes every batch written so far and a ``kill -9`` loses at most
the batch being written. Each process writes its own segments, so lines are never interleaved
with another worker's. A segment is sealed and a new one started when it reaches ``max_mb`` on
disk, and the oldest segments beyond ``keep`` are deleted.

Secrets never reach the file: values under credential-like keys (``authorization``, ``x-api-key``,
``api_key``...) are replaced, and so is every known secret value (provider keys, the inbound key)
wherever it appears, e.g. inside an upstream error message that echoes a key back.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import zstandard

from llmrouter.jsonutil import loads, one_line
from llmrouter.observe.logdelta import MARKER, DeltaIndex, delta_line
from llmrouter.observe.logfiles import MAX_WINDOW_LOG, prune, read_log, segment_name
from llmrouter.observe.logscan import (
    REDACTED,
    SECRET_KEYS,
    BodyScanner,
    Verdict,
    has_secret_key,
    line_may_hold_secret_key,
)

__all__ = ["REDACTED", "RawJSON", "RequestLog", "has_secret_key", "read_log", "redact_keys"]

log = logging.getLogger("llmrouter.observe.requestlog")

# zstd's "fast" strategy with a 256K-entry hash table and 7-byte minimum matches: for agent traffic
# the repeats are whole conversations, found as well as at level 3 (the log stays about 1% of the
# request bytes) for about 20% less CPU; 1 KB chats compress within 1% of level 3 (bench/log_size.py).
COMPRESSION = {"strategy": zstandard.STRATEGY_FAST, "hash_log": 18, "chain_log": 18, "min_match": 7,
               "search_log": 1, "target_length": 0}
# Entries and bytes per write: bound the writer's memory and what a kill -9 can lose.
MAX_BATCH = 256
MAX_BATCH_BYTES = 8 << 20
_JOIN_BYTES = 256 << 10  # a batch this small is joined before compressing (see _Segment.append)
_STOP = object()
SMALL_BODY = 8 << 10
"""Client bodies below this size are checked whole, not against remembered bodies."""
# Where a RawJSON value goes in a line serialised without it: orjson never writes a NUL byte.
_HOLE = b"\x00"
# Segments open in this process (several logs may share a path, e.g. in tests): pruning spares them.
_OPEN_SEGMENTS: set[Path] = set()
# A secret value is only replaced inside the serialised line when it cannot match JSON structure.
_SAFE_SECRET_RE = re.compile(r"[A-Za-z0-9_\-.:/+=]{8,}")


class RawJSON:
    """A JSON value to log verbatim as ``raw`` (its serialised bytes), with ``parsed`` the same value
    already parsed (e.g. a request body as the client sent it and as the router parsed it).

    The writer never copies ``raw`` into a line: it compresses the bytes as they are, between the
    pieces of the rest of the entry. It searches them for credential-like keys and secret values
    only where they differ from a body it already found clean (:class:`~llmrouter.observe.logscan.
    BodyScanner`), and walks the keys of ``parsed`` when that search cannot rule a key out.
    """

    __slots__ = ("parsed", "raw")

    def __init__(self, raw: bytes, parsed: Any) -> None:
        self.raw = raw
        self.parsed = parsed


def redact_keys(value: Any) -> Any:
    """A copy of ``value`` with the values of credential-like keys replaced by ``[redacted]``.

    Pre-serialised JSON (``bytes``, see :meth:`RequestLog.encode`) is parsed and redacted too.
    """
    if isinstance(value, RawJSON):
        return redact_keys(value.parsed)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and k.lower() in SECRET_KEYS else redact_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_keys(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_keys(loads(bytes(value)))
    return value


def _fragment(value: Any) -> Any:
    if isinstance(value, RawJSON | bytes | bytearray | memoryview):
        return orjson.Fragment(one_line(value.raw if isinstance(value, RawJSON) else bytes(value)))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_fragment, option=orjson.OPT_NON_STR_KEYS)


class _Line(NamedTuple):
    """A line to write as ``pieces`` (newline excluded). ``verdict`` is set only when the pieces are
    ``[head, a client body as sent, tail]``: the scanner's verdict on that body (for a delta line)."""

    pieces: list[bytes]
    verdict: Verdict | None = None


def window_log(window_mb: float) -> int:
    """zstd's ``window_log`` for a window of at least ``window_mb`` MB (between 1 MB and 128 MB)."""
    return max(20, min(MAX_WINDOW_LOG, math.ceil(math.log2(max(window_mb, 1) * (1 << 20)))))


class _Segment:
    """The file this process is writing and, when compressed, the zstd stream feeding it."""

    def __init__(self, path: Path, compress: bool, window_mb: float) -> None:
        self.path = path
        self.size = 0
        self.compressor: Any = None
        if compress:
            params = zstandard.ZstdCompressionParameters(
                **COMPRESSION, window_log=window_log(window_mb), write_checksum=True)
            self.compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        _OPEN_SEGMENTS.add(path)

    def append(self, pieces: list[bytes]) -> None:
        """Write the concatenated ``pieces`` so that a reader can decode all of it, in one ``write``.

        Chat-sized batches are joined and compressed in one call (each call has a fixed cost, and
        releases the GIL); bigger ones piece by piece, since joining agent-sized lines would copy them."""
        if self.compressor is not None:
            compress = self.compressor.compress
            if sum(map(len, pieces)) <= _JOIN_BYTES:
                data = compress(b"".join(pieces))
            else:
                data = b"".join([compress(piece) for piece in pieces])
            data += self.compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        else:
            data = b"".join(pieces)
        view = memoryview(data)
        while view:  # a regular file takes it in one write; loop only for the pathological case
            written = os.write(self.fd, view)
            view = view[written:]
        self.size += len(data)

    def seal(self) -> None:
        """End the zstd frame (checksum included) and close the file."""
        try:
            if self.compressor is not None:
                os.write(self.fd, self.compressor.flush())
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close the file (after a failed write: without touching it again)."""
        _OPEN_SEGMENTS.discard(self.path)
        try:
            os.close(self.fd)
        except OSError:
            pass


class RequestLog:
    """Appends ``complete`` entries as JSON lines to segments of ``path`` from a writer thread.

    :param secrets: values that must never appear in the file (provider keys, the inbound key).
        Values shorter than 8 characters or with JSON-significant characters cannot be matched
        safely inside a serialised line and are ignored; credential-like keys are redacted anyway.
    :param max_mb: a segment is sealed and a new one started once it holds this many MB on disk.
    :param keep: segments kept (this log's oldest beyond it are deleted); 0 keeps all.
    :param compress: zstd-compress segments (``False`` writes plain JSONL segments).
    :param window_mb: how far back (uncompressed) zstd looks for repeated content.
    """

    def __init__(self, path: str | Path, secrets: Iterable[str | None] = (), *, max_mb: float = 100.0,
                 keep: int = 10, compress: bool = True, window_mb: float = 16.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(1, int(max_mb * 1024 * 1024))
        self.keep = keep
        self.compress = compress
        self.window_mb = window_mb
        self._secrets = sorted({s.encode() for s in secrets if s and _SAFE_SECRET_RE.fullmatch(s)},
                               key=len, reverse=True)
        self._scanner = BodyScanner(self._secrets)
        self._delta = DeltaIndex()  # the lines of the current segment (reset whenever a segment ends)
        self._segment: _Segment | None = None
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        # Entries queued (counted by write(), without a lock) and written (by the writer thread, under
        # _idle): each counter has one thread adding to it, so neither needs a lock for itself.
        self._queued = 0
        self._written = 0
        self._closed = False
        self.segments_started = 0
        self._thread = threading.Thread(target=self._run, name="llmrouter-requestlog", daemon=True)
        self._thread.start()

    @property
    def segment(self) -> Path | None:
        """The segment being written, or None before the first entry (and after a rotation)."""
        segment = self._segment
        return segment.path if segment is not None else None

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one entry and return at once (entries written after :meth:`close` are ignored).

        Called from one thread (the server's event loop), which is what lets it count the entry
        without taking a lock."""
        if self._closed:
            log.warning("request log %s is closed; entry %s not written", self.path, entry.get("id"))
            return
        self._queued += 1
        self._queue.put(entry)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every entry queued so far is on disk (for tests and tools); False on timeout."""
        queued = self._queued
        with self._idle:
            return self._idle.wait_for(lambda: self._written >= queued, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, seal the segment and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread ----------------------------------------------------------------------

    def encode(self, entry: dict[str, Any]) -> bytes:
        """One entry as a complete, secret-free JSON line.

        A value given as ``bytes`` must be one valid serialised JSON value (it is not checked); it is
        written verbatim (no parse and re-serialise), e.g. a request body kept as the client sent it,
        except that line breaks (whitespace between JSON tokens) become spaces.
        """
        return b"".join(self._encode(entry).pieces) + b"\n"

    def _encode(self, entry: dict[str, Any]) -> _Line:
        """The line of ``entry`` as pieces to write one after the other (the bytes of its
        :class:`RawJSON` values are pieces of their own, never copied).

        :raises ValueError: for an entry whose first key is ``"$delta"`` (reserved for delta lines).
        """
        raws: list[RawJSON] = []

        def hole(value: Any) -> Any:
            if isinstance(value, RawJSON):
                raws.append(value)
                return orjson.Fragment(_HOLE)
            return _fragment(value)

        rest = orjson.dumps(entry, default=hole, option=orjson.OPT_NON_STR_KEYS)
        if rest.startswith(MARKER):
            raise ValueError('"$delta" is reserved for delta lines')
        single = len(raws) == 1  # (the usual entry: one client body, joined without a loop below)
        if raws and (len(raws[0].raw) if single else sum(len(value.raw) for value in raws)) < SMALL_BODY:
            # Chat-sized bodies: checking the line whole costs less than the scanner's bookkeeping.
            around = rest.split(_HOLE)
            if len(around) == len(raws) + 1:
                if single:
                    line = b"".join((around[0], one_line(raws[0].raw), around[1]))
                else:
                    pieces = [around[0]]
                    for value, after in zip(raws, around[1:], strict=True):
                        pieces += (one_line(value.raw), after)
                    line = b"".join(pieces)
                # A credential-like key in the entry or in a body is a key token in this line: one
                # search of it rules both out. Only a possible one needs the exact checks.
                if line_may_hold_secret_key(line) and (line_may_hold_secret_key(rest) or
                                                       any(has_secret_key(value.parsed) for value in raws)):
                    return _Line([self._redacted(entry)])
                return _Line([self._scrub(line)])
        if line_may_hold_secret_key(rest):
            return _Line([self._redacted(entry)])
        if not raws:
            return _Line([self._scrub(rest)])
        around = rest.split(_HOLE)
        if len(around) != len(raws) + 1:  # a bytes value held a NUL: not JSON, but keep the line whole
            return _Line([self._scrub(_dumps(entry))])
        pieces = [self._scrub(around[0])]
        verdict = None
        for value, after in zip(raws, around[1:], strict=True):
            verdict = self._scanner.check(value.raw, value.parsed)
            if verdict.key:
                return _Line([self._redacted(entry)])
            raw = self._scrub(value.raw) if verdict.secret else value.raw
            pieces += (one_line(raw) if verdict.breaks else raw, self._scrub(after))
        if self._secrets and self._secret_at_seams(pieces):
            return _Line([self._scrub(b"".join(pieces))])
        if len(raws) != 1 or verdict is None or verdict.secret or verdict.breaks:
            return _Line(pieces)
        return _Line(pieces, verdict)  # [head, the body as sent, tail]

    def _compact(self, line: _Line) -> list[bytes]:
        """What to write for ``line``: its pieces, or one delta line (see
        :mod:`llmrouter.observe.logdelta`) when its body repeats a body a few lines back."""
        pieces, verdict = line
        if not self.compress:
            return pieces
        length = sum(map(len, pieces))
        if verdict is None:
            self._delta.add_line(length)
            return pieces
        head, body, tail = pieces
        ref = verdict.ref
        place = self._delta.find(ref) if ref is not None else None
        out = pieces
        if ref is not None and place is not None and (verdict.prefix + verdict.suffix) * 2 >= len(body):
            delta = delta_line(head, body, tail, *place, len(ref), verdict.prefix, verdict.suffix)
            if delta is not None:
                out = [self._scrub(delta)]
        self._delta.add_line(length, body, len(head))
        return out

    def _redacted(self, entry: dict[str, Any]) -> bytes:
        return self._scrub(_dumps(redact_keys(entry)))

    def _scrub(self, data: bytes) -> bytes:
        """``data`` with every known secret value replaced."""
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, REDACTED.encode())
        return data

    def _secret_at_seams(self, pieces: list[bytes]) -> bool:
        """Whether a secret spans two consecutive pieces (each was scrubbed on its own)."""
        reach = len(self._secrets[0]) - 1
        for left, right in zip(pieces, pieces[1:], strict=False):
            seam = left[-reach:] + right[:reach]
            if any(secret in seam for secret in self._secrets):
                return True
        return False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [e for e in batch if e is not _STOP]
            stopping = len(entries) != len(batch)
            del batch
            pieces: list[bytes] = []  # lines in pieces and their line breaks, never joined before compressing
            size = count = 0
            for entry in entries:
                try:
                    line = self._compact(self._encode(entry))
                except (TypeError, ValueError) as exc:
                    log.error("request log entry %s not serialisable: %s", entry.get("id"), exc)
                    continue
                line.append(b"\n")
                pieces += line
                size += sum(map(len, line))
                count += 1
                if size >= MAX_BATCH_BYTES:  # agent-sized entries: write in bounded pieces
                    self._append(pieces, count)
                    pieces, size, count = [], 0, 0
            if pieces:
                self._append(pieces, count)
            with self._idle:
                self._written += len(entries)
                self._idle.notify_all()
            del entries
        self._seal()

    def _append(self, pieces: list[bytes], count: int) -> None:
        try:
            segment = self._segment or self._start()
        except Exception as exc:  # noqa: BLE001 (the writer thread must survive anything)
            log.error("cannot open a request log segment for %s: %s", self.path, exc)
            self._delta.reset()  # the lines it knows of were never written
            return
        try:
            segment.append(pieces)
        except Exception as exc:  # noqa: BLE001 (the writer thread must survive anything)
            # The stream state no longer matches the file: start afresh in a new segment.
            log.error("cannot write request log %s: %s", segment.path, exc)
            segment.abandon()
            self._segment = None
            self._delta.reset()  # (the lines of this batch are lost with the segment)
            return
        if segment.size >= self.max_bytes:
            self._seal()

    def _start(self) -> _Segment:
        for _ in range(100):
            # Names sort by start time: never reuse or go below the previous one (clock steps back).
            now = max(datetime.now(UTC), self._last_stamp + timedelta(microseconds=1))
            self._last_stamp = now
            try:
                self._segment = _Segment(segment_name(self.path, now, os.getpid(), self.compress),
                                         self.compress, self.window_mb)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free segment name next to {self.path}")
        self.segments_started += 1
        self._prune()
        return self._segment

    def _seal(self) -> None:
        segment, self._segment = self._segment, None
        self._delta.reset()  # (delta lines never refer to another segment)
        if segment is None:
            return
        try:
            segment.seal()
        except OSError as exc:
            log.error("cannot seal request log segment %s: %s", segment.path, exc)

    def _prune(self) -> None:
        try:
            for path in prune(self.path, self.keep, _OPEN_SEGMENTS):
                log.info("request log: deleted old segment %s", path)
        except OSError as exc:
            log.warning("request log: cannot delete old segments of %s: %s", self.path, exc)
