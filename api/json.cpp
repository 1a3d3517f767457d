// Rendering by appending to one string: the journalled payload (jsonb text)
// and a DLQ payload that is valid JSON are spliced in as they are, without a
// parse into a DOM and back.
#include "api/json.hpp"

#include "storage/headers_json.hpp"
#include "storage/validate.hpp"

#include <cstdio>

namespace ces::api {

namespace {

using storage::append_base64;

/// Deep enough for any CRM event; deeper DLQ payloads are shown as text.
constexpr size_t dlq_json_max_depth = 512;

/// `s` as a JSON string; invalid UTF-8 becomes U+FFFD, NUL is \u0000.
void append_text(std::string& out, std::string_view s) {
  if (storage::is_valid_utf8(s)) {
    storage::append_json_string(out, s);
    return;
  }
  // to_pg_text also replaces NUL: keep NULs as they are, fix the rest.
  std::string fixed;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '\0') {
      fixed += storage::to_pg_text(s.substr(start, i - start));
      if (i < s.size())
        fixed += '\0';
      start = i + 1;
    }
  }
  storage::append_json_string(out, fixed);
}

void append_int(std::string& out, int64_t v) {
  out += std::to_string(v);
}

/// Starts member `name` of the object being written: a ',' unless it is the
/// object's first member, then `"name":`.
void member(std::string& out, const char* name) {
  if (out.back() != '{')
    out += ',';
  out += '"';
  out += name;
  out += "\":";
}

/// `"name":v`, a member with an integer value.
void field(std::string& out, const char* name, int64_t v) {
  member(out, name);
  append_int(out, v);
}

/// `"name":"text"`, a member with a string value (see append_text).
void field(std::string& out, const char* name, std::string_view text) {
  member(out, name);
  append_text(out, text);
}

/// `"name":null`.
void null_field(std::string& out, const char* name) {
  member(out, name);
  out += "null";
}

/// `"name":v`, or null for 0 (no such row).
void id_field(std::string& out, const char* name, int64_t v) {
  if (v > 0)
    field(out, name, v);
  else
    null_field(out, name);
}

/// `"name":"text"`, or null for an empty (NULL) text.
void text_or_null(std::string& out, const char* name, std::string_view text) {
  if (text.empty())
    null_field(out, name);
  else
    field(out, name, text);
}

void append_bytes_value(std::string& out, std::string_view bytes) {
  if (storage::is_valid_utf8(bytes)) {
    storage::append_json_string(out, bytes);
  } else {
    out += "{\"base64\":\"";
    append_base64(out, bytes);
    out += "\"}";
  }
}

/// Kafka headers in the journal's format (storage/headers_json.hpp), compact.
void headers_field(std::string& out, const std::vector<kafka_header>& hs) {
  member(out, "headers");
  storage::append_headers_json(out, hs, storage::json_layout::compact);
}

void key_field(std::string& out, bool has_key, const std::string& key) {
  member(out, "key");
  if (has_key)
    append_bytes_value(out, key);
  else
    out += "null";
}

/// `"name":"<RFC 3339>"`, or null for a negative (absent) timestamp.
void timestamp_field(std::string& out, const char* name, int64_t ms) {
  if (ms < 0)
    return null_field(out, name);
  member(out, name);
  out += '"';
  out += rfc3339_ms(ms);
  out += '"';
}

/// The longest prefix of `s` that is valid UTF-8 once an incomplete sequence
/// cut at the end (at most 3 bytes) is dropped; npos when there is none.
size_t utf8_prefix_after_cut(std::string_view s) {
  for (size_t drop = 0; drop <= 3 && drop <= s.size(); ++drop)
    if (storage::is_valid_utf8(s.substr(0, s.size() - drop)))
      return s.size() - drop;
  return std::string_view::npos;
}

void append_event(std::string& out, const storage::journal_event& e) {
  out += '{';
  field(out, "id", e.id);
  field(out, "tenant_id", e.tenant_id);
  field(out, "topic", e.topic);
  field(out, "partition", e.partition);
  field(out, "offset", e.offset);
  key_field(out, e.has_key, e.key);
  headers_field(out, e.headers);
  member(out, "payload");
  if (e.payload_json.empty())
    out += "null";
  else
    out += e.payload_json; // jsonb's own output: valid JSON
  timestamp_field(out, "kafka_timestamp", e.kafka_timestamp_ms);
  field(out, "received_at", e.received_at);
  id_field(out, "replay_of", e.replay_of);
  id_field(out, "dlq_id", e.dlq_id);
  out += '}';
}

void append_dlq_payload(std::string& out, const storage::dlq_entry_row& d) {
  const char* format = "null";
  member(out, "payload");
  if (!d.has_payload) {
    out += "null";
  } else if (!d.payload_truncated && d.error_class != "db_rejected"
             && check_json(d.payload, dlq_json_max_depth).ok) {
    // db_rejected: jsonb refused it although it passed check_json (e.g. a
    // number beyond numeric's range, which many JSON parsers refuse too).
    // Embed only what jsonb would hold.
    format = "json";
    out += d.payload;
  } else if (!d.payload_truncated && storage::is_valid_utf8(d.payload)) {
    format = "text";
    storage::append_json_string(out, d.payload);
  } else if (auto n = d.payload_truncated ? utf8_prefix_after_cut(d.payload)
                                          : std::string_view::npos;
             n != std::string_view::npos) {
    format = "text";
    storage::append_json_string(out, std::string_view{d.payload}.substr(0, n));
  } else {
    format = "base64";
    out += "{\"base64\":\"";
    append_base64(out, d.payload);
    out += "\"}";
  }
  field(out, "payload_format", format);
  field(out, "payload_bytes", d.has_payload ? d.payload_size : 0);
  member(out, "payload_truncated");
  out += d.payload_truncated ? "true" : "false";
}

