// Payload validation. check_json is a single-pass, iterative JSON validator
// (RFC 8259 plus what PostgreSQL 15's jsonb input refuses): it keeps one bit
// per open container instead of recursing, allocates nothing per token and
// only decodes the strings it needs (top-level keys with escapes, the
// "tenant_id" value).
#include "storage/validate.hpp"

#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace ces {

const char* to_string(json_type t) noexcept {
  switch (t) {
    case json_type::none:
      return "none";
    case json_type::object:
      return "object";
    case json_type::array:
      return "array";
    case json_type::string:
      return "string";
    case json_type::number:
      return "number";
    case json_type::boolean:
      return "boolean";
    case json_type::null:
      return "null";
  }
  return "unknown";
}

namespace {

using uchar = unsigned char;

using utf8::sequence_length;

// Bytes a string scan must stop at: '"', '\\', controls, non-ASCII.
struct string_table {
  bool stop[256];
  constexpr string_table() : stop() {
    for (int i = 0; i < 256; ++i)
      stop[i] = i < 0x20 || i == '"' || i == '\\' || i >= 0x80;
  }
};
constexpr string_table str_stop{};

inline bool is_ws(uchar c) noexcept {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

inline bool is_digit(uchar c) noexcept {
  return c >= '0' && c <= '9';
}

inline int hex_value(uchar c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

// Decodes the body of a string already validated by the parser (between the
// quotes) into `out`.
void decode_validated(const uchar* p, const uchar* end, std::string& out) {
  out.clear();
  while (p < end) {
    const uchar* run = p;
    while (p < end && *p != '\\')
      ++p;
    out.append(reinterpret_cast<const char*>(run),
               static_cast<size_t>(p - run));
    if (p == end)
      break;
    const uchar e = p[1];
    p += 2;
    switch (e) {
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        uint32_t cp = 0;
        for (int i = 0; i < 4; ++i)
          cp = (cp << 4) | static_cast<uint32_t>(hex_value(p[i]));
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { // validated: a low escape follows
          uint32_t lo = 0;
          for (int i = 2; i < 6; ++i)
            lo = (lo << 4) | static_cast<uint32_t>(hex_value(p[i]));
          p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        utf8::append(out, cp);
        break;
      }
      default: // '"', '\\', '/'
        out.push_back(static_cast<char>(e));
    }
  }
}

// PostgreSQL 15's numeric limits (src/backend/utils/adt/numeric.c): the
// weight of the first nonzero base-10000 digit is an int16 (at most 32767, so
// at most 131072 decimal digits before the point), the display scale (digits
// after the point, minus the exponent, at least 0) at most 0x3FFF, and an
// exponent at least INT_MAX / 2 in magnitude is refused outright.
namespace pg_numeric {
constexpr size_t max_int_digits = 131072;
constexpr int64_t max_dscale = 16383;
constexpr int64_t max_abs_exponent = 1073741823; // INT_MAX / 2, refused
} // namespace pg_numeric

constexpr char tenant_key[] = "tenant_id";
constexpr size_t tenant_key_len = sizeof(tenant_key) - 1;

class parser {
public:
  parser(std::string_view text, size_t max_depth, json_check& out)
    : begin_(reinterpret_cast<const uchar*>(text.data())),
      p_(begin_),
      end_(begin_ + text.size()),
      max_depth_(max_depth),
      out_(out) {
  }

  bool run();

private:
  // -- errors (cold) --------------------------------------------------------

  size_t pos(const uchar* at) const noexcept {
    return static_cast<size_t>(at - begin_);
  }

  bool fail(std::string msg) {
    out_.error = std::move(msg);
    return false;
  }

  // "invalid JSON at byte N: what", or "invalid UTF-8 at byte N" when the
  // offending byte starts an ill-formed UTF-8 sequence.
  bool syntax(const uchar* at, const char* what) {
    if (at < end_ && *at >= 0x80 && sequence_length(at, end_) == 0)
      return utf8_error(at);
    return fail("invalid JSON at byte " + std::to_string(pos(at)) + ": " + what);
  }

  bool utf8_error(const uchar* at) {
    return fail("invalid UTF-8 at byte " + std::to_string(pos(at)));
  }

  bool unpaired(const uchar* esc, uint32_t cp) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04X", static_cast<unsigned>(cp));
    return fail(std::string("unpaired surrogate \\u") + hex + " at byte "
                + std::to_string(pos(esc)));
  }

  // -- container stack: one bit per level, 1 = object ------------------------

  uint64_t& stack_word(size_t level) {
    const size_t w = level >> 6;
    if (w < inline_words)
      return inline_bits_[w];
    if (w - inline_words >= heap_bits_.size()) // only past 512 levels
      heap_bits_.resize(w - inline_words + 1, 0);
    return heap_bits_[w - inline_words];
  }

  bool top_is_object() {
    const size_t i = depth_ - 1;
    return (stack_word(i) >> (i & 63)) & 1u;
  }

  bool push(bool is_object) {
    if (depth_ >= max_depth_)
      return fail("nesting deeper than " + std::to_string(max_depth_)
                  + " at byte " + std::to_string(pos(p_)));
    uint64_t& w = stack_word(depth_);
    const uint64_t m = uint64_t{1} << (depth_ & 63);
    w = is_object ? (w | m) : (w & ~m);
    ++depth_;
    return true;
  }

  // Records the type of a top-level "tenant_id" value (the last one wins).
  void note_tenant(json_type type) {
    out_.has_tenant = true;
    out_.tenant_is_string = type == json_type::string;
    out_.tenant_type = type;
    if (type != json_type::string)
      out_.tenant_id.clear();
  }

  // -- lexing ----------------------------------------------------------------

  void skip_ws() noexcept {
    while (p_ < end_ && is_ws(*p_))
      ++p_;
  }

  // Scans a string whose opening quote is at p_; leaves p_ after the closing
  // quote. `body`/`body_end` delimit the raw contents, `escaped` tells whether
  // they hold any escape.
  bool scan_string(const uchar*& body, const uchar*& body_end, bool& escaped);

  bool scan_escape();
  bool scan_number();
  bool numeric_range(const uchar* start, size_t int_digits,
                     const uchar* frac_begin, size_t frac_digits, int64_t exp);
  bool scan_literal(const char* word, size_t len);

  // Parses the key at p_ (must be '"') and the following ':'.
  bool key();

  static constexpr size_t inline_words = 8;
  static constexpr size_t inline_levels = inline_words * 64;

  const uchar* begin_;
  const uchar* p_;
  const uchar* end_;
  size_t max_depth_;
  json_check& out_;
  size_t depth_ = 0;
  uint64_t inline_bits_[inline_words] = {};
  std::vector<uint64_t> heap_bits_;
  bool tenant_next_ = false; // the next value is a top-level "tenant_id"
  std::string key_scratch_;
};

bool parser::scan_escape() {
  // p_ at the backslash.
  const uchar* esc = p_;
  if (end_ - p_ < 2)
    return syntax(end_, "unterminated string");
  const uchar e = p_[1];
  switch (e) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      p_ += 2;
      return true;
    case 'u':
      break;
    default:
      return syntax(esc, "invalid escape");
  }
  auto hex4 = [this](const uchar* at, uint32_t& cp) {
    if (end_ - at < 4)
      return false;
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const int v = hex_value(at[i]);
      if (v < 0)
        return false;
      cp = (cp << 4) | static_cast<uint32_t>(v);
    }
    return true;
  };
  uint32_t cp;
  if (!hex4(p_ + 2, cp))
    return syntax(esc, "invalid \\u escape");
  if (cp == 0)
    return fail("\\u0000 is not allowed in jsonb (byte " + std::to_string(pos(esc))
                + ")");
  if (cp >= 0xDC00 && cp <= 0xDFFF)
    return unpaired(esc, cp);
  p_ += 6;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    uint32_t lo;
    if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u' || !hex4(p_ + 2, lo)
        || lo < 0xDC00 || lo > 0xDFFF)
      return unpaired(esc, cp);
    p_ += 6;
  }
  return true;
}

