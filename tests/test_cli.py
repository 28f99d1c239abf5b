"""The `rollway route` command routes sessions with the installed core."""

import json
import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).parent.parent / "envoy-config" / "filter-config.example.json"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollway.cli", *args], capture_output=True, text=True,
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
    assert out.returncode == 2
    assert "stages[0].weight: must be a number >= 0" in out.stderr
    missing = run("route", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode != 0 and "cannot read config" in missing.stderr
