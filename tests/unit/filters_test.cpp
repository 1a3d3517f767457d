// The query filters of GET /events and GET /dlq (api/filters.cpp): every
// parameter, bad values and their stable codes, opaque cursors (round trip,
// garbage), filter_in_scope; and the SQL conditions they become
// (storage/event_query.cpp), as text with a fake quote function.
#include "api/admin_json.hpp"
#include "api/dlq_json.hpp"
#include "api/filters.hpp"
#include "storage/event_query.hpp"

#include <catch2/catch.hpp>

#include <climits>

using namespace ces;
using api::filter_error;
using api::query_params;

namespace {

/// The code of the error parsing `params` as event filters ("" when
/// accepted).
std::string event_error(const query_params& params) {
  event_filter f;
  filter_error err;
  if (api::parse_event_filter(params, f, err))
    return "";
  CHECK_FALSE(err.message.empty());
  return err.code;
}

std::string dlq_error(const query_params& params) {
  dlq_filter f;
  filter_error err;
  if (api::parse_dlq_filter(params, f, err))
    return "";
  CHECK_FALSE(err.message.empty());
  return err.code;
}

/// Quotes visibly, so that the tests see what was quoted.
std::string fake_quote(const std::string& s) {
  return "<" + s + ">";
}

tenant_scope scope_of(std::vector<std::string> tenants, bool unknown = false) {
  tenant_scope s;
  s.tenants = std::move(tenants);
  s.unknown_tenant = unknown;
  return s;
}

tenant_scope every(bool unknown) {
  tenant_scope s;
  s.all = true;
  s.unknown_tenant = unknown;
  return s;
}

} // namespace

TEST_CASE("event filters: every parameter", "[filters]") {
  event_filter f;
  filter_error err;
  REQUIRE(api::parse_event_filter(
    {{"tenant_id", "t-1 é"},
     {"topic", "apexflow.jobs_created-2"},
     {"key", "job 1/ü"},
     {"from", "2024-05-01T12:00:00Z"},
     {"to", "2024-05-02T00:00:00.5+02:00"},
     {"replays", "only"},
     {"replay_of", "42"},
     {"limit", "5"},
     {"cursor", "whatever"}},
    f, err));
  CHECK(f.tenant_id == "t-1 é");
  CHECK(f.topic == "apexflow.jobs_created-2");
  CHECK(f.has_key);
  CHECK(f.key == "job 1/ü");
  CHECK(f.from == "2024-05-01T12:00:00Z");
  CHECK(f.to == "2024-05-01T22:00:00.5Z"); // in UTC
  CHECK(f.replays == replays_mode::only);
  CHECK(f.replay_of == 42);

  event_filter none;
  REQUIRE(api::parse_event_filter({}, none, err));
  CHECK(none.tenant_id.empty());
  CHECK_FALSE(none.has_key);
  CHECK(none.replays == replays_mode::include);
  CHECK(none.replay_of == 0);

  for (auto [text, mode] :
       {std::pair{"include", replays_mode::include},
        std::pair{"exclude", replays_mode::exclude},
        std::pair{"only", replays_mode::only}}) {
    event_filter g;
    REQUIRE(api::parse_event_filter({{"replays", text}}, g, err));
    CHECK(g.replays == mode);
  }
  // An empty key is a key (the empty one), not "no key".
  event_filter empty_key;
  REQUIRE(api::parse_event_filter({{"key", ""}}, empty_key, err));
  CHECK(empty_key.has_key);
  CHECK(empty_key.key.empty());
}

