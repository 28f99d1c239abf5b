// Routing-id tokens: the value of the routing-id cookie.
//
// Text form (lowercase hex, fixed length so parsing is a bounds check and a hex scan):
//
//   "1" | issued_at: 8 hex (unix seconds, u32) | routing key: 16 hex (64 random bits)
//       | [ mac: 16 hex = SipHash-2-4(key, the 25 characters before it) ]
//
// 25 characters unsigned, 41 signed. The routing key (the 16 random hex digits) is what the
// router hashes, so re-signing or re-issuing a token with the same key keeps its routing.
// The issue time travels inside the token so the lifetime is enforced here, not only by
// the browser's Max-Age.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rollway {

constexpr char kTokenFormatVersion = '1';
constexpr size_t kUnsignedTokenLength = 25;
constexpr size_t kSignedTokenLength = 41;
constexpr size_t kRoutingKeyOffset = 9;
constexpr size_t kRoutingKeyLength = 16;
// Tokens issued up to this far in the future are accepted (clock skew between Envoys).
constexpr int64_t kTokenClockSkewSeconds = 300;

enum class IdStatus : uint8_t {
  kValid = 0,
  kAbsent = 1,        // no cookie
  kMalformed = 2,     // wrong length, bad characters, unknown format, issued in the future
  kExpired = 3,       // older than the configured lifetime
  kBadSignature = 4,  // a signing key is configured and the MAC is missing or wrong
};

const char* id_status_name(IdStatus status);

// A 128-bit SipHash key derived from operator secret bytes (any length).
struct TokenKey {
  std::array<uint8_t, 16> bytes;
};
TokenKey derive_token_key(std::string_view secret);

// Cookie-less clients (an app that keeps no cookies) name a key of their own in a header
// (a device id). The router hashes SipHash-2-4(service key, header value) instead of a
// token's random routing key, so a client choosing its key cannot choose where it lands.
// A value is used only if it is 1..kMaxHeaderKeyLength visible ASCII characters; anything
// else is treated as absent.
constexpr size_t kMaxHeaderKeyLength = 128;
TokenKey derive_header_key(std::string_view secret);
// Writes the request's routing key (kRoutingKeyLength hex digits) into `out`; false, writing
// nothing, for a value that is empty, too long or not visible ASCII.
bool header_routing_key(const TokenKey& key, std::string_view value, char (&out)[kRoutingKeyLength]) noexcept;

struct ParsedToken {
  IdStatus status = IdStatus::kAbsent;
  uint32_t issued_at = 0;
  std::string_view routing_key;  // points into the input; valid only when status is kValid
};

// Never throws, never reads past `value`. `key` may be null (signing not configured: the
// MAC of a signed token is then ignored).
ParsedToken parse_token(std::string_view value, int64_t now, int64_t ttl_seconds,
                        const TokenKey* key) noexcept;

struct MintedToken {
  char text[kSignedTokenLength];
  uint8_t length = 0;
  std::string_view view() const { return std::string_view(text, length); }
  bool minted() const { return length != 0; }
  std::string_view routing_key() const {
    return std::string_view(text + kRoutingKeyOffset, kRoutingKeyLength);
  }
};

// Mints a token issued at `now` (clamped to the u32 range) with 64 fresh random bits. When
// the OS gives no random bytes (secure_random64 fails) nothing is minted: the result has
// length 0 (minted() false). Ids are never made from predictable bits.
MintedToken mint_token(int64_t now, const TokenKey* key) noexcept;
// Same with caller-chosen random bits: deterministic, for tests and simulations.
MintedToken mint_token_with(int64_t now, const TokenKey* key, uint64_t random_bits) noexcept;

// 64 unpredictable bits: SipHash of a per-thread counter under a per-thread key drawn
// from the OS with getrandom(2), so one token reveals nothing about the next. False, with
// nothing written, when the OS gives no random bytes (no fallback to clocks or addresses);
// the key is drawn again on the next call.
bool secure_random64(uint64_t* out) noexcept;

}  // namespace rollway
