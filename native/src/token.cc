#include "rollway/token.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "rollway/crypto.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace rollway {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Lowercase hex only: one canonical spelling per token. Checked and decoded eight
// characters at a time in a 64-bit word (SWAR): random ids mix digits and letters, and a
// per-character loop spent most of a decision on branches.
constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHigh = 0x8080808080808080ULL;

inline uint64_t load8(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // little-endian: the first character is the lowest byte
}

// High bit of each byte set where lo <= byte <= hi (bytes must be < 0x80).
inline uint64_t bytes_between(uint64_t x, uint64_t lo, uint64_t hi) {
  const uint64_t at_least_lo = (x | kHigh) - lo * kOnes;
  const uint64_t at_most_hi = (hi * kOnes | kHigh) - x;
  return at_least_lo & at_most_hi & kHigh;
}

inline bool is_hex8(uint64_t x) {
  if (x & kHigh) return false;
  return (bytes_between(x, '0', '9') | bytes_between(x, 'a', 'f')) == kHigh;
}

// Whether the 24 characters [p, p + 24) are all lowercase hex: the issue time and the routing
// key, checked as two overlapping 16-byte blocks with SSE2 (a third of the SWAR's work), or
// as three words without it.
inline bool is_hex24(const char* p) {
#if defined(__SSE2__)
  auto hex_block = [](const char* at) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
    // Signed compares: bytes >= 0x80 are negative and fall outside both ranges.
    const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
                                        _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
    const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('a' - 1)),
                                         _mm_cmplt_epi8(x, _mm_set1_epi8('f' + 1)));
    return _mm_movemask_epi8(_mm_or_si128(digit, letter)) == 0xffff;
  };
  return hex_block(p) && hex_block(p + 8);
#else
  return is_hex8(load8(p)) && is_hex8(load8(p + 8)) && is_hex8(load8(p + 16));
#endif
}

// Eight validated hex characters to their 32-bit value, first character most significant.
inline uint32_t decode_hex8(uint64_t x) {
  uint64_t v = (x & 0x0f0f0f0f0f0f0f0fULL) + ((x >> 6) & kOnes) * 9;  // 'a' = 0x61 -> 1 + 9
  v = __builtin_bswap64(v);
  v = (v | (v >> 4)) & 0x00ff00ff00ff00ffULL;
  v = (v | (v >> 8)) & 0x0000ffff0000ffffULL;
  v = (v | (v >> 16)) & 0x00000000ffffffffULL;
  return static_cast<uint32_t>(v);
}

inline void write_hex(char* dst, uint64_t value, int digits) {
  for (int i = digits - 1; i >= 0; --i) {
    dst[i] = kHexDigits[value & 0xf];
    value >>= 4;
  }
}

}  // namespace

const char* id_status_name(IdStatus status) {
  switch (status) {
    case IdStatus::kValid: return "valid";
    case IdStatus::kAbsent: return "absent";
    case IdStatus::kMalformed: return "malformed";
    case IdStatus::kExpired: return "expired";
    case IdStatus::kBadSignature: return "bad_signature";
  }
  return "unknown";
}

namespace {

// SHA-256(domain + secret), cut to a SipHash key: the same operator secret gives unrelated
// keys in different domains.
TokenKey derive_key(std::string_view domain, std::string_view secret) {
  std::string material(domain);
  material.append(secret.data(), secret.size());
  const Sha256Digest digest = sha256(material);
  TokenKey key{};
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = digest[i];
  return key;
}

}  // namespace

TokenKey derive_token_key(std::string_view secret) {
  // Domain-separated so the same operator secret can never produce a MAC that is valid in
  // another context (the override HMAC uses the raw secret).
  return derive_key("rollway-routing-id-v1:", secret);
}

TokenKey derive_header_key(std::string_view secret) {
  // Its own domain: a header key's hash can never be a routing id's MAC, nor the reverse.
  return derive_key("rollway-routing-key-header-v1:", secret);
}

bool header_routing_key(const TokenKey& key, std::string_view value, char (&out)[kRoutingKeyLength]) noexcept {
  if (value.empty() || value.size() > kMaxHeaderKeyLength) return false;
  for (const char c : value) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  uint64_t h = siphash24(key.bytes, value);
  for (size_t i = kRoutingKeyLength; i-- > 0;) {
    out[i] = kHexDigits[h & 0xf];
    h >>= 4;
  }
  return true;
}

