// Faults of Apache Kafka itself (issue 14), real broker only
// (CES_TEST_KAFKA=real; on the mock each case prints "SKIPPED: ..." and
// ctest reports it skipped):
//
//   broker_restart_term     the (1-node) broker SIGTERMed under load, started
//                           again on its ports and data
//   broker_restart_kill     the same with SIGKILL (unclean: log recovery)
//   leader_election         3 nodes (replication factor 3, min ISR 2): the
//                           node leading most partitions killed (-9) under
//                           load; the others elect new leaders
//   leader_election_replay  the same while POST /replay/{id} runs
//
// The producer (crm-produce) is idempotent with acks=all, so its manifest is
// what the broker has; the invariant is the suite's: journal ∪ DLQ =
// produced, each exactly once (a broker-side duplicate would be reported as
// broker_duplicates). The sink is never restarted: it must recover by
// itself.
//
// Figures: fault end = the broker node answering again (restart cases) or
// every partition led by a live node (election cases); recovery_s = fault
// end -> the journal (+ DLQ) holds every record the broker held then;
// first_commit_s = fault end -> the first new commit.
#include "tests/faults/fault_kit.hpp"
#include "tests/faults/load_kit.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <mutex>
#include <set>

using namespace ces::faults;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> crm_topics = {"apexflow.leads.created",
                                             "apexflow.jobs.created"};

/// Group settings as the rest of the suite (fast_group) plus quick
/// reconnects while a broker node is away.
const std::vector<std::string> sink_extra{
  "--kafka-session-timeout-ms=3000",
  "--kafka-properties=heartbeat.interval.ms=500,"
  "reconnect.backoff.max.ms=1000"};

double peak_persisted(const sampler& s, double from, double to) {
  double m = -1;
  for (auto& x : s.between(from, to))
    if (x.scraped)
      m = std::max(m, x.persisted);
  return m;
}

double first_commit_after(const sampler& s, double from, double above) {
  for (auto& x : s.samples())
    if (x.t >= from && x.scraped && x.persisted > above)
      return x.t - from;
  return -1;
}

/// The broker's high watermarks summed, asked until every partition
/// answers (a partition may have no leader for a moment after a fault).
long long broker_total(world& w, std::chrono::milliseconds timeout = 60s) {
  long long total = -1;
  eventually(
    [&] {
      try {
        total = sum(w.high_watermarks());
        return true;
      } catch (const std::exception&) {
        return false;
      }
    },
    timeout);
  return total;
}

/// The node leading most partitions and how many it leads.
std::pair<int32_t, int> busiest_leader(const world& w) {
  std::map<int32_t, int> led;
  for (auto& [p, leader] : partition_leaders(w))
    if (leader >= 0)
      ++led[leader];
  std::pair<int32_t, int> best{-1, 0};
  for (auto& [node, n] : led)
    if (n > best.second)
      best = {node, n};
  return best;
}

/// Waits until every partition has a leader other than `dead`.
bool wait_elected(const world& w, int32_t dead,
                  std::chrono::milliseconds timeout) {
  return eventually(
    [&] {
      try {
        auto leaders = partition_leaders(w);
        for (auto& [p, leader] : leaders)
          if (leader < 0 || leader == dead)
            return false;
        return !leaders.empty();
      } catch (const std::exception&) {
        return false;
      }
    },
    timeout);
}

