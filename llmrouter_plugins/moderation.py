"""Plugin ``moderation``: blocks requests by classifier tag or by regular expression.

In ``pre_request`` (after classification) every rule is checked in order; the first that matches
decides. A rule matches when the request carries its ``tag`` and/or one of the request's texts
(system prompt, text parts, tool-result text) matches its ``pattern`` (``re.search``); a rule
with both needs both. Its ``action`` is then:

``refuse``
    The plugin answers by itself with the rule's ``message`` and no provider is called; the
    client gets an ordinary reply in its own format (the log reports provider ``plugin``). The
    stop reason is ``end_turn`` by default, so every client shows the message as it is; set
    ``stop_reason = "refusal"`` to report a refusal instead.
``error``
    The request fails with 400 ``request blocked by moderation rule <rule>``, where ``<rule>`` is
    the rule's ``name`` or else its tag and/or pattern.

Settings (``[plugins.moderation]``):

``rules``
    A list of tables with ``tag``, ``pattern`` (at least one of them), ``action`` (``refuse`` or
    ``error``; default: the top-level ``action``), ``message`` (default: the top-level
    ``message``) and an optional ``name``.
``block_tags``, ``patterns``
    A shorthand: each entry becomes one rule with the top-level ``action`` and ``message``.
``action`` (default ``refuse``), ``message``, ``stop_reason`` (``end_turn`` or ``refusal``)
    Defaults for the rules.

Output checks: ``output_patterns`` (regular expressions) are searched in the reply's text. A
streamed reply ends with an error event in the client's format (``reply blocked by moderation
output pattern '<pattern>'``, logged with status 400) as soon as the text matches: the delta that
completes the match is withheld, text sent before it has reached the client. Each delta is
searched with the ``output_window_chars`` (default 1024) characters before it, so a match may span
deltas. A complete (non-streaming) reply that matches is replaced by ``output_message`` (stop
reason ``refusal``). Without ``output_patterns`` the plugin costs streams nothing.

A request may add rules through its ``plugins`` entry, but never remove or relax the rules
enabled in the config: the config's rules are always checked first, exactly as configured, and
the request's extra rules after them. An invalid regular expression in the config is reported
naming the rule (the request fails with 500 until the config is fixed); one sent in a request is
a 400. Regular expressions are compiled once per distinct settings.

Example::

    [plugins.moderation]
    enabled = true
    message = "Sorry, this router does not handle that kind of request."
    output_patterns = ["BEGIN (RSA|OPENSSH) PRIVATE KEY"]   # checked on replies, streamed or not

    [[plugins.moderation.rules]]
    tag = "pii"
    action = "refuse"
    message = "Please remove personal data and try again."

    [[plugins.moderation.rules]]
    name = "secrets"
    pattern = "(?i)(password|api[_-]?key)\\\\s*[:=]"
    action = "error"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import orjson

from llmrouter.context import Context, Flow
from llmrouter.errors import InvalidRequest
from llmrouter.hookspecs import hookimpl
from llmrouter.jsonutil import dumps_str, loads
from llmrouter.models import ChatResponse, StopReason
from llmrouter_plugins._moderation_output import (
    DEFAULT_OUTPUT_MESSAGE,
    DEFAULT_WINDOW,
    OutputModerator,
    OutputSettingsError,
    output_patterns,
)

DEFAULT_MESSAGE = "This request was blocked by the router's moderation policy."
ACTIONS = ("refuse", "error")
STOP_REASONS = ("end_turn", "refusal")
_SETTING_KEYS = ("rules", "block_tags", "patterns", "action", "message", "stop_reason")
_RULE_KEYS = frozenset({"name", "tag", "pattern", "action", "message"})


class ModerationSettingsError(ValueError):
    """The moderation settings are malformed (bad rule, unknown action, invalid regex)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One moderation rule, validated, with its regular expression compiled."""

    label: str
    tag: str | None
    pattern: re.Pattern[str] | None
    action: str
    message: str
    stop_reason: StopReason

    def matches(self, tags: list[str], texts: list[str]) -> bool:
        """Whether a request with ``tags`` and ``texts`` is caught by this rule."""
        if self.tag is not None and self.tag not in tags:
            return False
        if self.pattern is not None:
            search = self.pattern.search
            return any(search(text) for text in texts)
        return True


@hookimpl
def pre_request(ctx: Context) -> Flow | None:
    """Refuse or reject the request when a moderation rule matches it."""
    _check_output_settings(ctx)
    rule = first_match(effective_rules(ctx), ctx.request.tags, ctx.request.iter_text())
    if rule is None:
        return None
    if rule.action == "error":
        raise InvalidRequest(f"request blocked by moderation rule {rule.label}")
    ctx.response = ChatResponse.from_text(rule.message, model=ctx.request.model, stop_reason=rule.stop_reason)
    return Flow.STOP


@hookimpl
def stream_transformer(ctx: Context) -> OutputModerator | None:
    """Check the streamed reply against ``output_patterns``; ``None`` (no cost) when there are none."""
    patterns = _output_patterns(ctx)
    if not patterns:
        return None
    window = ctx.config_settings.get("output_window_chars", DEFAULT_WINDOW)
    if not isinstance(window, int) or window < 0:
        raise ModerationSettingsError("moderation: 'output_window_chars' must be a non-negative integer")
    return OutputModerator(patterns, window)


@hookimpl
def post_response(ctx: Context) -> None:
    """Replace a complete reply whose text matches an output pattern by ``output_message``."""
    response = ctx.response
    if response is None or ctx.delivered or ctx.provider == "plugin":
        return
    patterns = _output_patterns(ctx)
    if not patterns:
        return
    text = response.text()
    if any(pattern.search(text) for pattern in patterns):
        message = ctx.config_settings.get("output_message", DEFAULT_OUTPUT_MESSAGE)
        ctx.response = ChatResponse.from_text(str(message), model=response.model, stop_reason="refusal")
        ctx.response.usage = response.usage
        ctx.mark_modified()


def _check_output_settings(ctx: Context) -> None:
    """Fail a request whose output patterns are invalid before any stream starts: a broken config
    fails it with 500, a bad pattern sent by the request with 400."""
    if "output_patterns" not in ctx.settings:
        return
    output_patterns(ctx.config_settings)  # OutputSettingsError (a ValueError): the plugin failed
    try:
        output_patterns(ctx.config_settings, ctx.settings)
    except OutputSettingsError as exc:
        raise InvalidRequest(str(exc)) from None


def _output_patterns(ctx: Context) -> tuple[re.Pattern[str], ...]:
    """The config's output patterns plus those the request adds (never fewer)."""
    try:
        return output_patterns(ctx.config_settings, ctx.settings)
    except OutputSettingsError as exc:
        raise ModerationSettingsError(str(exc)) from None


