// JSON of the admin routes (GET/POST /keys, DELETE /keys/{name}, GET /audit)
// and the parsing of their input. Pure functions on plain types.
//
// A key (GET /keys is an array of these; never the key or its hash; the
// same object as `keys list --json`, api/keys_cli.hpp):
//   {"id": 3, "name": "ops", "role": "operator", "tenants": ["t1", "t2"] or "*",
//    "created_at": "...Z", "created_by": "cli:root",
//    "expires_at": "...Z" or null, "revoked_at": ... or null,
//    "last_used_at": ... or null}
// POST /keys answers 201 with the same object plus "key": "ces_..." (the
// only time the key is shown).
// An audit row (GET /audit is an array of these, newest first):
//   {"id": 9, "at": "...Z", "request_id": "..." or null,
//    "principal": "ops" or null, "role": "operator" or null,
//    "tenants": ["t1"] or "*" or null, "action": "replay",
//    "target": "event/42" or null, "parameters": {...},
//    "outcome": "ok", "status": 200 or null, "counts": {...} or null,
//    "client_addr": "127.0.0.1" or null}
#pragma once

#include "storage/auth_store.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ces::api {

/// One key as a JSON object.
std::string key_json(const storage::api_key_row& k);

/// A JSON array of keys.
std::string keys_json(const std::vector<storage::api_key_row>& keys);

/// The answer of POST /keys: the key's object with "key" first.
std::string created_key_json(const storage::created_key& k);

/// A JSON array of audit rows.
std::string audit_json(const std::vector<storage::audit_row>& rows);

/// The body of POST /keys: {"name": "...", "role": "...", "tenants": [...]
/// or "*", "expires": "90d" (optional)}. Other members are refused. On
/// error returns false with a message for a 400 `bad_request`.
bool parse_new_key(std::string_view body, storage::new_key& out,
                   std::string& error);

/// An RFC 3339 date-time ("2024-05-01T12:00:00Z", fraction and offset
/// allowed), as the time filters take it.
bool looks_like_rfc3339(std::string_view text) noexcept;

/// `text` (looks_like_rfc3339) as the same instant in UTC
/// ("...T12:00:00.5Z", fraction kept): PostgreSQL refuses offsets beyond
/// +-15:59 that RFC 3339 allows. Empty when `text` is not such a time or
/// the instant falls outside the years 0001..9999.
std::string rfc3339_utc(std::string_view text);

} // namespace ces::api
