"""Serverset formats (issue 29): what each format reads and skips, the route map's
``serverset: {path, format, version}``, what an announcer writes, and versions laid out as
child paths, watched on both stores as they appear and go."""

from __future__ import annotations

import json

import pytest

from rollway.inputs import InputError
from rollway.model.routemap import RouteMapError, parse_routemap
from rollway.sources.member_formats import Format, ServersetSpec, accepts, announcement, read_member
from rollway.sources.serverset import ServersetWatcher, build_view, read_now, version_paths

from conftest import wait_for

PARTY = ServersetSpec("/s", Format.PARTY, "path")
CURATOR = ServersetSpec("/s", Format.CURATOR, "payload:build")
AURORA = ServersetSpec("/s", Format.FINAGLE, "path")
HEX = "0123456789abcdef0123456789abcdef"


def curator_doc(**changes) -> bytes:
    doc = {"name": "web", "id": "i-1", "address": "10.0.0.7", "port": 8080, "sslPort": None,
           "payload": {"@class": "x.Build", "build": "b42"}, "registrationTimeUTC": 1, "serviceType": "DYNAMIC"}
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.unit
def test_each_format_reads_what_its_writer_writes():
    party, why = read_member(PARTY, f"{HEX}-10.0.0.7:8080", b"10.0.0.7:8080", "v2")
    assert why is None and party is not None and (party.host, party.port, party.version, party.weight) == \
        ("10.0.0.7", 8080, "v2", 1.0)
    plain, _ = read_member(PARTY, f"{HEX}__party__", b"[::1]:81", "v2")
    assert plain is not None and (plain.host, plain.port) == ("::1", 81)
    shallow_only, _ = read_member(PARTY, f"{HEX}-10.0.0.8:9000", b"", "v2")   # identifier in the name only
    assert shallow_only is not None and shallow_only.port == 9000
    curator, _ = read_member(CURATOR, "i-1", curator_doc(), None)
    assert curator is not None and (curator.host, curator.port, curator.version) == ("10.0.0.7", 8080, "b42")
    aurora, _ = read_member(AURORA, "member_0000000001", json.dumps(
        {"serviceEndpoint": {"host": "10.0.0.9", "port": 31000}, "additionalEndpoints": {}, "status": "ALIVE",
         "shard": 3}).encode(), "v7")
    assert aurora is not None and (aurora.host, aurora.version, aurora.status) == ("10.0.0.9", "v7", "ALIVE")


@pytest.mark.unit
@pytest.mark.parametrize("spec,name,data,version,reason", [
    (PARTY, f"{HEX}-x", b"web01:8080", "v1", "host"),                 # a host name, not an address
    (PARTY, f"{HEX}-x", b"10.0.0.1", "v1", "host:port"),
    (PARTY, f"{HEX}-x", b"10.0.0.1:99999", "v1", "port"),
    (PARTY, f"{HEX}-x", b"\xff\xfe", "v1", "host:port"),
    (PARTY, f"{HEX}-x", b"10.0.0.1:80", "bad/version", "version"),
    (CURATOR, "i", curator_doc(payload={"other": 1}), None, "payload.build"),
    (CURATOR, "i", curator_doc(payload="b42"), None, "payload"),
    (CURATOR, "i", curator_doc(address="example.org"), None, "address"),
    (CURATOR, "i", b"[1, 2]", None, "JSON object"),
    (AURORA, "member_1", b'{"serviceEndpoint": {"host": "10.0.0.1", "port": 80}}', None, "version path"),
    (CURATOR, "i", b"x" * (64 * 1024 + 1), None, "bytes"),
])
def test_a_member_the_format_cannot_read_is_skipped_with_the_reason(spec, name, data, version, reason):
    member, why = read_member(spec, name, data, version)
    assert member is None and why is not None and reason in why


@pytest.mark.unit
def test_a_view_counts_skipped_members_and_ignores_children_that_are_no_members():
    members = {f"v1/{HEX}-a": b"10.0.0.1:80", f"v1/{HEX}-b": b"10.0.0.2:80", f"v2/{HEX}-c": b"10.0.0.3:80",
               f"v2/{HEX}-d": b"not an address", "v2/lock-0001": b"10.0.0.4:80"}
    view = build_view(PARTY, members)
    assert view.capacity == {"v1": 2.0, "v2": 1.0} and view.members == 3 and view.skipped == 1
    assert not accepts(PARTY, "lock-0001") and accepts(PARTY, f"{HEX}__party__")
    assert not accepts(ServersetSpec("/s"), "lock") and accepts(CURATOR, "any-instance-id")
    disabled = build_view(CURATOR, {"i": curator_doc(enabled=False)})
    assert disabled.members == 0 and disabled.skipped == 0     # registered, not serving


@pytest.mark.unit
def test_version_paths_are_bounded_and_refuse_names_that_are_no_versions():
    usable, refused = version_paths(["v1", "v 2", "..", *[f"b{i:04d}" for i in range(300)]])
    assert len(usable) == 256 and usable[-1] == "v1" and "b0000" in refused and "v 2" in refused
    assert ".." in refused


