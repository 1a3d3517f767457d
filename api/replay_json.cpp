#include "api/replay_json.hpp"

#include "api/transform.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

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

/// A positive integer in [1, max]: a JSON number without a fraction (also
/// written `5.0` or `5e3`, as JSON Schema's integer allows), not a string.
bool positive(const json& v, int64_t max, int64_t& out) {
  if (v.is_number_float()) {
    auto d = v.get<double>();
    // 2^63 and beyond do not fit an int64_t.
    if (!(d >= 1) || d >= 9223372036854775808.0 || d != std::floor(d)
        || static_cast<int64_t>(d) > max)
      return false;
    out = static_cast<int64_t>(d);
    return true;
  }
  if (!v.is_number_integer())
    return false;
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u == 0 || u > static_cast<uint64_t>(max))
      return false;
    out = static_cast<int64_t>(u);
    return true;
  }
  auto i = v.get<int64_t>();
  if (i < 1 || i > max)
    return false;
  out = i;
  return true;
}

/// True when a string or member name anywhere in `j` holds a NUL
/// (`\u0000`): PostgreSQL's jsonb refuses it, and the body is stored as
/// the job's request.
bool holds_nul(const json& j) {
  if (j.is_string())
    return j.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (j.is_array())
    return std::any_of(j.begin(), j.end(), holds_nul);
  if (j.is_object())
    for (auto& [k, v] : j.items())
      if (k.find('\0') != std::string::npos || holds_nul(v))
        return true;
  return false;
}

