// Pure parts of authentication and authorisation (api/auth.cpp) and the
// admin routes' input (api/admin_json.cpp).
#include "api/admin_json.hpp"
#include "api/auth.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace ces;
using namespace std::chrono_literals;
using scheme = auth::credentials::scheme;

TEST_CASE("Authorization headers", "[auth]") {
  auto b = auth::parse_authorization("Bearer abc.def");
  CHECK(b.kind == scheme::bearer);
  CHECK(b.secret == "abc.def");
  // Scheme names are case-insensitive; whitespace around the value is not
  // part of it.
  CHECK(auth::parse_authorization("  bearer   tok ").secret == "tok");
  CHECK(auth::parse_authorization("").kind == scheme::none);
  CHECK(auth::parse_authorization("   ").kind == scheme::none);
  // "ops:ces_x" in base64.
  auto basic = auth::parse_authorization("Basic b3BzOmNlc194");
  CHECK(basic.kind == scheme::basic);
  CHECK(basic.user == "ops");
  CHECK(basic.secret == "ces_x");
  // A password may hold ':' (only the first one splits).
  auto colon = auth::parse_authorization("Basic YTpiOmM="); // a:b:c
  CHECK(colon.user == "a");
  CHECK(colon.secret == "b:c");
  for (auto bad : {"Bearer", "Bearer a b", "Token abc", "Basic !!!!",
                   "Basic YWJj", /* "abc": no colon */ "Basic YQ=",
                   "Basic Y===", "Bearer a,b"})
    CHECK(auth::parse_authorization(bad).kind == scheme::malformed);
}

TEST_CASE("key and JWT shapes", "[auth]") {
  auto key = "ces_" + std::string(43, 'x');
  CHECK(auth::looks_like_key(key));
  CHECK_FALSE(auth::looks_like_key(key + "x"));
  CHECK_FALSE(auth::looks_like_key("ces_" + std::string(42, 'x') + "!"));
  CHECK_FALSE(auth::looks_like_key("key_" + std::string(43, 'x')));
  CHECK(auth::looks_like_jwt("eyJh.eyJi.c2ln"));
  CHECK(auth::looks_like_jwt("eyJh.eyJi.")); // alg none: empty signature
  CHECK_FALSE(auth::looks_like_jwt("eyJh.eyJi"));
  CHECK_FALSE(auth::looks_like_jwt("a.b.c.d"));
  CHECK_FALSE(auth::looks_like_jwt(key));
}

TEST_CASE("roles and routes", "[auth]") {
  auth::principal viewer{"v", "key", auth::role::viewer, {}};
  auth::principal op{"o", "key", auth::role::operator_, {}};
  auth::principal admin{"a", "key", auth::role::admin, {}};
  using rk = api::route_kind;
  CHECK(auth::may(viewer, rk::events_latest));
  CHECK(auth::may(viewer, rk::dlq_latest));
  CHECK(auth::may(viewer, rk::supervision));
  CHECK_FALSE(auth::may(viewer, rk::replay));
  CHECK(auth::may(op, rk::replay));
  CHECK_FALSE(auth::may(op, rk::keys_list));
  CHECK_FALSE(auth::may(op, rk::audit));
  CHECK_FALSE(auth::may(op, rk::debug_fail));
  for (auto k : {rk::keys_list, rk::key_create, rk::key_revoke, rk::audit,
                 rk::debug_fail, rk::replay, rk::events_latest})
    CHECK(auth::may(admin, k));
  // Only the probes and the API document need no role.
  for (auto& spec : api::route_table())
    CHECK((spec.min_role == auth::role::none)
          == (spec.kind == rk::health || spec.kind == rk::ready
              || spec.kind == rk::openapi));
  CHECK(auth::parse_role("operator") == auth::role::operator_);
  CHECK_FALSE(auth::parse_role("none"));
  CHECK_FALSE(auth::parse_role("Admin"));
}

TEST_CASE("tenant scopes", "[auth]") {
  tenant_scope s;
  s.tenants = {"a", "c"};
  CHECK(s.sees("a"));
  CHECK_FALSE(s.sees("b"));
  CHECK_FALSE(s.sees("")); // unknown tenant: admins only
  s.all = true;
  CHECK(s.sees("b"));
  CHECK_FALSE(s.sees(""));
  s.unknown_tenant = true;
  CHECK(s.sees(""));
}

