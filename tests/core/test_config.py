"""Filter-config validation: a bad document raises ValueError naming the field."""

import copy
import json
import pathlib

import pytest

import rollway

from conftest import blue_green, config, rolling

EXAMPLE = json.loads((pathlib.Path(__file__).parents[2] / "envoy-config" / "filter-config.example.json").read_text())


def mutated(edit):
    doc = copy.deepcopy(EXAMPLE)
    edit(doc)
    return json.dumps(doc)


def test_the_documented_example_is_accepted():
    router = rollway.Router(json.dumps(EXAMPLE))
    assert router.service == "web" and router.generation == 7
    assert [s["name"] for s in router.stages] == ["canary", "prod", "legacy"]
    assert router.stages[1]["direction"] == {"state": "forward", "target": "v2"}
    assert router.stages[2]["active"] == "blue" and not router.stages[2]["takes_traffic"]


def _set(path, value):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


BAD = [
    (_delete(["service"]), r"^service: is required"),
    (_set(["service"], ""), r"^service: must not be empty"),
    (_set(["service"], "web app"), r"^service: may contain only"),
    (_set(["generation"], -1), r"^generation: must be an integer >= 0"),
    (_set(["generation"], "7"), r"^generation: must be an integer >= 0"),
    (_set(["routing_id", "ttl_seconds"], 0), r"^routing_id\.ttl_seconds: must be between 1 and"),
    (_set(["routing_id", "cookie"], "rw rid"), r"^routing_id\.cookie: is not a valid header/cookie name"),
    (_set(["routing_id", "signing_key_id"], "k1"), r"^routing_id\.signing_key_id: no secret named 'k1'"),
    (_set(["version_cookie"], "rw_rid"), r"^version_cookie: must differ from routing_id\.cookie"),
    (_set(["headers", "cluster"], "x-rw cluster"), r"^headers\.cluster: is not a valid"),
    (_set(["stages"], []), r"^stages: must be a non-empty list"),
    (_set(["stages", 1, "weight"], -1), r"^stages\[1\]\.weight: must be a number >= 0"),
    (_set(["stages", 1, "weight"], "99"), r"^stages\[1\]\.weight: must be a number >= 0"),
    (_set(["stages", 1, "mode"], "canary"), r"^stages\[1\]\.mode: must be rolling or blue_green"),
    (_set(["stages", 1, "name"], "canary"), r"^stages\[1\]\.name: duplicate stage 'canary'"),
    (_delete(["stages", 1, "versions"]), r"^stages\[1\]\.versions: is required"),
    (_set(["stages", 1, "versions", 1, "capacity"], -3), r"^stages\[1\]\.versions\[1\]\.capacity: must be a number >= 0"),
    (_set(["stages", 1, "versions", 1, "name"], "v1"), r"^stages\[1\]\.versions\[1\]\.name: duplicate version 'v1'"),
    (_delete(["stages", 1, "versions", 0, "cluster"]), r"^stages\[1\]\.versions\[0\]\.cluster: is required"),
    (_set(["stages", 1, "versions", 0, "cluster"], "a b"), r"^stages\[1\]\.versions\[0\]\.cluster: may contain only"),
    (_set(["stages", 1, "versions", 0, "admitted"], "yes"), r"^stages\[1\]\.versions\[0\]\.admitted: must be true or false"),
    (_set(["stages", 1, "direction", "state"], "sideways"), r"^stages\[1\]\.direction\.state: must be one of"),
    (_set(["stages", 1, "direction", "target"], "v7"), r"^stages\[1\]\.direction\.target: names no version"),
    (_delete(["stages", 1, "direction", "target"]), r"^stages\[1\]\.direction\.target: is required"),
    (_delete(["stages", 2, "active"]), r"^stages\[2\]\.active: is required"),
    (_set(["stages", 2, "active"], "red"), r"^stages\[2\]\.active: names no slot"),
    (_set(["stages", 2, "slots", "blue", "capacity"], None), r"^stages\[2\]\.slots\.blue\.capacity: must be a number"),
    (_set(["override"], {"key_id": "ops"}), r"^override\.key_id: no secret named 'ops'"),
]


@pytest.mark.parametrize("edit,message", BAD)
def test_bad_config_names_the_field(edit, message):
    with pytest.raises(ValueError, match=message):
        rollway.Router(mutated(edit))


def test_all_zero_weights_rejected():
    with pytest.raises(ValueError, match=r"^stages: every stage has weight 0"):
        rollway.Router(config(rolling("prod", 0, [("v1", 1)]), rolling("canary", 0, [("v1", 1)])))


@pytest.mark.parametrize("text,message", [
    ("", r"^config: invalid JSON"),
    ("{", r"^config: invalid JSON"),
    ("[]", r"^config: must be an object"),
    ("63333333e333333", r"^config: invalid JSON.*number overflow"),  # found by the fuzzer
    ('{"service": "web", "generation": 1e999, "stages": []}', r"^config: invalid JSON"),
    ('{"service": "web", "generation": 1, "stages": [1]}', r"^stages\[0\]: must be an object"),
])
def test_not_a_config(text, message):
    with pytest.raises(ValueError, match=message):
        rollway.Router(text)


def test_short_secret_rejected():
    doc = config(rolling("prod", 1, [("v1", 1)]), routing_id={"signing_key_id": "k1"})
    with pytest.raises(ValueError, match=r"^routing_id\.signing_key_id: secret 'k1' is shorter than 16 bytes"):
        rollway.Router(doc, secrets={"k1": b"short"})
    assert rollway.Router(doc, secrets={"k1": b"x" * 16}).routing_cookie == "rw_rid"


def test_unknown_fields_are_ignored_for_forward_compatibility():
    doc = json.loads(config(rolling("prod", 1, [("v1", 1)])))
    doc["added_by_a_newer_control_plane"] = {"x": 1}
    doc["stages"][0]["future"] = True
    assert rollway.Router(json.dumps(doc)).route(None, now=1).stage == "prod"


def test_header_and_cookie_names_are_lowercased():
    doc = config(rolling("prod", 1, [("v1", 1)]), headers={"cluster": "X-RW-Cluster"})
    assert rollway.Router(doc).route(None, now=1).cluster == "web.prod.v1"


def test_blue_green_slots_listed():
    router = rollway.Router(config(blue_green("bg", 1, "green", ("v1", 2), ("v2", 2))))
    assert [v["slot"] for v in router.stages[0]["versions"]] == ["blue", "green"]
