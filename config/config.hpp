// Command line, environment and INI file -> ces::settings.
//
// Every field of ces::settings is a CAF option in group "global", so it is a
// flag (--kafka-group-id=x), an environment variable (KAFKA_GROUP_ID) and a key
// in the [global] section of the INI file named by --config-file=PATH or
// CONFIG_FILE. Precedence: flag > environment > INI file > default.
//
// Includes CAF's actor_system_config: include this header from main() and
// tests only, not from actors.
#pragma once

#include "config/mask.hpp"
#include "config/settings.hpp"

#include <caf/actor_system_config.hpp>

#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace ces {

/// Name used in help text and error messages.
inline constexpr const char* program_name = "crm-events-sink";

/// Outcome of service_config::load.
struct config_result {
  /// True: start the service. False: exit with `exit_code` right away.
  bool proceed;
  /// 0 after --help or --dump-config, 2 after a configuration error.
  int exit_code;
};

/// The actor system configuration of the service, carrying our settings.
class service_config : public caf::actor_system_config {
public:
  service_config();

  // CAF options hold pointers into `values`: neither copy nor move.
  service_config(const service_config&) = delete;
  service_config(service_config&&) = delete;
  service_config& operator=(const service_config&) = delete;
  service_config& operator=(service_config&&) = delete;

  /// The effective settings after a successful load().
  settings values;

  /// true: load() checks database-url only (validate_database_url()), for
  /// the keys subcommands, which need nothing else. Set before load().
  bool database_only = false;

  /// Reads environment (through `getenv_fn`), INI file and `argv` (in that
  /// order of increasing precedence) into `values`, then validates them.
  /// - `--help`/`-h`: prints our help to `out`, returns {false, 0}.
  /// - `--dump-config`: prints the effective settings (password masked) to
  ///   `out`, returns {false, 0}.
  /// - any invalid, missing or unknown setting: prints one line
  ///   "crm-events-sink: ..." to `err`, returns {false, 2}.
  /// Call once per object.
  config_result load(int argc, char** argv,
                     std::function<const char*(const char*)> getenv_fn,
                     std::ostream& out, std::ostream& err);

  /// load() with ::getenv, std::cout and std::cerr.
  config_result load(int argc, char** argv);
};

/// Prints the help text (every setting with flag, environment variable,
/// default and description, grouped) to `out`.
void print_help(std::ostream& out);

/// Semantic checks on already-typed settings (ports, topic names, libpq URL,
/// ...). Returns the first problem as "<setting> (<ENV>): <what>" without
/// the program name, or an empty string when everything is valid.
std::string validate(const settings& s);

/// validate()'s check of database-url alone (present, parseable by libpq).
std::string validate_database_url(const settings& s);

/// Setting name -> environment variable name: "kafka-topics" ->
/// "KAFKA_TOPICS".
std::string env_name(const std::string& setting_name);

/// All settings as (name, value) pairs in help order, for the start-up log
/// line and --dump-config. Lists are comma-separated; secrets are masked
/// (config/mask.hpp: database-url through libpq's parser, kafka-properties
/// by their names).
std::vector<std::pair<std::string, std::string>>
describe(const settings& s);

} // namespace ces
