#include "api/transform.hpp"

#include <nlohmann/json.hpp>

namespace ces::api {

namespace {

using json = nlohmann::json;

bool pointer_ok(const json& v) {
  if (!v.is_string())
    return false;
  try {
    json::json_pointer p{v.get<std::string>()};
    (void)p;
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

} // namespace

bool check_patch(const std::string& patch, std::string& why) {
  json doc;
  try {
    doc = json::parse(patch);
  } catch (const json::exception&) {
    why = "'transform' must be a JSON Patch (RFC 6902): a JSON array of "
          "operations";
    return false;
  }
  if (!doc.is_array()) {
    why = "'transform' must be a JSON array of operations (RFC 6902)";
    return false;
  }
  if (doc.size() > 100) {
    why = "'transform' has more than 100 operations";
    return false;
  }
  for (size_t i = 0; i < doc.size(); ++i) {
    auto& op = doc[i];
    auto at = "operation " + std::to_string(i) + ": ";
    if (!op.is_object() || !op.contains("op") || !op["op"].is_string()) {
      why = at + "an object with a string \"op\" is required";
      return false;
    }
    auto name = op["op"].get<std::string>();
    if (name != "add" && name != "remove" && name != "replace"
        && name != "move" && name != "copy" && name != "test") {
      why = at + "\"op\" must be add, remove, replace, move, copy or test";
      return false;
    }
    if (!op.contains("path") || !pointer_ok(op["path"])) {
      why = at + "\"path\" must be a JSON Pointer such as /a/b";
      return false;
    }
    if ((name == "move" || name == "copy")
        && (!op.contains("from") || !pointer_ok(op["from"]))) {
      why = at + "\"from\" must be a JSON Pointer";
      return false;
    }
    if ((name == "add" || name == "replace" || name == "test")
        && !op.contains("value")) {
      why = at + "\"value\" is required";
      return false;
    }
  }
  return true;
}

bool apply_patch(const std::string& payload, const std::string& patch,
                 std::string& out, std::string& why, bool same_tenant) {
  json doc;
  json ops;
  try {
    doc = json::parse(payload);
    ops = json::parse(patch);
  } catch (const json::exception& e) {
    why = std::string{"not JSON: "} + e.what();
    return false;
  }
  // The tenant an event belongs to is not the transform's to change: ingest
  // would journal the replay under another tenant (one the requester may not
  // see). The top-level "tenant_id" must be the same before and after.
  auto tenant_of = [](const json& d) -> json {
    if (d.is_object()) {
      auto it = d.find("tenant_id");
      if (it != d.end())
        return *it;
    }
    return json{}; // none
  };
  auto tenant_before = tenant_of(doc);
  // One operation at a time, so that a failure names its operation.
  for (size_t i = 0; i < ops.size(); ++i) {
    try {
      doc = doc.patch(json::array({ops[i]}));
    } catch (const json::exception& e) {
      why = "operation " + std::to_string(i) + " ("
            + ops[i].value("op", std::string{"?"}) + " "
            + ops[i].value("path", std::string{"?"}) + "): " + e.what();
      return false;
    }
  }
  if (same_tenant && tenant_of(doc) != tenant_before) {
    why = "the transform changes tenant_id: a replay stays with its tenant";
    return false;
  }
  try {
    out = doc.dump();
  } catch (const json::exception& e) {
    why = std::string{"the result cannot be written as JSON: "} + e.what();
    return false;
  }
  return true;
}

} // namespace ces::api
