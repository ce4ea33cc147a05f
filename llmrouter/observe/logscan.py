"""What the request log looks for before a line reaches the file: credential-like keys and known
secret values, and how it avoids looking at the same bytes twice.

Agents resend their whole conversation with every request, so an agent's request body is, byte for
byte, mostly the previous request of its session. :class:`BodyScanner` keeps the bytes of the last
few client bodies it found clean and, for a new body, finds the one it shares the longest prefix
and suffix with (a handful of ``memcmp`` calls); only the bytes in between, plus a margin on each
side, are searched. Why that is sound:

- **Secret values**: every occurrence of a secret in the new body either lies inside the shared
  prefix or suffix (then the clean body held it too, which it did not) or overlaps the bytes in
  between, and then lies inside the margin-extended region, since the margin is at least a
  secret's length.
- **Credential-like keys**: a key token (the quoted name before a ``:``) lies in the shared prefix,
  or in the shared suffix, or overlaps the region. In the prefix, the parser is in the same state
  as it was in the clean body after the same bytes, so the token was a key there too and was not a
  credential key. In the suffix (past its first byte), the same bytes follow it up to the end, so
  it is followed by ``:`` in both bodies; if it was a string in the clean body it was a key there
  (clean again); if it was not, its letters were structural JSON in the clean body, where only
  ``true``/``false``/``null`` and numbers have letters, and every credential name holds a ``k`` or
  an ``h``, which none of them has. Otherwise the token (at most :data:`KEY_TOKEN_MAX` bytes, the
  longest name with every character ``\\u``-escaped) lies inside the region, which is searched for
  every way of spelling the end of a credential name (:func:`may_hold_secret_key`): any hit sends
  the body to the full check of its parsed keys (:func:`has_secret_key`).

A body with no usable earlier body is checked in full: its parsed keys are walked and every secret
is searched for in all its bytes. A body becomes a reference only once found clean of both.
"""

from __future__ import annotations

import re
import threading
from typing import Any, NamedTuple

REDACTED = "[redacted]"
SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "api_key", "apikey",
                         "x-goog-api-key"})
"""Credential-like key names (compared after ``str.lower()``)."""
KEY_TOKEN_MAX = 2 + 6 * max(len(name) for name in SECRET_KEYS)
"""The longest JSON spelling of a credential key token: quotes and a ``\\uXXXX`` per character."""
REFERENCES = 16
"""Clean bodies remembered (one per agent session in flight, about)..."""
REFERENCE_BYTES = 16 << 20
"""... holding at most this many bytes together."""

# How every credential name can end in JSON bytes, lower-cased: literally, one of these followed
# by the closing quote; or with a character escaped (a letter, "-", "_" or the Kelvin sign, the one
# non-ASCII character that str.lower() turns into an ASCII letter); or with that Kelvin sign raw.
_KEY_ENDING_RE = re.compile(rb'(?:authorization|api[-_]?key)"')
_NAME_ESCAPE_RE = re.compile(rb"\\u(?:00[2-7][0-9a-fA-F]|212[aA])")
_KELVIN = "\u212a".encode()
_SECRET_KEY_RE = re.compile(rb'"(?:proxy-)?(?:authorization|x-api-key|api[-_]?key|x-goog-api-key)"\s*:', re.I)
# Keys known not to be credential-like (bodies repeat the same few): a set lets a dict's keys be
# checked in one C-level call. Bounded: keys come from clients.
_SAFE_KEYS: set[str] = set()
_MAX_SAFE_KEYS = 4096
_SAMPLE = 32
_BLOCK = 32 << 10
_CONTAINERS = (dict, list)


def has_secret_key(value: Any) -> bool:
    """Whether a credential-like key occurs anywhere in the parsed JSON ``value``."""
    safe = _SAFE_KEYS
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if isinstance(item, dict):
            if not safe.issuperset(item):
                for key in item:
                    if key in safe or not isinstance(key, str):
                        continue
                    if key.lower() in SECRET_KEYS:
                        return True
                    if len(safe) < _MAX_SAFE_KEYS:
                        safe.add(key)
            values: Any = item.values()
        elif isinstance(item, list):
            values = item
        else:
            continue
        for child in values:
            if isinstance(child, _CONTAINERS):
                push(child)
    return False


def line_may_hold_secret_key(line: bytes) -> bool:
    """Whether a serialised JSON ``line`` may hold a credential-like key (no false negatives; a key
    spelled with ``\\u`` escapes always counts)."""
    lowered = line.lower()
    # Cheap substring tests first: the regex costs ~10 us per line and almost never matches. Every
    # name it matches ends in one of these, quote included (``"key"`` alone, which every entry has,
    # does not: it names the virtual key, never the key itself).
    if (b'authorization"' in lowered or (b"api" in lowered and (
            b'api-key"' in lowered or b'api_key"' in lowered or b'apikey"' in lowered))) \
            and _SECRET_KEY_RE.search(line):
        return True
    # (A one-byte test first: it is a memchr, the two-byte one a slower search, and serialised
    # entries rarely hold a backslash at all.)
    return (b"\\" in line and b"\\u" in line and _NAME_ESCAPE_RE.search(line) is not None) \
        or (b"\xe2" in line and _KELVIN in line)


def may_hold_secret_key(data: bytes) -> bool:
    """Whether a key token spelling a credential name may lie in ``data`` (a slice of JSON bytes,
    possibly cut anywhere): no false negatives, for every spelling (case, ``\\u`` escapes)."""
    if _KEY_ENDING_RE.search(data.lower()) or _NAME_ESCAPE_RE.search(data):
        return True
    return b"\xe2" in data and _KELVIN in data


