// Prometheus metrics of the service. prometheus-cpp stays behind a pimpl, so
// actors can include this header cheaply. All methods are thread-safe; call
// the add_* methods once per batch with counts rather than once per record.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ces {

class metrics {
public:
  metrics();
  ~metrics();

  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// Serves GET /metrics on address:port (address "0.0.0.0" for all IPv4
  /// interfaces). Throws std::runtime_error naming address and port when the
  /// port is taken or the address is unusable, std::logic_error when called
  /// twice.
  void expose(const std::string& address, uint16_t port);

  /// The port actually listened on (useful after expose(addr, 0) in tests);
  /// 0 before expose().
  uint16_t exposed_port() const;

  /// crm_events_ingested_total{topic}: records read from Kafka.
  void add_ingested(const std::string& topic, uint64_t n);

  /// crm_events_persisted_total{topic}: records written to event_journal.
  void add_persisted(const std::string& topic, uint64_t n);

  /// crm_events_dlq_total{topic,reason}: records written to event_dlq.
  /// `reason` must come from a small fixed set (it is a label).
  void add_dlq(const std::string& topic, const std::string& reason,
               uint64_t n);

  /// crm_events_skipped_total{topic}: records another group member had
  /// already journalled.
  void add_skipped(const std::string& topic, uint64_t n);

  /// crm_replay_duplicates_total{topic}: resends of a bulk replay job's
  /// event that the journal already held (not journalled again).
  void add_replay_duplicates(const std::string& topic, uint64_t n);

  /// crm_batch_persist_seconds (histogram, 1 ms .. 10 s) and
  /// crm_batch_records (histogram of records per batch).
  void observe_batch_persist(double seconds, uint64_t records);

  /// crm_actor_restarts_total{actor}.
  void add_actor_restart(const std::string& actor);

  /// crm_actor_crashes_total{actor}: a supervised actor ended unasked.
  void add_actor_crash(const std::string& actor);

  /// crm_batches_in_flight: batches sent to the persister, not yet acked.
  void set_in_flight_batches(int64_t n);

  /// crm_dlq_pending: DLQ entries not yet replayed or resolved.
  void set_dlq_pending(int64_t n);
  /// crm_db_up: 1 once the migrations ran and after a successful batch
  /// transaction (0 before: PostgreSQL down at start-up), 0 while the
  /// persister retries after an infrastructure error.
  void set_db_up(bool up);

  /// Creates the zero-valued per-topic series (ingested, persisted, skipped,
  /// and dlq for every reason declared so far) so dashboards see them
  /// before the first event. Patterns ('^...') are skipped.
  void declare_topics(const std::vector<std::string>& topics);

  /// Creates zero-valued crm_events_dlq_total series for each reason and
  /// every topic declared so far (or later).
  void declare_dlq_reasons(const std::vector<std::string>& reasons);

  /// Creates zero-valued crm_actor_restarts_total and
  /// crm_actor_crashes_total series.
  void declare_actors(const std::vector<std::string>& actors);

  // -- Operator API ----------------------------------------------------------

  /// crm_http_requests_total{route,code} and crm_http_request_seconds{route}
  /// (histogram, 1 ms .. 30 s): one answered HTTP request. `route` must come
  /// from a small fixed set (api::to_string(route_kind): the route, never
  /// the raw path; "unmatched" for unknown paths); `code` is the status sent.
  void observe_http_request(const std::string& route, int code,
                            double seconds);

  /// crm_replays_total{topic,outcome}: one replay request. `outcome` must
  /// come from a small fixed set (e.g. replayed, not_found, failed, timeout,
  /// overloaded).
  void add_replay(const std::string& topic, const std::string& outcome);

  /// crm_auth_total{outcome}: one authentication (ok, unauthenticated,
  /// rate_limited, forbidden, db_unavailable, disabled_warning).
  void add_auth(const std::string& outcome);

  /// crm_audit_rows_total{outcome}: audit rows written by the AUTH actor
  /// (written), refusals only counted (overflow), failed writes (retry).
  void add_audit(const std::string& outcome, uint64_t n);

  /// crm_replays_throttled_total{tenant}: one replay over its tenant's
  /// replay budget (refused with 429, or delayed for bulk jobs).
  void add_replay_throttled(const std::string& tenant);

  /// crm_job_events_total{kind,outcome}: events a bulk job handled; `kind`
  /// a job kind (replay), `outcome` published or failed.
  void add_job_events(const std::string& kind, const std::string& outcome,
                      uint64_t n);

