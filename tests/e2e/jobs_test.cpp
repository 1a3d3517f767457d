// End-to-end: bulk replay jobs on the real binary with PostgreSQL and the
// mock broker: dry runs and refusals, a 20 000-event job journalled back
// exactly once per event, a JSON Patch in the replayed payload, a cancel
// that stops a running job, and a job that survives kill -9 of its sink.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <thread>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string topic = "apexflow.leads.created";

ces::test::http_response call(world& w, const std::string& method,
                              const std::string& target,
                              const std::string& body = {}) {
  return ces::test::http_request(method, "127.0.0.1", w.http_port(), target,
                                 body, "application/json", 20s);
}

long long journal_rows(const world& w) {
  return w.count("select count(*) from event_journal");
}

/// Creates a job; its id.
int64_t create_job(world& w, const json& body, int64_t matched) {
  auto res = call(w, "POST", "/replays", body.dump());
  INFO(res.body);
  REQUIRE(res.status == 202);
  auto j = json::parse(res.body);
  CHECK(j["status"] == "queued");
  CHECK(j["matched"] == matched);
  auto id = j["job_id"].get<int64_t>();
  CHECK(res.header("location") == "/jobs/" + std::to_string(id));
  return id;
}

json job(world& w, int64_t id) {
  auto res = call(w, "GET", "/jobs/" + std::to_string(id));
  REQUIRE(res.status == 200);
  return json::parse(res.body);
}

bool finished(world& w, int64_t id, const std::string& status,
              std::chrono::milliseconds timeout) {
  return eventually([&] { return job(w, id)["status"] == status; }, timeout);
}

/// Journal rows published by job `id` (its x-replay-job header); `alias`:
/// the journal's alias in the query ("r." or "").
std::string of_job(int64_t id, const std::string& alias = "") {
  return alias + "replay_of IS NOT NULL AND " + alias
         + "headers @> '[{\"key\":\"x-replay-job\",\"value\":\""
         + std::to_string(id) + "\"}]'";
}

/// (replay_job, replay_of) pairs journalled more than once. The journal
/// fills replay_job and drops a job's resends at ingest (the "bytes" part
/// of issue 10); before that, replay_job is NULL and this finds nothing.
long long duplicate_pairs(const world& w) {
  return w.count("select count(*) from (select replay_job, replay_of from"
                 " event_journal where replay_job is not null group by 1, 2"
                 " having count(*) > 1) d");
}

} // namespace

