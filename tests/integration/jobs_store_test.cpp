// storage::job_store against a throwaway PostgreSQL: dry-run counts equal
// the SQL count of seeded rows, create (guard, audit row, fixed set),
// visibility by scope, claim / batches / replays rows / progress / cancel /
// finish, and the resume of a running job whose owner stopped heartbeating.
#include "storage/jobs.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

using namespace ces;
using namespace ces::test;
using storage::job_store;

namespace {

/// 300 rows: tenants acme/globex/initech round-robin, topics t.a (even ids)
/// and t.b, received one second apart from 2024-05-01T00:00:00Z; the raw
/// bytes of every tenth row kept in payload_raw. The journal's partitions
/// for those days are created first.
void seed(const std::string& url, int first = 0, int n = 300) {
  // The journal is partitioned by received_at (sql/0008): partitions for
  // the seeded days first.
  exec(url,
       "SELECT ces_journal_ensure_partitions('2024-05-01T00:00:00Z',"
       " '2024-05-01T00:00:00Z'::timestamptz + " + std::to_string(first + n)
         + " * interval '1 s', 'day');"
       "INSERT INTO event_journal (tenant_id, topic, partition, \"offset\","
       " key, headers, payload, payload_raw, kafka_timestamp, received_at)"
       " SELECT (ARRAY['acme','globex','initech'])[1 + i % 3],"
       " CASE WHEN i % 2 = 0 THEN 't.a' ELSE 't.b' END, i % 4, i,"
       " convert_to('k' || i, 'UTF8'), '[{\"key\":\"h\",\"value\":\"v\"}]',"
       " jsonb_build_object('seq', i, 'tenant_id', 'x'),"
       " CASE WHEN i % 10 = 0 THEN '{\"seq\": ' || i || ', \"raw\": 1}' END,"
       " timestamptz '2024-05-01T00:00:00Z' + i * interval '1 ms',"
       " timestamptz '2024-05-01T00:00:00Z' + i * interval '1 s'"
       " FROM generate_series(" + std::to_string(first) + ", "
         + std::to_string(first + n - 1) + ") AS i");
}

requester admin() {
  requester r;
  r.principal = "ops";
  r.role = "admin";
  r.scope.all = true;
  r.request_id = "req-1";
  return r;
}

requester tenant_operator(std::vector<std::string> tenants) {
  requester r;
  r.principal = "acme-ops";
  r.role = "operator";
  r.scope.tenants = std::move(tenants);
  return r;
}

audit_entry audit_of(const requester& who) {
  audit_entry a;
  a.who = who;
  a.action = "replay.job";
  a.outcome = "ok";
  return a;
}

replay_request request(event_filter f, int64_t max = 100000) {
  replay_request r;
  r.filter = std::move(f);
  r.max_events = max;
  r.body = R"({"filter":{}})";
  return r;
}

} // namespace

TEST_CASE("a plan counts exactly what SQL counts", "[jobs]") {
  auto url = migrated_db();
  seed(url);
  job_store s{url, "a"};
  struct probe {
    event_filter f;
    tenant_scope scope;
    std::string where;
  };
  std::vector<probe> probes;
  {
    probe p;
    p.scope.all = true;
    p.where = "true";
    probes.push_back(p);
    p.f.topic = "t.a";
    p.where = "topic = 't.a'";
    probes.push_back(p);
    p.f.from = "2024-05-01T00:01:00Z";
    p.f.to = "2024-05-01T00:03:00+00:00";
    p.where += " AND received_at >= '2024-05-01T00:01:00Z'"
               " AND received_at < '2024-05-01T00:03:00Z'";
    probes.push_back(p);
    probe q;
    q.scope.tenants = {"acme", "initech"};
    q.where = "tenant_id IN ('acme', 'initech')";
    probes.push_back(q);
    q.f.tenant_id = "acme";
    q.f.ids = {3, 4, 5, 6, 7, 8, 9, 10};
    q.where = "tenant_id = 'acme' AND id BETWEEN 3 AND 10";
    probes.push_back(q);
  }
  for (auto& p : probes) {
    CAPTURE(p.where);
    auto plan = s.plan(p.f, p.scope);
    auto expected = count(url, "SELECT count(*) FROM event_journal WHERE "
                                 + p.where);
    CHECK(plan.matched == expected);
    uint64_t by_topic = 0, by_tenant = 0;
    for (auto& c : plan.by_topic)
      by_topic += c.count;
    for (auto& c : plan.by_tenant)
      by_tenant += c.count;
    CHECK(by_topic == static_cast<uint64_t>(expected));
    CHECK(by_tenant == static_cast<uint64_t>(expected));
    CHECK(plan.samples.size() == std::min<size_t>(5, expected));
    CHECK(plan.first_received_at
          == scalar(url, "SELECT to_char(min(received_at) AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM"
                         " event_journal WHERE " + p.where));
  }
  // t.a and every tenant in the first plan.
  auto all = s.plan({}, probes[0].scope);
  CHECK(find_count(all.by_topic, "t.a") == 150);
  CHECK(find_count(all.by_tenant, "globex") == 100);
  // Samples are the first events by id; payload_raw wins over jsonb.
  REQUIRE(all.sample_ids.size() == 5);
  CHECK(all.sample_ids[0] == 1);
  CHECK(all.samples[0] == R"({"seq": 0, "raw": 1})");
  CHECK(all.samples[1] == R"({"seq": 1, "tenant_id": "x"})");
}

