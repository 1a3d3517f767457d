// End-to-end: the MAINTENANCE actor in the real binary. Started with
// journal, DLQ and audit retention and a 1 s maintenance interval against a
// database holding old journal partitions with rows, an old resolved DLQ
// row and an old audit row: the old partitions are dropped whole (their
// bounds recorded), the new rows stay, and the metrics count what went.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

using namespace ces::e2e;

namespace {

const std::string topic = "apexflow.leads.created";

std::string scrape(world& w) {
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  REQUIRE(m.status == 200);
  return m.body;
}

} // namespace

TEST_CASE("retention drops old journal partitions and purges old DLQ and "
          "audit rows",
          "[e2e]") {
  world w{{topic}, 1};
  {
    // A first run creates the schema (and today's partitions).
    auto first = w.start_sink();
    REQUIRE(first.stop().success());
  }
  // Partitions 40 to 38 days back, 50 rows in them (not from Kafka).
  w.value("SELECT ces_journal_ensure_partitions(now() - interval '40 days',"
          " now() - interval '38 days', 'day')");
  w.value("INSERT INTO event_journal (tenant_id, topic, partition, \"offset\","
          " payload, received_at) SELECT 't1', 'archive', 0, g, '{}'::jsonb,"
          " date_trunc('day', now() - interval '39 days')"
          "   + g * interval '10 minutes'"
          " FROM generate_series(1, 50) g");
  auto old_parts = w.count("SELECT count(*) FROM journal_partitions"
                           " WHERE state = 'attached'"
                           "   AND range_to <= now() - interval '30 days'");
  REQUIRE(old_parts >= 2);
  auto first_old_id = w.count("SELECT min(id) FROM event_journal");
  w.value("INSERT INTO event_dlq (topic, error_class, error, status,"
          " updated_at) VALUES ('crm', 'invalid_json', 'bad', 'resolved',"
          " now() - interval '10 days'), ('crm', 'invalid_json', 'bad',"
          " 'pending', now() - interval '10 days')");
  w.value("INSERT INTO audit_log (at, principal, action, outcome) VALUES"
          " (now() - interval '400 days', 'ops', 'replay', 'ok')");
  auto audit_before = w.count("SELECT count(*) FROM audit_log");

  auto sink = w.start_sink({"--journal-retention-days=30",
                            "--dlq-retention-days=7",
                            "--audit-retention-days=365",
                            "--maintenance-interval-s=1"});
  w.produce({"--topics", topic, "--count", "20", "--quiet"});
  REQUIRE(eventually(
    [&] {
      return w.count("SELECT count(*) FROM journal_partitions"
                     " WHERE state = 'dropped'")
             == old_parts;
    },
    30s));
  REQUIRE(eventually(
    [&] { return w.count("SELECT count(*) FROM event_journal") == 20; }, 30s));
  // The old rows are gone with their partitions; the new ones stay.
  CHECK(w.count("SELECT count(*) FROM event_journal WHERE topic = 'archive'")
        == 0);
  CHECK(w.count("SELECT count(*) FROM event_journal WHERE received_at"
                " < now() - interval '30 days'")
        == 0);
  // The dropped partitions' bounds are recorded, their tables gone.
  CHECK(w.count("SELECT sum(row_count) FROM journal_partitions"
                " WHERE state = 'dropped'")
        == 50);
  CHECK(w.count("SELECT min(min_id) FROM journal_partitions"
                " WHERE state = 'dropped'")
        == first_old_id);
  CHECK(w.count("SELECT count(*) FROM journal_partitions p"
                " WHERE state = 'dropped' AND to_regclass(p.name) IS NOT NULL")
        == 0);
  // DLQ: only the closed old row went; audit: the old row went, and a row
  // per purge says what was deleted.
  REQUIRE(eventually(
    [&] { return w.count("SELECT count(*) FROM event_dlq") == 1; }, 30s));
  CHECK(w.value("SELECT status FROM event_dlq") == "pending");
  REQUIRE(eventually(
    [&] {
      return w.count("SELECT count(*) FROM audit_log WHERE action = 'replay'")
             == 0;
    },
    30s));
  CHECK(w.count("SELECT count(*) FROM audit_log WHERE action ="
                " 'retention.dlq' AND principal = 'maintenance'")
        == 1);
  CHECK(w.count("SELECT count(*) FROM audit_log WHERE action ="
                " 'retention.audit'")
        == 1);
  CHECK(audit_before >= 1);

  std::string text;
  REQUIRE(eventually(
    [&] {
      text = scrape(w);
      return metric(text, R"(crm_retention_deleted_total{table="audit_log"})")
             == 1;
    },
    30s));
  CHECK(metric(text, R"(crm_retention_deleted_total{table="event_journal"})")
        == 50);
  CHECK(metric(text, R"(crm_retention_deleted_total{table="event_dlq"})")
        == 1);
  CHECK(metric(text, R"(crm_maintenance_runs_total{outcome="ok"})") >= 1);
  CHECK(metric(text, R"(crm_maintenance_runs_total{outcome="failed"})") == 0);
  CHECK(metric(text, "crm_journal_partitions")
        == w.count("SELECT count(*) FROM journal_partitions"
                   " WHERE state = 'attached'"));
  auto log = ces::test::read_file(w.sink_log());
  CHECK(log.find("partition_dropped") != std::string::npos);
  CHECK(log.find("dlq_retention_purged") != std::string::npos);
  CHECK(log.find("audit_purged") != std::string::npos);
  CHECK(log.find("maintenance_failed") == std::string::npos);
  REQUIRE(sink.stop().success());
}