bool parser::scan_string(const uchar*& body, const uchar*& body_end,
                         bool& escaped) {
  ++p_; // opening quote
  body = p_;
  escaped = false;
  for (;;) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    // Eight plain ASCII bytes at a time: stop on '"', '\\', < 0x20, >= 0x80.
    constexpr uint64_t ones = 0x0101010101010101ull;
    constexpr uint64_t highs = 0x8080808080808080ull;
    while (end_ - p_ >= 8) {
      uint64_t x;
      std::memcpy(&x, p_, 8);
      const uint64_t q = x ^ (ones * '"');
      const uint64_t b = x ^ (ones * '\\');
      const uint64_t stop = ((q - ones) & ~q) | ((b - ones) & ~b)
                            | ((x - ones * 0x20) & ~x) | x;
      const uint64_t m = stop & highs;
      if (m != 0) {
        p_ += __builtin_ctzll(m) >> 3; // lowest flag is exact
        break;
      }
      p_ += 8;
    }
#endif
    while (p_ < end_ && !str_stop.stop[*p_])
      ++p_;
    if (p_ == end_)
      return syntax(end_, "unterminated string");
    const uchar c = *p_;
    if (c == '"') {
      body_end = p_;
      ++p_;
      return true;
    }
    if (c == '\\') {
      escaped = true;
      if (!scan_escape())
        return false;
    } else if (c < 0x20) {
      return syntax(p_, "control character in string must be escaped");
    } else {
      const size_t n = sequence_length(p_, end_);
      if (n == 0)
        return utf8_error(p_);
      p_ += n;
    }
  }
}

