// End-to-end: operator security on the real binary. Every route x role x
// tenant scope, keys created, used and revoked, JWTs (HS256, RS256 with a
// JWKS rotation; forged, expired, wrong issuer/audience, alg none, alg
// confusion), the per-tenant replay budget, the audit log, and no secret in
// any log line.
#include "tests/e2e/harness.hpp"
#include "tests/support/jwt_keys.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <ctime>
#include <fstream>
#include <thread>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string jobs = "apexflow.jobs.created";
const std::string leads = "apexflow.leads.created";

/// A request with `credentials` as the Authorization header ("" sends an
/// empty one: no credentials).
ces::test::http_response as(const world& w, const std::string& credentials,
                            const std::string& method,
                            const std::string& target,
                            const std::string& body = {}) {
  return ces::test::http_request(method, "127.0.0.1",
                                 const_cast<world&>(w).http_port(), target,
                                 body, "application/json", 20s,
                                 {{"Authorization", credentials}});
}

std::string bearer(const std::string& token) {
  return "Bearer " + token;
}

/// Creates a key through POST /keys with the world's admin key.
std::string make_key(const world& w, const std::string& name,
                     const std::string& role, const json& tenants) {
  json body{{"name", name}, {"role", role}, {"tenants", tenants}};
  auto r = as(w, bearer(w.admin_key()), "POST", "/keys", body.dump());
  INFO(r.body);
  REQUIRE(r.status == 201);
  auto j = json::parse(r.body);
  auto key = j["key"].get<std::string>();
  REQUIRE(key.rfind("ces_", 0) == 0);
  return key;
}

int64_t first_id(const world& w, const std::string& tenant) {
  return std::stoll(w.value("select min(id) from event_journal where "
                            "tenant_id = '"
                            + tenant + "'"));
}

} // namespace

