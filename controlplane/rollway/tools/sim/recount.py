"""Bounces and reloads recounted from a trace alone, by the user's definition (issue 26), so
anyone can check a simulation's zeros from its ``--trace`` file.

The trace is JSON Lines: one line per successful response,
``{"t", "session", "envoy", "stage", "version", "refresh", "stale"}`` (``stale``: the
deciding Envoy was outside the quorum), and one per operator action,
``{"t", "action": "deploy"|"rollback"|"weights"|"switch", "stage", "target"}``, in time order.

- A **bounce** is a session served by a version it had been served before and then left.
  It is *justified* only when an operator action that started after the session left that
  version sends it back: a deploy or rollback whose target is that version in the stage
  that served it, a blue-green switch to it in that stage, or a stage-weight change that
  moves the session to another stage. Each action justifies at most one return per session.
  Which Envoy decided plays no part; the bounces where a stale Envoy served the return, or
  the move away, are also counted apart (``bounces_stale_caused``).
- A **reload** (a response carrying the refresh signal) is counted per session per
  **rollout**: every step toward one target, canary shifts included. A rollout starts at
  a deploy or rollback to a new target, or a blue-green switch; a reload onto version V
  belongs to the newest rollout toward V (a session finishing the v2 rollout just after
  the v3 deploy began reloads in the v2 rollout), else to the rollout under way.

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


@dataclass
class Counts:
    bounces: int = 0
    bounces_stale_caused: int = 0
    justified_returns: int = 0
    refreshes_per_session_max: int = 0
    rollouts: int = 0
    responses: int = 0
    bounced_sessions: set[int] = field(default_factory=set)

    def summary(self) -> dict[str, Any]:
        return {"bounces": self.bounces, "bounces_stale_caused": self.bounces_stale_caused,
                "justified_returns": self.justified_returns, "sessions_bounced": len(self.bounced_sessions),
                "refreshes_per_session_max": self.refreshes_per_session_max, "rollouts": self.rollouts,
                "responses": self.responses}


@dataclass(frozen=True)
class _Action:
    index: int
    t: float
    kind: str
    stage: str | None
    target: str | None


def recount(lines: Iterable[Mapping[str, Any]]) -> Counts:
    counts = Counts()
    actions: list[_Action] = []
    last: dict[int, tuple[str, str]] = {}                 # session -> (stage, version) last served
    left: dict[int, dict[str, tuple[float, bool]]] = {}   # session -> version -> (when it left, stale)
    used: dict[int, set[int]] = {}                        # session -> actions that justified a return
    reloads: Counter = Counter()                          # (session, rollout) -> reloads
    rollout: tuple[str, str | None] | None = None
    toward: dict[str | None, str] = {}                    # target version -> its newest rollout
    for line in lines:
        if "action" in line:
            action = _Action(len(actions), float(line["t"]), str(line["action"]), line.get("stage"), line.get("target"))
            actions.append(action)
            if action.kind == "switch" or action.kind in ("deploy", "rollback") and \
                    (rollout is None or rollout[1] != action.target):
                rollout = (f"{action.kind}#{action.index}", action.target)
                toward[action.target] = rollout[0]
                counts.rollouts += 1
            continue
        counts.responses += 1
        session, t, stale = int(line["session"]), float(line["t"]), bool(line.get("stale"))
        here = (str(line["stage"]), str(line["version"]))
        before = last.get(session)
        if before is not None and here[1] != before[1]:
            gone = left.setdefault(session, {})
            if here[1] in gone:
                left_at, left_stale = gone[here[1]]
                justifier = _justifier(actions, used.setdefault(session, set()), left_at, t, here, before)
                if justifier is not None:
                    used[session].add(justifier)
                    counts.justified_returns += 1
                else:
                    counts.bounces += 1
                    counts.bounced_sessions.add(session)
                    if stale or left_stale:
                        counts.bounces_stale_caused += 1
            gone[before[1]] = (t, stale)
        last[session] = here
        if line.get("refresh"):
            reloads[(session, toward.get(here[1], rollout[0] if rollout else None))] += 1
    counts.refreshes_per_session_max = max(reloads.values(), default=0)
    return counts


def _justifier(actions: list[_Action], used: set[int], left_at: float, now: float,
               here: tuple[str, str], before: tuple[str, str]) -> int | None:
    """The first action, started after the session left ``here``'s version and not used by
    this session yet, that sends it back there."""
    stage, version = here
    for action in actions:
        if action.t <= left_at or action.t > now or action.index in used:
            continue
        if action.kind in MOVES_TO_VERSION and action.target == version and action.stage in (None, stage):
            return action.index
        if action.kind == "weights" and before[0] != stage:
            return action.index
    return None


__all__ = ["Counts", "recount"]
