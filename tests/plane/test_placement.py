"""Where a service lives (issue 27): a route map's ``domains`` and ``path_prefix``, checked
field by field, and a push that claims a (domain, prefix) another service has refused
naming both services, with nothing stored; against a real ZooKeeper and the file store."""

from __future__ import annotations

import json

import pytest

from rollway.model.routemap import RouteMapError, parse_routemap
from rollway.plane.control_plane import ControlPlane

from examples import ROUTEMAP


def service(name: str, **where) -> dict:
    doc = json.loads(json.dumps(ROUTEMAP))
    doc["service"] = name
    for stage in doc["stages"]:
        stage["serverset"] = stage["serverset"].replace("/web/", f"/{name}/")
    return {**doc, **where}


def test_a_service_lives_everywhere_by_default_and_where_its_map_says():
    # Naming neither: Envoys of its own (one service per Envoy), claiming nothing to collide.
    alone = parse_routemap(service("web"))
    assert (alone.domains, alone.path_prefix) == (("*",), "/") and "domains" not in alone.document
    assert alone.placements() == set()
    assert parse_routemap(service("web", domains=["*"])).placements() == {("*", "/")}
    placed = parse_routemap(service("admin", domains=["WWW.example.test", "*.example.test:8443"],
                                    path_prefix="/admin/"))
    assert placed.domains == ("www.example.test", "*.example.test:8443") and placed.path_prefix == "/admin"
    assert placed.document["domains"] == ["www.example.test", "*.example.test:8443"]


@pytest.mark.parametrize("where,message", [
    ({"domains": []}, r"^domains: must be a non-empty list"),
    ({"domains": "www.example.test"}, r"^domains: must be a non-empty list"),
    ({"domains": ["www.*.test"]}, r"^domains\[0\]: 'www\.\*\.test' is not a host name"),
    ({"domains": ["bad host"]}, r"^domains\[0\]: 'bad host' is not a host name"),
    ({"domains": ["a.test", "A.test"]}, r"^domains\[1\]: 'A\.test' is listed twice"),
    ({"domains": [f"h{i}.test" for i in range(33)]}, r"^domains: 33 domains, more than the 32 allowed"),
    ({"path_prefix": "admin"}, r"^path_prefix: 'admin' must start with /"),
    ({"path_prefix": "/a?b=1"}, r"^path_prefix: '/a\?b=1' must start with /"),
    ({"path_prefix": "/" + "a" * 300}, r"^path_prefix: .* \(at most 256"),
    ({"path_prefix": "/a;b"}, r"^path_prefix: '/a;b' must start with /"),     # would end the cookie's Path
    ({"path_prefix": "/a,b"}, r"^path_prefix: '/a,b' must start with /"),
])
def test_a_bad_placement_is_refused_naming_the_field(where, message):
    with pytest.raises(RouteMapError, match=message):
        parse_routemap(service("web", **where))


def test_a_colliding_push_is_refused_naming_both_services_and_nothing_is_stored(store_url, open_stores):
    store = open_stores(store_url)
    plane = ControlPlane(store, debounce=0.02)
    plane.push(service("web", domains=["www.example.test"]), 0, "alice", "web")
    plane.push(service("admin", domains=["www.example.test"], path_prefix="/admin"), 0, "alice", "admin")
    plane.push(service("api", domains=["api.example.test"]), 0, "alice", "api")
    with pytest.raises(RouteMapError, match=r"^domains: service 'shop' and service 'admin' both claim "
                                            r"www\.example\.test/admin \(nothing stored\)"):
        plane.push(service("shop", domains=["shop.example.test", "www.example.test"], path_prefix="/admin/"), 0,
                   "mallory", "shop")
    assert "shop" not in store.services()
    with pytest.raises(RouteMapError, match=r"service 'web' and service 'api' both claim api\.example\.test"):
        plane.push(service("web", domains=["www.example.test", "api.example.test"]), 1, "mallory", "widen web")
    assert [r.revision for r in store.history("web")] == [1]
    # Services that name no placement (each on Envoys of its own) collide with nothing.
    plane.push(service("search"), 0, "alice", "search, on its own Envoys")
    plane.push(service("static"), 0, "alice", "static, on its own Envoys")
    # A service may move within its own placements, and two services may share a domain.
    plane.push(service("web", domains=["www.example.test", "example.test"]), 1, "alice", "web on the apex too")
    assert sorted(store.services()) == ["admin", "api", "search", "static", "web"]


def test_a_service_under_a_prefix_gets_cookies_of_its_own_and_a_clash_is_refused(store_url, open_stores):
    """Cookies that never collide: a service under a path prefix has its cookies' Path set
    to the prefix and, unless its map names them, names of its own (the page at / sends its
    own to /admin too); two services on one domain, one under the other, naming the same
    cookie are refused naming both."""
    from rollway.model.publication import build_filter_config

    admin = parse_routemap(service("admin", domains=["www.example.test"], path_prefix="/admin"))
    assert (admin.routing_id["cookie"], admin.version_cookie, admin.stage_cookie) == \
        ("rw_rid_admin", "rw_ver_admin", "rw_stage_admin")
    config = build_filter_config(admin, {}, {}, 1).to_json()
    assert config["cookie_path"] == "/admin" and config["routing_id"]["cookie"] == "rw_rid_admin"
    web = parse_routemap(service("web", domains=["www.example.test"]))
    assert web.routing_id["cookie"] == "rw_rid" and "cookie_path" not in build_filter_config(web, {}, {}, 1).to_json()
    named = parse_routemap(service("admin", domains=["www.example.test"], path_prefix="/admin",
                                   routing_id={"cookie": "adm"}))
    assert named.routing_id["cookie"] == "adm" and named.version_cookie == "rw_ver_admin"
    store = open_stores(store_url)
    plane = ControlPlane(store, debounce=0.02)
    plane.push(service("web", domains=["www.example.test"]), 0, "alice", "web")
    with pytest.raises(RouteMapError, match=r"service 'admin' and service 'web' share www\.example\.test and "
                                            r"cookie 'rw_rid': name the cookies apart"):
        plane.push(service("admin", domains=["www.example.test"], path_prefix="/admin",
                           routing_id={"cookie": "rw_rid"}), 0, "mallory", "admin")
    assert "admin" not in store.services()
    plane.push(service("admin", domains=["www.example.test"], path_prefix="/admin"), 0, "alice", "admin")
    # On another domain the same names are no clash: a browser keeps cookies per host.
    plane.push(service("api", domains=["api.example.test"], path_prefix="/v1", routing_id={"cookie": "rw_rid"}),
               0, "alice", "api")
