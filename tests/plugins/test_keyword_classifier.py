"""Unit tests for the ``keyword`` classifier."""

from __future__ import annotations

import pytest

from llmrouter.models import ChatRequest, ImagePart, Message, TextPart, ToolResultPart, ToolUsePart
from llmrouter_plugins import keyword_classifier

TAGS = {"code": ["def ", "Stack Trace"], "vision": ["image", "photo"], "math": ["integral"]}


def _request(*parts, system: str | None = None) -> ChatRequest:
    return ChatRequest(
        model="m",
        system=[TextPart(text=system)] if system else None,
        messages=[Message(role="user", content=list(parts))],
    )


def test_matches_case_insensitively_in_config_order(make_ctx) -> None:
    req = _request(TextPart(text="Here is a PHOTO; also a stack trace and def f(): pass"))
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": TAGS})) == ["code", "vision"]


def test_order_follows_settings_not_text(make_ctx) -> None:
    req = _request(TextPart(text="an integral of an image"))
    tags = {"vision": ["image"], "math": ["integral"]}
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": tags})) == ["vision", "math"]
    reordered = {"math": ["integral"], "vision": ["image"]}
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": reordered})) == ["math", "vision"]


def test_no_match_returns_empty(make_ctx) -> None:
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, text="nothing relevant", settings={"tags": TAGS})) == []


def test_system_prompt_and_tool_result_text_are_searched(make_ctx) -> None:
    req = _request(
        ToolResultPart(tool_use_id="t1", content=[TextPart(text="an Integral appears")]),
        system="You look at images",
    )
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": TAGS})) == ["vision", "math"]


def test_assistant_text_is_searched(make_ctx) -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="user", content=[TextPart(text="hi")]),
        Message(role="assistant", content=[TextPart(text="def main(): ...")]),
    ])
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": TAGS})) == ["code"]


def test_image_data_and_tool_input_are_never_searched(make_ctx) -> None:
    req = ChatRequest(model="m", messages=[
        Message(role="user", content=[
            TextPart(text="hello"),
            ImagePart(url="https://example.com/image.png"),
            ImagePart(data="aW1hZ2U=", media_type="image/png"),
        ]),
        Message(role="assistant", content=[
            ToolUsePart(id="t1", name="photo_tool", input={"q": "integral of image"}),
        ]),
    ])
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": TAGS})) == []


def test_keyword_does_not_match_across_part_boundaries(make_ctx) -> None:
    req = _request(TextPart(text="ima"), TextPart(text="ge"))
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, request=req, settings={"tags": {"vision": ["image"]}})) == []


def test_single_string_keyword_and_empty_keywords(make_ctx) -> None:
    tags = {"vision": "image", "everything": ["", "  "]}
    ctx = make_ctx(plugin=keyword_classifier, text="an image", settings={"tags": tags})
    assert keyword_classifier.classify(ctx) == ["vision"]


def test_no_tags_configured_returns_empty(make_ctx) -> None:
    assert keyword_classifier.classify(make_ctx(plugin=keyword_classifier, text="image", settings={})) == []


@pytest.mark.parametrize("tags", [["code"], {"code": [1, 2]}, {"code": {"a": 1}}])
def test_bad_settings_raise_a_clear_error(make_ctx, tags) -> None:
    with pytest.raises(ValueError, match="key 'tags"):
        make_ctx(plugin=keyword_classifier, settings={"tags": tags})  # validated once, at load


def test_unicode_case_folding(make_ctx) -> None:
    ctx = make_ctx(plugin=keyword_classifier, text="STRASSE and ÉCOLE", settings={"tags": {"de": ["straße"], "fr": ["école"]}})
    assert keyword_classifier.classify(ctx) == ["de", "fr"]
