"""Deployment direction of a rolling stage, inferred from how capacity moves.

A deploy step moves hosts from one version to another: one version's capacity goes up
while another's goes down. Which of the two is newer (versions are ordered by when this
stage first saw them) says whether the step was forward or a rollback. A deploy tool may
do both halves in one serverset change (an in-place swap) or in different ones: a
``maxSurge``-style tool announces the new hosts first and retires the old ones a step
later, and a batch can straddle two debounce windows. So evidence is accumulated across
observations, per version:

- ``gained[v]``: the capacity (as a fraction of the stage) ``v`` gained in observations
  where both its hosts and its share grew (a deploy tool, or an autoscaler, announcing
  hosts of ``v`` alone);
- ``lost[v]``: the capacity ``v`` lost in observations where its hosts and share shrank.

A move from ``b`` to ``a`` is ``min(gained[a], lost[b])``: forward when ``a`` is newer,
rollback when older. Why noise cannot flip a deploy: proportional autoscaling changes no
share, so it adds to neither; a spot loss removes hosts from one version only, so it adds
to ``lost`` but never to anyone's ``gained``; neither, nor both together, ever makes a
move. The accumulators start afresh whenever the deploy advances (its target gains hosts and
share) or moves the deploy's way, so only what happened since the last deploy step counts.
Leaving a non-steady state for a different one needs the move to reach ``switch_fraction``
of the stage's capacity. What capacity alone cannot tell from a rollback: an autoscaler
growing only the old version while spot losses take hosts of the new one, together 5% of
the stage between two deploy steps.

While half a reversal has been seen (a version older than a forward deploy's target has
gained hosts and share since the deploy last advanced: the first half of a surge-style
rollback, or an autoscaler growing the old version), the deploy is *published* as
``steady`` with its target (``published()``): nobody is moved either way until the other
half shows whether it was a rollback. ``steady`` moves nobody, so this costs a pause and
never a bounce; the deploy's next step (its target gaining) resumes it.

States: ``steady``; ``forward`` to a target (the newest version gaining hosts);
``rollback`` to a target (an older version regaining hosts). A deploy ends in ``steady``
when one version holds all the stage's capacity. A forward deploy only ever retargets to a
newer version (a third version starting mid-ramp), a rollback only to an older one.

Usage::

    tracker = DirectionTracker()
    for capacities in snapshots:                 # {"v1": 90, "v2": 10} ...
        state, target = tracker.observe(capacities)
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEADY, FORWARD, ROLLBACK = "steady", "forward", "rollback"
EPSILON = 1e-9     # share changes below this are float noise (proportional scaling)


@dataclass
class DirectionTracker:
    switch_fraction: float = 0.05       # share of capacity that must move to change a deploy's way
    state: str = STEADY
    target: str | None = None
    order: list[str] = field(default_factory=list)   # versions, oldest first (first seen)
    _previous: dict[str, float] | None = None
    _gained: dict[str, float] = field(default_factory=dict)   # share gained with hosts, since the last step
    _lost: dict[str, float] = field(default_factory=dict)     # share lost with hosts, since the last step

    def to_dict(self) -> dict:
        """Everything the tracker knows, for the deploy state record (JSON)."""
        return {"switch_fraction": self.switch_fraction, "state": self.state, "target": self.target,
                "order": list(self.order), "previous": self._previous,
                "gained": dict(self._gained), "lost": dict(self._lost)}

    @classmethod
    def from_dict(cls, d: dict) -> "DirectionTracker":
        tracker = cls(float(d.get("switch_fraction", 0.05)), d.get("state", STEADY), d.get("target"),
                      list(d.get("order", [])))
        tracker._previous = dict(d["previous"]) if d.get("previous") is not None else None
        tracker._gained = {str(k): float(v) for k, v in (d.get("gained") or {}).items()}
        tracker._lost = {str(k): float(v) for k, v in (d.get("lost") or {}).items()}
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

        total, before = sum(capacities.values()), sum(previous.values())
        advanced = False
        for v in set(previous) | set(capacities):
            hosts = capacities.get(v, 0.0) - previous.get(v, 0.0)
            share = (capacities.get(v, 0.0) / total if total else 0.0) - \
                (previous.get(v, 0.0) / before if before else 0.0)
            # Counted in hosts (a fraction of the stage), on condition that the share moved
            # the same way: a share alone understates a move (it is diluted by the others).
            if hosts > 0 and share > EPSILON:
                self._gained[v] = self._gained.get(v, 0.0) + hosts / total
                advanced = advanced or v == self.target
            elif hosts < 0 and share < -EPSILON:
                self._lost[v] = self._lost.get(v, 0.0) - hosts / (before or 1.0)
        if advanced:
            self._restart_evidence()             # the deploy advanced: earlier noise counts no more

        move = self._largest_move()
        if move is not None:
            self._consider(*move)
        elif self.state == STEADY and previous and capacities:
            # Only growth: new hosts launched with the newest build start a deploy (surge
            # style, before any old host goes); growth of an older version says nothing.
            newest = max(capacities, key=self.rank)
            if self._gained.get(newest, 0.0) > EPSILON and len([c for c in capacities.values() if c > 0]) > 1 \
                    and capacities.get(newest, 0.0) > previous.get(newest, 0.0):
                self._enter(FORWARD, newest)

        # A deploy is over when one version holds everything.
        live = [v for v, c in capacities.items() if c > 0]
        if self.state != STEADY and len(live) <= 1:     # one version left, or none (a stage emptied)
            self._enter(STEADY, None)
        return self.state, self.target

    def published(self) -> tuple[str, str | None]:
        """The direction to publish: ``state`` and ``target``, or ``steady`` (naming the
        target) while half a reversal is pending."""
        if self.state != STEADY and self.target is not None and self.target in self.order:
            for version, gained in self._gained.items():
                if gained > EPSILON and version != self.target and version in self.order and (
                        self.rank(version) < self.rank(self.target) if self.state == FORWARD
                        else self.rank(version) > self.rank(self.target)):
                    return STEADY, self.target
        return self.state, self.target

    def _largest_move(self) -> tuple[tuple[str, str], float] | None:
        best = None
        for gainer, gained in self._gained.items():
            for loser, lost in self._lost.items():
                if gainer == loser or gainer not in self.order or loser not in self.order:
                    continue
                moved = min(gained, lost)
                if moved <= EPSILON:
                    continue
                way = FORWARD if self.rank(gainer) > self.rank(loser) else ROLLBACK
                key = (moved, self.rank(gainer) if way == FORWARD else -self.rank(gainer))
                if best is None or key > best[0]:
                    best = (key, (way, gainer), moved)
        return (best[1], best[2]) if best else None

    def _restart_evidence(self) -> None:
        self._gained, self._lost = {}, {}

    def _enter(self, state: str, target: str | None) -> None:
        self.state, self.target = state, target
        self._restart_evidence()

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
            self._restart_evidence()
        elif self.state == STEADY:
            self._enter(state, target)          # any real move starts a deploy
        elif moved >= self.switch_fraction:
            self._enter(state, target)
