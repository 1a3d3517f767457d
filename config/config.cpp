#include "config/config.hpp"

#include <caf/config_option_set.hpp>
#include <caf/config_value.hpp>
#include <caf/error.hpp>
#include <caf/pec.hpp>
#include <caf/sec.hpp>
#include <caf/settings.hpp>

#include <libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <variant>

namespace ces {

namespace {

// -- the settings table ------------------------------------------------------

using field_ptr = std::variant<std::string settings::*,
                               std::vector<std::string> settings::*,
                               int settings::*, size_t settings::*,
                               uint16_t settings::*>;

enum class kind { string, list, integer, size, port };

struct setting_def {
  const char* group; // heading in --help
  const char* name;  // flag name, CAF option name, INI key
  field_ptr field;
  const char* arg;   // placeholder in --help
  const char* help;  // one line
  bool required = false;
};

kind kind_of(const setting_def& d) {
  return static_cast<kind>(d.field.index());
}

const std::vector<setting_def>& defs() {
  static const std::vector<setting_def> xs = {
    {"Kafka", "kafka-bootstrap-servers", &settings::kafka_bootstrap_servers,
     "HOSTS",
     "bootstrap servers host:port[,...]; \"embedded\" runs librdkafka's mock "
     "cluster in-process (local runs only)"},
    {"Kafka", "kafka-topics", &settings::kafka_topics, "LIST",
     "topics to consume, comma-separated"},
    {"Kafka", "kafka-group-id", &settings::kafka_group_id, "ID",
     "consumer group id"},
    {"Kafka", "kafka-properties", &settings::kafka_properties, "LIST",
     "extra librdkafka properties, comma-separated key=value items (SASL, "
     "TLS, ...)"},
    {"Kafka", "kafka-session-timeout-ms", &settings::kafka_session_timeout_ms,
     "MS", "consumer group session timeout"},
    {"Kafka", "embedded-partitions", &settings::embedded_partitions, "N",
     "partitions per topic created by the embedded broker"},
    {"Kafka", "embedded-bootstrap-file", &settings::embedded_bootstrap_file,
     "PATH",
     "with the embedded broker, write its bootstrap address to this file"},
    {"PostgreSQL", "database-url", &settings::database_url, "URL",
     "libpq URI of the journal, e.g. postgresql://user:pw@host:5432/db",
     true},
    {"HTTP", "http-address", &settings::http_address, "ADDR",
     "listen address of the operator REST API"},
    {"HTTP", "http-port", &settings::http_port, "PORT",
     "listen port of the operator REST API"},
    {"HTTP", "metrics-address", &settings::metrics_address, "ADDR",
     "listen address of the Prometheus /metrics endpoint"},
    {"HTTP", "metrics-port", &settings::metrics_port, "PORT",
     "listen port of the Prometheus /metrics endpoint"},
    {"HTTP", "http-max-in-flight", &settings::http_max_in_flight, "N",
     "operator API requests served at once; beyond it 503 at once"},
    {"HTTP", "http-max-connections", &settings::http_max_connections, "N",
     "open operator API connections; a new one beyond it is closed at once"},
    {"HTTP", "http-max-response-bytes", &settings::http_max_response_bytes,
     "BYTES",
     "GET /events/latest answers at most this many bytes of events (at "
     "least one event); a shorter page says X-Truncated: true"},
    {"HTTP", "fault-injection", &settings::fault_injection, "0|1",
     "1 serves POST /debug/fail/{actor} (drills and tests; not for "
     "production)"},
    {"Replay", "replay-timeout-ms", &settings::replay_timeout_ms, "MS",
     "a replay the broker has not acknowledged in this time fails (503)"},
    {"Ingestion", "batch-max-records", &settings::batch_max_records, "N",
     "a batch closes at this many records ..."},
    {"Ingestion", "batch-linger-ms", &settings::batch_linger_ms, "MS",
     "... or this long after its first record, whichever comes first; "
     "while no batch is in flight, as soon as no more records are ready"},
    {"Ingestion", "max-in-flight-batches", &settings::max_in_flight_batches,
     "N", "batches sent to each persister and not yet acknowledged"},
    {"Ingestion", "persister-connections", &settings::persister_connections,
     "N",
     "persisters writing in parallel, one PostgreSQL connection each; a "
     "partition always goes to the same one"},
    {"Ingestion", "max-payload-bytes", &settings::max_payload_bytes, "BYTES",
     "larger records go to the DLQ"},
    {"Ingestion", "max-json-depth", &settings::max_json_depth, "N",
     "more deeply nested JSON goes to the DLQ"},
    {"Supervision", "restart-backoff-initial-ms",
     &settings::restart_backoff_initial_ms, "MS",
     "delay before the first restart of a crashed actor (doubles each time)"},
    {"Supervision", "restart-backoff-max-ms",
     &settings::restart_backoff_max_ms, "MS",
     "longest delay between restarts"},
    {"Supervision", "max-restarts", &settings::max_restarts, "N",
     "more restarts than this within restart-window-s stop the process"},
    {"Supervision", "restart-window-s", &settings::restart_window_s, "S",
     "window for max-restarts, in seconds"},
    {"Supervision", "db-retry-initial-ms", &settings::db_retry_initial_ms,
     "MS", "first PostgreSQL retry delay after an infrastructure error"},
    {"Supervision", "db-retry-max-ms", &settings::db_retry_max_ms, "MS",
     "longest PostgreSQL retry delay"},
    {"Supervision", "shutdown-timeout-ms", &settings::shutdown_timeout_ms,
     "MS", "upper bound for a graceful shutdown"},
    {"Logging", "log-format", &settings::log_format, "FORMAT",
     "text or json (one JSON object per line)"},
    {"Logging", "log-level", &settings::log_level, "LEVEL",
     "trace, debug, info, warn, error, critical or off"},
  };
  return xs;
}

const setting_def* find_def(std::string_view name) {
  for (auto& d : defs())
    if (name == d.name)
      return &d;
  return nullptr;
}

// -- string helpers ----------------------------------------------------------

std::string_view trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n'
                                || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && ws(s.back()))
    s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string quoted(std::string_view s) {
  std::string r = "\"";
  r += s;
  r += '"';
  return r;
}

/// Splits a comma-separated list; "\," is a literal comma. Items are trimmed,
/// empty items dropped.
std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> result;
  std::string cur;
  auto flush = [&] {
    auto t = trim(cur);
    if (!t.empty())
      result.emplace_back(t);
    cur.clear();
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == ',') {
      cur += ',';
      ++i;
    } else if (s[i] == ',') {
      flush();
    } else {
      cur += s[i];
    }
  }
  flush();
  return result;
}

