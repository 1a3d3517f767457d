// End-to-end: the operator API of the real binary, reproducing the original
// service's own verification, plus bad requests and the README's examples.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <unistd.h>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string jobs = "apexflow.jobs.created";
const std::string leads = "apexflow.leads.created";

uint16_t http_port_of(const world& w) {
  for (auto& a : w.sink_args())
    if (a.rfind("--http-port=", 0) == 0)
      return static_cast<uint16_t>(std::stoi(a.substr(12)));
  throw std::logic_error("no --http-port");
}

ces::test::http_response call(const world& w, const std::string& method,
                              const std::string& target,
                              const std::string& body = {}) {
  return ces::test::http_request(method, "127.0.0.1", http_port_of(w), target,
                                 body, "application/json", 20s);
}

double scrape(const world& w, const std::string& series) {
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  return metric(m.body, series);
}

long long journal_rows(const world& w) {
  return w.count("select count(*) from event_journal");
}

} // namespace

TEST_CASE("the original service's verification: events, replay, DLQ",
          "[e2e]") {
  world w{{leads, jobs}, 4};
  auto sink = w.start_sink();
  w.produce({"--topics", jobs, "--count", "1"});
  w.produce({"--topics", leads, "--count", "9", "--start-index", "1"});
  CHECK(w.broker_messages() == 10);
  REQUIRE(eventually([&] { return journal_rows(w) == 10; }, 30s));

  auto latest = call(w, "GET", "/events/latest");
  REQUIRE(latest.status == 200);
  auto events = json::parse(latest.body);
  REQUIRE(events.size() == 10);
  CHECK(events[0]["id"].get<int64_t>() > events[9]["id"].get<int64_t>());
  int64_t job_id = 0;
  for (auto& e : events) {
    CHECK(e["payload"].is_object()); // JSON, not a string
    CHECK(e["payload"]["tenant_id"] == e["tenant_id"]);
    CHECK(e["replay_of"].is_null());
    CHECK(e["received_at"].get<std::string>().back() == 'Z');
    if (e["topic"] == jobs)
      job_id = e["id"];
  }
  REQUIRE(job_id > 0);
  auto job_series = "{topic=\"" + jobs + "\"}";
  // Counted right after the commit: allow for that instant.
  CHECK(eventually(
    [&] {
      return scrape(w, "crm_events_ingested_total" + job_series) == 1
             && scrape(w, "crm_events_persisted_total" + job_series) == 1;
    },
    5s));

  auto replay = call(w, "POST", "/replay/" + std::to_string(job_id));
  REQUIRE(replay.status == 200);
  auto r = json::parse(replay.body);
  CHECK(r["status"] == "replayed");
  CHECK(r["event_id"] == job_id);
  CHECK(r["topic"] == jobs);
  CHECK(r["partition"].is_number_integer());
  CHECK(r["offset"].is_number_integer());

  // Consumed again and journalled again: the audit trail.
  REQUIRE(eventually([&] { return journal_rows(w) == 11; }, 30s));
  CHECK(w.count("select count(*) from event_journal where topic = '" + jobs
                + "'")
        == 2);
  CHECK(w.count("select count(*) from event_journal where topic = '" + leads
                + "'")
        == 9);
  auto copy = w.rows("select replay_of, partition, \"offset\", key = (select "
                     "key from event_journal where id = "
                     + std::to_string(job_id)
                     + "), payload = (select payload from event_journal "
                       "where id = "
                     + std::to_string(job_id)
                     + ") from event_journal where replay_of is not null");
  REQUIRE(copy.size() == 1);
  CHECK(copy[0][0] == std::to_string(job_id));
  CHECK(copy[0][1] == std::to_string(r["partition"].get<int>()));
  CHECK(copy[0][2] == std::to_string(r["offset"].get<int64_t>()));
  CHECK(copy[0][3] == "t"); // same key
  CHECK(copy[0][4] == "t"); // same payload
  CHECK(eventually(
    [&] {
      return scrape(w, "crm_events_ingested_total" + job_series) == 2
             && scrape(w, "crm_events_persisted_total" + job_series) == 2;
    },
    10s));
  CHECK(scrape(w, "crm_replays_total{outcome=\"replayed\",topic=\"" + jobs
                    + "\"}")
        == 1);
  // The replayed row shows its provenance headers through the API too.
  auto newest = json::parse(call(w, "GET", "/events/latest?limit=1").body);
  REQUIRE(newest.size() == 1);
  CHECK(newest[0]["replay_of"] == job_id);
  std::set<std::string> header_keys;
  for (auto& h : newest[0]["headers"])
    header_keys.insert(h["key"].get<std::string>());
  CHECK(header_keys.count("x-replay-of") == 1);
  CHECK(header_keys.count("x-replay-id") == 1);
  // The replay was recorded before it was published, with its audit rows.
  auto replay_id = r["replay_id"].get<std::string>();
  CHECK(w.count("select count(*) from replays where replay_id = '" + replay_id
                + "' and event_id = " + std::to_string(job_id))
        == 1);
  CHECK(w.value("select string_agg(outcome, ',' order by id) from audit_log"
                " where action = 'replay' and target = 'event/"
                + std::to_string(job_id) + "'")
        == "accepted,ok");

  // Provenance a producer sets itself is not believed: a made-up replay id,
  // and the recorded replay id with another event id. The headers stay.
  auto forge = [&](const std::string& of, const std::string& id) {
    auto file = w.temp_path("forged-" + id + ".txt");
    std::ofstream{file} << R"({"tenant_id":"t-forged","of":)" << of << "}\n";
    ces::test::child_process kcat{{"kcat", "-P", "-b", w.bootstrap(), "-t",
                                   jobs, "-p", "0", "-H", "x-replay-of=" + of,
                                   "-H", "x-replay-id=" + id, "-l", file}};
    auto st = kcat.wait_exit(30s);
    INFO(kcat.describe());
    REQUIRE(st);
    REQUIRE(st->success());
  };
  forge(std::to_string(job_id), "forged-id");
  forge(std::to_string(job_id + 1), replay_id);
  REQUIRE(eventually([&] { return journal_rows(w) == 13; }, 30s));
  CHECK(w.count("select count(*) from event_journal where tenant_id ="
                " 't-forged' and replay_of is null and headers @>"
                " '[{\"key\": \"x-replay-of\"}]'")
        == 2);
  CHECK(w.count("select count(*) from event_journal where replay_of is not"
                " null")
        == 1);

  auto dlq = call(w, "GET", "/dlq");
  REQUIRE(dlq.status == 200);
  CHECK(dlq.body == "[]");
  // One invalid event: with --poison-every 1, sequence number 8 is the
  // invalid-JSON kind (kinds cycle with period 8).
  w.produce({"--topics", leads, "--count", "1", "--poison-every", "1",
             "--start-index", "8"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 1; }, 30s));
  auto dlq2 = json::parse(call(w, "GET", "/dlq").body);
  REQUIRE(dlq2.size() == 1);
  CHECK(dlq2[0]["topic"] == leads);
  CHECK(dlq2[0]["error_class"] == "invalid_json");
  CHECK(dlq2[0]["status"] == "pending");
  CHECK(dlq2[0]["attempts"] == 1);
  CHECK(dlq2[0]["payload"].is_string()); // not JSON: kept as received
  CHECK(sink.stop().success());
}

