// The partitioned journal's upkeep (issue 13): partitions created ahead of
// the database clock and dropped whole by retention. No CAF; pqxx behind a
// pimpl. SQL side: sql/0008_partitioned_journal.sql (journal_partitions,
// ces_journal_ensure_partitions()).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ces::storage {

/// A time for the upkeep functions: the database's clock (now()) when empty,
/// else this time (tests: a simulated clock).
using upkeep_clock = std::optional<std::chrono::system_clock::time_point>;

/// One row of journal_partitions.
struct journal_partition {
  std::string name;
  std::string range_from; // RFC 3339, UTC, inclusive
  std::string range_to;   // exclusive
  std::string state;      // attached, detaching, dropped
  std::optional<int64_t> min_id; // recorded when dropped
  std::optional<int64_t> max_id;
  std::optional<int64_t> row_count;
};

/// Creates and drops event_journal's partitions. Owns one connection.
class journal_partitions {
public:
  /// Connects lazily. Throws infra_error when PostgreSQL is unreachable.
  explicit journal_partitions(std::string database_url);
  ~journal_partitions();

  /// Creates the missing partitions for [now - 1 interval, now + `ahead`
  /// intervals] (`interval`: "day" or "month"), never before the end of a
  /// range retention dropped. Returns how many it created.
  int ensure_ahead(const std::string& interval, int ahead,
                   upkeep_clock now = {});

  /// Drops the attached partitions whose whole range ends at or before
  /// now - `retention_days` (DETACH ... CONCURRENTLY, then DROP TABLE), after
  /// recording their id range and row count; finishes a drop an earlier run
  /// left half done. Returns the partitions dropped by this call.
  std::vector<journal_partition> drop_expired(int retention_days,
                                              upkeep_clock now = {});

  /// Every row of journal_partitions, oldest range first.
  std::vector<journal_partition> list();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
