// storage::auth_store against a throwaway PostgreSQL: keys created, listed,
// found, revoked and expired; only the hash stored; each change committed
// with its audit row; name conflicts; the ADMIN_TOKEN_FILE bootstrap; audit
// pages with filters and keyset paging; audit_log append-only.
#include "storage/auth_store.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <regex>
#include <thread>

using namespace ces;
using namespace ces::test;
using storage::auth_store;
using storage::key_conflict;
using storage::new_key;

namespace {

const std::regex key_shape{"^ces_[A-Za-z0-9_-]{43}$"};
const std::regex rfc3339_us{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$)"};

audit_entry cli_audit() {
  audit_entry a;
  a.who.principal = "cli:tester";
  a.who.role = "admin";
  a.who.scope.all = true;
  return a;
}

new_key key_of(const std::string& name, const std::string& role,
               std::vector<std::string> tenants) {
  new_key k;
  k.name = name;
  k.role = role;
  if (tenants == std::vector<std::string>{"*"})
    k.all_tenants = true;
  else
    k.tenants = std::move(tenants);
  k.created_by = "cli:tester";
  return k;
}

long audit_rows(const std::string& url, const std::string& where = "true") {
  return count(url, "SELECT count(*) FROM audit_log WHERE " + where);
}

} // namespace

TEST_CASE("generate_key and key_hash", "[auth_store]") {
  auto a = storage::generate_key();
  auto b = storage::generate_key();
  CHECK(std::regex_match(a, key_shape));
  CHECK(std::regex_match(b, key_shape));
  CHECK(a != b);
  auto h = storage::key_hash(a);
  CHECK(h.size() == 32);
  CHECK(h == storage::key_hash(a));
  CHECK(h != storage::key_hash(b));
  // SHA-256("abc"), FIPS 180-2.
  auto abc = storage::key_hash("abc");
  CHECK(static_cast<unsigned char>(abc[0]) == 0xba);
  CHECK(static_cast<unsigned char>(abc[31]) == 0xad);
}

TEST_CASE("create, list, find, revoke; only the hash is stored",
          "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  CHECK_FALSE(store.connected());
  auto c = store.create_key(key_of("ops", "operator", {"t2", "t1", "t2"}),
                            cli_audit());
  CHECK(store.connected());
  CHECK(std::regex_match(c.key, key_shape));
  CHECK(c.row.id > 0);
  CHECK(c.row.name == "ops");
  CHECK(c.row.role == "operator");
  CHECK_FALSE(c.row.all_tenants);
  CHECK(c.row.tenants == std::vector<std::string>{"t1", "t2"});
  CHECK(std::regex_match(c.row.created_at, rfc3339_us));
  CHECK(c.row.created_by == "cli:tester");
  CHECK(c.row.expires_at.empty());
  CHECK(c.row.revoked_at.empty());
  CHECK(c.row.last_used_at.empty());

  // The key's text is nowhere in the table; its SHA-256 is.
  auto everything = scalar(url, "SELECT string_agg(k::text, '|') FROM "
                                "api_keys k");
  CHECK(everything.find(c.key) == std::string::npos);
  CHECK(everything.find(c.key.substr(4)) == std::string::npos);
  CHECK(count(url, "SELECT count(*) FROM api_keys WHERE key_hash = "
                   "sha256('" + c.key + "'::bytea)") == 1);
  // Nor in the audit row, which has the parameters.
  auto audit_text = scalar(url, "SELECT string_agg(a::text, '|') FROM "
                                "audit_log a");
  CHECK(audit_text.find(c.key.substr(4)) == std::string::npos);
  REQUIRE(audit_rows(url) == 1);
  CHECK(scalar(url, "SELECT action || ' ' || target || ' ' || outcome || ' '"
                    " || principal FROM audit_log")
        == "key.create key/ops ok cli:tester");
  CHECK(scalar(url, "SELECT parameters::text FROM audit_log")
        == R"({"role": "operator", "tenants": ["t1", "t2"], )"
           R"("expires_at": null})");
  CHECK(scalar(url, "SELECT status IS NULL FROM audit_log") == "t");

  // An admin key has all tenants: a tenant-limited admin could make itself
  // an all-tenant key.
  CHECK_THROWS_AS(store.create_key(key_of("scoped-admin", "admin", {"t1"}),
                                   cli_audit()),
                  std::invalid_argument);
  auto all = store.create_key(key_of("all", "admin", {"*"}), cli_audit());
  CHECK(all.row.all_tenants);
  CHECK(all.row.tenants.empty());
  CHECK(scalar(url, "SELECT parameters->>'tenants' FROM audit_log "
                    "WHERE target = 'key/all'") == "*");

  auto found = store.find_active_key(storage::key_hash(c.key));
  REQUIRE(found);
  CHECK(found->id == c.row.id);
  CHECK(found->tenants == c.row.tenants);
  CHECK_FALSE(store.find_active_key(storage::key_hash("ces_nope")));
  CHECK_FALSE(store.find_active_key("short"));

  auto listed = store.list_keys(false);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].name == "all"); // by name
  CHECK(listed[1].name == "ops");

  store.touch_last_used({c.row.id, all.row.id});
  store.touch_last_used({});
  for (auto& k : store.list_keys(false))
    CHECK(std::regex_match(k.last_used_at, rfc3339_us));

  CHECK(store.revoke_key("ops", cli_audit()));
  CHECK(audit_rows(url, "action = 'key.revoke' AND target = 'key/ops'"
                        " AND outcome = 'ok'") == 1);
  CHECK_FALSE(store.find_active_key(storage::key_hash(c.key)));
  CHECK_FALSE(store.revoke_key("ops", cli_audit())); // none active
  CHECK_FALSE(store.revoke_key("ghost", cli_audit()));
  CHECK(audit_rows(url, "action = 'key.revoke'") == 1);
  auto active = store.list_keys(false);
  REQUIRE(active.size() == 1);
  CHECK(active[0].name == "all");
  auto every = store.list_keys(true);
  REQUIRE(every.size() == 2);
  CHECK(std::regex_match(every[1].revoked_at, rfc3339_us));

  // The name is free again once revoked.
  auto again = store.create_key(key_of("ops", "viewer", {"t1"}), cli_audit());
  CHECK(again.row.id != c.row.id);
  CHECK(store.find_active_key(storage::key_hash(again.key))->role == "viewer");
}

