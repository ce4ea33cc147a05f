"""The README's first steps, as a new user takes them: ``llmrouter serve`` on the embedded default
config as a real subprocess on a free loopback port, the curl example, the dashboard, the probes,
every client endpoint with the official SDKs, then ``log cat``, ``spend`` and ``replay`` on the log
that session produced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import free_port

CLI = [sys.executable, "-m", "llmrouter.cli"]


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``llmrouter serve --port P`` with no config, in a fresh working directory."""
    cwd = tmp_path_factory.mktemp("fresh")
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--quiet"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.05)
    try:
        yield url, cwd
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_readme_walkthrough(served: tuple[str, Path]) -> None:
    url, cwd = served
    # the curl example
    reply = httpx.post(url + "/v1/chat/completions", json={
        "model": "code/any", "messages": [{"role": "user", "content": "def hello(): pass"}]})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "def hello(): pass"
    assert reply.headers["X-Router-Provider"] == "echo-code" and reply.headers["X-Router-Model"] == "echo-code-1"
    assert reply.headers["X-Router-Request-Tags"] == "code"
    curl_id = reply.headers["X-Router-Request-Id"]

    dashboard = httpx.get(url + "/dashboard")
    assert dashboard.status_code == 200 and "text/html" in dashboard.headers["content-type"]
    assert httpx.head(url + "/").status_code == 200
    assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["echo-1", "echo-code-1"]
    assert "llmrouter_requests_total" in httpx.get(url + "/metrics").text

    oai = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    assert oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]
                                       ).choices[0].message.content == "hi"
    assert oai.models.retrieve("echo-1").owned_by == "echo"
    assert oai.responses.create(model="m", input="plain responses").output_text == "plain responses"
    with oai.responses.stream(model="m", input="streamed responses") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == "streamed responses"
    ant = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    with ant.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "look at the photo"}]) as s:
        assert s.get_final_text() == "look at the photo"
    assert ant.messages.count_tokens(model="m", messages=[{"role": "user", "content": "count"}]).input_tokens > 0

    bad = httpx.post(url + "/v1/messages", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert httpx.get(url + "/health").json()["status"] == "ok"  # still serving

    # the log that session produced, through the CLI
    cat = run_cli(cwd, "log", "cat")
    entries = [json.loads(line) for line in cat.stdout.splitlines()]
    assert cat.returncode == 0 and curl_id in [e["id"] for e in entries]
    assert {"vision"} <= {t for e in entries for t in e["tags"]}
    spend = run_cli(cwd, "spend", "logs/requests.jsonl")
    assert spend.returncode == 0 and "echo-code" in spend.stdout
    same = run_cli(cwd, "replay", "logs/requests.jsonl")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no routing differences" in same.stdout
    (cwd / "other.toml").write_text('[[providers]]\nname = "other"\nformat = "echo"\n'
                                    '[[routers]]\ntype = "fallback"\n')
    changed = run_cli(cwd, "replay", "logs/requests.jsonl", "--config", "other.toml")
    assert changed.returncode == 1 and f"{curl_id}: provider echo-code -> other" in changed.stdout
    (cwd / "empty.jsonl").write_text("")
    assert run_cli(cwd, "replay", "empty.jsonl").returncode == 2
