// AUTH actor protocol: credentials to principals, failed attempts limited
// per client address, audit rows of refusals written in batches and kept
// while PostgreSQL is away.
#include "actors/auth.hpp"
#include "fixture.hpp"
#include "storage/journal.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace ces;

namespace {

const std::string good_key = "ces_" + std::string(43, 'A');
const std::string other_key = "ces_" + std::string(43, 'B');

/// What the fake PostgreSQL side saw and does.
struct fake_db {
  bool up = true;
  int lookups = 0;
  std::vector<audit_entry> audit;
  std::vector<int64_t> touched;
};

class fake_backend : public auth_backend {
public:
  explicit fake_backend(std::shared_ptr<fake_db> db) : db_(std::move(db)) {
  }
  std::optional<key_identity> find_key(const std::string& key) override {
    if (!db_->up)
      throw storage::infra_error("connection refused");
    ++db_->lookups;
    if (key != good_key)
      return std::nullopt;
    key_identity id;
    id.id = 1;
    id.name = "ops";
    id.granted = auth::role::operator_;
    id.scope.tenants = {"t1"};
    return id;
  }
  void touch(const std::vector<int64_t>& ids) override {
    if (!db_->up)
      throw storage::infra_error("connection refused");
    db_->touched.insert(db_->touched.end(), ids.begin(), ids.end());
  }
  void write_audit(const std::vector<audit_entry>& rows) override {
    if (!db_->up)
      throw storage::infra_error("connection refused");
    db_->audit.insert(db_->audit.end(), rows.begin(), rows.end());
  }

private:
  std::shared_ptr<fake_db> db_;
};

std::string basic(const std::string& user, const std::string& pass) {
  static const char* tbl =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string in = user + ":" + pass;
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8)
                 | uint8_t(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6)
      out += tbl[(v >> k) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += tbl[(v >> 18) & 63];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += '=';
  }
  return "Basic " + out;
}

struct auth_fixture : ces::test::fixture {
  std::shared_ptr<fake_db> db = std::make_shared<fake_db>();
  auth_actor a;
  int jwt_calls = 0;

  ~auth_fixture() {
    // With auth off the warning timer re-arms itself forever: stop the
    // actor before the fixture runs what is left.
    if (a) {
      self->send_exit(a, caf::exit_reason::kill);
      sched.run();
    }
  }

  void start(auth_settings cfg = {}) {
    auto db_ = db;
    auto make = [db_]() -> std::unique_ptr<auth_backend> {
      return std::make_unique<fake_backend>(db_);
    };
    jwt_checker jwt = [this](const std::string& token) {
      ++jwt_calls;
      jwt_check r;
      if (token == "aaa.bbb.ccc") {
        r.ok = true;
        r.who.name = "alice";
        r.who.kind = "jwt";
        r.who.granted = auth::role::viewer;
        r.who.scope.all = true;
      } else {
        r.error = "expired";
      }
      return r;
    };
    a = sys.spawn(authenticator, cfg, make, jwt, nullptr);
    sched.run();
  }

  struct outcome {
    bool ok = false;
    auth::principal who;
    caf::error err;
  };

  outcome ask(std::string authorization, std::string addr = "10.0.0.1") {
    auto res = std::make_shared<outcome>();
    auth_request r{std::move(authorization), std::move(addr), "req-1",
                   "replay/7"};
    auto pending = self->request(a, caf::infinite, atom::authenticate_v, r);
    sched.run();
    pending.receive(
        [&](auth::principal& p) {
          res->ok = true;
          res->who = p;
        },
        [&](caf::error& e) { res->err = e; });
    return *res;
  }

  /// Runs the audit flush timer.
  void flush() {
    sched.run();
    sched.trigger_timeouts();
    sched.run();
  }
};

bool is(const caf::error& e, errc x) {
  return e.category() == caf::atom("ces") && e.code() == static_cast<uint8_t>(x);
}

} // namespace

