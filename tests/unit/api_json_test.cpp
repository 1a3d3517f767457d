// api/json.cpp: every body parses as JSON (checked with nlohmann), payloads
// are embedded as JSON, keys/headers/payload bytes that are not UTF-8 are
// base64, timestamps are RFC 3339.
#include "api/json.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

using nlohmann::json;
using namespace ces;

namespace {

storage::journal_event sample_event() {
  storage::journal_event e;
  e.id = 42;
  e.tenant_id = "t1";
  e.topic = "apexflow.jobs.created";
  e.partition = 3;
  e.offset = 17;
  e.has_key = true;
  e.key = "job-1";
  e.headers = {{"source", "crm", true}, {"trace", "", false}};
  e.payload_json = R"({"n": 1, "tenant_id": "t1", "x": [1, 2, {"y": null}]})";
  e.kafka_timestamp_ms = 1714564800123;
  e.received_at = "2024-05-01T12:00:01.654321Z";
  e.replay_of = 0;
  return e;
}

storage::dlq_entry_row sample_dlq() {
  storage::dlq_entry_row d;
  d.id = 7;
  d.topic = "apexflow.leads.created";
  d.has_partition = true;
  d.partition = 1;
  d.has_offset = true;
  d.offset = 99;
  d.has_payload = true;
  d.payload = "not json";
  d.payload_size = d.payload.size();
  d.error_class = "invalid_json";
  d.error = "unexpected character at byte 0";
  d.attempts = 1;
  d.status = "pending";
  d.received_at = "2024-05-01T12:00:01.000001Z";
  d.updated_at = "2024-05-01T12:00:02.000002Z";
  return d;
}

json parse(const std::string& text) {
  INFO(text);
  json j;
  REQUIRE_NOTHROW(j = json::parse(text));
  return j;
}

} // namespace

TEST_CASE("an event", "[json]") {
  auto e = sample_event();
  auto j = parse(api::event_json(e));
  CHECK(j["id"] == 42);
  CHECK(j["tenant_id"] == "t1");
  CHECK(j["topic"] == "apexflow.jobs.created");
  CHECK(j["partition"] == 3);
  CHECK(j["offset"] == 17);
  CHECK(j["key"] == "job-1");
  CHECK(j["headers"]
        == json::parse(R"([{"key":"source","value":"crm"},
                           {"key":"trace","value":null}])"));
  // The payload is JSON, not a string.
  REQUIRE(j["payload"].is_object());
  CHECK(j["payload"] == json::parse(e.payload_json));
  CHECK(j["kafka_timestamp"] == "2024-05-01T12:00:00.123Z");
  CHECK(j["received_at"] == "2024-05-01T12:00:01.654321Z");
  CHECK(j["replay_of"].is_null());
  CHECK(j["dlq_id"].is_null());
  // Members in the documented order, compact.
  auto text = api::event_json(e);
  CHECK(text.rfind(R"({"id":42,"tenant_id":"t1","topic":)", 0) == 0);
  CHECK(text.find("\"replay_of\":null,\"dlq_id\":null}")
        == text.size() - 31);
}

TEST_CASE("event keys, headers and replay_of", "[json]") {
  auto e = sample_event();
  SECTION("no key is null") {
    e.has_key = false;
    CHECK(parse(api::event_json(e))["key"].is_null());
  }
  SECTION("an empty key is an empty string") {
    e.key.clear();
    CHECK(parse(api::event_json(e))["key"] == "");
  }
  SECTION("a UTF-8 key with quotes and controls is an escaped string") {
    e.key = "k\"\\\n\xC3\xA9";
    CHECK(parse(api::event_json(e))["key"] == "k\"\\\n\xC3\xA9");
  }
  SECTION("a key with NUL is still a string") {
    e.key = std::string("a\0b", 3);
    CHECK(parse(api::event_json(e))["key"] == std::string("a\0b", 3));
  }
  SECTION("a binary key is base64") {
    e.key = std::string("\xff\x00\x01", 3);
    auto k = parse(api::event_json(e))["key"];
    REQUIRE(k.is_object());
    CHECK(k["base64"] == "/wAB");
  }
  SECTION("binary header values and keys are base64") {
    e.headers = {{"bin", std::string("\xff\xfe", 2), true},
                 {std::string("\xff", 1), "v", true},
                 {"nul", std::string("a\0", 2), true}};
    auto h = parse(api::event_json(e))["headers"];
    CHECK(h == json::parse(R"([{"key":"bin","value_b64":"//4="},
                               {"key_b64":"/w==","value":"v"},
                               {"key":"nul","value_b64":"YQA="}])"));
  }
  SECTION("no headers is []") {
    e.headers.clear();
    CHECK(parse(api::event_json(e))["headers"] == json::array());
  }
  SECTION("replay_of") {
    e.replay_of = 5;
    CHECK(parse(api::event_json(e))["replay_of"] == 5);
  }
  SECTION("dlq_id: the DLQ entry it was retried from") {
    e.dlq_id = 12;
    auto j = parse(api::event_json(e));
    CHECK(j["dlq_id"] == 12);
    CHECK(j["replay_of"].is_null());
  }
  SECTION("no Kafka timestamp") {
    e.kafka_timestamp_ms = -1;
    CHECK(parse(api::event_json(e))["kafka_timestamp"].is_null());
  }
  SECTION("payloads of every JSON kind") {
    for (auto p : {"[]", "\"s\"", "1.5e3", "null", "true", "{}",
                   R"({"deep": [[[[{"a": "\u00e9\ud83d\ude00"}]]]]})"}) {
      e.payload_json = p;
      CHECK(parse(api::event_json(e))["payload"] == json::parse(p));
    }
  }
  SECTION("invalid UTF-8 in text fields becomes U+FFFD") {
    e.tenant_id = "t\xff";
    CHECK(parse(api::event_json(e))["tenant_id"] == "t\xEF\xBF\xBD");
  }
}

