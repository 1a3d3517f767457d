// End-to-end: bulk DLQ actions as jobs (POST /dlq/discard, POST /dlq/retry)
// on the real binary with PostgreSQL and the mock broker: poison events
// dead-lettered by ingestion, a dry run that counts and changes nothing, a
// discard job that discards exactly the rows it matched, a retry job in
// journal mode whose transform fixes rows without a tenant (journalled with
// their dlq_id), a scoped key that cannot act on another tenant's rows, and
// a cancel that stops a running DLQ job between two batches.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <future>
#include <thread>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string topic = "apexflow.leads.created";

ces::test::http_response call(world& w, const std::string& method,
                              const std::string& target,
                              const std::string& body = {},
                              const std::string& authorization = {}) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!authorization.empty())
    headers.emplace_back("Authorization", authorization);
  return ces::test::http_request(method, "127.0.0.1", w.http_port(), target,
                                 body, "application/json", 30s, headers);
}

json job(world& w, int64_t id) {
  auto res = call(w, "GET", "/jobs/" + std::to_string(id));
  REQUIRE(res.status == 200);
  return json::parse(res.body);
}

/// Creates a job with POST `path`; its id.
int64_t create_job(world& w, const std::string& path, const json& body,
                   int64_t matched, const std::string& authorization = {}) {
  auto res = call(w, "POST", path, body.dump(), authorization);
  INFO(res.body);
  REQUIRE(res.status == 202);
  auto j = json::parse(res.body);
  CHECK(j["status"] == "queued");
  CHECK(j["matched"] == matched);
  auto id = j["job_id"].get<int64_t>();
  CHECK(res.header("location") == "/jobs/" + std::to_string(id));
  return id;
}

bool finished(world& w, int64_t id, const std::string& status) {
  return eventually([&] { return job(w, id)["status"] == status; }, 60s);
}

std::vector<int64_t> sql_ids(const world& w, const std::string& sql) {
  std::vector<int64_t> out;
  for (auto& row : w.rows(sql))
    out.push_back(std::stoll(row.at(0)));
  return out;
}

std::string bearer_key(world& w, const std::string& name,
                       const std::string& role, const json& tenants) {
  json body{{"name", name}, {"role", role}, {"tenants", tenants}};
  auto r = call(w, "POST", "/keys", body.dump());
  INFO(r.body);
  REQUIRE(r.status == 201);
  return "Bearer " + json::parse(r.body)["key"].get<std::string>();
}

/// `n` pending DLQ rows of `tenant` (class db_rejected, valid JSON bytes).
void seed_rejected(const world& w, const std::string& tenant, int n) {
  w.count("WITH i AS (INSERT INTO event_dlq (topic, payload, tenant_id,"
          " error_class, error) SELECT '" + topic + "', convert_to("
          "'{\"tenant_id\":\"" + tenant + "\",\"n\":' || g || '}', 'UTF8'),"
          " '" + tenant + "', 'db_rejected', 'refused by a trigger'"
          " FROM generate_series(1, " + std::to_string(n) + ") AS g"
          " RETURNING 1) SELECT count(*) FROM i");
}

} // namespace

