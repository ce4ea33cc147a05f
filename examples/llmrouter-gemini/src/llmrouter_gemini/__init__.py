"""An example llmrouter plugin package that adds a native Google Gemini provider format.

One plugin, id ``gemini`` (module :mod:`llmrouter_gemini.plugin`), contributes through the
registration hooks:

* a provider format, ``format = "gemini"`` (:mod:`llmrouter_gemini.format`), speaking
  ``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``;
* a route, ``GET /gemini/providers``: the configured Gemini providers and their models;
* a command, ``llmrouter gemini-body``: prints the request body the format would send for a prompt.
"""

__version__ = "0.1.0"
