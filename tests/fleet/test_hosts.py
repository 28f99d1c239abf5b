"""An ADS-fed Envoy on one host, its control plane and app on another, a client on a third:
the request reaches the Envoy at its own (non-loopback) address and is routed.

Before, the listener the control plane sent always bound 127.0.0.1 and the filter config
named the module by the control plane's own install path, so no other host could use it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
import pytest
from netns import Network

pytestmark = [pytest.mark.fleet]

HERE = Path(__file__).parent
PY = sys.executable
ROLLWAY = [PY, "-m", "rollway.cli.main"]


def test_an_ads_fed_envoy_on_its_own_host_routes_requests_from_another(tmp_path):
    net = Network(["cp", "edge", "client"], tag=f"rwh{__import__('os').getpid() % 100000}")
    try:
        store = f"file://{tmp_path}/store"       # the embedded store: a directory every host here sees
        token = tmp_path / "token"
        token.write_text("hosts-token\n")
        net.spawn("cp", [*ROLLWAY, "serve", "--store", store, "--api-host", "0.0.0.0", "--xds-host", "0.0.0.0",
                         "--http-port", "0", "--token-file", str(token), "--debounce", "0.05"], tmp_path / "cp.log")
        net.spawn("cp", [PY, str(HERE / "app.py"), "--version", "v1", "--host", "cp"], tmp_path / "app.log")
        net.spawn("cp", [*ROLLWAY, "serverset", "announce", "--store", store, "--path", "/discovery/web/prod",
                         "--host", net.address["cp"], "--port", "8080", "--version", "v1"], tmp_path / "announce.log")
        doc = tmp_path / "web.json"
        doc.write_text(json.dumps({"service": "web", "stages": [
            {"name": "prod", "weight": 100, "mode": "rolling", "serverset": "/discovery/web/prod"}]}))
        probe = [PY, str(HERE / "probe.py")]
        assert net.run("client", [*probe, "http", "http://cp:8080/", "--timeout", "30"]).returncode == 0
        pushed = None
        for _ in range(60):
            pushed = net.run("client", [*ROLLWAY, "routemap", "push", str(doc), "--expected-revision", "0",
                                        "--token-file", str(token), "--server", "cp:7700"])
            if pushed.returncode == 0:
                break
            __import__("time").sleep(0.5)
        assert pushed.returncode == 0, pushed.stderr
        bootstrap = net.run("edge", [*ROLLWAY, "envoy-config", "--ads", "--xds", "cp:18000", "--node-id", "edge-1",
                                     "--listen", "0.0.0.0:10000"])
        assert bootstrap.returncode == 0, bootstrap.stderr
        assert "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" in bootstrap.stderr      # how to resolve the module
        config = tmp_path / "edge.json"
        config.write_text(bootstrap.stdout)
        net.spawn("edge", [*ROLLWAY, "envoy-run", "--", "-c", str(config), "-l", "warning"], tmp_path / "edge.log")
        ready = net.run("client", [*probe, "http", "http://edge:10000/api", "--timeout", "60"], timeout=90)
        assert ready.returncode == 0, (ready.stderr, (tmp_path / "edge.log").read_text()[-2000:])
        answer = net.run("client", [PY, "-c", "import urllib.request, json; "
                                    "r = urllib.request.urlopen('http://edge:10000/api', timeout=5); "
                                    "print(json.dumps({'status': r.status, 'body': json.loads(r.read()), "
                                    "'cookies': r.headers.get_all('set-cookie')}))"])
        result = json.loads(answer.stdout)
        assert result["status"] == 200 and result["body"] == {"version": "v1", "host": "cp"}
        assert any(c.startswith("rw_rid=") for c in result["cookies"])
        net.stop_all()
        assert net.running() == {}
    finally:
        net.close()
