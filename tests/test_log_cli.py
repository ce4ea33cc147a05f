"""``llmrouter log cat`` / ``log stats`` and following a log as it grows."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from llmrouter.cli.main import main
from llmrouter.jsonutil import loads
from llmrouter.observe.logfiles import follow_lines, segments
from llmrouter.observe.requestlog import RequestLog


def write_log(path: Path, ids: list[str], **options: float) -> None:
    rlog = RequestLog(path, **options)  # type: ignore[arg-type]
    for rid in ids:
        rlog.write({"type": "complete", "id": rid, "request": {"model": "m", "text": "conversation " * 200}})
        assert rlog.wait_idle(5)
    rlog.close()


def test_cat_prints_plain_json_lines_of_every_segment(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "requests.jsonl"
    write_log(path, ["a", "b"])
    write_log(path, ["c"])  # a restart: a second segment
    result = CliRunner().invoke(main, ["log", "cat", str(path)])
    assert result.exit_code == 0, result.output
    assert [loads(line)["id"] for line in result.output.splitlines()] == ["a", "b", "c"]
    # Without PATH, the path comes from the config.
    config = tmp_path / "router.toml"
    config.write_text(f'[logging]\npath = "{path.as_posix()}"\n')
    by_config = CliRunner().invoke(main, ["log", "cat", "--config", str(config)])
    assert by_config.exit_code == 0 and by_config.output == result.output


def test_cat_of_a_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["log", "cat", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 1 and "no request log there" in result.output


def test_stats_reports_entries_and_the_compression_ratio(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    write_log(path, [str(i) for i in range(20)])
    result = CliRunner().invoke(main, ["log", "stats", str(path), "--json"])
    assert result.exit_code == 0, result.output
    body = loads(result.output)
    assert body["entries"] == 20 and body["files"] == 1 and body["segments"] == 1 and body["problems"] == []
    assert body["bytes_on_disk"] == segments(path)[0].path.stat().st_size
    assert body["bytes_decoded"] > 20 * 2600 and body["ratio"] < 0.05  # repeated content is stored once
    text = CliRunner().invoke(main, ["log", "stats", str(path)])
    assert "20 entries" in text.output


def test_follow_yields_old_lines_then_new_ones_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    write_log(path, ["old"])
    stop = threading.Event()
    seen: list[str] = []

    def reader() -> None:
        for line in follow_lines(path, stop.is_set, poll_s=0.02):
            seen.append(loads(line)["id"])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        rlog = RequestLog(path, max_mb=0.01, keep=0)  # rotates every line or two
        for i in range(10):
            rlog.write({"id": str(i), "noise": os.urandom(6000).hex()})
            assert rlog.wait_idle(5)
        deadline = time.monotonic() + 10
        while len(seen) < 11 and time.monotonic() < deadline:
            time.sleep(0.02)
        rlog.close()
    finally:
        stop.set()
        thread.join(10)
    assert seen == ["old"] + [str(i) for i in range(10)]
    assert len(segments(path)) >= 4
