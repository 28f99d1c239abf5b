"""The filter's JSON stays byte-identical across the control plane's redesign (issue 25).

``filter_config_golden.json`` was written by the dict-built publication (before the typed
``FilterConfig``); every scenario here replays the same route maps, serverset capacities and
fleet knowledge through today's publication and compares the text the filter receives
(``json.dumps`` as ``rollway.envoy.bootstrap`` sends it: key order matters), the follower's
render, and the digest. Regenerate only on purpose: ``python tests/model/test_filter_config_bytes.py``.

Regenerated once on purpose (issue 26): capacity alone no longer turns a deploy back, so the
first scenario's reversal is an operator's (``halt --rollback`` of v2, recorded in the deploy
state); the prod entries for v2 from then on carry ``admitted: false`` (halted), and
everything else is as the dict-built publication wrote it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rollway.model.admission import known_versions
from rollway.model.deploy_state import DeployState, Halt
from rollway.model.publication import advance, config_digest, render_config
from rollway.model.routemap import parse_routemap
from rollway.sources.serverset import ServersetView

GOLDEN = Path(__file__).with_name("filter_config_golden.json")

ROLLING = {"service": "web", "version_cookie": "rw_ver", "stage_cookie": "rw_stage",
           "headers": {"cluster": "x-rw-cluster", "refresh": "x-rw-refresh"},
           "override": {"key_id": "ops", "max_ttl_seconds": 600},
           "stages": [{"name": "canary", "weight": 0.5, "mode": "rolling", "serverset": "/d/canary"},
                      {"name": "prod", "weight": 99.5, "mode": "rolling", "serverset": "/d/prod"}]}
MIXED = {"service": "shop",
         "stages": [{"name": "prod", "weight": 90, "mode": "rolling", "serverset": "/d/prod"},
                    {"name": "checkout", "weight": 10, "mode": "blue_green", "active": "blue",
                     "slots": {"blue": {"serverset": "/d/blue"}, "green": {"serverset": "/d/green"}}}]}


def views(routemap, capacity: dict[str, dict[str, float]]) -> dict[str, ServersetView]:
    """Serverset views by watch key from ``{serverset path: {version: capacity}}``."""
    out = {}
    for stage in routemap.stages:
        for key, spec in stage.serversets().items():
            caps = capacity.get(spec.path, {})
            out[key] = ServersetView(spec.path, dict(caps), {v: (("10.0.0.1", 80, c),) for v, c in caps.items()},
                                     members=len(caps), skipped=0, time=0.0)
    return out


class Fleet:
    """Two Envoys: one ACKs every config at once, the other one config late."""

    def __init__(self):
        self.fast: set = set()
        self.slow: set = set()

    def sets(self) -> list[set]:
        return [self.fast, self.slow]

    def ack(self, config) -> None:
        self.slow, self.fast = self.fast, set(known_versions(config))


def replay(steps: list[tuple[dict, dict[str, dict[str, float]]]]) -> list[list[str]]:
    state, fleet, out = DeployState(), Fleet(), []
    steps = [step for step in steps for _ in range(3)]      # time for every Envoy to hear
    for now, (document, capacity) in enumerate(steps):
        if "halt" in capacity and capacity["halt"]["v2"] and "v2" not in state.halts:
            state = state.with_halt(Halt("v2", rollback=True, who="ops", why="bad build", at=1.0))
        capacity = {k: v for k, v in capacity.items() if k != "halt"}
        routemap = parse_routemap(document)
        seen = views(routemap, capacity)
        config = advance(routemap, seen, state, fleet.sets(), routemap_revision=1, now=float(now * 10))
        follower = render_config(routemap, seen, DeployState.from_json(state.to_json()))
        fleet.ack(config)
        out.append([config.to_text(), follower.to_text(), config_digest(config)])
    return out


def with_weights(document: dict, canary: float) -> dict:
    stages = [dict(s) for s in document["stages"]]
    stages[0]["weight"], stages[1]["weight"] = canary, 100 - canary
    return {**document, "stages": stages}


def with_active(document: dict, slot: str) -> dict:
    return {**document, "stages": [document["stages"][0], {**document["stages"][1], "active": slot}]}


def scenarios() -> dict[str, list]:
    deploy = [{"/d/canary": {"v1": 1}, "/d/prod": {"v1": 10}},
              {"/d/canary": {"v1": 1, "v2": 1}, "/d/prod": {"v1": 10}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 8, "v2": 2}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 8, "v2": 2}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 5, "v2": 5}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 7, "v2": 3}, "halt": {"v2": 1}},   # turned back
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 9, "v2": 1}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 9, "v2": 1}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 10}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v1": 6, "v3": 4}},     # a newer build
              {"/d/canary": {"v2": 1}, "/d/prod": {"v3": 10}},
              {"/d/canary": {"v2": 1}, "/d/prod": {"v3": 10}}]
    weights = [(with_weights(ROLLING, c), deploy[2]) for c in (0.5, 5, 5, 5, 20, 20)]
    mixed_caps = [{"/d/prod": {"a": 3}, "/d/blue": {"b7": 4}, "/d/green": {"b8": 4}},
                  {"/d/prod": {"a": 3, "b": 1}, "/d/blue": {"b7": 4}, "/d/green": {"b8": 2, "b9": 3}},
                  {"/d/prod": {"b": 3}, "/d/blue": {}, "/d/green": {"b9": 3}}]
    mixed = [(with_active(MIXED, slot), mixed_caps[min(i, 2)])
             for i, slot in enumerate(["blue", "blue", "green", "green", "green", "blue", "blue"])]
    return {"rolling deploy, reversal, newer build": [(ROLLING, c) for c in deploy],
            "stage weights change twice": weights,
            "blue-green switches beside a rolling stage": mixed}


def test_the_filter_json_is_byte_identical_to_the_golden_record():
    golden = json.loads(GOLDEN.read_text())
    replayed = {name: replay(steps) for name, steps in scenarios().items()}
    assert replayed.keys() == golden.keys()
    for name in golden:
        for i, (got, want) in enumerate(zip(replayed[name], golden[name], strict=True)):
            assert got == want, f"{name}, step {i}: the filter's JSON changed"


def test_the_golden_record_covers_every_optional_key():
    text = GOLDEN.read_text()
    for key in ("admitted", "next_weight", '\\"next\\"', "version_cookie", "stage_cookie",
                "override", "headers", '\\"rollback\\"', '\\"forward\\"'):
        assert key in text, f"no scenario exercises {key}"


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({name: replay(steps) for name, steps in scenarios().items()}, indent=1) + "\n")
    sys.exit(0)
