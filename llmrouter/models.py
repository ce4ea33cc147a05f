"""The canonical request, response and stream-event models every wire format converts to and from.

Design rules:

* One shape for every format. Content is a list of typed parts (text, image, tool_use,
  tool_result, thinking); tool results live in ``user`` messages, as in Anthropic Messages.
* Nothing a client sent is silently lost. Fields the canonical model has no slot for are kept in
  ``extra`` dicts (top level, per message and per part) together with the client's wire format in
  ``ChatRequest.source_format``. A provider of that same format sends them on untouched; providers
  of other formats drop them. Whole content blocks without a canonical slot (Anthropic documents,
  server-tool blocks, OpenAI audio...) become :class:`OpaquePart`, tagged with their format.
* Streams are canonical too: a sequence of :data:`StreamEvent` objects modelled on Anthropic's block
  events (the richest of the formats), accumulated into a :class:`ChatResponse` by
  :class:`ResponseAccumulator`.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from llmrouter.lazy import DEFERRABLE, DeferredField, DeferredFields, deferred

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn", "error"]
Role = Literal["system", "user", "assistant"]
WireFormatName = Literal["openai", "anthropic", "ollama", "openai-responses"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class _Checked(_Model):
    """A model plugins change by assignment: each assignment is validated (and a plain string
    where text parts are expected is turned into one text part), so a wrong type fails at the
    assignment, naming the field, instead of deep inside a provider."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _text_parts(value: Any) -> Any:
    """``"text"`` -> ``[TextPart(text="text")]`` (``""`` -> ``[]``); strings inside a list become text
    parts too."""
    if type(value) is list:
        for item in value:
            if type(item) is str:
                return [TextPart(text=item) if isinstance(item, str) else item for item in value]
        return value
    if isinstance(value, str):
        return [TextPart(text=value)] if value else []
    return value


class TextPart(_Model):
    """Plain text. ``extra`` carries format-specific block fields such as ``cache_control``."""

    type: Literal["text"] = "text"
    text: str
    extra: dict[str, Any] = Field(default_factory=dict)


class ImagePart(_Model):
    """An image given either by ``url`` (http or data URL) or by base64 ``data`` with ``media_type``."""

    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class OpaquePart(_Model):
    """A content block the canonical model has no slot for, kept exactly as it was sent.

    ``data`` is the whole wire block (its ``type`` included) in wire format ``format``. Providers and
    clients of that format receive it verbatim and in place, streams included; other formats drop
    it, or send ``fallback_text`` as a plain text part when it is set (a plain-text document, a
    search result), so a model of another vendor still reads what it says.
    """

    type: Literal["opaque"] = "opaque"
    format: WireFormatName
    data: dict[str, Any]
    fallback_text: str | None = None

    @property
    def kind(self) -> str:
        """The wire ``type`` of the block (``document``, ``server_tool_use``, ``input_audio``...)."""
        kind = self.data.get("type")
        return kind if isinstance(kind, str) else ""

    def as_text(self) -> TextPart | None:
        """The block as a text part for formats that cannot carry it, or ``None`` to drop it."""
        return None if self.fallback_text is None else TextPart(text=self.fallback_text)


class ToolUsePart(_Model):
    """A tool call made by the assistant.

    ``input`` is the parsed JSON arguments. When a model produced arguments that are not valid JSON,
    ``input`` is ``None`` and ``raw_arguments`` holds the text exactly as produced, so it is passed on
    rather than dropped.
    """

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any] | None = None
    raw_arguments: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def arguments_json(self) -> str:
        """Return the arguments as a JSON string, preferring the raw text when it was kept."""
        if self.raw_arguments is not None:
            return self.raw_arguments
        from llmrouter.jsonutil import dumps_str

        return dumps_str(self.input or {})


class ToolResultPart(_Model):
    """The result of a tool call, sent back by the client in a user turn. ``content`` may hold
    opaque blocks (Anthropic search results, documents, tool references)."""

    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: list[TextPart | ImagePart | OpaquePart] = Field(default_factory=list)
    is_error: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    def text(self) -> str:
        """All text content of the result joined together."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class ThinkingPart(_Model):
    """Model reasoning. ``signature`` is Anthropic's opaque integrity token; ``redacted`` holds
    Anthropic's encrypted ``redacted_thinking`` data when that is what was sent."""

    type: Literal["thinking"] = "thinking"
    thinking: str = ""
    signature: str | None = None
    redacted: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


