// End-to-end: the DLQ alert webhook (DLQ_ALERTS) of the real binary, with a
// local receiver (tests/tools/webhook_receiver.py) that records each call
// and verifies its Standard Webhooks signature on its own (Python's hmac).
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string leads = "apexflow.leads.created";
const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The webhook receiver in a process of its own.
struct receiver {
  std::string dir = ces::test::make_temp_dir("ces-webhook");
  std::string log = dir + "/requests.jsonl";
  std::optional<child_process> proc;
  uint16_t port = 0;

  explicit receiver(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{
      "/usr/bin/python3", CES_SOURCE_DIR "/tests/tools/webhook_receiver.py",
      "--port-file",      dir + "/port",
      "--log",            log,
      "--secret",         secret};
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc.emplace(argv);
    auto port_file = dir + "/port";
    REQUIRE(eventually(
      [&] { return !ces::test::read_file(port_file).empty(); }, 10s));
    port = static_cast<uint16_t>(std::stoi(ces::test::read_file(port_file)));
  }
  ~receiver() {
    proc.reset();
    ces::test::remove_tree(dir);
  }

  /// The requests recorded so far.
  std::vector<json> requests() const {
    std::vector<json> out;
    std::ifstream in{log};
    for (std::string line; std::getline(in, line);)
      if (!line.empty())
        out.push_back(json::parse(line));
    return out;
  }

  /// The URL, with a token in its path that must never be logged.
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port) + "/hooks/t0k3n";
  }
};

