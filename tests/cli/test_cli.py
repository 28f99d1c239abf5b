"""The `rollway route` command routes sessions with the installed core."""

import json
import pathlib
import subprocess
import sys

import pytest

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

EXAMPLE = pathlib.Path(__file__).parents[2] / "envoy-config" / "filter-config.example.json"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_route_reports_shares_close_to_the_config():
    out = run("route", "--config", str(EXAMPLE), "--sessions", "40000", "--now", "1750000000", "--json")
    assert out.returncode == 0, out.stderr
    shares = {(s["stage"], s["version"]): s["share"] for s in json.loads(out.stdout)["shares"]}
    assert abs(shares[("prod", "v1")] - 0.995 * 0.9) < 0.01
    assert abs(shares[("prod", "v2")] - 0.995 * 0.1) < 0.01
    assert abs(shares[("canary", "v1")] - 0.005) < 0.003
    assert ("legacy", "v0") not in shares


def test_route_given_ids_is_deterministic():
    rid = "1" + f"{1_750_000_000 - 60:08x}" + "0123456789abcdef"  # issued a minute ago
    first = json.loads(run("route", "--config", str(EXAMPLE), "--id", rid, "--now", "1750000000", "--json").stdout)
    again = json.loads(run("route", "--config", str(EXAMPLE), "--id", rid, "--now", "1750000100", "--json").stdout)
    assert first["decisions"][0]["version"] == again["decisions"][0]["version"]
    assert first["decisions"][0]["minted"] is False


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"service": "web", "generation": 1, "stages": [
        {"name": "prod", "weight": -1, "mode": "rolling", "versions": []}]}))
    out = run("route", "--config", str(bad))
    assert out.returncode == 1   # the command ran and could not: a runtime error
    assert "stages[0].weight: must be a number >= 0" in out.stderr
    missing = run("route", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "cannot read config" in missing.stderr
    assert "Traceback" not in out.stderr + missing.stderr


def test_exit_codes_usage_is_2_runtime_is_1_and_version_is_0():
    usage = run("route")                                   # argparse: --config is required
    assert usage.returncode == 2 and "usage:" in usage.stderr
    combo = run("envoy-config", "--static")                # options that do not fit together
    assert combo.returncode == 2 and "--static needs --filter-config FILE" in combo.stderr
    version = run("--version")
    assert version.returncode == 0
    import rollway

    assert version.stdout.strip() == f"rollway {rollway.__version__} (Envoy 1.40.0, dynamic-module ABI v0.2.0)"


def test_a_closed_pipe_ends_the_command_quietly():
    """`rollway client-js | head -0`: the reader is gone before the first write; the command
    ends with exit 0 and no traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)                                     # like head exiting at once
    try:
        done = subprocess.run([sys.executable, "-m", "rollway.cli.main", "client-js"], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 0 and b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr


@pytest.mark.envoy
def test_envoy_config_static_is_a_bootstrap_envoy_accepts(tmp_path):
    from envoy_harness import ENVOY_BINARY

    clusters = ["web.canary.v1=127.0.0.1:8001", "web.prod.v1=127.0.0.1:8002", "web.prod.v2=127.0.0.1:8003",
                "web.legacy.blue=127.0.0.1:8004", "web.legacy.green=127.0.0.1:8005"]
    out = run("envoy-config", "--static", "--filter-config", str(EXAMPLE), *[a for c in clusters for a in ("--cluster", c)])
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    module = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"][0]["typed_config"]["dynamic_module_config"]
    assert pathlib.Path(module["module"]["local"]["filename"]).is_file()
    path = tmp_path / "bootstrap.json"
    path.write_text(out.stdout)
    check = subprocess.run([ENVOY_BINARY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_envoy_config_names_missing_clusters_and_bad_endpoints():
    out = run("envoy-config", "--static", "--filter-config", str(EXAMPLE), "--cluster", "web.prod.v1=127.0.0.1:1")
    assert out.returncode == 2 and "no --cluster given for web.canary.v1" in out.stderr
    bad = run("envoy-config", "--static", "--filter-config", str(EXAMPLE), "--cluster", "x=nohostport")
    assert bad.returncode == 2 and "bad endpoint" in bad.stderr


@pytest.mark.envoy
def test_envoy_config_ads(tmp_path):
    from envoy_harness import ENVOY_BINARY

    out = run("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--xds", "cp-b.example:18000",
              "--node-id", "edge-1")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["node"]["id"] == "edge-1"
    xds = doc["static_resources"]["clusters"][0]
    # The preferred replica first, the other as a health-checked fallback, resolved by name.
    assert xds["type"] == "STRICT_DNS" and xds["health_checks"]
    assert [(e["priority"], [x["endpoint"]["address"]["socket_address"]["address"] for x in e["lb_endpoints"]])
            for e in xds["load_assignment"]["endpoints"]] == [(0, ["127.0.0.1"]), (1, ["cp-b.example"])]
    assert doc["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    path = tmp_path / "ads.json"
    path.write_text(out.stdout)
    check = subprocess.run([ENVOY_BINARY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    # Several services, and routes of the Envoy's own: both go to the control plane in the
    # node metadata; the own routes' cluster is static in the bootstrap.
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"routes": {"www.example.test": [
        {"match": {"path": "/healthz"}, "route": {"cluster": "static_origin"}}]}}))
    many = run("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--service", "web", "--service", "api",
               "--extra-routes", str(own), "--cluster", "static_origin=127.0.0.1:9000")
    assert many.returncode == 0, many.stderr
    doc = json.loads(many.stdout)
    assert doc["node"]["metadata"]["services"] == ["web", "api"] and doc["node"]["cluster"] == "rollway-edge"
    assert json.loads(doc["node"]["metadata"]["own_routes"])["routes"]["www.example.test"][0]["match"] == \
        {"path": "/healthz"}
    assert [c["name"] for c in doc["static_resources"]["clusters"]] == ["rollway_xds", "static_origin"]
    path.write_text(many.stdout)
    check = subprocess.run([ENVOY_BINARY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    bad = run("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--service", "bad\tname")
    assert bad.returncode == 2 and "--service" in bad.stderr
