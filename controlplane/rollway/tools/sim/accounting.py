"""What the simulator measures besides bounces and reloads, defined by the sessions and
the world alone.

``Sessions``: where each session is. Bounces and reloads are not counted here: they are
counted from the trace's lines alone (``rollway.tools.sim.recount``), so anyone can recount
a run's figures from its ``--trace`` file.

``Overload``: per tick and version, the traffic the version got against the bound the
README states, at the same tick: the largest share any Envoy's config gives the version now
(Envoys route by what they were told), or, for a version that may hold sessions, the
largest share any config gave it since it last could not (sessions are only ever held,
never moved to balance load). A version cannot hold sessions in a config whose deploy
drains it (the oldest listed in a forward deploy, the newest in a rollback, once the
target is admitted: its sessions go straight to the target); it can in every other. From
when some config lists three versions until the deploy ends, a deploy's target also
carries every session that was left on the versions it drains, or on versions gone from
the configs (each version's largest share while drained, summed):
they go straight to it rather than through the version in between. A tick counts as over
the bound when the version's requests exceed it by more than five standard deviations of
sampling, twice over: which sessions ask in a tick (binomial in the tick's requests), and
how many of the stage's finite sessions fall in a share of the hash (binomial in the
sessions; with 1,000 sessions a 10% share holds 100 +- 10 of them, found by the state
machine as a tick "over" the bound when both drew high).
"""

from __future__ import annotations

import math
from collections import Counter, deque


class Sessions:
    """Where each session is: its version and stage, and how many sessions each holds (the
    overload bound's resident shares and the time series read these)."""

    def __init__(self, n: int):
        self.last: list[str | None] = [None] * n
        self.on_version: Counter = Counter()
        self.stage: list[str] = [""] * n
        self.on_stage: Counter = Counter()                         # (stage, version) -> sessions

    def served(self, i: int, version: str, stage: str = "") -> None:
        """Session ``i`` got a successful response from ``version`` in ``stage``."""
        prev = self.last[i]
        if prev == version and self.stage[i] == stage:     # most requests: nothing moved
            return
        if prev != version:
            if prev is not None:
                self.on_version[prev] -= 1
            self.on_version[version] += 1
        if prev is not None:
            self.on_stage[(self.stage[i], prev)] -= 1
        self.on_stage[(stage, version)] += 1
        self.last[i], self.stage[i] = version, stage


WINDOW = 10    # ticks summed per check
Z = 5.0        # standard deviations of sampling tolerated


def tolerated(window, sessions: int) -> float:
    """The most requests the version may get over the last ``WINDOW`` ticks, each tick
    ``(got, total, bound)``, before a tick counts as over the bound. Derived once: under the
    bound, a tick's requests to the version are binomial in the tick's requests (variance
    ``T·b(1-b)`` each, independent across ticks), plus how many of the stage's ``S`` finite
    sessions fall in its share of the hash, binomial in the sessions and the same for every
    tick of the window (variance ``(ΣT)²·b(1-b)/S``). ``Z`` standard deviations of both,
    and two requests for rounding: a false alarm about once in 3.5 million checks. What it
    lets through is stated in the README ("Overload"): with 1,000 sessions asking 0.25 times
    a second, 1.57x a 0.1 bound and 1.19x a 0.5 bound; with 10,000 at 0.2, 1.18x and 1.06x."""
    total = sum(n for _, n, _ in window)
    expected = sum(n * b for _, n, b in window)
    mean = expected / total if total else 0.0
    variance = sum(n * b * (1 - b) for _, n, b in window)
    if sessions:
        variance += total * total * mean * (1 - mean) / sessions
    return expected + Z * math.sqrt(variance) + 2


