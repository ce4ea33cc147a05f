"""The log writer's shortcut: a client body is searched for credential keys and secret values only
where it differs from a body already found clean. These tests try to slip a key or a secret past it
(in the new part, across the edge of the shared part, spelled with escapes, nested anywhere) and
check that the shortcut is taken when it should be."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llmrouter.jsonutil import loads
from llmrouter.observe import logscan
from llmrouter.observe.logscan import BodyScanner, has_secret_key, may_hold_secret_key
from llmrouter.observe.requestlog import REDACTED, SMALL_BODY, RawJSON, RequestLog, redact_keys

SECRET = "long-enough-secret-value"
VALUE = "s3cr3t-credential-value"


def session(turns: int, seed: int = 1) -> list[dict[str, Any]]:
    """Bodies of one agent session: each resends the conversation so far plus a new turn."""
    rnd = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "key", "monkey", "authorization", "api", "token"]
    tools = [{"type": "function", "function": {"name": f"t{i}", "description": "does things",
                                                "parameters": {"type": "object", "properties": {
                                                    f"p{j}": {"type": "string"} for j in range(4)}}}}
             for i in range(5)]
    # Bodies of more than SMALL_BODY bytes from the first turn on: they all go through the scanner.
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are an agent. " * 500}]
    bodies = []
    for turn in range(turns):
        role = "user" if turn % 2 == 0 else "assistant"
        messages.append({"role": role, "content": " ".join(rnd.choice(words) for _ in range(300))})
        bodies.append({"model": "m", "messages": list(messages), "tools": tools, "max_tokens": 100})
    return bodies


def logged(rlog: RequestLog, body: dict[str, Any] | bytes) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    line = rlog.encode({"type": "complete", "request": RawJSON(raw, loads(raw)), "error": None})
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert SECRET.encode() not in line and VALUE.encode() not in line
    return loads(line)["request"]


def test_a_small_body_is_checked_whole_and_not_remembered(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=[SECRET])
    small = {"model": "m", "messages": [{"role": "user", "content": f"hi {SECRET}"}], "metadata": {"Api-Key": VALUE}}
    assert logged(rlog, small) == {**redact_keys(small), "messages": [{"role": "user", "content": f"hi {REDACTED}"}]}
    small = {"model": "m", "messages": [{"role": "user", "content": f"hi {SECRET}"}]}
    assert logged(rlog, orjson.dumps(small, option=orjson.OPT_INDENT_2)) == {
        "model": "m", "messages": [{"role": "user", "content": f"hi {REDACTED}"}]}
    rlog.close()
    assert rlog._scanner.scanned == 0 and rlog._scanner._refs == []


def test_a_session_is_searched_only_where_each_request_is_new(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=[SECRET])
    bodies = session(30)
    sent = 0
    for body in bodies:
        assert logged(rlog, body) == body
        sent += len(orjson.dumps(body))
    rlog.close()
    # Each request but the first is searched only around its new turn.
    assert rlog._scanner.scanned < 0.15 * sent


@pytest.mark.parametrize("where", [
    lambda body: body["messages"][-1].update({"api_key": VALUE}),
    lambda body: body["messages"][-1].update({"metadata": {"deep": [{"X-Goog-Api-Key": VALUE}]}}),
    lambda body: body["tools"][2]["function"]["parameters"]["properties"].update({"Authorization": VALUE}),
    lambda body: body.update({"extra": {"proxy-authorization": VALUE}}),
    lambda body: body.update({"metadata": {"APIKEY": VALUE}}),
    lambda body: body["messages"][0].update({"api-key": VALUE}),  # in what was the shared prefix
])
def test_a_credential_key_added_anywhere_to_a_later_request_is_redacted(tmp_path: Path, where: Any) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl")
    bodies = session(6)
    for body in bodies[:5]:
        assert logged(rlog, body) == body
    body = orjson.loads(orjson.dumps(bodies[5]))
    where(body)
    assert logged(rlog, body) == redact_keys(body)
    rlog.close()


@pytest.mark.parametrize("key", [
    b'"api\\u005fkey"', b'"\\u0061\\u0070\\u0069\\u006b\\u0065\\u0079"', b'"API_KE\\u0059"', b'"x-api\\u002dkey"',
    '"api_\u212aey"'.encode(), b'"api_\\u212aey"', b'"API_\\u212AEY"', b'"Api_Key"', b'"authorizatio\\u006e"',
])
def test_a_credential_key_spelled_with_escapes_in_a_later_request_is_redacted(tmp_path: Path, key: bytes) -> None:
    assert loads(b"{" + key + b": 1}")  # valid JSON, and a credential key once parsed
    assert has_secret_key(loads(b"{" + key + b": 1}"))
    rlog = RequestLog(tmp_path / "log.jsonl")
    bodies = session(4)
    for body in bodies[:3]:
        logged(rlog, body)
    raw = orjson.dumps(bodies[3])
    at = raw.rindex(b'"role"')
    raw = raw[:at] + key + b': "' + VALUE.encode() + b'", ' + raw[at:]
    assert logged(rlog, raw) == redact_keys(loads(raw))
    rlog.close()


def test_a_key_completed_at_the_edge_of_the_shared_bytes_is_redacted(tmp_path: Path) -> None:
    # The new body differs from the clean one in a single byte: the last letter of a key.
    rlog = RequestLog(tmp_path / "log.jsonl")
    base = orjson.dumps(session(5)[4])
    for near in (b'"x-api-kex"', b'"x-api-ke"', b'"authorizatiox"'):
        clean = base[:-1] + b', ' + near + b': "the-same-value"}'
        logged(rlog, clean)
        assert rlog._scanner._refs[0] == clean
    for key in (b'"x-api-key"', b'"authorization"', b'"x-api-ke\\u0079"'):
        raw = base[:-1] + b', ' + key + b': "the-same-value"}'
        assert logged(rlog, raw)[loads(key)] == REDACTED
    rlog.close()


def test_a_secret_split_across_the_edge_of_the_shared_bytes_is_replaced(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=[SECRET])
    bodies = session(5)
    for body in bodies[:4]:
        logged(rlog, body)
    for cut in (1, len(SECRET) // 2, len(SECRET) - 1):
        body = orjson.loads(orjson.dumps(bodies[4]))
        # The clean body holds the secret's first part; the new one completes it.
        body["messages"][-1]["content"] = SECRET[:cut] + "~" + SECRET[cut:]
        logged(rlog, body)
        body["messages"][-1]["content"] = SECRET
        assert logged(rlog, body)["messages"][-1]["content"] == REDACTED
    rlog.close()


def test_a_secret_pasted_once_stays_redacted_in_every_later_request_that_repeats_it(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl", secrets=[SECRET])
    bodies = session(12)
    for turn, body in enumerate(bodies):
        if turn >= 5:
            body["messages"][6]["content"] = f"my key is {SECRET}, use it"
        entry = logged(rlog, body)
        if turn >= 5:
            assert entry["messages"][6]["content"] == f"my key is {REDACTED}, use it"
    rlog.close()


def test_line_breaks_in_a_clean_body_are_kept_out_of_later_lines(tmp_path: Path) -> None:
    rlog = RequestLog(tmp_path / "log.jsonl")
    bodies = session(4)
    pretty = orjson.dumps(bodies[0], option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty
    assert logged(rlog, pretty) == bodies[0]
    # The next request shares its line breaks with the first one: still one line.
    grown = pretty[:-2] + b',\r\n  "extra": 1\n}'
    assert logged(rlog, grown) == {**bodies[0], "extra": 1}
    # ... also when the new bytes are far from any of them.
    padded = {**bodies[0], "pad": "p" * 300}
    assert len(orjson.dumps(padded)) > SMALL_BODY
    pretty = orjson.dumps(padded, option=orjson.OPT_INDENT_2)
    assert logged(rlog, pretty) == padded
    assert logged(rlog, pretty[:-2] + b', "extra": 3}') == {**padded, "extra": 3}
    compact = orjson.dumps(bodies[1])
    assert logged(rlog, compact) == bodies[1]
    assert logged(rlog, compact[:-1] + b',\n"extra": 2}') == {**bodies[1], "extra": 2}
    rlog.close()


def test_may_hold_secret_key_sees_every_spelling_of_a_credential_name() -> None:
    for name in logscan.SECRET_KEYS:
        spellings = [name, name.upper(), name.title()]
        spellings.append("".join(f"\\u{ord(c):04x}" for c in name))
        spellings.append(name[:-1] + f"\\u{ord(name[-1]):04X}")
        if "k" in name:
            spellings.append(name.replace("k", "\u212a"))
            spellings.append(name.replace("k", "\\u212a"))
        for spelling in spellings:
            token = f'"{spelling}"'.encode()
            assert has_secret_key(loads(token + b"  ")) is False  # a string, not a key
            assert has_secret_key(loads(b"{" + token + b": 1}")), spelling
            assert may_hold_secret_key(token), spelling
            assert len(token) <= logscan.KEY_TOKEN_MAX
    for harmless in (b'"monkey": 1', b'"key": 1', b'"api_keys": 1', b'"caf\\u00e9": 1', b'"\\u001b[0m": 1',
                     b'"text": "the api_key field"'):
        assert not may_hold_secret_key(harmless), harmless


def test_common_prefix_and_suffix_match_a_byte_by_byte_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logscan, "_BLOCK", 4)
    rnd = random.Random(3)

    def count(a: bytes, b: bytes) -> tuple[int, int]:
        p = 0
        while p < min(len(a), len(b)) and a[p] == b[p]:
            p += 1
        s, limit = 0, min(len(a), len(b)) - p
        while s < limit and a[-1 - s] == b[-1 - s]:
            s += 1
        return p, s

    for _ in range(3000):
        base = bytes(rnd.choice(b"ab") for _ in range(rnd.randint(0, 120)))
        cut, rest = rnd.randint(0, len(base)), rnd.randint(0, len(base))
        other = base[:cut] + bytes(rnd.choice(b"abc") for _ in range(rnd.randint(0, 9))) + base[rest:]
        p = logscan._common_prefix(other, base)
        assert (p, logscan._common_suffix(other, base, min(len(other), len(base)) - p)) == count(other, base)


def test_scanner_remembers_one_body_per_session_and_a_bounded_number(tmp_path: Path) -> None:
    scanner = BodyScanner([], references=4)
    runs = [session(6, seed=s) for s in range(6)]
    for turn in range(6):
        for run in runs:
            raw = orjson.dumps(run[turn])
            assert scanner.check(raw, loads(raw))[:3] == (False, False, False)
    assert len(scanner._refs) == 4 and len(scanner._breaks) == 4


def test_scanner_remembers_a_bounded_number_of_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logscan, "REFERENCE_BYTES", 10_000)
    scanner = BodyScanner([])
    for size in (4_000, 4_000, 4_000, 20_000, 3_000):
        raw = orjson.dumps({"text": "a" * size, "n": size})
        scanner.check(raw, loads(raw))
        assert sum(len(ref) for ref in scanner._refs) <= 10_000
        assert set(scanner._breaks) == {id(ref) for ref in scanner._refs}
    # A body too large to remember is still checked in full, and correctly.
    raw = orjson.dumps({"text": "b" * 20_000, "API_KEY": "x"})
    assert scanner.check(raw, loads(raw)).key


# -- the shortcut against the plain rule, on random sessions -----------------------------------------

_NAMES = ["api_key", "API-KEY", "Authorization", "x-goog-api-key", "apikey", "monkey", "key", "role", "api\u212aey"]
_TEXT = st.lists(st.sampled_from(list("ab\"\\\n{}:,é" + "\u212a") + [SECRET, "api_key", '"key":']),
                max_size=12).map("".join)
_VALUE = st.recursive(st.one_of(st.integers(-1000, 1000), _TEXT, st.none()),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.sampled_from(_NAMES) | _TEXT, inner, max_size=3)),
                      max_leaves=8)


def scrub(value: Any) -> Any:
    """``value`` with the secret replaced in every string, keys included."""
    if isinstance(value, str):
        return value.replace(SECRET, REDACTED)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.lists(st.tuples(_VALUE, st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_random_sessions_log_what_the_plain_rule_would(tmp_path_factory: Any, turns: list[Any]) -> None:
    # Every line must equal what checking each body in full gives: redacted whole if any key is a
    # credential key, else the client's own JSON; and never a secret.
    rlog = RequestLog(tmp_path_factory.mktemp("log") / "log.jsonl", secrets=[SECRET])
    messages: list[Any] = [{"role": "system", "content": "x" * SMALL_BODY}]
    for value, escape, pretty in turns:
        messages.append({"role": "user", "content": value})
        body = {"model": "m", "messages": list(messages), "tools": [{"name": "t"}]}
        raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 if pretty else 0)
        if escape:  # spell every letter of one key with \u escapes, as an adversarial client might
            raw = raw.replace(b'"api_key"', b'"' + b"".join(b"\\u%04x" % c for c in b"api_key") + b'"', 1)
        parsed = loads(raw)
        line = rlog.encode({"type": "complete", "request": RawJSON(raw, parsed)})
        assert SECRET.encode() not in line and line.count(b"\n") == 1
        expected = scrub(redact_keys(parsed) if has_secret_key(parsed) else parsed)
        assert loads(line)["request"] == expected
    rlog.close()


@pytest.mark.parametrize("raw", [b'{"api_\\u212aey": "s3cr3t-credential-value"}',
                                 '{"API_\u212aEY": "s3cr3t-credential-value"}'.encode()])
def test_a_bare_bytes_value_with_a_kelvin_sign_key_is_redacted(tmp_path: Path, raw: bytes) -> None:
    # The Kelvin sign lower-cases to "k": to the parsed rule this is an api_key.
    rlog = RequestLog(tmp_path / "log.jsonl")
    line = rlog.encode({"type": "complete", "request": raw})
    rlog.close()
    assert VALUE.encode() not in line and list(loads(line)["request"].values()) == [REDACTED]


def test_line_may_hold_secret_key_sees_every_spelling_and_skips_the_regex_for_a_plain_entry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of an entry's own keys (outside the client's body): every credential name in any
    ASCII case or escaped is seen next to the ``"key"`` and ``"input_tokens"`` every entry has, and
    a plain entry never runs the costly regex (its ``"key"`` once sent every line to it)."""
    plain = orjson.dumps({"type": "complete", "key": None, "usage": {"input_tokens": 1, "output_tokens": 2},
                          "response": {"content": [{"type": "text", "text": "the api_key field, monkey"}]}})
    for name in logscan.SECRET_KEYS:
        spellings = [name, name.upper(), name.title(), name.swapcase(), "".join(f"\\u{ord(c):04x}" for c in name),
                     name[:-1] + f"\\u{ord(name[-1]):04X}"]
        if "k" in name:
            spellings.append(name.replace("k", "\u212a"))
        for spelling in spellings:
            for line in (plain[:-1] + b',"' + spelling.encode() + b'": "v"}',
                         plain[:-1] + b',"extra": {"' + spelling.encode() + b'" : 1}}'):
                assert logscan.line_may_hold_secret_key(line), line
    searched: list[bytes] = []

    class Counting:
        def search(self, line: bytes) -> Any:
            searched.append(line)
            return None

    monkeypatch.setattr(logscan, "_SECRET_KEY_RE", Counting())
    assert not logscan.line_may_hold_secret_key(plain)
    assert searched == []


