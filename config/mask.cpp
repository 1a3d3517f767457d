#include "config/mask.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>

namespace ces {

namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> result;
  for (;;) {
    auto pos = s.find(sep);
    result.emplace_back(s.substr(0, pos));
    if (pos == std::string_view::npos)
      return result;
    s.remove_prefix(pos + 1);
  }
}

// -- libpq -------------------------------------------------------------------

struct options_deleter {
  void operator()(PQconninfoOption* p) const {
    PQconninfoFree(p);
  }
};

using options_ptr = std::unique_ptr<PQconninfoOption, options_deleter>;

/// libpq's parse of `url`; on failure nullptr and libpq's message in `why`.
options_ptr parse(const std::string& url, std::string* why = nullptr) {
  char* errmsg = nullptr;
  options_ptr opts{PQconninfoParse(url.c_str(), &errmsg)};
  if (!opts && why != nullptr)
    *why = errmsg != nullptr ? errmsg : "out of memory";
  if (errmsg != nullptr)
    PQfreemem(errmsg);
  return opts;
}

/// libpq's own test for "this is a URI" (uri_prefix_length in fe-connect.c).
bool is_uri(std::string_view url) {
  return starts_with(url, "postgresql://") || starts_with(url, "postgres://");
}

/// libpq marks password options with a '*' in dispchar.
bool is_secret(const PQconninfoOption& o) {
  return o.dispchar != nullptr && std::strchr(o.dispchar, '*') != nullptr;
}

const char* value_of(const PQconninfoOption* opts, const char* keyword) {
  for (auto o = opts; o->keyword != nullptr; ++o)
    if (std::strcmp(o->keyword, keyword) == 0)
      return o->val;
  return nullptr;
}

/// Percent-encodes every byte but RFC 3986's unreserved characters.
std::string percent_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string r;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      r += static_cast<char>(c);
    } else {
      r += '%';
      r += hex[c >> 4];
      r += hex[c & 0xf];
    }
  }
  return r;
}

/// A value in libpq's key=value syntax: quoted when it must be.
std::string keyword_value(std::string_view v) {
  bool plain = !v.empty() && std::none_of(v.begin(), v.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) || c == '\''
           || c == '\\';
  });
  if (plain)
    return std::string{v};
  std::string r = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\')
      r += '\\';
    r += c;
  }
  return r + "'";
}

std::string rebuild_keywords(const PQconninfoOption* opts) {
  std::string r;
  for (auto o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr)
      continue;
    if (!r.empty())
      r += ' ';
    r += o->keyword;
    r += '=';
    r += is_secret(*o) ? std::string{"***"} : keyword_value(o->val);
  }
  return r;
}

std::string uri_host(const std::string& h) {
  if (h.find(':') != std::string::npos) // IPv6 address
    return '[' + h + ']';
  return percent_encode(h);
}

/// scheme://[user[:***]@][host[:port][,...]][/dbname][?key=value&...]
std::string rebuild_uri(std::string_view scheme,
                        const PQconninfoOption* opts) {
  auto user = value_of(opts, "user");
  auto password = value_of(opts, "password");
  auto host = value_of(opts, "host");
  auto port = value_of(opts, "port");
  auto dbname = value_of(opts, "dbname");
  std::string r{scheme};
  if (user != nullptr || password != nullptr) {
    if (user != nullptr)
      r += percent_encode(user);
    if (password != nullptr)
      r += ":***";
    r += '@';
  }
  // Hosts and ports pair up (libpq keeps "h1,h2" and "p1,p2"); when they do
  // not, the port goes into the query.
  bool port_in_query = port != nullptr;
  if (host != nullptr) {
    auto hosts = split(host, ',');
    auto ports = port != nullptr ? split(port, ',')
                                 : std::vector<std::string>{};
    port_in_query = port != nullptr && ports.size() != hosts.size();
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (i > 0)
        r += ',';
      r += uri_host(hosts[i]);
      if (!port_in_query && port != nullptr && !ports[i].empty())
        r += ':' + percent_encode(ports[i]);
    }
  }
  if (dbname != nullptr)
    r += '/' + percent_encode(dbname);
  char sep = '?';
  for (auto o = opts; o->keyword != nullptr; ++o) {
    std::string_view k = o->keyword;
    if (o->val == nullptr || k == "user" || k == "password" || k == "host"
        || k == "dbname" || (k == "port" && !port_in_query))
      continue;
    r += sep;
    sep = '&';
    r += k;
    r += '=';
    r += is_secret(*o) ? std::string{"***"} : percent_encode(o->val);
  }
  return r;
}

