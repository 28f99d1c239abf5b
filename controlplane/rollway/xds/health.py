"""Per-version health from the Envoys (issue 28): what Envoy's load reports (LRS) say each
cluster served, and so each (stage, version), summed over this replica's Envoys.

Why LRS and not the metrics-service stat sink: load reports are per cluster, and clusters
are per (stage, version); they carry the requests completed and those that failed with a 5xx
(or a reset) since the last report, at an interval the server sets, on the same (m)TLS link
as ADS (the bootstrap's ``load_stats_config`` uses the ``rollway_xds`` cluster). The stat
sink would stream every stat Envoy has to pick two per cluster.

What is not counted: Envoy starts counting a cluster for its reports at the first report
period after the cluster appears, so a new version's first interval of traffic (at most
REPORT_INTERVAL) goes unreported; the guard judges on what follows.

Inputs are an Envoy's: a report is taken only from a node with an ADS stream on this replica
(``AckLedger.has_node``), only for clusters some snapshot of this replica serves (others are
dropped and counted), at most MAX_CLUSTERS per report, counts clamped to MAX_COUNT per report,
at most one report per stream every REPORT_INTERVAL / 2 (the server drops the rest, counted);
a cluster no longer served is forgotten when the next view is handed over.

Usage::

    book = HealthBook(known=cache.serves_cluster)
    book.add("edge-1", [("web.prod.v2", 120, 36)])     # (cluster, requests, errors) since the last report
    book.totals()["web.prod.v2"]                        # Health(requests=120, errors=36)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable

from rollway.model.endpoint_load import EndpointLoad
from rollway.model.guard import Health

MAX_CLUSTERS = 4096          # clusters read from one report
MAX_COUNT = 10_000_000       # requests one Envoy may report for one cluster in one interval
REPORT_INTERVAL = 2.0        # seconds between an Envoy's load reports (the server sets it)


class HealthBook:
    def __init__(self, known: Callable[[str], bool]):
        self.known = known
        self.lock = threading.Lock()
        self._totals: dict[str, tuple[int, int]] = {}     # cluster -> (requests, errors), cumulative
        self.reports = 0
        self.dropped_clusters = 0     # names no snapshot of this replica serves
        self.throttled = 0            # reports dropped for coming faster than an Envoy sends them

    def add(self, node_id: str, stats: Iterable[tuple[str, int, int]]) -> None:
        """One report of ``node_id``: (cluster, requests completed, of which failed) since its
        last report."""
        with self.lock:
            self.reports += 1
            for i, (cluster, requests, errors) in enumerate(stats):
                if i >= MAX_CLUSTERS:
                    break
                if not self.known(cluster):
                    self.dropped_clusters += 1
                    continue
                requests = max(0, min(int(requests), MAX_COUNT))
                errors = max(0, min(int(errors), requests))
                if requests == 0:
                    continue
                total = self._totals.get(cluster, (0, 0))
                self._totals[cluster] = (total[0] + requests, total[1] + errors)

    def totals(self) -> dict[str, Health]:
        with self.lock:
            return {cluster: Health(r, e) for cluster, (r, e) in self._totals.items()}

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drops clusters no longer served (bounded memory across deploys)."""
        with self.lock:
            for cluster in [c for c in self._totals if not keep(c)]:
                del self._totals[cluster]


MAX_ENDPOINTS = 4096         # endpoints with open requests read from one report
MAX_OPEN = 1_000_000         # requests one Envoy may claim open to one endpoint
# A load report younger than this is an Envoy's word on what is open now (it reports every
# REPORT_INTERVAL; one interval of slack for a report in flight or a timer that drifts).
FRESH_REPORT = 2 * REPORT_INTERVAL


class LoadBook:
    """What each Envoy's latest load report says is open now to each endpoint (Envoy's
    ``rq_active`` gauge per host: a request in progress, an upgraded WebSocket, a streaming
    response, until it ends). Kept per Envoy and replaced by its next report, never summed
    over time; an Envoy whose load stream ends is forgotten. Only endpoints with something
    open are kept, at most MAX_ENDPOINTS per report, counts clamped to MAX_OPEN."""

    def __init__(self):
        self.lock = threading.Lock()
        self._latest: dict[str, tuple[float, dict[tuple[str, str, int], int]]] = {}

    def report(self, node_id: str, entries: Iterable[tuple[str, str, int, int]], now: float) -> None:
        """``entries``: (cluster, host, port, requests open) from one report."""
        held: dict[tuple[str, str, int], int] = {}
        for i, (cluster, host, port, count) in enumerate(entries):
            if i >= MAX_ENDPOINTS:
                break
            if count > 0:
                held[(cluster, host, port)] = min(int(count), MAX_OPEN)
        with self.lock:
            self._latest[node_id] = (now, held)

    def forget(self, node_id: str) -> None:
        with self.lock:
            self._latest.pop(node_id, None)

    def snapshot(self, clusters: Collection[str], now: float) -> EndpointLoad:
        """The open requests to endpoints of ``clusters``, from fresh reports only."""
        open_: dict[tuple[str, int], int] = {}
        reported = set()
        with self.lock:
            for node_id, (at, held) in self._latest.items():
                if now - at > FRESH_REPORT:
                    continue
                reported.add(node_id)
                for (cluster, host, port), count in held.items():
                    if cluster in clusters:
                        open_[(host, port)] = open_.get((host, port), 0) + count
        return EndpointLoad(open_, frozenset(reported))


__all__ = ["EndpointLoad", "FRESH_REPORT", "HealthBook", "LoadBook", "MAX_CLUSTERS", "REPORT_INTERVAL"]
