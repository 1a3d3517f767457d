// End-to-end: fixing and redriving single dead letters on the real binary
// with PostgreSQL and the mock broker: POST /dlq/{id}/retry in journal mode
// (payload, transform, still invalid: 422 and attempts + 1) and republish
// mode (journalled again by ingestion), discard, purge (admin only), and
// the automatic retry of db_rejected rows (backoff, resolved once a trigger
// stops refusing, failed at max attempts), also across a kill -9.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string topic = "apexflow.leads.created";

ces::test::http_response call(world& w, const std::string& method,
                              const std::string& target,
                              const std::string& body = {},
                              const std::string& credentials = {}) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!credentials.empty())
    headers.emplace_back("Authorization", credentials);
  return ces::test::http_request(method, "127.0.0.1", w.http_port(), target,
                                 body, "application/json", 30s, headers);
}

json get_json(world& w, const std::string& target) {
  auto r = call(w, "GET", target);
  INFO(target << ": " << r.body);
  REQUIRE(r.status == 200);
  return json::parse(r.body);
}

std::string bearer_key(world& w, const std::string& name,
                       const std::string& role, const json& tenants) {
  auto r = call(w, "POST", "/keys",
                json{{"name", name}, {"role", role}, {"tenants", tenants}}
                  .dump());
  INFO(r.body);
  REQUIRE(r.status == 201);
  return "Bearer " + json::parse(r.body)["key"].get<std::string>();
}

/// Produces one message per line of `lines` to partition 0 of `topic` with
/// kcat (payloads crm-produce does not make).
void kcat_produce(world& w, const std::vector<std::string>& lines,
                  const std::string& name) {
  auto file = w.temp_path(name + ".txt");
  {
    std::ofstream out{file};
    for (auto& l : lines)
      out << l << "\n";
  }
  child_process kcat{{"kcat", "-P", "-b", w.bootstrap(), "-t", topic, "-p",
                      "0", "-l", file}};
  auto st = kcat.wait_exit(30s);
  INFO(kcat.describe());
  REQUIRE(st);
  REQUIRE(st->success());
}

/// A trigger on event_journal that refuses (RAISE) the rows whose payload
/// "mark" is listed in refused_marks: ingestion dead-letters them as
/// db_rejected until the mark is deleted.
void install_refusing_trigger(world& w) {
  w.rows("create table refused_marks (mark text primary key)");
  w.rows("create function refuse_marked() returns trigger language plpgsql"
         " as $$ begin if exists (select 1 from refused_marks where mark ="
         " new.payload->>'mark') then raise exception 'refused by test"
         " trigger: %', new.payload->>'mark'; end if; return new; end $$");
  w.rows("create trigger refuse_marked before insert on event_journal for"
         " each row execute function refuse_marked()");
}

std::string marked(const std::string& mark, int n) {
  return json{{"tenant_id", "tenant-01"}, {"mark", mark}, {"n", n}}.dump();
}

int64_t dlq_id_of_mark(world& w, const std::string& mark) {
  std::string id;
  REQUIRE(eventually(
    [&] {
      id = w.value("select id from event_dlq where encode(payload,"
                   " 'escape') like '%\"mark\":\""
                   + mark + "\"%'");
      return !id.empty();
    },
    30s));
  return std::stoll(id);
}

std::string path_of(int64_t id, const std::string& action = {}) {
  return "/dlq/" + std::to_string(id) + (action.empty() ? "" : "/" + action);
}

/// The invariant of retry into the journal: a resolved row (journal or
/// auto) has exactly one journal row naming it, and no journal row names
/// a row that is not resolved.
void check_one_journal_row_per_resolved(world& w) {
  CHECK(w.count("select count(*) from event_dlq d where d.status ="
                " 'resolved' and d.resolution in ('journal', 'auto') and"
                " (select count(*) from event_journal j where j.dlq_id ="
                " d.id) <> 1")
        == 0);
  CHECK(w.count("select count(*) from event_journal j where j.dlq_id is not"
                " null and not exists (select 1 from event_dlq d where d.id ="
                " j.dlq_id and d.status = 'resolved')")
        == 0);
}

} // namespace