TEST_CASE("bulk discard: dry run, job, only the matched rows",
          "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "40", "--poison-every", "2"});
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal")
               + w.count("select count(*) from event_dlq")
             == 40;
    },
    30s));
  auto empty = w.count("select count(*) from event_dlq where error_class ="
                       " 'empty_value'");
  REQUIRE(empty > 0);
  REQUIRE(w.count("select count(*) from event_dlq where error_class <>"
                  " 'empty_value'")
          > 0);
  auto before = w.rows("select id, status, attempts, updated_at::text from"
                       " event_dlq order by id");

  // Dry run by error class: the right counts, nothing changed.
  auto plan = call(w, "POST", "/dlq/discard",
                   json{{"filter", {{"error_class", "empty_value"}}},
                        {"reason", "empty values are noise"},
                        {"dry_run", true}}
                     .dump());
  INFO(plan.body);
  REQUIRE(plan.status == 200);
  auto p = json::parse(plan.body);
  CHECK(p["dry_run"] == true);
  CHECK(p["matched"] == empty);
  CHECK(p["by_error_class"] == json{{"empty_value", empty}});
  CHECK(p["by_topic"] == json{{topic, empty}});
  auto first = sql_ids(w, "select id from event_dlq where error_class ="
                          " 'empty_value' order by id limit 10");
  CHECK(p["sample_ids"].get<std::vector<int64_t>>() == first);
  CHECK(w.rows("select id, status, attempts, updated_at::text from event_dlq"
               " order by id")
        == before);
  CHECK(w.count("select count(*) from jobs") == 0);

  // Refusals: no reason, a member of retry, an unknown member, a closed
  // status.
  for (auto body :
       {json{{"filter", json::object()}},
        json{{"filter", json::object()}, {"reason", "x"}, {"mode", "journal"}},
        json{{"filter", json::object()}, {"reason", "x"}, {"force", true}},
        json{{"filter", {{"status", "resolved"}}}, {"reason", "x"}}}) {
    auto r = call(w, "POST", "/dlq/discard", body.dump());
    INFO(body.dump() << " -> " << r.body);
    CHECK(r.status == 400);
  }
  auto many = call(w, "POST", "/dlq/discard",
                   json{{"filter", json::object()},
                        {"reason", "x"},
                        {"max_events", 1}}
                     .dump());
  CHECK(many.status == 400);
  CHECK(json::parse(many.body)["error"] == "too_many_events");
  CHECK(w.count("select count(*) from jobs") == 0);

  // The job.
  auto id = create_job(w, "/dlq/discard",
                       json{{"filter", {{"error_class", "empty_value"}}},
                            {"reason", "empty values are noise"}},
                       empty);
  REQUIRE(finished(w, id, "succeeded"));
  auto j = job(w, id);
  CHECK(j["kind"] == "dlq_discard");
  CHECK(j["done"] == empty);
  CHECK(j["failed"] == 0);
  CHECK(j["request"]["reason"] == "empty values are noise");
  CHECK(w.count("select count(*) from event_dlq where error_class ="
                " 'empty_value' and status = 'discarded' and discard_reason"
                " = 'empty values are noise'")
        == empty);
  // Others untouched.
  CHECK(w.count("select count(*) from event_dlq where error_class <>"
                " 'empty_value' and status <> 'pending'")
        == 0);
  // Listed with its kind; audited.
  auto list = call(w, "GET", "/jobs?kind=dlq_discard");
  REQUIRE(list.status == 200);
  REQUIRE(json::parse(list.body).size() == 1);
  CHECK(json::parse(list.body)[0]["id"] == id);
  CHECK(w.count("select count(*) from audit_log where action ="
                " 'dlq.discard.job' and target = 'job/"
                + std::to_string(id) + "'")
        == 1);
  // A second run matches nothing more: discarded rows are closed.
  auto again = call(w, "POST", "/dlq/discard",
                    json{{"filter", {{"error_class", "empty_value"}}},
                         {"reason", "x"},
                         {"dry_run", true}}
                      .dump());
  CHECK(json::parse(again.body)["matched"] == 0);
}

