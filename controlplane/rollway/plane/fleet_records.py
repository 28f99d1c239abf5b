"""The fleet of one service as every replica sees it: which Envoys exist, what each has
ACKed, which are in the quorum.

Each replica reports the Envoys connected to it (``EnvoyReport``, from its ACK ledger) in
one record per replica in the store (``Store.publish_fleet``; ZooKeeper: an ephemeral
znode, so a dead replica's record goes with its session). Every replica watches all
records, so whichever replica leads already holds the whole fleet. Reports are merged by
node id: an Envoy that moved to another replica counts once, by its live connection; a
node id connected to two replicas at once is an error shown in status.

The quorum is every Envoy whose owning replica does not call it stale (not ACKed the newest
config within the ACK timeout, or disconnected for longer). A record that vanishes (its
replica died) keeps its Envoys in the quorum, as disconnected, for one ACK timeout: they
still route on their last config, and will reconnect elsewhere.

Each record also carries what its replica's Envoys reported each (stage, version) served
(requests and 5xx, from their load reports: ``rollway.xds.health``); the leader sums the
records (``FleetView.health``), so the bad-build guard judges the whole fleet. A record that
vanishes takes its counts with it: the Envoys that reconnect elsewhere count afresh there.

Usage::

    fleet = FleetView(ack_timeout=30)
    changed = fleet.set_replica("replica-a", {node_id: report, ...})
    fleet.knowledge.all_know(("prod", "v2"))
    fleet.health()[("prod", "v2")]            # Health(requests=..., errors=...), every replica's
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from rollway.model.endpoint_load import EndpointLoad
from rollway.model.fleet_knowledge import FleetKnowledge
from rollway.model.guard import Health

MAX_HEALTH = 4096             # (stage, version) counts read from one replica's record
MAX_OPEN_ENDPOINTS = 4096     # endpoints with open requests read from one replica's record
MAX_OPEN_COUNT = 10 ** 9      # requests one record may claim open to one endpoint
MAX_HEALTH_COUNT = 10 ** 15   # requests one record may claim for one version


@dataclass(frozen=True)
class EnvoyReport:
    node_id: str
    replica: str
    connected: bool
    knows: frozenset = frozenset()        # keys of the filter config it ACKed (admission.known_versions)
    generation: int = 0                   # generation of the filter config it ACKed
    caught_up: bool = False               # has ACKed everything its replica sent it
    stale: str = ""                       # why it left the quorum ("" while in it)
    since: float = 0.0                    # stale since / disconnected since (its replica's clock)
    nacks: int = 0
    versions: tuple = ()                  # content versions it ACKed of what the gate compares (CDS, EDS, ECDS)

    def in_quorum(self) -> bool:
        return not self.stale


VersionHealth = Mapping[tuple[str, str], Health]     # (stage, version) -> counts


class ReplicaRecord(NamedTuple):
    replica: str
    envoys: dict[str, EnvoyReport]
    health: dict[tuple[str, str], Health]
    load: EndpointLoad = EndpointLoad()


def encode_reports(replica: str, reports: dict[str, EnvoyReport], health: VersionHealth | None = None,
                   load: EndpointLoad | None = None) -> bytes:
    """One replica's record: identical knows sets (Envoys that ACKed the same config) are
    written once, so 5,000 Envoys cost one key list per config, not 5,000; ``health``: its
    Envoys' counts per (stage, version)."""
    return RecordEncoder().encode(replica, reports, health, load)