TEST_CASE("bad requests get a stable error, and the service keeps serving",
          "[e2e]") {
  world w{{leads, jobs}, 2};
  auto sink = w.start_sink();
  struct row {
    const char* method;
    std::string target;
    size_t body;
    int status;
    const char* error;
  };
  std::vector<row> table = {
    {"GET", "/events/-1", 0, 400, "bad_id"},
    {"GET", "/events/abc", 0, 400, "bad_id"},
    {"GET", "/events/0", 0, 400, "bad_id"},
    {"GET", "/events/1180591620717411303424", 0, 400, "bad_id"},
    {"POST", "/replay/abc", 0, 400, "bad_id"},
    {"POST", "/replay/-1", 0, 400, "bad_id"},
    {"POST", "/replay/1180591620717411303424", 0, 400, "bad_id"},
    {"GET", "/events/latest?limit=0", 0, 400, "bad_limit"},
    {"GET", "/events/latest?limit=-5", 0, 400, "bad_limit"},
    {"GET", "/events/latest?limit=100000", 0, 400, "bad_limit"},
    {"GET", "/events/latest?limit=x", 0, 400, "bad_limit"},
    {"GET", "/dlq?limit=0", 0, 400, "bad_limit"},
    {"GET", "/events/latest?limt=5", 0, 400, "bad_query"},
    {"GET", "/nope", 0, 404, "not_found"},
    {"GET", "/events/latest/", 0, 404, "not_found"},
    {"GET", "/events/%zz", 0, 400, "bad_path"},
    {"DELETE", "/events/1", 0, 405, "method_not_allowed"},
    {"GET", "/replay/1", 0, 405, "method_not_allowed"},
    {"POST", "/events/latest", 0, 405, "method_not_allowed"},
    {"POST", "/replay/1", 100 * 1024, 413, "body_too_large"},
    {"POST", "/replay/999999", 0, 404, "not_found"},
    {"GET", "/events/999999", 0, 404, "not_found"},
  };
  for (auto& t : table) {
    INFO(t.method << " " << t.target);
    auto res = call(w, t.method, t.target, std::string(t.body, 'x'));
    CHECK(res.status == t.status);
    auto body = json::parse(res.body, nullptr, false);
    REQUIRE(!body.is_discarded());
    CHECK(body["error"] == t.error);
    CHECK(body["message"].is_string());
    if (t.status == 405)
      CHECK(!res.header("allow").empty());
  }
  CHECK(call(w, "GET", "/replay/1").header("allow") == "POST");
  CHECK(call(w, "DELETE", "/events/1").header("allow") == "GET, HEAD");
  // Still healthy and ingesting.
  CHECK(call(w, "GET", "/health").status == 200);
  w.produce({"--count", "20"});
  CHECK(eventually([&] { return journal_rows(w) == 20; }, 30s));
  CHECK(scrape(w, "crm_http_requests_total{code=\"400\",route=\"unmatched\"}")
        >= 1);
  CHECK(sink.stop().success());
}

