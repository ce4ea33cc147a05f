"""The JSONL request log: one line per request, written off the request's critical path.

Entries are queued by the request handler and written by one background thread, each as a single
``write`` of a complete line, so lines are never torn or interleaved. The file is flushed after
every batch and on close.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from llmrouter.jsonutil import dumps

log = logging.getLogger("llmrouter.requestlog")
_STOP = object()


class RequestLog:
    """Appends ``complete`` entries to ``path`` as JSON lines from a writer thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._file = self.path.open("ab")
        self._thread = threading.Thread(target=self._run, name="llmrouter-requestlog", daemon=True)
        self._idle = threading.Condition()
        self._pending = 0
        self.written = 0
        self._thread.start()

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one entry; returns at once."""
        with self._idle:
            self._pending += 1
        self._queue.put(entry)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued entry is on disk (for tests and replay); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, flush and close the file."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = False
            lines = []
            for entry in batch:
                if entry is _STOP:
                    stop = True
                    continue
                try:
                    lines.append(dumps(entry) + b"\n")
                except TypeError as exc:
                    log.error("request log entry %s not serialisable: %s", entry.get("id"), exc)
            if lines:
                try:
                    self._file.write(b"".join(lines))
                    self._file.flush()
                    self.written += len(lines)
                except OSError as exc:
                    log.error("cannot write request log %s: %s", self.path, exc)
            with self._idle:
                self._pending -= len(batch) - (1 if stop else 0)
                self._idle.notify_all()
            if stop:
                return
