#include "actors/journal.hpp"

namespace ces {

namespace {

/// Runs a read; a PostgreSQL failure becomes errc::db_unavailable (the
/// reader reconnects on its next use).
template <class F>
auto guarded(F&& read) -> caf::result<decltype(read())> {
  try {
    return read();
  } catch (const storage::infra_error& e) {
    return caf::make_error(errc::db_unavailable, std::string{e.what()});
  }
}

} // namespace

journal_actor::behavior_type
journal(journal_actor::stateful_pointer<journal_state> self,
        std::string database_url) {
  self->set_exception_handler(exception_to_error);
  self->state.reader
    = std::make_unique<storage::journal_reader>(std::move(database_url));
  return {
    [=](atom::latest, int32_t limit)
      -> caf::result<std::vector<storage::journal_event>> {
      return guarded([&] { return self->state.reader->latest_events(limit); });
    },
    [=](atom::get, int64_t id)
      -> caf::result<std::vector<storage::journal_event>> {
      return guarded([&] {
        std::vector<storage::journal_event> result;
        if (auto e = self->state.reader->event_by_id(id))
          result.emplace_back(std::move(*e));
        return result;
      });
    },
    [=](atom::ping) -> caf::result<bool> {
      return guarded([&] {
        self->state.reader->ping();
        return true;
      });
    },
  };
}

} // namespace ces
