"""The strict recount (rollway.tools.sim.recount): the sequences the old accounting forgave
are bounces now, the returns an operator's action asks for are not, and a reload is counted
per rollout."""

from __future__ import annotations

from rollway.tools.sim.recount import STALE_BOUNCES_PER_MOVE, recount


def served(t, version, stage="prod", session=0, refresh=False, stale=False):
    return {"t": t, "session": session, "envoy": 0, "stage": stage, "version": version,
            "refresh": refresh, "stale": stale}


def action(t, kind, target=None, stage="prod"):
    return {"t": t, "action": kind, "stage": stage if kind != "weights" else None, "target": target}


def test_there_and_back_across_a_canary_shift_is_two_bounces():
    # Forgiven before: each return was credited to the canary shift (a newer action).
    trace = [action(0, "deploy", "v2"), served(1, "v1"), served(2, "v2"), action(3, "weights"),
             served(4, "v1"), served(5, "v2")]
    assert recount(trace).bounces == 2


def test_a_return_under_the_next_deploy_is_a_bounce():
    # Forgiven before: credited to the v3 deploy, whose target is not v1.
    trace = [action(0, "deploy", "v2"), served(1, "v1"), served(2, "v2"), action(3, "deploy", "v3"),
             served(4, "v1")]
    assert recount(trace).bounces == 1


def test_a_rollback_justifies_one_return_and_no_more():
    trace = [action(0, "deploy", "v2"), served(1, "v1"), served(2, "v2"), action(10, "rollback", "v1"),
             served(11, "v1"), served(12, "v2")]
    counts = recount(trace)
    assert (counts.justified_returns, counts.bounces) == (1, 1)


def test_an_action_that_started_before_the_session_left_justifies_nothing():
    trace = [served(1, "v1"), action(2, "rollback", "v1"), served(3, "v2"), served(4, "v1")]
    assert recount(trace).bounces == 1


def test_a_rollback_in_another_stage_justifies_nothing():
    trace = [served(1, "v1"), served(2, "v2"), action(3, "rollback", "v1", stage="canary"), served(4, "v1")]
    assert recount(trace).bounces == 1


def test_a_weight_change_justifies_a_return_that_moves_the_stage():
    trace = [served(1, "v1", "prod"), action(2, "weights"), served(3, "v2", "canary"), action(4, "weights"),
             served(5, "v1", "prod")]
    assert recount(trace).bounces == 0
    same_stage = [served(1, "v1"), action(2, "weights"), served(3, "v2"), action(4, "weights"), served(5, "v1")]
    assert recount(same_stage).bounces == 1


def test_a_blue_green_switch_back_justifies_the_return():
    trace = [served(1, "b7", "bg"), action(2, "switch", "b8", "bg"), served(3, "b8", "bg"),
             action(4, "switch", "b7", "bg"), served(5, "b7", "bg")]
    assert recount(trace).bounces == 0


def test_reloads_count_per_rollout_canary_shifts_included():
    trace = [action(0, "deploy", "v2"), served(1, "v2", "canary", refresh=True), action(2, "weights"),
             served(3, "v2", refresh=True), action(4, "deploy", "v2"), served(5, "v2", refresh=True)]
    counts = recount(trace)
    assert (counts.rollouts, counts.refreshes_per_session_max) == (1, 3)
    trace.append(action(6, "deploy", "v3"))
    trace.append(served(7, "v3", refresh=True))
    assert recount(trace).rollouts == 2 and recount(trace).refreshes_per_session_max == 3


def test_a_reload_finishing_one_rollout_after_the_next_began_belongs_to_the_first():
    trace = [action(0, "deploy", "v2"), served(1, "v1"), action(5, "deploy", "v3"),
             served(6, "v2", refresh=True), served(9, "v3", refresh=True)]
    assert recount(trace).refreshes_per_session_max == 1
    trace.append(served(10, "v3", refresh=True))          # told twice toward v3: two in that rollout
    assert recount(trace).refreshes_per_session_max == 2


def test_a_halt_justifies_one_return_from_the_halted_version_and_starts_no_rollout():
    trace = [action(0, "deploy", "v2"), served(1, "v1"), served(2, "v2"), action(3, "halt", "v2"),
             served(4, "v1")]
    counts = recount(trace)
    assert (counts.bounces, counts.justified_returns, counts.rollouts) == (0, 1, 1)
    # Not a return to the halted version, nor a second return, nor a move that began after it.
    assert recount([served(1, "v2"), served(2, "v1"), action(3, "halt", "v2"), served(4, "v2")]).bounces == 1
    assert recount(trace + [served(5, "v2"), served(6, "v1")]).bounces == 2
    assert recount([served(1, "v1"), action(2, "halt", "v2"), served(3, "v2"), served(4, "v1")]).bounces == 1


