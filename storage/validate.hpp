// Payload validation: decides, before any SQL runs, whether a Kafka record can
// go into event_journal (JSON that PostgreSQL's jsonb accepts, with a tenant)
// or must go to event_dlq, and why. Pure functions, no I/O.
#pragma once

#include "storage/model.hpp"

#include <string>
#include <string_view>

namespace ces {

struct validation_limits {
  /// Values larger than this go to the DLQ as `too_large`.
  size_t max_payload_bytes = 1024 * 1024;
  /// JSON nested deeper than this goes to the DLQ as `invalid_json`.
  size_t max_depth = 512;
};

/// Result of checking one JSON text.
struct json_check {
  bool ok = false;           // valid JSON that jsonb accepts
  std::string error;         // why not, when !ok
  bool is_object = false;    // top-level value is an object
  bool has_tenant = false;   // top-level object has a "tenant_id" key
  bool tenant_is_string = false;
  std::string tenant_id;     // unescaped value of the last "tenant_id" key
};

/// Validates `text` as RFC 8259 JSON under PostgreSQL jsonb's extra rules
/// (valid UTF-8, no \u0000, no unpaired surrogate escapes) and `max_depth`,
/// and extracts the top-level "tenant_id".
json_check check_json(std::string_view text, size_t max_depth);

/// Classifies one record: accepted (tenant_id and replay_of filled in) or
/// rejected with its reason and a message. The tenant comes from the payload's
/// top-level string "tenant_id", else from a "tenant_id" header.
checked_record check_record(kafka_record rec, const validation_limits& limits);

} // namespace ces
