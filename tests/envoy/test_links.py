"""The links between hosts: TLS and mTLS for xDS and the operator API, the listener and
module an ADS-fed Envoy gets, and every unauthenticated input bounded.

Real parts: a control plane with its xDS server and operator API, stock Envoys fed over
ADS, certificates made by openssl, ``rollway`` CLI processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from rollway.api.operator import MAX_SAMPLE, serve_operator_api
from rollway.envoy import bootstrap as ec
from rollway.envoy.edge import EdgeOptionError, EdgeOptions
from rollway.envoy.process import admin_counters
from rollway.model.routemap import RouteMapError, parse_routemap
from rollway.plane.control_plane import ControlPlane
from rollway.proto import routemap_pb2 as pb
from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.sources.serverset import member_json
from rollway.sources.store import open_store
from rollway.tls import ServerTLS
from rollway.xds.resources import build_resources

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from harness import Replica
from pki import CA

pytestmark = [pytest.mark.envoy]

ROUTEMAP = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]}
TOKEN = "links-operator-token-7c1e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca, rogue = CA(base / "ca"), CA(base / "rogue", "rogue-ca")
    return {"ca": ca, "server": ca.issue("cp", dns=("localhost", "rollway-cp"), ips=("127.0.0.1",)),
            "envoy": ca.issue("envoy-a", client=True), "rogue_envoy": rogue.issue("envoy-r", client=True)}


class Plane(Replica):
    """A control plane (file store) serving xDS and the operator API over TLS."""

    def __init__(self, tmp_path, tls: ServerTLS | None):
        super().__init__(f"file://{tmp_path}/store", token=TOKEN, tls=tls)
        self.backends = Backends(["v1#0"])
        self.plane.push(json.dumps(ROUTEMAP), 0, "alice", "web")
        self.member = self.announce("/discovery/web/prod", member_json(*self.backends.address("v1#0"), "v1"))

    def close(self):
        super().close()
        self.backends.close()


@pytest.fixture
def mtls_plane(tmp_path, pki):
    plane = Plane(tmp_path, ServerTLS.load(pki["server"].cert, pki["server"].key, client_ca=pki["ca"].cert))
    yield plane
    plane.close()


def ads_envoy(tmp_path, plane, node_id, tls, start=True, **options):
    listen, admin = free_port(), free_port()
    bootstrap = ec.ads_bootstrap(xds_host="localhost", xds_port=plane.xds.port, node_id=node_id, listen_port=listen,
                                 admin_port=admin, tls=tls, **options)
    envoy = EnvoyProcess(bootstrap, tmp_path, listen, admin)
    return envoy.start() if start else envoy


def test_mtls_admits_an_envoy_with_a_certificate_and_refuses_others(tmp_path, pki, mtls_plane):
    good = ads_envoy(tmp_path, mtls_plane, "envoy-a",
                     ec.XdsTLS(pki["ca"].cert, pki["envoy"].cert, pki["envoy"].key))
    no_cert = ads_envoy(tmp_path, mtls_plane, "envoy-nocert", ec.XdsTLS(pki["ca"].cert), start=False)
    rogue = ads_envoy(tmp_path, mtls_plane, "envoy-rogue",
                      ec.XdsTLS(pki["ca"].cert, pki["rogue_envoy"].cert, pki["rogue_envoy"].key), start=False)
    try:
        response = good.get("/")
        assert response.status == 200 and response.json["backend"] == "v1#0"
        for envoy in (no_cert, rogue):
            with pytest.raises(RuntimeError, match="did not become ready"):
                envoy.start(timeout=8)
        nodes = {s["node_id"] for s in mtls_plane.xds.xds.cache.envoy_status("web")}
        assert nodes == {"envoy-a"}
    finally:
        for envoy in (good, no_cert, rogue):
            envoy.stop()


def test_an_envoy_that_does_not_trust_the_server_gets_nothing(tmp_path, pki, mtls_plane):
    other_ca = CA(tmp_path / "other", "other-ca")
    envoy = ads_envoy(tmp_path, mtls_plane, "envoy-distrust",
                      ec.XdsTLS(other_ca.cert, pki["envoy"].cert, pki["envoy"].key), start=False)
    try:
        envoy.start(wait_ready=False)
        wait_for(lambda: admin_counters("127.0.0.1", envoy.admin_port, "cluster.rollway_xds.ssl.").get(
            "cluster.rollway_xds.ssl.fail_verify_error", 0) > 0, timeout=20, what="the server's certificate refused")
        assert envoy.admin("/ready")[0] != 200
        assert mtls_plane.xds.xds.cache.envoy_status("web") == []
    finally:
        envoy.stop()


def rollway_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_the_cli_over_tls_needs_the_ca(pki, mtls_plane, tmp_path):
    server = f"localhost:{mtls_plane.api.rollway_port}"
    without = rollway_cli("routemap", "get", "web", "--server", server)
    assert without.returncode != 0 and "UNAVAILABLE" in without.stderr
    with_ca = rollway_cli("routemap", "get", "web", "--server", server, "--tls-ca", pki["ca"].cert, "--json")
    assert with_ca.returncode == 0, with_ca.stderr
    assert json.loads(with_ca.stdout)["service"] == "web"
    by_address = rollway_cli("routemap", "get", "web", "--server", f"127.0.0.1:{mtls_plane.api.rollway_port}",
                             "--tls-ca", pki["ca"].cert, "--tls-server-name", "rollway-cp", "--json")
    assert by_address.returncode == 0, by_address.stderr
    missing = rollway_cli("routemap", "get", "web", "--server", server, "--tls-ca", str(tmp_path / "nope.pem"))
    assert missing.returncode == 1 and "--tls-ca" in missing.stderr and "nope.pem" in missing.stderr


def test_validate_refuses_a_huge_or_negative_sample_naming_the_field(tmp_path):
    plane = Plane(tmp_path, None)
    try:
        stub = pb_grpc.RouteMapServiceStub(grpc.insecure_channel(f"127.0.0.1:{plane.api.rollway_port}"))
        for size in (MAX_SAMPLE + 1, 2**31 - 1, -1):
            with pytest.raises(grpc.RpcError) as error:
                stub.Validate(pb.ValidateRequest(document=json.dumps(ROUTEMAP), sample_size=size), timeout=10)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "sample_size" in error.value.details()
        ok = stub.Validate(pb.ValidateRequest(document=json.dumps(ROUTEMAP), sample_size=1000), timeout=30)
        assert ok.sample_size == 1000
        # A request larger than the API reads at all is refused by gRPC itself.
        with pytest.raises(grpc.RpcError) as error:
            stub.Validate(pb.ValidateRequest(document="x" * (2 << 20)), timeout=10)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        plane.close()


def test_route_maps_are_bounded_in_size_stages_and_aliases():
    with pytest.raises(RouteMapError, match="document: .* bytes"):
        parse_routemap(json.dumps({**ROUTEMAP, "pad": "x" * 70000}))
    many = {"service": "web", "stages": [{"name": f"s{i}", "weight": 1, "mode": "rolling",
                                          "serverset": f"/d/{i}"} for i in range(33)]}
    with pytest.raises(RouteMapError, match="stages: 33 stages"):
        parse_routemap(json.dumps(many))
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nservice: web\n"
    with pytest.raises(RouteMapError, match="aliases"):
        parse_routemap(bomb)


def test_the_token_and_the_key_never_appear_in_the_servers_log(tmp_path, pki):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    api_port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store",
                                 f"file://{tmp_path}/store", "--api-port", str(api_port), "--xds-port", "0",
                                 "--http-port", "0", "--token-file", str(token_file), "--tls-cert",
                                 pki["server"].cert, "--tls-key", pki["server"].key], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        server = ["--server", f"localhost:{api_port}", "--tls-ca", pki["ca"].cert]
        doc = tmp_path / "web.json"
        doc.write_text(json.dumps(ROUTEMAP))
        wait_for(lambda: "NOT_FOUND" in rollway_cli("routemap", "get", "web", *server).stderr, timeout=30,
                 what="rollway serve to answer over TLS")
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token-" + TOKEN[::-1])
        refused = rollway_cli("routemap", "push", str(doc), "--expected-revision", "0", "--token-file", str(wrong),
                              *server)
        assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr
        assert TOKEN[::-1] not in refused.stderr
        pushed = rollway_cli("routemap", "push", str(doc), "--expected-revision", "0", "--token-file",
                             str(token_file), *server)
        assert pushed.returncode == 0, pushed.stderr
    finally:
        proc.terminate()
        proc.wait(15)
    text = log_path.read_text()
    assert "operator API listening" in text and "(TLS;" in text
    key_body = "".join(line for line in Path(pki["server"].key).read_text().splitlines() if "-----" not in line)
    for secret in (TOKEN, TOKEN[::-1], key_body[:40]):
        assert secret not in text


def test_an_operator_api_off_loopback_without_tls_logs_a_warning(tmp_path, caplog):
    store = open_store(f"file://{tmp_path}/store")
    store.start()
    plane = ControlPlane(store, debounce=0.02)
    try:
        server = serve_operator_api(plane, port=0, token=TOKEN, host="0.0.0.0")
        server.stop(0)
    finally:
        store.stop()
    assert any("without TLS" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_the_control_plane_names_the_module_and_builds_the_listener_the_envoy_asked_for():
    from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
    from envoy_data_plane.envoy.config.listener.v3 import Listener

    from rollway.model.filter_config import FilterConfig
    from rollway.xds.resources import ListenerSpec

    example = Path(__file__).parents[2] / "envoy-config" / "filter-config.example.json"
    edge = EdgeOptions.parse({"xff_num_trusted_hops": 2})
    resources = build_resources(FilterConfig.from_json(json.loads(example.read_text())), {}, ListenerSpec(8080, "10.1.2.3", edge))

    ecds = TypedExtensionConfig().parse(resources.by_type["type.googleapis.com/envoy.config.core.v3."
                                                          "TypedExtensionConfig"]["rollway"]).to_dict()
    module = ecds["typedConfig"]["dynamicModuleConfig"]
    assert module["name"] == "rollway_filter" and "module" not in module    # resolved on the Envoy's host
    listener = Listener().parse(resources.by_type["type.googleapis.com/envoy.config.listener.v3.Listener"]
                                ["rollway_ingress"]).to_dict()
    assert listener["address"]["socketAddress"] == {"address": "10.1.2.3", "portValue": 8080}
    assert listener["perConnectionBufferLimitBytes"] == 32768
    manager = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert manager["useRemoteAddress"] is True and manager["xffNumTrustedHops"] == 2


def test_edge_options_name_what_is_wrong():
    assert EdgeOptions.parse({"use_remote_address": "false"}).use_remote_address is False
    for bad, name in [({"nosuch": 1}, "nosuch"), ({"max_concurrent_streams": "0"}, "max_concurrent_streams"),
                      ({"headers_with_underscores_action": "MAYBE"}, "headers_with_underscores_action"),
                      ({"xff_num_trusted_hops": "1.5"}, "xff_num_trusted_hops")]:
        with pytest.raises(EdgeOptionError, match=name):
            EdgeOptions.parse(bad)
    result = rollway_cli("envoy-config", "--ads", "--xds", "127.0.0.1:18000", "--edge", "nosuch=1")
    assert result.returncode != 0 and "nosuch" in result.stderr


def test_an_envoy_asking_for_a_bad_listener_is_refused_and_the_rest_are_served(tmp_path):
    plane = Plane(tmp_path, None)
    good = bad = None
    try:
        good = ads_envoy(tmp_path, plane, "envoy-good", None, edge=EdgeOptions.parse({"xff_num_trusted_hops": 1}))
        listen, admin = free_port(), free_port()
        bootstrap = ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=plane.xds.port, node_id="envoy-bad",
                                     listen_port=listen, admin_port=admin)
        bootstrap["node"]["metadata"]["listen_address"] = "not-an-address"
        bad = EnvoyProcess(bootstrap, tmp_path, listen, admin)
        with pytest.raises(RuntimeError, match="did not become ready"):
            bad.start(timeout=5)
        assert good.get("/").status == 200
        assert {s["node_id"] for s in plane.xds.xds.cache.envoy_status("web")} == {"envoy-good"}
    finally:
        for envoy in (good, bad):
            if envoy is not None:
                envoy.stop()
        plane.close()


def test_serve_refuses_a_key_that_does_not_match_its_certificate(tmp_path, pki):
    result = rollway_cli("serve", "--store", f"file://{tmp_path}/store", "--tls-cert", pki["server"].cert,
                         "--tls-key", pki["envoy"].key, "--api-port", "0", "--xds-port", "0", "--http-port", "0")
    assert result.returncode == 1 and "--tls-key" in result.stderr
