// The JOURNAL and the REPLAYER actors against a throwaway PostgreSQL and
// crm-mock-broker, in a real actor system: tenant scope (a row the scope does
// not see answers like a missing one), the per-tenant replay budget (429 with
// a retry-after, accepted count within the burst), the replay record and its
// audit rows, and nothing published when the record cannot be written.
#include "actors/journal.hpp"
#include "actors/replayer.hpp"
#include "api/metrics.hpp"
#include "storage/journal.hpp"
#include "storage/partitions.hpp"
#include "tests/integration/storage_test_util.hpp"
#include "tests/support/process.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <sstream>

using namespace std::chrono_literals;
using namespace ces;
using namespace ces::test;

namespace {

const std::string topic = "apexflow.jobs.created";

struct config : caf::actor_system_config {
  config() {
    add_message_types<caf::id_block::ces>();
    add_message_types<caf::id_block::ces_actors>();
    add_error_category(caf::atom("ces"), render_errc);
  }
};

/// crm-mock-broker as a child process.
class mock_broker {
public:
  mock_broker() {
    proc_ = std::make_unique<child_process>(std::vector<std::string>{
      CES_MOCK_BROKER_BIN, "--topics", topic, "--partitions", "3"});
    auto line = proc_->wait_for_line(stream::out, "bootstrap=", 15s);
    INFO(proc_->describe());
    REQUIRE(line);
    bootstrap_ = line->substr(line->find('=') + 1);
  }
  const std::string& bootstrap() const {
    return bootstrap_;
  }

private:
  std::unique_ptr<child_process> proc_;
  std::string bootstrap_;
};

tenant_scope scope_of(std::vector<std::string> tenants) {
  tenant_scope s;
  if (tenants == std::vector<std::string>{"*"})
    s.all = true;
  else
    s.tenants = std::move(tenants); // sorted by the callers
  return s;
}

requester who(const std::string& name, std::vector<std::string> tenants) {
  requester r;
  r.principal = name;
  r.role = "operator";
  r.scope = scope_of(std::move(tenants));
  r.request_id = "req-" + name;
  r.client_addr = "127.0.0.1";
  return r;
}

/// A replay's answer: the result, or the error.
struct outcome {
  std::optional<replay_result> ok;
  caf::error err;
};

outcome replay(caf::scoped_actor& self, const replayer_actor& r, int64_t id,
               const requester& by) {
  outcome out;
  self->request(r, 30s, atom::replay_v, id, by)
    .receive([&](replay_result& x) { out.ok = std::move(x); },
             [&](caf::error& e) { out.err = std::move(e); });
  return out;
}

/// Journals one event of `tenant` (partition 0) and returns its id.
int64_t journal_one(const std::string& url, int64_t offset,
                    const std::string& tenant) {
  storage::journal_writer w{url, "cluster"};
  w.write({accepted(topic, 0, offset,
                    R"({"tenant_id":")" + tenant + R"("})", tenant)});
  return std::stoll(scalar(url, "SELECT max(id) FROM event_journal"));
}

/// The value of the sample `series` in Prometheus text, or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(series + ' ', 0) == 0)
      return std::stod(l.substr(series.size() + 1));
  return -1;
}

std::string text_of(const caf::error& e) {
  auto t = context_text(e.context());
  return t ? *t : std::string{};
}

} // namespace

TEST_CASE("JOURNAL: reads see only the requester's tenants",
          "[replayer]") {
  auto url = migrated_db();
  auto a = journal_one(url, 0, "t1");
  auto b = journal_one(url, 1, "t2");
  config cfg;
  caf::actor_system sys{cfg};
  auto j = sys.spawn<caf::detached>(journal, url,
                                    storage::journal_reader_options{});
  caf::scoped_actor self{sys};
  auto deadline = [] { return caf::make_timestamp() + 30s; };
  auto get = [&](int64_t id, const tenant_scope& s) {
    std::vector<storage::journal_event> got;
    self->request(j, 30s, atom::get_v, id, s, deadline())
      .receive([&](std::vector<storage::journal_event>& xs) { got = xs; },
               [&](caf::error& e) { FAIL(to_string(e)); });
    return got;
  };
  CHECK(get(a, scope_of({"t1"})).size() == 1);
  CHECK(get(b, scope_of({"t1"})).empty()); // as if it did not exist
  CHECK(get(b, scope_of({"t1", "t2"})).size() == 1);
  CHECK(get(b, scope_of({"*"})).size() == 1);
  CHECK(get(b + 1, scope_of({"*"})).empty());
  CHECK(get(a, tenant_scope{}).empty());
  std::vector<storage::journal_event> page;
  self->request(j, 30s, atom::latest_v, int32_t{10}, scope_of({"t2"}),
                deadline())
    .receive(
      [&](std::vector<storage::journal_event>& xs, bool) { page = xs; },
      [&](caf::error& e) { FAIL(to_string(e)); });
  REQUIRE(page.size() == 1);
  CHECK(page[0].id == b);
  self->send_exit(j, caf::exit_reason::user_shutdown);
}

