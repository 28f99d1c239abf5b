"""The bad-build guard's rule (rollway.model.guard): what it trips on, what it never trips
on, and its false-halt rate over a deploy's repeated looks, measured by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from rollway.model.guard import Guard, Health, judge

pytestmark = [pytest.mark.unit]

GUARD = Guard(max_error_ratio=0.05, min_requests=500)


def halted_deploys(candidate_rate: float, baseline_rate: float, deploys: int = 2000, looks: int = 600,
                   per_look: int = 20, baseline_per_look: int = 200, seed: int = 7) -> tuple[int, list[int]]:
    """Simulated deploys: at each look the candidate has served ``per_look`` more requests
    and the baseline ``baseline_per_look`` more (cumulative counts, as the guard sees the
    fleet's); returns how many deploys the guard halted and at which look each was halted."""
    rng = np.random.default_rng(seed)
    n = per_look * np.arange(1, looks + 1)
    m = baseline_per_look * np.arange(1, looks + 1)
    x = np.cumsum(rng.binomial(per_look, candidate_rate, (deploys, looks)), axis=1)
    y = np.cumsum(rng.binomial(baseline_per_look, baseline_rate, (deploys, looks)), axis=1)
    p, q = (x + 0.5) / (n + 1), (y + 0.5) / (m + 1)
    z = (x / n - y / m - GUARD.max_error_ratio) / np.sqrt(p * (1 - p) / n + q * (1 - q) / m)
    tripped = (z > 3.0) & (n >= GUARD.min_requests) & (m >= GUARD.min_requests)
    first = [int(np.argmax(row)) for row in tripped if row.any()]
    # The vectorised statistic is judge()'s: spot-check it on one deploy's last look.
    verdict = judge(GUARD, Health(int(n[-1]), int(x[0, -1])), Health(int(m[-1]), int(y[0, -1])))
    assert verdict.z == pytest.approx(float(z[0, -1]))
    return len(first), first


def test_a_build_as_good_as_its_baseline_is_never_halted():
    # 2,000 deploys x 600 looks (12,000 requests each on the new version), both at 2 %.
    halted, _ = halted_deploys(0.02, 0.02)
    assert halted == 0


def test_a_build_a_little_worse_than_its_baseline_but_within_the_margin_is_not_halted():
    halted, _ = halted_deploys(0.05, 0.02)        # 3 points worse, margin 5
    assert halted == 0


def test_a_build_at_the_margin_is_rarely_halted_over_a_whole_deploy():
    """Exactly max_error_ratio worse: the line the operator drew. One look trips with
    probability 0.13 %; 600 correlated looks, 0.95 % (19 of 2,000: the module docstring)."""
    halted, _ = halted_deploys(0.07, 0.02)
    assert halted / 2000 < 0.05, halted


def test_a_bad_build_is_halted_as_soon_as_it_is_judged():
    halted, first = halted_deploys(0.30, 0.02)    # 30 % of requests answer 500
    assert halted == 2000
    judged_from = GUARD.min_requests // 20 - 1     # the look at which it has served min_requests
    assert max(first) == judged_from, (min(first), max(first))


def test_nothing_is_judged_below_min_requests():
    bad = Health(requests=499, errors=499)
    verdict = judge(GUARD, bad, Health(requests=10000, errors=0))
    assert not verdict.judged and not verdict.trips
    assert not judge(GUARD, Health(500, 500), Health(499, 0)).judged       # nor against a thin baseline
    tripped = judge(GUARD, Health(500, 150), Health(10000, 200))
    assert tripped.judged and tripped.trips
    assert tripped.figures() == "5xx 30.0% (150 of 500) vs baseline 2.0% (200 of 10000), z 11.2"
