"""OpenTelemetry traces: a span per request, per stage and per upstream attempt, the client's
traceparent continued and passed upstream, exported over OTLP/HTTP.

Spans are read with the SDK's in-memory exporter and, end to end, by a real OTLP/HTTP receiver on
loopback that decodes the protobuf export with opentelemetry-proto.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmrouter import Flow, hookimpl
from llmrouter.config import ConfigError
from llmrouter.engine.pipeline import Pipeline
from llmrouter.testing import RouterClient, make_config, openai_chat
from llmrouter.web.app import PIPELINE, RELIABILITY, TRACING, create_app
from tests.test_metrics import ok_reply
from tests.test_reliability import no_wait

URL = "http://up.test:8443/v1"
CHAT = URL + "/chat/completions"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
STAGES = ["on_start", "classify", "pre_request", "route", "provider", "post_response", "on_end"]


def config(tracing: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "up", "format": "openai", "base_url": URL, "discover": False,
                           "max_retries": 1, "cost_per_1m_tokens": 1.0}],
            "routers": [{"type": "fallback"}],
            "tracing": {"enabled": True, "exporter": "none", **(tracing or {})}, **extra}


async def traced(router: Any, cfg: dict[str, Any], **kwargs: Any) -> tuple[RouterClient, InMemorySpanExporter]:
    client = await router(cfg, **kwargs)
    exporter = InMemorySpanExporter()
    client.app[TRACING].provider.add_span_processor(SimpleSpanProcessor(exporter))
    return client, exporter


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


async def test_a_request_is_one_trace_continuing_the_clients(router: Any, mock_providers: Any) -> None:
    upstream = mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client, exporter = await traced(router, config())
    reply = await client.openai(openai_chat("hi", model="gpt-x", max_tokens=50, temperature=0.5),
                                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert reply.status == 200
    spans = exporter.get_finished_spans()
    assert {hexid(s.context.trace_id, 32) for s in spans} == {CLIENT_TRACE}

    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert root.name == "chat gpt-x"
    assert hexid(root.parent.span_id, 16) == CLIENT_SPAN and root.parent.is_remote
    attrs = root.attributes
    usage = reply.log_line["usage"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "gpt-x"
    assert attrs["gen_ai.request.max_tokens"] == 50 and attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.response.model"] == reply.body["model"]
    assert attrs["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert attrs["gen_ai.system"] == "openai" and attrs["gen_ai.provider.name"] == "openai"
    assert attrs["llmrouter.provider"] == "up" and attrs["llmrouter.request_id"] == reply.request_id
    assert attrs["http.response.status_code"] == 200
    assert attrs["llmrouter.cost_usd"] == pytest.approx(reply.log_line["cost_usd"])
    assert root.status.status_code is StatusCode.UNSET

    # One child per stage, in pipeline order.
    children = sorted((s for s in spans if s.parent and s.parent.span_id == root.context.span_id),
                      key=lambda s: s.start_time)
    assert [s.name for s in children] == STAGES
    assert by_name(spans, "route")[0].attributes["llmrouter.provider"] == "up"

    # The upstream attempt is a CLIENT span under the provider stage; its context went upstream.
    [provider] = by_name(spans, "provider")
    [attempt] = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert attempt.name == "chat gpt-x" and attempt.parent.span_id == provider.context.span_id
    assert attempt.attributes["server.address"] == "up.test" and attempt.attributes["server.port"] == 8443
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    sent = upstream.calls[-1].request.headers["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{hexid(attempt.context.span_id, 16)}-01"

    # The trace id is in the complete event and the log line.
    assert reply.log_line["trace_id"] == CLIENT_TRACE
    assert [e for e in reply.events if e["type"] == "complete"][0]["trace_id"] == CLIENT_TRACE
    assert "traceparent" not in reply.log_line["request"].get("headers", {})


@pytest.mark.parametrize("inbound", [{}, {"traceparent": "garbage"}, {"traceparent": f"00-{'0' * 32}-{CLIENT_SPAN}-01"}])
async def test_without_a_valid_client_trace_the_router_starts_one(router: Any, mock_providers: Any,
                                                                  inbound: dict[str, str]) -> None:
    upstream = mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client, exporter = await traced(router, config())
    reply = await client.openai(openai_chat("hi", model="gpt-x"), headers=inbound)
    assert reply.status == 200
    [root] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert root.parent is None
    trace_id = hexid(root.context.trace_id, 32)
    assert reply.log_line["trace_id"] == trace_id
    assert upstream.calls[-1].request.headers["traceparent"].split("-")[1] == trace_id


async def test_each_retry_is_its_own_attempt_span(router: Any, mock_providers: Any) -> None:
    replies = iter([httpx.Response(500, json={"error": {"message": "boom"}})])
    upstream = mock_providers.mock.post(CHAT).mock(
        side_effect=lambda request: next(replies, None) or ok_reply(request))
    client, exporter = await traced(router, config())
    no_wait(client)
    assert (await client.openai(openai_chat("hi", model="gpt-x"))).status == 200
    attempts = sorted((s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT),
                      key=lambda s: s.start_time)
    assert [a.attributes["llmrouter.attempt"] for a in attempts] == [1, 2]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[0].attributes["error.type"] == "500"
    assert attempts[0].attributes["http.response.status_code"] == 500
    assert attempts[1].status.status_code is StatusCode.UNSET
    # Each attempt carried its own span id upstream.
    sent = [call.request.headers["traceparent"].split("-")[2] for call in upstream.calls]
    assert sent == [hexid(a.context.span_id, 16) for a in attempts]


async def test_a_failed_request_marks_its_spans(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).respond(503, json={"error": {"message": "down"}})
    client, exporter = await traced(router, config(routing={"retry_backoff_base_s": 0}))
    reply = await client.openai(openai_chat("hi", model="gpt-x"))
    assert reply.status == 502
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert root.status.status_code is StatusCode.ERROR and root.attributes["error.type"] == "502"
    assert by_name(spans, "provider")[0].status.status_code is StatusCode.ERROR
    assert "post_response" not in {s.name for s in spans}  # no reply: only on_end runs
    assert reply.log_line["trace_id"] == hexid(root.context.trace_id, 32)


async def test_a_stream_keeps_its_provider_span_open_until_the_end(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client, exporter = await traced(router, config())
    reply = await client.openai(openai_chat("hi", model="gpt-x", stream=True))
    assert reply.status == 200
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    [provider] = by_name(spans, "provider")
    [attempt] = [s for s in spans if s.kind is SpanKind.CLIENT]
    # The attempt ends at the first event; the provider stage when the last one has been relayed.
    assert attempt.end_time <= provider.end_time
    assert provider.attributes["gen_ai.usage.output_tokens"] == reply.log_line["usage"]["output_tokens"]
    assert 0 < root.attributes["llmrouter.time_to_first_token_s"] <= reply.log_line["duration_ms"] / 1000
    assert [s.name for s in sorted(spans, key=lambda s: s.start_time) if s.parent
            and s.parent.span_id == root.context.span_id] == STAGES


class Answers:
    """A plugin that answers by itself in on_start."""

    @hookimpl
    def on_start(self, ctx: Any) -> Flow:
        from llmrouter import ChatResponse

        ctx.response = ChatResponse.from_text("from the plugin")
        return Flow.STOP


async def test_a_plugin_answer_skips_the_route_and_provider_spans(router: Any) -> None:
    client, exporter = await traced(router, config(plugins={"answers": {}}), plugins={"answers": Answers()})
    reply = await client.openai(openai_chat("hi", model="gpt-x"))
    assert reply.status == 200
    names = [s.name for s in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time)]
    assert names == ["chat gpt-x", "on_start", "post_response", "on_end"]
    assert by_name(exporter.get_finished_spans(), "on_start")[0].attributes["llmrouter.stopped_by"] == "answers"


async def test_sampling_follows_the_ratio_and_the_clients_decision(router: Any, mock_providers: Any) -> None:
    upstream = mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    client, exporter = await traced(router, config({"sample_ratio": 0.0}))
    reply = await client.openai(openai_chat("hi", model="gpt-x"))
    assert exporter.get_finished_spans() == ()
    # Unsampled, the trace still has an id, in the log and upstream (sampled flag clear).
    version, trace_id, _, flags = upstream.calls[-1].request.headers["traceparent"].split("-")
    assert trace_id == reply.log_line["trace_id"] and int(flags, 16) & 1 == 0
    # A client that samples its trace gets it recorded whatever the ratio.
    await client.openai(openai_chat("hi", model="gpt-x"), headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert {hexid(s.context.trace_id, 32) for s in exporter.get_finished_spans()} == {CLIENT_TRACE}


async def test_tracing_off_adds_nothing(router: Any, mock_providers: Any) -> None:
    upstream = mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    cfg = config()
    cfg["tracing"] = {"enabled": False}
    client = await router(cfg)
    reply = await client.openai(openai_chat("hi", model="gpt-x"),
                                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert reply.status == 200
    assert "trace_id" not in reply.log_line
    assert "traceparent" not in upstream.calls[-1].request.headers
    assert type(client.app[PIPELINE]) is Pipeline and TRACING not in client.app
    assert type(client.app[RELIABILITY]).__name__ == "Reliability"


def test_tracing_off_never_imports_opentelemetry() -> None:
    """In a fresh interpreter, a router serving requests with tracing off never loads OpenTelemetry."""
    script = textwrap.dedent("""
        import asyncio, sys
        from aiohttp.test_utils import TestClient, TestServer
        from llmrouter.web.app import create_app
        from llmrouter.testing import make_config, openai_chat

        async def main():
            config = make_config({"providers": [{"name": "e", "format": "echo"}], "routers": [{"type": "fallback"}]})
            async with TestClient(TestServer(create_app(config, environ={}))) as client:
                for stream in (False, True):
                    resp = await client.post("/v1/chat/completions", json=openai_chat("hi", stream=stream))
                    assert resp.status == 200, await resp.text()
                    await resp.read()
            loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "llmrouter.observe.tracing", "llmrouter.engine.traced")))
            print("LOADED", loaded)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_tracing_without_opentelemetry_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llmrouter.observe.tracing", None)
    with pytest.raises(ConfigError, match=r"\[tracing\] key 'enabled': OpenTelemetry is not installed.*llmrouter\[otel\]"):
        create_app(make_config(config()), environ={})


