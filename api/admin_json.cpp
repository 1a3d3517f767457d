#include "api/admin_json.hpp"

#include "api/keys_cli.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <limits>

namespace ces::api {

namespace {

using json = nlohmann::json;

json text_or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

json tenants_of(bool all, const std::vector<std::string>& tenants) {
  if (all)
    return "*";
  return tenants;
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json parsed_or_text(const std::string& text) {
  if (text.empty())
    return nullptr;
  auto j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json(text) : j;
}

} // namespace

std::string key_json(const storage::api_key_row& k) {
  return key_row_json(k); // the same object as `keys list --json`
}

std::string keys_json(const std::vector<storage::api_key_row>& keys) {
  std::string out = "[";
  for (auto& k : keys) {
    if (out.size() > 1)
      out += ',';
    out += key_row_json(k);
  }
  return out + "]";
}

std::string created_key_json(const storage::created_key& k) {
  return "{\"key\":" + dump(json(k.key)) + "," + key_row_json(k.row).substr(1);
}

std::string audit_json(const std::vector<storage::audit_row>& rows) {
  json a = json::array();
  for (auto& r : rows) {
    json j = json::object();
    j["id"] = r.id;
    j["at"] = r.at;
    j["request_id"] = text_or_null(r.request_id);
    j["principal"] = text_or_null(r.principal);
    j["role"] = text_or_null(r.role);
    j["tenants"] = r.role.empty() ? json(nullptr)
                                  : tenants_of(r.all_tenants, r.tenants);
    j["action"] = r.action;
    j["target"] = text_or_null(r.target);
    j["parameters"] = parsed_or_text(r.parameters.empty() ? "{}"
                                                          : r.parameters);
    j["outcome"] = r.outcome;
    j["status"] = r.status == 0 ? json(nullptr) : json(r.status);
    j["counts"] = parsed_or_text(r.counts);
    j["client_addr"] = text_or_null(r.client_addr);
    a.push_back(std::move(j));
  }
  return dump(a);
}

bool parse_new_key(std::string_view body, storage::new_key& out,
                   std::string& error) {
  auto j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "the body must be a JSON object {\"name\": ..., \"role\": ..., "
            "\"tenants\": [...] or \"*\", \"expires\": \"90d\"}";
    return false;
  }
  for (auto& [k, v] : j.items()) {
    (void) v;
    if (k != "name" && k != "role" && k != "tenants" && k != "expires") {
      error = "unknown member '" + k.substr(0, 64)
              + "' (accepted: name, role, tenants, expires)";
      return false;
    }
  }
  if (!j.contains("name") || !j["name"].is_string()) {
    error = "'name' (a string) is required";
    return false;
  }
  if (!j.contains("role") || !j["role"].is_string()) {
    error = "'role' (viewer, operator or admin) is required";
    return false;
  }
  out.name = j["name"].get<std::string>();
  out.role = j["role"].get<std::string>();
  if (!j.contains("tenants")) {
    error = "'tenants' (an array of tenant ids, or \"*\") is required";
    return false;
  }
  auto& t = j["tenants"];
  if (t.is_string() && t.get<std::string>() == "*") {
    out.all_tenants = true;
    out.tenants.clear();
  } else if (t.is_array()) {
    out.all_tenants = false;
    out.tenants.clear();
    for (auto& x : t) {
      if (!x.is_string()) {
        error = "'tenants' must hold strings only";
        return false;
      }
      out.tenants.push_back(x.get<std::string>());
    }
  } else {
    error = "'tenants' must be an array of tenant ids or \"*\"";
    return false;
  }
  out.expires_in_s = 0;
  if (j.contains("expires") && !j["expires"].is_null()) {
    auto& e = j["expires"];
    auto s = e.is_string() ? parse_expiry(e.get<std::string>())
                           : std::nullopt;
    if (!s) {
      error = "'expires' must be a duration such as \"90d\", \"12h\", "
              "\"30m\" or \"3600s\" (at most 10 years)";
      return false;
    }
    out.expires_in_s = *s;
  }
  return true;
}

bool looks_like_rfc3339(std::string_view t) noexcept {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](size_t pos, size_t n) {
    if (pos + n > t.size())
      return false;
    for (size_t i = pos; i < pos + n; ++i)
      if (!std::isdigit(static_cast<unsigned char>(t[i])))
        return false;
    return true;
  };
  if (!(digits(0, 4) && t.size() > 19 && t[4] == '-' && digits(5, 2)
        && t[7] == '-' && digits(8, 2) && (t[10] == 'T' || t[10] == 't')
        && digits(11, 2) && t[13] == ':' && digits(14, 2) && t[16] == ':'
        && digits(17, 2)))
    return false;
  // Calendar ranges, so that PostgreSQL never refuses what passed here.
  auto num = [&](size_t pos, size_t n) {
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i)
      v = v * 10 + (t[i] - '0');
    return v;
  };
  int year = num(0, 4), month = num(5, 2), day = num(8, 2);
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (year < 1 || month < 1 || month > 12 || day < 1
      || day > days[month - 1] + (month == 2 && leap ? 1 : 0)
      || num(11, 2) > 23 || num(14, 2) > 59 || num(17, 2) > 59)
    return false;
  size_t pos = 19;
  if (t[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos])))
      ++pos;
    if (pos == start || pos - start > 9)
      return false;
  }
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z'))
    return pos + 1 == t.size();
  if (pos < t.size() && (t[pos] == '+' || t[pos] == '-'))
    return pos + 6 == t.size() && digits(pos + 1, 2) && t[pos + 3] == ':'
           && digits(pos + 4, 2) && num(pos + 1, 2) <= 23
           && num(pos + 4, 2) <= 59;
  return false;
}

std::string rfc3339_utc(std::string_view t) {
  if (!looks_like_rfc3339(t))
    return {};
  auto num = [&](size_t pos, size_t n) {
    int64_t v = 0;
    for (size_t i = pos; i < pos + n; ++i)
      v = v * 10 + (t[i] - '0');
    return v;
  };
  // The fraction (with its dot) ends where the offset starts.
  size_t end = 19;
  if (t[end] == '.')
    while (++end < t.size() && t[end] >= '0' && t[end] <= '9') {
    }
  auto frac = t.substr(19, end - 19);
  int64_t offset = 0;
  if (t[end] == '+' || t[end] == '-')
    offset = (t[end] == '+' ? 1 : -1)
             * (num(end + 1, 2) * 3600 + num(end + 4, 2) * 60);
  // Days from and to the civil date (H. Hinnant's algorithms).
  int64_t y = num(0, 4), m = num(5, 2), d = num(8, 2);
  y -= m <= 2 ? 1 : 0;
  int64_t era = y / 400, yoe = y - era * 400;
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  int64_t days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t secs = days * 86400 + num(11, 2) * 3600 + num(14, 2) * 60
                 + num(17, 2) - offset;
  days = secs / 86400;
  secs -= days * 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  era = (days >= 0 ? days : days - 146096) / 146097;
  int64_t doe = days - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  if (y < 1 || y > 9999)
    return {};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d",
                static_cast<int>(y), static_cast<int>(m), static_cast<int>(d),
                static_cast<int>(secs / 3600),
                static_cast<int>(secs / 60 % 60),
                static_cast<int>(secs % 60));
  std::string out = buf;
  out.append(frac.data(), frac.size());
  out += 'Z';
  return out;
}

} // namespace ces::api
