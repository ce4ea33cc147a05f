"""``/dashboard/events?request_kb=N`` (big requests as previews) and ``GET /dashboard/requests/{id}``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.jsonutil import dumps, loads
from llmrouter.observe.events import ParsedJSON
from llmrouter.testing import anthropic_message, openai_chat
from llmrouter.web.app import BUS
from llmrouter.web.request_preview import CONVERSATION, LEFT_OUT, TAIL, preview
from tests.test_dashboard import ECHO, next_event, open_events

ROOT = Path(__file__).resolve().parent.parent
TOOLS = [{"type": "function", "function": {"name": f"tool{i}", "description": "d" * 200,
                                           "parameters": {"type": "object", "properties": {}}}}
         for i in range(5)]


def agent_chat(turns: int = 30, last: str = "what now?") -> dict[str, Any]:
    """An agent-shaped OpenAI request: a system prompt, many turns, tools; several KB of JSON."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are an agent. " * 50}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"question {i} " + "x" * 150},
                     {"role": "assistant", "content": f"answer {i} " + "y" * 150}]
    messages.append({"role": "user", "content": last})
    return {"model": "m", "messages": messages, "tools": TOOLS, "max_tokens": 50}


async def completes(resp: Any, count: int) -> list[dict[str, Any]]:
    got = []
    while len(got) < count:
        kind, data = await next_event(resp)
        if kind == "complete":
            got.append(data)
    return got


async def test_a_big_request_arrives_as_a_preview_naming_what_was_left_out(router: Any) -> None:
    client = await router(ECHO)
    resp = await open_events(client, "?request_kb=2")
    body = agent_chat()
    reply = await client.openai(body)
    assert reply.status == 200
    (event,) = await completes(resp, 1)
    assert event["id"] == reply.request_id
    request = event["request"]
    assert request["messages"] == body["messages"][-4:]
    assert "tools" not in request
    assert request["model"] == "m" and request["max_tokens"] == 50
    assert event["request_omitted"] == {"bytes": len(dumps(body)), "items": len(body["messages"]) - 4,
                                        "fields": ["tools"]}
    assert len(dumps(request)) <= 2048
    # Everything else about the event is as without the parameter.
    assert event["response"]["content"][0]["text"] == "what now?"
    assert event["request_format"] == "openai"
    resp.close()


async def test_small_requests_and_streams_without_the_parameter_stay_whole(router: Any) -> None:
    client = await router(ECHO)
    lean = await open_events(client, "?request_kb=2")
    full = await open_events(client)
    small = openai_chat("hello")
    big = agent_chat()
    await client.openai(small)
    await client.openai(big)
    lean_small, lean_big = await completes(lean, 2)
    full_small, full_big = await completes(full, 2)
    assert lean_small["request"] == small and "request_omitted" not in lean_small
    assert full_small["request"] == small
    assert full_big["request"] == big and "request_omitted" not in full_big
    assert lean_big["request_omitted"]["items"] == len(big["messages"]) - 4
    lean.close()
    full.close()


async def test_an_anthropic_request_loses_its_system_prompt_and_tools(router: Any) -> None:
    client = await router(ECHO)
    resp = await open_events(client, "?request_kb=1")
    body = anthropic_message("final question", model="m")
    body["system"] = [{"type": "text", "text": "rules " * 300}]
    body["messages"] = [{"role": "user", "content": f"turn {i} " + "z" * 100} if i % 2 == 0 else
                        {"role": "assistant", "content": f"reply {i}"} for i in range(10)] + body["messages"]
    body["tools"] = [{"name": "t", "description": "x" * 500, "input_schema": {"type": "object"}}]
    assert (await client.anthropic(body)).status == 200
    (event,) = await completes(resp, 1)
    assert event["request"]["messages"] == body["messages"][-4:]
    assert "system" not in event["request"] and "tools" not in event["request"]
    assert event["request_omitted"]["fields"] == ["system", "tools"]
    assert event["request_omitted"]["items"] == 7
    resp.close()


async def test_a_tail_too_big_for_the_budget_is_cut_further(router: Any) -> None:
    client = await router(ECHO)
    resp = await open_events(client, "?request_kb=1")
    body = agent_chat(turns=3, last="q" * 600)
    body["messages"].insert(-1, {"role": "assistant", "content": "a" * 900})
    huge = agent_chat(turns=3, last="h" * 5000)
    await client.openai(body)
    await client.openai(huge)
    cut, gone = await completes(resp, 2)
    assert cut["request"]["messages"] == body["messages"][-1:]
    assert cut["request_omitted"]["items"] == len(body["messages"]) - 1
    assert "messages" not in gone["request"]
    assert gone["request_omitted"]["items"] == len(huge["messages"])
    assert gone["request"]["model"] == "m"
    resp.close()


