#include "actors/dlq.hpp"
#include "api/metrics.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace ces;

namespace {

/// Remembers the scope of every read (and the filter, limit and cursor of
/// finds, the id of gets); answers one row per tenant it sees among "a",
/// "b" and unknown.
struct seen_scopes {
  std::vector<tenant_scope> scopes;
  std::vector<dlq_filter> filters;
  std::vector<std::pair<int32_t, int64_t>> pages; // limit, before_id
  std::vector<int64_t> ids;
};

class scoped_reader : public dlq_reader {
public:
  explicit scoped_reader(std::shared_ptr<seen_scopes> s) : s_(std::move(s)) {
  }
  int64_t pending_count() override {
    return 3;
  }
  std::vector<storage::dlq_entry_row>
  latest(int32_t limit, const tenant_scope& scope) override {
    s_->scopes.push_back(scope);
    std::vector<storage::dlq_entry_row> out;
    for (std::string t : {"a", "b", ""})
      if (scope.sees(t) && static_cast<int32_t>(out.size()) < limit) {
        storage::dlq_entry_row d;
        d.tenant_id = t;
        out.push_back(d);
      }
    return out;
  }
  std::vector<storage::dlq_entry_row>
  find(const dlq_filter& f, const tenant_scope& scope, int32_t limit,
       int64_t before_id) override {
    s_->filters.push_back(f);
    s_->pages.emplace_back(limit, before_id);
    return latest(limit, scope);
  }
  std::vector<storage::dlq_entry_row>
  get(int64_t id, const tenant_scope& scope) override {
    s_->scopes.push_back(scope);
    s_->ids.push_back(id);
    std::vector<storage::dlq_entry_row> out;
    if (id == 5 && scope.sees("a")) {
      storage::dlq_entry_row d;
      d.id = 5;
      d.tenant_id = "a";
      out.push_back(d);
    }
    return out;
  }

private:
  std::shared_ptr<seen_scopes> s_;
};

dlq_settings reads_only() {
  dlq_settings cfg;
  cfg.refresh_interval = std::chrono::milliseconds{60000};
  return cfg;
}

} // namespace

TEST_CASE_METHOD(ces::test::fixture,
                 "DLQ: latest passes the requester's tenant scope on") {
  auto seen = std::make_shared<seen_scopes>();
  auto d = sys.spawn(
    dlq,
    dlq_reader_factory{[seen] {
      return std::unique_ptr<dlq_reader>(new scoped_reader(seen));
    }},
    dlq_writer_factory{}, reads_only(), nullptr);
  sched.run();
  auto ask = [&](const tenant_scope& scope) {
    std::vector<std::string> tenants;
    auto h = self->request(d, caf::infinite, atom::latest_v, int32_t{10},
                           scope);
    sched.run();
    h.receive(
      [&](std::vector<storage::dlq_entry_row>& xs) {
        for (auto& x : xs)
          tenants.push_back(x.tenant_id);
      },
      [&](caf::error& e) { FAIL(to_string(e)); });
    return tenants;
  };
  tenant_scope a;
  a.tenants = {"a"};
  CHECK(ask(a) == std::vector<std::string>{"a"});
  tenant_scope admin;
  admin.all = true;
  admin.unknown_tenant = true;
  CHECK(ask(admin) == std::vector<std::string>{"a", "b", ""});
  REQUIRE(seen->scopes.size() == 2);
  CHECK(seen->scopes[0].tenants == std::vector<std::string>{"a"});
  CHECK_FALSE(seen->scopes[0].all);
  CHECK_FALSE(seen->scopes[0].unknown_tenant);
  CHECK(seen->scopes[1].all);
  CHECK(seen->scopes[1].unknown_tenant);
  // Ends its refresh loop (else the fixture waits for it).
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}

