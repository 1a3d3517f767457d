// Reads of event_dlq for the DLQ actor and the operator API. No CAF; pqxx
// stays behind a pimpl.
#pragma once

#include "storage/journal.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace ces::storage {

/// event_dlq access over its own connection, re-established on the next call
/// after a failure.
class dlq_store {
public:
  /// Connects. Throws infra_error when PostgreSQL is unreachable.
  explicit dlq_store(const std::string& database_url);
  ~dlq_store();
  dlq_store(const dlq_store&) = delete;
  dlq_store& operator=(const dlq_store&) = delete;

  /// Number of entries with status 'pending'. Throws infra_error.
  int64_t pending_count();

  /// True when the connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
