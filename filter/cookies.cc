#include "cookies.h"

namespace rollway {
namespace {

inline bool is_space(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim(std::string_view s) {
  size_t begin = 0;
  size_t end = s.size();
  while (begin < end && is_space(s[begin])) ++begin;
  while (end > begin && is_space(s[end - 1])) --end;
  return s.substr(begin, end - begin);
}

}  // namespace

bool scan_cookie_header(std::string_view header, const std::string_view* names, CookieMatch* matches,
                        size_t count) noexcept {
  auto all_found = [&] {
    for (size_t i = 0; i < count; ++i) {
      if (!matches[i].found) return false;
    }
    return true;
  };
  if (header.size() > kMaxCookieHeaderScan) return all_found();
  size_t pos = 0;
  while (pos < header.size() && !all_found()) {
    size_t end = header.find(';', pos);
    if (end == std::string_view::npos) end = header.size();
    const std::string_view pair = header.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = trim(pair.substr(0, eq));
    std::string_view value = trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    for (size_t i = 0; i < count; ++i) {
      if (!matches[i].found && name == names[i]) {
        matches[i].value = value;
        matches[i].found = true;
        break;
      }
    }
  }
  return all_found();
}

}  // namespace rollway
