"""Which tiers the running test is in, for the harnesses to check (conftest.py sets it).

A harness calls ``require_tier("envoy", "Envoy")`` before starting Envoy: inside a test not
marked ``envoy`` that raises, so a test cannot slip into the fast ``unit`` tier while it
starts ZooKeeper or Envoy. Outside pytest (the benchmarks use the harnesses too) nothing
is set and nothing is checked.
"""

from __future__ import annotations

EXTERNAL_TIERS = ("zookeeper", "envoy", "browser", "fuzz", "fleet", "packaging")
current: set[str] = set()


def require_tier(tier: str, what: str) -> None:
    if current and tier not in current:
        raise RuntimeError(f"this test starts {what} but is not marked {tier!r} "
                           f"(its tiers: {', '.join(sorted(current))}); add pytest.mark.{tier}")
