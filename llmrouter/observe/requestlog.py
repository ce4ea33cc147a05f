"""The JSONL request log: one line per request, written off the request's critical path.

The request handler only queues the ``complete`` entry (a dict); one background thread serialises
entries and appends them. Every batch of complete lines goes to the file in a single ``write`` on a
descriptor opened with ``O_APPEND``, so lines are never torn or interleaved, even when several
worker processes share the file. Writes are unbuffered: a line is visible to readers as soon as the
batch holding it is written, and :meth:`RequestLog.close` drains the queue on shutdown.

Secrets never reach the file: values under credential-like keys (``authorization``, ``x-api-key``,
``api_key``...) are replaced, and so is every known secret value (provider keys, the inbound key)
wherever it appears, e.g. inside an upstream error message that echoes a key back.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llmrouter.jsonutil import dumps

log = logging.getLogger("llmrouter.observe.requestlog")

REDACTED = "[redacted]"
_STOP = object()
_SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "api_key", "apikey",
                          "x-goog-api-key"})
_SECRET_KEY_RE = re.compile(rb'"(?:proxy-)?(?:authorization|x-api-key|api[-_]?key|x-goog-api-key)"\s*:', re.I)
# A secret value is only replaced inside the serialised line when it cannot match JSON structure.
_SAFE_SECRET_RE = re.compile(r"[A-Za-z0-9_\-.:/+=]{8,}")


def redact_keys(value: Any) -> Any:
    """A copy of ``value`` with the values of credential-like keys replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and k.lower() in _SECRET_KEYS else redact_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_keys(v) for v in value]
    return value


class RequestLog:
    """Appends ``complete`` entries to ``path`` as JSON lines from a writer thread.

    :param secrets: values that must never appear in the file (provider keys, the inbound key).
        Values shorter than 8 characters or with JSON-significant characters cannot be matched
        safely inside a serialised line and are ignored; credential-like keys are redacted anyway.
    """

    def __init__(self, path: str | Path, secrets: Iterable[str | None] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._secrets = sorted({s.encode() for s in secrets if s and _SAFE_SECRET_RE.fullmatch(s)},
                               key=len, reverse=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="llmrouter-requestlog", daemon=True)
        self._thread.start()

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
        """Write everything queued, then close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        try:
            os.close(self._fd)
        except OSError:
            pass

    # -- the writer thread ----------------------------------------------------------------------

    def encode(self, entry: dict[str, Any]) -> bytes:
        """One entry as a complete, secret-free JSON line."""
        line = dumps(entry)
        lowered = line.lower()
        # Cheap substring test first: the regex costs ~10 us per line and almost never matches.
        if (b'authorization"' in lowered or b'key"' in lowered) and _SECRET_KEY_RE.search(line):
            line = dumps(redact_keys(entry))
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED.encode())
        return line + b"\n"

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [e for e in batch if e is not _STOP]
            lines = []
            for entry in entries:
                try:
                    lines.append(self.encode(entry))
                except TypeError as exc:
                    log.error("request log entry %s not serialisable: %s", entry.get("id"), exc)
            if lines:
                self._append(b"".join(lines), len(lines))
            with self._idle:
                self._pending -= len(entries)
                self._idle.notify_all()
            if len(entries) != len(batch):
                return

    def _append(self, data: bytes, count: int) -> None:
        view = memoryview(data)
        try:
            while view:  # a regular file takes it in one write; loop only for the pathological case
                written = os.write(self._fd, view)
                view = view[written:]
            self.written += count
        except OSError as exc:
            log.error("cannot write request log %s: %s", self.path, exc)
