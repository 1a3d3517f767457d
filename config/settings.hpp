// The service's settings as plain data. Parsing lives in config/config.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ces {

struct settings {
  // -- Kafka -----------------------------------------------------------------
  /// Bootstrap servers; the special value "embedded" starts librdkafka's mock
  /// cluster inside the process (local runs and demos only).
  std::string kafka_bootstrap_servers = "localhost:9092";
  std::vector<std::string> kafka_topics = {"apexflow.leads.created",
                                           "apexflow.jobs.created"};
  std::string kafka_group_id = "crm-events-sink";
  /// Extra librdkafka properties, "key=value" each (SASL, TLS, ...).
  std::vector<std::string> kafka_properties;
  int kafka_session_timeout_ms = 45000;
  /// Partitions per topic created by the embedded broker.
  int embedded_partitions = 6;
  /// With the embedded broker: write its bootstrap address to this file
  /// (for sample-traffic generators and kcat). Empty: don't.
  std::string embedded_bootstrap_file;

  // -- PostgreSQL ------------------------------------------------------------
  /// libpq URI, e.g. postgresql://user:pw@host:5432/db. Required.
  std::string database_url;

  // -- Ports -----------------------------------------------------------------
  std::string http_address = "0.0.0.0";
  uint16_t http_port = 9106;
  std::string metrics_address = "0.0.0.0";
  uint16_t metrics_port = 9105;
  /// Operator API requests being served at once; more get 503 at once.
  int http_max_in_flight = 64;
  /// Open operator API connections; a new one beyond it is closed at once
  /// (kept below the process's descriptor limit).
  int http_max_connections = 512;
  /// GET /events/latest answers at most this many bytes of events (at least
  /// one event): a shorter page with `X-Truncated: true`.
  size_t http_max_response_bytes = 8 * 1024 * 1024;
  /// 1: serve POST /debug/fail/{actor} (fault-injection drills; never in
  /// production).
  int fault_injection = 0;
  /// Keep each payload's original bytes (event_journal.payload_raw) so that
  /// a replay publishes them exactly; 0: replays publish jsonb's rendering
  /// (faster ingest: bench/README.md).
  int journal_keep_raw = 1;

  // -- Security --------------------------------------------------------------
  /// "on" (default): every route but GET /health and GET /ready needs an API
  /// key or a JWT. "off": anyone is admin of every tenant (laptops only; a
  /// warning is logged at start and every 10 minutes).
  std::string api_auth = "on";
  /// A file holding an API key registered as admin `bootstrap` at start.
  std::string admin_token_file;
  /// JWKS for RS256/ES256 JWTs: a file path or an https:// URL. Empty: none.
  std::string jwt_jwks;
  /// CA bundle (PEM) to verify an https JWKS URL; empty: the system's.
  std::string jwt_jwks_ca_file;
  /// Fetch the JWKS again for an unknown `kid` at most this often.
  int jwt_jwks_min_refresh_s = 60;
  /// A file holding the HS256 secret. Empty: HS256 tokens are refused.
  std::string jwt_hs256_secret_file;
  /// Required `iss` and `aud` of JWTs (required when JWT is on).
  std::string jwt_issuer;
  std::string jwt_audience;
  /// Claims holding the role and the tenants (array or "*").
  std::string jwt_role_claim = "crm_role";
  std::string jwt_tenants_claim = "crm_tenants";
  /// Per-tenant replay budget (token bucket): events per second and burst.
  int replay_rate_per_tenant = 50;
  int replay_burst_per_tenant = 100;
  /// Failed authentications per client address: per minute and burst;
  /// beyond it the address gets 429 until its bucket refills.
  int auth_failures_per_minute = 30;
  int auth_failures_burst = 10;
  /// A cached API key lookup is trusted this long (a revoked key is refused
  /// within it, at most).
  int auth_key_cache_ms = 500;
  /// Serve the operator API over TLS with this certificate chain and key
  /// (PEM). Both or neither.
  std::string http_tls_cert_file;
  std::string http_tls_key_file;

  // -- Replay ----------------------------------------------------------------
  /// A replay the broker has not acknowledged within this time fails (503).
  int replay_timeout_ms = 5000;
  /// Bulk replay jobs: events read, published and acknowledged per batch.
  int jobs_batch_size = 2000;
  /// Bulk replay jobs: the most events per second a job publishes (its
  /// tenant budget; a request's rate_per_s may only lower it). 0: no limit.
  int job_rate_per_tenant = 10000;
  /// A bulk replay matching more events than its max_events (default this)
  /// is refused (400 too_many_events).
  size_t jobs_default_max_events = 100000;
  /// An Idempotency-Key's first answer is kept (and repeated) this long.
  int idempotency_ttl_h = 24;

