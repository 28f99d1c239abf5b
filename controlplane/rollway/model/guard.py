"""The bad-build guard's rule (issue 28): is a version's 5xx ratio worse than its stage
baseline's by more than the route map's ``max_error_ratio``, beyond what chance explains?

The rule is one-sided and margin-shifted: with ``p`` the candidate's 5xx ratio and ``q`` the
baseline's, the guard trips when the data reject ``p - q <= max_error_ratio``. The statistic
is the two-proportion Wald z of the excess over the margin,

    z = (p^ - q^ - max_error_ratio) / sqrt(p~(1 - p~)/n + q~(1 - q~)/m)

with ``p~ = (errors + 0.5) / (requests + 1)`` (and likewise ``q~``) so that a version with no
error yet still has a spread, and it trips at ``z > Z_TRIP``. A version is judged only once it
and its baseline have each served ``min_requests``: a small canary is never judged on a
handful of requests.

Why a margin and not "any difference": a build 0.1 point worse than the one it replaces is
not what an operator wants halted mid-deploy; ``max_error_ratio`` is the difference that
matters, and the test asks whether the data show more than that.

False halts. The guard looks again at every sample of the fleet's counts (cumulative since
the version appeared), so the chance of a false halt is that of a sequence of looks, not of
one: ``tests/model/test_guard.py`` measures it by simulation. A version as good as its
baseline (both at 2 %, margin 0.05) is never halted: 0 in 2,000 simulated deploys of 600
looks each (the excess it would need is about 8 standard errors at 500 requests and grows
with the count). At the boundary itself (the candidate exactly ``max_error_ratio`` worse),
a single look halts with probability 1 - Phi(3) = 0.13 %, and a whole deploy's 600 looks
0.95 % (19 of 2,000 simulated deploys; the test holds it under 5 %): a build that bad is at
the line the operator drew. A build 30 points worse is halted at the first look that judges
it, in every simulated deploy.

Usage::

    guard = Guard(max_error_ratio=0.05, min_requests=500, action=Action.ROLLBACK)
    verdict = judge(guard, Health(requests=800, errors=240), Health(requests=9000, errors=180))
    verdict.trips, verdict.figures()      # True, "5xx 30.0% (240 of 800) vs baseline 2.0% ..."
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Z_TRIP = 3.0     # one-sided: 0.13 % per look for a build exactly at the margin


class Action(StrEnum):
    HALT = "halt"            # no new sessions; those on it stay
    ROLLBACK = "rollback"    # and every session on it goes back once


@dataclass(frozen=True)
class Guard:
    """A route map's ``guard`` (service-wide, or a rolling stage's override)."""
    max_error_ratio: float = 0.05
    min_requests: int = 500
    action: Action = Action.HALT

    def to_json(self) -> dict[str, Any]:
        return {"max_error_ratio": self.max_error_ratio, "min_requests": self.min_requests,
                "action": self.action.value}


@dataclass(frozen=True)
class Health:
    """A version's requests and 5xx responses, summed over the fleet's Envoys."""
    requests: int
    errors: int

    @property
    def ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    judged: bool            # both had min_requests
    trips: bool
    z: float
    candidate: Health
    baseline: Health

    def figures(self) -> str:
        """What tripped it (or did not), as the halt records and the status show it."""
        c, b = self.candidate, self.baseline
        return (f"5xx {100 * c.ratio:.1f}% ({c.errors} of {c.requests}) vs baseline {100 * b.ratio:.1f}% "
                f"({b.errors} of {b.requests}), z {self.z:.1f}")


def judge(guard: Guard, candidate: Health, baseline: Health) -> Verdict:
    if candidate.requests < guard.min_requests or baseline.requests < guard.min_requests:
        return Verdict(False, False, 0.0, candidate, baseline)
    p = (candidate.errors + 0.5) / (candidate.requests + 1)
    q = (baseline.errors + 0.5) / (baseline.requests + 1)
    spread = math.sqrt(p * (1 - p) / candidate.requests + q * (1 - q) / baseline.requests)
    z = (candidate.ratio - baseline.ratio - guard.max_error_ratio) / spread
    return Verdict(True, z > Z_TRIP, z, candidate, baseline)


__all__ = ["Action", "Guard", "Health", "Verdict", "Z_TRIP", "judge"]
