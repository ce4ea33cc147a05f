"""Config loading: defaults, the embedded config, and errors naming file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrouter.config import DEFAULT_CONFIG_NAME, ConfigError, load_config, parse_config
from llmrouter.engine.validate import validate_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(text)
    return path


def test_embedded_default_config_loads() -> None:
    config = load_config(None)
    assert config.source == DEFAULT_CONFIG_NAME
    assert [p.format for p in config.providers] == ["echo", "echo"]
    assert config.logging.enabled and config.server.dashboard
    assert "keyword" in config.classifiers
    assert [r["type"] for r in config.routers] == ["prefix", "fallback"]


def test_defaults_match_design() -> None:
    config = parse_config({"providers": [{"name": "e", "format": "echo"}]})
    assert (config.server.host, config.server.port, config.server.max_body_mb) == ("127.0.0.1", 8090, 32)
    assert config.routing.failover is True


def test_logging_rotation_keys_have_defaults_and_are_validated(tmp_path: Path) -> None:
    logs = parse_config({"providers": [{"name": "e", "format": "echo"}]}).logging
    assert (logs.max_mb, logs.keep, logs.compress, logs.window_mb) == (100, 10, True, 16)
    for bad in ("max_mb = 0", "keep = -1", "window_mb = 512", "max_mb = 'big'"):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, f"[logging]\n{bad}\n"))
        assert f"[logging] key '{bad.split()[0]}'" in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError, match=r"router\.toml: invalid TOML"):
        load_config(path)


def test_bad_field_type_names_table_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "router.toml" in message and "[server] key 'port'" in message


def test_provider_field_error_names_entry_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "x"\nformat = "smoke-signals"\n')
    with pytest.raises(ConfigError) as info:
        validate_config(load_config(path), environ={})
    assert "[[providers]] #1 (name = 'x') key 'format': unknown format 'smoke-signals'" in str(info.value)
    assert "(registered: anthropic, echo, " in str(info.value) and "ollama, openai" in str(info.value)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nprot = 1\n')
    with pytest.raises(ConfigError, match=r"\[server\] key 'prot'"):
        load_config(path)


def test_rule_naming_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "a"\nformat = "echo"\n'
                           '[[routers]]\ntype = "prefix"\nmodel_prefix = "x/"\nprovider = "ghost"\n')
    with pytest.raises(ConfigError) as info:
        validate_config(load_config(path), environ={})
    message = str(info.value)
    assert "[[routers]] #1 (type = 'prefix') key 'provider'" in message and "'ghost'" in message


def test_rule_without_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "a"\nformat = "echo"\n[[routers]]\nprovider = "a"\n')
    with pytest.raises(ConfigError, match=r"\[\[routers\]\] #1 key 'type'"):
        load_config(path)


def test_duplicate_provider_names() -> None:
    with pytest.raises(ConfigError, match="duplicate provider name 'a'"):
        parse_config({"providers": [{"name": "a", "format": "echo"}, {"name": "a", "format": "echo"}]})


def test_remote_provider_needs_base_url() -> None:
    with pytest.raises(ConfigError, match=r"\(name = 'o'\) key 'base_url'"):
        validate_config(parse_config({"providers": [{"name": "o", "format": "openai"}]}), environ={})


@pytest.mark.parametrize("url", ["localhost:8080/v1", "ftp://host/v1", "http://", "http:///v1", "127.0.0.1:8080"])
def test_base_url_must_be_an_http_url(url: str) -> None:
    """A base_url httpx cannot call is a startup error naming the entry and key, not a 502 per request."""
    with pytest.raises(ConfigError, match=r"\[\[providers\]\] #1 \(name = 'o'\) key 'base_url': .*http"):
        parse_config({"providers": [{"name": "o", "format": "openai", "base_url": url}]}, "r.toml")
    for good in ("http://127.0.0.1:8080/v1", "https://api.example.com", "HTTP://[::1]:11434"):
        assert parse_config({"providers": [{"name": "o", "format": "openai", "base_url": good}]}).providers


def test_enabled_sections_keep_file_order() -> None:
    config = parse_config({
        "providers": [{"name": "e", "format": "echo"}],
        "plugins": {"b": {"enabled": True, "x": 1}, "a": {"enabled": False}, "c": {}},
    })
    assert config.enabled("plugins") == [("b", {"x": 1}), ("c", {})]