TEST_CASE("an event whose partition retention dropped is 404 gone",
          "[e2e]") {
  world w{{leads}, 1};
  auto sink = w.start_sink();
  w.produce({"--topics", leads, "--count", "3"});
  REQUIRE(eventually([&] { return journal_rows(w) == 3; }, 30s));
  // A day retention dropped (storage::journal_partitions::drop_expired
  // records the id range of every partition it drops), with ids above the
  // live ones.
  auto top = w.count("select max(id) from event_journal");
  auto lo = std::to_string(top + 100), hi = std::to_string(top + 199);
  w.count("with d as (insert into journal_partitions (name, range_from,"
          " range_to, state, dropped_at, min_id, max_id, row_count) values"
          " ('event_journal_20200101', '2020-01-01', '2020-01-02', 'dropped',"
          " now(), " + lo + ", " + hi + ", 100) returning 1)"
          " select count(*) from d");
  auto id = std::to_string(top + 150);
  for (auto [method, target] :
       {std::pair{"POST", "/replay/" + id},
        std::pair{"GET", "/events/" + id}}) {
    INFO(method << " " << target);
    auto res = call(w, method, target);
    CHECK(res.status == 404);
    auto body = json::parse(res.body, nullptr, false);
    REQUIRE(!body.is_discarded());
    CHECK(body["error"] == "gone");
    CHECK(body["message"].get<std::string>().find("dropped by retention")
          != std::string::npos);
  }
  // Outside the dropped range: not found, as before; a live event is there.
  CHECK(call(w, "POST", "/replay/" + std::to_string(top + 200)).status
        == 404);
  CHECK(json::parse(call(w, "GET", "/events/" + std::to_string(top + 200))
                      .body)["error"]
        == "not_found");
  CHECK(call(w, "GET", "/events/" + std::to_string(top)).status == 200);
  CHECK(scrape(w, "crm_replays_total{outcome=\"gone\",topic=\"unknown\"}")
        == 1);
  CHECK(sink.stop().success());
}

