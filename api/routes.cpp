#include "api/routes.hpp"

#include <algorithm>

#include <limits>
#include <vector>

namespace ces::api {

namespace {

constexpr std::string_view get_allow = "GET, HEAD";
constexpr std::string_view post_allow = "POST";

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

/// Which route a decoded path is, and its id segment (raw text) if any.
struct match {
  route_kind kind = route_kind::unmatched;
  std::string id_text;
};

match match_path(const std::vector<std::string>& seg, bool fault_injection) {
  match m;
  if (seg.size() == 1) {
    if (seg[0] == "health")
      m.kind = route_kind::health;
    else if (seg[0] == "ready")
      m.kind = route_kind::ready;
    else if (seg[0] == "dlq")
      m.kind = route_kind::dlq_latest;
    else if (seg[0] == "supervision")
      m.kind = route_kind::supervision;
  } else if (seg.size() == 3 && fault_injection && seg[0] == "debug"
             && seg[1] == "fail") {
    m.kind = route_kind::debug_fail;
    m.id_text = seg[2];
  } else if (seg.size() == 2) {
    if (seg[0] == "events") {
      if (seg[1] == "latest") {
        m.kind = route_kind::events_latest;
      } else {
        m.kind = route_kind::event_by_id;
        m.id_text = seg[1];
      }
    } else if (seg[0] == "replay") {
      m.kind = route_kind::replay;
      m.id_text = seg[1];
    }
  }
  return m;
}

bool is_get_route(route_kind k) noexcept {
  return k != route_kind::replay && k != route_kind::debug_fail
         && k != route_kind::unmatched;
}

std::string path_hint(std::string_view path) {
  // A trailing slash on a known path is the most likely mistake.
  if (path.size() > 1 && path.back() == '/') {
    auto trimmed = path.substr(0, path.size() - 1);
    for (std::string_view known :
         {"/health", "/ready", "/events/latest", "/dlq", "/supervision"})
      if (trimmed == known)
        return "; did you mean " + std::string(known) + "?";
  }
  return "; routes: GET /health, GET /ready, GET /events/latest?limit=N, "
         "GET /events/{id}, POST /replay/{id}, GET /dlq?limit=N, "
         "GET /supervision";
}

} // namespace

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
  std::string id_text;
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
      auto m = match_path(segs, opts.fault_injection);
      kind = m.kind;
      id_text = std::move(m.id_text);
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
  // 3. Method.
  bool head = false;
  if (is_get_route(kind)) {
    head = method == "HEAD";
    if (method != "GET" && !head)
      return fail(kind, 405, "method_not_allowed",
                  "method " + quote(method, 16) + " is not allowed on "
                    + quote(path, 200) + "; use GET",
                  get_allow);
  } else if (method != "POST") {
    return fail(kind, 405, "method_not_allowed",
                "method " + quote(method, 16) + " is not allowed on "
                  + quote(path, 200) + "; use POST",
                post_allow);
  }
  // 4. Id.
  route_result r;
  r.kind = kind;
  r.request.kind = kind;
  r.request.head = head;
  if (kind == route_kind::debug_fail) {
    // An actor name: lower-case letters, digits, '_' and '-' (e.g.
    // persister-0). Whether it runs is the supervisor's answer.
    bool good = !id_text.empty() && id_text.size() <= 64;
    for (char c : id_text)
      good = good
             && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
                 || c == '-');
    if (!good)
      return fail(kind, 404, "not_found",
                  "no supervised actor " + quote(id_text));
    r.request.name = id_text;
  }
  if (kind == route_kind::event_by_id || kind == route_kind::replay) {
    r.request.id = parse_positive_id(id_text);
    if (r.request.id == 0)
      return fail(kind, 400, "bad_id",
                  "id " + quote(id_text)
                    + " is not a decimal integer between 1 and "
                      "9223372036854775807");
  }
  // 5. Query.
  bool takes_limit = kind == route_kind::events_latest
                     || kind == route_kind::dlq_latest;
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
      return fail(kind, 400, "bad_query",
                  "unknown query parameter " + quote(name) + " for "
                    + to_string(kind)
                    + (takes_limit ? " (accepted: limit)"
                                   : " (it takes no parameters)"));
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