def test_an_unknown_action_is_refused_by_name():
    import pytest

    with pytest.raises(ValueError, match="'pause'"):
        recount([action(0, "pause", "v2")])


def test_a_justified_return_allows_its_reload_and_a_stale_envoys_reloads_are_set_apart():
    # A canary shift there and back: two reloads, one of them the justified return's.
    trace = [served(1, "v1", "prod"), action(2, "weights"), served(3, "v2", "canary", refresh=True),
             action(4, "weights"), served(5, "v1", "prod", refresh=True)]
    counts = recount(trace)
    assert (counts.refreshes_per_session_max, counts.refreshes_per_session_max_fresh) == (2, 1)
    # A stale Envoy moves the session back and a fresh one forward again: both reloads are its.
    stale = [action(0, "deploy", "v2"), served(1, "v1"), served(2, "v2", refresh=True),
             served(3, "v1", stale=True, refresh=True), served(4, "v2", refresh=True)]
    counts = recount(stale)
    assert (counts.refreshes_per_session_max, counts.refreshes_per_session_max_fresh) == (3, 1)
    assert counts.bounces == counts.bounces_stale_caused == 2 <= STALE_BOUNCES_PER_MOVE * counts.stale_moves


def test_a_stale_envoys_bounce_is_counted_and_shown_apart():
    trace = [served(1, "v1"), served(2, "v2", stale=True), served(3, "v1")]
    counts = recount(trace)
    assert (counts.bounces, counts.bounces_stale_caused) == (1, 1)
    assert recount([served(1, "v1"), served(2, "v2"), served(3, "v1", session=0)]).bounces_stale_caused == 0


def test_undoing_a_stale_envoys_stage_move_may_take_two_moves_and_no_more():
    """Found by the soak: a stale Envoy, on its old weights, moved a canary session into
    prod (same version); a fresh Envoy honouring that stage cookie moved it to prod's
    rollback target, and another took it back to the canary: both undoing moves are the
    stale Envoy's doing, until the session is back where it found it. A third move, or any
    move once the session is back, is not."""
    rollout = [action(0, "deploy", "v2"), action(1, "rollback", "v1")]
    undone = rollout + [served(2, "v2", "canary", refresh=True), served(3, "v2", "prod", stale=True),
                        served(4, "v1", "prod", refresh=True), served(5, "v2", "canary", refresh=True)]
    counts = recount(undone)
    assert counts.refreshes_per_session_max_fresh == 1 and counts.stale_moves == 1
    assert counts.bounces == counts.bounces_stale_caused == 1 <= STALE_BOUNCES_PER_MOVE * counts.stale_moves
    # Back where the stale Envoy found it: later moves are the deciding Envoys' own (the
    # return at 6 left v1 by an undoing move, so it is still set apart; the one at 7 is not).
    after = undone + [served(6, "v1", "prod", refresh=True), served(7, "v2", "canary", refresh=True)]
    assert (recount(after).bounces, recount(after).bounces_stale_caused) == (3, 2)
    # Not back after two moves: the third is the deciding Envoy's own.
    third = rollout + [served(2, "v2", "canary", refresh=True), served(3, "v2", "prod", stale=True),
                       served(4, "v1", "prod", refresh=True), served(5, "v2", "prod", refresh=True),
                       served(6, "v1", "prod", refresh=True), served(7, "v2", "prod", refresh=True)]
    counts = recount(third)
    assert (counts.bounces, counts.bounces_stale_caused) == (3, 2)
    assert counts.refreshes_per_session_max_fresh == 2


def test_a_simulation_traces_exactly_what_it_recounts():
    from rollway.tools.sim import SimConfig, run

    result = run(SimConfig(scenario="rollback", envoys=3, sessions=200, lag_max=10, seed=2, trace=True))
    responses = [line for line in result.trace if "action" not in line]
    actions = [line for line in result.trace if "action" in line]
    assert responses and all(set(line) == {"t", "session", "envoy", "stage", "version", "refresh", "stale"}
                             for line in responses)
    assert [(a["action"], a["stage"], a["target"]) for a in actions] == [
        ("deploy", "prod", "v2"), ("halt", "prod", "v2"), ("rollback", "prod", "v1")]
    counted = recount(result.trace).summary()
    assert {k: result.metrics[k] for k in counted} == counted     # the summary is the recount of the trace
    assert [line["t"] for line in result.trace] == sorted(line["t"] for line in result.trace)