# -- a real OTLP/HTTP receiver ------------------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver: decodes each ``POST /v1/traces`` with opentelemetry-proto."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self.traces)

    async def traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.exports.append(message)
        self.content_types.append(request.content_type)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope_spans.spans)
        return out


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind)
    return out


@pytest.mark.parametrize("via", ["config", "environment"])
async def test_spans_reach_an_otlp_http_receiver(router: Any, mock_providers: Any, aiohttp_server: Any,
                                                 monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app)
    base = f"http://127.0.0.1:{server.port}"
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    tracing: dict[str, Any] = {"exporter": "otlp", "service_name": "router-under-test"}
    if via == "config":
        tracing["otlp_endpoint"] = base
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    client = await router(config(tracing))
    reply = await client.openai(openai_chat("hi", model="gpt-x"),
                                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    assert reply.status == 200
    await client.client.close()  # stopping the app flushes the batch exporter
    assert receiver.content_types and set(receiver.content_types) == {"application/x-protobuf"}
    received = receiver.spans()
    assert {resource["service.name"] for resource, _ in received} == {"router-under-test"}
    names = {span.name for _, span in received}
    assert set(STAGES) | {"chat gpt-x"} <= names
    assert {span.trace_id.hex() for _, span in received} == {CLIENT_TRACE}
    [root] = [span for _, span in received if span.parent_span_id.hex() == CLIENT_SPAN]
    attrs = attributes(root)
    assert attrs["gen_ai.request.model"] == "gpt-x"
    assert attrs["gen_ai.usage.output_tokens"] == reply.log_line["usage"]["output_tokens"]
    assert attrs["llmrouter.request_id"] == reply.request_id


def test_check_reports_metrics_and_tracing(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from llmrouter.cli import main

    path = tmp_path / "router.toml"
    path.write_text('[tracing]\nenabled = true\notlp_endpoint = "http://127.0.0.1:4318"\n'
                    '[metrics]\npublic = true\n[server]\napi_key_env = "K"\n'
                    '[[providers]]\nname = "e"\nformat = "echo"\n[[routers]]\ntype = "fallback"\n')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "metrics: on, /metrics open" in result.output
    assert "tracing: on -> http://127.0.0.1:4318" in result.output


class Instrumented:
    """A plugin that traces its own work with the OpenTelemetry API."""

    def __init__(self) -> None:
        self.tracer: Any = None

    @hookimpl
    def pre_request(self, ctx: Any) -> None:
        with self.tracer.start_as_current_span("plugin work"):
            pass


async def test_spans_a_plugin_starts_nest_under_its_stage(router: Any, mock_providers: Any) -> None:
    mock_providers.mock.post(CHAT).mock(side_effect=ok_reply)
    plugin = Instrumented()
    client, exporter = await traced(router, config(plugins={"instrumented": {}}), plugins={"instrumented": plugin})
    plugin.tracer = client.app[TRACING].provider.get_tracer("plugin")
    assert (await client.openai(openai_chat("hi", model="gpt-x"))).status == 200
    spans = exporter.get_finished_spans()
    [work] = by_name(spans, "plugin work")
    [stage] = by_name(spans, "pre_request")
    assert work.parent.span_id == stage.context.span_id
    assert stage.attributes["llmrouter.plugins"] == ("instrumented",)


async def test_a_stream_that_breaks_midway_marks_its_provider_and_request_spans(router: Any,
                                                                               mock_providers: Any) -> None:
    from tests.test_streaming_faults import ERROR_FRAMES, HEADS

    mock_providers.mock.post(CHAT).respond(200, content=HEADS["oa"] + ERROR_FRAMES["oa"][0],
                                           headers={"content-type": "text/event-stream"})
    client, exporter = await traced(router, config())
    reply = await client.openai(openai_chat("hi", model="gpt-x", stream=True))
    assert reply.status == 200 and reply.log_line["status"] == 502
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.kind is SpanKind.SERVER]
    [provider] = by_name(spans, "provider")
    [attempt] = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert attempt.status.status_code is StatusCode.UNSET  # the attempt got its first event
    assert provider.status.status_code is StatusCode.ERROR and "rate limited" in provider.status.description
    assert root.status.status_code is StatusCode.ERROR and root.attributes["http.response.status_code"] == 502


@pytest.mark.parametrize("table, message", [
    ({"enabled": True, "otlp_endpoint": "collector:4317"}, "[tracing] key 'otlp_endpoint': Value error, must be an http"),
    ({"enabled": True, "sample_ratio": 2}, "[tracing] key 'sample_ratio'"),
    ({"enabled": True, "exporter": "jaeger"}, "[tracing] key 'exporter'"),
    ({"enabeld": True}, "[tracing] key 'enabeld': Extra inputs are not permitted"),
])
def test_bad_tracing_config_names_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"providers": [{"name": "e", "format": "echo"}], "tracing": table})
    assert message in str(info.value)


def test_bad_metrics_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[metrics\] key 'public': Input should be a valid boolean"):
        make_config({"providers": [{"name": "e", "format": "echo"}], "metrics": {"public": "maybe"}})
