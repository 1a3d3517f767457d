// storage::job_store's bulk DLQ kinds (dlq_retry, dlq_discard) against a
// throwaway PostgreSQL: the plan counts what SQL counts (open entries only,
// by error class, topic and tenant, first 10 ids), the requester's scope
// (entries without a tenant only with unknown_tenant), ids; create (kind,
// upto_id, max_events guard, audit row, scope and role kept for the run);
// next_dlq_batch (after the cursor, up to upto_id, still open, by id).
#include "storage/jobs.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace ces;
using namespace ces::test;
using storage::job_store;

namespace {

/// 120 DLQ rows (id = g): tenants acme/globex round-robin, every sixth
/// without one; error classes invalid_json/missing_tenant/too_large by
/// g % 3; topics t.a/t.b by g % 2; status pending, except every tenth
/// failed and every seventh (not tenth) resolved.
void seed_dlq(const std::string& url) {
  exec(url,
       "INSERT INTO event_dlq (topic, partition, \"offset\", payload,"
       " tenant_id, error_class, error, status)"
       " SELECT CASE WHEN g % 2 = 0 THEN 't.a' ELSE 't.b' END, 0, g,"
       " convert_to('{bad ' || g, 'UTF8'),"
       " CASE WHEN g % 6 = 0 THEN NULL"
       "  WHEN g % 2 = 0 THEN 'acme' ELSE 'globex' END,"
       " (ARRAY['invalid_json','missing_tenant','too_large'])[1 + g % 3],"
       " 'error ' || g,"
       " CASE WHEN g % 10 = 0 THEN 'failed'"
       "  WHEN g % 7 = 0 THEN 'resolved' ELSE 'pending' END"
       " FROM generate_series(1, 120) AS g");
}

requester admin() {
  requester r;
  r.principal = "ops";
  r.role = "admin";
  r.scope.all = true;
  r.scope.unknown_tenant = true;
  r.request_id = "req-dlq";
  return r;
}

requester acme_operator() {
  requester r;
  r.principal = "acme-ops";
  r.role = "operator";
  r.scope.tenants = {"acme"};
  return r;
}

dlq_bulk_request bulk(const std::string& action, dlq_filter f,
                      std::vector<int64_t> ids = {}, int64_t max = 100000) {
  dlq_bulk_request r;
  r.action = action;
  if (f.status.empty())
    f.status = "pending";
  r.filter = std::move(f);
  r.ids = std::move(ids);
  r.reason = "junk";
  r.max_events = max;
  r.body = R"({"filter":{},"reason":"junk"})";
  return r;
}

audit_entry audit_of(const requester& who, const std::string& action) {
  audit_entry a;
  a.who = who;
  a.action = action;
  a.outcome = "ok";
  a.status = 202;
  return a;
}

std::vector<int64_t> ids_of(const std::string& url, const std::string& sql) {
  std::vector<int64_t> out;
  auto text = scalar(url, "SELECT coalesce(string_agg(id::text, ',' ORDER BY"
                          " id), '') FROM (" + sql + ") AS q");
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find(',', pos);
    if (end == std::string::npos)
      end = text.size();
    out.push_back(std::stoll(text.substr(pos, end - pos)));
    pos = end + 1;
  }
  return out;
}

} // namespace

TEST_CASE("a DLQ plan counts exactly what SQL counts, within the scope",
          "[dlq_jobs]") {
  auto url = migrated_db();
  seed_dlq(url);
  job_store s{url, "a"};
  struct probe {
    dlq_filter f;
    std::vector<int64_t> ids;
    requester who;
    std::string where;
  };
  std::vector<probe> probes;
  probes.push_back({{}, {}, admin(), "status = 'pending'"});
  {
    dlq_filter f;
    f.error_class = "invalid_json";
    probes.push_back({f, {}, admin(),
                      "status = 'pending' AND error_class = 'invalid_json'"});
  }
  {
    dlq_filter f;
    f.status = "failed";
    probes.push_back({f, {}, admin(), "status = 'failed'"});
  }
  // A tenant operator: its tenant only, never rows without a tenant.
  probes.push_back({{}, {}, acme_operator(),
                    "status = 'pending' AND tenant_id = 'acme'"});
  // An admin whose key is limited to acme still sees rows without a tenant.
  {
    auto who = acme_operator();
    who.scope.unknown_tenant = true;
    probes.push_back({{}, {}, who,
                      "status = 'pending' AND (tenant_id = 'acme' OR"
                      " tenant_id IS NULL)"});
  }
  // An all-tenant scope without unknown_tenant: no rows without a tenant.
  {
    auto who = admin();
    who.scope.unknown_tenant = false;
    probes.push_back({{}, {}, who,
                      "status = 'pending' AND tenant_id IS NOT NULL"});
  }
  // ids: closed ones (7: resolved) never count.
  probes.push_back({{}, {1, 2, 3, 7, 12, 500}, admin(),
                    "status = 'pending' AND id IN (1, 2, 3, 7, 12, 500)"});
  for (auto& p : probes) {
    INFO(p.where);
    auto plan = s.plan_dlq(bulk("discard", p.f, p.ids), p.who.scope);
    auto expected = ids_of(url, "SELECT id FROM event_dlq WHERE " + p.where);
    CHECK(plan.matched == static_cast<int64_t>(expected.size()));
    auto first = expected;
    if (first.size() > 10)
      first.resize(10);
    CHECK(plan.sample_ids == first);
    uint64_t sum = 0;
    for (auto& c : plan.by_error_class) {
      CHECK(c.count
            == static_cast<uint64_t>(
              count(url, "SELECT count(*) FROM event_dlq WHERE " + p.where
                           + " AND error_class = '" + c.topic + "'")));
      sum += c.count;
    }
    CHECK(sum == expected.size());
    sum = 0;
    for (auto& c : plan.by_topic)
      sum += c.count;
    CHECK(sum == expected.size());
    sum = 0;
    for (auto& c : plan.by_tenant) {
      auto cond = c.topic.empty() ? std::string{"tenant_id IS NULL"}
                                  : "tenant_id = '" + c.topic + "'";
      CHECK(c.count
            == static_cast<uint64_t>(count(
              url, "SELECT count(*) FROM event_dlq WHERE " + p.where
                     + " AND " + cond)));
      sum += c.count;
    }
    CHECK(sum == expected.size());
  }
  // Nothing changed.
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE status = 'pending'")
        == 92); // 120, less 12 failed (10k) and 16 resolved (7k, not 70)
}

