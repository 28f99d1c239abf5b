"""One Envoy fronting several services (issue 27): web on www.example.test, admin under
/admin on the same domain, api on api.example.test, and an operator's own route beside them.
The real Envoy 1.40 binary, the static bootstrap, real HTTP backends on loopback."""

from __future__ import annotations

import http.client
import json

import pytest

from rollway.envoy import bootstrap as envoy_config
from rollway.model.publication import build_filter_config
from rollway.model.routemap import parse_routemap
from rollway.sources.serverset import ServersetView

from envoy_harness import Backends, EnvoyProcess, free_port, wait_until
from examples import EDGE_ROUTEMAPS
from host_browser import Browser, get

pytestmark = [pytest.mark.envoy]

ROUTEMAPS = EDGE_ROUTEMAPS
BACKENDS = ["web.v1", "web.v2", "admin.m1", "admin.m2", "api.a1", "api.a2", "static"]


def config(service: str, capacities: dict[str, float], generation: int, direction: dict | None = None) -> dict:
    routemap = parse_routemap(ROUTEMAPS[service])
    view = ServersetView(f"/d/{service}", dict(capacities), {}, len(capacities), 0)
    doc = build_filter_config(routemap, {"prod": view}, {}, generation).to_json()
    if direction:
        doc["stages"][0]["direction"] = direction
    return doc


@pytest.fixture(scope="module")
def backends():
    b = Backends(BACKENDS)
    yield b
    b.close()


def clusters(backends) -> dict:
    out = {f"{name.split('.')[0]}.prod.{name.split('.')[1]}": [backends.address(name)]
           for name in BACKENDS if "." in name}
    out["static_origin"] = [backends.address("static")]
    return out


def placements():
    return [envoy_config.Placement(m["service"], tuple(m["domains"]), m.get("path_prefix", "/"))
            for m in ROUTEMAPS.values()]


# An operator's own routes beside Rollway's: a health check answered by Envoy and a static
# origin under /static on www, and a host of its own: the filter leaves them alone.
EXTRA_ROUTES = {"www.example.test": [
    {"match": {"path": "/healthz"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}},
    {"match": {"path_separated_prefix": "/static"}, "route": {"cluster": "static_origin"}}]}
EXTRA_HOSTS = [{"name": "assets", "domains": ["assets.example.test"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "static_origin"}}]}]


@pytest.fixture
def envoy(tmp_path, backends):
    configs = [config("web", {"v1": 4}, 1), config("admin", {"m1": 2}, 1), config("api", {"a1": 2}, 1)]
    listen, admin = free_port(), free_port()
    ecds = str(tmp_path / "ecds.json")
    bootstrap = envoy_config.static_bootstrap(
        envoy_config.services_filter_config(configs), clusters(backends), listen_port=listen, admin_port=admin,
        ecds_path=ecds, placements=placements(), extra_routes=EXTRA_ROUTES, extra_virtual_hosts=EXTRA_HOSTS)
    proc = EnvoyProcess(bootstrap, tmp_path, listen, admin).start()
    proc.ecds = ecds
    yield proc
    proc.stop()


def test_each_service_routes_by_its_own_route_and_cookies(envoy):
    web = get(envoy, "www.example.test", "/")
    assert web.status == 200 and web.backend == "web.v1"
    assert set(web.cookies) == {"rw_rid", "rw_ver", "rw_stage"}
    assert all("; Path=/;" in c for c in web.cookies.values())
    admin = get(envoy, "www.example.test", "/admin/users")
    assert admin.status == 200 and admin.backend == "admin.m1"
    assert set(admin.cookies) == {"rw_rid_admin", "rw_ver_admin", "rw_stage_admin"}
    assert all("; Path=/admin;" in c for c in admin.cookies.values())
    assert get(envoy, "www.example.test", "/admin").backend == "admin.m1"
    assert get(envoy, "www.example.test", "/administrator").backend == "web.v1"    # not under /admin
    api = get(envoy, "api.example.test", "/v1/items")
    assert api.status == 200 and api.backend == "api.a1" and "rw_rid" in api.cookies
    # A request that matches no service: Envoy's own 404, not Rollway's 503.
    assert get(envoy, "unknown.example.test", "/").status == 404
    # Routes Rollway does not own: served as the operator wrote them, no cookie set.
    health = get(envoy, "www.example.test", "/healthz")
    assert health.status == 200 and health.cookies == {}
    static = get(envoy, "www.example.test", "/static/app.js")
    assert static.backend == "static" and static.cookies == {}
    assets = get(envoy, "assets.example.test", "/logo.png")
    assert assets.backend == "static" and assets.cookies == {}
    # A client-sent cluster header never picks a cluster, on any service's route.
    conn = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
    conn.request("GET", "/", headers={"host": "api.example.test", "x-rw-cluster": "web.prod.v1"})
    assert json.loads(conn.getresponse().read())["backend"] == "api.a1"
    conn.close()


