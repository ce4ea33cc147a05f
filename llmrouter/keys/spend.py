"""Spend over a request log: totals per key, provider and model (``/admin/spend``, ``llmrouter spend``)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrouter.observe.logfiles import read_log
from llmrouter.observe.printable import printable

GROUPS = ("key", "provider", "model")
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def read_entries(path: str | Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The ``complete`` entries of the request log at ``path`` (every segment, through the log's
    one reader), skipping lines that are not valid JSON (noted in ``problems`` when given).

    :raises OSError: when nothing can be read there.
    """
    for entry in read_log(path, problems):
        if entry.get("type", "complete") == "complete":
            yield entry


def parse_since(text: str, now: float | None = None) -> float:
    """A start time as Unix seconds from ``2026-12-01``, ``2026-12-01T10:00:00Z``, Unix seconds, or
    an age such as ``30m``, ``24h``, ``7d``.

    :raises ValueError: naming what was expected.
    """
    text = text.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNIT_S[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use 2026-12-01, 2026-12-01T10:00:00Z, "
                         "Unix seconds or an age like 24h or 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@dataclass
class Totals:
    """Requests, tokens and cost of one group of log entries."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, entry: dict[str, Any]) -> None:
        """Count one log entry."""
        self.requests += 1
        status = entry.get("status")
        if entry.get("error") is not None or (isinstance(status, int) and status >= 400):
            self.errors += 1
        usage = entry.get("usage")
        if isinstance(usage, dict):
            self.input_tokens += _int(usage.get("input_tokens"))
            self.output_tokens += _int(usage.get("output_tokens"))
        cost = entry.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost_usd += float(cost)
        elif usage:
            self.unpriced += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON form (cost rounded to a millionth of a cent)."""
        return {"requests": self.requests, "errors": self.errors, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": round(self.cost_usd, 8),
                "unpriced": self.unpriced}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def group_value(entry: dict[str, Any], group: str) -> str | None:
    """The entry's key name, provider, or model (the model sent upstream, else the one asked for)."""
    if group == "model":
        return entry.get("sent_model") or entry.get("requested_model")
    value = entry.get(group)
    return value if isinstance(value, str) else None


@dataclass
class SpendReport:
    """Totals overall and per key, provider and model."""

    total: Totals = field(default_factory=Totals)
    groups: dict[str, dict[str | None, Totals]] = field(default_factory=lambda: {g: {} for g in GROUPS})

    def as_dict(self, groups: Iterable[str] = GROUPS) -> dict[str, Any]:
        """JSON form: ``total`` and, per group, a list of rows sorted by cost (highest first)."""
        out: dict[str, Any] = {"total": self.total.as_dict()}
        for group in groups:
            rows = sorted(self.groups[group].items(), key=lambda kv: (-kv[1].cost_usd, str(kv[0])))
            out[f"by_{group}"] = [{group: name, **totals.as_dict()} for name, totals in rows]
        return out


def summarize(entries: Iterable[dict[str, Any]], *, key: str | None = None, since: float | None = None) -> SpendReport:
    """Add up ``entries``, keeping only key ``key`` and entries logged at or after ``since`` (Unix s)."""
    report = SpendReport()
    since_ms = since * 1000 if since is not None else None
    for entry in entries:
        if key is not None and entry.get("key") != key:
            continue
        if since_ms is not None:
            ts = entry.get("ts_ms")
            if not isinstance(ts, int | float) or ts < since_ms:
                continue
        report.total.add(entry)
        for group in GROUPS:
            report.groups[group].setdefault(group_value(entry, group), Totals()).add(entry)
    return report


def render_text(report: SpendReport) -> str:
    """Three tables (per key, provider, model) and a total line, for the terminal."""
    lines: list[str] = []
    for group in GROUPS:
        rows = sorted(report.groups[group].items(), key=lambda kv: (-kv[1].cost_usd, str(kv[0])))
        width = max([len(group)] + [len(str(name or "-")) for name, _ in rows])
        lines.append(f"{group:<{width}}  {'requests':>8}  {'errors':>6}  {'input':>10}  {'output':>10}  {'cost_usd':>12}")
        for name, t in rows:
            lines.append(f"{name or '-':<{width}}  {t.requests:>8}  {t.errors:>6}  {t.input_tokens:>10}  "
                         f"{t.output_tokens:>10}  {t.cost_usd:>12.6f}")
        lines.append("")
    t = report.total
    note = f" ({t.unpriced} without a price)" if t.unpriced else ""
    lines.append(f"total: {t.requests} requests, {t.errors} errors, {t.input_tokens} input + {t.output_tokens} "
                 f"output tokens, ${t.cost_usd:.6f}{note}")
    return "\n".join(printable(line) for line in lines)


def spend_command_impl(log_path: str, key: str | None, since: str | None, as_json: bool,
                       problems: list[str] | None = None) -> str:
    """The output of ``llmrouter spend``; lines that could not be read are noted in ``problems``.

    :raises ValueError: for an unreadable ``since``. :raises OSError: when the log cannot be read.
    """
    start = parse_since(since) if since else None
    report = summarize(read_entries(log_path, problems), key=key, since=start)
    if as_json:
        from llmrouter.jsonutil import dumps_str

        return dumps_str(report.as_dict())
    return render_text(report)