Part = Annotated[TextPart | ImagePart | ToolUsePart | ToolResultPart | ThinkingPart | OpaquePart,
                 Field(discriminator="type")]


class Message(_Checked):
    """One conversation turn. ``role="system"`` is allowed mid-conversation. ``content`` accepts a
    plain string (one text part)."""

    role: Role
    content: list[Part] = Field(default_factory=list)
    name: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    _coerce_content = field_validator("content", mode="before")(_text_parts)

    def text(self) -> str:
        """The text parts of this message joined together."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Tool(_Model):
    """A function tool the model may call. ``input_schema`` is a JSON schema object."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    extra: dict[str, Any] = Field(default_factory=dict)


class ToolChoice(_Model):
    """How the model may use tools: ``auto``, ``none``, ``required`` (any tool) or ``tool`` (``name``)."""

    type: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    disable_parallel: bool | None = None


class ResponseFormat(_Model):
    """Structured-output request: ``json_object`` or ``json_schema`` with ``schema``."""

    type: Literal["text", "json_object", "json_schema"] = "json_schema"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Usage(_Model):
    """Token counts. ``cache_*`` are Anthropic prompt-cache figures when known."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def merged(self, update: Usage | None) -> Usage:
        """A copy overlaid with ``update``'s non-zero token counts and known cache figures (streams
        report usage piecemeal: input at the start, output at the end)."""
        merged = self.model_copy()
        if update is None:
            return merged
        if update.input_tokens:
            merged.input_tokens = update.input_tokens
        if update.output_tokens:
            merged.output_tokens = update.output_tokens
        if update.cache_read_input_tokens is not None:
            merged.cache_read_input_tokens = update.cache_read_input_tokens
        if update.cache_creation_input_tokens is not None:
            merged.cache_creation_input_tokens = update.cache_creation_input_tokens
        return merged


class ChatRequest(DeferredFields, _Checked):
    """The canonical request every client format is parsed into and every provider format built from.

    ``system`` accepts a plain string (one text part); ``None`` or an empty list means no system
    prompt. Assignments are validated (see docs/plugin-hooks.md for every field's type).

    ``messages`` and ``tools`` may be converted lazily: the OpenAI and Anthropic parsers can keep the
    client's raw lists and convert them on their first read (by the same code, so the result is the
    one an eager parse gives; see :mod:`llmrouter.lazy`). Dumps, copies, ``==``, ``repr`` and
    pickling convert first; only timing tells a deferred field from a converted one.
    """

    model: str
    system: list[TextPart] | None = None
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False
    include_usage: bool = False
    response_format: ResponseFormat | None = None
    thinking: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    plugins: list[dict[str, Any]] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    forced_provider: str | None = None
    source_format: WireFormatName = "openai"
    extra: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    # Set by the pipeline once routing is done and no plugin changed the request: the client's own
    # body (a ``llmrouter.formats.passthrough.ClientBody``), which a provider of the client's format
    # forwards instead of building the body from this model. Never dumped or serialised.
    # (llmrouter.lazy keeps the raw values of deferred fields under the private key "_lazy" while
    # there are any: undeclared, so a request that never had any costs nothing for it.)
    _client_body: Any = PrivateAttr(default=None)

    _coerce_system = field_validator("system", mode="before")(_text_parts)

    @model_serializer(mode="wrap")
    def _converted_first(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Every dump (model_dump, model_dump_json, nested in another model) converts deferred
        # fields first: the serializer reads __dict__, where they are not yet.
        self._materialise()
        return handler(self)

    def system_text(self) -> str:
        """The system prompt as one string (blocks joined with blank lines)."""
        return "\n\n".join(p.text for p in self.system or [])

    def last_user_text(self) -> str:
        """Text of the last user message, or an empty string."""
        conversation = deferred(self)
        if conversation is not None:  # read (or convert) that message alone
            return conversation.last_text("user")  # type: ignore[no-any-return]
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def iter_text(self, last_messages: int | None = None) -> list[str]:
        """Every text the user or assistant wrote: system blocks, text parts and tool-result text.

        Opaque blocks count only through their ``fallback_text`` (a plain-text document is text the
        model reads whatever the provider; a PDF or a server-tool block is not). ``last_messages``
        bounds the scan to the system prompt and that many of the latest messages (agents resend
        the whole conversation every turn; what is new is at the end).
        """
        system = self.system
        texts = list(map(_TEXT_OF, system)) if system else []
        conversation = deferred(self)
        if conversation is not None and last_messages is not None and 0 <= last_messages < conversation.count:
            tail = conversation.tail_texts(last_messages) if last_messages else []  # read from the raw messages
            if tail is not None:
                texts.extend(tail)
                return texts
            messages = conversation.tail(last_messages)  # converts only those
        else:
            messages = self.messages if last_messages is None else self.messages[-last_messages:] if last_messages else []
        for message in messages:
            for part in message.content:
                if isinstance(part, TextPart):
                    texts.append(part.text)
                elif isinstance(part, OpaquePart) and part.fallback_text is not None:
                    texts.append(part.fallback_text)
                elif isinstance(part, ToolResultPart):
                    for inner in part.content:
                        if isinstance(inner, TextPart):
                            texts.append(inner.text)
                        elif isinstance(inner, OpaquePart) and inner.fallback_text is not None:
                            texts.append(inner.fallback_text)
        return texts


_TEXT_OF = attrgetter("text")

for _name in DEFERRABLE:  # reading these may convert them (see llmrouter.lazy)
    setattr(ChatRequest, _name, DeferredField(_name))


class ChatResponse(_Checked):
    """The canonical reply: content parts, a stop reason and usage. ``content`` accepts a plain
    string (one text part); assignments are validated."""

    id: str = ""
    model: str = ""
    content: list[Part] = Field(default_factory=list)
    stop_reason: StopReason | None = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = Field(default_factory=Usage)
    extra: dict[str, Any] = Field(default_factory=dict)

    _coerce_content = field_validator("content", mode="before")(_text_parts)

    @classmethod
    def from_text(cls, text: str, *, model: str = "", stop_reason: StopReason = "end_turn") -> ChatResponse:
        """Build a plain text reply, the usual way for a plugin to answer by itself."""
        return cls(model=model, content=[TextPart(text=text)], stop_reason=stop_reason)

    def text(self) -> str:
        """The text parts of the reply joined together."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def tool_calls(self) -> list[ToolUsePart]:
        """The tool calls in the reply, in order."""
        return [p for p in self.content if isinstance(p, ToolUsePart)]