TEST_CASE_METHOD(ces::test::fixture,
                 "DLQ: find and get pass filter, cursor and scope on") {
  auto seen = std::make_shared<seen_scopes>();
  auto d = sys.spawn(
    dlq,
    dlq_reader_factory{[seen] {
      return std::unique_ptr<dlq_reader>(new scoped_reader(seen));
    }},
    dlq_writer_factory{}, reads_only(), nullptr);
  sched.run();
  auto rows = [&](auto h) {
    std::vector<std::string> tenants;
    sched.run();
    h.receive(
      [&](std::vector<storage::dlq_entry_row>& xs) {
        for (auto& x : xs)
          tenants.push_back(x.tenant_id);
      },
      [&](caf::error& e) { FAIL(to_string(e)); });
    return tenants;
  };
  tenant_scope b;
  b.tenants = {"b"};
  dlq_filter f;
  f.status = "pending";
  f.topic = "crm";
  CHECK(rows(self->request(d, caf::infinite, atom::find_v, f, b,
                           int32_t{7}, int64_t{42}))
        == std::vector<std::string>{"b"});
  REQUIRE(seen->filters.size() == 1);
  CHECK(seen->filters[0].status == "pending");
  CHECK(seen->filters[0].topic == "crm");
  CHECK(seen->pages[0] == std::pair<int32_t, int64_t>{7, 42});
  CHECK(seen->scopes.back().tenants == std::vector<std::string>{"b"});
  tenant_scope a;
  a.tenants = {"a"};
  CHECK(rows(self->request(d, caf::infinite, atom::get_v, int64_t{5}, a))
        == std::vector<std::string>{"a"});
  CHECK(rows(self->request(d, caf::infinite, atom::get_v, int64_t{5}, b))
        .empty());
  CHECK(seen->ids == std::vector<int64_t>{5, 5});
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}

namespace {

/// What the fake store was asked, and what it answers.
struct store_script {
  /// due_for_retry: throws on the calls whose index is listed.
  std::vector<int> failing_due_calls;
  int due_calls = 0;
  std::vector<int64_t> due = {1, 2, 3};
  /// retry_journal calls: (id, bytes or "<stored>", principal, auto).
  std::vector<std::tuple<int64_t, std::string, std::string, bool>> retries;
  /// load(): the row's payload (has_payload false when nullopt).
  std::optional<std::string> stored = std::string{R"({"n":1})"};
  std::string stored_status = "pending";
  bool throw_on_retry = false;
};

class fake_writer : public dlq_writer {
public:
  explicit fake_writer(std::shared_ptr<store_script> s) : s_(std::move(s)) {
  }
  std::optional<storage::dlq_entry_row>
  load(int64_t id, const tenant_scope&) override {
    if (id == 404)
      return std::nullopt;
    storage::dlq_entry_row d;
    d.id = id;
    d.status = s_->stored_status;
    d.has_payload = s_->stored.has_value();
    d.payload = s_->stored.value_or("");
    return d;
  }
  storage::dlq_retry_outcome
  retry_journal(int64_t id, const std::optional<std::string>& bytes,
                const requester& who,
                const storage::dlq_retry_policy* policy) override {
    if (s_->throw_on_retry)
      throw storage::infra_error("connection lost");
    s_->retries.emplace_back(id, bytes.value_or("<stored>"), who.principal,
                             policy != nullptr);
    storage::dlq_retry_outcome o;
    o.attempts = 2;
    o.topic = "crm";
    switch (id) {
      case 1: // fixed
        o.outcome = storage::dlq_outcome::ok;
        o.event_id = 100;
        o.tenant_id = "a";
        break;
      case 2: // still failing, retried later
        o.outcome = storage::dlq_outcome::still_invalid;
        o.error_class = "db_rejected";
        o.error = "refused by trigger";
        break;
      case 3: // given up
        o.outcome = storage::dlq_outcome::still_invalid;
        o.error_class = "db_rejected";
        o.error = "refused by trigger";
        o.attempts = 5;
        o.gave_up = true;
        break;
      case 4:
        o.outcome = storage::dlq_outcome::closed;
        o.error_class = "discarded";
        break;
      case 5:
        o.outcome = storage::dlq_outcome::out_of_scope;
        o.tenant_id = "b";
        break;
      default:
        o.outcome = storage::dlq_outcome::not_found;
        o.attempts = 0;
    }
    return o;
  }
  std::optional<storage::dlq_entry_row>
  begin_republish(int64_t, const requester&,
                  storage::dlq_outcome& outcome) override {
    outcome = storage::dlq_outcome::closed;
    return std::nullopt;
  }
  void finish_republish(int64_t, bool, const std::string&,
                        const requester&) override {
  }
  std::optional<storage::dlq_entry_row>
  discard(int64_t id, const std::string& reason, const requester& who,
          storage::dlq_outcome& outcome) override {
    if (id != 1) {
      outcome = storage::dlq_outcome::not_found;
      return std::nullopt;
    }
    outcome = storage::dlq_outcome::ok;
    storage::dlq_entry_row d;
    d.id = id;
    d.status = "discarded";
    d.discard_reason = reason;
    d.resolved_by = who.principal;
    return d;
  }
  int64_t purge(const std::string& status, const std::string&,
                const requester&) override {
    if (status != "resolved" && status != "discarded")
      throw std::invalid_argument("status must be resolved or discarded");
    return 7;
  }
  std::vector<int64_t> due_for_retry(const storage::dlq_retry_policy&,
                                     int) override {
    auto call = s_->due_calls++;
    for (auto f : s_->failing_due_calls)
      if (f == call)
        throw storage::infra_error("server closed the connection");
    return s_->due;
  }

private:
  std::shared_ptr<store_script> s_;
};

struct dlq_fixture : ces::test::fixture {
  std::shared_ptr<store_script> script = std::make_shared<store_script>();
  ces::metrics stats;

