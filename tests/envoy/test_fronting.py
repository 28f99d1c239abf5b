"""One Envoy fronting several services over ADS (issue 27): the control plane builds its
listener, route table, clusters, endpoints and filter config from the services listed in
its node metadata (``rollway envoy-config --ads --service web --service api ...``).

Real parts: a control-plane replica on the embedded store, the real Envoy 1.40 binary
fed over ADS, HTTP backends on loopback announced in serversets, deploys made by changing
the serversets as a deploy tool does."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from rollway.envoy import bootstrap as ec
from rollway.model.routemap import RouteMapError
from rollway.sources.serverset import member_json

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from examples import EDGE_ROUTEMAPS
from harness import Replica
from host_browser import Browser, get

pytestmark = [pytest.mark.envoy]

ROUTEMAPS = EDGE_ROUTEMAPS
HOSTS = 4
# The operator's own routes beside Rollway's, carried in the Envoy's node metadata
# (``rollway envoy-config --ads --extra-routes FILE --cluster static_origin=...``): a health
# check answered by Envoy and a static origin under /static on www, and a host of its own.
OWN_ROUTES = ec.OwnRoutes.parse({
    "routes": {"www.example.test": [
        {"match": {"path": "/healthz"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
        {"match": {"path_separated_prefix": "/static"}, "route": {"cluster": "static_origin"}}]},
    "virtual_hosts": [{"name": "assets", "domains": ["assets.example.test"],
                       "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "static_origin"}}]}]})
VERSIONS = {"web": ("v1", "v2"), "admin": ("m1", "m2"), "api": ("a1", "a2")}
PATHS = {"web": ("www.example.test", "/"), "admin": ("www.example.test", "/admin/x"),
         "api": ("api.example.test", "/v1/items")}


class Edge:
    """A replica, one Envoy fronting web, admin and api, and HOSTS backends per version."""

    def __init__(self, tmp_path, ack_timeout: float = 30.0, secrets: dict | None = None):
        secrets_file = None
        if secrets is not None:
            secrets_file = tmp_path / "secrets.json"
            secrets_file.write_text(json.dumps(secrets))
        self.replica = Replica(f"file://{tmp_path}/store", dashboard=True, sample_interval=0.3,
                               ack_timeout=ack_timeout, secrets_file=str(secrets_file) if secrets_file else None)
        self.plane, self.cache = self.replica.plane, self.replica.xds.xds.cache
        self.backends = Backends([f"{s}.{v}#{i}" for s, vs in VERSIONS.items() for v in vs for i in range(HOSTS)]
                                 + ["static"])
        self.members: dict[str, object] = {}
        for service, doc in ROUTEMAPS.items():
            self.plane.push(json.dumps(doc), 0, "alice", f"{service} on the edge")
            self.set_hosts(service, 0)
        listen, admin = free_port(), free_port()
        bootstrap = ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=self.replica.xds.port, node_id="edge-1",
                                     listen_port=listen, admin_port=admin, services=list(ROUTEMAPS),
                                     own_routes=OWN_ROUTES, own_clusters={"static_origin": [self.backends.address("static")]})
        self.envoy = EnvoyProcess(bootstrap, tmp_path, listen, admin).start()

    def set_hosts(self, service: str, new_hosts: int) -> None:
        """The deploy tool: hosts 0..new_hosts-1 of ``service`` run its second version."""
        old, new = VERSIONS[service]
        for i in range(HOSTS):
            version, other = (new, old) if i < new_hosts else (old, new)
            key, gone = f"{service}.{version}#{i}", f"{service}.{other}#{i}"
            if key not in self.members:
                self.members[key] = self.replica.announce(f"/d/{service}",
                                                          member_json(*self.backends.address(key), version))
            if gone in self.members:
                self.members.pop(gone).close()

    def settled(self, service: str, new_hosts: int | None = None) -> bool:
        """The Envoy ACKed the service's current config, every version is admitted (and, with
        ``new_hosts``, the config has that many hosts of the new version)."""
        config = self.plane.filter_config(service)
        if config is None or any(True for _ in config.announced()):
            return False
        if new_hosts is not None:
            capacity = {v.name: v.capacity for s in config.rolling_stages() for v in s.versions}
            if capacity.get(VERSIONS[service][1], 0) != new_hosts:
                return False
        envoys = self.plane.fleet_status(service)
        return bool(envoys) and all(e["caught_up"] and not e["stale"] and e["generation"] == config.generation
                                    for e in envoys)

    def visit(self, browsers: dict[str, list[Browser]], seen: dict) -> None:
        for service, group in browsers.items():
            path = PATHS[service][1]
            for i, browser in enumerate(group):
                reply = browser.get(self.envoy, path)
                assert reply.status == 200, (service, reply)
                seen.setdefault((service, i), []).append((reply.backend.split("#")[0], reply.refresh))

    def close(self) -> None:
        self.envoy.stop()
        for member in self.members.values():
            member.close()
        self.replica.close()
        self.backends.close()


@pytest.fixture
def edge(tmp_path):
    e = Edge(tmp_path)
    yield e
    e.close()


def sessions(per_service: int = 12) -> dict[str, list[Browser]]:
    return {s: [Browser(PATHS[s][0]) for _ in range(per_service)] for s in ROUTEMAPS}


def rollway(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "rollway.cli.main", *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_histories(seen: dict, deployed: set[str]) -> None:
    """Each deployed service's sessions moved old -> new once with at most one refresh; the
    others never moved and were never told to reload."""
    for (service, _), history in seen.items():
        served = [b for b, _ in history]
        moves = [(a, b) for a, b in zip(served, served[1:]) if a != b]
        refreshes = [r for _, r in history if r]
        old, new = (f"{service}.{v}" for v in VERSIONS[service])
        if service in deployed:
            assert served[-1] == new and moves in ([], [(old, new)]) and served[0] in (old, new), history
            assert len(refreshes) <= 1, history
        else:
            assert moves == [] and refreshes == [], (service, history)


def test_one_envoy_routes_each_service_by_its_route_map(edge):
    for service in ROUTEMAPS:
        wait_for(lambda s=service: edge.settled(s), timeout=30, what=f"{service} settled on the Envoy")
    web = get(edge.envoy, "www.example.test", "/")
    assert web.status == 200 and web.backend.startswith("web.v1#") and set(web.cookies) == {"rw_rid", "rw_ver",
                                                                                             "rw_stage"}
    admin = get(edge.envoy, "www.example.test", "/admin/users")
    assert admin.status == 200 and admin.backend.startswith("admin.m1#")
    assert set(admin.cookies) == {"rw_rid_admin", "rw_ver_admin", "rw_stage_admin"}
    assert all("; Path=/admin;" in c for c in admin.cookies.values())
    api = get(edge.envoy, "api.example.test", "/v1/items")
    assert api.status == 200 and api.backend.startswith("api.a1#")
    # A host no service claims: Envoy's own 404, not Rollway's 503.
    assert get(edge.envoy, "unknown.example.test", "/").status == 404
    # A route map claiming admin's place is refused naming both services, and changes nothing.
    shop = {"service": "shop", "domains": ["www.example.test"], "path_prefix": "/admin",
            "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/shop"}]}
    with pytest.raises(RouteMapError, match=r"service 'shop' and service 'admin' both claim www\.example\.test/admin"):
        edge.plane.push(json.dumps(shop), 0, "mallory", "take /admin")
    assert "shop" not in edge.plane.service_names()
    assert get(edge.envoy, "www.example.test", "/admin/users").backend.startswith("admin.m1#")
    # The Envoy's own routes: served as the operator wrote them, no cookie set.
    health = get(edge.envoy, "www.example.test", "/healthz")
    assert health.status == 200 and health.cookies == {}
    static = get(edge.envoy, "www.example.test", "/static/app.js")
    assert static.backend == "static" and static.cookies == {}
    assets = get(edge.envoy, "assets.example.test", "/logo.png")
    assert assets.backend == "static" and assets.cookies == {}
    # The operator's view: every service, where it lives, and the services the Envoy fronts;
    # the Envoy is in each service's quorum.
    server = f"127.0.0.1:{edge.replica.server.api_port}"
    listing = json.loads(rollway("status", "--server", server, "--json"))
    assert [(s["service"], s["domains"], s["path_prefix"], s["envoys"]) for s in listing["services"]] == [
        ("admin", ["www.example.test"], "/admin", 1), ("api", ["api.example.test"], "/", 1),
        ("web", ["www.example.test"], "/", 1)]
    assert listing["envoys"] == [{"node_id": "edge-1", "services": ["admin", "api", "web"]}]
    assert "envoy edge-1 fronts admin, api, web" in rollway("status", "--server", server)
    web_status = json.loads(rollway("status", "web", "--server", server, "--json"))
    assert [(e["node_id"], e["services"]) for e in web_status["envoys"]] == [("edge-1", ["admin", "api", "web"])]
    # The dashboard: the same, and each service's traffic read from the Envoy's counters,
    # which carry the service's name.
    def traffic() -> dict:
        for _ in range(5):
            for host, path in PATHS.values():
                get(edge.envoy, host, path)
        url = f"http://127.0.0.1:{edge.replica.server.http_port}/api/state"
        state = json.loads(urllib.request.urlopen(url, timeout=5).read())
        assert state["envoys"] == [{"node_id": "edge-1", "services": ["admin", "api", "web"]}]
        return {s["service"]: sorted(s["traffic"]["series"]) for s in state["services"]}
    wait_for(lambda: traffic() == {"admin": ["prod:m1"], "api": ["prod:a1"], "web": ["prod:v1"]}, timeout=20,
             what="each service's traffic on the dashboard")
    _, stats = edge.envoy.admin("/stats/prometheus")
    assert 'envoy_rollway_requests{rollway_service="api",rollway_stage="prod",rollway_version="a1"}' in stats


def test_a_deploy_of_web_leaves_api_and_admin_sessions_where_they_are(edge):
    for service in ROUTEMAPS:
        wait_for(lambda s=service: edge.settled(s), timeout=30, what=f"{service} settled")
    browsers, seen = sessions(), {}
    edge.visit(browsers, seen)
    pushes = dict(edge.cache.pushes)
    held_before = {s: dict(p) for s, p in _eds_updates(edge).items()}
    clusters_before = _cluster_manager(edge)
    for step in range(1, HOSTS + 1):
        edge.set_hosts("web", step)
        wait_for(lambda: edge.settled("web", step), timeout=30, what=f"web step {step} settled")
        edge.visit(browsers, seen)
    check_histories(seen, {"web"})
    # web's serverset changes re-sent no other service's endpoints: Envoy applied EDS
    # updates to web's clusters only.
    after = _eds_updates(edge)
    for service in ("api", "admin"):
        assert after[service] == held_before[service], (service, held_before[service], after[service])
    assert sum(after["web"].values()) > sum(held_before["web"].values())
    assert edge.cache.pushes["ClusterLoadAssignment"] > pushes["ClusterLoadAssignment"]
    # web's new version added one cluster (web.prod.v2) and later removed web.prod.v1; the
    # CDS responses list every cluster (state of the world), and Envoy modified none of the
    # others: no cluster of api or admin was touched.
    clusters_after = _cluster_manager(edge)
    assert clusters_after["cluster_modified"] == clusters_before["cluster_modified"], (clusters_before,
                                                                                      clusters_after)
    assert clusters_after["cluster_added"] == clusters_before["cluster_added"] + 1
    assert clusters_after["cluster_removed"] == clusters_before["cluster_removed"] + 1


def test_two_services_deploying_at_once_bounce_no_session(edge):
    for service in ROUTEMAPS:
        wait_for(lambda s=service: edge.settled(s), timeout=30, what=f"{service} settled")
    browsers, seen = sessions(), {}
    edge.visit(browsers, seen)
    for step in range(1, HOSTS + 1):      # web and api step by turns, neither waiting for the other
        edge.set_hosts("web", step)
        edge.visit(browsers, seen)
        edge.set_hosts("api", step)
        edge.visit(browsers, seen)
    for service in ("web", "api"):
        wait_for(lambda s=service: edge.settled(s, HOSTS), timeout=30, what=f"{service} done")
    edge.visit(browsers, seen)
    check_histories(seen, {"web", "api"})


def test_a_config_one_envoy_rejects_holds_only_that_service(tmp_path):
    """api's route map signs its ids with a key this Envoy lacks: the Envoy NACKs the filter
    config that carries it. Only api is held: web keeps getting its configs on the same
    Envoy, and web's new version is admitted; api's entry turns stale (out of api's quorum)
    and api keeps serving on the config the Envoy last accepted."""
    edge = Edge(tmp_path, ack_timeout=3, secrets={"k1": "a-routing-id-secret-of-enough-length"})
    try:
        for service in ROUTEMAPS:
            wait_for(lambda s=service: edge.settled(s), timeout=30, what=f"{service} settled")
        bad = json.loads(json.dumps(ROUTEMAPS["api"]))
        bad["routing_id"] = {"signing_key_id": "missing-on-this-envoy"}
        edge.plane.push(json.dumps(bad), 1, "bob", "sign api's ids with a key the edge lacks")
        wait_for(lambda: edge.plane.fleet_status("api")[0]["nacks"] >= 1, timeout=30, what="api's config NACKed")
        edge.set_hosts("web", HOSTS)              # web deploys while api's config is refused
        wait_for(lambda: edge.settled("web", HOSTS), timeout=30, what="web's new version admitted and ACKed")
        web = {e["node_id"]: e for e in edge.plane.fleet_status("web")}["edge-1"]
        assert web["nacks"] == 0 and not web["stale"], web
        wait_for(lambda: edge.plane.fleet_status("api")[0]["stale"].startswith("NACKed"), timeout=30,
                 what="the Envoy out of api's quorum")
        assert get(edge.envoy, "www.example.test", "/").backend.startswith("web.v2#")
        assert get(edge.envoy, "api.example.test", "/").backend.startswith("api.a1#")   # its last good config
        # The operator fixes api's route map: the Envoy takes it, and is back in api's quorum.
        edge.plane.push(json.dumps(ROUTEMAPS["api"]), 2, "bob", "back to unsigned ids")
        wait_for(lambda: edge.settled("api"), timeout=30, what="api's fixed config ACKed")
    finally:
        edge.close()


def _cluster_manager(edge) -> dict[str, int]:
    """Envoy's count of clusters added, modified and removed over CDS."""
    _, body = edge.envoy.admin("/stats?filter=^cluster_manager[.]cluster_(added|modified|removed)$")
    return {line.split(": ")[0].rsplit(".", 1)[1]: int(line.split(": ")[1]) for line in body.splitlines() if ": " in line}


def _eds_updates(edge) -> dict[str, dict[str, int]]:
    """Per service, per cluster: how many EDS updates Envoy applied to it (its own stat)."""
    status, body = edge.envoy.admin("/stats?filter=update_success")
    assert status == 200
    out: dict[str, dict[str, int]] = {s: {} for s in ROUTEMAPS}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("cluster.") and name.endswith(".update_success"):
            cluster = name[len("cluster."):-len(".update_success")]
            service = cluster.split(".", 1)[0]
            if service in out:
                out[service][cluster] = int(value)
    return out