// ---------------------------------------------------------------------------
// broker_restart_term / broker_restart_kill: the one node goes away under a
// 2 000 ev/s load (every 100th record poison), stays away 3 s, and is
// started again (kafka.sh start-node: same ports, same data; a JVM start,
// and after SIGKILL a log recovery, take 10-40 s on this machine). Producer
// and sink wait and reconnect by themselves.
// ---------------------------------------------------------------------------
void broker_restart_case(const std::string& name, const std::string& signal) {
  auto t_case = clock_type::now();
  const int k = soak_factor();
  const double rate = 2000, warm_s = 3, down_s = 3.0 * k, tail_s = 3;
  world w{crm_topics, 4};
  auto sink = w.start_sink(sink_extra);
  sampler smp;
  smp.watch(sink.pid(), w.metrics_port());
  // Stopped below; at most 60 s of events, so that a slow broker start on
  // a loaded machine (up to a minute) does not pile up an endless backlog.
  // The producer's own retries ride the outage (message.timeout.ms 300 s).
  auto ld = start_load(w, rate, 60.0 * k,
                       {"--poison-every", "100", "-X",
                        "reconnect.backoff.max.ms=1000"});
  pause_s(warm_s);
  auto log_from = file_size(w.sink_log());
  auto before = broker_total(w);
  double t_down = smp.now();
  auto t_kill = clock_type::now();
  w.kill_node(1, signal);
  double stop_s = seconds(t_kill, clock_type::now());
  pause_s(down_s);
  double t_start = smp.now();
  w.start_node(1);
  auto fault_end = clock_type::now();
  double t_up = smp.now();
  double persisted_down = peak_persisted(smp, t_down, t_up);
  auto highs = broker_total(w);
  double recovery_s = time_to_store(w, highs, fault_end, 180s);
  pause_s(tail_s);
  auto manifest = stop_load(ld);
  REQUIRE(wait_stored(w, static_cast<long long>(manifest.size()), 180s));
  pause_s(0.5); // give a would-be duplicate time to show up
  auto t = check_invariant(w, manifest);
  bool alive = sink.running();
  auto m = scrape(w.metrics_port());
  smp.stop();
  auto crashes = count_events(w, "actor_crash", log_from);

  figures f;
  f.name = name;
  f.t = t;
  f.recovery_s = recovery_s;
  f.first_commit_s = first_commit_after(smp, t_up, persisted_down);
  f.peak_in_flight = -1;
  f.add("broker_stop_s", stop_s);
  f.add("broker_start_s", t_up - t_start);
  f.add("broker_away_s", t_up - t_down);
  f.add("held_before", static_cast<double>(before));
  f.add("held_at_fault_end", static_cast<double>(highs));
  f.add("kafka_error_lines",
        static_cast<double>(count_events(w, "kafka_error", log_from)));
  f.add("actor_crashes", static_cast<double>(crashes));
  f.add("restarts", m.restarts);
  f.add("sink_alive", alive ? 1.0 : 0.0);
  f.elapsed_s = seconds(t_case, clock_type::now());
  f.notes = "1-node Apache Kafka SIG" + signal + ", "
            + std::to_string(static_cast<int>(down_s))
            + " s away, start-node on the same ports and data; load "
            + std::to_string(static_cast<int>(rate)) + " ev/s";
  f.print();

  INFO(t.describe());
  CHECK(t.holds());
  CHECK(t.dead_lettered == t.produced_poison);
  CHECK(highs > before);      // the load went on after the restart
  CHECK(alive);               // recovered without a restart of the sink
  CHECK(recovery_s >= 0);
  CHECK(f.first_commit_s >= 0);
  CHECK(sink.stop(10s).success());
}

} // namespace

TEST_CASE("the broker SIGTERMed under load and started again: the sink "
          "recovers by itself, exactly once",
          "[faults][broker_restart_term]") {
  CES_SKIP_IF(skip_on_mock("kafka.sh kill/start-node"));
  broker_restart_case("broker_restart_term", "TERM");
}

TEST_CASE("the broker SIGKILLed under load and started again: the sink "
          "recovers by itself, exactly once",
          "[faults][broker_restart_kill]") {
  CES_SKIP_IF(skip_on_mock("kafka.sh kill/start-node"));
  broker_restart_case("broker_restart_kill", "KILL");
}

