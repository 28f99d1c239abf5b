"""Deployment direction of a rolling stage, inferred from how capacity moves.

A deploy step moves hosts from one version to another: one version's capacity goes up
while another's goes down. Which of the two is newer (versions are ordered by when this
stage first saw them) says whether the step was forward or a rollback. Changes where
versions only grow (autoscaling up) or only shrink (scaling in, spot hosts vanishing)
carry no evidence about direction, so they can never flip it.

States: ``steady``; ``forward`` to a target (the newest version gaining hosts);
``rollback`` to a target (an older version regaining hosts). A state ends in ``steady``
when its target holds all the stage's capacity. Leaving a non-steady state for a
different one needs ``switch_fraction`` of the stage's capacity to have moved that way
in consecutive steps, so one noisy step (a spot loss on the new version together with an
old host added by an autoscaler) cannot flip a deploy. A forward deploy only ever
retargets to a newer version (a third version starting mid-ramp), a rollback only to an
older one.

Usage::

    tracker = DirectionTracker()
    for capacities in snapshots:                 # {"v1": 90, "v2": 10} ...
        state, target = tracker.observe(capacities)
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEADY, FORWARD, ROLLBACK = "steady", "forward", "rollback"


@dataclass
class DirectionTracker:
    switch_fraction: float = 0.05       # share of capacity that must move to change a deploy's way
    state: str = STEADY
    target: str | None = None
    order: list[str] = field(default_factory=list)   # versions, oldest first (first seen)
    _previous: dict[str, float] | None = None
    _pending: tuple[str, str] | None = None          # (state, target) being confirmed
    _pending_moved: float = 0.0

    def to_dict(self) -> dict:
        """Everything the tracker knows, for the deploy state record (JSON)."""
        return {"switch_fraction": self.switch_fraction, "state": self.state, "target": self.target,
                "order": list(self.order), "previous": self._previous,
                "pending": list(self._pending) if self._pending else None, "pending_moved": self._pending_moved}

    @classmethod
    def from_dict(cls, d: dict) -> "DirectionTracker":
        tracker = cls(float(d.get("switch_fraction", 0.05)), d.get("state", STEADY), d.get("target"),
                      list(d.get("order", [])))
        tracker._previous = dict(d["previous"]) if d.get("previous") is not None else None
        tracker._pending = (d["pending"][0], d["pending"][1]) if d.get("pending") else None
        tracker._pending_moved = float(d.get("pending_moved", 0.0))
        return tracker

    def rank(self, version: str) -> int:
        return self.order.index(version)

    def observe(self, capacities: dict[str, float]) -> tuple[str, str | None]:
        for version in capacities:
            if version not in self.order:
                self.order.append(version)
        previous = self._previous
        self._previous = dict(capacities)
        if previous is None:
            return self.state, self.target

        versions = set(previous) | set(capacities)
        delta = {v: capacities.get(v, 0.0) - previous.get(v, 0.0) for v in versions}
        gainers = {v: d for v, d in delta.items() if d > 0}
        losers = {v: -d for v, d in delta.items() if d < 0}
        total = sum(capacities.values()) or 1.0

        if gainers and losers:
            # The biggest mover each way; hosts moved from `loser` to `gainer`.
            gainer = max(gainers, key=lambda v: (gainers[v], self.rank(v)))
            loser = max(losers, key=lambda v: (losers[v], -self.rank(v)))
            moved = min(gainers[gainer], losers[loser]) / total
            evidence = (FORWARD if self.rank(gainer) > self.rank(loser) else ROLLBACK, gainer)
            self._consider(evidence, moved)
        elif gainers and self.state == STEADY:
            # Only growth: new hosts launched with the newest build start a deploy; growth
            # of an older version (autoscaling) says nothing.
            newest = max(capacities, key=self.rank)
            if newest in gainers and len([v for v, c in capacities.items() if c > 0]) > 1:
                self._consider((FORWARD, newest), gainers[newest] / total)

        # A deploy is over when its target holds everything.
        if self.state != STEADY and self.target is not None:
            live = [v for v, c in capacities.items() if c > 0]
            if live == [self.target]:
                self.state, self.target = STEADY, None
                self._pending, self._pending_moved = None, 0.0
        return self.state, self.target

    def _consider(self, evidence: tuple[str, str], moved: float) -> None:
        state, target = evidence
        consistent = (state, target) == (self.state, self.target) or (
            # Hosts still moving between older versions while a newer target ramps (a third
            # version started mid-deploy) are part of the same forward movement; retargeting
            # to the older one would send sessions backwards. The mirror holds for rollback.
            state == self.state and self.target is not None and (
                (state == FORWARD and self.rank(target) < self.rank(self.target)) or
                (state == ROLLBACK and self.rank(target) > self.rank(self.target))))
        if consistent:
            self._pending, self._pending_moved = None, 0.0
            return
        if self.state == STEADY:
            self.state, self.target = state, target  # any real move starts a deploy
            self._pending, self._pending_moved = None, 0.0
            return
        if self._pending != evidence:
            self._pending, self._pending_moved = evidence, 0.0
        self._pending_moved += moved
        if self._pending_moved >= self.switch_fraction:
            self.state, self.target = state, target
            self._pending, self._pending_moved = None, 0.0
