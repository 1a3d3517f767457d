#include "storage/dlq_stats.hpp"

#include "storage/pg_util.hpp"

// The rows event_dlq_open_idx (sql/0006) covers.
#define OPEN_ROWS "status IN ('pending', 'retried', 'failed')"

namespace ces::storage {

namespace {

std::vector<topic_count> counts(pqxx::work& tx, const char* sql) {
  std::vector<topic_count> out;
  for (const auto& row : tx.exec(sql)) {
    topic_count c;
    c.topic = row[0].as<std::string>();
    c.count = row[1].as<uint64_t>();
    out.push_back(std::move(c));
  }
  return out;
}

} // namespace

dlq_stats::dlq_stats(std::string database_url, int statement_timeout_ms)
  : session_(std::make_unique<detail::store_session>(
    std::move(database_url), "dlq_alerts",
    std::vector<std::string>{"SET TimeZone = 'UTC'"}, statement_timeout_ms)) {
  // nop
}

dlq_stats::~dlq_stats() = default;

bool dlq_stats::connected() const {
  return session_->connected();
}

dlq_figures dlq_stats::read(int64_t window_s) {
  return session_->run("cannot read the DLQ's figures", [&](pqxx::work& tx) {
    // Every figure from one snapshot.
    tx.exec0("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    dlq_figures f;
    // "Pending" for alerts is every open row (pending, retried, failed:
    // automatic retry giving up is no recovery). The partial index
    // event_dlq_open_idx covers them, event_dlq_received_at_idx the window.
    auto head = tx.exec_params1(
      "SELECT (SELECT count(*) FROM event_dlq WHERE " OPEN_ROWS "),"
      " (SELECT count(*) FROM event_dlq"
      "   WHERE received_at > now() - $1 * interval '1 second'),"
      " to_char(now() AT TIME ZONE 'UTC',"
      "         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
      window_s);
    f.pending = head[0].as<int64_t>();
    f.new_in_window = head[1].as<int64_t>();
    f.now = head[2].as<std::string>();
    if (f.pending == 0)
      return f;
    f.by_error_class = counts(
      tx, "SELECT error_class, count(*) FROM event_dlq"
          " WHERE " OPEN_ROWS " GROUP BY error_class"
          " ORDER BY count(*) DESC, error_class");
    f.by_topic = counts(tx, "SELECT topic, count(*) FROM event_dlq"
                            " WHERE " OPEN_ROWS " GROUP BY topic"
                            " ORDER BY count(*) DESC, topic LIMIT 50");
    for (const auto& row :
         tx.exec("SELECT id FROM event_dlq WHERE " OPEN_ROWS
                 " ORDER BY id DESC LIMIT 10"))
      f.sample_ids.push_back(row[0].as<int64_t>());
    return f;
  });
}

} // namespace ces::storage