def test_a_deploy_of_one_service_leaves_the_others_sessions_where_they_are(envoy):
    """Two browsers on www (each with web and admin sessions) and one on api, then web
    rolls v1 -> v2: every web session moves once, with one refresh; admin's and api's
    sessions keep their versions and get no refresh. Then admin and api deploy at once."""
    www = [Browser("www.example.test") for _ in range(20)]
    api = [Browser("api.example.test") for _ in range(10)]
    seen: dict[tuple[int, str], list[str]] = {}

    def visit():
        for i, b in enumerate(www):
            for service, path in (("web", "/"), ("admin", "/admin/x")):
                r = b.get(envoy, path)
                assert r.status == 200, r
                seen.setdefault((i, service), []).append((r.backend, r.refresh))
        for i, b in enumerate(api):
            r = b.get(envoy, "/v1")
            seen.setdefault((100 + i, "api"), []).append((r.backend, r.refresh))

    def publish(web_caps, web_dir, admin_caps, admin_dir, api_caps, api_dir, generation):
        envoy_config.write_ecds_file(envoy.ecds, envoy_config.services_filter_config([
            config("web", web_caps, generation, web_dir), config("admin", admin_caps, generation, admin_dir),
            config("api", api_caps, generation, api_dir)]), version=str(generation))
        wait_until(lambda: f'"version_info": "{generation}"' in envoy.admin("/config_dump?resource=ecds_filters")[1],
                   what=f"generation {generation} applied")

    visit()
    forward = {"state": "forward", "target": "v2"}
    for generation, caps in enumerate([{"v1": 3, "v2": 1}, {"v1": 1, "v2": 3}, {"v2": 4}], start=2):
        publish(caps, forward if "v1" in caps else None, {"m1": 2}, None, {"a1": 2}, None, generation)
        visit()
    for key, history in seen.items():
        backends = [b for b, _ in history]
        moves = [(a, b) for a, b in zip(backends, backends[1:]) if a != b]
        refreshes = [r for _, r in history if r]
        if key[1] == "web":
            assert backends[-1] == "web.v2" and moves == [("web.v1", "web.v2")], history
            assert len(refreshes) <= 1
        else:
            assert moves == [] and refreshes == [], (key, history)      # untouched by web's deploy
    # admin and api deploy at the same time: each session moves once, in its own service.
    seen.clear()
    for generation, (m, a) in enumerate([({"m1": 1, "m2": 1}, {"a1": 1, "a2": 1}), ({"m2": 2}, {"a2": 2})], start=5):
        publish({"v2": 4}, None, m, {"state": "forward", "target": "m2"} if "m1" in m else None,
                a, {"state": "forward", "target": "a2"} if "a1" in a else None, generation)
        visit()
    for key, history in seen.items():
        backends = [b for b, _ in history]
        moves = [(x, y) for x, y in zip(backends, backends[1:]) if x != y]
        assert len(moves) <= 1 and len([r for _, r in history if r]) <= 1, (key, history)
        assert backends[-1] == {"web": "web.v2", "admin": "admin.m2", "api": "api.a2"}[key[1]], (key, history)


def test_each_service_counts_on_its_own_and_reads_as_a_label(envoy):
    get(envoy, "www.example.test", "/")
    get(envoy, "api.example.test", "/")
    wait_until(lambda: envoy.stats().get("rollway.service.api.requests.stage.prod.version.a1"), what="api counted")
    assert envoy.stats()["rollway.service.web.requests.stage.prod.version.v1"] >= 1
    text = envoy.admin("/stats/prometheus")[1]
    assert 'envoy_rollway_requests{rollway_service="api",rollway_stage="prod",rollway_version="a1"}' in text, \
        [line for line in text.splitlines() if "rollway_requests" in line]