TEST_CASE("JOURNAL and REPLAYER: an event of a dropped partition is gone",
          "[replayer]") {
  auto url = migrated_db();
  // Two events on a day long past, one today; retention drops that day.
  storage::journal_partitions parts{url};
  parts.ensure_ahead("day", 0, std::chrono::system_clock::from_time_t(
                                 1577966400)); // 2020-01-02 12:00 UTC
  auto old_row = [&](int n) {
    return std::stoll(scalar(url, "INSERT INTO event_journal (tenant_id,"
                                  " topic, partition, \"offset\", payload,"
                                  " received_at) VALUES ('t1', '" + topic
                                    + "', 0, " + std::to_string(n)
                                    + ", '{}', '2020-01-02 10:00+00')"
                                      " RETURNING id"));
  };
  auto gone1 = old_row(0);
  auto gone2 = old_row(1);
  auto live = journal_one(url, 2, "t1");
  REQUIRE_FALSE(parts.drop_expired(30).empty());
  mock_broker broker;
  replayer_settings rs;
  rs.database_url = url;
  rs.producer.bootstrap_servers = broker.bootstrap();
  rs.producer.message_timeout_ms = 10000;
  metrics stats;
  config cfg;
  caf::actor_system sys{cfg};
  auto r = sys.spawn<caf::detached>(replayer, rs, &stats);
  auto j = sys.spawn<caf::detached>(journal, url,
                                    storage::journal_reader_options{});
  caf::scoped_actor self{sys};
  auto get = [&](int64_t id) {
    caf::error err;
    std::vector<storage::journal_event> got;
    self
      ->request(j, 30s, atom::get_v, id, scope_of({"t1"}),
                caf::make_timestamp() + 30s)
      .receive([&](std::vector<storage::journal_event>& xs) { got = xs; },
               [&](caf::error& e) { err = std::move(e); });
    return std::make_pair(got.size(), err);
  };
  for (auto id : {gone1, gone2}) {
    auto x = replay(self, r, id, who("ops1", {"t1"}));
    CHECK(x.err == errc::gone);
    CHECK(text_of(x.err).find("dropped by retention") != std::string::npos);
    CHECK(get(id).second == errc::gone);
  }
  // Another tenant's operator learns no more than that the id is gone.
  CHECK(replay(self, r, gone1, who("ops2", {"t2"})).err == errc::gone);
  // An id never journalled is not found; a live event is there.
  CHECK(replay(self, r, live + 100, who("ops1", {"t1"})).err
        == errc::not_found);
  CHECK(get(live + 100) == std::make_pair(size_t{0}, caf::error{}));
  CHECK(get(live).first == 1);
  CHECK(replay(self, r, live, who("ops1", {"t1"})).ok);
  CHECK(sample(stats.text(),
               "crm_replays_total{outcome=\"gone\",topic=\"unknown\"}")
        == 3);
  CHECK(count(url, "SELECT count(*) FROM replays") == 1);
  self->send_exit(r, caf::exit_reason::user_shutdown);
  self->send_exit(j, caf::exit_reason::user_shutdown);
}

