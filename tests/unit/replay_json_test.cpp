// POST /replays bodies (api/replay_json.cpp): filters, ids, transform,
// target topic, rate, max_events, dry run, unknown fields; the JSON of plans
// and jobs.
#include "api/replay_json.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace ces;
using ces::api::filter_error;
using ces::api::parse_replay_request;
using json = nlohmann::json;

namespace {

api::replay_defaults defaults(int64_t max = 100000) {
  api::replay_defaults d;
  d.max_events = max;
  return d;
}

/// The error code of a refused body ("" when accepted).
std::string refused(const std::string& body) {
  replay_request r;
  filter_error err;
  if (parse_replay_request(body, defaults(), r, err))
    return "";
  CHECK(!err.message.empty());
  return err.code;
}

} // namespace

TEST_CASE("a full request is parsed", "[replay_json]") {
  replay_request r;
  filter_error err;
  auto body = R"({"filter":{"tenant_id":"acme","topic":"t.x","key":"k1",
    "from":"2024-05-01T00:00:00Z","to":"2024-05-02T00:00:00Z",
    "replays":"exclude"},
    "transform":[{"op":"add","path":"/replayed","value":true}],
    "target_topic":"t.y","rate_per_s":200,"max_events":500,"dry_run":true})";
  REQUIRE(parse_replay_request(body, defaults(), r, err));
  CHECK(r.filter.tenant_id == "acme");
  CHECK(r.filter.topic == "t.x");
  CHECK(r.filter.has_key);
  CHECK(r.filter.key == "k1");
  CHECK(r.filter.from == "2024-05-01T00:00:00Z");
  CHECK(r.filter.to == "2024-05-02T00:00:00Z");
  CHECK(r.filter.replays == replays_mode::exclude);
  CHECK(json::parse(r.transform)
        == json::parse(R"([{"op":"add","path":"/replayed","value":true}])"));
  CHECK(r.target_topic == "t.y");
  CHECK(r.rate_per_s == 200);
  CHECK(r.max_events == 500);
  CHECK(r.dry_run);
  CHECK(json::parse(r.body) == json::parse(body));
}

TEST_CASE("defaults: max_events from the setting, no transform, own topic",
          "[replay_json]") {
  replay_request r;
  filter_error err;
  REQUIRE(parse_replay_request(R"({"filter":{}})", defaults(1234), r, err));
  CHECK(r.max_events == 1234);
  CHECK(r.transform.empty());
  CHECK(r.target_topic.empty());
  CHECK(r.rate_per_s == 0);
  CHECK_FALSE(r.dry_run);
  CHECK(r.filter.ids.empty());
}

TEST_CASE("ids are sorted and unique; replay_of as number or string",
          "[replay_json]") {
  replay_request r;
  filter_error err;
  REQUIRE(parse_replay_request(R"({"filter":{"ids":[9,3,9,1]}})", defaults(),
                               r, err));
  CHECK(r.filter.ids == std::vector<int64_t>{1, 3, 9});
  REQUIRE(parse_replay_request(R"({"filter":{"replay_of":42}})", defaults(),
                               r, err));
  CHECK(r.filter.replay_of == 42);
  REQUIRE(parse_replay_request(R"({"filter":{"replay_of":"43"}})", defaults(),
                               r, err));
  CHECK(r.filter.replay_of == 43);
  std::string many = R"({"filter":{"ids":[)";
  for (int i = 1; i <= 10000; ++i)
    many += (i > 1 ? "," : "") + std::to_string(i);
  REQUIRE(parse_replay_request(many + "]}}", defaults(), r, err));
  CHECK(r.filter.ids.size() == 10000);
  CHECK(refused(many + ",10001]}}") == "bad_filter");
}

// Found by the API fuzzer: JSON Schema's integer includes 5.0 and 1e3, and
// the service refused them (400) where the document allows them.
TEST_CASE("integers written with a zero fraction or an exponent",
          "[replay_json]") {
  replay_request r;
  filter_error err;
  REQUIRE(parse_replay_request(
    R"({"filter":{"ids":[2.0,1e1],"replay_of":7.0},"max_events":1e3,)"
    R"("rate_per_s":5.0})",
    defaults(), r, err));
  CHECK(r.filter.ids == std::vector<int64_t>{2, 10});
  CHECK(r.filter.replay_of == 7);
  CHECK(r.max_events == 1000);
  CHECK(r.rate_per_s == 5);
  CHECK(refused(R"({"filter":{"ids":[1.5]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"replay_of":0.5}})") == "bad_filter");
  CHECK(refused(R"({"filter":{},"max_events":0.0})") == "bad_request");
  CHECK(refused(R"({"filter":{},"max_events":10000001.0})") == "bad_request");
  CHECK(refused(R"({"filter":{"ids":[9.3e18]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":[1e300]}})") == "bad_filter");
}

