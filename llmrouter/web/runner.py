"""Running the server: event loop choice, exposure checks, worker processes."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from multiprocessing.connection import wait as wait_for_exit
from pathlib import Path

from aiohttp import web

from llmrouter.config import Config, ConfigError
from llmrouter.keys.auth import KeyRing
from llmrouter.observe.accesslog import AccessLog
from llmrouter.observe.metrics import MULTIPROC_ENV, multiprocess_dir, worker_exited
from llmrouter.web.app import BUS, LIVE, check_exposure, create_app, resolve_api_key

log = logging.getLogger("llmrouter.web.runner")


class ListenError(ConfigError):
    """The configured host and port cannot be listened on (taken, privileged, not ours)."""


def base_url(host: str, port: int) -> str:
    """The URL a client would use for ``host:port`` (IPv6 literals in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_error(exc: OSError, host: str, port: int) -> ListenError:
    """One line for a failure to listen: the port taken, not allowed, or the address not ours."""
    if exc.errno == errno.EADDRINUSE:
        return ListenError(f"port {port} on {host} is in use")
    if exc.errno == errno.EACCES:
        return ListenError(f"not allowed to listen on port {port} on {host} (ports below 1024 need privileges)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(f"cannot listen on {host}: not an address of this machine")
    return ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
GC_GEN0_THRESHOLD = 50_000


def _use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server.

    Objects alive after start-up (modules, config, plugins) are moved out of the collector's view,
    and the youngest generation is collected after 50,000 allocations instead of 700: each request
    allocates thousands of short-lived objects that reference counting frees anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _serve_one(config: Config, sock: socket.socket | None = None, supervisor: int | None = None) -> None:
    fast = _use_uvloop()
    app = create_app(config)
    if supervisor is not None:
        # A reload asked of one worker (POST /admin/reload) reaches its siblings through the supervisor.
        app[LIVE].on_reloaded = lambda: os.kill(supervisor, signal.SIGHUP)
    _tune_gc()
    asyncio.run(serve_app(app, config, sock, uvloop=fast))


async def serve_app(app: web.Application, config: Config, sock: socket.socket | None = None, *,
                    uvloop: bool = False) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully; SIGHUP reloads the config.

    Shutdown stops accepting connections, ends dashboard streams, gives in-flight requests (streams
    included) up to ``shutdown_grace_s`` to finish, cancels what is left (still logging it), then
    closes upstream connections and flushes the request log. Further signals during shutdown are
    ignored.
    """
    grace = config.server.shutdown_grace_s
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=grace)
    await runner.setup()
    site: web.BaseSite = (web.SockSite(runner, sock) if sock is not None
                          else web.TCPSite(runner, config.server.host, config.server.port))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise bind_error(exc, config.server.host, config.server.port) from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses  # the real port when the config asked for port 0 (any free port)
    port = bound[0][1] if bound and isinstance(bound[0], tuple) else config.server.port
    log.info("llmrouter listening on %s (config: %s, uvloop: %s, pid %s)",
             base_url(config.server.host, port), config.source, uvloop, os.getpid())
    access = AccessLog(app[BUS]) if config.server.access_log else None
    if access is not None:
        access.start()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            log.info("%s received: shutdown already in progress", sig.name)
            return
        log.info("%s received: shutting down; no new connections, %d request(s) in flight get up to %g s",
                 sig.name, app[LIVE].in_flight, grace)
        stopping.set()

    reloads: set[asyncio.Task[object]] = set()

    def on_hangup() -> None:
        if stopping.is_set():
            return
        task = loop.create_task(app[LIVE].reload("SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    if _early_signal is not None:  # a worker told to stop while it was still starting
        on_signal(_early_signal)
    elif _early_hangup:  # told to reload while starting: the file may have changed since the fork
        on_hangup()
    try:
        await stopping.wait()
    finally:
        await runner.cleanup()
        if access is not None:
            await access.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("llmrouter stopped (pid %s)", os.getpid())


_early_signal: signal.Signals | None = None
_early_hangup = False


def _remember_hangup(signum: int, frame: object) -> None:
    global _early_hangup
    _early_hangup = True


def _remember_signal(signum: int, frame: object) -> None:
    global _early_signal
    _early_signal = signal.Signals(signum)


def _worker(config: Config, sock: socket.socket) -> None:
    # Until the event loop takes over signals, a SIGTERM must not kill the half-started worker:
    # remember it, start, then shut down gracefully like any other worker.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember_signal)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _serve_one(config, sock, supervisor=os.getppid())


def check_log_folder(config: Config) -> None:
    """Create the request log's folder (and the key counters', which live beside it), or refuse to
    start naming ``[logging] path``, before any worker starts.

    :raises ConfigError: when the folder cannot be created or written to.
    """
    counters = any(key.limited for key in config.keys) and not config.cluster.redis_url
    if not config.logging.enabled and not counters:
        return
    folder = Path(config.logging.path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(folder, os.W_OK | os.X_OK) else "permission denied"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    if problem is not None:
        raise ConfigError(f"{config.source}: [logging] key 'path': cannot write the request log in "
                          f"'{folder}': {problem}")


def run(config: Config, workers: int = 1) -> None:
    """Serve ``config`` until SIGINT/SIGTERM; in-flight requests get ``shutdown_grace_s`` to finish.

    :raises ConfigError: on an unsafe bind or a missing inbound key variable;
        :class:`ListenError` when the host and port cannot be listened on.
    """
    api_key = resolve_api_key(config, os.environ)
    KeyRing.from_config(config, os.environ, api_key)  # an unset key_env fails here, before any worker starts
    check_exposure(config, config.server.host, api_key)
    check_log_folder(config)
    signal.signal(signal.SIGHUP, _remember_hangup)  # until the event loop handles it: never fatal
    if workers <= 1:
        _serve_one(config)
        return
    family = socket.AF_INET6 if ":" in config.server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.server.host, config.server.port))
    except OSError as exc:
        sock.close()
        raise bind_error(exc, config.server.host, config.server.port) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    metrics_dir, own_dir = (multiprocess_dir(), False) if config.metrics.enabled else (None, False)
    if config.metrics.enabled and metrics_dir is None:
        # One directory per run, set before the fork so every worker's metrics land in it and any
        # worker's /metrics answers for all of them.
        metrics_dir, own_dir = tempfile.mkdtemp(prefix="llmrouter-metrics-"), True
        os.environ[MULTIPROC_ENV] = metrics_dir
    if metrics_dir is not None:
        log.info("metrics of the %d workers are shared through %s", workers, metrics_dir)
    try:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_worker, args=(config, sock), daemon=False) for _ in range(workers)]
        for proc in procs:
            proc.start()
        sock.close()  # only the workers listen: once they stop accepting, the port is closed
        _supervise(procs, metrics_dir)
    finally:
        if own_dir:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)  # type: ignore[arg-type]


def _supervise(procs: list[multiprocessing.process.BaseProcess], metrics_dir: str | None = None) -> None:
    """Wait for the workers; the first SIGINT/SIGTERM is passed on to each as SIGTERM (once), every
    SIGHUP to each as SIGHUP (each worker reloads its config; an unchanged config is a no-op).

    Each worker that exits has its live gauges removed from ``metrics_dir`` at once, so the
    survivors' scrapes stop counting its in-flight requests and circuits.
    """
    forwarded = False

    def hangup(signum: int, frame: object) -> None:
        # A worker that reloaded through POST /admin/reload signals us too; it then reloads again
        # and finds the config unchanged.
        if forwarded:
            return
        log.info("SIGHUP received: reloading the config in %d workers", len(procs))
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGHUP)

    def forward(signum: int, frame: object) -> None:
        nonlocal forwarded
        if forwarded:
            return
        forwarded = True
        log.info("%s received: stopping %d workers", signal.Signals(signum).name, len(procs))
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)
    try:
        running = {proc.sentinel: proc for proc in procs}
        while running:
            for sentinel in wait_for_exit(list(running)):
                proc = running.pop(sentinel)  # type: ignore[call-overload]
                proc.join()
                if metrics_dir is not None and proc.pid is not None:
                    worker_exited(proc.pid, metrics_dir)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [proc.pid for proc in procs if proc.exitcode not in (0, None)]
    if failed:
        log.warning("workers %s exited with an error", failed)
