"""``llmrouter replay``: re-run logged requests through another config's pipeline and report every
routing difference, so a config change can be gated in CI.

Each ``complete`` line of a request log holds the request as the client sent it. Replay runs it
through the whole pipeline of the new config (on_start, classify, pre_request, the router chain,
post_response, on_end) under the logged request id, and compares provider, model, tags and status
with what the log recorded.

Offline (the default) nothing leaves the machine: the logged response stands in for whichever
provider the new config picks (and a logged provider failure is raised again), and providers
whose ``api_key_env`` is unset are kept, since no key is needed. ``--live`` calls the real
providers instead and reports latency, tokens and cost next to the logged figures.

The routing decision compared is the first choice: when the log shows failover attempts, the
provider of the first attempt. Circuit breaker state and discovered models of the original server
are not in the log; list models in the config (``models = [...]``) to replay ``discover`` rules.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from llmrouter.config import Config, ConfigError, load_config
from llmrouter.context import Context
from llmrouter.errors import CLIENT_FAULT_KINDS, ProviderError, ProviderTimeout, RouterError
from llmrouter.jsonutil import dumps_str
from llmrouter.models import ChatRequest, ChatResponse
from llmrouter.observe.logfiles import logged_request
from llmrouter.observe.printable import printable
from llmrouter.observe.requestlog import read_log

OFFLINE_KEY = "replay-offline-placeholder"
COMPARED = ("provider", "model", "tags", "status")


@dataclass(frozen=True)
class Outcome:
    """Where a request went and how it ended."""

    provider: str | None
    model: str | None
    tags: tuple[str, ...]
    status: int
    error: str | None = None
    duration_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None

    def value(self, name: str) -> Any:
        """One compared field (see :data:`COMPARED`)."""
        return getattr(self, name)


@dataclass
class ReplayResult:
    """One logged request and its replay."""

    id: str
    logged: Outcome
    replayed: Outcome

    def changes(self) -> dict[str, tuple[Any, Any]]:
        """``{field: (logged, replayed)}`` for every compared field that differs."""
        return {name: (self.logged.value(name), self.replayed.value(name)) for name in COMPARED
                if self.logged.value(name) != self.replayed.value(name)}


@dataclass
class ReplayReport:
    """Every result plus the log lines that could not be replayed."""

    results: list[ReplayResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    live: bool = False

    @property
    def differences(self) -> list[ReplayResult]:
        """Results with at least one change."""
        return [r for r in self.results if r.changes()]

    def summary(self) -> dict[str, int]:
        """Counts for the report header."""
        changed = [r.changes() for r in self.results]
        return {
            "requests": len(self.results),
            "same_route": sum(1 for c in changed if not c),
            "changed_provider": sum(1 for c in changed if "provider" in c),
            "changed_model": sum(1 for c in changed if "model" in c),
            "changed_tags": sum(1 for c in changed if "tags" in c),
            "changed_status": sum(1 for c in changed if "status" in c),
            "errors": sum(1 for r in self.results if r.replayed.status >= 400),
            "skipped": len(self.skipped),
        }


# -- reading the log --------------------------------------------------------------------------------


def replayable(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The replayable entries of the request log at ``path`` (read with
    :func:`llmrouter.observe.requestlog.read_log`: the configured path, a segment or a directory),
    and a note for each line that is not replayable.

    :raises OSError: when the log cannot be read (``FileNotFoundError`` when there is none).
    """
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for entry in read_log(path, skipped):
        if entry.get("type", "complete") != "complete":
            continue
        if not isinstance(entry.get("request"), dict):
            skipped.append(f"{entry.get('id', '?')}: no request to replay "
                           f"(rejected before parsing: {entry.get('error')})")
            continue
        entries.append(entry)
    return entries, skipped


def logged_outcome(entry: Mapping[str, Any]) -> Outcome:
    """What the log says happened; the route is the first choice when failover attempts are logged."""
    provider, model = entry.get("provider"), entry.get("sent_model")
    attempts = entry.get("attempts")
    if isinstance(attempts, list) and attempts and isinstance(attempts[0], dict):
        provider, model = attempts[0].get("provider", provider), attempts[0].get("model", model)
    usage = entry.get("usage") or {}
    return Outcome(provider=provider, model=model, tags=tuple(entry.get("tags") or ()),
                   status=int(entry.get("status") or (500 if entry.get("error") else 200)), error=entry.get("error"),
                   duration_ms=entry.get("duration_ms"), input_tokens=usage.get("input_tokens"),
                   output_tokens=usage.get("output_tokens"), cost_usd=entry.get("cost_usd"))


# -- running --------------------------------------------------------------------------------------


