#include "api/routes.hpp"

#include <algorithm>

#include <limits>
#include <vector>

namespace ces::api {

namespace {

/// At most `n` bytes of `s` for a message, with "..." when cut.
std::string quote(std::string_view s, size_t n = 64) {
  std::string out = "'";
  if (s.size() > n) {
    out.append(s.data(), n);
    out += "...";
  } else {
    out.append(s.data(), s.size());
  }
  out += '\'';
  return out;
}

route_result fail(route_kind kind, int status, std::string code,
                  std::string message, std::string_view allow = {}) {
  route_result r;
  r.kind = kind;
  r.error.status = status;
  r.error.code = std::move(code);
  r.error.message = std::move(message);
  r.error.allow = std::string(allow);
  return r;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/// The routes whose pattern matches a decoded path, best first, and the
/// raw text of their path parameters.
struct match {
  /// Entries of route_table() with the most literal segments (several
  /// only when they differ by method).
  std::vector<const route_spec*> specs;
  /// Values of the pattern's `{name}`s, in order.
  std::vector<std::string> params;
};

std::vector<std::string_view> split_pattern(std::string_view pattern) {
  std::vector<std::string_view> out;
  size_t pos = 1; // after the leading '/'
  for (;;) {
    auto slash = pattern.find('/', pos);
    out.push_back(pattern.substr(pos, slash == std::string_view::npos
                                        ? std::string_view::npos
                                        : slash - pos));
    if (slash == std::string_view::npos)
      return out;
    pos = slash + 1;
  }
}

bool is_param(std::string_view seg) noexcept {
  return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
}

match match_path(const std::vector<std::string>& seg, bool fault_injection) {
  match best;
  int best_literals = -1;
  for (auto& spec : route_table()) {
    if (spec.fault_injection_only && !fault_injection)
      continue;
    auto pat = split_pattern(spec.pattern);
    if (pat.size() != seg.size())
      continue;
    int literals = 0;
    std::vector<std::string> params;
    bool ok = true;
    for (size_t i = 0; ok && i < pat.size(); ++i) {
      if (is_param(pat[i]))
        params.push_back(seg[i]);
      else if (pat[i] == seg[i])
        ++literals;
      else
        ok = false;
    }
    if (!ok || literals < best_literals)
      continue;
    if (literals > best_literals) {
      best.specs.clear();
      best.params = std::move(params);
      best_literals = literals;
    }
    best.specs.push_back(&spec);
  }
  return best;
}

/// "GET, HEAD" / "POST" / "GET, HEAD, POST": what the Allow header lists.
std::string allow_of(const std::vector<const route_spec*>& specs) {
  std::string out;
  for (auto* s : specs) {
    if (!out.empty())
      out += ", ";
    out += s->method == "GET" ? "GET, HEAD" : std::string(s->method);
  }
  return out;
}

std::string path_hint(std::string_view path) {
  // A trailing slash on a known path is the most likely mistake.
  if (path.size() > 1 && path.back() == '/') {
    auto trimmed = path.substr(0, path.size() - 1);
    for (auto& spec : route_table())
      if (!spec.fault_injection_only
          && spec.pattern.find('{') == std::string_view::npos
          && trimmed == spec.pattern)
        return "; did you mean " + std::string(spec.pattern) + "?";
  }
  std::string out = "; routes:";
  bool first = true;
  for (auto& spec : route_table()) {
    if (spec.fault_injection_only)
      continue;
    out += first ? " " : ", ";
    first = false;
    out += spec.method;
    out += ' ';
    out += spec.pattern;
  }
  out += " (parameters: GET /openapi.json)";
  return out;
}

} // namespace

const std::string* parsed_request::param(std::string_view name) const {
  for (auto& [k, v] : params)
    if (k == name)
      return &v;
  return nullptr;
}

std::vector<std::string_view> route_spec::path_params() const {
  std::vector<std::string_view> out;
  for (auto seg : split_pattern(pattern))
    if (is_param(seg))
      out.push_back(seg.substr(1, seg.size() - 2));
  return out;
}

const std::vector<route_spec>& route_table() {
  using rk = route_kind;
  static const std::vector<route_spec> table{
    {"GET", "/health", rk::health, {}, false, role::none},
    {"GET", "/ready", rk::ready, {}, false, role::none},
    {"GET", "/events/latest", rk::events_latest, {"limit"}, false,
     role::viewer},
    {"GET", "/events/{id}", rk::event_by_id, {}, false, role::viewer},
    {"POST", "/replay/{id}", rk::replay, {}, false, role::operator_},
    {"GET", "/events", rk::events_find,
     {"tenant_id", "topic", "key", "from", "to", "replays", "replay_of",
      "limit", "cursor"},
     false, role::viewer},
    {"GET", "/dlq", rk::dlq_latest,
     {"status", "error_class", "topic", "tenant_id", "from", "to", "limit",
      "cursor"},
     false, role::viewer},
    {"GET", "/dlq/{id}", rk::dlq_by_id, {}, false, role::viewer},
    {"POST", "/dlq/{id}/retry", rk::dlq_retry, {}, false, role::operator_},
    {"POST", "/dlq/{id}/discard", rk::dlq_discard, {}, false,
     role::operator_},
    {"POST", "/dlq/retry", rk::dlq_bulk_retry, {}, false, role::operator_},
    {"POST", "/dlq/discard", rk::dlq_bulk_discard, {}, false,
     role::operator_},
    {"DELETE", "/dlq", rk::dlq_purge, {"status", "before"}, false,
     role::admin},
    {"POST", "/replays", rk::replays_create, {}, false, role::operator_},
    {"GET", "/jobs", rk::jobs_list, {"status", "kind", "limit", "cursor"},
     false, role::viewer},
    {"GET", "/jobs/{id}", rk::job_get, {}, false, role::viewer},
    {"POST", "/jobs/{id}/cancel", rk::job_cancel, {}, false,
     role::operator_},
    {"GET", "/openapi.json", rk::openapi, {}, false, role::none},
    {"GET", "/supervision", rk::supervision, {}, false, role::viewer},
    {"POST", "/debug/fail/{actor}", rk::debug_fail, {}, true, role::admin},
    {"GET", "/keys", rk::keys_list, {}, false, role::admin},
    {"POST", "/keys", rk::key_create, {}, false, role::admin},
    {"DELETE", "/keys/{name}", rk::key_revoke, {}, false, role::admin},
    {"GET", "/audit", rk::audit,
     {"action", "principal", "from", "to", "limit", "cursor"}, false,
     role::admin},
  };
  return table;
}

const char* to_string(route_kind k) noexcept {
  switch (k) {
    case route_kind::unmatched: return "unmatched";
    case route_kind::health: return "health";
    case route_kind::ready: return "ready";
    case route_kind::events_latest: return "events_latest";
    case route_kind::event_by_id: return "event_by_id";
    case route_kind::replay: return "replay";
    case route_kind::dlq_latest: return "dlq_latest";
    case route_kind::supervision: return "supervision";
    case route_kind::debug_fail: return "debug_fail";
    case route_kind::keys_list: return "keys_list";
    case route_kind::key_create: return "key_create";
    case route_kind::key_revoke: return "key_revoke";
    case route_kind::audit: return "audit";
    case route_kind::events_find: return "events_find";
    case route_kind::dlq_by_id: return "dlq_by_id";
    case route_kind::replays_create: return "replays_create";
    case route_kind::jobs_list: return "jobs_list";
    case route_kind::job_get: return "job_get";
    case route_kind::job_cancel: return "job_cancel";
    case route_kind::openapi: return "openapi";
    case route_kind::dlq_retry: return "dlq_retry";
    case route_kind::dlq_discard: return "dlq_discard";
    case route_kind::dlq_bulk_retry: return "dlq_bulk_retry";
    case route_kind::dlq_bulk_discard: return "dlq_bulk_discard";
    case route_kind::dlq_purge: return "dlq_purge";
  }
  return "unmatched";
}

int64_t parse_positive_id(std::string_view text) noexcept {
  if (text.empty())
    return 0;
  constexpr auto max = std::numeric_limits<int64_t>::max();
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return 0;
    auto d = c - '0';
    if (v > (max - d) / 10)
      return 0; // overflow
    v = v * 10 + d;
  }
  return v;
}

bool percent_decode(std::string_view in, std::string& out,
                    bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size())
        return false;
      auto hi = hex_value(in[i + 1]);
      auto lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

route_result route(std::string_view method, std::string_view target,
                   size_t body_size, const route_options& opts) {
  // Split target into path and query; drop a fragment.
  if (auto hash = target.find('#'); hash != std::string_view::npos)
    target = target.substr(0, hash);
  std::string_view path = target;
  std::string_view query;
  bool has_query = false;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
    has_query = true;
  }
  // Match the path (pure) first: even errors carry the route for metrics.
  route_kind kind = route_kind::unmatched;
  bool bad_path = false;
  std::string bad_path_reason;
  match m;
  if (path.empty() || path.front() != '/') {
    bad_path = true;
    bad_path_reason = "the request target must start with '/'";
  } else {
    std::vector<std::string> segs;
    size_t pos = 1;
    for (;;) {
      auto slash = path.find('/', pos);
      auto raw = path.substr(pos, slash == std::string_view::npos
                                    ? std::string_view::npos
                                    : slash - pos);
      std::string seg;
      if (!percent_decode(raw, seg)) {
        bad_path = true;
        bad_path_reason = "malformed percent-escape in path segment "
                          + quote(raw);
        break;
      }
      segs.push_back(std::move(seg));
      if (slash == std::string_view::npos)
        break;
      pos = slash + 1;
    }
    if (!bad_path) {
      m = match_path(segs, opts.fault_injection);
      if (!m.specs.empty())
        kind = m.specs.front()->kind;
    }
  }
  // 1. Body size: a server limit, whatever the route.
  if (body_size > opts.max_body_bytes)
    return fail(kind, 413, "body_too_large",
                "request body of " + std::to_string(body_size)
                  + " bytes exceeds the limit of "
                  + std::to_string(opts.max_body_bytes) + " bytes");
  // 2. Path.
  if (bad_path)
    return fail(route_kind::unmatched, 400, "bad_path", bad_path_reason);
  if (kind == route_kind::unmatched)
    return fail(kind, 404, "not_found",
                "no route for path " + quote(path, 200) + path_hint(path));
  // 3. Method: GET entries answer HEAD too.
  bool head = method == "HEAD";
  const route_spec* spec = nullptr;
  for (auto* candidate : m.specs)
    if (candidate->method == method || (head && candidate->method == "GET"))
      spec = candidate;
  if (spec == nullptr) {
    auto allow = allow_of(m.specs);
    std::string use;
    for (auto* candidate : m.specs)
      use += (use.empty() ? "" : " or ") + std::string(candidate->method);
    return fail(kind, 405, "method_not_allowed",
                "method " + quote(method, 16) + " is not allowed on "
                  + quote(path, 200) + "; use " + use,
                allow);
  }
  kind = spec->kind;
  // 4. Path parameters.
  route_result r;
  r.kind = kind;
  r.request.kind = kind;
  r.request.head = head;
  auto names = spec->path_params();
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& text = m.params[i];
    if (names[i] == "actor") {
      // An actor name: lower-case letters, digits, '_' and '-' (e.g.
      // persister-0). Whether it runs is the supervisor's answer.
      bool good = !text.empty() && text.size() <= 64;
      for (char c : text)
        good = good
               && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                   || c == '_' || c == '-');
      if (!good)
        return fail(kind, 404, "not_found",
                    "no supervised actor " + quote(text));
      r.request.name = text;
    } else if (names[i] == "name") {
      // A key name: what api_keys.name allows.
      bool good = !text.empty() && text.size() <= 64;
      for (char c : text)
        good = good
               && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                   || (c >= '0' && c <= '9') || c == '_' || c == '-'
                   || c == '.');
      if (!good)
        return fail(kind, 404, "not_found", "no key " + quote(text));
      r.request.name = text;
    } else if (names[i] == "id") {
      r.request.id = parse_positive_id(text);
      if (r.request.id == 0)
        return fail(kind, 400, "bad_id",
                    "id " + quote(text)
                      + " is not a decimal integer between 1 and "
                        "9223372036854775807");
    }
  }
  // 5. Query.
  bool takes_limit = std::find(spec->query.begin(), spec->query.end(),
                               "limit")
                     != spec->query.end();
  bool seen_limit = false;
  std::string limit_text;
  if (has_query) {
    size_t pos = 0;
    while (pos <= query.size()) {
      auto amp = query.find('&', pos);
      auto piece = query.substr(pos, amp == std::string_view::npos
                                       ? std::string_view::npos
                                       : amp - pos);
      pos = amp == std::string_view::npos ? query.size() + 1 : amp + 1;
      if (piece.empty())
        continue;
      auto eq = piece.find('=');
      std::string name;
      std::string value;
      if (!percent_decode(piece.substr(0, eq), name, true)
          || (eq != std::string_view::npos
              && !percent_decode(piece.substr(eq + 1), value, true)))
        return fail(kind, 400, "bad_query",
                    "malformed percent-escape in query parameter "
                      + quote(piece));
      if (takes_limit && name == "limit") {
        if (seen_limit)
          return fail(kind, 400, "bad_query",
                      "query parameter 'limit' is given more than once");
        seen_limit = true;
        limit_text = std::move(value);
        continue;
      }
      if (std::find(spec->query.begin(), spec->query.end(), name)
          != spec->query.end()) {
        if (r.request.param(name) != nullptr)
          return fail(kind, 400, "bad_query",
                      "query parameter " + quote(name)
                        + " is given more than once");
        r.request.params.emplace_back(std::move(name), std::move(value));
        continue;
      }
      std::string accepted;
      for (auto q : spec->query)
        accepted += (accepted.empty() ? "" : ", ") + std::string(q);
      return fail(kind, 400, "bad_query",
                  "unknown query parameter " + quote(name) + " for "
                    + to_string(kind)
                    + (accepted.empty() ? " (it takes no parameters)"
                                        : " (accepted: " + accepted + ")"));
    }
  }
  if (takes_limit) {
    if (!seen_limit) {
      r.request.limit = opts.default_limit;
    } else {
      auto v = parse_positive_id(limit_text);
      if (v == 0 || v > opts.max_limit)
        return fail(kind, 400, "bad_limit",
                    "limit " + quote(limit_text)
                      + " is not a decimal integer between 1 and "
                      + std::to_string(opts.max_limit));
      r.request.limit = static_cast<int32_t>(v);
    }
  }
  return r;
}

} // namespace ces::api