TEST_CASE("README curl examples work", "[e2e]") {
  world w{{leads, jobs}, 2};
  auto sink = w.start_sink();
  w.produce({"--count", "5"});
  REQUIRE(eventually([&] { return journal_rows(w) == 5; }, 30s));
  std::ifstream readme{CES_SOURCE_DIR "/README.md"};
  REQUIRE(readme);
  std::vector<std::string> examples;
  bool inside = false;
  for (std::string line; std::getline(readme, line);) {
    if (line.find("<!-- api-examples") == 0)
      inside = true;
    else if (line.find("<!-- /api-examples") == 0)
      inside = false;
    else if (inside && line.rfind("curl ", 0) == 0)
      examples.push_back(line);
  }
  REQUIRE(examples.size() >= 6);
  auto port = std::to_string(http_port_of(w));
  // The examples authenticate with $CES_KEY (README: Security).
  ::setenv("CES_KEY", w.admin_key().c_str(), 1);
  for (auto cmd : examples) {
    for (size_t p; (p = cmd.find("localhost:9106")) != std::string::npos;)
      cmd.replace(p, 14, "127.0.0.1:" + port);
    INFO(cmd);
    std::string out;
    auto pipe = popen(cmd.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;)
      out.append(buf, n);
    CHECK(pclose(pipe) == 0);
    auto j = json::parse(out, nullptr, false);
    REQUIRE(!j.is_discarded());
    CHECK(!(j.is_object() && j.contains("error")));
  }
  CHECK(sink.stop().success());
}

TEST_CASE("a replayer crash is contained: ingestion goes on, next replay works",
          "[e2e][replayer_crash][mock_only]") {
  if (real_kafka()) {
    WARN("SKIPPED on CES_TEST_KAFKA=real: injects a Produce error with the "
         "mock broker's fault control");
    return;
  }
  world_options opts;
  opts.broker_control = true;
  world w{{leads, jobs}, 2, opts};
  auto sink = w.start_sink();
  w.produce({"--count", "5"});
  REQUIRE(eventually([&] { return journal_rows(w) == 5; }, 30s));
  // The next Produce request is refused with an error that an idempotent
  // producer cannot recover from: the replayer's producer turns fatal.
  REQUIRE(w.broker_command("error Produce OUT_OF_ORDER_SEQUENCE_NUMBER 1")
            .rfind("ok", 0)
          == 0);
  auto failed = call(w, "POST", "/replay/1");
  CHECK((failed.status == 502 || failed.status == 503));
  auto err = json::parse(failed.body);
  CHECK(err["error"].get<std::string>().rfind("broker_", 0) == 0);
  CHECK(err["message"].get<std::string>().find("OUT_OF_ORDER_SEQUENCE_NUMBER")
        != std::string::npos);
  // The supervisor logged the crash and the restart, one line each.
  REQUIRE(eventually(
    [&] {
      return ces::test::read_file(w.sink_log()).find(R"("event":"actor_restart","actor":"replayer")")
             != std::string::npos;
    },
    10s));
  auto log = ces::test::read_file(w.sink_log());
  CHECK(log.find(R"("event":"actor_crash","actor":"replayer")")
        != std::string::npos);
  CHECK(log.find(R"("event":"actor_crash","actor":"consumer")")
        == std::string::npos);
  CHECK(log.find(R"("event":"actor_crash","actor":"persister-)")
        == std::string::npos);
  // Ingestion went on.
  w.produce({"--count", "10", "--start-index", "5"});
  CHECK(eventually([&] { return journal_rows(w) == 15; }, 30s));
  // The next replay succeeds on the fresh producer.
  auto ok = call(w, "POST", "/replay/2");
  CHECK(ok.status == 200);
  CHECK(eventually(
    [&] {
      return w.count(
               "select count(*) from event_journal where replay_of = 2")
             == 1;
    },
    30s));
  CHECK(scrape(w, "crm_actor_restarts_total{actor=\"replayer\"}") == 1);
  CHECK(scrape(w, "crm_actor_restarts_total{actor=\"consumer\"}") == 0);
  CHECK(scrape(w, "crm_actor_restarts_total{actor=\"persister-0\"}") == 0);
  auto sv = json::parse(call(w, "GET", "/supervision").body);
  for (auto& a : sv["actors"])
    if (a["name"] == "replayer") {
      CHECK(a["restarts"] == 1);
      CHECK(a["state"] == "running");
    }
  CHECK(sink.stop().success());
}

