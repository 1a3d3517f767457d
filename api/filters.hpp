// The filters of GET /events, GET /dlq, GET /jobs and of a bulk replay's
// `filter`, parsed from query parameters into the storage model's filter
// types; the opaque keyset cursors of paged answers. Pure functions: no CAF,
// no I/O.
//
// Event filters (GET /events; the same names in POST /replays' `filter`):
//   tenant_id  a tenant id (1..256 bytes, no control characters)
//   topic      a Kafka topic name ([A-Za-z0-9._-]{1,249})
//   key        the record key, as UTF-8 text (exact match)
//   from, to   RFC 3339 times on received_at: from <= received_at < to
//   replays    include (default) | exclude | only
//   replay_of  a journal id: only replays of that event
// Errors (400): bad_time (from/to), bad_filter (any other value), bad_query
// (from > to is bad_time too).
#pragma once

#include "storage/model.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ces::api {

/// Query parameters as the router passes them (decoded, each at most once).
using query_params = std::vector<std::pair<std::string, std::string>>;

/// Why a filter was refused: a stable code (bad_time, bad_filter,
/// bad_cursor) and a message for humans.
struct filter_error {
  std::string code;
  std::string message;
};

/// Fills `f` from the event filter parameters among `params` (others, such as
/// limit and cursor, are ignored). False and `err` when a value is invalid.
bool parse_event_filter(const query_params& params, event_filter& f,
                        filter_error& err);

/// GET /dlq: status (pending|retried|resolved|discarded), error_class
/// ([a-z_]{1,64}), topic, tenant_id, from, to.
bool parse_dlq_filter(const query_params& params, dlq_filter& f,
                      filter_error& err);

/// GET /jobs: status (queued|running|succeeded|failed|cancelled), kind
/// ([a-z_]{1,32}).
bool parse_job_filter(const query_params& params, job_filter& f,
                      filter_error& err);

/// The opaque keyset cursor of a page whose last row has id `last_id`: the
/// next page holds rows with id < last_id. base64url text; clients must not
/// build it.
std::string encode_cursor(int64_t last_id);

/// The id a cursor made by encode_cursor() carries, or 0 when `text` is not
/// such a cursor.
int64_t decode_cursor(std::string_view text) noexcept;

/// The `cursor` parameter among `params`: its id in `before` (0 when there
/// is none). False and bad_cursor when it is not a cursor of ours.
bool parse_cursor(const query_params& params, int64_t& before,
                  filter_error& err);

/// Whether a filter stays inside the requester's scope: a filter naming a
/// tenant the scope does not see is refused (403 forbidden, `why` says
/// which), rather than answered with nothing. A filter without a tenant is
/// always in scope (the query is limited to the scope).
bool filter_in_scope(const std::string& tenant_id, const tenant_scope& scope,
                     std::string& why);

} // namespace ces::api
