// DLQ_ALERTS on the deterministic coordinator: fake figures and a fake
// poster; delivery outcomes, backoff, the bounded queue, the headers.
#include "actors/dlq_alerts.hpp"
#include "api/metrics.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace std::chrono_literals;
using namespace ces;

namespace {

struct fake_world {
  int64_t pending = 0;
  int64_t fresh = 0;
  std::vector<webhook_request> posts;
  /// Answers in order; when used up, `otherwise`.
  std::vector<webhook_response> answers;
  webhook_response otherwise{200, ""};
};

std::string header(const webhook_request& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name)
      return v;
  return "";
}

std::string type_of(const webhook_request& r) {
  return nlohmann::json::parse(r.body)["type"].get<std::string>();
}

struct alerts_fixture : ces::test::fixture {
  std::shared_ptr<fake_world> fw = std::make_shared<fake_world>();
  metrics stats;
  dlq_alerts_settings cfg;
  dlq_alerts_actor hdl;

  alerts_fixture() {
    cfg.url = "http://hooks.example/T0/t0k3n";
    REQUIRE(api::webhook_secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                    cfg.key));
    cfg.threshold = 3;
    cfg.growth = 1000;
    cfg.cooldown = 0s;
    cfg.interval = 1000ms;
    cfg.max_attempts = 3;
    cfg.retry_initial = 1000ms;
    cfg.retry_max = 60000ms;
  }

  void start() {
    auto w = fw;
    dlq_figures_source read = [w](int64_t) {
      storage::dlq_figures f;
      f.pending = w->pending;
      f.new_in_window = w->fresh;
      f.now = "2026-11-30T00:00:00.000Z";
      return f;
    };
    webhook_poster post = [w](const webhook_request& r) {
      w->posts.push_back(r);
      if (w->posts.size() <= w->answers.size())
        return w->answers[w->posts.size() - 1];
      return w->otherwise;
    };
    hdl = sys.spawn(dlq_alerts, cfg, read, post, &stats);
    sched.run();
  }

  /// Advances the clock by `dt` in steps of 100 ms, running what is due.
  void pass(std::chrono::milliseconds dt) {
    for (auto t = 0ms; t < dt; t += 100ms) {
      advance_time(100ms);
      sched.run();
    }
  }

  ~alerts_fixture() {
    self->send_exit(hdl, caf::exit_reason::kill);
    sched.run();
  }

  double count(const std::string& series) {
    auto text = stats.text();
    auto at = text.find(series + " ");
    if (at == std::string::npos)
      return 0;
    return std::stod(text.substr(at + series.size() + 1));
  }
};

} // namespace

TEST_CASE_METHOD(alerts_fixture,
                 "DLQ_ALERTS: a signed call per alert; 2xx delivered") {
  fw->pending = 5;
  start();
  REQUIRE(fw->posts.size() == 1);
  auto& p = fw->posts[0];
  CHECK(p.url == cfg.url);
  CHECK(type_of(p) == "dlq.threshold");
  auto id = header(p, "webhook-id");
  auto ts = header(p, "webhook-timestamp");
  CHECK(id.rfind("msg_", 0) == 0);
  REQUIRE_FALSE(ts.empty());
  CHECK(header(p, "webhook-signature")
        == api::webhook_signature(cfg.key, id, std::stoll(ts), p.body));
  CHECK(count("crm_webhook_deliveries_total{outcome=\"delivered\"}") == 1);
  CHECK(count("crm_dlq_alerts_total{type=\"dlq.threshold\"}") == 1);
  pass(3000ms); // ticks while it holds: nothing more
  CHECK(fw->posts.size() == 1);
  fw->pending = 0;
  pass(1000ms);
  REQUIRE(fw->posts.size() == 2);
  CHECK(type_of(fw->posts[1]) == "dlq.recovered");
  CHECK(header(fw->posts[1], "webhook-id") != id);
}

TEST_CASE_METHOD(alerts_fixture,
                 "DLQ_ALERTS: 4xx is rejected and not retried") {
  fw->pending = 5;
  fw->answers = {{404, ""}};
  start();
  CHECK(fw->posts.size() == 1);
  pass(10000ms);
  CHECK(fw->posts.size() == 1);
  CHECK(count("crm_webhook_deliveries_total{outcome=\"rejected\"}") == 1);
}

TEST_CASE_METHOD(alerts_fixture,
                 "DLQ_ALERTS: 5xx and no answer are retried with backoff, "
                 "the same webhook-id, then failed") {
  fw->pending = 5;
  fw->otherwise = {503, ""};
  fw->answers = {{0, "Timeout was reached"}};
  start();
  REQUIRE(fw->posts.size() == 1);
  pass(900ms);
  CHECK(fw->posts.size() == 1); // backoff 1 s
  pass(200ms);
  REQUIRE(fw->posts.size() == 2);
  pass(1800ms);
  CHECK(fw->posts.size() == 2); // backoff 2 s
  pass(300ms);
  REQUIRE(fw->posts.size() == 3); // max_attempts 3: given up
  pass(10000ms);
  CHECK(fw->posts.size() == 3);
  for (auto& p : fw->posts) {
    CHECK(header(p, "webhook-id") == header(fw->posts[0], "webhook-id"));
    CHECK(p.body == fw->posts[0].body);
  }
  CHECK(count("crm_webhook_deliveries_total{outcome=\"retry\"}") == 2);
  CHECK(count("crm_webhook_deliveries_total{outcome=\"failed\"}") == 1);
}

TEST_CASE_METHOD(alerts_fixture,
                 "DLQ_ALERTS: a full queue drops its oldest call") {
  cfg.queue_limit = 2;
  cfg.max_attempts = 100;
  cfg.retry_initial = 60000ms; // the head waits: later alerts queue up
  fw->pending = 5;
  fw->otherwise = {500, ""};
  start(); // threshold alert: tried once, waits 60 s
  REQUIRE(fw->posts.size() == 1);
  fw->pending = 0;
  pass(1000ms); // recovered: queued (2)
  fw->pending = 5;
  pass(1000ms); // threshold again: queue full, the first is dropped
  CHECK(count("crm_webhook_deliveries_total{outcome=\"dropped\"}") == 1);
  fw->otherwise = {200, ""};
  pass(60000ms);
  REQUIRE(fw->posts.size() == 3);
  CHECK(type_of(fw->posts[1]) == "dlq.recovered");
  CHECK(type_of(fw->posts[2]) == "dlq.threshold");
  CHECK(count("crm_webhook_deliveries_total{outcome=\"delivered\"}") == 2);
}
