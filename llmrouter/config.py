"""Configuration: TOML files parsed into pydantic models, with errors that name file, table and key."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from llmrouter.keys.config import KeyConfig, PriceConfig

DEFAULT_CONFIG_NAME = "<embedded default config>"


class ConfigError(Exception):
    """A configuration problem; the message names the file, the table and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    """``[server]``: where to listen and who may call."""

    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    dashboard: bool = True
    api_key_env: str | None = None
    allow_unauthenticated: bool = False
    max_body_mb: float = Field(default=32, gt=0)
    max_messages: int = Field(default=10_000, gt=0)
    max_json_depth: int = Field(default=64, gt=0)
    shutdown_grace_s: float = Field(default=30, ge=0)
    access_log: bool = True
    request_plugins: list[str] = Field(default_factory=list)


class LoggingConfig(_Section):
    """``[logging]``: the request log (JSON lines in zstd-compressed, size-rotated segments)."""

    enabled: bool = True
    path: str = "logs/requests.jsonl"
    max_mb: float = Field(default=100, gt=0)
    keep: int = Field(default=10, ge=0)
    compress: bool = True
    window_mb: float = Field(default=16, ge=1, le=128)


class RoutingConfig(_Section):
    """``[routing]``: behaviour of the router chain."""

    failover: bool = True
    circuit_failures: int = Field(default=5, gt=0)
    circuit_cooldown_s: float = Field(default=30, ge=0)
    retry_backoff_base_s: float = Field(default=0.5, ge=0)
    retry_backoff_max_s: float = Field(default=8.0, ge=0)
    max_retry_after_s: float = Field(default=30.0, ge=0)


class MetricsConfig(_Section):
    """``[metrics]``: the Prometheus ``/metrics`` endpoint."""

    enabled: bool = True
    public: bool = False


class TracingConfig(_Section):
    """``[tracing]``: OpenTelemetry traces (needs the ``llmrouter[otel]`` extra)."""

    enabled: bool = False
    otlp_endpoint: str | None = None
    exporter: Literal["otlp", "console", "none"] = "otlp"
    service_name: str = Field(default="llmrouter", min_length=1)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL (OTLP/HTTP), got {value!r}")
        return value


class ResponsesConfig(_Section):
    """``[responses]``: the OpenAI Responses API endpoint (``POST /v1/responses``).

    With ``store = true`` the router keeps the last ``max_stored`` conversations in memory so a
    client may continue one with ``previous_response_id``; without it such a request is a 400.
    """

    store: bool = False
    max_stored: int = Field(default=1000, gt=0)


Capability = Annotated[str, StringConstraints(min_length=1, pattern=r"^[a-z][a-z0-9_-]*$")]
"""A model capability name: ``completion``, ``vision``, ``tools``, ``thinking`` (as Ollama reports
them) or any other lower-case word."""


