"""Third-party plugins installed with ``pip install`` from their own directories.

Two distributions are written to a temporary directory and installed with pip into a target
directory (``--target``, put on ``PYTHONPATH``), never into the test environment itself:

* ``acme-llmrouter-probes`` ships four plugins: a classifier, a router rule type and two flow
  plugins that append what they saw to a trace file;
* ``acme-broken-plugin`` ships one whose module fails to import.

Then the real ``llmrouter`` command runs in subprocesses, so entry point discovery is exactly what
a user gets: ``llmrouter plugins`` lists both (the broken one with its error), ``llmrouter check``
resolves them, a served request runs them in config order between the built-ins, and a config
that enables the broken plugin fails at startup naming it.

So that the test needs neither the network nor ``wheel``/a recent ``setuptools`` in the
environment, the packages use a tiny in-tree PEP 517 backend (``backend-path``); pip drives it
exactly as it drives any other backend.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmrouter.jsonutil import loads

# A minimal PEP 517 build backend: packs [tool.tiny-backend] packages and the [project] metadata
# (name, version, entry points) into a pure-Python wheel.
BACKEND = '''
import base64, hashlib, pathlib, tomllib, zipfile


def _entry_points(project):
    out = []
    for group, table in project.get("entry-points", {}).items():
        out.append(f"[{group}]")
        out.extend(f"{name} = {target}" for name, target in table.items())
        out.append("")
    return "\\n".join(out)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    data = tomllib.loads(pathlib.Path("pyproject.toml").read_text("utf-8"))
    project = data["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    info = f"{name}-{version}.dist-info"
    files = {}
    for package in data["tool"]["tiny-backend"]["packages"]:
        for path in sorted(pathlib.Path(package).rglob("*.py")):
            files[path.as_posix()] = path.read_bytes()
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\\nName: {project['name']}\\nVersion: {version}\\n"
        f"Summary: {project.get('description', '')}\\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: tiny-backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{info}/entry_points.txt"] = _entry_points(project).encode()
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel_name = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel_name, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return wheel_name
'''

PYPROJECT = '''
[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["."]

[project]
name = "{name}"
version = "{version}"
description = "{description}"

[project.entry-points.llmrouter]
{entry_points}

[tool.tiny-backend]
packages = ["{package}"]
'''

# Writes one JSON line per hook call to the file named by the plugin's `trace` setting.
TRACE = '''
import json


def record(ctx, hook, **seen):
    with open(ctx.settings["trace"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"plugin": ctx.plugin_id, "hook": hook, **seen}) + "\\n")
'''

# A flow plugin recording what it sees; the same source serves two ids (two modules).
PROBE = '''
"""Acme probe: records the forced provider in pre_request and the reply in post_response."""

from llmrouter import hookimpl

from acme_probes._trace import record


@hookimpl
def pre_request(ctx):
    record(ctx, "pre_request", forced_provider=ctx.request.forced_provider)


@hookimpl
async def post_response(ctx):
    record(ctx, "post_response", text=ctx.response.text())
'''

TAGGER = '''
"""Acme tagger: adds the tags listed in its settings."""

from llmrouter import hookimpl


@hookimpl
def classify(ctx):
    return ctx.settings.get("tags", [])
'''

RULE = '''
"""Acme rule: routes one model name to one provider."""

from llmrouter import Route, hookimpl


@hookimpl
def route(ctx):
    if ctx.request.model == ctx.settings["model"]:
        return Route(ctx.settings["provider"])
    return None
'''

# A plugin using the whole platform: typed settings, a provider format, a route and a command.
LOUD = '''
"""Acme loud: an offline provider format that shouts, a footer plugin, a route and a command."""

import click
from aiohttp import web

from llmrouter import ChatResponse, PluginSettings, ProviderFormat, TextPart, hookimpl, request_settable


class Settings(PluginSettings):
    suffix: str = request_settable("!")
    times: int = 1


class UpperFormat(ProviderFormat):
    name = "acme-upper"
    requires_base_url = False
    offline = True

    def build_request(self, request, model):
        return {}

    def parse_response(self, body):
        raise ValueError("offline")

    def stream_decoder(self):
        raise NotImplementedError

    def offline_response(self, request, model):
        return ChatResponse(model=model, content=[TextPart(text=request.last_user_text().upper())])


@hookimpl
def register_provider_formats():
    return [UpperFormat()]


async def hello(request):
    return web.json_response({"hello": "from acme"})


@hookimpl
def register_routes():
    return [web.get("/acme/hello", hello)]


@hookimpl
def register_commands(cli):
    @cli.command("acme-hello")
    @click.argument("name")
    def acme_hello(name):
        """Say hello."""
        click.echo(f"acme says hello to {name}")


@hookimpl
def post_response(ctx):
    ctx.response.content[0].text += ctx.settings.suffix * ctx.settings.times
'''

BROKEN = '''
"""A plugin whose dependency is missing."""

import acme_dependency_that_is_not_installed  # noqa: F401
'''

PROBE_IDS = {"acme-first": "acme_probes.first", "acme-second": "acme_probes.second",
             "acme-tagger": "acme_probes.tagger", "acme-rule": "acme_probes.rule", "acme-loud": "acme_probes.loud"}


def write_project(root: Path, name: str, version: str, package: str, modules: dict[str, str],
                  entry_points: dict[str, str]) -> Path:
    """Write an installable project (pyproject, backend, package modules) under ``root/name``."""
    project = root / name
    (project / package).mkdir(parents=True)
    (project / "tiny_backend.py").write_text(BACKEND)
    eps = "\n".join(f'{ep} = "{target}"' for ep, target in entry_points.items())
    (project / "pyproject.toml").write_text(PYPROJECT.format(
        name=name, version=version, description=f"{name} for the llmrouter tests", entry_points=eps,
        package=package))
    for module, source in modules.items():
        (project / package / f"{module}.py").write_text(source)
    return project


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with both distributions pip-installed into it (put it on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("third_party")
    probes = write_project(root, "acme-llmrouter-probes", "1.2.3", "acme_probes", {
        "__init__": '"""Acme probes for llmrouter."""\n', "_trace": TRACE, "first": PROBE, "second": PROBE,
        "tagger": TAGGER, "rule": RULE, "loud": LOUD}, PROBE_IDS)
    broken = write_project(root, "acme-broken-plugin", "0.0.1", "acme_broken",
                           {"__init__": BROKEN}, {"acme-broken": "acme_broken"})
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(probes), str(broken)],
        check=True, capture_output=True, timeout=120, cwd=root)
    return target


def llmrouter_command() -> list[str]:
    """The installed ``llmrouter`` console script (or ``python -m llmrouter.cli`` without one)."""
    script = shutil.which("llmrouter", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "llmrouter.cli"]


def environment(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return env


def run_llmrouter(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*llmrouter_command(), "--log-level", "WARNING", *args], env=environment(site),
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_CONFIG = '''
[server]
dashboard = false

[logging]
path = "{log}"

[[providers]]
name = "echo-a"
format = "echo"

[[providers]]
name = "echo-b"
format = "echo"

[classifiers.keyword.tags]
code = ["def "]

[classifiers.acme-tagger]
tags = ["acme"]

[[routers]]
type = "prefix"
model_prefix = "b/"
provider = "echo-b"

[[routers]]
type = "acme-rule"
model = "acme-model"
provider = "echo-b"

[[routers]]
type = "fallback"
providers = ["echo-a"]

[plugins.acme-first]
trace = "{trace}"

[plugins.pareto-router]
tiers = {{ low = ["echo-a"], high = ["echo-b"] }}

[plugins.response-healing]

[plugins.acme-second]
trace = "{trace}"
'''


def good_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "router.toml", GOOD_CONFIG.format(
        log=(tmp_path / "requests.jsonl").as_posix(), trace=(tmp_path / "trace.jsonl").as_posix()))


def test_plugins_lists_installed_and_broken_plugins(site: Path, tmp_path: Path) -> None:
    result = run_llmrouter(site, "plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in loads(result.stdout)}

    for plugin_id, module in PROBE_IDS.items():
        row = rows[plugin_id]
        assert (row["distribution"], row["version"], row["module"], row["error"]) == (
            "acme-llmrouter-probes", "1.2.3", module, None)
    assert rows["acme-first"]["hooks"] == ["pre_request", "post_response"]
    assert rows["acme-tagger"]["hooks"] == ["classify"]
    assert rows["acme-rule"]["hooks"] == ["route"]
    assert rows["acme-rule"]["summary"] == "Acme rule: routes one model name to one provider."

    broken = rows["acme-broken"]
    assert broken["distribution"] == "acme-broken-plugin"
    assert broken["error"].startswith("ModuleNotFoundError")
    assert "acme_dependency_that_is_not_installed" in broken["error"]
    assert broken["hooks"] == []
    # The built-ins are still there: one broken plugin does not hide the others.
    assert {"keyword", "prefix", "fallback", "response-healing", "pareto-router"} <= set(rows)

    text = run_llmrouter(site, "plugins", cwd=tmp_path)
    assert text.returncode == 0
    assert "acme-broken  [acme-broken-plugin 0.0.1]" in text.stdout
    assert "LOAD ERROR: ModuleNotFoundError" in text.stdout


def test_check_resolves_third_party_plugins_in_config_order(site: Path, tmp_path: Path) -> None:
    result = run_llmrouter(site, "check", str(good_config(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("  - keyword") < out.index("  - acme-tagger")
    assert "2. acme-rule: model='acme-model', provider='echo-b'" in out
    plugin_lines = [line.strip() for line in out.split("plugins:\n", 1)[1].splitlines()]
    assert plugin_lines == ["- acme-first (pre_request, post_response)", "- pareto-router (pre_request)",
                            "- response-healing (post_response, stream_transformer)",
                            "- acme-second (pre_request, post_response)"]


@pytest.mark.parametrize("table", [
    "[plugins.acme-broken]\n",
    "[classifiers.acme-broken]\n",
    '[[routers]]\ntype = "acme-broken"\n',
])
def test_enabling_a_broken_plugin_fails_check_naming_it(site: Path, tmp_path: Path, table: str) -> None:
    config = write_config(tmp_path / "broken.toml",
                          '[[providers]]\nname = "echo"\nformat = "echo"\n\n' + table)
    result = run_llmrouter(site, "check", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "'acme-broken' from acme-broken-plugin failed to load: ModuleNotFoundError" in result.stderr
    assert str(config) in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(site: Path, tmp_path: Path) -> Iterator[str]:
    """``llmrouter serve`` on the good config (the broken plugin is installed but not enabled)."""
    with serve(site, tmp_path, good_config(tmp_path)) as url:
        yield url


@contextlib.contextmanager
def serve(site: Path, tmp_path: Path, config: Path) -> Iterator[str]:
    """Run ``llmrouter serve CONFIG`` on a free port until the caller is done; yields its URL."""
    port = free_port()
    out = (tmp_path / "server.out").open("w")
    proc = subprocess.Popen([*llmrouter_command(), "serve", str(config), "--port", str(port)],
                            env=environment(site), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.out").read_text()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def read_trace(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "trace.jsonl"
    lines = [loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def test_served_requests_run_third_party_plugins_in_config_order(server: str, tmp_path: Path) -> None:
    def chat(text: str, model: str = "m", **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        return httpx.post(server + "/v1/chat/completions", json=body, timeout=10)

    # Tags merge in config order (keyword, then acme-tagger), not by id; echo answers with the prompt,
    # malformed JSON here, which response-healing repairs between the two probes.
    reply = chat('def f(): return {"a": 1,', plugins=[{"id": "pareto-router", "tier": "high"}])
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Router-Request-Tags"] == "code,acme"
    assert reply.headers["X-Router-Provider"] == "echo-b"
    assert read_trace(tmp_path) == [
        {"plugin": "acme-first", "hook": "pre_request", "forced_provider": None},
        {"plugin": "acme-second", "hook": "pre_request", "forced_provider": "echo-b"},
        {"plugin": "acme-first", "hook": "post_response", "text": 'def f(): return {"a": 1,'},
        {"plugin": "acme-second", "hook": "post_response", "text": 'def f(): return {"a": 1,'},
    ]

    reply = chat('{"a": 1, "b": [2,')
    assert reply.json()["choices"][0]["message"]["content"] == '{"a":1,"b":[2]}'
    assert [(e["plugin"], e.get("text")) for e in read_trace(tmp_path) if e["hook"] == "post_response"] == [
        ("acme-first", '{"a": 1, "b": [2,'), ("acme-second", '{"a":1,"b":[2]}')]

    # The third-party rule sits between two built-in rules in the chain.
    assert chat("hi", model="acme-model").headers["X-Router-Provider"] == "echo-b"
    assert chat("hi", model="b/other").headers["X-Router-Provider"] == "echo-b"
    assert chat("hi", model="other").headers["X-Router-Provider"] == "echo-a"


def test_serving_a_config_that_enables_a_broken_plugin_fails_naming_it(site: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "broken.toml",
                          '[[providers]]\nname = "echo"\nformat = "echo"\n\n[plugins.acme-broken]\n')
    result = subprocess.run([*llmrouter_command(), "serve", str(config), "--port", str(free_port())],
                            env=environment(site), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "[plugins.acme-broken]: plugin 'acme-broken' from acme-broken-plugin failed to load" in result.stderr


LOUD_CONFIG = '''
[server]
dashboard = false
api_key_env = "ACME_ROUTER_KEY"

[logging]
enabled = false

[[providers]]
name = "upper"
format = "acme-upper"

[[routers]]
type = "fallback"

[plugins.acme-loud]
times = 2
'''


def test_a_pip_installed_plugin_adds_a_format_a_route_a_command_and_typed_settings(site: Path, tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_llmrouter(site, "acme-hello", "world", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "acme says hello to world\n"), result.stderr
    assert "acme-hello" in run_llmrouter(site, "--help", cwd=tmp_path).stdout

    typo = write_config(tmp_path / "typo.toml", LOUD_CONFIG.replace("times = 2", "tims = 2"))
    result = run_llmrouter(site, "check", str(typo), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{typo}: [plugins.acme-loud] key 'tims': unknown key (known keys: suffix, times)" in result.stderr
    bad_format = write_config(tmp_path / "fmt.toml", LOUD_CONFIG.replace('"acme-upper"', '"acme-uper"'))
    result = run_llmrouter(site, "check", str(bad_format), cwd=tmp_path)
    assert result.returncode == 1
    assert "key 'format': unknown format 'acme-uper' (registered: acme-upper, anthropic, echo" in result.stderr

    monkeypatch.setenv("ACME_ROUTER_KEY", "acme-router-key")
    config = write_config(tmp_path / "loud.toml", LOUD_CONFIG)
    assert run_llmrouter(site, "check", str(config), cwd=tmp_path).returncode == 0
    with serve(site, tmp_path, config) as url:
        auth = {"authorization": "Bearer acme-router-key"}
        assert httpx.get(url + "/acme/hello", timeout=10).status_code == 401
        assert httpx.get(url + "/acme/hello", headers=auth, timeout=10).json() == {"hello": "from acme"}

        def chat(**extra: Any) -> httpx.Response:
            body = {"model": "m", "messages": [{"role": "user", "content": "quiet please"}], **extra}
            return httpx.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=10)

        reply = chat()
        assert reply.json()["choices"][0]["message"]["content"] == "QUIET PLEASE!!"
        assert reply.headers["X-Router-Provider"] == "upper"
        reply = chat(plugins=[{"id": "acme-loud", "suffix": "?"}])
        assert reply.json()["choices"][0]["message"]["content"] == "QUIET PLEASE??"
        reply = chat(plugins=[{"id": "acme-loud", "times": 5}])
        assert reply.status_code == 400
        assert "setting 'times' of plugin 'acme-loud' cannot be set per request" in reply.text
        reply = chat(plugins=[{"id": "acme-first"}])
        assert reply.status_code == 400 and "[server] request_plugins" in reply.text