/// A Kafka topic name: [A-Za-z0-9._-]{1,249}.
bool topic_name(const std::string& s) {
  if (s.empty() || s.size() > 249)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

/// 1..max_replay_ids positive ids (of `what` rows), sorted and unique.
bool parse_ids(const json& v, const std::string& what,
               std::vector<int64_t>& out, filter_error& err) {
  if (!v.is_array() || v.empty() || v.size() > max_replay_ids)
    return fail(err, "bad_filter",
                "'ids' must be an array of 1 to "
                  + std::to_string(max_replay_ids) + " " + what + " ids");
  out.reserve(v.size());
  for (auto& x : v) {
    int64_t id = 0;
    if (!positive(x, INT64_MAX, id))
      return fail(err, "bad_filter",
                  "'ids' must hold " + what + " ids (positive integers)");
    out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return true;
}

bool parse_filter(const json& f, event_filter& out, filter_error& err) {
  if (!f.is_object())
    return fail(err, "bad_request",
                "'filter' must be an object of /events filters or 'ids'");
  static const char* names[] = {"tenant_id", "topic", "key", "from",
                                "to", "replays", "replay_of"};
  query_params params;
  for (auto& [k, v] : f.items()) {
    if (k == "ids")
      continue;
    if (std::find(std::begin(names), std::end(names), k) == std::end(names))
      return fail(err, "bad_request",
                  "unknown filter '" + k
                    + "': use tenant_id, topic, key, from, to, replays, "
                      "replay_of or ids");
    if (v.is_string())
      params.emplace_back(k, v.get<std::string>());
    else if (k == "replay_of" && v.is_number_integer())
      params.emplace_back(k, v.dump());
    else if (int64_t id = 0; k == "replay_of" && v.is_number_float()
                             && positive(v, INT64_MAX, id))
      params.emplace_back(k, std::to_string(id));
    else
      return fail(err, "bad_filter", "filter '" + k + "' must be a string");
  }
  if (!parse_event_filter(params, out, err))
    return false;
  if (auto i = f.find("ids"); i != f.end())
    return parse_ids(*i, "journal", out.ids, err);
  return true;
}

bool parse_dlq_filter_object(const json& f, dlq_bulk_request& out,
                             filter_error& err) {
  if (!f.is_object())
    return fail(err, "bad_request",
                "'filter' must be an object of /dlq filters or 'ids'");
  static const char* names[] = {"status", "error_class", "topic",
                                "tenant_id", "from", "to"};
  query_params params;
  for (auto& [k, v] : f.items()) {
    if (k == "ids")
      continue;
    if (std::find(std::begin(names), std::end(names), k) == std::end(names))
      return fail(err, "bad_request",
                  "unknown filter '" + k
                    + "': use status, error_class, topic, tenant_id, from, "
                      "to or ids");
    if (!v.is_string())
      return fail(err, "bad_filter", "filter '" + k + "' must be a string");
    params.emplace_back(k, v.get<std::string>());
  }
  if (!parse_dlq_filter(params, out.filter, err))
    return false;
  // Only open entries are acted on.
  if (out.filter.status.empty())
    out.filter.status = "pending";
  else if (out.filter.status != "pending" && out.filter.status != "failed")
    return fail(err, "bad_filter",
                "'status' must be pending or failed (only open entries are "
                "retried or discarded)");
  if (auto i = f.find("ids"); i != f.end())
    return parse_ids(*i, "DLQ", out.ids, err);
  return true;
}

json opt(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json job_object(const job_row& j) {
  json request;
  try {
    request = json::parse(j.request);
  } catch (const json::exception&) {
    request = j.request;
  }
  return json{{"id", j.id},
              {"kind", j.kind},
              {"status", j.status},
              {"matched", j.matched},
              {"done", j.done},
              {"failed", j.failed},
              {"requested_by", j.requested_by},
              {"request_id", opt(j.request_id)},
              {"request", std::move(request)},
              {"last_error", opt(j.last_error)},
              {"cancel_requested", j.cancel_requested},
              {"created_at", opt(j.created_at)},
              {"started_at", opt(j.started_at)},
              {"finished_at", opt(j.finished_at)}};
}

} // namespace

bool parse_replay_request(const std::string& body,
                          const replay_defaults& defaults,
                          replay_request& out, filter_error& err) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception&) {
    return fail(err, "bad_request", "the body must be a JSON object");
  }
  if (!doc.is_object())
    return fail(err, "bad_request", "the body must be a JSON object");
  if (holds_nul(doc))
    return fail(err, "bad_request",
                "the body must not hold \\u0000 (PostgreSQL cannot store it)");
  out = replay_request{};
  out.max_events = defaults.max_events;
  bool has_filter = false;
  for (auto& [k, v] : doc.items()) {
    if (k == "filter") {
      has_filter = true;
      if (!parse_filter(v, out.filter, err))
        return false;
    } else if (k == "transform") {
      if (v.is_null())
        continue;
      out.transform = dump(v);
      std::string why;
      if (!check_patch(out.transform, why))
        return fail(err, "bad_transform", why);
    } else if (k == "target_topic") {
      if (!v.is_string() || !topic_name(v.get<std::string>()))
        return fail(err, "bad_request",
                    "'target_topic' must be a Kafka topic name "
                    "([A-Za-z0-9._-], 1..249 characters)");
      out.target_topic = v.get<std::string>();
    } else if (k == "rate_per_s") {
      int64_t n = 0;
      if (!positive(v, 1000000, n))
        return fail(err, "bad_request",
                    "'rate_per_s' must be an integer from 1 to 1000000");
      out.rate_per_s = static_cast<int32_t>(n);
    } else if (k == "max_events") {
      if (!positive(v, 10000000, out.max_events))
        return fail(err, "bad_request",
                    "'max_events' must be an integer from 1 to 10000000");
    } else if (k == "dry_run") {
      if (!v.is_boolean())
        return fail(err, "bad_request", "'dry_run' must be true or false");
      out.dry_run = v.get<bool>();
    } else {
      return fail(err, "bad_request",
                  "unknown field '" + k
                    + "': use filter, transform, target_topic, rate_per_s, "
                      "max_events or dry_run");
    }
  }
  if (!has_filter)
    return fail(err, "bad_request",
                "'filter' is required ({} selects every event of your "
                "tenants, up to max_events)");
  out.body = dump(doc);
  return true;
}

