"""Cookie-less clients in the core (issue 29): without a valid routing-id cookie, the
routing-key header keys the request, hashed with SipHash-2-4 under a key derived from the
service's secret (the oracle recomputes it), bounded, and never minted into a cookie."""

from __future__ import annotations

import hashlib
import json

import pytest

import rollway

import oracle
from conftest import config, rolling

pytestmark = [pytest.mark.unit]
NOW = 1_700_000_000
SECRETS = {"k1": b"a-service-secret-of-enough-length"}


def router(secret: bytes = SECRETS["k1"], **routing_id) -> rollway.Router:
    doc = config(rolling("prod", 1, [("v1", 3), ("v2", 1)]),
                 routing_id={"signing_key_id": "k1", "header": "X-Device-Id", **routing_id})
    return rollway.Router(doc, secrets={"k1": secret})


def expected_key(secret: bytes, value: str) -> str:
    """The routing key the core derives: SipHash-2-4 under sha256("rollway-routing-key-header-v1:" + secret)[:16]."""
    key = hashlib.sha256(b"rollway-routing-key-header-v1:" + secret).digest()[:16]
    return f"{oracle.siphash24(key, value.encode()):016x}"


def test_a_header_key_routes_as_the_routing_key_its_keyed_hash_gives_and_mints_nothing():
    keyed = router()
    plain = rollway.Router(config(rolling("prod", 1, [("v1", 3), ("v2", 1)])))
    for device in ("device-1", "0123456789abcdef", "x" * 128):
        d = keyed.route(None, now=NOW, header_key=device)
        assert d.keyed and d.new_routing_id is None
        token = f"1{NOW:08x}{expected_key(SECRETS['k1'], device)}"
        assert d.version == plain.route(token, now=NOW).version
        assert keyed.route(None, now=NOW, header_key=device).version == d.version   # the same every time


def test_another_secret_gives_other_routing_keys():
    a, b = router(), router(secret=b"another-secret-of-enough-length!")
    versions = [(a.route(None, now=NOW, header_key=f"d{i}").version, b.route(None, now=NOW, header_key=f"d{i}").version)
                for i in range(400)]
    assert sum(x != y for x, y in versions) > 50


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "tab\there", "\x7f", "caf\xe9"])
def test_an_unusable_key_is_treated_as_absent(bad):
    d = router().route(None, now=NOW, header_key=bad)
    assert not d.keyed and d.new_routing_id is not None


def test_a_valid_cookie_wins_over_the_header():
    keyed = router()
    token = keyed.route(None, now=NOW).new_routing_id
    d = keyed.route(token, now=NOW, header_key="device-1")
    assert not d.keyed and d.new_routing_id is None and d.id_status == "valid"
    forged = keyed.route("1" + "0" * 24, now=NOW, header_key="device-1")   # unsigned: not valid here
    assert forged.keyed and forged.new_routing_id is None


def test_a_header_needs_the_services_secret():
    doc = config(rolling("prod", 1, [("v1", 1)]), routing_id={"header": "x-device-id"})
    with pytest.raises(ValueError, match=r"^routing_id\.header: needs routing_id\.signing_key_id"):
        rollway.Router(doc)
    without = rollway.Router(config(rolling("prod", 1, [("v1", 1)])))
    assert not without.route(None, now=NOW, header_key="device-1").keyed    # no header named: ignored


@pytest.mark.parametrize("routing_id,message", [
    ({"header": "x-device-id"}, r"^routing_id\.header: needs routing_id\.signing_key_id"),
    ({"header": "x device", "signing_key_id": "k1"}, r"^routing_id\.header"),
    ({"header": "cookie", "signing_key_id": "k1"}, r"^routing_id\.header: 'cookie' is not a client's own key"),
    ({"header": "x-app-version", "signing_key_id": "k1"}, r"^routing_id\.header"),
])
def test_the_route_map_refuses_a_header_it_cannot_use(routing_id, message):
    from rollway.model.routemap import RouteMapError, parse_routemap

    doc = {"service": "web", "routing_id": routing_id,
           "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"}]}
    with pytest.raises(RouteMapError, match=message):
        parse_routemap(json.dumps(doc))
