// SQL conditions for the operator API's filters (GET /events, GET /dlq, bulk
// replays): one place that turns the filter types of storage/model.hpp and a
// tenant scope into a WHERE condition. No pqxx here: values are quoted by the
// caller's `quote` (pqxx::transaction_base::quote), so the condition is
// plain, testable text.
#pragma once

#include "storage/model.hpp"

#include <functional>
#include <string>
#include <vector>

namespace ces::storage {

/// Quotes a value as an SQL literal (e.g. tx.quote(v)).
using sql_quote = std::function<std::string(const std::string&)>;

/// A condition on event_journal's columns (unqualified names) selecting the
/// rows of `f` that `scope` sees; "true" when nothing restricts. Times are
/// compared as timestamptz (from <= received_at < to); the key as bytes
/// (convert_to(key, 'UTF8')); `ids` as id = ANY(...). Rows of no tenant in
/// the scope: "false".
std::string event_where(const event_filter& f, const tenant_scope& scope,
                        const sql_quote& quote);

/// The same for event_dlq: rows without a tenant only with
/// scope.unknown_tenant; `ids` (when not empty) as id = ANY(...).
std::string dlq_where(const dlq_filter& f, const tenant_scope& scope,
                      const sql_quote& quote,
                      const std::vector<int64_t>& ids = {});

} // namespace ces::storage
