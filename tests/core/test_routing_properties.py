"""The routing properties of design.md, checked on the core over many sessions."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rollway

from conftest import NOW, blue_green, config, rolling

SESSIONS = 200_000


def make_ids(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [rollway.new_routing_id(NOW, random_bits=rng.getrandbits(64)) for _ in range(n)]


IDS = make_ids(SESSIONS)


def stage_config(weights: list[float]) -> str:
    return config(*[rolling(f"s{i}", w, [("v1", 1)]) for i, w in enumerate(weights)])


def stages_of(weights: list[float], ids: list[str]) -> list[str | None]:
    return rollway.Router(stage_config(weights)).route_many(ids, now=NOW).stage


def shares(values: list, keys) -> dict:
    return {k: sum(1 for v in values if v == k) / len(values) for k in keys}


def total_variation(a: list[float], b: list[float]) -> float:
    sa, sb = sum(a), sum(b)
    return 0.5 * sum(abs(x / sa - y / sb) for x, y in zip(a, b))


def jaccard_p(a: list[float], b: list[float]) -> float:
    """The probability-Jaccard index J_P: the exact share P-MinHash keeps in place."""
    sa, sb = sum(a), sum(b)
    x = [v / sa for v in a]
    y = [v / sb for v in b]
    total = 0.0
    for i in range(len(x)):
        if x[i] > 0 and y[i] > 0:
            total += 1.0 / sum(max(x[j] / x[i], y[j] / y[i]) for j in range(len(x)))
    return total


# -- stages ---------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [[99.5, 0.5], [50, 30, 20], [1, 1, 1, 1], [70, 0, 25, 5]])
def test_stage_shares_follow_weights_within_one_point(weights):
    got = shares(stages_of(weights, IDS), [f"s{i}" for i in range(len(weights))])
    for i, w in enumerate(weights):
        assert abs(got[f"s{i}"] - w / sum(weights)) < 0.01, (i, got)
    assert all(got[f"s{i}"] == 0 for i, w in enumerate(weights) if w == 0)


def test_stage_choice_is_deterministic_per_id():
    router = rollway.Router(stage_config([50, 30, 20]))
    first = router.route_many(IDS[:5000], now=NOW).stage
    again = rollway.Router(stage_config([50, 30, 20])).route_many(IDS[:5000], now=NOW + 1000).stage
    assert first == again


@pytest.mark.parametrize("before,after", [
    ([99.5, 0.5], [95, 5]),       # canary ramp 0.5% -> 5%
    ([95, 5], [99.5, 0.5]),       # and back
    ([70, 30], [40, 60]),
    ([10, 90], [90, 10]),
])
def test_two_stages_move_exactly_the_weight_moved(before, after):
    old = stages_of(before, IDS)
    new = stages_of(after, IDS)
    moved = sum(1 for a, b in zip(old, new) if a != b) / len(IDS)
    weight_moved = abs(before[0] / sum(before) - after[0] / sum(after))
    assert abs(moved - weight_moved) < 0.01
    # Nested: every session that moved went from the shrinking stage to the growing one.
    shrinking, growing = ("s0", "s1") if after[0] / sum(after) < before[0] / sum(before) else ("s1", "s0")
    assert all((a, b) == (shrinking, growing) for a, b in zip(old, new) if a != b)


def test_a_third_stage_at_weight_zero_changes_nothing():
    assert stages_of([70, 30], IDS[:20000]) == stages_of([70, 30, 0], IDS[:20000])


weights3 = st.lists(st.sampled_from([0, 1, 2, 5, 10, 30, 60]), min_size=3, max_size=5).filter(lambda w: sum(w) > 0)


@settings(max_examples=25)
@given(st.data())
def test_any_change_moves_at_most_twice_the_total_variation(data):
    before = data.draw(weights3)
    after = data.draw(st.lists(st.sampled_from([0, 1, 2, 5, 10, 30, 60]), min_size=len(before),
                               max_size=len(before)).filter(lambda w: sum(w) > 0))
    ids = IDS[:40000]
    old = stages_of(before, ids)
    new = stages_of(after, ids)
    moved = sum(1 for a, b in zip(old, new) if a != b) / len(ids)
    tv = total_variation(before, after)
    expected = 1 - jaccard_p(before, after)           # the scheme's exact expectation
    sigma = math.sqrt(max(expected * (1 - expected), 1e-9) / len(ids))
    assert abs(moved - expected) < 5 * sigma + 1e-3
    # The scheme's worst case 2TV/(1+TV) stays below the 2TV the contract allows.
    assert expected <= 2 * tv / (1 + tv) + 1e-12
    assert moved <= 2 * tv + 5 * sigma + 1e-3


def test_a_stage_without_capacity_takes_no_traffic():
    router = rollway.Router(config(rolling("prod", 50, [("v1", 3)]), rolling("canary", 50, [("v2", 0)]),
                                   blue_green("bg", 50, "blue", ("v3", 0), ("v4", 5))))
    got = set(router.route_many(IDS[:20000], now=NOW).stage)
    assert got == {"prod"}


def test_no_capacity_anywhere_routes_nowhere():
    router = rollway.Router(config(rolling("prod", 1, [("v1", 0)])))
    d = router.route(IDS[0], now=NOW)
    assert (d.stage, d.version, d.cluster, d.reason) == (None, None, None, "no_capacity")


# -- versions -------------------------------------------------------------------------------

def version_config(capacities: list[tuple], state="steady", target=None) -> str:
    return config(rolling("prod", 1, capacities, state, target))


@pytest.mark.parametrize("caps", [[("v1", 90), ("v2", 10)], [("v1", 1), ("v2", 1), ("v3", 2)],
                                  [("v1", 0), ("v2", 5), ("v3", 15)]])
def test_version_shares_follow_capacity(caps):
    versions = rollway.Router(version_config(caps)).route_many(IDS, now=NOW).version
    total = sum(c for _, c in caps)
    got = shares(versions, [name for name, _ in caps])
    for name, cap in caps:
        assert abs(got[name] - cap / total) < 0.01
    assert all(got[name] == 0 for name, cap in caps if cap == 0)


def run_sessions(steps: list[list[tuple]], states: list[tuple[str, str | None]], ids: list[str]):
    """Routes every session at each step, each session wanting the version it was last
    routed to (its version cookie, as a browser would send). Returns per-step versions."""
    wanted: list[str | None] = [None] * len(ids)
    history = []
    for caps, (state, target) in zip(steps, states):
        batch = rollway.Router(version_config(caps, state, target)).route_many(ids, wanted, NOW)
        wanted = batch.version
        history.append(wanted)
    return history


def moves_per_session(history: list[list[str]]) -> list[list[tuple[str, str]]]:
    out = []
    for i in range(len(history[0])):
        path = [step[i] for step in history]
        out.append([(a, b) for a, b in zip(path, path[1:]) if a != b])
    return out


def test_a_rolling_deploy_moves_each_session_at_most_once_and_never_back():
    ids = IDS[:50000]
    steps = [[("v1", 100 - b), ("v2", b)] for b in range(0, 101, 5)]
    history = run_sessions(steps, [("forward", "v2")] * len(steps), ids)
    moves = moves_per_session(history)
    assert all(len(m) <= 1 for m in moves)
    assert all(m == [("v1", "v2")] for m in moves if m)
    assert set(history[-1]) == {"v2"}
    # Without any cookie (pure hashing) the intervals alone are monotone too.
    pure = [rollway.Router(version_config(c, "forward", "v2")).route_many(ids, now=NOW).version for c in steps]
    assert all(len(m) <= 1 for m in moves_per_session(pure))


capacity_noise = st.lists(st.tuples(st.integers(0, 4), st.floats(0.5, 2.0)), min_size=5, max_size=25)


@settings(max_examples=30)
@given(capacity_noise)
def test_autoscaling_noise_during_a_forward_deploy_never_moves_a_session_back(steps):
    """Hosts move v1 -> v2 in random batches while the whole fleet scales up and down;
    v2's share can dip, but with direction forward no session ever returns to v1."""
    ids = IDS[:5000]
    moved = 0
    caps, states = [], []
    for batch, scale in steps:
        moved = min(20, moved + batch)
        caps.append([("v1", (20 - moved) * scale), ("v2", max(moved * scale, 0.0))])
        states.append(("forward", "v2"))
    moves = moves_per_session(run_sessions(caps, states, ids))
    assert all(m in ([], [("v1", "v2")]) for m in moves)


