#include "storage/event_query.hpp"

#include "storage/pg_util.hpp" // text_array

namespace ces::storage {

namespace {

void add(std::string& out, const std::string& cond) {
  out += out.empty() ? "" : " AND ";
  out += cond;
}

std::string tenants_in(const tenant_scope& scope, const sql_quote& quote) {
  return "tenant_id = ANY(" + quote(detail::text_array(scope.tenants))
         + "::text[])";
}

void add_times(std::string& out, const std::string& from,
               const std::string& to, const sql_quote& quote) {
  if (!from.empty())
    add(out, "received_at >= " + quote(from) + "::timestamptz");
  if (!to.empty())
    add(out, "received_at < " + quote(to) + "::timestamptz");
}

std::string ids_in(const std::vector<int64_t>& ids) {
  std::string list = "'{";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0)
      list += ',';
    list += std::to_string(ids[i]);
  }
  return "id = ANY(" + list + "}'::bigint[])";
}

} // namespace

std::string event_where(const event_filter& f, const tenant_scope& scope,
                        const sql_quote& quote) {
  std::string out;
  if (!scope.all) {
    if (scope.tenants.empty())
      return "false";
    add(out, tenants_in(scope, quote));
  }
  if (!f.tenant_id.empty())
    add(out, "tenant_id = " + quote(f.tenant_id));
  if (!f.topic.empty())
    add(out, "topic = " + quote(f.topic));
  if (f.has_key)
    add(out, "key = convert_to(" + quote(f.key) + ", 'UTF8')");
  add_times(out, f.from, f.to, quote);
  if (f.replays == replays_mode::exclude)
    add(out, "replay_of IS NULL");
  else if (f.replays == replays_mode::only)
    add(out, "replay_of IS NOT NULL");
  if (f.replay_of != 0)
    add(out, "replay_of = " + std::to_string(f.replay_of));
  if (!f.ids.empty())
    add(out, ids_in(f.ids));
  return out.empty() ? "true" : out;
}

std::string dlq_where(const dlq_filter& f, const tenant_scope& scope,
                      const sql_quote& quote,
                      const std::vector<int64_t>& ids) {
  std::string out;
  if (!scope.all) {
    if (scope.tenants.empty())
      add(out, scope.unknown_tenant ? "tenant_id IS NULL" : "false");
    else
      add(out, "(" + tenants_in(scope, quote)
                 + (scope.unknown_tenant ? " OR tenant_id IS NULL)" : ")"));
  } else if (!scope.unknown_tenant) {
    add(out, "tenant_id IS NOT NULL");
  }
  if (!f.status.empty())
    add(out, "status = " + quote(f.status));
  if (!f.error_class.empty())
    add(out, "error_class = " + quote(f.error_class));
  if (!f.topic.empty())
    add(out, "topic = " + quote(f.topic));
  if (!f.tenant_id.empty())
    add(out, "tenant_id = " + quote(f.tenant_id));
  add_times(out, f.from, f.to, quote);
  if (!ids.empty())
    add(out, ids_in(ids));
  return out.empty() ? "true" : out;
}

} // namespace ces::storage
