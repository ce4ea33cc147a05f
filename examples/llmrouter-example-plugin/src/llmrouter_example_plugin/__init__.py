"""An example third-party llmrouter plugin package.

It ships three plugins, each registered under its own id in the ``llmrouter`` entry point group:

``shouting`` (classifier)
    Tags prompts written in capital letters.
``prompt-length`` (router rule type)
    Routes long prompts to a chosen provider.
``signature`` (plugin)
    Appends a configurable footer to every reply.
"""

__version__ = "0.1.0"
