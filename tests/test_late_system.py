"""Late system messages for OpenAI and Ollama providers: a system/developer message anywhere but first
becomes user text in place (strict chat templates reject it otherwise); leading ones merge into the
one leading system message; ``late_system = "keep"`` keeps the old behaviour; Anthropic is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from llmrouter.config import ProviderConfig
from llmrouter.formats.anthropic import AnthropicFormat
from llmrouter.formats.ollama import OllamaFormat
from llmrouter.formats.openai import OpenAIFormat
from llmrouter.formats.system_messages import REMINDER_CLOSE, REMINDER_OPEN, fold_system_messages
from llmrouter.models import ChatRequest, ImagePart, Message, TextPart, ToolResultPart, ToolUsePart

OAI = OpenAIFormat()
OLL = OllamaFormat()


def wrapped(text: str) -> str:
    return f"{REMINDER_OPEN}{text}{REMINDER_CLOSE}"


def msg(role: str, *parts: Any) -> Message:
    return Message(role=role, content=[TextPart(text=p) if isinstance(p, str) else p for p in parts])  # type: ignore[arg-type]


def req(*messages: Message, system: str | None = None, source: str = "anthropic") -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), source_format=source,  # type: ignore[arg-type]
                       system=[TextPart(text=system)] if system is not None else None)


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


def assert_strict_template(body: dict[str, Any]) -> None:
    """What a Qwen/Gemma-style template demands: a system message only first."""
    assert all(m["role"] != "system" for m in body["messages"][1:]), body["messages"]


# -- the canonical fold ----------------------------------------------------------------------------


def test_no_system_messages_returns_the_same_request() -> None:
    request = req(msg("user", "hi"), system="S")
    assert fold_system_messages(request) is request


def test_system_after_user_is_appended_to_that_user_turn() -> None:
    # What Claude Code 2.1 sends for a model it does not know: [user, system].
    folded = fold_system_messages(req(msg("user", "r", "say pong"), msg("system", "# Environment")))
    assert [m.role for m in folded.messages] == ["user"]
    assert [p.text for p in folded.messages[0].content] == ["r", "say pong", wrapped("# Environment")]


def test_system_before_user_is_prepended_to_the_next_user_turn() -> None:
    folded = fold_system_messages(req(msg("user", "one"), msg("assistant", "two"), msg("system", "be terse"),
                                      msg("user", "three")))
    assert [m.role for m in folded.messages] == ["user", "assistant", "user"]
    assert [p.text for p in folded.messages[2].content] == [wrapped("be terse"), "three"]


def test_system_between_two_user_turns_joins_them_into_one() -> None:
    # Gemma's template also demands strict user/assistant alternation.
    folded = fold_system_messages(req(msg("user", "a"), msg("system", "s"), msg("user", "b"), msg("assistant", "c")))
    assert [m.role for m in folded.messages] == ["user", "assistant"]
    assert [p.text for p in folded.messages[0].content] == ["a", wrapped("s"), "b"]


def test_system_between_assistants_or_at_the_end_becomes_its_own_user_turn() -> None:
    folded = fold_system_messages(req(msg("user", "a"), msg("assistant", "b"), msg("system", "x"),
                                      msg("assistant", "c"), msg("system", "y")))
    assert [m.role for m in folded.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert folded.messages[2].content[0].text == wrapped("x")  # type: ignore[union-attr]
    assert folded.messages[4].content[0].text == wrapped("y")  # type: ignore[union-attr]


def test_text_goes_after_tool_results_so_they_still_follow_the_tool_call() -> None:
    result = ToolResultPart(tool_use_id="t1", content=[TextPart(text="out")])
    folded = fold_system_messages(req(
        msg("user", "go"), msg("assistant", ToolUsePart(id="t1", name="Bash", input={})),
        msg("system", "reminder"), msg("user", result, "more")))
    assert folded.messages[2].content == [result, TextPart(text=wrapped("reminder")), TextPart(text="more")]


def test_leading_system_messages_merge_into_the_system_prompt() -> None:
    folded = fold_system_messages(req(msg("system", "dev one"), msg("system", "dev two"), msg("user", "hi"),
                                      system="instructions"))
    assert [p.text for p in folded.system or []] == ["instructions", "dev one", "dev two"]
    assert [m.role for m in folded.messages] == ["user"]


def test_already_wrapped_text_is_not_wrapped_twice_and_images_are_kept() -> None:
    image = ImagePart(url="https://x.test/a.png")
    folded = fold_system_messages(req(msg("user", "a"), msg("system", "<system-reminder>x</system-reminder>", image)))
    assert folded.messages[0].content[1:] == [TextPart(text="<system-reminder>x</system-reminder>"), image]


def test_the_original_request_is_not_changed() -> None:
    request = req(msg("user", "a"), msg("system", "s"), msg("assistant", "b"))
    before = request.model_dump()
    fold_system_messages(request)
    assert request.model_dump() == before


# -- OpenAI ---------------------------------------------------------------------------------------


def test_openai_claude_code_shape_passes_a_strict_template() -> None:
    request = req(msg("user", "r", "say pong"), msg("system", "# Environment"),
                  msg("assistant", ToolUsePart(id="t1", name="Bash", input={"command": "echo hi"})),
                  msg("user", ToolResultPart(tool_use_id="t1", content=[TextPart(text="hi")])),
                  system="You are Claude Code.")
    body = OAI.build_request(request, "qwen")
    assert_strict_template(body)
    assert roles(body) == ["system", "user", "assistant", "tool"]
    assert body["messages"][0] == {"role": "system", "content": "You are Claude Code."}
    assert body["messages"][1]["content"][-1] == {"type": "text", "text": wrapped("# Environment")}


def test_openai_client_developer_message_mid_conversation() -> None:
    body = OAI.build_request(OAI.parse_request({"model": "m", "messages": [
        {"role": "system", "content": "sys"}, {"role": "developer", "content": "dev"},
        {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
        {"role": "developer", "content": "late dev"}, {"role": "user", "content": "u2"}]}, {}), "m")
    assert body["messages"] == [
        {"role": "system", "content": "sys\n\ndev"}, {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": [{"type": "text", "text": wrapped("late dev")}, {"type": "text", "text": "u2"}]}]


def test_openai_leading_system_message_without_system_prompt() -> None:
    body = OAI.build_request(req(msg("system", "first"), msg("user", "hi")), "m")
    assert body["messages"] == [{"role": "system", "content": "first"}, {"role": "user", "content": "hi"}]


def test_openai_keep_setting_sends_system_messages_in_place() -> None:
    keep = OAI.for_provider(ProviderConfig(name="p", format="openai", late_system="keep"))
    assert keep is not OAI and OAI.for_provider(ProviderConfig(name="p", format="openai")) is OAI
    body = keep.build_request(req(msg("user", "a"), msg("assistant", "b"), msg("system", "s"), msg("user", "c")), "m")
    assert roles(body) == ["user", "assistant", "system", "user"]
    assert body["messages"][2] == {"role": "system", "content": "s"}


# -- Ollama ---------------------------------------------------------------------------------------


def test_ollama_late_system_becomes_user_text() -> None:
    body = OLL.build_request(req(msg("user", "a"), msg("assistant", "b"), msg("system", "s"), msg("user", "c"),
                                 system="S"), "llama")
    assert_strict_template(body)
    assert body["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                                {"role": "assistant", "content": "b"},
                                {"role": "user", "content": f"{wrapped('s')}\n\nc"}]


def test_ollama_tool_result_still_directly_follows_the_call() -> None:
    body = OLL.build_request(req(
        msg("user", "go"), msg("assistant", ToolUsePart(id="t1", name="Bash", input={})), msg("system", "note"),
        msg("user", ToolResultPart(tool_use_id="t1", content=[TextPart(text="out")]))), "llama")
    assert roles(body) == ["user", "assistant", "tool", "user"]
    assert body["messages"][3]["content"] == wrapped("note")


def test_ollama_keep_setting() -> None:
    keep = OLL.for_provider(ProviderConfig(name="p", format="ollama", late_system="keep"))
    body = keep.build_request(req(msg("user", "a"), msg("system", "s")), "llama")
    assert roles(body) == ["user", "system"]


# -- Anthropic keeps its own handling --------------------------------------------------------------


@pytest.mark.parametrize("late_system", ["user", "keep"])
def test_anthropic_is_unaffected(late_system: str) -> None:
    fmt = AnthropicFormat().for_provider(ProviderConfig(name="p", format="anthropic", late_system=late_system))
    body = fmt.build_request(req(msg("user", "a"), msg("system", "s"), msg("user", "b")), "claude")
    assert roles(body) == ["user", "system", "user"]