TEST_CASE_METHOD(auth_fixture, "an API key becomes its principal") {
  start();
  auto bearer = ask("Bearer " + good_key);
  REQUIRE(bearer.ok);
  CHECK(bearer.who.name == "ops");
  CHECK(bearer.who.kind == "key");
  CHECK(bearer.who.granted == auth::role::operator_);
  CHECK(bearer.who.scope.tenants == std::vector<std::string>{"t1"});
  CHECK_FALSE(bearer.who.scope.unknown_tenant); // admins only
  // HTTP Basic: user = key name, password = key.
  auto b = ask(basic("ops", good_key));
  REQUIRE(b.ok);
  CHECK(b.who.name == "ops");
  // The right key under another name is refused, like any bad credential.
  auto wrong_name = ask(basic("admin", good_key));
  CHECK(is(wrong_name.err, errc::unauthenticated));
  CHECK(ces::error_message(sys, wrong_name.err) == "invalid credentials");
  // Last use is written (batched).
  flush();
  CHECK_FALSE(db->touched.empty());
}

TEST_CASE_METHOD(auth_fixture, "a cached key is not looked up again") {
  auth_settings cfg;
  cfg.key_cache = 60s;
  start(cfg);
  REQUIRE(ask("Bearer " + good_key).ok);
  REQUIRE(ask("Bearer " + good_key).ok);
  CHECK(db->lookups == 1);
}

TEST_CASE_METHOD(auth_fixture, "without a cache every request is checked") {
  auth_settings cfg;
  cfg.key_cache = 0ms;
  start(cfg);
  REQUIRE(ask("Bearer " + good_key).ok);
  REQUIRE(ask("Bearer " + good_key).ok);
  CHECK(db->lookups == 2);
}

TEST_CASE_METHOD(auth_fixture,
                 "refusals say nothing about which part was wrong") {
  start();
  for (auto h : {std::string{}, "Bearer " + other_key, std::string{"Bearer x"},
                 std::string{"Digest abc"}, basic("nobody", other_key)}) {
    auto r = ask(h);
    CHECK_FALSE(r.ok);
    CHECK(is(r.err, errc::unauthenticated));
    // No error names the key or says whether a name exists.
    auto msg = ces::error_message(sys, r.err);
    CHECK(msg.find(other_key) == std::string::npos);
    CHECK(msg.find("nobody") == std::string::npos);
  }
}

TEST_CASE_METHOD(auth_fixture, "refusals are audited in batches") {
  start();
  CHECK_FALSE(ask("Bearer " + other_key).ok);
  CHECK_FALSE(ask("").ok);
  CHECK(db->audit.empty()); // not yet: batched
  flush();
  REQUIRE(db->audit.size() == 2);
  for (auto& e : db->audit) {
    CHECK(e.action == "auth");
    CHECK(e.outcome == "refused");
    CHECK(e.status == 401);
    CHECK(e.target == "replay/7");
    CHECK(e.who.request_id == "req-1");
    CHECK(e.who.client_addr == "10.0.0.1");
    // Never the credentials.
    CHECK(e.parameters.find(other_key) == std::string::npos);
  }
}

TEST_CASE_METHOD(auth_fixture,
                 "audit rows wait while PostgreSQL is away, nothing lost") {
  start();
  db->up = false;
  CHECK_FALSE(ask("Bearer " + other_key).ok); // a lookup: db down
  CHECK_FALSE(ask("").ok);
  flush();
  CHECK(db->audit.empty());
  db->up = true;
  flush();
  CHECK(db->audit.size() == 1); // the missing-credentials refusal
}

TEST_CASE_METHOD(auth_fixture, "a key lookup without PostgreSQL is a 503") {
  start();
  db->up = false;
  auto r = ask("Bearer " + good_key);
  CHECK(is(r.err, errc::db_unavailable));
  db->up = true;
  CHECK(ask("Bearer " + good_key).ok);
}