std::string join(const std::vector<std::string>& xs) {
  std::string r;
  for (auto& x : xs) {
    if (!r.empty())
      r += ',';
    r += x;
  }
  return r;
}

/// A string in CAF's quoted-string syntax.
std::string caf_quote(std::string_view s) {
  std::string r = "\"";
  for (char c : s) {
    switch (c) {
      case '"': r += "\\\""; break;
      case '\\': r += "\\\\"; break;
      case '\n': r += "\\n"; break;
      case '\r': r += "\\r"; break;
      case '\t': r += "\\t"; break;
      default: r += c;
    }
  }
  r += '"';
  return r;
}

/// A list in CAF's list syntax: ["a", "b"].
std::string caf_list(const std::vector<std::string>& xs) {
  std::string r = "[";
  for (auto& x : xs) {
    if (r.size() > 1)
      r += ", ";
    r += caf_quote(x);
  }
  r += ']';
  return r;
}

template <class T>
std::optional<T> parse_int(std::string_view s) {
  s = trim(s);
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size())
    return std::nullopt;
  if (v < static_cast<long long>(std::numeric_limits<T>::min())
      || (v > 0 && static_cast<unsigned long long>(v)
                     > static_cast<unsigned long long>(
                       std::numeric_limits<T>::max())))
    return std::nullopt;
  return static_cast<T>(v);
}