TEST_CASE("create fixes the set, guards max_events, audits", "[jobs]") {
  auto url = migrated_db();
  seed(url);
  job_store s{url, "a"};
  event_filter f;
  f.topic = "t.b";
  REQUIRE_THROWS_AS(s.create("replay", request(f, 149), admin(),
                             audit_of(admin())),
                    storage::too_many_events);
  try {
    s.create("replay", request(f, 149), admin(), audit_of(admin()));
  } catch (const storage::too_many_events& e) {
    CHECK(e.matched == 150);
    CHECK(std::string{e.what()}.find("150") != std::string::npos);
  }
  CHECK(count(url, "SELECT count(*) FROM jobs") == 0);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 0);

  auto job = s.create("replay", request(f, 150), admin(), audit_of(admin()));
  CHECK(job.status == "queued");
  CHECK(job.matched == 150);
  CHECK(job.requested_by == "ops");
  CHECK(job.request_id == "req-1");
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE target = 'job/"
                     + std::to_string(job.id)
                     + "' AND action = 'replay.job'"
                       " AND counts = '{\"events\":150}'")
        == 1);
  CHECK(count(url, "SELECT upto_id FROM jobs") == 300);
  // Rows journalled later are not part of the job.
  seed(url, 300, 10);
  auto claimed = s.claim();
  REQUIRE(claimed);
  auto batch = s.next_batch(*claimed, f, 1000);
  CHECK(batch.size() == 150);
  CHECK(batch.back().id <= 300);
}

TEST_CASE("a job is seen by scopes that cover its scope", "[jobs]") {
  auto url = migrated_db();
  seed(url);
  job_store s{url, "a"};
  auto acme = tenant_operator({"acme"});
  auto both = tenant_operator({"acme", "globex"});
  auto mine = s.create("replay", request({}), acme, audit_of(acme));
  CHECK(mine.matched == 100);
  auto all = s.create("replay", request({}), admin(), audit_of(admin()));
  CHECK(all.matched == 300);
  CHECK(s.get(mine.id, acme.scope));
  CHECK(s.get(mine.id, both.scope));
  CHECK(s.get(mine.id, admin().scope));
  CHECK_FALSE(s.get(all.id, acme.scope));
  CHECK_FALSE(s.get(mine.id, tenant_operator({"globex"}).scope));
  CHECK(s.list({}, 10, 0, acme.scope).size() == 1);
  auto page = s.list({}, 1, 0, admin().scope);
  REQUIRE(page.size() == 1);
  CHECK(page[0].id == all.id);
  auto next = s.list({}, 1, page[0].id, admin().scope);
  REQUIRE(next.size() == 1);
  CHECK(next[0].id == mine.id);
  job_filter running;
  running.status = "running";
  CHECK(s.list(running, 10, 0, admin().scope).empty());
  // A cursor beyond 32 bits (found by the API fuzzer: PostgreSQL typed it
  // integer and refused it, GET /jobs answered 503) pages from the top.
  auto big = s.list({}, 10, int64_t{5563303768261610804}, admin().scope);
  CHECK(big.size() == 2);
  CHECK_FALSE(s.cancel(all.id, acme.scope, audit_of(acme)));
  CHECK(count(url, "SELECT cancel_requested::int FROM jobs WHERE id = "
                     + std::to_string(all.id))
        == 0);
}

