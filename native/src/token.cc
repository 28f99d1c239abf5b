#include "rollway/token.h"

#include <chrono>
#include <random>
#include <string>

#include "rollway/crypto.h"

namespace rollway {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Lowercase hex only: one canonical spelling per token.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

inline bool parse_hex_u64(std::string_view text, uint64_t* out) {
  uint64_t v = 0;
  for (char c : text) {
    const int d = hex_value(c);
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
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

TokenKey derive_token_key(std::string_view secret) {
  // Domain-separated so the same operator secret can never produce a MAC that is valid in
  // another context (the override HMAC uses the raw secret).
  std::string material = "rollway-routing-id-v1:";
  material.append(secret.data(), secret.size());
  const Sha256Digest digest = sha256(material);
  TokenKey key{};
  for (size_t i = 0; i < key.bytes.size(); ++i) key.bytes[i] = digest[i];
  return key;
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
  uint64_t issued = 0;
  uint64_t ignored = 0;
  uint64_t mac = 0;
  if (!parse_hex_u64(value.substr(1, 8), &issued) ||
      !parse_hex_u64(value.substr(kRoutingKeyOffset, kRoutingKeyLength), &ignored) ||
      (value.size() == kSignedTokenLength &&
       !parse_hex_u64(value.substr(kUnsignedTokenLength, 16), &mac))) {
    result.status = IdStatus::kMalformed;
    return result;
  }
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
  result.routing_key = value.substr(kRoutingKeyOffset, kRoutingKeyLength);
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
  return mint_token_with(now, key, secure_random64());
}

uint64_t secure_random64() noexcept {
  struct Generator {
    std::array<uint8_t, 16> key{};
    uint64_t counter = 0;
    bool seeded = false;
  };
  thread_local Generator gen;
  if (!gen.seeded) {
    try {
      std::random_device device;
      for (size_t i = 0; i < gen.key.size(); i += 4) {
        const uint32_t r = device();
        for (size_t j = 0; j < 4; ++j) gen.key[i + j] = static_cast<uint8_t>(r >> (8 * j));
      }
    } catch (...) {
      // No OS entropy source: fall back to address and clock entropy rather than failing
      // a request. Ids stay unique per thread; they are routing keys, not secrets.
      const uint64_t a = reinterpret_cast<uintptr_t>(&gen);
      const uint64_t b = static_cast<uint64_t>(
          std::chrono::steady_clock::now().time_since_epoch().count());
      for (size_t i = 0; i < 8; ++i) {
        gen.key[i] = static_cast<uint8_t>(a >> (8 * i));
        gen.key[8 + i] = static_cast<uint8_t>(b >> (8 * i));
      }
    }
    gen.seeded = true;
  }
  const uint64_t counter = gen.counter++;
  return siphash24(gen.key, std::string_view(reinterpret_cast<const char*>(&counter),
                                             sizeof counter));
}

}  // namespace rollway
