// Unit tests of storage/validate: check_json (RFC 8259 + PostgreSQL 15 jsonb
// rules) and check_record (reasons, tenant, replay_of).
#include "storage/validate.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace std::string_literals;
using ces::check_json;
using ces::check_record;
using ces::json_type;
using ces::kafka_header;
using ces::kafka_record;
using ces::reject_reason;
using ces::validation_limits;

namespace {

constexpr size_t depth = 512;

bool valid(const std::string& s, size_t max_depth = depth) {
  return check_json(s, max_depth).ok;
}

std::string error_of(const std::string& s, size_t max_depth = depth) {
  auto r = check_json(s, max_depth);
  CHECK_FALSE(r.ok);
  return r.error;
}

std::string nested_arrays(size_t n, const std::string& inner = "1") {
  return std::string(n, '[') + inner + std::string(n, ']');
}

kafka_record make_record(std::string value,
                         std::vector<kafka_header> headers = {}) {
  kafka_record r;
  r.topic = "apexflow.leads.created";
  r.partition = 3;
  r.offset = 77;
  r.has_value = true;
  r.value = std::move(value);
  r.headers = std::move(headers);
  return r;
}

kafka_header header(std::string key, std::string value) {
  return kafka_header{std::move(key), std::move(value), true};
}

kafka_header null_header(std::string key) {
  return kafka_header{std::move(key), {}, false};
}

// A valid JSON object of exactly `size` bytes with a top-level tenant.
std::string big_event(size_t size) {
  std::string head = R"({"tenant_id":"acme","blob":")";
  std::string tail = "\"}";
  REQUIRE(size > head.size() + tail.size());
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

} // namespace

// -- check_json: accepted documents --------------------------------------------

TEST_CASE("check_json accepts scalars at top level", "[validate][json]") {
  for (const char* s : {"1", "-0", "0", "0.5", "-0.0e0", "1e10", "1E+2",
                        "-1.5e-3", "10", "123456789012345678901234567890.5e10",
                        "\"s\"", "\"\"", "true", "false", "null", "  1  ",
                        "\t\r\n1\n", " \"x\" "}) {
    INFO(s);
    auto r = check_json(s, depth);
    CHECK(r.ok);
    CHECK(r.error.empty());
    CHECK_FALSE(r.is_object);
    CHECK_FALSE(r.has_tenant);
  }
  CHECK(valid(std::string(5000, '7'))); // any size within numeric's limits
  CHECK(valid("-" + std::string(5000, '9') + "." + std::string(5000, '1')
              + "e-" + std::string(4, '2')));
  // A 300-digit exponent is beyond numeric's (PostgreSQL refuses it).
  CHECK_FALSE(valid("-" + std::string(5000, '9') + "." + std::string(5000, '1')
                    + "e-" + std::string(300, '2')));
}

TEST_CASE("check_json accepts empty and nested containers", "[validate][json]") {
  CHECK(check_json("{}", depth).is_object);
  CHECK(check_json(" { } ", depth).is_object);
  CHECK(valid("[]"));
  CHECK(valid("[ ]"));
  CHECK_FALSE(check_json("[]", depth).is_object);
  CHECK(valid(R"({"a":[1,{"b":[[],{}]}],"c":null,"d":{"e":{"f":[true,false]}}})"));
  CHECK(valid("[1, 2.5, \"x\", null, true, false, {}, [], {\"k\": [ ] } ]"));
  CHECK(valid("{\n  \"a\" : 1 ,\r\n\t\"b\":[ 1 , 2 ]\n}\n"));
  CHECK(valid(R"({"a":1,"a":2})")); // duplicate keys are fine for jsonb
}

