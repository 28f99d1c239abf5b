"""Draining a host out of a serverset, as a deploy tool's STOP script (the lifecycle hook
an autoscaling group runs before it terminates an instance):

1. mark the host's member not-ALIVE (``STOPPING``): the control plane drops it from
   capacity, and Envoy keeps it as DRAINING (no new request goes to it);
2. wait until every Envoy in the quorum holds that config (the deploy gate);
3. with ``idle``, wait until no Envoy has a request or an upgraded connection (a WebSocket,
   an EventSource) open to it, up to the drain deadline (``idle`` decides both);
4. remove the member. The host can stop: no Envoy routes to it any more.

Usage::

    drain(store, "/discovery/web/prod", [("10.1.2.3", 8080)], wait=lambda: gate(timeout=60),
          idle=lambda: wait_idle(deadline=300))
"""

from __future__ import annotations

import json
from collections.abc import Callable

from rollway.sources.member_formats import DRAINING
from rollway.sources.store import Store


class DrainError(RuntimeError):
    pass


def members_at(store: Store, path: str, host: str, port: int) -> dict[str, dict]:
    """The members of ``path`` whose endpoint is host:port (name -> parsed document)."""
    out = {}
    for name, data in store.read_members(path).items():
        try:
            doc = json.loads(data)
            endpoint = doc["serviceEndpoint"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(endpoint, dict) and endpoint.get("host") == host and endpoint.get("port") == port:
            out[name] = doc
    return out


def _alive_versions(store: Store, path: str, leaving: set[str]) -> set[str]:
    """The versions with an ALIVE member at ``path`` besides the members ``leaving``."""
    out = set()
    for name, data in store.read_members(path).items():
        try:
            doc = json.loads(data)
            version = doc.get("metadata", {}).get("version")
        except (ValueError, AttributeError):
            continue
        if name not in leaving and doc.get("status", "ALIVE") == "ALIVE" and isinstance(version, str):
            out.add(version)
    return out


def drain(store: Store, path: str, endpoints: list[tuple[str, int]],
          wait: Callable[[], tuple[bool, list[str]]], halted: frozenset[str] | set[str] = frozenset(),
          force: bool = False, idle: Callable[[], object] | None = None) -> list[str]:
    """Drains every member of ``path`` at the given host:port endpoints (a deploy batch at
    once: one wait); returns their names. ``wait()`` blocks until converged and returns
    (converged, outstanding). Raises DrainError, leaving the members not-ALIVE, if an
    endpoint has no member or the fleet does not converge; and, unless ``force``, changing
    nothing, if it would leave only ``halted`` versions at ``path`` (the baseline's last
    hosts while the new version is halted: its sessions could go nowhere). ``idle()``, once
    the fleet converged, blocks until nothing is open to the endpoints or its deadline."""
    members: dict[str, dict] = {}
    for host, port in endpoints:
        found = members_at(store, path, host, port)
        if not found:
            raise DrainError(f"no member of {path} at {host}:{port}")
        members.update(found)
    left = _alive_versions(store, path, set(members))
    if halted and not force and left and left <= set(halted):
        names = ", ".join(f"{h}:{p}" for h, p in endpoints)
        raise DrainError(f"draining {names} would leave only the halted {', '.join(sorted(left))} at {path}: its "
                         "sessions could not go back; nothing changed (--force drains anyway)")
    for name, doc in members.items():
        doc["status"] = DRAINING
        store.set_member(path, name, json.dumps(doc).encode())
    converged, outstanding = wait()
    names = ", ".join(f"{h}:{p}" for h, p in endpoints)
    if not converged:
        raise DrainError(f"{names} marked {DRAINING}, but the fleet has not converged; outstanding: "
                         + "; ".join(outstanding))
    if idle is not None:
        idle()
    for name in members:
        store.remove_member(path, name)
    return sorted(members)
