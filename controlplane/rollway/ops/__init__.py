"""What operators run beside Rollway, shipped with the package and printed by ``rollway ops``:

- ``prometheus-rules.yml``: recording rules (per-version request, reload and move rates
  from the Envoys' own counters) and alerts for the control plane and the Envoys: stale
  Envoys, NACKs, the store down, a replica not ready, admission held too long, moves not
  committed, no-capacity responses;
- ``prometheus-rules-test.yml``: ``promtool test rules`` cases for every alert;
- ``grafana-dashboard.json``: a Grafana dashboard of the control plane and the Envoys'
  stats, with what operators watch during rolling deploys: requests, reload signals and
  moves per version over time (one colour a version), no-capacity responses, each stale
  Envoy, NACKs, the store and admission.

The Envoy metrics assume the bootstraps ``rollway envoy-config`` writes (their stats_tags
turn ``rollway.requests.stage.S.version.V`` into ``envoy_rollway_requests{rollway_stage,
rollway_version}``) and Prometheus scraping Envoy's ``/stats/prometheus`` and the control
plane's ``/metrics``::

    rollway ops export /etc/rollway-ops     # all three files
    rollway ops show dashboard > rollway.json
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = {
    "rules": "prometheus-rules.yml",
    "rules-test": "prometheus-rules-test.yml",
    "dashboard": "grafana-dashboard.json",
}


def read(kind: str) -> str:
    """The text of one file of the bundle: ``rules``, ``rules-test`` or ``dashboard``."""
    return resources.files(__name__).joinpath(FILES[kind]).read_text(encoding="utf-8")


def export(directory: str | Path) -> list[Path]:
    """Writes every file of the bundle into ``directory`` (created if needed)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in FILES.items():
        path = out / name
        path.write_text(read(kind), encoding="utf-8")
        written.append(path)
    return written