TEST_CASE("expired keys are not found", "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  auto k = key_of("short", "viewer", {"t1"});
  k.expires_in_s = 3600;
  auto c = store.create_key(k, cli_audit());
  CHECK(std::regex_match(c.row.expires_at, rfc3339_us));
  CHECK(scalar(url, "SELECT parameters->>'expires_at' FROM audit_log")
        == c.row.expires_at);
  CHECK(store.find_active_key(storage::key_hash(c.key)));
  count(url, "WITH u AS (UPDATE api_keys SET expires_at = now() - interval "
             "'1 second' RETURNING 1) SELECT count(*) FROM u");
  CHECK_FALSE(store.find_active_key(storage::key_hash(c.key)));
  CHECK(store.list_keys(false).size() == 1); // listed, with its expiry
}

TEST_CASE("invalid keys and name conflicts write nothing", "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  auto bad = [&](new_key k) {
    CHECK_THROWS_AS(store.create_key(k, cli_audit()), std::invalid_argument);
  };
  bad(key_of("", "viewer", {"t1"}));
  bad(key_of("has space", "viewer", {"t1"}));
  bad(key_of(std::string(65, 'a'), "viewer", {"t1"}));
  bad(key_of("x", "root", {"t1"}));
  bad(key_of("x", "viewer", {}));
  bad(key_of("x", "viewer", {""}));
  bad(key_of("x", "viewer", {"a,b"}));
  bad(key_of("x", "viewer", {"a\nb"}));
  bad(key_of("x", "viewer", {"t1", "*"}));
  auto neg = key_of("x", "viewer", {"t1"});
  neg.expires_in_s = -1;
  bad(neg);
  auto both = key_of("x", "viewer", {"t1"});
  both.all_tenants = true;
  bad(both);
  try {
    store.create_key(key_of("x", "root", {"t1"}), cli_audit());
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("role") != std::string::npos);
  }
  CHECK(count(url, "SELECT count(*) FROM api_keys") == 0);
  CHECK(audit_rows(url) == 0);

  store.create_key(key_of("dup", "viewer", {"t1"}), cli_audit());
  CHECK_THROWS_AS(store.create_key(key_of("dup", "admin", {"*"}), cli_audit()),
                  key_conflict);
  // The failed create wrote neither a key nor an audit row; the store still
  // works.
  CHECK(count(url, "SELECT count(*) FROM api_keys") == 1);
  CHECK(audit_rows(url) == 1);
  CHECK(store.list_keys(false).size() == 1);
}

