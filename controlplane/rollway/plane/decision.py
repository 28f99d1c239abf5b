"""The step a replica takes for a service, as a pure function: the leader decides (advances
a copy of the deploy state, to be written with compare-and-set before it is served), a
follower serves what the stored deploy state says. ``ServiceController`` runs it on the plane's
worker thread and does the writing; the simulator (``rollway.tools.sim``) calls the same
function on its clock, so what it counts is what the server does.

Usage::

    decision = decide(routemap, views, deploy, fleet, leading=True, now=time.time(), health=fleet_health)
    if decision.write is not None:
        store.write_deploy_state(service, decision.write.to_json(), expected_version)
    serve(decision.config)        # once written (the leader) or at once (a follower)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rollway.model.admission import Fleet
from rollway.model.deploy_state import DeployState
from rollway.model.filter_config import FilterConfig
from rollway.model.guard import Health
from rollway.model.publication import advance, render_config
from rollway.model.routemap import RouteMap
from rollway.sources.serverset import ServersetView


@dataclass(frozen=True)
class Decision:
    config: FilterConfig
    write: DeployState | None = None    # the leader's new deploy state; None: nothing to write


def decide(routemap: RouteMap, views: Mapping[str, ServersetView | None], deploy: DeployState,
           fleet: Fleet | list[set], *, leading: bool, secrets_file: str | None = None,
           routemap_revision: int = 0, now: float | None = None,
           health: Mapping[tuple[str, str], Health] | None = None) -> Decision:
    """The leader's step (``leading``) or a follower's. ``deploy`` is never changed: the
    leader's new state comes back in ``write`` when it differs from ``deploy``. ``health``:
    (stage, version) -> the fleet's request and 5xx counts, which the guard judges."""
    if not leading:
        return Decision(render_config(routemap, views, deploy, secrets_file))
    state = deploy.copy()
    config = advance(routemap, views, state, fleet, secrets_file, routemap_revision, now=now, health=health)
    return Decision(config, state if state.to_json() != deploy.to_json() else None)
