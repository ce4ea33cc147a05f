"""Run the whole benchmark: what the router adds on top of a network hop.

Starts the mock upstream, the floor proxy and the router (``llmrouter serve`` on a copy of
``bench/router.toml``), each in its own process, with the proxies pinned to one core and the
upstream and load generator to another when ``taskset`` and two cores are available. Then it
measures direct (load generator -> upstream), floor (-> floor proxy -> upstream) and router
(-> router -> upstream), non-streaming and streaming, for the OpenAI and Anthropic shapes, for two
workloads: ``1kb`` (a short chat, concurrency 1 and 32) and ``agent`` (a ~260 KB coding-agent
request, concurrency 1 and 8), and prints markdown tables. While the router is measured a
dashboard subscriber reads its event stream. Every process it started is stopped at the end, on
error too.

``python bench/run.py [--quick] [--workload 1kb|agent|all] [--json [PATH]] [--targets direct,floor,router]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import loadgen  # noqa: E402  (a sibling script, importable once BENCH_DIR is on the path)
import mock_upstream  # noqa: E402

TARGETS = ("direct", "floor", "router")
SHAPES = ("openai", "anthropic")
WORKLOADS = ("1kb", "agent")
CONCURRENCIES = {"1kb": (1, 32), "agent": (1, 8)}
LOADED = {"1kb": 32, "agent": 8}
"""The concurrency at which each workload's router/floor throughput ratio is taken."""
TARGET_RATIO = {"1kb": 0.5, "agent": 0.6}
UPSTREAM_KEY_ENV = "BENCH_UPSTREAM_KEY"
# Literal strings of bench/router.toml that the run rewrites in its temporary copy.
CONFIG_UPSTREAM = "127.0.0.1:9101"
CONFIG_LOG_PATH = "/tmp/llmrouter-bench/requests.jsonl"
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
READY_TIMEOUT_S = 30.0


@dataclass
class Settings:
    """How long and how hard to measure."""

    duration_s: float
    warmup_s: float
    chunks: int
    chunk_delay_ms: float
    targets: tuple[str, ...]
    pin: bool
    workloads: tuple[str, ...] = ("1kb",)
    dashboard: bool = True
    full_dashboard: bool = False


@dataclass
class Service:
    """A process this run started and the base URL it serves."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the process's output, for error reports."""
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Run:
    """Everything one benchmark run started and found."""

    settings: Settings
    workdir: Path
    proxy_cpu: str | None
    load_cpu: str | None
    services: dict[str, Service] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pick_cpus(pin: bool) -> tuple[str | None, str | None]:
    """``(proxy cpu, load cpu)`` for taskset, or ``(None, None)`` when pinning is off or impossible."""
    if not pin or shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return str(cpus[0]), str(cpus[1])


def pinned(cmd: list[str], cpu: str | None) -> list[str]:
    """``cmd`` prefixed with ``taskset -c cpu`` (so every thread it starts inherits the pinning)."""
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def router_command() -> list[str]:
    """How to start ``llmrouter``: the console script beside this interpreter, else ``-m llmrouter.cli``."""
    script = Path(sys.executable).parent / "llmrouter"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "llmrouter.cli"]


def write_router_config(workdir: Path, upstream_port: int) -> Path:
    """Copy bench/router.toml into ``workdir`` with the real upstream port and a private log path."""
    text = (BENCH_DIR / "router.toml").read_text("utf-8")
    for literal in (CONFIG_UPSTREAM, CONFIG_LOG_PATH):
        if literal not in text:
            raise RuntimeError(f"bench/router.toml no longer contains {literal!r}; update bench/run.py")
    text = text.replace(CONFIG_UPSTREAM, f"127.0.0.1:{upstream_port}")
    text = text.replace(CONFIG_LOG_PATH, (workdir / "requests.jsonl").as_posix())
    path = workdir / "router.toml"
    path.write_text(text, "utf-8")
    return path


