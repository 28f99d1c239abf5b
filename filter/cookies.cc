#include "cookies.h"

#include <cstring>

namespace rollway {
namespace {

inline bool is_space(char c) { return c == ' ' || c == '\t'; }


}  // namespace

// Pair by pair: memchr finds the pair's end, and a pair is ours only if, past leading
// spaces, it starts with a wanted name followed by optional spaces and '='; other pairs are
// never scanned byte by byte. Same results as splitting on ';' then on the first '=' and
// trimming (filter/fuzz/cookie_fuzz.cc checks every input against that), which holds
// because a name is a token: no '=', no spaces.
bool scan_cookie_header(std::string_view header, const std::string_view* names, CookieMatch* matches,
                        size_t count) noexcept {
  size_t missing = 0;
  for (size_t i = 0; i < count; ++i) missing += matches[i].found ? 0 : 1;
  if (missing == 0) return true;
  if (header.size() > kMaxCookieHeaderScan) return false;
  const char* p = header.data();
  const char* const end = p + header.size();
  while (p < end) {
    const void* semicolon = std::memchr(p, ';', static_cast<size_t>(end - p));
    const char* pair_end = semicolon != nullptr ? static_cast<const char*>(semicolon) : end;
    while (p < pair_end && is_space(*p)) ++p;
    const size_t length = static_cast<size_t>(pair_end - p);
    for (size_t i = 0; i < count; ++i) {
      const std::string_view name = names[i];
      // The last byte first: cookie names often share a prefix (rw_rid, rw_ver, rw_stage).
      if (matches[i].found || name.empty() || length <= name.size() || p[name.size() - 1] != name.back() ||
          std::memcmp(p, name.data(), name.size() - 1) != 0) {
        continue;
      }
      const char* q = p + name.size();
      while (q < pair_end && is_space(*q)) ++q;
      if (q == pair_end || *q != '=') continue;
      const char* value_begin = q + 1;
      const char* value_end = pair_end;
      while (value_begin < value_end && is_space(*value_begin)) ++value_begin;
      while (value_end > value_begin && is_space(value_end[-1])) --value_end;
      if (value_end - value_begin >= 2 && *value_begin == '"' && value_end[-1] == '"') {
        ++value_begin;
        --value_end;
      }
      matches[i].value = std::string_view(value_begin, static_cast<size_t>(value_end - value_begin));
      matches[i].found = true;
      if (--missing == 0) return true;
      break;
    }
    if (pair_end == end) break;
    p = pair_end + 1;
  }
  return false;
}

}  // namespace rollway