// Found by the API fuzzer: a \u0000 in the body (here in a transform's
// value) reached PostgreSQL's jsonb with the job's request: 503
// db_unavailable instead of 400.
TEST_CASE("a body holding \\u0000 is a bad request", "[replay_json]") {
  CHECK(refused(R"({"filter":{},"transform":[{"op":"add","path":"/a",)"
                R"("value":["x\u0000"]}]})")
        == "bad_request");
  CHECK(refused(R"({"filter":{},"transform":[{"op":"add","path":"/a",)"
                R"("value":{"k\u0000":1}}]})")
        == "bad_request");
  // An escaped backslash before u0000 is no NUL.
  CHECK(refused(R"({"filter":{},"transform":[{"op":"add","path":"/a",)"
                R"("value":"\\u0000"}]})")
        .empty());
  dlq_bulk_request d;
  filter_error err;
  CHECK_FALSE(api::parse_dlq_bulk_request(
    R"({"filter":{},"transform":[{"op":"add","path":"/a",)"
    R"("value":"\u0000"}]})",
    "retry", defaults(), d, err));
  CHECK(err.code == "bad_request");
}

TEST_CASE("bad bodies are refused with a stable code", "[replay_json]") {
  CHECK(refused("") == "bad_request");
  CHECK(refused("[]") == "bad_request");
  CHECK(refused("{}") == "bad_request"); // filter required
  CHECK(refused(R"({"filter":[]})") == "bad_request");
  CHECK(refused(R"({"filter":{},"extra":1})") == "bad_request");
  CHECK(refused(R"({"filter":{"tenant":"x"}})") == "bad_request");
  CHECK(refused(R"({"filter":{"topic":"bad topic"}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"topic":7}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"from":"yesterday"}})") == "bad_time");
  CHECK(refused(R"({"filter":{"replays":"all"}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":[]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":[0]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":[-1]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":["1"]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{"ids":[1.5]}})") == "bad_filter");
  CHECK(refused(R"({"filter":{},"transform":{"op":"add"}})")
        == "bad_transform");
  CHECK(refused(R"({"filter":{},"transform":[{"op":"nope","path":"/a"}]})")
        == "bad_transform");
  CHECK(refused(R"({"filter":{},"target_topic":""})") == "bad_request");
  CHECK(refused(R"({"filter":{},"target_topic":"a b"})") == "bad_request");
  CHECK(refused(R"({"filter":{},"rate_per_s":0})") == "bad_request");
  CHECK(refused(R"({"filter":{},"rate_per_s":"5"})") == "bad_request");
  CHECK(refused(R"({"filter":{},"max_events":0})") == "bad_request");
  CHECK(refused(R"({"filter":{},"max_events":10000001})") == "bad_request");
  CHECK(refused(R"({"filter":{},"dry_run":"yes"})") == "bad_request");
  CHECK(refused(R"({"filter":{},"dry_run":false})").empty());
  CHECK(refused(R"({"filter":{},"transform":null})").empty());
}

TEST_CASE("plan and job JSON", "[replay_json]") {
  replay_plan p;
  p.matched = 3;
  p.by_topic = {{"t.a", "", 2}, {"t.b", "", 1}};
  p.by_tenant = {{"acme", "", 3}};
  p.first_received_at = "2024-05-01T00:00:00.000000Z";
  p.last_received_at = "2024-05-01T00:00:01.000000Z";
  p.sample_ids = {4};
  p.samples = {R"({"a":1})"};
  auto j = json::parse(api::plan_json(p));
  CHECK(j["matched"] == 3);
  CHECK(j["by_topic"]["t.a"] == 2);
  CHECK(j["by_tenant"]["acme"] == 3);
  CHECK(j["samples"][0]["event_id"] == 4);
  CHECK(j["samples"][0]["payload"]["a"] == 1);
  CHECK(j["first_received_at"] == p.first_received_at);
  CHECK(json::parse(api::plan_json(replay_plan{}))["first_received_at"]
          .is_null());

  job_row row;
  row.id = 7;
  row.kind = "replay";
  row.status = "queued";
  row.request = R"({"filter":{}})";
  row.matched = 10;
  row.requested_by = "ops";
  auto k = json::parse(api::job_json(row));
  CHECK(k["id"] == 7);
  CHECK(k["status"] == "queued");
  CHECK(k["request"]["filter"].is_object());
  CHECK(k["finished_at"].is_null());
  CHECK(k["last_error"].is_null());
  auto created = json::parse(api::job_created_json(row));
  CHECK(created == json::parse(R"({"job_id":7,"status":"queued",
                                  "matched":10})"));
  CHECK(json::parse(api::jobs_json({row, row})).size() == 2);
}
