// The text encodings storage/ sends PostgreSQL: headers JSON (and its inverse)
// and COPY text fields. Pure checks, plus what PostgreSQL makes of them.
#include "storage/copy_text.hpp"
#include "storage/headers_json.hpp"
#include "storage/journal_reader.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <optional>
#include <unistd.h>

using namespace ces;
using namespace ces::storage;

namespace {

std::vector<kafka_header> sample_headers() {
  return {
    {"plain", "value", true},
    {"null", "", false},
    {"empty", "", true},
    {"nul", std::string("a\0b", 3), true},
    {"latin1", "caf\xe9", true},
    {"overlong", "\xc0\xaf", true},
    {"surrogate", "\xed\xa0\x80", true},
    {"utf8", "caf\xc3\xa9 \xf0\x9f\x98\x80", true},
    {"ctl", std::string("\x01\x1f\x7f\"\\/\b\f\n\r\t", 11), true},
    {std::string("\xff\x00k", 3), "bin key", true},
    {"", "empty key", true},
    {"dup", "1", true},
    {"dup", "2", true},
  };
}

void check_same(const std::vector<kafka_header>& a,
                const std::vector<kafka_header>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("header " << i);
    CHECK(a[i].key == b[i].key);
    CHECK(a[i].value == b[i].value);
    CHECK(a[i].has_value == b[i].has_value);
  }
}

} // namespace

TEST_CASE("utf-8 checks follow PostgreSQL", "[codec]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("ascii"));
  CHECK(is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));         // overlong
  CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));     // overlong
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));     // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80")); // > U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xc3"));             // truncated
  CHECK_FALSE(is_valid_utf8("\x80"));
  CHECK(is_valid_utf8(std::string("a\0b", 3)));
  CHECK_FALSE(is_pg_text(std::string("a\0b", 3)));
  CHECK(to_pg_text(std::string("a\0b\xff", 4)) == "a\xef\xbf\xbd" "b\xef\xbf\xbd");
  CHECK(to_pg_text("ok \xc3\xa9") == "ok \xc3\xa9");
}

TEST_CASE("base64", "[codec]") {
  std::string out;
  append_base64(out, "");
  CHECK(out.empty());
  append_base64(out, "f");
  CHECK(out == "Zg==");
  out.clear();
  append_base64(out, "foobar");
  CHECK(out == "Zm9vYmFy");
  std::string back;
  CHECK(decode_base64("Zm9vYg==", back));
  CHECK(back == "foob");
  CHECK(decode_base64("Zm9vYg", back));
  CHECK(back == "foob");
  CHECK_FALSE(decode_base64("Zm9v!", back));
  for (int n = 0; n < 300; ++n) {
    std::string bytes;
    for (int i = 0; i < n; ++i)
      bytes += static_cast<char>((i * 37 + n) & 0xFF);
    std::string enc;
    append_base64(enc, bytes);
    REQUIRE(decode_base64(enc, back));
    CHECK(back == bytes);
  }
}

TEST_CASE("headers JSON form", "[codec]") {
  CHECK(headers_to_json({}) == "[]");
  CHECK(headers_to_json({{"a", "b", true}, {"n", "", false}})
        == R"([{"key": "a", "value": "b"}, {"key": "n", "value": null}])");
  CHECK(headers_to_json({{"b", std::string("\xff\0", 2), true}})
        == R"([{"key": "b", "value_b64": "/wA="}])");
  CHECK(headers_to_json({{"\xff", "v", true}})
        == R"([{"key_b64": "/w==", "value": "v"}])");
  CHECK(headers_to_json({{"q", "\"\\\n\x01", true}})
        == R"([{"key": "q", "value": "\"\\\n\u0001"}])");
  auto h = sample_headers();
  check_same(headers_from_json(headers_to_json(h)), h);
}