TEST_CASE("event filters: bad values and their codes", "[filters]") {
  CHECK(event_error({{"tenant_id", ""}}) == "bad_filter");
  CHECK(event_error({{"tenant_id", std::string(257, 't')}}) == "bad_filter");
  CHECK(event_error({{"tenant_id", std::string(256, 't')}}).empty());
  CHECK(event_error({{"tenant_id", "a\nb"}}) == "bad_filter");
  CHECK(event_error({{"tenant_id", "a\x7f"}}) == "bad_filter");
  CHECK(event_error({{"tenant_id", "\xff"}}) == "bad_filter");
  CHECK(event_error({{"topic", ""}}) == "bad_filter");
  CHECK(event_error({{"topic", "a b"}}) == "bad_filter");
  CHECK(event_error({{"topic", "a/b"}}) == "bad_filter");
  CHECK(event_error({{"topic", std::string(250, 'x')}}) == "bad_filter");
  CHECK(event_error({{"topic", std::string(249, 'x')}}).empty());
  CHECK(event_error({{"key", std::string(1025, 'k')}}) == "bad_filter");
  CHECK(event_error({{"key", std::string(1024, 'k')}}).empty());
  CHECK(event_error({{"key", "\xc3"}}) == "bad_filter");
  CHECK(event_error({{"replays", "all"}}) == "bad_filter");
  CHECK(event_error({{"replays", ""}}) == "bad_filter");
  CHECK(event_error({{"replay_of", "0"}}) == "bad_filter");
  CHECK(event_error({{"replay_of", "-3"}}) == "bad_filter");
  CHECK(event_error({{"replay_of", "x"}}) == "bad_filter");
  CHECK(event_error({{"replay_of", "7"}, {"replays", "exclude"}})
        == "bad_filter");
  CHECK(event_error({{"replay_of", "7"}, {"replays", "only"}}).empty());
  for (auto name : {"from", "to"}) {
    CHECK(event_error({{name, "2024-05-01"}}) == "bad_time");
    CHECK(event_error({{name, "2024-05-01 12:00:00Z"}}) == "bad_time");
    CHECK(event_error({{name, "2024-02-30T12:00:00Z"}}) == "bad_time");
    CHECK(event_error({{name, "2024-05-01T12:00:00"}}) == "bad_time");
    CHECK(event_error({{name, "yesterday"}}) == "bad_time");
    CHECK(event_error({{name, ""}}) == "bad_time");
    CHECK(event_error({{name, "2024-05-01T12:00:00-05:30"}}).empty());
  }
}

TEST_CASE("from later than to is bad_time, offsets counted", "[filters]") {
  CHECK(event_error({{"from", "2024-05-02T00:00:00Z"},
                     {"to", "2024-05-01T00:00:00Z"}})
        == "bad_time");
  CHECK(event_error({{"from", "2024-05-01T00:00:00.000001Z"},
                     {"to", "2024-05-01T00:00:00Z"}})
        == "bad_time");
  // Equal: an empty range, but not an error.
  CHECK(event_error({{"from", "2024-05-01T00:00:00Z"},
                     {"to", "2024-05-01T00:00:00.000Z"}})
        .empty());
  // 12:00+02:00 is 10:00Z, before 11:00Z.
  CHECK(event_error({{"from", "2024-05-01T12:00:00+02:00"},
                     {"to", "2024-05-01T11:00:00Z"}})
        .empty());
  // 10:00-02:00 is 12:00Z, after 11:00Z.
  CHECK(event_error({{"from", "2024-05-01T10:00:00-02:00"},
                     {"to", "2024-05-01T11:00:00Z"}})
        == "bad_time");
  // Across a month, a leap day and a year.
  CHECK(event_error({{"from", "2024-02-29T23:59:59Z"},
                     {"to", "2024-03-01T00:00:00Z"}})
        .empty());
  CHECK(event_error({{"from", "2025-01-01T00:00:00Z"},
                     {"to", "2024-12-31T23:59:59Z"}})
        == "bad_time");
  CHECK(dlq_error({{"from", "2024-05-02T00:00:00Z"},
                   {"to", "2024-05-01T00:00:00Z"}})
        == "bad_time");
}

// Found by the API fuzzer: RFC 3339 allows offsets up to +-23:59,
// PostgreSQL only up to +-15:59, so DELETE /dlq?before=...+23:40 was 400 and
// the find routes handed PostgreSQL a time it refuses. Times are turned into
// UTC before they reach SQL.
TEST_CASE("times in any RFC 3339 offset are taken, in UTC", "[filters]") {
  CHECK(api::rfc3339_utc("2024-05-01T12:00:00Z") == "2024-05-01T12:00:00Z");
  CHECK(api::rfc3339_utc("2024-05-01t12:00:00z") == "2024-05-01T12:00:00Z");
  CHECK(api::rfc3339_utc("3597-06-10T08:20:22.321+23:40")
        == "3597-06-09T08:40:22.321Z");
  CHECK(api::rfc3339_utc("2024-02-28T20:00:00-23:59")
        == "2024-02-29T19:59:00Z");
  CHECK(api::rfc3339_utc("2023-12-31T23:30:00.000001-00:45")
        == "2024-01-01T00:15:00.000001Z");
  // Outside 0001..9999 once in UTC, or not a time at all.
  CHECK(api::rfc3339_utc("0001-01-01T00:00:00+00:01").empty());
  CHECK(api::rfc3339_utc("9999-12-31T23:59:00-00:01").empty());
  CHECK(api::rfc3339_utc("yesterday").empty());
  event_filter f;
  filter_error err;
  REQUIRE(api::parse_event_filter({{"from", "2024-05-01T12:00:00+23:40"}}, f,
                                  err));
  CHECK(f.from == "2024-04-30T12:20:00Z");
  std::string status, before;
  REQUIRE(api::parse_dlq_purge({{"status", "resolved"},
                                {"before", "2024-05-01T00:00:00-16:00"}},
                               status, before, err));
  CHECK(before == "2024-05-01T16:00:00Z");
}

