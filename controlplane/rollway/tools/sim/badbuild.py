"""The ``bad-build`` scenario's side of a run: which requests fail, what the Envoys report
and when the leader has it, and what the guard is measured on against its unguarded peer.

Every request to the bad version fails with probability ``bad_errors``, to any other with
``errors``, drawn from a generator of its own (the sessions draw the same numbers under
every strategy). A failed request commits nothing (the filter sets no cookie and no reload
on a 5xx). The Envoys' counts reach the leader as LRS and the fleet records bring them:
the counts as they stood at a report, one ``report_interval`` after it.

Measured (``metrics``): ``sessions_met_errors``, sessions that got a 5xx from the bad
version; ``bad_responses``; ``time_to_halt``, from the first failed response of the bad
version to every Envoy in the quorum routing on a config where it is halted (None: never);
``halt_decided_after``, to the leader's decision; ``sessions_left_on_bad``.

Usage::

    book = BadBuildBook(cfg)
    reported = book.report(t)               # every tick: True when a report reached the leader
    if book.fails(t, session, stage, version): ...
    plane.build(world, quorum, t, health=book.reported)
"""

from __future__ import annotations

import random

from rollway.model.guard import Health
from rollway.tools.sim.model import SimConfig
from rollway.tools.sim.scenarios import BAD_VERSION


class BadBuildBook:
    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed + 3)
        self.counts: dict[tuple[str, str], list[int]] = {}     # (stage, version) -> [requests, errors]
        self.in_flight: dict[tuple[str, str], Health] = {}     # the last report, on its way to the leader
        self.reported: dict[tuple[str, str], Health] = {}      # what the leader has
        self.next_report = cfg.report_interval
        self.first_bad: float | None = None
        self.halted_at: float | None = None
        self.reached_at: float | None = None
        self.exposed: set[int] = set()
        self.bad_responses = 0

    def report(self, t: float) -> bool:
        """A report interval passed: the last report reaches the leader (returned: the
        leader decides again, as its tick does), a new one leaves."""
        if t < self.next_report:
            return False
        self.reported = self.in_flight
        self.in_flight = {key: Health(r, e) for key, (r, e) in self.counts.items()}
        self.next_report += self.cfg.report_interval
        return True

    def fails(self, t: float, session: int, stage: str, version: str) -> bool:
        """Whether this request gets a 5xx (and counts it)."""
        bad = version == BAD_VERSION
        failed = self.rng.random() < (self.cfg.bad_errors if bad else self.cfg.errors)
        count = self.counts.setdefault((stage, version), [0, 0])
        count[0] += 1
        if failed:
            count[1] += 1
            if bad:
                self.bad_responses += 1
                self.exposed.add(session)
                if self.first_bad is None:
                    self.first_bad = t
        return failed

    def halted(self, t: float) -> None:
        if self.halted_at is None:
            self.halted_at = t

    def reached(self, t: float) -> None:
        if self.reached_at is None:
            self.reached_at = t

    def metrics(self, sessions_left_on_bad: int) -> dict:
        def since_first(t: float | None) -> float | None:
            return None if t is None or self.first_bad is None else round(t - self.first_bad, 1)
        return {"sessions_met_errors": len(self.exposed), "bad_responses": self.bad_responses,
                "time_to_halt": since_first(self.reached_at), "halt_decided_after": since_first(self.halted_at),
                "sessions_left_on_bad": sessions_left_on_bad}


__all__ = ["BadBuildBook"]