/// What is wrong with a value of this kind that does not parse.
std::string type_problem(kind k) {
  switch (k) {
    case kind::string: return "is not a string (quote it in the INI file)";
    case kind::list:
      return "is not a list (use a,b or [\"a\", \"b\"] in the INI file)";
    case kind::integer: return "is not an integer";
    case kind::size: return "is not a non-negative integer";
    case kind::port: return "is not a port number (1-65535)";
  }
  return "is invalid";
}

std::string label(const setting_def& d) {
  return std::string{d.name} + " (" + env_name(d.name) + ")";
}

std::string default_text(const setting_def& d) {
  static const settings dflt;
  return std::visit(
    [](auto ptr) -> std::string {
      const auto& v = dflt.*ptr;
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string>)
        return v;
      else if constexpr (std::is_same_v<T, std::vector<std::string>>)
        return join(v);
      else
        return std::to_string(v);
    },
    d.field);
}

/// Writes `words` separated by spaces, indented by 6 and wrapped at 79
/// columns.
void wrap(std::ostream& out, const std::vector<std::string>& words) {
  constexpr size_t indent = 6;
  constexpr size_t width = 79;
  size_t col = 0;
  for (auto& word : words) {
    if (col > indent && col + 1 + word.size() > width) {
      out << '\n';
      col = 0;
    }
    if (col == 0) {
      out << std::string(indent, ' ') << word;
      col = indent + word.size();
    } else {
      out << ' ' << word;
      col += 1 + word.size();
    }
  }
  out << '\n';
}

// -- secrets -----------------------------------------------------------------

bool secret_property(std::string_view key) {
  std::string k{key};
  std::transform(k.begin(), k.end(), k.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (auto word : {"password", "secret", "key.pem", "jaas", "oauthbearer"})
    if (k.find(word) != std::string::npos)
      return true;
  return false;
}

std::string mask_property(const std::string& item) {
  auto eq = item.find('=');
  if (eq == std::string::npos || !secret_property(item.substr(0, eq)))
    return item;
  return item.substr(0, eq + 1) + "***";
}

/// Masks the value of every `password` key=value pair in a libpq keyword
/// connection string.
std::string mask_keyword_password(const std::string& s) {
  std::string r;
  size_t i = 0;
  while (i < s.size()) {
    // Read one keyword.
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      r += s[i++];
    size_t kbeg = i;
    while (i < s.size() && s[i] != '='
           && !std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
    std::string key = s.substr(kbeg, i - kbeg);
    r += key;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      r += s[i++];
    if (i >= s.size() || s[i] != '=')
      continue;
    r += s[i++];
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
      r += s[i++];
    // Read its value, quoted or not.
    size_t vbeg = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') {
        if (s[i] == '\\' && i + 1 < s.size())
          ++i;
        ++i;
      }
      if (i < s.size())
        ++i;
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) {
        if (s[i] == '\\' && i + 1 < s.size())
          ++i;
        ++i;
      }
    }
    r += key == "password" ? std::string{"***"} : s.substr(vbeg, i - vbeg);
  }
  return r;
}

} // namespace

// -- free functions ----------------------------------------------------------

std::string env_name(const std::string& setting_name) {
  std::string r = setting_name;
  for (auto& c : r)
    c = c == '-' || c == '.' ? '_'
                             : static_cast<char>(
                               std::toupper(static_cast<unsigned char>(c)));
  return r;
}

std::string mask_database_url(const std::string& url) {
  // postgresql:// and postgres:// are libpq URIs; mask any other scheme
  // the same way, a typo must not print the password either.
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos)
    return mask_keyword_password(url);
  std::string r = url;
  auto auth_begin = scheme_end + 3;
  auto auth_end = r.find_first_of("/?#", auth_begin);
  if (auth_end == std::string::npos)
    auth_end = r.size();
  auto at = r.rfind('@', auth_end - 1);
  if (at != std::string::npos && at >= auth_begin) {
    auto colon = r.find(':', auth_begin);
    if (colon != std::string::npos && colon < at)
      r.replace(colon + 1, at - colon - 1, "***");
  }
  // password=... in the query string.
  auto q = r.find('?');
  while (q != std::string::npos) {
    auto key_begin = q + 1;
    auto eq = r.find('=', key_begin);
    auto amp = r.find('&', key_begin);
    if (eq != std::string::npos && (amp == std::string::npos || eq < amp)
        && r.compare(key_begin, eq - key_begin, "password") == 0) {
      auto value_end = amp == std::string::npos ? r.size() : amp;
      r.replace(eq + 1, value_end - eq - 1, "***");
      amp = r.find('&', eq);
    }
    q = amp;
  }
  return r;
}