std::vector<std::string> alert_args(const std::string& url,
                                    std::vector<std::string> extra) {
  std::vector<std::string> args{"--dlq-webhook-url=" + url,
                                "--dlq-webhook-secret=" + secret,
                                "--dlq-alert-interval-ms=200",
                                "--dlq-alert-growth=1000",
                                "--dlq-alert-cooldown-s=0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

double scrape(const world& w, const std::string& series) {
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  return metric(m.body, series);
}

/// `n` poison records (kinds cycling from invalid_json).
void produce_poison(world& w, int n, int start = 8) {
  w.produce({"--topics", leads, "--count", std::to_string(n),
             "--poison-every", "1", "--start-index", std::to_string(start)});
}

} // namespace

TEST_CASE("one signed alert per episode, and one recovery", "[e2e]") {
  receiver r;
  world w{{leads}, 2};
  auto sink = w.start_sink(alert_args(r.url(), {"--dlq-alert-threshold=4"}));
  auto started = sink.wait_for_line(ces::test::stream::err,
                                    "\"event\":\"dlq_alerts\"", 10s);
  REQUIRE(started);
  CHECK_THAT(*started, Catch::Contains("\"enabled\":true"));
  CHECK_THAT(*started, Catch::Contains("http://127.0.0.1:"
                                       + std::to_string(r.port) + "/***"));

  produce_poison(w, 3);
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 3; }, 30s));
  // Below the threshold: several ticks, no call.
  std::this_thread::sleep_for(1s);
  CHECK(r.requests().empty());

  // The fourth crosses the threshold (one record: the figures at the tick
  // that fires are exactly these four rows).
  produce_poison(w, 1, 11);
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 4; }, 30s));
  REQUIRE(eventually([&] { return r.requests().size() == 1; }, 10s));
  auto first = r.requests()[0];
  CHECK(first["verified"] == true);
  CHECK(first["path"] == "/hooks/t0k3n");
  CHECK(first["content_type"] == "application/json");
  CHECK(first["answered"] == 200);
  auto body = json::parse(first["body"].get<std::string>());
  CHECK(body["type"] == "dlq.threshold");
  CHECK(body["pending"] == 4);
  CHECK(body["new_in_window"] == 4);
  CHECK(body["window_s"] == 300);
  json by_class = json::object();
  for (auto& row : w.rows("select error_class, count(*) from event_dlq"
                          " group by error_class"))
    by_class[row[0]] = std::stoll(row[1]);
  CHECK(body["by_error_class"] == by_class);
  CHECK(body["by_topic"] == json{{leads, 4}});
  json ids = json::array();
  for (auto& row : w.rows("select id from event_dlq order by id desc"))
    ids.push_back(std::stoll(row[0]));
  CHECK(body["sample_ids"] == ids);
  CHECK(body["time"].get<std::string>().back() == 'Z');

  // The episode goes on (and grows): no second alert.
  produce_poison(w, 2, 12);
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 6; }, 30s));
  std::this_thread::sleep_for(1500ms);
  CHECK(r.requests().size() == 1);

  // Resolved by an operator: exactly one recovery.
  w.rows("update event_dlq set status = 'discarded'");
  REQUIRE(eventually([&] { return r.requests().size() == 2; }, 10s));
  auto second = r.requests()[1];
  CHECK(second["verified"] == true);
  CHECK(second["webhook_id"] != first["webhook_id"]);
  auto rec = json::parse(second["body"].get<std::string>());
  CHECK(rec["type"] == "dlq.recovered");
  CHECK(rec["pending"] == 0);
  CHECK(rec["sample_ids"] == json::array());
  std::this_thread::sleep_for(1500ms);
  CHECK(r.requests().size() == 2);

  CHECK(scrape(w, "crm_dlq_alerts_total{type=\"dlq.threshold\"}") == 1);
  CHECK(scrape(w, "crm_dlq_alerts_total{type=\"dlq.recovered\"}") == 1);
  CHECK(scrape(w, "crm_webhook_deliveries_total{outcome=\"delivered\"}")
        == 2);
  CHECK(sink.stop().success());
  auto log = ces::test::read_file(w.sink_log());
  CHECK_THAT(log, Catch::Contains("\"event\":\"webhook_delivered\""));
  CHECK_THAT(log, !Catch::Contains("t0k3n"));
  CHECK_THAT(log, !Catch::Contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

TEST_CASE("growth alerts; without a webhook URL there is no DLQ_ALERTS",
          "[e2e]") {
  receiver r;
  world w{{leads}, 2};
  {
    auto sink = w.start_sink();
    auto off = sink.wait_for_line(ces::test::stream::err,
                                  "\"event\":\"dlq_alerts\"", 10s);
    REQUIRE(off);
    CHECK_THAT(*off, Catch::Contains("\"enabled\":false"));
    CHECK(sink.stop().success());
  }
  auto sink = w.start_sink(
    alert_args(r.url(), {"--dlq-alert-threshold=1000",
                         "--dlq-alert-growth=2", "--dlq-alert-window-s=600"}));
  produce_poison(w, 2);
  REQUIRE(eventually([&] { return r.requests().size() == 1; }, 30s));
  auto body = json::parse(r.requests()[0]["body"].get<std::string>());
  CHECK(body["type"] == "dlq.growth");
  CHECK(body["new_in_window"] == 2);
  CHECK(body["window_s"] == 600);
  CHECK(r.requests()[0]["verified"] == true);
  CHECK(sink.stop().success());
}

TEST_CASE("a receiver answering 500 gets the same alert again with the same"
          " webhook-id",
          "[e2e]") {
  receiver r{{"--fail-first", "2"}};
  world w{{leads}, 2};
  auto sink = w.start_sink(alert_args(r.url(), {"--dlq-alert-threshold=1"}));
  produce_poison(w, 1);
  // Backoff 1 s, then 2 s.
  REQUIRE(eventually([&] { return r.requests().size() == 3; }, 30s));
  auto reqs = r.requests();
  CHECK(reqs[0]["answered"] == 500);
  CHECK(reqs[1]["answered"] == 500);
  CHECK(reqs[2]["answered"] == 200);
  for (auto& q : reqs) {
    CHECK(q["verified"] == true);
    CHECK(q["webhook_id"] == reqs[0]["webhook_id"]);
    CHECK(q["body"] == reqs[0]["body"]);
  }
  CHECK(eventually(
    [&] {
      return scrape(w, "crm_webhook_deliveries_total{outcome=\"delivered\"}")
               == 1
             && scrape(w, "crm_webhook_deliveries_total{outcome=\"retry\"}")
                  == 2;
    },
    5s));
  std::this_thread::sleep_for(1500ms);
  CHECK(r.requests().size() == 3);
  CHECK(sink.stop().success());
  auto log = ces::test::read_file(w.sink_log());
  CHECK_THAT(log, Catch::Contains("\"event\":\"webhook_retry\""));
  CHECK_THAT(log, Catch::Contains("\"status\":500"));
}

TEST_CASE("a receiver that is down or slow never blocks ingestion or the API",
          "[e2e]") {
  auto check_unblocked = [](world& w, child_process& sink, int start) {
    // While the webhook fails or hangs: events are journalled, GET /dlq
    // answers.
    auto before = w.count("select count(*) from event_journal");
    w.produce({"--topics", leads, "--count", "20", "--start-index",
               std::to_string(start)});
    CHECK(eventually(
      [&] {
        return w.count("select count(*) from event_journal") == before + 20;
      },
      30s));
    auto dlq = ces::test::http_get("127.0.0.1", w.http_port(), "/dlq");
    CHECK(dlq.status == 200);
    CHECK(sink.running());
  };

  SECTION("down: connection refused, retried, then failed") {
    world w{{leads}, 2};
    auto closed = ces::test::free_tcp_port();
    auto sink = w.start_sink(alert_args(
      "http://127.0.0.1:" + std::to_string(closed) + "/hooks/t0k3n",
      {"--dlq-alert-threshold=1", "--webhook-max-attempts=3"}));
    produce_poison(w, 1);
    REQUIRE(sink.wait_for_line(ces::test::stream::err,
                               "\"event\":\"webhook_retry\"", 30s));
    check_unblocked(w, sink, 100);
    REQUIRE(sink.wait_for_line(ces::test::stream::err,
                               "\"event\":\"webhook_failed\"", 30s));
    CHECK(scrape(w, "crm_webhook_deliveries_total{outcome=\"retry\"}") == 2);
    CHECK(scrape(w, "crm_webhook_deliveries_total{outcome=\"failed\"}") == 1);
    check_unblocked(w, sink, 200);
    CHECK(sink.stop().success());
    CHECK_THAT(ces::test::read_file(w.sink_log()),
               !Catch::Contains("t0k3n"));
  }

  SECTION("slow: every call times out") {
    receiver r{{"--sleep", "30"}};
    world w{{leads}, 2};
    auto sink = w.start_sink(alert_args(
      r.url(), {"--dlq-alert-threshold=1", "--webhook-timeout-ms=1500"}));
    produce_poison(w, 1);
    // The first call is hanging now.
    REQUIRE(eventually(
      [&] { return w.count("select count(*) from event_dlq") == 1; }, 30s));
    check_unblocked(w, sink, 100);
    REQUIRE(sink.wait_for_line(ces::test::stream::err,
                               "\"event\":\"webhook_retry\"", 30s));
    check_unblocked(w, sink, 200);
    CHECK(scrape(w, "crm_webhook_deliveries_total{outcome=\"delivered\"}")
          <= 0);
    CHECK(sink.stop().success());
  }
}
