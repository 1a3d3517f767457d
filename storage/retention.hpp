// Retention of the operator tables (issue 13): resolved/discarded DLQ rows
// and audit_log rows older than their settings are deleted in small batches
// (one transaction per batch), never in one long DELETE. No CAF.
#pragma once

#include "storage/partitions.hpp" // upkeep_clock

#include <cstdint>
#include <memory>
#include <string>

namespace ces::storage {

class retention_store {
public:
  /// Connects lazily. Throws infra_error when PostgreSQL is unreachable.
  explicit retention_store(std::string database_url);
  ~retention_store();

  /// Deletes event_dlq rows with status resolved or discarded whose
  /// updated_at is older than now - `days`, `batch` rows per transaction.
  /// Returns the number deleted.
  int64_t purge_dlq(int days, int batch, upkeep_clock now = {});

  /// Deletes audit_log rows whose `at` is older than now - `days`, `batch`
  /// rows per transaction (the only deletion audit_log allows). Returns
  /// the number deleted.
  int64_t purge_audit(int days, int batch, upkeep_clock now = {});

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
