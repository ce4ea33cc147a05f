"""Delta lines in the request log: a repeated request body is written as what changed and always
read back as the full line the writer would otherwise have written (see llmrouter.observe.logdelta)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrouter.jsonutil import loads
from llmrouter.observe import logdelta, requestlog
from llmrouter.observe.logdelta import MARKER
from llmrouter.observe.logfiles import follow_lines, read_lines, segments
from llmrouter.observe.requestlog import REDACTED, RawJSON, RequestLog, read_log

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("_bench_agent_session", ROOT / "bench" / "agent_session.py")
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
agent_session = _module.agent_session


def entry(i: int, raw: bytes, **extra: Any) -> dict[str, Any]:
    """A ``complete``-like entry holding ``raw`` as the client's body (as the router logs it)."""
    return {"type": "complete", "id": i, "request": RawJSON(raw, loads(raw)), "response": {"text": "ok é"},
            **extra}


def full_lines(entries: list[dict[str, Any]], secrets: tuple[str, ...] = ()) -> list[bytes]:
    """The full lines (newline excluded) of ``entries``, as :meth:`RequestLog.encode` gives them."""
    with tempfile.TemporaryDirectory() as folder:
        reference = RequestLog(Path(folder) / "reference.jsonl", secrets=secrets)
        try:
            return [reference.encode(e)[:-1] for e in entries]
        finally:
            reference.close()


def stored_lines(path: Path) -> list[bytes]:
    """Every line of every segment as stored (delta lines not decoded)."""
    lines: list[bytes] = []
    for seg in segments(path):
        data = seg.path.read_bytes()
        if data.startswith(b"\x28\xb5\x2f\xfd"):
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        lines += [line for line in data.split(b"\n") if line]
    return lines


def write_all(rlog: RequestLog, entries: list[dict[str, Any]], every: int = 1) -> None:
    for n, e in enumerate(entries, 1):
        rlog.write(e)
        if n % every == 0:
            assert rlog.wait_idle(30)
    rlog.close()


def decoded(path: Path) -> list[bytes]:
    problems: list[str] = []
    lines = [line for _, _, line in read_lines(path, problems)]
    assert problems == []
    return lines


def test_an_agent_session_is_stored_as_delta_lines_and_read_back_byte_for_byte(tmp_path: Path) -> None:
    bodies = [orjson.dumps(body) for body in agent_session(30)]
    entries = [entry(i, raw) for i, raw in enumerate(bodies)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries)
    stored = stored_lines(path)
    deltas = [line for line in stored if line.startswith(MARKER)]
    assert len(deltas) == 29  # every request after the first repeats the one before it
    assert sum(map(len, stored)) * 10 < sum(map(len, bodies))  # what zstd is given: the new content
    assert decoded(path) == full_lines(entries)
    for line in deltas:  # still one JSON object with the entry's own fields, for jq and friends
        value = loads(line)
        assert value["type"] == "complete" and isinstance(value["request"], str) and len(value["$delta"]) == 7
    assert [e["request"] for e in read_log(path)] == [loads(raw) for raw in bodies]


def test_interleaved_sessions_and_rotation_never_reference_another_segment(tmp_path: Path) -> None:
    sessions = [[orjson.dumps(body) for body in agent_session(12, seed=seed)] for seed in range(4)]
    entries = [entry(turn * 4 + s, sessions[s][turn]) for turn in range(12) for s in range(4)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path, max_mb=0.05, keep=0), entries, every=8)
    assert len(segments(path)) >= 4
    assert sum(line.startswith(MARKER) for line in stored_lines(path)) >= 20
    assert decoded(path) == full_lines(entries)
    for seg in segments(path):  # each segment alone decodes in full
        problems: list[str] = []
        assert list(read_lines(seg.path, problems)) and problems == []


@pytest.mark.parametrize(("lines", "megabytes", "expect_deltas"), [(3, 16, False), (4, 16, True), (256, 0.1, False), (256, 1, True)])
def test_references_reach_no_further_back_than_the_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          lines: int, megabytes: float, expect_deltas: bool) -> None:
    monkeypatch.setattr(logdelta, "WINDOW_LINES", lines)
    monkeypatch.setattr(logdelta, "WINDOW_BYTES", int(megabytes * (1 << 20)))
    sessions = [[orjson.dumps(body) for body in agent_session(6, seed=seed)] for seed in range(4)]
    entries = [entry(turn * 4 + s, sessions[s][turn]) for turn in range(6) for s in range(4)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries, every=5)
    assert any(line.startswith(MARKER) for line in stored_lines(path)) is expect_deltas
    assert decoded(path) == full_lines(entries)


def test_cuts_fall_on_character_boundaries(tmp_path: Path) -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "é" * 6000 + "x" * 3000}]}
    bodies = [orjson.dumps(base)]
    for replacement in ("è", "😀", "a", "é", ""):  # differs from "é" (C3 A9) in its second byte, or more
        text = "é" * 3000 + replacement + "é" * 2999 + "x" * 3000
        bodies.append(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}))
    entries = [entry(i, raw) for i, raw in enumerate(bodies)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries)
    assert sum(line.startswith(MARKER) for line in stored_lines(path)) == len(bodies) - 1
    assert decoded(path) == full_lines(entries)


