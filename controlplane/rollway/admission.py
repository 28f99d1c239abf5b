"""Admission of new versions: announce first, admit after every Envoy holds them.

An Envoy can keep a session only on a version it knows. A version new to a rolling stage
is therefore first sent with ``admitted: false`` (Envoys keep sessions that already want
it but hash no new sessions there) and admitted once every connected Envoy has ACKed a
config containing it. A stage with nothing admitted yet admits everything at once:
nobody can be bounced from a version that serves no one. Used by the xDS server and by
the simulator, so both follow the same rule.
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
    return out


@dataclass
class AdmissionState:
    """What the control plane has admitted so far, per service."""
    versions: set[Key] = field(default_factory=set)
    directions: dict[str, dict] = field(default_factory=dict)  # stage -> direction last published
    holding: dict[str, dict] = field(default_factory=dict)     # stage -> direction waiting behind steady
    active_slots: dict[str, str] = field(default_factory=dict)  # blue-green stage -> active slot published

    def waiting(self, config: dict) -> bool:
        """Whether ``config`` holds something back that an ACK could release."""
        return bool(self.holding) or any(
            s.get("next") or any(v.get("admitted") is False for v in s.get("versions", []))
            for s in config["stages"])


def apply_admission(config: dict, state: "AdmissionState | set[Key]", envoys_know: Iterable[set[Key]]) -> None:
    """Marks versions not yet admitted in ``config`` (in place), and holds a change of
    direction at ``steady`` until every Envoy has the steady config.

    Only a reversal (forward <-> rollback) is held; retargeting a forward deploy to a newer
    version moves sessions the same way and goes out at once.

    Why the direction rule: while Envoys lag, one still on ``forward`` would move a session
    forward again right after another, already on ``rollback``, moved it back. ``steady``
    moves nobody, so going forward -> steady -> rollback (the second step only once every
    Envoy holds the first) never sends a session both ways (found by rollway.sim)."""
    if isinstance(state, set):  # versions only (callers that do not track directions)
        state = AdmissionState(state)
    knows = list(envoys_know)
    admitted = state.versions
    for stage in config["stages"]:
        if stage["mode"] == "blue_green":
            _hold_blue_green_switch(stage, state, knows)
            continue
        if stage["mode"] != "rolling":
            continue
        name = stage["name"]
        wanted = stage.get("direction", {"state": "steady"})
        published = state.directions.get(name)
        steady_everywhere = all((name, "direction:steady:") in k for k in knows)
        if name in state.holding and wanted["state"] != "steady" and not steady_everywhere:
            state.holding[name] = wanted                  # still waiting for every Envoy
            stage["direction"] = {"state": "steady"}
        elif name not in state.holding and published is not None and wanted["state"] != published["state"] \
                and published["state"] != "steady" and wanted["state"] != "steady":
            state.holding[name] = wanted                  # a reversal: nobody moves anyone first
            stage["direction"] = {"state": "steady"}
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
