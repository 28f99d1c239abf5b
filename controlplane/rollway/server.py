"""The one place that wires a control-plane replica: store, plane, xDS server, operator
API and dashboard, started in that order and stopped in the reverse one. ``rollway serve``,
the demo, the benchmarks and the tests' harness (``tests/harness.py``) all start replicas
through ``ControlPlaneServer``, so what they exercise is what runs in production.

Options are dataclasses (``PlaneOptions``, ``ServerOptions``): the CLI turns its flags into
them and nothing past the CLI sees ``argparse``.

Usage::

    with ControlPlaneServer.start(ServerOptions("file:///tmp/rollway", xds_port=0)) as replica:
        replica.plane.push(document, 0, "alice", "first")
        print(replica.xds_port, replica.api_port)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rollway.api.dashboard import DashboardServer
from rollway.api.operator import serve_operator_api
from rollway.plane.control_plane import ControlPlane
from rollway.sources.store import Store, open_store
from rollway.tls import ServerTLS
from rollway.xds.cache import SnapshotCache
from rollway.xds.server import XdsThread


@dataclass(frozen=True)
class PlaneOptions:
    """How the plane decides (``ControlPlane``'s arguments; the CLI's defaults)."""
    debounce: float = 0.05
    empty_grace: float = 30.0
    secrets_file: str | None = None
    ack_timeout: float = 30.0
    replica_id: str | None = None
    startup_grace: float = 5.0
    sample_size: int = 20000
    refresh_interval: float = 1.0      # seconds between re-reads of route maps (other replicas' pushes)


@dataclass(frozen=True)
class ServerOptions:
    """Which parts a replica serves, and where. A port of ``None`` leaves that part out;
    0 picks a free port."""
    store_url: str
    plane: PlaneOptions = field(default_factory=PlaneOptions)
    store_options: dict[str, Any] = field(default_factory=dict)     # e.g. session_timeout
    api_host: str = "127.0.0.1"
    api_port: int | None = 0
    token: str | None = None
    tls: ServerTLS | None = None
    xds_host: str | None = None               # default: api_host
    xds_port: int | None = None
    http_host: str | None = None              # default: api_host
    http_port: int | None = None
    dashboard_sample_interval: float = 1.0    # seconds between the dashboard's traffic samples


class ControlPlaneServer:
    """One running replica. ``start`` releases whatever it started if a later part fails
    (a taken port raises ``rollway.ports.PortInUse`` with nothing left running)."""

    def __init__(self, options: ServerOptions, store: Store, plane: ControlPlane):
        self.options, self.store, self.plane = options, store, plane
        self.api = None
        self.xds: XdsThread | None = None
        self.dashboard: DashboardServer | None = None
        self._stops: list[Callable[[], None]] = []

    @classmethod
    def start(cls, options: ServerOptions, store: Store | None = None) -> ControlPlaneServer:
        """Starts every part ``options`` asks for. ``store``: an open store to use instead of
        opening ``options.store_url`` (a test that also writes members through it); it is
        then the caller's to stop."""
        owned = store is None
        if store is None:
            store = open_store(options.store_url, **options.store_options)
            store.start()
        plane_options = asdict(options.plane)
        refresh_interval = plane_options.pop("refresh_interval")
        plane = ControlPlane(store, **plane_options)
        replica = cls(options, store, plane)
        if owned:
            replica._stops.append(store.stop)
        try:
            plane.start(refresh_interval=refresh_interval)
            replica._stops.append(plane.stop)
            replica._start_parts()
        except BaseException:
            replica.stop()
            raise
        return replica

    def _start_parts(self) -> None:
        options = self.options
        if options.api_port is not None:
            self.api = api = serve_operator_api(self.plane, port=options.api_port, host=options.api_host,
                                                token=options.token, tls=options.tls)
            self._stops.append(lambda: api.stop(1).wait(5))
        if options.xds_port is not None:
            self.xds = XdsThread(self.plane, options.xds_port, host=options.xds_host or options.api_host,
                                 tls=options.tls)
            self._stops.append(self.xds.stop)
        if options.http_port is not None:
            self.dashboard = DashboardServer(self.plane, self.cache, port=options.http_port,
                                             host=options.http_host or options.api_host, tls=options.tls,
                                             sample_interval=options.dashboard_sample_interval)
            self._stops.append(self.dashboard.stop)

    @property
    def cache(self) -> SnapshotCache | None:
        return self.xds.xds.cache if self.xds else None

    @property
    def api_port(self) -> int | None:
        return self.api.rollway_port if self.api is not None else None

    @property
    def xds_port(self) -> int | None:
        return self.xds.port if self.xds else None

    @property
    def http_port(self) -> int | None:
        return self.dashboard.port if self.dashboard else None

    def stop(self) -> None:
        """Stops what was started, newest first; safe to call twice."""
        while self._stops:
            self._stops.pop()()

    def __enter__(self) -> ControlPlaneServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["ControlPlaneServer", "PlaneOptions", "ServerOptions"]
