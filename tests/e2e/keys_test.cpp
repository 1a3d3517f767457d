// End-to-end: `crm-events-sink keys create|list|revoke` against a throwaway
// PostgreSQL, with no broker and no service running.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <regex>
#include <sstream>
#include <unistd.h>

using namespace ces::e2e;
using ces::test::spawn_options;

namespace {

struct result {
  int code = -1;
  std::string out;
  std::string err;
};

/// Runs `crm-events-sink keys <args>` to completion with `env` (and none of
/// the service's settings from the test's environment).
result keys(std::vector<std::string> args,
            std::vector<std::pair<std::string, std::string>> env = {}) {
  args.insert(args.begin(), {CES_SINK_BIN, "keys"});
  spawn_options opts;
  opts.env = std::move(env);
  opts.unset_env = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPICS",
                    "KAFKA_GROUP_ID", "CONFIG_FILE"};
  child_process p{args, opts};
  auto st = p.wait_exit(60s);
  REQUIRE(st);
  REQUIRE(st->exited);
  return {st->code, p.stdout_text(), p.stderr_text()};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

/// A fresh database of the shared cluster; `name` receives its name.
std::string fresh_db(std::string& name) {
  static int n = 0;
  name = "ces_keys_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
  return pg().create_database(name);
}

} // namespace

TEST_CASE("keys create, list, revoke against DATABASE_URL", "[e2e]") {
  std::string db;
  auto url = fresh_db(db);
  std::vector<std::pair<std::string, std::string>> env{{"DATABASE_URL", url},
                                                       {"USER", "e2e-op"}};
  // The schema is migrated by the subcommand itself.
  auto c = keys({"create", "--name", "ops", "--role", "operator",
                 "--tenants", "t1, t2", "--expires", "90d"},
                env);
  CHECK(c.code == 0);
  auto out = lines_of(c.out);
  REQUIRE(out.size() == 1);
  auto key = out[0];
  CHECK(std::regex_match(key, std::regex{"^ces_[A-Za-z0-9_-]{43}$"}));
  CHECK(c.err.find(key) == std::string::npos);
  CHECK(c.err.find(key.substr(4)) == std::string::npos);
  CHECK(c.err.find("shown only this once") != std::string::npos);
  CHECK(c.err.find("\"ops\"") != std::string::npos);
  CHECK(c.err.find("role operator") != std::string::npos);
  CHECK(c.err.find("tenants t1,t2") != std::string::npos);
  CHECK(std::regex_search(c.err, std::regex{R"(expires \d{4}-\d\d-\d\dT)"}));
  // Stored as its SHA-256, audited as the CLI user.
  CHECK(pg().query_value("SELECT count(*) FROM api_keys WHERE key_hash ="
                         " sha256('" + key + "'::bytea) AND tenants ="
                         " '{t1,t2}' AND expires_at > now() + interval"
                         " '89 days' AND created_by = 'cli:e2e-op'",
                         db)
        == "1");
  CHECK(pg().query_value("SELECT principal || ' ' || action || ' ' || "
                         "target || ' ' || outcome FROM audit_log",
                         db)
        == "cli:e2e-op key.create key/ops ok");

  auto star = keys({"create", "--name=all", "--role=admin", "--tenants=*"},
                   env);
  CHECK(star.code == 0);
  auto key2 = lines_of(star.out).at(0);
  CHECK(star.err.find("tenants *") != std::string::npos);
  CHECK(star.err.find("expires never") != std::string::npos);

  auto list = keys({"list"}, env);
  CHECK(list.code == 0);
  auto rows = lines_of(list.out);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].rfind("NAME", 0) == 0);
  CHECK(rows[0].find("LAST_USED_AT") != std::string::npos);
  CHECK(rows[1].rfind("all ", 0) == 0);
  CHECK(rows[2].rfind("ops ", 0) == 0);
  CHECK(rows[2].find("t1,t2") != std::string::npos);
  CHECK(rows[2].find("cli:e2e-op") != std::string::npos);
  for (auto& k : {key, key2}) {
    CHECK(list.out.find(k.substr(4)) == std::string::npos);
    CHECK(list.err.find(k.substr(4)) == std::string::npos);
  }

  auto json = keys({"list", "--json"}, env);
  CHECK(json.code == 0);
  auto jl = lines_of(json.out);
  REQUIRE(jl.size() == 2);
  auto j = nlohmann::json::parse(jl[1]);
  CHECK(j["name"] == "ops");
  CHECK(j["role"] == "operator");
  CHECK(j["tenants"] == nlohmann::json::array({"t1", "t2"}));
  CHECK(j["revoked_at"].is_null());
  CHECK(j["expires_at"].is_string());
  CHECK(nlohmann::json::parse(jl[0])["tenants"] == "*");
  CHECK(json.out.find(key.substr(4)) == std::string::npos);

  // A second active key of the same name: refused, exit 1, audited.
  auto dup = keys({"create", "--name", "ops", "--role", "viewer",
                   "--tenants", "t3"},
                  env);
  CHECK(dup.code == 1);
  CHECK(dup.out.empty());
  CHECK(dup.err.find("exists already") != std::string::npos);
  CHECK(pg().query_value("SELECT count(*) FROM audit_log WHERE action ="
                         " 'key.create' AND outcome = 'failed'",
                         db)
        == "1");

  auto rev = keys({"revoke", "ops"}, env);
  CHECK(rev.code == 0);
  auto active = keys({"list"}, env);
  CHECK(lines_of(active.out).size() == 2); // header + "all"
  CHECK(active.out.find("ops") == std::string::npos);
  auto all = keys({"list", "--all", "--json"}, env);
  auto al = lines_of(all.out);
  REQUIRE(al.size() == 2);
  auto revoked = nlohmann::json::parse(al[1]);
  CHECK(revoked["name"] == "ops");
  CHECK(revoked["revoked_at"].is_string());

  auto again = keys({"revoke", "ops"}, env);
  CHECK(again.code == 1);
  CHECK(again.err.find("no active key named \"ops\"") != std::string::npos);
  CHECK(pg().query_value("SELECT count(*) FROM audit_log WHERE action ="
                         " 'key.revoke'",
                         db)
        == "2"); // the revoke and the failed one
  // The name is free once revoked.
  CHECK(keys({"create", "--name", "ops", "--role", "viewer", "--tenants",
              "t3"},
             env)
          .code
        == 0);
}

