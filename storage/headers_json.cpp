#include "storage/headers_json.hpp"

#include <cctype>
#include <cstdint>
#include <stdexcept>

namespace ces::storage {

namespace {

constexpr char b64_chars[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/// Just enough of a JSON reader for the headers array.
class json_reader {
public:
  explicit json_reader(std::string_view text) : s_(text) {
  }

  [[noreturn]] void fail(const char* what) const {
    throw std::invalid_argument("headers JSON: " + std::string(what)
                                + " at byte " + std::to_string(pos_));
  }

  void ws() noexcept {
    while (pos_ < s_.size()
           && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n'
               || s_[pos_] == '\r'))
      ++pos_;
  }

  bool at_end() {
    ws();
    return pos_ == s_.size();
  }

  char peek() {
    ws();
    if (pos_ == s_.size())
      fail("unexpected end");
    return s_[pos_];
  }

  void expect(char c) {
    if (peek() != c)
      fail(("expected '" + std::string(1, c) + "'").c_str());
    ++pos_;
  }

  bool consume(char c) {
    if (peek() != c)
      return false;
    ++pos_;
    return true;
  }

  bool consume_literal(std::string_view lit) {
    ws();
    if (s_.substr(pos_, lit.size()) != lit)
      return false;
    pos_ += lit.size();
    return true;
  }

  uint32_t hex4() {
    if (s_.size() - pos_ < 4)
      fail("short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        fail("bad \\u escape");
    }
    return v;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size())
        fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"')
        return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size())
        fail("unterminated escape");
      switch (s_[pos_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          auto cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume_literal("\\u"))
              fail("unpaired surrogate");
            auto lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF)
              fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate");
          }
          utf8::append(out, cp);
          break;
        }
        default:
          fail("bad escape");
      }
    }
  }

  /// Skips any JSON value.
  void skip_value() {
    auto c = peek();
    if (c == '"') {
      string();
    } else if (c == '[' || c == '{') {
      bool obj = c == '{';
      ++pos_;
      if (consume(obj ? '}' : ']'))
        return;
      do {
        if (obj) {
          string();
          expect(':');
        }
        skip_value();
      } while (consume(','));
      expect(obj ? '}' : ']');
    } else {
      // number, true, false, null
      auto start = pos_;
      while (pos_ < s_.size()
             && (std::isalnum(static_cast<unsigned char>(s_[pos_]))
                 || s_[pos_] == '-' || s_[pos_] == '+' || s_[pos_] == '.'))
        ++pos_;
      if (pos_ == start)
        fail("unexpected character");
    }
  }

private:
  std::string_view s_;
  size_t pos_ = 0;
};

kafka_header read_header(json_reader& r) {
  kafka_header h;
  bool have_key = false;
  bool have_value = false;
  r.expect('{');
  if (!r.consume('}')) {
    do {
      auto name = r.string();
      r.expect(':');
      if (name == "key" || name == "key_b64") {
        auto text = r.string();
        if (name == "key_b64") {
          if (!decode_base64(text, h.key))
            r.fail("bad base64 in key_b64");
        } else {
          h.key = std::move(text);
        }
        have_key = true;
      } else if (name == "value") {
        if (r.consume_literal("null")) {
          h.value.clear();
          h.has_value = false;
        } else {
          h.value = r.string();
          h.has_value = true;
        }
        have_value = true;
      } else if (name == "value_b64") {
        if (!decode_base64(r.string(), h.value))
          r.fail("bad base64 in value_b64");
        h.has_value = true;
        have_value = true;
      } else {
        r.skip_value();
      }
    } while (r.consume(','));
    r.expect('}');
  }
  if (!have_key)
    r.fail("header without key");
  if (!have_value)
    h.has_value = false;
  return h;
}

} // namespace

bool is_pg_text(std::string_view s) noexcept {
  return s.find('\0') == std::string_view::npos && is_valid_utf8(s);
}

std::string to_pg_text(std::string_view s) {
  if (is_pg_text(s))
    return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    auto n = s[i] == '\0' ? 0 : utf8::sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD"; // U+FFFD
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

void append_base64(std::string& out, std::string_view bytes) {
  auto p = reinterpret_cast<const unsigned char*>(bytes.data());
  auto n = bytes.size();
  out.reserve(out.size() + (n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += b64_chars[(v >> 18) & 63];
    out += b64_chars[(v >> 12) & 63];
    out += b64_chars[(v >> 6) & 63];
    out += b64_chars[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = p[i] << 16;
    out += b64_chars[(v >> 18) & 63];
    out += b64_chars[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
    out += b64_chars[(v >> 18) & 63];
    out += b64_chars[(v >> 12) & 63];
    out += b64_chars[(v >> 6) & 63];
    out += '=';
  }
}

bool decode_base64(std::string_view text, std::string& out) {
  out.clear();
  while (!text.empty() && text.back() == '=')
    text.remove_suffix(1);
  if (text.size() % 4 == 1)
    return false;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = b64_value(c);
    if (v < 0)
      return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0; // start of the pending run of verbatim bytes
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_headers_json(std::string& out,
                         const std::vector<kafka_header>& headers,
                         json_layout layout) {
  const bool spaced = layout == json_layout::spaced;
  const char* comma = spaced ? ", " : ",";
  const char* colon = spaced ? "\": " : "\":";
  out += '[';
  bool first = true;
  for (auto& h : headers) {
    if (!first)
      out += comma;
    first = false;
    const bool key_text = is_pg_text(h.key);
    out += key_text ? "{\"key" : "{\"key_b64";
    out += colon;
    if (key_text) {
      append_json_string(out, h.key);
    } else {
      out += '"';
      append_base64(out, h.key);
      out += '"';
    }
    out += comma;
    const bool value_text = !h.has_value || is_pg_text(h.value);
    out += value_text ? "\"value" : "\"value_b64";
    out += colon;
    if (!h.has_value) {
      out += "null";
    } else if (value_text) {
      append_json_string(out, h.value);
    } else {
      out += '"';
      append_base64(out, h.value);
      out += '"';
    }
    out += '}';
  }
  out += ']';
}

std::string headers_to_json(const std::vector<kafka_header>& headers) {
  std::string out;
  append_headers_json(out, headers);
  return out;
}

std::vector<kafka_header> headers_from_json(std::string_view json) {
  json_reader r{json};
  std::vector<kafka_header> out;
  r.expect('[');
  if (!r.consume(']')) {
    do {
      out.push_back(read_header(r));
    } while (r.consume(','));
    r.expect(']');
  }
  if (!r.at_end())
    r.fail("trailing characters");
  return out;
}

} // namespace ces::storage