TEST_CASE("retry into the journal: still invalid, then fixed with payload",
          "[e2e]") {
  world w{{topic}, 1};
  // No automatic retry in this test.
  auto sink = w.start_sink({"--dlq-retry-initial-ms=3600000",
                            "--dlq-retry-max-ms=3600000"});
  // With --poison-every 1, sequence number 8 is the invalid-JSON kind.
  w.produce({"--topics", topic, "--count", "1", "--poison-every", "1",
             "--start-index", "8"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 1; }, 30s));
  auto id = std::stoll(w.value("select id from event_dlq"));
  REQUIRE(w.value("select error_class from event_dlq") == "invalid_json");

  // The stored bytes again: still invalid, one more attempt.
  auto again = call(w, "POST", path_of(id, "retry"));
  INFO(again.body);
  REQUIRE(again.status == 422);
  auto e = json::parse(again.body);
  CHECK(e["error"] == "still_invalid");
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("invalid_json"));
  CHECK_THAT(e["message"].get<std::string>(), Catch::Contains("attempts 2"));
  auto row = get_json(w, path_of(id));
  CHECK(row["status"] == "pending");
  CHECK(row["attempts"] == 2);
  CHECK(w.count("select count(*) from event_journal") == 0);

  // Refusals that change nothing.
  CHECK(json::parse(call(w, "POST", path_of(id, "retry"), "[1]").body)["error"]
        == "bad_request");
  CHECK(json::parse(call(w, "POST", path_of(id, "retry"),
                         R"({"payload":{},"transform":[]})")
                      .body)["error"]
        == "bad_request");
  CHECK(json::parse(call(w, "POST", path_of(id, "retry"),
                         R"({"mode":"republish","payload":{}})")
                      .body)["error"]
        == "bad_request");
  // The stored bytes are not JSON: nothing to patch.
  auto not_json = call(w, "POST", path_of(id, "retry"),
                       R"({"transform":[{"op":"add","path":"/a","value":1}]})");
  CHECK(not_json.status == 400);
  CHECK(json::parse(not_json.body)["error"] == "bad_transform");
  CHECK(call(w, "POST", "/dlq/999999/retry").status == 404);
  // A tenant-scoped operator does not see a row without a tenant.
  auto op = bearer_key(w, "op-t1", "operator", json::array({"tenant-01"}));
  auto hidden = call(w, "POST", path_of(id, "retry"),
                     R"({"payload":{"tenant_id":"tenant-01"}})", op);
  CHECK(hidden.status == 404);
  CHECK(get_json(w, path_of(id))["attempts"] == 2);

  // Fixed with a payload: journalled with dlq_id, the row resolved.
  auto fixed = call(w, "POST", path_of(id, "retry"),
                    R"({"payload":{"tenant_id":"tenant-07","fixed":true}})");
  INFO(fixed.body);
  REQUIRE(fixed.status == 200);
  auto r = json::parse(fixed.body);
  CHECK(r["dlq_id"] == id);
  CHECK(r["status"] == "resolved");
  CHECK(r["mode"] == "journal");
  CHECK(r["tenant_id"] == "tenant-07");
  CHECK(r["topic"] == topic);
  CHECK(r["attempts"] == 3);
  auto event_id = r["event_id"].get<int64_t>();
  auto ev = get_json(w, "/events/" + std::to_string(event_id));
  CHECK(ev["dlq_id"] == id);
  CHECK(ev["tenant_id"] == "tenant-07");
  CHECK(ev["payload"]["fixed"] == true);
  row = get_json(w, path_of(id));
  CHECK(row["status"] == "resolved");
  CHECK(row["resolution"] == "journal");
  CHECK(row["resolved_event_id"] == event_id);
  CHECK(row["attempts"] == 3);
  check_one_journal_row_per_resolved(w);
  // Closed now: 409, and no second journal row.
  auto twice = call(w, "POST", path_of(id, "retry"));
  CHECK(twice.status == 409);
  CHECK(w.count("select count(*) from event_journal") == 1);
  // Audited, logged, counted.
  CHECK(w.count("select count(*) from audit_log where action = 'dlq.retry'")
        >= 2);
  CHECK(eventually(
    [&] {
      return ces::test::read_file(w.sink_log()).find("\"dlq_retried\"") != std::string::npos;
    },
    5s));
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  CHECK(metric(m.body,
               "crm_dlq_actions_total{action=\"retry\",outcome=\"ok\"}")
        == 1);
  CHECK(metric(m.body,
               "crm_dlq_actions_total{action=\"retry\",outcome=\"refused\"}")
        >= 2);
  CHECK(sink.stop().success());
}

