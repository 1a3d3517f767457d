// The pure parts of the keys subcommands (api/keys_cli.cpp): --expires and
// --tenants parsing, the JSON of a key, usage errors (which need no
// database).
#include "api/keys_cli.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using namespace ces::api;

TEST_CASE("parse_expiry: N followed by d, h, m or s, up to 10 years",
          "[keys_cli]") {
  CHECK(parse_expiry("90d") == 90 * 86400);
  CHECK(parse_expiry("12h") == 12 * 3600);
  CHECK(parse_expiry("30m") == 1800);
  CHECK(parse_expiry("1s") == 1);
  CHECK(parse_expiry("3653d") == int64_t{3653} * 86400);
  CHECK(parse_expiry("87672h") == int64_t{87672} * 3600);
  CHECK_FALSE(parse_expiry("3654d"));
  CHECK_FALSE(parse_expiry("315619201s"));
  for (auto bad : {"", "d", "0d", "-1d", "+1d", "1w", "90", "1.5h", " 1d",
                   "1d ", "1D", "99999999999d", "0000000000000001s"})
    CHECK_FALSE(parse_expiry(bad));
}

TEST_CASE("parse_tenant_list: '*' alone or a list", "[keys_cli]") {
  auto all = parse_tenant_list("*");
  REQUIRE(all);
  CHECK(all->all);
  CHECK(all->tenants.empty());
  auto two = parse_tenant_list("t1, t2 ,t3");
  REQUIRE(two);
  CHECK_FALSE(two->all);
  CHECK(two->tenants == std::vector<std::string>{"t1", "t2", "t3"});
  for (auto bad : {"", " ", "t1,", ",t1", "t1,,t2", "t1,*", "*,*", "a\tb",
                   "a\nb"})
    CHECK_FALSE(parse_tenant_list(bad));
}

TEST_CASE("key_row_json: every column, never a secret", "[keys_cli]") {
  ces::storage::api_key_row k;
  k.id = 7;
  k.name = "ops";
  k.role = "operator";
  k.tenants = {"t1", "t\"2"};
  k.created_at = "2024-05-01T12:00:00.000000Z";
  k.created_by = "cli:me";
  k.expires_at = "2024-08-01T12:00:00.000000Z";
  CHECK(key_row_json(k)
        == R"({"id":7,"name":"ops","role":"operator","tenants":["t1","t\"2"],)"
           R"("created_at":"2024-05-01T12:00:00.000000Z","created_by":)"
           R"("cli:me","expires_at":"2024-08-01T12:00:00.000000Z",)"
           R"("revoked_at":null,"last_used_at":null})");
  k.all_tenants = true;
  k.tenants.clear();
  CHECK(key_row_json(k).find(R"("tenants":"*")") != std::string::npos);
}

TEST_CASE("usage errors exit 2 without a database", "[keys_cli]") {
  auto run = [](std::vector<std::string> args, const std::string& url = "") {
    std::ostringstream out, err;
    auto rc = run_keys_cli(args, url, out, err);
    CHECK(out.str().empty());
    return std::pair{rc, err.str()};
  };
  // An unreachable URL: these must fail before connecting.
  const std::string url = "postgresql://u@127.0.0.1:1/db";
  CHECK(run({"create", "--name", "x", "--role", "viewer"}, url).first == 2);
  CHECK(run({"create", "--name", "x", "--role", "viewer", "--tenants", "*",
             "--expires", "1y"},
            url)
          .first
        == 2);
  CHECK(run({"create", "--name", "x", "--name", "y", "--role", "viewer",
             "--tenants", "*"},
            url)
          .second.find("given twice")
        != std::string::npos);
  CHECK(run({"create", "--name"}, url).second.find("missing value")
        != std::string::npos);
  CHECK(run({"revoke", "a", "b"}, url).first == 2);
  CHECK(run({"revoke", "no/such"}, url).first == 2);
  CHECK(run({"list", "extra"}, url).first == 2);
  // Valid arguments without a database: exit 2, the database named.
  auto none = run({"list"});
  CHECK(none.first == 2);
  CHECK(none.second.find("DATABASE_URL") != std::string::npos);
  // Help: out, exit 0; nothing at all: usage on err, exit 2.
  std::ostringstream out, err;
  CHECK(run_keys_cli({"create", "--help"}, "", out, err) == 0);
  CHECK(out.str().find("keys revoke NAME") != std::string::npos);
  CHECK(keys_cli_wants_help({}));
  CHECK(keys_cli_wants_help({"list", "-h"}));
  CHECK_FALSE(keys_cli_wants_help({"list"}));
  std::ostringstream out2, err2;
  CHECK(run_keys_cli({}, "", out2, err2) == 2);
  CHECK(err2.str().find("Usage:") != std::string::npos);
}
