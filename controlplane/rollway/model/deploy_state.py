"""The deploy state of a service: everything its filter config depends on beyond the route
map and the serverset views, as one record in the store.

Per rolling stage the direction tracker (its version sequence, first seen first, never
re-derived from member order or version names; its state, target, and the evidence
gathered since the deploy last advanced), the admission decisions (admitted versions, held
reversals, the last way sessions were moved, weight-change and blue-green steps), the
generation, and the digest of the config that generation names; and the operator's halts
(``Halt``: a version that gets no new sessions, and with ``rollback`` whose sessions go back),
with a bounded log of every halt and resume. The service's leader writes it, with
compare-and-set; an operator's halt or resume is a compare-and-set of its own by the replica
that took the request (``with_halt``/``without_halt``), which the leader's next step reads.
Every replica renders its filter config from it (``rollway.model.publication.render_config``),
so replicas send the same bytes.

Usage::

    state = DeployState.from_json(store_bytes) if store_bytes else DeployState()
    config = advance(routemap, views, state, fleet)     # leader: advances state in place
    store.write_deploy_state(service, state.to_json(), expected_version)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rollway.model.admission import AdmissionState
from rollway.model.direction import DirectionTracker

FORMAT = 1
HALT_LOG = 64           # halts and resumes kept in the record, the newest last
MAX_HALTS = 64          # halted versions per service: each is kept in the record


RESUMED = 64            # versions an operator resumed, kept so the guard does not judge them again
GUARD = "guard"         # ``Halt.who`` of the guard's halts


@dataclass(frozen=True)
class Measured:
    """What tripped the guard: the candidate's and the baseline's 5xx ratios, and the
    candidate's requests, summed over the fleet, in the stage that judged it."""
    stage: str
    error_ratio: float
    baseline_error_ratio: float
    requests: int

    def to_dict(self) -> dict:
        return {"stage": self.stage, "error_ratio": self.error_ratio,
                "baseline_error_ratio": self.baseline_error_ratio, "requests": self.requests}

    @classmethod
    def from_dict(cls, d: dict) -> Measured:
        return cls(str(d["stage"]), float(d["error_ratio"]), float(d["baseline_error_ratio"]), int(d["requests"]))


@dataclass(frozen=True)
class Halt:
    """An operator's or the guard's halt of one version of a service, in every stage: it
    gets no new sessions; with ``rollback`` its sessions go back once, to the stage's
    baseline. ``who``/``why``: as given (``guard`` for the guard's); ``at``: seconds since
    the epoch; ``figures``: what tripped it in words, and ``measured`` in numbers, when
    something measured did."""
    version: str
    rollback: bool
    who: str
    why: str
    at: float
    figures: str = ""
    measured: Measured | None = None

    def to_dict(self) -> dict:
        return {"version": self.version, "rollback": self.rollback, "who": self.who, "why": self.why,
                "at": self.at, "figures": self.figures,
                **({"measured": self.measured.to_dict()} if self.measured else {})}

    @classmethod
    def from_dict(cls, d: dict) -> Halt:
        measured = Measured.from_dict(d["measured"]) if d.get("measured") else None
        return cls(str(d["version"]), bool(d.get("rollback", False)), str(d.get("who", "")),
                   str(d.get("why", "")), float(d.get("at", 0.0)), str(d.get("figures", "")), measured)


@dataclass
class DeployState:
    generation: int = 0
    digest: str = ""                       # sha256 of the last published config, generation left out
    trackers: dict[str, DirectionTracker] = field(default_factory=dict)   # rolling stage -> tracker
    admission: AdmissionState = field(default_factory=AdmissionState)
    routemap_revision: int = 0             # the route map the last publication used
    halts: dict[str, Halt] = field(default_factory=dict)    # version -> its halt
    halt_log: list[dict] = field(default_factory=list)      # {"event": "halt"|"resume", ...}, last HALT_LOG
    # Versions an operator resumed (last RESUMED): the operator overrode the guard, which
    # judges them no more (their counts still hold what tripped it).
    resumed: list[str] = field(default_factory=list)

    def halted(self) -> frozenset[str]:
        return frozenset(self.halts)

    def record_halt(self, halt: Halt) -> None:
        """Records ``halt`` in place (replacing an earlier halt of the same version)."""
        self.halts[halt.version] = halt
        self.halt_log = (self.halt_log + [{"event": "halt", **halt.to_dict()}])[-HALT_LOG:]

    def with_halt(self, halt: Halt) -> DeployState:
        """A copy with ``halt`` recorded."""
        state = self.copy()
        state.record_halt(halt)
        return state

    def without_halt(self, version: str, who: str, why: str, at: float) -> DeployState:
        """A copy with ``version``'s halt lifted (a resume); unchanged if it was not halted."""
        if version not in self.halts:
            return self.copy()
        state = self.copy()
        del state.halts[version]
        state.halt_log = (state.halt_log + [{"event": "resume", "version": version, "who": who, "why": why,
                                             "at": at}])[-HALT_LOG:]
        state.resumed = ([v for v in state.resumed if v != version] + [version])[-RESUMED:]
        return state

    def settling(self) -> list[str]:
        """The stages whose deploy is changing way and has not settled yet, in words (the
        deploy gate waits for them)."""
        return [f"{stage}: direction changing to {way}{' -> ' + target if target else ''}, settling"
                for stage, tracker in sorted(self.trackers.items())
                if (change := tracker.changing()) is not None for way, target in [change]]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "generation": self.generation, "digest": self.digest,
                "routemap_revision": self.routemap_revision,
                "stages": {name: t.to_dict() for name, t in sorted(self.trackers.items())},
                "admission": self.admission.to_dict(),
                **({"halts": [h.to_dict() for _, h in sorted(self.halts.items())], "halt_log": self.halt_log}
                   if self.halts or self.halt_log else {}),
                **({"resumed": self.resumed} if self.resumed else {})}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict) -> DeployState:
        if d.get("format") != FORMAT:
            raise ValueError(f"deploy state: format {d.get('format')!r} is not {FORMAT}")
        halts = [Halt.from_dict(h) for h in d.get("halts", [])]
        return cls(int(d["generation"]), str(d.get("digest", "")),
                   {name: DirectionTracker.from_dict(t) for name, t in d.get("stages", {}).items()},
                   AdmissionState.from_dict(d.get("admission", {})), int(d.get("routemap_revision", 0)),
                   {h.version: h for h in halts}, [dict(e) for e in d.get("halt_log", [])][-HALT_LOG:],
                   [str(v) for v in d.get("resumed", [])][-RESUMED:])

    @classmethod
    def from_json(cls, data: bytes) -> DeployState:
        return cls.from_dict(json.loads(data))

    def copy(self) -> DeployState:
        return DeployState.from_dict(json.loads(self.to_json()))