/// libpq's message without anything it quotes from the string. libpq puts
/// each fragment of the string in double quotes, unescaped, and every
/// fragment but the one of "unexpected character "%c" at position ..." runs
/// to the last quote of the message; its own syntax characters appear as
/// "=", "]", ":" and "/" followed by a space or ')'. So: the %c becomes
/// "***", libpq's own characters stay, and from the first other quote to the
/// last one everything becomes "***".
std::string redact_libpq_message(std::string why) {
  while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
    why.pop_back();
  size_t i = 0;
  const std::string unexpected = "unexpected character \"";
  if (starts_with(why, unexpected) && why.size() > unexpected.size() + 1
      && why[unexpected.size() + 1] == '"') {
    why.replace(unexpected.size(), 1, "***");
    i = unexpected.size() + 4;
  }
  for (i = why.find('"', i); i != std::string::npos;
       i = why.find('"', i)) {
    bool own = i + 3 < why.size() && why[i + 1] != '\0'
               && std::strchr("=]:/", why[i + 1]) != nullptr
               && why[i + 2] == '"' && (why[i + 3] == ' ' || why[i + 3] == ')');
    if (own) {
      i += 3;
      continue;
    }
    auto last = why.rfind('"');
    auto end = last > i ? last + 1 : why.size();
    why.replace(i, end - i, "\"***\"");
    break;
  }
  return why;
}

bool port_list_ok(std::string_view port) {
  for (auto& p : split(port, ',')) {
    auto b = p.find_first_not_of(" \t\n\r\f\v");
    if (b == std::string::npos)
      continue; // empty: the default port
    auto e = p.find_last_not_of(" \t\n\r\f\v");
    auto digits = p.substr(b, e - b + 1);
    if (digits.size() > 5
        || !std::all_of(digits.begin(), digits.end(),
                        [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    auto n = std::stoi(digits);
    if (n < 1 || n > 65535)
      return false;
  }
  return true;
}

} // namespace

bool secret_property(std::string_view key) {
  std::string k{key};
  std::transform(k.begin(), k.end(), k.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (auto word : {"password", "secret", "jaas", "key", "token",
                    "credential", "oauthbearer"})
    if (k.find(word) != std::string::npos)
      return true;
  return false;
}

std::string mask_property(std::string_view item) {
  auto eq = item.find('=');
  if (eq == std::string_view::npos) // not a property: perhaps a secret's tail
    return "***";
  if (!secret_property(item.substr(0, eq)))
    return std::string{item};
  return std::string{item.substr(0, eq + 1)} + "***";
}

std::string scrub_properties(std::string text,
                             const std::vector<std::string>& properties) {
  for (auto& p : properties) {
    auto eq = p.find('=');
    if (eq == std::string::npos || !secret_property(p.substr(0, eq)))
      continue;
    auto value = p.substr(eq + 1);
    if (value.empty())
      continue;
    for (auto pos = text.find(value); pos != std::string::npos;
         pos = text.find(value, pos + 3))
      text.replace(pos, value.size(), "***");
  }
  return text;
}

std::string mask_database_url(const std::string& url) {
  auto opts = parse(url);
  if (!opts || !database_url_problem(url).empty())
    return unparseable_database_url;
  if (!is_uri(url))
    return rebuild_keywords(opts.get());
  return rebuild_uri(url.substr(0, url.find("://") + 3), opts.get());
}

std::string database_url_problem(const std::string& url) {
  const std::string not_shown = " (the value is not shown: it may hold a "
                                "password)";
  const std::string uri_hint = "; in a URI, write '@' and '/' in the "
                               "password as %40 and %2F";
  std::string why;
  auto opts = parse(url, &why);
  if (!opts) {
    auto r = "not a libpq connection string: " + redact_libpq_message(why);
    if (!is_uri(url) && url.find("://") != std::string::npos)
      r += " (a URI starts with postgresql:// or postgres://)";
    return r + not_shown;
  }
  if (auto port = value_of(opts.get(), "port");
      port != nullptr && !port_list_ok(port))
    return "the port is not a number 1-65535" + (is_uri(url) ? uri_hint : "")
           + not_shown;
  if (is_uri(url))
    for (auto keyword : {"host", "dbname"})
      if (auto v = value_of(opts.get(), keyword);
          v != nullptr && std::strchr(v, '@') != nullptr)
        return std::string{"the "} + (keyword[0] == 'h' ? "host" : "database")
               + " name contains '@'" + uri_hint + not_shown;
  return {};
}

std::string mask_url(std::string_view url) {
  if (url.empty())
    return {};
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0)
    return "***";
  auto rest = url.substr(scheme_end + 3);
  auto host_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, host_end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos)
    authority = authority.substr(at + 1); // user info dropped
  std::string out(url.substr(0, scheme_end + 3));
  out += authority;
  bool more = host_end != std::string_view::npos
              && rest.substr(host_end) != "/";
  bool user_info = authority.size() != rest.substr(0, host_end).size();
  if (more || user_info)
    out += "/***";
  return out;
}

} // namespace ces
