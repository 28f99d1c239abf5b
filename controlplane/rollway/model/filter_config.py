"""The filter config as types: what the routing core parses (``native/src/config.cc``,
``enum class StageMode``), built by ``rollway.model.publication`` and read by admission,
the deploy gate, the snapshot cache, the consistency check, the operator API, the
dashboard and the simulator through attributes. The JSON the filter receives is written
in one place, ``FilterConfig.to_json``, and read back in one place, ``FilterConfig.from_json``
(the consistency check, the simulator's naive strategy, tests).

Every value is frozen: a config is a snapshot, and a changed one is a new value
(``dataclasses.replace``), so a config handed to xDS can never change under it.

Key order and optional keys are part of the contract (``docs/design.md``): optional keys are
absent, not null, and ``to_json`` writes keys in the order the filter has always received
them, so the bytes on the wire do not depend on how a config was built
(``tests/model/test_filter_config_bytes.py`` holds them to a golden record).

Usage::

    config = FilterConfig.from_json(json.loads(text))
    config.rolling_stages()[0].direction.state is Way.FORWARD
    text = config.to_text()                  # what the filter parses
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar


class Mode(StrEnum):
    """A stage's kind, as the core's ``StageMode``."""
    ROLLING = "rolling"
    BLUE_GREEN = "blue_green"


class Way(StrEnum):
    """A rolling stage's direction state: which way sessions move, if any."""
    STEADY = "steady"
    FORWARD = "forward"
    ROLLBACK = "rollback"


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Direction:
    """Where a rolling stage's sessions move: ``state`` and the version they move to. A
    ``steady`` direction may name a target too: nobody moves, but sessions on a version that
    has gone go there (a held reversal, or a target gone since the leader last decided)."""
    state: Way = Way.STEADY
    target: str | None = None

    @property
    def moving(self) -> bool:
        return self.state is not Way.STEADY

    def held(self) -> Direction:
        """This direction held back: nobody moves, the target kept."""
        return Direction(Way.STEADY, self.target)

    def to_json(self) -> dict[str, str]:
        out = {"state": self.state.value}
        if self.target is not None:
            out["target"] = self.target
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Direction:
        target = doc.get("target")
        return cls(Way(doc["state"]), None if target is None else str(target))


STEADY = Direction()


@dataclass(frozen=True)
class VersionEntry:
    """A version a rolling stage serves: its live capacity and cluster. ``admitted`` false:
    announced only (Envoys keep sessions that want it, but hash none there yet)."""
    name: str
    capacity: float
    cluster: str
    admitted: bool = True
    # Halted by an operator (``DeployState.halts``): published unadmitted like an announced
    # version, but nothing waits for it to be admitted. Not in the filter's JSON.
    halted: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "capacity": self.capacity, "cluster": self.cluster}
        if not self.admitted:
            out["admitted"] = False
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> VersionEntry:
        return cls(str(doc["name"]), doc["capacity"], str(doc["cluster"]), doc.get("admitted", True) is not False)


@dataclass(frozen=True)
class RollingStage:
    """A stage whose sessions are spread over versions by capacity, oldest first."""
    name: str
    weight: float
    versions: tuple[VersionEntry, ...]
    direction: Direction = STEADY
    next_weight: float | None = None       # announced, not yet applied
    mode: ClassVar[Mode] = Mode.ROLLING

    @property
    def clusters(self) -> list[str]:
        return [v.cluster for v in self.versions]

    def version_names(self) -> list[str]:
        return [v.name for v in self.versions]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weight": self.weight, "mode": self.mode.value,
                               "versions": [v.to_json() for v in self.versions],
                               "direction": self.direction.to_json()}
        if self.next_weight is not None:
            out["next_weight"] = self.next_weight
        return out


@dataclass(frozen=True)
class Slot:
    """A blue-green slot: the version it runs (the one with most capacity mid-redeploy,
    ``none`` when empty), its capacity and cluster."""
    version: str
    capacity: float
    cluster: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "capacity": self.capacity, "cluster": self.cluster}


@dataclass(frozen=True)
class BlueGreenStage:
    """A stage that serves one slot at a time; ``next`` announces a switch before it applies."""
    name: str
    weight: float
    active: str
    slots: Mapping[str, Slot]
    next: str | None = None
    next_weight: float | None = None
    mode: ClassVar[Mode] = Mode.BLUE_GREEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", _frozen(self.slots))

    @property
    def clusters(self) -> list[str]:
        return [s.cluster for s in self.slots.values()]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weight": self.weight, "mode": self.mode.value,
                               "active": self.active, "slots": {k: s.to_json() for k, s in self.slots.items()}}
        if self.next_weight is not None:
            out["next_weight"] = self.next_weight
        if self.next is not None:
            out["next"] = self.next
        return out


