"""Running the server: event loop choice, exposure checks, worker processes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket

from aiohttp import web

from llmrouter.config import Config
from llmrouter.server import check_exposure, create_app, resolve_api_key

log = logging.getLogger("llmrouter.serve")


def _use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _serve_one(config: Config, sock: socket.socket | None = None) -> None:
    fast = _use_uvloop()
    app = create_app(config)
    log.info("llmrouter listening on http://%s:%s (config: %s, uvloop: %s, pid %s)",
             config.server.host, config.server.port, config.source, fast, os.getpid())
    web.run_app(app, host=None if sock else config.server.host, port=None if sock else config.server.port,
                sock=sock, shutdown_timeout=config.server.shutdown_grace_s, print=None,
                access_log=None, handle_signals=True)


def _worker(config: Config, sock: socket.socket) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _serve_one(config, sock)


def run(config: Config, workers: int = 1) -> None:
    """Serve ``config`` until SIGINT/SIGTERM; in-flight requests get ``shutdown_grace_s`` to finish.

    :raises ConfigError: on an unsafe bind or a missing inbound key variable.
    """
    api_key = resolve_api_key(config, os.environ)
    check_exposure(config, config.server.host, api_key)
    if workers <= 1:
        _serve_one(config)
        return
    family = socket.AF_INET6 if ":" in config.server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.server.host, config.server.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(config, sock), daemon=False) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()
