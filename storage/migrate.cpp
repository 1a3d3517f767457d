// storage::migrate: applies the embedded sql/ migrations under an advisory
// lock, each in its own transaction with its schema_migrations row.
#include "storage/journal.hpp"
#include "storage/migrations.hpp"
#include "storage/pg_util.hpp"

#include <set>

namespace ces::storage {

namespace {

/// pg_advisory_lock key serializing migrations ("ces_migr" in ASCII).
constexpr const char* migration_lock_key = "7166760052338370418";

} // namespace

std::vector<int> migrate(const std::string& database_url,
                         const std::string& partition_interval) {
  auto db = detail::connect(database_url);
  auto& conn = *db->conn;
  detail::require_utf8_database(conn);
  std::set<int> done;
  try {
    pqxx::nontransaction nt{conn};
    // Session lock: instances starting together apply migrations one after
    // the other. Ends with the session at the latest.
    nt.exec(std::string{"SELECT pg_advisory_lock("} + migration_lock_key + ")");
    // Read by migration 0008 (the interval of the partitions it creates).
    nt.exec("SELECT set_config('ces.journal_partition_interval', "
            + nt.quote(partition_interval) + ", false)");
    nt.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text,"
            " applied_at timestamptz DEFAULT now())");
    for (auto row : nt.exec("SELECT version FROM schema_migrations"))
      done.insert(row[0].as<int>());
  } catch (const pqxx::failure& e) {
    throw detail::to_infra_error(e, "migrate: cannot read schema_migrations");
  }
  std::vector<int> applied;
  for (auto& m : embedded_migrations()) {
    if (done.count(m.version) != 0)
      continue;
    try {
      pqxx::work tx{conn, "migration"};
      tx.exec(m.sql);
      tx.exec("INSERT INTO schema_migrations (version, name) VALUES ("
              + pqxx::to_string(m.version) + ", " + tx.quote(m.name) + ")");
      tx.commit();
    } catch (const pqxx::broken_connection& e) {
      throw detail::to_infra_error(e, std::string{"migrate: "} + m.name);
    } catch (const pqxx::in_doubt_error& e) {
      throw detail::to_infra_error(e, std::string{"migrate: "} + m.name);
    } catch (const pqxx::sql_error& e) {
      if (detail::is_infra_sqlstate(e.sqlstate()))
        throw detail::to_infra_error(e, std::string{"migrate: "} + m.name);
      throw std::runtime_error(std::string{"migration "} + m.name
                               + " failed: " + detail::describe(e));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string{"migration "} + m.name
                               + " failed: " + detail::describe(e));
    }
    applied.push_back(m.version);
  }
  try {
    pqxx::nontransaction nt{conn};
    nt.exec(std::string{"SELECT pg_advisory_unlock("} + migration_lock_key
            + ")");
  } catch (const pqxx::failure&) {
    // The migrations are committed; the lock ends with the session anyway.
  }
  return applied;
}

} // namespace ces::storage
