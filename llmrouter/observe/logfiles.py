"""The request log's files on disk: segment names, listing, pruning, and the one reader.

A log configured at ``logs/requests.jsonl`` is a series of segments next to that path, one
writer process each, named so that sorting by name sorts by the time they were started::

    logs/requests-20261201T101500.123456Z-4242.jsonl.zst   (zstd-compressed JSON lines)
    logs/requests-20261201T101500.123456Z-4242.jsonl       (with [logging] compress = false)

:func:`read_log` is the only way the project reads a log back (``replay``, ``llmrouter log``,
the tests): it takes the configured path, a single file, or a directory, and yields every entry
in full, oldest segment first. A plain ``requests.jsonl`` written by an older version at the
configured path is read first. A segment whose writer was killed ends at the last complete
batch: what was written before is read, the unfinished tail is dropped.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

from llmrouter.jsonutil import loads
from llmrouter.models import ChatRequest
from llmrouter.observe.logdelta import Expander

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LINES_SUFFIX = ".jsonl"
ZSTD_SUFFIX = ".zst"
# The largest window a reader accepts: zstd's own default limit, so the zstd CLI reads every segment.
MAX_WINDOW_LOG = 27
_READ_CHUNK = 1 << 20
log = logging.getLogger("llmrouter.observe.logfiles")
_UNRESOLVED = "a delta line naming an earlier line the segment does not hold (skipped)"
_SEGMENT_RE = re.compile(r"-(\d{8}T\d{6}\.\d{6}Z)-(\d+)\.jsonl(\.zst)?$")


@dataclass(frozen=True, order=True)
class Segment:
    """One segment file: when it was started, by which process, and where it is."""

    stamp: str
    pid: int
    path: Path

    @property
    def compressed(self) -> bool:
        """Whether the segment is zstd-compressed."""
        return self.path.name.endswith(ZSTD_SUFFIX)


def stem_of(path: Path) -> str:
    """The name segments of the log at ``path`` start with (``requests`` for ``requests.jsonl``)."""
    name = path.name
    return name[: -len(LINES_SUFFIX)] if name.endswith(LINES_SUFFIX) and len(name) > len(LINES_SUFFIX) else name


def segment_name(path: Path, when: datetime, pid: int, compress: bool) -> Path:
    """The path of a new segment of the log at ``path``, started at ``when`` by process ``pid``."""
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    suffix = LINES_SUFFIX + (ZSTD_SUFFIX if compress else "")
    return path.with_name(f"{stem_of(path)}-{stamp}-{pid}{suffix}")


def parse_segment(path: Path, stem: str | None = None) -> Segment | None:
    """The :class:`Segment` a file name describes, or None if it is not a segment (of ``stem``)."""
    match = _SEGMENT_RE.search(path.name)
    if match is None or (stem is not None and path.name[: match.start()] != stem):
        return None
    return Segment(match.group(1), int(match.group(2)), path)


def segments(path: str | Path) -> list[Segment]:
    """Every segment of the log configured at ``path``, oldest first."""
    base = Path(path)
    try:
        names = list(base.parent.iterdir())
    except OSError:
        return []
    stem = stem_of(base)
    found = [seg for p in names if (seg := parse_segment(p, stem)) is not None and p.is_file()]
    return sorted(found)


def log_files(path: str | Path) -> list[Path]:
    """The files :func:`read_log` reads for ``path``, in order.

    ``path`` may be the configured log path (its segments, after a plain file of that name if one
    exists), one segment or JSONL file, or a directory (every ``*.jsonl`` and ``*.jsonl.zst`` in it,
    files that are not segments first, then segments oldest first).

    :raises FileNotFoundError: when ``path`` names nothing to read.
    """
    base = Path(path)
    if base.is_dir():
        files = [p for p in base.iterdir() if p.is_file() and p.name.endswith((LINES_SUFFIX, LINES_SUFFIX + ZSTD_SUFFIX))]
        parsed = [(p, parse_segment(p)) for p in files]
        plain = sorted(p for p, seg in parsed if seg is None)
        return plain + [seg.path for seg in sorted(seg for _, seg in parsed if seg is not None)]
    own = [seg.path for seg in segments(base)]
    if base.is_file():
        return [base, *own] if own or parse_segment(base) is None else [base]
    if not own:
        raise FileNotFoundError(2, "no such log file or segments", str(base))
    return own


def disk_usage(path: str | Path) -> int:
    """Bytes on disk of every file the log at ``path`` keeps."""
    total = 0
    for file in log_files(path):
        try:
            total += file.stat().st_size
        except OSError:
            pass
    return total


def prune(path: str | Path, keep: int, protected: Collection[Path] = ()) -> list[Path]:
    """Delete the oldest segments of the log at ``path`` so that at most ``keep`` remain.

    ``protected`` segments (those this process has open) and the newest segment of every other
    running process are never deleted, even if that leaves more than ``keep``. Returns what was
    deleted.
    """
    if keep <= 0:
        return []
    found = segments(path)
    newest: dict[int, Segment] = {}
    for seg in found:
        newest[seg.pid] = seg
    spared = set(protected) | {seg.path for pid, seg in newest.items() if pid != os.getpid() and _alive(pid)}
    removable = [seg.path for seg in found if seg.path not in spared]
    deleted = []
    for file in removable[: max(0, len(found) - keep)]:
        try:
            file.unlink()
            deleted.append(file)
        except FileNotFoundError:
            pass
    return deleted


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- reading ----------------------------------------------------------------------------------------


def _chunks(file: Path, problems: list[str] | None) -> Iterator[bytes]:
    """The decoded bytes of one file, in pieces; a compressed file ends at its last complete block."""
    with open(file, "rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head != ZSTD_MAGIC:
            while chunk := raw.read(_READ_CHUNK):
                yield chunk
            return
        # A decompressobj, not a stream_reader: the reader holds back the last flushed block of a
        # frame that was never ended (a live segment, or one whose writer was killed).
        dctx = zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG)
        dobj = dctx.decompressobj()
        try:
            while data := raw.read(_READ_CHUNK):
                while data:
                    if out := dobj.decompress(data):
                        yield out
                    data = b""
                    if dobj.eof:  # a frame ended (a sealed segment): the next one follows
                        data, dobj = dobj.unused_data, dctx.decompressobj()
        except zstandard.ZstdError as exc:
            if problems is not None:
                problems.append(f"{file.name}: unreadable after this point ({exc})")


def read_lines(path: str | Path, problems: list[str] | None = None) -> Iterator[tuple[Path, int, bytes]]:
    """``(file, line number, line)`` for every complete line of the log at ``path``, oldest first.

    Lines come without their newline; blank lines are skipped. An unfinished last line (the writer
    was killed mid-write, or is writing it right now) is dropped, with a note in ``problems``.

    :raises FileNotFoundError: when ``path`` names nothing to read.
    """
    for file in log_files(path):
        number = 0
        rest = b""
        expander = Expander()
        try:
            for chunk in _chunks(file, problems):
                lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
                rest = lines.pop()
                for line in lines:
                    number += 1
                    if line.strip():
                        decoded = expander.expand(line)
                        if decoded is not None:
                            yield file, number, decoded
                        elif problems is not None:
                            problems.append(f"{file.name} line {number}: {_UNRESOLVED}")
        except FileNotFoundError:  # pruned between listing and reading
            continue
        if rest.strip() and problems is not None:
            problems.append(f"{file.name} line {number + 1}: incomplete last line dropped "
                            "(the writer stopped mid-write or is still writing)")


def read_log(path: str | Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every entry of the request log at ``path``, in full, oldest segment first.

    Lines that are not JSON objects are skipped; when ``problems`` is given, a note naming the file
    and line is appended to it for each (and for a dropped unfinished line).

    :raises FileNotFoundError: when ``path`` names nothing to read.
    """
    for file, number, line in read_lines(path, problems):
        try:
            entry = loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            yield entry
        elif problems is not None:
            problems.append(f"{file.name} line {number}: " + ("not valid JSON" if entry is None else "not a JSON object"))


