"""A real Prometheus server scrapes the router and runs every query of docs/grafana-dashboard.json.

Debian's ``prometheus`` package (installed by ``.ci/run``) scrapes the router's ``/metrics`` once a
second over loopback, authenticating with the inbound key; each dashboard expression (Grafana's
``$__rate_interval``, ``$__range`` and ``$provider`` filled in) must then evaluate without error
and return series. Without the binary the test is skipped, except in CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from llmrouter.testing import openai_chat
from tests.test_grafana_dashboard import DASHBOARD, expressions
from tests.test_metrics import ok_reply

KEY = "rk-prometheus-test-key-0123456789"
CLOUD, FLAKY = "http://cloud.test/v1", "http://flaky.test/v1"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus); set CI=true to require it")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$provider", ".*")


async def query(session: aiohttp.ClientSession, url: str, expr: str) -> dict[str, Any]:
    async with session.get(url + "/api/v1/query", params={"query": expr}) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200 and body["status"] == "success", f"{expr}: {body}"
        return body["data"]


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(router: Any, mock_providers: Any,
                                                                          tmp_path: Path) -> None:
    binary = prometheus_binary()
    mock_providers.mock.post(CLOUD + "/chat/completions").mock(side_effect=ok_reply)
    mock_providers.mock.post(FLAKY + "/chat/completions").mock(
        return_value=httpx.Response(500, json={"error": {"message": "down"}}))
    client = await router({
        "server": {"api_key_env": "ROUTER_KEY"},
        "providers": [{"name": "cloud", "format": "openai", "base_url": CLOUD, "discover": False,
                       "cost_per_1m_tokens": 3.0},
                      {"name": "flaky", "format": "openai", "base_url": FLAKY, "discover": False, "max_retries": 0}],
        "routers": [{"type": "prefix", "model_prefix": "flaky/", "provider": "flaky"},
                    {"type": "fallback", "providers": ["cloud"]}],
        "routing": {"failover": False, "circuit_failures": 1},
    }, environ={"ROUTER_KEY": KEY})
    auth = {"Authorization": f"Bearer {KEY}"}

    async def traffic() -> None:
        for body in (openai_chat("hi", model="gpt-4o"), openai_chat("hi", model="gpt-4o", stream=True),
                     openai_chat("hi", model="flaky/m")):
            await client.openai(body, headers=auth)

    await traffic()
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: llmrouter
    metrics_path: /metrics
    authorization:
      credentials: {KEY}
    static_configs:
      - targets: ["127.0.0.1:{client.client.server.port}"]
""")
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            # Three scrapes with traffic in between, so rates have samples to work on.
            deadline = time.monotonic() + 30
            scrapes = 0.0
            while scrapes < 3:
                assert time.monotonic() < deadline and proc.returncode is None, "prometheus did not scrape the router"
                await asyncio.sleep(0.5)
                try:
                    data = await query(session, url, 'count_over_time(up{job="llmrouter"}[1m])')
                except aiohttp.ClientConnectionError:
                    continue
                scrapes = float(data["result"][0]["value"][1]) if data["result"] else 0.0
                if scrapes >= 1:
                    await traffic()
            target = await query(session, url, 'up{job="llmrouter"}')
            assert target["result"][0]["value"][1] == "1", "the scrape failed (auth?)"
            empty = []
            for expr in expressions():
                if expr.startswith("label_values"):
                    continue  # a Grafana function, not PromQL
                result = (await query(session, url, grafana_to_promql(expr)))["result"]
                if not result:
                    empty.append(expr)
            assert not empty, f"dashboard queries without data ({DASHBOARD.name}): {empty}"
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
