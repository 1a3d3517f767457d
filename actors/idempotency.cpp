#include "actors/idempotency.hpp"

#include "config/logging.hpp"
#include "storage/idempotency.hpp"
#include "storage/journal.hpp" // infra_error

namespace ces {

idempotency_actor::behavior_type
idempotency(idempotency_actor::stateful_pointer<idempotency_state> self,
            idempotency_settings cfg) {
  self->set_exception_handler(exception_to_error);
  storage::idempotency_options opts;
  opts.ttl = cfg.ttl;
  opts.pending_ttl = cfg.pending_ttl;
  self->state.store = std::make_unique<storage::idempotency_store>(
    cfg.database_url, opts);
  // The first purge right away, then every purge_interval.
  self->send(self, atom::internal_v, atom::flush_v);
  return {
    [=](atom::claim, std::string& principal, std::string& key,
        std::string& fingerprint) -> caf::result<idempotent_answer> {
      try {
        auto c = self->state.store->claim(principal, key, fingerprint);
        idempotent_answer out;
        out.state = std::move(c.state);
        out.status = c.status;
        out.body = std::move(c.body);
        out.headers = std::move(c.headers);
        out.retry_after_s = c.retry_after_s;
        return out;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::complete, std::string& principal, std::string& key,
        idempotent_answer& answer) {
      try {
        if (!self->state.store->complete(principal, key, answer.status,
                                         answer.body, answer.headers))
          // Its claim expired and another request took it over (or it was
          // released): the first answer stays the one stored.
          log::event(spdlog::level::warn, "idempotency", "claim_lost",
                     {{"principal", principal},
                      {"status", answer.status}});
      } catch (const storage::infra_error& e) {
        // The claim stays pending until it expires: a retry meanwhile gets
        // 409, later it runs again.
        log::event(spdlog::level::warn, "idempotency", "complete_failed",
                   {{"principal", principal}, {"error", e.what()}});
      }
    },
    [=](atom::release, std::string& principal, std::string& key) {
      try {
        self->state.store->release(principal, key);
      } catch (const storage::infra_error& e) {
        log::event(spdlog::level::warn, "idempotency", "release_failed",
                   {{"principal", principal}, {"error", e.what()}});
      }
    },
    [=](atom::internal, atom::flush) {
      try {
        auto n = self->state.store->purge();
        if (n > 0)
          log::event(spdlog::level::info, "idempotency", "purged",
                     {{"rows", n}});
      } catch (const storage::infra_error& e) {
        log::event(spdlog::level::warn, "idempotency", "purge_failed",
                   {{"error", e.what()}});
      }
      self->delayed_send(self, cfg.purge_interval, atom::internal_v,
                         atom::flush_v);
    },
  };
}

} // namespace ces
