#include "actors/consumer.hpp"
#include "fakes.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace ces;
using namespace ces::test;

namespace {

struct consumer_fixture : ces::test::fixture {
  std::shared_ptr<source_log> log = std::make_shared<source_log>();
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

  void start(size_t available, consumer_settings cs) {
    auto lg = log;
    source_factory make = [lg, available] {
      return std::unique_ptr<record_source>(new scripted_source(lg, available));
    };
    cons = sys.spawn(consumer, make, persister, cs, nullptr);
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
    self->send(persister, atom::retry_v);
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
  // paused its partitions and took nothing more from Kafka.
  CHECK(held().received.size() == 2);
  CHECK(held().received[0].records.size() == 10);
  CHECK(log->paused);
  CHECK(log->taken == 20);
  CHECK(cstate().in_flight == 2);
  // It stays that way however long the persister is silent.
  advance_time(10s);
  sched.run(500);
  CHECK(held().received.size() == 2);
  CHECK(log->taken == 20);
  CHECK(log->next_while_paused == 0);
  // One acknowledgement frees one slot: resume, one more batch, pause again.
  ack_oldest();
  sched.run(500);
  CHECK(log->resumes == 1);
  CHECK(held().received.size() == 3);
  CHECK(log->taken == 30);
  CHECK(log->paused);
  // The acknowledged batch's offsets were committed to Kafka.
  REQUIRE(log->commits.size() == 1);
  CHECK(log->commits[0].size() == 4);
  for (auto& o : log->commits[0])
    CHECK(o.next_offset == (o.partition < 2 ? 3 : 2)); // offsets 0..9
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
