// Cases only Apache Kafka can run (CES_TEST_KAFKA=real; on the mock they
// skip with a WARN, which ctest reports as skipped):
//   [real_gap]       records the broker deleted (retention) while the sink
//                    was stopped: reported (offsets_lost, metric) with the
//                    exact range, the rest journalled exactly once;
//   [real_new_topic] topics created after the sink started (a listed name,
//                    and one matching a '^' pattern) are consumed.
//   CES_TEST_KAFKA=real ctest --test-dir build -L real_kafka
#include "fault_kit.hpp"

#include "tests/support/process.hpp"

#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>

#include <csignal>
#include <iostream>
#include <map>
#include <memory>
#include <set>

using namespace ces::faults;
using namespace std::chrono_literals;

namespace {

const char* const skip_note = "needs the real broker (CES_TEST_KAFKA=real): "
                              "skipped";

/// Log start offset of every partition of `topic`, asked with a group-less
/// librdkafka consumer (ListOffsets).
std::map<int32_t, int64_t> log_starts(const world& w, const std::string& topic,
                                      int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", w.bootstrap().c_str(), err,
                        sizeof err)
      != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"log starts: "} + err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"log starts: "} + err);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> guard{rk,
                                                           rd_kafka_destroy};
  std::map<int32_t, int64_t> result;
  for (int32_t p = 0; p < partitions; ++p) {
    int64_t low = -1, high = -1;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high,
                                         10000)
        == RD_KAFKA_RESP_ERR_NO_ERROR)
      result[p] = low;
  }
  return result;
}

std::vector<manifest_entry> concat(std::vector<manifest_entry> a,
                                   const std::vector<manifest_entry>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

} // namespace

// The sink journals batch A, is stopped; batch B is produced and the broker
// deletes it (log.retention.ms); the sink starts again and batch C is
// produced. Expected: per partition one offsets_lost line naming exactly B's
// offsets and crm_kafka_offsets_lost_total = B's count; A and C journalled
// exactly once; nothing of B stored; no stall.
TEST_CASE("retention: records deleted before the sink read them are "
          "reported with their exact range, the rest is journalled once",
          "[real_kafka][real_gap]") {
  if (!real_kafka()) {
    WARN("real_gap " << skip_note);
    return;
  }
  auto t_case = clock_type::now();
  const std::string topic = "crm.gap";
  const int partitions = 2;
  // Long enough for A to be journalled before it expires (a loaded
  // machine), short enough for the case to wait for B's deletion. The
  // active segment is deleted too once its newest record is that old.
  const int retention_ms = 20000;
  world_options wo;
  wo.kafka_config = {"log.retention.ms=" + std::to_string(retention_ms),
                     "log.retention.check.interval.ms=500",
                     "log.segment.delete.delay.ms=0"};
  world w{{topic}, partitions, wo};
  auto sink = w.start_sink();
  auto a = w.produce({"--count", "200"});
  REQUIRE(wait_stored(w, static_cast<long long>(a.size()), 60s));
  REQUIRE(sink.stop(30s).success());

  auto b = w.produce({"--count", "300", "--start-index", "200"});
  std::map<int32_t, std::pair<int64_t, int64_t>> lost; // first, last
  for (auto& e : b) {
    auto p = std::get<1>(e.at);
    auto o = std::get<2>(e.at);
    auto i = lost.find(p);
    if (i == lost.end())
      lost[p] = {o, o};
    else
      i->second = {std::min(i->second.first, o),
                   std::max(i->second.second, o)};
  }
  REQUIRE(lost.size() == static_cast<size_t>(partitions));
  // Retention deletes A and B: every partition's log starts after B.
  auto t_wait = clock_type::now();
  bool deleted = eventually(
    [&] {
      auto starts = log_starts(w, topic, partitions);
      for (auto& [p, range] : lost)
        if (starts.count(p) == 0 || starts[p] <= range.second)
          return false;
      return true;
    },
    std::chrono::milliseconds{retention_ms} + 120s);
  REQUIRE(deleted);
  auto deletion_s = seconds(t_wait, clock_type::now());

  auto log_from = file_size(w.sink_log());
  sink = w.start_sink();
  auto c = w.produce({"--count", "200", "--start-index", "500"});
  auto kept = concat(a, c);
  // Not a stall: C is journalled.
  REQUIRE(wait_stored(w, static_cast<long long>(kept.size()), 60s));
  // One line per partition (the first record after the gap reports it).
  std::vector<nlohmann::json> events;
  eventually(
    [&] {
      events = log_events(w.sink_log(), "offsets_lost", log_from);
      return events.size() >= lost.size();
    },
    10s);
  auto text = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics")
                .body;
  REQUIRE(sink.stop(30s).success());

  CHECK(events.size() == lost.size());
  std::set<int32_t> reported;
  for (auto& ev : events) {
    INFO(ev.dump());
    CHECK(ev.value("logger", "") == "consumer");
    CHECK(ev.value("level", "") == "error");
    CHECK(ev.value("topic", "") == topic);
    auto p = ev.value("partition", -1);
    REQUIRE(lost.count(p) == 1);
    CHECK(reported.insert(p).second);
    auto [first, last] = lost[p];
    CHECK(ev.value("first", int64_t{-1}) == first);
    CHECK(ev.value("last", int64_t{-1}) == last);
    CHECK(ev.value("count", int64_t{-1}) == last - first + 1);
  }
  for (auto& [p, range] : lost) {
    auto series = "crm_kafka_offsets_lost_total{partition=\""
                  + std::to_string(p) + "\",topic=\"" + topic + "\"}";
    CHECK(metric(text, series) == range.second - range.first + 1);
  }
  // journal ∪ DLQ = produced minus the deleted range, exactly once.
  auto t = check_invariant(w, kept);
  INFO(t.describe());
  CHECK(t.holds());

  figures f;
  f.name = "real_gap";
  f.t = t;
  f.elapsed_s = seconds(t_case, clock_type::now());
  f.add("lost", static_cast<double>(b.size()));
  f.add("deletion_wait_s", deletion_s);
  f.add("reported_lines", static_cast<double>(events.size()));
  f.print();
}