TEST_CASE("dry runs, refusals and a JSON Patch in the replayed payload",
          "[e2e]") {
  world w{{topic}, 2};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "10"});
  REQUIRE(eventually([&] { return journal_rows(w) == 10; }, 30s));
  auto first = w.count("select min(id) from event_journal");

  auto patch = json::array(
    {{{"op", "add"}, {"path", "/replayed_by"}, {"value", "job"}}});
  auto plan = call(w, "POST", "/replays",
                   json{{"filter", {{"topic", topic}}},
                        {"transform", patch},
                        {"dry_run", true}}
                     .dump());
  INFO(plan.body);
  REQUIRE(plan.status == 200);
  auto p = json::parse(plan.body);
  CHECK(p["matched"] == 10);
  CHECK(p["by_topic"][topic] == 10);
  REQUIRE(p["samples"].size() == 5);
  CHECK(p["samples"][0]["event_id"] == first);
  CHECK(p["samples"][0]["payload"]["replayed_by"] == "job");
  // A dry run publishes nothing and creates no job.
  CHECK(w.count("select count(*) from jobs") == 0);

  auto failing = call(
    w, "POST", "/replays",
    json{{"filter", {{"topic", topic}}},
         {"transform",
          json::array({{{"op", "test"}, {"path", "/nope"}, {"value", 1}}})},
         {"dry_run", true}}
      .dump());
  CHECK(failing.status == 400);
  auto f = json::parse(failing.body);
  CHECK(f["error"] == "bad_transform");
  CHECK(f["message"].get<std::string>().find(std::to_string(first))
        != std::string::npos);
  CHECK(f["message"].get<std::string>().find("test") != std::string::npos);

  auto many = call(w, "POST", "/replays",
                   json{{"filter", json::object()}, {"max_events", 9}}.dump());
  CHECK(many.status == 400);
  CHECK(json::parse(many.body)["error"] == "too_many_events");
  CHECK(json::parse(many.body)["message"].get<std::string>().find("10")
        != std::string::npos);
  auto unknown = call(w, "POST", "/replays",
                      R"({"filter":{},"dry":true})");
  CHECK(unknown.status == 400);
  CHECK(json::parse(unknown.body)["error"] == "bad_request");
  CHECK(call(w, "GET", "/jobs/999").status == 404);
  CHECK(w.count("select count(*) from jobs") == 0);

  auto ids = json::array({first, first + 1});
  auto id = create_job(
    w, json{{"filter", {{"ids", ids}}}, {"transform", patch}}, 2);
  REQUIRE(finished(w, id, "succeeded", 60s));
  auto j = job(w, id);
  CHECK(j["done"] == 2);
  CHECK(j["failed"] == 0);
  CHECK(j["kind"] == "replay");
  CHECK(j["request"]["filter"]["ids"].size() == 2);
  CHECK_FALSE(j["finished_at"].is_null());
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal where "
                         + of_job(id)) == 2; },
    30s));
  CHECK(w.count("select count(*) from event_journal where " + of_job(id)
                + " and payload->>'replayed_by' = 'job'")
        == 2);
  // Each replay names its original's timestamp.
  CHECK(w.count("select count(*) from event_journal r join event_journal o"
                " on o.id = r.replay_of where " + of_job(id, "r.")
                + " and r.headers @> jsonb_build_array(jsonb_build_object("
                  "'key', 'x-original-timestamp', 'value', (floor(extract("
                  "epoch from o.kafka_timestamp) * 1000)::bigint)::text))")
        == 2);

  // Listing with a cursor.
  auto second =
    create_job(w, json{{"filter", {{"ids", json::array({first})}}}}, 1);
  auto page = call(w, "GET", "/jobs?limit=1");
  REQUIRE(page.status == 200);
  auto xs = json::parse(page.body);
  REQUIRE(xs.size() == 1);
  CHECK(xs[0]["id"] == second);
  auto link = page.header("link");
  auto open = link.find('<'), close = link.find('>');
  REQUIRE(close != std::string::npos);
  auto next = call(w, "GET", link.substr(open + 1, close - open - 1));
  REQUIRE(next.status == 200);
  auto ys = json::parse(next.body);
  REQUIRE(ys.size() == 1);
  CHECK(ys[0]["id"] == id);
  CHECK(finished(w, second, "succeeded", 60s));
}

TEST_CASE("a job of 20 000 events is journalled back exactly once",
          "[e2e]") {
  world w{{topic}, 4};
  auto sink = w.start_sink();
  const long long n = 20000;
  w.produce({"--topics", topic, "--count", std::to_string(n), "--quiet"});
  REQUIRE(eventually([&] { return journal_rows(w) == n; }, 120s));
  auto id = create_job(w, json{{"filter", {{"topic", topic},
                                           {"replays", "exclude"}}}},
                       n);
  REQUIRE(finished(w, id, "succeeded", 180s));
  auto j = job(w, id);
  CHECK(j["done"] == n);
  CHECK(j["failed"] == 0);
  REQUIRE(eventually([&] { return journal_rows(w) >= 2 * n; }, 120s));
  std::this_thread::sleep_for(1s); // a would-be extra row shows up
  CHECK(journal_rows(w) == 2 * n);
  CHECK(w.count("select count(*) from event_journal where " + of_job(id))
        == n);
  CHECK(w.count("select count(distinct replay_of) from event_journal where "
                + of_job(id))
        == n);
  CHECK(w.count("select count(*) from replays where job_id = "
                + std::to_string(id))
        == n);
  CHECK(duplicate_pairs(w) == 0);
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  CHECK(metric(m.body,
               "crm_job_events_total{kind=\"replay\",outcome=\"published\"}")
        == n);
}

TEST_CASE("cancel stops a running job", "[e2e]") {
  world w{{topic}, 2};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "3000", "--quiet"});
  REQUIRE(eventually([&] { return journal_rows(w) == 3000; }, 60s));
  // 100 events a second: 30 s unless cancelled.
  auto id = create_job(w, json{{"filter", json::object()},
                               {"rate_per_s", 100}},
                       3000);
  REQUIRE(eventually([&] { return job(w, id)["done"] > 0; }, 30s));
  auto res = call(w, "POST", "/jobs/" + std::to_string(id) + "/cancel");
  REQUIRE(res.status == 200);
  auto c = json::parse(res.body);
  // Stopped by the time the cancel is answered: no batch runs after it.
  CHECK(c["status"] == "cancelled");
  auto done = c["done"].get<int64_t>();
  CHECK(done < 3000);
  std::this_thread::sleep_for(1500ms);
  auto later = job(w, id);
  CHECK(later["status"] == "cancelled");
  CHECK(later["done"] == done);
  CHECK(w.count("select count(*) from replays where job_id = "
                + std::to_string(id))
        == done);
  // Cancelling again answers the job unchanged.
  auto again = call(w, "POST", "/jobs/" + std::to_string(id) + "/cancel");
  CHECK(again.status == 200);
  CHECK(json::parse(again.body)["done"] == done);
}

