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

/// The requester gave up on it already (the HTTP_BRIDGE answered 504):
/// reading now would only delay the requests queued behind it.
bool expired(caf::timestamp deadline) {
  return caf::make_timestamp() >= deadline;
}

caf::error expired_error() {
  return caf::make_error(errc::expired,
                         std::string{"the read waited past its deadline"});
}

} // namespace

journal_actor::behavior_type
journal(journal_actor::stateful_pointer<journal_state> self,
        std::string database_url, storage::journal_reader_options opts) {
  self->set_exception_handler(exception_to_error);
  self->state.reader
    = std::make_unique<storage::journal_reader>(std::move(database_url), opts);
  return {
    [=](atom::latest, int32_t limit, const tenant_scope& scope,
        caf::timestamp deadline)
      -> caf::result<std::vector<storage::journal_event>, bool> {
      if (expired(deadline))
        return expired_error();
      try {
        auto page = self->state.reader->latest_page(limit, scope);
        return {std::move(page.events), page.truncated};
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::get, int64_t id, const tenant_scope& scope,
        caf::timestamp deadline)
      -> caf::result<std::vector<storage::journal_event>> {
      if (expired(deadline))
        return expired_error();
      try {
        // A row the scope does not see is answered like a missing one.
        std::vector<storage::journal_event> result;
        auto e = self->state.reader->event_by_id(id);
        if (e && scope.sees(e->tenant_id))
          result.emplace_back(std::move(*e));
        else if (!e && self->state.reader->event_dropped(id))
          return event_gone(id); // its partition was dropped by retention
        return result;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::find, const event_filter& f, const tenant_scope& scope,
        int32_t limit, int64_t before_id, caf::timestamp deadline)
      -> caf::result<std::vector<storage::journal_event>, bool> {
      if (expired(deadline))
        return expired_error();
      try {
        auto page = self->state.reader->find_page(f, scope, limit, before_id);
        return {std::move(page.events), page.truncated};
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
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