std::vector<std::pair<std::string, std::string>>
describe(const settings& s) {
  std::vector<std::pair<std::string, std::string>> result;
  for (auto& d : defs()) {
    std::string value = std::visit(
      [&](auto ptr) -> std::string {
        const auto& v = s.*ptr;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          return v;
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::vector<std::string> xs;
          for (auto& x : v) { // round-trips through split_list
            std::string item;
            for (char c : mask_property(x))
              item += c == ',' ? std::string{"\\,"} : std::string(1, c);
            xs.emplace_back(std::move(item));
          }
          return join(xs);
        } else {
          return std::to_string(v);
        }
      },
      d.field);
    if (std::string_view{d.name} == "database-url")
      value = mask_database_url(value);
    result.emplace_back(d.name, std::move(value));
  }
  return result;
}

void print_help(std::ostream& out) {
  out << "Usage: " << program_name
      << " [--SETTING=VALUE ...] [--config-file=PATH]\n"
         "\n"
         "Consumes CRM events from Kafka and journals them in PostgreSQL.\n"
         "\n"
         "Every setting is a flag (--name=VALUE or --name VALUE), an "
         "environment\n"
         "variable (NAME), or a key in the [global] section of the INI file "
         "given by\n"
         "--config-file=PATH or CONFIG_FILE. Precedence: flag > environment "
         "> INI file\n"
         "> default. Lists are comma-separated in flags and environment "
         "(\"\\,\" is a\n"
         "literal comma); the INI file takes \"a,b\" or [\"a\", \"b\"].\n";
  const char* group = nullptr;
  for (auto& d : defs()) {
    if (group == nullptr || std::strcmp(group, d.group) != 0) {
      group = d.group;
      out << '\n' << group << ":\n";
    }
    auto flag = std::string{"--"} + d.name + '=' + d.arg;
    out << "  " << flag;
    if (flag.size() < 36)
      out << std::string(36 - flag.size(), ' ');
    else
      out << ' ';
    out << env_name(d.name) << '\n';
    std::vector<std::string> words;
    std::istringstream help{d.help};
    for (std::string w; help >> w;)
      words.push_back(w);
    auto dflt = default_text(d);
    // The default stays on one line.
    words.push_back(d.required ? "(required)"
                               : "(default: " + (dflt.empty() ? "none" : dflt)
                                   + ")");
    wrap(out, words);
  }
  out << "\n"
         "Other:\n"
         "  -h, --help                          print this help and exit\n"
         "  --dump-config                       print the effective settings "
         "(secrets\n"
         "                                      masked) and exit\n"
         "  --config-file=PATH                  CONFIG_FILE\n"
         "      INI file with a [global] section (default: none)\n"
         "  CAF runtime options such as --scheduler.max-threads=N are "
         "accepted too.\n";
}