TEST_CASE("a page cut by http-max-response-bytes says X-Truncated over HTTP",
          "[e2e]") {
  world w{{leads}, 1};
  auto sink = w.start_sink({"--http-max-response-bytes=2000"});
  w.produce({"--topics", leads, "--count", "30"});
  REQUIRE(eventually([&] { return journal_rows(w) == 30; }, 30s));
  auto cut = ces::test::http_request(
    "GET", "127.0.0.1", http_port_of(w), "/events/latest?limit=30", {}, {},
    20s, {{"X-Request-Id", "page-1"}});
  REQUIRE(cut.status == 200);
  CHECK(cut.header("x-truncated") == "true");
  CHECK(cut.header("x-request-id") == "page-1");
  auto page = json::parse(cut.body);
  REQUIRE(page.is_array());
  CHECK(page.size() >= 1);
  CHECK(page.size() < 30);
  // A page that fits says nothing.
  auto whole = call(w, "GET", "/events/latest?limit=1");
  REQUIRE(whole.status == 200);
  CHECK(whole.header("x-truncated").empty());
  CHECK(json::parse(whole.body).size() == 1);
}

TEST_CASE("a replay publishes the original bytes and timestamp", "[e2e]") {
  world w{{jobs}, 1};
  auto sink = w.start_sink();
  // jsonb would reorder these keys, drop the first "a" and respell 1.0e2.
  const std::string payload =
    R"({"tenant_id":"t-raw","b":1,"a":1.50,"a":2,"n":1.0e2})";
  auto file = w.temp_path("raw.txt");
  std::ofstream{file} << payload << "\n";
  {
    ces::test::child_process kcat{{"kcat", "-P", "-b", w.bootstrap(), "-t",
                                   jobs, "-p", "0", "-H", "h1=v1", "-l",
                                   file}};
    auto st = kcat.wait_exit(30s);
    INFO(kcat.describe());
    REQUIRE(st);
    REQUIRE(st->success());
  }
  REQUIRE(eventually([&] { return journal_rows(w) == 1; }, 30s));
  auto id = w.value("select id from event_journal");
  auto ts = w.value("select floor(extract(epoch from kafka_timestamp) * 1000)"
                    "::bigint from event_journal");
  REQUIRE(!ts.empty());
  CHECK(w.value("select payload_raw from event_journal") == payload);

  auto replay = call(w, "POST", "/replay/" + id);
  REQUIRE(replay.status == 200);
  auto r = json::parse(replay.body);
  // What a consumer of the topic reads: kcat, the replayed message only.
  auto read = [&](const std::string& format) {
    ces::test::child_process kcat{
      {"kcat", "-C", "-b", w.bootstrap(), "-t", jobs, "-p",
       std::to_string(r["partition"].get<int>()), "-o",
       std::to_string(r["offset"].get<int64_t>()), "-c", "1", "-e", "-f",
       format}};
    auto st = kcat.wait_exit(30s);
    INFO(kcat.describe());
    REQUIRE(st);
    REQUIRE(st->success());
    return kcat.stdout_text();
  };
  CHECK(read("%s") == payload); // byte for byte
  auto headers = read("%h");
  CHECK_THAT(headers, Catch::StartsWith("h1=v1,"));
  CHECK_THAT(headers, Catch::Contains("x-replay-of=" + id));
  CHECK_THAT(headers, Catch::Contains("x-original-timestamp=" + ts));
  CHECK_THAT(headers, !Catch::Contains("x-replay-job"));
  // And journalled again with the same bytes, as a replay.
  REQUIRE(eventually([&] { return journal_rows(w) == 2; }, 30s));
  CHECK(w.value("select payload_raw from event_journal where replay_of = "
                + id)
        == payload);
  CHECK(w.value("select replay_job is null from event_journal"
                " where replay_of = " + id)
        == "t");
  CHECK(sink.stop().success());
}