TEST_CASE("create_dlq fixes the set, guards max_events, audits", "[dlq_jobs]") {
  auto url = migrated_db();
  seed_dlq(url);
  job_store s{url, "a"};
  dlq_filter f;
  f.error_class = "too_large";
  auto pending = count(url, "SELECT count(*) FROM event_dlq WHERE"
                            " status = 'pending' AND error_class = 'too_large'");
  REQUIRE(pending > 5);
  CHECK_THROWS_AS(s.create_dlq(bulk("discard", f, {}, pending - 1), admin(),
                               audit_of(admin(), "dlq.discard.job")),
                  storage::too_many_events);
  CHECK(count(url, "SELECT count(*) FROM jobs") == 0);
  auto job = s.create_dlq(bulk("discard", f, {}, pending), admin(),
                          audit_of(admin(), "dlq.discard.job"));
  CHECK(job.kind == "dlq_discard");
  CHECK(job.status == "queued");
  CHECK(job.matched == pending);
  CHECK(job.requested_by == "ops");
  CHECK(job.request_id == "req-dlq");
  CHECK(scalar(url, "SELECT upto_id FROM jobs WHERE id = "
                      + std::to_string(job.id))
        == "120");
  CHECK(scalar(url, "SELECT action || ' ' || target || ' ' || counts::text"
                    " FROM audit_log")
        == "dlq.discard.job job/" + std::to_string(job.id)
             + " {\"entries\": " + std::to_string(pending) + "}");
  auto retry = s.create_dlq(bulk("retry", {}), acme_operator(),
                            audit_of(acme_operator(), "dlq.retry.job"));
  CHECK(retry.kind == "dlq_retry");
  CHECK(retry.matched
        == count(url, "SELECT count(*) FROM event_dlq WHERE status ="
                      " 'pending' AND tenant_id = 'acme'"));
  // The job keeps its creator's whole scope and role for the run.
  auto c1 = s.claim();
  auto c2 = job_store{url, "b"}.claim(); // s would take its own job again
  REQUIRE(c1);
  REQUIRE(c2);
  CHECK(c1->row.id == job.id);
  CHECK(c1->scope.all);
  CHECK(c1->scope.unknown_tenant);
  CHECK(c1->role == "admin");
  CHECK(c1->upto_id == 120);
  CHECK(c2->row.id == retry.id);
  CHECK_FALSE(c2->scope.all);
  CHECK(c2->scope.tenants == std::vector<std::string>{"acme"});
  CHECK_FALSE(c2->scope.unknown_tenant);
  CHECK(c2->role == "operator");
}

TEST_CASE("next_dlq_batch: after the cursor, up to upto_id, open, in scope",
          "[dlq_jobs]") {
  auto url = migrated_db();
  seed_dlq(url);
  job_store s{url, "a"};
  auto req = bulk("discard", {});
  auto job = s.create_dlq(req, acme_operator(),
                          audit_of(acme_operator(), "dlq.discard.job"));
  auto c = s.claim();
  REQUIRE(c);
  REQUIRE(c->row.id == job.id);
  // Entries dead-lettered after the job was created are not covered.
  exec(url, "INSERT INTO event_dlq (topic, payload, tenant_id, error_class,"
            " error) VALUES ('t.a', 'x', 'acme', 'invalid_json', 'late')");
  // An entry closed by someone else meanwhile is skipped.
  exec(url, "UPDATE event_dlq SET status = 'discarded' WHERE id = 4");
  auto expected = ids_of(url, "SELECT id FROM event_dlq WHERE status ="
                              " 'pending' AND tenant_id = 'acme' AND"
                              " id <= 120");
  REQUIRE(expected.size() > 20);
  CHECK(std::find(expected.begin(), expected.end(), 4) == expected.end());
  std::vector<int64_t> seen;
  for (;;) {
    auto batch = s.next_dlq_batch(*c, req, 7);
    if (batch.empty())
      break;
    CHECK(batch.size() <= 7);
    seen.insert(seen.end(), batch.begin(), batch.end());
    c->cursor_id = batch.back();
  }
  CHECK(seen == expected);
  // ids restrict the batch too.
  c->cursor_id = 0;
  auto only = bulk("discard", {}, {2, 4, 6, 8, 121});
  CHECK(s.next_dlq_batch(*c, only, 100) == std::vector<int64_t>{2, 8});
}
