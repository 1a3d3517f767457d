// The one UTF-8 layer of the code base: the well-formedness rule (Unicode 15,
// table 3-7, which is what PostgreSQL's pg_utf8_islegal accepts) and the
// encoder. Header-only and dependency-free, so check_json's hot loop inlines
// it and every layer (storage/, api/) can include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ces {

namespace utf8 {

/// Length (2..4) of the well-formed multi-byte UTF-8 sequence starting at p
/// (p < end, *p >= 0x80), or 0 when it is ill-formed: overlong, an encoded
/// surrogate (U+D800..DFFF), above U+10FFFF, a stray continuation byte or
/// truncated by `end`. Noncharacters (U+FFFE, ...) are well-formed.
inline size_t sequence_length(const unsigned char* p,
                              const unsigned char* end) noexcept {
  const unsigned char c = p[0];
  const size_t avail = static_cast<size_t>(end - p);
  auto cont = [](unsigned char b) { return (b & 0xC0) == 0x80; };
  if (c < 0xC2)
    return 0; // continuation byte or overlong C0/C1
  if (c < 0xE0)
    return avail >= 2 && cont(p[1]) ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3)
      return 0;
    const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80; // E0: overlong below A0
    const unsigned char hi = c == 0xED ? 0x9F : 0xBF; // ED: surrogates past 9F
    return p[1] >= lo && p[1] <= hi && cont(p[2]) ? 3 : 0;
  }
  if (c < 0xF5) {
    if (avail < 4)
      return 0;
    const unsigned char lo = c == 0xF0 ? 0x90 : 0x80; // F0: overlong below 90
    const unsigned char hi = c == 0xF4 ? 0x8F : 0xBF; // F4: past U+10FFFF
    return p[1] >= lo && p[1] <= hi && cont(p[2]) && cont(p[3]) ? 4 : 0;
  }
  return 0;
}

/// Length of the well-formed UTF-8 sequence at s[i] (i < s.size()): 1 for
/// ASCII (NUL included), else as sequence_length.
inline size_t sequence_length(std::string_view s, size_t i) noexcept {
  const auto p = reinterpret_cast<const unsigned char*>(s.data());
  return p[i] < 0x80 ? 1 : sequence_length(p + i, p + s.size());
}

/// Appends code point `cp` (at most U+10FFFF, not a surrogate) as UTF-8.
inline void append(std::string& out, uint32_t cp) {
  char buf[4];
  size_t n;
  if (cp < 0x80) {
    buf[0] = static_cast<char>(cp);
    n = 1;
  } else if (cp < 0x800) {
    buf[0] = static_cast<char>(0xC0 | (cp >> 6));
    buf[1] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    buf[0] = static_cast<char>(0xE0 | (cp >> 12));
    buf[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    buf[0] = static_cast<char>(0xF0 | (cp >> 18));
    buf[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = static_cast<char>(0x80 | (cp & 0x3F));
    n = 4;
  }
  out.append(buf, n);
}

} // namespace utf8

/// True when `s` is well-formed UTF-8 (no overlongs, no encoded surrogates,
/// nothing above U+10FFFF, no truncated sequence). NUL bytes are allowed here.
inline bool is_valid_utf8(std::string_view s) noexcept {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  const auto end = p + s.size();
  while (p < end) {
    if (*p < 0x80) {
      ++p;
      continue;
    }
    const size_t n = utf8::sequence_length(p, end);
    if (n == 0)
      return false;
    p += n;
  }
  return true;
}

} // namespace ces
