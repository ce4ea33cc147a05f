"""jsonutil: the hot path's JSON helpers write what orjson with the non-str-key option writes."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest

from llmrouter.jsonutil import dumps, dumps_str, one_line

SAMPLES: list[Any] = [
    {"type": "complete", "usage": {"input_tokens": 5}, "tags": ["a"], "cost": 0.25},
    {1: "one", "two": {2: [None, True]}},  # non-str keys, at the top and nested
    [{"nested": {3.5: "float key"}}],
    {"when": datetime.date(2026, 12, 1)},
    "text",
]


@pytest.mark.parametrize("value", SAMPLES)
def test_dumps_writes_what_orjson_writes_with_non_str_keys(value: Any) -> None:
    expected = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    assert dumps(value) == expected
    assert dumps_str(value) == expected.decode()


def test_dumps_still_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        dumps({"x": object()})
    with pytest.raises(TypeError):
        dumps({1: object()})


def test_one_line_turns_line_breaks_into_spaces_and_leaves_other_bytes_alone() -> None:
    assert one_line(b'{\r\n "a": "b\\nc"\n}') == b'{   "a": "b\\nc" }'
    body = b'{"a":1}'
    assert one_line(body) is body