# ---------------------------------------------------------------------------------------------
# Canonical stream events
# ---------------------------------------------------------------------------------------------


class MessageStart(_Model):
    """First event of a stream: id, model and (when known) input usage."""

    type: Literal["message_start"] = "message_start"
    id: str = ""
    model: str = ""
    usage: Usage = Field(default_factory=Usage)


class BlockStart(_Model):
    """A content block opens at ``index``. ``part`` is the block with empty text/arguments; an
    :class:`OpaquePart` is the block as its producer started it (complete when no deltas follow)."""

    type: Literal["block_start"] = "block_start"
    index: int
    part: Part


class BlockDelta(_Model):
    """Incremental content for block ``index``; exactly one of the fields is set.

    ``opaque`` is a delta the other fields cannot express, kept as the producer sent it (``data`` is
    the wire delta object): every delta of an opaque block, or e.g. an Anthropic ``citations_delta``
    on a text block. Renderers of its format reproduce it; others ignore it.
    """

    type: Literal["block_delta"] = "block_delta"
    index: int
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    opaque: OpaquePart | None = None


class BlockStop(_Model):
    """Block ``index`` is complete."""

    type: Literal["block_stop"] = "block_stop"
    index: int


class MessageDelta(_Model):
    """End-of-message data: stop reason and final (cumulative) usage."""

    type: Literal["message_delta"] = "message_delta"
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None


class MessageStop(_Model):
    """The stream finished normally."""

    type: Literal["message_stop"] = "message_stop"


class StreamError(_Model):
    """The upstream failed mid-stream."""

    type: Literal["error"] = "error"
    message: str
    error_type: str = "api_error"


StreamEvent = MessageStart | BlockStart | BlockDelta | BlockStop | MessageDelta | MessageStop | StreamError