bool parse_dlq_bulk_request(const std::string& body, const std::string& action,
                            const replay_defaults& defaults,
                            dlq_bulk_request& out, filter_error& err) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception&) {
    return fail(err, "bad_request", "the body must be a JSON object");
  }
  if (!doc.is_object())
    return fail(err, "bad_request", "the body must be a JSON object");
  if (holds_nul(doc))
    return fail(err, "bad_request",
                "the body must not hold \\u0000 (PostgreSQL cannot store it)");
  out = dlq_bulk_request{};
  out.action = action;
  out.max_events = defaults.max_events;
  auto retry = action == "retry";
  auto only = [&](const std::string& k, const char* where) {
    return fail(err, "bad_request",
                "'" + k + "' belongs to POST /dlq/" + where + " only");
  };
  bool has_filter = false;
  bool has_reason = false;
  for (auto& [k, v] : doc.items()) {
    if (k == "filter") {
      has_filter = true;
      if (!parse_dlq_filter_object(v, out, err))
        return false;
    } else if (k == "mode") {
      if (!retry)
        return only(k, "retry");
      if (!v.is_string()
          || (v.get<std::string>() != "journal"
              && v.get<std::string>() != "republish"))
        return fail(err, "bad_request",
                    "'mode' must be journal or republish");
      out.mode = v.get<std::string>();
    } else if (k == "transform") {
      if (!retry)
        return only(k, "retry");
      if (v.is_null())
        continue;
      out.transform = dump(v);
      std::string why;
      if (!check_patch(out.transform, why))
        return fail(err, "bad_transform", why);
    } else if (k == "reason") {
      if (retry)
        return only(k, "discard");
      if (!v.is_string() || v.get<std::string>().empty()
          || v.get<std::string>().size() > 1000)
        return fail(err, "bad_request",
                    "'reason' must be a string of 1 to 1000 bytes");
      out.reason = v.get<std::string>();
      has_reason = true;
    } else if (k == "max_events") {
      if (!positive(v, 10000000, out.max_events))
        return fail(err, "bad_request",
                    "'max_events' must be an integer from 1 to 10000000");
    } else if (k == "dry_run") {
      if (!v.is_boolean())
        return fail(err, "bad_request", "'dry_run' must be true or false");
      out.dry_run = v.get<bool>();
    } else {
      return fail(err, "bad_request",
                  "unknown field '" + k + "': use filter, "
                    + (retry ? "mode, transform" : "reason")
                    + ", max_events or dry_run");
    }
  }
  if (!has_filter)
    return fail(err, "bad_request",
                "'filter' is required ({} selects every pending entry of "
                "your tenants, up to max_events)");
  if (!retry && !has_reason)
    return fail(err, "bad_request", "'reason' is required (1 to 1000 bytes)");
  if (out.mode == "republish" && !out.transform.empty())
    return fail(err, "bad_request",
                "'transform' applies to journal mode only: republish "
                "produces the stored bytes");
  out.body = dump(doc);
  return true;
}

std::string dlq_plan_json(const dlq_plan& p) {
  auto counts = [](const std::vector<topic_count>& xs) {
    json out = json::object();
    for (auto& c : xs)
      out[c.topic] = c.count;
    return out;
  };
  return dump(json{{"dry_run", true},
                   {"matched", p.matched},
                   {"by_error_class", counts(p.by_error_class)},
                   {"by_topic", counts(p.by_topic)},
                   {"by_tenant", counts(p.by_tenant)},
                   {"sample_ids", p.sample_ids}});
}

std::string plan_json(const replay_plan& p) {
  json by_topic = json::object();
  for (auto& c : p.by_topic)
    by_topic[c.topic] = c.count;
  json by_tenant = json::object();
  for (auto& c : p.by_tenant)
    by_tenant[c.topic] = c.count;
  json samples = json::array();
  for (size_t i = 0; i < p.samples.size(); ++i) {
    json payload;
    try {
      payload = json::parse(p.samples[i]);
    } catch (const json::exception&) {
      payload = p.samples[i];
    }
    samples.push_back(
      {{"event_id", i < p.sample_ids.size() ? p.sample_ids[i] : 0},
       {"payload", std::move(payload)}});
  }
  return dump(json{{"dry_run", true},
                   {"matched", p.matched},
                   {"by_topic", std::move(by_topic)},
                   {"by_tenant", std::move(by_tenant)},
                   {"first_received_at", opt(p.first_received_at)},
                   {"last_received_at", opt(p.last_received_at)},
                   {"samples", std::move(samples)}});
}

std::string job_json(const job_row& j) {
  return dump(job_object(j));
}

std::string jobs_json(const std::vector<job_row>& jobs) {
  json out = json::array();
  for (auto& j : jobs)
    out.push_back(job_object(j));
  return dump(out);
}

std::string job_created_json(const job_row& j) {
  return dump(
    json{{"job_id", j.id}, {"status", j.status}, {"matched", j.matched}});
}

} // namespace ces::api
