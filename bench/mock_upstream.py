"""A mock LLM upstream for the benchmark: OpenAI Chat Completions and Anthropic Messages on loopback.

Non-streaming requests get a ~1 KB reply at once. ``stream: true`` requests get the same text split
into N chunks, the first sent right away and the rest ``chunk_delay_s`` apart, in each API's own
SSE shape, so a client can measure time-to-first-token and the gaps between chunks.

Standalone: ``python bench/mock_upstream.py --port 9101 [--chunks 20] [--chunk-delay-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import orjson
from aiohttp import web

# Roughly 900 characters of neutral prose: with the JSON envelope a reply is about 1 KB.
_SENTENCE = "The quick survey of the harbour found calm water, three moored boats and a heron on the pier. "
_REPLY_TEXT = (_SENTENCE * 10)[:900]
_MODELS = ["gpt-4o-mini", "gpt-4.1", "claude-3-5-haiku-latest", "claude-sonnet-4"]
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}

_ids = itertools.count(1)


def reply_text() -> str:
    """The assistant text every reply carries, streamed or not."""
    return _REPLY_TEXT


def split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` non-empty pieces of near-equal length (fewer if the text is short)."""
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A cheap, stable stand-in for a token count of the request."""
    return 10 + 4 * len(body.get("messages") or [])


def _completion_tokens() -> int:
    return len(_REPLY_TEXT) // 4


async def _read_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 raised as an HTTP exception."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One SSE event, optionally named."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class MockUpstream:
    """Request handlers; ``chunks`` and ``chunk_delay_s`` shape every stream it sends."""

    def __init__(self, chunks: int = 20, chunk_delay_s: float = 0.005) -> None:
        self.pieces = split_text(_REPLY_TEXT, chunks)
        self.chunk_delay_s = chunk_delay_s

    async def _stream(
        self, request: web.Request, head: bytes, pieces: list[bytes], tail: bytes
    ) -> web.StreamResponse:
        """Send ``head`` with the first piece, the other pieces ``chunk_delay_s`` apart, then ``tail``."""
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)
        await resp.write(head + pieces[0])
        for piece in pieces[1:]:
            if self.chunk_delay_s > 0:
                await asyncio.sleep(self.chunk_delay_s)
            await resp.write(piece)
        await resp.write(tail)
        await resp.write_eof()
        return resp

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``."""
        body = await _read_body(request)
        model = str(body.get("model", "mock"))
        cid, created = f"chatcmpl-bench{next(_ids):08d}", int(time.time())
        usage = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": _completion_tokens(),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": _REPLY_TEXT, "refusal": None},
                                "logprobs": None,
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": usage,
                        "system_fingerprint": "fp_bench",
                    }
                ),
                content_type="application/json",
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_bench",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        head = _sse(chunk({"role": "assistant", "content": ""}))
        pieces = [_sse(chunk({"content": p})) for p in self.pieces]
        tail = _sse(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += _sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_bench",
                    "choices": [],
                    "usage": usage,
                }
            )
        tail += b"data: [DONE]\n\n"
        return await self._stream(request, head, pieces, tail)

    async def anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``."""
        body = await _read_body(request)
        model = str(body.get("model", "mock"))
        mid = f"msg_bench{next(_ids):08d}"
        input_tokens, output_tokens = _prompt_tokens(body), _completion_tokens()
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(
                    {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [{"type": "text", "text": _REPLY_TEXT}],
                        "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
                    }
                ),
                content_type="application/json",
            )
        start = {
            "type": "message_start",
            "message": {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
        head = (
            _sse(start, "message_start")
            + _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
            + _sse({"type": "ping"}, "ping")
        )
        pieces = [
            _sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                "content_block_delta",
            )
            for p in self.pieces
        ]
        tail = (
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
                "message_delta",
            )
            + _sse({"type": "message_stop"}, "message_stop")
        )
        return await self._stream(request, head, pieces, tail)

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models`` in the Anthropic shape when the caller sends ``anthropic-version``."""
        if "anthropic-version" in request.headers:
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in _MODELS
            ]
            return web.json_response(
                {"data": data, "has_more": False, "first_id": _MODELS[0], "last_id": _MODELS[-1]}
            )
        data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "bench"} for m in _MODELS]
        return web.json_response({"object": "list", "data": data})

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health`` and ``HEAD /``: liveness for the orchestrator."""
        return web.json_response({"status": "ok"})


def make_app(chunks: int = 20, chunk_delay_s: float = 0.005) -> web.Application:
    """The mock upstream as an aiohttp application."""
    mock = MockUpstream(chunks=chunks, chunk_delay_s=chunk_delay_s)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", mock.openai_chat)
    app.router.add_post("/v1/messages", mock.anthropic_messages)
    app.router.add_get("/v1/models", mock.models)
    app.router.add_get("/health", mock.health)
    app.router.add_route("HEAD", "/", mock.health)
    return app


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (the upstream should be as cheap as possible), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0, help="delay between stream chunks")
    args = parser.parse_args(argv)
    web.run_app(
        make_app(chunks=args.chunks, chunk_delay_s=args.chunk_delay_ms / 1000),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=new_event_loop(),
    )


if __name__ == "__main__":
    main()