@pytest.mark.unit
@pytest.mark.parametrize("raw,field", [
    ({"path": "/d", "format": "party", "version": "metadata:version"}, "stages[0].serverset.version"),
    ({"path": "/d", "format": "finagle", "version": "payload:v"}, "stages[0].serverset.version"),
    ({"path": "/d", "format": "curator", "version": "metadata:v"}, "stages[0].serverset.version"),
    ({"path": "/d", "format": "consul"}, "stages[0].serverset.format"),
    ({"path": "/d", "version": "metadata:"}, "stages[0].serverset.version"),
    ({"path": "/d", "version": "tag"}, "stages[0].serverset.version"),
    ({"path": "d"}, "stages[0].serverset.path"),
    ({"path": "/d", "weight": 1}, "stages[0].serverset"),
    (["/d"], "stages[0].serverset"),
])
def test_a_bad_serverset_mapping_rejects_the_route_map_naming_the_field(raw, field):
    doc = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": raw}]}
    with pytest.raises(RouteMapError) as error:
        parse_routemap(json.dumps(doc))
    assert str(error.value).startswith(field)


@pytest.mark.unit
def test_a_plain_path_stays_what_it_was_and_a_mapping_is_stored_whole():
    doc = {"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"},
        {"name": "mobile", "weight": 1, "mode": "rolling", "serverset": {"path": "/d/m", "format": "party"}},
        {"name": "bg", "weight": 0, "mode": "blue_green", "active": "blue",
         "slots": {"blue": {"serverset": {"path": "/d/b", "format": "curator"}}, "green": {"serverset": "/d/g"}}}]}
    routemap = parse_routemap(json.dumps(doc))
    assert routemap.stages[0].serverset == ServersetSpec("/d/prod")
    assert routemap.stages[1].serverset == ServersetSpec("/d/m", Format.PARTY, "path")   # party's default
    assert routemap.stages[2].slots["blue"] == ServersetSpec("/d/b", Format.CURATOR, "payload:version")
    stored = routemap.document["stages"]
    assert stored[0]["serverset"] == "/d/prod"
    assert stored[1]["serverset"] == {"path": "/d/m", "format": "party", "version": "path"}
    assert parse_routemap(json.dumps(routemap.document)) == routemap     # the stored form reads back the same


@pytest.mark.unit
@pytest.mark.parametrize("spec", [ServersetSpec("/s"), PARTY, CURATOR, AURORA,
                                  ServersetSpec("/s", Format.CURATOR, "path")])
def test_what_an_announcer_writes_reads_back_as_the_member(spec):
    made = announcement(spec, "10.0.0.5", 8443, "v3")
    assert made.path == ("/s/v3" if spec.by_path else "/s")
    name = made.name or "member_0000000001"
    assert accepts(spec, name)
    member, why = read_member(spec, name, made.data, "v3" if spec.by_path else None)
    assert why is None and member is not None and (member.host, member.port, member.version) == ("10.0.0.5", 8443, "v3")


@pytest.mark.unit
def test_an_announcer_refuses_what_no_control_plane_would_count():
    with pytest.raises(InputError, match="weight"):
        announcement(PARTY, "10.0.0.5", 80, "v1", weight=2)
    with pytest.raises(InputError, match="host"):
        announcement(CURATOR, "web01", 80, "v1")
    with pytest.raises(InputError, match="version"):
        announcement(AURORA, "10.0.0.5", 80, "v/1")


def remove_path(store, path: str) -> None:
    """An empty child path removed as its writer's tools would (a znode, or a directory)."""
    if store.url.startswith("zk:"):
        store.client.delete(path)
    else:
        store._dir(path).rmdir()


def test_version_paths_are_watched_as_they_appear_and_go(open_stores, store_url):
    """Both stores: a new version's child path is read at once, members announced under it by
    their writers' names count, and a version path that goes takes its capacity with it."""
    store = open_stores(store_url)
    views = []
    watcher = ServersetWatcher(store, PARTY, views.append, debounce=0.01, empty_grace=0)
    watcher.start()
    try:
        handles = {}
        for version, port in (("v1", 81), ("v1", 82), ("v2", 83)):
            made = announcement(PARTY, "10.0.0.1", port, version)
            handles[port] = store.announce(made.path, made.data, made.name)
        wait_for(lambda: views and views[-1].capacity == {"v1": 2.0, "v2": 1.0}, what="both versions read")
        handles["lock"] = store.announce("/s/v3", b"garbage", "lock-1")   # not a party member's name
        handles[81].close()
        handles[82].close()
        wait_for(lambda: views[-1].capacity == {"v2": 1.0}, what="v1's members gone")
        assert views[-1].skipped == 0
        assert build_view(PARTY, read_now(store, PARTY)).capacity == {"v2": 1.0}
        handles[83].close()
        remove_path(store, "/s/v2")              # the deploy tool cleans up the old version's path
        wait_for(lambda: views[-1].members == 0, what="v2's path gone")
        made = announcement(PARTY, "10.0.0.1", 84, "v2")
        handles[84] = store.announce(made.path, made.data, made.name)    # and it comes back
        wait_for(lambda: views[-1].capacity == {"v2": 1.0}, what="v2's path watched again")
    finally:
        watcher.stop()
