// DLQ: owns event_dlq reads (GET /dlq) on a connection of its own, and keeps
// the crm_dlq_pending gauge current. The PERSISTER writes dead letters inside
// its batch transaction, so that a record is acknowledged only once it is
// journalled or dead-lettered.
//
// It also fixes and redrives single rows (POST /dlq/{id}/retry, /discard,
// DELETE /dlq) through a dlq_writer (storage::dlq_store: a connection of its
// own, every change audited there), and retries the rows of the
// auto-retried error classes: every retry_interval, at most retry_batch due
// rows, each into the journal with the backoff policy (a PostgreSQL failure
// is logged and counted, and the next tick tries again). Republishing
// produces the stored bytes with a librdkafka producer of its own (made on
// first use) and answers when the delivery report arrives (polled with a
// timer, never waited for in a handler).
#pragma once

#include "actors/interfaces.hpp"
#include "actors/kafka/replay_producer.hpp"
#include "storage/dlq_store.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace ces {

class metrics;

/// Read access to event_dlq. Throws storage::infra_error when PostgreSQL is
/// unreachable.
class dlq_reader {
public:
  virtual ~dlq_reader() = default;
  virtual int64_t pending_count() = 0;
  /// The newest `limit` rows `scope` sees (rows without a tenant only when
  /// scope.unknown_tenant).
  virtual std::vector<storage::dlq_entry_row>
  latest(int32_t limit, const tenant_scope& scope) = 0;
  /// At most `limit` rows matching `f` that `scope` sees, id < before_id
  /// when before_id > 0, newest first.
  virtual std::vector<storage::dlq_entry_row>
  find(const dlq_filter& f, const tenant_scope& scope, int32_t limit,
       int64_t before_id) = 0;
  /// The row `id` when `scope` sees it: one element, or none.
  virtual std::vector<storage::dlq_entry_row>
  get(int64_t id, const tenant_scope& scope) = 0;
};

using dlq_reader_factory = std::function<std::unique_ptr<dlq_reader>()>;

/// Changes to event_dlq, as storage::dlq_store makes them (see there).
/// Throws storage::infra_error when PostgreSQL is unreachable.
class dlq_writer {
public:
  virtual ~dlq_writer() = default;
  virtual std::optional<storage::dlq_entry_row>
  load(int64_t id, const tenant_scope& scope) = 0;
  virtual storage::dlq_retry_outcome
  retry_journal(int64_t id, const std::optional<std::string>& bytes,
                const requester& who,
                const storage::dlq_retry_policy* policy) = 0;
  virtual std::optional<storage::dlq_entry_row>
  begin_republish(int64_t id, const requester& who,
                  storage::dlq_outcome& outcome) = 0;
  virtual void finish_republish(int64_t id, bool delivered,
                                const std::string& error,
                                const requester& who) = 0;
  virtual std::optional<storage::dlq_entry_row>
  discard(int64_t id, const std::string& reason, const requester& who,
          storage::dlq_outcome& outcome) = 0;
  virtual int64_t purge(const std::string& status, const std::string& before,
                        const requester& who) = 0;
  virtual std::vector<int64_t>
  due_for_retry(const storage::dlq_retry_policy& policy, int limit) = 0;
};

using dlq_writer_factory = std::function<std::unique_ptr<dlq_writer>()>;

/// The system requester of automatic retries: principal "auto-retry", role
/// admin, every tenant and rows without one.
requester auto_retry_requester();

struct dlq_settings {
  /// How often the pending gauge is read.
  std::chrono::milliseconds refresh_interval{5000};
  /// Automatic retry (settings dlq-auto-retry-classes, dlq-retry-*); no
  /// classes: none.
  storage::dlq_retry_policy policy;
  /// Rows retried per tick (dlq-retry-batch), and how often
  /// (dlq-retry-interval-ms).
  int retry_batch = 20;
  std::chrono::milliseconds retry_interval{1000};
  /// The republish producer (as the REPLAYER's; its message timeout is
  /// replay-timeout-ms: the delivery report of a message not acknowledged
  /// by then is a failure).
  replay_producer_config producer;
  /// How often delivery reports are served while republishes are in flight.
  std::chrono::milliseconds poll_interval{5};
  /// Longest wait for the broker during a graceful stop, and for a
  /// metadata answer while librdkafka reports the broker away.
  std::chrono::milliseconds flush_timeout{5000};
  int ping_timeout_ms = 1000;
};

struct dlq_state {
  /// A republished row waiting for its delivery report.
  struct republish {
    caf::typed_response_promise<dlq_retry_result> promise;
    int64_t id = 0;
    std::string topic;
    int32_t attempts = 0;
    requester who;
  };
  dlq_reader_factory make_reader;
  std::unique_ptr<dlq_reader> reader;
  dlq_writer_factory make_writer;
  std::unique_ptr<dlq_writer> writer;
  dlq_settings cfg;
  std::unique_ptr<replay_producer> producer; // made on first republish
  std::map<uint64_t, republish> in_flight;   // by produce token
  uint64_t next_token = 1;
  bool polling = false;
  metrics* stats = nullptr;
  int64_t pending = -1; // -1 until read once
  static inline const char* name = "dlq";
};

/// The DLQ actor. `make_writer` null: the actions answer db_unavailable and
/// nothing is retried automatically (actor tests of the reads).
dlq_actor::behavior_type dlq(dlq_actor::stateful_pointer<dlq_state> self,
                             dlq_reader_factory make_reader,
                             dlq_writer_factory make_writer,
                             dlq_settings cfg, metrics* stats);

/// dlq_reader on storage::journal_reader.
dlq_reader_factory dlq_reader_on_journal(std::string database_url);

/// dlq_writer on storage::dlq_store.
dlq_writer_factory dlq_writer_on_store(std::string database_url,
                                       storage::dlq_store_options opts);

} // namespace ces