std::string validate(const settings& s) {
  auto lookup = [](const char* name) -> const setting_def& {
    return *find_def(name);
  };
  auto invalid = [&](const char* name, const std::string& what) {
    return "invalid setting " + label(lookup(name)) + ": " + what;
  };
  auto missing = [&](const char* name, const std::string& what) {
    return "missing setting " + label(lookup(name)) + ": " + what;
  };
  auto positive = [&](const char* name, long long v) -> std::string {
    if (v >= 1)
      return {};
    return invalid(name, std::to_string(v) + " must be at least 1");
  };
  auto non_negative = [&](const char* name, long long v) -> std::string {
    if (v >= 0)
      return {};
    return invalid(name, std::to_string(v) + " must not be negative");
  };
  auto port = [&](const char* name, uint16_t v) -> std::string {
    if (v != 0)
      return {};
    return invalid(name, "0 " + type_problem(kind::port));
  };
  auto ordered = [&](const char* lo_name, int lo, const char* hi_name,
                     int hi) -> std::string {
    if (lo <= hi)
      return {};
    return invalid(lo_name, std::to_string(lo) + " is greater than "
                              + hi_name + " (" + std::to_string(hi) + ")");
  };
  // Kafka.
  if (trim(s.kafka_bootstrap_servers).empty())
    return missing("kafka-bootstrap-servers",
                   "a list of host:port pairs (or \"embedded\") is required");
  if (s.kafka_topics.empty())
    return missing("kafka-topics", "at least one topic is required");
  std::set<std::string> seen;
  for (auto& t : s.kafka_topics) {
    bool legal = !t.empty() && t.size() <= 249 && t != "." && t != ".."
                 && std::all_of(t.begin(), t.end(), [](unsigned char c) {
                      return std::isalnum(c) || c == '.' || c == '_'
                             || c == '-';
                    });
    if (!legal)
      return invalid("kafka-topics",
                     quoted(t)
                       + " is not a legal Kafka topic name (letters, digits, "
                         "'.', '_', '-'; at most 249 characters)");
    if (!seen.insert(t).second)
      return invalid("kafka-topics", quoted(t) + " is listed twice");
  }
  if (trim(s.kafka_group_id).empty())
    return missing("kafka-group-id", "a consumer group id is required");
  for (auto& p : s.kafka_properties) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0
        || trim(std::string_view{p}.substr(0, eq)).size() != eq)
      return invalid("kafka-properties",
                     quoted(p) + " is not a key=value librdkafka property");
  }
  for (auto e : {positive("kafka-session-timeout-ms",
                          s.kafka_session_timeout_ms),
                 positive("embedded-partitions", s.embedded_partitions)})
    if (!e.empty())
      return e;
  // PostgreSQL.
  if (trim(s.database_url).empty())
    return missing("database-url", "a libpq URI such as "
                                   "postgresql://user@host:5432/db is "
                                   "required");
  {
    char* errmsg = nullptr;
    PQconninfoOption* opts = PQconninfoParse(s.database_url.c_str(), &errmsg);
    if (opts == nullptr) {
      std::string why = errmsg != nullptr ? errmsg : "out of memory";
      if (errmsg != nullptr)
        PQfreemem(errmsg);
      while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
        why.pop_back();
      // libpq may quote the string back: never print a password.
      auto masked = mask_database_url(s.database_url);
      for (auto pos = why.find(s.database_url); pos != std::string::npos;
           pos = why.find(s.database_url, pos + masked.size()))
        why.replace(pos, s.database_url.size(), masked);
      return invalid("database-url", quoted(masked)
                                       + " is not a libpq connection "
                                         "string: "
                                       + why);
    }
    PQconninfoFree(opts);
  }
  // Ports.
  if (trim(s.http_address).empty())
    return missing("http-address", "a listen address is required");
  if (trim(s.metrics_address).empty())
    return missing("metrics-address", "a listen address is required");
  for (auto e : {port("http-port", s.http_port),
                 port("metrics-port", s.metrics_port)})
    if (!e.empty())
      return e;
  auto wildcard = [](const std::string& a) {
    return a == "0.0.0.0" || a == "::" || a == "[::]";
  };
  if (s.http_port == s.metrics_port
      && (s.http_address == s.metrics_address || wildcard(s.http_address)
          || wildcard(s.metrics_address)))
    return invalid("metrics-port", std::to_string(s.metrics_port)
                                     + " is also the http-port");
  // Ingestion and supervision.
  for (auto e : {
         positive("batch-max-records",
                  static_cast<long long>(std::min<size_t>(
                    s.batch_max_records, std::numeric_limits<int>::max()))),
         non_negative("batch-linger-ms", s.batch_linger_ms),
         positive("max-in-flight-batches",
                  static_cast<long long>(std::min<size_t>(
                    s.max_in_flight_batches, std::numeric_limits<int>::max()))),
         positive("max-payload-bytes",
                  static_cast<long long>(std::min<size_t>(
                    s.max_payload_bytes, std::numeric_limits<int>::max()))),
         positive("max-json-depth",
                  static_cast<long long>(std::min<size_t>(
                    s.max_json_depth, std::numeric_limits<int>::max()))),
         positive("restart-backoff-initial-ms", s.restart_backoff_initial_ms),
         positive("restart-backoff-max-ms", s.restart_backoff_max_ms),
         ordered("restart-backoff-initial-ms", s.restart_backoff_initial_ms,
                 "restart-backoff-max-ms", s.restart_backoff_max_ms),
         positive("max-restarts", s.max_restarts),
         positive("restart-window-s", s.restart_window_s),
         positive("db-retry-initial-ms", s.db_retry_initial_ms),
         positive("db-retry-max-ms", s.db_retry_max_ms),
         ordered("db-retry-initial-ms", s.db_retry_initial_ms,
                 "db-retry-max-ms", s.db_retry_max_ms),
         positive("shutdown-timeout-ms", s.shutdown_timeout_ms),
         positive("http-max-in-flight", s.http_max_in_flight),
         positive("http-max-connections", s.http_max_connections),
         positive("http-max-response-bytes",
                  static_cast<long long>(std::min<size_t>(
                    s.http_max_response_bytes,
                    std::numeric_limits<int>::max()))),
         positive("replay-timeout-ms", s.replay_timeout_ms),
         positive("persister-connections", s.persister_connections),
       })
    if (!e.empty())
      return e;
  if (s.fault_injection != 0 && s.fault_injection != 1)
    return invalid("fault-injection",
                   std::to_string(s.fault_injection) + " is not 0 or 1");
  // Logging.
  if (s.log_format != "text" && s.log_format != "json")
    return invalid("log-format", quoted(s.log_format)
                                   + " is neither text nor json");
  static const char* levels[] = {"trace", "debug", "info",     "warn",
                                 "warning", "error", "critical", "off"};
  if (std::none_of(std::begin(levels), std::end(levels),
                   [&](const char* l) { return s.log_level == l; }))
    return invalid("log-level",
                   quoted(s.log_level)
                     + " is not one of trace, debug, info, warn, error, "
                       "critical, off");
  return {};
}

