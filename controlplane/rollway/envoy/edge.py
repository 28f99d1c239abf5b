"""Edge defaults for the ingress listener, after Envoy's "Configuring Envoy as an edge proxy".

Envoy's defaults suit a service mesh; at the edge every client is untrusted. One set of
options serves both the static bootstrap and the listener the control plane sends over
LDS (an Envoy states its overrides in its node metadata, ``metadata.edge``, written by
``rollway envoy-config --edge KEY=VALUE``)::

    options = EdgeOptions.parse({"xff_num_trusted_hops": "1"})   # behind one load balancer
    hcm_fields = options.connection_manager()                  # merged into the HCM
    listener_fields = options.listener()                       # merged into the listener

Every value is checked: an unknown key or a bad value raises ``EdgeOptionError`` naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

UNDERSCORE_ACTIONS = ("ALLOW", "REJECT_REQUEST", "DROP_HEADER")


class EdgeOptionError(ValueError):
    """An edge option that is unknown or out of range; the message names it."""


@dataclass(frozen=True)
class EdgeOptions:
    # Take the client address from the connection, not from X-Forwarded-For a client wrote;
    # behind N trusted load balancers, trust N hops.
    use_remote_address: bool = True
    xff_num_trusted_hops: int = 0
    # Upstreams that treat '_' and '-' alike must not see a header smuggled in with '_'.
    headers_with_underscores_action: str = "REJECT_REQUEST"
    max_request_headers_kb: int = 60
    max_headers_count: int = 100
    per_connection_buffer_limit_bytes: int = 32768        # listener and clusters
    request_headers_timeout_seconds: float = 10.0          # a slow client's headers
    stream_idle_timeout_seconds: float = 300.0
    request_timeout_seconds: float = 300.0
    idle_timeout_seconds: float = 3600.0                   # a connection with no streams
    max_concurrent_streams: int = 100                      # HTTP/2, per connection
    initial_stream_window_size: int = 65536
    initial_connection_window_size: int = 1048576
    max_connections: int = 50000                           # the whole Envoy (overload manager)
    max_heap_bytes: int = 2 << 30                          # the overload manager's heap budget

    @classmethod
    def parse(cls, overrides: dict | None) -> EdgeOptions:
        """Defaults with ``overrides`` (strings or JSON values) applied and checked."""
        if not overrides:
            return cls()
        if not isinstance(overrides, dict) or len(overrides) > len(fields(cls)):
            raise EdgeOptionError("edge: must be a mapping of option names to values")
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, raw in overrides.items():
            if key not in known:
                raise EdgeOptionError(f"edge option {str(key)[:64]!r}: unknown (known: {', '.join(sorted(known))})")
            values[key] = _convert(key, raw, getattr(cls, key))
        return cls(**values)

    def overrides(self) -> dict:
        """Only what differs from the defaults (for node metadata)."""
        default = EdgeOptions()
        return {k: v for k, v in asdict(self).items() if getattr(default, k) != v}

    def listener(self) -> dict:
        return {"per_connection_buffer_limit_bytes": self.per_connection_buffer_limit_bytes}

    def cluster(self) -> dict:
        return {"per_connection_buffer_limit_bytes": self.per_connection_buffer_limit_bytes}

    def connection_manager(self) -> dict:
        fields_ = {
            "use_remote_address": self.use_remote_address,
            "normalize_path": True,
            "merge_slashes": True,
            "max_request_headers_kb": self.max_request_headers_kb,
            "request_headers_timeout": _duration(self.request_headers_timeout_seconds),
            "stream_idle_timeout": _duration(self.stream_idle_timeout_seconds),
            "request_timeout": _duration(self.request_timeout_seconds),
            # Apps behind the edge hold WebSockets; a drain waits for them (rollway serverset drain).
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "common_http_protocol_options": {
                "idle_timeout": _duration(self.idle_timeout_seconds),
                "headers_with_underscores_action": self.headers_with_underscores_action,
                "max_headers_count": self.max_headers_count,
            },
            "http2_protocol_options": {
                "max_concurrent_streams": self.max_concurrent_streams,
                "initial_stream_window_size": self.initial_stream_window_size,
                "initial_connection_window_size": self.initial_connection_window_size,
            },
        }
        if self.xff_num_trusted_hops:
            fields_["xff_num_trusted_hops"] = self.xff_num_trusted_hops
        return fields_

    def overload_manager(self) -> dict:
        """For the bootstrap: shed load before the heap or the connection count runs out."""
        heap = "envoy.resource_monitors.fixed_heap"
        return {
            "refresh_interval": "0.25s",
            "resource_monitors": [
                {"name": heap, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": str(self.max_heap_bytes)}},
                {"name": "envoy.resource_monitors.global_downstream_max_connections", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                             "downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": str(self.max_connections)}},
            ],
            "actions": [
                {"name": "envoy.overload_actions.shrink_heap",
                 "triggers": [{"name": heap, "threshold": {"value": 0.95}}]},
                {"name": "envoy.overload_actions.stop_accepting_requests",
                 "triggers": [{"name": heap, "threshold": {"value": 0.98}}]},
            ],
        }


# (lowest, highest) per numeric option: the range an operator could mean.
LIMITS = {
    "xff_num_trusted_hops": (0, 10), "max_request_headers_kb": (1, 8192), "max_headers_count": (1, 10000),
    "per_connection_buffer_limit_bytes": (1024, 1 << 30), "request_headers_timeout_seconds": (0.0, 3600.0),
    "stream_idle_timeout_seconds": (0.0, 86400.0), "request_timeout_seconds": (0.0, 86400.0),
    "idle_timeout_seconds": (0.0, 86400.0), "max_concurrent_streams": (1, 1 << 20),
    "initial_stream_window_size": (65535, 2147483647), "initial_connection_window_size": (65535, 2147483647),
    "max_connections": (1, 1 << 30), "max_heap_bytes": (1 << 24, 1 << 44),
}


def _convert(key: str, raw, default):
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "1", "yes"):
            return True
        if str(raw).lower() in ("false", "0", "no"):
            return False
        raise EdgeOptionError(f"edge option {key}: {str(raw)[:32]!r} is not true or false")
    if isinstance(default, str):
        if raw not in UNDERSCORE_ACTIONS:
            raise EdgeOptionError(f"edge option {key}: must be one of {', '.join(UNDERSCORE_ACTIONS)}")
        return raw
    try:
        value = type(default)(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or (isinstance(default, int) and float(raw) != value):
        raise EdgeOptionError(f"edge option {key}: {str(raw)[:32]!r} is not a {type(default).__name__}")
    low, high = LIMITS[key]
    if not low <= value <= high:
        raise EdgeOptionError(f"edge option {key}: {value} is outside {low}..{high}")
    return value


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


__all__ = ["EdgeOptionError", "EdgeOptions"]