TEST_CASE("every route x role x tenant scope", "[e2e][security]") {
  world w{{leads, jobs}, 2};
  auto sink = w.start_sink({"--fault-injection=1"});
  // 20 events of tenant-01 and tenant-02, and dead letters (some without a
  // tenant).
  w.produce({"--topics", jobs, "--count", "20", "--tenants", "2"});
  w.produce({"--topics", leads, "--count", "10", "--tenants", "2",
             "--poison-every", "2", "--start-index", "100"});
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal")
               + w.count("select count(*) from event_dlq")
             == 30;
    },
    30s));
  REQUIRE(w.count("select count(*) from event_dlq where tenant_id is null")
          > 0);
  auto t1 = first_id(w, "tenant-01");
  auto t2 = first_id(w, "tenant-02");
  auto admin = bearer(w.admin_key());
  auto viewer1 = bearer(make_key(w, "viewer-t1", "viewer", {"tenant-01"}));
  auto op1 = bearer(make_key(w, "operator-t1", "operator", {"tenant-01"}));
  auto op_all = bearer(make_key(w, "operator-all", "operator", "*"));
  auto viewer_all = bearer(make_key(w, "viewer-all", "viewer", "*"));

  struct row {
    std::string who;
    std::string method;
    std::string target;
    int status;
  };
  auto id1 = std::to_string(t1);
  auto id2 = std::to_string(t2);
  std::map<std::string, std::string> creds{
    {"none", ""},          {"viewer-t1", viewer1},   {"operator-t1", op1},
    {"operator-all", op_all}, {"viewer-all", viewer_all}, {"admin", admin}};
  std::vector<row> table{
    // Probes: no credentials needed.
    {"none", "GET", "/health", 200},
    {"none", "GET", "/ready", 200},
    // Everything else: 401 without credentials.
    {"none", "GET", "/events/latest", 401},
    {"none", "GET", "/events/" + id1, 401},
    {"none", "POST", "/replay/" + id1, 401},
    {"none", "GET", "/dlq", 401},
    {"none", "GET", "/supervision", 401},
    {"none", "GET", "/keys", 401},
    {"none", "GET", "/audit", 401},
    // Reads: viewers and up, within their tenants; another tenant's single
    // resource is 404.
    {"viewer-t1", "GET", "/events/latest", 200},
    {"viewer-t1", "GET", "/events/" + id1, 200},
    {"viewer-t1", "GET", "/events/" + id2, 404},
    {"viewer-all", "GET", "/events/" + id2, 200},
    {"viewer-t1", "GET", "/dlq", 200},
    {"viewer-t1", "GET", "/supervision", 200},
    // Replays: operators and up, within their tenants.
    {"viewer-t1", "POST", "/replay/" + id1, 403},
    {"viewer-all", "POST", "/replay/" + id1, 403},
    {"operator-t1", "POST", "/replay/" + id1, 200},
    {"operator-t1", "POST", "/replay/" + id2, 404},
    {"operator-all", "POST", "/replay/" + id2, 200},
    {"admin", "POST", "/replay/" + id2, 200},
    // Admin routes.
    {"viewer-t1", "GET", "/keys", 403},
    {"operator-all", "GET", "/keys", 403},
    {"operator-all", "GET", "/audit", 403},
    {"operator-all", "DELETE", "/keys/viewer-all", 403},
    {"operator-all", "POST", "/debug/fail/nobody", 403},
    {"admin", "GET", "/keys", 200},
    {"admin", "GET", "/audit", 200},
    {"admin", "DELETE", "/keys/no-such-key", 404},
    {"admin", "POST", "/debug/fail/nobody", 404},
  };
  for (auto& r : table) {
    INFO(r.who << " " << r.method << " " << r.target);
    auto got = as(w, creds.at(r.who), r.method, r.target,
                  r.method == "POST" ? "{}" : "");
    INFO(got.body);
    CHECK(got.status == r.status);
    if (got.status == 401) {
      CHECK(got.header("www-authenticate").find("Bearer realm=")
            != std::string::npos);
      CHECK(json::parse(got.body)["error"] == "unauthenticated");
    }
    if (got.status == 403)
      CHECK(json::parse(got.body)["error"] == "forbidden");
  }
  // An admin key has all tenants (else it could give itself every tenant).
  auto scoped_admin = as(w, admin, "POST", "/keys",
                         R"({"name":"a1","role":"admin","tenants":["tenant-01"]})");
  CHECK(scoped_admin.status == 400);
  CHECK(json::parse(scoped_admin.body)["error"] == "bad_request");
  // Scoped lists hold only the principal's tenants.
  auto events = json::parse(as(w, viewer1, "GET", "/events/latest").body);
  REQUIRE(!events.empty());
  for (auto& e : events)
    CHECK(e["tenant_id"] == "tenant-01");
  auto dlq = json::parse(as(w, viewer1, "GET", "/dlq").body);
  for (auto& d : dlq)
    CHECK(d["tenant_id"] == "tenant-01");
  // DLQ rows without a tenant: admins only.
  auto all_dlq = json::parse(as(w, viewer_all, "GET", "/dlq").body);
  for (auto& d : all_dlq)
    CHECK(!d["tenant_id"].is_null());
  auto admin_dlq = json::parse(as(w, admin, "GET", "/dlq").body);
  CHECK(admin_dlq.size() == static_cast<size_t>(w.count(
                              "select count(*) from event_dlq")));
  // Refusals and actions are audited (refusals in batches, twice a second).
  CHECK(eventually(
    [&] {
      return w.count("select count(*) from audit_log where status = 401")
               == 7
             && w.count("select count(*) from audit_log where status = 403")
                  == 7;
    },
    5s));
  CHECK(w.count("select count(*) from audit_log where action = 'replay' "
                "and outcome = 'ok'")
        == 3);
  CHECK(w.count("select count(*) from audit_log where action = 'key.create'")
        == 4);
}