  dlq_actor spawn_dlq(std::chrono::milliseconds retry_interval) {
    auto seen = std::make_shared<seen_scopes>();
    dlq_settings cfg;
    cfg.refresh_interval = std::chrono::milliseconds{600000};
    cfg.retry_interval = retry_interval;
    cfg.policy.classes = {"db_rejected"};
    auto s = script;
    auto d = sys.spawn(
      dlq,
      dlq_reader_factory{[seen] {
        return std::unique_ptr<dlq_reader>(new scoped_reader(seen));
      }},
      dlq_writer_factory{
        [s] { return std::unique_ptr<dlq_writer>(new fake_writer(s)); }},
      cfg, &stats);
    sched.run();
    return d;
  }

  /// The error of a retry request (none: it succeeded, into `ok`).
  caf::error retry(dlq_actor d, dlq_retry_request rq,
                   dlq_retry_result* ok = nullptr) {
    requester who;
    who.principal = "ops";
    who.scope.all = true;
    auto h = self->request(d, caf::infinite, atom::retry_v, rq, who);
    sched.run();
    caf::error out;
    h.receive(
      [&](dlq_retry_result& r) {
        if (ok != nullptr)
          *ok = r;
      },
      [&](caf::error& e) { out = e; });
    return out;
  }

  std::string code_of(const caf::error& e) {
    auto c = ces::context_code(e.context());
    return c ? *c : "";
  }

  double sample(const std::string& series) {
    auto text = stats.text();
    auto at = text.find(series + " ");
    if (at == std::string::npos)
      return -1;
    return std::stod(text.substr(at + series.size() + 1));
  }
};

dlq_retry_request retry_of(int64_t id) {
  dlq_retry_request rq;
  rq.id = id;
  return rq;
}

} // namespace

TEST_CASE_METHOD(dlq_fixture,
                 "DLQ: the automatic retry survives PostgreSQL failures") {
  script->failing_due_calls = {0};
  auto d = spawn_dlq(std::chrono::milliseconds{1000});
  // First tick: the store is unreachable. Counted, and the actor goes on.
  advance_time(std::chrono::milliseconds{1000});
  sched.run();
  CHECK(script->due_calls == 1);
  CHECK(script->retries.empty());
  CHECK(sample("crm_dlq_retries_total{outcome=\"error\"}") == 1);
  // Second tick: three due rows, each retried with the policy as the
  // system principal.
  advance_time(std::chrono::milliseconds{1000});
  sched.run();
  CHECK(script->due_calls == 2);
  REQUIRE(script->retries.size() == 3);
  for (auto& [id, bytes, principal, automatic] : script->retries) {
    CHECK(bytes == "<stored>");
    CHECK(principal == "auto-retry");
    CHECK(automatic);
  }
  CHECK(sample("crm_dlq_retries_total{outcome=\"resolved\"}") == 1);
  CHECK(sample("crm_dlq_retries_total{outcome=\"still_failing\"}") == 1);
  CHECK(sample("crm_dlq_retries_total{outcome=\"gave_up\"}") == 1);
  // A failure in the middle of a batch ends that tick only.
  script->throw_on_retry = true;
  advance_time(std::chrono::milliseconds{1000});
  sched.run();
  CHECK(sample("crm_dlq_retries_total{outcome=\"error\"}") == 2);
  script->throw_on_retry = false;
  advance_time(std::chrono::milliseconds{1000});
  sched.run();
  CHECK(script->retries.size() == 6);
  // Still serving requests.
  CHECK(!retry(d, retry_of(1)));
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}

