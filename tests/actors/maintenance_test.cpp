// MAINTENANCE on the deterministic coordinator with a fake backend: what a
// round calls with which settings, the timer, failures, the metrics.
#include "actors/errc.hpp"
#include "actors/maintenance.hpp"
#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "fixture.hpp"
#include "storage/journal.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using namespace ces;

namespace {

struct fake_store {
  /// Every call, e.g. "ensure_ahead(month,5)".
  std::vector<std::string> calls;
  /// Steps that throw (by name) until cleared.
  std::set<std::string> failing;
  int created = 0;
  std::vector<storage::journal_partition> expired;
  int64_t dlq_rows = 0;
  int64_t audit_rows = 0;
  std::vector<storage::journal_partition> partitions;

  void call(const std::string& c, const std::string& step) {
    calls.push_back(c);
    if (failing.count(step) != 0)
      throw storage::infra_error("cannot reach PostgreSQL: connection "
                                 "refused");
  }

  size_t count(const std::string& step) const {
    size_t n = 0;
    for (auto& c : calls)
      if (c.rfind(step + "(", 0) == 0)
        ++n;
    return n;
  }
};

storage::journal_partition part(std::string name, std::string state,
                                std::optional<int64_t> rows = std::nullopt) {
  storage::journal_partition p;
  p.name = std::move(name);
  p.range_from = "2026-01-01T00:00:00Z";
  p.range_to = "2026-01-02T00:00:00Z";
  p.state = std::move(state);
  p.row_count = rows;
  if (rows) {
    p.min_id = 1;
    p.max_id = *rows;
  }
  return p;
}

struct maintenance_fixture : ces::test::fixture {
  std::shared_ptr<fake_store> fs = std::make_shared<fake_store>();
  metrics stats;
  maintenance_settings cfg;
  maintenance_actor hdl;
  std::ostringstream log_lines;

  maintenance_fixture() {
    log::redirect(&log_lines);
    cfg.partition_interval = "month";
    cfg.partitions_ahead = 5;
    cfg.journal_retention_days = 30;
    cfg.dlq_retention_days = 7;
    cfg.audit_retention_days = 365;
    cfg.batch = 2;
    cfg.interval = 10s;
  }

  void start() {
    auto f = fs;
    maintenance_backend be;
    be.ensure_ahead = [f](const std::string& interval, int ahead) {
      f->call("ensure_ahead(" + interval + "," + std::to_string(ahead) + ")",
              "ensure_ahead");
      return f->created;
    };
    be.drop_expired = [f](int days) {
      f->call("drop_expired(" + std::to_string(days) + ")", "drop_expired");
      return f->expired;
    };
    be.list = [f] {
      f->call("list()", "list");
      return f->partitions;
    };
    be.purge_dlq = [f](int days, int batch) {
      f->call("purge_dlq(" + std::to_string(days) + ","
                + std::to_string(batch) + ")",
              "purge_dlq");
      return f->dlq_rows;
    };
    be.purge_audit = [f](int days, int batch) {
      f->call("purge_audit(" + std::to_string(days) + ","
                + std::to_string(batch) + ")",
              "purge_audit");
      return f->audit_rows;
    };
    hdl = sys.spawn(maintenance, cfg, be, &stats);
    sched.run();
  }

  ~maintenance_fixture() {
    self->send_exit(hdl, caf::exit_reason::kill);
    sched.run();
    log::redirect(nullptr);
  }

  bool logged(const std::string& text) const {
    return log_lines.str().find(text) != std::string::npos;
  }

  /// Advances the clock by `dt` in steps of 1 s, running what is due.
  void pass(std::chrono::seconds dt) {
    for (auto t = 0s; t < dt; t += 1s) {
      advance_time(1s);
      sched.run();
    }
  }

  double sample(const std::string& series) {
    // A sample line, not the # HELP / # TYPE lines naming the family.
    auto text = "\n" + stats.text();
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos)
      return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }

  /// Runs one round through (atom::run).
  caf::expected<int64_t> run_now() {
    auto h = self->request(hdl, caf::infinite, atom::run_v);
    sched.run();
    caf::expected<int64_t> out{caf::make_error(caf::sec::runtime_error)};
    h.receive([&](int64_t n) { out = n; },
              [&](caf::error& e) { out = std::move(e); });
    return out;
  }
};

} // namespace