// -- service_config ----------------------------------------------------------

service_config::service_config() {
  // No implicit caf-application.ini: a config file only when asked for.
  config_file_path.clear();
  opt_group group{custom_options_, "global"};
  for (auto& d : defs())
    std::visit([&](auto ptr) { group.add(values.*ptr, d.name, d.help); },
               d.field);
}

config_result service_config::load(int argc, char** argv) {
  return load(
    argc, argv, [](const char* name) { return std::getenv(name); },
    std::cout, std::cerr);
}

namespace {

/// Where one argument handed to CAF came from.
struct origin {
  const setting_def* def = nullptr; // nullptr: not one of our settings
  bool from_env = false;
  std::string raw; // the value as the user wrote it
};

struct fail {
  std::string message;
};

/// Turns `--name=value` for one of our settings into the form CAF parses
/// verbatim, after checking that the value has the right type.
std::string to_caf_arg(const setting_def& d, const std::string& raw,
                       bool from_env) {
  auto bad = [&] {
    return fail{"invalid setting " + label(d) + ": " + quoted(raw) + " "
                + type_problem(kind_of(d))
                + (from_env ? " (from the environment)" : "")};
  };
  std::string arg = std::string{"--"} + d.name + '=';
  switch (kind_of(d)) {
    case kind::string:
      return arg + caf_quote(raw);
    case kind::list: {
      auto t = trim(raw);
      if (!t.empty() && t.front() == '[')
        return arg + std::string{t}; // CAF list syntax, CAF checks it
      return arg + caf_list(split_list(raw));
    }
    case kind::integer:
      if (!parse_int<int>(raw))
        throw bad();
      break;
    case kind::size:
      if (!parse_int<size_t>(raw))
        throw bad();
      break;
    case kind::port: {
      auto p = parse_int<uint16_t>(raw);
      if (!p || *p == 0)
        throw bad();
      break;
    }
  }
  return arg + std::string{trim(raw)};
}

std::string error_argument(const caf::error& e) {
  if (e.context().match_element<caf::settings>(0))
    if (auto s = caf::get_if<std::string>(
          &e.context().get_as<caf::settings>(0), "argument"))
      return *s;
  if (e.context().match_element<std::string>(0))
    return e.context().get_as<std::string>(0);
  return {};
}

std::string error_position(const caf::error& e) {
  if (e.context().match_element<caf::settings>(0)) {
    auto& s = e.context().get_as<caf::settings>(0);
    auto line = caf::get_if<int64_t>(&s, "line");
    auto column = caf::get_if<int64_t>(&s, "column");
    if (line && column)
      return "line " + std::to_string(*line) + ", column "
             + std::to_string(*column);
  }
  return {};
}

} // namespace

