#include "actors/persister.hpp"
#include "api/metrics.hpp"
#include "fakes.hpp"
#include "fixture.hpp"
#include "storage/journal.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace ces;
using namespace ces::test;

namespace {

/// Fails with an infrastructure error `failures` times, then journals.
struct script {
  int infra_failures = 0;
  bool explode = false; // throw a non-infrastructure error
  std::vector<uint64_t> written; // first offset of every written batch
  int connects = 0;
  uint64_t duplicates = 0; // replay resends reported per batch
};

class scripted_writer : public batch_writer {
public:
  explicit scripted_writer(std::shared_ptr<script> s) : s_(std::move(s)) {
  }
  persist_outcome write(const batch& job) override {
    auto& b = job.records;
    if (s_->explode)
      throw std::logic_error("bug");
    if (s_->infra_failures > 0) {
      --s_->infra_failures;
      throw storage::infra_error("connection lost");
    }
    s_->written.push_back(static_cast<uint64_t>(b.front().rec.offset));
    batch tmp;
    tmp.records = b;
    auto out = all_journalled(tmp);
    if (s_->duplicates > 0)
      out.replay_duplicates.push_back(
        topic_count{b.front().rec.topic, "", s_->duplicates});
    return out;
  }

private:
  std::shared_ptr<script> s_;
};

batch make_batch(int64_t first_offset) {
  batch b;
  checked_record r;
  r.rec.topic = "apexflow.leads.created";
  r.rec.offset = first_offset;
  r.tenant_id = "t";
  b.records.push_back(r);
  return b;
}

struct persister_fixture : ces::test::fixture {
  std::shared_ptr<script> s = std::make_shared<script>();
  persister_actor p;
  ces::metrics stats;

  persister_fixture() {
    p = spawn_persister(nullptr);
  }

  persister_actor spawn_persister(ces::metrics* m) {
    auto sc = s;
    writer_factory make = [sc] {
      ++sc->connects;
      return std::unique_ptr<batch_writer>(new scripted_writer(sc));
    };
    persister_settings ps;
    ps.retry_initial = 100ms;
    ps.retry_max = 300ms;
    auto out = sys.spawn(persister, make, ps, m);
    sched.run();
    return out;
  }

  /// Number of persist replies waiting in the test's mailbox (consumed).
  int replies() {
    int n = 0;
    for (bool more = true; more;)
      self->receive([&](persist_outcome&) { ++n; },
                    caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return n;
  }
};

} // namespace

TEST_CASE_METHOD(persister_fixture,
                 "infrastructure errors are retried and nothing is acked") {
  s->infra_failures = 3;
  self->send(p, atom::persist_v, make_batch(0));
  self->send(p, atom::persist_v, make_batch(100));
  sched.run();
  CHECK(replies() == 0);
  CHECK(s->written.empty());
  // Retries back off 100 ms, 200 ms, then the cap of 300 ms.
  advance_time(100ms);
  sched.run();
  CHECK(s->written.empty());
  advance_time(200ms);
  sched.run();
  CHECK(s->written.empty());
  advance_time(299ms);
  sched.run();
  CHECK(s->written.empty());
  CHECK(replies() == 0);
  advance_time(1ms);
  sched.run();
  // Both batches written in order once the database is back; every failure
  // dropped the connection and the writer reconnected.
  CHECK(s->written == std::vector<uint64_t>{0, 100});
  CHECK(replies() == 2);
  CHECK(s->connects == 4);
}

TEST_CASE_METHOD(persister_fixture,
                 "an unexpected error crashes the persister") {
  s->explode = true;
  self->monitor(p);
  self->send(p, atom::persist_v, make_batch(0));
  sched.run();
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
  CHECK(reason == caf::sec::runtime_error);
}

TEST_CASE_METHOD(persister_fixture,
                 "replay resends the writer skipped are counted by topic") {
  auto q = spawn_persister(&stats);
  s->duplicates = 2;
  self->send(q, atom::persist_v, make_batch(0));
  self->send(q, atom::persist_v, make_batch(1));
  sched.run();
  std::vector<uint64_t> reported;
  for (bool more = true; more;)
    self->receive(
      [&](persist_outcome& out) {
        for (auto& c : out.replay_duplicates)
          reported.push_back(c.count);
      },
      caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  CHECK(reported == std::vector<uint64_t>{2, 2});
  CHECK_THAT(stats.text(),
             Catch::Contains("crm_replay_duplicates_total{topic=\""
                             "apexflow.leads.created\"} 4"));
}
