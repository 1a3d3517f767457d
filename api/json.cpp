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
void append_headers(std::string& out, const std::vector<kafka_header>& hs) {
  out += '[';
  bool first = true;
  for (auto& h : hs) {
    if (!first)
      out += ',';
    first = false;
    if (storage::is_pg_text(h.key)) {
      out += "{\"key\":";
      storage::append_json_string(out, h.key);
    } else {
      out += "{\"key_b64\":\"";
      append_base64(out, h.key);
      out += '"';
    }
    if (!h.has_value) {
      out += ",\"value\":null}";
    } else if (storage::is_pg_text(h.value)) {
      out += ",\"value\":";
      storage::append_json_string(out, h.value);
      out += '}';
    } else {
      out += ",\"value_b64\":\"";
      append_base64(out, h.value);
      out += "\"}";
    }
  }
  out += ']';
}

void append_key(std::string& out, bool has_key, const std::string& key) {
  out += "\"key\":";
  if (has_key)
    append_bytes_value(out, key);
  else
    out += "null";
}

void append_timestamp(std::string& out, const char* name, int64_t ms) {
  out += '"';
  out += name;
  out += "\":";
  if (ms < 0) {
    out += "null";
  } else {
    out += '"';
    out += rfc3339_ms(ms);
    out += '"';
  }
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
  out += "{\"id\":";
  append_int(out, e.id);
  out += ",\"tenant_id\":";
  append_text(out, e.tenant_id);
  out += ",\"topic\":";
  append_text(out, e.topic);
  out += ",\"partition\":";
  append_int(out, e.partition);
  out += ",\"offset\":";
  append_int(out, e.offset);
  out += ',';
  append_key(out, e.has_key, e.key);
  out += ",\"headers\":";
  append_headers(out, e.headers);
  out += ",\"payload\":";
  if (e.payload_json.empty())
    out += "null";
  else
    out += e.payload_json; // jsonb's own output: valid JSON
  out += ',';
  append_timestamp(out, "kafka_timestamp", e.kafka_timestamp_ms);
  out += ",\"received_at\":";
  append_text(out, e.received_at);
  out += ",\"replay_of\":";
  if (e.replay_of > 0)
    append_int(out, e.replay_of);
  else
    out += "null";
  out += '}';
}

void append_dlq_payload(std::string& out, const storage::dlq_entry_row& d) {
  const char* format = "null";
  out += "\"payload\":";
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
  out += ",\"payload_format\":\"";
  out += format;
  out += "\",\"payload_bytes\":";
  out += std::to_string(d.has_payload ? d.payload_size : 0);
  out += ",\"payload_truncated\":";
  out += d.payload_truncated ? "true" : "false";
}

void append_dlq(std::string& out, const storage::dlq_entry_row& d) {
  out += "{\"id\":";
  append_int(out, d.id);
  out += ",\"topic\":";
  append_text(out, d.topic);
  out += ",\"partition\":";
  if (d.has_partition)
    append_int(out, d.partition);
  else
    out += "null";
  out += ",\"offset\":";
  if (d.has_offset)
    append_int(out, d.offset);
  else
    out += "null";
  out += ',';
  append_key(out, d.has_key, d.key);
  out += ",\"headers\":";
  append_headers(out, d.headers);
  out += ',';
  append_dlq_payload(out, d);
  out += ',';
  append_timestamp(out, "kafka_timestamp", d.kafka_timestamp_ms);
  out += ",\"tenant_id\":";
  if (d.tenant_id.empty())
    out += "null";
  else
    append_text(out, d.tenant_id);
  out += ",\"error_class\":";
  append_text(out, d.error_class);
  out += ",\"error\":";
  append_text(out, d.error);
  out += ",\"attempts\":";
  append_int(out, d.attempts);
  out += ",\"status\":";
  append_text(out, d.status);
  out += ",\"received_at\":";
  append_text(out, d.received_at);
  out += ",\"updated_at\":";
  append_text(out, d.updated_at);
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
  std::string out = "{\"error\":";
  append_text(out, code);
  out += ",\"message\":";
  append_text(out, message);
  out += '}';
  return out;
}

std::string replay_json(int64_t event_id, std::string_view topic,
                        int32_t partition, int64_t offset,
                        std::string_view replay_id) {
  std::string out = "{\"status\":\"replayed\",\"event_id\":";
  append_int(out, event_id);
  out += ",\"topic\":";
  append_text(out, topic);
  out += ",\"partition\":";
  append_int(out, partition);
  out += ",\"offset\":";
  append_int(out, offset);
  out += ",\"replay_id\":";
  append_text(out, replay_id);
  out += '}';
  return out;
}

std::string supervision_json(const std::vector<actor_state>& actors) {
  std::string out = "{\"actors\":[";
  for (size_t i = 0; i < actors.size(); ++i) {
    auto& a = actors[i];
    if (i > 0)
      out += ',';
    out += "{\"name\":";
    append_text(out, a.name);
    out += ",\"state\":";
    append_text(out, a.state);
    out += ",\"restarts\":";
    append_int(out, a.restarts);
    out += ",\"last_failure\":";
    if (a.last_failure.empty())
      out += "null";
    else
      append_text(out, a.last_failure);
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
    if (!c.detail.empty()) {
      out += ",\"detail\":";
      append_text(out, c.detail);
    }
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