TEST_CASE("kill -9 mid-job, restart: the job completes", "[e2e]") {
  world w{{topic}, 4};
  auto sink = w.start_sink();
  const long long n = 5000;
  w.produce({"--topics", topic, "--count", std::to_string(n), "--quiet"});
  REQUIRE(eventually([&] { return journal_rows(w) == n; }, 60s));
  auto id = create_job(w, json{{"filter", {{"replays", "exclude"}}},
                               {"rate_per_s", 1000}},
                       n);
  REQUIRE(eventually([&] { return job(w, id)["done"] >= 1000; }, 60s));
  auto st = sink.kill9();
  CHECK(st.signaled);
  CHECK(w.value("select status from jobs where id = " + std::to_string(id))
        == "running");
  sink = w.start_sink();
  REQUIRE(finished(w, id, "succeeded", 120s));
  auto j = job(w, id);
  // Resumed at its cursor, not from the start: done counts each event once.
  CHECK(j["done"] == n);
  CHECK(j["failed"] == 0);
  REQUIRE(eventually(
    [&] {
      return w.count("select count(distinct replay_of) from event_journal"
                     " where " + of_job(id)) == n;
    },
    60s));
  // With ingest-side dedupe (issue 10 "bytes"): no (job, event) twice.
  CHECK(duplicate_pairs(w) == 0);
  CHECK(w.count("select count(*) from replays where job_id = "
                + std::to_string(id))
        == n);
}

TEST_CASE("jobs stay within the requester's tenants", "[e2e]") {
  world w{{topic}, 2};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "20", "--tenants", "2"});
  REQUIRE(eventually([&] { return journal_rows(w) == 20; }, 30s));
  auto key = [&](const std::string& name, const std::string& role) {
    auto r = call(w, "POST", "/keys",
                  json{{"name", name}, {"role", role},
                       {"tenants", json::array({"tenant-01"})}}
                    .dump());
    INFO(r.body);
    REQUIRE(r.status == 201);
    return "Bearer " + json::parse(r.body)["key"].get<std::string>();
  };
  auto op1 = key("op-t1", "operator");
  auto viewer1 = key("viewer-t1", "viewer");
  auto as = [&](const std::string& who, const std::string& method,
                const std::string& target, const std::string& body = {}) {
    return ces::test::http_request(method, "127.0.0.1", w.http_port(),
                                   target, body, "application/json", 20s,
                                   {{"Authorization", who}});
  };
  auto t1 = w.count("select count(*) from event_journal"
                    " where tenant_id = 'tenant-01'");
  REQUIRE(t1 > 0);
  REQUIRE(t1 < 20);
  auto dry = json{{"filter", json::object()}, {"dry_run", true}}.dump();
  auto plan = as(op1, "POST", "/replays", dry);
  REQUIRE(plan.status == 200);
  CHECK(json::parse(plan.body)["matched"] == t1);
  CHECK(json::parse(plan.body)["by_tenant"].size() == 1);
  auto other = as(op1, "POST", "/replays",
                  json{{"filter", {{"tenant_id", "tenant-02"}}},
                       {"dry_run", true}}
                    .dump());
  CHECK(other.status == 403);
  CHECK(as(viewer1, "POST", "/replays", dry).status == 403);

  auto mine = as(op1, "POST", "/replays",
                 json{{"filter", json::object()}}.dump());
  REQUIRE(mine.status == 202);
  auto mine_id = json::parse(mine.body)["job_id"].get<int64_t>();
  CHECK(json::parse(mine.body)["matched"] == t1);
  auto all_id = create_job(w, json{{"filter", {{"replays", "exclude"}}}}, 20);
  auto mine_path = "/jobs/" + std::to_string(mine_id);
  auto all_path = "/jobs/" + std::to_string(all_id);
  CHECK(as(viewer1, "GET", mine_path).status == 200);
  CHECK(as(viewer1, "GET", all_path).status == 404);
  CHECK(as(op1, "POST", all_path + "/cancel").status == 404);
  CHECK(json::parse(as(viewer1, "GET", "/jobs").body).size() == 1);
  CHECK(json::parse(call(w, "GET", "/jobs").body).size() == 2);
  CHECK(call(w, "GET", mine_path).status == 200);
}