class RecordEncoder:
    """Writes one replica's records, one after another, as ``encode_reports`` would (the same
    bytes), remembering each Envoy's text: an Envoy whose report is the one last encoded (a
    report is replaced, never changed) costs a look-up, one that changed a few string
    formats rather than json.dumps calls. At 10,000 Envoys: ~5 ms a record when few have
    changed, ~17 ms when all have (a push), against ~27 ms for json.dumps of the whole."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[EnvoyReport, str, str]] = {}   # node -> (report, text before/after its index)
        self._keys: dict[str, str] = {}          # node id -> its JSON string
        self._shared: dict[tuple, str] = {}      # (caught_up, connected, generation) or (stale, versions) -> text

    def encode(self, replica: str, reports: dict[str, EnvoyReport], health: VersionHealth | None = None,
               load: EndpointLoad | None = None) -> bytes:
        tables: dict[frozenset, int] = {}
        held, texts = self._texts, {}
        parts = []
        for node_id in sorted(reports):
            r = reports[node_id]
            entry = held.get(node_id)
            if entry is None or entry[0] is not r:
                entry = (r, *self._envoy_text(node_id, r))
            texts[node_id] = entry
            parts.append(f"{entry[1]}{tables.setdefault(r.knows, len(tables))}{entry[2]}")
        self._texts = texts
        if len(self._keys) > 2 * len(reports) + 1024:
            self._keys = {n: k for n, k in self._keys.items() if n in reports}
        dumps = json.dumps
        knows = [sorted([list(k) for k in keys]) for keys, _ in sorted(tables.items(), key=lambda kv: kv[1])]
        counts = [[stage, version, h.requests, h.errors] for (stage, version), h in sorted((health or {}).items())]
        load = load or EndpointLoad()
        opened = [[host, port, n] for (host, port), n in sorted(load.open.items())]
        # json.dumps(..., sort_keys=True) of {"replica", "knows", "envoys", "health", "open",
        # "reported"}, written out in that key order.
        return (f'{{"envoys": {{{", ".join(parts)}}}, "health": {dumps(counts)}, "knows": {dumps(knows)}, '
                f'"open": {dumps(opened)}, "replica": {dumps(replica)}, '
                f'"reported": {dumps(sorted(load.reported))}}}').encode()

    def _envoy_text(self, node_id: str, r: EnvoyReport) -> tuple[str, str]:
        """One Envoy's entry, as json.dumps(sort_keys=True) writes it, split around the index
        of its knows table (which depends on the other Envoys). The parts most Envoys share
        (the same config ACKed, the same state) are formatted once."""
        key = self._keys.get(node_id)
        if key is None:
            key = self._keys[node_id] = json.dumps(node_id)
        shared = self._shared
        # True == 1: share only what has the usual types.
        usual = type(r.caught_up) is type(r.connected) is bool and type(r.generation) is int
        head_key = (r.caught_up, r.connected, r.generation) if usual else ()
        head = shared.get(head_key)
        if head is None:
            head = (f'{{"caught_up": {_json(r.caught_up)}, "connected": {_json(r.connected)}, '
                    f'"generation": {_json(r.generation)}, "knows": ')
            if usual:
                shared[head_key] = head
        tail_key = (r.stale, r.versions)
        tail = shared.get(tail_key)
        if tail is None:
            tail = shared[tail_key] = f', "stale": {_json(r.stale)}, "versions": {json.dumps(list(r.versions))}}}'
        if len(shared) > 4096:
            shared.clear()
        return f"{key}: {head}", f', "nacks": {_json(r.nacks)}, "since": {_json(r.since)}{tail}'


def _json(value) -> str:
    """json.dumps(value) for a report's scalars, without its call overhead for the usual ones."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is str and not value:
        return '""'
    return json.dumps(value)


def decode_reports(data: bytes) -> ReplicaRecord:
    """A replica's record (ValueError, KeyError, TypeError or IndexError if malformed);
    at most MAX_HEALTH counts, each clamped."""
    doc = json.loads(data)
    replica = str(doc["replica"])
    tables = [frozenset((k[0], k[1]) for k in keys) for keys in doc.get("knows", [])]
    out = {}
    for node_id, e in doc.get("envoys", {}).items():
        out[node_id] = EnvoyReport(node_id, replica, bool(e["connected"]), tables[int(e["knows"])],
                                   int(e.get("generation", 0)), bool(e.get("caught_up", False)),
                                   str(e.get("stale", "")), float(e.get("since", 0.0)), int(e.get("nacks", 0)),
                                   tuple(str(v) for v in e.get("versions", ())))
    health = {}
    for stage, version, requests, errors in doc.get("health", [])[:MAX_HEALTH]:
        requests = max(0, min(int(requests), MAX_HEALTH_COUNT))
        health[(str(stage), str(version))] = Health(requests, max(0, min(int(errors), requests)))
    opened = {(str(host), int(port)): max(0, min(int(n), MAX_OPEN_COUNT))
              for host, port, n in doc.get("open", [])[:MAX_OPEN_ENDPOINTS]}
    reported = frozenset(str(n) for n in doc.get("reported", []) if str(n) in out)   # its own Envoys only
    return ReplicaRecord(replica, out, health, EndpointLoad(opened, reported))