TEST_CASE("bulk retry in journal mode: a transform gives rows their tenant",
          "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "40", "--poison-every", "2"});
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal")
               + w.count("select count(*) from event_dlq")
             == 40;
    },
    30s));
  auto missing = w.count("select count(*) from event_dlq where error_class"
                         " = 'missing_tenant'");
  REQUIRE(missing > 0);
  auto ids = sql_ids(w, "select id from event_dlq where error_class ="
                        " 'missing_tenant' order by id");
  auto journal_before = w.count("select count(*) from event_journal");

  // The same rows without the fix stay invalid: a dry run first.
  json filter{{"error_class", "missing_tenant"}};
  auto patch = json::array(
    {{{"op", "add"}, {"path", "/tenant_id"}, {"value", "tenant-fixed"}}});
  auto plan = call(w, "POST", "/dlq/retry",
                   json{{"filter", filter}, {"transform", patch},
                        {"dry_run", true}}
                     .dump());
  REQUIRE(plan.status == 200);
  CHECK(json::parse(plan.body)["matched"] == missing);
  CHECK(json::parse(plan.body)["by_tenant"] == json{{"", missing}});
  CHECK(call(w, "POST", "/dlq/retry",
             json{{"filter", filter}, {"reason", "x"}}.dump())
          .status
        == 400);

  auto id = create_job(w, "/dlq/retry",
                       json{{"filter", filter}, {"transform", patch}},
                       missing);
  REQUIRE(finished(w, id, "succeeded"));
  auto j = job(w, id);
  INFO(j.dump());
  CHECK(j["kind"] == "dlq_retry");
  CHECK(j["done"] == missing);
  CHECK(j["failed"] == 0);
  // Journalled with their dlq_id and the fixed tenant; the DLQ rows are
  // resolved and point at their journal row.
  CHECK(w.count("select count(*) from event_journal") == journal_before
                                                             + missing);
  CHECK(sql_ids(w, "select dlq_id from event_journal where dlq_id is not"
                   " null and tenant_id = 'tenant-fixed' order by dlq_id")
        == ids);
  CHECK(w.count("select count(*) from event_dlq d join event_journal e on"
                " e.id = d.resolved_event_id and e.dlq_id = d.id where"
                " d.status = 'resolved' and d.error_class ="
                " 'missing_tenant'")
        == missing);
  // Nothing else was retried.
  CHECK(w.count("select count(*) from event_dlq where error_class <>"
                " 'missing_tenant' and status <> 'pending'")
        == 0);
  CHECK(w.count("select count(*) from audit_log where action ="
                " 'dlq.retry.job'")
        == 1);

  // Rows the transform cannot fix count as failed with the reason.
  auto invalid = w.count("select count(*) from event_dlq where error_class"
                         " = 'invalid_json' and status = 'pending'");
  REQUIRE(invalid > 0);
  auto bad = create_job(w, "/dlq/retry",
                        json{{"filter", {{"error_class", "invalid_json"}}}},
                        invalid);
  REQUIRE(finished(w, bad, "failed"));
  auto b = job(w, bad);
  CHECK(b["done"] == 0);
  CHECK(b["failed"] == invalid);
  CHECK(b["last_error"].get<std::string>().find("still_invalid")
        != std::string::npos);
  // Still pending, one attempt more each.
  CHECK(w.count("select count(*) from event_dlq where error_class ="
                " 'invalid_json' and status = 'pending' and attempts = 2")
        == invalid);
}

