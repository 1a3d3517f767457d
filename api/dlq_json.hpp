// POST /dlq/{id}/retry, POST /dlq/{id}/discard and DELETE /dlq: their
// bodies and query parameters, and the JSON they answer. Pure functions: no
// CAF, no I/O; nlohmann stays in the .cpp.
//
// Body of POST /dlq/{id}/retry (empty, or a JSON object; any other member
// is 400 bad_request):
//   mode       "journal" (default) or "republish"
//   payload    journal mode: any JSON value; its JSON text is validated and
//              journalled instead of the stored bytes
//   transform  journal mode: an RFC 6902 JSON Patch (array) applied to the
//              stored bytes (bad_transform)
// payload and transform together, or either with republish: bad_request.
//
// Body of POST /dlq/{id}/discard: {"reason": "..."} (1..1000 bytes).
//
// DELETE /dlq?status=resolved|discarded&before=<RFC 3339>: status missing or
// another value is bad_filter, before missing or malformed bad_time.
#pragma once

#include "api/filters.hpp"
#include "storage/model.hpp"

#include <cstdint>
#include <string>

namespace ces::api {

/// Longest discard reason, in bytes.
inline constexpr size_t max_discard_reason = 1000;

/// Parses the body of POST /dlq/{id}/retry into `out` (out.id = id;
/// out.body: the body as sent, "{}" when empty). False and `err` (code
/// bad_request or bad_transform) when it is invalid.
bool parse_dlq_retry_request(const std::string& body, int64_t id,
                             dlq_retry_request& out, filter_error& err);

/// Parses the body of POST /dlq/{id}/discard: its reason. False and `err`
/// (bad_request) when it is invalid.
bool parse_dlq_discard_request(const std::string& body, std::string& reason,
                               filter_error& err);

/// The query of DELETE /dlq: status (resolved or discarded) and before (RFC
/// 3339). False and `err` (bad_filter, bad_time) when one is missing or
/// invalid.
bool parse_dlq_purge(const query_params& params, std::string& status,
                     std::string& before, filter_error& err);

/// The answer of POST /dlq/{id}/retry: {"dlq_id","status","mode",
/// "attempts", then journal mode "event_id","tenant_id","topic", republish
/// mode "topic","partition","offset"}.
std::string dlq_retry_result_json(const dlq_retry_result& r);

/// The answer of DELETE /dlq: {"deleted": n}.
std::string dlq_purged_json(int64_t deleted);

} // namespace ces::api