TEST_CASE("keys: invalid input exits 2 before touching the database",
          "[e2e]") {
  std::string db;
  auto url = fresh_db(db);
  std::vector<std::pair<std::string, std::string>> env{{"DATABASE_URL", url}};
  auto usage = [&](std::vector<std::string> args, const std::string& says) {
    CAPTURE(args);
    auto r = keys(args, env);
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find(says) != std::string::npos);
  };
  usage({"create", "--name", "x", "--role", "root", "--tenants", "t1"},
        "--role");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1",
         "--expires", "90"},
        "--expires");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1",
         "--expires", "0d"},
        "--expires");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1",
         "--expires", "3654d"},
        "--expires");
  usage({"create", "--name", "bad name", "--role", "viewer", "--tenants",
         "t1"},
        "--name");
  usage({"create", "--role", "viewer", "--tenants", "t1"}, "--name");
  usage({"create", "--name", "x", "--role", "viewer"},
        "--tenants t1,t2 or '*' is required");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1,,t2"},
        "--tenants");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1,*"},
        "--tenants");
  usage({"create", "--name", "x", "--role", "viewer", "--tenants", "t1",
         "--color", "red"},
        "unknown flag --color");
  usage({"revoke"}, "one key name");
  usage({"rotate"}, "unknown keys subcommand");
  usage({"list", "--fancy"}, "unknown flag");
  // Nothing was created, not even the schema.
  CHECK(pg().query_value("SELECT to_regclass('api_keys') IS NULL",
                         db)
        == "t");

  // Help needs no database.
  auto help = keys({"--help"});
  CHECK(help.code == 0);
  CHECK(help.out.find("keys create --name") != std::string::npos);
  auto none = keys({});
  CHECK(none.code == 2);
  CHECK(none.err.find("Usage:") != std::string::npos);
}

TEST_CASE("keys: the database comes from DATABASE_URL, the flag or the INI "
          "file",
          "[e2e]") {
  SECTION("none: exit 2, the setting named") {
    auto r = keys({"list"});
    CHECK(r.code == 2);
    CHECK(r.err.find("database-url (DATABASE_URL)") != std::string::npos);
    auto c = keys({"create", "--name", "x", "--role", "viewer", "--tenants",
                   "t1"});
    CHECK(c.code == 2);
    CHECK(c.out.empty());
  }
  SECTION("--database-url and --config-file") {
    auto url = pg().create_database();
    auto r = keys({"--database-url", url, "create", "--name", "a",
                   "--role", "viewer", "--tenants", "t1"});
    CHECK(r.code == 0);
    auto dir = ces::test::make_temp_dir("ces-keys-e2e");
    auto ini = dir + "/keys.ini";
    {
      std::ofstream f{ini};
      f << "[global]\ndatabase-url = \"" << url << "\"\n";
    }
    auto l = keys({"list", "--json", "--config-file=" + ini});
    CHECK(l.code == 0);
    CHECK(lines_of(l.out).size() == 1);
    CHECK(l.out.find("\"name\":\"a\"") != std::string::npos);
    ces::test::remove_tree(dir);
  }
  SECTION("unreachable: exit 1 with a clear line, no password") {
    auto r = keys({"list"},
                  {{"DATABASE_URL", "postgresql://u:s3cr3t-pw@127.0.0.1:1/db"
                                    "?connect_timeout=2"}});
    CHECK(r.code == 1);
    CHECK(r.err.find("database unreachable") != std::string::npos);
    CHECK(r.err.find("s3cr3t-pw") == std::string::npos);
  }
}

TEST_CASE("--help mentions the keys subcommands", "[e2e]") {
  ces::test::spawn_options opts;
  child_process p{{CES_SINK_BIN, "--help"}, opts};
  auto st = p.wait_exit(30s);
  REQUIRE(st);
  CHECK(st->code == 0);
  auto out = p.stdout_text();
  CHECK(out.find("keys create --name") != std::string::npos);
  CHECK(out.find("keys list") != std::string::npos);
  CHECK(out.find("keys revoke") != std::string::npos);
}
