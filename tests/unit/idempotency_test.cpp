// Idempotency-Key, the pure parts (api/idempotency.cpp): which keys are
// valid, what a claim is bound to (fingerprint), how an answer settles it.
#include "api/idempotency.hpp"
#include "api/json.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace ces::api;

namespace {

parsed_request routed(std::string_view method, std::string_view target,
                      std::string body = {}) {
  auto r = route(method, target, body.size());
  REQUIRE(r.ok());
  r.request.body = std::move(body);
  return r.request;
}

} // namespace

TEST_CASE("valid_idempotency_key: 1..255 printable ASCII") {
  CHECK(valid_idempotency_key("a"));
  CHECK(valid_idempotency_key("8e3c5a2e-4d7b-4f1e-9a0b-2c6d8e1f3a5b"));
  CHECK(valid_idempotency_key("with inner space ~!"));
  CHECK(valid_idempotency_key(std::string(255, 'k')));
  CHECK_FALSE(valid_idempotency_key(""));
  CHECK_FALSE(valid_idempotency_key(std::string(256, 'k')));
  CHECK_FALSE(valid_idempotency_key(" lead"));
  CHECK_FALSE(valid_idempotency_key("trail "));
  CHECK_FALSE(valid_idempotency_key("tab\there"));
  CHECK_FALSE(valid_idempotency_key(std::string("nul\0x", 5)));
  CHECK_FALSE(valid_idempotency_key("caf\xc3\xa9"));
  CHECK_FALSE(valid_idempotency_key("del\x7f"));
}

TEST_CASE("only the acting POST routes take the key") {
  CHECK(takes_idempotency_key(route_kind::replay));
  CHECK(takes_idempotency_key(route_kind::replays_create));
  CHECK_FALSE(takes_idempotency_key(route_kind::key_create));
  CHECK_FALSE(takes_idempotency_key(route_kind::events_latest));
}

TEST_CASE("request_path fills in the route's parameters") {
  CHECK(request_path(routed("POST", "/replay/0042")) == "/replay/42");
  CHECK(request_path(routed("POST", "/replays")) == "/replays");
  CHECK(request_path(routed("POST", "/jobs/7/cancel")) == "/jobs/7/cancel");
  CHECK(request_path(routed("DELETE", "/keys/ops.1")) == "/keys/ops.1");
}

TEST_CASE("the fingerprint binds method, path and body") {
  auto a = request_fingerprint("POST", routed("POST", "/replay/1"));
  // SHA-256 of the empty body.
  CHECK(a
        == "POST /replay/1 "
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(request_fingerprint("POST", routed("POST", "/replay/01")) == a);
  CHECK(request_fingerprint("POST", routed("POST", "/replay/2")) != a);
  auto body1 = request_fingerprint(
    "POST", routed("POST", "/replays", R"({"filter":{"topic":"a"}})"));
  auto body2 = request_fingerprint(
    "POST", routed("POST", "/replays", R"({"filter":{"topic":"b"}})"));
  CHECK(body1 != body2);
  CHECK(body1.rfind("POST /replays ", 0) == 0);
  CHECK(body1.size() == std::string("POST /replays ").size() + 64);
}

TEST_CASE("settle: final answers are stored, unknown outcomes kept") {
  using s = idempotency_settlement;
  CHECK(settle(200, "{}") == s::complete);
  CHECK(settle(202, "{}") == s::complete);
  CHECK(settle(400, error_json("too_many_events", "x")) == s::complete);
  CHECK(settle(404, error_json("not_found", "x")) == s::complete);
  CHECK(settle(422, error_json("unprocessable", "x")) == s::complete);
  CHECK(settle(408, error_json("timeout", "x")) == s::release);
  CHECK(settle(409, error_json("conflict", "x")) == s::release);
  CHECK(settle(429, error_json("rate_limited", "x")) == s::release);
  CHECK(settle(500, error_json("internal", "x")) == s::release);
  CHECK(settle(502, error_json("broker_rejected", "x")) == s::release);
  CHECK(settle(503, error_json("db_unavailable", "x")) == s::release);
  CHECK(settle(503, error_json("unavailable", "x")) == s::release);
  CHECK(settle(503, error_json("overloaded", "x")) == s::release);
  CHECK(settle(503, error_json("upstream_timeout", "x")) == s::keep);
  CHECK(settle(503, error_json("dropped", "x")) == s::keep);
  CHECK(settle(504, error_json("timeout", "x")) == s::keep);
  // A code that only starts like one.
  CHECK(settle(503, error_json("upstream_timeouts", "x")) == s::release);
}
