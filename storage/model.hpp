// Plain data types shared by every layer. No CAF, no pqxx, no librdkafka here:
// this header is included everywhere and must stay cheap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ces {

/// One Kafka header. Kafka allows a null header value (`has_value == false`).
struct kafka_header {
  std::string key;
  std::string value;
  bool has_value = true;
};

/// One Kafka message, copied out of librdkafka.
struct kafka_record {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  bool has_key = false;
  std::string key; // raw bytes
  std::vector<kafka_header> headers;
  int64_t timestamp_ms = -1; // -1: no timestamp
  int8_t timestamp_type = 0; // 0 none, 1 create time, 2 log-append time
  bool has_value = false;    // false: null value (tombstone)
  std::string value;         // raw bytes
};

/// Why a record went to the DLQ instead of the journal.
enum class reject_reason : uint8_t {
  none = 0,       // accepted
  empty_value,    // null or zero-length value
  too_large,      // value larger than the configured maximum
  invalid_json,   // not JSON, or JSON that PostgreSQL's jsonb refuses
  missing_tenant, // no string tenant_id in the payload nor in a header
  db_rejected,    // PostgreSQL refused the row (found by isolating it)
};

/// The stable text of a reason, as stored in event_dlq.error_class and used as
/// the `reason` metric label.
const char* to_string(reject_reason r) noexcept;

/// A record after validation: either accepted (reason == none, tenant_id set)
/// or rejected (reason and error set).
struct checked_record {
  kafka_record rec;
  reject_reason reason = reject_reason::none;
  std::string error;     // human message when rejected
  std::string tenant_id; // set when accepted
  /// Journal id from an `x-replay-of` header, 0 if none. A claim only: the
  /// journal_writer stores it as replay_of when `replay_id` names a recorded
  /// replay of that very event (table replays), else NULL.
  int64_t replay_of = 0;
  /// The last `x-replay-id` header when it looks like a replay id (1..64 of
  /// [A-Za-z0-9._-]), else empty.
  std::string replay_id;
  /// Bulk replay job from an `x-replay-job` header (positive decimal), 0 if
  /// none; read only with replay_of. A claim too: the journal_writer stores
  /// the job of the recorded replay (table replays), never this value.
  int64_t replay_job = 0;
};

/// (topic, partition) -> next offset to read.
struct partition_offset {
  std::string topic;
  int32_t partition = 0;
  int64_t next_offset = 0;
};

/// A count per topic (reason empty) or per topic and reason.
struct topic_count {
  std::string topic;
  std::string reason;
  uint64_t count = 0;
};

/// What one persisted batch did, as committed in one transaction.
struct persist_outcome {
  /// Next offset stored for every partition of the batch.
  std::vector<partition_offset> offsets;
  /// Rows written to event_journal, per topic.
  std::vector<topic_count> journalled;
  /// Rows written to event_dlq, per topic and reason.
  std::vector<topic_count> dead_lettered;
  /// Records not written because the stored offset of their partition was
  /// already past them (another consumer of the group journalled them).
  std::vector<topic_count> skipped;
  /// How many extra COPY attempts were needed to isolate rejected rows.
  uint32_t isolation_rounds = 0;
  /// Records not journalled because they are a resend of a bulk replay job's
  /// event that the journal (or the same batch) already holds: the same
  /// (replay_job, replay_of). Their offsets advance all the same.
  std::vector<topic_count> replay_duplicates;
  /// Kafka timestamps (ms since the epoch) of the rows written to
  /// event_journal, for crm_event_lag_seconds: rows without a timestamp and
  /// verified replays left out. Not part of the reply message: the PERSISTER
  /// observes and clears it.
  std::vector<int64_t> journalled_timestamps_ms;
};


/// Which tenants' rows a request may see (the principal's tenant scope).
/// Storage reads filter by it; an empty `tenants` with all == false sees
/// nothing.
struct tenant_scope {
  /// Every tenant ("*").
  bool all = false;
  /// The tenants seen when !all (sorted, unique).
  std::vector<std::string> tenants;
  /// Rows whose tenant is unknown (DLQ rows without a tenant_id): admins only.
  bool unknown_tenant = false;

  /// Whether a row of `tenant` (empty: unknown) is visible.
  bool sees(const std::string& tenant) const;
};

/// Who asks, as recorded in audit rows and replay records.
struct requester {
  /// Key name, JWT `sub`, or "anonymous" (API_AUTH=off); "cli:<user>" for
  /// the keys subcommands.
  std::string principal;
  /// viewer, operator, admin (empty: not authenticated).
  std::string role;
  tenant_scope scope;
  /// X-Request-Id of the HTTP request (empty: none, e.g. the CLI).
  std::string request_id;
  /// The client's address as the server saw it (empty: none).
  std::string client_addr;
};

/// One row of audit_log, as written.
struct audit_entry {
  requester who;
  /// replay, key.create, key.revoke, key.bootstrap, debug.fail, auth, ...
  std::string action;
  /// e.g. "event/42", "key/ops", the route for refused requests.
  std::string target;
  /// JSON object text ("{}" when empty).
  std::string parameters = "{}";
  /// ok, refused, failed.
  std::string outcome;
  /// HTTP status answered; 0: none (CLI, start-up).
  int status = 0;
  /// JSON object text, e.g. {"events":1}; empty: NULL.
  std::string counts;
};


/// Which replays GET /events returns (replays=include|exclude|only).
enum class replays_mode : uint8_t { include = 0, exclude, only };