config_result service_config::load(
  int argc, char** argv, std::function<const char*(const char*)> getenv_fn,
  std::ostream& out, std::ostream& err) {
  auto failure = [&](const std::string& message) {
    err << program_name << ": " << message << std::endl;
    return config_result{false, 2};
  };
  std::vector<std::string> user_args;
  for (int i = 1; i < argc; ++i)
    user_args.emplace_back(argv[i]);
  // --help wins over everything else, even over broken arguments.
  for (auto& a : user_args)
    if (a == "-h" || a == "-?" || a == "--help" || a == "--long-help") {
      print_help(out);
      return {false, 0};
    }
  try {
    std::vector<std::string> args;  // what CAF parses
    std::vector<origin> origins;    // parallel to args
    std::string config_file;
    bool dump = false;
    // 1. Environment, lowest precedence among the arguments.
    for (auto& d : defs()) {
      auto env = env_name(d.name);
      auto value = getenv_fn(env.c_str());
      if (value == nullptr || *value == '\0')
        continue;
      args.emplace_back(to_caf_arg(d, value, true));
      origins.push_back({&d, true, value});
    }
    if (auto value = getenv_fn("CONFIG_FILE"); value != nullptr && *value)
      config_file = value;
    // 2. The user's own arguments: later values win.
    for (size_t i = 0; i < user_args.size(); ++i) {
      const auto& a = user_args[i];
      if (a == "--dump-config") {
        dump = true;
        continue;
      }
      if (!starts_with(a, "--") || a == "--") {
        if (!starts_with(a, "-") || a == "--")
          throw fail{"unexpected argument " + quoted(a) + " (see --help)"};
        args.emplace_back(a); // short option, CAF decides
        origins.emplace_back();
        continue;
      }
      auto eq = a.find('=');
      auto name = a.substr(2, eq == std::string::npos ? std::string::npos
                                                      : eq - 2);
      std::optional<std::string> value;
      if (eq != std::string::npos)
        value = a.substr(eq + 1);
      auto d = find_def(name);
      if (d == nullptr && name != "config-file") {
        args.emplace_back(a); // a CAF option, or unknown: CAF decides
        origins.emplace_back();
        continue;
      }
      if (!value) { // "--name value"
        if (i + 1 >= user_args.size() || starts_with(user_args[i + 1], "--"))
          throw fail{"missing value for --" + name + " (use --" + name
                     + "=VALUE)"};
        value = user_args[++i];
      }
      if (d == nullptr) { // --config-file
        if (value->empty())
          throw fail{"missing value for --config-file"};
        config_file = *value;
        continue;
      }
      args.emplace_back(to_caf_arg(*d, *value, false));
      origins.push_back({d, false, *value});
    }
    // 3. INI file. CAF 0.17.6 reads it but silently drops unknown keys and
    //    values of the wrong type (and ignores `global { ... }` blocks), so
    //    parse it untyped with CAF's parser first, check every key, and store
    //    our settings through their CAF options. CAF's own pass over the file
    //    in parse() then stores the same values again, before the arguments.
    if (!config_file.empty()) {
      std::ifstream f{config_file};
      if (!f)
        throw fail{"cannot read config file " + quoted(config_file) + ": "
                   + std::strerror(errno)};
      caf::config_option_set untyped;
      caf::settings raw;
      if (auto e = parse_config(f, untyped, raw))
        throw fail{"invalid config file " + quoted(config_file)
                   + ": syntax error (" + to_string(static_cast<caf::pec>(
                                            e.code()))
                   + ") at " + error_position(e)};
      auto where = " in config file " + quoted(config_file);
      for (auto& [key, value] : raw) {
        if (auto section = caf::get_if<caf::settings>(&value)) {
          // A CAF section such as [scheduler].
          bool known = std::any_of(
            custom_options_.begin(), custom_options_.end(),
            [&](const caf::config_option& o) { return o.category() == key; });
          if (!known || key == "global")
            throw fail{"unknown section [" + key + "]" + where};
          for (auto& [k, v] : *section) {
            auto opt = custom_options_.qualified_name_lookup(key, k);
            if (opt == nullptr)
              throw fail{"unknown setting " + key + "." + k + where};
            if (opt->check(v))
              throw fail{"invalid setting " + key + "." + k + where + ": "
                         + to_string(v) + " is not a valid "
                         + std::string{opt->type_name().data(),
                                       opt->type_name().size()}};
          }
          continue;
        }
        auto d = find_def(key);
        if (d == nullptr)
          throw fail{"unknown setting " + quoted(key) + where};
        auto opt = custom_options_.qualified_name_lookup("global", key);
        if (!opt->check(value)) {
          opt->store(value);
          continue;
        }
        if (kind_of(*d) == kind::list)
          if (auto str = caf::get_if<std::string>(&value)) { // "a,b"
            caf::config_value::list xs;
            for (auto& x : split_list(*str))
              xs.emplace_back(x);
            opt->store(caf::config_value{std::move(xs)});
            continue;
          }
        throw fail{"invalid setting " + label(*d) + where + ": "
                   + to_string(value) + " " + type_problem(kind_of(*d))};
      }
      args.insert(args.begin(), "--config-file=" + caf_quote(config_file));
      origins.insert(origins.begin(), origin{});
    }
    // 4. CAF: INI file first, then the arguments in order.
    if (auto e = parse(args)) {
      if (e.category() == caf::atom("parser")) {
        auto arg = error_argument(e);
        if (arg.empty())
          throw fail{"invalid config file " + quoted(config_file) + ": "
                     + to_string(static_cast<caf::pec>(e.code())) + " at "
                     + error_position(e)};
        auto i = std::find(args.begin(), args.end(), arg);
        const origin* o = i == args.end() ? nullptr
                                          : &origins[i - args.begin()];
        if (o != nullptr && o->def != nullptr)
          throw fail{"invalid setting " + label(*o->def) + ": "
                     + quoted(o->raw) + " " + type_problem(kind_of(*o->def))
                     + (o->from_env ? " (from the environment)" : "")};
        auto flag = arg.substr(0, arg.find('='));
        if (static_cast<caf::pec>(e.code()) == caf::pec::not_an_option)
          throw fail{"unknown flag " + flag + " (see --help)"};
        throw fail{"invalid argument " + quoted(arg) + ": "
                   + to_string(static_cast<caf::pec>(e.code()))};
      }
      if (e.category() == caf::atom("system")
          && e.code() == static_cast<uint8_t>(caf::sec::cannot_open_file))
        throw fail{"cannot read config file " + quoted(config_file)};
      throw fail{"invalid configuration: " + render(e)};
    }
    if (!remainder.empty())
      throw fail{"unexpected argument " + quoted(remainder.front())
                 + " (see --help)"};
    if (auto problem = validate(values); !problem.empty())
      throw fail{problem};
    if (dump) {
      for (auto& [k, v] : describe(values))
        out << k << '=' << v << '\n';
      out.flush();
      return {false, 0};
    }
    return {true, 0};
  } catch (const fail& f) {
    return failure(f.message);
  }
}

} // namespace ces
