"""nox sessions: the same test suite and lint as tox and .ci/run."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]


@nox.session(python=["3.11", "3.12", "3.13"])
def tests(session: nox.Session) -> None:
    """Install llmrouter with its test extra and the example plugins, then run pytest."""
    session.install("-e", ".[test]", "-e", "./examples/llmrouter-example-plugin", "-e", "./examples/llmrouter-gemini")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")
