// Differential test of storage/validate's check_json against PostgreSQL 15
// itself: every input of a corpus (hand cases plus a few thousand generated
// with a fixed seed) goes through check_json and through `SELECT $1::jsonb`
// on a throwaway cluster (UTF8 database, client_encoding UTF8, so the server
// gets the bytes unchanged); both must agree on accept/reject.
//
// What counts as PostgreSQL's verdict: the statement succeeds (accept) or the
// server answers with an error (reject; invalid UTF-8 is refused while the
// server reads the parameter, before jsonb sees it: the service validates
// raw bytes, so that is a reject too). libpq cannot send a NUL byte in a text
// parameter: inputs holding one go as bytea through
// convert_from($1, 'UTF8')::jsonb, where the server refuses 0x00 the same way.
//
// Depth: PostgreSQL's jsonb has no nesting limit of its own (only its stack,
// max_stack_depth), while check_json refuses nesting deeper than the
// max_depth setting (512 by default). Generated inputs nest at most 512 deep,
// where both rules are defined; the hand cases show PostgreSQL accepting 513
// (the validator is stricter there, by setting) and both refusing 100,000.
#include "storage/validate.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

using namespace std::string_literals;
using ces::check_json;

namespace {

constexpr size_t max_depth = 512; // validation_limits' default

struct pg_verdict {
  bool ok = false;
  std::string error; // when !ok
};

class pg_checker {
public:
  explicit pg_checker(const std::string& url)
    : conn_{url + "?client_encoding=UTF8"} {
    pqxx::nontransaction tx{conn_};
    REQUIRE(tx.exec("SHOW server_encoding")[0][0].as<std::string>() == "UTF8");
    REQUIRE(tx.exec("SHOW client_encoding")[0][0].as<std::string>() == "UTF8");
  }

  pg_verdict check(const std::string& text) {
    pqxx::nontransaction tx{conn_};
    try {
      if (text.find('\0') == std::string::npos)
        tx.exec_params("SELECT $1::jsonb", text);
      else
        tx.exec_params("SELECT convert_from($1, 'UTF8')::jsonb",
                       pqxx::binarystring{text.data(), text.size()});
      return {true, {}};
    } catch (const pqxx::sql_error& e) { // not broken_connection: that throws
      return {false, e.sqlstate() + " " + first_line(e.what())};
    }
  }

private:
  static std::string first_line(const std::string& s) {
    return s.substr(0, s.find('\n'));
  }

