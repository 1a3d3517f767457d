#include "config/config.hpp"
#include "config/table.hpp"

#include <cctype>

namespace ces {

namespace detail {

const std::vector<setting_def>& defs() {
  static const std::vector<setting_def> xs = {
    {"Kafka", "kafka-bootstrap-servers", &settings::kafka_bootstrap_servers,
     "HOSTS",
     "bootstrap servers host:port[,...]; \"embedded\" runs librdkafka's mock "
     "cluster in-process (local runs only)"},
    {"Kafka", "kafka-topics", &settings::kafka_topics, "LIST",
     "topics to consume, comma-separated"},
    {"Kafka", "kafka-group-id", &settings::kafka_group_id, "ID",
     "consumer group id"},
    {"Kafka", "kafka-properties", &settings::kafka_properties, "LIST",
     "extra librdkafka properties, comma-separated key=value items (SASL, "
     "TLS, ...)"},
    {"Kafka", "kafka-session-timeout-ms", &settings::kafka_session_timeout_ms,
     "MS", "consumer group session timeout"},
    {"Kafka", "embedded-partitions", &settings::embedded_partitions, "N",
     "partitions per topic created by the embedded broker"},
    {"Kafka", "embedded-bootstrap-file", &settings::embedded_bootstrap_file,
     "PATH",
     "with the embedded broker, write its bootstrap address to this file"},
    {"PostgreSQL", "database-url", &settings::database_url, "URL",
     "libpq URI of the journal, e.g. postgresql://user:pw@host:5432/db",
     true},
    {"HTTP", "http-address", &settings::http_address, "ADDR",
     "listen address of the operator REST API"},
    {"HTTP", "http-port", &settings::http_port, "PORT",
     "listen port of the operator REST API"},
    {"HTTP", "metrics-address", &settings::metrics_address, "ADDR",
     "listen address of the Prometheus /metrics endpoint"},
    {"HTTP", "metrics-port", &settings::metrics_port, "PORT",
     "listen port of the Prometheus /metrics endpoint"},
    {"HTTP", "http-max-in-flight", &settings::http_max_in_flight, "N",
     "operator API requests served at once; beyond it 503 at once"},
    {"HTTP", "http-max-connections", &settings::http_max_connections, "N",
     "open operator API connections; a new one beyond it is closed at once"},
    {"HTTP", "http-max-response-bytes", &settings::http_max_response_bytes,
     "BYTES",
     "GET /events/latest answers at most this many bytes of events (at "
     "least one event); a shorter page says X-Truncated: true"},
    {"Ingestion", "journal-keep-raw", &settings::journal_keep_raw, "0|1",
     "keep each payload's original bytes so that replays publish them "
     "exactly (0: jsonb's rendering; ingest is faster)"},
    {"HTTP", "fault-injection", &settings::fault_injection, "0|1",
     "1 serves POST /debug/fail/{actor} (drills and tests; not for "
     "production)"},
    {"HTTP", "http-tls-cert-file", &settings::http_tls_cert_file, "PATH",
     "serve the operator API over TLS with this certificate chain (PEM); "
     "with http-tls-key-file"},
    {"HTTP", "http-tls-key-file", &settings::http_tls_key_file, "PATH",
     "the TLS private key (PEM) of http-tls-cert-file"},
    {"Security", "api-auth", &settings::api_auth, "on|off",
     "on: every route but GET /health and /ready needs an API key or JWT; "
     "off: everyone is admin (laptops only)"},
    {"Security", "admin-token-file", &settings::admin_token_file, "PATH",
     "file holding an API key registered as admin 'bootstrap' at start"},
    {"Security", "jwt-jwks", &settings::jwt_jwks, "PATH|URL",
     "JWKS (file or https URL) with the RS256/ES256 keys JWTs are verified "
     "with"},
    {"Security", "jwt-jwks-ca-file", &settings::jwt_jwks_ca_file, "PATH",
     "CA bundle (PEM) for an https JWKS URL; empty: the system's"},
    {"Security", "jwt-jwks-min-refresh-s", &settings::jwt_jwks_min_refresh_s,
     "S", "fetch the JWKS again for an unknown kid at most this often"},
    {"Security", "jwt-hs256-secret-file", &settings::jwt_hs256_secret_file,
     "PATH", "file holding the HS256 secret (empty: HS256 refused)"},
    {"Security", "jwt-issuer", &settings::jwt_issuer, "ISS",
     "required iss of JWTs (required when JWT is on)"},
    {"Security", "jwt-audience", &settings::jwt_audience, "AUD",
     "required aud of JWTs (required when JWT is on)"},
    {"Security", "jwt-role-claim", &settings::jwt_role_claim, "CLAIM",
     "JWT claim holding the role (viewer, operator, admin)"},
    {"Security", "jwt-tenants-claim", &settings::jwt_tenants_claim, "CLAIM",
     "JWT claim holding the tenants: an array of ids or \"*\""},
    {"Security", "replay-rate-per-tenant", &settings::replay_rate_per_tenant,
     "N", "replayed events per second per tenant (token bucket rate)"},
    {"Security", "replay-burst-per-tenant",
     &settings::replay_burst_per_tenant, "N",
     "replay token bucket size per tenant"},
    {"Security", "auth-failures-per-minute",
     &settings::auth_failures_per_minute, "N",
     "failed authentications per client address and minute; beyond: 429"},
    {"Security", "auth-failures-burst", &settings::auth_failures_burst, "N",
     "failed authentications a client address may make at once"},
    {"Security", "auth-key-cache-ms", &settings::auth_key_cache_ms, "MS",
     "an API key lookup is cached this long (revocation takes effect "
     "within it)"},
    {"Replay", "replay-timeout-ms", &settings::replay_timeout_ms, "MS",
     "a replay the broker has not acknowledged in this time fails (503)"},
    {"Replay", "jobs-batch-size", &settings::jobs_batch_size, "N",
     "bulk replay jobs: events published and acknowledged per batch"},
    {"Replay", "job-rate-per-tenant", &settings::job_rate_per_tenant, "N",
     "bulk replay jobs: most events per second a job publishes (0: no "
     "limit); a request's rate_per_s may only lower it"},
    {"Replay", "jobs-default-max-events", &settings::jobs_default_max_events,
     "N", "a bulk replay matching more events than its max_events (default "
          "this) is refused (400 too_many_events)"},
    {"Replay", "idempotency-ttl-h", &settings::idempotency_ttl_h, "H",
     "an Idempotency-Key's first answer is kept and repeated this long"},
    {"Dead letters", "dlq-auto-retry-classes",
     &settings::dlq_auto_retry_classes, "LIST",
     "error classes retried into the journal automatically, with backoff "
     "(empty: none)"},
    {"Dead letters", "dlq-retry-max-attempts",
     &settings::dlq_retry_max_attempts, "N",
     "attempts (ingestion's included) before automatic retry gives up "
     "(status failed)"},
    {"Dead letters", "dlq-retry-initial-ms", &settings::dlq_retry_initial_ms,
     "MS", "first automatic retry delay (doubles per attempt, with jitter)"},
    {"Dead letters", "dlq-retry-max-ms", &settings::dlq_retry_max_ms, "MS",
     "longest automatic retry delay"},
    {"Dead letters", "dlq-retry-batch", &settings::dlq_retry_batch, "N",
     "rows retried automatically per tick"},
    {"Dead letters", "dlq-retry-interval-ms",
     &settings::dlq_retry_interval_ms, "MS",
     "how often the DLQ actor looks for rows due for a retry"},
    {"Dead letters", "dlq-webhook-url", &settings::dlq_webhook_url, "URL",
     "DLQ alert webhook (http/https; empty: no alerts); shown masked"},
    {"Dead letters", "dlq-webhook-secret", &settings::dlq_webhook_secret,
     "SECRET",
     "signing secret of the webhook, whsec_<base64> (Standard Webhooks); "
     "never shown"},
    {"Dead letters", "dlq-alert-threshold", &settings::dlq_alert_threshold,
     "N", "alert when this many rows are pending ..."},
    {"Dead letters", "dlq-alert-growth", &settings::dlq_alert_growth, "N",
     "... or this many arrived within dlq-alert-window-s"},
    {"Dead letters", "dlq-alert-window-s", &settings::dlq_alert_window_s, "S",
     "window of dlq-alert-growth"},
    {"Dead letters", "dlq-alert-cooldown-s", &settings::dlq_alert_cooldown_s,
     "S", "at most one alert per this many seconds (recovery always sent)"},
    {"Dead letters", "dlq-alert-interval-ms",
     &settings::dlq_alert_interval_ms, "MS",
     "how often the DLQ's figures are read for alerts"},
    {"Dead letters", "webhook-timeout-ms", &settings::webhook_timeout_ms,
     "MS", "a webhook call unanswered this long fails (and is retried)"},
    {"Dead letters", "webhook-max-attempts", &settings::webhook_max_attempts,
     "N", "calls of one alert (5xx, timeouts) before it is given up"},
    {"Retention", "journal-partition-interval",
     &settings::journal_partition_interval, "day|month",
     "event_journal partitions by UTC day or month of received_at"},
    {"Retention", "journal-partitions-ahead",
     &settings::journal_partitions_ahead, "N",
     "partitions created ahead of the database clock"},
    {"Retention", "journal-retention-days", &settings::journal_retention_days,
     "DAYS",
     "drop journal partitions entirely older than this (0: keep forever)"},
    {"Retention", "dlq-retention-days", &settings::dlq_retention_days, "DAYS",
     "delete resolved/discarded DLQ rows older than this (0: keep)"},
    {"Retention", "audit-retention-days", &settings::audit_retention_days,
     "DAYS", "delete audit log rows older than this (0: keep forever)"},
    {"Retention", "maintenance-interval-s", &settings::maintenance_interval_s,
     "S", "how often partitions are created ahead and retention applied"},
    {"Retention", "retention-batch", &settings::retention_batch, "N",
     "rows deleted per transaction by DLQ and audit retention"},
    {"Ingestion", "batch-max-records", &settings::batch_max_records, "N",
     "a batch closes at this many records ..."},
    {"Ingestion", "batch-linger-ms", &settings::batch_linger_ms, "MS",
     "... or this long after its first record, whichever comes first; "
     "while no batch is in flight, as soon as no more records are ready"},
    {"Ingestion", "max-in-flight-batches", &settings::max_in_flight_batches,
     "N", "batches sent to each persister and not yet acknowledged"},
    {"Ingestion", "persister-connections", &settings::persister_connections,
     "N",
     "persisters writing in parallel, one PostgreSQL connection each; a "
     "partition always goes to the same one"},
    {"Ingestion", "max-payload-bytes", &settings::max_payload_bytes, "BYTES",
     "larger records go to the DLQ"},
    {"Ingestion", "max-json-depth", &settings::max_json_depth, "N",
     "more deeply nested JSON goes to the DLQ"},
    {"Supervision", "restart-backoff-initial-ms",
     &settings::restart_backoff_initial_ms, "MS",
     "delay before the first restart of a crashed actor (doubles each time)"},
    {"Supervision", "restart-backoff-max-ms",
     &settings::restart_backoff_max_ms, "MS",
     "longest delay between restarts"},
    {"Supervision", "max-restarts", &settings::max_restarts, "N",
     "more restarts than this within restart-window-s stop the process"},
    {"Supervision", "restart-window-s", &settings::restart_window_s, "S",
     "window for max-restarts, in seconds"},
    {"Supervision", "db-retry-initial-ms", &settings::db_retry_initial_ms,
     "MS", "first PostgreSQL retry delay after an infrastructure error"},
    {"Supervision", "db-retry-max-ms", &settings::db_retry_max_ms, "MS",
     "longest PostgreSQL retry delay"},
    {"Supervision", "shutdown-timeout-ms", &settings::shutdown_timeout_ms,
     "MS", "upper bound for a graceful shutdown"},
    {"Logging", "log-format", &settings::log_format, "FORMAT",
     "text or json (one JSON object per line)"},
    {"Logging", "log-level", &settings::log_level, "LEVEL",
     "trace, debug, info, warn, error, critical or off"},
  };
  return xs;
}

const setting_def* find_def(std::string_view name) {
  for (auto& d : defs())
    if (name == d.name)
      return &d;
  return nullptr;
}

std::string type_problem(kind k) {
  switch (k) {
    case kind::string: return "is not a string (quote it in the INI file)";
    case kind::list:
      return "is not a list (use a,b or [\"a\", \"b\"] in the INI file)";
    case kind::integer: return "is not an integer";
    case kind::size: return "is not a non-negative integer";
    case kind::port: return "is not a port number (1-65535)";
  }
  return "is invalid";
}

std::string label(const setting_def& d) {
  return std::string{d.name} + " (" + env_name(d.name) + ")";
}

std::string default_text(const setting_def& d) {
  static const settings dflt;
  return std::visit(
    [](auto ptr) -> std::string {
      const auto& v = dflt.*ptr;
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string>)
        return v;
      else if constexpr (std::is_same_v<T, std::vector<std::string>>)
        return join(v);
      else
        return std::to_string(v);
    },
    d.field);
}

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n'
                                || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && ws(s.back()))
    s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string quoted(std::string_view s) {
  std::string r = "\"";
  r += s;
  r += '"';
  return r;
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> result;
  std::string cur;
  auto flush = [&] {
    auto t = trim(cur);
    if (!t.empty())
      result.emplace_back(t);
    cur.clear();
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == ',') {
      cur += ',';
      ++i;
    } else if (s[i] == ',') {
      flush();
    } else {
      cur += s[i];
    }
  }
  flush();
  return result;
}

std::string join(const std::vector<std::string>& xs) {
  std::string r;
  for (auto& x : xs) {
    if (!r.empty())
      r += ',';
    r += x;
  }
  return r;
}

} // namespace detail

std::string env_name(const std::string& setting_name) {
  std::string r = setting_name;
  for (auto& c : r)
    c = c == '-' || c == '.' ? '_'
                             : static_cast<char>(
                               std::toupper(static_cast<unsigned char>(c)));
  return r;
}

} // namespace ces
