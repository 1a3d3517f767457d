// journal_partitions: event_journal's partitions created ahead of the clock
// (ces_journal_ensure_partitions, sql/0008) and dropped whole by retention
// (DETACH ... CONCURRENTLY, then DROP TABLE), with their id range recorded in
// journal_partitions first so that their ids answer `gone`.
#include "storage/partitions.hpp"

#include "storage/journal.hpp"
#include "storage/pg_util.hpp"

#include <stdexcept>

namespace ces::storage {

namespace {

/// pg_try_advisory_lock key of drop_expired ("ces_drop" in ASCII): one
/// instance drops at a time, the others skip the run.
constexpr const char* drop_lock_key = "7162257635946950512";

// RFC 3339 in UTC with microseconds, produced by the server.
#define CES_RFC3339(col)                                                       \
  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

const char* const partition_columns =
  "name, " CES_RFC3339("range_from") ", " CES_RFC3339("range_to")
  ", state, min_id, max_id, row_count";

#undef CES_RFC3339

journal_partition to_partition(const pqxx::row& r) {
  journal_partition p;
  p.name = r[0].as<std::string>();
  p.range_from = r[1].as<std::string>();
  p.range_to = r[2].as<std::string>();
  p.state = r[3].as<std::string>();
  if (!r[4].is_null())
    p.min_id = r[4].as<int64_t>();
  if (!r[5].is_null())
    p.max_id = r[5].as<int64_t>();
  if (!r[6].is_null())
    p.row_count = r[6].as<int64_t>();
  return p;
}

/// The SQL expression of the upkeep time: the server's now(), or `now` as
/// microseconds since the epoch (exact, whatever the session's time zone).
std::string time_sql(const upkeep_clock& now) {
  if (!now)
    return "now()";
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
              now->time_since_epoch())
              .count();
  return "('epoch'::timestamptz + " + std::to_string(us)
         + " * interval '1 microsecond')";
}

void check_interval(const std::string& interval) {
  if (interval != "day" && interval != "month")
    throw std::invalid_argument("journal partition interval must be day or"
                                " month, not '" + interval + "'");
}

} // namespace

struct journal_partitions::impl {
  std::string url;
  std::unique_ptr<detail::pg_session> db;

  pqxx::connection& conn() {
    if (db == nullptr || !db->conn->is_open()) {
      db.reset();
      db = detail::connect_session(
        url,
        {"SET application_name = 'crm-events-sink partitions'",
         "SET TimeZone = 'UTC'",
         // Never wait forever behind a long reader: a CREATE ... PARTITION
         // OF waiting for its lock would queue every COPY and read behind
         // it. A cancelled DETACH ... CONCURRENTLY is finished (FINALIZE)
         // by the next round.
         "SET lock_timeout = '5s'", "SET statement_timeout = '120s'"},
        "journal_partitions");
    }
    return *db->conn;
  }

  /// Runs `f()`; a libpqxx failure drops the connection and becomes an
  /// infra_error naming `what` (the server's message: no secret in it).
  template <class F>
  auto guarded(const char* what, F f) {
    try {
      return f();
    } catch (const pqxx::failure& e) {
      db.reset();
      throw detail::to_infra_error(e, what);
    }
  }

  /// Finishes the drop of `name` (state 'detaching': its id range is
  /// recorded): DETACH (FINALIZE when a concurrent detach was interrupted),
  /// DROP TABLE, state 'dropped'. Returns the row as it is now.
  journal_partition finish_drop(const std::string& name);
};

journal_partition journal_partitions::impl::finish_drop(
  const std::string& name) {
  auto& c = conn();
  {
    pqxx::nontransaction nt{c};
    // Still a partition? Pending: a DETACH ... CONCURRENTLY was interrupted
    // (only FINALIZE may finish it).
    auto res = nt.exec_params(
      "SELECT i.inhdetachpending FROM pg_inherits i"
      " JOIN pg_class c ON c.oid = i.inhrelid"
      " WHERE i.inhparent = 'event_journal'::regclass AND c.relname = $1"
      " AND c.relnamespace = current_schema()::regnamespace",
      name);
    auto quoted = nt.quote_name(name);
    if (!res.empty()) {
      // Outside a transaction block, as CONCURRENTLY requires.
      if (res[0][0].as<bool>())
        nt.exec("ALTER TABLE event_journal DETACH PARTITION " + quoted
                + " FINALIZE");
      else
        nt.exec("ALTER TABLE event_journal DETACH PARTITION " + quoted
                + " CONCURRENTLY");
    }
    nt.exec("DROP TABLE IF EXISTS " + quoted);
  }
  pqxx::work tx{c, "journal_partition_dropped"};
  auto row = tx.exec_params1(
    std::string{"UPDATE journal_partitions SET state = 'dropped',"
                " dropped_at = now() WHERE name = $1 AND state = 'detaching'"
                " RETURNING "}
      + partition_columns,
    name);
  tx.commit();
  return to_partition(row);
}

journal_partitions::journal_partitions(std::string database_url)
  : impl_(std::make_unique<impl>()) {
  impl_->url = std::move(database_url);
}