TEST_CASE("claim, batches, replays rows, progress, cancel, finish",
          "[jobs]") {
  auto url = migrated_db();
  seed(url);
  job_store a{url, "host:1"};
  job_store b{url, "host:2"};
  event_filter f;
  f.tenant_id = "acme";
  auto job = a.create("replay", request(f), admin(), audit_of(admin()));
  auto queued = a.create("replay", request(f), admin(), audit_of(admin()));

  auto c = a.claim();
  REQUIRE(c);
  CHECK(c->row.id == job.id);
  CHECK(c->row.status == "running");
  CHECK_FALSE(c->row.started_at.empty());
  CHECK(c->scope.all);
  // The other owner takes the next queued job, never a fresh running one.
  auto other = b.claim();
  REQUIRE(other);
  CHECK(other->row.id == queued.id);
  CHECK_FALSE(job_store(url, "host:3").claim());

  auto first = a.next_batch(*c, f, 40);
  REQUIRE(first.size() == 40);
  for (size_t i = 1; i < first.size(); ++i)
    CHECK(first[i].id > first[i - 1].id);
  CHECK(first[0].tenant_id == "acme");
  CHECK(first[0].has_key);
  REQUIRE(first[0].headers.size() == 1);
  CHECK(first[0].kafka_timestamp_ms >= 1714521600000);
  a.record_replays(c->row, first, "");
  a.record_replays(c->row, first, ""); // a resend: nothing more
  CHECK(count(url, "SELECT count(*) FROM replays WHERE job_id = "
                     + std::to_string(job.id))
        == 40);
  auto e0 = std::to_string(first[0].id);
  CHECK(scalar(url, "SELECT replay_id FROM replays WHERE event_id = " + e0)
        == "j" + std::to_string(job.id) + "-e" + e0);
  CHECK(a.commit_progress(job.id, first.back().id, 39, 1, "event x: boom")
        == storage::progress_outcome::ok);
  c->cursor_id = first.back().id;
  auto second = a.next_batch(*c, f, 1000);
  CHECK(second.size() == 60);
  CHECK(second.front().id > first.back().id);
  // Not ours: refused.
  CHECK(b.commit_progress(job.id, 1, 1, 0, "")
        == storage::progress_outcome::lost);

  // A cancel of a running job is seen at the next progress.
  auto cancelled = b.cancel(job.id, admin().scope, audit_of(admin()));
  REQUIRE(cancelled);
  CHECK(cancelled->status == "running");
  CHECK(cancelled->cancel_requested);
  CHECK(a.cancel_requested(job.id));
  CHECK(a.commit_progress(job.id, second.back().id, 60, 0, "")
        == storage::progress_outcome::cancelled);
  auto done = a.finish(job.id, "cancelled", "");
  REQUIRE(done);
  CHECK(done->status == "cancelled");
  CHECK(done->done == 99);
  CHECK(done->failed == 1);
  CHECK(done->last_error == "event x: boom");
  CHECK_FALSE(done->finished_at.empty());
  CHECK_FALSE(a.finish(job.id, "succeeded", "")); // finished already
  // Cancelling a finished job changes nothing.
  auto again = a.cancel(job.id, admin().scope, audit_of(admin()));
  REQUIRE(again);
  CHECK(again->status == "cancelled");

  // A queued job is cancelled at once and never claimed.
  auto third = a.create("replay", request(f), admin(), audit_of(admin()));
  auto q = a.cancel(third.id, admin().scope, audit_of(admin()));
  REQUIRE(q);
  CHECK(q->status == "cancelled");
  CHECK_FALSE(a.claim());
  // One audit row per cancel, with what the job was before.
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE"
                   " parameters ? 'status_before'")
        == 3);
  CHECK(count(url, "SELECT count(*) FROM audit_log WHERE parameters @>"
                   " '{\"status_before\":\"running\"}' AND target = 'job/"
                     + std::to_string(job.id) + "'")
        == 1);
}

TEST_CASE("a running job whose owner went away resumes at its cursor",
          "[jobs]") {
  auto url = migrated_db();
  seed(url);
  storage::job_store_options lease;
  lease.lease = std::chrono::milliseconds{10000};
  job_store dead{url, "host:1", lease};
  job_store alive{url, "host:2", lease};
  auto job = dead.create("replay", request({}), admin(), audit_of(admin()));
  auto c = dead.claim();
  REQUIRE(c);
  auto batch = dead.next_batch(*c, {}, 100);
  REQUIRE(dead.commit_progress(job.id, batch.back().id, 100, 0, "")
          == storage::progress_outcome::ok);
  // Its heartbeat is fresh: nobody else takes it.
  CHECK_FALSE(alive.claim());
  // The owner was killed long ago.
  exec(url, "UPDATE jobs SET heartbeat_at = now() - interval '1 minute'");
  auto resumed = alive.claim();
  REQUIRE(resumed);
  CHECK(resumed->row.id == job.id);
  CHECK(resumed->cursor_id == batch.back().id);
  CHECK(resumed->row.done == 100);
  CHECK(alive.next_batch(*resumed, {}, 1000).size() == 200);
  // The old owner's late progress is refused.
  CHECK(dead.commit_progress(job.id, 300, 200, 0, "")
        == storage::progress_outcome::lost);
  // The same owner (an instance restarted with the same name) takes its own
  // running job back at once, fresh heartbeat or not; others do not.
  CHECK_FALSE(job_store(url, "host:3", lease).claim());
  job_store restarted{url, "host:2", lease};
  auto back = restarted.claim();
  REQUIRE(back);
  CHECK(back->row.id == job.id);
  CHECK(back->cursor_id == batch.back().id);
}
