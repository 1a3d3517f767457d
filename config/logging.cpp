#include "config/logging.hpp"

#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <unordered_map>

namespace ces::log {

namespace {

enum class line_format { text, json };

// -- escaping ----------------------------------------------------------------

using buffer = spdlog::memory_buf_t;

void put(buffer& out, std::string_view s) {
  out.append(s.data(), s.data() + s.size());
}

/// Length of the valid UTF-8 sequence starting at s[i], 0 if invalid.
size_t utf8_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto c0 = b(i);
  if (c0 < 0x80)
    return 1;
  size_t n;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    n = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    n = 3;
    if (c0 == 0xE0)
      lo = 0xA0; // overlong
    else if (c0 == 0xED)
      hi = 0x9F; // surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    n = 4;
    if (c0 == 0xF0)
      lo = 0x90; // overlong
    else if (c0 == 0xF4)
      hi = 0x8F; // > U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size())
    return 0;
  if (b(i + 1) < lo || b(i + 1) > hi)
    return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF)
      return 0;
  return n;
}

constexpr std::string_view replacement = "\xEF\xBF\xBD"; // U+FFFD

enum class escape_mode {
  json,        // inside a JSON string
  text_quoted, // inside "..." of a text key=value
  text_plain,  // a plain text message: only control characters escaped
};

void put_escaped(buffer& out, std::string_view s, escape_mode mode) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      auto n = utf8_length(s, i);
      if (n == 0) {
        put(out, replacement);
        ++i;
      } else {
        put(out, s.substr(i, n));
        i += n;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
      case '\\':
        if (mode != escape_mode::text_plain)
          out.push_back('\\');
        out.push_back(static_cast<char>(c));
        continue;
      case '\n': put(out, "\\n"); continue;
      case '\r': put(out, "\\r"); continue;
      case '\t': put(out, "\\t"); continue;
      case '\b': put(out, "\\b"); continue;
      case '\f': put(out, "\\f"); continue;
      default:
        break;
    }
    if (c < 0x20 || (c == 0x7F && mode != escape_mode::json))
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    else
      out.push_back(static_cast<char>(c));
  }
}

void put_json_string(buffer& out, std::string_view s) {
  out.push_back('"');
  put_escaped(out, s, escape_mode::json);
  out.push_back('"');
}

/// A text value: bare if harmless, quoted and escaped otherwise.
void put_text_value(buffer& out, std::string_view s) {
  bool quote = s.empty();
  for (unsigned char c : s)
    if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\') {
      quote = true;
      break;
    }
  if (quote)
    out.push_back('"');
  put_escaped(out, s, escape_mode::text_quoted);
  if (quote)
    out.push_back('"');
}

/// A text key: anything that would break key=value parsing becomes '_'.
void put_text_key(buffer& out, std::string_view key) {
  if (key.empty()) {
    out.push_back('_');
    return;
  }
  buffer tmp;
  put_escaped(tmp, key, escape_mode::text_plain);
  for (char c : tmp)
    out.push_back(static_cast<unsigned char>(c) <= 0x20 || c == '=' || c == '"'
                    ? '_'
                    : c);
}

void put_number(buffer& out, const field& f, line_format fmt) {
  switch (f.kind()) {
    case field::type::int64:
      fmt::format_to(std::back_inserter(out), "{}", f.i64());
      break;
    case field::type::uint64:
      fmt::format_to(std::back_inserter(out), "{}", f.u64());
      break;
    case field::type::real:
      if (std::isfinite(f.real()))
        fmt::format_to(std::back_inserter(out), "{}", f.real());
      else if (fmt == line_format::json)
        put(out, "null");
      else
        fmt::format_to(std::back_inserter(out), "{}", f.real());
      break;
    case field::type::boolean:
      put(out, f.boolean() ? "true" : "false");
      break;
    case field::type::string:
      break;
  }
}

// -- the structured event being logged on this thread ------------------------

struct event_data {
  const char* payload; // identifies the log_msg that carries the event
  std::string_view name;
  const field* begin;
  const field* end;
};

