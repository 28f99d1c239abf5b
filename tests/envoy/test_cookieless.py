"""Clients without cookies (issue 29) through a stock Envoy: a mobile app or API client that
keeps no cookies names its device in ``x-device-id`` (the route map's
``routing_id: {header: x-device-id}``), sends its build in ``x-app-version`` and reloads when
told by ``x-rw-refresh``, like a page. Its key is hashed with the service's secret: a client
cannot pick its version by choosing keys."""

from __future__ import annotations

import http.client
import json
import math
import uuid

import pytest

from rollway import Router
from rollway.envoy import bootstrap as ec
from rollway.sources.serverset import member_json
from rollway.tools.session import BrowserSession

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from harness import Replica, fleet_holds

pytestmark = [pytest.mark.envoy]
HOSTS = 4
CLIENTS = 200
SECRET = "a-service-secret-of-enough-length"
ROUTEMAP = {"service": "web", "routing_id": {"signing_key_id": "k1", "header": "x-device-id"},
            "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"}]}


class DeviceClient(BrowserSession):
    """A client that keeps no cookies: it sends its device id and its build, and counts any
    cookie it is given (none should be)."""

    def __init__(self, device_id: str | None = None):
        super().__init__()
        self.device_id = device_id or uuid.uuid4().hex
        self.cookies_offered = 0

    def headers(self) -> dict[str, str]:
        out = {"x-device-id": self.device_id}
        if self.app_version:
            out["x-app-version"] = self.app_version
        return out

    def take_cookies(self, headers) -> None:
        self.cookies_offered += sum(1 for key, _ in headers if key.lower() == "set-cookie")


class Edge:
    def __init__(self, tmp_path):
        secrets = tmp_path / "secrets.json"
        secrets.write_text(json.dumps({"k1": SECRET}))
        self.replica = Replica(f"file://{tmp_path}/store", secrets_file=str(secrets))
        self.plane = self.replica.plane
        self.plane.push(json.dumps(ROUTEMAP), 0, "alice", "cookie-less clients")
        self.backends = Backends([f"{v}#{i}" for v in ("v1", "v2") for i in range(HOSTS)])
        self.members: dict[str, object] = {}
        listen, admin = free_port(), free_port()
        self.envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=self.replica.xds.port,
                                                   node_id="edge-1", listen_port=listen, admin_port=admin),
                                  tmp_path, listen, admin)
        self.started = False

    def start(self) -> None:
        self.envoy.start()
        self.started = True

    def set_hosts(self, counts: dict[str, int]) -> None:
        for version in ("v1", "v2"):
            for i in range(HOSTS):
                key = f"{version}#{i}"
                if i < counts.get(version, 0) and key not in self.members:
                    self.members[key] = self.replica.announce("/d/prod", member_json(*self.backends.address(key),
                                                                                     version))
                elif i >= counts.get(version, 0) and key in self.members:
                    self.members.pop(key).close()
        want = {v: float(n) for v, n in counts.items() if n}
        wait_for(lambda: self.serves(want), timeout=30, what=f"{want} in the Envoy's config")

    def serves(self, want: dict[str, float]) -> bool:
        return fleet_holds(self.plane, "web", want, envoys=1 if self.started else None)

    def visit(self, client: DeviceClient) -> str | None:
        response = self.envoy.get("/", client.headers())
        backend = response.json["backend"].split("#")[0] if response.status == 200 else None
        client.answered(response.status, response.headers, backend)
        return backend

    def close(self) -> None:
        self.envoy.stop()
        for member in self.members.values():
            member.close()
        self.replica.close()
        self.backends.close()


@pytest.fixture
def edge(tmp_path):
    made = Edge(tmp_path)
    yield made
    made.close()


def test_cookie_less_clients_move_once_through_a_rolling_deploy_and_are_told_to_refresh_once(edge):
    edge.set_hosts({"v1": HOSTS})
    edge.start()
    clients = [DeviceClient() for _ in range(CLIENTS)]
    for step in range(HOSTS + 1):
        edge.set_hosts({"v1": HOSTS - step, "v2": step})
        for _ in range(2):
            for client in clients:
                edge.visit(client)
    assert sum(c.errors for c in clients) == 0
    assert sum(c.cookies_offered for c in clients) == 0, "a cookie was set for a client keyed by its header"
    assert sum(c.bounces for c in clients) == 0, "a client went back to a version it had left"
    assert all(c.last == "v2" and c.moves == 1 for c in clients)
    assert all(c.refreshes == 1 for c in clients), "each client is told to reload exactly once"
    stats = edge.envoy.stats()
    keyed = sum(v for k, v in stats.items() if k.endswith("keyed_by_header"))
    assert keyed == CLIENTS * (HOSTS + 1) * 2 and sum(v for k, v in stats.items() if k.endswith("ids_minted")) == 0


def chi_square(observed: dict[str, int], expected_share: dict[str, float]) -> float:
    total = sum(observed.values())
    return sum((observed.get(v, 0) - total * p) ** 2 / (total * p) for v, p in expected_share.items())


def test_a_client_choosing_its_keys_gets_its_version_no_more_often_than_capacity_gives(edge):
    """10,000 keys picked, without the secret, as the ones that would land on v2 (a quarter of
    the capacity) if keys were hashed as they come: through Envoy they land by capacity. The
    chi-square statistic against the capacity shares, one degree of freedom, stays below
    15.14 (p = 0.0001): a client that could steer would be thousands above it."""
    edge.set_hosts({"v1": 3, "v2": 1})
    edge.start()
    config = edge.plane.filter_config("web")
    unkeyed = Router(config.without_secrets().to_text())
    keys, candidate = [], 0
    while len(keys) < 10_000:
        batch = [f"{candidate + i:016x}" for i in range(4096)]
        candidate += 4096
        ids = [f"1{0x60000000:08x}{key}" for key in batch]
        routed = unkeyed.route_many(ids, now=float(0x60000000)).version
        keys += [key for key, version in zip(batch, routed, strict=True) if version == "v2"]
    keys = keys[:10_000]
    served: dict[str, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", edge.envoy.listen_port, timeout=10)   # one client, kept alive
    try:
        for key in keys:
            conn.request("GET", "/", headers={"x-device-id": key})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and response.getheader("set-cookie") is None
            version = json.loads(body)["backend"].split("#")[0]
            served[version] = served.get(version, 0) + 1
    finally:
        conn.close()
    statistic = chi_square(served, {"v1": 0.75, "v2": 0.25})
    assert statistic < 15.14, (served, statistic)
    assert not math.isclose(served.get("v2", 0), 10_000), "the keys chose their version"


def test_a_malformed_or_oversized_key_is_treated_as_absent(edge):
    edge.set_hosts({"v1": HOSTS})
    edge.start()
    for bad in ("x" * 129, "has space", "\u00e9t\u00e9"):
        response = edge.envoy.get("/", {"x-device-id": bad.encode("utf-8").decode("latin-1")})
        assert response.status == 200
        assert "rw_rid" in response.set_cookies(), f"{bad[:20]!r}: a key treated as absent mints a cookie"
    good = edge.envoy.get("/", {"x-device-id": "d" * 128})
    assert good.status == 200 and good.set_cookies() == {}
    # A valid routing-id cookie wins over the header: a browser keeps its session.
    cookie = edge.envoy.get("/", {}).set_cookies()["rw_rid"]
    kept = edge.envoy.get("/", {"cookie": f"rw_rid={cookie}", "x-device-id": "d" * 128})
    assert "rw_rid" not in kept.set_cookies()
