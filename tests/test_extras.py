"""Optional extras: the proxy runs without them, and the commands that need one say how to get it."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from llmrouter.cli.main import main


def test_tui_without_textual_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual is the ``[tui]`` extra: without it, ``llmrouter tui`` names the install command."""
    monkeypatch.setitem(sys.modules, "textual", None)  # makes ``import textual`` fail as if absent
    for name in [m for m in sys.modules if m.startswith("textual.") or m == "llmrouter.cli.tui"]:
        monkeypatch.delitem(sys.modules, name)
    result = CliRunner().invoke(main, ["tui", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "pip install 'llmrouter[tui]'" in result.output
    assert "Traceback" not in result.output


def test_the_proxy_imports_no_textual() -> None:
    """Serving never loads Textual: it is a dependency of the TUI alone."""
    import subprocess

    code = ("import sys; import llmrouter.web.app, llmrouter.cli.main; "
            "print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