void append_dlq(std::string& out, const storage::dlq_entry_row& d) {
  out += '{';
  field(out, "id", d.id);
  field(out, "topic", d.topic);
  if (d.has_partition)
    field(out, "partition", d.partition);
  else
    null_field(out, "partition");
  if (d.has_offset)
    field(out, "offset", d.offset);
  else
    null_field(out, "offset");
  key_field(out, d.has_key, d.key);
  headers_field(out, d.headers);
  append_dlq_payload(out, d);
  timestamp_field(out, "kafka_timestamp", d.kafka_timestamp_ms);
  text_or_null(out, "tenant_id", d.tenant_id);
  field(out, "error_class", d.error_class);
  field(out, "error", d.error);
  field(out, "attempts", d.attempts);
  field(out, "status", d.status);
  field(out, "received_at", d.received_at);
  field(out, "updated_at", d.updated_at);
  text_or_null(out, "next_attempt_at", d.next_attempt_at);
  text_or_null(out, "last_attempt_at", d.last_attempt_at);
  text_or_null(out, "resolution", d.resolution);
  id_field(out, "resolved_event_id", d.resolved_event_id);
  text_or_null(out, "discard_reason", d.discard_reason);
  text_or_null(out, "resolved_by", d.resolved_by);
  out += '}';
}

template <class T, class F>
std::string array_of(const std::vector<T>& xs, F append_one) {
  std::string out;
  out += '[';
  bool first = true;
  for (auto& x : xs) {
    if (!first)
      out += ',';
    first = false;
    append_one(out, x);
  }
  out += ']';
  return out;
}

} // namespace

std::string event_json(const storage::journal_event& e) {
  std::string out;
  append_event(out, e);
  return out;
}

std::string events_json(const std::vector<storage::journal_event>& events) {
  return array_of(events, append_event);
}

std::string dlq_entry_json(const storage::dlq_entry_row& d) {
  std::string out;
  append_dlq(out, d);
  return out;
}

std::string dlq_json(const std::vector<storage::dlq_entry_row>& entries) {
  return array_of(entries, append_dlq);
}

std::string error_json(std::string_view code, std::string_view message) {
  std::string out = "{";
  field(out, "error", code);
  field(out, "message", message);
  out += '}';
  return out;
}

std::string replay_json(int64_t event_id, std::string_view topic,
                        int32_t partition, int64_t offset,
                        std::string_view replay_id) {
  std::string out = "{\"status\":\"replayed\"";
  field(out, "event_id", event_id);
  field(out, "topic", topic);
  field(out, "partition", partition);
  field(out, "offset", offset);
  field(out, "replay_id", replay_id);
  out += '}';
  return out;
}

std::string supervision_json(const std::vector<actor_state>& actors) {
  std::string out = "{\"actors\":[";
  for (size_t i = 0; i < actors.size(); ++i) {
    auto& a = actors[i];
    if (i > 0)
      out += ',';
    out += '{';
    field(out, "name", a.name);
    field(out, "state", a.state);
    field(out, "restarts", a.restarts);
    if (a.last_failure.empty())
      null_field(out, "last_failure");
    else
      field(out, "last_failure", a.last_failure);
    out += '}';
  }
  out += "]}";
  return out;
}

std::string health_json() {
  return R"({"status":"healthy","service":"crm-events-sink"})";
}

bool all_ready(const std::vector<readiness_check>& checks) noexcept {
  if (checks.empty())
    return false;
  for (auto& c : checks)
    if (!c.ok)
      return false;
  return true;
}

std::string ready_json(const std::vector<readiness_check>& checks) {
  std::string out = "{\"status\":";
  out += all_ready(checks) ? "\"ready\"" : "\"not_ready\"";
  out += ",\"failing\":[";
  bool first = true;
  for (auto& c : checks) {
    if (c.ok)
      continue;
    if (!first)
      out += ',';
    first = false;
    append_text(out, c.name);
  }
  out += "],\"checks\":{";
  first = true;
  for (auto& c : checks) {
    if (!first)
      out += ',';
    first = false;
    append_text(out, c.name);
    out += ":{\"ok\":";
    out += c.ok ? "true" : "false";
    if (!c.detail.empty())
      field(out, "detail", c.detail);
    out += '}';
  }
  out += "}}";
  return out;
}

std::string rfc3339_ms(int64_t epoch_ms) {
  // Days/ms split with floor semantics, then civil_from_days (H. Hinnant).
  int64_t days = epoch_ms / 86400000;
  int64_t ms_of_day = epoch_ms % 86400000;
  if (ms_of_day < 0) {
    ms_of_day += 86400000;
    --days;
  }
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2)
    ++y;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ",
                static_cast<long long>(y), static_cast<long long>(m),
                static_cast<long long>(d),
                static_cast<long long>(ms_of_day / 3600000),
                static_cast<long long>(ms_of_day / 60000 % 60),
                static_cast<long long>(ms_of_day / 1000 % 60),
                static_cast<long long>(ms_of_day % 1000));
  return buf;
}

} // namespace ces::api
