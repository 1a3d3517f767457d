// The DLQ alert webhook without I/O (api/webhook.cpp): the Standard
// Webhooks signature against the spec's published vector, the secret's
// form, the JSON body and the episode logic.
#include "api/webhook.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <set>

using namespace std::chrono_literals;
using ces::api::dlq_alert_episodes;

TEST_CASE("the signature matches the Standard Webhooks test vector",
          "[webhook]") {
  // standard-webhooks/standard-webhooks, spec and libraries' tests.
  std::string key;
  REQUIRE(ces::api::webhook_secret_key(
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key));
  CHECK(key.size() == 24);
  CHECK(ces::api::webhook_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                    1614265330, R"({"test": 2432232314})")
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  // Any change of id, timestamp or body changes it.
  CHECK(ces::api::webhook_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJel",
                                    1614265330, R"({"test": 2432232314})")
        != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  CHECK(ces::api::webhook_signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                    1614265331, R"({"test": 2432232314})")
        != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("a webhook secret is whsec_ and the base64 of 24 to 64 bytes",
          "[webhook]") {
  std::string key;
  CHECK_FALSE(ces::api::webhook_secret_key("", key));
  CHECK_FALSE(ces::api::webhook_secret_key(
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key)); // no prefix
  CHECK_FALSE(ces::api::webhook_secret_key(
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", key)); // not base64
  CHECK_FALSE(ces::api::webhook_secret_key("whsec_c2hvcnQ=", key)); // 5
  CHECK(ces::api::webhook_secret_key(
    "whsec_" + std::string(86, 'A') + "==", key)); // 64 bytes
  CHECK(key.size() == 64);
  CHECK_FALSE(ces::api::webhook_secret_key(
    "whsec_" + std::string(88, 'A'), key)); // 66 bytes
}

TEST_CASE("webhook ids are unique and shaped msg_<hex>", "[webhook]") {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    auto id = ces::api::new_webhook_id();
    CHECK(id.rfind("msg_", 0) == 0);
    CHECK(id.size() == 36);
    ids.insert(id);
  }
  CHECK(ids.size() == 100);
}

TEST_CASE("the alert body carries the figures", "[webhook]") {
  ces::dlq_alert a;
  a.type = "dlq.threshold";
  a.pending = 12;
  a.new_in_window = 3;
  a.window_s = 300;
  a.by_error_class = {{"invalid_json", "", 10}, {"db_rejected", "", 2}};
  a.by_topic = {{"crm.contacts", "", 12}};
  a.sample_ids = {40, 39, 38};
  a.at = "2026-11-30T05:20:43.123Z";
  auto doc = nlohmann::json::parse(ces::api::dlq_alert_json(a));
  CHECK(doc == nlohmann::json::parse(R"({
    "type": "dlq.threshold", "pending": 12, "new_in_window": 3,
    "window_s": 300,
    "by_error_class": {"invalid_json": 10, "db_rejected": 2},
    "by_topic": {"crm.contacts": 12}, "sample_ids": [40, 39, 38],
    "time": "2026-11-30T05:20:43.123Z"})"));
}

namespace {

struct ticker {
  dlq_alert_episodes ep{10, 5, 60s}; // threshold 10, growth 5, cooldown 60 s
  dlq_alert_episodes::clock::time_point now{};

  /// Advances the clock by `dt`, then observes.
  std::string tick(int64_t pending, int64_t fresh,
                   std::chrono::seconds dt = 5s) {
    now += dt;
    return ep.observe(pending, fresh, now).value_or("");
  }
};

} // namespace

TEST_CASE("threshold fires once per episode, recovery once", "[webhook]") {
  ticker t;
  CHECK(t.tick(9, 0) == "");
  CHECK(t.tick(10, 0) == "dlq.threshold");
  CHECK(t.tick(11, 0) == "");  // no repeat while it holds
  CHECK(t.tick(500, 9) == ""); // nor when it grows or escalates
  CHECK(t.ep.alerted());
  CHECK(t.tick(9, 4) == "dlq.recovered");
  CHECK_FALSE(t.ep.alerted());
  CHECK(t.tick(0, 0) == ""); // recovery is sent once
  CHECK(t.tick(0, 0) == "");
}

TEST_CASE("growth fires when enough rows arrive within the window",
          "[webhook]") {
  ticker t;
  CHECK(t.tick(4, 4) == "");
  CHECK(t.tick(5, 5) == "dlq.growth");
  CHECK(t.tick(10, 5) == ""); // escalation within the episode: no alert
  CHECK(t.tick(0, 0) == "dlq.recovered");
  // Both hold at once: threshold wins.
  ticker u;
  CHECK(u.tick(10, 5) == "dlq.threshold");
}

TEST_CASE("the cooldown defers a new episode's alert, never loses it",
          "[webhook]") {
  ticker t;
  CHECK(t.tick(10, 0, 5s) == "dlq.threshold"); // at 5 s
  CHECK(t.tick(0, 0, 5s) == "dlq.recovered");  // recovery is not limited
  // A new episode 20 s after the alert: inside the cooldown (60 s).
  CHECK(t.tick(10, 0, 10s) == "");
  CHECK(t.tick(12, 0, 30s) == ""); // at 50 s: still inside
  CHECK_FALSE(t.ep.alerted());
  // At 65 s it still holds: alerted now, once.
  CHECK(t.tick(12, 0, 15s) == "dlq.threshold");
  CHECK(t.tick(12, 0, 5s) == "");
  CHECK(t.tick(0, 0, 5s) == "dlq.recovered");
  // An episode that starts and clears inside the cooldown sends nothing.
  CHECK(t.tick(0, 6, 5s) == "");
  CHECK(t.tick(0, 0, 5s) == "");
  // Cooldown 0: every episode is alerted.
  dlq_alert_episodes none{10, 5, 0s};
  auto now = dlq_alert_episodes::clock::time_point{};
  CHECK(none.observe(10, 0, now).value_or("") == "dlq.threshold");
  CHECK(none.observe(0, 0, now).value_or("") == "dlq.recovered");
  CHECK(none.observe(10, 0, now).value_or("") == "dlq.threshold");
}
