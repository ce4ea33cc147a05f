"""Router rule ``prefix``: routes models whose name starts with a prefix to one provider.

Settings (one ``[[routers]]`` table):

``model_prefix`` (required)
    Matched case-sensitively against the start of the requested model name.
``provider`` (required)
    The provider to route to. If it is not loaded (for example, its API key is missing) the rule
    passes.
``rewrite_model`` (optional)
    The model name sent upstream. When absent, the requested model is sent unchanged
    (``model_prefix = "gpt-"`` sends ``gpt-4o-mini`` as ``gpt-4o-mini``).
``strip_prefix`` (optional, default ``false``)
    Set to ``true`` to send the requested model with the prefix removed when there is no
    ``rewrite_model`` (``local/qwen2.5:7b`` becomes ``qwen2.5:7b``); a model that is nothing but
    the prefix then passes, since there is no name left to send.

Example::

    [[routers]]
    type = "prefix"
    model_prefix = "local/"
    provider = "local"
    rewrite_model = "llama3.2-3b"
"""

from __future__ import annotations

from llmrouter.context import Context, Route
from llmrouter.hookspecs import hookimpl
from llmrouter_plugins.rules._select import RuleSettingsError, optional_str, require_str, rule_label


@hookimpl
def route(ctx: Context) -> Route | None:
    """Route to ``provider`` when the requested model starts with ``model_prefix``."""
    settings = ctx.settings
    model_prefix = require_str(settings, "model_prefix")
    provider = require_str(settings, "provider")
    rewrite = optional_str(settings, "rewrite_model")
    strip = settings.get("strip_prefix", False)
    if not isinstance(strip, bool):
        raise RuleSettingsError(f"{rule_label(settings)}: key 'strip_prefix' must be true or false")
    model = ctx.request.model
    if not model.startswith(model_prefix) or provider not in ctx.providers:
        return None
    if rewrite is not None:
        return Route(provider, rewrite)
    if not strip:
        return Route(provider, None)
    rest = model[len(model_prefix):]
    return Route(provider, rest) if rest else None