def first_match(rules: tuple[Rule, ...], tags: list[str], texts: list[str]) -> Rule | None:
    """The first rule catching a request with ``tags`` and ``texts``, or ``None``."""
    for rule in rules:
        if rule.matches(tags, texts):
            return rule
    return None


def effective_rules(ctx: Context) -> tuple[Rule, ...]:
    """The config's rules, followed by any different rules the request's settings add."""
    configured = parse_settings(ctx.config_settings)
    try:
        merged = parse_settings(ctx.settings)
    except ModerationSettingsError as exc:
        raise InvalidRequest(str(exc)) from None
    extra = tuple(rule for rule in merged if rule not in configured)
    return configured + extra


def parse_settings(settings: dict[str, Any]) -> tuple[Rule, ...]:
    """Validate ``settings`` into rules (cached per distinct settings); raise a clear error if bad."""
    relevant = {key: settings[key] for key in _SETTING_KEYS if key in settings}
    if not relevant:
        return ()
    try:
        key = dumps_str(relevant)
    except (TypeError, orjson.JSONEncodeError):
        raise ModerationSettingsError("moderation: settings must be plain TOML/JSON values") from None
    return _parse_cached(key)


@lru_cache(maxsize=128)
def _parse_cached(settings_json: str) -> tuple[Rule, ...]:
    """Parse settings given as JSON text (so that they can serve as a cache key)."""
    settings: dict[str, Any] = loads(settings_json)
    action = _choice(settings, "action", ACTIONS, "refuse", "moderation")
    message = _text(settings, "message", DEFAULT_MESSAGE, "moderation")
    stop_reason = cast(StopReason, _choice(settings, "stop_reason", STOP_REASONS, "end_turn", "moderation"))
    defaults = {"action": action, "message": message}

    tables: list[tuple[str, dict[str, Any]]] = []
    rules = settings.get("rules", [])
    if not isinstance(rules, list):
        raise ModerationSettingsError("moderation: 'rules' must be a list of tables")
    tables += [(f"rules[{i}]", table) for i, table in enumerate(rules)]
    for key, field in (("block_tags", "tag"), ("patterns", "pattern")):
        values = settings.get(key, [])
        if not isinstance(values, list):
            raise ModerationSettingsError(f"moderation: {key!r} must be a list of strings")
        tables += [(f"{key}[{i}]", {field: value}) for i, value in enumerate(values)]
    return tuple(_rule(where, table, defaults, stop_reason) for where, table in tables)


def _rule(where: str, table: Any, defaults: dict[str, str], stop_reason: StopReason) -> Rule:
    """Build one :class:`Rule` from its table; ``where`` locates it in messages."""
    prefix = f"moderation: {where}"
    if not isinstance(table, dict):
        raise ModerationSettingsError(f"{prefix}: must be a table")
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        raise ModerationSettingsError(f"{prefix}: unknown key(s) {', '.join(map(repr, unknown))}")
    tag = _text(table, "tag", None, prefix)
    source = _text(table, "pattern", None, prefix)
    if tag is None and source is None:
        raise ModerationSettingsError(f"{prefix}: needs a 'tag' or a 'pattern'")
    pattern = None
    if source is not None:
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise ModerationSettingsError(f"{prefix}: invalid regular expression {source!r}: {exc}") from None
    name = _text(table, "name", None, prefix)
    # Quoted as written (not repr) so that backslashes in patterns read as in the config.
    if name is not None:
        label = f"'{name}'"
    else:
        label = " and ".join(
            f"{kind} '{value}'" for kind, value in (("tag", tag), ("pattern", source)) if value is not None
        )
    return Rule(
        label=label,
        tag=tag,
        pattern=pattern,
        action=_choice(table, "action", ACTIONS, defaults["action"], prefix),
        message=_text(table, "message", None, prefix) or defaults["message"],
        stop_reason=stop_reason,
    )


def _text(table: dict[str, Any], key: str, default: str | None, prefix: str) -> str | None:
    """``table[key]`` as a non-empty string, ``default`` when absent; raise when not a string."""
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise ModerationSettingsError(f"{prefix}: {key!r} must be a non-empty string")
    return value


def _choice(table: dict[str, Any], key: str, allowed: tuple[str, ...], default: str, prefix: str) -> str:
    """``table[key]`` if it is one of ``allowed``, ``default`` when absent; raise otherwise."""
    value = table.get(key, default)
    if value not in allowed:
        raise ModerationSettingsError(f"{prefix}: {key!r} must be one of {', '.join(allowed)}; got {value!r}")
    return value
