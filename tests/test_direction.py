"""Direction inference from capacity over time: the deploy scenarios of issue 4."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rollway.model.direction import DirectionTracker


def run(steps: list[dict[str, float]]) -> list[tuple[str, str | None]]:
    tracker = DirectionTracker()
    return [tracker.observe(step) for step in steps]


def test_a_plain_rolling_deploy_is_forward_until_done():
    steps = [{"v1": 10 - k, "v2": k} for k in range(11)]
    states = run(steps)
    assert states[0] == ("steady", None)
    assert all(s == ("forward", "v2") for s in states[1:-1])
    assert states[-1] == ("steady", None)


def test_a_rollback_half_way():
    steps = [{"v1": 10 - k, "v2": k} for k in range(6)] + [{"v1": 10 - k, "v2": k} for k in (4, 3, 2, 1, 0)]
    states = run(steps)
    assert states[5] == ("forward", "v2")
    assert states[6] == ("rollback", "v1")
    assert all(s == ("rollback", "v1") for s in states[6:-1])
    assert states[-1] == ("steady", None)


def test_autoscaling_up_and_down_during_a_deploy_does_not_flip():
    steps = []
    for k in range(1, 10):
        steps.append({"v1": 10 - k, "v2": k})                      # a deploy step
        steps.append({"v1": (10 - k) * 2, "v2": k * 2})            # everything scales up
        steps.append({"v1": 10 - k, "v2": k})                      # and back down
    states = run([{"v1": 10}] + steps)
    assert all(s == ("forward", "v2") for s in states[1:])


def test_spot_hosts_vanishing_from_the_old_version():
    steps = [{"v1": 10}, {"v1": 9, "v2": 1}, {"v1": 6, "v2": 1}, {"v1": 5, "v2": 2}, {"v1": 2, "v2": 2},
             {"v1": 1, "v2": 3}]
    assert all(s == ("forward", "v2") for s in run(steps)[1:])


def test_spot_loss_on_the_new_version_does_not_look_like_a_rollback():
    steps = [{"v1": 10}, {"v1": 8, "v2": 2}, {"v1": 6, "v2": 4}, {"v1": 6, "v2": 1}, {"v1": 5, "v2": 2}]
    assert all(s == ("forward", "v2") for s in run(steps)[1:])


def test_a_third_version_starting_while_the_second_ramps():
    steps = [{"v1": 10}, {"v1": 8, "v2": 2}, {"v1": 6, "v2": 4},
             {"v1": 6, "v2": 3, "v3": 1}, {"v1": 5, "v2": 3, "v3": 2},   # v3 starts; v2 still taking from v1
             {"v1": 4, "v2": 4, "v3": 2}, {"v1": 2, "v2": 3, "v3": 5}, {"v1": 0, "v2": 0, "v3": 10}]
    states = run(steps)
    assert states[2] == ("forward", "v2")
    assert all(s == ("forward", "v3") for s in states[3:-1])  # never back to v2
    assert states[-1] == ("steady", None)


def test_blue_green_cutover_style_jump():
    # All hosts replaced at once (a blue-green-like swap inside a rolling stage).
    assert run([{"v1": 10}, {"v2": 10}]) == [("steady", None), ("steady", None)]
    assert run([{"v1": 10}, {"v1": 10, "v2": 10}, {"v2": 10}])[1] == ("forward", "v2")


def test_one_noisy_step_cannot_flip_a_deploy_but_a_real_rollback_does():
    tracker = DirectionTracker()
    for step in [{"v1": 100}, {"v1": 80, "v2": 20}, {"v1": 60, "v2": 40}]:
        tracker.observe(step)
    # An autoscaler adds one old host while a spot loss takes one new host: 1% "rollback".
    assert tracker.observe({"v1": 61, "v2": 39}) == ("forward", "v2")
    assert tracker.observe({"v1": 58, "v2": 42}) == ("forward", "v2")
    # The deploy tool really rolls back: 10% of hosts move to v1.
    assert tracker.observe({"v1": 68, "v2": 32}) == ("rollback", "v1")


@settings(max_examples=300)
@given(st.integers(0, 2**32), st.integers(5, 40), st.floats(0.0, 0.5))
def test_a_one_way_deploy_with_autoscaling_noise_never_flips(seed, hosts, noise):
    """Hosts move v1 -> v2 in random batches; between batches the fleet scales up and down
    (all versions alike) and spot hosts vanish at random. The inferred direction is never
    rollback, and once forward it stays forward until the deploy completes."""
    rng = random.Random(seed)
    old, new = hosts, 0
    tracker = DirectionTracker()
    seen_forward = False
    tracker.observe({"v1": old})
    while old > 0:
        batch = min(old, rng.randint(1, max(1, hosts // 5)))
        old, new = old - batch, new + batch
        state = tracker.observe({"v1": float(old), "v2": float(new)})
        assert state[0] != "rollback"
        seen_forward = seen_forward or state == ("forward", "v2")
        if rng.random() < noise:      # autoscaling: everything grows or shrinks together
            factor = rng.choice([0.5, 0.8, 1.25, 2.0])
            state = tracker.observe({"v1": old * factor, "v2": new * factor})
            assert state[0] != "rollback"
            tracker.observe({"v1": float(old), "v2": float(new)})
        if rng.random() < noise and old > 1:  # a spot host of the old version vanishes
            old -= 1
            assert tracker.observe({"v1": float(old), "v2": float(new)})[0] != "rollback"
        if seen_forward and old > 0:
            assert tracker.state == "forward" and tracker.target == "v2"
    assert tracker.state == "steady"