journal_partitions::~journal_partitions() = default;

int journal_partitions::ensure_ahead(const std::string& interval, int ahead,
                                     upkeep_clock now) {
  check_interval(interval);
  if (ahead < 0)
    throw std::invalid_argument("journal partitions ahead must be >= 0");
  return impl_->guarded("journal partitions ensure_ahead", [&] {
    pqxx::work tx{impl_->conn(), "journal_ensure_ahead"};
    // Month arithmetic in UTC (the session's time zone is UTC).
    auto t = time_sql(now);
    auto step = "interval '1 " + interval + "'";
    // From one interval back, but never into a range retention dropped or
    // is dropping (month partitions with a short retention would otherwise
    // be created again and dropped again every round). A batch whose clock
    // went back creates its own partition.
    auto made = tx.exec1("SELECT ces_journal_ensure_partitions(greatest("
                         + t + " - " + step
                         + ", least(" + t
                         + ", coalesce((SELECT max(range_to)"
                           " FROM journal_partitions WHERE state <>"
                           " 'attached'), '-infinity'))), "
                         + t + " + " + std::to_string(ahead)
                         + " * " + step + ", " + tx.quote(interval) + ")")[0]
                  .as<int>();
    tx.commit();
    return made;
  });
}

std::vector<journal_partition>
journal_partitions::drop_expired(int retention_days, upkeep_clock now) {
  std::vector<journal_partition> out;
  if (retention_days <= 0)
    return out; // keep everything
  return impl_->guarded("journal partitions drop_expired", [&] {
    auto& c = impl_->conn();
    {
      pqxx::nontransaction nt{c};
      if (!nt.exec1(std::string{"SELECT pg_try_advisory_lock("} + drop_lock_key
                    + ")")[0]
             .as<bool>())
        return out; // another instance is dropping
    }
    try {
      // 1. Drops an earlier run left half done; an interrupted DETACH
      // ... CONCURRENTLY first (while one is pending, PostgreSQL refuses to
      // start another on the same table).
      std::vector<std::string> pending;
      {
        pqxx::work tx{c, "journal_partitions_pending"};
        for (auto row : tx.exec(
               "SELECT p.name FROM journal_partitions p"
               " LEFT JOIN (pg_inherits i JOIN pg_class r"
               " ON r.oid = i.inhrelid"
               " AND r.relnamespace = current_schema()::regnamespace)"
               " ON i.inhparent = 'event_journal'::regclass"
               " AND r.relname = p.name"
               " WHERE p.state = 'detaching'"
               " ORDER BY coalesce(i.inhdetachpending, false) DESC,"
               " p.range_from"))
          pending.push_back(row[0].as<std::string>());
        tx.commit();
      }
      for (auto& name : pending)
        out.push_back(impl_->finish_drop(name));
      // 2. Expired partitions: their id range first (while the rows are
      // there), in the same transaction as the state change.
      std::vector<std::string> expired;
      {
        pqxx::work tx{c, "journal_partitions_expired"};
        for (auto row : tx.exec(
               "SELECT name FROM journal_partitions WHERE state = 'attached'"
               " AND range_to <= " + time_sql(now) + " - "
               + std::to_string(retention_days) + " * interval '1 day'"
               " ORDER BY range_from"))
          expired.push_back(row[0].as<std::string>());
        tx.commit();
      }
      for (auto& name : expired) {
        pqxx::work tx{c, "journal_partition_detaching"};
        auto quoted = tx.quote_name(name);
        auto n = tx.exec(
          "WITH s AS (SELECT min(id) AS lo, max(id) AS hi, count(*) AS n"
          " FROM " + quoted + ")"
          " UPDATE journal_partitions SET state = 'detaching',"
          " min_id = s.lo, max_id = s.hi, row_count = s.n FROM s"
          " WHERE name = " + tx.quote(name) + " AND state = 'attached'");
        tx.commit();
        if (n.affected_rows() == 1)
          out.push_back(impl_->finish_drop(name));
      }
    } catch (...) {
      if (impl_->db != nullptr && impl_->db->conn->is_open()) {
        try {
          pqxx::nontransaction nt{c};
          nt.exec(std::string{"SELECT pg_advisory_unlock("} + drop_lock_key
                  + ")");
        } catch (const pqxx::failure&) {
          // The lock ends with the session.
        }
      }
      throw;
    }
    pqxx::nontransaction nt{c};
    nt.exec(std::string{"SELECT pg_advisory_unlock("} + drop_lock_key + ")");
    return out;
  });
}

std::vector<journal_partition> journal_partitions::list() {
  return impl_->guarded("journal partitions list", [&] {
    pqxx::read_transaction tx{impl_->conn(), "journal_partitions_list"};
    std::vector<journal_partition> out;
    for (auto row : tx.exec(std::string{"SELECT "} + partition_columns
                            + " FROM journal_partitions"
                              " ORDER BY range_from, id"))
      out.push_back(to_partition(row));
    return out;
  });
}

} // namespace ces::storage
