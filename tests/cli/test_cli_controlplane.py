"""The control-plane CLI end to end: `rollway serve` and `rollway serverset announce` as
real processes, driven by the client commands, over both stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from conftest import wait_for
from envoy_harness import free_port
from examples import ROUTEMAP

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

TOKEN = "cli-operator-token"


def rollway(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def background(*args):
    return subprocess.Popen([sys.executable, "-m", "rollway.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop(proc) -> int:
    """Stops a background command; returns its exit code (output kept on proc.output)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.output, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode


@pytest.fixture
def server(store_url, tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    port = free_port()
    proc = background("serve", "--store", store_url, "--api-port", str(port), "--xds-port", "0", "--token-file", str(token),
                      "--debounce", "0.02", "--http-port", "0")
    addr = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: rollway("routemap", "history", "nosuch", "--server", addr).stderr.startswith(
            "rollway: NOT_FOUND"), timeout=30, what="rollway serve to answer")
        yield addr, store_url, token
    finally:
        assert stop(proc) == 0, proc.output


def test_push_status_history_rollback_diff_from_the_command_line(server, tmp_path):
    addr, store_url, token = server
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(ROUTEMAP))
    assert rollway("routemap", "validate", str(path), "--local").returncode == 0

    refused = rollway("routemap", "push", str(path), "--expected-revision", "0", "--server", addr,
                      env={k: v for k, v in os.environ.items() if k != "ROLLWAY_TOKEN"})
    assert refused.returncode == 2 and "operator token" in refused.stderr
    wrong = rollway("routemap", "push", str(path), "--expected-revision", "0", "--server", addr,
                    env={**os.environ, "ROLLWAY_TOKEN": "nope"})
    assert wrong.returncode == 1 and "PERMISSION_DENIED" in wrong.stderr   # asked rightly, refused

    pushed = rollway("routemap", "push", str(path), "--expected-revision", "0", "--server", addr,
                     "--token-file", str(token), "--author", "alice", "--reason", "first", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["revision"] == 1

    agent = background("serverset", "announce", "--store", store_url, "--path", "/discovery/web/prod",
                       "--host", "127.0.0.1", "--port", "9000", "--version", "v1", "--count", "3")
    try:
        def prod_capacity():
            out = rollway("status", "web", "--server", addr, "--json")
            stages = {s["name"]: s for s in json.loads(out.stdout)["stages"]} if out.returncode == 0 else {}
            return stages.get("prod", {}).get("versions")
        assert wait_for(lambda: prod_capacity() == [{"name": "v1", "capacity": 3.0, "members": 3, "halted": None}],
                        what="3 members through status")
        human = rollway("status", "web", "--server", addr)
        assert "prod" in human.stdout and "v1" in human.stdout
        # --watch --json is JSON Lines: one compact document per line, as the status changes.
        watch = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "status", "web", "--server", addr,
                                  "--watch", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stdout is not None
            first = json.loads(watch.stdout.readline())
            assert {s["name"] for s in first["stages"]} >= {"prod"}
        finally:
            watch.terminate()
            watch.communicate(timeout=15)
    finally:
        assert stop(agent) == 0

    ramp = json.loads(json.dumps(ROUTEMAP))
    ramp["stages"][0]["weight"] = 20
    path2 = tmp_path / "ramp.yaml"
    path2.write_text(yaml.safe_dump(ramp))
    dry = rollway("routemap", "validate", str(path2), "--server", addr, "--json")
    assert dry.returncode == 0, dry.stderr
    assert {s["stage"] for s in json.loads(dry.stdout)["stages"]} == {"canary", "prod"}
    diff = rollway("routemap", "diff", str(path2), "--server", addr)
    assert "-  weight: 1.0" in diff.stdout and "+  weight: 20.0" in diff.stdout
    assert rollway("routemap", "push", str(path2), "--expected-revision", "1", "--server", addr,
                   "--token-file", str(token)).returncode == 0
    stale = rollway("routemap", "push", str(path2), "--expected-revision", "1", "--server", addr,
                    "--token-file", str(token))
    assert stale.returncode == 1 and "ABORTED" in stale.stderr and "at revision 2, not 1" in stale.stderr

    back = rollway("routemap", "rollback", "web", "--to", "1", "--expected-revision", "2", "--server", addr,
                   "--token-file", str(token), "--json")
    assert back.returncode == 0 and json.loads(back.stdout)["revision"] == 3
    history = json.loads(rollway("routemap", "history", "web", "--server", addr, "--json").stdout)
    assert [(h["revision"], h["author"]) for h in history][0] == (1, "alice")
    assert [h["revision"] for h in history] == [1, 2, 3]
    current = json.loads(rollway("routemap", "get", "web", "--server", addr, "--json").stdout)
    assert current["document"]["stages"][0]["weight"] == 1


def test_deploy_halt_stops_the_deploy_tool_and_resume_lets_it_go_on(server, tmp_path):
    """``rollway deploy halt|resume`` need the token; while a version is halted ``deploy
    wait`` exits 1 naming it (``--allow-halted``: the tool carrying out the rollback goes on),
    and ``status --json`` shows a ``halted`` object on that version in every stage."""
    addr, store_url, token = server
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(ROUTEMAP))
    assert rollway("routemap", "push", str(path), "--expected-revision", "0", "--server", addr,
                   "--token-file", str(token)).returncode == 0
    agents = [background("serverset", "announce", "--store", store_url, "--path", f"/discovery/web/{stage}",
                         "--host", "127.0.0.1", "--port", str(port), "--version", version, "--count", "2")
              for stage, port, version in (("prod", 9000, "v1"), ("prod", 9100, "v2"), ("canary", 9200, "v2"))]
    try:
        def versions():
            out = rollway("status", "web", "--server", addr, "--json")
            doc = json.loads(out.stdout) if out.returncode == 0 else {"stages": []}
            return {(s["name"], v["name"]): v["halted"] for s in doc["stages"] for v in s["versions"]}
        wait_for(lambda: len(versions()) == 3, what="both stages through status")
        assert rollway("deploy", "wait", "web", "--server", addr, "--timeout", "30").returncode == 0

        refused = rollway("deploy", "halt", "web", "--version", "v2", "--server", addr,
                          env={k: v for k, v in os.environ.items() if k != "ROLLWAY_TOKEN"})
        assert refused.returncode == 2 and "operator token" in refused.stderr
        halted = rollway("deploy", "halt", "web", "--version", "v2", "--rollback", "--reason", "errors on /cart",
                         "--author", "carol", "--server", addr, "--token-file", str(token), "--json")
        assert halted.returncode == 0, halted.stderr
        assert [h["version"] for h in json.loads(halted.stdout)["halts"]] == ["v2"]
        wait_for(lambda: all(versions()[(s, "v2")] for s in ("prod", "canary")), what="v2 halted in both stages")
        assert versions()[("prod", "v2")]["reason"] == "errors on /cart" and versions()[("prod", "v1")] is None
        assert versions()[("prod", "v2")]["error_ratio"] is None          # an operator's: no figures
        waited = rollway("deploy", "wait", "web", "--server", addr, "--timeout", "30")
        assert waited.returncode == 1 and "version v2 is halted and rolled back by carol: errors on /cart" \
            in waited.stderr, waited
        assert rollway("deploy", "wait", "web", "--server", addr, "--timeout", "30",
                       "--allow-halted").returncode == 0
        assert "HALTED (rolled back)" in rollway("status", "web", "--server", addr).stdout

        resumed = rollway("deploy", "resume", "web", "--version", "v2", "--server", addr, "--token-file", str(token))
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: not any(versions().values()), what="the halt lifted")
        assert rollway("deploy", "wait", "web", "--server", addr, "--timeout", "30").returncode == 0
        again = rollway("deploy", "resume", "web", "--version", "v2", "--server", addr, "--token-file", str(token))
        assert again.returncode == 1 and "NOT_FOUND" in again.stderr and "not halted" in again.stderr
    finally:
        for agent in agents:
            assert stop(agent) == 0