TEST_CASE("token buckets", "[auth]") {
  auto t0 = auth::token_bucket::clock::now();
  auth::token_bucket b{2.0, 3.0, t0}; // 2/s, burst 3
  std::chrono::steady_clock::duration wait{};
  CHECK(b.take(1, t0, &wait));
  CHECK(b.take(2, t0, &wait));
  CHECK_FALSE(b.take(1, t0, &wait));
  CHECK(wait == std::chrono::duration_cast<decltype(wait)>(500ms));
  CHECK(b.take(1, t0 + 500ms, &wait));
  // Never above the burst.
  CHECK(b.available(t0 + 1h) == Approx(3.0));
  CHECK_FALSE(b.take(4, t0 + 1h, &wait));
  CHECK(wait == decltype(wait)::zero()); // never: more than the burst
}

TEST_CASE("keyed token buckets are bounded and independent", "[auth]") {
  auto t0 = auth::keyed_buckets::clock::now();
  auth::keyed_buckets kb{1.0, 2.0, 3};
  CHECK(kb.take("x", 2, t0));
  CHECK_FALSE(kb.take("x", 1, t0));
  CHECK_FALSE(kb.allowed("x", t0));
  CHECK(kb.allowed("y", t0));
  CHECK(kb.take("y", 1, t0));
  CHECK(kb.take("z", 1, t0));
  CHECK(kb.size() == 3);
  // A fourth key evicts a bucket: the one with the most tokens ("y" or
  // "z"), never the drained "x".
  CHECK(kb.take("w", 1, t0));
  CHECK(kb.size() == 3);
  CHECK_FALSE(kb.allowed("x", t0)); // still limited
}

TEST_CASE("POST /keys bodies", "[auth]") {
  storage::new_key k;
  std::string why;
  REQUIRE(api::parse_new_key(
    R"({"name":"ops","role":"operator","tenants":["t1","t2"],"expires":"90d"})",
    k, why));
  CHECK(k.name == "ops");
  CHECK(k.role == "operator");
  CHECK(k.tenants == std::vector<std::string>{"t1", "t2"});
  CHECK_FALSE(k.all_tenants);
  CHECK(k.expires_in_s == 90 * 86400);
  REQUIRE(api::parse_new_key(R"({"name":"a","role":"admin","tenants":"*"})",
                             k, why));
  CHECK(k.all_tenants);
  CHECK(k.expires_in_s == 0);
  for (auto bad : {"", "[]", "{", R"({"role":"admin","tenants":"*"})",
                   R"({"name":"a","tenants":"*"})",
                   R"({"name":"a","role":"admin"})",
                   R"({"name":"a","role":"admin","tenants":"t1"})",
                   R"({"name":"a","role":"admin","tenants":[1]})",
                   R"({"name":"a","role":"admin","tenants":"*","x":1})",
                   R"({"name":"a","role":"admin","tenants":"*","expires":"9y"})",
                   R"({"name":"a","role":"admin","tenants":"*","expires":5})"}) {
    why.clear();
    CHECK_FALSE(api::parse_new_key(bad, k, why));
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("times", "[auth]") {
  CHECK(api::looks_like_rfc3339("2026-11-29T12:00:00Z"));
  CHECK(api::looks_like_rfc3339("2026-11-29T12:00:00.123456+01:00"));
  for (auto bad : {"2026-11-29", "2026-11-29 12:00:00Z", "yesterday",
                   "2026-11-29T12:00:00", "2026-11-29T12:00:00.Z",
                   "2026-11-29T12:00:00Z; DROP TABLE"})
    CHECK_FALSE(api::looks_like_rfc3339(bad));
}

TEST_CASE("admin JSON never holds a hash, holds the key once", "[auth]") {
  storage::created_key c;
  c.key = "ces_" + std::string(43, 'k');
  c.row.name = "ops";
  c.row.role = "viewer";
  c.row.tenants = {"t1"};
  c.row.created_by = "cli:root";
  c.row.created_at = "2026-11-29T12:00:00.000000Z";
  auto created = nlohmann::json::parse(api::created_key_json(c));
  CHECK(created["key"] == c.key);
  CHECK(created["tenants"] == nlohmann::json::array({"t1"}));
  CHECK(created["expires_at"].is_null());
  auto listed = api::keys_json({c.row});
  CHECK(listed.find(c.key) == std::string::npos);
  CHECK(nlohmann::json::parse(listed)[0]["name"] == "ops");
  c.row.all_tenants = true;
  CHECK(nlohmann::json::parse(api::key_json(c.row))["tenants"] == "*");
}
