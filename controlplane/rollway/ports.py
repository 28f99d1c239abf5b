"""Ports are ours alone: every server Rollway starts (operator API, xDS, dashboard) binds
without SO_REUSEPORT, so a second ``rollway serve`` on the same port fails to start with
``PortInUse`` instead of sharing the port and answering some of the calls (gRPC sets
SO_REUSEPORT unless told not to)."""

from __future__ import annotations

GRPC_OPTIONS = (("grpc.so_reuseport", 0),)


class PortInUse(OSError):
    """A port this server needs is taken (or the address is not this host's)."""

    def __init__(self, what: str, address: str):
        super().__init__(f"{what}: cannot listen on {address}: in use by another process, or not an "
                         "address of this host")
