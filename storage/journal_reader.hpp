// Reads of event_journal and event_dlq for the operator API and the replayer,
// tenant-scoped, and the replayer's few writes (replays, audit_log). No CAF;
// pqxx stays behind a pimpl.
//
// A journal_reader has its own connection, never the persister's: reads run in
// read-only transactions (MVCC snapshots), so they never wait behind a write
// batch, and a batch never waits behind them. Every query is an index scan on
// the primary key (ORDER BY id DESC LIMIT n, or id = $1).
#pragma once

#include "storage/journal.hpp"
#include "storage/model.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ces::storage {

/// One row of event_journal.
struct journal_event {
  int64_t id = 0;
  std::string tenant_id;
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  bool has_key = false;
  std::string key; // raw bytes
  std::vector<kafka_header> headers;
  std::string payload_json;        // the jsonb as PostgreSQL prints it
  int64_t kafka_timestamp_ms = -1; // -1: none
  std::string received_at;         // RFC 3339 UTC, microseconds:
                                   // 2024-05-01T12:00:00.123456Z
  int64_t replay_of = 0;           // 0: not a replay
  /// event_by_id() only: the payload exactly as received (payload_raw), when
  /// the row has it (rows journalled before migration 0005, or with the
  /// bench switch off, do not).
  bool has_raw = false;
  std::string payload_raw;
  /// The DLQ row this journal row came from (a retry into the journal);
  /// 0: none.
  int64_t dlq_id = 0;
};

/// One row of event_dlq.
struct dlq_entry_row {
  int64_t id = 0;
  std::string topic;
  bool has_partition = false; // partition/offset are NULL for records that
  int32_t partition = 0;      // never had coordinates
  bool has_offset = false;
  int64_t offset = 0;
  bool has_key = false;
  std::string key; // raw bytes
  std::vector<kafka_header> headers;
  bool has_payload = false; // false: NULL (a null Kafka value)
  std::string payload;      // raw bytes, at most the reader's
                            // max_dlq_payload_bytes (see payload_truncated)
  size_t payload_size = 0;  // full size of the stored payload in bytes
  bool payload_truncated = false;
  int64_t kafka_timestamp_ms = -1; // -1: none
  std::string tenant_id;           // empty: unknown (NULL)
  std::string error_class;
  std::string error;
  int32_t attempts = 0;
  std::string status; // pending, retried, resolved, discarded, failed
  std::string received_at; // RFC 3339 UTC, microseconds
  std::string updated_at;  // RFC 3339 UTC, microseconds
  /// Automatic retry's next attempt (empty: none scheduled).
  std::string next_attempt_at;
  std::string last_attempt_at; // empty: never retried
  /// journal, republish, auto, discard (empty: still open).
  std::string resolution;
  int64_t resolved_event_id = 0; // the journal row it became; 0: none
  std::string discard_reason;
  std::string resolved_by; // principal of the last status change
};

struct journal_reader_options {
  /// statement_timeout of the reader's session, so that no read can hang an
  /// operator request (0: the server's default).
  int statement_timeout_ms = 5000;
  /// DLQ payloads longer than this are returned cut to this many bytes
  /// (payload_truncated set): a DLQ may hold values of megabytes
  /// (too_large). 0: no limit.
  size_t max_dlq_payload_bytes = 64 * 1024;
  /// latest_page() returns at most this many bytes of events (payload and
  /// headers as JSON text, key twice: about what the API's JSON holds), but
  /// always the newest event. 0: no limit.
  size_t max_page_bytes = 8 * 1024 * 1024;
};

/// The newest journal rows, cut to journal_reader_options::max_page_bytes.
struct event_page {
  std::vector<journal_event> events;
  /// Fewer events than asked for because of the byte bound (there are more).
  bool truncated = false;
};

