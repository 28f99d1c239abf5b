"""What a simulation is made of: its configuration, the deployed world, and how a deploy
tool paces its steps."""

from __future__ import annotations

from dataclasses import dataclass, field

# The operator actions a trace names (rollway.tools.sim.recount): a deploy, rollback or
# blue-green switch starts a rollout toward its target; a weight change moves sessions
# between stages; a halt (a rollback announced: the old version's first hosts back while the
# new one keeps all of its own, so every Envoy stops moving sessions forward before any is
# sent back) sends nobody anywhere.
START, DEPLOY, ROLLBACK, WEIGHTS, SWITCH, HALT = "start", "deploy", "rollback", "weights", "switch", "halt"


@dataclass
class SimConfig:
    scenario: str = "rolling"
    strategy: str = "rollway"
    envoys: int = 8
    sessions: int = 10000
    lag_max: float = 30.0       # each config update reaches each Envoy after uniform(0, lag_max), in order
    seed: int = 1
    hosts: int = 20             # hosts in the deployed stage
    batch: int = 2              # hosts replaced per deploy step
    step_interval: float = 20.0  # seconds between deploy steps
    request_rate: float = 0.2   # requests per session per second
    tick: float = 1.0           # simulated seconds per tick
    # The serverset watcher: a window opens at a change and the view is taken ``debounce``
    # later; a view that turns empty is held for ``empty_grace``. A deploy step's host
    # changes are spread over ``spread`` seconds, so a batch may straddle windows.
    debounce: float = 1.0
    empty_grace: float = 30.0
    spread: float = 3.0
    # Drain: a deregistered host keeps serving for ``drain`` seconds (README, "The deploy
    # tool's side"), then stops; requests sent to it afterwards fail (503, nothing committed).
    # None: one propagation time (debounce + lag_max + 1), what waiting on the gate gives.
    drain: float | None = None
    # The control plane as a fleet: Envoys split across replicas (one leader writes the deploy
    # state, followers render it); failures at given times: ("kill-leader", t): no decision
    # until another replica's campaign wins, ``session_timeout`` later, the dead replica's
    # Envoys fail over after ``reconnect``; ("restart", t): a replica stops cleanly and comes
    # back, its Envoys reconnect after ``reconnect``. ``silent``: (Envoy index, time) pairs:
    # from then the Envoy applies and ACKs nothing more, still routing on its last config;
    # after ``ack_timeout`` it leaves the quorum. ``reconnect_rate``: each Envoy's stream also
    # breaks at random (per simulated minute) and reconnects to the next replica.
    replicas: int = 1
    failures: tuple = ()
    silent: tuple = ()
    session_timeout: float = 10.0
    reconnect: float = 2.0
    ack_timeout: float = 30.0
    reconnect_rate: float = 0.02
    trace: bool = False         # keep a replayable trace (rollway.tools.sim.recount) and recount from it
    # The ``bad-build`` scenario: the new version answers ``bad_errors`` of its requests with
    # a 5xx, every other version ``errors`` (a 5xx commits nothing: no cookie, no reload).
    # Envoys report each version's counts every ``report_interval`` seconds, reaching the
    # leader one interval later (LRS, then the fleet records).
    bad_errors: float = 0.3
    errors: float = 0.02
    report_interval: float = 2.0

    @property
    def drain_seconds(self) -> float:
        return self.debounce + self.lag_max + 1.0 if self.drain is None else self.drain


@dataclass
class World:
    """What the deploy tool and the operator have made true: registered capacity per stage
    (``stage`` or ``stage/slot``) and version, stage weights, the blue-green slot, and which
    operator action (``episode``, of ``kind``, to ``target``) this is part of."""
    hosts: dict[str, dict[str, float]]
    weights: dict[str, float]
    active: str = "blue"
    episode: int = 0
    kind: str = START
    target: str | None = None        # the version a deploy or rollback takes its stage to
    # HALT: the version the operator halts and rolls back (``rollway deploy halt --rollback``;
    # None: the one the deploy under way was taking its stages to).
    halted: str | None = None


@dataclass(frozen=True)
class Gate:
    """Pacing of a step: ``extra`` seconds after the deploy gate opens (every Envoy in the
    quorum holds the newest config, nothing waits for admission, the view is current), as
    ``rollway deploy wait`` paces a deploy tool."""
    extra: float = 0.0


@dataclass(frozen=True)
class After:
    """Pacing of a step: ``seconds`` after the previous one, whatever the fleet is doing
    (autoscalers and spot losses do not wait for anyone)."""
    seconds: float = 0.0


@dataclass
class SimResult:
    metrics: dict
    series: dict = field(default_factory=dict)   # time -> {"sessions": {v: share}, "capacity": {v: share}}
    trace: list = field(default_factory=list)    # with SimConfig.trace: the trace's lines, in time order