TEST_CASE("a failed audit insert rolls the key back", "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  auto audit = cli_audit();
  audit.parameters = "not json"; // the audit INSERT fails after the key's
  CHECK_THROWS_AS(store.create_key(key_of("a", "viewer", {"t1"}), audit),
                  storage::infra_error);
  CHECK(count(url, "SELECT count(*) FROM api_keys") == 0);
  CHECK(audit_rows(url) == 0);
  // Reconnects after the failure.
  CHECK(store.create_key(key_of("a", "viewer", {"t1"}), cli_audit()).row.id
        > 0);
}

TEST_CASE("bootstrap key: registered, unchanged, replaced, revoked",
          "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  audit_entry start;
  start.who.principal = "admin-token-file";
  auto k1 = storage::generate_key();
  CHECK(store.register_bootstrap(k1, start) == "registered");
  auto row = store.find_active_key(storage::key_hash(k1));
  REQUIRE(row);
  CHECK(row->name == "bootstrap");
  CHECK(row->role == "admin");
  CHECK(row->all_tenants);
  CHECK(row->created_by == "admin-token-file");
  CHECK(audit_rows(url, "action = 'key.bootstrap'") == 1);

  CHECK(store.register_bootstrap(k1, start) == "unchanged");
  CHECK(audit_rows(url) == 1);
  CHECK(count(url, "SELECT count(*) FROM api_keys") == 1);

  auto k2 = storage::generate_key();
  CHECK(store.register_bootstrap(k2, start) == "replaced");
  CHECK_FALSE(store.find_active_key(storage::key_hash(k1)));
  CHECK(store.find_active_key(storage::key_hash(k2)));
  CHECK(audit_rows(url, "action = 'key.bootstrap'") == 2);
  CHECK(scalar(url, "SELECT parameters->>'bootstrap' FROM audit_log "
                    "ORDER BY id DESC LIMIT 1") == "replaced");

  // The old key, revoked, is never revived.
  CHECK(store.register_bootstrap(k1, start) == "revoked");
  CHECK_FALSE(store.find_active_key(storage::key_hash(k1)));
  CHECK(audit_rows(url) == 2);

  try {
    store.register_bootstrap("ces_tooshort_secret", start);
    FAIL("accepted a malformed key");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("tooshort") == std::string::npos);
  }
  CHECK_THROWS_AS(store.register_bootstrap("", start), std::invalid_argument);
}