TEST_CASE("retry into the journal with a transform that adds the tenant",
          "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink({"--dlq-retry-initial-ms=3600000",
                            "--dlq-retry-max-ms=3600000"});
  kcat_produce(w, {R"({"lead":"l-1","n":1})"}, "no-tenant");
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 1; }, 30s));
  auto id = std::stoll(w.value("select id from event_dlq"));
  REQUIRE(w.value("select error_class from event_dlq") == "missing_tenant");
  // A patch that does not apply: 400, nothing changed.
  auto failing = call(w, "POST", path_of(id, "retry"),
                      R"({"transform":[{"op":"test","path":"/n","value":2}]})");
  CHECK(failing.status == 400);
  CHECK(json::parse(failing.body)["error"] == "bad_transform");
  CHECK(get_json(w, path_of(id))["attempts"] == 1);
  // The row has no tenant: a tenant-scoped operator does not see it.
  auto op = bearer_key(w, "op-t1", "operator", json::array({"tenant-01"}));
  auto add_t2 = R"({"transform":[{"op":"add","path":"/tenant_id",)"
                R"("value":"tenant-02"}]})";
  CHECK(call(w, "POST", path_of(id, "retry"), add_t2, op).status == 404);
  auto ok = call(w, "POST", path_of(id, "retry"), add_t2);
  INFO(ok.body);
  REQUIRE(ok.status == 200);
  auto r = json::parse(ok.body);
  CHECK(r["tenant_id"] == "tenant-02");
  auto ev = get_json(w, "/events/" + std::to_string(r["event_id"].get<int64_t>()));
  CHECK(ev["payload"] == json{{"lead", "l-1"}, {"n", 1},
                              {"tenant_id", "tenant-02"}});
  CHECK(ev["dlq_id"] == id);
  check_one_journal_row_per_resolved(w);
  CHECK(sink.stop().success());
}

TEST_CASE("republish: the row is journalled again by ingestion", "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink({"--dlq-retry-initial-ms=3600000",
                            "--dlq-retry-max-ms=3600000"});
  install_refusing_trigger(w);
  w.rows("insert into refused_marks values ('r1')");
  kcat_produce(w, {marked("r1", 1)}, "r1");
  auto id = dlq_id_of_mark(w, "r1");
  CHECK(w.value("select error_class from event_dlq where id = "
                + std::to_string(id))
        == "db_rejected");
  CHECK_THAT(w.value("select error from event_dlq where id = "
                     + std::to_string(id)),
             Catch::Contains("refused by test trigger"));
  // The trigger stops refusing; the row is republished as it was received.
  w.rows("delete from refused_marks");
  auto res = call(w, "POST", path_of(id, "retry"), R"({"mode":"republish"})");
  INFO(res.body);
  REQUIRE(res.status == 200);
  auto r = json::parse(res.body);
  CHECK(r["mode"] == "republish");
  CHECK(r["status"] == "resolved");
  CHECK(r["topic"] == topic);
  CHECK(r["partition"] == 0);
  CHECK(r["offset"].get<int64_t>() >= 1);
  CHECK(r["attempts"] == 2);
  auto row = get_json(w, path_of(id));
  CHECK(row["status"] == "resolved");
  CHECK(row["resolution"] == "republish");
  // Ingestion journals it, with x-dlq-id and no replay provenance.
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal where"
                     " payload->>'mark' = 'r1'")
             == 1;
    },
    30s));
  auto j = w.rows("select \"offset\", dlq_id, replay_of, headers::text from"
                  " event_journal where payload->>'mark' = 'r1'");
  REQUIRE(j.size() == 1);
  CHECK(j[0][0] == std::to_string(r["offset"].get<int64_t>()));
  CHECK(j[0][1].empty()); // came through ingestion, not a journal retry
  CHECK(j[0][2].empty());
  CHECK_THAT(j[0][3], Catch::Contains("x-dlq-id"));
  CHECK_THAT(j[0][3], Catch::Contains(std::to_string(id)));
  CHECK_THAT(j[0][3], !Catch::Contains("x-replay-of"));
  // Resolved: a second republish is a conflict.
  CHECK(call(w, "POST", path_of(id, "retry"), R"({"mode":"republish"})")
          .status
        == 409);
  CHECK(sink.stop().success());
}