def _line_may_hold_secret_key_plainly(line: bytes) -> bool:
    """The rule :func:`logscan.line_may_hold_secret_key` implements, written plainly (one search
    per credential ending, the ``\\u`` search without the backslash pre-check)."""
    lowered = line.lower()
    if (b'authorization"' in lowered or b'api-key"' in lowered or b'api_key"' in lowered
            or b'apikey"' in lowered) and logscan._SECRET_KEY_RE.search(line):
        return True
    return (b"\\u" in line and logscan._NAME_ESCAPE_RE.search(line) is not None) or \
        (b"\xe2" in line and logscan._KELVIN in line)


_LINE_PIECES = [b'"key"', b'key"', b'KEY"', b"api", b"API", b"Api", b"-", b"_", b'"', b":", b" ", b"x",
                b"authorization", b"AUTHORIZATION", b"x-", b"proxy-", b"goog-", b"\\u0061", b"\\u212a",
                b"\\", b"u", b"\xe2\x84\xaa", b"\xe2", b"{", b"}", b",", b"monkey", b"api_ke", b"y",
                b'"apikey":', b'"API-KEY":', b'"x-api-key" :', b'"Api_Key":', b'"authorization":', b'"key":']


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_LINE_PIECES), max_size=24))
def test_line_may_hold_secret_key_gives_the_plain_rules_answer(pieces: list[bytes]) -> None:
    """The quicker searches (one ``key"`` search, a backslash before ``\\u``) decide every line as the
    plain rule does, credential names at the line's very start included."""
    line = b"".join(pieces)
    assert logscan.line_may_hold_secret_key(line) == _line_may_hold_secret_key_plainly(line), line
    lowered = line.lower()
    assert logscan._api_key_token(lowered) == (b'api-key"' in lowered or b'api_key"' in lowered
                                               or b'apikey"' in lowered), line


