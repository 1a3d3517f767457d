#include "actors/admin.hpp"

#include "config/logging.hpp"
#include "storage/auth_store.hpp"

namespace ces {

namespace {

/// Runs a store call; PostgreSQL trouble becomes db_unavailable, invalid
/// input bad_request, a taken name conflict.
template <class F>
auto guarded(F&& call) -> caf::result<decltype(call())> {
  try {
    return call();
  } catch (const storage::key_conflict& e) {
    return caf::make_error(errc::conflict, std::string{e.what()});
  } catch (const std::invalid_argument& e) {
    return caf::make_error(errc::bad_request, std::string{e.what()});
  } catch (const storage::infra_error& e) {
    return caf::make_error(errc::db_unavailable, std::string{e.what()});
  }
}

audit_entry audit_of(const requester& who) {
  audit_entry e;
  e.who = who;
  return e;
}

} // namespace

admin_actor::behavior_type
admin(admin_actor::stateful_pointer<admin_state> self,
      std::string database_url) {
  self->set_exception_handler(exception_to_error);
  self->state.store
    = std::make_unique<storage::auth_store>(std::move(database_url));
  return {
    [=](atom::list) -> caf::result<std::vector<storage::api_key_row>> {
      return guarded([&] { return self->state.store->list_keys(true); });
    },
    [=](atom::create, storage::new_key& k,
        requester& who) -> caf::result<storage::created_key> {
      k.created_by = who.principal;
      auto r = guarded([&] {
        auto e = audit_of(who);
        e.status = 201;
        return self->state.store->create_key(k, e);
      });
      if (r.flag == caf::rt_value)
        log::event(spdlog::level::info, "admin", "key_created",
                   {{"name", k.name},
                    {"role", k.role},
                    {"by", who.principal},
                    {"request_id", who.request_id}});
      return r;
    },
    [=](atom::revoke, std::string& name, requester& who) -> caf::result<bool> {
      return guarded([&] {
        auto e = audit_of(who);
        e.status = 200;
        auto done = self->state.store->revoke_key(name, e);
        if (done) {
          log::event(spdlog::level::info, "admin", "key_revoked",
                     {{"name", name},
                      {"by", who.principal},
                      {"request_id", who.request_id}});
        } else {
          auto miss = audit_of(who);
          miss.action = "key.revoke";
          miss.target = "key/" + name;
          miss.outcome = "failed";
          miss.status = 404;
          self->state.store->write_audit({miss});
        }
        return done;
      });
    },
    [=](atom::query, storage::audit_filter& f, int32_t limit,
        int64_t before) -> caf::result<std::vector<storage::audit_row>> {
      return guarded(
        [&] { return self->state.store->audit_page(f, limit, before); });
    },
  };
}

} // namespace ces
