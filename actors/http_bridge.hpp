// HTTP_BRIDGE: the actor side of the operator API. The HTTP server (api/)
// routes and validates a request, then hands it over with anon_send and
// returns at once; the bridge asks the AUTH actor who sent it (every route
// but GET /health, GET /ready and GET /openapi.json), checks the route's role
// (403), then asks the JOURNAL, DLQ, REPLAYER or SUPERVISOR with the
// principal's tenant scope and answers the request from their reply. It
// never blocks: every call is an asynchronous request with a timeout, so a
// request is always answered. Refusals (401, 403, 429) are audited by the
// AUTH actor.
// Idempotency-Key (POST /replay/{id}, POST /replays; api/idempotency.hpp):
// after the role check the bridge claims (principal, key) with the request's
// fingerprint at the IDEMPOTENCY actor: "done" answers the stored answer
// with `Idempotent-Replayed: true`, "pending" 409 idempotency_in_progress
// (Retry-After), "mismatch" 422 idempotency_key_reused, "new" serves the
// request; the answer that goes out (whoever sends it, also to a client
// that has gone) completes the claim (final answers), releases it (429,
// 408, 409, 5xx) or leaves it pending until it expires (503
// upstream_timeout, 503 dropped, 504: the outcome is unknown).
#pragma once

#include "actors/interfaces.hpp"

#include <chrono>

namespace ces {

struct http_bridge_settings {
  /// Longest wait for a journal or DLQ read.
  std::chrono::milliseconds read_timeout{5000};
  /// Longest wait for a replay (keep above the producer's message timeout).
  std::chrono::milliseconds replay_timeout{15000};
  /// Longest wait for a DLQ action (POST /dlq/{id}/retry may republish:
  /// keep above the producer's message timeout; discard, purge).
  std::chrono::milliseconds dlq_action_timeout{15000};
  /// Longest wait for the JOBS actor (a plan or a create counts the
  /// matching events; a batch may be in progress).
  std::chrono::milliseconds jobs_timeout{15000};
  /// POST /replays without max_events (setting jobs-default-max-events).
  int64_t jobs_default_max_events = 100000;
  /// Longest wait for each readiness probe.
  std::chrono::milliseconds ready_timeout{3000};
  /// Longest wait for the AUTH actor (a JWKS refresh may take 5 s).
  std::chrono::milliseconds auth_timeout{8000};
  /// Without an AUTH actor (peers.auth null): true serves every request as
  /// the anonymous admin (actor tests only); false answers 503.
  bool serve_without_auth = false;
  /// For the PG_PROBE the bridge spawns (linked) when peers.postgres is
  /// null; empty: /ready asks the JOURNAL instead (tests).
  std::string database_url;
};

struct http_bridge_peers {
  journal_actor journal;
  dlq_actor dlq;
  replayer_actor replayer;
  supervisor_actor supervisor;
  /// /ready's PostgreSQL check (see http_bridge_settings::database_url).
  pg_probe_actor postgres = {};
  /// Who is asking. Null: see http_bridge_settings::serve_without_auth.
  auth_actor auth = {};
  /// Keys and audit log (admin routes). Null: those routes answer 503.
  admin_actor admin = {};
  /// Bulk replay jobs (POST /replays, /jobs). Null: those routes answer 503.
  jobs_actor jobs = {};
  /// Idempotency-Key answers. Null: POSTs with the header answer 503.
  idempotency_actor idempotency = {};
};

struct http_bridge_state {
  static inline const char* name = "http_bridge";
};

http_bridge_actor::behavior_type
http_bridge(http_bridge_actor::stateful_pointer<http_bridge_state> self,
            http_bridge_peers peers, http_bridge_settings cfg);

/// HTTP status and stable error code for an error a peer answered with.
std::pair<int, const char*> http_error(const caf::error& err);

} // namespace ces
