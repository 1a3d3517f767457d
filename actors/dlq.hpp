// DLQ: owns event_dlq reads (GET /dlq) on a connection of its own, and keeps
// the crm_dlq_pending gauge current. The PERSISTER writes dead letters inside
// its batch transaction, so that a record is acknowledged only once it is
// journalled or dead-lettered.
#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <functional>
#include <memory>

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

struct dlq_state {
  dlq_reader_factory make_reader;
  std::unique_ptr<dlq_reader> reader;
  std::chrono::milliseconds refresh_interval{5000};
  metrics* stats = nullptr;
  int64_t pending = -1; // -1 until read once
  static inline const char* name = "dlq";
};

dlq_actor::behavior_type dlq(dlq_actor::stateful_pointer<dlq_state> self,
                             dlq_reader_factory make_reader,
                             std::chrono::milliseconds refresh_interval,
                             metrics* stats);

/// dlq_reader on storage::journal_reader.
dlq_reader_factory dlq_reader_on_journal(std::string database_url);

} // namespace ces