TEST_CASE("headers JSON decoding is lenient about layout, strict about form",
          "[codec]") {
  auto h = headers_from_json(
    " [ {\"value\" : \"v\\u00e9\\ud83d\\ude00\", \"x\": [1, {\"y\": null}],"
    " \"key\":\"k\"} ,{\"key_b64\":\"/w==\",\"value\":null}]  ");
  REQUIRE(h.size() == 2);
  CHECK(h[0].key == "k");
  CHECK(h[0].value == "v\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(h[1].key == "\xff");
  CHECK_FALSE(h[1].has_value);
  CHECK(headers_from_json("[]").empty());
  CHECK_THROWS_AS(headers_from_json(""), std::invalid_argument);
  CHECK_THROWS_AS(headers_from_json("{}"), std::invalid_argument);
  CHECK_THROWS_AS(headers_from_json("[{\"value\": \"v\"}]"),
                  std::invalid_argument);
  CHECK_THROWS_AS(headers_from_json("[{\"key\": \"k\"}] x"),
                  std::invalid_argument);
  CHECK_THROWS_AS(headers_from_json("[{\"key\": \"\\ud800\"}]"),
                  std::invalid_argument);
  CHECK_THROWS_AS(headers_from_json("[{\"key\": \"k\", \"value_b64\": \"@\"}]"),
                  std::invalid_argument);
}

TEST_CASE("headers JSON survives jsonb", "[codec]") {
  auto url = test::shared_pg().create_database();
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  auto h = sample_headers();
  auto json = headers_to_json(h);
  // jsonb reorders keys ("value" before "key_b64") and re-spaces the text.
  auto back = tx.exec_params1("SELECT $1::jsonb::text", json)[0].as<std::string>();
  check_same(headers_from_json(back), h);
}

TEST_CASE("COPY text fields", "[codec]") {
  std::string out;
  copy_text::append_escaped(out, "a\tb\nc\rd\\e\x01 \\N");
  CHECK(out == "a\\tb\\nc\\rd\\\\e\x01 \\\\N");
  out.clear();
  copy_text::append_bytea(out, std::string("\0\xff", 2));
  CHECK(out == "\\\\x00ff");
  out.clear();
  copy_text::append_int(out, -9223372036854775807LL - 1);
  CHECK(out == "-9223372036854775808");
  auto ts = [](int64_t ms) {
    std::string s;
    copy_text::append_timestamp_ms(s, ms);
    return s;
  };
  CHECK(ts(-1) == "\\N");
  CHECK(ts(0) == "1970-01-01 00:00:00.000+00");
  CHECK(ts(951782400000) == "2000-02-29 00:00:00.000+00");
  CHECK(ts(1709294400250) == "2024-03-01 12:00:00.250+00");
  CHECK(ts(253402300799999) == "9999-12-31 23:59:59.999+00");
  CHECK(ts(253402300800000) == "\\N");
}

TEST_CASE("COPY timestamps mean what PostgreSQL reads", "[codec]") {
  auto url = test::shared_pg().create_database();
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec("SET TimeZone = 'America/New_York'");
  for (int64_t ms : {0LL, 1LL, 86399999LL, 951782400000LL, 1709294400250LL,
                     4102444800123LL, 253402300799999LL}) {
    std::string s;
    copy_text::append_timestamp_ms(s, ms);
    auto back = tx.exec_params1(
      "SELECT (extract(epoch FROM $1::timestamptz) * 1000)::bigint", s)[0]
      .as<int64_t>();
    CHECK(back == ms);
  }
}

TEST_CASE("COPY text escaping matches the byte-by-byte rules", "[codec]") {
  // The word-at-a-time scan must find every special byte wherever it sits.
  auto reference = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: out += c;
      }
    }
    return out;
  };
  const char alphabet[] = {'a', '{', '"', '\\', '\n', '\r', '\t', ' ', '\x7f',
                           '\x80', '\xff', '\x01', '\x5b', '\x5d', '\x08'};
  uint64_t seed = 42;
  for (int round = 0; round < 5000; ++round) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    std::string s(static_cast<size_t>(seed >> 58), 'x');
    for (auto& c : s) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      // Mostly plain bytes, now and then a special one.
      c = (seed >> 60) < 12 ? 'q' : alphabet[(seed >> 33) % sizeof alphabet];
    }
    std::string out = "prefix";
    ces::storage::copy_text::append_escaped(out, s);
    REQUIRE(out == "prefix" + reference(s));
  }
}

namespace {

/// Sets an environment variable for the scope (restores the old value).
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(std::string n, const std::string& value) : name(std::move(n)) {
    if (auto v = std::getenv(name.c_str()))
      old = v;
    setenv(name.c_str(), value.c_str(), 1);
  }
  ~scoped_env() {
    if (old)
      setenv(name.c_str(), old->c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

} // namespace

TEST_CASE("PGCLIENTENCODING=LATIN1 cannot garble the journal",
          "[codec][encoding]") {
  auto url = ces::test::migrated_db();
  const std::string name = "Zo\u00eb \u00d8rsted \u65e5\u672c \u2713";
  std::vector<checked_record> batch{ces::test::accepted(
    "crm", 0, 0, R"({"tenant_id":"t\u00f6","name":")" + name + "\"}",
    "t\u00f6")};
  {
    // What libpq reads at connect time, e.g. from the service's environment.
    scoped_env env{"PGCLIENTENCODING", "LATIN1"};
    storage::migrate(url);
    storage::journal_writer w{url, "cluster"};
    auto out = w.write(batch);
    CHECK(ces::test::find_count(out.journalled, "crm") == 1);
    // Reads for the API see the same text (a LATIN1 session cannot even
    // represent it).
    storage::journal_reader reader{url};
    auto rows = reader.latest_events(1, ces::test::every_tenant);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].tenant_id == "t\u00f6");
    CHECK(rows[0].payload_json.find(name) != std::string::npos);
  }
  // Checked over a session in the database's own encoding (UTF8).
  CHECK(ces::test::scalar(url, "SELECT payload->>'name' FROM event_journal")
        == name);
  CHECK(ces::test::scalar(url, "SELECT tenant_id FROM event_journal")
        == "t\u00f6");
}

TEST_CASE("a database whose encoding is not UTF8 is refused",
          "[codec][encoding]") {
  auto name = "ces_sql_ascii_" + std::to_string(::getpid());
  ces::test::shared_pg().exec("CREATE DATABASE " + name
                              + " ENCODING 'SQL_ASCII' TEMPLATE template0"
                                " LC_COLLATE 'C' LC_CTYPE 'C'");
  auto url = ces::test::shared_pg().url(name);
  try {
    storage::migrate(url);
    FAIL("migrate accepted a SQL_ASCII database");
  } catch (const storage::encoding_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("SQL_ASCII")
                           && Catch::Contains("UTF8")
                           && Catch::Contains(name));
  }
  // Nothing was created.
  CHECK(ces::test::scalar(url, "SELECT to_regclass('schema_migrations')"
                               " IS NULL")
        == "t");
}
