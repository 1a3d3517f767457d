#include "actors/consumer.hpp"
#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "fakes.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

#include <set>
#include <sstream>

using namespace std::chrono_literals;
using namespace ces;
using namespace ces::test;

namespace {

struct consumer_fixture : ces::test::fixture {
  std::shared_ptr<source_log> log = std::make_shared<source_log>();
  ces::metrics stats; // outlives the actors (killed in the destructor)
  persister_actor persister = sys.spawn(held_persister);
  consumer_actor cons;

  ~consumer_fixture() {
    // The poll loop and the keepalive timer never run dry on their own.
    // Unanswered promises keep the fake persister alive: stop it, too.
    if (cons)
      self->send_exit(cons, caf::exit_reason::kill);
    self->send_exit(persister, caf::exit_reason::kill);
    sched.run(100);
  }

  void start(size_t available, consumer_settings cs,
             ces::metrics* stats = nullptr) {
    auto lg = log;
    source_factory make = [lg, available] {
      return std::unique_ptr<record_source>(new scripted_source(lg, available));
    };
    cons = sys.spawn(consumer, make, std::vector<persister_actor>{persister},
                     cs, stats);
  }

  held_persister_state& held() {
    return deref<persister_actor::stateful_base<held_persister_state>>(
             persister)
      .state;
  }

  consumer_state& cstate() {
    return deref<consumer_actor::stateful_base<consumer_state>>(cons).state;
  }

  /// Answers the oldest unanswered batch as fully journalled.
  void ack_oldest() {
    REQUIRE(!held().unanswered.empty());
    self->send(persister, atom::internal_v, atom::retry_v);
  }

  static consumer_settings settings() {
    consumer_settings cs;
    cs.batch_max_records = 10;
    cs.linger = 1h; // only the count closes a batch in these tests
    cs.max_in_flight = 2;
    cs.idle_wait = 0ms;
    return cs;
  }
};

} // namespace

TEST_CASE_METHOD(consumer_fixture,
                 "backpressure: polling stops at the in-flight bound") {
  start(1000, settings());
  // The poll loop re-schedules itself, so bound the number of steps.
  sched.run(500);
  // Two batches of 10 went out and none was acknowledged: the consumer
  // stopped taking records from Kafka. It did not pause its partitions (a
  // resume stalls librdkafka 2.0.2's fetcher for about a second).
  CHECK(held().received.size() == 2);
  CHECK(held().received[0].records.size() == 10);
  CHECK(log->taken == 20);
  CHECK(cstate().in_flight == 2);
  CHECK(!log->paused);
  CHECK(log->pauses == 0);
  // A long stall (the persister is silent for over a second: PostgreSQL is
  // down) pauses the partitions, so that keepalives may serve the group.
  for (int i = 0; i < 3; ++i) {
    advance_time(1s);
    sched.run(500);
  }
  CHECK(log->paused);
  CHECK(log->pauses == 1);
  CHECK(held().received.size() == 2);
  CHECK(log->taken == 20);
  CHECK(log->next_while_paused == 0);
  // One acknowledgement frees one slot: resume, one more batch, stalled
  // again (not paused again right away).
  ack_oldest();
  sched.run(500);
  CHECK(log->resumes == 1);
  CHECK(held().received.size() == 3);
  CHECK(log->taken == 30);
  CHECK(!log->paused);
  // The acknowledged batch's offsets were committed to Kafka.
  REQUIRE(log->commits.size() == 1);
  CHECK(log->commits[0].size() == 4);
  for (auto& o : log->commits[0])
    CHECK(o.next_offset == (o.partition < 2 ? 3 : 2)); // offsets 0..9
}

TEST_CASE_METHOD(consumer_fixture,
                 "short stalls do not pause the partitions") {
  start(1000, settings());
  sched.run(500);
  REQUIRE(log->taken == 20);
  for (int round = 0; round < 5; ++round) {
    advance_time(500ms);
    sched.run(500);
    ack_oldest();
    sched.run(500);
  }
  CHECK(log->pauses == 0);
  CHECK(held().received.size() == 7);
  CHECK(log->taken == 70);
}

TEST_CASE_METHOD(consumer_fixture,
                 "records are validated before they reach the persister") {
  auto cs = settings();
  cs.max_in_flight = 1; // pauses after one batch, so the persister gets to run
  start(10, cs);
  sched.run(100);
  REQUIRE(held().received.size() == 1);
  for (auto& r : held().received[0].records) {
    CHECK(r.reason == reject_reason::none);
    CHECK(r.tenant_id == "tenant-01");
  }
}

