// The OpenAPI document (api/openapi.yaml, served as api::openapi_json())
// against the router's table (api::route_table()): every route in both, with
// the same method, path parameters, query parameters, least role and
// security; the check itself is tested on documents made to disagree.
#include "api/auth.hpp"
#include "api/idempotency.hpp"
#include "api/openapi.hpp"
#include "api/routes.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

using json = nlohmann::json;
using ces::api::route_spec;

namespace {

/// `x` itself, or what its `$ref` (a local `#/...` pointer) points at.
const json& deref(const json& doc, const json& x) {
  if (!x.is_object() || !x.contains("$ref"))
    return x;
  auto ref = x["$ref"].get<std::string>();
  REQUIRE(ref.rfind("#/", 0) == 0);
  return doc.at(json::json_pointer(ref.substr(1)));
}

/// The names of the operation's (and its path item's) parameters `in`.
std::set<std::string> params_in(const json& doc, const json& item,
                                const json& op, const std::string& in) {
  std::set<std::string> out;
  for (auto* holder : {&item, &op})
    if (holder->contains("parameters"))
      for (auto& p : (*holder)["parameters"]) {
        auto& param = deref(doc, p);
        if (param.at("in") == in)
          out.insert(param.at("name").get<std::string>());
      }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string joined(const std::set<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ",") + x;
  return "{" + out + "}";
}

const std::set<std::string> http_methods{"get",     "put",  "post",
                                         "delete",  "options", "head",
                                         "patch",   "trace"};

/// Every way `doc` and `table` disagree, one line each; empty when they
/// agree.
std::vector<std::string> mismatches(const json& doc,
                                    const std::vector<route_spec>& table) {
  std::vector<std::string> out;
  const auto& paths = doc.at("paths");
  std::set<std::pair<std::string, std::string>> in_table;
  for (auto& spec : table) {
    std::string path(spec.pattern);
    auto method = lower(spec.method);
    auto what = std::string(spec.method) + " " + path;
    in_table.emplace(method, path);
    if (!paths.contains(path) || !paths[path].contains(method)) {
      out.push_back(what + ": missing from the document");
      continue;
    }
    const auto& item = paths[path];
    const auto& op = item[method];
    std::set<std::string> want_path;
    for (auto p : spec.path_params())
      want_path.emplace(p);
    auto got_path = params_in(doc, item, op, "path");
    if (got_path != want_path)
      out.push_back(what + ": path parameters " + joined(got_path)
                    + " in the document, " + joined(want_path)
                    + " in the router");
    std::set<std::string> want_query(spec.query.begin(), spec.query.end());
    auto got_query = params_in(doc, item, op, "query");
    if (got_query != want_query)
      out.push_back(what + ": query parameters " + joined(got_query)
                    + " in the document, " + joined(want_query)
                    + " in the router");
    bool keyed = params_in(doc, item, op, "header").count("Idempotency-Key")
                 != 0;
    if (keyed != ces::api::takes_idempotency_key(spec.kind))
      out.push_back(what + (keyed ? ": Idempotency-Key documented, not taken"
                                  : ": Idempotency-Key taken, not documented"));
    auto role = std::string(ces::auth::to_string(spec.min_role));
    if (op.value("x-min-role", std::string{}) != role)
      out.push_back(what + ": x-min-role is not " + role);
    // No credentials exactly where the router needs none.
    bool open = op.contains("security") && op["security"].empty();
    if (open != (spec.min_role == ces::api::role::none))
      out.push_back(what + ": security does not match role "
                    + role);
  }
  for (auto& [path, item] : paths.items())
    for (auto& [method, op] : item.items())
      if (http_methods.count(method) != 0
          && in_table.count({method, path}) == 0)
        out.push_back(lower(method) + " " + path
                      + ": in the document, not in the router");
  return out;
}

json document() {
  return json::parse(ces::api::openapi_json());
}

} // namespace

