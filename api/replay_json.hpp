// POST /replays and /jobs: the bulk replay request body and the JSON of
// plans and jobs. Pure functions: no CAF, no I/O; nlohmann stays in the .cpp.
//
// Body of POST /replays (a JSON object; any other field is 400 bad_request):
//   filter       object: the GET /events filters (tenant_id, topic, key,
//                from, to, replays, replay_of; strings, replay_of may be a
//                number) and/or ids (1..10 000 positive journal ids)
//   transform    optional RFC 6902 JSON Patch (array), applied to each
//                payload before it is published (bad_transform)
//   target_topic optional topic to publish every event to
//   rate_per_s   optional events per second (1..1 000 000)
//   max_events   optional guard (1..10 000 000; default: the setting
//                jobs-default-max-events)
//   dry_run      optional boolean
#pragma once

#include "api/filters.hpp"
#include "storage/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace ces::api {

/// Values a request may leave out.
struct replay_defaults {
  int64_t max_events = 100000;
};

/// Most `ids` in a filter.
inline constexpr size_t max_replay_ids = 10000;

/// Parses a POST /replays body into `out` (out.body: the body as sent).
/// False and `err` (code bad_request, bad_filter, bad_time or
/// bad_transform) when it is invalid.
bool parse_replay_request(const std::string& body,
                          const replay_defaults& defaults,
                          replay_request& out, filter_error& err);

/// Parses a POST /dlq/retry (`action` "retry") or POST /dlq/discard
/// ("discard") body into `out` (out.body: the body as sent):
///   filter      object: the GET /dlq filters (status pending (default) or
///               failed, error_class, topic, tenant_id, from, to; strings)
///               and/or ids (1..10 000 positive DLQ ids)
///   mode        retry only: journal (default) or republish
///   transform   retry, journal mode only: RFC 6902 JSON Patch (array)
///   reason      discard only, required: 1..1000 bytes
///   max_events  optional guard (1..10 000 000; default: the setting
///               jobs-default-max-events)
///   dry_run     optional boolean
/// A member of the other action (reason on retry, mode or transform on
/// discard) or an unknown one is 400 bad_request. False and `err` (code
/// bad_request, bad_filter, bad_time or bad_transform) when it is invalid.
bool parse_dlq_bulk_request(const std::string& body, const std::string& action,
                            const replay_defaults& defaults,
                            dlq_bulk_request& out, filter_error& err);

/// The bulk DLQ dry-run answer: {"dry_run":true,"matched":N,
/// "by_error_class":{...},"by_topic":{...},"by_tenant":{...},
/// "sample_ids":[...]}.
std::string dlq_plan_json(const dlq_plan& p);

/// The dry-run answer: {"dry_run":true,"matched":N,"by_topic":{...},
/// "by_tenant":{...},"first_received_at":...|null,"last_received_at":...,
/// "samples":[{"event_id":..,"payload":<JSON>},...]}.
std::string plan_json(const replay_plan& p);

/// One job: {"id","kind","status","matched","done","failed","requested_by",
/// "request_id","request":<JSON>,"last_error","cancel_requested",
/// "created_at","started_at","finished_at"} (null when empty).
std::string job_json(const job_row& j);

/// A JSON array of jobs, in the given order.
std::string jobs_json(const std::vector<job_row>& jobs);

/// The 202 answer of POST /replays: {"job_id":J,"status":"queued",
/// "matched":N}.
std::string job_created_json(const job_row& j);

} // namespace ces::api