TEST_CASE_METHOD(dlq_fixture,
                 "DLQ: retry outcomes become the API's errors") {
  auto d = spawn_dlq(std::chrono::milliseconds{0}); // no automatic retry
  dlq_retry_result ok;
  REQUIRE(!retry(d, retry_of(1), &ok));
  CHECK(ok.dlq_id == 1);
  CHECK(ok.status == "resolved");
  CHECK(ok.mode == "journal");
  CHECK(ok.event_id == 100);
  CHECK(ok.tenant_id == "a");
  CHECK(ok.attempts == 2);
  CHECK(std::get<3>(script->retries.back()) == false); // manual
  CHECK(std::get<2>(script->retries.back()) == "ops");

  auto still = retry(d, retry_of(2));
  CHECK(still == errc::unprocessable);
  CHECK(code_of(still) == "still_invalid");
  auto msg = ces::context_text(still.context());
  REQUIRE(msg != nullptr);
  CHECK_THAT(*msg, Catch::Contains("refused by trigger"));
  CHECK_THAT(*msg, Catch::Contains("attempts 2"));
  CHECK(retry(d, retry_of(4)) == errc::conflict);
  CHECK(retry(d, retry_of(5)) == errc::forbidden);
  CHECK(retry(d, retry_of(9)) == errc::not_found);

  // payload: passed on as given.
  auto fixed = retry_of(1);
  fixed.has_payload = true;
  fixed.payload = R"({"tenant_id":"a"})";
  REQUIRE(!retry(d, fixed));
  CHECK(std::get<1>(script->retries.back()) == R"({"tenant_id":"a"})");

  // transform: applied to the stored bytes, which may gain a tenant.
  auto patched = retry_of(1);
  patched.transform = R"([{"op":"add","path":"/tenant_id","value":"a"}])";
  REQUIRE(!retry(d, patched));
  CHECK(std::get<1>(script->retries.back()) == R"({"n":1,"tenant_id":"a"})");
  auto calls = script->retries.size();
  // A patch that fails, and stored bytes that are not JSON: 400
  // bad_transform, nothing retried.
  patched.transform = R"([{"op":"test","path":"/n","value":2}])";
  auto e = retry(d, patched);
  CHECK(e == errc::bad_request);
  CHECK(code_of(e) == "bad_transform");
  script->stored = std::string{"{not json"};
  patched.transform = R"([{"op":"add","path":"/x","value":1}])";
  e = retry(d, patched);
  CHECK(code_of(e) == "bad_transform");
  script->stored = std::nullopt;
  CHECK(code_of(retry(d, patched)) == "bad_transform");
  CHECK(script->retries.size() == calls);
  // A transform of a missing or closed row: 404 / 409 first.
  auto missing = patched;
  missing.id = 404;
  CHECK(retry(d, missing) == errc::not_found);
  script->stored_status = "resolved";
  CHECK(retry(d, patched) == errc::conflict);
  // PostgreSQL away: 503, the actor stays.
  script->throw_on_retry = true;
  CHECK(retry(d, retry_of(1)) == errc::db_unavailable);
  script->throw_on_retry = false;
  CHECK(!retry(d, retry_of(1)));
  CHECK(sample("crm_dlq_actions_total{action=\"retry\",outcome=\"ok\"}")
        == 4);
  CHECK(sample("crm_dlq_actions_total{action=\"retry\",outcome=\"failed\"}")
        == 1);
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}

TEST_CASE_METHOD(dlq_fixture, "DLQ: discard and purge") {
  auto d = spawn_dlq(std::chrono::milliseconds{0});
  requester who;
  who.principal = "ops";
  auto h = self->request(d, caf::infinite, atom::discard_v, int64_t{1},
                         std::string{"test data"}, who);
  sched.run();
  h.receive(
    [&](std::vector<storage::dlq_entry_row>& xs) {
      REQUIRE(xs.size() == 1);
      CHECK(xs[0].status == "discarded");
      CHECK(xs[0].discard_reason == "test data");
      CHECK(xs[0].resolved_by == "ops");
    },
    [&](caf::error& e) { FAIL(to_string(e)); });
  auto h2 = self->request(d, caf::infinite, atom::discard_v, int64_t{2},
                          std::string{"x"}, who);
  sched.run();
  h2.receive([&](std::vector<storage::dlq_entry_row>&) { FAIL("discarded"); },
             [&](caf::error& e) { CHECK(e == errc::not_found); });
  auto h3 = self->request(d, caf::infinite, atom::purge_v,
                          std::string{"resolved"},
                          std::string{"2024-01-01T00:00:00Z"}, who);
  sched.run();
  h3.receive([&](int64_t n) { CHECK(n == 7); },
             [&](caf::error& e) { FAIL(to_string(e)); });
  auto h4 = self->request(d, caf::infinite, atom::purge_v,
                          std::string{"pending"},
                          std::string{"2024-01-01T00:00:00Z"}, who);
  sched.run();
  h4.receive([&](int64_t) { FAIL("purged open rows"); },
             [&](caf::error& e) { CHECK(e == errc::bad_request); });
  CHECK(sample("crm_dlq_actions_total{action=\"purge\",outcome=\"ok\"}")
        == 7);
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}
