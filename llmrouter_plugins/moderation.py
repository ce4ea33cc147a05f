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

Moderation is the operator's policy: none of its settings is request-settable, so a client can
neither relax it nor send regular expressions for the router to run (a pathological pattern is a
denial of service on a shared router). The settings are validated and every regular expression
compiled once, at load: an invalid one stops startup naming the rule.

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
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from llmrouter.context import Context, Flow
from llmrouter.errors import InvalidRequest
from llmrouter.hookspecs import hookimpl
from llmrouter.models import ChatResponse, StopReason
from llmrouter.settings import PluginSettings
from llmrouter_plugins._moderation_output import (
    DEFAULT_OUTPUT_MESSAGE,
    DEFAULT_WINDOW,
    OutputModerator,
    output_patterns,
)

DEFAULT_MESSAGE = "This request was blocked by the router's moderation policy."
Action = Literal["refuse", "error"]
Text = Field(default=None, min_length=1)


class RuleTable(PluginSettings):
    """One ``[[plugins.moderation.rules]]`` table."""

    name: str | None = Text
    tag: str | None = Text
    pattern: str | None = Text
    action: Action | None = None
    message: str | None = Text


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


class Settings(PluginSettings):
    """``[plugins.moderation]``: the rules, compiled once into :attr:`compiled`."""

    rules: tuple[RuleTable, ...] = ()
    block_tags: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    action: Action = "refuse"
    message: str = Field(default=DEFAULT_MESSAGE, min_length=1)
    stop_reason: Literal["end_turn", "refusal"] = "end_turn"
    output_patterns: tuple[str, ...] = ()
    output_window_chars: int = Field(default=DEFAULT_WINDOW, ge=0)
    output_message: str = Field(default=DEFAULT_OUTPUT_MESSAGE, min_length=1)
    _compiled: tuple[Rule, ...] = PrivateAttr(())
    _output: tuple[re.Pattern[str], ...] = PrivateAttr(())

    def model_post_init(self, context: Any) -> None:
        """Build and compile every rule and output pattern; an invalid one raises naming it."""
        tables = [(f"rules[{i}]", table) for i, table in enumerate(self.rules)]
        tables += [(f"block_tags[{i}]", RuleTable(tag=tag)) for i, tag in enumerate(self.block_tags)]
        tables += [(f"patterns[{i}]", RuleTable(pattern=p)) for i, p in enumerate(self.patterns)]
        self._compiled = tuple(self._rule(where, table) for where, table in tables)
        self._output = output_patterns({"output_patterns": list(self.output_patterns)})

    @property
    def compiled(self) -> tuple[Rule, ...]:
        """The rules in the order they are checked."""
        return self._compiled

    def _rule(self, where: str, table: RuleTable) -> Rule:
        prefix = f"moderation: {where}"
        if table.tag is None and table.pattern is None:
            raise ValueError(f"{prefix}: needs a 'tag' or a 'pattern'")
        pattern = None
        if table.pattern is not None:
            try:
                pattern = re.compile(table.pattern)
            except re.error as exc:
                raise ValueError(f"{prefix}: invalid regular expression {table.pattern!r}: {exc}") from None
        # Quoted as written (not repr) so that backslashes in patterns read as in the config.
        if table.name is not None:
            label = f"'{table.name}'"
        else:
            label = " and ".join(f"{kind} '{value}'" for kind, value in (("tag", table.tag), ("pattern", table.pattern))
                                 if value is not None)
        return Rule(label=label, tag=table.tag, pattern=pattern, action=table.action or self.action,
                    message=table.message or self.message, stop_reason=self.stop_reason)


@hookimpl
def stream_transformer(ctx: Context) -> OutputModerator | None:
    """Check the streamed reply against ``output_patterns``; ``None`` (no cost) when there are none."""
    settings: Settings = ctx.settings
    if not settings._output:
        return None
    return OutputModerator(settings._output, settings.output_window_chars)


@hookimpl
def post_response(ctx: Context) -> None:
    """Replace a complete reply whose text matches an output pattern by ``output_message``."""
    settings: Settings = ctx.settings
    response = ctx.response
    if response is None or ctx.delivered or ctx.provider == "plugin" or not settings._output:
        return
    text = response.text()
    if any(pattern.search(text) for pattern in settings._output):
        ctx.response = ChatResponse.from_text(settings.output_message, model=response.model, stop_reason="refusal")
        ctx.response.usage = response.usage
        ctx.mark_modified()


@hookimpl
def pre_request(ctx: Context) -> Flow | None:
    """Refuse or reject the request when a moderation rule matches it."""
    settings: Settings = ctx.settings
    rule = first_match(settings.compiled, ctx.request.tags, ctx.request.iter_text())
    if rule is None:
        return None
    if rule.action == "error":
        raise InvalidRequest(f"request blocked by moderation rule {rule.label}")
    ctx.response = ChatResponse.from_text(rule.message, model=ctx.request.model, stop_reason=rule.stop_reason)
    return Flow.STOP


def first_match(rules: tuple[Rule, ...], tags: list[str], texts: list[str]) -> Rule | None:
    """The first rule catching a request with ``tags`` and ``texts``, or ``None``."""
    for rule in rules:
        if rule.matches(tags, texts):
            return rule
    return None