TEST_CASE("DLQ filters: every parameter, bad values", "[filters]") {
  dlq_filter f;
  filter_error err;
  REQUIRE(api::parse_dlq_filter({{"status", "retried"},
                                 {"error_class", "invalid_json"},
                                 {"topic", "crm"},
                                 {"tenant_id", "t1"},
                                 {"from", "2024-05-01T00:00:00Z"},
                                 {"to", "2024-06-01T00:00:00Z"},
                                 {"limit", "3"}},
                                f, err));
  CHECK(f.status == "retried");
  CHECK(f.error_class == "invalid_json");
  CHECK(f.topic == "crm");
  CHECK(f.tenant_id == "t1");
  CHECK(f.from == "2024-05-01T00:00:00Z");
  CHECK(f.to == "2024-06-01T00:00:00Z");
  for (auto s : {"pending", "retried", "resolved", "discarded"})
    CHECK(dlq_error({{"status", s}}).empty());
  CHECK(dlq_error({{"status", "done"}}) == "bad_filter");
  CHECK(dlq_error({{"status", "PENDING"}}) == "bad_filter");
  CHECK(dlq_error({{"error_class", "Invalid"}}) == "bad_filter");
  CHECK(dlq_error({{"error_class", "a1"}}) == "bad_filter");
  CHECK(dlq_error({{"error_class", std::string(65, 'a')}}) == "bad_filter");
  CHECK(dlq_error({{"error_class", std::string(64, 'a')}}).empty());
  CHECK(dlq_error({{"topic", "no spaces"}}) == "bad_filter");
  CHECK(dlq_error({{"tenant_id", "\t"}}) == "bad_filter");
  CHECK(dlq_error({{"from", "now"}}) == "bad_time");
  CHECK(dlq_error({{"to", "2024-13-01T00:00:00Z"}}) == "bad_time");
}

TEST_CASE("cursors: opaque, round trip, garbage refused", "[filters]") {
  for (int64_t id : {int64_t{1}, int64_t{42}, int64_t{255}, int64_t{256},
                     int64_t{1} << 40, int64_t{LLONG_MAX}}) {
    auto c = api::encode_cursor(id);
    CHECK(c.size() == 12);
    CHECK(c.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                              "wxyz0123456789-_")
          == std::string::npos);
    CHECK(c != std::to_string(id)); // not the bare id
    CHECK(api::decode_cursor(c) == id);
  }
  CHECK(api::encode_cursor(1) != api::encode_cursor(2));
  // Not ids of ours: 0 and negative ids do not decode.
  CHECK(api::decode_cursor(api::encode_cursor(0)) == 0);
  CHECK(api::decode_cursor(api::encode_cursor(-5)) == 0);
  CHECK(api::decode_cursor("") == 0);
  CHECK(api::decode_cursor("42") == 0);
  CHECK(api::decode_cursor("abc") == 0);
  CHECK(api::decode_cursor("!!!!!!!!!!!!") == 0);
  CHECK(api::decode_cursor("AAAAAAAAAAAA") == 0); // wrong tag byte
  auto good = api::encode_cursor(42);
  CHECK(api::decode_cursor(good + "A") == 0);
  CHECK(api::decode_cursor(good.substr(0, 11)) == 0);
  auto plus = good;
  plus[5] = '+'; // standard base64, not base64url
  CHECK(api::decode_cursor(plus) == 0);

  int64_t before = -1;
  filter_error err;
  CHECK(api::parse_cursor({{"limit", "5"}}, before, err));
  CHECK(before == 0);
  CHECK(api::parse_cursor({{"cursor", good}}, before, err));
  CHECK(before == 42);
  for (auto bad : {"", "42", "garbage", "AAAAAAAAAAAA"}) {
    filter_error e;
    CHECK_FALSE(api::parse_cursor({{"cursor", bad}}, before, e));
    CHECK(e.code == "bad_cursor");
    CHECK(before == 0);
  }
}

