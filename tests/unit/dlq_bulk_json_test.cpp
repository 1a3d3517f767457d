// POST /dlq/retry and POST /dlq/discard bodies (api/replay_json.cpp,
// parse_dlq_bulk_request): filters, ids, mode, transform, reason,
// max_events, dry run, members of the other action, unknown members; the
// JSON of a DLQ plan.
#include "api/replay_json.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace ces;
using ces::api::filter_error;
using ces::api::parse_dlq_bulk_request;
using json = nlohmann::json;

namespace {

api::replay_defaults defaults(int64_t max = 100000) {
  api::replay_defaults d;
  d.max_events = max;
  return d;
}

/// The error code of a refused body ("" when accepted).
std::string refused(const std::string& action, const std::string& body) {
  dlq_bulk_request r;
  filter_error err;
  if (parse_dlq_bulk_request(body, action, defaults(), r, err))
    return "";
  CHECK(!err.message.empty());
  return err.code;
}

} // namespace

TEST_CASE("a full retry request is parsed", "[dlq_bulk_json]") {
  dlq_bulk_request r;
  filter_error err;
  auto body = R"({"filter":{"status":"failed","error_class":"missing_tenant",
    "topic":"crm.x","tenant_id":"acme","from":"2024-05-01T00:00:00Z",
    "to":"2024-05-02T00:00:00Z","ids":[9,3,3]},"mode":"journal",
    "transform":[{"op":"add","path":"/tenant_id","value":"acme"}],
    "max_events":50,"dry_run":true})";
  REQUIRE(parse_dlq_bulk_request(body, "retry", defaults(), r, err));
  CHECK(r.action == "retry");
  CHECK(r.filter.status == "failed");
  CHECK(r.filter.error_class == "missing_tenant");
  CHECK(r.filter.topic == "crm.x");
  CHECK(r.filter.tenant_id == "acme");
  CHECK(r.filter.from == "2024-05-01T00:00:00Z");
  CHECK(r.filter.to == "2024-05-02T00:00:00Z");
  CHECK(r.ids == std::vector<int64_t>{3, 9});
  CHECK(r.mode == "journal");
  CHECK(json::parse(r.transform)
        == json::parse(R"([{"op":"add","path":"/tenant_id","value":"acme"}])"));
  CHECK(r.max_events == 50);
  CHECK(r.dry_run);
  CHECK(json::parse(r.body) == json::parse(body));
}

TEST_CASE("defaults: pending entries, journal mode, max_events from the "
          "setting",
          "[dlq_bulk_json]") {
  dlq_bulk_request r;
  filter_error err;
  REQUIRE(parse_dlq_bulk_request(R"({"filter":{}})", "retry", defaults(77),
                                 r, err));
  CHECK(r.filter.status == "pending");
  CHECK(r.mode == "journal");
  CHECK(r.transform.empty());
  CHECK(r.ids.empty());
  CHECK(r.max_events == 77);
  CHECK_FALSE(r.dry_run);
  REQUIRE(parse_dlq_bulk_request(R"({"filter":{},"mode":"republish"})",
                                 "retry", defaults(), r, err));
  CHECK(r.mode == "republish");
}

TEST_CASE("a discard request needs its reason", "[dlq_bulk_json]") {
  dlq_bulk_request r;
  filter_error err;
  REQUIRE(parse_dlq_bulk_request(
    R"({"filter":{"error_class":"invalid_json"},"reason":"junk"})",
    "discard", defaults(), r, err));
  CHECK(r.action == "discard");
  CHECK(r.reason == "junk");
  CHECK(r.filter.status == "pending");
  CHECK(r.filter.error_class == "invalid_json");
  CHECK(refused("discard", R"({"filter":{}})") == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":""})") == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":7})") == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":")"
                             + std::string(1001, 'x') + "\"}")
        == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":")"
                             + std::string(1000, 'x') + "\"}")
        == "");
}

TEST_CASE("members of the other action are refused", "[dlq_bulk_json]") {
  CHECK(refused("retry", R"({"filter":{},"reason":"x"})") == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":"x","mode":"journal"})")
        == "bad_request");
  CHECK(refused("discard", R"({"filter":{},"reason":"x","transform":[]})")
        == "bad_request");
}

TEST_CASE("bad bodies are refused with their code", "[dlq_bulk_json]") {
  // Not an object, no filter, unknown members.
  CHECK(refused("retry", "[]") == "bad_request");
  CHECK(refused("retry", "{") == "bad_request");
  CHECK(refused("retry", "{}") == "bad_request");
  CHECK(refused("retry", R"({"filter":{},"target_topic":"x"})")
        == "bad_request");
  CHECK(refused("retry", R"({"filter":{"key":"k"}})") == "bad_request");
  CHECK(refused("retry", R"({"filter":[]})") == "bad_request");
  // Filters: only open statuses, valid values.
  CHECK(refused("retry", R"({"filter":{"status":"resolved"}})")
        == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"status":"discarded"}})")
        == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"status":"nope"}})") == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"error_class":"Bad Class"}})")
        == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"topic":7}})") == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"from":"yesterday"}})") == "bad_time");
  // ids: 1..10 000 positive integers.
  CHECK(refused("retry", R"({"filter":{"ids":[]}})") == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"ids":[0]}})") == "bad_filter");
  CHECK(refused("retry", R"({"filter":{"ids":["1"]}})") == "bad_filter");
  std::string many = R"({"filter":{"ids":[)";
  for (int i = 1; i <= 10001; ++i)
    many += (i > 1 ? "," : "") + std::to_string(i);
  CHECK(refused("retry", many + "]}}") == "bad_filter");
  // mode, transform, max_events, dry_run.
  CHECK(refused("retry", R"({"filter":{},"mode":"later"})") == "bad_request");
  CHECK(refused("retry", R"({"filter":{},"transform":{"op":"add"}})")
        == "bad_transform");
  CHECK(refused("retry", R"({"filter":{},"mode":"republish",)"
                         R"("transform":[{"op":"remove","path":"/a"}]})")
        == "bad_request");
  CHECK(refused("retry", R"({"filter":{},"max_events":0})") == "bad_request");
  CHECK(refused("retry", R"({"filter":{},"max_events":10000001})")
        == "bad_request");
  CHECK(refused("retry", R"({"filter":{},"dry_run":"yes"})")
        == "bad_request");
}

TEST_CASE("the DLQ plan's JSON", "[dlq_bulk_json]") {
  dlq_plan p;
  p.matched = 3;
  p.by_error_class = {{"invalid_json", "", 2}, {"missing_tenant", "", 1}};
  p.by_topic = {{"crm", "", 3}};
  p.by_tenant = {{"", "", 1}, {"acme", "", 2}};
  p.sample_ids = {4, 5, 9};
  CHECK(json::parse(api::dlq_plan_json(p))
        == json::parse(R"({"dry_run":true,"matched":3,
             "by_error_class":{"invalid_json":2,"missing_tenant":1},
             "by_topic":{"crm":3},"by_tenant":{"":1,"acme":2},
             "sample_ids":[4,5,9]})"));
  CHECK(json::parse(api::dlq_plan_json(dlq_plan{}))
        == json::parse(R"({"dry_run":true,"matched":0,"by_error_class":{},
             "by_topic":{},"by_tenant":{},"sample_ids":[]})"));
}
