"""`rollway demo`, the README's main job, run as a user runs it: a real control plane, two
real Envoys, real backends and real HTTP from simulated browsers and from real headless
Chromium tabs, on the embedded file store and on a real ZooKeeper; and Ctrl-C stops
everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from envoy_harness import free_port, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.browser]

DEMO = [sys.executable, "-m", "rollway.cli.main", "demo", "--http-port", "0"]


def run_demo(*args: str, timeout: float = 240) -> dict:
    out = subprocess.run(DEMO + list(args), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(out.stdout)


def assert_clean_deploy(summary: dict) -> None:
    sessions = summary["sessions"]
    assert summary["deploy_completed"] is True, summary
    assert summary["capacity"] == {"canary": {"v2": 1.0}, "prod": {"v2": 6.0}}, summary
    assert summary["final_versions"] == {"v2": sessions}, summary     # every session ended on v2
    assert summary["app_versions"] == {"v2": sessions}, summary       # and its app reloaded onto it
    assert summary["bounces"] == 0, summary
    assert summary["refreshes_per_session_max"] <= 1, summary
    assert summary["moves_per_session_max"] == 1, summary
    assert summary["requests"] > 20 * sessions, summary
    # Old hosts drain (not-ALIVE, the deploy gate, removed) before they stop, and new ones
    # are admitted by every Envoy before the old ones go: the deploy itself fails nothing.
    assert summary["drain_errors"] == [], summary
    assert summary["errors"] == 0, summary
    assert summary["envoys"] == 2 and summary["xds_nacks"] == 0, summary
    # The second app on the same two Envoys (api, its own host name), deployed a1 -> a2 while
    # web's deploy was under way: every api session moved once, none bounced.
    api = summary["services"]["api"]
    assert api["deploy_completed"] is True and api["capacity"] == {"prod": {"a2": 4.0}}, api
    assert api["final_versions"] == {"a2": api["sessions"]} and api["bounces"] == 0, api
    assert api["moves_per_session_max"] == 1 and api["refreshes_per_session_max"] <= 1, api
    assert api["errors"] == 0 and api["requests"] > 10 * api["sessions"], api


def test_demo_deploys_v2_through_two_envoys_without_a_bounce_and_20_chromium_tabs_reload_once():
    summary = run_demo("--duration", "40", "--json", "--browsers", "20")
    assert summary["store"] == "file"
    assert_clean_deploy(summary)
    # Real Chromium tabs on the app's page (rollway.js), five to a browser, both Envoys:
    # each reloaded exactly once and ended on v2; the "navigation" half only when navigating.
    tabs = summary["tabs"]
    assert tabs["tabs"] == 20 and tabs["final_versions"] == {"v2": 20}, tabs
    assert tabs["reloads_per_tab_min"] == tabs["reloads_per_tab_max"] == 1, tabs
    assert tabs["reloads_before_navigation"] == 0 and tabs["bounces"] == 0, tabs
    assert tabs["api_errors"] == 0 and tabs["api_lost"] <= tabs["reloads"], tabs   # a call cut by a reload
    assert tabs["api_calls"] > 20 * 10, tabs


def test_demo_runs_the_same_against_a_real_zookeeper(zookeeper):
    summary = run_demo("--duration", "25", "--json", "--sessions", "20", "--zk", zookeeper.hosts)
    assert summary["store"] == "zookeeper"
    assert_clean_deploy(summary)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_ctrl_c_stops_everything_the_demo_started():
    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "demo", "--duration", "120",
                             "--http-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def envoys_routing():
            try:
                state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2).read())
            except OSError:
                return False
            return [s["service"] for s in state["services"]] == ["api", "web"] and \
                all(len(s["envoys"]) == 2 for s in state["services"])
        wait_until(envoys_routing, timeout=60, what="the demo's two Envoys")
        envoys = _children(demo.pid)
        assert len(envoys) == 2           # one pair of Envoys fronts both apps
        workdir = next(arg for arg in Path(f"/proc/{envoys[0]}/cmdline").read_text().split("\0")
                       if "rollway-demo-" in arg)
        workdir = Path(workdir).parent
        assert workdir.is_dir()
        time.sleep(2)
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
        assert demo.returncode == 130, err
        assert "interrupted" in err
        assert not any(_alive(pid) for pid in envoys)
        assert not workdir.exists()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            raise AssertionError("the dashboard still answers")
        except OSError:
            pass
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