// leader_election: 3 nodes, 2 topics x 4 partitions (3 replicas each,
// min.insync.replicas 2), 2 000 ev/s; the node leading most partitions is
// killed (-9) and stays dead: the two others elect new leaders, the
// producer (acks=all) goes on with 2 in-sync replicas, the sink follows the
// new leaders (and a new group coordinator if it was on the dead node).
TEST_CASE("three nodes, the leaders' node killed under load: leader "
          "election, the sink recovers by itself, exactly once",
          "[faults][leader_election]") {
  CES_SKIP_IF(skip_on_mock("a 3-node cluster"));
  auto t_case = clock_type::now();
  const int k = soak_factor();
  const double rate = 2000, warm_s = 3, tail_s = 3.0 * k;
  world_options wo;
  wo.nodes = 3;
  world w{crm_topics, 4, wo};
  auto sink = w.start_sink(sink_extra);
  sampler smp;
  smp.watch(sink.pid(), w.metrics_port());
  auto ld = start_load(w, rate, 60.0 * k, // stopped below, bounded
                       {"--poison-every", "100", "-X",
                        "reconnect.backoff.max.ms=1000"});
  pause_s(warm_s);
  auto log_from = file_size(w.sink_log());
  auto [victim, led] = busiest_leader(w);
  REQUIRE(victim > 0);
  auto before = broker_total(w);
  double t_kill = smp.now();
  auto kill_at = clock_type::now();
  w.kill_node(victim, "KILL");
  REQUIRE(w.node_pid(victim) < 0);
  REQUIRE(wait_elected(w, victim, 120s));
  auto fault_end = clock_type::now();
  double t_elected = smp.now();
  double election_s = seconds(kill_at, fault_end);
  double persisted_at_kill = peak_persisted(smp, t_kill - 1, t_kill);
  auto highs = broker_total(w);
  double recovery_s = time_to_store(w, highs, fault_end, 180s);
  pause_s(tail_s);
  auto manifest = stop_load(ld);
  REQUIRE(wait_stored(w, static_cast<long long>(manifest.size()), 180s));
  pause_s(0.5); // give a would-be duplicate time to show up
  auto t = check_invariant(w, manifest);
  bool alive = sink.running();
  auto m = scrape(w.metrics_port());
  smp.stop();

  figures f;
  f.name = "leader_election";
  f.t = t;
  f.recovery_s = recovery_s;
  f.first_commit_s = first_commit_after(smp, t_elected, persisted_at_kill);
  f.add("victim_node", static_cast<double>(victim));
  f.add("partitions_led_by_victim", static_cast<double>(led));
  f.add("election_s", election_s);
  f.add("held_before", static_cast<double>(before));
  f.add("held_at_fault_end", static_cast<double>(highs));
  f.add("kafka_error_lines",
        static_cast<double>(count_events(w, "kafka_error", log_from)));
  f.add("actor_crashes",
        static_cast<double>(count_events(w, "actor_crash", log_from)));
  f.add("restarts", m.restarts);
  f.add("sink_alive", alive ? 1.0 : 0.0);
  f.elapsed_s = seconds(t_case, clock_type::now());
  f.notes = "3 nodes (RF 3, min ISR 2), leader of most partitions killed "
            "(-9), stays dead; load 2000 ev/s";
  f.print();

  INFO(t.describe());
  CHECK(led >= 1);
  CHECK(t.holds());
  CHECK(t.dead_lettered == t.produced_poison);
  CHECK(highs > before);
  CHECK(alive);
  CHECK(recovery_s >= 0);
  CHECK(sink.stop(10s).success());
}

