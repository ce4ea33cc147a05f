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
from typing import Any

import orjson
import zstandard

from llmrouter.jsonutil import loads
from llmrouter.observe.logfiles import MAX_WINDOW_LOG, prune, read_log, segment_name

__all__ = ["REDACTED", "RawJSON", "RequestLog", "read_log", "redact_keys"]

log = logging.getLogger("llmrouter.observe.requestlog")

REDACTED = "[redacted]"
COMPRESSION_LEVEL = 3
# Entries and bytes per write: bound the writer's memory and what a kill -9 can lose.
MAX_BATCH = 256
MAX_BATCH_BYTES = 8 << 20
_STOP = object()
_SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "api_key", "apikey",
                          "x-goog-api-key"})
_SECRET_KEY_RE = re.compile(rb'"(?:proxy-)?(?:authorization|x-api-key|api[-_]?key|x-goog-api-key)"\s*:', re.I)
# A letter, "_" or "-" written as a \u escape: JSON encoders never write one, but a key spelled so
# hides from the byte-level test, so a bytes value holding one is checked through a parse.
_ESCAPED_NAME_RE = re.compile(rb'\\u00(?:[4-7][0-9a-fA-F]|2[dD])')
# Whether a key is credential-like, by key: bodies repeat the same few keys ("role", "content",
# "type"...), and a dict lookup is cheaper than lower-casing each. Bounded: keys come from clients.
_KEY_VERDICTS: dict[Any, bool] = {}
_MAX_KEY_VERDICTS = 4096
# Segments open in this process (several logs may share a path, e.g. in tests): pruning spares them.
_OPEN_SEGMENTS: set[Path] = set()
# A secret value is only replaced inside the serialised line when it cannot match JSON structure.
_SAFE_SECRET_RE = re.compile(r"[A-Za-z0-9_\-.:/+=]{8,}")


class RawJSON:
    """A JSON value to log verbatim as ``raw`` (its serialised bytes), with ``parsed`` the same value
    already parsed (e.g. a request body as the client sent it and as the router parsed it).

    The writer looks for credential-like keys in ``parsed`` (walking its keys costs about a third
    of a case-insensitive search through the bytes of an agent-sized body, and sees keys however
    they were escaped) and for known secret values in the bytes, as everywhere else in the line.
    """

    __slots__ = ("parsed", "raw")

    def __init__(self, raw: bytes, parsed: Any) -> None:
        self.raw = raw
        self.parsed = parsed


def has_secret_key(value: Any) -> bool:
    """Whether a credential-like key occurs anywhere in the parsed JSON ``value``."""
    if isinstance(value, dict):
        verdicts = _KEY_VERDICTS
        for key, item in value.items():
            secret = verdicts.get(key)
            if secret is None:
                secret = isinstance(key, str) and key.lower() in _SECRET_KEYS
                if len(verdicts) < _MAX_KEY_VERDICTS:
                    verdicts[key] = secret
            if secret or (isinstance(item, dict | list) and has_secret_key(item)):
                return True
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and has_secret_key(item):
                return True
    return False


def redact_keys(value: Any) -> Any:
    """A copy of ``value`` with the values of credential-like keys replaced by ``[redacted]``.

    Pre-serialised JSON (``bytes``, see :meth:`RequestLog.encode`) is parsed and redacted too.
    """
    if isinstance(value, RawJSON):
        return redact_keys(value.parsed)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and k.lower() in _SECRET_KEYS else redact_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_keys(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_keys(loads(bytes(value)))
    return value


def _may_hold_secret_key(entry: dict[str, Any], line: bytes) -> bool:
    """Whether ``entry`` (serialised as ``line``) may hold a credential-like key (no false negatives).

    :class:`RawJSON` values are checked on their parsed form and the rest on a serialisation
    without them, so an agent-sized body is never lower-cased or searched byte by byte for keys.
    """
    raws = [key for key, value in entry.items() if isinstance(value, RawJSON)]
    if raws:
        if any(has_secret_key(entry[key].parsed) for key in raws):
            return True
        line = _dumps({key: value for key, value in entry.items() if key not in raws})
    lowered = line.lower()
    # Cheap substring tests first: the regex costs ~10 us per line and almost never matches.
    if (b'authorization"' in lowered or b'key"' in lowered) and _SECRET_KEY_RE.search(line):
        return True
    return b"\\u00" in line and _ESCAPED_NAME_RE.search(line) is not None


def _fragment(value: Any) -> Any:
    if isinstance(value, RawJSON | bytes | bytearray | memoryview):
        data = value.raw if isinstance(value, RawJSON) else bytes(value)
        # A line break in valid JSON is whitespace between tokens (inside strings it is escaped):
        # a space keeps the value and keeps it on one line.
        if b"\n" in data or b"\r" in data:
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        return orjson.Fragment(data)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_fragment, option=orjson.OPT_NON_STR_KEYS)


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
                compression_level=COMPRESSION_LEVEL, window_log=window_log(window_mb), write_checksum=True)
            self.compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        _OPEN_SEGMENTS.add(path)

    def append(self, pieces: list[bytes]) -> None:
        """Write the concatenated ``pieces`` so that a reader can decode all of it, in one ``write``.

        The pieces are compressed one by one: joining agent-sized lines first would copy them."""
        if self.compressor is not None:
            compress = self.compressor.compress
            data = b"".join([compress(piece) for piece in pieces]) + \
                self.compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
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
        self._segment: _Segment | None = None
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
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
        """Queue one entry and return at once (entries written after :meth:`close` are ignored)."""
        if self._closed:
            log.warning("request log %s is closed; entry %s not written", self.path, entry.get("id"))
            return
        with self._idle:
            self._pending += 1
        self._queue.put(entry)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued entry is on disk (for tests and tools); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

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
        return self._encode(entry) + b"\n"

    def _encode(self, entry: dict[str, Any]) -> bytes:
        line = _dumps(entry)
        if _may_hold_secret_key(entry, line):
            line = _dumps(redact_keys(entry))
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED.encode())
        return line

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
            pieces: list[bytes] = []  # lines and their line breaks, never joined before compressing
            size = 0
            for entry in entries:
                try:
                    line = self._encode(entry)
                except (TypeError, ValueError) as exc:
                    log.error("request log entry %s not serialisable: %s", entry.get("id"), exc)
                    continue
                pieces += (line, b"\n")
                size += len(line) + 1
                if size >= MAX_BATCH_BYTES:  # agent-sized entries: write in bounded pieces
                    self._append(pieces, len(pieces) // 2)
                    pieces, size = [], 0
            if pieces:
                self._append(pieces, len(pieces) // 2)
            with self._idle:
                self._pending -= len(entries)
                self._idle.notify_all()
        self._seal()

    def _append(self, pieces: list[bytes], count: int) -> None:
        try:
            segment = self._segment or self._start()
        except Exception as exc:  # noqa: BLE001 (the writer thread must survive anything)
            log.error("cannot open a request log segment for %s: %s", self.path, exc)
            return
        try:
            segment.append(pieces)
        except Exception as exc:  # noqa: BLE001 (the writer thread must survive anything)
            # The stream state no longer matches the file: start afresh in a new segment.
            log.error("cannot write request log %s: %s", segment.path, exc)
            segment.abandon()
            self._segment = None
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
