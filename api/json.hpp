// JSON bodies of the operator API. Pure functions on plain types (no
// RESTinio, no CAF, no JSON library in this header). Every function returns a
// complete, valid, UTF-8 JSON text, compact (no spaces; the examples below
// are spaced for reading), members in the order shown.
//
// An event (GET /events/latest is an array of these, GET /events/{id} one):
//   {"id": 42, "tenant_id": "t1", "topic": "apexflow.jobs.created",
//    "partition": 3, "offset": 17,
//    "key": "job-1",                      // or null (no key), or
//                                         // {"base64": "..."} (not UTF-8)
//    "headers": [{"key": "k", "value": "v"}, ...],
//    "payload": {...},                    // the journalled JSON itself
//    "kafka_timestamp": "2024-05-01T12:00:00.123Z",   // or null
//    "received_at": "2024-05-01T12:00:00.123456Z",
//    "replay_of": null}                   // or the replayed journal id
// Headers use the journal's own format (storage/headers_json.hpp): "value"
// for UTF-8 text without NUL, "value_b64" for other bytes, "value": null for
// a null value, "key_b64" for a key that is not such text.
// A key is a JSON string when it is valid UTF-8 (a NUL is written \u0000),
// else {"base64": "<standard base64 with padding>"}.
//
// A DLQ entry (GET /dlq is an array of these):
//   {"id": 7, "topic": "...", "partition": 0, "offset": 5,  // or null
//    "key": ..., "headers": [...],
//    "payload": ...,            // see payload_format
//    "payload_format": "json",  // json: payload is the value itself (it is
//                               //   valid JSON, checked like the journal
//                               //   checks it, and error_class is not
//                               //   db_rejected, i.e. jsonb did not refuse
//                               //   it); text: a JSON string (valid UTF-8,
//                               //   not such JSON); base64: {"base64":..};
//                               //   null: payload null (null Kafka value)
//    "payload_bytes": 1234,     // size of the stored value
//    "payload_truncated": false,// true: only the first bytes are shown
//                               //   (never json then)
//    "kafka_timestamp": ... or null, "tenant_id": "t1" or null,
//    "error_class": "invalid_json", "error": "...", "attempts": 1,
//    "status": "pending", "received_at": "...Z", "updated_at": "...Z"}
//
// Errors: {"error": "<stable code>", "message": "<for humans>"}.
#pragma once

#include "storage/journal_reader.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ces::api {

/// One journal event as a JSON object.
std::string event_json(const storage::journal_event& e);

/// A JSON array of events, in the given order (`[]` when empty).
std::string events_json(const std::vector<storage::journal_event>& events);

/// One DLQ entry as a JSON object.
std::string dlq_entry_json(const storage::dlq_entry_row& d);

/// A JSON array of DLQ entries, in the given order (`[]` when empty).
std::string dlq_json(const std::vector<storage::dlq_entry_row>& entries);

/// {"error": code, "message": message}. Invalid UTF-8 in either becomes
/// U+FFFD.
std::string error_json(std::string_view code, std::string_view message);

/// {"status":"replayed","event_id":…,"topic":…,"partition":…,"offset":…,
///  "replay_id":"…"}: the answer of POST /replay/{id}.
std::string replay_json(int64_t event_id, std::string_view topic,
                        int32_t partition, int64_t offset,
                        std::string_view replay_id);

/// {"status":"healthy","service":"crm-events-sink"}.
std::string health_json();

/// One part of GET /ready.
struct readiness_check {
  std::string name;   // e.g. "postgres", "kafka", "actor:persister"
  bool ok = false;
  std::string detail; // why not (or any note); omitted when empty
};

/// True when every check is ok (and there is at least one).
bool all_ready(const std::vector<readiness_check>& checks) noexcept;

/// {"status":"ready"|"not_ready","failing":["kafka",...],
///  "checks":{"postgres":{"ok":true},"kafka":{"ok":false,"detail":"..."}}}.
/// Answer it with 200 when all_ready(checks), else 503.
std::string ready_json(const std::vector<readiness_check>& checks);

/// One supervised actor in GET /supervision.
struct actor_state {
  std::string name;
  std::string state; // running, restarting, stopping, stopped
  uint32_t restarts = 0;
  std::string last_failure; // "" when none
};

/// {"actors":[{"name":…,"state":…,"restarts":…,"last_failure":…|null},…]}.
std::string supervision_json(const std::vector<actor_state>& actors);

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds:
/// "2024-05-01T12:00:00.123Z".
std::string rfc3339_ms(int64_t epoch_ms);

} // namespace ces::api
