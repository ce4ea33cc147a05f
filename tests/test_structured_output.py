"""Structured output through the whole app: OpenAI ``response_format`` (``json_schema``,
``json_object``) and Anthropic ``output_config.format`` reach each provider format in that
provider's own terms, streaming or not."""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter.models import ResponseFormat
from llmrouter.observe.logfiles import logged_request
from llmrouter.testing import MockProviders, anthropic_message, openai_chat
from tests.test_streaming_e2e import ANTHROPIC_TEXT, CONFIG, OLLAMA_TEXT, OPENAI_TEXT, upstream

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}
STREAMS = {"oa": OPENAI_TEXT, "an": ANTHROPIC_TEXT, "ol": OLLAMA_TEXT}

OPENAI_SCHEMA = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}
ANTHROPIC_OUTPUT = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "low"}

# (client request fields, provider) -> the structured-output fields the provider receives.
CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("openai", {"response_format": OPENAI_SCHEMA}, "oa", {"response_format": OPENAI_SCHEMA}),
    ("openai", {"response_format": OPENAI_SCHEMA}, "an",
     {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}),
    ("openai", {"response_format": OPENAI_SCHEMA}, "ol", {"format": SCHEMA}),
    ("openai", {"response_format": {"type": "json_object"}}, "oa", {"response_format": {"type": "json_object"}}),
    # Anthropic has no schema-less JSON mode (every object in a schema must close additionalProperties).
    ("openai", {"response_format": {"type": "json_object"}}, "an", {}),
    ("openai", {"response_format": {"type": "json_object"}}, "ol", {"format": "json"}),
    ("openai", {"response_format": {"type": "text"}}, "oa", {}),
    ("openai", {"response_format": {"type": "text"}}, "ol", {}),
    ("anthropic", {"output_config": ANTHROPIC_OUTPUT}, "an", {"output_config": ANTHROPIC_OUTPUT}),
    ("anthropic", {"output_config": ANTHROPIC_OUTPUT}, "oa",
     {"response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}}),
    ("anthropic", {"output_config": ANTHROPIC_OUTPUT}, "ol", {"format": SCHEMA}),
    ("anthropic", {"output_config": {"effort": "high"}}, "an", {"output_config": {"effort": "high"}}),
    ("anthropic", {"output_config": {"effort": "high"}}, "oa", {}),
]
STRUCTURED_KEYS = ("response_format", "output_config", "format")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_format, fields, provider, expected", CASES)
async def test_structured_output_reaches_each_provider_in_its_terms(
        router: Any, mock_providers: MockProviders, client_format: str, fields: dict[str, Any], provider: str,
        expected: dict[str, Any], stream: bool) -> None:
    route = upstream(mock_providers, provider, STREAMS[provider])
    client = await router(CONFIG)
    model = f"{provider}/m1"
    if client_format == "openai":
        reply = await client.openai(openai_chat("Weather in Paris as JSON", model=model, stream=stream, **fields))
    else:
        reply = await client.anthropic(anthropic_message("Weather in Paris as JSON", model=model, stream=stream,
                                                         **fields))
    assert reply.status == 200, reply.text
    sent = mock_providers.sent_json(route)
    assert {key: sent[key] for key in STRUCTURED_KEYS if key in sent} == expected
    assert sent["stream"] is stream


async def test_logged_request_keeps_the_structured_output_request_for_replay(
        router: Any, mock_providers: MockProviders) -> None:
    upstream(mock_providers, "an", ANTHROPIC_TEXT)
    client = await router(CONFIG)
    reply = await client.openai(openai_chat("JSON please", model="an/m1", stream=True, response_format=OPENAI_SCHEMA))
    logged = logged_request(reply.log_line)
    assert logged.response_format == ResponseFormat(type="json_schema", name="weather", schema=SCHEMA, strict=True)


@pytest.mark.parametrize("body, fragment", [
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "nope"}}},
     "response_format.json_schema.schema"),
])
async def test_bad_response_format_is_a_400_naming_the_field(router: Any, body: dict[str, Any],
                                                             fragment: str) -> None:
    client = await router(CONFIG)
    reply = await client.openai(openai_chat("x", model="echo/m1", stream=True, **body))
    assert reply.status == 400 and fragment in reply.body["error"]["message"]


async def test_bad_output_config_format_is_a_400_naming_the_field(router: Any) -> None:
    client = await router(CONFIG)
    reply = await client.anthropic(anthropic_message("x", model="echo/m1", stream=True,
                                                     output_config={"format": {"type": "json_schema"}}))
    assert reply.status == 400 and "output_config.format.schema" in reply.body["error"]["message"]
