// Helpers for the storage integration tests: records and fresh, migrated
// databases on the process's throwaway cluster.
#pragma once

#include "storage/journal.hpp"
#include "storage/model.hpp"
#include "tests/support/pg_fixture.hpp"

#include <pqxx/pqxx>

#include <string>
#include <vector>

namespace ces::test {

/// A tenant scope that sees every row (also DLQ rows without a tenant).
inline const tenant_scope every_tenant = [] {
  tenant_scope s;
  s.all = true;
  s.unknown_tenant = true;
  return s;
}();

/// A fresh database of the shared cluster with all migrations applied.
inline std::string migrated_db() {
  auto url = shared_pg().create_database();
  storage::migrate(url);
  return url;
}

inline kafka_record record(const std::string& topic, int32_t partition,
                           int64_t offset, std::string value) {
  kafka_record r;
  r.topic = topic;
  r.partition = partition;
  r.offset = offset;
  r.has_value = true;
  r.value = std::move(value);
  return r;
}

/// An accepted record (as validation would pass it).
inline checked_record accepted(const std::string& topic, int32_t partition,
                               int64_t offset, std::string value,
                               std::string tenant = "t1") {
  checked_record c;
  c.rec = record(topic, partition, offset, std::move(value));
  c.tenant_id = std::move(tenant);
  return c;
}

/// A record validation rejected.
inline checked_record rejected(const std::string& topic, int32_t partition,
                               int64_t offset, std::string value,
                               reject_reason reason, std::string error) {
  checked_record c;
  c.rec = record(topic, partition, offset, std::move(value));
  c.reason = reason;
  c.error = std::move(error);
  return c;
}

/// `n` accepted records of `topic`/`partition` from offset `first`.
inline std::vector<checked_record> good_batch(const std::string& topic,
                                              int32_t partition, int64_t first,
                                              int64_t n) {
  std::vector<checked_record> out;
  for (int64_t o = first; o < first + n; ++o)
    out.push_back(accepted(topic, partition, o,
                           R"({"tenant_id": "t1", "seq": )"
                             + std::to_string(o) + "}"));
  return out;
}

/// First column of the first row of `sql` on `url`, "" for none/NULL.
inline std::string scalar(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::quiet_errorhandler quiet{c};
  pqxx::nontransaction tx{c};
  auto r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null())
    return "";
  return r[0][0].as<std::string>();
}

inline long count(const std::string& url, const std::string& sql) {
  return std::stol(scalar(url, sql));
}

inline void exec(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::quiet_errorhandler quiet{c};
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

/// Terminates every other backend connected to the database of `url`.
inline int terminate_others(const std::string& url) {
  return std::stoi(scalar(
    url, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
         " WHERE datname = current_database() AND pid <> pg_backend_pid()"));
}

inline uint64_t find_count(const std::vector<topic_count>& counts,
                           const std::string& topic,
                           const std::string& reason = "") {
  for (auto& c : counts)
    if (c.topic == topic && c.reason == reason)
      return c.count;
  return 0;
}

} // namespace ces::test
