#include "actors/pg_probe.hpp"

namespace ces {

pg_probe_actor::behavior_type
pg_probe(pg_probe_actor::stateful_pointer<pg_probe_state> self,
         std::string database_url, int timeout_ms) {
  self->set_exception_handler(exception_to_error);
  storage::journal_reader_options opts;
  opts.statement_timeout_ms = timeout_ms;
  self->state.reader
    = std::make_unique<storage::journal_reader>(std::move(database_url), opts);
  return {
    [=](atom::ping) -> caf::result<bool> {
      try {
        self->state.reader->ping();
        return true;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
  };
}

} // namespace ces
