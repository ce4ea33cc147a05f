"""The request log on disk: size against an agent session, fidelity, rotation, kill -9, readers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import zstandard

from llmrouter.formats.openai import parse_chat_request
from llmrouter.jsonutil import dumps, loads
from llmrouter.observe.logfiles import ZSTD_MAGIC, disk_usage, log_files, logged_request, read_lines, segments
from llmrouter.observe.requestlog import REDACTED, RequestLog, read_log

ECHO = {"providers": [{"name": "echo", "format": "echo"}], "routers": [{"type": "fallback", "providers": ["echo"]}]}
ROOT = Path(__file__).resolve().parent.parent


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


agent_session = _bench_module("agent_session").agent_session


def frame_complete(path: Path) -> bool:
    """Whether a zstd file holds one finished frame (a sealed segment) rather than an open stream."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    dobj.decompress(path.read_bytes())
    return dobj.eof


async def test_an_80_turn_agent_session_logs_under_10_percent_of_what_was_sent(router: Any) -> None:
    client = await router(ECHO)
    bodies = [dumps(body) for body in agent_session(80)]
    for body in bodies:
        resp = await client.client.post("/v1/chat/completions", data=body,
                                        headers={"content-type": "application/json"})
        assert resp.status == 200
        await resp.read()
    rlog = client.pipeline.request_log
    assert rlog.wait_idle(30)
    sent = sum(len(body) for body in bodies)
    on_disk = disk_usage(rlog.path)
    assert sent > 10_000_000  # the session really is agent-sized: ~12 MB over 80 requests
    print(f"\n80-turn session: sent {sent:,} bytes, log on disk {on_disk:,} bytes ({on_disk / sent:.2%})")
    assert on_disk <= 0.10 * sent
    # Full fidelity: every request comes back exactly as the router understood it.
    problems: list[str] = []
    entries = list(read_log(rlog.path, problems))
    assert problems == [] and len(entries) == 80
    for body, entry in zip(bodies, entries, strict=True):
        assert logged_request(entry) == parse_chat_request(loads(body))
        assert entry["status"] == 200 and entry["response"]["content"]


def test_rotation_seals_segments_and_keeps_only_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(path, max_mb=0.05, keep=3)  # ~52 KB per segment
    for i in range(60):
        rlog.write({"id": i, "noise": os.urandom(4000).hex()})  # ~4 KB a line once compressed
        assert rlog.wait_idle(5)  # one entry per batch, so rotation happens between them
    segs = segments(path)
    assert len(segs) == 3 and rlog.segments_started >= 4
    assert all(seg.path.stat().st_size < 0.05 * 1024 * 1024 + 10_000 for seg in segs)
    assert [frame_complete(seg.path) for seg in segs[:-1]] == [True, True]  # rotated away: sealed
    ids = [entry["id"] for entry in read_log(path)]
    assert ids == list(range(60 - len(ids), 60)) and len(ids) >= 10  # the newest, contiguous, in order
    rlog.close()
    assert all(frame_complete(seg.path) for seg in segments(path))
    assert [entry["id"] for entry in read_log(path)] == ids


def test_keep_zero_keeps_every_segment(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "r.jsonl", max_mb=0.01, keep=0)
    for i in range(12):
        rlog.write({"id": i, "noise": os.urandom(12_000).hex()})  # ~12 KB compressed: a segment each
        assert rlog.wait_idle(5)
    rlog.close()
    assert len(segments(tmp_path / "r.jsonl")) == 12
    assert [e["id"] for e in read_log(tmp_path / "r.jsonl")] == list(range(12))