TEST_CASE("keys: created, used, revoked; no secret in any log line",
          "[e2e][security]") {
  world w{{jobs}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", jobs, "--count", "3"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") == 3; }, 30s));
  auto key = make_key(w, "ops", "operator", "*");
  CHECK(as(w, bearer(key), "GET", "/events/latest").status == 200);
  // HTTP Basic: user = key name, password = key.
  auto basic = [](const std::string& user_pass) {
    std::string out(4 * ((user_pass.size() + 2) / 3) + 1, '\0');
    auto n = EVP_EncodeBlock(
      reinterpret_cast<unsigned char*>(out.data()),
      reinterpret_cast<const unsigned char*>(user_pass.data()),
      static_cast<int>(user_pass.size()));
    out.resize(static_cast<size_t>(n));
    return "Basic " + out;
  };
  CHECK(as(w, basic("ops:" + key), "GET", "/events/latest").status == 200);
  CHECK(as(w, basic("other:" + key), "GET", "/events/latest").status == 401);
  // The key is listed, never shown again.
  auto list = as(w, bearer(w.admin_key()), "GET", "/keys");
  REQUIRE(list.status == 200);
  CHECK(list.body.find(key) == std::string::npos);
  CHECK(list.body.find("\"ops\"") != std::string::npos);
  // Only its hash is stored.
  CHECK(w.count("select count(*) from api_keys where (api_keys.*)::text "
                "like '%"
                + key.substr(4) + "%'")
        == 0);
  // Its last use is recorded (written every few seconds).
  CHECK(eventually(
    [&] {
      return w.count("select count(*) from api_keys where name = 'ops' and "
                     "last_used_at is not null")
             == 1;
    },
    15s));
  // Revoked: refused within a second (the key cache holds 500 ms).
  CHECK(as(w, bearer(w.admin_key()), "DELETE", "/keys/ops").status == 200);
  std::this_thread::sleep_for(1s);
  auto after = as(w, bearer(key), "GET", "/events/latest");
  CHECK(after.status == 401);
  // The same error for a revoked key and a key that never existed.
  auto never = as(w, bearer("ces_" + std::string(43, 'Q')), "GET",
                  "/events/latest");
  CHECK(json::parse(never.body) == json::parse(after.body));
  // Audit: key.create and key.revoke with the admin as principal.
  CHECK(w.count("select count(*) from audit_log where action in "
                "('key.create', 'key.revoke') and principal = 'bootstrap'")
        == 2);
  // UPDATE and DELETE on audit_log are refused by the database.
  CHECK_THROWS(w.count("update audit_log set outcome = 'x' returning 1"));
  CHECK_THROWS(w.count("delete from audit_log returning 1"));
  // No key in any log line.
  auto log = w.sink_log();
  CHECK(log.find(key) == std::string::npos);
  CHECK(log.find(w.admin_key()) == std::string::npos);
}

