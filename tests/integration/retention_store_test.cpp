// storage::retention_store against a throwaway PostgreSQL: DLQ and audit
// retention (only the rows they may delete, in batches, one audit row per
// run) and audit_log's trigger after sql/0010 (a DELETE only below the
// cutoff its transaction declares; everything else still refused).
#include "storage/retention.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace ces;
using namespace ces::test;
using storage::retention_store;

namespace {

/// Inserts one event_dlq row with `status`, last changed `age` ago (SQL
/// interval text); returns its id.
int64_t seed_dlq(const std::string& url, const std::string& status,
                 const std::string& age) {
  return std::stoll(scalar(
    url, "INSERT INTO event_dlq (topic, error_class, error, status,"
         " received_at, updated_at) VALUES ('crm', 'invalid_json', 'bad', '"
           + status + "', now() - interval '" + age + "', now() - interval '"
           + age + "') RETURNING id"));
}

/// Inserts one audit_log row written `age` ago; returns its id.
int64_t seed_audit(const std::string& url, const std::string& action,
                   const std::string& age) {
  return std::stoll(scalar(
    url, "INSERT INTO audit_log (at, principal, action, outcome) VALUES"
         " (now() - interval '" + age + "', 'ops', '" + action
           + "', 'ok') RETURNING id"));
}

/// Records the transaction of every row deleted from `table` (to see the
/// batches).
void watch_deletes(const std::string& url, const std::string& table) {
  exec(url, "CREATE TABLE deleted_rows (tx bigint, id bigint);"
            "CREATE FUNCTION note_delete() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN INSERT INTO deleted_rows"
            " VALUES (txid_current(), OLD.id); RETURN OLD; END $$;"
            "CREATE TRIGGER note_delete AFTER DELETE ON " + table
              + " FOR EACH ROW EXECUTE FUNCTION note_delete();");
}

/// Rows per deleting transaction, in order of the transactions.
std::string batch_sizes(const std::string& url) {
  return scalar(url, "SELECT string_agg(n::text, ',' ORDER BY tx) FROM"
                     " (SELECT tx, count(*) AS n FROM deleted_rows"
                     "  GROUP BY tx) b");
}

/// True when `sql` fails with audit_log's append-only refusal.
bool refused(const std::string& url, const std::string& sql) {
  try {
    exec(url, sql);
    return false;
  } catch (const pqxx::sql_error& e) {
    // SQLSTATE 42501 (libpqxx 6.4 leaves sqlstate() empty here).
    CHECK(dynamic_cast<const pqxx::insufficient_privilege*>(&e) != nullptr);
    return std::string(e.what()).find("append-only") != std::string::npos;
  }
}

} // namespace

TEST_CASE("DLQ retention deletes only closed rows older than the cutoff, "
          "in batches",
          "[retention]") {
  auto url = migrated_db();
  std::vector<int64_t> old_closed;
  for (auto status : {"resolved", "discarded", "resolved", "discarded",
                      "resolved"})
    old_closed.push_back(seed_dlq(url, status, "10 days"));
  auto fresh_closed = seed_dlq(url, "resolved", "6 days");
  std::vector<int64_t> open;
  for (auto status : {"pending", "retried", "failed"})
    open.push_back(seed_dlq(url, status, "400 days"));
  watch_deletes(url, "event_dlq");
  retention_store store{url};
  CHECK(store.purge_dlq(0, 2) == 0); // 0: keep
  CHECK(count(url, "SELECT count(*) FROM event_dlq") == 9);
  CHECK(store.purge_dlq(7, 2) == 5);
  // Batches of 2: three transactions (2, 2, 1).
  CHECK(batch_sizes(url) == "2,2,1");
  CHECK(count(url, "SELECT count(*) FROM event_dlq") == 4);
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE id = "
                     + std::to_string(fresh_closed))
        == 1);
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE status IN"
                   " ('pending', 'retried', 'failed')")
        == 3);
  // One audit row for the run.
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE action ="
                   " 'retention.dlq' AND principal = 'maintenance'"
                   " AND target = 'event_dlq' AND outcome = 'ok'"
                   " AND counts = '{\"deleted\": 5}'")
        == 1);
  // Nothing left to delete: no audit row.
  CHECK(store.purge_dlq(7, 2) == 0);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 1);
  // A simulated clock 2 days on: the 6-day-old row is 8 days old.
  auto later = std::chrono::system_clock::now() + std::chrono::hours(48);
  CHECK(store.purge_dlq(7, 1000, later) == 1);
  CHECK(count(url, "SELECT count(*) FROM event_dlq") == 3);
}

