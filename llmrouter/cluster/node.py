"""One process's link to the cluster's Redis: an outbox drained in the background, a stream reader.

Nothing on a request's path waits for Redis. :meth:`ClusterNode.send` appends an operation to a
bounded outbox and returns; a writer task sends whatever has queued up as one pipelined round trip,
packing the messages for each stream into one entry (see :meth:`ClusterNode._coalesce`).
Messages go to two Redis streams, each capped at ``stream_len`` entries (``XADD MAXLEN ~``):
``<prefix>:state`` (circuit changes, discovered models: small and rare, read by every node) and
``<prefix>:events`` (the request events: read only by nodes that have an event subscriber right
now, a dashboard, ``watch`` or ``tui``, so the cluster's read traffic grows with the number of
open dashboards, not with the square of the number of nodes). A reader task follows them with
blocking ``XREAD`` and hands each message to the handler registered for its ``kind``.

A stream rather than pub/sub because of outages: a node that was cut off resumes reading after the
last entry it saw, so messages other nodes published while it was away (or flushed from their own
outboxes when they got back first) still reach it, in order. Pub/sub would lose whatever was
published while a node was not subscribed.

Every message carries the sender's node id and a per-node sequence number. A receiver ignores its
own messages and any message whose sequence number it has already seen from that node, so a batch
that is re-sent after a broken connection is never delivered twice.

When Redis goes away the node logs one warning, keeps the outbox (bounded: the oldest entries are
dropped first, and counted), and reconnects with backoff; on reconnecting it logs that it rejoined,
runs the registered ``on_join`` callbacks (which re-read shared state) and flushes the outbox.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from llmrouter.config import ClusterConfig
from llmrouter.jsonutil import dumps, loads

log = logging.getLogger("llmrouter.cluster")

Message = dict[str, Any]
Handler = Callable[[Message], None]
JoinCallback = Callable[[Any], Awaitable[None]]
#: An outbox entry: a redis-py pipeline method name and its arguments.
Operation = tuple[str, tuple[Any, ...]]

BATCH_MAX = 512
_LATER = "_later"
_BLOCK_MS = 250
_STOP_TIMEOUT_S = 2.0
_SEEN_NODES_MAX = 4096


def new_node_id() -> str:
    """A node id unique across machines and restarts: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class ClusterNode:
    """A process's membership in the cluster. Start it with :meth:`start`, stop it with :meth:`stop`.

    ``stats`` counts what the node did: ``sent`` operations, ``flushes`` (round trips that sent
    them), ``received`` messages, ``dropped`` outbox entries, ``outages``.
    """

    def __init__(self, config: ClusterConfig, node_id: str | None = None) -> None:
        assert config.redis_url, "a cluster node needs [cluster] redis_url"
        self.config = config
        self.node_id = node_id or new_node_id()
        self.state_stream = f"{config.prefix}:state"
        self.events_stream = f"{config.prefix}:events"
        self._last_id: bytes | str | None = None  # in the state stream
        self._events_id: bytes | str | None = None  # in the events stream, while following it
        self._node_bytes = self.node_id.encode()
        self._state_bytes = self.state_stream.encode()
        self.connected = False
        self.stats = {"sent": 0, "flushes": 0, "received": 0, "dropped": 0, "outages": 0}
        self._seq = itertools.count(1)
        self._outbox: deque[Operation] = deque()
        self._wake = asyncio.Event()
        self._joined = asyncio.Event()
        self._sending = 0
        self._linked = False
        self._handlers: dict[str, Handler] = {}
        self._on_join: list[JoinCallback] = []
        self._last_seq: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._stopping = False

    def key(self, name: str) -> str:
        """The Redis key ``name`` under this cluster's prefix."""
        return f"{self.config.prefix}:{name}"

    # -- what the rest of the router calls ----------------------------------------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Call ``handler(message)`` for every message of ``kind`` another node publishes."""
        self._handlers[kind] = handler

    def on_join(self, callback: JoinCallback) -> None:
        """Await ``callback(client)`` each time the node (re)connects, before the outbox is flushed."""
        self._on_join.append(callback)

    def message(self, kind: str, body: Message) -> bytes:
        """``body`` as a bus message of ``kind`` from this node, serialised."""
        return dumps({"kind": kind, "node": self.node_id, "seq": next(self._seq), **body})

    def publish(self, data: bytes) -> None:
        """Queue a serialised state message (from :meth:`message`) for every node. Never blocks."""
        self.send("xadd", self.state_stream, {"n": self.node_id, "m": data}, "*", self.config.stream_len, True)

    def follow_events(self, since_ms: int | None) -> None:
        """Start reading the events stream from ``since_ms`` (wall clock), or stop with None."""
        self._events_id = None if since_ms is None else f"{max(0, since_ms - 1)}-0"

    def publish_later(self, encode: Callable[[], bytes], also: Callable[[bytes], list[Operation]] | None = None) -> None:
        """Queue a message for the events stream, serialised by the writer task, off the caller's path.

        ``encode`` returns the message (built with :meth:`message`); ``also`` may return further
        operations that need the same bytes (e.g. a history list). Never blocks.
        """
        self.send(_LATER, encode, also)

    def _expand(self, command: str, args: tuple[Any, ...]) -> list[Operation]:
        if command != _LATER:
            return [(command, args)]
        encode, also = args
        data = encode()
        ops: list[Operation] = [("xadd", (self.events_stream, {"n": self.node_id, "m": data}, "*", self.config.stream_len,
                                          True))]
        if also is not None:
            ops.extend(also(data))
        return ops

    def send(self, command: str, *args: Any) -> None:
        """Queue one Redis command (a pipeline method name and arguments). Never blocks; when the
        outbox is full the oldest entry is dropped and counted."""
        outbox = self._outbox
        if len(outbox) >= self.config.publish_queue:
            outbox.popleft()
            self.stats["dropped"] += 1
        outbox.append((command, args))
        if self.connected:
            self._wake.set()

    async def read(self, command: str, *args: Any) -> Any:
        """Run one read command now; None when Redis is unreachable (the caller uses local state)."""
        client = self._client
        if client is None or not self.connected:
            return None
        try:
            return await getattr(client, command)(*args)
        except Exception as exc:  # an outage must never fail the caller
            log.debug("cluster read %s failed: %s", command, exc)
            return None

    def congested(self, backlog: int) -> bool:
        """Whether Redis is unreachable or more than ``backlog`` operations wait to be sent."""
        return not self.connected or len(self._outbox) > backlog

    async def ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the node to be connected; whether it is."""
        if not self.connected and self._task is not None:
            try:
                await asyncio.wait_for(self._joined.wait(), timeout_s)
            except TimeoutError:
                pass
        return self.connected

    def snapshot(self) -> dict[str, Any]:
        """State for ``/health``."""
        return {"node": self.node_id, "connected": self.connected, "queued": len(self._outbox) + self._sending,
                **self.stats}

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in the background: the router serves on local state until Redis answers)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="llmrouter-cluster")

    async def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Flush what is queued (for at most ``flush_timeout_s``), then disconnect."""
        if self._task is None:
            return
        if self.connected and self._outbox:
            self._wake.set()
            deadline = asyncio.get_running_loop().time() + flush_timeout_s
            while self._outbox and self.connected and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        self._stopping = True
        task, self._task = self._task, None
        task.cancel()
        # Bounded: a Redis call that does not react to cancellation must not hold up shutdown.
        done, _ = await asyncio.wait({task}, timeout=_STOP_TIMEOUT_S)
        if not done:
            log.warning("cluster: the Redis link did not stop within %g s; leaving it", _STOP_TIMEOUT_S)

    async def _run(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        cfg = self.config
        delay = 0.1
        ever_connected = False
        while not self._stopping:
            client = aioredis.Redis.from_url(cfg.redis_url, socket_connect_timeout=cfg.connect_timeout_s,
                                             socket_timeout=max(cfg.connect_timeout_s, 5.0),
                                             retry=Retry(NoBackoff(), 0))
            try:
                await client.ping()
                if self._last_id is None:  # first join: only what is published from now on
                    newest = await client.xrevrange(self.state_stream, count=1)
                    self._last_id = newest[0][0] if newest else "0-0"
                self._client = client
                for callback in self._on_join:
                    await callback(client)
                self.connected = True
                self._joined.set()
                delay = 0.1
                if ever_connected:
                    log.warning("cluster: rejoined Redis at %s; shared state is back (node %s)",
                                safe_url(cfg.redis_url), self.node_id)
                else:
                    log.info("cluster: connected to Redis at %s as node %s", safe_url(cfg.redis_url), self.node_id)
                ever_connected = True
                await self._serve(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected or not ever_connected and delay == 0.1:
                    self.stats["outages"] += 1
                    log.warning("cluster: Redis at %s unreachable (%s: %s); serving on local state and "
                                "retrying", safe_url(cfg.redis_url), type(exc).__name__, exc)
            finally:
                self.connected = False
                self._joined.clear()
                self._client = None
                await _close(client)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(cfg.reconnect_max_s, delay * 2)

    async def _serve(self, client: Any) -> None:
        """Run the writer and the listener until either fails (the connection is gone)."""
        self._linked = True
        writer = asyncio.create_task(self._write(client))
        reader = asyncio.create_task(self._listen(client))
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the connection error
            raise ConnectionError("cluster link ended")
        finally:
            # redis-py can swallow a cancellation that lands inside a blocking read, so the loops
            # also check this flag (a blocking XREAD returns within _BLOCK_MS).
            self._linked = False
            self._wake.set()
            for task in (writer, reader):
                task.cancel()
            await asyncio.wait({writer, reader}, timeout=_STOP_TIMEOUT_S)

    async def _write(self, client: Any) -> None:
        outbox = self._outbox
        while self._linked:
            if not outbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[Operation] = []
            for _ in range(min(BATCH_MAX, len(outbox))):
                batch.extend(self._expand(*outbox.popleft()))
            batch = self._coalesce(batch)
            pipe = client.pipeline(transaction=False)
            for command, args in batch:
                getattr(pipe, command)(*args)
            self._sending = len(batch)
            try:
                await pipe.execute()
            except BaseException:  # a failure, or cancelled because the reader saw the link die
                # Put the batch back, already serialised: receivers drop re-sent messages by sequence number.
                outbox.extendleft(reversed(batch))
                while len(outbox) > self.config.publish_queue:
                    outbox.popleft()
                    self.stats["dropped"] += 1
                raise
            finally:
                self._sending = 0
            self.stats["sent"] += len(batch)
            self.stats["flushes"] += 1

    def _coalesce(self, batch: list[Operation]) -> list[Operation]:
        """One command per kind and key for a whole batch: the messages for each stream go in one
        entry (a JSON array), the values for each list in one ``LPUSH`` and one ``LTRIM``.

        redis-py spends 20-35 µs of CPU per command; packing keeps that per flush, not per event.
        """
        packs: dict[str, list[bytes]] = {}
        pushes: dict[str, list[Any]] = {}
        trims: dict[str, tuple[Any, ...]] = {}
        rest: list[Operation] = []
        for command, args in batch:
            if command == "xadd":
                fields = args[1]
                chunk = fields["m"] if "m" in fields else fields["p"][1:-1]
                packs.setdefault(args[0], []).append(chunk)
            elif command == "lpush":
                pushes.setdefault(args[0], []).extend(args[1:])
            elif command == "ltrim":
                trims[args[0]] = args
            else:
                rest.append((command, args))
        for stream, chunks in packs.items():
            pack = b"[" + b",".join(chunks) + b"]"
            rest.append(("xadd", (stream, {"n": self.node_id, "p": pack}, "*", self.config.stream_len, True)))
        for key, values in pushes.items():
            rest.append(("lpush", (key, *values)))
        rest.extend(("ltrim", args) for args in trims.values())
        return rest

    async def _listen(self, client: Any) -> None:
        while self._linked:
            streams = {self.state_stream: self._last_id}
            following = self._events_id
            if following is not None:
                streams[self.events_stream] = following
            reply = await client.xread(streams, count=BATCH_MAX, block=_BLOCK_MS)
            for stream, entries in reply or ():
                is_state = stream == self._state_bytes
                for entry_id, fields in entries:
                    if is_state:
                        self._last_id = entry_id
                    elif self._events_id is not None:
                        self._events_id = entry_id
                    if fields.get(b"n") != self._node_bytes:  # its own entries are not even parsed
                        self._unpack(fields.get(b"p") or fields.get(b"m"))

    def _unpack(self, data: bytes | None) -> None:
        try:
            messages = loads(data)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            messages = None
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, list):
            log.warning("cluster: ignoring an unreadable stream entry")
            return
        for message in messages:
            self._handle(message)

    def _handle(self, message: Any) -> None:
        try:
            node, seq, kind = message["node"], message["seq"], message["kind"]
        except (KeyError, TypeError):
            log.warning("cluster: ignoring an unreadable message")
            return
        if node == self.node_id or seq <= self._last_seq.get(node, 0):
            return
        if len(self._last_seq) >= _SEEN_NODES_MAX and node not in self._last_seq:
            self._last_seq.clear()  # restarted nodes have new ids: forget the long gone
        self._last_seq[node] = seq
        self.stats["received"] += 1
        handler = self._handlers.get(kind)
        if handler is not None:
            try:
                handler(message)
            except Exception:  # one bad message must not end the listener
                log.exception("cluster: handling a %r message failed", kind)


def safe_url(url: str | None) -> str:
    """``url`` with any password masked, for logs and ``llmrouter check``."""
    if not url or "@" not in url:
        return url or ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


async def _close(client: Any) -> None:
    try:
        await client.aclose()
    except Exception:  # closing a dead connection may fail; nothing to do
        pass
