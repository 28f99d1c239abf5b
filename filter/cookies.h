// Cookie header parsing for the filter: pure C++, no Envoy, fuzzed on its own.
//
// A request may carry several Cookie headers (HTTP/2 splits them) and each holds
// "name=value" pairs separated by ';'. We look for a few names and take, for each, the first
// occurrence in header order (RFC 6265 puts the most specific path first). Whitespace
// around pairs is skipped, a value in double quotes is unquoted, pairs without '=' are
// ignored. Nothing is allocated: results point into the header values.
#pragma once

#include <cstddef>
#include <string_view>

namespace rollway {

struct CookieMatch {
  std::string_view value;
  bool found = false;
};

// Looks for `names[0..count)` in one Cookie header value; fills `matches[i]` that are still
// empty. Returns true when all have been found (callers may stop early).
bool scan_cookie_header(std::string_view header, const std::string_view* names, CookieMatch* matches,
                        size_t count) noexcept;

// The longest Cookie header value we scan; longer values are treated as carrying no
// Rollway cookies (Envoy's own header limits are lower by default).
constexpr size_t kMaxCookieHeaderScan = 256 * 1024;

}  // namespace rollway
