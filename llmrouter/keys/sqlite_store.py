"""The default counter store: one SQLite file (under the log folder), kept across restarts.

The standard library's ``sqlite3`` runs on one dedicated thread, so the event loop never blocks on
disk and the connection is only ever used from the thread that opened it; aiosqlite would add a
dependency for the same design. Every call is one ``BEGIN IMMEDIATE`` transaction, which also
serialises worker processes (``serve --workers N``) sharing the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from llmrouter.keys.store import Limits, Refusal, retry_after_tokens

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hits_key_ts ON hits (key, ts);
CREATE TABLE IF NOT EXISTS tokens (key TEXT NOT NULL, ts REAL NOT NULL, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_key_ts ON tokens (key, ts);
CREATE TABLE IF NOT EXISTS spend (key TEXT NOT NULL, period TEXT NOT NULL, usd REAL NOT NULL,
                                  PRIMARY KEY (key, period));
"""

OPEN_TIMEOUT_S = 30.0
"""How long opening the counter file (and each transaction) waits for other processes."""


class SQLiteStore:
    """Counters in the SQLite file ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmrouter-keys")
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Workers open the file on their first limited request, often at the same instant, and
            # SQLite answers a concurrent switch to WAL with "database is locked" at once, without
            # waiting for the busy timeout: try again for as long as that timeout would have waited.
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            while True:
                conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.executescript(_SCHEMA)
                    break
                except sqlite3.OperationalError as exc:
                    conn.close()
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            self._conn = conn
        return self._conn

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _transaction(self, function: Any, *args: Any) -> Any:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = function(db, *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def admit(self, name: str, limits: Limits, now: float) -> Refusal | None:
        """See :meth:`llmrouter.keys.store.CounterStore.admit`."""
        result: Refusal | None = await self._run(self._transaction, _admit, name, limits, now)
        return result

    async def debit(self, name: str, tokens: int, usd: float, limits: Limits, now: float) -> None:
        """See :meth:`llmrouter.keys.store.CounterStore.debit`."""
        await self._run(self._transaction, _debit, name, tokens, usd, limits, now)

    async def spent(self, name: str, period_id: str) -> float:
        """See :meth:`llmrouter.keys.store.CounterStore.spent`."""
        result: float = await self._run(self._transaction, _spent, name, period_id)
        return result

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await self._run(close)
        self._executor.shutdown(wait=True)


def _spent(db: sqlite3.Connection, name: str, period_id: str) -> float:
    row = db.execute("SELECT usd FROM spend WHERE key = ? AND period = ?", (name, period_id)).fetchone()
    return float(row[0]) if row else 0.0


def _admit(db: sqlite3.Connection, name: str, limits: Limits, now: float) -> Refusal | None:
    since = now - limits.window_s
    if limits.budget_usd is not None:
        spent = _spent(db, name, limits.period_id)
        if spent >= limits.budget_usd:
            return Refusal("budget", spent=spent)
    if limits.tpm is not None:
        db.execute("DELETE FROM tokens WHERE key = ? AND ts <= ?", (name, since))
        (used,) = db.execute("SELECT COALESCE(SUM(n), 0) FROM tokens WHERE key = ?", (name,)).fetchone()
        if used >= limits.tpm:
            entries = db.execute("SELECT ts, n FROM tokens WHERE key = ? ORDER BY ts", (name,)).fetchall()
            return Refusal("tpm", retry_after_tokens(entries, limits.tpm, limits.window_s, now))
    if limits.rpm is not None:
        db.execute("DELETE FROM hits WHERE key = ? AND ts <= ?", (name, since))
        count, oldest = db.execute("SELECT COUNT(*), MIN(ts) FROM hits WHERE key = ?", (name,)).fetchone()
        if count >= limits.rpm:
            return Refusal("rpm", max(oldest + limits.window_s - now, 0.0))
        db.execute("INSERT INTO hits (key, ts) VALUES (?, ?)", (name, now))
    return None


def _debit(db: sqlite3.Connection, name: str, tokens: int, usd: float, limits: Limits, now: float) -> None:
    if limits.tpm is not None and tokens > 0:
        db.execute("INSERT INTO tokens (key, ts, n) VALUES (?, ?, ?)", (name, now, tokens))
    if limits.budget_usd is not None and usd > 0:
        db.execute("INSERT INTO spend (key, period, usd) VALUES (?, ?, ?) "
                   "ON CONFLICT (key, period) DO UPDATE SET usd = usd + excluded.usd",
                   (name, limits.period_id, usd))