Stage = RollingStage | BlueGreenStage


@dataclass(frozen=True)
class FilterConfig:
    """One service's filter config (``docs/design.md``, "Filter config")."""
    service: str
    generation: int
    routing_id: Mapping[str, Any]
    stages: tuple[Stage, ...]
    version_cookie: str | None = None
    stage_cookie: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    override: Mapping[str, Any] | None = None
    secrets_file: str | None = None
    cookie_path: str | None = None      # the cookies' Path (a service under a path prefix); None: "/"

    def __post_init__(self) -> None:
        object.__setattr__(self, "routing_id", _frozen(self.routing_id))
        object.__setattr__(self, "headers", _frozen(self.headers))
        if self.override is not None:
            object.__setattr__(self, "override", _frozen(self.override))

    # -- reading ------------------------------------------------------------------------

    def rolling_stages(self) -> list[RollingStage]:
        return [s for s in self.stages if isinstance(s, RollingStage)]

    def blue_green_stages(self) -> list[BlueGreenStage]:
        return [s for s in self.stages if isinstance(s, BlueGreenStage)]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def picked_clusters(self) -> set[str]:
        """Every cluster the filter may write into the cluster header."""
        return {cluster for s in self.stages for cluster in s.clusters}

    def routed_clusters(self) -> frozenset[str]:
        """The clusters the filter sends requests to: those of versions and slots with
        capacity (one with none is listed for ordering only and takes no request)."""
        out: set[str] = set()
        for stage in self.stages:
            entries = stage.versions if isinstance(stage, RollingStage) else stage.slots.values()
            out.update(e.cluster for e in entries if e.capacity > 0)
        return frozenset(out)

    def cluster_header(self, default: str) -> str:
        return self.headers.get("cluster", default)

    def announced(self) -> Iterator[tuple[str, str]]:
        """(stage, version) of every version announced but not admitted."""
        return ((s.name, v.name) for s in self.rolling_stages() for v in s.versions if not v.admitted and not v.halted)

    # -- changing (a new value) ---------------------------------------------------------

    def with_generation(self, generation: int) -> FilterConfig:
        return replace(self, generation=generation)

    def without_secrets(self) -> FilterConfig:
        """For a router built here only to compare routing (no MAC checks needed; the
        routing-key header, whose hash needs the secret, is dropped with it)."""
        return replace(self, override=None, secrets_file=None,
                       routing_id={k: v for k, v in self.routing_id.items() if k not in ("signing_key_id", "header")})

    # -- the filter's JSON --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "generation": self.generation,
                               "routing_id": dict(self.routing_id)}
        if self.cookie_path:
            out["cookie_path"] = self.cookie_path
        if self.version_cookie:
            out["version_cookie"] = self.version_cookie
        if self.stage_cookie:
            out["stage_cookie"] = self.stage_cookie
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.override:
            out["override"] = dict(self.override)
        if self.secrets_file:
            out["secrets_file"] = self.secrets_file
        out["stages"] = [s.to_json() for s in self.stages]
        return out

    def to_text(self) -> str:
        """The document the filter parses, exactly as sent."""
        return json.dumps(self.to_json())

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FilterConfig:
        """A config read back (what a snapshot serves). Raises KeyError/ValueError/TypeError
        on a document that is not one."""
        return cls(service=str(doc["service"]), generation=int(doc.get("generation", 0)),
                   routing_id=doc.get("routing_id", {}), stages=tuple(_stage_from_json(s) for s in doc["stages"]),
                   version_cookie=doc.get("version_cookie"), stage_cookie=doc.get("stage_cookie"),
                   headers=doc.get("headers", {}), override=doc.get("override"),
                   secrets_file=doc.get("secrets_file"), cookie_path=doc.get("cookie_path"))


def _stage_from_json(doc: Mapping[str, Any]) -> Stage:
    mode = Mode(doc["mode"])
    if mode is Mode.ROLLING:
        return RollingStage(str(doc["name"]), doc["weight"], tuple(VersionEntry.from_json(v) for v in doc["versions"]),
                            Direction.from_json(doc.get("direction", {"state": "steady"})), doc.get("next_weight"))
    return BlueGreenStage(str(doc["name"]), doc["weight"], str(doc["active"]),
                          {k: Slot(str(s["version"]), s["capacity"], str(s["cluster"])) for k, s in doc["slots"].items()},
                          doc.get("next"), doc.get("next_weight"))
