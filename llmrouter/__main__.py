"""``python -m llmrouter``: the same command line as the ``llmrouter`` script."""

from llmrouter.cli.main import main

main()