class Overload:
    def __init__(self) -> None:
        self.held: dict[tuple[str, str], float] = {}
        self.holding: dict[tuple[str, str], bool] = {}   # whether some config let it hold, last tick
        self.three: set[str] = set()        # stages where some config listed three versions, deploy not over
        self.absorbed: dict[str, float] = {}  # stage -> the session share left on drained versions
        self.drained_peak: dict[str, dict[str, float]] = {}   # stage -> version -> its peak while drained
        self.ratios: list[float] = []       # traffic share / capacity share
        self.bounds: list[float] = []       # the bound, same unit, same tick
        self.excess: list[float] = []       # traffic share / bound share
        self.violations: list[tuple] = []
        self.weight_peak: dict[str, float] = {}    # stage -> its largest weight so far
        self.weight_drop: dict[str, float] = {}    # stage -> the most weight it has given up since
        self.weight_now: dict[str, float] = {}
        self.served: dict[str, set[str]] = {}      # stage -> every version it has served
        self.windows: dict[tuple[str, str], deque] = {}   # (stage, version) -> the last WINDOW ticks

    def weights(self, weights: dict[str, float], capacities: dict[str, dict[str, float]]) -> None:
        """The operator's stage weights and each stage's versions, once a tick: a weight
        change moves sessions between stages, and a session keeps its version when the stage
        it moves into serves it (router.cc, choose_stage), so that stage's copy of the
        version also carries up to the weight moved (a canary shrinking into prod while
        prod's copy of the canary's build is not admitted yet holds them)."""
        total = sum(weights.values()) or 1.0
        # The weight a stage gave up counts for the rest of the run: a session it gave up
        # moves when it next asks, which may be any time later (an idle tab), and keeps its
        # version if the stage it moves into serves it by then.
        for stage, weight in weights.items():
            share = weight / total
            self.weight_now[stage] = share
            self.weight_peak[stage] = max(self.weight_peak.get(stage, 0.0), share)
            self.weight_drop[stage] = max(self.weight_drop.get(stage, 0.0), self.weight_peak[stage] - share)
        for stage, caps in capacities.items():
            self.served.setdefault(stage, set()).update(v for v, c in caps.items() if c > 0)

    def imported(self, stage: str, version: str) -> float:
        """The share of ``stage``'s sessions that other stages' weight given up may have
        brought to it on ``version``."""
        into = self.weight_now.get(stage, 0.0)
        if not into:
            return 0.0
        return min(1.0, sum(drop for other, drop in self.weight_drop.items()
                            if other != stage and version in self.served.get(other, ())) / into)

    def tick(self, t: float, stage: str, capacities: dict[str, float], requests: Counter, total: int,
             views: list[tuple[dict[str, float], set[str], str | None]], resident: dict[str, float],
             sessions: int = 0) -> None:
        """One rolling stage at one tick: ``capacities`` registered now, ``requests`` per
        version out of ``total``, ``views``: per Envoy, the shares its hash gives, the
        versions its config lets hold sessions and its deploy's target; ``resident``: the
        share of the stage's sessions last served by each version, out of ``sessions``."""
        versions = {v for shares, holds, _ in views for v in (*shares, *holds)} | set(capacities)
        for v in versions:
            now = max((shares.get(v, 0.0) for shares, _, _ in views), default=0.0)
            key = (stage, v)
            holding = any(v in h for _, h, _ in views)
            if holding and not self.holding.get(key, True):
                # A version a deploy was draining may hold again (the deploy paused: half a
                # reversal, or a change of way settling): the sessions still on it stay, so
                # it carries their share (found by the state machine: 43% of the sessions
                # on a version down to 11% of the capacity while the deploy paused).
                now = max(now, resident.get(v, 0.0))
                self.held[key] = now
            self.holding[key] = holding
            self.held[key] = max(self.held.get(key, 0.0), now) if holding else now
        # From when some config lists three versions until the deploy is over, the target
        # also takes every session left on the versions it drains (they go straight to it).
        if any(len(shares) >= 3 for shares, _, _ in views):
            self.three.add(stage)
        elif all(len(shares) <= 1 for shares, _, _ in views):
            self.three.discard(stage)
            self.absorbed.pop(stage, None)
            self.drained_peak.pop(stage, None)
        if stage in self.three:
            listed = {v for shares, _, _ in views for v in shares}
            # Drained: what a config drains, and what is no longer registered at all (an
            # Envoy fallen silent may still list it; found by the state machine).
            registered = {v for v, c in capacities.items() if c > 0}
            drained = {v for shares, holds, _ in views for v in shares if v not in holds} | \
                (set(resident) - (listed & registered))
            peaks = self.drained_peak.setdefault(stage, {})
            for v in drained:
                peaks[v] = max(peaks.get(v, 0.0), resident.get(v, 0.0))
            self.absorbed[stage] = sum(peaks.values())
        targets = {target for _, _, target in views if target}
        for v in targets & versions:
            # What a target takes straight from drained versions it keeps (held), also
            # once the deploy's target changes.
            now = max((shares.get(v, 0.0) for shares, _, _ in views), default=0.0)
            key = (stage, v)
            self.held[key] = max(self.held.get(key, 0.0), now + self.absorbed.get(stage, 0.0))
        cap_total = sum(c for c in capacities.values() if c > 0)
        if not cap_total:
            return
        for v, c in capacities.items():
            share = c / cap_total
            now = max((shares.get(v, 0.0) for shares, _, _ in views), default=0.0)
            # A deploy's target that holds keeps every session on it (wherever their hash now
            # lies) and gains every session its hash share gives it: up to its share plus
            # the sessions already on it (found by the state machine once checks summed ten
            # ticks: 76% of the requests on a rollback's target whose share was 68%).
            kept = now + resident.get(v, 0.0) if v in targets and any(v in h for _, h, _ in views) else 0.0
            bound = min(1.0, max(now, self.held.get((stage, v), 0.0), kept) + self.imported(stage, v))
            got = requests.get(v, 0)
            window = self.windows.setdefault((stage, v), deque(maxlen=WINDOW))
            window.append((got, total, bound))
            if share < 0.05 or sum(n for _, n, _ in window) < 200:
                continue
            self.ratios.append(got / total / share)
            self.bounds.append(bound / share)
            self.excess.append(got / total / bound if bound else (0.0 if got == 0 else math.inf))
            if sum(g for g, _, _ in window) > tolerated(window, sessions):
                self.violations.append((t, stage, v, got, total, round(share, 4), round(bound, 4)))

    def metrics(self) -> dict:
        ratios = sorted(self.ratios)
        return {
            "overload_max": round(ratios[-1], 3) if ratios else 0.0,
            "overload_p99": round(ratios[min(len(ratios) - 1, int(0.99 * len(ratios)))], 3) if ratios else 0.0,
            "overload_bound_max": round(max(self.bounds, default=0.0), 3),
            "overload_over_bound_max": round(max(self.excess, default=0.0), 3),
            "overload_violations": len(self.violations),
            "overload_violation_first": list(self.violations[0]) if self.violations else None,
        }


__all__ = ["Overload", "Sessions"]