def _common_prefix(a: bytes, b: bytes) -> int:
    """The length of the longest common prefix of ``a`` and ``b``.

    Blocks of growing size are compared with ``memcmp`` (no copies), so each shared byte is read
    about once; the block holding the first difference is then bisected."""
    n = min(len(a), len(b))
    view = memoryview(b)
    lo, step = 0, _BLOCK
    while True:
        hi = min(n, lo + step)
        if not a.startswith(view[lo:hi], lo):
            break
        if hi == n:
            return n
        lo, step = hi, step * 2
    while hi - lo > 1:  # a[:lo] == b[:lo]; the first difference lies in [lo, hi)
        mid = (lo + hi) >> 1
        if a.startswith(view[lo:mid], lo):
            lo = mid
        else:
            hi = mid
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """The length (at most ``limit``) of the longest common suffix of ``a`` and ``b``."""
    la, lb = len(a), len(b)
    view = memoryview(b)
    lo, step = 0, _BLOCK  # the last lo bytes agree
    while lo < limit:
        hi = min(limit, lo + step)
        if not a.endswith(view[lb - hi:lb - lo], 0, la - lo):
            break
        lo, step = hi, step * 2
    else:
        return lo
    while hi - lo > 1:  # the last lo bytes agree, the last hi do not
        mid = (lo + hi) >> 1
        if a.endswith(view[lb - mid:lb - lo], 0, la - lo):
            lo = mid
        else:
            hi = mid
    return lo


class Verdict(NamedTuple):
    """What a client body holds."""

    key: bool
    """A credential-like key."""
    secret: bool
    """A known secret value."""
    breaks: bool
    """A line break (whitespace between JSON tokens)."""
    ref: bytes | None = None
    """The remembered clean body it was checked against, if any..."""
    prefix: int = 0
    """... the bytes they begin with in common..."""
    suffix: int = 0
    """... and end with (not overlapping the prefix in either)."""


class BodyScanner:
    """Checks client bodies (their bytes and parsed form) for credential-like keys and secret values,
    searching only what a body does not share with a body found clean before (see the module notes).

    :param secrets: the secret values, as bytes.
    """

    def __init__(self, secrets: list[bytes], references: int = REFERENCES) -> None:
        self.secrets = secrets
        self.margin = max([KEY_TOKEN_MAX, *(len(s) for s in secrets)])
        self._max_refs = references
        self._refs: list[bytes] = []
        self._breaks: dict[int, bool] = {}  # by id() of a remembered body: whether it holds a line break
        self._lock = threading.Lock()
        self.scanned = 0
        """Bytes searched so far (for tests and benchmarks)."""

    def check(self, raw: bytes, parsed: Any) -> Verdict:
        """What the JSON ``raw`` (whose parsed form is ``parsed``) holds."""
        with self._lock:
            ref, prefix, suffix = self._reference(raw)
            n = len(raw)
            if ref is None:
                self.scanned += n
                has_secret = any(secret in raw for secret in self.secrets)
                has_key = has_secret_key(parsed)
                breaks = b"\n" in raw or b"\r" in raw
            else:
                region = raw[max(0, prefix - self.margin):min(n, n - suffix + self.margin)]
                self.scanned += len(region)
                has_secret = any(secret in region for secret in self.secrets)
                has_key = may_hold_secret_key(region) and has_secret_key(parsed)
                breaks = self._breaks[id(ref)] or b"\n" in region or b"\r" in region
            if not has_key and not has_secret:
                self._remember(raw, ref, n - prefix - suffix, breaks)
            return Verdict(has_key, has_secret, breaks, ref, prefix, suffix)

    def _reference(self, raw: bytes) -> tuple[bytes | None, int, int]:
        """The remembered body sharing the most with ``raw``, and the shared prefix and suffix."""
        n = len(raw)
        best: bytes | None = None
        best_prefix = best_suffix = 0
        for ref in self._refs:
            k = len(ref)
            if k > 4 * _SAMPLE:
                # One sample from the middle, aligned to the start or to the end, skips bodies of
                # other sessions before any long comparison.
                mid = k // 2
                sample = memoryview(ref)[mid:mid + _SAMPLE]
                if not raw.startswith(sample, mid) and not (n - k + mid >= 0 and raw.startswith(sample, n - k + mid)):
                    continue
            prefix = _common_prefix(raw, ref)
            suffix = _common_suffix(raw, ref, min(n, k) - prefix)
            if prefix + suffix > best_prefix + best_suffix:
                best, best_prefix, best_suffix = ref, prefix, suffix
                if (n - prefix - suffix) * 8 <= n:  # little left to search: good enough
                    break
        return best, best_prefix, best_suffix

    def _remember(self, raw: bytes, ref: bytes | None, changed: int, breaks: bool) -> None:
        refs = self._refs
        if ref is not None and changed * 4 <= len(raw):
            # The next request of the same session will share more with this one.
            refs.remove(ref)
            del self._breaks[id(ref)]
        refs.insert(0, raw)
        self._breaks[id(raw)] = breaks
        keep, total = 0, 0
        for body in refs[:self._max_refs]:
            total += len(body)
            if total > REFERENCE_BYTES:
                break
            keep += 1
        for old in refs[keep:]:
            del self._breaks[id(old)]
        del refs[keep:]
