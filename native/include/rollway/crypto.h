// Small, dependency-free MAC primitives for routing-id tokens and test overrides.
//
// Why not OpenSSL: the core is linked into an Envoy dynamic module, and Envoy carries its
// own BoringSSL; pulling a second libcrypto into Envoy's process invites symbol clashes.
// Both primitives are short, well specified, and checked in tests against Python's
// hashlib/hmac and the SipHash paper's reference vector.
//
// - SipHash-2-4 (64-bit tag, 128-bit key) signs routing-id cookies: a keyed PRF built for
//   short inputs, ~20 ns per token, so verifying every request's cookie stays cheap.
// - HMAC-SHA256 signs operator test overrides: rare, and the standard an operator's
//   tooling can reproduce with any library.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rollway {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::string_view data);
Sha256Digest hmac_sha256(std::string_view key, std::string_view message);

// SipHash-2-4 with a 16-byte key, as in Aumasson & Bernstein (2012).
uint64_t siphash24(const std::array<uint8_t, 16>& key, std::string_view message);

// Compares two equal-length byte strings in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace rollway