def test_pruning_spares_the_open_segment_of_another_running_writer(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    other = RequestLog(path)  # started first, so its segment is the oldest
    other.write({"id": "other"})
    assert other.wait_idle(5)
    # A second writer with its own pid: a real process, so pruning sees it as alive.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = path.with_name(f"requests-20000101T000000.000000Z-{child.pid}.jsonl.zst")
        alive.write_bytes(b"")
        dead = path.with_name("requests-20000101T000000.000001Z-999999999.jsonl.zst")
        dead.write_bytes(b"")
        rlog = RequestLog(path, max_mb=0.01, keep=1)
        for i in range(5):
            rlog.write({"id": i, "noise": os.urandom(8000).hex()})
            assert rlog.wait_idle(5)
        names = {seg.path for seg in segments(path)}
        assert alive in names and other.segment in names and not dead.exists()
        rlog.close()
    finally:
        child.kill()
        child.wait(10)
        other.close()


WRITER = textwrap.dedent("""
    import os, sys
    from llmrouter.observe.requestlog import RequestLog
    rlog = RequestLog(sys.argv[1], max_mb=float(sys.argv[2]))
    padding = "agent conversation " * 400
    i = 0
    while True:
        for _ in range(7):
            rlog.write({"id": i, "text": padding + str(i), "noise": os.urandom(64).hex()})
            i += 1
        if i % 70 == 0:
            if not rlog.wait_idle(60):  # a busy machine: never confirm what is not on disk yet
                sys.exit(3)
            print(i, flush=True)  # everything up to i is on disk
""")


@pytest.mark.parametrize("max_mb", [100.0, 0.02])
def test_kill_9_loses_at_most_the_last_batch_and_every_segment_stays_readable(tmp_path: Path,
                                                                             max_mb: float) -> None:
    path = tmp_path / "requests.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(max_mb)], stdout=subprocess.PIPE,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    confirmed = 0
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while confirmed < 2000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the writer died"
            confirmed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)  # in the middle of writing more
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL and confirmed >= 2000
    problems: list[str] = []
    ids = [entry["id"] for entry in read_log(path, problems)]
    assert ids == list(range(len(ids))) and len(ids) >= confirmed  # nothing confirmed is lost, no gaps
    assert all("incomplete last line" in note for note in problems)  # at most the torn tail
    assert len(segments(path)) >= (2 if max_mb < 1 else 1)
    # A restarted writer starts a segment of its own; old and new read back together.
    rlog = RequestLog(path, max_mb=max_mb)
    rlog.write({"id": "after restart"})
    rlog.close()
    after = [entry["id"] for entry in read_log(path)]
    assert after[:-1] == ids and after[-1] == "after restart"


def test_uncompressed_segments_are_plain_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(path, compress=False)
    rlog.write({"id": "a"})
    rlog.write({"id": "b"})
    rlog.close()
    (seg,) = segments(path)
    assert seg.path.name.endswith(".jsonl") and not seg.compressed
    assert [loads(line) for line in seg.path.read_bytes().splitlines()] == [{"id": "a"}, {"id": "b"}]
    assert [e["id"] for e in read_log(path)] == ["a", "b"]


def test_read_log_takes_the_configured_path_one_segment_or_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "requests.jsonl"
    for name in ("one", "two"):
        rlog = RequestLog(path)
        rlog.write({"id": name})
        rlog.close()
    (tmp_path / "logs" / "notes.txt").write_text("not a log")
    first, second = segments(path)
    assert first.path.read_bytes().startswith(ZSTD_MAGIC)
    assert [e["id"] for e in read_log(path)] == ["one", "two"]
    assert [e["id"] for e in read_log(second.path)] == ["two"]
    assert [e["id"] for e in read_log(tmp_path / "logs")] == ["one", "two"]
    assert log_files(tmp_path / "logs") == [first.path, second.path]
    with pytest.raises(FileNotFoundError):
        list(read_log(tmp_path / "nothing.jsonl"))


def test_bad_lines_are_skipped_with_a_note_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_bytes(b'{"id":1}\n{torn\n[1]\n\n{"id":2}\n{"id":3')
    problems: list[str] = []
    assert [e["id"] for e in read_log(path, problems)] == [1, 2]
    assert problems == ["old.jsonl line 2: not valid JSON", "old.jsonl line 3: not a JSON object",
                        "old.jsonl line 6: incomplete last line dropped (the writer stopped mid-write or is "
                        "still writing)"]


def test_corrupt_segment_reports_and_the_next_one_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    for name in ("one", "two"):
        rlog = RequestLog(path)
        rlog.write({"id": name, "pad": "x" * 1000})
        rlog.close()
    first, _ = segments(path)
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    problems: list[str] = []
    assert [e["id"] for e in read_log(path, problems)] == ["two"]
    assert problems and first.path.name in problems[0]


def test_pre_serialised_values_are_written_verbatim_and_still_redacted(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "r.jsonl", secrets=["sk-provider-secret-123"])
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],  "extra":  1}'
    assert rlog.encode({"id": 1, "request": raw}) == b'{"id":1,"request":' + raw + b"}\n"
    secret = b'{"api_key":"body-secret-789","note":"sk-provider-secret-123"}'
    assert loads(rlog.encode({"id": 2, "request": secret})) == {"id": 2, "request": {"api_key": REDACTED,
                                                                                    "note": REDACTED}}
    rlog.close()