thread_local const event_data* current_event = nullptr;

// -- formatter ---------------------------------------------------------------

std::string_view level_text(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "TRACE";
    case spdlog::level::debug: return "DEBUG";
    case spdlog::level::info: return "INFO ";
    case spdlog::level::warn: return "WARN ";
    case spdlog::level::err: return "ERROR";
    case spdlog::level::critical: return "CRIT ";
    default: return "OFF  ";
  }
}

std::string_view level_json(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

bool reserved_json_key(std::string_view k) {
  return k == "ts" || k == "level" || k == "logger" || k == "event"
         || k == "msg";
}

class line_formatter final : public spdlog::formatter {
public:
  explicit line_formatter(line_format fmt) : fmt_(fmt) {
  }

  void format(const spdlog::details::log_msg& msg, buffer& dest) override {
    std::string_view logger{msg.logger_name.data(), msg.logger_name.size()};
    std::string_view payload{msg.payload.data(), msg.payload.size()};
    const event_data* ev = current_event;
    if (ev != nullptr && ev->payload != msg.payload.data())
      ev = nullptr;
    if (fmt_ == line_format::json) {
      put(dest, "{\"ts\":\"");
      put_time(dest, msg.time);
      put(dest, "\",\"level\":\"");
      put(dest, level_json(msg.level));
      put(dest, "\",\"logger\":");
      put_json_string(dest, logger);
      if (ev == nullptr) {
        put(dest, ",\"msg\":");
        put_json_string(dest, payload);
      } else {
        put(dest, ",\"event\":");
        put_json_string(dest, ev->name);
        for (auto f = ev->begin; f != ev->end; ++f) {
          dest.push_back(',');
          if (reserved_json_key(f->key())) {
            std::string k = "_";
            k += f->key();
            put_json_string(dest, k);
          } else {
            put_json_string(dest, f->key());
          }
          dest.push_back(':');
          if (f->kind() == field::type::string)
            put_json_string(dest, f->str());
          else
            put_number(dest, *f, fmt_);
        }
      }
      put(dest, "}\n");
    } else {
      put_time(dest, msg.time);
      dest.push_back(' ');
      put(dest, level_text(msg.level));
      dest.push_back(' ');
      put_escaped(dest, logger, escape_mode::text_plain);
      put(dest, ": ");
      if (ev == nullptr) {
        put_escaped(dest, payload, escape_mode::text_plain);
      } else {
        put_escaped(dest, ev->name, escape_mode::text_plain);
        for (auto f = ev->begin; f != ev->end; ++f) {
          dest.push_back(' ');
          put_text_key(dest, f->key());
          dest.push_back('=');
          if (f->kind() == field::type::string)
            put_text_value(dest, f->str());
          else
            put_number(dest, *f, fmt_);
        }
      }
      dest.push_back('\n');
    }
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<line_formatter>(fmt_);
  }

private:
  /// 2026-11-27T12:00:00.123Z
  void put_time(buffer& dest, spdlog::log_clock::time_point tp) {
    using namespace std::chrono;
    auto ms_total = duration_cast<milliseconds>(tp.time_since_epoch()).count();
    auto secs = ms_total / 1000;
    auto ms = ms_total % 1000;
    if (ms < 0) {
      ms += 1000;
      secs -= 1;
    }
    if (secs != cached_secs_) {
      std::time_t t = static_cast<std::time_t>(secs);
      std::tm tm{};
      gmtime_r(&t, &tm);
      cached_text_ = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                                 tm.tm_hour, tm.tm_min, tm.tm_sec);
      cached_secs_ = secs;
    }
    put(dest, cached_text_);
    fmt::format_to(std::back_inserter(dest), ".{:03}Z", ms);
  }

  line_format fmt_;
  // The sink calls format() under its mutex: the cache needs no lock.
  long long cached_secs_ = -1;
  std::string cached_text_;
};

// -- sink --------------------------------------------------------------------

