// The DLQ alert webhook without I/O: when an alert fires (the episode
// logic), what it says (the JSON body) and how it is signed (Standard
// Webhooks). No CAF, no libcurl: DLQ_ALERTS (actors/dlq_alerts.cpp) reads
// the figures, calls these and delivers.
#pragma once

#include "storage/model.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ces::api {

/// The signing key of a Standard Webhooks secret: `secret` must be "whsec_"
/// followed by the standard base64 (padding optional) of 24 to 64 bytes;
/// those bytes go to `key`. False otherwise (`key` then holds nothing
/// useful). Never puts the secret into any message.
bool webhook_secret_key(std::string_view secret, std::string& key);

/// The webhook-signature header of a message: "v1," + the base64 of
/// HMAC-SHA256(key, id + "." + timestamp + "." + body), as the Standard
/// Webhooks spec says.
std::string webhook_signature(std::string_view key, std::string_view id,
                              int64_t timestamp, std::string_view body);

/// A new webhook-id: "msg_" + 32 hex digits of randomness (OpenSSL).
std::string new_webhook_id();

/// The alert as its JSON body (one line):
/// {"type":"dlq.threshold","pending":120,"new_in_window":7,"window_s":300,
///  "by_error_class":{"invalid_json":118,"db_rejected":2},
///  "by_topic":{"crm.contacts":120},"sample_ids":[130,129,...],
///  "time":"2026-11-30T05:20:43.123Z"}
std::string dlq_alert_json(const dlq_alert& a);

/// When DLQ_ALERTS raises an alert: fed the DLQ's figures at every tick, it
/// answers the alert type to send now, if any.
///
/// - The condition holds while pending >= threshold or new_in_window >=
///   growth. An episode runs from the first tick it holds to the first tick
///   it no longer holds.
/// - The first tick of an episode fires dlq.threshold when pending >=
///   threshold, else dlq.growth (threshold wins when both hold). Nothing
///   more fires while the episode lasts: not when it escalates from growth
///   to threshold either.
/// - dlq.recovered fires once, at the first tick the condition no longer
///   holds, and only for an episode that was alerted.
/// - Cooldown: a threshold or growth alert fires at most once per
///   `cooldown` (measured from the previous one; dlq.recovered is not
///   limited, and does not restart the cooldown). An episode that begins
///   inside the cooldown is not lost: it is alerted at the first tick
///   after the cooldown ends if it still holds then, with the type of that
///   tick's figures; if it clears before that, nothing is sent for it (no
///   alert, so no recovery either).
/// - The state is in memory: after a restart of the service an episode that
///   is still going on is alerted again (a cooldown is not remembered).
class dlq_alert_episodes {
public:
  using clock = std::chrono::steady_clock;

  dlq_alert_episodes(int64_t threshold, int64_t growth,
                     std::chrono::seconds cooldown);

  /// The type to send for these figures at `now` ("dlq.threshold",
  /// "dlq.growth", "dlq.recovered"), or nothing.
  std::optional<std::string> observe(int64_t pending, int64_t new_in_window,
                                     clock::time_point now);

  /// True while an alerted episode has not recovered.
  bool alerted() const {
    return alerted_;
  }

private:
  int64_t threshold_;
  int64_t growth_;
  std::chrono::seconds cooldown_;
  bool alerted_ = false;
  std::optional<clock::time_point> last_fired_;
};

} // namespace ces::api