_ENTRY_KEYS = st.sampled_from(["a", "key", "text", "api_key", "X-Api-Key", "apikey", "authorization", "monkey",
                               "api_\u212aey", "tokens", "caf\u00e9"])
_VALUES = st.recursive(st.none() | st.integers(-1000, 1000) | st.text(max_size=6) | _ENTRY_KEYS,
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_ENTRY_KEYS, kids, max_size=3),
                       max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_ENTRY_KEYS, _VALUES, max_size=4), others=st.dictionaries(_ENTRY_KEYS, _VALUES, max_size=3),
       ascii_only=st.booleans(), indent=st.booleans())
# A line the cheap search cannot clear (a Kelvin sign, an escaped letter) that holds no key after all.
@example(body={"a": "api_\u212aey"}, others={}, ascii_only=False, indent=False)
@example(body={"a": {"API_KEY": 1}}, others={}, ascii_only=True, indent=True)
def test_a_small_body_entry_is_redacted_exactly_when_it_or_its_body_holds_a_credential_key(
        tmp_path: Path, body: dict[str, Any], others: dict[str, Any], ascii_only: bool, indent: bool) -> None:
    # A client's bytes as Python's json module writes them: \u escapes, spaces, line breaks.
    import json
    raw = json.dumps(body, ensure_ascii=ascii_only, indent=2 if indent else None).encode()
    entry = {"type": "complete", **{k: v for k, v in others.items() if k not in ("type", "request")},
             "request": RawJSON(raw, loads(raw))}
    rlog = RequestLog(tmp_path / "log.jsonl")
    try:
        line = rlog.encode(entry)
    finally:
        rlog.close()
    plain = {**entry, "request": body}
    held = redact_keys(plain) != plain
    assert loads(line) == redact_keys(plain)
    assert (REDACTED.encode() in line) == held
    if not held and not logscan.line_may_hold_secret_key(orjson.dumps(others)):
        # The body is written as the client sent it (line breaks as spaces); an entry whose own fields
        # the cheap search cannot clear is written whole from its parsed form instead, as before.
        assert raw.replace(b"\n", b" ") in line