TEST_CASE("the per-tenant replay budget holds under a burst",
          "[e2e][security]") {
  world w{{jobs}, 1};
  auto sink = w.start_sink(
    {"--replay-rate-per-tenant=1", "--replay-burst-per-tenant=3"});
  w.produce({"--topics", jobs, "--count", "2", "--tenants", "1"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") == 2; }, 30s));
  auto id = first_id(w, "tenant-01");
  auto start = std::chrono::steady_clock::now();
  int ok = 0;
  int limited = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = as(w, bearer(w.admin_key()), "POST",
                "/replay/" + std::to_string(id));
    if (r.status == 200)
      ++ok;
    else if (r.status == 429) {
      ++limited;
      CHECK(std::stoi(r.header("retry-after")) >= 1);
      CHECK(json::parse(r.body)["error"] == "rate_limited");
    }
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();
  // At most the burst plus what the rate refilled meanwhile.
  CHECK(ok <= 3 + static_cast<int>(secs * 1) + 1);
  CHECK(ok >= 3);
  CHECK(ok + limited == 10);
  CHECK(w.count("select count(*) from audit_log where action = 'replay' and "
                "status = 429")
        == limited);
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  CHECK(metric(m.body, "crm_replays_throttled_total{tenant=\"tenant-01\"}")
        == limited);
}

TEST_CASE("JWTs: HS256 and RS256 with a JWKS rotation; bad tokens refused",
          "[e2e][security]") {
  using namespace ces::test;
  world w{{jobs}, 1};
  auto k1 = rsa_key("k1");
  auto k2 = rsa_key("k2");
  auto ec = ec_key("e1");
  auto jwks_path = w.temp_path("jwks.json");
  {
    std::ofstream f{jwks_path};
    f << jwks_json({&k1, &ec});
  }
  std::string secret(48, 's');
  auto secret_path = w.temp_path("hs256.secret");
  {
    std::ofstream f{secret_path};
    f << secret << "\n";
  }
  auto sink = w.start_sink(
    {"--jwt-jwks=" + jwks_path, "--jwt-jwks-min-refresh-s=1",
     "--jwt-hs256-secret-file=" + secret_path, "--jwt-issuer=https://idp",
     "--jwt-audience=crm-events-sink"});
  auto now = static_cast<int64_t>(std::time(nullptr));
  json claims{{"iss", "https://idp"},   {"aud", "crm-events-sink"},
              {"sub", "alice"},         {"exp", now + 600},
              {"crm_role", "viewer"},   {"crm_tenants", json::array({"t1"})}};
  auto good_rs = sign(JWT_ALG_RS256, k1.private_pem, "k1", claims);
  auto good_es = sign(JWT_ALG_ES256, ec.private_pem, "e1", claims);
  auto good_hs = sign(JWT_ALG_HS256, secret, "", claims);
  for (auto& t : {good_rs, good_es, good_hs}) {
    auto r = as(w, bearer(t), "GET", "/events/latest");
    INFO(r.body);
    CHECK(r.status == 200);
  }
  // A viewer token cannot replay.
  CHECK(as(w, bearer(good_rs), "POST", "/replay/1").status == 403);
  auto with = [&](const char* k, json v) {
    auto c = claims;
    c[k] = std::move(v);
    return c;
  };
  std::vector<std::pair<std::string, std::string>> bad{
    {"expired", sign(JWT_ALG_RS256, k1.private_pem, "k1",
                     with("exp", now - 120))},
    {"wrong issuer", sign(JWT_ALG_RS256, k1.private_pem, "k1",
                          with("iss", "https://evil"))},
    {"wrong audience", sign(JWT_ALG_RS256, k1.private_pem, "k1",
                            with("aud", "other"))},
    {"forged (other key, same kid)",
     sign(JWT_ALG_RS256, k2.private_pem, "k1", claims)},
    {"alg confusion (HS256 with the RSA public key)",
     sign(JWT_ALG_HS256, k1.public_pem, "k1", claims)},
    {"unknown kid", sign(JWT_ALG_RS256, k2.private_pem, "k2", claims)},
    {"alg none", b64url(R"({"alg":"none","typ":"JWT"})") + "."
                   + b64url(claims.dump()) + "."},
  };
  for (auto& [what, token] : bad) {
    INFO(what);
    auto r = as(w, bearer(token), "GET", "/events/latest");
    CHECK(r.status == 401);
  }
  // Rotation: the IdP publishes k2; a token signed with it verifies once
  // the JWKS is fetched again (unknown kid, at most once per second here).
  {
    std::ofstream f{jwks_path};
    f << jwks_json({&k2});
  }
  std::this_thread::sleep_for(1100ms);
  auto rotated = sign(JWT_ALG_RS256, k2.private_pem, "k2", claims);
  CHECK(as(w, bearer(rotated), "GET", "/events/latest").status == 200);
  // No token in any log line.
  auto log = w.sink_log();
  for (auto& t : {good_rs, good_es, good_hs, rotated})
    CHECK(log.find(t) == std::string::npos);
  CHECK(log.find(secret) == std::string::npos);
  CHECK(eventually(
    [&] {
      return w.count("select count(*) from audit_log where status = 401")
             == 7;
    },
    5s));
}

TEST_CASE("GET /openapi.json answers the document without credentials",
          "[e2e][security]") {
  world w{{jobs}, 1};
  auto sink = w.start_sink();
  for (std::string creds : {"", "Bearer not-a-key"}) {
    INFO("Authorization: " << creds);
    auto r = as(w, creds, "GET", "/openapi.json");
    REQUIRE(r.status == 200);
    CHECK(r.header("content-type") == "application/json");
    auto doc = json::parse(r.body);
    CHECK(doc["openapi"] == "3.1.0");
    CHECK(doc["paths"].contains("/replay/{id}"));
    CHECK(doc["paths"]["/openapi.json"]["get"]["security"]
          == json::array());
  }
  // Nothing else opens up without credentials.
  CHECK(as(w, "", "GET", "/events/latest").status == 401);
}

TEST_CASE("Idempotency-Key: a retried replay is answered, not replayed",
          "[e2e][security]") {
  world w{{jobs}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", jobs, "--count", "2", "--tenants", "1"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") == 2; },
    30s));
  auto id = std::stoll(w.value("select min(id) from event_journal"));
  auto other_id = std::stoll(w.value("select max(id) from event_journal"));
  auto admin = bearer(w.admin_key());
  auto op = bearer(make_key(w, "op-2", "operator", "*"));
  auto post = [&](const std::string& creds, const std::string& target,
                  const std::string& key) {
    return ces::test::http_request("POST", "127.0.0.1", w.http_port(),
                                   target, {}, "application/json", 20s,
                                   {{"Authorization", creds},
                                    {"Idempotency-Key", key}});
  };
  auto target = "/replay/" + std::to_string(id);
  auto first = post(admin, target, "incident-42");
  REQUIRE(first.status == 200);
  CHECK(first.header("idempotent-replayed").empty());
  // The answer is stored once it went out: retry until it is there.
  ces::test::http_response second;
  REQUIRE(eventually(
    [&] {
      second = post(admin, target, "incident-42");
      return second.status != 409;
    },
    10s));
  CHECK(second.status == 200);
  CHECK(second.body == first.body);
  CHECK(second.header("idempotent-replayed") == "true");
  // The same key for another request: 422, nothing done.
  auto reused = post(admin, "/replay/" + std::to_string(other_id),
                     "incident-42");
  CHECK(reused.status == 422);
  CHECK(json::parse(reused.body)["error"] == "idempotency_key_reused");
  // Another principal's key of the same name is its own.
  auto theirs = post(op, target, "incident-42");
  CHECK(theirs.status == 200);
  CHECK(theirs.header("idempotent-replayed").empty());
  CHECK(json::parse(theirs.body)["replay_id"]
        != json::parse(first.body)["replay_id"]);
  // A bad key is refused before anything runs.
  auto bad = post(admin, target, std::string(256, 'k'));
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["error"] == "bad_idempotency_key");
  // One partition: once the other principal's replay (published last) is
  // journalled, every earlier replay is too. Two replays of the event in
  // all: the first request's and the other principal's.
  auto last_offset
    = std::to_string(json::parse(theirs.body)["offset"].get<int64_t>());
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal where \"offset\" = "
                     + last_offset + " and replay_of is not null")
             == 1;
    },
    30s));
  CHECK(w.count("select count(*) from event_journal where replay_of = "
                + std::to_string(id))
        == 2);
  CHECK(w.count("select count(*) from event_journal where replay_of = "
                + std::to_string(other_id))
        == 0);
  CHECK(w.count("select count(*) from idempotency_keys where state = 'done'")
        == 2);
}