  // -- Dead letters ----------------------------------------------------------
  /// Error classes the DLQ actor retries into the journal by itself (empty:
  /// none).
  std::vector<std::string> dlq_auto_retry_classes = {"db_rejected"};
  /// Attempts (the first, failed one at ingestion included) after which
  /// automatic retry gives up: status failed.
  int dlq_retry_max_attempts = 5;
  /// Backoff of automatic retry: the first delay, doubled per attempt up
  /// to the maximum, each with random jitter (50..100 %).
  int dlq_retry_initial_ms = 30000;
  int dlq_retry_max_ms = 3600000;
  /// Rows retried per tick, and how often the DLQ actor looks for due rows.
  int dlq_retry_batch = 20;
  int dlq_retry_interval_ms = 1000;
  /// The DLQ alert webhook (http:// or https://); empty: no alerts.
  std::string dlq_webhook_url;
  /// Its signing secret, "whsec_" + base64 (24..64 bytes), as the Standard
  /// Webhooks spec says. Required with dlq_webhook_url.
  std::string dlq_webhook_secret;
  /// Alert when this many rows are pending ...
  int dlq_alert_threshold = 100;
  /// ... or this many rows arrived within dlq_alert_window_s.
  int dlq_alert_growth = 50;
  int dlq_alert_window_s = 300;
  /// At most one alert per this many seconds (a recovery is always sent).
  int dlq_alert_cooldown_s = 900;
  /// How often the DLQ's figures are read for alerts.
  int dlq_alert_interval_ms = 5000;
  /// A webhook call not answered within this fails (and is retried).
  int webhook_timeout_ms = 5000;
  /// Calls of one alert before it is given up (5xx, timeouts, refused).
  int webhook_max_attempts = 5;

  // -- Ingestion -------------------------------------------------------------
  /// A batch closes at this many records ...
  size_t batch_max_records = 5000;
  /// ... or this long after its first record, whichever comes first (while
  /// no batch is in flight, as soon as no more records are ready).
  int batch_linger_ms = 20;
  /// Batches sent to each persister and not yet acknowledged.
  size_t max_in_flight_batches = 2;
  /// Persister actors, each with its own PostgreSQL connection; each
  /// partition is always journalled by the same one.
  int persister_connections = 2;
  size_t max_payload_bytes = 1024 * 1024;
  size_t max_json_depth = 512;

  // -- Retention and partitions (issue 13) -----------------------------------
  /// event_journal's partitions: "day" or "month" (UTC). Changing it later
  /// is safe: new partitions are clipped to the existing ones.
  std::string journal_partition_interval = "day";
  /// Partitions created ahead of the database clock (intervals).
  int journal_partitions_ahead = 3;
  /// Drop journal partitions whose whole range is older than this many days
  /// (never a DELETE). 0: keep the journal forever.
  int journal_retention_days = 0;
  /// Delete resolved and discarded DLQ rows last changed longer ago than
  /// this many days, in small batches. 0: keep them.
  int dlq_retention_days = 0;
  /// Delete audit_log rows older than this many days, in small batches. 0:
  /// keep the audit log forever.
  int audit_retention_days = 0;
  /// How often the MAINTENANCE actor creates partitions ahead and applies
  /// the retention settings (also once at start).
  int maintenance_interval_s = 300;
  /// Rows deleted per transaction by DLQ and audit retention.
  int retention_batch = 1000;

  // -- Supervision -----------------------------------------------------------
  int restart_backoff_initial_ms = 200;
  int restart_backoff_max_ms = 10000;
  /// More than this many restarts within restart_window_s stops the process.
  int max_restarts = 10;
  int restart_window_s = 60;
  /// PostgreSQL retry backoff for a batch that hit an infrastructure error.
  int db_retry_initial_ms = 200;
  int db_retry_max_ms = 5000;
  /// Upper bound for a graceful shutdown.
  int shutdown_timeout_ms = 10000;

  // -- Logging ---------------------------------------------------------------
  std::string log_format = "text"; // text | json
  std::string log_level = "info";  // trace|debug|info|warn|error
};

} // namespace ces
