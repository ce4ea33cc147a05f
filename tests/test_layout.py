"""The package layout holds: each layer imports only what it may (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_API = {"llmrouter.hookspecs", "llmrouter.context", "llmrouter.models", "llmrouter.errors",
              "llmrouter.config", "llmrouter.jsonutil", "llmrouter.settings"}
"""Top-level modules that form the plugin API; they know nothing of the layers built on them."""


def module_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (``if TYPE_CHECKING:`` blocks excluded: they
    exist only for type checkers)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names.add(child.module)
            visit(child)

    visit(tree)
    return names


def python_files(*parts: str) -> list[Path]:
    """The ``.py`` files under ``ROOT/parts`` (a file or a package)."""
    target = ROOT.joinpath(*parts)
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


def offenders(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import of a forbidden module (or a submodule of one)."""
    found = []
    for path in files:
        for name in sorted(module_imports(path)):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


def test_formats_know_no_io() -> None:
    """Wire formats convert bytes and models; sockets, HTTP clients and servers are the router's."""
    forbidden = ("aiohttp", "httpx", "socket", "asyncio", "llmrouter.engine", "llmrouter.upstream",
                 "llmrouter.web", "llmrouter.observe", "llmrouter.cli")
    assert offenders(python_files("llmrouter", "formats"), forbidden) == []


def test_engine_knows_no_web_server() -> None:
    """The pipeline and registry run without aiohttp: any front end could drive them."""
    forbidden = ("aiohttp", "llmrouter.web", "llmrouter.cli")
    assert offenders(python_files("llmrouter", "engine"), forbidden) == []


def test_upstream_and_observe_know_no_web_server_or_engine() -> None:
    """Upstream I/O and observability sit below the engine and the web layer."""
    forbidden = ("llmrouter.web", "llmrouter.cli", "llmrouter.engine")
    files = python_files("llmrouter", "upstream") + python_files("llmrouter", "observe")
    assert offenders(files, forbidden) == []


def test_cluster_knows_no_engine_web_or_redis_at_import() -> None:
    """Shared state plugs in through callbacks; redis is imported only when a cluster starts."""
    forbidden = ("llmrouter.engine", "llmrouter.web", "llmrouter.cli", "aiohttp")
    assert offenders(python_files("llmrouter", "cluster"), forbidden) == []
    top_level = set()
    for path in python_files("llmrouter", "cluster"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level |= {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top_level |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not any(name == "redis" or name.startswith("redis.") for name in top_level)


def test_plugin_api_modules_stand_alone() -> None:
    """The plugin API at the top imports none of the layers built on it."""
    forbidden = ("llmrouter.engine", "llmrouter.upstream", "llmrouter.web", "llmrouter.observe",
                 "llmrouter.cli", "aiohttp")
    files = [ROOT / (name.replace(".", "/") + ".py") for name in sorted(PLUGIN_API)]
    assert offenders(files, forbidden) == []


@pytest.mark.parametrize("package", ["llmrouter_plugins", "examples"])
def test_plugins_see_only_the_public_api(package: str) -> None:
    """Built-in and example plugins import ``llmrouter`` (and its ``formats``/``testing`` kits), never
    the engine, upstream, web, observe or cli internals."""
    forbidden = ("llmrouter.engine", "llmrouter.upstream", "llmrouter.web", "llmrouter.observe",
                 "llmrouter.cli")
    assert offenders(python_files(package), forbidden) == []


def test_every_subpackage_has_a_docstring() -> None:
    """Each room of the house says what it holds."""
    for init in sorted((ROOT / "llmrouter").rglob("__init__.py")):
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


MAX_MODULE_LINES = 550
"""About 500 lines: past that a module holds more than one thing and should be split."""


def test_no_module_is_over_about_500_lines() -> None:
    """Small modules with names that say what they hold."""
    too_long = {str(path.relative_to(ROOT)): n for path in python_files("llmrouter") + python_files("llmrouter_plugins")
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert too_long == {}
