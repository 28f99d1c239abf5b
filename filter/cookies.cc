#include "cookies.h"

#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace rollway {
namespace {

inline bool is_space(char c) { return c == ' ' || c == '\t'; }

// Bytes a value may have to lose at its ends: spaces and tabs (trimmed) and '"' (unquoted).
struct ByteSet {
  bool has[256] = {};
  constexpr ByteSet(std::string_view bytes) {
    for (const char c : bytes) has[static_cast<unsigned char>(c)] = true;
  }
  constexpr bool operator[](char c) const { return has[static_cast<unsigned char>(c)]; }
};
constexpr ByteSet kTrimmedOrQuote(" \t\"");

// Bytes [p, p + min(8, available)) as a little-endian word, zero above. A full load when
// eight bytes are readable (the usual case, even for a short pair: the bytes past the pair
// are masked off by the caller); a byte loop only at the very end of the header.
inline uint64_t load_head(const char* p, size_t available) noexcept {
  uint64_t word = 0;
  if (available >= sizeof word) {
    std::memcpy(&word, p, sizeof word);
    return word;
  }
  for (size_t i = 0; i < available; ++i) word |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return word;
}

// The first ';' in [p, end), or end. `begin` is where the header starts: the last partial
// block is read as the header's final 16 bytes (inside the header, never past it) with the
// bytes before p masked off. memchr did the same work through a call and a PLT jump
// (~30 instructions a pair); this is about half.
inline const char* find_semicolon(const char* begin, const char* p, const char* end) noexcept {
#if defined(__SSE2__)
  const __m128i semicolon = _mm_set1_epi8(';');
  for (; end - p >= 16; p += 16) {
    const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const unsigned found = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(block, semicolon)));
    if (found != 0) return p + __builtin_ctz(found);
  }
  if (p == end) return end;
  if (end - begin >= 16) {
    const char* const last = end - 16;
    const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(last));
    const unsigned before_p = (1u << (p - last)) - 1;
    const unsigned found =
        static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(block, semicolon))) & ~before_p;
    return found != 0 ? last + __builtin_ctz(found) : end;
  }
#else
  (void)begin;
#endif
  const void* found = std::memchr(p, ';', static_cast<size_t>(end - p));
  return found != nullptr ? static_cast<const char*>(found) : end;
}

// The value between '=' and the pair's end: trimmed, then unquoted. Values rarely have
// spaces or quotes at either end, so both ends are checked once before any loop.
inline std::string_view pair_value(const char* begin, const char* end) noexcept {
  if (begin < end && (kTrimmedOrQuote[*begin] | kTrimmedOrQuote[end[-1]])) {
    while (begin < end && is_space(*begin)) ++begin;
    while (end > begin && is_space(end[-1])) --end;
    if (end - begin >= 2 && *begin == '"' && end[-1] == '"') {
      ++begin;
      --end;
    }
  }
  return std::string_view(begin, static_cast<size_t>(end - begin));
}

}  // namespace

CookieNames::CookieNames(const std::string_view (&names)[kWantedCookies]) noexcept {
  for (size_t i = 0; i < kWantedCookies; ++i) {
    names_[i] = names[i];
    const size_t head_bytes = names[i].size() < 8 ? names[i].size() : 8;
    head_[i] = load_head(names[i].data(), head_bytes);
    head_mask_[i] = head_bytes == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * head_bytes)) - 1;
  }
}

// Pair by pair: a vector compare finds the pair's end, and a pair is ours only if, past leading
// spaces, it starts with a wanted name followed by optional spaces and '='; other pairs are
// never scanned byte by byte. Same results as splitting on ';' then on the first '=' and
// trimming (filter/fuzz/cookie_fuzz.cc checks every input against that), which holds
// because a name is a token: no '=', no spaces. The names still wanted are a bit set, so a
// found name costs one test per later pair.
bool scan_cookie_header(std::string_view header, const CookieNames& names,
                        CookieMatch (&matches)[kWantedCookies]) noexcept {
  unsigned wanted = 0;
  for (size_t i = 0; i < kWantedCookies; ++i) wanted |= matches[i].found ? 0u : 1u << i;
  if (wanted == 0) return true;
  if (header.size() > kMaxCookieHeaderScan) return false;
  const char* p = header.data();
  const char* const end = p + header.size();
  while (p < end) {
    if (p < end && is_space(*p)) {
      do ++p;
      while (p < end && is_space(*p));
    }
    const char* const pair_end = find_semicolon(header.data(), p, end);
    const size_t length = static_cast<size_t>(pair_end - p);
    const uint64_t head = load_head(p, static_cast<size_t>(end - p));
#pragma GCC unroll 3
    for (size_t i = 0; i < kWantedCookies; ++i) {
      if ((wanted & (1u << i)) == 0 || ((head ^ names.head(i)) & names.head_mask(i)) != 0) continue;
      const std::string_view name = names.name(i);
      const size_t n = name.size();
      if (n == 0 || length <= n || (n > 8 && std::memcmp(p + 8, name.data() + 8, n - 8) != 0)) continue;
      const char* q = p + n;  // inside the pair: length > n
      if (*q != '=') {
        if (!is_space(*q)) continue;
        while (is_space(*q) && q + 1 < pair_end) ++q;
        if (*q != '=') continue;
      }
      matches[i].value = pair_value(q + 1, pair_end);
      matches[i].found = true;
      wanted &= ~(1u << i);
      if (wanted == 0) return true;
      break;
    }
    if (pair_end == end) break;
    p = pair_end + 1;
  }
  return false;
}

}  // namespace rollway
