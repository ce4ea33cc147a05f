"""Smoke tests for the benchmark harness in ``bench/``: mock upstream, floor proxy and load generator.

They check correctness only (what is relayed and counted), never timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.benchmods import load_bench

mock_upstream = load_bench("mock_upstream")
floor_proxy = load_bench("floor_proxy")
loadgen = load_bench("loadgen")

CHUNKS = 7

OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-bench",
    "messages": [{"role": "user", "content": "hello"}],
    "max_tokens": 64,
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-bench",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hello"}],
}


def _sse_data(raw: bytes) -> list[Any]:
    """The parsed ``data:`` payloads of an SSE body, ``[DONE]`` kept as the string."""
    out: list[Any] = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def _sse_events(raw: bytes) -> list[str]:
    """The ``event:`` names of an SSE body, in order."""
    return [line[6:].strip().decode() for line in raw.split(b"\n") if line.startswith(b"event:")]


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    """A mock upstream with no delay between stream chunks."""
    return await aiohttp_server(mock_upstream.make_app(chunks=CHUNKS, chunk_delay_s=0.0))


@pytest.fixture
async def floor(aiohttp_client: Any, upstream: Any) -> Any:
    """A test client talking to the floor proxy, which forwards to ``upstream``."""
    return await aiohttp_client(floor_proxy.make_app(str(upstream.make_url(""))))


async def test_mock_openai_reply_is_about_one_kilobyte(aiohttp_client: Any) -> None:
    client = await aiohttp_client(mock_upstream.make_app())
    resp = await client.post("/v1/chat/completions", json=OPENAI_BODY)
    assert resp.status == 200
    raw = await resp.read()
    assert 800 <= len(raw) <= 1600
    body = orjson.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-bench"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )


async def test_mock_rejects_bad_json(aiohttp_client: Any) -> None:
    client = await aiohttp_client(mock_upstream.make_app())
    resp = await client.post("/v1/messages", data=b"{not json", headers={"content-type": "application/json"})
    assert resp.status == 400


async def test_floor_relays_openai_non_streaming(floor: Any) -> None:
    resp = await floor.post("/v1/chat/completions", json=OPENAI_BODY)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = await resp.json()
    assert body["model"] == "gpt-bench"
    assert body["choices"][0]["message"]["content"] == mock_upstream.reply_text()


async def test_floor_relays_anthropic_non_streaming(floor: Any) -> None:
    resp = await floor.post("/v1/messages", json=ANTHROPIC_BODY)
    assert resp.status == 200
    body = await resp.json()
    assert body["type"] == "message"
    assert body["model"] == "claude-bench"
    assert body["content"] == [{"type": "text", "text": mock_upstream.reply_text()}]
    assert body["stop_reason"] == "end_turn"


async def test_floor_relays_upstream_errors(floor: Any) -> None:
    resp = await floor.post("/v1/messages", data=b"[1, 2", headers={"content-type": "application/json"})
    assert resp.status == 400


async def test_floor_relays_openai_stream(floor: Any) -> None:
    body = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
    resp = await floor.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    data = _sse_data(await resp.read())
    assert data[-1] == "[DONE]"
    chunks = data[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in texts if t]) == CHUNKS
    assert "".join(t for t in texts if t) == mock_upstream.reply_text()
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_floor_relays_anthropic_stream(floor: Any) -> None:
    resp = await floor.post("/v1/messages", json={**ANTHROPIC_BODY, "stream": True})
    assert resp.status == 200
    raw = await resp.read()
    events = _sse_events(raw)
    assert events[:3] == ["message_start", "content_block_start", "ping"]
    assert events[3 : 3 + CHUNKS] == ["content_block_delta"] * CHUNKS
    assert events[3 + CHUNKS :] == ["content_block_stop", "message_delta", "message_stop"]
    data = _sse_data(raw)
    assert [d["type"] for d in data] == events
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == mock_upstream.reply_text()
    assert data[-2]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
async def test_loadgen_counts_requests_through_floor(floor: Any, shape: str, stream: bool) -> None:
    result = await loadgen.run_load(
        str(floor.make_url("")), shape=shape, stream=stream, concurrency=3, duration_s=5.0, max_requests=12
    )
    assert result["requests"] == 12
    assert result["errors"] == 0
    assert result["lat_p50_ms"] > 0 and result["lat_p99_ms"] >= result["lat_p50_ms"]
    if stream:
        assert result["chunks_per_stream"] == CHUNKS
        assert result["ttft_p99_ms"] >= result["ttft_p50_ms"] > 0
        assert result["gap_p99_ms"] >= result["gap_p50_ms"] >= 0
    else:
        assert "ttft_p50_ms" not in result


async def test_loadgen_counts_errors(aiohttp_client: Any) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "nope"}}, status=502)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken)
    client = await aiohttp_client(app)
    result = await loadgen.run_load(
        str(client.make_url("")), shape="openai", stream=False, concurrency=2, duration_s=5.0, max_requests=4
    )
    assert result["requests"] == 0
    assert result["errors"] == 4
    assert "502" in result["error_samples"][0]


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile([3.0], 99) == 3.0
    assert loadgen.percentile([], 50) is None


def _row(target: str, shape: str, stream: bool, c: int, **numbers: float) -> dict[str, Any]:
    return {
        "target": target,
        "shape": shape,
        "stream": stream,
        "concurrency": c,
        "requests": 100,
        "errors": 0,
        "error_samples": [],
        **numbers,
    }


def test_run_summary_and_table_compare_router_with_direct_and_floor(tmp_path: Path) -> None:
    run_mod = load_bench("run")
    results = [
        _row("direct", "openai", False, 1, rps=5000.0, lat_p50_ms=0.2, lat_p99_ms=0.4),
        _row("floor", "openai", False, 1, rps=1500.0, lat_p50_ms=0.7, lat_p99_ms=0.9),
        _row("router", "openai", False, 1, rps=600.0, lat_p50_ms=1.4, lat_p99_ms=2.0),
        _row("direct", "openai", False, 32, rps=8000.0, lat_p50_ms=4.0, lat_p99_ms=6.0),
        _row(
            "floor",
            "openai",
            False,
            32,
            rps=5000.0,
            lat_p50_ms=6.0,
            lat_p99_ms=9.0,
            proxy_cpu_us_per_req=200.0,
        ),
        _row(
            "router",
            "openai",
            False,
            32,
            rps=2000.0,
            lat_p50_ms=15.0,
            lat_p99_ms=30.0,
            proxy_cpu_us_per_req=500.0,
        ),
        _row("direct", "openai", True, 1, rps=10.0, ttft_p50_ms=0.8, gap_p99_ms=5.5, lat_p50_ms=100.0),
        _row("router", "openai", True, 1, rps=10.0, ttft_p50_ms=1.5, gap_p99_ms=6.6, lat_p50_ms=101.0),
    ]
    summary = run_mod.summarize(results)["openai"]
    assert summary["router_added_p50_ms_c1"] == pytest.approx(1.2)
    assert summary["floor_added_p50_ms_c1"] == pytest.approx(0.5)
    assert summary["router_minus_floor_p50_ms_c1"] == pytest.approx(0.7)
    assert summary["router_over_floor_rps_loaded"] == pytest.approx(0.4)
    assert summary["router_over_floor_cpu_per_req_loaded"] == pytest.approx(2.5)
    assert summary["router_added_ttft_p50_ms_c1"] == pytest.approx(0.7)
    assert summary["router_gap_p99_over_direct_c1"] == pytest.approx(1.2)
    assert run_mod.summarize(results)["anthropic"]["router_added_p50_ms_c1"] is None

    settings = run_mod.Settings(1.0, 0.0, 20, 5.0, ("direct", "floor", "router"), False)
    run = run_mod.Run(settings, tmp_path, None, None, results=results)
    table = run_mod.render_markdown(run, run_mod.summarize_all(results, ("1kb",)))
    assert "| router | openai | 1 | 600 | 1.40 | 2.00 | 1.20 | — |" in table
    assert "| router | openai | 32 | 2000 | 15.00 | 30.00 | — | 0.40 | 500 | 0 |" in table


def test_agent_workload_is_agent_sized_in_both_shapes() -> None:
    sizes = {}
    for shape in ("openai", "anthropic"):
        body = loadgen.request_body(shape, False, workload="agent")
        sizes[shape] = len(orjson.dumps(body))
        assert len(body["tools"]) == 20
        assert 100 <= len(body["messages"]) <= 102
        assert loadgen.request_body(shape, True, workload="agent")["stream"] is True
    assert all(240_000 <= size <= 290_000 for size in sizes.values()), sizes


def test_run_summary_takes_the_agent_ratio_at_c8() -> None:
    run_mod = load_bench("run")
    results = [
        {**_row("floor", "openai", False, 8, rps=600.0, lat_p50_ms=10.0, lat_p99_ms=12.0), "workload": "agent"},
        {**_row("router", "openai", False, 8, rps=420.0, lat_p50_ms=14.0, lat_p99_ms=20.0), "workload": "agent"},
        {**_row("floor", "openai", False, 1, rps=400.0, lat_p50_ms=2.3, lat_p99_ms=3.0), "workload": "agent"},
        {**_row("router", "openai", False, 1, rps=300.0, lat_p50_ms=3.0, lat_p99_ms=4.0), "workload": "agent"},
        _row("router", "openai", False, 32, rps=9999.0, lat_p50_ms=1.0, lat_p99_ms=1.0),
    ]
    agent = run_mod.summarize_all(results, ("1kb", "agent"))["agent"]["openai"]
    assert agent["router_over_floor_rps_loaded"] == pytest.approx(0.7)
    assert agent["router_minus_floor_p50_ms_c1"] == pytest.approx(0.7)


def test_inprocess_cost_sends_the_agent_conversation_in_the_responses_shape() -> None:
    from llmrouter.formats import CLIENT_FORMATS

    cost, loadgen = load_bench("inprocess_cost"), load_bench("loadgen")
    chat = CLIENT_FORMATS["openai"].parse_request(loadgen.request_body("openai", False, workload="agent"), {})
    responses = CLIENT_FORMATS["openai-responses"].parse_request(cost.responses_body(), {})
    assert [m.role for m in responses.messages] == [m.role for m in chat.messages]
    assert list(responses.iter_text()) == list(chat.iter_text())
    assert [t.name for t in responses.tools] == [t.name for t in chat.tools]
    assert responses.system_text() == chat.system_text()
