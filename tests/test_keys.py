"""Virtual keys end to end through the real app: auth by name, allow-lists, rpm/tpm/budgets (exact
under concurrency), persistence across restarts (SQLite), and the key's name in events and log."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from llmrouter.config import ConfigError
from llmrouter.keys.sqlite_store import SQLiteStore
from llmrouter.keys.store import Limits
from llmrouter.testing import anthropic_message, make_config, openai_chat
from llmrouter.web.appkeys import LIMITER
from tests.conftest import free_port

ALICE, BOB, CAROL, ADMIN = "rk-alice-0123456789", "rk-bob-0123456789", "rk-carol-0123456789", "rk-admin-0123456789"
ENV = {"ALICE_KEY": ALICE, "ADMIN_KEY": ADMIN}


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def config(**alice: Any) -> dict[str, Any]:
    return {
        "server": {"api_key_env": "ADMIN_KEY"},
        "providers": [{"name": "echo", "format": "echo", "cost_per_1m_tokens": 1000.0},
                      {"name": "spare", "format": "echo"}],
        "routers": [{"type": "prefix", "model_prefix": "spare/", "provider": "spare"},
                    {"type": "fallback", "providers": ["echo"]}],
        "keys": [{"name": "alice", "key_env": "ALICE_KEY", **alice},
                 {"name": "bob", "key_sha256": sha(BOB), "models": ["gpt-*"], "providers": ["echo"]}],
    }


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


# -- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x"}, "exactly one of key_env or key_sha256"),
    ({"name": "x", "key_env": "A", "key_sha256": sha("a")}, "exactly one of key_env or key_sha256"),
    ({"name": "x", "key_sha256": "abc"}, "64 hexadecimal digits"),
    ({"name": "x", "key_env": "A", "budget_period": "week"}, "budget_period"),
    ({"name": "x", "key_env": "A", "rpm": 0}, "rpm"),
    ({"name": "admin", "key_env": "A"}, "reserved"),
    ({"name": "x", "key_env": "A", "providers": ["nope"]}, "unknown provider 'nope'"),
])
def test_bad_keys_name_table_and_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"providers": [{"name": "echo", "format": "echo"}], "keys": [entry]})
    assert "[[keys]] #1" in str(info.value) and message in str(info.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[\[keys\]\] #2 .*duplicate key name"):
        make_config({"keys": [{"name": "a", "key_env": "A"}, {"name": "a", "key_env": "B"}]})


async def test_unset_key_env_fails_startup(router: Any) -> None:
    with pytest.raises(ConfigError, match=r"\[\[keys\]\] #1 \(name = 'alice'\) key 'key_env': .*ALICE_KEY"):
        await router(config(), environ={"ADMIN_KEY": ADMIN})


# -- auth and names ---------------------------------------------------------------------------------


async def test_only_configured_keys_get_in_and_the_log_has_names_not_keys(router: Any) -> None:
    client = await router(config(), environ=ENV)
    for headers in (bearer(ALICE), {"x-api-key": ALICE}):
        reply = await client.openai(openai_chat(), headers)
        assert reply.status == 200, reply.text
        assert reply.log_line is not None and reply.log_line["key"] == "alice"
        start = next(e for e in reply.events if e["type"] == "start")
        complete = next(e for e in reply.events if e["type"] == "complete")
        assert start["key"] == complete["key"] == "alice"
    resp = await client.client.post("/v1/chat/completions", params={"api_key": BOB}, json=openai_chat())
    assert resp.status == 200
    assert (await client.openai(openai_chat(), bearer(ADMIN))).log_line["key"] == "admin"  # type: ignore[index]
    wrong = await client.openai(openai_chat(), bearer(CAROL))
    assert wrong.status == 401 and wrong.body["error"]["message"] == "invalid API key"
    missing = await client.anthropic(anthropic_message())
    assert missing.status == 401 and missing.body["type"] == "error"
    text = "\n".join(json.dumps(line) for line in client.log_lines())
    assert len(client.log_lines()) == 6  # two refused requests are logged too
    assert ALICE not in text and BOB not in text and ADMIN not in text


async def test_admin_routes_need_the_admin_key(router: Any) -> None:
    client = await router(config(), environ=ENV)
    for path in ("/admin/spend", "/dashboard"):
        resp = await client.client.get(path, headers=bearer(ALICE))
        assert resp.status == 403, path
        body = await resp.json()
        assert body["error"]["type"] == "permission_error" and "admin key" in body["error"]["message"]
        assert (await client.client.get(path, headers=bearer(ADMIN))).status == 200
    assert (await client.client.get("/v1/models", headers=bearer(ALICE))).status == 200


async def test_keys_without_admin_key_still_require_a_key(router: Any) -> None:
    cfg = config()
    del cfg["server"]
    client = await router(cfg, environ={"ALICE_KEY": ALICE})
    assert (await client.openai(openai_chat())).status == 401
    assert (await client.openai(openai_chat(), bearer(ALICE))).status == 200


# -- allow-lists ------------------------------------------------------------------------------------


async def test_model_outside_the_globs_is_403_naming_it_in_each_shape(router: Any) -> None:
    client = await router(config(), environ=ENV)
    reply = await client.openai(openai_chat(model="claude-3"), bearer(BOB))
    assert reply.status == 403
    assert reply.body["error"]["type"] == "permission_error"
    assert "'claude-3'" in reply.body["error"]["message"] and "gpt-*" in reply.body["error"]["message"]
    assert reply.log_line is not None and reply.log_line["key"] == "bob" and reply.log_line["status"] == 403
    reply = await client.anthropic(anthropic_message(model="claude-3"), bearer(BOB))
    assert reply.status == 403 and reply.body["error"]["type"] == "permission_error"
    assert (await client.openai(openai_chat(model="gpt-4o"), bearer(BOB))).status == 200


async def test_provider_outside_the_allow_list_is_403_after_routing(router: Any) -> None:
    client = await router(config(), environ=ENV)
    reply = await client.openai(openai_chat(model="gpt-x"), bearer(BOB))
    assert reply.status == 200 and reply.provider == "echo"
    spare_model = "gpt-spare/x"
    cfg = config()
    cfg["routers"][0]["model_prefix"] = "gpt-spare/"
    client = await router(cfg, environ=ENV)
    reply = await client.openai(openai_chat(model=spare_model), bearer(BOB))
    assert reply.status == 403, reply.text
    message = reply.body["error"]["message"]
    assert "'gpt-spare/x'" in message and "'spare'" in message
    assert [e["type"] for e in reply.events].count("routed") == 1  # routed, then refused before the call
    assert (await client.openai(openai_chat(model=spare_model), bearer(ALICE))).provider == "spare"


async def test_count_tokens_applies_the_keys_model_and_provider_allow_lists(router: Any) -> None:
    """``/v1/messages/count_tokens`` routes (and may call an Anthropic upstream with the router's own
    credential), so a key's allow-lists hold there too."""
    cfg = config()
    cfg["routers"][0]["model_prefix"] = "gpt-spare/"
    client = await router(cfg, environ=ENV)
    count = {"model": "claude-3", "messages": [{"role": "user", "content": "hi"}]}
    reply = await client.post("/v1/messages/count_tokens", count, bearer(BOB))
    assert reply.status == 403 and reply.body["error"]["type"] == "permission_error"
    assert "'claude-3'" in reply.body["error"]["message"]
    reply = await client.post("/v1/messages/count_tokens", {**count, "model": "gpt-spare/x"}, bearer(BOB))
    assert reply.status == 403 and "'spare'" in reply.body["error"]["message"]
    assert (await client.post("/v1/messages/count_tokens", {**count, "model": "gpt-4o"}, bearer(BOB))).status == 200
    assert (await client.post("/v1/messages/count_tokens", count, bearer(ALICE))).status == 200


