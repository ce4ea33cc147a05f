"""``llmrouter log``: read the request log from the shell (``cat`` as JSON lines, ``stats``).

The log is stored as zstd-compressed segments (see docs/events-and-logs.md); these commands turn
it back into plain JSON lines for ``jq``, ``grep`` and friends, across every segment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from llmrouter.config import ConfigError, load_config
from llmrouter.jsonutil import dumps_str
from llmrouter.observe.logfiles import follow_lines, log_files, read_lines, segments


def _resolve(path: str | None, config_path: str | None) -> str:
    """The log to read: PATH, else ``[logging] path`` of CONFIG (or of the embedded default)."""
    if path is not None:
        return path
    try:
        return load_config(config_path).logging.path
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _files(path: str) -> list[Path]:
    try:
        return log_files(path)
    except FileNotFoundError:
        raise click.ClickException(f"{path}: no request log there (no file or segments)") from None


_PATH = click.argument("path", required=False, type=click.Path())
_CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                       help="Read [logging] path from this config when PATH is not given.")


@click.group("log")
def log_group() -> None:
    """Read the request log (every segment, decompressed)."""


@log_group.command("cat")
@_PATH
@_CONFIG
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they are written (Ctrl-C stops).")
def cat(path: str | None, config_path: str | None, follow: bool) -> None:
    """Print every entry of the log at PATH as one JSON line each, oldest first.

    PATH is the configured log path (all its segments), one segment or JSONL file, or a directory;
    default: [logging] path of --config or of the embedded default config.
    """
    target = _resolve(path, config_path)
    out = click.get_binary_stream("stdout")
    problems: list[str] = []
    try:
        if follow:
            lines = follow_lines(target, lambda: False)
        else:
            _files(target)
            lines = (line for _, _, line in read_lines(target, problems))
        for line in lines:
            out.write(line + b"\n")
            if follow:
                out.flush()
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # `llmrouter log cat | head`
        sys.stderr.close()
        return
    for note in problems:
        click.echo(f"skipped: {note}", err=True)


@log_group.command("stats")
@_PATH
@_CONFIG
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(path: str | None, config_path: str | None, as_json: bool) -> None:
    """Files, entries, bytes on disk and decoded, and the compression ratio of the log at PATH."""
    target = _resolve(path, config_path)
    files = _files(target)
    problems: list[str] = []
    entries = decoded = 0
    for _, _, line in read_lines(target, problems):
        entries += 1
        decoded += len(line) + 1
    on_disk = sum(f.stat().st_size for f in files if f.exists())
    body: dict[str, Any] = {"path": target, "files": len(files), "segments": len(segments(target)),
                            "entries": entries, "bytes_on_disk": on_disk, "bytes_decoded": decoded,
                            "ratio": round(on_disk / decoded, 4) if decoded else None, "problems": problems}
    if as_json:
        click.echo(dumps_str(body))
        return
    ratio = f"{on_disk / decoded:.1%}" if decoded else "-"
    click.echo(f"{target}: {len(files)} file(s), {entries} entries, {on_disk:,} bytes on disk, "
               f"{decoded:,} bytes of JSON lines ({ratio})")
    for note in problems:
        click.echo(f"  skipped: {note}")
