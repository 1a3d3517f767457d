// Changing event_dlq: fixing a dead letter into the journal, republishing
// it, discarding, purging, and automatic retry with backoff
// (sql/0006_dead_letters.sql). No CAF; pqxx stays behind a pimpl.
//
// Every status change is written with its audit_log row in the same
// transaction. A row is retried or discarded only while it is open
// (pending, failed, or retried whose republish outcome is unknown for
// longer than republish_stale); resolved and discarded rows are closed.
//
// Retry into the journal is one transaction: the DLQ row is locked (FOR
// UPDATE), its bytes (or the ones given) are validated again exactly as
// ingestion validates them (check_record, with the row's headers), the
// journal row is inserted with dlq_id = the DLQ row's id (unique: a DLQ
// row becomes at most one journal row) and the DLQ row is marked resolved;
// a kill -9 between the two cannot be observed. Bytes that fail (or a row
// PostgreSQL refuses: a trigger, a constraint, SQLSTATE classes 22, 23, 54,
// P0; the INSERT is rolled back to a savepoint) leave the journal untouched
// and count one more attempt on the DLQ row instead (error_class of the
// validation, or db_rejected with PostgreSQL's message). The journal row
// copies the DLQ row's topic, coordinates (-1 for coordinates a DLQ row
// never had: the journal's are NOT NULL), key, headers and Kafka timestamp;
// replay_of and replay_job stay NULL.
#pragma once

#include "storage/journal_reader.hpp"
#include "storage/model.hpp"
#include "storage/validate.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ces::storage {

/// How a DLQ action ended.
enum class dlq_outcome : uint8_t {
  ok,            // done: resolved (retry) or discarded
  not_found,     // no such row, or the scope does not see it
  closed,        // resolved or discarded already, or being republished
  still_invalid, // retry: the bytes fail validation again (attempts + 1)
  out_of_scope,  // retry: the fixed payload's tenant is outside the scope
};

/// "ok", "not_found", "closed", "still_invalid", "out_of_scope".
const char* to_string(dlq_outcome o) noexcept;

/// The automatic retry policy (settings dlq-*).
struct dlq_retry_policy {
  /// Error classes retried automatically.
  std::vector<std::string> classes = {"db_rejected"};
  /// Attempts (ingestion's included) after which a row becomes failed.
  int max_attempts = 5;
  /// Delay before attempt n+1 after n attempts: initial * 2^(n-1), at most
  /// max, times a random factor in [0.5, 1.0] (jitter).
  std::chrono::milliseconds initial{30000};
  std::chrono::milliseconds max{3600000};
};

/// What retry_journal() did.
struct dlq_retry_outcome {
  dlq_outcome outcome = dlq_outcome::not_found;
  /// ok: the journal row written, and its tenant.
  int64_t event_id = 0;
  std::string tenant_id;
  std::string topic;
  /// The row's attempts after this one (0 when not_found).
  int32_t attempts = 0;
  /// still_invalid: the error class (invalid_json, missing_tenant,
  /// db_rejected, ...) and why; closed: the row's status.
  std::string error_class;
  std::string error;
  /// Automatic retry only: the row became failed (max_attempts reached).
  bool gave_up = false;
};

struct dlq_store_options {
  /// statement_timeout of the store's session (0: the server's default).
  int statement_timeout_ms = 30000;
  /// Write payload_raw with retried rows (setting journal-keep-raw).
  bool keep_raw = true;
  /// "day" or "month" (setting journal-partition-interval): the interval of
  /// the journal partition a retry creates when none holds now().
  std::string partition_interval = "day";
  /// A row left 'retried' (republish started, outcome unknown) for longer
  /// than this is open again.
  std::chrono::milliseconds republish_stale{60000};
  /// How ingestion validates (settings max-payload-bytes, max-json-depth).
  validation_limits limits;
  /// discard() returns the row with its payload cut to this many bytes, as
  /// journal_reader_options::max_dlq_payload_bytes (0: no limit).
  size_t max_dlq_payload_bytes = 64 * 1024;
};

/// event_dlq changes over one connection of its own. Connects lazily, and
/// again on the next call after a failure. Not thread-safe. Errors:
/// infra_error (PostgreSQL unreachable or a statement failed).
class dlq_store {
public:
  explicit dlq_store(std::string database_url, dlq_store_options opts = {});
  ~dlq_store();
  dlq_store(const dlq_store&) = delete;
  dlq_store& operator=(const dlq_store&) = delete;

  /// The row `id` with its whole payload (never truncated) when `scope`
  /// sees it.
  std::optional<dlq_entry_row> load(int64_t id, const tenant_scope& scope);

  /// Retries row `id` into the journal (see the file comment): `bytes`
  /// replace the stored payload when given. `who` is audited (action
  /// dlq.retry, or dlq.auto_retry when `policy` is given); with `policy`
  /// (automatic retry) a failure schedules next_attempt_at by its backoff,
  /// or marks the row failed at max_attempts, resolved_by is "auto-retry"
  /// when who.principal is empty, resolution is auto, and who.scope is not
  /// checked (the service retries every row due_for_retry() names).
  dlq_retry_outcome retry_journal(int64_t id,
                                  const std::optional<std::string>& bytes,
                                  const requester& who,
                                  const dlq_retry_policy* policy = nullptr);

  /// Republish, step 1: marks an open row `retried` (attempts + 1) and
  /// returns it whole, for publishing; nullopt with `outcome` set when it
  /// is not found or closed.
  std::optional<dlq_entry_row> begin_republish(int64_t id,
                                               const requester& who,
                                               dlq_outcome& outcome);

  /// Republish, step 2: `delivered` marks the row resolved (resolution
  /// republish); otherwise it is pending again with `error`. Audited.
  void finish_republish(int64_t id, bool delivered, const std::string& error,
                        const requester& who);

  /// Discards an open row with `reason` (status discarded). The row after
  /// the change when ok.
  std::optional<dlq_entry_row> discard(int64_t id, const std::string& reason,
                                       const requester& who,
                                       dlq_outcome& outcome);

  /// Discards every open row of `ids` the scope sees, in one transaction
  /// with one audit row; the number discarded.
  int64_t discard_many(const std::vector<int64_t>& ids,
                       const std::string& reason, const requester& who);

  /// Deletes rows of `status` (resolved or discarded) whose updated_at is
  /// before `before` (RFC 3339), in batches of `batch` rows per
  /// transaction; one audit row at the end. The number deleted.
  int64_t purge(const std::string& status, const std::string& before,
                const requester& who, int batch = 5000);

  /// Ids of at most `limit` pending rows of the policy's classes whose
  /// next attempt is due (next_attempt_at, or received_at + initial when
  /// none is set), oldest first. Pending rows of the classes that already
  /// reached max_attempts (manual retries) become failed first, with one
  /// audit row.
  std::vector<int64_t> due_for_retry(const dlq_retry_policy& policy,
                                     int limit);

  /// True when the connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
