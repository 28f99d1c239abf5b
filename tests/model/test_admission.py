"""Two-step publication: announce-then-admit for versions, steady-between for direction
changes, `next` for blue-green switches, `next_weight` for stage-weight changes."""

from rollway.model.admission import AdmissionState, apply_admission, known_versions
from rollway.model.filter_config import FilterConfig


def admit(doc: dict, state: AdmissionState, fleet) -> FilterConfig:
    """The config admission makes of ``doc`` (the filter's JSON, less what it ignores)."""
    return apply_admission(FilterConfig.from_json({"service": "web", **doc}), state, fleet)


def config(versions, direction):
    return {"stages": [{"name": "prod", "weight": 1, "mode": "rolling", "direction": direction,
                        "versions": [{"name": v, "capacity": 1, "cluster": v} for v in versions]}]}


def test_a_new_version_is_announced_then_admitted_after_every_envoy_knows_it():
    state = AdmissionState()
    first = admit(config(["v1"], {"state": "steady"}), state, [set(), set()])
    assert "admitted" not in first.to_json()["stages"][0]["versions"][0]      # nothing to bounce from: admitted
    envoy_a, envoy_b = known_versions(first), known_versions(first)
    second = admit(config(["v1", "v2"], {"state": "forward", "target": "v2"}), state, [envoy_a, envoy_b])
    assert second.to_json()["stages"][0]["versions"][1]["admitted"] is False  # announced only
    envoy_a = known_versions(second)
    third = admit(config(["v1", "v2"], {"state": "forward", "target": "v2"}), state, [envoy_a, envoy_b])
    assert third.to_json()["stages"][0]["versions"][1]["admitted"] is False   # envoy-b has not heard yet
    envoy_b = known_versions(third)
    fourth = admit(config(["v1", "v2"], {"state": "forward", "target": "v2"}), state, [envoy_a, envoy_b])
    assert "admitted" not in fourth.to_json()["stages"][0]["versions"][1]     # everyone knows: admitted


def test_a_direction_change_goes_through_steady_until_every_envoy_holds_it():
    state = AdmissionState()
    forward = admit(config(["v1", "v2"], {"state": "forward", "target": "v2"}), state, [])
    a = b = known_versions(forward)
    rollback = admit(config(["v1", "v2"], {"state": "rollback", "target": "v1"}), state, [a, b])
    assert rollback.to_json()["stages"][0]["direction"] == {"state": "steady", "target": "v1"}
    a = known_versions(rollback)                                       # envoy-a holds steady
    again = admit(config(["v1", "v2"], {"state": "rollback", "target": "v1"}), state, [a, b])
    assert again.to_json()["stages"][0]["direction"] == {"state": "steady", "target": "v1"}  # envoy-b: forward
    b = known_versions(again)
    final = admit(config(["v1", "v2"], {"state": "rollback", "target": "v1"}), state, [a, b])
    assert final.to_json()["stages"][0]["direction"] == {"state": "rollback", "target": "v1"}


def test_a_blue_green_switch_waits_at_next_until_every_envoy_holds_it():
    def bg(active):
        return {"stages": [{"name": "bg", "weight": 1, "mode": "blue_green", "active": active, "slots": {
            "blue": {"version": "v1", "capacity": 1, "cluster": "b"},
            "green": {"version": "v2", "capacity": 1, "cluster": "g"}}}]}
    state = AdmissionState()
    first = admit(bg("blue"), state, [])
    a = b = known_versions(first)
    switch = admit(bg("green"), state, [a, b])
    assert (switch.to_json()["stages"][0]["active"], switch.to_json()["stages"][0]["next"]) == ("blue", "green")
    a = known_versions(switch)
    still = admit(bg("green"), state, [a, b])
    assert still.to_json()["stages"][0]["active"] == "blue"      # envoy-b has not got `next` yet
    b = known_versions(still)
    done = admit(bg("green"), state, [a, b])
    assert done.to_json()["stages"][0]["active"] == "green" and "next" not in done.to_json()["stages"][0]


def test_a_weight_change_goes_out_as_next_weight_until_every_envoy_holds_it():
    def weights(canary):
        return {"stages": [
            {"name": "canary", "weight": canary, "mode": "rolling", "direction": {"state": "steady"},
             "versions": [{"name": "v2", "capacity": 1, "cluster": "c"}]},
            {"name": "prod", "weight": 100 - canary, "mode": "rolling", "direction": {"state": "steady"},
             "versions": [{"name": "v1", "capacity": 1, "cluster": "p"}]}]}
    state = AdmissionState()
    first = admit(weights(0.5), state, [])
    a = b = known_versions(first)
    ramp = admit(weights(5), state, [a, b])
    assert [(s["weight"], s["next_weight"]) for s in ramp.to_json()["stages"]] == [(0.5, 5), (99.5, 95)]
    assert state.waiting(ramp)                         # an ACK can release it
    a = known_versions(ramp)
    still = admit(weights(5), state, [a, b])
    assert still.to_json()["stages"][0]["weight"] == 0.5         # envoy-b has not got next_weight yet
    b = known_versions(still)
    done = admit(weights(5), state, [a, b])
    assert [s["weight"] for s in done.to_json()["stages"]] == [5, 95]
    assert all("next_weight" not in s for s in done.to_json()["stages"])
