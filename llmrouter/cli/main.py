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


class PluginCommands(click.Group):
    """The ``llmrouter`` group: built-in commands plus those plugins add through ``register_commands``.

    Plugins are asked the first time the command list is needed, so a command that is never looked
    up costs nothing; a plugin may not replace a built-in command (it is skipped with a warning).
    """

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from llmrouter.engine.registry import load_entry_point_plugins

        registry = load_entry_point_plugins(quiet=True)
        builtin = dict(self.commands)
        for plugin_id in sorted(registry.records):
            function = registry.impl(plugin_id, "register_commands")
            if function is None:
                continue
            staging = click.Group(name=plugin_id)
            try:
                function(cli=staging)
            except Exception as exc:
                logging.getLogger("llmrouter.cli").warning("plugin %r: register_commands failed: %s: %s",
                                                           plugin_id, type(exc).__name__, exc)
                continue
            for name, command in staging.commands.items():
                if name in builtin or name in self.commands:
                    logging.getLogger("llmrouter.cli").warning(
                        "plugin %r: command %r already exists; skipped", plugin_id, name)
                    continue
                self.add_command(command, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in and plugin command names."""
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else a plugin's."""
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugins_loaded:
            self._load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=PluginCommands)
@click.version_option(package_name="llmrouter")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """llmrouter: a local-first LLM routing proxy."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("config_path", required=False, type=click.Path(dir_okay=False))
@click.option("--host", default=None, help="Address to bind (overrides [server] host).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port to bind (overrides [server] port).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes accepting on one shared listening socket; each has its own event bus.")
@click.option("--quiet", is_flag=True, help="No access line per request (as [server] access_log = false).")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int, quiet: bool) -> None:
    """Run the router on CONFIG_PATH (default: the embedded default config).

    Prints one access line per request (time, endpoint, model -> provider/model, status, ms,
    tokens, failovers and errors) unless --quiet or [server] access_log = false.
    """
    from llmrouter.web.runner import run

    config = _load(config_path)
    if quiet:
        config.server.access_log = False
    if host is not None:
        config.server.host = host
    if port is not None:
        config.server.port = port
    try:
        run(config, workers=workers)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("log_path", type=click.Path(dir_okay=False))
@click.option("--key", default=None, help="Only this virtual key's requests (its name).")
@click.option("--since", default=None, help="Only requests since: 2026-12-01, an ISO time, Unix seconds or an age (24h, 7d).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def spend(log_path: str, key: str | None, since: str | None, as_json: bool) -> None:
    """Totals per key, provider and model (requests, tokens, cost) over the request log LOG_PATH."""
    from llmrouter.keys.spend import spend_command_impl

    problems: list[str] = []
    try:
        click.echo(spend_command_impl(log_path, key, since, as_json, problems))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    except OSError as exc:
        raise click.ClickException(f"{log_path}: cannot read the log: {exc.strerror or exc}") from None
    for note in problems:
        click.echo(f"skipped: {note}", err=True)


@main.command()
@click.argument("config_path", required=False, type=click.Path(dir_okay=False))
def check(config_path: str | None) -> None:
    """Validate CONFIG_PATH and print the resolved providers, classifiers, rules and plugins."""
    from llmrouter.engine.registry import load_entry_point_plugins
    from llmrouter.engine.validate import validate_config

    config = _load(config_path)
    registry = load_entry_point_plugins()
    try:
        pipeline = validate_config(config, registry)
        from llmrouter.web.middleware import check_exposure

        # Whether the key variable is set is the serving machine's business; the bind is the config's.
        check_exposure(config, config.server.host, "set" if config.server.api_key_env else None)
        if config.tracing.enabled:
            from llmrouter.web.app import load_tracing

            load_tracing(config).shutdown()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    providers = pipeline.providers
    click.echo(f"config: {config.source}: OK")
    click.echo(f"server: {config.server.host}:{config.server.port} dashboard={'on' if config.server.dashboard else 'off'}"
               f" auth={'on (' + config.server.api_key_env + ')' if config.server.api_key_env else 'off'}")
    logs = config.logging
    click.echo(f"logging: on -> {logs.path} ({'zstd' if logs.compress else 'plain'} segments of {logs.max_mb:g} MB, "
               f"keep {logs.keep or 'all'})" if logs.enabled else "logging: off")
    metrics = config.metrics
    access = "behind the key" if config.server.api_key_env and not metrics.public else "open"
    click.echo(f"metrics: {'on, /metrics ' + access if metrics.enabled else 'off'}")
    tracing = config.tracing
    target = tracing.otlp_endpoint or "OTEL_EXPORTER_OTLP_* / default" if tracing.exporter == "otlp" else tracing.exporter
    click.echo(f"tracing: {'on -> ' + target if tracing.enabled else 'off'}")
    if config.cluster.redis_url:
        from llmrouter.cluster.node import safe_url

        click.echo(f"cluster: {safe_url(config.cluster.redis_url)} (prefix {config.cluster.prefix!r}, "
                   f"events {'shared' if config.cluster.share_events else 'local'})")
    click.echo("providers:")
    for pc in config.providers:
        state = "loaded" if pc.name in providers else f"SKIPPED ({pc.api_key_env} not set)"
        where = pc.base_url or "(offline)"
        click.echo(f"  - {pc.name} [{pc.format}] {where} {state}")
    click.echo("classifiers:" if pipeline.classifiers else "classifiers: none")
    for step in pipeline.classifiers:
        click.echo(f"  - {step.plugin_id}")
    if pipeline.response_classifiers:
        click.echo("response classifiers:")
        for step in pipeline.response_classifiers:
            click.echo(f"  - {step.plugin_id}")
    click.echo("routers:")
    for rule in pipeline.rules:
        details = ", ".join(f"{k}={v!r}" for k, v in rule.table.items() if k != "type")
        click.echo(f"  {rule.index + 1}. {rule.type}: {details}" if details else f"  {rule.index + 1}. {rule.type}")
    plugins = list(config.enabled("plugins"))
    click.echo("plugins:" if plugins else "plugins: none")
    for plugin_id, _ in plugins:
        hooks = ", ".join(registry.records[plugin_id].hooks)
        click.echo(f"  - {plugin_id} ({hooks})")
    if config.keys:
        store = f"redis ({config.cluster.redis_url})" if config.cluster.redis_url else "sqlite (beside the log)"
        click.echo(f"keys: counters in {store}")
        for key in config.keys:
            click.echo(f"  - {describe_key(key)}")
    for warning in config_warnings(config, registry):
        click.echo(f"warning: {warning}")


def describe_key(key: Any) -> str:
    """One ``[[keys]]`` entry for ``check``: name, where its secret comes from, access and limits."""
    secret = f"env {key.key_env}" if key.key_env else "sha256"
    bits = [f"models {', '.join(key.models)}"]
    if key.providers is not None:
        bits.append(f"providers {', '.join(key.providers) or 'none'}")
    bits += [f"{name} {value}" for name, value in (("rpm", key.rpm), ("tpm", key.tpm)) if value is not None]
    if key.budget_usd is not None:
        bits.append(f"${key.budget_usd:g} per {key.budget_period}" if key.budget_period != "total"
                    else f"${key.budget_usd:g} in total")
    return f"{key.name} ({secret}): " + "; ".join(bits)


_FLOW_HOOKS = ("on_start", "pre_request", "post_response", "on_end")


def config_warnings(config: Config, registry: Any) -> list[str]:
    """What a config that loads may still get wrong: no routers, plugins enabled where they do nothing."""
    warnings = []
    if not config.routers:
        warnings.append("no [[routers]]: every request will be refused with 'no provider configured' "
                        "unless a plugin answers it or forces a provider")
    if config.server.api_key_env and not os.environ.get(config.server.api_key_env):
        warnings.append(f"[server] key 'api_key_env': environment variable {config.server.api_key_env} is not set "
                        "here; serve refuses to start without it")
    for number, key in enumerate(config.keys, 1):
        if key.key_env and not os.environ.get(key.key_env):
            warnings.append(f"[[keys]] #{number} (name = {key.name!r}) key 'key_env': environment variable "
                            f"{key.key_env} is not set here; serve refuses to start without it")
    for plugin_id, _ in config.enabled("plugins"):
        record = registry.records.get(plugin_id)
        if record is not None and not any(hook in record.hooks for hook in _FLOW_HOOKS):
            kinds = ", ".join(record.hooks) or "no hooks"
            warnings.append(f"[plugins.{plugin_id}]: plugin {plugin_id!r} has no on_start, pre_request, post_response "
                            f"or on_end hook, so enabling it here does nothing (it has: {kinds})")
    return warnings


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
            if row["settings"] is not None:
                settable = set(row["request_settable"])
                keys = [f"{k} (per request)" if k in settable else k for k in row["settings"]]
                click.echo(f"    settings: {', '.join(keys) or '(none)'}")
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