@dataclass
class FleetView:
    ack_timeout: float = 30.0
    reports: dict[str, dict[str, EnvoyReport]] = field(default_factory=dict)   # replica -> node -> report
    vanished: dict[str, dict[str, tuple[EnvoyReport, float]]] = field(default_factory=dict)  # node -> replica -> (report, when)
    knowledge: FleetKnowledge = field(default_factory=FleetKnowledge)
    effective: dict[str, EnvoyReport] = field(default_factory=dict)            # node -> the report that counts
    counts: dict[str, dict[tuple[str, str], Health]] = field(default_factory=dict)  # replica -> its Envoys' counts
    loads: dict[str, EndpointLoad] = field(default_factory=dict)  # replica -> what its Envoys have open now

    def set_load(self, replica: str, load: EndpointLoad) -> bool:
        """Replaces what ``replica``'s Envoys have open; returns whether it changed."""
        if self.loads.get(replica) == load:
            return False
        self.loads[replica] = load
        return True

    def load(self) -> EndpointLoad:
        """Requests open to each endpoint over every replica's Envoys, and the Envoys whose
        reports that is."""
        total = EndpointLoad()
        for load in self.loads.values():
            total = total.plus(load)
        return total

    def set_health(self, replica: str, health: VersionHealth) -> bool:
        """Replaces ``replica``'s counts; returns whether they changed."""
        if self.counts.get(replica) == health:
            return False
        self.counts[replica] = dict(health)
        return True

    def health(self) -> dict[tuple[str, str], Health]:
        """(stage, version) -> requests and 5xx over every replica's Envoys."""
        out: dict[tuple[str, str], Health] = {}
        for counts in self.counts.values():
            for key, h in counts.items():
                total = out.get(key)
                out[key] = h if total is None else Health(total.requests + h.requests, total.errors + h.errors)
        return out

    def set_replica(self, replica: str, reports: dict[str, EnvoyReport], now: float | None = None) -> bool:
        """Replaces what ``replica`` reports; returns whether the quorum's knowledge changed."""
        now = time.time() if now is None else now
        old = self.reports.get(replica, {})
        if old == reports:
            return False
        self.reports[replica] = dict(reports)
        touched = set(old) | set(reports)
        for node_id in touched:
            self._forget_vanished(replica, node_id)
        return self._refresh(touched, now)

    def set_report(self, replica: str, node_id: str, report: EnvoyReport | None, now: float | None = None) -> bool:
        """One Envoy's report changed (this replica's own ACK ledger): O(its keys)."""
        reports = self.reports.setdefault(replica, {})
        if reports.get(node_id) == report:
            return False
        if report is None:
            reports.pop(node_id, None)
        else:
            reports[node_id] = report
        self._forget_vanished(replica, node_id)
        return self._refresh({node_id}, time.time() if now is None else now)

    def replicas(self) -> set[str]:
        """Every replica anything is held for (reports, counts or loads): a replica whose
        record went must go from all three (one that never had an Envoy is in no report)."""
        return set(self.reports) | set(self.counts) | set(self.loads)

    def drop_replica(self, replica: str, now: float | None = None) -> bool:
        """A replica's record vanished: its Envoys stay, disconnected, for one ACK timeout."""
        now = time.time() if now is None else now
        self.counts.pop(replica, None)
        self.loads.pop(replica, None)
        old = self.reports.pop(replica, {})
        for node_id, report in old.items():
            if not report.stale:          # in the quorum, connected or not: it still routes
                self.vanished.setdefault(node_id, {})[replica] = (report, now)
        return self._refresh(set(old), now)

    def _forget_vanished(self, replica: str, node_id: str) -> None:
        by_replica = self.vanished.get(node_id)
        if by_replica is not None:
            by_replica.pop(replica, None)
            if not by_replica:
                del self.vanished[node_id]

    def expire(self, now: float | None = None) -> bool:
        """Forgets vanished Envoys older than the ACK timeout (called periodically)."""
        now = time.time() if now is None else now
        gone = [(replica, node) for node, by_replica in self.vanished.items()
                for replica, (_, since) in by_replica.items() if now - since > self.ack_timeout]
        for replica, node in gone:
            self._forget_vanished(replica, node)
        return self._refresh({node for _, node in gone}, now) if gone else False

    def _candidates(self, node_id: str) -> list[EnvoyReport]:
        out = [r[node_id] for r in self.reports.values() if node_id in r]
        out += [report for report, _ in self.vanished.get(node_id, {}).values()]
        return out

    def _refresh(self, nodes: set[str], now: float) -> bool:
        changed = False
        for node_id in nodes:
            candidates = self._candidates(node_id)
            if not candidates:
                self.effective.pop(node_id, None)
                changed |= self.knowledge.remove(node_id)
                continue
            # The live connection counts; otherwise the most recent disconnected report.
            best = candidates[0] if len(candidates) == 1 else \
                max(candidates, key=lambda r: (r.connected and not r.stale, r.connected, r.since))
            self.effective[node_id] = best
            changed |= self.knowledge.update(node_id, best.knows, best.in_quorum())
        return changed

    def duplicates(self) -> list[str]:
        """Node ids connected to more than one replica at once (two Envoys sharing an id)."""
        seen: dict[str, int] = {}
        for reports in self.reports.values():
            for node_id, r in reports.items():
                if r.connected:
                    seen[node_id] = seen.get(node_id, 0) + 1
        return sorted(n for n, count in seen.items() if count > 1)

    def quorum(self) -> list[EnvoyReport]:
        return [r for r in self.effective.values() if r.in_quorum()]

    def stale(self) -> list[EnvoyReport]:
        return [r for r in self.effective.values() if not r.in_quorum()]

    def status(self) -> list[dict]:
        return [{**asdict(r), "knows": len(r.knows)} for _, r in sorted(self.effective.items())]
