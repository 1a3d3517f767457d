#include "api/dlq_json.hpp"

#include "api/admin_json.hpp" // looks_like_rfc3339
#include "api/transform.hpp"

#include <nlohmann/json.hpp>

namespace ces::api {

namespace {

using json = nlohmann::json;

bool fail(filter_error& err, std::string code, std::string message) {
  err.code = std::move(code);
  err.message = std::move(message);
  return false;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// Whitespace only (an empty body).
bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

bool parse_object(const std::string& body, json& doc, filter_error& err) {
  try {
    doc = json::parse(body);
  } catch (const json::exception&) {
    return fail(err, "bad_request", "the body must be a JSON object");
  }
  if (!doc.is_object())
    return fail(err, "bad_request", "the body must be a JSON object");
  return true;
}

} // namespace

bool parse_dlq_retry_request(const std::string& body, int64_t id,
                             dlq_retry_request& out, filter_error& err) {
  out = dlq_retry_request{};
  out.id = id;
  if (blank(body)) {
    out.body = "{}";
    return true;
  }
  json doc;
  if (!parse_object(body, doc, err))
    return false;
  bool has_transform = false;
  for (auto& [k, v] : doc.items()) {
    if (k == "mode") {
      if (!v.is_string()
          || (v.get<std::string>() != "journal"
              && v.get<std::string>() != "republish"))
        return fail(err, "bad_request",
                    "'mode' must be \"journal\" or \"republish\"");
      out.mode = v.get<std::string>();
    } else if (k == "payload") {
      // Any JSON value: its JSON text is what gets validated and journalled.
      out.has_payload = true;
      out.payload = dump(v);
    } else if (k == "transform") {
      if (v.is_null())
        continue;
      has_transform = true;
      out.transform = dump(v);
      std::string why;
      if (!check_patch(out.transform, why))
        return fail(err, "bad_transform", why);
    } else {
      return fail(err, "bad_request",
                  "unknown field '" + k + "': use mode, payload or transform");
    }
  }
  if (out.has_payload && has_transform)
    return fail(err, "bad_request",
                "give either 'payload' (the fixed value) or 'transform' (a "
                "JSON Patch of the stored bytes), not both");
  if (out.mode == "republish" && (out.has_payload || has_transform))
    return fail(err, "bad_request",
                "'payload' and 'transform' are for mode journal only: "
                "republish sends the stored bytes as received");
  out.body = dump(doc);
  return true;
}

bool parse_dlq_discard_request(const std::string& body, std::string& reason,
                               filter_error& err) {
  json doc;
  if (!parse_object(body, doc, err))
    return false;
  bool has_reason = false;
  for (auto& [k, v] : doc.items()) {
    if (k != "reason")
      return fail(err, "bad_request",
                  "unknown field '" + k + "': the body is {\"reason\": ...}");
    if (!v.is_string() || v.get<std::string>().empty()
        || v.get<std::string>().size() > max_discard_reason)
      return fail(err, "bad_request",
                  "'reason' must be text of 1 to "
                    + std::to_string(max_discard_reason) + " bytes");
    reason = v.get<std::string>();
    has_reason = true;
  }
  if (!has_reason)
    return fail(err, "bad_request",
                "'reason' is required: why the entry is discarded");
  return true;
}

bool parse_dlq_purge(const query_params& params, std::string& status,
                     std::string& before, filter_error& err) {
  const std::string* s = nullptr;
  const std::string* b = nullptr;
  for (auto& [k, v] : params) {
    if (k == "status")
      s = &v;
    else if (k == "before")
      b = &v;
  }
  if (s == nullptr || (*s != "resolved" && *s != "discarded"))
    return fail(err, "bad_filter",
                "'status' is required: resolved or discarded (open entries "
                "are never purged)");
  // In UTC: PostgreSQL refuses offsets beyond +-15:59.
  before = b == nullptr ? std::string{} : rfc3339_utc(*b);
  if (before.empty())
    return fail(err, "bad_time",
                "'before' is required: an RFC 3339 time such as "
                "2024-05-01T12:00:00Z");
  status = *s;
  return true;
}

std::string dlq_retry_result_json(const dlq_retry_result& r) {
  json j{{"dlq_id", r.dlq_id},
         {"status", r.status},
         {"mode", r.mode},
         {"attempts", r.attempts}};
  if (r.mode == "republish") {
    j["topic"] = r.topic;
    j["partition"] = r.partition;
    j["offset"] = r.offset;
  } else {
    j["event_id"] = r.event_id;
    j["tenant_id"] = r.tenant_id;
    j["topic"] = r.topic;
  }
  return dump(j);
}

std::string dlq_purged_json(int64_t deleted) {
  return dump(json{{"deleted", deleted}});
}

} // namespace ces::api
