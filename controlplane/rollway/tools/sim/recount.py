"""Bounces and reloads recounted from a trace alone, by the user's definition (issue 26), so
anyone can check a simulation's zeros from its ``--trace`` file.

The trace is JSON Lines: one line per successful response,
``{"t", "session", "envoy", "stage", "version", "refresh", "stale"}`` (``stale``: the
deciding Envoy was outside the quorum), and one per operator action,
``{"t", "action": "deploy"|"rollback"|"weights"|"switch"|"halt", "stage", "target"}``, in
time order (``halt``: a rollback announced; from then nobody is moved toward ``target``,
the version halted, and the move back may begin as soon as capacity shows it, so a halt
justifies one return from the halted version, and starts no rollout).

- A **bounce** is a session served by a version it had been served before and then left.
  It is *justified* only when an operator action that started after the session left that
  version sends it back: a deploy or rollback whose target is that version in the stage
  that served it, a blue-green switch to it in that stage, or a stage-weight change that
  moves the session to another stage. Each action justifies at most one return per session.
  Which Envoy decided plays no part: ``bounces`` counts every one. Those where the return
  or the move away was a stale Envoy's doing (its response, or one of the at most two
  responses that undo its last move of that session, until the session is back where the
  stale Envoy found it) are also shown apart (``bounces_stale_caused``), with what bounds
  them: each response is the return of at most one bounce and the move away of at most
  one, so a stale Envoy causes at most six bounces per response of its that moved a
  session to another version or stage (``stale_moves``): two at its move, two at each
  move that undoes it.
- A **reload** (a response carrying the refresh signal) is counted per session per
  **rollout**: every step toward one target, canary shifts included. A rollout starts at
  a deploy or rollback to a new target, or a blue-green switch; a reload onto version V
  belongs to the newest rollout toward V (a session finishing the v2 rollout just after
  the v3 deploy began reloads in the v2 rollout), else to the rollout under way.
  ``refreshes_per_session_max`` is the most any session got in one rollout;
  ``..._fresh`` the same without the reloads a stale Envoy caused (those it told, and those
  that undid its last move of that session) or a justified return took (an operator
  action that sends a session back moves it once more): the promise is that this is 1.

Usage::

    counts = recount(json.loads(line) for line in open("trace.jsonl"))
    counts.bounces, counts.refreshes_per_session_max
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MOVES_TO_VERSION = ("deploy", "rollback", "switch")
UNDO_MOVES = 2          # moves after a stale Envoy's that may still be its doing
STALE_BOUNCES_PER_MOVE = 2 * (1 + UNDO_MOVES)   # two at its move, two at each undoing move
ACTIONS = ("deploy", "rollback", "weights", "switch", "halt")


@dataclass
class Counts:
    bounces: int = 0
    bounces_stale_caused: int = 0
    justified_returns: int = 0
    refreshes_per_session_max: int = 0
    refreshes_per_session_max_fresh: int = 0
    rollouts: int = 0
    responses: int = 0
    stale_responses: int = 0
    stale_moves: int = 0
    bounced_sessions: set[int] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        return {"bounces": self.bounces, "bounces_stale_caused": self.bounces_stale_caused,
                "justified_returns": self.justified_returns, "sessions_bounced": len(self.bounced_sessions),
                "refreshes_per_session_max": self.refreshes_per_session_max,
                "refreshes_per_session_max_fresh": self.refreshes_per_session_max_fresh,
                "rollouts": self.rollouts, "responses": self.responses,
                "stale_responses": self.stale_responses, "stale_moves": self.stale_moves}


@dataclass(frozen=True)
class _Action:
    index: int
    t: float
    kind: str
    stage: str | None
    target: str | None


class Recount:
    """The counts, fed one trace line at a time (the simulator feeds each line as it makes
    it, so a run without ``--trace`` keeps no trace and still counts by this definition)."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.actions: list[_Action] = []
        self.last: dict[int, tuple[str, str]] = {}                 # session -> (stage, version) last served
        self.left: dict[int, dict[str, tuple[float, bool]]] = {}   # session -> version -> (when it left, stale)
        self.used: dict[int, set[int]] = {}                        # session -> actions that justified a return
        self.reloads: Counter = Counter()                          # (session, rollout) -> reloads
        self.fresh_reloads: Counter = Counter()                    # (session, rollout) -> reloads no stale Envoy caused
        # Sessions a stale Envoy moved: where it found them, and how many more moves undo it.
        self.stale_moved: dict[int, tuple[tuple[str, str], int]] = {}
        self.rollout: str | None = None                            # the rollout under way, and its target
        self.rollout_target: str | None = None
        self.toward: dict[str | None, str] = {}                    # target version -> its newest rollout

    def feed(self, line: Mapping[str, Any]) -> None:
        if "action" in line:
            self._action(line)
        else:
            self._response(line)

    def _action(self, line: Mapping[str, Any]) -> None:
        kind = str(line["action"])
        if kind not in ACTIONS:
            raise ValueError(f"trace: unknown action {kind!r} (one of {', '.join(ACTIONS)})")
        action = _Action(len(self.actions), float(line["t"]), kind, line.get("stage"), line.get("target"))
        self.actions.append(action)
        if kind == "switch" or kind in ("deploy", "rollback") and (self.rollout is None
                                                                    or self.rollout_target != action.target):
            self.rollout, self.rollout_target = f"{kind}#{action.index}", action.target
            self.toward[action.target] = self.rollout
            self.counts.rollouts += 1

    def _response(self, line: Mapping[str, Any]) -> None:
        self.served(float(line["t"]), int(line["session"]), str(line["stage"]), str(line["version"]),
                    bool(line.get("refresh")), bool(line.get("stale")))

    def served(self, t: float, session: int, stage: str, version: str, refresh: bool, stale: bool) -> None:
        """One response line, its fields as arguments (the simulator's hot path: most
        responses move nobody and tell nothing, and cost a lookup)."""
        counts = self.counts
        counts.responses += 1
        here = (stage, version)
        before = self.last.get(session)
        if before == here and not refresh and not stale:
            return
        counts.stale_responses += stale
        rollout = self.toward.get(here[1], self.rollout)
        # A stale Envoy's doing: its own responses, and the moves that undo its last move of
        # the session, until it is back where the stale Envoy found it, at most UNDO_MOVES
        # (a stale Envoy that moved a session to another stage, by its old weights, can take
        # a move to undo the version and one to undo the stage: found by the state machine).
        moved = before is not None and here != before
        taint = self.stale_moved.get(session)
        stale_caused = stale or (moved and taint is not None)
        counts.stale_moves += stale and moved
        if before is not None and here[1] != before[1]:
            gone = self.left.setdefault(session, {})
            if here[1] in gone:
                left_at, left_stale = gone[here[1]]
                used = self.used.setdefault(session, set())
                justifier = _justifier(self.actions, used, left_at, t, here, before)
                if justifier is not None:
                    used.add(justifier)
                    counts.justified_returns += 1
                    self.fresh_reloads[(session, rollout)] -= 1    # the return's reload is allowed
                else:
                    counts.bounces += 1
                    counts.bounced_sessions.add(session)
                    if stale_caused or left_stale:
                        counts.bounces_stale_caused += 1
            gone[before[1]] = (t, stale_caused)
        if moved and before is not None:
            if stale:
                self.stale_moved[session] = (taint[0] if taint is not None else before, UNDO_MOVES)
            elif taint is not None:
                if here == taint[0] or taint[1] <= 1:
                    del self.stale_moved[session]
                else:
                    self.stale_moved[session] = (taint[0], taint[1] - 1)
        self.last[session] = here
        if refresh:
            key = (session, rollout)
            self.reloads[key] += 1
            counts.refreshes_per_session_max = max(counts.refreshes_per_session_max, self.reloads[key])
            if not stale_caused:
                self.fresh_reloads[key] += 1
                counts.refreshes_per_session_max_fresh = max(counts.refreshes_per_session_max_fresh,
                                                             self.fresh_reloads[key])


def recount(lines: Iterable[Mapping[str, Any]]) -> Counts:
    counter = Recount()
    for line in lines:
        counter.feed(line)
    return counter.counts


def _justifier(actions: list[_Action], used: set[int], left_at: float, now: float,
               here: tuple[str, str], before: tuple[str, str]) -> int | None:
    """The first action, started after the session left ``here``'s version and not used by
    this session yet, that sends it back there (a halt: from the version it halts)."""
    stage, version = here
    for action in actions:
        if action.t <= left_at or action.t > now or action.index in used:
            continue
        if action.kind in MOVES_TO_VERSION and action.target == version and action.stage in (None, stage):
            return action.index
        if action.kind == "weights" and before[0] != stage:
            return action.index
        if action.kind == "halt" and before[1] == action.target and action.stage in (None, stage):
            return action.index     # the move back a halt announces may start with it
    return None


__all__ = ["Counts", "Recount", "recount"]
