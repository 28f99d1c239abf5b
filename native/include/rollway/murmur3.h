// MurmurHash3 (Austin Appleby, public domain), x86_32 and x64_128 variants.
//
// Bit-identical to the reference implementation and therefore to the `mmh3` Python
// package: tail bytes are read as unsigned, blocks little-endian, the 128-bit variant
// seeds both lanes with the 32-bit seed. The routing decision hashes routing ids with
// these functions, so any divergence here would move sessions: tests compare every
// tail length and random inputs against `mmh3`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rollway {

struct Hash128 {
  uint64_t low;   // first 8 bytes of the digest (h1)
  uint64_t high;  // last 8 bytes of the digest (h2)
};

uint32_t murmur3_x86_32(const void* data, size_t length, uint32_t seed);
Hash128 murmur3_x64_128(const void* data, size_t length, uint32_t seed);

// The 64-bit finaliser of MurmurHash3 (a bijection with good avalanche). The router uses
// it to derive independent per-stage values from one digest.
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

}  // namespace rollway
