#include "api/webhook.hpp"

#include "storage/headers_json.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace ces::api {

namespace {

using json = nlohmann::json;

constexpr std::string_view secret_prefix = "whsec_";

json counts(const std::vector<topic_count>& items) {
  json out = json::object();
  for (auto& c : items)
    out[c.topic] = c.count;
  return out;
}

} // namespace

bool webhook_secret_key(std::string_view secret, std::string& key) {
  key.clear();
  if (secret.substr(0, secret_prefix.size()) != secret_prefix)
    return false;
  secret.remove_prefix(secret_prefix.size());
  if (!storage::decode_base64(secret, key))
    return false;
  return key.size() >= 24 && key.size() <= 64;
}

std::string webhook_signature(std::string_view key, std::string_view id,
                              int64_t timestamp, std::string_view body) {
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id);
  content += '.';
  content += std::to_string(timestamp);
  content += '.';
  content.append(body);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(content.data()),
           content.size(), md, &len)
      == nullptr)
    throw std::runtime_error("HMAC-SHA256 failed");
  std::string out = "v1,";
  storage::append_base64(
    out, std::string_view{reinterpret_cast<const char*>(md), len});
  return out;
}

std::string new_webhook_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    throw std::runtime_error("no randomness for a webhook-id");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "msg_";
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string dlq_alert_json(const dlq_alert& a) {
  json ids = json::array();
  for (auto id : a.sample_ids)
    ids.push_back(id);
  json doc{{"type", a.type},
           {"pending", a.pending},
           {"new_in_window", a.new_in_window},
           {"window_s", a.window_s},
           {"by_error_class", counts(a.by_error_class)},
           {"by_topic", counts(a.by_topic)},
           {"sample_ids", std::move(ids)},
           {"time", a.at}};
  // Topic names come from Kafka: replace rather than throw on bad UTF-8.
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

dlq_alert_episodes::dlq_alert_episodes(int64_t threshold, int64_t growth,
                                       std::chrono::seconds cooldown)
  : threshold_(threshold), growth_(growth), cooldown_(cooldown) {
  // nop
}

std::optional<std::string>
dlq_alert_episodes::observe(int64_t pending, int64_t new_in_window,
                            clock::time_point now) {
  bool over = pending >= threshold_;
  bool growing = new_in_window >= growth_;
  if (!over && !growing) {
    if (!alerted_)
      return std::nullopt;
    alerted_ = false;
    return std::string{"dlq.recovered"};
  }
  if (alerted_)
    return std::nullopt; // one alert per episode
  if (last_fired_ && now - *last_fired_ < cooldown_)
    return std::nullopt; // in the cooldown: asked again at the next tick
  alerted_ = true;
  last_fired_ = now;
  return std::string{over ? "dlq.threshold" : "dlq.growth"};
}

} // namespace ces::api
