"""The ``gemini`` provider format: Google's Gemini API (``generateContent``), natively.

``base_url`` is the API root (``https://generativelanguage.googleapis.com``); the format appends
``/v1beta/models/{model}:generateContent``, or ``:streamGenerateContent?alt=sse`` for streams. The
key goes in ``x-goog-api-key``.

Conversion choices worth knowing:

* the system prompt becomes ``systemInstruction``; ``assistant`` turns are ``model`` turns;
* Gemini names a function result by the function's name, not a call id: the name is found from the
  matching tool call earlier in the conversation; calls Gemini returns without an ``id`` get
  ``call_<hex>``;
* images: data becomes ``inlineData``, URLs ``fileData``; thinking parts of earlier turns and
  opaque parts from other vendors are not sent (an opaque part's ``fallback_text`` is);
* ``response_format`` JSON becomes ``responseMimeType = application/json`` (with its schema);
* finish reasons: ``STOP`` is ``end_turn`` (``tool_use`` when the reply calls a function),
  ``MAX_TOKENS`` is ``max_tokens``, the safety family is ``refusal``.
"""

from __future__ import annotations

import uuid
from typing import Any

from llmrouter import (
    BlockDelta,
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    ImagePart,
    MessageDelta,
    MessageStart,
    MessageStop,
    OpaquePart,
    ProviderFormat,
    SSEStreamDecoder,
    StopReason,
    StreamError,
    StreamEvent,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    ToolUsePart,
    Usage,
)
from llmrouter.jsonutil import dumps_str, loads

API_VERSION = "v1beta"
_REFUSALS = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}


