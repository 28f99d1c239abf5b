"""What is open now to each app host: the input a drain waits on (issue 29).

Envoy's load reports carry, per endpoint, the requests in progress (its ``rq_active``: a
request being answered, an upgraded WebSocket, a streaming response, until it ends). Each
replica sums its own Envoys' latest reports (``rollway.xds.health.LoadBook``) and writes them
in its fleet record; any replica sums the records (``FleetView.load``)."""

from __future__ import annotations

from dataclasses import dataclass, field

Endpoint = tuple[str, int]    # (host, port)


@dataclass(frozen=True)
class EndpointLoad:
    """Requests open now to each endpoint, summed over the Envoys whose latest load report is
    fresh; and which Envoys those are."""
    open: dict[Endpoint, int] = field(default_factory=dict)
    reported: frozenset[str] = frozenset()

    def plus(self, other: EndpointLoad) -> EndpointLoad:
        total = dict(self.open)
        for endpoint, count in other.open.items():
            total[endpoint] = total.get(endpoint, 0) + count
        return EndpointLoad(total, self.reported | other.reported)


__all__ = ["Endpoint", "EndpointLoad"]