TEST_CASE("DLQ retention uses its partial index", "[retention]") {
  auto url = migrated_db();
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  tx.exec("SET enable_seqscan = off");
  std::string text;
  for (auto row :
       tx.exec("EXPLAIN DELETE FROM event_dlq WHERE id IN ("
               " SELECT id FROM event_dlq"
               " WHERE status IN ('resolved', 'discarded')"
               "   AND updated_at < now() ORDER BY updated_at LIMIT 10)"))
    text += row[0].as<std::string>() + "\n";
  CAPTURE(text);
  CHECK(text.find("event_dlq_closed_updated_at_idx") != std::string::npos);
}

TEST_CASE("audit retention deletes only older rows; audit_log stays "
          "append-only otherwise",
          "[retention]") {
  auto url = migrated_db();
  for (int i = 0; i < 5; ++i)
    seed_audit(url, "replay", "400 days");
  seed_audit(url, "replay", "300 days");
  seed_audit(url, "key.create", "1 day");
  watch_deletes(url, "audit_log");
  retention_store store{url};
  CHECK(store.purge_audit(0, 2) == 0);
  // A simulated clock 100 days back: nothing is older than 465 days.
  auto earlier = std::chrono::system_clock::now() - std::chrono::hours(2400);
  CHECK(store.purge_audit(365, 2, earlier) == 0);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 7);
  CHECK(store.purge_audit(365, 2) == 5);
  CHECK(batch_sizes(url) == "2,2,1");
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE action <>"
                   " 'retention.audit'")
        == 2);
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE action ="
                   " 'retention.audit' AND principal = 'maintenance'"
                   " AND counts = '{\"deleted\": 5}'")
        == 1);
  CHECK(store.purge_audit(365, 2) == 0);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 3);

  auto old_id = std::to_string(seed_audit(url, "replay", "500 days"));
  // No cutoff declared: every DELETE is refused, old rows too.
  CHECK(refused(url, "DELETE FROM audit_log"));
  CHECK(refused(url, "DELETE FROM audit_log WHERE id = " + old_id));
  // UPDATE and TRUNCATE stay refused, cutoff or not.
  CHECK(refused(url, "UPDATE audit_log SET outcome = 'forged'"));
  CHECK(refused(url, "BEGIN; SELECT set_config("
                     "'ces.audit_retention_cutoff', now()::text, true);"
                     " UPDATE audit_log SET outcome = 'forged' WHERE id = "
                       + old_id + "; COMMIT"));
  CHECK(refused(url, "TRUNCATE audit_log"));
  // A cutoff covers only the rows older than it: a DELETE touching a newer
  // row fails as a whole.
  CHECK(refused(url, "BEGIN; SELECT set_config("
                     "'ces.audit_retention_cutoff',"
                     " (now() - interval '450 days')::text, true);"
                     " DELETE FROM audit_log; COMMIT"));
  // A cutoff in the future is no licence for recent rows.
  CHECK(refused(url, "BEGIN; SELECT set_config("
                     "'ces.audit_retention_cutoff',"
                     " (now() + interval '1 day')::text, true);"
                     " DELETE FROM audit_log; COMMIT"));
  // Nor is a cutoff less than a day back: the recent history stays.
  auto recent = std::to_string(seed_audit(url, "replay", "2 hours"));
  CHECK(refused(url, "BEGIN; SELECT set_config("
                     "'ces.audit_retention_cutoff',"
                     " (now() - interval '1 hour')::text, true);"
                     " DELETE FROM audit_log WHERE id = " + recent
                       + "; COMMIT"));
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE id = " + recent)
        == 1);
  // The cutoff is local to its transaction.
  {
    pqxx::connection c{url};
    pqxx::quiet_errorhandler quiet{c};
    {
      pqxx::work tx{c};
      tx.exec("SELECT set_config('ces.audit_retention_cutoff',"
              " (now() - interval '450 days')::text, true)");
      tx.exec("DELETE FROM audit_log WHERE id = " + old_id);
      tx.commit();
    }
    CHECK(count(url, "SELECT count(*) FROM audit_log WHERE id = " + old_id)
          == 0);
    auto other = std::to_string(seed_audit(url, "replay", "500 days"));
    pqxx::work tx{c};
    CHECK_THROWS_AS(tx.exec("DELETE FROM audit_log WHERE id = " + other),
                    pqxx::insufficient_privilege);
  }
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 5);
}

TEST_CASE("retention on an unreachable database is an infra_error",
          "[retention]") {
  retention_store store{
    "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"};
  CHECK_THROWS_AS(store.purge_dlq(7, 10), storage::infra_error);
  CHECK_THROWS_AS(store.purge_audit(7, 10), storage::infra_error);
}
