// api/transform: JSON Patch checks and application for bulk replays.
#include "api/transform.hpp"

#include <catch2/catch.hpp>

using ces::api::apply_patch;
using ces::api::check_patch;

TEST_CASE("check_patch accepts RFC 6902 documents only", "[transform]") {
  std::string why;
  CHECK(check_patch(R"([{"op":"add","path":"/a","value":1}])", why));
  CHECK(check_patch(R"([{"op":"move","from":"/a","path":"/b"},
                        {"op":"test","path":"/b","value":null},
                        {"op":"remove","path":"/b"}])",
                    why));
  CHECK(check_patch("[]", why));
  for (auto bad : {R"({"op":"add"})", "not json", R"([{"path":"/a"}])",
                   R"([{"op":"frobnicate","path":"/a"}])",
                   R"([{"op":"add","path":"a","value":1}])",
                   R"([{"op":"add","path":"/a"}])",
                   R"([{"op":"copy","path":"/a"}])"}) {
    INFO(bad);
    CHECK_FALSE(check_patch(bad, why));
    CHECK_FALSE(why.empty());
  }
  std::string many = "[";
  for (int i = 0; i < 101; ++i)
    many += std::string{i ? "," : ""} + R"({"op":"remove","path":"/a"})";
  CHECK_FALSE(check_patch(many + "]", why));
}

TEST_CASE("apply_patch applies operations and names the one that fails",
          "[transform]") {
  std::string out, why;
  REQUIRE(apply_patch(R"({"tenant_id":"t","a":1})",
                      R"([{"op":"replace","path":"/a","value":2},
                          {"op":"add","path":"/b","value":[1]}])",
                      out, why));
  CHECK(out == R"({"a":2,"b":[1],"tenant_id":"t"})");
  CHECK_FALSE(apply_patch(R"({"tenant_id":"t","a":1})",
                          R"([{"op":"add","path":"/x","value":0},
                              {"op":"test","path":"/a","value":2}])",
                          out, why));
  CHECK(why.find("operation 1 (test /a)") != std::string::npos);
  CHECK_FALSE(apply_patch("not json", "[]", out, why));
}

TEST_CASE("a transform never moves an event to another tenant",
          "[transform]") {
  std::string out, why;
  auto event = R"({"tenant_id":"tenant-a","x":1})";
  for (auto patch :
       {R"([{"op":"replace","path":"/tenant_id","value":"tenant-b"}])",
        R"([{"op":"remove","path":"/tenant_id"}])",
        R"([{"op":"replace","path":"","value":{"tenant_id":"tenant-b"}}])",
        R"([{"op":"move","from":"/x","path":"/tenant_id"}])"}) {
    INFO(patch);
    CHECK_FALSE(apply_patch(event, patch, out, why));
    CHECK(why.find("tenant_id") != std::string::npos);
  }
  // A payload without tenant_id (its tenant came from a header) may not
  // gain one.
  CHECK_FALSE(apply_patch(R"({"x":1})",
                          R"([{"op":"add","path":"/tenant_id","value":"b"}])",
                          out, why));
  // Rewriting it to the same value is harmless.
  CHECK(apply_patch(event,
                    R"([{"op":"replace","path":"/tenant_id","value":"tenant-a"}])",
                    out, why));
}

TEST_CASE("fixing a dead letter may add or correct its tenant",
          "[transform]") {
  std::string out, why;
  REQUIRE(apply_patch(R"({"x":1})",
                      R"([{"op":"add","path":"/tenant_id","value":"b"}])",
                      out, why, false));
  CHECK(out == R"({"tenant_id":"b","x":1})");
  REQUIRE(apply_patch(R"({"tenant_id":7})",
                      R"([{"op":"replace","path":"/tenant_id","value":"t"}])",
                      out, why, false));
  CHECK(out == R"({"tenant_id":"t"})");
  // The other rules stay.
  CHECK_FALSE(apply_patch(R"({"x":1})",
                          R"([{"op":"test","path":"/x","value":2}])", out,
                          why, false));
  // Operations still fail as usual.
  CHECK_FALSE(apply_patch(R"({"x":1})",
                          R"([{"op":"remove","path":"/y"}])", out, why,
                          false));
}
