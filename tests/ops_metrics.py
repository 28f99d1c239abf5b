"""The metric names the operations bundle (rollway.ops) reads: its Grafana queries and its
Prometheus rules, parsed for names (tests/api/test_ops.py, tests/api/test_dashboard.py)."""

from __future__ import annotations

import json
import re

import yaml

from rollway import ops


def dashboard_exprs() -> list[str]:
    doc = json.loads(ops.read("dashboard"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: with label matchers ({...}) and grouping
    clauses (by/without (...)) taken out, every identifier named like ours."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", bare)
    return set(re.findall(r"\b((?:envoy_)?rollway_[a-z0-9_]+)\b", bare))


def referenced_metrics() -> set[str]:
    names = set()
    for expr in dashboard_exprs():
        names |= metric_names(expr)
    for group in yaml.safe_load(ops.read("rules"))["groups"]:
        for rule in group["rules"]:
            names |= metric_names(rule["expr"])
    return names
