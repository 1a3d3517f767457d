#include "storage/model.hpp"

#include <algorithm>

namespace ces {

const char* to_string(reject_reason r) noexcept {
  switch (r) {
    case reject_reason::none:
      return "none";
    case reject_reason::empty_value:
      return "empty_value";
    case reject_reason::too_large:
      return "too_large";
    case reject_reason::invalid_json:
      return "invalid_json";
    case reject_reason::missing_tenant:
      return "missing_tenant";
    case reject_reason::db_rejected:
      return "db_rejected";
  }
  return "unknown";
}

bool tenant_scope::sees(const std::string& tenant) const {
  if (tenant.empty())
    return unknown_tenant;
  return all || std::binary_search(tenants.begin(), tenants.end(), tenant);
}

} // namespace ces