def test_a_rollback_moves_sessions_back_once():
    ids = IDS[:30000]
    up = [[("v1", 100 - b), ("v2", b)] for b in (0, 20, 40, 60)]
    down = [[("v1", 100 - b), ("v2", b)] for b in (40, 20, 0)]
    history = run_sessions(up + down, [("forward", "v2")] * 4 + [("rollback", "v1")] * 3, ids)
    for moves in moves_per_session(history):
        assert moves in ([], [("v1", "v2")], [("v1", "v2"), ("v2", "v1")])
    assert set(history[-1]) == {"v1"}


def test_a_third_version_mid_ramp_only_moves_sessions_forward():
    ids = IDS[:30000]
    steps = [
        [("v1", 80), ("v2", 20)], [("v1", 60), ("v2", 40)],
        [("v1", 50), ("v2", 40), ("v3", 10)], [("v1", 30), ("v2", 40), ("v3", 30)],
        [("v1", 10), ("v2", 30), ("v3", 60)], [("v1", 0), ("v2", 0), ("v3", 100)],
    ]
    states = [("forward", "v2")] * 2 + [("forward", "v3")] * 4
    rank = {"v1": 1, "v2": 2, "v3": 3}
    for moves in moves_per_session(run_sessions(steps, states, ids)):
        assert all(rank[b] > rank[a] for a, b in moves)
        assert len(moves) <= 2  # at most once per deploy: v1->v2 and v2->v3


