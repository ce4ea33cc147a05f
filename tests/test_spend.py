"""Spend: ``GET /admin/spend`` and ``llmrouter spend LOG`` add up the request log per key, provider and
model, filtered by key and time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmrouter.cli import main
from llmrouter.keys.spend import parse_since, render_text, summarize
from llmrouter.testing import openai_chat

ALICE, BOB, ADMIN = "rk-alice-0123456789", "rk-bob-0123456789", "rk-admin-0123456789"
ENV = {"ALICE_KEY": ALICE, "BOB_KEY": BOB, "ADMIN_KEY": ADMIN}
CONFIG = {
    "server": {"api_key_env": "ADMIN_KEY"},
    "providers": [{"name": "cheap", "format": "echo", "cost_per_1m_tokens": 1000.0},
                  {"name": "free", "format": "echo"}],
    "routers": [{"type": "prefix", "model_prefix": "free/", "provider": "free", "strip_prefix": True},
                {"type": "fallback", "providers": ["cheap"]}],
    "keys": [{"name": "alice", "key_env": "ALICE_KEY", "budget_usd": 10.0},
             {"name": "bob", "key_env": "BOB_KEY"}],
}


def auth(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def _traffic(client: Any) -> list[Any]:
    return [await client.openai(openai_chat("a" * 40, model="m1"), auth(ALICE)),
            await client.openai(openai_chat("b" * 80, model="m2"), auth(ALICE)),
            await client.openai(openai_chat("c" * 40, model="free/x"), auth(BOB)),
            await client.openai(openai_chat("d" * 40, model="m1"), auth(BOB))]


async def test_admin_spend_groups_and_filters(router: Any) -> None:
    client = await router(CONFIG, environ=ENV)
    replies = await _traffic(client)
    cost = {r.log_line["id"]: r.log_line["cost_usd"] for r in replies}  # type: ignore[index]
    alice_cost = sum(cost[r.request_id] for r in replies[:2])
    resp = await client.client.get("/admin/spend", headers=auth(ADMIN))
    assert resp.status == 200
    body = await resp.json()
    assert body["total"]["requests"] == 4 and body["total"]["cost_usd"] == pytest.approx(sum(
        c for c in cost.values() if c))
    by_key = {row["key"]: row for row in body["by_key"]}
    assert by_key["alice"]["requests"] == 2 and by_key["alice"]["cost_usd"] == pytest.approx(alice_cost)
    assert {row["provider"] for row in body["by_provider"]} == {"cheap", "free"}
    assert {row["model"] for row in body["by_model"]} == {"m1", "m2", "x"}
    assert body["budgets"]["alice"]["budget_usd"] == 10.0
    assert body["budgets"]["alice"]["spent_usd"] == pytest.approx(alice_cost)

    resp = await client.client.get("/admin/spend", params={"key": "bob", "group_by": "model"}, headers=auth(ADMIN))
    body = await resp.json()
    assert body["total"]["requests"] == 2 and set(body) >= {"by_model"} and "by_key" not in body
    assert {row["model"]: row["requests"] for row in body["by_model"]} == {"x": 1, "m1": 1}
    assert body["budgets"] == {}

    future = time.time() + 3600
    resp = await client.client.get("/admin/spend", params={"since": str(future)}, headers=auth(ADMIN))
    assert (await resp.json())["total"]["requests"] == 0
    resp = await client.client.get("/admin/spend", params={"since": "1h"}, headers=auth(ADMIN))
    assert (await resp.json())["total"]["requests"] == 4


@pytest.mark.parametrize(("query", "message"), [({"group_by": "team"}, "group_by"),
                                                ({"since": "yesterday"}, "since")])
async def test_admin_spend_bad_query_is_400_naming_it(router: Any, query: dict[str, str], message: str) -> None:
    client = await router(CONFIG, environ=ENV)
    resp = await client.client.get("/admin/spend", params=query, headers=auth(ADMIN))
    assert resp.status == 400
    assert (await resp.json())["error"]["message"].startswith(message)
    assert (await client.client.get("/admin/spend", headers=auth(ALICE))).status == 403


async def test_cli_spend_prints_totals_per_key_provider_and_model(router: Any, tmp_path: Path) -> None:
    client = await router(CONFIG, environ=ENV)
    replies = await _traffic(client)
    log = client.pipeline.request_log.path  # type: ignore[union-attr]
    client.log_lines()
    with log.open("ab") as fh:
        fh.write(b"{torn\n")  # a damaged line is skipped, not fatal
    runner = CliRunner()
    result = runner.invoke(main, ["spend", str(log)])
    assert result.exit_code == 0, result.output
    assert "skipped: " in result.stderr and "not valid JSON" in result.stderr  # said, not silent
    for word in ("key", "alice", "bob", "provider", "cheap", "free", "model", "m1", "m2", "total: 4 requests"):
        assert word in result.output
    result = runner.invoke(main, ["spend", str(log), "--key", "alice", "--json"])
    data = json.loads(result.stdout)
    assert data["total"]["requests"] == 2
    assert data["total"]["cost_usd"] == pytest.approx(sum(r.log_line["cost_usd"] for r in replies[:2]))
    assert runner.invoke(main, ["spend", str(log), "--since", "soon"]).exit_code == 2
    missing = runner.invoke(main, ["spend", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and "cannot read the log" in missing.output


def test_parse_since_forms() -> None:
    assert parse_since("2026-12-01") == 1796083200.0
    assert parse_since("2026-12-01T00:00:00Z") == 1796083200.0
    assert parse_since("1796083200") == 1796083200.0
    assert parse_since("2h", now=10_000.0) == 2_800.0
    with pytest.raises(ValueError, match="24h"):
        parse_since("last week")


def test_the_tables_print_client_chosen_model_names_printable() -> None:
    entry = {"type": "complete", "ts_ms": 1, "status": 200, "provider": "p", "key": None,
             "requested_model": "m\nforged 1 0 0 0\x1b]0;owned\x07", "sent_model": None,
             "usage": {"input_tokens": 1, "output_tokens": 1}, "cost_usd": 0.0}
    text = render_text(summarize([entry]))
    assert all(ch.isprintable() for line in text.splitlines() for ch in line), text
    assert not any(line.startswith("forged") for line in text.splitlines())
