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
from collections.abc import Callable, Iterable

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


__all__ = ["HealthBook", "MAX_CLUSTERS", "REPORT_INTERVAL"]
