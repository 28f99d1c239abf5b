// Cookie header parsing for the filter: pure C++, no Envoy, fuzzed on its own.
//
// A request may carry several Cookie headers (HTTP/2 splits them) and each holds
// "name=value" pairs separated by ';'. We look for a few names and take, for each, the first
// occurrence in header order (RFC 6265 puts the most specific path first). Whitespace
// around pairs is skipped, a value in double quotes is unquoted, pairs without '=' are
// ignored. Nothing is allocated: results point into the header values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rollway {

struct CookieMatch {
  std::string_view value;
  bool found = false;
};

// The filter looks for exactly three cookies: the routing id, the version and the stage.
// A fixed count lets the compiler unroll the per-pair name checks.
constexpr size_t kWantedCookies = 3;

// The names a scanner looks for, with the first eight bytes of each kept as a word, so a pair
// is told apart from a name by one load and one compare per name, without a memcmp call.
// The names' bytes must outlive this object (the filter's are in its config).
class CookieNames {
 public:
  CookieNames() = default;  // looks for nothing
  explicit CookieNames(const std::string_view (&names)[kWantedCookies]) noexcept;
  std::string_view name(size_t i) const { return names_[i]; }
  uint64_t head(size_t i) const { return head_[i]; }
  uint64_t head_mask(size_t i) const { return head_mask_[i]; }

 private:
  std::string_view names_[kWantedCookies];
  uint64_t head_[kWantedCookies] = {};       // bytes [0, min(8, size)) of the name, little-endian
  uint64_t head_mask_[kWantedCookies] = {};  // ones over those bytes
};

// Looks for the names in one Cookie header value; fills the `matches` that are still empty.
// Returns true when all have been found (callers may stop early). An empty name never
// matches.
bool scan_cookie_header(std::string_view header, const CookieNames& names,
                        CookieMatch (&matches)[kWantedCookies]) noexcept;

// The longest Cookie header value we scan; longer values are treated as carrying no
// Rollway cookies (Envoy's own header limits are lower by default).
constexpr size_t kMaxCookieHeaderScan = 256 * 1024;

}  // namespace rollway