// leader_election_replay: 3 nodes, 1 500 events journalled, then a client
// replays them one by one (POST /replay/{journal id}, each id asked once)
// while a 1 000 ev/s load runs; the node leading most partitions is killed
// (-9) in the middle. Every replay is answered (200, or a clean JSON error:
// never a hang, i.e. within the client's 30 s), every replay answered 200
// is journalled exactly once (replay_of = its id), none more than once, and
// everything the broker holds is stored exactly once.
TEST_CASE("three nodes, the leaders' node killed during replays: every "
          "replay answered, each journalled at most once",
          "[faults][leader_election_replay]") {
  CES_SKIP_IF(skip_on_mock("a 3-node cluster"));
  auto t_case = clock_type::now();
  world_options wo;
  wo.nodes = 3;
  world w{crm_topics, 4, wo};
  auto sink = w.start_sink(sink_extra);
  const int originals = 1500;
  w.produce({"--count", std::to_string(originals)});
  REQUIRE(wait_stored(w, originals, 120s));
  std::vector<long long> ids;
  for (auto& r : w.rows("select id from event_journal where replay_of is "
                        "null order by id"))
    ids.push_back(std::stoll(r[0]));
  REQUIRE(ids.size() == static_cast<size_t>(originals));
  auto ld = start_load(w, 1000, 120, // stopped below, bounded
                       {"--start-index", std::to_string(originals), "-X",
                        "reconnect.backoff.max.ms=1000"});

  struct answer {
    long long id;
    int status;
    std::string error;
    double took_s;
  };
  std::mutex mtx;
  std::vector<answer> answers;
  std::atomic<bool> stop{false};
  std::thread client{[&] {
    for (size_t i = 0; i < ids.size() && !stop; ++i) {
      auto t0 = clock_type::now();
      auto res = ces::test::http_request(
        "POST", "127.0.0.1", w.http_port(),
        "/replay/" + std::to_string(ids[i]), {}, "application/json", 30s);
      answer a{ids[i], res.status, "", seconds(t0, clock_type::now())};
      if (res.status != 200) {
        auto j = nlohmann::json::parse(res.body, nullptr, false);
        if (j.is_object() && j.contains("error") && j["error"].is_string())
          a.error = j["error"].get<std::string>();
      }
      std::lock_guard<std::mutex> guard{mtx};
      answers.push_back(a);
    }
  }};
  // A failed REQUIRE below must not destroy a joinable thread (that would
  // std::terminate the whole test process, leaving the sink running).
  struct joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~joiner() {
      stop = true;
      if (t.joinable())
        t.join();
    }
  } join_client{stop, client};
  auto answered = [&] {
    std::lock_guard<std::mutex> guard{mtx};
    return answers.size();
  };
  REQUIRE(eventually([&] { return answered() >= 20; }, 60s));
  auto log_from = file_size(w.sink_log());
  auto [victim, led] = busiest_leader(w);
  REQUIRE(victim > 0);
  auto before_kill = answered();
  auto kill_at = clock_type::now();
  w.kill_node(victim, "KILL");
  REQUIRE(wait_elected(w, victim, 120s));
  double election_s = seconds(kill_at, clock_type::now());
  // Replays go on after the election, then stop.
  auto after_election = answered();
  eventually([&] { return answered() >= after_election + 20; }, 60s);
  stop = true;
  client.join();
  auto manifest = stop_load(ld);
  auto highs = broker_total(w);
  REQUIRE(highs > 0);
  REQUIRE(wait_stored(w, highs, 180s));
  pause_s(1); // give a would-be duplicate time to show up
  auto t = check_against_broker(w);
  bool alive = sink.running();

  // Per replay: its rows in the journal.
  std::map<long long, long long> rows_of;
  for (auto& r : w.rows("select replay_of, count(*) from event_journal "
                        "where replay_of is not null group by replay_of"))
    rows_of[std::stoll(r[0])] = std::stoll(r[1]);
  int ok = 0, clean_errors = 0, unanswered = 0, unclean = 0;
  int ok_not_journalled = 0, journalled_twice = 0, not_asked = 0;
  double slowest = 0;
  std::map<std::string, int> statuses;
  std::set<long long> asked;
  for (auto& a : answers) {
    asked.insert(a.id);
    slowest = std::max(slowest, a.took_s);
    ++statuses[std::to_string(a.status)
               + (a.error.empty() ? "" : ":" + a.error)];
    auto rows = rows_of.count(a.id) ? rows_of[a.id] : 0;
    if (rows > 1)
      ++journalled_twice;
    if (a.status == 200) {
      ++ok;
      if (rows != 1)
        ++ok_not_journalled;
    } else if (a.status == 0) {
      ++unanswered;
    } else if (a.status >= 500 && !a.error.empty()) {
      ++clean_errors;
    } else {
      ++unclean;
    }
  }
  for (auto& [id, n] : rows_of)
    if (asked.count(id) == 0)
      ++not_asked;
  std::string status_text;
  for (auto& [s, n] : statuses)
    status_text += (status_text.empty() ? "" : ",") + s + "x"
                   + std::to_string(n);

  figures f;
  f.name = "leader_election_replay";
  f.t = t;
  f.add("victim_node", static_cast<double>(victim));
  f.add("partitions_led_by_victim", static_cast<double>(led));
  f.add("election_s", election_s);
  f.add("replays", static_cast<double>(answers.size()));
  f.add("replays_before_kill", static_cast<double>(before_kill));
  f.add("replays_ok", ok);
  f.add("replays_clean_error", clean_errors);
  f.add("replays_unanswered", unanswered);
  f.add("replay_answer_s_max", slowest);
  f.add("answers", status_text);
  f.add("produced_by_load", static_cast<double>(manifest.size()));
  f.add("actor_crashes",
        static_cast<double>(count_events(w, "actor_crash", log_from)));
  f.add("sink_alive", alive ? 1.0 : 0.0);
  f.elapsed_s = seconds(t_case, clock_type::now());
  f.notes = "3 nodes, leader of most partitions killed (-9) during "
            "POST /replay/{id} (each id once) and a 1000 ev/s load";
  f.print();

  INFO(t.describe() << " answers " << status_text);
  CHECK(led >= 1);
  CHECK(t.holds());
  CHECK(ok > 0);
  CHECK(unanswered == 0);       // never a hang
  CHECK(unclean == 0);          // 200 or a JSON error
  CHECK(ok_not_journalled == 0); // a 200 is journalled exactly once
  CHECK(journalled_twice == 0);  // nothing replayed twice
  CHECK(not_asked == 0);         // nothing replayed that was not asked
  CHECK(alive);
  CHECK(sink.stop(10s).success());
}