def test_a_bad_route_map_file_names_the_field(tmp_path):
    bad = json.loads(json.dumps(ROUTEMAP))
    bad["stages"][0]["mode"] = "sideways"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = rollway("routemap", "validate", str(path), "--local")
    assert out.returncode == 1 and "stages[0].mode: must be rolling or blue_green" in out.stderr


@pytest.mark.parametrize("fmt,version_from,where", [
    ("party", None, "/discovery/api/prod/v4"),
    ("curator", "payload:build", "/discovery/api/prod"),
    ("finagle", "path", "/discovery/api/prod/v4"),
])
def test_serverset_announce_writes_each_format_and_show_reads_it_back(store_url, fmt, version_from, where):
    flags = ["--path", "/discovery/api/prod", "--format", fmt] + (["--version-from", version_from] if version_from else [])
    agent = background("serverset", "announce", "--store", store_url, *flags, "--host", "127.0.0.1",
                       "--port", "9100", "--version", "v4", "--count", "2")
    try:
        assert agent.stdout is not None
        assert f"at {where}" in agent.stdout.readline()

        def shown():
            out = rollway("serverset", "show", "--store", store_url, *flags, "--json")
            return json.loads(out.stdout) if out.returncode == 0 else None
        doc = wait_for(lambda: (d := shown()) and d["alive"] == 2 and d, what="both members through show")
        assert doc["capacity"] == {"v4": 2.0} and doc["skipped"] == 0
        assert sorted(m["port"] for m in doc["members"]) == [9100, 9101]
        human = rollway("serverset", "show", "--store", store_url, *flags)
        assert "2 ALIVE member(s), 0 skipped" in human.stdout and "capacity of v4: 2" in human.stdout
    finally:
        assert stop(agent) == 0


def test_serverset_flags_that_cannot_go_together_are_refused_before_anything_is_written(tmp_path):
    refused = rollway("serverset", "announce", "--store", f"file://{tmp_path}/s", "--path", "/d", "--format", "party",
                      "--version-from", "metadata:version", "--host", "127.0.0.1", "--port", "1", "--version", "v1")
    assert refused.returncode == 2 and "--version-from" in refused.stderr and "party" in refused.stderr
    assert not (tmp_path / "s" / "d").exists()