TEST_CASE("filter_in_scope: a named tenant must be in the scope",
          "[filters]") {
  std::string why;
  CHECK(api::filter_in_scope("", scope_of({"a"}), why));
  CHECK(api::filter_in_scope("", scope_of({}), why));
  CHECK(api::filter_in_scope("a", scope_of({"a", "b"}), why));
  CHECK(api::filter_in_scope("zz", every(false), why));
  CHECK(why.empty());
  CHECK_FALSE(api::filter_in_scope("c", scope_of({"a", "b"}), why));
  CHECK(why.find("'c'") != std::string::npos);
  std::string why2;
  CHECK_FALSE(api::filter_in_scope("a", scope_of({}, true), why2));
  CHECK_FALSE(why2.empty());
}

TEST_CASE("event_where: conditions and scope as SQL text", "[filters]") {
  using storage::event_where;
  CHECK(event_where({}, every(true), fake_quote) == "true");
  CHECK(event_where({}, every(false), fake_quote) == "true");
  CHECK(event_where({}, scope_of({}), fake_quote) == "false");
  CHECK(event_where({}, scope_of({}, true), fake_quote) == "false");
  CHECK(event_where({}, scope_of({"a", "b'c"}), fake_quote)
        == R"(tenant_id = ANY(<{"a","b'c"}>::text[]))");

  event_filter f;
  f.tenant_id = "t1";
  f.topic = "crm";
  f.has_key = true;
  f.key = "k";
  f.from = "2024-05-01T00:00:00Z";
  f.to = "2024-06-01T00:00:00Z";
  f.replays = replays_mode::only;
  f.replay_of = 9;
  f.ids = {3, 5};
  CHECK(event_where(f, scope_of({"t1"}), fake_quote)
        == R"(tenant_id = ANY(<{"t1"}>::text[]))"
           " AND tenant_id = <t1> AND topic = <crm>"
           " AND key = convert_to(<k>, 'UTF8')"
           " AND received_at >= <2024-05-01T00:00:00Z>::timestamptz"
           " AND received_at < <2024-06-01T00:00:00Z>::timestamptz"
           " AND replay_of IS NOT NULL AND replay_of = 9"
           " AND id = ANY('{3,5}'::bigint[])");
  event_filter ex;
  ex.replays = replays_mode::exclude;
  CHECK(event_where(ex, every(true), fake_quote) == "replay_of IS NULL");
  event_filter key_only;
  key_only.has_key = true; // the empty key
  CHECK(event_where(key_only, every(true), fake_quote)
        == "key = convert_to(<>, 'UTF8')");
  event_filter to_only;
  to_only.to = "2024-01-01T00:00:00Z";
  CHECK(event_where(to_only, every(true), fake_quote)
        == "received_at < <2024-01-01T00:00:00Z>::timestamptz");
}

TEST_CASE("dlq_where: rows without a tenant only for unknown_tenant",
          "[filters]") {
  using storage::dlq_where;
  CHECK(dlq_where({}, every(true), fake_quote) == "true");
  CHECK(dlq_where({}, every(false), fake_quote) == "tenant_id IS NOT NULL");
  CHECK(dlq_where({}, scope_of({}), fake_quote) == "false");
  CHECK(dlq_where({}, scope_of({}, true), fake_quote) == "tenant_id IS NULL");
  CHECK(dlq_where({}, scope_of({"a"}), fake_quote)
        == R"((tenant_id = ANY(<{"a"}>::text[])))");
  CHECK(dlq_where({}, scope_of({"a"}, true), fake_quote)
        == R"((tenant_id = ANY(<{"a"}>::text[]) OR tenant_id IS NULL))");
  dlq_filter f;
  f.status = "pending";
  f.error_class = "invalid_json";
  f.topic = "crm";
  f.tenant_id = "a";
  f.from = "2024-05-01T00:00:00Z";
  f.to = "2024-06-01T00:00:00Z";
  CHECK(dlq_where(f, every(true), fake_quote)
        == "status = <pending> AND error_class = <invalid_json>"
           " AND topic = <crm> AND tenant_id = <a>"
           " AND received_at >= <2024-05-01T00:00:00Z>::timestamptz"
           " AND received_at < <2024-06-01T00:00:00Z>::timestamptz");
}

TEST_CASE("dlq_where: ids of a bulk DLQ request", "[filters]") {
  using storage::dlq_where;
  dlq_filter f;
  f.status = "failed";
  CHECK(dlq_where(f, every(true), fake_quote, {3, 7})
        == "status = <failed> AND id = ANY('{3,7}'::bigint[])");
  CHECK(dlq_where({}, scope_of({"a"}), fake_quote, {5})
        == R"((tenant_id = ANY(<{"a"}>::text[])) AND )"
           R"(id = ANY('{5}'::bigint[]))");
  CHECK(dlq_where(f, every(true), fake_quote, {}) == "status = <failed>");
}