class LoggedResponses:
    """The offline ``provider_call``: answers with the logged response of the request being replayed."""

    def __init__(self) -> None:
        self.entries: dict[str, Mapping[str, Any]] = {}

    async def __call__(self, pipeline: Any, ctx: Context) -> ChatResponse:
        entry = self.entries[ctx.request_id]
        logged = entry.get("response")
        if isinstance(logged, dict):
            response = ChatResponse.model_validate(logged)
            return response.model_copy(update={"model": ctx.sent_model or response.model})
        status = entry.get("status")
        if entry.get("error") and status == 504:
            raise ProviderTimeout(ctx.provider or "?", str(entry["error"]))
        if entry.get("error") and (status == 502 or status in CLIENT_FAULT_KINDS):
            # An upstream status the client got as it was (400/404/413/422/429) is raised as that status.
            raise ProviderError(ctx.provider or "?", str(entry["error"]),
                                upstream_status=status if status in CLIENT_FAULT_KINDS else None)
        # The log has no reply for this request (it failed before a provider was called): an empty one.
        return ChatResponse(model=ctx.sent_model or "")


def offline_environ(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with a placeholder for every unset provider key, so no provider is skipped."""
    env = dict(environ)
    for provider in config.providers:
        if provider.api_key_env and not env.get(provider.api_key_env):
            env[provider.api_key_env] = OFFLINE_KEY
    return env


async def replay(entries: list[dict[str, Any]], config: Config, *, live: bool = False,
                 environ: Mapping[str, str] | None = None, registry: Any = None) -> ReplayReport:
    """Re-run ``entries`` through ``config``'s pipeline, one after the other.

    :raises ConfigError: when the config cannot be turned into a pipeline.
    """
    from llmrouter.engine.pipeline import Pipeline
    from llmrouter.engine.registry import load_entry_point_plugins
    from llmrouter.observe.events import EventBus
    from llmrouter.upstream.providers import build_providers

    env = dict(os.environ if environ is None else environ)
    registry = registry or load_entry_point_plugins()
    providers = build_providers(config, env if live else offline_environ(config, env), registry.provider_formats())
    stand_in = LoggedResponses()
    pipeline = Pipeline(config, registry, providers, EventBus(history=0), provider_call=None if live else stand_in)
    report = ReplayReport(live=live)
    if live:
        from llmrouter.upstream.client import new_http_client

        pipeline.http = new_http_client()
    try:
        for entry in entries:
            request_id = str(entry.get("id") or f"replay-{len(report.results) + 1}")
            stand_in.entries[request_id] = entry
            try:
                request = logged_request(entry)
            except ValueError as exc:
                report.skipped.append(f"{request_id}: logged request is not a valid request: {exc}")
                continue
            outcome = await _run_one(pipeline, request, request_id, str(entry.get("endpoint") or ""))
            report.results.append(ReplayResult(request_id, logged_outcome(entry), outcome))
            stand_in.entries.pop(request_id, None)
    finally:
        if pipeline.http is not None:
            await pipeline.http.aclose()
    return report


async def _run_one(pipeline: Any, request: ChatRequest, request_id: str, endpoint: str) -> Outcome:
    ctx = pipeline.new_context(request, request_id, endpoint)
    started = time.perf_counter()
    status, error = 200, None
    try:
        await pipeline.prepare(ctx)
        await pipeline.complete(ctx)
    except RouterError as exc:
        status, error = exc.status, exc.message
    except Exception as exc:  # a broken plugin must not stop the whole replay
        status, error = 500, f"internal error: {type(exc).__name__}: {exc}"
    duration = round((time.perf_counter() - started) * 1000, 3)
    usage = ctx.response.usage if ctx.response is not None and error is None else None
    provider = pipeline.providers.get(ctx.provider) if ctx.provider else None
    cost = provider.cost_usd(usage, ctx.sent_model, ctx.response.model) \
        if provider is not None and usage is not None and ctx.response is not None else None
    return Outcome(provider=ctx.provider, model=ctx.sent_model, tags=tuple(ctx.request.tags), status=status,
                   error=error, duration_ms=duration,
                   input_tokens=usage.input_tokens if usage is not None else None,
                   output_tokens=usage.output_tokens if usage is not None else None, cost_usd=cost)


# -- reporting ------------------------------------------------------------------------------------


def _show(name: str, value: Any) -> str:
    if name == "tags":
        return "[" + ", ".join(value) + "]"
    return "-" if value is None else str(value)


def describe(result: ReplayResult) -> str:
    """One line naming the request id and what changed."""
    parts = [f"{name} {_show(name, old)} -> {_show(name, new)}" for name, (old, new) in result.changes().items()]
    line = f"{result.id}: " + "; ".join(parts)
    if result.replayed.error and "status" in result.changes():
        line += f" ({result.replayed.error})"
    return line


def _figures(outcome: Outcome) -> str:
    latency = f"{outcome.duration_ms:.0f} ms" if outcome.duration_ms is not None else "-"
    tokens = (f"{outcome.input_tokens}+{outcome.output_tokens} tok" if outcome.input_tokens is not None else "- tok")
    cost = f"${outcome.cost_usd:.6f}" if outcome.cost_usd is not None else "$-"
    return f"{latency}, {tokens}, {cost}"


def live_line(result: ReplayResult) -> str:
    """Latency, tokens and cost of a live replay next to the logged figures."""
    where = f"{result.replayed.provider}/{result.replayed.model}" if result.replayed.provider else "(no provider)"
    line = f"{result.id}: {where}  now {_figures(result.replayed)}  |  logged {_figures(result.logged)}"
    return line + (f"  error: {result.replayed.error}" if result.replayed.error else "")


def _totals(outcomes: list[Outcome]) -> dict[str, float | int | None]:
    latencies = [o.duration_ms for o in outcomes if o.duration_ms is not None]
    costs = [o.cost_usd for o in outcomes if o.cost_usd is not None]
    return {
        "mean_latency_ms": round(sum(latencies) / len(latencies), 3) if latencies else None,
        "input_tokens": sum(o.input_tokens or 0 for o in outcomes),
        "output_tokens": sum(o.output_tokens or 0 for o in outcomes),
        "cost_usd": sum(costs) if costs else None,
    }


def render_text(report: ReplayReport, log_path: str, config_source: str) -> str:
    """The human report: header, summary counts, one line per difference (and per request if live)."""
    mode = "live: real providers were called" if report.live else "offline: logged responses stood in"
    summary = report.summary()
    lines = [f"replayed {summary['requests']} requests from {log_path} against {config_source} ({mode})"]
    labels = {"same_route": "same route", "changed_provider": "changed provider", "changed_model": "changed model",
              "changed_tags": "changed tags", "changed_status": "changed status", "errors": "errors",
              "skipped": "skipped"}
    lines.append(f"  {'requests':<17}{summary['requests']}")
    lines.extend(f"  {label:<17}{summary[key]}" for key, label in labels.items())
    if report.skipped:
        lines.append(f"skipped ({len(report.skipped)}):")
        lines.extend(f"  {note}" for note in report.skipped)
    differences = report.differences
    if differences:
        lines.append(f"differences ({len(differences)}):")
        lines.extend("  " + describe(result) for result in differences)
    else:
        lines.append("no routing differences")
    if report.live:
        lines.append("live figures (now | logged):")
        lines.extend("  " + live_line(result) for result in report.results)
        now = _totals([r.replayed for r in report.results])
        then = _totals([r.logged for r in report.results])
        lines.append(f"  total: mean latency {now['mean_latency_ms']} ms (logged {then['mean_latency_ms']} ms), "
                     f"tokens {now['input_tokens']}+{now['output_tokens']} (logged "
                     f"{then['input_tokens']}+{then['output_tokens']}), cost ${now['cost_usd'] or 0:.6f} "
                     f"(logged ${then['cost_usd'] or 0:.6f})")
    return "\n".join(printable(line) for line in lines)


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {"provider": outcome.provider, "model": outcome.model, "tags": list(outcome.tags),
            "status": outcome.status, "error": outcome.error, "duration_ms": outcome.duration_ms,
            "input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens,
            "cost_usd": outcome.cost_usd}


def render_json(report: ReplayReport) -> str:
    """The machine report: summary, differences (with every changed field), skipped lines, live totals."""
    body: dict[str, Any] = {
        "summary": report.summary(),
        "differences": [
            {"id": r.id, "changes": {name: {"logged": list(old) if name == "tags" else old,
                                            "replayed": list(new) if name == "tags" else new}
                                     for name, (old, new) in r.changes().items()},
             "error": r.replayed.error}
            for r in report.differences
        ],
        "skipped": report.skipped,
        "live": report.live,
    }
    if report.live:
        body["results"] = [{"id": r.id, "logged": _outcome_json(r.logged), "replayed": _outcome_json(r.replayed)}
                           for r in report.results]
        body["totals"] = {"replayed": _totals([r.replayed for r in report.results]),
                          "logged": _totals([r.logged for r in report.results])}
    return dumps_str(body)


# -- the command ------------------------------------------------------------------------------------


@click.command("replay")
@click.argument("log_path", metavar="LOG", type=click.Path())
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="The config whose pipeline the logged requests are re-run through "
                   "(default: the embedded default config).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--live", is_flag=True, help="Call the real providers and compare latency, tokens and cost.")
def replay_command(log_path: str, config_path: str | None, as_json: bool, live: bool) -> None:
    """Re-run every request in LOG through CONFIG and report routing differences (exit 1 if any).

    LOG is the configured log path (every segment of it), one segment or JSONL file, or a
    directory. Offline by default: the logged responses stand in for the providers. A LOG with no
    replayable request (empty, truncated, or only unreadable lines) exits 2: a CI gate must not
    pass on nothing.
    """
    try:
        config = load_config(config_path)
        entries, skipped = replayable(log_path)
        if not entries:
            notes = f" ({len(skipped)} unreadable: {'; '.join(skipped[:3])})" if skipped else ""
            click.echo(f"Error: {log_path}: no replayable requests{notes}", err=True)
            raise SystemExit(2)
        report = asyncio.run(replay(entries, config, live=live))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except FileNotFoundError:
        raise click.UsageError(f"Invalid value for 'LOG': {log_path!r} does not exist (no log file or segments "
                               "there).") from None
    except OSError as exc:
        raise click.ClickException(f"{log_path}: cannot read: {exc.strerror or exc}") from None
    report.skipped[:0] = skipped
    click.echo(render_json(report) if as_json else render_text(report, log_path, config.source))
    if report.differences:
        raise SystemExit(1)
