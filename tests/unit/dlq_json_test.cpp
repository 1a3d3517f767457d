// POST /dlq/{id}/retry and /discard bodies, DELETE /dlq parameters and the
// retry answer (api/dlq_json.cpp).
#include "api/dlq_json.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace ces;
using ces::api::filter_error;
using json = nlohmann::json;

namespace {

/// The error code of a refused retry body ("" when accepted).
std::string refused(const std::string& body) {
  dlq_retry_request r;
  filter_error err;
  if (api::parse_dlq_retry_request(body, 7, r, err))
    return "";
  CHECK(!err.message.empty());
  return err.code;
}

std::string refused_discard(const std::string& body) {
  std::string reason;
  filter_error err;
  if (api::parse_dlq_discard_request(body, reason, err))
    return "";
  CHECK(!err.message.empty());
  return err.code;
}

std::string refused_purge(const api::query_params& params) {
  std::string status, before;
  filter_error err;
  if (api::parse_dlq_purge(params, status, before, err))
    return "";
  CHECK(!err.message.empty());
  return err.code;
}

} // namespace

TEST_CASE("an empty retry body is journal mode with the stored bytes",
          "[dlq_json]") {
  for (std::string body : {"", "  \r\n", "{}"}) {
    dlq_retry_request r;
    filter_error err;
    REQUIRE(api::parse_dlq_retry_request(body, 42, r, err));
    CHECK(r.id == 42);
    CHECK(r.mode == "journal");
    CHECK_FALSE(r.has_payload);
    CHECK(r.transform.empty());
    CHECK(r.body == "{}");
  }
}

TEST_CASE("a retry body with a payload journals its JSON text",
          "[dlq_json]") {
  dlq_retry_request r;
  filter_error err;
  REQUIRE(api::parse_dlq_retry_request(
    R"({"mode":"journal","payload":{"tenant_id":"t1","n":1}})", 3, r, err));
  CHECK(r.mode == "journal");
  REQUIRE(r.has_payload);
  CHECK(json::parse(r.payload) == json{{"tenant_id", "t1"}, {"n", 1}});
  CHECK(json::parse(r.body)["payload"]["n"] == 1);
  // Any JSON value, null included (it then fails validation in the store).
  REQUIRE(api::parse_dlq_retry_request(R"({"payload":"text"})", 3, r, err));
  CHECK(r.payload == "\"text\"");
  REQUIRE(api::parse_dlq_retry_request(R"({"payload":null})", 3, r, err));
  CHECK(r.has_payload);
  CHECK(r.payload == "null");
}

TEST_CASE("a retry body with a transform keeps the checked patch",
          "[dlq_json]") {
  dlq_retry_request r;
  filter_error err;
  REQUIRE(api::parse_dlq_retry_request(
    R"({"transform":[{"op":"add","path":"/tenant_id","value":"t1"}]})", 3, r,
    err));
  CHECK_FALSE(r.has_payload);
  CHECK(json::parse(r.transform)[0]["path"] == "/tenant_id");
  // A null transform is no transform.
  REQUIRE(api::parse_dlq_retry_request(R"({"transform":null})", 3, r, err));
  CHECK(r.transform.empty());
  REQUIRE(api::parse_dlq_retry_request(R"({"mode":"republish"})", 3, r, err));
  CHECK(r.mode == "republish");
}

TEST_CASE("bad retry bodies are refused with a stable code", "[dlq_json]") {
  CHECK(refused("[]") == "bad_request");
  CHECK(refused("nope") == "bad_request");
  CHECK(refused(R"({"mode":"later"})") == "bad_request");
  CHECK(refused(R"({"mode":1})") == "bad_request");
  CHECK(refused(R"({"bytes":"x"})") == "bad_request");
  CHECK(refused(R"({"payload":{},"transform":[]})") == "bad_request");
  CHECK(refused(R"({"mode":"republish","payload":{}})") == "bad_request");
  CHECK(refused(R"({"mode":"republish","transform":[]})") == "bad_request");
  CHECK(refused(R"({"transform":{"op":"add"}})") == "bad_transform");
  CHECK(refused(R"({"transform":[{"op":"frob","path":"/a"}]})")
        == "bad_transform");
  CHECK(refused(R"({"transform":[{"op":"add","path":"/a"}]})")
        == "bad_transform");
}

TEST_CASE("a discard body needs a reason of 1 to 1000 bytes", "[dlq_json]") {
  std::string reason;
  filter_error err;
  REQUIRE(api::parse_dlq_discard_request(R"({"reason":"test data"})", reason,
                                         err));
  CHECK(reason == "test data");
  std::string longest(1000, 'x');
  REQUIRE(api::parse_dlq_discard_request(json{{"reason", longest}}.dump(),
                                         reason, err));
  CHECK(reason.size() == 1000);
  CHECK(refused_discard(json{{"reason", longest + "x"}}.dump())
        == "bad_request");
  CHECK(refused_discard("") == "bad_request");
  CHECK(refused_discard("{}") == "bad_request");
  CHECK(refused_discard(R"({"reason":""})") == "bad_request");
  CHECK(refused_discard(R"({"reason":3})") == "bad_request");
  CHECK(refused_discard(R"({"reason":"x","why":"y"})") == "bad_request");
  CHECK(refused_discard(R"("x")") == "bad_request");
}

TEST_CASE("purge needs a closed status and a time", "[dlq_json]") {
  std::string status, before;
  filter_error err;
  REQUIRE(api::parse_dlq_purge(
    {{"status", "resolved"}, {"before", "2024-05-01T12:00:00Z"}}, status,
    before, err));
  CHECK(status == "resolved");
  CHECK(before == "2024-05-01T12:00:00Z");
  REQUIRE(api::parse_dlq_purge(
    {{"before", "2024-05-01T12:00:00.5+02:00"}, {"status", "discarded"}},
    status, before, err));
  CHECK(status == "discarded");
  CHECK(refused_purge({{"before", "2024-05-01T12:00:00Z"}}) == "bad_filter");
  CHECK(refused_purge({{"status", "pending"},
                       {"before", "2024-05-01T12:00:00Z"}})
        == "bad_filter");
  CHECK(refused_purge({{"status", "resolved"}}) == "bad_time");
  CHECK(refused_purge({{"status", "resolved"}, {"before", "yesterday"}})
        == "bad_time");
}

TEST_CASE("the retry answer carries the fields of its mode", "[dlq_json]") {
  dlq_retry_result r;
  r.dlq_id = 5;
  r.status = "resolved";
  r.mode = "journal";
  r.event_id = 99;
  r.tenant_id = "t1";
  r.topic = "crm.leads";
  r.attempts = 2;
  auto j = json::parse(api::dlq_retry_result_json(r));
  CHECK(j == json{{"dlq_id", 5},      {"status", "resolved"},
                  {"mode", "journal"}, {"attempts", 2},
                  {"event_id", 99},    {"tenant_id", "t1"},
                  {"topic", "crm.leads"}});
  r.mode = "republish";
  r.event_id = 0;
  r.tenant_id.clear();
  r.partition = 1;
  r.offset = 17;
  j = json::parse(api::dlq_retry_result_json(r));
  CHECK(j == json{{"dlq_id", 5},        {"status", "resolved"},
                  {"mode", "republish"}, {"attempts", 2},
                  {"topic", "crm.leads"}, {"partition", 1},
                  {"offset", 17}});
  CHECK(json::parse(api::dlq_purged_json(12)) == json{{"deleted", 12}});
}
