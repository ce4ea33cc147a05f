"""``llmrouter serve --workers 2``: one scrape of ``/metrics`` counts the requests of every worker.

A real router subprocess with two workers (prometheus-client's multiprocess mode in a per-run
directory); requests go over fresh connections so both workers serve some of them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llmrouter.testing import openai_chat
from tests.test_shutdown import KEY, free_port


def requests_total(text: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "llmrouter_requests_total")


def in_flight(text: str) -> float:
    return next(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                if sample.name == "llmrouter_in_flight")


def pids(directory: Path, prefix: str) -> set[int]:
    return {int(m.group(1)) for f in directory.iterdir() if (m := re.fullmatch(prefix + r"_(\d+)\.db", f.name))}


async def test_one_scrape_shows_every_worker(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "router.toml"
    config.write_text(f"""
[server]
port = {port}
api_key_env = "ROUTER_KEY"

[logging]
enabled = false

[[providers]]
name = "echo"
format = "echo"

[[routers]]
type = "fallback"
""")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(ROUTER_KEY=KEY, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmrouter.cli", "serve", str(config),
                                                "--workers", "2", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    stderr = b""
    try:
        # The runner names its metrics directory in its first lines.
        deadline = time.monotonic() + 20
        match = None
        while match is None:
            assert time.monotonic() < deadline, stderr.decode()
            line = await asyncio.wait_for(proc.stderr.readline(), 20)  # type: ignore[union-attr]
            assert line, stderr.decode()
            stderr += line
            match = re.search(rb"shared through (\S+)", line)
        directory = Path(match.group(1).decode())
        assert directory.is_dir()

        sent = 0
        deadline = time.monotonic() + 30
        # Fresh connections until both workers have served requests (each has a counter file then).
        while len(pids(directory, "counter")) < 2:
            assert time.monotonic() < deadline, f"one worker served all {sent} requests"
            try:
                async with aiohttp.ClientSession(headers=auth) as session, \
                        session.post(url + "/v1/chat/completions", json=openai_chat("hi", model="m")) as resp:
                    assert resp.status == 200
                    sent += 1
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # workers still starting
        workers = pids(directory, "counter")
        assert len(workers) == 2

        # Any worker answering the scrape reports every worker's requests.
        for _ in range(6):
            async with aiohttp.ClientSession(headers=auth) as session, session.get(url + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            assert requests_total(text) == sent
            assert in_flight(text) == 0

        # A worker that dies: its live gauges are dropped at once, its counts are kept.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in pids(directory, "gauge_livesum"):
            assert time.monotonic() < deadline, "the dead worker's gauges were not removed"
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(headers=auth) as session, session.get(url + "/metrics") as resp:
            assert requests_total(await resp.text()) == sent
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (stderr + err).decode()
    # The per-run directory is removed when the router stops.
    assert not directory.exists()
