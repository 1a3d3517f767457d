// Routing and validation of operator API requests. Pure functions on plain
// types: no RESTinio, no CAF, no I/O, so actors and unit tests can include it.
//
// Routes (all answers JSON): route_table() is the single source (one entry
// per method and path pattern, its route_kind and parameters); route()
// matches against it. Today:
//   GET  /health              health           answered by the HTTP server
//   GET  /ready               ready
//   GET  /events/latest       events_latest    ?limit=N
//   GET  /events/{id}         event_by_id
//   POST /replay/{id}         replay
//   GET  /dlq                 dlq_latest       ?limit=N
//   GET  /supervision         supervision
//   POST /debug/fail/{actor}  debug_fail       only with fault_injection
//   GET  /keys                keys_list        admin
//   POST /keys                key_create       admin, JSON body
//   DELETE /keys/{name}       key_revoke       admin
//   GET  /audit               audit            admin, ?action&principal&from
//                                              &to&limit&cursor
//   GET  /events              events_find      ?tenant_id&topic&key&from&to
//                                              &replays&replay_of&limit
//                                              &cursor
//   GET  /dlq                 dlq_latest       ?status&error_class&topic
//                                              &tenant_id&from&to&limit
//                                              &cursor
//   GET  /dlq/{id}            dlq_by_id
//   POST /replays             replays_create   operator, JSON body
//   GET  /jobs                jobs_list        ?status&kind&limit&cursor
//   GET  /jobs/{id}           job_get
//   POST /jobs/{id}/cancel    job_cancel       operator
//   GET  /openapi.json        openapi          no authentication
//   POST /dlq/{id}/retry      dlq_retry        operator, optional JSON body
//   POST /dlq/{id}/discard    dlq_discard      operator, JSON body (reason)
//   POST /dlq/retry           dlq_bulk_retry   operator, JSON body (job)
//   POST /dlq/discard         dlq_bulk_discard operator, JSON body (job)
//   DELETE /dlq               dlq_purge        admin, ?status&before
// Each route names the least role that may call it (route_spec::min_role;
// api/auth.hpp).
// GET /events/latest answers a JSON array of at most the journal reader's
// max_page_bytes (setting http-max-response-bytes) of events, but at least
// one: a page cut short carries the header `X-Truncated: true`.
// A literal segment wins over a parameter (`/events/latest` is not event
// "latest"). Parameters and their checks: {id} (bad_id), {actor} (404
// not_found unless [a-z0-9_-]{1,64}), {name} (404 not_found unless
// [A-Za-z0-9._-]{1,64}), ?limit (bad_limit); other query parameters are
// passed on in parsed_request::params for the handler to check.
//
// Rules (see route()):
// * The path is matched exactly, segment by segment, after percent-decoding
//   each segment (`/events/%31%32` is event 12; an encoded slash `%2F` stays
//   inside its segment, so `/events%2Flatest` is unknown). No normalisation:
//   a trailing slash, `//` or a dot segment makes a different, unknown path
//   (404 `not_found`). A malformed escape (`%`, `%4`, `%zz`) is 400 `bad_path`;
//   so is a target that does not start with '/' (absolute or `*` form).
// * Ids are decimal int64 > 0, digits only: `-1`, `0`, `+1`, ` 1`, `1.5`,
//   `0x10`, `abc`, an empty id and anything above 9223372036854775807 are
//   400 `bad_id`. Leading zeros are accepted (`007` is 7).
// * `limit` (GET /events/latest, GET /dlq) is decimal, digits only,
//   1..max_limit (default 1000); absent: default_limit (50). `0`, `-5`,
//   `100000`, `x`, `limit=` and a bare `limit` are 400 `bad_limit`.
// * The query string is strict: a parameter a route does not take, or a
//   repeated one, is 400 `bad_query` (a typo such as `?limt=5` is reported
//   rather than silently ignored). Empty pieces (`?`, `&&`) are ignored.
//   Query values are percent-decoded ('+' is a space, so `limit=+1` is
//   bad_limit). A fragment (`#...`) is ignored.
// * Methods: GET routes also accept HEAD (answered like GET, without a body:
//   RFC 9110); anything else on a known path is 405 `method_not_allowed` with
//   `allow` = "GET, HEAD" or "POST". Method names are case-sensitive.
// * Bodies: a body on a GET/HEAD request is ignored; a body larger than
//   max_body_bytes (default 64 KiB) is 413 `body_too_large` on ANY path, before
//   any other check (the server has read it already; the limit is a property
//   of the server, not of a route).
// * Precedence: 413, then 404/400 bad_path, then 405, then 400 (bad_id,
//   bad_limit, bad_query).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ces::api {