bool parser::scan_number() {
  const uchar* start = p_;
  if (*p_ == '-') {
    ++p_;
    if (p_ == end_ || !is_digit(*p_))
      return syntax(p_, "expected a digit after '-'");
  }
  const uchar* int_begin = p_;
  if (*p_ == '0') {
    ++p_;
    if (p_ < end_ && is_digit(*p_))
      return syntax(p_, "leading zero in number");
  } else {
    while (p_ < end_ && is_digit(*p_))
      ++p_;
  }
  const size_t int_digits = static_cast<size_t>(p_ - int_begin);
  size_t frac_digits = 0;
  const uchar* frac_begin = p_;
  if (p_ < end_ && *p_ == '.') {
    ++p_;
    if (p_ == end_ || !is_digit(*p_))
      return syntax(p_, "expected a digit after '.'");
    frac_begin = p_;
    while (p_ < end_ && is_digit(*p_))
      ++p_;
    frac_digits = static_cast<size_t>(p_ - frac_begin);
  }
  if (p_ == end_ || (*p_ != 'e' && *p_ != 'E')) {
    // No exponent (the common case): only the digit counts can overflow.
    if (int_digits > pg_numeric::max_int_digits
        || frac_digits > pg_numeric::max_dscale)
      return numeric_range(start, int_digits, frac_begin, frac_digits, 0);
    return true;
  }
  ++p_;
  bool negative = false;
  if (p_ < end_ && (*p_ == '+' || *p_ == '-'))
    negative = *p_++ == '-';
  if (p_ == end_ || !is_digit(*p_))
    return syntax(p_, "expected a digit in exponent");
  int64_t exp = 0; // saturates just past PostgreSQL's bound
  while (p_ < end_ && is_digit(*p_)) {
    if (exp <= pg_numeric::max_abs_exponent)
      exp = exp * 10 + (*p_ - '0');
    ++p_;
  }
  if (negative)
    exp = -exp;
  if (exp >= pg_numeric::max_abs_exponent
      || exp <= -pg_numeric::max_abs_exponent
      || int_digits > pg_numeric::max_int_digits
      || static_cast<int64_t>(frac_digits) - exp > pg_numeric::max_dscale
      || (exp > 0 && int_digits + static_cast<size_t>(exp)
                       > pg_numeric::max_int_digits))
    return numeric_range(start, int_digits, frac_begin, frac_digits, exp);
  return true;
}

