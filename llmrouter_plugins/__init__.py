"""llmrouter's built-in plugins: classifiers, router rules and plugins, each an ordinary pluggy plugin
registered through the ``llmrouter`` entry point group exactly like a third-party plugin."""