# -- tiebreak -------------------------------------------------------------------------------

def find_id(router, want_version: str) -> str:
    for rid in IDS:
        if router.route(rid, now=NOW).version == want_version:
            return rid
    raise AssertionError("no id hashes there")


@pytest.mark.parametrize("state,target,wanted,computed,routed,reason", [
    ("forward", "v2", "v2", "v1", "v2", "kept"),             # already on the target: stays
    ("forward", "v2", "v1", "v2", "v2", "moved_forward"),    # draining -> target
    ("rollback", "v1", "v1", "v2", "v1", "kept"),            # on the rollback target: stays
    ("rollback", "v1", "v2", "v1", "v1", "moved_rollback"),  # moves back to the target
    ("steady", None, "v2", "v1", "v2", "kept"),              # steady: nobody is moved
    ("steady", None, "v1", "v2", "v1", "kept"),
])
def test_tiebreak(state, target, wanted, computed, routed, reason):
    router = rollway.Router(version_config([("v1", 50), ("v2", 50)], state, target))
    rid = find_id(router, computed)
    d = router.route(rid, wanted, NOW)
    assert (d.version, d.reason) == (routed, reason)
    assert router.route(rid, computed, NOW).reason == "affinity"


def test_forward_tiebreak_with_three_versions_never_moves_backward():
    router = rollway.Router(version_config([("v1", 30), ("v2", 30), ("v3", 40)], "forward", "v3"))
    on_v1 = find_id(router, "v1")
    on_v2 = find_id(router, "v2")
    assert router.route(on_v1, "v2", NOW).version == "v2"   # newer than its hash: kept
    # Older than its hash: moves, and straight to the target, so it moves once in this deploy.
    assert router.route(on_v2, "v1", NOW).version == "v3"


def test_draining_session_waits_while_the_target_is_not_admitted():
    config = json.loads(version_config([("v1", 30), ("v2", 30), ("v3", 40)], "forward", "v3"))
    config["stages"][0]["versions"][2]["admitted"] = False
    router = rollway.Router(json.dumps(config))
    on_v2 = find_id(router, "v2")
    d = router.route(on_v2, "v1", NOW)
    assert (d.version, d.reason) == ("v1", "kept")   # not to v2 now and v3 later


