"""A misbehaving OpenAI-format upstream served on loopback, for the reliability, shutdown and load tests.

Each request to ``/v1/chat/completions`` takes the next action from :attr:`FlakyUpstream.script`, or
asks :attr:`FlakyUpstream.chooser` when the script is empty (default: answer normally). Actions:

``ok``
    A normal reply (a complete SSE stream when the request streams).
``(status, code)`` / ``(status, code, headers)``
    An error reply with that status, OpenAI's error body and the given headers (e.g. Retry-After).
``stall``
    Wait :attr:`stall_s` before answering (nothing is sent meanwhile).
``drop``
    Close the connection without answering.
``partial``
    Stream the first two frames, then cut the connection.
``stall_stream``
    Send the stream's headers, then wait :attr:`stall_s` before the first frame.
``slow``
    Stream the reply one frame every :attr:`frame_delay_s`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.upstreams import openai_reply, openai_stream

Action = str | tuple[Any, ...]


class FlakyUpstream:
    """An aiohttp app acting out a script of faults; counts calls and records request bodies."""

    def __init__(self, script: list[Action] | None = None, *, stall_s: float = 1.0, frame_delay_s: float = 0.1,
                 chooser: Callable[[], Action] | None = None, keep_bodies: bool = True) -> None:
        self.script: list[Action] = list(script or [])
        self.stall_s = stall_s
        self.frame_delay_s = frame_delay_s
        self.chooser = chooser or (lambda: "ok")
        self.calls = 0
        self.actions: list[Action] = []
        self.bodies: list[dict[str, Any]] = []
        self.keep_bodies = keep_bodies
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._handle)

    def _next(self) -> Action:
        return self.script.pop(0) if self.script else self.chooser()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.calls += 1
        if self.keep_bodies:
            self.bodies.append(body)
        action = self._next()
        self.actions.append(action)
        streaming = bool(body.get("stream"))
        if isinstance(action, tuple) and action[0] == "status":
            headers = action[2] if len(action) > 2 else {}
            return web.json_response({"error": {"message": f"scripted {action[1]}", "type": "server_error"}},
                                     status=action[1], headers=headers)
        if action == "stall":
            await asyncio.sleep(self.stall_s)
        elif action == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if not streaming:
            return web.json_response(openai_reply(body))
        frames = [f + b"\n\n" for f in openai_stream(body).split(b"\n\n") if f]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if action == "stall_stream":
            await asyncio.sleep(self.stall_s)
        if action == "partial":
            await response.write(b"".join(frames[:2]))
            await asyncio.sleep(0.01)
            assert request.transport is not None
            request.transport.abort()
            return response
        if action == "slow":
            for frame in frames:
                await response.write(frame)
                await asyncio.sleep(self.frame_delay_s)
        else:
            await response.write(b"".join(frames))
        await response.write_eof()
        return response


def anthropic_overloaded_stream() -> bytes:
    """An Anthropic stream whose first event is an ``overloaded_error``."""
    payload = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return f"event: error\ndata: {json.dumps(payload)}\n\n".encode()
