// DLQ_ALERTS: the DLQ alert webhook. Detached: it owns a PostgreSQL
// connection (storage::dlq_stats) and makes blocking libcurl calls, one at a
// time, each bounded by webhook-timeout-ms. Every dlq-alert-interval-ms it
// reads the DLQ's figures in one read-only transaction and feeds them to
// api::dlq_alert_episodes (api/webhook.hpp: when an alert fires); an alert
// is counted (crm_dlq_alerts_total{type}), logged (dlq_alert) and queued.
//
// Delivery: a bounded FIFO queue (queue_limit calls; full: the oldest is
// dropped, counted dropped and logged webhook_dropped). The head is POSTed
// (application/json, no redirects followed) with the Standard Webhooks
// headers webhook-id (one per alert, kept across its retries),
// webhook-timestamp (unix seconds of the attempt; the signature is made
// again for each attempt) and webhook-signature. 2xx: delivered; 4xx (and
// 3xx: redirects are not followed): rejected, not retried; 5xx, timeout,
// connection failure: retried after capped exponential backoff (a delayed
// message, never a sleep) until max_attempts attempts, then failed. Later
// alerts wait behind a retried one, so a receiver sees them in order.
// Every outcome is counted (crm_webhook_deliveries_total{outcome}) and
// logged as one line (webhook_delivered info, webhook_retry warn,
// webhook_rejected / webhook_failed error) with type, webhook_id, attempt
// and status; the URL is only ever logged masked, the secret never.
#pragma once

#include "actors/interfaces.hpp"
#include "api/webhook.hpp"
#include "storage/dlq_stats.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ces {

class metrics;

/// One POST of the webhook.
struct webhook_request {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{5000};
};

/// What came back: status 0 when no HTTP answer came (`error` says why:
/// timeout, connection refused, ...; never the URL).
struct webhook_response {
  long status = 0;
  std::string error;
};

/// Makes one blocking call (libcurl in production).
using webhook_poster = std::function<webhook_response(const webhook_request&)>;

/// The libcurl poster: POST, no redirects followed, http and https only,
/// the whole call bounded by request.timeout; the answer's body is read
/// (at most 64 KiB) and dropped.
webhook_poster curl_webhook_poster();

/// Reads the DLQ's figures (storage::dlq_stats in production).
using dlq_figures_source
  = std::function<storage::dlq_figures(int64_t window_s)>;

struct dlq_alerts_settings {
  /// dlq-webhook-url (shown only through mask_url).
  std::string url;
  /// The signing key: the bytes of dlq-webhook-secret after "whsec_".
  std::string key;
  int64_t threshold = 100;
  int64_t growth = 50;
  int64_t window_s = 300;
  std::chrono::seconds cooldown{900};
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds timeout{5000};
  int max_attempts = 5;
  /// Retry delays: initial, doubled per attempt, capped.
  std::chrono::milliseconds retry_initial{1000};
  std::chrono::milliseconds retry_max{60000};
  /// Alerts waiting for delivery at most.
  size_t queue_limit = 100;
};

struct dlq_alerts_state {
  /// One alert on its way.
  struct call {
    std::string id;
    std::string type;
    std::string body;
    int attempt = 0; // attempts made so far
    std::chrono::steady_clock::time_point due;
  };
  dlq_figures_source read;
  webhook_poster post;
  std::optional<api::dlq_alert_episodes> episodes;
  std::deque<call> queue;
  /// A (internal, flush) message is on its way.
  bool flush_scheduled = false;
  /// The last figures read failed (logged once per outage).
  bool read_failing = false;
  metrics* stats = nullptr;
  static inline const char* name = "dlq_alerts";
};

dlq_alerts_actor::behavior_type
dlq_alerts(dlq_alerts_actor::stateful_pointer<dlq_alerts_state> self,
           dlq_alerts_settings cfg, dlq_figures_source read,
           webhook_poster post, metrics* stats);

/// dlq_figures_source on a storage::dlq_stats of its own (connects lazily).
dlq_figures_source dlq_figures_on_store(std::string database_url);

} // namespace ces
