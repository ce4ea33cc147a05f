"""The click CLI: check, plugins and serve's start-up errors (watch, tui, replay have their own tests)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from llmrouter.cli.main import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "router.toml"
    path.write_text(text)
    return path


def test_check_default_config_prints_the_resolution() -> None:
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "config: <embedded default config>: OK" in result.output
    assert "- echo [echo] (offline) loaded" in result.output
    assert "1. prefix: model_prefix='code/'" in result.output
    assert "2. fallback:" in result.output
    assert "- keyword" in result.output


def test_check_reports_skipped_providers_without_their_keys(tmp_path: Path, monkeypatch: object) -> None:
    path = write(tmp_path, '[[providers]]\nname = "cloud"\nformat = "openai"\nbase_url = "http://x/v1"\n'
                           'api_key_env = "CLI_TEST_KEY"\n[[providers]]\nname = "e"\nformat = "echo"\n'
                           '[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["check", str(path)], env={"CLI_TEST_KEY": ""})
    assert result.exit_code == 0, result.output
    assert "cloud [openai] http://x/v1 SKIPPED (CLI_TEST_KEY not set)" in result.output
    result = CliRunner().invoke(main, ["check", str(path)], env={"CLI_TEST_KEY": "sk-very-secret-value"})
    assert "cloud [openai] http://x/v1 loaded" in result.output
    assert "sk-very-secret-value" not in result.output


def test_check_fails_with_one_message_naming_file_table_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "e"\nformat = "echo"\n[[routers]]\ntype = "astrology"\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert "router.toml: [[routers]] #1 key 'type'" in result.output and "astrology" in result.output
    result = CliRunner().invoke(main, ["check", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "missing.toml: file not found" in result.output


def test_plugins_json_lists_builtins_with_hooks() -> None:
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)}
    assert rows["keyword"]["hooks"] == ["classify"]
    assert rows["prefix"]["hooks"] == ["route"]
    assert rows["response-healing"]["hooks"] == ["post_response"]
    assert rows["moderation"]["distribution"] == "llmrouter" and rows["moderation"]["error"] is None
    text = CliRunner().invoke(main, ["plugins"]).output
    assert "pareto-router  [llmrouter 0.1.0]" in text and "hooks: pre_request" in text


def test_serve_refuses_an_exposed_bind_without_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "e"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["serve", str(path), "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1
    assert "exposes the router" in result.output