TEST_CASE("a scoped key acts on its tenants' rows only; cancel stops a job",
          "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink({"--jobs-batch-size=1"});
  seed_rejected(w, "tenant-01", 3);
  seed_rejected(w, "tenant-02", 2);
  auto op = bearer_key(w, "ops-t1", "operator", {"tenant-01"});

  // Naming another tenant is refused; the plan sees its tenant only.
  auto refused = call(w, "POST", "/dlq/discard",
                      json{{"filter", {{"tenant_id", "tenant-02"}}},
                           {"reason", "x"},
                           {"dry_run", true}}
                        .dump(),
                      op);
  CHECK(refused.status == 403);
  auto refused_job = call(w, "POST", "/dlq/retry",
                          json{{"filter", {{"tenant_id", "tenant-02"}}}}
                            .dump(),
                          op);
  CHECK(refused_job.status == 403);
  auto plan = call(w, "POST", "/dlq/discard",
                   json{{"filter", json::object()},
                        {"reason", "x"},
                        {"dry_run", true}}
                     .dump(),
                   op);
  REQUIRE(plan.status == 200);
  CHECK(json::parse(plan.body)["by_tenant"] == json{{"tenant-01", 3}});
  // Even by ids, another tenant's rows are not covered.
  auto all_ids = sql_ids(w, "select id from event_dlq order by id");
  auto id = create_job(w, "/dlq/discard",
                       json{{"filter", {{"ids", all_ids}}},
                            {"reason", "tenant-01 cleanup"}},
                       3, op);
  REQUIRE(finished(w, id, "succeeded"));
  CHECK(job(w, id)["done"] == 3);
  CHECK(w.count("select count(*) from event_dlq where tenant_id ="
                " 'tenant-01' and status = 'discarded'")
        == 3);
  CHECK(w.count("select count(*) from event_dlq where tenant_id ="
                " 'tenant-02' and status = 'pending'")
        == 2);
  // Jobs are seen by scopes that cover theirs: the admin sees the
  // operator's, the operator not the admin's.
  auto admin_job = create_job(w, "/dlq/discard",
                              json{{"filter",
                                    {{"ids", json::array({all_ids.back()})}}},
                                   {"reason", "admin"}},
                              1);
  REQUIRE(finished(w, admin_job, "succeeded"));
  CHECK(call(w, "GET", "/jobs/" + std::to_string(admin_job), {}, op).status
        == 404);
  CHECK(call(w, "GET", "/jobs/" + std::to_string(id)).status == 200);

  // Cancel: a running job (its first batch held by a row lock) stops
  // between two batches; the rest stays pending.
  seed_rejected(w, "tenant-03", 50);
  auto first = w.value("select min(id) from event_dlq where tenant_id ="
                       " 'tenant-03'");
  pqxx::connection c{w.db_url()};
  pqxx::work lock{c};
  lock.exec("select id from event_dlq where id = " + first + " for update");
  auto running = create_job(w, "/dlq/discard",
                            json{{"filter", {{"tenant_id", "tenant-03"}}},
                                 {"reason", "cancel me"}},
                            50);
  // The job's first batch waits for the lock.
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from pg_stat_activity where"
                     " wait_event_type = 'Lock' and datname ="
                     " current_database()")
             > 0;
    },
    30s));
  // (JOBS itself is busy with that batch: read the row.)
  CHECK(w.value("select status from jobs where id = "
                + std::to_string(running))
        == "running");
  auto cancel = std::async(std::launch::async, [&] {
    return call(w, "POST", "/jobs/" + std::to_string(running) + "/cancel");
  });
  // The cancel reaches JOBS while its batch waits (JOBS serves it between
  // two batches); a late one still stops the job before its 50 batches end.
  std::this_thread::sleep_for(500ms);
  lock.commit();
  auto answer = cancel.get();
  INFO(answer.body);
  REQUIRE(answer.status == 200);
  REQUIRE(finished(w, running, "cancelled"));
  auto r = job(w, running);
  CHECK(r["kind"] == "dlq_discard");
  CHECK(r["done"] < 50);
  CHECK(w.count("select count(*) from event_dlq where tenant_id ="
                " 'tenant-03' and status = 'pending'")
        == 50 - r["done"].get<int64_t>());
}

TEST_CASE("bulk retry in republish mode: ingestion sees the bytes again",
          "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", topic, "--count", "40", "--poison-every", "2"});
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal")
               + w.count("select count(*) from event_dlq")
             == 40;
    },
    30s));
  auto dlq = w.count("select count(*) from event_dlq");
  auto invalid = w.count("select count(*) from event_dlq where error_class"
                         " = 'invalid_json'");
  REQUIRE(invalid > 0);
  // republish takes no transform.
  CHECK(call(w, "POST", "/dlq/retry",
             json{{"filter", json::object()},
                  {"mode", "republish"},
                  {"transform", json::array()}}
               .dump())
          .status
        == 400);
  auto id = create_job(w, "/dlq/retry",
                       json{{"filter", {{"error_class", "invalid_json"}}},
                            {"mode", "republish"}},
                       invalid);
  REQUIRE(finished(w, id, "succeeded"));
  auto j = job(w, id);
  CHECK(j["done"] == invalid);
  CHECK(j["failed"] == 0);
  CHECK(w.count("select count(*) from event_dlq where error_class ="
                " 'invalid_json' and status = 'resolved' and resolution ="
                " 'republish'")
        == invalid);
  // Ingestion dead-letters the same bytes again, each with its x-dlq-id.
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == dlq + invalid; },
    30s));
  CHECK(w.count("select count(*) from event_dlq n join event_dlq o on"
                " n.headers @> jsonb_build_array(jsonb_build_object('key',"
                " 'x-dlq-id', 'value', o.id::text)) and n.payload = o.payload"
                " where o.resolution = 'republish' and n.status = 'pending'")
        == invalid);
}
