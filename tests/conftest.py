"""Shared helpers for the test suite: config builders and hypothesis settings."""

from __future__ import annotations

import json
import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # the oracle lives beside the tests

# Deterministic in CI (same examples every run, no flaky shrink timing); more examples
# locally with HYPOTHESIS_PROFILE=thorough.
settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NOW = 1_750_000_000


def rolling(name: str, weight: float, versions: list[tuple], state: str = "steady",
            target: str | None = None) -> dict:
    """versions: (name, capacity) or (name, capacity, admitted), oldest first."""
    stage = {
        "name": name, "weight": weight, "mode": "rolling",
        "versions": [
            {"name": v[0], "capacity": v[1], "cluster": f"web.{name}.{v[0]}",
             **({"admitted": v[2]} if len(v) > 2 else {})}
            for v in versions
        ],
        "direction": {"state": state, **({"target": target} if target else {})},
    }
    return stage


def blue_green(name: str, weight: float, active: str, blue: tuple, green: tuple) -> dict:
    return {
        "name": name, "weight": weight, "mode": "blue_green", "active": active,
        "slots": {
            "blue": {"version": blue[0], "capacity": blue[1], "cluster": f"web.{name}.blue"},
            "green": {"version": green[0], "capacity": green[1], "cluster": f"web.{name}.green"},
        },
    }


def config(*stages: dict, **extra) -> str:
    doc = {"service": "web", "generation": 1,
           "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400}, "stages": list(stages)}
    doc.update(extra)
    return json.dumps(doc)


# -- control-plane fixtures: a real ZooKeeper and both store backends --------------------

import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    from zk_harness import ZooKeeperServer

    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")).start()
    yield server
    server.stop()


@pytest.fixture(params=["zk", "file"])
def store_url(request, tmp_path):
    if request.param == "zk":
        server = request.getfixturevalue("zookeeper")
        return f"zk://{server.hosts}/t-{uuid.uuid4().hex[:10]}"
    return f"file://{tmp_path}/store"


@pytest.fixture
def open_stores():
    """Opens stores for a test and stops them all afterwards."""
    from rollway.sources.store import open_store

    opened = []

    def make(url, **options):
        store = open_store(url, **options)
        store.start()
        opened.append(store)
        return store

    yield make
    for store in opened:
        try:
            store.stop()
        except Exception:
            pass


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    import time as _time

    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        _time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- tiers -------------------------------------------------------------------------------------
#
# Every test is in one or more tiers (pyproject.toml lists the markers). A module names the
# systems it starts with `pytestmark`; a test that asks for ZooKeeper (the `zookeeper`
# fixture, or the "zk" side of `store_url`) is marked `zookeeper` here; whatever starts
# nothing and is not `slow` is `unit`. `pytest -m unit` runs in seconds; `make test` runs every tier, and a
# missing tool fails its tests loudly. A `unit` test that starts ZooKeeper or Envoy fails:
# the harnesses ask `require_tier` first.

from tiers import EXTERNAL_TIERS  # noqa: E402
from tiers import current as _current_tiers  # noqa: E402


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "zookeeper" in item.fixturenames or params.get("store_url") == "zk":
            item.add_marker(pytest.mark.zookeeper)
        if not any(item.get_closest_marker(tier) for tier in (*EXTERNAL_TIERS, "slow")):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _tiers_of_this_test(request):
    _current_tiers.clear()
    _current_tiers.update(m.name for m in request.node.iter_markers() if m.name in (*EXTERNAL_TIERS, "unit"))
    yield
    _current_tiers.clear()