/// What a request asks for. Also the `route` label of the HTTP metrics.
enum class route_kind : uint8_t {
  unmatched = 0, // no such path (404) or a malformed one (400 bad_path)
  health,
  ready,
  events_latest,
  event_by_id,
  replay,
  dlq_latest,
  supervision,  // GET /supervision
  debug_fail,   // POST /debug/fail/{actor}, only with fault injection on
  keys_list,    // GET /keys
  key_create,   // POST /keys
  key_revoke,   // DELETE /keys/{name}
  audit,        // GET /audit
  events_find,  // GET /events (filters, cursor)
  dlq_by_id,    // GET /dlq/{id}
  replays_create, // POST /replays (bulk replay job or dry run)
  jobs_list,    // GET /jobs
  job_get,      // GET /jobs/{id}
  job_cancel,   // POST /jobs/{id}/cancel
  openapi,      // GET /openapi.json (no authentication)
  dlq_retry,        // POST /dlq/{id}/retry
  dlq_discard,      // POST /dlq/{id}/discard
  dlq_bulk_retry,   // POST /dlq/retry (job or dry run)
  dlq_bulk_discard, // POST /dlq/discard (job or dry run)
  dlq_purge,        // DELETE /dlq (admin)
};

/// Operator roles, each including the ones below it; route_spec::min_role.
enum class role : uint8_t {
  none = 0,  // unauthenticated: GET /health, GET /ready only
  viewer,    // read routes
  operator_, // viewer + replays and DLQ actions
  admin,     // operator + keys, audit, purge, /debug/*
};

/// "unmatched", "health", "ready", "events_latest", "event_by_id", "replay",
/// "dlq_latest": a small fixed set, usable as a metric label.
const char* to_string(route_kind k) noexcept;

/// One route of the operator API.
struct route_spec {
  /// "GET" (HEAD is answered too) or "POST".
  std::string_view method;
  /// Path pattern: '/'-separated segments, each literal or `{name}`.
  std::string_view pattern;
  route_kind kind = route_kind::unmatched;
  /// Query parameters it takes (e.g. "limit"); any other is bad_query.
  std::vector<std::string_view> query;
  /// Served only with route_options::fault_injection.
  bool fault_injection_only = false;
  /// The least role that may call it (none: no authentication).
  role min_role = role::admin;

  /// The `{name}`s of the pattern, in order.
  std::vector<std::string_view> path_params() const;
};

/// Every route, in a fixed order. route() matches against this table only.
const std::vector<route_spec>& route_table();

/// Limits route() applies.
struct route_options {
  /// Largest accepted request body in bytes; larger is 413.
  size_t max_body_bytes = 64 * 1024;
  /// `limit` when the query has none.
  int default_limit = 50;
  /// Largest accepted `limit`.
  int max_limit = 1000;
  /// Serve POST /debug/fail/{actor} (tests and chaos drills only).
  bool fault_injection = false;
};

/// A valid request.
struct parsed_request {
  route_kind kind = route_kind::unmatched;
  /// event_by_id, replay: the journal id (> 0); else 0.
  int64_t id = 0;
  /// events_latest, dlq_latest: 1..max_limit; else 0.
  int32_t limit = 0;
  /// The method was HEAD: the server sends the answer without its body.
  bool head = false;
  /// debug_fail: the actor to fail; key_revoke: the key name.
  std::string name;
  /// Query parameters the route takes other than `limit`, decoded, in the
  /// order given (each at most once). The route's handler checks their
  /// values (e.g. 400 bad_time).
  std::vector<std::pair<std::string, std::string>> params;
  /// The request body (POST routes; at most max_body_bytes). Filled by the
  /// server after route().
  std::string body;

  /// The value of query parameter `name`, or nullptr.
  const std::string* param(std::string_view name) const;
};

/// A request that is answered with an error right away.
struct route_error {
  int status = 0;      // 400, 404, 405 or 413
  std::string code;    // stable: bad_path, not_found, method_not_allowed,
                       // body_too_large, bad_id, bad_limit, bad_query
  std::string message; // for humans; may change
  std::string allow;   // Allow header value for 405, else empty
};

/// Either a parsed request (ok()) or an error. `kind` is the matched route in
/// both cases (unmatched for unknown or malformed paths), for metrics.
struct route_result {
  route_kind kind = route_kind::unmatched;
  parsed_request request; // valid when ok()
  route_error error;      // valid when !ok()

  bool ok() const noexcept {
    return error.status == 0;
  }
};

/// Routes and validates one request. `target` is the request target as sent
/// (origin form: path, optionally `?query`, still percent-encoded);
/// `body_size` is the size of the request body in bytes. Never throws except
/// std::bad_alloc.
route_result route(std::string_view method, std::string_view target,
                   size_t body_size, const route_options& opts = {});

/// Parses a decimal int64 > 0 made of digits only (no sign, no spaces).
/// Returns 0 when `text` is not such a number.
int64_t parse_positive_id(std::string_view text) noexcept;

/// Decodes %XX escapes (and '+' as space when `plus_is_space`). Returns
/// false on a malformed escape. The result may contain any bytes.
bool percent_decode(std::string_view in, std::string& out,
                    bool plus_is_space = false);

} // namespace ces::api