TEST_CASE("event lists", "[json]") {
  CHECK(api::events_json({}) == "[]");
  auto a = sample_event();
  auto b = sample_event();
  b.id = 41;
  auto j = parse(api::events_json({a, b}));
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 2);
  CHECK(j[0]["id"] == 42);
  CHECK(j[1]["id"] == 41);
}

TEST_CASE("DLQ payload variants", "[json]") {
  auto d = sample_dlq();
  SECTION("valid JSON is embedded as JSON") {
    d.payload = R"({"tenant_id": 5, "a": [1]})"; // rejected for its tenant
    d.payload_size = d.payload.size();
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "json");
    CHECK(j["payload"] == json::parse(d.payload));
    CHECK(j["payload_bytes"] == d.payload.size());
    CHECK(j["payload_truncated"] == false);
  }
  SECTION("a JSON scalar is embedded too") {
    d.payload = "123";
    d.payload_size = 3;
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "json");
    CHECK(j["payload"] == 123);
  }
  SECTION("JSON that PostgreSQL refused (db_rejected) is a string") {
    d.payload = R"({"tenant_id":"t","n":1e1000000})";
    d.payload_size = d.payload.size();
    d.error_class = "db_rejected";
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == d.payload);
  }
  SECTION("text that is not JSON is a string") {
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == "not json");
  }
  SECTION("JSON that jsonb refuses (\\u0000) is a string") {
    d.payload = R"({"s": "\u0000"})";
    d.payload_size = d.payload.size();
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == d.payload);
  }
  SECTION("too deep JSON is a string") {
    d.payload = std::string(600, '[') + std::string(600, ']');
    d.payload_size = d.payload.size();
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
  }
  SECTION("bytes that are not UTF-8 are base64") {
    d.payload = std::string("not json \xfe\0 at all", 18);
    d.payload_size = d.payload.size();
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "base64");
    CHECK(j["payload"]["base64"] == "bm90IGpzb24g/gAgYXQgYWxs");
  }
  SECTION("an empty payload is an empty string") {
    d.payload.clear();
    d.payload_size = 0;
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == "");
  }
  SECTION("a null payload is null") {
    d.has_payload = false;
    d.payload.clear();
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "null");
    CHECK(j["payload"].is_null());
    CHECK(j["payload_bytes"] == 0);
  }
  SECTION("a truncated payload is never JSON; a cut UTF-8 tail is dropped") {
    d.payload = "[1,2,3]";
    d.payload_size = 100;
    d.payload_truncated = true;
    auto j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == "[1,2,3]");
    CHECK(j["payload_truncated"] == true);
    CHECK(j["payload_bytes"] == 100);
    d.payload = "ab\xE2\x82"; // "ab" + first two bytes of the euro sign
    j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "text");
    CHECK(j["payload"] == "ab");
    d.payload = "\xff\xfe\xfd\xfc\xfb";
    j = parse(api::dlq_entry_json(d));
    CHECK(j["payload_format"] == "base64");
  }
}