TEST_CASE("discard with a reason; purge is for admins", "[e2e]") {
  world w{{topic}, 1};
  auto sink = w.start_sink();
  kcat_produce(w, {"not json 1", "not json 2"}, "two");
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 2; }, 30s));
  auto first = std::stoll(w.value("select min(id) from event_dlq"));
  auto second = std::stoll(w.value("select max(id) from event_dlq"));
  auto viewer = bearer_key(w, "viewer", "viewer", "*");
  auto op = bearer_key(w, "op", "operator", "*");

  CHECK(call(w, "POST", path_of(first, "discard"), "{}").status == 400);
  CHECK(call(w, "POST", path_of(first, "discard"),
             json{{"reason", std::string(1001, 'x')}}.dump())
          .status
        == 400);
  CHECK(call(w, "POST", path_of(first, "discard"), R"({"reason":"x"})",
             viewer)
          .status
        == 403);
  auto res = call(w, "POST", path_of(first, "discard"),
                  R"({"reason":"test data from a load test"})");
  INFO(res.body);
  REQUIRE(res.status == 200);
  auto d = json::parse(res.body);
  CHECK(d["id"] == first);
  CHECK(d["status"] == "discarded");
  CHECK(d["discard_reason"] == "test data from a load test");
  CHECK(d["resolution"] == "discard");
  CHECK(call(w, "POST", path_of(first, "discard"), R"({"reason":"again"})")
          .status
        == 409);
  CHECK(call(w, "POST", path_of(first, "retry")).status == 409);
  CHECK(w.count("select count(*) from audit_log where action ="
                " 'dlq.discard'")
        >= 1);

  // Purge: admin only, status and before required.
  const std::string later = "2999-01-01T00:00:00Z";
  CHECK(call(w, "DELETE", "/dlq?status=discarded&before=" + later, {}, op)
          .status
        == 403);
  auto bad_status = call(w, "DELETE", "/dlq?status=pending&before=" + later);
  CHECK(bad_status.status == 400);
  CHECK(json::parse(bad_status.body)["error"] == "bad_filter");
  auto no_time = call(w, "DELETE", "/dlq?status=discarded");
  CHECK(no_time.status == 400);
  CHECK(json::parse(no_time.body)["error"] == "bad_time");
  auto none = call(w, "DELETE",
                   "/dlq?status=discarded&before=2000-01-01T00:00:00Z");
  REQUIRE(none.status == 200);
  CHECK(json::parse(none.body) == json{{"deleted", 0}});
  auto purged = call(w, "DELETE", "/dlq?status=discarded&before=" + later);
  INFO(purged.body);
  REQUIRE(purged.status == 200);
  CHECK(json::parse(purged.body) == json{{"deleted", 1}});
  CHECK(call(w, "GET", path_of(first)).status == 404);
  CHECK(get_json(w, path_of(second))["status"] == "pending");
  CHECK(w.count("select count(*) from audit_log where action = 'dlq.purge'")
        >= 1);
  CHECK(sink.stop().success());
}

