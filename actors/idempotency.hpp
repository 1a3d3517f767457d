// IDEMPOTENCY: the first answers of POSTs with an Idempotency-Key, in
// PostgreSQL (storage/idempotency.hpp). Detached, with a connection of its
// own: the HTTP_BRIDGE claims a key before it serves such a request, and
// completes or releases the claim when the answer goes out. Deletes answers
// older than the ttl every hour (and once at start).
#pragma once

#include "actors/interfaces.hpp"
#include "storage/idempotency.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace ces {

struct idempotency_settings {
  std::string database_url;
  /// Answers are kept (and replayed) this long (setting idempotency-ttl-h).
  std::chrono::hours ttl{24};
  /// A claim neither completed nor released expires after this long (the
  /// HTTP_BRIDGE leaves the claim of a request whose outcome is unknown,
  /// e.g. a replay that timed out, pending until then).
  std::chrono::seconds pending_ttl{30};
  /// How often answers older than the ttl are deleted.
  std::chrono::seconds purge_interval{3600};
};

struct idempotency_state {
  std::unique_ptr<storage::idempotency_store> store;
  static inline const char* name = "idempotency";
};

idempotency_actor::behavior_type
idempotency(idempotency_actor::stateful_pointer<idempotency_state> self,
            idempotency_settings cfg);

} // namespace ces