  pqxx::connection conn_;
  pqxx::quiet_errorhandler quiet_{conn_};
};

// `s` printable: ASCII as is, other bytes as \xHH, long inputs shortened.
std::string escaped(const std::string& s) {
  std::string out;
  const size_t shown = 160;
  for (size_t i = 0; i < s.size() && i < shown; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  if (s.size() > shown)
    out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// -- the corpus ------------------------------------------------------------------

std::vector<std::string> hand_cases() {
  std::vector<std::string> v = {
    // numbers: grammar
    "0", "-0", "-0.0", "1", "-1", "01", "-01", "00", "1.", ".5", "+1", "-",
    "1e", "1e+", "1E-", "1.e5", "0x10", "1.5.2", "NaN", "Infinity",
    "-Infinity", "1 2", "1e5x", "- 1", "1_000", "0.0e0", "-0e-0", "1E+2",
    // numbers: numeric's limits
    "1e131071", "1e131072", "9.9e131071", "10e131071", "0.1e131072",
    "0.1e131073", "1e-16383", "1e-16384", "1.0e-16383", "0.1e-16382",
    "0e-16383", "0e-16384", "-0e-20000", "0e1073741822", "0e1073741823",
    "0e-1073741822", "0e-1073741823", "1e200000", "1e-200000",
    "1e99999999999999999999", "0e99999999999999999999", "1e1000", "1e1001",
    "1" + std::string(131071, '0'), "1" + std::string(131072, '0'),
    "0." + std::string(16382, '0') + "1", "0." + std::string(16383, '0') + "1",
    "0." + std::string(16383, '0'), "0." + std::string(16384, '0'),
    "1" + std::string(131072, '0') + "e-1", "1" + std::string(131072, '0')
                                                + "e-2",
    // literals
    "true", "false", "null", "True", "nul", "nulll", "tru", "[true false]",
    // whitespace
    " 1 ", "\t\r\n1\n", "\f1", "\v1", "1\f", "\xC2\xA0" "1", "[1,\f2]",
    "", " ", "\n",
    // structure
    "{}", "[]", "{\"a\":1,}", "[1,]", "[,1]", "{\"a\" 1}", "{\"a\":}",
    "{a:1}", "{'a':1}", "[1 2]", "{\"a\":1 \"b\":2}", "[", "]", "{", "}",
    "[1]]", "{\"a\":1}}", "{\"a\":1,\"a\":2}", "{\"tenant_id\":\"t\"}x",
    "1 //c", "/*c*/1",
    // strings and escapes
    "\"\"", "\"a\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\x\"", "\"\\U0041\"",
    "\"\\u00e9\"", "\"\\u00E9\"", "\"\\u0000\"", "{\"\\u0000\":1}",
    "\"\\u0001\"", "\"\\u001f\"", "\"\\u007f\"", "\"\\uFFFF\"", "\"\\uFFFE\"",
    "\"\\uD83D\\uDE00\"", "\"\\ud83d\\ude00\"", "\"\\uD83D\"", "\"\\uDE00\"",
    "\"\\uDE00\\uD83D\"", "\"\\uD83D\\uD83D\"", "\"\\uD83Dx\"",
    "\"\\uD83D\\u0041\"", "\"\\uDBFF\\uDFFF\"", "\"\\uD800\\uDC00\"",
    "\"\\u12\"", "\"\\u12G4\"", "\"a\x01\"", "\"a\x1f\"", "\"a\x7f\"",
    "\"a\tb\"", "\"a\nb\"", "\"abc", "\"\\", "\"\\u",
    // UTF-8
    "\"\xC3\xA9\"", "\"\xE2\x9C\x93\"", "\"\xF0\x9F\x98\x80\"",
    "\"\xEF\xBF\xBF\"", "\"\xEF\xBF\xBE\"", "\"\xEF\xB7\x90\"",
    "\"\xF4\x8F\xBF\xBF\"", "\"\xC0\xAF\"", "\"\xC1\xBF\"",
    "\"\xE0\x80\xAF\"", "\"\xE0\x9F\xBF\"", "\"\xF0\x80\x80\xAF\"",
    "\"\xF0\x8F\xBF\xBF\"", "\"\xED\xA0\x80\"", "\"\xED\xBF\xBF\"",
    "\"\xED\xA0\xBD\xED\xB8\x80\"", "\"\xF4\x90\x80\x80\"",
    "\"\xF5\x80\x80\x80\"", "\"\xF8\x88\x80\x80\x80\"", "\"\xFE\"",
    "\"\xFF\"", "\"\xC3\"", "\"\xE2\x9C\"", "\"\xF0\x9F\x98\"", "\"\x80\"",
    "\"\xBF\"", "\"\xC3\xA9\xA9\"", "\xEF\xBB\xBF{}",
    std::string("\"a\0b\"", 5), std::string("{}\0", 3),
    // depth (512 is the validator's setting; see the header comment)
    std::string(512, '[') + std::string(512, ']'),
    std::string(511, '[') + "{}" + std::string(511, ']'),
    std::string(100000, '[') + std::string(100000, ']'),
    std::string(512, '[') + std::string(511, ']'),
  };
  return v;
}

class generator {
public:
  explicit generator(uint32_t seed) : rng_{seed} {
  }

  std::string number() {
    std::string s;
    if (chance(30))
      s += '-';
    else if (chance(2))
      s += '+';
    // integer part
    switch (pick(10)) {
      case 0:
        s += "0";
        break;
      case 1:
        s += "00";
        break;
      case 2:
        break; // none: ".5"
      case 3:
        s += digits_nonzero(131072 - 2 + pick(5)); // around the limit
        break;
      case 4:
        s += digits_nonzero(1 + pick(2000));
        break;
      default:
        s += digits_nonzero(1 + pick(20));
    }
    // fraction
    switch (pick(8)) {
      case 0:
        s += ".";
        break;
      case 1:
        s += "." + std::string(pick(16390), '0') + digits(pick(3));
        break;
      case 2:
        s += "." + digits(16383 - 2 + pick(5));
        break;
      case 3:
      case 4:
        s += "." + digits(1 + pick(20));
        break;
      default:
        break;
    }
    // exponent
    if (chance(60)) {
      s += chance(50) ? 'e' : 'E';
      const int sign = pick(3);
      if (sign == 1)
        s += '+';
      else if (sign == 2)
        s += '-';
      static const char* exps[] = {
        "0",          "1",          "00",         "007",
        "16382",      "16383",      "16384",      "131070",
        "131071",     "131072",     "131073",     "200000",
        "1073741822", "1073741823", "1073741824", "2147483647",
        "2147483648", "99999999999999999999",     ""};
      if (chance(30))
        s += digits(1 + pick(6));
      else
        s += exps[pick(sizeof exps / sizeof *exps)];
    }
    if (s.empty())
      s = "-";
    return s;
  }

  std::string string_literal() {
    std::string s = "\"";
    const int n = pick(6);
    for (int i = 0; i < n; ++i)
      s += string_piece();
    if (chance(97))
      s += '"';
    return s;
  }

  std::string value(int depth, int limit) {
    const int k = pick(depth < limit ? 9 : 6);
    switch (k) {
      case 0:
      case 1:
        return number();
      case 2:
      case 3:
        return string_literal();
      case 4: {
        static const char* lits[] = {"true", "false", "null", "tru", "nul",
                                     "falsey", "True"};
        return lits[pick(chance(90) ? 3 : 7)];
      }
      case 5:
        return chance(50) ? "[]" : "{}";
      case 6:
      case 7: {
        std::string s = "[" + ws();
        const int n = pick(4);
        for (int i = 0; i < n; ++i)
          s += (i ? "," + ws() : "") + value(depth + 1, limit) + ws();
        return s + "]";
      }
      default: {
        std::string s = "{" + ws();
        const int n = pick(4);
        for (int i = 0; i < n; ++i)
          s += (i ? "," + ws() : "") + key() + ws() + ":" + ws()
               + value(depth + 1, limit) + ws();
        return s + "}";
      }
    }
  }

  // A document nested exactly `depth` deep, with noise inside.
  std::string deep(size_t depth) {
    std::string open, close;
    for (size_t i = 0; i < depth; ++i) {
      if (chance(50)) {
        open += "[";
        close = "]" + close;
      } else {
        open += "{\"k\":";
        close = "}" + close;
      }
    }
    return open + (chance(50) ? number() : "1") + close;
  }

  // A mutation of `s`: a byte changed, dropped, inserted or the tail cut.
  std::string mutate(std::string s) {
    if (s.empty())
      return s;
    const size_t at = pick(static_cast<int>(s.size()));
    static const char bytes[] = "{}[],:\"\\ \t\n0-1.eE+uDtfn\x01\x7F\x80\xC3"
                                "\xED\xF4\xFF";
    const char b = bytes[pick(sizeof bytes - 1)];
    switch (pick(4)) {
      case 0:
        s[at] = b;
        break;
      case 1:
        s.erase(at, 1);
        break;
      case 2:
        s.insert(at, 1, b);
        break;
      default:
        s.resize(at);
    }
    return s;
  }

  std::string document() {
    switch (pick(6)) {
      case 0:
        return number();
      case 1:
        return ws() + string_literal() + ws();
      case 2:
        return mutate(value(0, 6));
      case 3:
        return deep(400 + pick(113)); // up to max_depth, not beyond
      default: {
        std::string s = ws() + value(0, 6) + ws();
        if (chance(10))
          s += chance(50) ? "x" : ",1";
        return s;
      }
    }
  }

  int pick(int n) {
    return std::uniform_int_distribution<int>{0, n - 1}(rng_);
  }

private:
  bool chance(int percent) {
    return pick(100) < percent;
  }

  std::string digits(size_t n) {
    std::string s(n, '0');
    for (auto& c : s)
      c = static_cast<char>('0' + pick(10));
    return s;
  }

  std::string digits_nonzero(size_t n) {
    std::string s = digits(n);
    s[0] = static_cast<char>('1' + pick(9));
    return s;
  }

  std::string ws() {
    static const char* spaces[] = {"", "", "", " ", "\n", "\t", "\r\n  ",
                                   "\f", "\v", "\xC2\xA0"};
    return spaces[chance(95) ? pick(7) : pick(10)];
  }

  std::string key() {
    if (chance(20))
      return "\"tenant_id\"";
    return string_literal();
  }

  std::string hex4() {
    static const char* hx = "0123456789abcdefABCDEF";
    std::string s;
    for (int i = 0; i < 4; ++i)
      s += hx[pick(22)];
    return s;
  }

  std::string string_piece() {
    static const char* escapes[] = {
      "\\\"",     "\\\\",     "\\/",      "\\b",      "\\f",
      "\\n",      "\\r",      "\\t",      "\\x",      "\\a",
      "\\u0000",  "\\u0041",  "\\u00e9",  "\\uFFFF",  "\\uD800",
      "\\uDBFF",  "\\uDC00",  "\\uDFFF",  "\\uD83D\\uDE00",
      "\\uDBFF\\uDFFF",       "\\uDC00\\uD800",       "\\uD800\\uD800",
      "\\u12",    "\\u",      "\\"};
    static const char* raw[] = {
      "\xC3\xA9",         "\xE2\x9C\x93",     "\xF0\x9F\x98\x80",
      "\xEF\xBF\xBF",     "\xEF\xBF\xBE",     "\xF4\x8F\xBF\xBF",
      "\xC0\x80",         "\xC1\xBF",         "\xE0\x80\x80",
      "\xE0\x9F\xBF",     "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF",
      "\xED\xA0\x80",     "\xED\xBF\xBF",     "\xF4\x90\x80\x80",
      "\xF5\x80\x80\x80", "\xFF",             "\xFE",
      "\x80",             "\xC3",             "\xE2\x9C",
      "\xF0\x9F\x98",     "\x01",             "\x1F",
      "\x7F",             "\t",               "\n"};
    switch (pick(5)) {
      case 0:
        return escapes[pick(sizeof escapes / sizeof *escapes)];
      case 1:
        return "\\u" + hex4();
      case 2:
        return raw[pick(sizeof raw / sizeof *raw)];
      case 3:
        if (chance(5))
          return std::string(1, '\0');
        return "abc";
      default:
        return "tenant";
    }
  }

  std::mt19937 rng_;
};

} // namespace

TEST_CASE("check_json agrees with PostgreSQL's jsonb input",
          "[validate_pg]") {
  auto url = ces::test::shared_pg().create_database();
  pg_checker pg{url};

  std::vector<std::string> corpus = hand_cases();
  const size_t hand = corpus.size();
  generator gen{20241129};
  for (int i = 0; i < 4000; ++i)
    corpus.push_back(gen.document());

  size_t accepted = 0, disagreements = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string& doc = corpus[i];
    const auto ours = check_json(doc, max_depth);
    // Beyond max_depth only the validator's setting refuses (see above);
    // only the hand cases go there, and are checked below.
    if (!ours.ok && ours.error.rfind("nesting deeper than", 0) == 0) {
      CHECK(i < hand);
      continue;
    }
    const auto theirs = pg.check(doc);
    accepted += theirs.ok;
    if (ours.ok != theirs.ok) {
      ++disagreements;
      FAIL_CHECK("input #" << i << (i < hand ? " (hand)" : " (generated)")
                 << ": " << escaped(doc) << "\n  check_json: "
                 << (ours.ok ? "accept" : "reject: " + ours.error)
                 << "\n  PostgreSQL: "
                 << (theirs.ok ? "accept" : "reject: " + theirs.error));
    }
  }
  INFO(corpus.size() << " inputs, " << accepted << " accepted by PostgreSQL");
  CHECK(disagreements == 0);
  // The corpus is not trivially one-sided.
  CHECK(accepted > corpus.size() / 10);
  CHECK(accepted < corpus.size() * 9 / 10);

  // Depth: 512 passes both; 513 only PostgreSQL (the validator's setting);
  // 100,000 neither (PostgreSQL: stack depth limit exceeded).
  const auto nest = [](size_t n) {
    return std::string(n, '[') + std::string(n, ']');
  };
  CHECK(check_json(nest(512), max_depth).ok);
  CHECK(pg.check(nest(512)).ok);
  CHECK_FALSE(check_json(nest(513), max_depth).ok);
  CHECK(pg.check(nest(513)).ok);
  CHECK_FALSE(check_json(nest(100000), max_depth).ok);
  CHECK_FALSE(pg.check(nest(100000)).ok);
}
