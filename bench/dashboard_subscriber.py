"""A dashboard subscriber for the benchmark: reads the router's ``/dashboard/events`` SSE stream and
throws it away, so the router pays for serialising every event to a live dashboard, as in
production with a dashboard open.

It subscribes with the query the dashboard page uses (:data:`PAGE_QUERY`; a test keeps the two the
same), so a big request reaches it as the page gets it: a preview. ``--full`` subscribes with no
query (every request whole, as ``watch --json`` gets them).

``python bench/dashboard_subscriber.py --url http://127.0.0.1:9103/dashboard/events``; on SIGTERM it
prints ``{"bytes": N, "events": M}`` and exits.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

import orjson

PAGE_QUERY = "history=100&request_kb=16"


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Subscribe and read until terminated; report what was received."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--full", action="store_true", help="every request whole (no request_kb)")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    path = url.path if args.full else f"{url.path}?{PAGE_QUERY}"
    signal.signal(signal.SIGTERM, _stop)
    received = events = 0
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=None) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAccept: text/event-stream\r\n\r\n"
                         .encode())
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    break
                received += len(data)
                events += data.count(b"\nevent: complete")
    except KeyboardInterrupt:
        pass
    sys.stdout.write(orjson.dumps({"bytes": received, "events": events}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
