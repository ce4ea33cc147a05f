"""docs/grafana-dashboard.json only queries metrics (and labels) that the router exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmrouter.observe.metrics import SPECS

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
SAMPLE_TO_SPEC = {name: spec for spec in SPECS for name in spec.sample_names()}
METRIC = re.compile(r"\bllmrouter_[a-z_]+")
SELECTOR = re.compile(r"\b(llmrouter_[a-z_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def expressions() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and template variable queries."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "datasource":  # a data source picker, not a query
                return
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text("utf-8")))
    return found


def test_the_dashboard_is_valid_json_with_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_metric_the_dashboard_queries_exists() -> None:
    referenced = {name for expr in expressions() for name in METRIC.findall(expr)}
    assert referenced
    unknown = sorted(referenced - SAMPLE_TO_SPEC.keys())
    assert not unknown, f"the dashboard queries metrics the router does not export: {unknown}"


def test_every_exported_metric_is_on_the_dashboard() -> None:
    referenced = {SAMPLE_TO_SPEC[name].name for expr in expressions() for name in METRIC.findall(expr)
                  if name in SAMPLE_TO_SPEC}
    assert referenced == {spec.name for spec in SPECS}


def test_every_label_the_dashboard_uses_exists() -> None:
    for expr in expressions():
        for name, matchers in SELECTOR.findall(expr):
            spec = SAMPLE_TO_SPEC[name]
            allowed = set(spec.labels) | ({"le"} if name.endswith("_bucket") else set())
            used = {m.split("=")[0].strip().rstrip("!~") for m in matchers.split(",") if m.strip()}
            assert used <= allowed, f"{expr}: {sorted(used - allowed)} not labels of {name}"
        metrics = {SAMPLE_TO_SPEC[name] for name in METRIC.findall(expr)}
        for group in GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",") if part.strip()):
                assert label == "le" or any(label in spec.labels for spec in metrics), \
                    f"{expr}: grouping by {label!r}, which none of its metrics has"