TEST_CASE("DLQ entry fields", "[json]") {
  auto d = sample_dlq();
  auto j = parse(api::dlq_entry_json(d));
  CHECK(j["id"] == 7);
  CHECK(j["topic"] == "apexflow.leads.created");
  CHECK(j["partition"] == 1);
  CHECK(j["offset"] == 99);
  CHECK(j["key"].is_null());
  CHECK(j["headers"] == json::array());
  CHECK(j["kafka_timestamp"].is_null());
  CHECK(j["tenant_id"].is_null());
  CHECK(j["error_class"] == "invalid_json");
  CHECK(j["error"] == "unexpected character at byte 0");
  CHECK(j["attempts"] == 1);
  CHECK(j["status"] == "pending");
  CHECK(j["received_at"] == "2024-05-01T12:00:01.000001Z");
  CHECK(j["updated_at"] == "2024-05-01T12:00:02.000002Z");
  // Still open, never retried: the resolution fields are null.
  for (auto name : {"next_attempt_at", "last_attempt_at", "resolution",
                    "resolved_event_id", "discard_reason", "resolved_by"}) {
    INFO(name);
    REQUIRE(j.contains(name));
    CHECK(j[name].is_null());
  }
  d.has_partition = false;
  d.has_offset = false;
  d.tenant_id = "t9";
  d.has_key = true;
  d.key = "k";
  d.kafka_timestamp_ms = 0;
  j = parse(api::dlq_entry_json(d));
  CHECK(j["partition"].is_null());
  CHECK(j["offset"].is_null());
  CHECK(j["tenant_id"] == "t9");
  CHECK(j["key"] == "k");
  CHECK(j["kafka_timestamp"] == "1970-01-01T00:00:00.000Z");
  // Retried automatically, then fixed into the journal.
  d.status = "resolved";
  d.next_attempt_at = "2024-05-01T12:05:00.000000Z";
  d.last_attempt_at = "2024-05-01T12:10:00.000000Z";
  d.resolution = "journal";
  d.resolved_event_id = 314;
  d.resolved_by = "ops";
  j = parse(api::dlq_entry_json(d));
  CHECK(j["status"] == "resolved");
  CHECK(j["next_attempt_at"] == "2024-05-01T12:05:00.000000Z");
  CHECK(j["last_attempt_at"] == "2024-05-01T12:10:00.000000Z");
  CHECK(j["resolution"] == "journal");
  CHECK(j["resolved_event_id"] == 314);
  CHECK(j["resolved_by"] == "ops");
  CHECK(j["discard_reason"].is_null());
  d.resolution = "discard";
  d.resolved_event_id = 0;
  d.discard_reason = "test traffic";
  j = parse(api::dlq_entry_json(d));
  CHECK(j["discard_reason"] == "test traffic");
  CHECK(j["resolution"] == "discard");
  CHECK(j["resolved_event_id"].is_null());
  CHECK(api::dlq_json({}) == "[]");
  auto list = parse(api::dlq_json({d, sample_dlq()}));
  CHECK(list.size() == 2);
}

TEST_CASE("error, replay, health and ready bodies", "[json]") {
  auto e = parse(api::error_json("bad_id", "id 'x' is not \"valid\"\n"));
  CHECK(e == json::parse(R"({"error":"bad_id",
                            "message":"id 'x' is not \"valid\"\n"})"));
  auto bad = parse(api::error_json("x", "bytes \xff\xfe"));
  CHECK(bad["message"] == "bytes \xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(api::health_json()
        == R"({"status":"healthy","service":"crm-events-sink"})");
  auto r = parse(api::replay_json(42, "apexflow.jobs.created", 2, 1234,
                                  "0b9e5b8e-3c2f-4a53-9a0e-0d7c1f5e2a11"));
  CHECK(r == json::parse(R"({"status":"replayed","event_id":42,
                            "topic":"apexflow.jobs.created","partition":2,
                            "offset":1234,
                            "replay_id":"0b9e5b8e-3c2f-4a53-9a0e-0d7c1f5e2a11"})"));
  std::vector<api::readiness_check> checks{{"postgres", true, ""},
                                           {"kafka", false, "all brokers down"},
                                           {"actor:consumer", true, "up"}};
  CHECK_FALSE(api::all_ready(checks));
  auto rd = parse(api::ready_json(checks));
  CHECK(rd["status"] == "not_ready");
  CHECK(rd["failing"] == json::parse(R"(["kafka"])"));
  CHECK(rd["checks"]["postgres"] == json::parse(R"({"ok":true})"));
  CHECK(rd["checks"]["kafka"]
        == json::parse(R"({"ok":false,"detail":"all brokers down"})"));
  checks[1].ok = true;
  CHECK(api::all_ready(checks));
  CHECK(parse(api::ready_json(checks))["status"] == "ready");
  CHECK_FALSE(api::all_ready({}));
}

TEST_CASE("rfc3339_ms", "[json]") {
  CHECK(api::rfc3339_ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(api::rfc3339_ms(1714564800123) == "2024-05-01T12:00:00.123Z");
  CHECK(api::rfc3339_ms(951782400000) == "2000-02-29T00:00:00.000Z");
  CHECK(api::rfc3339_ms(253402300799999) == "9999-12-31T23:59:59.999Z");
  CHECK(api::rfc3339_ms(-1) == "1969-12-31T23:59:59.999Z");
}