class GeminiFormat(ProviderFormat):
    """Builds ``generateContent`` requests and decodes Gemini replies and SSE streams."""

    name = "gemini"

    def url(self, base_url: str, model: str, *, stream: bool) -> str:
        """``{base}/v1beta/models/{model}:generateContent`` (or ``:streamGenerateContent?alt=sse``)."""
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base_url}/{API_VERSION}/models/{model}:{method}"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Gemini takes its key in ``x-goog-api-key``."""
        return {"x-goog-api-key": api_key}

    def body(self, request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
        """The body is the same for both methods: the URL says whether to stream."""
        return self.build_request(request, model)

    def build_request(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The ``generateContent`` body for ``request`` (the model is in the URL, not the body)."""
        names = {p.id: p.name for m in request.messages for p in m.content if isinstance(p, ToolUsePart)}
        contents = []
        for message in request.messages:
            parts = [out for part in message.content if (out := _part(part, names)) is not None]
            if not parts:
                continue
            role = "model" if message.role == "assistant" else "user"
            if contents and contents[-1]["role"] == role:  # Gemini wants turns to alternate
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": role, "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": p.text} for p in request.system]}
        config = _generation_config(request)
        if config:
            body["generationConfig"] = config
        if request.tools and not (request.tool_choice and request.tool_choice.type == "none"):
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, **({"description": t.description} if t.description else {}),
                 "parameters": t.input_schema} for t in request.tools]}]
            if request.tool_choice is not None:
                calling: dict[str, Any] = {"mode": _TOOL_MODES[request.tool_choice.type]}
                if request.tool_choice.type == "tool" and request.tool_choice.name:
                    calling["allowedFunctionNames"] = [request.tool_choice.name]
                body["toolConfig"] = {"functionCallingConfig": calling}
        return body

    def parse_response(self, body: Any) -> ChatResponse:
        """A ``GenerateContentResponse`` as a :class:`ChatResponse`.

        :raises ValueError: when ``body`` has no candidate.
        """
        if not isinstance(body, dict) or not isinstance(body.get("candidates"), list) or not body["candidates"]:
            reason = (body.get("promptFeedback") or {}).get("blockReason") if isinstance(body, dict) else None
            if reason:
                return ChatResponse(id=_id(body), model=str(body.get("modelVersion", "")),
                                    content=[TextPart(text=f"blocked by Gemini: {reason}")], stop_reason="refusal",
                                    usage=_usage(body.get("usageMetadata")))
            raise ValueError("not a Gemini reply: no 'candidates'")
        candidate = body["candidates"][0]
        content: list[Any] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            if "functionCall" in part:
                call = part["functionCall"]
                content.append(ToolUsePart(id=call.get("id") or _call_id(), name=call.get("name", ""),
                                           input=call.get("args") or {}))
            elif part.get("thought"):
                content.append(ThinkingPart(thinking=part.get("text", ""), signature=part.get("thoughtSignature")))
            elif "text" in part:
                content.append(TextPart(text=part["text"]))
        has_calls = any(isinstance(p, ToolUsePart) for p in content)
        return ChatResponse(id=_id(body), model=str(body.get("modelVersion", "")), content=content,
                            stop_reason=_stop_reason(candidate.get("finishReason"), has_calls),
                            usage=_usage(body.get("usageMetadata")))

    def stream_decoder(self) -> GeminiStreamDecoder:
        """A decoder for one ``streamGenerateContent?alt=sse`` reply."""
        return GeminiStreamDecoder()

    def models_url(self, base_url: str) -> str | None:
        """Discovery lists ``GET {base}/v1beta/models``."""
        return f"{base_url}/{API_VERSION}/models"

    def parse_models(self, body: Any) -> list[str]:
        """Model ids without their ``models/`` prefix."""
        return [m["name"].removeprefix("models/") for m in body.get("models", []) if isinstance(m.get("name"), str)]


class GeminiStreamDecoder(SSEStreamDecoder):
    """Each SSE ``data:`` frame is a whole ``GenerateContentResponse`` holding the next piece of the reply."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.index = -1
        self.open: str | None = None  # "text" or "thinking" while such a block is open
        self.finish: str | None = None
        self.calls = False
        self.usage = Usage()

    def _frame(self, name: str | None, payload: str, events: list[StreamEvent]) -> None:
        try:
            chunk = loads(payload)
        except ValueError:
            events.append(StreamError(message=f"gemini: unreadable stream frame: {payload[:200]!r}"))
            return
        if "error" in chunk:
            err = chunk["error"]
            events.append(StreamError(message=f"gemini: {err.get('message', err) if isinstance(err, dict) else err}"))
            return
        if not self.started:
            self.started = True
            events.append(MessageStart(id=_id(chunk), model=str(chunk.get("modelVersion", ""))))
        if chunk.get("usageMetadata"):
            self.usage = _usage(chunk["usageMetadata"])
        for candidate in chunk.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                self._part(part, events)
            if candidate.get("finishReason"):
                self.finish = candidate["finishReason"]

    def _part(self, part: dict[str, Any], events: list[StreamEvent]) -> None:
        if "functionCall" in part:
            self._close(events)
            call = part["functionCall"]
            self.index += 1
            self.calls = True
            events.append(BlockStart(index=self.index, part=ToolUsePart(id=call.get("id") or _call_id(),
                                                                        name=call.get("name", ""), input={})))
            events.append(BlockDelta(index=self.index, partial_json=dumps_str(call.get("args") or {})))
            events.append(BlockStop(index=self.index))
            return
        kind = "thinking" if part.get("thought") else "text"
        if "text" not in part:
            return
        if self.open != kind:
            self._close(events)
            self.index += 1
            self.open = kind
            start = ThinkingPart(thinking="") if kind == "thinking" else TextPart(text="")
            events.append(BlockStart(index=self.index, part=start))
        if part["text"]:
            delta = {"thinking": part["text"]} if kind == "thinking" else {"text": part["text"]}
            events.append(BlockDelta(index=self.index, **delta))
        if part.get("thoughtSignature"):
            events.append(BlockDelta(index=self.index, signature=part["thoughtSignature"]))

    def _close(self, events: list[StreamEvent]) -> None:
        if self.open is not None:
            events.append(BlockStop(index=self.index))
            self.open = None

    def close(self) -> list[StreamEvent]:
        """Close the open block and end the message with its stop reason and usage."""
        events = self._flush()
        if not self.started:
            return [*events, StreamError(message="gemini: the stream ended without a reply")]
        self._close(events)
        events.append(MessageDelta(stop_reason=_stop_reason(self.finish, self.calls), usage=self.usage))
        events.append(MessageStop())
        return events


def _part(part: Any, names: dict[str, str]) -> dict[str, Any] | None:
    """One canonical part as a Gemini part, or None when Gemini cannot carry it."""
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ImagePart):
        if part.data:
            return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}
        if part.url:
            return {"fileData": {"mimeType": part.media_type or "image/*", "fileUri": part.url}}
        return None
    if isinstance(part, ToolUsePart):
        return {"functionCall": {"name": part.name, "args": part.input or {}}}
    if isinstance(part, ToolResultPart):
        result: dict[str, Any] = {"content": part.text()}
        if part.is_error:
            result = {"error": part.text()}
        return {"functionResponse": {"name": names.get(part.tool_use_id, part.tool_use_id), "response": result}}
    if isinstance(part, OpaquePart) and part.fallback_text is not None:
        return {"text": part.fallback_text}
    return None  # thinking of earlier turns, opaque blocks of other vendors


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    fmt = request.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.schema_:
            config["responseJsonSchema"] = fmt.schema_
    return config


def _stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in _REFUSALS:
        return "refusal"
    return "tool_use" if has_calls else "end_turn"


def _usage(meta: Any) -> Usage:
    if not isinstance(meta, dict):
        return Usage()
    output = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
    cached = meta.get("cachedContentTokenCount")
    return Usage(input_tokens=int(meta.get("promptTokenCount") or 0), output_tokens=output,
                 cache_read_input_tokens=int(cached) if cached is not None else None)


def _id(body: dict[str, Any]) -> str:
    return str(body.get("responseId") or f"gemini-{uuid.uuid4().hex[:24]}")


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"