def test_wanted_version_without_capacity_is_never_used():
    router = rollway.Router(version_config([("v1", 0), ("v2", 10)], "forward", "v2"))
    batch = router.route_many(IDS[:5000], ["v1"] * 5000, NOW)
    assert set(batch.version) == {"v2"} and set(batch.reason) == {"unavailable"}
    unknown = router.route(IDS[0], "v9", NOW)
    assert (unknown.version, unknown.reason) == ("v2", "unavailable")


def test_a_version_not_yet_admitted_keeps_its_sessions_but_gets_no_new_ones():
    router = rollway.Router(version_config([("v1", 50), ("v2", 50, False)], "steady"))
    fresh = router.route_many(IDS[:20000], now=NOW)
    assert set(fresh.version) == {"v1"}
    kept = router.route_many(IDS[:2000], ["v2"] * 2000, NOW)
    assert set(kept.version) == {"v2"}


# -- blue-green and refresh -----------------------------------------------------------------

def test_blue_green_cutover_moves_everyone_once():
    ids = IDS[:20000]
    before = rollway.Router(config(blue_green("bg", 1, "blue", ("v1", 5), ("v2", 5))))
    after = rollway.Router(config(blue_green("bg", 1, "green", ("v1", 5), ("v2", 5))))
    first = before.route_many(ids, now=NOW)
    assert set(first.version) == {"v1"} and set(first.cluster) == {"web.bg.blue"}
    # The switch: every session (running v1, cookie v1) goes to green and is told once.
    switched = after.route_many(ids, ["v1"] * len(ids), NOW, version_cookies=["v1"] * len(ids))
    assert set(switched.version) == {"v2"} and all(switched.refresh)
    # Until a tab reloads it still sends app v1 and is told again (the page reloads once).
    again = after.route_many(ids, ["v1"] * len(ids), NOW, version_cookies=["v2"] * len(ids))
    assert set(again.version) == {"v2"} and all(again.refresh)
    reloaded = after.route_many(ids, ["v2"] * len(ids), NOW, version_cookies=["v2"] * len(ids))
    assert not any(reloaded.refresh) and set(reloaded.reason) == {"blue_green"}


def test_during_a_blue_green_switch_sessions_on_the_incoming_slot_stay_there():
    switching = rollway.Router(config({**blue_green("bg", 1, "blue", ("v1", 5), ("v2", 5)), "next": "green"}))
    ids = IDS[:5000]
    stayed = switching.route_many(ids, ["v2"] * len(ids), NOW)       # moved by a faster Envoy
    assert set(stayed.version) == {"v2"} and set(stayed.reason) == {"kept"}
    others = switching.route_many(ids, ["v1"] * len(ids), NOW)
    assert set(others.version) == {"v1"} and set(others.reason) == {"blue_green"}
    fresh = switching.route_many(ids, now=NOW)
    assert set(fresh.version) == {"v1"}
    with pytest.raises(ValueError, match=r"stages\[0\]\.next: must differ from active"):
        rollway.Router(config({**blue_green("bg", 1, "blue", ("v1", 5), ("v2", 5)), "next": "blue"}))


def test_refresh_is_signalled_to_every_tab_behind_and_not_after_the_tab_refreshed():
    router = rollway.Router(version_config([("v1", 0), ("v2", 10)], "forward", "v2"))
    rid = IDS[3]
    told = router.route(rid, "v1", NOW, version_cookie="v1")
    assert told.version == "v2" and told.refresh
    # another tab of the same browser: the shared cookie moved, this tab still runs v1
    assert router.route(rid, "v1", NOW, version_cookie="v2").refresh
    assert not router.route(rid, "v2", NOW, version_cookie="v2").refresh   # refreshed
    assert not router.route(rid, None, NOW, version_cookie="v1").refresh   # a page load: no header


# -- routing ids ----------------------------------------------------------------------------