ParsedToken parse_token(std::string_view value, int64_t now, int64_t ttl_seconds,
                        const TokenKey* key) noexcept {
  ParsedToken result;
  if (value.empty()) {
    result.status = IdStatus::kAbsent;
    return result;
  }
  if ((value.size() != kUnsignedTokenLength && value.size() != kSignedTokenLength) ||
      value[0] != kTokenFormatVersion) {
    result.status = IdStatus::kMalformed;
    return result;
  }
  const char* p = value.data();
  static_assert(kRoutingKeyOffset == 9 && kRoutingKeyLength == 16, "issue time and key are [1, 25)");
  const uint64_t issued_text = load8(p + 1);
  bool ok = is_hex24(p + 1);
  uint64_t mac = 0;
  if (value.size() == kSignedTokenLength) {
    const uint64_t mac_hi = load8(p + kUnsignedTokenLength);
    const uint64_t mac_lo = load8(p + kUnsignedTokenLength + 8);
    ok = ok && is_hex8(mac_hi) && is_hex8(mac_lo);
    mac = (static_cast<uint64_t>(decode_hex8(mac_hi)) << 32) | decode_hex8(mac_lo);
  }
  if (!ok) {
    result.status = IdStatus::kMalformed;
    return result;
  }
  const uint64_t issued = decode_hex8(issued_text);
  if (key != nullptr) {
    if (value.size() != kSignedTokenLength ||
        siphash24(key->bytes, value.substr(0, kUnsignedTokenLength)) != mac) {
      result.status = IdStatus::kBadSignature;
      return result;
    }
  }
  const int64_t issued_at = static_cast<int64_t>(issued);
  if (issued_at > now + kTokenClockSkewSeconds) {
    result.status = IdStatus::kMalformed;
    return result;
  }
  if (now >= issued_at + ttl_seconds) {
    result.status = IdStatus::kExpired;
    return result;
  }
  result.status = IdStatus::kValid;
  result.issued_at = static_cast<uint32_t>(issued);
  result.routing_key = std::string_view(p + kRoutingKeyOffset, kRoutingKeyLength);  // length checked above
  return result;
}

MintedToken mint_token_with(int64_t now, const TokenKey* key, uint64_t random_bits) noexcept {
  MintedToken token;
  const int64_t clamped = now < 0 ? 0 : (now > 0xffffffffLL ? 0xffffffffLL : now);
  token.text[0] = kTokenFormatVersion;
  write_hex(token.text + 1, static_cast<uint64_t>(clamped), 8);
  write_hex(token.text + kRoutingKeyOffset, random_bits, 16);
  token.length = kUnsignedTokenLength;
  if (key != nullptr) {
    const uint64_t mac =
        siphash24(key->bytes, std::string_view(token.text, kUnsignedTokenLength));
    write_hex(token.text + kUnsignedTokenLength, mac, 16);
    token.length = kSignedTokenLength;
  }
  return token;
}

MintedToken mint_token(int64_t now, const TokenKey* key) noexcept {
  uint64_t bits = 0;
  if (!secure_random64(&bits)) return MintedToken{};   // length 0: not minted
  return mint_token_with(now, key, bits);
}

namespace {

// getrandom(2) into `out`, retrying on EINTR and short reads; false on any other failure
// (ENOSYS on a kernel before 3.17, a seccomp filter, ...). GRND_NONBLOCK: an entropy pool not
// yet initialized (early boot) is a failure, not a request blocked inside Envoy.
bool os_random(uint8_t* out, size_t size) noexcept {
  size_t filled = 0;
  while (filled < size) {
    const ssize_t got = ::getrandom(out + filled, size - filled, GRND_NONBLOCK);
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    filled += static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

// Tests fail the OS source on purpose (ROLLWAY_TEST_FAIL_GETRANDOM=1 in the environment at
// the first draw of a thread) to check that the filter serves without minting.
bool secure_random64(uint64_t* out) noexcept {
  struct Generator {
    std::array<uint8_t, 16> key{};
    uint64_t counter = 0;
    bool seeded = false;
  };
  thread_local Generator gen;
  if (!gen.seeded) {
    const char* fail = std::getenv("ROLLWAY_TEST_FAIL_GETRANDOM");
    if ((fail != nullptr && fail[0] == '1') || !os_random(gen.key.data(), gen.key.size())) return false;
    gen.seeded = true;
  }
  const uint64_t counter = gen.counter++;
  *out = siphash24(gen.key, std::string_view(reinterpret_cast<const char*>(&counter), sizeof counter));
  return true;
}

}  // namespace rollway