async def test_history_is_replayed_as_previews_and_the_full_request_can_be_fetched(router: Any) -> None:
    client = await router(ECHO)
    big = agent_chat()
    small = openai_chat("tiny")
    first = await client.openai(big)
    second = await client.openai(small)
    resp = await open_events(client, "?history=2&request_kb=2")
    replayed = await completes(resp, 2)
    assert [e["id"] for e in replayed] == [first.request_id, second.request_id]
    assert replayed[0]["request"]["messages"] == big["messages"][-4:]
    assert replayed[1]["request"] == small and "request_omitted" not in replayed[1]
    # A second dashboard gets the same previews (computed once, kept with the history).
    again = await open_events(client, "?history=1&request_kb=2")
    assert (await completes(again, 1))[0]["request"] == small
    resp.close()
    again.close()

    whole = await client.client.get(f"/dashboard/requests/{first.request_id}")
    assert whole.status == 200 and whole.headers["Content-Type"].startswith("application/json")
    assert loads(await whole.read()) == big
    missing = await client.client.get("/dashboard/requests/nope")
    assert missing.status == 404
    assert "nope" in (await missing.json())["error"]["message"]


async def test_a_request_rejected_before_parsing_has_no_request_to_fetch(router: Any) -> None:
    client = await router(ECHO)
    broken = await client.openai(b"{oops")
    assert broken.status == 400
    got = await client.client.get(f"/dashboard/requests/{broken.request_id}")
    assert got.status == 404
    assert "no request" in (await got.json())["error"]["message"]


async def test_request_kb_must_be_a_non_negative_integer(router: Any) -> None:
    client = await router(ECHO)
    for bad in ("lots", "-1", "1.5"):
        resp = await client.client.get(f"/dashboard/events?request_kb={bad}")
        assert resp.status == 400
        assert "request_kb" in await resp.text()
    assert (await client.client.get("/dashboard/events?request_kb=0")).status == 200


async def test_a_published_plain_dict_request_is_measured_by_its_json(router: Any) -> None:
    client = await router(ECHO)
    resp = await open_events(client, "?request_kb=1")
    request = agent_chat(turns=5)
    small = openai_chat("small")
    client.app[BUS].publish({"type": "complete", "id": "plain", "request": request})
    client.app[BUS].publish({"type": "complete", "id": "plain-small", "request": small})
    event, whole = await completes(resp, 2)
    assert event["request"]["messages"] == request["messages"][-4:]
    assert event["request_omitted"]["bytes"] == len(dumps(request))
    assert whole["request"] == small and "request_omitted" not in whole
    resp.close()


async def test_fetching_a_request_needs_the_admin_key(router: Any) -> None:
    client = await router({**ECHO, "server": {"api_key_env": "ROUTER_KEY"}}, environ={"ROUTER_KEY": "sekrit-key"})
    auth = {"Authorization": "Bearer sekrit-key"}
    done = await client.openai(openai_chat("hi"), auth)
    assert (await client.client.get(f"/dashboard/requests/{done.request_id}")).status == 401
    ok = await client.client.get(f"/dashboard/requests/{done.request_id}?api_key=sekrit-key")
    assert ok.status == 200 and loads(await ok.read()) == openai_chat("hi")


def test_the_bench_subscriber_subscribes_like_the_dashboard_page() -> None:
    page = (ROOT / "llmrouter/web/static/dashboard.html").read_text()
    query = re.search(r'"/events\?([^"]+)"', page)
    assert query is not None
    bench = (ROOT / "bench/dashboard_subscriber.py").read_text()
    assert f'PAGE_QUERY = "{query.group(1)}"' in bench
    assert "request_kb=" in query.group(1)


async def test_dashboard_false_removes_the_request_route_too(router: Any) -> None:
    client = await router({**ECHO, "server": {"dashboard": False}})
    assert (await client.client.get("/dashboard/requests/x")).status == 404


def _preview_by_the_rule(body: dict[str, Any], limit: int) -> tuple[bytes, dict[str, Any] | None]:
    """The module notes' rule, spelled out plainly: the oracle for preview()."""
    raw = dumps(body)
    if len(raw) <= limit:
        return raw, None
    name = next((n for n in CONVERSATION if n in body), None)
    whole = body[name] if name is not None else None
    items = whole if isinstance(whole, list) else [whole] if name is not None else []
    rest = {k: v for k, v in body.items() if k not in LEFT_OUT and k not in CONVERSATION}
    for count in (min(TAIL, len(items)), 1 if items else 0, 0):
        candidate = dict(rest)
        if count:
            candidate[name] = items[-count:] if isinstance(whole, list) else whole  # type: ignore[index]
        if len(dumps(candidate)) <= limit or count == 0:
            break
    return dumps(candidate), {"bytes": len(raw), "items": len(items) - count,
                              "fields": [n for n in LEFT_OUT if n in body]}


KEYS = st.sampled_from(["model", "messages", "input", "system", "instructions", "tools", "max_tokens", "x"])
VALUES = st.one_of(st.text(max_size=40), st.integers(0, 9), st.lists(st.text(max_size=300), max_size=8),
                   st.dictionaries(st.text(max_size=3), st.text(max_size=50), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8), st.sampled_from([0, 1, 50, 200, 600, 2000]), st.booleans())
def test_previews_follow_the_rule(body: dict[str, Any], limit: int, as_sent: bool) -> None:
    """Whatever the fields, their order, the conversation's type and the limit: the bytes and the
    note the module notes describe."""
    request = ParsedJSON(body, dumps(body)) if as_sent else body
    got = preview(request, limit)
    assert (got.request, got.omitted) == _preview_by_the_rule(body, limit)