  /// crm_dlq_retries_total{outcome}: automatic DLQ retries; `outcome`
  /// resolved, still_failing (rescheduled), gave_up (status failed), error
  /// (PostgreSQL trouble; tried again).
  void add_dlq_retries(const std::string& outcome, uint64_t n);

  /// crm_dlq_actions_total{action,outcome}: operator actions on DLQ rows;
  /// `action` retry, republish, discard, purge; `outcome` ok, refused
  /// (still invalid, conflict, ...), failed. purge counts rows.
  void add_dlq_actions(const std::string& action, const std::string& outcome,
                       uint64_t n);

  /// crm_webhook_deliveries_total{outcome}: alert webhook calls; `outcome`
  /// delivered (2xx), retry (5xx, timeout, refused: tried again), failed
  /// (given up), rejected (4xx: not retried), dropped (queue full).
  void add_webhook_delivery(const std::string& outcome);

  /// crm_dlq_alerts_total{type}: DLQ alerts raised (dlq.threshold,
  /// dlq.growth, dlq.recovered), whether delivered or not.
  void add_dlq_alert(const std::string& type);

  // -- Lag, jobs ------------------------------------------------------------

  /// crm_kafka_offsets_lost_total{topic,partition}: offsets the broker
  /// deleted (retention) before the CONSUMER read them; consumption jumped
  /// over them (auto.offset.reset). Each also logs offsets_lost.
  void add_offsets_lost(const std::string& topic, int32_t partition,
                        uint64_t n);

  /// One assigned partition's lag (see set_consumer_lag()).
  struct partition_lag {
    std::string topic;
    int32_t partition = 0;
    int64_t records = 0;
  };

  /// crm_consumer_lag_records{topic,partition}: per assigned partition, the
  /// broker's high watermark (librdkafka's cached value, updated by fetches)
  /// minus the journal's position (the next offset the journal will hold:
  /// the last offset the PERSISTERs committed + 1, before that the offset
  /// consumption started from); never negative, 0 when caught up. Replaces
  /// the whole set: series of partitions not in `lags` (revoked in a
  /// rebalance, or all after the CONSUMER stopped) are removed.
  void set_consumer_lag(const std::vector<partition_lag>& lags);

  /// crm_event_lag_seconds (histogram, 10 ms .. 3600 s): per journalled
  /// row, received_at minus its Kafka timestamp (the commit's clock minus
  /// the record's create or log-append time), observed once per batch.
  /// Rows without a Kafka timestamp and verified replays (replay_of set:
  /// old events sent again) are not observed; negative ages (producer clock
  /// ahead) count as 0.
  void observe_event_lag(const std::vector<double>& seconds);

  /// crm_jobs_finished_total{kind,status}: bulk jobs this instance ran to
  /// their end; `kind` replay, dlq_retry, dlq_discard; `status` succeeded,
  /// failed, cancelled (a queued job cancelled before anyone claimed it is
  /// not counted: no instance ran it). Every kind/status pair starts at 0.
  void add_job_finished(const std::string& kind, const std::string& status);

  /// crm_jobs_running: bulk jobs this instance is running now (0 or 1).
  void set_jobs_running(int64_t n);

  // -- Maintenance (partitions, retention) -----------------------------------

  /// crm_journal_partitions: event_journal's attached partitions after the
  /// last maintenance round.
  void set_journal_partitions(int64_t n);

  /// crm_maintenance_runs_total{outcome}: maintenance rounds, `outcome` ok
  /// or failed (both start at 0).
  void add_maintenance_run(const std::string& outcome);

  /// crm_retention_deleted_total{table}: rows deleted by retention;
  /// `table` event_journal (rows of dropped partitions), event_dlq,
  /// audit_log (all start at 0).
  void add_retention_deleted(const std::string& table, uint64_t n);

  // -- Process ---------------------------------------------------------------
  // Read from /proc/self at scrape time (as every Prometheus client does):
  /// process_resident_memory_bytes (gauge): resident set size.
  /// process_virtual_memory_bytes (gauge): virtual memory size.
  /// process_cpu_seconds_total (counter): user + system CPU time.
  /// process_open_fds (gauge): open file descriptors.
  /// process_max_fds (gauge): the soft RLIMIT_NOFILE.
  /// process_start_time_seconds (gauge): start time since the Unix epoch.

  /// crm_build_info{version,revision} = 1: which build is running.
  void set_build_info(const std::string& version, const std::string& revision);

  /// Creates the zero-valued crm_http_request_seconds{route} series.
  void declare_http_routes(const std::vector<std::string>& routes);

  /// The Prometheus text exposition of all metrics (what /metrics serves).
  std::string text() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces
