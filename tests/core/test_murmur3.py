"""MurmurHash3 in the core is bit-identical to the mmh3 package."""

import mmh3
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rollway

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@given(st.binary(max_size=300), seeds)
def test_x86_32_matches_mmh3(data, seed):
    assert rollway.murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)


@given(st.binary(max_size=300), seeds)
def test_x64_128_matches_mmh3(data, seed):
    assert rollway.murmur3_128(data, seed) == mmh3.hash128(data, seed, x64arch=True, signed=False)


@pytest.mark.parametrize("length", range(0, 49))
def test_every_tail_length(length):
    # Bytes >= 0x80 in every position catch a signed-char tail bug.
    data = bytes((0x80 + 37 * i) % 256 for i in range(length))
    for seed in (0, 1, 0x9747B28C, 2**32 - 1):
        assert rollway.murmur3_32(data, seed) == mmh3.hash(data, seed, signed=False)
        assert rollway.murmur3_128(data, seed) == mmh3.hash128(data, seed, x64arch=True, signed=False)


@given(st.text(max_size=100), seeds)
def test_str_is_hashed_as_utf8_like_mmh3(text, seed):
    assert rollway.murmur3_32(text, seed) == mmh3.hash(text, seed, signed=False)
    assert rollway.murmur3_128(text, seed) == mmh3.hash128(text, seed, x64arch=True, signed=False)


def test_known_vectors():
    assert rollway.murmur3_32(b"", 0) == 0
    assert rollway.murmur3_32(b"", 1) == 0x514E28B7
    assert rollway.murmur3_32(b"Hello, world!", 1234) == 0xFAF6CDB3
    assert rollway.murmur3_128(b"") == 0


def test_bytearray_and_memoryview_are_accepted():
    data = b"routing"
    assert rollway.murmur3_32(bytearray(data)) == rollway.murmur3_32(data)
    assert rollway.murmur3_128(memoryview(data)) == rollway.murmur3_128(data)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_out_of_range_seed_is_rejected_like_mmh3(seed):
    with pytest.raises(ValueError, match="seed is out of range"):
        rollway.murmur3_32(b"x", seed)
    with pytest.raises(ValueError, match="seed is out of range"):
        rollway.murmur3_128(b"x", seed)


def test_non_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        rollway.murmur3_32(12345)
