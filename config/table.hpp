// The settings table (name, field, help line of every setting) and the small
// helpers that config.cpp, validate.cpp and describe.cpp share. Internal to
// config/: include it from there only.
#pragma once

#include "config/settings.hpp"

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ces::detail {

using field_ptr = std::variant<std::string settings::*,
                               std::vector<std::string> settings::*,
                               int settings::*, size_t settings::*,
                               uint16_t settings::*>;

/// The type of a setting, in the order of field_ptr's alternatives.
enum class kind { string, list, integer, size, port };

struct setting_def {
  const char* group; // heading in --help
  const char* name;  // flag name, CAF option name, INI key
  field_ptr field;
  const char* arg;   // placeholder in --help
  const char* help;  // one line
  bool required = false;
};

inline kind kind_of(const setting_def& d) {
  return static_cast<kind>(d.field.index());
}

/// Every setting, in help order.
const std::vector<setting_def>& defs();

/// The setting named `name`, or nullptr.
const setting_def* find_def(std::string_view name);

/// "name (ENV_NAME)", for messages.
std::string label(const setting_def& d);

/// What is wrong with a value of this kind that does not parse.
std::string type_problem(kind k);

/// The default as --help shows it ("" for none).
std::string default_text(const setting_def& d);

// -- string helpers ----------------------------------------------------------

std::string_view trim(std::string_view s);

bool starts_with(std::string_view s, std::string_view prefix);

/// `s` in double quotes (not escaped), for messages.
std::string quoted(std::string_view s);

/// Splits a comma-separated list; "\," is a literal comma. Items are
/// trimmed, empty items dropped.
std::vector<std::string> split_list(std::string_view s);

/// Joins with ',' (no escaping).
std::string join(const std::vector<std::string>& xs);

/// A decimal integer of type T (surrounding white space allowed), or nullopt
/// if `s` is not one or out of T's range.
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

} // namespace ces::detail
