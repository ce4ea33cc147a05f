"""The click CLI: check, plugins and serve's start-up errors (watch, tui, replay have their own tests)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmrouter.cli.main import main
from tests.conftest import free_port


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
    lines = result.output.splitlines()
    assert "  1. fallback" in lines  # no dangling ": " for a rule without settings
    assert "classifiers: none" in lines and "plugins: none" in lines
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
    assert rows["response-healing"]["hooks"] == ["post_response", "stream_transformer"]
    assert rows["refusal"]["hooks"] == ["classify_response"]
    assert rows["moderation"]["distribution"] == "llmrouter" and rows["moderation"]["error"] is None
    text = CliRunner().invoke(main, ["plugins"]).output
    assert "pareto-router  [llmrouter 0.1.0]" in text and "hooks: pre_request" in text


def test_serve_refuses_an_exposed_bind_without_a_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[providers]]\nname = "e"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["serve", str(path), "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "exposes the router" in result.output


# -- issue 9: start-up and CLI sharp edges -------------------------------------------------------------

ECHO = '[[providers]]\nname = "e"\nformat = "echo"\n'


@pytest.mark.parametrize("port", ["0", "-1", "65536", "93633"])
def test_serve_refuses_a_port_outside_1_to_65535(tmp_path: Path, port: str) -> None:
    path = write(tmp_path, ECHO + '[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["serve", str(path), "--port", port])
    assert result.exit_code == 2 and "--port" in result.output and "1<=x<=65535" in result.output


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, ECHO + '[[routers]]\ntype = "fallback"\n[logging]\nenabled = false\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for workers in ("1", "2"):
            proc = subprocess.run([sys.executable, "-m", "llmrouter.cli", "--log-level", "WARNING", "serve",
                                   str(path), "--port", str(port), "--workers", workers],
                                  capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert proc.returncode == 1, proc.stderr
            assert "Traceback" not in proc.stderr + proc.stdout
            assert proc.stderr.strip().splitlines() == [f"Error: port {port} on 127.0.0.1 is in use"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_a_log_path_it_cannot_write_is_one_line_and_exit_1(tmp_path: Path, workers: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    path = write(tmp_path, '[logging]\npath = "a-file/logs/requests.jsonl"\n' + ECHO + '[[routers]]\ntype = "fallback"\n')
    proc = subprocess.run([sys.executable, "-m", "llmrouter.cli", "--log-level", "WARNING", "serve", str(path),
                           "--port", str(free_port()), "--workers", workers],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "[logging] key 'path'" in lines[0] and "a-file/logs" in lines[0], lines


def test_serve_on_config_port_0_says_which_port_it_got(tmp_path: Path) -> None:
    """``[server] port = 0`` binds a free port; the listening line must name it, not ``:0``."""
    import re
    import time

    import httpx

    path = write(tmp_path, '[server]\nport = 0\n' + ECHO + '[[routers]]\ntype = "fallback"\n[logging]\nenabled = false\n')
    proc = subprocess.Popen([sys.executable, "-m", "llmrouter.cli", "serve", str(path), "--quiet"],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        line = ""
        while "listening on" not in line:
            assert time.monotonic() < deadline and proc.poll() is None, line
            line = proc.stderr.readline()
        url = re.search(r"listening on (http://\S+)", line)
        assert url is not None and not url[1].endswith(":0"), line
        assert httpx.get(url[1] + "/health", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_plugin_id_typo_names_the_closest_installed_plugins_of_any_kind(tmp_path: Path) -> None:
    path = write(tmp_path, ECHO + '[[routers]]\ntype = "fallback"\n[plugins.respons-healing]\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert "[plugins.respons-healing]" in result.output and "'response-healing'" in result.output
    path = write(tmp_path, ECHO + '[[routers]]\ntype = "fallback"\n[plugins.pareto-routr]\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and "'pareto-router'" in result.output, "pareto-router has no on_start hook"
    path = write(tmp_path, ECHO + '[[routers]]\ntype = "fallbak"\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1 and "'fallback'" in result.output


def test_check_warns_about_no_routers_and_plugins_that_would_do_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, ECHO + "[plugins.keyword]\n")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: no [[routers]]: every request will be refused with 'no provider configured'" in result.output
    assert ("warning: [plugins.keyword]: plugin 'keyword' has no on_start, pre_request, post_response or on_end "
            "hook, so enabling it here does nothing") in result.output
    clean = CliRunner().invoke(main, ["check"])
    assert "warning" not in clean.output


def test_check_refuses_what_serve_refuses_and_warns_about_unset_key_variables(tmp_path: Path) -> None:
    exposed = write(tmp_path, '[server]\nhost = "0.0.0.0"\n[[providers]]\nname = "e"\nformat = "echo"\n'
                              '[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["check", str(exposed)])
    assert result.exit_code == 1 and "[server] key 'host': binding '0.0.0.0' exposes the router" in result.output
    keyed = write(tmp_path, '[server]\nhost = "0.0.0.0"\napi_key_env = "CLI_ADMIN"\n[[providers]]\nname = "e"\n'
                            'format = "echo"\n[[routers]]\ntype = "fallback"\n'
                            '[[keys]]\nname = "bob"\nkey_env = "CLI_BOB"\n')
    result = CliRunner().invoke(main, ["check", str(keyed)], env={"CLI_ADMIN": "", "CLI_BOB": ""})
    assert result.exit_code == 0, result.output  # the variables may only exist where the router runs
    assert "warning: [server] key 'api_key_env': environment variable CLI_ADMIN is not set here" in result.output
    assert "warning: [[keys]] #1 (name = 'bob') key 'key_env': environment variable CLI_BOB is not set here" \
        in result.output
    result = CliRunner().invoke(main, ["check", str(keyed)], env={"CLI_ADMIN": "a", "CLI_BOB": "b"})
    assert result.exit_code == 0 and "warning" not in result.output


@pytest.mark.parametrize("content", [b"", b"\n\n", b"{torn\n", b'{"type": "start", "id": "x"}\n'])
def test_replay_with_nothing_to_replay_exits_2(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "requests.jsonl"
    log.write_bytes(content)
    result = CliRunner().invoke(main, ["replay", str(log)])
    assert result.exit_code == 2, result.output
    assert f"{log}: no replayable requests" in result.output


async def test_replay_without_config_uses_the_embedded_default(router: Any, tmp_path: Path) -> None:
    from llmrouter.config import load_config
    from llmrouter.testing import openai_chat

    config = load_config(None)
    config.logging.path = str(tmp_path / "requests.jsonl")
    client = await router(config)
    assert (await client.openai(openai_chat("write a function", model="code/x"))).status == 200
    assert (await client.openai(openai_chat("hello", model="echo-1"))).status == 200
    client.log_lines()
    result = await asyncio.to_thread(CliRunner().invoke, main, ["replay", config.logging.path])
    assert result.exit_code == 0, result.output
    assert "<embedded default config>" in result.output and "requests         2" in result.output


def test_the_listening_line_gives_a_usable_url_for_ipv6_hosts() -> None:
    from llmrouter.web.runner import base_url

    assert base_url("127.0.0.1", 8090) == "http://127.0.0.1:8090"
    assert base_url("::1", 8090) == "http://[::1]:8090"
