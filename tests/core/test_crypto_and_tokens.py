"""MAC primitives and routing-id tokens."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rollway
from rollway import _core

import oracle

NOW = 1_750_000_000
SECRET = b"0123456789abcdef-operator-secret"


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_sha256_matches_stdlib(key, message):
    assert _core.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()


def test_siphash_reference_vector():
    # The SipHash paper, appendix A: key 00..0f, message 00..0e.
    assert _core.siphash24(bytes(range(16)), bytes(range(15))) == 0xA129CA6149BE45E5


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=100))
def test_siphash_matches_oracle(key, message):
    assert _core.siphash24(key, message) == oracle.siphash24(key, message)


def test_minted_token_shape_and_round_trip():
    token = rollway.new_routing_id(NOW)
    assert len(token) == 25 and token[0] == "1" and int(token[1:9], 16) == NOW
    parsed = rollway.parse_routing_id(token, NOW + 10)
    assert parsed == {"status": "valid", "issued_at": NOW, "routing_key": token[9:25]}


def test_minted_tokens_carry_64_fresh_random_bits():
    keys = {rollway.new_routing_id(NOW)[9:25] for _ in range(20000)}
    assert len(keys) == 20000
    # Every one of the 64 bits varies across tokens.
    ored = 0
    anded = (1 << 64) - 1
    for key in keys:
        ored |= int(key, 16)
        anded &= int(key, 16)
    assert ored == (1 << 64) - 1 and anded == 0


def test_expiry_is_enforced_by_the_token():
    token = rollway.new_routing_id(NOW)
    assert rollway.parse_routing_id(token, NOW + 86399, 86400)["status"] == "valid"
    assert rollway.parse_routing_id(token, NOW + 86400, 86400)["status"] == "expired"
    assert rollway.parse_routing_id(token, NOW + 299 - 600, 86400)["status"] == "malformed"


@pytest.mark.parametrize("bad", [
    "x", "1" * 24, "1" * 26, "2" + "0" * 24, "1" + "G" * 24, "1" + "A" * 24,
    "1 " + "0" * 23, "1" + "0" * 23 + "\x00", "1" + "0" * 39 + "z",
])
def test_malformed_tokens(bad):
    assert rollway.parse_routing_id(bad, NOW)["status"] == "malformed"


def test_signed_tokens_verify_and_forgeries_fail():
    token = rollway.new_routing_id(NOW, signing_secret=SECRET)
    assert len(token) == 41
    assert token == oracle.mint(NOW, int(token[9:25], 16), SECRET)
    assert rollway.parse_routing_id(token, NOW, signing_secret=SECRET)["status"] == "valid"
    flipped = token[:20] + ("0" if token[20] != "0" else "1") + token[21:]
    assert rollway.parse_routing_id(flipped, NOW, signing_secret=SECRET)["status"] == "bad_signature"
    assert rollway.parse_routing_id(token[:25], NOW, signing_secret=SECRET)["status"] == "bad_signature"
    other = rollway.new_routing_id(NOW, signing_secret=b"another-secret-of-16-bytes")
    assert rollway.parse_routing_id(other, NOW, signing_secret=SECRET)["status"] == "bad_signature"
    # Without a configured key the MAC is not checked (signing may be enabled later).
    assert rollway.parse_routing_id(flipped, NOW)["status"] == "valid"


@given(st.text(max_size=60), st.integers(min_value=0, max_value=2**32), st.booleans())
def test_token_parsing_matches_oracle(value, now, signed):
    secret = SECRET if signed else None
    got = rollway.parse_routing_id(value, now, 86400, signing_secret=secret)
    status, key = oracle.parse_token(value, now, 86400, secret)
    assert (got["status"], got["routing_key"]) == (status, key)


def test_no_random_bytes_means_no_routing_id_never_a_predictable_one(tmp_path):
    """The core draws its per-thread key with getrandom(2); when that fails (the test switch
    stands in for ENOSYS or a seccomp filter) minting refuses rather than falling back to
    clock or address bits, and a decision still routes, without an id."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, rollway\n"
        "try:\n    rollway.new_routing_id(); minted = True\n"
        "except RuntimeError as e:\n    minted = str(e)\n"
        "cfg = {'service': 'web', 'generation': 1, 'routing_id': {'cookie': 'rw_rid', 'ttl_seconds': 60},\n"
        "       'stages': [{'name': 'prod', 'weight': 1, 'mode': 'rolling', 'direction': {'state': 'steady'},\n"
        "                   'versions': [{'name': 'v1', 'capacity': 1, 'cluster': 'c1'}]}]}\n"
        "d = rollway.Router(json.dumps(cfg)).route(None)\n"
        "print(json.dumps({'minted': minted, 'version': d.version, 'new_id': d.new_routing_id}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ROLLWAY_TEST_FAIL_GETRANDOM": "1"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert "getrandom" in result["minted"]
    assert result["version"] == "v1" and result["new_id"] is None
