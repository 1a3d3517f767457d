// api::route(): the table of malformed requests the issue asks for (paths,
// ids, limits, methods, oversized bodies, each with status and error code),
// and the valid requests.
#include "api/routes.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using ces::api::parse_positive_id;
using ces::api::percent_decode;
using ces::api::route;
using ces::api::route_kind;
using ces::api::route_options;

namespace {

struct bad_case {
  const char* method;
  std::string target;
  size_t body;
  int status;
  const char* code;
  route_kind kind; // metric label
  const char* allow;
};

const size_t kib64 = 64 * 1024;

} // namespace

TEST_CASE("malformed requests: status and error code", "[routes]") {
  using rk = route_kind;
  const bad_case cases[] = {
    // -- ids (GET /events/{id}) ------------------------------------------------
    {"GET", "/events/-1", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/0", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/abc", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/1.5", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/1180591620717411303424", 0, 400, "bad_id",
     rk::event_by_id, ""}, // 2^70
    {"GET", "/events/9223372036854775808", 0, 400, "bad_id", rk::event_by_id,
     ""}, // 2^63
    {"GET", "/events/99999999999999999999", 0, 400, "bad_id", rk::event_by_id,
     ""},
    {"GET", "/events/", 0, 400, "bad_id", rk::event_by_id, ""}, // empty id
    {"GET", "/events/+1", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/%201", 0, 400, "bad_id", rk::event_by_id, ""}, // " 1"
    {"GET", "/events/1%20", 0, 400, "bad_id", rk::event_by_id, ""}, // "1 "
    {"GET", "/events/0x10", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/1e3", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/%2D1", 0, 400, "bad_id", rk::event_by_id, ""}, // "-1"
    {"GET", "/events/1%00", 0, 400, "bad_id", rk::event_by_id, ""},
    {"GET", "/events/%EF%BC%91", 0, 400, "bad_id", rk::event_by_id,
     ""}, // fullwidth digit one
    // -- ids (POST /replay/{id}) -----------------------------------------------
    {"POST", "/replay/-1", 0, 400, "bad_id", rk::replay, ""},
    {"POST", "/replay/0", 0, 400, "bad_id", rk::replay, ""},
    {"POST", "/replay/abc", 0, 400, "bad_id", rk::replay, ""},
    {"POST", "/replay/1180591620717411303424", 0, 400, "bad_id", rk::replay,
     ""},
    {"POST", "/replay/", 0, 400, "bad_id", rk::replay, ""},
    {"POST", "/replay/1.5", 0, 400, "bad_id", rk::replay, ""},
    // -- limits ----------------------------------------------------------------
    {"GET", "/events/latest?limit=0", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=-5", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=100000", 0, 400, "bad_limit",
     rk::events_latest, ""},
    {"GET", "/events/latest?limit=1001", 0, 400, "bad_limit",
     rk::events_latest, ""},
    {"GET", "/events/latest?limit=x", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=+1", 0, 400, "bad_limit", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=1.0", 0, 400, "bad_limit",
     rk::events_latest, ""},
    {"GET", "/events/latest?limit=1180591620717411303424", 0, 400,
     "bad_limit", rk::events_latest, ""},
    {"GET", "/dlq?limit=0", 0, 400, "bad_limit", rk::dlq_latest, ""},
    {"GET", "/dlq?limit=-5", 0, 400, "bad_limit", rk::dlq_latest, ""},
    {"GET", "/dlq?limit=100000", 0, 400, "bad_limit", rk::dlq_latest, ""},
    {"GET", "/dlq?limit=x", 0, 400, "bad_limit", rk::dlq_latest, ""},
    // -- query strings ---------------------------------------------------------
    {"GET", "/events/latest?limt=5", 0, 400, "bad_query", rk::events_latest,
     ""},
    {"GET", "/events/latest?limit=5&limit=6", 0, 400, "bad_query",
     rk::events_latest, ""},
    {"GET", "/events/latest?limit=5&x=1", 0, 400, "bad_query",
     rk::events_latest, ""},
    {"GET", "/events/latest?limit=%zz", 0, 400, "bad_query",
     rk::events_latest, ""},
    {"GET", "/dlq?stat=pending", 0, 400, "bad_query", rk::dlq_latest, ""},
    {"GET", "/events/7?limit=5", 0, 400, "bad_query", rk::event_by_id, ""},
    {"GET", "/health?verbose=1", 0, 400, "bad_query", rk::health, ""},
    {"POST", "/replay/7?dry_run=1", 0, 400, "bad_query", rk::replay, ""},
    // -- paths -----------------------------------------------------------------
    {"GET", "/", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/nope", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/event", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/events/latest/", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/events/1/2", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/health/", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/dlq/", 0, 400, "bad_id", rk::dlq_by_id, ""}, // empty id
    {"GET", "/Health", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "//health", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/./health", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/events/../health", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/events%2Flatest", 0, 404, "not_found", rk::unmatched, ""},
    {"POST", "/replay", 0, 404, "not_found", rk::unmatched, ""},
    {"POST", "/replay/1/", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/metrics", 0, 404, "not_found", rk::unmatched, ""},
    {"GET", "/events/%", 0, 400, "bad_path", rk::unmatched, ""},
    {"GET", "/events/%4", 0, 400, "bad_path", rk::unmatched, ""},
    {"GET", "/events/%zz", 0, 400, "bad_path", rk::unmatched, ""},
    {"GET", "*", 0, 400, "bad_path", rk::unmatched, ""},
    {"GET", "http://host/health", 0, 400, "bad_path", rk::unmatched, ""},
    {"GET", "", 0, 400, "bad_path", rk::unmatched, ""},
    // -- methods ---------------------------------------------------------------
    {"POST", "/health", 0, 405, "method_not_allowed", rk::health, "GET, HEAD"},
    {"POST", "/ready", 0, 405, "method_not_allowed", rk::ready, "GET, HEAD"},
    {"POST", "/events/latest", 0, 405, "method_not_allowed",
     rk::events_latest, "GET, HEAD"},
    {"DELETE", "/events/7", 0, 405, "method_not_allowed", rk::event_by_id,
     "GET, HEAD"},
    {"PUT", "/dlq", 0, 405, "method_not_allowed", rk::dlq_latest,
     "GET, HEAD, DELETE"},
    {"GET", "/replay/7", 0, 405, "method_not_allowed", rk::replay, "POST"},
    {"HEAD", "/replay/7", 0, 405, "method_not_allowed", rk::replay, "POST"},
    {"PUT", "/replay/7", 0, 405, "method_not_allowed", rk::replay, "POST"},
    {"OPTIONS", "/replay/7", 0, 405, "method_not_allowed", rk::replay, "POST"},
    {"get", "/health", 0, 405, "method_not_allowed", rk::health, "GET, HEAD"},
    // 405 comes before the id check: the method is wrong whatever the id.
    {"GET", "/replay/abc", 0, 405, "method_not_allowed", rk::replay, "POST"},
    {"DELETE", "/events/abc", 0, 405, "method_not_allowed", rk::event_by_id,
     "GET, HEAD"},
    // -- bodies ----------------------------------------------------------------
    {"POST", "/replay/7", kib64 + 1, 413, "body_too_large", rk::replay, ""},
    {"GET", "/events/latest", kib64 + 1, 413, "body_too_large",
     rk::events_latest, ""},
    {"GET", "/health", 10 * 1024 * 1024, 413, "body_too_large", rk::health,
     ""},
    // 413 first, whatever else is wrong.
    {"POST", "/nope", kib64 + 1, 413, "body_too_large", rk::unmatched, ""},
    {"POST", "/replay/abc", kib64 + 1, 413, "body_too_large", rk::replay, ""},
    {"GET", "/replay/7", kib64 + 1, 413, "body_too_large", rk::replay, ""},
  };
  for (auto& c : cases) {
    INFO(c.method << " " << c.target << " body=" << c.body);
    auto r = route(c.method, c.target, c.body);
    CHECK_FALSE(r.ok());
    CHECK(r.error.status == c.status);
    CHECK(r.error.code == c.code);
    CHECK(r.kind == c.kind);
    CHECK(r.error.allow == c.allow);
    CHECK_FALSE(r.error.message.empty());
  }
}

TEST_CASE("valid requests", "[routes]") {
  SECTION("health and ready") {
    auto h = route("GET", "/health", 0);
    REQUIRE(h.ok());
    CHECK(h.kind == route_kind::health);
    CHECK(h.request.kind == route_kind::health);
    CHECK_FALSE(h.request.head);
    auto r = route("GET", "/ready", 0);
    REQUIRE(r.ok());
    CHECK(r.request.kind == route_kind::ready);
  }
  SECTION("limits: default, bounds, leading zeros, empty query pieces") {
    auto d = route("GET", "/events/latest", 0);
    REQUIRE(d.ok());
    CHECK(d.request.kind == route_kind::events_latest);
    CHECK(d.request.limit == 50);
    CHECK(route("GET", "/events/latest?", 0).request.limit == 50);
    CHECK(route("GET", "/events/latest?limit=1", 0).request.limit == 1);
    CHECK(route("GET", "/events/latest?limit=1000", 0).request.limit == 1000);
    CHECK(route("GET", "/events/latest?limit=007", 0).request.limit == 7);
    CHECK(route("GET", "/events/latest?&limit=3&", 0).request.limit == 3);
    CHECK(route("GET", "/events/latest?limit=%31%30", 0).request.limit == 10);
    CHECK(route("GET", "/events/latest?%6Cimit=4", 0).request.limit == 4);
    auto q = route("GET", "/dlq?limit=20", 0);
    REQUIRE(q.ok());
    CHECK(q.request.kind == route_kind::dlq_latest);
    CHECK(q.request.limit == 20);
    CHECK(route("GET", "/dlq", 0).request.limit == 50);
  }
  SECTION("ids: max int64, leading zeros, percent-encoded digits") {
    auto e = route("GET", "/events/42", 0);
    REQUIRE(e.ok());
    CHECK(e.request.kind == route_kind::event_by_id);
    CHECK(e.request.id == 42);
    CHECK(e.request.limit == 0);
    CHECK(route("GET", "/events/9223372036854775807", 0).request.id
          == 9223372036854775807LL);
    CHECK(route("GET", "/events/0042", 0).request.id == 42);
    CHECK(route("GET", "/events/%31%32", 0).request.id == 12);
    auto p = route("POST", "/replay/7", 0);
    REQUIRE(p.ok());
    CHECK(p.request.kind == route_kind::replay);
    CHECK(p.request.id == 7);
  }
  SECTION("a body on GET is ignored; bodies up to the limit pass") {
    CHECK(route("GET", "/events/latest", 100).ok());
    CHECK(route("GET", "/events/latest", kib64).ok());
    CHECK(route("POST", "/replay/7", kib64).ok());
  }
  SECTION("HEAD is GET without a body") {
    auto h = route("HEAD", "/events/latest?limit=3", 0);
    REQUIRE(h.ok());
    CHECK(h.request.head);
    CHECK(h.request.kind == route_kind::events_latest);
    CHECK(h.request.limit == 3);
    CHECK(route("HEAD", "/health", 0).request.head);
  }
  SECTION("a fragment is ignored") {
    auto f = route("GET", "/events/latest?limit=2#top", 0);
    REQUIRE(f.ok());
    CHECK(f.request.limit == 2);
    CHECK(route("GET", "/health#x", 0).ok());
  }
}

TEST_CASE("route options change the limits", "[routes]") {
  route_options o;
  o.max_body_bytes = 10;
  o.default_limit = 5;
  o.max_limit = 20;
  CHECK(route("GET", "/dlq", 0, o).request.limit == 5);
  CHECK(route("GET", "/dlq?limit=20", 0, o).ok());
  CHECK(route("GET", "/dlq?limit=21", 0, o).error.code == "bad_limit");
  CHECK(route("POST", "/replay/1", 10, o).ok());
  auto big = route("POST", "/replay/1", 11, o);
  CHECK(big.error.status == 413);
  CHECK(big.error.message.find("10 bytes") != std::string::npos);
}

TEST_CASE("route labels are a small fixed set", "[routes]") {
  using ces::api::to_string;
  CHECK(std::string(to_string(route_kind::unmatched)) == "unmatched");
  CHECK(std::string(to_string(route_kind::health)) == "health");
  CHECK(std::string(to_string(route_kind::ready)) == "ready");
  CHECK(std::string(to_string(route_kind::events_latest)) == "events_latest");
  CHECK(std::string(to_string(route_kind::event_by_id)) == "event_by_id");
  CHECK(std::string(to_string(route_kind::replay)) == "replay");
  CHECK(std::string(to_string(route_kind::dlq_latest)) == "dlq_latest");
}

TEST_CASE("error messages help", "[routes]") {
  auto slash = route("GET", "/events/latest/", 0);
  CHECK(slash.error.message.find("did you mean /events/latest?")
        != std::string::npos);
  auto id = route("GET", "/events/abc", 0);
  CHECK(id.error.message.find("'abc'") != std::string::npos);
  // Echoed input is cut.
  auto longid = route("GET", "/events/" + std::string(5000, 'a'), 0);
  CHECK(longid.error.message.size() < 300);
  // The answer lists the routes (about 550 bytes), never the 5000 bytes.
  auto longpath = route("GET", "/" + std::string(5000, 'a'), 0);
  CHECK(longpath.error.message.size() < 900);
}

TEST_CASE("parse_positive_id and percent_decode", "[routes]") {
  CHECK(parse_positive_id("1") == 1);
  CHECK(parse_positive_id("9223372036854775807") == 9223372036854775807LL);
  CHECK(parse_positive_id("9223372036854775808") == 0);
  CHECK(parse_positive_id("18446744073709551616") == 0);
  CHECK(parse_positive_id("") == 0);
  CHECK(parse_positive_id("0") == 0);
  CHECK(parse_positive_id("-1") == 0);
  CHECK(parse_positive_id(" 1") == 0);
  std::string out;
  CHECK(percent_decode("a%20b+c", out));
  CHECK(out == "a b+c");
  CHECK(percent_decode("a%20b+c", out, true));
  CHECK(out == "a b c");
  CHECK(percent_decode("%00", out));
  CHECK(out == std::string(1, '\0'));
  CHECK_FALSE(percent_decode("%", out));
  CHECK_FALSE(percent_decode("%1", out));
  CHECK_FALSE(percent_decode("%g1", out));
  CHECK_FALSE(percent_decode("ab%", out));
}

TEST_CASE("supervision and fault-injection routes", "[routes]") {
  auto sv = route("GET", "/supervision", 0);
  REQUIRE(sv.ok());
  CHECK(sv.request.kind == route_kind::supervision);
  CHECK(route("POST", "/supervision", 0).error.status == 405);
  // Without fault injection the debug route does not exist.
  auto off = route("POST", "/debug/fail/persister", 0);
  CHECK(off.error.status == 404);
  CHECK(off.error.code == "not_found");
  route_options on;
  on.fault_injection = true;
  auto fail = route("POST", "/debug/fail/persister-1", 0, on);
  REQUIRE(fail.ok());
  CHECK(fail.request.kind == route_kind::debug_fail);
  CHECK(fail.request.name == "persister-1");
  CHECK(route("POST", "/debug/fail/No%20Body", 0, on).error.code
        == "not_found");
  CHECK(route("GET", "/debug/fail/consumer", 0, on).error.status == 405);
  CHECK(std::string(ces::api::to_string(route_kind::debug_fail))
        == "debug_fail");
}

TEST_CASE("admin routes: key names and free query parameters", "[routes]") {
  auto del = route("DELETE", "/keys/ops.team-1_x", 0);
  REQUIRE(del.ok());
  CHECK(del.request.kind == route_kind::key_revoke);
  CHECK(del.request.name == "ops.team-1_x");
  CHECK(route("DELETE", "/keys/a%20b", 0).error.code == "not_found");
  CHECK(route("DELETE", "/keys/" + std::string(65, 'a'), 0).error.code
        == "not_found");
  auto keys = route("PUT", "/keys", 0);
  CHECK(keys.error.status == 405);
  CHECK(keys.error.allow == "GET, HEAD, POST");
  CHECK(route("POST", "/keys", 0).request.kind == route_kind::key_create);
  auto audit = route("GET", "/audit?action=replay&from=2026-11-29T00%3A00%3A00Z"
                            "&limit=5&cursor=9",
                     0);
  REQUIRE(audit.ok());
  CHECK(audit.request.limit == 5);
  REQUIRE(audit.request.param("action") != nullptr);
  CHECK(*audit.request.param("action") == "replay");
  CHECK(*audit.request.param("from") == "2026-11-29T00:00:00Z");
  CHECK(*audit.request.param("cursor") == "9");
  CHECK(audit.request.param("to") == nullptr);
  CHECK(route("GET", "/audit?action=a&action=b", 0).error.code == "bad_query");
  auto typo = route("GET", "/audit?actor=x", 0);
  CHECK(typo.error.code == "bad_query");
  CHECK(typo.error.message.find("accepted: action, principal") 
        != std::string::npos);
}

TEST_CASE("the route table: one entry per route_kind, and it drives routing",
          "[routes]") {
  using ces::api::route_table;
  auto& table = route_table();
  // Every route_kind but `unmatched` has exactly one entry.
  auto last = static_cast<int>(route_kind::dlq_purge);
  for (int k = 1; k <= last; ++k) {
    auto kind = static_cast<route_kind>(k);
    INFO(ces::api::to_string(kind));
    CHECK(std::count_if(table.begin(), table.end(),
                        [&](auto& s) { return s.kind == kind; })
          == 1);
  }
  CHECK(table.size() == static_cast<size_t>(last));
  // Method + pattern are unique.
  for (size_t i = 0; i < table.size(); ++i)
    for (size_t j = i + 1; j < table.size(); ++j)
      CHECK_FALSE((table[i].method == table[j].method
                   && table[i].pattern == table[j].pattern));
  route_options all;
  all.fault_injection = true;
  for (auto& spec : table) {
    // Fill the pattern's parameters with valid values.
    std::string target;
    for (size_t pos = 0; pos < spec.pattern.size();) {
      auto open = spec.pattern.find('{', pos);
      if (open == std::string_view::npos) {
        target += spec.pattern.substr(pos);
        break;
      }
      auto close = spec.pattern.find('}', open);
      target += spec.pattern.substr(pos, open - pos);
      auto name = spec.pattern.substr(open + 1, close - open - 1);
      target += name == "id" ? "42" : "persister-0"; // also a key name
      pos = close + 1;
    }
    for (size_t i = 0; i < spec.query.size(); ++i)
      target += (i == 0 ? "?" : "&") + std::string(spec.query[i]) + "=7";
    INFO(spec.method << " " << target);
    auto r = route(spec.method, target, 0, all);
    REQUIRE(r.ok());
    CHECK(r.request.kind == spec.kind);
    for (auto name : spec.path_params()) {
      if (name == "id")
        CHECK(r.request.id == 42);
      else
        CHECK(r.request.name == "persister-0");
    }
    if (std::count(spec.query.begin(), spec.query.end(), "limit") != 0)
      CHECK(r.request.limit == 7);
    // Any other method is 405 with the table's method in Allow.
    auto other = route("PATCH", target, 0, all);
    CHECK(other.error.status == 405);
    CHECK(other.error.allow.find(spec.method) != std::string::npos);
    // An unknown query parameter is refused.
    auto typo = route(spec.method,
                      target + (spec.query.empty() ? "?" : "&") + "x=1", 0,
                      all);
    CHECK(typo.error.code == "bad_query");
    // Fault-injection routes exist only when enabled.
    if (spec.fault_injection_only)
      CHECK(route(spec.method, target, 0, {}).error.status == 404);
  }
  auto by_id = std::find_if(table.begin(), table.end(), [](auto& s) {
    return s.kind == route_kind::event_by_id;
  });
  REQUIRE(by_id != table.end());
  CHECK(by_id->path_params() == std::vector<std::string_view>{"id"});
}
