// PostgreSQL access for the ingestion path. No CAF. pqxx stays behind a pimpl
// so that including this header is cheap.
#pragma once

#include "storage/model.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ces::storage {

/// An infrastructure failure (connection lost, server shutting down,
/// serialization failure, ...): the batch must be retried as a whole, and
/// nothing may be acknowledged.
class infra_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The database cannot hold the journal's text: its server encoding is not
/// UTF8. Not retryable; the service refuses to start.
class encoding_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Applies the numbered migrations of sql/ (embedded in the binary) that are
/// not yet recorded in schema_migrations, each in its own transaction, under a
/// PostgreSQL advisory lock. Returns the versions it applied (empty when the
/// schema was already current). Throws infra_error when PostgreSQL is
/// unreachable, encoding_error when the database is not UTF8 (checked
/// first), std::runtime_error when a migration fails.
/// `partition_interval` ("day" or "month"; setting journal-partition-interval)
/// is the interval of the journal partitions migration 0008 creates for the
/// rows of an unpartitioned journal.
std::vector<int> migrate(const std::string& database_url,
                         const std::string& partition_interval = "day");

/// Moves the offsets that releases before migration 0003 stored for
/// `group_id` (legacy_group_offsets, which has no cluster id) into
/// journal_offsets under `cluster_id`, keeping the greater offset where both
/// exist, and deletes them from the legacy table, in one transaction.
/// Idempotent; instances starting together adopt each row once. Returns the
/// number of rows adopted. Throws infra_error when PostgreSQL is unreachable.
size_t adopt_group_offsets(const std::string& database_url,
                           const std::string& cluster_id,
                           const std::string& group_id);

/// Whether releases before migration 0003 left offsets of `group_id` that no
/// start has adopted yet (adopt_group_offsets()). Throws infra_error when
/// PostgreSQL is unreachable.
bool legacy_offsets_pending(const std::string& database_url,
                            const std::string& group_id);

/// Writes batches: one transaction per batch holding the journal rows (COPY),
/// the DLQ rows and the journal's next offsets (journal_offsets, keyed by the
/// Kafka cluster id, topic and partition: the same for every group).
class journal_writer {
public:
  /// Connects. Throws infra_error when PostgreSQL is unreachable.
  /// keep_raw: write payload_raw (setting journal-keep-raw);
  /// partition_interval: "day" or "month" (setting
  /// journal-partition-interval), the interval of a partition a batch
  /// creates when none holds now() (the clock jumped past the partitions
  /// created ahead).
  journal_writer(const std::string& database_url, std::string cluster_id,
                 bool keep_raw = true,
                 std::string partition_interval = "day");
  ~journal_writer();
  journal_writer(const journal_writer&) = delete;
  journal_writer& operator=(const journal_writer&) = delete;

  /// Persists one batch in one transaction; see persist_outcome. Records of a
  /// partition whose stored next offset is already past them are skipped
  /// (another member of the group, or another group, journalled them). Rows PostgreSQL refuses
  /// are isolated and dead-lettered as db_rejected. Each row keeps the value
  /// as received in payload_raw (unless made with keep_raw false:
  /// setting journal-keep-raw=0). A recorded replay of a bulk job
  /// (replays.job_id) is journalled with replay_job; a second record of the
  /// same (job, event), in the journal or earlier in the batch, is not
  /// journalled (persist_outcome::replay_duplicates). Throws infra_error on
  /// infrastructure failures (after which the writer reconnects on next use).
  persist_outcome write(const std::vector<checked_record>& batch);

  /// True when the connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Reads the journal's next offsets of `topics` (all partitions) on the Kafka
/// cluster `cluster_id`. Throws infra_error when PostgreSQL is unreachable.
std::vector<partition_offset> load_offsets(const std::string& database_url,
                                           const std::string& cluster_id,
                                           const std::vector<std::string>& topics);

} // namespace ces::storage