def logged_request(entry: dict[str, Any]) -> ChatRequest:
    """The canonical request of a log entry or ``complete`` event.

    ``request`` holds the client's own JSON when ``request_format`` names its wire format (every
    chat endpoint), else the canonical request (a Responses request continuing a stored one,
    older logs).

    :raises ValueError: when the logged request is not a valid request of its format.
    """
    from llmrouter.errors import RouterError
    from llmrouter.formats import CLIENT_FORMATS

    body = entry.get("request")
    fmt = CLIENT_FORMATS.get(entry.get("request_format") or "")
    if fmt is None:
        return ChatRequest.model_validate(body)
    try:
        return fmt.parse_request(body, {})
    except RouterError as exc:
        raise ValueError(exc.message) from None


def log_text(path: str | Path) -> str:
    """The whole decoded log at ``path`` as JSONL text (for tests and small logs)."""
    return "".join(line.decode("utf-8", "replace") + "\n" for _, _, line in read_lines(path))


class _Tail:
    """Follows one file as it grows: the lines appended since the last :meth:`poll`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 (kept open across polls)
        self.decoder: Any = None
        self.sniffed = False
        self.rest = b""
        self.done = False
        self.expander = Expander()

    def poll(self) -> list[bytes]:
        data = self.file.read()
        if not self.sniffed:
            if len(data) < len(ZSTD_MAGIC):  # too early to tell plain from compressed
                self.file.seek(0)
                return []
            self.sniffed = True
            if data.startswith(ZSTD_MAGIC):
                self.decoder = zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG).decompressobj()
        if not data:
            return []
        if self.decoder is not None:
            decoded = self.decoder.decompress(data)
            if self.decoder.eof:  # sealed: nothing more will be appended
                self.done = True
                self.close()
            data = decoded
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        out = []
        for line in lines:
            if line.strip():
                full = self.expander.expand(line)
                if full is None:
                    log.warning("%s: a line skipped: %s", self.path.name, _UNRESOLVED)
                else:
                    out.append(full)
        return out

    def close(self) -> None:
        self.file.close()


def follow_lines(path: str | Path, stop: Callable[[], bool], poll_s: float = 0.5) -> Iterator[bytes]:
    """Every line of the log at ``path``, then each new one as writers append it, until ``stop()``.

    New segments (a rotation, another worker, a restart) are picked up as they appear. Lines of
    segments written at the same time come in the order they are read, not strictly by time.
    """
    tails: dict[Path, _Tail] = {}
    try:
        while True:
            try:
                files = log_files(path)
            except FileNotFoundError:
                files = []
            for file in files:
                if file not in tails:
                    try:
                        tails[file] = _Tail(file)
                    except FileNotFoundError:
                        continue
            for tail in tails.values():
                if not tail.done:
                    yield from tail.poll()
            if stop():
                return
            time.sleep(poll_s)
    finally:
        for tail in tails.values():
            tail.close()
