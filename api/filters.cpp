#include "api/filters.hpp"

#include "api/admin_json.hpp" // looks_like_rfc3339
#include "api/routes.hpp"     // parse_positive_id
#include "storage/utf8.hpp"

#include <algorithm>
#include <array>

namespace ces::api {

namespace {

const std::string* find(const query_params& params, std::string_view name) {
  for (auto& [k, v] : params)
    if (k == name)
      return &v;
  return nullptr;
}

bool fail(filter_error& err, std::string code, std::string message) {
  err.code = std::move(code);
  err.message = std::move(message);
  return false;
}

/// Printable text of at most `max` bytes: valid UTF-8, no control
/// characters (tenant ids, keys).
bool plain_text(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max || !ces::is_valid_utf8(s))
    return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
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

/// [a-z_]{1,max}.
bool word(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max)
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

/// An RFC 3339 time (checked by looks_like_rfc3339) as UTC seconds since
/// 0000-03-01 and its fraction padded to 9 digits: comparable in order.
std::pair<int64_t, std::string> utc_key(std::string_view t) {
  auto num = [&](size_t pos, size_t n) {
    int64_t v = 0;
    for (size_t i = pos; i < pos + n; ++i)
      v = v * 10 + (t[i] - '0');
    return v;
  };
  // Days from civil (H. Hinnant's algorithm), year counted from March.
  int64_t y = num(0, 4), m = num(5, 2), d = num(8, 2);
  y -= m <= 2 ? 1 : 0;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t days = y * 365 + y / 4 - y / 100 + y / 400 + doy;
  int64_t secs = days * 86400 + num(11, 2) * 3600 + num(14, 2) * 60
                 + num(17, 2);
  size_t pos = 19;
  std::string frac;
  if (t[pos] == '.')
    while (++pos < t.size() && t[pos] >= '0' && t[pos] <= '9')
      frac += t[pos];
  frac.resize(9, '0');
  if (t[pos] == '+' || t[pos] == '-') {
    auto off = num(pos + 1, 2) * 3600 + num(pos + 4, 2) * 60;
    secs += t[pos] == '+' ? -off : off;
  }
  return {secs, frac};
}

/// from/to: RFC 3339; stored as given (PostgreSQL parses the offset). A
/// `from` later than `to` is bad_time.
bool parse_times(const query_params& params, std::string& from,
                 std::string& to, filter_error& err) {
  for (auto [name, field] :
       {std::pair{"from", &from}, std::pair{"to", &to}}) {
    if (auto v = find(params, name)) {
      // In UTC: PostgreSQL refuses offsets beyond +-15:59.
      *field = rfc3339_utc(*v);
      if (field->empty())
        return fail(err, "bad_time",
                    std::string{"'"} + name
                      + "' must be an RFC 3339 time such as "
                        "2024-05-01T12:00:00Z");
    }
  }
  if (!from.empty() && !to.empty() && utc_key(from) > utc_key(to))
    return fail(err, "bad_time", "'from' must not be later than 'to'");
  return true;
}

bool parse_tenant_topic(const query_params& params, std::string& tenant,
                        std::string& topic, filter_error& err) {
  if (auto v = find(params, "tenant_id")) {
    if (!plain_text(*v, 256))
      return fail(err, "bad_filter",
                  "'tenant_id' must be 1..256 bytes of UTF-8 text without "
                  "control characters");
    tenant = *v;
  }
  if (auto v = find(params, "topic")) {
    if (!topic_name(*v))
      return fail(err, "bad_filter",
                  "'topic' must be a Kafka topic name ([A-Za-z0-9._-], 1..249 "
                  "characters)");
    topic = *v;
  }
  return true;
}

constexpr char b64url[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

} // namespace

bool parse_event_filter(const query_params& params, event_filter& f,
                        filter_error& err) {
  if (!parse_tenant_topic(params, f.tenant_id, f.topic, err))
    return false;
  if (auto v = find(params, "key")) {
    if (v->size() > 1024 || !ces::is_valid_utf8(*v))
      return fail(err, "bad_filter",
                  "'key' must be UTF-8 text of at most 1024 bytes");
    f.has_key = true;
    f.key = *v;
  }
  if (!parse_times(params, f.from, f.to, err))
    return false;
  if (auto v = find(params, "replays")) {
    if (*v == "include")
      f.replays = replays_mode::include;
    else if (*v == "exclude")
      f.replays = replays_mode::exclude;
    else if (*v == "only")
      f.replays = replays_mode::only;
    else
      return fail(err, "bad_filter",
                  "'replays' must be include, exclude or only");
  }
  if (auto v = find(params, "replay_of")) {
    f.replay_of = parse_positive_id(*v);
    if (f.replay_of == 0)
      return fail(err, "bad_filter",
                  "'replay_of' must be a journal id (a positive integer)");
    if (f.replays == replays_mode::exclude)
      return fail(err, "bad_filter",
                  "'replay_of' asks for replays: it cannot go with "
                  "replays=exclude");
  }
  return true;
}

bool parse_dlq_filter(const query_params& params, dlq_filter& f,
                      filter_error& err) {
  if (auto v = find(params, "status")) {
    if (*v != "pending" && *v != "retried" && *v != "resolved"
        && *v != "discarded" && *v != "failed")
      return fail(err, "bad_filter",
                  "'status' must be pending, retried, resolved, discarded "
                  "or failed");
    f.status = *v;
  }
  if (auto v = find(params, "error_class")) {
    if (!word(*v, 64))
      return fail(err, "bad_filter",
                  "'error_class' must be a class name such as invalid_json");
    f.error_class = *v;
  }
  if (!parse_tenant_topic(params, f.tenant_id, f.topic, err))
    return false;
  return parse_times(params, f.from, f.to, err);
}

bool parse_job_filter(const query_params& params, job_filter& f,
                      filter_error& err) {
  if (auto v = find(params, "status")) {
    if (*v != "queued" && *v != "running" && *v != "succeeded"
        && *v != "failed" && *v != "cancelled")
      return fail(err, "bad_filter",
                  "'status' must be queued, running, succeeded, failed or "
                  "cancelled");
    f.status = *v;
  }
  if (auto v = find(params, "kind")) {
    if (!word(*v, 32))
      return fail(err, "bad_filter", "'kind' must be a job kind such as "
                                     "replay");
    f.kind = *v;
  }
  return true;
}

std::string encode_cursor(int64_t last_id) {
  // 'c', then the id as 8 big-endian bytes: 9 bytes, 12 base64url chars.
  std::array<unsigned char, 9> raw{};
  raw[0] = 'c';
  auto v = static_cast<uint64_t>(last_id);
  for (int i = 8; i >= 1; --i) {
    raw[i] = static_cast<unsigned char>(v & 0xff);
    v >>= 8;
  }
  std::string out;
  for (size_t i = 0; i < raw.size(); i += 3) {
    uint32_t n = (uint32_t{raw[i]} << 16) | (uint32_t{raw[i + 1]} << 8)
                 | raw[i + 2];
    out += b64url[(n >> 18) & 63];
    out += b64url[(n >> 12) & 63];
    out += b64url[(n >> 6) & 63];
    out += b64url[n & 63];
  }
  return out;
}

int64_t decode_cursor(std::string_view text) noexcept {
  if (text.size() != 12)
    return 0;
  std::array<unsigned char, 9> raw{};
  for (size_t i = 0; i < 12; i += 4) {
    uint32_t n = 0;
    for (size_t j = 0; j < 4; ++j) {
      auto* p = std::char_traits<char>::find(b64url, 64, text[i + j]);
      if (p == nullptr)
        return 0;
      n = (n << 6) | static_cast<uint32_t>(p - b64url);
    }
    raw[i / 4 * 3] = static_cast<unsigned char>(n >> 16);
    raw[i / 4 * 3 + 1] = static_cast<unsigned char>(n >> 8);
    raw[i / 4 * 3 + 2] = static_cast<unsigned char>(n);
  }
  if (raw[0] != 'c')
    return 0;
  uint64_t v = 0;
  for (size_t i = 1; i < 9; ++i)
    v = (v << 8) | raw[i];
  auto id = static_cast<int64_t>(v);
  return id > 0 ? id : 0;
}

bool parse_cursor(const query_params& params, int64_t& before,
                  filter_error& err) {
  before = 0;
  auto v = find(params, "cursor");
  if (v == nullptr)
    return true;
  before = decode_cursor(*v);
  if (before == 0)
    return fail(err, "bad_cursor",
                "'cursor' must be the value given in the Link header of the "
                "previous page");
  return true;
}

bool filter_in_scope(const std::string& tenant_id, const tenant_scope& scope,
                     std::string& why) {
  if (tenant_id.empty() || scope.sees(tenant_id))
    return true;
  why = "tenant_id '" + tenant_id + "' is outside the tenants of this key";
  return false;
}

} // namespace ces::api
