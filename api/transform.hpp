// Bulk replay transforms: an RFC 6902 JSON Patch applied to each payload
// before it is published (nlohmann::json's patch()). Pure functions, no CAF;
// nlohmann stays in transform.cpp.
#pragma once

#include <string>

namespace ces::api {

/// Checks that `patch` is an RFC 6902 JSON Patch document: a JSON array
/// (at most 100 operations) of objects with a valid "op" (add, remove,
/// replace, move, copy, test), a "path" JSON Pointer, "from" for move/copy
/// and "value" for add/replace/test. False with a message otherwise.
bool check_patch(const std::string& patch, std::string& why);

/// Applies `patch` (checked by check_patch) to the JSON text `payload`.
/// True with the result (compact JSON) in `out`; false with `why`, naming
/// the operation that failed (index and op, e.g. "operation 1 (test):
/// ..."), when the payload is not JSON or an operation fails (a test op that
/// does not hold, a path that does not exist), or when the result's
/// top-level "tenant_id" differs from the payload's (added, removed or
/// changed: a replay stays with its tenant). `same_tenant` false lifts
/// that rule: a dead letter's fix may give it its tenant (the DLQ store
/// then checks the result against the requester's scope).
bool apply_patch(const std::string& payload, const std::string& patch,
                 std::string& out, std::string& why, bool same_tenant = true);

} // namespace ces::api