TEST_CASE_METHOD(maintenance_fixture,
                 "MAINTENANCE: a round at start runs every step with the "
                 "settings' values, then one per interval") {
  fs->created = 2;
  fs->expired = {part("event_journal_p20260101", "dropped", 40),
                 part("event_journal_p20260102", "dropped", 2)};
  fs->dlq_rows = 5;
  fs->audit_rows = 3;
  fs->partitions = {part("a", "attached"), part("b", "attached"),
                    part("c", "dropped"), part("d", "attached")};
  start();
  CHECK(fs->calls
        == std::vector<std::string>{"ensure_ahead(month,5)", "list()",
                                    "drop_expired(30)", "purge_dlq(7,2)",
                                    "purge_audit(365,2)", "list()"});
  CHECK(sample("crm_journal_partitions") == 3);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 1);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 0);
  CHECK(sample(R"(crm_retention_deleted_total{table="event_journal"})")
        == 42);
  CHECK(sample(R"(crm_retention_deleted_total{table="event_dlq"})") == 5);
  CHECK(sample(R"(crm_retention_deleted_total{table="audit_log"})") == 3);
  CHECK(logged("partitions_created count=2"));
  CHECK(logged("partition_dropped name=event_journal_p20260101"
               " range=2026-01-01T00:00:00Z..2026-01-02T00:00:00Z"
               " min_id=1 max_id=40 rows=40"));
  CHECK(logged("dlq_retention_purged deleted=5 days=7"));
  CHECK(logged("audit_purged deleted=3 days=365"));
  CHECK_FALSE(logged("maintenance_failed"));
  fs->calls.clear();
  pass(9s);
  CHECK(fs->calls.empty());
  pass(1s);
  CHECK(fs->count("ensure_ahead") == 1);
  CHECK(fs->count("purge_audit") == 1);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 2);
  pass(10s);
  CHECK(fs->count("ensure_ahead") == 2);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 3);
}

TEST_CASE_METHOD(maintenance_fixture,
                 "MAINTENANCE: retention 0 drops and purges nothing") {
  cfg.journal_retention_days = 0;
  cfg.dlq_retention_days = 0;
  cfg.audit_retention_days = 0;
  start();
  CHECK(fs->calls
        == std::vector<std::string>{"ensure_ahead(month,5)", "list()"});
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 1);
  pass(10s);
  CHECK(fs->calls
        == std::vector<std::string>{"ensure_ahead(month,5)", "list()",
                                    "ensure_ahead(month,5)", "list()"});
}

TEST_CASE_METHOD(maintenance_fixture,
                 "MAINTENANCE: a failing step is counted, the others still "
                 "run, and the next tick tries again") {
  fs->failing = {"ensure_ahead", "purge_dlq"};
  fs->audit_rows = 4;
  fs->partitions = {part("a", "attached")};
  start();
  // Every step was tried although two failed.
  CHECK(fs->calls
        == std::vector<std::string>{"ensure_ahead(month,5)",
                                    "drop_expired(30)", "purge_dlq(7,2)",
                                    "purge_audit(365,2)", "list()"});
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 1);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 0);
  CHECK(sample(R"(crm_retention_deleted_total{table="audit_log"})") == 4);
  CHECK(logged("maintenance_failed step=ensure_ahead error=\"cannot reach"
               " PostgreSQL: connection refused\""));
  CHECK(logged("maintenance_failed step=purge_dlq"));
  pass(10s); // still failing: counted again, the actor lives on
  CHECK(fs->count("ensure_ahead") == 2);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 2);
  fs->failing.clear();
  pass(10s);
  CHECK(fs->count("ensure_ahead") == 3);
  CHECK(fs->count("purge_dlq") == 3);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 1);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 2);
  // Everything down, list included: the gauge keeps its last reading.
  CHECK(sample("crm_journal_partitions") == 1);
  fs->failing = {"ensure_ahead", "drop_expired", "purge_dlq", "purge_audit",
                 "list"};
  pass(10s);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 3);
  CHECK(sample("crm_journal_partitions") == 1);
}

TEST_CASE_METHOD(maintenance_fixture,
                 "MAINTENANCE: run answers what the round changed, or "
                 "db_unavailable when a step failed") {
  start();
  fs->created = 1;
  fs->expired = {part("event_journal_p20260101", "dropped", 10)};
  fs->dlq_rows = 2;
  fs->audit_rows = 3;
  auto n = run_now();
  REQUIRE(n);
  CHECK(*n == 1 + 1 + 10 + 2 + 3);
  fs->failing = {"purge_audit"};
  auto failed = run_now();
  REQUIRE_FALSE(failed);
  CHECK(failed.error() == errc::db_unavailable);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="failed"})") == 1);
  CHECK(sample(R"(crm_maintenance_runs_total{outcome="ok"})") == 2);
}