class ClusterConfig(_Section):
    """``[cluster]``: state shared through Redis by every worker and instance (off without ``redis_url``)."""

    redis_url: str | None = None
    prefix: str = Field(default="llmrouter", min_length=1)
    share_events: bool = True
    event_body_limit_kb: float = Field(default=64, ge=0)
    publish_queue: int = Field(default=10_000, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    history: int = Field(default=200, ge=0)
    stream_len: int = Field(default=10_000, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class ProviderConfig(_Section):
    """One ``[[providers]]`` entry."""

    name: str = Field(min_length=1)
    format: str = Field(min_length=1)  # checked against the registered provider formats at startup
    base_url: str | None = None
    api_key_env: str | None = None
    cost_per_1m_tokens: float | None = Field(default=None, ge=0)
    quality: float | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    throughput_tokens_per_sec: float | None = Field(default=None, ge=0)
    models: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    discover: bool = True
    discover_interval_s: float = Field(default=300, ge=0)
    timeout_connect_s: float = Field(default=10, gt=0)
    timeout_first_byte_s: float = Field(default=120, gt=0)
    timeout_total_s: float = Field(default=600, gt=0)
    max_retries: int = Field(default=2, ge=0)
    late_system: Literal["user", "keep"] = "user"
    prices: list[PriceConfig] = Field(default_factory=list)
    capabilities: list[Capability] | None = None
    model_capabilities: dict[str, list[Capability]] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.split("/", 1)[0]:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        return value


class Config(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid")

    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    classifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    routers: list[dict[str, Any]] = Field(default_factory=list)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    keys: list[KeyConfig] = Field(default_factory=list)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    response_classifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str = Field(default=DEFAULT_CONFIG_NAME, exclude=True)

    def enabled(self, section: Literal["classifiers", "plugins", "response_classifiers"]
                ) -> list[tuple[str, dict[str, Any]]]:
        """``(id, settings)`` of the enabled entries of a section, in file order, ``enabled`` removed."""
        table: dict[str, dict[str, Any]] = getattr(self, section)
        return [
            (pid, {k: v for k, v in settings.items() if k != "enabled"})
            for pid, settings in table.items()
            if settings.get("enabled", True)
        ]


def _describe_location(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Turn a pydantic error location into ``[table] key`` wording."""
    parts = list(loc)
    if not parts:
        return "top level"
    head = parts[0]
    if head in ("providers", "routers", "keys") and len(parts) >= 2 and isinstance(parts[1], int):
        entry = data.get(head, [])[parts[1]] if parts[1] < len(data.get(head, [])) else {}
        label = f"[[{head}]] #{parts[1] + 1}"
        if isinstance(entry, dict) and entry.get("name"):
            label += f" (name = {entry['name']!r})"
        rest = parts[2:]
    elif head in ("classifiers", "plugins", "response_classifiers") and len(parts) >= 2:
        label, rest = f"[{head}.{parts[1]}]", parts[2:]
    elif len(parts) >= 2:
        label, rest = f"[{head}]", parts[1:]
    else:
        return f"key {head!r}"
    key = ".".join(str(p) for p in rest)
    return f"{label} key {key!r}" if key else label


def parse_config(data: dict[str, Any], source: str = DEFAULT_CONFIG_NAME) -> Config:
    """Validate a parsed TOML mapping; raise :class:`ConfigError` naming file, table and key."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _describe_location(tuple(err["loc"]), data)
            problems.append(f"{where}: {err['msg']}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
    config.source = source
    _check_references(config)
    return config


def _check_references(config: Config) -> None:
    """Cross-field checks that need no plugins: unique provider names, a ``type`` on every rule.

    Provider formats and the providers a rule refers to are checked once plugins are loaded
    (:func:`llmrouter.upstream.providers.build_providers`, :class:`llmrouter.engine.pipeline.Pipeline`).
    """
    names: set[str] = set()
    for i, provider in enumerate(config.providers):
        if provider.name in names:
            raise ConfigError(f"{config.source}: [[providers]] #{i + 1} key 'name': duplicate provider name {provider.name!r}")
        names.add(provider.name)
    for i, rule in enumerate(config.routers):
        rtype = rule.get("type")
        if not isinstance(rtype, str) or not rtype:
            raise ConfigError(f"{config.source}: [[routers]] #{i + 1} key 'type': missing or not a string")
    _check_keys(config, names)
    for section in ("classifiers", "plugins", "response_classifiers"):
        for pid, settings in getattr(config, section).items():
            if "enabled" in settings and not isinstance(settings["enabled"], bool):
                raise ConfigError(f"{config.source}: [{section}.{pid}] key 'enabled': must be true or false")


def _check_keys(config: Config, providers: set[str]) -> None:
    """``[[keys]]``: unique names and secrets, allow-lists naming configured providers."""
    seen: dict[str, int] = {}
    secrets: dict[str, int] = {}
    for i, key in enumerate(config.keys):
        label = f"{config.source}: [[keys]] #{i + 1} (name = {key.name!r})"
        if key.name in seen:
            raise ConfigError(f"{label} key 'name': duplicate key name (also [[keys]] #{seen[key.name] + 1})")
        seen[key.name] = i
        secret = key.key_env or key.key_sha256 or ""
        if secret in secrets:
            field = "key_env" if key.key_env else "key_sha256"
            raise ConfigError(f"{label} key {field!r}: the same secret as [[keys]] #{secrets[secret] + 1}")
        secrets[secret] = i
        for provider in key.providers or []:
            if provider not in providers:
                raise ConfigError(f"{label} key 'providers': unknown provider {provider!r} "
                                  f"(configured: {sorted(providers)})")


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, or the embedded default config when ``path`` is ``None``."""
    if path is None:
        text = resources.files("llmrouter").joinpath("default_config.toml").read_text("utf-8")
        source = DEFAULT_CONFIG_NAME
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return parse_config(data, source)