TEST_CASE("the document is OpenAPI 3.1 JSON") {
  auto doc = document();
  CHECK(doc["openapi"] == "3.1.0");
  CHECK(doc["components"]["securitySchemes"].contains("api_key"));
  CHECK(doc["components"]["securitySchemes"].contains("jwt"));
  CHECK(doc["components"]["securitySchemes"].contains("basic"));
}

TEST_CASE("the document and the router agree") {
  auto problems = mismatches(document(), ces::api::route_table());
  for (auto& p : problems)
    FAIL_CHECK(p);
  CHECK(problems.empty());
}

TEST_CASE("the check finds each kind of disagreement") {
  const auto& table = ces::api::route_table();
  auto doc = document();
  REQUIRE(mismatches(doc, table).empty());

  SECTION("a route missing from the document") {
    doc["paths"].erase("/dlq/{id}");
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 1);
    CHECK(p[0] == "GET /dlq/{id}: missing from the document");
  }
  SECTION("a route missing from the router") {
    auto fewer = table;
    fewer.erase(std::remove_if(fewer.begin(), fewer.end(),
                               [](auto& s) { return s.pattern == "/jobs"; }),
                fewer.end());
    auto p = mismatches(doc, fewer);
    REQUIRE(p.size() == 1);
    CHECK(p[0] == "get /jobs: in the document, not in the router");
  }
  SECTION("another method") {
    auto& item = doc["paths"]["/replays"];
    item["put"] = item["post"];
    item.erase("post");
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 2);
    CHECK(p[0] == "POST /replays: missing from the document");
    CHECK(p[1] == "put /replays: in the document, not in the router");
  }
  SECTION("a query parameter missing from the document") {
    auto& ps = doc["paths"]["/events"]["get"]["parameters"];
    ps.erase(ps.begin()); // tenant_id
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 1);
    CHECK(p[0].find("GET /events: query parameters") == 0);
  }
  SECTION("a query parameter the router does not take") {
    doc["paths"]["/events/latest"]["get"]["parameters"].push_back(
      {{"name", "since"}, {"in", "query"}, {"schema", {{"type", "string"}}}});
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 1);
    CHECK(p[0]
          == "GET /events/latest: query parameters {limit,since} in the "
             "document, {limit} in the router");
  }
  SECTION("a path parameter of another name") {
    doc["paths"]["/jobs/{id}"]["get"]["parameters"] = json::array(
      {{{"name", "job"}, {"in", "path"}, {"required", true},
        {"schema", {{"type", "integer"}}}}});
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 1);
    CHECK(p[0]
          == "GET /jobs/{id}: path parameters {job} in the document, {id} "
             "in the router");
  }
  SECTION("Idempotency-Key on a route that does not take it") {
    doc["paths"]["/jobs/{id}/cancel"]["post"]["parameters"].push_back(
      {{"$ref", "#/components/parameters/Idempotency-Key"}});
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 1);
    CHECK(p[0]
          == "POST /jobs/{id}/cancel: Idempotency-Key documented, not taken");
  }
  SECTION("another least role or security") {
    doc["paths"]["/keys"]["get"]["x-min-role"] = "viewer";
    doc["paths"]["/openapi.json"]["get"].erase("security");
    auto p = mismatches(doc, table);
    REQUIRE(p.size() == 2);
    CHECK(p[0] == "GET /openapi.json: security does not match role none");
    CHECK(p[1] == "GET /keys: x-min-role is not admin");
  }
}

TEST_CASE("every operation documents its errors as the error object") {
  auto doc = document();
  for (auto& [path, item] : doc["paths"].items())
    for (auto& [method, op] : item.items()) {
      INFO(method << " " << path);
      bool has_error = false;
      for (auto& [status, response] : op["responses"].items()) {
        if (status[0] != '4' && status[0] != '5')
          continue;
        has_error = true;
        if (path == "/ready" && status == "503")
          continue; // not ready: the readiness object itself

        auto& r = deref(doc, response);
        auto& schema = deref(doc, r["content"]["application/json"]["schema"]);
        CHECK(schema["required"] == json::array({"error", "message"}));
      }
      CHECK(has_error);
    }
}
