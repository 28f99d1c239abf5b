"""The typed filter config (rollway.model.filter_config): what it reads, that it cannot be
changed in place, and that the JSON it writes is what the routing core accepts."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rollway import Router
from rollway.model.filter_config import (
    BlueGreenStage,
    Direction,
    FilterConfig,
    Mode,
    RollingStage,
    Slot,
    VersionEntry,
    Way,
)

CONFIG = FilterConfig(
    service="web", generation=3, routing_id={"cookie": "rw_rid", "ttl_seconds": 86400, "signing_key_id": "k"},
    stages=(RollingStage("prod", 99.0, (VersionEntry("v1", 8.0, "web.prod.v1"),
                                        VersionEntry("v2", 2.0, "web.prod.v2", admitted=False)),
                         Direction(Way.FORWARD, "v2")),
            BlueGreenStage("checkout", 1.0, "blue", {"blue": Slot("b7", 4.0, "web.checkout.blue"),
                                                      "green": Slot("b8", 4.0, "web.checkout.green")},
                           next="green")),
    headers={"cluster": "x-edge-cluster"}, override={"key_id": "ops"}, secrets_file="/etc/rollway/s.json")


def test_the_json_reads_back_to_the_same_config():
    assert FilterConfig.from_json(json.loads(CONFIG.to_text())) == CONFIG


def test_optional_keys_are_absent_not_null():
    doc = dataclasses.replace(CONFIG, headers={}, override=None, secrets_file=None).to_json()
    assert not {"headers", "override", "secrets_file", "version_cookie", "stage_cookie"} & set(doc)
    prod, checkout = doc["stages"]
    assert "next_weight" not in prod and "admitted" not in prod["versions"][0]
    assert prod["versions"][1]["admitted"] is False and checkout["next"] == "green"


def test_what_consumers_read():
    assert [s.mode for s in CONFIG.stages] == [Mode.ROLLING, Mode.BLUE_GREEN]
    assert list(CONFIG.announced()) == [("prod", "v2")]
    assert CONFIG.picked_clusters() == {"web.prod.v1", "web.prod.v2", "web.checkout.blue", "web.checkout.green"}
    assert CONFIG.cluster_header("x-rw-cluster") == "x-edge-cluster"
    assert CONFIG.rolling_stages()[0].direction.moving and not Direction(Way.STEADY, "v1").moving
    assert Direction(Way.ROLLBACK, "v1").held() == Direction(Way.STEADY, "v1")


def test_a_config_cannot_be_changed_in_place():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONFIG.generation = 4           # type: ignore[misc]
    with pytest.raises(TypeError):
        CONFIG.headers["cluster"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        CONFIG.stages[1].slots["blue"] = Slot("x", 1.0, "y")  # type: ignore[union-attr]
    assert CONFIG.with_generation(4).generation == 4 and CONFIG.generation == 3


def test_without_secrets_routes_without_keys():
    bare = CONFIG.without_secrets()
    assert "signing_key_id" not in bare.routing_id and bare.override is None and bare.secrets_file is None
    Router(bare.to_text())              # the core accepts it with no key material at all


@pytest.mark.parametrize("doc", [
    {"service": "web", "stages": [{"name": "p", "weight": 1, "mode": "sideways"}]},
    {"service": "web", "stages": [{"name": "p", "weight": 1, "mode": "rolling", "versions": [],
                                   "direction": {"state": "backwards"}}]},
    {"service": "web"},
])
def test_a_document_that_is_not_a_config_is_refused(doc):
    with pytest.raises((KeyError, ValueError, TypeError)):
        FilterConfig.from_json(doc)
