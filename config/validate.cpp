#include "api/webhook.hpp"
#include "config/config.hpp"
#include "config/mask.hpp"
#include "config/table.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <set>

#include <regex.h>

namespace ces {

using namespace detail;

std::string validate_database_url(const settings& s) {
  auto& d = *find_def("database-url");
  if (trim(s.database_url).empty())
    return "missing setting " + label(d)
           + ": a libpq URI such as postgresql://user@host:5432/db is "
             "required";
  if (auto problem = database_url_problem(s.database_url); !problem.empty())
    return "invalid setting " + label(d) + ": " + problem;
  return {};
}

std::string validate(const settings& s) {
  auto lookup = [](const char* name) -> const setting_def& {
    return *find_def(name);
  };
  auto invalid = [&](const char* name, const std::string& what) {
    return "invalid setting " + label(lookup(name)) + ": " + what;
  };
  auto missing = [&](const char* name, const std::string& what) {
    return "missing setting " + label(lookup(name)) + ": " + what;
  };
  auto positive = [&](const char* name, long long v) -> std::string {
    if (v >= 1)
      return {};
    return invalid(name, std::to_string(v) + " must be at least 1");
  };
  auto non_negative = [&](const char* name, long long v) -> std::string {
    if (v >= 0)
      return {};
    return invalid(name, std::to_string(v) + " must not be negative");
  };
  auto port = [&](const char* name, uint16_t v) -> std::string {
    if (v != 0)
      return {};
    return invalid(name, "0 " + type_problem(kind::port));
  };
  auto ordered = [&](const char* lo_name, int lo, const char* hi_name,
                     int hi) -> std::string {
    if (lo <= hi)
      return {};
    return invalid(lo_name, std::to_string(lo) + " is greater than "
                              + hi_name + " (" + std::to_string(hi) + ")");
  };
  // Kafka.
  if (trim(s.kafka_bootstrap_servers).empty())
    return missing("kafka-bootstrap-servers",
                   "a list of host:port pairs (or \"embedded\") is required");
  if (s.kafka_topics.empty())
    return missing("kafka-topics", "at least one topic is required");
  std::set<std::string> seen;
  for (auto& t : s.kafka_topics) {
    if (!t.empty() && t[0] == '^') {
      // A pattern: librdkafka subscribes to every topic matching this POSIX
      // extended regular expression (regcomp, as librdkafka on Linux).
      if (s.kafka_bootstrap_servers == "embedded")
        return invalid("kafka-topics",
                       quoted(t) + ": the embedded broker needs topic names, "
                                   "not patterns");
      regex_t re;
      int rc = regcomp(&re, t.c_str(), REG_EXTENDED | REG_NOSUB);
      if (rc != 0)
        return invalid("kafka-topics",
                       quoted(t) + " is not a valid regular expression");
      regfree(&re);
      if (!seen.insert(t).second)
        return invalid("kafka-topics", quoted(t) + " is listed twice");
      continue;
    }
    bool legal = !t.empty() && t.size() <= 249 && t != "." && t != ".."
                 && std::all_of(t.begin(), t.end(), [](unsigned char c) {
                      return std::isalnum(c) || c == '.' || c == '_'
                             || c == '-';
                    });
    if (!legal)
      return invalid("kafka-topics",
                     quoted(t)
                       + " is not a legal Kafka topic name (letters, digits, "
                         "'.', '_', '-'; at most 249 characters)");
    if (!seen.insert(t).second)
      return invalid("kafka-topics", quoted(t) + " is listed twice");
  }
  if (trim(s.kafka_group_id).empty())
    return missing("kafka-group-id", "a consumer group id is required");
  for (size_t i = 0; i < s.kafka_properties.size(); ++i) {
    auto& p = s.kafka_properties[i];
    auto eq = p.find('=');
    if (eq == std::string::npos)
      // Perhaps the tail of a secret value cut at an unescaped comma.
      return invalid("kafka-properties",
                     "item " + std::to_string(i + 1)
                       + " is not a key=value librdkafka property (not "
                         "shown: it may be part of a secret; a comma inside "
                         "a value is written \\,)");
    if (eq == 0 || trim(std::string_view{p}.substr(0, eq)).size() != eq)
      return invalid("kafka-properties",
                     quoted(mask_property(p))
                       + " is not a key=value librdkafka property");
  }
  for (auto e : {positive("kafka-session-timeout-ms",
                          s.kafka_session_timeout_ms),
                 positive("embedded-partitions", s.embedded_partitions)})
    if (!e.empty())
      return e;
  // PostgreSQL.
  if (auto e = validate_database_url(s); !e.empty())
    return e;
  // Ports.
  if (trim(s.http_address).empty())
    return missing("http-address", "a listen address is required");
  if (trim(s.metrics_address).empty())
    return missing("metrics-address", "a listen address is required");
  for (auto e : {port("http-port", s.http_port),
                 port("metrics-port", s.metrics_port)})
    if (!e.empty())
      return e;
  auto wildcard = [](const std::string& a) {
    return a == "0.0.0.0" || a == "::" || a == "[::]";
  };
  if (s.http_port == s.metrics_port
      && (s.http_address == s.metrics_address || wildcard(s.http_address)
          || wildcard(s.metrics_address)))
    return invalid("metrics-port", std::to_string(s.metrics_port)
                                     + " is also the http-port");
  // Ingestion and supervision.
  for (auto e : {
         positive("batch-max-records",
                  static_cast<long long>(std::min<size_t>(
                    s.batch_max_records, std::numeric_limits<int>::max()))),
         non_negative("batch-linger-ms", s.batch_linger_ms),
         positive("max-in-flight-batches",
                  static_cast<long long>(std::min<size_t>(
                    s.max_in_flight_batches, std::numeric_limits<int>::max()))),
         positive("max-payload-bytes",
                  static_cast<long long>(std::min<size_t>(
                    s.max_payload_bytes, std::numeric_limits<int>::max()))),
         positive("max-json-depth",
                  static_cast<long long>(std::min<size_t>(
                    s.max_json_depth, std::numeric_limits<int>::max()))),
         positive("restart-backoff-initial-ms", s.restart_backoff_initial_ms),
         positive("restart-backoff-max-ms", s.restart_backoff_max_ms),
         ordered("restart-backoff-initial-ms", s.restart_backoff_initial_ms,
                 "restart-backoff-max-ms", s.restart_backoff_max_ms),
         positive("max-restarts", s.max_restarts),
         positive("restart-window-s", s.restart_window_s),
         positive("db-retry-initial-ms", s.db_retry_initial_ms),
         positive("db-retry-max-ms", s.db_retry_max_ms),
         ordered("db-retry-initial-ms", s.db_retry_initial_ms,
                 "db-retry-max-ms", s.db_retry_max_ms),
         positive("shutdown-timeout-ms", s.shutdown_timeout_ms),
         positive("http-max-in-flight", s.http_max_in_flight),
         positive("http-max-connections", s.http_max_connections),
         positive("http-max-response-bytes",
                  static_cast<long long>(std::min<size_t>(
                    s.http_max_response_bytes,
                    std::numeric_limits<int>::max()))),
         positive("replay-timeout-ms", s.replay_timeout_ms),
         positive("jobs-batch-size", s.jobs_batch_size),
         non_negative("job-rate-per-tenant", s.job_rate_per_tenant),
         positive("jobs-default-max-events",
                  static_cast<long long>(std::min<size_t>(
                    s.jobs_default_max_events, 100000000))),
         positive("idempotency-ttl-h", s.idempotency_ttl_h),
         positive("persister-connections", s.persister_connections),
         positive("dlq-retry-max-attempts", s.dlq_retry_max_attempts),
         positive("dlq-retry-initial-ms", s.dlq_retry_initial_ms),
         positive("dlq-retry-max-ms", s.dlq_retry_max_ms),
         ordered("dlq-retry-initial-ms", s.dlq_retry_initial_ms,
                 "dlq-retry-max-ms", s.dlq_retry_max_ms),
         positive("dlq-retry-batch", s.dlq_retry_batch),
         positive("journal-partitions-ahead", s.journal_partitions_ahead),
         non_negative("journal-retention-days", s.journal_retention_days),
         non_negative("dlq-retention-days", s.dlq_retention_days),
         non_negative("audit-retention-days", s.audit_retention_days),
         positive("maintenance-interval-s", s.maintenance_interval_s),
         positive("retention-batch", s.retention_batch),
         positive("dlq-retry-interval-ms", s.dlq_retry_interval_ms),
         positive("dlq-alert-threshold", s.dlq_alert_threshold),
         positive("dlq-alert-growth", s.dlq_alert_growth),
         positive("dlq-alert-window-s", s.dlq_alert_window_s),
         non_negative("dlq-alert-cooldown-s", s.dlq_alert_cooldown_s),
         positive("dlq-alert-interval-ms", s.dlq_alert_interval_ms),
         positive("webhook-timeout-ms", s.webhook_timeout_ms),
         positive("webhook-max-attempts", s.webhook_max_attempts),
       })
    if (!e.empty())
      return e;
  for (auto& c : s.dlq_auto_retry_classes)
    if (c != "empty_value" && c != "too_large" && c != "invalid_json"
        && c != "missing_tenant" && c != "db_rejected")
      return invalid("dlq-auto-retry-classes",
                     quoted(c) + " is not an error class (empty_value, "
                                 "too_large, invalid_json, missing_tenant, "
                                 "db_rejected)");
  if (!s.dlq_webhook_url.empty()) {
    if (!starts_with(s.dlq_webhook_url, "http://")
        && !starts_with(s.dlq_webhook_url, "https://"))
      // The URL may hold a token: never repeat it.
      return invalid("dlq-webhook-url", "must start with http:// or https://");
    if (s.dlq_webhook_secret.empty())
      return missing("dlq-webhook-secret",
                     "the webhook is on (dlq-webhook-url is set): its "
                     "signing secret (whsec_<base64>) is required");
  }
  std::string webhook_key;
  if (!s.dlq_webhook_secret.empty()
      && !api::webhook_secret_key(s.dlq_webhook_secret, webhook_key))
    // Never repeat a secret in a message.
    return invalid("dlq-webhook-secret",
                   "must be whsec_ followed by the base64 of 24 to 64 "
                   "random bytes (Standard Webhooks)");
  // A request's max_events may be at most 10 000 000 (api/replay_json.cpp).
  if (s.jobs_default_max_events > 10000000)
    return invalid("jobs-default-max-events",
                   std::to_string(s.jobs_default_max_events)
                     + " is above the largest max_events a request may ask "
                       "for (10000000)");
  if (s.journal_keep_raw != 0 && s.journal_keep_raw != 1)
    return invalid("journal-keep-raw",
                   std::to_string(s.journal_keep_raw) + " is not 0 or 1");
  if (s.fault_injection != 0 && s.fault_injection != 1)
    return invalid("fault-injection",
                   std::to_string(s.fault_injection) + " is not 0 or 1");
  // Security.
  if (s.journal_partition_interval != "day"
      && s.journal_partition_interval != "month")
    return invalid("journal-partition-interval",
                   quoted(s.journal_partition_interval)
                     + " is neither day nor month");
  if (s.api_auth != "on" && s.api_auth != "off")
    return invalid("api-auth", quoted(s.api_auth) + " is neither on nor off");
  for (auto e : {positive("jwt-jwks-min-refresh-s", s.jwt_jwks_min_refresh_s),
                 positive("replay-rate-per-tenant", s.replay_rate_per_tenant),
                 positive("replay-burst-per-tenant", s.replay_burst_per_tenant),
                 positive("auth-failures-per-minute",
                          s.auth_failures_per_minute),
                 positive("auth-failures-burst", s.auth_failures_burst),
                 non_negative("auth-key-cache-ms", s.auth_key_cache_ms)})
    if (!e.empty())
      return e;
  bool jwt_on = !s.jwt_jwks.empty() || !s.jwt_hs256_secret_file.empty();
  if (jwt_on && trim(s.jwt_issuer).empty())
    return missing("jwt-issuer", "JWTs are accepted (jwt-jwks or "
                                 "jwt-hs256-secret-file is set): the issuer "
                                 "they must name is required");
  if (jwt_on && trim(s.jwt_audience).empty())
    return missing("jwt-audience", "JWTs are accepted (jwt-jwks or "
                                   "jwt-hs256-secret-file is set): the "
                                   "audience they must name is required");
  if (!s.jwt_jwks.empty() && s.jwt_jwks.rfind("http://", 0) == 0)
    return invalid("jwt-jwks", "a JWKS URL must be https:// (keys fetched "
                               "in clear text can be replaced on the way)");
  if (trim(s.jwt_role_claim).empty())
    return missing("jwt-role-claim", "a claim name is required");
  if (trim(s.jwt_tenants_claim).empty())
    return missing("jwt-tenants-claim", "a claim name is required");
  if (s.http_tls_cert_file.empty() != s.http_tls_key_file.empty())
    return missing(s.http_tls_cert_file.empty() ? "http-tls-cert-file"
                                                : "http-tls-key-file",
                   "TLS needs both a certificate and its key");
  // Logging.
  if (s.log_format != "text" && s.log_format != "json")
    return invalid("log-format", quoted(s.log_format)
                                   + " is neither text nor json");
  static const char* levels[] = {"trace", "debug", "info",     "warn",
                                 "warning", "error", "critical", "off"};
  if (std::none_of(std::begin(levels), std::end(levels),
                   [&](const char* l) { return s.log_level == l; }))
    return invalid("log-level",
                   quoted(s.log_level)
                     + " is not one of trace, debug, info, warn, error, "
                       "critical, off");
  return {};
}

} // namespace ces
