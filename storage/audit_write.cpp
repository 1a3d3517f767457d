#include "storage/audit_write.hpp"

#include "storage/pg_util.hpp"

#include <optional>

namespace ces::storage {

std::optional<std::string> tenants_array(pqxx::transaction_base& tx,
                                         const tenant_scope& scope) {
  (void) tx;
  if (scope.all)
    return std::nullopt;
  return detail::text_array(scope.tenants);
}

void insert_audit(pqxx::transaction_base& tx, const audit_entry& e) {
  auto opt = [](const std::string& s) -> std::optional<std::string> {
    if (s.empty())
      return std::nullopt;
    return s;
  };
  std::optional<int> status;
  if (e.status != 0)
    status = e.status;
  tx.exec_params(
    "INSERT INTO audit_log (request_id, principal, role, tenants, action, "
    "target, parameters, outcome, status, counts, client_addr) "
    "VALUES ($1, $2, $3, $4::text[], $5, $6, $7::jsonb, $8, $9, $10::jsonb, "
    "$11)",
    opt(e.who.request_id), opt(e.who.principal), opt(e.who.role),
    e.who.role.empty() ? std::optional<std::string>{}
                       : tenants_array(tx, e.who.scope),
    e.action, opt(e.target), e.parameters.empty() ? "{}" : e.parameters,
    e.outcome, status, opt(e.counts), opt(e.who.client_addr));
}

} // namespace ces::storage
