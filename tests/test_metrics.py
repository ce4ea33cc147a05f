"""Prometheus ``/metrics``: every metric fed by real requests through the real app.

Providers are respx mocks; scrapes are parsed with prometheus-client's own text parser.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.observe import metrics as metrics_module
from llmrouter.observe.metrics import SPECS, Metrics, attempt_outcome
from llmrouter.testing import RouterClient, openai_chat
from llmrouter.web.app import METRICS, RELIABILITY
from tests.upstreams import openai_reply, openai_stream

URL = "http://up.test/v1"
CHAT = URL + "/chat/completions"
KEY = "rk-metrics-test-key-0123456789"


def config(**extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "up", "format": "openai", "base_url": URL, "discover": False,
                           "max_retries": 1, "cost_per_1m_tokens": 2.0}],
            "routers": [{"type": "fallback"}], **extra}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: RouterClient, headers: dict[str, str] | None = None) -> Samples:
    resp = await client.client.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def ok_reply(request: httpx.Request) -> httpx.Response:
    sent = request.read()
    if b'"stream":true' in sent:
        return httpx.Response(200, content=openai_stream({"model": "m", "messages": [{"role": "user"}]}),
                              headers={"content-type": "text/event-stream"})
    return httpx.Response(200, json=openai_reply({"model": "m", "messages": [{"role": "user", "content": "x"}]}))


async def test_a_request_is_counted_with_its_tokens_cost_duration_and_attempt(router: Any,
                                                                              mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client = await router(config())
    reply = await client.openai(openai_chat("hi", model="gpt-x"))
    assert reply.status == 200
    usage = reply.log_line["usage"]
    s = await scrape(client)
    labels = {"endpoint": "/v1/chat/completions", "provider": "up", "model": "gpt-x", "status": "200"}
    assert value(s, "llmrouter_requests_total", **labels) == 1
    assert value(s, "llmrouter_tokens_total", provider="up", model="gpt-x", direction="input") == usage["input_tokens"]
    assert value(s, "llmrouter_tokens_total", provider="up", model="gpt-x", direction="output") == usage["output_tokens"]
    assert value(s, "llmrouter_cost_usd_total", provider="up", model="gpt-x") == pytest.approx(reply.log_line["cost_usd"])
    assert value(s, "llmrouter_request_duration_seconds_count", provider="up") == 1
    duration = value(s, "llmrouter_request_duration_seconds_sum", provider="up")
    assert duration == pytest.approx(reply.log_line["duration_ms"] / 1000)
    assert value(s, "llmrouter_upstream_attempts_total", provider="up", outcome="success") == 1
    assert value(s, "llmrouter_in_flight") == 0
    # Non-streaming replies have no first token of their own.
    assert value(s, "llmrouter_time_to_first_token_seconds_count", provider="up") is None


async def test_a_stream_records_its_time_to_first_token(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client = await router(config())
    reply = await client.openai(openai_chat("hi", model="gpt-x", stream=True))
    assert reply.status == 200 and "data:" in reply.text
    s = await scrape(client)
    assert value(s, "llmrouter_time_to_first_token_seconds_count", provider="up") == 1
    ttft = value(s, "llmrouter_time_to_first_token_seconds_sum", provider="up")
    assert ttft is not None and 0 < ttft <= reply.log_line["duration_ms"] / 1000
    assert value(s, "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="up", model="gpt-x",
                 status="200") == 1


async def test_failed_attempts_and_the_open_circuit_are_visible(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).respond(500, json={"error": {"message": "boom"}})
    client = await router(config(routing={"circuit_failures": 2, "retry_backoff_base_s": 0}))
    reply = await client.openai(openai_chat("hi", model="gpt-x"))
    assert reply.status == 502
    s = await scrape(client)
    assert value(s, "llmrouter_upstream_attempts_total", provider="up", outcome="server_error") == 2
    assert value(s, "llmrouter_circuit_open", provider="up", model="gpt-x") == 1  # the breaker is the model's
    assert value(s, "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="up", model="gpt-x",
                 status="502") == 1
    # The circuit is open: the next request is refused without an attempt.
    assert (await client.openai(openai_chat("again", model="gpt-x"))).status == 503
    s = await scrape(client)
    assert value(s, "llmrouter_upstream_attempts_total", provider="up", outcome="server_error") == 2
    # Closing it (a successful probe) sets the gauge back to 0.
    breaker = client.app[RELIABILITY].circuits.models[("up", "gpt-x")]
    breaker.opened_at -= 3600
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    assert (await client.openai(openai_chat("probe", model="gpt-x"))).status == 200
    assert value(await scrape(client), "llmrouter_circuit_open", provider="up", model="gpt-x") == 0


async def test_rejected_requests_are_counted_without_provider(router: Any) -> None:
    client = await router(config())
    assert (await client.post("/v1/chat/completions", b"{not json")).status == 400
    s = await scrape(client)
    assert value(s, "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="", model="",
                 status="400") == 1
    assert value(s, "llmrouter_in_flight") == 0


async def test_metrics_need_the_inbound_key_unless_public(router: Any) -> None:
    client = await router(config(server={"api_key_env": "ROUTER_KEY"}), environ={"ROUTER_KEY": KEY})
    resp = await client.client.get("/metrics")
    assert resp.status == 401
    assert "missing API key" in (await resp.json())["error"]["message"]
    await scrape(client, {"Authorization": f"Bearer {KEY}"})
    public = await router(config(server={"api_key_env": "ROUTER_KEY"}, metrics={"public": True}),
                          environ={"ROUTER_KEY": KEY})
    await scrape(public)
    # Public metrics do not open anything else.
    assert (await public.client.get("/v1/models")).status == 401


async def test_metrics_can_be_switched_off(router: Any) -> None:
    client = await router(config(metrics={"enabled": False}))
    assert (await client.client.get("/metrics")).status == 404
    assert METRICS not in client.app


async def test_each_app_has_its_own_registry(router: Any) -> None:
    one = await router(config(providers=[{"name": "e", "format": "echo"}]))
    two = await router(config(providers=[{"name": "e", "format": "echo"}]))
    assert (await one.openai(openai_chat("hi", model="m"))).status == 200
    assert value(await scrape(one), "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="e",
                 model="m", status="200") == 1
    assert value(await scrape(two), "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="e",
                 model="m", status="200") is None


async def test_openmetrics_is_served_when_asked_for(router: Any) -> None:
    client = await router(config())
    resp = await client.client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")


async def test_client_chosen_model_names_cannot_grow_series_without_bound(router: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_MODEL_LABELS", 2)
    client = await router(config(providers=[{"name": "e", "format": "echo"}]))
    for model in ("m1", "m2", "m3", "m4"):
        assert (await client.openai(openai_chat("hi", model=model))).status == 200
    s = await scrape(client)
    models = {dict(labels)["model"] for name, labels in s if name == "llmrouter_requests_total"}
    assert models == {"m1", "m2", "other"}
    assert value(s, "llmrouter_requests_total", endpoint="/v1/chat/completions", provider="e", model="other",
                 status="200") == 2


@pytest.mark.parametrize("error, outcome", [
    (None, "success"),
    (ProviderTimeout("p", "slow"), "timeout"),
    (ProviderError("p", "refused"), "unreachable"),
    (ProviderError("p", "429", upstream_status=429), "rate_limited"),
    (ProviderError("p", "503", upstream_status=503), "server_error"),
    (ProviderError("p", "404", upstream_status=404), "client_error"),
    (ProviderError("p", "unreadable", upstream_status=200), "bad_reply"),
])
def test_attempt_outcomes(error: ProviderError | None, outcome: str) -> None:
    assert attempt_outcome(error) == outcome


def test_every_declared_metric_is_exported() -> None:
    metrics = Metrics()
    exported = {family.name for family in metrics.registry.collect()}
    # prometheus-client names counter families without their _total suffix.
    assert exported == {spec.name.removesuffix("_total") for spec in SPECS}


def _feed(metrics: Metrics) -> None:
    """Requests of several kinds (statuses, providers, durations on and between bucket bounds,
    streams with a time to first token, usage with and without tokens, cost) and attempts of every
    outcome."""
    for i, duration_ms in enumerate((1.0, 49.0, 50.0, 50.0001, 700.0, 2500.0, 1e6, 0.0) * 3):
        entry = {"endpoint": "/v1/chat/completions", "provider": "p" if i % 2 else "q", "sent_model": f"m{i % 3}",
                 "status": 200 if i % 4 else 502, "duration_ms": duration_ms,
                 "usage": {"input_tokens": i * 7, "output_tokens": 0 if i == 3 else i + 1},
                 "cost_usd": 0.001 * i if i != 5 else None}
        metrics.started()
        metrics.finished(entry, {"_ttft_s": duration_ms / 3000} if i % 3 == 0 else {})
    metrics.started()
    metrics.finished({"endpoint": "/v1/messages", "provider": None, "sent_model": None, "status": 400,
                      "duration_ms": 0.2, "usage": None, "cost_usd": None}, None)
    for error in (None, ProviderTimeout("p", "slow"), ProviderError("p", "down", upstream_status=503),
                  ProviderError("p", "no", upstream_status=404), ProviderError("q", "gone"), None):
        metrics.attempt("p" if error is None else error.provider, error)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples
            if not sample.name.endswith("_created")}


def test_updates_added_up_between_scrapes_scrape_as_updates_made_at_once() -> None:
    """In one process a request's updates wait in plain attributes until a scrape: the scrape shows
    the same series and counts as prometheus-client's own inc/observe made per request (float
    totals equal up to rounding), after one scrape and again after more requests."""
    deferred, direct = Metrics(), Metrics()
    assert deferred._defer
    direct._defer = False  # every update at once, through prometheus-client (as --workers does)
    for _ in range(2):
        _feed(deferred)
        _feed(direct)
        got, want = _samples(deferred), _samples(direct)
        assert got.keys() == want.keys()
        assert got == {key: pytest.approx(value, rel=1e-12) for key, value in want.items()}
    assert any(name.endswith("_bucket") for name, _ in got)


def test_any_collection_of_the_registry_sees_pending_updates() -> None:
    metrics = Metrics()
    metrics.started()
    metrics.finished({"endpoint": "/v1/messages", "provider": "p", "sent_model": "m", "status": 200,
                      "duration_ms": 30.0, "usage": {"input_tokens": 3, "output_tokens": 4}, "cost_usd": 0.5}, None)
    metrics.attempt("p", None)
    assert metrics.registry.get_sample_value("llmrouter_requests_total", {
        "endpoint": "/v1/messages", "provider": "p", "model": "m", "status": "200"}) == 1
    assert metrics.registry.get_sample_value("llmrouter_request_duration_seconds_bucket",
                                             {"provider": "p", "le": "0.05"}) == 1
    assert metrics.registry.get_sample_value("llmrouter_tokens_total",
                                             {"provider": "p", "model": "m", "direction": "output"}) == 4
    assert metrics.registry.get_sample_value("llmrouter_upstream_attempts_total",
                                             {"provider": "p", "outcome": "success"}) == 1


def test_a_negative_token_count_is_refused_when_it_arrives() -> None:
    """As prometheus-client's Counter.inc refuses it: at the request, not at a later scrape."""
    for defer in (True, False):
        metrics = Metrics()
        metrics._defer = defer
        with pytest.raises(ValueError):
            metrics.finished({"endpoint": "/v1/messages", "provider": "p", "sent_model": "m", "status": 200,
                              "duration_ms": 1.0, "usage": {"input_tokens": -5}, "cost_usd": None}, None)
        metrics.render()  # and the scrape still works
