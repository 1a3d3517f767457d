#include "storage/retention.hpp"

#include "storage/audit_write.hpp"
#include "storage/pg_util.hpp"

#include <algorithm>
#include <chrono>
#include <optional>

namespace ces::storage {

namespace {

/// `now` as unix seconds (NULL: the database's clock).
std::optional<double> unix_seconds(const upkeep_clock& now) {
  if (!now)
    return std::nullopt;
  using std::chrono::duration;
  return duration<double>(now->time_since_epoch()).count();
}

/// The cutoff `days` back from `now` (or the database's now()), as
/// timestamptz text, read in its own transaction.
std::string cutoff_text(pqxx::work& tx, int days, const upkeep_clock& now) {
  return tx
    .exec_params1("SELECT (coalesce(to_timestamp($1::float8), now())"
                  " - $2 * interval '1 day')::text",
                  unix_seconds(now), days)[0]
    .as<std::string>();
}

/// One audit_log row saying what retention deleted.
void audit_purge(pqxx::work& tx, const char* action, const std::string& table,
                 int days, const std::string& cutoff, int64_t deleted) {
  audit_entry e;
  e.who.principal = "maintenance";
  e.action = action;
  e.target = table;
  e.parameters = "{\"days\":" + std::to_string(days) + ",\"cutoff\":\""
                 + cutoff + "\"}";
  e.outcome = "ok";
  e.counts = "{\"deleted\":" + std::to_string(deleted) + "}";
  insert_audit(tx, e);
}

} // namespace

struct retention_store::impl {
  explicit impl(std::string url)
    : session(std::move(url), "retention",
              std::vector<std::string>{"SET TimeZone = 'UTC'"},
              60000) {
    // nop
  }

  detail::store_session session;

  /// Runs `delete_batch(tx, cutoff)` (one transaction each) until it
  /// deletes fewer than `batch` rows; then one audit row when anything
  /// went. Returns the rows deleted.
  template <class F>
  int64_t purge(const char* what, const char* action, const char* table,
                int days, int batch, const upkeep_clock& now,
                F delete_batch) {
    if (days <= 0)
      return 0;
    batch = std::max(1, batch);
    auto cutoff = session.run(what, [&](pqxx::work& tx) {
      return cutoff_text(tx, days, now);
    });
    int64_t total = 0;
    for (;;) {
      auto n = session.run(what, [&](pqxx::work& tx) {
        return delete_batch(tx, cutoff, batch);
      });
      total += n;
      if (n < batch)
        break;
    }
    if (total > 0)
      session.run(what, [&](pqxx::work& tx) {
        audit_purge(tx, action, table, days, cutoff, total);
        return 0;
      });
    return total;
  }
};

retention_store::retention_store(std::string database_url)
  : impl_(std::make_unique<impl>(std::move(database_url))) {
  // nop
}

retention_store::~retention_store() = default;

int64_t retention_store::purge_dlq(int days, int batch, upkeep_clock now) {
  return impl_->purge(
    "cannot purge old DLQ rows", "retention.dlq", "event_dlq", days, batch,
    now, [](pqxx::work& tx, const std::string& cutoff, int limit) {
      // event_dlq_closed_updated_at_idx (sql/0010) finds the rows.
      auto r = tx.exec_params(
        "DELETE FROM event_dlq WHERE id IN ("
        " SELECT id FROM event_dlq"
        " WHERE status IN ('resolved', 'discarded')"
        "   AND updated_at < $1::timestamptz"
        " ORDER BY updated_at LIMIT $2)",
        cutoff, limit);
      return static_cast<int64_t>(r.affected_rows());
    });
}

int64_t retention_store::purge_audit(int days, int batch, upkeep_clock now) {
  return impl_->purge(
    "cannot purge old audit rows", "retention.audit", "audit_log", days,
    batch, now, [](pqxx::work& tx, const std::string& cutoff, int limit) {
      // The trigger of sql/0010 lets this transaction delete the rows older
      // than the cutoff it declares, and only those.
      tx.exec_params("SELECT set_config('ces.audit_retention_cutoff', $1,"
                     " true)",
                     cutoff);
      auto r = tx.exec_params(
        "DELETE FROM audit_log WHERE id IN ("
        " SELECT id FROM audit_log WHERE at < $1::timestamptz"
        " ORDER BY at LIMIT $2)",
        cutoff, limit);
      return static_cast<int64_t>(r.affected_rows());
    });
}

} // namespace ces::storage
