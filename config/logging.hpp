// Logging: spdlog loggers, one per component name, all writing through one
// shared, thread-safe sink (stderr) as either
//   text: 2026-11-27T12:00:00.123Z INFO  supervisor: actor_restart
//         actor=persister reason="..." attempt=2 backoff_ms=400
//   json: {"ts":"2026-11-27T12:00:00.123Z","level":"info",
//          "logger":"supervisor","event":"actor_restart","actor":"persister",
//          "reason":"...","attempt":2,"backoff_ms":400}
// (one line per record). Plain messages logged through the spdlog logger
// (`ces::log::get("x")->info("...")`) carry "msg" instead of event and fields.
// Everything is escaped: control characters, quotes, backslashes; invalid
// UTF-8 becomes U+FFFD. No CAF here.
#pragma once

#include <spdlog/common.h>
#include <spdlog/logger.h>

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ces::log {

/// Sets the line format ("text" or "json") and the level ("trace", "debug",
/// "info", "warn"/"warning", "error", "critical", "off") of every logger,
/// existing and future. Throws std::invalid_argument for other names.
/// Before init(): text, info.
void init(const std::string& format, const std::string& level);

/// The logger named `name`, created on first use. Also registered with
/// spdlog (spdlog::get(name)); spdlog's default logger is get("main").
std::shared_ptr<spdlog::logger> get(std::string_view name);

/// One key/value of a structured event. Holds views: build fields inside the
/// event() call (the usual `{{"actor", name}, {"attempt", n}}`), don't keep
/// them.
class field {
public:
  enum class type : uint8_t { string, int64, uint64, real, boolean };

  field(std::string_view key, std::string_view value) noexcept
    : key_(key), type_(type::string), str_(value) {
  }
  field(std::string_view key, const char* value) noexcept
    : field(key, std::string_view{value != nullptr ? value : ""}) {
  }
  field(std::string_view key, const std::string& value) noexcept
    : field(key, std::string_view{value}) {
  }
  template <class T, std::enable_if_t<std::is_integral_v<T>
                                        && !std::is_same_v<T, bool>,
                                      int> = 0>
  field(std::string_view key, T value) noexcept : key_(key) {
    if constexpr (std::is_signed_v<T>) {
      type_ = type::int64;
      i_ = static_cast<int64_t>(value);
    } else {
      type_ = type::uint64;
      u_ = static_cast<uint64_t>(value);
    }
  }
  field(std::string_view key, double value) noexcept
    : key_(key), type_(type::real), d_(value) {
  }
  field(std::string_view key, bool value) noexcept
    : key_(key), type_(type::boolean), b_(value) {
  }

  std::string_view key() const noexcept {
    return key_;
  }
  type kind() const noexcept {
    return type_;
  }
  std::string_view str() const noexcept {
    return str_;
  }
  int64_t i64() const noexcept {
    return i_;
  }
  uint64_t u64() const noexcept {
    return u_;
  }
  double real() const noexcept {
    return d_;
  }
  bool boolean() const noexcept {
    return b_;
  }

private:
  std::string_view key_;
  type type_;
  std::string_view str_;
  union {
    int64_t i_ = 0;
    uint64_t u_;
    double d_;
    bool b_;
  };
};

/// Logs one structured event: `event` names what happened (snake_case), the
/// fields describe it. In JSON, a field named ts, level, logger, event or msg
/// is written with a leading underscore (_level) to keep keys unique.
void event(spdlog::level::level_enum level, spdlog::logger& logger,
           std::string_view event, std::initializer_list<field> fields);

/// As above, with the logger looked up (or created) by name.
void event(spdlog::level::level_enum level, std::string_view logger,
           std::string_view event, std::initializer_list<field> fields);

/// As above, for fields built at run time, e.g. the start-up line from
/// ces::describe(settings).
void event(spdlog::level::level_enum level, spdlog::logger& logger,
           std::string_view event, const std::vector<field>& fields);

/// Test hook: writes every line to `os` instead of stderr (nullptr: back to
/// stderr). `os` must outlive the redirection.
void redirect(std::ostream* os);

} // namespace ces::log
