"""Deployment direction of a rolling stage, inferred from how capacity moves.

A deploy step moves hosts from one version to another: one version's capacity goes up
while another's goes down. Which of the two is newer (versions are ordered by when this
stage first saw them) says whether the step was forward or a rollback. A deploy tool may
do both halves in one serverset change (an in-place swap) or in different ones: a
``maxSurge``-style tool announces the new hosts first and retires the old ones a step
later, and a batch can straddle two debounce windows. So evidence is accumulated across
observations, per version, since the deploy last moved its way or changed way: ``net[v]``,
the hosts ``v`` gained minus those it lost, each counted only in an observation where its
share moved the same way. ``gained``/``lost`` are the positive and negative parts, as
fractions of the stage.

A move from ``b`` to ``a`` is ``min(gained[a], lost[b])``: forward when ``a`` is newer,
rollback when older. A move starts a deploy from ``steady``; under way, **capacity never
changes a deploy's way** (forward to rollback or back): an autoscaler's hosts landing old
version first, a scale-down landing new version first and spot losses on the new version
sum to exactly what a slow rollback looks like (the state machine's soak found such sums
again and again), and a wrong turn sends sessions back to versions they had left. A
rollback is the operator's (``turn_back``: ``rollway deploy halt --rollback``, recorded in
the deploy state); a deploy whose target's hosts are all gone turns by the evidence
(``handover``). A retarget the same way (a rollback to an older version still) needs the
move to reach ``switch_fraction`` of the stage's capacity and to hold for ``settle``
seconds (published as ``steady`` meanwhile, which moves nobody). A build the stage has
never seen gaining hosts mid-deploy retargets a deploy to it at once.

While half a reversal has been seen (a version on the other side of the target gained any
capacity since the target last gained any: the first half of a surge-style rollback,
or an autoscaler's hosts for the old version landing before those for the new), the
deploy is *published* as ``steady`` naming its target (``published()``): nobody is moved
either way until the other half shows. ``steady`` moves nobody, so this costs a pause and
never a bounce; and a deploy tool paced by the gate retires the target's last hosts only
once every Envoy has stopped moving sessions to it.

States: ``steady``; ``forward`` to a target (the newest version gaining hosts);
``rollback`` to a target (an operator's rollback, or a gone target handed over to an older
version). A deploy ends in ``steady`` when one version holds all the stage's capacity. A
forward deploy only ever retargets to a newer version (a third version starting mid-ramp),
a rollback only to an older one; a version an operator halted is never a target.

Usage::

    tracker = DirectionTracker()
    for capacities in snapshots:                 # {"v1": 90, "v2": 10} ...
        state, target = tracker.observe(capacities, now, halted)
    tracker.turn_back("v2", capacities, halted)  # an operator's rollback of v2
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEADY, FORWARD, ROLLBACK = "steady", "forward", "rollback"
EPSILON = 1e-9     # share changes below this are float noise (proportional scaling)
GAIN_LOG = 64      # gross gains remembered (observations with a gain)
# Versions remembered in ``order`` (oldest first). Past it, the oldest that nothing refers
# to any more (no capacity, not the target or a pending one, not halted, no net or gross
# gain on record) are forgotten: a year of deploys is thousands of versions, and the order is
# in the deploy record. A version that returns after being forgotten is ordered as new,
# which can only matter after 256 newer versions came and went.
ORDER_LIMIT = 256


@dataclass
class DirectionTracker:
    switch_fraction: float = 0.05       # share of capacity that must move to change a deploy's way
    settle: float = 10.0                # seconds that move must hold (with a clock) before it does
    state: str = STEADY
    target: str | None = None
    order: list[str] = field(default_factory=list)   # versions, oldest first (first seen)
    _previous: dict[str, float] | None = None
    _net: dict[str, float] = field(default_factory=dict)   # hosts gained - lost, since the last move its way
    # Gross gains (hosts, share moving up too), as [observation, version, hosts], the last
    # GAIN_LOG of them: what each version gained since the target last gained any, whatever
    # the target is by then. Gross, not net, so an earlier scale-down's residue cannot hide
    # half a reversal; kept across a change of target, so a reversal that starts while a
    # new target settles is still seen.
    _gains: list = field(default_factory=list)
    _observations: int = 0              # observations with a gain: the log's order
    _pending: list | None = None        # [state, target, since]: a change of way waiting to settle
    # A rollback an operator or the guard declared (``turn_back``), not read from capacity:
    # the observation count when it was, so capacity gained before it does not hold the
    # rollback as half a reversal (gains after it still do: a deploy tool stepping forward again).
    _declared_at: int | None = None
    _now: float | None = field(default=None, repr=False, compare=False)
    _halted: frozenset[str] | set[str] = field(default=frozenset(), repr=False, compare=False)   # this observation's

    def to_dict(self) -> dict:
        """Everything the tracker knows, for the deploy state record (JSON)."""
        return {"switch_fraction": self.switch_fraction, "state": self.state, "target": self.target,
                "order": list(self.order), "previous": self._previous, "net": dict(self._net),
                "settle": self.settle, "pending": self._pending,
                "gains": [list(g) for g in self._gains], "observations": self._observations,
                **({"declared_at": self._declared_at} if self._declared_at is not None else {})}

    @classmethod
    def from_dict(cls, d: dict) -> DirectionTracker:
        tracker = cls(switch_fraction=float(d.get("switch_fraction", 0.05)), state=d.get("state", STEADY),
                      target=d.get("target"), order=list(d.get("order", [])))
        tracker._previous = dict(d["previous"]) if d.get("previous") is not None else None
        tracker._net = {str(k): float(v) for k, v in (d.get("net") or {}).items()}
        tracker.settle = float(d.get("settle", 10.0))
        tracker._gains = [[int(g[0]), str(g[1]), float(g[2])] for g in d.get("gains") or []
                          if isinstance(g, list) and len(g) == 3]
        tracker._observations = int(d.get("observations", 0))
        tracker._declared_at = int(d["declared_at"]) if d.get("declared_at") is not None else None
        pending = d.get("pending")
        tracker._pending = [pending[0], pending[1], float(pending[2])] if isinstance(pending, list) and \
            len(pending) == 3 else None
        return tracker

    def rank(self, version: str) -> int:
        return self.order.index(version)

    def _forget_oldest(self, capacities: dict[str, float]) -> None:
        """Trims ``order`` to ORDER_LIMIT, oldest first, keeping every version still referred to."""
        keep = set(capacities) | set(self._net) | {g[1] for g in self._gains} | set(self._halted)
        keep |= {v for v in (self.target, self._pending[1] if self._pending else None) if v is not None}
        excess = len(self.order) - ORDER_LIMIT
        dropped: set[str] = set()
        for version in self.order:
            if len(dropped) >= excess:
                break
            if version not in keep:
                dropped.add(version)
        self.order = [v for v in self.order if v not in dropped]

    def observe(self, capacities: dict[str, float], now: float | None = None,
                halted: frozenset[str] | set[str] = frozenset()) -> tuple[str, str | None]:
        """The stage's capacities now (``now``: a clock in seconds; without one a retarget
        needs no settling, for tests and tools without time). ``halted``: versions an
        operator halted (``DeployState.halts``): never a deploy's target."""
        self._now = now
        self._halted = halted
        first_seen = [v for v in capacities if v not in self.order and capacities[v] > 0]
        for version in capacities:
            if version not in self.order:
                self.order.append(version)
        if len(self.order) > ORDER_LIMIT:
            self._forget_oldest(capacities)
        previous = self._previous
        self._previous = dict(capacities)
        if previous is None:
            return self.state, self.target

        # Hosts each version gained or lost, counted only when its share moved the same
        # way: proportional scaling moves no share, and a version's share that moves only
        # because another's hosts changed is that other version's doing.
        total, before = sum(capacities.values()), sum(previous.values())
        gained: dict[str, float] = {}
        for v in set(previous) | set(capacities):
            hosts = capacities.get(v, 0.0) - previous.get(v, 0.0)
            share = (capacities.get(v, 0.0) / total if total else 0.0) - \
                (previous.get(v, 0.0) / before if before else 0.0)
            if (hosts > EPSILON and share > EPSILON) or (hosts < -EPSILON and share < -EPSILON):
                self._net[v] = self._net.get(v, 0.0) + hosts
            if hosts > EPSILON and share > EPSILON:
                gained[v] = hosts
        if gained:
            # Counted only when something gained: an observation that changes nothing must
            # leave the deploy state record as it was (the leader observes every second).
            self._observations += 1
            self._gains.extend([self._observations, v, hosts] for v, hosts in sorted(gained.items()))
            del self._gains[:-GAIN_LOG]
        first_seen = [v for v in first_seen if v not in halted]
        if first_seen and self.state != STEADY and len([c for c in capacities.values() if c > 0]) > 1:
            # A build this stage has never seen gains its first hosts mid-deploy: a new
            # deploy to it (a third version started mid-ramp, or a new build after a
            # rollback), whatever else the window holds. Not left to the net evidence: an
            # autoscaler's residue there (an older version's hosts landing first) can leave
            # the version the new one replaces with no net loss, so no move shows, and the
            # deploy would stay on its old target (found by the state machine's soak: a
            # rollback of the third version then read as v2 gaining, forward).
            self._enter(FORWARD, max(first_seen, key=self.rank))
        move = self._largest_move()
        if move is not None:
            self._consider(*move)
        else:
            self._pending = None
        if move is None and self.state == STEADY and capacities:
            # Only growth: new hosts launched with the newest build start a deploy (surge
            # style, before any old host goes); growth of an older version says nothing.
            newest = max(capacities, key=self.rank)
            if self._net.get(newest, 0.0) > EPSILON and newest not in halted and \
                    len([c for c in capacities.values() if c > 0]) > 1:
                self._enter(FORWARD, newest)

        # A deploy whose target has gone (all its hosts retired) is over: its sessions need a
        # way to go now, not after settling, so it becomes a deploy to the version that has
        # gained most since the evidence started (a rollback, if an older one), or steady.
        live = [v for v, c in capacities.items() if c > 0]
        if self.state != STEADY and self.target is not None and self.target not in live and len(live) > 1:
            best = self.handover(capacities, halted)
            if best is not None:
                self._enter(FORWARD if self.rank(best) > self.rank(self.target) else ROLLBACK, best)
            else:
                self._enter(STEADY, None)
        # A deploy is over when one version holds everything.
        if self.state != STEADY and len(live) <= 1:     # one version left, or none (a stage emptied)
            self._enter(STEADY, None)
        return self.state, self.target

    def handover(self, capacities: dict[str, float], halted: frozenset[str] | set[str] = frozenset()) -> str | None:
        """Where the sessions of a deploy whose target has gone should go, by the evidence
        so far (read-only: a follower rendering the leader's state uses it too): the live
        version that gained most, net since the evidence started or gross since the target
        last gained (half a reversal already seen: an in-place rollback's new hosts landed
        in the window before the target's last ones went); None without any gain."""
        live = [v for v, c in capacities.items() if c > 0 and v in self.order]
        total = sum(capacities.values()) or 1.0
        net, gross = self._fractions()[0], self._gained_since_target()
        gains = {v: max(net.get(v, 0.0), gross.get(v, 0.0) / total) for v in live if v in net or v in gross}
        gains = {v: g for v, g in gains.items() if g > EPSILON and v != self.target and v not in halted}
        return max(gains, key=lambda v: (gains[v], self.rank(v))) if gains else None

    def turn_back(self, version: str, capacities: dict[str, float],
                  halted: frozenset[str] | set[str] = frozenset()) -> bool:
        """An operator's or the guard's rollback of ``version`` (``rollway deploy halt --rollback``): a
        deploy taking the stage to it (or a stage at rest serving it) turns back, at once, to the stage's
        baseline: the oldest live version, not halted. Nothing to do when the stage does not
        serve it, nothing older is live, or a rollback is already taking sessions away from
        it. Returns whether the deploy turned (the caller applies it on every step: it is
        idempotent)."""
        live = [v for v, c in capacities.items() if c > 0 and v in self.order]
        if version not in live:
            return False
        if self.state != STEADY and self.target != version:
            # Already going back, or a deploy to another version: a newer build deployed to
            # replace the halted one must not be turned back by the halt (it is applied on
            # every step for as long as it is recorded).
            return False
        older = [v for v in live if self.rank(v) < self.rank(version) and v not in halted]
        if not older:
            return False
        # Back to the stage's baseline, the version the rollout started from: the oldest
        # live one (a third version started while v2 still ramped goes back to v1, where
        # the rollout's sessions came from; once v1 is gone, v2 is the baseline). Not the
        # version just before: sessions moved v1 -> v3 would visit v2 on their way back, and
        # the deploy tool takes v2's hosts back to v1 too.
        self._enter(ROLLBACK, min(older, key=self.rank))
        self._declared_at = self._observations
        return True

    def changing(self) -> tuple[str, str | None] | None:
        """The change of way waiting to settle (state, target), if any: the deploy gate stays
        shut meanwhile, so a deploy tool's next step (a rollback's announcement, say) is
        judged against the way the deploy settled on, not mixed into the evidence for it."""
        return (self._pending[0], self._pending[1]) if self._pending is not None else None

    def settling(self, now: float) -> bool:
        """Whether a change of way is waiting and has settled by ``now`` (decide again)."""
        return self._pending is not None and now - self._pending[2] >= self.settle

    def _fractions(self) -> tuple[dict[str, float], dict[str, float]]:
        """(gained, lost): each version's net movement as a fraction of the stage now."""
        total = sum((self._previous or {}).values()) or 1.0
        gained = {v: n / total for v, n in self._net.items() if n > EPSILON}
        lost = {v: -n / total for v, n in self._net.items() if n < -EPSILON}
        return gained, lost

    def published(self) -> tuple[str, str | None]:
        """The direction to publish: ``state`` and ``target``, or ``steady`` (naming where
        it is going) while a change of way settles or half a reversal has been seen."""
        if self._pending is not None:
            # A change of way settling: move nobody meanwhile, but name where it is going,
            # so sessions on a version that is gone go there straight (not by hash).
            return STEADY, self._pending[1]
        if self.state != STEADY and self.target is not None and self.target in self.order:
            # (A declared rollback moves at once: what capacity showed before it needs no
            # reading, and admission holds the reversal until every Envoy knows the halt.)
            for version, hosts in self._gained_since_target(after=self._declared_at).items():
                # Half a reversal: capacity gained by a version on the other side of the
                # target since the target last gained any, however little (a member may
                # weigh less than one; found by the state machine) (the first half of a
                # surge-style rollback; an autoscaler's hosts for the old version landing
                # before those for the new). Gross gains, not net: a scale-down spread over
                # windows leaves net residues that would hide it (found by the state
                # machine). Move nobody until the other half shows.
                if hosts > EPSILON and version in self.order and (
                        self.rank(version) < self.rank(self.target) if self.state == FORWARD
                        else self.rank(version) > self.rank(self.target)):
                    return STEADY, self.target
        return self.state, self.target

    def _gained_since_target(self, after: int | None = None) -> dict[str, float]:
        """Hosts each other version gained since the target last gained any (and, with
        ``after``, since that observation)."""
        last = max((seq for seq, v, _ in self._gains if v == self.target), default=-1)
        last = max(last, after if after is not None else -1)
        out: dict[str, float] = {}
        for seq, version, hosts in self._gains:
            if seq > last and version != self.target:
                out[version] = out.get(version, 0.0) + hosts
        return out

    def _largest_move(self) -> tuple[tuple[str, str], float] | None:
        best = None
        gains, losses = self._fractions()
        for gainer, gained in gains.items():
            for loser, lost in losses.items():
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
        self._net, self._pending = {}, None

    def _enter(self, state: str, target: str | None) -> None:
        self.state, self.target = state, target
        self._declared_at = None
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
        elif target in self._halted:
            self._pending = None                # a halted version is nobody's target
        elif self.state == STEADY:
            self._enter(state, target)          # any real move starts a deploy
        elif state != self.state:
            # Capacity alone never turns a deploy back (or a rollback forward): an
            # autoscaler's hosts landing old version first, a scale-down landing new
            # version first and spot losses on the new version add up to exactly what a
            # slow rollback looks like (found by the state machine's soak, again and again),
            # and a wrong turn sends sessions back to versions they had left. An operator
            # turns a deploy back (``turn_back``: ``rollway deploy halt --rollback``); a
            # deploy whose target's hosts are all gone turns by the evidence (handover).
            self._pending = None
        elif moved < self.switch_fraction:
            self._pending = None
        elif self._now is None:
            self._enter(state, target)
        elif self._pending is None or self._pending[:2] != [state, target]:
            self._pending = [state, target, self._now]   # published as steady until it settles
        elif self._now - self._pending[2] >= self.settle:
            self._enter(state, target)