TEST_CASE("the incident playbook runs", "[e2e]") {
  // README "Incident playbook": the block between <!-- playbook --> and
  // <!-- /playbook --> is one bash script; run it as written (port swapped)
  // against a live service with sample traffic.
  world w{{leads, jobs}, 2};
  auto sink = w.start_sink();
  w.produce({"--count", "40", "--tenants", "2"});
  REQUIRE(eventually([&] { return journal_rows(w) == 40; }, 30s));
  // Dead letters for steps 9-13: every 2nd of 16 is poison (invalid_json,
  // missing_tenant, ...).
  w.produce({"--count", "16", "--tenants", "2", "--poison-every", "2",
             "--start-index", "40"});
  REQUIRE(eventually([&] { return journal_rows(w) == 48; }, 30s));
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_dlq") == 8; }, 30s));
  auto originals = w.count("select count(*) from event_journal"
                           " where tenant_id = 'tenant-01'");
  REQUIRE(originals > 0);
  std::ifstream readme{CES_SOURCE_DIR "/README.md"};
  REQUIRE(readme);
  std::string script;
  bool inside = false;
  for (std::string line; std::getline(readme, line);) {
    if (line.find("<!-- playbook") == 0)
      inside = true;
    else if (line.find("<!-- /playbook") == 0)
      inside = false;
    else if (inside && line.rfind("```", 0) != 0)
      script += line + "\n";
  }
  REQUIRE(script.find("POST \"$API/replays\"") != std::string::npos);
  auto port = std::to_string(http_port_of(w));
  for (size_t p; (p = script.find("localhost:9106")) != std::string::npos;)
    script.replace(p, 14, "127.0.0.1:" + port);
  char dir[] = "/tmp/ces-playbook-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  std::string path = std::string{dir} + "/playbook.sh";
  {
    std::ofstream out{path};
    out << "set -e -o pipefail\n" << script;
  }
  ::setenv("CES_KEY", w.admin_key().c_str(), 1);
  std::string cmd = "cd " + std::string{dir} + " && bash " + path + " 2>&1";
  std::string out;
  auto pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;)
    out.append(buf, n);
  auto rc = pclose(pipe);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("(the retry got the same job)") != std::string::npos);
  CHECK(out.find("\"status\":\"succeeded\"") != std::string::npos);
  // Dead letters: one fixed into the journal, one refused, the rest
  // discarded by a job, then purged.
  CHECK(out.find("retry of a still-invalid entry: 422") != std::string::npos);
  CHECK(w.count("select count(*) from event_journal where dlq_id is not null")
        == 1);
  CHECK(w.count("select count(*) from event_dlq where status = 'resolved'")
        == 1);
  CHECK(w.count("select count(*) from event_dlq where status <> 'resolved'")
        == 0);
  CHECK(w.count("select count(*) from jobs where kind = 'dlq_discard'"
                " and status = 'succeeded'")
        == 1);
  // One job (the retry made none), whose replays carry the patch; plus the
  // one hand replay of step 7.
  CHECK(w.count("select count(*) from jobs where kind = 'replay'") == 1);
  CHECK(eventually(
    [&] {
      return w.count("select count(*) from event_journal where replay_job"
                     " is not null and payload->>'replayed_for' ="
                     " 'incident-42'")
             == originals;
    },
    30s));
  CHECK(eventually(
    [&] {
      return w.count("select count(*) from event_journal where replay_of"
                     " is not null and replay_job is null")
             == 1;
    },
    30s));
  std::system(("rm -rf " + std::string{dir}).c_str());
  CHECK(sink.stop().success());
}
