// Typed messaging interfaces of every actor of the service, in one place.
// Actor names in CAPS are the actors; see actors/<name>.hpp for factories.
#pragma once

#include "actors/errc.hpp"
#include "actors/type_ids.hpp"

namespace ces {

/// Anything the /ready probe asks whether its dependency answers.
using ping_actor = caf::typed_actor<
  /// Whether the dependency answers; an error (e.g. db_unavailable) if not.
  caf::replies_to<atom::ping>::with<bool>>;

/// PERSISTER (detached; owns its PostgreSQL connection). Writes a batch in one
/// transaction: journal rows (COPY), DLQ rows and the journal's next offsets
/// (keyed by the batch's Kafka cluster id).
/// Replies once committed. On infrastructure errors it keeps the batch and
/// retries with capped backoff; nothing is acknowledged meanwhile.
using persister_actor = caf::typed_actor<
  /// Journal one batch; the reply is what the committed transaction did.
  caf::replies_to<atom::persist, batch>::with<persist_outcome>,
  /// (self, timer) Retry the head batch after an infrastructure error.
  caf::reacts_to<atom::internal, atom::retry>>;

/// CONSUMER (detached; owns the librdkafka group consumer). Self-driven poll
/// loop: validates records, cuts batches by count and linger, keeps at most a
/// fixed number of batches in flight to the PERSISTER, then commits offsets
/// to Kafka. Stops gracefully on a user_shutdown exit message.
using consumer_actor = caf::typed_actor<
  /// (self) Poll the next records from Kafka.
  caf::reacts_to<atom::internal, atom::poll>,
  /// (self, timer) Serve rebalance callbacks while the in-flight bound is
  /// reached.
  caf::reacts_to<atom::internal, atom::keepalive>,
  /// (self, timer) Publish crm_consumer_lag_records from the cached
  /// watermarks (every consumer_settings::lag_interval).
  caf::reacts_to<atom::internal, atom::refresh>>;

/// DLQ (detached; owns its own PostgreSQL connection for event_dlq reads and
/// maintenance — never the PERSISTER's — and a librdkafka producer of its
/// own for republishing). Keeps crm_dlq_pending current; fixes and redrives
/// single rows; retries the rows of the auto-retried error classes with
/// capped exponential backoff, a few per tick, never blocking ingestion.
/// Every status change is audited. Errors: not_found (404; also a row the
/// scope does not see), conflict (409: resolved, discarded or being
/// republished), unprocessable (422 still_invalid), forbidden (403),
/// bad_request (400, stable code in the context), db_unavailable (503),
/// broker_unavailable, delivery_failed, delivery_timeout (503).
using dlq_actor = caf::typed_actor<
  /// (self, timer) Re-read the number of pending DLQ entries.
  caf::reacts_to<atom::internal, atom::refresh>,
  /// Number of pending DLQ entries as last read (-1 before the first read).
  caf::replies_to<atom::status>::with<int64_t>,
  /// The newest N entries of event_dlq the tenant scope sees, newest first
  /// (entries without a tenant only with scope.unknown_tenant).
  caf::replies_to<atom::latest, int32_t, tenant_scope>::with<
    std::vector<storage::dlq_entry_row>>,
  /// GET /dlq with filters: at most N entries matching the filter that the
  /// scope sees, with id < the cursor id (0: from the newest), newest first.
  caf::replies_to<atom::find, dlq_filter, tenant_scope, int32_t,
                  int64_t>::with<std::vector<storage::dlq_entry_row>>,
  /// GET /dlq/{id}: one element, or none (also when the scope does not see
  /// it).
  caf::replies_to<atom::get, int64_t, tenant_scope>::with<
    std::vector<storage::dlq_entry_row>>,
  /// POST /dlq/{id}/retry: journal mode writes the journal row and resolves
  /// the DLQ row in one transaction (still-invalid bytes: 422 still_invalid,
  /// attempts + 1); republish mode resolves it after the broker's ack.
  caf::replies_to<atom::retry, dlq_retry_request, requester>::with<
    dlq_retry_result>,
  /// POST /dlq/{id}/discard with a reason: the row after the change (one
  /// element).
  caf::replies_to<atom::discard, int64_t, std::string, requester>::with<
    std::vector<storage::dlq_entry_row>>,
  /// DELETE /dlq?status=resolved|discarded&before=T (admin): the number of
  /// rows deleted (in small batches).
  caf::replies_to<atom::purge, std::string, std::string, requester>::with<
    int64_t>,
  /// (self, timer) Retry the due rows of the auto-retried error classes.
  caf::reacts_to<atom::internal, atom::retry>,
  /// (self, timer) Serve the republish producer's delivery reports.
  caf::reacts_to<atom::internal, atom::poll>>;

/// DLQ_ALERTS (detached; own PostgreSQL connection; libcurl): watches the
/// DLQ and calls the alert webhook (dlq-webhook-url) when it crosses
/// dlq-alert-threshold or grows by dlq-alert-growth within
/// dlq-alert-window-s (at most once per dlq-alert-cooldown-s), and once
/// more when it recovers; signed as the Standard Webhooks spec says.
/// Deliveries are retried with backoff on 5xx and timeouts by delayed
/// messages from a bounded queue: a slow or dead receiver delays only this
/// actor. Spawned only when dlq-webhook-url is set.
using dlq_alerts_actor = caf::typed_actor<
  /// (self, timer) Read the DLQ's figures; fire or recover an alert.
  caf::reacts_to<atom::internal, atom::refresh>,
  /// (self, timer) Deliver the queued webhook calls that are due.
  caf::reacts_to<atom::internal, atom::flush>>;

/// JOURNAL (detached; own PostgreSQL connection, read-only transactions):
/// journal reads for the operator API. Never waits behind a write batch.
/// A read whose deadline (caf::timestamp) has passed when the JOURNAL takes
/// it is answered errc::expired at once, without asking PostgreSQL. Its
/// ping: whether PostgreSQL answers; error db_unavailable if not.
using journal_actor = caf::typed_actor<
  /// The newest N journal rows the tenant scope sees, newest first, cut to
  /// the reader's byte bound (true: cut, there are more).
  caf::replies_to<atom::latest, int32_t, tenant_scope, caf::timestamp>::with<
    std::vector<storage::journal_event>, bool>,
  /// The journal row with this id: one element, or none (also when the
  /// tenant scope does not see it: never reveal that it exists).
  caf::replies_to<atom::get, int64_t, tenant_scope, caf::timestamp>::with<
    std::vector<storage::journal_event>>,
  /// GET /events: at most N rows matching the filter that the tenant scope
  /// sees, with id < the cursor id (0: from the newest), newest first, cut
  /// to the reader's byte bound (true: cut).
  caf::replies_to<atom::find, event_filter, tenant_scope, int32_t, int64_t,
                  caf::timestamp>::with<std::vector<storage::journal_event>,
                                        bool>>::extend_with<ping_actor>;

/// PG_PROBE (detached; a PostgreSQL connection used for nothing else): the
/// PostgreSQL check of /ready, so that it never queues behind operator reads.
/// Its ping: whether PostgreSQL answers `SELECT 1`; error db_unavailable if
/// not.
using pg_probe_actor = ping_actor;

/// REPLAYER (detached; owns the only librdkafka producer and a journal
/// connection of its own). Republishes a journalled event to its topic with
/// its key and headers plus provenance headers, and answers once the broker
/// acknowledged it (errors: not_found, rate_limited, db_unavailable,
/// broker_unavailable, delivery_failed, delivery_timeout). Keeps the
/// per-tenant replay budget; records every replay (replays row and audit
/// row, one transaction) before publishing, and audits its outcome. A fatal
/// producer error crashes it for the SUPERVISOR.
/// Its ping: whether the broker answers a metadata request (for /ready).
using replayer_actor = caf::typed_actor<
  /// Republish journal event `id` for the requester; the reply is where it
  /// landed. not_found also when its scope does not see the event;
  /// rate_limited (context: message, retry-after seconds) over the tenant's
  /// budget.
  caf::replies_to<atom::replay, int64_t, requester>::with<replay_result>,
  /// (self, timer) Serve delivery reports while replays are in flight.
  caf::reacts_to<atom::internal, atom::poll>>::extend_with<ping_actor>;

/// AUTH (detached; own PostgreSQL connection): who sent an operator
/// request. API keys (cached briefly) and JWTs; failed attempts limited per
/// client address; audit rows of refusals written in batches.
using auth_actor = caf::typed_actor<
  /// The principal of a request; errors: unauthenticated (401),
  /// rate_limited (429, seconds to wait), db_unavailable (503).
  caf::replies_to<atom::authenticate, auth_request>::with<auth::principal>,
  /// Append an audit row (refused requests, actions without a transaction
  /// of their own); written in batches, kept while PostgreSQL is away.
  caf::reacts_to<atom::audit, audit_entry>,
  /// (self, timer) Write queued audit rows and keys' last use.
  caf::reacts_to<atom::internal, atom::flush>,
  /// (self, timer) API_AUTH=off: log the warning again.
  caf::reacts_to<atom::internal, atom::warn>>;

/// ADMIN (detached; own PostgreSQL connection): API keys and the audit log
/// for the admin routes. Errors: bad_request (400), conflict (409),
/// db_unavailable (503).
using admin_actor = caf::typed_actor<
  /// Every API key, revoked ones too (never a key or its hash).
  caf::replies_to<atom::list>::with<std::vector<storage::api_key_row>>,
  /// Create a key (created_by: the requester); the reply holds the key,
  /// shown once. Committed with its audit row.
  caf::replies_to<atom::create, storage::new_key, requester>::with<
    storage::created_key>,
  /// Revoke the active key of that name (with its audit row); false: none.
  caf::replies_to<atom::revoke, std::string, requester>::with<bool>,
  /// Audit rows matching the filter, newest first, at most N, id < before
  /// (0: from the newest).
  caf::replies_to<atom::query, storage::audit_filter, int32_t,
                  int64_t>::with<std::vector<storage::audit_row>>>;

/// JOBS (detached; own PostgreSQL connection and its own librdkafka
/// producer): bulk replay jobs and bulk DLQ actions (kinds replay,
/// dlq_retry, dlq_discard). Plans (dry runs) and creates jobs, runs them
/// one batch per message (so that API requests and cancels interleave),
/// resumes running jobs after a restart. Errors: bad_request (400, with a
/// stable code in the context: too_many_events, bad_transform, ...),
/// not_found (404; also a job the scope does not see), forbidden (403),
/// db_unavailable (503).
using jobs_actor = caf::typed_actor<
  /// POST /replays with dry_run: what the job would do; nothing published.
  caf::replies_to<atom::plan, replay_request, requester>::with<replay_plan>,
  /// POST /replays: create a queued job (its set of events fixed now).
  caf::replies_to<atom::create, replay_request, requester>::with<job_row>,
  /// GET /jobs/{id}.
  caf::replies_to<atom::get, int64_t, requester>::with<job_row>,
  /// GET /jobs: at most N jobs matching the filter, id < cursor (0: from the
  /// newest), newest first.
  caf::replies_to<atom::list, job_filter, int32_t, int64_t, requester>::with<
    std::vector<job_row>>,
  /// POST /jobs/{id}/cancel: the job as it is after the request (a finished
  /// job is answered unchanged).
  caf::replies_to<atom::cancel, int64_t, requester>::with<job_row>,
  /// POST /dlq/retry or /dlq/discard with dry_run: what the job would
  /// cover; nothing changed.
  caf::replies_to<atom::plan, dlq_bulk_request, requester>::with<dlq_plan>,
  /// POST /dlq/retry or /dlq/discard: create a queued dlq_retry or
  /// dlq_discard job (its set of rows fixed now).
  caf::replies_to<atom::create, dlq_bulk_request, requester>::with<job_row>,
  /// (self) Run the next batch of the current job, or look for a job.
  caf::reacts_to<atom::internal, atom::run>>;

/// IDEMPOTENCY (detached; own PostgreSQL connection): the first answer of a
/// POST per (principal, Idempotency-Key), for 24 hours.
using idempotency_actor = caf::typed_actor<
  /// Claim (principal, key) for a request with this fingerprint.
  caf::replies_to<atom::claim, std::string, std::string,
                  std::string>::with<idempotent_answer>,
  /// Store the first answer (principal, key, answer with state "done").
  caf::reacts_to<atom::complete, std::string, std::string,
                 idempotent_answer>,
  /// Drop a claim whose request did nothing (e.g. 429, 503).
  caf::reacts_to<atom::release, std::string, std::string>,
  /// (self, timer) Delete answers older than 24 hours.
  caf::reacts_to<atom::internal, atom::flush>>;

/// MAINTENANCE (detached; owns its own PostgreSQL connection). Keeps the
/// partitioned journal's partitions created ahead of the database clock and
/// applies the retention settings (journal partitions dropped whole; DLQ and
/// audit rows deleted in small batches), once at start and then every
/// maintenance-interval-s. Never touches ingestion's connections.
using maintenance_actor = caf::typed_actor<
  /// (self, timer) Create partitions ahead, then apply retention.
  caf::reacts_to<atom::internal, atom::refresh>,
  /// Run one round now (tests, drills); the reply is the number of
  /// partitions created plus dropped plus rows deleted in it.
  caf::replies_to<atom::run>::with<int64_t>>;

/// HTTP_BRIDGE (cooperative, never blocks). Turns an operator request that
/// the HTTP server accepted into messages for the JOURNAL, DLQ, REPLAYER and
/// SUPERVISOR, and answers it from their replies.
using http_bridge_actor = caf::typed_actor<
  /// Serve one routed request; the answer goes to the request itself.
  caf::reacts_to<std::shared_ptr<api::pending_request>, api::parsed_request>>;

/// SUPERVISOR. Monitors its children, restarts a crashed child with
/// exponential backoff together with the children that depend on it, and
/// stops the process (quits with an error) when its restart budget is spent.
using supervisor_actor = caf::typed_actor<
  /// (self, timer) Start a child and its dependants after their backoff.
  caf::reacts_to<atom::internal, atom::respawn, std::string>,
  /// State, restart count and last failure of every child.
  caf::replies_to<atom::status>::with<std::vector<child_status>>,
  /// Ordered, graceful shutdown: children stop in reverse start order.
  caf::reacts_to<atom::shutdown>,
  /// (self) Stop the next child of the shutdown sequence.
  caf::reacts_to<atom::internal, atom::stop_next>,
  /// (self, timer) Kill the named child if it outlived its stop timeout.
  caf::reacts_to<atom::internal, atom::force_stop, std::string>,
  /// Fault injection: end the named child as if it had crashed; false if no
  /// such child is running.
  caf::replies_to<atom::fail, std::string>::with<bool>>;

} // namespace ces

CAF_BEGIN_TYPE_ID_BLOCK(ces_actors, caf::id_block::ces::end)
  CAF_ADD_TYPE_ID(ces_actors, (ces::persister_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::consumer_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::dlq_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::supervisor_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::journal_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::replayer_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::http_bridge_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::auth_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::admin_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::jobs_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::idempotency_actor))
  CAF_ADD_TYPE_ID(ces_actors, (ces::dlq_alerts_actor))
CAF_END_TYPE_ID_BLOCK(ces_actors)