def test_bodies_with_secrets_keys_or_line_breaks_are_written_whole(tmp_path: Path) -> None:
    secret = "sk-provider-secret-123"
    base = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "words " * 3000}]})
    with_secret = base.replace(b"words words", f"words {secret}".encode(), 1)
    with_key = base[:-1] + b',"api_key":"body-secret-789"}'
    with_break = base[:-1] + b',\n"n":1}'
    entries = [entry(i, raw) for i, raw in enumerate([base, with_secret, base, with_key, base, with_break])]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path, secrets=[secret]), entries)
    stored = stored_lines(path)
    assert [line.startswith(MARKER) for line in stored] == [False, False, True, False, True, False]
    lines = decoded(path)
    assert lines == full_lines(entries, secrets=(secret,))
    assert secret.encode() not in b"".join(stored) and loads(lines[3])["request"]["api_key"] == REDACTED
    assert b'"n":1}' in lines[5] and b"\n" not in lines[5]


def test_lines_after_a_failed_write_never_refer_to_the_lost_batch(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [entry(i, orjson.dumps(body)) for i, body in enumerate(agent_session(6))]
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(path)
    real_append = requestlog._Segment.append

    def disk_full(self: Any, pieces: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    for n, e in enumerate(entries):
        monkeypatch.setattr(requestlog._Segment, "append", disk_full if n == 3 else real_append)
        rlog.write(e)
        assert rlog.wait_idle(30)
    rlog.close()
    assert len(segments(path)) == 2
    assert sum(line.startswith(MARKER) for line in stored_lines(path)) == 3  # lines 1, 2 and 5
    expected = full_lines(entries)
    assert decoded(path) == expected[:3] + expected[4:]


def test_plain_segments_never_hold_delta_lines(tmp_path: Path) -> None:
    entries = [entry(i, orjson.dumps(body)) for i, body in enumerate(agent_session(5))]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path, compress=False), entries)
    assert not any(line.startswith(MARKER) for line in stored_lines(path))
    assert decoded(path) == full_lines(entries)


def test_the_reserved_first_key_is_refused_and_the_writer_goes_on(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), [{"$delta": [1, 2, 3], "id": "forged"}, {"id": "next"}])
    assert [e["id"] for e in read_log(path)] == ["next"]
    assert "reserved" in caplog.text


def test_a_delta_line_naming_a_missing_line_is_skipped_with_a_note(tmp_path: Path) -> None:
    bodies = [orjson.dumps(body) for body in agent_session(4)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path, compress=False), [entry(i, raw) for i, raw in enumerate(bodies)])
    good = path.parent.joinpath(next(p.name for p in path.parent.iterdir()))
    lines = good.read_bytes().split(b"\n")
    forged = [
        MARKER + b'9,0,10,1,1,10,2],"id":"too far","request":""}',  # names a line the segment lacks
        MARKER + b'1,0,999999999,1,1,10,2],"id":"too long","request":""}',  # beyond the earlier line
        MARKER + b'"x"],"id":"garbled"}',
    ]
    good.write_bytes(b"\n".join([lines[0], *forged, *lines[1:]]))
    problems: list[str] = []
    ids = [e["id"] for e in read_log(path, problems)]
    assert ids == [0, 1, 2, 3]
    assert len(problems) == 3 and all("delta line" in note for note in problems)


def test_a_truncated_segment_gives_back_a_prefix_of_its_lines_never_a_wrong_one(tmp_path: Path) -> None:
    bodies = [orjson.dumps(body) for body in agent_session(20)]
    entries = [entry(i, raw) for i, raw in enumerate(bodies)]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries)  # one batch per entry: a block boundary after each line
    expected = full_lines(entries)
    (seg,) = segments(path)
    data = seg.path.read_bytes()
    cut = tmp_path / "cut" / seg.path.name
    cut.parent.mkdir()
    for size in range(0, len(data), max(1, len(data) // 40)):
        cut.write_bytes(data[:size])
        lines = [line for _, _, line in read_lines(cut)]
        assert lines == expected[:len(lines)]


def test_follow_decodes_delta_lines(tmp_path: Path) -> None:
    entries = [entry(i, orjson.dumps(body)) for i, body in enumerate(agent_session(6))]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries)
    assert list(follow_lines(path, lambda: True, poll_s=0)) == full_lines(entries)


@pytest.mark.skipif(shutil.which("zstdcat") is None, reason="the zstd command line tool is not installed")
def test_stock_tools_still_read_every_entrys_own_fields(tmp_path: Path) -> None:
    entries = [entry(i, orjson.dumps(body)) for i, body in enumerate(agent_session(6))]
    path = tmp_path / "requests.jsonl"
    write_all(RequestLog(path), entries)
    (seg,) = segments(path)
    out = subprocess.run(["zstdcat", str(seg.path)], capture_output=True, timeout=30, check=True).stdout
    assert [loads(line)["id"] for line in out.splitlines()] == list(range(6))


_EDIT = st.tuples(st.floats(0, 1), st.integers(0, 40), st.text(alphabet="aé😀\"\\\n{}", max_size=12))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.lists(_EDIT, min_size=1, max_size=3), min_size=1, max_size=6), interleave=st.booleans())
def test_any_sequence_of_edited_bodies_reads_back_exactly(tmp_path_factory: Any, edits: list[Any],
                                                          interleave: bool) -> None:
    text = "ab é" * 2500
    bodies = []
    for step in edits:
        for where, drop, insert in step:
            at = int(where * len(text))
            text = text[:at] + insert + text[at + drop:]
        bodies.append(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}))
        if interleave:
            bodies.append(orjson.dumps({"model": "other", "messages": [{"role": "user", "content": "zz " * 3000}]}))
    entries = [entry(i, raw) for i, raw in enumerate(bodies)]
    path = tmp_path_factory.mktemp("log") / "requests.jsonl"
    write_all(RequestLog(path), entries, every=2)
    assert decoded(path) == full_lines(entries)