/// One replay as recorded (table replays) before it is published.
struct replay_record {
  std::string replay_id; // the x-replay-id header
  int64_t event_id = 0;  // the journal row replayed
  std::string tenant_id; // its tenant
  std::string topic;     // where it is published
  std::string principal;
  int64_t job_id = 0;    // bulk replay job; 0: a single replay (NULL)
  std::string request_id; // empty: NULL
};

/// Journal and DLQ reads over one connection of its own. Connects lazily on
/// first use and again on the next call after a failure. Not thread-safe:
/// one reader per (detached) actor or thread.
class journal_reader {
public:
  /// Does not connect (see ping()).
  explicit journal_reader(std::string database_url,
                          journal_reader_options opts = {});
  ~journal_reader();
  journal_reader(const journal_reader&) = delete;
  journal_reader& operator=(const journal_reader&) = delete;

  /// The newest `limit` journal rows that `scope` sees (highest id first);
  /// limit <= 0 gives none. Throws infra_error when PostgreSQL is
  /// unreachable or the query fails.
  std::vector<journal_event> latest_events(int limit,
                                           const tenant_scope& scope);

  /// Like latest_events(), but only as many of the newest rows as fit in
  /// max_page_bytes (always the first one). PostgreSQL measures the rows
  /// first and sends only the ones kept, so no more than the bound (plus one
  /// row) is ever held here. Throws infra_error.
  event_page latest_page(int limit, const tenant_scope& scope);

  /// GET /events: like latest_page(), but only the rows matching `f`
  /// (storage/event_query.hpp) and, when before_id > 0, with id < before_id
  /// (the keyset cursor: ORDER BY id DESC LIMIT n, never OFFSET). Newest
  /// first, cut to max_page_bytes, always at least one row when any
  /// matches. Throws infra_error.
  event_page find_page(const event_filter& f, const tenant_scope& scope,
                       int limit, int64_t before_id);

  /// The journal row `id` (with payload_raw), or nullopt. Not scoped: the
  /// caller checks
  /// tenant_scope::sees(tenant_id). Throws infra_error.
  std::optional<journal_event> event_by_id(int64_t id);

  /// Whether journal row `id` was in a partition retention dropped
  /// (journal_partitions: state 'dropped', id within its recorded id
  /// range): the answer for an id event_by_id() does not find is then
  /// `gone`, not "not found". Throws infra_error.
  bool event_dropped(int64_t id);

  /// The newest `limit` DLQ rows that `scope` sees (highest id first): rows
  /// without a tenant only when scope.unknown_tenant. Throws infra_error.
  std::vector<dlq_entry_row> latest_dlq(int limit, const tenant_scope& scope);

  /// GET /dlq with filters: at most `limit` DLQ rows matching `f` that
  /// `scope` sees (rows without a tenant only when scope.unknown_tenant),
  /// with id < before_id when before_id > 0, newest first (keyset, never
  /// OFFSET). Throws infra_error.
  std::vector<dlq_entry_row> find_dlq(const dlq_filter& f,
                                      const tenant_scope& scope, int limit,
                                      int64_t before_id);

  /// The DLQ row `id` if `scope` sees it (a row without a tenant only with
  /// scope.unknown_tenant), else nullopt: a row out of scope is answered
  /// like a missing one. Throws infra_error.
  std::optional<dlq_entry_row> dlq_by_id(int64_t id,
                                         const tenant_scope& scope);

  /// Records a replay before it is published: the replays row and the
  /// `accepted` audit row, in one transaction. Throws infra_error (nothing
  /// recorded, or the outcome unknown: do not publish either way).
  void record_replay(const replay_record& r, const audit_entry& accepted);

  /// Appends one audit_log row in a transaction of its own. Throws
  /// infra_error.
  void append_audit(const audit_entry& e);

  /// Number of DLQ rows with status 'pending'. Throws infra_error.
  int64_t pending_dlq_count();

  /// `SELECT 1` (connecting first if needed). Throws infra_error.
  void ping();

  /// True when the connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
