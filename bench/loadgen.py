"""Closed-loop load generator for the benchmark (an aiohttp client; run it in its own process).

``concurrency`` workers each send one request, wait for the whole reply, and send the next, until
``duration_s`` has passed or ``max_requests`` have been sent. Reports requests/s and latency
percentiles; for streams also time-to-first-token (first content chunk) and the gaps between
content chunks, as one JSON object on stdout.

``python bench/loadgen.py --url http://127.0.0.1:9101 --shape openai -c 32 --duration 5 [--stream]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_workload  # noqa: E402  (a sibling script)

SHAPES = ("openai", "anthropic")
WORKLOADS = ("1kb", "agent")
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}
MAX_ERROR_SAMPLES = 3

# A realistic but neutral prompt: no keyword the bench router config classifies on.
_SYSTEM = (
    "You are a concise assistant for a travel desk. Answer in plain English, at most three short paragraphs."
)
_USER = (
    "We are planning a weekend on the coast in late spring. Suggest a relaxed itinerary for two "
    "people who like walking, small museums and seafood, with one rainy-day alternative, and keep "
    "the travel between stops under an hour."
)


def request_body(shape: str, stream: bool, model: str | None = None, workload: str = "1kb") -> dict[str, Any]:
    """The JSON body sent for ``shape`` (``openai`` or ``anthropic``): a short chat (``1kb``) or a
    ~260 KB coding-agent request (``agent``, see ``agent_workload.py``)."""
    model = model or DEFAULT_MODELS[shape]
    if workload == "agent":
        return agent_workload.agent_body(shape, model, stream)
    if shape == "openai":
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}],
            "max_tokens": 512,
            "temperature": 0.2,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body
    body = {
        "model": model,
        "max_tokens": 512,
        "system": _SYSTEM,
        "messages": [{"role": "user", "content": _USER}],
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return body


def request_headers(shape: str) -> dict[str, str]:
    """Headers the official SDKs would send (the key is a dummy)."""
    if shape == "openai":
        return {"Content-Type": "application/json", "Authorization": "Bearer bench-dummy-key"}
    return {
        "Content-Type": "application/json",
        "x-api-key": "bench-dummy-key",
        "anthropic-version": "2023-06-01",
    }


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _is_content(shape: str, payload: bytes) -> bool:
    """Whether an SSE ``data:`` payload carries assistant content (a text or tool-argument delta)."""
    if payload == b"[DONE]":
        return False
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    if shape == "anthropic":
        return data.get("type") == "content_block_delta"
    for choice in data.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls"):
            return True
    return False


@dataclass
class _Samples:
    """What the workers record during the measured window."""

    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message)


async def _one_stream(resp: aiohttp.ClientResponse, shape: str, t0: float, samples: _Samples) -> bool:
    """Read an SSE reply, recording TTFT and content-chunk gaps; ``False`` if it carried no content."""
    times: list[float] = []
    async for line in resp.content:
        if line.startswith(b"data:") and _is_content(shape, line[5:].strip()):
            times.append(time.perf_counter())
    if not times:
        return False
    samples.ttft_ms.append((times[0] - t0) * 1000)
    samples.gaps_ms.extend((b - a) * 1000 for a, b in zip(times, times[1:], strict=False))
    samples.chunks.append(len(times))
    return True


async def _worker(
    session: aiohttp.ClientSession,
    url: str,
    shape: str,
    stream: bool,
    payload: bytes,
    headers: dict[str, str],
    deadline: float,
    max_requests: int,
    samples: _Samples,
) -> None:
    """Send requests back to back until the deadline or the shared request budget is reached."""
    while time.perf_counter() < deadline and samples.sent < max_requests:
        samples.sent += 1
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=payload, headers=headers) as resp:
                if resp.status != 200:
                    text = (await resp.read())[:200].decode("utf-8", "replace")
                    samples.error(f"HTTP {resp.status}: {text}")
                    continue
                if stream:
                    ok = await _one_stream(resp, shape, t0, samples)
                    if not ok:
                        samples.error("stream carried no content chunks")
                        continue
                else:
                    await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            samples.error(f"{type(exc).__name__}: {exc}")
            continue
        samples.latencies_ms.append((time.perf_counter() - t0) * 1000)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _summary(samples: _Samples, elapsed: float) -> dict[str, Any]:
    """Turn raw samples into the reported numbers."""
    done = len(samples.latencies_ms)
    out: dict[str, Any] = {
        "requests": done,
        "errors": samples.errors,
        "error_samples": samples.error_samples,
        "elapsed_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "lat_p50_ms": _ms(percentile(samples.latencies_ms, 50)),
        "lat_p99_ms": _ms(percentile(samples.latencies_ms, 99)),
        "lat_mean_ms": _ms(sum(samples.latencies_ms) / done) if done else None,
    }
    return out


def _stream_summary(samples: _Samples) -> dict[str, Any]:
    chunks = samples.chunks
    return {
        "ttft_p50_ms": _ms(percentile(samples.ttft_ms, 50)),
        "ttft_p99_ms": _ms(percentile(samples.ttft_ms, 99)),
        "gap_p50_ms": _ms(percentile(samples.gaps_ms, 50)),
        "gap_p99_ms": _ms(percentile(samples.gaps_ms, 99)),
        "chunks_per_stream": (sum(chunks) / len(chunks)) if chunks else None,
    }


async def _phase(
    session: aiohttp.ClientSession,
    url: str,
    shape: str,
    stream: bool,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    model: str | None,
    workload: str = "1kb",
) -> tuple[_Samples, float]:
    """Run the workers once; returns the samples and the elapsed wall time."""
    payload = orjson.dumps(request_body(shape, stream, model, workload))
    headers = request_headers(shape)
    samples = _Samples()
    start = time.perf_counter()
    deadline = start + duration_s
    await asyncio.gather(
        *(
            _worker(session, url, shape, stream, payload, headers, deadline, max_requests, samples)
            for _ in range(concurrency)
        )
    )
    return samples, time.perf_counter() - start


async def run_load(
    base_url: str,
    *,
    shape: str,
    stream: bool,
    concurrency: int,
    duration_s: float,
    max_requests: int = 1_000_000,
    warmup_s: float = 0.0,
    model: str | None = None,
    timeout_s: float = 30.0,
    workload: str = "1kb",
) -> dict[str, Any]:
    """Load ``base_url`` and return the summary (see the module docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    if concurrency < 1 or duration_s <= 0 or max_requests < 1:
        raise ValueError("concurrency, duration and max_requests must be positive")
    url = base_url.rstrip("/") + PATHS[shape]
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        if warmup_s > 0:
            await _phase(session, url, shape, stream, concurrency, warmup_s, max_requests, model, workload)
        samples, elapsed = await _phase(
            session, url, shape, stream, concurrency, duration_s, max_requests, model, workload
        )
    result: dict[str, Any] = {
        "url": url,
        "shape": shape,
        "workload": workload,
        "stream": stream,
        "concurrency": concurrency,
        **_summary(samples, elapsed),
    }
    if stream:
        result.update(_stream_summary(samples))
    return result


def _run(coro: Any) -> Any:
    """Run ``coro`` on uvloop when installed (a cheaper client leaves more CPU to the upstream)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: prints the result as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:9101")
    parser.add_argument("--shape", choices=SHAPES, default="openai")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--workload", choices=WORKLOADS, default="1kb", help="1 KB chat or ~260 KB agent request")
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.0, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="upper bound per phase")
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    result = _run(
        run_load(
            args.url,
            shape=args.shape,
            stream=args.stream,
            concurrency=args.concurrency,
            duration_s=args.duration,
            max_requests=args.max_requests,
            warmup_s=args.warmup,
            model=args.model,
            workload=args.workload,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