TEST_CASE("bootstrap from instances starting at once", "[auth_store]") {
  auto url = migrated_db();
  auto key = storage::generate_key();
  std::vector<std::string> outcomes(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < outcomes.size(); ++i)
    threads.emplace_back([&, i] {
      auth_store s{url};
      audit_entry a;
      a.who.principal = "admin-token-file";
      try {
        outcomes[i] = s.register_bootstrap(key, a);
      } catch (const std::exception& e) {
        outcomes[i] = std::string("error: ") + e.what();
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(std::count(outcomes.begin(), outcomes.end(), "registered") == 1);
  CHECK(std::count(outcomes.begin(), outcomes.end(), "unchanged") == 3);
  CHECK(count(url, "SELECT count(*) FROM api_keys") == 1);
  CHECK(audit_rows(url) == 1);
}

TEST_CASE("write_audit and audit_page: filters and keyset paging",
          "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  std::vector<audit_entry> rows;
  for (int i = 0; i < 25; ++i) {
    audit_entry a;
    a.who.principal = i % 2 == 0 ? "alice" : "bob";
    a.who.role = "operator";
    a.who.scope.tenants = {"t1", "t\"2"};
    a.who.request_id = "req-" + std::to_string(i);
    a.who.client_addr = "10.0.0.1";
    a.action = i % 5 == 0 ? "replay" : "auth";
    a.target = "event/" + std::to_string(i);
    a.outcome = i % 5 == 0 ? "ok" : "refused";
    a.status = i % 5 == 0 ? 200 : 403;
    if (i % 5 == 0)
      a.counts = R"({"events": 1})";
    rows.push_back(a);
  }
  store.write_audit(rows);
  store.write_audit({});
  CHECK(audit_rows(url) == 25);

  // Newest first, in pages of 10.
  auto p1 = store.audit_page({}, 10);
  REQUIRE(p1.size() == 10);
  CHECK(p1[0].request_id == "req-24");
  auto p2 = store.audit_page({}, 10, p1.back().id);
  REQUIRE(p2.size() == 10);
  CHECK(p2[0].id < p1.back().id);
  CHECK(p2[0].request_id == "req-14");
  auto p3 = store.audit_page({}, 10, p2.back().id);
  CHECK(p3.size() == 5);
  CHECK(p3.back().request_id == "req-0");
  CHECK(store.audit_page({}, 10, p3.back().id).empty());

  auto& r = p3.back();
  CHECK(std::regex_match(r.at, rfc3339_us));
  CHECK(r.principal == "alice");
  CHECK(r.role == "operator");
  CHECK_FALSE(r.all_tenants);
  CHECK(r.tenants == std::vector<std::string>{"t1", "t\"2"});
  CHECK(r.action == "replay");
  CHECK(r.target == "event/0");
  CHECK(r.parameters == "{}");
  CHECK(r.outcome == "ok");
  CHECK(r.status == 200);
  CHECK(r.counts == R"({"events": 1})");
  CHECK(r.client_addr == "10.0.0.1");
  CHECK(p3[0].counts.empty());

  {
    storage::audit_filter f;
    f.action = "replay";
    auto replays = store.audit_page(f, 100);
    CHECK(replays.size() == 5);
    f.principal = "bob";
    auto bobs = store.audit_page(f, 100);
    REQUIRE(bobs.size() == 2); // i = 5, 15
    CHECK(bobs[0].request_id == "req-15");
    f = {};
    f.principal = "bob";
    CHECK(store.audit_page(f, 100).size() == 12);
  }
  {
    storage::audit_filter f;
    f.from = "2000-01-01T00:00:00Z";
    CHECK(store.audit_page(f, 100).size() == 25);
    f.to = "2000-01-02T00:00:00+02:00";
    CHECK(store.audit_page(f, 100).empty());
    f = {};
    f.from = "2999-01-01T00:00:00Z";
    CHECK(store.audit_page(f, 100).empty());
    // `at` is clock_timestamp(): rows of one transaction differ; a bound
    // between two rows splits them.
    auto at5 = scalar(url, "SELECT at FROM audit_log WHERE request_id ="
                           " 'req-5'");
    f = {};
    f.to = at5;
    CHECK(store.audit_page(f, 100).size() == 5);
    f = {};
    f.from = at5;
    CHECK(store.audit_page(f, 100).size() == 20);
  }
  {
    storage::audit_filter f;
    f.from = "yesterday-ish";
    try {
      store.audit_page(f, 10);
      FAIL("accepted a bad timestamp");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find("from") != std::string::npos);
    }
    f = {};
    f.to = "2024-13-45T00:00:00Z";
    CHECK_THROWS_AS(store.audit_page(f, 10), std::invalid_argument);
    CHECK_THROWS_AS(store.audit_page({}, 0), std::invalid_argument);
    CHECK_THROWS_AS(store.audit_page({}, 1001), std::invalid_argument);
    CHECK_THROWS_AS(store.audit_page({}, 10, -1), std::invalid_argument);
    CHECK(store.audit_page({}, 1000).size() == 25); // still connected, works
  }
}

TEST_CASE("audit_log is append-only", "[auth_store]") {
  auto url = migrated_db();
  auth_store store{url};
  store.create_key(key_of("k", "viewer", {"t1"}), cli_audit());
  REQUIRE(audit_rows(url) == 1);
  for (auto sql : {"UPDATE audit_log SET outcome = 'forged'",
                   "DELETE FROM audit_log", "TRUNCATE audit_log"}) {
    CAPTURE(sql);
    try {
      scalar(url, sql);
      FAIL("audit_log accepted " << sql);
    } catch (const pqxx::sql_error& e) {
      // SQLSTATE 42501 (libpqxx 6.4 leaves sqlstate() empty here).
      CHECK(dynamic_cast<const pqxx::insufficient_privilege*>(&e) != nullptr);
      CHECK(std::string(e.what()).find("append-only") != std::string::npos);
    }
  }
  CHECK(audit_rows(url, "outcome = 'ok'") == 1);
}

TEST_CASE("an unreachable database is an infra_error", "[auth_store]") {
  auth_store store{"postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"};
  CHECK_THROWS_AS(store.list_keys(false), storage::infra_error);
  CHECK_THROWS_AS(store.find_active_key(std::string(32, 'x')),
                  storage::infra_error);
  CHECK_FALSE(store.connected());
}
