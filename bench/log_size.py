"""How big the request log gets for agent sessions, per storage design.

Feeds the ``complete`` entries of generated agent sessions (``agent_session.py``: each request
resends the whole conversation) to the real :class:`~llmrouter.observe.requestlog.RequestLog` and
compares what it keeps on disk with the request bytes the client sent, next to two alternatives:
the old plain JSONL log, and content-addressed storage (each message, the system prompt and the
tool list stored once by hash, the log line referencing them) without compression.

``python bench/log_size.py [--turns 80] [--sessions 8]`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_session import agent_session  # noqa: E402

from llmrouter.formats.openai import parse_chat_request  # noqa: E402
from llmrouter.observe.logfiles import disk_usage, read_log  # noqa: E402
from llmrouter.observe.requestlog import RawJSON, RequestLog  # noqa: E402

SECRETS = ["sk-bench-provider-key-0123456789", "rk-bench-inbound-key-abcdef"]
"""Stand-ins for a provider key and the inbound key: the writer searches every line for them."""


def entries(turns: int, sessions: int, raw: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Log entries of ``sessions`` sessions interleaved turn by turn, and the request bytes sent.

    With ``raw`` the request is the client's bytes (:class:`RawJSON`), as the router logs
    ``/v1/chat/completions`` requests; else the canonical request, as for ``/v1/responses``."""
    runs = [list(agent_session(turns, seed=10 + s)) for s in range(sessions)]
    out, sent = [], 0
    for turn in zip(*runs, strict=True):
        for body in turn:
            data = orjson.dumps(body)
            sent += len(data)
            if raw:
                request: Any = RawJSON(data, orjson.loads(data))
            else:
                request = parse_chat_request(body).model_dump(mode="json", exclude={"headers"})
            reply = {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"}
            out.append({"type": "complete", "id": uuid.uuid4().hex, "ts_ms": 0, "status": 200,
                        "request": request, "response": reply})
    return out, sent


def writer_size(items: list[dict[str, Any]], **options: Any) -> tuple[int, float]:
    """Bytes the real writer keeps on disk, and its writer thread's CPU time per entry in ms
    (serialise, scan, compress, write)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl"
        rlog = RequestLog(path, **options)
        clock = time.pthread_getcpuclockid(rlog._thread.ident)  # type: ignore[arg-type]
        start = time.clock_gettime(clock)
        for item in items:
            rlog.write(item)
        assert rlog.wait_idle(timeout=300)
        cpu = time.clock_gettime(clock) - start
        rlog.close(timeout=300)
        assert sum(1 for _ in read_log(path)) == len(items)
        return disk_usage(path), cpu * 1000 / len(items)


def content_addressed_size(items: list[dict[str, Any]]) -> int:
    """Bytes of a log storing each message, system prompt and tool list once by hash (uncompressed)."""
    seen: set[str] = set()
    size = 0

    def store(value: Any) -> str:
        nonlocal size
        data = orjson.dumps(value)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if digest not in seen:
            seen.add(digest)
            size += len(data) + len(digest) + 12  # a blob line: {"h": ..., "v": ...}
        return digest

    for item in items:
        request = dict(item["request"])
        request["messages"] = [store(m) for m in request["messages"]]
        request["system"] = store(request.get("system"))
        request["tools"] = store(request.get("tools"))
        size += len(orjson.dumps({**item, "request": request})) + 1
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=80)
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    print("| workload | design | on disk | % of request bytes sent | writer ms/entry |")
    print("|---|---|---:|---:|---:|")
    for sessions in (1, args.sessions):
        items, sent = entries(args.turns, sessions)
        label = f"{sessions} x {args.turns}-turn session{'s' if sessions > 1 else ''}, {sent / 1e6:.1f} MB sent"
        plain = sum(len(orjson.dumps(item)) + 1 for item in items)
        rows = [("plain JSONL (before)", plain, None), ("content-addressed, uncompressed", content_addressed_size(items),
                                                         None)]
        for window in (1, 16, 64):
            size, ms = writer_size(items, window_mb=window)
            rows.append((f"zstd stream, {window} MB window{' (default)' if window == 16 else ''}", size, ms))
        size, ms = writer_size(items, compress=False)
        rows[0] = ("plain JSONL (before)", plain, ms)
        raw_items, _ = entries(args.turns, sessions, raw=True)
        size, ms = writer_size(raw_items, secrets=SECRETS)
        rows.append(("zstd stream, 16 MB window, client bytes + 2 secrets (as served)", size, ms))
        for name, size, ms in rows:
            timing = f"{ms:.2f}" if ms is not None else "-"
            print(f"| {label} | {name} | {size:,} | {size / sent:.2%} | {timing} |")


if __name__ == "__main__":
    main()