TEST_CASE("automatic retry follows its backoff, resolves once the trigger "
          "stops refusing, and gives up at max attempts",
          "[e2e]") {
  world w{{topic}, 1};
  const std::vector<std::string> fast = {"--dlq-retry-initial-ms=300",
                                         "--dlq-retry-max-ms=2000",
                                         "--dlq-retry-interval-ms=100"};
  auto args = fast;
  args.push_back("--dlq-retry-max-attempts=30");
  auto sink = w.start_sink(args);
  install_refusing_trigger(w);
  w.rows("insert into refused_marks values ('a1')");
  kcat_produce(w, {marked("a1", 1)}, "a1");
  auto id = dlq_id_of_mark(w, "a1");
  auto where = " from event_dlq where id = " + std::to_string(id);
  // Attempts grow, each scheduling the next one later.
  std::vector<std::pair<int, std::string>> seen;
  REQUIRE(eventually(
    [&] {
      auto r = w.rows("select attempts, next_attempt_at, status" + where);
      REQUIRE(r.size() == 1);
      CHECK(r[0][2] == "pending");
      auto attempts = std::stoi(r[0][0]);
      if (seen.empty() || seen.back().first != attempts)
        seen.emplace_back(attempts, r[0][1]);
      return attempts >= 4;
    },
    30s));
  for (size_t i = 1; i < seen.size(); ++i) {
    INFO(seen[i - 1].second << " then " << seen[i].second);
    CHECK(seen[i].first > seen[i - 1].first);
    if (seen[i - 1].first >= 2) // scheduled by a retry (not ingestion)
      CHECK(w.value("select '" + seen[i].second + "'::timestamptz > '"
                    + seen[i - 1].second + "'::timestamptz")
            == "t");
  }
  CHECK(w.count("select count(*) from event_journal") == 0);
  // The trigger stops refusing: the next attempt resolves the row.
  w.rows("delete from refused_marks");
  REQUIRE(eventually(
    [&] { return w.value("select status" + where) == "resolved"; }, 30s));
  auto row = get_json(w, path_of(id));
  CHECK(row["resolution"] == "auto");
  CHECK(row["resolved_by"] == "auto-retry");
  CHECK(row["next_attempt_at"].is_null());
  auto event_id = row["resolved_event_id"].get<int64_t>();
  CHECK(get_json(w, "/events/" + std::to_string(event_id))["dlq_id"] == id);
  check_one_journal_row_per_resolved(w);
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  CHECK(metric(m.body, "crm_dlq_retries_total{outcome=\"resolved\"}") == 1);
  CHECK(metric(m.body, "crm_dlq_retries_total{outcome=\"still_failing\"}")
        >= 3);
  CHECK(ces::test::read_file(w.sink_log()).find("\"dlq_auto_retry_resolved\"")
        != std::string::npos);
  CHECK(w.count("select count(*) from audit_log where action ="
                " 'dlq.auto_retry'")
        >= 4);
  CHECK(sink.stop().success());

  // With 3 attempts at most: a row still refused becomes failed.
  args = fast;
  args.push_back("--dlq-retry-max-attempts=3");
  sink = w.start_sink(args);
  w.rows("insert into refused_marks values ('a2')");
  kcat_produce(w, {marked("a2", 2)}, "a2");
  auto failing = dlq_id_of_mark(w, "a2");
  auto failing_where = " from event_dlq where id = " + std::to_string(failing);
  REQUIRE(eventually(
    [&] { return w.value("select status" + failing_where) == "failed"; },
    30s));
  CHECK(w.value("select attempts" + failing_where) == "3");
  CHECK(w.value("select error_class" + failing_where) == "db_rejected");
  m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  CHECK(metric(m.body, "crm_dlq_retries_total{outcome=\"gave_up\"}") == 1);
  CHECK(ces::test::read_file(w.sink_log()).find("\"dlq_auto_retry_gave_up\"")
        != std::string::npos);
  // A failed row is not retried automatically any more, but an operator
  // may still fix it.
  w.rows("delete from refused_marks");
  auto fixed = call(w, "POST", path_of(failing, "retry"));
  INFO(fixed.body);
  CHECK(fixed.status == 200);
  CHECK(w.value("select resolution" + failing_where) == "journal");
  check_one_journal_row_per_resolved(w);
  CHECK(sink.stop().success());
}

TEST_CASE("kill -9 during a burst of automatic retries", "[e2e]") {
  world w{{topic}, 1};
  const std::vector<std::string> args = {
    "--dlq-retry-initial-ms=300", "--dlq-retry-max-ms=1000",
    "--dlq-retry-interval-ms=100", "--dlq-retry-batch=5",
    "--dlq-retry-max-attempts=1000"};
  auto sink = w.start_sink(args);
  install_refusing_trigger(w);
  const int n = 200;
  w.rows("insert into refused_marks values ('burst')");
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i)
    lines.push_back(marked("burst", i));
  kcat_produce(w, lines, "burst");
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_dlq where error_class ="
                     " 'db_rejected'")
             == n;
    },
    60s));
  w.rows("delete from refused_marks");
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_dlq where status ="
                     " 'resolved'")
             > 0;
    },
    30s));
  auto st = sink.kill9();
  CHECK(st.signaled);
  check_one_journal_row_per_resolved(w);
  // After a restart every row is resolved, each exactly once.
  sink = w.start_sink(args);
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_dlq where status ="
                     " 'resolved'")
             == n;
    },
    120s));
  check_one_journal_row_per_resolved(w);
  CHECK(w.count("select count(*) from event_journal where dlq_id is not"
                " null")
        == n);
  CHECK(w.count("select count(distinct payload->>'n') from event_journal")
        == n);
  CHECK(sink.stop().success());
}
