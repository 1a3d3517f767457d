// ADMIN: the admin routes' side of PostgreSQL: API keys (GET/POST /keys,
// DELETE /keys/{name}) and the audit log (GET /audit). Detached, with a
// connection of its own, so that a slow audit query never delays the AUTH
// actor's key lookups. Every key change commits with its audit row.
#pragma once

#include "actors/interfaces.hpp"

#include <memory>
#include <string>

namespace ces {

struct admin_state {
  std::unique_ptr<storage::auth_store> store;
  static inline const char* name = "admin";
};

admin_actor::behavior_type
admin(admin_actor::stateful_pointer<admin_state> self,
      std::string database_url);

} // namespace ces
