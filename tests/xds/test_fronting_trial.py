"""What one Envoy fronting several services is sent after it rejects a filter config
(rollway.xds.fronting.ConfigTrial), and which node metadata naming its services is refused."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from rollway.xds.fronting import MAX_FRONTED, ConfigTrial
from rollway.xds.server import _own_routes, _services

pytestmark = [pytest.mark.unit]


def test_a_single_new_config_rejected_is_held_back_until_its_service_changes():
    trial = ConfigTrial()
    first = {"api": "a1", "web": "w1"}
    assert trial.choose(first) == first
    trial.acked(first)
    sent = trial.choose({"api": "a2", "web": "w1"})
    assert trial.nacked(sent, "Failed to create filter config") == ["api"]
    # web keeps moving; api stays on what the Envoy accepted, until api's config changes.
    assert trial.choose({"api": "a2", "web": "w2"}) == {"api": "a1", "web": "w2"}
    assert trial.choose({"api": "a3", "web": "w2"}) == {"api": "a3", "web": "w2"}


def test_several_new_configs_in_one_rejection_are_tried_one_at_a_time():
    trial = ConfigTrial()
    trial.acked({"a": "1", "b": "1", "c": "1"})
    current = {"a": "2", "b": "2", "c": "2"}
    assert trial.nacked(trial.choose(current), "no index in this message") == []   # cannot tell yet
    first = trial.choose(current)
    assert first == {"a": "2", "b": "1", "c": "1"}
    trial.acked(first)                                  # a was fine
    second = trial.choose(current)
    assert second == {"a": "2", "b": "2", "c": "1"}
    assert trial.nacked(second, "") == ["b"]            # b is the bad one
    third = trial.choose(current)
    assert third == {"a": "2", "b": "1", "c": "2"}
    trial.acked(third)
    assert trial.choose(current) == {"a": "2", "b": "1", "c": "2"} and trial.trying == []


def test_the_filters_own_message_names_the_bad_service_by_its_index():
    trial = ConfigTrial()
    trial.acked({"a": "1", "b": "1"})
    sent = trial.choose({"a": "2", "b": "2"})
    assert trial.nacked(sent, "services[1].routing_id.signing_key_id: no secret named 'k'") == ["b"]


def test_a_service_rejected_before_it_was_ever_accepted_is_left_out():
    trial = ConfigTrial()
    sent = trial.choose({"a": "1"})
    trial.acked(sent)
    sent = trial.choose({"a": "1", "new": "n1"})
    assert trial.nacked(sent, "") == ["new"]
    assert trial.choose({"a": "1", "new": "n1"}) == {"a": "1"}


def _metadata(value) -> struct_pb2.Struct:
    meta = struct_pb2.Struct()
    meta.update({"services": value})
    return meta


@pytest.mark.parametrize("value, problem", [
    ("web", "must be a list"),
    ([], "1 to 256 names"),
    (["web", 3], r"services\[1\]: must be a string"),
    (["web", "bad\nname"], r"services\[1\]"),
    (["x" * 200], r"services\[0\]"),
    ([f"s{i}" for i in range(MAX_FRONTED + 1)], "1 to 256 names"),
])
def test_node_metadata_naming_services_badly_is_refused(value, problem):
    with pytest.raises(ValueError, match=problem):
        _services(_metadata(value).fields)


def test_node_metadata_services_are_sorted_without_repeats():
    assert _services(_metadata(["web", "api", "web"]).fields) == ("api", "web")


def _own(value) -> struct_pb2.Struct:
    meta = struct_pb2.Struct()
    meta.update({"own_routes": value})
    return meta


@pytest.mark.parametrize("value, problem", [
    (["not", "a string"], "must be a string"),
    ("{not json", "not JSON"),
    ('{"routes": []}', "must be"),
    ('{"listeners": {}}', "must be"),
    ('{"routes": {"www.example.test": [{"match": {"prefix": "/"}, "nonsense": 1}]}}', "own_routes"),
    ('{"virtual_hosts": [' + ",".join(['{"name": "x", "domains": ["x"], "routes": []}'] * 2000) + "]}",
     "more than 65536 bytes"),
])
def test_an_envoys_own_routes_that_envoy_could_not_read_are_refused(value, problem):
    with pytest.raises(ValueError, match=problem):
        _own_routes(_own(value).fields)


def test_an_envoys_own_routes_are_kept_as_canonical_json():
    own = _own_routes(_own('{"routes": {"a.test": [{"match": {"path": "/h"}, '
                           '"direct_response": {"status": 200}}]}}').fields)
    assert own.routes == {"a.test": [{"match": {"path": "/h"}, "direct_response": {"status": 200}}]}