@pytest.mark.skipif(shutil.which("zstdcat") is None, reason="the zstd command line tool is not installed")
def test_the_zstd_cli_reads_segments_including_one_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(path)
    for i in range(50):
        rlog.write({"id": i})
    assert rlog.wait_idle(5)
    (seg,) = segments(path)
    live = subprocess.run(["zstdcat", str(seg.path)], capture_output=True, timeout=30)
    assert [loads(line)["id"] for line in live.stdout.splitlines()] == list(range(50))
    rlog.close()
    sealed = subprocess.run(["zstdcat", str(seg.path)], capture_output=True, timeout=30)
    assert sealed.returncode == 0 and sealed.stdout == b"".join(line + b"\n" for _, _, line in read_lines(path))


def test_a_failed_write_abandons_the_segment_and_the_next_entry_starts_a_new_one(tmp_path: Path,
                                                                                 monkeypatch: Any) -> None:
    from llmrouter.observe import requestlog

    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(path)
    for i in range(2):
        rlog.write({"id": i, "text": "conversation so far " * 100})
        assert rlog.wait_idle(5)
    real_append = requestlog._Segment.append

    def disk_full(self: Any, pieces: list[bytes]) -> None:
        """Half the compressed batch reaches the file, then the disk is full."""
        out = self.compressor.compress(b"".join(pieces)) + self.compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        os.write(self.fd, out[: len(out) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(requestlog._Segment, "append", disk_full)
    rlog.write({"id": 2, "text": "lost " * 1000})
    assert rlog.wait_idle(5)
    monkeypatch.setattr(requestlog._Segment, "append", real_append)
    for i in range(3, 5):
        rlog.write({"id": i, "text": "conversation so far " * 100})
        assert rlog.wait_idle(5)
    rlog.close()
    problems: list[str] = []
    assert [e["id"] for e in read_log(path, problems)] == [0, 1, 3, 4]
    assert len(segments(path)) == 2 and all("incomplete" in note for note in problems)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(config: Path, port: int) -> asyncio.subprocess.Process:
    """``llmrouter serve CONFIG`` in a subprocess, once it answers ``/health``."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmrouter.cli", "serve", str(config),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                proc.kill()
                _, err = await proc.communicate()
                raise AssertionError(f"router did not start: {err.decode()}")
            await asyncio.sleep(0.05)


async def _logged_ids(path: Path, count: int) -> list[str]:
    """The ids in the log once it holds ``count`` entries (the writer is asynchronous)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            ids = [entry["id"] for entry in read_log(path)]
        except FileNotFoundError:
            ids = []
        if len(ids) >= count or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.05)


async def test_a_served_router_killed_with_sigkill_keeps_every_logged_request(tmp_path: Path) -> None:
    port = _free_port()
    path = tmp_path / "logs" / "requests.jsonl"
    config = tmp_path / "router.toml"
    config.write_text(f'[server]\nport = {port}\n[logging]\npath = "{path.as_posix()}"\n'
                      '[[providers]]\nname = "echo"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n')
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    bodies = [dumps(body) for body in agent_session(40)]
    proc = await _serve(config, port)
    try:
        async with aiohttp.ClientSession(headers={"content-type": "application/json"}) as session:
            answered = []
            for body in bodies[:20]:
                async with session.post(url, data=body) as resp:
                    assert resp.status == 200
                    answered.append(resp.headers["X-Router-Request-Id"])
            assert await _logged_ids(path, 20) == answered
            # More requests in flight, then SIGKILL in the middle of them.
            in_flight = [asyncio.ensure_future(session.post(url, data=body)) for body in bodies[20:]]
            await asyncio.sleep(0.1)
            proc.kill()
            await proc.wait()
            for task in in_flight:
                with contextlib.suppress(aiohttp.ClientError):
                    (await task).release()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    problems: list[str] = []
    entries = list(read_log(path, problems))
    assert [e["id"] for e in entries[:20]] == answered
    assert all(note.endswith("(the writer stopped mid-write or is still writing)") for note in problems)
    sent = {len(request.messages): request for request in map(parse_chat_request, map(loads, bodies))}
    assert len(sent) == len(bodies)
    for entry in entries:  # whatever else made it is complete and equal to what was sent
        logged = logged_request(entry)
        assert logged == sent[len(logged.messages)]
    # Restarted on the same log: a new segment, read together with the old one.
    proc = await _serve(config, port)
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=bodies[0]) as resp:
            assert resp.status == 200
            new_id = resp.headers["X-Router-Request-Id"]
        ids = await _logged_ids(path, len(entries) + 1)
        assert ids == [e["id"] for e in entries] + [new_id]
        assert len(segments(path)) == 2
    finally:
        proc.terminate()
        await proc.wait()