TEST_CASE_METHOD(auth_fixture,
                 "a key confirmed before PostgreSQL went away still works") {
  auth_settings cfg;
  cfg.key_cache = 0ms; // every request asks PostgreSQL
  start(cfg);
  REQUIRE(ask("Bearer " + good_key).ok);
  db->up = false;
  auto r = ask("Bearer " + good_key);
  CHECK(r.ok);
  CHECK(r.who.name == "ops");
  // A key never confirmed cannot be checked: 503, not 401.
  CHECK(is(ask("Bearer " + other_key).err, errc::db_unavailable));
  // Past the grace period it cannot be checked either.
  auth_settings strict;
  strict.key_cache = 0ms;
  strict.key_stale_grace = 0ms;
  db->up = true;
  self->send_exit(a, caf::exit_reason::kill);
  sched.run();
  start(strict);
  REQUIRE(ask("Bearer " + good_key).ok);
  db->up = false;
  CHECK(is(ask("Bearer " + good_key).err, errc::db_unavailable));
}

TEST_CASE_METHOD(auth_fixture,
                 "failed attempts are limited per address, not for others") {
  auth_settings cfg;
  cfg.failures_per_s = 0.001; // no refill within the test
  cfg.failures_burst = 3;
  start(cfg);
  for (int i = 0; i < 3; ++i)
    CHECK(is(ask("Bearer " + other_key, "10.0.0.9").err,
             errc::unauthenticated));
  // Over the budget: refused before any check, even with a good key.
  auto lookups = db->lookups;
  auto limited = ask("Bearer " + good_key, "10.0.0.9");
  CHECK(is(limited.err, errc::rate_limited));
  CHECK(ces::retry_after_s(limited.err.context()) >= 1);
  CHECK(db->lookups == lookups);
  // Another address is not affected.
  CHECK(ask("Bearer " + good_key, "10.0.0.10").ok);
  flush();
  auto n429 = std::count_if(db->audit.begin(), db->audit.end(),
                            [](const audit_entry& e) { return e.status == 429; });
  CHECK(n429 == 1);
}

TEST_CASE_METHOD(auth_fixture,
                 "a limited address still lets a confirmed key through") {
  auth_settings cfg;
  cfg.failures_per_s = 0.001;
  cfg.failures_burst = 2;
  start(cfg);
  // A client behind a proxy used its key; then someone else behind the same
  // proxy guesses.
  REQUIRE(ask("Bearer " + good_key, "10.1.1.1").ok);
  for (int i = 0; i < 2; ++i)
    CHECK(is(ask("Bearer " + other_key, "10.1.1.1").err,
             errc::unauthenticated));
  auto lookups = db->lookups;
  CHECK(is(ask("Bearer " + other_key, "10.1.1.1").err, errc::rate_limited));
  CHECK(is(ask("", "10.1.1.1").err, errc::rate_limited));
  // The confirmed key passes, without a lookup; guesses cost none either.
  CHECK(ask("Bearer " + good_key, "10.1.1.1").ok);
  CHECK(db->lookups == lookups);
  // Valid JWTs pass too.
  CHECK(ask("Bearer aaa.bbb.ccc", "10.1.1.1").ok);
}

TEST_CASE_METHOD(auth_fixture, "JWTs go to the JWT checker") {
  start();
  auto ok = ask("Bearer aaa.bbb.ccc");
  REQUIRE(ok.ok);
  CHECK(ok.who.name == "alice");
  auto bad = ask("Bearer aaa.bbb.ddd");
  CHECK(is(bad.err, errc::unauthenticated));
  CHECK(ces::error_message(sys, bad.err) == "invalid token: expired");
  CHECK(jwt_calls == 2);
  CHECK(db->lookups == 0);
}

TEST_CASE_METHOD(auth_fixture, "with auth off everyone is the anonymous admin") {
  auth_settings cfg;
  cfg.enabled = false;
  start(cfg);
  auto r = ask("");
  REQUIRE(r.ok);
  CHECK(r.who.name == "anonymous");
  CHECK(r.who.granted == auth::role::admin);
  CHECK(r.who.scope.all);
}
