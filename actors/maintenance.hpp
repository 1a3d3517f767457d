// MAINTENANCE: the partitioned journal's upkeep and the retention settings
// (issue 13). Detached: its storage calls block (one PostgreSQL connection
// per store, never ingestion's). Once at start and then every
// maintenance-interval-s it runs one round:
//   1. ensure_ahead(journal-partition-interval, journal-partitions-ahead):
//      partitions_created (info) when it created any;
//   2. drop_expired(journal-retention-days), unless 0: partition_dropped
//      (info) per partition, its rows counted in
//      crm_retention_deleted_total{table="event_journal"};
//   3. purge_dlq(dlq-retention-days, retention-batch), unless 0: dlq_retention_purged;
//   4. purge_audit(audit-retention-days, retention-batch), unless 0:
//      audit_purged;
//   5. list(): crm_journal_partitions = the attached partitions.
// A step that fails (PostgreSQL down, a lock timeout) is logged
// (maintenance_failed, error level, with the step and the error, never a
// secret) and the later steps still run; the round then counts as failed
// (crm_maintenance_runs_total{outcome="failed"}) and the next tick tries
// again. No failure ends the actor, and no other actor ever waits on it.
#pragma once

#include "actors/interfaces.hpp"
#include "storage/partitions.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ces {

class metrics;

/// The storage calls of a round (storage::journal_partitions and
/// storage::retention_store in production, fakes in the actor tests). Each
/// may throw (storage::infra_error, or any std::exception).
struct maintenance_backend {
  /// Creates the missing partitions ahead; returns how many it created.
  std::function<int(const std::string& interval, int ahead)> ensure_ahead;
  /// Drops the partitions older than `days`; returns them.
  std::function<std::vector<storage::journal_partition>(int days)>
    drop_expired;
  /// Every row of journal_partitions.
  std::function<std::vector<storage::journal_partition>()> list;
  /// Deletes closed DLQ rows older than `days`, `batch` rows per
  /// transaction; returns how many.
  std::function<int64_t(int days, int batch)> purge_dlq;
  /// Deletes audit_log rows older than `days` likewise.
  std::function<int64_t(int days, int batch)> purge_audit;
};

/// The backend on a storage::journal_partitions and a
/// storage::retention_store of its own (both connect lazily), on the
/// database's clock.
maintenance_backend maintenance_backend_on_store(std::string database_url);

struct maintenance_settings {
  /// journal-partition-interval: "day" or "month".
  std::string partition_interval = "day";
  /// journal-partitions-ahead.
  int partitions_ahead = 3;
  /// journal-retention-days, dlq-retention-days, audit-retention-days (0:
  /// that step does not run).
  int journal_retention_days = 0;
  int dlq_retention_days = 0;
  int audit_retention_days = 0;
  /// retention-batch.
  int batch = 1000;
  /// maintenance-interval-s.
  std::chrono::milliseconds interval{300000};
};

struct maintenance_state {
  maintenance_backend backend;
  metrics* stats = nullptr;
  static inline const char* name = "maintenance";
};

maintenance_actor::behavior_type
maintenance(maintenance_actor::stateful_pointer<maintenance_state> self,
            maintenance_settings cfg, maintenance_backend backend,
            metrics* stats);

} // namespace ces