TEST_CASE("check_json accepts escapes and unicode", "[validate][json]") {
  CHECK(valid(R"("\"\\\/\b\f\n\r\t")"));
  CHECK(valid(R"("\u00e9\u65E5\u0001\u001F\uFFFF")"));
  CHECK(valid(R"("\uD83D\uDE00")"));           // valid surrogate pair
  CHECK(valid(R"("\ud83d\ude00")"));           // lowercase hex
  CHECK(valid(R"("\uDBFF\uDFFF")"));           // U+10FFFF
  CHECK(valid(R"({"\uD83D\uDE00":"\uD800\uDC00"})")); // pairs in keys too
  CHECK(valid("\"Zoë – 日本語 😀\""));
  CHECK(valid("{\"名前\":\"Zoë\"}"));
  CHECK(valid("\"\xf4\x8f\xbf\xbf\""));        // U+10FFFF raw
  CHECK(valid("\"\xed\x9f\xbf\xee\x80\x80\"")); // U+D7FF, U+E000 around surrogates
  CHECK(valid("\"\xef\xbf\xbf\""));            // noncharacter U+FFFF: jsonb accepts
  CHECK(valid("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xf0\x90\x80\x80\"")); // smallest of each length
}

TEST_CASE("check_json finds special bytes at every offset of a string",
          "[validate][json]") {
  // The string scanner skips 8 bytes at a time: put each special byte at every
  // position of strings of various lengths and check the exact error offset.
  for (size_t len = 1; len <= 40; ++len) {
    for (size_t at = 0; at < len; ++at) {
      std::string body(len, 'a');
      INFO("len " << len << " at " << at);
      std::string esc = body;
      esc.replace(at, 1, "\\n");
      CHECK(valid("\"" + esc + "\""));
      std::string utf = body;
      utf.replace(at, 1, "é");
      CHECK(valid("\"" + utf + "\""));
      std::string quote = body;
      quote[at] = '"';
      CHECK(error_of("\"" + quote + "\"")
            == "invalid JSON at byte " + std::to_string(at + 2)
                 + ": unexpected data after the JSON value");
      std::string ctl = body;
      ctl[at] = '\x1f';
      CHECK(error_of("\"" + ctl + "\"")
            == "invalid JSON at byte " + std::to_string(at + 1)
                 + ": control character in string must be escaped");
      std::string bad = body;
      bad[at] = '\xff';
      CHECK(error_of("\"" + bad + "\"")
            == "invalid UTF-8 at byte " + std::to_string(at + 1));
    }
  }
}

// -- check_json: refusals -------------------------------------------------------

TEST_CASE("check_json refuses empty and whitespace-only text", "[validate][json]") {
  CHECK(error_of("") == "invalid JSON at byte 0: empty text");
  CHECK(error_of("  ") == "invalid JSON at byte 2: expected a value");
  CHECK(error_of("\n") == "invalid JSON at byte 1: expected a value");
}

TEST_CASE("check_json refuses numbers outside the JSON grammar",
          "[validate][json]") {
  CHECK(error_of("01") == "invalid JSON at byte 1: leading zero in number");
  CHECK(error_of("-01") == "invalid JSON at byte 2: leading zero in number");
  CHECK(error_of("[00]") == "invalid JSON at byte 2: leading zero in number");
  CHECK(error_of("-") == "invalid JSON at byte 1: expected a digit after '-'");
  CHECK(error_of("-a") == "invalid JSON at byte 1: expected a digit after '-'");
  CHECK(error_of("- 1") == "invalid JSON at byte 1: expected a digit after '-'");
  CHECK(error_of("1.") == "invalid JSON at byte 2: expected a digit after '.'");
  CHECK(error_of("1.e5") == "invalid JSON at byte 2: expected a digit after '.'");
  CHECK(error_of(".5") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("+1") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("1e") == "invalid JSON at byte 2: expected a digit in exponent");
  CHECK(error_of("1e+") == "invalid JSON at byte 3: expected a digit in exponent");
  CHECK(error_of("1E-x") == "invalid JSON at byte 3: expected a digit in exponent");
  CHECK_FALSE(valid("0x10"));
  CHECK_FALSE(valid("1.5.2"));
  CHECK_FALSE(valid("NaN"));
  CHECK_FALSE(valid("Infinity"));
  CHECK_FALSE(valid("-Infinity"));
  CHECK_FALSE(valid("{\"a\":-}"));
}

// Limits measured on PostgreSQL 15 with `SELECT '<n>'::jsonb` (numeric.c:
// weight of the first nonzero base-10000 digit <= 32767, display scale <=
// 16383, |exponent| < INT_MAX / 2); the differential test
// (tests/integration/validate_pg_test.cpp) checks them against the server.
TEST_CASE("check_json accepts numbers up to PostgreSQL's numeric limits",
          "[validate][json][numeric]") {
  const std::string digits_131072 = "1" + std::string(131071, '0');
  const std::string frac_16383 = "0." + std::string(16382, '0') + "1";
  for (const std::string& s :
       {"1e131071"s, "9.9e131071"s, "-9.99999e131071"s, "1E+131071"s,
        "1e-16383"s, "0.1e-16382"s, "-1e-16383"s, "0e1073741822"s,
        "0e-16383"s, "-0.0e-16382"s, "0.00001e131075"s, digits_131072,
        "-" + digits_131072, digits_131072 + ".5e-1"s, frac_16383,
        digits_131072 + "0e-1", // 131073 digits, one moves after the point
        "123456789012345678901234567890.5e10"s, "1e1000"s, "1e1001"s}) {
    INFO(s.substr(0, 60));
    CHECK(valid(s));
    CHECK(valid("{\"tenant_id\":\"t\",\"n\":[" + s + "]}"));
  }
}

TEST_CASE("check_json refuses numbers PostgreSQL's numeric refuses",
          "[validate][json][numeric]") {
  CHECK(error_of("1e200000")
        == "number at byte 0 (1e200000) is outside PostgreSQL's numeric "
           "range: it is too large (200001 digits before the decimal point, "
           "the limit is 131072)");
  CHECK(error_of(R"({"tenant_id":"t","n":1e131072})")
        == "number at byte 21 (1e131072) is outside PostgreSQL's numeric "
           "range: it is too large (131073 digits before the decimal point, "
           "the limit is 131072)");
  CHECK(error_of("1e-200000")
        == "number at byte 0 (1e-200000) is outside PostgreSQL's numeric "
           "range: it has too many digits after the decimal point (200000, "
           "the limit is 16383)");
  CHECK(error_of("[0e1073741823]")
        == "number at byte 1 (0e1073741823) is outside PostgreSQL's numeric "
           "range: its exponent is out of range (its magnitude must be below "
           "1073741823)");
  CHECK(error_of("1" + std::string(131072, '0'))
        == "number at byte 0 (1000000000000000000000000000000000000000...("
           "131073 bytes)) is outside PostgreSQL's numeric range: it is too "
           "large (131073 digits before the decimal point, the limit is "
           "131072)");
  for (const std::string& s :
       {"1e131072"s, "-1e131072"s, "10e131071"s, "0.1e131073"s,
        "1e1000000000000000000000"s, "1e-16384"s, "1.0e-16383"s,
        "0e-16384"s, "-0e-20000"s, "0e1073741823"s, "0e-1073741823"s,
        "1e99999999999999999999"s, "0." + std::string(16384, '0'),
        "0." + std::string(16383, '0') + "1", "1" + std::string(131072, '0'),
        "1" + std::string(131072, '0') + ".0"}) {
    INFO(s.substr(0, 60));
    auto e = error_of("[1," + s + "]");
    CHECK_THAT(e, Catch::StartsWith("number at byte 3 ("));
    CHECK_THAT(e, Catch::Contains("outside PostgreSQL's numeric range"));
  }
}

TEST_CASE("check_json refuses bad literals", "[validate][json]") {
  CHECK(error_of("True") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("nul") == "invalid JSON at byte 0: invalid literal");
  CHECK(error_of("[fals]") == "invalid JSON at byte 1: invalid literal");
  CHECK(error_of("truex")
        == "invalid JSON at byte 4: unexpected data after the JSON value");
  CHECK(error_of("[nulll]") == "invalid JSON at byte 5: expected ',' or ']'");
}

TEST_CASE("check_json allows only space, tab, LF and CR as whitespace",
          "[validate][json]") {
  CHECK(error_of("\f1") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("\v1") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("1\f")
        == "invalid JSON at byte 1: unexpected data after the JSON value");
  CHECK(error_of("[1,\f2]") == "invalid JSON at byte 3: expected a value");
  CHECK(error_of("\xc2\xa0" "1") == "invalid JSON at byte 0: expected a value"); // NBSP
  CHECK(error_of("\xef\xbb\xbf{}") == "invalid JSON at byte 0: expected a value"); // BOM
}

TEST_CASE("check_json refuses trailing garbage", "[validate][json]") {
  CHECK(error_of("{} x")
        == "invalid JSON at byte 3: unexpected data after the JSON value");
  CHECK(error_of("1 2")
        == "invalid JSON at byte 2: unexpected data after the JSON value");
  CHECK(error_of("{}}")
        == "invalid JSON at byte 2: unexpected data after the JSON value");
  CHECK(error_of("[]]")
        == "invalid JSON at byte 2: unexpected data after the JSON value");
  CHECK(error_of("\"a\"\"b\"")
        == "invalid JSON at byte 3: unexpected data after the JSON value");
  CHECK(error_of("{}\0"s)
        == "invalid JSON at byte 2: unexpected data after the JSON value");
}

TEST_CASE("check_json refuses broken structure", "[validate][json]") {
  CHECK(error_of("[1,]") == "invalid JSON at byte 3: expected a value");
  CHECK(error_of(R"({"a":1,})") == "invalid JSON at byte 7: expected string key");
  CHECK(error_of(R"({"a" 1})") == "invalid JSON at byte 5: expected ':'");
  CHECK(error_of(R"({"a"})") == "invalid JSON at byte 4: expected ':'");
  CHECK(error_of("{a:1}") == "invalid JSON at byte 1: expected string key");
  CHECK(error_of("{'a':1}") == "invalid JSON at byte 1: expected string key");
  CHECK(error_of("{1:1}") == "invalid JSON at byte 1: expected string key");
  CHECK(error_of("[1 2]") == "invalid JSON at byte 3: expected ',' or ']'");
  CHECK(error_of(R"({"a":1 "b":2})")
        == "invalid JSON at byte 7: expected ',' or '}'");
  CHECK(error_of("[1}") == "invalid JSON at byte 2: expected ',' or ']'");
  CHECK(error_of(R"({"a":1])") == "invalid JSON at byte 6: expected ',' or '}'");
  CHECK(error_of("[") == "invalid JSON at byte 1: expected a value");
  CHECK(error_of("{") == "invalid JSON at byte 1: expected string key");
  CHECK(error_of(R"({"a":)") == "invalid JSON at byte 5: expected a value");
  CHECK(error_of("[1") == "invalid JSON at byte 2: expected ',' or ']'");
  CHECK(error_of(R"({"a":1)") == "invalid JSON at byte 6: expected ',' or '}'");
  CHECK(error_of(R"("abc)") == "invalid JSON at byte 4: unterminated string");
  CHECK(error_of(R"(["abc\")") == "invalid JSON at byte 7: unterminated string");
  CHECK(error_of("]") == "invalid JSON at byte 0: expected a value");
  CHECK(error_of(",") == "invalid JSON at byte 0: expected a value");
}

TEST_CASE("check_json refuses unescaped control characters and bad escapes",
          "[validate][json]") {
  CHECK(error_of("\"a\tb\"")
        == "invalid JSON at byte 2: control character in string must be escaped");
  CHECK(error_of("\"a\nb\"")
        == "invalid JSON at byte 2: control character in string must be escaped");
  CHECK(error_of("\"a\0b\""s)
        == "invalid JSON at byte 2: control character in string must be escaped");
  CHECK(error_of("{\"k\0\":1}"s)
        == "invalid JSON at byte 3: control character in string must be escaped");
  CHECK(error_of("\0"s) == "invalid JSON at byte 0: expected a value");
  CHECK(error_of("[1,\0]"s) == "invalid JSON at byte 3: expected a value");
  CHECK(error_of(R"("\x")") == "invalid JSON at byte 1: invalid escape");
  CHECK(error_of(R"("\'")") == "invalid JSON at byte 1: invalid escape");
  CHECK(error_of(R"("\U0041")") == "invalid JSON at byte 1: invalid escape");
  CHECK(error_of(R"("\u12")") == "invalid JSON at byte 1: invalid \\u escape");
  CHECK(error_of(R"("\u12G4")") == "invalid JSON at byte 1: invalid \\u escape");
  CHECK(error_of(R"("ab\u)") == "invalid JSON at byte 3: invalid \\u escape");
  CHECK(error_of(R"("\)") == "invalid JSON at byte 2: unterminated string");
}

TEST_CASE("check_json refuses \\u0000 in strings and keys", "[validate][json]") {
  CHECK(error_of(R"("\u0000")") == "\\u0000 is not allowed in jsonb (byte 1)");
  CHECK(error_of(R"({"a":"x\u0000y"})")
        == "\\u0000 is not allowed in jsonb (byte 7)");
  CHECK(error_of(R"({"a\u0000":1})") == "\\u0000 is not allowed in jsonb (byte 3)");
  CHECK(error_of(R"({"d":[{"tenant_id":"\u0000"}]})")
        == "\\u0000 is not allowed in jsonb (byte 20)");
  CHECK(valid(R"("\u0001\u0010\u0100")")); // other low escapes are fine
}

TEST_CASE("check_json refuses unpaired surrogate escapes", "[validate][json]") {
  SECTION("high surrogate alone") {
    CHECK(error_of(R"("\uD83D")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"({"a":"xy\uDBFF"})")
          == "unpaired surrogate \\uDBFF at byte 8");
    CHECK(error_of(R"("\uD83D)") == "unpaired surrogate \\uD83D at byte 1");
  }
  SECTION("high surrogate followed by something else than a low one") {
    CHECK(error_of(R"("\uD83Dx")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\uD83D\n")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\uD83D\uD83D")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\uD83D\u0041")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\uD83D\uE000")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\ud83d\u12")") == "unpaired surrogate \\uD83D at byte 1");
    CHECK(error_of(R"("\uD83D \uDE00")") == "unpaired surrogate \\uD83D at byte 1");
  }
  SECTION("low surrogate alone") {
    CHECK(error_of(R"("\uDE00")") == "unpaired surrogate \\uDE00 at byte 1");
    CHECK(error_of(R"("ab\udc00")") == "unpaired surrogate \\uDC00 at byte 3");
    CHECK(error_of(R"({"\uDFFF":1})") == "unpaired surrogate \\uDFFF at byte 2");
    CHECK(error_of(R"("\uDE00\uD83D")") == "unpaired surrogate \\uDE00 at byte 1");
  }
}

TEST_CASE("check_json refuses ill-formed UTF-8", "[validate][json][utf8]") {
  SECTION("inside strings") {
    const std::vector<std::string> bad = {
      "\xc0\xaf",         "\xc1\xbf",         "\xe0\x80\xaf",
      "\xe0\x9f\xbf",     "\xf0\x80\x80\xaf", "\xf0\x8f\xbf\xbf", // overlongs
      "\xed\xa0\x80",     "\xed\xbf\xbf",     "\xed\xb0\x80", // surrogates
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf7\xbf\xbf\xbf", // > U+10FFFF
      "\xff",             "\xfe",             "\xf8\x88\x80\x80\x80",
      "\x80",             "\xbf",             "\xe9",       // stray / latin-1
      "\xe2\x82",         "\xf0\x9f\x98",     "\xc3",       // truncated
      "\xe2\x28\xa1",     "\xc3\x28",         "\xf0\x9f\x28\x80",
    };
    for (const auto& b : bad) {
      INFO("bytes of length " << b.size());
      CHECK(error_of("\"ab" + b + "\"") == "invalid UTF-8 at byte 3");
      CHECK(error_of("{\"k" + b + "\":1}") == "invalid UTF-8 at byte 3");
      CHECK_FALSE(ces::is_valid_utf8(b));
    }
    // Truncated at the very end of the text.
    CHECK(error_of("\"ab\xe2\x82") == "invalid UTF-8 at byte 3");
    CHECK(error_of("\"ab\xf0") == "invalid UTF-8 at byte 3");
  }
  SECTION("outside strings") {
    CHECK(error_of("\xff") == "invalid UTF-8 at byte 0");
    CHECK(error_of("{}\xff") == "invalid UTF-8 at byte 2");
    CHECK(error_of("[\x80]") == "invalid UTF-8 at byte 1");
    CHECK(error_of("[1,\xed\xa0\x80]") == "invalid UTF-8 at byte 3");
    CHECK(error_of("{\"a\":1\xc0\xaf}") == "invalid UTF-8 at byte 6");
    // Well-formed UTF-8 that is no JSON token is a syntax error.
    CHECK(error_of("[\xc3\xa9]") == "invalid JSON at byte 1: expected a value");
  }
  SECTION("is_valid_utf8 on good text") {
    CHECK(ces::is_valid_utf8(""));
    CHECK(ces::is_valid_utf8("plain ascii\0with nul"s));
    CHECK(ces::is_valid_utf8("Zoë – 日本語 😀 \xf4\x8f\xbf\xbf"));
  }
}

TEST_CASE("check_json limits nesting without recursion", "[validate][json][depth]") {
  SECTION("exactly max_depth is accepted, one more is refused") {
    CHECK(valid(nested_arrays(512)));
    CHECK(error_of(nested_arrays(513)) == "nesting deeper than 512 at byte 512");
    CHECK(valid(nested_arrays(3), 3));
    CHECK(error_of(nested_arrays(4), 3) == "nesting deeper than 3 at byte 3");
    CHECK(valid(R"({"a":{"b":[1]}})", 3));
    CHECK(error_of(R"({"a":{"b":[{}]}})", 3) == "nesting deeper than 3 at byte 11");
    CHECK(valid("[[],[],{\"a\":[]}]", 3)); // siblings do not add up
    CHECK(valid("[[],[],{\"a\":1}]", 2));
    CHECK(error_of("[[],[],{\"a\":[]}]", 2) == "nesting deeper than 2 at byte 12");
  }
  SECTION("max_depth 0 allows scalars only") {
    CHECK(valid("1", 0));
    CHECK(valid("\"x\"", 0));
    CHECK(error_of("[]", 0) == "nesting deeper than 0 at byte 0");
    CHECK(error_of("{}", 0) == "nesting deeper than 0 at byte 0");
  }
  SECTION("100 000 opening brackets are refused without stack overflow") {
    std::string deep(100000, '[');
    CHECK(error_of(deep) == "nesting deeper than 512 at byte 512");
    CHECK(error_of(nested_arrays(100000)) == "nesting deeper than 512 at byte 512");
    std::string objs;
    for (int i = 0; i < 100000; ++i)
      objs += "{\"a\":";
    CHECK(error_of(objs) == "nesting deeper than 512 at byte 2560");
  }
  SECTION("deep documents within a large limit") {
    CHECK(valid(nested_arrays(100000), 100000));
    CHECK(error_of(std::string(100000, '['), 1000000)
          == "invalid JSON at byte 100000: expected a value");
  }
  SECTION("object/array kinds are tracked past 512 levels") {
    std::string open, close;
    for (int i = 0; i < 700; ++i) {
      open += (i % 3 == 0) ? "[" : "{\"k\":";
      close.insert(0, (i % 3 == 0) ? "]" : "}");
    }
    CHECK(valid(open + "1" + close, 700));
    CHECK(error_of(open + "1" + close, 699) == "nesting deeper than 699 at byte "
                                                 + std::to_string(open.size() - 1));
    // Wrong closer at level 600 (an array, i = 599 is not a multiple of 3
    // so it is an object: close it with ']').
    std::string wrong = open + "1" + close;
    const size_t at = open.size() + 1 + (700 - 600);
    REQUIRE(wrong[at] == '}');
    wrong[at] = ']';
    CHECK(error_of(wrong, 700)
          == "invalid JSON at byte " + std::to_string(at) + ": expected ',' or '}'");
  }
}

// -- check_json: tenant extraction ---------------------------------------------

TEST_CASE("check_json extracts the top-level tenant_id", "[validate][tenant]") {
  SECTION("plain string") {
    auto r = check_json(R"({"event":"lead.created","tenant_id":"acme","n":1})", depth);
    REQUIRE(r.ok);
    CHECK(r.is_object);
    CHECK(r.has_tenant);
    CHECK(r.tenant_is_string);
    CHECK(r.tenant_type == json_type::string);
    CHECK(r.tenant_id == "acme");
  }
  SECTION("escaped value is unescaped") {
    auto r = check_json(R"({"tenant_id":"a\"b\\c\/\u00e9\uD83D\uDE00\n"})", depth);
    REQUIRE(r.ok);
    CHECK(r.tenant_id == "a\"b\\c/é😀\n");
  }
  SECTION("escaped key counts") {
    for (const char* doc : {R"({"tenant\u005fid":"acme"})",
                            R"({"\u0074\u0065\u006e\u0061\u006e\u0074\u005f\u0069\u0064":"acme"})",
                            R"({"\u0074enant_id" : "acme"})"}) {
      INFO(doc);
      auto r = check_json(doc, depth);
      REQUIRE(r.ok);
      CHECK(r.has_tenant);
      CHECK(r.tenant_id == "acme");
    }
  }
  SECTION("near misses do not count") {
    for (const char* doc : {R"({"tenant_idx":"a"})", R"({"Tenant_id":"a"})",
                            R"({"tenant_id ":"a"})", R"({"tenant":"a"})",
                            R"({"tenant\u005fidx":"a"})", R"({"tenantid":"a"})",
                            R"({"\n":"a"})", R"({"":"a"})"}) {
      INFO(doc);
      auto r = check_json(doc, depth);
      REQUIRE(r.ok);
      CHECK_FALSE(r.has_tenant);
      CHECK(r.tenant_id.empty());
    }
  }
  SECTION("the last duplicate wins") {
    auto r = check_json(R"({"tenant_id":"a","x":1,"tenant_id":"b"})", depth);
    CHECK(r.tenant_id == "b");
    r = check_json(R"({"tenant_id":"a","tenant_id":5})", depth);
    CHECK(r.has_tenant);
    CHECK_FALSE(r.tenant_is_string);
    CHECK(r.tenant_type == json_type::number);
    CHECK(r.tenant_id.empty());
    r = check_json(R"({"tenant_id":null,"tenant\u005fid":"c"})", depth);
    CHECK(r.tenant_is_string);
    CHECK(r.tenant_id == "c");
    r = check_json(R"({"tenant_id":"a","tenant_id":{"tenant_id":"x"}})", depth);
    CHECK(r.tenant_type == json_type::object);
    CHECK(r.tenant_id.empty());
  }
  SECTION("nested tenant_id does not count") {
    for (const char* doc : {R"({"data":{"tenant_id":"x"}})",
                            R"([{"tenant_id":"x"}])",
                            R"({"a":[{"tenant_id":"x"}],"b":{"c":{"tenant_id":"y"}}})",
                            R"("tenant_id")"}) {
      INFO(doc);
      auto r = check_json(doc, depth);
      REQUIRE(r.ok);
      CHECK_FALSE(r.has_tenant);
    }
    auto r = check_json(R"({"data":{"tenant_id":"x"},"tenant_id":"top"})", depth);
    CHECK(r.tenant_id == "top");
    r = check_json(R"({"tenant_id":"top","data":{"tenant_id":"x"}})", depth);
    CHECK(r.tenant_id == "top");
    r = check_json(R"({"tenant_id":{"tenant_id":"x"}})", depth);
    CHECK(r.has_tenant);
    CHECK_FALSE(r.tenant_is_string);
  }
  SECTION("types of a non-string tenant_id") {
    const std::vector<std::pair<std::string, json_type>> cases = {
      {"5", json_type::number},  {"-1.5e3", json_type::number},
      {"null", json_type::null}, {"true", json_type::boolean},
      {"false", json_type::boolean}, {"{}", json_type::object},
      {"{\"a\":1}", json_type::object}, {"[]", json_type::array},
      {"[\"acme\"]", json_type::array},
    };
    for (const auto& [v, t] : cases) {
      INFO(v);
      auto r = check_json("{\"tenant_id\":" + v + ",\"z\":2}", depth);
      REQUIRE(r.ok);
      CHECK(r.has_tenant);
      CHECK_FALSE(r.tenant_is_string);
      CHECK(r.tenant_type == t);
      CHECK(r.tenant_id.empty());
    }
  }
  SECTION("invalid documents report no tenant") {
    auto r = check_json(R"({"tenant_id":"acme",})", depth);
    CHECK_FALSE(r.ok);
    CHECK_FALSE(r.has_tenant);
    CHECK_FALSE(r.is_object);
    CHECK(r.tenant_id.empty());
  }
  SECTION("empty string tenant is reported as such") {
    auto r = check_json(R"({"tenant_id":""})", depth);
    CHECK(r.has_tenant);
    CHECK(r.tenant_is_string);
    CHECK(r.tenant_id.empty());
  }
}

// -- check_record ---------------------------------------------------------------

TEST_CASE("check_record: empty values", "[validate][record]") {
  validation_limits lim;
  kafka_record tomb = make_record("");
  tomb.has_value = false;
  auto r = check_record(std::move(tomb), lim);
  CHECK(r.reason == reject_reason::empty_value);
  CHECK(r.error == "null value (tombstone)");
  r = check_record(make_record("", {header("tenant_id", "acme")}), lim);
  CHECK(r.reason == reject_reason::empty_value);
  CHECK(r.error == "empty value");
  CHECK(r.tenant_id.empty());
}

TEST_CASE("check_record: size limit is checked before parsing",
          "[validate][record]") {
  validation_limits lim; // 1 MiB
  const size_t two_mib = 2 * 1024 * 1024;
  SECTION("2 MiB valid event is too large by default") {
    auto r = check_record(make_record(big_event(two_mib)), lim);
    CHECK(r.reason == reject_reason::too_large);
    CHECK(r.error == "value is 2097152 bytes, more than the limit of 1048576");
    CHECK(r.tenant_id.empty());
  }
  SECTION("2 MiB garbage is too_large, not invalid_json") {
    auto r = check_record(make_record(std::string(two_mib, '\xff')), lim);
    CHECK(r.reason == reject_reason::too_large);
  }
  SECTION("2 MiB valid event with a tenant passes a 4 MiB limit") {
    lim.max_payload_bytes = 4 * 1024 * 1024;
    auto r = check_record(make_record(big_event(two_mib)), lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.error.empty());
    CHECK(r.tenant_id == "acme");
    CHECK(r.rec.value.size() == two_mib);
  }
  SECTION("the limit itself is inclusive") {
    lim.max_payload_bytes = 1000;
    CHECK(check_record(make_record(big_event(1000)), lim).reason
          == reject_reason::none);
    CHECK(check_record(make_record(big_event(1001)), lim).reason
          == reject_reason::too_large);
  }
}

TEST_CASE("check_record: invalid JSON carries check_json's message",
          "[validate][record]") {
  validation_limits lim;
  for (std::string doc : {R"({"tenant_id":"acme",})"s,
                          R"({"tenant_id":"a\u0000"})"s,
                          R"({"tenant_id":"\uD83D"})"s,
                          "{\"tenant_id\":\"\xc0\xaf\"}"s, nested_arrays(600),
                          R"({"tenant_id":"acme","n":1e200000})"s}) {
    INFO(doc.substr(0, 40));
    auto expected = check_json(doc, lim.max_depth).error;
    auto r = check_record(make_record(doc, {header("tenant_id", "acme")}), lim);
    CHECK(r.reason == reject_reason::invalid_json);
    CHECK(r.error == expected);
    CHECK_FALSE(r.error.empty());
  }
  lim.max_depth = 2;
  auto r = check_record(make_record(R"({"tenant_id":"a","x":[[1]]})"), lim);
  CHECK(r.reason == reject_reason::invalid_json);
  CHECK(r.error == "nesting deeper than 2 at byte 22");
}

TEST_CASE("check_record: tenant from payload or header", "[validate][record][tenant]") {
  validation_limits lim;
  SECTION("payload tenant") {
    auto r = check_record(make_record(R"({"tenant_id":"acme","a":1})"), lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id == "acme");
  }
  SECTION("payload tenant wins over the header") {
    auto r = check_record(make_record(R"({"tenant_id":"acme"})",
                                      {header("tenant_id", "other")}),
                          lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id == "acme");
  }
  SECTION("header fallback when the payload has no tenant_id key") {
    auto r = check_record(make_record(R"({"data":{"tenant_id":"nested"}})",
                                      {header("x", "y"), header("tenant_id", "acme")}),
                          lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id == "acme");
  }
  SECTION("the last tenant_id header wins") {
    auto r = check_record(make_record("{}", {header("tenant_id", "a"),
                                             header("tenant_id", "b")}),
                          lim);
    CHECK(r.tenant_id == "b");
  }
  SECTION("non-object top level with a header is accepted") {
    for (const char* doc : {"[1,2]", "\"text\"", "42", "null", "[]"}) {
      INFO(doc);
      auto r = check_record(make_record(doc, {header("tenant_id", "acme")}), lim);
      CHECK(r.reason == reject_reason::none);
      CHECK(r.tenant_id == "acme");
    }
    auto r = check_record(make_record("[{\"tenant_id\":\"acme\"}]"), lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    CHECK(r.error == "no tenant_id in payload or headers");
  }
  SECTION("a present non-string payload tenant_id is an error, no fallback") {
    const std::vector<std::pair<std::string, std::string>> cases = {
      {"42", "tenant_id is a number, expected a string"},
      {"null", "tenant_id is a null, expected a string"},
      {"true", "tenant_id is a boolean, expected a string"},
      {"{\"id\":\"acme\"}", "tenant_id is an object, expected a string"},
      {"[\"acme\"]", "tenant_id is an array, expected a string"},
    };
    for (const auto& [v, msg] : cases) {
      INFO(v);
      auto r = check_record(make_record("{\"tenant_id\":" + v + "}",
                                        {header("tenant_id", "acme")}),
                            lim);
      CHECK(r.reason == reject_reason::missing_tenant);
      CHECK(r.error == msg);
      CHECK(r.tenant_id.empty());
    }
  }
  SECTION("empty or too long payload tenant, no fallback") {
    auto r = check_record(make_record(R"({"tenant_id":""})",
                                      {header("tenant_id", "acme")}),
                          lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    CHECK(r.error == "tenant_id is empty");
    r = check_record(make_record("{\"tenant_id\":\"" + std::string(257, 't') + "\"}"),
                     lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    CHECK(r.error == "tenant_id is 257 bytes, longer than 256");
    r = check_record(make_record("{\"tenant_id\":\"" + std::string(256, 't') + "\"}"),
                     lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id.size() == 256);
    // The limit applies to the unescaped bytes: 86 "é" = 172 bytes, 86 "\u00e9"
    // escapes = 516 raw bytes.
    std::string esc;
    for (int i = 0; i < 86; ++i)
      esc += "\\u00e9";
    r = check_record(make_record("{\"tenant_id\":\"" + esc + "\"}"), lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id.size() == 172);
  }
  SECTION("missing everywhere") {
    auto r = check_record(make_record(R"({"a":1})"), lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    CHECK(r.error == "no tenant_id in payload or headers");
    r = check_record(make_record(R"({"a":1})", {header("Tenant_id", "acme"),
                                                header("tenant-id", "acme")}),
                     lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    CHECK(r.error == "no tenant_id in payload or headers");
  }
  SECTION("unusable tenant_id headers") {
    const std::vector<std::pair<kafka_header, std::string>> cases = {
      {null_header("tenant_id"),
       "no tenant_id in payload and the tenant_id header is null"},
      {header("tenant_id", ""),
       "no tenant_id in payload and the tenant_id header is empty"},
      {header("tenant_id", "ac\0me"s),
       "no tenant_id in payload and the tenant_id header contains a NUL byte"},
      {header("tenant_id", "acm\xe9"),
       "no tenant_id in payload and the tenant_id header is not valid UTF-8"},
      {header("tenant_id", "\xed\xa0\x80"),
       "no tenant_id in payload and the tenant_id header is not valid UTF-8"},
      {header("tenant_id", std::string(257, 'h')),
       "no tenant_id in payload and the tenant_id header is 257 bytes, longer "
       "than 256"},
    };
    for (const auto& [h, msg] : cases) {
      INFO(msg);
      auto r = check_record(make_record(R"({"a":1})", {h}), lim);
      CHECK(r.reason == reject_reason::missing_tenant);
      CHECK(r.error == msg);
      CHECK(r.tenant_id.empty());
    }
    // The last header decides, even when an earlier one was good.
    auto r = check_record(make_record("{}", {header("tenant_id", "acme"),
                                             header("tenant_id", "")}),
                          lim);
    CHECK(r.reason == reject_reason::missing_tenant);
    r = check_record(make_record("{}", {header("tenant_id", "Zoë-日本")}), lim);
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id == "Zoë-日本");
  }
}

TEST_CASE("check_record moves the record without copying the payload",
          "[validate][record]") {
  validation_limits lim;
  std::string payload = R"({"tenant_id":"acme","blob":")" + std::string(4000, 'x')
                        + "\"}";
  kafka_record rec = make_record(std::move(payload), {header("k", "v")});
  rec.has_key = true;
  rec.key = "lead-1";
  rec.timestamp_ms = 1700000000000;
  rec.timestamp_type = 1;
  const char* data = rec.value.data();
  auto r = check_record(std::move(rec), lim);
  CHECK(r.reason == reject_reason::none);
  CHECK(r.rec.value.data() == data); // same buffer: moved, not copied
  CHECK(r.rec.topic == "apexflow.leads.created");
  CHECK(r.rec.partition == 3);
  CHECK(r.rec.offset == 77);
  CHECK(r.rec.has_key);
  CHECK(r.rec.key == "lead-1");
  CHECK(r.rec.timestamp_ms == 1700000000000);
  CHECK(r.rec.timestamp_type == 1);
  REQUIRE(r.rec.headers.size() == 1);
  CHECK(r.rec.headers[0].key == "k");

  // Rejected records keep their bytes too (they go to the DLQ).
  std::string bad(3000, '{');
  const char* bad_data = bad.data();
  auto rej = check_record(make_record(std::move(bad)), lim);
  CHECK(rej.reason == reject_reason::invalid_json);
  CHECK(rej.rec.value.data() == bad_data);
  CHECK(rej.rec.value.size() == 3000);
}

TEST_CASE("check_record parses x-replay-of", "[validate][record][replay]") {
  validation_limits lim;
  auto replay_of = [&](std::vector<kafka_header> hs) {
    hs.push_back(header("tenant_id", "acme"));
    return check_record(make_record("{}", std::move(hs)), lim).replay_of;
  };
  CHECK(replay_of({}) == 0);
  CHECK(replay_of({header("x-replay-of", "42")}) == 42);
  CHECK(replay_of({header("x-replay-of", "1")}) == 1);
  CHECK(replay_of({header("x-replay-of", "007")}) == 7);
  CHECK(replay_of({header("x-replay-of", "9223372036854775807")}) == INT64_MAX);
  CHECK(replay_of({header("x-replay-of", "9223372036854775808")}) == 0);
  CHECK(replay_of({header("x-replay-of", "99999999999999999999999")}) == 0);
  CHECK(replay_of({header("x-replay-of", "0")}) == 0);
  CHECK(replay_of({header("x-replay-of", "000")}) == 0);
  CHECK(replay_of({header("x-replay-of", "-5")}) == 0);
  CHECK(replay_of({header("x-replay-of", "+5")}) == 0);
  CHECK(replay_of({header("x-replay-of", " 5")}) == 0);
  CHECK(replay_of({header("x-replay-of", "5 ")}) == 0);
  CHECK(replay_of({header("x-replay-of", "5\0"s)}) == 0);
  CHECK(replay_of({header("x-replay-of", "")}) == 0);
  CHECK(replay_of({header("x-replay-of", "abc")}) == 0);
  CHECK(replay_of({header("x-replay-of", "1e3")}) == 0);
  CHECK(replay_of({header("x-replay-of", "12.0")}) == 0);
  CHECK(replay_of({header("x-replay-of", "0x10")}) == 0);
  CHECK(replay_of({null_header("x-replay-of")}) == 0);
  CHECK(replay_of({header("X-Replay-Of", "42")}) == 0);
  CHECK(replay_of({header("x-replay-of", "1"), header("x-replay-of", "2")}) == 2);
  CHECK(replay_of({header("x-replay-of", "1"), header("x-replay-of", "bad")}) == 0);

  // Rejected records keep their replay_of (the DLQ row can point back).
  auto r = check_record(make_record("{", {header("x-replay-of", "99")}), lim);
  CHECK(r.reason == reject_reason::invalid_json);
  CHECK(r.replay_of == 99);
}

TEST_CASE("check_record parses x-replay-id with x-replay-of",
          "[validate][record][replay]") {
  validation_limits lim;
  auto replay_id = [&](std::vector<kafka_header> hs) {
    hs.push_back(header("tenant_id", "acme"));
    return check_record(make_record("{}", std::move(hs)), lim).replay_id;
  };
  auto of = header("x-replay-of", "42");
  const std::string uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
  CHECK(replay_id({of, header("x-replay-id", uuid)}) == uuid);
  CHECK(replay_id({header("x-replay-id", uuid), of}) == uuid);
  CHECK(replay_id({of, header("x-replay-id", "A.b_9-")}) == "A.b_9-");
  // Only with a usable x-replay-of.
  CHECK(replay_id({header("x-replay-id", uuid)}).empty());
  CHECK(replay_id({header("x-replay-of", "x"), header("x-replay-id", uuid)})
          .empty());
  // The last one counts; anything but 1..64 of [A-Za-z0-9._-] is ignored.
  CHECK(replay_id({of, header("x-replay-id", uuid),
                   header("x-replay-id", "b")}) == "b");
  CHECK(replay_id({of, header("x-replay-id", uuid),
                   header("x-replay-id", "b c")}).empty());
  CHECK(replay_id({of, header("x-replay-id", std::string(64, 'a'))})
        == std::string(64, 'a'));
  CHECK(replay_id({of, header("x-replay-id", std::string(65, 'a'))}).empty());
  CHECK(replay_id({of, header("x-replay-id", "")}).empty());
  CHECK(replay_id({of, null_header("x-replay-id")}).empty());
  CHECK(replay_id({of, header("x-replay-id", "r'1")}).empty());
  CHECK(replay_id({of, header("x-replay-id", "r\"1")}).empty());
  CHECK(replay_id({of, header("x-replay-id", "\xc3\xa9")}).empty());
  CHECK(replay_id({of, header("x-replay-id", "a\0"s)}).empty());
}

TEST_CASE("check_record parses x-replay-job with x-replay-of",
          "[validate][record][replay]") {
  validation_limits lim;
  auto replay_job = [&](std::vector<kafka_header> hs) {
    hs.push_back(header("tenant_id", "acme"));
    return check_record(make_record("{}", std::move(hs)), lim).replay_job;
  };
  auto of = header("x-replay-of", "42");
  CHECK(replay_job({of, header("x-replay-job", "7")}) == 7);
  CHECK(replay_job({header("x-replay-job", "7"), of}) == 7);
  CHECK(replay_job({of, header("x-replay-job", "9223372036854775807")})
        == INT64_MAX);
  CHECK(replay_job({of}) == 0);
  // Only with a usable x-replay-of.
  CHECK(replay_job({header("x-replay-job", "7")}) == 0);
  CHECK(replay_job({header("x-replay-of", "0"), header("x-replay-job", "7")})
        == 0);
  // Decimal, > 0, digits only; the last one counts.
  CHECK(replay_job({of, header("x-replay-job", "0")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "-7")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "+7")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "7 ")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "0x7")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "9223372036854775808")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "")}) == 0);
  CHECK(replay_job({of, null_header("x-replay-job")}) == 0);
  CHECK(replay_job({of, header("X-Replay-Job", "7")}) == 0);
  CHECK(replay_job({of, header("x-replay-job", "1"),
                    header("x-replay-job", "2")}) == 2);
  CHECK(replay_job({of, header("x-replay-job", "1"),
                    header("x-replay-job", "x")}) == 0);
  // Rejected records keep it too.
  auto r = check_record(make_record("{", {of, header("x-replay-job", "5")}),
                        lim);
  CHECK(r.reason == reject_reason::invalid_json);
  CHECK(r.replay_job == 5);
}
