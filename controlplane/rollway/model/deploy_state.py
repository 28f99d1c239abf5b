"""The deploy state of a service: everything its filter config depends on beyond the route
map and the serverset views, as one record in the store.

Per rolling stage the direction tracker (its version sequence, first seen first, never
re-derived from member order or version names; its state, target, and the evidence
gathered since the deploy last advanced), the admission decisions (admitted versions, held
reversals, the last way sessions were moved, weight-change and blue-green steps), the
generation, and the digest of the config that generation names. Only the
service's leader writes it, with compare-and-set; every replica renders its filter config
from it (``rollway.model.publication.render_config``), so replicas send the same bytes.

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


@dataclass
class DeployState:
    generation: int = 0
    digest: str = ""                       # sha256 of the last published config, generation left out
    trackers: dict[str, DirectionTracker] = field(default_factory=dict)   # rolling stage -> tracker
    admission: AdmissionState = field(default_factory=AdmissionState)
    routemap_revision: int = 0             # the route map the last publication used

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
                "admission": self.admission.to_dict()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict) -> DeployState:
        if d.get("format") != FORMAT:
            raise ValueError(f"deploy state: format {d.get('format')!r} is not {FORMAT}")
        return cls(int(d["generation"]), str(d.get("digest", "")),
                   {name: DirectionTracker.from_dict(t) for name, t in d.get("stages", {}).items()},
                   AdmissionState.from_dict(d.get("admission", {})), int(d.get("routemap_revision", 0)))

    @classmethod
    def from_json(cls, data: bytes) -> DeployState:
        return cls.from_dict(json.loads(data))

    def copy(self) -> DeployState:
        return DeployState.from_dict(json.loads(self.to_json()))