class line_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  void redirect(std::ostream* os) {
    std::lock_guard<std::mutex> guard{mutex_};
    os_ = os;
  }

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    buffer line;
    formatter_->format(msg, line);
    if (os_ != nullptr) {
      os_->write(line.data(), static_cast<std::streamsize>(line.size()));
      os_->flush();
    } else {
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  }

  void flush_() override {
    if (os_ != nullptr)
      os_->flush();
    else
      std::fflush(stderr);
  }

private:
  std::ostream* os_ = nullptr;
};

// -- registry ----------------------------------------------------------------

struct state {
  std::mutex mtx;
  std::shared_ptr<line_sink> sink = std::make_shared<line_sink>();
  spdlog::level::level_enum level = spdlog::level::info;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;

  state() {
    sink->set_formatter(std::make_unique<line_formatter>(line_format::text));
  }

  std::shared_ptr<spdlog::logger> make(const std::string& name) {
    auto lg = std::make_shared<spdlog::logger>(name, sink);
    lg->set_level(level);
    loggers.emplace(name, lg);
    return lg;
  }
};

state& global_state() {
  // Leaked on purpose: threads may still log while statics are destroyed.
  static state* st = [] {
    auto s = new state;
    spdlog::set_default_logger(s->make("main"));
    return s;
  }();
  return *st;
}

spdlog::level::level_enum parse_level(const std::string& name) {
  using namespace spdlog::level;
  static const std::pair<const char*, level_enum> names[] = {
    {"trace", trace}, {"debug", debug},       {"info", info},
    {"warn", warn},   {"warning", warn},      {"error", err},
    {"err", err},     {"critical", critical}, {"off", off},
  };
  for (auto& [n, l] : names)
    if (name == n)
      return l;
  throw std::invalid_argument("unknown log level \"" + name + "\"");
}

struct event_scope {
  explicit event_scope(const event_data* d) {
    current_event = d;
  }
  ~event_scope() {
    current_event = nullptr;
  }
};

} // namespace

void init(const std::string& format, const std::string& level) {
  line_format fmt;
  if (format == "text")
    fmt = line_format::text;
  else if (format == "json")
    fmt = line_format::json;
  else
    throw std::invalid_argument("unknown log format \"" + format + "\"");
  auto lvl = parse_level(level);
  auto& st = global_state();
  std::lock_guard<std::mutex> guard{st.mtx};
  st.sink->set_formatter(std::make_unique<line_formatter>(fmt));
  st.level = lvl;
  for (auto& [name, lg] : st.loggers)
    lg->set_level(lvl);
}

std::shared_ptr<spdlog::logger> get(std::string_view name) {
  auto& st = global_state();
  std::lock_guard<std::mutex> guard{st.mtx};
  std::string key{name};
  if (auto i = st.loggers.find(key); i != st.loggers.end())
    return i->second;
  auto lg = st.make(key);
  try {
    spdlog::register_logger(lg);
  } catch (const spdlog::spdlog_ex&) {
    // Someone registered that name with spdlog directly: keep theirs there.
  }
  return lg;
}

namespace {

void log_event(spdlog::level::level_enum level, spdlog::logger& logger,
               std::string_view event, const field* begin,
               const field* end) {
  if (!logger.should_log(level))
    return;
  event_data data{event.data(), event, begin, end};
  event_scope scope{&data};
  logger.log(level, spdlog::string_view_t{event.data(), event.size()});
}

} // namespace

void event(spdlog::level::level_enum level, spdlog::logger& logger,
           std::string_view event, std::initializer_list<field> fields) {
  log_event(level, logger, event, fields.begin(), fields.end());
}

void event(spdlog::level::level_enum level, spdlog::logger& logger,
           std::string_view event, const std::vector<field>& fields) {
  log_event(level, logger, event, fields.data(),
            fields.data() + fields.size());
}

void event(spdlog::level::level_enum level, std::string_view logger,
           std::string_view event, std::initializer_list<field> fields) {
  auto lg = get(logger);
  log::event(level, *lg, event, fields);
}

void redirect(std::ostream* os) {
  global_state().sink->redirect(os);
}

} // namespace ces::log
