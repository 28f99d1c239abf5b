"""The wire parser (rollway.xds.wire): it reads the fields the ADS loop uses from what a real
Envoy sends, whatever else the message holds, and refuses bytes that are not a message."""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.core.v3 import Locality, Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.protobuf import Struct, Value
from envoy_data_plane.google.rpc import Status
from google.protobuf.message import DecodeError

from rollway.xds.wire import parse_request, parse_response

EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def test_a_request_reads_back_its_fields_and_skips_the_rest():
    sent = DiscoveryRequest(version_info="v7", node=Node(id="envoy-a", cluster="web",
                                                         locality=Locality(region="eu", zone="z1")),
                            resource_names=["rollway"], type_url=EXTENSION, response_nonce="n-1",
                            error_detail=Status(code=3, message="bad config"))
    got = parse_request(bytes(sent))
    assert (got.version_info, got.type_url, got.response_nonce) == ("v7", EXTENSION, "n-1")
    assert (got.node.id, got.node.cluster, list(got.resource_names)) == ("envoy-a", "web", ["rollway"])
    assert (got.error_detail.code, got.error_detail.message) == (3, "bad config")


def test_node_metadata_reads_as_a_struct():
    edge = Struct(fields={"xff": Value(number_value=2.0)})
    sent = DiscoveryRequest(node=Node(id="e", metadata=Struct(fields={"listen_port": Value(number_value=10001.0),
                                                                      "edge": Value(struct_value=edge)})))
    meta = parse_request(bytes(sent)).node.metadata.fields
    assert meta["listen_port"].number_value == 10001 and meta["edge"].struct_value.fields["xff"].number_value == 2


def test_a_response_reads_back_its_version_and_nonce():
    got = parse_response(bytes(DiscoveryResponse(version_info="abc", type_url=EXTENSION, nonce="x-1")))
    assert (got.version_info, got.type_url, got.nonce) == ("abc", EXTENSION, "x-1")


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab"])
def test_bytes_that_are_not_a_message_are_refused(data):
    with pytest.raises(DecodeError):
        parse_request(data)
