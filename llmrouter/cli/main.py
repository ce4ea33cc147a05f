"""The ``llmrouter`` command line: serve, check, plugins (and watch, tui, replay)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from llmrouter.config import Config, ConfigError, load_config
from llmrouter.jsonutil import dumps_str

DEFAULT_URL = "http://127.0.0.1:8090"


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="llmrouter")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """llmrouter: a local-first LLM routing proxy."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("config_path", required=False, type=click.Path(dir_okay=False))
@click.option("--host", default=None, help="Address to bind (overrides [server] host).")
@click.option("--port", default=None, type=int, help="Port to bind (overrides [server] port).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes accepting on one shared listening socket; each has its own event bus.")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int) -> None:
    """Run the router on CONFIG_PATH (default: the embedded default config)."""
    from llmrouter.web.runner import run

    config = _load(config_path)
    if host is not None:
        config.server.host = host
    if port is not None:
        config.server.port = port
    try:
        run(config, workers=workers)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("config_path", required=False, type=click.Path(dir_okay=False))
def check(config_path: str | None) -> None:
    """Validate CONFIG_PATH and print the resolved providers, classifiers, rules and plugins."""
    from llmrouter.engine.pipeline import Pipeline
    from llmrouter.engine.registry import load_entry_point_plugins
    from llmrouter.upstream.providers import build_providers

    config = _load(config_path)
    registry = load_entry_point_plugins()
    try:
        providers = build_providers(config, dict(os.environ))
        from llmrouter.observe.events import EventBus

        pipeline = Pipeline(config, registry, providers, EventBus())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"config: {config.source}: OK")
    click.echo(f"server: {config.server.host}:{config.server.port} dashboard={'on' if config.server.dashboard else 'off'}"
               f" auth={'on (' + config.server.api_key_env + ')' if config.server.api_key_env else 'off'}")
    logs = config.logging
    click.echo(f"logging: on -> {logs.path} ({'zstd' if logs.compress else 'plain'} segments of {logs.max_mb:g} MB, "
               f"keep {logs.keep or 'all'})" if logs.enabled else "logging: off")
    click.echo("providers:")
    for pc in config.providers:
        state = "loaded" if pc.name in providers else f"SKIPPED ({pc.api_key_env} not set)"
        where = pc.base_url or "(offline)"
        click.echo(f"  - {pc.name} [{pc.format}] {where} {state}")
    click.echo("classifiers:")
    for step in pipeline.classifiers:
        click.echo(f"  - {step.plugin_id}")
    click.echo("routers:")
    for rule in pipeline.rules:
        details = ", ".join(f"{k}={v!r}" for k, v in rule.settings.items() if k != "type")
        click.echo(f"  {rule.index + 1}. {rule.type}: {details}")
    click.echo("plugins:")
    for plugin_id, _ in config.enabled("plugins"):
        hooks = ", ".join(registry.records[plugin_id].hooks)
        click.echo(f"  - {plugin_id} ({hooks})")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json: bool) -> None:
    """List installed plugins with their distribution, version, hooks and load errors."""
    from llmrouter.engine.registry import describe, load_entry_point_plugins

    registry = load_entry_point_plugins()
    rows: list[dict[str, Any]] = [describe(r) for r in sorted(registry.records.values(), key=lambda r: r.id)]
    if as_json:
        click.echo(dumps_str(rows))
        return
    for row in rows:
        dist = f"{row['distribution']} {row['version']}" if row["distribution"] else "(not installed)"
        click.echo(f"{row['id']}  [{dist}]  {row['module']}")
        if row["error"]:
            click.echo(f"    LOAD ERROR: {row['error']}")
        else:
            click.echo(f"    hooks: {', '.join(row['hooks']) or '(none)'}")
            if row["summary"]:
                click.echo(f"    {row['summary']}")


@main.command("tui")
@click.argument("url", default=DEFAULT_URL)
@click.option("--api-key", envvar="ROUTER_API_KEY", default=None,
              help="The router's inbound API key (default: $ROUTER_API_KEY).")
@click.option("--model", default=None, help="Model for the chat box (default: the first from /v1/models).")
def tui(url: str, api_key: str | None, model: str | None) -> None:
    """A live terminal dashboard with a chat box for the router at URL."""
    try:
        from llmrouter.cli.tui import run_tui  # Textual is an extra, loaded only for this command
    except ModuleNotFoundError as exc:
        if exc.name != "textual" and not (exc.name or "").startswith("textual."):
            raise
        raise click.ClickException(
            "the TUI needs Textual, an optional extra: pip install 'llmrouter[tui]'") from None

    run_tui(url, api_key, model)


from llmrouter.cli.logcmd import log_group  # noqa: E402  (commands defined in their own modules)
from llmrouter.cli.replay import replay_command  # noqa: E402
from llmrouter.cli.watch import watch  # noqa: E402

main.add_command(watch)
main.add_command(replay_command)
main.add_command(log_group)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
