// Payload validation: decides, before any SQL runs, whether a Kafka record can
// go into event_journal (JSON that PostgreSQL's jsonb accepts, with a tenant)
// or must go to event_dlq, and why. Pure functions, no I/O.
#pragma once

#include "storage/model.hpp"
#include "storage/utf8.hpp" // is_valid_utf8, used with check_json

#include <cstdint>
#include <string>
#include <string_view>

namespace ces {

/// Longest tenant_id accepted (payload or header), in bytes.
inline constexpr size_t max_tenant_id_bytes = 256;

/// Longest `x-replay-id` header value taken as a replay id.
inline constexpr size_t max_replay_id_bytes = 64;

/// Kind of a JSON value, as reported for the top-level "tenant_id".
enum class json_type : uint8_t { none, object, array, string, number, boolean, null };

/// "object", "array", "string", "number", "boolean", "null" ("none" for none).
const char* to_string(json_type t) noexcept;

struct validation_limits {
  /// Values larger than this go to the DLQ as `too_large`.
  size_t max_payload_bytes = 1024 * 1024;
  /// JSON nested deeper than this goes to the DLQ as `invalid_json`.
  size_t max_depth = 512;
};

/// Result of checking one JSON text. When !ok only `error` is meaningful.
struct json_check {
  bool ok = false;           // valid JSON that jsonb accepts
  std::string error;         // why not, when !ok; "byte N" is a 0-based offset
  bool is_object = false;    // top-level value is an object
  bool has_tenant = false;   // top-level object has a "tenant_id" key
  bool tenant_is_string = false;
  json_type tenant_type = json_type::none; // type of the last "tenant_id" value
  std::string tenant_id;     // unescaped value of the last "tenant_id" key
};

/// Validates `text` as RFC 8259 JSON under PostgreSQL jsonb's extra rules
/// (valid UTF-8, no \u0000, no unpaired surrogate escapes) and `max_depth`
/// (containers nested `max_depth` deep pass, one more fails), and extracts the
/// top-level "tenant_id" (keys compared unescaped, the last duplicate wins, as
/// jsonb keeps it). Single pass, iterative (no recursion), no DOM.
/// Assumes a UTF8 database (with another server encoding PostgreSQL also
/// refuses \u escapes above U+007F). Numbers follow the JSON grammar and
/// PostgreSQL 15's numeric limits: at most 131072 digits before the decimal
/// point, at most 16383 after it (counted as digits after the point minus the
/// exponent, so `1e-16384` and `1.0e-16383` fail: PostgreSQL does not round
/// them to 0), and an exponent below 1073741823 (INT_MAX / 2) in magnitude
/// even for 0; such a number fails with a message naming it and the limit.
json_check check_json(std::string_view text, size_t max_depth);

/// Classifies one record: accepted (tenant_id and replay_of filled in) or
/// rejected with its reason and a message. The record is moved into the result.
/// - null or zero-length value: empty_value; larger than max_payload_bytes:
///   too_large (checked before parsing); check_json failure: invalid_json.
/// - tenant: the payload's top-level string "tenant_id"; only when the payload
///   has no such key (or is not an object), the last "tenant_id" header (valid
///   UTF-8, no NUL). A payload tenant_id that is not a string, is empty or is
///   longer than max_tenant_id_bytes is missing_tenant, with no header
///   fallback; so is an empty or too long header value.
/// - replay_of: the last "x-replay-of" header when it is a positive decimal
///   int64 (digits only), else 0; filled in for rejected records too. It is
///   a claim: the journal_writer keeps it only for a recorded replay.
/// - replay_id: when replay_of is set, the last "x-replay-id" header if it is
///   1..max_replay_id_bytes of [A-Za-z0-9._-], else empty.
/// - replay_job: when replay_of is set, the last "x-replay-job" header when
///   it is a positive decimal int64, else 0.
checked_record check_record(kafka_record rec, const validation_limits& limits);

} // namespace ces
