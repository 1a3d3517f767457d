// ces::replay_producer against crm-mock-broker (librdkafka's mock cluster in
// its own process), read back with kcat: delivery reports with partition and
// offset, original key and headers plus provenance headers, immediate errors,
// and a broker that is down failing deliveries within message.timeout.ms.
#include "actors/kafka/replay_producer.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <regex>
#include <sstream>

using namespace std::chrono_literals;
using ces::delivery_report;
using ces::kafka_header;
using ces::replay_producer;
using ces::replay_producer_config;
using ces::test::child_process;
using ces::test::spawn_options;
using ces::test::stream;

namespace {

const std::string topic = "apexflow.jobs.created";

/// crm-mock-broker as a child process, controlled through its stdin.
class mock_broker {
public:
  mock_broker() {
    spawn_options opts;
    opts.pipe_stdin = true;
    proc_ = std::make_unique<child_process>(
      std::vector<std::string>{CES_MOCK_BROKER_BIN, "--control-stdin",
                               "--topics", topic, "--partitions", "3"},
      opts);
    auto line = proc_->wait_for_line(stream::out, "bootstrap=", 15s);
    INFO(proc_->describe());
    REQUIRE(line);
    bootstrap_ = line->substr(line->find('=') + 1);
  }

  const std::string& bootstrap() const {
    return bootstrap_;
  }

  std::string command(const std::string& cmd) {
    auto from = proc_->output_size(stream::out);
    REQUIRE(proc_->write_stdin(cmd + "\n"));
    static const std::regex answer{"^(ok|error)( |$)"};
    auto line = proc_->wait_for_regex(stream::out, answer, 20s, from);
    INFO(cmd << "\n" << proc_->describe());
    REQUIRE(line);
    return *line;
  }

private:
  std::unique_ptr<child_process> proc_;
  std::string bootstrap_;
};

/// Collects delivery reports.
struct reports {
  std::vector<delivery_report> got;
  replay_producer::delivery_callback fn() {
    return [this](const delivery_report& r) { got.push_back(r); };
  }
  /// Polls `p` until `n` reports arrived or `timeout`.
  bool wait(replay_producer& p, size_t n,
            std::chrono::milliseconds timeout = 15s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (got.size() < n && std::chrono::steady_clock::now() < until)
      p.poll(100);
    return got.size() >= n;
  }
};

replay_producer_config config(const std::string& bootstrap,
                              int timeout_ms = 5000) {
  replay_producer_config c;
  c.bootstrap_servers = bootstrap;
  c.message_timeout_ms = timeout_ms;
  c.properties = {"reconnect.backoff.max.ms=1000"};
  return c;
}

/// Every message of `topic`, as kcat -J prints it, by (partition, offset).
std::map<std::pair<int, long long>, nlohmann::json>
kcat_read(const std::string& bootstrap) {
  child_process k{{"kcat", "-C", "-b", bootstrap, "-t", topic, "-o",
                   "beginning", "-e", "-J"}};
  auto st = k.wait_exit(30s);
  INFO(k.describe());
  REQUIRE(st);
  REQUIRE(st->success());
  std::map<std::pair<int, long long>, nlohmann::json> out;
  std::istringstream in{k.stdout_text()};
  for (std::string line; std::getline(in, line);) {
    if (line.empty())
      continue;
    auto j = nlohmann::json::parse(line);
    out[{j["partition"].get<int>(), j["offset"].get<long long>()}] = j;
  }
  return out;
}

} // namespace

TEST_CASE("replayed messages carry the original key and headers plus "
          "provenance, read back by kcat",
          "[replay_producer]") {
  mock_broker broker;
  reports reps;
  replay_producer p{config(broker.bootstrap()), reps.fn()};
  CHECK(p.in_flight() == 0);

  std::vector<kafka_header> original{{"source", "crm", true},
                                     {"x-replay-of", "999", true},
                                     {"trace", "", false},
                                     {"x-replay-id", "stale", true}};
  auto id = ces::make_replay_id();
  auto headers = ces::replay_headers(original, 42, id);
  const std::string payload = R"({"tenant_id":"t1","job":{"id":7}})";
  // Into the journalled partition.
  auto st = p.produce(topic, true, "job-7", headers, payload, 1001, 2);
  INFO(st.error);
  REQUIRE(st.ok);
  CHECK(p.in_flight() == 1);
  // A null key, librdkafka's partitioner.
  auto st2 = p.produce(topic, false, "", headers, "{\"n\":2}", 1002);
  REQUIRE(st2.ok);
  // An empty (not null) key.
  auto st3 = p.produce(topic, true, "", {}, "{\"n\":3}", 1003, 0);
  REQUIRE(st3.ok);
  REQUIRE(reps.wait(p, 3));
  CHECK(p.in_flight() == 0);
  std::map<uint64_t, delivery_report> by;
  for (auto& r : reps.got) {
    INFO(r.token << ": " << r.error_name << " " << r.error);
    CHECK(r.ok);
    by[r.token] = r;
  }
  REQUIRE(by.size() == 3);
  CHECK(by[1001].partition == 2);
  CHECK(by[1001].offset == 0);
  CHECK(by[1003].partition == 0);
  CHECK(by[1002].partition >= 0);
  CHECK(by[1002].offset >= 0);

  auto msgs = kcat_read(broker.bootstrap());
  REQUIRE(msgs.size() == 3);
  auto m = msgs.at({2, 0});
  INFO(m.dump());
  CHECK(m["key"] == "job-7");
  CHECK(m["payload"] == payload);
  // Original headers in order (null value kept), then provenance, each once.
  CHECK(m["headers"]
        == nlohmann::json::array({"source", "crm", "trace", nullptr,
                                  "x-replay-of", "42", "x-replay-id", id}));
  auto m2 = msgs.at({by[1002].partition, by[1002].offset});
  CHECK(m2["key"].is_null());
  CHECK(m2["headers"][5] == "42");
  auto m3 = msgs.at({0, by[1003].offset});
  CHECK(m3["key"] == "");
  CHECK(p.flush(1000));
  CHECK(p.fatal_error().empty());
}

