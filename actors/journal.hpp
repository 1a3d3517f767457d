// JOURNAL: event_journal reads for the operator API, on a PostgreSQL
// connection of its own (never the PERSISTER's), in read-only transactions,
// so a read never waits behind a write batch.
#pragma once

#include "actors/interfaces.hpp"

#include <memory>
#include <string>

namespace ces {

struct journal_state {
  std::unique_ptr<storage::journal_reader> reader;
  static inline const char* name = "journal";
};

/// `opts` bound the reads (statement timeout, page bytes).
journal_actor::behavior_type
journal(journal_actor::stateful_pointer<journal_state> self,
        std::string database_url, storage::journal_reader_options opts);

} // namespace ces
