"""The request log: line shape, secrets, concurrency, flushing and closing (read back through ``read_log``)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from llmrouter import Context, hookimpl
from llmrouter.jsonutil import loads
from llmrouter.observe.logfiles import log_text, logged_request, segments
from llmrouter.observe.requestlog import REDACTED, RawJSON, RequestLog, has_secret_key, read_log, redact_keys
from llmrouter.testing import MockProviders, anthropic_message, openai_chat

ENTRY_KEYS = {"type", "id", "ts_ms", "duration_ms", "endpoint", "status", "provider", "requested_model",
              "sent_model", "tags", "plugins", "stream", "request", "response", "error", "usage", "cost_usd"}

PRICED = {
    "providers": [{"name": "up", "format": "openai", "base_url": "http://up.test/v1", "cost_per_1m_tokens": 2.0,
                   "api_key_env": "UP_KEY"}],
    "classifiers": {"keyword": {"enabled": True, "tags": {"greeting": ["hello"]}}},
    "routers": [{"type": "fallback", "providers": ["up"], "rewrite_model": "gpt-real"}],
}


def read_lines(path: Path) -> list[dict[str, Any]]:
    problems: list[str] = []
    entries = list(read_log(path, problems))
    assert problems == []
    return entries


class Shouter:
    """Rewrites the prompt in ``pre_request`` (the log must keep the request as the client sent it)."""

    @hookimpl
    def pre_request(self, ctx: Context) -> None:
        ctx.request.messages[-1].content[0].text = "REWRITTEN"  # type: ignore[union-attr]
        ctx.mark_modified()


async def test_log_line_holds_the_whole_exchange(router: Any, mock_providers: MockProviders) -> None:
    upstream = mock_providers.add_openai("http://up.test/v1", "hi back")
    client = await router({**PRICED, "plugins": {"shout": {"enabled": True}}}, plugins={"shout": Shouter()},
                          environ={"UP_KEY": "sk-provider-secret-123"})
    reply = await client.openai(openai_chat("hello world", model="gpt-asked", temperature=0.5))
    assert reply.status == 200
    line = reply.log_line
    assert line is not None and set(line) >= ENTRY_KEYS
    assert line["type"] == "complete" and line["id"] == reply.request_id
    assert line["endpoint"] == "/v1/chat/completions" and line["status"] == 200
    assert line["provider"] == "up"
    assert line["requested_model"] == "gpt-asked" and line["sent_model"] == "gpt-real"
    assert line["tags"] == ["greeting"] and line["plugins"] == ["shout"]
    assert line["usage"] == {"input_tokens": 10, "output_tokens": 5}
    assert line["cost_usd"] == pytest.approx(15 * 2.0 / 1_000_000)
    assert line["duration_ms"] > 0 and line["error"] is None
    assert line["response"]["content"][0]["text"] == "hi back"
    # The request as the client sent it (before plugins and classifiers), complete enough to replay.
    request = logged_request(line)
    assert request.model == "gpt-asked" and request.temperature == 0.5
    assert request.messages[0].text() == "hello world" and request.tags == []
    assert mock_providers.sent_json(upstream)["messages"][0]["content"] == "REWRITTEN"


async def test_error_line_has_error_and_no_response(router: Any, mock_providers: MockProviders) -> None:
    mock_providers.add_openai("http://up.test/v1", status=503, body={"error": {"message": "overloaded"}})
    client = await router({**PRICED, "routing": {"failover": False}}, environ={"UP_KEY": "sk-provider-secret-123"})
    reply = await client.openai(openai_chat("hello", model="m"))
    assert reply.status == 502
    line = reply.log_line
    assert line is not None and "overloaded" in line["error"] and line["status"] == 502
    assert line["response"] is None and line["usage"] is None and line["cost_usd"] is None


async def test_secrets_never_reach_the_log(router: Any, mock_providers: MockProviders) -> None:
    # The upstream echoes the key back in its error message, as some servers do.
    mock_providers.add_openai("http://up.test/v1", status=401,
                              body={"error": {"message": "bad key sk-provider-secret-123"}})
    cfg = {**PRICED, "server": {"api_key_env": "ROUTER_API_KEY"}, "routing": {"failover": False}}
    client = await router(cfg, environ={"UP_KEY": "sk-provider-secret-123", "ROUTER_API_KEY": "inbound-secret-456"})
    body = openai_chat("hello", model="m", api_key="body-secret-789", metadata={"x-api-key": "meta-secret-000"})
    reply = await client.openai(body, {"Authorization": "Bearer inbound-secret-456"})
    assert reply.status == 502
    reply2 = await client.anthropic(anthropic_message("hi"), {"x-api-key": "inbound-secret-456"})
    assert reply2.status == 502
    client.pipeline.request_log.wait_idle()
    text = log_text(client.pipeline.request_log.path)
    for secret in ("sk-provider-secret-123", "inbound-secret-456", "body-secret-789", "meta-secret-000"):
        assert secret not in text
    assert REDACTED in text
    assert len(read_lines(client.pipeline.request_log.path)) == 2  # still valid JSON lines


async def test_client_credentials_are_not_logged_when_auth_is_off(router: Any) -> None:
    client = await router({"providers": [{"name": "echo", "format": "echo"}],
                           "routers": [{"type": "fallback", "providers": ["echo"]}]})
    await client.openai(openai_chat("hi"), {"Authorization": "Bearer sk-client-own-key-1"})
    await client.anthropic(anthropic_message("hi"), {"x-api-key": "sk-ant-client-key-2", "anthropic-beta": "b1"})
    client.pipeline.request_log.wait_idle()
    text = log_text(client.pipeline.request_log.path)
    assert "sk-client-own-key-1" not in text and "sk-ant-client-key-2" not in text
    assert len(text.splitlines()) == 2


async def test_hundreds_of_parallel_requests_give_exactly_that_many_intact_lines(router: Any) -> None:
    client = await router({"providers": [{"name": "echo", "format": "echo"}],
                           "routers": [{"type": "fallback", "providers": ["echo"]}]})
    n = 300
    big = "x" * 5000  # lines larger than any pipe or stdio buffer
    replies = await asyncio.gather(*(client.openai(openai_chat(f"{i} {big}", stream=i % 2 == 0)) for i in range(n)))
    assert all(r.status == 200 for r in replies)
    lines = read_lines(client.pipeline.request_log.path)
    assert len(lines) == n
    assert {line["id"] for line in lines} == {r.request_id for r in replies}
    assert all(line["response"]["content"][0]["text"].endswith(big) for line in lines)


def test_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "requests.jsonl"
    rlog = RequestLog(path)
    rlog.write({"type": "complete", "id": "1"})
    rlog.close()
    assert read_lines(path) == [{"type": "complete", "id": "1"}]


def test_lines_are_visible_before_close_and_everything_is_written_on_close(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    rlog = RequestLog(path)
    rlog.write({"id": "first"})
    assert rlog.wait_idle(2)
    assert read_lines(path) == [{"id": "first"}]  # read through another handle, no close needed
    for i in range(1000):
        rlog.write({"id": i})
    rlog.close()
    assert len(read_lines(path)) == 1001
    rlog.write({"id": "late"})  # ignored, no error
    rlog.close()
    assert len(read_lines(path)) == 1001


def test_a_plain_log_of_an_older_version_is_kept_and_read_first(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"id":"old"}\n')
    for name in ("new", "newer"):  # each writer (a restart) starts a segment of its own
        rlog = RequestLog(path)
        rlog.write({"id": name})
        rlog.close()
    assert path.read_bytes() == b'{"id":"old"}\n'
    assert len(segments(path)) == 2
    assert [line["id"] for line in read_lines(path)] == ["old", "new", "newer"]


def test_two_writers_on_one_path_never_interleave(tmp_path: Path) -> None:
    """Like two ``--workers`` processes sharing a log path: each writes segments of its own."""
    path = tmp_path / "log.jsonl"
    logs = [RequestLog(path), RequestLog(path)]
    payload = "y" * 20_000

    def produce(rlog: RequestLog, tag: int) -> None:
        for i in range(200):
            rlog.write({"id": f"{tag}-{i}", "text": payload})

    threads = [threading.Thread(target=produce, args=(rlog, n)) for n, rlog in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rlog in logs:
        rlog.close()
    lines = read_lines(path)
    assert len(lines) == 400 and all(line["text"] == payload for line in lines)
    assert len(segments(path)) == 2


def test_unserialisable_entry_is_skipped_not_fatal(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl")
    rlog.write({"id": "bad", "x": object()})
    rlog.write({"id": "good"})
    rlog.close()
    assert read_lines(tmp_path / "log.jsonl") == [{"id": "good"}]


def test_redact_keys_is_recursive_and_case_insensitive() -> None:
    value = {"a": [{"Authorization": "x", "ok": 1}], "API_KEY": "y", "nested": {"x-api-key": "z"}}
    assert redact_keys(value) == {"a": [{"Authorization": REDACTED, "ok": 1}], "API_KEY": REDACTED,
                                  "nested": {"x-api-key": REDACTED}}


@pytest.mark.parametrize("raw", [
    b'{"api_key": "s3cr3t-value"}',
    b'{"m":[{"Api-Key" :\n "s3cr3t-value"}]}',
    b'{"PROXY-AUTHORIZATION":"s3cr3t-value"}',
    b'{"x-goog-api-key"\t: "s3cr3t-value"}',
    b'{"api\\u005fkey": "s3cr3t-value"}',
    b'{"\\u0061pikey": "s3cr3t-value"}',
    b'{"x-api-ke\\u0079": "s3cr3t-value"}',
])
def test_credential_keys_in_raw_request_bytes_are_redacted(tmp_path: Path, raw: bytes) -> None:
    # The client's body is logged as its own bytes: spacing, case and \u escapes must not hide a key.
    rlog = RequestLog(tmp_path / "log.jsonl")
    line = rlog.encode({"type": "complete", "request": raw})
    rlog.close()
    assert b"s3cr3t-value" not in line and REDACTED.encode() in line
    assert loads(line)["type"] == "complete"


def test_ordinary_keys_ending_like_credential_keys_are_kept(tmp_path: Path) -> None:
    raw = (b'{"function": {"description": "a monkey", "turkey": 1, "location": "x"},'
           b' "text": "key\\": not a key", "caf\\u00e9": "\\u00e9"}')
    rlog = RequestLog(tmp_path / "log.jsonl")
    line = rlog.encode({"request": raw})
    rlog.close()
    assert loads(line)["request"] == loads(raw)
    assert REDACTED.encode() not in line


@pytest.mark.parametrize("raw", [
    b'{"messages": [{"role": "user", "content": "hi"}], "metadata": {"API_KEY": "s3cr3t-value"}}',
    b'{"tools": [{"x": {"Proxy-Authorization" :\n "s3cr3t-value"}}]}',
    b'{"api\\u005fkey": "s3cr3t-value"}',
])
def test_raw_json_is_checked_for_credential_keys_on_its_parsed_form(tmp_path: Path, raw: bytes) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl")
    line = rlog.encode({"type": "complete", "request": RawJSON(raw, loads(raw))})
    rlog.close()
    assert b"s3cr3t-value" not in line and REDACTED.encode() in line
    assert loads(line)["type"] == "complete"


def test_raw_json_without_credentials_is_written_verbatim_and_other_fields_still_checked(tmp_path: Path) -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "my key: long-enough-secret"}]}'
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=["long-enough-secret"])
    line = rlog.encode({"request": RawJSON(raw, loads(raw)), "error": "bad key long-enough-secret"})
    assert line.startswith(b'{"request":' + raw.replace(b"long-enough-secret", REDACTED.encode()) + b",")
    assert b"long-enough-secret" not in line
    # A credential-like key outside the raw value is still found (the entry is then redacted whole).
    line = rlog.encode({"request": RawJSON(raw, loads(raw)), "response": {"x-api-key": "other-secret"}})
    rlog.close()
    assert b"other-secret" not in line and loads(line)["response"] == {"x-api-key": REDACTED}
    assert loads(line)["request"]["messages"][0]["content"] == "my key: [redacted]"


def test_has_secret_key_finds_keys_at_any_depth_in_any_case() -> None:
    assert not has_secret_key({"a": [{"b": {"function": 1, "monkey": 2}}], "key": 3})
    assert has_secret_key({"a": [[{"b": {"X-Goog-Api-Key": 1}}]]})
    assert has_secret_key([{"apiKey": 1}])
    assert not has_secret_key("api_key")


def test_short_or_structural_secrets_are_not_substituted(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=["id", '"quote"secret', None, "", "long-enough-secret"])
    line = rlog.encode({"id": "long-enough-secret", "text": 'has "quote"secret'})
    rlog.close()
    assert loads(line) == {"id": REDACTED, "text": 'has "quote"secret'}


async def test_log_disabled_writes_nothing(router: Any, tmp_path: Path) -> None:
    client = await router({"providers": [{"name": "echo", "format": "echo"}],
                           "routers": [{"type": "fallback", "providers": ["echo"]}], "logging": {"enabled": False}})
    reply = await client.openai(openai_chat("hi"))
    assert reply.status == 200 and reply.log_line is None
    assert client.pipeline.request_log is None
    assert not list(tmp_path.glob("requests*"))


async def test_everything_is_on_disk_when_the_app_shuts_down(aiohttp_client: Any, tmp_path: Path) -> None:
    from llmrouter.testing import make_config
    from llmrouter.web.app import create_app

    cfg = make_config({"providers": [{"name": "echo", "format": "echo"}],
                       "routers": [{"type": "fallback", "providers": ["echo"]}],
                       "logging": {"enabled": True, "path": str(tmp_path / "deep" / "dir" / "log.jsonl")}})
    client = await aiohttp_client(create_app(cfg, environ={}))
    replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=openai_chat(f"n{i}")) for i in range(50)))
    assert all(r.status == 200 for r in replies)
    await client.close()  # runs the app's cleanup: the log is drained and closed
    lines = read_lines(tmp_path / "deep" / "dir" / "log.jsonl")
    assert sorted(line["id"] for line in lines) == sorted(r.headers["X-Router-Request-Id"] for r in replies)


def test_an_entry_with_two_small_bodies_keeps_both_as_sent_or_is_redacted_for_a_key_in_either(
        tmp_path: Path) -> None:
    first = b'{"model": "m",\n "messages": []}'
    clean, keyed = b'{"x": 1}', b'{"nested": {"Api-Key": "s3cr3t-value"}}'
    rlog = RequestLog(tmp_path / "log.jsonl")
    try:
        line = rlog.encode({"request": RawJSON(first, loads(first)), "other": RawJSON(clean, loads(clean))})
        assert line == b'{"request":{"model": "m",  "messages": []},"other":{"x": 1}}\n'
        line = rlog.encode({"request": RawJSON(first, loads(first)), "other": RawJSON(keyed, loads(keyed))})
        assert b"s3cr3t-value" not in line and loads(line)["other"] == {"nested": {"Api-Key": REDACTED}}
    finally:
        rlog.close()
