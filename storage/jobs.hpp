// Bulk replay jobs in PostgreSQL (table jobs, sql/0005_bulk_replay.sql):
// plans (dry runs), creation, reads, cancellation, and what the JOBS actor
// needs to run them resumably (claim with a lease, batches by id, replays
// rows, progress). No CAF; pqxx stays behind a pimpl.
//
// The set of rows a job covers is fixed at creation: its filter, the
// requester's tenant scope (scope_all, scope_tenants) and upto_id (the
// highest journal id then). Progress is cursor_id: every covered row with
// id <= cursor_id has been handled. A running job belongs to one owner
// (an instance) while its heartbeat is fresh; a job whose heartbeat is older
// than the lease (its owner was killed) is claimed again and resumes at its
// cursor.
//
// Visibility: a requester sees a job when its scope covers the job's scope
// (all tenants sees every job; a tenant list sees jobs created with a subset
// of it); other jobs are answered as missing.
#pragma once

#include "storage/journal.hpp"
#include "storage/model.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ces::storage {

/// create(): more events match than the request's max_events.
class too_many_events : public std::runtime_error {
public:
  too_many_events(int64_t matched, int64_t max);
  int64_t matched;
};

/// One event as a job publishes it.
struct job_event {
  int64_t id = 0;
  std::string tenant_id;
  std::string topic;
  int32_t partition = 0;
  bool has_key = false;
  std::string key; // raw bytes
  std::vector<kafka_header> headers;
  /// payload_raw when journalled (the original bytes), else jsonb's text.
  std::string payload;
  int64_t kafka_timestamp_ms = -1; // -1: none
};

/// A job claimed for running: its row and what selects its events.
struct claimed_job {
  job_row row;
  /// The requester's scope (unknown_tenant included) and role.
  tenant_scope scope;
  std::string role;
  int64_t upto_id = 0;
  int64_t cursor_id = 0;
};

/// What commit_progress() found.
enum class progress_outcome : uint8_t {
  ok,        // committed; go on
  cancelled, // committed; a cancel was requested: finish as cancelled
  lost,      // not committed: the job is no longer ours (lease lost,
             // finished or cancelled by someone else)
};

struct job_store_options {
  /// statement_timeout of the store's session (0: the server's default).
  int statement_timeout_ms = 30000;
  /// A running job whose heartbeat is older is claimed again.
  std::chrono::milliseconds lease{10000};
};

/// Jobs over one connection of its own. Connects lazily, and again on the
/// next call after a failure. Not thread-safe. Errors: infra_error
/// (PostgreSQL unreachable or a statement failed), too_many_events
/// (create).
class job_store {
public:
  /// `owner` names this instance in jobs.owner (e.g. host:pid).
  job_store(std::string database_url, std::string owner,
            job_store_options opts = {});
  ~job_store();
  job_store(const job_store&) = delete;
  job_store& operator=(const job_store&) = delete;

  /// What a replay of `f` within `scope` would cover now: matched, counts
  /// by topic and tenant, first/last received_at and the first `samples`
  /// events (ids and payloads, untransformed).
  replay_plan plan(const event_filter& f, const tenant_scope& scope,
                   int samples = 5);

  /// The first `n` events the filter selects (by id).
  std::vector<job_event> samples(const event_filter& f,
                                 const tenant_scope& scope, int n);

  /// Creates a queued job of `kind` for `req` in one transaction with the
  /// audit row `audit` (its counts and target filled in here): counts the
  /// events (throws too_many_events above req.max_events), fixes upto_id.
  job_row create(const std::string& kind, const replay_request& req,
                 const requester& who, audit_entry audit);

  /// What a bulk DLQ action `req` within `scope` would cover now (open
  /// entries only): matched, counts by error class, topic and tenant ("":
  /// unknown), the first 10 ids.
  dlq_plan plan_dlq(const dlq_bulk_request& req, const tenant_scope& scope);

  /// Creates a queued job of kind dlq_<req.action> (dlq_retry,
  /// dlq_discard) like create(): counts the open entries it covers (throws
  /// too_many_events above req.max_events); upto_id is the highest DLQ id
  /// now.
  job_row create_dlq(const dlq_bulk_request& req, const requester& who,
                     audit_entry audit);

  /// The next at most `n` DLQ ids of a dlq_* job: id > cursor_id, id <=
  /// upto_id, matching `req` within the job's scope and still open
  /// (pending or failed), by id.
  std::vector<int64_t> next_dlq_batch(const claimed_job& job,
                                      const dlq_bulk_request& req, int n);

  /// The job, when `scope` sees it.
  std::optional<job_row> get(int64_t id, const tenant_scope& scope);

  /// At most `limit` jobs matching `f` that `scope` sees, id < before (0:
  /// from the newest), newest first.
  std::vector<job_row> list(const job_filter& f, int limit, int64_t before,
                            const tenant_scope& scope);

  /// Cancels a job `scope` sees: a queued one at once (status cancelled),
  /// a running one by setting cancel_requested (its runner stops at its
  /// next progress), a finished one not at all. Writes the audit row
  /// `audit` with the change. nullopt: no such job (nothing written).
  std::optional<job_row> cancel(int64_t id, const tenant_scope& scope,
                                audit_entry audit);

  /// Claims the oldest queued job, or a running one whose heartbeat is
  /// older than the lease or whose owner is this store's owner (its runner
  /// is gone: call claim() only when not running a job) (FOR UPDATE SKIP
  /// LOCKED): it becomes running, owned by this store's owner. nullopt:
  /// none.
  std::optional<claimed_job> claim();

  /// The next at most `n` events of the job: id > cursor_id, id <= upto_id,
  /// matching `f` within the job's scope, by id.
  std::vector<job_event> next_batch(const claimed_job& job,
                                    const event_filter& f, int n);

  /// Records the replays of `events` by job `job` (replay_id =
  /// job_replay_id(job, event), `topic`: where each is published, empty:
  /// its own), ON CONFLICT DO NOTHING, before they are published.
  void record_replays(const job_row& job, const std::vector<job_event>& events,
                      const std::string& topic);

  /// Commits a handled batch: cursor_id, done += done, failed += failed,
  /// last_error (when not empty), heartbeat. Only while the job is running
  /// and ours.
  progress_outcome commit_progress(int64_t id, int64_t cursor_id,
                                   int64_t done, int64_t failed,
                                   const std::string& last_error);

  /// Finishes a job of ours: status (succeeded, failed, cancelled),
  /// finished_at, last_error (when not empty). The row as it is then, or
  /// nullopt when it was not ours any more.
  std::optional<job_row> finish(int64_t id, const std::string& status,
                                const std::string& last_error);

  /// Whether a cancel was requested for job `id`.
  bool cancel_requested(int64_t id);

  const std::string& owner() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
