"""Deploy simulation: does every session move to the new version once, while the fleet does
what a real one does?

A deploy tool changes a stage's hosts step by step, in place or surge-style (the new hosts
first, the old ones a step later), paced by the clock or by the deploy gate; each step's
host changes are spread over a few seconds, deregistered hosts keep serving for a drain
period and then stop. The control plane sees the serversets through the watchers' own rules
(``rollway.sources.view_policy``: the debounce window, the empty-serverset grace), and
decides with ``rollway.plane.decision.decide`` on a deploy state, the same function and
record the leader runs (followers render it; leaders die and replicas restart). K Envoys each receive config updates in order after a lag drawn afresh
for every update, reconnect to another replica when their stream breaks, ACK only what
they applied (an ACK says what an Envoy knows while the server retains that config), and
may fall silent. S browser sessions keep their cookies, hit random Envoys, and reload when told.
Bounces and reloads are counted from the run's trace lines alone (every response and
operator action, ``rollway.tools.sim.recount``: the user's definition); with ``trace`` the
lines are kept too, so anyone can recount a run from its ``--trace`` file.
Nothing here restates a routing rule: decisions come from the C++ core
(``Router.route_many``).

Strategies compared on the same scenario and seed:

- ``naive``: version = hash(id) % number of versions the stage has seen (no capacity);
- ``capacity``: the core's capacity-ordered choice with no session affinity (no tiebreak);
- ``rollway``: the full rules (wanted version, direction tiebreak, admission);
- ``unguarded``: the same without the route map's guard, the peer of ``bad-build`` (a new
  version failing a share of its requests: ``rollway.tools.sim.badbuild``).

What is measured: bounces and reloads in ``rollway.tools.sim.recount``, overload against
the stated bound at the same tick in ``rollway.tools.sim.accounting``.

Usage::

    from rollway.tools.sim import SimConfig, run
    result = run(SimConfig(scenario="surge-rollback", envoys=8, sessions=10000, lag_max=30, seed=1))
    result.metrics["bounces"]
"""

from rollway.tools.sim.doubles import UNGUARDED
from rollway.tools.sim.model import After, Gate, SimConfig, SimResult, World
from rollway.tools.sim.plot import plot
from rollway.tools.sim.runner import STRATEGIES, run
from rollway.tools.sim.scenarios import FINAL_VERSION, GUARDED, LIMITS, SCENARIOS, timeline


def strategies_for(scenario: str) -> tuple[str, ...]:
    """The strategies a scenario is compared on: the guard against its unguarded peer for
    ``bad-build``, the naive peers for the rest."""
    return (UNGUARDED, "rollway") if scenario in GUARDED else STRATEGIES


__all__ = ["FINAL_VERSION", "GUARDED", "LIMITS", "SCENARIOS", "STRATEGIES", "UNGUARDED", "After", "Gate", "SimConfig",
           "SimResult", "World", "plot", "run", "strategies_for", "timeline"]
