"""Meta-tests keeping the plugin author's documentation and the test suite in step with the code.

* every hookspec in :mod:`llmrouter.hookspecs` has a section in docs/plugin-hooks.md showing its
  exact signature and an example, and is implemented by at least one test plugin;
* every built-in plugin has a unit test calling each hook it implements;
* every ``Context`` field and every ``llmrouter.testing`` fixture and helper is documented;
* the code shown in docs/writing-a-plugin.md is the example package's real code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from llmrouter import hookspecs
from llmrouter.context import Context
from llmrouter.engine.registry import HOOK_NAMES, load_entry_point_plugins

ROOT = Path(__file__).resolve().parent.parent
HOOKS_DOC = ROOT / "docs" / "plugin-hooks.md"
TUTORIAL = ROOT / "docs" / "writing-a-plugin.md"
EXAMPLE = ROOT / "examples" / "llmrouter-example-plugin"
TEST_DIRS = (ROOT / "tests", EXAMPLE / "tests")


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    """The hook specifications, found by pluggy's marker, by name."""
    return {name: obj for name, obj in vars(hookspecs).items()
            if callable(obj) and getattr(obj, "llmrouter_spec", None) is not None}


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature_line(name: str, function: Callable[..., Any]) -> str:
    """``def name(ctx: Context) -> Flow | None``, as written in hookspecs.py."""
    sig = inspect.signature(function)
    params = ", ".join(f"{p.name}: {_annotation(p.annotation)}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {_annotation(sig.return_annotation)}"


def doc_sections(text: str) -> dict[str, str]:
    """``## `name` `` sections of a Markdown page, by name."""
    parts = re.split(r"^## `([^`]+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def code_blocks(text: str, lang: str = "python") -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


HOOKS = sorted(hookspec_functions())


def test_hookspecs_are_found() -> None:
    assert {"on_start", "classify", "pre_request", "route", "post_response", "on_end"} <= set(HOOKS)
    # The registry reports hooks from its own list; it must know every spec.
    assert set(HOOK_NAMES) == set(HOOKS)


def test_the_hook_sections_are_exactly_the_hookspecs() -> None:
    sections = doc_sections(HOOKS_DOC.read_text())
    documented = {name for name in sections if re.fullmatch(r"[a-z_]+", name)}  # not `Context`
    assert documented == set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature_and_an_example(hook: str) -> None:
    section = doc_sections(HOOKS_DOC.read_text())[hook]
    blocks = code_blocks(section)
    expected = signature_line(hook, hookspec_functions()[hook])
    assert any(expected in block.splitlines() for block in blocks), f"{hook}: no block with `{expected}`"
    examples = [b for b in blocks if "@hookimpl" in b and re.search(rf"^(async )?def {hook}\(", b, re.M)]
    assert examples, f"{hook}: no example implementation"
    for heading in ("**When.**", "**Returns.**", "**Errors.**"):
        assert heading in section, f"{hook}: missing {heading}"


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
    return name == "hookimpl"


def _test_files() -> Iterator[Path]:
    for directory in TEST_DIRS:
        yield from sorted(directory.rglob("test_*.py"))


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def hookimpls_in_tests() -> dict[str, set[str]]:
    """Hook name -> test files defining an ``@hookimpl`` implementation of it."""
    found: dict[str, set[str]] = {}
    for path in _test_files():
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(map(_is_hookimpl, node.decorator_list)):
                found.setdefault(node.name, set()).add(path.name)
    return found


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_plugin_implementing_it(hook: str) -> None:
    assert hookimpls_in_tests().get(hook), f"no test defines an @hookimpl {hook}(ctx)"


def hook_calls_in(path: Path) -> set[tuple[str, str]]:
    """``(module, function)`` pairs called in a test file through its imports.

    ``from llmrouter_plugins.rules import prefix`` then ``prefix.route(ctx)`` gives
    ``("llmrouter_plugins.rules.prefix", "route")``; ``from m import route`` then ``route(ctx)``
    gives ``("m", "route")``.
    """
    tree = _parsed(path)
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
    calls = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in bound:
            calls.add((bound[func.value.id], func.attr))
        elif isinstance(func, ast.Name) and func.id in bound:
            module, _, name = bound[func.id].rpartition(".")
            calls.add((module, name))
    return calls


def builtin_hooks() -> list[tuple[str, str, str]]:
    """``(id, module, hook)`` for every hook of every built-in plugin."""
    registry = load_entry_point_plugins()
    return [(record.id, record.module, hook)
            for record in sorted(registry.records.values(), key=lambda r: r.id)
            if record.module.startswith("llmrouter_plugins.")
            for hook in record.hooks]


def test_builtins_are_found_and_load() -> None:
    builtins = [r for r in load_entry_point_plugins().records.values() if r.module.startswith("llmrouter_plugins.")]
    assert {"keyword", "prefix", "fallback", "response-healing", "moderation", "pareto-router"} <= {
        r.id for r in builtins}
    assert all(r.error is None and r.hooks for r in builtins)  # else their hooks would go unchecked


@pytest.mark.parametrize(("plugin_id", "module", "hook"), builtin_hooks())
def test_builtin_has_a_unit_test_per_hook(plugin_id: str, module: str, hook: str) -> None:
    files = [path.name for path in _test_files() if (module, hook) in hook_calls_in(path)]
    assert files, f"built-in {plugin_id!r}: no test calls {module}.{hook}(...)"


def test_the_call_scanner_sees_real_calls(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text("from a.b import c\nfrom x import route\nimport p.q as r\n"
                      "def test():\n    c.classify(1)\n    route(2)\n    r.on_end(3)\n    c.other\n")
    assert hook_calls_in(sample) == {("a.b.c", "classify"), ("x", "route"), ("p.q", "on_end")}


def test_every_context_field_is_documented() -> None:
    text = HOOKS_DOC.read_text()
    for field in dataclasses.fields(Context):
        assert f"| `{field.name}` |" in text, f"Context.{field.name} is not in the Context table"
    assert "mark_modified" in text


def fixture_names_in_testing_module() -> list[str]:
    """Names of the pytest fixtures defined in llmrouter/testing.py."""
    tree = ast.parse((ROOT / "llmrouter" / "testing.py").read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Attribute) and target.attr == "fixture":
                    names.append(node.name)
    return names


def test_testing_fixtures_and_helpers_are_documented() -> None:
    import llmrouter.testing

    fixtures = fixture_names_in_testing_module()
    assert {"router", "mock_providers"} <= set(fixtures)
    section = HOOKS_DOC.read_text().split("## Testing fixtures", 1)[1]
    for name in fixtures:
        assert f"### `{name}`" in section
    for name in llmrouter.testing.__all__:
        assert f"`{name}" in section, f"llmrouter.testing.{name} is not documented"


def test_tutorial_shows_the_example_packages_real_code() -> None:
    text = TUTORIAL.read_text()
    shown = re.findall(r"^`((?:src|tests)/[\w/]+\.py)`[^\n]*:\n\n```python\n(.*?)^```", text, flags=re.M | re.S)
    assert {path for path, _ in shown} >= {
        "src/llmrouter_example_plugin/shouting.py", "src/llmrouter_example_plugin/prompt_length.py",
        "src/llmrouter_example_plugin/signature.py"}
    for path, block in shown:
        source = (EXAMPLE / path).read_text()
        for chunk in block.strip("\n").split("\n\n\n"):
            assert chunk in source, f"docs/writing-a-plugin.md shows code that is not in {path}:\n{chunk}"
    pyproject = code_blocks(text, "toml")[0]
    assert pyproject.strip() == (EXAMPLE / "pyproject.toml").read_text().strip()


def test_every_public_export_is_documented_and_importable() -> None:
    import llmrouter

    section = HOOKS_DOC.read_text().split("## What `llmrouter` exports", 1)[1].split("\n## ", 1)[0]
    for name in llmrouter.__all__:
        assert getattr(llmrouter, name) is not None
        assert f"`{name}`" in section, f"llmrouter.{name} is not in the exports table"