/// The filters of GET /events and of a bulk replay (api/filters.hpp parses
/// them; storage/event_query.hpp turns them into SQL). Empty strings and 0
/// mean "no condition". Times are RFC 3339 text, checked by the parser.
struct event_filter {
  std::string tenant_id;
  std::string topic;
  bool has_key = false; // key: the record key equals `key` (UTF-8 bytes)
  std::string key;
  std::string from; // received_at >= from
  std::string to;   // received_at < to
  replays_mode replays = replays_mode::include;
  int64_t replay_of = 0; // only replays of this journal id
  /// Only these journal ids (a bulk replay's `ids`, at most 10 000; sorted,
  /// unique). Empty: no id condition.
  std::vector<int64_t> ids;
};

/// The filters of GET /dlq (empty: no condition).
struct dlq_filter {
  std::string status; // pending, retried, resolved, discarded, failed
  std::string error_class;
  std::string topic;
  std::string tenant_id;
  std::string from; // received_at >= from
  std::string to;   // received_at < to
};

/// POST /dlq/{id}/retry, as accepted by the API (api/dlq_json.hpp).
struct dlq_retry_request {
  int64_t id = 0;
  /// journal: validate the bytes again and, when they pass, write the
  /// journal row and resolve the DLQ row in one transaction. republish:
  /// produce the bytes to the original topic; resolved once acknowledged
  /// (ingestion sees them again).
  std::string mode = "journal";
  /// journal mode: these bytes instead of the stored ones.
  bool has_payload = false;
  std::string payload;
  /// journal mode: RFC 6902 JSON Patch applied to the stored bytes (which
  /// must then be JSON); empty: none. Never together with payload.
  std::string transform;
  /// The request body as sent (audit).
  std::string body;
};

/// What a successful retry of one DLQ row did.
struct dlq_retry_result {
  int64_t dlq_id = 0;
  std::string status; // the row's status now: resolved
  std::string mode;   // journal, republish
  /// journal: the journal row written (with dlq_id = dlq_id).
  int64_t event_id = 0;
  std::string tenant_id; // journal: the tenant journalled
  std::string topic;
  /// republish: where the broker stored it (-1: unknown).
  int32_t partition = -1;
  int64_t offset = -1;
  /// The row's attempts after this one.
  int32_t attempts = 0;
};

/// POST /dlq/retry and POST /dlq/discard: a bulk action over the DLQ rows a
/// filter selects, run as a job (kind dlq_retry or dlq_discard), or its dry
/// run.
struct dlq_bulk_request {
  /// retry, discard (from the route).
  std::string action;
  /// The rows (status: pending when not given; only pending and failed
  /// rows are ever acted on).
  dlq_filter filter;
  /// Only these DLQ ids (at most 10 000; sorted, unique); empty: no id
  /// condition.
  std::vector<int64_t> ids;
  /// retry: journal (default) or republish.
  std::string mode = "journal";
  /// retry, journal mode: JSON Patch applied to each row's bytes.
  std::string transform;
  /// discard: why (required).
  std::string reason;
  /// A larger match is refused (too_many_events).
  int64_t max_events = 100000;
  bool dry_run = false;
  /// The request body as sent (stored with the job).
  std::string body;
};

/// The answer to a bulk DLQ dry run.
struct dlq_plan {
  int64_t matched = 0;
  std::vector<topic_count> by_error_class; // topic field holds the class
  std::vector<topic_count> by_topic;
  std::vector<topic_count> by_tenant; // topic field holds the tenant ("")
  /// The first (lowest) ids matched, at most 10.
  std::vector<int64_t> sample_ids;
};

/// What the DLQ looks like for its alert webhook (dlq.threshold,
/// dlq.growth, dlq.recovered).
struct dlq_alert {
  std::string type;
  int64_t pending = 0;         // rows with status pending
  int64_t new_in_window = 0;   // rows received within window_s
  int64_t window_s = 0;
  std::vector<topic_count> by_error_class; // pending rows, topic = class
  std::vector<topic_count> by_topic;       // pending rows
  std::vector<int64_t> sample_ids;         // up to 10 newest pending ids
  std::string at;                          // RFC 3339 UTC
};

/// POST /replays, as accepted by api::parse_replay_request.
struct replay_request {
  event_filter filter;
  /// RFC 6902 JSON Patch (a JSON array, checked by the parser); empty: none.
  std::string transform;
  /// Publish every event here instead of its own topic; empty: own topic.
  std::string target_topic;
  /// Events per second; 0: the job rate limit (setting job-rate-per-tenant).
  int32_t rate_per_s = 0;
  /// A larger match is refused (too_many_events).
  int64_t max_events = 100000;
  bool dry_run = false;
  /// The request body as sent (stored with the job).
  std::string body;
};

/// The answer to a dry run.
struct replay_plan {
  int64_t matched = 0;
  std::vector<topic_count> by_topic;  // topic, count
  std::vector<topic_count> by_tenant; // topic field holds the tenant
  std::string first_received_at;      // empty when nothing matched
  std::string last_received_at;
  /// Up to 5 payloads after the transform (JSON text), with their event ids.
  std::vector<int64_t> sample_ids;
  std::vector<std::string> samples;
};

/// One row of table jobs.
struct job_row {
  int64_t id = 0;
  std::string kind;   // replay, dlq_retry, dlq_discard
  std::string status; // queued, running, succeeded, failed, cancelled
  std::string request; // JSON text
  int64_t matched = 0;
  int64_t done = 0;
  int64_t failed = 0;
  std::string requested_by;
  std::string request_id;
  std::string last_error;
  std::string created_at; // RFC 3339 UTC; empty: NULL
  std::string started_at;
  std::string finished_at;
  bool cancel_requested = false;
};

/// The filters of GET /jobs (empty: no condition).
struct job_filter {
  std::string status;
  std::string kind;
};

} // namespace ces