// Applies PostgreSQL 15's numeric input limits (numeric.c, set_var_from_str
// and make_result) to a number that may exceed them; the caller only comes
// here when a cheap bound says it might. Always fails unless the number is
// within the limits after all (a zero or leading zeros with a big exponent).
bool parser::numeric_range(const uchar* start, size_t int_digits,
                           const uchar* frac_begin, size_t frac_digits,
                           int64_t exp) {
  const char* why = nullptr;
  std::string detail;
  const int64_t dscale = std::max<int64_t>(
    0, static_cast<int64_t>(frac_digits) - exp);
  // Decimal exponent of the first nonzero digit; none when the value is 0.
  const uchar* int_begin = *start == '-' ? start + 1 : start;
  bool zero = true;
  int64_t lead = 0;
  if (*int_begin != '0') {
    zero = false;
    lead = static_cast<int64_t>(int_digits) - 1 + exp;
  } else {
    for (size_t i = 0; i < frac_digits; ++i)
      if (frac_begin[i] != '0') {
        zero = false;
        lead = -static_cast<int64_t>(i) - 1 + exp;
        break;
      }
  }
  if (exp >= pg_numeric::max_abs_exponent
      || exp <= -pg_numeric::max_abs_exponent) {
    why = "its exponent is out of range";
    detail = "its magnitude must be below "
             + std::to_string(pg_numeric::max_abs_exponent);
  } else if (!zero && lead >= static_cast<int64_t>(pg_numeric::max_int_digits)) {
    why = "it is too large";
    detail = std::to_string(lead + 1) + " digits before the decimal point, "
             "the limit is " + std::to_string(pg_numeric::max_int_digits);
  } else if (dscale > pg_numeric::max_dscale) {
    why = "it has too many digits after the decimal point";
    detail = std::to_string(dscale) + ", the limit is "
             + std::to_string(pg_numeric::max_dscale);
  } else {
    return true;
  }
  const size_t len = static_cast<size_t>(p_ - start);
  constexpr size_t shown = 40;
  std::string text(reinterpret_cast<const char*>(start), std::min(len, shown));
  if (len > shown)
    text += "...(" + std::to_string(len) + " bytes)";
  return fail("number at byte " + std::to_string(pos(start)) + " (" + text
              + ") is outside PostgreSQL's numeric range: " + why + " ("
              + detail + ")");
}

bool parser::scan_literal(const char* word, size_t len) {
  if (static_cast<size_t>(end_ - p_) < len || std::memcmp(p_, word, len) != 0)
    return syntax(p_, "invalid literal");
  p_ += len;
  return true;
}

bool parser::key() {
  if (p_ == end_ || *p_ != '"')
    return syntax(p_, "expected string key");
  const uchar *body, *body_end;
  bool escaped;
  if (!scan_string(body, body_end, escaped))
    return false;
  if (depth_ == 1) {
    const size_t n = static_cast<size_t>(body_end - body);
    if (!escaped) {
      tenant_next_ = n == tenant_key_len
                     && std::memcmp(body, tenant_key, tenant_key_len) == 0;
    } else if (n <= tenant_key_len * 6) { // each char at most "\uXXXX"
      decode_validated(body, body_end, key_scratch_);
      tenant_next_ = key_scratch_ == tenant_key;
    } else {
      tenant_next_ = false;
    }
  }
  skip_ws();
  if (p_ == end_ || *p_ != ':')
    return syntax(p_, "expected ':'");
  ++p_;
  return true;
}

bool parser::run() {
  if (begin_ == end_)
    return fail("invalid JSON at byte 0: empty text");
  skip_ws();
  if (p_ < end_)
    out_.is_object = *p_ == '{';
value:
  skip_ws();
  if (p_ == end_)
    return syntax(p_, "expected a value");
  {
    const bool tenant = tenant_next_;
    tenant_next_ = false;
    json_type type;
    switch (*p_) {
      case '{':
        type = json_type::object;
        if (!push(true))
          return false;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == '}') {
          ++p_;
          --depth_;
          break;
        }
        if (tenant)
          note_tenant(type);
        if (!key())
          return false;
        goto value;
      case '[':
        type = json_type::array;
        if (!push(false))
          return false;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == ']') {
          ++p_;
          --depth_;
          break;
        }
        if (tenant)
          note_tenant(type);
        goto value;
      case '"': {
        type = json_type::string;
        const uchar *body, *body_end;
        bool escaped;
        if (!scan_string(body, body_end, escaped))
          return false;
        if (tenant) {
          if (escaped)
            decode_validated(body, body_end, out_.tenant_id);
          else
            out_.tenant_id.assign(reinterpret_cast<const char*>(body),
                                  static_cast<size_t>(body_end - body));
        }
        break;
      }
      case 't':
        type = json_type::boolean;
        if (!scan_literal("true", 4))
          return false;
        break;
      case 'f':
        type = json_type::boolean;
        if (!scan_literal("false", 5))
          return false;
        break;
      case 'n':
        type = json_type::null;
        if (!scan_literal("null", 4))
          return false;
        break;
      default:
        if (*p_ == '-' || is_digit(*p_)) {
          type = json_type::number;
          if (!scan_number())
            return false;
          break;
        }
        return syntax(p_, "expected a value");
    }
    if (tenant)
      note_tenant(type);
  }
after_value:
  skip_ws();
  if (depth_ == 0) {
    if (p_ != end_)
      return syntax(p_, "unexpected data after the JSON value");
    return true;
  }
  if (p_ == end_)
    return syntax(p_, top_is_object() ? "expected ',' or '}'"
                                      : "expected ',' or ']'");
  if (top_is_object()) {
    if (*p_ == ',') {
      ++p_;
      skip_ws();
      if (!key())
        return false;
      goto value;
    }
    if (*p_ == '}') {
      ++p_;
      --depth_;
      goto after_value;
    }
    return syntax(p_, "expected ',' or '}'");
  }
  if (*p_ == ',') {
    ++p_;
    goto value;
  }
  if (*p_ == ']') {
    ++p_;
    --depth_;
    goto after_value;
  }
  return syntax(p_, "expected ',' or ']'");
}

// -- check_record helpers ------------------------------------------------------

const kafka_header* last_header(const kafka_record& rec, std::string_view key) {
  const kafka_header* found = nullptr;
  for (const auto& h : rec.headers)
    if (h.key == key)
      found = &h;
  return found;
}

// Positive decimal int64, digits only; 0 when anything else (x-replay-of,
// x-replay-job).
int64_t parse_replay_of(const kafka_header* h) {
  if (h == nullptr || !h->has_value || h->value.empty())
    return 0;
  int64_t v = 0;
  for (const char ch : h->value) {
    if (ch < '0' || ch > '9')
      return 0;
    const int d = ch - '0';
    if (v > (INT64_MAX - d) / 10)
      return 0; // overflow
    v = v * 10 + d;
  }
  return v;
}

// The header's value when it looks like a replay id (1..64 of
// [A-Za-z0-9._-]: make_replay_id() writes a UUID), else empty. Anything else
// could not name a recorded replay, and must not reach the replays lookup
// (invalid UTF-8 would fail the batch's query).
std::string parse_replay_id(const kafka_header* h) {
  if (h == nullptr || !h->has_value || h->value.empty()
      || h->value.size() > max_replay_id_bytes)
    return {};
  for (const char ch : h->value) {
    auto ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z')
              || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_'
              || ch == '.';
    if (!ok)
      return {};
  }
  return h->value;
}

// Empty when the header gives a usable tenant (stored in `tenant`), else why
// not.
std::string header_tenant(const kafka_record& rec, std::string& tenant) {
  const kafka_header* h = last_header(rec, tenant_key);
  if (h == nullptr)
    return "no tenant_id in payload or headers";
  if (!h->has_value)
    return "no tenant_id in payload and the tenant_id header is null";
  if (h->value.empty())
    return "no tenant_id in payload and the tenant_id header is empty";
  if (h->value.size() > max_tenant_id_bytes)
    return "no tenant_id in payload and the tenant_id header is "
           + std::to_string(h->value.size()) + " bytes, longer than "
           + std::to_string(max_tenant_id_bytes);
  if (h->value.find('\0') != std::string::npos)
    return "no tenant_id in payload and the tenant_id header contains a NUL "
           "byte";
  if (!is_valid_utf8(h->value))
    return "no tenant_id in payload and the tenant_id header is not valid "
           "UTF-8";
  tenant = h->value;
  return {};
}

} // namespace

json_check check_json(std::string_view text, size_t max_depth) {
  json_check out;
  parser ps{text, max_depth, out};
  out.ok = ps.run();
  if (!out.ok) {
    out.is_object = false;
    out.has_tenant = false;
    out.tenant_is_string = false;
    out.tenant_type = json_type::none;
    out.tenant_id.clear();
  }
  return out;
}

checked_record check_record(kafka_record rec, const validation_limits& limits) {
  checked_record res;
  res.rec = std::move(rec);
  const kafka_record& r = res.rec;
  res.replay_of = parse_replay_of(last_header(r, "x-replay-of"));
  if (res.replay_of != 0) {
    res.replay_id = parse_replay_id(last_header(r, "x-replay-id"));
    res.replay_job = parse_replay_of(last_header(r, "x-replay-job"));
  }
  auto reject = [&res](reject_reason why, std::string msg) {
    res.reason = why;
    res.error = std::move(msg);
    return std::move(res);
  };
  if (!r.has_value)
    return reject(reject_reason::empty_value, "null value (tombstone)");
  if (r.value.empty())
    return reject(reject_reason::empty_value, "empty value");
  if (r.value.size() > limits.max_payload_bytes)
    return reject(reject_reason::too_large,
                  "value is " + std::to_string(r.value.size())
                    + " bytes, more than the limit of "
                    + std::to_string(limits.max_payload_bytes));
  json_check jc = check_json(r.value, limits.max_depth);
  if (!jc.ok)
    return reject(reject_reason::invalid_json, std::move(jc.error));
  if (jc.has_tenant) {
    if (!jc.tenant_is_string)
      return reject(reject_reason::missing_tenant,
                    std::string("tenant_id is ")
                      + (jc.tenant_type == json_type::array
                           || jc.tenant_type == json_type::object
                           ? "an "
                           : "a ")
                      + to_string(jc.tenant_type) + ", expected a string");
    if (jc.tenant_id.empty())
      return reject(reject_reason::missing_tenant, "tenant_id is empty");
    if (jc.tenant_id.size() > max_tenant_id_bytes)
      return reject(reject_reason::missing_tenant,
                    "tenant_id is " + std::to_string(jc.tenant_id.size())
                      + " bytes, longer than "
                      + std::to_string(max_tenant_id_bytes));
    res.tenant_id = std::move(jc.tenant_id);
    return res;
  }
  std::string why = header_tenant(r, res.tenant_id);
  if (!why.empty())
    return reject(reject_reason::missing_tenant, std::move(why));
  return res;
}

} // namespace ces
