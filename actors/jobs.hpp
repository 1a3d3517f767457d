// JOBS: bulk replay jobs (POST /replays, /jobs). Detached: it owns a
// PostgreSQL connection (storage::job_store) and a librdkafka producer of
// its own, never the REPLAYER's. It plans dry runs, creates jobs, and runs
// one job at a time, one batch per (internal, run) message so that API
// requests and cancels are served between batches:
//   read the next batch of the job's events (id order, after its cursor),
//   record their replays (replay_id j<job>-e<event>), apply the transform,
//   publish each with provenance headers (x-replay-of, x-replay-id,
//   x-replay-job, x-original-timestamp), wait for every delivery report,
//   then commit the cursor and counts with a heartbeat.
// Bulk DLQ jobs (kinds dlq_discard, dlq_retry; POST /dlq/discard and
// /dlq/retry) run the same way over event_dlq ids (open entries only):
// discard_many per batch; retry in journal mode row by row
// (dlq_store::retry_journal, the transform applied first); retry in
// republish mode with this producer (stored bytes, key, headers plus
// x-dlq-id; each row resolved once its delivery is acknowledged). They act
// as their creator (principal, role, scope including unknown_tenant).
// A job is paced to its rate (rate_per_s, never above the setting
// job-rate-per-tenant; 0: unlimited) with delayed messages, never by
// sleeping; a paced batch holds at most one second of events, so a cancel
// stops a job within a second. A job of a killed instance is claimed again
// once its heartbeat is older than the lease and resumes at its cursor.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/kafka/replay_producer.hpp"
#include "storage/dlq_store.hpp"
#include "storage/jobs.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace ces {

class metrics;

struct jobs_settings {
  std::string database_url;
  replay_producer_config producer;
  /// This instance in jobs.owner; jobs it owns are reclaimed at once after
  /// a restart (others after the lease).
  std::string owner;
  /// Events read, published and acknowledged per batch (jobs-batch-size).
  int batch_size = 2000;
  /// Most events per second of a job (job-rate-per-tenant; 0: unlimited).
  int rate_per_tenant = 10000;
  /// max_events of a request that names none (jobs-default-max-events).
  int64_t default_max_events = 100000;
  /// How often to look for a queued job while idle.
  std::chrono::milliseconds idle_poll{500};
  /// A running job without a heartbeat for this long is claimed again. The
  /// heartbeat is written at each batch's commit, so the lease must exceed
  /// what one batch can take (the store's statement timeout, 30 s, plus
  /// the delivery wait, message timeout + 5 s): see spawn_jobs.
  std::chrono::milliseconds lease{60000};
  /// Wait after a PostgreSQL or broker failure before trying again.
  std::chrono::milliseconds retry_delay{1000};
  /// Consecutive PostgreSQL failures after which the running job ends
  /// failed.
  int max_db_failures = 30;
  /// Attempts of a batch whose deliveries failed before its failures are
  /// counted and the job goes on.
  int delivery_attempts = 3;
  /// The DLQ store of bulk DLQ jobs (journal-keep-raw, validation limits).
  storage::dlq_store_options dlq;
};

struct jobs_state {
  /// The job being run.
  struct running {
    storage::claimed_job job;
    replay_request req;
    /// Kinds dlq_retry and dlq_discard: the stored request (req unused).
    bool is_dlq = false;
    dlq_bulk_request dlq;
    /// Events per second; 0: unlimited.
    int64_t rate = 0;
    /// Delivery attempts of the current batch so far.
    int attempts = 0;
  };
  std::unique_ptr<storage::job_store> store;
  std::unique_ptr<replay_producer> producer;
  /// Bulk DLQ jobs' changes to event_dlq (its own connection).
  std::unique_ptr<storage::dlq_store> dlq_store;
  std::optional<running> current;
  /// A (internal, run) message is on its way: do not send another.
  bool run_scheduled = false;
  /// Delivery reports of the batch being published.
  int64_t delivered = 0;
  int64_t undelivered = 0;
  std::string delivery_error;
  uint64_t next_token = 1;
  /// The first token of the batch being published: a late report of an
  /// earlier batch (already counted as undelivered) is ignored.
  uint64_t batch_first_token = 1;
  /// Republish batches of dlq_retry jobs: the batch's reports by token
  /// (empty: delivered; else the error).
  std::map<uint64_t, std::string> report_errors;
  /// Consecutive PostgreSQL failures of the current job's batches.
  int db_failures = 0;
  metrics* stats = nullptr;
  static inline const char* name = "jobs";
};

jobs_actor::behavior_type jobs(jobs_actor::stateful_pointer<jobs_state> self,
                               jobs_settings cfg, metrics* stats);

} // namespace ces
