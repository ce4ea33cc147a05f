"""``llmrouter serve --workers 2`` (a real subprocess, SO_REUSEPORT): both worker processes share one
SQLite counter file, so one key's rpm holds across them exactly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import aiohttp

from llmrouter.keys.sqlite_store import SQLiteStore
from llmrouter.testing import openai_chat
from tests.conftest import free_port

ALICE = "rk-alice-0123456789"


async def test_rpm_is_exact_across_worker_processes(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "router.toml"
    config.write_text(f"""
[server]
port = {port}
[logging]
path = "{tmp_path / 'logs' / 'requests.jsonl'}"
[[providers]]
name = "echo"
format = "echo"
[[routers]]
type = "fallback"
[[keys]]
name = "alice"
key_env = "ALICE_KEY"
rpm = 10
""")
    env = {**os.environ, "ALICE_KEY": ALICE, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "llmrouter.cli", "serve", str(config),
                                                "--workers", "2", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None and time.monotonic() < deadline, "router did not start"
                await asyncio.sleep(0.1)

        async def one() -> int:
            # a connection per request, so the kernel spreads them over both workers
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s, \
                    s.post(url + "/v1/chat/completions", json=openai_chat(), headers={"x-api-key": ALICE}) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(60)))
        assert statuses.count(200) == 10 and statuses.count(429) == 50
        assert (tmp_path / "logs" / "keys.sqlite3").exists()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def test_counter_file_opened_by_several_processes_at_once_never_fails(tmp_path: Path) -> None:
    """Workers open the counter file on their first limited request, often at the same instant.
    SQLite refuses a concurrent switch to WAL with "database is locked" without waiting for its
    busy timeout; a store that gave up there would let that request through unchecked."""
    for round_ in range(40):
        path = tmp_path / f"round{round_}" / "keys.sqlite3"
        stores = [SQLiteStore(path) for _ in range(3)]
        barrier = threading.Barrier(len(stores))
        errors: list[BaseException] = []

        def open_store(store: SQLiteStore, barrier: threading.Barrier = barrier,
                       errors: list[BaseException] = errors) -> None:
            barrier.wait()
            try:
                store._db()
            except BaseException as exc:  # noqa: BLE001 (collected for the assertion)
                errors.append(exc)

        threads = [threading.Thread(target=open_store, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for store in stores:
            if store._conn is not None:
                store._conn.close()
            store._executor.shutdown()
        assert errors == [], f"round {round_}: {errors}"
