"""Route handlers: the chat endpoints, ``/v1/models`` (and one model), ``/health``, ``/metrics`` and ``/``."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llmrouter.context import Context
from llmrouter.engine.plugin_settings import referenced_models
from llmrouter.errors import NotFound, RouterError
from llmrouter.formats import CLIENT_FORMATS, ClientFormat
from llmrouter.formats.base import check_request
from llmrouter.formats.passthrough import ClientBody, kept_as_sent
from llmrouter.jsonutil import dumps
from llmrouter.web.appkeys import CLUSTER, KEYRING, LIMITER, LIVE, METRICS, PRINCIPAL, RELIABILITY
from llmrouter.web.limits import check_content_type, check_limits, decode_json, read_body
from llmrouter.web.replies import (
    body_model,
    error_headers,
    error_response,
    new_request_id,
    reply_headers,
    router_headers,
)
from llmrouter.web.streaming import relay_stream

log = logging.getLogger("llmrouter.web")


def chat_handler(fmt: ClientFormat, endpoint: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler for one chat endpoint speaking client format ``fmt``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app  # (a property over two: read once)
        generation = app[LIVE].current  # kept to the end: a reload does not change this request
        pipeline, config = generation.pipeline, generation.config
        request_id = new_request_id()
        started = time.perf_counter()
        ctx: Context | None = None
        body: Any = None
        gated = None
        keyring = app[KEYRING]
        # Only authenticate() sets a principal, and only when keys are on (without, request.get()
        # would raise and catch a KeyError for every request).
        principal = request.get(PRINCIPAL) if keyring.enabled else None
        key_name = principal.name if principal is not None and keyring.virtual else None
        try:
            try:
                check_content_type(request)
                raw = await read_body(request, int(config.server.max_body_mb * 1024 * 1024))
                body = decode_json(raw)
                gated = fmt.gate(body)  # (C-speed checks of the common shapes: see formats/gate.py)
                check_limits(body, config.server.max_json_depth, config.server.max_messages, gated)
                chat_request = fmt.parse_request(body, request.headers, gated)
                check_request(chat_request)
            except Exception:  # a rejected request still gets its start (and complete) event
                pipeline.publish_start(request_id, body_model(body), endpoint, key_name)
                raise
            pipeline.publish_start(request_id, chat_request.model, endpoint, key_name)
            client_body = ClientBody(fmt.name, body, raw, gated) if kept_as_sent(fmt.name, chat_request.extra) \
                else None
            ctx = pipeline.new_context(chat_request, request_id, endpoint, request.headers, client_body)
            ctx.key_name = key_name
            if principal is not None and principal.key is not None:
                limiter = app[LIMITER]
                limiter.check_model(principal, chat_request.model)
                await limiter.admit(principal)
            await pipeline.prepare(ctx)
            if chat_request.stream:
                return await relay_stream(request, fmt, pipeline, ctx, started)
            response = await pipeline.complete(ctx)
            reply_body = dumps(fmt.render_response(response, ctx.request))
        except RouterError as exc:
            if ctx is not None:
                await pipeline.fail(ctx, exc.message)
            pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started,
                            status=exc.status, error=exc.message, request_model=body_model(body), key=key_name)
            return error_response(fmt, exc, error_headers(request_id, ctx, exc))
        except asyncio.CancelledError:
            # The client went away or shutdown's grace ran out: the request still gets its log line.
            if ctx is not None:
                pipeline.abandon(ctx, started=started, status=499, error="request cancelled")
            raise
        except Exception as exc:  # a bug must not take the server down or leave the client hanging
            log.exception("unexpected error handling request %s", request_id)
            err = RouterError(f"internal error: {type(exc).__name__}: {exc}")
            if ctx is not None:
                await pipeline.fail(ctx, err.message)
            pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started,
                            status=500, error=err.message, request_model=body_model(body), key=key_name)
            return error_response(fmt, err, router_headers(request_id, ctx))
        pipeline.record(ctx=ctx, request_id=request_id, endpoint=endpoint, started=started, status=200, error=None)
        headers = reply_headers(request_id, ctx)
        headers["Content-Type"] = "application/json"  # (last, where content_type= would put it)
        return web.Response(body=reply_body, headers=headers)

    return handle


def routable_models(request: web.Request) -> dict[str, str]:
    """Every model the config can route, mapped to the provider (or ``router``) that serves it."""
    pipeline = request.app[LIVE].current.pipeline
    owners: dict[str, str] = {}
    for name, info in pipeline.provider_infos().items():
        for model in info.models:
            owners.setdefault(model, name)
    for rule in pipeline.rules:  # models the rules may send, as each rule's settings declare them
        for model, provider in referenced_models(rule.settings):
            owners.setdefault(model, provider or "router")
    return owners


def _model_object(model: str, owner: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": model, "display_name": model, "created_at": "1970-01-01T00:00:00Z"}
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def _json(body: Any) -> web.Response:
    return web.json_response(body, dumps=lambda v: dumps(v).decode())


async def models_handler(request: web.Request) -> web.Response:
    """``GET /v1/models``: every model the config can route, in OpenAI or Anthropic list shape."""
    anthropic = "anthropic-version" in request.headers
    data = [_model_object(m, owner, anthropic) for m, owner in routable_models(request).items()]
    if anthropic:
        return _json({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                      "last_id": data[-1]["id"] if data else None})
    return _json({"object": "list", "data": data})


async def model_handler(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one routable model (the SDKs' ``models.retrieve``), else 404."""
    anthropic = "anthropic-version" in request.headers
    model = request.match_info["model"]
    owner = routable_models(request).get(model)
    if owner is None:
        error = NotFound(f"model '{model}' is not among the models this router lists (GET /v1/models)",
                         code="model_not_found")
        return error_response(CLIENT_FORMATS["anthropic" if anthropic else "openai"], error)
    return _json(_model_object(model, owner, anthropic))