def _apply_opaque_delta(part: Any, delta: OpaquePart, json_parts: list[str] | None) -> None:
    """Fold an opaque delta into ``part`` where its meaning is known (Anthropic's rules).

    ``input_json_delta`` fragments go to ``json_parts`` (parsed into the block's ``input`` at its
    stop) and ``citations_delta`` appends to the block's ``citations``; anything else leaves the
    accumulated part as started.
    """
    if delta.format != "anthropic":
        return
    if delta.kind == "input_json_delta" and json_parts is not None:
        fragment = delta.data.get("partial_json")
        if isinstance(fragment, str):
            json_parts.append(fragment)
    elif delta.kind == "citations_delta" and "citation" in delta.data:
        fields = (part.extra if isinstance(part, TextPart)
                  else part.data if isinstance(part, OpaquePart) else None)
        if fields is not None:
            citations = fields.get("citations")
            kept = citations if isinstance(citations, list) else []
            fields["citations"] = [*kept, delta.data["citation"]]


class ResponseAccumulator:
    """Builds the final :class:`ChatResponse` from canonical stream events as they pass by.

    Tool-call arguments arrive as JSON fragments; they are joined per block and parsed at
    ``block_stop``. Arguments that are not valid JSON are kept as ``raw_arguments``. Opaque blocks
    keep the data they started with, updated by the opaque deltas whose meaning is known (a server
    tool's ``input``, a text block's ``citations``; see :func:`_apply_opaque_delta`).
    """

    def __init__(self) -> None:
        self.response = ChatResponse(stop_reason=None)
        self._parts: dict[int, Any] = {}
        self._json: dict[int, list[str]] = {}
        self.error: str | None = None

    def feed(self, event: StreamEvent) -> None:
        """Apply one event to the response being built."""
        from llmrouter.jsonutil import loads_object_or_none

        if isinstance(event, MessageStart):
            self.response.id = event.id
            self.response.model = event.model
            self.response.usage = event.usage.model_copy()
        elif isinstance(event, BlockStart):
            part = event.part.model_copy(deep=True)
            self._parts[event.index] = part
            if isinstance(part, ToolUsePart):
                self._json[event.index] = []
        elif isinstance(event, BlockDelta):
            part = self._parts.get(event.index)
            if part is None:
                return
            if event.opaque is not None:
                json_parts = self._json.setdefault(event.index, []) if isinstance(part, OpaquePart) else None
                _apply_opaque_delta(part, event.opaque, json_parts)
            elif event.text is not None and isinstance(part, TextPart):
                part.text += event.text
            elif event.partial_json is not None:
                self._json.setdefault(event.index, []).append(event.partial_json)
            elif event.thinking is not None and isinstance(part, ThinkingPart):
                part.thinking += event.thinking
            elif event.signature is not None and isinstance(part, ThinkingPart):
                part.signature = (part.signature or "") + event.signature
        elif isinstance(event, BlockStop):
            part = self._parts.get(event.index)
            if isinstance(part, ToolUsePart) and event.index in self._json:
                raw = "".join(self._json.pop(event.index))
                if raw.strip():
                    parsed = loads_object_or_none(raw)
                    if parsed is None:
                        part.input, part.raw_arguments = None, raw
                    else:
                        part.input = parsed
                elif part.input is None:
                    part.input = {}
            elif isinstance(part, OpaquePart) and event.index in self._json:
                parsed = loads_object_or_none("".join(self._json.pop(event.index)))
                if parsed is not None:
                    part.data["input"] = parsed
        elif isinstance(event, MessageDelta):
            if event.stop_reason is not None:
                self.response.stop_reason = event.stop_reason
            if event.stop_sequence is not None:
                self.response.stop_sequence = event.stop_sequence
            if event.usage is not None:
                self.response.usage = self.response.usage.merged(event.usage)
        elif isinstance(event, StreamError):
            self.error = event.message

    def result(self) -> ChatResponse:
        """The response accumulated so far, blocks in index order."""
        # Flush tool blocks whose block_stop never arrived (truncated streams).
        for index in list(self._json):
            self.feed(BlockStop(index=index))
        self.response.content = [self._parts[i] for i in sorted(self._parts)]
        return self.response
