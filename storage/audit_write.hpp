// Internal to storage/: writing audit_log rows inside a caller's transaction
// (so that an action and its audit row commit together). Includes pqxx, so
// only storage/*.cpp include it.
#pragma once

#include "storage/model.hpp"

#include <pqxx/pqxx>

#include <optional>
#include <string>

namespace ces::storage {

/// Inserts one audit_log row in `tx`. Throws what pqxx throws.
void insert_audit(pqxx::transaction_base& tx, const audit_entry& e);

/// `scope` as the text[] literal of audit_log.tenants; nullopt (NULL) for
/// all tenants.
std::optional<std::string> tenants_array(pqxx::transaction_base& tx,
                                         const tenant_scope& scope);

} // namespace ces::storage