async def health_handler(request: web.Request) -> web.Response:
    """``GET /health``: liveness, the answering process (``pid``: one of ``--workers``), per-provider
    status, the config's load time and hash, the cluster link."""
    live = request.app[LIVE]
    pipeline = live.current.pipeline
    circuits = request.app[RELIABILITY].snapshot()
    providers = {name: {"format": info.format, "healthy": info.healthy, "models": list(info.models),
                        "circuit": circuits.get(name)}
                 for name, info in pipeline.provider_infos().items()}
    body: dict[str, Any] = {"status": "ok", "pid": os.getpid(), "in_flight": live.in_flight, "providers": providers,
                            "config": live.describe()}
    cluster = request.app.get(CLUSTER)
    if cluster is not None:
        body["cluster"] = cluster.snapshot()  # type: ignore[attr-defined]
    return web.json_response(body)


async def reload_handler(request: web.Request) -> web.Response:
    """``POST /admin/reload``: re-read the config file (behind the inbound key when one is set).

    200 with ``status`` ``reloaded`` or ``unchanged``; 400 (``code: invalid_config``) naming the
    problem when the new config is refused, the old one still serving.
    """
    result = await request.app[LIVE].reload("POST /admin/reload", tell_siblings=True)
    if result["status"] == "refused":
        error = {"message": f"config reload refused: {result['error']}", "type": "invalid_request_error",
                 "code": "invalid_config"}
        return web.json_response({"error": error, "config": result["config"]}, status=400)
    return web.json_response(result)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus scrape (text format, or OpenMetrics when asked for)."""
    metrics = request.app[METRICS]
    if metrics.multiprocess_dir:  # merging every worker's files reads the disk: off the event loop
        body, content_type = await asyncio.get_running_loop().run_in_executor(
            None, metrics.render, request.headers.get("Accept"))
    else:
        body, content_type = metrics.render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def root_handler(request: web.Request) -> web.Response:
    """``GET``/``HEAD /`` and ``/api/hello``: a liveness answer (Claude Code probes one of them,
    without credentials, before its first request)."""
    return web.json_response({"name": "llmrouter", "status": "ok"})