TEST_CASE_METHOD(consumer_fixture,
                 "graceful stop sends the open batch, drains, then commits") {
  auto cs = settings();
  cs.max_in_flight = 3;
  start(25, cs);
  sched.run(500);
  // Two batches out, 5 records wait in an open batch (the linger is long)
  // when the stop comes.
  CHECK(log->taken == 25);
  CHECK(cstate().in_flight == 2);
  CHECK(cstate().building.size() == 5);
  self->monitor(cons);
  self->send_exit(cons, caf::exit_reason::user_shutdown);
  sched.run(50);
  REQUIRE(held().received.size() == 3);
  CHECK(held().received[2].records.size() == 5);
  CHECK(!log->closed); // still waiting for acknowledgements
  ack_oldest();
  ack_oldest();
  sched.run(50);
  CHECK(!log->closed);
  ack_oldest();
  sched.run(50);
  CHECK(log->taken == 25);
  CHECK(log->closed);
  // The final commit covers everything acknowledged: offsets 0..24 spread
  // round-robin over 4 partitions.
  REQUIRE(log->final_offsets.size() == 4);
  for (auto& o : log->final_offsets)
    CHECK(o.next_offset == (o.partition == 0 ? 7 : 6));
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
  CHECK(reason == caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(consumer_fixture,
                 "two persisters: each partition always goes to the same one") {
  persister_actor second = sys.spawn(held_persister);
  auto lg = log;
  source_factory make = [lg] {
    return std::unique_ptr<record_source>(new scripted_source(lg, 40));
  };
  auto cs = settings();
  cons = sys.spawn(consumer, make,
                   std::vector<persister_actor>{persister, second}, cs,
                   nullptr);
  sched.run(500);
  auto& a = held();
  auto& b
    = deref<persister_actor::stateful_base<held_persister_state>>(second).state;
  // Both got work; none got a partition the other got.
  REQUIRE(!a.received.empty());
  REQUIRE(!b.received.empty());
  std::set<int32_t> pa, pb;
  size_t total = 0;
  for (auto& x : a.received)
    for (auto& r : x.records) {
      pa.insert(r.rec.partition);
      CHECK(persister_for(r.rec.topic, r.rec.partition, 2) == 0);
      ++total;
    }
  for (auto& x : b.received)
    for (auto& r : x.records) {
      pb.insert(r.rec.partition);
      CHECK(persister_for(r.rec.topic, r.rec.partition, 2) == 1);
      ++total;
    }
  for (auto p : pa)
    CHECK(pb.count(p) == 0);
  CHECK(total == log->taken);
  self->send_exit(second, caf::exit_reason::kill);
}

// A PERSISTER that dies holding unanswered batches never answers them: CAF
// 0.17 sends no error for a dropped response_promise. The CONSUMER must learn
// it from a DOWN, not wait forever (issue 8, defect 1).
TEST_CASE_METHOD(consumer_fixture,
                 "a persister that dies holding batches: the consumer stops "
                 "polling and a stop request ends it at once") {
  start(1000, settings());
  sched.run(500);
  REQUIRE(held().received.size() == 2);
  REQUIRE(cstate().in_flight == 2);
  self->monitor(cons);
  self->send_exit(persister,
                  caf::make_error(caf::sec::runtime_error,
                                  std::string{"injected failure"}));
  sched.run(500);
  // The two batches are lost with the persister: no longer in flight, never
  // committed; the consumer takes no more records and waits for the
  // SUPERVISOR's rest-for-one restart.
  CHECK(cstate().in_flight == 0);
  CHECK(cstate().broken);
  CHECK(log->taken == 20);
  CHECK(log->commits.empty());
  // The SUPERVISOR's stop request ends it without waiting.
  self->send_exit(cons, caf::exit_reason::user_shutdown);
  sched.run(50);
  CHECK(log->closed);
  CHECK(log->final_offsets.empty()); // nothing was acknowledged
  caf::error reason = caf::sec::none;
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = true; reason = dm.reason; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(down);
  CHECK(reason == caf::exit_reason::user_shutdown);
}

TEST_CASE_METHOD(consumer_fixture,
                 "a persister that dies during the drain does not keep the "
                 "consumer from stopping") {
  auto cs = settings();
  cs.max_in_flight = 3;
  start(25, cs);
  sched.run(500);
  REQUIRE(cstate().in_flight == 2);
  self->monitor(cons);
  // The stop request: the open batch goes out and the consumer drains; the
  // first batch is acknowledged.
  self->send_exit(cons, caf::exit_reason::user_shutdown);
  sched.run(50);
  REQUIRE(held().received.size() == 3);
  ack_oldest();
  sched.run(50);
  REQUIRE(!log->closed);
  REQUIRE(cstate().in_flight == 2);
  // The persister dies holding two batches.
  self->send_exit(persister,
                  caf::make_error(caf::sec::runtime_error,
                                  std::string{"injected failure"}));
  sched.run(50);
  // The consumer stopped; its final commit covers only the acknowledged
  // batch (offsets 0..9 over 4 partitions).
  CHECK(log->closed);
  REQUIRE(log->final_offsets.size() == 4);
  for (auto& o : log->final_offsets)
    CHECK(o.next_offset == (o.partition < 2 ? 3 : 2));
  bool down = false;
  self->receive([&](caf::down_msg&) { down = true; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(down);
}

namespace {

/// crm_consumer_lag_records of (topic, partition) in `m`, -1 if absent.
double lag_of(const ces::metrics& m, const std::string& topic, int partition) {
  auto series = "crm_consumer_lag_records{partition=\""
                + std::to_string(partition) + "\",topic=\"" + topic + "\"} ";
  std::istringstream in{m.text()};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(series, 0) == 0)
      return std::stod(l.substr(series.size()));
  return -1;
}

} // namespace

TEST_CASE_METHOD(consumer_fixture,
                 "consumer lag: high watermark minus the journal's position") {
  const std::string leads = "apexflow.leads.created";
  const std::string jobs = "apexflow.jobs.created";
  for (int32_t p = 0; p < 4; ++p)
    log->positions.push_back(partition_position{leads, p, 100, 0});
  // A topic without new records: lag 0, not absent.
  log->positions.push_back(partition_position{jobs, 0, 5, 5});
  // Not fetched yet: no watermark, no series.
  log->positions.push_back(partition_position{jobs, 1, -1, 0});
  auto& m = stats;
  start(1000, settings(), &m);
  sched.run(500);
  REQUIRE(held().received.size() == 2); // 20 records out, none acknowledged
  CHECK(lag_of(m, leads, 0) == -1);     // not published before the timer
  advance_time(1s);
  sched.run(500);
  // Nothing journalled yet: measured from where consumption started.
  for (int p = 0; p < 4; ++p)
    CHECK(lag_of(m, leads, p) == 100);
  CHECK(lag_of(m, jobs, 0) == 0);
  CHECK(lag_of(m, jobs, 1) == -1);
  // The first batch (offsets 0..9 round-robin) is journalled: partitions 0
  // and 1 hold 3 records each, 2 and 3 two.
  ack_oldest();
  sched.run(500);
  advance_time(1s);
  sched.run(500);
  CHECK(lag_of(m, leads, 0) == 97);
  CHECK(lag_of(m, leads, 1) == 97);
  CHECK(lag_of(m, leads, 2) == 98);
  CHECK(lag_of(m, leads, 3) == 98);
  // A rebalance revokes partition 3 and reassigns partition 0 starting at
  // the journal's stored offset 50 (another member journalled up to 49).
  log->positions.erase(log->positions.begin() + 3);
  log->positions[0].start = 50;
  advance_time(1s);
  sched.run(500);
  CHECK(lag_of(m, leads, 3) == -1); // no stale series
  CHECK(lag_of(m, leads, 0) == 50);
  CHECK(lag_of(m, leads, 2) == 98);
  // The broker gets more records (a fetch saw the new watermark).
  log->positions[1].high_watermark = 110;
  advance_time(1s);
  sched.run(500);
  CHECK(lag_of(m, leads, 1) == 107);
}

TEST_CASE_METHOD(consumer_fixture,
                 "consumer lag series end with the consumer") {
  log->positions.push_back(
    partition_position{"apexflow.leads.created", 0, 10, 0});
  auto& m = stats;
  start(0, settings(), &m);
  sched.run(100);
  advance_time(1s);
  sched.run(100);
  REQUIRE(lag_of(m, "apexflow.leads.created", 0) == 10);
  self->send_exit(cons, caf::exit_reason::user_shutdown);
  sched.run(100);
  CHECK(log->closed);
  CHECK(lag_of(m, "apexflow.leads.created", 0) == -1);
}

namespace {

/// crm_kafka_offsets_lost_total of (topic, partition) in `m`, -1 if absent.
double lost_of(const ces::metrics& m, const std::string& topic,
               int partition) {
  auto series = "crm_kafka_offsets_lost_total{partition=\""
                + std::to_string(partition) + "\",topic=\"" + topic + "\"} ";
  std::istringstream in{m.text()};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(series, 0) == 0)
      return std::stod(l.substr(series.size()));
  return -1;
}

} // namespace

TEST_CASE_METHOD(consumer_fixture,
                 "offsets the broker deleted are reported once and "
                 "consumption goes on",
                 "[gap]") {
  std::ostringstream lines;
  ces::log::redirect(&lines);
  const std::string leads = "apexflow.leads.created";
  log->gaps = {offset_gap{leads, 2, 100, 139}};
  start(40, settings(), &stats);
  sched.run(50);
  // Reported after the first poll: one line naming the range, and the
  // counter counts offsets.
  CHECK(lost_of(stats, leads, 2) == 40);
  auto text = lines.str();
  CHECK_THAT(text, Catch::Contains("consumer: offsets_lost topic="
                                   "apexflow.leads.created partition=2 "
                                   "first=100 last=139 count=40"));
  // Not a stall: the records after the gap keep flowing to the persister.
  for (int i = 0; i < 2 && !held().unanswered.empty(); ++i) {
    ack_oldest();
    sched.run(500);
  }
  CHECK(log->taken == 40);
  CHECK(held().received.size() >= 3);
  // A later gap on another partition adds up; the first is not counted
  // again.
  log->gaps = {offset_gap{leads, 0, 7, 7}};
  for (int i = 0; i < 10 && !held().unanswered.empty(); ++i) {
    ack_oldest();
    sched.run(500);
  }
  sched.run(500);
  CHECK(lost_of(stats, leads, 2) == 40);
  CHECK(lost_of(stats, leads, 0) == 1);
  ces::log::redirect(nullptr);
  CHECK(lines.str().find("first=100") == lines.str().rfind("first=100"));
}

TEST_CASE("gap tracker: a jump below the log start is lost, others are not",
          "[gap]") {
  gap_tracker t;
  int low_calls = 0;
  auto low = [&](int64_t v) {
    return [&low_calls, v] {
      ++low_calls;
      return v;
    };
  };
  const std::string tp = "apexflow.leads.created";
  // Nothing expected yet: the first record sets the expectation.
  CHECK_FALSE(t.read(tp, 0, 500, low(600)));
  // In sequence: the log start is not even looked at.
  CHECK_FALSE(t.read(tp, 0, 501, low(600)));
  CHECK(low_calls == 0);
  // The journal's stored offset at assignment: 100; the broker now starts
  // at 250 (retention), and the first record read is 250.
  // (Parenthesized: CAF's test DSL defines an `expect` macro.)
  (t.expect)(tp, 1, 100);
  auto g = t.read(tp, 1, 250, low(250));
  REQUIRE(g);
  CHECK(g->topic == tp);
  CHECK(g->partition == 1);
  CHECK(g->first == 100);
  CHECK(g->last == 249);
  CHECK(g->count() == 150);
  // Then in sequence again.
  CHECK_FALSE(t.read(tp, 1, 251, low(250)));
  // A jump within the log (transaction markers, compaction): not a loss.
  CHECK_FALSE(t.read(tp, 1, 260, low(250)));
  // Unknown log start (-1): not reported.
  CHECK_FALSE(t.read(tp, 1, 300, low(-1)));
  // Deleted up to 400, but the record read is 380 (the log start moved on
  // since): everything below the record is gone.
  g = t.read(tp, 1, 380, low(400));
  REQUIRE(g);
  CHECK(g->first == 301);
  CHECK(g->last == 379);
  // Partly deleted, partly markers: only the deleted part (below the log
  // start) is reported.
  g = t.read(tp, 1, 420, low(410));
  REQUIRE(g);
  CHECK(g->first == 381);
  CHECK(g->last == 409);
  // A record below the expectation (redelivered): no gap, follow it.
  CHECK_FALSE(t.read(tp, 1, 415, low(0)));
  CHECK_FALSE(t.read(tp, 1, 416, low(0)));
  // Revoked: forgotten; reassigned without a stored offset: nothing expected.
  t.forget(tp, 1);
  CHECK_FALSE(t.read(tp, 1, 9000, low(9000)));
  t.clear();
  CHECK_FALSE(t.read(tp, 1, 9999, low(9999)));
}