TEST_CASE("REPLAYER: scope, per-tenant budget, replay record and audit",
          "[replayer]") {
  auto url = migrated_db();
  auto a = journal_one(url, 0, "t1");
  auto b = journal_one(url, 1, "t2");
  mock_broker broker;
  replayer_settings rs;
  rs.database_url = url;
  rs.producer.bootstrap_servers = broker.bootstrap();
  rs.producer.message_timeout_ms = 10000;
  // A burst of 3, refilled so slowly that no token comes back during the
  // test: exactly 3 replays of a tenant pass.
  rs.replay_rate_per_tenant = 0.001;
  rs.replay_burst_per_tenant = 3;
  metrics stats;
  config cfg;
  caf::actor_system sys{cfg};
  auto r = sys.spawn<caf::detached>(replayer, rs, &stats);
  caf::scoped_actor self{sys};
  auto ops1 = who("ops1", {"t1"});

  SECTION("an event of another tenant is not found, like a missing one") {
    auto other = replay(self, r, b, ops1);
    REQUIRE(other.err);
    CHECK(other.err == errc::not_found);
    CHECK(text_of(other.err) == "no journal event " + std::to_string(b));
    auto missing = replay(self, r, b + 100, ops1);
    CHECK(missing.err == errc::not_found);
    CHECK(text_of(missing.err)
          == "no journal event " + std::to_string(b + 100));
    // Nothing recorded, nothing of tenant t2's budget spent.
    CHECK(count(url, "SELECT count(*) FROM replays") == 0);
    for (int i = 0; i < 3; ++i)
      CHECK(replay(self, r, b, who("ops2", {"t2"})).ok);
  }

  SECTION("a burst gets at most the tenant's budget, then 429") {
    int accepted = 0;
    std::vector<caf::error> refused;
    std::vector<replay_result> results;
    for (int i = 0; i < 10; ++i) {
      auto x = replay(self, r, a, ops1);
      if (x.ok) {
        ++accepted;
        results.push_back(*x.ok);
      } else {
        refused.push_back(x.err);
      }
    }
    CHECK(accepted <= 3);
    CHECK(accepted == 3);
    REQUIRE(refused.size() == 7);
    for (auto& e : refused) {
      CHECK(e == errc::rate_limited);
      CHECK(retry_after_s(e.context()) >= 1);
      CHECK(text_of(e)
            == "replay budget of tenant t1 exhausted (0.001 events/s, "
               "burst 3)");
    }
    // Another tenant's budget is its own; an admin replaying t1's event
    // spends t1's budget (refused too).
    auto admin = who("root", {"*"});
    CHECK(replay(self, r, b, admin).ok);
    CHECK(replay(self, r, a, admin).err == errc::rate_limited);
    CHECK(sample(stats.text(), "crm_replays_throttled_total{tenant=\"t1\"}")
          == 8);

    // Every accepted replay was recorded before it was published, with an
    // audit row in the same transaction, and one for its outcome.
    CHECK(count(url, "SELECT count(*) FROM replays") == 4);
    for (auto& x : results) {
      CHECK(x.event_id == a);
      CHECK(scalar(url, "SELECT event_id || '/' || tenant_id || '/' || topic"
                        " || '/' || principal || '/' || request_id"
                        " FROM replays WHERE replay_id = '"
                          + x.replay_id + "'")
            == std::to_string(a) + "/t1/" + topic + "/ops1/req-ops1");
      auto rows = [&](const std::string& outcome) {
        return count(url, "SELECT count(*) FROM audit_log WHERE action ="
                          " 'replay' AND target = 'event/" + std::to_string(a)
                            + "' AND parameters->>'replay_id' = '"
                            + x.replay_id + "' AND outcome = '" + outcome
                            + "'");
      };
      CHECK(rows("accepted") == 1);
      CHECK(rows("ok") == 1);
      CHECK(scalar(url, "SELECT status || '/' || (counts->>'events') || '/'"
                        " || (parameters->>'offset') FROM audit_log"
                        " WHERE outcome = 'ok' AND parameters->>'replay_id'"
                        " = '" + x.replay_id + "'")
            == "200/1/" + std::to_string(x.offset));
      CHECK(scalar(url, "SELECT xmin::text FROM replays WHERE replay_id = '"
                          + x.replay_id + "'")
            == scalar(url, "SELECT xmin::text FROM audit_log WHERE outcome"
                           " = 'accepted' AND parameters->>'replay_id' = '"
                             + x.replay_id + "'"));
    }
    CHECK(count(url, "SELECT count(*) FROM audit_log WHERE outcome ="
                     " 'refused' AND status = 429 AND action = 'replay'"
                     " AND target = 'event/" + std::to_string(a) + "'")
          == 8);
    CHECK(count(url, "SELECT count(*) FROM audit_log WHERE outcome ="
                     " 'refused' AND principal = 'ops1' AND request_id ="
                     " 'req-ops1' AND tenants = '{t1}'")
          == 7);
  }

  SECTION("no replay is published when it cannot be recorded") {
    auto ops2 = who("ops2", {"t2"});
    auto first = replay(self, r, b, ops2);
    REQUIRE(first.ok);
    exec(url, "ALTER TABLE replays RENAME TO replays_away");
    auto failed = replay(self, r, b, ops2);
    CHECK(failed.err == errc::db_unavailable);
    exec(url, "ALTER TABLE replays_away RENAME TO replays");
    auto next = replay(self, r, b, ops2);
    REQUIRE(next.ok);
    // Same partition, the next offset: nothing was published in between.
    CHECK(next.ok->partition == first.ok->partition);
    CHECK(next.ok->offset == first.ok->offset + 1);
    CHECK(count(url, "SELECT count(*) FROM replays") == 2);
    CHECK(count(url, "SELECT count(*) FROM audit_log WHERE outcome ="
                     " 'accepted'")
          == 2);
  }
  self->send_exit(r, caf::exit_reason::user_shutdown);
}
