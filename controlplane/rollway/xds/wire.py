"""The few fields of xDS discovery messages that the ADS loop reads, parsed by protobuf's C
implementation (upb).

Every ACK is a ``DiscoveryRequest``; parsing it with envoy-data-plane's pure-Python
classes cost more than everything else an ACK does. These descriptors declare only the
fields the server uses, with Envoy's field numbers; the wire format skips the others, so
any Envoy's request parses. Resources are still built with envoy-data-plane
(``rollway.xds.resources``), once per snapshot.

Usage::

    request = parse_request(raw_bytes)       # .type_url, .version_info, .response_nonce, ...
    response = parse_response(raw_bytes)     # .version_info, .nonce (for test and bench clients)
    report = parse_load_stats(raw_bytes)     # LRS: .node.id, .cluster_stats[i].cluster_name, ...
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="rollway/xds_wire.proto", package="rollway.xds_wire",
                                           syntax="proto3", dependency=["google/protobuf/struct.proto"])

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            m.field.add(name=field_name, number=number, type=kind, label=label,
                        **({"type_name": type_name} if type_name else {}))

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Node", [("id", 1, _F.TYPE_STRING, one, ""), ("cluster", 2, _F.TYPE_STRING, one, ""),
                     ("metadata", 3, _F.TYPE_MESSAGE, one, ".google.protobuf.Struct")])
    message("Status", [("code", 1, _F.TYPE_INT32, one, ""), ("message", 2, _F.TYPE_STRING, one, "")])
    message("DiscoveryRequest", [
        ("version_info", 1, _F.TYPE_STRING, one, ""), ("node", 2, _F.TYPE_MESSAGE, one, ".rollway.xds_wire.Node"),
        ("resource_names", 3, _F.TYPE_STRING, many, ""), ("type_url", 4, _F.TYPE_STRING, one, ""),
        ("response_nonce", 5, _F.TYPE_STRING, one, ""),
        ("error_detail", 6, _F.TYPE_MESSAGE, one, ".rollway.xds_wire.Status")])
    message("DiscoveryResponse", [("version_info", 1, _F.TYPE_STRING, one, ""),
                                  ("type_url", 4, _F.TYPE_STRING, one, ""), ("nonce", 5, _F.TYPE_STRING, one, "")])
    # Load reports (LRS): per cluster, per locality, the requests completed since the last
    # report, and how many of them failed (5xx, reset); per endpoint (the server asks for
    # endpoint granularity), the requests open to it now.
    message("SocketAddress", [("address", 2, _F.TYPE_STRING, one, ""), ("port_value", 3, _F.TYPE_UINT32, one, "")])
    message("Address", [("socket_address", 1, _F.TYPE_MESSAGE, one, ".rollway.xds_wire.SocketAddress")])
    message("UpstreamEndpointStats", [("address", 1, _F.TYPE_MESSAGE, one, ".rollway.xds_wire.Address"),
                                      ("total_requests_in_progress", 3, _F.TYPE_UINT64, one, "")])
    message("UpstreamLocalityStats", [("total_successful_requests", 2, _F.TYPE_UINT64, one, ""),
                                      ("total_requests_in_progress", 3, _F.TYPE_UINT64, one, ""),
                                      ("total_error_requests", 4, _F.TYPE_UINT64, one, ""),
                                      ("upstream_endpoint_stats", 7, _F.TYPE_MESSAGE, many,
                                       ".rollway.xds_wire.UpstreamEndpointStats"),
                                      ("total_issued_requests", 8, _F.TYPE_UINT64, one, "")])
    message("ClusterStats", [("cluster_name", 1, _F.TYPE_STRING, one, ""),
                             ("upstream_locality_stats", 2, _F.TYPE_MESSAGE, many,
                              ".rollway.xds_wire.UpstreamLocalityStats")])
    message("LoadStatsRequest", [("node", 1, _F.TYPE_MESSAGE, one, ".rollway.xds_wire.Node"),
                                 ("cluster_stats", 2, _F.TYPE_MESSAGE, many, ".rollway.xds_wire.ClusterStats")])
    return f


_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
_pool.Add(_file())
DiscoveryRequest = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rollway.xds_wire.DiscoveryRequest"))
DiscoveryResponse = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rollway.xds_wire.DiscoveryResponse"))


LoadStatsRequest = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rollway.xds_wire.LoadStatsRequest"))


def parse_load_stats(data: bytes):
    return LoadStatsRequest.FromString(data)


def parse_request(data: bytes):
    return DiscoveryRequest.FromString(data)


def parse_response(data: bytes):
    return DiscoveryResponse.FromString(data)
