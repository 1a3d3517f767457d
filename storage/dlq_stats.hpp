// The DLQ's figures for the alert webhook (DLQ_ALERTS): read from table
// event_dlq in one read-only transaction. Knows no CAF.
#pragma once

#include "storage/model.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ces::storage {

namespace detail {
class store_session;
} // namespace detail

/// One reading of event_dlq.
struct dlq_figures {
  /// Open rows (status pending, retried or failed: not yet resolved or
  /// discarded).
  int64_t pending = 0;
  /// Rows received within the window (whatever their status now).
  int64_t new_in_window = 0;
  /// Pending rows per error class (topic_count::topic holds the class) and
  /// per topic, largest first; at most 50 topics.
  std::vector<topic_count> by_error_class;
  std::vector<topic_count> by_topic;
  /// The ids of the 10 newest pending rows, newest first.
  std::vector<int64_t> sample_ids;
  /// The server's now(), RFC 3339 UTC with milliseconds.
  std::string now;
};

/// event_dlq's figures over one connection of its own. Connects lazily on
/// first use and again on the next call after a failure. Not thread-safe.
/// Throws infra_error (storage/journal.hpp) when PostgreSQL is unreachable
/// or a statement fails.
class dlq_stats {
public:
  /// Does not connect.
  explicit dlq_stats(std::string database_url,
                     int statement_timeout_ms = 5000);
  ~dlq_stats();
  dlq_stats(const dlq_stats&) = delete;
  dlq_stats& operator=(const dlq_stats&) = delete;

  /// The figures now, `window_s` seconds back for new_in_window.
  dlq_figures read(int64_t window_s);

  /// True while a connection is open.
  bool connected() const;

private:
  std::unique_ptr<detail::store_session> session_;
};

} // namespace ces::storage