TEST_CASE("immediate errors and bad configuration", "[replay_producer]") {
  mock_broker broker;
  reports reps;
  SECTION("a property that is not key=value") {
    auto c = config(broker.bootstrap());
    c.properties.push_back("nonsense");
    CHECK_THROWS_AS(replay_producer(c, reps.fn()), std::invalid_argument);
    c.properties.back() = "no.such.property=1";
    CHECK_THROWS_AS(replay_producer(c, reps.fn()), std::invalid_argument);
  }
  SECTION("an unknown partition of a known topic fails at once") {
    replay_producer p{config(broker.bootstrap()), reps.fn()};
    REQUIRE(p.produce(topic, true, "k", {}, "{}", 1, 0).ok);
    REQUIRE(reps.wait(p, 1));
    auto st = p.produce(topic, true, "k", {}, "{}", 2, 99);
    CHECK_FALSE(st.ok);
    CHECK(st.error_name == "_UNKNOWN_PARTITION");
    CHECK_FALSE(st.queue_full);
    CHECK(p.in_flight() == 0);
  }
  SECTION("a full local queue fails at once, as queue_full") {
    auto c = config(broker.bootstrap());
    c.properties.push_back("queue.buffering.max.messages=1");
    replay_producer p{c, reps.fn()};
    broker.command("down 1");
    REQUIRE(p.produce(topic, true, "k", {}, "{}", 1, 0).ok);
    auto st = p.produce(topic, true, "k", {}, "{}", 2, 0);
    CHECK_FALSE(st.ok);
    CHECK(st.queue_full);
    CHECK(st.error_name == "_QUEUE_FULL");
    CHECK(p.in_flight() == 1);
  }
}

TEST_CASE("with the broker down, delivery fails within message.timeout.ms",
          "[replay_producer]") {
  mock_broker broker;
  reports reps;
  replay_producer p{config(broker.bootstrap(), 2000), reps.fn()};
  // Connected and the topic known first, as in the service.
  REQUIRE(p.produce(topic, true, "warm-up", {}, "{}", 1, 0).ok);
  REQUIRE(reps.wait(p, 1));
  REQUIRE(reps.got[0].ok);
  broker.command("down 1");
  auto t0 = std::chrono::steady_clock::now();
  auto st = p.produce(topic, true, "k", {}, "{\"n\":1}", 2, 0);
  REQUIRE(st.ok); // queued: the outcome comes as a delivery report
  REQUIRE(reps.wait(p, 2, 10s));
  auto took = std::chrono::steady_clock::now() - t0;
  auto& r = reps.got[1];
  CHECK(r.token == 2);
  CHECK_FALSE(r.ok);
  CHECK(r.error_name == "_MSG_TIMED_OUT");
  CHECK_FALSE(r.error.empty());
  // librdkafka checks timeouts about once a second.
  CHECK(took >= 1900ms);
  CHECK(took < 5s);
  CHECK(p.in_flight() == 0);
  CHECK_FALSE(p.last_error().empty());
  // Back up: the same producer delivers again.
  broker.command("up 1");
  REQUIRE(p.produce(topic, true, "k", {}, "{\"n\":2}", 3, 0).ok);
  REQUIRE(reps.wait(p, 3, 15s));
  CHECK(reps.got[2].ok);
  CHECK(reps.got[2].offset == 1); // the timed-out message was not written
  CHECK(p.last_error().empty());
}

TEST_CASE("destroying a producer with messages in flight is quick and "
          "silent",
          "[replay_producer]") {
  mock_broker broker;
  int calls = 0;
  auto p = std::make_unique<replay_producer>(
    config(broker.bootstrap(), 30000),
    [&calls](const delivery_report&) { ++calls; });
  broker.command("down 1");
  for (uint64_t t = 1; t <= 5; ++t)
    REQUIRE(p->produce(topic, true, "k", {}, "{}", t, 0).ok);
  CHECK(p->in_flight() == 5);
  CHECK_FALSE(p->flush(200));
  auto t0 = std::chrono::steady_clock::now();
  p.reset();
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(calls == 0);
}