def proc_tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` and its live descendants (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / tick
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += proc_tree_cpu_s(int(child)) or 0.0
    return total


def _http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A blocking loopback HTTP call (for readiness and sanity checks only)."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(service: Service) -> None:
    """Wait until ``GET /health`` answers 200; raise with the process's output if it never does."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {service.proc.returncode}:\n{service.log_tail()}"
            )
        try:
            status, _ = _http(service.url + "/health")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready after {READY_TIMEOUT_S:.0f}s:\n{service.log_tail()}")


@contextmanager
def services_stopped_at_exit(run: Run) -> Iterator[None]:
    """Stop every process of ``run`` on the way out, whatever happened (SIGTERM included)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        for service in reversed(list(run.services.values())):
            _stop(service.proc)
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate one process we started, then kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def start(run: Run, name: str, cmd: list[str], port: int, cpu: str | None, env: dict[str, str]) -> Service:
    """Start one service in its own session with output to a log file; wait until it answers."""
    log_path = run.workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            pinned(cmd, cpu),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=run.workdir,
            env=env,
            start_new_session=True,
        )
    service = Service(name, proc, f"http://127.0.0.1:{port}", log_path)
    run.services[name] = service
    wait_ready(service)
    return service


def start_services(run: Run) -> None:
    """Start the upstream, then the floor and the router; a router that fails to start is a note."""
    s = run.settings
    env = {**os.environ, UPSTREAM_KEY_ENV: "bench-dummy-key", "PYTHONUNBUFFERED": "1"}
    up_port = free_port()
    start(
        run,
        "upstream",
        [
            sys.executable,
            str(BENCH_DIR / "mock_upstream.py"),
            "--port",
            str(up_port),
            "--chunks",
            str(s.chunks),
            "--chunk-delay-ms",
            str(s.chunk_delay_ms),
        ],
        up_port,
        run.load_cpu,
        env,
    )
    upstream_url = run.services["upstream"].url
    if "floor" in s.targets:
        port = free_port()
        cmd = [
            sys.executable,
            str(BENCH_DIR / "floor_proxy.py"),
            "--port",
            str(port),
            "--upstream",
            upstream_url,
        ]
        start(run, "floor", cmd, port, run.proxy_cpu, env)
    if "router" in s.targets:
        port = free_port()
        config = write_router_config(run.workdir, up_port)
        cmd = [*router_command(), "serve", str(config), "--host", "127.0.0.1", "--port", str(port)]
        try:
            start(run, "router", cmd, port, run.proxy_cpu, env)
        except RuntimeError as exc:
            run.notes.append(f"router did not start: {exc}")
            service = run.services.pop("router", None)
            if service is not None:
                _stop(service.proc)
        else:
            if s.dashboard:
                start_subscriber(run, env)


def start_subscriber(run: Run, env: dict[str, str]) -> None:
    """A dashboard client reading the router's event stream for the whole run (on the load core)."""
    url = run.services["router"].url + "/dashboard/events"
    cmd = [sys.executable, str(BENCH_DIR / "dashboard_subscriber.py"), "--url", url]
    if run.settings.full_dashboard:
        cmd.append("--full")
    proc = subprocess.Popen(pinned(cmd, run.load_cpu), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    run.services["subscriber"] = Service("subscriber", proc, url, run.workdir / "subscriber.log")


def subscriber_note(run: Run) -> None:
    """Stop the dashboard subscriber and note how much it received."""
    service = run.services.pop("subscriber", None)
    if service is None:
        return
    _stop(service.proc)
    out = service.proc.stdout.read() if service.proc.stdout is not None else b""
    try:
        got = orjson.loads(out.strip().splitlines()[-1])
        run.notes.append(f"dashboard subscriber received {got['events']} complete events "
                         f"({got['bytes'] / 1e6:.1f} MB)")
    except (IndexError, ValueError, KeyError):
        run.notes.append("dashboard subscriber reported nothing")


def target_url(run: Run, target: str) -> str | None:
    """Base URL the load generator calls for ``target`` (``None`` when that target is not running)."""
    service = run.services.get("upstream" if target == "direct" else target)
    return service.url if service else None


def _reply_text(shape: str, stream: bool, raw: bytes) -> str:
    """The assistant text of a reply in ``shape``, streamed (SSE) or not."""
    if not stream:
        body = orjson.loads(raw)
        if shape == "openai":
            return str(body["choices"][0]["message"]["content"])
        return "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
    parts: list[str] = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        data = orjson.loads(line[5:].strip())
        if shape == "openai":
            parts.extend(c.get("delta", {}).get("content") or "" for c in data.get("choices") or [])
        elif data.get("type") == "content_block_delta":
            parts.append(data["delta"].get("text", ""))
    return "".join(parts)


def sanity_check(run: Run) -> None:
    """One request per target, shape and mode: the reply must carry the mock's text intact."""
    expected = mock_upstream.reply_text()
    for target in run.settings.targets:
        base = target_url(run, target)
        if base is None:
            continue
        for shape, stream, workload in (
            (sh, st, wl) for wl in run.settings.workloads for sh in SHAPES for st in (False, True)
        ):
            body = orjson.dumps(loadgen.request_body(shape, stream, workload=workload))
            label = f"{target} {workload} {shape} {'stream' if stream else 'non-stream'}"
            try:
                status, raw = _http(base + loadgen.PATHS[shape], body, loadgen.request_headers(shape))
                text = _reply_text(shape, stream, raw) if status == 200 else None
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                run.notes.append(f"sanity check {label}: {type(exc).__name__}: {exc}")
                continue
            if status != 200:
                run.notes.append(
                    f"sanity check {label}: HTTP {status}: {raw[:300].decode('utf-8', 'replace')}"
                )
            elif text != expected:
                run.notes.append(f"sanity check {label}: reply text differs from the upstream's")


def measure(
    run: Run, target: str, shape: str, stream: bool, concurrency: int, workload: str = "1kb"
) -> dict[str, Any]:
    """One load-generator run against ``target``, plus the proxy's CPU time per request."""
    s = run.settings
    base = target_url(run, target)
    row: dict[str, Any] = {
        "target": target, "workload": workload, "shape": shape, "stream": stream, "concurrency": concurrency
    }
    if base is None:
        return {**row, "skipped": "not running"}
    cmd = [
        sys.executable,
        str(BENCH_DIR / "loadgen.py"),
        "--url",
        base,
        "--shape",
        shape,
        "-c",
        str(concurrency),
        "--duration",
        str(s.duration_s),
        "--warmup",
        str(s.warmup_s),
        "--workload",
        workload,
    ]
    if stream:
        cmd.append("--stream")
    proxy = run.services.get(target) if target != "direct" else None
    cpu_before = proc_tree_cpu_s(proxy.proc.pid) if proxy else None
    done = subprocess.run(
        pinned(cmd, run.load_cpu),
        capture_output=True,
        timeout=s.duration_s + s.warmup_s + 90,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    cpu_after = proc_tree_cpu_s(proxy.proc.pid) if proxy else None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        return {**row, "skipped": "load generator failed: " + " | ".join(tail)}
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    row.update({k: v for k, v in result.items() if k not in row})
    if cpu_before is not None and cpu_after is not None and result["requests"]:
        row["proxy_cpu_us_per_req"] = round((cpu_after - cpu_before) * 1e6 / result["requests"], 1)
    return row


def measure_all(run: Run) -> None:
    """The full matrix; targets interleaved per case so slow drift hits them alike."""
    for workload in run.settings.workloads:
        for stream in (False, True):
            for shape in SHAPES:
                for concurrency in CONCURRENCIES[workload]:
                    for target in run.settings.targets:
                        row = measure(run, target, shape, stream, concurrency, workload)
                        run.results.append(row)
                        _progress(row)
    for name in ("floor", "router"):
        service = run.services.get(name)
        if service and any(r["target"] == name and r.get("errors") for r in run.results):
            run.notes.append(f"{name} answered with errors; the end of its output:\n{service.log_tail(25)}")


def _progress(row: dict[str, Any]) -> None:
    """One line on stderr per measurement so a long run shows it is alive."""
    mode = "stream" if row["stream"] else "plain"
    what = f"{row['target']:>6} {row.get('workload', '1kb'):>5} {row['shape']:>9} {mode:>6} c={row['concurrency']:<3}"
    if "skipped" in row:
        print(f"  {what} skipped: {row['skipped']}", file=sys.stderr)
    else:
        print(f"  {what} {row['rps']:>8.1f} req/s  errors {row['errors']}", file=sys.stderr)


# ---------------------------------------------------------------- reporting


def _find(
    results: list[dict[str, Any]], target: str, shape: str, stream: bool, c: int, workload: str = "1kb"
) -> dict[str, Any] | None:
    for row in results:
        key = (row["target"], row.get("workload", "1kb"), row["shape"], row["stream"], row["concurrency"])
        if key == (target, workload, shape, stream, c):
            return row if "skipped" not in row and row.get("requests") else None
    return None


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarize(results: list[dict[str, Any]], workload: str = "1kb") -> dict[str, Any]:
    """Headline numbers of one workload, per shape: the router's added latency, throughput ratio at
    the loaded concurrency (32 for ``1kb``, 8 for ``agent``) and streaming overhead."""
    out: dict[str, Any] = {}
    loaded = LOADED[workload]
    for shape in SHAPES:
        def find(target: str, stream: bool, c: int, shape: str = shape) -> dict[str, Any] | None:
            return _find(results, target, shape, stream, c, workload)

        router1, direct1, floor1 = find("router", False, 1), find("direct", False, 1), find("floor", False, 1)
        router_n, floor_n = find("router", False, loaded), find("floor", False, loaded)
        rs1, ds1, fs1 = find("router", True, 1), find("direct", True, 1), find("floor", True, 1)
        rs_n, fs_n = find("router", True, loaded), find("floor", True, loaded)
        out[shape] = {
            "router_added_p50_ms_c1": _diff(_get(router1, "lat_p50_ms"), _get(direct1, "lat_p50_ms")),
            "floor_added_p50_ms_c1": _diff(_get(floor1, "lat_p50_ms"), _get(direct1, "lat_p50_ms")),
            "router_minus_floor_p50_ms_c1": _diff(_get(router1, "lat_p50_ms"), _get(floor1, "lat_p50_ms")),
            "router_over_floor_rps_loaded": _ratio(_get(router_n, "rps"), _get(floor_n, "rps")),
            "router_over_floor_cpu_per_req_loaded": _ratio(
                _get(router_n, "proxy_cpu_us_per_req"), _get(floor_n, "proxy_cpu_us_per_req")
            ),
            "router_over_floor_streams_loaded": _ratio(_get(rs_n, "rps"), _get(fs_n, "rps")),
            "router_added_ttft_p50_ms_c1": _diff(_get(rs1, "ttft_p50_ms"), _get(ds1, "ttft_p50_ms")),
            "floor_added_ttft_p50_ms_c1": _diff(_get(fs1, "ttft_p50_ms"), _get(ds1, "ttft_p50_ms")),
            "router_gap_p99_over_direct_c1": _ratio(_get(rs1, "gap_p99_ms"), _get(ds1, "gap_p99_ms")),
        }
    return out


def summarize_all(results: list[dict[str, Any]], workloads: tuple[str, ...]) -> dict[str, Any]:
    """:func:`summarize` for each workload, keyed by workload."""
    return {workload: summarize(results, workload) for workload in workloads}


def _get(row: dict[str, Any] | None, key: str) -> float | None:
    return None if row is None else row.get(key)


_TITLES = {"1kb": "1 KB chat", "agent": "agent, ~260 KB requests"}


def render_markdown(run: Run, summary: dict[str, Any]) -> str:
    """The report: per workload a non-streaming table, a streaming table and the headline numbers;
    then any notes. ``summary`` is :func:`summarize_all`'s result."""
    s = run.settings
    res = run.results
    lines: list[str] = []
    for workload, numbers_by_shape in summary.items():
        rows = [r for r in res if r.get("workload", "1kb") == workload]
        loaded = LOADED[workload]
        lines += [
            f"### {_TITLES[workload]}: non-streaming (1 KB replies)",
            "",
            f"| target | shape | c | req/s | p50 ms | p99 ms | added p50 ms (c=1) | req/s ÷ floor (c={loaded}) "
            "| proxy CPU µs/req | errors |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if not r["stream"]):
            lines.append(_plain_row(res, row))
        lines += [
            "",
            f"### {_TITLES[workload]}: streaming ({s.chunks} chunks, {s.chunk_delay_ms:g} ms apart)",
            "",
            "| target | shape | c | streams/s | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms "
            "| added TTFT p50 ms | gap p99 ÷ direct | chunks | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r["stream"]):
            lines.append(_stream_row(res, row))
        lines += ["", f"### Router headline ({_TITLES[workload]})", ""]
        for shape, numbers in numbers_by_shape.items():
            lines.append(
                f"- {shape}: added p50 at c=1 {_fmt(numbers['router_added_p50_ms_c1'])} ms "
                f"(floor {_fmt(numbers['floor_added_p50_ms_c1'])} ms; router − floor "
                f"{_fmt(numbers['router_minus_floor_p50_ms_c1'])} ms); "
                f"router/floor req/s at c={loaded} {_fmt(numbers['router_over_floor_rps_loaded'])} "
                f"(target ≥ {TARGET_RATIO[workload]:.2f}), "
                f"CPU per request {_fmt(numbers['router_over_floor_cpu_per_req_loaded'])}× the floor's; "
                f"streams/s ÷ floor at c={loaded} {_fmt(numbers['router_over_floor_streams_loaded'])}; "
                f"stream TTFT added p50 at c=1 {_fmt(numbers['router_added_ttft_p50_ms_c1'])} ms "
                f"(floor {_fmt(numbers['floor_added_ttft_p50_ms_c1'])} ms), "
                f"gap p99 ÷ direct {_fmt(numbers['router_gap_p99_over_direct_c1'])} (target ≤ 1.10)"
            )
        lines.append("")
    if run.notes:
        lines += ["### Notes", ""]
        lines += [f"- {note}".replace("\n", "\n  ") for note in run.notes]
    return "\n".join(lines).rstrip("\n")


def _errors(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return str(row["skipped"])
    if not row["errors"]:
        return "0"
    sample = " ".join(row["error_samples"][0].split())[:80].replace("|", "/") if row["error_samples"] else ""
    return f"{row['errors']} ({sample})"


def _plain_row(res: list[dict[str, Any]], row: dict[str, Any]) -> str:
    shape, c, target = row["shape"], row["concurrency"], row["target"]
    workload = row.get("workload", "1kb")
    direct = _find(res, "direct", shape, False, c, workload)
    floor = _find(res, "floor", shape, False, c, workload)
    added = (
        _diff(row.get("lat_p50_ms"), _get(direct, "lat_p50_ms")) if c == 1 and target != "direct" else None
    )
    loaded = LOADED[workload]
    vs_floor = _ratio(row.get("rps"), _get(floor, "rps")) if c == loaded and target != "floor" else None
    cells = [
        target,
        shape,
        str(c),
        _fmt(row.get("rps"), 0),
        _fmt(row.get("lat_p50_ms")),
        _fmt(row.get("lat_p99_ms")),
        _fmt(added),
        _fmt(vs_floor),
        _fmt(row.get("proxy_cpu_us_per_req"), 0),
        _errors(row),
    ]
    return "| " + " | ".join(cells) + " |"


def _stream_row(res: list[dict[str, Any]], row: dict[str, Any]) -> str:
    shape, c, target = row["shape"], row["concurrency"], row["target"]
    direct = _find(res, "direct", shape, True, c, row.get("workload", "1kb"))
    is_direct = target == "direct"
    cells = [
        target,
        shape,
        str(c),
        _fmt(row.get("rps"), 1),
        _fmt(row.get("ttft_p50_ms")),
        _fmt(row.get("ttft_p99_ms")),
        _fmt(row.get("gap_p50_ms")),
        _fmt(row.get("gap_p99_ms")),
        _fmt(None if is_direct else _diff(row.get("ttft_p50_ms"), _get(direct, "ttft_p50_ms"))),
        _fmt(None if is_direct else _ratio(row.get("gap_p99_ms"), _get(direct, "gap_p99_ms"))),
        _fmt(row.get("chunks_per_stream"), 1),
        _errors(row),
    ]
    return "| " + " | ".join(cells) + " |"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode().strip() or None


def write_json(run: Run, summary: dict[str, Any], path: Path) -> None:
    """Save settings, environment, every measurement, the headline and notes as JSON."""
    s = run.settings
    payload = {
        "meta": {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_commit": _git_commit(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "proxy_cpu": run.proxy_cpu,
            "load_cpu": run.load_cpu,
            "duration_s": s.duration_s,
            "warmup_s": s.warmup_s,
            "chunks": s.chunks,
            "chunk_delay_ms": s.chunk_delay_ms,
            "targets": list(s.targets),
            "workloads": list(s.workloads),
            "dashboard_subscriber": ("full" if s.full_dashboard else "page") if s.dashboard else None,
        },
        "results": run.results,
        "summary": summary,
        "notes": run.notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~40 s with both workloads)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of direct,floor,router")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--workload", choices=(*WORKLOADS, "all"), default="all",
                        help="1kb (short chats), agent (~260 KB agent requests) or all (default)")
    parser.add_argument("--no-dashboard", action="store_true", help="no dashboard subscriber on the router")
    parser.add_argument("--full-dashboard", action="store_true",
                        help="the subscriber takes every request whole (as `watch --json`), not the page's previews")
    parser.add_argument(
        "--json",
        nargs="?",
        const=str(DEFAULT_JSON),
        default=None,
        help=f"write results (default {DEFAULT_JSON})",
    )
    args = parser.parse_args(argv)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"--targets: unknown {unknown}; choose from {', '.join(TARGETS)}")
    args.targets = tuple(t for t in TARGETS if t in targets)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a target could not start or a sanity check failed."""
    args = parse_args(argv)
    settings = Settings(
        duration_s=args.duration or (0.5 if args.quick else 4.0),
        warmup_s=args.warmup if args.warmup is not None else (0.1 if args.quick else 0.5),
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        targets=args.targets,
        pin=not args.no_pin,
        workloads=WORKLOADS if args.workload == "all" else (args.workload,),
        dashboard=not args.no_dashboard,
        full_dashboard=args.full_dashboard,
    )
    proxy_cpu, load_cpu = pick_cpus(settings.pin)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmrouter-bench-") as tmp:
        run = Run(settings, Path(tmp), proxy_cpu, load_cpu)
        if proxy_cpu is None:
            run.notes.append("processes not pinned to cores (no taskset, one core, or --no-pin)")
        try:
            with services_stopped_at_exit(run):
                start_services(run)
                sanity_check(run)
                measure_all(run)
                subscriber_note(run)
        except KeyboardInterrupt:
            print("interrupted; every process this run started has been stopped", file=sys.stderr)
            return 130
    summary = summarize_all(run.results, settings.workloads)
    print(render_markdown(run, summary))
    print(f"\n(total {time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json:
        write_json(run, summary, Path(args.json))
        print(f"results written to {args.json}", file=sys.stderr)
    benign = ("processes not pinned", "dashboard subscriber received")
    return 1 if any(not n.startswith(benign) for n in run.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
