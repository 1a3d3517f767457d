#include "storage/copy_text.hpp"

#include <cstdint>
#include <cstring>

#include "storage/headers_json.hpp"

#include <charconv>

namespace ces::storage::copy_text {

namespace {

/// 1 for the bytes COPY text format needs escaped.
struct escape_table {
  bool t[256] = {};
  constexpr escape_table() {
    t[static_cast<unsigned char>('\\')] = true;
    t[static_cast<unsigned char>('\n')] = true;
    t[static_cast<unsigned char>('\r')] = true;
    t[static_cast<unsigned char>('\t')] = true;
  }
};
constexpr escape_table needs_escape;

void put2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

} // namespace

namespace {

constexpr uint64_t ones = 0x0101010101010101ull;
constexpr uint64_t highs = 0x8080808080808080ull;

/// Whether any byte of `v` is 0 (exact: no false negatives; a false
/// positive only sends the word to the byte loop).
inline uint64_t zero_byte(uint64_t v) {
  return (v - ones) & ~v & highs;
}

/// Whether any of the 8 bytes at `p` is one COPY text must escape.
inline bool word_needs_escape(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return zero_byte(v ^ (ones * '\\')) | zero_byte(v ^ (ones * '\n'))
         | zero_byte(v ^ (ones * '\r')) | zero_byte(v ^ (ones * '\t'));
}

} // namespace

void append_escaped(std::string& out, std::string_view s) {
  auto p = s.data();
  auto n = s.size();
  size_t run = 0;
  size_t i = 0;
  while (i < n) {
    // Most JSON has no backslash and no raw tab/CR/LF: skip 8 bytes at once.
    if (i + 8 <= n && !word_needs_escape(p + i)) {
      i += 8;
      continue;
    }
    auto c = static_cast<unsigned char>(p[i]);
    if (!needs_escape.t[c]) {
      ++i;
      continue;
    }
    out.append(p + run, i - run);
    run = i + 1;
    switch (c) {
      case '\\': out.append("\\\\", 2); break;
      case '\n': out.append("\\n", 2); break;
      case '\r': out.append("\\r", 2); break;
      default: out.append("\\t", 2); break;
    }
    ++i;
  }
  out.append(p + run, n - run);
}

void append_bytea(std::string& out, std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  auto pos = out.size();
  out.resize(pos + 3 + 2 * bytes.size());
  auto dst = out.data() + pos;
  *dst++ = '\\';
  *dst++ = '\\';
  *dst++ = 'x';
  for (unsigned char c : bytes) {
    *dst++ = hex[c >> 4];
    *dst++ = hex[c & 15];
  }
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

void append_timestamp_ms(std::string& out, int64_t ms) {
  // 253402300800000 ms = 10000-01-01T00:00:00Z.
  if (ms < 0 || ms >= 253402300800000) {
    append_null(out);
    return;
  }
  auto secs = ms / 1000;
  auto millis = static_cast<unsigned>(ms % 1000);
  auto z = secs / 86400;
  auto sod = static_cast<unsigned>(secs % 86400);
  // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  z += 719468;
  auto era = z / 146097;
  auto doe = static_cast<unsigned>(z - era * 146097);
  auto yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  auto y = static_cast<unsigned>(yoe + era * 400);
  auto doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  auto mp = (5 * doy + 2) / 153;
  auto d = doy - (153 * mp + 2) / 5 + 1;
  auto m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2)
    ++y;
  // YYYY-MM-DD HH:MM:SS.mmm+00
  char buf[26];
  put2(buf, y / 100);
  put2(buf + 2, y % 100);
  buf[4] = '-';
  put2(buf + 5, m);
  buf[7] = '-';
  put2(buf + 8, d);
  buf[10] = ' ';
  put2(buf + 11, sod / 3600);
  buf[13] = ':';
  put2(buf + 14, sod / 60 % 60);
  buf[16] = ':';
  put2(buf + 17, sod % 60);
  buf[19] = '.';
  buf[20] = static_cast<char>('0' + millis / 100);
  put2(buf + 21, millis % 100);
  buf[23] = '+';
  buf[24] = '0';
  buf[25] = '0';
  out.append(buf, sizeof(buf));
}

namespace {

/// topic, partition, offset and key columns (each followed by a tab).
void append_coordinates(std::string& out, std::string_view topic,
                        const kafka_record& k) {
  append_escaped(out, topic);
  out += '\t';
  append_int(out, k.partition);
  out += '\t';
  append_int(out, k.offset);
  out += '\t';
  if (k.has_key)
    append_bytea(out, k.key);
  else
    append_null(out);
  out += '\t';
}

} // namespace

void append_journal_row(std::string& out, const checked_record& r,
                        int64_t replay_of, int64_t replay_job, bool keep_raw,
                        std::string& scratch) {
  auto& k = r.rec;
  append_escaped(out, r.tenant_id);
  out += '\t';
  append_coordinates(out, k.topic, k);
  if (k.headers.empty()) {
    out += "[]";
  } else {
    scratch.clear();
    append_headers_json(scratch, k.headers);
    append_escaped(out, scratch);
  }
  out += '\t';
  auto value_at = out.size();
  append_escaped(out, k.value);
  auto value_end = out.size();
  out += '\t';
  append_timestamp_ms(out, k.timestamp_ms);
  out += '\t';
  if (replay_of != 0)
    append_int(out, replay_of);
  else
    append_null(out);
  out += '\t';
  if (replay_job != 0)
    append_int(out, replay_job);
  else
    append_null(out);
  if (keep_raw) {
    // The same text as the payload field: the bytes as received (the
    // validator accepted them as UTF-8 JSON, so a text column takes them).
    auto n = value_end - value_at;
    out.reserve(out.size() + n + 2); // no reallocation while copying
    out += '\t';
    out.append(out.data() + value_at, n);
  }
  out += '\n';
}

void append_dlq_row(std::string& out, const checked_record& r,
                    reject_reason reason, std::string_view error,
                    std::string& scratch) {
  auto& k = r.rec;
  append_coordinates(out, to_pg_text(k.topic), k);
  scratch.clear();
  append_headers_json(scratch, k.headers);
  append_escaped(out, scratch);
  out += '\t';
  if (k.has_value)
    append_bytea(out, k.value);
  else
    append_null(out);
  out += '\t';
  append_timestamp_ms(out, k.timestamp_ms);
  out += '\t';
  if (r.tenant_id.empty())
    append_null(out);
  else
    append_escaped(out, to_pg_text(r.tenant_id));
  out += '\t';
  append_escaped(out, to_string(reason));
  out += '\t';
  append_escaped(out, to_pg_text(error));
  out += '\n';
}

} // namespace ces::storage::copy_text
