// PG_PROBE: the PostgreSQL check of GET /ready. A detached actor with a
// connection of its own that runs nothing but `SELECT 1`, so the check never
// queues behind operator reads in the JOURNAL's mailbox (a slow page of
// large events would otherwise make readiness flap under read load).
#pragma once

#include "actors/interfaces.hpp"

#include <memory>
#include <string>

namespace ces {

struct pg_probe_state {
  std::unique_ptr<storage::journal_reader> reader;
  static inline const char* name = "pg_probe";
};

/// Connects lazily; pings with a statement timeout of `timeout_ms`.
pg_probe_actor::behavior_type
pg_probe(pg_probe_actor::stateful_pointer<pg_probe_state> self,
         std::string database_url, int timeout_ms);

} // namespace ces
