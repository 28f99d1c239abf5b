"""The operations bundle (rollway.ops): its Prometheus rules pass `promtool check rules` and
their own `promtool test rules` cases (Debian's prometheus package), every PromQL
expression of the Grafana dashboard parses, and `rollway ops` prints and exports them.
That the metric names exist in real scrapes is checked in test_dashboard.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rollway import ops

from ops_metrics import dashboard_exprs, metric_names, referenced_metrics

PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool not found (Debian: apt-get install prometheus; make setup does)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_rules_pass_promtool_check_and_their_tests(tmp_path):
    ops.export(tmp_path)
    checked = promtool("check", "rules", "prometheus-rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = promtool("test", "rules", "prometheus-rules-test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in yaml.safe_load(ops.read("rules"))["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {"RollwayEnvoyStale", "RollwayEnvoyNacks", "RollwayStoreDown", "RollwayNotReady",
                      "RollwayAdmissionHeld", "RollwayVersionHalted", "RollwayMovesNotCommitted", "RollwayNoCapacity"}
    tested_alerts = {case["alertname"] for t in yaml.safe_load(ops.read("rules-test"))["tests"]
                     for case in t.get("alert_rule_test", [])}
    assert tested_alerts == alerts          # every alert has a firing case


def test_a_broken_rule_is_caught_by_promtool(tmp_path):
    """The check above can fail: promtool rejects a rule with a PromQL error."""
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}]}))
    assert promtool("check", "rules", str(bad), cwd=tmp_path).returncode != 0


def test_the_dashboard_loads_and_every_query_parses(tmp_path):
    doc = json.loads(ops.read("dashboard"))
    assert doc["uid"] == "rollway" and doc["panels"]
    for panel in doc["panels"]:
        assert {"id", "type", "title", "gridPos"} <= panel.keys()
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
    titles = " ".join(p["title"] for p in doc["panels"])
    assert "reload signals per version" in titles and "Stale Envoys" in titles and "moved" in titles
    # One colour a version: series coloured by their name, the same in every panel.
    assert all(p["fieldConfig"]["defaults"]["color"]["mode"] == "palette-classic-by-name"
               for p in doc["panels"] if p["type"] == "timeseries")
    # promtool parses PromQL: each dashboard query as a recording rule ($stage: a regex).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": expr.replace("$stage", ".*")} for i, expr in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metric_names_are_read_from_expressions():
    assert metric_names('sum by (rollway_stage) (rate(envoy_rollway_requests{rollway_stage=~"p.*"}[1m]))') == \
        {"envoy_rollway_requests"}
    assert metric_names("max by (service, node) (rollway_envoy_stale) > 0") == {"rollway_envoy_stale"}
    assert {"envoy_rollway_no_capacity", "rollway_store_up", "rollway_envoy_stale"} <= referenced_metrics()


def test_rollway_ops_prints_and_exports_the_bundle(tmp_path):
    shown = subprocess.run([sys.executable, "-m", "rollway.cli.main", "ops", "show", "dashboard"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout)["uid"] == "rollway"
    out = subprocess.run([sys.executable, "-m", "rollway.cli.main", "ops", "export", str(tmp_path / "ops")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "ops").iterdir()) == sorted(ops.FILES.values())
