"""``llmrouter replay``: identical and changed configs, offline stand-ins, live mode, report formats."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from llmrouter.cli.main import main
from llmrouter.cli.replay import render_text, replay, replayable
from llmrouter.config import load_config
from llmrouter.jsonutil import dumps, loads
from llmrouter.testing import make_config, openai_chat

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "sample-requests.jsonl"
CONFIG = DATA / "replay-config.toml"
CODE_IDS = ("1683c660", "f6bff690")  # the two requests the tag rule sends to "cloud"
PHOTO_ID = "217b27a7"  # tagged "vision" by the word "photo"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["replay", *args], catch_exceptions=False)


def changed_config(tmp_path: Path) -> Path:
    text = CONFIG.read_text()
    text = text.replace('tag = "code"\nprovider = "cloud"\nrewrite_model = "big-model"', 'tag = "code"\nprovider = "local"')
    text = text.replace('vision = ["image", "photo"]', 'vision = ["image"]')
    assert text != CONFIG.read_text()
    path = tmp_path / "changed.toml"
    path.write_text(text)
    return path


def test_sample_log_replays_identically_against_its_own_config() -> None:
    result = run(str(SAMPLE), "--config", str(CONFIG))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "replayed 7 requests" in out and "offline" in out
    assert "same route       7" in out and "changed provider 0" in out and "skipped          1" in out
    assert "no routing differences" in out
    assert "skipped (1):\n  0c191e62" in out and "rejected before parsing" in out


def test_changed_config_reports_each_difference_and_exits_1(tmp_path: Path) -> None:
    result = run(str(SAMPLE), "--config", str(changed_config(tmp_path)))
    assert result.exit_code == 1
    out = result.output
    assert "same route       4" in out
    assert "changed provider 2" in out and "changed model    2" in out and "changed tags     1" in out
    assert "changed status   0" in out and "errors           0" in out
    diff_lines = [line.strip() for line in out.splitlines() if line.startswith("  ") and ": " in line
                  and "->" in line]
    assert len(diff_lines) == 3
    for rid in CODE_IDS:
        line = next(line for line in diff_lines if line.startswith(rid))
        assert "provider cloud -> local" in line and "model big-model -> " in line
    photo = next(line for line in diff_lines if line.startswith(PHOTO_ID))
    assert "tags [vision] -> []" in photo and "provider" not in photo


def test_the_report_prints_client_text_printable(tmp_path: Path) -> None:
    """Logged model names are the clients' text: a newline or escape sequence in one must not forge
    report lines or reach the terminal raw."""
    entries = [loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    entry = next(e for e in entries if e.get("request"))
    entry["request"]["model"] = entry["requested_model"] = "m\nforged: provider a -> b\x1b]0;owned\x07"
    log = tmp_path / "hostile.jsonl"
    log.write_text(dumps(entry).decode() + "\n")
    for args in ((), ("--live",)):
        result = run(str(log), *args)
        assert result.exit_code == 1
        assert all(ch.isprintable() for line in result.output.splitlines() for ch in line), result.output
        assert not any(line.startswith("forged") for line in result.output.splitlines())


def test_json_report(tmp_path: Path) -> None:
    result = run(str(SAMPLE), "--config", str(changed_config(tmp_path)), "--json")
    assert result.exit_code == 1
    report = loads(result.output)
    assert report["summary"] == {"requests": 7, "same_route": 4, "changed_provider": 2, "changed_model": 2,
                                 "changed_tags": 1, "changed_status": 0, "errors": 0, "skipped": 1}
    by_id = {d["id"][:8]: d for d in report["differences"]}
    assert set(by_id) == {*CODE_IDS, PHOTO_ID}
    assert by_id[CODE_IDS[0]]["changes"]["provider"] == {"logged": "cloud", "replayed": "local"}
    assert by_id[PHOTO_ID]["changes"] == {"tags": {"logged": ["vision"], "replayed": []}}
    assert report["live"] is False


def test_a_route_that_disappears_is_a_status_change(tmp_path: Path) -> None:
    text = CONFIG.read_text().split("# Everything else")[0]  # no fallback: plain requests have no route
    path = tmp_path / "narrow.toml"
    path.write_text(text)
    result = run(str(SAMPLE), "--config", str(path))
    assert result.exit_code == 1
    assert "changed status   3" in result.output and "errors           3" in result.output
    assert "status 200 -> 400 (no provider configured for model 'gpt-4o-mini')" in result.output


def test_missing_or_broken_inputs_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[routers]]\ntype = 'nope'\n")
    result = CliRunner().invoke(main, ["replay", str(SAMPLE), "--config", str(bad)])
    assert result.exit_code == 1 and "bad.toml" in result.output
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "missing.jsonl"), "--config", str(CONFIG)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_unreadable_lines_are_skipped_with_a_note(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(SAMPLE.read_bytes().splitlines()[0] + b"\n{torn line\n\n" + dumps({"type": "start"}) + b"\n")
    entries, skipped = replayable(log)
    assert len(entries) == 1 and skipped == ["log.jsonl line 2: not valid JSON"]


async def test_logged_provider_failure_replays_as_the_same_failure(tmp_path: Path) -> None:
    cfg = make_config({"providers": [{"name": "up", "format": "openai", "base_url": "http://127.0.0.1:9/v1",
                                      "api_key_env": "UNSET_KEY"}],
                       "routers": [{"type": "fallback", "providers": ["up"]}]})
    request = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    entries = [{"type": "complete", "id": "r1", "provider": "up", "sent_model": "m", "tags": [], "status": 502,
                "error": "provider 'up' returned 500: boom", "response": None, "request": request},
               {"type": "complete", "id": "r2", "provider": "up", "sent_model": "m", "tags": [], "status": 200,
                "error": None, "request": request, "attempts": [{"provider": "up", "model": "m", "status": 200}],
                "response": {"content": [{"type": "text", "text": "ok"}], "usage": {"input_tokens": 1}}}]
    report = await replay(entries, cfg, environ={})  # no key set: offline replay keeps the provider anyway
    assert report.differences == []
    assert [r.replayed.status for r in report.results] == [502, 200]
    assert report.summary()["errors"] == 1


async def test_live_replay_calls_providers_and_reports_figures(aiohttp_server: Any, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append(body)
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "live!"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    upstream = await aiohttp_server(app)
    text = CONFIG.read_text().replace(
        'name = "cloud"\nformat = "echo"', f'name = "cloud"\nformat = "openai"\nbase_url = "{upstream.make_url("/v1")}"')
    path = tmp_path / "live.toml"
    path.write_text(text)
    entries, _ = replayable(SAMPLE)
    report = await replay(entries, load_config(path), live=True, environ={})
    assert report.differences == []
    assert [c["model"] for c in calls] == ["big-model", "big-model"]
    cloud = [r for r in report.results if r.replayed.provider == "cloud"]
    assert all(r.replayed.input_tokens == 100 and r.replayed.output_tokens == 20 for r in cloud)
    assert cloud[0].replayed.cost_usd == pytest.approx(120 * 3.0 / 1e6)
    out = render_text(report, "sample", "live.toml")
    assert "live: real providers were called" in out
    assert "now " in out and "logged " in out and "100+20 tok" in out and "total: mean latency" in out


async def test_replay_reproduces_what_the_router_logged(router: Any, tmp_path: Path) -> None:
    """Round trip: requests through the server, then their log replayed against the same config."""
    cfg = load_config(CONFIG)
    client = await router(cfg.model_dump() | {"logging": {"path": str(tmp_path / "rt.jsonl")}})
    for text, model in [("def f(): pass", "x"), ("a photo", "local/y"), ("plain", "z")]:
        assert (await client.openai(openai_chat(text, model=model, stream=model == "z"))).status == 200
    client.log_lines()
    entries, skipped = replayable(tmp_path / "rt.jsonl")
    report = await replay(entries, cfg, environ={})
    assert len(report.results) == 3 and not skipped and report.differences == []


async def test_replay_reads_every_segment_of_a_rotated_compressed_log(router: Any, tmp_path: Path) -> None:
    cfg = load_config(CONFIG)
    log_path = tmp_path / "logs" / "rt.jsonl"
    client = await router(cfg.model_dump() | {"logging": {"path": str(log_path), "max_mb": 0.0001, "keep": 0}})
    ids = []
    for i in range(6):
        reply = await client.openai(openai_chat(f"def f{i}(): pass" if i % 2 else f"plain {i}", model="x"))
        assert reply.status == 200
        ids.append(reply.request_id)
    await client.client.close()  # the app shuts down: the last segment is sealed
    segs = sorted(log_path.parent.iterdir())
    assert not log_path.exists() and len(segs) >= 3 and all(p.name.endswith(".jsonl.zst") for p in segs)
    result = await asyncio.to_thread(run, str(log_path), "--config", str(CONFIG), "--json")
    assert result.exit_code == 0, result.output
    body = loads(result.output)
    assert body["summary"]["requests"] == 6 and body["summary"]["same_route"] == 6 and body["skipped"] == []
    assert [entry["id"] for entry in replayable(log_path)[0]] == ids
    one = await asyncio.to_thread(run, str(segs[0]), "--config", str(CONFIG), "--json")
    assert one.exit_code == 0 and loads(one.output)["summary"]["requests"] == 1  # one segment alone