// The sink subscribes to crm.base (exists), crm.late (a listed name that
// does not exist yet) and ^crm\.p\..* (a pattern nothing matches yet). Both
// topics are created after the sink joined (by producing to them: the broker
// auto-creates), and every record is journalled exactly once within a
// bounded wait (topic.metadata.refresh.interval.ms, 10 s by default here).
TEST_CASE("topics created after start, listed or matching a pattern, are "
          "consumed", "[real_kafka][real_new_topic]") {
  if (!real_kafka()) {
    WARN("real_new_topic " << skip_note);
    return;
  }
  auto t_case = clock_type::now();
  world w{{"crm.base"}, 2};
  w.topics = {"crm.base", "crm.late", "^crm\\.p\\..*"};
  auto sink = w.start_sink();
  auto log_from = file_size(w.sink_log());
  auto base = w.produce({"--topics", "crm.base", "--count", "100"});
  auto t_create = clock_type::now();
  auto late = w.produce({"--topics", "crm.late,crm.p.new", "--count", "300",
                         "--start-index", "100"});
  auto all = concat(base, late);
  std::set<std::string> produced_topics;
  for (auto& e : late)
    produced_topics.insert(std::get<0>(e.at));
  CHECK(produced_topics == std::set<std::string>{"crm.late", "crm.p.new"});
  // Bounded: a metadata refresh (10 s), a rebalance, a batch.
  bool stored = wait_stored(w, static_cast<long long>(all.size()), 90s);
  auto new_topic_s = seconds(t_create, clock_type::now());
  auto assigned = assignments(w.sink_log(), log_from);
  REQUIRE(sink.stop(30s).success());
  CHECK(stored);
  std::set<std::string> assigned_topics;
  for (auto& a : assigned)
    for (auto& [tp, offset] : a)
      assigned_topics.insert(tp.first);
  CHECK(assigned_topics.count("crm.late") == 1);
  CHECK(assigned_topics.count("crm.p.new") == 1);
  auto t = check_invariant(w, all);
  INFO(t.describe());
  CHECK(t.holds());

  figures f;
  f.name = "real_new_topic";
  f.t = t;
  f.elapsed_s = seconds(t_case, clock_type::now());
  f.add("new_topic_s", new_topic_s);
  f.print();
}