def test_new_expired_and_malformed_ids_get_a_fresh_one():
    router = rollway.Router(version_config([("v1", 1)]))
    for rid, status in [(None, "absent"), ("garbage", "malformed"),
                        (rollway.new_routing_id(NOW - 86400), "expired")]:
        d = router.route(rid, now=NOW)
        assert d.id_status == status and d.new_routing_id is not None
        assert rollway.parse_routing_id(d.new_routing_id, NOW)["status"] == "valid"
        # Routing uses the fresh id: the same id routes the same way next time.
        assert router.route(d.new_routing_id, now=NOW).version == d.version
    valid = router.route(IDS[0], now=NOW)
    assert valid.id_status == "valid" and valid.new_routing_id is None


def test_forged_signed_id_gets_a_fresh_one():
    secrets = {"k": b"a-routing-id-signing-secret"}
    router = rollway.Router(config(rolling("prod", 1, [("v1", 1)]),
                                   routing_id={"cookie": "rw_rid", "ttl_seconds": 86400, "signing_key_id": "k"}),
                            secrets=secrets)
    good = rollway.new_routing_id(NOW, signing_secret=secrets["k"])
    assert router.route(good, now=NOW).new_routing_id is None
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    d = router.route(forged, now=NOW)
    assert d.id_status == "bad_signature" and d.new_routing_id and len(d.new_routing_id) == 41
    assert router.route(good[:25], now=NOW).id_status == "bad_signature"


# -- overrides ------------------------------------------------------------------------------

OPS = b"operator-key-for-test-overrides"


def override_router() -> rollway.Router:
    return rollway.Router(
        config(rolling("prod", 1, [("v1", 10), ("v2", 0), ("v3", 5, False)]),
               rolling("dark", 0, [("v7", 2)]), override={"key_id": "ops", "max_ttl_seconds": 600}),
        secrets={"ops": OPS})


def sign(fields: str, key: bytes = OPS) -> str:
    return fields + ";mac=" + hmac.new(key, fields.encode(), hashlib.sha256).hexdigest()


def test_signed_override_forces_stage_and_version():
    router = override_router()
    d = router.route(IDS[0], now=NOW, override=sign(f"stage=dark;exp={NOW + 60}"))
    assert (d.stage, d.version, d.override) == ("dark", "v7", "applied")
    d = router.route(IDS[0], now=NOW, override=sign(f"version=v3;exp={NOW + 60}"))
    assert (d.stage, d.version, d.reason, d.override) == ("prod", "v3", "override", "applied")


@pytest.mark.parametrize("value", [
    f"stage=dark;exp={NOW + 60}",                                   # no MAC
    f"stage=dark;exp={NOW + 60};mac=" + "0" * 64,                   # wrong MAC
    sign(f"stage=dark;exp={NOW + 60}", key=b"not-the-operator-key"),
    sign(f"stage=dark;exp={NOW - 1}"),                              # expired
    sign(f"stage=dark;exp={NOW + 6000}"),                           # beyond max_ttl
    sign(f"version=v2;exp={NOW + 60}"),                             # zero capacity
    sign(f"stage=nowhere;exp={NOW + 60}"),
    sign(f"stage=dark;stage=prod;exp={NOW + 60}"),
    sign(f"stage=dark;cluster=x;exp={NOW + 60}"),
    "x" * 1000,
])
def test_bad_overrides_are_ignored_and_flagged(value):
    router = override_router()
    plain = router.route(IDS[0], now=NOW)
    d = router.route(IDS[0], now=NOW, override=value)
    assert d.override == "rejected"
    assert (d.stage, d.version) == (plain.stage, plain.version) == ("prod", "v1")


def test_overrides_need_a_configured_key():
    router = rollway.Router(config(rolling("prod", 1, [("v1", 1)]), rolling("dark", 0, [("v7", 2)])))
    d = router.route(IDS[0], now=NOW, override=sign(f"stage=dark;exp={NOW + 60}"))
    assert (d.stage, d.override) == ("prod", "rejected")
