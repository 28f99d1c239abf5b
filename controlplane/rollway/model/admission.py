"""Admission of new versions: announce first, admit after every Envoy holds them.

An Envoy can keep a session only on a version it knows. A version new to a rolling stage
is therefore first sent with ``admitted: false`` (Envoys keep sessions that already want
it but hash no new sessions there) and admitted once every connected Envoy has ACKed a
config containing it. A stage with nothing admitted yet admits everything at once:
nobody can be bounced from a version that serves no one. Used by the xDS server and by
the simulator, so both follow the same rule.

The same two-step publication covers the other changes that move sessions: a reversal of
direction goes through ``steady``, a blue-green switch through ``next``, and a change of
stage weights through ``next_weight`` (sessions the new weights place elsewhere are kept
there by every Envoy before any Envoy starts moving them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Key = tuple[str, str]  # (stage, version)


def _direction_token(stage: dict) -> Key:
    d = stage.get("direction", {"state": "steady"})
    return (stage["name"], f"direction:{d['state']}:{d.get('target', '')}")


def known_versions(config: dict) -> set[Key]:
    """What an Envoy holding ``config`` knows: every (stage, version) of its rolling stages,
    and each stage's direction."""
    out = {(s["name"], v["name"]) for s in config["stages"] if s["mode"] == "rolling" for v in s["versions"]}
    out |= {_direction_token(s) for s in config["stages"] if s["mode"] == "rolling"}
    out |= {(s["name"], f"bluegreen:{s['active']}:{s.get('next', '')}") for s in config["stages"]
            if s["mode"] == "blue_green"}
    out.add(_weights_token(config))
    return out


def _weights(config: dict, key: str = "weight") -> tuple:
    return tuple((s["name"], s.get(key, s["weight"])) for s in config["stages"])


def _weights_token(config: dict) -> Key:
    return ("", f"weights:{_weights(config)!r}:{_weights(config, 'next_weight')!r}")


@dataclass
class AdmissionState:
    """What the control plane has admitted so far, per service."""
    versions: set[Key] = field(default_factory=set)
    directions: dict[str, dict] = field(default_factory=dict)  # stage -> direction last published
    holding: dict[str, dict] = field(default_factory=dict)     # stage -> direction waiting behind steady
    active_slots: dict[str, str] = field(default_factory=dict)  # blue-green stage -> active slot published
    weights: dict[str, float] | None = None  # stage -> weight published (applied, not next)
    weights_changing: bool = False           # next_weight is out; the weights wait for every ACK

    def waiting(self, config: dict) -> bool:
        """Whether ``config`` holds something back that an ACK could release."""
        return bool(self.holding) or self.weights_changing or any(
            s.get("next") or "next_weight" in s or any(v.get("admitted") is False for v in s.get("versions", []))
            for s in config["stages"])


def apply_admission(config: dict, state: "AdmissionState | set[Key]", envoys_know: Iterable[set[Key]]) -> None:
    """Marks versions not yet admitted in ``config`` (in place), and holds a change of
    direction at ``steady`` until every Envoy has the steady config.

    Only a reversal (forward <-> rollback) is held; retargeting a forward deploy to a newer
    version moves sessions the same way and goes out at once.

    Why the direction rule: while Envoys lag, one still on ``forward`` would move a session
    forward again right after another, already on ``rollback``, moved it back. ``steady``
    moves nobody, so going forward -> steady -> rollback (the second step only once every
    Envoy holds the first) never sends a session both ways (found by rollway.tools.sim)."""
    if isinstance(state, set):  # versions only (callers that do not track directions)
        state = AdmissionState(state)
    knows = list(envoys_know)
    admitted = state.versions
    _hold_weight_change(config, state, knows)
    for stage in config["stages"]:
        if stage["mode"] == "blue_green":
            _hold_blue_green_switch(stage, state, knows)
            continue
        if stage["mode"] != "rolling":
            continue
        name = stage["name"]
        wanted = stage.get("direction", {"state": "steady"})
        published = state.directions.get(name)
        held = {"state": "steady", "target": wanted["target"]} if "target" in wanted else {"state": "steady"}
        steady_everywhere = all(_direction_token({"name": name, "direction": held}) in k for k in knows)
        if name in state.holding and wanted["state"] != "steady" and not steady_everywhere:
            state.holding[name] = wanted                  # still waiting for every Envoy
            stage["direction"] = held
        elif name not in state.holding and published is not None and wanted["state"] != published["state"] \
                and published["state"] != "steady" and wanted["state"] != "steady":
            state.holding[name] = wanted                  # a reversal: nobody moves anyone first
            stage["direction"] = held
        else:
            state.holding.pop(name, None)
        state.directions[name] = stage["direction"]
        live = {(name, v["name"]) for v in stage["versions"]}
        admitted.difference_update({k for k in admitted if k[0] == name and k not in live})
        if not any(k in admitted for k in live):
            admitted.update(live)
        for version in stage["versions"]:
            key = (name, version["name"])
            if key not in admitted and all(key in k for k in knows):
                admitted.add(key)
            if key not in admitted:
                version["admitted"] = False


def _hold_weight_change(config: dict, state: AdmissionState, knows: list[set[Key]]) -> None:
    """A change of stage weights goes out in two steps: first the old weights with each
    stage's new one as ``next_weight`` (a session the new weights place in a stage that
    serves the version it wants is kept there), then, once every Envoy holds that, the new
    weights. Without it, an Envoy that has not heard of the change sends a session that a
    faster one moved from prod to canary straight back (found by rollway.tools.sim). A change
    starts only once every Envoy holds the previous one's final weights: with two changes
    in flight, Envoys applying different weights move sessions both ways."""
    wanted = {s["name"]: s["weight"] for s in config["stages"]}
    published = state.weights
    if published is not None and set(published) == set(wanted) and published != wanted:
        for stage in config["stages"]:
            stage["weight"] = published[stage["name"]]
        if not state.weights_changing and not all(_weights_token(config) in k for k in knows):
            return                                  # the previous change is still going out
        state.weights_changing = True
        for stage in config["stages"]:
            stage["next_weight"] = wanted[stage["name"]]
        if not all(_weights_token(config) in k for k in knows):
            return
        for stage in config["stages"]:
            stage["weight"] = stage.pop("next_weight")
    state.weights_changing = False
    state.weights = wanted


def _hold_blue_green_switch(stage: dict, state: AdmissionState, knows: list[set[Key]]) -> None:
    """A switch of the active slot goes out in two steps: first the old slot stays active
    with ``next`` naming the new one (sessions a faster Envoy already switched stay
    switched), then, once every Envoy holds that, the new slot becomes active."""
    name, wanted = stage["name"], stage["active"]
    published = state.active_slots.get(name)
    if published is not None and wanted != published:
        if all((name, f"bluegreen:{published}:{wanted}") in k for k in knows):
            state.active_slots[name] = wanted
        else:
            stage["active"], stage["next"] = published, wanted
            return
    state.active_slots[name] = wanted