# -- rate limits ------------------------------------------------------------------------------------


async def test_100_concurrent_requests_against_rpm_10_admit_exactly_10(router: Any) -> None:
    client = await router(config(rpm=10), environ=ENV)
    replies = await asyncio.gather(*(client.openai(openai_chat(), bearer(ALICE)) for _ in range(100)))
    statuses = [r.status for r in replies]
    assert statuses.count(200) == 10 and statuses.count(429) == 90
    refused = next(r for r in replies if r.status == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "10 requests per minute" in refused.body["error"]["message"]
    assert refused.body["error"]["type"] == "rate_limit_error"
    # bob has no rpm: unaffected
    assert (await client.openai(openai_chat(model="gpt-1"), bearer(BOB))).status == 200


async def test_rpm_window_slides_and_the_anthropic_shape_has_retry_after(router: Any) -> None:
    client = await router(config(rpm=2), environ=ENV)
    now = [1_000_000.0]
    client.app[LIMITER].clock = lambda: now[0]
    assert (await client.anthropic(anthropic_message(), bearer(ALICE))).status == 200
    now[0] += 30
    assert (await client.anthropic(anthropic_message(), bearer(ALICE))).status == 200
    refused = await client.anthropic(anthropic_message(), bearer(ALICE))
    assert refused.status == 429 and refused.body["error"]["type"] == "rate_limit_error"
    assert refused.headers["Retry-After"] == "30"
    now[0] += 30.5  # the first request left the window
    assert (await client.anthropic(anthropic_message(), bearer(ALICE))).status == 200
    assert (await client.anthropic(anthropic_message(), bearer(ALICE))).status == 429


async def test_tpm_is_debited_with_actual_usage_streams_included(router: Any) -> None:
    client = await router(config(tpm=60), environ=ENV)
    limiter = client.app[LIMITER]
    now = [2_000_000.0]
    limiter.clock = lambda: now[0]
    long_text = "word " * 120  # the echo provider reports about len/4 tokens each way
    reply = await client.openai(openai_chat(long_text, stream=True), bearer(ALICE))
    assert reply.status == 200 and "data:" in reply.text
    await limiter.drain()
    refused = await client.openai(openai_chat("hi"), bearer(ALICE))
    assert refused.status == 429 and "60 tokens per minute" in refused.body["error"]["message"]
    assert refused.headers["Retry-After"] == "60"
    now[0] += 61
    assert (await client.openai(openai_chat("hi"), bearer(ALICE))).status == 200


async def test_budget_refuses_naming_it_and_when_it_resets(router: Any) -> None:
    # echo costs $1000 per 1M tokens here: a 600-character exchange is a few cents
    client = await router(config(budget_usd=0.05, budget_period="day"), environ=ENV)
    limiter = client.app[LIMITER]
    now = [1_764_590_400.0 + 3600]  # 2025-12-01T13:00Z... any fixed time: resets at the next midnight UTC
    limiter.clock = lambda: now[0]
    first = await client.openai(openai_chat("x" * 400), bearer(ALICE))
    assert first.status == 200 and first.log_line is not None
    cost = first.log_line["cost_usd"]
    assert cost > 0.05
    await limiter.drain()
    refused = await client.openai(openai_chat(), bearer(ALICE))
    assert refused.status == 429
    message = refused.body["error"]["message"]
    assert "day budget of $0.05" in message and "resets at 2025-12-02T00:00:00Z" in message
    assert refused.body["error"]["code"] == "budget_exceeded"
    assert int(refused.headers["Retry-After"]) == 11 * 3600
    now[0] += 11 * 3600  # the next day
    assert (await client.openai(openai_chat(), bearer(ALICE))).status == 200


async def test_counters_survive_a_restart(router: Any, tmp_path: Path) -> None:
    cfg = make_config(config(rpm=3, budget_usd=0.051, budget_period="total"), tmp_path)
    client = await router(cfg, environ=ENV)
    first = await client.openai(openai_chat("y" * 100), bearer(ALICE))
    second = await client.openai(openai_chat(), bearer(ALICE))
    assert first.status == second.status == 200
    assert first.log_line["cost_usd"] < 0.051 < first.log_line["cost_usd"] + second.log_line["cost_usd"]  # type: ignore[index]
    await client.client.close()  # the app shuts down: pending debits are written, the store closed
    assert (tmp_path / "keys.sqlite3").exists()
    again = await router(cfg, environ=ENV)
    refused = await again.openai(openai_chat(), bearer(ALICE))
    assert refused.status == 429 and "total budget of $0.051" in refused.body["error"]["message"]
    assert "does not reset" in refused.body["error"]["message"]
    cfg2 = make_config(config(rpm=3), tmp_path)
    third = await router(cfg2, environ=ENV)
    assert (await third.openai(openai_chat(), bearer(ALICE))).status == 200
    assert (await third.openai(openai_chat(), bearer(ALICE))).status == 429  # 2 before the restarts + 1


async def test_sqlite_store_is_exact_across_two_stores_on_one_file(tmp_path: Path) -> None:
    """Two stores on one file stand in for two worker processes: BEGIN IMMEDIATE serialises them."""
    stores = [SQLiteStore(tmp_path / "c.sqlite3"), SQLiteStore(tmp_path / "c.sqlite3")]
    limits = Limits(rpm=7, tpm=None, budget_usd=None, period_id="total")
    try:
        results = await asyncio.gather(*(stores[i % 2].admit("k", limits, 100.0 + i / 1000) for i in range(40)))
        assert sum(r is None for r in results) == 7
    finally:
        for store in stores:
            await store.close()


async def test_unlimited_key_touches_no_store(router: Any, tmp_path: Path) -> None:
    client = await router(config(), environ=ENV)
    assert client.app[LIMITER].store is None
    assert (await client.openai(openai_chat(), bearer(ALICE))).status == 200
    assert not (tmp_path / "keys.sqlite3").exists()


def test_check_lists_keys_and_serve_refuses_an_unset_key_env(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from llmrouter.cli import main

    path = tmp_path / "router.toml"
    path.write_text(
        '[server]\napi_key_env = "ADMIN_KEY"\n[logging]\npath = "' + str(tmp_path / "r.jsonl") + '"\n'
        '[[providers]]\nname = "echo"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n'
        '[[keys]]\nname = "alice"\nkey_env = "ALICE_KEY"\nmodels = ["claude-*"]\nrpm = 60\nbudget_usd = 50\n'
        f'[[keys]]\nname = "ci"\nkey_sha256 = "{sha("x")}"\nbudget_usd = 5\nbudget_period = "total"\n')
    runner = CliRunner()
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "alice (env ALICE_KEY): models claude-*; rpm 60; $50 per month" in result.output
    assert "ci (sha256): models *; $5 in total" in result.output and sha("x") not in result.output
    result = runner.invoke(main, ["serve", str(path), "--port", str(free_port())],
                           env={"ADMIN_KEY": ADMIN, "ALICE_KEY": ""})
    assert result.exit_code == 1 and "[[keys]] #1 (name = 'alice') key 'key_env'" in result.output


async def test_failover_never_moves_to_a_provider_outside_the_allow_list(router: Any, mock_providers: Any) -> None:
    up = mock_providers.add_openai("https://up.test/v1", status=500, body={"error": {"message": "down"}})
    cfg = config()
    cfg["providers"].insert(0, {"name": "up", "format": "openai", "base_url": "https://up.test/v1",
                                "max_retries": 0, "discover": False})
    cfg["routers"] = [{"type": "fallback", "providers": ["up", "spare", "echo"]}]
    cfg["keys"][1]["providers"] = ["up", "echo"]
    client = await router(cfg, environ=ENV)
    bob = await client.openai(openai_chat(model="gpt-1"), bearer(BOB))
    assert bob.status == 200 and bob.provider == "echo"
    assert [a["provider"] for a in bob.log_line["attempts"]] == ["up", "echo"]  # type: ignore[index]
    alice = await client.openai(openai_chat(model="gpt-1"), bearer(ALICE))
    assert alice.status == 200 and alice.provider == "spare"
    assert len(up.calls) == 2
